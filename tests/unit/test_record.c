/*
 * test_record.c - the store's record layouts (src/store/record.c).
 *
 * Checked: every kind (message, session, delivery, delayed will) round-trips, with and without its optional parts; the
 * size is the encoded length; every truncation and a byte left over are
 * refused; another kind or format version is MOAT_EVERSION; each value MQTT
 * would refuse (QoS 3, a wildcard in a topic, a bad filter, reserved option
 * bits, invalid UTF-8, a subscription id out of range, a delivery state that
 * cannot be) is MOAT_EMALFORMED; fields too long to lay out give size 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "store/record.h"

#define S(x) (const uint8_t *)(x), sizeof(x) - 1

static struct moat_rec_msg sample_msg(void)
{
	struct moat_rec_msg m = { .qos = 2, .retain = true, .has_expiry = true,
				  .expires_wall_ms = 1795400000123 };

	m.topic = (const uint8_t *)"plant/line1/temp";
	m.topic_len = 16;
	m.props = (const uint8_t *)"\x01\x01"; /* payload format indicator = 1 */
	m.props_len = 2;
	m.payload = (const uint8_t *)"21.5\0binary";
	m.payload_len = 11;
	return m;
}

static uint8_t *encode_msg(const struct moat_rec_msg *m, size_t *n)
{
	uint8_t *buf;

	*n = moat_rec_msg_size(m);
	assert_true(*n > 0);
	buf = malloc(*n);
	assert_int_equal(moat_rec_msg_encode(m, buf), *n);
	return buf;
}

/* Every proper prefix of a valid record is refused, and so is one more byte. */
static void check_truncations(const uint8_t *buf, size_t n,
			      int (*decode)(const uint8_t *, size_t, void *), void *out)
{
	uint8_t *longer = malloc(n + 1);

	for (size_t k = 0; k < n; k++)
		assert_true(decode(buf, k, out) < 0);
	memcpy(longer, buf, n);
	longer[n] = 0;
	assert_int_equal(decode(longer, n + 1, out), MOAT_EMALFORMED);
	free(longer);
}

static int dec_msg(const uint8_t *p, size_t n, void *o)
{
	return moat_rec_msg_decode(p, n, o);
}

static int dec_session(const uint8_t *p, size_t n, void *o)
{
	return moat_rec_session_decode(p, n, o);
}

static int dec_delivery(const uint8_t *p, size_t n, void *o)
{
	return moat_rec_delivery_decode(p, n, o);
}

static void test_msg_round_trip(void **state)
{
	struct moat_rec_msg m = sample_msg(), got;
	size_t n;
	uint8_t *buf = encode_msg(&m, &n);

	(void)state;
	assert_int_equal(moat_rec_msg_decode(buf, n, &got), 0);
	assert_int_equal(got.qos, 2);
	assert_true(got.retain && got.has_expiry);
	assert_int_equal(got.expires_wall_ms, 1795400000123);
	assert_int_equal(got.topic_len, 16);
	assert_memory_equal(got.topic, "plant/line1/temp", 16);
	assert_int_equal(got.props_len, 2);
	assert_int_equal(got.payload_len, 11);
	assert_memory_equal(got.payload, "21.5\0binary", 11);
	check_truncations(buf, n, dec_msg, &got);
	free(buf);

	/* no expiry, no props, empty payload, QoS 0 */
	m = sample_msg();
	m.qos = 0;
	m.retain = m.has_expiry = false;
	m.props_len = m.payload_len = 0;
	buf = encode_msg(&m, &n);
	assert_int_equal(moat_rec_msg_decode(buf, n, &got), 0);
	assert_false(got.has_expiry || got.retain);
	assert_int_equal(got.payload_len, 0);
	check_truncations(buf, n, dec_msg, &got);
	free(buf);
}

