/*
 * sentinel.c - detection and response (see sentinel.h).
 *
 * Workers hand events to moat_sentinel_submit, which packs a copy (strings
 * cut to fixed caps, on a UTF-8 boundary) into one allocation and appends it
 * to a FIFO under a mutex; past queue_max the copy is dropped and counted, so
 * a worker never waits for the sentinel and an event flood cannot take
 * memory. The sentinel thread takes the whole FIFO at once and, for each
 * event, in order:
 *
 *   audit line -> ops->publish -> detectors -> availability -> trust score
 *
 * and once a second (or when an event arrives after a second) a tick drops
 * keys whose windows have emptied and offences past offence_memory_s.
 *
 * Detectors are rows of a table: which event kinds feed the row, and the
 * keys it counts by (address, address prefix, user name, client id), each
 * with a threshold scale and whether crossing it acts or only reports. A
 * key's window is a ring of WIN_BUCKETS counters spanning window_s; an event
 * counts for between window_s * (1 - 1/WIN_BUCKETS) and window_s. When a
 * key's count reaches its threshold the sentinel reports a detection and
 * runs the row's action (log, disconnect, throttle, ban), unless the
 * allow-list covers the key or the event's address; then it clears that
 * key's window. Addresses come as the broker prints them ("192.0.2.7:51234",
 * "[2001:db8::1]:1883"); keys, bans and ops use the host alone, with an
 * IPv4-mapped IPv6 address taken as IPv4.
 *
 * The sentinel's own events (detection, banned, availability) take the same
 * path as a worker's, minus the detectors, on this thread. They also go
 * through moat_sec_emit for the log line, the counters and any other sink;
 * a thread-local mark makes moat_sentinel_submit ignore them if the broker's
 * sink would hand them back, so there is no loop.
 *
 * Invariants:
 * - every table (per detector, offences, availability, trust by address and
 *   by client id) holds at most max_keys entries of fixed size; a new key
 *   evicts the least recently seen one, so memory does not grow with the
 *   number of distinct attackers;
 * - keys are stored as a keyed 64-bit hash of (key type, key text): entries
 *   are fixed-size, and the text an action needs is the triggering event's;
 * - detector, offence and availability tables belong to the sentinel thread
 *   (or to the caller of moat_sentinel_feed); the trust tables are also read
 *   by moat_sentinel_trust, under trust_lock;
 * - ops are never called with every field NULL (that would match everyone).
 */
#include "security/sentinel.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "core/map.h"

#define WIN_BUCKETS 10
#define TICK_MS 1000
/*
 * After the first event of a burst wakes it, the thread gathers more for up
 * to GATHER_MS (or until the queue is half full) and takes them in one batch:
 * a connection storm then costs a few wake-ups a second, not two context
 * switches per connection. Detection is that much later, which no response
 * notices.
 */
#define GATHER_MS 5
#define TRUST_START 50
#define TRUST_LOW 20   /* at or below, a repeat offence climbs two ban steps */
#define TRUST_QUIET_MS (10 * 60 * 1000) /* one point back per 10 minutes without trouble */

_Static_assert(MOAT_SEC_KIND_COUNT <= 32, "event kinds must fit a 32-bit mask");

/* ---- names ---- */

enum key_type { KEY_NONE = 0, KEY_ADDR, KEY_PREFIX, KEY_USER, KEY_CLIENTID };

struct key_spec {
	uint8_t type;   /* enum key_type; KEY_NONE ends the list */
	uint8_t scale;  /* this key's threshold is the detector's times scale */
	bool acts;      /* false: crossing it is reported, never acted on */
};

struct det_row {
	const char *name;
	uint32_t kinds; /* mask of the event kinds that feed the detector */
	struct key_spec keys[2];
	uint8_t reason_code; /* the MQTT 5 DISCONNECT reason when it disconnects (0: 0x98) */
	bool probes_only;    /* counts only events whose value is non-zero (topic_scan: probes;
			      * publish_flood: over the configured rate, not during a throttle) */
};

#define K(kind) (1u << (kind))

/*
 * The detectors. A prefix holds many hosts (a NAT, a campus), so its
 * connection count only reports, at ten times the per-address threshold.
 * Topic scans and ACL denials by address only report: one address may be a
 * gateway for a whole fleet, whose clients each touch their own topics; the
 * client id is the one acted on. A topic scan counts probes only: new
 * subscriptions, and new publish topics that reached no one or were denied.
 * A back end that sends a command to each of ten thousand devices touches
 * ten thousand topics, every one of them answered: that is not a scan.
 */
static const struct det_row rows[MOAT_DET_COUNT] = {
	[MOAT_DET_CONNECT_RATE] = { "connect_rate", K(MOAT_SEC_CONNECTION_OPENED),
				    { { KEY_ADDR, 1, true }, { KEY_PREFIX, 10, false } } },
	[MOAT_DET_AUTH_FAIL_ADDR] = { "auth_fail_addr", K(MOAT_SEC_AUTH_FAILURE),
				      { { KEY_ADDR, 1, true } } },
	[MOAT_DET_AUTH_FAIL_USER] = { "auth_fail_user", K(MOAT_SEC_AUTH_FAILURE),
				      { { KEY_USER, 1, true } } },
	[MOAT_DET_AUTH_FAIL_CLIENTID] = { "auth_fail_clientid", K(MOAT_SEC_AUTH_FAILURE),
					  { { KEY_CLIENTID, 1, true } } },
	[MOAT_DET_ABNORMAL_CLOSE] = { "abnormal_close", K(MOAT_SEC_ABNORMAL_CLOSE),
				      { { KEY_CLIENTID, 1, true }, { KEY_ADDR, 1, true } } },
	[MOAT_DET_FLAPPING] = { "flapping", K(MOAT_SEC_AUTH_SUCCESS),
				{ { KEY_CLIENTID, 1, true }, { KEY_ADDR, 10, true } } },
	[MOAT_DET_TOPIC_SCAN] = { "topic_scan", K(MOAT_SEC_NEW_TOPIC),
				  { { KEY_CLIENTID, 1, true }, { KEY_ADDR, 1, false } }, 0, true },
	[MOAT_DET_ACL_DENIALS] = { "acl_denials", K(MOAT_SEC_ACL_DENIED),
				   { { KEY_CLIENTID, 1, true }, { KEY_ADDR, 1, false } } },
	[MOAT_DET_UNDELIVERABLE] = { "undeliverable", K(MOAT_SEC_NO_SUBSCRIBER),
				     { { KEY_CLIENTID, 1, true } } },
	[MOAT_DET_IDLE] = { "idle", K(MOAT_SEC_IDLE_CLIENT), { { KEY_ADDR, 1, true } } },
	[MOAT_DET_SLOWLORIS] = { "slowloris", K(MOAT_SEC_CONNECT_TIMEOUT),
				 { { KEY_ADDR, 1, true } } },
	[MOAT_DET_VIOLATIONS] = { "violations",
				  K(MOAT_SEC_PROTOCOL_VIOLATION) | K(MOAT_SEC_PACKET_TOO_LARGE),
				  { { KEY_ADDR, 1, true } } },
	[MOAT_DET_PUBLISH_FLOOD] = { "publish_flood", K(MOAT_SEC_RATE_LIMITED),
				     { { KEY_CLIENTID, 1, true } }, 0x96, true },
};

