/*
 * test_seal.c - unit tests for encryption at rest (src/store/seal.c).
 *
 * Covers: known answers computed apart from OpenSSL's EVP (Python
 * cryptography: HKDF, HMAC, AES-GCM), which pin the format on disk; round
 * trips of several sizes, 0 included; every byte of a sealed value changed,
 * every shorter length and one byte more refused, with out zeroed and
 * out_len untouched; another aad, another key; random nonces; the size
 * helpers at their edges; lookup names deterministic and separated by
 * domain and key; key files (raw, hex, hex with a newline or CRLF, upper
 * case, wrong lengths, non-hex, 32 bytes of text, mode 0644 and 0620,
 * missing, a directory), the environment variable and its precedence, and
 * that no message shows the key; key generation (mode 0600 whatever the
 * umask, loads back, never overwrites a file or a symlink).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "store/seal.h"

static char err[512];
static char dir[64];

#define KEY_A_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static void key_a(uint8_t key[MOAT_SEAL_KEY_LEN])
{
	size_t i;

	for (i = 0; i < MOAT_SEAL_KEY_LEN; i++)
		key[i] = (uint8_t)i;
}

static struct moat_seal *seal_a(void)
{
	uint8_t key[MOAT_SEAL_KEY_LEN];
	struct moat_seal *s;

	key_a(key);
	s = moat_seal_new(key);
	assert_non_null(s);
	return s;
}

static struct moat_seal *seal_b(void)
{
	uint8_t key[MOAT_SEAL_KEY_LEN];
	struct moat_seal *s;

	key_a(key);
	key[31] ^= 1;
	s = moat_seal_new(key);
	assert_non_null(s);
	return s;
}

static void from_hex(const char *hex, uint8_t *out, size_t n)
{
	size_t i;
	unsigned v;

	assert_int_equal(strlen(hex), 2 * n);
	for (i = 0; i < n; i++) {
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

/* A path in this run's scratch directory; the file is removed first. */
static const char *tmp_path(const char *name)
{
	static char path[128];

	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/test_seal.XXXXXX");
		assert_non_null(mkdtemp(dir));
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	return path;
}

static const char *write_file(const char *name, const void *data, size_t n, mode_t mode)
{
	const char *path = tmp_path(name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

static int load(const char *path, const char *env, uint8_t key[MOAT_SEAL_KEY_LEN])
{
	err[0] = '\0';
	return moat_seal_load_key(path, env, key, err, sizeof(err));
}

/* ---- known answers ---- */

static void test_known_answers(void **state)
{
	static const char name_hex[] =
		"94ac2ba6e98be8726e1138873e2d16f55009ad7384838bf003861d7d6360332e";
	static const char blob_hex[] = "01a0a1a2a3a4a5a6a7a8a9aaab61f6e1ba5b99e9e2ca71a482949356"
				       "5d4e720713f26b19e2a65769";
	static const char aad[] = "retained\0a/b";
	struct moat_seal *s = seal_a();
	uint8_t want[MOAT_SEAL_NAME_KEY_LEN], got[MOAT_SEAL_NAME_KEY_LEN], blob[40], out[40];
	size_t n = 0;

	(void)state;
	from_hex(name_hex, want, sizeof(want));
	assert_int_equal(moat_seal_name_key(s, "clientid", "sensor-17", 9, got), 0);
	assert_memory_equal(got, want, sizeof(want));
	from_hex(blob_hex, blob, sizeof(blob));
	assert_int_equal(moat_unseal(s, aad, sizeof(aad) - 1, blob, sizeof(blob), out, &n), 0);
	assert_int_equal(n, 11);
	assert_memory_equal(out, "hello, moat", 11);
	moat_seal_free(s);
}

/* ---- sealing ---- */

static void test_sizes(void **state)
{
	(void)state;
	assert_int_equal(MOAT_SEAL_OVERHEAD, 29);
	assert_int_equal(moat_seal_size(0), 29);
	assert_int_equal(moat_seal_size(100), 129);
	assert_int_equal(moat_seal_size(SIZE_MAX - 29), SIZE_MAX);
	assert_int_equal(moat_seal_size(SIZE_MAX - 28), 0);
	assert_int_equal(moat_unseal_size(0), 0);
	assert_int_equal(moat_unseal_size(28), 0);
	assert_int_equal(moat_unseal_size(29), 0);
	assert_int_equal(moat_unseal_size(30), 1);
}

static void test_round_trip(void **state)
{
	static const size_t sizes[] = {0, 1, 15, 16, 17, 255, 4096, 100003};
	struct moat_seal *s = seal_a();
	size_t i, j, n;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i];
		uint8_t *plain = malloc(len + 1), *sealed = malloc(moat_seal_size(len));
		uint8_t *out = malloc(len + 1);

		assert_non_null(plain);
		assert_non_null(sealed);
		assert_non_null(out);
		for (j = 0; j < len; j++)
			plain[j] = (uint8_t)(j * 7 + i);
		assert_int_equal(moat_seal(s, "t\0k", 3, len ? plain : NULL, len, sealed), 0);
		assert_int_equal(sealed[0], MOAT_SEAL_VERSION);
		n = 12345;
		assert_int_equal(moat_unseal(s, "t\0k", 3, sealed, moat_seal_size(len), out, &n), 0);
		assert_int_equal(n, len);
		if (len)
			assert_memory_equal(out, plain, len);
		free(plain);
		free(sealed);
		free(out);
	}
	moat_seal_free(s);
}

