/*
 * passwd.c - password files (see passwd.h for the formats and the contract).
 *
 * A file is parsed in one pass into a map from user name to a decoded entry:
 * salts and hashes are base64-decoded at load, so a malformed entry is found
 * then (and the whole file refused, fail closed), and checking a password
 * only hashes and compares. Argon2id entries keep libsodium's string form,
 * which libsodium itself parses at verification.
 *
 * Timing: an unknown user is checked against a dummy entry so that the reply
 * costs what a real user's would. The dummy is the first entry, in file
 * order, of the algorithm most entries in this file use (same algorithm, same
 * cost parameters as the users an attacker would probe); a file with no users
 * uses a built-in Argon2id entry with the default parameters. The answer for
 * an unknown user is forced to "denied" after the work is done.
 *
 * Secrets: the copies of passwords, derived keys and file contents that pass
 * through here are wiped (OPENSSL_cleanse / sodium_memzero) before their
 * memory is released. OpenSSL is used only through libcrypto; libsodium
 * provides Argon2id, random bytes and the fingerprint's keyed hash; SCRAM
 * keys come from moat_scram_derive (scram.c).
 *
 * Editing (moat_passwd_edit) rewrites the file through a temporary file and
 * rename, holding a process mutex and an flock on the file, so that the auth
 * threads' re-hashing and a concurrent `moat passwd` do not lose each
 * other's changes. It keeps every line it does not own byte for byte,
 * including lines it could not load (so `moat passwd -U` can fix them).
 *
 * Invariants: every entry in a struct moat_passwd has been fully validated
 * (salt and key lengths match its algorithm, iteration counts in bounds,
 * Argon2id strings NUL-terminated within crypto_pwhash_STRBYTES); the map's
 * keys live inside the entries; p->dummy is never NULL.
 */
#include "security/passwd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "core/error.h"
#include "core/file.h"
#include "core/map.h"
#include "core/utf8.h"
#include "security/scram.h"

/*
 * Argon2id cost for new entries: RFC 9106's second recommended option
 * (t=3, 64 MiB, one lane). On the development machine (2 cores) one hash
 * takes about 100 ms, and libsodium's INTERACTIVE (t=2, 64 MiB) about 80 ms;
 * MODERATE (t=3, 256 MiB) takes 0.7 s, too slow for a broker's logins, and
 * would make a pool of 8 auth threads hold 2 GiB. 64 MiB per concurrent check
 * keeps the auth pool's memory predictable.
 */
#define ARGON2_OPS 3
#define ARGON2_MEM (64u << 20)

/*
 * PBKDF2-SHA512 ($7$) for new entries: OWASP's 2023 figure for SHA-512
 * (about 130 ms here). mosquitto_passwd writes 101, which Mosquitto and moat
 * both still read; Mosquitto reads any count, so files written by moat stay
 * usable by Mosquitto. The salt is 12 bytes because Mosquitto requires that.
 */
#define PBKDF2_ITER 210000u
#define PBKDF2_SALT 12
#define PBKDF2_KEY 64

/*
 * SCRAM: the client runs PBKDF2 on every login, so the count is MongoDB's
 * 15000 (RFC 7677 asks for at least 4096), a few milliseconds for a client.
 */
/* Shared with scram.c: an unknown user must get the same made-up parameters. */
#define SCRAM_ITER MOAT_SCRAM_ITERATIONS
#define SCRAM_SALT MOAT_SCRAM_SALT_LEN

#define SHA512_SALT 12          /* $6$ as mosquitto_passwd 1.x wrote it */
#define ITER_MAX 10000000u      /* a higher count is a typo or an attack on the loader */
#define LINE_MAX_BYTES (64 * 1024)
#define FILE_MAX_BYTES ((size_t)64 << 20)
#define USER_MAX 65535          /* an MQTT string */

/* The built-in dummy: Argon2id with the default parameters, of a random password. */
static const char DUMMY_ARGON2[] =
	"$argon2id$v=19$m=65536,t=3,p=1$OJMxTfyax9/hCdm12xb37A$"
	"2D8VyrrR0Pqi8bWWZb5ICQiL0fV7itsfFQIT20fgouw";

struct entry {
	enum moat_pw_algo algo;
	unsigned line;                   /* in the file, for messages */
	uint64_t fingerprint;
	uint32_t iter;                   /* $7$ and SCRAM */
	size_t salt_len, key_len;        /* $7$, $6$ and SCRAM */
	uint8_t salt[64];
	uint8_t key[64];                 /* $7$/$6$: the hash; SCRAM: StoredKey */
	uint8_t server_key[64];          /* SCRAM */
	char phc[crypto_pwhash_STRBYTES]; /* Argon2id: libsodium reads all 128 bytes */
	size_t ulen;
	char user[];                     /* NUL-terminated; the map's key */
};

struct moat_passwd {
	struct moat_map users;
	const struct entry *dummy;       /* borrowed from users, or builtin */
	struct entry *builtin;           /* owned; NULL unless the file has no users */
};

