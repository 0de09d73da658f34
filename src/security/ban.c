/*
 * ban.c - bans and the allow-list (see ban.h).
 *
 * Layout. The bans and the allow-list are two struct list of one shape:
 *   - a hash map per name kind (client ids, user names), keyed by the name;
 *   - a hash map per (family, prefix length), keyed by the network address
 *     masked to that length (4 or 16 bytes); an exact address is a /32 or
 *     /128. lens[] lists the lengths in use, longest first, so a check masks
 *     the address once per length in use and does one lookup for each: O(1)
 *     for names, O(distinct prefix lengths) for addresses, and the most
 *     specific ban is the one reported.
 * Every ban is also in a binary min-heap ordered by its end (never last):
 * bans over leave it from the top on every write, and when the table is full
 * the ban that ends first is the one given up.
 *
 * Decisions:
 *   - Addresses are parsed with inet_pton (no shorthand, no zone). A CIDR's
 *     host bits are accepted and cleared: "192.0.2.7/24" is "192.0.2.0/24",
 *     the network holding that address, which is how the sentinel asks for
 *     it. "/32" and "/128" are the exact address. The key shown, saved and
 *     removed is inet_ntop's form of the network ("/N" when shorter than the
 *     address). The length is decimal with no sign or leading zero.
 *   - An IPv4-mapped address (::ffff:a.b.c.d, and a prefix of /96 or longer
 *     inside ::ffff:0:0/96) is IPv4, both as a key and as a peer's address.
 *     A shorter IPv6 prefix ("::/0") applies to IPv6 peers only.
 *   - Names are 1 to 255 bytes with no space or control character, so every
 *     ban fits one line of the bans file; a client id outside that cannot be
 *     banned by id (its address and user name still can).
 *   - A reason is cut to 127 bytes (on a UTF-8 boundary), its control
 *     characters become spaces and its ends are trimmed.
 *   - The allow-list wins: checks ask it first; a ban it covers wholly (an
 *     address or prefix inside an allowed prefix, an allowed name) is refused
 *     with MOAT_EDENIED, and allowing something lifts the bans it covers. A
 *     ban of a prefix that only overlaps an allowed one is kept and spares
 *     the allowed part at check time.
 *   - Banning a key already banned keeps the later end (never is latest),
 *     with that ban's reason.
 *   - Time. Bans hold monotonic ms. Writes take no time, so the latest now
 *     any call has passed ("seen") is the clock writes purge by: a ban over
 *     at seen is gone for good, since monotonic time does not go back. A ban
 *     added already over at seen is not stored. Callers must not pass times
 *     that go back: bans over since a later now may already be gone.
 *   - Bounded: at most max bans (MOAT_BANS_MAX unless set) and as many allow
 *     entries. A full table evicts the ban that ends first if the new one
 *     ends later, else refuses with MOAT_ENOMEM: the longest bans are kept,
 *     and a flood of short timed bans never pushes out a permanent one.
 *   - Loading is two-phase: every line is parsed and its ban built first (a
 *     malformed line refuses the file before anything changes), then all are
 *     placed under the lock with a journal that is undone if memory runs out
 *     or the table fills (loading never evicts).
 *
 * Invariants: every ban is in exactly one map of b->bans and at index
 * e->heap of the heap; lens[f] lists exactly the lengths whose map is not
 * empty; no ban is wholly covered by the allow-list; a map's key points into
 * its own entry.
 */
#include "security/ban.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/map.h"
#include "core/rwlock.h"
#include "core/vec.h"

#define NAME_MAX_BYTES 255
#define REASON_MAX_BYTES 127
#define LINE_MAX_BYTES 1024
#define UNTIL_MAX_S (INT64_MAX / 1000)
#define NEVER INT64_MAX

enum { V4, V6 };
static const int fam_bits[2] = {32, 128};
static const char *const kind_names[] = {"addr", "clientid", "username"};

/* What an entry names: parsed and canonical. */
struct id {
	uint8_t kind;     /* enum moat_ban_kind */
	uint8_t fam;      /* addresses: V4 or V6 */
	uint8_t plen;     /* addresses: prefix length */
	uint8_t klen;     /* length of the key text */
	uint8_t addr[16]; /* addresses: the network, host bits zero */
};

/* A key parsed from a caller or a file, before it becomes an entry. */
struct key {
	struct id id;
	char text[NAME_MAX_BYTES + 1];
};

/* A ban or an allow entry. One allocation; the maps' keys point into it. */
struct ban {
	int64_t until_ms; /* monotonic; 0 = never (always, for allow entries) */
	size_t heap;      /* bans: index in the heap */
	struct id id;
	char text[];      /* key, NUL, reason, NUL */
};

struct list {
	struct moat_map names[2];   /* [kind - 1]: client ids, user names */
	struct moat_map net4[33];   /* by prefix length */
	struct moat_map net6[129];
	uint8_t lens[2][129];       /* lengths in use, longest first */
	int nlens[2];
	size_t n;
};