static void test_no_aad(void **state)
{
	struct moat_seal *s = seal_a();
	uint8_t sealed[MOAT_SEAL_OVERHEAD + 3], out[3];
	size_t n = 0;

	(void)state;
	assert_int_equal(moat_seal(s, NULL, 0, "abc", 3, sealed), 0);
	assert_int_equal(moat_unseal(s, NULL, 0, sealed, sizeof(sealed), out, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(out, "abc", 3);
	/* An empty aad is no aad. */
	assert_int_equal(moat_unseal(s, "", 0, sealed, sizeof(sealed), out, &n), 0);
	moat_seal_free(s);
}

/* in does not open under (s, aad): rc as given, out zeroed, out_len untouched. */
static void refused(const struct moat_seal *s, const char *aad, const uint8_t *in, size_t len,
		    int want)
{
	uint8_t out[256];
	size_t n = 777, i;

	assert_true(len <= sizeof(out) + MOAT_SEAL_OVERHEAD);
	memset(out, 0xaa, sizeof(out));
	assert_int_equal(moat_unseal(s, aad, strlen(aad), in, len, out, &n), want);
	assert_int_equal(n, 777);
	for (i = 0; i < moat_unseal_size(len); i++)
		assert_int_equal(out[i], 0);
}

static void test_tamper_every_byte(void **state)
{
	static const char plain[] = "payload of a retained message";
	struct moat_seal *s = seal_a();
	uint8_t sealed[MOAT_SEAL_OVERHEAD + sizeof(plain)];
	size_t i;
	int bit;

	(void)state;
	assert_int_equal(moat_seal(s, "row", 3, plain, sizeof(plain), sealed), 0);
	for (i = 0; i < sizeof(sealed); i++) {
		for (bit = 0; bit < 8; bit++) {
			sealed[i] ^= (uint8_t)(1u << bit);
			refused(s, "row", sealed, sizeof(sealed),
				i == 0 ? MOAT_EVERSION : MOAT_EMALFORMED);
			sealed[i] ^= (uint8_t)(1u << bit);
		}
	}
	moat_seal_free(s);
}

static void test_lengths(void **state)
{
	struct moat_seal *s = seal_a();
	uint8_t sealed[MOAT_SEAL_OVERHEAD + 8 + 1];
	size_t len;

	(void)state;
	assert_int_equal(moat_seal(s, "row", 3, "12345678", 8, sealed), 0);
	refused(s, "row", sealed, 0, MOAT_EMALFORMED);
	for (len = 1; len < MOAT_SEAL_OVERHEAD + 8; len++)
		refused(s, "row", sealed, len, MOAT_EMALFORMED);
	/* One byte more: the tag is read from the wrong place. */
	sealed[sizeof(sealed) - 1] = 0;
	refused(s, "row", sealed, sizeof(sealed), MOAT_EMALFORMED);
	/* A version this code does not write is named as such, at any length. */
	sealed[0] = 0x02;
	refused(s, "row", sealed, 1, MOAT_EVERSION);
	refused(s, "row", sealed, MOAT_SEAL_OVERHEAD + 8, MOAT_EVERSION);
	moat_seal_free(s);
}

static void test_wrong_aad(void **state)
{
	struct moat_seal *s = seal_a();
	uint8_t sealed[MOAT_SEAL_OVERHEAD + 5];

	(void)state;
	assert_int_equal(moat_seal(s, "sessions/c1", 11, "state", 5, sealed), 0);
	refused(s, "sessions/c2", sealed, sizeof(sealed), MOAT_EMALFORMED);
	refused(s, "sessions/c", sealed, sizeof(sealed), MOAT_EMALFORMED);
	refused(s, "sessions/c1 ", sealed, sizeof(sealed), MOAT_EMALFORMED);
	refused(s, "", sealed, sizeof(sealed), MOAT_EMALFORMED);
	moat_seal_free(s);
}

static void test_wrong_key(void **state)
{
	struct moat_seal *a = seal_a(), *b = seal_b();
	uint8_t sealed[MOAT_SEAL_OVERHEAD + 5];

	(void)state;
	assert_int_equal(moat_seal(a, "row", 3, "value", 5, sealed), 0);
	refused(b, "row", sealed, sizeof(sealed), MOAT_EMALFORMED);
	/* The store's key check: a known value sealed at creation opens only under its key. */
	assert_int_equal(moat_seal(a, "moat store check", 16, "", 0, sealed), 0);
	refused(b, "moat store check", sealed, MOAT_SEAL_OVERHEAD, MOAT_EMALFORMED);
	moat_seal_free(a);
	moat_seal_free(b);
}

static void test_random_nonce(void **state)
{
	struct moat_seal *s = seal_a();
	uint8_t x[MOAT_SEAL_OVERHEAD + 4], y[MOAT_SEAL_OVERHEAD + 4], out[4];
	size_t n = 0;

	(void)state;
	assert_int_equal(moat_seal(s, "row", 3, "same", 4, x), 0);
	assert_int_equal(moat_seal(s, "row", 3, "same", 4, y), 0);
	assert_memory_not_equal(x + 1, y + 1, MOAT_SEAL_NONCE_LEN);
	assert_memory_not_equal(x + 1 + MOAT_SEAL_NONCE_LEN, y + 1 + MOAT_SEAL_NONCE_LEN,
				4 + MOAT_SEAL_TAG_LEN);
	assert_int_equal(moat_unseal(s, "row", 3, y, sizeof(y), out, &n), 0);
	assert_memory_equal(out, "same", 4);
	moat_seal_free(s);
}

/* ---- lookup names ---- */

static void test_name_keys(void **state)
{
	struct moat_seal *a = seal_a(), *a2 = seal_a(), *b = seal_b();
	uint8_t k1[32], k2[32], k3[32];

	(void)state;
	assert_int_equal(moat_seal_name_key(a, "clientid", "dev-1", 5, k1), 0);
	assert_int_equal(moat_seal_name_key(a2, "clientid", "dev-1", 5, k2), 0);
	assert_memory_equal(k1, k2, 32);
	/* Another domain, name, or key: another lookup key. */
	assert_int_equal(moat_seal_name_key(a, "username", "dev-1", 5, k2), 0);
	assert_memory_not_equal(k1, k2, 32);
	assert_int_equal(moat_seal_name_key(a, "clientid", "dev-2", 5, k2), 0);
	assert_memory_not_equal(k1, k2, 32);
	assert_int_equal(moat_seal_name_key(b, "clientid", "dev-1", 5, k2), 0);
	assert_memory_not_equal(k1, k2, 32);
	/* The separator: ("ab", "c") is not ("a", "bc"); the name may hold NULs. */
	assert_int_equal(moat_seal_name_key(a, "ab", "c", 1, k1), 0);
	assert_int_equal(moat_seal_name_key(a, "a", "bc", 2, k2), 0);
	assert_memory_not_equal(k1, k2, 32);
	assert_int_equal(moat_seal_name_key(a, "a", "b\0c", 3, k3), 0);
	assert_memory_not_equal(k2, k3, 32);
	/* The empty name has a key, not the domain's alone. */
	assert_int_equal(moat_seal_name_key(a, "clientid", NULL, 0, k1), 0);
	assert_int_equal(moat_seal_name_key(a, "clientid", "", 0, k2), 0);
	assert_memory_equal(k1, k2, 32);
	moat_seal_free(a);
	moat_seal_free(a2);
	moat_seal_free(b);
	moat_seal_free(NULL);
}

/* ---- key files ---- */

static void assert_key_a(const uint8_t key[MOAT_SEAL_KEY_LEN])
{
	uint8_t want[MOAT_SEAL_KEY_LEN];

	key_a(want);
	assert_memory_equal(key, want, MOAT_SEAL_KEY_LEN);
}

static void test_key_forms(void **state)
{
	static const char *const good[] = {
		KEY_A_HEX, KEY_A_HEX "\n", KEY_A_HEX "\r\n", KEY_A_HEX " \t\n\n",
		"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\n",
	};
	uint8_t raw[MOAT_SEAL_KEY_LEN], key[MOAT_SEAL_KEY_LEN];
	const char *path;
	size_t i;

	(void)state;
	key_a(raw);
	path = write_file("raw.key", raw, sizeof(raw), 0600);
	assert_int_equal(load(path, NULL, key), 0);
	assert_key_a(key);
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(key, 0, sizeof(key));
		path = write_file("hex.key", good[i], strlen(good[i]), 0400);
		assert_int_equal(load(path, NULL, key), 0);
		assert_key_a(key);
	}
}

/* path holding text is refused with MOAT_ECONFIG, err holding want and never the key. */
static void refused_file(const char *text, size_t n, const char *want)
{
	uint8_t key[MOAT_SEAL_KEY_LEN], before[MOAT_SEAL_KEY_LEN];
	const char *path = write_file("bad.key", text, n, 0600);

	memset(key, 0x5a, sizeof(key));
	memcpy(before, key, sizeof(key));
	assert_int_equal(load(path, NULL, key), MOAT_ECONFIG);
	assert_memory_equal(key, before, sizeof(key));
	assert_non_null(strstr(err, path));
	if (!strstr(err, want))
		fail_msg("message \"%s\" lacks \"%s\"", err, want);
	assert_null(strstr(err, "0102030405"));
	assert_null(strstr(err, "sesame"));
}

static void test_key_refused(void **state)
{
	uint8_t raw[MOAT_SEAL_KEY_LEN + 1];

	(void)state;
	key_a(raw);
	raw[32] = '\n';
	refused_file((const char *)raw, 33, "33 bytes; expected 64 hex digits");
	refused_file((const char *)raw, 31, "31 bytes; expected");
	refused_file("", 0, "0 bytes; expected");
	refused_file(KEY_A_HEX "0", 65, "65 bytes; expected");
	refused_file(KEY_A_HEX "00\n", 67, "67 bytes; expected");
	refused_file(KEY_A_HEX + 1, 63, "63 bytes; expected");
	refused_file(" " KEY_A_HEX, 65, "65 bytes");
	refused_file("0g0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 64,
		     "character 2 is not a hex digit");
	refused_file("000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1\n", 65,
		     "character 33 is not a hex digit");
	/* A passphrase, or a 128-bit key in hex, is not 32 random bytes. */
	refused_file("open sesame, open sesame, sesame", 32, "32 bytes of text");
	refused_file("00010203040506070809000102030405", 32, "32 bytes of text");
	{
		char big[300];

		memset(big, '0', sizeof(big));
		refused_file(big, sizeof(big), "more than 128 bytes");
	}
}

static void test_key_file_mode(void **state)
{
	uint8_t key[MOAT_SEAL_KEY_LEN];
	const char *path;

	(void)state;
	path = write_file("open.key", KEY_A_HEX "\n", 65, 0644);
	assert_int_equal(load(path, NULL, key), MOAT_ECONFIG);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "mode 0644 lets others read the key; chmod 600 it"));
	path = write_file("open.key", KEY_A_HEX "\n", 65, 0620);
	assert_int_equal(load(path, NULL, key), MOAT_ECONFIG);
	assert_non_null(strstr(err, "mode 0620 lets others change the key"));
	path = write_file("open.key", KEY_A_HEX "\n", 65, 0604);
	assert_int_equal(load(path, NULL, key), MOAT_ECONFIG);
	assert_non_null(strstr(err, "mode 0604"));
}

