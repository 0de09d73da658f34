/*
 * acl.c - access control lists (see acl.h): parsing, binding, checking.
 *
 * Three stages, each cheap where it runs most often:
 *
 *   parse (once per load)   the file becomes the general rules (before the
 *                           first block: clients without a user name), the
 *                           patterns, and user / clientid / identity blocks
 *                           held in three hash maps keyed by name.
 *   bind (once per client)  the rules that apply to one client are copied
 *                           into one allocation: denies first, then allows,
 *                           patterns substituted. Map lookups, never a scan
 *                           of other clients' blocks.
 *   check (every request)   a 64-slot decision cache (32 sets of 2 ways,
 *                           least recently used evicted) keyed by a hash of
 *                           (access, topic), verified by comparing both; on
 *                           a miss, a scan of the client's own rules.
 *
 * Semantics (Mosquitto's acl_file, plus moat's additions):
 *   - A line is a keyword and its arguments. Fields are separated by spaces
 *     or tabs, leading blanks and trailing white space are ignored, '#' as
 *     the first non-blank character starts a comment. The topic of a topic or
 *     pattern line, and the name of a block, is the rest of the line, so it
 *     may hold spaces. "topic X" alone is readwrite on X, even if X is an
 *     access word; with more words the first must be an access word.
 *   - Deny wins; otherwise any rule granting the access wins; else deny.
 *     READ and SUBSCRIBE need read or readwrite, WRITE needs write or
 *     readwrite.
 *   - SUBSCRIBE: a rule applies when its filter covers the requested one
 *     (every topic the request can match, the rule matches), so "a/#" covers
 *     "a/+/b" and "a/+" does not cover "a/#". A "$share/GROUP/" prefix is
 *     stripped first: rules are about topics. no_wildcard_subscriptions is
 *     enforced here too.
 *   - Patterns: %c and %u are replaced wherever they appear (as Mosquitto
 *     does). A pattern naming a value the client lacks does not apply. A
 *     value holding '+', '#' or '/' (CVE-2017-7650), or a substitution that
 *     would make the filter start with '$' when the pattern did not, makes an
 *     allowing pattern match nothing. A denying pattern is never weakened:
 *     it is substituted as written, and if that does not leave a valid filter
 *     the client is denied everything.
 *
 * Invariants: every stored filter passed moat_mqtt_topic_filter_check; a
 * bound view is immutable except for its cache, so a cached decision is
 * never stale (a reload makes new views with empty caches); a malformed file
 * yields no struct moat_acl at all.
 */
#include "security/acl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/map.h"
#include "core/utf8.h"
#include "mqtt/topic.h"

#define LINE_MAX_BYTES 65536u          /* longer lines refuse the file */
#define TOPIC_MAX_BYTES 65535u         /* an MQTT string's limit */
#define FILE_MAX_BYTES (64u << 20)     /* moat_acl_load refuses larger files */
#define SUBST_MAX_BYTES (4u * 65536u)  /* a substituted filter longer than this is unreachable */
#define SUBST_BUDGET (4u << 20)        /* bytes substitution may add to one view */
#define CACHE_SLOTS 64u                /* 2 ways x a power of two sets */
#define CACHE_TOPIC_MAX 512u           /* longer topics skip the cache (< 16 * 255) */

enum { R_READ = MOAT_ACL_READ, R_WRITE = MOAT_ACL_WRITE, R_DENY = 8 };
enum { K_USER, K_CLIENTID, K_IDENTITY, K_COUNT };

struct span {
	const char *p;
	size_t n;
};

struct rule {
	char *filter;   /* owned; a valid topic filter (a pattern before substitution) */
	uint32_t len;
	uint8_t access; /* R_READ | R_WRITE, or R_DENY */
	uint16_t nc;    /* patterns: occurrences of %c and %u */
	uint16_t nu;
};

struct rules {
	struct rule *v;
	size_t n, cap;
	size_t bytes; /* the filters' total length */
};

struct block {
	char *name;     /* owned; the key of its map entry */
	size_t len;
	struct rules rules;
	struct moat_acl_opts opts;
};

