/*
 * test_codec.c - round trips of every MQTT control packet through the codec
 * (src/mqtt/encode.c, decode.c, props.c, frame.c's moat_mqtt_fixed_header).
 *
 * For every packet type, in every version where it exists (3 = MQTT 3.1
 * "MQIsdp", 4 = 3.1.1, 5 = 5.0), a struct moat_mqtt_packet is built, encoded,
 * and compared byte for byte with the packet written out by hand from the
 * specs (the hex below was worked out from the spec's field layouts, not
 * taken from the encoder). The bytes are then split with
 * moat_mqtt_fixed_header, decoded in each direction the packet may travel,
 * every decoded field is compared with what was encoded, and the decoded
 * packet is re-encoded to the same bytes.
 *
 * Covered besides: all 27 MQTT 5.0 properties (the CONNECT and Will
 * properties, every CONNACK property, multiple User Properties, several
 * Subscription Identifiers in a server's PUBLISH), the 5.0 short forms of
 * the acknowledgements, DISCONNECT and AUTH, CONNECT with and without will,
 * user name and password, empty client identifiers, a 200 KB payload (a
 * 3-byte Remaining Length), SUBSCRIBE options (No Local, Retain As
 * Published, Retain Handling 0/1/2), MOAT_ENOSPC and MOAT_EINVAL from the
 * encoder, reason code names and moat_mqtt_connect_version.
 *
 * Encoder order (props.h): single-use properties in identifier order, then
 * the User Property / Subscription Identifier entries of `multi` in order;
 * the expected bytes follow that order, which the spec leaves free.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/hex.h"
#include "mqtt/frame.h"
#include "mqtt/packet.h"
#include "mqtt/props.h"
#include "mqtt/reason.h"
#include "mqtt/types.h"

#define C2S 1 /* decode as a server receiving from a client */
#define S2C 2 /* decode as a client receiving from a server */
#define BOTH (C2S | S2C)

#define S(lit) MOAT_SLICE_STR(lit)
#define BIT(id) MOAT_PROP_BIT(MOAT_PROP_##id)

/* ---- helpers ---- */

/* Decodes hex (whitespace ignored) into out[0..cap). Returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*hex) {
		int hi, lo;

		if (*hex == ' ' || *hex == '\n' || *hex == '\t') {
			hex++;
			continue;
		}
		hi = moat_hex_digit((unsigned char)hex[0]);
		lo = hex[1] ? moat_hex_digit((unsigned char)hex[1]) : -1;
		assert_true(hi >= 0 && lo >= 0);
		assert_true(n < cap);
		out[n++] = (uint8_t)(hi << 4 | lo);
		hex += 2;
	}
	return n;
}

static void print_hex(const char *label, const uint8_t *p, size_t n)
{
	size_t i;

	print_error("%s (%zu bytes):", label, n);
	for (i = 0; i < n && i < 256; i++)
		print_error(" %02X", p[i]);
	print_error("%s\n", n > 256 ? " ..." : "");
}

static void assert_bytes(const uint8_t *got, size_t gn, const uint8_t *want, size_t wn)
{
	if (gn != wn || memcmp(got, want, wn) != 0) {
		print_hex("expected", want, wn);
		print_hex("encoded ", got, gn);
		fail_msg("encoded bytes differ from the spec's");
	}
}

static void assert_slice(struct moat_slice got, struct moat_slice want)
{
	assert_int_equal(got.len, want.len);
	if (want.len)
		assert_memory_equal(got.p, want.p, want.len);
}

static void assert_slice_str(struct moat_slice got, const char *want)
{
	assert_slice(got, (struct moat_slice){(const uint8_t *)want, strlen(want)});
}

/* Appends a User Property to a props block under construction in buf. */
static void add_user(struct moat_mqtt_props *pr, uint8_t *buf, size_t cap, const char *k,
		     const char *v)
{
	size_t len = pr->multi.len;

	assert_int_equal(moat_mqtt_props_put_user(buf, cap, &len,
						  (struct moat_slice){(const uint8_t *)k, strlen(k)},
						  (struct moat_slice){(const uint8_t *)v, strlen(v)}),
			 0);
	pr->multi = (struct moat_slice){buf, len};
	pr->user_count++;
	pr->present |= BIT(USER_PROPERTY);
}

static void add_subid(struct moat_mqtt_props *pr, uint8_t *buf, size_t cap, uint32_t id)
{
	size_t len = pr->multi.len;

	assert_int_equal(moat_mqtt_props_put_subid(buf, cap, &len, id), 0);
	pr->multi = (struct moat_slice){buf, len};
	pr->subid_count++;
	pr->present |= BIT(SUBSCRIPTION_IDENTIFIER);
}

/* The Subscription Identifiers of pr, from multi or the scalar. Returns the count. */
static size_t subids(const struct moat_mqtt_props *pr, uint32_t *out, size_t cap)
{
	struct moat_mqtt_prop_iter it;
	size_t n = 0;
	uint32_t id;

	if (pr->subid_count == 0) {
		if (moat_mqtt_props_has(pr, MOAT_PROP_SUBSCRIPTION_IDENTIFIER)) {
			out[0] = pr->subscription_id;
			return 1;
		}
		return 0;
	}
	moat_mqtt_props_iter(pr, &it);
	while (moat_mqtt_props_next_subid(&it, &id)) {
		assert_true(n < cap);
		out[n++] = id;
	}
	return n;
}

