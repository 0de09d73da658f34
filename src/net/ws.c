/*
 * ws.c - the WebSocket transport: an HTTP upgrade (http.c), then RFC 6455
 * frames through wslay's event API, over a lower transport reached only
 * through its vtable.
 *
 *   server:  HANDSHAKE --valid request--> OPEN (101 queued, sent by flush)
 *                \------bad request-----> REFUSED (refusal queued; read fails)
 *   client:  HANDSHAKE (request queued) --valid 101--> OPEN
 *                \------anything else----------------> REFUSED
 *   OPEN: read() ends with 0 (close frame, end of stream) or an error, once
 *         wslay stops reading; the close frame wslay answers with is flushed.
 *
 * Reading. wslay runs without message buffering: each data frame's payload
 * comes to on_chunk in pieces, and on_chunk copies it straight into the
 * caller's read buffer (dst). on_recv, wslay's source of bytes, reads from
 * the lower transport at most as many bytes as dst has room for: wslay asks
 * for bytes only when it has (almost) none left, and what it keeps then is
 * a few header bytes, so the payload delivered until its next request is at
 * most what it was given. Should that ever not hold, the excess goes to a
 * small overflow buffer, and past that the connection fails: never a write
 * out of bounds, never memory the peer chose. Bytes read past the HTTP head
 * (a client need not wait for our 101) are handed to wslay before the lower
 * transport is read again.
 *
 * Writing. writev() copies the caller's bytes into one binary message that
 * wslay queues (it copies them again); flush() lets wslay frame queued
 * messages into a staging buffer and writes that to the lower transport in
 * large pieces (one write for many small frames, one TLS record for a
 * header and its payload). writev() refuses (MOAT_EAGAIN) when OUT_BOUND
 * bytes or OUT_MSGS messages wait; reading pauses, and want() stops asking
 * for reads, while CTRL_MSGS messages wait, which only control answers to a
 * peer that does not read (pongs to a ping flood) can cause.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <wslay/wslay.h>

#include "core/error.h"
#include "event/loop.h"
#include "net/http.h"
#include "net/ws.h"

enum {
	HS_FIRST = 1024,        /* first size of the handshake buffer */
	HS_OUT = 1600,          /* the request, 101 or refusal we write */
	STAGE = 16384,          /* frame bytes gathered for one lower write */
	OVER_CAP = 16384,       /* payload that did not fit the read buffer (see above) */
	OUT_BOUND = 256 * 1024, /* queued message bytes past which writev refuses */
	OUT_MSGS = 64,          /* queued messages past which writev refuses */
	CTRL_MSGS = 128,        /* queued messages past which reading pauses */
	GATHER_KEEP = 16384,    /* a gather buffer larger than this is not kept */
};

enum state { S_HANDSHAKE, S_OPEN, S_REFUSED };

struct ws {
	struct moat_transport base; /* first: a struct ws is a struct moat_transport */
	struct moat_transport *lower;
	wslay_event_context_ptr ctx; /* NULL on the server until the request is accepted */
	bool server;
	enum state state;
	int status; /* HTTP status the handshake ended with, 0 before */
	/* the end of the stream, once known: reported by read() from then on */
	bool ended;
	int end;
	/* handshake */
	struct moat_http_policy pol; /* strings in polbuf */
	char *polbuf;
	struct moat_http_parser http;
	char *hs; /* bytes read during the handshake; then hs[lo..hs_len) are frames */
	size_t hs_len, hs_cap, hs_max, lo;
	char out[HS_OUT]; /* handshake bytes to write: out[out_off..out_len) */
	size_t out_len, out_off;
	char forwarded[MOAT_HTTP_ADDR_MAX];
	/* reading frames */
	uint8_t *dst; /* the caller's buffer during wslay_event_recv, else NULL */
	size_t dst_room, dst_len;
	uint8_t *over; /* overflow: over[over_off..over_len) */
	size_t over_off, over_len;
	bool data_frame;   /* the frame being received carries MQTT bytes */
	bool paused;       /* on_recv refused: no room in dst, or too many answers queued */
	bool lower_again;  /* the lower transport had nothing */
	bool lower_eof;    /* ... or ended */
	int lower_err;     /* ... or failed with this */
	int fail;          /* our own verdict on the peer's frames, 0 if none */
	uint64_t max_frame;
	uint8_t mask[64]; /* client: random bytes for frame masks */
	size_t mask_used;
	/* writing frames */
	uint8_t *stage; /* stage[stage_off..stage_len) to write */
	size_t stage_off, stage_len;
	uint8_t *gather;
	size_t gather_cap;
};

