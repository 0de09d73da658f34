/*
 * fuzz_unseal.c - libFuzzer target: opening sealed values (src/store/seal.c).
 *
 * The master key is fixed (bytes 0..31) and so is the aad ("fuzz\0row"),
 * so a seed that is a real sealed value (corpus/fuzz_unseal/valid-*.bin,
 * sealed under them) lets the fuzzer mutate near the one shape that opens.
 * Checked, for any input:
 *   - moat_unseal returns 0, MOAT_EVERSION exactly when the first byte is
 *     not 0x01, or MOAT_EMALFORMED; it reads only the input (an exactly
 *     sized copy) and writes only moat_unseal_size(size) bytes of out (an
 *     exactly sized buffer), which it leaves zeroed on failure, with out_len
 *     untouched;
 *   - what opens has size - MOAT_SEAL_OVERHEAD bytes, and opens again to
 *     the same bytes; it does not open under another aad or another key;
 *   - the input as plaintext: sealed, it opens to itself, and not under
 *     another aad, another key, or with its last byte changed or cut.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "store/seal.h"

#include "fuzz_common.h"

#define AAD "fuzz\0row"
#define AAD_LEN (sizeof(AAD) - 1)
#define OUT_CANARY 777

static struct moat_seal *key_a, *key_b;

/* Made once: the fuzzer runs many inputs through one process. */
static void init(void)
{
	uint8_t key[MOAT_SEAL_KEY_LEN];
	size_t i;

	if (key_a)
		return;
	for (i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)i;
	key_a = moat_seal_new(key);
	key[31] ^= 1;
	key_b = moat_seal_new(key);
	FZ_ASSERT(key_a && key_b);
}

/* An exactly-sized heap copy (malloc(0) aside), so ASan sees any access past n. */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	FZ_ASSERT(q != NULL);
	if (n)
		memcpy(q, p, n);
	return q;
}

/* Opens in[0..n) under (s, aad); checks the failure contract. Returns rc; *out owned. */
static int open_as(const struct moat_seal *s, const char *aad, size_t aad_len, const uint8_t *in,
		   size_t n, uint8_t **out, size_t *out_len)
{
	size_t cap = moat_unseal_size(n), i;
	int rc;

	*out = malloc(cap ? cap : 1);
	FZ_ASSERT(*out != NULL);
	memset(*out, 0xaa, cap);
	*out_len = OUT_CANARY;
	rc = moat_unseal(s, aad, aad_len, in, n, *out, out_len);
	FZ_ASSERT(rc == 0 || rc == MOAT_EVERSION || rc == MOAT_EMALFORMED);
	FZ_ASSERT((rc == MOAT_EVERSION) == (n > 0 && in[0] != MOAT_SEAL_VERSION));
	if (rc == 0) {
		FZ_ASSERT(n >= MOAT_SEAL_OVERHEAD && *out_len == cap);
		return 0;
	}
	FZ_ASSERT(*out_len == OUT_CANARY);
	for (i = 0; i < cap; i++)
		FZ_ASSERT((*out)[i] == 0);
	return rc;
}

static void check_refused(const struct moat_seal *s, const char *aad, size_t aad_len,
			  const uint8_t *in, size_t n)
{
	uint8_t *out;
	size_t len;

	FZ_ASSERT(open_as(s, aad, aad_len, in, n, &out, &len) != 0);
	free(out);
}

/* The input as a sealed value. */
static void fuzz_open(const uint8_t *data, size_t size)
{
	uint8_t *in = dup_exact(data, size), *out, *again;
	size_t len, len2;

	if (open_as(key_a, AAD, AAD_LEN, in, size, &out, &len) == 0) {
		FZ_ASSERT(open_as(key_a, AAD, AAD_LEN, in, size, &again, &len2) == 0);
		FZ_ASSERT(len == len2 && (len == 0 || memcmp(out, again, len) == 0));
		free(again);
		check_refused(key_a, "fuzz\0rox", AAD_LEN, in, size);
		check_refused(key_b, AAD, AAD_LEN, in, size);
	}
	free(out);
	free(in);
}

/* The input as a plaintext. */
static void fuzz_seal(const uint8_t *data, size_t size)
{
	size_t n = moat_seal_size(size), len;
	uint8_t *plain = dup_exact(data, size), *sealed = malloc(n), *out;

	FZ_ASSERT(sealed != NULL);
	FZ_ASSERT(moat_seal(key_a, AAD, AAD_LEN, size ? plain : NULL, size, sealed) == 0);
	FZ_ASSERT(sealed[0] == MOAT_SEAL_VERSION);
	FZ_ASSERT(open_as(key_a, AAD, AAD_LEN, sealed, n, &out, &len) == 0);
	FZ_ASSERT(len == size && (size == 0 || memcmp(out, data, size) == 0));
	free(out);
	check_refused(key_a, AAD, AAD_LEN - 1, sealed, n);
	check_refused(key_b, AAD, AAD_LEN, sealed, n);
	check_refused(key_a, AAD, AAD_LEN, sealed, n - 1);
	sealed[n - 1] ^= (uint8_t)(1u << (size % 8));
	check_refused(key_a, AAD, AAD_LEN, sealed, n);
	free(sealed);
	free(plain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init();
	fuzz_open(data, size);
	fuzz_seal(data, size);
	return 0;
}
