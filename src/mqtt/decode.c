/*
 * decode.c - decoding of every control packet, with every check the MQTT
 * 3.1, 3.1.1 and 5.0 specifications allow a receiver to make from the packet
 * alone (see packet.h for the contract).
 *
 * Each packet type has a decoder in the table at the bottom, with the
 * directions it may travel in. A decoder reads through a bounds-checked
 * cursor (wire.h), so no length in the packet can make it read past the
 * body, and it refuses any byte left over once the packet's fields are read.
 * Rule names in the faults are MQTT 5.0's statement numbers where 5.0 has
 * the rule, else 3.1.1's.
 */
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"
#include "mqtt/internal.h"
#include "mqtt/packet.h"
#include "mqtt/topic.h"

struct dec {
	struct rd r;
	const struct moat_mqtt_decode_opts *opts;
	uint8_t version;
	uint8_t header;
	struct moat_mqtt_fault *f;
};

static int malformed(struct dec *d, const char *rule, const char *why)
{
	return moat_mqtt_fail(d->f, MOAT_EMALFORMED, rule, why);
}

static int protocol(struct dec *d, const char *rule, const char *why)
{
	return moat_mqtt_fail(d->f, MOAT_EPROTOCOL, rule, why);
}

static bool v5(const struct dec *d)
{
	return d->version == MOAT_MQTT_V5;
}

static int str(struct dec *d, struct moat_slice *s)
{
	if (get_bin(&d->r, s) < 0)
		return malformed(d, NULL, "string length runs past the packet");
	return moat_mqtt_check_utf8(s->p, s->len, d->opts->strict_utf8, d->f);
}

static int bin(struct dec *d, struct moat_slice *s)
{
	if (get_bin(&d->r, s) < 0)
		return malformed(d, NULL, "binary data length runs past the packet");
	return 0;
}

static int u16(struct dec *d, uint16_t *v)
{
	if (get_u16(&d->r, v) < 0)
		return malformed(d, NULL, "packet too short");
	return 0;
}

static int u8(struct dec *d, uint8_t *v)
{
	if (get_u8(&d->r, v) < 0)
		return malformed(d, NULL, "packet too short");
	return 0;
}

static int packet_id(struct dec *d, uint16_t *id)
{
	if (u16(d, id) < 0)
		return d->f->code;
	if (*id == 0)
		return protocol(d, "MQTT-2.2.1-3", "packet identifier 0");
	return 0;
}

/* Reads a property block for `where` if the version has properties. */
static int props(struct dec *d, unsigned where, struct moat_mqtt_props *out)
{
	size_t used;
	int rc;

	if (!v5(d))
		return 0;
	rc = moat_mqtt_props_decode(d->r.p, rd_left(&d->r), where, d->opts->strict_utf8, out,
				    &used, d->f);
	if (rc == 0)
		d->r.p += used;
	return rc;
}

static int end(struct dec *d)
{
	if (rd_left(&d->r))
		return malformed(d, NULL, "bytes left over after the packet's fields");
	return 0;
}

/* "Authentication Data without an Authentication Method" (3.1.2.11.10, 3.15.2.2.3). */
static int auth_pair(struct dec *d, const struct moat_mqtt_props *pr)
{
	if (moat_mqtt_props_has(pr, MOAT_PROP_AUTHENTICATION_DATA) &&
	    !moat_mqtt_props_has(pr, MOAT_PROP_AUTHENTICATION_METHOD))
		return protocol(d, NULL, "Authentication Data without Authentication Method");
	return 0;
}

/* PFI 1 promises UTF-8 character data (3.3.2.3.2): refused with 0x99. */
static int payload_format(struct dec *d, const struct moat_mqtt_props *pr,
			  struct moat_slice payload)
{
	if (!moat_mqtt_props_has(pr, MOAT_PROP_PAYLOAD_FORMAT_INDICATOR) || pr->payload_format != 1)
		return 0;
	if (moat_utf8_check(payload.p, payload.len,
			    MOAT_UTF8_ALLOW_NUL | MOAT_UTF8_ALLOW_DISCOURAGED) == MOAT_UTF8_OK)
		return 0;
	return moat_mqtt_fail_rc(d->f, MOAT_EPROTOCOL, MOAT_RC_PAYLOAD_FORMAT_INVALID, 0,
				 "MQTT-3.3.2-4", "payload is not UTF-8 but its format says it is");
}

