/*
 * test_sentinel.c - unit tests for the sentinel (src/security/sentinel.c).
 *
 * Runs manual sentinels (no thread, explicit monotonic milliseconds) against
 * fake broker ops that record every call, and a real ban table. Covers: the
 * name tables; the defaults; every detector firing at its threshold and not
 * one event below, with its response (ban of the right kind and expiry,
 * disconnect, log only, throttle); windows sliding; per-prefix aggregation
 * (IPv4 /24 and IPv6 /56) reporting without acting; the allow-list sparing
 * addresses and names; the window reset after a detection; ban durations
 * escalating for repeat offenders and starting over after offence memory;
 * availability events; trust scores; the memory bound under a million
 * distinct addresses; the queue bound, string truncation, the
 * no-loop rule for the sentinel's own events; the audit log receiving every
 * event; and the threaded mode delivering events from several threads, all
 * of them drained on free.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/map.h"
#include "security/sentinel.h"

/* ---- fake broker ops: every call recorded ---- */

struct call {
	char fn;                   /* 'd' disconnect, 't' throttle */
	char addr[64], cid[300], user[300], why[200];
	uint32_t secs;
	uint8_t reason_code;       /* disconnect: the MQTT 5 reason */
};

struct published {
	enum moat_sec_kind kind;
	char addr[64], cid[300], user[300], reason[256];
	int64_t value;
};

#define MAX_CALLS 64
#define MAX_PUB 256

static struct {
	struct call calls[MAX_CALLS];
	int ncalls;
	struct published pub[MAX_PUB]; /* sentinel-made events only */
	int npub;
	atomic_long published;         /* every publish */
} rec;

static void cpy(char *dst, size_t cap, const char *s)
{
	snprintf(dst, cap, "%s", s ? s : "");
}

static void fake_disconnect(void *ctx, const char *addr, const char *cid, const char *user,
			    const char *why, uint8_t reason_code)
{
	struct call *c = &rec.calls[rec.ncalls < MAX_CALLS ? rec.ncalls++ : MAX_CALLS - 1];

	(void)ctx;
	assert_true(addr || cid || user); /* never "everyone" */
	c->fn = 'd';
	cpy(c->addr, sizeof(c->addr), addr);
	cpy(c->cid, sizeof(c->cid), cid);
	cpy(c->user, sizeof(c->user), user);
	cpy(c->why, sizeof(c->why), why);
	c->reason_code = reason_code;
}

static void fake_throttle(void *ctx, const char *addr, const char *cid, uint32_t secs)
{
	struct call *c = &rec.calls[rec.ncalls < MAX_CALLS ? rec.ncalls++ : MAX_CALLS - 1];

	(void)ctx;
	assert_true(addr || cid);
	c->fn = 't';
	cpy(c->addr, sizeof(c->addr), addr);
	cpy(c->cid, sizeof(c->cid), cid);
	c->secs = secs;
}

static void fake_publish(void *ctx, const struct moat_sec_event *e)
{
	struct published *p;

	(void)ctx;
	atomic_fetch_add(&rec.published, 1);
	if (e->kind != MOAT_SEC_DETECTION && e->kind != MOAT_SEC_BANNED &&
	    e->kind != MOAT_SEC_AVAILABILITY)
		return;
	p = &rec.pub[rec.npub < MAX_PUB ? rec.npub++ : MAX_PUB - 1];
	p->kind = e->kind;
	cpy(p->addr, sizeof(p->addr), e->addr);
	cpy(p->cid, sizeof(p->cid), e->client_id);
	cpy(p->user, sizeof(p->user), e->username);
	cpy(p->reason, sizeof(p->reason), e->reason);
	p->value = e->value;
}

static const struct moat_sentinel_ops ops = {
	.disconnect = fake_disconnect, .throttle = fake_throttle, .publish = fake_publish
};

/* ---- helpers ---- */

static struct moat_bans *bans;

static void reset_rec(void)
{
	rec.ncalls = rec.npub = 0;
	atomic_store(&rec.published, 0);
}

static struct moat_sentinel *manual(const struct moat_sentinel_conf *c)
{
	struct moat_sentinel_conf d;

	if (!c) {
		moat_sentinel_conf_defaults(&d);
		c = &d;
	}
	reset_rec();
	moat_bans_free(bans);
	bans = moat_bans_new();
	assert_non_null(bans);
	struct moat_sentinel *s = moat_sentinel_new_manual(c, bans, NULL, &ops);
	assert_non_null(s);
	return s;
}

static void done(struct moat_sentinel *s)
{
	moat_sentinel_free(s);
	moat_bans_free(bans);
	bans = NULL;
}

static void feed(struct moat_sentinel *s, enum moat_sec_kind kind, const char *addr,
		 const char *cid, const char *user, int64_t now)
{
	/* new_topic events here are probes and rate_limited ones over the client's rates
	 * (value 1): what topic_scan and publish_flood count */
	struct moat_sec_event e = { .kind = kind, .addr = addr, .client_id = cid, .username = user,
				    .value = kind == MOAT_SEC_NEW_TOPIC || kind == MOAT_SEC_RATE_LIMITED };

	moat_sentinel_feed(s, &e, now);
}

/* How many sentinel events of kind were published; *last (may be NULL) gets the last one. */
static int npub(enum moat_sec_kind kind, const struct published **last)
{
	int n = 0;

	for (int i = 0; i < rec.npub; i++)
		if (rec.pub[i].kind == kind) {
			n++;
			if (last)
				*last = &rec.pub[i];
		}
	return n;
}

