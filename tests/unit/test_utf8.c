/*
 * test_utf8.c - unit tests for moat_utf8_check (src/core/utf8.c).
 *
 * Covers: ASCII of every length 0..40 and a bad byte at every position (the
 * implementation skips eight ASCII bytes at a time, so the boundaries of that
 * fast path matter); well-formed 2-, 3- and 4-byte sequences at the edges of
 * their ranges; overlong forms, surrogates, code points above U+10FFFF, lone
 * continuation bytes and truncated sequences (all ill-formed, RFC 3629);
 * U+0000 and the MOAT_UTF8_ALLOW_NUL flag; the C0/C1 controls and Unicode
 * non-characters that MQTT discourages and MOAT_UTF8_ALLOW_DISCOURAGED; the
 * severity order ILLFORMED > NUL > DISCOURAGED; and a brute-force comparison
 * against a reference decoder written here from RFC 3629 for every 1-, 2- and
 * 3-byte string, a large sample of 4-byte strings, and sequences embedded at
 * every offset of an ASCII context.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/utf8.h"

#define ALLOW_ALL (MOAT_UTF8_ALLOW_NUL | MOAT_UTF8_ALLOW_DISCOURAGED)

/* Checks a string literal (which may hold \x escapes and NULs) without its terminator. */
#define CHK(lit, flags) moat_utf8_check((const uint8_t *)(lit), sizeof(lit) - 1, (flags))

static const char printable[] =
	"The quick brown fox jumps over the lazy dog 0123456789 ~!@$%^&*()_+{}|:<>?";

/* ---- reference decoder, written from RFC 3629 section 3 and 4 ---- */

static bool ref_discouraged(uint32_t cp)
{
	if (cp >= 0x01 && cp <= 0x1F)
		return true;
	if (cp >= 0x7F && cp <= 0x9F)
		return true;
	if (cp >= 0xFDD0 && cp <= 0xFDEF)
		return true;
	/* U+nFFFE and U+nFFFF in every plane */
	return (cp & 0xFFFF) == 0xFFFE || (cp & 0xFFFF) == 0xFFFF;
}

static enum moat_utf8_result ref_check(const uint8_t *p, size_t n, unsigned flags)
{
	enum moat_utf8_result worst = MOAT_UTF8_OK;
	size_t i = 0;

	while (i < n) {
		uint8_t b = p[i];
		uint32_t cp, min;
		size_t len, k;

		if (b < 0x80) {
			len = 1;
			cp = b;
			min = 0;
		} else if ((b & 0xE0) == 0xC0) {
			len = 2;
			cp = b & 0x1Fu;
			min = 0x80;
		} else if ((b & 0xF0) == 0xE0) {
			len = 3;
			cp = b & 0x0Fu;
			min = 0x800;
		} else if ((b & 0xF8) == 0xF0) {
			len = 4;
			cp = b & 0x07u;
			min = 0x10000;
		} else {
			return MOAT_UTF8_ILLFORMED; /* continuation byte or F8..FF */
		}
		if (n - i < len)
			return MOAT_UTF8_ILLFORMED;
		for (k = 1; k < len; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return MOAT_UTF8_ILLFORMED;
			cp = cp << 6 | (p[i + k] & 0x3Fu);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return MOAT_UTF8_ILLFORMED;
		i += len;
		if (cp == 0) {
			if (!(flags & MOAT_UTF8_ALLOW_NUL))
				worst = MOAT_UTF8_NUL;
		} else if (ref_discouraged(cp) && !(flags & MOAT_UTF8_ALLOW_DISCOURAGED)) {
			if (worst == MOAT_UTF8_OK)
				worst = MOAT_UTF8_DISCOURAGED;
		}
	}
	return worst;
}

/* Encodes cp (assumed <= 0x10FFFF) as UTF-8 into out; returns the length. */
static size_t enc(uint32_t cp, uint8_t *out)
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xC0 | cp >> 6);
		out[1] = (uint8_t)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xE0 | cp >> 12);
		out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (uint8_t)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (uint8_t)(0xF0 | cp >> 18);
	out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (uint8_t)(0x80 | (cp & 0x3F));
	return 4;
}

