/*
 * test_passwd.c - unit tests for password files (src/security/passwd.c).
 *
 * Covers: entries written by Debian's mosquitto_passwd 2.0.11 ($7$ with 101
 * and 1000 iterations, $6$ written with -H sha512, a user name with a space,
 * a password with ':' and one in UTF-8, an empty password), embedded as
 * fixtures and checked against the passwords they were made from; an
 * Argon2id string made by libsodium (cheap parameters, so the test is
 * quick); SCRAM-SHA-256/512 entries computed independently in Python
 * (hashlib.pbkdf2_hmac + hmac, RFC 7677's salt); wrong and unknown-user
 * refusals; every class of malformed file with its line number; the cost of
 * the dummy check; fingerprints; hash/verify round trips for each writable
 * algorithm; moat_passwd_scram; editing (add, replace, delete, create) that
 * keeps the other lines byte for byte, atomically and with mode 0600; and
 * loading from disk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "security/passwd.h"
#include "security/scram.h"

/* mosquitto_passwd -c -b fx alice 'correct horse'; -H sha512 -b fx bob hunter2; ... */
#define MOSQ_ALICE                                                                                 \
	"alice:$7$101$qpZPdBHy0uWrC9uK$Qqnurot+c8fL42/g54c2PtA/TtAevk0Xzy0NYEk0eNAMHQvvSMF7x7itQQO5" \
	"n8F+Ugjv4igVBmuFhWhJKsuYXQ==\n"
#define MOSQ_BOB                                                                                   \
	"bob:$6$Ky3AB0x3fUf9Rd7L$igEwy7mPsxGZ/95rAaQOODr9HO8hZQDcU5UZXcrjiQcb1GL86pwWmh1vPhmEPe0ikL" \
	"BGmZWN/V/LA7mLXG8cTQ==\n"
#define MOSQ_CAROL                                                                                 \
	"carol:$7$1000$zS5g8k7Z95qQyZYK$rFS8c6fuZQz2nQRusTVwbWxtNNOn9ZVHwwKbzQWqEvmAyoRmxilZwrwP2wX" \
	"BBQoAJS0cPXs0aVrPnA8iq/e7gQ==\n"
#define MOSQ_DAVE                                                                                  \
	"dave smith:$7$101$llWCY+Vr81R8TKoy$hkJAgBhPzt/UME1jNz5vmtk517P3DbVilaCfRGJP0awQbz/4EPwnuu4" \
	"MKnCbDtoqvBdT1SeqKOibbI5u8E7hzg==\n"
#define MOSQ_ERIN                                                                                  \
	"erin:$6$2VypPbNq6hfrgX1D$Sjlrg1SP6Th0un546UUokqMTphTIgkWSwyC5RPhSR1QDNDorkJYnLAG/9LIjibIDjz" \
	"CSGWgOMqyg+ZJjfOBFTA==\n"
#define MOSQ_FILE MOSQ_ALICE MOSQ_BOB MOSQ_CAROL MOSQ_DAVE MOSQ_ERIN

/* libsodium crypto_pwhash_str("argon pass", t=1, m=8 KiB). */
#define ARGON_HASH                                                                                 \
	"$argon2id$v=19$m=8,t=1,p=1$6q+2WtJKBrgldUrX9sEQsA$sJ7DH/mLYkhw4vwewB1OyJ+j31f6wpWOSoqVD7DJP" \
	"KY"

/* Python: password "pencil", RFC 7677's salt, 4096 iterations. */
#define SCRAM256_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define SCRAM256_STORED "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define SCRAM256 "$scram-sha-256$4096$" SCRAM256_SALT "$" SCRAM256_STORED \
	"$wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
/* Python: password "pencil512", salt "0123456789abcdef", 4096 iterations. */
#define SCRAM512                                                                                   \
	"$scram-sha-512$4096$MDEyMzQ1Njc4OWFiY2RlZg==$r1u3FCnNR+z4WlDT4DK3SWZ61KHqOPRfhRTmwcpX7BkiGdl" \
	"pVEfYh602+GLsph28HLb2sRZHKQBQvs6fZoFdfg==$zhDDolA2w0GRx1kx1hKn81LbM8yNRTkjKWu0p1ixURrObt/Yy" \
	"ec2u0i2F/ZCGQdS2VoGdszfDna1JwHS1qY4Kg=="

static char err[1024];

static struct moat_passwd *parse(const char *text)
{
	struct moat_passwd *p = NULL;
	int rc = moat_passwd_parse(text, strlen(text), "pw", &p, err, sizeof(err));

