/*
 * args.c - the option parser and the options `moat pub` and `moat sub`
 * share (see args.h). Error texts follow mosquitto_pub/sub's, so scripts
 * and people used to those read the same thing.
 */
#include "cli/args.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/utf8.h"
#include "mqtt/topic.h"
#include "mqtt/types.h"

#define FIELD(conf, opt, type) ((type *)((char *)(conf) + (opt)->off))
#define CONNECT_TIMEOUT_MS 30000

volatile sig_atomic_t moat_cli_signalled;

/* ---- the parser ---- */

int moat_cli_set_str(void *conf, const struct moat_cli_opt *opt, char **vals, int avail)
{
	(void)avail;
	*FIELD(conf, opt, const char *) = vals[0];
	return 1;
}

int moat_cli_set_flag(void *conf, const struct moat_cli_opt *opt, char **vals, int avail)
{
	(void)vals;
	(void)avail;
	*FIELD(conf, opt, bool) = true;
	return 0;
}

int moat_cli_number(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	unsigned long n;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	n = strtoul(s, &end, 10);
	if (*end || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

bool moat_cli_utf8(const char *s)
{
	return moat_utf8_check((const uint8_t *)s, strlen(s), 0) == MOAT_UTF8_OK;
}

static bool matches(const struct moat_cli_opt *o, const char *arg)
{
	if (arg[0] != '-')
		return false;
	if (arg[1] == '-')
		return o->long_name && strcmp(arg + 2, o->long_name) == 0;
	return o->short_name && arg[1] == o->short_name && arg[2] == '\0';
}

static const struct moat_cli_opt *find(const struct moat_cli_opt *const *tables, const char *arg)
{
	const struct moat_cli_opt *o;

	for (; *tables; tables++)
		for (o = *tables; o->set; o++)
			if (matches(o, arg))
				return o;
	return NULL;
}

int moat_cli_parse(int argc, char **argv, const struct moat_cli_opt *const *tables, void *conf)
{
	int i = 1;

	while (i < argc) {
		const struct moat_cli_opt *o = find(tables, argv[i]);
		int n;

		if (!o) {
			fprintf(stderr, "Error: Unknown option '%s'.\n", argv[i]);
			return -1;
		}
		if (argc - i - 1 < o->nargs) {
			fprintf(stderr, "Error: %s argument given but no %s specified.\n", argv[i],
				o->what);
			return -1;
		}
		n = o->set(conf, o, argv + i + 1, argc - i - 1);
		if (n < 0)
			return -1;
		i += 1 + n;
	}
	return 0;
}

/* ---- setters of the shared options ---- */

static int set_port(void *conf, const struct moat_cli_opt *opt, char **vals, int avail)
{
	unsigned long n;

	(void)avail;
	if (moat_cli_number(vals[0], 1, 65535, &n) < 0) {
		fprintf(stderr, "Error: Invalid port given: %s\n", vals[0]);
		return -1;
	}
	*FIELD(conf, opt, const char *) = vals[0];
	return 1;
}

static int set_qos(void *conf, const struct moat_cli_opt *opt, char **vals, int avail)
{
	unsigned long n;

	(void)avail;
	if (moat_cli_number(vals[0], 0, 2, &n) < 0) {
		fprintf(stderr, "Error: Invalid QoS given: %s\n", vals[0]);
		return -1;
	}
	*FIELD(conf, opt, uint8_t) = (uint8_t)n;
	return 1;
}

static int set_keepalive(void *conf, const struct moat_cli_opt *opt, char **vals, int avail)
{
	unsigned long n;

	(void)avail;
	if (moat_cli_number(vals[0], 0, 65535, &n) < 0) {
		fprintf(stderr, "Error: Invalid keepalive given, it must be between 0 and 65535 "
				"inclusive.\n");
		return -1;
	}
	*FIELD(conf, opt, uint16_t) = (uint16_t)n;
	return 1;
}

static int set_expiry(void *conf, const struct moat_cli_opt *opt, char **vals, int avail)
{
	struct moat_cli_common *cc = conf;
	unsigned long n;

	(void)opt;
	(void)avail;
	if (strcmp(vals[0], "-1") == 0 || strcmp(vals[0], "\u221e") == 0)
		n = UINT32_MAX;
	else if (moat_cli_number(vals[0], 0, UINT32_MAX, &n) < 0) {
		fprintf(stderr, "Error: Invalid session-expiry-interval given: %s\n", vals[0]);
		return -1;
	}
	cc->session_expiry = (uint32_t)n;
	cc->expiry_set = true;
	return 1;
}

static int set_version(void *conf, const struct moat_cli_opt *opt, char **vals, int avail)
{
	static const struct {
		const char *name;
		uint8_t version;
	} names[] = {
		{"mqttv31", MOAT_MQTT_V31}, {"31", MOAT_MQTT_V31}, {"mqttv311", MOAT_MQTT_V311},
		{"311", MOAT_MQTT_V311},    {"mqttv5", MOAT_MQTT_V5}, {"5", MOAT_MQTT_V5},
	};
	size_t i;

	(void)avail;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(vals[0], names[i].name) == 0) {
			*FIELD(conf, opt, uint8_t) = names[i].version;
			return 1;
		}
	}
	fprintf(stderr, "Error: Invalid protocol version argument given.\n");
	return -1;
}

