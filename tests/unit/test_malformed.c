/*
 * test_malformed.c - hostile and broken packets refused by the MQTT codec
 * with the right outcome (src/mqtt/decode.c, props.c, frame.c).
 *
 * Every row of the fault table in docs/codec.md and every class of
 * /work/shared/THREATS.md 1-9 that a decoder can see from a packet alone:
 * reserved types, fixed header flags, PUBLISH QoS 3 and DUP at QoS 0,
 * Remaining Length faults, fields running past the packet (CVE-2017-7653)
 * and bytes left over, CONNECT protocol name, level and flags, empty client
 * identifiers, will topics, UTF-8 (ill-formed, U+0000, and with strict_utf8
 * the discouraged code points), topic names and filters, packet identifier
 * 0, SUBSCRIBE payloads and options, MQTT 5.0 properties (unknown, not
 * allowed, twice, out of range, overrunning, very many: CVE-2021-41039),
 * Payload Format Indicator, authentication, the direction a packet may
 * travel, the first packet, reason codes, CONNACK flags, a 65535-byte and a
 * 30000-level topic (CVE-2019-11779), and the framer refusing an oversized
 * packet from its fixed header before buffering it (CVE-2017-7651).
 *
 * Each refusal checks the return code, fault.code, fault.reason (the 5.0
 * reason code) and fault.connack_v3, and that the output packet was not
 * written. The hostile packets are written out in hex by hand: fixed header,
 * Remaining Length, body.
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
#include "core/mem.h"
#include "mqtt/frame.h"
#include "mqtt/packet.h"
#include "mqtt/props.h"
#include "mqtt/reason.h"
#include "mqtt/topic.h"
#include "mqtt/types.h"

#define V0 0 /* before CONNECT */
#define V3 MOAT_MQTT_V31
#define V4 MOAT_MQTT_V311
#define V5 MOAT_MQTT_V5
#define CLI true  /* from a client: decoded by a server */
#define SRV false /* from a server: decoded by a client */

#define MALFORMED MOAT_EMALFORMED
#define PROTOCOL MOAT_EPROTOCOL

/* Protocol names, as they appear in CONNECT. */
#define MQTT "00 04 4D 51 54 54 "
#define MQISDP "00 06 4D 51 49 73 64 70 "

/* ---- helpers ---- */

static uint8_t wire[4096]; /* the packet under test; decoded slices point here */

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*hex) {
		int hi, lo;

		if (*hex == ' ') {
			hex++;
			continue;
		}
		hi = moat_hex_digit((unsigned char)hex[0]);
		lo = hex[1] ? moat_hex_digit((unsigned char)hex[1]) : -1;
		if (hi < 0 || lo < 0 || n >= cap)
			fail_msg("bad hex in the test: %s", hex);
		out[n++] = (uint8_t)(hi << 4 | lo);
		hex += 2;
	}
	return n;
}

/*
 * Splits b[0..n) with moat_mqtt_fixed_header and decodes it. A fault in the
 * fixed header is returned as is; otherwise b must hold exactly one packet.
 */
static int decode_buf(const uint8_t *b, size_t n, uint8_t version, bool from_client, bool strict,
		      struct moat_mqtt_packet *out, struct moat_mqtt_fault *f)
{
	struct moat_mqtt_decode_opts o = {version, from_client, strict};
	uint8_t header = 0;
	uint32_t rem = 0;
	size_t hlen = 0;
	int rc = moat_mqtt_fixed_header(b, n, &header, &rem, &hlen, f);

	if (rc < 0)
		return rc;
	if (rc != 1 || hlen + rem != n)
		fail_msg("test packet is not one whole packet (%zu bytes, header says %zu)", n,
			 rc == 1 ? hlen + rem : 0);
	return moat_mqtt_decode(&o, header, b + hlen, rem, out, f);
}

/* Asserts hex is refused with code, 5.0 reason and 3.x CONNACK code, leaving *out alone. */
static void refuse_at(int line, const char *hex, uint8_t version, bool from_client, bool strict,
		      int code, uint8_t reason, uint8_t connack_v3)
{
	struct moat_mqtt_packet out, before;
	struct moat_mqtt_fault f;
	size_t n = unhex(hex, wire, sizeof(wire));
	int rc;

	memset(&f, 0xEE, sizeof(f));
	f.why = NULL;
	memset(&out, 0x5A, sizeof(out));
	memcpy(&before, &out, sizeof(out));
	rc = decode_buf(wire, n, version, from_client, strict, &out, &f);
	if (rc != code || f.code != code || f.reason != reason || f.connack_v3 != connack_v3 ||
	    f.why == NULL)
		fail_msg("line %d: [%s] v%u %s%s: got %s (fault %d, reason 0x%02X, connack %u, "
			 "\"%s\" %s), want %s (reason 0x%02X, connack %u)",
			 line, hex, version, from_client ? "from client" : "from server",
			 strict ? " strict" : "", moat_strerror(rc), rc ? f.code : 0,
			 rc ? f.reason : 0, rc ? f.connack_v3 : 0, rc && f.why ? f.why : "-",
			 rc && f.rule ? f.rule : "", moat_strerror(code), reason, connack_v3);
	if (memcmp(&out, &before, sizeof(out)) != 0)
		fail_msg("line %d: [%s] refused but the output packet was written", line, hex);
}

static struct moat_mqtt_packet accepted;

/* Asserts hex decodes; the result is left in `accepted` (slices into wire). */
static void accept_at(int line, const char *hex, uint8_t version, bool from_client, bool strict)
{
	struct moat_mqtt_fault f = {0};
	size_t n = unhex(hex, wire, sizeof(wire));
	int rc;

	memset(&accepted, 0, sizeof(accepted));
	rc = decode_buf(wire, n, version, from_client, strict, &accepted, &f);
	if (rc != 0)
		fail_msg("line %d: [%s] v%u %s%s: refused with %s (reason 0x%02X, \"%s\" %s), "
			 "want accepted",
			 line, hex, version, from_client ? "from client" : "from server",
			 strict ? " strict" : "", moat_strerror(rc), f.reason, f.why ? f.why : "-",
			 f.rule ? f.rule : "");
}

#define REFUSE(hex, ver, from, code, reason, v3) \
	refuse_at(__LINE__, hex, ver, from, false, code, reason, v3)
#define REFUSE_STRICT(hex, ver, from, code, reason, v3) \
	refuse_at(__LINE__, hex, ver, from, true, code, reason, v3)
#define ACCEPT(hex, ver, from) accept_at(__LINE__, hex, ver, from, false)
#define ACCEPT_STRICT(hex, ver, from) accept_at(__LINE__, hex, ver, from, true)

/* The usual outcomes. */
#define BAD(hex, ver, from) REFUSE(hex, ver, from, MALFORMED, 0x81, 0)
#define PROTO(hex, ver, from) REFUSE(hex, ver, from, PROTOCOL, 0x82, 0)

/* Refuses with a given rule (normative statement) as well. */
static void refuse_rule_at(int line, const char *hex, uint8_t version, bool from_client, int code,
			   uint8_t reason, const char *rule)
{
	struct moat_mqtt_packet out;
	struct moat_mqtt_fault f = {0};
	size_t n = unhex(hex, wire, sizeof(wire));
	int rc = decode_buf(wire, n, version, from_client, false, &out, &f);

	if (rc != code || f.reason != reason || f.rule == NULL || strcmp(f.rule, rule) != 0)
		fail_msg("line %d: [%s]: got %s reason 0x%02X rule %s, want %s 0x%02X %s", line,
			 hex, moat_strerror(rc), f.reason, f.rule ? f.rule : "(none)",
			 moat_strerror(code), reason, rule);
}

#define REFUSE_RULE(hex, ver, from, code, reason, rule) \
	refuse_rule_at(__LINE__, hex, ver, from, code, reason, rule)

/*
 * Large packets are built in static buffers, so a failing test (which cmocka
 * leaves by longjmp) leaks nothing.
 */
#define BIG (340 * 1024)
static uint8_t big_a[BIG], big_b[BIG];

/* Builds a large packet in b: header hex, `count` copies of the unit hex, tail hex. */
static uint8_t *build(uint8_t *b, const char *header, const char *unit, size_t count,
		      const char *tail, size_t *n)
{
	uint8_t h[32], u[32], t[32];
	size_t hn = unhex(header, h, sizeof(h)), un = unhex(unit, u, sizeof(u));
	size_t tn = unhex(tail, t, sizeof(t)), i;

	assert_true(hn + un * count + tn <= BIG);
	memcpy(b, h, hn);
	for (i = 0; i < count; i++)
		memcpy(b + hn + i * un, u, un);
	memcpy(b + hn + un * count, t, tn);
	*n = hn + un * count + tn;
	return b;
}

/* ---- 1. fixed header ---- */

static void test_reserved_types(void **state)
{
	struct moat_mqtt_fault f = {0};
	struct moat_mqtt_packet out;
	struct moat_mqtt_decode_opts o = {V5, CLI, false};

	(void)state;
	BAD("00 00", V4, CLI);
	BAD("00 00", V5, CLI);
	BAD("00 00", V0, CLI);
	BAD("0F 00", V5, SRV);
	/* type 15 is AUTH in 5.0 only */
	BAD("F0 00", V4, CLI);
	BAD("F0 00", V3, CLI);
	BAD("F0 00", V4, SRV);
	BAD("F0 02 18 00", V4, CLI);
	ACCEPT("F0 06 18 04 15 00 01 6D", V5, CLI); /* with its method */

	/* the decoder refuses type 0 without the framer's help */
	assert_int_equal(moat_mqtt_decode(&o, 0x00, wire, 0, &out, &f), MALFORMED);
	assert_int_equal(f.reason, 0x81);
	assert_int_equal(moat_mqtt_header_check(0x00, &f), MALFORMED);
}

