/*
 * test_ws.c - unit tests for the WebSocket transport (src/net/ws.c) and its
 * HTTP upgrade parser (src/net/http.c), over socketpairs and the real TCP
 * transport (moat_tcp_new).
 *
 * Covers: the RFC 6455 accept key; a full exchange between
 * moat_ws_client_new and moat_ws_server_new (bytes written before the 101,
 * both directions, ready(), the negotiated status); the upgrade request split
 * in two at every position and fed one byte at a time, with a frame right
 * behind it; requests refused with the right status and answer (400 for
 * syntax, smuggling and missing fields, 403 origin, 404 path, 426 not an
 * upgrade / version, 431 too long) and the ones accepted (mqttv3.1, query,
 * token lists, case); X-Forwarded-For only from trusted proxies, walked from
 * the right; fragmented messages with a ping in the middle; frames fed one
 * byte at a time; ping/pong; close frames answered and reported as end of
 * stream; unmasked client frames (1002), text frames (1003), oversized frames
 * (1009, also one announcing 2^62 bytes) and a lower stream ending mid-frame;
 * a 1 MiB payload each way; writev's bound; reading pausing while pongs pile
 * up; the client refusing a 404 and a wrong Sec-WebSocket-Accept.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "event/loop.h"
#include "net/http.h"
#include "net/transport.h"
#include "net/ws.h"

#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define REQ_HEAD                                                                                   \
	"GET /mqtt HTTP/1.1\r\n"                                                                   \
	"Host: broker.example\r\n"                                                                 \
	"Upgrade: websocket\r\n"                                                                   \
	"Connection: Upgrade\r\n"                                                                  \
	"Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"                                                    \
	"Sec-WebSocket-Version: 13\r\n"
#define GOOD_REQ REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\n\r\n"

/* ---- plumbing ---- */

struct pair {
	int raw; /* the test's end of the socketpair */
	struct moat_transport *t;
};

static void socketpair_nb(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
}

static struct pair server_with(const struct moat_ws_opts *o)
{
	struct pair p;
	int fds[2];

	socketpair_nb(fds);
	p.raw = fds[1];
	p.t = moat_ws_server_new(moat_tcp_new(fds[0]), o);
	assert_non_null(p.t);
	return p;
}

static void pair_free(struct pair *p)
{
	moat_transport_free(p->t);
	close(p->raw);
}

static void raw_write(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && errno == EAGAIN) {
			struct pollfd pfd = {fd, POLLOUT, 0};
			assert_true(poll(&pfd, 1, 2000) == 1);
			continue;
		}
		assert_true(r > 0);
		p += r, n -= (size_t)r;
	}
}