struct moat_bans {
	pthread_rwlock_t lock;
	struct list bans, allow;
	struct ban **heap; /* min-heap by end */
	size_t hn, hcap;
	size_t max;
	_Atomic int64_t seen; /* the latest now passed in */
};

/* ---- small pieces ---- */

static int64_t end_of(int64_t until)
{
	return until ? until : NEVER;
}

static bool in_force(const struct ban *e, int64_t now)
{
	return !e->until_ms || now < e->until_ms;
}

static size_t addr_len(int fam)
{
	return fam == V4 ? 4 : 16;
}

/* out = a with all but the first plen bits cleared. */
static void mask(uint8_t *out, const uint8_t *a, int plen)
{
	int full = plen / 8;

	memset(out, 0, 16);
	memcpy(out, a, (size_t)full);
	if (plen % 8)
		out[full] = a[full] & (uint8_t)(0xff00 >> (plen % 8));
}

static bool is_mapped(const uint8_t *a)
{
	static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return memcmp(a, pre, sizeof(pre)) == 0;
}

/* Records now as seen if it is the latest yet. Lock-free: checks call it. */
static void bump(struct moat_bans *b, int64_t now)
{
	int64_t s = atomic_load_explicit(&b->seen, memory_order_relaxed);

	while (now > s && !atomic_compare_exchange_weak_explicit(&b->seen, &s, now,
								 memory_order_relaxed,
								 memory_order_relaxed))
		;
}

/* ---- keys ---- */

static bool name_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > NAME_MAX_BYTES)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* A prefix length: decimal, no sign, no leading zero, at most max. -1 if not. */
static int parse_plen(const char *s, size_t n, int max)
{
	int v = 0;
	size_t i;

	if (n == 0 || n > 3 || (s[0] == '0' && n > 1))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/* Sets k to the network raw/plen of family fam, in canonical form. */
static void set_net(struct key *k, int fam, int plen, const uint8_t *raw)
{
	size_t n;

	if (fam == V6 && plen >= 96 && is_mapped(raw)) {
		uint8_t v4[4];

		memcpy(v4, raw + 12, 4);
		set_net(k, V4, plen - 96, v4);
		return;
	}
	k->id.kind = MOAT_BAN_ADDR;
	k->id.fam = (uint8_t)fam;
	k->id.plen = (uint8_t)plen;
	mask(k->id.addr, raw, plen);
	inet_ntop(fam == V4 ? AF_INET : AF_INET6, k->id.addr, k->text, sizeof(k->text));
	n = strlen(k->text);
	if (plen < fam_bits[fam])
		n += (size_t)snprintf(k->text + n, sizeof(k->text) - n, "/%d", plen);
	k->id.klen = (uint8_t)n;
}

static int parse_addr(const char *s, size_t n, struct key *k)
{
	char buf[INET6_ADDRSTRLEN];
	const char *slash = memchr(s, '/', n);
	size_t alen = slash ? (size_t)(slash - s) : n;
	uint8_t raw[16];
	int fam, plen;

	if (alen == 0 || alen >= sizeof(buf) || memchr(s, '\0', alen))
		return MOAT_EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, raw) == 1)
		fam = V4;
	else if (inet_pton(AF_INET6, buf, raw) == 1)
		fam = V6;
	else
		return MOAT_EINVAL;
	plen = slash ? parse_plen(slash + 1, n - alen - 1, fam_bits[fam]) : fam_bits[fam];
	if (plen < 0)
		return MOAT_EINVAL;
	set_net(k, fam, plen, raw);
	return 0;
}

/* Parses s[0..n) as a key of kind. Returns 0 or MOAT_EINVAL. */
static int parse_key(enum moat_ban_kind kind, const char *s, size_t n, struct key *k)
{
	memset(&k->id, 0, sizeof(k->id));
	if (kind == MOAT_BAN_ADDR)
		return parse_addr(s, n, k);
	if ((kind != MOAT_BAN_CLIENTID && kind != MOAT_BAN_USERNAME) || !name_ok(s, n))
		return MOAT_EINVAL;
	k->id.kind = (uint8_t)kind;
	k->id.klen = (uint8_t)n;
	memcpy(k->text, s, n);
	k->text[n] = '\0';
	return 0;
}