/* Flags other than those section 2.1.3 (5.0) / 2.2.2 (3.1.1) fixes for the type. */
static void test_flag_nibbles(void **state)
{
	static const struct {
		const char *hex;
		uint8_t version;
		bool from_client;
	} cases[] = {
		{"11 0D " MQTT "04 02 00 3C 00 01 61", V0, CLI}, /* CONNECT */
		{"18 0D " MQTT "04 02 00 3C 00 01 61", V0, CLI},
		{"21 02 00 00", V4, SRV}, /* CONNACK */
		{"28 02 00 00", V4, SRV},
		{"41 02 00 01", V4, CLI}, /* PUBACK */
		{"42 02 00 01", V4, CLI},
		{"48 02 00 01", V5, SRV},
		{"52 02 00 01", V4, CLI}, /* PUBREC */
		{"60 02 00 01", V4, CLI}, /* PUBREL must be 62 */
		{"63 02 00 01", V4, CLI},
		{"6A 02 00 01", V4, CLI},
		{"64 02 00 01", V5, SRV},
		{"71 02 00 01", V4, CLI}, /* PUBCOMP */
		{"80 06 00 01 00 01 61 00", V4, CLI}, /* SUBSCRIBE must be 82 */
		{"83 06 00 01 00 01 61 00", V4, CLI},
		{"8A 06 00 01 00 01 61 00", V4, CLI},
		{"81 07 00 01 00 00 01 61 00", V5, CLI},
		{"91 03 00 01 00", V4, SRV},          /* SUBACK */
		{"A0 05 00 01 00 01 61", V4, CLI},    /* UNSUBSCRIBE must be A2 */
		{"A3 05 00 01 00 01 61", V4, CLI},
		{"A6 06 00 01 00 00 01 61", V5, CLI},
		{"B2 02 00 01", V4, SRV},             /* UNSUBACK */
		{"C1 00", V4, CLI},                   /* PINGREQ */
		{"C2 00", V5, CLI},
		{"C8 00", V3, CLI},
		{"D1 00", V4, SRV},                   /* PINGRESP */
		{"E1 00", V4, CLI},                   /* DISCONNECT */
		{"E2 00", V5, SRV},
		{"EF 00", V3, CLI},
		{"F1 00", V5, CLI},                   /* AUTH */
		{"F8 00", V5, SRV},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct moat_mqtt_decode_opts o = {cases[i].version, cases[i].from_client, false};
		struct moat_mqtt_fault f = {0};
		struct moat_mqtt_packet out;
		size_t n;

		REFUSE(cases[i].hex, cases[i].version, cases[i].from_client, MALFORMED, 0x81, 0);
		/* and by the decoder alone, given the header byte and the body */
		n = unhex(cases[i].hex, wire, sizeof(wire));
		assert_int_equal(wire[1], n - 2);
		assert_int_equal(moat_mqtt_decode(&o, wire[0], wire + 2, n - 2, &out, &f),
				 MALFORMED);
		assert_int_equal(f.reason, 0x81);
	}
	/* the right flags, for contrast */
	ACCEPT("62 02 00 01", V4, CLI);
	ACCEPT("82 06 00 01 00 01 61 00", V4, CLI);
	ACCEPT("A2 05 00 01 00 01 61", V4, CLI);
	ACCEPT("C0 00", V4, CLI);
}

static void test_publish_qos3_and_dup(void **state)
{
	(void)state;
	/* QoS 3 [MQTT-3.3.1-4] */
	BAD("36 05 00 01 61 00 01", V4, CLI);
	BAD("37 05 00 01 61 00 01", V5, SRV);
	BAD("3E 05 00 01 61 00 01", V3, CLI);
	/* DUP with QoS 0 [MQTT-3.3.1-2] */
	BAD("38 03 00 01 61", V4, CLI);
	BAD("39 04 00 01 61 00", V5, CLI);
	REFUSE_RULE("38 03 00 01 61", V4, CLI, MALFORMED, 0x81, "MQTT-3.3.1-2");
	REFUSE_RULE("36 05 00 01 61 00 01", V4, CLI, MALFORMED, 0x81, "MQTT-3.3.1-4");
	/* DUP with QoS 1 and 2 is fine */
	ACCEPT("3A 05 00 01 61 00 01", V4, CLI);
	ACCEPT("3D 06 00 01 61 00 01 00", V5, CLI);
}

/* MQTT 3.1 sets DUP on a retried PUBREL, SUBSCRIBE or UNSUBSCRIBE (3.1 section 2.1, DUP). */
static void test_v31_dup_on_retried_packets(void **state)
{
	(void)state;
	ACCEPT("8A 06 00 01 00 01 61 00", V3, CLI);
	ACCEPT("AA 05 00 01 00 01 61", V3, CLI);
	ACCEPT("6A 02 00 01", V3, CLI);
	ACCEPT("6A 02 00 01", V3, SRV);
}

/* ---- 2. Remaining Length ---- */

static void test_remaining_length(void **state)
{
	struct moat_mqtt_fault f = {0};
	uint8_t header;
	uint32_t rem;
	size_t hlen, n;

	(void)state;
	/* a fifth length byte [MQTT-1.5.5-1] */
	BAD("30 80 80 80 80 01", V4, CLI);
	BAD("30 FF FF FF FF 7F", V5, CLI);
	BAD("10 FF FF FF FF 01", V0, CLI);
	/* not in the fewest bytes: 0 as 80 00, 1 as 81 00, 0 as 80 80 00 */
	BAD("C0 80 00", V4, CLI);
	BAD("30 81 00 61", V4, CLI);
	BAD("E0 80 80 00", V5, CLI);
	BAD("10 80 80 80 00", V0, CLI);

	/* the largest value is four bytes: 268435455 */
	n = unhex("30 FF FF FF 7F", wire, sizeof(wire));
	assert_int_equal(moat_mqtt_fixed_header(wire, n, &header, &rem, &hlen, &f), 1);
	assert_int_equal(rem, MOAT_MQTT_MAX_REMAINING);
	assert_int_equal(hlen, 5);
	n = unhex("30 80 01", wire, sizeof(wire));
	assert_int_equal(moat_mqtt_fixed_header(wire, n, &header, &rem, &hlen, &f), 1);
	assert_int_equal(rem, 128);
	assert_int_equal(hlen, 3);
	/* incomplete headers need more bytes: not a fault (slowloris is the broker's timer) */
	n = unhex("30 80 80", wire, sizeof(wire));
	assert_int_equal(moat_mqtt_fixed_header(wire, n, &header, &rem, &hlen, &f), 0);
	assert_int_equal(moat_mqtt_fixed_header(wire, 1, &header, &rem, &hlen, &f), 0);
	assert_int_equal(moat_mqtt_fixed_header(wire, 0, &header, &rem, &hlen, &f), 0);
	/* the first byte is refused before the length has arrived */
	n = unhex("C1", wire, sizeof(wire));
	assert_int_equal(moat_mqtt_fixed_header(wire, n, &header, &rem, &hlen, &f), MALFORMED);
}

/* Variable Byte Integers inside a packet: property length, identifier, Subscription Identifier. */
static void test_varints_in_properties(void **state)
{
	(void)state;
	BAD("40 05 00 01 00 80 00", V5, CLI);                 /* property length 0 as 80 00 */
	BAD("30 06 00 01 61 02 81 00", V5, CLI);              /* identifier 1 as 81 00 */
	BAD("82 0A 00 01 03 0B 81 00 00 01 61 00", V5, CLI);  /* Subscription Identifier 1 as 81 00 */
	BAD("82 0D 00 01 06 0B FF FF FF FF 7F 00 01 61 00", V5, CLI); /* 5 bytes */
	BAD("30 08 00 01 61 FF FF FF FF 7F", V5, CLI);        /* property length of 5 bytes */
	BAD("30 05 00 01 61 01 80", V5, CLI);                 /* identifier cut short */
	/* the largest Subscription Identifier is fine */
	ACCEPT("82 0C 00 01 05 0B FF FF FF 7F 00 01 61 00", V5, CLI);
	assert_int_equal(accepted.subscribe.props.subscription_id, 268435455);
}

/* Remaining Length shorter than the fields; lengths running past the packet (CVE-2017-7653). */
static void test_fields_past_end(void **state)
{
	(void)state;
	/* string length prefix past the packet */
	BAD("30 04 00 10 61 62", V4, CLI);
	BAD("30 04 00 10 61 62", V5, SRV);
	BAD("30 01 00", V4, CLI);
	BAD("30 00", V4, CLI);
	BAD("32 03 00 01 61", V4, CLI);                      /* no packet identifier */
	BAD("32 04 00 01 61 00", V4, CLI);                   /* half of one */
	BAD("30 03 00 01 61", V5, CLI);                      /* no property length */
	BAD("10 00", V0, CLI);
	BAD("10 03 00 04 4D", V0, CLI);                      /* protocol name */
	BAD("10 06 " MQTT, V0, CLI);                         /* no level */
	BAD("10 09 " MQTT "04 02 00", V0, CLI);              /* half a keep alive */
	BAD("10 0E " MQTT "04 02 00 3C 00 05 61 62", V0, CLI); /* client id */
	BAD("10 0D " MQTT "04 82 00 3C 00 01 61", V0, CLI);  /* user name flag, no user name */
	BAD("10 14 " MQTT "04 C2 00 3C 00 01 61 00 01 75 00 09 70 77", V0, CLI); /* password */
	BAD("10 0D " MQTT "04 06 00 3C 00 01 61", V0, CLI);  /* will flag, no will topic */
	BAD("10 10 " MQTT "04 06 00 3C 00 01 61 00 01 77", V0, CLI); /* no will payload */
	BAD("10 0E " MQTT "05 02 00 3C 09 00 01 61", V0, CLI); /* property length */
	BAD("10 0E " MQTT "05 06 00 3C 00 00 01 61", V0, CLI); /* no will properties */
	BAD("20 01 00", V4, SRV);
	BAD("20 02 00 00", V5, SRV);                         /* no property length */
	BAD("40 01 00", V4, CLI);
	BAD("40 00", V5, SRV);
	BAD("82 05 00 01 00 01 61", V4, CLI);                /* no options byte */
	BAD("82 01 00", V4, CLI);
	BAD("A2 05 00 01 00 05 61", V4, CLI);
	BAD("90 01 00", V4, SRV);
	BAD("B0 01 00", V5, SRV);
}

