/*
 * test_topic.c - unit tests for topic names, filters and matching
 * (src/mqtt/topic.c).
 *
 * Covers: the matching examples of MQTT 5.0 and 3.1.1 section 4.7 (multi- and
 * single-level wildcards, '$' topics); edge cases (empty levels, trailing
 * slashes, '+' matching an empty level, the filters "#", "+" and "/#");
 * a 65535-byte topic and a 30000-level topic (the matcher is linear by
 * design, so these finish quickly without any timing assertion);
 * moat_mqtt_topic_name_check, moat_mqtt_topic_filter_check (including shared
 * "$share/" filters) and moat_mqtt_share_split; and a randomized differential
 * test: a recursive level-by-level reference matcher and reference validity
 * checks written here, compared with the library on ~200k generated pairs
 * over the alphabet {a, b, /, +, #, $}.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mqtt/topic.h"

static bool match(const char *f, const char *t)
{
	return moat_mqtt_topic_match((const uint8_t *)f, strlen(f), (const uint8_t *)t, strlen(t));
}

static int name_check(const char *s)
{
	return moat_mqtt_topic_name_check((const uint8_t *)s, strlen(s));
}

static int filter_check(const char *s)
{
	return moat_mqtt_topic_filter_check((const uint8_t *)s, strlen(s));
}

struct mcase {
	const char *filter;
	const char *topic;
	bool match;
};

static void run_cases(const struct mcase *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		/* every filter in the tables is valid, every topic a valid name */
		if (filter_check(c[i].filter) != 0)
			fail_msg("table filter \"%s\" not valid", c[i].filter);
		if (name_check(c[i].topic) != 0)
			fail_msg("table topic \"%s\" not valid", c[i].topic);
		if (match(c[i].filter, c[i].topic) != c[i].match)
			fail_msg("filter \"%s\" topic \"%s\": got %d, want %d", c[i].filter,
				 c[i].topic, !c[i].match, c[i].match);
	}
}

/* ---- spec examples ---- */

static void test_spec_multi_level(void **state)
{
	static const struct mcase c[] = {
		/* 4.7.1.2 */
		{"sport/tennis/player1/#", "sport/tennis/player1", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/tennis/player1/#", "sport/tennis/player2", false},
		{"sport/tennis/player1/#", "sport/tennis", false},
		{"sport/#", "sport", true},
		{"sport/#", "sport/tennis/player1", true},
		{"sport/#", "sports", false},
		{"sport/tennis/#", "sport/tennis", true},
		{"sport/tennis/#", "sport/tennis/player1", true},
		{"sport/tennis/#", "sport/tennisplayer1", false},
		{"#", "sport", true},
		{"#", "sport/tennis/player1", true},
		{"#", "/", true},
		{"#", "/finance", true},
		{"#", "a/$SYS", true},
	};
	(void)state;
	run_cases(c, sizeof(c) / sizeof(c[0]));
	/* "sport/tennis#" is not a valid filter, and neither is "sport/tennis/#/ranking" */
	assert_int_equal(filter_check("sport/tennis#"), MOAT_EMALFORMED);
	assert_int_equal(filter_check("sport/tennis/#/ranking"), MOAT_EMALFORMED);
}

static void test_spec_single_level(void **state)
{
	static const struct mcase c[] = {
		/* 4.7.1.3 */
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player2", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"+", "finance", true},
		{"+", "finance/stock", false},
		{"+", "/finance", false},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"sport/+/player1", "sport/tennis/player1", true},
		{"sport/+/player1", "sport/tennis/player2", false},
		{"+/tennis/#", "sport/tennis/player1", true},
		{"+/tennis/#", "sport/tennis", true},
		{"+/tennis/#", "sport/golf", false},
	};
	(void)state;
	run_cases(c, sizeof(c) / sizeof(c[0]));
	assert_int_equal(filter_check("sport+"), MOAT_EMALFORMED);
}