static void test_msg_refusals(void **state)
{
	struct moat_rec_msg m = sample_msg(), got;
	size_t n;
	uint8_t *buf;

	(void)state;
	buf = encode_msg(&m, &n);
	buf[2] = (buf[2] & ~3) | 3; /* QoS 3 */
	assert_int_equal(moat_rec_msg_decode(buf, n, &got), MOAT_EMALFORMED);
	buf[2] = 0x10 | 1; /* an unknown flag */
	assert_int_equal(moat_rec_msg_decode(buf, n, &got), MOAT_EMALFORMED);
	free(buf);
	buf = encode_msg(&m, &n);
	buf[0] = 'S';
	assert_int_equal(moat_rec_msg_decode(buf, n, &got), MOAT_EVERSION);
	buf[0] = 'M';
	buf[1] = 2;
	assert_int_equal(moat_rec_msg_decode(buf, n, &got), MOAT_EVERSION);
	free(buf);
	m.topic = (const uint8_t *)"plant/+/temp";
	m.topic_len = 12;
	buf = encode_msg(&m, &n);
	assert_int_equal(moat_rec_msg_decode(buf, n, &got), MOAT_EMALFORMED);
	free(buf);
	m.topic = (const uint8_t *)"bad\xff";
	m.topic_len = 4;
	buf = encode_msg(&m, &n);
	assert_int_equal(moat_rec_msg_decode(buf, n, &got), MOAT_EMALFORMED);
	free(buf);
	m = sample_msg();
	m.topic_len = 70000;
	assert_int_equal(moat_rec_msg_size(&m), 0);
	m = sample_msg();
	m.qos = 3;
	assert_int_equal(moat_rec_msg_size(&m), 0);
}

static void test_session_round_trip(void **state)
{
	struct moat_rec_sub subs[3] = {
		{ S("plant/#"), 0x01, 0 },
		{ S("$share/g/plant/+/alarm"), 0x2E, 42 }, /* qos 2, nl, rap, rh 2 */
		{ S("a"), 0x00, 268435455 },
	};
	struct moat_rec_session s = { .version = 5, .expiry = 3600,
				      .disconnected_wall_ms = 1795400000000, .nsubs = 3 }, got;
	struct moat_rec_sub sub;
	size_t n, pos = 0;
	uint8_t *buf;

	(void)state;
	s.client_id = (const uint8_t *)"meter-7";
	s.client_id_len = 7;
	n = moat_rec_session_size(&s, subs);
	assert_true(n > 0);
	buf = malloc(n);
	assert_int_equal(moat_rec_session_encode(&s, subs, buf), n);
	assert_int_equal(moat_rec_session_decode(buf, n, &got), 0);
	assert_int_equal(got.version, 5);
	assert_int_equal(got.expiry, 3600);
	assert_int_equal(got.disconnected_wall_ms, 1795400000000);
	assert_memory_equal(got.client_id, "meter-7", 7);
	assert_int_equal(got.nsubs, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(moat_rec_sub_next(&got, &pos, &sub), 1);
		assert_int_equal(sub.filter_len, subs[i].filter_len);
		assert_memory_equal(sub.filter, subs[i].filter, sub.filter_len);
		assert_int_equal(sub.options, subs[i].options);
		assert_int_equal(sub.subid, subs[i].subid);
	}
	assert_int_equal(moat_rec_sub_next(&got, &pos, &sub), 0);
	check_truncations(buf, n, dec_session, &got);
	free(buf);

	/* no subscriptions, online, never expires */
	s.nsubs = 0;
	s.expiry = UINT32_MAX;
	s.disconnected_wall_ms = 0;
	n = moat_rec_session_size(&s, NULL);
	buf = malloc(n);
	moat_rec_session_encode(&s, NULL, buf);
	assert_int_equal(moat_rec_session_decode(buf, n, &got), 0);
	assert_int_equal(got.expiry, UINT32_MAX);
	pos = 0;
	assert_int_equal(moat_rec_sub_next(&got, &pos, &sub), 0);
	free(buf);
}

/* A session with one subscription (filter, options, subid) and client id cid: decoded rc. */
static int session_rc(uint8_t version, const char *cid, size_t cidn, const char *filter,
		      uint8_t options, uint32_t subid)
{
	struct moat_rec_sub sub = { (const uint8_t *)filter, strlen(filter), options, subid };
	struct moat_rec_session s = { .version = version, .nsubs = 1 }, got;
	uint8_t buf[512];
	size_t n;

	s.client_id = (const uint8_t *)cid;
	s.client_id_len = cidn;
	n = moat_rec_session_encode(&s, &sub, buf);
	assert_true(n > 0 && n <= sizeof(buf));
	return moat_rec_session_decode(buf, n, &got);
}