static void test_bytes_left_over(void **state)
{
	(void)state;
	BAD("C0 01 00", V4, CLI);      /* PINGREQ with a non-zero Remaining Length */
	BAD("C0 02 00 00", V5, CLI);
	BAD("D0 01 00", V4, SRV);
	BAD("E0 01 00", V4, CLI);      /* 3.1.1 DISCONNECT has no body */
	BAD("E0 02 00 00", V3, SRV);
	BAD("40 03 00 01 00", V4, CLI); /* 3.1.1 PUBACK is 2 bytes */
	BAD("50 03 00 01 00", V4, SRV);
	BAD("62 03 00 01 00", V3, CLI);
	BAD("70 04 00 01 00 00", V4, CLI);
	BAD("B0 03 00 01 00", V4, SRV); /* 3.1.1 UNSUBACK is 2 bytes */
	BAD("20 03 00 00 00", V4, SRV);
	BAD("10 0E " MQTT "04 02 00 3C 00 01 61 FF", V0, CLI);
	BAD("40 05 00 01 00 00 FF", V5, CLI);
	BAD("E0 03 00 00 FF", V5, CLI);
	BAD("20 04 00 00 00 FF", V5, SRV);
	BAD("F0 09 19 06 15 00 03 74 6F 6B FF", V5, CLI);
	BAD("82 07 00 01 00 01 61 00 FF", V4, CLI);
}

/* ---- 4. CONNECT ---- */

static void test_connect_protocol_name_and_level(void **state)
{
	(void)state;
	/* unknown name [MQTT-3.1.2-1]: close, no CONNACK */
	REFUSE("10 0D 00 04 4D 51 54 58 04 02 00 3C 00 01 61", V0, CLI, PROTOCOL, 0x84, 0);
	REFUSE("10 0D 00 04 6D 71 74 74 04 02 00 3C 00 01 61", V0, CLI, PROTOCOL, 0x84, 0);
	REFUSE("10 0B 00 02 4D 51 04 02 00 3C 00 01 61", V0, CLI, PROTOCOL, 0x84, 0);
	REFUSE("10 09 00 00 04 02 00 3C 00 01 61", V0, CLI, PROTOCOL, 0x84, 0);
	REFUSE_RULE("10 0D 00 04 4D 51 54 58 04 02 00 3C 00 01 61", V0, CLI, PROTOCOL, 0x84,
		    "MQTT-3.1.2-1");
	/* unknown level, or name and level disagree [MQTT-3.1.2-2]: CONNACK 1 */
	REFUSE("10 0D " MQTT "06 02 00 3C 00 01 61", V0, CLI, MOAT_EVERSION, 0x84, 1);
	REFUSE("10 0D " MQTT "03 02 00 3C 00 01 61", V0, CLI, MOAT_EVERSION, 0x84, 1);
	REFUSE("10 0D " MQTT "00 02 00 3C 00 01 61", V0, CLI, MOAT_EVERSION, 0x84, 1);
	REFUSE("10 0D " MQTT "FF 02 00 3C 00 01 61", V0, CLI, MOAT_EVERSION, 0x84, 1);
	REFUSE("10 0F " MQISDP "04 02 00 3C 00 01 61", V0, CLI, MOAT_EVERSION, 0x84, 1);
	REFUSE("10 0F " MQISDP "05 02 00 3C 00 01 61", V0, CLI, MOAT_EVERSION, 0x84, 1);
	/* ... and the version the CONNACK is sent in */
	unhex(MQTT "06 02 00 3C 00 01 61", wire, sizeof(wire));
	assert_int_equal(moat_mqtt_connect_version(wire, 13), V4);
	/* the three that exist */
	ACCEPT("10 0F " MQISDP "03 02 00 3C 00 01 61", V0, CLI);
	assert_int_equal(accepted.version, V3);
	ACCEPT("10 0D " MQTT "04 02 00 3C 00 01 61", V0, CLI);
	assert_int_equal(accepted.version, V4);
	ACCEPT("10 0E " MQTT "05 02 00 3C 00 00 01 61", V0, CLI);
	assert_int_equal(accepted.version, V5);
	assert_int_equal(accepted.connect.keep_alive, 60);
	/* the largest keep alive (CVE-2020-13849 is the broker's to handle) */
	ACCEPT("10 0D " MQTT "04 02 FF FF 00 01 61", V0, CLI);
	assert_int_equal(accepted.connect.keep_alive, 0xFFFF);
	/* '+', '#', '/' in a client id or user name are the broker's to judge (CVE-2017-7650) */
	ACCEPT("10 13 " MQTT "04 82 00 3C 00 03 2B 23 2F 00 02 2B 23", V0, CLI);
	assert_int_equal(accepted.connect.client_id.len, 3);
	assert_memory_equal(accepted.connect.client_id.p, "+#/", 3);
	assert_int_equal(accepted.connect.username.len, 2);
}

static void test_connect_flags(void **state)
{
	(void)state;
	/* reserved flag [MQTT-3.1.2-3] */
	BAD("10 0D " MQTT "04 03 00 3C 00 01 61", V0, CLI);
	BAD("10 0D " MQTT "04 01 00 3C 00 01 61", V0, CLI);
	BAD("10 0E " MQTT "05 03 00 3C 00 00 01 61", V0, CLI);
	BAD("10 0F " MQISDP "03 03 00 3C 00 01 61", V0, CLI);
	REFUSE_RULE("10 0D " MQTT "04 03 00 3C 00 01 61", V0, CLI, MALFORMED, 0x81,
		    "MQTT-3.1.2-3");
	/* will QoS 3 */
	BAD("10 13 " MQTT "04 1E 00 3C 00 01 61 00 01 77 00 01 78", V0, CLI);
	BAD("10 13 " MQTT "04 3E 00 3C 00 01 61 00 01 77 00 01 78", V0, CLI);
	BAD("10 15 " MQTT "05 1E 00 3C 00 00 01 61 00 00 01 77 00 01 78", V0, CLI);
	/* will QoS or retain without the will flag [MQTT-3.1.2-11], [MQTT-3.1.2-13] */
	BAD("10 0D " MQTT "04 0A 00 3C 00 01 61", V0, CLI);
	BAD("10 0D " MQTT "04 12 00 3C 00 01 61", V0, CLI);
	BAD("10 0D " MQTT "04 22 00 3C 00 01 61", V0, CLI);
	BAD("10 0E " MQTT "05 0A 00 3C 00 00 01 61", V0, CLI);
	BAD("10 0F " MQISDP "03 22 00 3C 00 01 61", V0, CLI);
	/* with the will flag they are fine */
	ACCEPT("10 13 " MQTT "04 36 00 3C 00 01 61 00 01 77 00 01 78", V0, CLI);
	assert_true(accepted.connect.will);
	assert_int_equal(accepted.connect.will_qos, 2);
	assert_true(accepted.connect.will_retain);
}

static void test_connect_password_without_username(void **state)
{
	(void)state;
	/* 3.1.1 [MQTT-3.1.2-22] and 3.1 */
	BAD("10 10 " MQTT "04 42 00 3C 00 01 61 00 01 70", V0, CLI);
	BAD("10 12 " MQISDP "03 42 00 3C 00 01 61 00 01 70", V0, CLI);
	REFUSE_RULE("10 10 " MQTT "04 42 00 3C 00 01 61 00 01 70", V0, CLI, MALFORMED, 0x81,
		    "MQTT-3.1.2-22");
	/* allowed in 5.0 (3.1.2.9) */
	ACCEPT("10 11 " MQTT "05 42 00 3C 00 00 01 61 00 01 70", V0, CLI);
	assert_true(accepted.connect.has_password);
	assert_false(accepted.connect.has_username);
	assert_int_equal(accepted.connect.password.len, 1);
	assert_int_equal(accepted.connect.password.p[0], 'p');
}

static void test_connect_empty_client_id(void **state)
{
	(void)state;
	/* 3.1.1 with Clean Session 0 [MQTT-3.1.3-8]: CONNACK 2 */
	REFUSE("10 0C " MQTT "04 00 00 3C 00 00", V0, CLI, PROTOCOL, 0x85, 2);
	REFUSE_RULE("10 0C " MQTT "04 00 00 3C 00 00", V0, CLI, PROTOCOL, 0x85, "MQTT-3.1.3-8");
	/* 3.1 needs 1 to 23 characters whatever the clean flag */
	REFUSE("10 0E " MQISDP "03 02 00 3C 00 00", V0, CLI, PROTOCOL, 0x85, 2);
	REFUSE("10 0E " MQISDP "03 00 00 3C 00 00", V0, CLI, PROTOCOL, 0x85, 2);
	/* 3.1.1 with Clean Session 1 [MQTT-3.1.3-7], and 5.0 either way (3.1.3.1) */
	ACCEPT("10 0C " MQTT "04 02 00 3C 00 00", V0, CLI);
	assert_int_equal(accepted.connect.client_id.len, 0);
	ACCEPT("10 0D " MQTT "05 00 00 3C 00 00 00", V0, CLI);
	assert_int_equal(accepted.connect.client_id.len, 0);
	assert_false(accepted.connect.clean_start);
}

