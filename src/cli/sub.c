/*
 * sub.c - `moat sub`: subscribe and print messages, with mosquitto_sub's
 * options and habits.
 *
 * Connects, subscribes to every -t in one SUBSCRIBE, unsubscribes from
 * every -U, then prints messages (see subfmt.h) until -C messages were
 * printed, --retained-only meets a fresh message, -W seconds pass, or
 * SIGINT/SIGTERM; then DISCONNECT. -E exits once the subscriptions are
 * acknowledged. Messages on a -T filter, and with -R retained ones, are
 * neither printed nor counted.
 *
 * Exit codes: 0 normally (including -C, -E, a signal); 1 for usage errors
 * (after the usage), a lost connection, or every subscription refused;
 * 27 when -W expires (mosquitto's MOSQ_ERR_TIMEOUT); the CONNACK code when
 * the server refused the connection, as mosquitto_sub 2.0 does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/subfmt.h"
#include "core/error.h"
#include "mqtt/topic.h"

#define DISCONNECT_WAIT_MS 1000
#define EXIT_TIMEOUT 27
#define FLUSH_WAIT_MS 1000

/* A repeatable option's values, borrowed from argv. */
struct strlist {
	const char **v;
	size_t n;
};

struct sub_conf {
	struct moat_cli_common cc; /* first: the shared setters use the same pointer */
	struct strlist topics;     /* -t */
	struct strlist filter_out; /* -T */
	struct strlist unsub;      /* -U */
	unsigned long count;       /* -C, 0 = no limit */
	unsigned long timeout;     /* -W seconds, 0 = none */
	bool verbose;
	bool no_eol;
	bool no_retain;
	bool retained_only;
	bool exit_after_sub;
	const char *format;
	unsigned long printed;
	struct moat_cli_print pr;
	int64_t deadline;          /* ms (CLOCK_MONOTONIC) of -W, or -1 */
};

/* ---- options ---- */

static int add_filter(void *conf, const struct moat_cli_opt *o, char **vals, int avail)
{
	struct strlist *l = (struct strlist *)((char *)conf + o->off);

	(void)avail;
	if (!moat_cli_utf8(vals[0])) {
		fprintf(stderr, "Error: Topic filter is not valid UTF-8.\n");
		return -1;
	}
	if (moat_mqtt_topic_filter_check((const uint8_t *)vals[0], strlen(vals[0])) < 0) {
		fprintf(stderr, "Error: Invalid filter topic '%s', are all '+' and '#' wildcards "
				"correct?\n", vals[0]);
		return -1;
	}
	l->v[l->n++] = vals[0];
	return 1;
}

static int set_count(void *conf, const struct moat_cli_opt *o, char **vals, int avail)
{
	(void)o;
	(void)avail;
	if (moat_cli_number(vals[0], 1, UINT32_MAX, &((struct sub_conf *)conf)->count) < 0) {
		fprintf(stderr, "Error: Invalid message count \"%s\".\n", vals[0]);
		return -1;
	}
	return 1;
}

static int set_timeout(void *conf, const struct moat_cli_opt *o, char **vals, int avail)
{
	(void)o;
	(void)avail;
	if (moat_cli_number(vals[0], 1, 3600 * 24 * 365, &((struct sub_conf *)conf)->timeout) < 0) {
		fprintf(stderr, "Error: Invalid timeout \"%s\".\n", vals[0]);
		return -1;
	}
	return 1;
}

#define S(f) offsetof(struct sub_conf, f)

static const struct moat_cli_opt sub_opts[] = {
	{'t', "topic", 1, "topic", add_filter, S(topics)},
	{'T', "filter-out", 1, "topic", add_filter, S(filter_out)},
	{'U', "unsubscribe", 1, "topic", add_filter, S(unsub)},
	{'C', "count", 1, "count", set_count, 0},
	{'W', "timeout", 1, "timeout", set_timeout, 0},
	{'v', "verbose", 0, NULL, moat_cli_set_flag, S(verbose)},
	{'N', "no-eol", 0, NULL, moat_cli_set_flag, S(no_eol)},
	{'R', "no-retain", 0, NULL, moat_cli_set_flag, S(no_retain)},
	{0, "retained-only", 0, NULL, moat_cli_set_flag, S(retained_only)},
	{'E', "exit-after-sub", 0, NULL, moat_cli_set_flag, S(exit_after_sub)},
	{'F', "format", 1, "format", moat_cli_set_str, S(format)},
	{0, NULL, 0, NULL, NULL, 0},
};

