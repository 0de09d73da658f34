/*
 * admin.c - the broker's admin API: the routes the admin server
 * (src/admin/) serves on its Unix socket, for `moat ctl`.
 *
 * Each handler runs on a connection thread of the admin server, beside the
 * workers: it touches only what is shared and locked (the bans table, the
 * store, the statistics), or asks the workers through their inboxes (kick),
 * or the main thread through a signal (reload, shutdown). Every action that
 * changes something is a security event ("admin": who, from which uid and
 * pid, did what), so it reaches the audit log like any other.
 *
 *   GET    /v1/status                      version, uptime, clients, store, bans
 *   GET    /v1/clients, /v1/clients/ID     connected clients (admin_clients.c)
 *   GET    /v1/inventory                   every device seen (inventory.c)
 *   GET    /v1/flows[?format=dot]          the data-flow map (admin_flows.c)
 *   GET    /v1/software                    versions, TLS offers, hashes (admin_software.c)
 *   GET, POST, DELETE /v1/blocks[?filter=F]  blocked topic filters (block.c)
 *   POST   /v1/kick?client_id=|username=|address=|identity=
 *   GET    /v1/bans
 *   POST   /v1/bans?address=|cidr=|client_id=|username=[&duration=S][&reason=]
 *   DELETE /v1/bans?address=|cidr=|client_id=|username=
 *   POST   /v1/lockdown?state=on|off
 *   POST   /v1/reload
 *   POST   /v1/users?username=U&password=P[&listener=PORT][&algo=A]   (and reload)
 *   DELETE /v1/users?username=U[&listener=PORT]
 *   POST   /v1/shutdown
 *   POST   /v1/store/backup?file=ABSOLUTE[&replace=1]
 *   POST   /v1/store/rekey[?key_file=ABSOLUTE]
 *   GET    /v1/events[?limit=N][&kind=K]   recent security events (admin_events.c)
 *   GET    /metrics                        Prometheus text format (admin_metrics.c)
 */
#include <pwd.h>
#include <sodium.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/admin.h"
#include "broker/internal.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "net/tls.h"

/* The admin action as a security event: addr says who (uid, pid), reason what. */
static void admin_event(const struct moat_admin_req *req, const char *what)
{
	struct moat_sec_event e = { .kind = MOAT_SEC_ADMIN, .addr = req->who, .method = "admin",
				    .reason = what };

	moat_sec_emit(&e);
}

static int fail(struct moat_json *o, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct moat_json *o, int status, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	moat_json_begin_object(o);
	moat_json_kstring(o, "error", msg);
	moat_json_end_object(o);
	return status;
}

/* The HTTP status for a MOAT_E* code from the store or the bans table. */
static int status_of(int rc)
{
	switch (rc) {
	case MOAT_EINVAL:
	case MOAT_ECONFIG:
		return 400;
	case MOAT_EDENIED:
		return 403;
	case MOAT_ENOTFOUND:
		return 404;
	case MOAT_EEXIST:
	case MOAT_EAGAIN:
		return 409;
	case MOAT_ECLOSED:
		return 503;
	default:
		return 500;
	}
}

/* ---- status ---- */