	if (rc != 0)
		fail_msg("parse failed: %s", err);
	assert_non_null(p);
	return p;
}

static int check(const struct moat_passwd *p, const char *user, const char *pw,
		 enum moat_pw_algo *algo)
{
	return moat_passwd_check(p, user, (const uint8_t *)pw, strlen(pw), algo);
}

/* ---- formats ---- */

static void test_mosquitto_fixtures(void **state)
{
	struct moat_passwd *p = parse(MOSQ_FILE);
	enum moat_pw_algo algo = MOAT_PW_ARGON2ID;

	(void)state;
	assert_int_equal(moat_passwd_count(p), 5);
	assert_int_equal(check(p, "alice", "correct horse", &algo), 0);
	assert_int_equal(algo, MOAT_PW_PBKDF2_SHA512);
	assert_int_equal(check(p, "bob", "hunter2", &algo), 0);
	assert_int_equal(algo, MOAT_PW_SHA512);
	assert_int_equal(check(p, "carol", "p@ss:w0rd", NULL), 0);
	assert_int_equal(check(p, "dave smith", "\xc3\xbcn\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9 pass",
			       NULL), 0);
	assert_int_equal(check(p, "erin", "", NULL), 0);

	/* Wrong passwords, near misses, other users' passwords. */
	assert_int_equal(check(p, "alice", "correct hors", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "alice", "correct horse ", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "alice", "Correct horse", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "alice", "", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "alice", "hunter2", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "bob", "hunter3", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "bob", "", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "carol", "p@ss", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "erin", "x", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "dave", "\xc3\xbcn\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9 pass", NULL),
			 MOAT_EDENIED);
	/*
	 * A password with a NUL byte is refused: HMAC pads keys with zeros, so
	 * PBKDF2 alone would take "correct horse\0" for "correct horse".
	 */
	assert_int_equal(moat_passwd_check(p, "alice", (const uint8_t *)"correct horse\0", 14,
					   NULL), MOAT_EDENIED);
	assert_int_equal(moat_passwd_check(p, "bob", (const uint8_t *)"hunter2\0", 8, NULL),
			 MOAT_EDENIED);
	assert_int_equal(moat_passwd_check(p, "bob", (const uint8_t *)"hunter2\0", 7, NULL), 0);
	moat_passwd_free(p);
}

static void test_argon2_fixture(void **state)
{
	struct moat_passwd *p = parse("# libsodium\nann:" ARGON_HASH "\n");
	enum moat_pw_algo algo = MOAT_PW_SHA512;

	(void)state;
	assert_int_equal(check(p, "ann", "argon pass", &algo), 0);
	assert_int_equal(algo, MOAT_PW_ARGON2ID);
	assert_int_equal(check(p, "ann", "argon pas", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "ann", "argon passs", NULL), MOAT_EDENIED);
	moat_passwd_free(p);
}

static void test_scram_fixtures(void **state)
{
	struct moat_passwd *p = parse("s256:" SCRAM256 "\ns512:" SCRAM512 "\nbob:" ARGON_HASH "\n");
	struct moat_scram_cred c, d;
	enum moat_pw_algo algo = MOAT_PW_ARGON2ID;
	uint8_t stored[64], salt[64];
	int n;

	(void)state;
	assert_int_equal(check(p, "s256", "pencil", &algo), 0);
	assert_int_equal(algo, MOAT_PW_SCRAM_SHA256);
	assert_int_equal(check(p, "s512", "pencil512", &algo), 0);
	assert_int_equal(algo, MOAT_PW_SCRAM_SHA512);
	assert_int_equal(check(p, "s256", "pencil512", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "s512", "pencil", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "s256", "", NULL), MOAT_EDENIED);

	/* The credentials are the file's, decoded. */
	memset(&c, 0xaa, sizeof(c));
	assert_int_equal(moat_passwd_scram(p, "s256", 256, &c), 0);
	assert_int_equal(c.iterations, 4096);
	assert_int_equal(c.key_len, 32);
	n = EVP_DecodeBlock(salt, (const uint8_t *)SCRAM256_SALT, 24);
	assert_int_equal(n - 2, 16); /* two '=' */
	assert_int_equal(c.salt_len, 16);
	assert_memory_equal(c.salt, salt, 16);
	n = EVP_DecodeBlock(stored, (const uint8_t *)SCRAM256_STORED, 44);
	assert_int_equal(n - 1, 32);
	assert_memory_equal(c.stored_key, stored, 32);
	/* And what the SCRAM module derives from the password. */
	assert_int_equal(moat_scram_derive(256, (const uint8_t *)"pencil", 6, c.salt, c.salt_len,
					   c.iterations, &d), 0);
	assert_memory_equal(c.stored_key, d.stored_key, 32);
	assert_memory_equal(c.server_key, d.server_key, 32);

	assert_int_equal(moat_passwd_scram(p, "s512", 512, &c), 0);
	assert_int_equal(c.key_len, 64);
	assert_int_equal(c.salt_len, 16);
	assert_memory_equal(c.salt, "0123456789abcdef", 16);
	assert_int_equal(moat_scram_derive(512, (const uint8_t *)"pencil512", 9, c.salt,
					   c.salt_len, c.iterations, &d), 0);
	assert_memory_equal(c.stored_key, d.stored_key, 64);
	assert_memory_equal(c.server_key, d.server_key, 64);

	/* No SCRAM entry of that kind. */
	assert_int_equal(moat_passwd_scram(p, "s256", 512, &c), MOAT_ENOTFOUND);
	assert_int_equal(moat_passwd_scram(p, "s512", 256, &c), MOAT_ENOTFOUND);
	assert_int_equal(moat_passwd_scram(p, "bob", 256, &c), MOAT_ENOTFOUND);
	assert_int_equal(moat_passwd_scram(p, "nobody", 256, &c), MOAT_ENOTFOUND);
	assert_int_equal(moat_passwd_scram(p, "s256", 1, &c), MOAT_ENOTFOUND);
	moat_passwd_free(p);
}