struct span {
	const char *p;
	size_t n;
};

/* ---- once per process ---- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int sodium_ready = -1;
static uint8_t fp_key[crypto_generichash_KEYBYTES];

static void init_process(void)
{
	sodium_ready = sodium_init() < 0 ? -1 : 0;
	if (sodium_ready == 0)
		randombytes_buf(fp_key, sizeof(fp_key));
}

/* Returns 0 once libsodium is usable, else -1. */
static int ready(void)
{
	pthread_once(&init_once, init_process);
	return sodium_ready;
}

/* ---- small parsers ---- */

static bool span_eq(struct span s, const char *lit)
{
	size_t n = strlen(lit);

	return s.n == n && memcmp(s.p, lit, n) == 0;
}

/* Splits s at '$' into at most max fields; returns how many (max + 1 if more). */
static size_t split_dollar(struct span s, struct span *f, size_t max)
{
	size_t k = 0, start = 0, i;

	for (i = 0; i <= s.n; i++) {
		if (i < s.n && s.p[i] != '$')
			continue;
		if (k == max)
			return max + 1;
		f[k++] = (struct span){s.p + start, i - start};
		start = i + 1;
	}
	return k;
}

/* Decimal digits only, value in [min, max]. Returns 0 or -1. */
static int parse_u32(struct span s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (s.n == 0 || s.n > 10)
		return -1;
	for (i = 0; i < s.n; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s.p[i] - '0');
	}
	if (v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/*
 * Strict padded base64 (what mosquitto_passwd writes): decodes s into out
 * (cap bytes). Returns the decoded length (>= 1), or -1 for bad characters,
 * misplaced padding, an empty string or more than cap bytes.
 */
static int b64_decode(struct span s, uint8_t *out, size_t cap)
{
	unsigned char tmp[96];
	size_t i, pad = 0, len;
	int n;

	if (s.n == 0 || s.n % 4 != 0 || s.n / 4 * 3 > sizeof(tmp))
		return -1;
	while (pad < 2 && s.p[s.n - 1 - pad] == '=')
		pad++;
	for (i = 0; i < s.n - pad; i++)
		if (!b64_char(s.p[i]))
			return -1;
	n = EVP_DecodeBlock(tmp, (const unsigned char *)s.p, (int)s.n);
	len = n < 0 ? 0 : (size_t)n - pad; /* EVP_DecodeBlock counts padding as bytes */
	if (n < 0 || len == 0 || len > cap) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return -1;
	}
	memcpy(out, tmp, len);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return (int)len;
}

/* Unpadded base64 (PHC strings) of at least min bytes. */
static bool b64_unpadded_ok(struct span s, size_t min)
{
	size_t i;

	if (s.n % 4 == 1 || s.n * 3 / 4 < min)
		return false;
	for (i = 0; i < s.n; i++)
		if (!b64_char(s.p[i]))
			return false;
	return true;
}

/* ---- hash strings ---- */

/* "$7$ITER$SALT$HASH" (after the "$7$" prefix: ITER$SALT$HASH). */
static const char *parse_pbkdf2(struct span s, struct entry *e)
{
	struct span f[3];
	int n;

	if (split_dollar(s, f, 3) != 3)
		return "$7$ needs ITERATIONS$SALT$HASH";
	if (parse_u32(f[0], 1, ITER_MAX, &e->iter) < 0)
		return "$7$ iteration count is not a number from 1 to 10000000";
	if ((n = b64_decode(f[1], e->salt, sizeof(e->salt))) < 0)
		return "$7$ salt is not base64 (1 to 64 bytes)";
	e->salt_len = (size_t)n;
	if (b64_decode(f[2], e->key, sizeof(e->key)) != PBKDF2_KEY)
		return "$7$ hash is not 64 bytes of base64";
	e->key_len = PBKDF2_KEY;
	e->algo = MOAT_PW_PBKDF2_SHA512;
	return NULL;
}

/* "$6$SALT$HASH" (after the prefix: SALT$HASH). */
static const char *parse_sha512(struct span s, struct entry *e)
{
	struct span f[2];
	int n;

	if (split_dollar(s, f, 2) != 2)
		return "$6$ needs SALT$HASH";
	if ((n = b64_decode(f[0], e->salt, sizeof(e->salt))) < 0)
		return "$6$ salt is not base64 (1 to 64 bytes)";
	e->salt_len = (size_t)n;
	if (b64_decode(f[1], e->key, sizeof(e->key)) != 64)
		return "$6$ hash is not 64 bytes of base64";
	e->key_len = 64;
	e->algo = MOAT_PW_SHA512;
	return NULL;
}

