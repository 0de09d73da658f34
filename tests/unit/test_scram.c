/*
 * test_scram.c - unit tests for the SCRAM server side (src/security/scram.c).
 *
 * Covers: the RFC 7677 SCRAM-SHA-256 example reproduced byte for byte
 * (credentials derived from "pencil", the server nonce injected through
 * moat_scram_set_nonce_for_test); SCRAM-SHA-512 and SHA-256 round trips
 * against a client written here from RFC 5802 section 3 (escaped names, an
 * authzid equal to the user, "y,,", extensions where the grammar allows
 * them); every kind of malformed client-first and client-final refused with
 * MOAT_EPROTOCOL and nothing written; wrong proofs MOAT_EDENIED; an unknown
 * user answered with a server-first of the same shape as a real one, the
 * same salt on every probe, and denied at the end even with a proof for the
 * password a real user has; one finish per exchange; small buffers; the
 * derive arguments.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/error.h"
#include "security/scram.h"

/* RFC 7677 section 3. */
#define RFC_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_NONCE "rOprNGfwEbeRWgbNEkqO" RFC_SNONCE
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_FINAL "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* ---- helpers ---- */

static size_t b64dec(const char *in, uint8_t *out)
{
	size_t n = strlen(in), pads = 0;
	int got = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);

	assert_true(got >= 0);
	while (pads < n && in[n - 1 - pads] == '=')
		pads++;
	return (size_t)got - pads;
}

static void derive(int mech, const char *password, const uint8_t *salt, size_t salt_len,
		   struct moat_scram_cred *cred)
{
	assert_int_equal(moat_scram_derive(mech, (const uint8_t *)password, strlen(password), salt,
					   salt_len, 4096, cred),
			 0);
}

/* The RFC 7677 user's credentials. */
static void rfc_cred(struct moat_scram_cred *cred)
{
	uint8_t salt[64];
	size_t n = b64dec(RFC_SALT, salt);

	assert_int_equal(n, 16);
	derive(MOAT_SCRAM_SHA256, "pencil", salt, n, cred);
}

static int start(int mech, const char *first, struct moat_scram **s, char *user, size_t cap)
{
	return moat_scram_start(mech, (const uint8_t *)first, strlen(first), s, user, cap);
}

/* Starts an exchange and writes the server-first into sf (NUL-terminated). */
static struct moat_scram *begin(int mech, const char *first, const struct moat_scram_cred *cred,
				const char *snonce, char *sf, size_t cap)
{
	struct moat_scram *s = NULL;
	char user[256];
	size_t len = 0;

	assert_int_equal(start(mech, first, &s, user, sizeof(user)), 0);
	assert_non_null(s);
	if (snonce != NULL)
		assert_int_equal(moat_scram_set_nonce_for_test(s, snonce), 0);
	assert_int_equal(moat_scram_server_first(s, cred, (uint8_t *)sf, cap - 1, &len), 0);
	sf[len] = '\0';
	return s;
}

static int finish(struct moat_scram *s, const char *final, char *out, size_t cap)
{
	size_t len = 0;
	int rc = moat_scram_finish(s, (const uint8_t *)final, strlen(final), (uint8_t *)out,
				   cap - 1, &len);

	out[rc == 0 ? len : 0] = '\0';
	return rc;
}

/* An attribute's value in a server-first-message, NUL-terminated into out. */
static void attr(const char *msg, char name, char *out, size_t cap)
{
	const char *p = msg;
	size_t n;

	while (!(p[0] == name && p[1] == '=')) {
		p = strchr(p, ',');
		assert_non_null(p);
		p++;
	}
	p += 2;
	n = strcspn(p, ",");
	assert_true(n < cap);
	memcpy(out, p, n);
	out[n] = '\0';
}

/*
 * The client side of RFC 5802 section 3: the client-final-message answering
 * server_first for client_first (whose gs2 header is gs2_len bytes), with
 * extension ext (NULL for none) before the proof, and the server-final it
 * must get back.
 */
