/*
 * test_store.c - the durable store (src/store/store.c).
 *
 * Checked: rows written through the queue come back after a reopen, replaced
 * and deleted as asked, in every table and sync mode; done callbacks run
 * after the commit, and flush waits for them; a group of writes is one
 * commit; the file holds no plaintext of values or names; a wrong key, a
 * file that is not a store, and a damaged file are refused at open with a
 * message; a value moved to another row or table, or with flipped bytes, is
 * counted as damaged and skipped, never delivered; an empty value is a value.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "store/store.h"

static char dir[256];

static struct moat_store_conf conf(enum moat_store_sync sync, uint8_t key_byte)
{
	struct moat_store_conf c = { .dir = dir, .sync = sync, .batch_ms = 20 };

	memset(c.key, key_byte, sizeof(c.key));
	return c;
}

static struct moat_store *open_ok(enum moat_store_sync sync, uint8_t key_byte)
{
	struct moat_store_conf c = conf(sync, key_byte);
	struct moat_store *s = NULL;
	char err[512];

	if (moat_store_open(&c, &s, err, sizeof(err)) != 0)
		fail_msg("open: %s", err);
	return s;
}

static int open_refused(uint8_t key_byte, char *err, size_t errlen)
{
	struct moat_store_conf c = conf(MOAT_STORE_SYNC_ALWAYS, key_byte);
	struct moat_store *s = NULL;
	int rc = moat_store_open(&c, &s, err, errlen);

	assert_null(s);
	return rc;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/moat-test-store-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* ---- collecting rows ---- */

struct rows {
	int n;
	char key[64][64], value[64][128];
	size_t vlen[64];
};

static int collect(void *ctx, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct rows *r = ctx;

	assert_true(r->n < 64 && kn < 64 && vn < 128);
	memcpy(r->key[r->n], k, kn);
	r->key[r->n][kn] = 0;
	memcpy(r->value[r->n], v, vn);
	r->value[r->n][vn] = 0;
	r->vlen[r->n] = vn;
	r->n++;
	return 0;
}

static const char *value_of(const struct rows *r, const char *key)
{
	for (int i = 0; i < r->n; i++)
		if (strcmp(r->key[i], key) == 0)
			return r->value[i];
	return NULL;
}

static struct rows load(struct moat_store *s, enum moat_store_table t,
			struct moat_store_load_stats *st)
{
	struct rows r = { 0 };
	char err[256];

	assert_int_equal(moat_store_load(s, t, collect, &r, st, err, sizeof(err)), 0);
	return r;
}

static void put(struct moat_store *s, enum moat_store_table t, const char *k, const char *v)
{
	assert_int_equal(moat_store_put(s, t, k, strlen(k), v, strlen(v), NULL, NULL), 0);
}

/* ---- tests ---- */

static void test_round_trip_and_reopen(void **state)
{
	enum moat_store_sync modes[] = { MOAT_STORE_SYNC_ALWAYS, MOAT_STORE_SYNC_BATCH,
					 MOAT_STORE_SYNC_OFF };

	for (size_t m = 0; m < 3; m++) {
		struct moat_store *s;
		struct moat_store_load_stats st;
		struct rows r;

		teardown(state);
		setup(state);
		s = open_ok(modes[m], 7);
		put(s, MOAT_STORE_RETAINED, "k1", "plant/line1 21.5");
		put(s, MOAT_STORE_RETAINED, "k2", "second");
		put(s, MOAT_STORE_RETAINED, "k1", "replaced");
		put(s, MOAT_STORE_SESSIONS, "k1", "a session, not a retained message");
		assert_int_equal(moat_store_del(s, MOAT_STORE_RETAINED, "k2", 2, NULL, NULL), 0);
		put(s, MOAT_STORE_STATE, "empty", "");
		moat_store_close(s);

		s = open_ok(modes[m], 7);
		r = load(s, MOAT_STORE_RETAINED, &st);
		assert_int_equal(r.n, 1);
		assert_string_equal(value_of(&r, "k1"), "replaced");
		assert_int_equal(st.rows, 1);
		assert_int_equal(st.damaged, 0);
		r = load(s, MOAT_STORE_SESSIONS, NULL);
		assert_int_equal(r.n, 1);
		assert_string_equal(value_of(&r, "k1"), "a session, not a retained message");
		r = load(s, MOAT_STORE_STATE, NULL);
		assert_int_equal(r.n, 1);
		assert_int_equal(r.vlen[0], 0);
		r = load(s, MOAT_STORE_MESSAGES, NULL);
		assert_int_equal(r.n, 0);
		moat_store_close(s);
	}
}

