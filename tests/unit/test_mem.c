/*
 * test_mem.c - unit tests for struct moat_mem accounting (src/core/mem.c).
 *
 * Covers: alloc / calloc / realloc / free keep `used` and `peak` exact; a
 * limit refuses an allocation that would pass it and leaves `used` as it
 * was; parent accounts are charged too and their limits enforced (a child
 * under its own limit fails when a parent is full, and nothing stays charged
 * anywhere after the refusal); realloc growth past a limit fails and leaves
 * the old block valid and owned; realloc shrink; moat_mem_free(m, NULL, 0)
 * is a no-op; alloc(0) returns NULL; size overflow is refused; and two
 * threads racing on one limited account: `used` is never seen above the
 * limit, an allocation that fits is never refused because of another
 * thread's refused one, and everything ends at 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "core/mem.h"

static size_t peak_of(struct moat_mem *m)
{
	return atomic_load(&m->peak);
}

static void test_init(void **state)
{
	struct moat_mem parent, m;

	(void)state;
	moat_mem_init(&parent, 0, NULL);
	moat_mem_init(&m, 123, &parent);
	assert_int_equal(moat_mem_used(&m), 0);
	assert_int_equal(peak_of(&m), 0);
	assert_int_equal(m.limit, 123);
	assert_ptr_equal(m.parent, &parent);
}

static void test_alloc_free_counts(void **state)
{
	struct moat_mem m;
	uint8_t *a, *b;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	a = moat_mem_alloc(&m, 100);
	assert_non_null(a);
	memset(a, 0xAA, 100);
	assert_int_equal(moat_mem_used(&m), 100);
	assert_int_equal(peak_of(&m), 100);
	b = moat_mem_alloc(&m, 28);
	assert_non_null(b);
	assert_int_equal(moat_mem_used(&m), 128);
	assert_int_equal(peak_of(&m), 128);
	moat_mem_free(&m, a, 100);
	assert_int_equal(moat_mem_used(&m), 28);
	assert_int_equal(peak_of(&m), 128); /* peak is a high-water mark */
	a = moat_mem_alloc(&m, 50);
	assert_non_null(a);
	assert_int_equal(moat_mem_used(&m), 78);
	assert_int_equal(peak_of(&m), 128);
	moat_mem_free(&m, a, 50);
	moat_mem_free(&m, b, 28);
	assert_int_equal(moat_mem_used(&m), 0);
	assert_int_equal(peak_of(&m), 128);
}

static void test_calloc_zeroes_and_counts(void **state)
{
	struct moat_mem m;
	uint8_t *p;
	size_t i;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	/* dirty the heap first so a zero result means something */
	p = moat_mem_alloc(&m, 4096);
	assert_non_null(p);
	memset(p, 0xFF, 4096);
	moat_mem_free(&m, p, 4096);
	p = moat_mem_calloc(&m, 4096);
	assert_non_null(p);
	for (i = 0; i < 4096; i++)
		assert_int_equal(p[i], 0);
	assert_int_equal(moat_mem_used(&m), 4096);
	moat_mem_free(&m, p, 4096);
	assert_int_equal(moat_mem_used(&m), 0);
	assert_null(moat_mem_calloc(&m, 0));
	assert_int_equal(moat_mem_used(&m), 0);
}

static void test_realloc_grow_shrink(void **state)
{
	struct moat_mem m;
	uint8_t *p, *q;
	size_t i;

	(void)state;
	moat_mem_init(&m, 0, NULL);
	p = moat_mem_realloc(&m, NULL, 0, 64); /* realloc(NULL, 0, n) allocates */
	assert_non_null(p);
	assert_int_equal(moat_mem_used(&m), 64);
	for (i = 0; i < 64; i++)
		p[i] = (uint8_t)i;
	q = moat_mem_realloc(&m, p, 64, 10000);
	assert_non_null(q);
	assert_int_equal(moat_mem_used(&m), 10000);
	assert_int_equal(peak_of(&m), 10000);
	for (i = 0; i < 64; i++)
		assert_int_equal(q[i], (uint8_t)i);
	memset(q + 64, 0x5A, 10000 - 64);
	p = moat_mem_realloc(&m, q, 10000, 32); /* shrink */
	assert_non_null(p);
	assert_int_equal(moat_mem_used(&m), 32);
	assert_int_equal(peak_of(&m), 10000);
	for (i = 0; i < 32; i++)
		assert_int_equal(p[i], (uint8_t)i);
	q = moat_mem_realloc(&m, p, 32, 32); /* same size */
	assert_non_null(q);
	assert_int_equal(moat_mem_used(&m), 32);
	moat_mem_free(&m, q, 32);
	assert_int_equal(moat_mem_used(&m), 0);
}

