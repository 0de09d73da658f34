/*
 * guard.c - the broker's side of detection and response: it feeds the
 * sentinel every security event, carries out what the sentinel decides
 * (disconnect, throttle; bans are placed in the shared ban table), and
 * applies the cheap checks that must run before anything expensive: address
 * bans, connection rates and counts at accept; name bans, forwarded-address
 * bans and lockdown at CONNECT; message and byte rates per client. The
 * password gate before each hash is in gate.c.
 *
 *   workers --moat_sec_emit--> sink --submit--> sentinel thread --> audit log
 *                                                     |            --> $SYS/moat/security/<kind>
 *                                                     +--> bans (shared table, read at accept/CONNECT)
 *                                                     +--> IT_KICK / IT_THROTTLE --> every worker
 *
 * A rate-limited client is slowed, never dropped: its reads pause until its
 * buckets refill, so TCP pushes back on it and nothing it sent is lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "broker/internal.h"
#include "broker/sys.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"

#define MAX_TOPICS_REMEMBERED 1024 /* per connection, for new_topic events */
#define RATE_MAP_MAX 65536         /* addresses with a connection-rate bucket (~6 MB) */
#define THROTTLED_RATE 1.0         /* messages per second while the sentinel throttles */

struct addr_count {
	int n;
	size_t len;
	char host[];
};

struct rate_entry {
	struct moat_bucket bucket;
	size_t len;
	char host[];
};

_Static_assert(MOAT_CONFIG_DETECTORS == MOAT_DET_COUNT, "config and sentinel name the same detectors");

static struct moat_sentinel *_Atomic active; /* the one the event sink feeds */

/* Frees every value of a map of malloc'd entries and empties it. */
static void free_entries(struct moat_map *m)
{
	size_t pos = 0;
	void *e;

	while ((e = moat_map_next(m, &pos, NULL, NULL)))
		free(e);
	moat_map_free(m);
	moat_map_init(m, NULL);
}

/* ---- events ---- */

static void sink(void *ctx, const struct moat_sec_event *e)
{
	struct moat_sentinel *s = atomic_load(&active);

	(void)ctx;
	if (s)
		moat_sentinel_submit(s, e);
}

/* An event about connection c, with a value the kind gives meaning to. */
static void conn_event(struct moat_conn *c, enum moat_sec_kind kind, const char *reason,
		       int64_t value)
{
	struct moat_sec_event e = {
		.kind = kind,
		.addr = c->addr,
		.client_id = c->session ? c->session->client_id : c->pending_id[0] ? c->pending_id : NULL,
		.username = c->username,
		.method = c->session ? auth_method_name(c->proven) : NULL,
		.reason = reason,
		.port = c->listener->conf->port,
		.value = value,
	};
	moat_sec_emit(&e);
}

void guard_event(struct moat_conn *c, enum moat_sec_kind kind, const char *reason)
{
	conn_event(c, kind, reason, 0);
}

/* An event about the broker itself (reload, lockdown): no client. */
void guard_note(enum moat_sec_kind kind, const char *reason)
{
	struct moat_sec_event e = {.kind = kind, .addr = "", .reason = reason};

	moat_sec_emit(&e);
}

static void addr_event(struct moat_listener *l, const char *host, enum moat_sec_kind kind,
		       const char *reason)
{
	struct moat_sec_event e = {.kind = kind, .addr = host, .reason = reason,
				   .port = l->conf->port};
	moat_sec_emit(&e);
}

/* ---- what the sentinel asks (on its thread) ---- */

