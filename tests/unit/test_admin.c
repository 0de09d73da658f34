/*
 * test_admin.c - unit tests for the admin plane (src/admin/json.c, server.c).
 *
 * Covers: the JSON writer (nesting and commas, every scalar, escaping of
 * quotes, controls, DEL, C1 controls, U+2028/9 and ill-formed UTF-8, misuse
 * and the sticky error, the size cap, allocation failure outside ASan
 * builds); the request parser (good requests, parameters decoded with %XX
 * and '+', incomplete heads, every refusal class, the bounds); the router
 * (exact and wildcard paths, decoded tails, 404 and 405 with Allow); and a
 * live server on a temporary socket: 200/404/405/400/408/409 answers, text
 * bodies, a malformed handler document, peer credentials in the request,
 * the concurrency limit (503), socket mode, a live socket refused, a stale
 * one replaced, a regular file refused, the socket unlinked on stop, and
 * (as root) a uid not allowed getting 403 and the refused() callback.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "admin/json.h"
#include "core/error.h"
#include "core/utf8.h"
#include "fault_alloc.h"

/* ---- JSON writer ---- */

static void test_json_nesting(void **state)
{
	struct moat_json j;

	(void)state;
	moat_json_init(&j, 0);
	moat_json_begin_object(&j);
	moat_json_kstring(&j, "name", "moat");
	moat_json_kint(&j, "neg", -42);
	moat_json_kuint(&j, "big", UINT64_MAX);
	moat_json_kbool(&j, "t", true);
	moat_json_key(&j, "n");
	moat_json_null(&j);
	moat_json_key(&j, "list");
	moat_json_begin_array(&j);
	moat_json_int(&j, 1);
	moat_json_begin_object(&j);
	moat_json_end_object(&j);
	moat_json_begin_array(&j);
	moat_json_end_array(&j);
	moat_json_string(&j, NULL);
	moat_json_double(&j, 1.5);
	moat_json_double(&j, NAN);
	moat_json_end_array(&j);
	moat_json_key(&j, "min");
	moat_json_int(&j, INT64_MIN);
	moat_json_end_object(&j);
	assert_int_equal(moat_json_finish(&j), 0);
	assert_string_equal(moat_json_data(&j, NULL),
			    "{\"name\":\"moat\",\"neg\":-42,\"big\":18446744073709551615,\"t\":true,"
			    "\"n\":null,\"list\":[1,{},[],null,1.5,null],"
			    "\"min\":-9223372036854775808}");
	moat_json_reset(&j);
	assert_int_equal(moat_json_finish(&j), MOAT_EINVAL); /* empty */
	moat_json_string(&j, "x");
	assert_int_equal(moat_json_finish(&j), 0);
	assert_string_equal(moat_json_data(&j, NULL), "\"x\"");
	moat_json_free(&j);
	moat_json_free(NULL);
}

static void check_escaped(const char *in, size_t n, const char *want)
{
	struct moat_json j;
	size_t len;
	const char *out;

	moat_json_init(&j, 0);
	moat_json_string_n(&j, in, n);
	assert_int_equal(moat_json_finish(&j), 0);
	out = moat_json_data(&j, &len);
	assert_string_equal(out, want);
	assert_int_equal(moat_utf8_check((const uint8_t *)out, len, 0), MOAT_UTF8_OK);
	moat_json_free(&j);
}