/* Reads what the raw end has (waiting up to 200 ms for the first byte). */
static size_t raw_read(int fd, void *buf, size_t cap)
{
	struct pollfd pfd = {fd, POLLIN, 0};
	size_t got = 0;

	if (poll(&pfd, 1, 200) != 1)
		return 0;
	while (got < cap) {
		ssize_t r = read(fd, (char *)buf + got, cap - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

/* Reads from t until n bytes came, the stream ended or nothing moves. Returns bytes or the end. */
static ssize_t t_read_n(struct moat_transport *t, void *buf, size_t n)
{
	size_t got = 0;
	int idle = 0;

	while (got < n && idle < 50) {
		ssize_t r = moat_transport_read(t, (char *)buf + got, n - got);

		if (r > 0) {
			got += (size_t)r;
			idle = 0;
			continue;
		}
		if (r != MOAT_EAGAIN)
			return got ? (ssize_t)got : r;
		moat_transport_flush(t);
		struct pollfd pfd = {t->fd, POLLIN, 0};
		poll(&pfd, 1, 10);
		idle++;
	}
	return (ssize_t)got;
}

/* Reads until the stream ends; returns the end (0 or a MOAT_E*) . */
static ssize_t t_read_end(struct moat_transport *t)
{
	char buf[256];
	int i;

	for (i = 0; i < 200; i++) {
		ssize_t r = moat_transport_read(t, buf, sizeof(buf));

		if (r != MOAT_EAGAIN && r <= 0)
			return r;
		if (r == MOAT_EAGAIN) {
			struct pollfd pfd = {t->fd, POLLIN, 0};
			poll(&pfd, 1, 10);
		}
	}
	return 1; /* did not end */
}

static ssize_t t_write(struct moat_transport *t, const void *p, size_t n)
{
	struct iovec iov = {(void *)p, n};

	return moat_transport_writev(t, &iov, 1);
}

/* Builds one frame. key NULL: unmasked. Returns its length. */
static size_t frame(uint8_t *out, bool fin, unsigned op, const void *payload, uint64_t n,
		    const uint8_t *key)
{
	const uint8_t *p = payload;
	size_t k = 0, i;

	out[k++] = (uint8_t)((fin ? 0x80 : 0) | op);
	uint8_t m = key ? 0x80 : 0;
	if (n < 126) {
		out[k++] = (uint8_t)(m | n);
	} else if (n < 65536) {
		out[k++] = m | 126;
		out[k++] = (uint8_t)(n >> 8);
		out[k++] = (uint8_t)n;
	} else {
		out[k++] = m | 127;
		for (i = 0; i < 8; i++)
			out[k++] = (uint8_t)(n >> (56 - 8 * i));
	}
	if (key) {
		memcpy(out + k, key, 4);
		k += 4;
	}
	for (i = 0; p && i < n; i++)
		out[k + i] = key ? p[i] ^ key[i % 4] : p[i];
	return k + (p ? n : 0);
}

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

static size_t cframe(uint8_t *out, bool fin, unsigned op, const void *p, size_t n)
{
	return frame(out, fin, op, p, n, KEY);
}

/* Parses one unmasked server frame at buf. Returns its length, 0 if incomplete. */
static size_t sframe(const uint8_t *buf, size_t len, unsigned *op, const uint8_t **payload,
		     size_t *n)
{
	size_t k = 2;
	uint64_t pl;

	if (len < 2)
		return 0;
	assert_int_equal(buf[1] & 0x80, 0); /* servers do not mask */
	*op = buf[0] & 0x0F;
	pl = buf[1] & 0x7F;
	if (pl == 126) {
		pl = (uint64_t)buf[2] << 8 | buf[3];
		k = 4;
	} else if (pl == 127) {
		pl = 0;
		for (int i = 0; i < 8; i++)
			pl = pl << 8 | buf[2 + i];
		k = 10;
	}
	if (len < k + pl)
		return 0;
	*payload = buf + k;
	*n = (size_t)pl;
	return k + (size_t)pl;
}

/* Upgrades p with GOOD_REQ and reads the 101 off the raw end. */
static void upgrade(struct pair *p)
{
	char buf[1024];
	size_t n;

	raw_write(p->raw, GOOD_REQ, strlen(GOOD_REQ));
	assert_int_equal(moat_transport_read(p->t, buf, sizeof(buf)), MOAT_EAGAIN);
	assert_int_equal(moat_ws_http_status(p->t), 101);
	assert_false(p->t->ops->ready(p->t));
	assert_true(moat_transport_want(p->t, false) & MOAT_EV_WRITE);
	assert_int_equal(moat_transport_flush(p->t), 0);
	assert_true(p->t->ops->ready(p->t));
	n = raw_read(p->raw, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "HTTP/1.1 101 Switching Protocols\r\n"));
	assert_non_null(strstr(buf, "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n"));
	assert_non_null(strstr(buf, "Sec-WebSocket-Protocol: mqtt\r\n"));
	assert_string_equal(buf + n - 4, "\r\n\r\n");
}

/* Flushes p->t and reads one server frame off the raw end. */
static unsigned next_frame(struct pair *p, uint8_t *payload, size_t *n)
{
	static uint8_t buf[1 << 21];
	static size_t have;
	const uint8_t *pl;
	unsigned op;
	size_t used;

	for (int i = 0; i < 100; i++) {
		moat_transport_flush(p->t);
		used = sframe(buf, have, &op, &pl, n);
		if (used) {
			memcpy(payload, pl, *n);
			memmove(buf, buf + used, have - used);
			have -= used;
			return op;
		}
		have += raw_read(p->raw, buf + have, sizeof(buf) - have);
	}
	fail_msg("no frame from the server");
	return 0;
}

static uint16_t close_code(const uint8_t *payload, size_t n)
{
	return n >= 2 ? (uint16_t)(payload[0] << 8 | payload[1]) : 0;
}

/* ---- the handshake ---- */

static void test_accept_key(void **state)
{
	char out[MOAT_HTTP_ACCEPT_LEN + 1];

	(void)state;
	assert_int_equal(moat_http_accept_key(SAMPLE_KEY, out), 0);
	assert_string_equal(out, SAMPLE_ACCEPT);
	assert_int_equal(moat_http_accept_key("short", out), MOAT_EINVAL);
}

static void test_upgrade_and_echo(void **state)
{
	struct pair p = server_with(NULL);
	uint8_t buf[256], pl[256];
	size_t n;

	(void)state;
	upgrade(&p);
	assert_null(moat_ws_forwarded_for(p.t));
	assert_null(p.t->ops->tls(p.t));
	assert_int_equal(p.t->ops->export_keys(p.t, buf, 16, "x", NULL, 0), MOAT_EINVAL);
	n = cframe(buf, true, 2, "hello", 5);
	raw_write(p.raw, buf, n);
	assert_int_equal(t_read_n(p.t, buf, 5), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_false(p.t->ops->has_buffered(p.t));
	assert_int_equal(t_write(p.t, "world!", 6), 6);
	assert_true(moat_transport_want(p.t, false) & MOAT_EV_WRITE);
	assert_int_equal(next_frame(&p, pl, &n), 2);
	assert_int_equal(n, 6);
	assert_memory_equal(pl, "world!", 6);
	assert_false(moat_transport_want(p.t, false) & MOAT_EV_WRITE);
	pair_free(&p);
}

/* The request reaches the server in two pieces split at every position, then bytewise. */
static void test_every_split(void **state)
{
	uint8_t stream[1024], buf[64];
	size_t len = strlen(GOOD_REQ), total, cut;

	(void)state;
	memcpy(stream, GOOD_REQ, len);
	total = len + cframe(stream + len, true, 2, "after", 5);
	for (cut = 0; cut <= total; cut++) {
		struct pair p = server_with(NULL);

		ssize_t r;
		size_t have = 0;

		if (cut)
			raw_write(p.raw, stream, cut);
		r = moat_transport_read(p.t, buf, sizeof(buf));
		if (r > 0)
			have = (size_t)r;
		else
			assert_int_equal(r, MOAT_EAGAIN);
		if (cut < total)
			raw_write(p.raw, stream + cut, total - cut);
		assert_int_equal(t_read_n(p.t, buf + have, 5 - have), (ssize_t)(5 - have));
		assert_memory_equal(buf, "after", 5);
		assert_int_equal(moat_ws_http_status(p.t), 101);
		pair_free(&p);
	}
	{
		struct pair p = server_with(NULL);
		size_t i, have = 0;

		for (i = 0; i < total; i++) {
			ssize_t r;

			raw_write(p.raw, stream + i, 1);
			r = moat_transport_read(p.t, buf + have, sizeof(buf) - have);
			if (r > 0)
				have += (size_t)r; /* payload comes as it arrives, byte by byte */
			else
				assert_int_equal(r, MOAT_EAGAIN);
		}
		assert_int_equal(have, 5);
		assert_memory_equal(buf, "after", 5);
		pair_free(&p);
	}
}

struct bad {
	const char *req;
	int status;
};

static const struct bad refused[] = {
	{"GET /other HTTP/1.1\r\nHost: h\r\n\r\n", 404},
	{"GET /mqttx HTTP/1.1\r\nHost: h\r\n\r\n", 404},
	{"POST /mqtt HTTP/1.1\r\nHost: h\r\n\r\n", 400},
	{"get /mqtt HTTP/1.1\r\nHost: h\r\n\r\n", 400},
	{"GET /mqtt HTTP/1.0\r\nHost: h\r\n\r\n", 400},
	{"GET  /mqtt HTTP/1.1\r\nHost: h\r\n\r\n", 400},
	{"GET mqtt HTTP/1.1\r\nHost: h\r\n\r\n", 400},
	{"GET /mqtt HTTP/1.1\r\nHost: h\r\n\r\n", 426},
	{"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", 426},
	{"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n", 426},
	{"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	 "Sec-WebSocket-Key: " SAMPLE_KEY "\r\nSec-WebSocket-Version: 8\r\n"
	 "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
	 426},
	{"GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	 "Sec-WebSocket-Key: " SAMPLE_KEY "\r\nSec-WebSocket-Version: 13\r\n"
	 "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
	 400}, /* no Host */
	{"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
	 400}, /* no key */
	{"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\nSec-WebSocket-Version: 13\r\n"
	 "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
	 400}, /* key not 16 bytes */
	{"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\nSec-WebSocket-Version: 13\r\n"
	 "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
	 400}, /* stray bits in the last character */
	{REQ_HEAD "\r\n", 400},                                   /* no subprotocol */
	{REQ_HEAD "Sec-WebSocket-Protocol: MQTT, v12\r\n\r\n", 400}, /* not offered */
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nHost: again\r\n\r\n", 400},
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Key: " SAMPLE_KEY "\r\n\r\n", 400},
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nUpgrade: websocket\r\n\r\n", 400},
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nContent-Length: 5\r\n\r\nhello", 400},
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nX-A: b\n\r\n", 400},       /* bare LF */
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nX-A: b\r\n\n", 400},       /* bare LF */
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nX-A: b\rc\r\n\r\n", 400},  /* bare CR */
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nX-A: b\r\n c\r\n\r\n", 400}, /* obs-fold */
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nX-A : b\r\n\r\n", 400},    /* space before colon */
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nX-A\r\n\r\n", 400},        /* no colon */
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\n: b\r\n\r\n", 400},        /* no name */
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nX-(A): b\r\n\r\n", 400},   /* not a token */
	{REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\nX-A: b\x7f\r\n\r\n", 400}, /* DEL */
	{"GET /mqtt\tHTTP/1.1\r\n\r\n", 400},
	{"\r\nGET /mqtt HTTP/1.1\r\n\r\n", 400},
};

/* Sends req to a fresh server; checks the read result, the status and the answer. */
static void expect_refusal(const char *req, size_t len, int status, const struct moat_ws_opts *o)
{
	struct pair p = server_with(o);
	char buf[1024], head[64];
	ssize_t r;
	size_t n;

	raw_write(p.raw, req, len);
	r = t_read_end(p.t);
	if (moat_ws_http_status(p.t) != status)
		fail_msg("status %d for %d: %.*s", moat_ws_http_status(p.t), status, (int)len, req);
	assert_int_equal(r, status == 403 ? MOAT_EDENIED : MOAT_EPROTOCOL);
	assert_false(p.t->ops->ready(p.t));
	assert_int_equal(t_write(p.t, "x", 1), MOAT_ECLOSED);
	assert_int_equal(moat_transport_flush(p.t), 0);
	n = raw_read(p.raw, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	snprintf(head, sizeof(head), "HTTP/1.1 %d ", status);
	assert_memory_equal(buf, head, strlen(head));
	assert_non_null(strstr(buf, "Connection: close\r\n"));
	if (status == 426)
		assert_non_null(strstr(buf, "Sec-WebSocket-Version: 13\r\n"));
	pair_free(&p);
}

static void test_bad_requests(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		expect_refusal(refused[i].req, strlen(refused[i].req), refused[i].status, NULL);
	/* A NUL in a header. */
	{
		char req[512];
		size_t n = strlen(GOOD_REQ) - 2;

		memcpy(req, GOOD_REQ, n);
		memcpy(req + n, "X-A: a\0b\r\n\r\n", 12);
		expect_refusal(req, n + 12, 400, NULL);
	}
}

static void test_header_bound(void **state)
{
	struct moat_ws_opts o = {.max_header_bytes = 256};
	char req[2048];
	size_t n;

	(void)state;
	n = (size_t)snprintf(req, sizeof(req), "%sX-Padding: %0300d\r\n\r\n", REQ_HEAD, 0);
	expect_refusal(req, n, 431, &o);
	/* Never ending header line, default bound. */
	memset(req, 'a', sizeof(req));
	memcpy(req, "GET /mqtt HTTP/1.1\r\nX-A: ", 25);
	{
		struct pair p = server_with(NULL);
		int i;
		ssize_t r = MOAT_EAGAIN;

		for (i = 0; i < 5 && r == MOAT_EAGAIN; i++) {
			raw_write(p.raw, req, sizeof(req));
			r = moat_transport_read(p.t, req + 1000, 16);
		}
		assert_int_equal(r, MOAT_EPROTOCOL);
		assert_int_equal(moat_ws_http_status(p.t), 431);
		pair_free(&p);
	}
	/* Exactly at the bound is fine. */
	o.max_header_bytes = strlen(GOOD_REQ);
	{
		struct pair p = server_with(&o);
		uint8_t buf[16];

		raw_write(p.raw, GOOD_REQ, strlen(GOOD_REQ));
		assert_int_equal(moat_transport_read(p.t, buf, sizeof(buf)), MOAT_EAGAIN);
		assert_int_equal(moat_ws_http_status(p.t), 101);
		pair_free(&p);
	}
}

static const char *const accepted[] = {
	REQ_HEAD "Sec-WebSocket-Protocol: mqttv3.1\r\n\r\n",
	"GET /mqtt?client=1 HTTP/1.1\r\nHost: h\r\nupgrade: WebSocket\r\n"
	"connection: keep-alive, Upgrade\r\nSEC-WEBSOCKET-KEY:" SAMPLE_KEY "\r\n"
	"Sec-WebSocket-Version:\t13 \r\nSec-WebSocket-Protocol: v12.stomp,\r\n"
	"Sec-WebSocket-Protocol: , mqtt ,mqttv3.1\r\nX-Unknown:\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
	"Connection: upgrade\r\nSec-WebSocket-Key: " SAMPLE_KEY "\r\n"
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\nContent-Length: 0\r\n"
	"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
};

static void test_good_requests(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		struct pair p = server_with(NULL);
		char buf[512];
		size_t n;

		raw_write(p.raw, accepted[i], strlen(accepted[i]));
		assert_int_equal(moat_transport_read(p.t, buf, sizeof(buf)), MOAT_EAGAIN);
		assert_int_equal(moat_ws_http_status(p.t), 101);
		assert_int_equal(moat_transport_flush(p.t), 0);
		n = raw_read(p.raw, buf, sizeof(buf) - 1);
		buf[n] = '\0';
		assert_non_null(strstr(buf, i == 0 ? "Sec-WebSocket-Protocol: mqttv3.1\r\n"
						   : "Sec-WebSocket-Protocol: mqtt\r\n"));
		assert_null(strstr(buf, "Extensions"));
		pair_free(&p);
	}
}

static void test_origin(void **state)
{
	struct moat_ws_opts o = {.allowed_origins = "https://a.example, https://b.example:8443"};
	char req[512];
	size_t n;

	(void)state;
	n = (size_t)snprintf(req, sizeof(req), "%sOrigin: https://evil.example\r\n"
					       "Sec-WebSocket-Protocol: mqtt\r\n\r\n", REQ_HEAD);
	expect_refusal(req, n, 403, &o);
	n = (size_t)snprintf(req, sizeof(req), "%sOrigin: https://a.example.evil\r\n"
					       "Sec-WebSocket-Protocol: mqtt\r\n\r\n", REQ_HEAD);
	expect_refusal(req, n, 403, &o);
	n = (size_t)snprintf(req, sizeof(req), "%sOrigin: https://a.example\r\nOrigin: https://"
					       "a.example\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
			     REQ_HEAD);
	expect_refusal(req, n, 400, &o);
	{
		static const char *const ok[] = {"Origin: https://b.example:8443\r\n", ""};

		for (int i = 0; i < 2; i++) {
			struct pair p = server_with(&o);
			uint8_t buf[8];

			n = (size_t)snprintf(req, sizeof(req), "%s%sSec-WebSocket-Protocol: mqtt\r\n\r\n",
					     REQ_HEAD, ok[i]);
			raw_write(p.raw, req, n);
			assert_int_equal(moat_transport_read(p.t, buf, sizeof(buf)), MOAT_EAGAIN);
			assert_int_equal(moat_ws_http_status(p.t), 101);
			pair_free(&p);
		}
	}
}

/* X-Forwarded-For from peer under trusted: the address believed, or NULL; status. */
static void xff_case(const char *peer, const char *trusted, const char *xff, const char *want,
		     int status)
{
	struct moat_ws_opts o = {.trusted_proxies = trusted, .peer_addr = peer};
	struct pair p = server_with(&o);
	char req[768];
	uint8_t buf[8];
	size_t n;

	n = (size_t)snprintf(req, sizeof(req), "%s%sSec-WebSocket-Protocol: mqtt\r\n\r\n", REQ_HEAD,
			     xff);
	raw_write(p.raw, req, n);
	moat_transport_read(p.t, buf, sizeof(buf));
	assert_int_equal(moat_ws_http_status(p.t), status);
	if (want)
		assert_string_equal(moat_ws_forwarded_for(p.t), want);
	else
		assert_null(moat_ws_forwarded_for(p.t));
	pair_free(&p);
}

static void test_forwarded_for(void **state)
{
	(void)state;
	xff_case("10.0.0.1", "10.0.0.1", "X-Forwarded-For: 203.0.113.7\r\n", "203.0.113.7", 101);
	xff_case("10.0.0.9", "10.0.0.1", "X-Forwarded-For: 203.0.113.7\r\n", NULL, 101);
	xff_case("10.0.0.1", NULL, "X-Forwarded-For: 203.0.113.7\r\n", NULL, 101);
	xff_case("10.0.0.1", "10.0.0.1", "", NULL, 101);
	/* The client's own claim (left) is not believed; proxies are skipped from the right. */
	xff_case("10.0.0.2", "10.0.0.1, 10.0.0.2",
		 "X-Forwarded-For: 1.1.1.1, 203.0.113.7\r\nX-Forwarded-For: 10.0.0.1\r\n",
		 "203.0.113.7", 101);
	xff_case("10.0.0.2", "10.0.0.1,10.0.0.2", "X-Forwarded-For: 10.0.0.1, 10.0.0.1\r\n",
		 "10.0.0.1", 101);
	xff_case("10.0.0.2", "10.0.0.2", "X-Forwarded-For: garbage, 203.0.113.7\r\n", "203.0.113.7",
		 101);
	xff_case("10.0.0.2", "10.0.0.2", "X-Forwarded-For: 203.0.113.7, garbage\r\n", NULL, 400);
	xff_case("::ffff:10.0.0.2", "10.0.0.2", "X-Forwarded-For: [2001:DB8::1]\r\n", "2001:db8::1",
		 101);
	xff_case("::1", "::1", "X-Forwarded-For: ::ffff:192.0.2.1\r\n", "192.0.2.1", 101);
	/* The peer as the worker writes it, with its port; entries with ports too. */
	xff_case("127.0.0.1:50123", "127.0.0.1", "X-Forwarded-For: 192.0.2.9:4711\r\n", "192.0.2.9",
		 101);
	xff_case("[::1]:50123", "::1", "X-Forwarded-For: [2001:db8::7]:80\r\n", "2001:db8::7", 101);
	xff_case("127.0.0.2:50123", "127.0.0.1", "X-Forwarded-For: 192.0.2.9\r\n", NULL, 101);
	assert_true(moat_http_addr_listed("a, 127.0.0.1 ,::1", "::1", 3));
	assert_false(moat_http_addr_listed("a, 127.0.0.1 ,::1", "::2", 3));
}

/* ---- frames ---- */

static void test_fragmented(void **state)
{
	struct pair p = server_with(NULL);
	uint8_t buf[512], pl[256];
	size_t n = 0, k;

	(void)state;
	upgrade(&p);
	n += cframe(buf + n, false, 2, "frag", 4);
	n += cframe(buf + n, true, 9, "ping!", 5); /* a control frame between fragments */
	n += cframe(buf + n, false, 0, "men", 3);
	n += cframe(buf + n, false, 0, "", 0);
	n += cframe(buf + n, true, 0, "ted", 3);
	n += cframe(buf + n, true, 2, "+next", 5);
	raw_write(p.raw, buf, n);
	assert_int_equal(t_read_n(p.t, buf, 15), 15);
	assert_memory_equal(buf, "fragmented+next", 15);
	assert_int_equal(next_frame(&p, pl, &k), 10);
	assert_int_equal(k, 5);
	assert_memory_equal(pl, "ping!", 5);
	pair_free(&p);
}

/* Several frames, one byte at a time; MQTT packets across message boundaries. */
static void test_bytewise_frames(void **state)
{
	struct pair p = server_with(NULL);
	uint8_t stream[70000], got[70000], big[66000];
	size_t n = 0, i, have = 0;

	(void)state;
	upgrade(&p);
	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	n += cframe(stream + n, true, 2, "\x10\x02", 2); /* a packet split over two messages */
	n += cframe(stream + n, true, 2, "\x00\x04", 2);
	n += cframe(stream + n, true, 2, big, 200);   /* 16-bit length */
	n += cframe(stream + n, true, 10, "pong", 4); /* unsolicited pong: ignored */
	n += cframe(stream + n, true, 2, big, sizeof(big)); /* 64-bit length */
	for (i = 0; i < n; i++) {
		ssize_t r;

		raw_write(p.raw, stream + i, 1);
		r = moat_transport_read(p.t, got + have, sizeof(got) - have);
		if (r > 0)
			have += (size_t)r;
		else
			assert_int_equal(r, MOAT_EAGAIN);
	}
	assert_int_equal(have, 4 + 200 + sizeof(big));
	assert_memory_equal(got, "\x10\x02\x00\x04", 4);
	assert_memory_equal(got + 4, big, 200);
	assert_memory_equal(got + 204, big, sizeof(big));
	pair_free(&p);
}

/* A tiny read buffer: payload is never lost or written past it. */
static void test_small_reads(void **state)
{
	struct pair p = server_with(NULL);
	uint8_t stream[5000], got[5000], big[4000];
	size_t n = 0, i, have = 0;

	(void)state;
	upgrade(&p);
	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 13 + 1);
	n += cframe(stream + n, true, 2, big, 1000);
	n += cframe(stream + n, true, 2, big + 1000, 3000);
	raw_write(p.raw, stream, n);
	for (i = 0; i < 100000 && have < sizeof(big); i++) {
		ssize_t r = moat_transport_read(p.t, got + have, 3);

		if (r > 0)
			have += (size_t)r;
		else
			assert_int_equal(r, MOAT_EAGAIN);
	}
	assert_int_equal(have, sizeof(big));
	assert_memory_equal(got, big, sizeof(big));
	pair_free(&p);
}

static void test_ping_pong_close(void **state)
{
	struct pair p = server_with(NULL);
	uint8_t buf[256], pl[256];
	size_t n;

	(void)state;
	upgrade(&p);
	n = cframe(buf, true, 9, "are you there", 13);
	raw_write(p.raw, buf, n);
	assert_int_equal(moat_transport_read(p.t, buf, sizeof(buf)), MOAT_EAGAIN);
	assert_true(moat_transport_want(p.t, false) & MOAT_EV_WRITE);
	assert_int_equal(next_frame(&p, pl, &n), 10);
	assert_int_equal(n, 13);
	assert_memory_equal(pl, "are you there", 13);
	/* Close 1000 with a reason: end of stream, answered with 1000. */
	n = cframe(buf, true, 8, "\x03\xe8" "bye", 5);
	raw_write(p.raw, buf, n);
	assert_int_equal(t_read_end(p.t), 0);
	assert_int_equal(moat_transport_read(p.t, buf, sizeof(buf)), 0);
	assert_int_equal(next_frame(&p, pl, &n), 8);
	assert_int_equal(close_code(pl, n), 1000);
	assert_int_equal(t_write(p.t, "late", 4), MOAT_ECLOSED);
	pair_free(&p);
}

/* Data then close in one segment: the data first, then the end. */
static void test_data_then_close(void **state)
{
	struct pair p = server_with(NULL);
	uint8_t buf[256];
	size_t n;

	(void)state;
	upgrade(&p);
	n = cframe(buf, true, 2, "last", 4);
	n += cframe(buf + n, true, 8, NULL, 0);
	raw_write(p.raw, buf, n);
	assert_int_equal(moat_transport_read(p.t, buf, sizeof(buf)), 4);
	assert_true(p.t->ops->has_buffered(p.t));
	assert_int_equal(moat_transport_read(p.t, buf, sizeof(buf)), 0);
	pair_free(&p);
}

/* After an upgrade, the peer's frames in raw; read ends with want; the close code sent. */
static void expect_close(const uint8_t *frames, size_t n, ssize_t want, uint16_t code,
			 const struct moat_ws_opts *o)
{
	struct pair p = server_with(o);
	uint8_t pl[256];
	size_t k;
	unsigned op;

	upgrade(&p);
	raw_write(p.raw, frames, n);
	assert_int_equal(t_read_end(p.t), want);
	do
		op = next_frame(&p, pl, &k);
	while (op != 8);
	assert_int_equal(close_code(pl, k), code);
	pair_free(&p);
}

static void test_protocol_errors(void **state)
{
	static uint8_t buf[4096], zeros[1001];
	struct moat_ws_opts small = {.max_frame_bytes = 1000};
	size_t n;

	(void)state;
	n = frame(buf, true, 2, "plain", 5, NULL); /* client frames must be masked */
	expect_close(buf, n, MOAT_EPROTOCOL, 1002, NULL);
	n = cframe(buf, true, 1, "text", 4);
	expect_close(buf, n, MOAT_EPROTOCOL, 1003, NULL);
	n = cframe(buf, true, 0, "cont", 4); /* continuation of nothing */
	expect_close(buf, n, MOAT_EPROTOCOL, 1002, NULL);
	n = cframe(buf, false, 2, "a", 1);
	n += cframe(buf + n, true, 2, "b", 1); /* a new message inside a fragmented one */
	expect_close(buf, n, MOAT_EPROTOCOL, 1002, NULL);
	n = cframe(buf, true, 3, "x", 1); /* reserved opcode */
	expect_close(buf, n, MOAT_EPROTOCOL, 1002, NULL);
	n = cframe(buf, true, 2, "x", 1);
	buf[0] |= 0x40; /* RSV1 without an extension */
	expect_close(buf, n, MOAT_EPROTOCOL, 1002, NULL);
	n = cframe(buf, true, 8, "\x03\xed", 2); /* close 1005 may not be sent */
	expect_close(buf, n, MOAT_EPROTOCOL, 1002, NULL);
	n = cframe(buf, true, 2, zeros, 1001);
	expect_close(buf, n, MOAT_ETOOBIG, 1009, &small);
	n = cframe(buf, true, 2, zeros, 1000);
	n += cframe(buf + n, true, 1, "t", 1);
	expect_close(buf, n, MOAT_EPROTOCOL, 1003, &small); /* 1000 is fine, then text */
	/* A claim of 2^62 bytes: refused at its first payload byte, nothing allocated for it. */
	n = frame(buf, true, 2, NULL, (uint64_t)1 << 62, KEY);
	buf[n++] = 0;
	expect_close(buf, n, MOAT_ETOOBIG, 1009, NULL);
}

/* A control frame over 125 bytes or fragmented: wslay fails it at the frame layer. */
static void test_bad_control_frames(void **state)
{
	static const uint8_t big_ping[] = {0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4};
	static const uint8_t frag_ping[] = {0x09, 0x80, 1, 2, 3, 4};
	const uint8_t *cases[] = {big_ping, frag_ping};
	size_t lens[] = {sizeof(big_ping), sizeof(frag_ping)};

	(void)state;
	for (int i = 0; i < 2; i++) {
		struct pair p = server_with(NULL);

		upgrade(&p);
		raw_write(p.raw, cases[i], lens[i]);
		assert_int_equal(t_read_end(p.t), MOAT_EPROTOCOL);
		moat_transport_flush(p.t);
		pair_free(&p);
	}
}

static void test_eof_mid_frame(void **state)
{
	struct pair p = server_with(NULL);
	uint8_t buf[64];
	size_t n;

	(void)state;
	upgrade(&p);
	n = cframe(buf, true, 2, "0123456789", 10);
	raw_write(p.raw, buf, n - 4);
	shutdown(p.raw, SHUT_WR);
	assert_int_equal(t_read_n(p.t, buf, 6), 6);
	assert_memory_equal(buf, "012345", 6);
	assert_int_equal(t_read_end(p.t), 0);
	pair_free(&p);

	/* End of stream during the handshake. */
	p = server_with(NULL);
	raw_write(p.raw, "GET /mq", 7);
	shutdown(p.raw, SHUT_WR);
	assert_int_equal(t_read_end(p.t), 0);
	pair_free(&p);
}

/* writev refuses past its bound; flush makes room again. */
static void test_write_bound(void **state)
{
	struct pair p = server_with(NULL);
	static uint8_t chunk[100000];
	size_t queued = 0;
	ssize_t r;
	int i;

	(void)state;
	upgrade(&p);
	for (i = 0; i < 100; i++) {
		r = t_write(p.t, chunk, sizeof(chunk));
		if (r == MOAT_EAGAIN)
			break;
		assert_true(r > 0);
		queued += (size_t)r;
	}
	assert_int_equal(r, MOAT_EAGAIN);
	assert_true(queued >= 200000 && queued <= 300000);
	assert_true(moat_transport_want(p.t, true) & MOAT_EV_WRITE);
	while (moat_transport_flush(p.t) == MOAT_EAGAIN)
		raw_read(p.raw, chunk, sizeof(chunk));
	assert_false(moat_transport_want(p.t, false) & MOAT_EV_WRITE);
	assert_true(t_write(p.t, chunk, 10) == 10);
	{
		struct iovec iov[3] = {{chunk, 0}, {chunk, 3}, {chunk, 4}};
		assert_int_equal(moat_transport_writev(p.t, iov, 3), 7);
		assert_int_equal(moat_transport_writev(p.t, iov, 1), 0);
	}
	pair_free(&p);
}

/* Pongs for a peer that does not read pile up to a bound, then reading pauses. */
static void test_ping_flood_pauses(void **state)
{
	struct pair p = server_with(NULL);
	static uint8_t buf[300 * 10];
	uint8_t rd[64];
	size_t n = 0;
	int i;

	(void)state;
	upgrade(&p);
	for (i = 0; i < 300; i++)
		n += cframe(buf + n, true, 9, NULL, 0);
	n += cframe(buf + n, true, 2, "data", 4);
	raw_write(p.raw, buf, n);
	assert_int_equal(moat_transport_read(p.t, rd, sizeof(rd)), MOAT_EAGAIN);
	assert_false(moat_transport_want(p.t, false) & MOAT_EV_READ);
	assert_true(moat_transport_want(p.t, false) & MOAT_EV_WRITE);
	assert_int_equal(moat_transport_flush(p.t), 0);
	assert_true(moat_transport_want(p.t, false) & MOAT_EV_READ);
	assert_int_equal(t_read_n(p.t, rd, 4), 4);
	assert_memory_equal(rd, "data", 4);
	pair_free(&p);
}

/* ---- client and server together ---- */

struct duo {
	struct moat_transport *c, *s;
};

static struct duo duo_new(const char *path)
{
	struct duo d;
	int fds[2];

	socketpair_nb(fds);
	d.s = moat_ws_server_new(moat_tcp_new(fds[0]), NULL);
	d.c = moat_ws_client_new(moat_tcp_new(fds[1]), "broker.example:8080", path);
	assert_non_null(d.s);
	assert_non_null(d.c);
	return d;
}

/* Moves bytes both ways until b_want bytes reached s and c_want reached c. */
static void pump(struct duo *d, uint8_t *at_s, size_t s_want, uint8_t *at_c, size_t c_want)
{
	size_t s_got = 0, c_got = 0;
	int i;

	for (i = 0; i < 100000 && (s_got < s_want || c_got < c_want); i++) {
		ssize_t r;

		moat_transport_flush(d->c);
		r = moat_transport_read(d->s, at_s + s_got, s_want - s_got + 1);
		if (r > 0)
			s_got += (size_t)r;
		else
			assert_int_equal(r, MOAT_EAGAIN);
		moat_transport_flush(d->s);
		r = moat_transport_read(d->c, at_c + c_got, c_want - c_got + 1);
		if (r > 0)
			c_got += (size_t)r;
		else
			assert_int_equal(r, MOAT_EAGAIN);
	}
	assert_int_equal(s_got, s_want);
	assert_int_equal(c_got, c_want);
}

static void test_client_server(void **state)
{
	struct duo d = duo_new("/mqtt");
	uint8_t a[64], b[64];

	(void)state;
	assert_false(d.c->ops->ready(d.c));
	assert_true(moat_transport_want(d.c, false) & MOAT_EV_WRITE);
	/* CONNECT before the 101: it waits for it. */
	assert_int_equal(t_write(d.c, "\x10\x0c" "connect-ish.", 14), 14);
	pump(&d, a, 14, b, 0);
	assert_memory_equal(a, "\x10\x0c" "connect-ish.", 14);
	assert_true(d.c->ops->ready(d.c));
	assert_true(d.s->ops->ready(d.s));
	assert_int_equal(moat_ws_http_status(d.c), 101);
	assert_int_equal(t_write(d.s, "\x20\x02\x00\x00", 4), 4);
	pump(&d, a, 0, b, 4);
	assert_memory_equal(b, "\x20\x02\x00\x00", 4);
	moat_transport_free(d.c);
	assert_int_equal(t_read_end(d.s), 0);
	moat_transport_free(d.s);
}

/* One direction at a time, interleaving writes, flushes and reads. */
static void transfer(struct moat_transport *from, struct moat_transport *to, const uint8_t *src,
		     uint8_t *dst, size_t n)
{
	size_t sent = 0, got = 0;
	int i;

	for (i = 0; i < 1000000 && got < n; i++) {
		if (sent < n) {
			ssize_t r = t_write(from, src + sent, n - sent);

			if (r > 0)
				sent += (size_t)r;
			else
				assert_int_equal(r, MOAT_EAGAIN);
		}
		moat_transport_flush(from);
		ssize_t r = moat_transport_read(to, dst + got, n - got);

		if (r > 0)
			got += (size_t)r;
		else
			assert_int_equal(r, MOAT_EAGAIN);
		moat_transport_flush(to); /* pongs, nothing else here */
	}
	assert_int_equal(got, n);
	assert_memory_equal(src, dst, n);
}

static void test_megabyte_each_way(void **state)
{
	struct duo d = duo_new("/mqtt");
	size_t n = 1 << 20, i;
	uint8_t *out = malloc(n), *in = malloc(n);
	uint8_t hello[1], none[1];

	(void)state;
	for (i = 0; i < n; i++)
		out[i] = (uint8_t)(i * 31 + (i >> 10));
	/* Open first (the server writes nothing before the upgrade). */
	assert_int_equal(t_write(d.c, "!", 1), 1);
	pump(&d, hello, 1, none, 0);
	transfer(d.c, d.s, out, in, n);
	memset(in, 0, n);
	transfer(d.s, d.c, out, in, n);
	moat_transport_free(d.c);
	moat_transport_free(d.s);
	free(out);
	free(in);
}

/* The client, against a raw server: a refusal, and a 101 with the wrong accept. */
static void client_against(const char *answer, int status)
{
	int fds[2];
	char req[1024];
	struct moat_transport *c;
	size_t n;

	socketpair_nb(fds);
	c = moat_ws_client_new(moat_tcp_new(fds[0]), "h", "/mqtt");
	assert_non_null(c);
	assert_int_equal(moat_transport_flush(c), 0);
	n = raw_read(fds[1], req, sizeof(req) - 1);
	req[n] = '\0';
	assert_non_null(strstr(req, "GET /mqtt HTTP/1.1\r\nHost: h\r\n"));
	assert_non_null(strstr(req, "Sec-WebSocket-Protocol: mqtt\r\n"));
	assert_non_null(strstr(req, "Sec-WebSocket-Version: 13\r\n"));
	raw_write(fds[1], answer, strlen(answer));
	assert_int_equal(t_read_end(c), MOAT_EPROTOCOL);
	assert_int_equal(moat_ws_http_status(c), status);
	assert_false(c->ops->ready(c));
	moat_transport_free(c);
	close(fds[1]);
}

static void test_client_refused(void **state)
{
	(void)state;
	client_against("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 404);
	client_against("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		       "Connection: Upgrade\r\nSec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n"
		       "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
		       0);
	client_against("HTTP/1.1 101 Switching Protocols\n\n", 0);
	assert_null(moat_ws_client_new((struct moat_transport *)&(struct moat_transport){0}, "h h",
				       "/"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept_key),
		cmocka_unit_test(test_upgrade_and_echo),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_header_bound),
		cmocka_unit_test(test_good_requests),
		cmocka_unit_test(test_origin),
		cmocka_unit_test(test_forwarded_for),
		cmocka_unit_test(test_fragmented),
		cmocka_unit_test(test_bytewise_frames),
		cmocka_unit_test(test_small_reads),
		cmocka_unit_test(test_ping_pong_close),
		cmocka_unit_test(test_data_then_close),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_bad_control_frames),
		cmocka_unit_test(test_eof_mid_frame),
		cmocka_unit_test(test_write_bound),
		cmocka_unit_test(test_ping_flood_pauses),
		cmocka_unit_test(test_client_server),
		cmocka_unit_test(test_megabyte_each_way),
		cmocka_unit_test(test_client_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
