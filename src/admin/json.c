/*
 * json.c - the admin API's JSON writer (see json.h).
 *
 * Every public call goes through value_begin (before a value: checks the
 * key/value alternation, writes the comma) or the end_* calls; the buffer
 * grows by doubling up to j->max. Once j->err is set nothing is appended,
 * so a failed document is never half-escaped garbage followed by more.
 */
#include <math.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/json.h"
#include "core/error.h"
#include "core/utf8.h"

enum {
	L_ARRAY = 1,  /* the level is an array (else an object) */
	L_MEMBER = 2, /* it has at least one member (the next needs a comma) */
	L_KEY = 4,    /* object: a key was written, its value is due */
};

void moat_json_init(struct moat_json *j, size_t max)
{
	memset(j, 0, sizeof(*j));
	j->max = max ? max : (size_t)MOAT_JSON_DEFAULT_MAX;
}

void moat_json_free(struct moat_json *j)
{
	if (!j)
		return;
	free(j->buf);
	j->buf = NULL;
	j->len = j->cap = 0;
}

void moat_json_reset(struct moat_json *j)
{
	j->len = 0;
	if (j->buf)
		j->buf[0] = '\0';
	j->err = 0;
	j->depth = 0;
	j->has_root = false;
}

static void fail(struct moat_json *j, int err)
{
	if (!j->err)
		j->err = err;
}

/* Makes room for n more bytes and the NUL. */
static bool reserve(struct moat_json *j, size_t n)
{
	size_t want, cap;
	char *p;

	if (j->err)
		return false;
	if (n > j->max || j->len > j->max - n) {
		fail(j, MOAT_ETOOBIG);
		return false;
	}
	want = j->len + n + 1;
	if (want <= j->cap)
		return true;
	cap = j->cap ? j->cap : 256;
	while (cap < want)
		cap *= 2;
	p = realloc(j->buf, cap);
	if (!p) {
		fail(j, MOAT_ENOMEM);
		return false;
	}
	j->buf = p;
	j->cap = cap;
	return true;
}

static void put(struct moat_json *j, const char *s, size_t n)
{
	if (!reserve(j, n))
		return;
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = '\0';
}

static void puts_(struct moat_json *j, const char *s)
{
	put(j, s, strlen(s));
}

static void put_u(struct moat_json *j, unsigned cp)
{
	char tmp[8];

	snprintf(tmp, sizeof(tmp), "\\u%04x", cp & 0xFFFFu);
	put(j, tmp, 6);
}

/*
 * Before a value (or a key, when key is true): checks the alternation and
 * writes the separator. Returns false (error set) on misuse.
 */
static bool value_begin(struct moat_json *j, bool key)
{
	uint8_t *l;

	if (j->err)
		return false;
	if (j->depth == 0) {
		if (key || j->has_root) {
			fail(j, MOAT_EINVAL);
			return false;
		}
		return true;
	}
	l = &j->level[j->depth - 1];
	if (*l & L_ARRAY) {
		if (key) {
			fail(j, MOAT_EINVAL);
			return false;
		}
	} else if (key == !!(*l & L_KEY)) {
		fail(j, MOAT_EINVAL); /* two keys in a row, or a value with no key */
		return false;
	}
	if (key || (*l & L_ARRAY)) {
		if (*l & L_MEMBER)
			put(j, ",", 1);
		*l |= L_MEMBER;
	}
	if (!(*l & L_ARRAY))
		*l ^= L_KEY; /* a key sets it, its value clears it */
	return !j->err;
}

/* After a complete value at the current depth. */
static void value_end(struct moat_json *j)
{
	if (j->depth == 0 && !j->err)
		j->has_root = true;
}

static void begin(struct moat_json *j, bool array)
{
	if (!value_begin(j, false))
		return;
	if (j->depth == MOAT_JSON_MAX_DEPTH) {
		fail(j, MOAT_EINVAL);
		return;
	}
	put(j, array ? "[" : "{", 1);
	j->level[j->depth++] = array ? L_ARRAY : 0;
}

static void end(struct moat_json *j, bool array)
{
	uint8_t l;

	if (j->err)
		return;
	if (j->depth == 0) {
		fail(j, MOAT_EINVAL);
		return;
	}
	l = j->level[j->depth - 1];
	if (!!(l & L_ARRAY) != array || (l & L_KEY)) {
		fail(j, MOAT_EINVAL); /* mismatched end, or a key without its value */
		return;
	}
	put(j, array ? "]" : "}", 1);
	j->depth--;
	value_end(j);
}

void moat_json_begin_object(struct moat_json *j)
{
	begin(j, false);
}

void moat_json_end_object(struct moat_json *j)
{
	end(j, false);
}

void moat_json_begin_array(struct moat_json *j)
{
	begin(j, true);
}

