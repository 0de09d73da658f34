/*
 * scram.c - the server side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802
 * sections 3, 5 and 7; RFC 7677), on libcrypto alone.
 *
 * One struct moat_scram per exchange, moving one way:
 *
 *   moat_scram_start --> WANT_SERVER_FIRST --server_first--> WANT_FINAL
 *                              |                                 |
 *                              | (MOAT_ENOSPC: stays)            | finish (any answer
 *                              v                                 v  but MOAT_ENOSPC)
 *                                                               DONE
 *
 * What it keeps: a copy of the client-first-message (its gs2 header is what
 * c= must carry; its bare part opens the AuthMessage), the
 * server-first-message it wrote (the nonce r= must repeat is its first
 * attribute), and StoredKey / ServerKey. The AuthMessage is never built: its
 * five pieces are fed to the HMAC in turn.
 *
 * Invariants:
 *   - a client message is read only if it is 1 to MAX_MSG bytes of
 *     well-formed UTF-8 without NUL, and only after the whole of it matched
 *     the grammar of RFC 5802 section 7 (with the choices below); anything
 *     else is MOAT_EPROTOCOL and nothing of it is kept.
 *   - choices: gs2 header "n," or "y," (no "p=" channel binding), an authzid
 *     only if it is the user's name spelt the same way; "m=" (a mandatory
 *     extension) refused; other extensions allowed where the grammar puts
 *     them, each ALPHA "=" value with a name SCRAM does not use itself; a
 *     saslname's '=' only in "=2C" or "=3D" (so a name has one spelling).
 *   - base64 from the peer must be canonical (it re-encodes to the same
 *     text), so a proof has one spelling; c= is compared as text with the
 *     encoding of the gs2 header.
 *   - an unknown user gets credentials made from the per-process key and its
 *     name: the same salt on every probe, the same iteration count and salt
 *     length as moat passwd writes, the same work (the made-up credentials
 *     are computed for real users too), and finish denies only after doing
 *     every computation a real user's finish does.
 *   - finish gives one try per exchange; moat_scram_free cleanses it all.
 */
#include "security/scram.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "core/error.h"
#include "core/utf8.h"

#define MAX_MSG 4096   /* longest client message read */
#define MAX_KEY 64     /* SHA-512's output */
#define SNONCE_RAND 24 /* random bytes in the server's nonce (32 base64 characters) */
#define SNONCE_MAX 64  /* longest server nonce (the test hook's) */
#define B64_LEN(n) (4 * (((n) + 2) / 3))
/* server-first-message past the client's nonce: "r=" snonce ",s=" salt ",i=" count, NUL */
#define SFIRST_EXTRA (2 + SNONCE_MAX + 3 + B64_LEN(MAX_KEY) + 3 + 10 + 1)

enum phase { WANT_SERVER_FIRST, WANT_FINAL, DONE };

struct span {
	size_t off, len;
};

struct moat_scram {
	int mech;
	enum phase phase;
	bool fake;         /* made-up credentials: finish always denies */
	size_t hlen;       /* digest length, 32 or 64 */
	size_t size;       /* bytes allocated, for the cleanse */
	size_t cfirst_len; /* cfirst[0, gs2_len) is the gs2 header, the rest the bare message */
	size_t gs2_len;
	struct span user;   /* the n= value as sent (escaped), in cfirst */
	struct span cnonce; /* the client's nonce, in cfirst */
	size_t sfirst_len, sfirst_cap;
	size_t nonce_len; /* the combined nonce: sfirst[2, 2 + nonce_len) */
	size_t snonce_len; /* a nonce set by the test hook, 0 for a random one */
	char snonce[SNONCE_MAX];
	uint8_t stored_key[MAX_KEY];
	uint8_t server_key[MAX_KEY];
	uint8_t *cfirst; /* both point into buf */
	uint8_t *sfirst;
	uint8_t buf[];
};

/* ---- hashes ---- */

static size_t hash_len(int mech)
{
	if (mech == MOAT_SCRAM_SHA256)
		return 32;
	return mech == MOAT_SCRAM_SHA512 ? 64 : 0;
}

static const EVP_MD *hash_md(int mech)
{
	return mech == MOAT_SCRAM_SHA256 ? EVP_sha256() : EVP_sha512();
}