static void broadcast(struct moat_broker *b, int kind, const char *addr, const char *cid,
		      const char *user, const char *why, uint32_t seconds, uint8_t reason_code)
{
	int i;

	for (i = 0; i < b->nworkers; i++) {
		struct verdict *v = calloc(1, sizeof(*v));
		if (!v)
			continue;
		snprintf(v->addr, sizeof(v->addr), "%s", addr ? addr : "");
		snprintf(v->client_id, sizeof(v->client_id), "%s", cid ? cid : "");
		snprintf(v->username, sizeof(v->username), "%s", user ? user : "");
		snprintf(v->why, sizeof(v->why), "%s", why ? why : "");
		v->seconds = seconds;
		v->reason_code = reason_code;
		worker_push_now(b->workers[i], (struct item){.kind = (uint8_t)kind, .job = v});
	}
}

/* ---- what an administrator asks (admin.c, on an admin thread) ---- */

void guard_kick(struct moat_broker *b, const char *addr, const char *client_id,
		const char *username, const char *identity, const char *why)
{
	if (!identity) {
		broadcast(b, IT_KICK, addr, client_id, username, why, 0, 0);
		return;
	}
	for (int i = 0; i < b->nworkers; i++) {
		struct verdict *v = calloc(1, sizeof(*v));
		if (!v)
			continue;
		snprintf(v->identity, sizeof(v->identity), "%s", identity);
		snprintf(v->why, sizeof(v->why), "%s", why);
		worker_push_now(b->workers[i], (struct item){.kind = IT_KICK, .job = v});
	}
}

void guard_kick_banned(struct moat_broker *b)
{
	for (int i = 0; i < b->nworkers; i++) {
		struct verdict *v = calloc(1, sizeof(*v));
		if (!v)
			continue;
		v->banned = true;
		snprintf(v->why, sizeof(v->why), "banned by an administrator");
		worker_push_now(b->workers[i], (struct item){.kind = IT_KICK, .job = v});
	}
}

bool guard_lockdown(struct moat_broker *b)
{
	int set = atomic_load(&b->lockdown_set);

	return set >= 0 ? set : b->conf->lockdown;
}

void guard_set_lockdown(struct moat_broker *b, bool on)
{
	bool was = guard_lockdown(b);

	atomic_store(&b->lockdown_set, on);
	if (was != on)
		guard_note(MOAT_SEC_LOCKDOWN, on ? "on (admin)" : "off (admin)");
}

static void op_disconnect(void *ctx, const char *addr, const char *client_id,
			  const char *username, const char *why, uint8_t reason_code)
{
	broadcast(ctx, IT_KICK, addr, client_id, username, why, 0, reason_code);
}

static void op_throttle(void *ctx, const char *addr, const char *client_id, uint32_t seconds)
{
	broadcast(ctx, IT_THROTTLE, addr, client_id, NULL, "throttled by the sentinel", seconds, 0);
}

static void op_publish(void *ctx, const struct moat_sec_event *e)
{
	struct moat_broker *b = ctx;

	if (e->kind == MOAT_SEC_BANNED)
		atomic_store(&b->bans_dirty, true);
	if (e->kind == MOAT_SEC_BANNED && e->addr && e->addr[0])
		gate_banned(b, e->addr);
	if (b->secsys)
		moat_sys_security(b->secsys, e);
}

/* ---- setting up ---- */

/* The allow-list: the config's, or loopback if it gave none ("none" gives an empty one). */
static int load_allow(struct moat_broker *b, char *err, size_t errlen)
{
	const char *list = b->conf->sentinel_allow ? b->conf->sentinel_allow : "127.0.0.0/8 ::1";
	char word[300];

	while (list && *list) {
		size_t n = strcspn(list, " ");
		enum moat_ban_kind kind = MOAT_BAN_ADDR;
		const char *key = word;

		snprintf(word, sizeof(word), "%.*s", (int)n, list);
		list += n + (list[n] == ' ');
		if (strncmp(word, "clientid:", 9) == 0) {
			kind = MOAT_BAN_CLIENTID;
			key += 9;
		} else if (strncmp(word, "username:", 9) == 0) {
			kind = MOAT_BAN_USERNAME;
			key += 9;
		}
		if (moat_bans_allow(b->bans, kind, key) < 0) {
			snprintf(err, errlen, "sentinel_allow: cannot use '%s'", word);
			return MOAT_ECONFIG;
		}
	}
	return 0;
}

