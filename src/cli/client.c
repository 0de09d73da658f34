/*
 * client.c - the blocking MQTT client of the moat tool (see client.h).
 *
 * Everything happens in pump(): one poll round over the transport's socket
 * (and an optional extra fd), reading into the framer, handing each packet
 * to moat_client_handle (client_in.c), then the keep alive. The public calls
 * are loops of pump() until their condition holds:
 *
 *   connect    tcp ─> wrap ─> pump until ready ─> upgrade ─> pump until ready
 *              ─> read what came (settle) ─> CONNECT ─> pump until CONNACK
 *   publish    QoS 0: send │ QoS 1/2: pump until inflight < Receive Maximum, send
 *   flush      pump until nothing is in flight either way
 *   subscribe  SUBSCRIBE ─> pump until SUBACK (same for UNSUBSCRIBE)
 *   wait       pump until the extra fd is readable, a timeout, a signal, stop
 *
 * Sending hands the encoded packet to the transport and flushes it before
 * returning, polling while the socket is full for the events
 * moat_transport_want() names. A round of pump() does not poll while the
 * transport holds data it has already read (decrypted TLS records): it
 * reads them first. A transport's handshake completes before CONNECT is
 * written, so nothing is queued behind it.
 *
 * Outgoing QoS 1/2 state lives in out[packet id]:
 *
 *   QoS 1:  FREE ─PUBLISH─> PUBACK ─PUBACK─> FREE
 *   QoS 2:  FREE ─PUBLISH─> PUBREC ─PUBREC─> PUBCOMP ─PUBCOMP─> FREE
 *           (a PUBREC with a failure reason ends the flow: FREE, no PUBREL)
 *
 * Incoming QoS 2: a message is delivered when its PUBLISH first arrives and
 * in_q2[id] is set until PUBREL, so a redelivered PUBLISH is acknowledged
 * again but not delivered twice.
 *
 * A fault of the server (a packet that does not decode, a broken session
 * rule) is answered as the spec says (5.0: DISCONNECT with the reason) and
 * ends the connection; the failure is described in c->err.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll; the Makefile may define it already */
#endif
#include "cli/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cli/client_int.h"
#include "core/error.h"
#include "event/loop.h"
#include "mqtt/frame.h"

#define WRITE_STALL_MS 30000
#define NO_DEADLINE (-1)

/* What one pump() round ended with; negative values are errors. */
enum { PUMP_AGAIN, PUMP_FD, PUMP_TIMEOUT, PUMP_INTR };

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? NO_DEADLINE : now_ms() + timeout_ms;
}

int moat_client_fail(struct moat_client *c, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return code;
}

static bool v5(const struct moat_client *c)
{
	return c->version == MOAT_MQTT_V5;
}

void moat_client_close(struct moat_client *c)
{
	moat_transport_free(c->t);
	c->t = NULL;
}

void moat_client_set_id(struct moat_client *c, struct moat_slice id)
{
	char *s = malloc(id.len + 1);

	if (!s)
		return;
	memcpy(s, id.p ? (const void *)id.p : "", id.len);
	s[id.len] = '\0';
	free(c->id);
	c->id = s;
}

static void topics_free(struct moat_client_topic *t, size_t n)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < n; i++)
		free(t[i].p);
	free(t);
}

static bool topic_eq(const struct moat_client_topic *t, struct moat_slice s)
{
	return t->p && t->len == s.len && memcmp(t->p, s.p, s.len) == 0;
}

int moat_client_topic_set(struct moat_client_topic *t, struct moat_slice s)
{
	uint8_t *p = malloc(s.len ? s.len : 1);

	if (!p)
		return MOAT_ENOMEM;
	if (s.len)
		memcpy(p, s.p, s.len);
	free(t->p);
	t->p = p;
	t->len = s.len;
	return 0;
}

/* ---- lifetime ---- */

struct moat_client *moat_client_new(void)
{
	struct moat_client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->out = calloc(ID_SPACE, 1);
	c->in_q2 = calloc(ID_SPACE, 1);
	if (!c->out || !c->in_q2) {
		moat_client_free(c);
		return NULL;
	}
	moat_mqtt_framer_init(&c->framer, NULL, 0, 0);
	return c;
}

