/*
 * test_props.c - unit tests for MQTT 5.0 property blocks (src/mqtt/props.c).
 *
 * Covers: moat_mqtt_props_decode of each of the 27 properties in every place
 * it is allowed (decoded field, present bit, bytes used) and refused with
 * Malformed in every place it is not; moat_mqtt_prop_allowed against the
 * table of MQTT 5.0 section 2.2.2.2 written out here row by row for every
 * packet type and the Will Properties; moat_mqtt_prop_name; duplicates
 * (Protocol Error, except User Property anywhere and Subscription Identifier
 * in PUBLISH); value rules (0/1 properties, the must-not-be-0 properties,
 * Response Topic); unknown identifiers; truncated values; a property length
 * past the buffer or shorter than its properties; non-minimal Variable Byte
 * Integers; UTF-8 rules in string properties; iteration over User
 * Properties and Subscription Identifiers in order, interleaved with other
 * properties; building blocks with moat_mqtt_props_put_user/_put_subid; and
 * size/encode round trips (encode, decode, re-encode gives identical bytes)
 * including the encoder's refusals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mqtt/props.h"
#include "mqtt/topic.h"
#include "mqtt/types.h"

#define WILL MOAT_PROPS_WILL

static const char *const where_name[16] = {
	"WILL",   "CONNECT", "CONNACK",  "PUBLISH",     "PUBACK",   "PUBREC",
	"PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK",     "UNSUBSCRIBE", "UNSUBACK",
	"PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
};

/* ---- helpers ---- */

/* Writes a Variable Byte Integer; returns its length. */
static size_t vbi(uint8_t *out, uint32_t v)
{
	size_t n = 0;
	do {
		uint8_t b = v & 0x7F;
		v >>= 7;
		out[n++] = (uint8_t)(v ? b | 0x80 : b);
	} while (v);
	return n;
}

/* Wraps body[0..n) in a property block (length prefix); returns the block size. */
static size_t block(uint8_t *out, const void *body, size_t n)
{
	size_t h = vbi(out, (uint32_t)n);
	memcpy(out + h, body, n);
	return h + n;
}

struct dec {
	int rc;
	struct moat_mqtt_props pr;
	size_t used;
	struct moat_mqtt_fault fault;
};

static struct dec decode_raw(const uint8_t *p, size_t n, unsigned where, bool strict)
{
	struct dec d;

	memset(&d, 0, sizeof(d));
	d.used = 12345;
	d.rc = moat_mqtt_props_decode(p, n, where, strict, &d.pr, &d.used, &d.fault);
	return d;
}

/* Decodes body wrapped in a block; the buffer has `extra` trailing bytes after the block. */
static struct dec decode_body(const void *body, size_t n, unsigned where)
{
	static uint8_t buf[1 << 17];
	size_t len = block(buf, body, n);
	memcpy(buf + len, "\xEE\xEE", 2); /* bytes after the block are not part of it */
	return decode_raw(buf, len + 2, where, false);
}

static void expect_ok(const struct dec *d, size_t used)
{
	if (d->rc != 0)
		fail_msg("decode failed with %d (%s)", d->rc, d->fault.why ? d->fault.why : "?");
	assert_int_equal(d->used, used);
}

static void expect_fault(const struct dec *d, int code)
{
	assert_int_equal(d->rc, code);
	assert_int_equal(d->fault.code, code);
	assert_int_equal(d->fault.reason, code == MOAT_EMALFORMED ? 0x81 : 0x82);
	assert_non_null(d->fault.why);
	assert_int_equal(d->used, 12345); /* out-parameters untouched on failure */
}

/* ---- one example value of each property ---- */

struct example {
	uint8_t id;
	const char *name;
	const char *val; /* wire bytes of the value */
	size_t vlen;
	uint32_t num;    /* expected scalar */
	const char *str; /* or expected slice */
	size_t slen;
};

#define EX_NUM(id, name, val, num) {id, name, val, sizeof(val) - 1, num, NULL, 0}
#define EX_STR(id, name, val, s) {id, name, val, sizeof(val) - 1, 0, s, sizeof(s) - 1}

static const struct example examples[] = {
	EX_NUM(0x01, "Payload Format Indicator", "\x01", 1),
	EX_NUM(0x02, "Message Expiry Interval", "\x01\x02\x03\x04", 0x01020304),
	EX_STR(0x03, "Content Type", "\x00\x0Atext/plain", "text/plain"),
	EX_STR(0x08, "Response Topic", "\x00\x06resp/a", "resp/a"),
	EX_STR(0x09, "Correlation Data", "\x00\x03\x00\xFF\x01", "\x00\xFF\x01"),
	EX_NUM(0x0B, "Subscription Identifier", "\xFF\xFF\xFF\x7F", 268435455),
	EX_NUM(0x11, "Session Expiry Interval", "\xFF\xFF\xFF\xFF", 0xFFFFFFFF),
	EX_STR(0x12, "Assigned Client Identifier", "\x00\x08" "auto-123", "auto-123"),
	EX_NUM(0x13, "Server Keep Alive", "\xAB\xCD", 0xABCD),
	EX_STR(0x15, "Authentication Method", "\x00\x0BSCRAM-SHA-1", "SCRAM-SHA-1"),
	EX_STR(0x16, "Authentication Data", "\x00\x04\x00\x01\xFE\xFF", "\x00\x01\xFE\xFF"),
	EX_NUM(0x17, "Request Problem Information", "\x00", 0),
	EX_NUM(0x18, "Will Delay Interval", "\x00\x00\x02\x58", 600),
	EX_NUM(0x19, "Request Response Information", "\x01", 1),
	EX_STR(0x1A, "Response Information", "\x00\x09resp-info", "resp-info"),
	EX_STR(0x1C, "Server Reference", "\x00\x0Aother:1883", "other:1883"),
	EX_STR(0x1F, "Reason String", "\x00\x03why", "why"),
	EX_NUM(0x21, "Receive Maximum", "\xFF\xFF", 0xFFFF),
	EX_NUM(0x22, "Topic Alias Maximum", "\x00\x00", 0), /* 0 is allowed here */
	EX_NUM(0x23, "Topic Alias", "\x00\x07", 7),
	EX_NUM(0x24, "Maximum QoS", "\x01", 1),
	EX_NUM(0x25, "Retain Available", "\x00", 0),
	EX_STR(0x26, "User Property", "\x00\x01k\x00\x02vv", "k"),
	EX_NUM(0x27, "Maximum Packet Size", "\x00\x00\xFF\xFF", 0xFFFF),
	EX_NUM(0x28, "Wildcard Subscription Available", "\x01", 1),
	EX_NUM(0x29, "Subscription Identifier Available", "\x00", 0),
	EX_NUM(0x2A, "Shared Subscription Available", "\x01", 1),
};
#define N_EXAMPLES (sizeof(examples) / sizeof(examples[0]))

/*
 * Section 2.2.2.2, written out from the spec's table (not from props.c):
 * bit per packet type, bit 0 = Will Properties.
 */
