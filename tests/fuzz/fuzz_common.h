/*
 * fuzz_common.h - helpers shared by the libFuzzer targets of tests/fuzz/.
 *
 * Everything here is static (inline, so a target that does not use a helper
 * does not warn), because each target is built as one translation unit with
 * the library sources (see the Makefile's fuzz section).
 *
 * What the helpers check:
 *   - fz_check_fault: a refusal carries a negative MOAT_E* code, a why, a
 *     5.0 reason >= 0x80 that the packet answering it (CONNACK for a CONNECT,
 *     else DISCONNECT) may carry, and a 3.x CONNACK code in range.
 *   - fz_check_packet: what moat_mqtt_decode promises of a packet it accepted
 *     (strings well-formed UTF-8, packet identifiers non-zero, QoS in range,
 *     filters and topic names valid, properties allowed where they are,
 *     reason codes allowed in the packet, direction rules, ...).
 *   - fz_roundtrip: a decoded packet re-encodes (encode_size agrees with
 *     encode, a one-byte-short buffer is refused), the re-encoding decodes
 *     with the same options to a packet equal field by field (props, User
 *     Properties, Subscription Identifiers, SUBSCRIBE/UNSUBSCRIBE entries,
 *     SUBACK reasons included), and re-encoding that second packet gives the
 *     same bytes as the first re-encoding.
 *   - fz_props_eq / fz_props_check_iter: property blocks compared through
 *     every field and both iterators, and iterators that terminate with the
 *     counts the decoder reported.
 *   - fz_check_short_forms: the spellings MQTT 5.0 allows for an
 *     acknowledgement, DISCONNECT or AUTH with no properties (and then
 *     reason 0x00) get the same verdict and decode to the same packet
 *     (regression seed: corpus/fuzz_decode_v5/regress-auth-short-form.bin).
 *   - fz_decode_frame: strict_utf8 only adds refusals (what strict mode
 *     accepts, lax mode accepts as the same packet).
 *
 * Every buffer handed to the decoder is an exactly-sized heap copy, so
 * AddressSanitizer sees any read past its end.
 */
#ifndef MOAT_FUZZ_COMMON_H
#define MOAT_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/utf8.h"
#include "mqtt/frame.h"
#include "mqtt/packet.h"
#include "mqtt/props.h"
#include "mqtt/reason.h"
#include "mqtt/topic.h"
#include "mqtt/types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- assertions ---- */

static inline void fz_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "FUZZ CHECK FAILED: %s (%s:%d)\n", what, file, line);
	abort();
}

