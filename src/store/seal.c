/*
 * seal.c - encryption at rest (see seal.h).
 *
 * OpenSSL 3 EVP only: HKDF through EVP_KDF, AES-256-GCM through an
 * EVP_CIPHER fetched once, HMAC through an EVP_MAC fetched once. Fetching
 * at moat_seal_new keeps the per-value cost to one context and the cipher's
 * key schedule, and keeps the provider lookup off the hot path.
 *
 * Invariants: s->enc and s->mac hold the subkeys from moat_seal_new until
 * moat_seal_free wipes them; nothing here writes to a struct moat_seal after
 * it is made, which is what lets threads share one. Every buffer that held
 * key material (file contents, hex, the master key's copies) is wiped with
 * OPENSSL_cleanse before it goes out of scope or is freed.
 */
#include "store/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/file.h"
#include "core/hex.h"

#define ENC_INFO "moat store enc v1"
#define MAC_INFO "moat store mac v1"
#define HEX_KEY_LEN (2 * MOAT_SEAL_KEY_LEN)
/* A key file is 32 or 64-and-some bytes; past this it is something else. */
#define KEY_FILE_MAX 128
/* EVP lengths are int: feed longer inputs in pieces of this size. */
#define EVP_CHUNK (1 << 30)

struct moat_seal {
	uint8_t enc[MOAT_SEAL_KEY_LEN];
	uint8_t mac[MOAT_SEAL_KEY_LEN];
	EVP_CIPHER *gcm;
	EVP_MAC *hmac;
};

/* ---- reading a key ---- */

static bool is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Text, not key bytes: a random 32-byte key is all text with odds under 1e-13. */
static bool all_text(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((p[i] < 0x20 || p[i] > 0x7e) && !is_space(p[i]))
			return false;
	return true;
}

/*
 * Decodes a key in either accepted form from p[0..n) into key. what names
 * the source in messages ("PATH" or "environment variable NAME").
 */
static int parse_key(const uint8_t *p, size_t n, const char *what, uint8_t key[MOAT_SEAL_KEY_LEN],
		     char *err, size_t errlen)
{
	size_t len = n, i;
	uint8_t out[MOAT_SEAL_KEY_LEN];

	if (n == MOAT_SEAL_KEY_LEN && !all_text(p, n)) {
		memcpy(key, p, n);
		return 0;
	}
	while (len > 0 && is_space(p[len - 1]))
		len--;
	if (len != HEX_KEY_LEN) {
		moat_set_err(err, errlen, "%s: %zu bytes%s; expected 64 hex digits (and an optional "
			     "newline) or 32 random bytes", what, n,
			     n == MOAT_SEAL_KEY_LEN ? " of text" : "");
		return MOAT_ECONFIG;
	}
	for (i = 0; i < HEX_KEY_LEN; i++) {
		int v = moat_hex_digit(p[i]);

		if (v < 0) {
			OPENSSL_cleanse(out, sizeof(out));
			moat_set_err(err, errlen, "%s: character %zu is not a hex digit; expected "
				     "64 hex digits", what, i + 1);
			return MOAT_ECONFIG;
		}
		out[i / 2] = (uint8_t)(i % 2 ? out[i / 2] | v : v << 4);
	}
	memcpy(key, out, sizeof(out));
	OPENSSL_cleanse(out, sizeof(out));
	return 0;
}

/* Reads up to cap bytes of fd into buf; sets *n. Returns 0 or -1 with errno. */
static int read_up_to(int fd, uint8_t *buf, size_t cap, size_t *n)
{
	size_t len = 0;
	ssize_t k;

	while (len < cap) {
		k = read(fd, buf + len, cap - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		if (k == 0)
			break;
		len += (size_t)k;
	}
	*n = len;
	return 0;
}

/* The file must be ours alone: its mode is checked on the open descriptor, not the name. */
static int check_file(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		return MOAT_EIO;
	}
	if (!S_ISREG(st.st_mode)) {
		moat_set_err(err, errlen, "%s: not a regular file", path);
		return MOAT_ECONFIG;
	}
	if (st.st_mode & 077) {
		moat_set_err(err, errlen, "%s: mode %04o lets others %s the key; chmod 600 it", path,
			     (unsigned)(st.st_mode & 07777), st.st_mode & 044 ? "read" : "change");
		return MOAT_ECONFIG;
	}
	return 0;
}

