/*
 * handlers.c - what the broker does with each packet a client sends, after
 * the codec has checked everything a packet can be checked for alone.
 *
 * One table says which packets are allowed in which connection state; it is
 * the only place that decides, so no handler repeats the check. A handler
 * returns 0 to go on reading, or a negative value when it closed the
 * connection.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"
#include "core/error.h"
#include "core/log.h"
#include "core/vec.h"
#include "mqtt/topic.h"

static int violation(struct moat_conn *c, uint8_t reason, const char *why)
{
	guard_event(c, MOAT_SEC_PROTOCOL_VIOLATION, why);
	c->close_kind = CLOSE_QUIET; /* the violation is the event */
	conn_disconnect(c, reason, why);
	return -1;
}

/* ---- PUBLISH ---- */

/* Resolves the 5.0 Topic Alias of p into *topic. Returns 0 or closes. */
static int resolve_alias(struct moat_conn *c, struct moat_mqtt_publish *p, struct moat_slice *topic)
{
	uint16_t a = p->props.topic_alias, max = c->w->b->conf->max_topic_alias;
	uint8_t *copy;

	*topic = p->topic;
	if (!moat_mqtt_props_has(&p->props, MOAT_PROP_TOPIC_ALIAS))
		return 0;
	if (a > max)
		return violation(c, MOAT_RC_TOPIC_ALIAS_INVALID, "Topic Alias above the maximum");
	if (!c->alias_in && !(c->alias_in = calloc((size_t)max + 1, sizeof(*c->alias_in))))
		return violation(c, MOAT_RC_UNSPECIFIED_ERROR, "out of memory");
	if (p->topic.len == 0) {
		if (!c->alias_in[a].p)
			return violation(c, MOAT_RC_PROTOCOL_ERROR, "Topic Alias not mapped");
		topic->p = c->alias_in[a].p;
		topic->len = c->alias_in[a].len;
		return 0;
	}
	if (!(copy = malloc(p->topic.len)))
		return violation(c, MOAT_RC_UNSPECIFIED_ERROR, "out of memory");
	memcpy(copy, p->topic.p, p->topic.len);
	free(c->alias_in[a].p);
	c->alias_in[a].p = copy;
	c->alias_in[a].len = (uint16_t)p->topic.len;
	return 0;
}

/* Checks what the broker's configuration allows. Returns 0 or closes. */
static int publish_allowed(struct moat_conn *c, const struct moat_mqtt_publish *p)
{
	/* The CONNACK told the client these (the server's limits, or its ACL options). */
	if (p->qos > c->max_qos)
		return violation(c, MOAT_RC_QOS_NOT_SUPPORTED, "QoS above the maximum");
	if (p->retain && !c->may_retain)
		return violation(c, MOAT_RC_RETAIN_NOT_SUPPORTED, "retain not available");
	if (p->qos == 2 && !session_qos2_has(c->session, p->packet_id) &&
	    c->session->qos2_n >= c->receive_max && c->version == MOAT_MQTT_V5)
		return violation(c, MOAT_RC_RECEIVE_MAXIMUM_EXCEEDED, "Receive Maximum exceeded");
	return 0;
}

/* With persistence_sync always, after what this PUBLISH wrote is durable (persist.c). */
static void ack_publish(struct moat_conn *c, const struct moat_mqtt_publish *p, uint8_t reason)
{
	if (p->qos == 1)
		persist_ack(c, MOAT_MQTT_PUBACK, p->packet_id, reason, c->w->store_mark);
	else if (p->qos == 2)
		persist_ack(c, MOAT_MQTT_PUBREC, p->packet_id, reason, c->w->store_mark);
}

