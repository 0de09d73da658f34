/*
 * fuzz_decode_client.c - libFuzzer target: a server-to-client byte stream.
 *
 * The first input byte picks the negotiated version, (byte & 0x7F) % 3 + 3
 * (so 3, 4 and 5 pick themselves), and its top bit turns strict_utf8 on. The
 * rest is what a server sends a client: it is framed in PRNG-sized chunks
 * (1 MiB account, 64 KiB maximum packet) and every frame is decoded with
 * from_client false. Checked, as in the server-side targets (fuzz_common.h):
 * no sanitizer report, well-formed faults, the decoder's promises on every
 * accepted packet (CONNACK, SUBACK and UNSUBACK reasons, Subscription
 * Identifiers in PUBLISH, no Session Expiry in DISCONNECT, ...), the
 * decode/encode/decode round trip with byte-identical re-encodings, and the
 * memory account back to 0 at the end.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_mqtt_decode_opts opts = {.from_client = false};

	if (size < 1)
		return 0;
	opts.version = (uint8_t)((data[0] & 0x7F) % 3 + 3);
	opts.strict_utf8 = (data[0] & 0x80) != 0;
	fz_decode_stream(&opts, fz_hash(data, size), data + 1, size - 1);
	return 0;
}