/* A topic name that is present must be a valid one; 5.0 answers 0x90. */
static int topic_name(struct dec *d, struct moat_slice t, const char *why)
{
	if (moat_mqtt_topic_name_check(t.p, t.len) == 0)
		return 0;
	return moat_mqtt_fail_rc(d->f, MOAT_EPROTOCOL, MOAT_RC_TOPIC_NAME_INVALID, 0,
				 "MQTT-3.3.2-2", why);
}

/* ---- CONNECT ---- */

uint8_t moat_mqtt_connect_version(const uint8_t *body, size_t len)
{
	struct rd r = {body, body + len};
	struct moat_slice name;
	uint8_t level = 0;

	if (get_bin(&r, &name) < 0 || get_u8(&r, &level) < 0)
		return 0;
	if (name.len == 4 && memcmp(name.p, "MQTT", 4) == 0)
		return level == MOAT_MQTT_V5 ? MOAT_MQTT_V5 : MOAT_MQTT_V311;
	if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0)
		return MOAT_MQTT_V31;
	return 0;
}

static int connect_level(struct dec *d, struct moat_mqtt_connect *c)
{
	struct moat_slice name;
	uint8_t level = 0;

	if (get_bin(&d->r, &name) < 0 || u8(d, &level) < 0)
		return malformed(d, NULL, "CONNECT too short for protocol name and level");
	if (name.len == 4 && memcmp(name.p, "MQTT", 4) == 0) {
		if (level != MOAT_MQTT_V311 && level != MOAT_MQTT_V5)
			return moat_mqtt_fail(d->f, MOAT_EVERSION, "MQTT-3.1.2-2",
					      "unsupported protocol level");
	} else if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0) {
		if (level != MOAT_MQTT_V31)
			return moat_mqtt_fail(d->f, MOAT_EVERSION, "MQTT-3.1.2-2",
					      "protocol name MQIsdp needs level 3");
	} else {
		return moat_mqtt_fail_rc(d->f, MOAT_EPROTOCOL, MOAT_RC_UNSUPPORTED_PROTOCOL_VERSION,
					 0, "MQTT-3.1.2-1", "unknown protocol name");
	}
	c->version = level;
	d->version = level;
	return 0;
}

static int connect_flags(struct dec *d, struct moat_mqtt_connect *c)
{
	uint8_t fl = 0;

	if (u8(d, &fl) < 0 || u16(d, &c->keep_alive) < 0)
		return d->f->code;
	if (fl & 0x01)
		return malformed(d, "MQTT-3.1.2-3", "reserved CONNECT flag is set");
	c->clean_start = fl & 0x02;
	c->will = fl & 0x04;
	c->will_qos = (fl >> 3) & 0x03;
	c->will_retain = fl & 0x20;
	c->has_password = fl & 0x40;
	c->has_username = fl & 0x80;
	if (c->will_qos == 3)
		return malformed(d, "MQTT-3.1.2-12", "will QoS 3");
	if (!c->will && (c->will_qos || c->will_retain))
		return malformed(d, "MQTT-3.1.2-11", "will QoS or retain set without the will flag");
	if (!v5(d) && c->has_password && !c->has_username)
		return malformed(d, "MQTT-3.1.2-22", "password flag set without user name flag");
	return 0;
}