/* Fails with a readable message if check and reference disagree on p[0..n). */
static void agree(const uint8_t *p, size_t n, unsigned flags)
{
	enum moat_utf8_result got = moat_utf8_check(p, n, flags);
	enum moat_utf8_result want = ref_check(p, n, flags);

	if (got != want) {
		char hex[3 * 64 + 1] = "";
		size_t i;
		for (i = 0; i < n && i < 64; i++)
			snprintf(hex + 3 * i, 4, "%02X ", p[i]);
		fail_msg("flags %u, bytes [%s]: got %d, reference %d", flags, hex, got, want);
	}
}

/* ---- tests ---- */

static void test_reference_sanity(void **state)
{
	(void)state;
	/* The reference itself must agree with hand-known answers. */
	assert_int_equal(ref_check((const uint8_t *)"\xC3\xA9", 2, 0), MOAT_UTF8_OK);
	assert_int_equal(ref_check((const uint8_t *)"\xC0\x80", 2, 0), MOAT_UTF8_ILLFORMED);
	assert_int_equal(ref_check((const uint8_t *)"\xED\xA0\x80", 3, 0), MOAT_UTF8_ILLFORMED);
	assert_int_equal(ref_check((const uint8_t *)"\xF4\x90\x80\x80", 4, 0), MOAT_UTF8_ILLFORMED);
	assert_int_equal(ref_check((const uint8_t *)"\x00", 1, 0), MOAT_UTF8_NUL);
	assert_int_equal(ref_check((const uint8_t *)"\x01", 1, 0), MOAT_UTF8_DISCOURAGED);
	assert_int_equal(ref_check((const uint8_t *)"\xEF\xBF\xBF", 3, 0), MOAT_UTF8_DISCOURAGED);
}

static void test_ascii_every_length(void **state)
{
	uint8_t buf[64];
	size_t n;

	(void)state;
	assert_int_equal(moat_utf8_check(NULL, 0, 0), MOAT_UTF8_OK);
	for (n = 0; n <= 40; n++) {
		memcpy(buf, printable, n);
		assert_int_equal(moat_utf8_check(buf, n, 0), MOAT_UTF8_OK);
		assert_int_equal(moat_utf8_check(buf, n, ALLOW_ALL), MOAT_UTF8_OK);
	}
	/* Every printable ASCII byte, including the edges 0x20 and 0x7E. */
	for (n = 0; n < 0x5F; n++)
		buf[n % 40] = (uint8_t)(0x20 + n);
	assert_int_equal(moat_utf8_check(buf, 40, 0), MOAT_UTF8_OK);
	memset(buf, 0x20, sizeof(buf));
	assert_int_equal(moat_utf8_check(buf, sizeof(buf), 0), MOAT_UTF8_OK);
	memset(buf, 0x7E, sizeof(buf));
	assert_int_equal(moat_utf8_check(buf, sizeof(buf), 0), MOAT_UTF8_OK);
}