static void test_connect_will(void **state)
{
	(void)state;
	/* will topic empty or with a wildcard: 0x90 */
	REFUSE("10 12 " MQTT "04 06 00 3C 00 01 61 00 00 00 01 78", V0, CLI, PROTOCOL, 0x90, 0);
	REFUSE("10 15 " MQTT "04 06 00 3C 00 01 61 00 03 61 2F 23 00 01 78", V0, CLI, PROTOCOL,
	       0x90, 0);
	REFUSE("10 13 " MQTT "04 06 00 3C 00 01 61 00 01 2B 00 01 78", V0, CLI, PROTOCOL, 0x90, 0);
	REFUSE("10 14 " MQTT "05 06 00 3C 00 00 01 61 00 00 00 00 01 78", V0, CLI, PROTOCOL, 0x90,
	       0);
	/* will topic not UTF-8 */
	BAD("10 13 " MQTT "04 06 00 3C 00 01 61 00 01 FF 00 01 78", V0, CLI);
	/* will Payload Format Indicator 1 and a payload that is not UTF-8: 0x99 */
	REFUSE("10 17 " MQTT "05 06 00 3C 00 00 01 61 02 01 01 00 01 77 00 01 FF", V0, CLI,
	       PROTOCOL, 0x99, 0);
	ACCEPT("10 18 " MQTT "05 06 00 3C 00 00 01 61 02 01 01 00 01 77 00 02 C3 A9", V0, CLI);
	assert_int_equal(accepted.connect.will_props.payload_format, 1);
	ACCEPT("10 17 " MQTT "05 06 00 3C 00 00 01 61 02 01 00 00 01 77 00 01 FF", V0, CLI);
}

/* ---- 5. strings ---- */

static void test_utf8_ill_formed(void **state)
{
	static const char *const topics[] = {
		"30 05 00 03 61 C0 80",          /* overlong U+0000 */
		"30 04 00 02 C1 BF",             /* overlong U+007F */
		"30 05 00 03 E0 80 80",          /* overlong, 3 bytes */
		"30 05 00 03 E0 9F BF",          /* overlong U+07FF */
		"30 06 00 04 F0 80 80 80",       /* overlong, 4 bytes */
		"30 05 00 03 ED A0 80",          /* surrogate U+D800 */
		"30 05 00 03 ED BF BF",          /* surrogate U+DFFF */
		"30 03 00 01 FF",
		"30 03 00 01 FE",
		"30 06 00 04 F5 80 80 80",
		"30 06 00 04 F4 90 80 80",       /* U+110000 */
		"30 04 00 02 61 C3",             /* truncated at the end */
		"30 04 00 02 E2 82",
		"30 05 00 03 F0 9F 98",
		"30 05 00 03 C3 61 62",          /* lead byte, no continuation */
		"30 03 00 01 80",                /* lone continuation */
		"30 0C 00 0A 61 62 63 64 65 66 67 68 C0 80", /* after 8 ASCII bytes */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		BAD(topics[i], V4, CLI);
		BAD(topics[i], V3, SRV);
	}
	REFUSE_RULE("30 05 00 03 ED A0 80", V4, CLI, MALFORMED, 0x81, "MQTT-1.5.4-1");
	/* in every kind of string field */
	BAD("10 0D " MQTT "04 02 00 3C 00 01 FF", V0, CLI);                /* client id */
	BAD("10 10 " MQTT "04 82 00 3C 00 01 61 00 01 FF", V0, CLI);       /* user name */
	BAD("82 06 00 01 00 01 FF 00", V4, CLI);                           /* filter */
	BAD("A2 05 00 01 00 01 FF", V4, CLI);
	BAD("40 0A 00 01 80 06 1F 00 03 ED A0 80", V5, CLI);               /* Reason String */
	BAD("40 0B 00 01 00 07 26 00 01 FF 00 01 76", V5, CLI);            /* User Property */
	BAD("40 0B 00 01 00 07 26 00 01 6B 00 01 C0", V5, SRV);
	BAD("30 09 00 01 61 05 03 00 02 C0 80", V5, CLI);                  /* Content Type */
	/* well-formed multi-byte text is fine: U+20AC U+1F600 U+00E9 */
	ACCEPT("30 0B 00 09 E2 82 AC F0 9F 98 80 C3 A9", V4, CLI);
	ACCEPT_STRICT("30 0B 00 09 E2 82 AC F0 9F 98 80 C3 A9", V4, CLI);
}

static void test_utf8_nul(void **state)
{
	(void)state;
	BAD("30 05 00 03 61 00 62", V4, CLI);
	REFUSE_RULE("30 05 00 03 61 00 62", V4, CLI, MALFORMED, 0x81, "MQTT-1.5.4-2");
	BAD("30 06 00 03 61 00 62 00", V5, SRV);
	BAD("10 0D " MQTT "04 02 00 3C 00 01 00", V0, CLI);
	BAD("10 10 " MQTT "04 82 00 3C 00 01 61 00 01 00", V0, CLI);
	BAD("82 06 00 01 00 01 00 00", V4, CLI);
	BAD("A2 05 00 01 00 01 00", V4, CLI);
	BAD("30 0B 00 01 61 07 26 00 01 6B 00 01 00", V5, CLI);
	/* a payload is not a string: U+0000 is data there */
	ACCEPT("30 05 00 01 61 00 00", V4, CLI);
	assert_int_equal(accepted.publish.payload.len, 2);
}

/* Controls and non-characters (5.0 1.5.4, 3.1.1 1.5.3): refused only with strict_utf8. */
static void test_utf8_strict(void **state)
{
	static const char *const topics[] = {
		"30 05 00 03 61 01 62",          /* U+0001 */
		"30 05 00 03 61 09 62",          /* tab */
		"30 05 00 03 61 1F 62",
		"30 05 00 03 61 7F 62",          /* DEL */
		"30 04 00 02 C2 80",             /* U+0080 */
		"30 04 00 02 C2 9F",             /* U+009F */
		"30 05 00 03 EF B7 90",          /* U+FDD0 */
		"30 05 00 03 EF B7 AF",          /* U+FDEF */
		"30 05 00 03 EF BF BE",          /* U+FFFE */
		"30 05 00 03 EF BF BF",          /* U+FFFF */
		"30 06 00 04 F0 9F BF BE",       /* U+1FFFE */
		"30 06 00 04 F4 8F BF BF",       /* U+10FFFF */
		"30 13 00 11 61 62 63 64 65 66 67 68 69 01 6B 6C 6D 6E 6F 70 71",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		ACCEPT(topics[i], V4, CLI);
		REFUSE_STRICT(topics[i], V4, CLI, MALFORMED, 0x81, 0);
		REFUSE_STRICT(topics[i], V3, SRV, MALFORMED, 0x81, 0);
	}
	/* other string fields */
	ACCEPT("10 0D " MQTT "04 02 00 3C 00 01 01", V0, CLI);
	REFUSE_STRICT("10 0D " MQTT "04 02 00 3C 00 01 01", V0, CLI, MALFORMED, 0x81, 0);
	ACCEPT("40 08 00 01 80 04 1F 00 01 7F", V5, CLI);
	REFUSE_STRICT("40 08 00 01 80 04 1F 00 01 7F", V5, CLI, MALFORMED, 0x81, 0);
	REFUSE_STRICT("82 06 00 01 00 01 1B 00", V4, CLI, MALFORMED, 0x81, 0);
	/* neighbours that are fine even when strict: U+00A0, U+FDF0, U+FFFD */
	ACCEPT_STRICT("30 04 00 02 C2 A0", V4, CLI);
	ACCEPT_STRICT("30 05 00 03 EF B7 B0", V4, CLI);
	ACCEPT_STRICT("30 05 00 03 EF BF BD", V4, CLI);
	/* and the payload is not a string */
	ACCEPT_STRICT("30 05 00 01 61 01 7F", V4, CLI);
}

/* ---- 6. topics and filters ---- */

static void test_publish_topic(void **state)
{
	(void)state;
	/* empty topic in 3.x [MQTT-4.7.3-1] (CVE-2021-34432) */
	BAD("30 02 00 00", V4, CLI);
	BAD("30 02 00 00", V3, SRV);
	BAD("32 04 00 00 00 01", V4, CLI);
	REFUSE_RULE("30 02 00 00", V4, CLI, MALFORMED, 0x81, "MQTT-4.7.3-1");
	/* wildcards in a topic name [MQTT-3.3.2-2]: 0x90 */
	REFUSE("30 05 00 03 61 2F 2B", V4, CLI, PROTOCOL, 0x90, 0);
	REFUSE("30 03 00 01 23", V4, CLI, PROTOCOL, 0x90, 0);
	REFUSE("30 05 00 03 61 23 62", V4, CLI, PROTOCOL, 0x90, 0);
	REFUSE("30 03 00 01 2B", V3, CLI, PROTOCOL, 0x90, 0);
	REFUSE("30 06 00 03 61 2F 2B 00", V5, CLI, PROTOCOL, 0x90, 0);
	REFUSE("30 06 00 03 61 2F 23 00", V5, SRV, PROTOCOL, 0x90, 0);
	/* 5.0: empty topic without a Topic Alias */
	PROTO("30 03 00 00 00", V5, CLI);
	PROTO("30 05 00 00 02 01 00", V5, SRV);
	/* ... and with one */
	ACCEPT("30 06 00 00 03 23 00 01", V5, CLI);
	assert_int_equal(accepted.publish.topic.len, 0);
	assert_int_equal(accepted.publish.props.topic_alias, 1);
	/* '$' topics and odd levels are names like any other */
	ACCEPT("30 07 00 05 24 53 59 53 2F", V4, CLI);
	ACCEPT("30 04 00 02 2F 2F", V4, CLI);
}

