/*
 * test_frame.c - unit tests for the incremental framer (src/mqtt/frame.c).
 *
 * Covers: a stream of ~50 mixed packets (built with moat_mqtt_encode and by
 * hand, with Remaining Lengths of 1, 2 and 3 bytes) fed whole, one byte at a
 * time, split in two at every position, and in pseudo-random chunk sizes,
 * always yielding the identical sequence of frames (header, remaining, body
 * bytes, size), with several read sizes (`chunk`) including tiny ones;
 * reading straight into moat_mqtt_framer_space() and committing 1..7 bytes at
 * a time; the packet size limit (exactly max passes, max+1 is refused with
 * MOAT_ETOOBIG / reason 0x95 as soon as the fixed header is complete and
 * before the body arrives, without the buffer growing for it); a bad first
 * byte refused at once; 5-byte and non-minimal Remaining Lengths;
 * moat_mqtt_framer_set_max; moat_mqtt_framer_pending;
 * moat_mqtt_framer_shrink; MOAT_ENOMEM from a small memory account; giving
 * memory back after a 1 MiB packet; and moat_mqtt_fixed_header directly for
 * every Remaining Length width.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "mqtt/frame.h"
#include "mqtt/packet.h"
#include "mqtt/props.h"
#include "mqtt/types.h"

/* ---- building a stream ---- */

struct expect {
	uint8_t header;
	uint32_t remaining;
	size_t size;
	size_t body_off; /* offset of the body in the stream */
};

struct stream {
	uint8_t *bytes;
	size_t len, cap;
	struct expect *pk;
	size_t count, pkcap;
	size_t largest;
};

static size_t vbi(uint8_t *out, uint32_t v)
{
	size_t n = 0;
	do {
		uint8_t b = v & 0x7F;
		v >>= 7;
		out[n++] = (uint8_t)(v ? b | 0x80 : b);
	} while (v);
	return n;
}

static uint8_t *reserve(struct stream *s, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->bytes = realloc(s->bytes, s->cap);
		assert_non_null(s->bytes);
	}
	return s->bytes + s->len;
}

/*
 * Records the packet that was just written at s->bytes[start..s->len),
 * parsing its fixed header here (not with the library under test).
 */
static void record(struct stream *s, size_t start)
{
	const uint8_t *p = s->bytes + start;
	uint8_t hdr = p[0];
	uint32_t rem = 0;
	size_t hlen = 1;

	do {
		rem |= (uint32_t)(p[hlen] & 0x7F) << (7 * (hlen - 1));
	} while (p[hlen++] & 0x80);
	assert_int_equal(hlen + rem, s->len - start);
	if (s->count == s->pkcap) {
		s->pkcap = s->pkcap ? 2 * s->pkcap : 64;
		s->pk = realloc(s->pk, s->pkcap * sizeof(*s->pk));
		assert_non_null(s->pk);
	}
	s->pk[s->count].header = hdr;
	s->pk[s->count].remaining = rem;
	s->pk[s->count].size = hlen + rem;
	s->pk[s->count].body_off = start + hlen;
	s->count++;
	if (hlen + rem > s->largest)
		s->largest = hlen + rem;
}

/* A packet by hand: first byte, then a body of n pattern bytes. */
static void add_raw(struct stream *s, uint8_t header, uint32_t n, unsigned seed)
{
	size_t start = s->len, i, h;
	uint8_t *p = reserve(s, 5 + (size_t)n);

	p[0] = header;
	h = 1 + vbi(p + 1, n);
	for (i = 0; i < n; i++)
		p[h + i] = (uint8_t)(seed * 31 + i * 7);
	s->len += h + n;
	record(s, start);
}

static void add_encoded(struct stream *s, const struct moat_mqtt_packet *pkt)
{
	size_t start = s->len, size = 0, len = 0;

	assert_int_equal(moat_mqtt_encode_size(pkt, &size), 0);
	reserve(s, size);
	assert_int_equal(moat_mqtt_encode(pkt, s->bytes + s->len, size, &len), 0);
	assert_int_equal(len, size);
	s->len += len;
	record(s, start);
}

static void stream_free(struct stream *s)
{
	free(s->bytes);
	free(s->pk);
	memset(s, 0, sizeof(*s));
}

/*
 * ~50 packets of every kind. `big` adds bodies of 16383, 16384 and 70000
 * bytes (2- and 3-byte Remaining Lengths around their boundaries).
 */