static int h_status(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	int64_t connected = 0, sessions = 0;
	uint64_t received = 0, sent = 0;

	(void)req;
	for (int i = 0; i < b->nworkers; i++) {
		struct moat_stats *st = &b->workers[i]->stats;
		connected += atomic_load_explicit(&st->clients_connected, memory_order_relaxed);
		sessions += atomic_load_explicit(&st->sessions, memory_order_relaxed);
		received += atomic_load_explicit(&st->pub_received, memory_order_relaxed);
		sent += atomic_load_explicit(&st->pub_sent, memory_order_relaxed);
	}
	moat_json_begin_object(o);
	moat_json_kstring(o, "version", MOAT_VERSION);
	moat_json_kint(o, "pid", getpid());
	moat_json_kint(o, "uptime_seconds", moat_wall_s() - b->started_at);
	moat_json_kint(o, "workers", b->nworkers);
	moat_json_kint(o, "clients_connected", connected);
	moat_json_kint(o, "sessions", sessions);
	moat_json_kuint(o, "publish_received", received);
	moat_json_kuint(o, "publish_sent", sent);
	moat_json_kuint(o, "bans", b->bans ? moat_bans_count(b->bans, moat_now_ms()) : 0);
	moat_json_kbool(o, "lockdown", guard_lockdown(b));
	moat_json_key(o, "store");
	if (b->store) {
		struct moat_store_stats st;
		moat_store_stats(b->store, &st);
		moat_json_begin_object(o);
		moat_json_kstring(o, "dir", b->conf->persistence_location ? b->conf->persistence_location
									  : ".");
		moat_json_kstring(o, "sync", b->conf->persistence_sync == 0 ? "always" :
					     b->conf->persistence_sync == 1 ? "batch" : "off");
		moat_json_kuint(o, "commits", st.commits);
		moat_json_kuint(o, "writes", st.writes);
		moat_json_kuint(o, "failed", st.failed);
		moat_json_kuint(o, "backlog", moat_store_backlog(b->store));
		moat_json_kuint(o, "key_generation", st.generation);
		moat_json_kuint(o, "sealed_under_key", st.sealed);
		moat_json_kbool(o, "rotating", st.rotating);
		moat_json_end_object(o);
	} else {
		moat_json_null(o);
	}
	moat_json_end_object(o);
	return 200;
}

/* ---- the store ---- */

static int h_backup(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	const char *file = moat_admin_param(req, "file"), *replace = moat_admin_param(req, "replace");
	char err[512], what[700];
	int64_t t0 = moat_now_ms();
	int rc;

	if (!file || !file[0])
		return fail(o, 400, "file: the backup's path is needed");
	rc = persist_backup(b, file, replace && strcmp(replace, "1") == 0, err, sizeof(err));
	snprintf(what, sizeof(what), "backup to %s: %s", file, rc < 0 ? err : "done");
	admin_event(req, what);
	if (rc < 0)
		return fail(o, status_of(rc), "%s", err);
	moat_log(MOAT_LOG_LVL_NOTICE, "store_backup file=%s ms=%lld", file,
		 (long long)(moat_now_ms() - t0));
	moat_json_begin_object(o);
	moat_json_kstring(o, "file", file);
	moat_json_kint(o, "ms", moat_now_ms() - t0);
	moat_json_kstring(o, "note", "the copy opens with the store's key as it is now: keep "
				     "that key with it");
	moat_json_end_object(o);
	return 200;
}

static int h_rekey(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	const char *file = moat_admin_param(req, "key_file");
	struct moat_store_stats st = { 0 };
	char err[512], what[700];
	int64_t t0 = moat_now_ms();
	int rc;

	if (file && !file[0])
		file = NULL;
	snprintf(what, sizeof(what), "store rekey %s%s: started", file ? "to " : "(data key)",
		 file ? file : "");
	admin_event(req, what);
	rc = persist_rekey(b, file, &st, err, sizeof(err));
	snprintf(what, sizeof(what), "store rekey %s%s: %s", file ? "to " : "(data key)",
		 file ? file : "", rc < 0 ? err : "done");
	admin_event(req, what);
	if (rc < 0)
		return fail(o, status_of(rc), "%s", err);
	moat_json_begin_object(o);
	moat_json_kuint(o, "key_generation", st.generation);
	moat_json_kint(o, "ms", moat_now_ms() - t0);
	if (file) {
		moat_json_kstring(o, "key_file", b->conf->persistence_key_file);
		moat_json_kstring(o, "note", "the store opens only with the new key now; it was "
					     "copied to the configured key file");
	}
	moat_json_end_object(o);
	return 200;
}

/* ---- clients and bans ---- */