static void sentinel_conf(const struct moat_config *c, struct moat_sentinel_conf *sc)
{
	int i;

	moat_sentinel_conf_defaults(sc);
	for (i = 0; i < MOAT_CONFIG_DETECTORS && i < MOAT_DET_COUNT; i++) {
		const struct moat_config_detector *d = &c->detectors[i];
		if (!c->sentinel) { /* "sentinel false": an audit log may still be kept */
			sc->det[i].enabled = false;
			continue;
		}
		if (!d->set)
			continue;
		sc->det[i].enabled = d->enabled;
		if (d->enabled) {
			sc->det[i].threshold = d->threshold;
			sc->det[i].window_s = d->window_s;
			sc->det[i].action = d->action;
		}
	}
	sc->availability_min_s = c->availability_s;
	sc->throttle_s = c->throttle_s;
	if (c->n_ban_steps) {
		sc->n_ban_steps = c->n_ban_steps;
		for (i = 0; i < c->n_ban_steps; i++)
			sc->ban_steps_s[i] = c->ban_steps[i];
	}
}

int guard_init(struct moat_broker *b, char *err, size_t errlen)
{
	const struct moat_config *c = b->conf;
	static const struct moat_sentinel_ops ops0 = {0};
	struct moat_sentinel_ops ops = ops0;
	struct moat_sentinel_conf sc;
	static bool sink_added;
	int rc;

	admin_events_init(); /* its sink, before any thread emits (once per process) */
	pthread_mutex_init(&b->addr_lock, NULL);
	moat_map_init(&b->addr_counts, NULL);
	moat_map_init(&b->addr_rates, NULL);
	moat_map_init(&b->auth_gate, NULL);
	if (!(b->bans = moat_bans_new()))
		return MOAT_ENOMEM;
	if ((rc = load_allow(b, err, errlen)) < 0)
		return rc;
	if (c->bans_file && (rc = moat_bans_load(b->bans, c->bans_file, moat_now_ms(),
						 moat_wall_s(), err, errlen)) < 0)
		return rc;
	if (c->audit_log && (rc = moat_audit_open(c->audit_log, c->audit_log_max_size,
						  (int)c->audit_log_keep, &b->audit, err, errlen)) < 0)
		return rc;
	if (!c->sentinel && !c->audit_log)
		return 0;
	sentinel_conf(c, &sc);
	ops.ctx = b;
	ops.disconnect = op_disconnect;
	ops.throttle = op_throttle;
	ops.publish = op_publish;
	b->secsys = moat_sys_new(b);
	b->sentinel = moat_sentinel_new(&sc, b->bans, b->audit, &ops);
	if (!b->secsys || !b->sentinel)
		return MOAT_ENOMEM;
	if (!sink_added) {
		moat_sec_add_sink(sink, NULL);
		sink_added = true;
	}
	atomic_store(&active, b->sentinel);
	return 0;
}

/*
 * After a reload: the sentinel's detectors, ban steps and availability, and
 * the allow-list, as the configuration now says (the bans stay).
 */
void guard_reload(struct moat_broker *b)
{
	struct moat_sentinel_conf sc;
	char err[256];

	sentinel_conf(b->conf, &sc);
	moat_sentinel_reconfigure(b->sentinel, &sc);
	moat_bans_allow_clear(b->bans);
	if (load_allow(b, err, sizeof(err)) < 0)
		moat_log(MOAT_LOG_LVL_ERROR, "reload_allow_failed reason=\"%s\"", err);
}

void guard_save_bans(struct moat_broker *b)
{
	char err[256];

	if (!atomic_exchange(&b->bans_dirty, false))
		return;
	persist_bans(b); /* the store keeps them too, sealed, when persistence is on */
	if (b->conf->bans_file && moat_bans_save(b->bans, b->conf->bans_file, moat_now_ms(),
						 moat_wall_s(), err, sizeof(err)) < 0)
		moat_log(MOAT_LOG_LVL_ERROR, "bans_save_failed reason=\"%s\"", err);
}