void moat_client_free(struct moat_client *c)
{
	if (!c)
		return;
	moat_client_close(c);
	moat_mqtt_framer_free(&c->framer);
	topics_free(c->in_alias, (size_t)c->in_alias_max + 1);
	topics_free(c->out_alias, (size_t)c->out_alias_max + 1);
	free(c->tx);
	free(c->out);
	free(c->in_q2);
	free(c->id);
	free(c);
}

uint8_t moat_client_connack_rc(const struct moat_client *c)
{
	return c->connack_rc;
}

uint8_t moat_client_version(const struct moat_client *c)
{
	return c->version;
}

uint16_t moat_client_last_id(const struct moat_client *c)
{
	return c->next_id;
}

const char *moat_client_error(const struct moat_client *c)
{
	return c->err[0] ? c->err : "no error";
}

unsigned moat_client_publish_failures(const struct moat_client *c)
{
	return c->pub_failures;
}

void moat_client_stop(struct moat_client *c)
{
	c->stop = true;
}

bool moat_client_stopped(const struct moat_client *c)
{
	return c->stop;
}

/* ---- the connection ---- */

/* Connects one address before deadline. Returns the fd, or -1 with errno set. */
static int try_address(const struct addrinfo *ai, int64_t deadline)
{
	int fd, one = 1, err = 0;
	socklen_t len = sizeof(err);
	struct pollfd pf;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	pf = (struct pollfd){fd, POLLOUT, 0};
	for (;;) {
		int64_t left = deadline == NO_DEADLINE ? -1 : deadline - now_ms();
		int r = poll(&pf, 1, left < 0 ? (deadline == NO_DEADLINE ? -1 : 0) : (int)left);

		if (r > 0)
			break;
		if (r == 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		if (errno != EINTR)
			goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		goto fail;
	if (err == 0)
		return fd;
	errno = err;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* Resolves and connects, trying each address in turn. Returns the fd, or MOAT_EIO. */
static int tcp_connect(struct moat_client *c, int64_t deadline)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL, *ai;
	int rc, fd = -1, err = ECONNREFUSED;

	rc = getaddrinfo(c->o->host, c->o->port, &hints, &res);
	if (rc != 0)
		return moat_client_fail(c, MOAT_EIO, "%s: %s", c->o->host, gai_strerror(rc));
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = try_address(ai, deadline);
		if (fd < 0)
			err = errno;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return moat_client_fail(c, MOAT_EIO, "%s", strerror(err));
	return fd;
}

/* Puts the transport opts.stream asks for (plain TCP by default) on fd, which it takes. */
static int open_transport(struct moat_client *c, int fd)
{
	const struct moat_client_stream *s = c->o->stream;
	char why[256] = "out of memory";

	if (s && s->wrap)
		c->t = s->wrap(s->ctx, fd, why, sizeof(why));
	else if (!(c->t = moat_tcp_new(fd)))
		close(fd);
	if (!c->t)
		return moat_client_fail(c, MOAT_EIO, "%s", why);
	return 0;
}

/*
 * The transport failed with rc (0: the server ended the stream) while doing
 * what: closes it and records why, in opts.stream's words when it has some
 * (a TLS alert, a refused certificate). Returns MOAT_ECLOSED, or MOAT_EIO
 * for an operating-system error other than the peer going away.
 */
static int lost(struct moat_client *c, ssize_t rc, const char *what)
{
	const struct moat_client_stream *s = c->o ? c->o->stream : NULL;
	int err = errno, code = MOAT_ECLOSED;
	char why[256] = "";

	if (s && s->explain)
		s->explain(s->ctx, c->t, (int)rc, c->got_connack, why, sizeof(why));
	if (!c->t->ops->ready(c->t))
		what = "the connection was lost during the handshake";
	moat_client_close(c);
	if (why[0])
		return moat_client_fail(c, code, "%s", why);
	if (rc == 0)
		return moat_client_fail(c, code, "%s", what);
	if (rc != MOAT_EIO)
		return moat_client_fail(c, code, "%s: %s", what, moat_strerror((int)rc));
	if (err != EPIPE && err != ECONNRESET)
		code = MOAT_EIO;
	return moat_client_fail(c, code, "%s: %s", what, strerror(err));
}

/* The poll(2) events of MOAT_EV_* bits. */
static short poll_events(unsigned ev)
{
	return (short)((ev & MOAT_EV_READ ? POLLIN : 0) | (ev & MOAT_EV_WRITE ? POLLOUT : 0));
}

/*
 * Waits, while writing, for what the transport needs to make progress: the
 * socket writable, or readable only when that is all it asks for (its write
 * waits for the peer). Transports ask for READ all the time, and data from
 * the server waits unread until the write is done, so polling for it would
 * spin. Returns 0 when it may progress, or closes after WRITE_STALL_MS.
 */
static int wait_io(struct moat_client *c)
{
	unsigned want = moat_transport_want(c->t, true);
	struct pollfd pf = {c->t->fd, poll_events(want & MOAT_EV_WRITE ? MOAT_EV_WRITE : want), 0};
	int r;

	do
		r = poll(&pf, 1, WRITE_STALL_MS);
	while (r < 0 && errno == EINTR);
	if (r > 0)
		return 0;
	if (r < 0)
		return lost(c, MOAT_EIO, "poll");
	moat_client_close(c);
	return moat_client_fail(c, MOAT_EIO, "the server has not read for %d s",
				WRITE_STALL_MS / 1000);
}

/*
 * Pushes out what the transport holds. Returns 1 when all is out, 0 when it
 * may take more after waiting, or an error (closed).
 */
static int push(struct moat_client *c)
{
	int rc = moat_transport_flush(c->t);

	if (rc == 0)
		return 1;
	if (rc != MOAT_EAGAIN)
		return lost(c, rc, "writing to the server");
	rc = wait_io(c);
	return rc < 0 ? rc : 0;
}

/*
 * Hands all of p[0..n) to the transport and flushes it. A transport that
 * takes no more (MOAT_EAGAIN) is flushed, which makes room, and waited for.
 * Returns 0, MOAT_EIO or MOAT_ECLOSED.
 */
static int write_all(struct moat_client *c, const uint8_t *p, size_t n)
{
	int rc = 0;

	while (n && rc >= 0) {
		struct iovec iov = {(void *)p, n};
		ssize_t w = moat_transport_writev(c->t, &iov, 1);

		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && w != MOAT_EAGAIN) {
			return lost(c, w, "writing to the server");
		} else {
			rc = push(c);
		}
	}
	while (rc >= 0 && (rc = push(c)) == 0)
		;
	return rc < 0 ? rc : 0;
}

/* ---- sending ---- */

int moat_client_send(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	size_t size, len;
	int rc;

	if (!c->t)
		return moat_client_fail(c, MOAT_ECLOSED, "not connected");
	if (moat_mqtt_encode_size(p, &size) < 0)
		return moat_client_fail(c, MOAT_EINVAL,
					"%s cannot be encoded (a field or property is too long "
					"or not allowed)",
					moat_mqtt_type_name(p->type));
	if (c->out_max_packet && size > c->out_max_packet)
		return moat_client_fail(c, MOAT_ETOOBIG,
					"%s of %zu bytes is over the server's Maximum Packet "
					"Size (%u)",
					moat_mqtt_type_name(p->type), size, c->out_max_packet);
	if (size > c->txcap) {
		uint8_t *nb = realloc(c->tx, size);
		if (!nb)
			return moat_client_fail(c, MOAT_ENOMEM, "out of memory");
		c->tx = nb;
		c->txcap = size;
	}
	rc = moat_mqtt_encode(p, c->tx, c->txcap, &len);
	if (rc < 0)
		return moat_client_fail(c, rc, "%s cannot be encoded",
					moat_mqtt_type_name(p->type));
	moat_client_debug_sent(c, p);
	rc = write_all(c, c->tx, len);
	if (rc == 0)
		c->last_tx = now_ms();
	return rc;
}

/* ---- the pump ---- */

/* Reads what is there and handles every complete packet. Returns 0 or an error. */
static int read_some(struct moat_client *c)
{
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault f;
	uint8_t *space;
	size_t room;
	ssize_t n;
	int rc;

	if (moat_mqtt_framer_space(&c->framer, &space, &room) < 0)
		return moat_client_fail(c, MOAT_ENOMEM, "out of memory");
	n = moat_transport_read(c->t, space, room);
	if (n == MOAT_EAGAIN)
		return 0;
	if (n <= 0)
		return lost(c, n, "the connection was lost");
	moat_mqtt_framer_commit(&c->framer, (size_t)n);
	while ((rc = moat_mqtt_framer_next(&c->framer, &fr, &f)) == 1) {
		rc = moat_client_handle(c, &fr);
		if (rc < 0)
			return rc;
		if (!c->t)
			return 0;
	}
	if (rc < 0)
		return moat_client_server_fault(c, f.code, f.reason, f.why);
	return 0;
}

/* Sends PINGREQ when due; fails when the PINGRESP is overdue. Returns 0 or an error. */
static int keepalive(struct moat_client *c)
{
	int64_t ka = (int64_t)c->keep_alive * 1000, now = now_ms();
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PINGREQ, .version = c->version};

	if (!ka || !c->got_connack || !c->t)
		return 0;
	if (c->ping_sent && now - c->ping_sent >= ka) {
		moat_client_close(c);
		return moat_client_fail(c, MOAT_ECLOSED, "the connection was lost (no PINGRESP)");
	}
	if (!c->ping_sent && now - c->last_tx >= ka) {
		int rc = moat_client_send(c, &p);
		if (rc == 0)
			c->ping_sent = now;
		return rc;
	}
	return 0;
}

