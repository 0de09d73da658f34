/*
 * bench_conn.c - `moat bench`'s connections: set-up, the per-thread epoll
 * loop, and MQTT packets built and parsed by hand.
 *
 * Set-up happens before the clock starts (connect, TLS handshake,
 * CONNECT/CONNACK, SUBSCRIBE/SUBACK), on non-blocking sockets waited on
 * with poll; then every socket joins the thread's epoll set,
 * edge-triggered, so a connection is never re-armed with a system call.
 * The loop turns like this:
 *
 *   epoll_wait -> mark connections readable / writable
 *   for each connection of the thread:
 *       read (a bounded number of times, so one busy socket cannot starve
 *       the others), parse every complete packet in the buffer, queue the
 *       acknowledgements; a publisher then fills its buffer with as many
 *       PUBLISHes as its window, rate, end-to-end limit and buffer allow,
 *       and writes once.
 *
 * A PUBLISH is a prebuilt template copied and patched (packet id, time,
 * sequence): no allocation, and one clock read per batch, which is the
 * moment the whole batch leaves. The receive time is one clock read per
 * read(), taken as soon as it returns.
 *
 * End-to-end flow control crosses threads through one atomic per
 * (subscriber, stream): the subscriber's thread stores its receive count
 * once per read, the publisher's thread reads them before a batch, and a
 * blocked publisher is woken through its thread's eventfd.
 *
 * Bytes go through plain socket calls, or with --cafile through the TLS
 * transport of src/net/tls.c (io_* below), the only place OpenSSL lives.
 *
 * Connection states of the storm role (the others live in CS_RUN):
 *
 *   CS_START --connect()--> CS_CONNECTING --writable--> [TLS: CS_HANDSHAKE]
 *      ^                                                      | CONNECT
 *      |                                                      v
 *      +-- EOF (the broker closes after DISCONNECT) -- CS_CLOSING <-- CS_CONNACK
 *                                                      CONNACK: DISCONNECT
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/bench.h"
#include "core/error.h"
#include "event/loop.h"
#include "net/tls.h"
#include "net/transport.h"

enum { CS_RUN, CS_DEAD, CS_START, CS_CONNECTING, CS_HANDSHAKE, CS_CONNACK, CS_CLOSING };

#define SETUP_TIMEOUT_MS 10000
#define READS_PER_TURN 8
#define ACK_RESERVE 8192     /* wbuf room kept for acknowledgements */
#define CLOSE_WAIT_NS 2000000000ull

/* ---- wire helpers ---- */