static void build_stream(struct stream *s, bool big)
{
	static uint8_t payload[400];
	unsigned i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i ^ 0x5A);
	for (i = 0; i < 50; i++) {
		struct moat_mqtt_packet pkt;
		uint8_t props_multi[32], entries[64];
		size_t ml = 0, el = 0;

		memset(&pkt, 0, sizeof(pkt));
		pkt.version = i % 3 == 0 ? MOAT_MQTT_V311 : MOAT_MQTT_V5;
		switch (i % 12) {
		case 0:
			pkt.type = MOAT_MQTT_CONNECT;
			pkt.connect.version = pkt.version;
			pkt.connect.clean_start = true;
			pkt.connect.keep_alive = 60;
			pkt.connect.client_id = MOAT_SLICE_STR("client-0123456789");
			if (pkt.version == MOAT_MQTT_V5) {
				pkt.connect.props.present =
					MOAT_PROP_BIT(MOAT_PROP_SESSION_EXPIRY_INTERVAL);
				pkt.connect.props.session_expiry = 300;
			}
			add_encoded(s, &pkt);
			break;
		case 1:
			pkt.type = MOAT_MQTT_PUBLISH;
			pkt.publish.topic = MOAT_SLICE_STR("sensors/room1/temp");
			pkt.publish.payload.p = payload;
			pkt.publish.payload.len = (i * 37) % sizeof(payload);
			add_encoded(s, &pkt);
			break;
		case 2:
			pkt.type = MOAT_MQTT_PUBLISH;
			pkt.publish.qos = 1 + i % 2;
			pkt.publish.dup = i % 4 == 2;
			pkt.publish.retain = true;
			pkt.publish.packet_id = (uint16_t)(i + 1);
			pkt.publish.topic = MOAT_SLICE_STR("a/b");
			pkt.publish.payload.p = payload;
			pkt.publish.payload.len = 200;
			if (pkt.version == MOAT_MQTT_V5) {
				assert_int_equal(moat_mqtt_props_put_user(props_multi, sizeof(props_multi),
									  &ml, MOAT_SLICE_STR("k"),
									  MOAT_SLICE_STR("v")),
						 0);
				pkt.publish.props.present = MOAT_PROP_BIT(MOAT_PROP_USER_PROPERTY);
				pkt.publish.props.user_count = 1;
				pkt.publish.props.multi.p = props_multi;
				pkt.publish.props.multi.len = ml;
			}
			add_encoded(s, &pkt);
			break;
		case 3:
			pkt.type = (uint8_t)(MOAT_MQTT_PUBACK + i % 4); /* PUBACK..PUBCOMP */
			pkt.ack.packet_id = (uint16_t)(i + 1);
			pkt.ack.reason = i % 2 ? 0x10 : 0;
			add_encoded(s, &pkt);
			break;
		case 4:
			pkt.type = MOAT_MQTT_SUBSCRIBE;
			pkt.subscribe.packet_id = 7;
			assert_int_equal(moat_mqtt_sub_put(entries, sizeof(entries), &el,
							   MOAT_SLICE_STR("a/+/c"), 1),
					 0);
			assert_int_equal(moat_mqtt_sub_put(entries, sizeof(entries), &el,
							   MOAT_SLICE_STR("x/#"), 0),
					 0);
			pkt.subscribe.count = 2;
			pkt.subscribe.entries.p = entries;
			pkt.subscribe.entries.len = el;
			add_encoded(s, &pkt);
			break;
		case 5:
			add_raw(s, 0xC0, 0, i); /* PINGREQ */
			break;
		case 6:
			add_raw(s, 0xD0, 0, i); /* PINGRESP */
			break;
		case 7:
			add_raw(s, 0x30, 127, i); /* largest 1-byte Remaining Length */
			break;
		case 8:
			add_raw(s, 0x32, 128, i); /* smallest 2-byte Remaining Length */
			break;
		case 9:
			pkt.type = MOAT_MQTT_DISCONNECT;
			add_encoded(s, &pkt);
			break;
		case 10:
			add_raw(s, 0xF0, (uint32_t)(i % 7), i); /* AUTH */
			break;
		case 11:
			add_raw(s, 0x62, 2, i); /* PUBREL */
			add_raw(s, 0xA2, 5, i); /* UNSUBSCRIBE */
			add_raw(s, 0x90, 3, i); /* SUBACK */
			add_raw(s, 0x20, 2, i); /* CONNACK */
			break;
		}
		if (big && i == 20)
			add_raw(s, 0x30, 16383, i);
		if (big && i == 30)
			add_raw(s, 0x3B, 16384, i); /* DUP QoS 1 retain */
		if (big && i == 40)
			add_raw(s, 0x34, 70000, i);
	}
}

/* ---- consuming ---- */

struct checker {
	const struct stream *s;
	size_t next;
};

static void check_frame(struct checker *c, const struct moat_mqtt_framer *f,
			const struct moat_mqtt_frame *fr)
{
	const struct expect *e;

	if (c->next >= c->s->count)
		fail_msg("more frames than packets");
	e = &c->s->pk[c->next];
	if (fr->header != e->header || fr->remaining != e->remaining || fr->size != e->size)
		fail_msg("frame %zu: header %02X/%02X remaining %u/%u size %zu/%zu", c->next,
			 fr->header, e->header, fr->remaining, e->remaining, fr->size, e->size);
	assert_memory_equal(fr->body, c->s->bytes + e->body_off, e->remaining);
	/* the body is a view into the framer's buffer */
	assert_true(fr->body >= f->buf && fr->body + fr->remaining <= f->buf + f->cap);
	c->next++;
}

static void drain(struct checker *c, struct moat_mqtt_framer *f)
{
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	int rc;

	while ((rc = moat_mqtt_framer_next(f, &fr, &fault)) == 1)
		check_frame(c, f, &fr);
	if (rc != 0)
		fail_msg("framer refused a valid stream: %d (%s)", rc, fault.why);
}