static void test_json_escaping(void **state)
{
	(void)state;
	check_escaped("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"");
	check_escaped("\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\"");
	check_escaped("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"");
	check_escaped("a\0b", 3, "\"a\\u0000b\"");
	/* C1 control U+0085, U+2028, U+2029 escaped; é and an emoji kept. */
	check_escaped("\xc2\x85|\xe2\x80\xa8|\xe2\x80\xa9|\xc3\xa9|\xf0\x9f\x98\x80", 18,
		      "\"\\u0085|\\u2028|\\u2029|\xc3\xa9|\xf0\x9f\x98\x80\"");
	/* Ill-formed: a lone byte, a cut sequence, overlong, a surrogate, > U+10FFFF. */
	check_escaped("\xff", 1, "\"\\u00ff\"");
	check_escaped("\xe2\x82", 2, "\"\\u00e2\\u0082\"");
	check_escaped("\xc0\xaf", 2, "\"\\u00c0\\u00af\"");
	check_escaped("\xed\xa0\x80", 3, "\"\\u00ed\\u00a0\\u0080\"");
	check_escaped("\xf4\x90\x80\x80", 4, "\"\\u00f4\\u0090\\u0080\\u0080\"");
	check_escaped("", 0, "\"\"");
	/* Keys are escaped the same way. */
	{
		struct moat_json j;

		moat_json_init(&j, 0);
		moat_json_begin_object(&j);
		moat_json_kstring(&j, "k\"\n", "v");
		moat_json_end_object(&j);
		assert_string_equal(moat_json_data(&j, NULL), "{\"k\\\"\\n\":\"v\"}");
		moat_json_free(&j);
	}
}

static void test_json_misuse(void **state)
{
	struct moat_json j;
	size_t len;
	int i;

	(void)state;
	moat_json_init(&j, 0);
	moat_json_begin_object(&j);
	moat_json_int(&j, 1); /* a value without its key */
	assert_int_equal(j.err, MOAT_EINVAL);
	moat_json_data(&j, &len);
	moat_json_kint(&j, "a", 1); /* no-op now */
	moat_json_end_object(&j);
	assert_int_equal(j.len, len);
	assert_int_equal(moat_json_finish(&j), MOAT_EINVAL);

	moat_json_reset(&j);
	moat_json_begin_array(&j);
	moat_json_key(&j, "k"); /* a key in an array */
	assert_int_equal(moat_json_finish(&j), MOAT_EINVAL);

	moat_json_reset(&j);
	moat_json_begin_object(&j);
	moat_json_key(&j, "a");
	moat_json_key(&j, "b"); /* two keys */
	assert_int_equal(j.err, MOAT_EINVAL);

	moat_json_reset(&j);
	moat_json_begin_object(&j);
	moat_json_key(&j, "a");
	moat_json_end_object(&j); /* a key without its value */
	assert_int_equal(j.err, MOAT_EINVAL);

	moat_json_reset(&j);
	moat_json_begin_object(&j);
	moat_json_end_array(&j); /* mismatched */
	assert_int_equal(j.err, MOAT_EINVAL);

	moat_json_reset(&j);
	moat_json_end_object(&j); /* nothing open */
	assert_int_equal(j.err, MOAT_EINVAL);

	moat_json_reset(&j);
	moat_json_int(&j, 1);
	moat_json_int(&j, 2); /* two top-level values */
	assert_int_equal(j.err, MOAT_EINVAL);

	moat_json_reset(&j);
	moat_json_begin_array(&j); /* unfinished */
	assert_int_equal(moat_json_finish(&j), MOAT_EINVAL);

	moat_json_reset(&j);
	for (i = 0; i < MOAT_JSON_MAX_DEPTH; i++)
		moat_json_begin_array(&j);
	assert_int_equal(j.err, 0);
	moat_json_begin_array(&j); /* too deep */
	assert_int_equal(j.err, MOAT_EINVAL);

	moat_json_reset(&j);
	moat_json_begin_object(&j);
	moat_json_raw(&j, "x", 1); /* raw inside a document */
	assert_int_equal(j.err, MOAT_EINVAL);

	moat_json_reset(&j);
	moat_json_raw(&j, "a 1\n", 4);
	moat_json_raw(&j, "b 2\n", 4);
	assert_int_equal(moat_json_finish(&j), 0);
	assert_string_equal(moat_json_data(&j, NULL), "a 1\nb 2\n");
	moat_json_free(&j);
}

static void test_json_raw_value(void **state)
{
	struct moat_json j;

	(void)state;
	moat_json_init(&j, 0);
	moat_json_begin_object(&j);
	moat_json_key(&j, "events");
	moat_json_begin_array(&j);
	moat_json_raw_value(&j, "{\"a\":1}", 7);
	moat_json_raw_value(&j, "[2,3]", 5);
	moat_json_raw_value(&j, "\"s\"", 3);
	moat_json_end_array(&j);
	moat_json_key(&j, "one");
	moat_json_raw_value(&j, "{}", 2);
	moat_json_kint(&j, "n", 4);
	moat_json_end_object(&j);
	assert_int_equal(moat_json_finish(&j), 0);
	assert_string_equal(moat_json_data(&j, NULL),
			    "{\"events\":[{\"a\":1},[2,3],\"s\"],\"one\":{},\"n\":4}");

	moat_json_reset(&j); /* the document itself */
	moat_json_raw_value(&j, "[]", 2);
	assert_int_equal(moat_json_finish(&j), 0);
	assert_string_equal(moat_json_data(&j, NULL), "[]");

	moat_json_reset(&j); /* a value where a key is due */
	moat_json_begin_object(&j);
	moat_json_raw_value(&j, "1", 1);
	assert_int_equal(j.err, MOAT_EINVAL);

	moat_json_reset(&j); /* empty */
	moat_json_begin_array(&j);
	moat_json_raw_value(&j, "", 0);
	assert_int_equal(j.err, MOAT_EINVAL);
	moat_json_free(&j);
}

static void test_json_cap(void **state)
{
	struct moat_json j;
	char big[100];

	(void)state;
	memset(big, 'x', sizeof(big));
	moat_json_init(&j, 64);
	moat_json_begin_array(&j);
	moat_json_string_n(&j, big, 40);
	assert_int_equal(j.err, 0);
	moat_json_string_n(&j, big, 40);
	assert_int_equal(j.err, MOAT_ETOOBIG);
	assert_true(j.len <= 64);
	moat_json_end_array(&j);
	assert_int_equal(moat_json_finish(&j), MOAT_ETOOBIG);
	moat_json_free(&j);
}

static void test_json_oom(void **state)
{
	struct moat_json j;
	long budget;

	(void)state;
	if (!ALLOC_FAULTS)
		skip();
	for (budget = 0; budget < 4; budget++) {
		int i;

		moat_json_init(&j, 0);
		alloc_budget = budget;
		moat_json_begin_array(&j);
		for (i = 0; i < 2000; i++)
			moat_json_string(&j, "some text to fill the buffer");
		moat_json_end_array(&j);
		alloc_budget = -1;
		assert_int_equal(moat_json_finish(&j), MOAT_ENOMEM);
		moat_json_free(&j);
	}
}

/* ---- the parser ---- */

static struct moat_admin_req req;

static int parse(const char *s)
{
	return moat_admin_parse_request(s, strlen(s), 0, &req);
}

static void test_parse_good(void **state)
{
	const char *r = "GET /v1/status HTTP/1.1\r\nHost: moat\r\nUser-Agent: x\r\n\r\n";

	(void)state;
	assert_int_equal(parse(r), 200);
	assert_string_equal(req.method, "GET");
	assert_string_equal(req.path, "/v1/status");
	assert_string_equal(req.query, "");
	assert_int_equal(req.nparams, 0);
	assert_int_equal(req.head_len, strlen(r));
	assert_null(moat_admin_param(&req, "x"));

	assert_int_equal(parse("POST /v1/bans?address=10.0.0.1&reason=a+b%20c%2B%26&flag&empty=&"
			       "utf=%C3%A9 HTTP/1.1\r\nhOsT:   moat  \r\nContent-Length: 00\r\n"
			       "X-Empty:\r\n\r\n"),
			 200);
	assert_string_equal(req.method, "POST");
	assert_string_equal(req.path, "/v1/bans");
	assert_int_equal(req.nparams, 5);
	assert_string_equal(moat_admin_param(&req, "address"), "10.0.0.1");
	assert_string_equal(moat_admin_param(&req, "reason"), "a b c+&");
	assert_string_equal(moat_admin_param(&req, "flag"), "");
	assert_string_equal(moat_admin_param(&req, "empty"), "");
	assert_string_equal(moat_admin_param(&req, "utf"), "\xc3\xa9");
	assert_null(moat_admin_param(&req, "nope"));

	/* A name is decoded too; the path keeps its escapes. */
	assert_int_equal(parse("DELETE /v1/a%20b?a%5Fb=1 HTTP/1.1\r\nHost: m\r\n\r\n"), 200);
	assert_string_equal(req.path, "/v1/a%20b");
	assert_string_equal(moat_admin_param(&req, "a_b"), "1");
}

static void test_parse_incomplete(void **state)
{
	const char *r = "GET /v1/clients?x=1 HTTP/1.1\r\nHost: moat\r\n\r\n";
	size_t n = strlen(r), i;

	(void)state;
	for (i = 0; i < n; i++)
		assert_int_equal(moat_admin_parse_request(r, i, 0, &req), 0);
	assert_int_equal(moat_admin_parse_request(r, n, 0, &req), 200);
	/* A bad line is refused as soon as it is complete. */
	assert_int_equal(parse("GET / HTTP/1.1\r\n Host: folded\r\n"), 400);
	assert_int_equal(moat_admin_parse_request("GET / HTTP/1.1\r\nHo\0st", 20, 0, &req), 400);
}

struct refusal {
	const char *req;
	int status;
};

static void test_parse_refusals(void **state)
{
	static const struct refusal t[] = {
		{"GET / HTTP/1.1\nHost: m\r\n\r\n", 400},            /* bare LF */
		{"GET / HTTP/1.1\r\nHost: m\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: m\r\n\n", 400},
		{"GET / HTTP/1.1\r\nHost: m\rx\r\n\r\n", 400},       /* bare CR */
		{"GET / HTTP/1.1\r\n Host: m\r\n\r\n", 400},         /* obs-fold */
		{"GET / HTTP/1.1\r\nHost: m\r\n\tx\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost : m\r\n\r\n", 400},         /* space before colon */
		{"GET / HTTP/1.1\r\n: m\r\n\r\n", 400},              /* empty name */
		{"GET / HTTP/1.1\r\nHost m\r\n\r\n", 400},           /* no colon */
		{"GET / HTTP/1.1\r\nHost: a\x01" "b\r\n\r\n", 400},  /* control in a value */
		{"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", 400},      /* DEL */
		{"GET / HTTP/1.1\r\n\r\n", 400},                     /* no Host */
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 5\r\n\r\n", 413},
		{"POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		 400},
		{"POST / HTTP/1.1\r\nHost: m\r\nContent-Length: x\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: m\r\nContent-Length: -1\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: m\r\nContent-Length:\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: m\r\n\r\nextra", 400},     /* bytes after the head */
		{"GET / HTTP/1.0\r\nHost: m\r\n\r\n", 505},
		{"GET / HTTP/2.0\r\nHost: m\r\n\r\n", 505},
		{"GET / http/1.1\r\nHost: m\r\n\r\n", 400},
		{"GET / HTTP/1.1 \r\nHost: m\r\n\r\n", 400},
		{"GET /\r\nHost: m\r\n\r\n", 400},                   /* HTTP/0.9 */
		{"GET  / HTTP/1.1\r\nHost: m\r\n\r\n", 400},         /* empty target */
		{" GET / HTTP/1.1\r\nHost: m\r\n\r\n", 400},         /* empty method */
		{"G(T / HTTP/1.1\r\nHost: m\r\n\r\n", 400},
		{"GETGETGETGETGETGETGET / HTTP/1.1\r\nHost: m\r\n\r\n", 400},
		{"GET http://m/ HTTP/1.1\r\nHost: m\r\n\r\n", 400},  /* absolute form */
		{"GET * HTTP/1.1\r\nHost: m\r\n\r\n", 400},
		{"GET /a#b HTTP/1.1\r\nHost: m\r\n\r\n", 400},
		{"GET /a\"b HTTP/1.1\r\nHost: m\r\n\r\n", 400},
		{"GET /a\xc3\xa9 HTTP/1.1\r\nHost: m\r\n\r\n", 400}, /* raw non-ASCII */
		{"GET /%4 HTTP/1.1\r\nHost: m\r\n\r\n", 400},
		{"GET /%zz HTTP/1.1\r\nHost: m\r\n\r\n", 400},
		{"GET /?a=%00 HTTP/1.1\r\nHost: m\r\n\r\n", 400},    /* a decoded NUL */
		{"GET /?a=1&a=2 HTTP/1.1\r\nHost: m\r\n\r\n", 400},  /* given twice */
		{"GET /?a=1&a HTTP/1.1\r\nHost: m\r\n\r\n", 400},
		{"GET /?a%3D=1&a%3d=2 HTTP/1.1\r\nHost: m\r\n\r\n", 400},
		{"GET /?=1 HTTP/1.1\r\nHost: m\r\n\r\n", 400},       /* empty name */
		{"\r\nGET / HTTP/1.1\r\nHost: m\r\n\r\n", 400},      /* empty request line */
		{"", 0},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int rc = parse(t[i].req);

		if (rc != t[i].status)
			print_error("request %zu: %d, want %d\n", i, rc, t[i].status);
		assert_int_equal(rc, t[i].status);
		if (rc)
			assert_non_null(req.why);
	}
	/* A NUL byte (strlen would stop at it). */
	assert_int_equal(moat_admin_parse_request("GET / HTTP/1.1\r\nHost: m\0\r\n\r\n", 27, 0,
						  &req),
			 400);
}

static void test_parse_bounds(void **state)
{
	char *buf = malloc(MOAT_ADMIN_HEAD_LIMIT + 100);
	size_t n;
	int i;

	(void)state;
	assert_non_null(buf);
	/* 32 parameters pass, 33 do not. */
	n = (size_t)sprintf(buf, "GET /?");
	for (i = 0; i < MOAT_ADMIN_MAX_PARAMS; i++)
		n += (size_t)sprintf(buf + n, "p%d=%d&", i, i);
	sprintf(buf + n, " HTTP/1.1\r\nHost: m\r\n\r\n");
	assert_int_equal(parse(buf), 200);
	assert_int_equal(req.nparams, MOAT_ADMIN_MAX_PARAMS);
	sprintf(buf + n, "x=1 HTTP/1.1\r\nHost: m\r\n\r\n");
	assert_int_equal(parse(buf), 400);

	/* A target of exactly MOAT_ADMIN_TARGET_MAX bytes, then one more. */
	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', MOAT_ADMIN_TARGET_MAX - 1);
	strcpy(buf + 4 + MOAT_ADMIN_TARGET_MAX, " HTTP/1.1\r\nHost: m\r\n\r\n");
	assert_int_equal(parse(buf), 200);
	assert_int_equal(strlen(req.path), MOAT_ADMIN_TARGET_MAX);
	/* All of it one big query parameter, decoded. */
	buf[5] = '?';
	buf[6] = 'q';
	buf[7] = '=';
	assert_int_equal(parse(buf), 200);
	assert_int_equal(strlen(moat_admin_param(&req, "q")), MOAT_ADMIN_TARGET_MAX - 4);
	memset(buf + 5, 'a', MOAT_ADMIN_TARGET_MAX);
	strcpy(buf + 5 + MOAT_ADMIN_TARGET_MAX, " HTTP/1.1\r\nHost: m\r\n\r\n");
	assert_int_equal(parse(buf), 414);
	/* Refused before the line ends, too. */
	memset(buf + 5, 'a', 4200);
	assert_int_equal(moat_admin_parse_request(buf, 5 + 4200, 0, &req), 414);

	/* The head bound: 431 once max bytes hold no blank line. */
	n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: m\r\n");
	while (n < 300)
		n += (size_t)sprintf(buf + n, "X-Pad: 0123456789\r\n");
	assert_int_equal(moat_admin_parse_request(buf, n, 256, &req), 431);
	assert_int_equal(moat_admin_parse_request(buf, 200, 256, &req), 0);
	strcpy(buf + n, "\r\n");
	assert_int_equal(moat_admin_parse_request(buf, n + 2, n + 2, &req), 200);
	assert_int_equal(moat_admin_parse_request(buf, n + 2, n + 1, &req), 431);
	/* max_head above the limit is the limit. */
	memset(buf, 'a', MOAT_ADMIN_HEAD_LIMIT + 100);
	memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(moat_admin_parse_request(buf, MOAT_ADMIN_HEAD_LIMIT + 100, SIZE_MAX, &req),
			 431);
	free(buf);
}

/* ---- routing ---- */

static int h_dummy(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	(void)ctx, (void)r, (void)out;
	return 200;
}

static int h_other(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	(void)ctx, (void)r, (void)out;
	return 201;
}

static const struct moat_admin_route rtable[] = {
	{"GET", "/v1/status", h_dummy},
	{"GET", "/v1/clients", h_dummy},
	{"GET", "/v1/clients/*", h_other},
	{"DELETE", "/v1/clients/*", h_dummy},
	{"POST", "/v1/bans", h_dummy},
	{"DELETE", "/v1/bans", h_dummy},
	{"GET", "/v1/bans", h_dummy},
};

static int route(const char *method_path, moat_admin_handler *fn, char *allow)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%s HTTP/1.1\r\nHost: m\r\n\r\n", method_path);
	assert_int_equal(parse(buf), 200);
	return moat_admin_route(rtable, sizeof(rtable) / sizeof(rtable[0]), &req, fn, allow, 128);
}

static void test_route(void **state)
{
	moat_admin_handler fn = NULL;
	char allow[128];

	(void)state;
	assert_int_equal(route("GET /v1/status", &fn, allow), 200);
	assert_ptr_equal(fn, h_dummy);
	assert_null(req.tail);
	assert_int_equal(route("GET /v1/status?x=1", &fn, allow), 200);
	assert_int_equal(route("GET /v1/clients/c%2F1+x", &fn, allow), 200);
	assert_ptr_equal(fn, h_other);
	assert_string_equal(req.tail, "c/1+x"); /* '+' is a space only in a query */
	assert_int_equal(route("DELETE /v1/clients/abc", &fn, allow), 200);
	assert_ptr_equal(fn, h_dummy);
	assert_string_equal(req.tail, "abc");
	assert_int_equal(route("GET /v1/clients/", &fn, allow), 404);
	assert_int_equal(route("GET /v1/clients/a/b", &fn, allow), 404);
	assert_int_equal(route("GET /v1/statu", &fn, allow), 404);
	assert_int_equal(route("GET /v1/status/", &fn, allow), 404);
	assert_int_equal(route("GET /", &fn, allow), 404);
	assert_int_equal(route("GET /v1/clients/%00", &fn, allow), 400);
	assert_int_equal(route("POST /v1/status", &fn, allow), 405);
	assert_string_equal(allow, "GET");
	assert_int_equal(route("PUT /v1/bans", &fn, allow), 405);
	assert_string_equal(allow, "POST, DELETE, GET");
	assert_int_equal(route("POST /v1/clients/x", &fn, allow), 405);
	assert_string_equal(allow, "GET, DELETE");
	assert_string_equal(moat_admin_reason(404), "Not Found");
	assert_string_equal(moat_admin_reason(999), "Unknown");
}

/* ---- a live server ---- */

struct live {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool release;
	atomic_int refused;
	char refused_who[128];
};

static struct live live = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, ""};

static int h_status(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	(void)ctx;
	moat_json_begin_object(out);
	moat_json_kbool(out, "ok", true);
	moat_json_kstring(out, "who", r->who);
	moat_json_kint(out, "uid", (int64_t)r->uid);
	moat_json_kstring(out, "x", moat_admin_param(r, "x"));
	moat_json_end_object(out);
	return 200;
}

static int h_client(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	(void)ctx;
	if (strcmp(r->tail, "nobody") == 0)
		return 404; /* the server writes the body */
	moat_json_begin_object(out);
	moat_json_kstring(out, "client_id", r->tail);
	moat_json_end_object(out);
	return 200;
}

static int h_conflict(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	(void)ctx, (void)r, (void)out;
	return 409;
}

static int h_broken(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	(void)ctx, (void)r;
	moat_json_begin_object(out); /* never ended */
	return 200;
}

static int h_nocontent(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	(void)ctx, (void)r;
	moat_json_string(out, "dropped");
	return 204;
}

static int h_empty_ok(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	(void)ctx, (void)r, (void)out;
	return 200;
}

static int h_metrics(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	(void)ctx, (void)r;
	moat_json_raw(out, "moat_up 1\n", 10);
	return 200 | MOAT_ADMIN_TEXT;
}

static int h_slow(void *ctx, const struct moat_admin_req *r, struct moat_json *out)
{
	struct live *l = ctx;

	(void)r;
	pthread_mutex_lock(&l->mu);
	while (!l->release)
		pthread_cond_wait(&l->cv, &l->mu);
	pthread_mutex_unlock(&l->mu);
	moat_json_begin_object(out);
	moat_json_kbool(out, "slow", true);
	moat_json_end_object(out);
	return 200;
}

static void on_refused(void *ctx, const char *who, const char *why)
{
	struct live *l = ctx;

	(void)why;
	snprintf(l->refused_who, sizeof(l->refused_who), "%s", who);
	atomic_fetch_add(&l->refused, 1);
}

static const struct moat_admin_route live_routes[] = {
	{"GET", "/v1/status", h_status},
	{"GET", "/v1/clients/*", h_client},
	{"POST", "/v1/conflict", h_conflict},
	{"GET", "/v1/broken", h_broken},
	{"GET", "/metrics", h_metrics},
	{"POST", "/v1/slow", h_slow},
	{"POST", "/v1/nocontent", h_nocontent},
	{"PUT", "/v1/empty", h_empty_ok},
};

static char sock_path[108];

static void make_sock_path(void)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/moat-test-admin-%ld.sock", (long)getpid());
	unlink(sock_path);
}