/* Milliseconds poll may sleep: until the deadline or the next keep alive event. */
static int poll_wait(const struct moat_client *c, int64_t deadline)
{
	int64_t now = now_ms(), until = deadline;
	int64_t ka = (int64_t)c->keep_alive * 1000;

	if (ka && c->got_connack) {
		int64_t next = c->ping_sent ? c->ping_sent + ka : c->last_tx + ka;
		if (until == NO_DEADLINE || next < until)
			until = next;
	}
	if (until == NO_DEADLINE)
		return -1;
	if (until <= now)
		return 0;
	return until - now > 3600000 ? 3600000 : (int)(until - now);
}

static int do_poll(const struct moat_client *c, struct pollfd *pf, nfds_t n, int wait)
{
	struct timespec ts = {wait / 1000, (long)(wait % 1000) * 1000000};

	if (c->o->sigmask)
		return ppoll(pf, n, wait < 0 ? NULL : &ts, c->o->sigmask);
	return poll(pf, n, wait);
}

/*
 * Lets the transport progress after poll reported revents on its socket (or
 * it holds data already decrypted): output it holds is flushed when
 * writable, then it is read, as a read may be what waited for the socket to
 * be writable (TLS). Returns 0 or an error.
 */
static int service(struct moat_client *c, short revents, bool buffered)
{
	if (revents & POLLOUT) {
		int rc = moat_transport_flush(c->t);
		if (rc < 0 && rc != MOAT_EAGAIN)
			return lost(c, rc, "writing to the server");
	}
	if (!revents && !buffered)
		return 0;
	return read_some(c);
}

