/*
 * props.c - MQTT 5.0 property blocks: the table of section 2.2.2.2, decoding
 * with every check the spec makes of a property, sizing and encoding.
 *
 * One table row per property gives its wire type, the packets it may appear
 * in, where its value lives in struct moat_mqtt_props, and the rule its value
 * must satisfy. Decoding, encoding and iteration are all driven by the table,
 * so a property is described in exactly one place.
 */
#include "mqtt/props.h"

#include <stddef.h>

#include "core/error.h"
#include "core/utf8.h"
#include "mqtt/internal.h"
#include "mqtt/reason.h"
#include "mqtt/topic.h"
#include "mqtt/wire.h"

enum ptype { P_NONE, P_BYTE, P_U16, P_U32, P_VARINT, P_STR, P_BIN, P_PAIR };

enum prule {
	R_ANY,       /* any value of the type */
	R_BOOL,      /* 0 or 1, else Protocol Error */
	R_NONZERO,   /* 0 is a Protocol Error */
	R_TOPIC,     /* a valid Topic Name (Response Topic) */
	R_ALIAS,     /* 0 is a Topic Alias invalid (0x94) */
};

#define W (1u << MOAT_PROPS_WILL)
#define T(x) (1u << MOAT_MQTT_##x)
#define OFF(f) offsetof(struct moat_mqtt_props, f)

struct pdef {
	const char *name;
	uint8_t type;
	uint8_t rule;
	uint16_t where;  /* bit per packet type; bit 0 = Will Properties */
	uint16_t offset; /* of the value in struct moat_mqtt_props; unused for P_PAIR */
};

static const struct pdef defs[64] = {
	[0x01] = {"Payload Format Indicator", P_BYTE, R_BOOL, T(PUBLISH) | W, OFF(payload_format)},
	[0x02] = {"Message Expiry Interval", P_U32, R_ANY, T(PUBLISH) | W, OFF(message_expiry)},
	[0x03] = {"Content Type", P_STR, R_ANY, T(PUBLISH) | W, OFF(content_type)},
	[0x08] = {"Response Topic", P_STR, R_TOPIC, T(PUBLISH) | W, OFF(response_topic)},
	[0x09] = {"Correlation Data", P_BIN, R_ANY, T(PUBLISH) | W, OFF(correlation_data)},
	[0x0B] = {"Subscription Identifier", P_VARINT, R_NONZERO, T(PUBLISH) | T(SUBSCRIBE),
		  OFF(subscription_id)},
	[0x11] = {"Session Expiry Interval", P_U32, R_ANY, T(CONNECT) | T(CONNACK) | T(DISCONNECT),
		  OFF(session_expiry)},
	[0x12] = {"Assigned Client Identifier", P_STR, R_ANY, T(CONNACK), OFF(assigned_client_id)},
	[0x13] = {"Server Keep Alive", P_U16, R_ANY, T(CONNACK), OFF(server_keep_alive)},
	[0x15] = {"Authentication Method", P_STR, R_ANY, T(CONNECT) | T(CONNACK) | T(AUTH),
		  OFF(auth_method)},
	[0x16] = {"Authentication Data", P_BIN, R_ANY, T(CONNECT) | T(CONNACK) | T(AUTH),
		  OFF(auth_data)},
	[0x17] = {"Request Problem Information", P_BYTE, R_BOOL, T(CONNECT),
		  OFF(request_problem_info)},
	[0x18] = {"Will Delay Interval", P_U32, R_ANY, W, OFF(will_delay)},
	[0x19] = {"Request Response Information", P_BYTE, R_BOOL, T(CONNECT),
		  OFF(request_response_info)},
	[0x1A] = {"Response Information", P_STR, R_ANY, T(CONNACK), OFF(response_info)},
	[0x1C] = {"Server Reference", P_STR, R_ANY, T(CONNACK) | T(DISCONNECT),
		  OFF(server_reference)},
	[0x1F] = {"Reason String", P_STR, R_ANY,
		  T(CONNACK) | T(PUBACK) | T(PUBREC) | T(PUBREL) | T(PUBCOMP) | T(SUBACK) |
			  T(UNSUBACK) | T(DISCONNECT) | T(AUTH),
		  OFF(reason_string)},
	[0x21] = {"Receive Maximum", P_U16, R_NONZERO, T(CONNECT) | T(CONNACK),
		  OFF(receive_maximum)},
	[0x22] = {"Topic Alias Maximum", P_U16, R_ANY, T(CONNECT) | T(CONNACK),
		  OFF(topic_alias_maximum)},
	[0x23] = {"Topic Alias", P_U16, R_ALIAS, T(PUBLISH), OFF(topic_alias)},
	[0x24] = {"Maximum QoS", P_BYTE, R_BOOL, T(CONNACK), OFF(maximum_qos)},
	[0x25] = {"Retain Available", P_BYTE, R_BOOL, T(CONNACK), OFF(retain_available)},
	[0x26] = {"User Property", P_PAIR, R_ANY,
		  T(CONNECT) | T(CONNACK) | T(PUBLISH) | W | T(PUBACK) | T(PUBREC) | T(PUBREL) |
			  T(PUBCOMP) | T(SUBSCRIBE) | T(SUBACK) | T(UNSUBSCRIBE) | T(UNSUBACK) |
			  T(DISCONNECT) | T(AUTH),
		  0},
	[0x27] = {"Maximum Packet Size", P_U32, R_NONZERO, T(CONNECT) | T(CONNACK),
		  OFF(maximum_packet_size)},
	[0x28] = {"Wildcard Subscription Available", P_BYTE, R_BOOL, T(CONNACK),
		  OFF(wildcard_sub_available)},
	[0x29] = {"Subscription Identifier Available", P_BYTE, R_BOOL, T(CONNACK),
		  OFF(sub_id_available)},
	[0x2A] = {"Shared Subscription Available", P_BYTE, R_BOOL, T(CONNACK),
		  OFF(shared_sub_available)},
};

