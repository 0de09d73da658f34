/*
 * test_config.c - unit tests for the config reader (src/config/).
 *
 * Covers: the defaults; every supported directive, its value landing in the
 * struct; Mosquitto's value syntax (durations, bools, log_dest/log_type
 * accumulation, paths with spaces); scope (listener settings before the first
 * listener are the defaults, after it they belong to that listener; global
 * settings anywhere); the listener forms (address, unix socket, port/
 * bind_address default listener) and their limits; every error class with
 * its exact "FILE:LINE: ..." message; the refusal of every known Mosquitto
 * directive moat does not support; hostile text (NUL bytes, long lines,
 * invalid UTF-8, huge and odd numbers); include_dir (order, errors naming the
 * included file, loops, depth) on temporary directories; moat_config_load;
 * transactional parsing; the default listener; and reload's copy-and-report.
 * Run under AddressSanitizer, it also shows that no path leaks or frees twice.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "core/error.h"
#include "fault_alloc.h"

static char err[1024];

/* ---- helpers ---- */

static int setup(void **state)
{
	struct moat_config *c = malloc(sizeof(*c));

	if (!c)
		return -1;
	moat_config_defaults(c);
	err[0] = '\0';
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	moat_config_free(*state);
	free(*state);
	return 0;
}

static int parse(struct moat_config *c, const char *text)
{
	return moat_config_parse(c, text, "t.conf", err, sizeof(err));
}

/* Parses text into a fresh config and expects success. */
static void ok(struct moat_config *c, const char *text)
{
	int rc = parse(c, text);

	if (rc != 0)
		fail_msg("unexpected error %d: %s\n--- text:\n%s", rc, err, text);
}

/* Expects text to be refused with rc and exactly msg, leaving a fresh config as it was. */
static void refused_rc(const char *text, int rc, const char *msg)
{
	struct moat_config c;
	int got;

	moat_config_defaults(&c);
	got = parse(&c, text);
	if (got != rc || strcmp(err, msg) != 0)
		fail_msg("text:\n%s\nwant %d \"%s\"\n got %d \"%s\"", text, rc, msg, got, err);
	assert_int_equal(c.n_listeners, 0);
	assert_int_equal(c.max_qos, 2);
	moat_config_free(&c);
}

static void refused(const char *text, const char *msg)
{
	refused_rc(text, MOAT_ECONFIG, msg);
}

/* ---- defaults, syntax ---- */

static void test_defaults(void **state)
{
	struct moat_config *c = *state;

	assert_int_equal(c->n_listeners, 0);
	assert_null(c->defaults.address);
	assert_int_equal(c->defaults.port, 0);
	assert_int_equal(c->defaults.protocol, MOAT_PROTO_MQTT);
	assert_int_equal(c->defaults.socket_domain, MOAT_DOMAIN_ANY);
	assert_int_equal(c->defaults.allow_anonymous, -1);
	assert_int_equal(c->defaults.max_connections, -1);
	assert_null(c->defaults.mount_point);
	assert_int_equal(c->max_inflight_messages, 20);
	assert_int_equal(c->max_inflight_bytes, 0);
	assert_int_equal(c->max_queued_messages, 1000);
	assert_int_equal(c->max_queued_bytes, 0);
	assert_false(c->queue_qos0_messages);
	assert_int_equal(c->max_packet_size, 0);
	assert_int_equal(c->message_size_limit, 0);
	assert_int_equal(c->max_keepalive, 65535);
	assert_int_equal(c->max_topic_alias, 10);
	assert_int_equal(c->max_qos, 2);
	assert_true(c->retain_available);
	assert_true(c->allow_zero_length_clientid);
	assert_string_equal(c->auto_id_prefix, "auto-");
	assert_false(c->upgrade_outgoing_qos);
	assert_int_equal(c->persistent_client_expiration, 0);
	assert_int_equal(c->sys_interval, 10);
	assert_true(c->set_tcp_nodelay);
	assert_int_equal(c->workers, 0);
	assert_int_equal(c->connect_timeout, 10);
	assert_int_equal(c->preauth_max_packet_size, 65536);
	assert_int_equal(c->memory_limit, 0);
	assert_int_equal(c->max_subscriptions_per_client, 0);
	assert_null(c->pid_file);
	assert_null(c->user);
	assert_int_equal(c->log_dest, MOAT_LOGDEST_STDERR);
	assert_null(c->log_file);
	assert_int_equal(c->log_type, MOAT_LOG_ERROR | MOAT_LOG_WARNING | MOAT_LOG_NOTICE |
					      MOAT_LOG_INFORMATION);
	assert_true(c->log_timestamp);
	assert_null(c->log_timestamp_format);
	assert_true(c->connection_messages);
}

static void test_empty_and_comments(void **state)
{
	struct moat_config *c = *state;

	ok(c, "");
	ok(c, "\n\n# a comment\n   # an indented one\n\t\n#max_qos 9\n");
	ok(c, "#");
	assert_int_equal(c->n_listeners, 0);
	assert_int_equal(c->max_qos, 2);
}

static void test_blanks_and_crlf(void **state)
{
	struct moat_config *c = *state;

	ok(c, "  max_qos\t1  \r\n\tlistener   1883   127.0.0.1 \r\n   max_connections  7\r\n");
	assert_int_equal(c->max_qos, 1);
	assert_int_equal(c->n_listeners, 1);
	assert_string_equal(c->listeners[0].address, "127.0.0.1");
	assert_int_equal(c->listeners[0].max_connections, 7);
	ok(c, "sys_interval 5"); /* no final newline */
	assert_int_equal(c->sys_interval, 5);
}

/* ---- every supported directive lands in the struct ---- */

static void test_session_directives(void **state)
{
	struct moat_config *c = *state;

	ok(c, "max_inflight_messages 0\n"
	      "max_inflight_bytes 1048576\n"
	      "max_queued_messages 4294967295\n"
	      "max_queued_bytes 18446744073709551615\n"
	      "queue_qos0_messages true\n"
	      "max_packet_size 268435460\n"
	      "message_size_limit 268435455\n"
	      "max_keepalive 60\n"
	      "max_topic_alias 0\n"
	      "max_qos 1\n"
	      "retain_available false\n"
	      "allow_zero_length_clientid false\n"
	      "auto_id_prefix dev-\n"
	      "upgrade_outgoing_qos true\n"
	      "persistent_client_expiration 2d\n"
	      "sys_interval 0\n"
	      "set_tcp_nodelay false\n"
	      "memory_limit 1073741824\n");
	assert_int_equal(c->max_inflight_messages, 0);
	assert_int_equal(c->max_inflight_bytes, 1048576);
	assert_int_equal(c->max_queued_messages, 4294967295u);
	assert_true(c->max_queued_bytes == UINT64_MAX);
	assert_true(c->queue_qos0_messages);
	assert_int_equal(c->max_packet_size, 268435460);
	assert_int_equal(c->message_size_limit, 268435455);
	assert_int_equal(c->max_keepalive, 60);
	assert_int_equal(c->max_topic_alias, 0);
	assert_int_equal(c->max_qos, 1);
	assert_false(c->retain_available);
	assert_false(c->allow_zero_length_clientid);
	assert_string_equal(c->auto_id_prefix, "dev-");
	assert_true(c->upgrade_outgoing_qos);
	assert_int_equal(c->persistent_client_expiration, 2 * 86400);
	assert_int_equal(c->sys_interval, 0);
	assert_false(c->set_tcp_nodelay);
	assert_int_equal(c->memory_limit, 1073741824);
}