static void test_limit_refuses(void **state)
{
	struct moat_mem m;
	void *a, *b, *c;

	(void)state;
	moat_mem_init(&m, 100, NULL);
	a = moat_mem_alloc(&m, 60);
	assert_non_null(a);
	assert_null(moat_mem_alloc(&m, 41)); /* 101 > 100 */
	assert_int_equal(moat_mem_used(&m), 60);
	assert_int_equal(peak_of(&m), 60); /* a refusal does not raise the peak */
	assert_null(moat_mem_calloc(&m, 41));
	assert_int_equal(moat_mem_used(&m), 60);
	b = moat_mem_alloc(&m, 40); /* exactly the limit */
	assert_non_null(b);
	assert_int_equal(moat_mem_used(&m), 100);
	assert_null(moat_mem_alloc(&m, 1));
	assert_int_equal(moat_mem_used(&m), 100);
	moat_mem_free(&m, a, 60);
	c = moat_mem_alloc(&m, 60); /* room again after a free */
	assert_non_null(c);
	moat_mem_free(&m, b, 40);
	moat_mem_free(&m, c, 60);
	assert_int_equal(moat_mem_used(&m), 0);
	assert_int_equal(peak_of(&m), 100);
	/* a single allocation larger than the whole limit */
	assert_null(moat_mem_alloc(&m, 101));
	assert_int_equal(moat_mem_used(&m), 0);
	a = moat_mem_alloc(&m, 100);
	assert_non_null(a);
	moat_mem_free(&m, a, 100);
}

static void test_size_overflow_refused(void **state)
{
	struct moat_mem m, lim;
	void *a, *b;

	(void)state;
	/* unlimited account holding bytes: used + n would wrap around */
	moat_mem_init(&m, 0, NULL);
	a = moat_mem_alloc(&m, 16);
	assert_non_null(a);
	assert_null(moat_mem_alloc(&m, SIZE_MAX - 5));
	assert_int_equal(moat_mem_used(&m), 16);
	b = moat_mem_alloc(&m, 64);
	assert_non_null(b);
	/* growth of SIZE_MAX - 36 on top of 80 used wraps around too */
	assert_null(moat_mem_realloc(&m, a, 16, SIZE_MAX - 20));
	assert_int_equal(moat_mem_used(&m), 80);
	moat_mem_free(&m, a, 16);
	moat_mem_free(&m, b, 64);
	assert_int_equal(moat_mem_used(&m), 0);
	/* limited account: refused before the allocator is asked */
	moat_mem_init(&lim, 1000, NULL);
	assert_null(moat_mem_alloc(&lim, SIZE_MAX));
	assert_int_equal(moat_mem_used(&lim), 0);
}