static void test_packet_id_zero(void **state)
{
	(void)state;
	PROTO("32 05 00 01 61 00 00", V4, CLI);
	PROTO("34 05 00 01 61 00 00", V4, SRV);
	PROTO("32 06 00 01 61 00 00 00", V5, CLI);
	REFUSE_RULE("32 05 00 01 61 00 00", V4, CLI, PROTOCOL, 0x82, "MQTT-2.2.1-3");
	PROTO("82 06 00 00 00 01 61 00", V4, CLI);
	PROTO("82 07 00 00 00 00 01 61 00", V5, CLI);
	PROTO("A2 05 00 00 00 01 61", V4, CLI);
	PROTO("A2 06 00 00 00 00 01 61", V5, CLI);
	PROTO("40 02 00 00", V4, CLI);
	PROTO("50 02 00 00", V4, SRV);
	PROTO("62 02 00 00", V4, CLI);
	PROTO("70 02 00 00", V3, SRV);
	PROTO("40 03 00 00 10", V5, SRV);
	PROTO("90 03 00 00 00", V4, SRV);
	PROTO("B0 02 00 00", V4, SRV);
	/* QoS 0 has no packet identifier: 00 00 is payload */
	ACCEPT("30 05 00 01 61 00 00", V4, CLI);
}

static void test_subscribe_empty_payload(void **state)
{
	(void)state;
	PROTO("82 02 00 01", V4, CLI);
	PROTO("82 02 00 01", V3, CLI);
	PROTO("82 03 00 01 00", V5, CLI);
	PROTO("A2 02 00 01", V4, CLI);
	PROTO("A2 03 00 01 00", V5, CLI);
	REFUSE_RULE("82 02 00 01", V4, CLI, PROTOCOL, 0x82, "MQTT-3.8.3-3");
	REFUSE_RULE("A2 02 00 01", V4, CLI, PROTOCOL, 0x82, "MQTT-3.10.3-2");
}

static void test_subscribe_options(void **state)
{
	static const char *const v311_reserved[] = {
		"82 06 00 01 00 01 61 04", "82 06 00 01 00 01 61 08", "82 06 00 01 00 01 61 10",
		"82 06 00 01 00 01 61 20", "82 06 00 01 00 01 61 40", "82 06 00 01 00 01 61 80",
		"82 06 00 01 00 01 61 FC",
	};
	static const char *const v5_reserved[] = {
		"82 07 00 01 00 00 01 61 40",
		"82 07 00 01 00 00 01 61 80",
		"82 07 00 01 00 00 01 61 C0",
		"82 07 00 01 00 00 01 61 6E",
	};
	size_t i;

	(void)state;
	/* requested QoS 3 */
	BAD("82 06 00 01 00 01 61 03", V4, CLI);
	BAD("82 07 00 01 00 00 01 61 03", V5, CLI);
	BAD("82 0A 00 01 00 01 61 00 00 01 62 03", V4, CLI); /* in the second entry */
	/* reserved bits: 3.1.1 any bit above QoS, 5.0 bits 6-7 [MQTT-3.8.3-5] */
	for (i = 0; i < sizeof(v311_reserved) / sizeof(v311_reserved[0]); i++) {
		BAD(v311_reserved[i], V4, CLI);
		BAD(v311_reserved[i], V3, CLI);
	}
	for (i = 0; i < sizeof(v5_reserved) / sizeof(v5_reserved[0]); i++)
		BAD(v5_reserved[i], V5, CLI);
	/* Retain Handling 3 */
	PROTO("82 07 00 01 00 00 01 61 30", V5, CLI);
	PROTO("82 07 00 01 00 00 01 61 32", V5, CLI);
	/* No Local on a shared subscription [MQTT-3.8.3-4] */
	PROTO("82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 04", V5, CLI);
	ACCEPT("82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 00", V5, CLI);
	/* every legal 5.0 combination of the low six bits but QoS 3 / RH 3 */
	ACCEPT("82 07 00 01 00 00 01 61 2E", V5, CLI);
	ACCEPT("82 07 00 01 00 00 01 61 1D", V5, CLI);
	ACCEPT("82 06 00 01 00 01 61 02", V4, CLI);
}

static void test_topic_filters(void **state)
{
	static const char *const bad_v5[] = {
		"82 08 00 01 00 00 02 61 23 00",                         /* a# */
		"82 0B 00 01 00 00 05 61 2F 23 2F 62 00",                /* a/#/b */
		"82 08 00 01 00 00 02 61 2B 00",                         /* a+ */
		"82 08 00 01 00 00 02 2B 61 00",                         /* +a */
		"82 08 00 01 00 00 02 2B 2B 00",                         /* ++ */
		"82 09 00 01 00 00 03 23 2F 61 00",                      /* #/a */
		"82 0A 00 01 00 00 04 61 2F 62 23 00",                   /* a/b# */
		"82 06 00 01 00 00 00 00",                               /* empty */
		"82 0D 00 01 00 00 07 24 73 68 61 72 65 2F 00",          /* $share/ */
		"82 0E 00 01 00 00 08 24 73 68 61 72 65 2F 67 00",       /* $share/g */
		"82 0F 00 01 00 00 09 24 73 68 61 72 65 2F 2F 78 00",    /* $share//x */
		"82 11 00 01 00 00 0B 24 73 68 61 72 65 2F 67 2B 2F 78 00", /* $share/g+/x */
		"82 11 00 01 00 00 0B 24 73 68 61 72 65 2F 67 23 2F 78 00", /* $share/g#/x */
		"82 0F 00 01 00 00 09 24 73 68 61 72 65 2F 67 2F 00",    /* $share/g/ */
		"82 11 00 01 00 00 0B 24 73 68 61 72 65 2F 67 2F 61 23 00", /* $share/g/a# */
	};
	static const char *const good_v5[] = {
		"82 07 00 01 00 00 01 2B 00",                            /* + */
		"82 07 00 01 00 00 01 23 00",                            /* # */
		"82 0D 00 01 00 00 07 61 2F 2B 2F 62 2F 23 00",          /* a/+/b/# */
		"82 07 00 01 00 00 01 2F 00",                            /* / */
		"82 09 00 01 00 00 03 2B 2F 2B 00",                      /* +/+ */
		"82 12 00 01 00 00 0C 24 73 68 61 72 65 2F 67 2F 61 2F 23 00", /* $share/g/a/# */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_v5) / sizeof(bad_v5[0]); i++)
		BAD(bad_v5[i], V5, CLI);
	for (i = 0; i < sizeof(good_v5) / sizeof(good_v5[0]); i++)
		ACCEPT(good_v5[i], V5, CLI);
	/* 3.1.1 SUBSCRIBE */
	BAD("82 07 00 01 00 02 61 23 00", V4, CLI);
	BAD("82 0A 00 01 00 05 61 2F 23 2F 62 00", V4, CLI);
	BAD("82 07 00 01 00 02 61 2B 00", V4, CLI);
	BAD("82 07 00 01 00 02 2B 61 00", V4, CLI);
	BAD("82 05 00 01 00 00 00", V4, CLI);
	BAD("82 0B 00 01 00 01 23 00 00 02 61 2B 00", V4, CLI); /* the second one */
	/* UNSUBSCRIBE */
	BAD("A2 06 00 01 00 02 61 23", V4, CLI);
	BAD("A2 04 00 01 00 00", V4, CLI);
	BAD("A2 0A 00 01 00 00 05 61 2F 23 2F 62", V5, CLI);
	BAD("A2 0D 00 01 00 00 08 24 73 68 61 72 65 2F 67", V5, CLI);
	BAD("A2 0E 00 01 00 00 09 24 73 68 61 72 65 2F 2F 78", V5, CLI);
	ACCEPT("A2 0A 00 01 00 00 05 61 2F 2B 2F 23", V5, CLI);
	assert_int_equal(accepted.subscribe.count, 1);
}

/* ---- 7. SUBSCRIBE / PUBLISH Subscription Identifiers ---- */

static void test_subscription_identifier(void **state)
{
	(void)state;
	/* 0 is a Protocol Error (3.8.2.1.2, 3.3.2.3.8) */
	PROTO("82 09 00 01 02 0B 00 00 01 61 00", V5, CLI);
	PROTO("30 06 00 01 61 02 0B 00", V5, SRV);
	/* a client may not send one in PUBLISH [MQTT-3.3.4-6] */
	PROTO("30 06 00 01 61 02 0B 01", V5, CLI);
	PROTO("30 08 00 01 61 04 0B 01 0B 02", V5, CLI);
	REFUSE_RULE("30 06 00 01 61 02 0B 01", V5, CLI, PROTOCOL, 0x82, "MQTT-3.3.4-6");
	/* a server may, several times */
	ACCEPT("30 08 00 01 61 04 0B 01 0B 02", V5, SRV);
	assert_int_equal(accepted.publish.props.subid_count, 2);
	/* only once in SUBSCRIBE */
	PROTO("82 0B 00 01 04 0B 01 0B 02 00 01 61 00", V5, CLI);
}

/* ---- 9. properties ---- */

static void test_duplicate_properties(void **state)
{
	(void)state;
	PROTO("30 0A 00 01 61 06 23 00 01 23 00 02", V5, CLI);                  /* Topic Alias */
	PROTO("10 18 " MQTT "05 02 00 3C 0A 11 00 00 00 01 11 00 00 00 02 00 01 61", V0, CLI);
	PROTO("30 08 00 01 61 04 01 00 01 00", V5, SRV);                        /* PFI */
	PROTO("30 0C 00 01 61 08 03 00 01 61 03 00 01 62", V5, CLI);            /* Content Type */
	PROTO("40 0C 00 01 80 08 1F 00 01 61 1F 00 01 62", V5, CLI);            /* Reason String */
	PROTO("F0 0E 18 0C 15 00 03 74 6F 6B 15 00 03 74 6F 6B", V5, CLI);      /* Auth Method */
	PROTO("20 07 00 00 04 24 00 24 01", V5, SRV);                           /* Maximum QoS */
	PROTO("E0 0C 00 0A 11 00 00 00 01 11 00 00 00 02", V5, CLI);
	PROTO("10 1F " MQTT "05 06 00 3C 00 00 01 61 0A 18 00 00 00 01 18 00 00 00 02"
	      " 00 01 77 00 01 78",
	      V0, CLI); /* Will Delay Interval */
	/* User Property may repeat, even with the same key */
	ACCEPT("30 12 00 01 61 0E 26 00 01 6B 00 01 76 26 00 01 6B 00 01 76", V5, CLI);
	assert_int_equal(accepted.publish.props.user_count, 2);
}

