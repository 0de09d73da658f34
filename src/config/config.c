/*
 * config.c - the config object (see config.h): defaults, deep copy, free,
 * the transactional parse and load, the default listener, and reload.
 *
 * What the language means is in directives.c; this file treats a config as
 * a value. Invariants:
 * - Every string a config points to is owned by it (listener file names
 *   too), so moat_config_free is the only release and copies never share.
 * - Parsing is transactional: a text is applied to a deep copy of the
 *   caller's config, which replaces it only when the whole text (and every
 *   included file) was read. On failure the caller's config is unchanged.
 * - Reload walks the directive table: what it marks reload-safe is copied
 *   from the fresh config into the live one, the rest is only reported.
 *   Strings are duplicated before anything changes, so running out of
 *   memory leaves the live config as it was.
 */
#include "config/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Sets *dst to an owned copy of src (NULL stays NULL). 0 or MOAT_ENOMEM. */
static int copy_str(char **dst, const char *src)
{
	*dst = NULL;
	if (src && !(*dst = strdup(src)))
		return MOAT_ENOMEM;
	return 0;
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* ---- listeners ---- */

/* Every string a listener owns, so free and copy cannot forget one. */
#define LS(f) offsetof(struct moat_listener_conf, f)
static const size_t listener_strings[] = {
	LS(address),	LS(mount_point),   LS(file),	     LS(cafile),
	LS(capath),	LS(certfile),	   LS(keyfile),	     LS(crlfile),
	LS(dhparamfile), LS(ciphers),	   LS(ciphers_tls13), LS(tls_curves),
	LS(psk_file),	LS(psk_hint),	   LS(ocsp_responder), LS(websockets_origin),
	LS(websockets_trusted_proxies), LS(password_file), LS(acl_file), LS(auth_methods),
};
#define N_LS (sizeof(listener_strings) / sizeof(listener_strings[0]))

static char **lstr(struct moat_listener_conf *l, size_t i)
{
	return (char **)((char *)l + listener_strings[i]);
}

static void free_listener(struct moat_listener_conf *l)
{
	size_t i;

	for (i = 0; i < N_LS; i++) {
		free(*lstr(l, i));
		*lstr(l, i) = NULL;
	}
}

/* Makes l a deep copy of src. 0, or MOAT_ENOMEM with l holding no strings. */
static int copy_listener(struct moat_listener_conf *l, const struct moat_listener_conf *src)
{
	size_t i;

	*l = *src;
	for (i = 0; i < N_LS; i++)
		*lstr(l, i) = NULL;
	for (i = 0; i < N_LS; i++)
		if (copy_str(lstr(l, i), *lstr((struct moat_listener_conf *)src, i)))
			goto fail;
	return 0;
fail:
	free_listener(l);
	return MOAT_ENOMEM;
}

/* Returns the listener on port and address, or NULL. */
static const struct moat_listener_conf *find_listener(const struct moat_config *c,
						      unsigned port, const char *addr)
{
	int i;

	for (i = 0; i < c->n_listeners; i++)
		if (c->listeners[i].port == port && same_str(c->listeners[i].address, addr))
			return &c->listeners[i];
	return NULL;
}

int moat_config_new_listener(struct moat_config *c, unsigned port, const char *addr,
			     const char *file, int line, const struct moat_listener_conf **dup)
{
	const struct moat_listener_conf *other = find_listener(c, port, addr);
	struct moat_listener_conf *l;
	char *a = NULL, *f = NULL;

	if (other) {
		if (dup)
			*dup = other;
		return MOAT_EEXIST;
	}
	if (c->n_listeners >= MOAT_CONFIG_MAX_LISTENERS)
		return MOAT_ENOSPC;
	l = &c->listeners[c->n_listeners];
	if (copy_str(&a, addr) || copy_str(&f, file) || copy_listener(l, &c->defaults)) {
		free(a);
		free(f);
		return MOAT_ENOMEM;
	}
	free(l->address);
	free((char *)l->file);
	l->address = a;
	l->file = f;
	l->port = (uint16_t)port;
	l->line = line;
	c->n_listeners++;
	return 0;
}

/* ---- parse and load ---- */

/* ---- the config as a value ---- */

/* Every string the config owns outside its listeners, so free and copy cannot forget one. */
#define GS(f) offsetof(struct moat_config, f)
static const size_t global_strings[] = {
	GS(auto_id_prefix), GS(pid_file), GS(user), GS(log_file), GS(log_timestamp_format),
	GS(audit_log), GS(bans_file), GS(admin_socket), GS(admin_address), GS(admin_certfile),
	GS(admin_keyfile), GS(admin_cafile), GS(admin_token_file), GS(sentinel_allow), GS(persistence_location),
	GS(persistence_key_file),
};
#define N_GS (sizeof(global_strings) / sizeof(global_strings[0]))

static char **gstr(struct moat_config *c, size_t i)
{
	return (char **)((char *)c + global_strings[i]);
}

static void free_globals(struct moat_config *c)
{
	size_t i;

	for (i = 0; i < N_GS; i++) {
		free(*gstr(c, i));
		*gstr(c, i) = NULL;
	}
}

void moat_config_free(struct moat_config *c)
{
	int i;

	if (!c)
		return;
	free_globals(c);
	free_listener(&c->defaults);
	for (i = 0; i < c->n_listeners; i++)
		free_listener(&c->listeners[i]);
	c->n_listeners = 0;
}

/* Makes dst a deep copy of src. 0, or MOAT_ENOMEM with dst holding nothing. */
static int copy_config(struct moat_config *dst, const struct moat_config *src)
{
	int i;

	size_t k;

	*dst = *src;
	for (k = 0; k < N_GS; k++)
		*gstr(dst, k) = NULL;
	dst->n_listeners = 0;
	if (copy_listener(&dst->defaults, &src->defaults))
		return MOAT_ENOMEM;
	for (k = 0; k < N_GS; k++)
		if (copy_str(gstr(dst, k), *gstr((struct moat_config *)src, k)))
			goto fail;
	for (i = 0; i < src->n_listeners; i++, dst->n_listeners++)
		if (copy_listener(&dst->listeners[i], &src->listeners[i]))
			goto fail;
	return 0;
fail:
	moat_config_free(dst);
	return MOAT_ENOMEM;
}

/*
 * Reads text (len bytes, text[len] == '\0', modified in place) into c,
 * transactionally: into a deep copy that replaces c only on success. canon
 * (borrowed, may be NULL) is the file's canonical path.
 */
static int parse_top(struct moat_config *c, char *text, size_t len, const char *file,
		     const char *canon, char *err, size_t errlen)
{
	struct moat_config work;
	int rc = copy_config(&work, c);

	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", file);
		return rc;
	}
	rc = moat_config_read(&work, text, len, file, canon, err, errlen);
	if (rc) {
		moat_config_free(&work);
		return rc;
	}
	moat_config_free(c);
	*c = work;
	return 0;
}