static void test_parent_charged(void **state)
{
	struct moat_mem root, mid, leaf, other;
	void *a, *b;

	(void)state;
	moat_mem_init(&root, 0, NULL);
	moat_mem_init(&mid, 0, &root);
	moat_mem_init(&leaf, 0, &mid);
	moat_mem_init(&other, 0, &root);
	a = moat_mem_alloc(&leaf, 300);
	assert_non_null(a);
	b = moat_mem_alloc(&other, 20);
	assert_non_null(b);
	assert_int_equal(moat_mem_used(&leaf), 300);
	assert_int_equal(moat_mem_used(&mid), 300);
	assert_int_equal(moat_mem_used(&other), 20);
	assert_int_equal(moat_mem_used(&root), 320);
	assert_int_equal(peak_of(&root), 320);
	a = moat_mem_realloc(&leaf, a, 300, 500);
	assert_non_null(a);
	assert_int_equal(moat_mem_used(&leaf), 500);
	assert_int_equal(moat_mem_used(&mid), 500);
	assert_int_equal(moat_mem_used(&root), 520);
	a = moat_mem_realloc(&leaf, a, 500, 100);
	assert_non_null(a);
	assert_int_equal(moat_mem_used(&mid), 100);
	assert_int_equal(moat_mem_used(&root), 120);
	assert_int_equal(peak_of(&mid), 500);
	assert_int_equal(peak_of(&root), 520);
	moat_mem_free(&leaf, a, 100);
	moat_mem_free(&other, b, 20);
	assert_int_equal(moat_mem_used(&leaf), 0);
	assert_int_equal(moat_mem_used(&mid), 0);
	assert_int_equal(moat_mem_used(&other), 0);
	assert_int_equal(moat_mem_used(&root), 0);
}

static void test_parent_limit_enforced(void **state)
{
	struct moat_mem root, a_acc, b_acc;
	void *a, *b, *c;

	(void)state;
	moat_mem_init(&root, 100, NULL);
	moat_mem_init(&a_acc, 1000, &root);
	moat_mem_init(&b_acc, 0, &root);
	a = moat_mem_alloc(&a_acc, 70);
	assert_non_null(a);
	/* b is far under its own (absent) limit, but the parent is nearly full */
	assert_null(moat_mem_alloc(&b_acc, 31));
	assert_int_equal(moat_mem_used(&b_acc), 0);
	assert_int_equal(moat_mem_used(&root), 70);
	assert_int_equal(moat_mem_used(&a_acc), 70);
	/* a is under its limit of 1000, the parent is not */
	assert_null(moat_mem_alloc(&a_acc, 50));
	assert_int_equal(moat_mem_used(&a_acc), 70);
	assert_int_equal(moat_mem_used(&root), 70);
	/* a realloc that the parent cannot hold */
	assert_null(moat_mem_realloc(&a_acc, a, 70, 101));
	assert_int_equal(moat_mem_used(&a_acc), 70);
	assert_int_equal(moat_mem_used(&root), 70);
	b = moat_mem_alloc(&b_acc, 30); /* fills the parent exactly */
	assert_non_null(b);
	assert_int_equal(moat_mem_used(&root), 100);
	assert_null(moat_mem_alloc(&a_acc, 1));
	assert_null(moat_mem_alloc(&b_acc, 1));
	assert_int_equal(moat_mem_used(&root), 100);
	moat_mem_free(&a_acc, a, 70);
	c = moat_mem_alloc(&b_acc, 70);
	assert_non_null(c);
	assert_int_equal(moat_mem_used(&b_acc), 100);
	moat_mem_free(&b_acc, b, 30);
	moat_mem_free(&b_acc, c, 70);
	assert_int_equal(moat_mem_used(&root), 0);
	assert_int_equal(moat_mem_used(&a_acc), 0);
	assert_int_equal(moat_mem_used(&b_acc), 0);
	assert_true(peak_of(&root) <= 100);
}

/*
 * peak is "the highest value of used", and used is "bytes currently held": an
 * allocation the parent refused was never held by the child, so it must not
 * show in the child's peak.
 */
static void test_refused_by_parent_leaves_child_peak(void **state)
{
	struct moat_mem root, child;
	size_t child_peak;
	void *a;

	(void)state;
	moat_mem_init(&root, 100, NULL);
	moat_mem_init(&child, 0, &root);

	a = moat_mem_alloc(&child, 10);
	assert_non_null(a);
	assert_null(moat_mem_alloc(&child, 91));
	assert_int_equal(moat_mem_used(&child), 10);
	assert_int_equal(moat_mem_used(&root), 10);
	child_peak = peak_of(&child);
	moat_mem_free(&child, a, 10);
	assert_int_equal(peak_of(&root), 10);
	assert_int_equal(child_peak, 10);
}

