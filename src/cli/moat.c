/*
 * moat.c - the moat command-line tool's entry point.
 */
#include <stdio.h>
#include <string.h>

#define MOAT_VERSION "0.1.0"

int main(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
		printf("moat %s\n", MOAT_VERSION);
		return 0;
	}
	fprintf(stderr, "usage: moat --version\n");
	return 2;
}