static void test_spec_dollar_topics(void **state)
{
	static const struct mcase c[] = {
		/* 4.7.2 */
		{"#", "$SYS/monitor/Clients", false},
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"$SYS/#", "$SYS/monitor/Clients", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"$SYS/#", "$SYS", true},
		{"#", "$SYS", false},
		{"+", "$SYS", false},
		{"+/#", "$SYS/x", false},
		{"#", "$", false},
		{"$", "$", true},
		{"+/+", "$a/b", false},
		{"$a/+", "$a/b", true},
		{"a/+", "a/$b", true},
		{"a/#", "a/$b", true},
		{"+/$b", "a/$b", true},
	};
	(void)state;
	run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_plain_levels(void **state)
{
	static const struct mcase c[] = {
		{"sport/tennis", "sport/tennis", true},
		{"sport/tennis", "sport/tennis/player1", false},
		{"sport/tennis/player1", "sport/tennis", false},
		{"sport", "sports", false},
		{"sports", "sport", false},
		{"ACCOUNTS", "Accounts", false}, /* case sensitive */
		{"a b", "a b", true},           /* spaces are ordinary characters */
		{"a", "b", false},
		{"a", "a", true},
		{"ab", "a", false},
		{"a", "ab", false},
	};
	(void)state;
	run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_empty_levels_and_slashes(void **state)
{
	static const struct mcase c[] = {
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"a/+/b", "a/b", false},
		{"a/b", "a//b", false},
		{"a//b", "a/b", false},
		{"a/+/+/b", "a///b", true},
		{"a/#", "a//b", true},
		/* trailing slashes */
		{"a/", "a/", true},
		{"a/", "a", false},
		{"a", "a/", false},
		{"a/", "a/b", false},
		{"a/+", "a/", true},
		{"a/+", "a//", false},
		{"a/#", "a/", true},
		{"a/#", "a//", true},
		{"a/+/#", "a/", true},
		{"a//", "a//", true},
		{"a/+/", "a//", true},
		/* leading slashes */
		{"/", "/", true},
		{"/a", "/a", true},
		{"/a", "a", false},
		{"a", "/a", false},
		{"//", "//", true},
		{"/", "//", false},
		/* the filters #, + and /# */
		{"+", "/", false},
		{"/+", "/", true},
		{"+/", "/", true},
		{"+/+", "/", true},
		{"+/+", "a", false},
		{"+/#", "a", true},
		{"+/#", "/", true},
		{"+", "a", true},
		{"+", "ab", true},
		{"/#", "/", true},
		{"/#", "/a/b", true},
		{"/#", "a", false},
		{"/#", "a/b", false},
		{"#", "a", true},
		{"#", "//", true},
	};
	(void)state;
	run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_match_empty_inputs(void **state)
{
	(void)state;
	/* empty strings are neither valid names nor valid filters: never a match */
	assert_false(moat_mqtt_topic_match((const uint8_t *)"#", 1, (const uint8_t *)"", 0));
	assert_false(moat_mqtt_topic_match((const uint8_t *)"", 0, (const uint8_t *)"a", 1));
	assert_false(moat_mqtt_topic_match((const uint8_t *)"", 0, (const uint8_t *)"", 0));
}

/* Lengths are honoured: bytes beyond n are not part of the string. */
static void test_match_uses_lengths(void **state)
{
	(void)state;
	assert_true(moat_mqtt_topic_match((const uint8_t *)"a/bXXX", 3, (const uint8_t *)"a/bYY", 3));
	assert_false(moat_mqtt_topic_match((const uint8_t *)"a/b", 3, (const uint8_t *)"a/bc", 3 + 1));
	assert_true(moat_mqtt_topic_match((const uint8_t *)"a/#", 1, (const uint8_t *)"a/b", 1));
	assert_false(moat_mqtt_topic_match((const uint8_t *)"a/#", 1, (const uint8_t *)"a/b", 3));
}

/* ---- long and deep ---- */

static void test_long_topic(void **state)
{
	const size_t n = 65535;
	uint8_t *t = malloc(n), *f = malloc(n);
	int i;

	(void)state;
	assert_non_null(t);
	assert_non_null(f);
	memset(t, 'a', n);
	memcpy(f, t, n);
	assert_int_equal(moat_mqtt_topic_name_check(t, n), 0);
	assert_int_equal(moat_mqtt_topic_filter_check(f, n), 0);
	/* repeated so a quadratic matcher would be noticed by anyone running it; no timing asserted */
	for (i = 0; i < 50; i++) {
		assert_true(moat_mqtt_topic_match(f, n, t, n));
		assert_true(moat_mqtt_topic_match((const uint8_t *)"#", 1, t, n));
		assert_true(moat_mqtt_topic_match((const uint8_t *)"+", 1, t, n));
		assert_true(moat_mqtt_topic_match((const uint8_t *)"+/#", 3, t, n - 1));
		assert_false(moat_mqtt_topic_match((const uint8_t *)"a", 1, t, n));
		assert_false(moat_mqtt_topic_match(f, n - 1, t, n));
		assert_false(moat_mqtt_topic_match(f, n, t, n - 1));
	}
	f[n - 1] = 'b';
	assert_false(moat_mqtt_topic_match(f, n, t, n));
	f[n - 1] = 'a';
	f[0] = 'b';
	assert_false(moat_mqtt_topic_match(f, n, t, n));
	/* a wildcard at the very end of a long filter */
	f[0] = 'a';
	f[n - 2] = '/';
	f[n - 1] = '#';
	t[n - 2] = '/';
	assert_int_equal(moat_mqtt_topic_filter_check(f, n), 0);
	assert_true(moat_mqtt_topic_match(f, n, t, n));
	assert_true(moat_mqtt_topic_match(f, n, t, n - 2)); /* "x/#" matches "x" */
	f[n - 1] = '+';
	assert_true(moat_mqtt_topic_match(f, n, t, n));
	/* a '#' in the middle of a long filter is caught */
	f[n / 2] = '#';
	assert_int_equal(moat_mqtt_topic_filter_check(f, n), MOAT_EMALFORMED);
	t[n / 2] = '+';
	assert_int_equal(moat_mqtt_topic_name_check(t, n), MOAT_EMALFORMED);
	free(t);
	free(f);
}

/* Builds n levels of `level` joined by '/', into a malloc'd buffer. */
static uint8_t *levels(size_t n, char level, size_t *len)
{
	uint8_t *p = malloc(2 * n);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < n; i++) {
		p[2 * i] = (uint8_t)level;
		p[2 * i + 1] = '/';
	}
	*len = 2 * n - 1;
	return p;
}