/* After the workers are joined: the last events reach the audit log, then everything goes. */
void guard_free(struct moat_broker *b)
{
	atomic_store(&active, NULL);
	moat_sentinel_free(b->sentinel); /* drains its queue */
	b->sentinel = NULL;
	moat_sys_free(b->secsys);
	if (b->audit && moat_audit_sync(b->audit) == 0)
		persist_audit_head(b); /* the store closes after this: the last head goes in */
	moat_audit_close(b->audit);
	b->audit = NULL;
	if (b->bans)
		atomic_store(&b->bans_dirty, true);
	if (b->bans)
		guard_save_bans(b);
	moat_bans_free(b->bans);
	free_entries(&b->addr_counts);
	free_entries(&b->addr_rates);
	free_entries(&b->auth_gate);
	pthread_mutex_destroy(&b->addr_lock);
}

/* ---- accept ---- */

/*
 * New connections from host, against max_connection_rate (a burst of twice
 * the rate, at least 10). One table for the whole broker: the kernel spreads
 * one address's connections over the workers' listening sockets, so a
 * per-worker bucket would let it in nworkers times. Accepts are rare next to
 * packets: a mutex here costs nothing that matters.
 */
static bool connection_rate_ok(struct moat_broker *b, const char *host, int64_t now)
{
	double rate = b->conf->max_connection_rate;
	struct rate_entry *r;
	size_t n = strlen(host);
	bool ok = true;

	if (rate <= 0)
		return true;
	pthread_mutex_lock(&b->addr_lock);
	r = moat_map_get(&b->addr_rates, host, n);
	if (!r) {
		if (b->addr_rates.len >= RATE_MAP_MAX) /* bounded: start over rather than grow */
			free_entries(&b->addr_rates);
		if ((r = calloc(1, sizeof(*r) + n + 1))) {
			memcpy(r->host, host, n + 1);
			r->len = n;
			if (moat_map_put(&b->addr_rates, r->host, n, r) < 0) {
				free(r);
				r = NULL;
			}
		}
	}
	if (r)
		ok = moat_bucket_take(&r->bucket, rate, rate * 2 < 10 ? 10 : rate * 2, 1, now);
	pthread_mutex_unlock(&b->addr_lock);
	return ok;
}

/* New connections on listener l, all addresses together, against its max_accept_rate. */
static bool listener_rate_ok(struct moat_broker *b, struct moat_listener *l, int64_t now)
{
	double rate = l->conf->max_accept_rate;
	bool ok;

	if (rate <= 0)
		return true;
	pthread_mutex_lock(&b->addr_lock);
	ok = moat_bucket_take(&b->listener_rates[l->index], rate, rate * 2 < 10 ? 10 : rate * 2, 1,
			      now);
	pthread_mutex_unlock(&b->addr_lock);
	return ok;
}

/*
 * Counts one more connection from host: 1 if counted, 0 if there is no
 * limit (not counted), -1 if it already has the most allowed.
 */
static int count_address(struct moat_broker *b, const char *host)
{
	uint32_t max = b->conf->max_connections_per_address;
	size_t n = strlen(host);
	struct addr_count *ac;
	int ok = 1;

	if (!max)
		return 0;
	pthread_mutex_lock(&b->addr_lock);
	ac = moat_map_get(&b->addr_counts, host, n);
	if (!ac && (ac = calloc(1, sizeof(*ac) + n + 1))) {
		memcpy(ac->host, host, n + 1);
		ac->len = n;
		if (moat_map_put(&b->addr_counts, ac->host, n, ac) < 0) {
			free(ac);
			ac = NULL;
		}
	}
	if (ac && (uint32_t)ac->n >= max)
		ok = -1;
	else if (ac)
		ac->n++;
	else
		ok = 0; /* out of memory: let it in uncounted */
	pthread_mutex_unlock(&b->addr_lock);
	return ok;
}