static const char *const action_names[] = { "log", "disconnect", "throttle", "ban" };

static const char *const key_names[] = { "-", "address", "prefix", "username", "client id" };

static const enum moat_ban_kind ban_kinds[] = {
	[KEY_ADDR] = MOAT_BAN_ADDR, [KEY_PREFIX] = MOAT_BAN_ADDR,
	[KEY_USER] = MOAT_BAN_USERNAME, [KEY_CLIENTID] = MOAT_BAN_CLIENTID,
};

const char *moat_detector_name(enum moat_detector d)
{
	return (unsigned)d < MOAT_DET_COUNT ? rows[d].name : "unknown";
}

int moat_detector_by_name(const char *name)
{
	for (int i = 0; i < MOAT_DET_COUNT; i++)
		if (name && strcmp(rows[i].name, name) == 0)
			return i;
	return -1;
}

const char *moat_action_name(enum moat_action a)
{
	return (unsigned)a <= MOAT_ACT_BAN ? action_names[a] : "unknown";
}

int moat_action_by_name(const char *name)
{
	for (int i = 0; i <= MOAT_ACT_BAN; i++)
		if (name && strcmp(action_names[i], name) == 0)
			return i;
	return -1;
}

/* ---- defaults ---- */

/*
 * Thresholds that stop a real attack and spare a real fleet. A fleet's
 * normal life: every device connects once, reconnects after a network blip
 * (all together after a broker restart), subscribes to a few topics, may
 * mistype a password a few times. An attack: thousands of passwords, thousands of
 * connections, topic sweeps, sockets held open without a CONNECT.
 */
#define ON(threshold, window_s, action) { true, window_s, threshold, action }

static const struct moat_detector_conf det_defaults[MOAT_DET_COUNT] = {
	/* 30 opens/s for 10 s from one host is a flood. Fleets behind one NAT
	 * reconnect at once after a broker restart, and clients spread their retries
	 * (paho: 1 to 120 s), so a few hundred devices stay under it; bigger ones:
	 * allow-list the NAT address or raise this. Prefixes (x10) only report. */
	[MOAT_DET_CONNECT_RATE] = ON(300, 10, MOAT_ACT_BAN),
	/* A person or device mistypes a few times; 10 a minute is guessing. */
	[MOAT_DET_AUTH_FAIL_ADDR] = ON(10, 60, MOAT_ACT_BAN),
	/* Credential stuffing on one account from many addresses; slower and
	 * higher because a ban here locks the real user out too (short first step). */
	[MOAT_DET_AUTH_FAIL_USER] = ON(20, 300, MOAT_ACT_BAN),
	/* One client id failing again and again: a stolen id being guessed or a broken device. */
	[MOAT_DET_AUTH_FAIL_CLIENTID] = ON(10, 60, MOAT_ACT_BAN),
	/* Dropped links happen on mobile networks: worth a line, not a response. */
	[MOAT_DET_ABNORMAL_CLOSE] = ON(20, 60, MOAT_ACT_LOG),
	/* A client id in a reconnect loop (two clients sharing an id kick each
	 * other out) burns the broker; one connect every 2 s for a minute. */
	[MOAT_DET_FLAPPING] = ON(30, 60, MOAT_ACT_BAN),
	/* A device uses tens of topics; 200 new ones a minute is a sweep. */
	[MOAT_DET_TOPIC_SCAN] = ON(200, 60, MOAT_ACT_DISCONNECT),
	/* A misconfigured ACL denies a few; 50 a minute is probing. */
	[MOAT_DET_ACL_DENIALS] = ON(50, 60, MOAT_ACT_DISCONNECT),
	/* Publishing before the subscribers are up is normal: report only. */
	[MOAT_DET_UNDELIVERABLE] = ON(500, 60, MOAT_ACT_LOG),
	/* Connect-and-wait clients (monitors, health checks) exist: report only. */
	[MOAT_DET_IDLE] = ON(100, 60, MOAT_ACT_LOG),
	/* Sockets that never finish CONNECT hold slots: 20 a minute is slowloris. */
	[MOAT_DET_SLOWLORIS] = ON(20, 60, MOAT_ACT_BAN),
	/* A correct client sends no malformed packets; 10 a minute is fuzzing or abuse. */
	[MOAT_DET_VIOLATIONS] = ON(10, 60, MOAT_ACT_BAN),
	/* A client is slowed for a second each time it goes over max_message_rate or
	 * max_byte_rate (they are off unless configured); a client that is still
	 * pushing after 20 such pauses in a minute is flooding, not bursting. */
	[MOAT_DET_PUBLISH_FLOOD] = ON(20, 60, MOAT_ACT_DISCONNECT),
};