static void client_final(int mech, const char *password, const char *client_first,
			 size_t gs2_len, const char *server_first, const char *ext, char *final,
			 char *expect)
{
	const EVP_MD *md = mech == MOAT_SCRAM_SHA256 ? EVP_sha256() : EVP_sha512();
	size_t h = (size_t)EVP_MD_get_size(md), salt_len, i;
	uint8_t salt[64], salted[64], ck[64], stored[64], sk[64], sig[64], proof[64];
	char nonce[512], s64[128], it[16], gs2[64], auth[2048], enc[128];
	unsigned int ml;

	attr(server_first, 'r', nonce, sizeof(nonce));
	attr(server_first, 's', s64, sizeof(s64));
	attr(server_first, 'i', it, sizeof(it));
	salt_len = b64dec(s64, salt);
	assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
					   atoi(it), md, (int)h, salted),
			 1);
	HMAC(md, salted, (int)h, (const uint8_t *)"Client Key", 10, ck, &ml);
	EVP_Digest(ck, h, stored, &ml, md, NULL);
	HMAC(md, salted, (int)h, (const uint8_t *)"Server Key", 10, sk, &ml);
	EVP_EncodeBlock((uint8_t *)gs2, (const uint8_t *)client_first, (int)gs2_len);
	sprintf(final, "c=%s,r=%s%s%s", gs2, nonce, ext ? "," : "", ext ? ext : "");
	snprintf(auth, sizeof(auth), "%s,%s,%s", client_first + gs2_len, server_first, final);
	HMAC(md, stored, (int)h, (const uint8_t *)auth, strlen(auth), sig, &ml);
	for (i = 0; i < h; i++)
		proof[i] = ck[i] ^ sig[i];
	EVP_EncodeBlock((uint8_t *)enc, proof, (int)h);
	strcat(final, ",p=");
	strcat(final, enc);
	HMAC(md, sk, (int)h, (const uint8_t *)auth, strlen(auth), sig, &ml);
	EVP_EncodeBlock((uint8_t *)enc, sig, (int)h);
	sprintf(expect, "v=%s", enc);
}

/* ---- the RFC 7677 example ---- */

static void test_mech(void **state)
{
	(void)state;
	assert_int_equal(moat_scram_mech((const uint8_t *)"SCRAM-SHA-256", 13), MOAT_SCRAM_SHA256);
	assert_int_equal(moat_scram_mech((const uint8_t *)"SCRAM-SHA-512", 13), MOAT_SCRAM_SHA512);
	assert_int_equal(moat_scram_mech((const uint8_t *)"SCRAM-SHA-1", 11), 0);
	assert_int_equal(moat_scram_mech((const uint8_t *)"scram-sha-256", 13), 0);
	assert_int_equal(moat_scram_mech((const uint8_t *)"SCRAM-SHA-2560", 14), 0);
	assert_int_equal(moat_scram_mech((const uint8_t *)"SCRAM-SHA-256", 12), 0);
	assert_int_equal(moat_scram_mech(NULL, 0), 0);
}

static void test_rfc7677(void **state)
{
	struct moat_scram_cred cred;
	struct moat_scram *s;
	char sf[512], out[256], user[16];

	(void)state;
	rfc_cred(&cred);
	assert_int_equal(cred.key_len, 32);
	assert_int_equal(cred.iterations, 4096);
	assert_int_equal(start(MOAT_SCRAM_SHA256, RFC_FIRST, &s, user, sizeof(user)), 0);
	assert_string_equal(user, "user");
	moat_scram_free(s);

	s = begin(MOAT_SCRAM_SHA256, RFC_FIRST, &cred, RFC_SNONCE, sf, sizeof(sf));
	assert_string_equal(sf, RFC_SERVER_FIRST);
	assert_int_equal(finish(s, RFC_FINAL, out, sizeof(out)), 0);
	assert_string_equal(out, RFC_SERVER_FINAL);
	/* One try per exchange. */
	assert_int_equal(finish(s, RFC_FINAL, out, sizeof(out)), MOAT_EINVAL);
	moat_scram_free(s);

	/* The client written here agrees with the RFC too. */
	{
		char final[512], expect[128];

		client_final(MOAT_SCRAM_SHA256, "pencil", RFC_FIRST, 3, RFC_SERVER_FIRST, NULL,
			     final, expect);
		assert_string_equal(final, RFC_FINAL);
		assert_string_equal(expect, RFC_SERVER_FINAL);
	}
}

