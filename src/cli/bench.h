/*
 * bench.h - `moat bench`, the load generator: shared types.
 *
 * The tool is split in three files:
 *   bench.c        options, the plan (who publishes what to whom), the
 *                  timeline (set-up, warm-up, measured window, drain) and
 *                  the report;
 *   bench_conn.c   one epoll loop per thread, the connections it owns, and
 *                  MQTT packets written and parsed by hand (no allocation
 *                  or system call per message: PUBLISHes are batched into
 *                  one write, incoming packets parsed from a large buffer);
 *   bench_stats.c  the latency histogram, per-stream sequence checks and
 *                  the broker's /proc figures.
 *
 * A payload starts with a 16-byte header: the send time (CLOCK_MONOTONIC,
 * ns, one clock read per batch), the stream (publisher index) and the
 * stream's sequence number, all little-endian. The subscriber side checks
 * the sequence of every stream it receives for gaps, duplicates and late
 * (reordered) arrivals with a small sliding bitmap, never storing messages.
 *
 * Threads share nothing while running but a few atomics: each thread owns
 * its connections and its counters, which the main thread reads (relaxed)
 * to decide when the drain is over, and merges after the join.
 */
#ifndef MOAT_CLI_BENCH_H
#define MOAT_CLI_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bench_mode { BM_FANIN, BM_FANOUT, BM_PAIRS, BM_SHARED, BM_STORM, BM_IDLE };
enum bench_role { BR_PUB, BR_SUB, BR_STORM, BR_IDLE, BR_EXTRA };

#define BENCH_HDR 16          /* payload header: time, stream, sequence */
#define BENCH_SEQ_WIN 512     /* sliding window of the sequence check, bits */

struct bench_opts {
	const char *host;
	int port;
	int version;           /* 4 (3.1.1) or 5 */
	int qos;
	size_t size;           /* payload bytes, at least BENCH_HDR */
	int pubs, subs, threads;
	double duration, warmup, drain;
	double rate;           /* total msgs/s over all publishers; 0 = as fast as possible */
	int window;            /* QoS 1/2 publishes in flight per publisher */
	int e2e;               /* messages on their way to one subscriber, 0 = no limit */
	int mode;              /* enum bench_mode */
	bool csv, csv_header;
	bool persistent;       /* sessions that outlive the connection */
	int extra_subs;        /* wildcard subscriptions held besides the load */
	const char *cafile;    /* TLS with this trust anchor; NULL = plain TCP */
	struct moat_tls_client *tls;
	int cpu_pid;           /* broker to measure from /proc, 0 = none */
	const char *label;     /* first CSV column */
	char prefix[48];       /* topic prefix unique to this run */
};

/* Log-linear latency histogram: 32 linear steps per power of two (~3%). */
#define BENCH_HIST_SUB 5
#define BENCH_HIST_N ((64 - BENCH_HIST_SUB + 1) << BENCH_HIST_SUB)
struct bench_hist {
	uint64_t n, max;
	uint64_t count[BENCH_HIST_N];
};

/* One stream as one subscriber sees it. */
struct bench_stream {
	uint64_t next;   /* one past the highest sequence seen */
	uint64_t recv, dup, late;
	bool dirty;            /* recv changed since tap was last written */
	_Atomic uint64_t tap;  /* recv, as the publisher's thread may read it */
	uint64_t seen[BENCH_SEQ_WIN / 64];
};

struct bench_thread;
struct moat_transport;
struct moat_tls_client;

struct bench_conn {
	int fd;
	struct moat_transport *t;   /* TLS (owns fd), or NULL for plain TCP */
	uint8_t role;          /* enum bench_role */
	uint8_t state;         /* bench_conn.c's connection states */
	bool readable, writable;
	uint32_t id;           /* publisher: its stream; others: an index */
	struct bench_thread *th;
	uint8_t *rbuf, *wbuf;
	size_t rlen, rcap, woff, wlen, wcap;
	/* publisher */
	uint8_t *tmpl;         /* a whole PUBLISH, patched per message */
	size_t pkt_len, pid_off, pay_off;
	uint64_t seq, acked;
	uint32_t inflight, window;
	uint16_t next_pid;
	uint64_t *pid_used;    /* 65536-bit set of packet ids in flight */
	double rate;           /* this publisher's msgs/s, 0 = unbounded */
	/*
	 * End-to-end flow control: taps are the receive counts of this
	 * stream at each subscriber that gets it (written by their threads
	 * once per read). The publisher keeps at most e2e_limit messages
	 * sent and not received by its slowest subscriber (or, for a shared
	 * group, by the group as a whole: tap_sum) and, when blocked, sets
	 * e2e_wait so a subscriber's thread wakes its own.
	 */
	_Atomic uint64_t **taps;
	uint32_t ntaps;
	bool tap_sum;
	_Atomic bool e2e_wait;
	uint64_t e2e_limit;
	/* subscriber */
	uint32_t stream_base, nstreams;
	struct bench_stream *streams;
	struct bench_conn **pubs;      /* the publishers, by stream */
	uint32_t dirty[32], ndirty;    /* streams with unflushed deliveries */
	/* storm */
	uint64_t t_start;
	uint64_t cycles;
	/* extra: filters [first, first + nfilters) of the extra subscriptions */
	uint32_t first, nfilters;
};

struct bench_thread {
	pthread_t tid;
	int index;
	int ep;
	int evfd;              /* wakes the loop: a blocked publisher may go on */
	const struct bench_opts *o;
	struct bench_conn **conns;
	size_t nconns;
	pthread_barrier_t *barrier;
	/* set by the main thread before the second barrier */
	uint64_t t_start, t_measure, t_end;
	_Atomic int *stop;
	/* counters: written by the thread; the atomics are read live by main */
	_Atomic uint64_t sent, acked, inflight, uniq, connected;
	uint64_t recv_win, bytes_win, recv_total, ack_errors, conn_errors;
	uint64_t cycles_win;
	struct bench_hist hist;
	int failed;            /* set-up failed */
	char why[64];          /* scratch for an error message */
};

/* bench.c: the subcommand, argv from "bench" on; returns the exit code */
int moat_cmd_bench(int argc, char **argv);

/* bench_conn.c */
int moat_bench_thread_init(struct bench_thread *th);
void *moat_bench_thread_run(void *arg);
struct bench_conn *moat_bench_conn_new(const struct bench_opts *o, int role, uint32_t id);
void moat_bench_conn_free(struct bench_conn *c);
int moat_bench_topic(const struct bench_opts *o, int role, uint32_t id, char *buf, size_t cap);

/* bench_stats.c */
uint64_t moat_bench_now(void);
void moat_bench_hist_add(struct bench_hist *h, uint64_t v);
void moat_bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
uint64_t moat_bench_hist_pct(const struct bench_hist *h, double pct);
void moat_bench_stream_see(struct bench_stream *s, uint64_t seq, uint64_t *dups);
int moat_bench_proc_cpu(int pid, double *secs);
int moat_bench_proc_rss(int pid, long *kb);

#endif