static void test_moat_directives(void **state)
{
	struct moat_config *c = *state;

	ok(c, "workers 256\nconnect_timeout 3600\npreauth_max_packet_size 64\n"
	      "max_subscriptions_per_client 100\n");
	assert_int_equal(c->workers, 256);
	assert_int_equal(c->connect_timeout, 3600);
	assert_int_equal(c->preauth_max_packet_size, 64);
	assert_int_equal(c->max_subscriptions_per_client, 100);
}

/* The sentinel's directives: values, defaults, and each refusal with its reason. */
static void test_sentinel_directives(void **state)
{
	struct moat_config *c = *state;
	const struct moat_config_detector *d;

	assert_true(c->sentinel);
	assert_null(c->sentinel_allow); /* unset: the broker allow-lists loopback */
	assert_int_equal(c->idle_timeout, 300);
	assert_int_equal(c->availability_s, 300);
	for (int i = 0; i < MOAT_CONFIG_DETECTORS; i++)
		assert_false(c->detectors[i].set);
	ok(c, "sentinel true\naudit_log /var/log/moat/audit.log\naudit_log_max_size 10485760\n"
	      "audit_log_keep 9\nbans_file /var/lib/moat/bans\n"
	      "sentinel_auth_fail_addr 5 30 ban\nsentinel_topic_scan off\n"
	      "sentinel_publish_flood 3 10 throttle\nsentinel_ban_steps 60 600 3600\n"
	      "sentinel_allow 10.0.0.0/8 2001:db8::/32\nsentinel_allow clientid:ops username:admin\n"
	      "client_idle_timeout 0\nmax_connection_rate 20\nmax_connections_per_address 50\n"
	      "max_message_rate 100\nmax_byte_rate 1048576\nlockdown false\n"
	      "sentinel_availability 0\nsentinel_throttle 5\nlistener 1883\nmax_accept_rate 50\n");
	assert_int_equal(c->throttle_s, 5);
	assert_int_equal(c->availability_s, 0);
	assert_int_equal(c->listeners[0].max_accept_rate, 50);
	assert_string_equal(c->audit_log, "/var/log/moat/audit.log");
	assert_int_equal(c->audit_log_max_size, 10u << 20);
	assert_int_equal(c->audit_log_keep, 9);
	assert_string_equal(c->bans_file, "/var/lib/moat/bans");
	d = &c->detectors[1]; /* auth_fail_addr */
	assert_string_equal(moat_config_detector_names[1], "auth_fail_addr");
	assert_true(d->set && d->enabled);
	assert_int_equal(d->threshold, 5);
	assert_int_equal(d->window_s, 30);
	assert_int_equal(d->action, 3);
	assert_true(c->detectors[6].set && !c->detectors[6].enabled); /* topic_scan off */
	assert_string_equal(moat_config_detector_names[12], "publish_flood");
	assert_int_equal(c->detectors[12].action, 2);
	assert_int_equal(c->n_ban_steps, 3);
	assert_int_equal(c->ban_steps[2], 3600);
	assert_string_equal(c->sentinel_allow,
			    "10.0.0.0/8 2001:db8::/32 clientid:ops username:admin");
	assert_int_equal(c->idle_timeout, 0);
	assert_int_equal(c->max_connection_rate, 20);
	assert_int_equal(c->max_connections_per_address, 50);
	assert_int_equal(c->max_message_rate, 100);
	assert_int_equal(c->max_byte_rate, 1u << 20);
	assert_false(c->lockdown);

	refused("sentinel_auth_fail_addr 5 30 punish\n",
		"t.conf:1: sentinel_auth_fail_addr: action 'punish' is not one of log, disconnect, "
		"throttle, ban (or give 'off')");
	refused("sentinel_auth_fail_addr 5 30\n",
		"t.conf:1: sentinel_auth_fail_addr: missing action (log, disconnect, throttle, ban)");
	refused("sentinel_auth_fail_addr 0 30 ban\n",
		"t.conf:1: sentinel_auth_fail_addr: threshold '0' is not 1..1000000000");
	refused("sentinel_flapping 5\n", "t.conf:1: sentinel_flapping: missing window");
	refused("sentinel_flapping 5 60 ban extra\n",
		"t.conf:1: sentinel_flapping: extra value 'extra'");
	refused("sentinel_nosuch 5 60 ban\n", "t.conf:1: unknown directive 'sentinel_nosuch'");
	refused("sentinel_ban_steps 60 0\n",
		"t.conf:1: sentinel_ban_steps: duration '0' is not 1..31536000");
	refused("sentinel_ban_steps 1 2 3 4 5 6 7 8 9\n", "t.conf:1: sentinel_ban_steps: at most 8 steps");
	refused("sentinel_allow 10.0.0.0/33\n",
		"t.conf:1: sentinel_allow: '10.0.0.0/33' is not an address, a CIDR, clientid:ID or "
		"username:NAME");
	refused("sentinel_allow 10.0.0.0/08\n",
		"t.conf:1: sentinel_allow: '10.0.0.0/08' is not an address, a CIDR, clientid:ID or "
		"username:NAME");
	refused("sentinel_allow clientid:\n",
		"t.conf:1: sentinel_allow: 'clientid:' is not an address, a CIDR, clientid:ID or "
		"username:NAME");
	refused("audit_log_keep 0\n", "t.conf:1: audit_log_keep: 0 is out of bounds (1..99)");
}

/* "sentinel_allow none" empties the list (no loopback default); entries after it add up. */
static void test_sentinel_allow_none(void **state)
{
	struct moat_config *c = *state;

	ok(c, "sentinel_allow none\n");
	assert_non_null(c->sentinel_allow);
	assert_string_equal(c->sentinel_allow, "");
	ok(c, "sentinel_allow 192.0.2.1\n");
	assert_string_equal(c->sentinel_allow, "192.0.2.1");
}

/* Durable state: Mosquitto's directives keep their meaning; moat's add the key and sync. */
static void test_persistence_directives(void **state)
{
	struct moat_config *c = *state;

	assert_false(c->persistence);
	assert_null(c->persistence_location);
	assert_int_equal(c->persistence_sync, 0); /* always */
	assert_int_equal(c->persistence_sync_interval, 10);
	ok(c, "persistence true\npersistence_location /var/lib/moat/\n"
	      "persistence_key_file /etc/moat/store.key\npersistence_sync batch\n"
	      "persistence_sync_interval 50\nautosave_interval 1800\nautosave_on_changes false\n");
	assert_true(c->persistence);
	assert_string_equal(c->persistence_location, "/var/lib/moat/");
	assert_string_equal(c->persistence_key_file, "/etc/moat/store.key");
	assert_int_equal(c->persistence_sync, 1);
	assert_int_equal(c->persistence_sync_interval, 50);
	refused("persistence_sync sometimes\n",
		"t.conf:1: persistence_sync: 'sometimes' is not one of always, batch, off");
	refused("persistence_sync_interval 0\n",
		"t.conf:1: persistence_sync_interval: 0 is out of bounds (1..10000)");
}

static void test_process_directives(void **state)
{
	struct moat_config *c = *state;

	ok(c, "pid_file /run/moat d/moatd.pid\n"
	      "user mosquitto\n"
	      "log_timestamp false\n"
	      "log_timestamp_format %Y-%m-%dT%H:%M:%S  %z\n"
	      "connection_messages false\n");
	assert_string_equal(c->pid_file, "/run/moat d/moatd.pid");
	assert_string_equal(c->user, "mosquitto");
	assert_false(c->log_timestamp);
	assert_string_equal(c->log_timestamp_format, "%Y-%m-%dT%H:%M:%S  %z");
	assert_false(c->connection_messages);
}

