/*
 * frame.h - incremental framing of an MQTT byte stream.
 *
 * A framer owns one connection's input buffer. The caller reads from the
 * socket straight into moat_mqtt_framer_space() and commits what it read, or
 * copies bytes in with moat_mqtt_framer_feed(); then moat_mqtt_framer_next()
 * yields each complete packet in turn, as a view into the buffer. However
 * the stream is split (one byte at a time included) the same packets come
 * out.
 *
 * Limits hold before memory is spent: the first byte is checked as soon as
 * it arrives, the Remaining Length is refused past 4 bytes or in a
 * non-minimal form, and a packet larger than max_packet is refused as soon
 * as its fixed header is complete, before the buffer grows to hold it.
 *
 *   bytes in ──> [ consumed | unread packets ... partial packet | free ]
 *                             ^start                              ^end  ^cap
 */
#ifndef MOAT_MQTT_FRAME_H
#define MOAT_MQTT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "core/mem.h"
#include "mqtt/types.h"

struct moat_mqtt_frame {
	uint8_t header;        /* first byte: type << 4 | flags */
	uint32_t remaining;    /* body length */
	const uint8_t *body;   /* borrowed; valid until the next space/feed/free call */
	size_t size;           /* whole packet: header, length bytes and body */
};

struct moat_mqtt_framer {
	struct moat_mem *mem; /* account the buffer is charged to; may be NULL */
	uint8_t *buf;
	size_t cap;
	size_t start;         /* first unconsumed byte */
	size_t end;           /* one past the last byte received */
	size_t chunk;         /* bytes of free space to offer a reader */
	uint32_t max_packet;  /* largest whole packet accepted */
};

/*
 * Initialises f. Nothing is allocated until bytes arrive. chunk is how much
 * free space space() offers at least (a read size; 0 picks 4096). max_packet
 * is the largest whole packet accepted (0 picks MOAT_MQTT_MAX_PACKET).
 */
void moat_mqtt_framer_init(struct moat_mqtt_framer *f, struct moat_mem *mem, size_t chunk,
			   uint32_t max_packet);

/* Frees the buffer. The framer may be initialised again. */
void moat_mqtt_framer_free(struct moat_mqtt_framer *f);

/* Changes the packet size limit, e.g. raising it once a client is authenticated. */
void moat_mqtt_framer_set_max(struct moat_mqtt_framer *f, uint32_t max_packet);

/*
 * Returns in *p, *n a run of free buffer to read into (*n > 0), after
 * compacting or growing the buffer. Frames returned earlier are invalid
 * afterwards. Returns 0 or MOAT_ENOMEM (the account's limit was reached).
 */
int moat_mqtt_framer_space(struct moat_mqtt_framer *f, uint8_t **p, size_t *n);

/* Records that n bytes were written into the space last returned. */
void moat_mqtt_framer_commit(struct moat_mqtt_framer *f, size_t n);

/* Copies n bytes in (space + commit in a loop). Returns 0 or MOAT_ENOMEM. */
int moat_mqtt_framer_feed(struct moat_mqtt_framer *f, const uint8_t *p, size_t n);

/*
 * Yields the next complete packet. Returns 1 and fills *out; 0 if more bytes
 * are needed; or a negative code with *fault filled: MOAT_EMALFORMED for a
 * bad first byte or Remaining Length, MOAT_ETOOBIG for a packet over the
 * limit. After a fault the stream cannot be resynchronised: close it.
 */
int moat_mqtt_framer_next(struct moat_mqtt_framer *f, struct moat_mqtt_frame *out,
			  struct moat_mqtt_fault *fault);

/* Bytes buffered and not yet yielded. */
size_t moat_mqtt_framer_pending(const struct moat_mqtt_framer *f);

/* Releases the buffer if nothing is pending (for idle connections). */
void moat_mqtt_framer_shrink(struct moat_mqtt_framer *f);

/*
 * Parses a fixed header at p[0..n): returns 1 with *header, *remaining and
 * *hlen (bytes of fixed header) when it is complete, 0 if more bytes are
 * needed, or a fault. Stateless; the framer is built on it.
 */
int moat_mqtt_fixed_header(const uint8_t *p, size_t n, uint8_t *header, uint32_t *remaining,
			   size_t *hlen, struct moat_mqtt_fault *fault);

#endif
