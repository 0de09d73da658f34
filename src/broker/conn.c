/*
 * conn.c - a client connection: reading and framing, the output queue, the
 * hand-written PUBLISH encoder of the delivery hot path, closing.
 *
 * Output is a list of segments: header bytes in one growing buffer, each
 * optionally followed by the payload of a shared message (held by
 * reference). Small payloads are copied next to their header instead, which
 * is cheaper than an extra iovec. Everything queued in a loop turn goes out
 * in writev() calls from the worker's before-sleep hook, so a connection
 * costs one system call per turn however many packets it was sent.
 *
 * A connection is never freed inside one of its own callbacks: conn_close()
 * marks it and moves it to the worker's closing list, and the before-sleep
 * hook flushes what it can and frees it (deferred close).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/internal.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "core/vec.h"
#include "net/listen.h"
#include "net/transport.h"

#define INLINE_PAYLOAD 256          /* payloads up to this are copied, not referenced */
#define CONGESTED_BYTES (4u << 20)  /* queued output that stops QoS 0 sends and reading */
#define READ_ROUNDS 4               /* reads per readiness event, for fairness */

static void on_io(struct moat_loop *loop, struct moat_io *io, unsigned events);

/* ---- logging helpers ---- */

static const char *cid(const struct moat_conn *c, char *buf, unsigned cap)
{
	if (!c->session)
		return strcpy(buf, "-");
	return moat_log_quote(buf, cap, c->session->client_id, (unsigned)c->session->client_id_len);
}

/* ---- life ---- */

struct moat_conn *conn_new(struct moat_worker *w, struct moat_transport *tr,
			   struct moat_listener *l, const struct sockaddr_storage *sa)
{
	struct moat_conn *c = calloc(1, sizeof(*c));
	int one = 1, fd = tr->fd;

	if (!c)
		return NULL;
	c->tr = tr;
	c->io.fd = fd;
	c->io.cb = on_io;
	c->listener = l;
	c->state = C_NEW;
	moat_sockaddr_format(sa, c->addr, sizeof(c->addr));
	moat_sockaddr_host(sa, c->host, sizeof(c->host));
	moat_map_init(&c->topics, NULL);
	moat_mqtt_framer_init(&c->in, &w->b->conn_mem, 0, w->b->conf->preauth_max_packet_size);
	moat_map_init(&c->alias_out, NULL);
	c->connected_at = worker_now(w);
	c->connected_wall = moat_wall_s();
	c->last_rx = c->connected_at;
	c->deadline = c->connected_at + (int64_t)w->b->conf->connect_timeout * 1000;
	c->client_max_packet = MOAT_MQTT_MAX_PACKET;
	if (l->conf->mount_point) {
		c->mount = l->conf->mount_point;
		c->mount_len = (uint16_t)strlen(c->mount);
	}
	c->client_receive_max = 65535;
	if (w->b->conf->set_tcp_nodelay)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn_attach(w, c);
	return c;
}

/* Puts c on worker w's list and loop. */
void conn_attach(struct moat_worker *w, struct moat_conn *c)
{
	c->w = w;
	c->prev = NULL;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	if (moat_loop_add(w->loop, &c->io, MOAT_EV_READ) < 0)
		conn_close(c, "cannot watch socket");
}

static void unlink_conn(struct moat_conn *c)
{
	struct moat_worker *w = c->w;

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	c->prev = c->next = NULL;
}

/* Takes c off its worker (for handing it to another); its output must be empty. */
/* Takes c off its worker's unread list (it is freed, or moves to another worker). */
static void forget_unread(struct moat_conn *c)
{
	struct moat_worker *w = c->w;

	if (!c->unread || !w)
		return;
	for (size_t k = 0; k < w->nunread; k++)
		if (w->unread[k] == c)
			w->unread[k] = w->unread[--w->nunread];
	c->unread = false;
}

void conn_detach(struct moat_conn *c)
{
	forget_unread(c);
	moat_loop_del(c->w->loop, &c->io);
	unlink_conn(c);
	c->w = NULL;
}

