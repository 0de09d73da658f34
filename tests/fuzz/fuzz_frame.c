/*
 * fuzz_frame.c - libFuzzer target: the incremental framer.
 *
 * The first input byte configures the framer: bits 0-2 its chunk (0 = the
 * default 4096, 1, 2, 3, 8, 64, 512, 4096), bits 3-5 its maximum packet
 * (0 = the default, 2, 5, 16, 128, 1024, 65536, 300), bit 6 forces 1-byte
 * chunks, bit 7 changes the maximum to 64 KiB with moat_mqtt_framer_set_max
 * once the first frame is taken (as a broker raises it after CONNECT). The
 * rest is a byte stream, framed three ways:
 *   - a reference parser written here (first byte checked with
 *     moat_mqtt_header_check, then a minimal Variable Byte Integer of at most
 *     4 bytes, then the size limit, then the body);
 *   - a framer fed the whole stream at once, then drained;
 *   - a framer fed PRNG-sized chunks (1-byte ones included, through
 *     moat_mqtt_framer_feed and space/commit), drained after every chunk,
 *     stopping at the first fault.
 * Checked: both framers yield exactly the reference's frames (header,
 * remaining, size, and body bytes equal to the stream's bytes at that
 * offset) and end with the same outcome (need-more with the same bytes
 * pending, or a fault with the same code, well-formed); the buffer never
 * grows beyond what the growth policy of frame.c allows (the chunk, a packet
 * size already announced and allowed, or double the bytes held); running
 * out of the 1 MiB account happens only when that policy needs more; after
 * moat_mqtt_framer_free (and shrink) the account is back to 0.
 *
 * Regression seed corpus/fuzz_frame/regress-chunk1-unbounded-growth.bin: with
 * chunk 1 the framer once doubled its buffer instead of compacting it.
 */
#include "fuzz_common.h"

#define LIMIT (1u << 20)

struct ref_frame {
	uint8_t header;
	uint32_t remaining;
	size_t off;  /* of the packet in the stream */
	size_t size; /* whole packet */
};

struct outcome {
	int code;       /* 0 = needs more bytes (or clean end), else the fault code */
	size_t pending; /* bytes held when code is 0 */
	size_t frames;  /* frames yielded */
	bool nomem;     /* the run stopped on MOAT_ENOMEM */
};

struct cfg {
	size_t chunk;      /* as given to init */
	size_t chunk_eff;  /* what the framer uses */
	uint32_t max;      /* as given to init */
	uint32_t max_eff;
	bool ones;         /* 1-byte chunks only */
	bool raise;        /* set_max(RAISED) after the first frame */
};

#define RAISED 65536u

/* The limit the framer applies to the packet after `frames` frames. */
static uint32_t limit_for(const struct cfg *c, size_t frames)
{
	return c->raise && frames > 0 ? RAISED : c->max_eff;
}

/* Reference framing of s[0..n). Fills fr (n / 2 + 1 slots) and returns the outcome. */
static struct outcome ref_frame(const struct cfg *c, const uint8_t *s, size_t n,
				struct ref_frame *fr, size_t *maxclaim)
{
	struct outcome o = {0};
	struct moat_mqtt_fault fault;
	size_t off = 0;

	*maxclaim = 0;
	for (;;) {
		uint32_t rem = 0;
		size_t i, hlen = 0, size;

		if (off == n)
			return o;
		if (moat_mqtt_header_check(s[off], &fault) < 0) {
			o.code = MOAT_EMALFORMED;
			return o;
		}
		for (i = 1; i <= 4; i++) {
			uint8_t b;

			if (off + i >= n) {
				o.pending = n - off;
				return o;
			}
			b = s[off + i];
			rem |= (uint32_t)(b & 0x7F) << (7 * (i - 1));
			if (!(b & 0x80)) {
				if (b == 0 && i > 1) {
					o.code = MOAT_EMALFORMED;
					return o;
				}
				hlen = i + 1;
				break;
			}
		}
		if (!hlen) {
			o.code = MOAT_EMALFORMED;
			return o;
		}
		size = hlen + rem;
		if (size > limit_for(c, o.frames)) {
			o.code = MOAT_ETOOBIG;
			return o;
		}
		if (size > *maxclaim)
			*maxclaim = size;
		if (n - off < size) {
			o.pending = n - off;
			return o;
		}
		fr[o.frames].header = s[off];
		fr[o.frames].remaining = rem;
		fr[o.frames].off = off;
		fr[o.frames].size = size;
		o.frames++;
		off += size;
	}
}

struct run {
	const struct cfg *c;
	const uint8_t *s;
	size_t n;
	const struct ref_frame *ref;
	size_t nref;
	size_t bound_base; /* max(chunk, largest allowed announced packet) */
	size_t maxpend;
	struct moat_mqtt_framer f;
	struct outcome o;
	bool stopped;
};

/* The growth policy: the buffer is never larger than this. */
static void check_growth(struct run *r)
{
	size_t pend = moat_mqtt_framer_pending(&r->f);
	size_t bound;

	if (pend > r->maxpend)
		r->maxpend = pend;
	bound = r->bound_base > 2 * r->maxpend ? r->bound_base : 2 * r->maxpend;
	if (r->f.cap > bound) {
		fprintf(stderr, "framer buffer %zu bytes for at most %zu pending (chunk %zu, "
				"largest packet %zu)\n",
			r->f.cap, r->maxpend, r->c->chunk_eff, r->bound_base);
		FZ_ASSERT(r->f.cap <= bound);
	}
	FZ_ASSERT(moat_mem_used(r->f.mem) == r->f.cap);
}