static void finish(struct checker *c, struct moat_mqtt_framer *f, struct moat_mem *m)
{
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;

	assert_int_equal(c->next, c->s->count);
	assert_int_equal(moat_mqtt_framer_pending(f), 0);
	assert_int_equal(moat_mqtt_framer_next(f, &fr, &fault), 0);
	moat_mqtt_framer_free(f);
	assert_int_equal(moat_mem_used(m), 0);
}

static const size_t chunks[] = {0, 1, 3, 16, 100};
#define N_CHUNKS (sizeof(chunks) / sizeof(chunks[0]))

/*
 * Feeds s in pieces given by next_len, draining after each piece. If
 * piece_max is not 0 (pieces are at most that long), the buffer must stay
 * within twice the largest packet plus a read and a piece: it has no reason
 * to hold more when the caller drains after every piece.
 */
static void run_pieces(const struct stream *s, size_t chunk, size_t (*next_len)(size_t, void *),
		       void *arg, size_t piece_max)
{
	struct moat_mem m;
	struct moat_mqtt_framer f;
	struct checker c = {s, 0};
	size_t off = 0, ch = chunk ? chunk : 4096;

	moat_mem_init(&m, 0, NULL);
	moat_mqtt_framer_init(&f, &m, chunk, 0);
	while (off < s->len) {
		size_t n = next_len(s->len - off, arg);
		if (n > s->len - off)
			n = s->len - off;
		assert_int_equal(moat_mqtt_framer_feed(&f, s->bytes + off, n), 0);
		off += n;
		drain(&c, &f);
		if (piece_max && f.cap > 2 * (s->largest + ch + piece_max))
			fail_msg("chunk %zu, pieces <= %zu: buffer grew to %zu for packets of at "
				 "most %zu bytes",
				 chunk, piece_max, f.cap, s->largest);
	}
	finish(&c, &f, &m);
}

static size_t len_all(size_t left, void *arg)
{
	(void)arg;
	return left;
}

static size_t len_one(size_t left, void *arg)
{
	(void)left;
	(void)arg;
	return 1;
}

static uint64_t rng_state;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

static size_t len_random(size_t left, void *arg)
{
	size_t max = *(const size_t *)arg;
	(void)left;
	return 1 + rnd() % max;
}

static void test_stream_whole(void **state)
{
	struct stream s;
	size_t i;

	(void)state;
	build_stream(&s, true);
	assert_true(s.count >= 50);
	for (i = 0; i < N_CHUNKS; i++)
		run_pieces(&s, chunks[i], len_all, NULL, 0);
	stream_free(&s);
}

static void test_stream_one_byte(void **state)
{
	struct stream s;
	size_t i;

	(void)state;
	build_stream(&s, true);
	for (i = 0; i < N_CHUNKS; i++)
		run_pieces(&s, chunks[i], len_one, NULL, 1);
	stream_free(&s);
}

static void test_stream_every_split(void **state)
{
	struct stream s;
	struct moat_mem m;
	size_t pos, i;

	(void)state;
	build_stream(&s, false);
	assert_true(s.len > 2000);
	moat_mem_init(&m, 0, NULL);
	for (i = 0; i < N_CHUNKS; i++) {
		for (pos = 0; pos <= s.len; pos++) {
			struct moat_mqtt_framer f;
			struct checker c = {&s, 0};
			moat_mqtt_framer_init(&f, &m, chunks[i], 0);
			assert_int_equal(moat_mqtt_framer_feed(&f, s.bytes, pos), 0);
			drain(&c, &f);
			assert_int_equal(moat_mqtt_framer_feed(&f, s.bytes + pos, s.len - pos), 0);
			drain(&c, &f);
			finish(&c, &f, &m);
		}
	}
	stream_free(&s);
}

static void test_stream_random_chunks(void **state)
{
	static const size_t maxes[] = {2, 7, 64, 1000, 5000, 100000};
	struct stream s;
	size_t i, j, seed;

	(void)state;
	build_stream(&s, true);
	for (seed = 1; seed <= 4; seed++) {
		for (i = 0; i < N_CHUNKS; i++) {
			for (j = 0; j < sizeof(maxes) / sizeof(maxes[0]); j++) {
				size_t max = maxes[j];
				rng_state = 0x9E3779B97F4A7C15ull * seed + j;
				run_pieces(&s, chunks[i], len_random, &max, max);
			}
		}
	}
	stream_free(&s);
}

