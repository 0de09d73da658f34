/*
 * directives.c - the directives moat supports and the reader that applies a
 * config text to a struct moat_config (see config.h, internal.h).
 *
 * The table `moat_config_directives` says everything about each supported
 * directive: name, value type, bounds, where the value lands (an offset into
 * struct moat_config or struct moat_listener_conf), its scope and whether a
 * reload may change it. The reader looks the first word of a line up and
 * hands the value to one generic setter per type; only listener, port,
 * bind_address, log_dest, log_type and include_dir have handlers of their
 * own. A name not in the table is looked up in refused.c, else it is unknown.
 *
 * Invariants:
 * - Listener-scoped directives before the first listener line set the
 *   defaults block; a listener starts as a copy of it, so the defaults are
 *   final once any listener exists. Global directives may appear anywhere.
 * - `port` and `bind_address` describe Mosquitto's default listener; it is
 *   added after the last line, from the final defaults.
 * - include_dir is textual: the included lines are read as if they stood in
 *   place of the include_dir line, in the scope they find and leave.
 * - A string directive may be given once per scope (Mosquitto refuses a
 *   duplicate too); other values: the last one wins.
 * - Every message is "FILE:LINE: why", one line, control bytes shown as '?'.
 * - No global state: a read keeps everything in struct moat_config_parser.
 */
#include "config/internal.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"

#define MAX_DEPTH 8 /* include_dir nesting */

#define HANDLER(f) \
	static int f(struct moat_config_parser *p, const struct moat_config_directive *d, char *v)
HANDLER(set_listener);
HANDLER(set_port);
HANDLER(set_bind_address);
HANDLER(set_log_dest);
HANDLER(set_log_type);
HANDLER(set_include_dir);
HANDLER(set_auth_methods);
HANDLER(set_detector);
HANDLER(set_ban_steps);
HANDLER(set_sentinel_allow);

static const struct moat_config_enum protocols[] = {
	{ "mqtt", MOAT_PROTO_MQTT }, { "websockets", MOAT_PROTO_WEBSOCKETS }, { NULL, 0 }
};
static const struct moat_config_enum tls_versions[] = {
	{ "tlsv1.2", 12 }, { "tlsv1.3", 13 }, { NULL, 0 }
};
static const struct moat_config_enum keyforms[] = { { "pem", 0 }, { NULL, 0 } };
static const struct moat_config_enum ocsp_modes[] = {
	{ "off", MOAT_OCSP_OFF }, { "soft", MOAT_OCSP_SOFT }, { "hard", MOAT_OCSP_HARD }, { NULL, 0 }
};
static const struct moat_config_enum sync_modes[] = {
	{ "always", 0 }, { "batch", 1 }, { "off", 2 }, { NULL, 0 }
};
static const struct moat_config_enum domains[] = {
	{ "ipv4", MOAT_DOMAIN_IPV4 }, { "ipv6", MOAT_DOMAIN_IPV6 }, { NULL, 0 }
};

/* Shorthands for the table: R(name, TYPE, flags), then G or L for the field. */
enum {
	LISTENER = MOAT_CFG_LISTENER,
	RELOAD = MOAT_CFG_RELOAD,
	OWN = MOAT_CFG_MOAT,
	ONE = MOAT_CFG_ONE_VALUE,
	TOPIC = MOAT_CFG_TOPIC,
	LOGFILE = MOAT_CFG_LOGFILE,
};
#define R(n, t, f) .name = (n), .type = MOAT_CFG_##t, .flags = (f)
#define G(m) .off = offsetof(struct moat_config, m), \
	     .width = (uint8_t)sizeof(((struct moat_config *)0)->m)
#define L(m) .off = offsetof(struct moat_listener_conf, m), \
	     .width = (uint8_t)sizeof(((struct moat_listener_conf *)0)->m)