struct moat_acl {
	struct rules general;  /* before the first block: clients without a user name */
	struct rules patterns; /* every client */
	struct moat_map blocks[K_COUNT];
	size_t count;
};

/* ---- rules and blocks ---- */

static const struct moat_acl_opts opts_default = {false, 2, true};

static void rules_free(struct rules *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		free(r->v[i].filter);
	free(r->v);
}

/* Appends a copy of f. Returns 0 or MOAT_ENOMEM. */
static int rules_add(struct rules *r, struct span f, uint8_t access, uint16_t nc, uint16_t nu)
{
	char *copy;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 4;
		struct rule *v = realloc(r->v, cap * sizeof(*v));
		if (!v)
			return MOAT_ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	copy = malloc(f.n + 1);
	if (!copy)
		return MOAT_ENOMEM;
	memcpy(copy, f.p, f.n);
	copy[f.n] = '\0';
	r->v[r->n++] = (struct rule){copy, (uint32_t)f.n, access, nc, nu};
	r->bytes += f.n;
	return 0;
}

static void block_free(struct block *b)
{
	rules_free(&b->rules);
	free(b->name);
	free(b);
}

void moat_acl_free(struct moat_acl *a)
{
	size_t k, pos;
	struct block *b;

	if (!a)
		return;
	for (k = 0; k < K_COUNT; k++) {
		pos = 0;
		while ((b = moat_map_next(&a->blocks[k], &pos, NULL, NULL)) != NULL)
			block_free(b);
		moat_map_free(&a->blocks[k]);
	}
	rules_free(&a->general);
	rules_free(&a->patterns);
	free(a);
}

size_t moat_acl_count(const struct moat_acl *a)
{
	return a ? a->count : 0;
}

/* ---- the parser ---- */

struct parser {
	struct moat_acl *a;
	struct block *cur; /* NULL: the general section */
	const char *name;
	size_t line;
	char *err;
	size_t errlen;
};

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

static bool is_space(char ch)
{
	return is_blank(ch) || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

static struct span trim(struct span s)
{
	while (s.n && is_blank(s.p[0])) {
		s.p++;
		s.n--;
	}
	while (s.n && is_space(s.p[s.n - 1]))
		s.n--;
	return s;
}

/* Splits s at its first blank run: the word before, the rest (trimmed) in *rest. */
static struct span split(struct span s, struct span *rest)
{
	size_t i = 0;

	while (i < s.n && !is_blank(s.p[i]))
		i++;
	*rest = trim((struct span){s.p + i, s.n - i});
	return (struct span){s.p, i};
}

static bool span_is(struct span s, const char *word)
{
	size_t n = strlen(word);
	return s.n == n && memcmp(s.p, word, n) == 0;
}

/* Writes "NAME:LINE: why" (why a printf format) and returns code. */
__attribute__((format(printf, 3, 4))) static int fail_at(struct parser *p, int code,
							 const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "%s:%zu: %s", p->name, p->line, why);
	return code;
}

/* A printable excerpt of s for a message: at most 32 bytes, others as '?'. */
static const char *excerpt(struct span s, char buf[40])
{
	size_t i, n = s.n < 32 ? s.n : 32;

	for (i = 0; i < n; i++)
		buf[i] = (unsigned char)s.p[i] >= 0x20 && s.p[i] < 0x7f && s.p[i] != '"' ? s.p[i] : '?';
	memcpy(buf + n, s.n > 32 ? "..." : "", s.n > 32 ? 4 : 1);
	return buf;
}

/* A name or topic: 1 to 65535 bytes of UTF-8 without control characters or non-characters. */
static int check_text(struct parser *p, struct span s, const char *what)
{
	if (s.n == 0)
		return fail_at(p, MOAT_ECONFIG, "missing %s", what);
	if (s.n > TOPIC_MAX_BYTES)
		return fail_at(p, MOAT_ECONFIG, "%s longer than %u bytes", what, TOPIC_MAX_BYTES);
	if (moat_utf8_check((const uint8_t *)s.p, s.n, 0) != MOAT_UTF8_OK)
		return fail_at(p, MOAT_ECONFIG,
			       "%s is not UTF-8 free of control characters and non-characters",
			       what);
	return 0;
}

