/*
 * admin_events.c - the admin API's view of recent security events:
 *
 *   GET /v1/events[?limit=N][&kind=K]
 *
 * An event sink (security/event.h) keeps the last RING events, each as the
 * JSON object the audit log would write for it (moat_audit_event_json:
 * {"ts":...,"kind":...,"addr":...,...}), so the answer needs no audit log
 * and no sentinel. The answer is {"events":[...]}, oldest first, newest
 * last: the last N events kept (default 100, at most RING), of kind K if
 * given (400 for a kind name that does not exist).
 *
 * Not kept: connection_opened, new_topic and no_subscriber. They come with
 * ordinary traffic (every accept, every new topic, every PUBLISH nobody
 * receives, the kinds the log writes at debug level), and would push the
 * events an operator asks for out of the ring within seconds; they are
 * counted all the same (moat_security_events_total in GET /metrics). This
 * also keeps the sink off the per-message path.
 *
 * Memory is bounded: every string field is cut to FIELD_CUT bytes (at a
 * character boundary, with "...") before formatting, so a slot holds at most
 * a few KiB whatever a client sends.
 *
 * Threads: the sink runs on whatever thread emits (workers, the sentinel,
 * admin handlers); it formats outside the lock and only swaps a pointer
 * under it. The handler copies the chosen texts into its document under
 * the lock (bounded: RING slots).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "broker/internal.h"
#include "core/clock.h"
#include "security/audit.h"

#define RING 1000
#define LIMIT_DEFAULT 100
#define FIELD_CUT 256
#define SMALL 2048
/* Seven string fields at FIELD_CUT + "..." bytes, each byte escaped to 6 at worst, and the rest. */
#define LARGE (7 * (24 + (FIELD_CUT + 3) * 6) + 512)

static struct {
	pthread_mutex_t lock;
	char *text[RING];      /* owned; NULL when empty */
	uint32_t len[RING];
	uint8_t kind[RING];
	size_t next;           /* the slot of the next event */
	size_t n;              /* slots in use, up to RING */
} ring = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool kept(enum moat_sec_kind k)
{
	return k != MOAT_SEC_CONNECTION_OPENED && k != MOAT_SEC_NEW_TOPIC &&
	       k != MOAT_SEC_NO_SUBSCRIBER;
}

/* s cut to FIELD_CUT bytes at a character boundary, with "...", in buf; or s itself. */
static const char *cut(const char *s, char *buf)
{
	size_t n;

	if (!s || strnlen(s, FIELD_CUT + 1) <= FIELD_CUT)
		return s;
	n = FIELD_CUT;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--; /* s[n] continues a character: cut before it */
	memcpy(buf, s, n);
	memcpy(buf + n, "...", 4);
	return buf;
}

static void sink(void *ctx, const struct moat_sec_event *e0)
{
	char small[SMALL], bufs[7][FIELD_CUT + 4], *big = NULL, *text, *old;
	struct moat_sec_event e = *e0;
	int64_t now = moat_wall_ms();
	size_t n;

	(void)ctx;
	if (!kept(e.kind))
		return;
	e.addr = cut(e.addr, bufs[0]);
	e.client_id = cut(e.client_id, bufs[1]);
	e.username = cut(e.username, bufs[2]);
	e.method = cut(e.method, bufs[3]);
	e.reason = cut(e.reason, bufs[4]);
	e.topic = cut(e.topic, bufs[5]);
	e.access = cut(e.access, bufs[6]);
	text = small;
	if (!(n = moat_audit_event_json(&e, now, small, sizeof(small)))) {
		if (!(big = malloc(LARGE)))
			return;
		text = big;
		n = moat_audit_event_json(&e, now, big, LARGE);
	}
	if (!n || !(text = big ? realloc(big, n + 1) : strdup(small))) {
		free(big);
		return;
	}
	pthread_mutex_lock(&ring.lock);
	old = ring.text[ring.next];
	ring.text[ring.next] = text;
	ring.len[ring.next] = (uint32_t)n;
	ring.kind[ring.next] = (uint8_t)e.kind;
	ring.next = (ring.next + 1) % RING;
	if (ring.n < RING)
		ring.n++;
	pthread_mutex_unlock(&ring.lock);
	free(old);
}

static void add_sink(void)
{
	moat_sec_add_sink(sink, NULL);
}

void admin_events_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, add_sink);
}

static int refuse(struct moat_json *o, const char *why)
{
	moat_json_begin_object(o);
	moat_json_kstring(o, "error", why);
	moat_json_end_object(o);
	return 400;
}

/* The kind named name, or -1. */
static int kind_of(const char *name)
{
	for (int k = 0; k < MOAT_SEC_KIND_COUNT; k++)
		if (strcmp(name, moat_sec_kind_name(k)) == 0)
			return k;
	return -1;
}

int admin_events(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	const char *limit = moat_admin_param(req, "limit"), *kname = moat_admin_param(req, "kind");
	size_t want = LIMIT_DEFAULT, found = 0, i;
	uint16_t pick[RING];
	int kind = -1;

	(void)ctx;
	if (limit) {
		char *end;
		long long v = strtoll(limit, &end, 10);
		if (!*limit || *end || v < 0 || v > RING)
			return refuse(o, "limit: 0 to 1000");
		want = (size_t)v;
	}
	if (kname && (kind = kind_of(kname)) < 0)
		return refuse(o, "kind: not a security event kind (see docs/security.md)");
	moat_json_begin_object(o);
	moat_json_key(o, "events");
	moat_json_begin_array(o);
	pthread_mutex_lock(&ring.lock);
	/* newest first into pick, then written oldest first */
	for (i = 0; i < ring.n && found < want; i++) {
		size_t slot = (ring.next + RING - 1 - i) % RING;
		if (kind < 0 || ring.kind[slot] == kind)
			pick[found++] = (uint16_t)slot;
	}
	while (found > 0) {
		size_t slot = pick[--found];
		moat_json_raw_value(o, ring.text[slot], ring.len[slot]);
	}
	pthread_mutex_unlock(&ring.lock);
	moat_json_end_array(o);
	moat_json_end_object(o);
	return 200;
}