int moat_config_parse_mem(struct moat_config *c, const char *text, size_t len, const char *file,
			  char *err, size_t errlen)
{
	char *copy;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!file)
		file = "(config)";
	if (len > MOAT_CONFIG_MAX_FILE) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", file, moat_config_lex_reason(-EFBIG));
		return MOAT_ECONFIG;
	}
	copy = malloc(len + 1);
	if (!copy) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", file);
		return MOAT_ENOMEM;
	}
	if (len)
		memcpy(copy, text, len);
	copy[len] = '\0';
	rc = parse_top(c, copy, len, file, NULL, err, errlen);
	free(copy);
	return rc;
}

int moat_config_parse(struct moat_config *c, const char *text, const char *file, char *err,
		      size_t errlen)
{
	return moat_config_parse_mem(c, text ? text : "", text ? strlen(text) : 0, file, err,
				     errlen);
}

int moat_config_load(struct moat_config *c, const char *path, char *err, size_t errlen)
{
	char *text = NULL, *canon;
	size_t len;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	rc = moat_config_lex_read(path, &text, &len);
	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path, moat_config_lex_reason(rc));
		return moat_config_lex_code(rc);
	}
	canon = realpath(path, NULL);
	rc = parse_top(c, text, len, path, canon, err, errlen);
	free(canon);
	free(text);
	return rc;
}