static const struct moat_transport_ops ws_ops;

/* ---- wslay callbacks ---- */

/* The HTTP head and what followed it are consumed: give the buffer back. */
static void drop_head(struct ws *ws)
{
	free(ws->hs);
	ws->hs = NULL;
	ws->hs_len = ws->hs_cap = ws->lo = 0;
}

static ssize_t would_block(wslay_event_context_ptr ctx)
{
	wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	return -1;
}

/* Fails the connection: queue a close with code, stop reading, remember err. */
static void fail(struct ws *ws, uint16_t code, int err)
{
	if (!ws->fail) {
		ws->fail = err;
		wslay_event_queue_close(ws->ctx, code, NULL, 0);
	}
	wslay_event_shutdown_read(ws->ctx);
}

/* wslay wants bytes: leftovers of the handshake first, then the lower transport. */
static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
		       void *user)
{
	struct ws *ws = user;
	size_t room = ws->dst ? ws->dst_room - ws->dst_len : 0;
	ssize_t r;

	(void)flags;
	if (room == 0 || wslay_event_get_queued_msg_count(ctx) >= CTRL_MSGS) {
		ws->paused = true;
		return would_block(ctx);
	}
	if (len > room)
		len = room;
	if (ws->lo < ws->hs_len) {
		if (len > ws->hs_len - ws->lo)
			len = ws->hs_len - ws->lo;
		memcpy(buf, ws->hs + ws->lo, len);
		ws->lo += len;
		if (ws->lo == ws->hs_len)
			drop_head(ws);
		return (ssize_t)len;
	}
	r = ws->lower->ops->read(ws->lower, buf, len);
	if (r > 0)
		return r;
	if (r == MOAT_EAGAIN) {
		ws->lower_again = true;
		return would_block(ctx);
	}
	if (r == 0)
		ws->lower_eof = true;
	else
		ws->lower_err = (int)r;
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static void on_frame_start(wslay_event_context_ptr ctx,
			   const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
	struct ws *ws = user;

	(void)ctx;
	ws->data_frame =
		arg->opcode == WSLAY_BINARY_FRAME || arg->opcode == WSLAY_CONTINUATION_FRAME;
	if (arg->opcode == WSLAY_TEXT_FRAME)
		fail(ws, WSLAY_CODE_UNSUPPORTED_DATA, MOAT_EPROTOCOL); /* MQTT is binary [MQTT-6.0.0-1] */
	else if (ws->data_frame && arg->payload_length > ws->max_frame)
		fail(ws, WSLAY_CODE_MESSAGE_TOO_BIG, MOAT_ETOOBIG);
}

/* Payload bytes: into dst, the rest (which should not exist) into the overflow. */
static void on_chunk(wslay_event_context_ptr ctx,
		     const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user)
{
	struct ws *ws = user;
	const uint8_t *p = arg->data;
	size_t n = arg->data_length, k;

	(void)ctx;
	if (!ws->data_frame || ws->fail || n == 0)
		return;
	k = ws->dst ? ws->dst_room - ws->dst_len : 0;
	k = k < n ? k : n;
	memcpy(ws->dst + ws->dst_len, p, k);
	ws->dst_len += k;
	p += k, n -= k;
	if (n == 0)
		return;
	if (!ws->over)
		ws->over = malloc(OVER_CAP);
	if (!ws->over || n > OVER_CAP - ws->over_len) {
		fail(ws, WSLAY_CODE_INTERNAL_SERVER_ERROR, MOAT_ENOMEM);
		return;
	}
	memcpy(ws->over + ws->over_len, p, n);
	ws->over_len += n;
}

/* wslay has frame bytes to send: gather them in the staging buffer. */
static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
		       void *user)
{
	struct ws *ws = user;
	size_t room;

	(void)flags;
	if (ws->stage_off > 0 && ws->stage_off == ws->stage_len)
		ws->stage_off = ws->stage_len = 0;
	room = STAGE - ws->stage_len;
	if (room == 0)
		return would_block(ctx);
	if (len > room)
		len = room;
	memcpy(ws->stage + ws->stage_len, data, len);
	ws->stage_len += len;
	return (ssize_t)len;
}