/* Asserts the decoded properties got carry exactly the encoded ones want. */
static void assert_props(const struct moat_mqtt_props *got, const struct moat_mqtt_props *want)
{
	struct moat_mqtt_prop_iter gi, wi;
	struct moat_slice gk, gv, wk, wv;
	uint32_t gs[16], ws[16];
	size_t gn, wn, users = 0;

	assert_int_equal(got->present, want->present);
#define NUM(field, id)                                                                     \
	assert_int_equal(got->field, moat_mqtt_props_has(want, MOAT_PROP_##id) ? want->field : 0)
#define STR(field, id)                                                                     \
	do {                                                                               \
		if (moat_mqtt_props_has(want, MOAT_PROP_##id))                             \
			assert_slice(got->field, want->field);                             \
		else                                                                       \
			assert_int_equal(got->field.len, 0);                               \
	} while (0)
	NUM(payload_format, PAYLOAD_FORMAT_INDICATOR);
	NUM(message_expiry, MESSAGE_EXPIRY_INTERVAL);
	NUM(session_expiry, SESSION_EXPIRY_INTERVAL);
	NUM(will_delay, WILL_DELAY_INTERVAL);
	NUM(maximum_packet_size, MAXIMUM_PACKET_SIZE);
	NUM(server_keep_alive, SERVER_KEEP_ALIVE);
	NUM(receive_maximum, RECEIVE_MAXIMUM);
	NUM(topic_alias_maximum, TOPIC_ALIAS_MAXIMUM);
	NUM(topic_alias, TOPIC_ALIAS);
	NUM(request_problem_info, REQUEST_PROBLEM_INFORMATION);
	NUM(request_response_info, REQUEST_RESPONSE_INFORMATION);
	NUM(maximum_qos, MAXIMUM_QOS);
	NUM(retain_available, RETAIN_AVAILABLE);
	NUM(wildcard_sub_available, WILDCARD_SUBSCRIPTION_AVAILABLE);
	NUM(sub_id_available, SUBSCRIPTION_IDENTIFIER_AVAILABLE);
	NUM(shared_sub_available, SHARED_SUBSCRIPTION_AVAILABLE);
	STR(content_type, CONTENT_TYPE);
	STR(response_topic, RESPONSE_TOPIC);
	STR(correlation_data, CORRELATION_DATA);
	STR(assigned_client_id, ASSIGNED_CLIENT_IDENTIFIER);
	STR(auth_method, AUTHENTICATION_METHOD);
	STR(auth_data, AUTHENTICATION_DATA);
	STR(response_info, RESPONSE_INFORMATION);
	STR(server_reference, SERVER_REFERENCE);
	STR(reason_string, REASON_STRING);
#undef NUM
#undef STR

	/* User Properties: same pairs in the same order, and counted. */
	moat_mqtt_props_iter(got, &gi);
	moat_mqtt_props_iter(want, &wi);
	while (moat_mqtt_props_next_user(&wi, &wk, &wv)) {
		assert_true(moat_mqtt_props_next_user(&gi, &gk, &gv));
		assert_slice(gk, wk);
		assert_slice(gv, wv);
		users++;
	}
	assert_false(moat_mqtt_props_next_user(&gi, &gk, &gv));
	assert_int_equal(got->user_count, users);
	assert_int_equal(want->user_count, users);

	/* Subscription Identifiers: same list; the first one in the scalar. */
	wn = subids(want, ws, 16);
	gn = subids(got, gs, 16);
	assert_int_equal(gn, wn);
	assert_int_equal(got->subid_count, wn);
	if (wn) {
		assert_memory_equal(gs, ws, wn * sizeof(ws[0]));
		assert_int_equal(got->subscription_id, ws[0]);
	}
}

static const struct moat_mqtt_props no_props;

/* Asserts every field of the decoded packet got equals the encoded one want. */
static void assert_packet(const struct moat_mqtt_packet *got, const struct moat_mqtt_packet *want)
{
	assert_int_equal(got->type, want->type);
	assert_int_equal(got->version, want->version);
	switch (want->type) {
	case MOAT_MQTT_CONNECT: {
		const struct moat_mqtt_connect *g = &got->connect, *w = &want->connect;

		assert_int_equal(g->version, w->version);
		assert_int_equal(g->clean_start, w->clean_start);
		assert_int_equal(g->will, w->will);
		assert_int_equal(g->will_qos, w->will ? w->will_qos : 0);
		assert_int_equal(g->will_retain, w->will && w->will_retain);
		assert_int_equal(g->has_username, w->has_username);
		assert_int_equal(g->has_password, w->has_password);
		assert_int_equal(g->keep_alive, w->keep_alive);
		assert_slice(g->client_id, w->client_id);
		assert_props(&g->props, &w->props);
		if (w->will) {
			assert_slice(g->will_topic, w->will_topic);
			assert_slice(g->will_payload, w->will_payload);
			assert_props(&g->will_props, &w->will_props);
		} else {
			assert_int_equal(g->will_topic.len, 0);
			assert_int_equal(g->will_payload.len, 0);
			assert_props(&g->will_props, &no_props);
		}
		if (w->has_username)
			assert_slice(g->username, w->username);
		if (w->has_password)
			assert_slice(g->password, w->password);
		break;
	}
	case MOAT_MQTT_CONNACK:
		assert_int_equal(got->connack.session_present, want->connack.session_present);
		assert_int_equal(got->connack.reason, want->connack.reason);
		assert_props(&got->connack.props, &want->connack.props);
		break;
	case MOAT_MQTT_PUBLISH:
		assert_int_equal(got->publish.qos, want->publish.qos);
		assert_int_equal(got->publish.dup, want->publish.dup);
		assert_int_equal(got->publish.retain, want->publish.retain);
		assert_int_equal(got->publish.packet_id, want->publish.qos ? want->publish.packet_id : 0);
		assert_slice(got->publish.topic, want->publish.topic);
		assert_slice(got->publish.payload, want->publish.payload);
		assert_props(&got->publish.props, &want->publish.props);
		break;
	case MOAT_MQTT_PUBACK:
	case MOAT_MQTT_PUBREC:
	case MOAT_MQTT_PUBREL:
	case MOAT_MQTT_PUBCOMP:
		assert_int_equal(got->ack.packet_id, want->ack.packet_id);
		assert_int_equal(got->ack.reason, want->ack.reason);
		assert_props(&got->ack.props, &want->ack.props);
		break;
	case MOAT_MQTT_SUBSCRIBE:
	case MOAT_MQTT_UNSUBSCRIBE:
		assert_int_equal(got->subscribe.packet_id, want->subscribe.packet_id);
		assert_int_equal(got->subscribe.count, want->subscribe.count);
		assert_slice(got->subscribe.entries, want->subscribe.entries);
		assert_props(&got->subscribe.props, &want->subscribe.props);
		break;
	case MOAT_MQTT_SUBACK:
	case MOAT_MQTT_UNSUBACK:
		assert_int_equal(got->suback.packet_id, want->suback.packet_id);
		if (want->type == MOAT_MQTT_UNSUBACK && want->version != MOAT_MQTT_V5)
			assert_int_equal(got->suback.reasons.len, 0);
		else
			assert_slice(got->suback.reasons, want->suback.reasons);
		assert_props(&got->suback.props, &want->suback.props);
		break;
	case MOAT_MQTT_DISCONNECT:
	case MOAT_MQTT_AUTH:
		assert_int_equal(got->disconnect.reason, want->disconnect.reason);
		assert_props(&got->disconnect.props, &want->disconnect.props);
		break;
	default:
		break;
	}
}

/* Splits a whole packet and decodes it. CONNECT is decoded as a first packet (version 0). */
static void decode_ok(const uint8_t *b, size_t n, uint8_t version, bool from_client,
		      struct moat_mqtt_packet *out)
{
	struct moat_mqtt_decode_opts o = {version, from_client, false};
	struct moat_mqtt_fault f = {0};
	uint8_t header = 0;
	uint32_t rem = 0;
	size_t hlen = 0;
	int rc;

	assert_int_equal(moat_mqtt_fixed_header(b, n, &header, &rem, &hlen, &f), 1);
	assert_int_equal(header, b[0]);
	assert_int_equal(hlen + rem, n);
	if (header >> 4 == MOAT_MQTT_CONNECT)
		o.version = 0;
	rc = moat_mqtt_decode(&o, header, b + hlen, rem, out, &f);
	if (rc != 0)
		fail_msg("decode refused (%s, from_client %d): %s [%s]", moat_strerror(rc),
			 from_client, f.why ? f.why : "?", f.rule ? f.rule : "-");
}

/*
 * Buffers are static, so a failing test (which cmocka leaves by longjmp)
 * leaks nothing under ASan.
 */
#define BIG (256 * 1024)
static uint8_t wire_buf[BIG], again_buf[BIG], want_buf[BIG], payload_buf[BIG];

/* Encodes pkt into buf with a capacity of exactly the announced size. */
static uint8_t *encode_exact(const struct moat_mqtt_packet *pkt, uint8_t *buf, size_t *n)
{
	size_t size = 0, len = 0;

	assert_int_equal(moat_mqtt_encode_size(pkt, &size), 0);
	assert_true(size <= BIG);
	assert_int_equal(moat_mqtt_encode(pkt, buf, size, &len), 0);
	assert_int_equal(len, size);
	*n = len;
	return buf;
}

/*
 * The round trip: encode pkt and compare with want[0..wn); decode in each
 * direction of dirs and compare every field with pkt; re-encode each decoded
 * packet and compare with want again.
 */
static void roundtrip_bytes(const struct moat_mqtt_packet *pkt, const uint8_t *want, size_t wn,
			    int dirs)
{
	size_t n, n2;
	uint8_t *wire = encode_exact(pkt, wire_buf, &n);
	int d;

	assert_bytes(wire, n, want, wn);
	for (d = C2S; d <= S2C; d <<= 1) {
		struct moat_mqtt_packet got;
		uint8_t *again;

		if (!(dirs & d))
			continue;
		memset(&got, 0xA5, sizeof(got)); /* the decoder must set every field */
		decode_ok(wire, n, pkt->version, d == C2S, &got);
		assert_packet(&got, pkt);
		again = encode_exact(&got, again_buf, &n2);
		assert_bytes(again, n2, want, wn);
	}
}

static void roundtrip(const struct moat_mqtt_packet *pkt, const char *hex, int dirs)
{
	uint8_t want[1024];
	size_t wn = unhex(hex, want, sizeof(want));

	roundtrip_bytes(pkt, want, wn, dirs);
}

/* ---- CONNECT ---- */

static void test_connect_v31(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNECT, .version = MOAT_MQTT_V31};

	(void)state;
	p.connect.version = MOAT_MQTT_V31;
	p.connect.clean_start = true;
	p.connect.keep_alive = 60;
	p.connect.client_id = S("moat");
	roundtrip(&p, "10 12 00 06 4D 51 49 73 64 70 03 02 00 3C 00 04 6D 6F 61 74", C2S);

	/* will QoS 1 retained, user name and password (3.1 flags byte EE) */
	p.connect.will = true;
	p.connect.will_qos = 1;
	p.connect.will_retain = true;
	p.connect.will_topic = S("w/t");
	p.connect.will_payload = S("bye");
	p.connect.has_username = true;
	p.connect.username = S("u");
	p.connect.has_password = true;
	p.connect.password = S("p");
	p.connect.client_id = S("c1");
	roundtrip(&p,
		  "10 20 00 06 4D 51 49 73 64 70 03 EE 00 3C 00 02 63 31"
		  " 00 03 77 2F 74 00 03 62 79 65 00 01 75 00 01 70",
		  C2S);
}

static void test_connect_v311(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNECT, .version = MOAT_MQTT_V311};
	static const uint8_t bin3[] = {0x00, 0x01, 0x02}, pw[] = {0x00, 0xFF};

	(void)state;
	p.connect.version = MOAT_MQTT_V311;
	p.connect.clean_start = true;
	p.connect.keep_alive = 60;
	p.connect.client_id = S("moat");
	roundtrip(&p, "10 10 00 04 4D 51 54 54 04 02 00 3C 00 04 6D 6F 61 74", C2S);

	/* will QoS 2 not retained, user name without password, clean session 0 */
	memset(&p.connect, 0, sizeof(p.connect));
	p.connect.version = MOAT_MQTT_V311;
	p.connect.keep_alive = 300;
	p.connect.client_id = S("cid");
	p.connect.will = true;
	p.connect.will_qos = 2;
	p.connect.will_topic = S("a/b");
	p.connect.will_payload = (struct moat_slice){bin3, sizeof(bin3)};
	p.connect.has_username = true;
	p.connect.username = S("user");
	roundtrip(&p,
		  "10 1F 00 04 4D 51 54 54 04 94 01 2C 00 03 63 69 64"
		  " 00 03 61 2F 62 00 03 00 01 02 00 04 75 73 65 72",
		  C2S);

	/* user name and binary password, no will, the largest keep alive */
	memset(&p.connect, 0, sizeof(p.connect));
	p.connect.version = MOAT_MQTT_V311;
	p.connect.clean_start = true;
	p.connect.keep_alive = 0xFFFF;
	p.connect.client_id = S("x");
	p.connect.has_username = true;
	p.connect.username = S("u");
	p.connect.has_password = true;
	p.connect.password = (struct moat_slice){pw, sizeof(pw)};
	roundtrip(&p, "10 14 00 04 4D 51 54 54 04 C2 FF FF 00 01 78 00 01 75 00 02 00 FF", C2S);
}

/* 3.1.1 allows a zero-length client id with Clean Session 1 [MQTT-3.1.3-7]. */
static void test_connect_v311_empty_client_id(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNECT, .version = MOAT_MQTT_V311};

	(void)state;
	p.connect.version = MOAT_MQTT_V311;
	p.connect.clean_start = true;
	p.connect.client_id = (struct moat_slice){NULL, 0};
	roundtrip(&p, "10 0C 00 04 4D 51 54 54 04 02 00 00 00 00", C2S);
}

static void test_connect_v5_minimal(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNECT, .version = MOAT_MQTT_V5};

	(void)state;
	p.connect.version = MOAT_MQTT_V5;
	p.connect.clean_start = true;
	p.connect.keep_alive = 60;
	/* empty client id: the server assigns one (5.0 section 3.1.3.1) */
	roundtrip(&p, "10 0D 00 04 4D 51 54 54 05 02 00 3C 00 00 00", C2S);

	/* 5.0 allows a password without a user name (3.1.2.9) */
	memset(&p.connect, 0, sizeof(p.connect));
	p.connect.version = MOAT_MQTT_V5;
	p.connect.clean_start = true;
	p.connect.client_id = S("p");
	p.connect.has_password = true;
	p.connect.password = S("pw");
	roundtrip(&p, "10 12 00 04 4D 51 54 54 05 42 00 00 00 00 01 70 00 02 70 77", C2S);
}

