/*
 * fuzz_props.c - libFuzzer target: MQTT 5.0 property blocks.
 *
 * The low nibble of the first input byte selects `where` (a packet type
 * 1..15, or 0 = MOAT_PROPS_WILL for the Will Properties of CONNECT) and bit
 * 4 turns strict_utf8 on; the rest, copied to an exactly-sized buffer, goes
 * to moat_mqtt_props_decode. Checked:
 *   - no sanitizer report;
 *   - a refusal has code < 0, a why and a reason >= 0x80;
 *   - an accepted block: *used is within the input and is the length prefix
 *     plus the block; every present property is known and allowed in
 *     `where`; values keep their rules; every slice lies inside the block;
 *     both iterators terminate with user_count / subid_count entries;
 *   - moat_mqtt_props_size agrees with moat_mqtt_props_encode, a buffer one
 *     byte short is refused, the encoding decodes (using all of it) to equal
 *     properties, and re-encoding that gives identical bytes;
 *   - the same properties built the way a sender builds them (the fields,
 *     and a block of User Properties then Subscription Identifiers made with
 *     moat_mqtt_props_put_user / _put_subid from the iterators; a single
 *     Subscription Identifier also as the scalar subscription_id with no
 *     block entry) encode to a block that decodes to equal properties.
 */
#include "fuzz_common.h"

/* Encodes pr for where into a fresh exactly-sized buffer; returns it and *len. */
static uint8_t *encode_props(const struct moat_mqtt_props *pr, unsigned where, size_t *len)
{
	size_t size = moat_mqtt_props_size(pr, where), n = 0;
	uint8_t *buf;

	FZ_ASSERT(size >= 1);
	buf = malloc(size);
	FZ_ASSERT(buf != NULL);
	FZ_ASSERT(moat_mqtt_props_encode(pr, where, buf, size - 1, &n) == MOAT_ENOSPC);
	FZ_ASSERT(moat_mqtt_props_encode(pr, where, buf, size, &n) == 0);
	FZ_ASSERT(n == size);
	*len = n;
	return buf;
}

/* Encodes pr, decodes the encoding and checks it carries the same properties as want. */
static void check_encodes_as(const struct moat_mqtt_props *pr, const struct moat_mqtt_props *want,
			     unsigned where, bool strict)
{
	struct moat_mqtt_props got;
	struct moat_mqtt_fault fault;
	size_t n = 0, used = 0;
	uint8_t *enc = encode_props(pr, where, &n);

	memset(&got, 0, sizeof(got));
	FZ_ASSERT(moat_mqtt_props_decode(enc, n, where, strict, &got, &used, &fault) == 0);
	FZ_ASSERT(used == n);
	fz_props_eq(want, &got);
	free(enc);
}

/*
 * Rebuilds p1 as a sender would: its fields, and multi made with the put
 * functions from the iterators (User Properties first, then Subscription
 * Identifiers: the order within each kind is what counts).
 */
static void check_rebuild(const struct moat_mqtt_props *p1, unsigned where, bool strict)
{
	struct moat_mqtt_props b = *p1;
	struct moat_mqtt_prop_iter it;
	struct moat_slice k, v;
	uint32_t id;
	size_t cap = p1->multi.len, n = 0;
	uint8_t *buf = malloc(cap ? cap : 1);

	FZ_ASSERT(buf != NULL);
	moat_mqtt_props_iter(p1, &it);
	while (moat_mqtt_props_next_user(&it, &k, &v))
		FZ_ASSERT(moat_mqtt_props_put_user(buf, cap, &n, k, v) == 0);
	moat_mqtt_props_iter(p1, &it);
	while (moat_mqtt_props_next_subid(&it, &id))
		FZ_ASSERT(moat_mqtt_props_put_subid(buf, cap, &n, id) == 0);
	/* The repeatable entries are no bigger than the block they came from. */
	FZ_ASSERT(moat_mqtt_props_put_subid(buf, n, &n, 1) == MOAT_ENOSPC);
	FZ_ASSERT(moat_mqtt_props_put_subid(buf, cap, &n, 0) == MOAT_EINVAL);
	b.multi.p = n ? buf : NULL;
	b.multi.len = n;
	check_encodes_as(&b, p1, where, strict);

	/* One Subscription Identifier: also as the scalar field, with no entry. */
	if (p1->subid_count == 1) {
		n = 0;
		moat_mqtt_props_iter(p1, &it);
		while (moat_mqtt_props_next_user(&it, &k, &v))
			FZ_ASSERT(moat_mqtt_props_put_user(buf, cap, &n, k, v) == 0);
		b.multi.p = n ? buf : NULL;
		b.multi.len = n;
		b.subid_count = 0;
		check_encodes_as(&b, p1, where, strict);
	}
	free(buf);
}

/* Size of the Variable Byte Integer at p (known to be valid). */
static size_t varint_len(const uint8_t *p)
{
	size_t i = 0;

	while (p[i] & 0x80)
		i++;
	return i + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_mqtt_props p1, p2, p3;
	struct moat_mqtt_fault fault;
	unsigned where;
	bool strict;
	size_t used = 0, used2 = 0, n1 = 0, n2 = 0, n;
	uint8_t *in, *enc1, *enc2;
	int rc;

	if (size < 1)
		return 0;
	where = data[0] & 0x0F;
	strict = (data[0] & 0x10) != 0;
	n = size - 1;
	in = fz_dup(data + 1, n);

	memset(&p1, 0, sizeof(p1));
	memset(&fault, 0, sizeof(fault));
	rc = moat_mqtt_props_decode(in, n, where, strict, &p1, &used, &fault);
	if (rc != 0) {
		FZ_ASSERT(rc < 0 && fault.code == rc && fault.why != NULL && fault.reason >= 0x80);
		FZ_ASSERT(rc == MOAT_EMALFORMED || rc == MOAT_EPROTOCOL);
		free(in);
		return 0;
	}
	FZ_ASSERT(used >= 1 && used <= n);
	FZ_ASSERT(used == varint_len(in) + p1.multi.len);
	FZ_ASSERT(p1.multi.len == 0 || p1.multi.p == in + varint_len(in));
	fz_props_check(&p1, where, strict);
	fz_props_within(&p1, in, used);

	/* Round trip. */
	enc1 = encode_props(&p1, where, &n1);
	memset(&p2, 0, sizeof(p2));
	rc = moat_mqtt_props_decode(enc1, n1, where, strict, &p2, &used2, &fault);
	if (rc != 0)
		fprintf(stderr, "re-encoded properties do not decode: %d %s\n", rc, fault.why);
	FZ_ASSERT(rc == 0);
	FZ_ASSERT(used2 == n1);
	fz_props_check(&p2, where, strict);
	fz_props_eq(&p1, &p2);
	enc2 = encode_props(&p2, where, &n2);
	FZ_ASSERT(n1 == n2 && memcmp(enc1, enc2, n1) == 0);
	memset(&p3, 0, sizeof(p3));
	FZ_ASSERT(moat_mqtt_props_decode(enc2, n2, where, strict, &p3, &used2, &fault) == 0);
	fz_props_eq(&p2, &p3);
	check_rebuild(&p1, where, strict);

	free(enc2);
	free(enc1);
	free(in);
	return 0;
}
