/*
 * frame.c - incremental framing (see frame.h).
 *
 * Growth policy: the buffer grows only to hold a packet whose size is
 * already known and allowed, or, when it is full of whole packets the
 * caller has not taken yet, to double. Compaction moves the unread bytes to
 * the front only when space() is asked for, so frames handed out stay valid
 * until then.
 */
#include "mqtt/frame.h"

#include <string.h>

#include "core/error.h"
#include "mqtt/internal.h"
#include "mqtt/packet.h"

#define DEFAULT_CHUNK 4096

void moat_mqtt_framer_init(struct moat_mqtt_framer *f, struct moat_mem *mem, size_t chunk,
			   uint32_t max_packet)
{
	memset(f, 0, sizeof(*f));
	f->mem = mem;
	f->chunk = chunk ? chunk : DEFAULT_CHUNK;
	f->max_packet = max_packet ? max_packet : MOAT_MQTT_MAX_PACKET;
}

void moat_mqtt_framer_free(struct moat_mqtt_framer *f)
{
	moat_mem_free(f->mem, f->buf, f->cap);
	f->buf = NULL;
	f->cap = f->start = f->end = 0;
}

void moat_mqtt_framer_set_max(struct moat_mqtt_framer *f, uint32_t max_packet)
{
	f->max_packet = max_packet ? max_packet : MOAT_MQTT_MAX_PACKET;
}

int moat_mqtt_fixed_header(const uint8_t *p, size_t n, uint8_t *header, uint32_t *remaining,
			   size_t *hlen, struct moat_mqtt_fault *fault)
{
	uint32_t val = 0;
	size_t i;

	if (n == 0)
		return 0;
	if (moat_mqtt_header_check(p[0], fault) < 0)
		return fault->code;
	for (i = 1; i < 5; i++) {
		if (i >= n)
			return 0;
		val |= (uint32_t)(p[i] & 0x7F) << (7 * (i - 1));
		if (!(p[i] & 0x80)) {
			if (p[i] == 0 && i > 1)
				return moat_mqtt_fail(fault, MOAT_EMALFORMED, "MQTT-1.5.5-1",
						      "Remaining Length not in its shortest form");
			*header = p[0];
			*remaining = val;
			*hlen = i + 1;
			return 1;
		}
	}
	return moat_mqtt_fail(fault, MOAT_EMALFORMED, "MQTT-1.5.5-1",
			      "Remaining Length longer than 4 bytes");
}

/* Size of the partial packet at start, if its header is complete; else 0. */
static size_t pending_packet_size(const struct moat_mqtt_framer *f)
{
	struct moat_mqtt_fault fault;
	uint8_t header;
	uint32_t rem;
	size_t hlen;

	if (f->end == f->start ||
	    moat_mqtt_fixed_header(f->buf + f->start, f->end - f->start, &header, &rem, &hlen,
				   &fault) != 1)
		return 0;
	if (hlen + rem > f->max_packet)
		return 0; /* next() will refuse it; never grow for it */
	return hlen + rem;
}

static int resize(struct moat_mqtt_framer *f, size_t cap)
{
	uint8_t *nb = moat_mem_realloc(f->mem, f->buf, f->cap, cap);

	if (!nb)
		return MOAT_ENOMEM;
	f->buf = nb;
	f->cap = cap;
	return 0;
}

int moat_mqtt_framer_space(struct moat_mqtt_framer *f, uint8_t **p, size_t *n)
{
	size_t unread = f->end - f->start;
	size_t want = pending_packet_size(f);
	size_t need = f->buf ? f->cap : f->chunk;
	/* A big packet has gone and only small bytes are left: give its memory back. */
	bool shrink = f->cap > 4 * f->chunk && unread < f->chunk && want <= f->chunk;

	if (f->start && (shrink || f->end == f->cap || f->cap - f->end < f->chunk / 2 ||
			 want > f->cap - f->start)) {
		memmove(f->buf, f->buf + f->start, unread);
		f->start = 0;
		f->end = unread;
	}
	if (shrink)
		need = f->chunk;
	if (want > need)
		need = want;
	if (f->end == need)
		need = need * 2 > f->chunk ? need * 2 : f->chunk;
	if (need != f->cap && resize(f, need) < 0)
		return MOAT_ENOMEM;
	*p = f->buf + f->end;
	*n = f->cap - f->end;
	return 0;
}

void moat_mqtt_framer_commit(struct moat_mqtt_framer *f, size_t n)
{
	f->end += n;
}

int moat_mqtt_framer_feed(struct moat_mqtt_framer *f, const uint8_t *p, size_t n)
{
	while (n) {
		uint8_t *dst;
		size_t room;
		int rc = moat_mqtt_framer_space(f, &dst, &room);

		if (rc < 0)
			return rc;
		if (room > n)
			room = n;
		memcpy(dst, p, room);
		moat_mqtt_framer_commit(f, room);
		p += room;
		n -= room;
	}
	return 0;
}

int moat_mqtt_framer_next(struct moat_mqtt_framer *f, struct moat_mqtt_frame *out,
			  struct moat_mqtt_fault *fault)
{
	size_t avail = f->end - f->start, hlen;
	uint8_t header;
	uint32_t rem;
	int rc;

	if (avail == 0)
		return 0;
	rc = moat_mqtt_fixed_header(f->buf + f->start, avail, &header, &rem, &hlen, fault);
	if (rc <= 0)
		return rc;
	if (hlen + rem > f->max_packet)
		return moat_mqtt_fail(fault, MOAT_ETOOBIG, NULL,
				      "packet larger than the maximum packet size");
	if (avail < hlen + rem)
		return 0;
	out->header = header;
	out->remaining = rem;
	out->body = f->buf + f->start + hlen;
	out->size = hlen + rem;
	f->start += hlen + rem;
	if (f->start == f->end)
		f->start = f->end = 0;
	return 1;
}

size_t moat_mqtt_framer_pending(const struct moat_mqtt_framer *f)
{
	return f->end - f->start;
}

void moat_mqtt_framer_shrink(struct moat_mqtt_framer *f)
{
	if (f->start == f->end)
		moat_mqtt_framer_free(f);
}