/* ---- round trips ---- */

/* A whole exchange for client_first; returns finish's answer. */
static int exchange(int mech, const char *first, size_t gs2_len, const char *ext,
		    const char *password, const char *expect_user)
{
	struct moat_scram_cred cred;
	struct moat_scram *s = NULL;
	char sf[1024], final[2048], expect[160], out[160], user[256];
	size_t len = 0;
	int rc;

	derive(mech, "secret", (const uint8_t *)"0123456789abcdef", 16, &cred);
	assert_int_equal(start(mech, first, &s, user, sizeof(user)), 0);
	assert_string_equal(user, expect_user);
	assert_int_equal(moat_scram_server_first(s, &cred, (uint8_t *)sf, sizeof(sf) - 1, &len), 0);
	sf[len] = '\0';
	client_final(mech, password, first, gs2_len, sf, ext, final, expect);
	rc = finish(s, final, out, sizeof(out));
	if (rc == 0)
		assert_string_equal(out, expect);
	moat_scram_free(s);
	return rc;
}

static void test_round_trips(void **state)
{
	int mechs[2] = {MOAT_SCRAM_SHA256, MOAT_SCRAM_SHA512}, i;

	(void)state;
	for (i = 0; i < 2; i++) {
		int m = mechs[i];

		assert_int_equal(exchange(m, "n,,n=alice,r=abc", 3, NULL, "secret", "alice"), 0);
		assert_int_equal(exchange(m, "y,,n=alice,r=abc", 3, NULL, "secret", "alice"), 0);
		assert_int_equal(exchange(m, "n,a=alice,n=alice,r=x", 10, NULL, "secret", "alice"), 0);
		assert_int_equal(exchange(m, "n,,n=a=2Cb=3Dc,r=!~", 3, NULL, "secret", "a,b=c"), 0);
		assert_int_equal(exchange(m, "n,,n=\xc3\xa9t\xc3\xa9,r=q", 3, NULL, "secret",
					  "\xc3\xa9t\xc3\xa9"),
				 0);
		/* Extensions where the grammar puts them, ignored. */
		assert_int_equal(exchange(m, "n,,n=alice,r=abc,x=1,Q=a=b", 3, "z=ext", "secret",
					  "alice"),
				 0);
		/* A wrong password: the same shape, denied. */
		assert_int_equal(exchange(m, "n,,n=alice,r=abc", 3, NULL, "Secret", "alice"),
				 MOAT_EDENIED);
	}
}

static void test_random_nonce(void **state)
{
	struct moat_scram_cred cred;
	struct moat_scram *a, *b;
	char sa[512], sb[512], n1[128], n2[128];

	(void)state;
	rfc_cred(&cred);
	a = begin(MOAT_SCRAM_SHA256, RFC_FIRST, &cred, NULL, sa, sizeof(sa));
	b = begin(MOAT_SCRAM_SHA256, RFC_FIRST, &cred, NULL, sb, sizeof(sb));
	attr(sa, 'r', n1, sizeof(n1));
	attr(sb, 'r', n2, sizeof(n2));
	/* The client's nonce then 24 random bytes in base64 (32 characters). */
	assert_int_equal(strlen(n1), 20 + 32);
	assert_memory_equal(n1, "rOprNGfwEbeRWgbNEkqO", 20);
	assert_string_not_equal(n1, n2);
	assert_string_equal(strchr(sa, ','), ",s=" RFC_SALT ",i=4096");
	moat_scram_free(a);
	moat_scram_free(b);
}

/* ---- malformed messages ---- */

static void expect_first_refused(const char *m, size_t n)
{
	struct moat_scram *s = (struct moat_scram *)&s;
	char user[8] = "keep";

	if (moat_scram_start(MOAT_SCRAM_SHA256, (const uint8_t *)m, n, &s, user, sizeof(user)) !=
	    MOAT_EPROTOCOL)
		fail_msg("client-first not refused: \"%.*s\"", (int)n, m);
	assert_ptr_equal(s, (struct moat_scram *)&s);
	assert_string_equal(user, "keep");
}

