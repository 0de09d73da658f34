/*
 * fuzz_decode_v5.c - libFuzzer target: a client-to-server stream in MQTT 5.0.
 *
 * The input is what a client sends a server once MQTT 5.0 is negotiated.
 * It is fed to a struct moat_mqtt_framer (1 MiB memory account, 64 KiB
 * maximum packet) in chunks whose sizes come from a PRNG seeded with a hash
 * of the input, through both moat_mqtt_framer_feed and space/commit. Every
 * frame is decoded with moat_mqtt_decode (from_client, version 5; a CONNECT
 * decodes as the version it names; strict_utf8 on when the top bit of the
 * input's hash is set). Checked (see fuzz_common.h):
 *   - no sanitizer report (each body is decoded from an exactly-sized copy);
 *   - a refusal has code < 0, a why, a reason >= 0x80 allowed in the packet
 *     that answers it; the stream stops at the first framer fault;
 *   - an accepted packet keeps the decoder's promises, re-encodes, decodes
 *     again to an equal packet and re-encodes to identical bytes;
 *   - after moat_mqtt_framer_free the account is back to 0.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t seed = fz_hash(data, size);
	struct moat_mqtt_decode_opts opts = {
		.version = 5,
		.from_client = true,
		.strict_utf8 = (seed >> 63) != 0,
	};

	fz_decode_stream(&opts, seed, data, size);
	return 0;
}
