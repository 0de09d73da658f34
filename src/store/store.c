/*
 * store.c - the durable store (see store.h).
 *
 * Layout of DIR/moat.db (SQLite, WAL):
 *   moat(k TEXT PRIMARY KEY, v BLOB)   "format" = "moat-store-2" in clear;
 *                                       "keys" = the key set, sealed with the
 *                                       operator's key (a wrong key does not
 *                                       open it); "seals" = values sealed
 *                                       under the current data key (u64 LE)
 *   retained, sessions, messages, state (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID
 * A value is moat_seal(table name | 0x00 | key, plaintext) under the data key.
 *
 * Keys (envelope encryption, as disk encryption does it): the operator's key
 * (the key file) only wraps the key set; the key set holds a random data key
 * that seals values, a random name key that makes row keys, and, while a
 * rotation runs, the previous data key. So:
 *   - rotating the operator's key (moat_store_rekey with a new key) rewraps
 *     the set and also moves every value to a fresh data key, row by row, in
 *     small transactions between the normal writes: the store stays online;
 *   - the name key never changes, so a row keeps its key, and the workers'
 *     cached row keys stay right through a rotation;
 *   - GCM with random nonces allows about 2^32 values per key (seal.h); the
 *     store counts what it seals and rotates the data key by itself at
 *     rotate_at, long before;
 *   - a rotation interrupted by a crash resumes at the next open: the set
 *     still holds the previous data key, and each value is opened with the
 *     current key or, failing that, the previous one.
 *
 * One connection, opened serialized; the store thread is the only writer.
 * SQLite is the well-kept library for a crash-safe file of rows; what is
 * ours is the sealing, the queue and the group commit.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/file.h"
#include "core/log.h"

#define FORMAT "moat-store-2"
#define KEYS_AAD "moat store keys v2"
#define ROTATE_AT_DEFAULT (1ull << 31) /* half of GCM's 2^32 random-nonce budget */
#define WALK_ROWS 256                  /* rows re-sealed per transaction while rotating */
#define WALK_BYTES (8u << 20)          /* ... and at most this many bytes of them */
#define QUEUE_MAX_DEFAULT (1u << 20)
#define KEY_MAX 512 /* longest row key: a name key and a sequence, with room */

/* This thread's open group (moat_store_group_begin): ops wait here, spliced in at the end. */
static _Thread_local struct {
	struct moat_store *s;
	struct op *head, *tail;
	uint32_t n;
} group;

static const char *const table_names[MOAT_STORE_TABLES] = {
	[MOAT_STORE_RETAINED] = "retained",
	[MOAT_STORE_SESSIONS] = "sessions",
	[MOAT_STORE_MESSAGES] = "messages",
	[MOAT_STORE_STATE] = "state",
};

enum { OP_PUT, OP_DEL, OP_DEL_PREFIX, OP_BARRIER, OP_REKEY };

struct op {
	struct op *next;
	uint64_t seq;
	moat_store_done done;
	moat_store_done step; /* OP_REKEY: called once the new key set is committed */
	void *ctx;
	uint8_t table;
	uint8_t kind; /* OP_* */
	size_t klen, vlen;
	uint8_t data[]; /* key | value */
};

/* The key set, as sealed in "keys": generation, data key, name key, previous data key. */
struct keyset {
	uint64_t gen;
	uint8_t data[MOAT_SEAL_KEY_LEN];
	uint8_t names[MOAT_SEAL_KEY_LEN];
	uint8_t prev[MOAT_SEAL_KEY_LEN];
	bool has_prev;
};

#define KEYSET_LEN(k) (8 + 2 * MOAT_SEAL_KEY_LEN + ((k)->has_prev ? MOAT_SEAL_KEY_LEN : 0))

struct moat_store {
	sqlite3 *db;
	int lock_fd;             /* DIR/moat.lock, held while open: one process per store */
	char path[4096];
	sqlite3_stmt *put[MOAT_STORE_TABLES], *del[MOAT_STORE_TABLES], *range[MOAT_STORE_TABLES];
	sqlite3_stmt *walk[MOAT_STORE_TABLES];
	sqlite3_stmt *meta_set;
	/* keys: replaced only by the store thread, under db_lock */
	struct moat_seal *kek;   /* the operator's key: opens "keys" */
	struct moat_seal *names; /* row keys; the same for the store's life */
	struct moat_seal *seal;  /* the current data key: seals every value written */
	struct moat_seal *prev;  /* while rotating: the data key older values may be under */
	struct keyset keys;
	uint64_t sealed, sealed_saved, rotate_at;
	/* rotation: the store thread's */
	bool rotating;
	int walk_t;              /* the table being walked */
	uint8_t walk_key[KEY_MAX];
	size_t walk_klen;        /* the last key done in it; 0: from the start */
	uint64_t resealed, walk_damaged;
	struct op *rekey;        /* the request that waits for the walk's end, or NULL */
	enum moat_store_sync sync;
	uint32_t batch_ms, queue_max;

	pthread_mutex_t lock; /* the queue, the counters, and the connection */
	pthread_cond_t wake, committed;
	struct op *head, *tail;
	uint32_t queued;
	atomic_uint backlog;     /* queued, readable without the lock (moat_store_backlog) */
	uint64_t next_seq, done_seq;
	bool stop;
	pthread_t thread;
	struct moat_store_stats stats;
	pthread_mutex_t db_lock; /* the connection between the thread and moat_store_load */
};

const char *moat_store_table_name(enum moat_store_table t)
{
	return (unsigned)t < MOAT_STORE_TABLES ? table_names[t] : "?";
}

/* ---- sealing a row ---- */

/* The associated data of a row: its table's name, a 0 byte, its key. */
static size_t row_aad(uint8_t *out, enum moat_store_table t, const uint8_t *key, size_t klen)
{
	size_t n = strlen(table_names[t]);

	memcpy(out, table_names[t], n);
	out[n] = 0;
	memcpy(out + n + 1, key, klen);
	return n + 1 + klen;
}

/* ---- opening ---- */

static int db_err(struct moat_store *s, const char *what, char *err, size_t errlen)
{
	moat_set_err(err, errlen, "store: %s: %s", what, sqlite3_errmsg(s->db));
	return MOAT_EIO;
}

static int exec(struct moat_store *s, const char *sql, char *err, size_t errlen)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_err(s, sql, err, errlen);
	return 0;
}

/* One text value of a one-row query ("PRAGMA ..."), into out. */
static int query_text(struct moat_store *s, const char *sql, char *out, size_t cap, char *err,
		      size_t errlen)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(s, sql, err, errlen);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	else
		out[0] = 0;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_err(s, sql, err, errlen);
	return 0;
}