/* Writes reason r[0..n) cleaned (see the file header) to out[128]; returns its length. */
static size_t clean_reason(const char *r, size_t n, char *out)
{
	size_t i = 0, o = 0;

	while (i < n && ((unsigned char)r[i] <= 0x20 || r[i] == 0x7f))
		i++;
	for (; i < n && o < REASON_MAX_BYTES; i++)
		out[o++] = ((unsigned char)r[i] < 0x20 || r[i] == 0x7f) ? ' ' : r[i];
	if (i < n && ((unsigned char)r[i] & 0xc0) == 0x80) {
		/* Cut inside a character: drop its first bytes too. */
		while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
			o--;
		if (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
			o--;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	return o;
}

/* Returns an owned entry (free with free()), or NULL. */
static struct ban *ban_new(const struct key *k, int64_t until_ms, const char *reason, size_t rlen)
{
	struct ban *e = malloc(sizeof(*e) + k->id.klen + 1 + rlen + 1);

	if (!e)
		return NULL;
	e->until_ms = until_ms;
	e->heap = 0;
	e->id = k->id;
	memcpy(e->text, k->text, k->id.klen);
	e->text[k->id.klen] = '\0';
	memcpy(e->text + k->id.klen + 1, reason, rlen);
	e->text[k->id.klen + 1 + rlen] = '\0';
	return e;
}

static const char *reason_of(const struct ban *e)
{
	return e->text + e->id.klen + 1;
}

static void fill_info(const struct ban *e, struct moat_ban_info *info)
{
	if (!info)
		return;
	info->kind = (enum moat_ban_kind)e->id.kind;
	memcpy(info->key, e->text, (size_t)e->id.klen + 1);
	info->until_ms = e->until_ms;
	snprintf(info->reason, sizeof(info->reason), "%s", reason_of(e));
}

/* ---- lists ---- */

static void list_init(struct list *l)
{
	size_t i;

	memset(l, 0, sizeof(*l));
	for (i = 0; i < 2; i++)
		moat_map_init(&l->names[i], NULL);
	for (i = 0; i < 33; i++)
		moat_map_init(&l->net4[i], NULL);
	for (i = 0; i < 129; i++)
		moat_map_init(&l->net6[i], NULL);
}

static struct moat_map *map_of(struct list *l, const struct id *id)
{
	if (id->kind != MOAT_BAN_ADDR)
		return &l->names[id->kind - 1];
	return id->fam == V4 ? &l->net4[id->plen] : &l->net6[id->plen];
}

/* The map key of an entry (or of a parsed key: text is its text). */
static const void *key_of(const struct id *id, const char *text, size_t *n)
{
	*n = id->kind == MOAT_BAN_ADDR ? addr_len(id->fam) : id->klen;
	return id->kind == MOAT_BAN_ADDR ? (const void *)id->addr : (const void *)text;
}

static struct ban *list_get(struct list *l, const struct id *id, const char *text)
{
	size_t n;
	const void *k = key_of(id, text, &n);

	return moat_map_get(map_of(l, id), k, n);
}

static void lens_add(struct list *l, int fam, int plen)
{
	uint8_t *v = l->lens[fam];
	int i = l->nlens[fam]++;

	for (; i > 0 && v[i - 1] < plen; i--)
		v[i] = v[i - 1];
	v[i] = (uint8_t)plen;
}

static void lens_del(struct list *l, int fam, int plen)
{
	uint8_t *v = l->lens[fam];
	int i = 0, n = l->nlens[fam];

	while (i < n && v[i] != plen)
		i++;
	if (i == n)
		return;
	memmove(v + i, v + i + 1, (size_t)(n - i - 1));
	l->nlens[fam]--;
}

/* Adds e (its key must be absent). Returns 0 or MOAT_ENOMEM (l unchanged). */
static int list_put(struct list *l, struct ban *e)
{
	struct moat_map *m = map_of(l, &e->id);
	size_t n;
	const void *k = key_of(&e->id, e->text, &n);

	if (moat_map_put(m, k, n, e) < 0)
		return MOAT_ENOMEM;
	if (e->id.kind == MOAT_BAN_ADDR && m->len == 1)
		lens_add(l, e->id.fam, e->id.plen);
	l->n++;
	return 0;
}

static void list_del(struct list *l, struct ban *e)
{
	struct moat_map *m = map_of(l, &e->id);
	size_t n;
	const void *k = key_of(&e->id, e->text, &n);

	if (!moat_map_del(m, k, n))
		return;
	if (e->id.kind == MOAT_BAN_ADDR && m->len == 0)
		lens_del(l, e->id.fam, e->id.plen);
	l->n--;
}

/*
 * Returns the entry of l in force at now that holds address a of family fam
 * under a prefix of at most maxlen bits, the longest first; or NULL.
 */
static struct ban *match_addr(struct list *l, int fam, const uint8_t *a, int maxlen, int64_t now)
{
	uint8_t net[16];
	struct ban *e;
	int i;

	for (i = 0; i < l->nlens[fam]; i++) {
		int plen = l->lens[fam][i];

		if (plen > maxlen)
			continue;
		mask(net, a, plen);
		e = moat_map_get(fam == V4 ? &l->net4[plen] : &l->net6[plen], net, addr_len(fam));
		if (e && in_force(e, now))
			return e;
	}
	return NULL;
}

/* True if the allow-list covers all that id names. */
static bool covered(struct moat_bans *b, const struct id *id, const char *text)
{
	if (id->kind == MOAT_BAN_ADDR)
		return match_addr(&b->allow, id->fam, id->addr, id->plen, 0) != NULL;
	return list_get(&b->allow, id, text) != NULL;
}

/* True if allow entry a covers ban e. */
static bool covers(const struct ban *a, const struct ban *e)
{
	uint8_t net[16];

	if (a->id.kind != e->id.kind)
		return false;
	if (a->id.kind != MOAT_BAN_ADDR)
		return a->id.klen == e->id.klen && memcmp(a->text, e->text, a->id.klen) == 0;
	if (a->id.fam != e->id.fam || a->id.plen > e->id.plen)
		return false;
	mask(net, e->id.addr, a->id.plen);
	return memcmp(net, a->id.addr, addr_len(a->id.fam)) == 0;
}

static void list_free(struct list *l, bool entries)
{
	struct moat_map *maps[2 + 33 + 129];
	size_t i, pos, k = 0;
	void *v;

	for (i = 0; i < 2; i++)
		maps[k++] = &l->names[i];
	for (i = 0; i < 33; i++)
		maps[k++] = &l->net4[i];
	for (i = 0; i < 129; i++)
		maps[k++] = &l->net6[i];
	for (i = 0; i < k; i++) {
		for (pos = 0; entries && (v = moat_map_next(maps[i], &pos, NULL, NULL));)
			free(v);
		moat_map_free(maps[i]);
	}
}

/* ---- the heap of bans, by end ---- */

static bool before(const struct ban *x, const struct ban *y)
{
	return end_of(x->until_ms) < end_of(y->until_ms);
}

static void heap_set(struct moat_bans *b, size_t i, struct ban *e)
{
	b->heap[i] = e;
	e->heap = i;
}

static void heap_swap(struct moat_bans *b, size_t i, size_t j)
{
	struct ban *t = b->heap[i];

	heap_set(b, i, b->heap[j]);
	heap_set(b, j, t);
}

static void heap_up(struct moat_bans *b, size_t i)
{
	while (i > 0 && before(b->heap[i], b->heap[(i - 1) / 2])) {
		heap_swap(b, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct moat_bans *b, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < b->hn && before(b->heap[l], b->heap[m]))
			m = l;
		if (r < b->hn && before(b->heap[r], b->heap[m]))
			m = r;
		if (m == i)
			return;
		heap_swap(b, i, m);
		i = m;
	}
}

/* Appends e; the capacity must be there. */
static void heap_push(struct moat_bans *b, struct ban *e)
{
	heap_set(b, b->hn++, e);
	heap_up(b, e->heap);
}

static void heap_remove(struct moat_bans *b, struct ban *e)
{
	size_t i = e->heap;
	struct ban *last = b->heap[--b->hn];

	if (i == b->hn)
		return;
	heap_set(b, i, last);
	heap_up(b, i);
	heap_down(b, last->heap);
}

/* Lifts ban e and frees it. */
static void drop(struct moat_bans *b, struct ban *e)
{
	list_del(&b->bans, e);
	heap_remove(b, e);
	free(e);
}

/* Drops the bans over at the latest time seen. */
static void purge(struct moat_bans *b)
{
	int64_t t = atomic_load_explicit(&b->seen, memory_order_relaxed);

	while (b->hn && b->heap[0]->until_ms && b->heap[0]->until_ms <= t)
		drop(b, b->heap[0]);
}

/* ---- placing bans, with a journal to undo ---- */

enum { S_NONE, S_INSERTED, S_REPLACED };

struct step {
	struct ban *e;   /* the new ban */
	struct ban *old; /* S_REPLACED: the ban it replaced */
	int what;
};

/*
 * Takes e's place in the table (old leaves it, e ends later). Cannot fail:
 * the map loses old's key before it gains e's equal one, so it never grows.
 */
static void swap_in(struct moat_bans *b, struct ban *old, struct ban *e)
{
	list_del(&b->bans, old);
	(void)list_put(&b->bans, e);
	heap_set(b, old->heap, e);
	heap_up(b, e->heap);
	heap_down(b, e->heap);
}

/*
 * Places ban e (the caller holds the write lock). st records what was done;
 * e belongs to the table only if st->what is S_INSERTED or S_REPLACED (and
 * then st->old is the caller's to free). Returns 0, MOAT_EDENIED (allow-
 * listed), or MOAT_ENOMEM (out of memory, or full with nothing to evict).
 */
static int place(struct moat_bans *b, struct ban *e, bool may_evict, struct step *st)
{
	struct ban *old;

	*st = (struct step){e, NULL, S_NONE};
	if (e->until_ms && e->until_ms <= atomic_load_explicit(&b->seen, memory_order_relaxed))
		return 0;
	if (covered(b, &e->id, e->text))
		return MOAT_EDENIED;
	if ((old = list_get(&b->bans, &e->id, e->text))) {
		if (end_of(e->until_ms) <= end_of(old->until_ms))
			return 0;
		swap_in(b, old, e);
		*st = (struct step){e, old, S_REPLACED};
		return 0;
	}
	if (b->hn >= b->max &&
	    !(may_evict && b->hn && end_of(b->heap[0]->until_ms) < end_of(e->until_ms)))
		return MOAT_ENOMEM;
	if (!moat_grow((void **)&b->heap, &b->hcap, b->hn + 1, sizeof(*b->heap)) ||
	    list_put(&b->bans, e) < 0)
		return MOAT_ENOMEM;
	if (b->hn >= b->max)
		drop(b, b->heap[0]); /* evict the ban that ends first */
	heap_push(b, e);
	st->what = S_INSERTED;
	return 0;
}

/* Undoes one step of place (never one that evicted: loading does not). */
static void unplace(struct moat_bans *b, const struct step *st)
{
	if (st->what == S_INSERTED) {
		heap_remove(b, st->e);
		list_del(&b->bans, st->e);
	} else if (st->what == S_REPLACED) {
		swap_in(b, st->e, st->old);
	}
}

/* ---- the public table ---- */

struct moat_bans *moat_bans_new(void)
{
	struct moat_bans *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	moat_rwlock_init(&b->lock);
	list_init(&b->bans);
	list_init(&b->allow);
	b->max = MOAT_BANS_MAX;
	atomic_init(&b->seen, INT64_MIN);
	return b;
}

void moat_bans_free(struct moat_bans *b)
{
	size_t i;

	if (!b)
		return;
	for (i = 0; i < b->hn; i++)
		free(b->heap[i]);
	free(b->heap);
	list_free(&b->bans, false);
	list_free(&b->allow, true);
	pthread_rwlock_destroy(&b->lock);
	free(b);
}

void moat_bans_allow_clear(struct moat_bans *b)
{
	if (!b)
		return;
	pthread_rwlock_wrlock(&b->lock);
	list_free(&b->allow, true);
	list_init(&b->allow);
	pthread_rwlock_unlock(&b->lock);
}

void moat_bans_set_max(struct moat_bans *b, size_t max)
{
	if (!b)
		return;
	pthread_rwlock_wrlock(&b->lock);
	b->max = max;
	pthread_rwlock_unlock(&b->lock);
}

int moat_bans_add(struct moat_bans *b, enum moat_ban_kind kind, const char *key, int64_t until_ms,
		  const char *reason)
{
	struct key k;
	struct step st = {0};
	struct ban *e;
	char r[REASON_MAX_BYTES + 1];
	size_t rlen;
	int rc;

	if (!b || !key || until_ms < 0 || parse_key(kind, key, strlen(key), &k) < 0)
		return MOAT_EINVAL;
	rlen = clean_reason(reason ? reason : "", reason ? strlen(reason) : 0, r);
	if (!(e = ban_new(&k, until_ms, r, rlen)))
		return MOAT_ENOMEM;
	pthread_rwlock_wrlock(&b->lock);
	purge(b);
	rc = place(b, e, true, &st);
	pthread_rwlock_unlock(&b->lock);
	if (st.what == S_NONE)
		free(e);
	free(st.old);
	return rc;
}

int moat_bans_remove(struct moat_bans *b, enum moat_ban_kind kind, const char *key)
{
	struct key k;
	struct ban *e;

	if (!b || !key || parse_key(kind, key, strlen(key), &k) < 0)
		return MOAT_EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	purge(b);
	if ((e = list_get(&b->bans, &k.id, k.text)))
		drop(b, e);
	pthread_rwlock_unlock(&b->lock);
	return e ? 0 : MOAT_ENOTFOUND;
}

/* Puts allow entry a in and lifts the bans it covers (write lock held). */
static int allow_locked(struct moat_bans *b, struct ban *a)
{
	struct ban **lift = NULL;
	size_t i, n = 0, cap = 0;
	int rc = MOAT_ENOMEM;

	if (b->allow.n >= b->max)
		goto fail;
	for (i = 0; i < b->hn; i++) {
		if (!covers(a, b->heap[i]))
			continue;
		if (!moat_grow((void **)&lift, &cap, n + 1, sizeof(*lift)))
			goto fail;
		lift[n++] = b->heap[i];
	}
	if (list_put(&b->allow, a) < 0)
		goto fail;
	for (i = 0; i < n; i++)
		drop(b, lift[i]);
	rc = 0;
fail:
	free(lift);
	return rc;
}

int moat_bans_allow(struct moat_bans *b, enum moat_ban_kind kind, const char *key)
{
	struct key k;
	struct ban *a;
	int rc = 0;

	if (!b || !key || parse_key(kind, key, strlen(key), &k) < 0)
		return MOAT_EINVAL;
	if (!(a = ban_new(&k, 0, "", 0)))
		return MOAT_ENOMEM;
	pthread_rwlock_wrlock(&b->lock);
	purge(b);
	if (list_get(&b->allow, &a->id, a->text))
		rc = 1; /* already there */
	else
		rc = allow_locked(b, a);
	pthread_rwlock_unlock(&b->lock);
	if (rc != 0)
		free(a);
	return rc < 0 ? rc : 0;
}

/* The address of sa in a (IPv4-mapped made IPv4); its family, or -1. */
static int addr_of(const struct sockaddr *sa, uint8_t *a)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		memcpy(a, &in->sin_addr, 4);
		return V4;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		memcpy(a, &in6->sin6_addr, 16);
		if (!is_mapped(a))
			return V6;
		memmove(a, a + 12, 4);
		return V4;
	}
	return -1;
}

