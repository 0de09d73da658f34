/*
 * bucket.h - token buckets for rate limits.
 */
#ifndef MOAT_SECURITY_BUCKET_H
#define MOAT_SECURITY_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

struct moat_bucket {
	double tokens;
	int64_t last_ms;
};

/*
 * Takes n tokens from a bucket refilled at rate per second up to burst
 * (a new bucket, last_ms 0, starts full). Returns false, taking nothing, if
 * there are not enough. rate 0 means no limit.
 */
static inline bool moat_bucket_take(struct moat_bucket *b, double rate, double burst, double n,
				    int64_t now_ms)
{
	if (rate <= 0)
		return true;
	if (b->last_ms == 0) {
		b->tokens = burst;
	} else if (now_ms > b->last_ms) {
		b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
		if (b->tokens > burst)
			b->tokens = burst;
	}
	b->last_ms = now_ms;
	if (b->tokens < n)
		return false;
	b->tokens -= n;
	return true;
}

#endif