static void test_session_refusals(void **state)
{
	(void)state;
	assert_int_equal(session_rc(4, "c", 1, "a/b", 1, 0), 0);
	assert_int_equal(session_rc(6, "c", 1, "a/b", 1, 0), MOAT_EMALFORMED);     /* version */
	assert_int_equal(session_rc(2, "c", 1, "a/b", 1, 0), MOAT_EMALFORMED);
	assert_int_equal(session_rc(4, "c\xc0", 2, "a/b", 1, 0), MOAT_EMALFORMED); /* UTF-8 */
	assert_int_equal(session_rc(4, "c", 1, "a/#/b", 1, 0), MOAT_EMALFORMED);   /* filter */
	assert_int_equal(session_rc(4, "c", 1, "a+", 1, 0), MOAT_EMALFORMED);
	assert_int_equal(session_rc(4, "c", 1, "", 1, 0), MOAT_EMALFORMED);
	assert_int_equal(session_rc(4, "c", 1, "a", 3, 0), MOAT_EMALFORMED);       /* QoS 3 */
	assert_int_equal(session_rc(4, "c", 1, "a", 0x40, 0), MOAT_EMALFORMED);    /* reserved */
	assert_int_equal(session_rc(4, "c", 1, "a", 0x30, 0), MOAT_EMALFORMED);    /* rh 3 */
	assert_int_equal(session_rc(5, "c", 1, "a", 0, 268435456), MOAT_EMALFORMED);
}

static void test_delivery_round_trip_and_rules(void **state)
{
	struct moat_rec_delivery d = { .state = MOAT_REC_RELEASED, .packet_id = 65535, .qos = 2,
				       .dup = true, .nsubids = 2, .msg = sample_msg() }, got;
	static const uint32_t ids[2] = { 7, 268435455 }, bad_ids[1] = { 268435456 };
	uint8_t buf[256];
	size_t n;

	(void)state;
	n = moat_rec_delivery_size(&d);
	assert_true(n > 0 && n <= sizeof(buf));
	assert_int_equal(moat_rec_delivery_encode(&d, ids, buf), n);
	assert_int_equal(moat_rec_delivery_decode(buf, n, &got), 0);
	assert_int_equal(got.state, MOAT_REC_RELEASED);
	assert_int_equal(got.packet_id, 65535);
	assert_int_equal(got.qos, 2);
	assert_true(got.dup);
	assert_int_equal(got.nsubids, 2);
	assert_int_equal(moat_rec_subid(&got, 0), 7);
	assert_int_equal(moat_rec_subid(&got, 1), 268435455);
	assert_int_equal(moat_rec_subid(&got, 2), 0);
	assert_memory_equal(got.msg.topic, "plant/line1/temp", 16);
	check_truncations(buf, n, dec_delivery, &got);

	d.nsubids = 1; /* a subscription identifier out of range */
	n = moat_rec_delivery_encode(&d, bad_ids, buf);
	assert_int_equal(moat_rec_delivery_decode(buf, n, &got), MOAT_EMALFORMED);
	d.nsubids = 0;
	d.state = MOAT_REC_QUEUED; /* queued: no packet id yet */
	d.packet_id = 0;
	d.qos = 1;
	n = moat_rec_delivery_encode(&d, ids, buf);
	assert_int_equal(moat_rec_delivery_decode(buf, n, &got), 0);
	d.state = MOAT_REC_SENT; /* sent without a packet id */
	n = moat_rec_delivery_encode(&d, ids, buf);
	assert_int_equal(moat_rec_delivery_decode(buf, n, &got), MOAT_EMALFORMED);
	d.packet_id = 9;
	d.qos = 0; /* sent at QoS 0 is not kept */
	n = moat_rec_delivery_encode(&d, ids, buf);
	assert_int_equal(moat_rec_delivery_decode(buf, n, &got), MOAT_EMALFORMED);
	d.state = MOAT_REC_RELEASED;
	d.qos = 1; /* released is QoS 2 only */
	n = moat_rec_delivery_encode(&d, ids, buf);
	assert_int_equal(moat_rec_delivery_decode(buf, n, &got), MOAT_EMALFORMED);
	d.state = 3;
	assert_int_equal(moat_rec_delivery_size(&d), 0);
	buf[0] = 'M';
	assert_int_equal(moat_rec_delivery_decode(buf, n, &got), MOAT_EVERSION);
}

static int dec_will(const uint8_t *in, size_t n, void *out)
{
	return moat_rec_will_decode(in, n, out);
}

