/*
 * fuzz_passwd.c - libFuzzer target: arbitrary bytes as a password file.
 *
 * The input goes, as an exactly-sized heap copy, to moat_passwd_parse.
 * Checked:
 *   - a refusal is MOAT_ECONFIG (or MOAT_ENOMEM), leaves the out-parameter
 *     alone and says "fuzz:LINE: why" (or "fuzz: why");
 *   - an accepted file has as many users as a reference scan here counts
 *     user lines (not blank, not a comment; a leading byte-order mark
 *     skipped), and every such line's user has an entry (non-zero
 *     fingerprint);
 *   - verification, when it is cheap: the fixed user "u" with password "p"
 *     gets 0 or MOAT_EDENIED, an unknown user MOAT_EDENIED, a password with
 *     a NUL byte MOAT_EDENIED; a SCRAM entry's credentials come back with
 *     sane lengths, and "p" is accepted exactly when moat_scram_derive of
 *     "p" gives the stored keys.
 * Cheap means: no Argon2id string in the input and no run of four or more
 * digits (so PBKDF2 and SCRAM iteration counts stay under 1000), and at
 * least one user (an empty file's dummy is Argon2id with full cost).
 */
#include "fuzz_common.h"
#include "security/passwd.h"
#include "security/scram.h"

static bool blank(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/*
 * Counts user lines and checks each one's user has an entry. Only called on
 * an accepted file, where every user line has a ':' and a valid name.
 */
static size_t check_users(const struct moat_passwd *p, const uint8_t *d, size_t n)
{
	size_t off = 0, count = 0;

	if (n >= 3 && memcmp(d, "\xef\xbb\xbf", 3) == 0)
		off = 3;
	while (off < n) {
		const uint8_t *l = d + off, *nl = memchr(l, '\n', n - off);
		size_t len = nl ? (size_t)(nl - l) : n - off, s = 0, e;
		const uint8_t *colon;
		char user[256];

		off += len + (nl != NULL);
		while (s < len && blank(l[s]))
			s++;
		if (s == len || l[s] == '#')
			continue;
		count++;
		colon = memchr(l + s, ':', len - s);
		FZ_ASSERT(colon != NULL);
		e = (size_t)(colon - l);
		while (e > s && blank(l[e - 1]))
			e--;
		FZ_ASSERT(e > s);
		if (e - s >= sizeof(user))
			continue;
		memcpy(user, l + s, e - s);
		user[e - s] = '\0';
		FZ_ASSERT(strlen(user) == e - s); /* no NUL in an accepted name */
		FZ_ASSERT(moat_passwd_fingerprint(p, user) != 0);
	}
	return count;
}

static bool cheap(const uint8_t *d, size_t n)
{
	size_t i, run = 0;

	if (memmem(d, n, "argon2", 6))
		return false;
	for (i = 0; i < n; i++) {
		run = d[i] >= '0' && d[i] <= '9' ? run + 1 : 0;
		if (run >= 4)
			return false;
	}
	return true;
}

static void check_scram(const struct moat_passwd *p, int ok)
{
	struct moat_scram_cred c, d;
	int sha, rc;

	for (sha = 256; sha <= 512; sha += 256) {
		rc = moat_passwd_scram(p, "u", sha, &c);
		FZ_ASSERT(rc == 0 || rc == MOAT_ENOTFOUND);
		if (rc != 0)
			continue;
		FZ_ASSERT(c.key_len == (size_t)sha / 8);
		FZ_ASSERT(c.salt_len >= 1 && c.salt_len <= sizeof(c.salt));
		FZ_ASSERT(c.iterations >= 1 && c.iterations < 1000);
		FZ_ASSERT(moat_scram_derive(sha, (const uint8_t *)"p", 1, c.salt, c.salt_len,
					    c.iterations, &d) == 0);
		FZ_ASSERT((memcmp(c.stored_key, d.stored_key, c.key_len) == 0 &&
			   memcmp(c.server_key, d.server_key, c.key_len) == 0) == (ok == 0));
	}
}

static void check_verify(const struct moat_passwd *p)
{
	enum moat_pw_algo algo = (enum moat_pw_algo)99;
	int rc;

	rc = moat_passwd_check(p, "u", (const uint8_t *)"p", 1, &algo);
	FZ_ASSERT(rc == 0 || rc == MOAT_EDENIED);
	FZ_ASSERT(rc == 0 ? algo != MOAT_PW_ARGON2ID && (int)algo != 99 : (int)algo == 99);
	check_scram(p, rc);
	FZ_ASSERT(moat_passwd_check(p, "u", (const uint8_t *)"p\0", 2, NULL) == MOAT_EDENIED);
	FZ_ASSERT(moat_passwd_check(p, "\x01no such user", (const uint8_t *)"p", 1, NULL) ==
		  MOAT_EDENIED);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_passwd *p = (struct moat_passwd *)&p;
	uint8_t *copy = fz_dup(data, size);
	char err[512] = "";
	int rc;

	rc = moat_passwd_parse((const char *)copy, size, "fuzz", &p, err, sizeof(err));
	if (rc != 0) {
		FZ_ASSERT(rc == MOAT_ECONFIG || rc == MOAT_ENOMEM);
		FZ_ASSERT(p == (struct moat_passwd *)&p);
		FZ_ASSERT(strncmp(err, "fuzz:", 5) == 0 && strstr(err, ": ") != NULL);
		free(copy);
		return 0;
	}
	FZ_ASSERT(moat_passwd_count(p) == check_users(p, copy, size));
	if (moat_passwd_count(p) > 0 && cheap(copy, size))
		check_verify(p);
	moat_passwd_free(p);
	free(copy);
	return 0;
}