static size_t put_varint(uint8_t *p, size_t v)
{
	size_t n = 0;

	do {
		p[n] = v & 0x7f;
		v >>= 7;
		if (v)
			p[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

static size_t varint_len(size_t v)
{
	uint8_t tmp[4];

	return put_varint(tmp, v);
}

static size_t put_str(uint8_t *p, const char *s, size_t len)
{
	p[0] = (uint8_t)(len >> 8);
	p[1] = (uint8_t)len;
	memcpy(p + 2, s, len);
	return len + 2;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/*
 * Reads the Remaining Length at p[1..avail). Returns the header length
 * (1 + varint), 0 when more bytes are needed, -1 when malformed.
 */
static int get_header(const uint8_t *p, size_t avail, size_t *rem)
{
	size_t v = 0, i;

	for (i = 1; i < 5; i++) {
		if (i >= avail)
			return 0;
		v |= (size_t)(p[i] & 0x7f) << (7 * (i - 1));
		if (!(p[i] & 0x80)) {
			*rem = v;
			return (int)i + 1;
		}
	}
	return -1;
}

/*
 * CONNECT, keep-alive 300 s, with a clean session; or with --persistent
 * a session that outlives the connection (3.1.1: Clean Session 0; 5.0:
 * Session Expiry Interval 3600 s), which is what a broker persists.
 */
static size_t build_connect(const struct bench_opts *o, bool persistent, const char *id,
			    uint8_t *buf)
{
	size_t idl = strlen(id), props = persistent ? 5 : 0, n;
	size_t rem = 10 + (o->version == 5 ? 1 + props : 0) + 2 + idl;

	buf[0] = 0x10;
	n = 1 + put_varint(buf + 1, rem);
	n += put_str(buf + n, "MQTT", 4);
	buf[n++] = (uint8_t)o->version;
	buf[n++] = persistent && o->version != 5 ? 0x00 : 0x02;
	buf[n++] = 300 >> 8;
	buf[n++] = 300 & 0xff;
	if (o->version == 5) {
		buf[n++] = (uint8_t)props;
		if (persistent) {
			static const uint8_t expiry[5] = {0x11, 0, 0, 0x0e, 0x10};

			memcpy(buf + n, expiry, 5);
			n += 5;
		}
	}
	n += put_str(buf + n, id, idl);
	return n;
}

static size_t build_subscribe(const struct bench_opts *o, const char *filter, uint8_t *buf)
{
	size_t fl = strlen(filter), rem = 2 + (o->version == 5) + 2 + fl + 1, n;

	buf[0] = 0x82;
	n = 1 + put_varint(buf + 1, rem);
	buf[n++] = 0;
	buf[n++] = 1;
	if (o->version == 5)
		buf[n++] = 0;
	n += put_str(buf + n, filter, fl);
	buf[n++] = (uint8_t)o->qos;
	return n;
}

/*
 * Topic of a publisher, or filter of a subscriber, for this run's mode.
 * Every topic starts with the run's prefix, so two runs never mix.
 */
int moat_bench_topic(const struct bench_opts *o, int role, uint32_t id, char *buf, size_t cap)
{
	bool pub = role == BR_PUB;

	switch (o->mode) {
	case BM_FANIN:
		return pub ? snprintf(buf, cap, "bench/%s/in/%u", o->prefix, id)
			   : snprintf(buf, cap, "bench/%s/in/+", o->prefix);
	case BM_FANOUT:
		return snprintf(buf, cap, "bench/%s/out", o->prefix);
	case BM_PAIRS:
		return snprintf(buf, cap, "bench/%s/p/%u", o->prefix, id);
	case BM_SHARED:
		return pub ? snprintf(buf, cap, "bench/%s/sh/%u", o->prefix, id)
			   : snprintf(buf, cap, "$share/g/bench/%s/sh/+", o->prefix);
	}
	return snprintf(buf, cap, "bench/%s", o->prefix);
}

/* Prebuilds this publisher's PUBLISH: header, topic, packet id, payload. */
static int build_template(const struct bench_opts *o, struct bench_conn *c)
{
	char topic[128];
	size_t tl, rem, n;

	tl = (size_t)moat_bench_topic(o, BR_PUB, c->id, topic, sizeof(topic));
	rem = 2 + tl + (o->qos ? 2 : 0) + (o->version == 5) + o->size;
	c->pkt_len = 1 + varint_len(rem) + rem;
	c->tmpl = calloc(1, c->pkt_len);
	if (!c->tmpl)
		return -ENOMEM;
	c->tmpl[0] = (uint8_t)(0x30 | o->qos << 1);
	n = 1 + put_varint(c->tmpl + 1, rem);
	n += put_str(c->tmpl + n, topic, tl);
	c->pid_off = n;
	if (o->qos)
		n += 2;
	if (o->version == 5)
		c->tmpl[n++] = 0;
	c->pay_off = n;
	memcpy(c->tmpl + n + 8, &c->id, 4);
	return 0;
}

/* ---- I/O: socket calls, or the TLS transport of src/net/tls.c ---- */

/* read(2)'s contract: bytes, 0 at the end, or -1 with errno (EAGAIN: later). */
static ssize_t io_read(struct bench_conn *c, void *buf, size_t n)
{
	ssize_t r;

	if (!c->t)
		return read(c->fd, buf, n);
	r = moat_transport_read(c->t, buf, n);
	if (r >= 0)
		return r;
	errno = r == MOAT_EAGAIN ? EAGAIN : EIO;
	return -1;
}

/*
 * send(2)'s contract. The TLS transport may accept bytes it cannot write
 * yet (a record waiting for the socket): io_push() finishes it, and the
 * next io_send() fails with EAGAIN until it is out.
 */
static ssize_t io_send(struct bench_conn *c, const void *buf, size_t n)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
	ssize_t r;

	if (!c->t)
		return send(c->fd, buf, n, MSG_NOSIGNAL);
	r = moat_transport_writev(c->t, &iov, 1);
	if (r > 0)
		return r;
	errno = r == 0 || r == MOAT_EAGAIN ? EAGAIN : EIO;
	return -1;
}

/* Pushes what the transport holds: 0 when all is out, -EAGAIN, or an error. */
static int io_push(struct bench_conn *c)
{
	int rc;

	if (!c->t)
		return 0;
	rc = moat_transport_flush(c->t);
	return rc == MOAT_EAGAIN ? -EAGAIN : rc < 0 ? -EIO : 0;
}

/* io_push, where "not yet" is fine: the loop pushes again when writable. */
static int pushed(struct bench_conn *c)
{
	int rc = io_push(c);

	return rc == -EAGAIN ? 0 : rc;
}

static void io_close(struct bench_conn *c)
{
	if (c->t)
		moat_transport_free(c->t); /* closes fd */
	else if (c->fd >= 0)
		close(c->fd);
	c->t = NULL;
	c->fd = -1;
}

/* Puts the TLS transport over c's connected non-blocking socket. */
static int io_tls(const struct bench_opts *o, struct bench_conn *c)
{
	if (!o->tls)
		return 0;
	c->t = moat_tls_connect(o->tls, c->fd);
	if (!c->t) {
		c->fd = -1; /* taken, and closed */
		return -EPROTO;
	}
	return 0;
}

static bool io_ready(const struct bench_conn *c)
{
	return !c->t || c->t->ops->ready(c->t);
}

/* ---- connections ---- */

/*
 * A publisher's share of the end-to-end limit: o->e2e messages on their
 * way to each subscriber, split between the publishers that feed it (all
 * of them, but one for pairs). A shared group counts as one subscriber:
 * the broker need not split evenly, so one member may get it all.
 */
static void e2e_limits(const struct bench_opts *o, struct bench_conn *c)
{
	uint64_t share = (uint64_t)o->e2e;

	if (o->mode != BM_PAIRS)
		share /= (uint64_t)o->pubs;
	c->tap_sum = o->mode == BM_SHARED;
	c->e2e_limit = o->e2e == 0 ? UINT64_MAX : share ? share : 1;
}

void moat_bench_conn_free(struct bench_conn *c)
{
	if (!c)
		return;
	io_close(c);
	free(c->rbuf);
	free(c->wbuf);
	free(c->tmpl);
	free(c->pid_used);
	free(c->streams);
	free(c->taps);
	free(c);
}

/*
 * Returns an owned connection of the given role (free with
 * moat_bench_conn_free), its buffers sized for the role, or NULL.
 */
struct bench_conn *moat_bench_conn_new(const struct bench_opts *o, int role, uint32_t id)
{
	struct bench_conn *c = calloc(1, sizeof(*c));
	size_t many = (size_t)(o->pubs + o->subs) > 64;

	if (!c)
		return NULL;
	c->fd = -1;
	c->role = (uint8_t)role;
	c->id = id;
	c->rcap = c->wcap = 512;
	if (role == BR_PUB) {
		if (build_template(o, c) < 0)
			goto fail;
		c->rcap = 16384;
		c->wcap = (c->pkt_len * 4 > 65536 ? c->pkt_len * 4 : 65536) + ACK_RESERVE;
		c->pid_used = calloc(65536 / 64, sizeof(uint64_t));
		c->rate = o->rate > 0 ? o->rate / o->pubs : 0;
		e2e_limits(o, c);
		if (!c->pid_used)
			goto fail;
	} else if (role == BR_SUB) {
		c->rcap = many ? 32768 : 262144;
		if (c->rcap < 2 * (o->size + 256))
			c->rcap = 2 * (o->size + 256);
		c->wcap = 16384;
		c->stream_base = o->mode == BM_PAIRS ? id : 0;
		c->nstreams = o->mode == BM_PAIRS ? 1 : (uint32_t)o->pubs;
		c->streams = calloc(c->nstreams, sizeof(*c->streams));
		if (!c->streams)
			goto fail;
	}
	c->rbuf = malloc(c->rcap);
	c->wbuf = malloc(c->wcap);
	if (!c->rbuf || !c->wbuf)
		goto fail;
	c->state = role == BR_STORM ? CS_START : CS_RUN;
	return c;
fail:
	moat_bench_conn_free(c);
	return NULL;
}

static int tcp_socket(const struct bench_opts *o, bool nonblock, struct sockaddr_storage *sa,
		      socklen_t *salen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	char port[16];
	int fd, one = 1;

	snprintf(port, sizeof(port), "%d", o->port);
	if (getaddrinfo(o->host, port, &hints, &ai) != 0)
		return -EHOSTUNREACH;
	memcpy(sa, ai->ai_addr, ai->ai_addrlen);
	*salen = ai->ai_addrlen;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	freeaddrinfo(ai);
	if (fd < 0)
		return -errno;
	/* the generator batches its own writes; Nagle would only add delay */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Waits up to the set-up timeout for the socket to be ready for events. */
static int wait_fd(const struct bench_conn *c, short events)
{
	struct pollfd pfd = {.fd = c->fd, .events = events};
	int r;

	do
		r = poll(&pfd, 1, SETUP_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	return r > 0 ? 0 : r == 0 ? -ETIMEDOUT : -errno;
}

/* During set-up (non-blocking socket, waiting with poll): writes all of p. */
static int send_all(struct bench_conn *c, const uint8_t *p, size_t len)
{
	ssize_t n;
	int rc;

	while (len) {
		n = io_send(c, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		rc = wait_fd(c, POLLOUT);
		if (rc == 0)
			rc = io_push(c);
		if (rc < 0 && rc != -EAGAIN)
			return rc;
	}
	while ((rc = io_push(c)) == -EAGAIN)
		if ((rc = wait_fd(c, POLLOUT)) < 0)
			return rc;
	return rc;
}

/* During set-up: drives the TLS handshake to its end. */
static int handshake(struct bench_conn *c)
{
	int rc;

	while (!io_ready(c)) {
		rc = io_push(c);
		if (io_ready(c))
			break;
		if (rc != -EAGAIN)
			return rc < 0 ? rc : -EPROTO;
		rc = wait_fd(c, moat_transport_want(c->t, false) & MOAT_EV_WRITE ? POLLOUT : POLLIN);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * Blocking, during set-up: waits for the next packet, which must be of
 * type `type`, and returns its body in c->rbuf (valid until consume()).
 */
static int wait_packet(struct bench_conn *c, int type, const uint8_t **body, size_t *len,
		       size_t *total)
{
	size_t rem;
	ssize_t n;
	int h, rc;

	for (;;) {
		h = get_header(c->rbuf, c->rlen, &rem);
		if (h < 0)
			return -EPROTO;
		if (h > 0 && c->rlen >= (size_t)h + rem) {
			if (c->rbuf[0] >> 4 != type)
				return -EPROTO;
			*body = c->rbuf + h;
			*len = rem;
			*total = (size_t)h + rem;
			return 0;
		}
		n = io_read(c, c->rbuf + c->rlen, c->rcap - c->rlen);
		if (n > 0) {
			c->rlen += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			return n < 0 ? -errno : -ECONNRESET;
		rc = wait_fd(c, POLLIN);
		if (rc < 0)
			return rc;
	}
}

static void consume(struct bench_conn *c, size_t n)
{
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
}

/* Receive Maximum from a 5.0 CONNACK's properties; 65535 when absent. */
static uint32_t connack_recv_max(const uint8_t *b, size_t len)
{
	size_t plen, i;
	int h;

	if (len < 3)
		return 65535;
	/* the property length is a varint at b[2]; reuse the header reader */
	h = get_header(b + 1, len - 1, &plen);
	if (h <= 0)
		return 65535;
	for (i = 1 + (size_t)h; i < len; ) {
		uint8_t id = b[i++];

		if (id == 0x21 && i + 2 <= len)
			return rd16(b + i) ? rd16(b + i) : 65535;
		switch (id) {
		case 0x24: case 0x25: case 0x28: case 0x29: case 0x2A:
			i += 1; break;
		case 0x13: case 0x22: case 0x21:
			i += 2; break;
		case 0x11: case 0x27:
			i += 4; break;
		case 0x26:
			if (i + 2 > len)
				return 65535;
			i += 2 + rd16(b + i);
			/* then the value string */
			__attribute__((fallthrough));
		case 0x12: case 0x1A: case 0x1C: case 0x1F: case 0x15: case 0x16:
			if (i + 2 > len)
				return 65535;
			i += 2 + rd16(b + i);
			break;
		default:
			return 65535;
		}
	}
	return 65535;
}

#define EXTRA_PER_PACKET 50

/*
 * Filter i of the extra subscriptions: wildcards under the run's prefix
 * that never match the load's topics but sit beside them in the broker's
 * subscription index (half at the fan-in level, half beside it).
 */
static int extra_filter(const struct bench_opts *o, uint32_t i, char *buf, size_t cap)
{
	return i % 2 ? snprintf(buf, cap, "bench/%s/in/+/x%u", o->prefix, i)
		     : snprintf(buf, cap, "bench/%s/w%u/#", o->prefix, i);
}

/* Subscribes c to its share of the extra filters, EXTRA_PER_PACKET a packet. */
static int extra_subscribe(const struct bench_opts *o, struct bench_conn *c)
{
	uint8_t pkt[EXTRA_PER_PACKET * 80 + 16];
	char f[72];
	const uint8_t *body;
	size_t n, len, total, i;
	uint32_t k, end = c->first + c->nfilters;
	int rc;

	for (k = c->first; k < end; ) {
		n = 8; /* room for the fixed header; moved down below */
		pkt[n++] = 0;
		pkt[n++] = 1;
		if (o->version == 5)
			pkt[n++] = 0;
		for (i = 0; i < EXTRA_PER_PACKET && k < end; i++, k++) {
			n += put_str(pkt + n, f, (size_t)extra_filter(o, k, f, sizeof(f)));
			pkt[n++] = (uint8_t)o->qos;
		}
		len = put_varint(pkt + 1, n - 8);
		memmove(pkt + 1 + len, pkt + 8, n - 8);
		pkt[0] = 0x82;
		rc = send_all(c, pkt, 1 + len + n - 8);
		if (rc == 0)
			rc = wait_packet(c, 9, &body, &len, &total);
		if (rc < 0)
			return rc;
		for (n = len - i; n < len; n++)
			if (body[n] >= 0x80)
				return -EACCES;
		consume(c, total);
	}
	return 0;
}

/* Connects c, blocking, and (subscriber) subscribes. */
static int conn_setup(const struct bench_opts *o, struct bench_conn *c)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	uint8_t pkt[512];
	char id[96], filter[160];
	const uint8_t *body;
	size_t len, total;
	int rc;

	c->fd = tcp_socket(o, false, &sa, &salen);
	if (c->fd < 0)
		return c->fd;
	if (connect(c->fd, (struct sockaddr *)&sa, salen) < 0 ||
	    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
		return -errno;
	rc = io_tls(o, c);
	if (rc == 0)
		rc = handshake(c);
	if (rc < 0)
		return rc;
	snprintf(id, sizeof(id), "%s-%c%u", o->prefix, "pscix"[c->role], c->id);
	rc = send_all(c, pkt, build_connect(o, o->persistent && c->role <= BR_SUB, id, pkt));
	if (rc == 0)
		rc = wait_packet(c, 2, &body, &len, &total);
	if (rc < 0)
		return rc;
	if (len < 2 || body[1] != 0)
		return -ECONNREFUSED;
	c->window = (uint32_t)o->window;
	if (o->version == 5 && connack_recv_max(body, len) < c->window)
		c->window = connack_recv_max(body, len);
	consume(c, total);
	if (c->role == BR_EXTRA)
		return extra_subscribe(o, c);
	if (c->role != BR_SUB)
		return 0;
	moat_bench_topic(o, BR_SUB, c->id, filter, sizeof(filter));
	rc = send_all(c, pkt, build_subscribe(o, filter, pkt));
	if (rc == 0)
		rc = wait_packet(c, 9, &body, &len, &total);
	if (rc < 0)
		return rc;
	if (len < 3 || body[len - 1] >= 0x80)
		return -EACCES;
	consume(c, total);
	return 0;
}

static int watch(struct bench_thread *th, struct bench_conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
				 .data.ptr = c};

	if (epoll_ctl(th->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		return -errno;
	c->writable = true;
	c->readable = c->rlen > 0;
	return 0;
}

static void conn_dead(struct bench_thread *th, struct bench_conn *c, const char *why)
{
	if (c->role != BR_STORM)
		fprintf(stderr, "moat bench: connection %c%u lost: %s\n", "pscix"[c->role], c->id,
			why);
	th->conn_errors++;
	io_close(c);
	c->state = c->role == BR_STORM ? CS_START : CS_DEAD;
	c->rlen = c->woff = c->wlen = 0;
}

/* ---- sending ---- */

static void conn_flush(struct bench_thread *th, struct bench_conn *c)
{
	ssize_t n;
	int rc;

	while (c->woff < c->wlen && c->writable) {
		n = io_send(c, c->wbuf + c->woff, c->wlen - c->woff);
		if (n > 0)
			c->woff += (size_t)n;
		else if (n < 0 && errno == EAGAIN)
			c->writable = false;
		else if (n < 0 && errno != EINTR)
			return conn_dead(th, c, strerror(errno));
	}
	if (c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->t && c->writable) {
		rc = io_push(c);
		if (rc == -EAGAIN)
			c->writable = false;
		else if (rc < 0)
			conn_dead(th, c, "TLS write failed");
	}
}

/* Queues a 4-byte acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP). */
static void queue_ack(struct bench_thread *th, struct bench_conn *c, uint8_t h, uint16_t pid)
{
	uint8_t *p;

	if (c->wlen + 4 > c->wcap) {
		conn_flush(th, c);
		if (c->wlen + 4 > c->wcap) {
			memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
			c->wlen -= c->woff;
			c->woff = 0;
		}
		if (c->wlen + 4 > c->wcap)
			return conn_dead(th, c, "acknowledgements backed up");
	}
	p = c->wbuf + c->wlen;
	p[0] = h;
	p[1] = 2;
	p[2] = (uint8_t)(pid >> 8);
	p[3] = (uint8_t)pid;
	c->wlen += 4;
}

static uint16_t pid_alloc(struct bench_conn *c)
{
	uint16_t p;

	do {
		p = (uint16_t)(c->next_pid + 1);
		c->next_pid = p = p ? p : 1; /* 0 is not a packet id */
	} while (c->pid_used[p / 64] & (1ull << (p % 64)));
	c->pid_used[p / 64] |= 1ull << (p % 64);
	return p;
}

/* Messages of c not yet received by its slowest subscriber (or its group). */
static uint64_t e2e_behind(const struct bench_conn *c)
{
	uint64_t got = c->tap_sum ? 0 : UINT64_MAX, v;
	uint32_t i;

	for (i = 0; i < c->ntaps; i++) {
		v = atomic_load(c->taps[i]);
		if (c->tap_sum)
			got += v;
		else if (v < got)
			got = v;
	}
	return c->ntaps && c->seq > got ? c->seq - got : 0;
}

/* Messages c may send before its slowest subscriber is e2e_limit behind. */
static uint64_t e2e_room(struct bench_conn *c)
{
	uint64_t behind = e2e_behind(c);

	if (behind < c->e2e_limit)
		return c->e2e_limit - behind;
	/* blocked: ask to be woken, then look again in case the wake-up was missed */
	atomic_store(&c->e2e_wait, true);
	behind = e2e_behind(c);
	return behind < c->e2e_limit ? c->e2e_limit - behind : 0;
}

/* How many PUBLISHes c may send now: buffer room, window, rate, end-to-end limit. */
static uint64_t pub_budget(const struct bench_thread *th, struct bench_conn *c, uint64_t now)
{
	uint64_t n = (c->wcap - ACK_RESERVE - c->wlen) / c->pkt_len, due, room;

	if (th->o->qos && c->window - c->inflight < n)
		n = c->window - c->inflight;
	if (c->rate > 0) {
		due = (uint64_t)((double)(now - th->t_start) * c->rate / 1e9) + 1;
		due = due > c->seq ? due - c->seq : 0;
		if (due < n)
			n = due;
	}
	if (n && c->e2e_limit != UINT64_MAX) {
		room = e2e_room(c);
		if (room < n)
			n = room;
	}
	return n;
}

/*
 * Fills c's buffer with PUBLISHes and writes it. Returns true when c could
 * send more at once (the loop should not sleep).
 */
static bool pub_pump(struct bench_thread *th, struct bench_conn *c, uint64_t now,
		     uint64_t *sent)
{
	uint64_t n, i;
	uint8_t *p;

	if (c->state != CS_RUN)
		return false;
	conn_flush(th, c);
	if (c->wlen || !c->writable || now >= th->t_end)
		return false;
	n = pub_budget(th, c, now);
	for (i = 0; i < n; i++) {
		p = c->wbuf + c->wlen;
		memcpy(p, c->tmpl, c->pkt_len);
		if (th->o->qos) {
			uint16_t pid = pid_alloc(c);

			p[c->pid_off] = (uint8_t)(pid >> 8);
			p[c->pid_off + 1] = (uint8_t)pid;
		}
		memcpy(p + c->pay_off, &now, 8);
		memcpy(p + c->pay_off + 12, &c->seq, 4);
		c->seq++;
		c->wlen += c->pkt_len;
	}
	if (th->o->qos)
		c->inflight += (uint32_t)n;
	*sent += n;
	conn_flush(th, c);
	return n > 0 && c->writable && c->rate == 0 && (!th->o->qos || c->inflight < c->window);
}

/* ---- receiving ---- */

struct turn {
	uint64_t sent, acked, dups, recv;
	int64_t inflight;
};

/* Tells the publishers of the streams c received from what it received. */
static void e2e_flush(struct bench_conn *c)
{
	static const uint64_t one = 1;
	uint32_t i;

	for (i = 0; i < c->ndirty; i++) {
		struct bench_stream *s = &c->streams[c->dirty[i]];
		struct bench_conn *p = c->pubs[c->stream_base + c->dirty[i]];

		atomic_store(&s->tap, s->recv);
		s->dirty = false;
		if (atomic_load_explicit(&p->e2e_wait, memory_order_relaxed) &&
		    atomic_exchange(&p->e2e_wait, false))
			(void)!write(p->th->evfd, &one, sizeof(one));
	}
	c->ndirty = 0;
}

static void e2e_count(struct bench_conn *c, uint32_t idx)
{
	if (!c->pubs)
		return;
	if (!c->streams[idx].dirty) {
		c->streams[idx].dirty = true;
		if (c->ndirty == sizeof(c->dirty) / sizeof(c->dirty[0]))
			e2e_flush(c);
		c->dirty[c->ndirty++] = idx;
	}
}

static void on_publish(struct bench_thread *th, struct bench_conn *c, uint8_t h,
		       const uint8_t *b, size_t len, uint64_t now, struct turn *t)
{
	const struct bench_opts *o = th->o;
	int qos = (h >> 1) & 3, hl;
	size_t off, plen = 0;
	uint16_t pid = 0;
	uint64_t ts;
	uint32_t stream, seq;

	if (len < 2)
		return conn_dead(th, c, "malformed PUBLISH");
	off = 2 + (size_t)rd16(b);
	if (qos) {
		pid = off + 2 <= len ? rd16(b + off) : 0;
		off += 2;
	}
	if (o->version == 5 && off < len) {
		hl = get_header(b + off - 1, len - off + 1, &plen);
		off += hl > 0 ? (size_t)hl - 1 + plen : len;
	}
	t->recv++;
	if (off + BENCH_HDR <= len && c->role == BR_SUB) {
		memcpy(&ts, b + off, 8);
		memcpy(&stream, b + off + 8, 4);
		memcpy(&seq, b + off + 12, 4);
		if (stream - c->stream_base < c->nstreams) {
			moat_bench_stream_see(&c->streams[stream - c->stream_base], seq, &t->dups);
			e2e_count(c, stream - c->stream_base);
		}
		if (now >= th->t_measure && now < th->t_end) {
			th->recv_win++;
			th->bytes_win += len - off;
			moat_bench_hist_add(&th->hist, now > ts ? now - ts : 0);
		}
	}
	if (qos == 1)
		queue_ack(th, c, 0x40, pid);
	else if (qos == 2)
		queue_ack(th, c, 0x50, pid);
}

/* PUBACK or PUBCOMP: the end of a publisher's QoS 1/2 flow. */
static void on_ack_end(struct bench_thread *th, struct bench_conn *c, const uint8_t *b,
		       size_t len, struct turn *t)
{
	uint16_t pid;

	if (len < 2 || !c->pid_used)
		return;
	pid = rd16(b);
	if (!(c->pid_used[pid / 64] & (1ull << (pid % 64)))) {
		th->ack_errors++;
		return;
	}
	c->pid_used[pid / 64] &= ~(1ull << (pid % 64));
	c->inflight--;
	t->inflight--;
	if (len >= 3 && b[2] >= 0x80) {
		th->ack_errors++;
		return;
	}
	c->acked++;
	t->acked++;
}

static void on_pubrec(struct bench_thread *th, struct bench_conn *c, const uint8_t *b,
		      size_t len, struct turn *t)
{
	if (len < 2)
		return;
	if (len >= 3 && b[2] >= 0x80)
		return on_ack_end(th, c, b, len, t); /* refused: the flow ends here */
	queue_ack(th, c, 0x62, rd16(b));
}

static void on_connack(struct bench_thread *th, struct bench_conn *c, const uint8_t *b,
		       size_t len, uint64_t now)
{
	static const uint8_t disconnect[2] = {0xe0, 0};

	if (c->role != BR_STORM || c->state != CS_CONNACK)
		return;
	if (len < 2 || b[1] != 0)
		return conn_dead(th, c, "CONNACK refused");
	c->cycles++;
	if (now >= th->t_measure && now < th->t_end) {
		th->cycles_win++;
		moat_bench_hist_add(&th->hist, now - c->t_start);
	}
	/* the broker closes after DISCONNECT: its close frees our port */
	if (io_send(c, disconnect, 2) != 2 || pushed(c) < 0)
		return conn_dead(th, c, "DISCONNECT not sent");
	c->state = CS_CLOSING;
}

static void handle(struct bench_thread *th, struct bench_conn *c, uint8_t h, const uint8_t *b,
		   size_t len, uint64_t now, struct turn *t)
{
	switch (h >> 4) {
	case 2:
		return on_connack(th, c, b, len, now);
	case 3:
		return on_publish(th, c, h, b, len, now, t);
	case 4:
	case 7:
		return on_ack_end(th, c, b, len, t);
	case 5:
		return on_pubrec(th, c, b, len, t);
	case 6:
		if (len >= 2)
			queue_ack(th, c, 0x70, rd16(b));
		return;
	case 14:
		snprintf(th->why, sizeof(th->why), "DISCONNECT from the broker, reason 0x%02x",
			 len ? b[0] : 0);
		return conn_dead(th, c, th->why);
	}
}

/* Handles every complete packet in c->rbuf and keeps the partial rest. */
static void parse(struct bench_thread *th, struct bench_conn *c, uint64_t now, struct turn *t)
{
	size_t off = 0, rem;
	int h;

	while (c->state != CS_DEAD && c->fd >= 0) {
		h = get_header(c->rbuf + off, c->rlen - off, &rem);
		if (h < 0)
			return conn_dead(th, c, "malformed packet");
		if (h == 0 || c->rlen - off < (size_t)h + rem)
			break;
		handle(th, c, c->rbuf[off], c->rbuf + off + h, rem, now, t);
		off += (size_t)h + rem;
	}
	if (c->fd < 0)
		return;
	consume(c, off);
	if (c->rlen == c->rcap)
		conn_dead(th, c, "packet larger than the read buffer");
}

static void storm_closed(struct bench_thread *th, struct bench_conn *c)
{
	(void)th;
	io_close(c);
	c->state = CS_START;
	c->rlen = 0;
}

/*
 * Acknowledges at once what was just read. A broker with Nagle's
 * algorithm on (Mosquitto's default, used by bench/run for both) holds
 * its next small packet until the previous one is acknowledged; with the
 * receiver's delayed ACK that is a 40 ms stall each time the flow pauses.
 * The generator must not add that delay of its own: quick ACKs are what
 * a receiver reading as fast as it can would get anyway. One system call
 * per read, not per message; the kernel leaves quick-ACK mode by itself.
 */
static void quickack(const struct bench_conn *c)
{
	int one = 1;

	if (c->role == BR_SUB || c->role == BR_PUB)
		setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static void conn_read(struct bench_thread *th, struct bench_conn *c, struct turn *t)
{
	ssize_t n;
	int i;

	for (i = 0; i < READS_PER_TURN && c->fd >= 0; i++) {
		n = io_read(c, c->rbuf + c->rlen, c->rcap - c->rlen);
		if (n > 0) {
			c->rlen += (size_t)n;
			quickack(c);
			parse(th, c, moat_bench_now(), t);
			if (c->ndirty)
				e2e_flush(c);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			c->readable = false;
			return;
		}
		if (c->state == CS_CLOSING)
			return storm_closed(th, c);
		return conn_dead(th, c, n == 0 ? "closed by the broker" : strerror(errno));
	}
}

/* ---- the storm role ---- */

static void storm_start(struct bench_thread *th, struct bench_conn *c, uint64_t now)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
				 .data.ptr = c};

	c->fd = tcp_socket(th->o, true, &sa, &salen);
	if (c->fd < 0) {
		th->conn_errors++;
		return;
	}
	if ((connect(c->fd, (struct sockaddr *)&sa, salen) < 0 && errno != EINPROGRESS) ||
	    epoll_ctl(th->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		return conn_dead(th, c, strerror(errno));
	c->t_start = now;
	c->readable = c->writable = false;
	c->state = CS_CONNECTING;
}

/* Sends CONNECT (small: it fits the socket buffer, or the TLS stage, at once). */
static void storm_send_connect(struct bench_thread *th, struct bench_conn *c)
{
	uint8_t pkt[160];
	char id[96];
	size_t n;

	snprintf(id, sizeof(id), "%s-c%u-%llu", th->o->prefix, c->id,
		 (unsigned long long)c->cycles);
	n = build_connect(th->o, false, id, pkt);
	if (io_send(c, pkt, n) != (ssize_t)n || pushed(c) < 0)
		return conn_dead(th, c, "CONNECT not sent");
	c->state = CS_CONNACK;
}

/* Advances the TLS handshake; on its end, CONNECT. */
static void storm_handshake(struct bench_thread *th, struct bench_conn *c)
{
	int rc = io_push(c);

	if (io_ready(c))
		return storm_send_connect(th, c);
	if (rc != -EAGAIN)
		return conn_dead(th, c, "TLS handshake failed");
	/* wait for the edge the handshake needs */
	c->readable = false;
	if (moat_transport_want(c->t, false) & MOAT_EV_WRITE)
		c->writable = false;
}

static void storm_connected(struct bench_thread *th, struct bench_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
		return conn_dead(th, c, "connect failed");
	if (!th->o->tls)
		return storm_send_connect(th, c);
	if (io_tls(th->o, c) < 0)
		return conn_dead(th, c, "TLS set-up failed");
	c->state = CS_HANDSHAKE;
	storm_handshake(th, c);
}

/* Moves a storm connection along; true when it should be looked at again at once. */
static bool storm_turn(struct bench_thread *th, struct bench_conn *c, uint64_t now,
		       struct turn *t)
{
	if (c->state == CS_START) {
		if (now >= th->t_end)
			return false;
		storm_start(th, c, now);
	}
	if (c->state == CS_CONNECTING && c->writable)
		storm_connected(th, c);
	else if (c->state == CS_HANDSHAKE && (c->readable || c->writable))
		storm_handshake(th, c);
	if ((c->state == CS_CONNACK || c->state == CS_CLOSING) && c->readable)
		conn_read(th, c, t);
	if (c->state == CS_CLOSING && now - c->t_start > CLOSE_WAIT_NS)
		storm_closed(th, c);
	return c->state == CS_START || c->readable;
}

/* ---- the thread ---- */

int moat_bench_thread_init(struct bench_thread *th)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};

	th->ep = epoll_create1(EPOLL_CLOEXEC);
	th->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (th->ep < 0 || th->evfd < 0 || epoll_ctl(th->ep, EPOLL_CTL_ADD, th->evfd, &ev) < 0)
		return -errno;
	return 0;
}

static int setup_all(struct bench_thread *th)
{
	size_t i;
	int rc;

	for (i = 0; i < th->nconns; i++) {
		struct bench_conn *c = th->conns[i];

		c->th = th;
		if (c->role == BR_STORM)
			continue;
		rc = conn_setup(th->o, c);
		if (rc == 0)
			rc = watch(th, c);
		if (rc < 0) {
			fprintf(stderr, "moat bench: %s:%d: connection %zu of thread %d: %s\n",
				th->o->host, th->o->port, i, th->index, strerror(-rc));
			return rc;
		}
		atomic_fetch_add_explicit(&th->connected, 1, memory_order_relaxed);
	}
	return 0;
}

static bool conn_turn(struct bench_thread *th, struct bench_conn *c, uint64_t now,
		      struct turn *t)
{
	bool busy = false;

	if (c->role == BR_STORM)
		return storm_turn(th, c, now, t);
	if (c->state != CS_RUN)
		return false;
	if (c->readable)
		conn_read(th, c, t);
	if (c->state != CS_RUN)
		return false;
	if (c->role == BR_PUB)
		busy = pub_pump(th, c, now, &t->sent);
	else if (c->wlen || (c->t && c->writable))
		conn_flush(th, c);
	return busy || c->readable;
}

static void publish_counters(struct bench_thread *th, const struct turn *t)
{
	atomic_store_explicit(&th->sent, atomic_load_explicit(&th->sent, memory_order_relaxed) +
				  t->sent, memory_order_relaxed);
	atomic_store_explicit(&th->acked, atomic_load_explicit(&th->acked, memory_order_relaxed) +
				  t->acked, memory_order_relaxed);
	atomic_store_explicit(&th->inflight,
			      atomic_load_explicit(&th->inflight, memory_order_relaxed) +
				      (uint64_t)t->sent * (th->o->qos > 0) + (uint64_t)t->inflight,
			      memory_order_relaxed);
	th->recv_total += t->recv;
	atomic_store_explicit(&th->uniq, atomic_load_explicit(&th->uniq, memory_order_relaxed) +
				  t->recv - t->dups, memory_order_relaxed);
}

static void run_loop(struct bench_thread *th)
{
	struct epoll_event ev[256];
	int n, i, timeout = 0;
	bool busy;
	size_t k;

	while (!atomic_load_explicit(th->stop, memory_order_relaxed)) {
		struct turn t = {0};
		uint64_t now;

		n = epoll_wait(th->ep, ev, 256, timeout);
		for (i = 0; i < n; i++) {
			struct bench_conn *c = ev[i].data.ptr;
			uint64_t v;

			if (!c) {
				(void)!read(th->evfd, &v, sizeof(v));
				continue;
			}
			if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
				c->readable = true;
			if (ev[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
				c->writable = true;
		}
		now = moat_bench_now();
		busy = false;
		for (k = 0; k < th->nconns; k++)
			busy |= conn_turn(th, th->conns[k], now, &t);
		publish_counters(th, &t);
		timeout = busy ? 0 : th->o->rate > 0 ? 1 : 10;
	}
}

static void finish(struct bench_thread *th)
{
	static const uint8_t disconnect[2] = {0xe0, 0};
	size_t k;

	for (k = 0; k < th->nconns; k++) {
		struct bench_conn *c = th->conns[k];

		if (c->fd >= 0 && c->state == CS_RUN) {
			(void)!io_send(c, disconnect, 2);
			(void)!io_push(c);
		}
	}
}

void *moat_bench_thread_run(void *arg)
{
	struct bench_thread *th = arg;

	if (setup_all(th) < 0)
		th->failed = 1;
	pthread_barrier_wait(th->barrier);  /* every connection is up */
	pthread_barrier_wait(th->barrier);  /* the main thread has set the clock */
	run_loop(th);
	finish(th);
	return NULL;
}
