/*
 * admin_clients.c - the admin API's view of connected clients:
 *
 *   GET /v1/clients[?limit=N][&username=U][&address=A]
 *   GET /v1/clients/<client id>
 *
 * Connections belong to their workers (internal.h), so the list is made by
 * asking every worker (worker_query): each adds its own connections to the
 * answer on its own thread, between two loop turns, and the admin thread
 * waits a bounded time. A worker that does not answer in time (a stuck
 * loop) makes the request fail with 503 rather than hang the admin API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "broker/internal.h"
#include "core/clock.h"
#include "core/error.h"

#define LIST_DEFAULT 10000
#define QUERY_MS 2000

struct listing {
	struct moat_json *o;
	const char *client_id;     /* one client (its details), or NULL: the list */
	const char *username, *address;
	size_t limit, shown, total;
	int64_t now_wall;
};

static const char *version_name(uint8_t v)
{
	return v == 5 ? "5.0" : v == 4 ? "3.1.1" : v == 3 ? "3.1" : "?";
}

static void subscriptions(struct moat_json *o, struct moat_session *s)
{
	struct sess_sub *ss;
	size_t pos = 0;

	moat_json_key(o, "subscriptions");
	moat_json_begin_array(o);
	while ((ss = moat_map_next(&s->subs, &pos, NULL, NULL))) {
		moat_json_begin_object(o);
		moat_json_key(o, "filter");
		moat_json_string_n(o, (const char *)ss->filter, ss->len);
		moat_json_kint(o, "qos", ss->opts & 3);
		if (ss->subid)
			moat_json_kuint(o, "subscription_id", ss->subid);
		moat_json_end_object(o);
	}
	moat_json_end_array(o);
}

static void client_entry(struct listing *l, struct moat_worker *w, struct moat_conn *c,
			 bool detail)
{
	const struct moat_tls_info *ti = c->tr->ops->tls(c->tr);
	struct moat_session *s = c->session;
	struct moat_json *o = l->o;

	moat_json_begin_object(o);
	moat_json_key(o, "client_id");
	moat_json_string_n(o, s->client_id, s->client_id_len);
	moat_json_kstring(o, "username", c->username);
	moat_json_kstring(o, "address", c->addr);
	moat_json_kuint(o, "port", c->listener->conf->port);
	moat_json_kstring(o, "protocol", version_name(c->version));
	moat_json_kstring(o, "transport", c->tr->ops->name);
	if (ti) {
		moat_json_kstring(o, "tls_version", ti->version);
		moat_json_kstring(o, "tls_cipher", ti->cipher);
		if (ti->subject[0])
			moat_json_kstring(o, "certificate_subject", ti->subject);
	}
	moat_json_kstring(o, "auth_method", auth_method_name(c->proven));
	moat_json_kint(o, "connected_since", c->connected_wall);
	moat_json_kint(o, "seconds_since_activity", (worker_now(w) - c->last_rx) / 1000);
	moat_json_kuint(o, "keepalive", c->keepalive);
	moat_json_kuint(o, "bytes_in", c->bytes_in);
	moat_json_kuint(o, "bytes_out", c->bytes_out);
	moat_json_kuint(o, "publish_in", c->pub_in);
	moat_json_kuint(o, "publish_out", c->pub_out);
	moat_json_kuint(o, "queued", s->queue.n);
	moat_json_kuint(o, "inflight", s->inflight.n);
	moat_json_kbool(o, "persistent", s->expiry != 0);
	if (w->b->sentinel) { /* 0..100: the sentinel's trust in its address and its client id */
		moat_json_kint(o, "trust_address", moat_sentinel_trust(w->b->sentinel, c->host, NULL));
		moat_json_kint(o, "trust_client_id",
			       moat_sentinel_trust(w->b->sentinel, NULL, s->client_id));
	}
	if (detail) {
		moat_json_key(o, "session_expiry");
		if (s->expiry == SESSION_NEVER_EXPIRES)
			moat_json_null(o);
		else
			moat_json_uint(o, s->expiry);
		if (ti && ti->psk_identity[0])
			moat_json_kstring(o, "psk_identity", ti->psk_identity);
		subscriptions(o, s);
	} else {
		moat_json_kuint(o, "subscriptions", s->subs.len);
	}
	moat_json_end_object(o);
}

static bool wanted(const struct listing *l, const struct moat_conn *c)
{
	const struct moat_session *s = c->session;

	if (c->state != C_ACTIVE || !s)
		return false;
	if (l->client_id && (strlen(l->client_id) != s->client_id_len ||
			     memcmp(l->client_id, s->client_id, s->client_id_len) != 0))
		return false;
	if (l->username && (!c->username || strcmp(l->username, c->username) != 0))
		return false;
	return !l->address || strcmp(l->address, c->host) == 0;
}

/* On each worker's thread, the query's lock held. */
static void list_worker(struct moat_worker *w, void *arg)
{
	struct listing *l = arg;

	for (struct moat_conn *c = w->conns; c; c = c->next) {
		if (!wanted(l, c))
			continue;
		l->total++;
		if (l->shown >= l->limit)
			continue;
		client_entry(l, w, c, l->client_id != NULL);
		l->shown++;
	}
}

static int query_failed(struct moat_json *o, int rc)
{
	moat_json_reset(o);
	moat_json_begin_object(o);
	moat_json_kstring(o, "error", rc == MOAT_EAGAIN ? "a worker did not answer in time"
							: "out of memory");
	moat_json_end_object(o);
	return 503;
}

int admin_clients(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	const char *limit = moat_admin_param(req, "limit");
	struct listing l = { .o = o, .limit = LIST_DEFAULT, .now_wall = moat_wall_s(),
			     .username = moat_admin_param(req, "username"),
			     .address = moat_admin_param(req, "address") };
	int rc;

	if (limit) {
		char *end;
		long long n = strtoll(limit, &end, 10);
		if (*end || n < 0 || n > 1000000) {
			moat_json_begin_object(o);
			moat_json_kstring(o, "error", "limit: 0 to 1000000");
			moat_json_end_object(o);
			return 400;
		}
		l.limit = (size_t)n;
	}
	moat_json_begin_object(o);
	moat_json_key(o, "clients");
	moat_json_begin_array(o);
	if ((rc = worker_query(b, list_worker, &l, QUERY_MS)) < 0)
		return query_failed(o, rc);
	moat_json_end_array(o);
	moat_json_kuint(o, "total", l.total);
	moat_json_kbool(o, "truncated", l.shown < l.total);
	moat_json_end_object(o);
	return 200;
}

int admin_client(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	struct listing l = { .o = o, .limit = 1, .client_id = req->tail, .now_wall = moat_wall_s() };
	int rc;

	if ((rc = worker_query(b, list_worker, &l, QUERY_MS)) < 0)
		return query_failed(o, rc);
	if (l.shown == 0) {
		moat_json_begin_object(o);
		moat_json_kstring(o, "error", "no client connected with that client id");
		moat_json_end_object(o);
		return 404;
	}
	return 200; /* list_worker wrote the one entry as the document */
}
