/*
 * pub.c - `moat pub`: publish messages, with mosquitto_pub's options and
 * habits.
 *
 * The message comes from exactly one of -m (argument), -f (a file), -s
 * (all of stdin), -n (empty) or -l (one message per stdin line, published
 * as lines arrive while the connection is kept alive). -m, -f, -s and -n
 * are published --repeat times, --repeat-delay seconds apart. The program
 * ends after every QoS 1/2 publish is acknowledged, with DISCONNECT.
 *
 * Exit codes: 0 when everything was published; 1 for usage errors (after
 * the usage), connection failures and publishes the server refused (5.0
 * reason >= 0x80; mosquitto_pub only warns); the CONNACK code when the
 * server refused the connection, as mosquitto_pub 2.0 does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "core/error.h"
#include "mqtt/topic.h"

#define DISCONNECT_WAIT_MS 1000

enum source { SRC_NONE, SRC_MESSAGE, SRC_FILE, SRC_LINES, SRC_NULL, SRC_STDIN };

struct pub_conf {
	struct moat_cli_common cc; /* first: the shared setters use the same pointer */
	const char *topic;
	const char *arg;           /* -m message or -f file name */
	int source;                /* enum source */
	bool retain;
	unsigned long repeat;
	double repeat_delay;
	uint8_t *data;             /* -f / -s contents, owned */
	size_t data_len;
};

/* ---- options ---- */

static int set_source(struct pub_conf *pc, int source, const char *arg)
{
	if (pc->source != SRC_NONE) {
		fprintf(stderr, "Error: Only one type of message can be sent at once.\n");
		return -1;
	}
	pc->source = source;
	pc->arg = arg;
	return arg ? 1 : 0;
}

static int set_message(void *conf, const struct moat_cli_opt *o, char **vals, int avail)
{
	(void)o;
	(void)avail;
	return set_source(conf, SRC_MESSAGE, vals[0]);
}

static int set_file(void *conf, const struct moat_cli_opt *o, char **vals, int avail)
{
	(void)o;
	(void)avail;
	return set_source(conf, SRC_FILE, vals[0]);
}

/* -l, -n, -s: o->off carries the source. */
static int set_stdin_source(void *conf, const struct moat_cli_opt *o, char **vals, int avail)
{
	(void)vals;
	(void)avail;
	return set_source(conf, (int)o->off, NULL);
}

static int set_repeat(void *conf, const struct moat_cli_opt *o, char **vals, int avail)
{
	(void)o;
	(void)avail;
	if (moat_cli_number(vals[0], 1, UINT32_MAX, &((struct pub_conf *)conf)->repeat) < 0) {
		fprintf(stderr, "Error: --repeat argument must be a positive integer.\n");
		return -1;
	}
	return 1;
}

static int set_repeat_delay(void *conf, const struct moat_cli_opt *o, char **vals, int avail)
{
	char *end;
	double d;

	(void)o;
	(void)avail;
	errno = 0;
	d = strtod(vals[0], &end);
	if (end == vals[0] || *end || errno || !(d >= 0 && d <= 86400)) {
		fprintf(stderr, "Error: --repeat-delay argument must be a number of seconds.\n");
		return -1;
	}
	((struct pub_conf *)conf)->repeat_delay = d;
	return 1;
}

#define P(f) offsetof(struct pub_conf, f)

static const struct moat_cli_opt pub_opts[] = {
	{'t', "topic", 1, "topic", moat_cli_set_str, P(topic)},
	{'m', "message", 1, "message", set_message, 0},
	{'f', "file", 1, "file", set_file, 0},
	{'l', "stdin-line", 0, NULL, set_stdin_source, SRC_LINES},
	{'n', "null-message", 0, NULL, set_stdin_source, SRC_NULL},
	{'s', "stdin-file", 0, NULL, set_stdin_source, SRC_STDIN},
	{'r', "retain", 0, NULL, moat_cli_set_flag, P(retain)},
	{0, "repeat", 1, "count", set_repeat, 0},
	{0, "repeat-delay", 1, "time", set_repeat_delay, 0},
	{0, NULL, 0, NULL, NULL, 0},
};