static void test_child_limit_with_parent_room(void **state)
{
	struct moat_mem root, child;
	void *a;

	(void)state;
	moat_mem_init(&root, 1000, NULL);
	moat_mem_init(&child, 50, &root);
	assert_null(moat_mem_alloc(&child, 51));
	assert_int_equal(moat_mem_used(&child), 0);
	assert_int_equal(moat_mem_used(&root), 0); /* nothing left charged on the parent */
	assert_int_equal(peak_of(&root), 0);
	a = moat_mem_alloc(&child, 50);
	assert_non_null(a);
	assert_int_equal(moat_mem_used(&root), 50);
	moat_mem_free(&child, a, 50);
	assert_int_equal(moat_mem_used(&root), 0);
}

static void test_grandparent_refusal_rolls_back(void **state)
{
	struct moat_mem top, mid, leaf;
	void *a;

	(void)state;
	moat_mem_init(&top, 10, NULL);
	moat_mem_init(&mid, 100, &top);
	moat_mem_init(&leaf, 100, &mid);
	assert_null(moat_mem_alloc(&leaf, 11));
	assert_int_equal(moat_mem_used(&leaf), 0);
	assert_int_equal(moat_mem_used(&mid), 0);
	assert_int_equal(moat_mem_used(&top), 0);
	a = moat_mem_alloc(&leaf, 10);
	assert_non_null(a);
	assert_int_equal(moat_mem_used(&top), 10);
	assert_int_equal(moat_mem_used(&mid), 10);
	moat_mem_free(&leaf, a, 10);
	assert_int_equal(moat_mem_used(&top), 0);
	assert_int_equal(moat_mem_used(&mid), 0);
	assert_int_equal(moat_mem_used(&leaf), 0);
}

static void test_realloc_past_limit_keeps_old(void **state)
{
	struct moat_mem m;
	uint8_t *p, *q;
	size_t i;

	(void)state;
	moat_mem_init(&m, 256, NULL);
	p = moat_mem_alloc(&m, 200);
	assert_non_null(p);
	for (i = 0; i < 200; i++)
		p[i] = (uint8_t)(i * 7);
	assert_null(moat_mem_realloc(&m, p, 200, 257));
	assert_int_equal(moat_mem_used(&m), 200);
	assert_int_equal(peak_of(&m), 200);
	/* the old block is intact and still ours: read and write all of it */
	for (i = 0; i < 200; i++)
		assert_int_equal(p[i], (uint8_t)(i * 7));
	memset(p, 0x11, 200);
	/* growth to exactly the limit works */
	q = moat_mem_realloc(&m, p, 200, 256);
	assert_non_null(q);
	assert_int_equal(moat_mem_used(&m), 256);
	assert_int_equal(q[199], 0x11);
	moat_mem_free(&m, q, 256);
	assert_int_equal(moat_mem_used(&m), 0);
}

static void test_free_null_and_alloc_zero(void **state)
{
	struct moat_mem m;
	void *a;

	(void)state;
	moat_mem_init(&m, 100, NULL);
	a = moat_mem_alloc(&m, 10);
	assert_non_null(a);
	moat_mem_free(&m, NULL, 0);
	assert_int_equal(moat_mem_used(&m), 10);
	moat_mem_free(NULL, NULL, 0);
	assert_null(moat_mem_alloc(&m, 0));
	assert_int_equal(moat_mem_used(&m), 10);
	assert_null(moat_mem_alloc(NULL, 0));
	moat_mem_free(&m, a, 10);
	assert_int_equal(moat_mem_used(&m), 0);
}

static void test_unaccounted(void **state)
{
	uint8_t *p;

	(void)state;
	p = moat_mem_alloc(NULL, 32);
	assert_non_null(p);
	memset(p, 1, 32);
	p = moat_mem_realloc(NULL, p, 32, 64);
	assert_non_null(p);
	assert_int_equal(p[31], 1);
	moat_mem_free(NULL, p, 64);
	p = moat_mem_calloc(NULL, 8);
	assert_non_null(p);
	assert_int_equal(p[7], 0);
	moat_mem_free(NULL, p, 8);
}