static const struct access_word {
	const char *name;
	uint8_t access;
} access_words[] = {
	{"read", R_READ},
	{"write", R_WRITE},
	{"readwrite", R_READ | R_WRITE},
	{"deny", R_DENY},
};

/* Occurrences of "%" ch in s, left to right without overlap (as substitution reads it). */
static size_t count_subst(struct span s, char ch)
{
	size_t i, k = 0;

	for (i = 0; i + 1 < s.n; i++) {
		if (s.p[i] != '%' || (s.p[i + 1] != 'c' && s.p[i + 1] != 'u'))
			continue;
		k += s.p[i + 1] == ch;
		i++;
	}
	return k;
}

/* "topic|pattern [ACCESS] TOPIC": Mosquitto's reading of the words. */
static int parse_rule(struct parser *p, struct span args, bool pattern)
{
	const char *what = pattern ? "pattern topic" : "topic";
	struct span topic, word = split(args, &topic);
	uint8_t access = R_READ | R_WRITE;
	struct rules *into;
	char buf[40];
	size_t i;
	int rc;

	if (topic.n == 0) {
		topic = word;
	} else {
		for (i = 0; i < sizeof(access_words) / sizeof(access_words[0]); i++)
			if (span_is(word, access_words[i].name))
				break;
		if (i == sizeof(access_words) / sizeof(access_words[0]))
			return fail_at(p, MOAT_ECONFIG,
				       "unknown access \"%s\" (read, write, readwrite or deny)",
				       excerpt(word, buf));
		access = access_words[i].access;
	}
	if ((rc = check_text(p, topic, what)) < 0)
		return rc;
	if (moat_mqtt_topic_filter_check((const uint8_t *)topic.p, topic.n) < 0)
		return fail_at(p, MOAT_ECONFIG, "invalid topic filter \"%s\"", excerpt(topic, buf));
	into = pattern ? &p->a->patterns : p->cur ? &p->cur->rules : &p->a->general;
	rc = pattern ? rules_add(into, topic, access, (uint16_t)count_subst(topic, 'c'),
				 (uint16_t)count_subst(topic, 'u'))
		     : rules_add(into, topic, access, 0, 0);
	if (rc < 0)
		return fail_at(p, rc, "out of memory");
	p->a->count++;
	return 0;
}

static int kw_topic(struct parser *p, struct span args, int arg)
{
	(void)arg;
	return parse_rule(p, args, false);
}

static int kw_pattern(struct parser *p, struct span args, int arg)
{
	(void)arg;
	return parse_rule(p, args, true);
}

/* "user|clientid|identity NAME": the following topic lines are that block's. */
static int kw_block(struct parser *p, struct span name, int kind)
{
	static const char *const what[K_COUNT] = {"user name", "client id", "identity"};
	struct moat_map *m = &p->a->blocks[kind];
	struct block *b;
	int rc;

	if ((rc = check_text(p, name, what[kind])) < 0)
		return rc;
	b = moat_map_get(m, name.p, name.n);
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b || !(b->name = malloc(name.n))) {
			free(b);
			return fail_at(p, MOAT_ENOMEM, "out of memory");
		}
		memcpy(b->name, name.p, name.n);
		b->len = name.n;
		b->opts = opts_default;
		if (moat_map_put(m, b->name, b->len, b) < 0) {
			block_free(b);
			return fail_at(p, MOAT_ENOMEM, "out of memory");
		}
	}
	p->cur = b;
	return 0;
}

/* Option setters: merge value v (may be empty) into o, the most restrictive winning. */
static int opt_no_wildcard(struct moat_acl_opts *o, struct span v)
{
	if (v.n == 0 || span_is(v, "true"))
		o->no_wildcard_subscriptions = true;
	else if (!span_is(v, "false"))
		return -1;
	return 0;
}

static int opt_max_qos(struct moat_acl_opts *o, struct span v)
{
	if (v.n != 1 || v.p[0] < '0' || v.p[0] > '2')
		return -1;
	if ((uint8_t)(v.p[0] - '0') < o->max_qos)
		o->max_qos = (uint8_t)(v.p[0] - '0');
	return 0;
}

