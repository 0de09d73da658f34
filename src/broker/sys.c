/*
 * sys.c - $SYS topics (see sys.h).
 *
 * The main thread is not a worker, so it publishes through a worker-shaped
 * scratch struct with no loop: every delivery goes to the sessions' home
 * workers through their inboxes. Counters are summed from the workers'
 * single-writer statistics; loads are exponentially weighted moving
 * averages of per-minute rates over 1, 5 and 15 minutes, as Mosquitto does.
 */
#include "broker/sys.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"
#include "core/clock.h"
#include "security/audit.h"
#include "security/event.h"

enum { L_MSG_RX, L_MSG_TX, L_BYTES_RX, L_BYTES_TX, L_PUB_RX, L_PUB_TX, L_CONNECTS, L_N };

static const char *const load_names[L_N] = {
	"messages/received", "messages/sent", "bytes/received", "bytes/sent",
	"publish/received", "publish/sent", "connections",
};

struct moat_sys {
	struct moat_broker *b;
	struct moat_worker w; /* scratch for publish_message; no loop */
	uint64_t last[L_N];
	double load[L_N][3];
	int64_t last_ms;
	int64_t max_connected;
};

struct totals {
	uint64_t v[L_N];
	uint64_t dropped;
	int64_t connected, sessions;
};

static void sum(struct moat_broker *b, struct totals *t)
{
	int i;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < b->nworkers; i++) {
		struct moat_stats *st = &b->workers[i]->stats;
		t->v[L_MSG_RX] += atomic_load_explicit(&st->msgs_received, memory_order_relaxed);
		t->v[L_MSG_TX] += atomic_load_explicit(&st->msgs_sent, memory_order_relaxed);
		t->v[L_BYTES_RX] += atomic_load_explicit(&st->bytes_received, memory_order_relaxed);
		t->v[L_BYTES_TX] += atomic_load_explicit(&st->bytes_sent, memory_order_relaxed);
		t->v[L_PUB_RX] += atomic_load_explicit(&st->pub_received, memory_order_relaxed);
		t->v[L_PUB_TX] += atomic_load_explicit(&st->pub_sent, memory_order_relaxed);
		t->v[L_CONNECTS] += atomic_load_explicit(&st->connects, memory_order_relaxed);
		t->dropped += atomic_load_explicit(&st->msgs_dropped, memory_order_relaxed);
		t->connected += atomic_load_explicit(&st->clients_connected, memory_order_relaxed);
		t->sessions += atomic_load_explicit(&st->sessions, memory_order_relaxed);
	}
}

struct moat_sys *moat_sys_new(struct moat_broker *b)
{
	struct moat_sys *sys = calloc(1, sizeof(*sys));

	if (!sys)
		return NULL;
	sys->b = b;
	sys->w.b = b;
	sys->w.index = -1;
	sys->last_ms = moat_now_ms();
	return sys;
}

void moat_sys_free(struct moat_sys *sys)
{
	if (!sys)
		return;
	free(sys->w.targets);
	free(sys->w.subids);
	free(sys->w.dedup);
	free(sys);
}