/* Client frames are masked with keys from the kernel's random source. */
static int on_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
	struct ws *ws = user;

	(void)ctx;
	if (len > sizeof(ws->mask))
		return -1;
	if (ws->mask_used + len > sizeof(ws->mask)) {
		if (getrandom(ws->mask, sizeof(ws->mask), 0) != (ssize_t)sizeof(ws->mask))
			return -1;
		ws->mask_used = 0;
	}
	memcpy(buf, ws->mask + ws->mask_used, len);
	ws->mask_used += len;
	return 0;
}

static const struct wslay_event_callbacks callbacks = {
	.recv_callback = on_recv,
	.send_callback = on_send,
	.genmask_callback = on_genmask,
	.on_frame_recv_start_callback = on_frame_start,
	.on_frame_recv_chunk_callback = on_chunk,
};

/* Creates the wslay context. Returns 0 or MOAT_ENOMEM. */
static int start_frames(struct ws *ws)
{
	int rc = ws->server ? wslay_event_context_server_init(&ws->ctx, &callbacks, ws)
			    : wslay_event_context_client_init(&ws->ctx, &callbacks, ws);

	if (rc != 0)
		return MOAT_ENOMEM;
	wslay_event_config_set_no_buffering(ws->ctx, 1);
	/* Frame sizes are ours to judge (on_frame_start), with our error code. */
	wslay_event_config_set_max_recv_msg_length(ws->ctx, UINT64_MAX);
	return 0;
}

/* ---- handshake ---- */

static void end_with(struct ws *ws, int end)
{
	ws->ended = true;
	ws->end = end;
}

/* The request is refused with status: queue the answer, end the stream. */
static int refuse(struct ws *ws, int status)
{
	int n = moat_http_write_refusal(ws->out, sizeof(ws->out), status);

	ws->status = status;
	ws->state = S_REFUSED;
	ws->out_len = n > 0 ? (size_t)n : 0;
	end_with(ws, status == 403 ? MOAT_EDENIED : MOAT_EPROTOCOL);
	return ws->end;
}

/* The request is valid: queue the 101 and start framing. Returns 1 or an error. */
static int accept_upgrade(struct ws *ws)
{
	int n = moat_http_write_101(ws->out, sizeof(ws->out), ws->http.key, ws->http.protocol);
	int rc = n < 0 ? n : start_frames(ws);

	if (rc < 0) {
		ws->state = S_REFUSED;
		end_with(ws, rc);
		return rc;
	}
	ws->out_len = (size_t)n;
	ws->status = 101;
	memcpy(ws->forwarded, ws->http.forwarded, sizeof(ws->forwarded));
	ws->lo = ws->http.end;
	if (ws->lo == ws->hs_len)
		drop_head(ws);
	ws->state = S_OPEN;
	return 1;
}

/* The server's answer decided (see moat_http_parse). Returns 1 or an error. */
static int answered(struct ws *ws, int verdict)
{
	if (verdict == 101) {
		ws->status = 101;
		ws->lo = ws->http.end;
		if (ws->lo == ws->hs_len)
			drop_head(ws);
		ws->state = S_OPEN;
		return 1;
	}
	ws->status = verdict > 0 ? verdict : 0;
	ws->state = S_REFUSED;
	end_with(ws, MOAT_EPROTOCOL);
	return ws->end;
}

/*
 * Reads the peer's HTTP head. Returns 1 once it is decided and the stream is
 * open, else what read() returns: MOAT_EAGAIN, 0 at end of stream, an error.
 */
static ssize_t handshake_read(struct ws *ws)
{
	for (;;) {
		ssize_t r;
		int v;

		if (ws->hs_len == ws->hs_cap) {
			size_t cap = ws->hs_cap ? ws->hs_cap * 2 : HS_FIRST;
			char *p;

			cap = cap < ws->hs_max ? cap : ws->hs_max;
			p = cap > ws->hs_cap ? realloc(ws->hs, cap) : NULL;
			if (!p)
				return MOAT_ENOMEM; /* cannot be full at hs_max: that is a 431 */
			ws->hs = p;
			ws->hs_cap = cap;
		}
		r = ws->lower->ops->read(ws->lower, ws->hs + ws->hs_len, ws->hs_cap - ws->hs_len);
		if (r <= 0)
			return r;
		ws->hs_len += (size_t)r;
		v = moat_http_parse(&ws->http, ws->hs, ws->hs_len);
		if (v == 0)
			continue;
		if (!ws->server)
			return answered(ws, v);
		return v == 101 ? accept_upgrade(ws) : refuse(ws, v);
	}
}