/* The one selector a request names: address, cidr, client_id or username. */
static int selector(const struct moat_admin_req *req, enum moat_ban_kind *kind, const char **key,
		    const char **name, struct moat_json *o)
{
	static const struct { const char *param; enum moat_ban_kind kind; } sel[] = {
		{ "address", MOAT_BAN_ADDR },
		{ "cidr", MOAT_BAN_ADDR },
		{ "client_id", MOAT_BAN_CLIENTID },
		{ "username", MOAT_BAN_USERNAME },
	};
	int found = 0;

	for (size_t i = 0; i < sizeof(sel) / sizeof(sel[0]); i++) {
		const char *v = moat_admin_param(req, sel[i].param);
		if (!v)
			continue;
		if (!v[0])
			return fail(o, 400, "%s: empty", sel[i].param);
		*kind = sel[i].kind;
		*key = v;
		*name = sel[i].param;
		found++;
	}
	if (found != 1)
		return fail(o, 400, "name exactly one of address, cidr, client_id, username");
	return 0;
}

static int h_kick(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	enum moat_ban_kind kind;
	const char *key, *name;
	char what[600];
	int rc;

	const char *identity = moat_admin_param(req, "identity");

	if (identity) { /* a certificate or PSK identity: every session it holds */
		if (!identity[0] || moat_admin_param(req, "address") ||
		    moat_admin_param(req, "client_id") || moat_admin_param(req, "username"))
			return fail(o, 400, "name exactly one of address, client_id, username, identity");
		snprintf(what, sizeof(what), "kick identity %s", identity);
		admin_event(req, what);
		guard_kick(b, NULL, NULL, NULL, identity, "disconnected by an administrator");
		moat_json_begin_object(o);
		moat_json_kstring(o, "identity", identity);
		moat_json_kstring(o, "result", "every matching connection is being closed "
					       "(DISCONNECT 0x98 for MQTT 5)");
		moat_json_end_object(o);
		return 200;
	}
	if ((rc = selector(req, &kind, &key, &name, o)) != 0)
		return rc;
	if (strcmp(name, "cidr") == 0)
		return fail(o, 400, "kick takes an address, client_id or username (ban a cidr)");
	snprintf(what, sizeof(what), "kick %s %s", name, key);
	admin_event(req, what);
	guard_kick(b, kind == MOAT_BAN_ADDR ? key : NULL, kind == MOAT_BAN_CLIENTID ? key : NULL,
		   kind == MOAT_BAN_USERNAME ? key : NULL, NULL, "disconnected by an administrator");
	moat_json_begin_object(o);
	moat_json_kstring(o, name, key);
	moat_json_kstring(o, "result", "every matching connection is being closed "
				       "(DISCONNECT 0x98 for MQTT 5)");
	moat_json_end_object(o);
	return 200;
}

static void ban_entry(void *ctx, const struct moat_ban_info *in)
{
	static const char *const kinds[] = { "address", "client_id", "username" };
	struct moat_json *o = ctx;
	int64_t now = moat_now_ms();

	moat_json_begin_object(o);
	moat_json_kstring(o, "kind", kinds[in->kind]);
	moat_json_kstring(o, "key", in->key);
	if (in->until_ms) {
		moat_json_kint(o, "seconds_left", (in->until_ms - now + 999) / 1000);
		moat_json_kint(o, "until", moat_wall_s() + (in->until_ms - now) / 1000);
	} else {
		moat_json_key(o, "seconds_left");
		moat_json_null(o);
	}
	moat_json_kstring(o, "reason", in->reason);
	moat_json_end_object(o);
}

static int h_bans(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;

	(void)req;
	moat_json_begin_object(o);
	moat_json_key(o, "bans");
	moat_json_begin_array(o);
	if (b->bans)
		moat_bans_each(b->bans, moat_now_ms(), ban_entry, o);
	moat_json_end_array(o);
	moat_json_end_object(o);
	return 200;
}

