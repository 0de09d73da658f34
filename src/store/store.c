/*
 * store.c - the durable store (see store.h).
 *
 * Layout of DIR/moat.db (SQLite, WAL):
 *   moat(k TEXT PRIMARY KEY, v BLOB)   "format" = "moat-store-1" in clear,
 *                                       "check" = a known value sealed with
 *                                       the key (a wrong key does not open it)
 *   retained, sessions, messages, state (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID
 * A value is moat_seal(table name | 0x00 | key, plaintext).
 *
 * One connection, opened serialized; the store thread is the only writer.
 * SQLite is the well-kept library for a crash-safe file of rows; what is
 * ours is the sealing, the queue and the group commit.
 */
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/error.h"
#include "core/log.h"

#define FORMAT "moat-store-1"
#define CHECK_PLAIN "moat store check v1"
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

enum { OP_PUT, OP_DEL, OP_DEL_PREFIX, OP_BARRIER };

struct op {
	struct op *next;
	uint64_t seq;
	moat_store_done done;
	void *ctx;
	uint8_t table;
	uint8_t kind; /* OP_PUT, OP_DEL, OP_DEL_PREFIX */
	size_t klen, vlen;
	uint8_t data[]; /* key | value */
};

struct moat_store {
	sqlite3 *db;
	sqlite3_stmt *put[MOAT_STORE_TABLES], *del[MOAT_STORE_TABLES], *range[MOAT_STORE_TABLES];
	struct moat_seal *seal;
	enum moat_store_sync sync;
	uint32_t batch_ms, queue_max;

	pthread_mutex_t lock; /* the queue, the counters, and the connection */
	pthread_cond_t wake, committed;
	struct op *head, *tail;
	uint32_t queued;
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
	}
	return 0;
}

/* A meta value, or *len = 0 if absent. */
static int meta_get(struct moat_store *s, const char *k, uint8_t *out, size_t cap, size_t *len,
		    char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc;

	*len = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT v FROM moat WHERE k = ?", -1, &st, NULL) != SQLITE_OK)
		return db_err(s, "reading the store's header", err, errlen);
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
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_err(s, "reading the store's header", err, errlen);
	return 0;
}

static int meta_put(struct moat_store *s, const char *k, const void *v, size_t n, char *err,
		    size_t errlen)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO moat(k, v) VALUES(?, ?)", -1, &st,
			       NULL) != SQLITE_OK)
		return db_err(s, "writing the store's header", err, errlen);
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, v, (int)n, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_err(s, "writing the store's header", err, errlen);
}

/*
 * A new store gets its format and a sealed check value; an existing one must
 * have both, and the check must open with this key.
 */
