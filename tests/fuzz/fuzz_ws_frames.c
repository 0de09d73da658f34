/*
 * fuzz_ws_frames.c - libFuzzer target: the WebSocket transport of
 * src/net/ws.c reading a client's frames after a valid upgrade.
 *
 * The first input byte configures the run: bits 0-1 the largest data frame
 * (default, 1, 100, 70000 bytes), bit 2 interleaves writev() calls of the
 * server's own. The rest is what the client sends after its (fixed, valid)
 * upgrade request. A fake lower transport hands the request and those bytes
 * over in PRNG-sized pieces with MOAT_EAGAIN in between, then ends the
 * stream; it accepts the server's writes in PRNG-sized pieces too. The
 * server is read with PRNG-sized, exactly-allocated buffers (1 byte
 * included) and flushed between reads.
 *
 * A reference parser written here walks the same bytes by RFC 6455 (and
 * wslay's order of checks) and says which payload bytes must come out, how
 * many more may (a data frame cut by the end of the input), and how the
 * stream must end. Checked:
 *   - read() never returns more than asked, the stream ends within a bound
 *     of calls, and then read() keeps returning the same end;
 *   - the bytes read are exactly the reference's (a prefix of the partial
 *     frame's payload allowed at the end);
 *   - the end: 0 for a close frame or the end of the input, MOAT_ETOOBIG for
 *     an oversized data frame, MOAT_EPROTOCOL for anything breaking the
 *     protocol (text frames included); either 0 or MOAT_EPROTOCOL when a
 *     close reason holds non-ASCII bytes (wslay checks its UTF-8 chunk by
 *     chunk, skipping each chunk's first two bytes, so the split decides);
 *   - what the server wrote, once flushed: the 101, then unmasked final
 *     frames only: pongs whose payloads are the pings' in order, binary
 *     frames carrying a prefix of what writev() accepted, and at most one
 *     close, last, with 1009 / 1003 for an oversized / text frame and the
 *     peer's own code echoed.
 */
#include "fuzz_common.h"
#include "event/loop.h"
#include "net/transport.h"
#include "net/ws.h"

#define REQ                                                                                        \
	"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"          \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"            \
	"Sec-WebSocket-Protocol: mqtt\r\n\r\n"

/* ---- the fake lower transport ---- */

struct fake {
	struct moat_transport base;
	const uint8_t *in;
	size_t len, off;
	struct fz_rng rng;
	uint8_t *out;
	size_t out_len, out_cap;
};

static ssize_t fake_read(struct moat_transport *t, void *buf, size_t n)
{
	struct fake *f = (struct fake *)t;
	size_t k;

	if ((fz_next(&f->rng) & 7) == 0)
		return MOAT_EAGAIN;
	if (f->off == f->len)
		return 0;
	k = fz_chunk_size(&f->rng);
	k = k < n ? k : n;
	k = k < f->len - f->off ? k : f->len - f->off;
	memcpy(buf, f->in + f->off, k);
	f->off += k;
	return (ssize_t)k;
}

static ssize_t fake_writev(struct moat_transport *t, const struct iovec *iov, int n)
{
	struct fake *f = (struct fake *)t;
	size_t want = fz_chunk_size(&f->rng) * 8, done = 0;
	int i;

	if ((fz_next(&f->rng) & 7) == 0)
		return MOAT_EAGAIN;
	for (i = 0; i < n && done < want; i++) {
		size_t k = iov[i].iov_len < want - done ? iov[i].iov_len : want - done;

		if (f->out_len + k > f->out_cap) {
			f->out_cap = (f->out_len + k) * 2;
			f->out = realloc(f->out, f->out_cap);
			FZ_ASSERT(f->out != NULL);
		}
		memcpy(f->out + f->out_len, iov[i].iov_base, k);
		f->out_len += k;
		done += k;
	}
	return (ssize_t)done;
}

static int fake_flush(struct moat_transport *t)
{
	(void)t;
	return 0;
}

static unsigned fake_want(const struct moat_transport *t, bool have_output)
{
	(void)t;
	return MOAT_EV_READ | (have_output ? MOAT_EV_WRITE : 0);
}

static bool fake_no(const struct moat_transport *t)
{
	(void)t;
	return false;
}