static void test_will_round_trip_and_rules(void **state)
{
	struct moat_rec_will v = { .due_wall_ms = 1795400000999, .msg = sample_msg() }, got;
	uint8_t buf[256];
	size_t n;

	(void)state;
	n = moat_rec_will_size(&v);
	assert_true(n > 0 && n <= sizeof(buf));
	assert_int_equal(moat_rec_will_encode(&v, buf), n);
	assert_int_equal(moat_rec_will_decode(buf, n, &got), 0);
	assert_int_equal(got.due_wall_ms, 1795400000999);
	assert_int_equal(got.msg.qos, 2);
	assert_true(got.msg.retain);
	assert_memory_equal(got.msg.topic, "plant/line1/temp", 16);
	assert_memory_equal(got.msg.payload, "21.5\0binary", 11);
	check_truncations(buf, n, dec_will, &got);
	/* a will always has a time */
	buf[2] = buf[3] = buf[4] = buf[5] = buf[6] = buf[7] = buf[8] = buf[9] = 0;
	assert_int_equal(moat_rec_will_decode(buf, n, &got), MOAT_EMALFORMED);
	v.due_wall_ms = 0;
	assert_int_equal(moat_rec_will_size(&v), 0);
	buf[0] = 'D';
	assert_int_equal(moat_rec_will_decode(buf, n, &got), MOAT_EVERSION);
}

static int dec_device(const uint8_t *in, size_t n, void *out)
{
	return moat_rec_device_decode(in, n, out);
}

#define STR(x) { (const uint8_t *)(x), sizeof(x) - 1 }

static void test_device_round_trip_and_rules(void **state)
{
	struct moat_rec_device d = {
		.first_seen = 1795400000, .last_seen = 1795400100, .last_disconnect = 1795400050,
		.connects = 7, .versions = 1 << 4 | 1 << 5, .method = STR("certificate"),
		.client_id = STR("plc-7"), .username = STR("ops"),
		.identity = STR("CN=plc-7,O=plant"), .naddrs = 2,
		.addrs = { STR("192.0.2.7"), STR("2001:db8::7") }, .nprops = 2,
		.props = { STR("model=X9"), STR("fw=1.2.3") },
	}, got;
	uint8_t buf[512];
	size_t n;

	(void)state;
	n = moat_rec_device_size(&d);
	assert_true(n > 0 && n <= sizeof(buf));
	assert_int_equal(moat_rec_device_encode(&d, buf), n);
	assert_int_equal(moat_rec_device_decode(buf, n, &got), 0);
	assert_int_equal(got.connects, 7);
	assert_int_equal(got.versions, d.versions);
	assert_int_equal(got.naddrs, 2);
	assert_memory_equal(got.addrs[1].p, "2001:db8::7", 11);
	assert_int_equal(got.nprops, 2);
	assert_memory_equal(got.props[1].p, "fw=1.2.3", 8);
	assert_memory_equal(got.client_id.p, "plc-7", 5);
	check_truncations(buf, n, dec_device, &got);
	d.nprops = 9; /* too many */
	assert_int_equal(moat_rec_device_size(&d), 0);
	d.nprops = 1;
	d.props[0] = (struct moat_rec_str)STR("no-equals-sign");
	n = moat_rec_device_encode(&d, buf);
	assert_int_equal(moat_rec_device_decode(buf, n, &got), MOAT_EMALFORMED);
	d.nprops = 0;
	d.versions = 1 << 1; /* not a protocol version */
	n = moat_rec_device_encode(&d, buf);
	assert_int_equal(moat_rec_device_decode(buf, n, &got), MOAT_EMALFORMED);
	d.versions = 1 << 4;
	d.client_id = (struct moat_rec_str){ NULL, 0 };
	assert_int_equal(moat_rec_device_size(&d), 0);
	buf[0] = 'W';
	assert_int_equal(moat_rec_device_decode(buf, n, &got), MOAT_EVERSION);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_msg_round_trip),
		cmocka_unit_test(test_msg_refusals),
		cmocka_unit_test(test_session_round_trip),
		cmocka_unit_test(test_session_refusals),
		cmocka_unit_test(test_delivery_round_trip_and_rules),
		cmocka_unit_test(test_will_round_trip_and_rules),
		cmocka_unit_test(test_device_round_trip_and_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