/* 1 min, 10 min, 1 h, then a day for every later offence within offence memory. */
static const uint32_t ban_step_defaults[] = { 60, 600, 3600, 86400 };

void moat_sentinel_conf_defaults(struct moat_sentinel_conf *c)
{
	memset(c, 0, sizeof(*c));
	memcpy(c->det, det_defaults, sizeof(c->det));
	memcpy(c->ban_steps_s, ban_step_defaults, sizeof(ban_step_defaults));
	c->n_ban_steps = (int)(sizeof(ban_step_defaults) / sizeof(ban_step_defaults[0]));
	c->offence_memory_s = 86400; /* a day: a returning attacker climbs the steps */
	c->throttle_s = 30;          /* long enough to break a flood's rhythm */
	c->availability_min_s = 300; /* five minutes online makes a device "steady" */
	c->prefix4 = 24;             /* one subnet / one small provider block */
	c->prefix6 = 56;             /* what ISPs give a home or site */
	c->max_keys = 65536;         /* per table: ~10 MB worst case per detector */
	c->queue_max = 65536;        /* seconds of a heavy event storm */
}

/* ---- keyed tables with least-recently-seen eviction ---- */

struct ent {
	struct ent *newer, *older; /* the table's recency list */
	uint64_t h;                /* the map key: hash of (type, text) */
	int64_t seen_ms;
	union {
		struct { int64_t epoch; uint32_t n[WIN_BUCKETS]; } w; /* detector window */
		struct { uint32_t count; } off;                       /* offences; seen = last */
		struct { int64_t since_ms; } on;                      /* online since */
		struct { int score; int64_t credited_ms, bad_ms; } tr; /* trust */
	} u;
};

struct lru {
	struct moat_map map;
	struct ent *newest, *oldest;
	size_t max;
	_Atomic size_t n; /* map.len, readable from other threads */
};

static void lru_init(struct lru *l, size_t max)
{
	moat_map_init(&l->map, NULL);
	l->newest = l->oldest = NULL;
	l->max = max ? max : 1;
	atomic_init(&l->n, 0);
}

static void lru_unlink(struct lru *l, struct ent *e)
{
	*(e->newer ? &e->newer->older : &l->newest) = e->older;
	*(e->older ? &e->older->newer : &l->oldest) = e->newer;
}

static void lru_push(struct lru *l, struct ent *e)
{
	e->newer = NULL;
	e->older = l->newest;
	*(l->newest ? &l->newest->newer : &l->oldest) = e;
	l->newest = e;
}

static void lru_drop(struct lru *l, struct ent *e)
{
	lru_unlink(l, e);
	moat_map_del(&l->map, &e->h, sizeof(e->h));
	atomic_store_explicit(&l->n, l->map.len, memory_order_relaxed);
	free(e);
}

static struct ent *lru_find(const struct lru *l, uint64_t h)
{
	return moat_map_get(&l->map, &h, sizeof(h));
}

/*
 * Returns the entry for h, made (zeroed) if new, marked seen at now; NULL if
 * out of memory. A new entry in a full table evicts the least recently seen.
 */
static struct ent *lru_take(struct lru *l, uint64_t h, int64_t now, bool *fresh)
{
	struct ent *e = lru_find(l, h);

	*fresh = !e;
	if (e) {
		lru_unlink(l, e);
	} else {
		if (l->map.len >= l->max)
			lru_drop(l, l->oldest);
		if (!(e = calloc(1, sizeof(*e))))
			return NULL;
		e->h = h;
		if (moat_map_put(&l->map, &e->h, sizeof(e->h), e)) {
			free(e);
			return NULL;
		}
		atomic_store_explicit(&l->n, l->map.len, memory_order_relaxed);
	}
	e->seen_ms = now;
	lru_push(l, e);
	return e;
}

/* Drops the entries last seen before before_ms (the list is in seen order). */
static void lru_expire(struct lru *l, int64_t before_ms)
{
	while (l->oldest && l->oldest->seen_ms < before_ms)
		lru_drop(l, l->oldest);
}

static void lru_free(struct lru *l)
{
	while (l->oldest)
		lru_drop(l, l->oldest);
	moat_map_free(&l->map);
}

/* ---- the event queue ---- */

enum { F_ADDR, F_CLIENT_ID, F_USERNAME, F_METHOD, F_REASON, F_TOPIC, F_ACCESS, F_COUNT };

#define F_NULL UINT16_MAX

/* Where each string field lives in an event, and how many bytes of it are kept. */
static const size_t field_off[F_COUNT] = {
	offsetof(struct moat_sec_event, addr),	 offsetof(struct moat_sec_event, client_id),
	offsetof(struct moat_sec_event, username), offsetof(struct moat_sec_event, method),
	offsetof(struct moat_sec_event, reason),   offsetof(struct moat_sec_event, topic),
	offsetof(struct moat_sec_event, access),
};
/* client ids and user names as bans can hold them (255); topics as logs want them. */
static const uint16_t field_cap[F_COUNT] = { 64, 255, 255, 32, 255, 512, 16 };

#define FIELD(e, f) (*(const char **)((char *)(e) + field_off[f]))
#define CFIELD(e, f) (*(const char *const *)((const char *)(e) + field_off[f]))

/* One queued event: the fields, then the strings packed after it. */
struct rec {
	struct rec *next;
	int64_t now_ms, wall_ms, value;
	uint16_t kind, port;
	uint16_t off[F_COUNT]; /* into text; F_NULL for a NULL field */
	char text[];
};

/* Bytes of s kept under cap, cut back so a UTF-8 sequence is never split. */
static size_t kept(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap + 1);

	if (n > cap) {
		n = cap;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	return n;
}

/* Returns an owned copy of e (free()), or NULL if out of memory. */
static struct rec *rec_new(const struct moat_sec_event *e, int64_t now_ms, int64_t wall_ms)
{
	size_t len[F_COUNT], total = 0, at = 0;
	struct rec *r;
	int f;