static int opt_retain(struct moat_acl_opts *o, struct span v)
{
	if (span_is(v, "false"))
		o->retain = false;
	else if (!span_is(v, "true"))
		return -1;
	return 0;
}

static const struct option_def {
	const char *name;
	const char *values;
	int (*set)(struct moat_acl_opts *o, struct span v);
} option_defs[] = {
	{"no_wildcard_subscriptions", "nothing, true or false", opt_no_wildcard},
	{"max_qos", "0, 1 or 2", opt_max_qos},
	{"retain", "true or false", opt_retain},
};

/* "option NAME [VALUE]", only inside a block. */
static int kw_option(struct parser *p, struct span args, int arg)
{
	struct span value, name = split(args, &value);
	char buf[40];
	size_t i;

	(void)arg;
	if (!p->cur)
		return fail_at(p, MOAT_ECONFIG, "option outside a user, clientid or identity block");
	for (i = 0; i < sizeof(option_defs) / sizeof(option_defs[0]); i++) {
		if (!span_is(name, option_defs[i].name))
			continue;
		if (option_defs[i].set(&p->cur->opts, value) < 0)
			return fail_at(p, MOAT_ECONFIG, "option %s takes %s, not \"%s\"",
				       option_defs[i].name, option_defs[i].values,
				       excerpt(value, buf));
		return 0;
	}
	return fail_at(p, MOAT_ECONFIG, "unknown option \"%s\"", excerpt(name, buf));
}

static const struct keyword {
	const char *name;
	int (*fn)(struct parser *p, struct span args, int arg);
	int arg;
} keywords[] = {
	{"topic", kw_topic, 0},
	{"pattern", kw_pattern, 0},
	{"user", kw_block, K_USER},
	{"clientid", kw_block, K_CLIENTID},
	{"identity", kw_block, K_IDENTITY},
	{"option", kw_option, 0},
};

static int parse_line(struct parser *p, struct span s)
{
	struct span args, word;
	char buf[40];
	size_t i;

	if (s.n > LINE_MAX_BYTES)
		return fail_at(p, MOAT_ECONFIG, "line longer than %u bytes", LINE_MAX_BYTES);
	if (memchr(s.p, '\0', s.n))
		return fail_at(p, MOAT_ECONFIG, "NUL byte in line");
	s = trim(s);
	if (s.n == 0 || s.p[0] == '#')
		return 0;
	word = split(s, &args);
	for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (span_is(word, keywords[i].name))
			return keywords[i].fn(p, args, keywords[i].arg);
	return fail_at(p, MOAT_ECONFIG, "unknown keyword \"%s\"", excerpt(word, buf));
}

static struct moat_acl *acl_new(void)
{
	struct moat_acl *a = calloc(1, sizeof(*a));
	size_t k;

	if (a)
		for (k = 0; k < K_COUNT; k++)
			moat_map_init(&a->blocks[k], NULL);
	return a;
}

int moat_acl_parse(const char *text, size_t n, const char *name, struct moat_acl **out,
		   char *err, size_t errlen)
{
	struct parser p = {NULL, NULL, name ? name : "acl", 0, err, errlen};
	size_t off = 0;
	int rc = MOAT_ENOMEM;

	if (!(p.a = acl_new()))
		goto fail;
	if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) /* a UTF-8 byte order mark */
		off = 3;
	while (off < n) {
		const char *nl = memchr(text + off, '\n', n - off);
		size_t len = nl ? (size_t)(nl - (text + off)) : n - off;

		p.line++;
		if ((rc = parse_line(&p, (struct span){text + off, len})) < 0)
			goto fail;
		off += len + 1;
	}
	*out = p.a;
	return 0;
fail:
	if (rc == MOAT_ENOMEM && !p.a && err && errlen)
		snprintf(err, errlen, "%s: out of memory", p.name);
	moat_acl_free(p.a);
	return rc;
}