/*
 * One round: poll for what the transport wants (not at all while it holds
 * buffered data), read and handle, keep alive. Returns PUMP_* or an error.
 */
static int pump(struct moat_client *c, int fd, int64_t deadline)
{
	struct pollfd pf[2] = {{-1, 0, 0}, {fd, POLLIN, 0}};
	bool buffered;
	int r, rc;

	if (!c->t)
		return c->err[0] ? MOAT_ECLOSED
				 : moat_client_fail(c, MOAT_ECLOSED, "not connected");
	pf[0] = (struct pollfd){c->t->fd, poll_events(moat_transport_want(c->t, false)), 0};
	buffered = c->t->ops->has_buffered(c->t);
	r = do_poll(c, pf, fd >= 0 ? 2 : 1, buffered ? 0 : poll_wait(c, deadline));
	if (r < 0 && errno == EINTR)
		return PUMP_INTR;
	if (r < 0)
		return moat_client_fail(c, MOAT_EIO, "poll: %s", strerror(errno));
	rc = service(c, pf[0].revents, buffered);
	if (rc == 0)
		rc = keepalive(c);
	if (rc < 0)
		return rc;
	if (!c->t)
		return MOAT_ECLOSED;
	if (fd >= 0 && pf[1].revents)
		return PUMP_FD;
	if (deadline != NO_DEADLINE && now_ms() >= deadline)
		return PUMP_TIMEOUT;
	return PUMP_AGAIN;
}