/* Every CONNECT property and every Will property, two User Properties in CONNECT. */
static void test_connect_v5_all_properties(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNECT, .version = MOAT_MQTT_V5};
	struct moat_mqtt_connect *c = &p.connect;
	static const uint8_t adata[] = {0xAB, 0xCD}, corr[] = {0x01, 0x02}, pw[] = {0x00, 0xFF};
	uint8_t users[64], wusers[64];

	(void)state;
	c->version = MOAT_MQTT_V5;
	c->clean_start = true;
	c->keep_alive = 10;
	c->client_id = S("moat-5");
	c->props.present = BIT(SESSION_EXPIRY_INTERVAL) | BIT(AUTHENTICATION_METHOD) |
			   BIT(AUTHENTICATION_DATA) | BIT(REQUEST_PROBLEM_INFORMATION) |
			   BIT(REQUEST_RESPONSE_INFORMATION) | BIT(RECEIVE_MAXIMUM) |
			   BIT(TOPIC_ALIAS_MAXIMUM) | BIT(MAXIMUM_PACKET_SIZE);
	c->props.session_expiry = 3600;
	c->props.auth_method = S("tok");
	c->props.auth_data = (struct moat_slice){adata, sizeof(adata)};
	c->props.request_problem_info = 0;
	c->props.request_response_info = 1;
	c->props.receive_maximum = 20;
	c->props.topic_alias_maximum = 10;
	c->props.maximum_packet_size = 65536;
	add_user(&c->props, users, sizeof(users), "k", "v");
	add_user(&c->props, users, sizeof(users), "k", "w"); /* a key may repeat */

	c->will = true;
	c->will_qos = 1;
	c->will_retain = true;
	c->will_topic = S("w");
	c->will_payload = S("gone");
	c->will_props.present = BIT(PAYLOAD_FORMAT_INDICATOR) | BIT(MESSAGE_EXPIRY_INTERVAL) |
				BIT(CONTENT_TYPE) | BIT(RESPONSE_TOPIC) | BIT(CORRELATION_DATA) |
				BIT(WILL_DELAY_INTERVAL);
	c->will_props.payload_format = 1;
	c->will_props.message_expiry = 60;
	c->will_props.content_type = S("text");
	c->will_props.response_topic = S("resp");
	c->will_props.correlation_data = (struct moat_slice){corr, sizeof(corr)};
	c->will_props.will_delay = 5;
	add_user(&c->will_props, wusers, sizeof(wusers), "wk", "wv");

	c->has_username = true;
	c->username = S("user");
	c->has_password = true;
	c->password = (struct moat_slice){pw, sizeof(pw)};

	roundtrip(&p,
		  "10 7C"
		  " 00 04 4D 51 54 54 05 EE 00 0A"
		  " 2D"
		  " 11 00 00 0E 10"
		  " 15 00 03 74 6F 6B"
		  " 16 00 02 AB CD"
		  " 17 00"
		  " 19 01"
		  " 21 00 14"
		  " 22 00 0A"
		  " 27 00 01 00 00"
		  " 26 00 01 6B 00 01 76"
		  " 26 00 01 6B 00 01 77"
		  " 00 06 6D 6F 61 74 2D 35"
		  " 28"
		  " 01 01"
		  " 02 00 00 00 3C"
		  " 03 00 04 74 65 78 74"
		  " 08 00 04 72 65 73 70"
		  " 09 00 02 01 02"
		  " 18 00 00 00 05"
		  " 26 00 02 77 6B 00 02 77 76"
		  " 00 01 77"
		  " 00 04 67 6F 6E 65"
		  " 00 04 75 73 65 72"
		  " 00 02 00 FF",
		  C2S);
}

/* ---- CONNACK ---- */

static void test_connack_v3(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNACK, .version = MOAT_MQTT_V31};

	(void)state;
	roundtrip(&p, "20 02 00 00", S2C);
	p.connack.reason = MOAT_CONNACK_NOT_AUTHORIZED;
	roundtrip(&p, "20 02 00 05", S2C);

	p.version = MOAT_MQTT_V311;
	p.connack.reason = 0;
	p.connack.session_present = true;
	roundtrip(&p, "20 02 01 00", S2C);
	p.connack.session_present = false;
	p.connack.reason = MOAT_CONNACK_BAD_USERNAME_PASSWORD;
	roundtrip(&p, "20 02 00 04", S2C);
}

