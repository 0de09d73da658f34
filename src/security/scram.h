/*
 * scram.h - the server side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802,
 * RFC 7677) for MQTT 5.0 enhanced authentication.
 *
 * The exchange over MQTT 5.0 (Authentication Method "SCRAM-SHA-256" or
 * "SCRAM-SHA-512", messages in Authentication Data):
 *   CONNECT  client-first-message          -> moat_scram_start
 *   AUTH 0x18 server-first-message         <- moat_scram_server_first
 *   AUTH 0x18 client-final-message         -> moat_scram_finish
 *   CONNACK 0x00 server-final-message      <- (written by moat_scram_finish)
 * No channel binding ("n,," or "y,,"; "p=" is refused), no authzid other
 * than the user itself. For an unknown user the exchange goes on with
 * made-up credentials and fails only at the proof, so a prober cannot tell a
 * missing user from a wrong password. Proofs are compared in constant time.
 * Pure: no I/O; the only global is a per-process random key the made-up
 * credentials are derived from. Cheap: the server never runs the KDF.
 * Thread-safe for distinct exchanges.
 */
#ifndef MOAT_SECURITY_SCRAM_H
#define MOAT_SECURITY_SCRAM_H

#include <stddef.h>
#include <stdint.h>

#include "security/passwd.h"

enum moat_scram_mech { MOAT_SCRAM_SHA256 = 256, MOAT_SCRAM_SHA512 = 512 };

/*
 * The iteration count and salt length of the made-up credentials of an
 * unknown user: those moat passwd writes (passwd.c's SCRAM_ITER and
 * SCRAM_SALT), or an unknown user stands out from the real ones by its
 * server-first-message. Keep the two in step.
 */
#define MOAT_SCRAM_ITERATIONS 15000
#define MOAT_SCRAM_SALT_LEN 16

struct moat_scram;

/* Maps an Authentication Method name to a mechanism; 0 if not SCRAM. */
int moat_scram_mech(const uint8_t *name, size_t n);

/*
 * Starts an exchange from the client-first-message. Returns 0 with *out
 * (free with moat_scram_free) and the user name it names in user (the
 * SASLprep'd form is the caller's business: names are compared as sent),
 * NUL-terminated; or MOAT_EPROTOCOL for a malformed message (a name that
 * does not fit usercap included), or MOAT_ENOMEM.
 */
int moat_scram_start(int mech, const uint8_t *client_first, size_t n, struct moat_scram **out,
		     char *user, size_t usercap);

/*
 * Writes the server-first-message for credentials cred (NULL for an unknown
 * user: a fake, deterministic per user name, is used). Returns 0 with *len,
 * or MOAT_ENOSPC, or MOAT_EIO if the random generator fails.
 */
int moat_scram_server_first(struct moat_scram *s, const struct moat_scram_cred *cred,
			    uint8_t *out, size_t cap, size_t *len);

/*
 * Checks the client-final-message. Returns 0 and writes the
 * server-final-message ("v=...") into out, MOAT_EDENIED if the proof is wrong
 * (or the user unknown), or MOAT_EPROTOCOL for a malformed message or a
 * nonce that is not ours (MOAT_ENOSPC if cap cannot hold the answer, MOAT_EIO
 * if libcrypto fails). One try per exchange: after any answer but
 * MOAT_ENOSPC, finish only returns MOAT_EINVAL.
 */
int moat_scram_finish(struct moat_scram *s, const uint8_t *client_final, size_t n, uint8_t *out,
		      size_t cap, size_t *len);

void moat_scram_free(struct moat_scram *s);

/*
 * For tests only (the RFC 7677 example needs its server nonce): makes the
 * next moat_scram_server_first use nonce (1 to 64 printable characters, no
 * ',') as the server's part of the nonce instead of random bytes. Returns 0
 * or MOAT_EINVAL.
 */
int moat_scram_set_nonce_for_test(struct moat_scram *s, const char *nonce);

/*
 * Derives SCRAM credentials from a password (for moat passwd and for
 * verifying a plain password against a SCRAM entry): SaltedPassword by
 * PBKDF2 with iterations, then StoredKey and ServerKey. Returns 0 with
 * *cred, MOAT_EINVAL for an unknown mech, a salt of 0 or more than 64 bytes
 * or 0 iterations, or MOAT_EIO if libcrypto fails. Slow on purpose.
 */
int moat_scram_derive(int mech, const uint8_t *password, size_t plen, const uint8_t *salt,
		      size_t salt_len, uint32_t iterations, struct moat_scram_cred *cred);

#endif
