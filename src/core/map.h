/*
 * map.h - a hash map from byte-string keys to pointers.
 *
 * Keys come from peers (client ids, topics), so the hash is SipHash-1-3
 * keyed with random bytes chosen once per process: a client cannot pick keys
 * that collide. Open addressing with linear probing and backward-shift
 * deletion (no tombstones), so a map that sees heavy churn does not rot.
 *
 * The map borrows keys: a key must stay valid and unchanged while its entry
 * is in the map (usually the key lives inside the value). Not thread-safe.
 */
#ifndef MOAT_CORE_MAP_H
#define MOAT_CORE_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/mem.h"

struct moat_map_entry {
	uint64_t hash;
	const void *key; /* NULL = empty slot */
	size_t klen;
	void *val;
};

struct moat_map {
	struct moat_map_entry *e;
	size_t cap; /* 0 or a power of two */
	size_t len;
	struct moat_mem *mem;
};

/* Seeds the process-wide hash key from the kernel's random source. Call once at start. */
void moat_hash_seed(void);

/* SipHash-1-3 of p[0..n) under the process key. */
uint64_t moat_hash(const void *p, size_t n);

void moat_map_init(struct moat_map *m, struct moat_mem *mem);

/* Frees the table (not the keys or values). */
void moat_map_free(struct moat_map *m);

/* Returns the value for key, or NULL. */
void *moat_map_get(const struct moat_map *m, const void *key, size_t klen);

/*
 * Inserts or replaces key -> val (val must not be NULL). Returns 0, or
 * MOAT_ENOMEM (the map is unchanged).
 */
int moat_map_put(struct moat_map *m, const void *key, size_t klen, void *val);

/* Removes key. Returns its value, or NULL if it was absent. */
void *moat_map_del(struct moat_map *m, const void *key, size_t klen);

/*
 * Iterates: start with *pos = 0; returns the next value (and its key) or
 * NULL at the end. The map must not change during iteration (deletion
 * shifts entries, so collect what to delete and delete afterwards).
 */
void *moat_map_next(const struct moat_map *m, size_t *pos, const void **key, size_t *klen);

#endif
