/*
 * netargs.c - TLS, TLS-PSK and WebSocket options of the moat tool, and the
 * stream they build under the client (see netargs.h).
 *
 * The stream is built in steps: moat_cli_net_open loads the TLS context
 * once (reading the files, so that a bad one is reported before any
 * connection), then the client calls wrap() with its connected socket and,
 * once that transport's handshake is done, upgrade():
 *
 *   fd ─wrap─> tcp or tls (net/tls.h) ─handshake─upgrade─> ws (net/ws.h) with -w
 *
 * The WebSocket starts after TLS has finished because tls.c asks to write
 * for as long as it holds a record, even while the handshake waits to read:
 * an upgrade request written into an unfinished TLS handshake would make
 * the client spin on poll until the server's answer.
 *
 * The failures the client meets later are described by explain(): the text
 * of tls.c's last error without OpenSSL's error codes, or the HTTP status of
 * a refused WebSocket upgrade. No OpenSSL header is included here.
 */
#include "cli/netargs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "core/error.h"
#include "net/tls.h"
#include "net/ws.h"

#define FIELD(conf, opt, type) ((type *)((char *)(conf) + (opt)->off))
#define WS_PATH "/mqtt"
#define MAX_PSK_HEX 128 /* 64 bytes, tls.c's bound */

/* ---- options ---- */

int moat_cli_net_set_tls_version(void *conf, const struct moat_cli_opt *opt, char **vals,
				 int avail)
{
	(void)avail;
	if (strcmp(vals[0], "tlsv1.2") == 0)
		*FIELD(conf, opt, uint8_t) = 12;
	else if (strcmp(vals[0], "tlsv1.3") == 0)
		*FIELD(conf, opt, uint8_t) = 13;
	else {
		fprintf(stderr, "Error: Invalid --tls-version '%s': use tlsv1.2 or tlsv1.3.\n",
			vals[0]);
		return -1;
	}
	return 1;
}

bool moat_cli_net_tls(const struct moat_cli_net *n)
{
	return n->cafile || n->capath || n->certfile || n->psk;
}

static bool hex_key(const char *s)
{
	size_t len = strlen(s);

	return len && len % 2 == 0 && len <= MAX_PSK_HEX &&
	       strspn(s, "0123456789abcdefABCDEF") == len;
}

/* The checks mosquitto_pub/sub make, in their words where they have some. */
static int check(const struct moat_cli_net *n)
{
	const char *why = NULL;

	if (!n->certfile != !n->keyfile)
		why = "Both certfile and keyfile must be provided if one of them is set.";
	else if (n->psk && (n->cafile || n->capath))
		why = "Only one of --psk or --cafile/--capath may be used at once.";
	else if (n->psk && n->certfile)
		why = "Only one of --psk or --cert/--key may be used at once.";
	else if (n->psk && !n->psk_identity)
		why = "--psk-identity required if --psk used.";
	else if (n->psk && !hex_key(n->psk))
		why = "--psk must be a key in hexadecimal (no leading 0x), 1 to 64 bytes.";
	if (!why)
		return 0;
	fprintf(stderr, "Error: %s\n", why);
	return -1;
}

int moat_cli_net_finish(const struct moat_cli_net *n, const char **port)
{
	bool tls = moat_cli_net_tls(n);

	if (check(n) < 0)
		return -1;
	if (!*port)
		*port = n->ws ? (tls ? "8081" : "8080") : (tls ? "8883" : "1883");
	return 0;
}

void moat_cli_net_usage(FILE *f)
{
	fputs(" -w : (or --ws) connect with MQTT over WebSockets (path /mqtt, subprotocol mqtt),\n"
	      "      over TLS when TLS is on.\n"
	      " --cafile : path to a file containing trusted CA certificates to enable encrypted\n"
	      "            communication.\n"
	      " --capath : path to a directory containing trusted CA certificates to enable\n"
	      "            encrypted communication.\n"
	      " --cert : client certificate for authentication, if required by server; enables\n"
	      "          encrypted communication (with the system's CA certificates if no\n"
	      "          --cafile or --capath).\n"
	      " --key : client private key for authentication, if required by server.\n"
	      " --ciphers : openssl compatible list of TLS 1.2 ciphers to support.\n"
	      " --tls-version : TLS protocol version, can be one of tlsv1.3 or tlsv1.2.\n"
	      "                 Defaults to either, the newest the server supports.\n"
	      " --insecure : do not check that the server certificate hostname matches the remote\n"
	      "              hostname (-h). Using this option means that you cannot be sure that\n"
	      "              the remote host is the server you wish to connect to and so is\n"
	      "              insecure. Do not use this option in a production environment.\n"
	      " --psk : pre-shared-key in hexadecimal (no leading 0x) to enable TLS-PSK mode.\n"
	      " --psk-identity : client identity string for TLS-PSK mode.\n",
	      f);
}

/* ---- the stream ---- */

/*
 * Copies tls.c's error text s into out[0..len), dropping OpenSSL's codes
 * ("error:0A000086:SSL routines::") and the operation ("TLS read: "), and
 * naming a refused certificate as OpenSSL's clients do.
 */
static void tidy(const char *s, char *out, size_t len)
{
	const char *start, *op = strstr(s, ": ");
	size_t n = 0;

	if (strncmp(s, "TLS ", 4) == 0)
		s = op ? op + 2 : "";
	if (strncmp(s, "certificate: ", 13) == 0) {
		n = (size_t)snprintf(out, len, "certificate verify failed: ");
		s += 13;
	}
	for (start = s; *s && n + 1 < len;) {
		if ((s == start || s[-1] == ' ') && strncmp(s, "error:", 6) == 0) {
			int colons = 0;
			while (*s && colons < 4)
				colons += *s++ == ':';
			continue;
		}
		out[n++] = *s++;
	}
	out[n < len ? n : len - 1] = '\0';
}

