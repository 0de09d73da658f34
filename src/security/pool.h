/*
 * pool.h - a small thread pool for slow work that must never run on a
 * worker: password hashing (Argon2id is slow by design), and later token
 * introspection. A job's work() runs on a pool thread; its done() runs there
 * too, right after, and is where the result is handed back to the worker
 * (through its inbox). Jobs are run in the order they were submitted.
 */
#ifndef MOAT_SECURITY_POOL_H
#define MOAT_SECURITY_POOL_H

struct moat_pool;

struct moat_job {
	struct moat_job *next;
	void (*work)(struct moat_job *j);
	void (*done)(struct moat_job *j);
};

/* Starts n threads. Returns the pool or NULL. */
struct moat_pool *moat_pool_new(unsigned n);

/* Queues j (owned by the caller until done() runs). Thread-safe. */
void moat_pool_submit(struct moat_pool *p, struct moat_job *j);

/* Finishes the queued jobs, stops the threads, frees. NULL is a no-op. */
void moat_pool_free(struct moat_pool *p);

/* Jobs queued and not yet started. */
unsigned moat_pool_backlog(struct moat_pool *p);

#endif
