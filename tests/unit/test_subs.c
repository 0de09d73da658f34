/*
 * test_subs.c - the subscription index and the retained store.
 *
 * Both are checked against brute force: for random valid filters and
 * topics, the set the index returns must equal the set found by calling
 * moat_mqtt_topic_match on every subscription (or every retained topic).
 * Also: shared groups (one member per message, in turn, online first),
 * replacement, removal, pruning (memory back to zero), the $ rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/retain.h"
#include "broker/subs.h"
#include "core/error.h"
#include "core/map.h"
#include "mqtt/topic.h"

#define NS 64
static char fake[NS];          /* session i is (struct moat_session *)&fake[i] */
static bool online_flag[NS];

static struct moat_session *S(int i)
{
	return (struct moat_session *)&fake[i];
}

static int idx(const struct moat_session *s)
{
	return (int)((const char *)s - fake);
}

static bool is_online(const struct moat_session *s)
{
	return online_flag[idx(s)];
}

struct hits {
	int n;
	int who[4096];
	uint8_t opts[4096];
	uint32_t subid[4096];
	bool shared[4096];
};

static void collect(void *ctx, struct moat_session *s, uint8_t opts, uint32_t subid, bool shared)
{
	struct hits *h = ctx;
	if (h->n < 4096) {
		h->who[h->n] = idx(s);
		h->opts[h->n] = opts;
		h->subid[h->n] = subid;
		h->shared[h->n] = shared;
		h->n++;
	}
}

static void match(struct moat_subs *x, const char *t, struct hits *h)
{
	memset(h, 0, sizeof(*h));
	moat_subs_match(x, (const uint8_t *)t, strlen(t), collect, h);
}

static int add(struct moat_subs *x, const char *f, int s, uint8_t opts, uint32_t subid)
{
	bool existed;
	return moat_subs_add(x, (const uint8_t *)f, strlen(f), S(s), opts, subid, &existed);
}

static int del(struct moat_subs *x, const char *f, int s)
{
	return moat_subs_remove(x, (const uint8_t *)f, strlen(f), S(s));
}

static void test_basic(void **state)
{
	struct moat_mem mem;
	struct moat_subs *x;
	struct hits h;
	bool existed;

	(void)state;
	moat_mem_init(&mem, 0, NULL);
	x = moat_subs_new(&mem, is_online);
	assert_non_null(x);
	assert_int_equal(add(x, "a/b", 1, 1, 7), 0);
	assert_int_equal(add(x, "a/+", 2, 2, 0), 0);
	assert_int_equal(add(x, "#", 3, 0, 0), 0);
	assert_int_equal(add(x, "a/#", 4, 0, 0), 0);
	assert_int_equal(moat_subs_count(x), 4);
	match(x, "a/b", &h);
	assert_int_equal(h.n, 4);
	match(x, "a", &h);
	assert_int_equal(h.n, 2); /* "#" and "a/#" (parent level) */
	match(x, "$SYS/x", &h);
	assert_int_equal(h.n, 0);
	/* replacing keeps the count and changes the options */
	assert_int_equal(moat_subs_add(x, (const uint8_t *)"a/b", 3, S(1), 2, 9, &existed), 0);
	assert_true(existed);
	assert_int_equal(moat_subs_count(x), 4);
	match(x, "a/b", &h);
	for (int i = 0; i < h.n; i++)
		if (h.who[i] == 1) {
			assert_int_equal(h.opts[i], 2);
			assert_int_equal(h.subid[i], 9);
		}
	assert_int_equal(del(x, "a/b", 1), 0);
	assert_int_equal(del(x, "a/b", 1), MOAT_ENOTFOUND);
	assert_int_equal(del(x, "a/+", 2), 0);
	assert_int_equal(del(x, "#", 3), 0);
	assert_int_equal(del(x, "a/#", 4), 0);
	assert_int_equal(moat_subs_count(x), 0);
	match(x, "a/b", &h);
	assert_int_equal(h.n, 0);
	/* everything pruned: only the root and the empty maps' memory remain */
	moat_subs_free(x);
	assert_int_equal(moat_mem_used(&mem), 0);
}