#define FZ_ASSERT(cond)                                          \
	do {                                                     \
		if (!(cond))                                     \
			fz_fail(#cond, __FILE__, __LINE__);      \
	} while (0)

/* ---- a cheap PRNG seeded from the input ---- */

static inline uint64_t fz_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

struct fz_rng {
	uint64_t s;
};

static inline uint64_t fz_next(struct fz_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull); /* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A chunk size: often 1 byte, often small, sometimes large. Never 0. */
static inline size_t fz_chunk_size(struct fz_rng *r)
{
	uint64_t x = fz_next(r);

	switch (x & 3) {
	case 0:
		return 1;
	case 1:
		return 1 + (size_t)((x >> 8) % 8);
	case 2:
		return 1 + (size_t)((x >> 8) % 64);
	default:
		return 1 + (size_t)((x >> 8) % 4096);
	}
}

/* An exactly-sized heap copy (at least 1 byte allocated, n accessible). */
static inline uint8_t *fz_dup(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	FZ_ASSERT(q != NULL);
	if (n)
		memcpy(q, p, n);
	return q;
}

/* ---- slices ---- */

static inline bool fz_slice_eq(struct moat_slice a, struct moat_slice b)
{
	if (a.len != b.len)
		return false;
	return a.len == 0 || memcmp(a.p, b.p, a.len) == 0;
}

/* A slice of a decoded packet lies inside the bytes it was decoded from. */
static inline void fz_check_within(struct moat_slice s, const uint8_t *base, size_t n)
{
	if (s.len == 0)
		return;
	FZ_ASSERT(s.p != NULL);
	FZ_ASSERT(s.p >= base && s.len <= n && (size_t)(s.p - base) <= n - s.len);
}

/* A decoded UTF-8 Encoded String: well-formed, no U+0000, strict as asked. */
static inline void fz_check_str(struct moat_slice s, bool strict)
{
	unsigned flags = strict ? 0 : MOAT_UTF8_ALLOW_DISCOURAGED;

	FZ_ASSERT(moat_utf8_check(s.p, s.len, flags) == MOAT_UTF8_OK);
}

/* ---- faults ---- */

/* header_type: the type of the packet refused (CONNECT faults answer in CONNACK). */
static inline void fz_check_fault(int rc, const struct moat_mqtt_fault *f, unsigned header_type)
{
	unsigned answer = header_type == MOAT_MQTT_CONNECT ? MOAT_MQTT_CONNACK : MOAT_MQTT_DISCONNECT;

	FZ_ASSERT(rc < 0);
	FZ_ASSERT(f->code == rc);
	FZ_ASSERT(f->code == MOAT_EMALFORMED || f->code == MOAT_EPROTOCOL ||
		  f->code == MOAT_ETOOBIG || f->code == MOAT_EVERSION);
	FZ_ASSERT(f->why != NULL);
	FZ_ASSERT(f->reason >= 0x80);
	FZ_ASSERT(moat_mqtt_reason_valid(f->reason, (uint8_t)answer));
	FZ_ASSERT(f->connack_v3 <= MOAT_CONNACK_NOT_AUTHORIZED);
}

/* ---- properties ---- */

/* Walks both iterators of pr: they terminate, and agree with the counts. */
static inline void fz_props_check_iter(const struct moat_mqtt_props *pr, bool strict)
{
	struct moat_mqtt_prop_iter it;
	struct moat_slice k, v;
	uint32_t id, n = 0;

	moat_mqtt_props_iter(pr, &it);
	while (moat_mqtt_props_next_user(&it, &k, &v)) {
		FZ_ASSERT(n <= pr->multi.len);
		fz_check_str(k, strict);
		fz_check_str(v, strict);
		fz_check_within(k, pr->multi.p, pr->multi.len);
		fz_check_within(v, pr->multi.p, pr->multi.len);
		n++;
	}
	FZ_ASSERT(n == pr->user_count);
	FZ_ASSERT(!moat_mqtt_props_next_user(&it, &k, &v)); /* stays at the end */

	n = 0;
	moat_mqtt_props_iter(pr, &it);
	while (moat_mqtt_props_next_subid(&it, &id)) {
		FZ_ASSERT(n <= pr->multi.len);
		FZ_ASSERT(id >= 1 && id <= MOAT_MQTT_MAX_REMAINING);
		if (n == 0)
			FZ_ASSERT(id == pr->subscription_id);
		n++;
	}
	FZ_ASSERT(n == pr->subid_count);
	FZ_ASSERT(!moat_mqtt_props_next_subid(&it, &id));
	/* Raw entries: every property once per occurrence, covering the whole block. */
	{
		struct moat_slice raw;
		size_t total = 0;
		uint32_t users = 0, subids = 0;

		moat_mqtt_props_iter(pr, &it);
		while (moat_mqtt_props_next_raw(&it, &id, &raw)) {
			FZ_ASSERT(moat_mqtt_prop_name(id) != NULL);
			FZ_ASSERT(moat_mqtt_props_has(pr, id));
			FZ_ASSERT(raw.len >= 2 && raw.p == pr->multi.p + total);
			total += raw.len;
			FZ_ASSERT(total <= pr->multi.len);
			users += id == MOAT_PROP_USER_PROPERTY;
			subids += id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER;
		}
		FZ_ASSERT(total == pr->multi.len);
		FZ_ASSERT(users == pr->user_count && subids == pr->subid_count);
	}
	FZ_ASSERT(pr->user_count == 0 || moat_mqtt_props_has(pr, MOAT_PROP_USER_PROPERTY));
	FZ_ASSERT(pr->subid_count == 0 ||
		  moat_mqtt_props_has(pr, MOAT_PROP_SUBSCRIPTION_IDENTIFIER));
}

/* What props_decode promises of a block it accepted for `where`. */
static inline void fz_props_check(const struct moat_mqtt_props *pr, unsigned where, bool strict)
{
	unsigned id;

	for (id = 0; id < 64; id++) {
		if (!(pr->present & MOAT_PROP_BIT(id)))
			continue;
		FZ_ASSERT(moat_mqtt_prop_name(id) != NULL);
		FZ_ASSERT(moat_mqtt_prop_allowed(id, where));
	}
	if (moat_mqtt_props_has(pr, MOAT_PROP_PAYLOAD_FORMAT_INDICATOR))
		FZ_ASSERT(pr->payload_format <= 1);
	if (moat_mqtt_props_has(pr, MOAT_PROP_REQUEST_PROBLEM_INFORMATION))
		FZ_ASSERT(pr->request_problem_info <= 1);
	if (moat_mqtt_props_has(pr, MOAT_PROP_REQUEST_RESPONSE_INFORMATION))
		FZ_ASSERT(pr->request_response_info <= 1);
	if (moat_mqtt_props_has(pr, MOAT_PROP_MAXIMUM_QOS))
		FZ_ASSERT(pr->maximum_qos <= 1);
	if (moat_mqtt_props_has(pr, MOAT_PROP_RETAIN_AVAILABLE))
		FZ_ASSERT(pr->retain_available <= 1);
	if (moat_mqtt_props_has(pr, MOAT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE))
		FZ_ASSERT(pr->wildcard_sub_available <= 1);
	if (moat_mqtt_props_has(pr, MOAT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE))
		FZ_ASSERT(pr->sub_id_available <= 1);
	if (moat_mqtt_props_has(pr, MOAT_PROP_SHARED_SUBSCRIPTION_AVAILABLE))
		FZ_ASSERT(pr->shared_sub_available <= 1);
	if (moat_mqtt_props_has(pr, MOAT_PROP_RECEIVE_MAXIMUM))
		FZ_ASSERT(pr->receive_maximum != 0);
	if (moat_mqtt_props_has(pr, MOAT_PROP_TOPIC_ALIAS))
		FZ_ASSERT(pr->topic_alias != 0);
	if (moat_mqtt_props_has(pr, MOAT_PROP_MAXIMUM_PACKET_SIZE))
		FZ_ASSERT(pr->maximum_packet_size != 0);
	if (moat_mqtt_props_has(pr, MOAT_PROP_SUBSCRIPTION_IDENTIFIER))
		FZ_ASSERT(pr->subscription_id != 0 && pr->subid_count >= 1);
	if (moat_mqtt_props_has(pr, MOAT_PROP_RESPONSE_TOPIC))
		FZ_ASSERT(moat_mqtt_topic_name_check(pr->response_topic.p, pr->response_topic.len) ==
			  0);
	if (where != MOAT_MQTT_PUBLISH)
		FZ_ASSERT(pr->subid_count <= 1);
	fz_check_str(pr->content_type, strict);
	fz_check_str(pr->response_topic, strict);
	fz_check_str(pr->assigned_client_id, strict);
	fz_check_str(pr->auth_method, strict);
	fz_check_str(pr->response_info, strict);
	fz_check_str(pr->server_reference, strict);
	fz_check_str(pr->reason_string, strict);
	fz_props_check_iter(pr, strict);
}

/* All slices of pr inside base[0..n). */
static inline void fz_props_within(const struct moat_mqtt_props *pr, const uint8_t *base, size_t n)
{
	fz_check_within(pr->content_type, base, n);
	fz_check_within(pr->response_topic, base, n);
	fz_check_within(pr->correlation_data, base, n);
	fz_check_within(pr->assigned_client_id, base, n);
	fz_check_within(pr->auth_method, base, n);
	fz_check_within(pr->auth_data, base, n);
	fz_check_within(pr->response_info, base, n);
	fz_check_within(pr->server_reference, base, n);
	fz_check_within(pr->reason_string, base, n);
	fz_check_within(pr->multi, base, n);
}

/* Two decoded property blocks carry the same properties. */
static inline void fz_props_eq(const struct moat_mqtt_props *a, const struct moat_mqtt_props *b)
{
	struct moat_mqtt_prop_iter ia, ib;
	struct moat_slice ka, va, kb, vb;
	uint32_t sa, sb;
	bool ma, mb;

	FZ_ASSERT(a->present == b->present);
	FZ_ASSERT(a->message_expiry == b->message_expiry);
	FZ_ASSERT(a->session_expiry == b->session_expiry);
	FZ_ASSERT(a->will_delay == b->will_delay);
	FZ_ASSERT(a->maximum_packet_size == b->maximum_packet_size);
	FZ_ASSERT(a->subscription_id == b->subscription_id);
	FZ_ASSERT(a->server_keep_alive == b->server_keep_alive);
	FZ_ASSERT(a->receive_maximum == b->receive_maximum);
	FZ_ASSERT(a->topic_alias_maximum == b->topic_alias_maximum);
	FZ_ASSERT(a->topic_alias == b->topic_alias);
	FZ_ASSERT(a->payload_format == b->payload_format);
	FZ_ASSERT(a->request_problem_info == b->request_problem_info);
	FZ_ASSERT(a->request_response_info == b->request_response_info);
	FZ_ASSERT(a->maximum_qos == b->maximum_qos);
	FZ_ASSERT(a->retain_available == b->retain_available);
	FZ_ASSERT(a->wildcard_sub_available == b->wildcard_sub_available);
	FZ_ASSERT(a->sub_id_available == b->sub_id_available);
	FZ_ASSERT(a->shared_sub_available == b->shared_sub_available);
	FZ_ASSERT(a->user_count == b->user_count);
	FZ_ASSERT(a->subid_count == b->subid_count);
	FZ_ASSERT(fz_slice_eq(a->content_type, b->content_type));
	FZ_ASSERT(fz_slice_eq(a->response_topic, b->response_topic));
	FZ_ASSERT(fz_slice_eq(a->correlation_data, b->correlation_data));
	FZ_ASSERT(fz_slice_eq(a->assigned_client_id, b->assigned_client_id));
	FZ_ASSERT(fz_slice_eq(a->auth_method, b->auth_method));
	FZ_ASSERT(fz_slice_eq(a->auth_data, b->auth_data));
	FZ_ASSERT(fz_slice_eq(a->response_info, b->response_info));
	FZ_ASSERT(fz_slice_eq(a->server_reference, b->server_reference));
	FZ_ASSERT(fz_slice_eq(a->reason_string, b->reason_string));

	/* User Properties: same pairs in the same order. */
	moat_mqtt_props_iter(a, &ia);
	moat_mqtt_props_iter(b, &ib);
	for (;;) {
		ma = moat_mqtt_props_next_user(&ia, &ka, &va);
		mb = moat_mqtt_props_next_user(&ib, &kb, &vb);
		FZ_ASSERT(ma == mb);
		if (!ma)
			break;
		FZ_ASSERT(fz_slice_eq(ka, kb));
		FZ_ASSERT(fz_slice_eq(va, vb));
	}
	/* Subscription Identifiers: same values in the same order. */
	moat_mqtt_props_iter(a, &ia);
	moat_mqtt_props_iter(b, &ib);
	for (;;) {
		ma = moat_mqtt_props_next_subid(&ia, &sa);
		mb = moat_mqtt_props_next_subid(&ib, &sb);
		FZ_ASSERT(ma == mb);
		if (!ma)
			break;
		FZ_ASSERT(sa == sb);
	}
}

/* ---- packets ---- */

static inline bool fz_type_from_client(unsigned t)
{
	return t != MOAT_MQTT_CONNACK && t != MOAT_MQTT_SUBACK && t != MOAT_MQTT_UNSUBACK &&
	       t != MOAT_MQTT_PINGRESP;
}

static inline bool fz_type_from_server(unsigned t)
{
	return t != MOAT_MQTT_CONNECT && t != MOAT_MQTT_SUBSCRIBE && t != MOAT_MQTT_UNSUBSCRIBE &&
	       t != MOAT_MQTT_PINGREQ;
}

/* The property blocks of p, with the `where` of each; returns how many (0..2). */
static inline int fz_packet_props(const struct moat_mqtt_packet *p,
				  const struct moat_mqtt_props *out[2], unsigned where[2])
{
	switch (p->type) {
	case MOAT_MQTT_CONNECT:
		out[0] = &p->connect.props;
		where[0] = MOAT_MQTT_CONNECT;
		out[1] = &p->connect.will_props;
		where[1] = MOAT_PROPS_WILL;
		return 2;
	case MOAT_MQTT_CONNACK:
		out[0] = &p->connack.props;
		break;
	case MOAT_MQTT_PUBLISH:
		out[0] = &p->publish.props;
		break;
	case MOAT_MQTT_PUBACK:
	case MOAT_MQTT_PUBREC:
	case MOAT_MQTT_PUBREL:
	case MOAT_MQTT_PUBCOMP:
		out[0] = &p->ack.props;
		break;
	case MOAT_MQTT_SUBSCRIBE:
	case MOAT_MQTT_UNSUBSCRIBE:
		out[0] = &p->subscribe.props;
		break;
	case MOAT_MQTT_SUBACK:
	case MOAT_MQTT_UNSUBACK:
		out[0] = &p->suback.props;
		break;
	case MOAT_MQTT_DISCONNECT:
	case MOAT_MQTT_AUTH:
		out[0] = &p->disconnect.props;
		break;
	default:
		return 0;
	}
	where[0] = p->type;
	return 1;
}

/*
 * Checks what moat_mqtt_decode promises of a packet it accepted from
 * body[0..len) under opts with first byte header.
 */
static inline void fz_check_packet(const struct moat_mqtt_decode_opts *opts, uint8_t header,
				   const uint8_t *body, size_t len,
				   const struct moat_mqtt_packet *p)
{
	const struct moat_mqtt_props *pr[2];
	unsigned where[2];
	bool strict = opts->strict_utf8;
	bool v5 = p->version == MOAT_MQTT_V5;
	int i, n;

	FZ_ASSERT(p->type == header >> 4);
	FZ_ASSERT(p->type >= MOAT_MQTT_CONNECT && p->type <= MOAT_MQTT_AUTH);
	FZ_ASSERT(opts->from_client ? fz_type_from_client(p->type) : fz_type_from_server(p->type));
	if (p->type == MOAT_MQTT_CONNECT) {
		FZ_ASSERT(p->version >= MOAT_MQTT_V31 && p->version <= MOAT_MQTT_V5);
		FZ_ASSERT(p->connect.version == p->version);
		FZ_ASSERT(moat_mqtt_connect_version(body, len) == p->version);
	} else {
		FZ_ASSERT(p->version == opts->version);
	}
	if (p->type == MOAT_MQTT_AUTH)
		FZ_ASSERT(v5);

	n = fz_packet_props(p, pr, where);
	for (i = 0; i < n; i++) {
		if (v5)
			fz_props_check(pr[i], where[i], strict);
		else
			FZ_ASSERT(pr[i]->present == 0 && pr[i]->multi.len == 0);
		fz_props_within(pr[i], body, len);
	}

	switch (p->type) {
	case MOAT_MQTT_CONNECT: {
		const struct moat_mqtt_connect *c = &p->connect;

		FZ_ASSERT(c->will_qos <= 2);
		if (!c->will) {
			FZ_ASSERT(c->will_qos == 0 && !c->will_retain);
			FZ_ASSERT(c->will_props.present == 0 && c->will_topic.len == 0);
		} else {
			FZ_ASSERT(moat_mqtt_topic_name_check(c->will_topic.p, c->will_topic.len) == 0);
		}
		if (!v5 && c->has_password)
			FZ_ASSERT(c->has_username);
		if (c->client_id.len == 0)
			FZ_ASSERT(v5 || (p->version == MOAT_MQTT_V311 && c->clean_start));
		if (moat_mqtt_props_has(&c->props, MOAT_PROP_AUTHENTICATION_DATA))
			FZ_ASSERT(moat_mqtt_props_has(&c->props, MOAT_PROP_AUTHENTICATION_METHOD));
		fz_check_str(c->client_id, strict);
		fz_check_str(c->will_topic, strict);
		fz_check_str(c->username, strict);
		fz_check_within(c->client_id, body, len);
		fz_check_within(c->will_topic, body, len);
		fz_check_within(c->will_payload, body, len);
		fz_check_within(c->username, body, len);
		fz_check_within(c->password, body, len);
		break;
	}
	case MOAT_MQTT_CONNACK:
		if (v5)
			FZ_ASSERT(moat_mqtt_reason_valid(p->connack.reason, MOAT_MQTT_CONNACK));
		else
			FZ_ASSERT(p->connack.reason <= MOAT_CONNACK_NOT_AUTHORIZED);
		if (p->connack.session_present)
			FZ_ASSERT(p->connack.reason == 0);
		break;
	case MOAT_MQTT_PUBLISH: {
		const struct moat_mqtt_publish *m = &p->publish;

		FZ_ASSERT(m->qos <= 2);
		FZ_ASSERT(m->qos == ((header >> 1) & 3));
		FZ_ASSERT(m->dup == ((header & 0x08) != 0));
		FZ_ASSERT(m->retain == ((header & 0x01) != 0));
		FZ_ASSERT(m->qos ? m->packet_id != 0 : (m->packet_id == 0 && !m->dup));
		if (m->topic.len == 0)
			FZ_ASSERT(v5 && moat_mqtt_props_has(&m->props, MOAT_PROP_TOPIC_ALIAS));
		else
			FZ_ASSERT(moat_mqtt_topic_name_check(m->topic.p, m->topic.len) == 0);
		if (opts->from_client)
			FZ_ASSERT(m->props.subid_count == 0);
		if (moat_mqtt_props_has(&m->props, MOAT_PROP_PAYLOAD_FORMAT_INDICATOR) &&
		    m->props.payload_format == 1)
			FZ_ASSERT(moat_utf8_check(m->payload.p, m->payload.len,
						  MOAT_UTF8_ALLOW_NUL |
							  MOAT_UTF8_ALLOW_DISCOURAGED) ==
				  MOAT_UTF8_OK);
		fz_check_str(m->topic, strict);
		fz_check_within(m->topic, body, len);
		fz_check_within(m->payload, body, len);
		/* The payload is the rest of the packet. */
		if (m->payload.len)
			FZ_ASSERT(m->payload.p + m->payload.len == body + len);
		break;
	}
	case MOAT_MQTT_PUBACK:
	case MOAT_MQTT_PUBREC:
	case MOAT_MQTT_PUBREL:
	case MOAT_MQTT_PUBCOMP:
		FZ_ASSERT(p->ack.packet_id != 0);
		if (v5)
			FZ_ASSERT(moat_mqtt_reason_valid(p->ack.reason, p->type));
		else
			FZ_ASSERT(p->ack.reason == 0);
		break;
	case MOAT_MQTT_SUBSCRIBE:
	case MOAT_MQTT_UNSUBSCRIBE: {
		const struct moat_mqtt_subscribe *s = &p->subscribe;
		struct moat_mqtt_sub_iter it;
		struct moat_slice f, g, inner;
		uint8_t o;
		uint32_t k = 0;
		bool unsub = p->type == MOAT_MQTT_UNSUBSCRIBE;

		FZ_ASSERT(s->packet_id != 0);
		FZ_ASSERT(s->count >= 1);
		fz_check_within(s->entries, body, len);
		moat_mqtt_sub_iter(s, &it);
		for (;;) {
			o = 0;
			if (!(unsub ? moat_mqtt_unsub_next(&it, &f) : moat_mqtt_sub_next(&it, &f, &o)))
				break;
			FZ_ASSERT(k < s->count);
			k++;
			fz_check_str(f, strict);
			fz_check_within(f, s->entries.p, s->entries.len);
			FZ_ASSERT(moat_mqtt_topic_filter_check(f.p, f.len) == 0);
			if (unsub)
				continue;
			FZ_ASSERT(MOAT_SUBOPT_QOS(o) <= 2);
			if (v5) {
				FZ_ASSERT((o & 0xC0) == 0);
				FZ_ASSERT(MOAT_SUBOPT_RETAIN_HANDLING(o) <= 2);
				if (o & MOAT_SUBOPT_NO_LOCAL)
					FZ_ASSERT(moat_mqtt_share_split(f.p, f.len, &g, &inner) != 1);
			} else {
				FZ_ASSERT((o & 0xFC) == 0);
			}
		}
		FZ_ASSERT(k == s->count);
		FZ_ASSERT(it.p == it.end); /* the entries are exactly the filters */

		/* Rebuilt with moat_mqtt_sub_put / unsub_put, the entries are the same bytes. */
		{
			uint8_t *buf = malloc(s->entries.len);
			size_t used = 0;

			FZ_ASSERT(buf != NULL);
			moat_mqtt_sub_iter(s, &it);
			for (;;) {
				o = 0;
				if (!(unsub ? moat_mqtt_unsub_next(&it, &f)
					    : moat_mqtt_sub_next(&it, &f, &o)))
					break;
				if (unsub)
					FZ_ASSERT(moat_mqtt_unsub_put(buf, s->entries.len, &used, f) == 0);
				else
					FZ_ASSERT(moat_mqtt_sub_put(buf, s->entries.len, &used, f, o) == 0);
			}
			FZ_ASSERT(used == s->entries.len && memcmp(buf, s->entries.p, used) == 0);
			/* The buffer is full: one more entry is refused and used stays. */
			f = MOAT_SLICE_STR("a");
			FZ_ASSERT((unsub ? moat_mqtt_unsub_put(buf, s->entries.len, &used, f)
					 : moat_mqtt_sub_put(buf, s->entries.len, &used, f, 0)) ==
				  MOAT_ENOSPC);
			FZ_ASSERT(used == s->entries.len);
			free(buf);
		}
		break;
	}
	case MOAT_MQTT_SUBACK:
	case MOAT_MQTT_UNSUBACK: {
		const struct moat_mqtt_suback *s = &p->suback;
		size_t k;

		FZ_ASSERT(s->packet_id != 0);
		fz_check_within(s->reasons, body, len);
		if (p->type == MOAT_MQTT_UNSUBACK && !v5) {
			FZ_ASSERT(s->reasons.len == 0);
			break;
		}
		FZ_ASSERT(s->reasons.len >= 1);
		for (k = 0; k < s->reasons.len; k++) {
			uint8_t rc = s->reasons.p[k];
			if (v5)
				FZ_ASSERT(moat_mqtt_reason_valid(rc, p->type));
			else
				FZ_ASSERT(rc <= 2 || rc == 0x80);
		}
		break;
	}
	case MOAT_MQTT_PINGREQ:
	case MOAT_MQTT_PINGRESP:
		FZ_ASSERT(len == 0);
		break;
	case MOAT_MQTT_DISCONNECT:
	case MOAT_MQTT_AUTH: {
		const struct moat_mqtt_props *x = &p->disconnect.props;

		if (!v5) {
			FZ_ASSERT(len == 0 && p->disconnect.reason == 0);
			break;
		}
		FZ_ASSERT(moat_mqtt_reason_valid(p->disconnect.reason, p->type));
		if (moat_mqtt_props_has(x, MOAT_PROP_AUTHENTICATION_DATA))
			FZ_ASSERT(moat_mqtt_props_has(x, MOAT_PROP_AUTHENTICATION_METHOD));
		if (p->type == MOAT_MQTT_DISCONNECT && !opts->from_client)
			FZ_ASSERT(!moat_mqtt_props_has(x, MOAT_PROP_SESSION_EXPIRY_INTERVAL));
		if (p->type == MOAT_MQTT_AUTH && len > 0)
			FZ_ASSERT(moat_mqtt_props_has(x, MOAT_PROP_AUTHENTICATION_METHOD));
		break;
	}
	default:
		FZ_ASSERT(0);
	}
}

/* SUBSCRIBE / UNSUBSCRIBE entries of a and b are the same, walked with the iterators. */
static inline void fz_entries_eq(const struct moat_mqtt_packet *a, const struct moat_mqtt_packet *b)
{
	struct moat_mqtt_sub_iter ia, ib;
	struct moat_slice fa, fb;
	uint8_t oa, ob;
	bool unsub = a->type == MOAT_MQTT_UNSUBSCRIBE;
	bool ma, mb;
	uint32_t k = 0;

	FZ_ASSERT(a->subscribe.count == b->subscribe.count);
	moat_mqtt_sub_iter(&a->subscribe, &ia);
	moat_mqtt_sub_iter(&b->subscribe, &ib);
	for (;;) {
		oa = ob = 0;
		if (unsub) {
			ma = moat_mqtt_unsub_next(&ia, &fa);
			mb = moat_mqtt_unsub_next(&ib, &fb);
		} else {
			ma = moat_mqtt_sub_next(&ia, &fa, &oa);
			mb = moat_mqtt_sub_next(&ib, &fb, &ob);
		}
		FZ_ASSERT(ma == mb);
		if (!ma)
			break;
		FZ_ASSERT(fz_slice_eq(fa, fb));
		FZ_ASSERT(oa == ob);
		k++;
		FZ_ASSERT(k <= a->subscribe.count);
	}
	FZ_ASSERT(k == a->subscribe.count);
	FZ_ASSERT(fz_slice_eq(a->subscribe.entries, b->subscribe.entries));
}

/* a and b, decoded from two encodings, are the same packet, field by field. */
static inline void fz_packet_eq(const struct moat_mqtt_packet *a, const struct moat_mqtt_packet *b)
{
	FZ_ASSERT(a->type == b->type);
	FZ_ASSERT(a->version == b->version);
	switch (a->type) {
	case MOAT_MQTT_CONNECT: {
		const struct moat_mqtt_connect *x = &a->connect, *y = &b->connect;

		FZ_ASSERT(x->version == y->version);
		FZ_ASSERT(x->clean_start == y->clean_start);
		FZ_ASSERT(x->will == y->will);
		FZ_ASSERT(x->will_qos == y->will_qos);
		FZ_ASSERT(x->will_retain == y->will_retain);
		FZ_ASSERT(x->has_username == y->has_username);
		FZ_ASSERT(x->has_password == y->has_password);
		FZ_ASSERT(x->keep_alive == y->keep_alive);
		FZ_ASSERT(fz_slice_eq(x->client_id, y->client_id));
		FZ_ASSERT(fz_slice_eq(x->will_topic, y->will_topic));
		FZ_ASSERT(fz_slice_eq(x->will_payload, y->will_payload));
		FZ_ASSERT(fz_slice_eq(x->username, y->username));
		FZ_ASSERT(fz_slice_eq(x->password, y->password));
		fz_props_eq(&x->props, &y->props);
		fz_props_eq(&x->will_props, &y->will_props);
		break;
	}
	case MOAT_MQTT_CONNACK:
		FZ_ASSERT(a->connack.session_present == b->connack.session_present);
		FZ_ASSERT(a->connack.reason == b->connack.reason);
		fz_props_eq(&a->connack.props, &b->connack.props);
		break;
	case MOAT_MQTT_PUBLISH: {
		const struct moat_mqtt_publish *x = &a->publish, *y = &b->publish;

		FZ_ASSERT(x->qos == y->qos);
		FZ_ASSERT(x->dup == y->dup);
		FZ_ASSERT(x->retain == y->retain);
		FZ_ASSERT(x->packet_id == y->packet_id);
		FZ_ASSERT(fz_slice_eq(x->topic, y->topic));
		FZ_ASSERT(fz_slice_eq(x->payload, y->payload));
		fz_props_eq(&x->props, &y->props);
		break;
	}
	case MOAT_MQTT_PUBACK:
	case MOAT_MQTT_PUBREC:
	case MOAT_MQTT_PUBREL:
	case MOAT_MQTT_PUBCOMP:
		FZ_ASSERT(a->ack.packet_id == b->ack.packet_id);
		FZ_ASSERT(a->ack.reason == b->ack.reason);
		fz_props_eq(&a->ack.props, &b->ack.props);
		break;
	case MOAT_MQTT_SUBSCRIBE:
	case MOAT_MQTT_UNSUBSCRIBE:
		FZ_ASSERT(a->subscribe.packet_id == b->subscribe.packet_id);
		fz_entries_eq(a, b);
		fz_props_eq(&a->subscribe.props, &b->subscribe.props);
		break;
	case MOAT_MQTT_SUBACK:
	case MOAT_MQTT_UNSUBACK:
		FZ_ASSERT(a->suback.packet_id == b->suback.packet_id);
		FZ_ASSERT(fz_slice_eq(a->suback.reasons, b->suback.reasons));
		fz_props_eq(&a->suback.props, &b->suback.props);
		break;
	case MOAT_MQTT_PINGREQ:
	case MOAT_MQTT_PINGRESP:
		break;
	case MOAT_MQTT_DISCONNECT:
	case MOAT_MQTT_AUTH:
		FZ_ASSERT(a->disconnect.reason == b->disconnect.reason);
		fz_props_eq(&a->disconnect.props, &b->disconnect.props);
		break;
	default:
		FZ_ASSERT(0);
	}
}

/*
 * Encodes p into a fresh exactly-sized buffer (checking encode_size against
 * encode, and that one byte less is refused with MOAT_ENOSPC). Returns the
 * buffer (free it) and its length in *len.
 */
static inline uint8_t *fz_encode(const struct moat_mqtt_packet *p, size_t *len)
{
	size_t size = 0, n = 0;
	uint8_t *buf;
	int rc;

	rc = moat_mqtt_encode_size(p, &size);
	if (rc != 0)
		fprintf(stderr, "encode_size of a decoded %s (version %u) failed: %d\n",
			moat_mqtt_type_name(p->type), p->version, rc);
	FZ_ASSERT(rc == 0);
	FZ_ASSERT(size >= 2 && size <= MOAT_MQTT_MAX_PACKET);
	buf = malloc(size);
	FZ_ASSERT(buf != NULL);
	FZ_ASSERT(moat_mqtt_encode(p, buf, size - 1, &n) == MOAT_ENOSPC);
	rc = moat_mqtt_encode(p, buf, size, &n);
	FZ_ASSERT(rc == 0);
	FZ_ASSERT(n == size);
	*len = n;
	return buf;
}

/*
 * The round-trip check: p1 was decoded under opts from a packet whose first
 * byte is header. Re-encode it, decode the encoding, compare, re-encode the
 * second decode and compare bytes.
 */
static inline void fz_roundtrip(const struct moat_mqtt_decode_opts *opts, uint8_t header,
				const struct moat_mqtt_packet *p1)
{
	struct moat_mqtt_packet p2, p3;
	struct moat_mqtt_fault fault;
	size_t len1 = 0, len2 = 0, hlen = 0;
	uint8_t *enc1, *enc2, *body;
	uint8_t h = 0;
	uint32_t rem = 0;
	int rc;

	enc1 = fz_encode(p1, &len1);
	/* The encoding is one whole packet with the original first byte. */
	memset(&fault, 0, sizeof(fault));
	FZ_ASSERT(moat_mqtt_fixed_header(enc1, len1, &h, &rem, &hlen, &fault) == 1);
	FZ_ASSERT(hlen + rem == len1);
	/*
	 * The original first byte, except the DUP bit MQTT 3.1 set on retried
	 * PUBREL, SUBSCRIBE and UNSUBSCRIBE (flags 1010): the decoder accepts it
	 * there and the packet does not keep it, so the encoder writes 0010.
	 */
	if (h != header && !(p1->version == MOAT_MQTT_V31 && (header & 0x0F) == 0x0A &&
			     h == (header & 0xF7))) {
		fprintf(stderr, "re-encoded first byte 0x%02x, decoded from 0x%02x\n", h, header);
		FZ_ASSERT(h == header);
	}

	body = fz_dup(enc1 + hlen, rem);
	memset(&p2, 0, sizeof(p2));
	memset(&fault, 0, sizeof(fault));
	rc = moat_mqtt_decode(opts, h, body, rem, &p2, &fault);
	if (rc != 0)
		fprintf(stderr, "re-encoded %s (version %u) does not decode: %d %s (%s)\n",
			moat_mqtt_type_name(p1->type), p1->version, rc,
			fault.why ? fault.why : "?", fault.rule ? fault.rule : "-");
	FZ_ASSERT(rc == 0);
	fz_check_packet(opts, h, body, rem, &p2);
	fz_packet_eq(p1, &p2);

	enc2 = fz_encode(&p2, &len2);
	FZ_ASSERT(len1 == len2);
	FZ_ASSERT(memcmp(enc1, enc2, len1) == 0);

	/* The re-encoding is a fixed point: decoding it again changes nothing. */
	memset(&p3, 0, sizeof(p3));
	FZ_ASSERT(moat_mqtt_decode(opts, h, enc2 + hlen, rem, &p3, &fault) == 0);
	fz_packet_eq(&p2, &p3);

	free(enc2);
	free(body);
	free(enc1);
}

/*
 * MQTT 5.0 lets an acknowledgement (3.4.2.1), DISCONNECT (3.14.2.1) and AUTH
 * (3.15.2.1) drop an empty property block's length, and then a 0x00 reason
 * code: after the packet identifier (if any), "R" and "R 00" are one packet,
 * and so are "", "00" and "00 00". When body is one of these spellings,
 * decode the others: the verdict (accepted or refused) and the packet must
 * be the same.
 */
static inline void fz_check_short_forms(const struct moat_mqtt_decode_opts *opts, uint8_t header,
					const uint8_t *body, size_t len, int rc,
					const struct moat_mqtt_packet *p)
{
	unsigned t = header >> 4;
	size_t base, alts[3], nalt = 0, i;
	uint8_t reason;

	if (opts->version != MOAT_MQTT_V5)
		return;
	if (t >= MOAT_MQTT_PUBACK && t <= MOAT_MQTT_PUBCOMP)
		base = 2;
	else if (t == MOAT_MQTT_DISCONNECT || t == MOAT_MQTT_AUTH)
		base = 0;
	else
		return;
	if (len < base || len > base + 2 || (len == base + 2 && body[base + 1] != 0))
		return;
	reason = len > base ? body[base] : 0;
	/* The other spellings, by length: the reason, then a zero property length. */
	if (len != base + 1)
		alts[nalt++] = base + 1;
	if (len != base + 2)
		alts[nalt++] = base + 2;
	if (reason == 0 && len != base)
		alts[nalt++] = base;
	for (i = 0; i < nalt; i++) {
		struct moat_mqtt_packet q;
		struct moat_mqtt_fault fault;
		size_t k = alts[i];
		uint8_t *alt;
		int rc2;

		alt = malloc(k ? k : 1);
		FZ_ASSERT(alt != NULL);
		memcpy(alt, body, base);
		if (k > base)
			alt[base] = reason;
		if (k > base + 1)
			alt[base + 1] = 0;
		memset(&q, 0, sizeof(q));
		rc2 = moat_mqtt_decode(opts, header, alt, k, &q, &fault);
		if ((rc == 0) != (rc2 == 0)) {
			fprintf(stderr, "%s, reason 0x%02x: spelt with %zu byte(s) of reason and "
					"property length it is %s, with %zu %s\n",
				moat_mqtt_type_name((uint8_t)t), reason, len - base,
				rc == 0 ? "accepted" : "refused", k - base,
				rc2 == 0 ? "accepted" : "refused");
			FZ_ASSERT((rc == 0) == (rc2 == 0));
		}
		if (rc == 0)
			fz_packet_eq(p, &q);
		free(alt);
	}
}

/*
 * Decodes one frame (copied to an exactly-sized buffer) under opts; on
 * success checks the packet and runs the round trip, on failure checks the
 * fault. Returns the decode result.
 */
static inline int fz_decode_frame(const struct moat_mqtt_decode_opts *opts, uint8_t header,
				  const uint8_t *frame_body, size_t len)
{
	struct moat_mqtt_packet p;
	struct moat_mqtt_fault fault;
	uint8_t *body = fz_dup(frame_body, len);
	int rc;

	memset(&p, 0, sizeof(p));
	memset(&fault, 0, sizeof(fault));
	rc = moat_mqtt_decode(opts, header, body, len, &p, &fault);
	if (rc == 0) {
		fz_check_packet(opts, header, body, len, &p);
		fz_roundtrip(opts, header, &p);
	} else {
		fz_check_fault(rc, &fault, header >> 4);
	}
	fz_check_short_forms(opts, header, body, len, rc, &p);

	/* A CONNECT decodes as the version it names, whatever was negotiated before. */
	if (header >> 4 == MOAT_MQTT_CONNECT) {
		struct moat_mqtt_decode_opts other = *opts;
		struct moat_mqtt_packet q;
		uint8_t v = moat_mqtt_connect_version(body, len);

		/* The peek names a version of CONNACK for any CONNECT that names a protocol. */
		FZ_ASSERT(v == 0 || (v >= MOAT_MQTT_V31 && v <= MOAT_MQTT_V5));
		if (v == 0)
			FZ_ASSERT(rc != 0);

		for (v = 0; v <= MOAT_MQTT_V5; v++) {
			if (v == opts->version || v == 1 || v == 2)
				continue;
			other.version = v;
			memset(&q, 0, sizeof(q));
			FZ_ASSERT(moat_mqtt_decode(&other, header, body, len, &q, &fault) == rc);
			if (rc == 0)
				fz_packet_eq(&p, &q);
		}
	} else if (moat_mqtt_header_check(header, &fault) == 0) {
		/* Before CONNECT nothing else is accepted [MQTT-3.1.0-1]. */
		struct moat_mqtt_decode_opts first = *opts;
		struct moat_mqtt_packet q;

		first.version = 0;
		FZ_ASSERT(moat_mqtt_decode(&first, header, body, len, &q, &fault) == MOAT_EPROTOCOL);
	}

	/* strict_utf8 only adds refusals: what it accepts, lax mode accepts the same way. */
	{
		struct moat_mqtt_decode_opts other = *opts;
		struct moat_mqtt_packet q;
		int rc2;

		other.strict_utf8 = !opts->strict_utf8;
		memset(&q, 0, sizeof(q));
		rc2 = moat_mqtt_decode(&other, header, body, len, &q, &fault);
		if (opts->strict_utf8 && rc == 0) {
			FZ_ASSERT(rc2 == 0);
			fz_packet_eq(&p, &q);
		}
		if (!opts->strict_utf8 && rc != 0)
			FZ_ASSERT(rc2 != 0);
	}
	free(body);
	return rc;
}

/*
 * Feeds data[0..len) to a framer in PRNG-sized chunks (alternating between
 * moat_mqtt_framer_feed and space/commit), decoding every frame with opts.
 * Stops at the first framer fault. Checks that the account is back to 0.
 */
static inline void fz_decode_stream(const struct moat_mqtt_decode_opts *opts, uint64_t seed,
				    const uint8_t *data, size_t len)
{
	static const size_t chunks[4] = {0, 64, 256, 1024};
	struct moat_mem mem;
	struct moat_mqtt_framer f;
	struct moat_mqtt_frame fr;
	struct moat_mqtt_fault fault;
	struct fz_rng rng = {seed};
	size_t off = 0;
	bool stop = false;

	moat_mem_init(&mem, 1u << 20, NULL);
	moat_mqtt_framer_init(&f, &mem, chunks[fz_next(&rng) & 3], 64u * 1024);
	while (off < len && !stop) {
		size_t n = fz_chunk_size(&rng);
		int rc;

		if (n > len - off)
			n = len - off;
		if (fz_next(&rng) & 1) {
			rc = moat_mqtt_framer_feed(&f, data + off, n);
		} else {
			uint8_t *dst;
			size_t room;

			rc = moat_mqtt_framer_space(&f, &dst, &room);
			if (rc == 0) {
				FZ_ASSERT(room > 0);
				if (n > room)
					n = room;
				memcpy(dst, data + off, n);
				moat_mqtt_framer_commit(&f, n);
			}
		}
		/* Draining after every chunk keeps the buffer near one packet. */
		FZ_ASSERT(rc == 0 || (rc == MOAT_ENOMEM && len > (256u << 10)));
		if (rc < 0)
			break;
		off += n;
		for (;;) {
			memset(&fault, 0, sizeof(fault));
			rc = moat_mqtt_framer_next(&f, &fr, &fault);
			if (rc == 0)
				break;
			if (rc < 0) {
				fz_check_fault(rc, &fault, 0);
				stop = true;
				break;
			}
			FZ_ASSERT(fr.size <= f.max_packet);
			fz_decode_frame(opts, fr.header, fr.body, fr.remaining);
		}
	}
	moat_mqtt_framer_free(&f);
	FZ_ASSERT(moat_mem_used(&mem) == 0);
}

#endif
