/*
 * persist.c - durable state: the broker's side of the store (src/store/).
 *
 * What is kept, with `persistence true`:
 *   - retained messages (RETAINED, keyed by an HMAC of the topic);
 *   - sessions that outlive their connection (expiry > 0: 5.0 Session
 *     Expiry, 3.x clean session 0) with their subscriptions (SESSIONS,
 *     keyed by an HMAC of the client id, "skey");
 *   - their QoS 1 and 2 deliveries, queued or in flight, and the QoS 2
 *     packet ids received from them (MESSAGES, keyed skey | sequence, or
 *     skey | 'Q' | packet id), and a delayed will waiting to be published
 *     (MESSAGES, skey | 'W').
 *
 * Who writes. A session's rows are written by its home worker, except the
 * first row of a delivery: that one the *publishing* worker writes, before
 * it hands the message on, so that with persistence_sync always its PUBACK
 * (or PUBREC) can wait for every copy the message will have:
 *
 *   publisher: match -> put delivery rows (QUEUED) -> inbox -> barrier -> PUBACK
 *   home:      take item -> send -> put SENT -> PUBACK from the client -> delete
 *
 * The store is one FIFO, so the home worker's later updates of a row always
 * follow the publisher's first write of it. Acknowledgements of one
 * connection leave in the order their PUBLISHes came [MQTT-4.6.0-2]: once
 * one waits for the store, the later ones wait behind it.
 *
 * At start-up persist_load rebuilds every session, delivery and retained
 * message before the workers run. A row that does not open or parse is
 * reported and skipped; rows of sessions that no longer exist are deleted.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/internal.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/file.h"
#include "core/log.h"
#include "store/record.h"

#define SKEY_LEN MOAT_SEAL_NAME_KEY_LEN
#define DKEY_LEN (SKEY_LEN + 8) /* skey | sequence (big-endian) */
#define QKEY_LEN (SKEY_LEN + 3) /* skey | 'Q' | packet id */
#define WKEY_LEN (SKEY_LEN + 1) /* skey | 'W': its delayed will */
#define KEY_ENV "MOAT_STORE_KEY"
#define BACKLOG_MAX 20000 /* batch/off: queued writes past which acknowledgements wait */

/* Its row is in the store (it outlives its connection): its deliveries are kept too. */
static bool durable(const struct moat_session *s)
{
	return s->home->b->store && atomic_load(&s->stored) && !s->dead;
}

/*
 * At shutdown sessions are ended only to be freed, and what is still in the
 * inboxes is dropped: their rows stay for the restart.
 */
static bool shutting_down(const struct moat_session *s)
{
	return atomic_load(&s->home->b->stopping);
}

static void note_write(struct moat_worker *w)
{
	if (w)
		w->store_writes++;
}

/* Monotonic ms <-> wall ms, for expiry times that must survive a restart. */
static int64_t to_wall(int64_t mono)
{
	return mono ? moat_wall_ms() + (mono - moat_now_ms()) : 0;
}

static int64_t to_mono(int64_t wall)
{
	int64_t m = moat_now_ms() + (wall - moat_wall_ms());

	return m > 0 ? m : 1;
}

/* ---- opening and closing ---- */

/*
 * A key rotation writes the new key beside the key file (KEYFILE.next)
 * before the store switches to it, and renames it over the key file after
 * (persist_rekey). A crash between the two leaves a store that only the
 * .next key opens: finish the rename. A .next left by a rotation that never
 * reached the store is removed.
 */
static int open_with_key_file(struct moat_broker *b, struct moat_store_conf *sc, char *err,
			      size_t errlen)
{
	const char *keyfile = b->conf->persistence_key_file;
	char next[4200], err2[512];
	struct stat st;
	int rc;

	if ((rc = moat_seal_load_key(keyfile, KEY_ENV, sc->key, err, errlen)) < 0)
		return rc;
	rc = moat_store_open(sc, &b->store, err, errlen);
	if (!keyfile || snprintf(next, sizeof(next), "%s.next", keyfile) >= (int)sizeof(next) ||
	    lstat(next, &st) < 0)
		return rc;
	if (rc == 0) {
		unlink(next);
		moat_log(MOAT_LOG_LVL_WARNING,
			 "store_key_rotation_abandoned file=%s reason=\"the store never switched to "
			 "it\"",
			 next);
		return 0;
	}
	if (rc != MOAT_ECONFIG || moat_seal_load_key(next, NULL, sc->key, err2, sizeof(err2)) < 0 ||
	    moat_store_open(sc, &b->store, err2, sizeof(err2)) < 0)
		return rc;
	if (rename(next, keyfile) < 0) {
		moat_log(MOAT_LOG_LVL_ERROR, "store_key_rename_failed from=%s to=%s reason=\"%s\"",
			 next, keyfile, strerror(errno));
	} else {
		moat_sync_dir_of(keyfile);
		moat_log(MOAT_LOG_LVL_NOTICE,
			 "store_key_rotation_completed file=%s reason=\"moatd stopped between "
			 "switching the store and renaming the key file\"",
			 keyfile);
	}
	return 0;
}