static void test_dollar(void **state)
{
	struct moat_subs *x = moat_subs_new(NULL, NULL);
	struct hits h;

	(void)state;
	add(x, "+/monitor/Clients", 1, 0, 0);
	add(x, "$SYS/#", 2, 0, 0);
	add(x, "$SYS/monitor/+", 3, 0, 0);
	add(x, "#", 4, 0, 0);
	match(x, "$SYS/monitor/Clients", &h);
	assert_int_equal(h.n, 2);
	match(x, "x/monitor/Clients", &h);
	assert_int_equal(h.n, 2); /* "+/monitor/Clients" and "#" */
	moat_subs_free(x);
}

static void test_shared_round_robin(void **state)
{
	struct moat_subs *x = moat_subs_new(NULL, is_online);
	int count[NS] = {0};
	struct hits h;

	(void)state;
	for (int i = 0; i < 3; i++)
		online_flag[10 + i] = true;
	add(x, "$share/g/t/+", 10, 1, 0);
	add(x, "$share/g/t/+", 11, 1, 0);
	add(x, "$share/g/t/+", 12, 1, 0);
	add(x, "$share/h/t/#", 20, 0, 0);
	online_flag[20] = true;
	add(x, "t/x", 30, 0, 0);
	for (int m = 0; m < 300; m++) {
		match(x, "t/x", &h);
		assert_int_equal(h.n, 3); /* one from g, one from h, the plain one */
		for (int i = 0; i < h.n; i++)
			count[h.who[i]]++;
	}
	assert_int_equal(count[10] + count[11] + count[12], 300);
	assert_int_equal(count[10], 100);
	assert_int_equal(count[11], 100);
	assert_int_equal(count[12], 100);
	assert_int_equal(count[20], 300);
	assert_int_equal(count[30], 300);
	/* offline members are skipped while another member is online */
	online_flag[10] = online_flag[11] = false;
	for (int m = 0; m < 30; m++) {
		match(x, "t/x", &h);
		for (int i = 0; i < h.n; i++)
			if (h.shared[i] && h.who[i] != 20)
				assert_int_equal(h.who[i], 12);
	}
	/* all offline: still delivered to some member (its session queues it) */
	online_flag[12] = false;
	match(x, "t/x", &h);
	assert_int_equal(h.n, 3);
	assert_int_equal(del(x, "$share/g/t/+", 11), 0);
	assert_int_equal(del(x, "$share/g/t/+", 11), MOAT_ENOTFOUND);
	assert_int_equal(del(x, "$share/x/t/+", 10), MOAT_ENOTFOUND);
	moat_subs_free(x);
	memset(online_flag, 0, sizeof(online_flag));
}

/* ---- random differential test ---- */

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A random valid topic name, or filter: never empty (the codec refuses that). */
static void random_topic(char *out, bool filter)
{
	static const char *const words[] = {"a", "b", "c", "", "$x"};
	int levels = 1 + (int)(next() % 4), n = 0;

	if (levels == 1 && next() % 2)
		levels = 2;

	for (int i = 0; i < levels; i++) {
		const char *w = words[next() % 5];
		if (i > 0)
			out[n++] = '/';
		if (filter && next() % 4 == 0)
			w = "+";
		if (filter && i == levels - 1 && next() % 5 == 0)
			w = "#";
		if (i > 0 && w[0] == '$')
			w = "d";
		n += sprintf(out + n, "%s", w);
	}
	if (n == 0)
		out[n++] = 'e';
	out[n] = 0;
}

struct sub_rec {
	char f[64];
	int s;
	bool live;
};