/* ---- two threads on one account ---- */

#define RACE_LIMIT 4096
#define RACE_SLOTS 8
#define RACE_ITERS 50000

struct racer {
	struct moat_mem *m;
	uint64_t seed;
	size_t max_seen;   /* highest used observed by this thread */
	size_t successes;
	size_t refusals;
	bool bad_content;
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void observe(struct racer *r)
{
	size_t u = moat_mem_used(r->m);
	if (u > r->max_seen)
		r->max_seen = u;
}

static void *race_random(void *arg)
{
	struct racer *r = arg;
	uint8_t *blk[RACE_SLOTS] = {0};
	size_t sz[RACE_SLOTS] = {0};
	unsigned i, k;

	for (i = 0; i < RACE_ITERS; i++) {
		k = (unsigned)(xorshift(&r->seed) % RACE_SLOTS);
		if (blk[k]) {
			if (blk[k][0] != (uint8_t)k || blk[k][sz[k] - 1] != (uint8_t)k)
				r->bad_content = true;
			moat_mem_free(r->m, blk[k], sz[k]);
			blk[k] = NULL;
		} else {
			size_t n = 1 + (size_t)(xorshift(&r->seed) % 1024);
			blk[k] = xorshift(&r->seed) & 1 ? moat_mem_alloc(r->m, n)
							: moat_mem_realloc(r->m, NULL, 0, n);
			if (blk[k]) {
				sz[k] = n;
				memset(blk[k], (int)k, n);
				r->successes++;
			} else {
				r->refusals++;
			}
		}
		observe(r);
	}
	for (k = 0; k < RACE_SLOTS; k++)
		if (blk[k])
			moat_mem_free(r->m, blk[k], sz[k]);
	return NULL;
}

/*
 * Whether the threads really overlap depends on the machine's load, so the
 * race runs for several rounds; a correct account passes every round.
 */
#define RACE_ROUNDS 10

static void test_race_random(void **state)
{
	struct moat_mem m;
	struct racer r[2];
	pthread_t t[2];
	int i, round;

	(void)state;
	for (round = 0; round < RACE_ROUNDS; round++) {
		moat_mem_init(&m, RACE_LIMIT, NULL);
		for (i = 0; i < 2; i++) {
			memset(&r[i], 0, sizeof(r[i]));
			r[i].m = &m;
			r[i].seed = 0x1234567ull * (uint64_t)(i + 1) + (uint64_t)round;
		}
		for (i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&t[i], NULL, race_random, &r[i]), 0);
		for (i = 0; i < 2; i++)
			assert_int_equal(pthread_join(t[i], NULL), 0);
		/* everything was given back before anything is asserted */
		assert_int_equal(moat_mem_used(&m), 0);
		for (i = 0; i < 2; i++) {
			assert_false(r[i].bad_content);
			assert_true(r[i].successes > 0);
			assert_true(r[i].refusals > 0); /* the limit was actually contended */
			if (r[i].max_seen > RACE_LIMIT)
				fail_msg("round %d: thread %d saw used = %zu above the limit %u",
					 round, i, r[i].max_seen, RACE_LIMIT);
		}
		assert_true(peak_of(&m) <= RACE_LIMIT);
	}
}

/*
 * Thread "big" holds 800 bytes and keeps asking for 500 more, which can
 * never fit under 1000; thread "small" keeps taking and returning 100 bytes,
 * which always fits (real holdings never pass 900). Every refusal of the
 * small thread is wrong: a refused attempt must not make a fitting one fail.
 * And no thread may ever see used above the limit. The big thread's attempts
 * never reach the allocator, so it hammers the counter as fast as it can
 * while the small thread runs.
 */
#define FIT_LIMIT 1000
#define FIT_ITERS 20000
#define FIT_ROUNDS 30