static int connect_client_id(struct dec *d, struct moat_mqtt_connect *c)
{
	if (str(d, &c->client_id) < 0)
		return d->f->code;
	if (c->client_id.len)
		return 0;
	if (d->version == MOAT_MQTT_V31 || (d->version == MOAT_MQTT_V311 && !c->clean_start))
		return moat_mqtt_fail_rc(d->f, MOAT_EPROTOCOL, MOAT_RC_CLIENT_IDENTIFIER_NOT_VALID,
					 MOAT_CONNACK_IDENTIFIER_REJECTED, "MQTT-3.1.3-8",
					 "empty client identifier without clean session");
	return 0;
}

static int connect_will(struct dec *d, struct moat_mqtt_connect *c)
{
	if (props(d, MOAT_PROPS_WILL, &c->will_props) < 0)
		return d->f->code;
	if (str(d, &c->will_topic) < 0 || bin(d, &c->will_payload) < 0)
		return d->f->code;
	if (topic_name(d, c->will_topic, "will topic is empty or has a wildcard") < 0)
		return d->f->code;
	return payload_format(d, &c->will_props, c->will_payload);
}

static int dec_connect(struct dec *d, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_connect *c = &p->connect;

	if (connect_level(d, c) < 0 || connect_flags(d, c) < 0)
		return d->f->code;
	if (props(d, MOAT_MQTT_CONNECT, &c->props) < 0 || auth_pair(d, &c->props) < 0)
		return d->f->code;
	if (connect_client_id(d, c) < 0)
		return d->f->code;
	if (c->will && connect_will(d, c) < 0)
		return d->f->code;
	if (c->has_username && str(d, &c->username) < 0)
		return d->f->code;
	if (c->has_password && bin(d, &c->password) < 0)
		return d->f->code;
	p->version = c->version;
	return end(d);
}

/* ---- CONNACK ---- */

static int dec_connack(struct dec *d, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_connack *c = &p->connack;
	uint8_t flags = 0;

	if (u8(d, &flags) < 0 || u8(d, &c->reason) < 0)
		return d->f->code;
	if (flags & 0xFE)
		return malformed(d, "MQTT-3.2.2-1", "reserved CONNACK flags set");
	c->session_present = flags & 1;
	if (v5(d) ? !moat_mqtt_reason_valid(c->reason, MOAT_MQTT_CONNACK) : c->reason > 5)
		return protocol(d, NULL, "invalid CONNACK reason code");
	if (c->session_present && c->reason)
		return protocol(d, "MQTT-3.2.2-6", "session present with a refusal");
	if (props(d, MOAT_MQTT_CONNACK, &c->props) < 0 || auth_pair(d, &c->props) < 0)
		return d->f->code;
	return end(d);
}

/* ---- PUBLISH ---- */

static int dec_publish(struct dec *d, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_publish *m = &p->publish;

	m->dup = d->header & 0x08;
	m->qos = (d->header >> 1) & 0x03;
	m->retain = d->header & 0x01;
	if (str(d, &m->topic) < 0)
		return d->f->code;
	if (m->qos && packet_id(d, &m->packet_id) < 0)
		return d->f->code;
	if (props(d, MOAT_MQTT_PUBLISH, &m->props) < 0)
		return d->f->code;
	if (d->opts->from_client && moat_mqtt_props_has(&m->props, MOAT_PROP_SUBSCRIPTION_IDENTIFIER))
		return protocol(d, "MQTT-3.3.4-6", "Subscription Identifier in a PUBLISH from a client");
	if (m->topic.len == 0) {
		if (!v5(d))
			return malformed(d, "MQTT-4.7.3-1", "empty topic name");
		if (!moat_mqtt_props_has(&m->props, MOAT_PROP_TOPIC_ALIAS))
			return protocol(d, "MQTT-3.3.2-1", "empty topic name without a Topic Alias");
	} else if (topic_name(d, m->topic, "topic name has a wildcard") < 0) {
		return d->f->code;
	}
	m->payload.p = d->r.p;
	m->payload.len = rd_left(&d->r);
	d->r.p = d->r.end;
	return payload_format(d, &m->props, m->payload);
}

/* ---- PUBACK, PUBREC, PUBREL, PUBCOMP ---- */