static int set_property(void *conf, const struct moat_cli_opt *opt, char **vals, int avail)
{
	(void)opt;
	return moat_cli_props_add(&((struct moat_cli_common *)conf)->props, vals, avail);
}

#define C(f) offsetof(struct moat_cli_common, f)

const struct moat_cli_opt moat_cli_common_opts[] = {
	{'h', "host", 1, "host", moat_cli_set_str, C(host)},
	{'p', "port", 1, "port", set_port, C(port)},
	{'i', "id", 1, "id", moat_cli_set_str, C(id)},
	{'I', "id-prefix", 1, "id prefix", moat_cli_set_str, C(id_prefix)},
	{'u', "username", 1, "username", moat_cli_set_str, C(username)},
	{'P', "pw", 1, "password", moat_cli_set_str, C(password)},
	{'k', "keepalive", 1, "keepalive", set_keepalive, C(keep_alive)},
	{'c', "disable-clean-session", 0, NULL, moat_cli_set_flag, C(no_clean)},
	{'x', "session-expiry-interval", 1, "session expiry interval", set_expiry, 0},
	{'q', "qos", 1, "QoS", set_qos, C(qos)},
	{'V', "protocol-version", 1, "protocol version", set_version, C(version)},
	{'D', "property", 3, "property", set_property, 0},
	{'d', "debug", 0, NULL, moat_cli_set_flag, C(debug)},
	{0, "quiet", 0, NULL, moat_cli_set_flag, C(quiet)},
	{0, "help", 0, NULL, moat_cli_set_flag, C(help)},
	{0, "will-topic", 1, "will topic", moat_cli_set_str, C(will_topic)},
	{0, "will-payload", 1, "will payload", moat_cli_set_str, C(will_payload)},
	{0, "will-qos", 1, "will QoS", set_qos, C(will_qos)},
	{0, "will-retain", 0, NULL, moat_cli_set_flag, C(will_retain)},
	{'w', "ws", 0, NULL, moat_cli_set_flag, C(net.ws)},
	{0, "cafile", 1, "file", moat_cli_set_str, C(net.cafile)},
	{0, "capath", 1, "directory", moat_cli_set_str, C(net.capath)},
	{0, "cert", 1, "file", moat_cli_set_str, C(net.certfile)},
	{0, "key", 1, "file", moat_cli_set_str, C(net.keyfile)},
	{0, "ciphers", 1, "ciphers", moat_cli_set_str, C(net.ciphers)},
	{0, "tls-version", 1, "version", moat_cli_net_set_tls_version, C(net.tls_version)},
	{0, "insecure", 0, NULL, moat_cli_set_flag, C(net.insecure)},
	{0, "psk", 1, "key", moat_cli_set_str, C(net.psk)},
	{0, "psk-identity", 1, "identity", moat_cli_set_str, C(net.psk_identity)},
	{0, NULL, 0, NULL, NULL, 0},
};

