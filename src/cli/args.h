/*
 * args.h - what `moat pub` and `moat sub` share: a table-driven option
 * parser, the options both take (connection, identity, will, -D
 * properties, -d, --quiet), and connecting with them.
 *
 * The options that choose the stream under MQTT (TLS, PSK, WebSockets) are
 * rows of the shared table too; netargs.h describes them.
 *
 * An option is one row of a table: its spellings (-x, --long), how many
 * values follow it, and a setter. Tools list their own rows and end the
 * list with MOAT_CLI_COMMON_OPTS, the shared rows. A tool's configuration
 * struct begins with a struct moat_cli_common, so the shared setters and the
 * tool's own work on the same pointer.
 *
 * Values are borrowed from argv, which lives as long as the program.
 */
#ifndef MOAT_CLI_ARGS_H
#define MOAT_CLI_ARGS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/client.h"
#include "cli/netargs.h"
#include "cli/propargs.h"
#include "mqtt/props.h"


struct moat_cli_common {
	const char *tool; /* "pub" or "sub" */
	const char *host;
	const char *port; /* NULL until moat_cli_common_finish picks the default */
	uint8_t version;
	const char *id;
	const char *id_prefix;
	const char *username;
	const char *password;
	uint16_t keep_alive;
	bool no_clean;    /* -c */
	bool expiry_set;  /* -x given */
	uint32_t session_expiry;
	uint8_t qos;
	bool debug;
	bool quiet;
	bool help;
	int connect_timeout_ms; /* 0 = the default, 30 s */
	const char *will_topic;
	const char *will_payload;
	uint8_t will_qos;
	bool will_retain;
	struct moat_cli_props props;
	struct moat_cli_net net; /* TLS, PSK, WebSockets */
	char idbuf[96];
	struct moat_client_opts copts; /* filled by moat_cli_connect */
	sigset_t sigmask;              /* the mask to wait with (signals let in) */
};

struct moat_cli_opt {
	char short_name;       /* 'h' for -h, or 0 */
	const char *long_name; /* "host" for --host, or NULL */
	uint8_t nargs;         /* values that must follow */
	const char *what;      /* the value, for "no <what> specified" */
	/* Returns the number of values it consumed (>= nargs), or -1 after printing why. */
	int (*set)(void *conf, const struct moat_cli_opt *opt, char **vals, int avail);
	size_t off;            /* the field moat_cli_set_str / _set_flag write, from conf */
};

/* Stores vals[0] in the const char * at conf + opt->off. */
int moat_cli_set_str(void *conf, const struct moat_cli_opt *opt, char **vals, int avail);
/* Sets the bool at conf + opt->off. */
int moat_cli_set_flag(void *conf, const struct moat_cli_opt *opt, char **vals, int avail);

/* The rows every tool shares; a table is a list of rows ended by a row with no set. */
extern const struct moat_cli_opt moat_cli_common_opts[];

/*
 * Parses argv[1..argc) (argv[0] is the subcommand) against the tables, a
 * NULL-terminated list. Returns 0, or -1 after printing the error.
 */
int moat_cli_parse(int argc, char **argv, const struct moat_cli_opt *const *tables, void *conf);

/* Sets the defaults of the shared options. */
void moat_cli_common_init(struct moat_cli_common *cc, const char *tool);

/*
 * Checks the shared options once parsed and completes them: client id,
 * session expiry, will, User Property blocks, TLS and WebSocket options and
 * the port they imply. Returns 0, or -1 after printing the error.
 */
int moat_cli_common_finish(struct moat_cli_common *cc);

/* Frees what parsing allocated. */
void moat_cli_common_free(struct moat_cli_common *cc);

/* The -D properties of command cmd, or NULL before 5.0 (properties are ignored there). */
const struct moat_mqtt_props *moat_cli_props_of(const struct moat_cli_common *cc,
						enum moat_cli_prop_cmd cmd);

/*
 * Blocks SIGINT and SIGTERM, which from now on only set moat_cli_signalled
 * and are let in while the client waits (ppoll with cc->sigmask). Ignores
 * SIGPIPE: a write to a server that has gone fails with EPIPE instead.
 */
void moat_cli_signals(struct moat_cli_common *cc);
extern volatile sig_atomic_t moat_cli_signalled;

/*
 * Connects c with the shared options and the given callbacks, over the
 * stream the TLS and WebSocket options chose. Returns 0, or the exit code
 * after printing the error: the CONNACK's code when the server refused (as
 * mosquitto_pub/sub 2.0 do), else 1 (a TLS failure among them).
 */
int moat_cli_connect(struct moat_cli_common *cc, struct moat_client *c, moat_client_msg_fn *on_msg,
		     moat_client_pub_fn *on_pub, void *ctx);

/* Prints "Error: ..." on stderr unless --quiet. */
__attribute__((format(printf, 2, 3))) void moat_cli_err(const struct moat_cli_common *cc,
							const char *fmt, ...);

/* True if s is valid UTF-8 for an MQTT string: well-formed, no U+0000. */
bool moat_cli_utf8(const char *s);

/* Parses an unsigned decimal in [lo, hi]. Returns 0 and *out, or -1. */
int moat_cli_number(const char *s, unsigned long lo, unsigned long hi, unsigned long *out);

/* The usage lines of the shared options, for the tools' --help. */
void moat_cli_common_usage(FILE *f);

#endif
