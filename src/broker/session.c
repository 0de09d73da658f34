/*
 * session.c - sessions: what the broker keeps for a client id between and
 * across its connections (MQTT 5.0 section 4.1): subscriptions, messages
 * queued or in flight to it, QoS 2 packet ids received, a delayed will.
 *
 * Everything here runs on the session's home worker (see internal.h), so
 * nothing is locked but the shared subscription index.
 *
 * A delivery's life, server to client:
 *
 *   session_deliver --online, window open--> send --QoS 0--> done
 *         |                                    |
 *         +--window full / offline--> queue    +--QoS 1--> D_WAIT_ACK --PUBACK--> done
 *                                       |      +--QoS 2--> D_WAIT_ACK --PUBREC--> D_WAIT_COMP
 *               session_fill_window <---+                               --PUBCOMP--> done
 *
 * On reconnect, session_resume sends every inflight delivery again (PUBLISH
 * with DUP, or PUBREL) in its original order, then fills the window.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"
#include "core/error.h"
#include "core/log.h"

#define QOS2_SMALL 32

static struct moat_mem *mem_of(const struct moat_session *s)
{
	return &s->home->b->msg_mem;
}

bool session_online(const struct moat_session *s)
{
	return atomic_load_explicit(&s->online, memory_order_relaxed);
}

struct moat_session *session_new(struct moat_worker *w, const uint8_t *id, size_t n)
{
	struct moat_session *s = calloc(1, sizeof(*s));

	if (!s || !(s->client_id = malloc(n + 1)))
		goto fail;
	atomic_init(&s->refs, 1); /* the registry's */
	atomic_init(&s->online, false);
	s->id = atomic_fetch_add(&w->b->next_session_id, 1);
	s->home = w;
	memcpy(s->client_id, id, n);
	s->client_id[n] = 0;
	s->client_id_len = n;
	s->next_packet_id = 1;
	moat_map_init(&s->subs, NULL);
	moat_map_init(&s->inflight_ids, NULL);
	atomic_init(&s->stored, false);
	persist_session_init(s);
	if (moat_map_put(&w->sessions, s->client_id, n, s) < 0)
		goto fail;
	STAT_ADD(&w->stats, sessions, 1);
	return s;
fail:
	if (s)
		free(s->client_id);
	free(s);
	return NULL;
}