/* Takes every frame available, comparing each with the reference. */
static void drain(struct run *r)
{
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;

	while (!r->stopped) {
		int rc;

		memset(&fault, 0, sizeof(fault));
		rc = moat_mqtt_framer_next(&r->f, &fr, &fault);
		if (rc == 0)
			return;
		if (rc < 0) {
			fz_check_fault(rc, &fault, 0);
			r->o.code = rc;
			r->stopped = true;
			return;
		}
		FZ_ASSERT(rc == 1);
		FZ_ASSERT(r->o.frames < r->nref);
		{
			const struct ref_frame *x = &r->ref[r->o.frames];
			size_t hlen = x->size - x->remaining;

			FZ_ASSERT(fr.header == x->header);
			FZ_ASSERT(fr.remaining == x->remaining);
			FZ_ASSERT(fr.size == x->size);
			FZ_ASSERT(fr.remaining == 0 ||
				  memcmp(fr.body, r->s + x->off + hlen, fr.remaining) == 0);
		}
		r->o.frames++;
		if (r->c->raise && r->o.frames == 1)
			moat_mqtt_framer_set_max(&r->f, RAISED);
	}
}

static void run_init(struct run *r, struct moat_mem *mem, const struct cfg *c, const uint8_t *s,
		     size_t n, const struct ref_frame *ref, size_t nref, size_t maxclaim)
{
	memset(r, 0, sizeof(*r));
	r->c = c;
	r->s = s;
	r->n = n;
	r->ref = ref;
	r->nref = nref;
	r->bound_base = c->chunk_eff > maxclaim ? c->chunk_eff : maxclaim;
	moat_mqtt_framer_init(&r->f, mem, c->chunk, c->max);
}

/* Records an allocation failure: only when the growth policy needs more than the account. */
static void nomem(struct run *r)
{
	size_t need = r->bound_base > 2 * r->n ? r->bound_base : 2 * r->n;

	FZ_ASSERT(need > LIMIT);
	r->o.nomem = true;
}

static void run_finish(struct run *r)
{
	if (!r->stopped)
		r->o.pending = moat_mqtt_framer_pending(&r->f);
	if (!r->stopped && r->o.pending == 0) {
		moat_mqtt_framer_shrink(&r->f);
		FZ_ASSERT(r->f.cap == 0 && moat_mem_used(r->f.mem) == 0);
	}
	moat_mqtt_framer_free(&r->f);
	FZ_ASSERT(moat_mem_used(r->f.mem) == 0);
}

static void run_whole(struct run *r)
{
	if (r->n && moat_mqtt_framer_feed(&r->f, r->s, r->n) < 0)
		nomem(r);
	else if (r->n)
		check_growth(r);
	drain(r);
	run_finish(r);
}

static void run_chunked(struct run *r, struct fz_rng *rng)
{
	size_t off = 0;

	while (off < r->n && !r->stopped) {
		size_t n = r->c->ones ? 1 : fz_chunk_size(rng);
		int rc;

		if (n > r->n - off)
			n = r->n - off;
		if (fz_next(rng) & 1) {
			rc = moat_mqtt_framer_feed(&r->f, r->s + off, n);
		} else {
			uint8_t *dst;
			size_t room;

			rc = moat_mqtt_framer_space(&r->f, &dst, &room);
			if (rc == 0) {
				FZ_ASSERT(room > 0 && dst == r->f.buf + r->f.end);
				FZ_ASSERT(r->f.end + room == r->f.cap);
				if (n > room)
					n = room;
				memcpy(dst, r->s + off, n);
				moat_mqtt_framer_commit(&r->f, n);
			}
		}
		if (rc < 0) {
			FZ_ASSERT(rc == MOAT_ENOMEM);
			nomem(r);
			break;
		}
		off += n;
		check_growth(r);
		drain(r);
	}
	run_finish(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[8] = {0, 1, 2, 3, 8, 64, 512, 4096};
	static const uint32_t maxes[8] = {0, 2, 5, 16, 128, 1024, 65536, 300};
	struct cfg c;
	struct moat_mem mem;
	struct ref_frame *ref;
	struct outcome want;
	struct run whole, chunked;
	struct fz_rng rng;
	uint8_t *s;
	size_t n, maxclaim;

	if (size < 1)
		return 0;
	c.chunk = chunks[data[0] & 7];
	c.chunk_eff = c.chunk ? c.chunk : 4096;
	c.max = maxes[(data[0] >> 3) & 7];
	c.max_eff = c.max ? c.max : MOAT_MQTT_MAX_PACKET;
	c.ones = (data[0] & 0x40) != 0;
	c.raise = (data[0] & 0x80) != 0;
	s = fz_dup(data + 1, size - 1);
	n = size - 1;
	rng.s = fz_hash(data, size);

	ref = malloc((n / 2 + 1) * sizeof(*ref));
	FZ_ASSERT(ref != NULL);
	want = ref_frame(&c, s, n, ref, &maxclaim);

	moat_mem_init(&mem, LIMIT, NULL);
	run_init(&whole, &mem, &c, s, n, ref, want.frames, maxclaim);
	run_whole(&whole);
	run_init(&chunked, &mem, &c, s, n, ref, want.frames, maxclaim);
	run_chunked(&chunked, &rng);

	if (!whole.o.nomem) {
		FZ_ASSERT(whole.o.frames == want.frames);
		FZ_ASSERT(whole.o.code == want.code);
		FZ_ASSERT(want.code != 0 || whole.o.pending == want.pending);
	}
	if (!chunked.o.nomem) {
		FZ_ASSERT(chunked.o.frames == want.frames);
		FZ_ASSERT(chunked.o.code == want.code);
		FZ_ASSERT(want.code != 0 || chunked.o.pending == want.pending);
	}
	free(ref);
	free(s);
	return 0;
}
