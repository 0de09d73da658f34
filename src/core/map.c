/*
 * map.c - hash map (see map.h).
 */
#include "core/map.h"

#include <string.h>
#include <sys/random.h>

#include "core/error.h"

static uint64_t k0 = 0x736f6d6570736575ull, k1 = 0x646f72616e646f6dull;

void moat_hash_seed(void)
{
	uint64_t k[2];
	if (getrandom(k, sizeof(k), 0) == (ssize_t)sizeof(k)) {
		k0 = k[0];
		k1 = k[1];
	}
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                   \
	do {                                                                       \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);          \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                             \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                             \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);          \
	} while (0)

uint64_t moat_hash(const void *data, size_t n)
{
	const uint8_t *p = data;
	uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
	uint64_t b = (uint64_t)n << 56, m;
	size_t i, tail = n & 7;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&m, p + i, 8);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t j = 0; j < tail; j++)
		b |= (uint64_t)p[i + j] << (8 * j);
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

void moat_map_init(struct moat_map *m, struct moat_mem *mem)
{
	memset(m, 0, sizeof(*m));
	m->mem = mem;
}

void moat_map_free(struct moat_map *m)
{
	moat_mem_free(m->mem, m->e, m->cap * sizeof(*m->e));
	m->e = NULL;
	m->cap = m->len = 0;
}

static size_t find(const struct moat_map *m, uint64_t h, const void *key, size_t klen)
{
	size_t mask = m->cap - 1, i = h & mask;

	while (m->e[i].key) {
		if (m->e[i].hash == h && m->e[i].klen == klen && memcmp(m->e[i].key, key, klen) == 0)
			return i;
		i = (i + 1) & mask;
	}
	return i;
}

void *moat_map_get(const struct moat_map *m, const void *key, size_t klen)
{
	size_t i;

	if (!m->len)
		return NULL;
	i = find(m, moat_hash(key, klen), key, klen);
	return m->e[i].key ? m->e[i].val : NULL;
}

static int grow(struct moat_map *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 8, i;
	struct moat_map_entry *old = m->e, *ne = moat_mem_calloc(m->mem, ncap * sizeof(*ne));
	size_t ocap = m->cap;

	if (!ne)
		return MOAT_ENOMEM;
	m->e = ne;
	m->cap = ncap;
	for (i = 0; i < ocap; i++)
		if (old[i].key)
			m->e[find(m, old[i].hash, old[i].key, old[i].klen)] = old[i];
	moat_mem_free(m->mem, old, ocap * sizeof(*old));
	return 0;
}

int moat_map_put(struct moat_map *m, const void *key, size_t klen, void *val)
{
	uint64_t h = moat_hash(key, klen);
	size_t i;

	if ((m->len + 1) * 4 > m->cap * 3 && grow(m) < 0)
		return MOAT_ENOMEM;
	i = find(m, h, key, klen);
	if (!m->e[i].key)
		m->len++;
	m->e[i] = (struct moat_map_entry){h, key, klen, val};
	return 0;
}

void *moat_map_del(struct moat_map *m, const void *key, size_t klen)
{
	size_t mask, i, j;
	void *val;

	if (!m->len)
		return NULL;
	mask = m->cap - 1;
	i = find(m, moat_hash(key, klen), key, klen);
	if (!m->e[i].key)
		return NULL;
	val = m->e[i].val;
	/* Backward shift: pull later entries of the probe run into the hole. */
	for (j = (i + 1) & mask; m->e[j].key; j = (j + 1) & mask) {
		size_t home = m->e[j].hash & mask;
		/* Move e[j] to the hole if its home is not in (i, j] cyclically. */
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			m->e[i] = m->e[j];
			i = j;
		}
	}
	m->e[i].key = NULL;
	m->len--;
	return val;
}

void *moat_map_next(const struct moat_map *m, size_t *pos, const void **key, size_t *klen)
{
	while (*pos < m->cap) {
		const struct moat_map_entry *e = &m->e[(*pos)++];
		if (e->key) {
			if (key)
				*key = e->key;
			if (klen)
				*klen = e->klen;
			return e->val;
		}
	}
	return NULL;
}