/* Reads the whole of path into a malloc'd buffer. 0, -errno, or -EFBIG. */
static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t n = 0, cap = 0, got;
	char *b = NULL, *nb;
	int rc = 0;

	if (!f)
		return errno ? -errno : -EIO;
	errno = 0;
	do {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > FILE_MAX_BYTES + 1)
				cap = FILE_MAX_BYTES + 1;
			if (n == cap) {
				rc = -EFBIG;
				goto fail;
			}
			if (!(nb = realloc(b, cap))) {
				rc = -ENOMEM;
				goto fail;
			}
			b = nb;
		}
		got = fread(b + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	if (ferror(f)) {
		rc = errno ? -errno : -EIO;
		goto fail;
	}
	fclose(f);
	*buf = b;
	*len = n;
	return 0;
fail:
	free(b);
	fclose(f);
	return rc;
}

int moat_acl_load(const char *path, struct moat_acl **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t n = 0;
	int rc;

	errno = 0;
	rc = read_file(path, &text, &n);
	if (rc < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path,
				 rc == -EFBIG ? "larger than 64 MiB" : strerror(-rc));
		return rc == -EFBIG ? MOAT_ECONFIG : rc == -ENOMEM ? MOAT_ENOMEM : MOAT_EIO;
	}
	rc = moat_acl_parse(text, n, path, out, err, errlen);
	free(text);
	return rc;
}

/* ---- binding ---- */

struct crule {
	const uint8_t *f; /* into the view's own allocation */
	uint32_t len;
	uint8_t access;
};

/* A cached decision: 16 bytes, so the whole cache is 1 KiB per client. */
struct slot {
	uint8_t *topic;   /* owned copy; NULL = empty slot */
	uint32_t hash;    /* the high half of the key's hash */
	uint16_t len;     /* <= CACHE_TOPIC_MAX */
	uint8_t cap;      /* topic's capacity, in 16-byte units */
	uint8_t verdict;  /* access << 1 | decision */
};

struct moat_acl_client {
	struct crule *rules; /* [0, ndeny) deny, [ndeny, n) allow */
	size_t ndeny, n;
	bool deny_all;
	struct moat_acl_opts opts;
	struct slot cache[CACHE_SLOTS];
	/* the rules, then their filters' bytes, follow in this allocation */
};

/* What a client brings to substitution. */
struct subst {
	const char *v[2]; /* client id, user name; NULL when absent */
	size_t len[2];
	bool bad[2];      /* holds '+', '#' or '/' */
};

/* What a pattern becomes for one client. */
enum fate { F_SKIP, F_KEEP, F_DENY_ALL };

/*
 * Decides a pattern's fate before substituting, and the substituted length
 * (*len) when it is kept: values missing -> skip; dangerous values -> skip
 * an allow; longer than SUBST_MAX_BYTES -> skip an allow (its values hold no
 * wildcard, so it has at most 32768 '+' levels and could only match topics
 * longer than 65535 bytes: it matches nothing), deny everything for a deny.
 * The substituted text is checked afterwards (result_fate).
 */
static enum fate pattern_plan(const struct rule *r, const struct subst *s, size_t *len)
{
	size_t k, cnt[2] = {r->nc, r->nu}, total = r->len - 2 * (cnt[0] + cnt[1]);
	bool deny = r->access == R_DENY;

	for (k = 0; k < 2; k++) {
		if (!cnt[k])
			continue;
		if (!s->v[k])
			return F_SKIP;
		if (s->bad[k] && !deny)
			return F_SKIP;
		if (s->len[k] > SUBST_MAX_BYTES / cnt[k] ||
		    total + cnt[k] * s->len[k] > SUBST_MAX_BYTES)
			return deny ? F_DENY_ALL : F_SKIP;
		total += cnt[k] * s->len[k];
	}
	*len = total;
	return F_KEEP;
}

/* Writes r's filter with %c and %u replaced into dst (pattern_plan's length). */
static void substitute(const struct rule *r, const struct subst *s, uint8_t *dst)
{
	const char *f = r->filter;
	size_t i, k;

	for (i = 0; i < r->len; i++) {
		if (f[i] == '%' && i + 1 < r->len && (f[i + 1] == 'c' || f[i + 1] == 'u')) {
			k = f[i + 1] == 'u';
			memcpy(dst, s->v[k], s->len[k]);
			dst += s->len[k];
			i++;
		} else {
			*dst++ = (uint8_t)f[i];
		}
	}
}

