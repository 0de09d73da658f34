/*
 * moatd.c - the broker daemon's entry point.
 *
 * The broker itself arrives with the broker-core work; until then moatd
 * knows its version and says plainly that it cannot serve yet.
 */
#include <stdio.h>
#include <string.h>

#define MOAT_VERSION "0.1.0"

int main(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
		printf("moatd %s\n", MOAT_VERSION);
		return 0;
	}
	fprintf(stderr, "moatd %s: the broker is not built yet\n", MOAT_VERSION);
	return 1;
}
