/*
 * mem.h - accounted allocation.
 *
 * Memory that a remote peer can make us hold (buffers, queues, sessions) is
 * allocated against a struct moat_mem account. An account has a limit; an
 * allocation that would pass it fails with NULL instead of taking memory from
 * everyone else, and the caller drops the client that asked for it. Accounts
 * may be shared between threads: the counters are atomic (relaxed), which is
 * enough because they are budgets, not synchronisation.
 *
 * Nothing here aborts on exhaustion: code a peer can reach must survive it.
 */
#ifndef MOAT_CORE_MEM_H
#define MOAT_CORE_MEM_H

#include <stdatomic.h>
#include <stddef.h>

struct moat_mem {
	_Atomic size_t used;   /* bytes currently held */
	_Atomic size_t peak;   /* highest value of used */
	size_t limit;          /* 0 = unlimited */
	struct moat_mem *parent; /* charged too, if not NULL (e.g. a global ceiling) */
};

/* Initialises an account with the given limit (0 = unlimited) and optional parent. */
void moat_mem_init(struct moat_mem *m, size_t limit, struct moat_mem *parent);

/*
 * Returns owned memory of n bytes (free with moat_mem_free(m, p, n)), or NULL
 * when n is 0, the allocator fails, or the account (or a parent) would pass its
 * limit. m may be NULL for an unaccounted allocation.
 */
void *moat_mem_alloc(struct moat_mem *m, size_t n);

/* As moat_mem_alloc, zero-filled. */
void *moat_mem_calloc(struct moat_mem *m, size_t n);

/*
 * Resizes p from old to n bytes. On failure returns NULL and p is untouched and
 * still owned by the caller. realloc(NULL, 0, n) allocates.
 */
void *moat_mem_realloc(struct moat_mem *m, void *p, size_t old, size_t n);

/* Frees p of size n bytes charged to m. moat_mem_free(m, NULL, 0) is a no-op. */
void moat_mem_free(struct moat_mem *m, void *p, size_t n);

/* Bytes currently charged to m. */
size_t moat_mem_used(const struct moat_mem *m);

#endif
