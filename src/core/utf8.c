/*
 * utf8.c - UTF-8 validation (see utf8.h).
 *
 * Topic names are validated on every PUBLISH, so the common all-ASCII case
 * runs eight bytes at a time; the decoder for multi-byte sequences follows
 * the well-formed byte sequence table of Unicode 15, section 3.9 (table 3-7),
 * which rejects overlong forms and surrogates by the ranges of the second byte.
 */
#include "core/utf8.h"

#include <string.h>

#define HIGH_BITS 0x8080808080808080ull

/* True if c is a code point MQTT discourages: C0/C1 controls, non-characters. */
static int discouraged(uint32_t c)
{
	if (c <= 0x1F || (c >= 0x7F && c <= 0x9F))
		return 1;
	if (c >= 0xFDD0 && c <= 0xFDEF)
		return 1;
	return (c & 0xFFFE) == 0xFFFE;
}

/*
 * Decodes one multi-byte sequence starting at p[0] (>= 0x80), with at most
 * left bytes available. Returns its length and stores the code point, or
 * returns 0 if the sequence is ill-formed.
 */
static size_t decode_multi(const uint8_t *p, size_t left, uint32_t *cp)
{
	uint8_t b0 = p[0], lo = 0x80, hi = 0xBF;
	size_t len, i;
	uint32_t c;

	if (b0 >= 0xC2 && b0 <= 0xDF) {
		len = 2;
		c = b0 & 0x1F;
	} else if (b0 >= 0xE0 && b0 <= 0xEF) {
		len = 3;
		c = b0 & 0x0F;
		if (b0 == 0xE0)
			lo = 0xA0; /* overlong */
		else if (b0 == 0xED)
			hi = 0x9F; /* surrogates */
	} else if (b0 >= 0xF0 && b0 <= 0xF4) {
		len = 4;
		c = b0 & 0x07;
		if (b0 == 0xF0)
			lo = 0x90; /* overlong */
		else if (b0 == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (left < len)
		return 0;
	for (i = 1; i < len; i++) {
		uint8_t b = p[i];
		if (b < lo || b > hi)
			return 0;
		lo = 0x80;
		hi = 0xBF;
		c = (c << 6) | (b & 0x3F);
	}
	*cp = c;
	return len;
}

enum moat_utf8_result moat_utf8_check(const uint8_t *p, size_t n, unsigned flags)
{
	enum moat_utf8_result worst = MOAT_UTF8_OK;
	size_t i = 0;

	while (i < n) {
		uint32_t c;

		if (n - i >= 8) {
			uint64_t w;
			memcpy(&w, p + i, 8);
			/* All ASCII and no byte below 0x20 or equal to 0x7F: skip fast. */
			if (!(w & HIGH_BITS) &&
			    !((w - 0x2020202020202020ull) & HIGH_BITS) &&
			    !((w + 0x0101010101010101ull) & HIGH_BITS)) {
				i += 8;
				continue;
			}
		}
		if (p[i] < 0x80) {
			c = p[i++];
		} else {
			size_t len = decode_multi(p + i, n - i, &c);
			if (!len)
				return MOAT_UTF8_ILLFORMED;
			i += len;
		}
		if (c == 0) {
			if (!(flags & MOAT_UTF8_ALLOW_NUL))
				worst = MOAT_UTF8_NUL; /* beats DISCOURAGED; ILLFORMED returns at once */
		} else if (!(flags & MOAT_UTF8_ALLOW_DISCOURAGED) && worst == MOAT_UTF8_OK &&
			   discouraged(c)) {
			worst = MOAT_UTF8_DISCOURAGED;
		}
	}
	return worst;
}

size_t moat_utf8_char_len(const unsigned char *s, size_t n)
{
	size_t len;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n || moat_utf8_check(s, len, MOAT_UTF8_ALLOW_NUL | MOAT_UTF8_ALLOW_DISCOURAGED) !=
			       MOAT_UTF8_OK)
		return 0;
	return len;
}