/* A known property in a packet that may not carry it (section 2.2.2.2, CVE-2023-3592). */
static void test_property_not_allowed(void **state)
{
	(void)state;
	BAD("10 11 " MQTT "05 02 00 3C 03 23 00 01 00 01 61", V0, CLI);    /* Topic Alias */
	BAD("10 12 " MQTT "05 02 00 3C 04 1F 00 01 78 00 01 61", V0, CLI); /* Reason String */
	BAD("10 11 " MQTT "05 02 00 3C 03 13 00 0A 00 01 61", V0, CLI);    /* Server Keep Alive */
	BAD("10 13 " MQTT "05 02 00 3C 05 18 00 00 00 05 00 01 61", V0, CLI); /* Will Delay */
	BAD("10 10 " MQTT "05 02 00 3C 02 01 01 00 01 61", V0, CLI);       /* PFI */
	BAD("10 10 " MQTT "05 02 00 3C 02 0B 01 00 01 61", V0, CLI);       /* Subscription Id */
	BAD("10 12 " MQTT "05 02 00 3C 04 12 00 01 78 00 01 61", V0, CLI); /* Assigned Client Id */
	BAD("30 09 00 01 61 05 18 00 00 00 05", V5, CLI);   /* Will Delay in PUBLISH */
	BAD("30 09 00 01 61 05 11 00 00 00 05", V5, SRV);   /* Session Expiry */
	BAD("30 07 00 01 61 03 22 00 05", V5, CLI);         /* Topic Alias Maximum */
	BAD("30 08 00 01 61 04 1F 00 01 78", V5, CLI);      /* Reason String */
	BAD("30 08 00 01 61 04 15 00 01 78", V5, CLI);      /* Authentication Method */
	/* Will Properties */
	BAD("10 18 " MQTT "05 06 00 3C 00 00 01 61 03 23 00 01 00 01 77 00 01 78", V0, CLI);
	BAD("10 17 " MQTT "05 06 00 3C 00 00 01 61 02 0B 01 00 01 77 00 01 78", V0, CLI);
	BAD("10 1A " MQTT "05 06 00 3C 00 00 01 61 05 11 00 00 00 01 00 01 77 00 01 78", V0, CLI);
	BAD("E0 06 00 04 15 00 01 78", V5, CLI);            /* DISCONNECT: Auth Method */
	BAD("E0 05 00 03 23 00 01", V5, SRV);
	BAD("40 08 00 01 00 04 1C 00 01 78", V5, CLI);      /* PUBACK: Server Reference */
	BAD("A2 08 00 01 02 0B 01 00 01 61", V5, CLI);      /* UNSUBSCRIBE: Subscription Id */
	BAD("82 0A 00 01 03 23 00 01 00 01 61 00", V5, CLI); /* SUBSCRIBE: Topic Alias */
	BAD("F0 0B 18 09 15 00 01 78 11 00 00 00 01", V5, CLI); /* AUTH: Session Expiry */
	BAD("20 05 00 00 02 17 01", V5, SRV);               /* CONNACK: Request Problem Info */
	BAD("90 06 00 01 02 0B 01 00", V5, SRV);            /* SUBACK: Subscription Id */
}

static void test_property_unknown(void **state)
{
	(void)state;
	BAD("30 06 00 01 61 02 00 00", V5, CLI);
	BAD("30 06 00 01 61 02 05 00", V5, CLI);
	BAD("30 06 00 01 61 02 7F 00", V5, CLI);
	BAD("30 06 00 01 61 02 04 00", V5, SRV);
	BAD("30 06 00 01 61 02 2B 00", V5, CLI);
	BAD("30 06 00 01 61 02 80 01", V5, CLI); /* 128, a two-byte identifier */
	BAD("40 05 00 01 00 01 05", V5, CLI);
	BAD("10 10 " MQTT "05 02 00 3C 02 7F 00 00 01 61", V0, CLI);
}

static void test_property_overruns(void **state)
{
	(void)state;
	BAD("30 05 00 01 61 05 01", V5, CLI);                    /* length past the packet */
	BAD("30 07 00 01 61 FF FF FF 7F", V5, CLI);
	BAD("30 08 00 01 61 03 02 00 00 FF", V5, CLI);           /* u32 past the block */
	BAD("30 0A 00 01 61 03 03 00 05 61 62 63", V5, CLI);     /* string past the block */
	BAD("40 0B 00 01 00 07 26 00 01 6B 00 05 76", V5, CLI);  /* user value past it */
	BAD("30 09 00 01 61 05 09 00 09 01 02", V5, SRV);        /* binary data past it */
	BAD("30 06 00 01 61 02 23 00", V5, CLI);                 /* half a u16 */
	BAD("30 05 00 01 61 01 01", V5, CLI);                    /* byte with no value */
	BAD("10 0E " MQTT "05 02 00 3C 09 00 01 61", V0, CLI);
}

/* Values a property may not have (section 3.x.2.y, each "It is a Protocol Error ..."). */
static void test_property_values(void **state)
{
	(void)state;
	REFUSE_RULE("30 07 00 01 61 03 23 00 00", V5, CLI, PROTOCOL, 0x94, "MQTT-3.3.2-8"); /* Topic Alias 0 */
	PROTO("10 11 " MQTT "05 02 00 3C 03 21 00 00 00 01 61", V0, CLI);       /* Receive Max 0 */
	PROTO("20 06 00 00 03 21 00 00", V5, SRV);
	PROTO("10 13 " MQTT "05 02 00 3C 05 27 00 00 00 00 00 01 61", V0, CLI); /* Max Packet 0 */
	PROTO("20 08 00 00 05 27 00 00 00 00", V5, SRV);
	PROTO("30 06 00 01 61 02 01 02", V5, CLI);                              /* PFI 2 */
	PROTO("30 06 00 01 61 02 01 FF", V5, SRV);
	PROTO("10 17 " MQTT "05 06 00 3C 00 00 01 61 02 01 02 00 01 77 00 01 78", V0, CLI);
	PROTO("10 10 " MQTT "05 02 00 3C 02 17 02 00 01 61", V0, CLI);          /* Req Problem 2 */
	PROTO("10 10 " MQTT "05 02 00 3C 02 19 02 00 01 61", V0, CLI);          /* Req Resp 2 */
	PROTO("20 05 00 00 02 24 02", V5, SRV);                                 /* Max QoS 2 */
	PROTO("20 05 00 00 02 25 02", V5, SRV);                                 /* Retain Avail */
	PROTO("20 05 00 00 02 28 02", V5, SRV);
	PROTO("20 05 00 00 02 29 02", V5, SRV);
	PROTO("20 05 00 00 02 2A 02", V5, SRV);
	/* Response Topic must be a topic name [MQTT-3.3.2-14] */
	PROTO("30 0A 00 01 61 06 08 00 03 61 2F 23", V5, CLI);
	PROTO("30 07 00 01 61 03 08 00 00", V5, CLI);
	PROTO("10 19 " MQTT "05 06 00 3C 00 00 01 61 04 08 00 01 2B 00 01 77 00 01 78", V0, CLI);
	/* the edges that are fine */
	ACCEPT("30 07 00 01 61 03 23 FF FF", V5, CLI);
	assert_int_equal(accepted.publish.props.topic_alias, 0xFFFF);
	ACCEPT("10 11 " MQTT "05 02 00 3C 03 21 00 01 00 01 61", V0, CLI);
	assert_int_equal(accepted.connect.props.receive_maximum, 1);
	ACCEPT("10 11 " MQTT "05 02 00 3C 03 22 00 00 00 01 61", V0, CLI); /* Alias Max 0 */
	ACCEPT("20 05 00 00 02 24 00", V5, SRV);
}

/* PFI 1 promises UTF-8 [MQTT-3.3.2-4]: 0x99 Payload format invalid. */
static void test_payload_format(void **state)
{
	(void)state;
	REFUSE("30 07 00 01 61 02 01 01 FF", V5, CLI, PROTOCOL, 0x99, 0);
	REFUSE("30 07 00 01 61 02 01 01 FF", V5, SRV, PROTOCOL, 0x99, 0);
	REFUSE("30 08 00 01 61 02 01 01 C0 80", V5, CLI, PROTOCOL, 0x99, 0);
	REFUSE("30 09 00 01 61 02 01 01 ED A0 80", V5, CLI, PROTOCOL, 0x99, 0);
	REFUSE("30 08 00 01 61 02 01 01 E2 82", V5, CLI, PROTOCOL, 0x99, 0);
	ACCEPT("30 08 00 01 61 02 01 01 C3 A9", V5, CLI);
	ACCEPT("30 07 00 01 61 02 01 00 FF", V5, CLI);
	ACCEPT("30 05 00 01 61 00 FF", V5, CLI);
	ACCEPT("30 06 00 01 61 02 01 01", V5, CLI); /* empty payload */
}