static void test_unknown_user(void **state)
{
	struct moat_passwd *p = parse(MOSQ_FILE);
	enum moat_pw_algo algo = MOAT_PW_SCRAM_SHA512;

	(void)state;
	assert_int_equal(check(p, "mallory", "correct horse", &algo), MOAT_EDENIED);
	assert_int_equal(algo, MOAT_PW_SCRAM_SHA512); /* not written */
	assert_int_equal(check(p, "", "correct horse", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "Alice", "correct horse", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "alice ", "correct horse", NULL), MOAT_EDENIED);
	assert_int_equal(moat_passwd_check(p, NULL, (const uint8_t *)"x", 1, NULL), MOAT_EDENIED);
	assert_int_equal(moat_passwd_check(NULL, "alice", (const uint8_t *)"x", 1, NULL),
			 MOAT_EDENIED);
	moat_passwd_free(p);
}

static double seconds(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * An unknown user costs what the file's users cost: in a file of $7$ (101
 * iterations) entries the check is quick, not an Argon2id run (which takes
 * tens of milliseconds); with no users at all it is the built-in Argon2id.
 */
static void test_dummy_cost(void **state)
{
	struct moat_passwd *p = parse(MOSQ_ALICE MOSQ_DAVE "ann:" ARGON_HASH "\n");
	double t;

	(void)state;
	t = seconds();
	assert_int_equal(check(p, "nobody", "x", NULL), MOAT_EDENIED);
	assert_true(seconds() - t < 0.05);
	moat_passwd_free(p);

	p = parse("# nobody\n");
	t = seconds();
	assert_int_equal(check(p, "nobody", "x", NULL), MOAT_EDENIED);
	assert_true(seconds() - t > 0.01);
	moat_passwd_free(p);
}

static void test_empty_file(void **state)
{
	static const char *const empties[] = {"", "\n", "\n\n# only comments\n   \n\t\n",
					      "#", "\r\n", "\xef\xbb\xbf# a BOM\n"};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
		struct moat_passwd *p = parse(empties[i]);

		assert_int_equal(moat_passwd_count(p), 0);
		assert_int_equal(moat_passwd_fingerprint(p, "alice"), 0);
		if (i == 0)
			assert_int_equal(check(p, "alice", "", NULL), MOAT_EDENIED);
		moat_passwd_free(p);
	}
	moat_passwd_free(NULL);
	assert_int_equal(moat_passwd_count(NULL), 0);
}

static void test_layout(void **state)
{
	struct moat_passwd *p;

	(void)state;
	/* Blanks around names and hashes, CRLF lines, comments, a BOM, no final newline. */
	p = parse("\xef\xbb\xbf# users\r\n  alice :\t" ARGON_HASH " \r\n\r\n"
		  "   # indented comment\nbob:" SCRAM256);
	assert_int_equal(moat_passwd_count(p), 2);
	assert_int_equal(check(p, "alice", "argon pass", NULL), 0);
	assert_int_equal(check(p, "bob", "pencil", NULL), 0);
	moat_passwd_free(p);
}

/* ---- malformed files ---- */

struct bad {
	const char *text;
	size_t len;       /* 0: strlen */
	unsigned line;
	const char *why;  /* a substring of the message */
};

