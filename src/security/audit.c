/*
 * audit.c - the tamper-evident audit log (see audit.h).
 *
 * A line, members always in this order, absent ones left out:
 *
 *   {"ts":"2026-01-02T03:04:05.678Z","seq":7,"kind":"auth_failure",
 *    "addr":"..","client_id":"..","username":"..","method":"..","reason":"..",
 *    "topic":"..","access":"..","port":1883,"value":3,
 *    "prev":"<64 hex>","hash":"<64 hex>"}\n
 *
 * (one line, no spaces). "hash" is the lower-case hex SHA-256 of every byte
 * before ',"hash":' - the object up to and including "prev", without its
 * closing brace. A string member is left out when the event's field is NULL
 * ("addr" also when empty: event.h's "none"); an empty client id is kept,
 * it is a fact. "port" and "value" are left out when 0.
 *
 * Strings are escaped so that a line is always one line of valid RFC 8259
 * JSON whatever a peer put in them: '"' and '\' as \" and \\, \n \r \t as
 * such, the other C0 controls and DEL as \u00XX, the C1 controls (U+0080..
 * U+009F) and U+2028/U+2029 as \uXXXX (terminals and line splitters treat
 * them as controls), and every byte that is not part of well-formed UTF-8 as
 * \u00XX of the byte (a reader sees it as the Latin-1 character; in the raw
 * text an escaped \u00a0..\u00ff is always such a byte, since valid
 * characters are written as they are). A string longer than FIELD_MAX bytes
 * is cut at a character boundary and ends with "...". So a line is at most
 * AUDIT_LINE_MAX bytes.
 *
 * "seq" counts lines from 1 and, like the chain, continues across reopening
 * and rotation; a rotated file begins with a line of kind "rotated" whose
 * "prev" is the old file's last hash. The chain has no key: it shows that a
 * line was changed, removed or reordered, but someone able to rewrite the
 * file from some line on can recompute every hash after it. Keeping the
 * last hash elsewhere (a syslog, $SYS) is what pins the end.
 *
 * Rotation renames PATH.keep-1 .. PATH.1 one up (PATH.keep and any beyond
 * it, left by a larger keep, are deleted) and PATH to PATH.1; the next PATH
 * is created first as PATH.new, so a failure to create it changes nothing.
 *
 * Verification (also of the last line when reopening) accepts exactly the
 * shape written here: valid UTF-8, a flat object of string and integer
 * members without whitespace, "seq" a non-negative integer, "prev" and
 * "hash" 64 lower-case hex digits and the last two members. A file's first
 * line must begin the log (seq 1, "prev" zeros) or be a "rotated" line,
 * unless the previous file's last hash is given to link it to; so removing
 * a file's first lines shows. Lines removed from the end, or the oldest
 * rotated files, do not: that is what the last hash kept elsewhere is for.
 *
 * Invariants: a->prev is the hash of the last complete line of the chain
 * and a->seq its seq; a line reaches the file in one write() on an O_APPEND
 * descriptor, or (short write) is cut off again, so the file only ever ends
 * on a whole line and a failed write leaves the chain as it was. Nothing is
 * written to a file before its first line (the log's first, or "rotated").
 */
#include "security/audit.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/utf8.h"

#define FIELD_MAX 1024    /* input bytes kept of one string field */
#define ESC_MAX 6         /* output bytes per input byte at worst (\u00XX) */
#define NFIELDS 8
/* Every string member at its worst, plus ts, seq, kind, port, value, prev, hash. */
#define AUDIT_LINE_MAX (NFIELDS * (16 + FIELD_MAX * ESC_MAX + 8) + 512)
#define HEX_LEN 64
#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define HASH_KEY ",\"hash\":\""

_Static_assert(AUDIT_LINE_MAX < 65536, "an audit line stays small enough to read back whole");

struct moat_audit {
	int fd;
	char *path;
	char *name, *name2;    /* scratch for PATH.N */
	char *fresh;           /* PATH.new: the next file, made before rotating */
	size_t name_cap;
	uint64_t max_size;     /* 0: never rotate */
	int keep;
	uint64_t size;         /* bytes in the current file */
	uint64_t seq;          /* seq of the last line, 0 before the first */
	char prev[HEX_LEN + 1];/* hash of the last line, or ZERO_HASH */
	bool pending_rotated;  /* PATH was started after PATH.1: write "rotated" first */
	pthread_mutex_t head_lock; /* the two below: read by other threads */
	uint64_t synced_seq;   /* the last line known to be on disk (fsynced or found at open) */
	char synced_hash[HEX_LEN + 1];
	char line[AUDIT_LINE_MAX];
};