static void test_connack_v5_refused(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNACK, .version = MOAT_MQTT_V5};

	(void)state;
	p.connack.reason = MOAT_RC_UNSUPPORTED_PROTOCOL_VERSION;
	roundtrip(&p, "20 03 00 84 00", S2C);
}

/* Every property a CONNACK may carry. */
static void test_connack_v5_all_properties(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNACK, .version = MOAT_MQTT_V5};
	struct moat_mqtt_props *pr = &p.connack.props;
	static const uint8_t adata[] = {0xEE};
	uint8_t users[32];

	(void)state;
	p.connack.session_present = true;
	pr->present = BIT(SESSION_EXPIRY_INTERVAL) | BIT(ASSIGNED_CLIENT_IDENTIFIER) |
		      BIT(SERVER_KEEP_ALIVE) | BIT(AUTHENTICATION_METHOD) |
		      BIT(AUTHENTICATION_DATA) | BIT(RESPONSE_INFORMATION) | BIT(SERVER_REFERENCE) |
		      BIT(REASON_STRING) | BIT(RECEIVE_MAXIMUM) | BIT(TOPIC_ALIAS_MAXIMUM) |
		      BIT(MAXIMUM_QOS) | BIT(RETAIN_AVAILABLE) | BIT(MAXIMUM_PACKET_SIZE) |
		      BIT(WILDCARD_SUBSCRIPTION_AVAILABLE) |
		      BIT(SUBSCRIPTION_IDENTIFIER_AVAILABLE) | BIT(SHARED_SUBSCRIPTION_AVAILABLE);
	pr->session_expiry = 120;
	pr->assigned_client_id = S("abc");
	pr->server_keep_alive = 30;
	pr->auth_method = S("tok");
	pr->auth_data = (struct moat_slice){adata, 1};
	pr->response_info = S("info");
	pr->server_reference = S("srv");
	pr->reason_string = S("ok");
	pr->receive_maximum = 10;
	pr->topic_alias_maximum = 5;
	pr->maximum_qos = 1;
	pr->retain_available = 0;
	pr->maximum_packet_size = 4096;
	pr->wildcard_sub_available = 1;
	pr->sub_id_available = 0;
	pr->shared_sub_available = 1;
	add_user(pr, users, sizeof(users), "a", "b");
	roundtrip(&p,
		  "20 49 01 00 46"
		  " 11 00 00 00 78"
		  " 12 00 03 61 62 63"
		  " 13 00 1E"
		  " 15 00 03 74 6F 6B"
		  " 16 00 01 EE"
		  " 1A 00 04 69 6E 66 6F"
		  " 1C 00 03 73 72 76"
		  " 1F 00 02 6F 6B"
		  " 21 00 0A"
		  " 22 00 05"
		  " 24 01"
		  " 25 00"
		  " 27 00 00 10 00"
		  " 28 01"
		  " 29 00"
		  " 2A 01"
		  " 26 00 01 61 00 01 62",
		  S2C);
}

/* ---- PUBLISH ---- */

static void test_publish_v3(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PUBLISH, .version = MOAT_MQTT_V31};

	(void)state;
	p.publish.topic = S("a/b");
	p.publish.payload = S("hi");
	roundtrip(&p, "30 07 00 03 61 2F 62 68 69", BOTH);

	p.version = MOAT_MQTT_V311;
	roundtrip(&p, "30 07 00 03 61 2F 62 68 69", BOTH);

	p.publish.qos = 1;
	p.publish.retain = true;
	p.publish.packet_id = 10;
	roundtrip(&p, "33 09 00 03 61 2F 62 00 0A 68 69", BOTH);

	p.publish.qos = 2;
	p.publish.retain = false;
	p.publish.dup = true;
	p.publish.packet_id = 0x1234;
	roundtrip(&p, "3C 09 00 03 61 2F 62 12 34 68 69", BOTH);

	p.version = MOAT_MQTT_V31;
	roundtrip(&p, "3C 09 00 03 61 2F 62 12 34 68 69", BOTH);

	/* an empty payload is allowed */
	memset(&p.publish, 0, sizeof(p.publish));
	p.version = MOAT_MQTT_V311;
	p.publish.topic = S("a/b");
	roundtrip(&p, "30 05 00 03 61 2F 62", BOTH);
}

/* Every property a client's PUBLISH may carry, two User Properties. */
static void test_publish_v5_all_properties(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PUBLISH, .version = MOAT_MQTT_V5};
	struct moat_mqtt_props *pr = &p.publish.props;
	static const uint8_t corr[] = {1, 2, 3};
	uint8_t users[32];

	(void)state;
	p.publish.qos = 1;
	p.publish.packet_id = 1;
	p.publish.topic = S("t/x");
	p.publish.payload = S("h\xC3\xA9");
	pr->present = BIT(PAYLOAD_FORMAT_INDICATOR) | BIT(MESSAGE_EXPIRY_INTERVAL) |
		      BIT(CONTENT_TYPE) | BIT(RESPONSE_TOPIC) | BIT(CORRELATION_DATA) |
		      BIT(TOPIC_ALIAS);
	pr->payload_format = 1;
	pr->message_expiry = 300;
	pr->content_type = S("text");
	pr->response_topic = S("r/1");
	pr->correlation_data = (struct moat_slice){corr, sizeof(corr)};
	pr->topic_alias = 7;
	add_user(pr, users, sizeof(users), "a", "1");
	add_user(pr, users, sizeof(users), "b", "2");
	roundtrip(&p,
		  "32 36 00 03 74 2F 78 00 01 2B"
		  " 01 01"
		  " 02 00 00 01 2C"
		  " 03 00 04 74 65 78 74"
		  " 08 00 03 72 2F 31"
		  " 09 00 03 01 02 03"
		  " 23 00 07"
		  " 26 00 01 61 00 01 31"
		  " 26 00 01 62 00 01 32"
		  " 68 C3 A9",
		  BOTH);
}

/* A server's PUBLISH may carry several Subscription Identifiers (3.3.4). */
static void test_publish_v5_server_subscription_ids(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PUBLISH, .version = MOAT_MQTT_V5};
	struct moat_mqtt_props *pr = &p.publish.props;
	uint8_t multi[32];
	struct moat_mqtt_packet got;
	struct moat_mqtt_prop_iter it;
	uint8_t wire[64];
	size_t n;
	uint32_t id;

	(void)state;
	p.publish.topic = S("s");
	p.publish.payload = S("x");
	add_subid(pr, multi, sizeof(multi), 1);
	add_user(pr, multi, sizeof(multi), "k", "v");
	add_subid(pr, multi, sizeof(multi), 128);
	add_subid(pr, multi, sizeof(multi), 268435455);
	roundtrip(&p,
		  "30 16 00 01 73 11"
		  " 0B 01"
		  " 26 00 01 6B 00 01 76"
		  " 0B 80 01"
		  " 0B FF FF FF 7F"
		  " 78",
		  S2C);

	/* the decoder's view, spelled out */
	n = unhex("30 16 00 01 73 11 0B 01 26 00 01 6B 00 01 76 0B 80 01 0B FF FF FF 7F 78",
		  wire, sizeof(wire));
	decode_ok(wire, n, MOAT_MQTT_V5, false, &got);
	assert_int_equal(got.publish.props.subid_count, 3);
	assert_int_equal(got.publish.props.subscription_id, 1);
	assert_int_equal(got.publish.props.user_count, 1);
	moat_mqtt_props_iter(&got.publish.props, &it);
	assert_true(moat_mqtt_props_next_subid(&it, &id));
	assert_int_equal(id, 1);
	assert_true(moat_mqtt_props_next_subid(&it, &id));
	assert_int_equal(id, 128);
	assert_true(moat_mqtt_props_next_subid(&it, &id));
	assert_int_equal(id, 268435455);
	assert_false(moat_mqtt_props_next_subid(&it, &id));
}