void moat_cli_common_usage(FILE *f)
{
	fputs(" -c : disable clean session/enable persistent client mode (needs -i).\n"
	      " -d : enable debug messages: print each packet sent and received.\n"
	      " -D : define an MQTT v5 property: -D COMMAND PROPERTY VALUE, where COMMAND is\n"
	      "      connect, publish, subscribe, unsubscribe, disconnect or will, e.g.\n"
	      "      -D publish user-property key value, -D connect receive-maximum 10.\n"
	      " -h : mqtt host to connect to. Defaults to localhost. With TLS, it is also the\n"
	      "      SNI name and the name the server's certificate must carry.\n"
	      " -i : id to use for this client. Defaults to one the broker assigns (3.1.1, 5),\n"
	      "      or moat_TOOL_ appended with the process id (3.1).\n"
	      " -I : define the client id as id_prefix appended with the process id.\n"
	      " -k : keep alive in seconds for this client. Defaults to 60; 0 disables it.\n"
	      " -p : network port to connect to. Defaults to 1883 for plain MQTT, 8883 for MQTT\n"
	      "      over TLS, 8080 with -w, 8081 with -w over TLS.\n"
	      " -P : provide a password.\n"
	      " -q : quality of service level to use. Defaults to 0.\n"
	      " -u : provide a username.\n"
	      " -V : specify the version of the MQTT protocol to use when connecting.\n"
	      "      Can be mqttv5 (5), mqttv311 (311) or mqttv31 (31). Defaults to mqttv311.\n"
	      " -x : set the session-expiry-interval property on the CONNECT packet (MQTT v5).\n"
	      "      0-4294967294 seconds, or -1 / 4294967295 for a session that does not expire.\n"
	      "      Defaults to -1 if -c is also given, or 0 if -c not given.\n"
	      " --help : display this message.\n"
	      " --quiet : don't print error messages.\n"
	      " --will-payload : payload for the client Will. If not given and will-topic is\n"
	      "                  set, a zero length message will be sent.\n"
	      " --will-qos : QoS level for the client Will.\n"
	      " --will-retain : if given, make the client Will retained.\n"
	      " --will-topic : the topic on which to publish the client Will.\n",
	      f);
	moat_cli_net_usage(f);
}

/* ---- completing the shared options ---- */

void moat_cli_common_init(struct moat_cli_common *cc, const char *tool)
{
	memset(cc, 0, sizeof(*cc));
	cc->tool = tool;
	cc->host = "localhost";
	cc->version = MOAT_MQTT_V311;
	cc->keep_alive = 60;
}

/* Picks the client id: -i, else -I + pid, else empty (the broker assigns) except in 3.1. */
static int client_id(struct moat_cli_common *cc)
{
	if (cc->id && cc->id_prefix) {
		fprintf(stderr, "Error: -i and -I argument cannot be used together.\n");
		return -1;
	}
	if (cc->no_clean && !cc->id) {
		fprintf(stderr, "Error: You must provide a client id if you are using the -c option.\n");
		return -1;
	}
	if (cc->id_prefix) {
		snprintf(cc->idbuf, sizeof(cc->idbuf), "%.80s%ld", cc->id_prefix, (long)getpid());
		cc->id = cc->idbuf;
	} else if (!cc->id && cc->version == MOAT_MQTT_V31) {
		snprintf(cc->idbuf, sizeof(cc->idbuf), "moat_%s_%ld", cc->tool, (long)getpid());
		cc->id = cc->idbuf;
	}
	return 0;
}

static int will(const struct moat_cli_common *cc)
{
	if (!cc->will_topic) {
		if (cc->will_payload || cc->will_qos || cc->will_retain) {
			fprintf(stderr, "Error: Will payload, QoS or retain given, but no will topic "
					"given.\n");
			return -1;
		}
		return 0;
	}
	if (!moat_cli_utf8(cc->will_topic)) {
		fprintf(stderr, "Error: Will topic is not valid UTF-8.\n");
		return -1;
	}
	if (moat_mqtt_topic_name_check((const uint8_t *)cc->will_topic, strlen(cc->will_topic)) < 0) {
		fprintf(stderr, "Error: Invalid will topic '%s', does it contain '+' or '#'?\n",
			cc->will_topic);
		return -1;
	}
	return 0;
}