/* The words for a WebSocket failure with rc, or NULL. */
static const char *ws_failure(const struct moat_transport *t, int rc)
{
	if (t->ops->ready(t))
		return rc == MOAT_EPROTOCOL ? "the server broke the WebSocket protocol" : NULL;
	if (rc == 0)
		return "the server closed the connection instead of answering the upgrade";
	if (rc == MOAT_EPROTOCOL)
		return "the server's answer to the upgrade is not a WebSocket one";
	return NULL;
}

/*
 * A TLS 1.3 server refuses a client certificate (or its absence) after the
 * client has finished the handshake; when the client writes its CONNECT
 * before the alert arrives, the write meets the closed connection and the
 * alert is lost. Says so, rather than only "connection reset".
 */
static void closed_after_handshake(const struct moat_cli_net *n, char *why, size_t len)
{
	snprintf(why, len, "TLS: the server closed the connection after the handshake (%s)",
		 n->certfile ? "did it refuse the client certificate?"
			     : "does it require a client certificate? see --cert and --key");
}

/* Describes a failure of the stream for the client (see struct moat_client_stream). */
static void explain(void *ctx, const struct moat_transport *t, int rc, bool connected, char *why,
		    size_t len)
{
	const struct moat_cli_net *n = ctx;
	const char *tls = moat_tls_last_error(), *ws = NULL;
	int status = moat_ws_http_status(t);
	char text[256];

	text[0] = '\0';
	if (n->tls && tls[0])
		tidy(tls, text, sizeof(text));
	if (text[0])
		snprintf(why, len, "TLS: %s", text);
	else if (status && status != 101)
		snprintf(why, len, "WebSocket: the server refused the upgrade with HTTP status %d",
			 status);
	else if (strcmp(t->ops->name, "ws") == 0 && (ws = ws_failure(t, rc)))
		snprintf(why, len, "WebSocket: %s", ws);
	else if (n->tls && !n->psk && !connected && t->ops->ready(t) && (rc == 0 || rc == MOAT_EIO))
		closed_after_handshake(n, why, len);
}

/* Wraps fd (taken) in tcp or TLS. Returns owned, or NULL. */
static struct moat_transport *wrap(void *ctx, int fd, char *why, size_t len)
{
	struct moat_cli_net *n = ctx;
	struct moat_transport *t = n->tls ? moat_tls_connect(n->tls, fd) : moat_tcp_new(fd);

	if (!t) {
		snprintf(why, len, "out of memory");
		close(fd);
	}
	return t;
}

/* With -w, wraps t (taken, its TLS handshake done) in a WebSocket. Returns owned, or NULL. */
static struct moat_transport *upgrade(void *ctx, struct moat_transport *t, char *why, size_t len)
{
	struct moat_cli_net *n = ctx;
	struct moat_transport *w;

	if (!n->ws)
		return t;
	w = moat_ws_client_new(t, n->ws_host, WS_PATH);
	if (!w) {
		snprintf(why, len, "cannot start a WebSocket to %s", n->ws_host);
		moat_transport_free(t);
	}
	return w;
}

/* Checks a file option can be read, for a clearer error than OpenSSL's. */
static int readable(const char *opt, const char *path, char *err, size_t len)
{
	if (!path || access(path, R_OK) == 0)
		return 0;
	snprintf(err, len, "%s '%s': %s", opt, path, strerror(errno));
	return -1;
}

static int load_tls(struct moat_cli_net *n, const char *host, char *err, size_t len)
{
	struct moat_tls_client_opts o = {
		.cafile = n->cafile,
		.capath = n->capath,
		.certfile = n->certfile,
		.keyfile = n->keyfile,
		.ciphers = n->ciphers,
		.psk_hex = n->psk,
		.psk_identity = n->psk_identity,
		.servername = host,
		.insecure = n->insecure,
		.min_version = n->tls_version,
		.max_version = n->tls_version,
	};
	char why[256] = "", text[256];
	int rc;

	if (readable("--cafile", n->cafile, err, len) < 0 ||
	    readable("--capath", n->capath, err, len) < 0 ||
	    readable("--cert", n->certfile, err, len) < 0 ||
	    readable("--key", n->keyfile, err, len) < 0)
		return -1;
	rc = moat_tls_client_new(&o, &n->tls, why, sizeof(why));
	if (rc == 0)
		return 0;
	tidy(why[0] ? why : moat_strerror(rc), text, sizeof(text));
	snprintf(err, len, "TLS: %s", text);
	return -1;
}

const struct moat_client_stream *moat_cli_net_open(struct moat_cli_net *n, const char *host,
						   const char *port, char *err, size_t len)
{
	if (n->ws)
		snprintf(n->ws_host, sizeof(n->ws_host), strchr(host, ':') ? "[%s]:%s" : "%s:%s",
			 host, port);
	if (moat_cli_net_tls(n) && !n->tls && load_tls(n, host, err, len) < 0)
		return NULL;
	n->stream = (struct moat_client_stream){wrap, upgrade, explain, n};
	return &n->stream;
}

void moat_cli_net_free(struct moat_cli_net *n)
{
	moat_tls_client_free(n->tls);
	n->tls = NULL;
}