static void usage(FILE *f)
{
	fputs("moat pub publishes a message on a topic and exits; its options are mosquitto_pub's.\n"
	      "\n"
	      "Usage: moat pub {[-h host] [-p port] [-u username] [-P password] -t topic}\n"
	      "                {-f file | -l | -n | -m message | -s}\n"
	      "                [-c] [-k keepalive] [-q qos] [-r] [--repeat N] [--repeat-delay time]\n"
	      "                [-x session-expiry] [-i id] [-I id_prefix] [-d] [--quiet]\n"
	      "                [-V protocol-version]\n"
	      "                [--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]\n"
	      "                [-D command property value]\n"
	      "                [-w] [{--cafile file | --capath dir} [--cert file] [--key file]\n"
	      "                  [--ciphers ciphers] [--insecure] [--tls-version version]]\n"
	      "                [--psk hex-key --psk-identity identity [--ciphers ciphers]]\n"
	      "       moat pub --help\n\n"
	      " -f : send the contents of a file as the message.\n"
	      " -l : read messages from stdin, sending a separate message for each line.\n"
	      " -m : message payload to send.\n"
	      " -n : send a null (zero length) message.\n"
	      " -r : message should be retained.\n"
	      " -s : read message from stdin, sending the entire input as a message.\n"
	      " -t : mqtt topic to publish to.\n"
	      " --repeat : if publish mode is -f, -m, -n or -s, then repeat the publish N times.\n"
	      " --repeat-delay : if using --repeat, wait time seconds between publishes.\n"
	      "                  Defaults to 0.\n",
	      f);
	moat_cli_common_usage(f);
	fputs("\nExit status: 0 on success, 1 on error, the CONNACK code if the broker refused.\n",
	      f);
}

/* ---- message sources ---- */

/* Reads all of fd into pc->data. Returns 0 or -1 with errno set. */
static int slurp(struct pub_conf *pc, int fd)
{
	size_t cap = 4096;
	ssize_t n;

	pc->data = malloc(cap);
	if (!pc->data)
		return -1;
	for (;;) {
		if (pc->data_len == cap) {
			uint8_t *nb = cap >= MOAT_MQTT_MAX_REMAINING ? NULL : realloc(pc->data, cap * 2);
			if (!nb) {
				errno = cap >= MOAT_MQTT_MAX_REMAINING ? EFBIG : ENOMEM;
				return -1;
			}
			pc->data = nb;
			cap *= 2;
		}
		n = read(fd, pc->data + pc->data_len, cap - pc->data_len);
		if (n == 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0)
			pc->data_len += (size_t)n;
	}
}

