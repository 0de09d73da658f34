/*
 * passwd.h - password files: Mosquitto's format, stronger hashes by default.
 *
 * A file holds "username:hash" lines ('#' comments and blank lines allowed).
 * The hashes moat reads:
 *   $argon2id$v=19$m=...,t=...,p=...$SALT$HASH   Argon2id (libsodium's string form): the default
 *   $7$ITERATIONS$SALT$HASH                        PBKDF2-SHA512 (mosquitto_passwd 2.0's), base64
 *   $6$SALT$HASH                                   salted SHA-512 (mosquitto_passwd 1.x), verify only
 *   $scram-sha-256$ITER$SALT$STOREDKEY$SERVERKEY   SCRAM credentials (RFC 5802), base64; also verify
 *   $scram-sha-512$ITER$SALT$STOREDKEY$SERVERKEY   plain passwords, by deriving the keys
 * A malformed line makes the whole file refused (fail closed), with its line
 * number. An empty file is valid and lets nobody in.
 *
 * Verifying is slow on purpose (Argon2id): call it from the auth threads,
 * never from a worker. Verification takes the same path and time whether the
 * user exists or not (an unknown user is checked against a dummy entry), and
 * hashes are compared in constant time.
 */
#ifndef MOAT_SECURITY_PASSWD_H
#define MOAT_SECURITY_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum moat_pw_algo {
	MOAT_PW_ARGON2ID = 0,     /* default */
	MOAT_PW_PBKDF2_SHA512,    /* $7$ */
	MOAT_PW_SHA512,           /* $6$: read only, never written */
	MOAT_PW_SCRAM_SHA256,
	MOAT_PW_SCRAM_SHA512,
	MOAT_PW_ALGO_COUNT
};

struct moat_passwd;

/* SCRAM credentials of a user (RFC 5802 section 3), for the SCRAM exchange. */
struct moat_scram_cred {
	uint8_t salt[64];
	size_t salt_len;
	uint32_t iterations;
	uint8_t stored_key[64];
	uint8_t server_key[64];
	size_t key_len;          /* 32 for SHA-256, 64 for SHA-512 */
};

/*
 * Reads the password file at path. Returns 0 and *out (free with
 * moat_passwd_free), MOAT_EIO if it cannot be read, or MOAT_ECONFIG with
 * "PATH:LINE: why" in err for a malformed line (then nothing is loaded).
 */
int moat_passwd_load(const char *path, struct moat_passwd **out, char *err, size_t errlen);

/* The same from memory; name is used in messages. Used by the fuzz target. */
int moat_passwd_parse(const char *text, size_t n, const char *name, struct moat_passwd **out,
		      char *err, size_t errlen);

void moat_passwd_free(struct moat_passwd *p);

/* Number of users. */
size_t moat_passwd_count(const struct moat_passwd *p);

/*
 * Checks user's password. Returns 0 if it matches, MOAT_EDENIED if the user
 * is unknown or the password wrong (the same answer and work either way).
 * *algo (may be NULL) receives the entry's algorithm when it matches, so the
 * caller can re-hash a legacy entry. Thread-safe; slow.
 */
int moat_passwd_check(const struct moat_passwd *p, const char *user, const uint8_t *password,
		      size_t plen, enum moat_pw_algo *algo);

/*
 * A fingerprint of user's entry (0 if there is none): it changes when the
 * entry changes, so a reload can tell whose credentials were changed or
 * removed. Not a secret and reveals nothing of the hash.
 */
uint64_t moat_passwd_fingerprint(const struct moat_passwd *p, const char *user);

/* The fingerprint user's entry would have with hash (the part after "user:"). */
uint64_t moat_passwd_fingerprint_of(const char *user, const char *hash);

/*
 * The SCRAM credentials of user for hash 256 or 512. Returns 0, or
 * MOAT_ENOTFOUND if the user has no SCRAM entry of that kind.
 */
int moat_passwd_scram(const struct moat_passwd *p, const char *user, int sha,
		      struct moat_scram_cred *cred);

/*
 * Hashes password with algo into out as a NUL-terminated entry hash string
 * (the part after "user:"). Returns 0, MOAT_ENOSPC, or MOAT_EINVAL for an
 * algorithm that is read-only ($6$). Slow for Argon2id and PBKDF2.
 */
int moat_passwd_hash(enum moat_pw_algo algo, const uint8_t *password, size_t plen, char *out,
		     size_t cap);

/* Counts p's entries by algorithm into counts[MOAT_PW_ALGO_COUNT] (zeroed first). */
void moat_passwd_algo_counts(const struct moat_passwd *p, size_t counts[MOAT_PW_ALGO_COUNT]);

/* An algorithm's name as moat_passwd_algo reads it ("sha512" for $6$). */
const char *moat_passwd_algo_name(enum moat_pw_algo a);

/* Parses an algorithm name: "argon2id", "sha512-pbkdf2", "scram-sha-256", "scram-sha-512". */
int moat_passwd_algo(const char *name, enum moat_pw_algo *out);

/*
 * Editing a file (moat passwd): sets user's entry to hash (adds or
 * replaces), or deletes it (hash NULL; MOAT_ENOTFOUND if absent), keeping
 * every other line, comments included, and writes the file back atomically
 * (temporary file + rename, mode 0600). With create the file starts empty
 * (truncating any old one), as mosquitto_passwd -c does. Returns 0, or a code
 * with err.
 */
int moat_passwd_edit(const char *path, const char *user, const char *hash, bool create,
		     char *err, size_t errlen);

#endif