struct part {
	const void *p;
	size_t n;
};

/*
 * HMAC with mech's hash under key of the concatenation of parts into out
 * (hash_len(mech) bytes). Returns 0 or MOAT_EIO.
 */
static int hmac(int mech, const uint8_t *key, size_t klen, const struct part *parts, size_t np,
		uint8_t *out)
{
	char *name = mech == MOAT_SCRAM_SHA256 ? "SHA256" : "SHA512";
	OSSL_PARAM params[2];
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	size_t i, len = 0;
	int rc = MOAT_EIO;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, name, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (ctx == NULL || !EVP_MAC_init(ctx, key, klen, params))
		goto fail;
	for (i = 0; i < np; i++)
		if (!EVP_MAC_update(ctx, parts[i].p, parts[i].n))
			goto fail;
	if (!EVP_MAC_final(ctx, out, &len, hash_len(mech)) || len != hash_len(mech))
		goto fail;
	rc = 0;
fail:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return rc;
}

/* H(p) with mech's hash into out. Returns 0 or MOAT_EIO. */
static int digest(int mech, const uint8_t *p, size_t n, uint8_t *out)
{
	unsigned int len = 0;

	if (!EVP_Digest(p, n, out, &len, hash_md(mech), NULL) || len != hash_len(mech))
		return MOAT_EIO;
	return 0;
}

/* ---- base64 ---- */

/* Whether enc[0, en) is exactly the base64 of raw[0, rn), compared 3 bytes at a time. */
static bool b64_is(const uint8_t *raw, size_t rn, const uint8_t *enc, size_t en)
{
	size_t i;

	if (en != B64_LEN(rn))
		return false;
	for (i = 0; i < rn; i += 3) {
		unsigned char q[5];
		int k = rn - i < 3 ? (int)(rn - i) : 3;

		EVP_EncodeBlock(q, raw + i, k);
		if (memcmp(q, enc + i / 3 * 4, 4) != 0)
			return false;
	}
	return true;
}

/*
 * Decodes enc[0, en) into out only if it is the canonical base64 of exactly
 * want (<= MAX_KEY) bytes. EVP_DecodeBlock alone is lax (it counts padding
 * as data and takes '=' in the middle): the re-encoding check is the strict
 * part.
 */
static bool b64_decode_exact(const uint8_t *enc, size_t en, uint8_t *out, size_t want)
{
	uint8_t tmp[B64_LEN(MAX_KEY) / 4 * 3];
	size_t pads = 0;
	int got;
	bool ok = false;

	if (want > MAX_KEY || en != B64_LEN(want))
		return false;
	got = EVP_DecodeBlock(tmp, enc, (int)en);
	while (pads < 2 && pads < en && enc[en - 1 - pads] == '=')
		pads++;
	if (got >= 0 && (size_t)got == want + pads && b64_is(tmp, want, enc, en)) {
		memcpy(out, tmp, want);
		ok = true;
	}
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return ok;
}

/* ---- reading messages ---- */

struct cur {
	const uint8_t *p;
	size_t n, i;
};

/* Consumes lit if the input goes on with it. */
static bool take(struct cur *c, const char *lit)
{
	size_t k = strlen(lit);

	if (c->n - c->i < k || memcmp(c->p + c->i, lit, k) != 0)
		return false;
	c->i += k;
	return true;
}

/* Consumes a value up to the next ',' or the end (possibly empty). */
static struct span field(struct cur *c)
{
	struct span s = {c->i, 0};

	while (c->i < c->n && c->p[c->i] != ',')
		c->i++;
	s.len = c->i - s.off;
	return s;
}

/* The well-formedness every client message needs before it is parsed. */
static bool text_ok(const uint8_t *p, size_t n)
{
	return p != NULL && n > 0 && n <= MAX_MSG &&
	       moat_utf8_check(p, n, MOAT_UTF8_ALLOW_DISCOURAGED) == MOAT_UTF8_OK;
}

/*
 * saslname = 1*(value-safe-char / "=2C" / "=3D"), the text already checked
 * for UTF-8 and NUL and cut at ','. Returns the decoded length, 0 if p is
 * not a saslname.
 */