#define H7 "$7$101$qpZPdBHy0uWrC9uK$Qqnurot+c8fL42/g54c2PtA/TtAevk0Xzy0NYEk0eNAMHQvvSMF7x7itQQO5" \
	   "n8F+Ugjv4igVBmuFhWhJKsuYXQ=="
#define HASH64 "Qqnurot+c8fL42/g54c2PtA/TtAevk0Xzy0NYEk0eNAMHQvvSMF7x7itQQO5" \
	       "n8F+Ugjv4igVBmuFhWhJKsuYXQ=="

static const struct bad bads[] = {
	{"alice\n", 0, 1, "no ':'"},
	{"# c\n\nalice:" H7 "\nbob\n", 0, 4, "no ':'"},
	{":" H7 "\n", 0, 1, "empty user"},
	{"  \t:" H7 "\n", 0, 1, "empty user"},
	{"a\x01" "b:" H7 "\n", 0, 1, "control"},
	{"a\x7f" "b:" H7 "\n", 0, 1, "control"},
	{"a\xff" "b:" H7 "\n", 0, 1, "UTF-8"},
	{"a\xc2\x85" "b:" H7 "\n", 0, 1, "control"}, /* U+0085, a C1 control */
	{"a\0b:" H7 "\n", 4 + sizeof(H7), 1, "control"},
	{"alice:" H7 "\0\n", 7 + sizeof(H7), 1, "hash"},
	{"bob:hunter2\n", 0, 1, "not a recognised hash"},
	{"bob:\n", 0, 1, "not a recognised hash"},
	{"bob:$5$abc$def\n", 0, 1, "not a recognised hash"},
	{"bob:$argon2i$v=19$m=8,t=1,p=1$6q+2WtJKBrgldUrX9sEQsA$sJ7DH/mLYkhw4vwewB1OyJ\n", 0, 1,
	 "not a recognised hash"},
	{"a:b:" H7 "\n", 0, 1, "not a recognised hash"},
	{"bob:$7$101$qpZPdBHy0uWrC9uK\n", 0, 1, "ITERATIONS$SALT$HASH"},
	{"bob:" H7 "$x\n", 0, 1, "ITERATIONS$SALT$HASH"},
	{"bob:$7$0$qpZPdBHy0uWrC9uK$" HASH64 "\n", 0, 1, "iteration"},
	{"bob:$7$-1$qpZPdBHy0uWrC9uK$" HASH64 "\n", 0, 1, "iteration"},
	{"bob:$7$99999999999$qpZPdBHy0uWrC9uK$" HASH64 "\n", 0, 1, "iteration"},
	{"bob:$7$10000001$qpZPdBHy0uWrC9uK$" HASH64 "\n", 0, 1, "iteration"},
	{"bob:$7$101$qpZPdBHy0u!rC9uK$" HASH64 "\n", 0, 1, "salt"},
	{"bob:$7$101$qpZPdBHy0uWrC9u$" HASH64 "\n", 0, 1, "salt"},
	{"bob:$7$101$$" HASH64 "\n", 0, 1, "salt"},
	{"bob:$7$101$qpZPdBHy0uWrC9uK$Qqnu\n", 0, 1, "64 bytes"},
	{"bob:$7$101$qpZPdBHy0uWrC9uK$=qnurot+c8fL42/g54c2PtA/TtAevk0Xzy0NYEk0eNAMHQvvSMF7x7itQQO5"
	 "n8F+Ugjv4igVBmuFhWhJKsuYXQ==\n", 0, 1, "64 bytes"},
	{"bob:$6$Ky3AB0x3fUf9Rd7L\n", 0, 1, "SALT$HASH"},
	{"bob:$6$Ky3AB0x3fUf9Rd7L$igEw\n", 0, 1, "64 bytes"},
	{"bob:$argon2id$v=18$m=8,t=1,p=1$6q+2WtJKBrgldUrX9sEQsA$sJ7DH/mLYkhw4vwewB1OyJ+j31f6wpWO"
	 "SoqVD7DJPKY\n", 0, 1, "v=19"},
	{"bob:$argon2id$v=19$m=8,t=1$6q+2WtJKBrgldUrX9sEQsA$sJ7DH/mLYkhw4vwewB1OyJ+j31f6wpWOSoqVD"
	 "7DJPKY\n", 0, 1, "parameters"},
	{"bob:$argon2id$v=19$m=99999999,t=1,p=1$6q+2WtJKBrgldUrX9sEQsA$sJ7DH/mLYkhw4vwewB1OyJ+j31"
	 "f6wpWOSoqVD7DJPKY\n", 0, 1, "parameters"},
	{"bob:$argon2id$v=19$t=1,m=8,p=1$6q+2WtJKBrgldUrX9sEQsA$sJ7DH/mLYkhw4vwewB1OyJ+j31f6wpWOSo"
	 "qVD7DJPKY\n", 0, 1, "parameters"},
	{"bob:$argon2id$v=19$m=8,t=0,p=1$6q+2WtJKBrgldUrX9sEQsA$sJ7DH/mLYkhw4vwewB1OyJ+j31f6wpWOSo"
	 "qVD7DJPKY\n", 0, 1, "parameters"},
	{"bob:$argon2id$v=19$m=8,t=1,p=1$6q+2WtJ!BrgldUrX9sEQsA$sJ7DH/mLYkhw4vwewB1OyJ+j31f6wpWOSo"
	 "qVD7DJPKY\n", 0, 1, "base64"},
	{"bob:$argon2id$v=19$m=8,t=1,p=1$6q+2WtJKBrgldUrX9sEQsA$sJ7D\n", 0, 1, "base64"},
	{"bob:$argon2id$v=19$m=8,t=1,p=1$6q+2WtJKBrgldUrX9sEQsA$sJ7DH/mLYkhw4vwewB1OyJ+j31f6wpWOSo"
	 "qVD7DJPKYsJ7DH/mLYkhw4vwewB1OyJ+j31f6wpWOSoqVD7DJPKY\n", 0, 1, "longer"},
	{"bob:$scram-sha-256$4096$" SCRAM256_SALT "$" SCRAM256_STORED "\n", 0, 1,
	 "STOREDKEY$SERVERKEY"},
	{"bob:$scram-sha-512$4096$" SCRAM256_SALT "$" SCRAM256_STORED "$" SCRAM256_STORED "\n", 0,
	 1, "64 bytes"},
	{"bob:$scram-sha-256$0$" SCRAM256_SALT "$" SCRAM256_STORED "$" SCRAM256_STORED "\n", 0, 1,
	 "iteration"},
	{"alice:" H7 "\nbob:" H7 "\nalice:" ARGON_HASH "\n", 0, 3, "duplicate user (first on line 1)"},
	{"alice:" H7 "\n\n  alice  :" H7 "\n", 0, 3, "duplicate"},
};

