/*
 * fault_alloc.h - allocation failures for the unit tests.
 *
 * Outside AddressSanitizer and ThreadSanitizer builds (which own malloc), a
 * test that includes this header replaces malloc, calloc and realloc, as
 * glibc allows, by versions that fail once a budget is spent; libc's own
 * allocations (strdup, fopen, opendir, realpath) go through them too.
 *
 * Set alloc_budget to the number of allocations that may still succeed
 * (-1, the default, for no limit); check ALLOC_FAULTS first, since under a
 * sanitizer the budget is ignored.
 *
 * It defines the replacements, not only declares them: include it from one
 * file per test binary (each unit test is a single .c file).
 */
#ifndef MOAT_TESTS_FAULT_ALLOC_H
#define MOAT_TESTS_FAULT_ALLOC_H

#include <errno.h>
#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ALLOC_FAULTS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ALLOC_FAULTS 0
#endif
#endif
#ifndef ALLOC_FAULTS
#define ALLOC_FAULTS 1
#endif

static long alloc_budget = -1; /* allocations that may still succeed; -1 = no limit */

#if ALLOC_FAULTS
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

static int spend(void)
{
	if (alloc_budget < 0)
		return 1;
	if (alloc_budget == 0) {
		errno = ENOMEM;
		return 0;
	}
	alloc_budget--;
	return 1;
}

void *malloc(size_t n)
{
	return spend() ? __libc_malloc(n) : NULL;
}

void *calloc(size_t n, size_t size)
{
	return spend() ? __libc_calloc(n, size) : NULL;
}

void *realloc(void *p, size_t n)
{
	return spend() ? __libc_realloc(p, n) : NULL;
}
#endif

#endif
