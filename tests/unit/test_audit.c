/*
 * test_audit.c - unit tests for the audit log (src/security/audit.c).
 *
 * Covers: the exact text of two lines, with hashes computed independently
 * in Python (hashlib); member order and which members are left out; hostile
 * field contents (quotes, backslashes, every C0 control, DEL, C1 controls,
 * U+2028, invalid UTF-8 of every kind, very long strings) that must stay one
 * line of valid JSON, checked by a small JSON parser written here apart from
 * audit.c's own; the chain verifying; every single-byte edit of a log, the
 * deletion of any line, the swap of any two neighbours and every truncation
 * of the last line caught at the right line; reopening (chain and seq go on;
 * a log whose last line does not verify is refused); rotation by size (a
 * "rotated" first line chained to the old file, files past keep deleted,
 * the series verifying file to file); a rotation that fails (events go on
 * into the old file); and the recovery of a crash between rotating and the
 * first write.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/utf8.h"
#include "security/audit.h"

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"
#define ZEROS63 "000000000000000000000000000000000000000000000000000000000000000"
#define T0 1767323045678 /* 2026-01-02T03:04:05.678Z */

static char dir[64];
static char path[128];
static char err[1024];

/* ---- fixtures and file helpers ---- */

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/moat-audit-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	return 0;
}

static int teardown(void **state)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[512];

	(void)state;
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.') {
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
	rmdir(dir);
	return 0;
}