static size_t saslname(const uint8_t *p, size_t n)
{
	size_t i, out = 0;

	for (i = 0; i < n; i++, out++) {
		if (p[i] != '=')
			continue;
		if (n - i < 3 || (memcmp(p + i + 1, "2C", 2) != 0 && memcmp(p + i + 1, "3D", 2) != 0))
			return 0;
		i += 2;
	}
	return out;
}

/* Writes the decoded saslname p (checked by saslname()) NUL-terminated to out. */
static void saslname_decode(const uint8_t *p, size_t n, char *out)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		if (p[i] == '=') {
			out[k++] = p[i + 1] == '2' ? ',' : '=';
			i += 2;
		} else {
			out[k++] = (char)p[i];
		}
	}
	out[k] = '\0';
}

/* 1*printable: ASCII 0x21-0x7E but ','. */
static bool printable(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7E || p[i] == ',')
			return false;
	return n > 0;
}

/*
 * ["," extensions] to the end of c: each an attr-val (ALPHA "=" 1*value-char)
 * named by a letter SCRAM does not use itself ("m=" above all).
 */
static bool extensions(struct cur *c)
{
	static const char reserved[] = "acemnprsiv";

	while (c->i < c->n) {
		uint8_t a;

		if (!take(c, ",") || c->n - c->i < 2)
			return false;
		a = c->p[c->i];
		if (!((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z')) || c->p[c->i + 1] != '=' ||
		    memchr(reserved, a, sizeof(reserved) - 1) != NULL)
			return false;
		c->i += 2;
		if (field(c).len == 0)
			return false;
	}
	return true;
}

struct first {
	size_t gs2_len;
	struct span authz, user, cnonce;
};

/*
 * client-first-message = gs2-header [reserved-mext ","] username "," nonce
 * ["," extensions], as restricted in the file header. Returns 0 with *f or
 * MOAT_EPROTOCOL.
 */
static int parse_first(const uint8_t *m, size_t n, struct first *f)
{
	struct cur c = {m, n, 0};

	if (!text_ok(m, n))
		return MOAT_EPROTOCOL;
	if (!take(&c, "n,") && !take(&c, "y,"))
		return MOAT_EPROTOCOL; /* "p=": channel binding, which moat does not offer */
	f->authz = (struct span){0, 0};
	if (take(&c, "a=")) {
		f->authz = field(&c);
		if (saslname(m + f->authz.off, f->authz.len) == 0)
			return MOAT_EPROTOCOL;
	}
	if (!take(&c, ","))
		return MOAT_EPROTOCOL;
	f->gs2_len = c.i;
	if (!take(&c, "n=")) /* "m=" included */
		return MOAT_EPROTOCOL;
	f->user = field(&c);
	if (saslname(m + f->user.off, f->user.len) == 0 || !take(&c, ",r="))
		return MOAT_EPROTOCOL;
	f->cnonce = field(&c);
	if (!printable(m + f->cnonce.off, f->cnonce.len) || !extensions(&c))
		return MOAT_EPROTOCOL;
	/* One spelling per name, so the same name is the same bytes. */
	if (f->authz.len != 0 && (f->authz.len != f->user.len ||
				  memcmp(m + f->authz.off, m + f->user.off, f->user.len) != 0))
		return MOAT_EPROTOCOL;
	return 0;
}

/*
 * client-final-message = "c=" base64 "," "r=" nonce ["," extensions] ","
 * "p=" base64, with c= the gs2 header, r= our combined nonce and p= as long
 * as the hash. Returns 0 with the length of the part without the proof in
 * *wo_len and the proof in proof, or MOAT_EPROTOCOL.
 */
static int parse_final(const struct moat_scram *s, const uint8_t *m, size_t n, size_t *wo_len,
		       uint8_t *proof)
{
	const uint8_t *comma;
	struct span cb, r;
	struct cur c;
	size_t k;

	if (!text_ok(m, n) || (comma = memrchr(m, ',', n)) == NULL)
		return MOAT_EPROTOCOL;
	k = (size_t)(comma - m);
	if (n - k < 3 || memcmp(comma + 1, "p=", 2) != 0 ||
	    !b64_decode_exact(comma + 3, n - k - 3, proof, s->hlen))
		return MOAT_EPROTOCOL;
	c = (struct cur){m, k, 0};
	if (!take(&c, "c="))
		return MOAT_EPROTOCOL;
	cb = field(&c);
	if (!b64_is(s->cfirst, s->gs2_len, m + cb.off, cb.len) || !take(&c, ",r="))
		return MOAT_EPROTOCOL;
	r = field(&c);
	if (r.len != s->nonce_len || memcmp(m + r.off, s->sfirst + 2, r.len) != 0)
		return MOAT_EPROTOCOL;
	if (!extensions(&c))
		return MOAT_EPROTOCOL;
	*wo_len = k;
	return 0;
}

/* ---- made-up credentials ---- */

static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t process_key[32];
static bool process_key_set;

/* Copies the per-process key to key, drawing it on first use. Returns 0 or MOAT_EIO. */
static int get_process_key(uint8_t key[32])
{
	int rc = MOAT_EIO;

	pthread_mutex_lock(&key_lock);
	if (!process_key_set)
		process_key_set = RAND_bytes(process_key, sizeof(process_key)) == 1;
	if (process_key_set) {
		memcpy(key, process_key, sizeof(process_key));
		rc = 0;
	}
	pthread_mutex_unlock(&key_lock);
	return rc;
}

/*
 * The credentials of an unknown user named (as sent) name: salt and keys are
 * HMAC-SHA-512s of the name under the per-process key, so a name gets the
 * same salt from every exchange of this process, and nobody can answer them.
 * Returns 0 with *cred or MOAT_EIO.
 */
static int fake_cred(int mech, const uint8_t *name, size_t n, struct moat_scram_cred *cred)
{
	static const char label[] = "moat scram unknown user";
	uint8_t key[32], salt[64], keys[64];
	uint8_t which[3] = {(uint8_t)(mech >> 8), (uint8_t)mech, 's'};
	struct part parts[3] = {{label, sizeof(label)}, {which, sizeof(which)}, {name, n}};
	int rc;

	rc = get_process_key(key);
	if (rc == 0)
		rc = hmac(MOAT_SCRAM_SHA512, key, sizeof(key), parts, 3, salt);
	which[2] = 'k';
	if (rc == 0)
		rc = hmac(MOAT_SCRAM_SHA512, key, sizeof(key), parts, 3, keys);
	if (rc != 0)
		goto fail;
	memset(cred, 0, sizeof(*cred));
	memcpy(cred->salt, salt, MOAT_SCRAM_SALT_LEN);
	cred->salt_len = MOAT_SCRAM_SALT_LEN;
	cred->iterations = MOAT_SCRAM_ITERATIONS;
	cred->key_len = hash_len(mech);
	memcpy(cred->stored_key, keys, cred->key_len);
	memcpy(cred->server_key, keys, cred->key_len);
fail:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(salt, sizeof(salt));
	OPENSSL_cleanse(keys, sizeof(keys));
	return rc;
}

/* ---- the exchange ---- */

int moat_scram_mech(const uint8_t *name, size_t n)
{
	static const struct {
		const char *name;
		int mech;
	} mechs[] = {{"SCRAM-SHA-256", MOAT_SCRAM_SHA256}, {"SCRAM-SHA-512", MOAT_SCRAM_SHA512}};
	size_t i;

	for (i = 0; name != NULL && i < sizeof(mechs) / sizeof(mechs[0]); i++)
		if (n == strlen(mechs[i].name) && memcmp(name, mechs[i].name, n) == 0)
			return mechs[i].mech;
	return 0;
}

int moat_scram_start(int mech, const uint8_t *client_first, size_t n, struct moat_scram **out,
		     char *user, size_t usercap)
{
	struct moat_scram *s;
	struct first f;
	size_t size;
	int rc;

	if (hash_len(mech) == 0 || out == NULL || user == NULL || usercap == 0)
		return MOAT_EINVAL;
	rc = parse_first(client_first, n, &f);
	if (rc != 0)
		return rc;
	if (saslname(client_first + f.user.off, f.user.len) >= usercap)
		return MOAT_EPROTOCOL;
	size = sizeof(*s) + n + n + SFIRST_EXTRA;
	s = calloc(1, size);
	if (s == NULL)
		return MOAT_ENOMEM;
	s->mech = mech;
	s->phase = WANT_SERVER_FIRST;
	s->hlen = hash_len(mech);
	s->size = size;
	s->cfirst = s->buf;
	s->cfirst_len = n;
	s->gs2_len = f.gs2_len;
	s->user = f.user;
	s->cnonce = f.cnonce;
	s->sfirst = s->buf + n;
	s->sfirst_cap = n + SFIRST_EXTRA;
	memcpy(s->cfirst, client_first, n);
	saslname_decode(client_first + f.user.off, f.user.len, user);
	*out = s;
	return 0;
}

int moat_scram_set_nonce_for_test(struct moat_scram *s, const char *nonce)
{
	size_t n = nonce != NULL ? strlen(nonce) : 0;

	if (s == NULL || n > SNONCE_MAX || !printable((const uint8_t *)nonce, n))
		return MOAT_EINVAL;
	memcpy(s->snonce, nonce, n);
	s->snonce_len = n;
	return 0;
}

/* Appends the server's part of the nonce at p. Returns its length, or 0 if RAND fails. */
static size_t server_nonce(const struct moat_scram *s, uint8_t *p)
{
	uint8_t r[SNONCE_RAND];

	if (s->snonce_len != 0) {
		memcpy(p, s->snonce, s->snonce_len);
		return s->snonce_len;
	}
	if (RAND_bytes(r, sizeof(r)) != 1)
		return 0;
	return (size_t)EVP_EncodeBlock(p, r, sizeof(r)); /* no '=': 24 is a multiple of 3 */
}

/*
 * Writes "r=" cnonce snonce ",s=" salt ",i=" iterations into s->sfirst
 * (sfirst_cap holds it: see SFIRST_EXTRA). Returns 0 or MOAT_EIO.
 */
static int write_sfirst(struct moat_scram *s, const struct moat_scram_cred *c)
{
	uint8_t *p = s->sfirst;
	size_t k;
	int t;

	memcpy(p, "r=", 2);
	p += 2;
	memcpy(p, s->cfirst + s->cnonce.off, s->cnonce.len);
	p += s->cnonce.len;
	k = server_nonce(s, p);
	if (k == 0)
		return MOAT_EIO;
	p += k;
	s->nonce_len = s->cnonce.len + k;
	memcpy(p, ",s=", 3);
	p += 3;
	p += EVP_EncodeBlock(p, c->salt, (int)c->salt_len);
	t = snprintf((char *)p, 14, ",i=%" PRIu32, c->iterations);
	s->sfirst_len = (size_t)(p - s->sfirst) + (size_t)t;
	return 0;
}

/* Whether cred can serve mech: the caller's (the password file's) business. */
static bool cred_ok(const struct moat_scram *s, const struct moat_scram_cred *cred)
{
	return cred->key_len == s->hlen && cred->salt_len > 0 &&
	       cred->salt_len <= sizeof(cred->salt) && cred->iterations > 0;
}

int moat_scram_server_first(struct moat_scram *s, const struct moat_scram_cred *cred,
			    uint8_t *out, size_t cap, size_t *len)
{
	struct moat_scram_cred fake;
	const struct moat_scram_cred *c;
	int rc;

	if (s == NULL || out == NULL || len == NULL || s->phase != WANT_SERVER_FIRST ||
	    (cred != NULL && !cred_ok(s, cred)))
		return MOAT_EINVAL;
	/* Made up for a real user too, so both cost the same. */
	rc = fake_cred(s->mech, s->cfirst + s->user.off, s->user.len, &fake);
	if (rc != 0)
		goto fail;
	c = cred != NULL ? cred : &fake;
	rc = write_sfirst(s, c);
	if (rc != 0)
		goto fail;
	if (s->sfirst_len > cap) {
		rc = MOAT_ENOSPC;
		goto fail;
	}
	memcpy(out, s->sfirst, s->sfirst_len);
	*len = s->sfirst_len;
	memcpy(s->stored_key, c->stored_key, s->hlen);
	memcpy(s->server_key, c->server_key, s->hlen);
	s->fake = cred == NULL;
	s->phase = WANT_FINAL;
fail:
	OPENSSL_cleanse(&fake, sizeof(fake));
	return rc;
}

/*
 * The proof check of RFC 5802 section 3: ClientKey = proof XOR
 * HMAC(StoredKey, AuthMessage) must hash to StoredKey. Always computes the
 * ServerSignature into server_sig too, so right and wrong proofs, real and
 * made-up users, do the same work. Returns 0, MOAT_EDENIED or MOAT_EIO.
 */
static int check_proof(const struct moat_scram *s, const uint8_t *final_wo, size_t wo_len,
		       const uint8_t *proof, uint8_t *server_sig)
{
	const struct part auth_message[5] = {
		{s->cfirst + s->gs2_len, s->cfirst_len - s->gs2_len},
		{",", 1},
		{s->sfirst, s->sfirst_len},
		{",", 1},
		{final_wo, wo_len},
	};
	uint8_t sig[MAX_KEY], client_key[MAX_KEY], stored[MAX_KEY];
	size_t i;
	int rc;

	rc = hmac(s->mech, s->stored_key, s->hlen, auth_message, 5, sig);
	if (rc != 0)
		goto fail;
	for (i = 0; i < s->hlen; i++)
		client_key[i] = proof[i] ^ sig[i];
	rc = digest(s->mech, client_key, s->hlen, stored);
	if (rc == 0)
		rc = hmac(s->mech, s->server_key, s->hlen, auth_message, 5, server_sig);
	if (rc != 0)
		goto fail;
	if ((CRYPTO_memcmp(stored, s->stored_key, s->hlen) != 0) | s->fake)
		rc = MOAT_EDENIED;
fail:
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(stored, sizeof(stored));
	return rc;
}

int moat_scram_finish(struct moat_scram *s, const uint8_t *client_final, size_t n, uint8_t *out,
		      size_t cap, size_t *len)
{
	uint8_t proof[MAX_KEY], server_sig[MAX_KEY], v[2 + B64_LEN(MAX_KEY) + 1];
	size_t wo_len = 0, vlen = 0;
	int rc;

	if (s == NULL || out == NULL || len == NULL || s->phase != WANT_FINAL)
		return MOAT_EINVAL;
	if (cap < 2 + B64_LEN(s->hlen))
		return MOAT_ENOSPC;
	s->phase = DONE;
	rc = parse_final(s, client_final, n, &wo_len, proof);
	if (rc == 0)
		rc = check_proof(s, client_final, wo_len, proof, server_sig);
	if (rc != 0)
		goto fail;
	memcpy(v, "v=", 2);
	vlen = 2 + (size_t)EVP_EncodeBlock(v + 2, server_sig, (int)s->hlen);
	memcpy(out, v, vlen);
	*len = vlen;
fail:
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(server_sig, sizeof(server_sig));
	return rc;
}

void moat_scram_free(struct moat_scram *s)
{
	size_t size;

	if (s == NULL)
		return;
	size = s->size;
	OPENSSL_cleanse(s, size);
	free(s);
}

/* ---- credentials ---- */

int moat_scram_derive(int mech, const uint8_t *password, size_t plen, const uint8_t *salt,
		      size_t salt_len, uint32_t iterations, struct moat_scram_cred *cred)
{
	static const char client_label[] = "Client Key", server_label[] = "Server Key";
	const struct part ck = {client_label, sizeof(client_label) - 1};
	const struct part sk = {server_label, sizeof(server_label) - 1};
	struct moat_scram_cred c;
	uint8_t salted[MAX_KEY], client_key[MAX_KEY];
	size_t h = hash_len(mech);
	int rc = MOAT_EINVAL;

	memset(&c, 0, sizeof(c));
	if (h == 0 || cred == NULL || salt == NULL || salt_len == 0 || salt_len > sizeof(c.salt) ||
	    iterations == 0 || iterations > INT_MAX || plen > INT_MAX ||
	    (password == NULL && plen != 0))
		goto fail;
	rc = MOAT_EIO;
	if (!PKCS5_PBKDF2_HMAC((const char *)password, (int)plen, salt, (int)salt_len,
			       (int)iterations, hash_md(mech), (int)h, salted))
		goto fail;
	rc = hmac(mech, salted, h, &ck, 1, client_key);
	if (rc == 0)
		rc = digest(mech, client_key, h, c.stored_key);
	if (rc == 0)
		rc = hmac(mech, salted, h, &sk, 1, c.server_key);
	if (rc != 0)
		goto fail;
	memcpy(c.salt, salt, salt_len);
	c.salt_len = salt_len;
	c.iterations = iterations;
	c.key_len = h;
	*cred = c;
fail:
	OPENSSL_cleanse(&c, sizeof(c));
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return rc;
}