/* The reader's way: read straight into space(), commit 1..7 bytes at a time. */
static void test_space_commit(void **state)
{
	struct stream s;
	size_t i, round;

	(void)state;
	build_stream(&s, true);
	for (round = 0; round < 2; round++) {
		for (i = 0; i < N_CHUNKS; i++) {
			struct moat_mem m;
			struct moat_mqtt_framer f;
			struct checker c = {&s, 0};
			size_t off = 0, peak_cap = 0;

			rng_state = 12345 + i + 100 * round;
			moat_mem_init(&m, 0, NULL);
			moat_mqtt_framer_init(&f, &m, chunks[i], 0);
			while (off < s.len) {
				uint8_t *p;
				size_t n, k;
				assert_int_equal(moat_mqtt_framer_space(&f, &p, &n), 0);
				assert_true(n > 0);
				assert_ptr_equal(p, f.buf + f.end);
				k = round == 0 ? 1 + (off % 7) : 1 + rnd() % 7;
				if (k > n)
					k = n;
				if (k > s.len - off)
					k = s.len - off;
				memcpy(p, s.bytes + off, k);
				moat_mqtt_framer_commit(&f, k);
				off += k;
				drain(&c, &f);
				if (f.cap > peak_cap)
					peak_cap = f.cap;
			}
			/*
			 * Draining after every read, the buffer never needs more than the
			 * largest packet plus a read's worth of room, doubled for slack.
			 */
			{
				size_t ch = chunks[i] ? chunks[i] : 4096;
				if (peak_cap > 2 * (s.largest + ch))
					fail_msg("chunk %zu: buffer grew to %zu for packets of at most "
						 "%zu bytes",
						 chunks[i], peak_cap, s.largest);
			}
			finish(&c, &f, &m);
		}
	}
	stream_free(&s);
}

/* ---- limits ---- */

/* Feeds bytes one at a time through space/commit; returns next()'s result after each. */
static int feed_byte(struct moat_mqtt_framer *f, uint8_t b, struct moat_mqtt_frame *fr,
		     struct moat_mqtt_fault *fault)
{
	uint8_t *p;
	size_t n;

	assert_int_equal(moat_mqtt_framer_space(f, &p, &n), 0);
	*p = b;
	moat_mqtt_framer_commit(f, 1);
	return moat_mqtt_framer_next(f, fr, fault);
}

static void test_max_exact_passes(void **state)
{
	struct moat_mem m;
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	uint8_t pkt[300];
	size_t i;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	/* 1-byte length: 2 + 98 = 100 */
	moat_mqtt_framer_init(&f, &m, 16, 100);
	pkt[0] = 0x30;
	pkt[1] = 98;
	memset(pkt + 2, 'x', 98);
	for (i = 0; i < 99; i++)
		assert_int_equal(feed_byte(&f, pkt[i], &fr, &fault), 0);
	assert_int_equal(feed_byte(&f, pkt[99], &fr, &fault), 1);
	assert_int_equal(fr.size, 100);
	assert_int_equal(fr.remaining, 98);
	moat_mqtt_framer_free(&f);
	/* 2-byte length: 3 + 197 = 200 */
	moat_mqtt_framer_init(&f, &m, 16, 200);
	pkt[0] = 0x30;
	pkt[1] = 0xC5; /* 197 = 0x45 | 1 << 7 */
	pkt[2] = 0x01;
	memset(pkt + 3, 'y', 197);
	assert_int_equal(moat_mqtt_framer_feed(&f, pkt, 200), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.size, 200);
	assert_int_equal(fr.remaining, 197);
	moat_mqtt_framer_free(&f);
	assert_int_equal(moat_mem_used(&m), 0);
}

static void test_max_plus_one_refused_early(void **state)
{
	struct moat_mem m;
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	/* 1-byte length: 2 + 99 = 101 > 100, refused at its second byte */
	moat_mqtt_framer_init(&f, &m, 16, 100);
	assert_int_equal(feed_byte(&f, 0x30, &fr, &fault), 0);
	memset(&fault, 0, sizeof(fault));
	assert_int_equal(feed_byte(&f, 99, &fr, &fault), MOAT_ETOOBIG);
	assert_int_equal(fault.code, MOAT_ETOOBIG);
	assert_int_equal(fault.reason, 0x95);
	assert_non_null(fault.why);
	assert_int_equal(moat_mem_used(&m), 16);
	moat_mqtt_framer_free(&f);
	/* 2-byte length: 3 + 198 = 201 > 200, refused when the second length byte arrives */
	moat_mqtt_framer_init(&f, &m, 16, 200);
	assert_int_equal(feed_byte(&f, 0x30, &fr, &fault), 0);
	assert_int_equal(feed_byte(&f, 0xC6, &fr, &fault), 0);
	assert_int_equal(feed_byte(&f, 0x01, &fr, &fault), MOAT_ETOOBIG);
	assert_int_equal(fault.reason, 0x95);
	moat_mqtt_framer_free(&f);
	/* the largest possible Remaining Length against the default maximum passes the check */
	moat_mqtt_framer_init(&f, &m, 16, 0);
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\x30\xFF\xFF\xFF\x7F", 5), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 0);
	moat_mqtt_framer_free(&f);
	assert_int_equal(moat_mem_used(&m), 0);
}

/*
 * A 1 GiB-announcing packet with a small limit, arriving in small reads the
 * way a server reads: refused once its header is complete, and the buffer
 * stays at its first allocation throughout.
 */