/* 5.0: an empty topic with a Topic Alias (3.3.2.3.4), and QoS 2 with every flag. */
static void test_publish_v5_topic_alias_and_flags(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PUBLISH, .version = MOAT_MQTT_V5};

	(void)state;
	p.publish.topic = (struct moat_slice){NULL, 0};
	p.publish.payload = S("z");
	p.publish.props.present = BIT(TOPIC_ALIAS);
	p.publish.props.topic_alias = 5;
	roundtrip(&p, "30 07 00 00 03 23 00 05 7A", BOTH);

	memset(&p.publish, 0, sizeof(p.publish));
	p.publish.qos = 2;
	p.publish.dup = true;
	p.publish.retain = true;
	p.publish.packet_id = 5;
	p.publish.topic = S("a");
	p.publish.payload = S("z");
	roundtrip(&p, "3D 07 00 01 61 00 05 00 7A", BOTH);
}

/* 200 KB of payload: the Remaining Length takes three bytes. */
static void test_publish_large_payload(void **state)
{
	static const size_t plen = 200 * 1024;
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PUBLISH, .version = MOAT_MQTT_V311};
	uint8_t *payload = payload_buf, *want = want_buf;
	size_t i, hn;

	(void)state;
	assert_true(plen + 16 <= BIG);
	for (i = 0; i < plen; i++)
		payload[i] = (uint8_t)(i * 7 + i / 251);
	p.publish.topic = S("big");
	p.publish.payload = (struct moat_slice){payload, plen};

	/* 204805 = 0x05 + 0x40 * 128 + 0x0C * 16384 */
	hn = unhex("30 85 C0 0C 00 03 62 69 67", want, 16);
	memcpy(want + hn, payload, plen);
	roundtrip_bytes(&p, want, hn + plen, BOTH);

	/* 5.0 adds the property length byte: 204806 */
	p.version = MOAT_MQTT_V5;
	hn = unhex("30 86 C0 0C 00 03 62 69 67 00", want, 16);
	memcpy(want + hn, payload, plen);
	roundtrip_bytes(&p, want, hn + plen, BOTH);
}

/* ---- PUBACK, PUBREC, PUBREL, PUBCOMP ---- */

static void test_acks_v3(void **state)
{
	static const struct {
		uint8_t type;
		uint16_t id;
		const char *hex;
	} cases[] = {
		{MOAT_MQTT_PUBACK, 1, "40 02 00 01"},
		{MOAT_MQTT_PUBREC, 2, "50 02 00 02"},
		{MOAT_MQTT_PUBREL, 3, "62 02 00 03"},
		{MOAT_MQTT_PUBCOMP, 0xFFFF, "70 02 FF FF"},
	};
	size_t i;
	uint8_t v;

	(void)state;
	for (v = MOAT_MQTT_V31; v <= MOAT_MQTT_V311; v++) {
		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct moat_mqtt_packet p = {.type = cases[i].type, .version = v};

			p.ack.packet_id = cases[i].id;
			roundtrip(&p, cases[i].hex, BOTH);
		}
	}
}

static void test_acks_v5_short_forms(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PUBACK, .version = MOAT_MQTT_V5};

	(void)state;
	/* reason 0 and no properties: both omitted, 2 bytes of body (3.4.2.1) */
	p.ack.packet_id = 0x1234;
	roundtrip(&p, "40 02 12 34", BOTH);

	/* a non-zero reason and no properties: 3 bytes, no property length */
	p.ack.reason = MOAT_RC_NO_MATCHING_SUBSCRIBERS;
	roundtrip(&p, "40 03 12 34 10", BOTH);

	p.type = MOAT_MQTT_PUBREC;
	p.ack.packet_id = 2;
	p.ack.reason = MOAT_RC_UNSPECIFIED_ERROR;
	roundtrip(&p, "50 03 00 02 80", BOTH);

	p.type = MOAT_MQTT_PUBREL;
	p.ack.packet_id = 3;
	p.ack.reason = MOAT_RC_PACKET_IDENTIFIER_NOT_FOUND;
	roundtrip(&p, "62 03 00 03 92", BOTH);
	p.ack.reason = 0;
	roundtrip(&p, "62 02 00 03", BOTH);

	p.type = MOAT_MQTT_PUBCOMP;
	p.ack.packet_id = 4;
	roundtrip(&p, "70 02 00 04", BOTH);
}

static void test_acks_v5_properties(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PUBACK, .version = MOAT_MQTT_V5};
	uint8_t users[16];

	(void)state;
	p.ack.packet_id = 0x1234;
	p.ack.reason = MOAT_RC_QUOTA_EXCEEDED;
	p.ack.props.present = BIT(REASON_STRING);
	p.ack.props.reason_string = S("bad");
	add_user(&p.ack.props, users, sizeof(users), "k", "v");
	roundtrip(&p, "40 11 12 34 97 0D 1F 00 03 62 61 64 26 00 01 6B 00 01 76", BOTH);

	/* reason 0 with properties: the reason byte must be written */
	memset(&p.ack, 0, sizeof(p.ack));
	p.type = MOAT_MQTT_PUBCOMP;
	p.ack.packet_id = 5;
	p.ack.props.present = BIT(REASON_STRING);
	p.ack.props.reason_string = S("x");
	roundtrip(&p, "70 08 00 05 00 04 1F 00 01 78", BOTH);
}

/* ---- SUBSCRIBE, SUBACK ---- */

static void test_subscribe_v3(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_SUBSCRIBE, .version = MOAT_MQTT_V31};
	uint8_t entries[32];
	size_t len = 0;
	uint8_t v;

	(void)state;
	assert_int_equal(moat_mqtt_sub_put(entries, sizeof(entries), &len, S("a/+"), 1), 0);
	assert_int_equal(moat_mqtt_sub_put(entries, sizeof(entries), &len, S("#"), 2), 0);
	p.subscribe.packet_id = 10;
	p.subscribe.count = 2;
	p.subscribe.entries = (struct moat_slice){entries, len};
	for (v = MOAT_MQTT_V31; v <= MOAT_MQTT_V311; v++) {
		p.version = v;
		roundtrip(&p, "82 0C 00 0A 00 03 61 2F 2B 01 00 01 23 02", C2S);
	}
}

/* Subscription Identifier, User Property and the 5.0 subscription options. */
static void test_subscribe_v5_options(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_SUBSCRIBE, .version = MOAT_MQTT_V5}, got;
	static const char hex[] = "82 23 00 01 09 0B 2A 26 00 01 6B 00 01 76"
				  " 00 03 61 2F 62 0E"
				  " 00 01 63 11"
				  " 00 0A 24 73 68 61 72 65 2F 67 2F 64 20";
	uint8_t entries[64], users[16], wire[64];
	struct moat_mqtt_sub_iter it;
	struct moat_slice f;
	size_t len = 0, n;
	uint8_t o;

	(void)state;
	/* QoS 2 + No Local + Retain As Published, Retain Handling 0 */
	assert_int_equal(moat_mqtt_sub_put(entries, sizeof(entries), &len, S("a/b"),
					   2 | MOAT_SUBOPT_NO_LOCAL |
						   MOAT_SUBOPT_RETAIN_AS_PUBLISHED),
			 0);
	/* QoS 1, Retain Handling 1 */
	assert_int_equal(moat_mqtt_sub_put(entries, sizeof(entries), &len, S("c"), 0x11), 0);
	/* QoS 0, Retain Handling 2, shared */
	assert_int_equal(moat_mqtt_sub_put(entries, sizeof(entries), &len, S("$share/g/d"), 0x20),
			 0);
	p.subscribe.packet_id = 1;
	p.subscribe.count = 3;
	p.subscribe.entries = (struct moat_slice){entries, len};
	p.subscribe.props.present = BIT(SUBSCRIPTION_IDENTIFIER);
	p.subscribe.props.subscription_id = 42;
	add_user(&p.subscribe.props, users, sizeof(users), "k", "v");
	roundtrip(&p, hex, C2S);

	n = unhex(hex, wire, sizeof(wire));
	decode_ok(wire, n, MOAT_MQTT_V5, true, &got);
	assert_int_equal(got.subscribe.props.subscription_id, 42);
	moat_mqtt_sub_iter(&got.subscribe, &it);
	assert_true(moat_mqtt_sub_next(&it, &f, &o));
	assert_slice_str(f, "a/b");
	assert_int_equal(MOAT_SUBOPT_QOS(o), 2);
	assert_true(o & MOAT_SUBOPT_NO_LOCAL);
	assert_true(o & MOAT_SUBOPT_RETAIN_AS_PUBLISHED);
	assert_int_equal(MOAT_SUBOPT_RETAIN_HANDLING(o), 0);
	assert_true(moat_mqtt_sub_next(&it, &f, &o));
	assert_slice_str(f, "c");
	assert_int_equal(MOAT_SUBOPT_QOS(o), 1);
	assert_false(o & MOAT_SUBOPT_NO_LOCAL);
	assert_false(o & MOAT_SUBOPT_RETAIN_AS_PUBLISHED);
	assert_int_equal(MOAT_SUBOPT_RETAIN_HANDLING(o), 1);
	assert_true(moat_mqtt_sub_next(&it, &f, &o));
	assert_slice_str(f, "$share/g/d");
	assert_int_equal(MOAT_SUBOPT_QOS(o), 0);
	assert_int_equal(MOAT_SUBOPT_RETAIN_HANDLING(o), 2);
	assert_false(moat_mqtt_sub_next(&it, &f, &o));
}

