/*
 * subs.c - the subscription index (see subs.h).
 *
 *   exact:  "a/b/c" -> node            (filters without wildcards)
 *   trie:   root -"a"-> node -"+"-> node -"#"-> node
 *
 * A node holds the plain subscribers of its filter and its shared groups.
 * Trie nodes with no subscribers and no children are pruned on removal, so
 * churn does not leave garbage behind.
 */
#include "broker/subs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/map.h"
#include "core/rwlock.h"
#include "mqtt/topic.h"

struct sub {
	struct moat_session *s;
	uint32_t subid;
	uint8_t opts;
};

struct subvec {
	struct sub *v;
	size_t n, cap;
};

struct group {
	char *name;
	size_t name_len;
	struct subvec members;
	atomic_uint next;
};

struct node {
	struct node *parent;
	struct moat_map children; /* level -> node (trie only) */
	struct node *plus, *hash;
	struct subvec subs;
	struct group **groups;
	size_t ngroups, groups_cap;
	size_t key_len;
	char key[]; /* level (trie) or whole filter (exact) */
};

struct moat_subs {
	pthread_rwlock_t lock;
	struct moat_mem *mem;
	bool (*online)(const struct moat_session *);
	struct moat_map exact;
	struct node *root;
	atomic_size_t count;
};

static struct node *node_new(struct moat_subs *x, struct node *parent, const void *key, size_t n)
{
	struct node *nd = moat_mem_calloc(x->mem, sizeof(*nd) + n + 1);

	if (!nd)
		return NULL;
	nd->parent = parent;
	moat_map_init(&nd->children, x->mem);
	nd->key_len = n;
	memcpy(nd->key, key, n);
	return nd;
}

static void subvec_free(struct moat_subs *x, struct subvec *v)
{
	moat_mem_free(x->mem, v->v, v->cap * sizeof(*v->v));
}

static void group_free(struct moat_subs *x, struct group *g)
{
	subvec_free(x, &g->members);
	moat_mem_free(x->mem, g->name, g->name_len + 1);
	moat_mem_free(x->mem, g, sizeof(*g));
}

static void node_free(struct moat_subs *x, struct node *nd)
{
	size_t pos = 0, i;
	struct node *c;

	if (!nd)
		return;
	while ((c = moat_map_next(&nd->children, &pos, NULL, NULL)))
		node_free(x, c);
	moat_map_free(&nd->children);
	node_free(x, nd->plus);
	node_free(x, nd->hash);
	subvec_free(x, &nd->subs);
	for (i = 0; i < nd->ngroups; i++)
		group_free(x, nd->groups[i]);
	moat_mem_free(x->mem, nd->groups, nd->groups_cap * sizeof(*nd->groups));
	moat_mem_free(x->mem, nd, sizeof(*nd) + nd->key_len + 1);
}

struct moat_subs *moat_subs_new(struct moat_mem *mem, bool (*online)(const struct moat_session *))
{
	struct moat_subs *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->mem = mem;
	x->online = online;
	moat_rwlock_init(&x->lock);
	moat_map_init(&x->exact, mem);
	x->root = node_new(x, NULL, "", 0);
	if (!x->root) {
		free(x);
		return NULL;
	}
	return x;
}

void moat_subs_free(struct moat_subs *x)
{
	size_t pos = 0;
	struct node *nd;

	if (!x)
		return;
	while ((nd = moat_map_next(&x->exact, &pos, NULL, NULL)))
		node_free(x, nd);
	moat_map_free(&x->exact);
	node_free(x, x->root);
	pthread_rwlock_destroy(&x->lock);
	free(x);
}

/* ---- subscriber vectors ---- */

static struct sub *subvec_find(struct subvec *v, const struct moat_session *s)
{
	size_t i;
	for (i = 0; i < v->n; i++)
		if (v->v[i].s == s)
			return &v->v[i];
	return NULL;
}

