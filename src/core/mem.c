/*
 * mem.c - accounted allocation (see mem.h).
 *
 * charge() reserves bytes on the account and each parent before the allocator
 * is called, and rolls the reservation back if any level is over its limit or
 * the allocator fails, so two threads racing for the last bytes cannot both win.
 */
#include "core/mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void moat_mem_init(struct moat_mem *m, size_t limit, struct moat_mem *parent)
{
	atomic_init(&m->used, 0);
	atomic_init(&m->peak, 0);
	m->limit = limit;
	m->parent = parent;
}

static void uncharge(struct moat_mem *m, size_t n, const struct moat_mem *stop)
{
	for (; m != stop; m = m->parent)
		atomic_fetch_sub_explicit(&m->used, n, memory_order_relaxed);
}

static void raise_peak(struct moat_mem *m, size_t now)
{
	size_t peak = atomic_load_explicit(&m->peak, memory_order_relaxed);
	while (now > peak &&
	       !atomic_compare_exchange_weak_explicit(&m->peak, &peak, now,
						      memory_order_relaxed,
						      memory_order_relaxed))
		;
}

/* Reserves n bytes on one account unless that would pass its limit. */
static bool reserve(struct moat_mem *a, size_t n, size_t *after)
{
	size_t before = atomic_load_explicit(&a->used, memory_order_relaxed);

	do {
		if (before + n < before || (a->limit && before + n > a->limit))
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&a->used, &before, before + n,
							memory_order_relaxed, memory_order_relaxed));
	*after = before + n;
	return true;
}

/*
 * Returns 0 if n bytes were reserved on m and every parent, -1 otherwise.
 * A compare-and-swap per level means `used` never shows more than is held,
 * so one thread's refused request cannot make another's fitting one fail.
 * Peaks are raised only once every level has accepted.
 */
static int charge(struct moat_mem *m, size_t n)
{
	struct moat_mem *a;
	size_t after;

	for (a = m; a; a = a->parent) {
		if (!reserve(a, n, &after)) {
			uncharge(m, n, a);
			return -1;
		}
	}
	for (a = m; a; a = a->parent)
		raise_peak(a, atomic_load_explicit(&a->used, memory_order_relaxed));
	return 0;
}

void *moat_mem_alloc(struct moat_mem *m, size_t n)
{
	void *p;

	if (n == 0)
		return NULL;
	if (m && charge(m, n) < 0)
		return NULL;
	p = malloc(n);
	if (!p && m)
		uncharge(m, n, NULL);
	return p;
}

void *moat_mem_calloc(struct moat_mem *m, size_t n)
{
	void *p = moat_mem_alloc(m, n);
	if (p)
		memset(p, 0, n);
	return p;
}

void *moat_mem_realloc(struct moat_mem *m, void *p, size_t old, size_t n)
{
	void *q;

	if (!p)
		return moat_mem_alloc(m, n);
	if (n == 0)
		return NULL;
	if (n > old && m && charge(m, n - old) < 0)
		return NULL;
	q = realloc(p, n);
	if (!q) {
		if (n > old && m)
			uncharge(m, n - old, NULL);
		return NULL;
	}
	if (n < old && m)
		uncharge(m, old - n, NULL);
	return q;
}

void moat_mem_free(struct moat_mem *m, void *p, size_t n)
{
	if (!p)
		return;
	free(p);
	if (m)
		uncharge(m, n, NULL);
}

size_t moat_mem_used(const struct moat_mem *m)
{
	return atomic_load_explicit(&m->used, memory_order_relaxed);
}