/* "$scram-sha-N$ITER$SALT$STOREDKEY$SERVERKEY" (after the prefix). */
static const char *parse_scram(struct span s, struct entry *e, int sha)
{
	size_t klen = sha == 256 ? 32 : 64;
	struct span f[4];
	int n;

	if (split_dollar(s, f, 4) != 4)
		return "SCRAM entry needs ITERATIONS$SALT$STOREDKEY$SERVERKEY";
	if (parse_u32(f[0], 1, ITER_MAX, &e->iter) < 0)
		return "SCRAM iteration count is not a number from 1 to 10000000";
	if ((n = b64_decode(f[1], e->salt, sizeof(e->salt))) < 0)
		return "SCRAM salt is not base64 (1 to 64 bytes)";
	e->salt_len = (size_t)n;
	if (b64_decode(f[2], e->key, sizeof(e->key)) != (int)klen ||
	    b64_decode(f[3], e->server_key, sizeof(e->server_key)) != (int)klen)
		return sha == 256 ? "SCRAM-SHA-256 keys are not 32 bytes of base64"
				  : "SCRAM-SHA-512 keys are not 64 bytes of base64";
	e->key_len = klen;
	e->algo = sha == 256 ? MOAT_PW_SCRAM_SHA256 : MOAT_PW_SCRAM_SHA512;
	return NULL;
}

/* "m=M,t=T,p=P" with costs libsodium can run and a loader should accept. */
static bool argon2_params_ok(struct span s)
{
	struct span f[3];
	uint32_t m, t, p;
	size_t k = 0, start = 0, i;

	for (i = 0; i <= s.n && k < 3; i++) {
		if (i < s.n && s.p[i] != ',')
			continue;
		f[k++] = (struct span){s.p + start, i - start};
		start = i + 1;
	}
	if (k != 3 || i <= s.n)
		return false;
	for (i = 0; i < 3; i++) {
		if (f[i].n < 2 || f[i].p[0] != "mtp"[i] || f[i].p[1] != '=')
			return false;
		f[i].p += 2;
		f[i].n -= 2;
	}
	return parse_u32(f[0], 8, 4u << 20, &m) == 0 && parse_u32(f[1], 1, 1u << 16, &t) == 0 &&
	       parse_u32(f[2], 1, 64, &p) == 0 && m >= 8 * p;
}

/* "$argon2id$v=19$m=..,t=..,p=..$SALT$HASH"; whole is the full string. */
static const char *parse_argon2(struct span whole, struct span s, struct entry *e)
{
	struct span f[4];

	if (whole.n >= sizeof(e->phc))
		return "$argon2id$ string longer than libsodium accepts (127 bytes)";
	if (split_dollar(s, f, 4) != 4 || !span_eq(f[0], "v=19"))
		return "$argon2id$ needs v=19$m=M,t=T,p=P$SALT$HASH";
	if (!argon2_params_ok(f[1]))
		return "$argon2id$ parameters out of range (m=8..4194304 KiB, t=1..65536, p=1..64)";
	if (!b64_unpadded_ok(f[2], 8) || !b64_unpadded_ok(f[3], 16))
		return "$argon2id$ salt or hash is not unpadded base64 of the right size";
	memset(e->phc, 0, sizeof(e->phc));
	memcpy(e->phc, whole.p, whole.n);
	e->algo = MOAT_PW_ARGON2ID;
	return NULL;
}

/* Decodes a hash string into e; returns NULL, or why it is malformed. */
static const char *parse_hash(struct span h, struct entry *e)
{
	static const struct {
		const char *prefix;
		int kind;
	} kinds[] = {
		{"$argon2id$", 0}, {"$7$", 7}, {"$6$", 6}, {"$scram-sha-256$", 256},
		{"$scram-sha-512$", 512},
	};
	size_t i, n;
	struct span rest;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		n = strlen(kinds[i].prefix);
		if (h.n < n || memcmp(h.p, kinds[i].prefix, n) != 0)
			continue;
		rest = (struct span){h.p + n, h.n - n};
		switch (kinds[i].kind) {
		case 0:
			return parse_argon2(h, rest, e);
		case 7:
			return parse_pbkdf2(rest, e);
		case 6:
			return parse_sha512(rest, e);
		default:
			return parse_scram(rest, e, kinds[i].kind);
		}
	}
	return "not a recognised hash ($argon2id$, $7$, $6$, $scram-sha-256$, $scram-sha-512$; "
	       "a plain-text password? 'moat passwd -U' hashes them)";
}

/* ---- lines ---- */

struct line {
	struct span full;  /* the line with its '\n', if it has one */
	struct span raw;   /* the line without its '\n' */
	struct span user;  /* trimmed; user.p NULL for a blank line or a comment */
	struct span hash;  /* trimmed */
	bool colon;        /* false: a non-blank, non-comment line with no ':' */
};

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static struct span trim(struct span s)
{
	while (s.n && blank(s.p[0]))
		s.p++, s.n--;
	while (s.n && blank(s.p[s.n - 1]))
		s.n--;
	return s;
}