static int dec_ack(struct dec *d, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_ack *a = &p->ack;

	if (packet_id(d, &a->packet_id) < 0)
		return d->f->code;
	if (!v5(d) || !rd_left(&d->r))
		return end(d);
	if (u8(d, &a->reason) < 0)
		return d->f->code;
	if (!moat_mqtt_reason_valid(a->reason, p->type))
		return protocol(d, NULL, "reason code not allowed in this packet");
	if (rd_left(&d->r) && props(d, p->type, &a->props) < 0)
		return d->f->code;
	return end(d);
}

/* ---- SUBSCRIBE ---- */

static int sub_options(struct dec *d, uint8_t o, struct moat_slice filter)
{
	struct moat_slice g, f;

	if (o & (v5(d) ? 0xC0 : 0xFC))
		return malformed(d, v5(d) ? "MQTT-3.8.3-5" : "MQTT-3.8.3-4",
				 "reserved subscription option bits set");
	if (MOAT_SUBOPT_QOS(o) == 3)
		return malformed(d, "MQTT-3.8.3-2", "requested QoS 3");
	if (MOAT_SUBOPT_RETAIN_HANDLING(o) == 3)
		return protocol(d, NULL, "Retain Handling 3");
	if ((o & MOAT_SUBOPT_NO_LOCAL) && moat_mqtt_share_split(filter.p, filter.len, &g, &f) == 1)
		return protocol(d, "MQTT-3.8.3-4", "No Local on a shared subscription");
	return 0;
}

static int filter(struct dec *d, struct moat_slice *f)
{
	if (str(d, f) < 0)
		return d->f->code;
	if (moat_mqtt_topic_filter_check(f->p, f->len) < 0)
		return malformed(d, "MQTT-4.7.1-1", "invalid topic filter");
	return 0;
}

static int dec_subscribe(struct dec *d, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_subscribe *s = &p->subscribe;
	bool unsub = p->type == MOAT_MQTT_UNSUBSCRIBE;

	if (packet_id(d, &s->packet_id) < 0 || props(d, p->type, &s->props) < 0)
		return d->f->code;
	s->entries.p = d->r.p;
	s->entries.len = rd_left(&d->r);
	s->count = 0;
	while (rd_left(&d->r)) {
		struct moat_slice f;
		uint8_t o = 0;

		if (filter(d, &f) < 0)
			return d->f->code;
		if (!unsub && (u8(d, &o) < 0 || sub_options(d, o, f) < 0))
			return d->f->code;
		s->count++;
	}
	if (s->count == 0)
		return protocol(d, unsub ? "MQTT-3.10.3-2" : "MQTT-3.8.3-3", "no topic filters");
	return 0;
}

/* ---- SUBACK, UNSUBACK ---- */

static bool suback_code_valid(const struct dec *d, uint8_t rc, uint8_t type)
{
	if (v5(d))
		return moat_mqtt_reason_valid(rc, type);
	return rc <= 2 || rc == 0x80;
}

static int dec_suback(struct dec *d, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_suback *s = &p->suback;
	size_t i;

	if (packet_id(d, &s->packet_id) < 0 || props(d, p->type, &s->props) < 0)
		return d->f->code;
	s->reasons.p = d->r.p;
	s->reasons.len = rd_left(&d->r);
	d->r.p = d->r.end;
	if (p->type == MOAT_MQTT_UNSUBACK && !v5(d)) {
		if (s->reasons.len)
			return malformed(d, NULL, "UNSUBACK longer than 2 bytes");
		return 0;
	}
	if (s->reasons.len == 0)
		return protocol(d, NULL, "acknowledgement without reason codes");
	for (i = 0; i < s->reasons.len; i++)
		if (!suback_code_valid(d, s->reasons.p[i], p->type))
			return protocol(d, NULL, "invalid reason code in acknowledgement");
	return 0;
}

/* ---- PINGREQ, PINGRESP ---- */

static int dec_empty(struct dec *d, struct moat_mqtt_packet *p)
{
	(void)p;
	return end(d);
}