static void out_free(struct out *o)
{
	size_t i;

	for (i = o->first; i < o->nseg; i++)
		moat_msg_unref(o->seg[i].msg);
	free(o->buf);
	free(o->seg);
	memset(o, 0, sizeof(*o));
}

static void free_aliases(struct moat_conn *c)
{
	size_t pos = 0;
	void *v;

	if (c->alias_in) {
		for (unsigned i = 0; i <= c->w->b->conf->max_topic_alias; i++)
			free(c->alias_in[i].p);
		free(c->alias_in);
	}
	while ((v = moat_map_next(&c->alias_out, &pos, NULL, NULL)))
		free(v);
	moat_map_free(&c->alias_out);
}

/* Called before sleeping for each closed connection: last flush, then free. */
void conn_free(struct moat_conn *c)
{
	char junk[4096];
	int fd = c->io.fd;

	conn_flush(c);
	forget_unread(c);
	/* Read what the peer sent after our last packet, so close() sends FIN, not RST. */
	for (int i = 0; i < 16 && read(fd, junk, sizeof(junk)) > 0; i++)
		;
	shutdown(fd, SHUT_WR);
	moat_transport_free(c->tr); /* closes fd */
	guard_release(c->w->b, c);
	moat_mqtt_framer_free(&c->in);
	out_free(&c->out);
	free_aliases(c);
	moat_msg_unref(c->will);
	auth_conn_free(c);
	free(c->username);
	free(c->pending);
	free(c);
}

/* Detaches the session from a closing connection and deals with the will. */
static void leave_session(struct moat_conn *c)
{
	struct moat_session *s = c->session;
	int64_t now = worker_now(c->w);
	bool ends;

	s->conn = NULL;
	atomic_store(&s->online, false);
	inventory_disconnected(c->w->b, s->client_id, s->client_id_len);
	ends = s->expiry == 0;
	if (!ends && s->expiry != SESSION_NEVER_EXPIRES)
		s->expires_at = now + (int64_t)s->expiry * 1000;
	if (c->will && !c->graceful) {
		if (c->will_delay == 0 || ends) {
			publish_will(c->w, c->will);
		} else {
			moat_msg_unref(s->will);
			s->will = moat_msg_ref(c->will);
			s->will_at = now + (int64_t)c->will_delay * 1000;
			if (s->expiry != SESSION_NEVER_EXPIRES && s->expires_at < s->will_at)
				s->will_at = s->expires_at;
		}
	}
	if (ends) {
		session_end(s);
	} else {
		persist_session(s); /* offline since now: its expiry counts from here */
		if (s->will)
			persist_will(s);
	}
	session_unref(s);
	c->session = NULL;
}

void conn_close(struct moat_conn *c, const char *why)
{
	struct moat_worker *w = c->w;
	char id[160];

	if (c->state == C_CLOSING)
		return;
	if (c->state == C_ACTIVE) {
		moat_log(MOAT_LOG_LVL_NOTICE, "disconnect client_id=%s addr=%s reason=\"%s\"",
			 cid(c, id, sizeof(id)), c->addr, why);
		if (!c->graceful && !c->close_kind)
			guard_event(c, MOAT_SEC_ABNORMAL_CLOSE, why);
		STAT_ADD(&w->stats, disconnects, 1);
		STAT_ADD(&w->stats, clients_connected, -1);
		leave_session(c);
	} else if (c->has_pending) {
		/* Handed over but never handled (shutdown): nothing else to undo. */
	}
	atomic_fetch_sub(&c->listener->connections, 1);
	c->state = C_CLOSING;
	c->close_why = why;
	moat_loop_del(w->loop, &c->io);
	unlink_conn(c);
	c->next = w->closing;
	w->closing = c;
}

/* ---- output queue ---- */

/* Returns room for n header bytes at the end of the buffer, or NULL. */
static uint8_t *out_reserve(struct out *o, size_t n)
{
	if (o->len + n > o->cap) {
		size_t ncap = o->cap ? o->cap : 256;
		uint8_t *nb;
		while (ncap < o->len + n)
			ncap *= 2;
		nb = realloc(o->buf, ncap);
		if (!nb)
			return NULL;
		o->buf = nb;
		o->cap = ncap;
	}
	return o->buf + o->len;
}