static void test_malformed(void **state)
{
	struct moat_passwd *p;
	char want[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		size_t n = bads[i].len ? bads[i].len : strlen(bads[i].text);

		p = (struct moat_passwd *)&p; /* must stay untouched */
		err[0] = '\0';
		assert_int_equal(moat_passwd_parse(bads[i].text, n, "f.pw", &p, err, sizeof(err)),
				 MOAT_ECONFIG);
		assert_ptr_equal(p, (struct moat_passwd *)&p);
		snprintf(want, sizeof(want), "f.pw:%u: ", bads[i].line);
		if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, bads[i].why))
			fail_msg("case %zu: got \"%s\", want \"%s...%s\"", i, err, want,
				 bads[i].why);
	}
}

static void test_long_lines(void **state)
{
	size_t n = 64 * 1024 + 10, i;
	char *text = malloc(n + 200);
	struct moat_passwd *p = NULL;

	(void)state;
	assert_non_null(text);
	/* A comment just over the limit on line 2. */
	strcpy(text, "alice:" ARGON_HASH "\n#");
	i = strlen(text);
	memset(text + i, 'x', 64 * 1024);
	text[i + 64 * 1024] = '\0';
	assert_int_equal(moat_passwd_parse(text, strlen(text), "f", &p, err, sizeof(err)),
			 MOAT_ECONFIG);
	assert_non_null(strstr(err, "f:2: line longer than 64 KiB"));
	/* Exactly 64 KiB is fine. */
	text[i + 64 * 1024 - 1] = '\0';
	p = parse(text);
	assert_int_equal(moat_passwd_count(p), 1);
	moat_passwd_free(p);
	free(text);
}

static void test_err_buffer(void **state)
{
	struct moat_passwd *p = NULL;
	char small[8];

	(void)state;
	assert_int_equal(moat_passwd_parse("x\n", 2, "name", &p, small, sizeof(small)),
			 MOAT_ECONFIG);
	assert_string_equal(small, "name:1:");
	assert_int_equal(moat_passwd_parse("x\n", 2, "name", &p, NULL, 0), MOAT_ECONFIG);
	assert_null(p);
}

/* ---- fingerprints ---- */