/* Adds or updates s in v. Returns 1 if it existed, 0 if added, or MOAT_ENOMEM. */
static int subvec_set(struct moat_subs *x, struct subvec *v, struct sub sb)
{
	struct sub *old = subvec_find(v, sb.s);

	if (old) {
		*old = sb;
		return 1;
	}
	if (v->n == v->cap) {
		size_t ncap = v->cap ? v->cap * 2 : 4;
		struct sub *nv = moat_mem_realloc(x->mem, v->v, v->cap * sizeof(*nv), ncap * sizeof(*nv));
		if (!nv)
			return MOAT_ENOMEM;
		v->v = nv;
		v->cap = ncap;
	}
	v->v[v->n++] = sb;
	return 0;
}

static int subvec_del(struct subvec *v, const struct moat_session *s)
{
	struct sub *sb = subvec_find(v, s);

	if (!sb)
		return MOAT_ENOTFOUND;
	*sb = v->v[--v->n];
	return 0;
}

/* ---- nodes ---- */

static bool has_wildcard(const uint8_t *f, size_t n)
{
	return memchr(f, '+', n) || memchr(f, '#', n);
}

static bool node_empty(const struct node *nd)
{
	return !nd->subs.n && !nd->ngroups && !nd->children.len && !nd->plus && !nd->hash;
}

/* Finds (create: or makes) the trie node of filter f. */
static struct node *trie_node(struct moat_subs *x, const uint8_t *f, size_t n, bool create)
{
	struct node *nd = x->root;
	size_t i = 0;

	for (;;) {
		const uint8_t *slash = memchr(f + i, '/', n - i);
		size_t len = slash ? (size_t)(slash - (f + i)) : n - i;
		struct node **slot = NULL, *c;

		if (len == 1 && f[i] == '+')
			slot = &nd->plus;
		else if (len == 1 && f[i] == '#')
			slot = &nd->hash;
		c = slot ? *slot : moat_map_get(&nd->children, f + i, len);
		if (!c) {
			if (!create || !(c = node_new(x, nd, f + i, len)))
				return NULL;
			if (slot) {
				*slot = c;
			} else if (moat_map_put(&nd->children, c->key, len, c) < 0) {
				node_free(x, c);
				return NULL;
			}
		}
		nd = c;
		if (!slash)
			return nd;
		i += len + 1;
	}
}

static struct node *filter_node(struct moat_subs *x, const uint8_t *f, size_t n, bool create)
{
	struct node *nd;

	if (has_wildcard(f, n))
		return trie_node(x, f, n, create);
	nd = moat_map_get(&x->exact, f, n);
	if (nd || !create)
		return nd;
	nd = node_new(x, NULL, f, n);
	if (nd && moat_map_put(&x->exact, nd->key, n, nd) < 0) {
		node_free(x, nd);
		return NULL;
	}
	return nd;
}

/* Removes empty nodes from nd upwards (exact nodes have no parent). */
static void prune(struct moat_subs *x, struct node *nd)
{
	while (nd && nd != x->root && node_empty(nd)) {
		struct node *p = nd->parent;
		if (!p)
			moat_map_del(&x->exact, nd->key, nd->key_len);
		else if (p->plus == nd)
			p->plus = NULL;
		else if (p->hash == nd)
			p->hash = NULL;
		else
			moat_map_del(&p->children, nd->key, nd->key_len);
		node_free(x, nd);
		nd = p;
	}
}

static struct group *group_find(struct node *nd, struct moat_slice name)
{
	size_t i;
	for (i = 0; i < nd->ngroups; i++)
		if (nd->groups[i]->name_len == name.len &&
		    memcmp(nd->groups[i]->name, name.p, name.len) == 0)
			return nd->groups[i];
	return NULL;
}

static struct group *group_add(struct moat_subs *x, struct node *nd, struct moat_slice name)
{
	struct group *g = moat_mem_calloc(x->mem, sizeof(*g)), **ng;

	if (!g || !(g->name = moat_mem_alloc(x->mem, name.len + 1)))
		goto fail;
	memcpy(g->name, name.p, name.len);
	g->name[name.len] = 0;
	g->name_len = name.len;
	if (nd->ngroups == nd->groups_cap) {
		size_t ncap = nd->groups_cap ? nd->groups_cap * 2 : 2;
		ng = moat_mem_realloc(x->mem, nd->groups, nd->groups_cap * sizeof(*ng),
				      ncap * sizeof(*ng));
		if (!ng)
			goto fail;
		nd->groups = ng;
		nd->groups_cap = ncap;
	}
	nd->groups[nd->ngroups++] = g;
	return g;
fail:
	if (g)
		moat_mem_free(x->mem, g->name, g->name ? name.len + 1 : 0);
	moat_mem_free(x->mem, g, sizeof(*g));
	return NULL;
}