static void test_deep_topic(void **state)
{
	const size_t depth = 30000;
	size_t tn, fn, gn;
	uint8_t *t = levels(depth, 'a', &tn);
	uint8_t *f = levels(depth, '+', &fn);
	uint8_t *g = levels(depth - 1, '+', &gn);
	int i;

	(void)state;
	assert_int_equal(moat_mqtt_topic_name_check(t, tn), 0);
	assert_int_equal(moat_mqtt_topic_filter_check(f, fn), 0);
	assert_int_equal(moat_mqtt_topic_filter_check(t, tn), 0);
	for (i = 0; i < 20; i++) {
		assert_true(moat_mqtt_topic_match(f, fn, t, tn));   /* 30000 '+' vs 30000 levels */
		assert_false(moat_mqtt_topic_match(g, gn, t, tn));  /* 29999 '+': one short */
		assert_false(moat_mqtt_topic_match(f, fn, t, tn - 2)); /* topic one short */
		assert_true(moat_mqtt_topic_match(t, tn, t, tn));
		assert_true(moat_mqtt_topic_match((const uint8_t *)"#", 1, t, tn));
		assert_true(moat_mqtt_topic_match((const uint8_t *)"a/#", 3, t, tn));
		assert_false(moat_mqtt_topic_match((const uint8_t *)"+", 1, t, tn));
	}
	/* "+/+/.../+/#" with 29999 '+' matches 30000 and 29999 levels */
	g = realloc(g, gn + 2);
	assert_non_null(g);
	g[gn] = '/';
	g[gn + 1] = '#';
	assert_int_equal(moat_mqtt_topic_filter_check(g, gn + 2), 0);
	assert_true(moat_mqtt_topic_match(g, gn + 2, t, tn));
	assert_true(moat_mqtt_topic_match(g, gn + 2, t, tn - 2));
	assert_false(moat_mqtt_topic_match(g, gn + 2, t, tn - 4));
	/* last level differs */
	t[tn - 1] = 'b';
	assert_true(moat_mqtt_topic_match(f, fn, t, tn));
	assert_false(moat_mqtt_topic_match(t, tn - 1, t, tn));
	/* every level empty: 59999 slashes are 60000 empty levels */
	memset(t, '/', tn);
	assert_int_equal(moat_mqtt_topic_name_check(t, tn), 0);
	assert_true(moat_mqtt_topic_match((const uint8_t *)"#", 1, t, tn));
	assert_false(moat_mqtt_topic_match(f, fn, t, tn)); /* 30000 '+' vs 60000 levels */
	assert_true(moat_mqtt_topic_match(f, fn, t, depth - 1)); /* 29999 slashes: 30000 levels */
	free(t);
	free(f);
	free(g);
}