/* Gives back a place counted by count_address. */
void guard_uncount(struct moat_broker *b, const char *host)
{
	struct addr_count *ac;

	pthread_mutex_lock(&b->addr_lock);
	ac = moat_map_get(&b->addr_counts, host, strlen(host));
	if (ac && --ac->n <= 0) {
		moat_map_del(&b->addr_counts, ac->host, ac->len);
		free(ac);
	}
	pthread_mutex_unlock(&b->addr_lock);
}

/*
 * The checks at accept, before a byte is read: bans, the listener's
 * connection count and rate, connection rate and count per address.
 * Returns -1 to refuse the socket, else whether it was counted per address
 * (then guard_release or guard_uncount gives the place back).
 */
int guard_accept(struct moat_worker *w, struct moat_listener *l, const struct sockaddr_storage *sa,
		  const char *host)
{
	struct moat_broker *b = w->b;
	int64_t now = worker_now(w);
	struct moat_ban_info info;
	int counted;

	if (moat_bans_check_addr(b->bans, (const struct sockaddr *)sa, now, &info)) {
		addr_event(l, host, MOAT_SEC_BAN_HIT, info.reason[0] ? info.reason : "banned address");
		return -1;
	}
	if (l->conf->max_connections >= 0 && atomic_load(&l->connections) >= l->conf->max_connections) {
		addr_event(l, host, MOAT_SEC_CONNECTION_REFUSED, "listener max_connections");
		return -1;
	}
	if (!listener_rate_ok(b, l, now)) {
		addr_event(l, host, MOAT_SEC_RATE_LIMITED, "max_accept_rate");
		return -1;
	}
	if (!connection_rate_ok(b, host, now)) {
		addr_event(l, host, MOAT_SEC_RATE_LIMITED, "max_connection_rate");
		return -1;
	}
	if ((counted = count_address(b, host)) < 0) {
		addr_event(l, host, MOAT_SEC_CONNECTION_REFUSED, "max_connections_per_address");
		return -1;
	}
	addr_event(l, host, MOAT_SEC_CONNECTION_OPENED, NULL);
	return counted;
}

/* Gives back a connection's place in the count per address. */
void guard_release(struct moat_broker *b, struct moat_conn *c)
{
	size_t pos = 0;
	void *t;

	while ((t = moat_map_next(&c->topics, &pos, NULL, NULL)))
		free(t);
	moat_map_free(&c->topics);
	if (!c->counted)
		return;
	c->counted = false;
	guard_uncount(b, c->host);
}

/* ---- CONNECT ---- */

/*
 * The client's own address: what a trusted proxy forwarded (a bare address),
 * else the peer's. Bans, the allow-list and the password gate go by it.
 */
const char *guard_client_host(const struct moat_conn *c)
{
	return c->forwarded ? c->addr : c->host;
}

bool guard_client_sockaddr(const struct moat_conn *c, struct sockaddr_storage *sa)
{
	socklen_t len = sizeof(*sa);

	memset(sa, 0, sizeof(*sa));
	if (!c->forwarded)
		return getpeername(c->io.fd, (struct sockaddr *)sa, &len) == 0;
	if (inet_pton(AF_INET, c->addr, &((struct sockaddr_in *)sa)->sin_addr) == 1) {
		sa->ss_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, c->addr, &((struct sockaddr_in6 *)sa)->sin6_addr) == 1) {
		sa->ss_family = AF_INET6;
		return true;
	}
	return false;
}

/*
 * Bans by client id and user name, and lockdown, before any expensive check.
 * Returns 0, or the refusal reason with *why.
 */