static void test_key_file_symlink(void **state)
{
	uint8_t key[MOAT_SEAL_KEY_LEN];
	char link[128];
	const char *path;

	(void)state;
	path = write_file("target.key", KEY_A_HEX "\n", 65, 0600);
	snprintf(link, sizeof(link), "%s/link.key", dir);
	unlink(link);
	assert_int_equal(symlink(path, link), 0);
	assert_int_equal(load(link, NULL, key), 0);
	assert_key_a(key);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(load(link, NULL, key), MOAT_ECONFIG);
	assert_non_null(strstr(err, "mode 0640"));
	unlink(link);
	unlink(path);
}

static void test_key_file_missing(void **state)
{
	uint8_t key[MOAT_SEAL_KEY_LEN];

	(void)state;
	assert_int_equal(load(tmp_path("missing.key"), NULL, key), MOAT_EIO);
	assert_non_null(strstr(err, "missing.key: No such file or directory"));
	assert_int_equal(chmod(dir, 0700), 0);
	assert_int_equal(load(dir, NULL, key), MOAT_ECONFIG);
	assert_non_null(strstr(err, "not a regular file"));
}

static void test_key_env(void **state)
{
	uint8_t key[MOAT_SEAL_KEY_LEN];
	const char *path;

	(void)state;
	unsetenv("MOAT_TEST_SEAL_KEY");
	assert_int_equal(load(NULL, "MOAT_TEST_SEAL_KEY", key), MOAT_ECONFIG);
	assert_non_null(strstr(err, "MOAT_TEST_SEAL_KEY is unset"));
	assert_int_equal(load(NULL, NULL, key), MOAT_ECONFIG);
	assert_non_null(strstr(err, "no store key"));

	setenv("MOAT_TEST_SEAL_KEY", KEY_A_HEX, 1);
	memset(key, 0, sizeof(key));
	assert_int_equal(load(NULL, "MOAT_TEST_SEAL_KEY", key), 0);
	assert_key_a(key);
	setenv("MOAT_TEST_SEAL_KEY", KEY_A_HEX "\n", 1);
	assert_int_equal(load(NULL, "MOAT_TEST_SEAL_KEY", key), 0);
	assert_key_a(key);

	/* A key file given wins over the variable, even when it is refused. */
	path = write_file("other.key", KEY_A_HEX "ff", 66, 0600);
	assert_int_equal(load(path, "MOAT_TEST_SEAL_KEY", key), MOAT_ECONFIG);
	assert_non_null(strstr(err, path));

	setenv("MOAT_TEST_SEAL_KEY", "sesame", 1);
	assert_int_equal(load(NULL, "MOAT_TEST_SEAL_KEY", key), MOAT_ECONFIG);
	assert_non_null(strstr(err, "environment variable MOAT_TEST_SEAL_KEY: 6 bytes"));
	assert_null(strstr(err, "sesame"));
	setenv("MOAT_TEST_SEAL_KEY", "", 1);
	assert_int_equal(load(NULL, "MOAT_TEST_SEAL_KEY", key), MOAT_ECONFIG);
	unsetenv("MOAT_TEST_SEAL_KEY");
}