/* Appends a segment of the n bytes just written at out_reserve(), plus msg's payload. */
static int out_commit(struct out *o, size_t n, struct moat_msg *msg)
{
	if (!moat_grow((void **)&o->seg, &o->segcap, o->nseg + 1, sizeof(*o->seg)))
		return MOAT_ENOMEM;
	/* Merge with the previous header-only segment when contiguous. */
	if (!msg && o->nseg > o->first && !o->seg[o->nseg - 1].msg &&
	    o->seg[o->nseg - 1].off + o->seg[o->nseg - 1].len == o->len) {
		o->seg[o->nseg - 1].len += n;
	} else {
		o->seg[o->nseg++] = (struct out_seg){o->len, n, msg ? moat_msg_ref(msg) : NULL};
	}
	o->len += n;
	o->pending += n + (msg ? msg->payload_len : 0);
	return 0;
}

void conn_mark_dirty(struct moat_conn *c)
{
	struct moat_worker *w = c->w;

	if (c->dirty)
		return;
	if (!moat_grow((void **)&w->dirty, &w->dirtycap, w->ndirty + 1, sizeof(*w->dirty)))
		return; /* flushed when it becomes writable or at close */
	w->dirty[w->ndirty++] = c;
	c->dirty = true;
}

bool conn_congested(const struct moat_conn *c)
{
	return c->out.pending > CONGESTED_BYTES;
}

int conn_send(struct moat_conn *c, const struct moat_mqtt_packet *p)
{
	size_t size, len;
	uint8_t *dst;

	if (c->state == C_CLOSING || moat_mqtt_encode_size(p, &size) < 0)
		return MOAT_EINVAL;
	if (size > c->client_max_packet)
		return MOAT_ETOOBIG;
	if (!(dst = out_reserve(&c->out, size)))
		return MOAT_ENOMEM;
	moat_mqtt_encode(p, dst, size, &len);
	if (out_commit(&c->out, len, NULL) < 0)
		return MOAT_ENOMEM;
	STAT_ADD(&c->w->stats, msgs_sent, 1);
	conn_mark_dirty(c);
	return 0;
}

void conn_send_ack(struct moat_conn *c, uint8_t type, uint16_t id, uint8_t reason)
{
	struct moat_mqtt_packet p = {.type = type, .version = c->version};

	p.ack.packet_id = id;
	p.ack.reason = c->version == MOAT_MQTT_V5 ? reason : 0;
	conn_send(c, &p);
}

/* ---- the PUBLISH encoder of the hot path ---- */