static bool addr_banned(const char *ip, int64_t now, struct moat_ban_info *info)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };

	if (inet_pton(AF_INET, ip, &in.sin_addr) == 1)
		return moat_bans_check_addr(bans, (struct sockaddr *)&in, now, info);
	assert_int_equal(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
	return moat_bans_check_addr(bans, (struct sockaddr *)&in6, now, info);
}

static bool name_banned(enum moat_ban_kind kind, const char *name, int64_t now,
			struct moat_ban_info *info)
{
	return moat_bans_check_name(bans, kind, name, strlen(name), now, info);
}

/* ---- names and defaults ---- */

static void test_names(void **state)
{
	(void)state;
	for (int d = 0; d < MOAT_DET_COUNT; d++)
		assert_int_equal(moat_detector_by_name(moat_detector_name(d)), d);
	assert_string_equal(moat_detector_name(MOAT_DET_AUTH_FAIL_ADDR), "auth_fail_addr");
	assert_string_equal(moat_detector_name(MOAT_DET_CONNECT_RATE), "connect_rate");
	assert_string_equal(moat_detector_name(MOAT_DET_VIOLATIONS), "violations");
	assert_int_equal(moat_detector_by_name("nope"), -1);
	assert_int_equal(moat_detector_by_name(NULL), -1);
	assert_string_equal(moat_detector_name(MOAT_DET_COUNT), "unknown");
	for (int a = MOAT_ACT_LOG; a <= MOAT_ACT_BAN; a++)
		assert_int_equal(moat_action_by_name(moat_action_name(a)), a);
	assert_string_equal(moat_action_name(MOAT_ACT_THROTTLE), "throttle");
	assert_int_equal(moat_action_by_name("kill"), -1);
	assert_string_equal(moat_action_name(9), "unknown");
}

static void test_defaults(void **state)
{
	struct moat_sentinel_conf c;

	(void)state;
	moat_sentinel_conf_defaults(&c);
	for (int d = 0; d < MOAT_DET_COUNT; d++) {
		assert_true(c.det[d].enabled);
		assert_true(c.det[d].threshold > 0);
		assert_true(c.det[d].window_s > 0);
	}
	assert_int_equal(c.det[MOAT_DET_AUTH_FAIL_ADDR].threshold, 10);
	assert_int_equal(c.det[MOAT_DET_AUTH_FAIL_ADDR].window_s, 60);
	assert_int_equal(c.det[MOAT_DET_AUTH_FAIL_ADDR].action, MOAT_ACT_BAN);
	assert_int_equal(c.det[MOAT_DET_AUTH_FAIL_USER].window_s, 300);
	assert_int_equal(c.det[MOAT_DET_CONNECT_RATE].threshold, 300);
	assert_int_equal(c.det[MOAT_DET_ABNORMAL_CLOSE].action, MOAT_ACT_LOG);
	assert_int_equal(c.n_ban_steps, 4);
	assert_int_equal(c.ban_steps_s[0], 60);
	assert_int_equal(c.ban_steps_s[3], 86400);
	assert_int_equal(c.offence_memory_s, 86400);
	assert_int_equal(c.prefix4, 24);
	assert_int_equal(c.prefix6, 56);
	assert_int_equal(c.max_keys, 65536);
	assert_int_equal(c.queue_max, 65536);
}

/* ---- every detector at its threshold ---- */

enum vary { SAME, VARY_ADDR };

struct det_case {
	enum moat_detector det;
	enum moat_sec_kind kind, kind2; /* kind2: alternate events, if not kind */
	const char *addr, *cid, *user;
	enum vary vary;                 /* SAME: every event alike; VARY_ADDR: a new address each */
	char expect;                    /* 'b' ban, 'd' disconnect, 'l' log only */
	enum moat_ban_kind ban;
	const char *key;                /* what is banned / disconnected */
};