static const struct moat_tls_info *fake_tls(const struct moat_transport *t)
{
	(void)t;
	return NULL;
}

static int fake_export(struct moat_transport *t, uint8_t *out, size_t n, const char *label,
		       const uint8_t *ctx, size_t ctx_len)
{
	(void)t, (void)out, (void)n, (void)label, (void)ctx, (void)ctx_len;
	return MOAT_EINVAL;
}

static void fake_free(struct moat_transport *t)
{
	struct fake *f = (struct fake *)t;

	free(f->out);
	free(f);
}

static const struct moat_transport_ops fake_ops = {
	.name = "fake",
	.read = fake_read,
	.writev = fake_writev,
	.flush = fake_flush,
	.want = fake_want,
	.has_buffered = fake_no,
	.ready = fake_no,
	.tls = fake_tls,
	.export_keys = fake_export,
	.free = fake_free,
};

/* ---- the reference ---- */

enum stop { ST_NONE, ST_TRUNC, ST_CLOSE, ST_PROTO, ST_TEXT, ST_BIG };

struct ref {
	uint8_t *pay;   /* payload that must come out, then the partial frame's */
	size_t len;     /* bytes that must come out */
	size_t partial; /* bytes after them that may */
	enum stop stop;
	int close_ok;   /* ST_CLOSE: 1 valid, 0 invalid, -1 not judged here */
	int close_code; /* the peer's, or 0 */
	uint8_t *ping;  /* ping payloads, back to back */
	size_t *ping_len, nping, ping_bytes;
};

static bool code_ok(unsigned c)
{
	return (c >= 1000 && c <= 1011 && c != 1004 && c != 1005 && c != 1006) ||
	       (c >= 3000 && c <= 4999);
}

/* A close frame's payload p[0..n): valid, invalid, or -1 (a non-ASCII reason). */
static int close_valid(const uint8_t *p, size_t n)
{
	size_t i;

	if (n < 2)
		return 1;
	if (!code_ok((unsigned)(p[0] << 8 | p[1])))
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] >= 0x80)
			return -1; /* wslay checks UTF-8 per chunk: left to it */
	return 1;
}

/*
 * The frame at h (avail bytes): returns 0 and its header length, payload
 * length and fields, or an ST_* where the walk stops.
 */
static int ref_header(const uint8_t *h, size_t avail, size_t *hl, uint64_t *len)
{
	unsigned op, fin;
	size_t i;

	if (avail < 2)
		return ST_TRUNC;
	op = h[0] & 15;
	fin = h[0] >> 7;
	*len = h[1] & 127;
	if (op >= 8 && (*len > 125 || !fin))
		return ST_PROTO; /* wslay's frame layer, with two bytes */
	*hl = *len == 126 ? 4 : *len == 127 ? 10 : 2;
	if (avail < *hl)
		return ST_TRUNC;
	if (*len == 126) {
		*len = (uint64_t)h[2] << 8 | h[3];
		if (*len < 126)
			return ST_PROTO;
	} else if (*len == 127) {
		for (*len = 0, i = 0; i < 8; i++)
			*len = *len << 8 | h[2 + i];
		if (*len < 65536 || *len >> 63)
			return ST_PROTO;
	}
	*hl += (h[1] & 0x80) ? 4 : 0;
	if (avail < *hl || (*len > 0 && avail == *hl))
		return ST_TRUNC; /* wslay hands a frame over with its first payload byte */
	return 0;
}

