/*
 * fuzz_topic.c - libFuzzer target: topic names, topic filters, matching.
 *
 * The input is split at its first 0x00 byte into a filter (before) and a
 * topic (after; empty if there is no 0x00), each copied to an exactly-sized
 * buffer. Checked against reference implementations written here from the
 * specs (MQTT 5.0 sections 4.7 and 4.8.2), level by level:
 *   - moat_mqtt_topic_name_check: at least one character, no '+' or '#';
 *   - moat_mqtt_topic_filter_check: at least one character, '+' and '#'
 *     only as whole levels, '#' only last; "$share/{group}/{filter}" with a
 *     group that is non-empty and has no '+' or '#', and a valid inner filter;
 *   - moat_mqtt_share_split: 0 / 1 / MOAT_EMALFORMED as the reference says,
 *     with the group and inner filter it splits out;
 *   - moat_mqtt_topic_match, for a valid name and a valid filter (the inner
 *     one of a shared filter), against a recursive matcher: '+' is one level
 *     (possibly empty), '#' the rest of the levels including the parent, and
 *     a filter starting with '+' or '#' never matches a topic starting with
 *     '$'; a valid name used as a filter matches itself;
 *   - moat_mqtt_topic_match on any bytes (invalid ones included) returns
 *     without a sanitizer report.
 */
#include "fuzz_common.h"

/* The levels of s[0..n): n + 1 slots are enough. Returns how many. */
static size_t split_levels(const uint8_t *s, size_t n, struct moat_slice *lv)
{
	size_t k = 0, start = 0, i;

	for (i = 0; i <= n; i++) {
		if (i == n || s[i] == '/') {
			lv[k].p = s + start;
			lv[k].len = i - start;
			k++;
			start = i + 1;
		}
	}
	return k;
}

static bool level_is(struct moat_slice l, char c)
{
	return l.len == 1 && l.p[0] == (uint8_t)c;
}

static bool has_wildcard(const uint8_t *p, size_t n)
{
	return (n && memchr(p, '+', n)) || (n && memchr(p, '#', n));
}

static bool ref_name_valid(const uint8_t *p, size_t n)
{
	return n > 0 && !has_wildcard(p, n);
}

/* A filter that is not a shared one. */
static bool ref_plain_valid(const uint8_t *p, size_t n)
{
	struct moat_slice *lv;
	size_t k, i;
	bool ok = true;

	if (n == 0)
		return false;
	lv = malloc((n + 1) * sizeof(*lv));
	FZ_ASSERT(lv != NULL);
	k = split_levels(p, n, lv);
	for (i = 0; i < k && ok; i++) {
		if (!has_wildcard(lv[i].p, lv[i].len))
			continue;
		if (level_is(lv[i], '+'))
			continue;
		ok = level_is(lv[i], '#') && i + 1 == k;
	}
	free(lv);
	return ok;
}

#define SHARE "$share/"
#define SHARE_LEN (sizeof(SHARE) - 1)

/* -1: not "$share/"; 0: starts with it but invalid; 1: valid, *g and *f set. */
static int ref_share(const uint8_t *p, size_t n, struct moat_slice *g, struct moat_slice *f)
{
	const uint8_t *rest, *slash;
	size_t rn;

	if (n < SHARE_LEN || memcmp(p, SHARE, SHARE_LEN) != 0)
		return -1;
	rest = p + SHARE_LEN;
	rn = n - SHARE_LEN;
	slash = rn ? memchr(rest, '/', rn) : NULL;
	if (!slash)
		return 0;
	g->p = rest;
	g->len = (size_t)(slash - rest);
	f->p = slash + 1;
	f->len = rn - g->len - 1;
	if (g->len == 0 || has_wildcard(g->p, g->len))
		return 0;
	return ref_plain_valid(f->p, f->len) ? 1 : 0;
}