struct done_log {
	int calls, rc_sum;
	uint64_t commits_seen;
	struct moat_store *s;
};

static void on_done(void *ctx, int rc)
{
	struct done_log *d = ctx;

	d->calls++;
	d->rc_sum += rc;
}

static void test_done_after_commit_and_group_commit(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_BATCH, 1);
	struct moat_store_stats st;
	struct done_log d = { 0 };
	char k[32], v[32];

	(void)state;
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "key-%d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		assert_int_equal(moat_store_put(s, MOAT_STORE_MESSAGES, k, strlen(k), v, strlen(v),
						on_done, &d),
				 0);
	}
	assert_int_equal(moat_store_barrier(s, on_done, &d), 0);
	moat_store_flush(s);
	assert_int_equal(d.calls, 1001);
	assert_int_equal(d.rc_sum, 0);
	moat_store_stats(s, &st);
	assert_int_equal(st.writes, 1000);
	assert_int_equal(st.failed, 0);
	/* 1000 queued at once in batch mode: a few commits, not a thousand */
	assert_true(st.commits >= 1 && st.commits <= 20);
	moat_store_close(s);
}

static void test_no_plaintext_in_files(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_ALWAYS, 3);
	uint8_t nk[MOAT_SEAL_NAME_KEY_LEN];
	char path[400], cmd[600];

	(void)state;
	assert_int_equal(moat_store_name_key(s, "topic", "SECRET-TOPIC-MARKER", 19, nk), 0);
	assert_int_equal(moat_store_put(s, MOAT_STORE_RETAINED, nk, sizeof(nk),
					"SECRET-PAYLOAD-MARKER", 21, NULL, NULL),
			 0);
	moat_store_flush(s);
	/* while open (WAL and main file), and after close */
	for (int round = 0; round < 2; round++) {
		snprintf(cmd, sizeof(cmd), "grep -r -a -q -e SECRET-PAYLOAD-MARKER -e SECRET-TOPIC "
					   "'%s'", dir);
		assert_int_not_equal(system(cmd), 0);
		if (round == 0)
			moat_store_close(s);
	}
	snprintf(path, sizeof(path), "%s/moat.db", dir);
	struct stat stt;
	assert_int_equal(stat(path, &stt), 0);
	assert_int_equal(stt.st_mode & 077, 0);
	assert_int_equal(stat(dir, &stt), 0);
}

static void test_name_keys(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_OFF, 3);
	uint8_t a[32], b[32], c[32];

	(void)state;
	assert_int_equal(moat_store_name_key(s, "topic", "x", 1, a), 0);
	assert_int_equal(moat_store_name_key(s, "topic", "x", 1, b), 0);
	assert_int_equal(moat_store_name_key(s, "client", "x", 1, c), 0);
	assert_memory_equal(a, b, 32);
	assert_memory_not_equal(a, c, 32);
	moat_store_close(s);
}

static void test_wrong_key_refused(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_ALWAYS, 5);
	struct rows r;
	char err[512];

	(void)state;
	put(s, MOAT_STORE_RETAINED, "k", "v");
	moat_store_close(s);
	assert_int_equal(open_refused(6, err, sizeof(err)), MOAT_ECONFIG);
	assert_non_null(strstr(err, "the key does not open this store"));
	/* the right key still works: nothing was changed by the refusal */
	s = open_ok(MOAT_STORE_SYNC_ALWAYS, 5);
	r = load(s, MOAT_STORE_RETAINED, NULL);
	assert_int_equal(r.n, 1);
	moat_store_close(s);
}

static void test_not_a_store(void **state)
{
	char path[400], err[512];
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/moat.db", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("this is not a database, just text that happens to sit here\n", f);
	fclose(f);
	assert_int_equal(open_refused(1, err, sizeof(err)), MOAT_EIO);
	assert_non_null(strstr(err, "store:"));
}