static int load_file(const char *path, uint8_t key[MOAT_SEAL_KEY_LEN], char *err, size_t errlen)
{
	uint8_t buf[KEY_FILE_MAX + 1];
	size_t n = 0;
	int fd, rc;

	/* O_NONBLOCK: a FIFO put in the key's place must not hang start-up. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		return MOAT_EIO;
	}
	rc = check_file(fd, path, err, errlen);
	if (rc == 0 && read_up_to(fd, buf, sizeof(buf), &n) < 0) {
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		rc = MOAT_EIO;
	}
	close(fd);
	if (rc == 0 && n > KEY_FILE_MAX) {
		moat_set_err(err, errlen, "%s: more than %d bytes; expected 64 hex digits (and an "
			     "optional newline) or 32 random bytes", path, KEY_FILE_MAX);
		rc = MOAT_ECONFIG;
	}
	if (rc == 0)
		rc = parse_key(buf, n, path, key, err, errlen);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

int moat_seal_load_key(const char *path, const char *env_name, uint8_t key[MOAT_SEAL_KEY_LEN],
		       char *err, size_t errlen)
{
	char what[128];
	const char *v;

	if (path)
		return load_file(path, key, err, errlen);
	v = env_name ? getenv(env_name) : NULL;
	if (!v && env_name)
		moat_set_err(err, errlen, "no store key: no key file given and environment "
			     "variable %s is unset", env_name);
	else if (!v)
		moat_set_err(err, errlen, "no store key: no key file or environment variable given");
	if (!v)
		return MOAT_ECONFIG;
	snprintf(what, sizeof(what), "environment variable %s", env_name);
	return parse_key((const uint8_t *)v, strlen(v), what, key, err, errlen);
}

/* ---- making a key ---- */

/* Writes key as 64 hex digits and "\n" into text. */
static void hex_key(const uint8_t key[MOAT_SEAL_KEY_LEN], char text[HEX_KEY_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < MOAT_SEAL_KEY_LEN; i++) {
		text[2 * i] = digits[key[i] >> 4];
		text[2 * i + 1] = digits[key[i] & 15];
	}
	text[HEX_KEY_LEN] = '\n';
}

/* Fills text with a new key as 64 hex digits and "\n". Returns 0 or MOAT_EIO. */
static int new_hex_key(char text[HEX_KEY_LEN + 1])
{
	uint8_t key[MOAT_SEAL_KEY_LEN];

	if (RAND_bytes(key, sizeof(key)) != 1)
		return MOAT_EIO;
	hex_key(key, text);
	OPENSSL_cleanse(key, sizeof(key));
	return 0;
}

int moat_seal_write_key_file(const char *path, const uint8_t key[MOAT_SEAL_KEY_LEN], char *err,
			     size_t errlen)
{
	char text[HEX_KEY_LEN + 1];
	int rc;

	hex_key(key, text);
	rc = moat_file_replace(path, text, sizeof(text), err, errlen);
	OPENSSL_cleanse(text, sizeof(text));
	return rc;
}

int moat_seal_generate_key_file(const char *path, char *err, size_t errlen)
{
	char text[HEX_KEY_LEN + 1];
	int fd, rc;

	if ((rc = new_hex_key(text)) < 0) {
		moat_set_err(err, errlen, "%s: the random generator failed", path);
		return rc;
	}
	/* O_EXCL (which also refuses a symlink): a key is never replaced, or data would be lost. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = errno == EEXIST ? MOAT_EEXIST : MOAT_EIO;
		moat_set_err(err, errlen, "%s: %s", path, errno == EEXIST ?
			     "exists; a key file is never overwritten" : strerror(errno));
		OPENSSL_cleanse(text, sizeof(text));
		return rc;
	}
	/* The umask may have taken bits away; 0600 exactly is what the loader wants. */
	if (fchmod(fd, 0600) < 0 || moat_write_full(fd, text, sizeof(text)) < 0 || fsync(fd) < 0) {
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		OPENSSL_cleanse(text, sizeof(text));
		return MOAT_EIO;
	}
	OPENSSL_cleanse(text, sizeof(text));
	if (close(fd) < 0) {
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		unlink(path);
		return MOAT_EIO;
	}
	moat_sync_dir_of(path);
	return 0;
}

/* ---- subkeys ---- */

/* out = HKDF-SHA256(ikm = key, no salt, info). Returns 0 or MOAT_ENOMEM. */
static int derive(const uint8_t key[MOAT_SEAL_KEY_LEN], const char *info,
		  uint8_t out[MOAT_SEAL_KEY_LEN])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key,
						  MOAT_SEAL_KEY_LEN),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info)),
		OSSL_PARAM_construct_end(),
	};
	int ok = ctx && EVP_KDF_derive(ctx, out, MOAT_SEAL_KEY_LEN, params) == 1;

	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return ok ? 0 : MOAT_ENOMEM;
}

