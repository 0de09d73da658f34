/*
 * retain.c - the retained message store (see retain.h).
 */
#include "broker/retain.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/map.h"
#include "core/rwlock.h"
#include "core/vec.h"

struct rnode {
	struct rnode *parent;
	struct moat_map children; /* level -> rnode */
	struct moat_msg *msg;
	size_t key_len;
	char key[];
};

struct moat_retain {
	pthread_rwlock_t lock;
	struct moat_mem *mem;
	struct rnode *root;
	atomic_size_t count;
};

static struct rnode *rnode_new(struct moat_retain *r, struct rnode *parent, const void *k,
			       size_t n)
{
	struct rnode *nd = moat_mem_calloc(r->mem, sizeof(*nd) + n + 1);

	if (!nd)
		return NULL;
	nd->parent = parent;
	moat_map_init(&nd->children, r->mem);
	memcpy(nd->key, k, n);
	nd->key_len = n;
	return nd;
}

static void rnode_free(struct moat_retain *r, struct rnode *nd)
{
	size_t pos = 0;
	struct rnode *c;

	while ((c = moat_map_next(&nd->children, &pos, NULL, NULL)))
		rnode_free(r, c);
	moat_map_free(&nd->children);
	moat_msg_unref(nd->msg);
	moat_mem_free(r->mem, nd, sizeof(*nd) + nd->key_len + 1);
}

struct moat_retain *moat_retain_new(struct moat_mem *mem)
{
	struct moat_retain *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->mem = mem;
	moat_rwlock_init(&r->lock);
	r->root = rnode_new(r, NULL, "", 0);
	if (!r->root) {
		free(r);
		return NULL;
	}
	return r;
}

void moat_retain_free(struct moat_retain *r)
{
	if (!r)
		return;
	rnode_free(r, r->root);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

/* Finds (or with create, makes) the node of topic t. */
static struct rnode *find(struct moat_retain *r, const uint8_t *t, size_t n, bool create)
{
	struct rnode *nd = r->root;
	size_t i = 0;

	for (;;) {
		const uint8_t *slash = memchr(t + i, '/', n - i);
		size_t len = slash ? (size_t)(slash - (t + i)) : n - i;
		struct rnode *c = moat_map_get(&nd->children, t + i, len);

		if (!c) {
			if (!create || !(c = rnode_new(r, nd, t + i, len)))
				return NULL;
			if (moat_map_put(&nd->children, c->key, len, c) < 0) {
				rnode_free(r, c);
				return NULL;
			}
		}
		nd = c;
		if (!slash)
			return nd;
		i += len + 1;
	}
}

static void prune(struct moat_retain *r, struct rnode *nd)
{
	while (nd != r->root && !nd->msg && !nd->children.len) {
		struct rnode *p = nd->parent;
		moat_map_del(&p->children, nd->key, nd->key_len);
		rnode_free(r, nd);
		nd = p;
	}
}

int moat_retain_set(struct moat_retain *r, struct moat_msg *msg)
{
	const uint8_t *t = moat_msg_topic(msg);
	struct rnode *nd;
	int rc = 0;

	pthread_rwlock_wrlock(&r->lock);
	if (msg->payload_len == 0) {
		nd = find(r, t, msg->topic_len, false);
		if (nd && nd->msg) {
			moat_msg_unref(nd->msg);
			nd->msg = NULL;
			atomic_fetch_sub(&r->count, 1);
			prune(r, nd);
		}
	} else if ((nd = find(r, t, msg->topic_len, true))) {
		if (nd->msg)
			moat_msg_unref(nd->msg);
		else
			atomic_fetch_add(&r->count, 1);
		nd->msg = moat_msg_ref(msg);
	} else {
		rc = MOAT_ENOMEM;
	}
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

size_t moat_retain_count(struct moat_retain *r)
{
	return atomic_load(&r->count);
}

/* ---- lookup by filter ---- */

struct walk {
	struct rnode *nd;
	size_t pos;   /* offset in the filter of the next level; > n when consumed */
	bool all;     /* under '#': every descendant matches */
};

struct stack {
	struct walk *v;
	size_t n, cap;
};

static bool spush(struct stack *s, struct walk w)
{
	if (!moat_grow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v)))
		return false;
	s->v[s->n++] = w;
	return true;
}

static void visit(struct rnode *nd, int64_t now, void (*cb)(void *, struct moat_msg *), void *ctx)
{
	if (nd->msg && !moat_msg_expired(nd->msg, now))
		cb(ctx, nd->msg);
}

/* Pushes every child of nd, except $-topics below the root (section 4.7.2). */
static bool push_children(struct stack *s, struct rnode *nd, bool root, size_t pos, bool all)
{
	size_t it = 0;
	struct rnode *c;

	while ((c = moat_map_next(&nd->children, &it, NULL, NULL))) {
		if (root && c->key_len && c->key[0] == '$')
			continue;
		if (!spush(s, (struct walk){c, pos, all}))
			return false;
	}
	return true;
}

static void walk_filter(struct moat_retain *r, const uint8_t *f, size_t n, int64_t now,
			void (*cb)(void *, struct moat_msg *), void *ctx)
{
	struct stack s = {0};

	if (!spush(&s, (struct walk){r->root, 0, false}))
		return;
	while (s.n) {
		struct walk w = s.v[--s.n];
		const uint8_t *slash;
		size_t len;
		bool root = w.nd == r->root;

		if (w.all) {
			visit(w.nd, now, cb, ctx);
			if (!push_children(&s, w.nd, false, 0, true))
				break;
			continue;
		}
		if (w.pos > n) { /* every level of the filter consumed */
			visit(w.nd, now, cb, ctx);
			continue;
		}
		slash = memchr(f + w.pos, '/', n - w.pos);
		len = slash ? (size_t)(slash - (f + w.pos)) : n - w.pos;
		if (len == 1 && f[w.pos] == '#') {
			if (!root)
				visit(w.nd, now, cb, ctx); /* "a/#" matches "a" */
			if (!push_children(&s, w.nd, root, 0, true))
				break;
		} else if (len == 1 && f[w.pos] == '+') {
			if (!push_children(&s, w.nd, root, w.pos + len + 1, false))
				break;
		} else {
			struct rnode *c = moat_map_get(&w.nd->children, f + w.pos, len);
			if (c && !spush(&s, (struct walk){c, w.pos + len + 1, false}))
				break;
		}
	}
	free(s.v);
}

void moat_retain_match(struct moat_retain *r, const uint8_t *filter, size_t n, int64_t now,
		       void (*cb)(void *ctx, struct moat_msg *msg), void *ctx)
{
	pthread_rwlock_rdlock(&r->lock);
	walk_filter(r, filter, n, now, cb, ctx);
	pthread_rwlock_unlock(&r->lock);
}