/* After substitution: an allow must not be widened, a deny must stay a filter. */
static enum fate result_fate(const struct rule *r, const uint8_t *f, size_t n)
{
	if (r->access == R_DENY)
		return moat_mqtt_topic_filter_check(f, n) < 0 ? F_DENY_ALL : F_KEEP;
	if (n == 0 || (f[0] == '$' && r->filter[0] != '$'))
		return F_SKIP;
	return F_KEEP;
}

/* The blocks and sections that apply to who. */
struct plan {
	const struct rules *src[4];
	size_t nsrc;
	const struct block *blk[3];
	size_t nblk;
	size_t nrules, bytes;
	bool deny_all;
};

static void plan_block(const struct moat_acl *a, struct plan *pl, int kind, const char *name)
{
	const struct block *b;

	if (!name || !(b = moat_map_get(&a->blocks[kind], name, strlen(name))))
		return;
	pl->src[pl->nsrc++] = &b->rules;
	pl->blk[pl->nblk++] = b;
}

/* Counts what the view will hold. Returns 0, or MOAT_ENOMEM past the substitution budget. */
static int plan_make(const struct moat_acl *a, const struct moat_acl_who *who,
		     const struct subst *s, struct plan *pl)
{
	size_t i, len, grown = 0;

	if (!who->username)
		pl->src[pl->nsrc++] = &a->general;
	plan_block(a, pl, K_USER, who->username);
	plan_block(a, pl, K_CLIENTID, who->client_id);
	plan_block(a, pl, K_IDENTITY, who->identity);
	for (i = 0; i < pl->nsrc; i++) {
		pl->nrules += pl->src[i]->n;
		pl->bytes += pl->src[i]->bytes;
	}
	for (i = 0; i < a->patterns.n; i++) {
		const struct rule *r = &a->patterns.v[i];
		enum fate f = pattern_plan(r, s, &len);

		pl->deny_all |= f == F_DENY_ALL;
		if (f != F_KEEP)
			continue;
		pl->nrules++;
		pl->bytes += len;
		grown += len > r->len ? len - r->len : 0;
		if (grown > SUBST_BUDGET)
			return MOAT_ENOMEM;
	}
	return 0;
}

/* Places a rule: denies fill from the front, allows from the back. */
static void place(struct moat_acl_client *c, size_t *back, const uint8_t *f, size_t n,
		  uint8_t access)
{
	struct crule cr = {f, (uint32_t)n, access};

	if (access == R_DENY)
		c->rules[c->ndeny++] = cr;
	else
		c->rules[--*back] = cr;
}

static void fill(struct moat_acl_client *c, const struct moat_acl *a, const struct plan *pl,
		 const struct subst *s)
{
	uint8_t *text = (uint8_t *)(c->rules + pl->nrules);
	size_t i, j, len, back = pl->nrules;

	for (i = 0; i < pl->nsrc; i++) {
		for (j = 0; j < pl->src[i]->n; j++) {
			const struct rule *r = &pl->src[i]->v[j];
			memcpy(text, r->filter, r->len);
			place(c, &back, text, r->len, r->access);
			text += r->len;
		}
	}
	for (i = 0; i < a->patterns.n; i++) {
		const struct rule *r = &a->patterns.v[i];
		enum fate f = pattern_plan(r, s, &len);

		if (f != F_KEEP)
			continue;
		substitute(r, s, text);
		f = result_fate(r, text, len);
		c->deny_all |= f == F_DENY_ALL;
		if (f == F_KEEP)
			place(c, &back, text, len, r->access);
		text += len;
	}
	/* Skipped results leave a gap between denies and allows: close it. */
	if (back > c->ndeny)
		memmove(c->rules + c->ndeny, c->rules + back,
			(pl->nrules - back) * sizeof(*c->rules));
	c->n = c->ndeny + (pl->nrules - back);
}