struct moat_seal *moat_seal_new_split(const uint8_t enc_key[MOAT_SEAL_KEY_LEN],
				      const uint8_t mac_key[MOAT_SEAL_KEY_LEN])
{
	struct moat_seal *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	s->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!s->gcm || !s->hmac || derive(enc_key, ENC_INFO, s->enc) < 0 ||
	    derive(mac_key, MAC_INFO, s->mac) < 0) {
		moat_seal_free(s);
		return NULL;
	}
	return s;
}

struct moat_seal *moat_seal_new(const uint8_t key[MOAT_SEAL_KEY_LEN])
{
	return moat_seal_new_split(key, key);
}

int moat_seal_random(void *out, size_t n)
{
	return RAND_bytes(out, (int)n) == 1 ? 0 : MOAT_EIO;
}

void moat_seal_wipe(void *p, size_t n)
{
	OPENSSL_cleanse(p, n);
}

void moat_seal_free(struct moat_seal *s)
{
	if (!s)
		return;
	EVP_CIPHER_free(s->gcm);
	EVP_MAC_free(s->hmac);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

/* ---- sealing ---- */

size_t moat_seal_size(size_t plain_len)
{
	return plain_len > SIZE_MAX - MOAT_SEAL_OVERHEAD ? 0 : plain_len + MOAT_SEAL_OVERHEAD;
}

size_t moat_unseal_size(size_t sealed_len)
{
	return sealed_len < MOAT_SEAL_OVERHEAD ? 0 : sealed_len - MOAT_SEAL_OVERHEAD;
}

/*
 * Feeds in[0..n) through c (as additional data when out is NULL), in pieces
 * EVP's int lengths can carry. GCM is a stream mode: out gets exactly n bytes.
 */
static bool update(EVP_CIPHER_CTX *c, uint8_t *out, const uint8_t *in, size_t n)
{
	int k, outl;

	while (n > 0) {
		k = n > EVP_CHUNK ? EVP_CHUNK : (int)n;
		if (EVP_CipherUpdate(c, out, &outl, in, k) != 1 || (out && outl != k))
			return false;
		if (out)
			out += k;
		in += k;
		n -= (size_t)k;
	}
	return true;
}

/*
 * A context keyed with the enc subkey and nonce, for enc(rypt) or not, that
 * has taken the additional data: the version byte, then the caller's aad.
 */
static EVP_CIPHER_CTX *start(const struct moat_seal *s, int enc, const uint8_t *nonce,
			     const void *aad, size_t aad_len)
{
	static const uint8_t version = MOAT_SEAL_VERSION;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	if (c && EVP_CipherInit_ex2(c, s->gcm, s->enc, nonce, enc, NULL) == 1 &&
	    update(c, NULL, &version, 1) && update(c, NULL, aad, aad_len))
		return c;
	EVP_CIPHER_CTX_free(c);
	return NULL;
}

int moat_seal(const struct moat_seal *s, const void *aad, size_t aad_len, const void *plain,
	      size_t n, uint8_t *out)
{
	uint8_t *nonce = out + 1, *body = nonce + MOAT_SEAL_NONCE_LEN, tail[EVP_MAX_BLOCK_LENGTH];
	EVP_CIPHER_CTX *c = NULL;
	OSSL_PARAM tag[2] = {OSSL_PARAM_END, OSSL_PARAM_END};
	int outl = 0, rc = MOAT_ENOMEM;

	if (moat_seal_size(n) == 0)
		return MOAT_EINVAL;
	if (RAND_bytes(nonce, MOAT_SEAL_NONCE_LEN) != 1) {
		rc = MOAT_EIO;
		goto fail;
	}
	if (!(c = start(s, 1, nonce, aad, aad_len)) || !update(c, body, plain, n) ||
	    EVP_EncryptFinal_ex(c, tail, &outl) != 1 || outl != 0)
		goto fail;
	tag[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, body + n,
						   MOAT_SEAL_TAG_LEN);
	if (EVP_CIPHER_CTX_get_params(c, tag) != 1)
		goto fail;
	EVP_CIPHER_CTX_free(c);
	out[0] = MOAT_SEAL_VERSION;
	return 0;
fail:
	EVP_CIPHER_CTX_free(c);
	OPENSSL_cleanse(out, moat_seal_size(n));
	return rc;
}

/* Opens in (a whole sealed value, version checked) into out[0..n). Returns 0 or a MOAT_E* code. */
static int open_value(const struct moat_seal *s, const void *aad, size_t aad_len,
		      const uint8_t *in, size_t n, uint8_t *out)
{
	const uint8_t *tag = in + 1 + MOAT_SEAL_NONCE_LEN + n;
	uint8_t tail[EVP_MAX_BLOCK_LENGTH];
	OSSL_PARAM params[2] = {OSSL_PARAM_END, OSSL_PARAM_END};
	EVP_CIPHER_CTX *c = start(s, 0, in + 1, aad, aad_len);
	int outl = 0, rc = MOAT_EMALFORMED;

	if (!c)
		return MOAT_ENOMEM;
	/* The tag is set before decrypting; only the final call checks it. */
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, (void *)tag,
						      MOAT_SEAL_TAG_LEN);
	if (EVP_CIPHER_CTX_set_params(c, params) != 1 ||
	    !update(c, out, in + 1 + MOAT_SEAL_NONCE_LEN, n))
		rc = MOAT_ENOMEM;
	else if (EVP_DecryptFinal_ex(c, tail, &outl) == 1 && outl == 0)
		rc = 0;
	EVP_CIPHER_CTX_free(c);
	return rc;
}