static void usage(FILE *f)
{
	fputs("moat sub subscribes to topics and prints the messages it receives; its options\n"
	      "are mosquitto_sub's.\n"
	      "\n"
	      "Usage: moat sub {[-h host] [-p port] [-u username] [-P password] -t topic ...}\n"
	      "                [-c] [-k keepalive] [-q qos] [-x session-expiry-interval]\n"
	      "                [-C msg_count] [-E] [-R] [--retained-only] [-T filter_out ...]\n"
	      "                [-U topic ...] [-F format] [-W timeout_secs]\n"
	      "                [-i id] [-I id_prefix] [-d] [-N] [--quiet] [-v]\n"
	      "                [-V protocol-version]\n"
	      "                [--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]\n"
	      "                [-D command property value]\n"
	      "                [-w] [{--cafile file | --capath dir} [--cert file] [--key file]\n"
	      "                  [--ciphers ciphers] [--insecure] [--tls-version version]]\n"
	      "                [--psk hex-key --psk-identity identity [--ciphers ciphers]]\n"
	      "       moat sub --help\n\n"
	      " -C : disconnect and exit after receiving the 'msg_count' messages.\n"
	      " -E : exit once all subscriptions have been acknowledged by the broker.\n"
	      " -F : output format: %t topic, %p payload, %q qos, %r retain, %l length,\n"
	      "      %m message id, %x/%X payload in hex, %I ISO 8601 time, %U Unix time,\n"
	      "      %j JSON, %% a percent sign; MQTT v5 properties: %A topic alias,\n"
	      "      %C content type, %D correlation data, %E message expiry, %F payload\n"
	      "      format, %P user properties, %R response topic, %S subscription id;\n"
	      "      printf-style '-', '0', width and .precision; @X strftime fields of the\n"
	      "      receive time (@N nanoseconds, @@ an @); escapes \\\\ \\0 \\a \\e \\n \\r \\t \\v.\n"
	      " -N : do not add an end of line character when printing the payload.\n"
	      " -R : do not print stale messages (those with retain set).\n"
	      " -t : mqtt topic to subscribe to. May be repeated multiple times.\n"
	      " -T : topic string to filter out of results. May be repeated.\n"
	      " -U : unsubscribe from a topic. May be repeated.\n"
	      " -v : print published messages verbosely (topic, then payload).\n"
	      " -W : Specifies a timeout in seconds how long to process incoming MQTT messages.\n"
	      " --retained-only : only handle messages with the retained flag set, and exit when\n"
	      "                   the first non-retained message is received.\n",
	      f);
	moat_cli_common_usage(f);
	fputs("\nExit status: 0 on success, 1 on error, 27 if -W expired, the CONNACK code if\n"
	      "the broker refused the connection.\n",
	      f);
}

/* ---- receiving ---- */

static bool filtered_out(const struct sub_conf *sc, struct moat_slice topic)
{
	size_t i;

	for (i = 0; i < sc->filter_out.n; i++) {
		const char *f = sc->filter_out.v[i];
		if (moat_mqtt_topic_match((const uint8_t *)f, strlen(f), topic.p, topic.len))
			return true;
	}
	return false;
}