/* ---- defaults ---- */

void moat_config_defaults(struct moat_config *c)
{
	memset(c, 0, sizeof(*c));
	c->defaults.allow_anonymous = -1;
	c->defaults.max_connections = -1;
	c->defaults.protocol = MOAT_PROTO_MQTT;
	c->defaults.socket_domain = MOAT_DOMAIN_ANY;
	c->defaults.tls_version = 12;
	c->auth_threads = 2;
	c->sentinel = true;
	c->persistence_sync_interval = 10;
	c->autosave_interval = 1800;
	c->audit_log_max_size = 100u << 20;
	c->audit_log_keep = 5;
	c->inventory_max = 100000;
	c->idle_timeout = 300;
	c->availability_s = 300;
	c->throttle_s = 30;
	c->defaults.tls_session_tickets = true;
	c->defaults.ocsp_cache_seconds = 3600;
	c->max_inflight_messages = 20;
	c->max_queued_messages = 1000;
	c->max_keepalive = 65535;
	c->max_topic_alias = 10;
	c->max_qos = 2;
	c->retain_available = true;
	c->allow_zero_length_clientid = true;
	c->auto_id_prefix = strdup("auto-"); /* NULL if out of memory: readers take "auto-" */
	c->sys_interval = 10;
	c->set_tcp_nodelay = true;
	c->connect_timeout = 10;
	c->preauth_max_packet_size = 65536;
	c->log_dest = MOAT_LOGDEST_STDERR;
	c->log_type = MOAT_LOG_ERROR | MOAT_LOG_WARNING | MOAT_LOG_NOTICE | MOAT_LOG_INFORMATION;
	c->log_timestamp = true;
	c->connection_messages = true;
}

/*
 * The listener starts from the defaults block like any other; it allows
 * anonymous clients unless the config said allow_anonymous false before any
 * listener. Returns 0, MOAT_ENOMEM, or MOAT_ECONFIG if c is full or already
 * listens on 127.0.0.1:port.
 */
int moat_config_add_default_listener(struct moat_config *c, uint16_t port)
{
	struct moat_listener_conf *l;
	int rc = moat_config_new_listener(c, port, "127.0.0.1", NULL, 0, NULL);

	if (rc == MOAT_EEXIST || rc == MOAT_ENOSPC)
		return MOAT_ECONFIG;
	if (rc)
		return rc;
	l = &c->listeners[c->n_listeners - 1];
	if (l->allow_anonymous < 0)
		l->allow_anonymous = 1;
	return 0;
}

/* ---- reload ---- */

static const void *at(const void *base, size_t off)
{
	return (const char *)base + off;
}

/* Whether d's field differs between two structs (config or listener). */
static bool field_differs(const struct moat_config_directive *d, const void *a, const void *b)
{
	if (d->type == MOAT_CFG_STRING)
		return !same_str(*(char *const *)at(a, d->off), *(char *const *)at(b, d->off));
	return memcmp(at(a, d->off), at(b, d->off), d->width) != 0;
}

static bool global_differs(const struct moat_config_directive *d, const struct moat_config *a,
			   const struct moat_config *b)
{
	return field_differs(d, a, b) || ((d->flags & MOAT_CFG_LOGFILE) && !same_str(a->log_file,
									      b->log_file));
}

/* Whether a listener-scoped field differs anywhere (defaults or a listener). */
static bool listeners_differ(const struct moat_config_directive *d, const struct moat_config *a,
			     const struct moat_config *b)
{
	int i;

	if (field_differs(d, &a->defaults, &b->defaults))
		return true;
	for (i = 0; i < a->n_listeners && i < b->n_listeners; i++)
		if (field_differs(d, &a->listeners[i], &b->listeners[i]))
			return true;
	return false;
}

/* Whether the set of listeners (count, ports, addresses) differs. */
static bool listener_set_differs(const struct moat_config *a, const struct moat_config *b)
{
	int i;

	if (a->n_listeners != b->n_listeners)
		return true;
	for (i = 0; i < a->n_listeners; i++)
		if (a->listeners[i].port != b->listeners[i].port ||
		    !same_str(a->listeners[i].address, b->listeners[i].address))
			return true;
	return false;
}