static void group_del(struct moat_subs *x, struct node *nd, struct group *g)
{
	size_t i;
	for (i = 0; i < nd->ngroups; i++) {
		if (nd->groups[i] == g) {
			nd->groups[i] = nd->groups[--nd->ngroups];
			break;
		}
	}
	if (!nd->ngroups) {
		moat_mem_free(x->mem, nd->groups, nd->groups_cap * sizeof(*nd->groups));
		nd->groups = NULL;
		nd->groups_cap = 0;
	}
	group_free(x, g);
}

/* ---- public: add and remove ---- */

static int add_locked(struct moat_subs *x, const uint8_t *f, size_t n, struct sub sb)
{
	struct moat_slice gname, inner;
	bool shared = moat_mqtt_share_split(f, n, &gname, &inner) == 1;
	struct node *nd;
	struct group *g = NULL;
	int rc;

	if (!shared) {
		inner.p = f;
		inner.len = n;
	}
	nd = filter_node(x, inner.p, inner.len, true);
	if (!nd)
		return MOAT_ENOMEM;
	if (shared && !(g = group_find(nd, gname)) && !(g = group_add(x, nd, gname))) {
		prune(x, nd);
		return MOAT_ENOMEM;
	}
	rc = subvec_set(x, g ? &g->members : &nd->subs, sb);
	if (rc < 0) {
		if (g && !g->members.n)
			group_del(x, nd, g);
		prune(x, nd);
	}
	return rc;
}

int moat_subs_add(struct moat_subs *x, const uint8_t *filter, size_t n, struct moat_session *s,
		  uint8_t opts, uint32_t subid, bool *existed)
{
	struct sub sb = {s, subid, opts};
	int rc;

	pthread_rwlock_wrlock(&x->lock);
	rc = add_locked(x, filter, n, sb);
	pthread_rwlock_unlock(&x->lock);
	if (rc < 0)
		return rc;
	if (rc == 0)
		atomic_fetch_add(&x->count, 1);
	*existed = rc == 1;
	return 0;
}

static int remove_locked(struct moat_subs *x, const uint8_t *f, size_t n, struct moat_session *s)
{
	struct moat_slice gname, inner;
	bool shared = moat_mqtt_share_split(f, n, &gname, &inner) == 1;
	struct node *nd;
	struct group *g;
	int rc;

	if (!shared) {
		inner.p = f;
		inner.len = n;
	}
	nd = filter_node(x, inner.p, inner.len, false);
	if (!nd)
		return MOAT_ENOTFOUND;
	if (!shared) {
		rc = subvec_del(&nd->subs, s);
	} else {
		g = group_find(nd, gname);
		rc = g ? subvec_del(&g->members, s) : MOAT_ENOTFOUND;
		if (rc == 0 && !g->members.n)
			group_del(x, nd, g);
	}
	if (rc == 0)
		prune(x, nd);
	return rc;
}

int moat_subs_remove(struct moat_subs *x, const uint8_t *filter, size_t n,
		     struct moat_session *s)
{
	int rc;

	pthread_rwlock_wrlock(&x->lock);
	rc = remove_locked(x, filter, n, s);
	pthread_rwlock_unlock(&x->lock);
	if (rc == 0)
		atomic_fetch_sub(&x->count, 1);
	return rc;
}

size_t moat_subs_count(struct moat_subs *x)
{
	return atomic_load(&x->count);
}

/* ---- matching ---- */

struct walk {
	struct node *nd;
	size_t level; /* index of the next topic level to match */
};

