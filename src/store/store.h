/*
 * store.h - the durable store: sealed rows in SQLite, written by one thread
 * with group commit.
 *
 * The store is a handful of tables of (key, value) rows in DIR/moat.db,
 * SQLite in WAL mode. Every value is sealed (store/seal.h: AES-256-GCM)
 * with its table and key as associated data, so a row cannot be read
 * without the key, nor moved to another row or table unnoticed. Keys that
 * would name something (a topic, a client id) are the caller's to make with
 * moat_store_name_key: an HMAC of the name, never the name.
 *
 * Writes are queued by any thread and carried out by the store's own
 * thread: it takes everything queued, writes it in one transaction and
 * commits once (group commit: many rows per fsync), then calls each
 * write's done callback. What "committed" promises depends on the sync
 * mode:
 *   - MOAT_STORE_SYNC_ALWAYS: the transaction is on disk (fsync) before the
 *     callbacks run: a PUBACK sent from one survives a power cut;
 *   - MOAT_STORE_SYNC_BATCH: commits are gathered for up to batch_ms and then
 *     made durable together: a crash loses at most that window;
 *   - MOAT_STORE_SYNC_OFF: the operating system decides when; a crash of
 *     moatd loses nothing that was committed, a crash of the machine may.
 *
 * A wrong key is found at open (a sealed check value does not open) and the
 * store refuses to start; a row that does not open later (flipped bytes, a
 * truncated file) is counted and skipped by moat_store_load, never trusted
 * and never a crash.
 */
#ifndef MOAT_STORE_STORE_H
#define MOAT_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/seal.h"

enum moat_store_sync { MOAT_STORE_SYNC_ALWAYS, MOAT_STORE_SYNC_BATCH, MOAT_STORE_SYNC_OFF };

enum moat_store_table {
	MOAT_STORE_RETAINED, /* topic key -> retained message */
	MOAT_STORE_SESSIONS, /* client id key -> session (expiry, subscriptions...) */
	MOAT_STORE_MESSAGES, /* client id key | sequence -> queued or in-flight message */
	MOAT_STORE_STATE,    /* name -> runtime state (bans, the audit chain head...) */
	MOAT_STORE_TABLES
};

struct moat_store_conf {
	const char *dir;                 /* created (mode 0700) if missing */
	uint8_t key[MOAT_SEAL_KEY_LEN];  /* the master key */
	enum moat_store_sync sync;
	uint32_t batch_ms;               /* MOAT_STORE_SYNC_BATCH: the most a commit waits */
	uint32_t queue_max;              /* writes waiting before put/del refuse; 0: 1 << 20 */
	uint64_t rotate_at;              /* values sealed before the data key rotates; 0: 2^31 */
};

struct moat_store;

/*
 * Opens (creating if new) the store in c->dir and starts its thread.
 * Returns 0 and *out, or MOAT_ECONFIG (wrong key, not a moat store),
 * MOAT_EIO (cannot create or read, or the database is damaged) with err.
 */
int moat_store_open(const struct moat_store_conf *c, struct moat_store **out, char *err,
		    size_t errlen);

/* True if another process (a running moatd) has the store in dir open. */
bool moat_store_in_use(const char *dir);

/* Commits what is queued, stops the thread, closes. NULL is a no-op. */
void moat_store_close(struct moat_store *s);

/* The key of name within domain (e.g. "topic", "client"): what rows are keyed by. */
int moat_store_name_key(const struct moat_store *s, const char *domain, const void *name, size_t n,
			uint8_t out[MOAT_SEAL_NAME_KEY_LEN]);

/*
 * Called on the store's thread once a write is committed (ok) or could not
 * be (MOAT_EIO: the disk said no; the row is not stored). Must not block.
 */
typedef void (*moat_store_done)(void *ctx, int rc);

/*
 * Queues a write of value under key in table t (replacing any), or its
 * deletion (value NULL). Copies key and value. done (may be NULL) is
 * called after the commit. Returns 0, or MOAT_ENOMEM when the queue is full
 * or memory is short (nothing is queued then, done is not called).
 */
int moat_store_put(struct moat_store *s, enum moat_store_table t, const void *key, size_t klen,
		   const void *value, size_t vlen, moat_store_done done, void *ctx);
int moat_store_del(struct moat_store *s, enum moat_store_table t, const void *key, size_t klen,
		   moat_store_done done, void *ctx);

/*
 * Queues the deletion of every row of t whose key starts with prefix (a
 * session's messages, when it ends). As moat_store_del otherwise.
 */
int moat_store_del_prefix(struct moat_store *s, enum moat_store_table t, const void *prefix,
			  size_t plen, moat_store_done done, void *ctx);

