/*
 * bench.c - `moat bench`: a load generator and checker for MQTT brokers.
 *
 *   moat bench [--mode fanin|fanout|pairs|shared|storm|idle] [-h HOST] [-p PORT]
 *              [-V 4|5] [-q 0|1|2] [-s BYTES] [-P PUBS] [-S SUBS] [-t THREADS]
 *              [-d SECS] [-w SECS] [-r MSGS_PER_S] [-W WINDOW] [--csv]
 *              [--cpu-pid PID]
 *
 * The timeline: every connection is set up (subscriptions acknowledged)
 * before the clock starts; publishers then run for warm-up + duration; only
 * what is received inside the measured window (after the warm-up) counts
 * for throughput and latency; then the publishers stop and the drain waits
 * (up to --drain seconds) until every message acknowledged to a publisher
 * (QoS 1/2) or sent (QoS 0) has reached its subscribers. Loss, duplicates
 * and late arrivals are counted over the whole run, per stream.
 *
 * Modes (P publishers, S subscribers):
 *   fanin   P publishers on P topics, S (1) subscribers on a '+' wildcard
 *   fanout  P (1) publishers on one topic, S subscribers to it
 *   pairs   P publisher/subscriber pairs, one topic each (S = P)
 *   shared  P publishers, S subscribers in one $share group
 *   storm   S connections in parallel, each connect, CONNACK, DISCONNECT,
 *           wait for the broker's close, again: connects/s, CONNACK latency
 *   idle    S connections opened and held for the duration: with --cpu-pid,
 *           the broker's RSS per connection
 *
 * With --cpu-pid the broker's CPU time (utime + stime from /proc) over the
 * measured window is reported, per delivered message (or per connect).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli/bench.h"
#include "cli/cli.h"
#include "net/tls.h"

static const char *const mode_names[] = {"fanin", "fanout", "pairs", "shared", "storm", "idle"};

struct result {
	uint64_t sent, acked, delivered, bytes, lost, dup, late, recv_total;
	uint64_t ack_errors, conn_errors, cycles, conns;
	double cpu, window_s;
	long rss_base, rss;
	struct bench_hist hist;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: moat bench [options]\n"
		"  --mode M      fanin (default), fanout, pairs, shared, storm, idle\n"
		"  -h HOST       broker address (127.0.0.1)     -p PORT  port (1883)\n"
		"  -V 4|5        MQTT 3.1.1 or 5.0 (4)          -q QOS   0, 1 or 2 (0)\n"
		"  -s BYTES      payload size, >= 16 (64)\n"
		"  -P N          publishers (fanin 10, fanout 1, pairs 10, shared 10)\n"
		"  -S N          subscribers (fanin 1, fanout 100, shared 10);\n"
		"                connections for storm (100) and idle (1000)\n"
		"  -t N          threads (2)\n"
		"  -d SECS       measured duration (5)          -w SECS  warm-up (1)\n"
		"  -r RATE       total msgs/s over all publishers, 0 = flat out (0)\n"
		"  -W N          QoS 1/2 window per publisher (64; 5.0: at most Receive Maximum)\n"
		"  -E N          end-to-end limit: messages on their way to one subscriber\n"
		"                (sent, not yet received), 0 = open loop (500)\n"
		"  --drain SECS  longest wait for stragglers after the run (5)\n"
		"  --cpu-pid PID broker process: CPU time and RSS from /proc\n"
		"  --persistent  sessions that outlive the connection (what a broker persists)\n"
		"  --extra-subs N  hold N more wildcard subscriptions that match nothing\n"
		"  --cafile FILE TLS, trusting FILE (the server name is not checked)\n"
		"  --csv         one CSV line instead of the summary; --csv-header prints the header\n"
		"  --label TEXT  first CSV column (the mode)\n");
}

static int parse_mode(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (strcmp(s, mode_names[i]) == 0)
			return (int)i;
	return -1;
}

/* Reads argv into o: 0, 1 after --help (usage printed), or -1 on a usage error. */
static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
	static const struct option longs[] = {
		{"mode", required_argument, NULL, 'm'}, {"csv", no_argument, NULL, 'c'},
		{"csv-header", no_argument, NULL, 'H'}, {"cpu-pid", required_argument, NULL, 'C'},
		{"drain", required_argument, NULL, 'D'}, {"label", required_argument, NULL, 'L'},
		{"persistent", no_argument, NULL, 'K'}, {"cafile", required_argument, NULL, 'A'}, {"extra-subs", required_argument, NULL, 'X'},
		{"help", no_argument, NULL, 'U'}, {NULL, 0, NULL, 0},
	};
	int ch;

	*o = (struct bench_opts){.host = "127.0.0.1", .port = 1883, .version = 4, .size = 64,
				 .pubs = -1, .subs = -1, .threads = 2, .duration = 5, .warmup = 1,
				 .drain = 5, .window = 64, .e2e = 500};
	while ((ch = getopt_long(argc, argv, "h:p:V:q:s:P:S:t:d:w:r:W:E:", longs, NULL)) != -1) {
		switch (ch) {
		case 'h': o->host = optarg; break;
		case 'p': o->port = atoi(optarg); break;
		case 'V': o->version = atoi(optarg) == 5 ? 5 : atoi(optarg) == 4 ? 4 : -1; break;
		case 'q': o->qos = atoi(optarg); break;
		case 's': o->size = (size_t)atol(optarg); break;
		case 'P': o->pubs = atoi(optarg); break;
		case 'S': o->subs = atoi(optarg); break;
		case 't': o->threads = atoi(optarg); break;
		case 'd': o->duration = atof(optarg); break;
		case 'w': o->warmup = atof(optarg); break;
		case 'r': o->rate = atof(optarg); break;
		case 'W': o->window = atoi(optarg); break;
		case 'E': o->e2e = atoi(optarg); break;
		case 'm': o->mode = parse_mode(optarg); break;
		case 'c': o->csv = true; break;
		case 'H': o->csv_header = true; break;
		case 'C': o->cpu_pid = atoi(optarg); break;
		case 'D': o->drain = atof(optarg); break;
		case 'L': o->label = optarg; break;
		case 'K': o->persistent = true; break;
		case 'A': o->cafile = optarg; break;
		case 'X': o->extra_subs = atoi(optarg); break;
		case 'U': usage(stdout); return 1;
		default: return -1;
		}
	}
	return optind == argc ? 0 : -1;
}