/* ---- generating a key ---- */

static void test_generate(void **state)
{
	uint8_t k1[MOAT_SEAL_KEY_LEN], k2[MOAT_SEAL_KEY_LEN];
	char text[80], before[80];
	const char *path = tmp_path("new.key");
	struct stat st;
	mode_t old = umask(0277); /* alone, it would make the file 0400 */
	FILE *f;
	size_t n;

	(void)state;
	assert_int_equal(moat_seal_generate_key_file(path, err, sizeof(err)), 0);
	umask(old);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 65);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(text, 1, sizeof(text), f);
	fclose(f);
	assert_int_equal(n, 65);
	assert_int_equal(text[64], '\n');
	assert_int_equal(strspn(text, "0123456789abcdef"), 64);
	assert_int_equal(load(path, NULL, k1), 0);

	/* Never overwritten: the old key stays as it was. */
	memcpy(before, text, n);
	assert_int_equal(moat_seal_generate_key_file(path, err, sizeof(err)), MOAT_EEXIST);
	assert_non_null(strstr(err, "never overwritten"));
	assert_int_equal(load(path, NULL, k2), 0);
	assert_memory_equal(k1, k2, sizeof(k1));

	/* Two keys differ. */
	path = tmp_path("new2.key");
	assert_int_equal(moat_seal_generate_key_file(path, err, sizeof(err)), 0);
	assert_int_equal(load(path, NULL, k2), 0);
	assert_memory_not_equal(k1, k2, sizeof(k1));
	unlink(path);

	/* Nor is a symlink followed, dangling or not. */
	path = tmp_path("dangling.key");
	assert_int_equal(symlink("/nonexistent-dir/x", path), 0);
	assert_int_equal(moat_seal_generate_key_file(path, err, sizeof(err)), MOAT_EEXIST);
	unlink(path);

	assert_int_equal(moat_seal_generate_key_file("/nonexistent-dir/k", err, sizeof(err)),
			 MOAT_EIO);
	assert_non_null(strstr(err, "/nonexistent-dir/k: "));
	unlink(tmp_path("new.key"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_no_aad),
		cmocka_unit_test(test_tamper_every_byte),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_wrong_aad),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_random_nonce),
		cmocka_unit_test(test_name_keys),
		cmocka_unit_test(test_key_forms),
		cmocka_unit_test(test_key_refused),
		cmocka_unit_test(test_key_file_mode),
		cmocka_unit_test(test_key_file_symlink),
		cmocka_unit_test(test_key_file_missing),
		cmocka_unit_test(test_key_env),
		cmocka_unit_test(test_generate),
	};
	static const char *const names[] = {"raw.key", "hex.key", "bad.key", "open.key",
					    "target.key", "link.key", "other.key",
					    "new.key", "new2.key", "dangling.key"};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	size_t i;

	for (i = 0; dir[0] && i < sizeof(names) / sizeof(names[0]); i++)
		unlink(tmp_path(names[i]));
	if (dir[0])
		rmdir(dir);
	return rc;
}
