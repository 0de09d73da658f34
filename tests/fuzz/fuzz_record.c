/*
 * fuzz_record.c - libFuzzer target: the store's record decoders
 * (src/store/record.c).
 *
 * The first byte picks the decoder (message, session, delivery, will, device); the rest
 * is the record. Checked:
 *   - the result is 0, MOAT_EMALFORMED or MOAT_EVERSION;
 *   - every slice of an accepted record lies inside the input;
 *   - an accepted record is canonical: its size is the input's length and
 *     encoding it again gives the input byte for byte;
 *   - a session's subscription walk yields exactly nsubs entries.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "store/record.h"

#include "fuzz_common.h"

static void inside(const uint8_t *in, size_t n, const uint8_t *p, size_t len)
{
	FZ_ASSERT(len == 0 || (p >= in && p + len <= in + n));
}

static void check_msg(const uint8_t *in, size_t n, const struct moat_rec_msg *m)
{
	inside(in, n, m->topic, m->topic_len);
	inside(in, n, m->props, m->props_len);
	inside(in, n, m->payload, m->payload_len);
	FZ_ASSERT(m->qos <= 2);
}

static void same(const uint8_t *in, size_t n, size_t size, uint8_t *out, size_t len)
{
	FZ_ASSERT(size == n);
	FZ_ASSERT(len == n);
	FZ_ASSERT(memcmp(out, in, n) == 0);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *in = data + 1;
	size_t n = size ? size - 1 : 0;
	int rc;

	if (size == 0)
		return 0;
	switch (data[0] % 5) {
	case 0: {
		struct moat_rec_msg m;
		rc = moat_rec_msg_decode(in, n, &m);
		if (rc == 0) {
			check_msg(in, n, &m);
			uint8_t *out = malloc(n ? n : 1);
			same(in, n, moat_rec_msg_size(&m), out, moat_rec_msg_encode(&m, out));
		}
		break;
	}
	case 1: {
		struct moat_rec_session s;
		rc = moat_rec_session_decode(in, n, &s);
		if (rc == 0) {
			struct moat_rec_sub *subs = calloc(s.nsubs ? s.nsubs : 1, sizeof(*subs));
			size_t pos = 0;
			uint32_t k = 0;
			inside(in, n, s.client_id, s.client_id_len);
			inside(in, n, s.subs, s.subs_len);
			while (k < s.nsubs && moat_rec_sub_next(&s, &pos, &subs[k])) {
				inside(in, n, subs[k].filter, subs[k].filter_len);
				k++;
			}
			FZ_ASSERT(k == s.nsubs && pos == s.subs_len);
			FZ_ASSERT(moat_rec_sub_next(&s, &pos, &subs[0]) == 0);
			uint8_t *out = malloc(n);
			same(in, n, moat_rec_session_size(&s, subs), out,
			     moat_rec_session_encode(&s, subs, out));
			free(subs);
		}
		break;
	}
	case 3: {
		struct moat_rec_will v;
		rc = moat_rec_will_decode(in, n, &v);
		if (rc == 0) {
			check_msg(in, n, &v.msg);
			FZ_ASSERT(v.due_wall_ms > 0);
			uint8_t *out = malloc(n);
			same(in, n, moat_rec_will_size(&v), out, moat_rec_will_encode(&v, out));
		}
		break;
	}
	case 4: {
		struct moat_rec_device v;
		rc = moat_rec_device_decode(in, n, &v);
		if (rc == 0) {
			inside(in, n, v.client_id.p, v.client_id.n);
			for (int i = 0; i < v.naddrs; i++)
				inside(in, n, v.addrs[i].p, v.addrs[i].n);
			for (int i = 0; i < v.nprops; i++)
				inside(in, n, v.props[i].p, v.props[i].n);
			uint8_t *out = malloc(n);
			same(in, n, moat_rec_device_size(&v), out, moat_rec_device_encode(&v, out));
		}
		break;
	}
	default: {
		struct moat_rec_delivery d;
		rc = moat_rec_delivery_decode(in, n, &d);
		if (rc == 0) {
			uint32_t *ids = calloc(d.nsubids ? d.nsubids : 1, sizeof(*ids));
			check_msg(in, n, &d.msg);
			inside(in, n, d.subids, 4 * (size_t)d.nsubids);
			for (uint16_t i = 0; i < d.nsubids; i++) {
				ids[i] = moat_rec_subid(&d, i);
				FZ_ASSERT(ids[i] >= 1 && ids[i] <= 268435455);
			}
			uint8_t *out = malloc(n);
			same(in, n, moat_rec_delivery_size(&d), out,
			     moat_rec_delivery_encode(&d, ids, out));
			free(ids);
		}
		break;
	}
	}
	FZ_ASSERT(rc == 0 || rc == MOAT_EMALFORMED || rc == MOAT_EVERSION);
	return 0;
}