/* A single odd byte at every position of every length (fast path boundaries). */
static void test_bad_byte_every_position(void **state)
{
	static const struct {
		uint8_t b;
		enum moat_utf8_result strict, lax;
	} cases[] = {
		{0x80, MOAT_UTF8_ILLFORMED, MOAT_UTF8_ILLFORMED},
		{0xBF, MOAT_UTF8_ILLFORMED, MOAT_UTF8_ILLFORMED},
		{0xC0, MOAT_UTF8_ILLFORMED, MOAT_UTF8_ILLFORMED},
		{0xC3, MOAT_UTF8_ILLFORMED, MOAT_UTF8_ILLFORMED}, /* lead without continuation */
		{0xE2, MOAT_UTF8_ILLFORMED, MOAT_UTF8_ILLFORMED},
		{0xF0, MOAT_UTF8_ILLFORMED, MOAT_UTF8_ILLFORMED},
		{0xFF, MOAT_UTF8_ILLFORMED, MOAT_UTF8_ILLFORMED},
		{0x00, MOAT_UTF8_NUL, MOAT_UTF8_OK},
		{0x01, MOAT_UTF8_DISCOURAGED, MOAT_UTF8_OK},
		{0x09, MOAT_UTF8_DISCOURAGED, MOAT_UTF8_OK},
		{0x1F, MOAT_UTF8_DISCOURAGED, MOAT_UTF8_OK},
		{0x7F, MOAT_UTF8_DISCOURAGED, MOAT_UTF8_OK},
	};
	uint8_t buf[48];
	size_t len, pos, c;

	(void)state;
	for (len = 1; len <= 40; len++) {
		for (pos = 0; pos < len && pos < 40; pos++) {
			for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
				memcpy(buf, printable, len);
				buf[pos] = cases[c].b;
				if (moat_utf8_check(buf, len, 0) != cases[c].strict)
					fail_msg("byte %02X at %zu of %zu: got %d want %d", cases[c].b,
						 pos, len, moat_utf8_check(buf, len, 0),
						 cases[c].strict);
				if (moat_utf8_check(buf, len, ALLOW_ALL) != cases[c].lax)
					fail_msg("byte %02X at %zu of %zu (lax): got %d want %d",
						 cases[c].b, pos, len,
						 moat_utf8_check(buf, len, ALLOW_ALL), cases[c].lax);
			}
		}
	}
	/* The brief's exact case: a long string, bad byte at 0..17. */
	for (pos = 0; pos <= 17; pos++) {
		memcpy(buf, printable, 40);
		buf[pos] = 0x80;
		assert_int_equal(moat_utf8_check(buf, 40, 0), MOAT_UTF8_ILLFORMED);
		buf[pos] = 0x00;
		assert_int_equal(moat_utf8_check(buf, 40, 0), MOAT_UTF8_NUL);
		buf[pos] = 0x1B;
		assert_int_equal(moat_utf8_check(buf, 40, 0), MOAT_UTF8_DISCOURAGED);
	}
}

/* A multi-byte character at every offset of an ASCII string. */
static void test_multibyte_every_position(void **state)
{
	static const uint32_t cps[] = {0xE9, 0x20AC, 0x1F600};
	uint8_t buf[64], seq[4];
	size_t len, pos, i, sl;

	(void)state;
	for (i = 0; i < 3; i++) {
		sl = enc(cps[i], seq);
		for (len = sl; len <= 40; len++) {
			for (pos = 0; pos + sl <= len; pos++) {
				memcpy(buf, printable, len);
				memcpy(buf + pos, seq, sl);
				assert_int_equal(moat_utf8_check(buf, len, 0), MOAT_UTF8_OK);
				/* cut off the last byte of the sequence: truncated or followed by ASCII */
				if (pos + sl == len) {
					assert_int_equal(moat_utf8_check(buf, len - 1, 0),
							 MOAT_UTF8_ILLFORMED);
				} else {
					buf[pos + sl - 1] = 'x';
					assert_int_equal(moat_utf8_check(buf, len, 0),
							 MOAT_UTF8_ILLFORMED);
				}
			}
		}
	}
}