/* Pumps until *done. Returns 0, MOAT_EAGAIN (timeout or signal) or an error. */
static int pump_until(struct moat_client *c, const bool *done, int64_t deadline)
{
	while (!*done) {
		int rc = pump(c, -1, deadline);

		if (rc < 0)
			return rc;
		if (rc == PUMP_TIMEOUT || rc == PUMP_INTR)
			return moat_client_fail(c, MOAT_EAGAIN,
						rc == PUMP_INTR ? "interrupted" : "timed out");
	}
	return 0;
}

int moat_client_wait(struct moat_client *c, int fd, int timeout_ms)
{
	int64_t deadline = deadline_of(timeout_ms);

	while (!c->stop) {
		int rc = pump(c, fd, deadline);

		if (rc < 0)
			return rc;
		if (rc == PUMP_FD)
			return 1;
		if (rc != PUMP_AGAIN)
			return 0;
	}
	return 0;
}

/* ---- connect ---- */

/* Takes our own limits from the CONNECT properties. Returns 0 or MOAT_ENOMEM. */
static int own_limits(struct moat_client *c, const struct moat_mqtt_props *pr)
{
	c->recv_max = 65535;
	if (!pr || !v5(c))
		return 0;
	if (moat_mqtt_props_has(pr, MOAT_PROP_RECEIVE_MAXIMUM))
		c->recv_max = pr->receive_maximum;
	if (moat_mqtt_props_has(pr, MOAT_PROP_MAXIMUM_PACKET_SIZE))
		moat_mqtt_framer_set_max(&c->framer, pr->maximum_packet_size);
	if (moat_mqtt_props_has(pr, MOAT_PROP_TOPIC_ALIAS_MAXIMUM) && pr->topic_alias_maximum) {
		c->in_alias = calloc((size_t)pr->topic_alias_maximum + 1, sizeof(*c->in_alias));
		if (!c->in_alias)
			return moat_client_fail(c, MOAT_ENOMEM, "out of memory");
		c->in_alias_max = pr->topic_alias_maximum;
	}
	return 0;
}

static int send_connect(struct moat_client *c, const struct moat_client_opts *o)
{
	static const struct moat_mqtt_props none;
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNECT, .version = o->version};
	struct moat_mqtt_connect *k = &p.connect;

	k->version = o->version;
	k->clean_start = o->clean_start;
	k->keep_alive = o->keep_alive;
	k->client_id = o->client_id;
	k->has_username = o->username != NULL;
	if (o->username)
		k->username =
			(struct moat_slice){(const uint8_t *)o->username, strlen(o->username)};
	k->has_password = o->password != NULL;
	if (o->password)
		k->password =
			(struct moat_slice){(const uint8_t *)o->password, strlen(o->password)};
	k->will = o->will;
	if (o->will) {
		k->will_topic = o->will_topic;
		k->will_payload = o->will_payload;
		k->will_qos = o->will_qos;
		k->will_retain = o->will_retain;
		k->will_props = o->will_props ? *o->will_props : none;
	}
	k->props = o->props ? *o->props : none;
	return moat_client_send(c, &p);
}

/*
 * Drives the transport's handshake (TLS, WebSocket upgrade) to its end
 * before anything is written, so that waiting for the server's half polls
 * only for what the transport wants. Returns 0, MOAT_EAGAIN (timeout or
 * signal) or a connection error.
 */