int persist_open(struct moat_broker *b, char *err, size_t errlen)
{
	const struct moat_config *c = b->conf;
	struct moat_store_conf sc = { .dir = c->persistence_location ? c->persistence_location
								      : ".",
				      .sync = (enum moat_store_sync)c->persistence_sync,
				      .batch_ms = c->persistence_sync_interval };
	int rc;

	if (!c->persistence) {
		if (c->restore_from) {
			moat_set_err(err, errlen, "--restore: persistence is off in the configuration");
			return MOAT_ECONFIG;
		}
		return 0;
	}
	if (!c->persistence_key_file && !getenv(KEY_ENV)) {
		moat_set_err(err, errlen,
			     "persistence: the store is encrypted and needs a key: set "
			     "persistence_key_file (make one with `moat store keygen FILE`) or %s",
			     KEY_ENV);
		return MOAT_ECONFIG;
	}
	if (c->restore_from) {
		char aside[4400];
		if ((rc = moat_seal_load_key(c->persistence_key_file, KEY_ENV, sc.key, err,
					     errlen)) < 0)
			return rc;
		rc = moat_store_restore(sc.dir, c->restore_from, sc.key, aside, sizeof(aside), err,
					errlen);
		moat_seal_wipe(sc.key, sizeof(sc.key));
		if (rc < 0)
			return rc;
		moat_log(MOAT_LOG_LVL_NOTICE, "store_restored from=%s dir=%s previous=%s",
			 c->restore_from, sc.dir, aside[0] ? aside : "none");
	}
	rc = open_with_key_file(b, &sc, err, errlen);
	moat_seal_wipe(sc.key, sizeof(sc.key));
	if (rc < 0)
		return rc;
	atomic_init(&b->store_seq, 1);
	moat_log(MOAT_LOG_LVL_NOTICE, "store_opened dir=%s sync=%s", sc.dir,
		 c->persistence_sync == 0 ? "always" : c->persistence_sync == 1 ? "batch" : "off");
	return 0;
}

/* ---- operations on the running store (the admin API) ---- */

struct rekey_job {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int refs;               /* the caller and the store's callbacks */
	int step_rc, done_rc;
	bool stepped, done;
	char keyfile[4096];     /* "" when the key comes from the environment */
	char next[4200];
};

static void rekey_job_put(struct rekey_job *j)
{
	pthread_mutex_lock(&j->lock);
	bool last = --j->refs == 0;
	pthread_mutex_unlock(&j->lock);
	if (last) {
		pthread_mutex_destroy(&j->lock);
		pthread_cond_destroy(&j->cond);
		free(j);
	}
}

