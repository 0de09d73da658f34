/*
 * store.c - `moat store`: the durable store's offline tools.
 *
 *   moat store keygen FILE          a new key (64 hex digits, mode 0600; never overwrites)
 *   moat store check DIR [KEYFILE]  opens the store in DIR with the key (KEYFILE, or
 *                                   MOAT_STORE_KEY), counts what opens in each table
 *   moat store rekey DIR NEWKEYFILE [KEYFILE]
 *                                   moves the store in DIR to the key in NEWKEYFILE:
 *                                   itself if moatd is stopped, else through moatd's
 *                                   admin socket (online, as `moat ctl rekey`)
 *
 * Exit status: 0 done (check: everything opened), 1 something did not open
 * or the store was refused, 2 usage.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "store/seal.h"
#include "store/store.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: moat store keygen FILE\n"
		   "       moat store check DIR [KEYFILE]\n"
		   "       moat store rekey DIR NEWKEYFILE [KEYFILE]\n\n"
		   "keygen writes a new store key to FILE (mode 0600); it never overwrites.\n"
		   "check opens the store in DIR with the key in KEYFILE (or the environment\n"
		   "variable MOAT_STORE_KEY) and reports each table's rows; it changes nothing\n"
		   "and refuses a store moatd has open.\n"
		   "rekey re-encrypts the store in DIR, opened with KEYFILE (or MOAT_STORE_KEY),\n"
		   "under the key in NEWKEYFILE (make it with keygen): afterwards only\n"
		   "NEWKEYFILE opens it. If moatd has the store open, the running moatd does it\n"
		   "online, through its admin socket DIR/admin.sock (as `moat ctl rekey`).\n");
}

static int count_row(void *ctx, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	(void)ctx, (void)k, (void)kn, (void)v, (void)vn;
	return 0;
}

static int check(const char *dir, const char *keyfile)
{
	struct moat_store_conf c = { .dir = dir, .sync = MOAT_STORE_SYNC_OFF };
	struct moat_store *s;
	uint64_t damaged = 0;
	char err[512];
	int rc;

	if ((rc = moat_seal_load_key(keyfile, "MOAT_STORE_KEY", c.key, err, sizeof(err))) < 0 ||
	    (rc = moat_store_open(&c, &s, err, sizeof(err))) < 0) {
		memset(c.key, 0, sizeof(c.key));
		fprintf(stderr, "moat store: %s\n", err);
		return 1;
	}
	memset(c.key, 0, sizeof(c.key));
	for (int t = 0; t < MOAT_STORE_TABLES; t++) {
		struct moat_store_load_stats st;
		if (moat_store_load(s, t, count_row, NULL, &st, err, sizeof(err)) < 0) {
			fprintf(stderr, "moat store: %s\n", err);
			moat_store_close(s);
			return 1;
		}
		printf("%s: %llu rows, %llu damaged\n", moat_store_table_name(t),
		       (unsigned long long)st.rows, (unsigned long long)st.damaged);
		damaged += st.damaged;
	}
	moat_store_close(s);
	return damaged ? 1 : 0;
}

struct rekey_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
};

static void rekey_done(void *ctx, int rc)
{
	struct rekey_wait *w = ctx;

	pthread_mutex_lock(&w->lock);
	w->rc = rc;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/*
 * The store is open in a running moatd: the rotation is its to do (online,
 * through its admin socket DIR/admin.sock, as `moat ctl rekey` does).
 */
static int rekey_online(const char *dir, const char *newkeyfile)
{
	char sock[4200];
	char *args[] = { "ctl", "-s", sock, "rekey", (char *)newkeyfile, NULL };

	snprintf(sock, sizeof(sock), "%s/admin.sock", dir);
	fprintf(stderr, "moat store: %s is in use by a running moatd: asking it to rotate the key "
			"online (%s)\n", dir, sock);
	return moat_cmd_ctl(5, args);
}

static int rekey(const char *dir, const char *newkeyfile, const char *keyfile)
{
	struct rekey_wait w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 };
	struct moat_store_conf c = { .dir = dir, .sync = MOAT_STORE_SYNC_ALWAYS };
	uint8_t newkey[MOAT_SEAL_KEY_LEN];
	struct moat_store_stats st;
	struct moat_store *s;
	char err[512];
	int rc;

	if (moat_store_in_use(dir))
		return rekey_online(dir, newkeyfile);
	if ((rc = moat_seal_load_key(newkeyfile, NULL, newkey, err, sizeof(err))) < 0) {
		fprintf(stderr, "moat store: %s\n", err);
		return 1;
	}
	if ((rc = moat_seal_load_key(keyfile, "MOAT_STORE_KEY", c.key, err, sizeof(err))) < 0 ||
	    (rc = moat_store_open(&c, &s, err, sizeof(err))) < 0) {
		moat_seal_wipe(c.key, sizeof(c.key));
		moat_seal_wipe(newkey, sizeof(newkey));
		fprintf(stderr, "moat store: %s\n", err);
		return 1;
	}
	moat_seal_wipe(c.key, sizeof(c.key));
	rc = moat_store_rekey(s, newkey, NULL, rekey_done, &w);
	moat_seal_wipe(newkey, sizeof(newkey));
	if (rc == 0) {
		pthread_mutex_lock(&w.lock);
		while (!w.done)
			pthread_cond_wait(&w.cond, &w.lock);
		rc = w.rc;
		pthread_mutex_unlock(&w.lock);
	}
	moat_store_stats(s, &st);
	moat_store_close(s);
	if (rc < 0) {
		fprintf(stderr, "moat store: rekey failed: %s\n", moat_strerror(rc));
		return 1;
	}
	printf("%s: re-encrypted under %s (key generation %llu); only that key opens it now: "
	       "point persistence_key_file at it\n",
	       dir, newkeyfile, (unsigned long long)st.generation);
	return 0;
}

int moat_cmd_store(int argc, char **argv)
{
	char err[512];

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "keygen") == 0) {
		if (moat_seal_generate_key_file(argv[2], err, sizeof(err)) < 0) {
			fprintf(stderr, "moat store: %s\n", err);
			return 1;
		}
		printf("key written to %s (mode 0600): keep a copy apart from the store\n", argv[2]);
		return 0;
	}
	if ((argc == 3 || argc == 4) && strcmp(argv[1], "check") == 0)
		return check(argv[2], argc == 4 ? argv[3] : NULL);
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "rekey") == 0)
		return rekey(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
	usage(stderr);
	return 2;
}