static int handshake(struct moat_client *c, int64_t deadline)
{
	while (c->t && !c->t->ops->ready(c->t)) {
		int rc = moat_transport_flush(c->t);

		if (rc < 0 && rc != MOAT_EAGAIN)
			return lost(c, rc, "the connection was lost");
		if (c->t->ops->ready(c->t))
			break;
		rc = pump(c, -1, deadline);
		if (rc < 0)
			return rc;
		if (rc == PUMP_TIMEOUT || rc == PUMP_INTR)
			return moat_client_fail(c, MOAT_EAGAIN, "the handshake %s",
						rc == PUMP_INTR ? "was interrupted" : "timed out");
	}
	return c->t ? 0 : MOAT_ECLOSED;
}

/* True for a plain TCP stream, with no handshake, whose end is shutdown(). */
static bool plain(const struct moat_client *c)
{
	return strcmp(c->t->ops->name, "tcp") == 0;
}

/*
 * Reads, without waiting, what the server sent at the end of the handshake.
 * A TLS 1.3 server refuses a client certificate after the client has
 * finished, with an alert and a close: read now, the alert tells why; read
 * after writing CONNECT into the closed connection, it is lost to the reset.
 * Returns 0 or the connection's error.
 */
static int settle(struct moat_client *c)
{
	int rc = pump(c, -1, now_ms());

	return rc < 0 ? rc : 0;
}

/* Connects the stream: opts.stream's layers, each one's handshake done. */
static int open_stream(struct moat_client *c, int64_t deadline)
{
	const struct moat_client_stream *s = c->o->stream;
	char why[256] = "out of memory";
	int rc = tcp_connect(c, deadline);

	if (rc >= 0)
		rc = open_transport(c, rc);
	if (rc == 0)
		rc = handshake(c, deadline);
	if (rc == 0 && s && s->upgrade) {
		c->t = s->upgrade(s->ctx, c->t, why, sizeof(why));
		rc = c->t ? handshake(c, deadline) : moat_client_fail(c, MOAT_EIO, "%s", why);
	}
	if (rc == 0 && !plain(c))
		rc = settle(c);
	return rc;
}

/* Sends CONNECT and waits for the CONNACK. Returns as moat_client_connect. */
static int exchange_connect(struct moat_client *c, int64_t deadline)
{
	int rc = send_connect(c, c->o);

	if (rc == 0)
		rc = pump_until(c, &c->got_connack, deadline);
	if (rc == MOAT_EAGAIN && c->t) {
		char why[sizeof(c->err)];
		memcpy(why, c->err, sizeof(why));
		moat_client_fail(c, rc, "no CONNACK from the server (%s)", why);
	}
	return rc;
}

int moat_client_connect(struct moat_client *c, const struct moat_client_opts *o)
{
	int64_t deadline = deadline_of(o->timeout_ms);
	int rc;

	c->o = o;
	c->version = o->version;
	c->keep_alive = o->keep_alive;
	c->send_max = 65535;
	c->max_qos = 2;
	c->retain_ok = true;
	c->err[0] = '\0';
	moat_client_set_id(c, o->client_id);
	rc = own_limits(c, o->props);
	if (rc == 0)
		rc = open_stream(c, deadline);
	if (rc == 0)
		rc = exchange_connect(c, deadline);
	if (rc < 0)
		moat_client_close(c);
	return rc;
}

/* ---- publish ---- */

/* Returns a free packet identifier (1..65535), or 0 if all are in use. */
static uint16_t new_id(struct moat_client *c)
{
	unsigned i;

	for (i = 0; i < 65535; i++) {
		c->next_id = (uint16_t)(c->next_id % 65535 + 1);
		if (c->out[c->next_id] == OUT_FREE)
			return c->next_id;
	}
	return 0;
}

/* Checks p against the server's CONNACK. Returns 0 or MOAT_EINVAL. */
static int publish_allowed(struct moat_client *c, const struct moat_client_pub *p)
{
	const struct moat_mqtt_props *pr = p->props;

	if (p->qos > c->max_qos)
		return moat_client_fail(c, MOAT_EINVAL,
					"QoS %u is above the server's Maximum QoS (%u)", p->qos,
					c->max_qos);
	if (p->retain && !c->retain_ok)
		return moat_client_fail(c, MOAT_EINVAL,
					"the server does not support retained messages");
	if (v5(c) && pr && moat_mqtt_props_has(pr, MOAT_PROP_TOPIC_ALIAS) &&
	    (pr->topic_alias == 0 || pr->topic_alias > c->out_alias_max))
		return moat_client_fail(c, MOAT_EINVAL,
					"Topic Alias %u is above the server's Topic Alias "
					"Maximum (%u)",
					pr->topic_alias, c->out_alias_max);
	return 0;
}