/* Fills the mode's defaults and refuses what cannot run. */
static int check_opts(struct bench_opts *o)
{
	static const int dpubs[] = {10, 1, 10, 10, 0, 0}, dsubs[] = {1, 100, 10, 10, 100, 1000};

	if (o->mode < 0 || o->version < 0 || o->qos < 0 || o->qos > 2 || o->threads < 1 ||
	    o->threads > 64 || o->size < BENCH_HDR || o->size > 100 * 1024 * 1024 ||
	    o->duration <= 0 || o->warmup < 0 || o->window < 1 || o->rate < 0 || o->e2e < 0 ||
	    o->extra_subs < 0)
		return -1;
	if (o->window > 1024)
		o->window = 1024; /* packet ids and the ack reserve are sized for this */
	if (o->pubs < 0)
		o->pubs = dpubs[o->mode];
	if (o->subs < 0)
		o->subs = o->mode == BM_PAIRS ? o->pubs : dsubs[o->mode];
	if (o->mode == BM_PAIRS)
		o->subs = o->pubs;
	if (o->mode >= BM_STORM)
		o->pubs = 0;
	if (o->mode < BM_STORM && (o->pubs < 1 || o->subs < 1))
		return -1;
	if (o->mode >= BM_STORM && o->subs < 1)
		return -1;
	if (!o->label)
		o->label = mode_names[o->mode];
	snprintf(o->prefix, sizeof(o->prefix), "mb%ld-%d", (long)time(NULL) % 100000,
		 (int)getpid());
	return 0;
}

