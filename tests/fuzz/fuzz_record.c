/*
 * fuzz_record.c - libFuzzer target: the store's record decoders
 * (src/store/record.c).
 *
 * The first byte picks the decoder (message, session, delivery); the rest
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "FUZZ CHECK FAILED: %s (fuzz_record.c:%d)\n", #cond, \
				__LINE__);                                             \
			abort();                                                       \
		}                                                                      \
	} while (0)

static void inside(const uint8_t *in, size_t n, const uint8_t *p, size_t len)
{
	CHECK(len == 0 || (p >= in && p + len <= in + n));
}

static void check_msg(const uint8_t *in, size_t n, const struct moat_rec_msg *m)
{
	inside(in, n, m->topic, m->topic_len);
	inside(in, n, m->props, m->props_len);
	inside(in, n, m->payload, m->payload_len);
	CHECK(m->qos <= 2);
}

static void same(const uint8_t *in, size_t n, size_t size, uint8_t *out, size_t len)
{
	CHECK(size == n);
	CHECK(len == n);
	CHECK(memcmp(out, in, n) == 0);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *in = data + 1;
	size_t n = size ? size - 1 : 0;
	int rc;

	if (size == 0)
		return 0;
	switch (data[0] % 3) {
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
			CHECK(k == s.nsubs && pos == s.subs_len);
			CHECK(moat_rec_sub_next(&s, &pos, &subs[0]) == 0);
			uint8_t *out = malloc(n);
			same(in, n, moat_rec_session_size(&s, subs), out,
			     moat_rec_session_encode(&s, subs, out));
			free(subs);
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
				CHECK(ids[i] >= 1 && ids[i] <= 268435455);
			}
			uint8_t *out = malloc(n);
			same(in, n, moat_rec_delivery_size(&d), out,
			     moat_rec_delivery_encode(&d, ids, out));
			free(ids);
		}
		break;
	}
	}
	CHECK(rc == 0 || rc == MOAT_EMALFORMED || rc == MOAT_EVERSION);
	return 0;
}
