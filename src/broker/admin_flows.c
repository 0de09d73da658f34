/*
 * admin_flows.c - the data-flow map: which clients publish to which topics,
 * which clients' subscriptions receive them, and how much (NIST CSF ID.AM-3:
 * organizational communication and data flows are mapped).
 *
 *   GET /v1/flows[?format=dot]        (moat ctl flows [--format dot])
 *
 * Made on demand from what the broker keeps anyway: each connection counts
 * its accepted PUBLISHes per topic (guard_topic, struct topic_use), and each
 * session holds its filters. Every worker adds its connected publishers and
 * its sessions (worker_query); the admin thread then joins them: an edge
 * publisher -> topic -> subscriber for each subscription filter that
 * matches the topic. Publishers that are gone are not in the map (their
 * counts went with their connection); subscribers are, while their session
 * lasts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "broker/internal.h"
#include "core/clock.h"
#include "core/error.h"
#include "mqtt/topic.h"

#define QUERY_MS 2000
#define MAX_EDGES 20000
#define MAX_NODES 100000

struct ptopic {
	char *client_id, *topic;
	uint64_t messages;
	double seconds;   /* since the first publish to it */
};

struct sfilter {
	char *client_id, *filter; /* filter as subscribed ($share/... kept) */
	const char *match;        /* the part matched against topics */
	size_t match_len;
	bool online;
	uint8_t qos;
};

struct flows {
	struct ptopic *pub;
	size_t npub, pubcap;
	struct sfilter *sub;
	size_t nsub, subcap;
	bool full;
};

static char *dup_n(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 64;
	void *nv = realloc(*v, nc * size);
	if (!nv)
		return false;
	*v = nv;
	*cap = nc;
	return true;
}

static void add_publisher(struct flows *f, struct moat_worker *w, struct moat_conn *c)
{
	struct topic_use *u;
	size_t pos = 0;

	while ((u = moat_map_next(&c->topics, &pos, NULL, NULL))) {
		if (!u->published)
			continue;
		if (f->npub >= MAX_NODES || !grow((void **)&f->pub, &f->pubcap, f->npub, sizeof(*f->pub))) {
			f->full = true;
			return;
		}
		struct ptopic *p = &f->pub[f->npub];
		p->client_id = dup_n(c->session->client_id, c->session->client_id_len);
		p->topic = dup_n(u->text, u->len);
		p->messages = u->published;
		p->seconds = (double)(worker_now(w) - u->since) / 1000.0;
		if (!p->client_id || !p->topic) {
			free(p->client_id);
			free(p->topic);
			f->full = true;
			return;
		}
		f->npub++;
	}
}

static void add_subscriber(struct flows *f, struct moat_session *s)
{
	struct sess_sub *ss;
	size_t pos = 0;

	while ((ss = moat_map_next(&s->subs, &pos, NULL, NULL))) {
		struct moat_slice g, inner = { ss->filter, ss->len };
		if (f->nsub >= MAX_NODES || !grow((void **)&f->sub, &f->subcap, f->nsub, sizeof(*f->sub))) {
			f->full = true;
			return;
		}
		struct sfilter *x = &f->sub[f->nsub];
		x->client_id = dup_n(s->client_id, s->client_id_len);
		x->filter = dup_n((const char *)ss->filter, ss->len);
		if (!x->client_id || !x->filter) {
			free(x->client_id);
			free(x->filter);
			f->full = true;
			return;
		}
		if (moat_mqtt_share_split(ss->filter, ss->len, &g, &inner) != 1)
			inner = (struct moat_slice){ ss->filter, ss->len };
		x->match = x->filter + (inner.p - ss->filter);
		x->match_len = inner.len;
		x->online = atomic_load(&s->online);
		x->qos = ss->opts & 3;
		f->nsub++;
	}
}

/* On each worker, the query's lock held. */
static void gather(struct moat_worker *w, void *arg)
{
	struct flows *f = arg;
	struct moat_session *s;
	size_t pos = 0;

	for (struct moat_conn *c = w->conns; c; c = c->next)
		if (c->state == C_ACTIVE && c->session)
			add_publisher(f, w, c);
	while ((s = moat_map_next(&w->sessions, &pos, NULL, NULL)))
		if (!s->dead)
			add_subscriber(f, s);
}

static void flows_free(struct flows *f)
{
	for (size_t i = 0; i < f->npub; i++) {
		free(f->pub[i].client_id);
		free(f->pub[i].topic);
	}
	for (size_t i = 0; i < f->nsub; i++) {
		free(f->sub[i].client_id);
		free(f->sub[i].filter);
	}
	free(f->pub);
	free(f->sub);
}

static bool matches(const struct ptopic *p, const struct sfilter *s)
{
	return moat_mqtt_topic_match((const uint8_t *)s->match, s->match_len,
				     (const uint8_t *)p->topic, strlen(p->topic));
}