/* ---- validity checks ---- */

static void test_name_check(void **state)
{
	static const char *const valid[] = {
		"a", "/", "//", "a/b", "/a", "a/", "$SYS/monitor", "$", "a b", "sport/tennis/player1",
		"$share/g/x", /* a name, not a filter: only wildcards matter */
	};
	static const char *const invalid[] = {
		"+", "#", "a+", "a/#", "a/+/b", "sport/tennis#", "#/a", "a/b+c",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		if (name_check(valid[i]) != 0)
			fail_msg("\"%s\" should be a valid topic name", valid[i]);
	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		if (name_check(invalid[i]) != MOAT_EMALFORMED)
			fail_msg("\"%s\" should not be a valid topic name", invalid[i]);
	assert_int_equal(moat_mqtt_topic_name_check((const uint8_t *)"", 0), MOAT_EMALFORMED);
	/* the length is honoured */
	assert_int_equal(moat_mqtt_topic_name_check((const uint8_t *)"ab#", 2), 0);
}

static void test_filter_check(void **state)
{
	static const char *const valid[] = {
		"#", "+", "a/+/b", "a/#", "+/+", "/", "$share/g/a/#", "/#", "+/#", "a", "a/b",
		"//", "a//b", "+/", "/+", "$SYS/#", "$share/g/+", "$share/g/#", "$share/g//",
		"$share/group.1/a/b", "$share", "$shared/x", "share/g/x", "$SHARE/g/x",
		"$share/g/$share/h/x",
	};
	static const char *const invalid[] = {
		"a#", "a/#/b", "a+", "+a", "#/a", "a/b#", "$share/", "$share/g", "$share//x",
		"$share/g+/x", "$share/g#/x", "$share/g/", "#/", "##", "++", "+#", "a/+b", "a/b+",
		"$share/g/a#", "$share/g/#/a", "$share/+/x", "$share/#/x", "$share//",
		"$share/g/a+",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		if (filter_check(valid[i]) != 0)
			fail_msg("\"%s\" should be a valid topic filter", valid[i]);
	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		if (filter_check(invalid[i]) != MOAT_EMALFORMED)
			fail_msg("\"%s\" should not be a valid topic filter", invalid[i]);
	assert_int_equal(moat_mqtt_topic_filter_check((const uint8_t *)"", 0), MOAT_EMALFORMED);
	/* the length is honoured */
	assert_int_equal(moat_mqtt_topic_filter_check((const uint8_t *)"a/#b", 3), 0);
	assert_int_equal(moat_mqtt_topic_filter_check((const uint8_t *)"a/+b", 3), 0);
}

static void test_share_split(void **state)
{
	static const struct {
		const char *in, *group, *filter;
	} ok[] = {
		{"$share/g/a/#", "g", "a/#"},
		{"$share/consumer1/sport/tennis/+", "consumer1", "sport/tennis/+"},
		{"$share/g/#", "g", "#"},
		{"$share/g/+", "g", "+"},
		{"$share/g//", "g", "/"},
		{"$share/g/$SYS/#", "g", "$SYS/#"},
		{"$share/$g/x", "$g", "x"},
	};
	static const char *const bad[] = {
		"$share/", "$share/g", "$share//x", "$share/g+/x", "$share/g#/x", "$share/g/",
		"$share/g/a#", "$share/g/#/a", "$share/+/x", "$share//",
	};
	static const char *const not_shared[] = {
		"$shared/x", "$share", "share/g/x", "$SHARE/g/x", "a/$share/g/x", "$shar", "#",
	};
	const struct moat_slice sentinel = {(const uint8_t *)"sentinel", 8};
	struct moat_slice g, f;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		const uint8_t *in = (const uint8_t *)ok[i].in;
		assert_int_equal(moat_mqtt_share_split(in, strlen(ok[i].in), &g, &f), 1);
		assert_int_equal(g.len, strlen(ok[i].group));
		assert_memory_equal(g.p, ok[i].group, g.len);
		assert_ptr_equal(g.p, in + 7); /* borrowed, not copied */
		assert_int_equal(f.len, strlen(ok[i].filter));
		assert_memory_equal(f.p, ok[i].filter, f.len);
		assert_ptr_equal(f.p + f.len, in + strlen(ok[i].in));
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		g = f = sentinel;
		if (moat_mqtt_share_split((const uint8_t *)bad[i], strlen(bad[i]), &g, &f) !=
		    MOAT_EMALFORMED)
			fail_msg("\"%s\" should be a malformed shared filter", bad[i]);
		assert_ptr_equal(g.p, sentinel.p);
		assert_ptr_equal(f.p, sentinel.p);
	}
	for (i = 0; i < sizeof(not_shared) / sizeof(not_shared[0]); i++) {
		g = f = sentinel;
		if (moat_mqtt_share_split((const uint8_t *)not_shared[i], strlen(not_shared[i]), &g,
					  &f) != 0)
			fail_msg("\"%s\" is not a shared filter", not_shared[i]);
		assert_ptr_equal(g.p, sentinel.p);
		assert_int_equal(g.len, sentinel.len);
		assert_ptr_equal(f.p, sentinel.p);
	}
	/* a shared filter's inner filter matches like any other */
	assert_int_equal(moat_mqtt_share_split((const uint8_t *)"$share/g/sport/#", 16, &g, &f), 1);
	assert_true(moat_mqtt_topic_match(f.p, f.len, (const uint8_t *)"sport/tennis", 12));
}

/* ---- randomized differential test ---- */

struct lv {
	const char *p;
	size_t n;
};

#define MAX_LV 16

static size_t split(const char *s, size_t n, struct lv *out)
{
	size_t k = 0, start = 0, i;

	for (i = 0; i <= n; i++) {
		if (i == n || s[i] == '/') {
			assert_true(k < MAX_LV);
			out[k].p = s + start;
			out[k].n = i - start;
			k++;
			start = i + 1;
		}
	}
	return k;
}

static bool lv_is(const struct lv *l, const char *s)
{
	return l->n == strlen(s) && memcmp(l->p, s, l->n) == 0;
}

/* Reference validity from the spec's words (section 4.7.1, 4.7.3), not from the library. */
static bool ref_filter_valid(const char *s, size_t n)
{
	struct lv l[MAX_LV];
	size_t k, i;

	if (n == 0)
		return false;
	k = split(s, n, l);
	for (i = 0; i < k; i++) {
		bool wild = memchr(l[i].p, '+', l[i].n) || memchr(l[i].p, '#', l[i].n);
		if (!wild)
			continue;
		if (lv_is(&l[i], "+"))
			continue;
		if (lv_is(&l[i], "#") && i == k - 1)
			continue;
		return false;
	}
	return true;
}

static bool ref_name_valid(const char *s, size_t n)
{
	return n > 0 && !memchr(s, '+', n) && !memchr(s, '#', n);
}

static bool ref_levels(const struct lv *f, size_t fk, const struct lv *t, size_t tk)
{
	if (fk == 0)
		return tk == 0;
	if (lv_is(&f[0], "#"))
		return true; /* the rest, including no level at all (the parent) */
	if (tk == 0)
		return false;
	if (lv_is(&f[0], "+") || (f[0].n == t[0].n && memcmp(f[0].p, t[0].p, f[0].n) == 0))
		return ref_levels(f + 1, fk - 1, t + 1, tk - 1);
	return false;
}

static bool ref_match(const char *f, size_t fn, const char *t, size_t tn)
{
	struct lv fl[MAX_LV], tl[MAX_LV];

	if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	return ref_levels(fl, split(f, fn, fl), tl, split(t, tn, tl));
}

static uint64_t rng = 0x243F6A8885A308D3ull;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static size_t random_string(char *out, const char *alphabet, size_t maxlen)
{
	size_t n = 1 + rnd((unsigned)maxlen), i, a = strlen(alphabet);

	for (i = 0; i < n; i++)
		out[i] = alphabet[rnd((unsigned)a)];
	return n;
}

/* A topic built from filter f: wildcards replaced by random levels. */
static size_t topic_from_filter(const char *f, size_t fn, char *out)
{
	static const char *const lvls[] = {"", "a", "b", "ab", "$", "a$"};
	size_t i, n = 0;

	for (i = 0; i < fn; i++) {
		if (f[i] == '+' || f[i] == '#') {
			unsigned k = f[i] == '#' ? rnd(3) : 1, j;
			const char *s;
			if (f[i] == '#' && k == 0 && n > 0 && rnd(2)) {
				n--; /* "a/#" -> "a": drop the separator */
				continue;
			}
			for (j = 0; j < k; j++) {
				if (j)
					out[n++] = '/';
				s = lvls[rnd(6)];
				memcpy(out + n, s, strlen(s));
				n += strlen(s);
			}
		} else {
			out[n++] = f[i];
		}
	}
	if (n == 0)
		out[n++] = 'a';
	return n;
}

static void test_differential_random(void **state)
{
	char f[16], t[64];
	size_t fn, tn;
	unsigned pairs = 0, matches = 0, tries = 0;

	(void)state;
	while (pairs < 200000) {
		bool want, got;

		tries++;
		fn = random_string(f, "ab/+#$", 7);
		/* the library's filter check agrees with the reference on every candidate */
		if ((moat_mqtt_topic_filter_check((const uint8_t *)f, fn) == 0) !=
		    ref_filter_valid(f, fn))
			fail_msg("filter check disagrees on \"%.*s\"", (int)fn, f);
		if (!ref_filter_valid(f, fn))
			continue;
		if (rnd(2)) {
			tn = random_string(t, "ab/$", 7);
		} else {
			tn = topic_from_filter(f, fn, t);
			if (tn > 15) /* keep within MAX_LV levels */
				continue;
		}
		if ((moat_mqtt_topic_name_check((const uint8_t *)t, tn) == 0) !=
		    ref_name_valid(t, tn))
			fail_msg("name check disagrees on \"%.*s\"", (int)tn, t);
		if (!ref_name_valid(t, tn))
			continue;
		want = ref_match(f, fn, t, tn);
		got = moat_mqtt_topic_match((const uint8_t *)f, fn, (const uint8_t *)t, tn);
		if (got != want)
			fail_msg("filter \"%.*s\" topic \"%.*s\": got %d, reference %d", (int)fn, f,
				 (int)tn, t, got, want);
		pairs++;
		matches += want;
	}
	/* the generator produced both outcomes in quantity */
	assert_true(matches > 20000);
	assert_true(pairs - matches > 20000);
	assert_true(tries > pairs);
}

/* Exhaustive over short strings: every filter and name of up to 5 characters. */
static void test_differential_exhaustive_short(void **state)
{
	static const char fa[] = "ab/+#$";
	static const char ta[] = "a/$";
	char f[8], t[8];
	unsigned fl, tl, fi, ti, x;

	(void)state;
	for (fl = 1; fl <= 5; fl++) {
		unsigned fcount = 1;
		for (x = 0; x < fl; x++)
			fcount *= 6;
		for (fi = 0; fi < fcount; fi++) {
			unsigned v = fi;
			for (x = 0; x < fl; x++, v /= 6)
				f[x] = fa[v % 6];
			if (!ref_filter_valid(f, fl))
				continue;
			for (tl = 1; tl <= 5; tl++) {
				unsigned tcount = 1;
				for (x = 0; x < tl; x++)
					tcount *= 3;
				for (ti = 0; ti < tcount; ti++) {
					unsigned w = ti;
					for (x = 0; x < tl; x++, w /= 3)
						t[x] = ta[w % 3];
					if (moat_mqtt_topic_match((const uint8_t *)f, fl,
								  (const uint8_t *)t, tl) !=
					    ref_match(f, fl, t, tl))
						fail_msg("filter \"%.*s\" topic \"%.*s\": got %d",
							 (int)fl, f, (int)tl, t,
							 !ref_match(f, fl, t, tl));
				}
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_multi_level),
		cmocka_unit_test(test_spec_single_level),
		cmocka_unit_test(test_spec_dollar_topics),
		cmocka_unit_test(test_plain_levels),
		cmocka_unit_test(test_empty_levels_and_slashes),
		cmocka_unit_test(test_match_empty_inputs),
		cmocka_unit_test(test_match_uses_lengths),
		cmocka_unit_test(test_long_topic),
		cmocka_unit_test(test_deep_topic),
		cmocka_unit_test(test_name_check),
		cmocka_unit_test(test_filter_check),
		cmocka_unit_test(test_share_split),
		cmocka_unit_test(test_differential_random),
		cmocka_unit_test(test_differential_exhaustive_short),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