static size_t vsize(uint32_t v)
{
	return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

static uint8_t *put_vint(uint8_t *p, uint32_t v)
{
	do {
		uint8_t b = v & 0x7F;
		v >>= 7;
		*p++ = (uint8_t)(v ? b | 0x80 : b);
	} while (v);
	return p;
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

/*
 * The outgoing Topic Alias for topic t: the one the client already knows
 * (*known set: the topic can then be left empty), else the next free one, or
 * 0 when none is free. A new alias is only promised here; alias_commit
 * records it once the packet is really queued.
 */
static uint16_t alias_for(struct moat_conn *c, const uint8_t *t, size_t n, bool *known)
{
	uint16_t *a = moat_map_get(&c->alias_out, t, n);

	*known = a != NULL;
	if (a)
		return *a;
	return c->alias_out_next < c->client_alias_max ? c->alias_out_next + 1 : 0;
}

static void alias_commit(struct moat_conn *c, const uint8_t *t, size_t n, uint16_t alias)
{
	uint8_t *entry = malloc(sizeof(uint16_t) + n);

	if (!entry)
		return;
	memcpy(entry, &alias, sizeof(alias));
	memcpy(entry + sizeof(uint16_t), t, n);
	if (moat_map_put(&c->alias_out, entry + sizeof(uint16_t), n, entry) < 0) {
		free(entry);
		return;
	}
	c->alias_out_next = alias;
}

int conn_send_publish(struct moat_conn *c, struct moat_msg *msg, uint8_t qos, bool retain,
		      bool dup, uint16_t packet_id, const uint32_t *subids, uint16_t nsubids)
{
	bool v5 = c->version == MOAT_MQTT_V5, known = false, inline_payload;
	/* Topics reach a mounted client without the mount point (mount.c). */
	const uint8_t *topic = moat_msg_topic(msg) + c->mount_len;
	size_t tlen = msg->topic_len - c->mount_len, props = 0, rl, hdr, total, i;
	uint16_t alias = 0;
	uint32_t expiry = 0;
	uint8_t *p;

	if (c->state == C_CLOSING)
		return MOAT_ECLOSED;
	/* Every delivery is checked: a right taken away stops what was subscribed before. */
	if (!acl_allows(c, moat_msg_topic(msg), msg->topic_len, MOAT_ACL_READ) ||
	    blocks_hit(c->w->b->blocks, moat_msg_topic(msg), msg->topic_len)) { /* block.c */
		STAT_DROP(&c->w->stats, DROP_NOT_AUTHORIZED);
		return MOAT_EDENIED;
	}
	if (v5) {
		if (c->client_alias_max && (alias = alias_for(c, topic, tlen, &known)) && known)
			tlen = 0;
		props = msg->props_len + (alias ? 3 : 0);
		if (msg->has_expiry) {
			expiry = moat_msg_expiry_left(msg, worker_now(c->w));
			props += 5;
		}
		for (i = 0; i < nsubids; i++)
			props += 1 + vsize(subids[i]);
	}
	rl = 2 + tlen + (qos ? 2 : 0) + (v5 ? vsize((uint32_t)props) + props : 0) + msg->payload_len;
	total = 1 + vsize((uint32_t)rl) + rl;
	if (total > c->client_max_packet) {
		/* [MQTT-3.1.2-25]: discard it as if it had been sent. */
		STAT_DROP(&c->w->stats, DROP_CLIENT_MAX_PACKET);
		return MOAT_ETOOBIG;
	}
	inline_payload = msg->payload_len <= INLINE_PAYLOAD;
	hdr = total - (inline_payload ? 0 : msg->payload_len);
	if (!(p = out_reserve(&c->out, hdr)))
		return MOAT_ENOMEM;
	*p++ = (uint8_t)(0x30 | (dup ? 0x08 : 0) | qos << 1 | (retain ? 1 : 0));
	p = put_vint(p, (uint32_t)rl);
	p = put16(p, (uint16_t)tlen);
	memcpy(p, topic, tlen);
	p += tlen;
	if (qos)
		p = put16(p, packet_id);
	if (v5) {
		p = put_vint(p, (uint32_t)props);
		if (msg->has_expiry) {
			*p++ = MOAT_PROP_MESSAGE_EXPIRY_INTERVAL;
			p[0] = (uint8_t)(expiry >> 24);
			p[1] = (uint8_t)(expiry >> 16);
			p[2] = (uint8_t)(expiry >> 8);
			p[3] = (uint8_t)expiry;
			p += 4;
		}
		if (alias) {
			*p++ = MOAT_PROP_TOPIC_ALIAS;
			p = put16(p, alias);
		}
		for (i = 0; i < nsubids; i++) {
			*p++ = MOAT_PROP_SUBSCRIPTION_IDENTIFIER;
			p = put_vint(p, subids[i]);
		}
		memcpy(p, moat_msg_props(msg), msg->props_len);
		p += msg->props_len;
	}
	if (inline_payload && msg->payload_len) {
		memcpy(p, moat_msg_payload(msg), msg->payload_len);
		p += msg->payload_len;
	}
	if (out_commit(&c->out, hdr, inline_payload ? NULL : msg) < 0)
		return MOAT_ENOMEM;
	if (alias && !known)
		alias_commit(c, topic, tlen, alias);
	STAT_ADD(&c->w->stats, msgs_sent, 1);
	STAT_ADD(&c->w->stats, pub_sent, 1);
	STAT_ADD(&c->w->stats, pub_sent_qos[qos & 3], 1);
	c->pub_out++;
	conn_mark_dirty(c);
	return 0;
}

/* ---- writing ---- */

/* Fills iov from the pending segments; returns the count. */
static int fill_iov(const struct out *o, struct iovec *iov, int max)
{
	size_t i, skip = o->first_done;
	int n = 0;

	for (i = o->first; i < o->nseg && n + 2 <= max; i++) {
		const struct out_seg *s = &o->seg[i];
		if (skip < s->len) {
			iov[n].iov_base = o->buf + s->off + skip;
			iov[n++].iov_len = s->len - skip;
			skip = 0;
		} else {
			skip -= s->len;
		}
		if (s->msg && s->msg->payload_len) {
			iov[n].iov_base = (void *)(moat_msg_payload(s->msg) + skip);
			iov[n++].iov_len = s->msg->payload_len - skip;
		}
		skip = 0;
	}
	return n;
}

/* Marks n more bytes written, releasing the segments that are done. */
static void advance(struct out *o, size_t n)
{
	o->pending -= n;
	n += o->first_done;
	while (o->first < o->nseg) {
		struct out_seg *s = &o->seg[o->first];
		size_t len = s->len + (s->msg ? s->msg->payload_len : 0);
		if (n < len)
			break;
		n -= len;
		moat_msg_unref(s->msg);
		o->first++;
	}
	o->first_done = n;
	if (o->first == o->nseg) {
		o->first = o->nseg = o->len = 0;
		o->first_done = 0;
	}
}

/* Watches what the transport needs; no reading while the output is congested. */
/*
 * Input a transport already took off the socket (decrypted TLS records,
 * WebSocket frames) raises no epoll event: when reading stops with some of it
 * left (the read rounds ran out, output piled up, a rate pause), the
 * connection goes on the worker's unread list, read again before the loop
 * sleeps, and the loop does not sleep while the list has any. Otherwise the
 * last messages of a publisher that then goes quiet would wait forever.
 */
static void want_unread(struct moat_conn *c)
{
	struct moat_worker *w = c->w;

	if (c->unread)
		return;
	if (!moat_grow((void **)&w->unread, &w->unreadcap, w->nunread + 1, sizeof(*w->unread)))
		return; /* read at its next event */
	w->unread[w->nunread++] = c;
	c->unread = true;
}

static void update_events(struct moat_conn *c)
{
	unsigned ev = moat_transport_want(c->tr, c->out.pending > 0);

	/* No reading while output piles up, a check holds the CONNECT, or it is rate limited. */
	if (conn_congested(c) || c->auth_wait || c->ocsp_wait || c->paused_until)
		ev &= ~(unsigned)MOAT_EV_READ;
	moat_loop_mod(c->w->loop, &c->io, ev);
	if ((ev & MOAT_EV_READ) && c->tr->ops->has_buffered(c->tr))
		want_unread(c);
}

static void read_some(struct moat_conn *c);

void conn_read_unread(struct moat_worker *w)
{
	while (w->nunread) {
		struct moat_conn **list = w->unread;
		size_t n = w->nunread, i;

		/* read_some may put connections back: they go on a fresh list */
		w->unread = NULL;
		w->nunread = w->unreadcap = 0;
		for (i = 0; i < n; i++) {
			struct moat_conn *c = list[i];
			c->unread = false;
			if (c->w == w && c->state != C_CLOSING && !c->zombie)
				read_some(c);
		}
		free(list);
		if (w->nunread) { /* more next turn, without sleeping */
			moat_loop_wake(w->loop);
			return;
		}
	}
}

static void write_failed(struct moat_conn *c, int rc)
{
	if (c->state != C_CLOSING)
		conn_close(c, rc == MOAT_EDENIED ? "TLS peer refused" : "write error");
	out_free(&c->out);
}

void conn_flush(struct moat_conn *c)
{
	struct iovec iov[256];
	struct out *o = &c->out;
	int rc;

	while (o->first < o->nseg) {
		int n = fill_iov(o, iov, 256);
		ssize_t r = moat_transport_writev(c->tr, iov, n);

		if (r == MOAT_EAGAIN)
			break;
		if (r < 0) {
			write_failed(c, (int)r);
			return;
		}
		if (c->w)
			STAT_ADD(&c->w->stats, bytes_sent, (uint64_t)r);
		c->bytes_out += (uint64_t)r;
		advance(o, (size_t)r);
	}
	rc = moat_transport_flush(c->tr);
	if (rc < 0 && rc != MOAT_EAGAIN) {
		write_failed(c, rc);
		return;
	}
	/* drained below the mark: what waited for it (a retained snapshot at QoS 0) goes on */
	if (c->state == C_ACTIVE && c->session && c->session->queue.head && !conn_congested(c))
		session_fill_window(c->session);
	if (c->state != C_CLOSING)
		update_events(c);
}

/* ---- reading ---- */

/* Logs why the transport gave up (a refused certificate, a bad handshake) and closes. */
static void transport_failed(struct moat_conn *c, int rc)
{
	bool ws = strcmp(c->tr->ops->name, "ws") == 0;
	const char *what = rc == MOAT_EDENIED	  ? (ws ? "WebSocket origin refused"
						    : "peer certificate refused")
			   : rc == MOAT_ETOOBIG	  ? "WebSocket frame too large"
			   : rc == MOAT_EPROTOCOL ? "transport protocol error"
						  : "read error";
	/* OpenSSL's reason is worth logging only when a TLS layer failed just now. */
	const char *detail = c->listener->tls ? moat_tls_last_error() : "";

	if (rc != MOAT_EIO || c->state == C_NEW)
		moat_log(MOAT_LOG_LVL_NOTICE, "transport_failed addr=%s transport=%s reason=\"%s%s%s\"",
			 c->addr, c->tr->ops->name, what, detail[0] ? ": " : "", detail);
	conn_close(c, what);
}

static void read_some(struct moat_conn *c)
{
	int round;

	for (round = 0; round < READ_ROUNDS && c->state != C_CLOSING; round++) {
		uint8_t *p;
		size_t room;
		ssize_t n;

		if (moat_mqtt_framer_space(&c->in, &p, &room) < 0) {
			conn_close(c, "out of memory for input");
			return;
		}
		n = moat_transport_read(c->tr, p, room);
		if (n == 0) {
			conn_close(c, "connection closed by peer");
			return;
		}
		if (n == MOAT_EAGAIN)
			break;
		if (n < 0) {
			transport_failed(c, (int)n);
			return;
		}
		moat_mqtt_framer_commit(&c->in, (size_t)n);
		STAT_ADD(&c->w->stats, bytes_received, (uint64_t)n);
		c->bytes_in += (uint64_t)n;
		c->last_rx = worker_now(c->w);
		if (conn_process(c) < 0)
			return; /* closed, or handed to another worker: c is not ours now */
		if (((size_t)n < room && !c->tr->ops->has_buffered(c->tr)) || conn_congested(c) ||
		    c->paused_until)
			break;
	}
	if (c->state != C_CLOSING)
		update_events(c);
}

/* ---- OCSP (listeners with ocsp_mode) ---- */

/*
 * Asks about the client certificate, once the handshake is done. Returns the
 * status known now; MOAT_OCSP_PENDING means the answer comes later (through
 * conn_ocsp_answer). No certificate, nothing to ask: GOOD.
 */
static enum moat_ocsp_status ocsp_ask(struct moat_conn *c)
{
	uint8_t *cert, *issuer;
	size_t clen, ilen;
	char *url;
	enum moat_ocsp_status st;

	if (moat_tls_peer_der(c->tr, &cert, &clen, &issuer, &ilen, &url) < 0)
		return MOAT_OCSP_GOOD;
	st = moat_ocsp_check(c->listener->ocsp, cert, clen, issuer, ilen, url, &c->ocsp_key);
	c->ocsp_started = true;
	c->ocsp_checked_at = worker_now(c->w);
	free(cert);
	free(issuer);
	free(url);
	return st;
}

/*
 * Judges an OCSP status: closes a revoked client, or, under hard-fail, one
 * whose status is unknown at its first check (later checks that cannot reach
 * the responder keep a live session). Returns true if the client may stay.
 */
static bool ocsp_verdict(struct moat_conn *c, enum moat_ocsp_status st, bool first)
{
	bool hard = c->listener->conf->ocsp_mode == MOAT_OCSP_HARD;

	if (st != MOAT_OCSP_REVOKED && !(st == MOAT_OCSP_UNKNOWN && hard && first))
		return true;
	{
		char why[96];
		snprintf(why, sizeof(why), "OCSP status %s", moat_ocsp_status_name(st));
		c->close_kind = MOAT_SEC_CERT_REVOKED; /* the event says why: not an abnormal close */
		guard_event(c, MOAT_SEC_CERT_REVOKED, why);
	}
	if (c->state == C_ACTIVE)
		conn_disconnect(c, MOAT_RC_ADMINISTRATIVE_ACTION, "certificate revoked (OCSP)");
	else
		conn_close(c, "certificate revoked (OCSP)");
	return false;
}

/* An answer came from the OCSP thread (through the inbox). */
void conn_ocsp_answer(struct moat_conn *c, enum moat_ocsp_status st)
{
	bool waited = c->ocsp_wait;

	if (c->state == C_CLOSING || st == MOAT_OCSP_PENDING)
		return;
	c->ocsp_wait = false;
	if (ocsp_verdict(c, st, waited) && waited)
		conn_process(c); /* the CONNECT that waited; c may be handed over after this */
}

/* Before the first packet: start the OCSP check; false while a hard-fail check waits. */
static bool ocsp_gate(struct moat_conn *c)
{
	enum moat_ocsp_status st;

	if (c->ocsp_wait)
		return false;
	if (!c->listener->ocsp || c->ocsp_started || !c->tr->ops->ready(c->tr))
		return true;
	st = ocsp_ask(c);
	if (st == MOAT_OCSP_PENDING) {
		c->ocsp_wait = c->listener->conf->ocsp_mode == MOAT_OCSP_HARD;
		return !c->ocsp_wait;
	}
	return ocsp_verdict(c, st, true);
}

int conn_process(struct moat_conn *c)
{
	struct moat_mqtt_decode_opts opts = {0, true, true};
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	int rc;

	if (!ocsp_gate(c))
		return c->state == C_CLOSING ? -1 : 0;
	/* A rate pause stops here too: what is buffered waits, as what is unread does. */
	while (c->state != C_CLOSING && !c->auth_wait && !c->paused_until) {
		struct moat_mqtt_packet pkt;

		rc = moat_mqtt_framer_next(&c->in, &fr, &fault);
		if (rc == 0)
			break;
		if (rc < 0) {
			conn_fail(c, &fault);
			return -1;
		}
		STAT_ADD(&c->w->stats, msgs_received, 1);
		opts.version = c->version;
		if (c->state == C_NEW && fr.header >> 4 != MOAT_MQTT_CONNECT) {
			guard_event(c, MOAT_SEC_PROTOCOL_VIOLATION,
				    "first packet is not CONNECT [MQTT-3.1.0-1]");
			conn_close(c, "first packet is not CONNECT [MQTT-3.1.0-1]");
			return -1;
		}
		if (moat_mqtt_decode(&opts, fr.header, fr.body, fr.remaining, &pkt, &fault) < 0) {
			if (c->state == C_NEW)
				c->version = moat_mqtt_connect_version(fr.body, fr.remaining);
			conn_fail(c, &fault);
			return -1;
		}
		/* < 0: closed, or handed over (then another thread owns c: touch nothing). */
		if (handle_packet(c, &pkt) < 0)
			return -1;
	}
	if (c->state == C_CLOSING)
		return -1;
	moat_mqtt_framer_shrink(&c->in);
	return 0;
}

static void on_io(struct moat_loop *loop, struct moat_io *io, unsigned events)
{
	struct moat_conn *c = (struct moat_conn *)io;

	(void)loop;
	if (c->state == C_CLOSING)
		return;
	if (events & MOAT_EV_WRITE)
		conn_flush(c);
	if ((events & MOAT_EV_READ) && c->state != C_CLOSING)
		read_some(c);
}

/* ---- refusing ---- */

static void send_connack_refusal(struct moat_conn *c, const struct moat_mqtt_fault *f)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNACK, .version = c->version};

	if (c->version == MOAT_MQTT_V5) {
		p.connack.reason = f->reason;
	} else if (c->version && f->connack_v3) {
		p.connack.reason = f->connack_v3;
	} else {
		return;
	}
	conn_send(c, &p);
}