#define B(t) (1u << (t))
static uint32_t spec_where(unsigned id)
{
	switch (id) {
	case 0x01: /* Payload Format Indicator */
	case 0x02: /* Message Expiry Interval */
	case 0x03: /* Content Type */
	case 0x08: /* Response Topic */
	case 0x09: /* Correlation Data */
		return B(MOAT_MQTT_PUBLISH) | B(WILL);
	case 0x0B: /* Subscription Identifier */
		return B(MOAT_MQTT_PUBLISH) | B(MOAT_MQTT_SUBSCRIBE);
	case 0x11: /* Session Expiry Interval */
		return B(MOAT_MQTT_CONNECT) | B(MOAT_MQTT_CONNACK) | B(MOAT_MQTT_DISCONNECT);
	case 0x12: /* Assigned Client Identifier */
	case 0x13: /* Server Keep Alive */
	case 0x1A: /* Response Information */
	case 0x24: /* Maximum QoS */
	case 0x25: /* Retain Available */
	case 0x28: /* Wildcard Subscription Available */
	case 0x29: /* Subscription Identifier Available */
	case 0x2A: /* Shared Subscription Available */
		return B(MOAT_MQTT_CONNACK);
	case 0x15: /* Authentication Method */
	case 0x16: /* Authentication Data */
		return B(MOAT_MQTT_CONNECT) | B(MOAT_MQTT_CONNACK) | B(MOAT_MQTT_AUTH);
	case 0x17: /* Request Problem Information */
	case 0x19: /* Request Response Information */
		return B(MOAT_MQTT_CONNECT);
	case 0x18: /* Will Delay Interval */
		return B(WILL);
	case 0x1C: /* Server Reference */
		return B(MOAT_MQTT_CONNACK) | B(MOAT_MQTT_DISCONNECT);
	case 0x1F: /* Reason String */
		return B(MOAT_MQTT_CONNACK) | B(MOAT_MQTT_PUBACK) | B(MOAT_MQTT_PUBREC) |
		       B(MOAT_MQTT_PUBREL) | B(MOAT_MQTT_PUBCOMP) | B(MOAT_MQTT_SUBACK) |
		       B(MOAT_MQTT_UNSUBACK) | B(MOAT_MQTT_DISCONNECT) | B(MOAT_MQTT_AUTH);
	case 0x21: /* Receive Maximum */
	case 0x22: /* Topic Alias Maximum */
	case 0x27: /* Maximum Packet Size */
		return B(MOAT_MQTT_CONNECT) | B(MOAT_MQTT_CONNACK);
	case 0x23: /* Topic Alias */
		return B(MOAT_MQTT_PUBLISH);
	case 0x26: /* User Property */
		return B(MOAT_MQTT_CONNECT) | B(MOAT_MQTT_CONNACK) | B(MOAT_MQTT_PUBLISH) | B(WILL) |
		       B(MOAT_MQTT_PUBACK) | B(MOAT_MQTT_PUBREC) | B(MOAT_MQTT_PUBREL) |
		       B(MOAT_MQTT_PUBCOMP) | B(MOAT_MQTT_SUBSCRIBE) | B(MOAT_MQTT_SUBACK) |
		       B(MOAT_MQTT_UNSUBSCRIBE) | B(MOAT_MQTT_UNSUBACK) | B(MOAT_MQTT_DISCONNECT) |
		       B(MOAT_MQTT_AUTH);
	}
	return 0;
}

/* The decoded scalar field for id, read by name (checks the field mapping). */
static uint32_t field_num(const struct moat_mqtt_props *p, unsigned id)
{
	switch (id) {
	case 0x01: return p->payload_format;
	case 0x02: return p->message_expiry;
	case 0x0B: return p->subscription_id;
	case 0x11: return p->session_expiry;
	case 0x13: return p->server_keep_alive;
	case 0x17: return p->request_problem_info;
	case 0x18: return p->will_delay;
	case 0x19: return p->request_response_info;
	case 0x21: return p->receive_maximum;
	case 0x22: return p->topic_alias_maximum;
	case 0x23: return p->topic_alias;
	case 0x24: return p->maximum_qos;
	case 0x25: return p->retain_available;
	case 0x27: return p->maximum_packet_size;
	case 0x28: return p->wildcard_sub_available;
	case 0x29: return p->sub_id_available;
	case 0x2A: return p->shared_sub_available;
	}
	fail_msg("no scalar field for 0x%02X", id);
	return 0;
}

static struct moat_slice field_str(const struct moat_mqtt_props *p, unsigned id)
{
	switch (id) {
	case 0x03: return p->content_type;
	case 0x08: return p->response_topic;
	case 0x09: return p->correlation_data;
	case 0x12: return p->assigned_client_id;
	case 0x15: return p->auth_method;
	case 0x16: return p->auth_data;
	case 0x1A: return p->response_info;
	case 0x1C: return p->server_reference;
	case 0x1F: return p->reason_string;
	}
	fail_msg("no slice field for 0x%02X", id);
	return (struct moat_slice){0};
}

/* Body of one property: id then value. */
static size_t one_prop(uint8_t *out, const struct example *e)
{
	out[0] = e->id;
	memcpy(out + 1, e->val, e->vlen);
	return 1 + e->vlen;
}

static void check_example_decoded(const struct example *e, const struct dec *d, size_t used,
				  unsigned where)
{
	if (d->rc != 0)
		fail_msg("%s in %s: decode failed %d (%s)", e->name, where_name[where], d->rc,
			 d->fault.why ? d->fault.why : "?");
	assert_int_equal(d->used, used);
	assert_true(d->pr.present == MOAT_PROP_BIT(e->id));
	assert_true(moat_mqtt_props_has(&d->pr, e->id));
	if (e->id == MOAT_PROP_USER_PROPERTY) {
		struct moat_mqtt_prop_iter it;
		struct moat_slice k, v;
		assert_int_equal(d->pr.user_count, 1);
		moat_mqtt_props_iter(&d->pr, &it);
		assert_true(moat_mqtt_props_next_user(&it, &k, &v));
		assert_int_equal(k.len, 1);
		assert_memory_equal(k.p, "k", 1);
		assert_int_equal(v.len, 2);
		assert_memory_equal(v.p, "vv", 2);
		assert_false(moat_mqtt_props_next_user(&it, &k, &v));
	} else if (e->str) {
		struct moat_slice s = field_str(&d->pr, e->id);
		assert_int_equal(s.len, e->slen);
		assert_memory_equal(s.p, e->str, e->slen);
	} else {
		assert_int_equal(field_num(&d->pr, e->id), e->num);
	}
	if (e->id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER)
		assert_int_equal(d->pr.subid_count, 1);
	else
		assert_int_equal(d->pr.subid_count, 0);
	if (e->id != MOAT_PROP_USER_PROPERTY)
		assert_int_equal(d->pr.user_count, 0);
}

/* ---- tests ---- */

static void test_each_property_where_allowed(void **state)
{
	uint8_t body[64];
	size_t i, n;
	unsigned where, tried = 0;

	(void)state;
	for (i = 0; i < N_EXAMPLES; i++) {
		const struct example *e = &examples[i];
		n = one_prop(body, e);
		for (where = 0; where < 16; where++) {
			struct dec d = decode_body(body, n, where);
			if (spec_where(e->id) & B(where)) {
				check_example_decoded(e, &d, 1 + n, where);
				tried++;
			} else {
				if (d.rc != MOAT_EMALFORMED)
					fail_msg("%s in %s: got %d, want Malformed", e->name,
						 where_name[where], d.rc);
				expect_fault(&d, MOAT_EMALFORMED);
			}
		}
	}
	assert_int_equal(N_EXAMPLES, 27);
	assert_true(tried >= 27);
}

static void test_allowed_table(void **state)
{
	unsigned id, where, known = 0;

	(void)state;
	for (id = 0; id < 300; id++) {
		if (spec_where(id))
			known++;
		for (where = 0; where < 16; where++) {
			bool want = (spec_where(id) & B(where)) != 0;
			if (moat_mqtt_prop_allowed(id, where) != want)
				fail_msg("property 0x%02X in %s: allowed %d, spec says %d", id,
					 where_name[where], !want, want);
		}
		/* nothing is allowed in a place that is not a packet type */
		assert_false(moat_mqtt_prop_allowed(id, 16));
		assert_false(moat_mqtt_prop_allowed(id, 31));
		assert_false(moat_mqtt_prop_allowed(id, 1000));
	}
	assert_int_equal(known, 27);
	/* packets with no properties at all */
	for (id = 0; id < 64; id++) {
		assert_false(moat_mqtt_prop_allowed(id, MOAT_MQTT_PINGREQ));
		assert_false(moat_mqtt_prop_allowed(id, MOAT_MQTT_PINGRESP));
	}
}