static void test_malformed_first(void **state)
{
	static const char *bad[] = {
		"",
		"n",
		"n,",
		"n,,",
		"p=tls-unique,,n=user,r=abc", /* channel binding */
		"p,,n=user,r=abc",
		"x,,n=user,r=abc",
		"N,,n=user,r=abc",
		"n,n=user,r=abc",             /* no authzid field */
		"n,a=other,n=user,r=abc",     /* authzid of someone else */
		"n,a=,n=user,r=abc",
		"n,a=User,n=user,r=abc",
		"n,a=u=2Cser,n=u,ser,r=abc",
		"n,,m=ext,n=user,r=abc",      /* mandatory extension */
		"n,,n=user,r=abc,m=ext",
		"n,,r=abc,n=user",            /* order */
		"n,,n=,r=abc",                /* empty name */
		"n,,n=us=2Xer,r=abc",         /* bad escapes */
		"n,,n=us=2cer,r=abc",
		"n,,n=user=,r=abc",
		"n,,n=user=3,r=abc",
		"n,,n=user=3D=,r=abc",
		"n,,n=user",                  /* no nonce */
		"n,,n=user,",
		"n,,n=user,r=",
		"n,,n=user,r",
		"n,,n=user,r=a b",            /* nonce not printable */
		"n,,n=user,r=ab\x7f",
		"n,,n=user,r=\xc3\xa9",
		"n,,n=user,r=abc,",           /* bad extensions */
		"n,,n=user,r=abc,x",
		"n,,n=user,r=abc,x=",
		"n,,n=user,r=abc,1=x",
		"n,,n=user,r=abc,xy=1",
		"n,,n=user,r=abc,r=def",
		"n,,n=user,r=abc,n=bob",
		"n,,n=user,r=abc,p=x",
		"n,,n=user,r=abc,,x=1",
		" n,,n=user,r=abc",
		"n,,n=user,r=abc\n",
		"n,,n=\xff,r=abc",            /* not UTF-8 */
		"n,,n=\xc0\xaf,r=abc",
		"n,,n=userlongerthan7,r=abc", /* does not fit the caller's buffer */
	};
	static const char nul[] = "n,,n=us\0er,r=abc";
	char big[4200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_first_refused(bad[i], strlen(bad[i]));
	expect_first_refused(nul, sizeof(nul) - 1);
	expect_first_refused("n,,n=user,r=abc", 0);
	/* 4 KiB is the most read. */
	memcpy(big, "n,,n=u,r=", 9);
	memset(big + 9, 'x', sizeof(big) - 9);
	expect_first_refused(big, 4097);
	{
		struct moat_scram *s;
		char user[8];

		assert_int_equal(moat_scram_start(MOAT_SCRAM_SHA256, (const uint8_t *)big, 4096, &s,
						  user, sizeof(user)),
				 0);
		assert_string_equal(user, "u");
		moat_scram_free(s);
		/* Arguments: the caller's fault. */
		assert_int_equal(moat_scram_start(1, (const uint8_t *)RFC_FIRST, strlen(RFC_FIRST),
						  &s, user, sizeof(user)),
				 MOAT_EINVAL);
		assert_int_equal(moat_scram_start(MOAT_SCRAM_SHA256, (const uint8_t *)RFC_FIRST,
						  strlen(RFC_FIRST), &s, user, 0),
				 MOAT_EINVAL);
		/* "user" needs 5 bytes. */
		assert_int_equal(moat_scram_start(MOAT_SCRAM_SHA256, (const uint8_t *)RFC_FIRST,
						  strlen(RFC_FIRST), &s, user, 4),
				 MOAT_EPROTOCOL);
		assert_int_equal(moat_scram_start(MOAT_SCRAM_SHA256, (const uint8_t *)RFC_FIRST,
						  strlen(RFC_FIRST), &s, user, 5),
				 0);
		moat_scram_free(s);
	}
}

/* Runs the RFC exchange up to the client-final m (n bytes); returns finish's answer. */
static int rfc_finish(const char *m, size_t n)
{
	struct moat_scram_cred cred;
	struct moat_scram *s;
	char sf[512];
	uint8_t out[128] = "keep";
	size_t len = 7;
	int rc;

	rfc_cred(&cred);
	s = begin(MOAT_SCRAM_SHA256, RFC_FIRST, &cred, RFC_SNONCE, sf, sizeof(sf));
	rc = moat_scram_finish(s, (const uint8_t *)m, n, out, sizeof(out), &len);
	if (rc != 0) {
		assert_int_equal(len, 7);
		assert_string_equal((char *)out, "keep");
	}
	/* Whatever the answer, no second try. */
	assert_int_equal(moat_scram_finish(s, (const uint8_t *)RFC_FINAL, strlen(RFC_FINAL), out,
					   sizeof(out), &len),
			 MOAT_EINVAL);
	moat_scram_free(s);
	return rc;
}

static void expect_final(const char *m, int want)
{
	int rc = rfc_finish(m, strlen(m));

	if (rc != want)
		fail_msg("client-final \"%s\": %d, expected %d", m, rc, want);
}

static void test_malformed_final(void **state)
{
	static const char *bad[] = {
		"",
		",",
		"p=" RFC_PROOF,
		"c=biws,p=" RFC_PROOF,
		"c=eSws,r=" RFC_NONCE ",p=" RFC_PROOF,         /* c= not our gs2 header */
		"c=biw=,r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=biwsbiws,r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=,r=" RFC_NONCE ",p=" RFC_PROOF,
		"r=" RFC_NONCE ",c=biws,p=" RFC_PROOF,         /* order */
		"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=" RFC_PROOF,  /* the client's nonce only */
		"c=biws,r=" RFC_NONCE "x,p=" RFC_PROOF,        /* not our nonce */
		"c=biws,r=" RFC_NONCE "%,p=" RFC_PROOF,
		"c=biws,r=,p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",p=",                   /* proofs */
		"c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndV",
		"c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
		"c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ==",
		"c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=",
		"c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7And=Q=",
		"c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7An*VQ=",
		"c=biws,r=" RFC_NONCE ",p= HzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",P=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",",     /* after the proof */
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",x=1",
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF "\n",
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",,p=" RFC_PROOF,        /* extensions */
		"c=biws,r=" RFC_NONCE ",m=1,p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",c=biws,p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",x=,p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",xx=1,p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",x=\xff,p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",v=1",
		"C=biws,r=" RFC_NONCE ",p=" RFC_PROOF,
		" c=biws,r=" RFC_NONCE ",p=" RFC_PROOF,
	};
	static const char nul[] = "c=biws,r=" RFC_NONCE ",x=\0,p=" RFC_PROOF;
	char big[4200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_final(bad[i], MOAT_EPROTOCOL);
	assert_int_equal(rfc_finish(nul, sizeof(nul) - 1), MOAT_EPROTOCOL);
	assert_int_equal(rfc_finish(RFC_FINAL, 0), MOAT_EPROTOCOL);
	/* An extension is fine, but the proof then covers it: this one is the RFC's. */
	expect_final("c=biws,r=" RFC_NONCE ",x=1,p=" RFC_PROOF, MOAT_EDENIED);
	/* Over 4 KiB, however it ends. */
	snprintf(big, sizeof(big), "c=biws,r=%s,x=", RFC_NONCE);
	memset(big + strlen(big), 'a', sizeof(big) - strlen(big));
	memcpy(big + 4097 - strlen(",p=" RFC_PROOF), ",p=" RFC_PROOF, strlen(",p=" RFC_PROOF));
	assert_int_equal(rfc_finish(big, 4097), MOAT_EPROTOCOL);
	/* The well-formed one still passes through the same helper. */
	expect_final(RFC_FINAL, 0);
}

static void test_wrong_proof(void **state)
{
	char proof[] = RFC_PROOF, m[256];
	size_t i;

	(void)state;
	/* Any one character changed (keeping the base64 canonical): denied. */
	for (i = 0; i + 2 < strlen(proof); i += 7) {
		strcpy(proof, RFC_PROOF);
		proof[i] = proof[i] == 'A' ? 'B' : 'A';
		snprintf(m, sizeof(m), "c=biws,r=%s,p=%s", RFC_NONCE, proof);
		expect_final(m, MOAT_EDENIED);
	}
	expect_final("c=biws,r=" RFC_NONCE ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		     MOAT_EDENIED);
}

/* ---- unknown users ---- */

static void test_unknown_user(void **state)
{
	struct moat_scram_cred cred;
	struct moat_scram *s;
	char real[512], fake[512], again[512], other[512], a[128], b[128];
	char final[1024], expect[128], out[128];
	uint8_t salt[MOAT_SCRAM_SALT_LEN];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(salt); i++)
		salt[i] = (uint8_t)(i * 7);
	assert_int_equal(moat_scram_derive(MOAT_SCRAM_SHA256, (const uint8_t *)"pencil", 6, salt,
					   sizeof(salt), MOAT_SCRAM_ITERATIONS, &cred),
			 0);
	s = begin(MOAT_SCRAM_SHA256, "n,,n=user,r=abc", &cred, NULL, real, sizeof(real));
	moat_scram_free(s);
	s = begin(MOAT_SCRAM_SHA256, "n,,n=nobody,r=abc", NULL, NULL, fake, sizeof(fake));

	/* The same shape: nonce, salt and iteration count alike in length. */
	assert_int_equal(strlen(real), strlen(fake));
	attr(real, 's', a, sizeof(a));
	attr(fake, 's', b, sizeof(b));
	assert_int_equal(strlen(a), strlen(b));
	snprintf(a, sizeof(a), ",i=%u", (unsigned)MOAT_SCRAM_ITERATIONS);
	assert_string_equal(strchr(strchr(real, ',') + 1, ','), a);
	assert_string_equal(strchr(strchr(fake, ',') + 1, ','), a);
	assert_int_equal(strlen(b), 24); /* MOAT_SCRAM_SALT_LEN bytes */

	/* Even the right password for a real user's name gets nowhere. */
	client_final(MOAT_SCRAM_SHA256, "pencil", "n,,n=nobody,r=abc", 3, fake, NULL, final,
		     expect);
	assert_int_equal(finish(s, final, out, sizeof(out)), MOAT_EDENIED);
	moat_scram_free(s);

	/* The same salt on every probe, another for another name or mechanism. */
	s = begin(MOAT_SCRAM_SHA256, "n,,n=nobody,r=xyz", NULL, NULL, again, sizeof(again));
	moat_scram_free(s);
	attr(again, 's', a, sizeof(a));
	assert_string_equal(a, b);
	s = begin(MOAT_SCRAM_SHA256, "n,,n=nobody2,r=xyz", NULL, NULL, other, sizeof(other));
	moat_scram_free(s);
	attr(other, 's', a, sizeof(a));
	assert_string_not_equal(a, b);
	s = begin(MOAT_SCRAM_SHA512, "n,,n=nobody,r=xyz", NULL, NULL, other, sizeof(other));
	moat_scram_free(s);
	attr(other, 's', a, sizeof(a));
	assert_string_not_equal(a, b);

	/* A malformed final is still a protocol error, as for a real user. */
	s = begin(MOAT_SCRAM_SHA256, "n,,n=nobody,r=abc", NULL, NULL, fake, sizeof(fake));
	assert_int_equal(finish(s, "c=biws", out, sizeof(out)), MOAT_EPROTOCOL);
	moat_scram_free(s);
}

/* ---- the caller's side ---- */

static void test_buffers_and_order(void **state)
{
	struct moat_scram_cred cred;
	struct moat_scram *s;
	char user[16], sf[512], out[128];
	size_t len = 0;

	(void)state;
	rfc_cred(&cred);
	assert_int_equal(start(MOAT_SCRAM_SHA256, RFC_FIRST, &s, user, sizeof(user)), 0);
	assert_int_equal(moat_scram_set_nonce_for_test(s, RFC_SNONCE), 0);
	/* finish before server_first */
	assert_int_equal(moat_scram_finish(s, (const uint8_t *)RFC_FINAL, strlen(RFC_FINAL),
					   (uint8_t *)out, sizeof(out), &len),
			 MOAT_EINVAL);
	/* too small a buffer, then the right one */
	assert_int_equal(moat_scram_server_first(s, &cred, (uint8_t *)sf,
						 strlen(RFC_SERVER_FIRST) - 1, &len),
			 MOAT_ENOSPC);
	assert_int_equal(moat_scram_server_first(s, &cred, (uint8_t *)sf, strlen(RFC_SERVER_FIRST),
						 &len),
			 0);
	assert_int_equal(len, strlen(RFC_SERVER_FIRST));
	assert_memory_equal(sf, RFC_SERVER_FIRST, len);
	assert_int_equal(moat_scram_server_first(s, &cred, (uint8_t *)sf, sizeof(sf), &len),
			 MOAT_EINVAL);
	assert_int_equal(moat_scram_finish(s, (const uint8_t *)RFC_FINAL, strlen(RFC_FINAL),
					   (uint8_t *)out, strlen(RFC_SERVER_FINAL) - 1, &len),
			 MOAT_ENOSPC);
	assert_int_equal(moat_scram_finish(s, (const uint8_t *)RFC_FINAL, strlen(RFC_FINAL),
					   (uint8_t *)out, strlen(RFC_SERVER_FINAL), &len),
			 0);
	assert_memory_equal(out, RFC_SERVER_FINAL, len);
	moat_scram_free(s);
	moat_scram_free(NULL);

	/* Credentials that do not fit the mechanism. */
	assert_int_equal(start(MOAT_SCRAM_SHA512, RFC_FIRST, &s, user, sizeof(user)), 0);
	assert_int_equal(moat_scram_server_first(s, &cred, (uint8_t *)sf, sizeof(sf), &len),
			 MOAT_EINVAL);
	moat_scram_free(s);

	/* The test hook's own checks. */
	assert_int_equal(start(MOAT_SCRAM_SHA256, RFC_FIRST, &s, user, sizeof(user)), 0);
	assert_int_equal(moat_scram_set_nonce_for_test(s, ""), MOAT_EINVAL);
	assert_int_equal(moat_scram_set_nonce_for_test(s, "a,b"), MOAT_EINVAL);
	assert_int_equal(moat_scram_set_nonce_for_test(s, "a b"), MOAT_EINVAL);
	assert_int_equal(moat_scram_set_nonce_for_test(
				 s, "0123456789012345678901234567890123456789012345678901234567890123X"),
			 MOAT_EINVAL);
	moat_scram_free(s);
}

static void test_derive(void **state)
{
	struct moat_scram_cred cred, keep;
	const uint8_t salt[4] = {1, 2, 3, 4};
	uint8_t big[65] = {0};

	(void)state;
	memset(&keep, 0x5a, sizeof(keep));
	cred = keep;
	assert_int_equal(moat_scram_derive(1, (const uint8_t *)"x", 1, salt, 4, 1, &cred),
			 MOAT_EINVAL);
	assert_int_equal(moat_scram_derive(256, (const uint8_t *)"x", 1, salt, 0, 1, &cred),
			 MOAT_EINVAL);
	assert_int_equal(moat_scram_derive(256, (const uint8_t *)"x", 1, big, 65, 1, &cred),
			 MOAT_EINVAL);
	assert_int_equal(moat_scram_derive(256, (const uint8_t *)"x", 1, salt, 4, 0, &cred),
			 MOAT_EINVAL);
	assert_int_equal(moat_scram_derive(256, NULL, 1, salt, 4, 1, &cred), MOAT_EINVAL);
	assert_memory_equal(&cred, &keep, sizeof(cred));
	/* An empty password is the caller's policy, not ours. */
	assert_int_equal(moat_scram_derive(512, NULL, 0, big, 64, 2, &cred), 0);
	assert_int_equal(cred.key_len, 64);
	assert_int_equal(cred.salt_len, 64);
	assert_int_equal(cred.iterations, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mech),
		cmocka_unit_test(test_rfc7677),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_random_nonce),
		cmocka_unit_test(test_malformed_first),
		cmocka_unit_test(test_malformed_final),
		cmocka_unit_test(test_wrong_proof),
		cmocka_unit_test(test_unknown_user),
		cmocka_unit_test(test_buffers_and_order),
		cmocka_unit_test(test_derive),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