uint8_t guard_connect(struct moat_conn *c, const uint8_t *client_id, size_t n, const char **why)
{
	struct moat_broker *b = c->w->b;
	int64_t now = worker_now(c->w);
	struct moat_ban_info info;
	size_t un = c->username ? strlen(c->username) : 0;

	struct sockaddr_storage sa;
	bool have_sa = guard_client_sockaddr(c, &sa);

	/* the peer's address was checked at accept; a forwarded one is known only now */
	if ((c->forwarded && have_sa &&
	     moat_bans_check_addr(b->bans, (struct sockaddr *)&sa, now, &info)) ||
	    moat_bans_check_name(b->bans, MOAT_BAN_CLIENTID, (const char *)client_id, n, now, &info) ||
	    (c->username &&
	     moat_bans_check_name(b->bans, MOAT_BAN_USERNAME, c->username, un, now, &info))) {
		guard_event(c, MOAT_SEC_BAN_HIT, info.reason[0] ? info.reason : "banned");
		c->refusal_reported = true;
		*why = "banned";
		return MOAT_RC_BANNED;
	}
	if (guard_lockdown(b)) {
		bool allowed = (have_sa && moat_bans_allowed_addr(b->bans, (struct sockaddr *)&sa)) ||
			       moat_bans_allowed_name(b->bans, MOAT_BAN_CLIENTID, (const char *)client_id,
						      n) ||
			       (c->username &&
				moat_bans_allowed_name(b->bans, MOAT_BAN_USERNAME, c->username, un));
		if (!allowed) {
			guard_event(c, MOAT_SEC_CONNECTION_REFUSED, "lockdown");
			c->refusal_reported = true;
			*why = "lockdown: only allow-listed clients";
			return MOAT_RC_SERVER_BUSY;
		}
	}
	return 0;
}

/* ---- while connected ---- */

/*
 * Accounts a PUBLISH of `bytes` against the client's rates. Over them, its
 * reads pause until the buckets refill (TCP pushes back; nothing read is
 * dropped here) and this returns false: the caller may refuse the message
 * where MQTT 5 lets it say so (PUBACK/PUBREC 0x97).
 */
bool guard_publish(struct moat_conn *c, size_t bytes)
{
	const struct moat_config *conf = c->w->b->conf;
	int64_t now = worker_now(c->w);
	double mrate = conf->max_message_rate, brate = (double)conf->max_byte_rate;
	bool ok;

	c->did_work = true;
	if (now < c->throttled_until && (mrate <= 0 || mrate > THROTTLED_RATE))
		mrate = THROTTLED_RATE;
	ok = moat_bucket_take(&c->msg_bucket, mrate, mrate < 1 ? 1 : mrate, 1, now) &
	     moat_bucket_take(&c->byte_bucket, brate, brate, (double)bytes < brate ? (double)bytes : brate, now);
	if (ok)
		return true;
	if (c->paused_until <= now) { /* one event per pause */
		bool throttled = now < c->throttled_until;
		c->paused_until = now + 1000;
		/* value 1: over the configured rates, what publish_flood counts; a pause
		 * the sentinel's own throttle causes is the response, not more flooding */
		conn_event(c, MOAT_SEC_RATE_LIMITED, throttled ? "throttled" : "message or byte rate",
			   !throttled);
	}
	return false;
}

/*
 * Notes a topic the client used; the first use of each is a new_topic event,
 * a probe (value 1) if it was a subscription or a publish that was denied or
 * reached no one: what topic_scan counts. Accepted publishes are counted per
 * topic too: the data-flow map (admin_flows.c) is made of these counts.
 */
