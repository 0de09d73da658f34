/*
 * hex.h - hexadecimal digits.
 */
#ifndef MOAT_CORE_HEX_H
#define MOAT_CORE_HEX_H

/* The value of hex digit c (either case), or -1 if c is not one. */
static inline int moat_hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