bool moat_bans_allowed_addr(struct moat_bans *b, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam;
	bool yes;

	if (!b || !sa || (fam = addr_of(sa, a)) < 0)
		return false;
	pthread_rwlock_rdlock(&b->lock);
	yes = match_addr(&b->allow, fam, a, 128, 0) != NULL;
	pthread_rwlock_unlock(&b->lock);
	return yes;
}

/* Fills id for a name check; false if no such name can be listed. */
static bool name_id(enum moat_ban_kind kind, const char *name, size_t n, struct id *id)
{
	if ((kind != MOAT_BAN_CLIENTID && kind != MOAT_BAN_USERNAME) || !name || n == 0 ||
	    n > NAME_MAX_BYTES)
		return false;
	memset(id, 0, sizeof(*id));
	id->kind = (uint8_t)kind;
	id->klen = (uint8_t)n;
	return true;
}

bool moat_bans_allowed_name(struct moat_bans *b, enum moat_ban_kind kind, const char *name,
			    size_t n)
{
	struct id id;
	bool yes;

	if (!b || !name_id(kind, name, n, &id))
		return false;
	pthread_rwlock_rdlock(&b->lock);
	yes = list_get(&b->allow, &id, name) != NULL;
	pthread_rwlock_unlock(&b->lock);
	return yes;
}