void session_ref(struct moat_session *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

static void delivery_free(struct moat_session *s, struct delivery *d)
{
	moat_msg_unref(d->msg);
	if (d->nsubids > 1)
		free(d->subids);
	moat_mem_free(mem_of(s), d, sizeof(*d));
}

static void dlist_push(struct dlist *l, struct delivery *d)
{
	d->next = NULL;
	d->prev = l->tail;
	if (l->tail)
		l->tail->next = d;
	else
		l->head = d;
	l->tail = d;
	l->n++;
	l->bytes += d->msg->payload_len;
}

static void dlist_remove(struct dlist *l, struct delivery *d)
{
	if (d->prev)
		d->prev->next = d->next;
	else
		l->head = d->next;
	if (d->next)
		d->next->prev = d->prev;
	else
		l->tail = d->prev;
	l->n--;
	l->bytes -= d->msg->payload_len;
}

static void dlist_clear(struct moat_session *s, struct dlist *l)
{
	struct delivery *d = l->head, *next;

	for (; d; d = next) {
		next = d->next;
		delivery_free(s, d);
	}
	memset(l, 0, sizeof(*l));
}

static void free_subs(struct moat_session *s, bool unindex)
{
	size_t pos = 0;
	struct sess_sub *ss;

	while ((ss = moat_map_next(&s->subs, &pos, NULL, NULL))) {
		if (unindex)
			moat_subs_remove(s->home->b->subs, ss->filter, ss->len, s);
		free(ss);
	}
	moat_map_free(&s->subs);
	moat_map_init(&s->subs, NULL);
}

void session_unref(struct moat_session *s)
{
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	free_subs(s, false);
	dlist_clear(s, &s->queue);
	dlist_clear(s, &s->inflight);
	moat_map_free(&s->inflight_ids);
	moat_msg_unref(s->will);
	free(s->qos2_small);
	free(s->qos2_bits);
	free(s->client_id);
	free(s);
}

/*
 * Ends s: its subscriptions leave the index (so no new delivery finds it),
 * its messages are dropped and the registry lets go of it. Deliveries
 * already in an inbox see `dead` and are dropped.
 */
void session_end(struct moat_session *s)
{
	if (s->dead)
		return;
	persist_session_end(s); /* its rows and its messages' rows go */
	s->dead = true;
	free_subs(s, true);
	dlist_clear(s, &s->queue);
	dlist_clear(s, &s->inflight);
	moat_map_free(&s->inflight_ids);
	moat_map_init(&s->inflight_ids, NULL);
	moat_map_del(&s->home->sessions, s->client_id, s->client_id_len);
	STAT_ADD(&s->home->stats, sessions, -1);
	session_unref(s);
}

/* ---- sending ---- */

static uint32_t window(const struct moat_session *s)
{
	uint32_t max = s->home->b->conf->max_inflight_messages;
	uint32_t rm = s->conn ? s->conn->client_receive_max : 65535;

	if (!max || max > 65535)
		max = 65535;
	return rm < max ? rm : max;
}

/*
 * True if one more message of n payload bytes may go in flight: under the
 * message window and, with max_inflight_bytes, under the byte budget (one
 * message may always be in flight, however big, or it could never leave).
 */
static bool window_open(const struct moat_session *s, size_t n)
{
	uint64_t max_bytes = s->home->b->conf->max_inflight_bytes;

	if (s->inflight.n >= window(s))
		return false;
	return !max_bytes || !s->inflight.n || s->inflight.bytes + n <= max_bytes;
}

static uint16_t new_packet_id(struct moat_session *s)
{
	for (;;) {
		uint16_t id = s->next_packet_id++;
		if (!s->next_packet_id)
			s->next_packet_id = 1;
		if (id && !moat_map_get(&s->inflight_ids, &id, sizeof(id)))
			return id;
	}
}

/*
 * Sends d now; a QoS 1/2 delivery moves to inflight, anything else is freed.
 * One the client could not accept (over its Maximum Packet Size) counts as
 * sent and done [MQTT-3.1.2-25].
 */
static void send_delivery(struct moat_session *s, struct delivery *d)
{
	if (d->qos)
		d->packet_id = new_packet_id(s);
	if (conn_send_publish(s->conn, d->msg, d->qos, d->retain, false, d->packet_id, d->subids,
			      d->nsubids) < 0 || !d->qos) {
		persist_delivery_gone(s, d->seq);
		delivery_free(s, d);
		return;
	}
	d->state = D_WAIT_ACK;
	if (moat_map_put(&s->inflight_ids, &d->packet_id, sizeof(d->packet_id), d) < 0) {
		delivery_free(s, d); /* its row stays: sent again after a restart */
		conn_close(s->conn, "out of memory");
		return;
	}
	dlist_push(&s->inflight, d);
	persist_delivery(s, d);
}

static bool can_send(const struct moat_session *s)
{
	return s->conn && s->conn->state == C_ACTIVE;
}

void session_fill_window(struct moat_session *s)
{
	int64_t now = worker_now(s->home);

	while (can_send(s) && s->queue.head && window_open(s, s->queue.head->msg->payload_len)) {
		struct delivery *d = s->queue.head;
		if (!d->qos && conn_congested(s->conn))
			break; /* a retained snapshot at QoS 0 goes out as the socket drains */
		dlist_remove(&s->queue, d);
		if (moat_msg_expired(d->msg, now)) {
			STAT_DROP(&s->home->stats, DROP_EXPIRED);
			persist_delivery_gone(s, d->seq);
			delivery_free(s, d);
			continue;
		}
		send_delivery(s, d);
	}
}

void session_resume(struct moat_session *s)
{
	struct delivery *d, *next;
	int rc;

	for (d = s->inflight.head; d && can_send(s); d = next) {
		next = d->next;
		if (d->state == D_WAIT_COMP) {
			conn_send_ack(s->conn, MOAT_MQTT_PUBREL, d->packet_id, 0);
		} else if ((rc = conn_send_publish(s->conn, d->msg, d->qos, d->retain, true,
						   d->packet_id, d->subids, d->nsubids)) ==
				   MOAT_EDENIED ||
			   rc == MOAT_ETOOBIG) {
			/* Not deliverable any more (the ACL took the right away, too big): done with it. */
			moat_map_del(&s->inflight_ids, &d->packet_id, sizeof(d->packet_id));
			dlist_remove(&s->inflight, d);
			persist_delivery_gone(s, d->seq);
			delivery_free(s, d);
		}
	}
	session_fill_window(s);
}

/* True if the queue may take one more message of n payload bytes. */
static bool queue_has_room(const struct moat_session *s, size_t n)
{
	const struct moat_config *c = s->home->b->conf;

	if (c->max_queued_messages && s->queue.n >= c->max_queued_messages)
		return false;
	return !c->max_queued_bytes || s->queue.bytes + n <= c->max_queued_bytes;
}

static struct delivery *delivery_new(struct moat_session *s, struct moat_msg *msg, uint8_t qos,
				     bool retain, const uint32_t *subids, uint16_t nsubids)
{
	struct delivery *d = moat_mem_calloc(mem_of(s), sizeof(*d));

	if (!d)
		return NULL;
	if (nsubids > 1) {
		d->subids = malloc(nsubids * sizeof(*subids));
		if (!d->subids) {
			moat_mem_free(mem_of(s), d, sizeof(*d));
			return NULL;
		}
		memcpy(d->subids, subids, nsubids * sizeof(*subids));
	} else if (nsubids == 1) {
		d->subid0 = subids[0];
		d->subids = &d->subid0;
	}
	d->msg = moat_msg_ref(msg);
	d->qos = qos;
	d->retain = retain;
	d->nsubids = nsubids;
	return d;
}

/*
 * seq: the row the publishing worker already wrote for this delivery (with
 * persistence, see persist.c), or 0. A delivery that goes nowhere takes its
 * row with it.
 */
void session_deliver(struct moat_session *s, struct moat_msg *msg, uint8_t qos, bool retain,
		     const uint32_t *subids, uint16_t nsubids, uint64_t seq)
{
	struct moat_worker *w = s->home;
	bool online = can_send(s);
	struct delivery *d;

	if (s->dead) {
		/* ended: its rows went with it, but this one may have been written after */
		persist_delivery_gone(s, seq);
		return;
	}
	if (online && qos == 0) {
		persist_delivery_gone(s, seq);
		if (conn_congested(s->conn)) {
			STAT_DROP(&w->stats, DROP_CONGESTED);
			return;
		}
		conn_send_publish(s->conn, msg, 0, retain, false, 0, subids, nsubids);
		return;
	}
	if (online && !s->queue.head && window_open(s, msg->payload_len)) {
		d = delivery_new(s, msg, qos, retain, subids, nsubids);
		if (d) {
			d->seq = seq;
			send_delivery(s, d);
		} else {
			persist_delivery_gone(s, seq);
			STAT_DROP(&w->stats, DROP_MEMORY);
		}
		return;
	}
	if ((qos == 0 && !w->b->conf->queue_qos0_messages) || !queue_has_room(s, msg->payload_len) ||
	    !(d = delivery_new(s, msg, qos, retain, subids, nsubids))) {
		persist_delivery_gone(s, seq);
		STAT_DROP(&w->stats, qos == 0 && !w->b->conf->queue_qos0_messages ? DROP_QOS0_OFFLINE :
				     !queue_has_room(s, msg->payload_len) ? DROP_QUEUE_FULL : DROP_MEMORY);
		return;
	}
	dlist_push(&s->queue, d);
	d->seq = seq;
	if (!seq)
		persist_delivery(s, d); /* QUEUED, written here when the publisher did not */
}

/*
 * The retained messages a new subscription gets: as session_deliver, except
 * that at QoS 0 a congested connection does not drop them (as a live QoS 0
 * message is dropped): the client asked for this snapshot, and a dashboard
 * subscribing to a plant's 100,000 retained tags must get them all. They
 * wait in the queue (max_queued_messages / max_queued_bytes bound it) and
 * leave as the socket drains (session_fill_window from conn_flush).
 */
void session_deliver_retained(struct moat_session *s, struct moat_msg *msg, uint8_t qos,
			      const uint32_t *subids, uint16_t nsubids)
{
	struct delivery *d;

	if (qos || !can_send(s) || (!conn_congested(s->conn) && !s->queue.head)) {
		session_deliver(s, msg, qos, true, subids, nsubids, 0);
		return;
	}
	if (!queue_has_room(s, msg->payload_len) ||
	    !(d = delivery_new(s, msg, 0, true, subids, nsubids))) {
		STAT_DROP(&s->home->stats, !queue_has_room(s, msg->payload_len) ? DROP_QUEUE_FULL
									     : DROP_MEMORY);
		return;
	}
	dlist_push(&s->queue, d);
}

/* At start-up: a delivery read back from the store, in the queue or in flight. */
int session_restore_delivery(struct moat_session *s, struct moat_msg *msg, uint8_t qos,
			     bool retain, const uint32_t *subids, uint16_t nsubids, uint8_t state,
			     uint16_t packet_id, uint64_t seq)
{
	struct delivery *d = delivery_new(s, msg, qos, retain, subids, nsubids);

	if (!d)
		return MOAT_ENOMEM;
	d->seq = seq;
	if (state == D_QUEUED || !packet_id || moat_map_get(&s->inflight_ids, &packet_id,
							    sizeof(packet_id))) {
		d->state = D_QUEUED;
		d->packet_id = 0;
		dlist_push(&s->queue, d);
		return 0;
	}
	d->state = state;
	d->packet_id = packet_id;
	if (moat_map_put(&s->inflight_ids, &d->packet_id, sizeof(d->packet_id), d) < 0) {
		delivery_free(s, d);
		return MOAT_ENOMEM;
	}
	dlist_push(&s->inflight, d);
	if (packet_id >= s->next_packet_id)
		s->next_packet_id = packet_id == 65535 ? 1 : (uint16_t)(packet_id + 1);
	return 0;
}

int session_ack(struct moat_session *s, uint16_t id, uint8_t type)
{
	struct delivery *d = moat_map_get(&s->inflight_ids, &id, sizeof(id));

	if (!d)
		return MOAT_ENOTFOUND;
	if (type == MOAT_MQTT_PUBREC) {
		if (d->qos != 2 || d->state != D_WAIT_ACK)
			return d->state == D_WAIT_COMP ? 0 : MOAT_EPROTOCOL;
		d->state = D_WAIT_COMP;
		persist_delivery(s, d);
		/* The message is delivered; only the packet id is still in use. */
		return 0;
	}
	if ((type == MOAT_MQTT_PUBACK && (d->qos != 1 || d->state != D_WAIT_ACK)) ||
	    (type == MOAT_MQTT_PUBCOMP && d->state != D_WAIT_COMP))
		return MOAT_EPROTOCOL;
	moat_map_del(&s->inflight_ids, &id, sizeof(id));
	dlist_remove(&s->inflight, d);
	persist_delivery_gone(s, d->seq);
	delivery_free(s, d);
	session_fill_window(s);
	return 0;
}

/* ---- inbound QoS 2 packet ids ---- */

int session_qos2_add(struct moat_session *s, uint16_t id)
{
	if (session_qos2_has(s, id))
		return 0;
	persist_qos2(s, id, true);
	if (!s->qos2_bits && s->qos2_n < QOS2_SMALL) {
		if (!s->qos2_small && !(s->qos2_small = malloc(QOS2_SMALL * sizeof(uint16_t))))
			return MOAT_ENOMEM;
		s->qos2_small[s->qos2_n++] = id;
		return 0;
	}
	if (!s->qos2_bits) {
		uint16_t i;
		if (!(s->qos2_bits = calloc(8192, 1)))
			return MOAT_ENOMEM;
		for (i = 0; i < s->qos2_n; i++)
			s->qos2_bits[s->qos2_small[i] >> 3] |= (uint8_t)(1 << (s->qos2_small[i] & 7));
	}
	if (!(s->qos2_bits[id >> 3] & (1 << (id & 7))))
		s->qos2_n++;
	s->qos2_bits[id >> 3] |= (uint8_t)(1 << (id & 7));
	return 0;
}

bool session_qos2_has(struct moat_session *s, uint16_t id)
{
	uint16_t i;

	if (s->qos2_bits)
		return s->qos2_bits[id >> 3] & (1 << (id & 7));
	for (i = 0; i < s->qos2_n; i++)
		if (s->qos2_small[i] == id)
			return true;
	return false;
}

void session_qos2_del(struct moat_session *s, uint16_t id)
{
	uint16_t i;

	if (session_qos2_has(s, id))
		persist_qos2(s, id, false);
	if (s->qos2_bits) {
		if (s->qos2_bits[id >> 3] & (1 << (id & 7))) {
			s->qos2_bits[id >> 3] &= (uint8_t)~(1 << (id & 7));
			s->qos2_n--;
		}
		return;
	}
	for (i = 0; i < s->qos2_n; i++) {
		if (s->qos2_small[i] == id) {
			s->qos2_small[i] = s->qos2_small[--s->qos2_n];
			return;
		}
	}
}

/* ---- subscriptions ---- */

int session_subscribe(struct moat_session *s, const uint8_t *f, size_t n, uint8_t opts,
		      uint32_t subid, bool *existed)
{
	struct sess_sub *ss = moat_map_get(&s->subs, f, n);
	uint32_t max = s->home->b->conf->max_subscriptions_per_client;
	int rc;

	if (!ss && max && s->subs.len >= max)
		return MOAT_EDENIED;
	rc = moat_subs_add(s->home->b->subs, f, n, s, opts, subid, existed);
	if (rc < 0)
		return rc;
	if (!ss) {
		ss = malloc(sizeof(*ss) + n);
		if (ss) {
			memcpy(ss->filter, f, n); /* the map hashes the key: fill it first */
			ss->len = n;
		}
		if (!ss || moat_map_put(&s->subs, ss->filter, n, ss) < 0) {
			free(ss);
			moat_subs_remove(s->home->b->subs, f, n, s);
			return MOAT_ENOMEM;
		}
	}
	ss->opts = opts;
	ss->subid = subid;
	return 0;
}

int session_unsubscribe(struct moat_session *s, const uint8_t *f, size_t n)
{
	struct sess_sub *ss = moat_map_del(&s->subs, f, n);

	if (!ss)
		return MOAT_ENOTFOUND;
	moat_subs_remove(s->home->b->subs, f, n, s);
	free(ss);
	return 0;
}

/* ---- time ---- */

void session_publish_will(struct moat_session *s)
{
	struct moat_msg *will = s->will;

	if (!will)
		return;
	s->will = NULL;
	persist_will(s); /* its row goes (unless the session's rows all go with it) */
	publish_will(s->home, will);
	moat_msg_unref(will);
}

void session_tick(struct moat_worker *w, int64_t now)
{
	struct moat_session *ended[64], *s;
	size_t pos = 0, n = 0, i;

	/* Collect first: ending a session changes the map being walked. */
	while (n < 64 && (s = moat_map_next(&w->sessions, &pos, NULL, NULL))) {
		if (s->conn)
			continue;
		if (s->will && now >= s->will_at)
			session_publish_will(s);
		if (s->expiry != SESSION_NEVER_EXPIRES && now >= s->expires_at)
			ended[n++] = s;
	}
	for (i = 0; i < n; i++) {
		char id[160];
		moat_log(MOAT_LOG_LVL_INFO, "session_expired client_id=%s",
			 moat_log_quote(id, sizeof(id), ended[i]->client_id,
					(unsigned)ended[i]->client_id_len));
		session_publish_will(ended[i]);
		session_end(ended[i]);
	}
}
