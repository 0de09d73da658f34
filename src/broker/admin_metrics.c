/*
 * admin_metrics.c - GET /metrics: the broker's counters in Prometheus' text
 * exposition format (version 0.0.4), for a scraper or `moat ctl metrics`.
 *
 * Every metric is named moat_*, has its # HELP and # TYPE lines, then one
 * `name{label="value"} number` line per label set. Label values are the
 * broker's own names (QoS digits, drop reasons, event kinds, method names,
 * the version), never a client's text, so they need no escaping.
 *
 * Where the numbers come from, and what reading them costs:
 *  - the workers' statistics (internal.h), single-writer counters read with
 *    relaxed loads and summed here as $SYS does (sys.c): no lock, and a
 *    worker is never held up; a sum may be a few increments behind;
 *  - the security event counters (security/event.h) and the TLS handshake
 *    counters (net/tls.h): process-wide atomics;
 *  - the bans table and the store's statistics, under their own locks;
 *  - moat_queued_messages, which needs a walk of every session: each worker
 *    sums its own sessions on its thread (worker_query, as admin_clients.c
 *    does). A worker that does not answer in time leaves that one metric out
 *    rather than failing the scrape.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "broker/internal.h"
#include "core/clock.h"
#include "core/mem.h"
#include "net/tls.h"

#define QUERY_MS 2000

static const char *const drop_names[DROP_REASONS] = {
	[DROP_NOT_AUTHORIZED] = "not_authorized",
	[DROP_RATE_LIMITED] = "rate_limited",
	[DROP_SIZE_LIMIT] = "message_size_limit",
	[DROP_CLIENT_MAX_PACKET] = "client_maximum_packet_size",
	[DROP_MEMORY] = "memory_limit",
	[DROP_QUEUE_FULL] = "queue_full",
	[DROP_QOS0_OFFLINE] = "qos0_offline",
	[DROP_CONGESTED] = "congested",
	[DROP_EXPIRED] = "expired",
};

struct totals {
	uint64_t rx_qos[3], tx_qos[3], bytes_rx, bytes_tx, connects, disconnects;
	uint64_t dropped[DROP_REASONS];
	int64_t connected, sessions;
};

static uint64_t ld(atomic_uint_fast64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static void sum(struct moat_broker *b, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < b->nworkers; i++) {
		struct moat_stats *st = &b->workers[i]->stats;
		for (int q = 0; q < 3; q++) {
			t->rx_qos[q] += ld(&st->pub_received_qos[q]);
			t->tx_qos[q] += ld(&st->pub_sent_qos[q]);
		}
		for (int r = 0; r < DROP_REASONS; r++)
			t->dropped[r] += ld(&st->dropped[r]);
		t->bytes_rx += ld(&st->bytes_received);
		t->bytes_tx += ld(&st->bytes_sent);
		t->connects += ld(&st->connects);
		t->disconnects += ld(&st->disconnects);
		t->connected += atomic_load_explicit(&st->clients_connected, memory_order_relaxed);
		t->sessions += atomic_load_explicit(&st->sessions, memory_order_relaxed);
	}
}

/* ---- the text ---- */