static void test_listener_directives(void **state)
{
	struct moat_config *c = *state;
	const struct moat_listener_conf *l;

	ok(c, "listener 8080 ::1\n"
	      "protocol websockets\n"
	      "socket_domain ipv6\n"
	      "max_connections 100\n"
	      "mount_point tenant/a/\n"
	      "allow_anonymous true\n");
	l = &c->listeners[0];
	assert_int_equal(l->port, 8080);
	assert_string_equal(l->address, "::1");
	assert_int_equal(l->protocol, MOAT_PROTO_WEBSOCKETS);
	assert_int_equal(l->socket_domain, MOAT_DOMAIN_IPV6);
	assert_int_equal(l->max_connections, 100);
	assert_string_equal(l->mount_point, "tenant/a/");
	assert_int_equal(l->allow_anonymous, 1);
	assert_string_equal(l->file, "t.conf");
	assert_int_equal(l->line, 1);
	ok(c, "listener 1883\nsocket_domain ipv4\nprotocol mqtt\nmax_connections -1\n");
	l = &c->listeners[1];
	assert_null(l->address);
	assert_int_equal(l->socket_domain, MOAT_DOMAIN_IPV4);
	assert_int_equal(l->protocol, MOAT_PROTO_MQTT);
	assert_int_equal(l->max_connections, -1);
	assert_int_equal(l->allow_anonymous, -1); /* unset: the broker decides by address */
}

static void test_durations(void **state)
{
	struct moat_config *c = *state;
	static const struct {
		const char *v;
		int64_t secs;
	} good[] = {
		{ "1h", 3600 },		{ "2d", 2 * 86400 },	 { "1w", 7 * 86400 },
		{ "1m", 30 * 86400 },	{ "1y", 365 * 86400 },	 { "0010h", 36000 },
		{ "106751991167300d", 106751991167300LL * 86400 },
	};
	char line[128];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(line, sizeof(line), "persistent_client_expiration %s", good[i].v);
		ok(c, line);
		assert_true(c->persistent_client_expiration == good[i].secs);
	}
	refused("persistent_client_expiration 10",
		"t.conf:1: persistent_client_expiration: '10' is not a duration (a positive "
		"number and a unit: h, d, w, m or y)");
	refused("\npersistent_client_expiration 0h",
		"t.conf:2: persistent_client_expiration: '0h' is not a duration (a positive "
		"number and a unit: h, d, w, m or y)");
	refused("persistent_client_expiration -1d",
		"t.conf:1: persistent_client_expiration: '-1d' is not a duration (a positive "
		"number and a unit: h, d, w, m or y)");
	refused("persistent_client_expiration h",
		"t.conf:1: persistent_client_expiration: 'h' is not a duration (a positive "
		"number and a unit: h, d, w, m or y)");
	refused("persistent_client_expiration 1s",
		"t.conf:1: persistent_client_expiration: '1s' is not a duration (a positive "
		"number and a unit: h, d, w, m or y)");
	refused("persistent_client_expiration 1.5d",
		"t.conf:1: persistent_client_expiration: '1.5d' is not a duration (a positive "
		"number and a unit: h, d, w, m or y)");
	refused("persistent_client_expiration 106751991167301d",
		"t.conf:1: persistent_client_expiration: '106751991167301d' is too long");
	refused("persistent_client_expiration 1d 2h",
		"t.conf:1: persistent_client_expiration: extra value '2h'");
}

/* ---- numbers and their bounds ---- */

static void test_bounds(void **state)
{
	static const struct {
		const char *text;
		const char *msg;
	} cases[] = {
		{ "max_qos 3", "t.conf:1: max_qos: 3 is out of bounds (0..2)" },
		{ "max_keepalive 9", "t.conf:1: max_keepalive: 9 is out of bounds (10..65535)" },
		{ "max_keepalive 65536",
		  "t.conf:1: max_keepalive: 65536 is out of bounds (10..65535)" },
		{ "max_inflight_messages 65536",
		  "t.conf:1: max_inflight_messages: 65536 is out of bounds (0..65535)" },
		{ "max_topic_alias 65536",
		  "t.conf:1: max_topic_alias: 65536 is out of bounds (0..65535)" },
		{ "sys_interval 65536", "t.conf:1: sys_interval: 65536 is out of bounds (0..65535)" },
		{ "max_packet_size 19",
		  "t.conf:1: max_packet_size: 19 is out of bounds (20..268435460 bytes)" },
		{ "max_packet_size 268435461",
		  "t.conf:1: max_packet_size: 268435461 is out of bounds (20..268435460 bytes)" },
		{ "message_size_limit 268435456",
		  "t.conf:1: message_size_limit: 268435456 is out of bounds (0..268435455 bytes)" },
		{ "max_queued_messages 4294967296",
		  "t.conf:1: max_queued_messages: 4294967296 is out of bounds (0..4294967295)" },
		{ "workers 257", "t.conf:1: workers: 257 is out of bounds (0..256)" },
		{ "connect_timeout 0", "t.conf:1: connect_timeout: 0 is out of bounds (1..3600)" },
		{ "connect_timeout 3601",
		  "t.conf:1: connect_timeout: 3601 is out of bounds (1..3600)" },
		{ "preauth_max_packet_size 63",
		  "t.conf:1: preauth_max_packet_size: 63 is out of bounds (64..268435460 bytes)" },
		{ "preauth_max_packet_size 268435461", "t.conf:1: preauth_max_packet_size: "
						       "268435461 is out of bounds (64..268435460 bytes)" },
		{ "max_connections -2",
		  "t.conf:1: max_connections: -2 is out of bounds (-1..2147483647)" },
		{ "max_connections 2147483648",
		  "t.conf:1: max_connections: 2147483648 is out of bounds (-1..2147483647)" },
		{ "port 0", "t.conf:1: port: 0 is out of bounds (1..65535)" },
		{ "listener 65536", "t.conf:1: listener: 65536 is out of bounds (0..65535)" },
		/* negative numbers for unsigned settings */
		{ "max_qos -1", "t.conf:1: max_qos: -1 is out of bounds (0..2)" },
		{ "max_queued_bytes -1",
		  "t.conf:1: max_queued_bytes: -1 is out of bounds (0..18446744073709551615 bytes)" },
		/* past 64 bits */
		{ "memory_limit 18446744073709551616", "t.conf:1: memory_limit: 18446744073709551616"
						       " is out of bounds (0..18446744073709551615 bytes)" },
		{ "max_qos 99999999999999999999999999999999999999999999999999999999999999999999999",
		  "t.conf:1: max_qos: 9999999999999999999999999999999999999999999999999999999999999999"
		  "9999... is out of bounds (0..2)" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		refused(cases[i].text, cases[i].msg);
}

static void test_number_syntax(void **state)
{
	struct moat_config *c = *state;
	static const char *bad[] = { "0x10", "1e9", "12abc", "+5", "1.0", "- 1", "--1", "0b1",
				     "１" /* fullwidth digit */, "١" /* Arabic-Indic digit */ };
	char line[64], msg[160];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "sys_interval %s", bad[i]);
		if (strchr(bad[i], ' '))
			snprintf(msg, sizeof(msg), "t.conf:1: sys_interval: extra value '%s'",
				 strchr(bad[i], ' ') + 1);
		else if ((unsigned char)bad[i][0] >= 0x80)
			snprintf(msg, sizeof(msg), "t.conf:1: sys_interval: '%s' is not a number",
				 strlen(bad[i]) == 3 ? "???" : "??");
		else
			snprintf(msg, sizeof(msg), "t.conf:1: sys_interval: '%s' is not a number",
				 bad[i]);
		refused(line, msg);
	}
	ok(c, "sys_interval 010"); /* decimal, not octal */
	assert_int_equal(c->sys_interval, 10);
	ok(c, "max_qos -0");
	assert_int_equal(c->max_qos, 0);
	ok(c, "max_connections -1");
	assert_int_equal(c->defaults.max_connections, -1);
}