	for (f = 0; f < F_COUNT; f++) {
		const char *v = CFIELD(e, f);
		len[f] = v ? kept(v, field_cap[f]) : 0;
		total += v ? len[f] + 1 : 0;
	}
	if (!(r = malloc(sizeof(*r) + total)))
		return NULL;
	*r = (struct rec){ .now_ms = now_ms, .wall_ms = wall_ms, .value = e->value,
			   .kind = (uint16_t)e->kind, .port = e->port };
	for (f = 0; f < F_COUNT; f++) {
		const char *v = CFIELD(e, f);
		r->off[f] = v ? (uint16_t)at : F_NULL;
		if (v) {
			memcpy(r->text + at, v, len[f]);
			r->text[at + len[f]] = 0;
			at += len[f] + 1;
		}
	}
	return r;
}

/* Fills e with r's fields (borrowed from r). */
static void rec_event(struct rec *r, struct moat_sec_event *e)
{
	*e = (struct moat_sec_event){ .kind = (enum moat_sec_kind)r->kind, .port = r->port,
				      .value = r->value };
	for (int f = 0; f < F_COUNT; f++)
		FIELD(e, f) = r->off[f] == F_NULL ? NULL : r->text + r->off[f];
}

/* ---- the sentinel ---- */

struct moat_sentinel {
	struct moat_sentinel_conf c;
	struct moat_bans *bans;     /* borrowed, may be NULL */
	struct moat_audit *audit;   /* borrowed, may be NULL */
	struct moat_sentinel_ops ops;

	pthread_mutex_t lock;       /* the queue */
	pthread_cond_t wake;
	struct rec *head, *tail;
	uint32_t queued;
	struct moat_sentinel_conf next_c; /* a new configuration for the thread to take */
	bool reconf;
	bool gathering;                 /* the thread waits for more: no need to wake it */
	bool stop, threaded;
	pthread_t thread;
	atomic_uint_fast64_t dropped;

	struct lru det[MOAT_DET_COUNT]; /* sentinel thread's */
	struct lru offences;            /* ban offences per key (all detectors) */
	struct lru online;              /* client ids and when they came online */
	pthread_mutex_t trust_lock;
	struct lru trust_addr, trust_cid;
	int64_t last_now, next_tick;
	bool audit_failing;
};

/* Set while the sentinel emits its own event, so its sink does not resubmit it. */
static _Thread_local const struct moat_sentinel *emitting;

/* An event as the sentinel sees it: the fields, the parsed address and its prefix. */
struct view {
	const struct moat_sec_event *e;
	int64_t now, wall;
	int family; /* AF_INET, AF_INET6, or 0 if addr is not an IP address */
	unsigned char ip[16];
	char host[INET6_ADDRSTRLEN];
	char prefix[INET6_ADDRSTRLEN + 4];
};

/* A key an event is counted under: its type, text (NUL-terminated) and hash. */
struct key {
	uint8_t type;
	const char *text;
	uint64_t h;
};

static uint64_t key_hash(uint8_t type, const char *text)
{
	char buf[1 + 512];
	size_t n = strlen(text);

	if (n > sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	buf[0] = (char)type;
	memcpy(buf + 1, text, n);
	return moat_hash(buf, n + 1);
}

/*
 * Reads the host out of "1.2.3.4", "1.2.3.4:port", "[v6]:port" or "v6" into
 * host (cap bytes). Returns false if there is none.
 */
static bool addr_host(const char *s, char *host, size_t cap)
{
	const char *end, *colon = s ? strchr(s, ':') : NULL;

	if (!s || !*s)
		return false;
	if (*s == '[') {
		s++;
		end = strchr(s, ']');
	} else {
		end = colon && !strchr(colon + 1, ':') ? colon : s + strlen(s);
	}
	if (!end || (size_t)(end - s) >= cap)
		return false;
	memcpy(host, s, (size_t)(end - s));
	host[end - s] = 0;
	return true;
}

/* Parses e->addr into v (an IPv4-mapped IPv6 address counts as IPv4). */
static void view_addr(struct view *v, uint8_t prefix4, uint8_t prefix6)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	unsigned char net[16];
	char host[INET6_ADDRSTRLEN];
	int bits, len, i;

	v->family = 0;
	if (!addr_host(v->e->addr, host, sizeof(host)))
		return;
	if (inet_pton(AF_INET, host, v->ip) == 1) {
		v->family = AF_INET;
	} else if (inet_pton(AF_INET6, host, v->ip) == 1) {
		v->family = AF_INET6;
		if (memcmp(v->ip, mapped, 12) == 0) {
			memmove(v->ip, v->ip + 12, 4);
			v->family = AF_INET;
		}
	} else {
		return;
	}
	inet_ntop(v->family, v->ip, v->host, sizeof(v->host));
	len = v->family == AF_INET ? 4 : 16;
	bits = v->family == AF_INET ? (prefix4 > 32 ? 32 : prefix4) :
				      (prefix6 > 128 ? 128 : prefix6);
	for (i = 0; i < len; i++) {
		int keep = bits - i * 8;
		net[i] = keep >= 8 ? v->ip[i] :
			 keep <= 0 ? 0 : (unsigned char)(v->ip[i] & (0xff00 >> keep));
	}
	inet_ntop(v->family, net, v->prefix, INET6_ADDRSTRLEN);
	snprintf(v->prefix + strlen(v->prefix), 5, "/%d", bits);
}

static void view_init(struct view *v, const struct moat_sentinel *s, const struct moat_sec_event *e,
		      int64_t now, int64_t wall)
{
	v->e = e;
	v->now = now;
	v->wall = wall;
	view_addr(v, s->c.prefix4, s->c.prefix6);
}

/* The key of type t in v; false if the event has none. */
static bool key_of(const struct view *v, uint8_t t, struct key *k)
{
	const char *text = t == KEY_ADDR ? (v->family ? v->host : NULL) :
			   t == KEY_PREFIX ? (v->family ? v->prefix : NULL) :
			   t == KEY_USER ? v->e->username :
			   t == KEY_CLIENTID ? v->e->client_id : NULL;

	if (!text || !*text)
		return false;
	*k = (struct key){ .type = t, .text = text, .h = key_hash(t, text) };
	return true;
}