/*
 * Fills the topic of m: empty when p's Topic Alias already maps to this
 * topic, else the topic, recording the mapping. Returns 0 or MOAT_ENOMEM.
 */
static int outgoing_alias(struct moat_client *c, const struct moat_client_pub *p,
			  struct moat_mqtt_publish *m)
{
	struct moat_client_topic *b;

	m->topic = p->topic;
	if (!v5(c) || !p->props || !moat_mqtt_props_has(p->props, MOAT_PROP_TOPIC_ALIAS))
		return 0;
	b = &c->out_alias[p->props->topic_alias];
	if (topic_eq(b, p->topic)) {
		m->topic = (struct moat_slice){NULL, 0};
		return 0;
	}
	if (moat_client_topic_set(b, p->topic) < 0)
		return moat_client_fail(c, MOAT_ENOMEM, "out of memory");
	return 0;
}

int moat_client_publish(struct moat_client *c, const struct moat_client_pub *p, int timeout_ms)
{
	static const struct moat_mqtt_props none;
	int64_t deadline = deadline_of(timeout_ms);
	struct moat_mqtt_packet pkt = {.type = MOAT_MQTT_PUBLISH, .version = c->version};
	struct moat_mqtt_publish *m = &pkt.publish;
	uint16_t id = 0;
	int rc = publish_allowed(c, p);

	while (rc == 0 && p->qos && c->inflight >= c->send_max) {
		rc = pump(c, -1, deadline);
		if (rc == PUMP_TIMEOUT || rc == PUMP_INTR)
			rc = moat_client_fail(c, MOAT_EAGAIN,
					      "no room under the server's Receive Maximum");
		else if (rc > 0)
			rc = 0;
	}
	if (rc == 0 && p->qos && (id = new_id(c)) == 0)
		rc = moat_client_fail(c, MOAT_EAGAIN, "no packet identifier free");
	if (rc == 0)
		rc = outgoing_alias(c, p, m);
	if (rc < 0)
		return rc;
	m->qos = p->qos;
	m->retain = p->retain;
	m->packet_id = id;
	m->payload = p->payload;
	m->props = p->props ? *p->props : none;
	rc = moat_client_send(c, &pkt);
	if (rc == 0 && p->qos) {
		c->out[id] = p->qos == 1 ? OUT_PUBACK : OUT_PUBREC;
		c->inflight++;
	}
	return rc;
}

int moat_client_flush(struct moat_client *c, int timeout_ms)
{
	int64_t deadline = deadline_of(timeout_ms);

	while (c->inflight || c->in_pending) {
		int rc = pump(c, -1, deadline);

		if (rc < 0)
			return rc;
		if (rc == PUMP_TIMEOUT || rc == PUMP_INTR)
			return moat_client_fail(c, MOAT_EAGAIN, "%u publishes still unacknowledged",
						c->inflight + c->in_pending);
	}
	return 0;
}

/* ---- subscribe, unsubscribe ---- */

/* Sends p (SUBSCRIBE or UNSUBSCRIBE, entries built) and waits for its ack. */
static int exchange(struct moat_client *c, struct moat_mqtt_packet *p, size_t n, uint8_t *reasons,
		    int timeout_ms)
{
	uint16_t id = new_id(c);
	int rc;

	if (id == 0)
		return moat_client_fail(c, MOAT_EAGAIN, "no packet identifier free");
	p->subscribe.packet_id = id;
	memset(reasons, 0, n);
	rc = moat_client_send(c, p);
	if (rc < 0)
		return rc;
	c->out[id] = p->type == MOAT_MQTT_SUBSCRIBE ? OUT_SUBACK : OUT_UNSUBACK;
	c->ack_id = id;
	c->ack_reasons = reasons;
	c->ack_n = n;
	c->ack_rc = 0;
	c->ack_done = false;
	rc = pump_until(c, &c->ack_done, deadline_of(timeout_ms));
	c->ack_reasons = NULL;
	return rc < 0 ? rc : c->ack_rc;
}