static void test_authentication(void **state)
{
	(void)state;
	/* Authentication Data without Authentication Method */
	PROTO("10 12 " MQTT "05 02 00 3C 04 16 00 01 01 00 01 61", V0, CLI);
	PROTO("20 07 00 00 04 16 00 01 01", V5, SRV);
	PROTO("F0 07 18 05 16 00 02 01 02", V5, CLI);
	/* AUTH with a reason but no method, or properties but no method */
	PROTO("F0 01 18", V5, CLI);
	PROTO("F0 01 19", V5, SRV);
	PROTO("F0 02 18 00", V5, CLI);
	PROTO("F0 06 18 04 1F 00 01 78", V5, CLI);
	/* fine: method and data, method alone */
	ACCEPT("F0 0D 18 0B 15 00 03 74 6F 6B 16 00 02 01 02", V5, CLI);
	ACCEPT("10 14 " MQTT "05 02 00 3C 06 15 00 03 74 6F 6B 00 01 61", V0, CLI);
	/* AUTH before 5.0 is the reserved type 15 */
	BAD("F0 00", V4, CLI);
	BAD("F0 0D 18 0B 15 00 03 74 6F 6B 16 00 02 01 02", V4, SRV);
}

/* ---- 3. direction and order ---- */

static void test_direction(void **state)
{
	(void)state;
	/* server-only packets from a client (CVE-2021-28166) */
	PROTO("20 02 00 00", V4, CLI);
	PROTO("20 03 00 00 00", V5, CLI);
	PROTO("90 03 00 01 00", V4, CLI);
	PROTO("90 04 00 01 00 00", V5, CLI);
	PROTO("B0 02 00 01", V3, CLI);
	PROTO("B0 04 00 01 00 00", V5, CLI);
	PROTO("D0 00", V4, CLI);
	PROTO("D0 00", V5, CLI);
	/* client-only packets from a server */
	PROTO("10 0D " MQTT "04 02 00 3C 00 01 61", V0, SRV);
	PROTO("10 0D " MQTT "04 02 00 3C 00 01 61", V4, SRV);
	PROTO("82 06 00 01 00 01 61 00", V4, SRV);
	PROTO("A2 05 00 01 00 01 61", V4, SRV);
	PROTO("C0 00", V5, SRV);
}

static void test_first_packet_not_connect(void **state)
{
	(void)state;
	REFUSE_RULE("C0 00", V0, CLI, PROTOCOL, 0x82, "MQTT-3.1.0-1");
	PROTO("30 03 00 01 61", V0, CLI);
	PROTO("82 06 00 01 00 01 61 00", V0, CLI);
	PROTO("E0 00", V0, CLI);
	PROTO("40 02 00 01", V0, CLI);
	PROTO("F0 00", V0, CLI);
	PROTO("20 02 00 00", V0, SRV);
	ACCEPT("10 0D " MQTT "04 02 00 3C 00 01 61", V0, CLI);
}

/* ---- reason codes and CONNACK ---- */

static void test_reason_codes(void **state)
{
	(void)state;
	/* 5.0: a code not allowed in the packet (table 2-6) */
	PROTO("40 03 00 01 05", V5, CLI);  /* PUBACK 0x05 */
	PROTO("40 03 00 01 92", V5, SRV);
	PROTO("50 03 00 01 92", V5, CLI);
	PROTO("62 03 00 01 10", V5, CLI);  /* PUBREL 0x10 */
	PROTO("62 03 00 01 80", V5, SRV);
	PROTO("70 03 00 01 10", V5, CLI);
	PROTO("E0 01 01", V5, CLI);        /* DISCONNECT */
	PROTO("E0 01 84", V5, SRV);
	PROTO("F0 01 04", V5, CLI);        /* AUTH */
	PROTO("90 04 00 01 00 03", V5, SRV); /* SUBACK */
	PROTO("90 05 00 01 00 00 11", V5, SRV);
	PROTO("B0 04 00 01 00 01", V5, SRV); /* UNSUBACK */
	PROTO("B0 04 00 01 00 97", V5, SRV);
	PROTO("20 03 00 04 00", V5, SRV);  /* CONNACK */
	PROTO("20 03 00 01 00", V5, SRV);
	PROTO("20 03 00 8B 00", V5, SRV);
	/* acknowledgements with no codes at all */
	PROTO("90 03 00 01 00", V5, SRV);
	PROTO("B0 03 00 01 00", V5, SRV);
	PROTO("90 02 00 01", V4, SRV);
	/* 3.x codes out of range */
	PROTO("20 02 00 06", V4, SRV);
	PROTO("20 02 00 FF", V3, SRV);
	PROTO("90 03 00 01 03", V4, SRV);
	PROTO("90 03 00 01 81", V4, SRV);
	/* the allowed ones still pass */
	ACCEPT("62 03 00 01 92", V5, CLI);
	ACCEPT("90 06 00 01 00 02 80 A2", V5, SRV);
	ACCEPT("90 05 00 01 00 01 80", V4, SRV);
}

static void test_connack_flags(void **state)
{
	(void)state;
	/* reserved flags [MQTT-3.2.2-1] */
	BAD("20 02 02 00", V4, SRV);
	BAD("20 02 80 00", V4, SRV);
	BAD("20 03 02 00 00", V5, SRV);
	/* session present with a refusal [MQTT-3.2.2-6] */
	PROTO("20 02 01 05", V4, SRV);
	PROTO("20 03 01 80 00", V5, SRV);
	ACCEPT("20 02 01 00", V4, SRV);
	assert_true(accepted.connack.session_present);
}

/* A server may not send Session Expiry Interval in DISCONNECT [MQTT-3.14.2-2]. */
static void test_server_disconnect_session_expiry(void **state)
{
	(void)state;
	REFUSE_RULE("E0 07 00 05 11 00 00 00 01", V5, SRV, PROTOCOL, 0x82, "MQTT-3.14.2-2");
	ACCEPT("E0 07 00 05 11 00 00 00 01", V5, CLI);
	assert_int_equal(accepted.disconnect.props.session_expiry, 1);
}

/* ---- very many, very long, very deep ---- */

/* 10000 User Properties (CVE-2021-41039 was quadratic in them), then 65535. */
static void test_many_user_properties(void **state)
{
	struct moat_mqtt_packet p;
	struct moat_mqtt_fault f = {0};
	struct moat_mqtt_prop_iter it;
	struct moat_slice k, v;
	uint8_t *b;
	size_t n, i, off;

	(void)state;
	/* RL 100006, property length 100000: 10000 x (26 00 04 dddd 00 01 76) */
	b = build(big_a, "30 A6 8D 06 00 01 61 A0 8D 06", "26 00 04 30 30 30 30 00 01 76", 10000, "",
		  &n);
	for (i = 0, off = 10; i < 10000; i++, off += 10) {
		char key[8];

		snprintf(key, sizeof(key), "%04zu", i);
		memcpy(b + off + 3, key, 4);
	}
	assert_int_equal(decode_buf(b, n, V5, CLI, false, &p, &f), 0);
	assert_int_equal(p.publish.props.user_count, 10000);
	assert_int_equal(p.publish.payload.len, 0);
	moat_mqtt_props_iter(&p.publish.props, &it);
	for (i = 0; i < 10000; i++) {
		char key[8];

		snprintf(key, sizeof(key), "%04zu", i);
		assert_true(moat_mqtt_props_next_user(&it, &k, &v));
		assert_int_equal(k.len, 4);
		assert_memory_equal(k.p, key, 4);
		assert_int_equal(v.len, 1);
	}
	assert_false(moat_mqtt_props_next_user(&it, &k, &v));
	assert_int_equal(decode_buf(b, n, V5, SRV, false, &p, &f), 0);

	/* 65535 empty pairs: RL 327681, property length 327675 */
	b = build(big_a, "30 81 80 14 00 01 61 FB FF 13", "26 00 00 00 00", 65535, "", &n);
	assert_int_equal(decode_buf(b, n, V5, CLI, false, &p, &f), 0);
	assert_int_equal(p.publish.props.user_count, 65535);
	/* The walk is linear by construction (one pass, no lookups); speed is for bench/. */
}

/*
 * One more than a uint16_t holds: 65536 User Properties, 65536 Subscription
 * Identifiers. The spec puts no limit on either; the counts must not wrap, and
 * a client's PUBLISH with Subscription Identifiers stays refused however many.
 */
static void test_property_counts_do_not_wrap(void **state)
{
	struct moat_mqtt_packet p;
	struct moat_mqtt_fault f = {0};
	uint8_t *b;
	size_t n, count;
	int rc;

	(void)state;
	/* 65536 x (0B 01) from a client: RL 131078, property length 131072 */
	b = build(big_a, "30 86 80 08 00 01 61 80 80 08", "0B 01", 65536, "", &n);
	memset(&f, 0, sizeof(f));
	rc = decode_buf(b, n, V5, CLI, false, &p, &f);
	if (rc != PROTOCOL || f.reason != 0x82)
		fail_msg("client PUBLISH with 65536 Subscription Identifiers: got %s (reason "
			 "0x%02X), want Protocol Error 0x82 [MQTT-3.3.4-6]",
			 moat_strerror(rc), rc ? f.reason : 0);
	/* from a server it is legal, and must be counted right (or refused) */
	rc = decode_buf(b, n, V5, SRV, false, &p, &f);
	count = rc == 0 ? p.publish.props.subid_count : 0;
	if (rc == 0 && count != 65536)
		fail_msg("65536 Subscription Identifiers counted as %zu", count);

	/* 65536 x (26 00 00 00 00): RL 327686, property length 327680 */
	b = build(big_a, "30 86 80 14 00 01 61 80 80 14", "26 00 00 00 00", 65536, "", &n);
	rc = decode_buf(b, n, V5, CLI, false, &p, &f);
	count = rc == 0 ? p.publish.props.user_count : 0;
	if (rc == 0 && count != 65536)
		fail_msg("65536 User Properties counted as %zu", count);
	if (rc != 0)
		assert_true(rc == MALFORMED || rc == PROTOCOL);
}