static const struct det_case det_cases[] = {
	{ MOAT_DET_CONNECT_RATE, MOAT_SEC_CONNECTION_OPENED, 0, "192.0.2.7:40000", NULL, NULL, SAME,
	  'b', MOAT_BAN_ADDR, "192.0.2.7" },
	{ MOAT_DET_AUTH_FAIL_ADDR, MOAT_SEC_AUTH_FAILURE, 0, "192.0.2.8:1", NULL, NULL, SAME, 'b',
	  MOAT_BAN_ADDR, "192.0.2.8" },
	{ MOAT_DET_AUTH_FAIL_USER, MOAT_SEC_AUTH_FAILURE, 0, NULL, NULL, "alice", VARY_ADDR, 'b',
	  MOAT_BAN_USERNAME, "alice" },
	{ MOAT_DET_AUTH_FAIL_CLIENTID, MOAT_SEC_AUTH_FAILURE, 0, NULL, "dev-1", NULL, VARY_ADDR, 'b',
	  MOAT_BAN_CLIENTID, "dev-1" },
	{ MOAT_DET_ABNORMAL_CLOSE, MOAT_SEC_ABNORMAL_CLOSE, 0, NULL, "dev-2", NULL, VARY_ADDR, 'l', 0,
	  "dev-2" },
	{ MOAT_DET_FLAPPING, MOAT_SEC_AUTH_SUCCESS, 0, NULL, "dev-3", NULL, VARY_ADDR, 'b',
	  MOAT_BAN_CLIENTID, "dev-3" },
	{ MOAT_DET_TOPIC_SCAN, MOAT_SEC_NEW_TOPIC, 0, NULL, "scanner", NULL, VARY_ADDR, 'd', 0,
	  "scanner" },
	{ MOAT_DET_ACL_DENIALS, MOAT_SEC_ACL_DENIED, 0, NULL, "prober", NULL, VARY_ADDR, 'd', 0,
	  "prober" },
	{ MOAT_DET_UNDELIVERABLE, MOAT_SEC_NO_SUBSCRIBER, 0, NULL, "shouter", NULL, VARY_ADDR, 'l', 0,
	  "shouter" },
	{ MOAT_DET_IDLE, MOAT_SEC_IDLE_CLIENT, 0, "198.51.100.9:2", NULL, NULL, SAME, 'l', 0,
	  "198.51.100.9" },
	{ MOAT_DET_SLOWLORIS, MOAT_SEC_CONNECT_TIMEOUT, 0, "[2001:db8::5]:7", NULL, NULL, SAME, 'b',
	  MOAT_BAN_ADDR, "2001:db8::5" },
	{ MOAT_DET_VIOLATIONS, MOAT_SEC_PROTOCOL_VIOLATION, MOAT_SEC_PACKET_TOO_LARGE,
	  "::ffff:203.0.113.4", NULL, NULL, SAME, 'b', MOAT_BAN_ADDR, "203.0.113.4" },
	{ MOAT_DET_PUBLISH_FLOOD, MOAT_SEC_RATE_LIMITED, 0, NULL, "flooder", NULL, VARY_ADDR, 'd', 0,
	  "flooder" },
};

static void feed_case(struct moat_sentinel *s, const struct det_case *k, uint32_t i, int64_t now)
{
	char addr[64];
	enum moat_sec_kind kind = k->kind2 && (i & 1) ? k->kind2 : k->kind;

	if (k->vary == VARY_ADDR)
		snprintf(addr, sizeof(addr), "10.%u.%u.%u:1883", (i >> 16) & 255, (i >> 8) & 255,
			 i & 255);
	feed(s, kind, k->vary == VARY_ADDR ? addr : k->addr, k->cid, k->user, now);
}

static void check_case_fired(const struct det_case *k, int64_t now)
{
	const struct published *p = NULL;
	struct moat_ban_info info;
	const char *name = moat_detector_name(k->det);

	assert_int_equal(npub(MOAT_SEC_DETECTION, &p), 1);
	assert_memory_equal(p->reason, name, strlen(name));
	if (k->expect == 'l') {
		assert_int_equal(rec.ncalls, 0);
		assert_int_equal(npub(MOAT_SEC_BANNED, NULL), 0);
		assert_int_equal(moat_bans_count(bans, now), 0);
		return;
	}
	assert_int_equal(rec.ncalls, 1);
	assert_int_equal(rec.calls[0].fn, 'd');
	/* a publish flood tells an MQTT 5 client "message rate too high"; the rest, 0x98 */
	assert_int_equal(rec.calls[0].reason_code, k->det == MOAT_DET_PUBLISH_FLOOD ? 0x96 : 0x98);
	if (k->expect == 'd') {
		assert_string_equal(rec.calls[0].cid, k->key);
		assert_int_equal(moat_bans_count(bans, now), 0);
		return;
	}
	assert_int_equal(npub(MOAT_SEC_BANNED, &p), 1);
	assert_int_equal(p->value, 60);
	assert_int_equal(moat_bans_count(bans, now), 1);
	if (k->ban == MOAT_BAN_ADDR) {
		assert_true(addr_banned(k->key, now, &info));
		assert_string_equal(rec.calls[0].addr, k->key);
		assert_string_equal(p->addr, k->key);
	} else {
		assert_true(name_banned(k->ban, k->key, now, &info));
		assert_string_equal(k->ban == MOAT_BAN_USERNAME ? rec.calls[0].user : rec.calls[0].cid,
				    k->key);
	}
	assert_int_equal(info.kind, k->ban);
	assert_int_equal(info.until_ms, now + 60000);
}

static void test_every_detector_at_threshold(void **state)
{
	struct moat_sentinel_conf c;

	(void)state;
	moat_sentinel_conf_defaults(&c);
	for (size_t j = 0; j < sizeof(det_cases) / sizeof(det_cases[0]); j++) {
		const struct det_case *k = &det_cases[j];
		uint32_t thr = c.det[k->det].threshold, i;
		struct moat_sentinel *s = manual(&c);
		int64_t now = 1000000;

		for (i = 0; i + 1 < thr; i++)
			feed_case(s, k, i, now + i % 1000);
		assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 0);
		assert_int_equal(rec.ncalls, 0);
		feed_case(s, k, i, now + 999);
		check_case_fired(k, now + 999);
		done(s);
	}
}

