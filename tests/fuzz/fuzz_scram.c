/*
 * fuzz_scram.c - libFuzzer target: the SCRAM server side of
 * src/security/scram.c.
 *
 * Input: one configuration byte (bit 0: SCRAM-SHA-512 instead of -256;
 * bit 1: the server nonce is FIXED_SNONCE, set through the test hook, so the
 * fuzzer can learn to repeat the nonce and reach the proof check), then a
 * client-first-message and a client-final-message separated by the first
 * NUL (neither may hold a NUL, so nothing is lost). The fixed credentials
 * are RFC 7677's (password "pencil", its salt, 4096 iterations), whatever
 * the user name: with bit 1 set, RFC 7677's own client-final succeeds for
 * SHA-256 (seed rfc7677.bin).
 *
 * Checked, for the known user and an unknown one (NULL credentials):
 *   - start answers 0 or MOAT_EPROTOCOL and writes nothing when it refuses;
 *     when it accepts, the user is the n= value decoded here;
 *   - server_first is "r=" client-nonce server-nonce ",s=" salt ",i=" count,
 *     the server nonce 32 base64 characters (or FIXED_SNONCE), the salt the
 *     credentials' or 16 made-up bytes (the same length either way), the
 *     count the credentials' or MOAT_SCRAM_ITERATIONS;
 *   - finish on the input's client-final answers 0 (the known user only, and
 *     then with the ServerSignature computed here), MOAT_EDENIED or
 *     MOAT_EPROTOCOL, writes nothing when it refuses, and a second finish is
 *     MOAT_EINVAL;
 *   - a correct exchange built here (RFC 5802 section 3, the client side)
 *     from the input's client-first, or, if start refused it, from
 *     "n,,n=user,r=" and a nonce made of the input's bytes, always succeeds
 *     for the known user with the right "v=", and is always MOAT_EDENIED for
 *     the unknown one (MOAT_EPROTOCOL only when the client-final it needs
 *     would pass the 4 KiB bound);
 *   - LeakSanitizer reports any leak.
 */
#include "fuzz_common.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "security/scram.h"

#define FIXED_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" /* RFC 7677's */
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define MAX_MSG 4096
#define BIG 16384
#define B64_LEN(n) (4 * (((n) + 2) / 3))

/* The known user's credentials, and the SaltedPassword the client side needs. */
struct fixed {
	struct moat_scram_cred cred;
	uint8_t salted[64];
	bool ready;
};

static struct fixed fixed_creds[2];

static const EVP_MD *md_of(int mech)
{
	return mech == MOAT_SCRAM_SHA256 ? EVP_sha256() : EVP_sha512();
}

static const struct fixed *fixed_for(int mech)
{
	struct fixed *f = &fixed_creds[mech == MOAT_SCRAM_SHA512];
	uint8_t salt[18];
	int n;

	if (f->ready)
		return f;
	n = EVP_DecodeBlock(salt, (const uint8_t *)RFC_SALT, (int)strlen(RFC_SALT)) - 2;
	FZ_ASSERT(n == 16);
	FZ_ASSERT(moat_scram_derive(mech, (const uint8_t *)"pencil", 6, salt, 16, 4096, &f->cred) ==
		  0);
	FZ_ASSERT(PKCS5_PBKDF2_HMAC("pencil", 6, salt, 16, 4096, md_of(mech),
				    (int)f->cred.key_len, f->salted) == 1);
	f->ready = true;
	return f;
}

/* ---- the client side, written from RFC 5802 section 3 ---- */

struct client_msg {
	uint8_t final[BIG];
	size_t final_len;
	char expect[2 + B64_LEN(64) + 1]; /* the server-final it must get */
};

/*
 * The ServerSignature, as "v=...", for an exchange of cfirst (gs2 header
 * gs2_len bytes), sfirst and a client-final whose part without the proof is
 * wo: HMAC(ServerKey, AuthMessage). Also returns HMAC(StoredKey,
 * AuthMessage) in client_sig.
 */
