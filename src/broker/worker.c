/*
 * worker.c - a worker thread: its event loop, accepting, the inbox through
 * which other threads hand it deliveries and connections, its timers, and
 * its part in shutting down.
 *
 * Before sleeping, a worker (1) hands its batched outbox items to the other
 * workers, one lock and at most one wake-up each, (2) writes out every
 * connection that was given output this turn, and (3) frees the connections
 * closed this turn.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker/internal.h"
#include "core/error.h"
#include "core/log.h"
#include "core/vec.h"
#include "net/listen.h"
#include "net/ws.h"

struct listen_io {
	struct moat_io io;
	struct moat_worker *w;
	struct moat_listener *l;
	bool paused;          /* out of file descriptors: not watched until the next tick */
};

int64_t worker_now(const struct moat_worker *w)
{
	return w->loop ? moat_loop_now(w->loop) : 0;
}

struct moat_worker *worker_home(struct moat_broker *b, const uint8_t *id, size_t n)
{
	return b->workers[moat_hash(id, n) % (uint64_t)b->nworkers];
}

static bool itemvec_push(struct itemvec *v, struct item it)
{
	if (!moat_grow((void **)&v->v, &v->cap, v->n + 1, sizeof(*v->v)))
		return false;
	v->v[v->n++] = it;
	return true;
}

static void item_drop(struct item *it)
{
	if (it->kind == IT_KICK || it->kind == IT_THROTTLE) {
		free(it->job);
		return;
	}
	if (it->kind == IT_QUERY) {
		worker_query_run(NULL, it->job, false);
		return;
	}
	if (it->kind == IT_RECHECK || it->kind == IT_OCSP || it->kind == IT_REAUTH ||
	    it->kind == IT_AUTH || it->kind == IT_STORED)
		return; /* an IT_AUTH or IT_STORED is never dropped: worker_drain finishes it */
	if (it->kind == IT_ADOPT) {
		moat_transport_free(it->conn->tr);
		moat_mqtt_framer_free(&it->conn->in);
		free(it->conn->pending);
		free(it->conn);
		return;
	}
	if (it->nsubids > 1)
		free(it->subids);
	moat_msg_unref(it->msg);
	session_unref(it->s);
}

void worker_push_now(struct moat_worker *to, struct item it)
{
	bool was_empty, ok;

	pthread_mutex_lock(&to->inbox_lock);
	was_empty = to->inbox.n == 0;
	ok = itemvec_push(&to->inbox, it);
	pthread_mutex_unlock(&to->inbox_lock);
	if (!ok)
		item_drop(&it);
	else if (was_empty)
		moat_loop_wake(to->loop);
}

void worker_push(struct moat_worker *from, struct moat_worker *to, struct item it)
{
	if (!from || !from->outbox || !itemvec_push(&from->outbox[to->index], it))
		worker_push_now(to, it);
}

static void flush_outboxes(struct moat_worker *w)
{
	int i;

	for (i = 0; i < w->b->nworkers; i++) {
		struct itemvec *ob = &w->outbox[i];
		struct moat_worker *to = w->b->workers[i];
		bool was_empty;
		size_t k;

		if (!ob->n)
			continue;
		pthread_mutex_lock(&to->inbox_lock);
		was_empty = to->inbox.n == 0;
		for (k = 0; k < ob->n; k++)
			if (!itemvec_push(&to->inbox, ob->v[k]))
				break;
		pthread_mutex_unlock(&to->inbox_lock);
		for (; k < ob->n; k++)
			item_drop(&ob->v[k]);
		ob->n = 0;
		if (was_empty)
			moat_loop_wake(to->loop);
	}
}

static void adopt(struct moat_worker *w, struct moat_conn *c)
{
	struct moat_mqtt_packet p = *c->pending;

	conn_attach(w, c);
	free(c->pending);
	c->pending = NULL;
	c->has_pending = false;
	if (c->state == C_CLOSING)
		return;
	if (handle_connect(c, &p) == 0)
		conn_process(c); /* packets that came right behind the CONNECT */
}

/* After a reload of l's password or ACL file: judge its live connections again. */
static void reauth(struct moat_worker *w, struct moat_listener *l)
{
	struct moat_conn *c, *next;

	for (c = w->conns; c; c = next) {
		next = c->next;
		if (c->listener == l)
			auth_recheck(c);
	}
}