/* Loads -f's file or -s's stdin before connecting. Returns 0 or -1 after printing. */
static int load(struct pub_conf *pc)
{
	int fd, rc;

	if (pc->source == SRC_STDIN) {
		if (slurp(pc, STDIN_FILENO) == 0)
			return 0;
		moat_cli_err(&pc->cc, "Error: reading stdin: %s\n", strerror(errno));
		return -1;
	}
	if (pc->source != SRC_FILE)
		return 0;
	fd = open(pc->arg, O_RDONLY | O_CLOEXEC);
	rc = fd < 0 ? -1 : slurp(pc, fd);
	if (rc < 0)
		moat_cli_err(&pc->cc, "Error: Unable to read file \"%s\": %s.\n", pc->arg,
			     strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- publishing ---- */

static void on_published(void *ctx, struct moat_client *c, uint16_t id, uint8_t reason)
{
	struct pub_conf *pc = ctx;

	(void)c;
	if (reason >= 0x80)
		moat_cli_err(&pc->cc, "Warning: Publish %u failed: %s.\n", id,
			     moat_mqtt_reason_name(reason, MOAT_MQTT_PUBACK));
}

static int publish(struct pub_conf *pc, struct moat_client *c, struct moat_slice payload)
{
	struct moat_client_pub p = {
		.topic = {(const uint8_t *)pc->topic, strlen(pc->topic)},
		.payload = payload,
		.qos = pc->cc.qos,
		.retain = pc->retain,
		.props = moat_cli_props_of(&pc->cc, MOAT_CLI_PUBLISH),
	};

	return moat_client_publish(c, &p, -1);
}

/* -m, -f, -s, -n: the one message, --repeat times. Returns 0 or an error. */
static int publish_repeated(struct pub_conf *pc, struct moat_client *c)
{
	struct moat_slice payload = {NULL, 0};
	unsigned long i;
	int rc = 0;

	if (pc->source == SRC_MESSAGE)
		payload = (struct moat_slice){(const uint8_t *)pc->arg, strlen(pc->arg)};
	else if (pc->source == SRC_FILE || pc->source == SRC_STDIN)
		payload = (struct moat_slice){pc->data, pc->data_len};
	for (i = 0; i < pc->repeat && rc == 0 && !moat_cli_signalled; i++) {
		rc = publish(pc, c, payload);
		if (rc == 0 && i + 1 < pc->repeat && pc->repeat_delay > 0)
			rc = moat_client_wait(c, -1, (int)(pc->repeat_delay * 1000));
	}
	return rc < 0 ? rc : 0;
}

/* Publishes each complete line of buf[0..*len) and keeps the rest. */
static int publish_lines(struct pub_conf *pc, struct moat_client *c, uint8_t *buf, size_t *len,
			 bool eof)
{
	size_t start = 0;
	uint8_t *nl;
	int rc = 0;

	while (rc == 0 && (nl = memchr(buf + start, '\n', *len - start))) {
		rc = publish(pc, c, (struct moat_slice){buf + start, (size_t)(nl - (buf + start))});
		start = (size_t)(nl - buf) + 1;
	}
	if (rc == 0 && eof && start < *len) {
		rc = publish(pc, c, (struct moat_slice){buf + start, *len - start});
		start = *len;
	}
	memmove(buf, buf + start, *len - start);
	*len -= start;
	return rc;
}

/* -l: publishes stdin's lines as they arrive, until end of input or a signal. */
static int publish_stdin_lines(struct pub_conf *pc, struct moat_client *c)
{
	size_t len = 0, cap = 4096;
	uint8_t *buf = malloc(cap);
	bool eof = false;
	int rc = buf ? 0 : MOAT_ENOMEM;

	while (rc == 0 && !eof && !moat_cli_signalled) {
		ssize_t n;

		rc = moat_client_wait(c, STDIN_FILENO, -1);
		if (rc <= 0)
			continue;
		if (len == cap) {
			uint8_t *nb = realloc(buf, cap * 2);
			if (!nb) {
				rc = MOAT_ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(STDIN_FILENO, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			n = 0;
		eof = n <= 0;
		len += n > 0 ? (size_t)n : 0;
		rc = publish_lines(pc, c, buf, &len, eof);
	}
	free(buf);
	return rc;
}

/* Connects, publishes, waits for the acknowledgements, disconnects. Returns the exit code. */
static int run(struct pub_conf *pc)
{
	struct moat_client *c = moat_client_new();
	int rc, code = 1;

	if (!c) {
		moat_cli_err(&pc->cc, "Error: Out of memory.\n");
		return 1;
	}
	code = moat_cli_connect(&pc->cc, c, NULL, on_published, pc);
	if (code != 0)
		goto fail;
	code = 1;
	rc = pc->source == SRC_LINES ? publish_stdin_lines(pc, c) : publish_repeated(pc, c);
	if (rc == 0)
		rc = moat_client_flush(c, -1);
	if (rc < 0 && !(rc == MOAT_EAGAIN && moat_cli_signalled))
		moat_cli_err(&pc->cc, "Error: %s\n", moat_client_error(c));
	/* does nothing if the connection is already gone */
	moat_client_disconnect(c, 0, moat_cli_props_of(&pc->cc, MOAT_CLI_DISCONNECT),
			       DISCONNECT_WAIT_MS);
	if (rc == 0 && moat_client_publish_failures(c) == 0)
		code = 0;
	if (rc == MOAT_EAGAIN && moat_cli_signalled && pc->source == SRC_LINES)
		code = 0; /* ^C is how an interactive -l ends */
fail:
	moat_client_free(c);
	return code;
}

/* Checks what the options alone can tell. Returns 0 or -1 after printing. */
static int check(struct pub_conf *pc)
{
	if (!pc->topic || pc->source == SRC_NONE) {
		fprintf(stderr, "Error: Both topic and message must be supplied.\n");
		return -1;
	}
	if (!moat_cli_utf8(pc->topic)) {
		fprintf(stderr, "Error: Publish topic is not valid UTF-8.\n");
		return -1;
	}
	if (moat_mqtt_topic_name_check((const uint8_t *)pc->topic, strlen(pc->topic)) < 0) {
		fprintf(stderr, "Error: Invalid publish topic '%s', does it contain '+' or '#'?\n",
			pc->topic);
		return -1;
	}
	return moat_cli_common_finish(&pc->cc);
}

int moat_cmd_pub(int argc, char **argv)
{
	static const struct moat_cli_opt *const tables[] = {pub_opts, moat_cli_common_opts, NULL};
	struct pub_conf pc;
	int code = 1;

	memset(&pc, 0, sizeof(pc));
	moat_cli_common_init(&pc.cc, "pub");
	pc.repeat = 1;
	if (moat_cli_parse(argc, argv, tables, &pc) < 0 || (!pc.cc.help && check(&pc) < 0)) {
		fputc('\n', stderr);
		usage(stderr);
		goto fail;
	}
	if (pc.cc.help) {
		usage(stdout);
		code = 0;
		goto fail;
	}
	if (load(&pc) < 0)
		goto fail;
	moat_cli_signals(&pc.cc);
	code = run(&pc);
fail:
	free(pc.data);
	moat_cli_common_free(&pc.cc);
	return code;
}