void moat_json_end_array(struct moat_json *j)
{
	end(j, true);
}

/* ---- strings ---- */

static void put_ascii(struct moat_json *j, unsigned char c)
{
	static const char esc[] = "\"\"\\\\\bb\ff\nn\rr\tt";
	const char *e;

	for (e = esc; *e; e += 2)
		if ((unsigned char)e[0] == c) {
			char two[2] = {'\\', e[1]};
			put(j, two, 2);
			return;
		}
	if (c < 0x20 || c == 0x7f)
		put_u(j, c);
	else
		put(j, (const char *)&c, 1);
}

static void put_string(struct moat_json *j, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, len, run;

	put(j, "\"", 1);
	while (i < n && !j->err) {
		/* A run of plain printable ASCII goes in one copy. */
		for (run = 0; i + run < n && s[i + run] >= 0x20 && s[i + run] < 0x7f &&
			      s[i + run] != '"' && s[i + run] != '\\';
		     run++)
			;
		if (run) {
			put(j, str + i, run);
			i += run;
			continue;
		}
		len = moat_utf8_char_len(s + i, n - i);
		if (len == 0) {
			put_u(j, s[i++]); /* not UTF-8: the byte itself */
		} else if (len == 1) {
			put_ascii(j, s[i++]);
		} else {
			if (len == 2 && s[i] == 0xc2 && s[i + 1] < 0xa0)
				put_u(j, s[i + 1]); /* C1 control */
			else if (len == 3 && s[i] == 0xe2 && s[i + 1] == 0x80 &&
				 (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
				put_u(j, 0x2000u | (unsigned)(s[i + 2] - 0x80));
			else
				put(j, str + i, len);
			i += len;
		}
	}
	put(j, "\"", 1);
}

void moat_json_key(struct moat_json *j, const char *key)
{
	if (!key) {
		fail(j, MOAT_EINVAL);
		return;
	}
	if (!value_begin(j, true))
		return;
	put_string(j, key, strlen(key));
	put(j, ":", 1);
}

void moat_json_string_n(struct moat_json *j, const char *s, size_t n)
{
	if (!value_begin(j, false))
		return;
	put_string(j, s, n);
	value_end(j);
}

void moat_json_string(struct moat_json *j, const char *s)
{
	if (!s)
		moat_json_null(j);
	else
		moat_json_string_n(j, s, strlen(s));
}

/* ---- scalars ---- */

static void scalar(struct moat_json *j, const char *text)
{
	if (!value_begin(j, false))
		return;
	puts_(j, text);
	value_end(j);
}

void moat_json_int(struct moat_json *j, int64_t v)
{
	char tmp[24];

	snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	scalar(j, tmp);
}

void moat_json_uint(struct moat_json *j, uint64_t v)
{
	char tmp[24];

	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	scalar(j, tmp);
}

void moat_json_bool(struct moat_json *j, bool v)
{
	scalar(j, v ? "true" : "false");
}

void moat_json_null(struct moat_json *j)
{
	scalar(j, "null");
}

void moat_json_double(struct moat_json *j, double v)
{
	char tmp[40];

	if (!isfinite(v)) {
		scalar(j, "null");
		return;
	}
	snprintf(tmp, sizeof(tmp), "%.17g", v);
	scalar(j, tmp);
}

void moat_json_kstring(struct moat_json *j, const char *key, const char *s)
{
	moat_json_key(j, key);
	moat_json_string(j, s);
}

void moat_json_kint(struct moat_json *j, const char *key, int64_t v)
{
	moat_json_key(j, key);
	moat_json_int(j, v);
}

void moat_json_kuint(struct moat_json *j, const char *key, uint64_t v)
{
	moat_json_key(j, key);
	moat_json_uint(j, v);
}

void moat_json_kbool(struct moat_json *j, const char *key, bool v)
{
	moat_json_key(j, key);
	moat_json_bool(j, v);
}

void moat_json_raw(struct moat_json *j, const char *s, size_t n)
{
	if (j->depth) {
		fail(j, MOAT_EINVAL);
		return;
	}
	put(j, s, n);
}

void moat_json_raw_value(struct moat_json *j, const char *s, size_t n)
{
	if (n == 0) {
		fail(j, MOAT_EINVAL);
		return;
	}
	if (!value_begin(j, false))
		return;
	put(j, s, n);
	value_end(j);
}

int moat_json_finish(const struct moat_json *j)
{
	if (j->err)
		return j->err;
	if (j->depth || j->len == 0)
		return MOAT_EINVAL;
	return 0;
}

const char *moat_json_data(const struct moat_json *j, size_t *len)
{
	if (len)
		*len = j->len;
	return j->buf ? j->buf : "";
}