static void test_fingerprint(void **state)
{
	struct moat_passwd *a = parse(MOSQ_ALICE MOSQ_BOB MOSQ_CAROL);
	struct moat_passwd *b = parse("# changed\n" MOSQ_BOB "alice:" ARGON_HASH "\n");
	struct moat_passwd *c = parse(MOSQ_ALICE MOSQ_BOB MOSQ_CAROL);
	struct moat_passwd *d = parse(MOSQ_ALICE "bob :  " "$6$Ky3AB0x3fUf9Rd7L$igEwy7mPsxGZ/95rA"
					  "aQOODr9HO8hZQDcU5UZXcrjiQcb1GL86pwWmh1vPhmEPe0ikLBGm"
					  "ZWN/V/LA7mLXG8cTQ==\r\n");

	(void)state;
	assert_int_not_equal(moat_passwd_fingerprint(a, "alice"), 0);
	assert_int_not_equal(moat_passwd_fingerprint(a, "bob"), 0);
	assert_int_not_equal(moat_passwd_fingerprint(a, "alice"), moat_passwd_fingerprint(a, "bob"));
	/* Changed, unchanged, removed. */
	assert_int_not_equal(moat_passwd_fingerprint(a, "alice"), moat_passwd_fingerprint(b, "alice"));
	assert_int_equal(moat_passwd_fingerprint(a, "bob"), moat_passwd_fingerprint(b, "bob"));
	assert_int_equal(moat_passwd_fingerprint(b, "carol"), 0);
	/* Stable across loads of the same text, and blind to layout. */
	assert_int_equal(moat_passwd_fingerprint(a, "carol"), moat_passwd_fingerprint(c, "carol"));
	assert_int_equal(moat_passwd_fingerprint(a, "bob"), moat_passwd_fingerprint(d, "bob"));
	assert_int_equal(moat_passwd_fingerprint(a, "nobody"), 0);
	assert_int_equal(moat_passwd_fingerprint(a, NULL), 0);
	assert_int_equal(moat_passwd_fingerprint(NULL, "alice"), 0);
	moat_passwd_free(a);
	moat_passwd_free(b);
	moat_passwd_free(c);
	moat_passwd_free(d);
}

/* ---- hashing ---- */

static void round_trip(enum moat_pw_algo algo, const char *prefix)
{
	char hash[512], text[600], hash2[512];
	struct moat_passwd *p;
	enum moat_pw_algo got = MOAT_PW_SHA512;

	assert_int_equal(moat_passwd_hash(algo, (const uint8_t *)"s3cret pw", 9, hash,
					  sizeof(hash)), 0);
	assert_memory_equal(hash, prefix, strlen(prefix));
	snprintf(text, sizeof(text), "user:%s\n", hash);
	p = parse(text);
	assert_int_equal(check(p, "user", "s3cret pw", &got), 0);
	assert_int_equal(got, algo);
	assert_int_equal(check(p, "user", "s3cret pW", NULL), MOAT_EDENIED);
	assert_int_equal(check(p, "user", "", NULL), MOAT_EDENIED);
	moat_passwd_free(p);
	/* A new salt every time. */
	assert_int_equal(moat_passwd_hash(algo, (const uint8_t *)"s3cret pw", 9, hash2,
					  sizeof(hash2)), 0);
	assert_string_not_equal(hash, hash2);
	/* Too small a buffer. */
	assert_int_equal(moat_passwd_hash(algo, (const uint8_t *)"x", 1, hash, 20), MOAT_ENOSPC);
}

static void test_round_trips(void **state)
{
	(void)state;
	round_trip(MOAT_PW_ARGON2ID, "$argon2id$v=19$m=65536,t=3,p=1$");
	round_trip(MOAT_PW_PBKDF2_SHA512, "$7$210000$");
	round_trip(MOAT_PW_SCRAM_SHA256, "$scram-sha-256$15000$");
	round_trip(MOAT_PW_SCRAM_SHA512, "$scram-sha-512$15000$");
}

static void test_hash_args(void **state)
{
	char hash[512];
	enum moat_pw_algo a = MOAT_PW_SHA512;

	(void)state;
	assert_int_equal(moat_passwd_hash(MOAT_PW_SHA512, (const uint8_t *)"x", 1, hash,
					  sizeof(hash)), MOAT_EINVAL);
	assert_int_equal(moat_passwd_algo("argon2id", &a), 0);
	assert_int_equal(a, MOAT_PW_ARGON2ID);
	assert_int_equal(moat_passwd_algo("sha512-pbkdf2", &a), 0);
	assert_int_equal(a, MOAT_PW_PBKDF2_SHA512);
	assert_int_equal(moat_passwd_algo("scram-sha-256", &a), 0);
	assert_int_equal(a, MOAT_PW_SCRAM_SHA256);
	assert_int_equal(moat_passwd_algo("scram-sha-512", &a), 0);
	assert_int_equal(a, MOAT_PW_SCRAM_SHA512);
	a = MOAT_PW_ARGON2ID;
	assert_int_equal(moat_passwd_algo("sha512", &a), MOAT_EINVAL);
	assert_int_equal(moat_passwd_algo("Argon2id", &a), MOAT_EINVAL);
	assert_int_equal(moat_passwd_algo("", &a), MOAT_EINVAL);
	assert_int_equal(moat_passwd_algo(NULL, &a), MOAT_EINVAL);
	assert_int_equal(a, MOAT_PW_ARGON2ID);
}

