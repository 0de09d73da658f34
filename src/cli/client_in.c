/*
 * client_in.c - what the client does with each packet the server sends (see
 * client_int.h), and the -d output in mosquitto's format.
 *
 * moat_client_handle() decodes a packet with the codec and dispatches it
 * through the handler table at the bottom; the codec has already refused
 * what no server may send, so a handler checks only session state: packet
 * identifiers in flight, the topic alias map, our Receive Maximum. The QoS
 * state machines are drawn in client.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client_int.h"
#include "core/error.h"

static bool v5(const struct moat_client *c)
{
	return c->version == MOAT_MQTT_V5;
}

/* Printed as mosquitto's -d prints it: "Client <id> <text>". */
__attribute__((format(printf, 2, 3))) static void debug(const struct moat_client *c,
							const char *fmt, ...)
{
	va_list ap;

	if (!c->o || !c->o->debug)
		return;
	printf("Client %s ", c->id && c->id[0] ? c->id : "(null)");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int send_ack(struct moat_client *c, uint8_t type, uint16_t id, uint8_t reason)
{
	struct moat_mqtt_packet p = {.type = type, .version = c->version};

	p.ack.packet_id = id;
	p.ack.reason = v5(c) ? reason : 0;
	return moat_client_send(c, &p);
}

int moat_client_server_fault(struct moat_client *c, int code, uint8_t reason, const char *why)
{
	if (v5(c) && c->got_connack && c->t) {
		struct moat_mqtt_packet p = {.type = MOAT_MQTT_DISCONNECT, .version = c->version};
		p.disconnect.reason = reason;
		moat_client_send(c, &p);
	}
	moat_client_close(c);
	return moat_client_fail(c, code, "server broke the protocol: %s", why);
}

/* ---- debug output, in mosquitto's -d format ---- */

static void debug_publish(const struct moat_client *c, const char *dir,
			  const struct moat_mqtt_publish *m, struct moat_slice topic)
{
	debug(c, "%s PUBLISH (d%d, q%d, r%d, m%u, '%.*s', ... (%zu bytes))", dir, m->dup, m->qos,
	      m->retain, m->packet_id, (int)topic.len, (const char *)topic.p, m->payload.len);
}

void moat_client_debug_sent(const struct moat_client *c, const struct moat_mqtt_packet *p)
{
	const char *name = moat_mqtt_type_name(p->type);
	struct moat_mqtt_sub_iter it;
	struct moat_slice f;
	uint8_t opt;

	if (!c->o->debug)
		return;
	switch (p->type) {
	case MOAT_MQTT_PUBLISH:
		debug_publish(c, "sending", &p->publish, p->publish.topic);
		break;
	case MOAT_MQTT_PUBACK:
	case MOAT_MQTT_PUBREC:
		debug(c, "sending %s (m%u, rc%u)", name, p->ack.packet_id, p->ack.reason);
		break;
	case MOAT_MQTT_PUBREL:
	case MOAT_MQTT_PUBCOMP:
		debug(c, "sending %s (m%u)", name, p->ack.packet_id);
		break;
	case MOAT_MQTT_SUBSCRIBE:
		moat_mqtt_sub_iter(&p->subscribe, &it);
		while (moat_mqtt_sub_next(&it, &f, &opt))
			debug(c,
			      "sending SUBSCRIBE (Mid: %u, Topic: %.*s, QoS: %d, Options: 0x%02x)",
			      p->subscribe.packet_id, (int)f.len, (const char *)f.p,
			      MOAT_SUBOPT_QOS(opt), opt & 0xFC);
		break;
	case MOAT_MQTT_UNSUBSCRIBE:
		moat_mqtt_sub_iter(&p->subscribe, &it);
		while (moat_mqtt_unsub_next(&it, &f))
			debug(c, "sending UNSUBSCRIBE (Mid: %u, Topic: %.*s)",
			      p->subscribe.packet_id, (int)f.len, (const char *)f.p);
		break;
	default: /* CONNECT (never with its password), PINGREQ, DISCONNECT */
		debug(c, "sending %s", name);
		break;
	}
}

/* ---- handlers of packets from the server ---- */

static int fire_published(struct moat_client *c, uint16_t id, uint8_t reason)
{
	if (c->inflight)
		c->inflight--;
	if (reason >= 0x80)
		c->pub_failures++;
	if (c->o->on_published)
		c->o->on_published(c->o->ctx, c, id, reason);
	return 0;
}

/* Applies the limits a 5.0 CONNACK announces. Returns 0 or MOAT_ENOMEM. */
static int connack_limits(struct moat_client *c, const struct moat_mqtt_props *pr)
{
	if (moat_mqtt_props_has(pr, MOAT_PROP_RECEIVE_MAXIMUM))
		c->send_max = pr->receive_maximum;
	if (moat_mqtt_props_has(pr, MOAT_PROP_MAXIMUM_PACKET_SIZE))
		c->out_max_packet = pr->maximum_packet_size;
	if (moat_mqtt_props_has(pr, MOAT_PROP_MAXIMUM_QOS))
		c->max_qos = pr->maximum_qos;
	if (moat_mqtt_props_has(pr, MOAT_PROP_RETAIN_AVAILABLE))
		c->retain_ok = pr->retain_available;
	if (moat_mqtt_props_has(pr, MOAT_PROP_SERVER_KEEP_ALIVE))
		c->keep_alive = pr->server_keep_alive;
	if (moat_mqtt_props_has(pr, MOAT_PROP_ASSIGNED_CLIENT_IDENTIFIER))
		moat_client_set_id(c, pr->assigned_client_id);
	if (moat_mqtt_props_has(pr, MOAT_PROP_TOPIC_ALIAS_MAXIMUM) && pr->topic_alias_maximum) {
		c->out_alias = calloc((size_t)pr->topic_alias_maximum + 1, sizeof(*c->out_alias));
		if (!c->out_alias)
			return moat_client_fail(c, MOAT_ENOMEM, "out of memory");
		c->out_alias_max = pr->topic_alias_maximum;
	}
	return 0;
}

static int on_connack(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	const struct moat_mqtt_connack *a = &p->connack;

	if (c->got_connack)
		return moat_client_server_fault(c, MOAT_EPROTOCOL, MOAT_RC_PROTOCOL_ERROR,
						"a second CONNACK");
	c->got_connack = true;
	c->connack_rc = a->reason;
	debug(c, "received CONNACK (%u)", a->reason);
	if (a->reason != 0) {
		moat_client_close(c);
		return moat_client_fail(c, MOAT_EDENIED, "%s",
					v5(c) ? moat_mqtt_reason_name(a->reason, MOAT_MQTT_CONNACK)
					      : moat_mqtt_connack_v3_name(a->reason));
	}
	return v5(c) ? connack_limits(c, &a->props) : 0;
}

/*
 * Resolves the topic of an incoming 5.0 PUBLISH that uses a Topic Alias,
 * recording a new mapping. Returns 0 and *topic, or a server fault.
 */
static int incoming_alias(struct moat_client *c, const struct moat_mqtt_publish *m,
			  struct moat_slice *topic)
{
	uint16_t a = m->props.topic_alias;

	if (a == 0 || a > c->in_alias_max)
		return moat_client_server_fault(c, MOAT_EPROTOCOL, MOAT_RC_TOPIC_ALIAS_INVALID,
						"Topic Alias above our Topic Alias Maximum");
	if (m->topic.len == 0) {
		if (!c->in_alias[a].p)
			return moat_client_server_fault(c, MOAT_EPROTOCOL, MOAT_RC_PROTOCOL_ERROR,
							"Topic Alias that was never mapped");
		*topic = (struct moat_slice){c->in_alias[a].p, c->in_alias[a].len};
		return 0;
	}
	if (moat_client_topic_set(&c->in_alias[a], m->topic) < 0)
		return moat_client_fail(c, MOAT_ENOMEM, "out of memory");
	*topic = m->topic;
	return 0;
}

static void deliver(struct moat_client *c, const struct moat_mqtt_publish *m,
		    struct moat_slice topic)
{
	struct moat_client_msg msg = {
		.topic = topic,
		.payload = m->payload,
		.qos = m->qos,
		.retain = m->retain,
		.dup = m->dup,
		.packet_id = m->packet_id,
		.props = &m->props,
	};

	if (c->o->on_message)
		c->o->on_message(c->o->ctx, c, &msg);
}

static int on_publish(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	const struct moat_mqtt_publish *m = &p->publish;
	struct moat_slice topic = m->topic;
	int rc;

	if (v5(c) && moat_mqtt_props_has(&m->props, MOAT_PROP_TOPIC_ALIAS)) {
		rc = incoming_alias(c, m, &topic);
		if (rc < 0)
			return rc;
	}
	debug_publish(c, "received", m, topic);
	if (m->qos == 0) {
		deliver(c, m, topic);
		return 0;
	}
	if (m->qos == 1) {
		deliver(c, m, topic);
		return send_ack(c, MOAT_MQTT_PUBACK, m->packet_id, 0);
	}
	if (!c->in_q2[m->packet_id]) {
		if (c->in_pending >= c->recv_max)
			return moat_client_server_fault(
				c, MOAT_EPROTOCOL, MOAT_RC_RECEIVE_MAXIMUM_EXCEEDED,
				"more QoS 2 messages than our Receive Maximum");
		c->in_q2[m->packet_id] = 1;
		c->in_pending++;
		deliver(c, m, topic);
	}
	return send_ack(c, MOAT_MQTT_PUBREC, m->packet_id, 0);
}

static int on_puback(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	uint16_t id = p->ack.packet_id;

	debug(c, "received PUBACK (Mid: %u, RC:%u)", id, p->ack.reason);
	if (c->out[id] != OUT_PUBACK)
		return 0; /* not ours in this state: nothing to complete */
	c->out[id] = OUT_FREE;
	return fire_published(c, id, p->ack.reason);
}

static int on_pubrec(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	uint16_t id = p->ack.packet_id;

	debug(c, "received PUBREC (Mid: %u)", id);
	if (c->out[id] != OUT_PUBREC && c->out[id] != OUT_PUBCOMP)
		return send_ack(c, MOAT_MQTT_PUBREL, id, MOAT_RC_PACKET_IDENTIFIER_NOT_FOUND);
	if (p->ack.reason >= 0x80) {
		c->out[id] = OUT_FREE;
		return fire_published(c, id, p->ack.reason);
	}
	c->out[id] = OUT_PUBCOMP;
	return send_ack(c, MOAT_MQTT_PUBREL, id, 0);
}

static int on_pubcomp(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	uint16_t id = p->ack.packet_id;

	debug(c, "received PUBCOMP (Mid: %u, RC:%u)", id, p->ack.reason);
	if (c->out[id] != OUT_PUBCOMP)
		return 0;
	c->out[id] = OUT_FREE;
	return fire_published(c, id, p->ack.reason);
}

static int on_pubrel(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	uint16_t id = p->ack.packet_id;
	uint8_t reason = 0;

	debug(c, "received PUBREL (Mid: %u)", id);
	if (c->in_q2[id]) {
		c->in_q2[id] = 0;
		c->in_pending--;
	} else {
		reason = MOAT_RC_PACKET_IDENTIFIER_NOT_FOUND;
	}
	return send_ack(c, MOAT_MQTT_PUBCOMP, id, reason);
}

static int on_suback(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	const struct moat_mqtt_suback *s = &p->suback;
	uint8_t want = p->type == MOAT_MQTT_SUBACK ? OUT_SUBACK : OUT_UNSUBACK;

	debug(c, "received %s", moat_mqtt_type_name(p->type));
	if (c->out[s->packet_id] != want || s->packet_id != c->ack_id)
		return 0;
	c->out[s->packet_id] = OUT_FREE;
	c->ack_done = true;
	if (p->type == MOAT_MQTT_UNSUBACK && !v5(c))
		return 0; /* 3.x UNSUBACK has no codes: the caller's zeros stand */
	if (s->reasons.len != c->ack_n) {
		c->ack_rc = moat_client_fail(
			c, MOAT_EPROTOCOL, "%s with %zu reason codes for %zu filters",
			moat_mqtt_type_name(p->type), s->reasons.len, c->ack_n);
		return 0;
	}
	memcpy(c->ack_reasons, s->reasons.p, c->ack_n);
	return 0;
}

static int on_pingresp(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	(void)p;
	debug(c, "received PINGRESP");
	c->ping_sent = 0;
	return 0;
}

static int on_disconnect(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	const struct moat_mqtt_props *pr = &p->disconnect.props;

	debug(c, "received DISCONNECT (%u)", p->disconnect.reason);
	moat_client_close(c);
	if (moat_mqtt_props_has(pr, MOAT_PROP_REASON_STRING))
		return moat_client_fail(
			c, MOAT_ECLOSED, "the server disconnected: %s (%.*s)",
			moat_mqtt_reason_name(p->disconnect.reason, MOAT_MQTT_DISCONNECT),
			(int)pr->reason_string.len, (const char *)pr->reason_string.p);
	return moat_client_fail(c, MOAT_ECLOSED, "the server disconnected: %s",
				moat_mqtt_reason_name(p->disconnect.reason, MOAT_MQTT_DISCONNECT));
}

static int on_auth(struct moat_client *c, const struct moat_mqtt_packet *p)
{
	(void)p;
	return moat_client_server_fault(c, MOAT_EPROTOCOL, MOAT_RC_PROTOCOL_ERROR,
					"AUTH without an authentication method in CONNECT");
}

/* The packets a server may send; the decoder has refused the others. */
static int (*const handlers[16])(struct moat_client *, const struct moat_mqtt_packet *) = {
	[MOAT_MQTT_CONNACK] = on_connack,   [MOAT_MQTT_PUBLISH] = on_publish,
	[MOAT_MQTT_PUBACK] = on_puback,     [MOAT_MQTT_PUBREC] = on_pubrec,
	[MOAT_MQTT_PUBREL] = on_pubrel,     [MOAT_MQTT_PUBCOMP] = on_pubcomp,
	[MOAT_MQTT_SUBACK] = on_suback,     [MOAT_MQTT_UNSUBACK] = on_suback,
	[MOAT_MQTT_PINGRESP] = on_pingresp, [MOAT_MQTT_DISCONNECT] = on_disconnect,
	[MOAT_MQTT_AUTH] = on_auth,
};

/*
 * A 3.x server answers a 5.0 CONNECT with a 3.x CONNACK (return code 1),
 * which does not decode as 5.0. Returns MOAT_EDENIED if fr is such an
 * answer, else 0.
 */
static int v3_refusal(struct moat_client *c, const struct moat_mqtt_frame *fr)
{
	struct moat_mqtt_decode_opts opts = {MOAT_MQTT_V311, false, false};
	struct moat_mqtt_packet p;
	struct moat_mqtt_fault f;

	if (!v5(c) || c->got_connack || fr->header >> 4 != MOAT_MQTT_CONNACK)
		return 0;
	if (moat_mqtt_decode(&opts, fr->header, fr->body, fr->remaining, &p, &f) < 0 ||
	    p.connack.reason == 0)
		return 0;
	c->got_connack = true;
	c->connack_rc = MOAT_RC_UNSUPPORTED_PROTOCOL_VERSION;
	moat_client_close(c);
	return moat_client_fail(c, MOAT_EDENIED,
				"%s. Try connecting to an MQTT v5 broker, or use MQTT v3.x mode",
				moat_mqtt_connack_v3_name(p.connack.reason));
}

int moat_client_handle(struct moat_client *c, const struct moat_mqtt_frame *fr)
{
	struct moat_mqtt_decode_opts opts = {c->version, false, false};
	struct moat_mqtt_packet p;
	struct moat_mqtt_fault f;
	uint8_t type = fr->header >> 4;

	if (moat_mqtt_decode(&opts, fr->header, fr->body, fr->remaining, &p, &f) < 0) {
		if (v3_refusal(c, fr) < 0)
			return MOAT_EDENIED;
		return moat_client_server_fault(c, f.code, f.reason, f.why);
	}
	if (!c->got_connack && type != MOAT_MQTT_CONNACK)
		return moat_client_server_fault(c, MOAT_EPROTOCOL, MOAT_RC_PROTOCOL_ERROR,
						"a packet other than CONNACK before CONNACK");
	if (!handlers[type])
		return moat_client_server_fault(c, MOAT_EPROTOCOL, MOAT_RC_PROTOCOL_ERROR,
						"a packet a server may not send");
	return handlers[type](c, &p);
}
