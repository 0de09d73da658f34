/*
 * cli.h - the subcommands of the `moat` tool.
 *
 * Each takes its argv from the subcommand's name on (argv[0] is "pub") and
 * returns the process exit code. moat.c lists them in its command table.
 */
#ifndef MOAT_CLI_CLI_H
#define MOAT_CLI_CLI_H

int moat_cmd_pub(int argc, char **argv);
int moat_cmd_sub(int argc, char **argv);
int moat_cmd_passwd(int argc, char **argv);
int moat_cmd_audit(int argc, char **argv);
int moat_cmd_store(int argc, char **argv);
int moat_cmd_ctl(int argc, char **argv);
int moat_cmd_bench(int argc, char **argv);

#endif
