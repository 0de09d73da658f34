/*
 * encode.c - encoding of every control packet (see packet.h).
 *
 * Each packet's body is written by one function into a counting writer
 * (wire.h): run with no buffer it measures, run with one it writes, so the
 * size the caller allocates and the bytes written come from the same code.
 * 5.0 packets use the spec's short forms: an acknowledgement or DISCONNECT
 * with reason 0 and no properties omits both, one with no properties omits
 * the property length.
 */
#include <string.h>

#include "core/error.h"
#include "mqtt/internal.h"
#include "mqtt/packet.h"

static bool v5(const struct moat_mqtt_packet *p)
{
	return p->version == MOAT_MQTT_V5;
}

static int props(struct wr *w, const struct moat_mqtt_packet *p, const struct moat_mqtt_props *pr,
		 unsigned where)
{
	return v5(p) ? moat_mqtt_props_put(w, pr, where) : 0;
}

/* True if pr encodes to an empty block (the property length alone). */
static bool props_empty(const struct moat_mqtt_props *pr, unsigned where)
{
	return moat_mqtt_props_size(pr, where) == 1;
}

static int enc_connect(struct wr *w, const struct moat_mqtt_packet *p)
{
	const struct moat_mqtt_connect *c = &p->connect;
	uint8_t fl = 0;

	if (p->version == MOAT_MQTT_V31)
		put_bin(w, MOAT_SLICE_STR("MQIsdp"));
	else
		put_bin(w, MOAT_SLICE_STR("MQTT"));
	put_u8(w, p->version);
	fl |= c->clean_start ? 0x02 : 0;
	if (c->will)
		fl |= (uint8_t)(0x04 | (c->will_qos & 3) << 3 | (c->will_retain ? 0x20 : 0));
	fl |= c->has_password ? 0x40 : 0;
	fl |= c->has_username ? 0x80 : 0;
	put_u8(w, fl);
	put_u16(w, c->keep_alive);
	if (props(w, p, &c->props, MOAT_MQTT_CONNECT) < 0)
		return MOAT_EINVAL;
	put_bin(w, c->client_id);
	if (c->will) {
		if (props(w, p, &c->will_props, MOAT_PROPS_WILL) < 0)
			return MOAT_EINVAL;
		put_bin(w, c->will_topic);
		put_bin(w, c->will_payload);
	}
	if (c->has_username)
		put_bin(w, c->username);
	if (c->has_password)
		put_bin(w, c->password);
	return 0;
}

static int enc_connack(struct wr *w, const struct moat_mqtt_packet *p)
{
	put_u8(w, p->connack.session_present ? 1 : 0);
	put_u8(w, p->connack.reason);
	return props(w, p, &p->connack.props, MOAT_MQTT_CONNACK);
}

static int enc_publish(struct wr *w, const struct moat_mqtt_packet *p)
{
	const struct moat_mqtt_publish *m = &p->publish;

	put_bin(w, m->topic);
	if (m->qos)
		put_u16(w, m->packet_id);
	if (props(w, p, &m->props, MOAT_MQTT_PUBLISH) < 0)
		return MOAT_EINVAL;
	put_bytes(w, m->payload.p, m->payload.len);
	return 0;
}

/* Reason code and properties of a 5.0 ack, DISCONNECT or AUTH, in their short forms. */
static int reason_tail(struct wr *w, const struct moat_mqtt_packet *p, uint8_t reason,
		       const struct moat_mqtt_props *pr)
{
	bool empty = props_empty(pr, p->type);

	if (!v5(p) || (reason == 0 && empty))
		return 0;
	put_u8(w, reason);
	return empty ? 0 : props(w, p, pr, p->type);
}

static int enc_ack(struct wr *w, const struct moat_mqtt_packet *p)
{
	put_u16(w, p->ack.packet_id);
	return reason_tail(w, p, p->ack.reason, &p->ack.props);
}

static int enc_subscribe(struct wr *w, const struct moat_mqtt_packet *p)
{
	put_u16(w, p->subscribe.packet_id);
	if (props(w, p, &p->subscribe.props, p->type) < 0)
		return MOAT_EINVAL;
	put_bytes(w, p->subscribe.entries.p, p->subscribe.entries.len);
	return 0;
}