static int h_ban(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	const char *dur = moat_admin_param(req, "duration"), *why = moat_admin_param(req, "reason");
	enum moat_ban_kind kind;
	const char *key, *name;
	char reason[160], what[700], *end;
	long long secs = 0;
	int rc;

	if (!b->bans)
		return fail(o, 503, "no bans table");
	if ((rc = selector(req, &kind, &key, &name, o)) != 0)
		return rc;
	if (dur && dur[0]) {
		secs = strtoll(dur, &end, 10);
		if (*end || secs < 0 || secs > 10LL * 365 * 86400)
			return fail(o, 400, "duration: whole seconds, 0 (forever) to 10 years");
	}
	if (strcmp(name, "cidr") == 0 && !strchr(key, '/'))
		return fail(o, 400, "cidr: NET/LEN, e.g. 192.0.2.0/24");
	snprintf(reason, sizeof(reason), "admin %.60s: %.60s", req->who, why && why[0] ? why : "-");
	rc = moat_bans_add(b->bans, kind, key, secs ? moat_now_ms() + secs * 1000 : 0, reason);
	snprintf(what, sizeof(what), "ban %s %s for %s s (%s): %s", name, key,
		 secs ? dur : "ever", why && why[0] ? why : "-",
		 rc == 0 ? "done" : rc == MOAT_EDENIED ? "the allow-list covers it" : moat_strerror(rc));
	admin_event(req, what);
	if (rc < 0)
		return fail(o, status_of(rc), "%s %s: %s", name, key,
			    rc == MOAT_EDENIED ? "the allow-list covers it: not banned" :
			    rc == MOAT_EINVAL  ? "not a valid address, network or name" :
						 moat_strerror(rc));
	atomic_store(&b->bans_dirty, true);
	guard_kick_banned(b); /* live connections the ban covers go now */
	moat_json_begin_object(o);
	moat_json_kstring(o, name, key);
	if (secs)
		moat_json_kint(o, "seconds", secs);
	else
		moat_json_kstring(o, "seconds", "forever");
	moat_json_kstring(o, "reason", reason);
	moat_json_end_object(o);
	return 201;
}

static int h_unban(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	enum moat_ban_kind kind;
	const char *key, *name;
	char what[600];
	int rc;

	if (!b->bans)
		return fail(o, 503, "no bans table");
	if ((rc = selector(req, &kind, &key, &name, o)) != 0)
		return rc;
	rc = moat_bans_remove(b->bans, kind, key);
	snprintf(what, sizeof(what), "unban %s %s: %s", name, key,
		 rc == 0 ? "done" : moat_strerror(rc));
	admin_event(req, what);
	if (rc < 0)
		return fail(o, status_of(rc), "%s %s: %s", name, key,
			    rc == MOAT_ENOTFOUND ? "no such ban" : moat_strerror(rc));
	atomic_store(&b->bans_dirty, true);
	moat_json_begin_object(o);
	moat_json_kstring(o, name, key);
	moat_json_kstring(o, "result", "lifted");
	moat_json_end_object(o);
	return 200;
}

/* ---- the broker ---- */

static int h_lockdown(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	const char *state = moat_admin_param(req, "state");
	bool on;

	if (!state || (strcmp(state, "on") != 0 && strcmp(state, "off") != 0))
		return fail(o, 400, "state: on or off");
	on = strcmp(state, "on") == 0;
	guard_set_lockdown(b, on);
	admin_event(req, on ? "lockdown on" : "lockdown off");
	moat_json_begin_object(o);
	moat_json_kbool(o, "lockdown", on);
	moat_json_kstring(o, "note", "holds until changed here or moatd restarts; a reload does "
				     "not undo it");
	moat_json_end_object(o);
	return 200;
}

/* Reload and shutdown are the main thread's: the same signals an operator would send. */
static int signal_self(const struct moat_admin_req *req, struct moat_json *o, int sig,
		       const char *what)
{
	admin_event(req, what);
	if (kill(getpid(), sig) < 0)
		return fail(o, 500, "cannot signal moatd");
	moat_json_begin_object(o);
	moat_json_kstring(o, "result", sig == SIGHUP ? "reloading: the audit log's reload event "
						       "says how it went" :
						       "stopping");
	moat_json_end_object(o);
	return 202;
}

static int h_reload(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	(void)ctx;
	return signal_self(req, o, SIGHUP, "reload");
}

static int h_shutdown(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	(void)ctx;
	return signal_self(req, o, SIGTERM, "shutdown");
}