/* Appends name to the comma-separated list in msg (truncating safely). */
static void report(char *msg, size_t msglen, const char *name)
{
	size_t k;

	if (!msg || msglen == 0)
		return;
	k = strlen(msg);
	if (k + 1 < msglen)
		snprintf(msg + k, msglen - k, "%s%s", k ? ", " : "", name);
}

/*
 * Copies d's reload-safe value from fresh into live. Strings were duplicated
 * beforehand (dup, owned; log_dup for log_file) so this cannot fail.
 */
static void copy_field(const struct moat_config_directive *d, struct moat_config *live,
		       const struct moat_config *fresh, char *dup, char *log_dup)
{
	if (d->type == MOAT_CFG_STRING) {
		char **slot = (char **)((char *)live + d->off);
		free(*slot);
		*slot = dup;
	} else {
		memcpy((char *)live + d->off, at(fresh, d->off), d->width);
	}
	if (d->flags & MOAT_CFG_LOGFILE) {
		free(live->log_file);
		live->log_file = log_dup;
	}
}

/* Whether d is a global setting reload copies and that differs. */
static bool to_copy(const struct moat_config_directive *d, const struct moat_config *live,
		    const struct moat_config *fresh)
{
	return d->width && !(d->flags & MOAT_CFG_LISTENER) && (d->flags & MOAT_CFG_RELOAD) &&
	       global_differs(d, live, fresh);
}

/*
 * Duplicates, before anything is changed, the strings to_copy needs, so a
 * failed allocation leaves live untouched. 0 or MOAT_ENOMEM.
 */
static int dup_strings(const struct moat_config *live, const struct moat_config *fresh,
		       char **dups, char **log_dup)
{
	size_t i;

	for (i = 0; i < moat_config_n_directives; i++) {
		const struct moat_config_directive *d = &moat_config_directives[i];
		if (!to_copy(d, live, fresh))
			continue;
		if (d->type == MOAT_CFG_STRING &&
		    copy_str(&dups[i], *(char *const *)at(fresh, d->off)))
			goto fail;
		if ((d->flags & MOAT_CFG_LOGFILE) && copy_str(log_dup, fresh->log_file))
			goto fail;
	}
	return 0;
fail:
	for (i = 0; i < moat_config_n_directives; i++)
		free(dups[i]);
	free(*log_dup);
	return MOAT_ENOMEM;
}

int moat_config_apply_reload(struct moat_config *live, const struct moat_config *fresh,
			     char *msg, size_t msglen)
{
	char *dups[MOAT_CONFIG_MAX_DIRECTIVES] = { 0 }, *log_dup = NULL, *allow_dup = NULL;
	int count = 0;
	size_t i;

	if (msg && msglen)
		msg[0] = '\0';
	if (fresh->sentinel_allow && !(allow_dup = strdup(fresh->sentinel_allow)))
		return MOAT_ENOMEM;
	if (dup_strings(live, fresh, dups, &log_dup)) {
		free(allow_dup);
		return MOAT_ENOMEM;
	}
	if (listener_set_differs(live, fresh)) {
		report(msg, msglen, "listener");
		count++;
	}
	for (i = 0; i < moat_config_n_directives; i++) {
		const struct moat_config_directive *d = &moat_config_directives[i];
		if (!d->width)
			continue;
		if (d->flags & MOAT_CFG_LISTENER) {
			if (listeners_differ(d, live, fresh)) {
				report(msg, msglen, d->name);
				count++;
			}
		} else if (to_copy(d, live, fresh)) {
			copy_field(d, live, fresh, dups[i], log_dup);
		} else if (global_differs(d, live, fresh)) {
			report(msg, msglen, d->name);
			count++;
		}
	}
	/* The sentinel's detectors, ban steps and allow-list (custom directives): the
	 * broker hands them to the sentinel after the reload. */
	memcpy(live->detectors, fresh->detectors, sizeof(live->detectors));
	memcpy(live->ban_steps, fresh->ban_steps, sizeof(live->ban_steps));
	live->n_ban_steps = fresh->n_ban_steps;
	free(live->sentinel_allow);
	live->sentinel_allow = allow_dup;
	return count;
}