/* Runs SQL on the store's file behind its back (it must be closed). */
static void tamper(const char *sql)
{
	char path[400];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/moat.db", dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void test_moved_and_flipped_values_skipped(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_ALWAYS, 9);
	struct moat_store_load_stats st;
	struct rows r;

	(void)state;
	put(s, MOAT_STORE_RETAINED, "a", "value of a");
	put(s, MOAT_STORE_RETAINED, "b", "value of b");
	put(s, MOAT_STORE_RETAINED, "c", "value of c");
	put(s, MOAT_STORE_SESSIONS, "s", "a session");
	moat_store_close(s);
	/* b's value copied under a new key, a session's value moved into retained, c flipped */
	tamper("INSERT INTO retained(k, v) SELECT x'7a', v FROM retained WHERE k = x'62';"
	       "INSERT INTO retained(k, v) SELECT x'73', v FROM sessions;"
	       "UPDATE retained SET v = substr(v, 1, 20) || x'00' || substr(v, 22) WHERE k = x'63';"
	       "INSERT INTO retained(k, v) VALUES(x'74', x'01');");
	s = open_ok(MOAT_STORE_SYNC_ALWAYS, 9);
	r = load(s, MOAT_STORE_RETAINED, &st);
	assert_int_equal(st.rows, 2);
	assert_int_equal(st.damaged, 4);
	assert_string_equal(value_of(&r, "a"), "value of a");
	assert_string_equal(value_of(&r, "b"), "value of b");
	assert_null(value_of(&r, "z"));
	assert_null(value_of(&r, "c"));
	moat_store_close(s);
}

static void test_damaged_file_refused(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_ALWAYS, 2);
	char path[400], err[512], big[400];
	struct stat st;
	int fd;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	for (int i = 0; i < 200; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		put(s, MOAT_STORE_RETAINED, k, big);
	}
	moat_store_close(s);
	snprintf(path, sizeof(path), "%s/moat.db", dir);
	assert_int_equal(stat(path, &st), 0);
	/* overwrite a page in the middle with garbage */
	assert_true((fd = open(path, O_WRONLY)) >= 0);
	assert_int_equal(pwrite(fd, big, sizeof(big), st.st_size / 2), (ssize_t)sizeof(big));
	close(fd);
	{
		int rc = open_refused(2, err, sizeof(err));
		assert_true(rc == MOAT_EIO || rc == MOAT_ECONFIG);
		assert_non_null(strstr(err, "store"));
	}
	/* truncated to half */
	assert_int_equal(truncate(path, st.st_size / 2), 0);
	assert_true(open_refused(2, err, sizeof(err)) < 0);
}

static void test_delete_by_prefix(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_OFF, 8);
	struct rows r;

	(void)state;
	put(s, MOAT_STORE_MESSAGES, "sessA-1", "a1");
	put(s, MOAT_STORE_MESSAGES, "sessA-2", "a2");
	put(s, MOAT_STORE_MESSAGES, "sessA", "exactly the prefix");
	put(s, MOAT_STORE_MESSAGES, "sessB-1", "b1");
	put(s, MOAT_STORE_MESSAGES, "sess", "shorter");
	put(s, MOAT_STORE_RETAINED, "sessA-1", "another table");
	put(s, MOAT_STORE_MESSAGES, "sessB\xff", "b ff");
	put(s, MOAT_STORE_MESSAGES, "sessB\xff\xff" "1", "b ff ff 1");
	put(s, MOAT_STORE_MESSAGES, "sessC", "c");
	assert_int_equal(moat_store_del_prefix(s, MOAT_STORE_MESSAGES, "sessB\xff", 6, NULL, NULL), 0);
	assert_int_equal(moat_store_del_prefix(s, MOAT_STORE_MESSAGES, "sessA", 5, NULL, NULL), 0);
	moat_store_flush(s);
	r = load(s, MOAT_STORE_MESSAGES, NULL);
	assert_int_equal(r.n, 3);
	assert_string_equal(value_of(&r, "sessB-1"), "b1");
	assert_string_equal(value_of(&r, "sessC"), "c");
	assert_string_equal(value_of(&r, "sess"), "shorter");
	r = load(s, MOAT_STORE_RETAINED, NULL);
	assert_int_equal(r.n, 1);
	moat_store_close(s);
}

/* A group reaches the store thread whole: one commit, done callbacks after it. */
static void test_group_is_one_commit(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_ALWAYS, 6);
	struct moat_store_stats before, after;
	struct done_log d = { 0 };
	struct rows r;

	(void)state;
	moat_store_flush(s);
	moat_store_stats(s, &before);
	moat_store_group_begin(s);
	put(s, MOAT_STORE_MESSAGES, "g1", "one");
	put(s, MOAT_STORE_MESSAGES, "g2", "two");
	assert_int_equal(moat_store_barrier(s, on_done, &d), 0);
	usleep(50000); /* held back: nothing reaches the thread before the end */
	assert_int_equal(d.calls, 0);
	moat_store_group_end(s);
	moat_store_flush(s);
	moat_store_stats(s, &after);
	assert_int_equal(d.calls, 1);
	assert_int_equal(after.commits - before.commits, 1);
	assert_int_equal(after.writes - before.writes, 2);
	r = load(s, MOAT_STORE_MESSAGES, NULL);
	assert_int_equal(r.n, 2);
	moat_store_close(s);
}