struct fitter {
	struct moat_mem *m;
	atomic_bool *small_done;
	atomic_int *ready;
	bool big;
	size_t wrongly_refused;
	size_t wrongly_granted;
	size_t attempts;
	size_t max_seen;
};

static void *race_fit(void *arg)
{
	struct fitter *f = arg;
	unsigned i;
	size_t u;

	atomic_fetch_add(f->ready, 1);
	while (atomic_load(f->ready) < 2)
		;
	if (f->big) {
		void *a = moat_mem_alloc(f->m, 800);
		if (!a) {
			f->wrongly_refused++;
			return NULL;
		}
		while (!atomic_load_explicit(f->small_done, memory_order_relaxed)) {
			void *b = moat_mem_alloc(f->m, 500);
			f->attempts++;
			if (b) {
				f->wrongly_granted++;
				moat_mem_free(f->m, b, 500);
			}
			u = moat_mem_used(f->m);
			if (u > f->max_seen)
				f->max_seen = u;
		}
		moat_mem_free(f->m, a, 800);
		return NULL;
	}
	for (i = 0; i < FIT_ITERS; i++) {
		void *a = moat_mem_alloc(f->m, 100);
		f->attempts++;
		u = moat_mem_used(f->m);
		if (u > f->max_seen)
			f->max_seen = u;
		if (!a) {
			f->wrongly_refused++;
			continue;
		}
		moat_mem_free(f->m, a, 100);
	}
	atomic_store(f->small_done, true);
	return NULL;
}

static void test_race_refusal_does_not_starve_fitting(void **state)
{
	struct moat_mem m;
	struct fitter f[2];
	pthread_t t[2];
	atomic_bool small_done;
	atomic_int ready;
	int i, round;

	(void)state;
	for (round = 0; round < FIT_ROUNDS; round++) {
		moat_mem_init(&m, FIT_LIMIT, NULL);
		atomic_init(&small_done, false);
		atomic_init(&ready, 0);
		memset(f, 0, sizeof(f));
		for (i = 0; i < 2; i++) {
			f[i].m = &m;
			f[i].small_done = &small_done;
			f[i].ready = &ready;
		}
		f[1].big = true;
		for (i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&t[i], NULL, race_fit, &f[i]), 0);
		for (i = 0; i < 2; i++)
			assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(moat_mem_used(&m), 0);
		assert_int_equal(f[1].wrongly_granted, 0);
		assert_int_equal(f[0].attempts, FIT_ITERS);
		if (f[0].wrongly_refused || f[1].wrongly_refused)
			fail_msg("round %d: allocations that fit were refused: small thread %zu of "
				 "%zu times, big thread %zu times (while it made %zu refused "
				 "attempts)",
				 round, f[0].wrongly_refused, f[0].attempts, f[1].wrongly_refused,
				 f[1].attempts);
		for (i = 0; i < 2; i++)
			if (f[i].max_seen > FIT_LIMIT)
				fail_msg("round %d: thread %d saw used = %zu above the limit %u",
					 round, i, f[i].max_seen, FIT_LIMIT);
		assert_true(peak_of(&m) <= FIT_LIMIT);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_alloc_free_counts),
		cmocka_unit_test(test_calloc_zeroes_and_counts),
		cmocka_unit_test(test_realloc_grow_shrink),
		cmocka_unit_test(test_limit_refuses),
		cmocka_unit_test(test_size_overflow_refused),
		cmocka_unit_test(test_parent_charged),
		cmocka_unit_test(test_parent_limit_enforced),
		cmocka_unit_test(test_refused_by_parent_leaves_child_peak),
		cmocka_unit_test(test_child_limit_with_parent_room),
		cmocka_unit_test(test_grandparent_refusal_rolls_back),
		cmocka_unit_test(test_realloc_past_limit_keeps_old),
		cmocka_unit_test(test_free_null_and_alloc_zero),
		cmocka_unit_test(test_unaccounted),
		cmocka_unit_test(test_race_random),
		cmocka_unit_test(test_race_refusal_does_not_starve_fitting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