/*
 * Queues no write, only done: it is called once everything queued before it
 * is committed (an acknowledgement that must wait for earlier writes).
 */
int moat_store_barrier(struct moat_store *s, moat_store_done done, void *ctx);

/*
 * A group: the writes this thread queues between begin and end reach the
 * store thread together, so they are committed in one transaction, all or
 * none (a PUBLISH's copies and its QoS 2 packet id). Groups do not nest.
 */
void moat_store_group_begin(struct moat_store *s);
void moat_store_group_end(struct moat_store *s);

/*
 * Writes queued and not yet taken by the store's thread (a hint: read
 * without a lock). moatd makes acknowledgements wait when it grows, so that
 * batch and off modes cannot fall far behind the messages they acknowledge.
 */
unsigned moat_store_backlog(const struct moat_store *s);

/* Waits until everything queued before the call is committed. */
void moat_store_flush(struct moat_store *s);

/*
 * Rotates the keys online: a new random data key, wrapped under new_key (the
 * operator's new key, MOAT_SEAL_KEY_LEN bytes, copied) or, if new_key is
 * NULL, under the current one. On the store's thread, in order with the
 * writes queued before it: first one transaction writes the new key set,
 * then step(ctx, rc) runs (from then on the store opens only with the new
 * key: the caller moves its key file there); then every row is re-sealed
 * under the new data key, a few hundred per transaction between the normal
 * writes, and done(ctx, rc) runs at the end. rc: 0; MOAT_EAGAIN (another
 * rekey is waiting for its walk); MOAT_EIO (the key set could not be written:
 * nothing changed); MOAT_ECLOSED (the store closed mid-walk: the walk goes
 * on at the next open, which needs the new key). Both callbacks run on the
 * store's thread and must not block. Returns 0 or MOAT_ENOMEM / MOAT_ECLOSED
 * (nothing queued, no callback).
 */
int moat_store_rekey(struct moat_store *s, const uint8_t *new_key, moat_store_done step,
		     moat_store_done done, void *ctx);

/*
 * Writes a consistent copy of the store to path while it runs (SQLite's
 * backup API on a second, read-only connection: writers are not held up):
 * what was queued before the call is in it. The copy is written beside path
 * and renamed over it, mode 0600; it opens with the key the store opens with
 * now (keep that key with the copy). Refuses an existing path unless
 * replace. Returns 0, MOAT_EEXIST, or MOAT_EIO with err.
 */
int moat_store_backup(struct moat_store *s, const char *path, bool replace, char *err,
		      size_t errlen);

/*
 * Puts the copy at file in place of the store in dir, for moat_store_open to
 * open: file must be a moat store that key opens and that passes SQLite's
 * check. A store already in dir is moved aside (moat.db.before-restore-TIME,
 * with its -wal and -shm), not deleted. Returns 0, or MOAT_ECONFIG (file is
 * not a store, or not under key) / MOAT_EIO with err; on failure dir is as it
 * was. *aside receives the name the old store was moved to ("" if none).
 */
int moat_store_restore(const char *dir, const char *file, const uint8_t key[MOAT_SEAL_KEY_LEN],
		       char *aside, size_t asidelen, char *err, size_t errlen);

struct moat_store_load_stats {
	uint64_t rows;     /* handed to the callback */
	uint64_t damaged;  /* did not open (wrong table/key, flipped bytes): skipped */
};

/*
 * Calls cb(ctx, key, klen, value, vlen) for each row of t whose value opens
 * (the buffers are valid for the call). A non-zero return from cb stops the
 * walk and is returned. Meant for start-up, before writes are queued.
 * Returns 0, cb's code, or MOAT_EIO with err (the database could not be
 * read to the end; the rows before were delivered).
 */
int moat_store_load(struct moat_store *s, enum moat_store_table t,
		    int (*cb)(void *ctx, const uint8_t *key, size_t klen, const uint8_t *value,
			      size_t vlen),
		    void *ctx, struct moat_store_load_stats *st, char *err, size_t errlen);

struct moat_store_stats {
	uint64_t commits;    /* transactions */
	uint64_t writes;     /* rows written or deleted */
	uint64_t failed;     /* writes whose commit failed */
	uint64_t commit_ns;  /* time spent in those transactions (BEGIN to COMMIT), nanoseconds */
	uint64_t generation; /* of the data key: 1 for a new store, + 1 per rotation */
	uint64_t sealed;     /* values sealed under the current data key */
	bool rotating;       /* a rotation is re-sealing rows */
};

void moat_store_stats(struct moat_store *s, struct moat_store_stats *out);

/* The table's name in the database and in messages. */
const char *moat_store_table_name(enum moat_store_table t);

#endif