/* Filter levels fl[i..fk) against topic levels tl[j..tk). */
static bool ref_levels(const struct moat_slice *fl, size_t fk, size_t i,
		       const struct moat_slice *tl, size_t tk, size_t j)
{
	if (i == fk)
		return j == tk;
	if (level_is(fl[i], '#'))
		return true;
	if (j == tk)
		return false;
	if (!level_is(fl[i], '+') && !fz_slice_eq(fl[i], tl[j]))
		return false;
	return ref_levels(fl, fk, i + 1, tl, tk, j + 1);
}

/* Section 4.7 matching of a valid plain filter against a valid name. */
static bool ref_match(const uint8_t *f, size_t fn, const uint8_t *t, size_t tn)
{
	struct moat_slice *fl, *tl;
	size_t fk, tk;
	bool m;

	if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	fl = malloc((fn + 1) * sizeof(*fl));
	tl = malloc((tn + 1) * sizeof(*tl));
	FZ_ASSERT(fl != NULL && tl != NULL);
	fk = split_levels(f, fn, fl);
	tk = split_levels(t, tn, tl);
	m = ref_levels(fl, fk, 0, tl, tk, 0);
	free(tl);
	free(fl);
	return m;
}

static void check_match(const uint8_t *f, size_t fn, const uint8_t *t, size_t tn)
{
	bool got = moat_mqtt_topic_match(f, fn, t, tn);
	bool want = ref_match(f, fn, t, tn);

	if (got != want) {
		fprintf(stderr, "topic_match(\"%.*s\", \"%.*s\") = %d, reference says %d\n", (int)fn,
			(const char *)f, (int)tn, (const char *)t, got, want);
		FZ_ASSERT(got == want);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = size ? memchr(data, 0, size) : NULL;
	size_t fn = nul ? (size_t)(nul - data) : size;
	size_t tn = nul ? size - fn - 1 : 0;
	uint8_t *f = fz_dup(data, fn);
	uint8_t *t = fz_dup(nul ? nul + 1 : data, tn);
	struct moat_slice g = {0}, inner = {0}, rg = {0}, rf = {0};
	bool name_ok, plain_ok, filter_ok;
	int share, rshare;

	name_ok = ref_name_valid(t, tn);
	FZ_ASSERT((moat_mqtt_topic_name_check(t, tn) == 0) == name_ok);
	FZ_ASSERT(moat_mqtt_topic_name_check(t, tn) == 0 ||
		  moat_mqtt_topic_name_check(t, tn) == MOAT_EMALFORMED);

	rshare = ref_share(f, fn, &rg, &rf);
	share = moat_mqtt_share_split(f, fn, &g, &inner);
	FZ_ASSERT(share == 0 || share == 1 || share == MOAT_EMALFORMED);
	FZ_ASSERT(share == (rshare < 0 ? 0 : rshare ? 1 : MOAT_EMALFORMED));
	if (share == 1) {
		FZ_ASSERT(fz_slice_eq(g, rg) && g.p == rg.p);
		FZ_ASSERT(fz_slice_eq(inner, rf) && inner.p == rf.p);
	}

	plain_ok = rshare < 0 && ref_plain_valid(f, fn);
	filter_ok = rshare < 0 ? plain_ok : rshare == 1;
	FZ_ASSERT((moat_mqtt_topic_filter_check(f, fn) == 0) == filter_ok);
	FZ_ASSERT(moat_mqtt_topic_filter_check(f, fn) == 0 ||
		  moat_mqtt_topic_filter_check(f, fn) == MOAT_EMALFORMED);

	/* Any bytes: a boolean, no fault. */
	(void)moat_mqtt_topic_match(f, fn, t, tn);
	(void)moat_mqtt_topic_match(t, tn, f, fn);

	if (name_ok && plain_ok)
		check_match(f, fn, t, tn);
	if (name_ok && share == 1)
		check_match(inner.p, inner.len, t, tn);
	/* A valid name, used as a filter, matches itself. */
	if (name_ok && ref_share(t, tn, &rg, &rf) < 0)
		FZ_ASSERT(moat_mqtt_topic_match(t, tn, t, tn));
	if (ref_name_valid(f, fn) && rshare < 0)
		FZ_ASSERT(moat_mqtt_topic_match(f, fn, f, fn));

	free(t);
	free(f);
	return 0;
}