static void signatures(int mech, const struct fixed *f, const uint8_t *cfirst, size_t cfirst_len,
		       size_t gs2_len, const uint8_t *sfirst, size_t sfirst_len, const uint8_t *wo,
		       size_t wo_len, char *expect, uint8_t *client_sig)
{
	const EVP_MD *md = md_of(mech);
	size_t h = f->cred.key_len, alen = 0;
	uint8_t sig[64], *auth = malloc(cfirst_len + sfirst_len + wo_len + 2);
	unsigned int ml = 0;

	FZ_ASSERT(auth != NULL);
	memcpy(auth, cfirst + gs2_len, cfirst_len - gs2_len);
	alen += cfirst_len - gs2_len;
	auth[alen++] = ',';
	memcpy(auth + alen, sfirst, sfirst_len);
	alen += sfirst_len;
	auth[alen++] = ',';
	memcpy(auth + alen, wo, wo_len);
	alen += wo_len;
	HMAC(md, f->cred.stored_key, (int)h, auth, alen, client_sig, &ml);
	HMAC(md, f->cred.server_key, (int)h, auth, alen, sig, &ml);
	memcpy(expect, "v=", 2);
	EVP_EncodeBlock((uint8_t *)expect + 2, sig, (int)h);
	free(auth);
}

/*
 * The client-final answering sfirst for cfirst (gs2 header gs2_len bytes),
 * with the password of f, into *c: ClientKey from SaltedPassword, the proof
 * ClientKey XOR HMAC(StoredKey, AuthMessage).
 */
static void client_final(int mech, const struct fixed *f, const uint8_t *cfirst, size_t cfirst_len,
			 size_t gs2_len, const uint8_t *sfirst, size_t sfirst_len,
			 struct client_msg *c)
{
	const EVP_MD *md = md_of(mech);
	size_t h = f->cred.key_len, nonce_len, i, k;
	uint8_t ck[64], sig[64], proof[64];
	const uint8_t *comma = memchr(sfirst, ',', sfirst_len);
	unsigned int ml = 0;

	FZ_ASSERT(comma != NULL);
	nonce_len = (size_t)(comma - sfirst) - 2;
	HMAC(md, f->salted, (int)h, (const uint8_t *)"Client Key", 10, ck, &ml);
	memcpy(c->final, "c=", 2);
	k = 2 + (size_t)EVP_EncodeBlock(c->final + 2, cfirst, (int)gs2_len);
	memcpy(c->final + k, ",r=", 3);
	memcpy(c->final + k + 3, sfirst + 2, nonce_len);
	k += 3 + nonce_len;
	signatures(mech, f, cfirst, cfirst_len, gs2_len, sfirst, sfirst_len, c->final, k, c->expect,
		   sig);
	for (i = 0; i < h; i++)
		proof[i] = ck[i] ^ sig[i];
	memcpy(c->final + k, ",p=", 3);
	k += 3 + (size_t)EVP_EncodeBlock(c->final + k + 3, proof, (int)h);
	c->final_len = k;
}

/* ---- checks ---- */

/* The n= value of an accepted client-first, decoded here. */
static void check_user(const uint8_t *m, size_t gs2_len, const char *user)
{
	size_t i = gs2_len + 2, k = 0;

	FZ_ASSERT(m[gs2_len] == 'n' && m[gs2_len + 1] == '=');
	for (; m[i] != ','; i++, k++) {
		char ch = (char)m[i];

		if (m[i] == '=') {
			FZ_ASSERT(m[i + 1] == '2' || m[i + 1] == '3');
			ch = m[i + 1] == '2' ? ',' : '=';
			i += 2;
		}
		FZ_ASSERT(user[k] == ch);
	}
	FZ_ASSERT(user[k] == '\0');
}

/* The gs2 header's length of an accepted client-first: through its second ','. */
static size_t gs2_of(const uint8_t *m, size_t n)
{
	const uint8_t *c1 = memchr(m, ',', n);
	const uint8_t *c2 = c1 ? memchr(c1 + 1, ',', n - (size_t)(c1 + 1 - m)) : NULL;

	FZ_ASSERT(c2 != NULL);
	return (size_t)(c2 + 1 - m);
}

