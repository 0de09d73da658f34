/*
 * pool.c - the slow-work thread pool (see pool.h).
 */
#include "security/pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define MAX_THREADS 64

struct moat_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct moat_job *head, *tail;
	unsigned backlog;
	bool stop;
	unsigned n;
	pthread_t threads[MAX_THREADS];
};

static void *run(void *arg)
{
	struct moat_pool *p = arg;

	for (;;) {
		struct moat_job *j;

		pthread_mutex_lock(&p->lock);
		while (!p->head && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (!p->head) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		j = p->head;
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		p->backlog--;
		pthread_mutex_unlock(&p->lock);
		j->work(j);
		j->done(j);
	}
}

struct moat_pool *moat_pool_new(unsigned n)
{
	struct moat_pool *p = calloc(1, sizeof(*p));
	unsigned i;

	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if (n < 1)
		n = 1;
	if (n > MAX_THREADS)
		n = MAX_THREADS;
	for (i = 0; i < n; i++) {
		if (pthread_create(&p->threads[i], NULL, run, p) != 0)
			break;
		p->n++;
	}
	if (!p->n) {
		moat_pool_free(p);
		return NULL;
	}
	return p;
}

void moat_pool_submit(struct moat_pool *p, struct moat_job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->backlog++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

unsigned moat_pool_backlog(struct moat_pool *p)
{
	unsigned n;

	pthread_mutex_lock(&p->lock);
	n = p->backlog;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void moat_pool_free(struct moat_pool *p)
{
	unsigned i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