/* ---- trust ---- */

/* How each event kind moves the trust of its address and client id. */
static const int8_t trust_delta[MOAT_SEC_KIND_COUNT] = {
	[MOAT_SEC_AUTH_SUCCESS] = 1,	     [MOAT_SEC_AUTH_FAILURE] = -2,
	[MOAT_SEC_ACL_DENIED] = -1,	     [MOAT_SEC_CERT_REVOKED] = -20,
	[MOAT_SEC_CREDENTIAL_REVOKED] = -20, [MOAT_SEC_PROTOCOL_VIOLATION] = -5,
	[MOAT_SEC_ABNORMAL_CLOSE] = -1,	     [MOAT_SEC_CONNECT_TIMEOUT] = -2,
	[MOAT_SEC_PACKET_TOO_LARGE] = -3,    [MOAT_SEC_IDLE_CLIENT] = -1,
	[MOAT_SEC_RATE_LIMITED] = -2,	     [MOAT_SEC_BAN_HIT] = -5,
	[MOAT_SEC_BANNED] = -20,	     [MOAT_SEC_KICKED] = -5,
	[MOAT_SEC_DETECTION] = -10,
};

/* e's score at now, with a point back for every quiet TRUST_QUIET_MS since the last credit. */
static int trust_at(const struct ent *e, int64_t now, int64_t *credited)
{
	int64_t base = e->u.tr.credited_ms > e->u.tr.bad_ms ? e->u.tr.credited_ms : e->u.tr.bad_ms;
	int64_t n = now > base ? (now - base) / TRUST_QUIET_MS : 0;
	int64_t score = e->u.tr.score + n;

	*credited = base + n * TRUST_QUIET_MS;
	return score > 100 ? 100 : (int)score;
}

static void trust_move(struct lru *l, uint64_t h, int delta, int64_t now)
{
	bool fresh;
	struct ent *e = lru_take(l, h, now, &fresh);
	int score;

	if (!e)
		return;
	if (fresh) {
		e->u.tr.score = TRUST_START;
		e->u.tr.credited_ms = now;
	}
	score = trust_at(e, now, &e->u.tr.credited_ms) + delta;
	e->u.tr.score = score < 0 ? 0 : score > 100 ? 100 : score;
	if (delta < 0)
		e->u.tr.bad_ms = now;
}

static void trust_apply(struct moat_sentinel *s, const struct view *v)
{
	int d = trust_delta[v->e->kind];
	struct key k;

	if (!d)
		return;
	pthread_mutex_lock(&s->trust_lock);
	if (key_of(v, KEY_ADDR, &k))
		trust_move(&s->trust_addr, k.h, d, v->now);
	if (key_of(v, KEY_CLIENTID, &k))
		trust_move(&s->trust_cid, k.h, d, v->now);
	pthread_mutex_unlock(&s->trust_lock);
}

int moat_sentinel_trust(struct moat_sentinel *s, const char *addr, const char *client_id)
{
	struct moat_sec_event e = { .addr = addr, .client_id = client_id };
	struct view v = { .e = &e };
	struct lru *l;
	struct ent *en;
	struct key k;
	int64_t unused;
	int score = TRUST_START;

	view_addr(&v, 32, 128);
	if (addr ? !key_of(&v, KEY_ADDR, &k) : !key_of(&v, KEY_CLIENTID, &k))
		return TRUST_START;
	l = addr ? &s->trust_addr : &s->trust_cid;
	pthread_mutex_lock(&s->trust_lock);
	if ((en = lru_find(l, k.h)))
		score = trust_at(en, s->threaded ? moat_now_ms() : s->last_now, &unused);
	pthread_mutex_unlock(&s->trust_lock);
	return score;
}

/* The trust of the address or client id a key names; TRUST_START for other keys or strangers. */
static int key_trust(struct moat_sentinel *s, const struct key *k, int64_t now)
{
	struct lru *l = k->type == KEY_ADDR ? &s->trust_addr :
			k->type == KEY_CLIENTID ? &s->trust_cid : NULL;
	struct ent *e;
	int64_t unused;
	int score = TRUST_START;

	if (!l)
		return score;
	pthread_mutex_lock(&s->trust_lock);
	if ((e = lru_find(l, k->h)))
		score = trust_at(e, now, &unused);
	pthread_mutex_unlock(&s->trust_lock);
	return score;
}

/* ---- delivering an event ---- */

/* The audit line and the $SYS publication. */
static void record(struct moat_sentinel *s, const struct view *v)
{
	if (s->audit) {
		bool failed = moat_audit_write(s->audit, v->e, v->wall) != 0;
		if (failed != s->audit_failing) /* once per change, not once per event */
			moat_log(failed ? MOAT_LOG_LVL_ERROR : MOAT_LOG_LVL_NOTICE,
				 "sentinel: audit log %s", failed ? "write failed" : "writing again");
		s->audit_failing = failed;
	}
	if (s->ops.publish)
		s->ops.publish(s->ops.ctx, v->e);
}

/* One of the sentinel's own events: logged and counted, recorded, scored. */
static void emit_own(struct moat_sentinel *s, const struct moat_sec_event *e, const struct view *at)
{
	struct view v;

	emitting = s;
	moat_sec_emit(e);
	emitting = NULL;
	view_init(&v, s, e, at->now, at->wall);
	record(s, &v);
	trust_apply(s, &v);
}

/* An own event about key k (its field set, the others NULL). */
static void emit_about(struct moat_sentinel *s, enum moat_sec_kind kind, const struct key *k,
		       const char *reason, int64_t value, const struct view *at)
{
	struct moat_sec_event e = { .kind = kind, .reason = reason, .value = value, .addr = "" };

	if (k->type == KEY_ADDR || k->type == KEY_PREFIX)
		e.addr = k->text;
	else if (k->type == KEY_USER)
		e.username = k->text;
	else
		e.client_id = k->text;
	emit_own(s, &e, at);
}

/* ---- responses ---- */