static int enc_suback(struct wr *w, const struct moat_mqtt_packet *p)
{
	put_u16(w, p->suback.packet_id);
	if (p->type == MOAT_MQTT_UNSUBACK && !v5(p))
		return 0;
	if (props(w, p, &p->suback.props, p->type) < 0)
		return MOAT_EINVAL;
	put_bytes(w, p->suback.reasons.p, p->suback.reasons.len);
	return 0;
}

static int enc_empty(struct wr *w, const struct moat_mqtt_packet *p)
{
	(void)w;
	(void)p;
	return 0;
}

static int enc_disconnect(struct wr *w, const struct moat_mqtt_packet *p)
{
	if (p->type == MOAT_MQTT_AUTH && !v5(p))
		return MOAT_EINVAL;
	return reason_tail(w, p, p->disconnect.reason, &p->disconnect.props);
}

static int (*const encoders[16])(struct wr *, const struct moat_mqtt_packet *) = {
	[MOAT_MQTT_CONNECT] = enc_connect,	   [MOAT_MQTT_CONNACK] = enc_connack,
	[MOAT_MQTT_PUBLISH] = enc_publish,	   [MOAT_MQTT_PUBACK] = enc_ack,
	[MOAT_MQTT_PUBREC] = enc_ack,		   [MOAT_MQTT_PUBREL] = enc_ack,
	[MOAT_MQTT_PUBCOMP] = enc_ack,		   [MOAT_MQTT_SUBSCRIBE] = enc_subscribe,
	[MOAT_MQTT_SUBACK] = enc_suback,	   [MOAT_MQTT_UNSUBSCRIBE] = enc_subscribe,
	[MOAT_MQTT_UNSUBACK] = enc_suback,	   [MOAT_MQTT_PINGREQ] = enc_empty,
	[MOAT_MQTT_PINGRESP] = enc_empty,	   [MOAT_MQTT_DISCONNECT] = enc_disconnect,
	[MOAT_MQTT_AUTH] = enc_disconnect,
};

static uint8_t header_byte(const struct moat_mqtt_packet *p)
{
	uint8_t h = (uint8_t)(p->type << 4);

	if (p->type == MOAT_MQTT_PUBLISH)
		h |= (uint8_t)((p->publish.dup ? 0x08 : 0) | (p->publish.qos & 3) << 1 |
			       (p->publish.retain ? 1 : 0));
	else if (p->type == MOAT_MQTT_PUBREL || p->type == MOAT_MQTT_SUBSCRIBE ||
		 p->type == MOAT_MQTT_UNSUBSCRIBE)
		h |= 0x02;
	return h;
}

/* Measures the body of p. Returns 0 and *body, or MOAT_EINVAL. */
static int body_size(const struct moat_mqtt_packet *p, size_t *body)
{
	struct wr count = {0};

	if (p->type >= 16 || !encoders[p->type])
		return MOAT_EINVAL;
	if (p->version < MOAT_MQTT_V31 || p->version > MOAT_MQTT_V5)
		return MOAT_EINVAL;
	if (encoders[p->type](&count, p) < 0 || count.bad || count.len > MOAT_MQTT_MAX_REMAINING)
		return MOAT_EINVAL;
	*body = count.len;
	return 0;
}

int moat_mqtt_encode_size(const struct moat_mqtt_packet *p, size_t *size)
{
	size_t body;
	int rc = body_size(p, &body);

	if (rc < 0)
		return rc;
	*size = 1 + varint_size((uint32_t)body) + body;
	return 0;
}

int moat_mqtt_encode(const struct moat_mqtt_packet *p, uint8_t *buf, size_t cap, size_t *len)
{
	struct wr w = {buf, cap, 0, false};
	size_t body;
	int rc = body_size(p, &body);

	if (rc < 0)
		return rc;
	if (1 + varint_size((uint32_t)body) + body > cap)
		return MOAT_ENOSPC;
	put_u8(&w, header_byte(p));
	put_varint(&w, (uint32_t)body);
	encoders[p->type](&w, p);
	*len = w.len;
	return 0;
}

int moat_mqtt_sub_put(uint8_t *buf, size_t cap, size_t *len, struct moat_slice filter,
		      uint8_t options)
{
	struct wr w = {buf, cap, *len, false};

	put_bin(&w, filter);
	put_u8(&w, options);
	return wr_finish(&w, len);
}

int moat_mqtt_unsub_put(uint8_t *buf, size_t cap, size_t *len, struct moat_slice filter)
{
	struct wr w = {buf, cap, *len, false};

	put_bin(&w, filter);
	return wr_finish(&w, len);
}