/* A topic used and answered (delivered) is not a probe: no number of them is a scan. */
static void test_answered_topics_are_not_a_scan(void **state)
{
	struct moat_sentinel_conf c;
	struct moat_sentinel *s;
	int64_t now = 1000000;

	(void)state;
	moat_sentinel_conf_defaults(&c);
	s = manual(&c);
	for (uint32_t i = 0; i < 10 * c.det[MOAT_DET_TOPIC_SCAN].threshold; i++) {
		struct moat_sec_event e = { .kind = MOAT_SEC_NEW_TOPIC, .addr = "192.0.2.50:1",
					    .client_id = "backend", .value = 0 };
		moat_sentinel_feed(s, &e, now + i);
	}
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 0);
	assert_int_equal(rec.ncalls, 0);
	/* the same number of probes is a scan: by client id (acted on) and address (reported) */
	for (uint32_t i = 0; i < c.det[MOAT_DET_TOPIC_SCAN].threshold; i++)
		feed(s, MOAT_SEC_NEW_TOPIC, "192.0.2.50:1", "backend", NULL, now + 100000 + i);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 2);
	assert_int_equal(rec.ncalls, 1);
	assert_int_equal(rec.calls[0].fn, 'd');
	assert_string_equal(rec.calls[0].cid, "backend");
	done(s);
}