static void test_suback(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_SUBACK, .version = MOAT_MQTT_V31};
	static const uint8_t rc3[] = {1, 2}, rc4[] = {0, 1, 2, 0x80},
			     rc5[] = {0x00, 0x01, 0x02, 0x80, 0x8F, 0x97, 0xA2};
	uint8_t users[16];

	(void)state;
	p.suback.packet_id = 10;
	p.suback.reasons = (struct moat_slice){rc3, sizeof(rc3)};
	roundtrip(&p, "90 04 00 0A 01 02", S2C);

	p.version = MOAT_MQTT_V311;
	p.suback.reasons = (struct moat_slice){rc4, sizeof(rc4)};
	roundtrip(&p, "90 06 00 0A 00 01 02 80", S2C);

	p.version = MOAT_MQTT_V5;
	p.suback.packet_id = 1;
	p.suback.reasons = (struct moat_slice){rc4, 1};
	roundtrip(&p, "90 04 00 01 00 00", S2C);

	p.suback.reasons = (struct moat_slice){rc5, sizeof(rc5)};
	p.suback.props.present = BIT(REASON_STRING);
	p.suback.props.reason_string = S("r");
	add_user(&p.suback.props, users, sizeof(users), "k", "v");
	roundtrip(&p,
		  "90 15 00 01 0B 1F 00 01 72 26 00 01 6B 00 01 76 00 01 02 80 8F 97 A2", S2C);
}

/* ---- UNSUBSCRIBE, UNSUBACK ---- */

static void test_unsubscribe(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_UNSUBSCRIBE, .version = MOAT_MQTT_V31};
	uint8_t e1[16], e2[32], users[16];
	size_t l1 = 0, l2 = 0;

	(void)state;
	assert_int_equal(moat_mqtt_unsub_put(e1, sizeof(e1), &l1, S("x")), 0);
	p.subscribe.packet_id = 2;
	p.subscribe.count = 1;
	p.subscribe.entries = (struct moat_slice){e1, l1};
	roundtrip(&p, "A2 05 00 02 00 01 78", C2S);

	l1 = 0;
	assert_int_equal(moat_mqtt_unsub_put(e1, sizeof(e1), &l1, S("a/b")), 0);
	assert_int_equal(moat_mqtt_unsub_put(e1, sizeof(e1), &l1, S("c/#")), 0);
	p.version = MOAT_MQTT_V311;
	p.subscribe.count = 2;
	p.subscribe.entries = (struct moat_slice){e1, l1};
	roundtrip(&p, "A2 0C 00 02 00 03 61 2F 62 00 03 63 2F 23", C2S);

	assert_int_equal(moat_mqtt_unsub_put(e2, sizeof(e2), &l2, S("a")), 0);
	assert_int_equal(moat_mqtt_unsub_put(e2, sizeof(e2), &l2, S("$share/g/#")), 0);
	p.version = MOAT_MQTT_V5;
	p.subscribe.packet_id = 3;
	p.subscribe.entries = (struct moat_slice){e2, l2};
	add_user(&p.subscribe.props, users, sizeof(users), "k", "v");
	roundtrip(&p,
		  "A2 19 00 03 07 26 00 01 6B 00 01 76 00 01 61"
		  " 00 0A 24 73 68 61 72 65 2F 67 2F 23",
		  C2S);
}

static void test_unsuback(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_UNSUBACK, .version = MOAT_MQTT_V31};
	static const uint8_t rc[] = {0x00, 0x11, 0x87, 0x8F};

	(void)state;
	p.suback.packet_id = 2;
	roundtrip(&p, "B0 02 00 02", S2C);
	p.version = MOAT_MQTT_V311;
	roundtrip(&p, "B0 02 00 02", S2C);

	p.version = MOAT_MQTT_V5;
	p.suback.packet_id = 3;
	p.suback.reasons = (struct moat_slice){rc, 1};
	roundtrip(&p, "B0 04 00 03 00 00", S2C);
	p.suback.reasons = (struct moat_slice){rc, sizeof(rc)};
	p.suback.props.present = BIT(REASON_STRING);
	p.suback.props.reason_string = S("r");
	roundtrip(&p, "B0 0B 00 03 04 1F 00 01 72 00 11 87 8F", S2C);
}

/* ---- PINGREQ, PINGRESP ---- */

static void test_ping(void **state)
{
	uint8_t v;

	(void)state;
	for (v = MOAT_MQTT_V31; v <= MOAT_MQTT_V5; v++) {
		struct moat_mqtt_packet req = {.type = MOAT_MQTT_PINGREQ, .version = v};
		struct moat_mqtt_packet resp = {.type = MOAT_MQTT_PINGRESP, .version = v};

		roundtrip(&req, "C0 00", C2S);
		roundtrip(&resp, "D0 00", S2C);
	}
}

/* ---- DISCONNECT, AUTH ---- */

static void test_disconnect(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_DISCONNECT, .version = MOAT_MQTT_V31};
	uint8_t users[16];

	(void)state;
	roundtrip(&p, "E0 00", BOTH);
	p.version = MOAT_MQTT_V311;
	roundtrip(&p, "E0 00", BOTH);

	/* 5.0: reason 0 and no properties, Remaining Length 0 (3.14.2.1) */
	p.version = MOAT_MQTT_V5;
	roundtrip(&p, "E0 00", BOTH);
	p.disconnect.reason = MOAT_RC_DISCONNECT_WITH_WILL;
	roundtrip(&p, "E0 01 04", BOTH);

	/* a client's DISCONNECT may change the Session Expiry Interval */
	p.disconnect.props.present = BIT(SESSION_EXPIRY_INTERVAL) | BIT(REASON_STRING);
	p.disconnect.props.session_expiry = 60;
	p.disconnect.props.reason_string = S("bye");
	add_user(&p.disconnect.props, users, sizeof(users), "k", "v");
	roundtrip(&p, "E0 14 04 12 11 00 00 00 3C 1F 00 03 62 79 65 26 00 01 6B 00 01 76", C2S);

	memset(&p.disconnect, 0, sizeof(p.disconnect));
	p.disconnect.props.present = BIT(SESSION_EXPIRY_INTERVAL);
	roundtrip(&p, "E0 07 00 05 11 00 00 00 00", C2S);

	/* a server's: Use another server, with a Server Reference */
	memset(&p.disconnect, 0, sizeof(p.disconnect));
	p.disconnect.reason = MOAT_RC_USE_ANOTHER_SERVER;
	p.disconnect.props.present = BIT(SERVER_REFERENCE) | BIT(REASON_STRING);
	p.disconnect.props.server_reference = S("host");
	p.disconnect.props.reason_string = S("r");
	roundtrip(&p, "E0 0D 9C 0B 1C 00 04 68 6F 73 74 1F 00 01 72", BOTH);
}