/* What parse_line learns of a line. */
struct audit_line {
	uint64_t seq;
	char prev[HEX_LEN + 1];
	char hash[HEX_LEN + 1];
	size_t hashed_len;     /* bytes covered by "hash": up to ',"hash":' */
	bool rotated;          /* "kind":"rotated" */
};

/* Writes the lower-case hex SHA-256 of p[0..n) to hex (65 bytes). Returns 0 or MOAT_ENOMEM. */
static int sha256_hex(const void *p, size_t n, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen * 2 != HEX_LEN)
		return MOAT_ENOMEM;
	for (i = 0; i < mdlen; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[HEX_LEN] = '\0';
	return 0;
}

/* ---- building a line ---- */

/* A bounded string builder; over is set (and nothing more written) past cap. */
struct sb {
	char *p;
	size_t len, cap;
	bool over;
};

static void put(struct sb *b, const char *s, size_t n)
{
	if (b->over || n > b->cap - b->len) {
		b->over = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void puts_(struct sb *b, const char *s)
{
	put(b, s, strlen(s));
}

static void putf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(struct sb *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		b->over = true;
	else
		put(b, tmp, (size_t)n);
}

static void put_u(struct sb *b, unsigned cp)
{
	putf(b, "\\u%04x", cp);
}

/* Appends the ASCII byte c, escaped as JSON (and this file's header) require. */
static void put_ascii(struct sb *b, unsigned char c)
{
	switch (c) {
	case '"':
		puts_(b, "\\\"");
		return;
	case '\\':
		puts_(b, "\\\\");
		return;
	case '\n':
		puts_(b, "\\n");
		return;
	case '\r':
		puts_(b, "\\r");
		return;
	case '\t':
		puts_(b, "\\t");
		return;
	default:
		if (c < 0x20 || c == 0x7f)
			put_u(b, c);
		else
			put(b, (const char *)&c, 1);
	}
}

/* Appends the well-formed character s[0..len), escaping C1 controls and U+2028/9. */
static void put_char(struct sb *b, const unsigned char *s, size_t len)
{
	if (len == 2 && s[0] == 0xc2 && s[1] < 0xa0)
		put_u(b, s[1]);
	else if (len == 3 && s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9))
		put_u(b, 0x2000u | (unsigned)(s[2] - 0x80));
	else
		put(b, (const char *)s, len);
}

/* Appends s as a JSON string (quotes included), cut to FIELD_MAX input bytes. */
static void put_str(struct sb *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str), i = 0, len;

	put(b, "\"", 1);
	while (i < n) {
		len = moat_utf8_char_len(s + i, n - i);
		if (i + (len ? len : 1) > FIELD_MAX) {
			puts_(b, "...");
			break;
		}
		if (len == 0)
			put_u(b, s[i++]);  /* not UTF-8: the byte itself */
		else if (len == 1)
			put_ascii(b, s[i++]);
		else {
			put_char(b, s + i, len);
			i += len;
		}
	}
	put(b, "\"", 1);
}

static void put_member(struct sb *b, const char *key, const char *value)
{
	if (!value)
		return;
	putf(b, ",\"%s\":", key);
	put_str(b, value);
}

