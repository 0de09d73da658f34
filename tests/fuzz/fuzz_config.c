/*
 * fuzz_config.c - libFuzzer target: the config reader (src/config/).
 *
 * The input is a config text, any bytes (NULs, invalid UTF-8, huge lines
 * and numbers included), read with moat_config_parse_mem as moat_config_load
 * reads a file. Checked:
 *   - the result is 0, MOAT_ECONFIG, MOAT_EIO or MOAT_ENOMEM;
 *   - a refusal leaves the config exactly as it was (transactional) and says
 *     why on one line: "fuzz.conf:LINE: ..." or a path, no control bytes;
 *   - an accepted config keeps every promise of config.h and the table:
 *     values within their bounds, at most MOAT_CONFIG_MAX_LISTENERS distinct
 *     listeners, each with allow_anonymous -1 (unset), 0 or 1, strings valid
 *     UTF-8, mount points without wildcards, a unix socket path for port 0;
 *   - reading the text again into the accepted config (it goes on in the last
 *     listener) also ends in one of the codes above;
 *   - moat_config_apply_reload from a live config to the accepted one
 *     returns a count and a NUL-terminated list, and the live config stays
 *     freeable;
 *   - everything is freed: LeakSanitizer reports any leak.
 * include_dir lines read the real filesystem (relative to the cwd); that is
 * part of what is fuzzed, and only ever reads.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/error.h"
#include "core/utf8.h"

#include "fuzz_common.h"

static bool valid_code(int rc)
{
	return rc == 0 || rc == MOAT_ECONFIG || rc == MOAT_EIO || rc == MOAT_ENOMEM;
}

/* A refusal's message: non-empty, NUL-terminated within the buffer, one line. */
static void check_message(const char *err, size_t len)
{
	size_t i;

	FZ_ASSERT(memchr(err, '\0', len) != NULL);
	FZ_ASSERT(err[0] != '\0');
	for (i = 0; err[i]; i++)
		FZ_ASSERT((unsigned char)err[i] >= 0x20 && err[i] != 0x7f);
}

static void check_text(const char *s)
{
	if (s)
		FZ_ASSERT(moat_utf8_check((const uint8_t *)s, strlen(s), 0) == MOAT_UTF8_OK);
}

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void check_listener(const struct moat_listener_conf *l)
{
	FZ_ASSERT(l->protocol == MOAT_PROTO_MQTT || l->protocol == MOAT_PROTO_WEBSOCKETS);
	FZ_ASSERT(l->socket_domain == MOAT_DOMAIN_ANY || l->socket_domain == MOAT_DOMAIN_IPV4 ||
	      l->socket_domain == MOAT_DOMAIN_IPV6);
	FZ_ASSERT(l->max_connections >= -1);
	/* -1 (unset) survives the read: the broker resolves it per bind address. */
	FZ_ASSERT(l->allow_anonymous >= -1 && l->allow_anonymous <= 1);
	check_text(l->address);
	check_text(l->mount_point);
	if (l->mount_point)
		FZ_ASSERT(!strpbrk(l->mount_point, "+#"));
}

/* The promises of an accepted config; parsed: every listener came from a line. */
static void check_config(const struct moat_config *c, bool parsed)
{
	int i, j;

	FZ_ASSERT(c->n_listeners >= 0 && c->n_listeners <= MOAT_CONFIG_MAX_LISTENERS);
	check_listener(&c->defaults);
	FZ_ASSERT(c->defaults.address == NULL && c->defaults.file == NULL);
	for (i = 0; i < c->n_listeners; i++) {
		const struct moat_listener_conf *l = &c->listeners[i];
		check_listener(l);
		FZ_ASSERT(l->port != 0 || l->address != NULL);
		if (parsed)
			FZ_ASSERT(l->file != NULL && l->line > 0);
		for (j = 0; j < i; j++)
			FZ_ASSERT(c->listeners[j].port != l->port ||
			      !same(c->listeners[j].address, l->address));
	}
	FZ_ASSERT(c->max_inflight_messages <= 65535);
	FZ_ASSERT(c->max_packet_size == 0 ||
	      (c->max_packet_size >= 20 && c->max_packet_size <= 268435460));
	FZ_ASSERT(c->message_size_limit <= 268435455);
	FZ_ASSERT(c->max_keepalive >= 10);
	FZ_ASSERT(c->max_qos <= 2);
	FZ_ASSERT(c->persistent_client_expiration >= 0);
	FZ_ASSERT(c->sys_interval <= 65535);
	FZ_ASSERT(c->workers <= 256);
	FZ_ASSERT(c->connect_timeout >= 1 && c->connect_timeout <= 3600);
	FZ_ASSERT(c->preauth_max_packet_size >= 64 && c->preauth_max_packet_size <= 268435460);
	FZ_ASSERT((c->log_dest & ~0xFu) == 0);
	FZ_ASSERT((c->log_dest & MOAT_LOGDEST_FILE) == 0 || c->log_file != NULL);
	FZ_ASSERT((c->log_type & ~(unsigned)MOAT_LOG_ALL) == 0);
	check_text(c->auto_id_prefix);
	check_text(c->pid_file);
	check_text(c->user);
	check_text(c->log_file);
	check_text(c->log_timestamp_format);
}

/* A refused read left c as moat_config_defaults made it. */
static void check_untouched(const struct moat_config *c)
{
	FZ_ASSERT(c->n_listeners == 0);
	FZ_ASSERT(c->defaults.allow_anonymous == -1 && c->defaults.mount_point == NULL);
	FZ_ASSERT(c->max_qos == 2 && c->max_inflight_messages == 20 && c->workers == 0);
	FZ_ASSERT(c->pid_file == NULL && c->user == NULL && c->log_file == NULL);
	FZ_ASSERT(c->log_dest == MOAT_LOGDEST_STDERR);
	FZ_ASSERT(c->auto_id_prefix == NULL || strcmp(c->auto_id_prefix, "auto-") == 0);
}

static void check_reload(const struct moat_config *fresh)
{
	struct moat_config live;
	char msg[128];
	int n;

	moat_config_defaults(&live);
	FZ_ASSERT(moat_config_add_default_listener(&live, 1883) == 0);
	n = moat_config_apply_reload(&live, fresh, msg, sizeof(msg));
	FZ_ASSERT(n >= 0 || n == MOAT_ENOMEM);
	FZ_ASSERT(memchr(msg, '\0', sizeof(msg)) != NULL);
	FZ_ASSERT((n == 0) == (msg[0] == '\0') || n < 0);
	check_config(&live, false);
	moat_config_free(&live);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_config c;
	char err[512];
	int rc;

	moat_config_defaults(&c);
	memset(err, 0x55, sizeof(err));
	rc = moat_config_parse_mem(&c, (const char *)data, size, "fuzz.conf", err, sizeof(err));
	FZ_ASSERT(valid_code(rc));
	if (rc != 0) {
		check_message(err, sizeof(err));
		check_untouched(&c);
	} else {
		check_config(&c, true);
		check_reload(&c);
		rc = moat_config_parse_mem(&c, (const char *)data, size, "again.conf", err,
					   sizeof(err));
		FZ_ASSERT(valid_code(rc));
		if (rc == 0)
			check_config(&c, true);
		else
			check_message(err, sizeof(err));
	}
	moat_config_free(&c);
	return 0;
}