void conn_fail(struct moat_conn *c, const struct moat_mqtt_fault *f)
{
	char why[192];

	snprintf(why, sizeof(why), "%s%s%s%s (reason 0x%02x)", f->why, f->rule ? " [" : "",
		 f->rule ? f->rule : "", f->rule ? "]" : "", f->reason);
	if (c->state == C_NEW || c->state == C_AUTH) {
		guard_event(c, f->code == MOAT_ETOOBIG ? MOAT_SEC_PACKET_TOO_LARGE
						     : MOAT_SEC_PROTOCOL_VIOLATION, why);
		send_connack_refusal(c, f);
		conn_close(c, f->why);
		return;
	}
	guard_event(c, f->code == MOAT_ETOOBIG ? MOAT_SEC_PACKET_TOO_LARGE
					     : MOAT_SEC_PROTOCOL_VIOLATION, why);
	c->close_kind = CLOSE_QUIET; /* the violation is the event */
	conn_disconnect(c, f->reason, f->why);
}

void conn_disconnect(struct moat_conn *c, uint8_t reason, const char *why)
{
	if (c->state == C_ACTIVE && c->version == MOAT_MQTT_V5 && !c->disconnect_sent) {
		struct moat_mqtt_packet p = {.type = MOAT_MQTT_DISCONNECT, .version = 5};
		p.disconnect.reason = reason;
		if (c->problem_info && why) { /* the client asked to be told why (3.1.2.11.7) */
			p.disconnect.props.present = MOAT_PROP_BIT(MOAT_PROP_REASON_STRING);
			p.disconnect.props.reason_string.p = (const uint8_t *)why;
			p.disconnect.props.reason_string.len = strlen(why);
		}
		if (conn_send(c, &p) < 0 && c->problem_info) {
			p.disconnect.props.present = 0; /* too big for the client: the code alone */
			conn_send(c, &p);
		}
		c->disconnect_sent = true;
	}
	conn_close(c, why);
}