int moat_unseal(const struct moat_seal *s, const void *aad, size_t aad_len, const uint8_t *in,
		size_t in_len, uint8_t *out, size_t *out_len)
{
	size_t n = moat_unseal_size(in_len);
	int rc;

	if (in_len > 0 && in[0] != MOAT_SEAL_VERSION)
		rc = MOAT_EVERSION;
	else if (in_len < MOAT_SEAL_OVERHEAD)
		rc = MOAT_EMALFORMED;
	else
		rc = open_value(s, aad, aad_len, in, n, out);
	if (rc < 0) {
		/* Decrypted bytes are not plaintext until the tag matched. */
		if (n)
			OPENSSL_cleanse(out, n);
		return rc;
	}
	*out_len = n;
	return 0;
}

/* ---- lookup names ---- */

int moat_seal_name_key(const struct moat_seal *s, const char *domain, const void *name, size_t n,
		       uint8_t out[MOAT_SEAL_NAME_KEY_LEN])
{
	EVP_MAC_CTX *m = EVP_MAC_CTX_new(s->hmac);
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	uint8_t md[EVP_MAX_MD_SIZE];
	size_t len = 0;
	/* domain's NUL is the 0x00 separator. */
	int ok = m && EVP_MAC_init(m, s->mac, sizeof(s->mac), params) == 1 &&
		 EVP_MAC_update(m, (const uint8_t *)domain, strlen(domain) + 1) == 1 &&
		 (n == 0 || EVP_MAC_update(m, name, n) == 1) &&
		 EVP_MAC_final(m, md, &len, sizeof(md)) == 1 && len == MOAT_SEAL_NAME_KEY_LEN;

	EVP_MAC_CTX_free(m);
	if (ok)
		memcpy(out, md, MOAT_SEAL_NAME_KEY_LEN);
	OPENSSL_cleanse(md, sizeof(md));
	return ok ? 0 : MOAT_ENOMEM;
}