static void json_map(struct moat_json *o, const struct flows *f)
{
	size_t edges = 0;
	bool truncated = f->full;

	moat_json_begin_object(o);
	moat_json_key(o, "publishers");
	moat_json_begin_array(o);
	for (size_t i = 0; i < f->npub; i++) {
		const struct ptopic *p = &f->pub[i];
		moat_json_begin_object(o);
		moat_json_kstring(o, "client_id", p->client_id);
		moat_json_kstring(o, "topic", p->topic);
		moat_json_kuint(o, "messages", p->messages);
		moat_json_key(o, "per_second");
		moat_json_double(o, p->seconds > 0 ? (double)p->messages / p->seconds : 0);
		moat_json_end_object(o);
	}
	moat_json_end_array(o);
	moat_json_key(o, "subscribers");
	moat_json_begin_array(o);
	for (size_t i = 0; i < f->nsub; i++) {
		moat_json_begin_object(o);
		moat_json_kstring(o, "client_id", f->sub[i].client_id);
		moat_json_kstring(o, "filter", f->sub[i].filter);
		moat_json_kint(o, "qos", f->sub[i].qos);
		moat_json_kbool(o, "online", f->sub[i].online);
		moat_json_end_object(o);
	}
	moat_json_end_array(o);
	moat_json_key(o, "flows");
	moat_json_begin_array(o);
	for (size_t i = 0; i < f->npub; i++)
		for (size_t k = 0; k < f->nsub; k++) {
			if (!matches(&f->pub[i], &f->sub[k]))
				continue;
			if (edges++ >= MAX_EDGES) {
				truncated = true;
				continue;
			}
			moat_json_begin_object(o);
			moat_json_kstring(o, "from", f->pub[i].client_id);
			moat_json_kstring(o, "topic", f->pub[i].topic);
			moat_json_kstring(o, "filter", f->sub[k].filter);
			moat_json_kstring(o, "to", f->sub[k].client_id);
			moat_json_kuint(o, "messages", f->pub[i].messages);
			moat_json_end_object(o);
		}
	moat_json_end_array(o);
	moat_json_kbool(o, "truncated", truncated);
	moat_json_end_object(o);
}

/* s as a DOT string literal: quotes and backslashes escaped, control characters dropped. */
static void dot_str(struct moat_json *o, const char *prefix, const char *s)
{
	char buf[1100];
	size_t n = 0;

	buf[n++] = '"';
	for (const char *p = prefix; *p && n < sizeof(buf) - 4; p++)
		buf[n++] = *p;
	for (const unsigned char *p = (const unsigned char *)s; *p && n < sizeof(buf) - 4; p++) {
		if (*p < 0x20 || *p == 0x7f)
			continue;
		if (*p == '"' || *p == '\\')
			buf[n++] = '\\';
		buf[n++] = (char)*p;
	}
	buf[n++] = '"';
	moat_json_raw(o, buf, n);
}

static void dot_line(struct moat_json *o, const char *text)
{
	moat_json_raw(o, text, strlen(text));
}

static void dot_map(struct moat_json *o, const struct flows *f)
{
	char label[64];
	size_t edges = 0;

	dot_line(o, "digraph moat_flows {\n  rankdir=LR;\n  node [shape=box];\n");
	for (size_t i = 0; i < f->npub; i++) {
		dot_line(o, "  ");
		dot_str(o, "client ", f->pub[i].client_id);
		dot_line(o, " -> ");
		dot_str(o, "topic ", f->pub[i].topic);
		snprintf(label, sizeof(label), " [label=\"%llu msgs\"];\n",
			 (unsigned long long)f->pub[i].messages);
		dot_line(o, label);
		dot_line(o, "  ");
		dot_str(o, "topic ", f->pub[i].topic);
		dot_line(o, " [shape=ellipse];\n");
	}
	for (size_t i = 0; i < f->npub; i++)
		for (size_t k = 0; k < f->nsub && edges < MAX_EDGES; k++) {
			if (!matches(&f->pub[i], &f->sub[k]))
				continue;
			edges++;
			dot_line(o, "  ");
			dot_str(o, "topic ", f->pub[i].topic);
			dot_line(o, " -> ");
			dot_str(o, "client ", f->sub[k].client_id);
			dot_line(o, " [label=");
			dot_str(o, "", f->sub[k].filter);
			dot_line(o, "];\n");
		}
	dot_line(o, "}\n");
}

int admin_flows(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	const char *format = moat_admin_param(req, "format");
	struct flows f = { 0 };
	int rc;

	if (format && strcmp(format, "dot") != 0 && strcmp(format, "json") != 0) {
		moat_json_begin_object(o);
		moat_json_kstring(o, "error", "format: json or dot");
		moat_json_end_object(o);
		return 400;
	}
	if ((rc = worker_query(b, gather, &f, QUERY_MS)) < 0) {
		flows_free(&f);
		moat_json_begin_object(o);
		moat_json_kstring(o, "error", rc == MOAT_EAGAIN ? "a worker did not answer in time"
								: "out of memory");
		moat_json_end_object(o);
		return 503;
	}
	if (format && strcmp(format, "dot") == 0) {
		dot_map(o, &f);
		flows_free(&f);
		return 200 | MOAT_ADMIN_TEXT;
	}
	json_map(o, &f);
	flows_free(&f);
	return 200;
}