/* ---- DISCONNECT, AUTH ---- */

static int dec_disconnect(struct dec *d, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_disconnect *x = &p->disconnect;

	/* Even the short form of AUTH lacks the method it must carry [3.15.2.2.2]. */
	if (p->type == MOAT_MQTT_AUTH && !rd_left(&d->r))
		return protocol(d, NULL, "AUTH without Authentication Method");
	if (!v5(d) || !rd_left(&d->r))
		return end(d);
	if (u8(d, &x->reason) < 0)
		return d->f->code;
	if (!moat_mqtt_reason_valid(x->reason, p->type))
		return protocol(d, NULL, "reason code not allowed in this packet");
	if (rd_left(&d->r) && props(d, p->type, &x->props) < 0)
		return d->f->code;
	if (p->type == MOAT_MQTT_DISCONNECT && !d->opts->from_client &&
	    moat_mqtt_props_has(&x->props, MOAT_PROP_SESSION_EXPIRY_INTERVAL))
		return protocol(d, "MQTT-3.14.2-2", "Session Expiry Interval in a server's DISCONNECT");
	if (p->type == MOAT_MQTT_AUTH &&
	    !moat_mqtt_props_has(&x->props, MOAT_PROP_AUTHENTICATION_METHOD))
		return protocol(d, NULL, "AUTH without Authentication Method");
	if (auth_pair(d, &x->props) < 0)
		return d->f->code;
	return end(d);
}

/* ---- dispatch ---- */

enum { FROM_CLIENT = 1, FROM_SERVER = 2, BOTH = 3 };

struct decoder {
	int (*fn)(struct dec *, struct moat_mqtt_packet *);
	uint8_t from; /* who may send it */
	uint8_t min_version;
};

static const struct decoder decoders[16] = {
	[MOAT_MQTT_CONNECT] = {dec_connect, FROM_CLIENT, MOAT_MQTT_V31},
	[MOAT_MQTT_CONNACK] = {dec_connack, FROM_SERVER, MOAT_MQTT_V31},
	[MOAT_MQTT_PUBLISH] = {dec_publish, BOTH, MOAT_MQTT_V31},
	[MOAT_MQTT_PUBACK] = {dec_ack, BOTH, MOAT_MQTT_V31},
	[MOAT_MQTT_PUBREC] = {dec_ack, BOTH, MOAT_MQTT_V31},
	[MOAT_MQTT_PUBREL] = {dec_ack, BOTH, MOAT_MQTT_V31},
	[MOAT_MQTT_PUBCOMP] = {dec_ack, BOTH, MOAT_MQTT_V31},
	[MOAT_MQTT_SUBSCRIBE] = {dec_subscribe, FROM_CLIENT, MOAT_MQTT_V31},
	[MOAT_MQTT_SUBACK] = {dec_suback, FROM_SERVER, MOAT_MQTT_V31},
	[MOAT_MQTT_UNSUBSCRIBE] = {dec_subscribe, FROM_CLIENT, MOAT_MQTT_V31},
	[MOAT_MQTT_UNSUBACK] = {dec_suback, FROM_SERVER, MOAT_MQTT_V31},
	[MOAT_MQTT_PINGREQ] = {dec_empty, FROM_CLIENT, MOAT_MQTT_V31},
	[MOAT_MQTT_PINGRESP] = {dec_empty, FROM_SERVER, MOAT_MQTT_V31},
	[MOAT_MQTT_DISCONNECT] = {dec_disconnect, BOTH, MOAT_MQTT_V31},
	[MOAT_MQTT_AUTH] = {dec_disconnect, BOTH, MOAT_MQTT_V5},
};