/* Takes the line at text[*off..n) and classifies it; false at the end. */
static bool next_line(const char *text, size_t n, size_t *off, struct line *l)
{
	const char *p = text + *off, *nl, *colon;
	struct span t;

	if (*off >= n)
		return false;
	nl = memchr(p, '\n', n - *off);
	l->raw = (struct span){p, nl ? (size_t)(nl - p) : n - *off};
	l->full = (struct span){p, l->raw.n + (nl != NULL)};
	*off += l->full.n;
	memset(&l->user, 0, sizeof(l->user));
	memset(&l->hash, 0, sizeof(l->hash));
	l->colon = true;
	t = trim(l->raw);
	if (t.n == 0 || t.p[0] == '#')
		return true;
	colon = memchr(t.p, ':', t.n);
	if (!colon) {
		l->colon = false;
		return true;
	}
	l->user = trim((struct span){t.p, (size_t)(colon - t.p)});
	l->hash = trim((struct span){colon + 1, t.n - (size_t)(colon - t.p) - 1});
	return true; /* user.p is not NULL, even for an empty name */
}

/* Why a user name cannot be used, or NULL. */
static const char *user_problem(struct span u)
{
	if (u.n == 0)
		return "empty user name";
	if (u.n > USER_MAX)
		return "user name longer than 65535 bytes";
	if (memchr(u.p, ':', u.n))
		return "user name contains ':'";
	if (moat_utf8_check((const uint8_t *)u.p, u.n, 0) != MOAT_UTF8_OK)
		return "user name is not UTF-8 or contains control characters";
	return NULL;
}

/* ---- the set ---- */

static uint64_t fingerprint(struct span user, struct span hash)
{
	crypto_generichash_state st;
	uint8_t out[8], zero = 0;
	uint64_t v = 0;
	size_t i;

	crypto_generichash_init(&st, fp_key, sizeof(fp_key), sizeof(out));
	crypto_generichash_update(&st, (const uint8_t *)user.p, user.n);
	crypto_generichash_update(&st, &zero, 1);
	crypto_generichash_update(&st, (const uint8_t *)hash.p, hash.n);
	crypto_generichash_final(&st, out, sizeof(out));
	for (i = 0; i < sizeof(out); i++)
		v = v << 8 | out[i];
	return v ? v : 1; /* 0 means "no entry" */
}

static void entry_free(struct entry *e)
{
	if (!e)
		return;
	sodium_memzero(e, sizeof(*e) + e->ulen + 1);
	free(e);
}

/* A new entry for user (line) with hash h: returns it, or NULL with *why. */
static struct entry *entry_new(struct span user, struct span h, unsigned line, const char **why)
{
	struct entry *e = calloc(1, sizeof(*e) + user.n + 1);

	if (!e) {
		*why = "out of memory";
		return NULL;
	}
	e->ulen = user.n;
	memcpy(e->user, user.p, user.n);
	e->line = line;
	if ((*why = parse_hash(h, e)) != NULL) {
		entry_free(e);
		return NULL;
	}
	e->fingerprint = fingerprint(user, h);
	return e;
}

void moat_passwd_free(struct moat_passwd *p)
{
	struct entry *e;
	size_t pos = 0;

	if (!p)
		return;
	while ((e = moat_map_next(&p->users, &pos, NULL, NULL)) != NULL)
		entry_free(e);
	moat_map_free(&p->users);
	entry_free(p->builtin);
	free(p);
}

/* Adds one user line to p; returns NULL or why the line is refused. */
static const char *add_line(struct moat_passwd *p, const struct line *l, unsigned line,
			    unsigned *first_line)
{
	const struct entry *old;
	struct entry *e;
	const char *why;

	if ((why = user_problem(l->user)) != NULL)
		return why;
	if ((old = moat_map_get(&p->users, l->user.p, l->user.n)) != NULL) {
		*first_line = old->line;
		return "duplicate user";
	}
	if (!(e = entry_new(l->user, l->hash, line, &why)))
		return why;
	if (moat_map_put(&p->users, e->user, e->ulen, e) < 0) {
		entry_free(e);
		return "out of memory";
	}
	return NULL;
}

/*
 * Picks the dummy entry: the first (in file order) of the commonest
 * algorithm, or a built-in Argon2id entry when there are no users.
 */
static int pick_dummy(struct moat_passwd *p)
{
	const struct entry *first[5] = {0};
	size_t count[5] = {0}, pos = 0, i, best = 0;
	const struct entry *e;
	const char *why;

	while ((e = moat_map_next(&p->users, &pos, NULL, NULL)) != NULL) {
		count[e->algo]++;
		if (!first[e->algo] || e->line < first[e->algo]->line)
			first[e->algo] = e;
	}
	for (i = 1; i < 5; i++)
		if (count[i] > count[best])
			best = i;
	if (count[best]) {
		p->dummy = first[best];
		return 0;
	}
	p->builtin = entry_new((struct span){"", 0},
			       (struct span){DUMMY_ARGON2, sizeof(DUMMY_ARGON2) - 1}, 0, &why);
	p->dummy = p->builtin;
	return p->builtin ? 0 : MOAT_ENOMEM;
}