static int make_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		moat_set_err(err, errlen, "store: %s: %s", dir, strerror(errno));
		return MOAT_EIO;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		moat_set_err(err, errlen, "store: %s: not a directory", dir);
		return MOAT_EIO;
	}
	return 0;
}

/* The data may name devices and topics even sealed (sizes, times): owner only. */
static void restrict_files(const char *path)
{
	char other[4200];

	(void)chmod(path, 0600);
	snprintf(other, sizeof(other), "%s-wal", path);
	(void)chmod(other, 0600);
	snprintf(other, sizeof(other), "%s-shm", path);
	(void)chmod(other, 0600);
}

/*
 * Takes DIR/moat.lock (flock, released when the process ends however it
 * ends): two processes writing one store would each seal with keys the other
 * does not know about. Returns the fd, or MOAT_EEXIST / MOAT_EIO with err.
 */
static int lock_dir(const char *dir, char *err, size_t errlen)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/moat.lock", dir);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		moat_set_err(err, errlen, "store: %s: %s", path, strerror(errno));
		return MOAT_EIO;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int busy = errno == EWOULDBLOCK;
		moat_set_err(err, errlen, "store: %s: %s", dir,
			     busy ? "in use by another process (is moatd running on it?)"
				  : strerror(errno));
		close(fd);
		return busy ? MOAT_EEXIST : MOAT_EIO;
	}
	return fd;
}

bool moat_store_in_use(const char *dir)
{
	char err[16];
	int fd = lock_dir(dir, err, sizeof(err));

	if (fd >= 0)
		close(fd);
	return fd == MOAT_EEXIST;
}

static int prepare(struct moat_store *s, char *err, size_t errlen)
{
	char sql[160];

	for (int t = 0; t < MOAT_STORE_TABLES; t++) {
		snprintf(sql, sizeof(sql),
			 "CREATE TABLE IF NOT EXISTS %s(k BLOB PRIMARY KEY, v BLOB NOT NULL) "
			 "WITHOUT ROWID",
			 table_names[t]);
		if (exec(s, sql, err, errlen) < 0)
			return MOAT_EIO;
		snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO %s(k, v) VALUES(?, ?)",
			 table_names[t]);
		if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->put[t], NULL) !=
		    SQLITE_OK)
			return db_err(s, sql, err, errlen);
		snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE k = ?", table_names[t]);
		if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->del[t], NULL) !=
		    SQLITE_OK)
			return db_err(s, sql, err, errlen);
		/* keys compare as blobs (memcmp): the prefix's rows lie in [p, next(p)) */
		snprintf(sql, sizeof(sql),
			 "DELETE FROM %s WHERE k >= ?1 AND k < ?2 AND substr(k, 1, ?3) = ?1",
			 table_names[t]);
		if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->range[t],
				       NULL) != SQLITE_OK)
			return db_err(s, sql, err, errlen);
		snprintf(sql, sizeof(sql), "SELECT k, v FROM %s WHERE k > ?1 ORDER BY k LIMIT %d",
			 table_names[t], WALK_ROWS);
		if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->walk[t],
				       NULL) != SQLITE_OK)
			return db_err(s, sql, err, errlen);
	}
	return 0;
}