/* ---- time ---- */

/*
 * Gives a drained output queue's buffers back: most of a broker's
 * connections are idle most of the time, and their buffers (a few hundred
 * bytes each) would otherwise be the larger part of what an idle connection
 * holds. Once a second at most, so a busy connection allocates them again
 * at most that often.
 */
static void out_release(struct out *o)
{
	if (o->nseg || (!o->buf && !o->seg))
		return;
	free(o->buf);
	free(o->seg);
	memset(o, 0, sizeof(*o));
}

void conn_tick(struct moat_worker *w, int64_t now)
{
	struct moat_conn *c, *next;

	for (c = w->conns; c; c = next) {
		next = c->next;
		if (!c->dirty)
			out_release(&c->out);
		if (c->paused_until) {
			guard_tick(c, now);
			if (!c->paused_until && c->state != C_CLOSING) {
				/* The rate pause is over: what waits in the buffer first, then read again. */
				c->last_rx = now;
				if (conn_process(c) < 0)
					continue;
				update_events(c);
			}
		} else {
			guard_tick(c, now);
		}
		if ((c->state == C_NEW || c->state == C_AUTH) && !c->has_pending &&
		    now >= c->deadline) {
			guard_event(c, MOAT_SEC_CONNECT_TIMEOUT, "no CONNECT in time");
			conn_close(c, "no CONNECT in time");
		} else if (c->state == C_ACTIVE && c->keepalive &&
			   now - c->last_rx >= (int64_t)c->keepalive * 1500) {
			c->close_kind = MOAT_SEC_KEEPALIVE_TIMEOUT;
			guard_event(c, MOAT_SEC_KEEPALIVE_TIMEOUT, "keepalive timeout");
			conn_disconnect(c, MOAT_RC_KEEP_ALIVE_TIMEOUT, "keepalive timeout");
		} else if (c->state == C_ACTIVE && c->ocsp_started &&
			   now - c->ocsp_checked_at >=
				   (int64_t)c->listener->conf->ocsp_cache_seconds * 1000) {
			/* Ask again: a certificate revoked since is caught on a live session. */
			enum moat_ocsp_status st = ocsp_ask(c);
			if (st != MOAT_OCSP_PENDING)
				ocsp_verdict(c, st, false);
		}
	}
}