static const struct pdef *def_of(unsigned id)
{
	return id < 64 && defs[id].type != P_NONE ? &defs[id] : NULL;
}

const char *moat_mqtt_prop_name(unsigned id)
{
	const struct pdef *d = def_of(id);
	return d ? d->name : NULL;
}

bool moat_mqtt_prop_allowed(unsigned id, unsigned where)
{
	const struct pdef *d = def_of(id);
	return d && where < 16 && (d->where & (1u << where));
}

/* True if a property may appear more than once in `where`. */
static bool repeatable(unsigned id, unsigned where)
{
	return id == MOAT_PROP_USER_PROPERTY ||
	       (id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER && where == MOAT_MQTT_PUBLISH);
}

/* Reads a UTF-8 Encoded String (section 1.5.4): malformed if ill-formed or NUL. */
static int get_str(struct rd *r, struct moat_slice *s, bool strict, struct moat_mqtt_fault *f)
{
	if (get_bin(r, s) < 0)
		return moat_mqtt_fail(f, MOAT_EMALFORMED, NULL, "string runs past the packet");
	return moat_mqtt_check_utf8(s->p, s->len, strict, f);
}

/*
 * Reads one value of type t. Scalars go to *num, strings and binaries to
 * *s (a pair's value to *s2). Returns 0 or a fault.
 */
static int get_value(struct rd *r, uint8_t t, bool strict, uint32_t *num, struct moat_slice *s,
		     struct moat_slice *s2, struct moat_mqtt_fault *f)
{
	uint8_t b;
	uint16_t h;

	switch (t) {
	case P_BYTE:
		if (get_u8(r, &b) < 0)
			break;
		*num = b;
		return 0;
	case P_U16:
		if (get_u16(r, &h) < 0)
			break;
		*num = h;
		return 0;
	case P_U32:
		if (get_u32(r, num) < 0)
			break;
		return 0;
	case P_VARINT:
		if (get_varint(r, num) < 0)
			break;
		return 0;
	case P_STR:
		return get_str(r, s, strict, f);
	case P_BIN:
		if (get_bin(r, s) < 0)
			break;
		return 0;
	case P_PAIR:
		if (get_str(r, s, strict, f) < 0)
			return f->code;
		return get_str(r, s2, strict, f);
	}
	return moat_mqtt_fail(f, MOAT_EMALFORMED, NULL, "property value runs past its block");
}

static int check_rule(const struct pdef *d, uint32_t num, struct moat_slice s,
		      struct moat_mqtt_fault *f)
{
	switch (d->rule) {
	case R_BOOL:
		if (num > 1)
			return moat_mqtt_fail(f, MOAT_EPROTOCOL, NULL, "property value must be 0 or 1");
		break;
	case R_NONZERO:
		if (num == 0)
			return moat_mqtt_fail(f, MOAT_EPROTOCOL, NULL, "property value must not be 0");
		break;
	case R_ALIAS:
		if (num == 0)
			return moat_mqtt_fail_rc(f, MOAT_EPROTOCOL, MOAT_RC_TOPIC_ALIAS_INVALID, 0,
						 "MQTT-3.3.2-8", "Topic Alias 0");
		break;
	case R_TOPIC:
		if (moat_mqtt_topic_name_check(s.p, s.len) < 0)
			return moat_mqtt_fail(f, MOAT_EPROTOCOL, "MQTT-3.3.2-14",
					      "Response Topic is not a valid topic name");
		break;
	}
	return 0;
}