/* As many descriptors as allowed: idle runs hold thousands. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void sleep_until(uint64_t t)
{
	uint64_t now = moat_bench_now();
	struct timespec ts;

	if (now >= t)
		return;
	ts.tv_sec = (time_t)((t - now) / 1000000000u);
	ts.tv_nsec = (long)((t - now) % 1000000000u);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the plan: connections, threads ---- */

#define EXTRA_PER_CONN 1000  /* extra subscriptions held by one connection */

struct plan {
	struct bench_opts o;
	struct bench_thread *th;
	struct bench_conn **conns;   /* subscribers first, then publishers */
	size_t nconns;
	pthread_barrier_t barrier;
	_Atomic int stop;
};

/* Points each publisher at its stream's receive count in each subscriber. */
static int plan_taps(struct plan *pl)
{
	const struct bench_opts *o = &pl->o;
	size_t i, p;

	for (i = 0; i < (size_t)o->subs; i++)
		pl->conns[i]->pubs = pl->conns + o->subs;
	for (p = 0; p < (size_t)o->pubs; p++) {
		struct bench_conn *pc = pl->conns[(size_t)o->subs + p];

		pc->taps = calloc((size_t)o->subs, sizeof(*pc->taps));
		if (!pc->taps)
			return -ENOMEM;
		for (i = 0; i < (size_t)o->subs; i++) {
			struct bench_conn *sc = pl->conns[i];

			if (p - sc->stream_base < sc->nstreams)
				pc->taps[pc->ntaps++] = &sc->streams[p - sc->stream_base].tap;
		}
	}
	return 0;
}

static int plan_build(struct plan *pl)
{
	const struct bench_opts *o = &pl->o;
	size_t i, k, load = (size_t)o->subs + (size_t)o->pubs;
	size_t total = load + (size_t)(o->extra_subs + EXTRA_PER_CONN - 1) / EXTRA_PER_CONN;
	int role = o->mode == BM_STORM ? BR_STORM : o->mode == BM_IDLE ? BR_IDLE : BR_SUB;

	pl->th = calloc((size_t)o->threads, sizeof(*pl->th));
	pl->conns = calloc(total, sizeof(*pl->conns));
	if (!pl->th || !pl->conns)
		return -ENOMEM;
	for (i = 0; i < total; i++) {
		bool pub = i >= (size_t)o->subs && i < load;

		pl->conns[i] = moat_bench_conn_new(o, i >= load ? BR_EXTRA : pub ? BR_PUB : role,
						   (uint32_t)(pub ? i - (size_t)o->subs : i));
		if (!pl->conns[i])
			return -ENOMEM;
		if (i >= load) {
			pl->conns[i]->first = (uint32_t)((i - load) * EXTRA_PER_CONN);
			pl->conns[i]->nfilters = (uint32_t)(o->extra_subs - (int)pl->conns[i]->first);
			if (pl->conns[i]->nfilters > EXTRA_PER_CONN)
				pl->conns[i]->nfilters = EXTRA_PER_CONN;
		}
		pl->nconns++;
	}
	for (k = 0; k < (size_t)o->threads; k++) {
		struct bench_thread *th = &pl->th[k];

		th->index = (int)k;
		th->o = o;
		th->barrier = &pl->barrier;
		th->stop = &pl->stop;
		th->conns = calloc(total / (size_t)o->threads + 1, sizeof(*th->conns));
		if (!th->conns || moat_bench_thread_init(th) < 0)
			return -ENOMEM;
	}
	if (o->mode < BM_STORM && plan_taps(pl) < 0)
		return -ENOMEM;
	/* round robin over subscribers then publishers: each thread gets both */
	for (i = 0; i < total; i++) {
		struct bench_thread *th = &pl->th[i % (size_t)o->threads];

		th->conns[th->nconns++] = pl->conns[i];
	}
	return 0;
}