static void test_auth(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_AUTH, .version = MOAT_MQTT_V5};
	static const uint8_t data[] = {1, 2};
	uint8_t users[16];

	(void)state;
	/*
	 * reason 0 and no properties encodes to Remaining Length 0 (3.15.2.1), but an
	 * AUTH must always carry its method (3.15.2.2.2), so the decoder refuses it.
	 */
	{
		uint8_t out[8], body[1] = {0};
		size_t len;
		struct moat_mqtt_decode_opts o = {MOAT_MQTT_V5, true, false};
		struct moat_mqtt_packet q;
		struct moat_mqtt_fault f;

		assert_int_equal(moat_mqtt_encode(&p, out, sizeof(out), &len), 0);
		assert_int_equal(len, 2);
		assert_int_equal(out[0], 0xF0);
		assert_int_equal(out[1], 0x00);
		assert_int_equal(moat_mqtt_decode(&o, 0xF0, body, 0, &q, &f), MOAT_EPROTOCOL);
		assert_int_equal(f.reason, 0x82);
	}

	p.disconnect.reason = MOAT_RC_CONTINUE_AUTHENTICATION;
	p.disconnect.props.present =
		BIT(AUTHENTICATION_METHOD) | BIT(AUTHENTICATION_DATA) | BIT(REASON_STRING);
	p.disconnect.props.auth_method = S("tok");
	p.disconnect.props.auth_data = (struct moat_slice){data, sizeof(data)};
	p.disconnect.props.reason_string = S("r");
	add_user(&p.disconnect.props, users, sizeof(users), "k", "v");
	roundtrip(&p,
		  "F0 18 18 16 15 00 03 74 6F 6B 16 00 02 01 02 1F 00 01 72 26 00 01 6B 00 01 76",
		  BOTH);

	memset(&p.disconnect, 0, sizeof(p.disconnect));
	p.disconnect.reason = MOAT_RC_REAUTHENTICATE;
	p.disconnect.props.present = BIT(AUTHENTICATION_METHOD);
	p.disconnect.props.auth_method = S("tok");
	roundtrip(&p, "F0 08 19 06 15 00 03 74 6F 6B", BOTH);
}

/* Every one of the 27 properties appears in a round trip above. */
static void test_all_properties_covered(void **state)
{
	static const uint8_t ids[] = {0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13,
				      0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C, 0x1F, 0x21,
				      0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A};
	unsigned id, known = 0;
	size_t i;

	(void)state;
	assert_int_equal(sizeof(ids), 27);
	for (i = 0; i < sizeof(ids); i++)
		assert_non_null(moat_mqtt_prop_name(ids[i]));
	for (id = 0; id < 256; id++)
		known += moat_mqtt_prop_name(id) != NULL;
	assert_int_equal(known, 27);
	assert_string_equal(moat_mqtt_prop_name(0x23), "Topic Alias");
	assert_string_equal(moat_mqtt_prop_name(0x0B), "Subscription Identifier");
	assert_null(moat_mqtt_prop_name(0x00));
}

/* ---- encoder refusals ---- */

static void test_encode_enospc(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PUBLISH, .version = MOAT_MQTT_V311};
	uint8_t buf[16];
	size_t size = 0, len = 99;

	(void)state;
	p.publish.topic = S("a/b");
	p.publish.payload = S("hi");
	assert_int_equal(moat_mqtt_encode_size(&p, &size), 0);
	assert_int_equal(size, 9);
	assert_int_equal(moat_mqtt_encode(&p, buf, size - 1, &len), MOAT_ENOSPC);
	assert_int_equal(len, 99); /* out-parameters only on success */
	assert_int_equal(moat_mqtt_encode(&p, buf, 1, &len), MOAT_ENOSPC);
	assert_int_equal(moat_mqtt_encode(&p, buf, 0, &len), MOAT_ENOSPC);
	assert_int_equal(moat_mqtt_encode(&p, buf, size, &len), 0);
	assert_int_equal(len, 9);

	/* the entry and property builders too */
	len = 0;
	assert_int_equal(moat_mqtt_sub_put(buf, 4, &len, S("abc"), 0), MOAT_ENOSPC);
	assert_int_equal(moat_mqtt_unsub_put(buf, 4, &len, S("abc")), MOAT_ENOSPC);
	assert_int_equal(moat_mqtt_props_put_user(buf, 6, &len, S("a"), S("b")), MOAT_ENOSPC);
	assert_int_equal(moat_mqtt_props_put_subid(buf, 1, &len, 1), MOAT_ENOSPC);
}

static void test_encode_einval(void **state)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_PUBLISH, .version = MOAT_MQTT_V311};
	size_t big = 65536, size = 0, len = 0;
	uint8_t *s = payload_buf, *buf = wire_buf;

	(void)state;
	memset(s, 'a', big);

	/* a topic of 65536 bytes cannot be written as a UTF-8 Encoded String */
	p.publish.topic = (struct moat_slice){s, big};
	assert_int_equal(moat_mqtt_encode_size(&p, &size), MOAT_EINVAL);
	assert_int_equal(moat_mqtt_encode(&p, buf, 2 * big, &len), MOAT_EINVAL);
	/* 65535 is the most it can be */
	p.publish.topic.len = 65535;
	assert_int_equal(moat_mqtt_encode_size(&p, &size), 0);
	assert_int_equal(size, 1 + 3 + 2 + 65535);

	/* the same in CONNECT (client id, password) and in a property */
	memset(&p, 0, sizeof(p));
	p.type = MOAT_MQTT_CONNECT;
	p.version = p.connect.version = MOAT_MQTT_V311;
	p.connect.client_id = (struct moat_slice){s, big};
	assert_int_equal(moat_mqtt_encode(&p, buf, 2 * big, &len), MOAT_EINVAL);
	p.connect.client_id = S("c");
	p.connect.has_username = p.connect.has_password = true;
	p.connect.username = S("u");
	p.connect.password = (struct moat_slice){s, big};
	assert_int_equal(moat_mqtt_encode(&p, buf, 2 * big, &len), MOAT_EINVAL);

	memset(&p, 0, sizeof(p));
	p.type = MOAT_MQTT_PUBACK;
	p.version = MOAT_MQTT_V5;
	p.ack.packet_id = 1;
	p.ack.props.present = BIT(REASON_STRING);
	p.ack.props.reason_string = (struct moat_slice){s, big};
	assert_int_equal(moat_mqtt_encode(&p, buf, 2 * big, &len), MOAT_EINVAL);
	len = 0;
	assert_int_equal(moat_mqtt_props_put_user(buf, 2 * big, &len, S("k"),
						  (struct moat_slice){s, big}),
			 MOAT_EINVAL);
	assert_int_equal(moat_mqtt_sub_put(buf, 2 * big, &len, (struct moat_slice){s, big}, 0),
			 MOAT_EINVAL);
	assert_int_equal(moat_mqtt_props_put_subid(buf, 16, &len, 0), MOAT_EINVAL);
	assert_int_equal(moat_mqtt_props_put_subid(buf, 16, &len, 268435456), MOAT_EINVAL);

	/* a property the packet may not carry: Topic Alias in CONNECT */
	memset(&p, 0, sizeof(p));
	p.type = MOAT_MQTT_CONNECT;
	p.version = p.connect.version = MOAT_MQTT_V5;
	p.connect.client_id = S("c");
	p.connect.props.present = BIT(TOPIC_ALIAS);
	p.connect.props.topic_alias = 1;
	assert_int_equal(moat_mqtt_encode_size(&p, &size), MOAT_EINVAL);

	/* AUTH does not exist before 5.0; type 0 and version 6 do not exist */
	memset(&p, 0, sizeof(p));
	p.type = MOAT_MQTT_AUTH;
	p.version = MOAT_MQTT_V311;
	assert_int_equal(moat_mqtt_encode(&p, buf, 16, &len), MOAT_EINVAL);
	p.type = 0;
	p.version = MOAT_MQTT_V5;
	assert_int_equal(moat_mqtt_encode_size(&p, &size), MOAT_EINVAL);
	p.type = MOAT_MQTT_PINGREQ;
	p.version = 6;
	assert_int_equal(moat_mqtt_encode_size(&p, &size), MOAT_EINVAL);

	/* a body over 268435455 bytes (only measured, never read) */
	memset(&p, 0, sizeof(p));
	p.type = MOAT_MQTT_PUBLISH;
	p.version = MOAT_MQTT_V311;
	p.publish.topic = S("t");
	p.publish.payload = (struct moat_slice){s, MOAT_MQTT_MAX_REMAINING};
	assert_int_equal(moat_mqtt_encode_size(&p, &size), MOAT_EINVAL);
	p.publish.payload.len = MOAT_MQTT_MAX_REMAINING - 3;
	assert_int_equal(moat_mqtt_encode_size(&p, &size), 0);
	assert_int_equal(size, 1 + 4 + MOAT_MQTT_MAX_REMAINING);
}