static void subst_init(struct subst *s, const struct moat_acl_who *who)
{
	const char *v[2] = {who->client_id, who->username};
	size_t k;

	for (k = 0; k < 2; k++) {
		s->v[k] = v[k];
		s->len[k] = v[k] ? strlen(v[k]) : 0;
		s->bad[k] = v[k] && strpbrk(v[k], "+#/") != NULL;
	}
}

/* The options of the applicable blocks, the most restrictive winning. */
static void merge_opts(struct moat_acl_opts *o, const struct plan *pl)
{
	size_t i;

	*o = opts_default;
	for (i = 0; i < pl->nblk; i++) {
		const struct moat_acl_opts *b = &pl->blk[i]->opts;
		o->no_wildcard_subscriptions |= b->no_wildcard_subscriptions;
		o->max_qos = b->max_qos < o->max_qos ? b->max_qos : o->max_qos;
		o->retain &= b->retain;
	}
}

struct moat_acl_client *moat_acl_bind(const struct moat_acl *a, const struct moat_acl_who *who)
{
	static const struct moat_acl_who nobody = {NULL, NULL, NULL};
	struct plan pl = {0};
	struct subst s;
	struct moat_acl_client *c;
	size_t size;

	if (!a)
		return NULL;
	if (!who)
		who = &nobody;
	subst_init(&s, who);
	if (plan_make(a, who, &s, &pl) < 0)
		return NULL;
	if (pl.nrules > (SIZE_MAX - sizeof(*c) - pl.bytes) / sizeof(struct crule))
		return NULL;
	size = sizeof(*c) + pl.nrules * sizeof(struct crule) + pl.bytes;
	c = malloc(size);
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->rules = (struct crule *)(c + 1);
	c->deny_all = pl.deny_all;
	merge_opts(&c->opts, &pl);
	fill(c, a, &pl, &s);
	return c;
}

void moat_acl_client_free(struct moat_acl_client *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < CACHE_SLOTS; i++)
		free(c->cache[i].topic);
	free(c);
}

const struct moat_acl_opts *moat_acl_options(const struct moat_acl_client *c)
{
	static const struct moat_acl_opts none = {true, 0, false};

	return c ? &c->opts : &none;
}

/* ---- checking ---- */

static size_t level_end(const uint8_t *p, size_t n, size_t i)
{
	const uint8_t *s = i < n ? memchr(p + i, '/', n - i) : NULL;
	return s ? (size_t)(s - p) : n;
}

static bool is_level(const uint8_t *p, size_t i, size_t end, uint8_t ch)
{
	return end - i == 1 && p[i] == ch;
}

/*
 * True if rule filter f covers requested filter q: every topic q can match,
 * f matches. Both are valid plain filters. '#' in f covers anything left,
 * '+' in f covers one level of q that is not '#', a literal level covers
 * only itself; a wildcard first level of f does not cover a '$' level. A
 * '#' of q needs a '#' of f, as it matches its parent too, except "#" alone:
 * it has no parent, so "+/#" covers it.
 */
static bool covers(const uint8_t *f, size_t fn, const uint8_t *q, size_t qn)
{
	size_t i = 0, j = 0, ie, je;

	if ((f[0] == '+' || f[0] == '#') && q[0] == '$')
		return false;
	if (qn == 1 && q[0] == '#')
		return (fn == 1 && f[0] == '#') || (fn == 3 && memcmp(f, "+/#", 3) == 0);
	for (;;) {
		ie = level_end(f, fn, i);
		je = level_end(q, qn, j);
		if (is_level(f, i, ie, '#'))
			return true;
		if (is_level(q, j, je, '#'))
			return false;
		if (!is_level(f, i, ie, '+') &&
		    (ie - i != je - j || memcmp(f + i, q + j, ie - i) != 0))
			return false;
		i = ie;
		j = je;
		if (i == fn || j == qn)
			break;
		i++;
		j++;
	}
	if (i == fn)
		return j == qn;
	return fn - i == 2 && f[i + 1] == '#'; /* "a/#" covers "a" */
}