static void test_prop_names(void **state)
{
	size_t i;
	unsigned id, named = 0;

	(void)state;
	for (i = 0; i < N_EXAMPLES; i++) {
		const char *n = moat_mqtt_prop_name(examples[i].id);
		assert_non_null(n);
		assert_string_equal(n, examples[i].name);
	}
	for (id = 0; id < 1000; id++) {
		if (moat_mqtt_prop_name(id)) {
			named++;
			assert_true(spec_where(id) != 0);
		}
	}
	assert_int_equal(named, 27);
	assert_null(moat_mqtt_prop_name(0));
	assert_null(moat_mqtt_prop_name(0x04));
	assert_null(moat_mqtt_prop_name(0x2B));
	assert_null(moat_mqtt_prop_name(0x7F));
	assert_null(moat_mqtt_prop_name(0xFFFFFFFFu));
}

static unsigned first_allowed(unsigned id)
{
	unsigned w;
	for (w = 0; w < 16; w++)
		if (spec_where(id) & B(w))
			return w;
	fail_msg("no place for 0x%02X", id);
	return 0;
}

static void test_duplicates(void **state)
{
	uint8_t body[128];
	size_t i, n;
	unsigned where;

	(void)state;
	for (i = 0; i < N_EXAMPLES; i++) {
		const struct example *e = &examples[i];
		n = one_prop(body, e);
		n += one_prop(body + n, e);
		for (where = 0; where < 16; where++) {
			struct dec d;
			if (!(spec_where(e->id) & B(where)))
				continue;
			d = decode_body(body, n, where);
			if (e->id == MOAT_PROP_USER_PROPERTY ||
			    (e->id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER && where == MOAT_MQTT_PUBLISH)) {
				expect_ok(&d, 1 + n);
			} else {
				if (d.rc != MOAT_EPROTOCOL)
					fail_msg("%s twice in %s: got %d, want Protocol Error",
						 e->name, where_name[where], d.rc);
				expect_fault(&d, MOAT_EPROTOCOL);
			}
		}
	}
	/* a duplicate separated by other properties is still a duplicate */
	{
		static const uint8_t b[] = {0x23, 0x00, 0x01, 0x01, 0x01, 0x26, 0x00, 0x00, 0x00,
					    0x00, 0x23, 0x00, 0x02};
		struct dec d = decode_body(b, sizeof(b), MOAT_MQTT_PUBLISH);
		expect_fault(&d, MOAT_EPROTOCOL);
	}
	/* Subscription Identifier twice in SUBSCRIBE, with different values */
	{
		static const uint8_t b[] = {0x0B, 0x01, 0x0B, 0x02};
		struct dec d = decode_body(b, sizeof(b), MOAT_MQTT_SUBSCRIBE);
		expect_fault(&d, MOAT_EPROTOCOL);
		d = decode_body(b, sizeof(b), MOAT_MQTT_PUBLISH);
		expect_ok(&d, 5);
		assert_int_equal(d.pr.subid_count, 2);
		assert_int_equal(d.pr.subscription_id, 1);
	}
	/* many User Properties */
	{
		uint8_t many[7 * 100];
		struct dec d;
		for (i = 0; i < 100; i++)
			memcpy(many + 7 * i, "\x26\x00\x01k\x00\x01v", 7);
		d = decode_body(many, sizeof(many), MOAT_MQTT_DISCONNECT);
		expect_ok(&d, 2 + sizeof(many));
		assert_int_equal(d.pr.user_count, 100);
		assert_true(d.pr.present == MOAT_PROP_BIT(MOAT_PROP_USER_PROPERTY));
	}
}

static void test_bool_values(void **state)
{
	static const uint8_t ids[] = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A};
	size_t i;
	unsigned v;

	(void)state;
	for (i = 0; i < sizeof(ids); i++) {
		unsigned where = first_allowed(ids[i]);
		for (v = 0; v < 256; v++) {
			uint8_t b[2] = {ids[i], (uint8_t)v};
			struct dec d = decode_body(b, 2, where);
			if (v <= 1) {
				expect_ok(&d, 3);
				assert_int_equal(field_num(&d.pr, ids[i]), v);
			} else {
				if (d.rc != MOAT_EPROTOCOL)
					fail_msg("%s = %u: got %d, want Protocol Error",
						 moat_mqtt_prop_name(ids[i]), v, d.rc);
				expect_fault(&d, MOAT_EPROTOCOL);
			}
		}
	}
}

static void test_zero_values(void **state)
{
	static const struct {
		const char *body;
		size_t n;
		unsigned where;
		int rc;
	} c[] = {
		{"\x21\x00\x00", 3, MOAT_MQTT_CONNECT, MOAT_EPROTOCOL},      /* Receive Maximum */
		{"\x21\x00\x00", 3, MOAT_MQTT_CONNACK, MOAT_EPROTOCOL},
		{"\x23\x00\x00", 3, MOAT_MQTT_PUBLISH, MOAT_EPROTOCOL},      /* Topic Alias */
		{"\x27\x00\x00\x00\x00", 5, MOAT_MQTT_CONNECT, MOAT_EPROTOCOL}, /* Max Packet Size */
		{"\x27\x00\x00\x00\x00", 5, MOAT_MQTT_CONNACK, MOAT_EPROTOCOL},
		{"\x0B\x00", 2, MOAT_MQTT_SUBSCRIBE, MOAT_EPROTOCOL},        /* Subscription Id */
		{"\x0B\x00", 2, MOAT_MQTT_PUBLISH, MOAT_EPROTOCOL},
		{"\x0B\x01\x0B\x00", 4, MOAT_MQTT_PUBLISH, MOAT_EPROTOCOL},  /* a second one, 0 */
		/* 0 is a fine value for these */
		{"\x22\x00\x00", 3, MOAT_MQTT_CONNECT, 0},                   /* Topic Alias Maximum */
		{"\x11\x00\x00\x00\x00", 5, MOAT_MQTT_CONNECT, 0},           /* Session Expiry */
		{"\x13\x00\x00", 3, MOAT_MQTT_CONNACK, 0},                   /* Server Keep Alive */
		{"\x02\x00\x00\x00\x00", 5, MOAT_MQTT_PUBLISH, 0},           /* Message Expiry */
		{"\x18\x00\x00\x00\x00", 5, WILL, 0},                        /* Will Delay */
		/* smallest non-zero values */
		{"\x21\x00\x01", 3, MOAT_MQTT_CONNECT, 0},
		{"\x23\x00\x01", 3, MOAT_MQTT_PUBLISH, 0},
		{"\x27\x00\x00\x00\x01", 5, MOAT_MQTT_CONNACK, 0},
		{"\x0B\x01", 2, MOAT_MQTT_SUBSCRIBE, 0},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct dec d = decode_body(c[i].body, c[i].n, c[i].where);
		if (d.rc != c[i].rc)
			fail_msg("case %zu: got %d, want %d", i, d.rc, c[i].rc);
		if (c[i].rc && c[i].body[0] == 0x23) {
			/* Topic Alias 0 has its own reason code: 0x94 Topic Alias invalid */
			assert_int_equal(d.fault.code, MOAT_EPROTOCOL);
			assert_int_equal(d.fault.reason, 0x94);
		} else if (c[i].rc) {
			expect_fault(&d, c[i].rc);
		} else {
			expect_ok(&d, 1 + c[i].n);
		}
	}
}