static int check_header(struct moat_store *s, const char *path, char *err, size_t errlen)
{
	uint8_t buf[128], plain[64];
	size_t n, pn;
	int rc;

	if ((rc = exec(s, "CREATE TABLE IF NOT EXISTS moat(k TEXT PRIMARY KEY, v BLOB)", err,
		       errlen)) < 0 ||
	    (rc = meta_get(s, "format", buf, sizeof(buf) - 1, &n, err, errlen)) < 0)
		return rc;
	if (n == 0) {
		uint8_t sealed[sizeof(CHECK_PLAIN) + MOAT_SEAL_OVERHEAD];
		if (moat_seal(s->seal, "check", 5, CHECK_PLAIN, sizeof(CHECK_PLAIN) - 1, sealed) < 0)
			return MOAT_ENOMEM;
		if ((rc = meta_put(s, "format", FORMAT, strlen(FORMAT), err, errlen)) < 0)
			return rc;
		return meta_put(s, "check", sealed, moat_seal_size(sizeof(CHECK_PLAIN) - 1), err,
				errlen);
	}
	buf[n] = 0;
	if (n != strlen(FORMAT) || memcmp(buf, FORMAT, n) != 0) {
		moat_set_err(err, errlen, "store: %s: format '%.*s' is not %s", path, (int)n, buf,
			     FORMAT);
		return MOAT_ECONFIG;
	}
	if ((rc = meta_get(s, "check", buf, sizeof(buf), &n, err, errlen)) < 0)
		return rc;
	if (n == 0 || moat_unseal(s->seal, "check", 5, buf, n, plain, &pn) < 0 ||
	    pn != sizeof(CHECK_PLAIN) - 1 || memcmp(plain, CHECK_PLAIN, pn) != 0) {
		moat_set_err(err, errlen,
			     "store: %s: the key does not open this store (wrong "
			     "persistence_key_file?); nothing was read or changed",
			     path);
		return MOAT_ECONFIG;
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
	}
	sqlite3_close(s->db);
	moat_seal_free(s->seal);
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
	char path[4096], mode[32], check[256];
	int rc;

	*out = NULL;
	if ((rc = make_dir(c->dir, err, errlen)) < 0)
		return rc;
	if ((size_t)snprintf(path, sizeof(path), "%s/moat.db", c->dir) >= sizeof(path)) {
		moat_set_err(err, errlen, "store: %s: path too long", c->dir);
		return MOAT_ECONFIG;
	}
	if (!(s = calloc(1, sizeof(*s))) || !(s->seal = moat_seal_new(c->key))) {
		free(s);
		return MOAT_ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->db_lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	pthread_cond_init(&s->committed, NULL);
	s->sync = c->sync;
	s->batch_ms = c->batch_ms;
	s->queue_max = c->queue_max ? c->queue_max : QUEUE_MAX_DEFAULT;
	rc = MOAT_EIO;
	if (sqlite3_open_v2(path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		moat_set_err(err, errlen, "store: %s: %s", path,
			     s->db ? sqlite3_errmsg(s->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000); /* a backup may hold a read lock a moment */
	if ((rc = query_text(s, "PRAGMA journal_mode=WAL", mode, sizeof(mode), err, errlen)) < 0)
		goto fail;
	if (strcmp(mode, "wal") != 0) {
		moat_set_err(err, errlen, "store: %s: cannot use WAL mode (got '%s')", path, mode);
		rc = MOAT_EIO;
		goto fail;
	}
	restrict_files(path);
	if ((rc = exec(s, s->sync == MOAT_STORE_SYNC_OFF ? "PRAGMA synchronous=OFF"
							  : "PRAGMA synchronous=FULL",
		       err, errlen)) < 0)
		goto fail;
	/* A damaged file is found here, before anything is read or written. */
	if ((rc = query_text(s, "PRAGMA quick_check", check, sizeof(check), err, errlen)) < 0)
		goto fail;
	if (strcmp(check, "ok") != 0) {
		moat_set_err(err, errlen, "store: %s is damaged: %s", path, check);
		rc = MOAT_EIO;
		goto fail;
	}
	if ((rc = check_header(s, path, err, errlen)) < 0 || (rc = prepare(s, err, errlen)) < 0)
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
	return moat_seal_name_key(s->seal, domain, name, n, out);
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

	if (o->kind == OP_BARRIER)
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
		sqlite3_bind_blob(st, 2, *buf, (int)need, SQLITE_STATIC);
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : MOAT_EIO;
}

/* One transaction for the whole list; returns 0 or MOAT_EIO / MOAT_ENOMEM (rolled back). */
static int commit_list(struct moat_store *s, const struct op *list)
{
	uint8_t aad[16 + KEY_MAX], *buf = NULL;
	size_t cap = 0;
	int rc = 0;

	pthread_mutex_lock(&s->db_lock);
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		rc = MOAT_EIO;
		goto out;
	}
	for (const struct op *o = list; o && rc == 0; o = o->next)
		rc = write_op(s, o, aad, &buf, &cap);
	if (rc == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = MOAT_EIO;
	if (rc < 0) {
		moat_log(MOAT_LOG_LVL_ERROR, "store_commit_failed reason=\"%s\"",
			 sqlite3_errmsg(s->db));
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
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
	while (!s->head && !s->stop)
		pthread_cond_wait(&s->wake, &s->lock);
	if (s->sync == MOAT_STORE_SYNC_BATCH && s->batch_ms && !s->stop) {
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
	*stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return list;
}

static void *run(void *arg)
{
	struct moat_store *s = arg;

	for (;;) {
		bool stop;
		struct op *list = take(s, &stop), *next;
		uint64_t last = 0, n = 0;
		int rc;

		if (!list && stop)
			return NULL;
		rc = commit_list(s, list);
		for (struct op *o = list; o; o = next) {
			next = o->next;
			if (o->done)
				o->done(o->ctx, rc);
			last = o->seq;
			n += o->kind != OP_BARRIER;
			free(o);
		}
		pthread_mutex_lock(&s->lock);
		s->stats.commits++;
		s->stats.writes += n;
		if (rc < 0)
			s->stats.failed += n;
		if (last > s->done_seq)
			s->done_seq = last;
		pthread_cond_broadcast(&s->committed);
		pthread_mutex_unlock(&s->lock);
	}
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

void moat_store_stats(struct moat_store *s, struct moat_store_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->stats;
	pthread_mutex_unlock(&s->lock);
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
	uint8_t aad[16 + KEY_MAX], *plain = NULL;
	size_t cap = 0;
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
		size_t need = moat_unseal_size(vn) + 1, pn; /* + 1: an empty value has a buffer */

		if (!k || kn == 0 || kn > KEY_MAX || !v || vn < MOAT_SEAL_OVERHEAD) {
			st->damaged++;
			continue;
		}
		if (need > cap) {
			uint8_t *nb = realloc(plain, need);
			if (!nb) {
				rc = MOAT_ENOMEM;
				break;
			}
			plain = nb;
			cap = need;
		}
		if (moat_unseal(s->seal, aad, row_aad(aad, t, k, kn), v, vn, plain, &pn) < 0) {
			st->damaged++;
			continue;
		}
		st->rows++;
		if ((rc = cb(ctx, k, kn, plain, pn)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = db_err(s, "reading", err, errlen);
	sqlite3_finalize(q);
	pthread_mutex_unlock(&s->db_lock);
	free(plain);
	if (st->damaged)
		moat_log(MOAT_LOG_LVL_ERROR,
			 "store_damaged table=%s rows=%llu reason=\"values that do not open were "
			 "skipped\"",
			 table_names[t], (unsigned long long)st->damaged);
	return rc;
}