/* ---- reading frames ---- */

/* wslay stopped reading: why, as read() will say it. */
static int why_ended(struct ws *ws, int rc)
{
	if (ws->lower_err)
		return ws->lower_err;
	if (ws->fail)
		return ws->fail;
	if (wslay_event_get_close_received(ws->ctx) || ws->lower_eof)
		return 0;
	return rc == WSLAY_ERR_NOMEM ? MOAT_ENOMEM : MOAT_EPROTOCOL;
}

static size_t take_overflow(struct ws *ws, uint8_t *buf, size_t n)
{
	size_t k = ws->over_len - ws->over_off;

	k = k < n ? k : n;
	memcpy(buf, ws->over + ws->over_off, k);
	ws->over_off += k;
	if (ws->over_off == ws->over_len)
		ws->over_off = ws->over_len = 0;
	return k;
}

static ssize_t frames_read(struct ws *ws, uint8_t *buf, size_t n)
{
	int rc = 0;

	if (ws->over_len)
		return (ssize_t)take_overflow(ws, buf, n);
	if (ws->ended)
		return ws->end;
	ws->dst = buf;
	ws->dst_room = n;
	ws->dst_len = 0;
	for (;;) {
		ws->lower_again = ws->paused = false;
		wslay_event_set_error(ws->ctx, 0);
		rc = wslay_event_recv(ws->ctx);
		if (rc < 0 || !wslay_event_get_read_enabled(ws->ctx)) {
			end_with(ws, why_ended(ws, rc));
			break;
		}
		/* Otherwise wslay took bytes and wants more: the loop ends as reads do. */
		if (ws->dst_len > 0 || ws->lower_again || ws->paused)
			break;
	}
	ws->dst = NULL;
	if (ws->dst_len > 0)
		return (ssize_t)ws->dst_len;
	return ws->ended ? ws->end : MOAT_EAGAIN;
}

/* ---- the vtable ---- */

static ssize_t ws_read(struct moat_transport *t, void *buf, size_t n)
{
	struct ws *ws = (struct ws *)t;

	if (n == 0)
		return MOAT_EINVAL;
	if (ws->state == S_HANDSHAKE) {
		ssize_t r = handshake_read(ws);

		if (r != 1)
			return r;
	}
	if (ws->state == S_REFUSED)
		return ws->end;
	return frames_read(ws, buf, n);
}

/* Copies iov into one buffer of len bytes (the gather buffer, grown). Returns it or NULL. */
static const uint8_t *gather(struct ws *ws, const struct iovec *iov, int n, size_t len)
{
	size_t done = 0;
	int i;

	if (len > ws->gather_cap) {
		uint8_t *p = realloc(ws->gather, len);

		if (!p)
			return NULL;
		ws->gather = p;
		ws->gather_cap = len;
	}
	for (i = 0; i < n && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;

		memcpy(ws->gather + done, iov[i].iov_base, k);
		done += k;
	}
	return ws->gather;
}

static ssize_t ws_writev(struct moat_transport *t, const struct iovec *iov, int n)
{
	struct ws *ws = (struct ws *)t;
	struct wslay_event_msg msg = {.opcode = WSLAY_BINARY_FRAME};
	size_t queued, take = 0;
	int i, rc;

	if (ws->state == S_REFUSED)
		return MOAT_ECLOSED;
	if (!ws->ctx)
		return MOAT_EAGAIN; /* server: nothing is sent before the upgrade */
	queued = wslay_event_get_queued_msg_length(ws->ctx);
	if (queued >= OUT_BOUND || wslay_event_get_queued_msg_count(ws->ctx) >= OUT_MSGS)
		return MOAT_EAGAIN;
	for (i = 0; i < n && take < OUT_BOUND - queued; i++)
		take += iov[i].iov_len < OUT_BOUND - queued - take ? iov[i].iov_len
								   : OUT_BOUND - queued - take;
	if (take == 0)
		return 0;
	msg.msg_length = take;
	msg.msg = take <= iov[0].iov_len ? iov[0].iov_base : gather(ws, iov, n, take);
	if (!msg.msg)
		return MOAT_ENOMEM;
	rc = wslay_event_queue_msg(ws->ctx, &msg); /* copies it */
	if (ws->gather_cap > GATHER_KEEP) {
		free(ws->gather);
		ws->gather = NULL;
		ws->gather_cap = 0;
	}
	if (rc == WSLAY_ERR_NO_MORE_MSG)
		return MOAT_ECLOSED;
	return rc == 0 ? (ssize_t)take : MOAT_ENOMEM;
}