static void test_valid_multibyte(void **state)
{
	(void)state;
	assert_int_equal(CHK("\xC2\x80", ALLOW_ALL), MOAT_UTF8_OK);        /* U+0080 */
	assert_int_equal(CHK("\xC2\xA0", 0), MOAT_UTF8_OK);                /* U+00A0 */
	assert_int_equal(CHK("\xDF\xBF", 0), MOAT_UTF8_OK);                /* U+07FF */
	assert_int_equal(CHK("\xE0\xA0\x80", 0), MOAT_UTF8_OK);            /* U+0800 */
	assert_int_equal(CHK("\xED\x9F\xBF", 0), MOAT_UTF8_OK);            /* U+D7FF */
	assert_int_equal(CHK("\xEE\x80\x80", 0), MOAT_UTF8_OK);            /* U+E000 */
	assert_int_equal(CHK("\xEF\xBF\xBD", 0), MOAT_UTF8_OK);            /* U+FFFD */
	assert_int_equal(CHK("\xF0\x90\x80\x80", 0), MOAT_UTF8_OK);        /* U+10000 */
	assert_int_equal(CHK("\xF4\x8F\xBF\xBD", 0), MOAT_UTF8_OK);        /* U+10FFFD */
	assert_int_equal(CHK("\xF4\x8F\xBF\xBF", ALLOW_ALL), MOAT_UTF8_OK); /* U+10FFFF */
	assert_int_equal(CHK("\xF4\x8F\xBF\xBF", MOAT_UTF8_ALLOW_DISCOURAGED), MOAT_UTF8_OK);
	assert_int_equal(CHK("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 ok", 0), MOAT_UTF8_OK);
	/* a long run of multi-byte characters */
	{
		uint8_t buf[4 * 100];
		size_t n = 0;
		uint32_t cp;
		for (cp = 0x4E00; n + 3 <= sizeof(buf); cp++)
			n += enc(cp, buf + n);
		assert_int_equal(moat_utf8_check(buf, n, 0), MOAT_UTF8_OK);
	}
}