int moat_passwd_parse(const char *text, size_t n, const char *name, struct moat_passwd **out,
		      char *err, size_t errlen)
{
	struct moat_passwd *p = NULL;
	struct line l;
	size_t off = 0;
	unsigned line = 0, first = 0;
	const char *why = NULL;
	int rc = MOAT_ECONFIG;

	if (ready() < 0) {
		moat_set_err(err, errlen, "%s: libsodium cannot start", name);
		return MOAT_EIO;
	}
	if (!(p = calloc(1, sizeof(*p)))) {
		why = "out of memory";
		goto fail;
	}
	moat_map_init(&p->users, NULL);
	if (n >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		off = 3; /* a UTF-8 byte-order mark */
	while (next_line(text, n, &off, &l)) {
		line++;
		if (l.raw.n > LINE_MAX_BYTES)
			why = "line longer than 64 KiB";
		else if (!l.colon)
			why = "no ':' (lines are user:hash)";
		else if (l.user.p)
			why = add_line(p, &l, line, &first);
		if (why)
			goto fail;
	}
	if ((rc = pick_dummy(p)) < 0) {
		why = "out of memory";
		line = 0;
		goto fail;
	}
	*out = p;
	return 0;
fail:
	if (why && strcmp(why, "out of memory") == 0)
		rc = MOAT_ENOMEM;
	if (first)
		moat_set_err(err, errlen, "%s:%u: %s (first on line %u)", name, line, why, first);
	else if (line)
		moat_set_err(err, errlen, "%s:%u: %s", name, line, why);
	else
		moat_set_err(err, errlen, "%s: %s", name, why);
	moat_passwd_free(p);
	return rc;
}

/* ---- files ---- */

static void wipe_free(char *p, size_t n)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, n);
	free(p);
}