static bool rule_applies(const struct crule *r, const uint8_t *t, size_t n, bool sub)
{
	return sub ? covers(r->f, r->len, t, n) : moat_mqtt_topic_match(r->f, r->len, t, n);
}

static bool has_wildcard(const uint8_t *t, size_t n)
{
	return memchr(t, '+', n) || memchr(t, '#', n);
}

/* The uncached decision. */
static enum moat_decision decide(const struct moat_acl_client *c, const uint8_t *t, size_t n,
				 int access)
{
	bool sub = access == MOAT_ACL_SUBSCRIBE;
	uint8_t need = access == MOAT_ACL_WRITE ? R_WRITE : R_READ;
	struct moat_slice group, inner;
	size_t i;

	if (c->deny_all)
		return MOAT_DENY;
	if (sub) {
		if (moat_mqtt_topic_filter_check(t, n) < 0)
			return MOAT_DENY;
		if (moat_mqtt_share_split(t, n, &group, &inner) == 1) {
			t = inner.p;
			n = inner.len;
		}
		if (c->opts.no_wildcard_subscriptions && has_wildcard(t, n))
			return MOAT_DENY;
	} else if (moat_mqtt_topic_name_check(t, n) < 0) {
		return MOAT_DENY;
	}
	for (i = 0; i < c->ndeny; i++)
		if (rule_applies(&c->rules[i], t, n, sub))
			return MOAT_DENY;
	for (; i < c->n; i++)
		if ((c->rules[i].access & need) && rule_applies(&c->rules[i], t, n, sub))
			return MOAT_ALLOW;
	return MOAT_DENY;
}

static uint64_t cache_hash(const uint8_t *t, size_t n, int access)
{
	return moat_hash(t, n) ^ ((uint64_t)access * 0x9e3779b97f4a7c15ull);
}

static bool slot_holds(const struct slot *sl, uint64_t h, const uint8_t *t, size_t n, int access)
{
	return sl->topic && sl->hash == (uint32_t)(h >> 32) && sl->verdict >> 1 == access &&
	       sl->len == n && memcmp(sl->topic, t, n) == 0;
}

/* Remembers a decision; if memory is short the slot is just emptied. */
static void slot_store(struct slot *sl, uint64_t h, const uint8_t *t, size_t n, int access,
		       enum moat_decision d)
{
	size_t units = n / 16 + 1;

	if (!sl->topic || units > sl->cap) {
		uint8_t *p = realloc(sl->topic, units * 16);
		if (!p) {
			free(sl->topic);
			*sl = (struct slot){0};
			return;
		}
		sl->topic = p;
		sl->cap = (uint8_t)units;
	}
	if (n)
		memcpy(sl->topic, t, n);
	sl->hash = (uint32_t)(h >> 32);
	sl->len = (uint16_t)n;
	sl->verdict = (uint8_t)(access << 1 | (d == MOAT_ALLOW));
}

enum moat_decision moat_acl_check(struct moat_acl_client *c, const uint8_t *topic, size_t n,
				  int access)
{
	struct slot *set, tmp;
	enum moat_decision d;
	uint64_t h;

	if (!c || !topic || (access != MOAT_ACL_READ && access != MOAT_ACL_WRITE &&
			     access != MOAT_ACL_SUBSCRIBE))
		return MOAT_DENY;
	if (n > CACHE_TOPIC_MAX)
		return decide(c, topic, n, access);
	h = cache_hash(topic, n, access);
	set = &c->cache[(h & (CACHE_SLOTS / 2 - 1)) * 2];
	if (slot_holds(&set[0], h, topic, n, access))
		return set[0].verdict & 1 ? MOAT_ALLOW : MOAT_DENY;
	/* Two ways per set, the most recently used first: a hit or a fill goes to way 0. */
	tmp = set[1];
	set[1] = set[0];
	set[0] = tmp;
	if (slot_holds(&set[0], h, topic, n, access))
		return set[0].verdict & 1 ? MOAT_ALLOW : MOAT_DENY;
	d = decide(c, topic, n, access);
	slot_store(&set[0], h, topic, n, access, d);
	return d;
}