static int h_user_set(void *ctx, const struct moat_admin_req *req, struct moat_json *o);
static int h_user_del(void *ctx, const struct moat_admin_req *req, struct moat_json *o);

static const struct moat_admin_route routes[] = {
	{ "POST", "/v1/users", h_user_set },
	{ "DELETE", "/v1/users", h_user_del },
	{ "GET", "/v1/status", h_status },
	{ "GET", "/v1/clients", admin_clients },
	{ "GET", "/v1/clients/*", admin_client },
	{ "GET", "/v1/inventory", admin_inventory },
	{ "GET", "/v1/flows", admin_flows },
	{ "GET", "/v1/software", admin_software },
	{ "GET", "/v1/blocks", admin_blocks },
	{ "POST", "/v1/blocks", admin_block },
	{ "DELETE", "/v1/blocks", admin_unblock },
	{ "POST", "/v1/kick", h_kick },
	{ "GET", "/v1/bans", h_bans },
	{ "POST", "/v1/bans", h_ban },
	{ "DELETE", "/v1/bans", h_unban },
	{ "POST", "/v1/lockdown", h_lockdown },
	{ "POST", "/v1/reload", h_reload },
	{ "POST", "/v1/shutdown", h_shutdown },
	{ "POST", "/v1/store/backup", h_backup },
	{ "POST", "/v1/store/rekey", h_rekey },
	{ "GET", "/v1/events", admin_events },
	{ "GET", "/metrics", admin_metrics },
};

static void refused(void *ctx, const char *who, const char *why)
{
	struct moat_sec_event e = { .kind = MOAT_SEC_ADMIN, .addr = who, .method = "admin",
				    .reason = why };

	(void)ctx;
	moat_sec_emit(&e);
}

/* The socket: admin_socket, or DIR/admin.sock with persistence; "none" or neither: off. */
static const char *socket_path(const struct moat_config *c, char *buf, size_t cap, bool *dflt)
{
	*dflt = false;
	if (c->admin_socket)
		return strcmp(c->admin_socket, "none") == 0 ? NULL : c->admin_socket;
	if (!c->persistence)
		return NULL;
	*dflt = true;
	snprintf(buf, cap, "%s/admin.sock", c->persistence_location ? c->persistence_location : ".");
	return buf;
}

/* ---- the TCP listener's TLS and token ---- */

static void *tls_accept(void *ctx, int fd, char *subject, size_t n, char *err, size_t errlen)
{
	return moat_tls_session_accept(ctx, fd, subject, n, err, errlen);
}

static ssize_t tls_read(void *t, void *buf, size_t n)
{
	return moat_tls_session_read(t, buf, n);
}

static int tls_write(void *t, const void *buf, size_t n)
{
	return moat_tls_session_write(t, buf, n);
}

static void tls_close(void *t)
{
	moat_tls_session_free(t);
}

/* The bearer token: one line of at least 32 printable characters, in a file only its owner reads. */
static int load_token(const char *path, char **out, char *err, size_t errlen)
{
	char buf[512];
	struct stat st;
	size_t n;
	FILE *f;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
		moat_set_err(err, errlen, "admin_token_file %s: not a readable file", path);
		return MOAT_ECONFIG;
	}
	if (st.st_mode & 077) {
		moat_set_err(err, errlen, "admin_token_file %s: mode %03o lets others read the "
					  "token; chmod 600 it",
			     path, (unsigned)(st.st_mode & 0777));
		return MOAT_ECONFIG;
	}
	if (!(f = fopen(path, "re")) || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		moat_set_err(err, errlen, "admin_token_file %s: cannot read it", path);
		return MOAT_ECONFIG;
	}
	fclose(f);
	n = strcspn(buf, "\r\n");
	buf[n] = 0;
	for (size_t i = 0; i < n; i++)
		if (buf[i] <= ' ' || buf[i] > '~')
			n = 0;
	if (n < 32 || !(*out = strdup(buf))) {
		sodium_memzero(buf, sizeof(buf));
		moat_set_err(err, errlen, "admin_token_file %s: the token must be one line of at "
					  "least 32 printable characters, no spaces",
			     path);
		return MOAT_ECONFIG;
	}
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