/* Reads all of path (a regular file up to FILE_MAX_BYTES) into *out (owned, *n + 1 bytes). */
static int read_all(const char *path, char **out, size_t *n, char *err, size_t errlen)
{
	const char *why = NULL;
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	ssize_t k;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
		goto fail;
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > FILE_MAX_BYTES) {
		why = S_ISREG(st.st_mode) ? "larger than 64 MiB" : "not a regular file";
		goto fail;
	}
	cap = (size_t)st.st_size + 1;
	if (!(buf = malloc(cap)))
		goto fail;
	while (len < cap - 1) { /* a file that grows meanwhile is cut */
		k = read(fd, buf + len, cap - 1 - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			goto fail;
		if (k == 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	*n = len;
	return 0;
fail:
	moat_set_err(err, errlen, "%s: %s", path, why ? why : strerror(errno));
	if (fd >= 0)
		close(fd);
	wipe_free(buf, cap);
	return MOAT_EIO;
}

int moat_passwd_load(const char *path, struct moat_passwd **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t n = 0;
	int rc;

	if ((rc = read_all(path, &text, &n, err, errlen)) < 0)
		return rc;
	rc = moat_passwd_parse(text, n, path, out, err, errlen);
	wipe_free(text, n + 1);
	return rc;
}

size_t moat_passwd_count(const struct moat_passwd *p)
{
	return p ? p->users.len : 0;
}

uint64_t moat_passwd_fingerprint_of(const char *user, const char *hash)
{
	struct span u = {user, strlen(user)}, h = {hash, strlen(hash)};

	return fingerprint(u, h);
}

uint64_t moat_passwd_fingerprint(const struct moat_passwd *p, const char *user)
{
	const struct entry *e;

	if (!p || !user)
		return 0;
	e = moat_map_get(&p->users, user, strlen(user));
	return e ? e->fingerprint : 0;
}

/* ---- hashing ---- */

static int pbkdf2(const EVP_MD *md, const uint8_t *pw, size_t plen, const uint8_t *salt,
		  size_t slen, uint32_t iter, uint8_t *out, size_t outlen)
{
	if (plen > INT_MAX)
		return -1;
	return PKCS5_PBKDF2_HMAC(pw ? (const char *)pw : "", (int)plen, salt, (int)slen,
				 (int)iter, md, (int)outlen, out) == 1 ? 0 : -1;
}

/*
 * SCRAM keys (RFC 5802 section 3) of a password, by moat_scram_derive. The
 * password is used as bytes (no SASLprep): ASCII passwords are unaffected.
 */
static int scram_keys(int sha, const uint8_t *pw, size_t plen, const uint8_t *salt,
		      size_t slen, uint32_t iter, uint8_t *stored, uint8_t *server)
{
	struct moat_scram_cred c;
	int rc;

	rc = moat_scram_derive(sha, pw ? pw : (const uint8_t *)"", plen, salt, slen, iter, &c);
	if (rc == 0) {
		memcpy(stored, c.stored_key, c.key_len);
		memcpy(server, c.server_key, c.key_len);
	}
	OPENSSL_cleanse(&c, sizeof(c));
	return rc;
}

/* Does password match e? Constant time in the password and the entry's secrets. */
static bool verify(const struct entry *e, const uint8_t *pw, size_t plen)
{
	uint8_t a[64], b[64];
	unsigned int k = 0;
	bool ok = false;
	EVP_MD_CTX *ctx;

	switch (e->algo) {
	case MOAT_PW_ARGON2ID:
		return crypto_pwhash_str_verify(e->phc, pw ? (const char *)pw : "", plen) == 0;
	case MOAT_PW_PBKDF2_SHA512:
		ok = pbkdf2(EVP_sha512(), pw, plen, e->salt, e->salt_len, e->iter, a, 64) == 0 &&
		     CRYPTO_memcmp(a, e->key, 64) == 0;
		break;
	case MOAT_PW_SHA512:
		ctx = EVP_MD_CTX_new();
		ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) &&
		     EVP_DigestUpdate(ctx, pw ? (const void *)pw : "", plen) &&
		     EVP_DigestUpdate(ctx, e->salt, e->salt_len) &&
		     EVP_DigestFinal_ex(ctx, a, &k) && CRYPTO_memcmp(a, e->key, 64) == 0;
		EVP_MD_CTX_free(ctx);
		break;
	case MOAT_PW_SCRAM_SHA256:
	case MOAT_PW_SCRAM_SHA512:
		ok = scram_keys(e->algo == MOAT_PW_SCRAM_SHA256 ? 256 : 512, pw, plen, e->salt,
				e->salt_len, e->iter, a, b) == 0 &&
		     (CRYPTO_memcmp(a, e->key, e->key_len) | CRYPTO_memcmp(b, e->server_key,
									  e->key_len)) == 0;
		break;
	case MOAT_PW_ALGO_COUNT: /* not an algorithm */
		break;
	}
	OPENSSL_cleanse(a, sizeof(a));
	OPENSSL_cleanse(b, sizeof(b));
	return ok;
}

int moat_passwd_check(const struct moat_passwd *p, const char *user, const uint8_t *password,
		      size_t plen, enum moat_pw_algo *algo)
{
	const struct entry *e = NULL;
	bool ok;

	if (!p || ready() < 0)
		return MOAT_EDENIED;
	if (user)
		e = moat_map_get(&p->users, user, strlen(user));
	ok = verify(e ? e : p->dummy, password, plen); /* the same work either way */
	/*
	 * No tool can set a password holding a NUL byte (they are C strings), and
	 * HMAC pads its key with zeros, so for $7$ and SCRAM "pw\0" would match
	 * "pw": refuse them outright.
	 */
	if (plen && memchr(password, 0, plen))
		ok = false;
	if (!e || !ok)
		return MOAT_EDENIED;
	if (algo)
		*algo = e->algo;
	return 0;
}

int moat_passwd_scram(const struct moat_passwd *p, const char *user, int sha,
		      struct moat_scram_cred *cred)
{
	enum moat_pw_algo want = sha == 256 ? MOAT_PW_SCRAM_SHA256 : MOAT_PW_SCRAM_SHA512;
	const struct entry *e;

	if (!p || !user || (sha != 256 && sha != 512))
		return MOAT_ENOTFOUND;
	e = moat_map_get(&p->users, user, strlen(user));
	if (!e || e->algo != want)
		return MOAT_ENOTFOUND;
	memset(cred, 0, sizeof(*cred));
	memcpy(cred->salt, e->salt, e->salt_len);
	cred->salt_len = e->salt_len;
	cred->iterations = e->iter;
	memcpy(cred->stored_key, e->key, e->key_len);
	memcpy(cred->server_key, e->server_key, e->key_len);
	cred->key_len = e->key_len;
	return 0;
}

int moat_passwd_algo(const char *name, enum moat_pw_algo *out)
{
	static const struct {
		const char *name;
		enum moat_pw_algo algo;
	} names[] = {
		{"argon2id", MOAT_PW_ARGON2ID},
		{"sha512-pbkdf2", MOAT_PW_PBKDF2_SHA512},
		{"scram-sha-256", MOAT_PW_SCRAM_SHA256},
		{"scram-sha-512", MOAT_PW_SCRAM_SHA512},
	};
	size_t i;

	for (i = 0; name && i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i].name) == 0) {
			*out = names[i].algo;
			return 0;
		}
	}
	return MOAT_EINVAL;
}

/* Base64 of in into *o (advancing it), if it fits before end. */
static int b64_put(char **o, const char *end, const uint8_t *in, size_t n)
{
	size_t need = (n + 2) / 3 * 4;

	if ((size_t)(end - *o) <= need)
		return MOAT_ENOSPC;
	*o += EVP_EncodeBlock((unsigned char *)*o, in, (int)n);
	return 0;
}