void guard_topic(struct moat_conn *c, const uint8_t *topic, size_t n, bool probe, bool published)
{
	struct topic_use *u;

	c->did_work = true;
	if ((u = moat_map_get(&c->topics, topic, n))) {
		u->published += published;
		return;
	}
	if (c->topics.len < MAX_TOPICS_REMEMBERED && (u = malloc(sizeof(*u) + n + 1))) {
		u->published = published;
		u->since = worker_now(c->w);
		u->len = n;
		memcpy(u->text, topic, n);
		u->text[n] = 0;
		if (moat_map_put(&c->topics, u->text, n, u) < 0)
			free(u);
	}
	{
		char t[256];
		struct moat_sec_event e = {.kind = MOAT_SEC_NEW_TOPIC, .addr = c->addr,
					   .client_id = c->session ? c->session->client_id : NULL,
					   .username = c->username, .port = c->listener->conf->port,
					   .topic = t, .value = probe};
		snprintf(t, sizeof(t), "%.*s", (int)(n < 255 ? n : 255), (const char *)topic);
		moat_sec_emit(&e);
	}
}

/* Once a second: idle clients, and the end of a rate pause. */
void guard_tick(struct moat_conn *c, int64_t now)
{
	uint32_t idle = c->w->b->conf->idle_timeout;

	if (c->state == C_ACTIVE && idle && !c->did_work && !c->idle_reported &&
	    now - c->connected_at >= (int64_t)idle * 1000) {
		c->idle_reported = true;
		guard_event(c, MOAT_SEC_IDLE_CLIENT, "connected without PUBLISH or SUBSCRIBE");
	}
	if (c->paused_until && now >= c->paused_until)
		c->paused_until = 0;
}

/* ---- verdicts from the sentinel ---- */

/* The TLS identity of c is id: its certificate's subject or CN, or its PSK identity. */
static bool identity_is(const struct moat_conn *c, const char *id)
{
	const struct moat_tls_info *ti = c->tr->ops->tls(c->tr);

	if (c->identity && strcmp(c->identity, id) == 0)
		return true;
	return ti && (strcmp(ti->subject, id) == 0 || strcmp(ti->cn, id) == 0 ||
		      strcmp(ti->psk_identity, id) == 0) && id[0];
}

/* A connection the bans table covers now: its address, client id or user name. */
static bool banned_now(const struct moat_conn *c)
{
	struct moat_bans *bans = c->w->b->bans;
	int64_t now = worker_now(c->w);
	struct sockaddr_storage sa;

	if (guard_client_sockaddr(c, &sa) && moat_bans_check_addr(bans, (struct sockaddr *)&sa, now, NULL))
		return true;
	if (c->session && moat_bans_check_name(bans, MOAT_BAN_CLIENTID, c->session->client_id,
					       c->session->client_id_len, now, NULL))
		return true;
	return c->username && moat_bans_check_name(bans, MOAT_BAN_USERNAME, c->username,
						  strlen(c->username), now, NULL);
}

static bool matches(const struct moat_conn *c, const struct verdict *v)
{
	if (v->banned)
		return banned_now(c);
	if (v->addr[0] && strcmp(v->addr, c->host) != 0 && strcmp(v->addr, guard_client_host(c)) != 0)
		return false;
	if (v->client_id[0] && (!c->session || strcmp(v->client_id, c->session->client_id) != 0))
		return false;
	if (v->username[0] && (!c->username || strcmp(v->username, c->username) != 0))
		return false;
	if (v->identity[0] && !identity_is(c, v->identity))
		return false;
	return v->addr[0] || v->client_id[0] || v->username[0] || v->identity[0];
}

void guard_verdict(struct moat_worker *w, int kind, struct verdict *v)
{
	struct moat_conn *c, *next;
	int64_t now = worker_now(w);

	for (c = w->conns; c; c = next) {
		next = c->next;
		if (!matches(c, v))
			continue;
		if (kind == IT_THROTTLE) {
			c->throttled_until = now + (int64_t)v->seconds * 1000;
			continue;
		}
		c->close_kind = MOAT_SEC_KICKED;
		guard_event(c, MOAT_SEC_KICKED, v->why);
		if (c->state == C_ACTIVE)
			conn_disconnect(c, v->reason_code ? v->reason_code : MOAT_RC_ADMINISTRATIVE_ACTION,
					v->why);
		else
			conn_close(c, v->why);
	}
	free(v);
}