static void test_oversize_never_grows(void **state)
{
	static const uint8_t hdr[] = {0x30, 0xFF, 0xFF, 0xFF, 0x03};
	struct moat_mem m;
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	size_t i, off = 0;
	int rc = 0;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	moat_mqtt_framer_init(&f, &m, 8, 1000);
	/* first a valid small packet, so the header starts mid-buffer */
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\xC0\x00", 2), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	for (i = 0; i < sizeof(hdr) && rc == 0; i++) {
		uint8_t *p;
		size_t n;
		assert_int_equal(moat_mqtt_framer_space(&f, &p, &n), 0);
		assert_true(moat_mem_used(&m) <= 8);
		*p = hdr[off++];
		moat_mqtt_framer_commit(&f, 1);
		rc = moat_mqtt_framer_next(&f, &fr, &fault);
	}
	assert_int_equal(rc, MOAT_ETOOBIG);
	assert_int_equal(off, sizeof(hdr)); /* not before the header was complete */
	assert_int_equal(fault.reason, 0x95);
	assert_true(f.cap <= 8);
	assert_true(moat_mem_used(&m) <= 8);
	/* asked again, it says the same; space() does not grow for it either */
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), MOAT_ETOOBIG);
	{
		uint8_t *p;
		size_t n;
		assert_int_equal(moat_mqtt_framer_space(&f, &p, &n), 0);
		assert_true(moat_mem_used(&m) <= 8);
	}
	moat_mqtt_framer_free(&f);
	assert_int_equal(moat_mem_used(&m), 0);

	/* a whole read's worth of an oversize packet in one go */
	moat_mqtt_framer_init(&f, &m, 64, 100);
	{
		uint8_t *p;
		size_t n;
		assert_int_equal(moat_mqtt_framer_space(&f, &p, &n), 0);
		assert_int_equal(n, 64);
		p[0] = 0x30;
		p[1] = 0xE8; /* 1000 */
		p[2] = 0x07;
		memset(p + 3, 'z', n - 3);
		moat_mqtt_framer_commit(&f, n);
	}
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), MOAT_ETOOBIG);
	assert_int_equal(moat_mem_used(&m), 64);
	moat_mqtt_framer_free(&f);
}

static void test_bad_first_byte(void **state)
{
	static const struct {
		uint8_t b;
		int rc;
	} c[] = {
		{0x00, MOAT_EMALFORMED}, {0x0F, MOAT_EMALFORMED}, /* type 0 */
		{0xC1, MOAT_EMALFORMED}, {0xC8, MOAT_EMALFORMED}, /* PINGREQ flags */
		{0x60, MOAT_EMALFORMED}, {0x63, MOAT_EMALFORMED}, /* PUBREL flags must be 0010 */
		{0x80, MOAT_EMALFORMED}, {0xA0, MOAT_EMALFORMED}, /* SUBSCRIBE, UNSUBSCRIBE */
		{0x36, MOAT_EMALFORMED},                          /* PUBLISH QoS 3 */
		{0x38, MOAT_EMALFORMED}, {0x39, MOAT_EMALFORMED}, /* DUP at QoS 0 */
		{0x11, MOAT_EMALFORMED}, {0x22, MOAT_EMALFORMED}, {0xE1, MOAT_EMALFORMED},
		{0xF2, MOAT_EMALFORMED},
		/* good first bytes need more input */
		{0x10, 0}, {0x30, 0}, {0x31, 0}, {0x3D, 0}, {0x62, 0}, {0x82, 0}, {0xA2, 0},
		{0xC0, 0}, {0xE0, 0}, {0xF0, 0},
	};
	struct moat_mem m;
	size_t i;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct moat_mqtt_framer f;
		struct moat_mqtt_frame fr;
		struct moat_mqtt_fault fault;
		int rc;

		moat_mqtt_framer_init(&f, &m, 0, 0);
		memset(&fault, 0, sizeof(fault));
		rc = feed_byte(&f, c[i].b, &fr, &fault);
		if (rc != c[i].rc)
			fail_msg("first byte %02X: got %d, want %d", c[i].b, rc, c[i].rc);
		if (rc) {
			assert_int_equal(fault.code, MOAT_EMALFORMED);
			assert_int_equal(fault.reason, 0x81);
			assert_non_null(fault.why);
		}
		moat_mqtt_framer_free(&f);
	}
	/* a bad byte after good packets: the good ones come out first */
	{
		struct moat_mqtt_framer f;
		struct moat_mqtt_frame fr;
		struct moat_mqtt_fault fault;
		moat_mqtt_framer_init(&f, &m, 0, 0);
		assert_int_equal(
			moat_mqtt_framer_feed(&f, (const uint8_t *)"\xC0\x00\xE0\x00\xC1\x00", 6), 0);
		assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
		assert_int_equal(fr.header, 0xC0);
		assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
		assert_int_equal(fr.header, 0xE0);
		assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), MOAT_EMALFORMED);
		moat_mqtt_framer_free(&f);
	}
	assert_int_equal(moat_mem_used(&m), 0);
}