static void test_response_topic(void **state)
{
	static const struct {
		const char *topic;
		int rc;
	} c[] = {
		{"a/b", 0}, {"/", 0}, {"$SYS/x", 0},
		{"a/+", MOAT_EPROTOCOL}, {"a/#", MOAT_EPROTOCOL}, {"+", MOAT_EPROTOCOL},
		{"#", MOAT_EPROTOCOL}, {"a+b", MOAT_EPROTOCOL}, {"", MOAT_EPROTOCOL},
	};
	uint8_t b[64];
	size_t i;
	unsigned where;

	(void)state;
	for (where = 0; where <= MOAT_MQTT_PUBLISH; where += MOAT_MQTT_PUBLISH) {
		for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
			size_t tl = strlen(c[i].topic);
			struct dec d;
			b[0] = 0x08;
			b[1] = 0;
			b[2] = (uint8_t)tl;
			memcpy(b + 3, c[i].topic, tl);
			d = decode_body(b, 3 + tl, where);
			if (d.rc != c[i].rc)
				fail_msg("Response Topic \"%s\" in %s: got %d, want %d", c[i].topic,
					 where_name[where], d.rc, c[i].rc);
			if (c[i].rc) {
				expect_fault(&d, c[i].rc);
				assert_non_null(d.fault.rule);
				assert_string_equal(d.fault.rule, "MQTT-3.3.2-14");
			} else {
				assert_int_equal(d.pr.response_topic.len, tl);
			}
		}
	}
}

static void test_unknown_ids(void **state)
{
	unsigned id, where;
	uint8_t b[8];

	(void)state;
	for (id = 0; id < 128; id++) {
		if (spec_where(id))
			continue;
		for (where = 0; where < 16; where++) {
			struct dec d;
			/* followed by plausible value bytes of every width */
			b[0] = (uint8_t)id;
			memset(b + 1, 0x01, 4);
			d = decode_body(b, 5, where);
			if (d.rc != MOAT_EMALFORMED)
				fail_msg("unknown id 0x%02X in %s: got %d", id, where_name[where],
					 d.rc);
			expect_fault(&d, MOAT_EMALFORMED);
		}
	}
	/* multi-byte identifiers: 128 (unknown) and non-minimal forms of known ones */
	{
		static const char *const bad[] = {
			"\x80\x01\x00",         /* 128 */
			"\xFF\x7F\x00",         /* 16383 */
			"\x81\x00\x00\x01",     /* 1 in two bytes */
			"\xA6\x00\x00\x00\x00\x00", /* 0x26 in two bytes */
			"\x80",                 /* truncated identifier */
		};
		static const size_t len[] = {3, 3, 4, 6, 1};
		size_t i;
		for (i = 0; i < 5; i++) {
			struct dec d = decode_body(bad[i], len[i], MOAT_MQTT_PUBLISH);
			expect_fault(&d, MOAT_EMALFORMED);
		}
	}
}

static void test_truncated_values(void **state)
{
	uint8_t body[64];
	size_t i, k, n;

	(void)state;
	for (i = 0; i < N_EXAMPLES; i++) {
		const struct example *e = &examples[i];
		unsigned where = first_allowed(e->id);
		n = one_prop(body, e);
		/* the block holds the identifier and only k bytes of the value */
		for (k = 0; k < e->vlen; k++) {
			struct dec d = decode_body(body, 1 + k, where);
			if (d.rc != MOAT_EMALFORMED)
				fail_msg("%s cut to %zu value bytes: got %d", e->name, k, d.rc);
			expect_fault(&d, MOAT_EMALFORMED);
		}
		/* a block one byte short, with the full value right after it in memory */
		{
			uint8_t buf[80];
			struct dec d;
			buf[0] = (uint8_t)(n - 1);
			memcpy(buf + 1, body, n);
			d = decode_raw(buf, 1 + n, where, false);
			if (d.rc != MOAT_EMALFORMED)
				fail_msg("%s in a block one byte short: got %d", e->name, d.rc);
			expect_fault(&d, MOAT_EMALFORMED);
		}
	}
	/* a string whose length runs past the block */
	{
		static const uint8_t b[] = {0x1F, 0x00, 0x10, 'a', 'b'};
		struct dec d = decode_body(b, sizeof(b), MOAT_MQTT_PUBACK);
		expect_fault(&d, MOAT_EMALFORMED);
	}
	/* a User Property with a key but no value */
	{
		static const uint8_t b[] = {0x26, 0x00, 0x01, 'k'};
		struct dec d = decode_body(b, sizeof(b), MOAT_MQTT_PUBACK);
		expect_fault(&d, MOAT_EMALFORMED);
	}
}

static void test_block_length(void **state)
{
	struct dec d;

	(void)state;
	/* empty block */
	d = decode_raw((const uint8_t *)"\x00\xAA", 2, MOAT_MQTT_PUBLISH, false);
	expect_ok(&d, 1);
	assert_true(d.pr.present == 0);
	assert_int_equal(d.pr.user_count, 0);
	/* nothing at all: the length itself is missing */
	d = decode_raw((const uint8_t *)"", 0, MOAT_MQTT_PUBLISH, false);
	expect_fault(&d, MOAT_EMALFORMED);
	/* length past the buffer */
	d = decode_raw((const uint8_t *)"\x0A\x23\x00\x01", 4, MOAT_MQTT_PUBLISH, false);
	expect_fault(&d, MOAT_EMALFORMED);
	d = decode_raw((const uint8_t *)"\x04\x23\x00\x01", 4, MOAT_MQTT_PUBLISH, false);
	expect_fault(&d, MOAT_EMALFORMED);
	d = decode_raw((const uint8_t *)"\x03\x23\x00\x01", 4, MOAT_MQTT_PUBLISH, false);
	expect_ok(&d, 4);
	/* a length whose varint is truncated */
	d = decode_raw((const uint8_t *)"\x80", 1, MOAT_MQTT_PUBLISH, false);
	expect_fault(&d, MOAT_EMALFORMED);
	d = decode_raw((const uint8_t *)"\xFF\xFF", 2, MOAT_MQTT_PUBLISH, false);
	expect_fault(&d, MOAT_EMALFORMED);
	/* non-minimal lengths [MQTT-1.5.5-1] */
	d = decode_raw((const uint8_t *)"\x80\x00", 2, MOAT_MQTT_PUBLISH, false);
	expect_fault(&d, MOAT_EMALFORMED);
	d = decode_raw((const uint8_t *)"\x83\x00\x23\x00\x01", 5, MOAT_MQTT_PUBLISH, false);
	expect_fault(&d, MOAT_EMALFORMED);
	d = decode_raw((const uint8_t *)"\x80\x80\x00", 3, MOAT_MQTT_PUBLISH, false);
	expect_fault(&d, MOAT_EMALFORMED);
	/* five-byte length */
	d = decode_raw((const uint8_t *)"\x80\x80\x80\x80\x01", 5, MOAT_MQTT_PUBLISH, false);
	expect_fault(&d, MOAT_EMALFORMED);
	/* a two-byte length (128 bytes of properties) is fine */
	{
		uint8_t body[128];
		size_t i;
		for (i = 0; i < 128; i += 8)
			memcpy(body + i, "\x26\x00\x01k\x00\x02vv", 8);
		d = decode_body(body, sizeof(body), MOAT_MQTT_PUBLISH);
		expect_ok(&d, 130);
		assert_int_equal(d.pr.user_count, 16);
		assert_int_equal(d.pr.multi.len, 128);
	}
}