/* Hands an OCSP answer to every connection of this worker that presented that certificate. */
static void ocsp_answer(struct moat_worker *w, uint64_t key, enum moat_ocsp_status st)
{
	struct moat_conn *c, *next;

	for (c = w->conns; c; c = next) {
		next = c->next;
		if (c->ocsp_started && c->ocsp_key == key)
			conn_ocsp_answer(c, st);
	}
}

static void process_inbox(struct moat_loop *loop, void *arg)
{
	struct moat_worker *w = arg;
	struct itemvec tmp;
	size_t i;

	(void)loop;
	pthread_mutex_lock(&w->inbox_lock);
	tmp = w->inbox;
	w->inbox = w->work;
	pthread_mutex_unlock(&w->inbox_lock);
	for (i = 0; i < tmp.n; i++) {
		struct item *it = &tmp.v[i];
		if (it->kind == IT_ADOPT) {
			if (w->stop)
				item_drop(it);
			else
				adopt(w, it->conn);
			continue;
		}
		if (it->kind == IT_RECHECK) {
			worker_recheck_tls(w);
			continue;
		}
		if (it->kind == IT_OCSP) {
			ocsp_answer(w, it->key, (enum moat_ocsp_status)it->qos);
			continue;
		}
		if (it->kind == IT_AUTH) {
			auth_job_finished(w, it->job);
			continue;
		}
		if (it->kind == IT_REAUTH) {
			reauth(w, &w->b->listeners[it->key]);
			continue;
		}
		if (it->kind == IT_KICK || it->kind == IT_THROTTLE) {
			guard_verdict(w, it->kind, it->job);
			continue;
		}
		if (it->kind == IT_STORED) {
			persist_ack_done(w, it->job);
			continue;
		}
		if (it->kind == IT_QUERY) {
			worker_query_run(w, it->job, true);
			continue;
		}
		session_deliver(it->s, it->msg, it->qos, it->retain,
				it->nsubids > 1 ? it->subids : &it->subid, it->nsubids, it->key);
		item_drop(it);
	}
	tmp.n = 0;
	w->work = tmp;
}

static void flush_dirty(struct moat_worker *w)
{
	size_t i;

	for (i = 0; i < w->ndirty; i++) {
		struct moat_conn *c = w->dirty[i];
		c->dirty = false;
		if (c->state != C_CLOSING)
			conn_flush(c);
	}
	w->ndirty = 0;
}

/*
 * Frees the connections closed this turn; one whose password check still
 * runs waits among the zombies until the check comes back (it holds c).
 */
static void reap(struct moat_worker *w)
{
	while (w->closing) {
		struct moat_conn *c = w->closing;
		w->closing = c->next;
		if (c->auth_wait || c->store_wait) {
			c->zombie = true;
			c->prev = NULL;
			c->next = w->zombies;
			if (w->zombies)
				w->zombies->prev = c;
			w->zombies = c;
			continue;
		}
		conn_free(c);
	}
}

void conn_free_zombie(struct moat_conn *c)
{
	struct moat_worker *w = c->w;

	if (c->prev)
		c->prev->next = c->next;
	else if (w->zombies == c)
		w->zombies = c->next;
	if (c->next)
		c->next->prev = c->prev;
	conn_free(c);
}

/* After the threads are joined: finish what is left in the inbox (password checks). */
void worker_drain(struct moat_worker *w)
{
	process_inbox(NULL, w);
	reap(w);
}

static void before_sleep(struct moat_loop *loop, void *arg)
{
	struct moat_worker *w = arg;

	(void)loop;
	conn_read_unread(w);
	flush_outboxes(w);
	flush_dirty(w);
	reap(w);
	if (w->nunread) /* input left in transports: no sleeping */
		moat_loop_wake(w->loop);
}

static void resume_listeners(struct moat_worker *w)
{
	int i;

	for (i = 0; i < w->nlisten; i++) {
		struct listen_io *li = w->listen[i];
		if (li->paused && !w->stop &&
		    moat_loop_add(w->loop, &li->io, MOAT_EV_READ | MOAT_EV_EXCLUSIVE) == 0)
			li->paused = false;
	}
}

static void on_tick(struct moat_loop *loop, void *arg)
{
	struct moat_worker *w = arg;
	int64_t now = moat_loop_now(loop);

	resume_listeners(w);
	conn_tick(w, now);
	session_tick(w, now);
}

/* ---- accepting ---- */

/*
 * The transport stack of listener l for accepted socket fd (taken): TCP or
 * TLS, with WebSocket framing on top for `protocol websockets`. NULL if out of
 * memory (fd is closed then).
 */
