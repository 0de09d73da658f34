/*
 * bench_stats.c - what `moat bench` measures: latency histogram, sequence
 * checks, and the broker's CPU time and memory read from /proc.
 *
 * Nothing here allocates or stores a message: the histogram has fixed
 * log-linear buckets (exact below 32 ns, then 32 steps per power of two,
 * so a percentile is within ~3% of the truth), and a stream keeps one
 * counter of the next sequence expected and a bitmap of the last
 * BENCH_SEQ_WIN sequences, enough to tell a duplicate from a late message
 * for any reordering shorter than the window.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/bench.h"

uint64_t moat_bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned hist_index(uint64_t v)
{
	unsigned e;

	if (v < (1u << BENCH_HIST_SUB))
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	return ((e - BENCH_HIST_SUB + 1) << BENCH_HIST_SUB) +
	       (unsigned)((v >> (e - BENCH_HIST_SUB)) & ((1u << BENCH_HIST_SUB) - 1));
}

/* The middle of bucket i, the value a percentile in it is reported as. */
static uint64_t hist_value(unsigned i)
{
	unsigned e, sub;
	uint64_t lo;

	if (i < (1u << BENCH_HIST_SUB))
		return i;
	e = (i >> BENCH_HIST_SUB) + BENCH_HIST_SUB - 1;
	sub = i & ((1u << BENCH_HIST_SUB) - 1);
	lo = ((uint64_t)(1u << BENCH_HIST_SUB) + sub) << (e - BENCH_HIST_SUB);
	return lo + ((1ull << (e - BENCH_HIST_SUB)) >> 1);
}

void moat_bench_hist_add(struct bench_hist *h, uint64_t v)
{
	h->count[hist_index(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

void moat_bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
	unsigned i;

	for (i = 0; i < BENCH_HIST_N; i++)
		dst->count[i] += src->count[i];
	dst->n += src->n;
	if (src->max > dst->max)
		dst->max = src->max;
}

/* The value below which pct percent of the samples fall; 0 with no sample. */
uint64_t moat_bench_hist_pct(const struct bench_hist *h, double pct)
{
	uint64_t want, seen = 0;
	unsigned i;

	if (h->n == 0)
		return 0;
	want = (uint64_t)((double)h->n * pct / 100.0);
	if (want >= h->n)
		return h->max;
	for (i = 0; i < BENCH_HIST_N; i++) {
		seen += h->count[i];
		if (seen > want)
			return hist_value(i) < h->max ? hist_value(i) : h->max;
	}
	return h->max;
}

static bool seen_test_set(struct bench_stream *s, uint64_t seq)
{
	uint64_t bit = 1ull << (seq % 64);
	uint64_t *w = &s->seen[(seq % BENCH_SEQ_WIN) / 64];
	bool was = *w & bit;

	*w |= bit;
	return was;
}

static void seen_clear(struct bench_stream *s, uint64_t seq)
{
	s->seen[(seq % BENCH_SEQ_WIN) / 64] &= ~(1ull << (seq % 64));
}

/*
 * Records sequence seq on stream s. A sequence at or past s->next moves the
 * window (the sequences skipped stay unseen: lost unless they come late); one
 * below it is a duplicate if its bit is set, else a late arrival. Below the
 * window the two cannot be told apart and count as late. *dups grows with
 * each duplicate, so the caller can keep a unique count cheaply.
 */
void moat_bench_stream_see(struct bench_stream *s, uint64_t seq, uint64_t *dups)
{
	uint64_t q;

	s->recv++;
	if (seq >= s->next) {
		if (seq - s->next >= BENCH_SEQ_WIN) {
			memset(s->seen, 0, sizeof(s->seen));
		} else {
			for (q = s->next; q < seq; q++)
				seen_clear(s, q);
		}
		seen_clear(s, seq);
		seen_test_set(s, seq);
		s->next = seq + 1;
		return;
	}
	if (s->next - seq > BENCH_SEQ_WIN) {
		s->late++;
		return;
	}
	if (seen_test_set(s, seq)) {
		s->dup++;
		(*dups)++;
	} else {
		s->late++;
	}
}

/* Reads a /proc file into buf; returns its length, or -1. */
static ssize_t read_proc(int pid, const char *what, char *buf, size_t cap)
{
	char path[64];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, what);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	return (ssize_t)n;
}

/* utime + stime of process pid, all threads, in seconds. */
int moat_bench_proc_cpu(int pid, double *secs)
{
	char buf[1024], *p;
	unsigned long ut, st;

	if (read_proc(pid, "stat", buf, sizeof(buf)) < 0)
		return -errno;
	/* the command name may hold spaces: fields are counted after its ')' */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			 &ut, &st) != 2)
		return -EINVAL;
	*secs = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	return 0;
}

/* VmRSS of process pid, in KiB. */
int moat_bench_proc_rss(int pid, long *kb)
{
	char buf[4096], *p;

	if (read_proc(pid, "status", buf, sizeof(buf)) < 0)
		return -errno;
	p = strstr(buf, "VmRSS:");
	if (!p || sscanf(p + 6, "%ld", kb) != 1)
		return -EINVAL;
	return 0;
}