/* The store thread: the new key set is committed (rc 0) or not; move the key file to match. */
static void rekey_step(void *ctx, int rc)
{
	struct rekey_job *j = ctx;

	if (j->next[0] && rc == 0) {
		if (rename(j->next, j->keyfile) < 0) /* the next start finishes it (open_with_key_file) */
			moat_log(MOAT_LOG_LVL_ERROR,
				 "store_key_rename_failed from=%s to=%s reason=\"%s\"", j->next,
				 j->keyfile, strerror(errno));
		else
			moat_sync_dir_of(j->keyfile);
	} else if (j->next[0]) {
		unlink(j->next);
	}
	pthread_mutex_lock(&j->lock);
	j->step_rc = rc;
	j->stepped = true;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

static void rekey_done(void *ctx, int rc)
{
	struct rekey_job *j = ctx;

	pthread_mutex_lock(&j->lock);
	j->done_rc = rc;
	j->done = true;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	rekey_job_put(j);
}

int persist_rekey(struct moat_broker *b, const char *new_key_file, struct moat_store_stats *after,
		  char *err, size_t errlen)
{
	const char *keyfile = b->conf->persistence_key_file;
	uint8_t key[MOAT_SEAL_KEY_LEN];
	struct rekey_job *j;
	int rc;

	if (!b->store) {
		moat_set_err(err, errlen, "persistence is off: there is no store");
		return MOAT_ENOTFOUND;
	}
	if (new_key_file && !keyfile) {
		moat_set_err(err, errlen,
			     "the store's key comes from %s, not a file: moatd cannot move it; "
			     "rotate the data key alone (no key file), or stop moatd and use "
			     "`moat store rekey`",
			     KEY_ENV);
		return MOAT_EDENIED;
	}
	if (!(j = calloc(1, sizeof(*j))))
		return MOAT_ENOMEM;
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	j->refs = 2;
	if (new_key_file) {
		if ((rc = moat_seal_load_key(new_key_file, NULL, key, err, errlen)) < 0)
			goto refused;
		snprintf(j->keyfile, sizeof(j->keyfile), "%s", keyfile);
		snprintf(j->next, sizeof(j->next), "%s.next", keyfile);
		rc = moat_seal_write_key_file(j->next, key, err, errlen);
		if (rc < 0) {
			moat_seal_wipe(key, sizeof(key));
			goto refused;
		}
	}
	rc = moat_store_rekey(b->store, new_key_file ? key : NULL, rekey_step, rekey_done, j);
	moat_seal_wipe(key, sizeof(key));
	if (rc < 0) {
		if (j->next[0])
			unlink(j->next);
		moat_set_err(err, errlen, "the store is closing");
		goto refused;
	}
	moat_log(MOAT_LOG_LVL_NOTICE, "store_rekey_requested new_key_file=%s",
		 new_key_file ? new_key_file : "none");
	pthread_mutex_lock(&j->lock);
	while (!j->done)
		pthread_cond_wait(&j->cond, &j->lock);
	rc = j->done_rc;
	pthread_mutex_unlock(&j->lock);
	rekey_job_put(j);
	if (rc == MOAT_EAGAIN)
		moat_set_err(err, errlen, "another key rotation is running");
	else if (rc == MOAT_ECLOSED)
		moat_set_err(err, errlen, "moatd stopped mid-rotation; it goes on at the next start");
	else if (rc < 0)
		moat_set_err(err, errlen, "the store could not write its new keys (see the log)");
	if (after)
		moat_store_stats(b->store, after);
	return rc;
refused:
	j->refs = 1;
	rekey_job_put(j);
	return rc;
}

int persist_backup(struct moat_broker *b, const char *path, bool replace, char *err, size_t errlen)
{
	char dir[PATH_MAX], here[PATH_MAX], *slash, copy[PATH_MAX];

	if (!b->store) {
		moat_set_err(err, errlen, "persistence is off: there is no store");
		return MOAT_ENOTFOUND;
	}
	if (path[0] != '/') {
		moat_set_err(err, errlen, "%s: the backup's path must be absolute", path);
		return MOAT_EINVAL;
	}
	/* never over the live store's own files */
	snprintf(copy, sizeof(copy), "%s", path);
	slash = strrchr(copy, '/');
	*slash = 0;
	if (realpath(copy[0] ? copy : "/", dir) &&
	    realpath(b->conf->persistence_location ? b->conf->persistence_location : ".", here) &&
	    strcmp(dir, here) == 0 && strncmp(slash + 1, "moat.db", 7) == 0) {
		moat_set_err(err, errlen, "%s: that is the live store's own file", path);
		return MOAT_EINVAL;
	}
	return moat_store_backup(b->store, path, replace, err, errlen);
}

/* After the workers are joined: what is queued reaches the disk; acks wait in the inboxes. */
void persist_flush(struct moat_broker *b)
{
	if (b->store)
		moat_store_flush(b->store);
}

void persist_close(struct moat_broker *b)
{
	moat_store_close(b->store);
	b->store = NULL;
}

/* ---- keys ---- */

void persist_session_init(struct moat_session *s)
{
	struct moat_store *st = s->home->b->store;

	if (st && moat_store_name_key(st, "client", s->client_id, s->client_id_len, s->skey) < 0)
		memset(s->skey, 0, sizeof(s->skey)); /* out of memory: rows of a zero key, still its own */
}

static void dkey(const struct moat_session *s, uint64_t seq, uint8_t out[DKEY_LEN])
{
	memcpy(out, s->skey, SKEY_LEN);
	for (int i = 0; i < 8; i++)
		out[SKEY_LEN + i] = (uint8_t)(seq >> (56 - 8 * i));
}

static void qkey(const struct moat_session *s, uint16_t id, uint8_t out[QKEY_LEN])
{
	memcpy(out, s->skey, SKEY_LEN);
	out[SKEY_LEN] = 'Q';
	out[SKEY_LEN + 1] = (uint8_t)(id >> 8);
	out[SKEY_LEN + 2] = (uint8_t)id;
}

static void put_failed(const char *what, int rc)
{
	moat_log(MOAT_LOG_LVL_ERROR, "store_write_refused what=%s reason=\"%s\"", what,
		 moat_strerror(rc));
}

/* ---- retained messages ---- */

static struct moat_rec_msg msg_record(const struct moat_msg *m)
{
	return (struct moat_rec_msg){
		.qos = m->qos, .retain = m->retain, .has_expiry = m->has_expiry,
		.expires_wall_ms = m->has_expiry ? to_wall(m->expires_at) : 0,
		.topic = moat_msg_topic(m), .topic_len = m->topic_len,
		.props = moat_msg_props(m), .props_len = m->props_len,
		.payload = moat_msg_payload(m), .payload_len = m->payload_len,
	};
}

void persist_retained(struct moat_worker *w, struct moat_broker *b, const struct moat_msg *m)
{
	struct moat_rec_msg r = msg_record(m);
	uint8_t key[SKEY_LEN], *buf;
	size_t n;
	int rc;

	if (!b->store || moat_store_name_key(b->store, "topic", r.topic, r.topic_len, key) < 0)
		return;
	note_write(w);
	if (m->payload_len == 0) { /* an empty retained message deletes [MQTT-3.3.1-6] */
		if ((rc = moat_store_del(b->store, MOAT_STORE_RETAINED, key, sizeof(key), NULL,
					 NULL)) < 0)
			put_failed("retained", rc);
		return;
	}
	if (!(n = moat_rec_msg_size(&r)) || !(buf = malloc(n)))
		return;
	moat_rec_msg_encode(&r, buf);
	if ((rc = moat_store_put(b->store, MOAT_STORE_RETAINED, key, sizeof(key), buf, n, NULL,
				 NULL)) < 0)
		put_failed("retained", rc);
	free(buf);
}

/* ---- sessions ---- */

void persist_session(struct moat_session *s)
{
	struct moat_store *st = s->home->b->store;
	struct moat_rec_session r = { .version = s->version, .expiry = s->expiry };
	struct moat_rec_sub *subs;
	struct sess_sub *ss;
	size_t pos = 0, n;
	uint8_t *buf;
	uint32_t i = 0;
	int rc;

	if (!st || s->dead)
		return;
	if (s->expiry == 0) { /* no longer outlives its connection */
		if (atomic_load(&s->stored))
			persist_session_end(s);
		return;
	}
	r.client_id = (const uint8_t *)s->client_id;
	r.client_id_len = s->client_id_len;
	r.disconnected_wall_ms = s->conn ? 0 : moat_wall_ms();
	if (!(subs = calloc(s->subs.len ? s->subs.len : 1, sizeof(*subs))))
		return;
	while ((ss = moat_map_next(&s->subs, &pos, NULL, NULL)))
		subs[i++] = (struct moat_rec_sub){ ss->filter, ss->len, ss->opts, ss->subid };
	r.nsubs = i;
	if ((n = moat_rec_session_size(&r, subs)) && (buf = malloc(n))) {
		moat_rec_session_encode(&r, subs, buf);
		note_write(s->home);
		if ((rc = moat_store_put(st, MOAT_STORE_SESSIONS, s->skey, SKEY_LEN, buf, n, NULL,
					 NULL)) < 0)
			put_failed("session", rc);
		else
			atomic_store(&s->stored, true);
		free(buf);
	}
	free(subs);
}

void persist_session_end(struct moat_session *s)
{
	struct moat_store *st = s->home->b->store;

	if (!st || shutting_down(s) || !atomic_exchange(&s->stored, false))
		return;
	note_write(s->home);
	moat_store_del(st, MOAT_STORE_SESSIONS, s->skey, SKEY_LEN, NULL, NULL);
	moat_store_del_prefix(st, MOAT_STORE_MESSAGES, s->skey, SKEY_LEN, NULL, NULL);
}

/* ---- runtime security state: bans, the audit log's head ---- */

#define STATE_BANS "bans"
#define STATE_AUDIT "audit_head"
#define AUDIT_HEAD_LEN (8 + 64) /* seq (big-endian) | hash (hex) */

/* The bans in force, as the bans file has them (main thread, when one was placed). */
void persist_bans(struct moat_broker *b)
{
	char *text;
	size_t n;
	int rc;

	if (!b->store || !b->bans)
		return;
	if (moat_bans_format(b->bans, moat_now_ms(), moat_wall_s(), &text, &n) < 0)
		return;
	if ((rc = moat_store_put(b->store, MOAT_STORE_STATE, STATE_BANS, strlen(STATE_BANS), text, n,
				 NULL, NULL)) < 0)
		put_failed("bans", rc);
	free(text);
}

/*
 * The audit log's head as last synced (main thread, every few seconds). The
 * store is sealed: whoever can cut lines off the log's end cannot also move
 * the recorded head back, so the next start tells (persist_load).
 */
void persist_audit_head(struct moat_broker *b)
{
	uint8_t v[AUDIT_HEAD_LEN];
	uint64_t seq;
	char hash[65];

	if (!b->store || !b->audit)
		return;
	moat_audit_head(b->audit, &seq, hash);
	if (seq == b->audit_head_saved)
		return;
	for (int i = 0; i < 8; i++)
		v[i] = (uint8_t)(seq >> (56 - 8 * i));
	memcpy(v + 8, hash, 64);
	if (moat_store_put(b->store, MOAT_STORE_STATE, STATE_AUDIT, strlen(STATE_AUDIT), v, sizeof(v),
			   NULL, NULL) == 0)
		b->audit_head_saved = seq;
}

/* The log must reach at least the head the store recorded, with the same hash there. */
static void check_audit_head(struct moat_broker *b, const uint8_t *v, size_t vn)
{
	uint64_t stored = 0, seq;
	char hash[65], why[256];

	if (!b->audit || vn != AUDIT_HEAD_LEN)
		return;
	for (int i = 0; i < 8; i++)
		stored = stored << 8 | v[i];
	moat_audit_head(b->audit, &seq, hash);
	b->audit_head_saved = stored;
	if (seq > stored || (seq == stored && memcmp(hash, v + 8, 64) == 0))
		return;
	if (seq < stored)
		snprintf(why, sizeof(why),
			 "audit log ends at line %llu, but line %llu was written: lines were removed "
			 "or the log was replaced",
			 (unsigned long long)seq, (unsigned long long)stored);
	else
		snprintf(why, sizeof(why),
			 "audit log line %llu is not the line that was written: the log was replaced",
			 (unsigned long long)seq);
	moat_log(MOAT_LOG_LVL_ERROR, "audit_log_integrity reason=\"%s\"", why);
	guard_note(MOAT_SEC_INTEGRITY, why);
}

/* ---- delayed wills ---- */

/* The row of a session's delayed will: skey | 'W'. */
static void wkey(const struct moat_session *s, uint8_t out[WKEY_LEN])
{
	memcpy(out, s->skey, SKEY_LEN);
	out[SKEY_LEN] = 'W';
}

void persist_will(struct moat_session *s)
{
	struct moat_store *st = s->home->b->store;
	uint8_t key[WKEY_LEN], *buf;
	size_t n;
	int rc;

	if (!durable(s) || (!s->will && shutting_down(s)))
		return;
	wkey(s, key);
	note_write(s->home);
	if (!s->will) {
		moat_store_del(st, MOAT_STORE_MESSAGES, key, sizeof(key), NULL, NULL);
		return;
	}
	struct moat_rec_will r = { .due_wall_ms = to_wall(s->will_at), .msg = msg_record(s->will) };
	if (!(n = moat_rec_will_size(&r)) || !(buf = malloc(n)))
		return;
	moat_rec_will_encode(&r, buf);
	if ((rc = moat_store_put(st, MOAT_STORE_MESSAGES, key, sizeof(key), buf, n, NULL, NULL)) < 0)
		put_failed("will", rc);
	free(buf);
}

/* ---- deliveries ---- */

static uint8_t rec_state(uint8_t state)
{
	return state == D_WAIT_COMP ? MOAT_REC_RELEASED :
	       state == D_WAIT_ACK  ? MOAT_REC_SENT :
				      MOAT_REC_QUEUED;
}

/* Writes a delivery row: state, packet id, qos, identifiers and the message. */
static void put_delivery(struct moat_worker *w, const struct moat_session *s, uint64_t seq,
			 uint8_t state, uint16_t packet_id, uint8_t qos, const uint32_t *subids,
			 uint16_t nsubids, const struct moat_msg *m)
{
	struct moat_rec_delivery d = { .state = rec_state(state), .packet_id = packet_id,
				       .qos = qos, .nsubids = nsubids, .msg = msg_record(m) };
	uint8_t key[DKEY_LEN], *buf;
	size_t n;
	int rc;

	if (!(n = moat_rec_delivery_size(&d)) || !(buf = malloc(n)))
		return;
	moat_rec_delivery_encode(&d, subids, buf);
	dkey(s, seq, key);
	note_write(w);
	if ((rc = moat_store_put(s->home->b->store, MOAT_STORE_MESSAGES, key, sizeof(key), buf, n,
				 NULL, NULL)) < 0)
		put_failed("delivery", rc);
	free(buf);
}

uint64_t persist_delivery_first(struct moat_worker *w, struct moat_session *s, uint8_t qos,
				const uint32_t *subids, uint16_t nsubids, const struct moat_msg *m)
{
	uint64_t seq;

	/* read on the publisher's thread: the home worker sets it (see stored) */
	if (!w->b->store || qos == 0 || !atomic_load(&s->stored))
		return 0;
	seq = atomic_fetch_add(&w->b->store_seq, 1);
	put_delivery(w, s, seq, D_QUEUED, 0, qos, subids, nsubids, m);
	return seq;
}

void persist_delivery(struct moat_session *s, struct delivery *d)
{
	if (!durable(s) || d->qos == 0)
		return;
	if (!d->seq)
		d->seq = atomic_fetch_add(&s->home->b->store_seq, 1);
	put_delivery(s->home, s, d->seq, d->state, d->packet_id, d->qos, d->subids, d->nsubids,
		     d->msg);
}

void persist_delivery_gone(struct moat_session *s, uint64_t seq)
{
	uint8_t key[DKEY_LEN];

	if (!seq || !s->home->b->store || shutting_down(s))
		return;
	dkey(s, seq, key);
	note_write(s->home);
	moat_store_del(s->home->b->store, MOAT_STORE_MESSAGES, key, sizeof(key), NULL, NULL);
}

void persist_qos2(struct moat_session *s, uint16_t id, bool add)
{
	uint8_t key[QKEY_LEN];

	if (!durable(s) || (!add && shutting_down(s)))
		return;
	qkey(s, id, key);
	note_write(s->home);
	if (add)
		moat_store_put(s->home->b->store, MOAT_STORE_MESSAGES, key, sizeof(key), "Q", 1, NULL,
			       NULL);
	else
		moat_store_del(s->home->b->store, MOAT_STORE_MESSAGES, key, sizeof(key), NULL, NULL);
}

/* ---- acknowledgements that wait for the store ---- */

struct pending_ack {
	struct moat_conn *c;
	uint8_t type;       /* PUBACK, PUBREC, PUBREL, PUBCOMP */
	uint16_t id;
	uint8_t reason;
};

/* On the store's thread: hand the acknowledgement back to its connection's worker. */
static void ack_committed(void *ctx, int rc)
{
	struct pending_ack *a = ctx;

	if (rc < 0)
		a->reason = 0x80; /* not durable: do not pretend (5.0 says so, 3.x is closed) */
	worker_push_now(a->c->w, (struct item){.kind = IT_STORED, .job = a});
}

void persist_ack(struct moat_conn *c, uint8_t type, uint16_t id, uint8_t reason,
		 uint64_t writes_before)
{
	struct moat_broker *b = c->w->b;
	struct pending_ack *a;

	/*
	 * With sync always an acknowledgement waits for its writes. With batch
	 * and off it does not, unless the store has fallen behind (BACKLOG_MAX
	 * writes queued): then it waits too, so the publishers slow down to the
	 * disk instead of a crash losing an unbounded backlog of acknowledged
	 * messages.
	 */
	if (!b->store ||
	    (b->conf->persistence_sync != MOAT_STORE_SYNC_ALWAYS &&
	     moat_store_backlog(b->store) < BACKLOG_MAX && !c->store_wait) ||
	    (c->w->store_writes == writes_before && !c->store_wait) ||
	    !(a = malloc(sizeof(*a)))) {
		conn_send_ack(c, type, id, reason);
		return;
	}
	*a = (struct pending_ack){ c, type, id, reason };
	if (moat_store_barrier(b->store, ack_committed, a) < 0) {
		free(a);
		conn_send_ack(c, type, id, reason);
		return;
	}
	c->store_wait++;
}

void persist_ack_done(struct moat_worker *w, void *job)
{
	struct pending_ack *a = job;
	struct moat_conn *c = a->c;

	(void)w;
	c->store_wait--;
	if (c->state == C_CLOSING) {
		if (!c->store_wait && !c->auth_wait && c->zombie)
			conn_free_zombie(c);
	} else if (a->reason == 0x80 && (c->version != MOAT_MQTT_V5 || a->type == MOAT_MQTT_PUBREL ||
					 a->type == MOAT_MQTT_PUBCOMP)) {
		/* no way to say "not kept" there: the client retries after reconnecting */
		conn_close(c, "the store could not keep a message");
	} else {
		conn_send_ack(c, a->type, a->id, a->reason);
	}
	free(a);
}

/* ---- start-up ---- */

struct loader {
	struct moat_broker *b;
	struct moat_map by_skey; /* skey -> session */
	uint64_t max_seq;
	size_t sessions, deliveries, retained, wills, devices, expired, orphans, bad;
	int64_t now;
};

static int load_retained(void *ctx, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct loader *l = ctx;
	struct moat_rec_msg r;
	struct moat_msg *m;

	if (moat_rec_msg_decode(v, vn, &r) < 0) {
		l->bad++;
		return 0;
	}
	if (r.has_expiry && r.expires_wall_ms <= moat_wall_ms()) {
		l->expired++;
		moat_store_del(l->b->store, MOAT_STORE_RETAINED, k, kn, NULL, NULL);
		return 0;
	}
	m = moat_msg_new(&l->b->msg_mem, r.topic, r.topic_len, r.props, r.props_len, r.payload,
			 r.payload_len, r.qos, true, r.has_expiry ? to_mono(r.expires_wall_ms) : 0, 0);
	if (!m)
		return MOAT_ENOMEM;
	if (moat_retain_set(l->b->retain, m) == 0)
		l->retained++;
	moat_msg_unref(m);
	return 0;
}

static int load_session(void *ctx, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct loader *l = ctx;
	struct moat_rec_session r;
	struct moat_rec_sub sub;
	struct moat_session *s;
	struct moat_worker *home;
	int64_t left_ms;
	size_t pos = 0;
	bool existed;

	if (kn != SKEY_LEN || moat_rec_session_decode(v, vn, &r) < 0 || r.expiry == 0) {
		l->bad++;
		return 0;
	}
	/* offline since disconnected_wall_ms (or since the crash, if it was online) */
	left_ms = r.expiry == SESSION_NEVER_EXPIRES ? INT64_MAX :
		  (int64_t)r.expiry * 1000 -
			  (r.disconnected_wall_ms ? moat_wall_ms() - r.disconnected_wall_ms : 0);
	if (left_ms <= 0) {
		l->expired++;
		moat_store_del(l->b->store, MOAT_STORE_SESSIONS, k, kn, NULL, NULL);
		moat_store_del_prefix(l->b->store, MOAT_STORE_MESSAGES, k, kn, NULL, NULL);
		return 0;
	}
	home = worker_home(l->b, r.client_id, r.client_id_len);
	if (moat_map_get(&home->sessions, r.client_id, r.client_id_len) ||
	    !(s = session_new(home, r.client_id, r.client_id_len)))
		return moat_map_get(&home->sessions, r.client_id, r.client_id_len) ? 0 : MOAT_ENOMEM;
	s->version = r.version;
	s->expiry = r.expiry;
	if (r.expiry != SESSION_NEVER_EXPIRES)
		s->expires_at = l->now + left_ms;
	atomic_store(&s->stored, true);
	while (moat_rec_sub_next(&r, &pos, &sub))
		if (session_subscribe(s, sub.filter, sub.filter_len, sub.options, sub.subid,
				      &existed) < 0)
			return MOAT_ENOMEM;
	if (moat_map_put(&l->by_skey, s->skey, SKEY_LEN, s) < 0)
		return MOAT_ENOMEM;
	l->sessions++;
	return 0;
}

/* A delayed will: due later, or now (moatd was down when it fell due: it goes out at once). */
static int load_will(struct loader *l, struct moat_session *s, const uint8_t *v, size_t vn)
{
	struct moat_rec_will r;
	struct moat_msg *m;

	if (moat_rec_will_decode(v, vn, &r) < 0) {
		l->bad++;
		return 0;
	}
	m = moat_msg_new(&l->b->msg_mem, r.msg.topic, r.msg.topic_len, r.msg.props,
			 r.msg.props_len, r.msg.payload, r.msg.payload_len, r.msg.qos, r.msg.retain,
			 r.msg.has_expiry ? to_mono(r.msg.expires_wall_ms) : 0, 0);
	if (!m)
		return MOAT_ENOMEM;
	moat_msg_unref(s->will);
	s->will = m;
	s->will_at = to_mono(r.due_wall_ms);
	l->wills++;
	return 0;
}

static int load_message(void *ctx, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct loader *l = ctx;
	struct moat_session *s = kn > SKEY_LEN ? moat_map_get(&l->by_skey, k, SKEY_LEN) : NULL;
	struct moat_rec_delivery d;
	uint32_t ids[64];
	struct moat_msg *m;
	uint64_t seq = 0;

	if (!s) { /* its session ended or expired: the row outlived it */
		l->orphans++;
		moat_store_del(l->b->store, MOAT_STORE_MESSAGES, k, kn, NULL, NULL);
		return 0;
	}
	if (kn == QKEY_LEN && k[SKEY_LEN] == 'Q')
		return session_qos2_add(s, (uint16_t)(k[SKEY_LEN + 1] << 8 | k[SKEY_LEN + 2])) < 0
			       ? MOAT_ENOMEM
			       : 0;
	if (kn == WKEY_LEN && k[SKEY_LEN] == 'W')
		return load_will(l, s, v, vn);
	if (kn != DKEY_LEN || moat_rec_delivery_decode(v, vn, &d) < 0 || d.qos == 0 ||
	    d.nsubids > 64) {
		l->bad++;
		return 0;
	}
	for (int i = 0; i < 8; i++)
		seq = seq << 8 | k[SKEY_LEN + i];
	if (seq > l->max_seq)
		l->max_seq = seq;
	if (d.msg.has_expiry && d.msg.expires_wall_ms <= moat_wall_ms()) {
		l->expired++;
		moat_store_del(l->b->store, MOAT_STORE_MESSAGES, k, kn, NULL, NULL);
		return 0;
	}
	for (uint16_t i = 0; i < d.nsubids; i++)
		ids[i] = moat_rec_subid(&d, i);
	m = moat_msg_new(&l->b->msg_mem, d.msg.topic, d.msg.topic_len, d.msg.props,
			 d.msg.props_len, d.msg.payload, d.msg.payload_len, d.msg.qos, d.msg.retain,
			 d.msg.has_expiry ? to_mono(d.msg.expires_wall_ms) : 0, 0);
	if (!m)
		return MOAT_ENOMEM;
	if (session_restore_delivery(s, m, d.qos, d.msg.retain, ids, d.nsubids,
				     d.state == MOAT_REC_RELEASED ? D_WAIT_COMP :
				     d.state == MOAT_REC_SENT     ? D_WAIT_ACK :
								    D_QUEUED,
				     d.packet_id, seq) < 0) {
		moat_msg_unref(m);
		return MOAT_ENOMEM;
	}
	moat_msg_unref(m);
	l->deliveries++;
	return 0;
}

static int load_state(void *ctx, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct loader *l = ctx;
	char err[256];

	if (kn == strlen(STATE_BANS) && memcmp(k, STATE_BANS, kn) == 0) {
		if (moat_bans_parse(l->b->bans, (const char *)v, vn, "store", moat_now_ms(),
				    moat_wall_s(), err, sizeof(err)) < 0) {
			moat_log(MOAT_LOG_LVL_ERROR, "store_bans_refused reason=\"%s\"", err);
			l->bad++;
		}
	} else if (kn == strlen(STATE_AUDIT) && memcmp(k, STATE_AUDIT, kn) == 0) {
		check_audit_head(l->b, v, vn);
	} else if (inventory_load(l->b, k, kn, v, vn) < 0) {
		l->bad++;
	}
	return 0;
}

int persist_load(struct moat_broker *b, char *err, size_t errlen)
{
	struct loader l = { .b = b, .now = moat_now_ms() };
	struct moat_store_load_stats st[4];
	int64_t t0 = moat_now_ms();
	int rc;

	if (!b->store)
		return 0;
	moat_map_init(&l.by_skey, NULL);
	if ((rc = moat_store_load(b->store, MOAT_STORE_RETAINED, load_retained, &l, &st[0], err,
				  errlen)) < 0 ||
	    (rc = moat_store_load(b->store, MOAT_STORE_SESSIONS, load_session, &l, &st[1], err,
				  errlen)) < 0 ||
	    (rc = moat_store_load(b->store, MOAT_STORE_MESSAGES, load_message, &l, &st[2], err,
				  errlen)) < 0 ||
	    (rc = moat_store_load(b->store, MOAT_STORE_STATE, load_state, &l, &st[3], err,
				  errlen)) < 0) {
		if (rc == MOAT_ENOMEM)
			moat_set_err(err, errlen, "store: out of memory while loading");
		moat_map_free(&l.by_skey);
		return rc;
	}
	moat_map_free(&l.by_skey);
	l.devices = inventory_loaded(b);
	atomic_store(&b->store_seq, l.max_seq + 1);
	uint64_t damaged = st[0].damaged + st[1].damaged + st[2].damaged + st[3].damaged + l.bad;
	moat_log(MOAT_LOG_LVL_NOTICE,
		 "store_loaded retained=%zu sessions=%zu deliveries=%zu wills=%zu devices=%zu "
		 "expired=%zu orphans=%zu damaged=%llu ms=%lld",
		 l.retained, l.sessions, l.deliveries, l.wills, l.devices, l.expired, l.orphans,
		 (unsigned long long)damaged, (long long)(moat_now_ms() - t0));
	if (damaged) {
		char why[128];
		snprintf(why, sizeof(why), "store: %llu damaged rows skipped at start",
			 (unsigned long long)damaged);
		guard_note(MOAT_SEC_INTEGRITY, why);
	}
	return 0;
}
