/*
 * fuzz_admin_http.c - libFuzzer target: the admin API's request parser and
 * router (src/admin/server.c), and the JSON writer (src/admin/json.c) on
 * what they produce.
 *
 * The input is the bytes a client sent on the admin socket. Checked:
 *   - moat_admin_parse_request returns 0 (incomplete) or 200, or a refusal
 *     among 400, 413, 414, 431, 505 with a why;
 *   - a 200 consumed the whole input as the head, has a token method, a
 *     path starting with '/', at most MOAT_ADMIN_MAX_PARAMS parameters with
 *     non-empty, distinct names, and every string inside the request's
 *     storage; every proper prefix of it is incomplete (0);
 *   - a smaller head bound gives the same verdict when the input fits it;
 *   - the router answers 200 (with a tail exactly for a wildcard route),
 *     400, 404 or 405 (with an Allow list);
 *   - the request's strings written through the JSON writer make a
 *     complete document of well-formed UTF-8 with no raw control byte.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/json.h"
#include "core/error.h"
#include "core/utf8.h"

#include "fuzz_common.h"

static int h_none(void *ctx, const struct moat_admin_req *req, struct moat_json *out)
{
	(void)ctx, (void)req, (void)out;
	return 200;
}

static const struct moat_admin_route routes[] = {
	{"GET", "/v1/status", h_none},
	{"GET", "/v1/clients", h_none},
	{"GET", "/v1/clients/*", h_none},
	{"POST", "/v1/kick", h_none},
	{"POST", "/v1/bans", h_none},
	{"DELETE", "/v1/bans", h_none},
	{"GET", "/v1/bans", h_none},
	{"GET", "/metrics", h_none},
};

static void inside(const struct moat_admin_req *r, const char *s)
{
	FZ_ASSERT(s >= r->store && s + strlen(s) < r->store + sizeof(r->store));
}

static void check_json(const struct moat_admin_req *r)
{
	struct moat_json j;
	const char *out;
	size_t len, i;

	moat_json_init(&j, 0);
	moat_json_begin_object(&j);
	moat_json_kstring(&j, "method", r->method);
	moat_json_kstring(&j, "path", r->path);
	moat_json_kstring(&j, "tail", r->tail);
	moat_json_key(&j, "params");
	moat_json_begin_object(&j);
	for (i = 0; i < r->nparams; i++)
		moat_json_kstring(&j, r->params[i].name, r->params[i].value);
	moat_json_end_object(&j);
	moat_json_end_object(&j);
	FZ_ASSERT(moat_json_finish(&j) == 0);
	out = moat_json_data(&j, &len);
	FZ_ASSERT(moat_utf8_check((const uint8_t *)out, len, MOAT_UTF8_ALLOW_DISCOURAGED) ==
		  MOAT_UTF8_OK);
	for (i = 0; i < len; i++)
		FZ_ASSERT((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
	moat_json_free(&j);
}

static void check_accepted(struct moat_admin_req *r, const char *buf, size_t size)
{
	moat_admin_handler fn = NULL;
	char allow[128];
	size_t i, k;
	int rc;

	FZ_ASSERT(r->head_len == size);
	FZ_ASSERT(r->method[0] && strlen(r->method) <= MOAT_ADMIN_METHOD_MAX);
	for (i = 0; r->method[i]; i++)
		FZ_ASSERT(r->method[i] > 0x20 && r->method[i] < 0x7f);
	inside(r, r->path);
	FZ_ASSERT(r->path[0] == '/');
	FZ_ASSERT(r->nparams <= MOAT_ADMIN_MAX_PARAMS);
	for (i = 0; i < r->nparams; i++) {
		inside(r, r->params[i].name);
		inside(r, r->params[i].value);
		FZ_ASSERT(r->params[i].name[0] != '\0');
		FZ_ASSERT(moat_admin_param(r, r->params[i].name) == r->params[i].value);
		for (k = 0; k < i; k++)
			FZ_ASSERT(strcmp(r->params[i].name, r->params[k].name) != 0);
	}
	/* Every proper prefix is incomplete (checked at a few cuts). */
	{
		struct fz_rng rng = {fz_hash((const uint8_t *)buf, size)};
		struct moat_admin_req *p = malloc(sizeof(*p));

		FZ_ASSERT(p != NULL);
		for (k = 0; k < 4; k++) {
			size_t cut = (size_t)(fz_next(&rng) % size);
			char *copy = (char *)fz_dup((const uint8_t *)buf, cut);

			FZ_ASSERT(moat_admin_parse_request(copy, cut, 0, p) == 0);
			free(copy);
		}
		free(p);
	}
	rc = moat_admin_route(routes, sizeof(routes) / sizeof(routes[0]), r, &fn, allow,
			      sizeof(allow));
	FZ_ASSERT(rc == 200 || rc == 400 || rc == 404 || rc == 405);
	if (rc == 200) {
		size_t pl;

		FZ_ASSERT(fn == h_none);
		pl = strlen(r->path);
		FZ_ASSERT((r->tail != NULL) == (strncmp(r->path, "/v1/clients/", 12) == 0 && pl > 12));
		if (r->tail)
			inside(r, r->tail);
	}
	if (rc == 405)
		FZ_ASSERT(allow[0] != '\0');
	if (rc != 200)
		FZ_ASSERT(r->why != NULL);
	check_json(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct moat_admin_req req, req2;
	char *buf = (char *)fz_dup(data, size);
	int rc, rc2;

	rc = moat_admin_parse_request(buf, size, 0, &req);
	FZ_ASSERT(rc == 0 || rc == 200 || rc == 400 || rc == 413 || rc == 414 || rc == 431 ||
		  rc == 505);
	if (rc != 0 && rc != 200)
		FZ_ASSERT(req.why != NULL);
	if (rc == 200)
		check_accepted(&req, buf, size);
	/* A smaller bound changes nothing for an input within it. */
	if (size < 512) {
		rc2 = moat_admin_parse_request(buf, size, 512, &req2);
		FZ_ASSERT(rc2 == rc);
	} else if (size > 512) {
		rc2 = moat_admin_parse_request(buf, size, 512, &req2);
		FZ_ASSERT(rc2 != 200);
	}
	free(buf);
	return 0;
}