/* A '$' at *o, if it fits with a NUL after it. */
static int dollar(char **o, const char *end)
{
	if (end - *o < 2)
		return MOAT_ENOSPC;
	*(*o)++ = '$';
	**o = '\0';
	return 0;
}

/* "$7$" or "$scram-sha-N$" entries into buf[cap]. */
static int hash_salted(enum moat_pw_algo algo, const uint8_t *pw, size_t plen, char *buf,
		       size_t cap)
{
	bool scram = algo != MOAT_PW_PBKDF2_SHA512;
	int sha = algo == MOAT_PW_SCRAM_SHA256 ? 256 : 512;
	size_t slen = scram ? SCRAM_SALT : PBKDF2_SALT, klen = sha == 256 ? 32 : 64;
	uint32_t iter = scram ? SCRAM_ITER : PBKDF2_ITER;
	uint8_t salt[SCRAM_SALT], k1[64], k2[64];
	char *o = buf, *end = buf + cap;
	int n, rc = MOAT_EIO;

	randombytes_buf(salt, slen);
	if (scram ? scram_keys(sha, pw, plen, salt, slen, iter, k1, k2)
		  : pbkdf2(EVP_sha512(), pw, plen, salt, slen, iter, k1, klen))
		goto fail;
	n = scram ? snprintf(buf, cap, "$scram-sha-%d$%u$", sha, iter)
		  : snprintf(buf, cap, "$7$%u$", iter);
	rc = MOAT_ENOSPC;
	if (n < 0 || (size_t)n >= cap)
		goto fail;
	o += n;
	if (b64_put(&o, end, salt, slen) < 0 || dollar(&o, end) < 0 ||
	    b64_put(&o, end, k1, klen) < 0)
		goto fail;
	if (scram && (dollar(&o, end) < 0 || b64_put(&o, end, k2, klen) < 0))
		goto fail;
	rc = 0;
fail:
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	return rc;
}

int moat_passwd_hash(enum moat_pw_algo algo, const uint8_t *password, size_t plen, char *out,
		     size_t cap)
{
	char tmp[512];
	int rc;

	if (ready() < 0)
		return MOAT_EIO;
	switch (algo) {
	case MOAT_PW_ARGON2ID:
		if (crypto_pwhash_str(tmp, password ? (const char *)password : "", plen,
				      ARGON2_OPS, ARGON2_MEM) != 0)
			return MOAT_ENOMEM; /* libsodium fails only for want of memory */
		rc = 0;
		break;
	case MOAT_PW_PBKDF2_SHA512:
	case MOAT_PW_SCRAM_SHA256:
	case MOAT_PW_SCRAM_SHA512:
		rc = hash_salted(algo, password, plen, tmp, sizeof(tmp));
		break;
	default:
		return MOAT_EINVAL; /* $6$ is read only */
	}
	if (rc == 0 && strlen(tmp) >= cap)
		rc = MOAT_ENOSPC;
	if (rc == 0)
		memcpy(out, tmp, strlen(tmp) + 1);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return rc;
}

/* ---- editing ---- */

struct buf {
	char *p;
	size_t len, cap;
};