static void test_bools(void **state)
{
	struct moat_config *c = *state;
	static const char *bad[] = { "yes", "no", "2", "-1", "TRUE", "True", "on", "truee" };
	char line[64], msg[128];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "retain_available %s", bad[i]);
		snprintf(msg, sizeof(msg),
			 "t.conf:1: retain_available: '%s' is not a boolean (true or false)",
			 bad[i]);
		refused(line, msg);
	}
	ok(c, "retain_available false\nretain_available true");
	assert_true(c->retain_available);
	ok(c, "retain_available 0");
	assert_false(c->retain_available);
	ok(c, "retain_available 1");
	assert_true(c->retain_available);
}

static void test_enums(void **state)
{
	(void)state;
	refused("protocol mqttsn", "t.conf:1: protocol: 'mqttsn' is not one of mqtt, websockets");
	refused("socket_domain ipv5", "t.conf:1: socket_domain: 'ipv5' is not one of ipv4, ipv6");
	refused("socket_domain IPv4", "t.conf:1: socket_domain: 'IPv4' is not one of ipv4, ipv6");
}

/* ---- error classes ---- */

static void test_missing_value(void **state)
{
	static const char *names[] = { "port",	   "max_qos",	  "pid_file",	 "listener",
				       "log_dest", "log_type",	  "include_dir", "protocol",
				       "allow_anonymous", "bind_address", "persistent_client_expiration",
				       "mount_point", "workers" };
	char line[64], msg[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(line, sizeof(line), "# x\n\t%s   \n", names[i]);
		snprintf(msg, sizeof(msg), "t.conf:2: %s: missing value", names[i]);
		refused(line, msg);
	}
}

static void test_extra_values(void **state)
{
	(void)state;
	refused("max_qos 1 2", "t.conf:1: max_qos: extra value '2'");
	refused("max_qos 1 # one",
		"t.conf:1: max_qos: '# one' after the value (a comment must be on a line of its own)");
	refused("log_type error warning", "t.conf:1: log_type: extra value 'warning'");
	refused("log_dest stderr stdout", "t.conf:1: log_dest: extra value 'stdout'");
	refused("listener 1883 127.0.0.1 ::1", "t.conf:1: listener: extra value '::1'");
	refused("port 1883 1884", "t.conf:1: port: extra value '1884'");
	refused("bind_address a b", "t.conf:1: bind_address: extra value 'b'");
	refused("protocol mqtt websockets", "t.conf:1: protocol: extra value 'websockets'");
}