static int start(struct moat_admin **a, unsigned max_conc, unsigned timeout_ms, mode_t mode)
{
	struct moat_admin_conf c = {0};
	char err[256] = "";
	int rc;

	c.socket_path = sock_path;
	c.max_concurrent = max_conc;
	c.timeout_ms = timeout_ms;
	c.socket_mode = mode;
	c.refused = on_refused;
	rc = moat_admin_start(&c, live_routes, sizeof(live_routes) / sizeof(live_routes[0]), &live,
			      a, err, sizeof(err));
	if (rc)
		print_error("start: %s\n", err);
	return rc;
}

static int dial(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	strcpy(sa.sun_path, sock_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Reads to EOF into out[0..cap); returns the HTTP status (0 if none). */
static int read_answer(int fd, char *out, size_t cap)
{
	size_t len = 0;
	ssize_t n;

	while (len + 1 < cap && (n = read(fd, out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fd);
	if (len < 12 || strncmp(out, "HTTP/1.1 ", 9) != 0)
		return 0;
	return atoi(out + 9);
}

/*
 * Sends raw, returns the status; the answer (head and body) in out. The send
 * may fail (EPIPE) when the server answers before reading and closes (503
 * from the accept thread): its answer is still there to read.
 */
static int exchange(const char *raw, size_t n, char *out, size_t cap)
{
	int fd = dial();
	ssize_t sent = send(fd, raw, n, MSG_NOSIGNAL);

	assert_true(sent == (ssize_t)n || sent < 0);
	return read_answer(fd, out, cap);
}

static int get(const char *method, const char *target, char *out, size_t cap)
{
	char raw[1024];
	int n = snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nHost: moat\r\n\r\n", method, target);

	return exchange(raw, (size_t)n, out, cap);
}

static const char *body_of(const char *answer)
{
	const char *b = strstr(answer, "\r\n\r\n");

	assert_non_null(b);
	return b + 4;
}

static void test_live_basic(void **state)
{
	struct moat_admin *a = NULL;
	char out[4096], want[256];
	struct stat st;

	(void)state;
	make_sock_path();
	assert_int_equal(start(&a, 0, 0, 0), 0);
	assert_int_equal(lstat(sock_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);

	assert_int_equal(get("GET", "/v1/status?x=a%20b", out, sizeof(out)), 200);
	assert_non_null(strstr(out, "\r\nContent-Type: application/json\r\n"));
	assert_non_null(strstr(out, "\r\nConnection: close\r\n"));
	snprintf(want, sizeof(want), "Content-Length: %zu\r\n", strlen(body_of(out)));
	assert_non_null(strstr(out, want));
	snprintf(want, sizeof(want),
		 "{\"ok\":true,\"who\":\"uid=%d gid=%d pid=%d\",\"uid\":%d,\"x\":\"a b\"}",
		 (int)getuid(), (int)getgid(), (int)getpid(), (int)getuid());
	assert_string_equal(body_of(out), want);

	assert_int_equal(get("GET", "/v1/clients/dev%2F1", out, sizeof(out)), 200);
	assert_string_equal(body_of(out), "{\"client_id\":\"dev/1\"}");
	assert_int_equal(get("GET", "/v1/clients/nobody", out, sizeof(out)), 404);
	assert_string_equal(body_of(out), "{\"error\":\"not found\"}");
	assert_int_equal(get("GET", "/v1/nothing", out, sizeof(out)), 404);
	assert_string_equal(body_of(out), "{\"error\":\"not found\"}");
	assert_int_equal(get("DELETE", "/v1/status", out, sizeof(out)), 405);
	assert_non_null(strstr(out, "\r\nAllow: GET\r\n"));
	assert_int_equal(get("POST", "/v1/conflict", out, sizeof(out)), 409);
	assert_string_equal(body_of(out), "{\"error\":\"conflict\"}");
	assert_int_equal(get("GET", "/v1/broken", out, sizeof(out)), 500);
	assert_non_null(strstr(body_of(out), "malformed response"));
	assert_int_equal(get("POST", "/v1/nocontent", out, sizeof(out)), 204);
	assert_null(strstr(out, "Content-Length"));
	assert_string_equal(body_of(out), "");
	assert_int_equal(get("PUT", "/v1/empty", out, sizeof(out)), 200);
	assert_string_equal(body_of(out), "{}");
	assert_int_equal(get("GET", "/metrics", out, sizeof(out)), 200);
	assert_non_null(strstr(out, "\r\nContent-Type: text/plain"));
	assert_string_equal(body_of(out), "moat_up 1\n");
	assert_int_equal(get("GET", "/v1/status?x=1&x=2", out, sizeof(out)), 400);
	assert_non_null(strstr(body_of(out), "given twice"));
	assert_int_equal(exchange("GET / HTTP/1.1\n\n", 16, out, sizeof(out)), 400);
	{
		const char *r = "POST /v1/conflict HTTP/1.1\r\nHost: m\r\nContent-Length: 3\r\n\r\nabc";

		assert_int_equal(exchange(r, strlen(r), out, sizeof(out)), 413);
	}
	/* A request in one-byte writes. */
	{
		const char *r = "GET /v1/status HTTP/1.1\r\nHost: m\r\n\r\n";
		int fd = dial();
		size_t i;

		for (i = 0; r[i]; i++)
			assert_int_equal(send(fd, r + i, 1, MSG_NOSIGNAL), 1);
		assert_int_equal(read_answer(fd, out, sizeof(out)), 200);
	}
	/* A client that goes away without a word. */
	close(dial());
	assert_int_equal(get("GET", "/v1/status", out, sizeof(out)), 200);

	moat_admin_stop(a);
	assert_int_equal(lstat(sock_path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_live_timeout(void **state)
{
	struct moat_admin *a = NULL;
	struct timespec t0, t1;
	char out[1024];
	int fd;

	(void)state;
	make_sock_path();
	assert_int_equal(start(&a, 0, 200, 0660), 0);
	{
		struct stat st;

		assert_int_equal(stat(sock_path, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0660);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = dial();
	assert_int_equal(send(fd, "GET / HTTP/1.1\r\n", 16, MSG_NOSIGNAL), 16);
	assert_int_equal(read_answer(fd, out, sizeof(out)), 408);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 2000);
	/* A slow drip is bound by the same deadline. */
	fd = dial();
	for (int i = 0; i < 6; i++) {
		if (send(fd, "X", 1, MSG_NOSIGNAL) != 1)
			break;
		usleep(50000);
	}
	assert_int_equal(read_answer(fd, out, sizeof(out)), 408);
	moat_admin_stop(a);
}

struct slow_call {
	pthread_t t;
	int status;
};

static void *slow_thread(void *arg)
{
	struct slow_call *s = arg;
	char out[1024];

	s->status = get("POST", "/v1/slow", out, sizeof(out));
	return NULL;
}

static void test_live_concurrency(void **state)
{
	struct moat_admin *a = NULL;
	struct slow_call s[2];
	char out[1024];
	int i, tries;

	(void)state;
	make_sock_path();
	live.release = false;
	assert_int_equal(start(&a, 2, 0, 0), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&s[i].t, NULL, slow_thread, &s[i]), 0);
	for (tries = 0; moat_admin_active(a) < 2 && tries < 500; tries++)
		usleep(10000);
	assert_int_equal(moat_admin_active(a), 2);
	/* Both slots taken: answered at once. */
	assert_int_equal(get("GET", "/v1/status", out, sizeof(out)), 503);
	assert_non_null(strstr(body_of(out), "too many"));
	pthread_mutex_lock(&live.mu);
	live.release = true;
	pthread_cond_broadcast(&live.cv);
	pthread_mutex_unlock(&live.mu);
	for (i = 0; i < 2; i++) {
		pthread_join(s[i].t, NULL);
		assert_int_equal(s[i].status, 200);
	}
	for (tries = 0; moat_admin_active(a) > 0 && tries < 500; tries++)
		usleep(10000);
	assert_int_equal(get("GET", "/v1/status", out, sizeof(out)), 200);
	moat_admin_stop(a);
}

static void test_live_socket_path(void **state)
{
	struct moat_admin *a = NULL, *b = NULL;
	struct moat_admin_conf c = {0};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char err[256], out[1024];
	struct stat st;
	int fd;

	(void)state;
	make_sock_path();
	c.socket_path = sock_path;

	/* In use by a live server. */
	assert_int_equal(start(&a, 0, 0, 0), 0);
	assert_int_equal(moat_admin_start(&c, live_routes, 1, &live, &b, err, sizeof(err)),
			 MOAT_EEXIST);
	assert_non_null(strstr(err, "in use by another moatd"));
	assert_int_equal(get("GET", "/v1/status", out, sizeof(out)), 200); /* untouched */
	moat_admin_stop(a);

	/* A stale socket (bound, never listening, its owner gone) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sa.sun_path, sock_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(lstat(sock_path, &st), 0);
	assert_int_equal(start(&a, 0, 0, 0), 0);
	assert_int_equal(get("GET", "/v1/status", out, sizeof(out)), 200);
	moat_admin_stop(a);

	/* A regular file is never replaced. */
	fd = open(sock_path, O_CREAT | O_WRONLY | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(moat_admin_start(&c, live_routes, 1, &live, &b, err, sizeof(err)),
			 MOAT_EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(lstat(sock_path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(sock_path);

	/* Bad arguments. */
	c.socket_path = "/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	assert_int_equal(moat_admin_start(&c, live_routes, 1, &live, &b, err, sizeof(err)),
			 MOAT_EINVAL);
	c.socket_path = "/nonexistent-dir/x.sock";
	assert_int_equal(moat_admin_start(&c, live_routes, 1, &live, &b, err, sizeof(err)),
			 MOAT_EIO);
	moat_admin_stop(NULL);
}

static void test_live_uid_refused(void **state)
{
	struct moat_admin *a = NULL;
	pid_t pid;
	int st;

	(void)state;
	if (geteuid() != 0)
		skip(); /* needs to become another user */
	make_sock_path();
	atomic_store(&live.refused, 0);
	assert_int_equal(start(&a, 0, 0, 0666), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char out[1024];
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		int fd;
		size_t len = 0;
		ssize_t n;

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		strcpy(sa.sun_path, sock_path);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
			_exit(11);
		while (len + 1 < sizeof(out) && (n = read(fd, out + len, sizeof(out) - 1 - len)) > 0)
			len += (size_t)n;
		out[len] = '\0';
		_exit(strncmp(out, "HTTP/1.1 403 ", 13) == 0 ? 0 : 12);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	moat_admin_stop(a);
	assert_int_equal(atomic_load(&live.refused), 1);
	assert_non_null(strstr(live.refused_who, "uid=65534 "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_nesting),
		cmocka_unit_test(test_json_escaping),
		cmocka_unit_test(test_json_misuse),
		cmocka_unit_test(test_json_raw_value),
		cmocka_unit_test(test_json_cap),
		cmocka_unit_test(test_json_oom),
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_incomplete),
		cmocka_unit_test(test_parse_refusals),
		cmocka_unit_test(test_parse_bounds),
		cmocka_unit_test(test_route),
		cmocka_unit_test(test_live_basic),
		cmocka_unit_test(test_live_timeout),
		cmocka_unit_test(test_live_concurrency),
		cmocka_unit_test(test_live_socket_path),
		cmocka_unit_test(test_live_uid_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