struct hit {
	const struct key *k;
	const struct view *v;
	const char *why; /* "auth_fail_addr: 10 in 60 s" */
	uint8_t reason_code; /* MQTT 5 DISCONNECT reason */
};

/* Asks the broker to disconnect the key's clients (never all clients). */
static void disconnect(struct moat_sentinel *s, const struct hit *h)
{
	const char *t = h->k->text;
	uint8_t ty = h->k->type;

	if (s->ops.disconnect && ty != KEY_PREFIX)
		s->ops.disconnect(s->ops.ctx, ty == KEY_ADDR ? t : NULL,
				  ty == KEY_CLIENTID ? t : NULL, ty == KEY_USER ? t : NULL, h->why,
				  h->reason_code);
}

static void act_log(struct moat_sentinel *s, const struct hit *h)
{
	(void)s;
	(void)h;
}

static void act_throttle(struct moat_sentinel *s, const struct hit *h)
{
	uint8_t ty = h->k->type;

	/* a user name is not something the broker can throttle by */
	if (s->ops.throttle && (ty == KEY_ADDR || ty == KEY_CLIENTID))
		s->ops.throttle(s->ops.ctx, ty == KEY_ADDR ? h->k->text : NULL,
				ty == KEY_CLIENTID ? h->k->text : NULL, s->c.throttle_s);
}

/* Counts an offence of k at now; returns its number within offence memory (1 = first). */
static uint32_t offence(struct moat_sentinel *s, const struct key *k, int64_t now)
{
	struct ent *e = lru_find(&s->offences, k->h);
	bool fresh;

	if (e && now - e->seen_ms > (int64_t)s->c.offence_memory_s * 1000)
		e->u.off.count = 0;
	if (!(e = lru_take(&s->offences, k->h, now, &fresh)))
		return 1;
	if (e->u.off.count < UINT32_MAX)
		e->u.off.count++;
	return e->u.off.count;
}

static uint32_t ban_seconds(const struct moat_sentinel_conf *c, uint32_t nth)
{
	int steps = c->n_ban_steps < 1 ? 0 : c->n_ban_steps > MOAT_MAX_BAN_STEPS ?
						MOAT_MAX_BAN_STEPS : c->n_ban_steps;

	if (!steps)
		return 60;
	return c->ban_steps_s[nth > (uint32_t)steps ? (uint32_t)steps - 1 : nth - 1];
}

static void act_ban(struct moat_sentinel *s, const struct hit *h)
{
	uint32_t nth, secs;
	char reason[200];
	int rc, trust;

	if (!s->bans) {
		disconnect(s, h);
		return;
	}
	nth = offence(s, h->k, h->v->now);
	trust = key_trust(s, h->k, h->v->now);
	/* A repeat offender that has not earned any trust back since climbs two
	 * steps: one that behaved for hours between offences climbs one. */
	secs = ban_seconds(&s->c, nth >= 2 && trust <= TRUST_LOW ? nth + 1 : nth);
	snprintf(reason, sizeof(reason), "%s; offence %u, trust %d, %u s", h->why, nth, trust, secs);
	rc = moat_bans_add(s->bans, ban_kinds[h->k->type], h->k->text,
			   h->v->now + (int64_t)secs * 1000, reason);
	if (rc) {
		moat_log(MOAT_LOG_LVL_WARNING, "sentinel: could not ban a %s: %s",
			 key_names[h->k->type], moat_strerror(rc));
		return;
	}
	disconnect(s, h);
	emit_about(s, MOAT_SEC_BANNED, h->k, reason, secs, h->v);
}

static void act_disconnect(struct moat_sentinel *s, const struct hit *h)
{
	disconnect(s, h);
}

static void (*const actions[])(struct moat_sentinel *, const struct hit *) = {
	[MOAT_ACT_LOG] = act_log,
	[MOAT_ACT_DISCONNECT] = act_disconnect,
	[MOAT_ACT_THROTTLE] = act_throttle,
	[MOAT_ACT_BAN] = act_ban,
};

/* ---- detectors ---- */

/*
 * True if the allow-list covers the name the key counts, or the event's
 * address. Names the event merely claims (a failed login's user name, a
 * client id) spare only their own keys: an attacker who tries "admin" from
 * his own address must not make that address immune.
 */
static bool allowed(struct moat_sentinel *s, const struct key *k, const struct view *v)
{
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in in = { .sin_family = AF_INET };

	if (!s->bans)
		return false;
	if ((k->type == KEY_USER || k->type == KEY_CLIENTID) &&
	    moat_bans_allowed_name(s->bans, ban_kinds[k->type], k->text, strlen(k->text)))
		return true;
	if (v->family == AF_INET) {
		memcpy(&in.sin_addr, v->ip, 4);
		return moat_bans_allowed_addr(s->bans, (const struct sockaddr *)&in);
	}
	if (v->family == AF_INET6) {
		memcpy(&in6.sin6_addr, v->ip, 16);
		return moat_bans_allowed_addr(s->bans, (const struct sockaddr *)&in6);
	}
	return false;
}

/* Adds one event at now to window w of span_ms buckets; returns the window's count. */
static uint32_t window_add(struct ent *w, int64_t now, int64_t span_ms)
{
	int64_t ep = now / span_ms, i;
	uint64_t sum = 0;

	if (ep - w->u.w.epoch >= WIN_BUCKETS)
		memset(w->u.w.n, 0, sizeof(w->u.w.n));
	else
		for (i = w->u.w.epoch + 1; i <= ep; i++)
			w->u.w.n[i % WIN_BUCKETS] = 0;
	if (ep > w->u.w.epoch)
		w->u.w.epoch = ep;
	if (w->u.w.n[w->u.w.epoch % WIN_BUCKETS] < UINT32_MAX)
		w->u.w.n[w->u.w.epoch % WIN_BUCKETS]++;
	for (i = 0; i < WIN_BUCKETS; i++)
		sum += w->u.w.n[i];
	return sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
}

