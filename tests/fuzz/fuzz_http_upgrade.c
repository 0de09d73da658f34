/*
 * fuzz_http_upgrade.c - libFuzzer target: the HTTP upgrade parser of
 * src/net/http.c, alone.
 *
 * The first input byte configures the parse: bit 0 sets allowed origins,
 * bit 1 makes the peer a trusted proxy (with a list of trusted addresses),
 * bit 2 shrinks the header bound to 32..287 bytes (the second byte says
 * how much), bit 3 parses the rest as the server's answer to a request made
 * with the RFC 6455 sample key instead of as a request. The rest is the head.
 *
 * Checked:
 *   - the verdict is one the contract allows (request: 0, 101, 400, 403, 404,
 *     426, 431; answer: 0, 101, MOAT_EMALFORMED or a status 100..999);
 *   - it does not depend on the split: the bytes fed as growing prefixes in
 *     PRNG-sized steps (each an exactly-sized heap copy, so a read past the
 *     bytes given is caught) give no verdict before the final one, and the
 *     same verdict, p->end and results as the whole at once;
 *   - 431 only with at least the bound's bytes; a 101 ends in CRLF CRLF
 *     within the bound, with a 24-character key, a protocol of the two, a
 *     forwarded address only from a trusted peer and then one inet_pton
 *     reads; the head alone (buf[0..end)) gives the same 101;
 *   - every refusal has an answer, and a 101 for "mqtt" written with
 *     moat_http_write_101 is accepted by the client-side parser.
 */
#include <arpa/inet.h>

#include "fuzz_common.h"
#include "net/http.h"

#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="

static int parse_whole(const struct moat_http_policy *pol, bool response, const uint8_t *d,
		       size_t n, struct moat_http_parser *p)
{
	char *copy = (char *)fz_dup(d, n);
	int v;

	if (response)
		moat_http_response_init(p, SAMPLE_KEY);
	else
		moat_http_request_init(p, pol);
	v = moat_http_parse(p, copy, n);
	FZ_ASSERT(moat_http_parse(p, copy, n) == v); /* stays decided (or undecided) */
	free(copy);
	return v;
}

/* Growing prefixes; returns the last verdict, checking none came early. */
static int parse_split(const struct moat_http_policy *pol, bool response, const uint8_t *d,
		       size_t n, struct moat_http_parser *p, uint64_t seed)
{
	struct fz_rng rng = {seed};
	size_t have = 0;
	int v = 0;

	if (response)
		moat_http_response_init(p, SAMPLE_KEY);
	else
		moat_http_request_init(p, pol);
	while (have < n && v == 0) {
		size_t k = fz_chunk_size(&rng);
		char *copy;

		have = k > n - have ? n : have + k;
		copy = (char *)fz_dup(d, have);
		v = moat_http_parse(p, copy, have);
		free(copy);
	}
	return v;
}

static void check_request_101(const struct moat_http_parser *p, const uint8_t *d, size_t n,
			      bool trusted)
{
	uint8_t a[16];

	FZ_ASSERT(p->end >= 4 && p->end <= n && p->end <= p->max);
	FZ_ASSERT(memcmp(d + p->end - 4, "\r\n\r\n", 4) == 0);
	FZ_ASSERT(strlen(p->key) == MOAT_HTTP_KEY_LEN);
	FZ_ASSERT(strcmp(p->protocol, "mqtt") == 0 || strcmp(p->protocol, "mqttv3.1") == 0);
	if (p->forwarded[0]) {
		FZ_ASSERT(trusted);
		FZ_ASSERT(inet_pton(AF_INET, p->forwarded, a) == 1 ||
			  inet_pton(AF_INET6, p->forwarded, a) == 1);
	}
	/* What we would answer is what our client accepts. */
	if (strcmp(p->protocol, "mqtt") == 0) {
		struct moat_http_parser c;
		char out[512];
		int len = moat_http_write_101(out, sizeof(out), p->key, p->protocol);

		FZ_ASSERT(len > 0);
		moat_http_response_init(&c, p->key);
		FZ_ASSERT(moat_http_parse(&c, out, (size_t)len) == 101);
		FZ_ASSERT(c.end == (size_t)len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_http_policy pol = {0};
	struct moat_http_parser whole, split;
	bool response, trusted;
	size_t skip = 1;
	int v, v2;

	if (size < 1)
		return 0;
	if (data[0] & 1)
		pol.allowed_origins = "https://a.example, null,http://b.example:8080";
	trusted = data[0] & 2;
	if (trusted) {
		pol.trusted_proxies = "10.0.0.1, ::1,127.0.0.1";
		pol.peer_addr = "127.0.0.1";
	}
	if ((data[0] & 4) && size >= 2) {
		pol.max_bytes = 32 + (size_t)data[1];
		skip = 2;
	}
	response = data[0] & 8;
	data += skip, size -= skip;

	v = parse_whole(&pol, response, data, size, &whole);
	v2 = parse_split(&pol, response, data, size, &split, fz_hash(data, size));
	FZ_ASSERT(v == v2);
	FZ_ASSERT(whole.end == split.end);
	if (response) {
		FZ_ASSERT(v == 0 || v == 101 || v == MOAT_EMALFORMED || (v >= 100 && v <= 999));
		if (v == 101)
			FZ_ASSERT(whole.end >= 4 && memcmp(data + whole.end - 4, "\r\n\r\n", 4) == 0);
		return 0;
	}
	FZ_ASSERT(v == 0 || v == 101 || v == 400 || v == 403 || v == 404 || v == 426 || v == 431);
	if (v == 0)
		FZ_ASSERT(size < whole.max);
	if (v == 431)
		FZ_ASSERT(size >= whole.max);
	if (v == 101) {
		struct moat_http_parser head;

		check_request_101(&whole, data, size, trusted);
		FZ_ASSERT(strcmp(whole.key, split.key) == 0);
		FZ_ASSERT(strcmp(whole.forwarded, split.forwarded) == 0);
		FZ_ASSERT(strcmp(whole.protocol, split.protocol) == 0);
		FZ_ASSERT(parse_whole(&pol, false, data, whole.end, &head) == 101);
		FZ_ASSERT(strcmp(head.forwarded, whole.forwarded) == 0);
	} else if (v != 0) {
		char out[512];

		FZ_ASSERT(moat_http_write_refusal(out, sizeof(out), v) > 0);
	}
	return 0;
}