/* Writes what p[*off..len) holds to the lower transport. Returns 0 when all is written. */
static int push(struct ws *ws, const void *p, size_t *off, size_t len)
{
	while (*off < len) {
		struct iovec iov = {(char *)p + *off, len - *off};
		ssize_t r = ws->lower->ops->writev(ws->lower, &iov, 1);

		if (r < 0)
			return (int)r;
		if (r == 0)
			return MOAT_EAGAIN;
		*off += (size_t)r;
	}
	return 0;
}

/* Lets wslay frame what is queued and writes it. Returns 0 when all is out. */
static int push_frames(struct ws *ws)
{
	for (;;) {
		int rc = push(ws, ws->stage, &ws->stage_off, ws->stage_len);

		if (rc < 0)
			return rc;
		ws->stage_off = ws->stage_len = 0;
		if (!wslay_event_want_write(ws->ctx))
			return 0;
		if (!ws->stage && !(ws->stage = malloc(STAGE)))
			return MOAT_ENOMEM;
		wslay_event_set_error(ws->ctx, 0);
		rc = wslay_event_send(ws->ctx);
		if (rc < 0)
			return rc == WSLAY_ERR_NOMEM ? MOAT_ENOMEM : MOAT_EIO;
		if (ws->stage_len == 0)
			return 0;
	}
}

static int ws_flush(struct moat_transport *t)
{
	struct ws *ws = (struct ws *)t;
	int rc = push(ws, ws->out, &ws->out_off, ws->out_len), lrc;

	if (rc == 0 && ws->state == S_OPEN)
		rc = push_frames(ws);
	if (rc < 0 && rc != MOAT_EAGAIN)
		return rc;
	lrc = ws->lower->ops->flush(ws->lower);
	return lrc < 0 ? lrc : rc;
}

static bool has_output(const struct ws *ws)
{
	return ws->out_off < ws->out_len ||
	       (ws->state == S_OPEN &&
		(ws->stage_off < ws->stage_len || wslay_event_want_write(ws->ctx)));
}

static unsigned ws_want(const struct moat_transport *t, bool have_output)
{
	const struct ws *ws = (const struct ws *)t;
	unsigned ev;

	if (ws->state != S_OPEN)
		return ws->lower->ops->want(ws->lower, has_output(ws));
	ev = ws->lower->ops->want(ws->lower, have_output || has_output(ws));
	if (wslay_event_get_queued_msg_count(ws->ctx) >= CTRL_MSGS)
		ev &= ~(unsigned)MOAT_EV_READ;
	return ev;
}

static bool ws_has_buffered(const struct moat_transport *t)
{
	const struct ws *ws = (const struct ws *)t;

	if (ws->state == S_REFUSED)
		return false;
	return ws->over_len > 0 || (ws->state == S_OPEN && (ws->lo < ws->hs_len || ws->ended)) ||
	       ws->lower->ops->has_buffered(ws->lower);
}

static bool ws_ready(const struct moat_transport *t)
{
	const struct ws *ws = (const struct ws *)t;

	return ws->state == S_OPEN && ws->out_off == ws->out_len;
}

static const struct moat_tls_info *ws_tls(const struct moat_transport *t)
{
	const struct ws *ws = (const struct ws *)t;

	return ws->lower->ops->tls(ws->lower);
}

static int ws_export(struct moat_transport *t, uint8_t *out, size_t n, const char *label,
		     const uint8_t *ctx, size_t ctx_len)
{
	struct ws *ws = (struct ws *)t;

	return ws->lower->ops->export_keys(ws->lower, out, n, label, ctx, ctx_len);
}

