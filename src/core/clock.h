/*
 * clock.h - monotonic and wall-clock time in milliseconds.
 */
#ifndef MOAT_CORE_CLOCK_H
#define MOAT_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on the monotonic clock: for deadlines and intervals. */
static inline int64_t moat_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Seconds since the Unix epoch: for logs and $SYS. */
static inline int64_t moat_wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

/* Milliseconds since the Unix epoch: for audit lines and event timestamps. */
static inline int64_t moat_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