static void put(struct moat_sys *sys, const char *topic, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void put(struct moat_sys *sys, const char *topic, const char *fmt, ...)
{
	char payload[128];
	va_list ap;
	int n;
	struct moat_msg *m;

	va_start(ap, fmt);
	n = vsnprintf(payload, sizeof(payload), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	m = moat_msg_new(&sys->b->msg_mem, topic, strlen(topic), NULL, 0, payload,
			 (size_t)n < sizeof(payload) ? (size_t)n : sizeof(payload) - 1, 0, true, 0, 0);
	if (!m)
		return;
	moat_retain_set(sys->b->retain, m);
	publish_message(&sys->w, m);
	moat_msg_unref(m);
}

static void loads(struct moat_sys *sys, const struct totals *t, double secs)
{
	static const double minutes[3] = {1, 5, 15};
	static const char *const suffix[3] = {"1min", "5min", "15min"};
	char topic[96];
	int i, k;

	for (i = 0; i < L_N; i++) {
		double rate = secs > 0 ? (double)(t->v[i] - sys->last[i]) * 60.0 / secs : 0;
		sys->last[i] = t->v[i];
		for (k = 0; k < 3; k++) {
			double f = exp(-secs / (60.0 * minutes[k]));
			sys->load[i][k] = rate + f * (sys->load[i][k] - rate);
			snprintf(topic, sizeof(topic), "$SYS/broker/load/%s/%s", load_names[i], suffix[k]);
			put(sys, topic, "%.2f", sys->load[i][k]);
		}
	}
}

void moat_sys_publish(struct moat_sys *sys)
{
	struct moat_broker *b = sys->b;
	int64_t now = moat_now_ms();
	struct totals t;

	sum(b, &t);
	if (t.connected > sys->max_connected)
		sys->max_connected = t.connected;
	put(sys, "$SYS/broker/version", "moat version %s", MOAT_VERSION);
	put(sys, "$SYS/broker/uptime", "%lld seconds", (long long)(moat_wall_s() - b->started_at));
	put(sys, "$SYS/broker/clients/connected", "%lld", (long long)t.connected);
	put(sys, "$SYS/broker/clients/active", "%lld", (long long)t.connected);
	put(sys, "$SYS/broker/clients/disconnected", "%lld", (long long)(t.sessions - t.connected));
	put(sys, "$SYS/broker/clients/inactive", "%lld", (long long)(t.sessions - t.connected));
	put(sys, "$SYS/broker/clients/total", "%lld", (long long)t.sessions);
	put(sys, "$SYS/broker/clients/maximum", "%lld", (long long)sys->max_connected);
	put(sys, "$SYS/broker/messages/received", "%llu", (unsigned long long)t.v[L_MSG_RX]);
	put(sys, "$SYS/broker/messages/sent", "%llu", (unsigned long long)t.v[L_MSG_TX]);
	put(sys, "$SYS/broker/publish/messages/received", "%llu", (unsigned long long)t.v[L_PUB_RX]);
	put(sys, "$SYS/broker/publish/messages/sent", "%llu", (unsigned long long)t.v[L_PUB_TX]);
	put(sys, "$SYS/broker/publish/messages/dropped", "%llu", (unsigned long long)t.dropped);
	put(sys, "$SYS/broker/bytes/received", "%llu", (unsigned long long)t.v[L_BYTES_RX]);
	put(sys, "$SYS/broker/bytes/sent", "%llu", (unsigned long long)t.v[L_BYTES_TX]);
	put(sys, "$SYS/broker/subscriptions/count", "%zu", moat_subs_count(b->subs));
	put(sys, "$SYS/broker/retained messages/count", "%zu", moat_retain_count(b->retain));
	put(sys, "$SYS/broker/heap/current", "%zu", moat_mem_used(&b->msg_mem) + moat_mem_used(&b->conn_mem));
	/* the sentinel's counters: every event kind, the bans in force, events it could not take */
	for (int k = 0; k < MOAT_SEC_KIND_COUNT; k++) {
		char topic[96];
		snprintf(topic, sizeof(topic), "$SYS/moat/events/%s", moat_sec_kind_name(k));
		put(sys, topic, "%llu", (unsigned long long)moat_sec_count(k));
	}
	if (b->bans)
		put(sys, "$SYS/moat/bans/count", "%zu", moat_bans_count(b->bans, now));
	if (b->sentinel)
		put(sys, "$SYS/moat/sentinel/dropped", "%llu",
		    (unsigned long long)moat_sentinel_dropped(b->sentinel));
	loads(sys, &t, (double)(now - sys->last_ms) / 1000.0);
	sys->last_ms = now;
}

/* ---- security events ---- */

static void heard(void *ctx, struct moat_session *s, uint8_t opts, uint32_t subid, bool shared)
{
	(void)s, (void)opts, (void)subid, (void)shared;
	*(bool *)ctx = true;
}

/* Whether a subscription matches topic (the security events are not retained). */
static bool listened(struct moat_sys *sys, const char *topic)
{
	bool any = false;

	moat_subs_match(sys->b->subs, (const uint8_t *)topic, strlen(topic), heard, &any);
	return any;
}

void moat_sys_security(struct moat_sys *sys, const struct moat_sec_event *e)
{
	/* the audit line's object (one JSON encoder for both), without its chain */
	char payload[4096], topic[96];
	struct moat_msg *m;
	size_t n;

	snprintf(topic, sizeof(topic), "$SYS/moat/security/%s", moat_sec_kind_name(e->kind));
	/* a connection storm makes two events a connection: format them only for a listener */
	if (!listened(sys, topic) || !(n = moat_audit_event_json(e, moat_wall_ms(), payload,
								   sizeof(payload))))
		return;
	m = moat_msg_new(&sys->b->msg_mem, topic, strlen(topic), NULL, 0, payload, n, 0, false, 0, 0);
	if (!m)
		return;
	publish_message(&sys->w, m);
	moat_msg_unref(m);
}