static void test_subid_varint(void **state)
{
	static const struct {
		const char *b;
		size_t n;
		int rc;
		uint32_t v;
	} c[] = {
		{"\x0B\x01", 2, 0, 1},
		{"\x0B\x7F", 2, 0, 127},
		{"\x0B\x80\x01", 3, 0, 128},
		{"\x0B\xFF\x7F", 3, 0, 16383},
		{"\x0B\x80\x80\x01", 4, 0, 16384},
		{"\x0B\xFF\xFF\xFF\x7F", 5, 0, 268435455},
		{"\x0B\x81\x00", 3, MOAT_EMALFORMED, 0},             /* 1, non-minimal */
		{"\x0B\xFF\x00", 3, MOAT_EMALFORMED, 0},             /* 127, non-minimal */
		{"\x0B\x80\x81\x00", 4, MOAT_EMALFORMED, 0},         /* 128, non-minimal */
		{"\x0B\x80\x80\x80\x80\x01", 6, MOAT_EMALFORMED, 0}, /* five bytes */
		{"\x0B\x80\x00", 3, MOAT_EMALFORMED, 0},             /* 0, non-minimal */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct dec d = decode_body(c[i].b, c[i].n, MOAT_MQTT_SUBSCRIBE);
		if (d.rc != c[i].rc)
			fail_msg("case %zu: got %d, want %d", i, d.rc, c[i].rc);
		if (c[i].rc) {
			expect_fault(&d, c[i].rc);
		} else {
			struct moat_mqtt_prop_iter it;
			uint32_t id = 0;
			assert_int_equal(d.pr.subscription_id, c[i].v);
			moat_mqtt_props_iter(&d.pr, &it);
			assert_true(moat_mqtt_props_next_subid(&it, &id));
			assert_int_equal(id, c[i].v);
			assert_false(moat_mqtt_props_next_subid(&it, &id));
		}
	}
}

static void test_string_utf8(void **state)
{
	struct dec d;
	uint8_t buf[32];
	size_t n;

	(void)state;
	/* ill-formed and NUL: Malformed, strict or not */
	d = decode_body("\x03\x00\x02\xC0\x80", 5, MOAT_MQTT_PUBLISH);
	expect_fault(&d, MOAT_EMALFORMED);
	d = decode_body("\x03\x00\x03" "a\x00" "b", 6, MOAT_MQTT_PUBLISH);
	expect_fault(&d, MOAT_EMALFORMED);
	d = decode_body("\x26\x00\x01\xFF\x00\x00", 6, MOAT_MQTT_PUBLISH); /* bad key */
	expect_fault(&d, MOAT_EMALFORMED);
	d = decode_body("\x26\x00\x00\x00\x01\xFF", 6, MOAT_MQTT_PUBLISH); /* bad value */
	expect_fault(&d, MOAT_EMALFORMED);
	d = decode_body("\x1F\x00\x03\xED\xA0\x80", 6, MOAT_MQTT_PUBACK); /* surrogate */
	expect_fault(&d, MOAT_EMALFORMED);
	/* a control character: accepted unless strict */
	d = decode_body("\x03\x00\x01\x01", 4, MOAT_MQTT_PUBLISH);
	expect_ok(&d, 5);
	n = block(buf, "\x03\x00\x01\x01", 4);
	d = decode_raw(buf, n, MOAT_MQTT_PUBLISH, true);
	expect_fault(&d, MOAT_EMALFORMED);
	n = block(buf, "\x26\x00\x03\xEF\xBF\xBF\x00\x00", 8); /* U+FFFF in a key */
	d = decode_raw(buf, n, MOAT_MQTT_PUBLISH, false);
	expect_ok(&d, n);
	d = decode_raw(buf, n, MOAT_MQTT_PUBLISH, true);
	expect_fault(&d, MOAT_EMALFORMED);
	/* binary data is not UTF-8 checked */
	d = decode_body("\x09\x00\x03\xFF\x00\xC0", 6, MOAT_MQTT_PUBLISH);
	expect_ok(&d, 7);
	assert_int_equal(d.pr.correlation_data.len, 3);
	/* well-formed multi-byte strings are fine, strict too */
	n = block(buf, "\x03\x00\x04\xC3\xA9\xE2\x82", 7);
	d = decode_raw(buf, n, MOAT_MQTT_PUBLISH, true);
	expect_fault(&d, MOAT_EMALFORMED); /* truncated E2 82 */
	n = block(buf, "\x03\x00\x05\xC3\xA9\xE2\x82\xAC", 8);
	d = decode_raw(buf, n, MOAT_MQTT_PUBLISH, true);
	expect_ok(&d, n);
	/* empty strings are valid strings */
	d = decode_body("\x03\x00\x00", 3, MOAT_MQTT_PUBLISH);
	expect_ok(&d, 4);
	assert_int_equal(d.pr.content_type.len, 0);
}

/* A PUBLISH block with User Properties and Subscription Identifiers between other properties. */
static const uint8_t interleaved[] = {
	0x26, 0x00, 0x02, 'k', '1', 0x00, 0x02, 'v', '1', /* user k1=v1 */
	0x01, 0x01,                                        /* PFI 1 */
	0x0B, 0x05,                                        /* subid 5 */
	0x26, 0x00, 0x02, 'k', '2', 0x00, 0x00,           /* user k2="" */
	0x03, 0x00, 0x01, 't',                             /* content type */
	0x0B, 0xAC, 0x02,                                  /* subid 300 */
	0x26, 0x00, 0x02, 'k', '1', 0x00, 0x02, 'v', '3', /* user k1=v3 (same key again) */
	0x23, 0x00, 0x09,                                  /* topic alias 9 */
	0x0B, 0xFF, 0xFF, 0xFF, 0x7F,                      /* subid max */
};

static void test_iteration_order(void **state)
{
	static const char *const keys[] = {"k1", "k2", "k1"};
	static const char *const vals[] = {"v1", "", "v3"};
	static const uint32_t ids[] = {5, 300, 268435455};
	struct moat_mqtt_prop_iter it, it2;
	struct moat_slice k, v;
	uint32_t id;
	struct dec d;
	int i;

	(void)state;
	d = decode_body(interleaved, sizeof(interleaved), MOAT_MQTT_PUBLISH);
	expect_ok(&d, 1 + sizeof(interleaved));
	assert_int_equal(d.pr.user_count, 3);
	assert_int_equal(d.pr.subid_count, 3);
	assert_int_equal(d.pr.subscription_id, 5);
	assert_int_equal(d.pr.payload_format, 1);
	assert_int_equal(d.pr.topic_alias, 9);
	assert_int_equal(d.pr.content_type.len, 1);
	assert_true(d.pr.present ==
		    (MOAT_PROP_BIT(0x26) | MOAT_PROP_BIT(0x01) | MOAT_PROP_BIT(0x0B) |
		     MOAT_PROP_BIT(0x03) | MOAT_PROP_BIT(0x23)));
	moat_mqtt_props_iter(&d.pr, &it);
	moat_mqtt_props_iter(&d.pr, &it2);
	for (i = 0; i < 3; i++) {
		assert_true(moat_mqtt_props_next_user(&it, &k, &v));
		assert_int_equal(k.len, strlen(keys[i]));
		assert_memory_equal(k.p, keys[i], k.len);
		assert_int_equal(v.len, strlen(vals[i]));
		if (v.len)
			assert_memory_equal(v.p, vals[i], v.len);
		/* slices borrow from the decoded block */
		assert_true(k.p >= d.pr.multi.p && k.p + k.len <= d.pr.multi.p + d.pr.multi.len);
		assert_true(v.p >= d.pr.multi.p && v.p + v.len <= d.pr.multi.p + d.pr.multi.len);
		assert_true(moat_mqtt_props_next_subid(&it2, &id));
		assert_int_equal(id, ids[i]);
	}
	assert_false(moat_mqtt_props_next_user(&it, &k, &v));
	assert_false(moat_mqtt_props_next_user(&it, &k, &v)); /* stays at the end */
	assert_false(moat_mqtt_props_next_subid(&it2, &id));
	/* an empty props struct iterates nothing */
	{
		struct moat_mqtt_props empty;
		memset(&empty, 0, sizeof(empty));
		moat_mqtt_props_iter(&empty, &it);
		assert_false(moat_mqtt_props_next_user(&it, &k, &v));
		moat_mqtt_props_iter(&empty, &it);
		assert_false(moat_mqtt_props_next_subid(&it, &id));
	}
	/* the same block in a SUBSCRIBE has three Subscription Identifiers: refused */
	{
		static const uint8_t sub[] = {0x26, 0x00, 0x00, 0x00, 0x00, 0x0B, 0x05,
					      0x26, 0x00, 0x00, 0x00, 0x00};
		d = decode_body(sub, sizeof(sub), MOAT_MQTT_SUBSCRIBE);
		expect_ok(&d, 1 + sizeof(sub));
		assert_int_equal(d.pr.user_count, 2);
		moat_mqtt_props_iter(&d.pr, &it);
		assert_true(moat_mqtt_props_next_subid(&it, &id));
		assert_int_equal(id, 5);
		assert_false(moat_mqtt_props_next_subid(&it, &id));
	}
}