static void store(struct moat_mqtt_props *out, const struct pdef *d, uint32_t num,
		  struct moat_slice s)
{
	char *field = (char *)out + d->offset;

	switch (d->type) {
	case P_BYTE:
		*(uint8_t *)field = (uint8_t)num;
		break;
	case P_U16:
		*(uint16_t *)field = (uint16_t)num;
		break;
	case P_U32:
	case P_VARINT:
		*(uint32_t *)field = num;
		break;
	case P_STR:
	case P_BIN:
		*(struct moat_slice *)field = s;
		break;
	}
}

/* Decodes one property at r into out. */
static int decode_one(struct rd *r, unsigned where, bool strict, struct moat_mqtt_props *out,
		      struct moat_mqtt_fault *f)
{
	const struct pdef *d;
	struct moat_slice s = {0}, s2 = {0};
	uint32_t id, num = 0;
	int rc;

	if (get_varint(r, &id) < 0)
		return moat_mqtt_fail(f, MOAT_EMALFORMED, NULL, "bad property identifier");
	d = def_of(id);
	if (!d)
		return moat_mqtt_fail(f, MOAT_EMALFORMED, NULL, "unknown property identifier");
	if (!(d->where & (1u << where)))
		return moat_mqtt_fail(f, MOAT_EMALFORMED, NULL, "property not allowed in this packet");
	if ((out->present & MOAT_PROP_BIT(id)) && !repeatable(id, where))
		return moat_mqtt_fail(f, MOAT_EPROTOCOL, NULL, "property included more than once");
	rc = get_value(r, d->type, strict, &num, &s, &s2, f);
	if (rc < 0)
		return rc;
	rc = check_rule(d, num, s, f);
	if (rc < 0)
		return rc;
	if (id == MOAT_PROP_USER_PROPERTY) {
		out->user_count++;
	} else if (id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER) {
		if (!out->subid_count++)
			out->subscription_id = num;
	} else {
		store(out, d, num, s);
	}
	out->present |= MOAT_PROP_BIT(id);
	return 0;
}

int moat_mqtt_props_decode(const uint8_t *p, size_t n, unsigned where, bool strict_utf8,
			   struct moat_mqtt_props *out, size_t *used,
			   struct moat_mqtt_fault *fault)
{
	struct rd r = {p, p + n};
	struct moat_mqtt_props pr = {0};
	uint32_t len;

	if (get_varint(&r, &len) < 0)
		return moat_mqtt_fail(fault, MOAT_EMALFORMED, NULL, "bad property length");
	if (len > rd_left(&r))
		return moat_mqtt_fail(fault, MOAT_EMALFORMED, NULL,
				      "property length runs past the packet");
	pr.multi.p = r.p;
	pr.multi.len = len;
	r.end = r.p + len;
	while (r.p < r.end) {
		int rc = decode_one(&r, where, strict_utf8, &pr, fault);
		if (rc < 0)
			return rc;
	}
	*out = pr;
	*used = (size_t)(r.end - p);
	return 0;
}

/* ---- iteration over multi ---- */

/*
 * Reads the next entry of a property block known to be well formed (it was
 * decoded, or built with the put functions). Returns false at the end or on
 * anything unexpected.
 */
static bool next_entry(struct moat_mqtt_prop_iter *it, uint32_t *id, uint32_t *num,
		       struct moat_slice *s, struct moat_slice *s2, struct moat_slice *raw)
{
	struct rd r = {it->p, it->end};
	struct moat_mqtt_fault f;
	const struct pdef *d;

	if (!it->p || it->p >= it->end || get_varint(&r, id) < 0)
		return false;
	d = def_of(*id);
	if (!d || get_value(&r, d->type, false, num, s, s2, &f) < 0) {
		it->p = it->end;
		return false;
	}
	raw->p = it->p;
	raw->len = (size_t)(r.p - it->p);
	it->p = r.p;
	return true;
}

void moat_mqtt_props_iter(const struct moat_mqtt_props *pr, struct moat_mqtt_prop_iter *it)
{
	it->p = pr->multi.p;
	it->end = pr->multi.p ? pr->multi.p + pr->multi.len : NULL;
}

bool moat_mqtt_props_next_user(struct moat_mqtt_prop_iter *it, struct moat_slice *key,
			       struct moat_slice *value)
{
	struct moat_slice s = {0}, s2 = {0}, raw;
	uint32_t id, num;

	while (next_entry(it, &id, &num, &s, &s2, &raw)) {
		if (id == MOAT_PROP_USER_PROPERTY) {
			*key = s;
			*value = s2;
			return true;
		}
	}
	return false;
}

bool moat_mqtt_props_next_raw(struct moat_mqtt_prop_iter *it, uint32_t *id,
			      struct moat_slice *raw)
{
	struct moat_slice s, s2;
	uint32_t num;