/* The TCP listener's TLS context and checks; at least one of a client CA and a token. */
static int tcp_setup(struct moat_broker *b, struct moat_admin_conf *ac, char *err, size_t errlen)
{
	const struct moat_config *c = b->conf;
	struct moat_listener_conf lc = { 0 };
	int rc;

	if (!c->admin_certfile || !c->admin_keyfile) {
		moat_set_err(err, errlen, "admin_port: the admin API over TCP is TLS only: set "
					  "admin_certfile and admin_keyfile");
		return MOAT_ECONFIG;
	}
	if (!c->admin_cafile && !c->admin_token_file) {
		moat_set_err(err, errlen, "admin_port: callers must prove who they are: set "
					  "admin_cafile (client certificates), admin_token_file (a bearer "
					  "token), or both");
		return MOAT_ECONFIG;
	}
	lc.certfile = c->admin_certfile;
	lc.keyfile = c->admin_keyfile;
	lc.cafile = c->admin_cafile;
	lc.require_certificate = c->admin_cafile != NULL;
	lc.tls_version = 12;
	lc.port = (uint16_t)c->admin_port;
	if ((rc = moat_tls_server_new(&lc, &b->admin_tls, err, errlen)) < 0)
		return rc;
	if (c->admin_token_file && (rc = load_token(c->admin_token_file, &b->admin_token, err,
						    errlen)) < 0)
		return rc;
	b->admin_tls_ops = (struct moat_admin_tls){ b->admin_tls, tls_accept, tls_read, tls_write,
						    tls_close, b->admin_token };
	ac->tcp_port = (uint16_t)c->admin_port;
	ac->tcp_address = c->admin_address;
	ac->tls = &b->admin_tls_ops;
	return 0;
}

int admin_start(struct moat_broker *b, char *err, size_t errlen)
{
	struct moat_admin_conf ac = { .stop_wait_ms = 600000 };
	char path[4200];
	bool dflt;
	int rc;

	if (!(ac.socket_path = socket_path(b->conf, path, sizeof(path), &dflt))) {
		if (b->conf->admin_port) {
			moat_set_err(err, errlen, "admin_port: the admin API needs its socket too "
						  "(admin_socket, or persistence for the default one)");
			return MOAT_ECONFIG;
		}
		return 0;
	}
	if (b->conf->admin_port && (rc = tcp_setup(b, &ac, err, errlen)) < 0)
		return rc;
	ac.refused = refused;
	rc = moat_admin_start(&ac, routes, sizeof(routes) / sizeof(routes[0]), b, &b->admin, err,
			      errlen);
	if (rc < 0 && dflt && !b->conf->admin_port) { /* the default place: moatd runs without it */
		moat_log(MOAT_LOG_LVL_WARNING, "admin_socket_off reason=\"%s\"", err);
		return 0;
	}
	if (rc < 0)
		return rc;
	/* moatd drops root after this: the socket goes to the user it becomes */
	struct passwd *pw = geteuid() == 0 && b->conf->user ? getpwnam(b->conf->user) : NULL;
	if (pw && chown(ac.socket_path, pw->pw_uid, pw->pw_gid) < 0)
		moat_log(MOAT_LOG_LVL_WARNING, "admin_socket_chown_failed path=%s", ac.socket_path);
	moat_log(MOAT_LOG_LVL_NOTICE, "admin_socket path=%s", ac.socket_path);
	if (ac.tcp_port)
		moat_log(MOAT_LOG_LVL_NOTICE,
			 "admin_listener address=%s port=%u tls=yes client_certificates=%s token=%s",
			 ac.tcp_address ? ac.tcp_address : "127.0.0.1", ac.tcp_port,
			 b->conf->admin_cafile ? "required" : "no", b->admin_token ? "required" : "no");
	return 0;
}

void admin_stop(struct moat_broker *b)
{
	moat_admin_stop(b->admin);
	b->admin = NULL;
}