static void ref_walk(struct ref *r, const uint8_t *d, size_t n, uint64_t max)
{
	size_t pos = 0;
	bool in_msg = false;

	for (;;) {
		const uint8_t *h = d + pos;
		unsigned op = n - pos ? h[0] & 15 : 0;
		bool data;
		size_t hl = 0, take, i;
		uint64_t len = 0;
		uint8_t *dst;
		int st = ref_header(h, n - pos, &hl, &len);

		if (st) {
			r->stop = (enum stop)st;
			return;
		}
		if ((h[0] & 0x70) || !(h[1] & 0x80) ||
		    (op == 0 ? !in_msg : (op == 1 || op == 2) ? in_msg : !(op >= 8 && op <= 10))) {
			r->stop = ST_PROTO;
			return;
		}
		data = op == 0 || op == 2;
		if (op == 1 || (data && len > max)) {
			r->stop = op == 1 ? ST_TEXT : ST_BIG;
			return;
		}
		take = (uint64_t)(n - pos - hl) < len ? n - pos - hl : (size_t)len;
		dst = data ? r->pay + r->len : op == 9 ? r->ping + r->ping_bytes : NULL;
		for (i = 0; dst && i < take; i++)
			dst[i] = h[hl + i] ^ h[hl - 4 + i % 4];
		if (take < len) {
			r->partial = data ? take : 0;
			r->stop = ST_TRUNC;
			/* wslay checks a close reason's UTF-8 as it comes: it may fail first. */
			for (i = 2; op == 8 && i < take; i++)
				if ((h[hl + i] ^ h[hl - 4 + i % 4]) >= 0x80)
					r->close_ok = -1;
			return;
		}
		if (data) {
			r->len += take;
			in_msg = !(h[0] & 0x80);
		} else if (op == 9) {
			r->ping_len[r->nping++] = take;
			r->ping_bytes += take;
		} else if (op == 8) {
			uint8_t p[125];

			for (i = 0; i < take; i++)
				p[i] = h[hl + i] ^ h[hl - 4 + i % 4];
			r->stop = ST_CLOSE;
			r->close_ok = close_valid(p, take);
			r->close_code = take >= 2 ? p[0] << 8 | p[1] : 0;
			return;
		}
		pos += hl + take;
	}
}

/* ---- what the server wrote ---- */

struct written {
	uint8_t p[64 * 1024]; /* bytes writev accepted */
	size_t len;
};

static void check_output(const struct fake *f, const struct ref *r, const struct written *w,
			 ssize_t end)
{
	const uint8_t *o = f->out, *e = memmem(o, f->out_len, "\r\n\r\n", 4);
	size_t pos, npong = 0, ping_off = 0, bin = 0;
	bool closed = false;

	FZ_ASSERT(e != NULL && f->out_len >= 13 && memcmp(o, "HTTP/1.1 101 ", 13) == 0);
	for (pos = (size_t)(e + 4 - o); pos < f->out_len;) {
		const uint8_t *h = o + pos;
		size_t hl = 2, len, i;
		unsigned op;

		FZ_ASSERT(!closed); /* the close is the last frame */
		FZ_ASSERT(f->out_len - pos >= 2 && h[0] >> 4 == 8 && !(h[1] & 0x80));
		op = h[0] & 15;
		len = h[1] & 127;
		if (len == 126) {
			len = (size_t)h[2] << 8 | h[3];
			hl = 4;
		} else if (len == 127) {
			for (len = 0, i = 0; i < 8; i++)
				len = len << 8 | h[2 + i];
			hl = 10;
		}
		FZ_ASSERT(f->out_len - pos >= hl && f->out_len - pos - hl >= len);
		if (op == 10) {
			FZ_ASSERT(npong < r->nping && r->ping_len[npong] == len);
			FZ_ASSERT(memcmp(h + hl, r->ping + ping_off, len) == 0);
			ping_off += r->ping_len[npong++];
		} else if (op == 2) {
			FZ_ASSERT(bin + len <= w->len && memcmp(h + hl, w->p + bin, len) == 0);
			bin += len;
		} else {
			unsigned code = len >= 2 ? (unsigned)(h[hl] << 8 | h[hl + 1]) : 0;

			FZ_ASSERT(op == 8 && len != 1);
			if (end == MOAT_ETOOBIG)
				FZ_ASSERT(code == 1009);
			if (r->stop == ST_TEXT)
				FZ_ASSERT(code == 1003);
			if (r->stop == ST_CLOSE && r->close_ok == 1)
				FZ_ASSERT(code == (unsigned)r->close_code);
			closed = true;
		}
		pos += hl + len;
	}
}

/* ---- the run ---- */

static ssize_t expected_end(const struct ref *r)
{
	switch (r->stop) {
	case ST_TRUNC:
		return 0;
	case ST_CLOSE:
		return r->close_ok == 1 ? 0 : MOAT_EPROTOCOL;
	case ST_BIG:
		return MOAT_ETOOBIG;
	default:
		return MOAT_EPROTOCOL;
	}
}