/* One process per store: a second open (another moatd, `moat store` on a live store) is refused. */
static void test_second_open_refused(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_OFF, 4);
	char err[512];

	(void)state;
	assert_int_equal(open_refused(4, err, sizeof(err)), MOAT_EEXIST);
	assert_non_null(strstr(err, "in use by another process"));
	moat_store_close(s);
	s = open_ok(MOAT_STORE_SYNC_OFF, 4);
	moat_store_close(s);
}

static void test_bad_arguments(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_OFF, 4);
	char huge[600];

	(void)state;
	memset(huge, 'k', sizeof(huge));
	assert_int_equal(moat_store_put(s, MOAT_STORE_RETAINED, "", 0, "v", 1, NULL, NULL),
			 MOAT_EINVAL);
	assert_int_equal(moat_store_put(s, MOAT_STORE_RETAINED, huge, sizeof(huge), "v", 1, NULL,
					NULL),
			 MOAT_EINVAL);
	assert_int_equal(moat_store_put(s, MOAT_STORE_TABLES, "k", 1, "v", 1, NULL, NULL),
			 MOAT_EINVAL);
	moat_store_close(s);
	moat_store_close(NULL);
}


/* ---- key rotation, backup and restore ---- */

/* Counts rows whose value is "v:" followed by their key. */
static int count_matching(void *ctx, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	int *n = ctx;

	assert_int_equal(vn, kn + 2);
	assert_memory_equal(v, "v:", 2);
	assert_memory_equal(v + 2, k, kn);
	(*n)++;
	return 0;
}

static int count_rows(struct moat_store *s, enum moat_store_table t, uint64_t *damaged)
{
	struct moat_store_load_stats st;
	char err[256];
	int n = 0;

	assert_int_equal(moat_store_load(s, t, count_matching, &n, &st, err, sizeof(err)), 0);
	if (damaged)
		*damaged = st.damaged;
	return n;
}

static void put_rows(struct moat_store *s, enum moat_store_table t, const char *prefix, int from,
		     int to)
{
	char k[64], v[80];

	for (int i = from; i < to; i++) {
		snprintf(k, sizeof(k), "%s-%06d", prefix, i);
		snprintf(v, sizeof(v), "v:%s", k);
		put(s, t, k, v);
	}
}

struct rekey_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int step_rc, done_rc;
	bool stepped, done;
};