int moat_cli_common_finish(struct moat_cli_common *cc)
{
	struct moat_mqtt_props *conn = &cc->props.p[MOAT_CLI_CONNECT];

	if (client_id(cc) < 0 || will(cc) < 0 || moat_cli_net_finish(&cc->net, &cc->port) < 0)
		return -1;
	if (cc->username == NULL && cc->password != NULL && cc->version != MOAT_MQTT_V5) {
		fprintf(stderr, "Error: A password needs a username in MQTT v3.\n");
		return -1;
	}
	/* -x, else -D connect session-expiry-interval, else -c's "never expires" */
	if (cc->expiry_set || (cc->no_clean &&
			       !moat_mqtt_props_has(conn, MOAT_PROP_SESSION_EXPIRY_INTERVAL))) {
		conn->session_expiry = cc->expiry_set ? cc->session_expiry : UINT32_MAX;
		conn->present |= MOAT_PROP_BIT(MOAT_PROP_SESSION_EXPIRY_INTERVAL);
	}
	moat_cli_props_finish(&cc->props);
	return 0;
}

void moat_cli_common_free(struct moat_cli_common *cc)
{
	moat_cli_props_free(&cc->props);
	moat_cli_net_free(&cc->net);
}

const struct moat_mqtt_props *moat_cli_props_of(const struct moat_cli_common *cc,
						enum moat_cli_prop_cmd cmd)
{
	return cc->version == MOAT_MQTT_V5 ? &cc->props.p[cmd] : NULL;
}

/* ---- running ---- */

void moat_cli_err(const struct moat_cli_common *cc, const char *fmt, ...)
{
	va_list ap;

	if (cc->quiet)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static void on_signal(int sig)
{
	(void)sig;
	moat_cli_signalled = 1;
}

void moat_cli_signals(struct moat_cli_common *cc)
{
	struct sigaction sa;
	sigset_t block;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &cc->sigmask);
	sigdelset(&cc->sigmask, SIGINT);
	sigdelset(&cc->sigmask, SIGTERM);
}

static struct moat_slice str_slice(const char *s)
{
	return (struct moat_slice){(const uint8_t *)s, s ? strlen(s) : 0};
}

int moat_cli_connect(struct moat_cli_common *cc, struct moat_client *c, moat_client_msg_fn *on_msg,
		     moat_client_pub_fn *on_pub, void *ctx)
{
	struct moat_client_opts *o = &cc->copts;
	char err[300];
	int rc;

	memset(o, 0, sizeof(*o));
	o->host = cc->host;
	o->port = cc->port;
	o->stream = moat_cli_net_open(&cc->net, cc->host, cc->port, err, sizeof(err));
	if (!o->stream) {
		moat_cli_err(cc, "Error: %s\n", err);
		return 1;
	}
	o->version = cc->version;
	o->client_id = str_slice(cc->id);
	o->clean_start = !cc->no_clean;
	o->keep_alive = cc->keep_alive;
	o->username = cc->username;
	o->password = cc->password;
	o->will = cc->will_topic != NULL;
	o->will_topic = str_slice(cc->will_topic);
	o->will_payload = str_slice(cc->will_payload);
	o->will_qos = cc->will_qos;
	o->will_retain = cc->will_retain;
	o->props = moat_cli_props_of(cc, MOAT_CLI_CONNECT);
	o->will_props = moat_cli_props_of(cc, MOAT_CLI_WILL);
	o->timeout_ms = cc->connect_timeout_ms ? cc->connect_timeout_ms : CONNECT_TIMEOUT_MS;
	o->debug = cc->debug;
	o->sigmask = &cc->sigmask;
	o->on_message = on_msg;
	o->on_published = on_pub;
	o->ctx = ctx;
	rc = moat_client_connect(c, o);
	if (rc == 0)
		return 0;
	if (rc == MOAT_EDENIED) {
		moat_cli_err(cc, "Connection error: %s\n", moat_client_error(c));
		return moat_client_connack_rc(c);
	}
	moat_cli_err(cc, "Error: %s\n", moat_client_error(c));
	return 1;
}