static void emit_group(struct moat_subs *x, struct group *g, moat_subs_cb cb, void *ctx)
{
	size_t n = g->members.n, start, i;

	if (!n)
		return;
	start = atomic_fetch_add_explicit(&g->next, 1, memory_order_relaxed) % n;
	for (i = 0; i < n; i++) {
		struct sub *sb = &g->members.v[(start + i) % n];
		if (!x->online || x->online(sb->s)) {
			cb(ctx, sb->s, sb->opts, sb->subid, true);
			return;
		}
	}
	cb(ctx, g->members.v[start].s, g->members.v[start].opts, g->members.v[start].subid, true);
}

static void emit(struct moat_subs *x, struct node *nd, moat_subs_cb cb, void *ctx)
{
	size_t i;
	for (i = 0; i < nd->subs.n; i++)
		cb(ctx, nd->subs.v[i].s, nd->subs.v[i].opts, nd->subs.v[i].subid, false);
	for (i = 0; i < nd->ngroups; i++)
		emit_group(x, nd->groups[i], cb, ctx);
}

/* Pushes w onto a stack that starts in a caller's array and moves to the heap. */
static int push(struct walk **st, size_t *n, size_t *cap, struct walk *fixed, struct walk w)
{
	if (*n == *cap) {
		size_t ncap = *cap * 2;
		struct walk *nw = *st == fixed ? malloc(ncap * sizeof(*nw))
					       : realloc(*st, ncap * sizeof(*nw));
		if (!nw)
			return MOAT_ENOMEM;
		if (*st == fixed)
			memcpy(nw, fixed, *n * sizeof(*nw));
		*st = nw;
		*cap = ncap;
	}
	(*st)[(*n)++] = w;
	return 0;
}

/* Offsets of the levels of t: lv[i] is where level i starts; lv[nl] = n + 1. */
static size_t *split_levels(const uint8_t *t, size_t n, size_t *fixed, size_t fixed_cap,
			    size_t *nl)
{
	size_t count = 1, i, k = 1, *lv = fixed;

	for (i = 0; i < n; i++)
		count += t[i] == '/';
	if (count + 1 > fixed_cap && !(lv = malloc((count + 1) * sizeof(*lv))))
		return NULL;
	lv[0] = 0;
	for (i = 0; i < n; i++)
		if (t[i] == '/')
			lv[k++] = i + 1;
	lv[k] = n + 1;
	*nl = count;
	return lv;
}

static void trie_match(struct moat_subs *x, const uint8_t *t, size_t n, moat_subs_cb cb, void *ctx)
{
	size_t lv_fixed[64], nl, sn = 0, scap = 64;
	struct walk st_fixed[64], *st = st_fixed;
	size_t *lv = split_levels(t, n, lv_fixed, 64, &nl);
	bool dollar = n && t[0] == '$';

	if (!lv)
		return;
	push(&st, &sn, &scap, st_fixed, (struct walk){x->root, 0});
	while (sn) {
		struct walk w = st[--sn];
		struct node *nd = w.nd, *c;
		bool at_root = nd == x->root;

		if (nd->hash && !(at_root && dollar))
			emit(x, nd->hash, cb, ctx);
		if (w.level == nl) {
			if (!at_root)
				emit(x, nd, cb, ctx);
			continue;
		}
		c = moat_map_get(&nd->children, t + lv[w.level], lv[w.level + 1] - 1 - lv[w.level]);
		if (c && push(&st, &sn, &scap, st_fixed, (struct walk){c, w.level + 1}) < 0)
			break;
		if (nd->plus && !(at_root && dollar) &&
		    push(&st, &sn, &scap, st_fixed, (struct walk){nd->plus, w.level + 1}) < 0)
			break;
	}
	if (st != st_fixed)
		free(st);
	if (lv != lv_fixed)
		free(lv);
}

void moat_subs_match(struct moat_subs *x, const uint8_t *topic, size_t n, moat_subs_cb cb,
		     void *ctx)
{
	struct node *nd;

	pthread_rwlock_rdlock(&x->lock);
	nd = moat_map_get(&x->exact, topic, n);
	if (nd)
		emit(x, nd, cb, ctx);
	if (x->root->children.len || x->root->plus || x->root->hash)
		trie_match(x, topic, n, cb, ctx);
	pthread_rwlock_unlock(&x->lock);
}