static void test_random_against_brute_force(void **state)
{
	static struct sub_rec subs[600];
	struct moat_mem mem;
	struct moat_subs *x;
	static struct hits h;
	int nsubs = 0;

	(void)state;
	moat_mem_init(&mem, 0, NULL);
	x = moat_subs_new(&mem, NULL);
	for (int round = 0; round < 20000; round++) {
		int op = (int)(next() % 10);
		if (op < 3 && nsubs < 600) {
			struct sub_rec *r = &subs[nsubs];
			random_topic(r->f, true);
			r->s = (int)(next() % NS);
			/* one subscription per (session, filter), as sessions keep them */
			bool dup = false;
			for (int i = 0; i < nsubs; i++)
				if (subs[i].live && subs[i].s == r->s && !strcmp(subs[i].f, r->f))
					dup = true;
			if (dup)
				continue;
			r->live = true;
			assert_int_equal(add(x, r->f, r->s, 0, 0), 0);
			nsubs++;
		} else if (op < 4 && nsubs) {
			struct sub_rec *r = &subs[next() % (uint64_t)nsubs];
			if (r->live) {
				assert_int_equal(del(x, r->f, r->s), 0);
				r->live = false;
			}
		} else {
			char t[64];
			int expect[NS] = {0}, got[NS] = {0};
			random_topic(t, false);
			for (int i = 0; i < nsubs; i++)
				if (subs[i].live &&
				    moat_mqtt_topic_match((const uint8_t *)subs[i].f, strlen(subs[i].f),
							  (const uint8_t *)t, strlen(t)))
					expect[subs[i].s]++;
			match(x, t, &h);
			for (int i = 0; i < h.n; i++)
				got[h.who[i]]++;
			for (int k = 0; k < NS; k++) {
				if (expect[k] == got[k])
					continue;
				fprintf(stderr, "topic '%s' session %d: expected %d got %d; its filters:", t, k,
					expect[k], got[k]);
				for (int i = 0; i < nsubs; i++)
					if (subs[i].live && subs[i].s == k)
						fprintf(stderr, " '%s'", subs[i].f);
				fprintf(stderr, "\n");
			}
			assert_memory_equal(expect, got, sizeof(expect));
		}
	}
	for (int i = 0; i < nsubs; i++)
		if (subs[i].live)
			assert_int_equal(del(x, subs[i].f, subs[i].s), 0);
	assert_int_equal(moat_subs_count(x), 0);
	moat_subs_free(x);
	assert_int_equal(moat_mem_used(&mem), 0);
}

/* A filter 30000 levels deep and a topic to match it: no recursion, no stack overflow. */
static void test_deep(void **state)
{
	size_t n = 60000;
	char *f = malloc(n + 1), *t = malloc(n + 1);
	struct moat_subs *x = moat_subs_new(NULL, NULL);
	struct hits h;

	(void)state;
	/* "+/+/.../+/#" and "a/a/.../a/z", 30000 levels each */
	for (size_t i = 0; i < n; i += 2) {
		f[i] = '+';
		f[i + 1] = '/';
		t[i] = 'a';
		t[i + 1] = '/';
	}
	f[n - 2] = '#';
	t[n - 2] = 'z';
	f[n - 1] = t[n - 1] = 0;
	assert_int_equal(add(x, f, 1, 0, 0), 0);
	match(x, t, &h);
	assert_int_equal(h.n, 1);
	moat_subs_free(x);
	free(f);
	free(t);
}

/* ---- retained store ---- */

struct rhits {
	int n;
	char topics[512][64];
};

static void rcollect(void *ctx, struct moat_msg *m)
{
	struct rhits *h = ctx;
	if (h->n < 512) {
		memcpy(h->topics[h->n], moat_msg_topic(m), m->topic_len);
		h->topics[h->n][m->topic_len] = 0;
		h->n++;
	}
}

static void rset(struct moat_retain *r, struct moat_mem *mem, const char *t, const char *payload,
		 int64_t expires)
{
	struct moat_msg *m = moat_msg_new(mem, t, strlen(t), NULL, 0, payload, strlen(payload), 1,
					  true, expires, 0);
	assert_non_null(m);
	assert_int_equal(moat_retain_set(r, m), 0);
	moat_msg_unref(m);
}