static void put(struct moat_json *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct moat_json *o, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		moat_json_raw(o, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* A metric's # HELP and # TYPE lines. */
static void family(struct moat_json *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample; labels is "" or `{a="b",...}`. */
static void sample(struct moat_json *o, const char *name, const char *labels, uint64_t v)
{
	put(o, "%s%s %" PRIu64 "\n", name, labels, v);
}

static void one(struct moat_json *o, const char *name, const char *type, const char *help,
		uint64_t v)
{
	family(o, name, type, help);
	sample(o, name, "", v);
}

static void gauge_signed(struct moat_json *o, const char *name, const char *help, int64_t v)
{
	family(o, name, "gauge", help);
	put(o, "%s %" PRId64 "\n", name, v);
}

/* ---- the sections ---- */

static void queued_worker(struct moat_worker *w, void *arg)
{
	uint64_t *n = arg;
	struct moat_session *s;
	size_t pos = 0;

	while ((s = moat_map_next(&w->sessions, &pos, NULL, NULL)))
		*n += (uint64_t)s->queue.n + s->inflight.n;
}

static void clients(struct moat_json *o, struct moat_broker *b, const struct totals *t)
{
	uint64_t queued = 0;

	gauge_signed(o, "moat_clients_connected", "Clients connected now (CONNECT accepted).",
		     t->connected);
	one(o, "moat_connections_total", "counter", "Client connections accepted (CONNACK sent).",
	    t->connects);
	one(o, "moat_disconnections_total", "counter", "Client connections ended.",
	    t->disconnects);
	gauge_signed(o, "moat_sessions", "Sessions held, online or not.", t->sessions);
	if (worker_query(b, queued_worker, &queued, QUERY_MS) == 0)
		one(o, "moat_queued_messages", "gauge",
		    "Messages queued for or in flight to sessions.", queued);
	one(o, "moat_message_memory_bytes", "gauge",
	    "Bytes held by messages and queues (counted against memory_limit).",
	    moat_mem_used(&b->msg_mem));
}

static void messages(struct moat_json *o, const struct totals *t)
{
	char l[64];

	family(o, "moat_messages_received_total", "counter", "PUBLISH packets received, by QoS.");
	for (int q = 0; q < 3; q++) {
		snprintf(l, sizeof(l), "{qos=\"%d\"}", q);
		sample(o, "moat_messages_received_total", l, t->rx_qos[q]);
	}
	family(o, "moat_messages_sent_total", "counter", "PUBLISH packets sent, by QoS.");
	for (int q = 0; q < 3; q++) {
		snprintf(l, sizeof(l), "{qos=\"%d\"}", q);
		sample(o, "moat_messages_sent_total", l, t->tx_qos[q]);
	}
	family(o, "moat_messages_dropped_total", "counter",
	       "Messages dropped (not delivered to a subscriber, or refused), by reason.");
	for (int r = 0; r < DROP_REASONS; r++) {
		snprintf(l, sizeof(l), "{reason=\"%s\"}", drop_names[r]);
		sample(o, "moat_messages_dropped_total", l, t->dropped[r]);
	}
	one(o, "moat_bytes_received_total", "counter", "Bytes received from clients.", t->bytes_rx);
	one(o, "moat_bytes_sent_total", "counter", "Bytes sent to clients.", t->bytes_tx);
}

static void security(struct moat_json *o, struct moat_broker *b)
{
	char l[128];
	uint64_t ok, failed;
	const char *m;

	family(o, "moat_security_events_total", "counter", "Security events emitted, by kind.");
	for (int k = 0; k < MOAT_SEC_KIND_COUNT; k++) {
		snprintf(l, sizeof(l), "{kind=\"%s\"}", moat_sec_kind_name(k));
		sample(o, "moat_security_events_total", l, moat_sec_count(k));
	}
	family(o, "moat_auth_total", "counter", "Authentications at CONNECT, by method and result.");
	for (unsigned i = 0; (m = moat_sec_auth_method(i)); i++) {
		snprintf(l, sizeof(l), "{method=\"%s\",result=\"success\"}", m);
		sample(o, "moat_auth_total", l, moat_sec_auth_count(i, true));
		snprintf(l, sizeof(l), "{method=\"%s\",result=\"failure\"}", m);
		sample(o, "moat_auth_total", l, moat_sec_auth_count(i, false));
	}
	one(o, "moat_acl_denials_total", "counter",
	    "Publishes, subscriptions and wills the ACL refused.", moat_sec_count(MOAT_SEC_ACL_DENIED));
	one(o, "moat_detections_total", "counter", "Thresholds the sentinel's detectors crossed.",
	    moat_sec_count(MOAT_SEC_DETECTION));
	one(o, "moat_bans", "gauge", "Bans in force.",
	    b->bans ? moat_bans_count(b->bans, moat_now_ms()) : 0);
	moat_tls_handshake_counts(&ok, &failed);
	family(o, "moat_tls_handshakes_total", "counter",
	       "TLS handshakes of client connections, by result.");
	sample(o, "moat_tls_handshakes_total", "{result=\"success\"}", ok);
	sample(o, "moat_tls_handshakes_total", "{result=\"failure\"}", failed);
}

static void store(struct moat_json *o, struct moat_broker *b)
{
	struct moat_store_stats st;

	if (!b->store)
		return;
	moat_store_stats(b->store, &st);
	one(o, "moat_store_commits_total", "counter", "Store transactions.", st.commits);
	one(o, "moat_store_writes_total", "counter", "Store rows written or deleted.", st.writes);
	one(o, "moat_store_failed_total", "counter", "Store writes whose transaction failed.",
	    st.failed);
	family(o, "moat_store_commit_seconds", "summary", "Time spent in store transactions.");
	put(o, "moat_store_commit_seconds_sum %.9f\n", (double)st.commit_ns / 1e9);
	sample(o, "moat_store_commit_seconds_count", "", st.commits);
	one(o, "moat_store_key_generation", "gauge",
	    "Generation of the store's data key (1 for a new store, + 1 per rotation).",
	    st.generation);
}

int admin_metrics(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	struct totals t;

	(void)req;
	sum(b, &t);
	family(o, "moat_build_info", "gauge", "The broker's version, as a label.");
	put(o, "moat_build_info{version=\"%s\"} 1\n", MOAT_VERSION);
	gauge_signed(o, "moat_uptime_seconds", "Seconds since moatd started.",
		     moat_wall_s() - b->started_at);
	clients(o, b, &t);
	messages(o, &t);
	security(o, b);
	store(o, b);
	return 200 | MOAT_ADMIN_TEXT;
}
