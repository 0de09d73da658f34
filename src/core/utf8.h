/*
 * utf8.h - UTF-8 validation.
 *
 * Implements RFC 3629 well-formedness (no overlong forms, no surrogates
 * U+D800..U+DFFF, nothing above U+10FFFF, no truncated sequences) plus the
 * extra classes MQTT cares about: U+0000, and the "discouraged" code points of
 * MQTT 5.0 section 1.5.4 / 3.1.1 section 1.5.3 (C0 and C1 controls, Unicode
 * non-characters) that a receiver MAY treat as malformed.
 */
#ifndef MOAT_CORE_UTF8_H
#define MOAT_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

enum moat_utf8_result {
	MOAT_UTF8_OK = 0,
	MOAT_UTF8_ILLFORMED,   /* not UTF-8 at all: bad byte, overlong, surrogate, > U+10FFFF, truncated */
	MOAT_UTF8_NUL,         /* well-formed but contains U+0000 */
	MOAT_UTF8_DISCOURAGED, /* well-formed, contains a control character or non-character */
};

enum {
	MOAT_UTF8_ALLOW_NUL = 1 << 0,         /* U+0000 is acceptable (payload data) */
	MOAT_UTF8_ALLOW_DISCOURAGED = 1 << 1, /* controls and non-characters are acceptable */
};

/*
 * Checks n bytes at p. flags is a mask of MOAT_UTF8_ALLOW_*. Returns the first
 * problem found in the order ILLFORMED > NUL > DISCOURAGED of severity: a string
 * that is ill-formed anywhere reports ILLFORMED even if an earlier code point
 * was merely discouraged.
 */
enum moat_utf8_result moat_utf8_check(const uint8_t *p, size_t n, unsigned flags);

/*
 * The length (1 to 4) of the well-formed UTF-8 character at s[0..n), NUL and
 * discouraged code points allowed, or 0 if s does not start with one (or n is
 * 0). For escapers that copy good characters and replace bad bytes.
 */
size_t moat_utf8_char_len(const unsigned char *s, size_t n);

#endif