static void on_message(void *ctx, struct moat_client *c, const struct moat_client_msg *m)
{
	struct sub_conf *sc = ctx;

	if (moat_client_stopped(c))
		return;
	if (sc->retained_only && !m->retain) {
		moat_client_stop(c);
		return;
	}
	if ((m->retain && sc->no_retain) || filtered_out(sc, m->topic))
		return;
	moat_cli_print_message(stdout, &sc->pr, m);
	if (sc->count && ++sc->printed >= sc->count)
		moat_client_stop(c);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before -W, or -1 without -W. */
static int remaining(const struct sub_conf *sc)
{
	int64_t left;

	if (sc->deadline < 0)
		return -1;
	left = sc->deadline - now_ms();
	return left < 0 ? 0 : (int)left;
}

static bool timed_out(const struct sub_conf *sc)
{
	return sc->deadline >= 0 && now_ms() >= sc->deadline;
}

/* In -d mode, "Subscribed (mid: 1): 0, 1" as mosquitto_sub prints it. */
static void debug_granted(const struct sub_conf *sc, uint16_t id, const uint8_t *r, size_t n)
{
	size_t i;

	if (!sc->cc.debug || sc->cc.quiet)
		return;
	printf("Subscribed (mid: %u): %u", id, r[0]);
	for (i = 1; i < n; i++)
		printf(", %u", r[i]);
	putchar('\n');
	fflush(stdout);
}

/* Reports refused filters. Returns 0, or -1 if every one was refused. */
static int check_granted(const struct sub_conf *sc, const uint8_t *r)
{
	size_t i, refused = 0;

	for (i = 0; i < sc->topics.n; i++) {
		if (r[i] < 0x80)
			continue;
		refused++;
		moat_cli_err(&sc->cc, "Warning: subscription to '%s' refused: %s\n",
			     sc->topics.v[i], moat_mqtt_reason_name(r[i], MOAT_MQTT_SUBACK));
	}
	if (refused < sc->topics.n)
		return 0;
	moat_cli_err(&sc->cc, "All subscription requests were denied.\n");
	return -1;
}

/* ---- the run ---- */

static struct moat_slice *slices(const struct strlist *l)
{
	struct moat_slice *s = calloc(l->n ? l->n : 1, sizeof(*s));
	size_t i;

	for (i = 0; s && i < l->n; i++)
		s[i] = (struct moat_slice){(const uint8_t *)l->v[i], strlen(l->v[i])};
	return s;
}

/* True if rc is a wait cut short by a signal or by -W: not an error to print. */
static bool quiet_failure(const struct sub_conf *sc, int rc)
{
	return rc == MOAT_EAGAIN && (moat_cli_signalled || timed_out(sc));
}

/* Sends the SUBSCRIBE and the UNSUBSCRIBE. Returns 0 or an error (printed unless timeout). */
static int subscribe(struct sub_conf *sc, struct moat_client *c)
{
	struct moat_slice *t = slices(&sc->topics), *u = slices(&sc->unsub);
	uint8_t *opts = calloc(sc->topics.n + sc->unsub.n + 1, 1);
	uint8_t *reasons = calloc(sc->topics.n + sc->unsub.n + 1, 1);
	size_t i;
	int rc = 0;

	if (!t || !u || !opts || !reasons) {
		moat_cli_err(&sc->cc, "Error: Out of memory.\n");
		rc = MOAT_ENOMEM;
		goto fail;
	}
	for (i = 0; i < sc->topics.n; i++)
		opts[i] = sc->cc.qos;
	if (rc == 0 && sc->topics.n) {
		rc = moat_client_subscribe(c, t, opts, sc->topics.n,
					   moat_cli_props_of(&sc->cc, MOAT_CLI_SUBSCRIBE), reasons,
					   remaining(sc));
		if (rc == 0)
			debug_granted(sc, moat_client_last_id(c), reasons, sc->topics.n);
		if (rc == 0 && check_granted(sc, reasons) < 0)
			rc = MOAT_EDENIED;
	}
	if (rc == 0 && sc->unsub.n)
		rc = moat_client_unsubscribe(c, u, sc->unsub.n,
					     moat_cli_props_of(&sc->cc, MOAT_CLI_UNSUBSCRIBE),
					     reasons, remaining(sc));
	if (rc < 0 && rc != MOAT_EDENIED && !quiet_failure(sc, rc))
		moat_cli_err(&sc->cc, "Error: %s\n", moat_client_error(c));
fail:
	free(t);
	free(u);
	free(opts);
	free(reasons);
	return rc;
}

/* Prints messages until a stop condition. Returns 0, EXIT_TIMEOUT or 1 (connection lost). */
static int receive(struct sub_conf *sc, struct moat_client *c)
{
	while (!moat_client_stopped(c) && !moat_cli_signalled && !timed_out(sc)) {
		int rc = moat_client_wait(c, -1, remaining(sc));

		if (rc < 0) {
			moat_cli_err(&sc->cc, "Error: %s\n", moat_client_error(c));
			return 1;
		}
	}
	return !moat_client_stopped(c) && !moat_cli_signalled && timed_out(sc) ? EXIT_TIMEOUT : 0;
}

/* Connects, subscribes, receives, disconnects. Returns the exit code. */
static int run(struct sub_conf *sc)
{
	struct moat_client *c = moat_client_new();
	int rc, code;

	if (!c) {
		moat_cli_err(&sc->cc, "Error: Out of memory.\n");
		return 1;
	}
	code = moat_cli_connect(&sc->cc, c, on_message, NULL, sc);
	if (code != 0)
		goto fail;
	rc = subscribe(sc, c);
	if (rc == 0 && !sc->exit_after_sub && sc->topics.n)
		code = receive(sc, c);
	else if (rc < 0)
		code = moat_cli_signalled ? 0 : timed_out(sc) ? EXIT_TIMEOUT : 1;
	if (code == 0) /* let QoS 2 messages already printed finish their handshake */
		moat_client_flush(c, FLUSH_WAIT_MS);
	moat_client_disconnect(c, 0, moat_cli_props_of(&sc->cc, MOAT_CLI_DISCONNECT),
			       DISCONNECT_WAIT_MS);
fail:
	if (code == 1 && timed_out(sc))
		code = EXIT_TIMEOUT; /* -W expired while connecting */
	if (code == EXIT_TIMEOUT)
		moat_cli_err(&sc->cc, "Timed out\n");
	moat_client_free(c);
	return code;
}

/* Checks what the options alone can tell. Returns 0 or -1 after printing. */
static int check(struct sub_conf *sc)
{
	if (sc->topics.n == 0 && sc->unsub.n == 0) {
		fprintf(stderr, "Error: You must specify a topic to subscribe to.\n");
		return -1;
	}
	if (sc->no_retain && sc->retained_only) {
		fprintf(stderr, "Error: Combining '-R' and '--retained-only' makes no sense.\n");
		return -1;
	}
	return moat_cli_common_finish(&sc->cc);
}

static int prepare(struct sub_conf *sc, int argc)
{
	size_t n = (size_t)argc + 1;

	moat_cli_common_init(&sc->cc, "sub");
	sc->topics.v = calloc(n, sizeof(char *));
	sc->filter_out.v = calloc(n, sizeof(char *));
	sc->unsub.v = calloc(n, sizeof(char *));
	return sc->topics.v && sc->filter_out.v && sc->unsub.v ? 0 : -1;
}

int moat_cmd_sub(int argc, char **argv)
{
	static const struct moat_cli_opt *const tables[] = {sub_opts, moat_cli_common_opts, NULL};
	struct sub_conf sc;
	int code = 1;

	memset(&sc, 0, sizeof(sc));
	if (prepare(&sc, argc) < 0) {
		fprintf(stderr, "Error: Out of memory.\n");
		goto fail;
	}
	if (moat_cli_parse(argc, argv, tables, &sc) < 0 || (!sc.cc.help && check(&sc) < 0)) {
		fputc('\n', stderr);
		usage(stderr);
		goto fail;
	}
	if (sc.cc.help) {
		usage(stdout);
		code = 0;
		goto fail;
	}
	sc.pr = (struct moat_cli_print){sc.format, sc.verbose, !sc.no_eol};
	sc.deadline = sc.timeout ? now_ms() + (int64_t)sc.timeout * 1000 : -1;
	if (sc.timeout && sc.timeout < 30)
		sc.cc.connect_timeout_ms = (int)sc.timeout * 1000;
	moat_cli_signals(&sc.cc);
	code = run(&sc);
fail:
	free(sc.topics.v);
	free(sc.filter_out.v);
	free(sc.unsub.v);
	moat_cli_common_free(&sc.cc);
	return code;
}