int moat_mqtt_header_check(uint8_t header, struct moat_mqtt_fault *fault)
{
	uint8_t type = header >> 4, flags = header & 0x0F;

	if (type == 0)
		return moat_mqtt_fail(fault, MOAT_EMALFORMED, "MQTT-2.1.3-1", "reserved packet type 0");
	if (type == MOAT_MQTT_PUBLISH) {
		if ((flags & 0x06) == 0x06)
			return moat_mqtt_fail(fault, MOAT_EMALFORMED, "MQTT-3.3.1-4", "PUBLISH QoS 3");
		if ((flags & 0x08) && !(flags & 0x06))
			return moat_mqtt_fail(fault, MOAT_EMALFORMED, "MQTT-3.3.1-2",
					      "DUP set on a QoS 0 PUBLISH");
		return 0;
	}
	if (type == MOAT_MQTT_PUBREL || type == MOAT_MQTT_SUBSCRIBE || type == MOAT_MQTT_UNSUBSCRIBE) {
		/* 0x0A: MQTT 3.1 set DUP on retries of these; moat_mqtt_decode allows it in 3.1 only. */
		if (flags != 0x02 && flags != 0x0A)
			return moat_mqtt_fail(fault, MOAT_EMALFORMED, "MQTT-2.1.3-1",
					      "fixed header flags must be 0010");
	} else if (flags != 0) {
		return moat_mqtt_fail(fault, MOAT_EMALFORMED, "MQTT-2.1.3-1",
				      "fixed header flags must be 0000");
	}
	return 0;
}

int moat_mqtt_decode(const struct moat_mqtt_decode_opts *opts, uint8_t header,
		     const uint8_t *body, size_t len, struct moat_mqtt_packet *out,
		     struct moat_mqtt_fault *fault)
{
	struct dec d = {{body, body + len}, opts, opts->version, header, fault};
	const struct decoder *dc = &decoders[header >> 4];
	struct moat_mqtt_packet p;
	uint8_t dir = opts->from_client ? FROM_CLIENT : FROM_SERVER;

	if (moat_mqtt_header_check(header, fault) < 0)
		return fault->code;
	if (header >> 4 != MOAT_MQTT_CONNECT && d.version == 0)
		return moat_mqtt_fail(fault, MOAT_EPROTOCOL, "MQTT-3.1.0-1",
				      "first packet is not CONNECT");
	if ((header & 0x0F) == 0x0A && header >> 4 != MOAT_MQTT_PUBLISH && d.version != MOAT_MQTT_V31)
		return moat_mqtt_fail(fault, MOAT_EMALFORMED, "MQTT-2.1.3-1",
				      "fixed header flags must be 0010");
	if (header >> 4 != MOAT_MQTT_CONNECT && d.version < dc->min_version)
		return moat_mqtt_fail(fault, MOAT_EMALFORMED, "MQTT-2.1.2-1",
				      "packet type reserved in this protocol version");
	if (!(dc->from & dir))
		return moat_mqtt_fail(fault, MOAT_EPROTOCOL, NULL,
				      opts->from_client ? "a client may not send this packet"
							: "a server may not send this packet");
	memset(&p, 0, sizeof(p));
	p.type = header >> 4;
	p.version = d.version;
	if (dc->fn(&d, &p) < 0)
		return fault->code;
	*out = p;
	return 0;
}

/* ---- SUBSCRIBE / UNSUBSCRIBE entry iteration ---- */

void moat_mqtt_sub_iter(const struct moat_mqtt_subscribe *s, struct moat_mqtt_sub_iter *it)
{
	it->p = s->entries.p;
	it->end = s->entries.p ? s->entries.p + s->entries.len : NULL;
}

bool moat_mqtt_sub_next(struct moat_mqtt_sub_iter *it, struct moat_slice *f, uint8_t *options)
{
	struct rd r = {it->p, it->end};

	if (!it->p || get_bin(&r, f) < 0 || get_u8(&r, options) < 0)
		return false;
	it->p = r.p;
	return true;
}

bool moat_mqtt_unsub_next(struct moat_mqtt_sub_iter *it, struct moat_slice *f)
{
	struct rd r = {it->p, it->end};

	if (!it->p || get_bin(&r, f) < 0)
		return false;
	it->p = r.p;
	return true;
}