void admin_free(struct moat_broker *b)
{
	admin_stop(b);
	moat_tls_server_free(b->admin_tls);
	b->admin_tls = NULL;
	if (b->admin_token) {
		sodium_memzero(b->admin_token, strlen(b->admin_token));
		free(b->admin_token);
		b->admin_token = NULL;
	}
}

/* ---- users of a password file ---- */

/*
 * The password file a users request edits: the one of ?listener=PORT, or
 * the only one the listeners use. NULL (with the answer written) if none.
 */
static const char *password_file(struct moat_broker *b, const struct moat_admin_req *req,
				 struct moat_json *o, int *status)
{
	const char *port = moat_admin_param(req, "listener"), *file = NULL;

	for (int i = 0; i < b->nlisteners; i++) {
		const struct moat_listener_conf *lc = b->listeners[i].conf;
		if (!lc->password_file || (port && strtol(port, NULL, 10) != lc->port))
			continue;
		if (file && strcmp(file, lc->password_file) != 0) {
			*status = fail(o, 400, "the listeners use several password files: name one "
					       "with listener=PORT");
			return NULL;
		}
		file = lc->password_file;
	}
	if (!file)
		*status = fail(o, 404, port ? "that listener has no password_file"
					    : "no listener has a password_file");
	return file;
}

static int h_user_set(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	const char *user = moat_admin_param(req, "username"), *pw = moat_admin_param(req, "password");
	const char *algo_name = moat_admin_param(req, "algo"), *file;
	enum moat_pw_algo algo = MOAT_PW_ARGON2ID;
	char hash[1024], err[512], what[700];
	int status = 0, rc;

	if (!user || !user[0] || strchr(user, ':') || !pw || !pw[0])
		return fail(o, 400, "username (no ':') and password are needed");
	if (algo_name && moat_passwd_algo(algo_name, &algo) < 0)
		return fail(o, 400, "algo: argon2id, sha512-pbkdf2, scram-sha-256 or scram-sha-512");
	if (!(file = password_file(b, req, o, &status)))
		return status;
	rc = moat_passwd_hash(algo, (const uint8_t *)pw, strlen(pw), hash, sizeof(hash));
	if (rc == 0)
		rc = moat_passwd_edit(file, user, hash, false, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "cannot hash: %s", moat_strerror(rc));
	sodium_memzero(hash, sizeof(hash));
	snprintf(what, sizeof(what), "set password of user %s in %s: %s", user, file,
		 rc == 0 ? "done, reloading" : err);
	admin_event(req, what);
	if (rc < 0)
		return fail(o, 500, "%s", err);
	kill(getpid(), SIGHUP); /* the main thread reloads; live sessions are re-checked */
	moat_json_begin_object(o);
	moat_json_kstring(o, "username", user);
	moat_json_kstring(o, "password_file", file);
	moat_json_kstring(o, "algo", moat_passwd_algo_name(algo));
	moat_json_kstring(o, "result", "saved; reloading (sessions that logged in with the old "
				       "password are closed)");
	moat_json_end_object(o);
	return 200;
}

static int h_user_del(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	const char *user = moat_admin_param(req, "username"), *file;
	char err[512], what[700];
	int status = 0, rc;

	if (!user || !user[0])
		return fail(o, 400, "username is needed");
	if (!(file = password_file(b, req, o, &status)))
		return status;
	rc = moat_passwd_edit(file, user, NULL, false, err, sizeof(err));
	snprintf(what, sizeof(what), "remove user %s from %s: %s", user, file,
		 rc == 0 ? "done, reloading" : err);
	admin_event(req, what);
	if (rc == MOAT_ENOTFOUND)
		return fail(o, 404, "no user %s in %s", user, file);
	if (rc < 0)
		return fail(o, 500, "%s", err);
	kill(getpid(), SIGHUP);
	moat_json_begin_object(o);
	moat_json_kstring(o, "username", user);
	moat_json_kstring(o, "result", "removed; reloading (its sessions are closed)");
	moat_json_end_object(o);
	return 200;
}
