/*
 * wire.h - bounds-checked reader and counting writer for MQTT's data types.
 *
 * Internal to src/mqtt/. The reader never reads past its end: each get_*
 * returns 0 or MOAT_EMALFORMED and leaves the cursor unspecified on failure
 * (decoders stop at the first failure anyway). The writer always advances
 * len, but stores bytes only while they fit under cap; a writer with cap 0
 * therefore measures what it would write. Encoders run the same code twice,
 * once to size and once to write, so size and bytes cannot disagree.
 */
#ifndef MOAT_MQTT_WIRE_H
#define MOAT_MQTT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "mqtt/types.h"

struct rd {
	const uint8_t *p;
	const uint8_t *end;
};

static inline size_t rd_left(const struct rd *r)
{
	return (size_t)(r->end - r->p);
}

static inline int get_u8(struct rd *r, uint8_t *v)
{
	if (r->p >= r->end)
		return MOAT_EMALFORMED;
	*v = *r->p++;
	return 0;
}

static inline int get_u16(struct rd *r, uint16_t *v)
{
	if (rd_left(r) < 2)
		return MOAT_EMALFORMED;
	*v = (uint16_t)(r->p[0] << 8 | r->p[1]);
	r->p += 2;
	return 0;
}

static inline int get_u32(struct rd *r, uint32_t *v)
{
	if (rd_left(r) < 4)
		return MOAT_EMALFORMED;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	return 0;
}

/*
 * Variable Byte Integer: at most 4 bytes and, as MQTT 5.0 [MQTT-1.5.5-1]
 * requires, in the fewest bytes (a last byte of 0 after the first is a
 * non-minimal form). Both faults are malformed.
 */
static inline int get_varint(struct rd *r, uint32_t *v)
{
	uint32_t val = 0;
	int i;

	for (i = 0; i < 4; i++) {
		uint8_t b;
		if (get_u8(r, &b) < 0)
			return MOAT_EMALFORMED;
		val |= (uint32_t)(b & 0x7F) << (7 * i);
		if (!(b & 0x80)) {
			if (b == 0 && i > 0)
				return MOAT_EMALFORMED;
			*v = val;
			return 0;
		}
	}
	return MOAT_EMALFORMED;
}

/* Binary Data / the raw bytes of a string: 2-byte length then that many bytes. */
static inline int get_bin(struct rd *r, struct moat_slice *s)
{
	uint16_t n;
	if (get_u16(r, &n) < 0 || rd_left(r) < n)
		return MOAT_EMALFORMED;
	s->p = r->p;
	s->len = n;
	r->p += n;
	return 0;
}

struct wr {
	uint8_t *p;
	size_t cap;
	size_t len;
	bool bad; /* something could not be represented (a string over 65535 bytes) */
};

static inline void put_bytes(struct wr *w, const void *src, size_t n)
{
	if (n && w->len + n <= w->cap)
		memcpy(w->p + w->len, src, n);
	w->len += n;
}

static inline void put_u8(struct wr *w, uint8_t v)
{
	if (w->len < w->cap)
		w->p[w->len] = v;
	w->len++;
}

static inline void put_u16(struct wr *w, uint16_t v)
{
	put_u8(w, (uint8_t)(v >> 8));
	put_u8(w, (uint8_t)v);
}

static inline void put_u32(struct wr *w, uint32_t v)
{
	put_u16(w, (uint16_t)(v >> 16));
	put_u16(w, (uint16_t)v);
}

static inline void put_varint(struct wr *w, uint32_t v)
{
	do {
		uint8_t b = v & 0x7F;
		v >>= 7;
		put_u8(w, (uint8_t)(v ? b | 0x80 : b));
	} while (v);
}

/* Binary Data or a string's bytes; over 65535 bytes marks the writer bad. */
static inline void put_bin(struct wr *w, struct moat_slice s)
{
	if (s.len > 65535)
		w->bad = true;
	put_u16(w, (uint16_t)s.len);
	put_bytes(w, s.p, s.len);
}

/*
 * Ends an append that started with len = *len: returns MOAT_EINVAL if
 * something was unrepresentable, MOAT_ENOSPC if it did not fit in cap, else 0
 * with *len advanced.
 */
static inline int wr_finish(const struct wr *w, size_t *len)
{
	if (w->bad)
		return MOAT_EINVAL;
	if (w->len > w->cap)
		return MOAT_ENOSPC;
	*len = w->len;
	return 0;
}

static inline size_t varint_size(uint32_t v)
{
	return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

#endif