const struct moat_config_directive moat_config_directives[] = {
	{ R("allow_anonymous", BOOL, LISTENER), L(allow_anonymous) },
	{ R("allow_zero_length_clientid", BOOL, RELOAD), G(allow_zero_length_clientid) },
	{ R("auto_id_prefix", STRING, RELOAD), G(auto_id_prefix) },
	{ R("bind_address", CUSTOM, 0), .set = set_bind_address },
	{ R("connect_timeout", UINT, RELOAD | OWN), G(connect_timeout), .min = 1, .max = 3600 },
	{ R("connection_messages", BOOL, RELOAD), G(connection_messages) },
	{ R("include_dir", CUSTOM, 0), .set = set_include_dir },
	{ R("inventory_max", UINT, OWN), G(inventory_max), .max = 10000000 },
	{ R("listener", CUSTOM, LISTENER), .set = set_listener },
	{ R("log_dest", CUSTOM, RELOAD | LOGFILE), G(log_dest), .set = set_log_dest },
	{ R("log_timestamp", BOOL, RELOAD), G(log_timestamp) },
	{ R("log_timestamp_format", STRING, RELOAD), G(log_timestamp_format) },
	{ R("log_type", CUSTOM, RELOAD), G(log_type), .set = set_log_type },
	{ R("max_accept_rate", UINT, LISTENER), L(max_accept_rate), .max = 1000000 },
	{ R("max_connections", INT, LISTENER), L(max_connections), .min = -1, .max = INT32_MAX },
	{ R("max_inflight_bytes", BYTES, RELOAD), G(max_inflight_bytes), .max = UINT64_MAX },
	{ R("max_inflight_messages", UINT, RELOAD), G(max_inflight_messages), .max = 65535 },
	{ R("max_keepalive", UINT, RELOAD), G(max_keepalive), .min = 10, .max = 65535 },
	{ R("max_packet_size", BYTES, RELOAD), G(max_packet_size), .min = 20, .max = 268435460 },
	{ R("max_qos", UINT, ONE), G(max_qos), .max = 2 },
	{ R("max_queued_bytes", BYTES, RELOAD), G(max_queued_bytes), .max = UINT64_MAX },
	{ R("max_queued_messages", UINT, RELOAD), G(max_queued_messages), .max = UINT32_MAX },
	{ R("max_subscriptions_per_client", UINT, RELOAD | OWN), G(max_subscriptions_per_client),
	  .max = UINT32_MAX },
	{ R("max_topic_alias", UINT, ONE), G(max_topic_alias), .max = 65535 },
	{ R("memory_limit", BYTES, 0), G(memory_limit), .max = UINT64_MAX },
	{ R("message_size_limit", BYTES, RELOAD), G(message_size_limit), .max = 268435455 },
	{ R("mount_point", STRING, LISTENER | TOPIC), L(mount_point) },
	{ R("persistent_client_expiration", DURATION, RELOAD), G(persistent_client_expiration) },
	{ R("pid_file", STRING, 0), G(pid_file) },
	{ R("port", CUSTOM, 0), .set = set_port },
	{ R("preauth_max_packet_size", BYTES, RELOAD | OWN), G(preauth_max_packet_size),
	  .min = 64, .max = 268435460 },
	{ R("protocol", ENUM, LISTENER), L(protocol), .names = protocols },
	{ R("queue_qos0_messages", BOOL, RELOAD), G(queue_qos0_messages) },
	{ R("retain_available", BOOL, RELOAD), G(retain_available) },
	{ R("set_tcp_nodelay", BOOL, 0), G(set_tcp_nodelay) },
	{ R("socket_domain", ENUM, LISTENER), L(socket_domain), .names = domains },
	{ R("sys_interval", UINT, RELOAD), G(sys_interval), .max = 65535 },
	{ R("upgrade_outgoing_qos", BOOL, RELOAD), G(upgrade_outgoing_qos) },
	{ R("user", STRING, 0), G(user) },
	{ R("workers", UINT, OWN), G(workers), .max = 256 },
	{ R("cafile", STRING, LISTENER), L(cafile) },
	{ R("capath", STRING, LISTENER), L(capath) },
	{ R("certfile", STRING, LISTENER), L(certfile) },
	{ R("ciphers", STRING, LISTENER), L(ciphers) },
	{ R("ciphers_tls1.3", STRING, LISTENER), L(ciphers_tls13) },
	{ R("crlfile", STRING, LISTENER), L(crlfile) },
	{ R("dhparamfile", STRING, LISTENER), L(dhparamfile) },
	{ R("keyfile", STRING, LISTENER), L(keyfile) },
	{ R("ocsp_cache_seconds", UINT, LISTENER | OWN), L(ocsp_cache_seconds), .min = 1,
	  .max = 604800 },
	{ R("ocsp_mode", ENUM, LISTENER | OWN), L(ocsp_mode), .names = ocsp_modes },
	{ R("ocsp_responder", STRING, LISTENER | OWN), L(ocsp_responder) },
	{ R("psk_file", STRING, LISTENER), L(psk_file) },
	{ R("psk_hint", STRING, LISTENER), L(psk_hint) },
	{ R("require_certificate", BOOL, LISTENER), L(require_certificate) },
	{ R("tls_curves", STRING, LISTENER | OWN), L(tls_curves) },
	{ R("tls_key_update_bytes", BYTES, LISTENER | OWN), L(tls_key_update_bytes),
	  .max = UINT64_MAX },
	{ R("tls_key_update_seconds", UINT, LISTENER | OWN), L(tls_key_update_seconds),
	  .max = UINT32_MAX },
	{ R("tls_keyform", ENUM, LISTENER), L(tls_keyform), .names = keyforms },
	{ R("tls_session_tickets", BOOL, LISTENER | OWN), L(tls_session_tickets) },
	{ R("tls_version", ENUM, LISTENER), L(tls_version), .names = tls_versions },
	{ R("use_identity_as_username", BOOL, LISTENER), L(use_identity_as_username) },
	{ R("use_san_as_username", BOOL, LISTENER | OWN), L(use_san_as_username) },
	{ R("use_subject_as_username", BOOL, LISTENER), L(use_subject_as_username) },
	{ R("admin_address", STRING, OWN), G(admin_address) },
	{ R("admin_cafile", STRING, OWN), G(admin_cafile) },
	{ R("admin_certfile", STRING, OWN), G(admin_certfile) },
	{ R("admin_keyfile", STRING, OWN), G(admin_keyfile) },
	{ R("admin_port", UINT, OWN), G(admin_port), .min = 1, .max = 65535 },
	{ R("admin_socket", STRING, OWN), G(admin_socket) },
	{ R("admin_token_file", STRING, OWN), G(admin_token_file) },
	{ R("audit_log", STRING, OWN), G(audit_log) },
	{ R("audit_log_keep", UINT, OWN), G(audit_log_keep), .min = 1, .max = 99 },
	{ R("audit_log_max_size", BYTES, OWN), G(audit_log_max_size), .max = UINT64_MAX },
	{ R("bans_file", STRING, OWN), G(bans_file) },
	{ R("client_idle_timeout", UINT, RELOAD | OWN), G(idle_timeout), .max = 604800 },
	{ R("lockdown", BOOL, RELOAD | OWN), G(lockdown) },
	{ R("max_byte_rate", BYTES, RELOAD | OWN), G(max_byte_rate), .max = UINT64_MAX },
	{ R("max_connection_rate", UINT, RELOAD | OWN), G(max_connection_rate), .max = 1000000 },
	{ R("max_connections_per_address", UINT, RELOAD | OWN), G(max_connections_per_address),
	  .max = UINT32_MAX },
	{ R("max_message_rate", UINT, RELOAD | OWN), G(max_message_rate), .max = 100000000 },
	{ R("autosave_interval", UINT, 0), G(autosave_interval), .max = UINT32_MAX },
	{ R("autosave_on_changes", BOOL, 0), G(autosave_on_changes) },
	{ R("persistence", BOOL, 0), G(persistence) },
	{ R("persistence_key_file", STRING, OWN), G(persistence_key_file) },
	{ R("persistence_location", STRING, 0), G(persistence_location) },
	{ R("persistence_sync", ENUM, OWN), G(persistence_sync), .names = sync_modes },
	{ R("persistence_sync_interval", UINT, OWN), G(persistence_sync_interval), .min = 1,
	  .max = 10000 },
	{ R("sentinel", BOOL, OWN), G(sentinel) },
	{ R("sentinel_abnormal_close", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_acl_denials", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_allow", CUSTOM, OWN), .set = set_sentinel_allow },
	{ R("sentinel_auth_fail_addr", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_auth_fail_clientid", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_auth_fail_user", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_availability", UINT, RELOAD | OWN), G(availability_s), .max = 604800 },
	{ R("sentinel_ban_steps", CUSTOM, OWN), .set = set_ban_steps },
	{ R("sentinel_connect_rate", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_flapping", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_idle", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_publish_flood", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_slowloris", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_throttle", UINT, RELOAD | OWN), G(throttle_s), .min = 1, .max = 86400 },
	{ R("sentinel_topic_scan", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_undeliverable", CUSTOM, OWN), .set = set_detector },
	{ R("sentinel_violations", CUSTOM, OWN), .set = set_detector },
	{ R("acl_file", STRING, LISTENER), L(acl_file) },
	{ R("auth_methods", CUSTOM, LISTENER | OWN), L(auth_methods), .set = set_auth_methods },
	{ R("auth_rehash", BOOL, LISTENER | OWN), L(auth_rehash) },
	{ R("auth_threads", UINT, OWN), G(auth_threads), .min = 1, .max = 64 },
	{ R("password_file", STRING, LISTENER), L(password_file) },
	{ R("websockets_origin", STRING, LISTENER | OWN), L(websockets_origin) },
	{ R("websockets_trusted_proxies", STRING, LISTENER | OWN), L(websockets_trusted_proxies) },
};

#define N_DIRECTIVES (sizeof(moat_config_directives) / sizeof(moat_config_directives[0]))

const size_t moat_config_n_directives = N_DIRECTIVES;

_Static_assert(N_DIRECTIVES <= MOAT_CONFIG_MAX_DIRECTIVES, "raise MOAT_CONFIG_MAX_DIRECTIVES");

/* Everything one read needs; lives for one moat_config_parse_mem/_load. */
struct moat_config_parser {
	struct moat_config *c;           /* the private copy being built */
	struct moat_listener_conf *scope; /* &c->defaults, or the listener being read */
	const char *file;                /* name for messages; borrowed */
	int line;                        /* 0 = no line (file-level message) */
	int depth;                       /* include_dir nesting of the current file */
	char *err;
	size_t errlen;
	bool log_dest_set, log_type_set; /* a first log_dest/log_type replaces the default */
	bool port_set;
	uint16_t port;
	char *bind_address;              /* owned */
	char *port_file;                 /* owned: where port/bind_address was given */
	int port_line;
	char one_value[320];             /* a deferred MOAT_CFG_ONE_VALUE complaint, or "" */
	unsigned char seen[N_DIRECTIVES];  /* strings given in global/defaults scope */
	unsigned char lseen[N_DIRECTIVES]; /* strings given in the current listener */
	const char *stack[MAX_DEPTH + 1]; /* canonical paths of the files being read */
	int nstack;
};

/* ---- messages ---- */

/* Replaces control bytes in s by '?', so a message is one safe log line. */
static void scrub(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/*
 * Copies s into buf (n >= 8) for quoting in a message: printable ASCII only
 * (anything else becomes '?'), cut to n-4 bytes with "..." after. Returns buf.
 */
static const char *shown(char *buf, size_t n, const char *s)
{
	size_t i;

	for (i = 0; s[i] && i < n - 4; i++)
		buf[i] = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? s[i] : '?';
	if (s[i])
		memcpy(buf + i, "...", 4);
	else
		buf[i] = '\0';
	return buf;
}

__attribute__((format(printf, 4, 0)))
static void vformat(const struct moat_config_parser *p, char *out, size_t n, const char *fmt,
		    va_list ap)
{
	int k;

	if (!out || n == 0)
		return;
	k = p->line > 0 ? snprintf(out, n, "%s:%d: ", p->file, p->line)
			: snprintf(out, n, "%s: ", p->file);
	if (k >= 0 && (size_t)k < n)
		vsnprintf(out + k, n - (size_t)k, fmt, ap);
	scrub(out);
}

/* Writes "FILE:LINE: message" into the caller's err. Returns rc. */
__attribute__((format(printf, 3, 4)))
static int fail(struct moat_config_parser *p, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vformat(p, p->err, p->errlen, fmt, ap);
	va_end(ap);
	return rc;
}

static int nomem(struct moat_config_parser *p)
{
	return fail(p, MOAT_ENOMEM, "out of memory");
}

/* ---- small helpers ---- */

static bool text_ok(const char *s)
{
	return moat_utf8_check((const uint8_t *)s, strlen(s), 0) == MOAT_UTF8_OK;
}

static void *field(const struct moat_config_parser *p, const struct moat_config_directive *d)
{
	char *base = d->flags & MOAT_CFG_LISTENER ? (char *)p->scope : (char *)p->c;
	return base + d->off;
}

static bool in_listener(const struct moat_config_parser *p)
{
	return p->scope != &p->c->defaults;
}

/* Stores v into a width-byte integer field (two's complement for signed). */
static void store_num(void *f, unsigned width, uint64_t v)
{
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	if (width == 1)
		memcpy(f, &u8, 1);
	else if (width == 2)
		memcpy(f, &u16, 2);
	else if (width == 4)
		memcpy(f, &u32, 4);
	else
		memcpy(f, &v, 8);
}

/* ---- generic setters, one per value type ---- */

/* Fails unless value is a single word. */
static int one_word(struct moat_config_parser *p, const struct moat_config_directive *d,
		    char *value)
{
	char *rest = value, q[72];

	moat_config_lex_word(&rest);
	if (*rest == '\0')
		return 0;
	if (*rest == '#')
		return fail(p, MOAT_ECONFIG,
			    "%s: '%s' after the value (a comment must be on a line of its own)",
			    d->name, shown(q, sizeof(q), rest));
	return fail(p, MOAT_ECONFIG, "%s: extra value '%s'", d->name, shown(q, sizeof(q), rest));
}

static bool in_bounds(int64_t min, uint64_t max, bool neg, uint64_t mag)
{
	if (neg && mag > 0)
		return min < 0 && mag <= (uint64_t)(-(min + 1)) + 1;
	return mag <= max && (min <= 0 || mag >= (uint64_t)min);
}

/*
 * Scans s as an integer in [min, max] into *v (two's complement if negative).
 * unit is appended to the bounds in the message ("" or " bytes").
 */
static int scan_bounded(struct moat_config_parser *p, const char *name, const char *s, int64_t min,
			uint64_t max, const char *unit, uint64_t *v)
{
	uint64_t mag = 0;
	bool neg = false;
	char q[72];
	int rc = moat_config_lex_number(s, &neg, &mag);

	if (rc == MOAT_LEX_NOTNUM)
		return fail(p, MOAT_ECONFIG, "%s: '%s' is not a number", name,
			    shown(q, sizeof(q), s));
	if (rc == MOAT_LEX_RANGE || !in_bounds(min, max, neg, mag))
		return fail(p, MOAT_ECONFIG, "%s: %s is out of bounds (%lld..%llu%s)", name,
			    shown(q, sizeof(q), s), (long long)min, (unsigned long long)max, unit);
	*v = neg ? (uint64_t)0 - mag : mag;
	return 0;
}

static int set_number(struct moat_config_parser *p, const struct moat_config_directive *d,
		      char *value)
{
	uint64_t v;
	int rc = scan_bounded(p, d->name, value, d->min, d->max,
			      d->type == MOAT_CFG_BYTES ? " bytes" : "", &v);

	if (rc == 0)
		store_num(field(p, d), d->width, v);
	return rc;
}

static int set_bool(struct moat_config_parser *p, const struct moat_config_directive *d,
		    char *value)
{
	bool b;
	char q[72];

	if (moat_config_lex_bool(value, &b) != MOAT_LEX_OK)
		return fail(p, MOAT_ECONFIG, "%s: '%s' is not a boolean (true or false)", d->name,
			    shown(q, sizeof(q), value));
	if (d->width == sizeof(int)) /* allow_anonymous: -1 unset, 0, 1 */
		*(int *)field(p, d) = b;
	else
		*(bool *)field(p, d) = b;
	return 0;
}

static int set_duration(struct moat_config_parser *p, const struct moat_config_directive *d,
			char *value)
{
	int64_t secs;
	char q[72];
	int rc = moat_config_lex_duration(value, &secs);

	if (rc == MOAT_LEX_RANGE)
		return fail(p, MOAT_ECONFIG, "%s: '%s' is too long", d->name,
			    shown(q, sizeof(q), value));
	if (rc != MOAT_LEX_OK)
		return fail(p, MOAT_ECONFIG, "%s: '%s' is not a duration (a positive number and "
				"a unit: h, d, w, m or y)", d->name, shown(q, sizeof(q), value));
	memcpy(field(p, d), &secs, sizeof(secs));
	return 0;
}

/* Writes "a, b, c" of an enum's words into buf. */
static const char *enum_list(char *buf, size_t n, const struct moat_config_enum *e)
{
	size_t k = 0;

	buf[0] = '\0';
	for (; e->name && k < n; e++)
		k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", e->name);
	return buf;
}

static int set_enum(struct moat_config_parser *p, const struct moat_config_directive *d,
		    char *value)
{
	const struct moat_config_enum *e;
	char q[72], list[96];

	for (e = d->names; e->name; e++) {
		if (strcmp(e->name, value) == 0) {
			store_num(field(p, d), d->width, e->value);
			return 0;
		}
	}
	return fail(p, MOAT_ECONFIG, "%s: '%s' is not one of %s", d->name,
		    shown(q, sizeof(q), value), enum_list(list, sizeof(list), d->names));
}

/* The seen-flags of d's scope: strings may be given once per scope. */
static unsigned char *seen_flag(struct moat_config_parser *p, const struct moat_config_directive *d)
{
	size_t i = (size_t)(d - moat_config_directives);
	return (d->flags & MOAT_CFG_LISTENER) && in_listener(p) ? &p->lseen[i] : &p->seen[i];
}

/* Checks a string value: valid UTF-8, no control characters. */
static int check_text(struct moat_config_parser *p, const char *name, const char *value)
{
	if (!text_ok(value))
		return fail(p, MOAT_ECONFIG, "%s: the value is not valid UTF-8 or holds a control "
				"character", name);
	return 0;
}

static int set_string(struct moat_config_parser *p, const struct moat_config_directive *d,
		      char *value)
{
	char **slot = field(p, d), *copy, q[72];
	unsigned char *seen = seen_flag(p, d);

	if (*seen)
		return fail(p, MOAT_ECONFIG, "%s: given twice (Mosquitto refuses this too)",
			    d->name);
	if (check_text(p, d->name, value))
		return MOAT_ECONFIG;
	if ((d->flags & MOAT_CFG_TOPIC) && strpbrk(value, "+#"))
		return fail(p, MOAT_ECONFIG, "%s: '%s' holds a wildcard ('+' or '#')", d->name,
			    shown(q, sizeof(q), value));
	copy = strdup(value);
	if (!copy)
		return nomem(p);
	free(*slot);
	*slot = copy;
	*seen = 1;
	return 0;
}

/* The methods auth_methods names (src/broker/auth.c gives each its meaning). */
static const char *const auth_method_words[] = {
	"anonymous", "password", "certificate", "psk", "scram-sha-256", "scram-sha-512", "scram", NULL
};

/* auth_methods LIST: alternatives separated by ',' or spaces, factors joined by '+'. */
HANDLER(set_auth_methods)
{
	char *copy = strdup(v), *save = NULL, *alt, q[72];
	int n = 0;

	if (!copy)
		return nomem(p);
	for (alt = strtok_r(copy, ", ", &save); alt; alt = strtok_r(NULL, ", ", &save), n++) {
		char *fsave = NULL, *f;
		for (f = strtok_r(alt, "+", &fsave); f; f = strtok_r(NULL, "+", &fsave)) {
			const char *const *w = auth_method_words;
			while (*w && strcmp(*w, f) != 0)
				w++;
			if (!*w) {
				shown(q, sizeof(q), f);
				free(copy);
				return fail(p, MOAT_ECONFIG, "auth_methods: '%s' is not a method "
						"(anonymous, password, certificate, psk, scram-sha-256, "
						"scram-sha-512, scram; '+' joins factors)", q);
			}
		}
	}
	free(copy);
	if (n == 0 || n > 8)
		return fail(p, MOAT_ECONFIG, "auth_methods: give 1 to 8 alternatives");
	return set_string(p, d, v);
}

/*
 * Remembers the first MOAT_CFG_ONE_VALUE directive met inside a listener block; the
 * complaint is raised at the end only if there is more than one listener,
 * since only then would one value for all differ from Mosquitto's meaning.
 */
static void note_one_value(struct moat_config_parser *p, const struct moat_config_directive *d)
{
	if (!(d->flags & MOAT_CFG_ONE_VALUE) || !in_listener(p) || p->one_value[0])
		return;
	snprintf(p->one_value, sizeof(p->one_value), "%s:%d: %s: moat applies one %s to every "
		 "listener; with several listeners, set it before the first listener line",
		 p->file, p->line, d->name, d->name);
	scrub(p->one_value);
}

/* Applies one directive to its trimmed value. */
static int apply(struct moat_config_parser *p, const struct moat_config_directive *d, char *value)
{
	int rc;

	value = moat_config_lex_trim(value);
	if (*value == '\0')
		return fail(p, MOAT_ECONFIG, "%s: missing value", d->name);
	if (d->type == MOAT_CFG_CUSTOM)
		return d->set(p, d, value);
	if (d->type == MOAT_CFG_STRING)
		return set_string(p, d, value);
	if ((rc = one_word(p, d, value)) != 0)
		return rc;
	if (d->type == MOAT_CFG_BOOL)
		rc = set_bool(p, d, value);
	else if (d->type == MOAT_CFG_DURATION)
		rc = set_duration(p, d, value);
	else if (d->type == MOAT_CFG_ENUM)
		rc = set_enum(p, d, value);
	else
		rc = set_number(p, d, value);
	if (rc == 0)
		note_one_value(p, d);
	return rc;
}

/* ---- listeners ---- */

/* Adds a listener at the parser's position, with its failures explained. */
static int add_listener(struct moat_config_parser *p, unsigned port, const char *addr)
{
	const struct moat_listener_conf *dup = NULL;
	char q[72];
	int rc = moat_config_new_listener(p->c, port, addr, p->file, p->line, &dup);

	if (rc == MOAT_EEXIST)
		return fail(p, MOAT_ECONFIG,
			    "listener: port %u on %s is already a listener (%s:%d)", port,
			    addr ? shown(q, sizeof(q), addr) : "all addresses",
			    dup && dup->file ? dup->file : "?", dup ? dup->line : 0);
	if (rc == MOAT_ENOSPC)
		return fail(p, MOAT_ECONFIG, "listener: more than %d listeners",
			    MOAT_CONFIG_MAX_LISTENERS);
	if (rc)
		return nomem(p);
	p->scope = &p->c->listeners[p->c->n_listeners - 1];
	memset(p->lseen, 0, sizeof(p->lseen));
	return 0;
}

/*
 * listener PORT [ADDRESS]: ADDRESS is a bind address, a host name, or with
 * port 0 a unix socket path. As in Mosquitto, a word after PORT that starts
 * with '#' is a comment.
 */
static int set_listener(struct moat_config_parser *p, const struct moat_config_directive *d,
			char *v)
{
	char *rest = v, *port_s = moat_config_lex_word(&rest), *addr;
	uint64_t port;
	char q[72];

	addr = moat_config_lex_word(&rest);
	if (addr && addr[0] == '#')
		addr = NULL;
	else if (*rest && *rest != '#')
		return fail(p, MOAT_ECONFIG, "%s: extra value '%s'", d->name,
			    shown(q, sizeof(q), rest));
	if (scan_bounded(p, d->name, port_s, 0, 65535, "", &port))
		return MOAT_ECONFIG;
	if (port == 0 && !addr)
		return fail(p, MOAT_ECONFIG, "listener: port 0 needs a unix socket path "
				"(listener 0 PATH)");
	if (addr && check_text(p, d->name, addr))
		return MOAT_ECONFIG;
	return add_listener(p, (unsigned)port, addr);
}

/* Records where Mosquitto's default listener was described (port wins). */
static int note_port_line(struct moat_config_parser *p, bool is_port)
{
	char *file;

	if (p->port_file && !is_port)
		return 0;
	file = strdup(p->file);
	if (!file)
		return nomem(p);
	free(p->port_file);
	p->port_file = file;
	p->port_line = p->line;
	return 0;
}

/* port N: Mosquitto's deprecated default listener; the last port given wins. */
static int set_port(struct moat_config_parser *p, const struct moat_config_directive *d, char *v)
{
	uint64_t port;

	if (one_word(p, d, v) || scan_bounded(p, d->name, v, 1, 65535, "", &port))
		return MOAT_ECONFIG;
	p->port = (uint16_t)port;
	p->port_set = true;
	return note_port_line(p, true);
}

/* bind_address HOST: the address of the default listener. */
static int set_bind_address(struct moat_config_parser *p, const struct moat_config_directive *d,
			    char *v)
{
	unsigned char *seen = &p->seen[d - moat_config_directives];

	if (*seen)
		return fail(p, MOAT_ECONFIG, "%s: given twice (Mosquitto refuses this too)",
			    d->name);
	if (one_word(p, d, v) || check_text(p, d->name, v))
		return MOAT_ECONFIG;
	p->bind_address = strdup(v);
	if (!p->bind_address)
		return nomem(p);
	*seen = 1;
	return note_port_line(p, false);
}

/* ---- logging ---- */

static const struct moat_config_enum log_dests[] = {
	{ "stderr", MOAT_LOGDEST_STDERR },
	{ "stdout", MOAT_LOGDEST_STDOUT },
	{ "syslog", MOAT_LOGDEST_SYSLOG },
	{ "file", MOAT_LOGDEST_FILE },
	{ "none", 0 },
	{ NULL, 0 },
};

static const struct moat_config_enum log_types[] = {
	{ "debug", MOAT_LOG_DEBUG },
	{ "error", MOAT_LOG_ERROR },
	{ "warning", MOAT_LOG_WARNING },
	{ "notice", MOAT_LOG_NOTICE },
	{ "information", MOAT_LOG_INFORMATION },
	{ "subscribe", MOAT_LOG_SUBSCRIBE },
	{ "unsubscribe", MOAT_LOG_UNSUBSCRIBE },
	{ "websockets", MOAT_LOG_WEBSOCKETS },
	{ "all", MOAT_LOG_ALL },
	{ "none", 0 },
	{ NULL, 0 },
};

static const struct moat_config_enum *find_name(const struct moat_config_enum *e,
						const char *name)
{
	for (; e->name; e++)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

/* log_dest file PATH: the rest of the line is the path. */
static int set_log_file(struct moat_config_parser *p, const struct moat_config_directive *d,
			char *path)
{
	struct moat_config *c = p->c;

	path = moat_config_lex_trim(path);
	if (*path == '\0')
		return fail(p, MOAT_ECONFIG, "%s: file needs a path (log_dest file PATH)", d->name);
	if (c->log_file)
		return fail(p, MOAT_ECONFIG, "%s: a second file destination (only one is allowed)",
			    d->name);
	if (check_text(p, d->name, path))
		return MOAT_ECONFIG;
	c->log_file = strdup(path);
	if (!c->log_file)
		return nomem(p);
	c->log_dest |= MOAT_LOGDEST_FILE;
	return 0;
}

/*
 * log_dest DEST: accumulates; the first one replaces the default (stderr),
 * and none clears what came before, as in Mosquitto.
 */
static int set_log_dest(struct moat_config_parser *p, const struct moat_config_directive *d,
			char *v)
{
	char *rest = v, *word = moat_config_lex_word(&rest), q[72], list[96];
	const struct moat_config_enum *e = find_name(log_dests, word);

	if (!p->log_dest_set)
		p->c->log_dest = 0;
	p->log_dest_set = true;
	if (strcmp(word, "topic") == 0 || strcmp(word, "dlt") == 0)
		return fail(p, MOAT_ECONFIG, "%s: %s is not supported yet (moat logs to stderr, "
				"stdout, syslog or a file)", d->name, word);
	if (!e)
		return fail(p, MOAT_ECONFIG, "%s: '%s' is not one of %s", d->name,
			    shown(q, sizeof(q), word), enum_list(list, sizeof(list), log_dests));
	if (e->value == MOAT_LOGDEST_FILE)
		return set_log_file(p, d, rest);
	if (*rest)
		return fail(p, MOAT_ECONFIG, "%s: extra value '%s'", d->name,
			    shown(q, sizeof(q), rest));
	p->c->log_dest = e->value ? p->c->log_dest | e->value : 0;
	return 0;
}

/* log_type TYPE: accumulates like log_dest; all and none set the whole mask. */
static int set_log_type(struct moat_config_parser *p, const struct moat_config_directive *d,
			char *v)
{
	const struct moat_config_enum *e;
	char q[72], list[128];

	if (one_word(p, d, v))
		return MOAT_ECONFIG;
	e = find_name(log_types, v);
	if (!e)
		return fail(p, MOAT_ECONFIG, "%s: '%s' is not one of %s", d->name,
			    shown(q, sizeof(q), v), enum_list(list, sizeof(list), log_types));
	if (!p->log_type_set)
		p->c->log_type = 0;
	p->log_type_set = true;
	if (e->value == 0 || e->value == MOAT_LOG_ALL)
		p->c->log_type = e->value;
	else
		p->c->log_type |= e->value;
	return 0;
}

/* ---- the sentinel's directives ---- */

const char *const moat_config_detector_names[MOAT_CONFIG_DETECTORS] = {
	"connect_rate", "auth_fail_addr", "auth_fail_user", "auth_fail_clientid", "abnormal_close",
	"flapping",	"topic_scan",	  "acl_denials",    "undeliverable",	  "idle",
	"slowloris",	"violations",	  "publish_flood",
};

static const struct moat_config_enum actions[] = {
	{ "log", 0 }, { "disconnect", 1 }, { "throttle", 2 }, { "ban", 3 }, { NULL, 0 }
};

/* Reads one positive integer word from *rest into *out (1..max). */
static int word_uint(struct moat_config_parser *p, const char *name, char **rest, const char *what,
		     uint64_t max, uint32_t *out)
{
	char *w = moat_config_lex_word(rest), q[72];
	uint64_t v;
	bool neg;

	if (!w)
		return fail(p, MOAT_ECONFIG, "%s: missing %s", name, what);
	if (moat_config_lex_number(w, &neg, &v) != MOAT_LEX_OK || neg || v < 1 || v > max)
		return fail(p, MOAT_ECONFIG, "%s: %s '%s' is not 1..%llu", name, what,
			    shown(q, sizeof(q), w), (unsigned long long)max);
	*out = (uint32_t)v;
	return 0;
}

/* sentinel_NAME THRESHOLD WINDOW_SECONDS ACTION, or sentinel_NAME off. */
HANDLER(set_detector)
{
	struct moat_config_detector *det = NULL;
	const struct moat_config_enum *a;
	char *rest = v, *w, q[72], list[64];
	int i;

	for (i = 0; i < MOAT_CONFIG_DETECTORS; i++)
		if (strcmp(d->name + strlen("sentinel_"), moat_config_detector_names[i]) == 0)
			det = &p->c->detectors[i];
	if (!det)
		return fail(p, MOAT_ECONFIG, "%s: unknown detector", d->name);
	det->set = true;
	if (strcmp(v, "off") == 0) {
		det->enabled = false;
		return 0;
	}
	if (word_uint(p, d->name, &rest, "threshold", 1000000000, &det->threshold) ||
	    word_uint(p, d->name, &rest, "window", 604800, &det->window_s))
		return MOAT_ECONFIG;
	if (!(w = moat_config_lex_word(&rest)))
		return fail(p, MOAT_ECONFIG, "%s: missing action (%s)", d->name,
			    enum_list(list, sizeof(list), actions));
	if (!(a = find_name(actions, w)))
		return fail(p, MOAT_ECONFIG, "%s: action '%s' is not one of %s (or give 'off')",
			    d->name, shown(q, sizeof(q), w), enum_list(list, sizeof(list), actions));
	if (*rest)
		return fail(p, MOAT_ECONFIG, "%s: extra value '%s'", d->name, shown(q, sizeof(q), rest));
	det->action = (uint8_t)a->value;
	det->enabled = true;
	return 0;
}

/* sentinel_ban_steps SECONDS...: the ban durations for a 1st, 2nd, ... offence. */
HANDLER(set_ban_steps)
{
	char *rest = v;
	int n = 0;

	(void)d;
	while (*rest) {
		if (n == MOAT_CONFIG_BAN_STEPS)
			return fail(p, MOAT_ECONFIG, "sentinel_ban_steps: at most %d steps",
				    MOAT_CONFIG_BAN_STEPS);
		if (word_uint(p, "sentinel_ban_steps", &rest, "duration", 31536000,
			      &p->c->ban_steps[n++]))
			return MOAT_ECONFIG;
	}
	if (n == 0)
		return fail(p, MOAT_ECONFIG, "sentinel_ban_steps: missing value");
	p->c->n_ban_steps = n;
	return 0;
}

/* True if s is an IPv4/IPv6 address, with an optional /prefix in range. */
static bool cidr_ok(const char *s)
{
	char addr[64], *slash;
	unsigned char buf[16];
	bool v6 = strchr(s, ':') != NULL;
	uint64_t bits;
	bool neg;

	if (strlen(s) >= sizeof(addr))
		return false;
	strcpy(addr, s);
	slash = strchr(addr, '/');
	if (slash) {
		*slash++ = 0;
		/* plain decimal, as the bans code reads it: no sign, no leading zero, no 0x */
		if (!*slash || strspn(slash, "0123456789") != strlen(slash) ||
		    (slash[0] == '0' && slash[1]) ||
		    moat_config_lex_number(slash, &neg, &bits) != MOAT_LEX_OK || neg ||
		    bits > (v6 ? 128u : 32u))
			return false;
	}
	return inet_pton(v6 ? AF_INET6 : AF_INET, addr, buf) == 1;
}

/*
 * sentinel_allow ENTRY...: CIDRs, clientid:ID, username:NAME; accumulates.
 * Unset, the list is loopback (127.0.0.0/8, ::1); "none" only turns that
 * default off (entries on other lines stay).
 */
HANDLER(set_sentinel_allow)
{
	char *rest = v, *w, q[72], *joined;
	size_t old;

	(void)d;
	while ((w = moat_config_lex_word(&rest))) {
		if (strcmp(w, "none") == 0) {
			if (!p->c->sentinel_allow && !(p->c->sentinel_allow = calloc(1, 1)))
				return nomem(p);
			continue;
		}
		bool named = strncmp(w, "clientid:", 9) == 0 || strncmp(w, "username:", 9) == 0;
		if ((named && !w[9]) || (!named && !cidr_ok(w)))
			return fail(p, MOAT_ECONFIG, "sentinel_allow: '%s' is not an address, a CIDR, "
					"clientid:ID or username:NAME", shown(q, sizeof(q), w));
		old = p->c->sentinel_allow ? strlen(p->c->sentinel_allow) : 0;
		joined = realloc(p->c->sentinel_allow, old + strlen(w) + 2);
		if (!joined)
			return nomem(p);
		if (old)
			joined[old++] = ' ';
		strcpy(joined + old, w);
		p->c->sentinel_allow = joined;
	}
	return 0;
}

/* ---- reading text and files ---- */

static const struct moat_config_directive *find_directive(const char *name)
{
	size_t i;

	for (i = 0; i < N_DIRECTIVES; i++)
		if (strcmp(moat_config_directives[i].name, name) == 0)
			return &moat_config_directives[i];
	return NULL;
}

/* One line: blank, comment, or `directive value...`. */
static int do_line(struct moat_config_parser *p, char *line)
{
	char *rest = line, *name = moat_config_lex_word(&rest), q[72];
	const struct moat_config_directive *d;
	const char *why;

	if (!name || name[0] == '#')
		return 0;
	d = find_directive(name);
	if (d)
		return apply(p, d, rest);
	why = moat_config_refusal(name);
	if (why)
		return fail(p, MOAT_ECONFIG, "%s: %s", shown(q, sizeof(q), name), why);
	return fail(p, MOAT_ECONFIG, "unknown directive '%s'", shown(q, sizeof(q), name));
}

/* Reads every line of text (len bytes, text[len] == '\0'), named file. */
static int parse_text(struct moat_config_parser *p, char *text, size_t len, const char *file)
{
	struct moat_config_lexer lx;
	char *line;
	int rc;

	moat_config_lex_init(&lx, text, len);
	p->file = file;
	while ((rc = moat_config_lex_line(&lx, &line)) != 0) {
		p->line = lx.line;
		if (rc == -MOAT_LEX_LONG)
			return fail(p, MOAT_ECONFIG, "line longer than %d bytes",
				    MOAT_CONFIG_MAX_LINE);
		if (rc == -MOAT_LEX_NUL)
			return fail(p, MOAT_ECONFIG, "line holds a NUL byte");
		if ((rc = do_line(p, line)) != 0)
			return rc;
	}
	return 0;
}

/* Adds " (included from FILE:LINE)" to the message in err. */
static void add_context(struct moat_config_parser *p, const char *file, int line)
{
	size_t k;

	if (!p->err || p->errlen == 0)
		return;
	k = strlen(p->err);
	if (k + 1 < p->errlen)
		snprintf(p->err + k, p->errlen - k, " (included from %s:%d)", file, line);
	scrub(p->err);
}

static bool on_stack(const struct moat_config_parser *p, const char *canon)
{
	int i;

	for (i = 0; i < p->nstack; i++)
		if (p->stack[i] && strcmp(p->stack[i], canon) == 0)
			return true;
	return false;
}

/* Reads one included file in place of the include_dir line. */
static int read_include(struct moat_config_parser *p, const char *path)
{
	const char *outer = p->file;
	int outer_line = p->line, rc;
	char *text = NULL, *canon;
	size_t len;

	rc = moat_config_lex_read(path, &text, &len);
	if (rc)
		return fail(p, moat_config_lex_code(rc), "include_dir: %s: %s", path, moat_config_lex_reason(rc));
	canon = realpath(path, NULL);
	if (canon && on_stack(p, canon)) {
		rc = fail(p, MOAT_ECONFIG, "include_dir: %s is already being read (an include "
				"loop)", path);
		goto out;
	}
	p->stack[p->nstack++] = canon;
	p->depth++;
	rc = parse_text(p, text, len, path);
	p->depth--;
	p->nstack--;
	if (rc)
		add_context(p, outer, outer_line);
	p->file = outer;
	p->line = outer_line;
out:
	free(canon);
	free(text);
	return rc;
}

/*
 * include_dir DIR: reads DIR/ *.conf in order, as if their lines stood here.
 * The rest of the line is the directory; relative paths are from the cwd.
 */
static int set_include_dir(struct moat_config_parser *p, const struct moat_config_directive *d,
			   char *dir)
{
	char **paths = NULL;
	size_t n = 0, i;
	int rc;

	if (p->depth >= MAX_DEPTH)
		return fail(p, MOAT_ECONFIG, "%s: nested more than %d levels deep", d->name,
			    MAX_DEPTH);
	rc = moat_config_lex_dir(dir, &paths, &n);
	if (rc)
		return fail(p, moat_config_lex_code(rc), "%s: %s: %s", d->name, dir, moat_config_lex_reason(rc));
	for (i = 0; i < n && rc == 0; i++)
		rc = read_include(p, paths[i]);
	moat_config_lex_dir_free(paths, n);
	return rc;
}


/* ---- the whole read ---- */

/* After the last line: the default listener, deferred checks, allow_anonymous. */
static int finish(struct moat_config_parser *p)
{
	struct moat_config *c = p->c;
	int i, rc;

	if (p->port_set || p->bind_address) {
		p->file = p->port_file;
		p->line = p->port_line;
		rc = add_listener(p, p->port_set ? p->port : 1883, p->bind_address);
		if (rc)
			return rc;
	}
	if (p->one_value[0] && c->n_listeners > 1) {
		if (p->err && p->errlen)
			snprintf(p->err, p->errlen, "%s", p->one_value);
		return MOAT_ECONFIG;
	}
	for (i = 0; i < c->n_listeners; i++) {
		struct moat_listener_conf *l = &c->listeners[i];
		if (l->allow_anonymous < 0) /* still -1 if the defaults leave it unset too */
			l->allow_anonymous = c->defaults.allow_anonymous;
	}
	return 0;
}

/*
 * The parser is on the heap: with its flags, stack and message buffer it is
 * too big to be a polite stack object. A text read into a config that has
 * listeners already goes on in the last one, as if appended to its file.
 */
int moat_config_read(struct moat_config *c, char *text, size_t len, const char *file,
		     const char *canon, char *err, size_t errlen)
{
	struct moat_config_parser *p = calloc(1, sizeof(*p));
	int rc;

	if (!p) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", file);
		return MOAT_ENOMEM;
	}
	p->c = c;
	p->scope = c->n_listeners ? &c->listeners[c->n_listeners - 1] : &c->defaults;
	p->file = file;
	p->err = err;
	p->errlen = errlen;
	p->stack[p->nstack++] = canon;
	rc = parse_text(p, text, len, file);
	if (rc == 0)
		rc = finish(p);
	free(p->bind_address);
	free(p->port_file);
	free(p);
	return rc;
}