/* Key k of detector d reached its threshold with n events: report, then act. */
static void fire(struct moat_sentinel *s, int d, const struct key_spec *ks, const struct key *k,
		 uint32_t n, const struct view *v)
{
	const struct moat_detector_conf *dc = &s->c.det[d];
	char why[160], reason[200];
	bool spared = ks->acts && allowed(s, k, v);
	bool acts = ks->acts && !spared && dc->action <= MOAT_ACT_BAN;
	unsigned act = acts ? dc->action : MOAT_ACT_LOG;
	struct hit h = { k, v, why, rows[d].reason_code ? rows[d].reason_code : 0x98 };

	snprintf(why, sizeof(why), "%s: %u in %u s by %s", rows[d].name, n, dc->window_s,
		 key_names[k->type]);
	snprintf(reason, sizeof(reason), "%s -> %s%s", why, action_names[act],
		 spared ? " (allow-listed)" : "");
	emit_about(s, MOAT_SEC_DETECTION, k, reason, n, v);
	actions[act](s, &h);
}

static void count(struct moat_sentinel *s, int d, const struct key_spec *ks, const struct view *v)
{
	const struct moat_detector_conf *dc = &s->c.det[d];
	uint64_t thr = (uint64_t)dc->threshold * ks->scale;
	struct ent *e;
	struct key k;
	uint32_t n;
	bool fresh;

	if (!key_of(v, ks->type, &k) || !(e = lru_take(&s->det[d], k.h, v->now, &fresh)))
		return;
	n = window_add(e, v->now, (int64_t)dc->window_s * 1000 / WIN_BUCKETS);
	if (n < thr)
		return;
	memset(e->u.w.n, 0, sizeof(e->u.w.n));
	fire(s, d, ks, &k, n, v);
}

static void detect(struct moat_sentinel *s, const struct view *v)
{
	for (int d = 0; d < MOAT_DET_COUNT; d++) {
		const struct moat_detector_conf *dc = &s->c.det[d];
		if (!(rows[d].kinds & K(v->e->kind)) || !dc->enabled || !dc->threshold ||
		    dc->window_s < 1 || (rows[d].probes_only && !v->e->value))
			continue;
		for (int i = 0; i < 2 && rows[d].keys[i].type != KEY_NONE; i++)
			count(s, d, &rows[d].keys[i], v);
	}
}

/* ---- availability ---- */

/* Kinds that end a session; those marked true report a steady client going missing. */
static const struct { bool ends, reports; } session_end[MOAT_SEC_KIND_COUNT] = {
	[MOAT_SEC_KEEPALIVE_TIMEOUT] = { true, true },
	[MOAT_SEC_ABNORMAL_CLOSE] = { true, true },
	[MOAT_SEC_PROTOCOL_VIOLATION] = { true, false },
	[MOAT_SEC_KICKED] = { true, false },
	[MOAT_SEC_CERT_REVOKED] = { true, false },
	[MOAT_SEC_CREDENTIAL_REVOKED] = { true, false },
};

static void availability(struct moat_sentinel *s, const struct view *v)
{
	enum moat_sec_kind kind = v->e->kind;
	struct ent *e;
	struct key k;
	char reason[128];
	int64_t online_s;
	bool fresh;

	if (!s->c.availability_min_s || !key_of(v, KEY_CLIENTID, &k))
		return;
	if (kind == MOAT_SEC_AUTH_SUCCESS) {
		if ((e = lru_take(&s->online, k.h, v->now, &fresh)))
			e->u.on.since_ms = v->now;
		return;
	}
	if (!session_end[kind].ends || !(e = lru_find(&s->online, k.h)))
		return;
	online_s = (v->now - e->u.on.since_ms) / 1000;
	lru_drop(&s->online, e);
	if (!session_end[kind].reports || online_s < s->c.availability_min_s)
		return;
	snprintf(reason, sizeof(reason), "online %lld s, then %s", (long long)online_s,
		 moat_sec_kind_name(kind));
	emit_own(s, &(struct moat_sec_event){ .kind = MOAT_SEC_AVAILABILITY, .addr = v->e->addr,
					      .client_id = v->e->client_id,
					      .username = v->e->username, .reason = reason,
					      .port = v->e->port, .value = online_s }, v);
}

/* ---- processing ---- */

/* Forgets keys whose windows are empty and offences past memory. */
static void tick(struct moat_sentinel *s, int64_t now)
{
	int64_t memory_ms = (int64_t)s->c.offence_memory_s * 1000;

	for (int d = 0; d < MOAT_DET_COUNT; d++)
		lru_expire(&s->det[d], now - (int64_t)s->c.det[d].window_s * 1000);
	lru_expire(&s->offences, now - memory_ms);
	pthread_mutex_lock(&s->trust_lock);
	lru_expire(&s->trust_addr, now - memory_ms);
	lru_expire(&s->trust_cid, now - memory_ms);
	pthread_mutex_unlock(&s->trust_lock);
	s->next_tick = now + TICK_MS;
}

static void process(struct moat_sentinel *s, const struct moat_sec_event *e, int64_t now,
		    int64_t wall)
{
	struct view v;

	if ((unsigned)e->kind >= MOAT_SEC_KIND_COUNT)
		return;
	if (now < s->last_now) /* events from several threads may be a little out of order */
		now = s->last_now;
	s->last_now = now;
	view_init(&v, s, e, now, wall);
	record(s, &v);
	detect(s, &v);
	availability(s, &v);
	trust_apply(s, &v);
	if (now >= s->next_tick)
		tick(s, now);
}

/* Processes and frees a list of queued events. */
static void process_list(struct moat_sentinel *s, struct rec *r)
{
	struct moat_sec_event e;
	struct rec *next;

	for (; r; r = next) {
		next = r->next;
		rec_event(r, &e);
		process(s, &e, r->now_ms, r->wall_ms);
		free(r);
	}
}

/* Takes the whole queue (the caller holds the lock). */
static struct rec *take_all(struct moat_sentinel *s)
{
	struct rec *r = s->head;

	s->head = s->tail = NULL;
	s->queued = 0;
	return r;
}