static void test_unknown_directive(void **state)
{
	(void)state;
	refused("\n\nfoo 1", "t.conf:3: unknown directive 'foo'");
	refused("Max_qos 1", "t.conf:1: unknown directive 'Max_qos'");
	refused("listener_allow_anonymous true",
		"t.conf:1: unknown directive 'listener_allow_anonymous'");
	refused("max_qos=1", "t.conf:1: unknown directive 'max_qos=1'");
	refused("\x01\x1b[31mevil\xff", "t.conf:1: unknown directive '??[31mevil?'");
	refused("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"t.conf:1: unknown directive "
		"'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}

/* Every directive of mosquitto.conf(5) 2.0 that moat does not support. */
static const char *const mosquitto_refused[] = {
	"address", "addresses", "allow_duplicate_messages", "auth_opt_db_host",
	"auth_plugin", "auth_plugin_deny_special_chars", "bind_interface", "bridge_alpn", "bridge_attempt_unsubscribe",
	"bridge_bind_address", "bridge_cafile", "bridge_capath", "bridge_certfile",
	"bridge_identity", "bridge_insecure", "bridge_keyfile", "bridge_max_packet_size",
	"bridge_outgoing_retain", "bridge_protocol_version", "bridge_psk", "bridge_require_ocsp",
	"bridge_tls_version", "check_retain_source",
	"cleansession", "clientid", "clientid_prefixes", "connection",
	"http_dir", "idle_timeout", "keepalive_interval",
	"local_cleansession", "local_clientid", "local_password", "local_username",
	"log_facility", "notification_topic", "notifications", "notifications_local_only",
	"password", "per_listener_settings", "persistence_file", "plugin", "plugin_opt_x",
	"remote_clientid", "remote_password", "remote_username",
	"restart_timeout", "retained_persistence", "retry_interval", "round_robin", "start_type",
	"store_clean_interval", "threshold", "tls_engine", "tls_engine_kpass_sha1",
	"topic", "try_private",
	"use_username_as_clientid", "username",
	"websockets_headers_size", "websockets_log_level", "trace_level", "trace_output",
	"ffdc_output", "max_log_entries",
};

static void test_refused_directives(void **state)
{
	struct moat_config c;
	char line[96], prefix[96];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(mosquitto_refused) / sizeof(mosquitto_refused[0]); i++) {
		moat_config_defaults(&c);
		snprintf(line, sizeof(line), "listener 1883\n%s some value", mosquitto_refused[i]);
		snprintf(prefix, sizeof(prefix), "t.conf:2: %s: not ", mosquitto_refused[i]);
		assert_int_equal(parse(&c, line), MOAT_ECONFIG);
		if (strncmp(err, prefix, strlen(prefix)) != 0)
			fail_msg("%s: %s", mosquitto_refused[i], err);
		assert_int_equal(c.n_listeners, 0);
		moat_config_free(&c);
	}
	refused("auth_plugin /usr/lib/x.so",
		"t.conf:1: auth_plugin: not supported: moat loads no plugins (use password_file, acl_file, auth_methods)");
	refused("tls_engine pkcs11",
		"t.conf:1: tls_engine: not supported: moat reads keys from PEM files, not OpenSSL engines");
	refused("persistence_file mosquitto.db",
		"t.conf:1: persistence_file: not supported: moat keeps its store as moat.db in "
		"persistence_location");
	refused("connection edge",
		"t.conf:1: connection: not supported yet (bridges arrive after the broker core)");
	refused("log_dest topic", "t.conf:1: log_dest: topic is not supported yet (moat logs to "
				  "stderr, stdout, syslog or a file)");
}

static void test_long_lines(void **state)
{
	struct moat_config *c = *state;
	char *text = malloc(2 * 4096 + 64);
	size_t n;

	assert_non_null(text);
	/* exactly 4096 bytes, then a '\r' that the limit does not count */
	strcpy(text, "pid_file /");
	n = strlen(text);
	memset(text + n, 'a', 4096 - n);
	strcpy(text + 4096, "\r\nsys_interval 3\n");
	ok(c, text);
	assert_int_equal(strlen(c->pid_file), 4096 - 9);
	assert_int_equal(c->sys_interval, 3);
	/* 4097 bytes on line 2 */
	strcpy(text, "# ok\n");
	memset(text + 5, '#', 4097);
	strcpy(text + 5 + 4097, "\n");
	refused(text, "t.conf:2: line longer than 4096 bytes");
	free(text);
}

static void test_hostile_bytes(void **state)
{
	struct moat_config c;
	static const char nul[] = "max_qos 1\nmax_qos 0\0 1\n";

	(void)state;
	moat_config_defaults(&c);
	assert_int_equal(moat_config_parse_mem(&c, nul, sizeof(nul) - 1, "t.conf", err,
					       sizeof(err)), MOAT_ECONFIG);
	assert_string_equal(err, "t.conf:2: line holds a NUL byte");
	assert_int_equal(c.max_qos, 2);
	assert_int_equal(moat_config_parse_mem(&c, "\0", 1, "t.conf", err, sizeof(err)),
			 MOAT_ECONFIG);
	assert_string_equal(err, "t.conf:1: line holds a NUL byte");
	assert_int_equal(moat_config_parse_mem(&c, "max_qos 1", 7, "t.conf", err, sizeof(err)),
			 MOAT_ECONFIG); /* only "max_qos" is inside len */
	assert_string_equal(err, "t.conf:1: max_qos: missing value");
	moat_config_free(&c);

	refused("pid_file /run/\xff.pid",
		"t.conf:1: pid_file: the value is not valid UTF-8 or holds a control character");
	refused("auto_id_prefix a\tb",
		"t.conf:1: auto_id_prefix: the value is not valid UTF-8 or holds a control "
		"character");
	refused("listener 1883 \xc0\x80",
		"t.conf:1: listener: the value is not valid UTF-8 or holds a control character");
	refused("log_dest file /var/log/\xed\xa0\x80",
		"t.conf:1: log_dest: the value is not valid UTF-8 or holds a control character");
	refused("max_qos \x1b[2J", "t.conf:1: max_qos: '?[2J' is not a number");
	/* UTF-8 is fine in strings */
	moat_config_defaults(&c);
	assert_int_equal(parse(&c, "pid_file /run/mööt.pid"), 0);
	assert_string_equal(c.pid_file, "/run/mööt.pid");
	moat_config_free(&c);
}

/* ---- scope ---- */

static void test_scope(void **state)
{
	struct moat_config *c = *state;

	ok(c, "max_connections 10\n"
	      "mount_point all/\n"
	      "allow_anonymous true\n"
	      "protocol websockets\n"
	      "listener 1883\n"
	      "max_connections 20\n"
	      "max_inflight_messages 5\n" /* global, even inside a listener block */
	      "listener 1884\n"
	      "mount_point b/\n"
	      "allow_anonymous false\n"
	      "protocol mqtt\n"
	      "listener 1885\n");
	assert_int_equal(c->defaults.max_connections, 10);
	assert_string_equal(c->defaults.mount_point, "all/");
	assert_int_equal(c->defaults.allow_anonymous, 1);
	assert_int_equal(c->n_listeners, 3);
	assert_int_equal(c->listeners[0].max_connections, 20);
	assert_string_equal(c->listeners[0].mount_point, "all/");
	assert_int_equal(c->listeners[0].allow_anonymous, 1);
	assert_int_equal(c->listeners[0].protocol, MOAT_PROTO_WEBSOCKETS);
	assert_int_equal(c->listeners[1].max_connections, 10);
	assert_string_equal(c->listeners[1].mount_point, "b/");
	assert_int_equal(c->listeners[1].allow_anonymous, 0);
	assert_int_equal(c->listeners[1].protocol, MOAT_PROTO_MQTT);
	assert_int_equal(c->listeners[2].max_connections, 10);
	assert_string_equal(c->listeners[2].mount_point, "all/");
	assert_int_equal(c->listeners[2].protocol, MOAT_PROTO_WEBSOCKETS);
	assert_int_equal(c->max_inflight_messages, 5);
	/* the listeners hold copies, not the defaults' strings */
	assert_ptr_not_equal(c->listeners[0].mount_point, c->defaults.mount_point);
	assert_int_equal(c->listeners[2].line, 12);
}

static void test_allow_anonymous(void **state)
{
	struct moat_config *c = *state;

	ok(c, "listener 1\nlistener 2\nallow_anonymous true\nlistener 3\nallow_anonymous false\n");
	assert_int_equal(c->defaults.allow_anonymous, -1);
	assert_int_equal(c->listeners[0].allow_anonymous, -1); /* unset: the broker decides */
	assert_int_equal(c->listeners[1].allow_anonymous, 1);
	assert_int_equal(c->listeners[2].allow_anonymous, 0);
}

static void test_strings_once(void **state)
{
	struct moat_config *c = *state;

	refused("pid_file a\npid_file b", "t.conf:2: pid_file: given twice (Mosquitto refuses "
					  "this too)");
	refused("bind_address a\nbind_address b",
		"t.conf:2: bind_address: given twice (Mosquitto refuses this too)");
	refused("listener 1\nmount_point a/\nmount_point b/",
		"t.conf:3: mount_point: given twice (Mosquitto refuses this too)");
	refused("mount_point a/#", "t.conf:1: mount_point: 'a/#' holds a wildcard ('+' or '#')");
	refused("mount_point +/", "t.conf:1: mount_point: '+/' holds a wildcard ('+' or '#')");
	ok(c, "mount_point a/\nlistener 1\nmount_point b/\nlistener 2\nmount_point c/\n");
	assert_string_equal(c->listeners[0].mount_point, "b/");
	assert_string_equal(c->listeners[1].mount_point, "c/");
	moat_config_free(c);
	moat_config_defaults(c);
	ok(c, "auto_id_prefix x-\nmax_qos 1\nmax_qos 0\n"); /* numbers: the last one wins */
	assert_string_equal(c->auto_id_prefix, "x-");
	assert_int_equal(c->max_qos, 0);
}

static void test_one_value_for_all(void **state)
{
	struct moat_config *c = *state;

	refused("listener 1\nmax_qos 1\nlistener 2\nmax_topic_alias 3\n",
		"t.conf:2: max_qos: moat applies one max_qos to every listener; with several "
		"listeners, set it before the first listener line");
	refused("listener 1\nmax_topic_alias 1\nport 1884\n",
		"t.conf:2: max_topic_alias: moat applies one max_topic_alias to every listener; "
		"with several listeners, set it before the first listener line");
	ok(c, "listener 1\nmax_qos 1\nmax_topic_alias 3\n");
	assert_int_equal(c->max_qos, 1);
	assert_int_equal(c->max_topic_alias, 3);
	moat_config_free(c);
	moat_config_defaults(c);
	ok(c, "max_qos 0\nlistener 1\nlistener 2\n");
	assert_int_equal(c->max_qos, 0);
}

/* ---- listeners ---- */

static void test_listener_forms(void **state)
{
	struct moat_config *c = *state;

	ok(c, "listener 1883 # all addresses\n"
	      "listener 8883 127.0.0.1 # loopback\n"
	      "listener 0 /run/moat/mqtt.sock\n"
	      "listener 1883 localhost\n");
	assert_int_equal(c->n_listeners, 4);
	assert_null(c->listeners[0].address);
	assert_string_equal(c->listeners[1].address, "127.0.0.1");
	assert_int_equal(c->listeners[2].port, 0);
	assert_string_equal(c->listeners[2].address, "/run/moat/mqtt.sock");
	assert_string_equal(c->listeners[3].address, "localhost");
	refused("listener 0", "t.conf:1: listener: port 0 needs a unix socket path "
			      "(listener 0 PATH)");
	refused("listener mqtt", "t.conf:1: listener: 'mqtt' is not a number");
	refused("listener 1883\nlistener 1884\nlistener 1883 # again",
		"t.conf:3: listener: port 1883 on all addresses is already a listener (t.conf:1)");
	refused("listener 1 ::\n\nlistener 1 ::",
		"t.conf:3: listener: port 1 on :: is already a listener (t.conf:1)");
}

static void test_listener_count(void **state)
{
	struct moat_config *c = *state;
	char *text = malloc(65 * 32);
	size_t n = 0;
	int i;

	assert_non_null(text);
	for (i = 1; i <= 64; i++)
		n += (size_t)sprintf(text + n, "listener %d\n", 1000 + i);
	ok(c, text);
	assert_int_equal(c->n_listeners, MOAT_CONFIG_MAX_LISTENERS);
	assert_int_equal(c->listeners[63].port, 1064);
	sprintf(text + n, "listener 2000\n");
	refused(text, "t.conf:65: listener: more than 64 listeners");
	free(text);
}

static void test_port_and_bind_address(void **state)
{
	struct moat_config *c = *state;

	ok(c, "max_connections 5\nport 1884\nlistener 8883\nmax_connections 6\n");
	assert_int_equal(c->n_listeners, 2);
	assert_int_equal(c->listeners[0].port, 8883);
	assert_int_equal(c->listeners[1].port, 1884); /* added after the last line */
	assert_null(c->listeners[1].address);
	assert_int_equal(c->listeners[1].max_connections, 5); /* from the defaults */
	assert_int_equal(c->listeners[1].line, 2);
	moat_config_free(c);
	moat_config_defaults(c);
	ok(c, "bind_address 127.0.0.1\n");
	assert_int_equal(c->n_listeners, 1);
	assert_int_equal(c->listeners[0].port, 1883);
	assert_string_equal(c->listeners[0].address, "127.0.0.1");
	moat_config_free(c);
	moat_config_defaults(c);
	ok(c, "port 1\nbind_address ::1\nport 2\n"); /* the last port wins */
	assert_int_equal(c->n_listeners, 1);
	assert_int_equal(c->listeners[0].port, 2);
	assert_string_equal(c->listeners[0].address, "::1");
	assert_int_equal(c->listeners[0].line, 3);
	refused("listener 1883\nport 1883\n",
		"t.conf:2: listener: port 1883 on all addresses is already a listener (t.conf:1)");
}

/* ---- logging ---- */

static void test_log_dest(void **state)
{
	struct moat_config *c = *state;

	ok(c, "log_dest stdout\n");
	assert_int_equal(c->log_dest, MOAT_LOGDEST_STDOUT); /* the first replaces stderr */
	ok(c, "log_dest syslog\nlog_dest stderr\n");
	assert_int_equal(c->log_dest, MOAT_LOGDEST_SYSLOG | MOAT_LOGDEST_STDERR);
	ok(c, "log_dest file   /var/log/moat/broker log.txt  \nlog_dest stdout\n");
	assert_int_equal(c->log_dest, MOAT_LOGDEST_FILE | MOAT_LOGDEST_STDOUT);
	assert_string_equal(c->log_file, "/var/log/moat/broker log.txt");
	moat_config_free(c);
	moat_config_defaults(c);
	ok(c, "log_dest stdout\nlog_dest none\n");
	assert_int_equal(c->log_dest, 0);
	ok(c, "log_dest none\nlog_dest syslog\n");
	assert_int_equal(c->log_dest, MOAT_LOGDEST_SYSLOG);
	refused("log_dest file a\nlog_dest file b",
		"t.conf:2: log_dest: a second file destination (only one is allowed)");
	refused("log_dest file", "t.conf:1: log_dest: file needs a path (log_dest file PATH)");
	refused("log_dest dlt", "t.conf:1: log_dest: dlt is not supported yet (moat logs to "
				"stderr, stdout, syslog or a file)");
	refused("log_dest mail", "t.conf:1: log_dest: 'mail' is not one of stderr, stdout, "
				 "syslog, file, none");
}

static void test_log_type(void **state)
{
	struct moat_config *c = *state;

	ok(c, "log_type error\n");
	assert_int_equal(c->log_type, MOAT_LOG_ERROR);
	ok(c, "log_type warning\nlog_type debug\nlog_type subscribe\nlog_type unsubscribe\n"
	      "log_type websockets\nlog_type notice\nlog_type information\n");
	assert_int_equal(c->log_type, MOAT_LOG_WARNING | MOAT_LOG_DEBUG | MOAT_LOG_SUBSCRIBE |
					      MOAT_LOG_UNSUBSCRIBE | MOAT_LOG_WEBSOCKETS |
					      MOAT_LOG_NOTICE | MOAT_LOG_INFORMATION);
	ok(c, "log_type all\n");
	assert_int_equal(c->log_type, MOAT_LOG_ALL);
	ok(c, "log_type none\nlog_type error\n");
	assert_int_equal(c->log_type, MOAT_LOG_ERROR);
	ok(c, "log_type debug\nlog_type none\n");
	assert_int_equal(c->log_type, 0);
	refused("log_type internal", "t.conf:1: log_type: 'internal' is not one of debug, error, "
				     "warning, notice, information, subscribe, unsubscribe, "
				     "websockets, all, none");
}

/* ---- transactions, files, includes ---- */

static void test_transactional(void **state)
{
	struct moat_config *c = *state;

	ok(c, "max_qos 1\npid_file /a\nlistener 1883\n");
	assert_int_equal(parse(c, "max_qos 0\nlistener 1884\nlog_dest file x\nbogus\n"),
			 MOAT_ECONFIG);
	assert_string_equal(err, "t.conf:4: unknown directive 'bogus'");
	assert_int_equal(c->max_qos, 1);
	assert_int_equal(c->n_listeners, 1);
	assert_null(c->log_file);
	assert_int_equal(c->log_dest, MOAT_LOGDEST_STDERR);
	assert_string_equal(c->pid_file, "/a");
	/* a second text goes on in the last listener of the first */
	ok(c, "max_connections 3\n");
	assert_int_equal(c->listeners[0].max_connections, 3);
	assert_int_equal(c->defaults.max_connections, -1);
}

static char tmp[256];

/* Makes a fresh temporary directory into tmp. */
static void make_tmp(void)
{
	snprintf(tmp, sizeof(tmp), "%s/moat-config-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
									     : "/tmp");
	assert_non_null(mkdtemp(tmp));
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(mkdir(path, 0700), 0);
}

static void remove_tree(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_include_dir(void **state)
{
	struct moat_config *c = *state;
	char text[512], want[1024];

	make_tmp();
	write_file(tmp, "b.conf", "listener 2\n");
	write_file(tmp, "A.conf", "listener 1\nmax_connections 9\n");
	write_file(tmp, "c.conf", "# listener from c\nlistener 3\n");
	write_file(tmp, "d.conf.bak", "bogus\n");
	write_file(tmp, ".conf", "bogus\n");
	write_file(tmp, "readme", "bogus\n");
	snprintf(text, sizeof(text), "mount_point m/\ninclude_dir %s\nmax_connections 4\n", tmp);
	ok(c, text);
	assert_int_equal(c->n_listeners, 3);
	assert_int_equal(c->listeners[0].port, 1);
	assert_int_equal(c->listeners[0].max_connections, 9);
	assert_int_equal(c->listeners[1].port, 2);
	assert_int_equal(c->listeners[2].port, 3);
	assert_int_equal(c->listeners[2].max_connections, 4); /* the include left that scope */
	assert_string_equal(c->listeners[2].mount_point, "m/");
	snprintf(want, sizeof(want), "%s/c.conf", tmp);
	assert_string_equal(c->listeners[2].file, want);
	assert_int_equal(c->listeners[2].line, 2);

	/* an error in an included file names that file and line */
	write_file(tmp, "b.conf", "listener 2\nmax_qos 7\n");
	snprintf(text, sizeof(text), "\ninclude_dir %s/\n", tmp);
	snprintf(want, sizeof(want),
		 "%s/b.conf:2: max_qos: 7 is out of bounds (0..2) (included from t.conf:2)", tmp);
	refused(text, want);
	remove_tree(tmp);

	refused_rc("include_dir /nonexistent/moat", MOAT_EIO,
		   "t.conf:1: include_dir: /nonexistent/moat: No such file or directory");
}

static void test_include_errors(void **state)
{
	char text[512], want[1024], sub[16], dir[300], inner[400];
	int i;

	(void)state;
	make_tmp();
	/* a directory named x.conf cannot be read */
	make_dir(tmp, "x.conf");
	snprintf(text, sizeof(text), "include_dir %s", tmp);
	snprintf(want, sizeof(want), "t.conf:1: include_dir: %s/x.conf: Is a directory", tmp);
	refused_rc(text, MOAT_EIO, want);
	remove_tree(tmp);

	/* a file that includes its own directory */
	make_tmp();
	snprintf(inner, sizeof(inner), "include_dir %s\n", tmp);
	write_file(tmp, "loop.conf", inner);
	snprintf(want, sizeof(want), "%s/loop.conf:1: include_dir: %s/loop.conf is already being "
		 "read (an include loop) (included from t.conf:1)", tmp, tmp);
	refused(inner, want);
	remove_tree(tmp);

	/* include_dir nested 9 deep: d0/a.conf includes d1, ... */
	make_tmp();
	for (i = 0; i <= 9; i++) {
		snprintf(sub, sizeof(sub), "d%d", i);
		make_dir(tmp, sub);
	}
	for (i = 0; i < 9; i++) {
		snprintf(dir, sizeof(dir), "%s/d%d", tmp, i);
		snprintf(inner, sizeof(inner), "include_dir %s/d%d\n", tmp, i + 1);
		write_file(dir, "a.conf", inner);
	}
	snprintf(text, sizeof(text), "include_dir %s/d0\n", tmp);
	{
		struct moat_config c;

		moat_config_defaults(&c);
		assert_int_equal(parse(&c, text), MOAT_ECONFIG);
		snprintf(want, sizeof(want), "%s/d7/a.conf:1: include_dir: nested more than 8 "
			 "levels deep", tmp);
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg("got %s", err);
		moat_config_free(&c);
	}
	/* 8 deep is fine */
	snprintf(dir, sizeof(dir), "%s/d7", tmp);
	write_file(dir, "a.conf", "listener 7\n");
	{
		struct moat_config c;

		moat_config_defaults(&c);
		assert_int_equal(parse(&c, text), 0);
		assert_int_equal(c.n_listeners, 1);
		moat_config_free(&c);
	}
	remove_tree(tmp);
}

static void test_load(void **state)
{
	struct moat_config *c = *state;
	char path[512], want[600];

	make_tmp();
	write_file(tmp, "moat.conf", "listener 1883\nallow_anonymous true\n\nmax_qos 5\n");
	snprintf(path, sizeof(path), "%s/moat.conf", tmp);
	assert_int_equal(moat_config_load(c, path, err, sizeof(err)), MOAT_ECONFIG);
	snprintf(want, sizeof(want), "%s:4: max_qos: 5 is out of bounds (0..2)", path);
	assert_string_equal(err, want);
	write_file(tmp, "moat.conf", "listener 1883\nallow_anonymous true\n");
	assert_int_equal(moat_config_load(c, path, err, sizeof(err)), 0);
	assert_int_equal(c->n_listeners, 1);
	assert_int_equal(c->listeners[0].allow_anonymous, 1);
	assert_string_equal(c->listeners[0].file, path);

	write_file(tmp, "empty.conf", "");
	snprintf(path, sizeof(path), "%s/empty.conf", tmp);
	moat_config_free(c);
	moat_config_defaults(c);
	assert_int_equal(moat_config_load(c, path, err, sizeof(err)), 0);
	assert_int_equal(c->n_listeners, 0);

	snprintf(path, sizeof(path), "%s/missing.conf", tmp);
	assert_int_equal(moat_config_load(c, path, err, sizeof(err)), MOAT_EIO);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	assert_string_equal(err, want);
	assert_int_equal(moat_config_load(c, tmp, err, sizeof(err)), MOAT_EIO);
	snprintf(want, sizeof(want), "%s: %s", tmp, strerror(EISDIR));
	assert_string_equal(err, want);
	remove_tree(tmp);
}

static void test_size_limits(void **state)
{
	struct moat_config *c = *state;

	/* a text past 16 MiB is refused before a byte of it is read */
	assert_int_equal(moat_config_parse_mem(c, "x", 16u * 1024 * 1024 + 1, "t.conf", err,
					       sizeof(err)), MOAT_ECONFIG);
	assert_string_equal(err, "t.conf: larger than 16 MiB");
	/* so is a file that never ends */
	assert_int_equal(moat_config_load(c, "/dev/zero", err, sizeof(err)), MOAT_ECONFIG);
	assert_string_equal(err, "/dev/zero: larger than 16 MiB");
	assert_int_equal(c->n_listeners, 0);
	/* a NULL text is an empty one */
	assert_int_equal(moat_config_parse(c, NULL, "t.conf", err, sizeof(err)), 0);
}

static void test_err_buffer(void **state)
{
	struct moat_config *c = *state;
	char small[12];

	assert_int_equal(moat_config_parse(c, "foo", "t.conf", small, sizeof(small)),
			 MOAT_ECONFIG);
	assert_string_equal(small, "t.conf:1: u");
	assert_int_equal(moat_config_parse(c, "foo", "t.conf", NULL, 0), MOAT_ECONFIG);
	assert_int_equal(moat_config_parse(c, "foo", NULL, err, sizeof(err)), MOAT_ECONFIG);
	assert_string_equal(err, "(config):1: unknown directive 'foo'");
}

/* Whether the failing allocator is in place (not under ASan or valgrind). */
static bool faults_work(void)
{
	void *(*volatile alloc)(size_t) = malloc;
	void *p;

	alloc_budget = 0;
	p = alloc(16);
	alloc_budget = -1;
	free(p);
	return ALLOC_FAULTS && p == NULL;
}

/*
 * Runs op with a budget of 0, 1, 2, ... allocations until it succeeds: every
 * failure must be MOAT_ENOMEM and leave the config as it was (checked by
 * op's caller through the returned count of failures); nothing may leak or
 * be freed twice (valgrind or LeakSanitizer-free runs see it).
 */
static void out_of_memory_loop(const char *text, const char *dir)
{
	struct moat_config c, fresh;
	char msg[128];
	long budget;
	int rc = -1, failures = 0;

	for (budget = 0; rc != 0; budget++) {
		moat_config_defaults(&c);
		if (!c.auto_id_prefix) /* the defaults' own allocation failed: retry */
			continue;
		alloc_budget = budget;
		rc = parse(&c, text);
		alloc_budget = -1;
		if (rc != 0) {
			if (rc != MOAT_ENOMEM)
				fail_msg("budget %ld: %d %s", budget, rc, err);
			assert_int_equal(c.n_listeners, 0);
			assert_null(c.pid_file);
			failures++;
		}
		moat_config_free(&c);
	}
	assert_true(failures > 5);

	/* reload: a failure leaves live as it was */
	moat_config_defaults(&fresh);
	assert_int_equal(parse(&fresh, text), 0);
	for (budget = 0, rc = -1; rc < 0; budget++) {
		moat_config_defaults(&c);
		assert_int_equal(moat_config_add_default_listener(&c, 1883), 0);
		alloc_budget = budget;
		rc = moat_config_apply_reload(&c, &fresh, msg, sizeof(msg));
		alloc_budget = -1;
		if (rc < 0) {
			assert_int_equal(rc, MOAT_ENOMEM);
			assert_string_equal(c.auto_id_prefix, "auto-");
			assert_null(c.log_file);
		}
		moat_config_free(&c);
	}
	moat_config_free(&fresh);
	(void)dir;
}

static void test_out_of_memory(void **state)
{
	char text[512];

	(void)state;
	if (!faults_work())
		skip();
	make_tmp();
	write_file(tmp, "a.conf", "listener 1884 ::1\nmount_point a/\n");
	write_file(tmp, "b.conf", "listener 1885\n");
	snprintf(text, sizeof(text),
		 "mount_point m/\nauto_id_prefix p-\npid_file /p\nuser u\n"
		 "log_dest file /l\nlog_timestamp_format %%F\nlistener 1883\n"
		 "include_dir %s\nport 1886\nbind_address ::\n", tmp);
	out_of_memory_loop(text, tmp);
	remove_tree(tmp);
}

/* ---- the default listener, reload, free ---- */

static void test_default_listener(void **state)
{
	struct moat_config *c = *state;

	assert_int_equal(moat_config_add_default_listener(c, 1883), 0);
	assert_int_equal(c->n_listeners, 1);
	assert_string_equal(c->listeners[0].address, "127.0.0.1");
	assert_int_equal(c->listeners[0].port, 1883);
	assert_int_equal(c->listeners[0].allow_anonymous, 1);
	assert_int_equal(c->listeners[0].protocol, MOAT_PROTO_MQTT);
	assert_null(c->listeners[0].file);
	assert_int_equal(moat_config_add_default_listener(c, 1883), MOAT_ECONFIG);
	moat_config_free(c);
	moat_config_defaults(c);
	ok(c, "allow_anonymous false\nmax_connections 50\n");
	assert_int_equal(moat_config_add_default_listener(c, 1884), 0);
	assert_int_equal(c->listeners[0].allow_anonymous, 0);
	assert_int_equal(c->listeners[0].max_connections, 50);
}

static void test_reload(void **state)
{
	struct moat_config *live = *state, fresh;
	char msg[256];

	ok(live, "max_inflight_messages 10\nauto_id_prefix a-\nworkers 2\npid_file /a.pid\n"
		 "log_dest stderr\nlistener 1883\nmax_connections 5\n");
	moat_config_defaults(&fresh);
	assert_int_equal(moat_config_parse(&fresh, "max_inflight_messages 30\nauto_id_prefix b-\n"
					   "workers 4\npid_file /b.pid\nlog_dest file /l og\n"
					   "log_type debug\nconnect_timeout 5\nlistener 1883\n"
					   "max_connections 6\nlistener 1884\n",
					   "f.conf", err, sizeof(err)),
			 0);
	assert_int_equal(moat_config_apply_reload(live, &fresh, msg, sizeof(msg)), 4);
	assert_string_equal(msg, "listener, max_connections, pid_file, workers");
	/* reload-safe settings were copied, as owned copies */
	assert_int_equal(live->max_inflight_messages, 30);
	assert_string_equal(live->auto_id_prefix, "b-");
	assert_ptr_not_equal(live->auto_id_prefix, fresh.auto_id_prefix);
	assert_int_equal(live->log_dest, MOAT_LOGDEST_FILE);
	assert_string_equal(live->log_file, "/l og");
	assert_ptr_not_equal(live->log_file, fresh.log_file);
	assert_int_equal(live->log_type, MOAT_LOG_DEBUG);
	assert_int_equal(live->connect_timeout, 5);
	/* the others were not */
	assert_int_equal(live->workers, 2);
	assert_string_equal(live->pid_file, "/a.pid");
	assert_int_equal(live->n_listeners, 1);
	assert_int_equal(live->listeners[0].max_connections, 5);
	/* applying again: nothing left to copy, the same settings to report */
	assert_int_equal(moat_config_apply_reload(live, &fresh, msg, sizeof(msg)), 4);
	/* a tiny buffer is truncated, not overrun; NULL is allowed */
	assert_int_equal(moat_config_apply_reload(live, &fresh, msg, 10), 4);
	assert_string_equal(msg, "listener,");
	assert_int_equal(moat_config_apply_reload(live, &fresh, NULL, 0), 4);
	moat_config_free(&fresh);

	/* the same config reloads with no change; strings to NULL are copied too */
	moat_config_defaults(&fresh);
	assert_int_equal(moat_config_parse(&fresh, "workers 2\npid_file /a.pid\nlistener 1883\n"
					   "max_connections 5\n",
					   "f.conf", err, sizeof(err)),
			 0);
	assert_int_equal(moat_config_apply_reload(live, &fresh, msg, sizeof(msg)), 0);
	assert_string_equal(msg, "");
	assert_null(live->log_file);
	assert_int_equal(live->log_dest, MOAT_LOGDEST_STDERR);
	assert_string_equal(live->auto_id_prefix, "auto-");
	moat_config_free(&fresh);
}

static void test_reload_listener_settings(void **state)
{
	struct moat_config *live = *state, fresh;
	char msg[256];

	ok(live, "listener 1883\nlistener 8883 ::1\n");
	moat_config_defaults(&fresh);
	assert_int_equal(moat_config_parse(&fresh, "listener 1883\nallow_anonymous true\n"
					   "listener 8883 ::1\nmount_point x/\nprotocol websockets\n",
					   "f.conf", err, sizeof(err)),
			 0);
	assert_int_equal(moat_config_apply_reload(live, &fresh, msg, sizeof(msg)), 3);
	assert_string_equal(msg, "allow_anonymous, mount_point, protocol");
	assert_int_equal(live->listeners[0].allow_anonymous, -1);
	assert_null(live->listeners[1].mount_point);
	moat_config_free(&fresh);
}

static void test_free_and_reuse(void **state)
{
	struct moat_config *c = *state;

	ok(c, "pid_file /p\nlistener 1 a\nmount_point m/\n");
	moat_config_free(c);
	moat_config_free(c); /* twice is harmless */
	moat_config_free(NULL);
	assert_int_equal(c->n_listeners, 0);
	assert_null(c->pid_file);
	moat_config_defaults(c); /* and it may be reused */
	ok(c, "listener 1\n");
	assert_int_equal(c->n_listeners, 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_defaults),
		T(test_empty_and_comments),
		T(test_blanks_and_crlf),
		T(test_session_directives),
		T(test_moat_directives),
	T(test_sentinel_directives),
	T(test_sentinel_allow_none),
	T(test_persistence_directives),
	T(test_process_directives),
		T(test_listener_directives),
		T(test_durations),
		T(test_bounds),
		T(test_number_syntax),
		T(test_bools),
		T(test_enums),
		T(test_missing_value),
		T(test_extra_values),
		T(test_unknown_directive),
		T(test_refused_directives),
		T(test_long_lines),
		T(test_hostile_bytes),
		T(test_scope),
		T(test_allow_anonymous),
		T(test_strings_once),
		T(test_one_value_for_all),
		T(test_listener_forms),
		T(test_listener_count),
		T(test_port_and_bind_address),
		T(test_log_dest),
		T(test_log_type),
		T(test_transactional),
		T(test_include_dir),
		T(test_include_errors),
		T(test_load),
		T(test_size_limits),
		T(test_out_of_memory),
		T(test_err_buffer),
		T(test_default_listener),
		T(test_reload),
		T(test_reload_listener_settings),
		T(test_free_and_reuse),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