static void plan_free(struct plan *pl)
{
	size_t i;

	for (i = 0; i < pl->nconns; i++)
		moat_bench_conn_free(pl->conns[i]);
	for (i = 0; pl->th && i < (size_t)pl->o.threads; i++) {
		free(pl->th[i].conns);
		if (pl->th[i].ep > 0)
			close(pl->th[i].ep);
		if (pl->th[i].evfd > 0)
			close(pl->th[i].evfd);
	}
	free(pl->conns);
	free(pl->th);
}

/* ---- the run ---- */

/* Deliveries owed to subscribers: per message, S (fanin, fanout) or 1. */
static uint64_t owed(const struct plan *pl, uint64_t done)
{
	return pl->o.mode == BM_FANIN || pl->o.mode == BM_FANOUT ? done * (uint64_t)pl->o.subs
								  : done;
}

/* True when the drain is over: nothing in flight and every delivery owed made. */
static bool drained(const struct plan *pl)
{
	uint64_t done = 0, uniq = 0, inflight = 0;
	int k;

	for (k = 0; k < pl->o.threads; k++) {
		const struct bench_thread *th = &pl->th[k];

		done += atomic_load_explicit(pl->o.qos ? &th->acked : &th->sent,
					     memory_order_relaxed);
		uniq += atomic_load_explicit(&th->uniq, memory_order_relaxed);
		inflight += atomic_load_explicit(&th->inflight, memory_order_relaxed);
	}
	return inflight == 0 && uniq >= owed(pl, done);
}

static void cpu_mark(const struct plan *pl, double *cpu)
{
	if (pl->o.cpu_pid && moat_bench_proc_cpu(pl->o.cpu_pid, cpu) < 0)
		*cpu = -1;
}

/* Runs the timeline on the main thread while the workers load the broker. */
static void timeline(struct plan *pl, struct result *r)
{
	const struct bench_opts *o = &pl->o;
	uint64_t now = moat_bench_now(), t_measure, t_end, limit;
	double cpu0 = 0, cpu1 = 0;
	int k;

	t_measure = now + (uint64_t)(o->warmup * 1e9);
	t_end = t_measure + (uint64_t)(o->duration * 1e9);
	for (k = 0; k < o->threads; k++) {
		pl->th[k].t_start = now;
		pl->th[k].t_measure = t_measure;
		pl->th[k].t_end = t_end;
	}
	pthread_barrier_wait(&pl->barrier);
	sleep_until(t_measure);
	cpu_mark(pl, &cpu0);
	if (o->mode == BM_IDLE && o->cpu_pid)
		moat_bench_proc_rss(o->cpu_pid, &r->rss);
	sleep_until(t_end);
	cpu_mark(pl, &cpu1);
	r->cpu = cpu0 < 0 || cpu1 < 0 || !o->cpu_pid ? -1 : cpu1 - cpu0;
	r->window_s = o->duration;
	limit = t_end + (uint64_t)(o->drain * 1e9);
	if (o->mode < BM_STORM)
		while (!drained(pl) && moat_bench_now() < limit)
			sleep_until(moat_bench_now() + 10000000);
	atomic_store(&pl->stop, 1);
}

/* ---- the result ---- */

static void collect_streams(const struct plan *pl, struct result *r)
{
	const struct bench_opts *o = &pl->o;
	size_t i, p;

	for (p = 0; p < (size_t)o->pubs; p++) {
		const struct bench_conn *pc = pl->conns[(size_t)o->subs + p];
		uint64_t want = o->qos ? pc->acked : pc->seq, uniq = 0;

		r->sent += pc->seq;
		r->acked += pc->acked;
		for (i = 0; i < (size_t)o->subs; i++) {
			const struct bench_conn *sc = pl->conns[i];
			const struct bench_stream *s;

			if (p - sc->stream_base >= sc->nstreams)
				continue;
			s = &sc->streams[p - sc->stream_base];
			r->dup += s->dup;
			r->late += s->late;
			if (o->mode == BM_SHARED) {
				uniq += s->recv - s->dup;
			} else if (s->recv - s->dup < want) {
				r->lost += want - (s->recv - s->dup);
			}
		}
		if (o->mode == BM_SHARED) {
			/* one group: each message is owed once, to any member */
			if (uniq < want)
				r->lost += want - uniq;
			else if (uniq > pc->seq)
				r->dup += uniq - pc->seq;
		}
	}
}

