/*
 * rwlock.h - reader-writer locks that do not starve writers.
 *
 * The shared indexes are read on every PUBLISH; with glibc's default
 * (readers first) a steady stream of publishes could hold off a SUBSCRIBE
 * forever, so writers go first.
 */
#ifndef MOAT_CORE_RWLOCK_H
#define MOAT_CORE_RWLOCK_H

#include <pthread.h>

static inline void moat_rwlock_init(pthread_rwlock_t *l)
{
	pthread_rwlockattr_t attr;

	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(l, &attr);
	pthread_rwlockattr_destroy(&attr);
}

#endif