/* The whole file at p, NUL-terminated; *len its size. Owned: free(). */
static char *slurp(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

static void spit(const char *p, const char *buf, size_t len)
{
	FILE *f = fopen(p, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
}

static bool exists(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0;
}

/* Offsets where each line starts; returns the count (lines end in '\n'). */
static size_t line_starts(const char *buf, size_t len, size_t *starts, size_t cap)
{
	size_t n = 0, i;

	for (i = 0; i < len && n < cap; i++)
		if (i == 0 || buf[i - 1] == '\n')
			starts[n++] = i;
	return n;
}

static struct moat_audit *open_log(uint64_t max_size, int keep)
{
	struct moat_audit *a = NULL;
	int rc = moat_audit_open(path, max_size, keep, &a, err, sizeof(err));

	if (rc != 0)
		fail_msg("open: %s", err);
	return a;
}

static struct moat_sec_event event(enum moat_sec_kind kind)
{
	struct moat_sec_event e = {.kind = kind, .addr = "192.0.2.1:5000", .client_id = "c1"};

	return e;
}

static void write_n(struct moat_audit *a, int n, int64_t t)
{
	struct moat_sec_event e = event(MOAT_SEC_CONNECTION_OPENED);
	int i;

	for (i = 0; i < n; i++) {
		e.value = i + 1;
		assert_int_equal(moat_audit_write(a, &e, t + i), 0);
	}
}

/* Verifies p; returns the verify code, lines in *lines. */
static int verify(const char *p, const char *prev, uint64_t *lines, char *last)
{
	uint64_t n = 0;
	int rc = moat_audit_verify(p, prev, &n, last, err, sizeof(err));

	if (lines)
		*lines = n;
	return rc;
}

static void assert_verifies(const char *p, uint64_t want_lines)
{
	uint64_t n = 0;

	if (verify(p, NULL, &n, NULL) != 0)
		fail_msg("verify %s: %s", p, err);
	assert_int_equal(n, want_lines);
}

/* Verify must fail naming line `line` of p. */
static void assert_broken_at(const char *p, unsigned line)
{
	char want[160];

	assert_int_equal(verify(p, NULL, NULL, NULL), MOAT_EPROTOCOL);
	snprintf(want, sizeof(want), "%s:%u: ", p, line);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("expected a break at line %u, got: %s", line, err);
}

/* ---- a JSON checker of its own (RFC 8259), apart from audit.c's ---- */

struct js {
	const char *s;
	size_t n, i;
	char keys[32][16]; /* the top-level keys, in order (cut at 15 bytes) */
	int nkeys;
};

static bool js_value(struct js *j, int depth);

static bool js_lit(struct js *j, const char *lit)
{
	size_t n = strlen(lit);

	if (j->n - j->i < n || memcmp(j->s + j->i, lit, n) != 0)
		return false;
	j->i += n;
	return true;
}

static bool js_string(struct js *j, char *out, size_t cap)
{
	size_t o = 0;

	if (j->i >= j->n || j->s[j->i++] != '"')
		return false;
	while (j->i < j->n && j->s[j->i] != '"') {
		unsigned char c = (unsigned char)j->s[j->i++];

		if (c < 0x20)
			return false;
		if (c == '\\') {
			if (j->i >= j->n)
				return false;
			c = (unsigned char)j->s[j->i++];
			if (c == 'u') {
				for (int k = 0; k < 4; k++, j->i++)
					if (j->i >= j->n || !strchr("0123456789abcdefABCDEF", j->s[j->i]) ||
					    j->s[j->i] == '\0')
						return false;
			} else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
				return false;
			}
		}
		if (out && o + 1 < cap)
			out[o++] = (char)c;
	}
	if (out && cap)
		out[o] = '\0';
	return j->i < j->n && j->s[j->i++] == '"';
}

static bool js_number(struct js *j)
{
	size_t start;

	js_lit(j, "-");
	start = j->i;
	while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
		j->i++;
	if (j->i == start || (j->s[start] == '0' && j->i - start > 1))
		return false;
	if (js_lit(j, ".")) {
		start = j->i;
		while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
			j->i++;
		if (j->i == start)
			return false;
	}
	return true;
}

static bool js_members(struct js *j, bool object, int depth)
{
	if (js_lit(j, object ? "}" : "]"))
		return true;
	do {
		if (object) {
			char key[16];

			if (!js_string(j, key, sizeof(key)) || !js_lit(j, ":"))
				return false;
			if (depth == 0 && j->nkeys < 32)
				memcpy(j->keys[j->nkeys++], key, sizeof(key));
		}
		if (!js_value(j, depth + 1))
			return false;
	} while (js_lit(j, ","));
	return js_lit(j, object ? "}" : "]");
}

static bool js_value(struct js *j, int depth)
{
	if (depth > 16 || j->i >= j->n)
		return false;
	switch (j->s[j->i]) {
	case '{':
		j->i++;
		return js_members(j, true, depth);
	case '[':
		j->i++;
		return js_members(j, false, depth);
	case '"':
		return js_string(j, NULL, 0);
	case 't':
		return js_lit(j, "true");
	case 'f':
		return js_lit(j, "false");
	case 'n':
		return js_lit(j, "null");
	default:
		return js_number(j);
	}
}

/* s[0..n) is one JSON object (valid UTF-8); j->keys gets its keys in order. */
static bool json_object(const char *s, size_t n, struct js *j)
{
	memset(j, 0, sizeof(*j));
	j->s = s;
	j->n = n;
	if (moat_utf8_check((const uint8_t *)s, n, MOAT_UTF8_ALLOW_DISCOURAGED) != MOAT_UTF8_OK)
		return false;
	return n && s[0] == '{' && js_value(j, 0) && j->i == n;
}

/* The only line of the log: must be one valid JSON object line. Owned: free(). */
static char *only_line(void)
{
	size_t len;
	char *buf = slurp(path, &len);
	struct js j;

	assert_true(len > 0);
	assert_int_equal(buf[len - 1], '\n');
	assert_ptr_equal(memchr(buf, '\n', len), buf + len - 1);
	if (!json_object(buf, len - 1, &j))
		fail_msg("not a JSON object: %s", buf);
	return buf;
}

/* ---- the exact format ---- */

static void test_known_lines(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	struct moat_sec_event e = {
		.kind = MOAT_SEC_AUTH_FAILURE, .addr = "192.0.2.1:5000", .client_id = "c1",
		.username = "alice", .method = "password", .reason = "bad password", .port = 1883,
		.value = 3};
	struct moat_sec_event d = {.kind = MOAT_SEC_ACL_DENIED, .addr = "", .client_id = "",
				   .topic = "a/b", .access = "publish", .value = -7};
	char *buf;

	(void)state;
	assert_int_equal(moat_audit_write(a, &e, T0), 0);
	assert_int_equal(moat_audit_write(a, &d, T0 + 1), 0);
	moat_audit_close(a);
	buf = slurp(path, NULL);
	/* Hashes: Python hashlib.sha256 of each line up to ',"hash":'. */
	assert_string_equal(
		buf,
		"{\"ts\":\"2026-01-02T03:04:05.678Z\",\"seq\":1,\"kind\":\"auth_failure\","
		"\"addr\":\"192.0.2.1:5000\",\"client_id\":\"c1\",\"username\":\"alice\","
		"\"method\":\"password\",\"reason\":\"bad password\",\"port\":1883,\"value\":3,"
		"\"prev\":\"" ZEROS "\","
		"\"hash\":\"ce65b487cae95f2d512f3a350f1183487ed7939cd94db645b7321cc0282a9531\"}\n"
		"{\"ts\":\"2026-01-02T03:04:05.679Z\",\"seq\":2,\"kind\":\"acl_denied\","
		"\"client_id\":\"\",\"topic\":\"a/b\",\"access\":\"publish\",\"value\":-7,"
		"\"prev\":\"ce65b487cae95f2d512f3a350f1183487ed7939cd94db645b7321cc0282a9531\","
		"\"hash\":\"02c317293da12dfd7d1305e8b1151e982087b03ad0b64e7c4f292edb500a88d7\"}\n");
	free(buf);
	assert_verifies(path, 2);
}

static void test_member_order(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	struct moat_sec_event e = {
		.kind = MOAT_SEC_BANNED, .addr = "a", .client_id = "b", .username = "c",
		.method = "d", .reason = "e", .topic = "f", .access = "g", .port = 1, .value = 2};
	static const char *const want[] = {"ts",     "seq",    "kind",  "addr",   "client_id",
					   "username", "method", "reason", "topic", "access",
					   "port",   "value",  "prev",  "hash"};
	char *buf;
	struct js j;
	int i;

	(void)state;
	assert_int_equal(moat_audit_write(a, &e, T0), 0);
	moat_audit_close(a);
	buf = only_line();
	assert_true(json_object(buf, strlen(buf) - 1, &j));
	assert_int_equal(j.nkeys, 14);
	for (i = 0; i < 14; i++)
		assert_string_equal(j.keys[i], want[i]);
	free(buf);
}

static void test_ts_before_epoch(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	struct moat_sec_event e = {.kind = MOAT_SEC_RELOAD};
	char *buf;

	(void)state;
	assert_int_equal(moat_audit_write(a, &e, -1), 0);
	moat_audit_close(a);
	buf = only_line();
	assert_non_null(strstr(buf, "{\"ts\":\"1969-12-31T23:59:59.999Z\",\"seq\":1,"
				    "\"kind\":\"reload\",\"prev\":"));
	free(buf);
}

/* ---- hostile contents ---- */

/* Writes one event with client_id = s; returns the escaped client_id text. Owned. */
static char *escaped_client_id(const char *s)
{
	struct moat_audit *a;
	struct moat_sec_event e = {.kind = MOAT_SEC_AUTH_FAILURE, .client_id = s, .reason = "x"};
	char *buf, *start, *end, *out;

	unlink(path);
	a = open_log(0, 0);
	assert_int_equal(moat_audit_write(a, &e, T0), 0);
	moat_audit_close(a);
	assert_verifies(path, 1);
	buf = only_line();
	start = strstr(buf, "\"client_id\":\"");
	end = strstr(buf, "\",\"reason\":\"x\"");
	assert_non_null(start);
	assert_non_null(end);
	start += strlen("\"client_id\":\"");
	out = strndup(start, (size_t)(end - start));
	free(buf);
	return out;
}

static void expect_escape(const char *in, const char *want)
{
	char *got = escaped_client_id(in);

	assert_string_equal(got, want);
	free(got);
}

static void test_escapes(void **state)
{
	(void)state;
	expect_escape("plain", "plain");
	expect_escape("q\"b\\s/", "q\\\"b\\\\s/");
	expect_escape("a\nb\rc\td", "a\\nb\\rc\\td");
	expect_escape("\x01\x08\x0c\x1b\x1f\x7f", "\\u0001\\u0008\\u000c\\u001b\\u001f\\u007f");
	/* Injection attempt: ends the string and the line, starts a forged line. */
	expect_escape("x\"}\n{\"seq\":1", "x\\\"}\\n{\\\"seq\\\":1");
	/* Valid non-ASCII stays as it is; C1 controls and U+2028/9 are escaped. */
	expect_escape("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	expect_escape("\xc2\x9b[2J\xc2\x85", "\\u009b[2J\\u0085");
	expect_escape("a\xe2\x80\xa8" "b\xe2\x80\xa9", "a\\u2028b\\u2029");
	/* Invalid UTF-8: each bad byte as \u00XX of itself. */
	expect_escape("\xff\xfe", "\\u00ff\\u00fe");
	expect_escape("a\xc3", "a\\u00c3");                      /* truncated at the end */
	expect_escape("\xc3(", "\\u00c3(");                      /* bad continuation */
	expect_escape("\xc0\xaf", "\\u00c0\\u00af");             /* overlong '/' */
	expect_escape("\xed\xa0\x80", "\\u00ed\\u00a0\\u0080");  /* surrogate U+D800 */
	expect_escape("\xf4\x90\x80\x80", "\\u00f4\\u0090\\u0080\\u0080"); /* > U+10FFFF */
	expect_escape("\xe2\x82", "\\u00e2\\u0082");
	expect_escape("\x80", "\\u0080");
}

/* Every byte value 1..255 in one field, and in every field at once. */
static void test_all_bytes(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	struct moat_sec_event e = {.kind = MOAT_SEC_PROTOCOL_VIOLATION};
	char s[256], *buf;
	int i;

	(void)state;
	for (i = 1; i < 256; i++)
		s[i - 1] = (char)i;
	s[255] = '\0';
	e.addr = e.client_id = e.username = e.method = e.reason = e.topic = e.access = s;
	assert_int_equal(moat_audit_write(a, &e, T0), 0);
	moat_audit_close(a);
	buf = only_line();
	free(buf);
	assert_verifies(path, 1);
}

static void test_long_fields(void **state)
{
	size_t big = 100000;
	char *s = malloc(big + 1), *got;
	size_t i;

	(void)state;
	assert_non_null(s);
	memset(s, 'a', big);
	s[big] = '\0';
	got = escaped_client_id(s);
	assert_int_equal(strlen(got), 1024 + 3);
	assert_string_equal(got + 1024, "...");
	free(got);

	/* 3-byte characters: cut at 341 of them (1023 bytes), never inside one. */
	for (i = 0; i + 3 <= big; i += 3)
		memcpy(s + i, "\xe2\x82\xac", 3);
	s[i] = '\0';
	got = escaped_client_id(s);
	assert_int_equal(strlen(got), 1023 + 3);
	assert_int_equal(memcmp(got + 1020, "\xe2\x82\xac...", 6), 0);
	free(got);

	/* Invalid bytes, each six characters escaped: the line stays bounded. */
	memset(s, 0xff, big);
	s[big] = '\0';
	got = escaped_client_id(s);
	assert_int_equal(strlen(got), 1024 * 6 + 3);
	free(got);

	/* Everything at its worst at once, still one line of valid JSON. */
	{
		struct moat_sec_event e = {.kind = MOAT_SEC_ACL_DENIED};
		struct moat_audit *a;
		size_t len;

		e.addr = e.client_id = e.username = e.method = e.reason = e.topic = e.access = s;
		unlink(path);
		a = open_log(0, 0);
		assert_int_equal(moat_audit_write(a, &e, T0), 0);
		moat_audit_close(a);
		got = only_line();
		len = strlen(got);
		assert_true(len > 7 * 6144 && len < 65536);
		free(got);
		assert_verifies(path, 1);
	}
	free(s);
}

/* ---- the chain ---- */

static void test_chain(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	char last[65], *buf, want[128];
	size_t starts[32], len, n, i;
	uint64_t lines;

	(void)state;
	write_n(a, 20, T0);
	assert_int_equal(moat_audit_sync(a), 0);
	moat_audit_close(a);
	assert_int_equal(verify(path, NULL, &lines, last), 0);
	assert_int_equal(lines, 20);
	buf = slurp(path, &len);
	n = line_starts(buf, len, starts, 32);
	assert_int_equal(n, 20);
	for (i = 0; i < n; i++) {
		struct js j;
		size_t end = (i + 1 < n ? starts[i + 1] : len) - 1;

		assert_true(json_object(buf + starts[i], end - starts[i], &j));
		snprintf(want, sizeof(want), "\"seq\":%zu,", i + 1);
		assert_non_null(strstr(buf + starts[i], want));
	}
	assert_non_null(strstr(buf, "\"prev\":\"" ZEROS "\""));
	snprintf(want, sizeof(want), "\"hash\":\"%s\"}\n", last);
	assert_string_equal(buf + len - strlen(want), want);
	free(buf);

	{
		struct stat st;

		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
	}
}

/* The line (1-based) holding byte off. */
static unsigned line_of(const size_t *starts, size_t n, size_t off)
{
	unsigned l = 0;

	while (l < n && starts[l] <= off)
		l++;
	return l;
}

static void test_every_byte_edit(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	struct moat_sec_event e = {.kind = MOAT_SEC_AUTH_FAILURE, .addr = "::1", .username = "u\"\\",
				   .reason = "r\xc3\xa9\x01"};
	size_t starts[8], len, n, off;
	char *orig, *buf;

	(void)state;
	assert_int_equal(moat_audit_write(a, &e, T0), 0);
	write_n(a, 3, T0);
	moat_audit_close(a);
	orig = slurp(path, &len);
	n = line_starts(orig, len, starts, 8);
	assert_int_equal(n, 4);
	buf = malloc(len);
	assert_non_null(buf);
	for (off = 0; off < len; off++) {
		static const unsigned char flips[] = {0x01, 0x20, 0x80};
		size_t k;

		for (k = 0; k < sizeof(flips); k++) {
			memcpy(buf, orig, len);
			buf[off] = (char)(buf[off] ^ flips[k]);
			spit(path, buf, len);
			assert_broken_at(path, line_of(starts, n, off));
		}
	}
	free(buf);
	free(orig);
}

static void test_delete_and_swap(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	size_t starts[8], len, n, k, out;
	char *orig, *buf;

	(void)state;
	write_n(a, 6, T0);
	moat_audit_close(a);
	orig = slurp(path, &len);
	n = line_starts(orig, len, starts, 8);
	starts[n] = len;
	buf = malloc(len);
	assert_non_null(buf);
	/* Deleting any line but the last is caught there (the last: see verify's limits). */
	for (k = 0; k + 1 < n; k++) {
		out = starts[k];
		memcpy(buf, orig, out);
		memcpy(buf + out, orig + starts[k + 1], len - starts[k + 1]);
		spit(path, buf, len - (starts[k + 1] - starts[k]));
		assert_broken_at(path, (unsigned)k + 1);
	}
	/* Swapping any two neighbours is caught at the first of them. */
	for (k = 0; k + 1 < n; k++) {
		size_t l1 = starts[k + 1] - starts[k], l2 = starts[k + 2] - starts[k + 1];

		memcpy(buf, orig, len);
		memcpy(buf + starts[k], orig + starts[k + 1], l2);
		memcpy(buf + starts[k] + l2, orig + starts[k], l1);
		spit(path, buf, len);
		assert_broken_at(path, (unsigned)k + 1);
	}
	/* Deleting the last line leaves a shorter chain that verifies. */
	spit(path, orig, starts[n - 1]);
	assert_verifies(path, n - 1);
	free(buf);
	free(orig);
}

static void test_truncate_last(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	size_t starts[8], len, n, cut;
	char *orig;

	(void)state;
	write_n(a, 3, T0);
	moat_audit_close(a);
	orig = slurp(path, &len);
	n = line_starts(orig, len, starts, 8);
	for (cut = 1; cut < len - starts[n - 1]; cut++) {
		spit(path, orig, len - cut);
		assert_broken_at(path, (unsigned)n);
	}
	free(orig);
}

static void test_verify_errors(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	char last[65];

	(void)state;
	write_n(a, 2, T0);
	moat_audit_close(a);
	assert_int_equal(verify(path, ZEROS, NULL, last), 0);
	assert_int_equal(verify(path, "1" ZEROS63, NULL, NULL), MOAT_EPROTOCOL);
	assert_non_null(strstr(err, ":1: \"prev\" does not continue"));
	assert_int_equal(verify(path, "xyz", NULL, NULL), MOAT_EINVAL);
	assert_int_equal(verify("/nonexistent/audit.log", NULL, NULL, NULL), MOAT_EIO);
	spit(path, "", 0);
	assert_verifies(path, 0);
	spit(path, "\n", 1);
	assert_broken_at(path, 1);
	spit(path, "not json\n", 9);
	assert_broken_at(path, 1);
}

/* ---- reopening ---- */

static void test_reopen(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	char *buf;

	(void)state;
	write_n(a, 3, T0);
	moat_audit_close(a);
	a = open_log(0, 0);
	write_n(a, 2, T0 + 10);
	moat_audit_close(a);
	assert_verifies(path, 5);
	buf = slurp(path, NULL);
	assert_non_null(strstr(buf, "\"seq\":4,"));
	assert_non_null(strstr(buf, "\"seq\":5,"));
	free(buf);
}

static void test_reopen_refuses_bad_tail(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	size_t len;
	char *orig = NULL;

	(void)state;
	write_n(a, 3, T0);
	moat_audit_close(a);
	orig = slurp(path, &len);

	/* A changed last line. */
	orig[len - 10] ^= 1;
	spit(path, orig, len);
	a = NULL;
	assert_int_equal(moat_audit_open(path, 0, 0, &a, err, sizeof(err)), MOAT_ECONFIG);
	assert_null(a);
	assert_non_null(strstr(err, "hash does not match"));
	orig[len - 10] ^= 1;

	/* A last line without its newline (a torn write). */
	spit(path, orig, len - 1);
	assert_int_equal(moat_audit_open(path, 0, 0, &a, err, sizeof(err)), MOAT_ECONFIG);
	assert_non_null(strstr(err, "incomplete"));

	/* Not an audit log at all. */
	spit(path, "hello\n", 6);
	assert_int_equal(moat_audit_open(path, 0, 0, &a, err, sizeof(err)), MOAT_ECONFIG);

	/* Bad arguments. */
	assert_int_equal(moat_audit_open(path, 100, 0, &a, err, sizeof(err)), MOAT_ECONFIG);
	assert_int_equal(moat_audit_open(path, 100, 100, &a, err, sizeof(err)), MOAT_ECONFIG);
	assert_int_equal(moat_audit_open("/nonexistent/dir/x", 0, 0, &a, err, sizeof(err)),
			 MOAT_EIO);

	/* Whole again: it goes on. */
	spit(path, orig, len);
	a = open_log(0, 0);
	write_n(a, 1, T0);
	moat_audit_close(a);
	assert_verifies(path, 4);
	free(orig);
}

/* ---- rotation ---- */

static const char *rot(int i)
{
	static char names[4][160];
	char *p = names[i & 3];

	if (i == 0)
		snprintf(p, 160, "%s", path);
	else
		snprintf(p, 160, "%s.%d", path, i);
	return p;
}

/* Verifies PATH.k .. PATH.1, PATH as a series; returns the total lines. */
static uint64_t verify_series(int k)
{
	char prev[65];
	uint64_t n, total = 0;
	int i;

	for (i = k; i >= 0; i--) {
		if (verify(rot(i), i == k ? NULL : prev, &n, prev) != 0)
			fail_msg("series: %s", err);
		total += n;
	}
	return total;
}

/* The seq of the first and last lines of p. */
static void seq_range(const char *p, uint64_t *first, uint64_t *last)
{
	char *buf = slurp(p, NULL), *s, *at = NULL;

	*first = strtoull(strstr(buf, "\"seq\":") + 6, NULL, 10);
	for (s = buf; (s = strstr(s, "\"seq\":")); s += 6)
		at = s;
	*last = strtoull(at + 6, NULL, 10);
	free(buf);
}

static void test_rotation(void **state)
{
	struct moat_audit *a = open_log(1000, 2);
	uint64_t f0, l0, f1, l1, f2, l2;
	struct stat st;
	char *buf;

	(void)state;
	write_n(a, 40, T0);
	moat_audit_close(a);
	assert_true(exists(rot(1)));
	assert_true(exists(rot(2)));
	assert_false(exists(rot(3)));
	for (int i = 1; i <= 2; i++) {
		assert_int_equal(stat(rot(i), &st), 0);
		assert_true(st.st_size >= 1000 && st.st_size < 1000 + 400);
	}
	/* The new file and PATH.1 begin with "rotated"; seq goes on across files. */
	buf = slurp(rot(0), NULL);
	assert_non_null(strstr(buf, "\"kind\":\"rotated\",\"prev\":"));
	assert_ptr_equal(strstr(buf, "\"kind\""), strstr(buf, "\"kind\":\"rotated\""));
	free(buf);
	seq_range(rot(2), &f2, &l2);
	seq_range(rot(1), &f1, &l1);
	seq_range(rot(0), &f0, &l0);
	assert_int_equal(f1, l2 + 1);
	assert_int_equal(f0, l1 + 1);
	assert_int_equal(verify_series(2), l0 - f2 + 1);

	/* Each file alone verifies too (its first line follows a rotation). */
	assert_int_equal(verify(rot(1), NULL, NULL, NULL), 0);

	/* A missing middle file breaks the link between the others. */
	{
		char prev[65];

		assert_int_equal(verify(rot(2), NULL, NULL, prev), 0);
		assert_int_equal(verify(rot(0), prev, NULL, NULL), MOAT_EPROTOCOL);
		assert_non_null(strstr(err, ":1: \"prev\" does not continue"));
	}

	/* Reopening continues the chain and the rotation. */
	a = open_log(1000, 2);
	write_n(a, 40, T0 + 100);
	moat_audit_close(a);
	assert_false(exists(rot(3)));
	verify_series(2);
}

static void test_keep_shrinks(void **state)
{
	struct moat_audit *a = open_log(600, 4);
	char dotnew[160];

	(void)state;
	write_n(a, 60, T0);
	moat_audit_close(a);
	assert_true(exists(rot(3)));
	assert_true(exists(rot(4)));
	a = open_log(600, 2);
	write_n(a, 10, T0);
	moat_audit_close(a);
	assert_true(exists(rot(2)));
	assert_false(exists(rot(3)));
	assert_false(exists(rot(4)));
	snprintf(dotnew, sizeof(dotnew), "%s.new", path);
	assert_false(exists(dotnew));
	verify_series(2);
}

/* A crash after PATH was renamed to PATH.1 but before PATH got its first line. */
static void test_crash_after_rename(void **state)
{
	struct moat_audit *a = open_log(0, 0);
	char *buf;

	(void)state;
	write_n(a, 3, T0);
	moat_audit_close(a);
	assert_int_equal(rename(rot(0), rot(1)), 0);
	spit(rot(0), "", 0);
	a = open_log(0, 0);
	write_n(a, 2, T0 + 10);
	moat_audit_close(a);
	buf = slurp(rot(0), NULL);
	assert_non_null(strstr(buf, "\"seq\":4,\"kind\":\"rotated\""));
	assert_non_null(strstr(buf, "\"seq\":6,"));
	free(buf);
	assert_int_equal(verify_series(1), 6);
}

/* Rotation cannot make the next file: nothing is lost, the old file goes on. */
static void test_rotation_failure(void **state)
{
	struct moat_audit *a = open_log(500, 3);
	char dotnew[160];
	struct stat st;

	(void)state;
	snprintf(dotnew, sizeof(dotnew), "%s.new", path);
	assert_int_equal(mkdir(dotnew, 0700), 0); /* open(PATH.new) now fails */
	write_n(a, 10, T0);
	assert_false(exists(rot(1)));
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 2000);
	assert_verifies(path, 10);
	assert_int_equal(rmdir(dotnew), 0);
	write_n(a, 1, T0 + 10);
	moat_audit_close(a);
	assert_true(exists(rot(1)));
	assert_false(exists(dotnew));
	assert_int_equal(verify_series(1), 12);
}

/* A fresh log with no PATH.1 starts from zeros, at seq 1. */
static void test_fresh_empty_file(void **state)
{
	struct moat_audit *a;
	char *buf;

	(void)state;
	spit(path, "", 0);
	a = open_log(0, 0);
	write_n(a, 1, T0);
	moat_audit_close(a);
	buf = only_line();
	assert_non_null(strstr(buf, "\"seq\":1,"));
	assert_non_null(strstr(buf, "\"prev\":\"" ZEROS "\""));
	free(buf);
	moat_audit_close(NULL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_known_lines),
		T(test_member_order),
		T(test_ts_before_epoch),
		T(test_escapes),
		T(test_all_bytes),
		T(test_long_fields),
		T(test_chain),
		T(test_every_byte_edit),
		T(test_delete_and_swap),
		T(test_truncate_last),
		T(test_verify_errors),
		T(test_reopen),
		T(test_reopen_refuses_bad_tail),
		T(test_rotation),
		T(test_keep_shrinks),
		T(test_rotation_failure),
		T(test_crash_after_rename),
		T(test_fresh_empty_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