static int h_publish(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	struct moat_mqtt_publish *p = &pkt->publish;
	struct moat_worker *w = c->w;
	const struct moat_config *conf = w->b->conf;
	struct moat_slice topic;
	struct moat_msg *msg;
	bool within_rate, blocked;
	size_t n;

	STAT_ADD(&w->stats, pub_received, 1);
	STAT_ADD(&w->stats, pub_received_qos[p->qos & 3], 1);
	c->pub_in++;
	w->store_mark = w->store_writes;
	if (resolve_alias(c, p, &topic) < 0 || publish_allowed(c, p) < 0)
		return -1;
	within_rate = guard_publish(c, p->payload.len + topic.len);
	if (mount_topic(c, topic, w->mountbuf, &topic) < 0)
		return violation(c, MOAT_RC_TOPIC_NAME_INVALID, "topic too long under the mount point");
	blocked = blocks_hit(w->b->blocks, topic.p, topic.len); /* an administrator's: block.c */
	if (blocked || !acl_allows(c, topic.p, topic.len, MOAT_ACL_WRITE)) {
		guard_topic(c, topic.p, topic.len, true, false);
		/* 5.0 says so in the ack; 3.x has no negative ack: the message is just dropped. */
		STAT_DROP(&w->stats, DROP_NOT_AUTHORIZED);
		acl_refused(c, topic.p, topic.len, "publish",
			    blocked ? "topic blocked by an administrator" : "not allowed by the ACL");
		if (p->qos == 2 && c->version != MOAT_MQTT_V5 && session_qos2_add(c->session, p->packet_id) < 0)
			return violation(c, MOAT_RC_UNSPECIFIED_ERROR, "out of memory");
		ack_publish(c, p, MOAT_RC_NOT_AUTHORIZED);
		return 0;
	}
	if (p->qos == 2 && session_qos2_has(c->session, p->packet_id)) {
		/* A resend of a message we already have: acknowledge, deliver nothing. */
		ack_publish(c, p, 0);
		return 0;
	}
	if (!within_rate && p->qos && c->version == MOAT_MQTT_V5) {
		/* Over max_message_rate/max_byte_rate: 5.0 can say so (the reads pause too). */
		STAT_DROP(&w->stats, DROP_RATE_LIMITED);
		ack_publish(c, p, MOAT_RC_QUOTA_EXCEEDED);
		return 0;
	}
	if (conf->message_size_limit && p->payload.len > conf->message_size_limit) {
		STAT_DROP(&w->stats, DROP_SIZE_LIMIT);
		ack_publish(c, p, MOAT_RC_QUOTA_EXCEEDED);
		return 0;
	}
	msg = moat_msg_from_publish(&w->b->msg_mem, p, topic.p, topic.len, c->session->id,
				    worker_now(w));
	if (!msg) {
		STAT_DROP(&w->stats, DROP_MEMORY);
		if (c->version != MOAT_MQTT_V5 && p->qos) {
			conn_close(c, "memory limit reached");
			return -1;
		}
		ack_publish(c, p, MOAT_RC_QUOTA_EXCEEDED);
		return 0;
	}
	if (msg->retain && moat_retain_set(w->b->retain, msg) < 0)
		moat_log(MOAT_LOG_LVL_WARNING, "retain_failed reason=\"out of memory\"");
	else if (msg->retain)
		persist_retained(w, w->b, msg);
	n = publish_message(w, msg);
	guard_topic(c, moat_msg_topic(msg), msg->topic_len, n == 0, true); /* the message's own copy */
	moat_msg_unref(msg);
	if (!n)
		guard_event(c, MOAT_SEC_NO_SUBSCRIBER, NULL);
	if (p->qos == 2 && session_qos2_add(c->session, p->packet_id) < 0) {
		conn_close(c, "out of memory");
		return -1;
	}
	ack_publish(c, p, n ? 0 : MOAT_RC_NO_MATCHING_SUBSCRIBERS);
	return 0;
}

/* ---- acknowledgements ---- */

static int h_pubrel(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	uint16_t id = pkt->ack.packet_id;
	bool had = session_qos2_has(c->session, id);

	c->w->store_mark = c->w->store_writes;
	session_qos2_del(c->session, id);
	/* a PUBCOMP only once the id is gone from the store: a stale one would drop a new message */
	persist_ack(c, MOAT_MQTT_PUBCOMP, id, had ? 0 : MOAT_RC_PACKET_IDENTIFIER_NOT_FOUND,
		    c->w->store_mark);
	return 0;
}