static struct moat_transport *open_transport(struct moat_listener *l, int fd,
					     const struct sockaddr_storage *sa)
{
	struct moat_transport *tr = l->tls ? moat_tls_accept(l->tls, fd) : moat_tcp_new(fd), *ws;
	char addr[64];
	struct moat_ws_opts o = {0};

	if (!tr) {
		close(fd);
		return NULL;
	}
	if (l->conf->protocol != MOAT_PROTO_WEBSOCKETS)
		return tr;
	moat_sockaddr_format(sa, addr, sizeof(addr));
	o.allowed_origins = l->conf->websockets_origin;
	o.trusted_proxies = l->conf->websockets_trusted_proxies;
	o.peer_addr = addr;
	ws = moat_ws_server_new(tr, &o);
	if (!ws)
		moat_transport_free(tr);
	return ws;
}

static void on_accept(struct moat_loop *loop, struct moat_io *io, unsigned events)
{
	struct listen_io *li = (struct listen_io *)io;
	struct moat_listener *l = li->l;
	int i;

	(void)loop;
	(void)events;
	for (i = 0; i < 64; i++) {
		struct sockaddr_storage sa;
		struct moat_transport *tr;
		struct moat_conn *c;
		char host[64];
		socklen_t len = sizeof(sa);
		int counted;
		int fd = accept4(io->fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			/*
			 * Out of descriptors the socket stays readable: watching it would
			 * spin. Stop watching until the next tick (CVE-2017-7652's class).
			 */
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				moat_log(MOAT_LOG_LVL_WARNING,
					 "accept_paused reason=\"%s\" for=1s", strerror(errno));
				moat_loop_del(li->w->loop, &li->io);
				li->paused = true;
			}
			return;
		}
		moat_sockaddr_host(&sa, host, sizeof(host));
		counted = guard_accept(li->w, l, &sa, host);
		if (counted < 0) {
			close(fd);
			continue;
		}
		atomic_fetch_add(&l->connections, 1);
		tr = open_transport(l, fd, &sa);
		if (!tr || !(c = conn_new(li->w, tr, l, &sa))) {
			atomic_fetch_sub(&l->connections, 1);
			moat_transport_free(tr);
			if (counted)
				guard_uncount(li->w->b, host);
			continue;
		}
		c->counted = counted;
	}
}

/* ---- thread ---- */

static void close_all(struct moat_worker *w)
{
	int i;

	for (i = 0; i < w->nlisten; i++)
		if (!w->listen[i]->paused)
			moat_loop_del(w->loop, &w->listen[i]->io);
	while (w->conns) {
		struct moat_conn *c = w->conns;
		c->close_kind = CLOSE_QUIET; /* a shutdown is not an abnormal termination */
		conn_disconnect(c, MOAT_RC_SERVER_SHUTTING_DOWN, "server shutting down");
	}
	before_sleep(w->loop, w);
}

static void end_sessions(struct moat_worker *w)
{
	struct moat_session *s;
	size_t pos;

	for (;;) {
		pos = 0;
		s = moat_map_next(&w->sessions, &pos, NULL, NULL);
		if (!s)
			break;
		session_end(s);
	}
}

static void *worker_main(void *arg)
{
	struct moat_worker *w = arg;
	struct moat_broker *b = w->b;

	moat_loop_run(w->loop);
	w->stop = true;
	/* Phase 1: every worker closes its connections; wills cross to other workers. */
	close_all(w);
	pthread_barrier_wait(&b->stop_barrier);
	/* Phase 2: take what the others sent, then end every session. */
	process_inbox(w->loop, w);
	before_sleep(w->loop, w);
	pthread_barrier_wait(&b->stop_barrier);
	process_inbox(w->loop, w);
	end_sessions(w);
	pthread_barrier_wait(&b->stop_barrier);
	process_inbox(w->loop, w); /* items sent to sessions that just ended */
	return NULL;
}

struct moat_worker *worker_new(struct moat_broker *b, int index)
{
	struct moat_worker *w = calloc(1, sizeof(*w));
	int i, k;

