/*
 * netargs.h - the options of `moat pub` and `moat sub` that choose the
 * stream MQTT travels in: TLS (--cafile, --capath, --cert, --key,
 * --insecure, --tls-version, --ciphers), TLS-PSK (--psk, --psk-identity)
 * and WebSockets (-w), with mosquitto_pub/sub's meanings.
 *
 * TLS is on when any of --cafile, --capath, --cert or --psk is given;
 * without --cafile/--capath the system's trust anchors are used. The -h
 * host is the SNI name and the name the server's certificate must carry:
 * --insecure skips that name check, never the chain's. -w speaks MQTT over
 * a WebSocket (path /mqtt, subprotocol mqtt), over TLS when TLS is on.
 *
 * Default ports when -p is not given: 1883; 8883 with TLS, as mosquitto's
 * clients; 8080 with -w and 8081 with -w and TLS (mosquitto's clients have
 * no WebSocket convention; these are the ones test.mosquitto.org uses).
 *
 * The struct lives inside struct moat_cli_common (args.h), whose option
 * table holds the rows; values are borrowed from argv.
 */
#ifndef MOAT_CLI_NETARGS_H
#define MOAT_CLI_NETARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/client.h"

struct moat_cli_opt;
struct moat_tls_client;

struct moat_cli_net {
	const char *cafile, *capath;
	const char *certfile, *keyfile;
	const char *ciphers;
	const char *psk, *psk_identity;
	uint8_t tls_version; /* --tls-version: 12 or 13 (that version only), 0 = either */
	bool insecure;
	bool ws;
	/* set by moat_cli_net_open */
	struct moat_tls_client *tls; /* owned; NULL without TLS */
	char ws_host[320];           /* the Host: of the WebSocket upgrade */
	struct moat_client_stream stream;
};

/* The setter of --tls-version: tlsv1.2 or tlsv1.3 into the uint8_t at conf + opt->off. */
int moat_cli_net_set_tls_version(void *conf, const struct moat_cli_opt *opt, char **vals,
				 int avail);

/* True when the options turn TLS on. */
bool moat_cli_net_tls(const struct moat_cli_net *n);

/*
 * Checks the combination of options and, when -p was not given (*port
 * NULL), sets *port to the default port of the stream chosen. Returns 0, or
 * -1 after printing the error.
 */
int moat_cli_net_finish(const struct moat_cli_net *n, const char **port);

/*
 * Loads what TLS needs (certificates, key, trust anchors) for a connection
 * to host:port (borrowed: they must outlive n). Returns the stream to put in
 * moat_client_opts (borrowed from n), or NULL with err[0..len) filled.
 */
const struct moat_client_stream *moat_cli_net_open(struct moat_cli_net *n, const char *host,
						   const char *port, char *err, size_t len);

/* Frees what moat_cli_net_open loaded; after the client using the stream is freed. */
void moat_cli_net_free(struct moat_cli_net *n);

/* The usage lines of these options. */
void moat_cli_net_usage(FILE *f);

#endif