static int h_ack(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	uint16_t id = pkt->ack.packet_id;
	int rc;

	c->w->store_mark = c->w->store_writes;
	/* A 5.0 PUBREC refusing the message ends the exchange there (section 4.3.3). */
	if (pkt->type == MOAT_MQTT_PUBREC && pkt->ack.reason >= 0x80) {
		session_ack(c->session, id, MOAT_MQTT_PUBREC);
		rc = session_ack(c->session, id, MOAT_MQTT_PUBCOMP);
		return 0;
	}
	rc = session_ack(c->session, id, pkt->type);
	if (rc == MOAT_EPROTOCOL)
		return violation(c, MOAT_RC_PROTOCOL_ERROR, "acknowledgement of the wrong kind");
	/*
	 * A PUBREL only once "released" is durable: the client hands a QoS 2 message
	 * over at PUBREL, and one we forgot releasing would be sent it again.
	 */
	if (pkt->type == MOAT_MQTT_PUBREC)
		persist_ack(c, MOAT_MQTT_PUBREL, id, rc == 0 ? 0 : MOAT_RC_PACKET_IDENTIFIER_NOT_FOUND,
			    c->w->store_mark);
	return 0;
}

/* ---- SUBSCRIBE, UNSUBSCRIBE ---- */

struct retained {
	struct moat_msg **v;
	size_t n, cap;
};

static void collect_retained(void *arg, struct moat_msg *msg)
{
	struct retained *r = arg;

	if (moat_grow((void **)&r->v, &r->cap, r->n + 1, sizeof(*r->v)))
		r->v[r->n++] = moat_msg_ref(msg);
}

/* Sends the retained messages matching a new subscription (after the SUBACK is queued). */
static void send_retained(struct moat_conn *c, struct moat_slice f, uint8_t opts, uint32_t subid)
{
	struct retained r = {0};
	size_t i;

	moat_retain_match(c->w->b->retain, f.p, f.len, worker_now(c->w), collect_retained, &r);
	for (i = 0; i < r.n; i++) {
		uint8_t q = MOAT_SUBOPT_QOS(opts) < r.v[i]->qos ? MOAT_SUBOPT_QOS(opts) : r.v[i]->qos;
		session_deliver_retained(c->session, r.v[i], q, &subid, subid ? 1 : 0);
		moat_msg_unref(r.v[i]);
	}
	free(r.v);
}

/* Subscribes one filter; returns the SUBACK code. */
static uint8_t subscribe_one(struct moat_conn *c, struct moat_slice f, uint8_t opts,
			     uint32_t subid, bool *existed)
{
	uint8_t max = c->max_qos, denied = c->version == MOAT_MQTT_V5 ? MOAT_RC_NOT_AUTHORIZED : 0x80;
	struct moat_slice g, inner;
	int rc;

	if (!c->may_wildcard && (memchr(f.p, '+', f.len) || memchr(f.p, '#', f.len)))
		return c->version == MOAT_MQTT_V5 ? MOAT_RC_WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED : 0x80;
	if (moat_mqtt_share_split(f.p, f.len, &g, &inner) != 1)
		inner = f;
	guard_topic(c, inner.p, inner.len, true, false);
	if (!acl_allows(c, inner.p, inner.len, MOAT_ACL_SUBSCRIBE)) {
		acl_denied(c, f.p, f.len, "subscribe");
		return denied;
	}
	if (MOAT_SUBOPT_QOS(opts) > max)
		opts = (uint8_t)((opts & ~3) | max);
	rc = session_subscribe(c->session, f.p, f.len, opts, subid, existed);
	if (rc == MOAT_EDENIED)
		return c->version == MOAT_MQTT_V5 ? MOAT_RC_QUOTA_EXCEEDED : 0x80;
	if (rc < 0)
		return c->version == MOAT_MQTT_V5 ? MOAT_RC_UNSPECIFIED_ERROR : 0x80;
	if (moat_log_enabled(MOAT_LOG_LVL_DEBUG)) {
		char q[300];
		moat_log(MOAT_LOG_LVL_DEBUG, "subscribe addr=%s filter=%s qos=%u", c->addr,
			 moat_log_quote(q, sizeof(q), f.p, (unsigned)f.len), MOAT_SUBOPT_QOS(opts));
	}
	return MOAT_SUBOPT_QOS(opts);
}

