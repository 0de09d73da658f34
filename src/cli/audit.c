/*
 * audit.c - `moat audit`: tools for the audit log (src/security/audit.h).
 *
 *   moat audit verify [--no-follow] FILE   FILE, after its rotated files
 *   moat audit verify FILE1 FILE2 ...      exactly these files, oldest first
 *
 * Sub-subcommands are rows of a table, like moat.c's commands; `verify` is
 * the first (the NIST CSF report is meant to be another).
 *
 * verify checks every line's hash, "prev" and "seq" (moat_audit_verify). Given
 * one FILE it also follows the rotated files: up to the highest FILE.k that
 * exists, it checks FILE.k, ..., FILE.1, FILE, oldest first, and that each
 * file's first line continues the previous file's last hash, so a changed,
 * emptied, swapped or missing rotated file is caught too. The oldest file's
 * first line must begin the log or follow a rotation (the file before it
 * was deleted by rotation, which is not tampering). --no-follow checks FILE
 * alone. Given several files, they are checked in the order given, with the
 * same links between them.
 *
 * What no check of the files alone can see: the newest lines cut off at a
 * line boundary, or the oldest files deleted. The last hash printed is what
 * to keep elsewhere and compare later.
 *
 * Output: "ok: N lines, chain intact" (with " (K files)" for a series) and
 * "last hash: HEX" on standard output, exit 0; or "broken: FILE:LINE: why"
 * (the first bad line) on standard output, exit 1; a file that cannot be
 * read is reported on standard error, exit 1. Usage errors exit 2.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/error.h"
#include "security/audit.h"

#define MAX_ROTATED 99 /* audit.h: keep is 1..99 */

struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

static int cmd_verify(int argc, char **argv);

static const struct subcommand subcommands[] = {
	{"verify", cmd_verify, "check the hash chain of an audit log and its rotated files"},
};

#define NSUB (sizeof(subcommands) / sizeof(subcommands[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "Usage: moat audit COMMAND [options]\n\nCommands:\n");
	for (i = 0; i < NSUB; i++)
		fprintf(f, "  %-8s %s\n", subcommands[i].name, subcommands[i].help);
	fprintf(f, "\n'moat audit COMMAND --help' describes a command.\n");
}

static void verify_usage(FILE *f)
{
	fprintf(f,
		"Usage: moat audit verify [--no-follow] FILE\n"
		"       moat audit verify FILE1 FILE2 ...\n\n"
		"Checks the hash chain of an audit log: every line's hash, its link to the line\n"
		"before, and that \"seq\" counts up by one. Given one FILE, its rotated files\n"
		"FILE.N ... FILE.1 are checked first, oldest first, with the links between the\n"
		"files (a missing one in the series is an error); --no-follow checks FILE\n"
		"alone. Given several files, they are checked in that order (oldest first),\n"
		"linked the same way.\n\n"
		"Prints \"ok: N lines, chain intact\" and the last hash, and exits 0; or the\n"
		"first bad line (\"broken: FILE:LINE: why\") and exits 1. Keep the last hash\n"
		"elsewhere: lines cut off the end, or the oldest files deleted, leave an intact\n"
		"chain.\n");
}

/*
 * The highest k with FILE.k existing (0 if none). Every number below it is
 * then checked: a missing one in between is reported, not skipped.
 */
static int count_rotated(const char *file)
{
	size_t cap = strlen(file) + 8;
	char *name = malloc(cap);
	struct stat st;
	int k = 0, i;

	if (!name)
		return 0;
	for (i = 1; i <= MAX_ROTATED; i++) {
		snprintf(name, cap, "%s.%d", file, i);
		if (stat(name, &st) == 0)
			k = i;
	}
	free(name);
	return k;
}

/*
 * Verifies file; unless it is the first, it must continue prev (the last
 * hash so far), which then receives its own last hash. Returns 0 or 1.
 */
static int verify_one(const char *file, bool first, char *prev, uint64_t *total)
{
	char err[512];
	uint64_t n = 0;
	int rc = moat_audit_verify(file, first ? NULL : prev, &n, prev, err, sizeof(err));

	if (rc == MOAT_EPROTOCOL) {
		printf("broken: %s\n", err);
		return 1;
	}
	if (rc != 0) {
		fprintf(stderr, "moat audit verify: %s\n", err);
		return 1;
	}
	*total += n;
	return 0;
}

/* Verifies FILE.k .. FILE.1, then FILE; prev receives the last hash. */
static int verify_series(const char *file, int k, char *prev, uint64_t *total)
{
	size_t cap = strlen(file) + 8;
	char *name = malloc(cap);
	int i, rc = 0;

	if (!name) {
		fprintf(stderr, "moat audit verify: out of memory\n");
		return 1;
	}
	for (i = k; i >= 1 && rc == 0; i--) {
		snprintf(name, cap, "%s.%d", file, i);
		rc = verify_one(name, i == k, prev, total);
	}
	if (rc == 0)
		rc = verify_one(file, k == 0, prev, total);
	free(name);
	return rc;
}

static int cmd_verify(int argc, char **argv)
{
	bool follow = true;
	uint64_t total = 0;
	char prev[65];
	int i = 1, rc = 0, nfiles;

	for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		if (strcmp(argv[i], "--no-follow") == 0) {
			follow = false;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			verify_usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else {
			fprintf(stderr, "moat audit verify: unknown option '%s'\n\n", argv[i]);
			verify_usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		verify_usage(stderr);
		return 2;
	}
	nfiles = argc - i;
	if (nfiles == 1) {
		int k = follow ? count_rotated(argv[i]) : 0;

		rc = verify_series(argv[i], k, prev, &total);
		nfiles = k + 1;
	} else {
		for (; i < argc && rc == 0; i++)
			rc = verify_one(argv[i], i == argc - nfiles, prev, &total);
	}
	if (rc != 0)
		return rc;
	if (nfiles > 1)
		printf("ok: %" PRIu64 " lines, chain intact (%d files)\n", total, nfiles);
	else
		printf("ok: %" PRIu64 " lines, chain intact\n", total);
	if (total)
		printf("last hash: %s\n", prev);
	return 0;
}

int moat_cmd_audit(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (i = 0; i < NSUB; i++)
		if (strcmp(argv[1], subcommands[i].name) == 0)
			return subcommands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "moat audit: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