/* The $7$ moat writes is exactly mosquitto_passwd's layout: 12-byte salt, 64-byte hash. */
static void test_pbkdf2_layout(void **state)
{
	char hash[512];
	const char *salt, *key;

	(void)state;
	assert_int_equal(moat_passwd_hash(MOAT_PW_PBKDF2_SHA512, (const uint8_t *)"pw", 2, hash,
					  sizeof(hash)), 0);
	salt = strchr(hash + 3, '$') + 1;
	key = strchr(salt, '$') + 1;
	assert_int_equal(key - salt - 1, 16);
	assert_int_equal(strlen(key), 88);
	assert_null(strchr(key, '$'));
}

/* ---- files ---- */

static char dir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/moat-test-passwd-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *path_of(const char *name)
{
	static char p[128];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

static void put(const char *name, const char *text)
{
	FILE *f = fopen(path_of(name), "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *get(const char *name)
{
	static char buf[8192];
	FILE *f = fopen(path_of(name), "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Only the file itself is left in the directory: no temporary files. */
static void only_file(void)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", dir);
	assert_int_equal(system(cmd), 0);
}

#define OTHERS "# moat users\n\nbob:" SCRAM256 "\r\n  # indented\ncarol:" ARGON_HASH

static void test_edit(void **state)
{
	char *f = strdup(path_of("pw"));
	struct moat_passwd *p;
	struct stat st;

	(void)state;
	put("pw", OTHERS); /* no final newline */
	/* Add: appended after a newline; everything else byte for byte. */
	assert_int_equal(moat_passwd_edit(f, "alice", H7, false, err, sizeof(err)), 0);
	assert_string_equal(get("pw"), OTHERS "\nalice:" H7 "\n");
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	only_file();
	/* Replace, in place. */
	assert_int_equal(moat_passwd_edit(f, "bob", ARGON_HASH, false, err, sizeof(err)), 0);
	assert_string_equal(get("pw"), "# moat users\n\nbob:" ARGON_HASH "\n  # indented\ncarol:"
				       ARGON_HASH "\nalice:" H7 "\n");
	p = NULL;
	assert_int_equal(moat_passwd_load(f, &p, err, sizeof(err)), 0);
	assert_int_equal(moat_passwd_count(p), 3);
	assert_int_equal(check(p, "bob", "argon pass", NULL), 0);
	assert_int_equal(check(p, "alice", "correct horse", NULL), 0);
	moat_passwd_free(p);
	/* Delete. */
	assert_int_equal(moat_passwd_edit(f, "carol", NULL, false, err, sizeof(err)), 0);
	assert_string_equal(get("pw"), "# moat users\n\nbob:" ARGON_HASH "\n  # indented\n"
				       "alice:" H7 "\n");
	/* Deleting an absent user changes nothing. */
	assert_int_equal(moat_passwd_edit(f, "carol", NULL, false, err, sizeof(err)),
			 MOAT_ENOTFOUND);
	assert_string_equal(get("pw"), "# moat users\n\nbob:" ARGON_HASH "\n  # indented\n"
				       "alice:" H7 "\n");
	only_file();
	/* Create: the old file is replaced by one entry. */
	assert_int_equal(moat_passwd_edit(f, "dave", SCRAM512, true, err, sizeof(err)), 0);
	assert_string_equal(get("pw"), "dave:" SCRAM512 "\n");
	/* Delete the last user: an empty file, which loads with no users. */
	assert_int_equal(moat_passwd_edit(f, "dave", NULL, false, err, sizeof(err)), 0);
	assert_string_equal(get("pw"), "");
	assert_int_equal(moat_passwd_load(f, &p, err, sizeof(err)), 0);
	assert_int_equal(moat_passwd_count(p), 0);
	moat_passwd_free(p);
	only_file();
	free(f);
}

static void test_edit_create_new(void **state)
{
	char *f = strdup(path_of("new"));
	struct stat st;

	(void)state;
	/* Without create a missing file is an error; with it, the file is made. */
	assert_int_equal(moat_passwd_edit(f, "alice", H7, false, err, sizeof(err)), MOAT_EIO);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(moat_passwd_edit(f, "alice", H7, true, err, sizeof(err)), 0);
	assert_string_equal(get("new"), "alice:" H7 "\n");
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(f);
}

static void test_edit_duplicates_and_keeps_bad_lines(void **state)
{
	char *f = strdup(path_of("pw"));

	(void)state;
	/* Lines moat would refuse are kept (moat passwd -U fixes plain ones); duplicates go. */
	put("pw", "alice:" H7 "\nplain:text\nalice:" ARGON_HASH "\nno colon\n");
	assert_int_equal(moat_passwd_edit(f, "alice", SCRAM256, false, err, sizeof(err)), 0);
	assert_string_equal(get("pw"), "alice:" SCRAM256 "\nplain:text\nno colon\n");
	free(f);
}

static void test_edit_refuses(void **state)
{
	char *f = strdup(path_of("pw"));
	static const char *const users[] = {"a:b", "a\nb", "a\x01", "", "#alice", " alice",
					    "alice\t", "a\xff"};
	size_t i;

	(void)state;
	put("pw", OTHERS);
	for (i = 0; i < sizeof(users) / sizeof(users[0]); i++)
		assert_int_equal(moat_passwd_edit(f, users[i], H7, false, err, sizeof(err)),
				 MOAT_EINVAL);
	assert_int_equal(moat_passwd_edit(f, NULL, H7, false, err, sizeof(err)), MOAT_EINVAL);
	/* A hash that would not load back. */
	assert_int_equal(moat_passwd_edit(f, "alice", "hunter2", false, err, sizeof(err)),
			 MOAT_EINVAL);
	assert_int_equal(moat_passwd_edit(f, "alice", H7 "\nmallory:" H7, false, err, sizeof(err)),
			 MOAT_EINVAL);
	assert_int_equal(moat_passwd_edit(f, "alice", "", false, err, sizeof(err)), MOAT_EINVAL);
	assert_string_equal(get("pw"), OTHERS);
	only_file();
	free(f);
}

static void test_edit_through_symlink(void **state)
{
	char *f = strdup(path_of("pw")), *l = strdup(path_of("link"));
	struct stat st;

	(void)state;
	put("pw", "bob:" SCRAM256 "\n");
	assert_int_equal(symlink(f, l), 0);
	assert_int_equal(moat_passwd_edit(l, "alice", H7, false, err, sizeof(err)), 0);
	assert_int_equal(lstat(l, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_string_equal(get("pw"), "bob:" SCRAM256 "\nalice:" H7 "\n");
	free(f);
	free(l);
}

static void test_load(void **state)
{
	struct moat_passwd *p = NULL;
	char *f = strdup(path_of("pw"));

	(void)state;
	assert_int_equal(moat_passwd_load(path_of("missing"), &p, err, sizeof(err)), MOAT_EIO);
	assert_non_null(strstr(err, "missing: No such file or directory"));
	assert_int_equal(moat_passwd_load(dir, &p, err, sizeof(err)), MOAT_EIO);
	assert_non_null(strstr(err, "not a regular file"));
	assert_null(p);
	put("pw", MOSQ_FILE "# end\nbroken\n");
	assert_int_equal(moat_passwd_load(f, &p, err, sizeof(err)), MOAT_ECONFIG);
	assert_non_null(strstr(err, "/pw:7: no ':'"));
	assert_null(p);
	put("pw", MOSQ_FILE);
	assert_int_equal(moat_passwd_load(f, &p, err, sizeof(err)), 0);
	assert_int_equal(moat_passwd_count(p), 5);
	assert_int_equal(check(p, "carol", "p@ss:w0rd", NULL), 0);
	moat_passwd_free(p);
	free(f);
}

int main(void)
{
#define F(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mosquitto_fixtures),
		cmocka_unit_test(test_argon2_fixture),
		cmocka_unit_test(test_scram_fixtures),
		cmocka_unit_test(test_unknown_user),
		cmocka_unit_test(test_dummy_cost),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_err_buffer),
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_hash_args),
		cmocka_unit_test(test_pbkdf2_layout),
		F(test_edit),
		F(test_edit_create_new),
		F(test_edit_duplicates_and_keeps_bad_lines),
		F(test_edit_refuses),
		F(test_edit_through_symlink),
		F(test_load),
	};
#undef F
	return cmocka_run_group_tests(tests, NULL, NULL);
}