static void test_put_user(void **state)
{
	uint8_t buf[32];
	size_t len = 0;
	struct moat_slice big = {NULL, 65536};

	(void)state;
	assert_int_equal(moat_mqtt_props_put_user(buf, sizeof(buf), &len, MOAT_SLICE_STR("k"),
						  MOAT_SLICE_STR("vv")),
			 0);
	assert_int_equal(len, 8);
	assert_memory_equal(buf, "\x26\x00\x01k\x00\x02vv", 8);
	assert_int_equal(moat_mqtt_props_put_user(buf, sizeof(buf), &len, MOAT_SLICE_STR(""),
						  MOAT_SLICE_STR("")),
			 0);
	assert_int_equal(len, 13);
	assert_memory_equal(buf + 8, "\x26\x00\x00\x00\x00", 5);
	/* 13 + 19 = 32 fits exactly */
	assert_int_equal(moat_mqtt_props_put_user(buf, sizeof(buf), &len,
						  MOAT_SLICE_STR("abcdefghijklmn"),
						  MOAT_SLICE_STR("")),
			 0);
	assert_int_equal(len, 32);
	/* full */
	assert_int_equal(moat_mqtt_props_put_user(buf, sizeof(buf), &len, MOAT_SLICE_STR(""),
						  MOAT_SLICE_STR("")),
			 MOAT_ENOSPC);
	assert_int_equal(len, 32);
	len = 30;
	assert_int_equal(moat_mqtt_props_put_user(buf, sizeof(buf), &len, MOAT_SLICE_STR("k"),
						  MOAT_SLICE_STR("v")),
			 MOAT_ENOSPC);
	assert_int_equal(len, 30);
	/* too long: refused before anything else, even with no room */
	big.p = malloc(65536);
	assert_non_null(big.p);
	len = 0;
	assert_int_equal(moat_mqtt_props_put_user(buf, sizeof(buf), &len, big,
						  MOAT_SLICE_STR("v")),
			 MOAT_EINVAL);
	assert_int_equal(moat_mqtt_props_put_user(buf, sizeof(buf), &len, MOAT_SLICE_STR("k"),
						  big),
			 MOAT_EINVAL);
	assert_int_equal(len, 0);
	/* 65535 bytes is the most a key may hold */
	{
		size_t cap = 1 + 2 + 65535 + 2 + 1;
		uint8_t *out = malloc(cap);
		struct moat_slice k = {big.p, 65535};
		assert_non_null(out);
		memset((void *)big.p, 'x', 65536);
		len = 0;
		assert_int_equal(moat_mqtt_props_put_user(out, cap, &len, k, MOAT_SLICE_STR("v")),
				 0);
		assert_int_equal(len, cap);
		assert_int_equal(out[1], 0xFF);
		assert_int_equal(out[2], 0xFF);
		free(out);
	}
	free((void *)big.p);
}