static void test_bad_remaining_length(void **state)
{
	static const struct {
		const char *b;
		size_t n;
		size_t refused_at; /* bytes fed when the fault shows */
	} c[] = {
		{"\x30\xFF\xFF\xFF\xFF", 5, 5},     /* continuation on the fourth length byte */
		{"\x30\x80\x80\x80\x80\x01", 6, 5}, /* five-byte form of 2^28 */
		{"\x30\x80\x00", 3, 3},             /* 0 in two bytes */
		{"\xC0\x80\x00", 3, 3},
		{"\x30\xFF\x00", 3, 3},             /* 127 in two bytes */
		{"\x30\x80\x80\x00", 4, 4},         /* 0 in three bytes */
		{"\x30\x80\x80\x80\x00", 5, 5},     /* 0 in four bytes */
		{"\x30\xFF\xFF\xFF\x00", 5, 5},     /* 2097151 in four bytes */
	};
	struct moat_mem m;
	size_t i, j;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct moat_mqtt_framer f;
		struct moat_mqtt_frame fr;
		struct moat_mqtt_fault fault;
		int rc = 0;

		moat_mqtt_framer_init(&f, &m, 0, 0);
		for (j = 0; j < c[i].n && rc == 0; j++)
			rc = feed_byte(&f, (uint8_t)c[i].b[j], &fr, &fault);
		if (rc != MOAT_EMALFORMED || j != c[i].refused_at)
			fail_msg("case %zu: got %d after %zu bytes, want Malformed after %zu", i, rc,
				 j, c[i].refused_at);
		assert_int_equal(fault.reason, 0x81);
		assert_non_null(fault.rule);
		assert_string_equal(fault.rule, "MQTT-1.5.5-1");
		moat_mqtt_framer_free(&f);
	}
	assert_int_equal(moat_mem_used(&m), 0);
}

static void test_set_max(void **state)
{
	struct moat_mem m;
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	uint8_t pkt[600];

	(void)state;
	moat_mem_init(&m, 0, NULL);
	pkt[0] = 0x30;
	pkt[1] = 0xF2; /* 498 = 0x72 | 3 << 7 */
	pkt[2] = 0x03;
	memset(pkt + 3, 'p', 498);
	/* before authentication: 100 bytes; a 501-byte packet is refused */
	moat_mqtt_framer_init(&f, &m, 0, 100);
	assert_int_equal(f.max_packet, 100);
	assert_int_equal(moat_mqtt_framer_feed(&f, pkt, 3), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), MOAT_ETOOBIG);
	moat_mqtt_framer_free(&f);
	/* raised after a first packet: now it passes */
	moat_mqtt_framer_init(&f, &m, 0, 100);
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\xC0\x00", 2), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	moat_mqtt_framer_set_max(&f, 1000);
	assert_int_equal(f.max_packet, 1000);
	assert_int_equal(moat_mqtt_framer_feed(&f, pkt, 501), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.size, 501);
	assert_memory_equal(fr.body, pkt + 3, 498);
	/* raised while the packet's header is already buffered (next() not yet called) */
	moat_mqtt_framer_set_max(&f, 100);
	assert_int_equal(moat_mqtt_framer_feed(&f, pkt, 3), 0);
	moat_mqtt_framer_set_max(&f, 501);
	assert_int_equal(moat_mqtt_framer_feed(&f, pkt + 3, 498), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.size, 501);
	/* lowered again */
	moat_mqtt_framer_set_max(&f, 500);
	assert_int_equal(moat_mqtt_framer_feed(&f, pkt, 3), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), MOAT_ETOOBIG);
	/* 0 means the protocol's maximum */
	moat_mqtt_framer_set_max(&f, 0);
	assert_int_equal(f.max_packet, MOAT_MQTT_MAX_PACKET);
	moat_mqtt_framer_free(&f);
	moat_mqtt_framer_init(&f, &m, 0, 0);
	assert_int_equal(f.max_packet, MOAT_MQTT_MAX_PACKET);
	moat_mqtt_framer_free(&f);
	assert_int_equal(moat_mem_used(&m), 0);
}

static void test_pending(void **state)
{
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	static const uint8_t two[] = {0x30, 0x03, 0x00, 0x01, 'a', 0xC0, 0x00, 0x30, 0x05, 0x00};

	(void)state;
	moat_mqtt_framer_init(&f, NULL, 0, 0);
	assert_int_equal(moat_mqtt_framer_pending(&f), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 0);
	assert_int_equal(moat_mqtt_framer_feed(&f, two, sizeof(two)), 0);
	assert_int_equal(moat_mqtt_framer_pending(&f), 10);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(moat_mqtt_framer_pending(&f), 5);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.header, 0xC0);
	assert_int_equal(moat_mqtt_framer_pending(&f), 3);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 0);
	assert_int_equal(moat_mqtt_framer_pending(&f), 3); /* a partial packet stays pending */
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\x01" "bcd", 4), 0);
	assert_int_equal(moat_mqtt_framer_pending(&f), 7);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.remaining, 5);
	assert_memory_equal(fr.body, "\x00\x01" "bcd", 5);
	assert_int_equal(moat_mqtt_framer_pending(&f), 0);
	moat_mqtt_framer_free(&f);
}