bool moat_bans_check_addr(struct moat_bans *b, const struct sockaddr *sa, int64_t now,
			  struct moat_ban_info *info)
{
	struct ban *e = NULL;
	uint8_t a[16];
	int fam;

	if (!b || !sa || (fam = addr_of(sa, a)) < 0)
		return false;
	bump(b, now);
	pthread_rwlock_rdlock(&b->lock);
	if (!match_addr(&b->allow, fam, a, 128, 0) &&
	    (e = match_addr(&b->bans, fam, a, 128, now)))
		fill_info(e, info);
	pthread_rwlock_unlock(&b->lock);
	return e != NULL;
}

bool moat_bans_check_name(struct moat_bans *b, enum moat_ban_kind kind, const char *name,
			  size_t n, int64_t now, struct moat_ban_info *info)
{
	struct ban *e = NULL;
	struct id id;

	if (!b || !name_id(kind, name, n, &id))
		return false;
	bump(b, now);
	pthread_rwlock_rdlock(&b->lock);
	if (!list_get(&b->allow, &id, name) && (e = list_get(&b->bans, &id, name)) &&
	    !in_force(e, now))
		e = NULL;
	if (e)
		fill_info(e, info);
	pthread_rwlock_unlock(&b->lock);
	return e != NULL;
}