/* Takes the detectors, ban steps and throttle of c; the tables and queue keep their sizes. */
static void apply_conf(struct moat_sentinel *s, const struct moat_sentinel_conf *c)
{
	memcpy(s->c.det, c->det, sizeof(s->c.det));
	memcpy(s->c.ban_steps_s, c->ban_steps_s, sizeof(s->c.ban_steps_s));
	s->c.n_ban_steps = c->n_ban_steps;
	s->c.offence_memory_s = c->offence_memory_s;
	s->c.throttle_s = c->throttle_s;
	s->c.availability_min_s = c->availability_min_s;
}

void moat_sentinel_reconfigure(struct moat_sentinel *s, const struct moat_sentinel_conf *c)
{
	if (!s || !c)
		return;
	if (!s->threaded) {
		apply_conf(s, c);
		return;
	}
	pthread_mutex_lock(&s->lock);
	s->next_c = *c;
	s->reconf = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
}

static void *run(void *arg)
{
	struct moat_sentinel *s = arg;
	struct timespec until;
	struct rec *list;
	int64_t now, synced = 0;
	bool stop, unsynced = false;

	for (;;) {
		pthread_mutex_lock(&s->lock);
		if (!s->head && !s->stop) {
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_sec += TICK_MS / 1000;
			pthread_cond_timedwait(&s->wake, &s->lock, &until);
		}
		if (s->head && !s->stop && s->queued < s->c.queue_max / 2) {
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_nsec += GATHER_MS * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			s->gathering = true;
			while (!s->stop && s->queued < s->c.queue_max / 2 &&
			       pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0)
				;
			s->gathering = false;
		}
		list = take_all(s);
		if (s->reconf) { /* between events: every event is judged by one configuration */
			apply_conf(s, &s->next_c);
			s->reconf = false;
		}
		stop = s->stop;
		pthread_mutex_unlock(&s->lock);
		process_list(s, list);
		unsynced |= list != NULL && s->audit;
		now = moat_now_ms();
		if (now >= s->next_tick)
			tick(s, now > s->last_now ? now : s->last_now);
		/* The audit log reaches the disk at least once a second (and at the end):
		 * a crash loses at most the last second of lines, never the chain. */
		if (unsynced && (now - synced >= 1000 || (stop && !list))) {
			moat_audit_sync(s->audit);
			unsynced = false;
			synced = now;
		}
		if (stop && !list)
			return NULL;
	}
}

void moat_sentinel_submit(struct moat_sentinel *s, const struct moat_sec_event *e)
{
	struct rec *r;

	if (!s || !e || emitting == s || (unsigned)e->kind >= MOAT_SEC_KIND_COUNT)
		return;
	if (!(r = rec_new(e, moat_now_ms(), moat_wall_ms()))) {
		atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (s->queued < s->c.queue_max) {
		*(s->tail ? &s->tail->next : &s->head) = r;
		s->tail = r;
		s->queued++;
		r = NULL;
		if (!s->gathering || s->queued == s->c.queue_max / 2)
			pthread_cond_signal(&s->wake);
	}
	pthread_mutex_unlock(&s->lock);
	if (r) {
		atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
		free(r);
	}
}

void moat_sentinel_feed(struct moat_sentinel *s, const struct moat_sec_event *e, int64_t now_ms)
{
	process(s, e, now_ms, moat_wall_ms());
}

uint64_t moat_sentinel_dropped(struct moat_sentinel *s)
{
	return atomic_load(&s->dropped);
}

size_t moat_sentinel_keys(struct moat_sentinel *s, enum moat_detector d)
{
	return (unsigned)d < MOAT_DET_COUNT ? atomic_load(&s->det[d].n) : 0;
}

size_t moat_sentinel_trust_keys(struct moat_sentinel *s)
{
	return atomic_load(&s->trust_addr.n) + atomic_load(&s->trust_cid.n);
}

/* ---- life ---- */

static struct moat_sentinel *make(const struct moat_sentinel_conf *c, struct moat_bans *bans,
				  struct moat_audit *audit, const struct moat_sentinel_ops *ops)
{
	struct moat_sentinel *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;

	if (!s)
		return NULL;
	s->c = *c;
	s->bans = bans;
	s->audit = audit;
	if (ops)
		s->ops = *ops;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->trust_lock, NULL);
	atomic_init(&s->dropped, 0);
	for (int d = 0; d < MOAT_DET_COUNT; d++)
		lru_init(&s->det[d], c->max_keys);
	lru_init(&s->offences, c->max_keys);
	lru_init(&s->online, c->max_keys);
	lru_init(&s->trust_addr, c->max_keys);
	lru_init(&s->trust_cid, c->max_keys);
	return s;
}

struct moat_sentinel *moat_sentinel_new_manual(const struct moat_sentinel_conf *c,
					       struct moat_bans *bans, struct moat_audit *audit,
					       const struct moat_sentinel_ops *ops)
{
	return make(c, bans, audit, ops);
}

struct moat_sentinel *moat_sentinel_new(const struct moat_sentinel_conf *c,
					struct moat_bans *bans, struct moat_audit *audit,
					const struct moat_sentinel_ops *ops)
{
	struct moat_sentinel *s = make(c, bans, audit, ops);

	if (!s)
		return NULL;
	if (pthread_create(&s->thread, NULL, run, s) != 0)
		goto fail;
	s->threaded = true;
	return s;
fail:
	moat_sentinel_free(s);
	return NULL;
}

void moat_sentinel_free(struct moat_sentinel *s)
{
	if (!s)
		return;
	if (s->threaded) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_signal(&s->wake);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->thread, NULL);
	}
	/* a manual sentinel drains what was submitted to it here */
	process_list(s, take_all(s));
	for (int d = 0; d < MOAT_DET_COUNT; d++)
		lru_free(&s->det[d]);
	lru_free(&s->offences);
	lru_free(&s->online);
	lru_free(&s->trust_addr);
	lru_free(&s->trust_cid);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->trust_lock);
	pthread_cond_destroy(&s->wake);
	free(s);
}