static void collect(const struct plan *pl, struct result *r)
{
	int k;

	for (k = 0; k < pl->o.threads; k++) {
		const struct bench_thread *th = &pl->th[k];

		r->delivered += th->recv_win;
		r->bytes += th->bytes_win;
		r->recv_total += th->recv_total;
		r->ack_errors += th->ack_errors;
		r->conn_errors += th->conn_errors;
		r->cycles += th->cycles_win;
		r->conns += atomic_load(&th->connected);
		moat_bench_hist_merge(&r->hist, &th->hist);
	}
	collect_streams(pl, r);
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void print_csv_header(void)
{
	printf("label,mode,version,qos,size,pubs,subs,threads,rate,duration,sent,delivered,"
	       "msgs_per_s,mb_per_s,p50_us,p99_us,p999_us,max_us,lost,dup,reordered,"
	       "ack_errors,conn_errors,connects_per_s,conns,cpu_s,cpu_us_per_op,rss_kb_per_conn\n");
}

static void report(const struct plan *pl, const struct result *r)
{
	const struct bench_opts *o = &pl->o;
	const struct bench_hist *h = &r->hist;
	double ops = o->mode == BM_STORM ? (double)r->cycles : (double)r->delivered;
	double rate = (double)r->delivered / r->window_s, cps = (double)r->cycles / r->window_s;
	double cpu_op = r->cpu >= 0 && ops > 0 ? r->cpu * 1e6 / ops : -1;
	double rss_conn = r->rss && r->conns ? (double)(r->rss - r->rss_base) / (double)r->conns : -1;

	if (o->csv) {
		printf("%s,%s,%d,%d,%zu,%d,%d,%d,%.0f,%.1f,%llu,%llu,%.0f,%.2f,%.1f,%.1f,%.1f,%.1f,"
		       "%llu,%llu,%llu,%llu,%llu,%.0f,%llu,%.3f,%.3f,%.2f\n",
		       o->label, mode_names[o->mode], o->version, o->qos, o->size, o->pubs,
		       o->subs, o->threads, o->rate, o->duration, (unsigned long long)r->sent,
		       (unsigned long long)r->delivered, rate, rate * (double)o->size / 1e6,
		       us(moat_bench_hist_pct(h, 50)), us(moat_bench_hist_pct(h, 99)),
		       us(moat_bench_hist_pct(h, 99.9)), us(h->max), (unsigned long long)r->lost,
		       (unsigned long long)r->dup, (unsigned long long)r->late,
		       (unsigned long long)r->ack_errors, (unsigned long long)r->conn_errors, cps,
		       (unsigned long long)r->conns, r->cpu, cpu_op, rss_conn);
		return;
	}
	printf("%s v%d q%d %zuB P=%d S=%d: ", mode_names[o->mode], o->version, o->qos, o->size,
	       o->pubs, o->subs);
	if (o->mode == BM_STORM)
		printf("%.0f connects/s, CONNACK p50 %.0f us p99 %.0f us max %.0f us", cps,
		       us(moat_bench_hist_pct(h, 50)), us(moat_bench_hist_pct(h, 99)), us(h->max));
	else if (o->mode == BM_IDLE)
		printf("%llu connections held", (unsigned long long)r->conns);
	else
		printf("%.0f msg/s (%.1f MB/s), latency p50 %.0f us p99 %.0f us p99.9 %.0f us "
		       "max %.0f us; sent %llu, lost %llu, dup %llu, reordered %llu",
		       rate, rate * (double)o->size / 1e6, us(moat_bench_hist_pct(h, 50)),
		       us(moat_bench_hist_pct(h, 99)), us(moat_bench_hist_pct(h, 99.9)),
		       us(h->max), (unsigned long long)r->sent, (unsigned long long)r->lost,
		       (unsigned long long)r->dup, (unsigned long long)r->late);
	if (r->conn_errors || r->ack_errors)
		printf(", errors: %llu connection, %llu ack", (unsigned long long)r->conn_errors,
		       (unsigned long long)r->ack_errors);
	if (cpu_op >= 0)
		printf("; broker cpu %.2f s = %.2f us/%s", r->cpu, cpu_op,
		       o->mode == BM_STORM ? "connect" : "msg");
	if (rss_conn >= 0)
		printf("; broker rss %ld KiB = %.1f KiB/connection", r->rss, rss_conn);
	printf("\n");
}

/* The TLS client context every connection shares, when --cafile asks for TLS. */
static int tls_init(struct bench_opts *o)
{
	struct moat_tls_client_opts to = {.cafile = o->cafile, .insecure = true};
	char err[256];

	if (!o->cafile)
		return 0;
	if (moat_tls_client_new(&to, &o->tls, err, sizeof(err)) < 0) {
		fprintf(stderr, "moat bench: TLS: %s\n", err);
		return -EPROTO;
	}
	return 0;
}

static int run(struct plan *pl)
{
	struct result *r = calloc(1, sizeof(*r));
	int k, started = 0, rc = 0;

	if (!r)
		return 1;
	if (pl->o.cpu_pid)
		moat_bench_proc_rss(pl->o.cpu_pid, &r->rss_base);
	pthread_barrier_init(&pl->barrier, NULL, (unsigned)pl->o.threads + 1);
	for (k = 0; k < pl->o.threads; k++, started++)
		if (pthread_create(&pl->th[k].tid, NULL, moat_bench_thread_run, &pl->th[k]) != 0)
			abort(); /* the barrier would wait forever: nothing to recover */
	pthread_barrier_wait(&pl->barrier);
	for (k = 0; k < pl->o.threads; k++)
		if (pl->th[k].failed)
			rc = 1;
	if (rc) {
		atomic_store(&pl->stop, 1);
		pthread_barrier_wait(&pl->barrier); /* let the threads go, to their end */
	} else {
		if (pl->o.mode == BM_IDLE)
			sleep_until(moat_bench_now() + 500000000); /* let the broker settle */
		timeline(pl, r);
	}
	for (k = 0; k < started; k++)
		pthread_join(pl->th[k].tid, NULL);
	pthread_barrier_destroy(&pl->barrier);
	if (rc == 0) {
		collect(pl, r);
		report(pl, r);
		if ((pl->o.qos && r->lost) || (pl->o.qos == 2 && r->dup))
			rc = 3; /* a broken promise of QoS 1/2 */
	}
	free(r);
	return rc;
}

int moat_cmd_bench(int argc, char **argv)
{
	struct plan *pl = calloc(1, sizeof(*pl));
	int rc;

	if (!pl)
		return 1;
	rc = parse_opts(argc, argv, &pl->o);
	if (rc != 0 || check_opts(&pl->o) < 0) {
		if (rc <= 0)
			usage(stderr);
		free(pl);
		return rc > 0 ? 0 : 2; /* --help: done */
	}
	if (pl->o.csv_header)
		print_csv_header();
	raise_nofile();
	rc = tls_init(&pl->o);
	if (rc == 0)
		rc = plan_build(pl);
	if (rc < 0) {
		fprintf(stderr, "moat bench: %s\n", strerror(-rc));
		plan_free(pl);
		free(pl);
		return 1;
	}
	rc = run(pl);
	plan_free(pl);
	moat_tls_client_free(pl->o.tls);
	free(pl);
	return rc;
}