void moat_bans_each(struct moat_bans *b, int64_t now,
		    void (*fn)(void *ctx, const struct moat_ban_info *info), void *ctx)
{
	struct moat_ban_info info;
	size_t i;

	if (!b || !fn)
		return;
	bump(b, now);
	pthread_rwlock_rdlock(&b->lock);
	for (i = 0; i < b->hn; i++) {
		if (!in_force(b->heap[i], now))
			continue;
		fill_info(b->heap[i], &info);
		fn(ctx, &info);
	}
	pthread_rwlock_unlock(&b->lock);
}

size_t moat_bans_count(struct moat_bans *b, int64_t now)
{
	size_t n;

	if (!b)
		return 0;
	bump(b, now);
	pthread_rwlock_wrlock(&b->lock);
	purge(b);
	n = b->hn;
	pthread_rwlock_unlock(&b->lock);
	return n;
}

/* ---- the bans file: writing ---- */

static int64_t sat_add(int64_t x, int64_t y)
{
	int64_t r;

	if (__builtin_add_overflow(x, y, &r))
		return y > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/* The wall-clock second (rounded up, in 1..UNTIL_MAX_S) of monotonic until_ms. */
static int64_t to_wall(int64_t until_ms, int64_t now_ms, int64_t wall_s)
{
	int64_t rem = sat_add(until_ms, now_ms == INT64_MIN ? INT64_MAX : -now_ms), s;

	s = sat_add(wall_s, rem / 1000 + (rem % 1000 != 0));
	return s < 1 ? 1 : s > UNTIL_MAX_S ? UNTIL_MAX_S : s;
}

/* The monotonic ms of wall-clock second until_s (> wall_s); at least 1. */
static int64_t to_mono(int64_t until_s, int64_t now_ms, int64_t wall_s)
{
	int64_t d, ms;

	if (__builtin_sub_overflow(until_s, wall_s, &d) || __builtin_mul_overflow(d, 1000, &ms))
		ms = INT64_MAX;
	ms = sat_add(now_ms, ms);
	return ms < 1 ? 1 : ms;
}

struct text {
	char *p;
	size_t n, cap;
};

static int text_line(struct text *t, const struct ban *e, int64_t now_ms, int64_t wall_s)
{
	const char *r = reason_of(e);
	long long until = e->until_ms ? (long long)to_wall(e->until_ms, now_ms, wall_s) : 0;

	if (!moat_grow((void **)&t->p, &t->cap, t->n + LINE_MAX_BYTES, 1))
		return MOAT_ENOMEM;
	t->n += (size_t)snprintf(t->p + t->n, t->cap - t->n, "%s %s %lld%s%s\n",
				 kind_names[e->id.kind], e->text, until, *r ? " " : "", r);
	return 0;
}

/* The file's text: a comment, then a line per ban in force at now_ms. */
static int format_bans(struct moat_bans *b, struct text *t, int64_t now_ms, int64_t wall_s)
{
	static const char head[] = "# moat bans: KIND KEY UNTIL REASON "
				   "(UNTIL in seconds since the epoch, 0 = never)\n";
	size_t i;

	if (!moat_grow((void **)&t->p, &t->cap, sizeof(head), 1))
		return MOAT_ENOMEM;
	memcpy(t->p, head, sizeof(head) - 1);
	t->n = sizeof(head) - 1;
	for (i = 0; i < b->hn; i++)
		if (in_force(b->heap[i], now_ms) && text_line(t, b->heap[i], now_ms, wall_s) < 0)
			return MOAT_ENOMEM;
	return 0;
}

int moat_bans_format(struct moat_bans *b, int64_t now_ms, int64_t wall_s, char **out, size_t *n)
{
	struct text t = {0};
	int rc;

	bump(b, now_ms);
	pthread_rwlock_rdlock(&b->lock);
	rc = format_bans(b, &t, now_ms, wall_s);
	pthread_rwlock_unlock(&b->lock);
	if (rc < 0) {
		free(t.p);
		return rc;
	}
	*out = t.p;
	*n = t.n;
	return 0;
}

int moat_bans_save(struct moat_bans *b, const char *path, int64_t now_ms, int64_t wall_s,
		   char *err, size_t errlen)
{
	char *text;
	size_t n;
	int rc;

	if (!b || !path)
		return MOAT_EINVAL;
	if ((rc = moat_bans_format(b, now_ms, wall_s, &text, &n)) < 0) {
		moat_set_err(err, errlen, "%s: out of memory", path);
		return rc;
	}
	rc = moat_file_replace(path, text, n, err, errlen);
	free(text);
	return rc;
}

/* ---- the bans file: reading ---- */

struct parse {
	const char *name;
	int64_t now_ms, wall_s;
	size_t max;
	struct step *v; /* the bans read, to place */
	size_t n, cap;
	char *err;
	size_t errlen;
};

static int why(struct parse *p, size_t line, int rc, const char *msg)
{
	moat_set_err(p->err, p->errlen, "%s:%zu: %s", p->name, line, msg);
	return rc;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The next blank-separated word of s[*pos..n): its start and length (0 at the end). */
static size_t word(const char *s, size_t n, size_t *pos, const char **w)
{
	size_t i = *pos, start;

	while (i < n && blank(s[i]))
		i++;
	start = i;
	while (i < n && !blank(s[i]))
		i++;
	*pos = i;
	*w = s + start;
	return i - start;
}

/* UNTIL: decimal, no sign, no leading zero, at most UNTIL_MAX_S. -1 if not. */
static int64_t parse_until(const char *s, size_t n)
{
	int64_t v = 0;
	size_t i;

	if (n == 0 || (s[0] == '0' && n > 1))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || v > (UNTIL_MAX_S - (s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int kind_of(const char *w, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
		if (strlen(kind_names[i]) == n && memcmp(w, kind_names[i], n) == 0)
			return (int)i;
	return -1;
}

static bool has_control(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
			return true;
	return false;
}

/* Checks and builds the ban of the fields of one line (kind is valid). */
static int stage_ban(struct parse *p, size_t line, int kind, const char *kw, size_t kn,
		     const char *uw, size_t un, const char *r, size_t rn)
{
	char msg[64], rbuf[REASON_MAX_BYTES + 1];
	struct key k;
	int64_t until;
	struct ban *e;

	if (parse_key((enum moat_ban_kind)kind, kw, kn, &k) < 0)
		return why(p, line, MOAT_ECONFIG,
			   kind == MOAT_BAN_ADDR ? "bad address or CIDR"
						 : "bad name (1 to 255 bytes, no space or control)");
	if ((until = parse_until(uw, un)) < 0)
		return why(p, line, MOAT_ECONFIG, "bad UNTIL (seconds since the epoch, 0 = never)");
	if (rn > REASON_MAX_BYTES)
		return why(p, line, MOAT_ECONFIG, "reason longer than 127 bytes");
	if (has_control(r, rn))
		return why(p, line, MOAT_ECONFIG, "control character in the reason");
	if (until && until <= p->wall_s)
		return 0; /* over */
	if (p->n >= p->max) {
		snprintf(msg, sizeof(msg), "more than %zu bans", p->max);
		return why(p, line, MOAT_ECONFIG, msg);
	}
	rn = clean_reason(r, rn, rbuf);
	if (!moat_grow((void **)&p->v, &p->cap, p->n + 1, sizeof(*p->v)) ||
	    !(e = ban_new(&k, until ? to_mono(until, p->now_ms, p->wall_s) : 0, rbuf, rn)))
		return why(p, line, MOAT_ENOMEM, "out of memory");
	p->v[p->n++] = (struct step){e, NULL, S_NONE};
	return 0;
}

/* Parses line number line (s[0..n), no newline) into p. Returns 0 or MOAT_E*. */
static int stage_line(struct parse *p, const char *s, size_t n, size_t line)
{
	const char *kw, *keyw, *uw;
	size_t kn, keyn, un, pos = 0;
	int kind;

	if (n > LINE_MAX_BYTES)
		return why(p, line, MOAT_ECONFIG, "line longer than 1024 bytes");
	if (n > 0 && s[n - 1] == '\r')
		n--;
	if (memchr(s, '\0', n))
		return why(p, line, MOAT_ECONFIG, "NUL byte");
	kn = word(s, n, &pos, &kw);
	if (kn == 0 || kw[0] == '#')
		return 0;
	keyn = word(s, n, &pos, &keyw);
	un = word(s, n, &pos, &uw);
	if (un == 0)
		return why(p, line, MOAT_ECONFIG, "expected KIND KEY UNTIL [REASON]");
	if ((kind = kind_of(kw, kn)) < 0)
		return why(p, line, MOAT_ECONFIG, "unknown kind (addr, clientid or username)");
	while (pos < n && blank(s[pos]))
		pos++;
	while (n > pos && blank(s[n - 1]))
		n--;
	return stage_ban(p, line, kind, keyw, keyn, uw, un, s + pos, n - pos);
}

static void parse_free(struct parse *p, bool placed)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		if (!placed || p->v[i].what == S_NONE)
			free(p->v[i].e);
		if (placed)
			free(p->v[i].old);
	}
	free(p->v);
}

/* Places every ban of p, or none (write lock taken here). */
static int commit(struct moat_bans *b, struct parse *p)
{
	size_t i = 0;
	int rc = 0;

	bump(b, p->now_ms);
	pthread_rwlock_wrlock(&b->lock);
	purge(b);
	if (!moat_grow((void **)&b->heap, &b->hcap, b->hn + p->n, sizeof(*b->heap)))
		rc = MOAT_ENOMEM;
	for (; rc == 0 && i < p->n; i++)
		if ((rc = place(b, p->v[i].e, false, &p->v[i])) == MOAT_EDENIED)
			rc = 0; /* the allow-list now covers it: not banned */
	if (rc < 0) {
		moat_set_err(p->err, p->errlen, "%s: %s", p->name,
		       b->hn >= b->max ? "the bans table is full" : "out of memory");
		while (i-- > 0)
			unplace(b, &p->v[i]);
	}
	pthread_rwlock_unlock(&b->lock);
	parse_free(p, rc == 0);
	return rc;
}

static void parse_init(struct parse *p, struct moat_bans *b, const char *name, int64_t now_ms,
		       int64_t wall_s, char *err, size_t errlen)
{
	*p = (struct parse){.name = name ? name : "bans", .now_ms = now_ms, .wall_s = wall_s,
			    .err = err, .errlen = errlen};
	pthread_rwlock_rdlock(&b->lock);
	p->max = b->max; /* a first bound; commit holds to the one in force then */
	pthread_rwlock_unlock(&b->lock);
}

int moat_bans_parse(struct moat_bans *b, const char *text, size_t n, const char *name,
		    int64_t now_ms, int64_t wall_s, char *err, size_t errlen)
{
	struct parse p;
	size_t off = 0, line = 1;
	int rc = 0;

	if (!b || (!text && n))
		return MOAT_EINVAL;
	parse_init(&p, b, name, now_ms, wall_s, err, errlen);
	for (; rc == 0 && off < n; line++) {
		const char *nl = memchr(text + off, '\n', n - off);
		size_t end = nl ? (size_t)(nl - text) : n;

		rc = stage_line(&p, text + off, end - off, line);
		off = end + 1;
	}
	if (rc < 0) {
		parse_free(&p, false);
		return rc;
	}
	return commit(b, &p);
}

/* Reads a line into buf (at most cap bytes kept). 1 = a line, 0 = end of file. */
static int read_line(FILE *f, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;
	int c;

	while ((c = getc_unlocked(f)) != EOF && c != '\n')
		if (n < cap)
			buf[n++] = (char)c;
	*len = n;
	return c != EOF || n > 0;
}

int moat_bans_load(struct moat_bans *b, const char *path, int64_t now_ms, int64_t wall_s,
		   char *err, size_t errlen)
{
	char buf[LINE_MAX_BYTES + 1];
	struct parse p;
	size_t n, line = 1;
	FILE *f;
	int rc = 0;

	if (!b || !path)
		return MOAT_EINVAL;
	if (!(f = fopen(path, "re"))) {
		if (errno == ENOENT)
			return 0;
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		return MOAT_EIO;
	}
	parse_init(&p, b, path, now_ms, wall_s, err, errlen);
	while (rc == 0 && read_line(f, buf, sizeof(buf), &n))
		rc = stage_line(&p, buf, n, line++);
	if (rc == 0 && ferror(f)) {
		moat_set_err(err, errlen, "%s: read error", path);
		rc = MOAT_EIO;
	}
	fclose(f);
	if (rc < 0) {
		parse_free(&p, false);
		return rc;
	}
	return commit(b, &p);
}