/* Writes up to 300 bytes from src with writev (two iovecs); records what was accepted. */
static void some_write(struct moat_transport *t, struct fz_rng *rng, const uint8_t *src,
		       size_t n, struct written *w)
{
	size_t k = (size_t)(fz_next(rng) % 300), cut;
	struct iovec iov[2];
	ssize_t r;

	k = k < n ? k : n;
	if (k > sizeof(w->p) - w->len)
		return;
	cut = k ? (size_t)(fz_next(rng) % k) : 0;
	iov[0] = (struct iovec){(void *)src, cut};
	iov[1] = (struct iovec){(void *)(src + cut), k - cut};
	r = moat_transport_writev(t, iov, 2);
	FZ_ASSERT(r == MOAT_EAGAIN || r == MOAT_ECLOSED || (r >= 0 && (size_t)r <= k));
	if (r > 0) {
		memcpy(w->p + w->len, src, (size_t)r);
		w->len += (size_t)r;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t maxes[4] = {0, 1, 100, 70000};
	struct moat_ws_opts o = {0};
	struct ref r = {0};
	static struct written w;
	struct fz_rng rng;
	struct fake *f;
	struct moat_transport *t;
	uint8_t *stream, *got;
	size_t got_len = 0, rl = strlen(REQ), i, bound;
	ssize_t end = 1;
	unsigned cfg;

	if (size < 1)
		return 0;
	cfg = data[0];
	data++, size--;
	o.max_frame_bytes = maxes[cfg & 3];
	rng.s = fz_hash(data, size) ^ cfg;

	r.pay = malloc(size + 1);
	r.ping = malloc(size + 1);
	r.ping_len = malloc((size / 2 + 1) * sizeof(size_t));
	got = malloc(size + 1);
	w.len = 0;
	stream = malloc(rl + size);
	FZ_ASSERT(r.pay && r.ping && r.ping_len && got && stream);
	memcpy(stream, REQ, rl);
	if (size)
		memcpy(stream + rl, data, size);
	ref_walk(&r, data, size, o.max_frame_bytes ? o.max_frame_bytes : MOAT_WS_MAX_FRAME_DEFAULT);

	f = calloc(1, sizeof(*f));
	FZ_ASSERT(f != NULL);
	f->base.ops = &fake_ops;
	f->base.fd = -1;
	f->in = stream;
	f->len = rl + size;
	f->rng.s = rng.s + 1;
	t = moat_ws_server_new(&f->base, &o);
	FZ_ASSERT(t != NULL);

	bound = 200 + 40 * (rl + size);
	for (i = 0; i < bound; i++) {
		size_t n = fz_chunk_size(&rng);
		uint8_t *buf = malloc(n);
		ssize_t k;

		FZ_ASSERT(buf != NULL);
		k = moat_transport_read(t, buf, n);
		if (k > 0) {
			FZ_ASSERT((size_t)k <= n && got_len + (size_t)k <= r.len + r.partial);
			memcpy(got + got_len, buf, (size_t)k);
			got_len += (size_t)k;
		}
		free(buf);
		if (k <= 0 && k != MOAT_EAGAIN) {
			end = k;
			break;
		}
		if ((cfg & 4) && (fz_next(&rng) & 15) == 0)
			some_write(t, &rng, data, size, &w);
		k = moat_transport_flush(t);
		FZ_ASSERT(k == 0 || k == MOAT_EAGAIN);
	}
	FZ_ASSERT(end != 1); /* it ended */
	{
		uint8_t one[1];

		FZ_ASSERT(moat_transport_read(t, one, 1) == end);
	}
	if (r.close_ok != -1)
		FZ_ASSERT(end == expected_end(&r));
	else
		FZ_ASSERT(end == 0 || end == MOAT_EPROTOCOL);
	FZ_ASSERT(got_len >= r.len);
	FZ_ASSERT(got_len == r.len || r.stop == ST_TRUNC);
	FZ_ASSERT(got_len == 0 || memcmp(got, r.pay, got_len) == 0);

	for (i = 0; i < 100000 && moat_transport_flush(t) == MOAT_EAGAIN; i++)
		;
	FZ_ASSERT(moat_transport_flush(t) == 0);
	check_output(f, &r, &w, end);

	moat_transport_free(t); /* frees f */
	free(stream);
	free(got);
	free(r.ping_len);
	free(r.ping);
	free(r.pay);
	return 0;
}