/* A meta value of db, or *len = 0 if absent. */
static int meta_get(sqlite3 *db, const char *k, uint8_t *out, size_t cap, size_t *len)
{
	sqlite3_stmt *st;
	int rc;

	*len = 0;
	if (sqlite3_prepare_v2(db, "SELECT v FROM moat WHERE k = ?", -1, &st, NULL) != SQLITE_OK)
		return MOAT_EIO;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		size_t n = (size_t)sqlite3_column_bytes(st, 0);
		if (n <= cap) {
			memcpy(out, sqlite3_column_blob(st, 0), n);
			*len = n;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : MOAT_EIO;
}

/* Sets a meta value inside the open transaction (or on its own). */
static int meta_set(struct moat_store *s, const char *k, const void *v, size_t n)
{
	int rc;

	sqlite3_reset(s->meta_set);
	sqlite3_bind_text(s->meta_set, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s->meta_set, 2, v, (int)n, SQLITE_STATIC);
	rc = sqlite3_step(s->meta_set);
	sqlite3_reset(s->meta_set);
	sqlite3_clear_bindings(s->meta_set);
	return rc == SQLITE_DONE ? 0 : MOAT_EIO;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Seals k under kek and writes it as "keys" (inside the caller's transaction). */
static int keys_write(struct moat_store *s, const struct moat_seal *kek, const struct keyset *k)
{
	uint8_t plain[8 + 3 * MOAT_SEAL_KEY_LEN], sealed[sizeof(plain) + MOAT_SEAL_OVERHEAD];
	size_t n = KEYSET_LEN(k);
	int rc;

	put_u64(plain, k->gen);
	memcpy(plain + 8, k->data, MOAT_SEAL_KEY_LEN);
	memcpy(plain + 8 + MOAT_SEAL_KEY_LEN, k->names, MOAT_SEAL_KEY_LEN);
	if (k->has_prev)
		memcpy(plain + 8 + 2 * MOAT_SEAL_KEY_LEN, k->prev, MOAT_SEAL_KEY_LEN);
	rc = moat_seal(kek, KEYS_AAD, strlen(KEYS_AAD), plain, n, sealed);
	moat_seal_wipe(plain, sizeof(plain));
	if (rc < 0)
		return rc;
	return meta_set(s, "keys", sealed, moat_seal_size(n));
}

/*
 * Reads db's header: its format must be ours and its key set must open with
 * kek. what names the file in messages. Returns 0 (and *k), MOAT_ENOTFOUND
 * for a database with no header at all (a new store), MOAT_ECONFIG (not a
 * moat store, another key) or MOAT_EIO, with err.
 */
static int keys_read(sqlite3 *db, const struct moat_seal *kek, const char *what,
		     struct keyset *k, char *err, size_t errlen)
{
	uint8_t buf[256], plain[256];
	size_t n, pn;

	sqlite3_stmt *st;
	int tables = -1;

	/* a brand-new file has no tables at all; anything else must carry our header */
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL) ==
		    SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		tables = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (tables < 0) {
		moat_set_err(err, errlen, "store: %s: cannot read it: %s", what, sqlite3_errmsg(db));
		return MOAT_EIO;
	}
	if (tables == 0)
		return MOAT_ENOTFOUND;
	if (meta_get(db, "format", buf, sizeof(buf) - 1, &n) < 0 || n == 0) {
		moat_set_err(err, errlen, "store: %s is not a moat store (no header)", what);
		return MOAT_ECONFIG;
	}
	buf[n] = 0;
	if (n != strlen(FORMAT) || memcmp(buf, FORMAT, n) != 0) {
		moat_set_err(err, errlen, "store: %s: format '%.*s' is not %s", what, (int)n, buf,
			     FORMAT);
		return MOAT_ECONFIG;
	}
	if (meta_get(db, "keys", buf, sizeof(buf), &n) < 0) {
		moat_set_err(err, errlen, "store: %s: cannot read its header: %s", what,
			     sqlite3_errmsg(db));
		return MOAT_EIO;
	}
	if (n < MOAT_SEAL_OVERHEAD ||
	    moat_unseal(kek, KEYS_AAD, strlen(KEYS_AAD), buf, n, plain, &pn) < 0 ||
	    (pn != 8 + 2 * MOAT_SEAL_KEY_LEN && pn != 8 + 3 * MOAT_SEAL_KEY_LEN)) {
		moat_set_err(err, errlen,
			     "store: %s: the key does not open this store (wrong "
			     "persistence_key_file?); nothing was read or changed",
			     what);
		return MOAT_ECONFIG;
	}
	k->gen = get_u64(plain);
	memcpy(k->data, plain + 8, MOAT_SEAL_KEY_LEN);
	memcpy(k->names, plain + 8 + MOAT_SEAL_KEY_LEN, MOAT_SEAL_KEY_LEN);
	k->has_prev = pn == 8 + 3 * MOAT_SEAL_KEY_LEN;
	if (k->has_prev)
		memcpy(k->prev, plain + 8 + 2 * MOAT_SEAL_KEY_LEN, MOAT_SEAL_KEY_LEN);
	moat_seal_wipe(plain, sizeof(plain));
	return 0;
}

/* Makes the seals of s->keys. Returns 0 or MOAT_ENOMEM. */
static int make_seals(struct moat_store *s)
{
	s->names = moat_seal_new_split(s->keys.names, s->keys.names);
	s->seal = moat_seal_new_split(s->keys.data, s->keys.names);
	if (s->keys.has_prev)
		s->prev = moat_seal_new_split(s->keys.prev, s->keys.names);
	return s->names && s->seal && (!s->keys.has_prev || s->prev) ? 0 : MOAT_ENOMEM;
}

/*
 * A new store gets its format and a fresh key set; an existing one must have
 * both, and the set must open with the operator's key.
 */
static int check_header(struct moat_store *s, char *err, size_t errlen)
{
	uint8_t buf[8];
	size_t n;
	int rc;

	rc = keys_read(s->db, s->kek, s->path, &s->keys, err, errlen);
	if (rc == MOAT_ENOTFOUND) {
		s->keys = (struct keyset){ .gen = 1 };
		if (moat_seal_random(s->keys.data, sizeof(s->keys.data)) < 0 ||
		    moat_seal_random(s->keys.names, sizeof(s->keys.names)) < 0) {
			moat_set_err(err, errlen, "store: the random generator failed");
			return MOAT_EIO;
		}
		/* one transaction: a crash leaves a new file or a whole header */
		if (exec(s, "BEGIN IMMEDIATE", err, errlen) < 0 ||
		    exec(s, "CREATE TABLE moat(k TEXT PRIMARY KEY, v BLOB)", err, errlen) < 0 ||
		    sqlite3_prepare_v3(s->db, "INSERT OR REPLACE INTO moat(k, v) VALUES(?, ?)", -1,
				       SQLITE_PREPARE_PERSISTENT, &s->meta_set, NULL) != SQLITE_OK ||
		    meta_set(s, "format", FORMAT, strlen(FORMAT)) < 0 ||
		    keys_write(s, s->kek, &s->keys) < 0 || exec(s, "COMMIT", err, errlen) < 0) {
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return db_err(s, "writing the store's header", err, errlen);
		}
		return make_seals(s);
	}
	if (rc < 0)
		return rc;
	if (sqlite3_prepare_v3(s->db, "INSERT OR REPLACE INTO moat(k, v) VALUES(?, ?)", -1,
			       SQLITE_PREPARE_PERSISTENT, &s->meta_set, NULL) != SQLITE_OK)
		return db_err(s, "preparing the header", err, errlen);
	if (meta_get(s->db, "seals", buf, sizeof(buf), &n) == 0 && n == 8)
		s->sealed = s->sealed_saved = get_u64(buf);
	if (make_seals(s) < 0)
		return MOAT_ENOMEM;
	if (s->keys.has_prev) {
		s->rotating = true; /* a rotation was cut short: it goes on */
		moat_log(MOAT_LOG_LVL_NOTICE, "store_rotation_resumed generation=%llu",
			 (unsigned long long)s->keys.gen);
	}
	return 0;
}

static void *run(void *arg);

static void store_free(struct moat_store *s)
{
	for (int t = 0; t < MOAT_STORE_TABLES; t++) {
		sqlite3_finalize(s->put[t]);
		sqlite3_finalize(s->del[t]);
		sqlite3_finalize(s->range[t]);
		sqlite3_finalize(s->walk[t]);
	}
	sqlite3_finalize(s->meta_set);
	sqlite3_close(s->db);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	moat_seal_free(s->kek);
	moat_seal_free(s->names);
	moat_seal_free(s->seal);
	moat_seal_free(s->prev);
	moat_seal_wipe(&s->keys, sizeof(s->keys));
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->db_lock);
	pthread_cond_destroy(&s->wake);
	pthread_cond_destroy(&s->committed);
	free(s);
}

int moat_store_open(const struct moat_store_conf *c, struct moat_store **out, char *err,
		    size_t errlen)
{
	struct moat_store *s;
	char mode[32], check[256];
	int rc;

	*out = NULL;
	if ((rc = make_dir(c->dir, err, errlen)) < 0)
		return rc;
	if (!(s = calloc(1, sizeof(*s))))
		return MOAT_ENOMEM;
	if ((s->lock_fd = lock_dir(c->dir, err, errlen)) < 0) {
		rc = s->lock_fd;
		free(s);
		return rc;
	}
	if ((size_t)snprintf(s->path, sizeof(s->path), "%s/moat.db", c->dir) >= sizeof(s->path)) {
		moat_set_err(err, errlen, "store: %s: path too long", c->dir);
		close(s->lock_fd);
		free(s);
		return MOAT_ECONFIG;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->db_lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	pthread_cond_init(&s->committed, NULL);
	s->sync = c->sync;
	s->batch_ms = c->batch_ms;
	s->queue_max = c->queue_max ? c->queue_max : QUEUE_MAX_DEFAULT;
	s->rotate_at = c->rotate_at ? c->rotate_at : ROTATE_AT_DEFAULT;
	if (!(s->kek = moat_seal_new(c->key))) {
		rc = MOAT_ENOMEM;
		goto fail;
	}
	rc = MOAT_EIO;
	if (sqlite3_open_v2(s->path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		moat_set_err(err, errlen, "store: %s: %s", s->path,
			     s->db ? sqlite3_errmsg(s->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000); /* a backup may hold a read lock a moment */
	if ((rc = query_text(s, "PRAGMA journal_mode=WAL", mode, sizeof(mode), err, errlen)) < 0)
		goto fail;
	if (strcmp(mode, "wal") != 0) {
		moat_set_err(err, errlen, "store: %s: cannot use WAL mode (got '%s')", s->path, mode);
		rc = MOAT_EIO;
		goto fail;
	}
	restrict_files(s->path);
	if ((rc = exec(s, s->sync == MOAT_STORE_SYNC_OFF ? "PRAGMA synchronous=OFF"
							  : "PRAGMA synchronous=FULL",
		       err, errlen)) < 0)
		goto fail;
	/* A damaged file is found here, before anything is read or written. */
	if ((rc = query_text(s, "PRAGMA quick_check", check, sizeof(check), err, errlen)) < 0)
		goto fail;
	if (strcmp(check, "ok") != 0) {
		moat_set_err(err, errlen, "store: %s is damaged: %s", s->path, check);
		rc = MOAT_EIO;
		goto fail;
	}
	if ((rc = check_header(s, err, errlen)) < 0 || (rc = prepare(s, err, errlen)) < 0)
		goto fail;
	if (pthread_create(&s->thread, NULL, run, s) != 0) {
		moat_set_err(err, errlen, "store: cannot start its thread");
		rc = MOAT_ENOMEM;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	store_free(s);
	return rc;
}

int moat_store_name_key(const struct moat_store *s, const char *domain, const void *name, size_t n,
			uint8_t out[MOAT_SEAL_NAME_KEY_LEN])
{
	return moat_seal_name_key(s->names, domain, name, n, out);
}

/* ---- writing ---- */

static int enqueue(struct moat_store *s, enum moat_store_table t, const void *key, size_t klen,
		   const void *value, size_t vlen, uint8_t kind, moat_store_done done, void *ctx)
{
	struct op *o;

	if ((unsigned)t >= MOAT_STORE_TABLES || (klen == 0 && kind != OP_BARRIER) || klen > KEY_MAX ||
	    vlen > (size_t)INT32_MAX - MOAT_SEAL_OVERHEAD)
		return MOAT_EINVAL;
	if (!(o = malloc(sizeof(*o) + klen + vlen)))
		return MOAT_ENOMEM;
	*o = (struct op){ .done = done, .ctx = ctx, .table = (uint8_t)t, .kind = kind, .klen = klen,
			  .vlen = vlen };
	if (klen)
		memcpy(o->data, key, klen);
	if (vlen)
		memcpy(o->data + klen, value, vlen);
	if (group.s == s) { /* held back until the group ends */
		*(group.tail ? &group.tail->next : &group.head) = o;
		group.tail = o;
		group.n++;
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	if (s->queued >= s->queue_max || s->stop) {
		pthread_mutex_unlock(&s->lock);
		free(o);
		return MOAT_ENOMEM;
	}
	o->seq = ++s->next_seq;
	*(s->tail ? &s->tail->next : &s->head) = o;
	s->tail = o;
	s->queued++;
	atomic_store_explicit(&s->backlog, s->queued, memory_order_relaxed);
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int moat_store_put(struct moat_store *s, enum moat_store_table t, const void *key, size_t klen,
		   const void *value, size_t vlen, moat_store_done done, void *ctx)
{
	return enqueue(s, t, key, klen, value ? value : "", vlen, OP_PUT, done, ctx);
}

int moat_store_del(struct moat_store *s, enum moat_store_table t, const void *key, size_t klen,
		   moat_store_done done, void *ctx)
{
	return enqueue(s, t, key, klen, NULL, 0, OP_DEL, done, ctx);
}

int moat_store_barrier(struct moat_store *s, moat_store_done done, void *ctx)
{
	return enqueue(s, MOAT_STORE_STATE, NULL, 0, NULL, 0, OP_BARRIER, done, ctx);
}

int moat_store_del_prefix(struct moat_store *s, enum moat_store_table t, const void *prefix,
			  size_t plen, moat_store_done done, void *ctx)
{
	return enqueue(s, t, prefix, plen, NULL, 0, OP_DEL_PREFIX, done, ctx);
}

/*
 * The least key above every key that starts with p[0..n): p with its last
 * byte below 0xFF raised by one (and cut there); for all 0xFF, a key longer
 * than any (KEY_MAX + 1 bytes of 0xFF). Returns its length.
 */
static size_t prefix_end(const uint8_t *p, size_t n, uint8_t *out)
{
	size_t i = n;

	while (i > 0 && p[i - 1] == 0xFF)
		i--;
	if (i == 0) {
		memset(out, 0xFF, KEY_MAX + 1);
		return KEY_MAX + 1;
	}
	memcpy(out, p, i);
	out[i - 1]++;
	return i;
}

/* Writes one op inside the open transaction. */
static int write_op(struct moat_store *s, const struct op *o, uint8_t *aad, uint8_t **buf,
		    size_t *cap)
{
	uint8_t end[KEY_MAX + 1];

	if (o->kind == OP_BARRIER || o->kind == OP_REKEY)
		return 0;
	sqlite3_stmt *st = o->kind == OP_PUT ? s->put[o->table] :
			   o->kind == OP_DEL ? s->del[o->table] : s->range[o->table];
	size_t alen = row_aad(aad, o->table, o->data, o->klen);
	size_t need = moat_seal_size(o->vlen);
	int rc;

	sqlite3_reset(st);
	sqlite3_bind_blob(st, 1, o->data, (int)o->klen, SQLITE_STATIC);
	if (o->kind == OP_DEL_PREFIX) {
		sqlite3_bind_blob(st, 2, end, (int)prefix_end(o->data, o->klen, end), SQLITE_STATIC);
		sqlite3_bind_int(st, 3, (int)o->klen);
	}
	if (o->kind == OP_PUT) {
		if (need > *cap) {
			uint8_t *nb = realloc(*buf, need);
			if (!nb)
				return MOAT_ENOMEM;
			*buf = nb;
			*cap = need;
		}
		if (moat_seal(s->seal, aad, alen, o->data + o->klen, o->vlen, *buf) < 0)
			return MOAT_ENOMEM;
		s->sealed++;
		sqlite3_bind_blob(st, 2, *buf, (int)need, SQLITE_STATIC);
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : MOAT_EIO;
}

/* Inside the open transaction: the count of values sealed, if it moved. */
static int save_sealed(struct moat_store *s)
{
	uint8_t b[8];

	if (s->sealed == s->sealed_saved)
		return 0;
	put_u64(b, s->sealed);
	return meta_set(s, "seals", b, sizeof(b));
}

/* One transaction for the ops from list up to end; returns 0 or MOAT_EIO / MOAT_ENOMEM (rolled back). */
static int commit_list(struct moat_store *s, const struct op *list, const struct op *end)
{
	uint8_t aad[16 + KEY_MAX], *buf = NULL;
	size_t cap = 0;
	int rc = 0;

	pthread_mutex_lock(&s->db_lock);
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		rc = MOAT_EIO;
		goto out;
	}
	for (const struct op *o = list; o != end && rc == 0; o = o->next)
		rc = write_op(s, o, aad, &buf, &cap);
	if (rc == 0)
		rc = save_sealed(s);
	if (rc == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = MOAT_EIO;
	if (rc < 0) {
		moat_log(MOAT_LOG_LVL_ERROR, "store_commit_failed reason=\"%s\"",
			 sqlite3_errmsg(s->db));
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	} else {
		s->sealed_saved = s->sealed;
	}
out:
	pthread_mutex_unlock(&s->db_lock);
	free(buf);
	return rc;
}

/* Waits for work; in batch mode, gathers for up to batch_ms after the first write. */
static struct op *take(struct moat_store *s, bool *stop)
{
	struct op *list;

	pthread_mutex_lock(&s->lock);
	while (!s->head && !s->stop && !s->rotating) /* a rotation walks while idle */
		pthread_cond_wait(&s->wake, &s->lock);
	if (s->sync == MOAT_STORE_SYNC_BATCH && s->batch_ms && !s->stop && !s->rotating) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += s->batch_ms / 1000;
		until.tv_nsec += (long)(s->batch_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!s->stop && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0)
			;
	}
	list = s->head;
	s->head = s->tail = NULL;
	s->queued = 0;
	atomic_store_explicit(&s->backlog, 0, memory_order_relaxed);
	*stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return list;
}

/* ---- key rotation (the store thread) ---- */

static void rekey_answer(struct moat_store *s, struct op *o, int rc)
{
	if (o->done)
		o->done(o->ctx, rc);
	moat_seal_wipe(o->data, o->klen);
	free(o);
	(void)s;
}

/*
 * Starts a rotation asked by o (o->data: a new operator key, or nothing to
 * keep the current one; o NULL: the store's own, at rotate_at). A rotation
 * already walking is not started again: a new operator key rewraps its key
 * set and the request waits for the same walk. One transaction writes the new
 * set; only once it is committed do the seals in memory change and o->step
 * run (the broker moves the key file then).
 */
static void rekey_start(struct moat_store *s, struct op *o)
{
	struct keyset k = s->keys;
	struct moat_seal *kek = NULL, *seal = NULL, *prev = NULL;
	int rc = 0;

	if (o && s->rekey) {
		rekey_answer(s, o, MOAT_EAGAIN);
		return;
	}
	if (!s->rotating) {
		memcpy(k.prev, k.data, MOAT_SEAL_KEY_LEN);
		k.has_prev = true;
		k.gen++;
		if (moat_seal_random(k.data, MOAT_SEAL_KEY_LEN) < 0)
			rc = MOAT_EIO;
		else if (!(seal = moat_seal_new_split(k.data, k.names)))
			rc = MOAT_ENOMEM;
	}
	if (rc == 0 && o && o->klen == MOAT_SEAL_KEY_LEN && !(kek = moat_seal_new(o->data)))
		rc = MOAT_ENOMEM;
	pthread_mutex_lock(&s->db_lock);
	if (rc == 0 && sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		rc = MOAT_EIO;
	if (rc == 0) {
		uint8_t zero[8] = { 0 };
		if (keys_write(s, kek ? kek : s->kek, &k) < 0 ||
		    (seal && meta_set(s, "seals", zero, sizeof(zero)) < 0) ||
		    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			moat_log(MOAT_LOG_LVL_ERROR, "store_rotation_failed reason=\"%s\"",
				 sqlite3_errmsg(s->db));
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			rc = MOAT_EIO;
		}
	}
	if (rc == 0) {
		if (seal) { /* the current data key becomes the previous one */
			prev = s->prev;
			s->prev = s->seal;
			s->seal = seal;
			seal = NULL;
			s->sealed = s->sealed_saved = 0;
		}
		if (kek) {
			moat_seal_free(s->kek);
			s->kek = kek;
			kek = NULL;
		}
		s->keys = k;
	}
	pthread_mutex_unlock(&s->db_lock);
	moat_seal_wipe(&k, sizeof(k));
	moat_seal_free(seal);
	moat_seal_free(kek);
	moat_seal_free(prev);
	if (o && o->step)
		o->step(o->ctx, rc);
	if (rc < 0) {
		if (o)
			rekey_answer(s, o, rc);
		return;
	}
	if (!s->rotating) {
		s->rotating = true;
		s->walk_t = 0;
		s->walk_klen = 0;
		s->resealed = s->walk_damaged = 0;
	}
	s->rekey = o;
	moat_log(MOAT_LOG_LVL_NOTICE, "store_rotation_started generation=%llu reason=%s",
		 (unsigned long long)s->keys.gen,
		 !o ? "seal_limit" : o->klen ? "new_key" : "operator");
}

/* The walk is over: the key set forgets the previous data key. */
static int rekey_finish(struct moat_store *s)
{
	struct keyset k = s->keys;
	int rc = 0;

	k.has_prev = false;
	memset(k.prev, 0, sizeof(k.prev));
	pthread_mutex_lock(&s->db_lock);
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    keys_write(s, s->kek, &k) < 0 || sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		rc = MOAT_EIO;
	} else {
		moat_seal_free(s->prev);
		s->prev = NULL;
		s->keys = k;
	}
	pthread_mutex_unlock(&s->db_lock);
	moat_seal_wipe(&k, sizeof(k));
	if (rc < 0)
		return rc;
	s->rotating = false;
	moat_log(MOAT_LOG_LVL_NOTICE,
		 "store_rotation_done generation=%llu resealed=%llu damaged=%llu",
		 (unsigned long long)s->keys.gen, (unsigned long long)s->resealed,
		 (unsigned long long)s->walk_damaged);
	if (s->rekey) {
		rekey_answer(s, s->rekey, 0);
		s->rekey = NULL;
	}
	return 0;
}

/* A buffer for opened values, grown as needed (the store's thread, or a load). */
struct plainbuf {
	uint8_t *p;
	size_t cap;
};

/*
 * Opens the value v[0..vn) of row k in table t into pb: 1 if under the
 * current data key, 2 if under the previous one (a rotation is walking),
 * 0 if under neither (damaged), MOAT_ENOMEM. *pn gets its length.
 */
static int open_row(struct moat_store *s, enum moat_store_table t, const uint8_t *k, size_t kn,
		    const uint8_t *v, size_t vn, struct plainbuf *pb, size_t *pn)
{
	uint8_t aad[16 + KEY_MAX];
	size_t need = moat_unseal_size(vn) + 1, alen; /* + 1: an empty value has a buffer */

	if (!v || vn < MOAT_SEAL_OVERHEAD)
		return 0;
	if (need > pb->cap) {
		uint8_t *nb = realloc(pb->p, need);
		if (!nb)
			return MOAT_ENOMEM;
		pb->p = nb;
		pb->cap = need;
	}
	alen = row_aad(aad, t, k, kn);
	if (moat_unseal(s->seal, aad, alen, v, vn, pb->p, pn) == 0)
		return 1;
	if (s->prev && moat_unseal(s->prev, aad, alen, v, vn, pb->p, pn) == 0)
		return 2;
	return 0;
}

struct walk_row {
	struct walk_row *next;
	size_t klen, vlen;
	uint8_t data[]; /* key | value sealed under the current data key */
};

/*
 * Re-seals the next rows of the walk (at most WALK_ROWS, WALK_BYTES) in one
 * transaction. A value that opens with the current key is left as it is (it
 * was written since the rotation began); one that opens with neither key is
 * damaged and left for moat_store_load to count. Reads first, writes after:
 * SQLite leaves undefined what a statement sees of rows changed under it.
 */
static int walk_chunk(struct moat_store *s)
{
	sqlite3_stmt *q = s->walk[s->walk_t];
	struct walk_row *rows = NULL, **tail = &rows, *r;
	struct plainbuf pb = { NULL, 0 };
	uint8_t aad[16 + KEY_MAX];
	size_t bytes = 0, n = 0;
	int rc = 0, step = SQLITE_DONE;

	pthread_mutex_lock(&s->db_lock);
	sqlite3_reset(q);
	sqlite3_bind_blob(q, 1, s->walk_key, (int)s->walk_klen, SQLITE_STATIC);
	while (bytes < WALK_BYTES && (step = sqlite3_step(q)) == SQLITE_ROW) {
		const uint8_t *k = sqlite3_column_blob(q, 0), *v = sqlite3_column_blob(q, 1);
		size_t kn = (size_t)sqlite3_column_bytes(q, 0), vn = (size_t)sqlite3_column_bytes(q, 1);
		size_t alen, pn;
		int opened;

		n++;
		if (!k || kn == 0 || kn > KEY_MAX)
			continue;
		memcpy(s->walk_key, k, kn);
		s->walk_klen = kn;
		if ((opened = open_row(s, s->walk_t, k, kn, v, vn, &pb, &pn)) < 0) {
			rc = opened;
			break;
		}
		if (opened == 0)
			s->walk_damaged++;
		if (opened != 2) /* damaged, or already under the current key */
			continue;
		alen = row_aad(aad, s->walk_t, k, kn);
		if (!(r = malloc(sizeof(*r) + kn + moat_seal_size(pn)))) {
			rc = MOAT_ENOMEM;
			break;
		}
		r->next = NULL;
		r->klen = kn;
		r->vlen = moat_seal_size(pn);
		memcpy(r->data, k, kn);
		if (moat_seal(s->seal, aad, alen, pb.p, pn, r->data + kn) < 0) {
			free(r);
			rc = MOAT_ENOMEM;
			break;
		}
		s->sealed++;
		*tail = r;
		tail = &r->next;
		bytes += kn + r->vlen;
	}
	if (rc == 0 && step != SQLITE_ROW && step != SQLITE_DONE)
		rc = MOAT_EIO;
	sqlite3_reset(q);
	if (pb.p)
		moat_seal_wipe(pb.p, pb.cap);
	free(pb.p);
	if (rc == 0 && rows) {
		sqlite3_stmt *st = s->put[s->walk_t];
		if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			rc = MOAT_EIO;
		for (r = rows; r && rc == 0; r = r->next) {
			sqlite3_bind_blob(st, 1, r->data, (int)r->klen, SQLITE_STATIC);
			sqlite3_bind_blob(st, 2, r->data + r->klen, (int)r->vlen, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_DONE)
				rc = MOAT_EIO;
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			s->resealed += rc == 0;
		}
		if (rc == 0 && (save_sealed(s) < 0 ||
				sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK))
			rc = MOAT_EIO;
		if (rc < 0)
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		else
			s->sealed_saved = s->sealed;
	}
	pthread_mutex_unlock(&s->db_lock);
	while (rows) {
		r = rows->next;
		free(rows);
		rows = r;
	}
	if (rc < 0) { /* the same rows again later; the walk's cursor goes back */
		moat_log(MOAT_LOG_LVL_ERROR, "store_rotation_stalled reason=\"%s\"",
			 rc == MOAT_ENOMEM ? "out of memory" : sqlite3_errmsg(s->db));
		s->walk_klen = 0;
		return rc;
	}
	if (n < WALK_ROWS && bytes < WALK_BYTES) { /* the table is done */
		s->walk_klen = 0;
		if (++s->walk_t == MOAT_STORE_TABLES)
			return rekey_finish(s);
	}
	return 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Commits list in runs between rekey requests, and answers each op. */
static void process(struct moat_store *s, struct op *list)
{
	while (list) {
		struct op *end = list, *next;
		uint64_t last = 0, n = 0, ns = 0;
		int rc = 0;

		while (end && end->kind != OP_REKEY)
			end = end->next;
		if (list != end) {
			uint64_t t0 = mono_ns();
			rc = commit_list(s, list, end);
			ns = mono_ns() - t0;
		}
		for (struct op *o = list; o != end; o = next) {
			next = o->next;
			if (o->done)
				o->done(o->ctx, rc);
			last = o->seq;
			n += o->kind != OP_BARRIER;
			free(o);
		}
		if (end) {
			last = end->seq;
			next = end->next;
			end->next = NULL;
			rekey_start(s, end);
			end = next;
		}
		pthread_mutex_lock(&s->lock);
		s->stats.commits += list != end;
		s->stats.commit_ns += ns;
		s->stats.writes += n;
		if (rc < 0)
			s->stats.failed += n;
		if (last > s->done_seq)
			s->done_seq = last;
		pthread_cond_broadcast(&s->committed);
		pthread_mutex_unlock(&s->lock);
		list = end;
	}
}

static void *run(void *arg)
{
	struct moat_store *s = arg;

	for (;;) {
		bool stop;
		struct op *list = take(s, &stop);

		if (!list && stop)
			break;
		process(s, list);
		if (!s->rotating && s->sealed >= s->rotate_at)
			rekey_start(s, NULL);
		if (s->rotating && !stop && walk_chunk(s) < 0) {
			struct timespec pause = { .tv_sec = 1 };
			nanosleep(&pause, NULL);
		}
	}
	if (s->rekey) { /* stopped mid-walk: the next open goes on with it */
		rekey_answer(s, s->rekey, MOAT_ECLOSED);
		s->rekey = NULL;
	}
	return NULL;
}

int moat_store_rekey(struct moat_store *s, const uint8_t *new_key, moat_store_done step,
		     moat_store_done done, void *ctx)
{
	struct op *o;

	if (!(o = calloc(1, sizeof(*o) + MOAT_SEAL_KEY_LEN)))
		return MOAT_ENOMEM;
	o->kind = OP_REKEY;
	o->step = step;
	o->done = done;
	o->ctx = ctx;
	if (new_key) {
		memcpy(o->data, new_key, MOAT_SEAL_KEY_LEN);
		o->klen = MOAT_SEAL_KEY_LEN;
	}
	pthread_mutex_lock(&s->lock);
	if (s->stop) {
		pthread_mutex_unlock(&s->lock);
		moat_seal_wipe(o->data, MOAT_SEAL_KEY_LEN);
		free(o);
		return MOAT_ECLOSED;
	}
	o->seq = ++s->next_seq;
	*(s->tail ? &s->tail->next : &s->head) = o;
	s->tail = o;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void moat_store_group_begin(struct moat_store *s)
{
	group.s = s;
	group.head = group.tail = NULL;
	group.n = 0;
}

void moat_store_group_end(struct moat_store *s)
{
	struct op *o;

	if (group.s != s)
		return;
	group.s = NULL;
	if (!group.head)
		return;
	pthread_mutex_lock(&s->lock);
	for (o = group.head; o; o = o->next) /* a group is never refused: it is one unit */
		o->seq = ++s->next_seq;
	*(s->tail ? &s->tail->next : &s->head) = group.head;
	s->tail = group.tail;
	s->queued += group.n;
	atomic_store_explicit(&s->backlog, s->queued, memory_order_relaxed);
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	group.head = group.tail = NULL;
}

void moat_store_flush(struct moat_store *s)
{
	pthread_mutex_lock(&s->lock);
	uint64_t want = s->next_seq;
	while (s->done_seq < want)
		pthread_cond_wait(&s->committed, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

unsigned moat_store_backlog(const struct moat_store *s)
{
	return atomic_load_explicit(&s->backlog, memory_order_relaxed);
}

void moat_store_stats(struct moat_store *s, struct moat_store_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->stats;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_lock(&s->db_lock);
	out->generation = s->keys.gen;
	out->sealed = s->sealed;
	out->rotating = s->prev != NULL;
	pthread_mutex_unlock(&s->db_lock);
}

void moat_store_close(struct moat_store *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	/* fold the WAL into the main file: a closed store is one file */
	sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	store_free(s);
}

/* ---- reading ---- */

int moat_store_load(struct moat_store *s, enum moat_store_table t,
		    int (*cb)(void *ctx, const uint8_t *key, size_t klen, const uint8_t *value,
			      size_t vlen),
		    void *ctx, struct moat_store_load_stats *st, char *err, size_t errlen)
{
	struct moat_store_load_stats local = { 0 };
	struct plainbuf pb = { NULL, 0 };
	sqlite3_stmt *q;
	char sql[64];
	int rc = 0, step;

	if (!st)
		st = &local;
	*st = local;
	if ((unsigned)t >= MOAT_STORE_TABLES)
		return MOAT_EINVAL;
	snprintf(sql, sizeof(sql), "SELECT k, v FROM %s", table_names[t]);
	pthread_mutex_lock(&s->db_lock);
	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
		rc = db_err(s, sql, err, errlen);
		pthread_mutex_unlock(&s->db_lock);
		return rc;
	}
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		const uint8_t *k = sqlite3_column_blob(q, 0), *v = sqlite3_column_blob(q, 1);
		size_t kn = (size_t)sqlite3_column_bytes(q, 0), vn = (size_t)sqlite3_column_bytes(q, 1);
		size_t pn;
		int opened = k && kn > 0 && kn <= KEY_MAX ? open_row(s, t, k, kn, v, vn, &pb, &pn) : 0;

		if (opened < 0) {
			rc = opened;
			break;
		}
		if (opened == 0) {
			st->damaged++;
			continue;
		}
		st->rows++;
		if ((rc = cb(ctx, k, kn, pb.p, pn)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = db_err(s, "reading", err, errlen);
	sqlite3_finalize(q);
	pthread_mutex_unlock(&s->db_lock);
	if (pb.p)
		moat_seal_wipe(pb.p, pb.cap);
	free(pb.p);
	if (st->damaged)
		moat_log(MOAT_LOG_LVL_ERROR,
			 "store_damaged table=%s rows=%llu reason=\"values that do not open were "
			 "skipped\"",
			 table_names[t], (unsigned long long)st->damaged);
	return rc;
}

/* ---- backup and restore ---- */

int moat_store_backup(struct moat_store *s, const char *path, bool replace, char *err,
		      size_t errlen)
{
	sqlite3 *src = NULL, *dst = NULL;
	sqlite3_backup *b;
	char *tmp = NULL;
	struct stat st;
	int rc = MOAT_EIO;

	if (!replace && lstat(path, &st) == 0) {
		moat_set_err(err, errlen, "%s exists (a backup never replaces a file unless asked)",
			     path);
		return MOAT_EEXIST;
	}
	if (asprintf(&tmp, "%s.partial", path) < 0)
		return MOAT_ENOMEM;
	unlink(tmp);
	moat_store_flush(s); /* what was queued before the call is in the copy */
	if (sqlite3_open_v2(s->path, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		moat_set_err(err, errlen, "store: %s: %s", s->path,
			     src ? sqlite3_errmsg(src) : "cannot open");
		goto out;
	}
	sqlite3_busy_timeout(src, 5000);
	/* O_EXCL-like: SQLite creates it; the mode is set before any row is in it */
	if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		moat_set_err(err, errlen, "%s: %s", tmp, dst ? sqlite3_errmsg(dst) : "cannot create");
		goto out;
	}
	(void)chmod(tmp, 0600);
	/* one step over every page: a single read transaction, so one consistent snapshot */
	if (!(b = sqlite3_backup_init(dst, "main", src, "main"))) {
		moat_set_err(err, errlen, "%s: %s", path, sqlite3_errmsg(dst));
		goto out;
	}
	int step = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (step != SQLITE_DONE) {
		moat_set_err(err, errlen, "%s: backup failed: %s", path, sqlite3_errstr(step));
		goto out;
	}
	/* a backup is one self-contained file: no WAL beside it */
	if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
		moat_set_err(err, errlen, "%s: %s", path, sqlite3_errmsg(dst));
		goto out;
	}
	if (sqlite3_close(dst) != SQLITE_OK) {
		moat_set_err(err, errlen, "%s: %s", path, sqlite3_errmsg(dst));
		goto out;
	}
	dst = NULL;
	int fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		moat_set_err(err, errlen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	moat_sync_dir_of(path);
	rc = 0;
out:
	if (dst)
		sqlite3_close(dst);
	if (src)
		sqlite3_close(src);
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

/* Opens file read-only and checks it is a moat store that key opens. */
static int verify_copy(const char *file, const uint8_t key[MOAT_SEAL_KEY_LEN], char *err,
		       size_t errlen)
{
	struct moat_seal *kek = moat_seal_new(key);
	struct keyset k;
	sqlite3 *db = NULL;
	sqlite3_stmt *st;
	char check[256] = "";
	int rc = MOAT_EIO;

	if (!kek)
		return MOAT_ENOMEM;
	if (access(file, R_OK) < 0) {
		moat_set_err(err, errlen, "%s: %s", file, strerror(errno));
		goto out;
	}
	if (sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		moat_set_err(err, errlen, "%s: %s", file, db ? sqlite3_errmsg(db) : "cannot open");
		goto out;
	}
	if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		snprintf(check, sizeof(check), "%s", (const char *)sqlite3_column_text(st, 0));
	else
		snprintf(check, sizeof(check), "%s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	if (strcmp(check, "ok") != 0) {
		moat_set_err(err, errlen, "%s is damaged or not a database: %s", file, check);
		rc = MOAT_ECONFIG;
		goto out;
	}
	rc = keys_read(db, kek, file, &k, err, errlen);
	if (rc == MOAT_ENOTFOUND) {
		moat_set_err(err, errlen, "%s is an empty database, not a moat store", file);
		rc = MOAT_ECONFIG;
	}
	moat_seal_wipe(&k, sizeof(k));
out:
	sqlite3_close(db);
	moat_seal_free(kek);
	return rc;
}

/* Copies from to a new file to (mode 0600), synced. */
static int copy_file(const char *from, const char *to, char *err, size_t errlen)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = MOAT_EIO;
	ssize_t n;

	if (in < 0) {
		moat_set_err(err, errlen, "%s: %s", from, strerror(errno));
		return MOAT_EIO;
	}
	if ((out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		moat_set_err(err, errlen, "%s: %s", to, strerror(errno));
		goto out;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (moat_write_full(out, buf, (size_t)n) < 0)
			break;
	if (n != 0 || fsync(out) < 0) {
		moat_set_err(err, errlen, "copying %s to %s: %s", from, to, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(in);
	if (out >= 0 && close(out) < 0 && rc == 0) {
		moat_set_err(err, errlen, "%s: %s", to, strerror(errno));
		rc = MOAT_EIO;
	}
	if (rc < 0)
		unlink(to);
	return rc;
}

static int restore_locked(const char *db, const char *file, char *aside, size_t asidelen,
			  char *err, size_t errlen);

int moat_store_restore(const char *dir, const char *file, const uint8_t key[MOAT_SEAL_KEY_LEN],
		       char *aside, size_t asidelen, char *err, size_t errlen)
{
	char db[4096];
	int rc, lock;

	if (aside && asidelen)
		aside[0] = 0;
	if ((rc = verify_copy(file, key, err, errlen)) < 0)
		return rc;
	if ((rc = make_dir(dir, err, errlen)) < 0)
		return rc;
	if ((size_t)snprintf(db, sizeof(db), "%s/moat.db", dir) >= sizeof(db)) {
		moat_set_err(err, errlen, "store: %s: path too long", dir);
		return MOAT_ECONFIG;
	}
	if ((lock = lock_dir(dir, err, errlen)) < 0)
		return lock;
	rc = restore_locked(db, file, aside, asidelen, err, errlen);
	close(lock);
	return rc;
}

static int restore_locked(const char *db, const char *file, char *aside, size_t asidelen,
			  char *err, size_t errlen)
{
	static const char *const parts[] = { "", "-wal", "-shm" };
	char tmp[4200], from[4200], to[4400];
	struct stat st;
	int rc;

	snprintf(tmp, sizeof(tmp), "%s.restore", db);
	if ((rc = copy_file(file, tmp, err, errlen)) < 0)
		return rc;
	if (lstat(db, &st) == 0) {
		char name[4300];
		snprintf(name, sizeof(name), "%s.before-restore-%lld", db, (long long)time(NULL));
		for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
			snprintf(from, sizeof(from), "%s%s", db, parts[i]);
			snprintf(to, sizeof(to), "%s%s", name, parts[i]);
			if (rename(from, to) < 0 && errno != ENOENT) {
				moat_set_err(err, errlen, "moving %s aside: %s", from, strerror(errno));
				for (size_t j = 0; j < i; j++) { /* put back what was moved */
					snprintf(from, sizeof(from), "%s%s", db, parts[j]);
					snprintf(to, sizeof(to), "%s%s", name, parts[j]);
					(void)rename(to, from);
				}
				unlink(tmp);
				return MOAT_EIO;
			}
		}
		if (aside && asidelen)
			snprintf(aside, asidelen, "%s", name);
	}
	if (rename(tmp, db) < 0) {
		moat_set_err(err, errlen, "%s: %s", db, strerror(errno));
		unlink(tmp);
		return MOAT_EIO;
	}
	moat_sync_dir_of(db);
	return 0;
}