static void on_step(void *ctx, int rc)
{
	struct rekey_wait *w = ctx;

	pthread_mutex_lock(&w->lock);
	w->step_rc = rc;
	w->stepped = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void on_rekeyed(void *ctx, int rc)
{
	struct rekey_wait *w = ctx;

	pthread_mutex_lock(&w->lock);
	w->done_rc = rc;
	w->done = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void wait_for(struct rekey_wait *w, bool *flag)
{
	pthread_mutex_lock(&w->lock);
	while (!*flag)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

static void wait_rotation_done(struct moat_store *s)
{
	struct moat_store_stats st;

	for (int i = 0; i < 2000; i++) {
		moat_store_stats(s, &st);
		if (!st.rotating)
			return;
		usleep(5000);
	}
	fail_msg("the rotation did not end");
}

/* A new operator key, online: writes go on during the walk; afterwards only the new key opens. */
static void test_rekey_online(void **state)
{
	struct rekey_wait w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0 };
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_BATCH, 0x11);
	struct moat_store_stats st;
	uint8_t newkey[MOAT_SEAL_KEY_LEN], nk_before[32], nk_after[32];
	uint64_t damaged;
	char err[512];

	(void)state;
	memset(newkey, 0x22, sizeof(newkey));
	put_rows(s, MOAT_STORE_RETAINED, "r", 0, 1500);
	put_rows(s, MOAT_STORE_SESSIONS, "s", 0, 300);
	put_rows(s, MOAT_STORE_MESSAGES, "m", 0, 700);
	assert_int_equal(moat_store_name_key(s, "client", "c1", 2, nk_before), 0);
	moat_store_flush(s);
	moat_store_stats(s, &st);
	assert_int_equal(st.generation, 1);
	assert_int_equal(moat_store_rekey(s, newkey, on_step, on_rekeyed, &w), 0);
	/* writes queued during the walk: new rows, replaced rows, deleted rows */
	put_rows(s, MOAT_STORE_RETAINED, "r", 1500, 1800);
	put_rows(s, MOAT_STORE_MESSAGES, "m", 0, 100);
	for (int i = 0; i < 50; i++) {
		char k[32];
		snprintf(k, sizeof(k), "s-%06d", i);
		assert_int_equal(moat_store_del(s, MOAT_STORE_SESSIONS, k, strlen(k), NULL, NULL), 0);
	}
	wait_for(&w, &w.stepped);
	assert_int_equal(w.step_rc, 0);
	wait_for(&w, &w.done);
	assert_int_equal(w.done_rc, 0);
	moat_store_stats(s, &st);
	assert_int_equal(st.generation, 2);
	assert_false(st.rotating);
	/* row keys stay what they were: the name key does not rotate */
	assert_int_equal(moat_store_name_key(s, "client", "c1", 2, nk_after), 0);
	assert_memory_equal(nk_before, nk_after, 32);
	moat_store_close(s);

	assert_int_equal(open_refused(0x11, err, sizeof(err)), MOAT_ECONFIG);
	s = open_ok(MOAT_STORE_SYNC_BATCH, 0x22);
	assert_int_equal(count_rows(s, MOAT_STORE_RETAINED, &damaged), 1800);
	assert_int_equal(damaged, 0);
	assert_int_equal(count_rows(s, MOAT_STORE_SESSIONS, &damaged), 250);
	assert_int_equal(damaged, 0);
	assert_int_equal(count_rows(s, MOAT_STORE_MESSAGES, &damaged), 700);
	assert_int_equal(damaged, 0);
	moat_store_stats(s, &st);
	assert_false(st.rotating);
	moat_store_close(s);
}

/* A rotation cut short by a close goes on at the next open; every row opens meanwhile. */
static void test_rekey_resumes_after_close(void **state)
{
	struct rekey_wait w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0 };
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_OFF, 0x31);
	struct moat_store_stats st;
	uint64_t damaged;

	(void)state;
	put_rows(s, MOAT_STORE_MESSAGES, "m", 0, 20000);
	moat_store_flush(s);
	assert_int_equal(moat_store_rekey(s, NULL, on_step, on_rekeyed, &w), 0);
	wait_for(&w, &w.stepped);
	assert_int_equal(w.step_rc, 0);
	moat_store_close(s); /* 20000 rows: the walk has not finished */
	assert_true(w.done);
	assert_int_equal(w.done_rc, MOAT_ECLOSED);

	s = open_ok(MOAT_STORE_SYNC_OFF, 0x31);
	moat_store_stats(s, &st);
	assert_int_equal(st.generation, 2);
	/* mid-walk rows are under either key: all open */
	assert_int_equal(count_rows(s, MOAT_STORE_MESSAGES, &damaged), 20000);
	assert_int_equal(damaged, 0);
	wait_rotation_done(s);
	moat_store_close(s);
	s = open_ok(MOAT_STORE_SYNC_OFF, 0x31);
	moat_store_stats(s, &st);
	assert_false(st.rotating);
	assert_int_equal(count_rows(s, MOAT_STORE_MESSAGES, &damaged), 20000);
	assert_int_equal(damaged, 0);
	moat_store_close(s);
}

/* The data key rotates by itself once rotate_at values were sealed under it. */
static void test_rotation_at_seal_limit(void **state)
{
	struct moat_store_conf c = conf(MOAT_STORE_SYNC_OFF, 0x41);
	struct moat_store_stats st;
	struct moat_store *s;
	uint64_t damaged;
	char err[256];

	(void)state;
	c.rotate_at = 500;
	assert_int_equal(moat_store_open(&c, &s, err, sizeof(err)), 0);
	for (int round = 0; round < 4; round++) {
		put_rows(s, MOAT_STORE_RETAINED, "r", round * 200, round * 200 + 200);
		moat_store_flush(s);
	}
	wait_rotation_done(s);
	moat_store_stats(s, &st);
	assert_true(st.generation >= 2);
	assert_true(st.sealed < 500 + 800);
	moat_store_close(s);
	/* the count survives a reopen */
	assert_int_equal(moat_store_open(&c, &s, err, sizeof(err)), 0);
	assert_int_equal(count_rows(s, MOAT_STORE_RETAINED, &damaged), 800);
	assert_int_equal(damaged, 0);
	moat_store_close(s);
}