static void ws_free(struct moat_transport *t)
{
	struct ws *ws = (struct ws *)t;

	wslay_event_context_free(ws->ctx);
	moat_transport_free(ws->lower);
	free(ws->hs);
	free(ws->over);
	free(ws->stage);
	free(ws->gather);
	free(ws->polbuf);
	free(ws);
}

static const struct moat_transport_ops ws_ops = {
	.name = "ws",
	.read = ws_read,
	.writev = ws_writev,
	.flush = ws_flush,
	.want = ws_want,
	.has_buffered = ws_has_buffered,
	.ready = ws_ready,
	.tls = ws_tls,
	.export_keys = ws_export,
	.free = ws_free,
};

/* ---- construction ---- */

static struct ws *ws_alloc(struct moat_transport *lower, bool server)
{
	struct ws *ws = calloc(1, sizeof(*ws));

	if (!ws)
		return NULL;
	ws->base.ops = &ws_ops;
	ws->base.fd = lower->fd;
	ws->lower = lower;
	ws->server = server;
	ws->mask_used = sizeof(ws->mask);
	ws->max_frame = MOAT_WS_MAX_FRAME_DEFAULT;
	ws->hs_max = MOAT_HTTP_DEFAULT_MAX;
	return ws;
}

/* Copies s to *at, advancing it; NULL stays NULL. */
static const char *copy_str(const char *s, char **at)
{
	char *d = *at;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	memcpy(d, s, n);
	*at += n;
	return d;
}

/* Copies the policy's strings into one allocation. Returns 0 or MOAT_ENOMEM. */
static int copy_policy(struct ws *ws, const struct moat_ws_opts *o)
{
	const char *s[3] = {o->allowed_origins, o->trusted_proxies, o->peer_addr};
	size_t len = 1;
	char *at;
	int i;

	for (i = 0; i < 3; i++)
		len += s[i] ? strlen(s[i]) + 1 : 0;
	at = ws->polbuf = malloc(len);
	if (!at)
		return MOAT_ENOMEM;
	ws->pol.allowed_origins = copy_str(s[0], &at);
	ws->pol.trusted_proxies = copy_str(s[1], &at);
	ws->pol.peer_addr = copy_str(s[2], &at);
	ws->pol.max_bytes = o->max_header_bytes ? o->max_header_bytes : MOAT_HTTP_DEFAULT_MAX;
	return 0;
}

struct moat_transport *moat_ws_server_new(struct moat_transport *lower,
					  const struct moat_ws_opts *opts)
{
	static const struct moat_ws_opts defaults;
	const struct moat_ws_opts *o = opts ? opts : &defaults;
	struct ws *ws = ws_alloc(lower, true);

	if (!ws)
		return NULL;
	if (copy_policy(ws, o) < 0) {
		free(ws);
		return NULL;
	}
	ws->hs_max = ws->pol.max_bytes;
	if (o->max_frame_bytes)
		ws->max_frame = o->max_frame_bytes;
	moat_http_request_init(&ws->http, &ws->pol);
	return &ws->base;
}

struct moat_transport *moat_ws_client_new(struct moat_transport *lower, const char *host,
					  const char *path)
{
	struct ws *ws = ws_alloc(lower, false);
	char key[MOAT_HTTP_KEY_LEN + 1];
	int n;

	if (!ws)
		return NULL;
	if (moat_http_new_key(key) < 0)
		goto fail;
	n = moat_http_write_request(ws->out, sizeof(ws->out), host, path, key);
	if (n < 0 || start_frames(ws) < 0)
		goto fail;
	ws->out_len = (size_t)n;
	moat_http_response_init(&ws->http, key);
	return &ws->base;
fail:
	wslay_event_context_free(ws->ctx);
	free(ws);
	return NULL;
}

const char *moat_ws_forwarded_for(const struct moat_transport *t)
{
	const struct ws *ws = (const struct ws *)t;

	if (!t || t->ops != &ws_ops || !ws->forwarded[0])
		return NULL;
	return ws->forwarded;
}

int moat_ws_http_status(const struct moat_transport *t)
{
	if (!t || t->ops != &ws_ops)
		return 0;
	return ((const struct ws *)t)->status;
}
