/*
 * json.h - a small JSON writer over a growable buffer, for the admin API's
 * responses.
 *
 * Calls append values in document order; commas and the key/value
 * alternation are kept by a nesting stack, so a handler writes
 *
 *   moat_json_begin_object(j);
 *   moat_json_key(j, "clients"); moat_json_uint(j, n);
 *   moat_json_end_object(j);
 *
 * and gets {"clients":3}. The output is compact (no spaces or newlines).
 *
 * Errors are sticky: the first failure (out of memory, the size cap
 * reached, or a misuse such as a value in an object without its key, a key
 * in an array, an end that does not match its begin, nesting deeper than
 * MOAT_JSON_MAX_DEPTH) sets j->err and turns every later call into a no-op.
 * moat_json_finish() reports it; the caller never looks at each call.
 *
 * Strings are always written as valid RFC 8259 JSON, whatever their bytes:
 * '"' and '\' escaped, \b \f \n \r \t as such, the other C0 controls and DEL
 * as \u00XX, the C1 controls (U+0080..U+009F) and U+2028/U+2029 as \uXXXX,
 * and every byte that is not part of well-formed UTF-8 as \u00XX of the
 * byte (the audit log's convention, src/security/audit.c: in the raw text
 * an escaped \u00a0..\u00ff is always such a byte, since valid characters
 * are written as they are).
 */
#ifndef MOAT_ADMIN_JSON_H
#define MOAT_ADMIN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	MOAT_JSON_MAX_DEPTH = 32,
	MOAT_JSON_DEFAULT_MAX = 64 << 20, /* 64 MiB */
};

struct moat_json {
	char *buf;     /* owned; NUL-terminated when not NULL */
	size_t len, cap, max;
	int err;       /* 0, or the first failure: MOAT_ENOMEM, MOAT_ETOOBIG, MOAT_EINVAL */
	unsigned depth;
	/* per level: bit 0 array (else object), bit 1 has a member, bit 2 key pending */
	uint8_t level[MOAT_JSON_MAX_DEPTH];
	bool has_root; /* a complete top-level value was written */
};

/* Starts an empty document capped at max bytes (0 = MOAT_JSON_DEFAULT_MAX). */
void moat_json_init(struct moat_json *j, size_t max);

/* Frees the buffer; j may be reused after moat_json_init. NULL is a no-op. */
void moat_json_free(struct moat_json *j);

/* Empties the document and clears the error; keeps the buffer and the cap. */
void moat_json_reset(struct moat_json *j);

void moat_json_begin_object(struct moat_json *j);
void moat_json_end_object(struct moat_json *j);
void moat_json_begin_array(struct moat_json *j);
void moat_json_end_array(struct moat_json *j);

/* The key of the next member; only inside an object, before its value. */
void moat_json_key(struct moat_json *j, const char *key);

/* Values. A NULL string is written as null; a non-finite double as null. */
void moat_json_string(struct moat_json *j, const char *s);
void moat_json_string_n(struct moat_json *j, const char *s, size_t n);
void moat_json_int(struct moat_json *j, int64_t v);
void moat_json_uint(struct moat_json *j, uint64_t v);
void moat_json_bool(struct moat_json *j, bool v);
void moat_json_null(struct moat_json *j);
void moat_json_double(struct moat_json *j, double v);

/* Members: moat_json_key then the value. */
void moat_json_kstring(struct moat_json *j, const char *key, const char *s);
void moat_json_kint(struct moat_json *j, const char *key, int64_t v);
void moat_json_kuint(struct moat_json *j, const char *key, uint64_t v);
void moat_json_kbool(struct moat_json *j, const char *key, bool v);

/*
 * Appends s[0..n) as it is, outside the JSON bookkeeping: for a text body
 * (the admin server's MOAT_ADMIN_TEXT responses, e.g. /metrics). Do not mix
 * with the calls above in one document.
 */
void moat_json_raw(struct moat_json *j, const char *s, size_t n);

/*
 * Appends s[0..n), the text of one complete JSON value made elsewhere (an
 * audit event's object), as the next value: an array's element, a member's
 * value after moat_json_key, or the document. Commas are kept as for any
 * value; s itself is not checked: the caller vouches that it is valid JSON.
 * An empty s is a misuse (MOAT_EINVAL).
 */
void moat_json_raw_value(struct moat_json *j, const char *s, size_t n);

/*
 * Returns 0 if the document is complete (one top-level value, every begin
 * ended, or raw text only), else j->err, or MOAT_EINVAL if it is unfinished
 * or empty.
 */
int moat_json_finish(const struct moat_json *j);

/* The bytes so far (borrowed, valid until the next call on j); "" when empty. */
const char *moat_json_data(const struct moat_json *j, size_t *len);

#endif