static int h_subscribe(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	struct moat_mqtt_subscribe *s = &pkt->subscribe;
	struct moat_mqtt_packet ack = {.type = MOAT_MQTT_SUBACK, .version = c->version};
	uint32_t subid = s->props.subid_count ? s->props.subscription_id : 0;
	struct moat_mqtt_sub_iter it;
	struct moat_slice f, g, inner;
	uint8_t opts, *codes = malloc(s->count ? s->count : 1);
	bool *existed = calloc(s->count ? s->count : 1, sizeof(bool));
	uint32_t i = 0;

	if (!codes || !existed) {
		free(codes);
		free(existed);
		return violation(c, MOAT_RC_UNSPECIFIED_ERROR, "out of memory");
	}
	moat_mqtt_sub_iter(s, &it);
	while (moat_mqtt_sub_next(&it, &f, &opts)) {
		if (mount_topic(c, f, c->w->mountbuf, &f) < 0)
			codes[i] = c->version == MOAT_MQTT_V5 ? MOAT_RC_TOPIC_FILTER_INVALID : 0x80;
		else
			codes[i] = subscribe_one(c, f, opts, subid, &existed[i]);
		i++;
	}
	ack.suback.packet_id = s->packet_id;
	ack.suback.reasons.p = codes;
	ack.suback.reasons.len = s->count;
	persist_session(c->session); /* its subscriptions, before anything published after them */
	conn_send(c, &ack);
	/* Retained messages follow the SUBACK [MQTT-3.8.4-?], never for shared subscriptions. */
	moat_mqtt_sub_iter(s, &it);
	for (i = 0; moat_mqtt_sub_next(&it, &f, &opts); i++) {
		uint8_t rh = MOAT_SUBOPT_RETAIN_HANDLING(opts);
		if (codes[i] >= 0x80 || moat_mqtt_share_split(f.p, f.len, &g, &inner) == 1)
			continue;
		mount_topic(c, f, c->w->mountbuf, &f); /* fitted above */
		if (c->version != MOAT_MQTT_V5)
			rh = 0;
		if (rh == 0 || (rh == 1 && !existed[i]))
			send_retained(c, f, (uint8_t)((opts & ~3) | codes[i]), subid);
	}
	free(codes);
	free(existed);
	return 0;
}

static int h_unsubscribe(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	struct moat_mqtt_subscribe *s = &pkt->subscribe;
	struct moat_mqtt_packet ack = {.type = MOAT_MQTT_UNSUBACK, .version = c->version};
	struct moat_mqtt_sub_iter it;
	struct moat_slice f;
	uint8_t *codes = malloc(s->count ? s->count : 1);
	uint32_t i = 0;

	if (!codes)
		return violation(c, MOAT_RC_UNSPECIFIED_ERROR, "out of memory");
	moat_mqtt_sub_iter(s, &it);
	while (moat_mqtt_unsub_next(&it, &f))
		codes[i++] = mount_topic(c, f, c->w->mountbuf, &f) == 0 &&
					     session_unsubscribe(c->session, f.p, f.len) == 0
				     ? MOAT_RC_SUCCESS
				     : MOAT_RC_NO_SUBSCRIPTION_EXISTED;
	ack.suback.packet_id = s->packet_id;
	ack.suback.reasons.p = codes;
	ack.suback.reasons.len = s->count;
	persist_session(c->session);
	conn_send(c, &ack);
	free(codes);
	return 0;
}

/* ---- PINGREQ, DISCONNECT, AUTH ---- */

static int h_pingreq(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	struct moat_mqtt_packet resp = {.type = MOAT_MQTT_PINGRESP, .version = c->version};

	(void)pkt;
	conn_send(c, &resp);
	return 0;
}