/* ---- reason codes, CONNECT version peek ---- */

static void test_reason_names(void **state)
{
	static const struct {
		uint8_t rc;
		const char *name;
	} names[] = {
		{0x01, "Granted QoS 1"},
		{0x02, "Granted QoS 2"},
		{0x04, "Disconnect with Will Message"},
		{0x10, "No matching subscribers"},
		{0x11, "No subscription existed"},
		{0x18, "Continue authentication"},
		{0x19, "Re-authenticate"},
		{0x80, "Unspecified error"},
		{0x81, "Malformed Packet"},
		{0x82, "Protocol Error"},
		{0x83, "Implementation specific error"},
		{0x84, "Unsupported Protocol Version"},
		{0x85, "Client Identifier not valid"},
		{0x86, "Bad User Name or Password"},
		{0x87, "Not authorized"},
		{0x88, "Server unavailable"},
		{0x89, "Server busy"},
		{0x8A, "Banned"},
		{0x8B, "Server shutting down"},
		{0x8C, "Bad authentication method"},
		{0x8D, "Keep Alive timeout"},
		{0x8E, "Session taken over"},
		{0x8F, "Topic Filter invalid"},
		{0x90, "Topic Name invalid"},
		{0x91, "Packet Identifier in use"},
		{0x92, "Packet Identifier not found"},
		{0x93, "Receive Maximum exceeded"},
		{0x94, "Topic Alias invalid"},
		{0x95, "Packet too large"},
		{0x96, "Message rate too high"},
		{0x97, "Quota exceeded"},
		{0x98, "Administrative action"},
		{0x99, "Payload format invalid"},
		{0x9A, "Retain not supported"},
		{0x9B, "QoS not supported"},
		{0x9C, "Use another server"},
		{0x9D, "Server moved"},
		{0x9E, "Shared Subscriptions not supported"},
		{0x9F, "Connection rate exceeded"},
		{0xA0, "Maximum connect time"},
		{0xA1, "Subscription Identifiers not supported"},
		{0xA2, "Wildcard Subscriptions not supported"},
	};
	size_t i;

	(void)state;
	/* 0x00 has three names (5.0 table 2-6) */
	assert_string_equal(moat_mqtt_reason_name(0x00, MOAT_MQTT_DISCONNECT),
			    "Normal disconnection");
	assert_string_equal(moat_mqtt_reason_name(0x00, MOAT_MQTT_SUBACK), "Granted QoS 0");
	assert_string_equal(moat_mqtt_reason_name(0x00, MOAT_MQTT_PUBACK), "Success");
	assert_string_equal(moat_mqtt_reason_name(0x00, MOAT_MQTT_CONNACK), "Success");
	assert_string_equal(moat_mqtt_reason_name(0x00, MOAT_MQTT_AUTH), "Success");
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_string_equal(moat_mqtt_reason_name(names[i].rc, 0), names[i].name);
	assert_string_equal(moat_mqtt_reason_name(0x97, MOAT_MQTT_PUBACK), "Quota exceeded");
	assert_string_equal(moat_mqtt_reason_name(0x03, 0), "Unknown reason code");
	assert_string_equal(moat_mqtt_reason_name(0xFF, 0), "Unknown reason code");

	/* which packets may carry a code (5.0 table 2-6, "Packets" column) */
	assert_true(moat_mqtt_reason_valid(0x97, MOAT_MQTT_PUBACK));
	assert_true(moat_mqtt_reason_valid(0x97, MOAT_MQTT_SUBACK));
	assert_false(moat_mqtt_reason_valid(0x97, MOAT_MQTT_UNSUBACK));
	assert_true(moat_mqtt_reason_valid(0x10, MOAT_MQTT_PUBREC));
	assert_false(moat_mqtt_reason_valid(0x10, MOAT_MQTT_PUBREL));
	assert_true(moat_mqtt_reason_valid(0x92, MOAT_MQTT_PUBCOMP));
	assert_false(moat_mqtt_reason_valid(0x92, MOAT_MQTT_PUBACK));
	assert_true(moat_mqtt_reason_valid(0x04, MOAT_MQTT_DISCONNECT));
	assert_false(moat_mqtt_reason_valid(0x04, MOAT_MQTT_CONNACK));
	assert_true(moat_mqtt_reason_valid(0x18, MOAT_MQTT_AUTH));
	assert_false(moat_mqtt_reason_valid(0x18, MOAT_MQTT_DISCONNECT));
	assert_false(moat_mqtt_reason_valid(0x01, MOAT_MQTT_UNSUBACK));

	/* 3.x CONNACK return codes */
	assert_string_equal(moat_mqtt_connack_v3_name(0), "Connection Accepted");
	assert_string_equal(moat_mqtt_connack_v3_name(6), "Unknown return code");
	assert_int_equal(moat_mqtt_reason_to_connack_v3(0x84), 1);
	assert_int_equal(moat_mqtt_reason_to_connack_v3(0x85), 2);
	assert_int_equal(moat_mqtt_reason_to_connack_v3(0x86), 4);
	assert_int_equal(moat_mqtt_reason_to_connack_v3(0x87), 5);
	assert_string_equal(moat_mqtt_type_name(MOAT_MQTT_UNSUBACK), "UNSUBACK");
	assert_string_equal(moat_mqtt_type_name(0), "RESERVED");
}

static void test_connect_version(void **state)
{
	static const struct {
		const char *body;
		uint8_t version;
	} cases[] = {
		{"00 06 4D 51 49 73 64 70 03 02 00 3C 00 01 61", 3},
		{"00 04 4D 51 54 54 04 02 00 3C 00 01 61", 4},
		{"00 04 4D 51 54 54 05 02 00 3C 00 00 01 61", 5},
		/* a level it does not speak under "MQTT": answered as 3.1.1 (CONNACK 1) */
		{"00 04 4D 51 54 54 06 02 00 3C 00 01 61", 4},
		{"00 04 4D 51 54 58 04 02 00 3C 00 01 61", 0}, /* "MQTX" */
		{"00 04 6D 71 74 74 04", 0},                   /* "mqtt" */
		{"00 04 4D 51 54 54", 0},                      /* no level */
		{"00 08 4D 51 54 54", 0},                      /* name runs past the body */
		{"00", 0},
		{"", 0},
	};
	uint8_t body[64];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = unhex(cases[i].body, body, sizeof(body));
		assert_int_equal(moat_mqtt_connect_version(body, n), cases[i].version);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_v31),
		cmocka_unit_test(test_connect_v311),
		cmocka_unit_test(test_connect_v311_empty_client_id),
		cmocka_unit_test(test_connect_v5_minimal),
		cmocka_unit_test(test_connect_v5_all_properties),
		cmocka_unit_test(test_connack_v3),
		cmocka_unit_test(test_connack_v5_refused),
		cmocka_unit_test(test_connack_v5_all_properties),
		cmocka_unit_test(test_publish_v3),
		cmocka_unit_test(test_publish_v5_all_properties),
		cmocka_unit_test(test_publish_v5_server_subscription_ids),
		cmocka_unit_test(test_publish_v5_topic_alias_and_flags),
		cmocka_unit_test(test_publish_large_payload),
		cmocka_unit_test(test_acks_v3),
		cmocka_unit_test(test_acks_v5_short_forms),
		cmocka_unit_test(test_acks_v5_properties),
		cmocka_unit_test(test_subscribe_v3),
		cmocka_unit_test(test_subscribe_v5_options),
		cmocka_unit_test(test_suback),
		cmocka_unit_test(test_unsubscribe),
		cmocka_unit_test(test_unsuback),
		cmocka_unit_test(test_ping),
		cmocka_unit_test(test_disconnect),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_all_properties_covered),
		cmocka_unit_test(test_encode_enospc),
		cmocka_unit_test(test_encode_einval),
		cmocka_unit_test(test_reason_names),
		cmocka_unit_test(test_connect_version),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