/*
 * A server-first's shape: "r=" cnonce snonce ",s=" salt ",i=" count, the
 * salt 16 bytes and the count the credentials' (MOAT_SCRAM_ITERATIONS for
 * made-up ones).
 */
static void check_sfirst(const uint8_t *sf, size_t n, const uint8_t *cnonce, size_t cn,
			   bool fixed_nonce, const struct moat_scram_cred *cred)
{
	size_t sn = fixed_nonce ? strlen(FIXED_SNONCE) : 32, i, k;
	const uint8_t *s;
	char salt64[B64_LEN(64) + 1], iter[16];

	FZ_ASSERT(n > 2 + cn + sn + 3 && memcmp(sf, "r=", 2) == 0);
	FZ_ASSERT(memcmp(sf + 2, cnonce, cn) == 0);
	if (fixed_nonce)
		FZ_ASSERT(memcmp(sf + 2 + cn, FIXED_SNONCE, sn) == 0);
	for (i = 0; !fixed_nonce && i < sn; i++) {
		uint8_t ch = sf[2 + cn + i];

		FZ_ASSERT((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			  (ch >= '0' && ch <= '9') || ch == '+' || ch == '/');
	}
	s = sf + 2 + cn + sn;
	FZ_ASSERT(memcmp(s, ",s=", 3) == 0);
	s += 3;
	k = (size_t)snprintf(iter, sizeof(iter), ",i=%u",
			     (unsigned)(cred ? cred->iterations : MOAT_SCRAM_ITERATIONS));
	FZ_ASSERT(n - (size_t)(s - sf) == B64_LEN(16) + k);
	FZ_ASSERT(memcmp(s + B64_LEN(16), iter, k) == 0);
	if (cred != NULL) {
		EVP_EncodeBlock((uint8_t *)salt64, cred->salt, (int)cred->salt_len);
		FZ_ASSERT(memcmp(s, salt64, B64_LEN(16)) == 0);
	}
}

/* Starts an exchange the input's way; returns it after its server-first. */
static struct moat_scram *begin(int mech, const uint8_t *first, size_t fn, bool fixed_nonce,
				const struct moat_scram_cred *cred, uint8_t *sf, size_t *sflen)
{
	struct moat_scram *s = NULL;
	char user[MAX_MSG];
	size_t gs2;

	FZ_ASSERT(moat_scram_start(mech, first, fn, &s, user, sizeof(user)) == 0);
	gs2 = gs2_of(first, fn);
	check_user(first, gs2, user);
	if (fixed_nonce)
		FZ_ASSERT(moat_scram_set_nonce_for_test(s, FIXED_SNONCE) == 0);
	FZ_ASSERT(moat_scram_server_first(s, cred, sf, BIG, sflen) == 0);
	{
		/* The client nonce: the r= value of the bare message. */
		const uint8_t *r = first + gs2;
		const uint8_t *end;

		while (!(r[0] == ',' && r[1] == 'r' && r[2] == '='))
			r++;
		r += 3;
		end = memchr(r, ',', fn - (size_t)(r - first));
		check_sfirst(sf, *sflen, r, end ? (size_t)(end - r) : fn - (size_t)(r - first),
			     fixed_nonce, cred);
	}
	return s;
}

/* Runs finish on final and checks what it may answer. */
static int run_finish(struct moat_scram *s, const uint8_t *final, size_t n, bool known,
		      const char *expect)
{
	uint8_t out[256], *in = fz_dup(final, n);
	size_t len = 12345;
	int rc;

	memset(out, 0xA5, sizeof(out));
	rc = moat_scram_finish(s, in, n, out, sizeof(out), &len);
	FZ_ASSERT(rc == 0 || rc == MOAT_EDENIED || rc == MOAT_EPROTOCOL);
	if (rc == 0) {
		FZ_ASSERT(known);
		if (expect != NULL)
			FZ_ASSERT(len == strlen(expect) && memcmp(out, expect, len) == 0);
	} else {
		FZ_ASSERT(len == 12345 && out[0] == 0xA5);
	}
	FZ_ASSERT(moat_scram_finish(s, in, n, out, sizeof(out), &len) == MOAT_EINVAL);
	free(in);
	return rc;
}

/* A correct exchange from client-first first: always succeeds for the known user. */
static void correct_exchange(int mech, const uint8_t *first, size_t fn, bool fixed_nonce, bool known)
{
	const struct fixed *f = fixed_for(mech);
	struct client_msg *c = malloc(sizeof(*c));
	uint8_t *sf = malloc(BIG);
	size_t sflen = 0;
	struct moat_scram *s;
	int rc;

	FZ_ASSERT(c != NULL && sf != NULL);
	s = begin(mech, first, fn, fixed_nonce, known ? &f->cred : NULL, sf, &sflen);
	client_final(mech, f, first, fn, gs2_of(first, fn), sf, sflen, c);
	rc = run_finish(s, c->final, c->final_len, known, c->expect);
	if (c->final_len > MAX_MSG)
		FZ_ASSERT(rc == MOAT_EPROTOCOL);
	else
		FZ_ASSERT(rc == (known ? 0 : MOAT_EDENIED));
	moat_scram_free(s);
	free(sf);
	free(c);
}

/* "n,,n=user,r=" and a printable nonce made of the input's bytes. */
static size_t made_first(const uint8_t *data, size_t size, uint8_t *out)
{
	size_t k = 0, i;

	memcpy(out, "n,,n=user,r=", 12);
	for (i = 0; i < size && i < 200; i++) {
		uint8_t ch = (uint8_t)(0x21 + data[i] % 94);

		out[12 + k++] = ch == ',' ? '.' : ch;
	}
	if (k == 0)
		out[12 + k++] = 'x';
	return 12 + k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *first, *final, *nul;
	size_t fn, fin;
	int mech;
	bool fixed_nonce;
	int who;

	if (size < 1)
		return 0;
	mech = data[0] & 1 ? MOAT_SCRAM_SHA512 : MOAT_SCRAM_SHA256;
	fixed_nonce = (data[0] & 2) != 0;
	first = data + 1;
	nul = memchr(first, 0, size - 1);
	fn = nul ? (size_t)(nul - first) : size - 1;
	final = nul ? nul + 1 : first + fn;
	fin = nul ? size - 1 - fn - 1 : 0;

	{
		struct moat_scram *s = (struct moat_scram *)&s;
		uint8_t *in = fz_dup(first, fn);
		char user[64] = "keep";
		int rc = moat_scram_start(mech, in, fn, &s, user, sizeof(user));

		FZ_ASSERT(rc == 0 || rc == MOAT_EPROTOCOL);
		if (rc != 0) {
			uint8_t made[256];
			size_t mn;

			FZ_ASSERT(s == (struct moat_scram *)&s && strcmp(user, "keep") == 0);
			free(in);
			mn = made_first(data + 1, size - 1, made);
			correct_exchange(mech, made, mn, fixed_nonce, true);
			correct_exchange(mech, made, mn, fixed_nonce, false);
			return 0;
		}
		moat_scram_free(s);
		free(in);
	}

	/* The input's client-final, for the known user and an unknown one. */
	for (who = 0; who < 2; who++) {
		const struct fixed *f = fixed_for(mech);
		uint8_t *sf = malloc(BIG);
		struct client_msg *c = malloc(sizeof(*c));
		struct moat_scram *s;
		const uint8_t *comma;
		uint8_t sig[64];
		size_t sflen = 0;

		FZ_ASSERT(sf != NULL && c != NULL);
		s = begin(mech, first, fn, fixed_nonce, who == 0 ? &f->cred : NULL, sf, &sflen);
		/* What the input's final gets back if it happens to be right. */
		comma = fin ? memrchr(final, ',', fin) : NULL;
		signatures(mech, f, first, fn, gs2_of(first, fn), sf, sflen, final,
			   comma ? (size_t)(comma - final) : 0, c->expect, sig);
		run_finish(s, final, fin, who == 0, c->expect);
		moat_scram_free(s);
		free(c);
		free(sf);
		correct_exchange(mech, first, fn, fixed_nonce, who == 0);
	}
	return 0;
}