/* A 65535-byte topic and a 30000-level one are valid (CVE-2019-11779). */
static void test_long_and_deep_topics(void **state)
{
	struct moat_mqtt_packet p;
	struct moat_mqtt_fault f = {0};
	uint8_t *b, *filter;
	size_t n;

	(void)state;
	b = build(big_a, "30 81 80 04 FF FF", "61", 65535, "", &n);
	assert_int_equal(decode_buf(b, n, V4, CLI, false, &p, &f), 0);
	assert_int_equal(p.publish.topic.len, 65535);
	assert_int_equal(p.publish.payload.len, 0);

	b = build(big_a, "30 82 80 04 FF FF", "61", 65535, "00", &n);
	assert_int_equal(decode_buf(b, n, V5, SRV, true, &p, &f), 0);
	assert_int_equal(p.publish.topic.len, 65535);

	b = build(big_a, "82 84 80 04 00 01 FF FF", "61", 65535, "00", &n);
	assert_int_equal(decode_buf(b, n, V4, CLI, false, &p, &f), 0);
	assert_int_equal(p.subscribe.count, 1);

	/* "a/a/.../a": 30000 levels, 59999 bytes; RL 60001 */
	b = build(big_a, "30 E1 D4 03 EA 5F", "61 2F", 29999, "61", &n);
	assert_int_equal(decode_buf(b, n, V4, CLI, false, &p, &f), 0);
	assert_int_equal(p.publish.topic.len, 59999);

	/* "+/+/.../+/#": 30000 levels; RL 60004 */
	filter = build(big_b, "82 E4 D4 03 00 01 EA 5F", "2B 2F", 29999, "23 00", &n);
	assert_int_equal(decode_buf(filter, n, V4, CLI, false, &p, &f), 0);
	assert_int_equal(p.subscribe.count, 1);
	/* and they match, in linear time */
	assert_true(moat_mqtt_topic_match(filter + 8, 59999, b + 6, 59999));
	filter[8 + 59998] = '+'; /* now 30000 '+' levels */
	assert_true(moat_mqtt_topic_match(filter + 8, 59999, b + 6, 59999));
	assert_false(moat_mqtt_topic_match(filter + 8, 59999, b + 6, 59997));
}

/* ---- the framer ---- */

/*
 * A 2^28-1 Remaining Length before CONNECT (CVE-2017-7651, CVE-2023-0809):
 * refused as soon as the fixed header is complete, and the buffer never grows.
 */
static void test_framer_refuses_oversize_at_header(void **state)
{
	static const uint8_t hdr[] = {0x10, 0xFF, 0xFF, 0xFF, 0x7F};
	struct moat_mem mem;
	struct moat_mqtt_framer fr;
	struct moat_mqtt_frame frame;
	struct moat_mqtt_fault f;
	uint8_t *sp;
	size_t used, sn, i;

	(void)state;
	moat_mem_init(&mem, 0, NULL);
	moat_mqtt_framer_init(&fr, &mem, 0, 64 * 1024); /* a small pre-authentication limit */
	for (i = 0; i < 4; i++) {
		assert_int_equal(moat_mqtt_framer_feed(&fr, hdr + i, 1), 0);
		assert_int_equal(moat_mqtt_framer_next(&fr, &frame, &f), 0);
	}
	used = moat_mem_used(&mem);
	assert_true(used > 0 && used <= 4096);
	assert_int_equal(moat_mqtt_framer_feed(&fr, hdr + 4, 1), 0);
	assert_int_equal(moat_mem_used(&mem), used);
	memset(&f, 0, sizeof(f));
	assert_int_equal(moat_mqtt_framer_next(&fr, &frame, &f), MOAT_ETOOBIG);
	assert_int_equal(f.code, MOAT_ETOOBIG);
	assert_int_equal(f.reason, 0x95);
	assert_int_equal(f.connack_v3, 0);
	assert_non_null(f.why);
	assert_int_equal(moat_mem_used(&mem), used);
	/* asking for room to read into does not grow the buffer for it either */
	assert_int_equal(moat_mqtt_framer_space(&fr, &sp, &sn), 0);
	assert_int_equal(moat_mem_used(&mem), used);
	assert_int_equal(moat_mqtt_framer_next(&fr, &frame, &f), MOAT_ETOOBIG);
	moat_mqtt_framer_free(&fr);
	assert_int_equal(moat_mem_used(&mem), 0);

	/* all five bytes at once, with an account too small for the packet */
	moat_mem_init(&mem, 8192, NULL);
	moat_mqtt_framer_init(&fr, &mem, 0, 64 * 1024);
	assert_int_equal(moat_mqtt_framer_feed(&fr, hdr, sizeof(hdr)), 0);
	used = moat_mem_used(&mem);
	assert_int_equal(moat_mqtt_framer_next(&fr, &frame, &f), MOAT_ETOOBIG);
	assert_int_equal(moat_mem_used(&mem), used);
	moat_mqtt_framer_free(&fr);
}

static void test_framer_limit_boundary(void **state)
{
	struct moat_mqtt_framer fr;
	struct moat_mqtt_frame frame;
	struct moat_mqtt_fault f;
	uint8_t b[8];
	size_t n;

	(void)state;
	/* 3 + 1021 = 1024 bytes: allowed, waiting for the body */
	moat_mqtt_framer_init(&fr, NULL, 0, 1024);
	n = unhex("30 FD 07", b, sizeof(b));
	assert_int_equal(moat_mqtt_framer_feed(&fr, b, n), 0);
	assert_int_equal(moat_mqtt_framer_next(&fr, &frame, &f), 0);
	moat_mqtt_framer_free(&fr);
	/* 3 + 1022 = 1025 bytes: too big */
	moat_mqtt_framer_init(&fr, NULL, 0, 1024);
	n = unhex("30 FE 07", b, sizeof(b));
	assert_int_equal(moat_mqtt_framer_feed(&fr, b, n), 0);
	assert_int_equal(moat_mqtt_framer_next(&fr, &frame, &f), MOAT_ETOOBIG);
	assert_int_equal(f.reason, 0x95);
	moat_mqtt_framer_free(&fr);
}

static void test_framer_header_faults(void **state)
{
	static const struct {
		const char *hex;
		int rc;
	} cases[] = {
		{"00", MALFORMED},               /* type 0, refused on its first byte */
		{"C1", MALFORMED},
		{"36", MALFORMED},               /* PUBLISH QoS 3 */
		{"38", MALFORMED},               /* DUP at QoS 0 */
		{"30 80 80 80 80", MALFORMED},   /* fifth length byte */
		{"30 80 00", MALFORMED},         /* not minimal */
		{"30 80 80 80", 0},              /* more needed */
		{"30 05 00 03 61", 0},           /* partial body: more needed */
		{"F0", 0},                       /* AUTH: depends on the version, decided later */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct moat_mqtt_framer fr;
		struct moat_mqtt_frame frame;
		struct moat_mqtt_fault f = {0};
		uint8_t b[8];
		size_t n = unhex(cases[i].hex, b, sizeof(b));
		int rc;

		moat_mqtt_framer_init(&fr, NULL, 0, 0);
		assert_int_equal(moat_mqtt_framer_feed(&fr, b, n), 0);
		rc = moat_mqtt_framer_next(&fr, &frame, &f);
		if (rc != cases[i].rc)
			fail_msg("[%s]: framer returned %d, want %d", cases[i].hex, rc,
				 cases[i].rc);
		if (rc < 0)
			assert_int_equal(f.reason, 0x81);
		else
			assert_int_equal(moat_mqtt_framer_pending(&fr), n);
		moat_mqtt_framer_free(&fr);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reserved_types),
		cmocka_unit_test(test_flag_nibbles),
		cmocka_unit_test(test_publish_qos3_and_dup),
		cmocka_unit_test(test_v31_dup_on_retried_packets),
		cmocka_unit_test(test_remaining_length),
		cmocka_unit_test(test_varints_in_properties),
		cmocka_unit_test(test_fields_past_end),
		cmocka_unit_test(test_bytes_left_over),
		cmocka_unit_test(test_connect_protocol_name_and_level),
		cmocka_unit_test(test_connect_flags),
		cmocka_unit_test(test_connect_password_without_username),
		cmocka_unit_test(test_connect_empty_client_id),
		cmocka_unit_test(test_connect_will),
		cmocka_unit_test(test_utf8_ill_formed),
		cmocka_unit_test(test_utf8_nul),
		cmocka_unit_test(test_utf8_strict),
		cmocka_unit_test(test_publish_topic),
		cmocka_unit_test(test_packet_id_zero),
		cmocka_unit_test(test_subscribe_empty_payload),
		cmocka_unit_test(test_subscribe_options),
		cmocka_unit_test(test_topic_filters),
		cmocka_unit_test(test_subscription_identifier),
		cmocka_unit_test(test_duplicate_properties),
		cmocka_unit_test(test_property_not_allowed),
		cmocka_unit_test(test_property_unknown),
		cmocka_unit_test(test_property_overruns),
		cmocka_unit_test(test_property_values),
		cmocka_unit_test(test_payload_format),
		cmocka_unit_test(test_authentication),
		cmocka_unit_test(test_direction),
		cmocka_unit_test(test_first_packet_not_connect),
		cmocka_unit_test(test_reason_codes),
		cmocka_unit_test(test_connack_flags),
		cmocka_unit_test(test_server_disconnect_session_expiry),
		cmocka_unit_test(test_many_user_properties),
		cmocka_unit_test(test_property_counts_do_not_wrap),
		cmocka_unit_test(test_long_and_deep_topics),
		cmocka_unit_test(test_framer_refuses_oversize_at_header),
		cmocka_unit_test(test_framer_limit_boundary),
		cmocka_unit_test(test_framer_header_faults),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