/* Builds the wire-format entries of n filters (options NULL: UNSUBSCRIBE). */
static int build_entries(struct moat_client *c, const struct moat_slice *filters,
			 const uint8_t *options, size_t n, uint8_t **buf, size_t *len)
{
	size_t cap = 0, i;
	uint8_t *b;
	int rc = 0;

	for (i = 0; i < n; i++)
		cap += 3 + filters[i].len;
	b = malloc(cap ? cap : 1);
	if (!b)
		return moat_client_fail(c, MOAT_ENOMEM, "out of memory");
	*len = 0;
	for (i = 0; i < n && rc == 0; i++)
		rc = options ? moat_mqtt_sub_put(b, cap, len, filters[i], options[i])
			     : moat_mqtt_unsub_put(b, cap, len, filters[i]);
	if (rc < 0) {
		free(b);
		return moat_client_fail(c, MOAT_EINVAL, "topic filter too long");
	}
	*buf = b;
	return 0;
}

static int sub_or_unsub(struct moat_client *c, uint8_t type, const struct moat_slice *filters,
			const uint8_t *options, size_t n, const struct moat_mqtt_props *props,
			uint8_t *reasons, int timeout_ms)
{
	struct moat_mqtt_packet p = {.type = type, .version = c->version};
	uint8_t *entries = NULL;
	size_t len = 0;
	int rc;

	if (n == 0)
		return moat_client_fail(c, MOAT_EINVAL, "no topic filters");
	rc = build_entries(c, filters, options, n, &entries, &len);
	if (rc < 0)
		return rc;
	p.subscribe.count = (uint32_t)n;
	p.subscribe.entries = (struct moat_slice){entries, len};
	if (props)
		p.subscribe.props = *props;
	rc = exchange(c, &p, n, reasons, timeout_ms);
	free(entries);
	return rc;
}

int moat_client_subscribe(struct moat_client *c, const struct moat_slice *filters,
			  const uint8_t *options, size_t n, const struct moat_mqtt_props *props,
			  uint8_t *reasons, int timeout_ms)
{
	return sub_or_unsub(c, MOAT_MQTT_SUBSCRIBE, filters, options, n, props, reasons,
			    timeout_ms);
}

int moat_client_unsubscribe(struct moat_client *c, const struct moat_slice *filters, size_t n,
			    const struct moat_mqtt_props *props, uint8_t *reasons, int timeout_ms)
{
	return sub_or_unsub(c, MOAT_MQTT_UNSUBSCRIBE, filters, NULL, n, props, reasons, timeout_ms);
}

/* ---- disconnect ---- */

/*
 * Reads and discards until the server closes or the deadline passes, so
 * that closing with unread bytes (which sends RST) cannot discard the
 * DISCONNECT just written.
 */
static void drain(struct moat_client *c, int64_t deadline)
{
	uint8_t buf[4096];
	int64_t left;

	while ((left = deadline - now_ms()) > 0) {
		ssize_t n = moat_transport_read(c->t, buf, sizeof(buf));
		struct pollfd pf = {c->t->fd, poll_events(moat_transport_want(c->t, false)), 0};

		if (n > 0)
			continue;
		if (n != MOAT_EAGAIN || poll(&pf, 1, (int)left) <= 0)
			break;
	}
}

int moat_client_disconnect(struct moat_client *c, uint8_t reason,
			   const struct moat_mqtt_props *props, int timeout_ms)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_DISCONNECT, .version = c->version};
	int rc;

	if (!c->t)
		return moat_client_fail(c, MOAT_ECLOSED, "not connected");
	p.disconnect.reason = reason;
	if (props && v5(c))
		p.disconnect.props = *props;
	rc = moat_client_send(c, &p);
	if (rc == MOAT_EINVAL)
		return rc;
	if (rc == 0) {
		if (plain(c))
			shutdown(c->t->fd, SHUT_WR);
		drain(c, now_ms() + (timeout_ms < 0 ? 0 : timeout_ms));
	}
	moat_client_close(c);
	return rc;
}
