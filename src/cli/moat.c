/*
 * moat.c - the moat command-line tool's entry point.
 *
 * `moat COMMAND [options]` runs one subcommand from the table below; each
 * row is the name, the handler (given argv from the command's name on) and
 * a one-line description for the usage. A new subcommand is a new row.
 * `moat` alone prints the usage and exits 2; `moat help` prints it and
 * exits 0.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define MOAT_VERSION "0.1.0"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct command commands[] = {
	{"pub", moat_cmd_pub, "publish a message (mosquitto_pub's options)"},
	{"sub", moat_cmd_sub, "subscribe and print messages (mosquitto_sub's options)"},
	{"passwd", moat_cmd_passwd, "manage a password file (mosquitto_passwd's options)"},
	{"audit", moat_cmd_audit, "audit log tools: verify its hash chain"},
	{"store", moat_cmd_store, "durable store tools: make a key, check a store"},
	{"ctl", moat_cmd_ctl, "control a running broker through its admin socket"},
	{"bench", moat_cmd_bench, "load generator: throughput, latency, loss (see docs/benchmarks.md)"},
	{"help", cmd_help, "print this help"},
	{"--version", cmd_version, "print the version (also -V)"},
	{"-V", cmd_version, NULL},
	{"--help", cmd_help, NULL},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "moat %s - the moat MQTT broker's tool\n\n", MOAT_VERSION);
	fprintf(f, "Usage: moat COMMAND [options]\n\nCommands:\n");
	for (i = 0; i < NCOMMANDS; i++)
		if (commands[i].help)
			fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'moat COMMAND --help' describes a command's options.\n");
}

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("moat %s\n", MOAT_VERSION);
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	usage(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	for (i = 0; i < NCOMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "moat: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