static int h_disconnect(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	struct moat_mqtt_disconnect *d = &pkt->disconnect;
	struct moat_session *s = c->session;

	if (moat_mqtt_props_has(&d->props, MOAT_PROP_SESSION_EXPIRY_INTERVAL)) {
		if (s->expiry == 0 && d->props.session_expiry != 0)
			return violation(c, MOAT_RC_PROTOCOL_ERROR,
					 "Session Expiry set in DISCONNECT after 0 in CONNECT");
		s->expiry = d->props.session_expiry == UINT32_MAX ? SESSION_NEVER_EXPIRES
								   : d->props.session_expiry;
	}
	c->graceful = d->reason != MOAT_RC_DISCONNECT_WITH_WILL;
	c->disconnect_sent = true; /* the client left: no DISCONNECT back */
	conn_close(c, d->reason == 0 ? "client disconnected" : moat_mqtt_reason_name(d->reason, MOAT_MQTT_DISCONNECT));
	return -1;
}

static int h_auth(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	if (c->state == C_AUTH)
		return auth_packet(c, pkt);
	/* Re-authentication (reason 0x19) is not offered: nothing agreed to continue. */
	return violation(c, MOAT_RC_PROTOCOL_ERROR, "AUTH outside an authentication exchange");
}

static int h_connect_again(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	(void)pkt;
	return violation(c, MOAT_RC_PROTOCOL_ERROR, "second CONNECT [MQTT-3.1.0-2]");
}

static int h_first_connect(struct moat_conn *c, struct moat_mqtt_packet *pkt)
{
	return connect_route(c, pkt);
}

/* ---- the table ---- */

enum { ON_NEW = 1 << C_NEW, ON_AUTH = 1 << C_AUTH, ON_ACTIVE = 1 << C_ACTIVE };

struct handler {
	int (*fn)(struct moat_conn *, struct moat_mqtt_packet *);
	int (*fn_new)(struct moat_conn *, struct moat_mqtt_packet *);
	uint8_t states;
};

static const struct handler handlers[16] = {
	[MOAT_MQTT_CONNECT] = {h_connect_again, h_first_connect, ON_NEW | ON_ACTIVE},
	[MOAT_MQTT_PUBLISH] = {h_publish, NULL, ON_ACTIVE},
	[MOAT_MQTT_PUBACK] = {h_ack, NULL, ON_ACTIVE},
	[MOAT_MQTT_PUBREC] = {h_ack, NULL, ON_ACTIVE},
	[MOAT_MQTT_PUBREL] = {h_pubrel, NULL, ON_ACTIVE},
	[MOAT_MQTT_PUBCOMP] = {h_ack, NULL, ON_ACTIVE},
	[MOAT_MQTT_SUBSCRIBE] = {h_subscribe, NULL, ON_ACTIVE},
	[MOAT_MQTT_UNSUBSCRIBE] = {h_unsubscribe, NULL, ON_ACTIVE},
	[MOAT_MQTT_PINGREQ] = {h_pingreq, NULL, ON_ACTIVE},
	[MOAT_MQTT_DISCONNECT] = {h_disconnect, NULL, ON_ACTIVE},
	[MOAT_MQTT_AUTH] = {h_auth, NULL, ON_AUTH | ON_ACTIVE},
};

int handle_packet(struct moat_conn *c, struct moat_mqtt_packet *p)
{
	const struct handler *h = &handlers[p->type & 15];

	if (!(h->states & (1u << c->state))) {
		if (c->state == C_NEW) {
			guard_event(c, MOAT_SEC_PROTOCOL_VIOLATION,
				    "first packet is not CONNECT [MQTT-3.1.0-1]");
			conn_close(c, "first packet is not CONNECT [MQTT-3.1.0-1]");
			return -1;
		}
		if (c->state == C_AUTH) {
			connect_refuse(c, MOAT_RC_PROTOCOL_ERROR, "packet other than AUTH during SCRAM");
			return -1;
		}
		return violation(c, MOAT_RC_PROTOCOL_ERROR, "packet not allowed now");
	}
	if (c->state == C_NEW && h->fn_new)
		return h->fn_new(c, p);
	if (c->w->b->store && (p->type == MOAT_MQTT_PUBLISH || p->type == MOAT_MQTT_PUBREL ||
			       p->type == MOAT_MQTT_PUBREC)) {
		/* what one packet writes (a PUBLISH's copies and QoS 2 id) is committed all or none */
		struct moat_store *st = c->w->b->store;
		int rc;
		moat_store_group_begin(st);
		rc = h->fn(c, p);
		moat_store_group_end(st);
		return rc;
	}
	return h->fn(c, p);
}