/* Appends; on growth the old copy is wiped (it holds hashes). */
static int buf_add(struct buf *b, const void *p, size_t n)
{
	char *q;
	size_t cap;

	if (!b->p || b->cap - b->len < n) {
		cap = b->cap ? b->cap : 4096;
		while (cap - b->len < n)
			cap *= 2;
		if (!(q = malloc(cap)))
			return MOAT_ENOMEM;
		if (b->len)
			memcpy(q, b->p, b->len);
		wipe_free(b->p, b->cap);
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int buf_entry(struct buf *b, const char *user, const char *hash)
{
	if (b->len && b->p[b->len - 1] != '\n' && buf_add(b, "\n", 1) < 0)
		return MOAT_ENOMEM;
	if (buf_add(b, user, strlen(user)) < 0 || buf_add(b, ":", 1) < 0 ||
	    buf_add(b, hash, strlen(hash)) < 0 || buf_add(b, "\n", 1) < 0)
		return MOAT_ENOMEM;
	return 0;
}

/*
 * The file old[0..n) with user's entry set to hash (NULL: removed) into out.
 * Every other line is copied byte for byte; a second entry for the user is
 * dropped. Returns 0, MOAT_ENOTFOUND (deleting an absent user) or MOAT_ENOMEM.
 */
static int rewrite(const char *old, size_t n, const char *user, const char *hash, struct buf *out)
{
	size_t off = 0, ulen = strlen(user);
	bool found = false;
	struct line l;

	while (next_line(old, n, &off, &l)) {
		if (!l.user.p || l.user.n != ulen || memcmp(l.user.p, user, ulen) != 0) {
			if (buf_add(out, l.full.p, l.full.n) < 0)
				return MOAT_ENOMEM;
			continue;
		}
		if (!found && hash && buf_entry(out, user, hash) < 0)
			return MOAT_ENOMEM;
		found = true;
	}
	if (!found && !hash)
		return MOAT_ENOTFOUND;
	if (!found && buf_entry(out, user, hash) < 0)
		return MOAT_ENOMEM;
	if (!out->p && buf_add(out, "", 0) < 0) /* an empty file */
		return MOAT_ENOMEM;
	return 0;
}

/* The file a write should replace: path through symlinks, or path itself if absent. */
static char *target_of(const char *path, char *err, size_t errlen)
{
	char *real = realpath(path, NULL);

	if (!real && errno == ENOENT)
		real = strdup(path);
	if (!real)
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
	return real;
}

/* Can (user, hash) be written as a line that loads back as that entry? */
static int edit_args_ok(const char *user, const char *hash, char *err, size_t errlen)
{
	struct span u = {user, user ? strlen(user) : 0};
	struct entry *e;
	const char *why;

	if (!user || (why = user_problem(u)) != NULL) {
		moat_set_err(err, errlen, "%s", user ? why : "no user name");
		return MOAT_EINVAL;
	}
	if (blank(user[0]) || blank(user[u.n - 1]) || user[0] == '#') {
		moat_set_err(err, errlen, "user name starts with '#' or starts or ends with a blank");
		return MOAT_EINVAL;
	}
	if (!hash)
		return 0;
	if (!(e = entry_new(u, (struct span){hash, strlen(hash)}, 0, &why))) {
		moat_set_err(err, errlen, "%s", why);
		return strcmp(why, "out of memory") == 0 ? MOAT_ENOMEM : MOAT_EINVAL;
	}
	entry_free(e);
	return 0;
}

/*
 * Serialises editors of target: within this process by a mutex (auth threads
 * re-hash entries), between processes (moat passwd, the broker) by flock on
 * the file itself. The lock is taken on the inode that is current once
 * granted: a writer that renamed a new file over it meanwhile makes us retry.
 * Returns the locked fd, or -1 when the file does not exist (nothing to lose).
 */
static int lock_target(const char *target)
{
	struct stat a, b;
	int fd, tries;

	for (tries = 0; tries < 100; tries++) {
		if ((fd = open(target, O_RDONLY | O_CLOEXEC)) < 0)
			return -1;
		if (flock(fd, LOCK_EX) == 0 && fstat(fd, &a) == 0 && stat(target, &b) == 0 &&
		    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return fd;
		close(fd);
	}
	return -1;
}

static pthread_mutex_t edit_lock = PTHREAD_MUTEX_INITIALIZER;

int moat_passwd_edit(const char *path, const char *user, const char *hash, bool create,
		     char *err, size_t errlen)
{
	char *target = NULL, *old = NULL;
	struct buf out = {0};
	size_t n = 0;
	int rc, lock = -1;

	if (ready() < 0)
		return MOAT_EIO;
	if ((rc = edit_args_ok(user, hash, err, errlen)) < 0)
		return rc;
	pthread_mutex_lock(&edit_lock);
	rc = MOAT_EIO;
	if (!(target = target_of(path, err, errlen)))
		goto fail;
	lock = lock_target(target);
	if (!create && (rc = read_all(target, &old, &n, err, errlen)) < 0)
		goto fail;
	if ((rc = rewrite(old, n, user, hash, &out)) < 0) {
		moat_set_err(err, errlen, "%s: %s", path,
		       rc == MOAT_ENOTFOUND ? "no such user" : "out of memory");
		goto fail;
	}
	rc = moat_file_replace(target, out.p, out.len, err, errlen);
fail:
	if (lock >= 0)
		close(lock); /* releases the flock */
	pthread_mutex_unlock(&edit_lock);
	wipe_free(out.p, out.cap);
	wipe_free(old, n + 1);
	free(target);
	return rc;
}

void moat_passwd_algo_counts(const struct moat_passwd *p, size_t counts[MOAT_PW_ALGO_COUNT])
{
	const struct entry *e;
	size_t pos = 0;

	memset(counts, 0, MOAT_PW_ALGO_COUNT * sizeof(counts[0]));
	while ((e = moat_map_next(&p->users, &pos, NULL, NULL)))
		if ((unsigned)e->algo < MOAT_PW_ALGO_COUNT)
			counts[e->algo]++;
}

const char *moat_passwd_algo_name(enum moat_pw_algo a)
{
	static const char *const names[MOAT_PW_ALGO_COUNT] = {
		[MOAT_PW_ARGON2ID] = "argon2id",
		[MOAT_PW_PBKDF2_SHA512] = "sha512-pbkdf2",
		[MOAT_PW_SHA512] = "sha512",
		[MOAT_PW_SCRAM_SHA256] = "scram-sha-256",
		[MOAT_PW_SCRAM_SHA512] = "scram-sha-512",
	};

	return (unsigned)a < MOAT_PW_ALGO_COUNT ? names[a] : "?";
}