static void test_shrink(void **state)
{
	struct moat_mem m;
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	moat_mqtt_framer_init(&f, &m, 0, 0);
	assert_int_equal(moat_mem_used(&m), 0); /* nothing allocated before bytes arrive */
	moat_mqtt_framer_shrink(&f);             /* harmless on a fresh framer */
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\xC0\x00\x30\x02", 4), 0);
	assert_true(moat_mem_used(&m) > 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	/* something pending: shrink keeps it */
	moat_mqtt_framer_shrink(&f);
	assert_true(moat_mem_used(&m) > 0);
	assert_int_equal(moat_mqtt_framer_pending(&f), 2);
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\x00\x01", 2), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.header, 0x30);
	assert_memory_equal(fr.body, "\x00\x01", 2);
	/* idle: the memory goes back */
	moat_mqtt_framer_shrink(&f);
	assert_int_equal(moat_mem_used(&m), 0);
	assert_null(f.buf);
	/* and the framer still works */
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\xD0\x00", 2), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.header, 0xD0);
	moat_mqtt_framer_shrink(&f);
	assert_int_equal(moat_mem_used(&m), 0);
	moat_mqtt_framer_free(&f);
	moat_mqtt_framer_free(&f); /* twice is harmless */
	assert_int_equal(moat_mem_used(&m), 0);
}

static void test_account_limit(void **state)
{
	struct moat_mem m;
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	uint8_t *p;
	size_t n;

	(void)state;
	moat_mem_init(&m, 8192, NULL);
	moat_mqtt_framer_init(&f, &m, 4096, 0);
	/* a 100005-byte PUBLISH is allowed by the framer, but not by the account */
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\x30\xA0\x8D\x06", 4), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 0);
	assert_int_equal(moat_mqtt_framer_space(&f, &p, &n), MOAT_ENOMEM);
	assert_true(moat_mem_used(&m) <= 8192);
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"xx", 2), MOAT_ENOMEM);
	assert_int_equal(moat_mqtt_framer_pending(&f), 4); /* nothing lost, nothing added */
	moat_mqtt_framer_free(&f);
	assert_int_equal(moat_mem_used(&m), 0);
	/* an account too small for even the first chunk */
	moat_mem_init(&m, 100, NULL);
	moat_mqtt_framer_init(&f, &m, 4096, 0);
	assert_int_equal(moat_mqtt_framer_space(&f, &p, &n), MOAT_ENOMEM);
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\xC0\x00", 2), MOAT_ENOMEM);
	assert_int_equal(moat_mem_used(&m), 0);
	moat_mqtt_framer_free(&f);
	/* a packet that fits the account passes */
	moat_mem_init(&m, 8192, NULL);
	moat_mqtt_framer_init(&f, &m, 4096, 0);
	{
		static uint8_t pkt[8000];
		pkt[0] = 0x30;
		pkt[1] = 0xBD; /* 7997 = 0x3D | 62 << 7 */
		pkt[2] = 0x3E;
		memset(pkt + 3, 'q', sizeof(pkt) - 3);
		assert_int_equal(moat_mqtt_framer_feed(&f, pkt, sizeof(pkt)), 0);
		assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
		assert_int_equal(fr.size, 8000);
	}
	moat_mqtt_framer_free(&f);
	assert_int_equal(moat_mem_used(&m), 0);
}

#define MIB (1u << 20)

static uint8_t *big_packet(size_t *len)
{
	uint8_t *p = malloc(MIB + 8);
	size_t h;

	assert_non_null(p);
	p[0] = 0x30;
	h = 1 + vbi(p + 1, MIB);
	memset(p + h, 'B', MIB);
	*len = h + MIB;
	return p;
}

/* The 1 MiB packet arrives through space/commit, small ones follow in later reads. */
static void test_big_then_small_reads(void **state)
{
	struct moat_mem m;
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	size_t len, off = 0, got = 0;
	uint8_t *big = big_packet(&len);
	uint8_t *p;
	size_t n;
	int i;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	moat_mqtt_framer_init(&f, &m, 4096, 0);
	while (off < len) {
		assert_int_equal(moat_mqtt_framer_space(&f, &p, &n), 0);
		if (n > 65536)
			n = 65536;
		if (n > len - off)
			n = len - off;
		memcpy(p, big + off, n);
		moat_mqtt_framer_commit(&f, n);
		off += n;
		while (moat_mqtt_framer_next(&f, &fr, &fault) == 1) {
			assert_int_equal(fr.remaining, MIB);
			got++;
		}
	}
	assert_int_equal(got, 1);
	assert_true(moat_mem_used(&m) >= MIB);
	/* the next read gets a small buffer again */
	assert_int_equal(moat_mqtt_framer_space(&f, &p, &n), 0);
	if (moat_mem_used(&m) > MIB / 8)
		fail_msg("after the 1 MiB packet the buffer still holds %zu bytes",
			 moat_mem_used(&m));
	for (i = 0; i < 10; i++) {
		assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\xC0\x00", 2), 0);
		assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	}
	assert_true(moat_mem_used(&m) <= MIB / 8);
	moat_mqtt_framer_free(&f);
	assert_int_equal(moat_mem_used(&m), 0);
	free(big);
}

/*
 * The 1 MiB packet copied in with the small packets behind it (and half of
 * another): once the big one is consumed, the next space() call gives most
 * of its memory back even though small packets are still pending.
 */