/* RFC 3339 UTC with milliseconds: 2026-01-02T03:04:05.678Z. */
static void put_ts(struct sb *b, int64_t wall_ms)
{
	int64_t ms = wall_ms % 1000, s = wall_ms / 1000;
	time_t t;
	struct tm tm;

	if (ms < 0) {
		ms += 1000;
		s--;
	}
	t = (time_t)s;
	if (!gmtime_r(&t, &tm))
		memset(&tm, 0, sizeof(tm));
	putf(b, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900,
	     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
}

/* The event's members, in the fixed order. */
static void put_event(struct sb *b, const struct moat_sec_event *e)
{
	put_member(b, "addr", e->addr && e->addr[0] ? e->addr : NULL);
	put_member(b, "client_id", e->client_id);
	put_member(b, "username", e->username);
	put_member(b, "method", e->method);
	put_member(b, "reason", e->reason);
	put_member(b, "topic", e->topic);
	put_member(b, "access", e->access);
	if (e->port)
		putf(b, ",\"port\":%u", (unsigned)e->port);
	if (e->value)
		putf(b, ",\"value\":%" PRId64, e->value);
}

size_t moat_audit_event_json(const struct moat_sec_event *e, int64_t wall_ms, char *out,
			     size_t cap)
{
	struct sb b = {out, 0, cap, false};

	if (!cap)
		return 0;
	put_ts(&b, wall_ms);
	puts_(&b, ",\"kind\":");
	put_str(&b, moat_sec_kind_name(e->kind));
	put_event(&b, e);
	puts_(&b, "}");
	put(&b, "", 1); /* the NUL, counted against cap */
	if (b.over) {
		out[0] = '\0';
		return 0;
	}
	return b.len - 1;
}

/*
 * Builds into a->line the line of kind (e may be NULL: no other members)
 * with seq a->seq + 1 chained to a->prev; hash receives its hash. Returns
 * the line's length, or 0 if it could not be built (cannot happen within
 * AUDIT_LINE_MAX; checked all the same).
 */
static size_t build_line(struct moat_audit *a, const char *kind, const struct moat_sec_event *e,
			 int64_t wall_ms, char *hash)
{
	struct sb b = {a->line, 0, sizeof(a->line), false};

	put_ts(&b, wall_ms);
	putf(&b, ",\"seq\":%" PRIu64 ",\"kind\":", a->seq + 1);
	put_str(&b, kind);
	if (e)
		put_event(&b, e);
	puts_(&b, ",\"prev\":\"");
	puts_(&b, a->prev);
	puts_(&b, "\"");
	if (b.over || sha256_hex(b.p, b.len, hash) != 0)
		return 0;
	puts_(&b, HASH_KEY);
	puts_(&b, hash);
	puts_(&b, "\"}\n");
	return b.over ? 0 : b.len;
}

/* ---- parsing a line (reopen and verify) ---- */

struct cursor {
	const char *s;
	size_t n, i;
};

static bool is_hex64(const char *s, size_t n)
{
	size_t i;

	if (n != HEX_LEN)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool is_hexdigit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Skips one escape after '\'. Returns false if it is not a JSON escape. */
static bool skip_escape(struct cursor *c)
{
	int k;

	if (c->i >= c->n)
		return false;
	if (c->s[c->i] != '\0' && strchr("\"\\/bfnrt", c->s[c->i])) {
		c->i++;
		return true;
	}
	if (c->s[c->i] != 'u' || c->n - c->i < 5)
		return false;
	for (k = 1; k <= 4; k++)
		if (!is_hexdigit(c->s[c->i + k]))
			return false;
	c->i += 5;
	return true;
}

/* Reads a JSON string at the cursor; *raw, *rawlen: its text between the quotes. */
static const char *read_string(struct cursor *c, const char **raw, size_t *rawlen)
{
	size_t start;

	if (c->i >= c->n || c->s[c->i] != '"')
		return "a string expected";
	start = ++c->i;
	while (c->i < c->n && c->s[c->i] != '"') {
		unsigned char ch = (unsigned char)c->s[c->i++];

		if (ch < 0x20)
			return "a control character in a string";
		if (ch == '\\' && !skip_escape(c))
			return "a bad escape in a string";
	}
	if (c->i >= c->n)
		return "an unterminated string";
	*raw = c->s + start;
	*rawlen = c->i - start;
	c->i++;
	return NULL;
}

/* Reads a JSON integer (the only numbers a line holds). */
static const char *read_int(struct cursor *c, uint64_t *u, bool *negative)
{
	uint64_t v = 0;
	size_t start;

	*negative = c->i < c->n && c->s[c->i] == '-';
	if (*negative)
		c->i++;
	start = c->i;
	while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
		unsigned d = (unsigned)(c->s[c->i++] - '0');

		if (v > (UINT64_MAX - d) / 10)
			return "a number out of range";
		v = v * 10 + d;
	}
	if (c->i == start || (c->s[start] == '0' && c->i - start > 1))
		return "a bad number";
	*u = v;
	return NULL;
}

/* One member of a line's object. */
struct member {
	size_t start;          /* offset of the '{' or ',' before it */
	const char *key, *str; /* str is NULL for a number */
	size_t keylen, strn;
	uint64_t num;
	bool negative;
};

/* Reads the member after the '{' or ',' at the cursor. */
static const char *read_member(struct cursor *c, struct member *m)
{
	const char *why;

	m->start = c->i++;
	m->str = NULL;
	m->strn = 0;
	if ((why = read_string(c, &m->key, &m->keylen)))
		return why;
	if (c->i >= c->n || c->s[c->i++] != ':')
		return "':' expected";
	if (c->i < c->n && c->s[c->i] == '"')
		return read_string(c, &m->str, &m->strn);
	return read_int(c, &m->num, &m->negative);
}

static bool key_is(const struct member *m, const char *key)
{
	return m->keylen == strlen(key) && memcmp(m->key, key, m->keylen) == 0;
}

/* Takes what the chain needs from m: "seq" (bit 1), "prev" (2), "hash" (4) into seen. */
static const char *note_member(struct audit_line *l, const struct member *m, unsigned *seen)
{
	unsigned bit = key_is(m, "seq") ? 1 : key_is(m, "prev") ? 2 : key_is(m, "hash") ? 4 : 0;
	char *dst = bit == 2 ? l->prev : l->hash;

	if (key_is(m, "kind"))
		l->rotated = m->str && m->strn == 7 && memcmp(m->str, "rotated", 7) == 0;
	if (!bit)
		return NULL;
	if (*seen & bit)
		return "a repeated \"seq\", \"prev\" or \"hash\"";
	*seen |= bit;
	if (bit == 1) {
		l->seq = m->num;
		return m->str || m->negative ? "a bad \"seq\"" : NULL;
	}
	if (!m->str || !is_hex64(m->str, m->strn))
		return "\"prev\" or \"hash\" is not 64 hex digits";
	memcpy(dst, m->str, HEX_LEN);
	dst[HEX_LEN] = '\0';
	if (bit == 4)
		l->hashed_len = m->start;
	return NULL;
}

/*
 * Parses the line s[0..n) (without its '\n'): a flat JSON object of string
 * and integer members, no whitespace, with "seq" a non-negative integer and
 * "prev" and "hash" (64 hex digits) its last two members. Returns NULL and
 * fills *l, or a static reason.
 */
static const char *parse_line(const char *s, size_t n, struct audit_line *l)
{
	struct cursor c = {s, n, 0};
	unsigned seen = 0, members = 0, prev_at = 0;
	struct member m;
	const char *why;

	l->rotated = false;
	if (moat_utf8_check((const uint8_t *)s, n, MOAT_UTF8_ALLOW_DISCOURAGED) != MOAT_UTF8_OK)
		return "not UTF-8";
	if (n == 0 || s[0] != '{')
		return "not a JSON object";
	for (;;) {
		if (seen & 4)
			return "\"hash\" is not the last member";
		if ((why = read_member(&c, &m)) || (why = note_member(l, &m, &seen)))
			return why;
		if (key_is(&m, "prev"))
			prev_at = members;
		members++;
		if (c.i < c.n && s[c.i] == '}')
			break;
		if (c.i >= c.n || s[c.i] != ',')
			return "',' or '}' expected";
	}
	if (c.i + 1 != n)
		return "text after the object";
	if (seen != 7 || prev_at + 2 != members)
		return "\"seq\", \"prev\" or \"hash\" missing or out of place";
	return NULL;
}

/* Parses s[0..n) and checks its hash. Returns NULL, or why the line is bad. */
static const char *check_line(const char *s, size_t n, struct audit_line *l)
{
	char hash[HEX_LEN + 1];
	const char *why = parse_line(s, n, l);

	if (why)
		return why;
	if (sha256_hex(s, l->hashed_len, hash) != 0)
		return "out of memory hashing";
	if (strcmp(hash, l->hash) != 0)
		return "hash does not match";
	return NULL;
}

/* ---- opening: finding where the chain stands ---- */

/* a->name = PATH.i. */
static const char *rotated_name(struct moat_audit *a, int i)
{
	snprintf(a->name, a->name_cap, "%s.%d", a->path, i);
	return a->name;
}

/*
 * Reads the last line of the open file fd (size bytes) with one pread from
 * the end and checks it. Returns 0 and fills *l, or MOAT_EIO / MOAT_ECONFIG
 * with err naming file.
 */
static int read_last_line(int fd, uint64_t size, const char *file, struct audit_line *l,
			  char *err, size_t errlen)
{
	size_t want = size < AUDIT_LINE_MAX + 1 ? (size_t)size : AUDIT_LINE_MAX + 1;
	char *buf = malloc(want), *nl;
	const char *why = NULL;
	ssize_t got;
	int rc = MOAT_ECONFIG;

	if (!buf) {
		moat_set_err(err, errlen, "%s: out of memory", file);
		return MOAT_EIO;
	}
	got = pread(fd, buf, want, (off_t)(size - want));
	if (got != (ssize_t)want) {
		moat_set_err(err, errlen, "%s: %s", file, got < 0 ? strerror(errno) : "short read");
		rc = MOAT_EIO;
		goto fail;
	}
	if (buf[want - 1] != '\n') {
		why = "the last line is incomplete (no newline)";
		goto fail;
	}
	nl = memrchr(buf, '\n', want - 1);
	if (!nl && want < size) {
		why = "the last line is too long";
		goto fail;
	}
	nl = nl ? nl + 1 : buf;
	why = check_line(nl, (size_t)(buf + want - 1 - nl), l);
	if (why)
		goto fail;
	free(buf);
	return 0;
fail:
	if (why)
		moat_set_err(err, errlen,
			"%s: %s; refusing to continue an audit log whose last line does not verify",
			file, why);
	free(buf);
	return rc;
}

/*
 * Takes the chain's state (last hash and seq) from the last line of the
 * open file fd, if it has any lines; *size receives its size. Returns 0,
 * MOAT_EIO or MOAT_ECONFIG (the last line does not verify).
 */
static int chain_from(struct moat_audit *a, int fd, const char *file, uint64_t *size, char *err,
		      size_t errlen)
{
	struct audit_line l;
	struct stat st;
	int rc;

	if (fstat(fd, &st) != 0) {
		moat_set_err(err, errlen, "%s: %s", file, strerror(errno));
		return MOAT_EIO;
	}
	*size = (uint64_t)st.st_size;
	if (*size == 0)
		return 0;
	rc = read_last_line(fd, *size, file, &l, err, errlen);
	if (rc == 0) {
		memcpy(a->prev, l.hash, sizeof(a->prev));
		a->seq = l.seq;
	}
	return rc;
}

/*
 * Sets a->size, a->seq and a->prev from the file as it is. An empty PATH
 * after a PATH.1 with lines (a crash between rotating and the first write)
 * continues PATH.1's chain and will begin with a "rotated" line.
 */
static int resume(struct moat_audit *a, char *err, size_t errlen)
{
	const char *old;
	uint64_t old_size = 0;
	int rc = chain_from(a, a->fd, a->path, &a->size, err, errlen), fd;

	if (rc != 0 || a->size > 0)
		return rc;
	old = rotated_name(a, 1);
	fd = open(old, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		moat_set_err(err, errlen, "%s: %s", old, strerror(errno));
		return MOAT_EIO;
	}
	rc = chain_from(a, fd, old, &old_size, err, errlen);
	close(fd);
	a->pending_rotated = rc == 0 && old_size > 0;
	return rc;
}

int moat_audit_open(const char *path, uint64_t max_size, int keep, struct moat_audit **out,
		    char *err, size_t errlen)
{
	struct moat_audit *a = NULL;
	int rc = MOAT_ECONFIG;

	if (!path || !path[0] || (max_size && (keep < 1 || keep > 99))) {
		moat_set_err(err, errlen, "audit log: a path, and a keep of 1 to 99, are needed");
		goto fail;
	}
	rc = MOAT_EIO;
	a = calloc(1, sizeof(*a));
	if (a) {
		pthread_mutex_init(&a->head_lock, NULL);
		a->fd = -1;
		a->name_cap = strlen(path) + 5; /* ".99", ".new" */
		a->path = strdup(path);
		a->name = malloc(a->name_cap);
		a->name2 = malloc(a->name_cap);
		a->fresh = malloc(a->name_cap);
	}
	if (!a || !a->path || !a->name || !a->name2 || !a->fresh) {
		moat_set_err(err, errlen, "audit log: out of memory");
		goto fail;
	}
	snprintf(a->fresh, a->name_cap, "%s.new", path);
	a->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (a->fd < 0) {
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	a->max_size = max_size;
	a->keep = keep;
	memcpy(a->prev, ZERO_HASH, sizeof(a->prev));
	rc = resume(a, err, errlen);
	if (rc != 0)
		goto fail;
	a->synced_seq = a->seq;
	memcpy(a->synced_hash, a->prev, sizeof(a->synced_hash));
	*out = a;
	return 0;
fail:
	moat_audit_close(a);
	return rc;
}

/* ---- writing ---- */

/*
 * Appends a->line[0..len) with hash in one write(). A short or failed write
 * is cut off again so the file still ends on a whole line. Returns 0 (the
 * chain advanced) or MOAT_EIO (the chain as it was).
 */
static int append(struct moat_audit *a, size_t len, const char *hash)
{
	ssize_t w;

	do
		w = write(a->fd, a->line, len);
	while (w < 0 && errno == EINTR);
	if (w != (ssize_t)len) {
		if (w > 0 && ftruncate(a->fd, (off_t)a->size) != 0) {
			/* the file now ends mid-line: reopening will refuse it */
		}
		return MOAT_EIO;
	}
	a->size += len;
	a->seq++;
	memcpy(a->prev, hash, sizeof(a->prev));
	return 0;
}

static int write_line(struct moat_audit *a, const char *kind, const struct moat_sec_event *e,
		      int64_t wall_ms)
{
	char hash[HEX_LEN + 1];
	size_t len = build_line(a, kind, e, wall_ms, hash);

	return len ? append(a, len, hash) : MOAT_EIO;
}

/* Renames PATH.i to PATH.i+1 for i = keep-1 .. 1, after deleting PATH.keep and beyond. */
static int shift_rotated(struct moat_audit *a)
{
	int i;

	for (i = a->keep; i <= 99; i++)
		if (unlink(rotated_name(a, i)) != 0 && i > a->keep)
			break; /* files past keep (keep was larger before) go too */
	for (i = a->keep - 1; i >= 1; i--) {
		snprintf(a->name2, a->name_cap, "%s.%d", a->path, i + 1);
		if (rename(rotated_name(a, i), a->name2) != 0 && errno != ENOENT)
			return MOAT_EIO;
	}
	return 0;
}

/*
 * Rotates: PATH becomes PATH.1 (older ones shift), and a new PATH is owed
 * a "rotated" line chained to the old file's last hash. The new file is made
 * (as PATH.new) before anything is renamed or deleted, so the likely
 * failures (no space, no permission) change nothing; if a step fails the
 * old descriptor stays and events go on into the old file: none is lost.
 */
static int rotate(struct moat_audit *a)
{
	const char *fresh = a->fresh;
	int fd;

	fd = open(fresh, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return MOAT_EIO;
	if (fsync(a->fd) != 0 || shift_rotated(a) != 0 ||
	    rename(a->path, rotated_name(a, 1)) != 0 ||
	    rename(fresh, a->path) != 0) {
		unlink(fresh);
		close(fd);
		return MOAT_EIO;
	}
	close(a->fd);
	a->fd = fd;
	a->size = 0;
	a->pending_rotated = true;
	return 0;
}

/*
 * Writes the line of kind "rotated" a new file begins with, if it is still
 * owed: until it is written no event goes into the new file, so every file
 * begins with the log's first line or a "rotated" one.
 */
static int write_pending(struct moat_audit *a, int64_t wall_ms)
{
	int rc;

	if (!a->pending_rotated)
		return 0;
	rc = write_line(a, "rotated", NULL, wall_ms);
	if (rc == 0)
		a->pending_rotated = false;
	return rc;
}

int moat_audit_write(struct moat_audit *a, const struct moat_sec_event *e, int64_t wall_ms)
{
	int rc;

	if (!a->pending_rotated && a->max_size && a->size >= a->max_size &&
	    rotate(a) != 0) {
		/* carry on in the old file (see rotate); the next write tries again */
	}
	rc = write_pending(a, wall_ms);
	if (rc != 0)
		return rc;
	return write_line(a, moat_sec_kind_name(e->kind), e, wall_ms);
}

int moat_audit_sync(struct moat_audit *a)
{
	if (fsync(a->fd) != 0)
		return MOAT_EIO;
	pthread_mutex_lock(&a->head_lock);
	a->synced_seq = a->seq;
	memcpy(a->synced_hash, a->prev, sizeof(a->synced_hash));
	pthread_mutex_unlock(&a->head_lock);
	return 0;
}

void moat_audit_head(struct moat_audit *a, uint64_t *seq, char hash[65])
{
	pthread_mutex_lock(&a->head_lock);
	*seq = a->synced_seq;
	memcpy(hash, a->synced_hash, HEX_LEN + 1);
	pthread_mutex_unlock(&a->head_lock);
}

void moat_audit_close(struct moat_audit *a)
{
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	pthread_mutex_destroy(&a->head_lock);
	free(a->name);
	free(a->name2);
	free(a->fresh);
	free(a->path);
	free(a);
}

/* ---- verifying ---- */

/*
 * Checks line number no, s[0..n) (its '\n' removed), against the line
 * before it (prev: its hash, prev_seq: its seq), or for line 1 against the
 * previous file's last hash (prev), or, with prev NULL, checks that line 1
 * is where a chain may begin: the log's first line (seq 1, "prev" zeros) or
 * a "rotated" line. Every file the writer makes begins so, which is what
 * makes removing a file's first lines show.
 */
static const char *verify_line(const char *s, size_t n, uint64_t no, const char *prev,
			       uint64_t prev_seq, struct audit_line *l, char *why_buf,
			       size_t why_cap)
{
	const char *why = check_line(s, n, l);

	if (why)
		return why;
	if (!prev && !l->rotated && (l->seq != 1 || strcmp(l->prev, ZERO_HASH) != 0))
		return "the first line neither begins a log (seq 1, \"prev\" zeros) nor follows a "
		       "rotation: lines before it are missing";
	if (prev && strcmp(l->prev, prev) != 0) {
		if (no == 1)
			return "\"prev\" does not continue the previous file's last hash";
		snprintf(why_buf, why_cap, "\"prev\" is not the hash of line %" PRIu64, no - 1);
		return why_buf;
	}
	if (no > 1 && l->seq != prev_seq + 1) {
		snprintf(why_buf, why_cap, "\"seq\" %" PRIu64 " does not follow %" PRIu64, l->seq,
			 prev_seq);
		return why_buf;
	}
	return NULL;
}

int moat_audit_verify(const char *path, const char *prev_hash, uint64_t *lines, char *last_hash,
		      char *err, size_t errlen)
{
	char prev[HEX_LEN + 1], why_buf[96];
	const char *why = NULL;
	struct audit_line l = {0};
	uint64_t no = 0, prev_seq = 0;
	bool have_prev = prev_hash != NULL;
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = MOAT_EIO;
	FILE *f = fopen(path, "re");

	if (prev_hash && !is_hex64(prev_hash, strlen(prev_hash))) {
		moat_set_err(err, errlen, "%s: the previous hash given is not 64 hex digits", path);
		rc = MOAT_EINVAL;
		goto fail;
	}
	if (!f) {
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	snprintf(prev, sizeof(prev), "%s", prev_hash ? prev_hash : ZERO_HASH);
	while ((n = getline(&buf, &cap, f)) > 0) {
		no++;
		if (buf[n - 1] != '\n')
			why = "the line is incomplete (no newline)";
		else if (n - 1 > AUDIT_LINE_MAX)
			why = "the line is too long";
		else
			why = verify_line(buf, (size_t)n - 1, no, have_prev ? prev : NULL, prev_seq,
					  &l, why_buf, sizeof(why_buf));
		if (why) {
			moat_set_err(err, errlen, "%s:%" PRIu64 ": %s", path, no, why);
			rc = MOAT_EPROTOCOL;
			goto fail;
		}
		memcpy(prev, l.hash, sizeof(prev));
		prev_seq = l.seq;
		have_prev = true;
	}
	if (ferror(f)) {
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (lines)
		*lines = no;
	if (last_hash)
		memcpy(last_hash, prev, sizeof(prev));
	rc = 0;
fail:
	free(buf);
	if (f)
		fclose(f);
	return rc;
}