	if (!w)
		return NULL;
	w->b = b;
	w->index = index;
	pthread_mutex_init(&w->inbox_lock, NULL);
	moat_map_init(&w->sessions, NULL);
	w->loop = moat_loop_new();
	w->outbox = calloc((size_t)b->nworkers, sizeof(*w->outbox));
	if (!w->loop || !w->outbox)
		goto fail;
	for (i = 0; i < b->nlisteners; i++) {
		for (k = 0; k < b->listeners[i].nfds; k++) {
			struct listen_io *li = calloc(1, sizeof(*li));
			if (!li)
				goto fail;
			w->listen[w->nlisten++] = li;
			li->io.fd = b->listeners[i].fds[k];
			li->io.cb = on_accept;
			li->w = w;
			li->l = &b->listeners[i];
			if (moat_loop_add(w->loop, &li->io, MOAT_EV_READ | MOAT_EV_EXCLUSIVE) < 0)
				goto fail;
		}
	}
	moat_loop_set_tick(w->loop, 1000, on_tick, w);
	moat_loop_set_before_sleep(w->loop, before_sleep, w);
	moat_loop_set_wake(w->loop, process_inbox, w);
	return w;
fail:
	worker_free(w);
	return NULL;
}

int worker_start(struct moat_worker *w)
{
	return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : MOAT_EIO;
}

void worker_stop(struct moat_worker *w)
{
	moat_loop_stop(w->loop);
	moat_loop_wake(w->loop);
}

void worker_join(struct moat_worker *w)
{
	pthread_join(w->thread, NULL);
}

void worker_free(struct moat_worker *w)
{
	int i;

	if (!w)
		return;
	for (i = 0; i < w->nlisten; i++)
		free(w->listen[i]);
	if (w->outbox)
		for (i = 0; i < w->b->nworkers; i++)
			free(w->outbox[i].v);
	free(w->outbox);
	free(w->inbox.v);
	free(w->work.v);
	free(w->dirty);
	free(w->unread);
	free(w->targets);
	free(w->subids);
	free(w->dedup);
	moat_map_free(&w->sessions);
	moat_loop_free(w->loop);
	pthread_mutex_destroy(&w->inbox_lock);
	free(w);
}

/* Disconnects every connection whose client certificate is now revoked. */
void worker_recheck_tls(struct moat_worker *w)
{
	struct moat_conn *c, *next;

	for (c = w->conns; c; c = next) {
		next = c->next;
		if (!c->listener->tls || moat_tls_recheck(c->listener->tls, c->tr) == 0)
			continue;
		c->close_kind = MOAT_SEC_CERT_REVOKED; /* the event says why: not an abnormal close */
		guard_event(c, MOAT_SEC_CERT_REVOKED, "revoked by the CRL");
		if (c->state == C_ACTIVE)
			conn_disconnect(c, MOAT_RC_ADMINISTRATIVE_ACTION, "certificate revoked");
		else
			conn_close(c, "certificate revoked");
	}
}

/* ---- questions from other threads (the admin API) ---- */

/*
 * A question to every worker: fn runs on each worker's thread, between two
 * loop turns, with the query's lock held (so fn may add to arg without its
 * own locking). The asking thread waits for all, or gives up at its timeout:
 * then the query is cancelled, and a worker that comes to it later only
 * drops it, so arg is never touched after worker_query returns.
 */
struct query {
	pthread_mutex_t lock;
	pthread_cond_t answered;
	int pending, refs;
	bool cancelled;
	void (*fn)(struct moat_worker *w, void *arg);
	void *arg;
};

static void query_put(struct query *q)
{
	bool last = --q->refs == 0;

	pthread_mutex_unlock(&q->lock);
	if (last) {
		pthread_mutex_destroy(&q->lock);
		pthread_cond_destroy(&q->answered);
		free(q);
	}
}

void worker_query_run(struct moat_worker *w, void *job, bool run)
{
	struct query *q = job;

	pthread_mutex_lock(&q->lock);
	if (run && !q->cancelled)
		q->fn(w, q->arg);
	q->pending--;
	pthread_cond_signal(&q->answered);
	query_put(q); /* unlocks */
}

int worker_query(struct moat_broker *b, void (*fn)(struct moat_worker *w, void *arg), void *arg,
		 int timeout_ms)
{
	struct query *q = calloc(1, sizeof(*q));
	struct timespec until;
	int rc = 0;

	if (!q)
		return MOAT_ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->answered, NULL);
	q->fn = fn;
	q->arg = arg;
	q->pending = b->nworkers;
	q->refs = b->nworkers + 1;
	for (int i = 0; i < b->nworkers; i++)
		worker_push_now(b->workers[i], (struct item){ .kind = IT_QUERY, .job = q });
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->lock);
	while (q->pending > 0 && rc == 0)
		if (pthread_cond_timedwait(&q->answered, &q->lock, &until) != 0)
			rc = MOAT_EAGAIN;
	if (q->pending > 0)
		rc = MOAT_EAGAIN;
	q->cancelled = true;
	query_put(q); /* unlocks */
	return rc;
}