static void rmatch(struct moat_retain *r, const char *f, int64_t now, struct rhits *h)
{
	memset(h, 0, sizeof(*h));
	moat_retain_match(r, (const uint8_t *)f, strlen(f), now, rcollect, h);
}

static void test_retain_basic(void **state)
{
	struct moat_mem mem;
	struct moat_retain *r;
	static struct rhits h;

	(void)state;
	moat_mem_init(&mem, 0, NULL);
	r = moat_retain_new(&mem);
	rset(r, &mem, "a/b", "1", 0);
	rset(r, &mem, "a/b", "2", 0);
	rset(r, &mem, "a", "x", 0);
	rset(r, &mem, "$SYS/x", "s", 0);
	rset(r, &mem, "old", "o", 1000);
	assert_int_equal(moat_retain_count(r), 4);
	rmatch(r, "#", 0, &h);
	assert_int_equal(h.n, 3); /* not $SYS */
	rmatch(r, "#", 2000, &h);
	assert_int_equal(h.n, 2); /* "old" expired */
	rmatch(r, "a/#", 0, &h);
	assert_int_equal(h.n, 2); /* "a" and "a/b" */
	rmatch(r, "+/+", 0, &h);
	assert_int_equal(h.n, 1);
	rmatch(r, "$SYS/+", 0, &h);
	assert_int_equal(h.n, 1);
	rset(r, &mem, "a/b", "", 0); /* empty payload deletes */
	rset(r, &mem, "nothing/here", "", 0);
	assert_int_equal(moat_retain_count(r), 3);
	rmatch(r, "a/b", 0, &h);
	assert_int_equal(h.n, 0);
	rset(r, &mem, "a", "", 0);
	rset(r, &mem, "$SYS/x", "", 0);
	rset(r, &mem, "old", "", 0);
	assert_int_equal(moat_retain_count(r), 0);
	moat_retain_free(r);
	assert_int_equal(moat_mem_used(&mem), 0);
}

static void test_retain_random(void **state)
{
	static char topics[300][64];
	static bool live[300];
	static struct rhits h;
	struct moat_mem mem;
	struct moat_retain *r;
	int n = 0;

	(void)state;
	moat_mem_init(&mem, 0, NULL);
	r = moat_retain_new(&mem);
	for (int round = 0; round < 5000; round++) {
		int op = (int)(next() % 4);
		if (op == 0 && n < 300) {
			random_topic(topics[n], false);
			for (int i = 0; i < n; i++)
				if (live[i] && !strcmp(topics[i], topics[n]))
					live[i] = false; /* replaced */
			live[n] = true;
			rset(r, &mem, topics[n], "p", 0);
			n++;
		} else if (op == 1 && n) {
			int i = (int)(next() % (uint64_t)n);
			if (live[i]) {
				rset(r, &mem, topics[i], "", 0);
				live[i] = false;
			}
		} else {
			char f[64];
			int expect = 0;
			random_topic(f, true);
			for (int i = 0; i < n; i++)
				if (live[i] && moat_mqtt_topic_match((const uint8_t *)f, strlen(f),
								      (const uint8_t *)topics[i],
								      strlen(topics[i])))
					expect++;
			rmatch(r, f, 0, &h);
			if (h.n != expect) {
				fprintf(stderr, "filter '%s': expected %d got %d; live:", f, expect, h.n);
				for (int i = 0; i < n; i++)
					if (live[i])
						fprintf(stderr, " '%s'", topics[i]);
				fprintf(stderr, "\n got:");
				for (int i = 0; i < h.n; i++)
					fprintf(stderr, " '%s'", h.topics[i]);
				fprintf(stderr, "\n");
			}
			assert_int_equal(h.n, expect);
		}
	}
	moat_retain_free(r);
	assert_int_equal(moat_mem_used(&mem), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_dollar),
		cmocka_unit_test(test_shared_round_robin),
		cmocka_unit_test(test_random_against_brute_force),
		cmocka_unit_test(test_deep),
		cmocka_unit_test(test_retain_basic),
		cmocka_unit_test(test_retain_random),
	};
	moat_hash_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