static void test_big_then_small_pending(void **state)
{
	static const uint8_t small[] = {0x30, 0x04, 0x00, 0x01, 't', 'x', /* PUBLISH t "x" */
					0xC0, 0x00, 0xE0, 0x00, 0x30, 0x04, 0x00}; /* ... half */
	struct moat_mem m;
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	size_t len;
	uint8_t *big = big_packet(&len);
	uint8_t *p;
	size_t n, held;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	moat_mqtt_framer_init(&f, &m, 4096, 0);
	assert_int_equal(moat_mqtt_framer_feed(&f, big, len), 0);
	assert_int_equal(moat_mqtt_framer_feed(&f, small, sizeof(small)), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.remaining, MIB);
	assert_true(moat_mem_used(&m) >= MIB);
	/* the big one is consumed; small ones remain */
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.header, 0x30);
	assert_int_equal(moat_mqtt_framer_pending(&f), 7);
	assert_int_equal(moat_mqtt_framer_space(&f, &p, &n), 0);
	held = moat_mem_used(&m);
	/* what was pending is intact */
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.header, 0xC0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_int_equal(fr.header, 0xE0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 0);
	assert_int_equal(moat_mqtt_framer_feed(&f, (const uint8_t *)"\x01" "ty", 3), 0);
	assert_int_equal(moat_mqtt_framer_next(&f, &fr, &fault), 1);
	assert_memory_equal(fr.body, "\x00\x01" "ty", 4);
	moat_mqtt_framer_free(&f);
	assert_int_equal(moat_mem_used(&m), 0);
	free(big);
	if (held > MIB / 8)
		fail_msg("the 1 MiB packet was consumed but the next space() call kept %zu bytes "
			 "(7 bytes pending)",
			 held);
}

/* ---- moat_mqtt_fixed_header ---- */

static void test_fixed_header(void **state)
{
	static const struct {
		uint32_t value;
		const char *enc;
		size_t n;
	} c[] = {
		{0, "\x00", 1},
		{127, "\x7F", 1},
		{128, "\x80\x01", 2},
		{16383, "\xFF\x7F", 2},
		{16384, "\x80\x80\x01", 3},
		{2097151, "\xFF\xFF\x7F", 3},
		{2097152, "\x80\x80\x80\x01", 4},
		{268435455, "\xFF\xFF\xFF\x7F", 4},
	};
	size_t i, k;

	(void)state;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint8_t buf[8], hdr = 0, mine[8];
		uint32_t rem = 0;
		size_t hlen = 0;
		struct moat_mqtt_fault fault;

		/* the test's own encoder agrees with the table */
		assert_int_equal(vbi(mine, c[i].value), c[i].n);
		assert_memory_equal(mine, c[i].enc, c[i].n);
		buf[0] = 0x32;
		memcpy(buf + 1, c[i].enc, c[i].n);
		buf[1 + c[i].n] = 0xFF; /* trailing bytes are not looked at */
		assert_int_equal(moat_mqtt_fixed_header(buf, 2 + c[i].n, &hdr, &rem, &hlen, &fault), 1);
		assert_int_equal(hdr, 0x32);
		assert_int_equal(rem, c[i].value);
		assert_int_equal(hlen, 1 + c[i].n);
		/* exactly the header */
		rem = 0;
		assert_int_equal(moat_mqtt_fixed_header(buf, 1 + c[i].n, &hdr, &rem, &hlen, &fault), 1);
		assert_int_equal(rem, c[i].value);
		/* every shorter prefix needs more */
		for (k = 0; k < 1 + c[i].n; k++)
			assert_int_equal(
				moat_mqtt_fixed_header(buf, k, &hdr, &rem, &hlen, &fault), 0);
	}
	/* faults */
	{
		uint8_t hdr;
		uint32_t rem;
		size_t hlen;
		struct moat_mqtt_fault fault;
		assert_int_equal(moat_mqtt_fixed_header((const uint8_t *)"\x00", 1, &hdr, &rem, &hlen,
							&fault),
				 MOAT_EMALFORMED);
		assert_int_equal(moat_mqtt_fixed_header((const uint8_t *)"\xC1\x00", 2, &hdr, &rem,
							&hlen, &fault),
				 MOAT_EMALFORMED);
		assert_int_equal(moat_mqtt_fixed_header((const uint8_t *)"\x30\xFF\xFF\xFF\xFF\x01", 6,
							&hdr, &rem, &hlen, &fault),
				 MOAT_EMALFORMED);
		assert_int_equal(fault.reason, 0x81);
		assert_int_equal(moat_mqtt_fixed_header((const uint8_t *)"\x30\x80\x00", 3, &hdr, &rem,
							&hlen, &fault),
				 MOAT_EMALFORMED);
		assert_int_equal(fault.reason, 0x81);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_whole),
		cmocka_unit_test(test_stream_one_byte),
		cmocka_unit_test(test_stream_every_split),
		cmocka_unit_test(test_stream_random_chunks),
		cmocka_unit_test(test_space_commit),
		cmocka_unit_test(test_max_exact_passes),
		cmocka_unit_test(test_max_plus_one_refused_early),
		cmocka_unit_test(test_oversize_never_grows),
		cmocka_unit_test(test_bad_first_byte),
		cmocka_unit_test(test_bad_remaining_length),
		cmocka_unit_test(test_set_max),
		cmocka_unit_test(test_pending),
		cmocka_unit_test(test_shrink),
		cmocka_unit_test(test_account_limit),
		cmocka_unit_test(test_big_then_small_reads),
		cmocka_unit_test(test_big_then_small_pending),
		cmocka_unit_test(test_fixed_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