static void test_put_subid(void **state)
{
	uint8_t buf[8];
	size_t len = 0;

	(void)state;
	assert_int_equal(moat_mqtt_props_put_subid(buf, sizeof(buf), &len, 0), MOAT_EINVAL);
	assert_int_equal(moat_mqtt_props_put_subid(buf, sizeof(buf), &len, 268435456), MOAT_EINVAL);
	assert_int_equal(moat_mqtt_props_put_subid(buf, sizeof(buf), &len, 0xFFFFFFFF), MOAT_EINVAL);
	assert_int_equal(len, 0);
	assert_int_equal(moat_mqtt_props_put_subid(buf, sizeof(buf), &len, 268435455), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "\x0B\xFF\xFF\xFF\x7F", 5);
	assert_int_equal(moat_mqtt_props_put_subid(buf, sizeof(buf), &len, 128), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(buf + 5, "\x0B\x80\x01", 3);
	assert_int_equal(moat_mqtt_props_put_subid(buf, sizeof(buf), &len, 1), MOAT_ENOSPC);
	assert_int_equal(len, 8);
	len = 6;
	assert_int_equal(moat_mqtt_props_put_subid(buf, sizeof(buf), &len, 16384), MOAT_ENOSPC);
	assert_int_equal(len, 6);
	len = 6;
	assert_int_equal(moat_mqtt_props_put_subid(buf, sizeof(buf), &len, 127), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(buf + 6, "\x0B\x7F", 2);
}

/* Built blocks decode back to the entries put, in order. */
static void test_put_then_iterate(void **state)
{
	uint8_t multi[128], blk[160];
	size_t len = 0, n;
	struct moat_mqtt_prop_iter it;
	struct moat_slice k, v;
	uint32_t id;
	struct dec d;

	(void)state;
	assert_int_equal(moat_mqtt_props_put_subid(multi, sizeof(multi), &len, 7), 0);
	assert_int_equal(moat_mqtt_props_put_user(multi, sizeof(multi), &len,
						  MOAT_SLICE_STR("a"), MOAT_SLICE_STR("1")),
			 0);
	assert_int_equal(moat_mqtt_props_put_subid(multi, sizeof(multi), &len, 70000), 0);
	assert_int_equal(moat_mqtt_props_put_user(multi, sizeof(multi), &len,
						  MOAT_SLICE_STR("b"), MOAT_SLICE_STR("2")),
			 0);
	n = block(blk, multi, len);
	d = decode_raw(blk, n, MOAT_MQTT_PUBLISH, true);
	expect_ok(&d, n);
	assert_int_equal(d.pr.user_count, 2);
	assert_int_equal(d.pr.subid_count, 2);
	moat_mqtt_props_iter(&d.pr, &it);
	assert_true(moat_mqtt_props_next_user(&it, &k, &v));
	assert_memory_equal(k.p, "a", 1);
	assert_memory_equal(v.p, "1", 1);
	assert_true(moat_mqtt_props_next_user(&it, &k, &v));
	assert_memory_equal(k.p, "b", 1);
	assert_false(moat_mqtt_props_next_user(&it, &k, &v));
	moat_mqtt_props_iter(&d.pr, &it);
	assert_true(moat_mqtt_props_next_subid(&it, &id));
	assert_int_equal(id, 7);
	assert_true(moat_mqtt_props_next_subid(&it, &id));
	assert_int_equal(id, 70000);
	assert_false(moat_mqtt_props_next_subid(&it, &id));
	/* iterating a hand-built props whose multi is the put block */
	{
		struct moat_mqtt_props pr;
		memset(&pr, 0, sizeof(pr));
		pr.multi.p = multi;
		pr.multi.len = len;
		moat_mqtt_props_iter(&pr, &it);
		assert_true(moat_mqtt_props_next_subid(&it, &id));
		assert_int_equal(id, 7);
		assert_true(moat_mqtt_props_next_user(&it, &k, &v));
		assert_memory_equal(k.p, "a", 1);
		assert_true(moat_mqtt_props_next_subid(&it, &id));
		assert_int_equal(id, 70000);
		assert_true(moat_mqtt_props_next_user(&it, &k, &v));
		assert_memory_equal(k.p, "b", 1);
		assert_false(moat_mqtt_props_next_user(&it, &k, &v));
	}
}

/* ---- encoding ---- */

/* Fills every single-use property allowed in `where` with a distinctive value. */
static void fill_all(struct moat_mqtt_props *pr, unsigned where)
{
	size_t i;

	memset(pr, 0, sizeof(*pr));
	for (i = 0; i < N_EXAMPLES; i++) {
		const struct example *e = &examples[i];
		if (!(spec_where(e->id) & B(where)) || e->id == MOAT_PROP_USER_PROPERTY)
			continue;
		if (e->id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER && where == MOAT_MQTT_PUBLISH)
			continue; /* PUBLISH gets its identifiers through multi */
		pr->present |= MOAT_PROP_BIT(e->id);
		switch (e->id) {
		case 0x01: pr->payload_format = 1; break;
		case 0x02: pr->message_expiry = 0x11223344; break;
		case 0x03: pr->content_type = MOAT_SLICE_STR("application/json"); break;
		case 0x08: pr->response_topic = MOAT_SLICE_STR("reply/here"); break;
		case 0x09: pr->correlation_data = MOAT_SLICE_STR("\x00\x01\x02"); break;
		case 0x0B: pr->subscription_id = 200000; break;
		case 0x11: pr->session_expiry = 3600; break;
		case 0x12: pr->assigned_client_id = MOAT_SLICE_STR("cid"); break;
		case 0x13: pr->server_keep_alive = 30; break;
		case 0x15: pr->auth_method = MOAT_SLICE_STR("PLAIN"); break;
		case 0x16: pr->auth_data = MOAT_SLICE_STR("\xFF\xFE"); break;
		case 0x17: pr->request_problem_info = 0; break;
		case 0x18: pr->will_delay = 99; break;
		case 0x19: pr->request_response_info = 1; break;
		case 0x1A: pr->response_info = MOAT_SLICE_STR("ri"); break;
		case 0x1C: pr->server_reference = MOAT_SLICE_STR("srv"); break;
		case 0x1F: pr->reason_string = MOAT_SLICE_STR("because"); break;
		case 0x21: pr->receive_maximum = 20; break;
		case 0x22: pr->topic_alias_maximum = 10; break;
		case 0x23: pr->topic_alias = 3; break;
		case 0x24: pr->maximum_qos = 1; break;
		case 0x25: pr->retain_available = 1; break;
		case 0x27: pr->maximum_packet_size = 1 << 20; break;
		case 0x28: pr->wildcard_sub_available = 0; break;
		case 0x29: pr->sub_id_available = 1; break;
		case 0x2A: pr->shared_sub_available = 0; break;
		default: fail_msg("unhandled 0x%02X", e->id);
		}
	}
}

static void assert_props_equal(const struct moat_mqtt_props *a, const struct moat_mqtt_props *b)
{
	size_t i;

	assert_true(a->present == b->present);
	for (i = 0; i < N_EXAMPLES; i++) {
		unsigned id = examples[i].id;
		if (!moat_mqtt_props_has(a, id) || id == MOAT_PROP_USER_PROPERTY)
			continue;
		if (examples[i].str) {
			struct moat_slice x = field_str(a, id), y = field_str(b, id);
			assert_int_equal(x.len, y.len);
			if (x.len)
				assert_memory_equal(x.p, y.p, x.len);
		} else {
			assert_int_equal(field_num(a, id), field_num(b, id));
		}
	}
}

static void test_encode_round_trip(void **state)
{
	unsigned where;

	(void)state;
	for (where = 0; where < 16; where++) {
		struct moat_mqtt_props pr, back, back2;
		uint8_t multi[64], enc1[512], enc2[512];
		size_t mlen = 0, size, len1 = 0, len2 = 0, used;
		struct moat_mqtt_fault f;
		bool users = (spec_where(MOAT_PROP_USER_PROPERTY) & B(where)) != 0;

		fill_all(&pr, where);
		if (users) {
			assert_int_equal(moat_mqtt_props_put_user(multi, sizeof(multi), &mlen,
								  MOAT_SLICE_STR("x"),
								  MOAT_SLICE_STR("1")),
					 0);
		}
		if (where == MOAT_MQTT_PUBLISH) {
			assert_int_equal(moat_mqtt_props_put_subid(multi, sizeof(multi), &mlen, 42), 0);
			pr.present |= MOAT_PROP_BIT(MOAT_PROP_SUBSCRIPTION_IDENTIFIER);
			pr.subid_count = 2;
			pr.subscription_id = 42;
		}
		if (users) {
			assert_int_equal(moat_mqtt_props_put_user(multi, sizeof(multi), &mlen,
								  MOAT_SLICE_STR("y"),
								  MOAT_SLICE_STR("2")),
					 0);
			pr.present |= MOAT_PROP_BIT(MOAT_PROP_USER_PROPERTY);
			pr.user_count = 2;
		}
		if (where == MOAT_MQTT_PUBLISH)
			assert_int_equal(moat_mqtt_props_put_subid(multi, sizeof(multi), &mlen, 99999),
					 0);
		pr.multi.p = mlen ? multi : NULL;
		pr.multi.len = mlen;

		size = moat_mqtt_props_size(&pr, where);
		assert_true(size >= 1);
		assert_int_equal(moat_mqtt_props_encode(&pr, where, enc1, sizeof(enc1), &len1), 0);
		assert_int_equal(len1, size);
		/* too small a buffer */
		assert_int_equal(moat_mqtt_props_encode(&pr, where, enc2, size - 1, &len2),
				 MOAT_ENOSPC);
		/* decode what was written */
		if (moat_mqtt_props_decode(enc1, len1, where, true, &back, &used, &f) != 0)
			fail_msg("%s: encoded block does not decode: %s", where_name[where], f.why);
		assert_int_equal(used, len1);
		assert_props_equal(&pr, &back);
		assert_int_equal(back.user_count, users ? 2 : 0);
		assert_int_equal(back.subid_count, where == MOAT_MQTT_PUBLISH     ? 2
						   : where == MOAT_MQTT_SUBSCRIBE ? 1
										  : 0);
		/* re-encode: identical bytes */
		assert_int_equal(moat_mqtt_props_size(&back, where), size);
		assert_int_equal(moat_mqtt_props_encode(&back, where, enc2, sizeof(enc2), &len2), 0);
		assert_int_equal(len2, len1);
		assert_memory_equal(enc1, enc2, len1);
		/* and once more from the second decode */
		assert_int_equal(moat_mqtt_props_decode(enc2, len2, where, true, &back2, &used, &f), 0);
		assert_props_equal(&back, &back2);
		if (users) {
			struct moat_mqtt_prop_iter it;
			struct moat_slice k, v;
			moat_mqtt_props_iter(&back2, &it);
			assert_true(moat_mqtt_props_next_user(&it, &k, &v));
			assert_memory_equal(k.p, "x", 1);
			assert_true(moat_mqtt_props_next_user(&it, &k, &v));
			assert_memory_equal(k.p, "y", 1);
			assert_false(moat_mqtt_props_next_user(&it, &k, &v));
		}
		if (where == MOAT_MQTT_PUBLISH) {
			struct moat_mqtt_prop_iter it;
			uint32_t id;
			moat_mqtt_props_iter(&back2, &it);
			assert_true(moat_mqtt_props_next_subid(&it, &id));
			assert_int_equal(id, 42);
			assert_true(moat_mqtt_props_next_subid(&it, &id));
			assert_int_equal(id, 99999);
			assert_false(moat_mqtt_props_next_subid(&it, &id));
		}
	}
}

/* Decoding arbitrary valid blocks and re-encoding them is stable. */
static void test_decode_encode_decode(void **state)
{
	uint8_t blk[128], enc1[160], enc2[160];
	size_t n, len1, len2, used;
	struct moat_mqtt_props a, b;
	struct moat_mqtt_fault f;

	(void)state;
	n = block(blk, interleaved, sizeof(interleaved));
	assert_int_equal(moat_mqtt_props_decode(blk, n, MOAT_MQTT_PUBLISH, false, &a, &used, &f), 0);
	assert_int_equal(moat_mqtt_props_encode(&a, MOAT_MQTT_PUBLISH, enc1, sizeof(enc1), &len1), 0);
	/* same content, canonical order: single-use properties, then the repeatable ones */
	assert_int_equal(len1, n);
	assert_int_equal(moat_mqtt_props_decode(enc1, len1, MOAT_MQTT_PUBLISH, false, &b, &used, &f),
			 0);
	assert_props_equal(&a, &b);
	assert_int_equal(b.user_count, 3);
	assert_int_equal(b.subid_count, 3);
	assert_int_equal(moat_mqtt_props_encode(&b, MOAT_MQTT_PUBLISH, enc2, sizeof(enc2), &len2), 0);
	assert_int_equal(len2, len1);
	assert_memory_equal(enc1, enc2, len1);
	/* an empty block */
	memset(&a, 0, sizeof(a));
	assert_int_equal(moat_mqtt_props_size(&a, MOAT_MQTT_PINGREQ), 1);
	assert_int_equal(moat_mqtt_props_encode(&a, MOAT_MQTT_PUBACK, enc1, 1, &len1), 0);
	assert_int_equal(len1, 1);
	assert_int_equal(enc1[0], 0);
	assert_int_equal(moat_mqtt_props_encode(&a, MOAT_MQTT_PUBACK, enc1, 0, &len1), MOAT_ENOSPC);
	/* a scalar Subscription Identifier in SUBSCRIBE */
	memset(&a, 0, sizeof(a));
	a.present = MOAT_PROP_BIT(MOAT_PROP_SUBSCRIPTION_IDENTIFIER);
	a.subscription_id = 300;
	assert_int_equal(moat_mqtt_props_encode(&a, MOAT_MQTT_SUBSCRIBE, enc1, sizeof(enc1), &len1),
			 0);
	assert_int_equal(len1, 4);
	assert_memory_equal(enc1, "\x03\x0B\xAC\x02", 4);
}

static void test_encode_refusals(void **state)
{
	struct moat_mqtt_props pr;
	uint8_t buf[256], multi[16];
	size_t len = 777, mlen = 0;
	size_t i;
	unsigned where;

	(void)state;
	/* every property, present where it is not allowed */
	for (i = 0; i < N_EXAMPLES; i++) {
		unsigned id = examples[i].id;
		for (where = 0; where < 16; where++) {
			if (spec_where(id) & B(where) || id == MOAT_PROP_USER_PROPERTY)
				continue;
			memset(&pr, 0, sizeof(pr));
			pr.present = MOAT_PROP_BIT(id);
			if (id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER)
				pr.subscription_id = 1;
			if (moat_mqtt_props_size(&pr, where) != 0)
				fail_msg("%s in %s: size %zu, want 0", examples[i].name,
					 where_name[where], moat_mqtt_props_size(&pr, where));
			len = 777;
			assert_int_equal(moat_mqtt_props_encode(&pr, where, buf, sizeof(buf), &len),
					 MOAT_EINVAL);
			assert_int_equal(len, 777);
		}
	}
	/* a present bit of an unknown property */
	memset(&pr, 0, sizeof(pr));
	pr.present = MOAT_PROP_BIT(0x04);
	assert_int_equal(moat_mqtt_props_size(&pr, MOAT_MQTT_PUBLISH), 0);
	assert_int_equal(moat_mqtt_props_encode(&pr, MOAT_MQTT_PUBLISH, buf, sizeof(buf), &len),
			 MOAT_EINVAL);
	/* User Property entries in a packet without properties for them */
	assert_int_equal(moat_mqtt_props_put_user(multi, sizeof(multi), &mlen, MOAT_SLICE_STR("k"),
						  MOAT_SLICE_STR("v")),
			 0);
	memset(&pr, 0, sizeof(pr));
	pr.present = MOAT_PROP_BIT(MOAT_PROP_USER_PROPERTY);
	pr.user_count = 1;
	pr.multi.p = multi;
	pr.multi.len = mlen;
	assert_int_equal(moat_mqtt_props_size(&pr, MOAT_MQTT_PINGREQ), 0);
	assert_int_equal(moat_mqtt_props_encode(&pr, MOAT_MQTT_PINGREQ, buf, sizeof(buf), &len),
			 MOAT_EINVAL);
	assert_true(moat_mqtt_props_size(&pr, MOAT_MQTT_PUBACK) == 1 + mlen);
	/* Subscription Identifier entries in CONNECT */
	mlen = 0;
	assert_int_equal(moat_mqtt_props_put_subid(multi, sizeof(multi), &mlen, 5), 0);
	memset(&pr, 0, sizeof(pr));
	pr.present = MOAT_PROP_BIT(MOAT_PROP_SUBSCRIPTION_IDENTIFIER);
	pr.subid_count = 1;
	pr.subscription_id = 5;
	pr.multi.p = multi;
	pr.multi.len = mlen;
	assert_int_equal(moat_mqtt_props_size(&pr, MOAT_MQTT_CONNECT), 0);
	assert_int_equal(moat_mqtt_props_size(&pr, MOAT_MQTT_PUBLISH), 1 + mlen);
	/* a scalar Subscription Identifier too large for a varint */
	memset(&pr, 0, sizeof(pr));
	pr.present = MOAT_PROP_BIT(MOAT_PROP_SUBSCRIPTION_IDENTIFIER);
	pr.subscription_id = 268435456;
	assert_int_equal(moat_mqtt_props_size(&pr, MOAT_MQTT_SUBSCRIBE), 0);
	assert_int_equal(moat_mqtt_props_encode(&pr, MOAT_MQTT_SUBSCRIBE, buf, sizeof(buf), &len),
			 MOAT_EINVAL);
	/* a string longer than 65535 bytes */
	{
		uint8_t *big = calloc(1, 65536);
		assert_non_null(big);
		memset(&pr, 0, sizeof(pr));
		pr.present = MOAT_PROP_BIT(MOAT_PROP_REASON_STRING);
		pr.reason_string.p = big;
		pr.reason_string.len = 65536;
		assert_int_equal(moat_mqtt_props_size(&pr, MOAT_MQTT_PUBACK), 0);
		assert_int_equal(moat_mqtt_props_encode(&pr, MOAT_MQTT_PUBACK, buf, sizeof(buf), &len),
				 MOAT_EINVAL);
		pr.reason_string.len = 65535; /* the longest that fits */
		assert_int_equal(moat_mqtt_props_size(&pr, MOAT_MQTT_PUBACK), 3 + 1 + 2 + 65535);
		free(big);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_property_where_allowed),
		cmocka_unit_test(test_allowed_table),
		cmocka_unit_test(test_prop_names),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_bool_values),
		cmocka_unit_test(test_zero_values),
		cmocka_unit_test(test_response_topic),
		cmocka_unit_test(test_unknown_ids),
		cmocka_unit_test(test_truncated_values),
		cmocka_unit_test(test_block_length),
		cmocka_unit_test(test_subid_varint),
		cmocka_unit_test(test_string_utf8),
		cmocka_unit_test(test_iteration_order),
		cmocka_unit_test(test_put_user),
		cmocka_unit_test(test_put_subid),
		cmocka_unit_test(test_put_then_iterate),
		cmocka_unit_test(test_encode_round_trip),
		cmocka_unit_test(test_decode_encode_decode),
		cmocka_unit_test(test_encode_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