	return next_entry(it, id, &num, &s, &s2, raw);
}

bool moat_mqtt_props_next_subid(struct moat_mqtt_prop_iter *it, uint32_t *subid)
{
	struct moat_slice s, s2, raw;
	uint32_t id, num = 0;

	while (next_entry(it, &id, &num, &s, &s2, &raw)) {
		if (id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER) {
			*subid = num;
			return true;
		}
	}
	return false;
}

/* ---- encoding ---- */

static void put_value(struct wr *w, const struct pdef *d, const struct moat_mqtt_props *pr)
{
	const char *field = (const char *)pr + d->offset;

	switch (d->type) {
	case P_BYTE:
		put_u8(w, *(const uint8_t *)field);
		break;
	case P_U16:
		put_u16(w, *(const uint16_t *)field);
		break;
	case P_U32:
		put_u32(w, *(const uint32_t *)field);
		break;
	case P_VARINT:
		put_varint(w, *(const uint32_t *)field);
		break;
	case P_STR:
	case P_BIN:
		put_bin(w, *(const struct moat_slice *)field);
		break;
	}
}

/* Writes the block body (no length prefix). Returns 0, or MOAT_EINVAL if unencodable. */
static int put_body(struct wr *w, const struct moat_mqtt_props *pr, unsigned where)
{
	struct moat_mqtt_prop_iter it;
	struct moat_slice s, s2, raw;
	uint32_t id, num;
	unsigned i;

	for (i = 1; i < 64; i++) {
		const struct pdef *d = def_of(i);
		if (!(pr->present & MOAT_PROP_BIT(i)))
			continue;
		if (!d || !(d->where & (1u << where)))
			return MOAT_EINVAL;
		if (i == MOAT_PROP_USER_PROPERTY ||
		    (i == MOAT_PROP_SUBSCRIPTION_IDENTIFIER && pr->subid_count))
			continue;
		if (d->type == P_VARINT && *(const uint32_t *)((const char *)pr + d->offset) >
						   MOAT_MQTT_MAX_REMAINING)
			return MOAT_EINVAL;
		put_varint(w, i);
		put_value(w, d, pr);
	}
	moat_mqtt_props_iter(pr, &it);
	while (next_entry(&it, &id, &num, &s, &s2, &raw)) {
		if (id != MOAT_PROP_USER_PROPERTY && id != MOAT_PROP_SUBSCRIPTION_IDENTIFIER)
			continue;
		if (!(defs[id].where & (1u << where)))
			return MOAT_EINVAL;
		put_bytes(w, raw.p, raw.len);
	}
	return 0;
}

int moat_mqtt_props_put(struct wr *w, const struct moat_mqtt_props *pr, unsigned where)
{
	struct wr count = {0};

	if (put_body(&count, pr, where) < 0 || count.bad || count.len > MOAT_MQTT_MAX_REMAINING)
		return MOAT_EINVAL;
	put_varint(w, (uint32_t)count.len);
	return put_body(w, pr, where);
}

size_t moat_mqtt_props_size(const struct moat_mqtt_props *pr, unsigned where)
{
	struct wr count = {0};

	if (moat_mqtt_props_put(&count, pr, where) < 0)
		return 0;
	return count.len;
}

int moat_mqtt_props_encode(const struct moat_mqtt_props *pr, unsigned where, uint8_t *buf,
			   size_t cap, size_t *len)
{
	struct wr w = {buf, cap, 0, false};
	size_t n = 0;

	if (moat_mqtt_props_put(&w, pr, where) < 0)
		return MOAT_EINVAL;
	if (wr_finish(&w, &n) < 0)
		return w.bad ? MOAT_EINVAL : MOAT_ENOSPC;
	*len = n;
	return 0;
}

int moat_mqtt_props_put_user(uint8_t *buf, size_t cap, size_t *len, struct moat_slice key,
			     struct moat_slice value)
{
	struct wr w = {buf, cap, *len, false};

	if (key.len > 65535 || value.len > 65535)
		return MOAT_EINVAL;
	put_u8(&w, MOAT_PROP_USER_PROPERTY);
	put_bin(&w, key);
	put_bin(&w, value);
	return wr_finish(&w, len);
}

int moat_mqtt_props_put_subid(uint8_t *buf, size_t cap, size_t *len, uint32_t id)
{
	struct wr w = {buf, cap, *len, false};

	if (id == 0 || id > MOAT_MQTT_MAX_REMAINING)
		return MOAT_EINVAL;
	put_u8(&w, MOAT_PROP_SUBSCRIPTION_IDENTIFIER);
	put_varint(&w, id);
	return wr_finish(&w, len);
}
