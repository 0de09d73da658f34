/*
 * seal.h - encryption at rest: sealed values and keyed lookup names.
 *
 * The store encrypts what it writes (payloads, session state, names) under
 * one 32-byte master key the operator keeps outside the store, in a file or
 * an environment variable. From it come two subkeys (HKDF-SHA256, info
 * "moat store enc v1" and "moat store mac v1"): one seals values, the other
 * turns names (client ids, user names) into lookup keys, so a name never has
 * to be written in plaintext to be found again.
 *
 * A sealed value, MOAT_SEAL_OVERHEAD bytes longer than the plaintext:
 *
 *   0x01 | nonce (12 random bytes) | AES-256-GCM ciphertext | tag (16)
 *
 * The GCM additional data is the version byte followed by the caller's aad.
 * The aad names where the value lives (table and row key, say), so a value
 * copied to another row, or a version byte changed, fails to open like any
 * other tampering. Opening checks the tag before anything is returned.
 *
 * Limits the store must keep:
 *   - nonces are random, so one master key may seal at most 2^32 values
 *     (NIST SP 800-38D 8.3: the chance of a repeated nonce stays below
 *     2^-32). A store sealing 10,000 values a second reaches that in five
 *     days: it must count seals and re-key (or a later version must change
 *     the construction; the version byte is there for it).
 *   - a wrong master key is not detected by loading it: every value simply
 *     fails to open. The store keeps one value sealed at creation (a fixed
 *     plaintext under a fixed aad such as "moat store check"); if that one
 *     fails to open at start-up, the key is wrong, or the store damaged, and
 *     the daemon stops before it writes anything under the new key.
 *
 * Thread safety: a struct moat_seal is immutable after moat_seal_new; any
 * number of threads may seal, open and derive names with it at once.
 */
#ifndef MOAT_STORE_SEAL_H
#define MOAT_STORE_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define MOAT_SEAL_KEY_LEN 32
#define MOAT_SEAL_VERSION 0x01
#define MOAT_SEAL_NONCE_LEN 12
#define MOAT_SEAL_TAG_LEN 16
#define MOAT_SEAL_OVERHEAD (1 + MOAT_SEAL_NONCE_LEN + MOAT_SEAL_TAG_LEN)
#define MOAT_SEAL_NAME_KEY_LEN 32

struct moat_seal;

/*
 * Reads a master key into key: from the file at path if path is non-NULL
 * (the environment is then not looked at), else from the environment
 * variable env_name. Accepted forms: exactly 32 raw bytes, or 64 hex digits
 * (either case) with optional trailing whitespace. 32 bytes that are all
 * printable text are refused: they are a passphrase or a short hex key, not
 * a random key. The file must be a regular file (symlinks followed) with no
 * permission for group or others. Returns 0; MOAT_ECONFIG (a key of the
 * wrong form, a file others may read or write, no path and the variable
 * unset); MOAT_EIO (the file cannot be opened or read). err says why and
 * where, never with any byte of the key. key is written only on success;
 * every copy of the key this function made is wiped before it returns.
 */
int moat_seal_load_key(const char *path, const char *env_name, uint8_t key[MOAT_SEAL_KEY_LEN],
		       char *err, size_t errlen);

/*
 * Creates path holding a new random key as 64 lower-case hex digits and a
 * newline, mode 0600, synced to disk. Never replaces a file: returns 0,
 * MOAT_EEXIST if path exists (symlinks included), MOAT_EIO otherwise on
 * failure (with no file left behind), with why in err.
 */
int moat_seal_generate_key_file(const char *path, char *err, size_t errlen);

/*
 * Writes key to path as 64 hex digits and a newline, replacing any file
 * there atomically (core/file.h), mode 0600. Returns 0 or MOAT_EIO with err.
 */
int moat_seal_write_key_file(const char *path, const uint8_t key[MOAT_SEAL_KEY_LEN], char *err,
			     size_t errlen);

/* Fills out[0..n) from the cryptographic random generator. Returns 0 or MOAT_EIO. */
int moat_seal_random(void *out, size_t n);

/* Wipes p[0..n) in a way the compiler does not drop (key material). */
void moat_seal_wipe(void *p, size_t n);

/*
 * Makes a seal whose value subkey comes from enc_key and whose name subkey
 * comes from mac_key: the store changes its data key (key rotation) while
 * the names rows are found by stay the same. Borrows both keys.
 */
struct moat_seal *moat_seal_new_split(const uint8_t enc_key[MOAT_SEAL_KEY_LEN],
				      const uint8_t mac_key[MOAT_SEAL_KEY_LEN]);

/*
 * Derives the subkeys of master key. Borrows key (the caller wipes it).
 * Returns owned (free with moat_seal_free), or NULL if out of memory.
 */
struct moat_seal *moat_seal_new(const uint8_t key[MOAT_SEAL_KEY_LEN]);

/* Wipes the subkeys and frees s. moat_seal_free(NULL) is a no-op. */
void moat_seal_free(struct moat_seal *s);

/* Bytes a sealed plain_len-byte value takes; 0 if that does not fit in a size_t. */
size_t moat_seal_size(size_t plain_len);

/*
 * Bytes of plaintext in a sealed_len-byte value, sealed_len -
 * MOAT_SEAL_OVERHEAD; 0 if sealed_len is shorter than that (never negative).
 */
size_t moat_unseal_size(size_t sealed_len);

/*
 * Seals plain[0..n) bound to aad[0..aad_len) into out[0..moat_seal_size(n)),
 * which must not overlap plain. plain and aad may be NULL when their length
 * is 0. Returns 0; MOAT_ENOMEM; MOAT_EIO if the random generator fails;
 * MOAT_EINVAL if moat_seal_size(n) is 0. On failure out holds zeros.
 */
int moat_seal(const struct moat_seal *s, const void *aad, size_t aad_len, const void *plain,
	      size_t n, uint8_t *out);

/*
 * Opens in[0..in_len), sealed with aad[0..aad_len), into
 * out[0..moat_unseal_size(in_len)), which must not overlap in, and sets
 * *out_len. Any bytes at all are safe to pass. Returns 0; MOAT_EVERSION if
 * the first byte is not a version this code writes; MOAT_EMALFORMED if in is
 * too short or does not open (tampered, another aad, another key);
 * MOAT_ENOMEM. On failure *out_len is untouched and
 * out[0..moat_unseal_size(in_len)) holds zeros: no unauthenticated
 * plaintext is ever left in it.
 */
int moat_unseal(const struct moat_seal *s, const void *aad, size_t aad_len, const uint8_t *in,
		size_t in_len, uint8_t *out, size_t *out_len);

/*
 * The lookup key of a name: HMAC-SHA256 under the mac subkey of
 * domain || 0x00 || name[0..n). The same (domain, name) always gives the
 * same key under the same master key; distinct domains ("clientid",
 * "username", ...) give unrelated keys for the same name. domain is a C
 * string, so the encoding is unambiguous. Returns 0 or MOAT_ENOMEM; out is
 * written only on success.
 */
int moat_seal_name_key(const struct moat_seal *s, const char *domain, const void *name, size_t n,
		       uint8_t out[MOAT_SEAL_NAME_KEY_LEN]);

#endif