static void test_backup_and_restore(void **state)
{
	struct moat_store *s = open_ok(MOAT_STORE_SYNC_ALWAYS, 0x51);
	char backup[400], other[400], aside[600], err[512], cmd[1400];
	uint8_t key[MOAT_SEAL_KEY_LEN], wrong[MOAT_SEAL_KEY_LEN];
	uint64_t damaged;
	struct stat stt;

	(void)state;
	memset(key, 0x51, sizeof(key));
	memset(wrong, 0x52, sizeof(wrong));
	snprintf(backup, sizeof(backup), "%s/backup.db", dir);
	snprintf(other, sizeof(other), "%s/restored", dir);
	put_rows(s, MOAT_STORE_RETAINED, "r", 0, 1000);
	put_rows(s, MOAT_STORE_SESSIONS, "s", 0, 10);
	assert_int_equal(moat_store_backup(s, backup, false, err, sizeof(err)), 0);
	assert_int_equal(stat(backup, &stt), 0);
	assert_int_equal(stt.st_mode & 077, 0);
	/* never replaces a file unless asked */
	assert_int_equal(moat_store_backup(s, backup, false, err, sizeof(err)), MOAT_EEXIST);
	put_rows(s, MOAT_STORE_RETAINED, "r", 1000, 1100); /* after the backup: not in it */
	assert_int_equal(moat_store_backup(s, backup, true, err, sizeof(err)), 0);
	put_rows(s, MOAT_STORE_RETAINED, "r", 1100, 1200);
	moat_store_close(s);

	/* the copy restores into a directory of its own */
	assert_int_equal(moat_store_restore(other, backup, wrong, aside, sizeof(aside), err,
					    sizeof(err)),
			 MOAT_ECONFIG);
	assert_non_null(strstr(err, "the key does not open"));
	assert_int_equal(moat_store_restore(other, backup, key, aside, sizeof(aside), err,
					    sizeof(err)),
			 0);
	assert_string_equal(aside, "");
	struct moat_store_conf c = conf(MOAT_STORE_SYNC_ALWAYS, 0x51);
	c.dir = other;
	assert_int_equal(moat_store_open(&c, &s, err, sizeof(err)), 0);
	assert_int_equal(count_rows(s, MOAT_STORE_RETAINED, &damaged), 1100);
	assert_int_equal(count_rows(s, MOAT_STORE_SESSIONS, &damaged), 10);
	assert_int_equal(damaged, 0);
	moat_store_close(s);

	/* over an existing store: that one is moved aside, not lost */
	assert_int_equal(moat_store_restore(dir, backup, key, aside, sizeof(aside), err,
					    sizeof(err)),
			 0);
	assert_non_null(strstr(aside, "moat.db.before-restore-"));
	assert_int_equal(stat(aside, &stt), 0);
	s = open_ok(MOAT_STORE_SYNC_ALWAYS, 0x51);
	assert_int_equal(count_rows(s, MOAT_STORE_RETAINED, &damaged), 1100);
	moat_store_close(s);

	/* garbage and truncated copies are refused, the store left as it was */
	snprintf(cmd, sizeof(cmd), "head -c 5000 '%s' > '%s/trunc.db' && echo garbage > '%s/garbage.db'",
		 backup, dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(other, sizeof(other), "%s/trunc.db", dir);
	assert_true(moat_store_restore(dir, other, key, aside, sizeof(aside), err, sizeof(err)) < 0);
	snprintf(other, sizeof(other), "%s/garbage.db", dir);
	assert_true(moat_store_restore(dir, other, key, aside, sizeof(aside), err, sizeof(err)) < 0);
	snprintf(other, sizeof(other), "%s/missing.db", dir);
	assert_true(moat_store_restore(dir, other, key, aside, sizeof(aside), err, sizeof(err)) < 0);
	s = open_ok(MOAT_STORE_SYNC_ALWAYS, 0x51);
	assert_int_equal(count_rows(s, MOAT_STORE_RETAINED, &damaged), 1100);
	moat_store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_done_after_commit_and_group_commit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_no_plaintext_in_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_moved_and_flipped_values_skipped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_damaged_file_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_by_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_is_one_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_open_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rekey_online, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rekey_resumes_after_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_at_seal_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backup_and_restore, setup, teardown),
	};

	moat_log_setup(-1, MOAT_LOG_LVL_ERROR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