static void test_disabled_detector(void **state)
{
	struct moat_sentinel_conf c;
	struct moat_sentinel *s;

	(void)state;
	moat_sentinel_conf_defaults(&c);
	c.det[MOAT_DET_AUTH_FAIL_ADDR].enabled = false;
	s = manual(&c);
	for (int i = 0; i < 100; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.1:5", NULL, NULL, 1000 + i);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 0);
	assert_int_equal(moat_bans_count(bans, 2000), 0);
	done(s);
}

static void test_throttle_action(void **state)
{
	struct moat_sentinel_conf c;
	struct moat_sentinel *s;

	(void)state;
	moat_sentinel_conf_defaults(&c);
	c.det[MOAT_DET_TOPIC_SCAN].action = MOAT_ACT_THROTTLE;
	c.det[MOAT_DET_TOPIC_SCAN].threshold = 5;
	s = manual(&c);
	for (int i = 0; i < 5; i++)
		feed(s, MOAT_SEC_NEW_TOPIC, "192.0.2.1:5", "c1", NULL, 1000 + i);
	assert_int_equal(rec.ncalls, 1);
	assert_int_equal(rec.calls[0].fn, 't');
	assert_string_equal(rec.calls[0].cid, "c1");
	assert_string_equal(rec.calls[0].addr, "");
	assert_int_equal(rec.calls[0].secs, 30);
	done(s);
}

/* ---- windows ---- */

static void test_window_slides(void **state)
{
	struct moat_sentinel *s = manual(NULL);
	int64_t t = 5000000;
	int i;

	(void)state;
	/* 9 now, 1 a full window later: the first 9 no longer count */
	for (i = 0; i < 9; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.1:1", NULL, NULL, t);
	feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.1:1", NULL, NULL, t + 60000);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 0);
	/* 8 more within the window of that one: 9, still below */
	for (i = 0; i < 8; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.1:1", NULL, NULL, t + 70000);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 0);
	/* the 10th, 50 s after the first of them: fires */
	feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.1:1", NULL, NULL, t + 110000);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 1);
	done(s);

	/* spread out: one every 7 s never makes 10 in a minute; one every 5 s does */
	s = manual(NULL);
	for (i = 0; i < 100; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.2:1", NULL, NULL, t + i * 7000);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 0);
	for (i = 0; i < 12; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.3:1", NULL, NULL, t + 700000 + i * 5000);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 1);
	done(s);
}

static void test_window_reset_after_firing(void **state)
{
	struct moat_sentinel *s = manual(NULL);
	int i;

	(void)state;
	for (i = 0; i < 10; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.1:1", NULL, NULL, 1000 + i);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 1);
	for (i = 0; i < 9; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.1:1", NULL, NULL, 2000 + i);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 1);
	feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.1:1", NULL, NULL, 3000);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 2);
	done(s);
}

/* ---- prefixes ---- */

static void test_prefix_aggregation_v4(void **state)
{
	struct moat_sentinel *s = manual(NULL);
	const struct published *p = NULL;
	char addr[64];

	(void)state;
	/* 250 hosts of one /24, 12 connections each in 10 s: 3000 (10 x 300) for the prefix */
	for (int i = 0; i < 3000; i++) {
		snprintf(addr, sizeof(addr), "198.51.100.%d:%d", i % 250, 1000 + i);
		feed(s, MOAT_SEC_CONNECTION_OPENED, addr, NULL, NULL, 1000000 + i);
	}
	assert_int_equal(npub(MOAT_SEC_DETECTION, &p), 1);
	assert_string_equal(p->addr, "198.51.100.0/24");
	assert_non_null(strstr(p->reason, "by prefix"));
	assert_non_null(strstr(p->reason, "-> log"));
	/* a prefix only reports: no ban, no disconnect */
	assert_int_equal(rec.ncalls, 0);
	assert_int_equal(moat_bans_count(bans, 1006000), 0);
	/* one below: a neighbouring /24 with 2999 connections stays quiet */
	for (int i = 0; i < 2999; i++) {
		snprintf(addr, sizeof(addr), "198.51.101.%d:1", i % 250);
		feed(s, MOAT_SEC_CONNECTION_OPENED, addr, NULL, NULL, 1003000 + i);
	}
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 1);
	done(s);
}

static void test_prefix_aggregation_v6(void **state)
{
	struct moat_sentinel *s = manual(NULL);
	const struct published *p = NULL;
	char addr[80];

	(void)state;
	/* 2001:db8:0:1X::/56 holds 2001:db8:0:100:: to 2001:db8:0:1ff:: */
	for (int i = 0; i < 3000; i++) {
		snprintf(addr, sizeof(addr), "[2001:db8:0:1%02x::%x]:1", i % 256, i);
		feed(s, MOAT_SEC_CONNECTION_OPENED, addr, NULL, NULL, 1000000 + i);
	}
	assert_int_equal(npub(MOAT_SEC_DETECTION, &p), 1);
	assert_string_equal(p->addr, "2001:db8:0:100::/56");
	assert_int_equal(rec.ncalls, 0);
	done(s);
}

/* ---- the allow-list ---- */

static void test_allow_list_spares(void **state)
{
	struct moat_sentinel *s = manual(NULL);
	const struct published *p = NULL;
	int i;

	(void)state;
	assert_int_equal(moat_bans_allow(bans, MOAT_BAN_ADDR, "192.0.2.0/24"), 0);
	assert_int_equal(moat_bans_allow(bans, MOAT_BAN_USERNAME, "admin"), 0);
	assert_int_equal(moat_bans_allow(bans, MOAT_BAN_CLIENTID, "ops-console"), 0);
	for (i = 0; i < 10; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.44:1", NULL, NULL, 1000 + i);
	assert_int_equal(npub(MOAT_SEC_DETECTION, &p), 1); /* still reported */
	assert_non_null(strstr(p->reason, "allow-listed"));
	for (i = 0; i < 20; i++) { /* an admin mistyping from many places */
		char addr[32];
		snprintf(addr, sizeof(addr), "203.0.113.%d:1", i);
		feed(s, MOAT_SEC_AUTH_FAILURE, addr, NULL, "admin", 2000 + i);
	}
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 2);
	for (i = 0; i < 30; i++) /* the operator's console reconnecting in a loop */
		feed(s, MOAT_SEC_AUTH_SUCCESS, "203.0.113.200:1", "ops-console", NULL, 3000 + i);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 3);
	assert_int_equal(rec.ncalls, 0);
	assert_int_equal(npub(MOAT_SEC_BANNED, NULL), 0);
	assert_int_equal(moat_bans_count(bans, 4000), 0);
	/* an address just outside is not spared */
	for (i = 0; i < 10; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.3.44:1", NULL, NULL, 5000 + i);
	assert_int_equal(npub(MOAT_SEC_BANNED, NULL), 1);
	assert_true(addr_banned("192.0.3.44", 5010, NULL));
	/* nor is an address that merely claims an allow-listed name or client id */
	for (i = 0; i < 10; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.3.45:1", "ops-console", "admin", 6000 + i);
	assert_int_equal(npub(MOAT_SEC_BANNED, NULL), 2);
	assert_true(addr_banned("192.0.3.45", 6010, NULL));
	assert_false(name_banned(MOAT_BAN_CLIENTID, "ops-console", 6010, NULL));
	done(s);
}

/* ---- escalation ---- */

static void brute(struct moat_sentinel *s, const char *addr, int64_t t)
{
	for (int i = 0; i < 10; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, addr, NULL, NULL, t + i);
}

static void test_ban_escalation(void **state)
{
	/* two hours apart the trust is still low (it comes back a point per 10 min):
	 * each repeat climbs two steps */
	static const int64_t expect[] = { 60, 3600, 86400, 86400, 86400 };
	struct moat_sentinel *s = manual(NULL);
	struct moat_ban_info info;
	const struct published *p = NULL;
	int64_t t = 10000000;

	(void)state;
	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		t += 2 * 3600 * 1000; /* past the previous ban, within offence memory */
		brute(s, "192.0.2.9:1", t);
		assert_int_equal(npub(MOAT_SEC_BANNED, &p), (int)i + 1);
		assert_int_equal(p->value, expect[i]);
		assert_true(addr_banned("192.0.2.9", t + 9, &info));
		assert_int_equal(info.kind, MOAT_BAN_ADDR);
		assert_int_equal(info.until_ms, t + 9 + expect[i] * 1000);
		assert_false(addr_banned("192.0.2.9", t + 10 + expect[i] * 1000, NULL));
	}
	/* a day and more of good conduct: the next offence is a first one again */
	t += 86400 * 1000 + 3600 * 1000;
	brute(s, "192.0.2.9:1", t);
	assert_int_equal(npub(MOAT_SEC_BANNED, &p), 6);
	assert_int_equal(p->value, 60);
	/* offences are per key: another address starts at the first step */
	brute(s, "192.0.2.10:1", t + 100);
	assert_int_equal(npub(MOAT_SEC_BANNED, &p), 7);
	assert_int_equal(p->value, 60);
	/* ... and after 20 hours of good conduct its trust is back: one step, not two */
	brute(s, "192.0.2.10:1", t + 20 * 3600 * 1000);
	assert_int_equal(npub(MOAT_SEC_BANNED, &p), 8);
	assert_int_equal(p->value, 600);
	assert_non_null(strstr(p->reason, "offence 2, trust "));
	done(s);
}

static void test_name_bans_expire(void **state)
{
	struct moat_sentinel *s = manual(NULL);
	struct moat_ban_info info;
	char addr[32];
	int64_t t = 1000000;

	(void)state;
	for (int i = 0; i < 20; i++) {
		snprintf(addr, sizeof(addr), "203.0.113.%d:1", i);
		feed(s, MOAT_SEC_AUTH_FAILURE, addr, NULL, "bob", t);
	}
	assert_true(name_banned(MOAT_BAN_USERNAME, "bob", t + 59999, &info));
	assert_int_equal(info.kind, MOAT_BAN_USERNAME);
	assert_string_equal(info.key, "bob");
	assert_false(name_banned(MOAT_BAN_USERNAME, "bob", t + 60001, NULL));
	assert_false(name_banned(MOAT_BAN_CLIENTID, "bob", t + 1, NULL));
	assert_false(addr_banned("203.0.113.1", t + 1, NULL));
	done(s);
}

/* ---- availability ---- */

static void test_availability(void **state)
{
	struct moat_sentinel *s = manual(NULL);
	const struct published *p = NULL;
	int64_t t = 1000000;

	(void)state;
	/* steady for 10 minutes, then silent: an availability event */
	feed(s, MOAT_SEC_AUTH_SUCCESS, "192.0.2.1:1", "meter-1", "m", t);
	feed(s, MOAT_SEC_KEEPALIVE_TIMEOUT, "192.0.2.1:1", "meter-1", "m", t += 600000);
	assert_int_equal(npub(MOAT_SEC_AVAILABILITY, &p), 1);
	assert_string_equal(p->cid, "meter-1");
	assert_int_equal(p->value, 600);
	/* the session is over: a second timeout reports nothing */
	feed(s, MOAT_SEC_KEEPALIVE_TIMEOUT, "192.0.2.1:1", "meter-1", "m", t += 100000);
	assert_int_equal(npub(MOAT_SEC_AVAILABILITY, NULL), 1);
	/* online two minutes: not steady */
	feed(s, MOAT_SEC_AUTH_SUCCESS, "192.0.2.1:1", "meter-2", NULL, t);
	feed(s, MOAT_SEC_ABNORMAL_CLOSE, "192.0.2.1:1", "meter-2", NULL, t += 120000);
	assert_int_equal(npub(MOAT_SEC_AVAILABILITY, NULL), 1);
	/* an abnormal close of a client steady for exactly the minimum counts too */
	feed(s, MOAT_SEC_AUTH_SUCCESS, "192.0.2.1:1", "meter-3", NULL, t);
	feed(s, MOAT_SEC_ABNORMAL_CLOSE, "192.0.2.1:1", "meter-3", NULL, t += 300000);
	assert_int_equal(npub(MOAT_SEC_AVAILABILITY, &p), 2);
	assert_string_equal(p->cid, "meter-3");
	assert_int_equal(p->value, 300);
	/* kicked, then a timeout: the kick ended the steady session */
	feed(s, MOAT_SEC_AUTH_SUCCESS, "192.0.2.1:1", "meter-4", NULL, t);
	feed(s, MOAT_SEC_KICKED, "192.0.2.1:1", "meter-4", NULL, t += 400000);
	feed(s, MOAT_SEC_KEEPALIVE_TIMEOUT, "192.0.2.1:1", "meter-4", NULL, t += 100000);
	assert_int_equal(npub(MOAT_SEC_AVAILABILITY, NULL), 2);
	/* a reconnect restarts the clock */
	feed(s, MOAT_SEC_AUTH_SUCCESS, "192.0.2.1:1", "meter-5", NULL, t);
	feed(s, MOAT_SEC_AUTH_SUCCESS, "192.0.2.1:1", "meter-5", NULL, t += 500000);
	feed(s, MOAT_SEC_KEEPALIVE_TIMEOUT, "192.0.2.1:1", "meter-5", NULL, t += 100000);
	assert_int_equal(npub(MOAT_SEC_AVAILABILITY, NULL), 2);
	/* not an attack: nothing done */
	assert_int_equal(rec.ncalls, 0);
	assert_int_equal(npub(MOAT_SEC_BANNED, NULL), 0);
	done(s);
}

/* ---- trust ---- */

static void test_trust(void **state)
{
	struct moat_sentinel *s = manual(NULL);
	int i, before;

	(void)state;
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.1", NULL), 50);
	assert_int_equal(moat_sentinel_trust(s, NULL, "c1"), 50);
	/* good behaviour raises both, up to 100 */
	feed(s, MOAT_SEC_AUTH_SUCCESS, "192.0.2.1:4000", "c1", NULL, 1000);
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.1", NULL), 51);
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.1:9", NULL), 51); /* port ignored */
	assert_int_equal(moat_sentinel_trust(s, NULL, "c1"), 51);
	for (i = 0; i < 200; i++)
		feed(s, MOAT_SEC_AUTH_SUCCESS, "192.0.2.1:4000", "c1", NULL, 1000 + i * 3000);
	assert_int_equal(moat_sentinel_trust(s, NULL, "c1"), 100);
	/* failures lower the address */
	feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.2:1", NULL, NULL, 700000);
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.2", NULL), 48);
	feed(s, MOAT_SEC_PROTOCOL_VIOLATION, "192.0.2.2:1", NULL, NULL, 700001);
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.2", NULL), 43);
	/* a detection and a ban lower it further, down to 0 and no lower */
	before = moat_sentinel_trust(s, "192.0.2.2", NULL);
	for (i = 0; i < 8; i++)
		feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.2:1", NULL, NULL, 700002 + i);
	feed(s, MOAT_SEC_AUTH_FAILURE, "192.0.2.2:1", NULL, NULL, 700010);
	assert_int_equal(npub(MOAT_SEC_BANNED, NULL), 1);
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.2", NULL), 0);
	assert_true(before > 0);
	/* strangers are still 50; other addresses untouched */
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.3", NULL), 50);
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.1", NULL), 100);
	/* quiet time earns trust back: a point per 10 quiet minutes */
	feed(s, MOAT_SEC_NEW_TOPIC, "192.0.2.99:1", "x", NULL, 700010 + 30 * 60 * 1000);
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.2", NULL), 3);
	/* IPv6 and garbage */
	feed(s, MOAT_SEC_AUTH_FAILURE, "[2001:db8::1]:5", NULL, NULL, 3000000);
	assert_int_equal(moat_sentinel_trust(s, "2001:db8::1", NULL), 48);
	assert_int_equal(moat_sentinel_trust(s, "[2001:db8::1]:77", NULL), 48);
	assert_int_equal(moat_sentinel_trust(s, "not an address", NULL), 50);
	assert_int_equal(moat_sentinel_trust(s, NULL, NULL), 50);
	done(s);
}

/* ---- memory bounds ---- */

static void test_key_eviction_bounds_memory(void **state)
{
	struct moat_sentinel_conf c;
	struct moat_sentinel *s;
	char addr[64], cid[32];
	int64_t t = 1000000;

	(void)state;
	moat_sentinel_conf_defaults(&c);
	s = manual(&c);
	/* a million distinct addresses in one second */
	for (uint32_t i = 0; i < 1000000; i++) {
		snprintf(addr, sizeof(addr), "%u.%u.%u.%u:1", 1 + (i >> 24), (i >> 16) & 255,
			 (i >> 8) & 255, i & 255);
		feed(s, MOAT_SEC_CONNECTION_OPENED, addr, NULL, NULL, t + i / 100000);
	}
	assert_true(moat_sentinel_keys(s, MOAT_DET_CONNECT_RATE) <= c.max_keys);
	assert_true(moat_sentinel_keys(s, MOAT_DET_CONNECT_RATE) >= c.max_keys / 2);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 0);
	/* a smaller table: distinct failures, each with its own client id and user */
	done(s);
	c.max_keys = 1000;
	s = manual(&c);
	for (uint32_t i = 0; i < 100000; i++) {
		snprintf(addr, sizeof(addr), "10.%u.%u.%u:1", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		snprintf(cid, sizeof(cid), "c%u", i);
		feed(s, MOAT_SEC_AUTH_FAILURE, addr, cid, cid, t + i / 100);
		for (int d = 0; d < MOAT_DET_COUNT; d++)
			assert_true(moat_sentinel_keys(s, d) <= 1000);
		assert_true(moat_sentinel_trust_keys(s) <= 2000);
	}
	assert_int_equal(moat_sentinel_keys(s, MOAT_DET_AUTH_FAIL_USER), 1000);
	assert_int_equal(moat_sentinel_trust_keys(s), 2000);
	/* the last key seen is tracked, an early one was evicted (and forgotten) */
	assert_int_equal(moat_sentinel_trust(s, NULL, "c99999"), 48);
	assert_int_equal(moat_sentinel_trust(s, NULL, "c0"), 50);
	/* once the windows have passed, the detector tables empty */
	feed(s, MOAT_SEC_RELOAD, "", NULL, NULL, t + 1000 + 301000);
	for (int d = 0; d < MOAT_DET_COUNT; d++)
		assert_int_equal(moat_sentinel_keys(s, d), 0);
	done(s);
}

/* ---- the queue ---- */

static void test_queue_bound_and_drain(void **state)
{
	struct moat_sentinel_conf c;
	struct moat_sentinel *s;
	struct moat_sec_event e = { .kind = MOAT_SEC_NO_SUBSCRIBER, .addr = "192.0.2.1:1",
				    .client_id = "c", .topic = "t" };

	(void)state;
	moat_sentinel_conf_defaults(&c);
	c.queue_max = 10;
	s = manual(&c);
	for (int i = 0; i < 100; i++)
		moat_sentinel_submit(s, &e);
	assert_int_equal(moat_sentinel_dropped(s), 90);
	assert_int_equal(atomic_load(&rec.published), 0); /* manual: not yet processed */
	done(s);                                           /* drains on free */
	assert_int_equal(atomic_load(&rec.published), 10);
}

static char long_cid[1000];
static char seen_cid[300];

static void keep_cid(void *ctx, const struct moat_sec_event *e)
{
	(void)ctx;
	cpy(seen_cid, sizeof(seen_cid), e->client_id);
}

static void test_truncation(void **state)
{
	struct moat_sentinel_conf c;
	struct moat_sentinel_ops o = { .publish = keep_cid };
	struct moat_sentinel *s;
	struct moat_sec_event e = { .kind = MOAT_SEC_NEW_TOPIC, .addr = "192.0.2.1:1",
				    .client_id = long_cid };
	size_t n;

	(void)state;
	/* 254 'a's then two-byte characters: the cut at 255 must not split one */
	memset(long_cid, 'a', 254);
	for (n = 254; n + 2 < sizeof(long_cid); n += 2)
		memcpy(long_cid + n, "\xc3\xa9", 2);
	long_cid[n] = 0;
	moat_sentinel_conf_defaults(&c);
	s = moat_sentinel_new_manual(&c, NULL, NULL, &o);
	moat_sentinel_submit(s, &e);
	moat_sentinel_free(s);
	assert_int_equal(strlen(seen_cid), 254);
	assert_memory_equal(seen_cid, long_cid, 254);
}

/* A sink like the broker's: every emitted event goes to the sentinel. */
static struct moat_sentinel *sink_target;

static void broker_sink(void *ctx, const struct moat_sec_event *e)
{
	(void)ctx;
	if (sink_target)
		moat_sentinel_submit(sink_target, e);
}

static void test_own_events_do_not_loop(void **state)
{
	struct moat_sentinel *s = manual(NULL);

	(void)state;
	moat_sec_add_sink(broker_sink, NULL);
	sink_target = s;
	brute(s, "192.0.2.5:1", 1000);
	assert_int_equal(npub(MOAT_SEC_DETECTION, NULL), 1);
	assert_int_equal(npub(MOAT_SEC_BANNED, NULL), 1);
	assert_int_equal(moat_sentinel_dropped(s), 0);
	/* but the log and counters saw them */
	assert_true(moat_sec_count(MOAT_SEC_DETECTION) >= 1);
	assert_true(moat_sec_count(MOAT_SEC_BANNED) >= 1);
	rec.npub = 0;
	moat_sentinel_free(s); /* nothing was queued by the sink */
	sink_target = NULL;
	assert_int_equal(rec.npub, 0);
	moat_bans_free(bans);
	bans = NULL;
}

/* ---- the audit log ---- */

static void test_audit(void **state)
{
	char dir[] = "/tmp/test_sentinel.XXXXXX", path[64], err[256];
	struct moat_sentinel_conf c;
	struct moat_audit *a = NULL;
	struct moat_sentinel *s;
	uint64_t lines = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	assert_int_equal(moat_audit_open(path, 0, 1, &a, err, sizeof(err)), 0);
	moat_sentinel_conf_defaults(&c);
	s = moat_sentinel_new_manual(&c, NULL, a, NULL);
	feed(s, MOAT_SEC_AUTH_SUCCESS, "192.0.2.1:1", "c", "u", 1000);
	brute(s, "192.0.2.2:1", 2000); /* 10 failures, a detection (no ban table: no ban) */
	moat_sentinel_free(s);
	moat_audit_close(a);
	assert_int_equal(moat_audit_verify(path, NULL, &lines, NULL, err, sizeof(err)), 0);
	assert_int_equal(lines, 12);
	unlink(path);
	rmdir(dir);
}

/* ---- threads ---- */

#define THREADS 4
#define PER_THREAD 10000

static void *submitter(void *arg)
{
	struct moat_sentinel *s = arg;
	char cid[32];

	for (int i = 0; i < PER_THREAD; i++) {
		snprintf(cid, sizeof(cid), "t%p-%d", (void *)&cid, i % 50);
		struct moat_sec_event e = { .kind = MOAT_SEC_NEW_TOPIC, .addr = "192.0.2.1:1",
					    .client_id = cid, .topic = "a/b" };
		moat_sentinel_submit(s, &e);
	}
	return NULL;
}

static void test_threaded_delivery(void **state)
{
	struct moat_sentinel_conf c;
	struct moat_sentinel *s;
	pthread_t th[THREADS];

	(void)state;
	moat_sentinel_conf_defaults(&c);
	c.det[MOAT_DET_TOPIC_SCAN].enabled = false; /* only delivery is measured */
	reset_rec();
	s = moat_sentinel_new(&c, NULL, NULL, &ops);
	assert_non_null(s);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, submitter, s), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(moat_sentinel_trust(s, "192.0.2.1", NULL), 50);
	assert_int_equal(moat_sentinel_dropped(s), 0);
	moat_sentinel_free(s); /* drains */
	assert_int_equal(atomic_load(&rec.published), THREADS * PER_THREAD);

	/* and the thread runs detectors: a brute force submitted is banned */
	bans = moat_bans_new();
	s = moat_sentinel_new(&c, bans, NULL, &ops);
	for (int i = 0; i < 10; i++)
		moat_sentinel_submit(s, &(struct moat_sec_event){ .kind = MOAT_SEC_AUTH_FAILURE,
								  .addr = "192.0.2.77:1" });
	moat_sentinel_free(s);
	assert_int_equal(npub(MOAT_SEC_BANNED, NULL), 1);
	assert_int_equal(moat_bans_count(bans, 0), 1);
	moat_bans_free(bans);
	bans = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_detector_at_threshold),
		cmocka_unit_test(test_disabled_detector),
		cmocka_unit_test(test_answered_topics_are_not_a_scan),
		cmocka_unit_test(test_throttle_action),
		cmocka_unit_test(test_window_slides),
		cmocka_unit_test(test_window_reset_after_firing),
		cmocka_unit_test(test_prefix_aggregation_v4),
		cmocka_unit_test(test_prefix_aggregation_v6),
		cmocka_unit_test(test_allow_list_spares),
		cmocka_unit_test(test_ban_escalation),
		cmocka_unit_test(test_name_bans_expire),
		cmocka_unit_test(test_availability),
		cmocka_unit_test(test_trust),
		cmocka_unit_test(test_key_eviction_bounds_memory),
		cmocka_unit_test(test_queue_bound_and_drain),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_own_events_do_not_loop),
		cmocka_unit_test(test_audit),
		cmocka_unit_test(test_threaded_delivery),
	};

	moat_hash_seed();
	moat_log_setup(-1, MOAT_LOG_LVL_ERROR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