static void test_overlong(void **state)
{
	(void)state;
	assert_int_equal(CHK("\xC0\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xC0\xAF", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xC1\xBF", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xE0\x80\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xE0\x9F\xBF", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xF0\x80\x80\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xF0\x8F\xBF\xBF", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	/* overlong forms behind ASCII, past the fast path */
	assert_int_equal(CHK("abcdefghij\xC0\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("abcdefghij\xE0\x9F\xBFxyz", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
}

static void test_surrogates(void **state)
{
	uint32_t cp;
	uint8_t b[3];

	(void)state;
	assert_int_equal(CHK("\xED\xA0\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED); /* U+D800 */
	assert_int_equal(CHK("\xED\xBF\xBF", ALLOW_ALL), MOAT_UTF8_ILLFORMED); /* U+DFFF */
	assert_int_equal(CHK("\xED\xB0\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED); /* U+DC00 */
	/* a CESU-8 style surrogate pair */
	assert_int_equal(CHK("\xED\xA0\xBD\xED\xB8\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	for (cp = 0xD800; cp <= 0xDFFF; cp++) {
		b[0] = (uint8_t)(0xE0 | cp >> 12);
		b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		b[2] = (uint8_t)(0x80 | (cp & 0x3F));
		assert_int_equal(moat_utf8_check(b, 3, ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	}
}

static void test_above_max(void **state)
{
	uint8_t b[4] = {0, 0x80, 0x80, 0x80};
	unsigned lead;

	(void)state;
	assert_int_equal(CHK("\xF4\x90\x80\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED); /* U+110000 */
	assert_int_equal(CHK("\xF4\xBF\xBF\xBF", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xF7\xBF\xBF\xBF", ALLOW_ALL), MOAT_UTF8_ILLFORMED); /* U+1FFFFF */
	for (lead = 0xF5; lead <= 0xFF; lead++) {
		b[0] = (uint8_t)lead;
		assert_int_equal(moat_utf8_check(b, 1, ALLOW_ALL), MOAT_UTF8_ILLFORMED);
		assert_int_equal(moat_utf8_check(b, 4, ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	}
	/* 5- and 6-byte forms of the original UTF-8 */
	assert_int_equal(CHK("\xF8\x88\x80\x80\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xFC\x84\x80\x80\x80\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
}

static void test_lone_continuation(void **state)
{
	uint8_t b[12];
	unsigned c;

	(void)state;
	for (c = 0x80; c <= 0xBF; c++) {
		b[0] = (uint8_t)c;
		assert_int_equal(moat_utf8_check(b, 1, ALLOW_ALL), MOAT_UTF8_ILLFORMED);
		memcpy(b, "abcdefghij", 10);
		b[10] = (uint8_t)c;
		assert_int_equal(moat_utf8_check(b, 11, ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	}
	/* one continuation too many after a complete character */
	assert_int_equal(CHK("\xC3\xA9\xA9", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xE2\x82\xAC\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xF0\x9F\x98\x80\x80", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
}

static void test_truncated(void **state)
{
	(void)state;
	assert_int_equal(CHK("\xC3", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xE2", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xE2\x82", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xF0", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xF0\x9F", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xF0\x9F\x98", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("abcdefgh\xF0\x9F\x98", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("abcdefghijklmno\xE2\x82", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	/* truncated, with ASCII where the continuation should be */
	assert_int_equal(CHK("\xC3" "A", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xE2\x82" "AAAAAAAAAA", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xF0\x9F\x98" "AAAAAAAAAA", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
	/* The length given cuts the sequence even though the memory holds all of it. */
	assert_int_equal(moat_utf8_check((const uint8_t *)"\xE2\x82\xAC", 2, ALLOW_ALL),
			 MOAT_UTF8_ILLFORMED);
}

static void test_nul(void **state)
{
	(void)state;
	assert_int_equal(CHK("\x00", 0), MOAT_UTF8_NUL);
	assert_int_equal(CHK("\x00", MOAT_UTF8_ALLOW_DISCOURAGED), MOAT_UTF8_NUL);
	assert_int_equal(CHK("\x00", MOAT_UTF8_ALLOW_NUL), MOAT_UTF8_OK);
	assert_int_equal(CHK("\x00", ALLOW_ALL), MOAT_UTF8_OK);
	assert_int_equal(CHK("abc\x00" "def", 0), MOAT_UTF8_NUL);
	assert_int_equal(CHK("abcdefghijklmnop\x00", 0), MOAT_UTF8_NUL);
	assert_int_equal(CHK("\x00\x00\x00\x00\x00\x00\x00\x00\x00", 0), MOAT_UTF8_NUL);
	assert_int_equal(CHK("\x00\x00\x00\x00\x00\x00\x00\x00\x00", MOAT_UTF8_ALLOW_NUL),
			 MOAT_UTF8_OK);
	/* allowing NUL does not allow other controls */
	assert_int_equal(CHK("a\x00" "b\x01", MOAT_UTF8_ALLOW_NUL), MOAT_UTF8_DISCOURAGED);
	/* the overlong NUL of modified UTF-8 is ill-formed, not NUL */
	assert_int_equal(CHK("\xC0\x80", 0), MOAT_UTF8_ILLFORMED);
}

static void test_controls(void **state)
{
	uint8_t b[2];
	unsigned c;

	(void)state;
	for (c = 0x01; c <= 0x1F; c++) {
		b[0] = (uint8_t)c;
		assert_int_equal(moat_utf8_check(b, 1, 0), MOAT_UTF8_DISCOURAGED);
		assert_int_equal(moat_utf8_check(b, 1, MOAT_UTF8_ALLOW_NUL), MOAT_UTF8_DISCOURAGED);
		assert_int_equal(moat_utf8_check(b, 1, MOAT_UTF8_ALLOW_DISCOURAGED), MOAT_UTF8_OK);
	}
	b[0] = 0x7F;
	assert_int_equal(moat_utf8_check(b, 1, 0), MOAT_UTF8_DISCOURAGED);
	assert_int_equal(moat_utf8_check(b, 1, MOAT_UTF8_ALLOW_DISCOURAGED), MOAT_UTF8_OK);
	/* C1: U+0080..U+009F = C2 80..C2 9F */
	for (c = 0x80; c <= 0x9F; c++) {
		b[0] = 0xC2;
		b[1] = (uint8_t)c;
		assert_int_equal(moat_utf8_check(b, 2, 0), MOAT_UTF8_DISCOURAGED);
		assert_int_equal(moat_utf8_check(b, 2, MOAT_UTF8_ALLOW_DISCOURAGED), MOAT_UTF8_OK);
	}
	/* the neighbours are fine */
	assert_int_equal(CHK(" ", 0), MOAT_UTF8_OK);
	assert_int_equal(CHK("~", 0), MOAT_UTF8_OK);
	assert_int_equal(CHK("\xC2\xA0", 0), MOAT_UTF8_OK); /* U+00A0 */
	/* a control deep in a long ASCII string */
	assert_int_equal(CHK("abcdefghijklmnopqrstuvwxyz\x7F" "abc", 0), MOAT_UTF8_DISCOURAGED);
	assert_int_equal(CHK("abcdefghijklmnopqrstuvwxyz\xC2\x85" "abc", 0),
			 MOAT_UTF8_DISCOURAGED);
}

static void test_noncharacters(void **state)
{
	uint8_t b[4];
	uint32_t cp;
	unsigned plane;

	(void)state;
	for (cp = 0xFDD0; cp <= 0xFDEF; cp++) {
		size_t n = enc(cp, b);
		assert_int_equal(moat_utf8_check(b, n, 0), MOAT_UTF8_DISCOURAGED);
		assert_int_equal(moat_utf8_check(b, n, MOAT_UTF8_ALLOW_DISCOURAGED), MOAT_UTF8_OK);
	}
	assert_int_equal(CHK("\xEF\xB7\x8F", 0), MOAT_UTF8_OK); /* U+FDCF */
	assert_int_equal(CHK("\xEF\xB7\xB0", 0), MOAT_UTF8_OK); /* U+FDF0 */
	assert_int_equal(CHK("\xEF\xBF\xBE", 0), MOAT_UTF8_DISCOURAGED); /* U+FFFE */
	assert_int_equal(CHK("\xEF\xBF\xBF", 0), MOAT_UTF8_DISCOURAGED); /* U+FFFF */
	assert_int_equal(CHK("\xEF\xBF\xBD", 0), MOAT_UTF8_OK);          /* U+FFFD */
	assert_int_equal(CHK("\xF0\x9F\xBF\xBE", 0), MOAT_UTF8_DISCOURAGED); /* U+1FFFE */
	assert_int_equal(CHK("\xF0\x9F\xBF\xBF", 0), MOAT_UTF8_DISCOURAGED); /* U+1FFFF */
	assert_int_equal(CHK("\xF4\x8F\xBF\xBF", 0), MOAT_UTF8_DISCOURAGED); /* U+10FFFF */
	assert_int_equal(CHK("\xF4\x8F\xBF\xBE", 0), MOAT_UTF8_DISCOURAGED); /* U+10FFFE */
	assert_int_equal(CHK("\xF0\x9F\xBF\xBD", 0), MOAT_UTF8_OK);          /* U+1FFFD */
	for (plane = 0; plane <= 16; plane++) {
		for (cp = plane << 16 | 0xFFFE; cp <= (plane << 16 | 0xFFFF); cp++) {
			size_t n = enc(cp, b);
			assert_int_equal(moat_utf8_check(b, n, 0), MOAT_UTF8_DISCOURAGED);
			assert_int_equal(moat_utf8_check(b, n, MOAT_UTF8_ALLOW_NUL),
					 MOAT_UTF8_DISCOURAGED);
			assert_int_equal(moat_utf8_check(b, n, MOAT_UTF8_ALLOW_DISCOURAGED),
					 MOAT_UTF8_OK);
		}
	}
}

static void test_severity_order(void **state)
{
	(void)state;
	/* ill-formed beats an earlier NUL or discouraged code point */
	assert_int_equal(CHK("\x00" "abc\xFF", 0), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\x01" "abc\xFF", 0), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\x01\x00" "abcdefghijklmnop\xC0\x80", 0), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\xEF\xBF\xBF" "abc\xED\xA0\x80", 0), MOAT_UTF8_ILLFORMED);
	assert_int_equal(CHK("\x00\xEF\xBF\xBF" "abc\xE2\x82", 0), MOAT_UTF8_ILLFORMED);
	/* and ill-formed before them too */
	assert_int_equal(CHK("\xFF\x00\x01", 0), MOAT_UTF8_ILLFORMED);
	/* NUL beats an earlier discouraged code point, and a later one */
	assert_int_equal(CHK("\x01" "abc\x00", 0), MOAT_UTF8_NUL);
	assert_int_equal(CHK("\x00" "abc\x01", 0), MOAT_UTF8_NUL);
	assert_int_equal(CHK("\xEF\xBF\xBF\x00", 0), MOAT_UTF8_NUL);
	/* with NUL allowed, the discouraged code point is what remains */
	assert_int_equal(CHK("\x00" "abc\x01", MOAT_UTF8_ALLOW_NUL), MOAT_UTF8_DISCOURAGED);
	/* with discouraged allowed, NUL still counts */
	assert_int_equal(CHK("\x01" "abc\x00", MOAT_UTF8_ALLOW_DISCOURAGED), MOAT_UTF8_NUL);
	/* with everything allowed, ill-formed still counts */
	assert_int_equal(CHK("\x00\x01\xC1\xBF", ALLOW_ALL), MOAT_UTF8_ILLFORMED);
}

static const unsigned all_flags[] = {0, MOAT_UTF8_ALLOW_NUL, MOAT_UTF8_ALLOW_DISCOURAGED,
				     ALLOW_ALL};

static void test_bruteforce_1_2(void **state)
{
	uint8_t b[2];
	unsigned i, j, f;

	(void)state;
	for (f = 0; f < 4; f++) {
		for (i = 0; i < 256; i++) {
			b[0] = (uint8_t)i;
			agree(b, 1, all_flags[f]);
			for (j = 0; j < 256; j++) {
				b[1] = (uint8_t)j;
				agree(b, 2, all_flags[f]);
			}
		}
	}
}

static void test_bruteforce_3(void **state)
{
	uint8_t b[3];
	unsigned i, j, k, f;

	(void)state;
	for (f = 0; f < 4; f += 3) { /* strictest and laxest */
		for (i = 0; i < 256; i++) {
			b[0] = (uint8_t)i;
			for (j = 0; j < 256; j++) {
				b[1] = (uint8_t)j;
				for (k = 0; k < 256; k++) {
					b[2] = (uint8_t)k;
					agree(b, 3, all_flags[f]);
				}
			}
		}
	}
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static void test_bruteforce_4_sampled(void **state)
{
	/* continuation-range edges and bytes just outside them */
	static const uint8_t edge[] = {0x00, 0x41, 0x7F, 0x80, 0x81, 0x8F, 0x90,
				       0x9F, 0xA0, 0xBE, 0xBF, 0xC0, 0xC2, 0xFF};
	const size_t ne = sizeof(edge);
	uint8_t b[4];
	unsigned i, j, k, l, f;

	(void)state;
	/* every lead and second byte, with edge values for the last two */
	for (i = 0; i < 256; i++) {
		b[0] = (uint8_t)i;
		for (j = 0; j < 256; j++) {
			b[1] = (uint8_t)j;
			for (k = 0; k < ne; k++) {
				b[2] = edge[k];
				for (l = 0; l < ne; l++) {
					b[3] = edge[l];
					agree(b, 4, 0);
				}
			}
		}
	}
	/* every lead F0..F4 with every second byte and all continuations for the rest */
	for (i = 0xF0; i <= 0xF4; i++) {
		b[0] = (uint8_t)i;
		for (j = 0x80; j <= 0xBF; j++) {
			b[1] = (uint8_t)j;
			for (k = 0x80; k <= 0xBF; k++) {
				b[2] = (uint8_t)k;
				for (l = 0x80; l <= 0xBF; l++) {
					b[3] = (uint8_t)l;
					agree(b, 4, 0);
				}
			}
		}
	}
	/* random 4-byte strings, and random strings biased to lead bytes */
	for (i = 0; i < 2000000; i++) {
		uint32_t r = rnd();
		memcpy(b, &r, 4);
		if (i & 1)
			b[0] = (uint8_t)(0xF0 | (b[0] & 0x07));
		for (f = 0; f < 4; f++)
			agree(b, 4, all_flags[f]);
	}
}

/* Random longer strings built from fragments, so the fast path meets every kind of byte. */
static void test_random_strings(void **state)
{
	static const char *const frag[] = {
		"a", "abcdefgh", "0123456789abcdef", " ", "~", "\x7F", "\x01", "\x1F", "\x00",
		"\xC2\x80", "\xC2\xA0", "\xDF\xBF", "\xE0\xA0\x80", "\xEF\xBF\xBD", "\xEF\xBF\xBF",
		"\xEF\xB7\x90", "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF", "\xC0\x80", "\xED\xA0\x80",
		"\xF4\x90\x80\x80", "\x80", "\xFF", "\xE2\x82", "\xF0\x9F\x98",
	};
	static const uint8_t fraglen[] = {1, 8, 16, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3,
					  3, 3, 3, 4, 4, 2, 3, 4, 1, 1, 2, 3};
	uint8_t buf[256];
	unsigned iter, f;

	(void)state;
	for (iter = 0; iter < 200000; iter++) {
		size_t n = 0;
		unsigned pieces = rnd() % 12;
		unsigned bad_ok = rnd() % 4 != 0; /* mostly well-formed strings */
		while (pieces--) {
			unsigned k = rnd() % (bad_ok ? 18 : 25);
			if (n + fraglen[k] > sizeof(buf))
				break;
			memcpy(buf + n, frag[k], fraglen[k]);
			n += fraglen[k];
		}
		for (f = 0; f < 4; f++)
			agree(buf, n, all_flags[f]);
	}
}

/* Every 2-byte and a sample of 3-byte sequences at every offset of an ASCII context. */
static void test_embedded_sequences(void **state)
{
	uint8_t buf[24];
	unsigned i, j, off;

	(void)state;
	for (i = 0; i < 256; i++) {
		for (j = 0; j < 256; j++) {
			for (off = 0; off <= 18; off += 1) {
				memcpy(buf, printable, sizeof(buf));
				buf[off] = (uint8_t)i;
				buf[off + 1] = (uint8_t)j;
				agree(buf, 20, 0);
				agree(buf, off + 2, MOAT_UTF8_ALLOW_NUL);
			}
		}
	}
	for (i = 0; i < 300000; i++) {
		uint32_t r = rnd();
		off = r % 21;
		memcpy(buf, printable, sizeof(buf));
		buf[off] = (uint8_t)(0xE0 | (r >> 8 & 0x0F));
		buf[off + 1] = (uint8_t)(r >> 12);
		buf[off + 2] = (uint8_t)(r >> 20);
		agree(buf, 24, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_sanity),
		cmocka_unit_test(test_ascii_every_length),
		cmocka_unit_test(test_bad_byte_every_position),
		cmocka_unit_test(test_multibyte_every_position),
		cmocka_unit_test(test_valid_multibyte),
		cmocka_unit_test(test_overlong),
		cmocka_unit_test(test_surrogates),
		cmocka_unit_test(test_above_max),
		cmocka_unit_test(test_lone_continuation),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_controls),
		cmocka_unit_test(test_noncharacters),
		cmocka_unit_test(test_severity_order),
		cmocka_unit_test(test_bruteforce_1_2),
		cmocka_unit_test(test_bruteforce_3),
		cmocka_unit_test(test_bruteforce_4_sampled),
		cmocka_unit_test(test_random_strings),
		cmocka_unit_test(test_embedded_sequences),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
