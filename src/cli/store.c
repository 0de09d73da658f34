/*
 * store.c - `moat store`: the durable store's offline tools.
 *
 *   moat store keygen FILE          a new key (64 hex digits, mode 0600; never overwrites)
 *   moat store check DIR [KEYFILE]  opens the store in DIR with the key (KEYFILE, or
 *                                   MOAT_STORE_KEY), counts what opens in each table
 *
 * Exit status: 0 done (check: everything opened), 1 something did not open
 * or the store was refused, 2 usage.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "store/seal.h"
#include "store/store.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: moat store keygen FILE\n"
		   "       moat store check DIR [KEYFILE]\n\n"
		   "keygen writes a new store key to FILE (mode 0600); it never overwrites.\n"
		   "check opens the store in DIR with the key in KEYFILE (or the environment\n"
		   "variable MOAT_STORE_KEY) and reports each table's rows; it changes nothing\n"
		   "but must not run while moatd uses the store.\n");
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
	usage(stderr);
	return 2;
}
