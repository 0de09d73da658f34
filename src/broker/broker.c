/*
 * broker.c - the broker's life: make it (listeners, shared stores, workers),
 * run the main thread (signals, $SYS), stop it in order, free it.
 *
 * The main thread owns no connection. It waits on a signalfd and a timerfd:
 * SIGTERM/SIGINT stop the broker, SIGHUP reloads what can be reloaded, and
 * the timer publishes $SYS topics through the workers' inboxes.
 */
#include "broker/broker.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "broker/internal.h"
#include "broker/sys.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "net/listen.h"

/* On an OCSP thread: every worker looks for connections with that certificate. */
static void ocsp_answered(void *ctx, uint64_t key, enum moat_ocsp_status st)
{
	struct moat_broker *b = ctx;
	int i;

	for (i = 0; i < b->nworkers; i++)
		worker_push_now(b->workers[i], (struct item){.kind = IT_OCSP, .qos = (uint8_t)st,
							     .key = key});
}

/* True if lc listens on loopback or a unix socket only: anonymous by default there. */
static bool loopback_only(const struct moat_listener_conf *lc)
{
	const char *a = lc->address;

	if (lc->port == 0)
		return true;
	return a && (strncmp(a, "127.", 4) == 0 || strcmp(a, "::1") == 0 ||
		     strcmp(a, "localhost") == 0);
}

/* True if lc carries any TLS setting (which needs certfile or psk_file to mean anything). */
static bool tls_settings(const struct moat_listener_conf *lc)
{
	return lc->keyfile || lc->cafile || lc->capath || lc->crlfile || lc->dhparamfile ||
	       lc->ciphers || lc->ciphers_tls13 || lc->tls_curves || lc->psk_hint ||
	       lc->require_certificate || lc->use_identity_as_username ||
	       lc->use_subject_as_username || lc->use_san_as_username ||
	       lc->ocsp_mode != MOAT_OCSP_OFF || lc->tls_version != 12;
}

static int open_listeners(struct moat_broker *b, char *err, size_t errlen)
{
	int i;

	for (i = 0; i < b->conf->n_listeners; i++) {
		const struct moat_listener_conf *lc = &b->conf->listeners[i];
		struct moat_listener *l = &b->listeners[i];
		int n;

		l->index = i;
		if (lc->port == 0) {
			n = moat_listen_unix(lc->address, err, errlen);
			if (n < 0)
				return n;
			l->fds[0] = n;
			n = 1;
		} else {
			n = moat_listen_tcp(lc->address, lc->port, lc->socket_domain, l->fds, 4, err,
					    errlen);
			if (n < 0)
				return n;
		}
		l->nfds = n;
		l->conf = lc;
		b->nlisteners++; /* counted now so a failure below closes these sockets */
		if (!lc->certfile && !lc->psk_file && tls_settings(lc)) {
			/* Never serve plain MQTT on a listener the operator meant to secure. */
			snprintf(err, errlen, "%s:%d: listener: TLS settings without certfile or psk_file",
				 lc->file ? lc->file : "?", lc->line);
			return MOAT_ECONFIG;
		}
		if ((lc->certfile || lc->psk_file) &&
		    (n = moat_tls_server_new(lc, &l->tls, err, errlen)) < 0)
			return n;
		if (lc->ocsp_mode != MOAT_OCSP_OFF &&
		    (n = moat_ocsp_new(lc->cafile, lc->capath, lc->ocsp_responder,
				       lc->ocsp_cache_seconds, ocsp_answered, b, &l->ocsp, err,
				       errlen)) < 0)
			return n;
		l->allow_anonymous = lc->allow_anonymous == 1 ||
				     (lc->allow_anonymous < 0 && loopback_only(lc));
		if ((n = auth_listener_init(l, err, errlen)) < 0)
			return n;
		atomic_init(&l->connections, 0);
		moat_log(MOAT_LOG_LVL_NOTICE,
			 "listening address=%s port=%u protocol=%s tls=%s anonymous=%s",
			 lc->address ? lc->address : "*", lc->port,
			 lc->protocol == MOAT_PROTO_WEBSOCKETS ? "websockets" : "mqtt",
			 l->tls ? "yes" : "no", l->allow_anonymous ? "allowed" : "refused");
	}
	return 0;
}

static int worker_count(const struct moat_config *c)
{
	long n = c->workers ? (long)c->workers : sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	return n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

int moat_broker_new(struct moat_config *c, struct moat_broker **out, char *err, size_t errlen)
{
	struct moat_broker *b = calloc(1, sizeof(*b));
	int i, rc = MOAT_ENOMEM;

	if (!b)
		return MOAT_ENOMEM;
	b->conf = c;
	b->started_at = moat_wall_s();
	atomic_init(&b->lockdown_set, -1);
	atomic_init(&b->next_session_id, 1);
	moat_mem_init(&b->msg_mem, c->memory_limit, NULL);
	moat_mem_init(&b->conn_mem, 0, NULL);
	b->auth_pool = moat_pool_new(c->auth_threads);
	b->subs = moat_subs_new(NULL, session_online);
	b->retain = moat_retain_new(NULL);
	b->inventory = inventory_new(c->inventory_max);
	b->blocks = blocks_new();
	if (!b->subs || !b->retain || !b->auth_pool || !b->inventory || !b->blocks)
		goto fail;
	rc = open_listeners(b, err, errlen);
	if (rc < 0)
		goto fail;
	rc = guard_init(b, err, errlen);
	if (rc < 0)
		goto fail;
	if (c->lockdown)
		guard_note(MOAT_SEC_LOCKDOWN, "on at start");
	if ((rc = persist_open(b, err, errlen)) < 0)
		goto fail;
	b->nworkers = worker_count(c);
	pthread_barrier_init(&b->stop_barrier, NULL, (unsigned)b->nworkers);
	rc = MOAT_ENOMEM;
	for (i = 0; i < b->nworkers; i++)
		if (!(b->workers[i] = worker_new(b, i)))
			goto fail;
	/* sessions, their messages and retained messages, before any client */
	if ((rc = persist_load(b, err, errlen)) < 0)
		goto fail;
	if ((rc = admin_start(b, err, errlen)) < 0)
		goto fail;
	*out = b;
	return 0;
fail:
	if (rc == MOAT_ENOMEM)
		snprintf(err, errlen, "out of memory");
	moat_broker_free(b);
	return rc;
}

int moat_broker_start(struct moat_broker *b)
{
	int i;

	for (i = 0; i < b->nworkers; i++)
		if (worker_start(b->workers[i]) < 0)
			return MOAT_EIO;
	moat_log(MOAT_LOG_LVL_NOTICE, "started version=%s workers=%d", MOAT_VERSION, b->nworkers);
	return 0;
}

/*
 * Re-reads every TLS listener's certificate, key, CA, CRL and PSK files, then
 * has every worker check its live connections against the new CRL, so a
 * revoked certificate loses its session at once, not at its next connect.
 */
static void reload_tls(struct moat_broker *b)
{
	char err[512];
	int i, k = 0;

	for (i = 0; i < b->nlisteners; i++) {
		struct moat_listener *l = &b->listeners[i];
		if (!l->tls)
			continue;
		if (moat_tls_server_reload(l->tls, l->conf, err, sizeof(err)) < 0) {
			moat_log(MOAT_LOG_LVL_ERROR, "tls_reload_failed port=%u reason=\"%s\"",
				 l->conf->port, err);
			continue;
		}
		moat_log(MOAT_LOG_LVL_NOTICE, "tls_reloaded port=%u", l->conf->port);
		k++;
	}
	for (i = 0; k && i < b->nworkers; i++)
		worker_push_now(b->workers[i], (struct item){.kind = IT_RECHECK});
}

/* Re-reads each listener's password and ACL files; live sessions are judged again. */
static void reload_auth(struct moat_broker *b)
{
	char err[512];
	int i, k;

	for (i = 0; i < b->nlisteners; i++) {
		struct moat_listener *l = &b->listeners[i];
		int rc = auth_listener_reload(l, err, sizeof(err));
		if (rc < 0) {
			moat_log(MOAT_LOG_LVL_ERROR, "auth_reload_failed port=%u reason=\"%s\"",
				 l->conf->port, err);
			continue;
		}
		for (k = 0; rc > 0 && k < b->nworkers; k++)
			worker_push_now(b->workers[k], (struct item){.kind = IT_REAUTH,
								     .key = (uint64_t)i});
	}
}

static void reload(struct moat_broker *b, const char *path)
{
	struct moat_config fresh;
	char err[512], msg[512], why[600];
	bool was_locked = guard_lockdown(b);
	int n;

	if (!path) {
		moat_log(MOAT_LOG_LVL_NOTICE, "reload skipped reason=\"no config file\"");
		return;
	}
	moat_config_defaults(&fresh);
	if (moat_config_load(&fresh, path, err, sizeof(err)) < 0) {
		moat_log(MOAT_LOG_LVL_ERROR, "reload_failed reason=\"%s\"", err);
		snprintf(why, sizeof(why), "refused, the old configuration stays: %s", err);
		guard_note(MOAT_SEC_RELOAD, why);
		moat_config_free(&fresh);
		return;
	}
	n = moat_config_apply_reload(b->conf, &fresh, msg, sizeof(msg));
	moat_config_free(&fresh);
	if (n)
		moat_log(MOAT_LOG_LVL_WARNING, "reload_partial need_restart=\"%s\"", msg);
	else
		moat_log(MOAT_LOG_LVL_NOTICE, "reloaded file=%s", path);
	reload_tls(b);
	reload_auth(b);
	guard_reload(b);
	/* after the new settings are handed on (live sessions are re-checked by their workers) */
	snprintf(why, sizeof(why), n ? "applied; these need a restart: %s" : "applied", msg);
	guard_note(MOAT_SEC_RELOAD, why);
	if (guard_lockdown(b) != was_locked)
		guard_note(MOAT_SEC_LOCKDOWN, guard_lockdown(b) ? "on" : "off");
}

static int setup_fds(const struct moat_broker *b, int *sfd, int *tfd)
{
	sigset_t set;
	struct itimerspec its = {{0, 0}, {0, 0}};
	uint32_t iv = b->conf->sys_interval;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	*sfd = signalfd(-1, &set, SFD_CLOEXEC);
	*tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (*sfd < 0 || *tfd < 0)
		return MOAT_EIO;
	if (iv) {
		its.it_interval.tv_sec = iv;
		its.it_value.tv_sec = iv;
		timerfd_settime(*tfd, 0, &its, NULL);
	}
	return 0;
}

int moat_broker_run(struct moat_broker *b, const char *config_path)
{
	struct moat_sys *sys = moat_sys_new(b);
	int sfd, tfd, rc = setup_fds(b, &sfd, &tfd);

	if (rc < 0 || !sys)
		goto done;
	if (b->conf->sys_interval)
		moat_sys_publish(sys);
	for (;;) {
		struct pollfd p[2] = {{sfd, POLLIN, 0}, {tfd, POLLIN, 0}};
		struct signalfd_siginfo si;
		uint64_t ticks;

		guard_save_bans(b); /* when the sentinel placed a ban since */
		persist_audit_head(b);
		if (poll(p, 2, 5000) < 0) {
			if (errno == EINTR)
				continue;
			rc = MOAT_EIO;
			break;
		}
		if ((p[1].revents & POLLIN) && read(tfd, &ticks, sizeof(ticks)) > 0)
			moat_sys_publish(sys);
		if (!(p[0].revents & POLLIN) || read(sfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo == SIGHUP) {
			reload(b, config_path);
			continue;
		}
		moat_log(MOAT_LOG_LVL_NOTICE, "stopping signal=%s",
			 si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
		break;
	}
done:
	moat_sys_free(sys);
	if (sfd >= 0)
		close(sfd);
	if (tfd >= 0)
		close(tfd);
	return rc;
}

void moat_broker_stop(struct moat_broker *b)
{
	int i;

	atomic_store(&b->stopping, true);
	admin_stop(b); /* its handlers end while what they touch is whole */
	for (i = 0; i < b->nworkers; i++)
		worker_stop(b->workers[i]);
	for (i = 0; i < b->nworkers; i++)
		worker_join(b->workers[i]);
	moat_log(MOAT_LOG_LVL_NOTICE, "stopped");
}

void moat_broker_free(struct moat_broker *b)
{
	int i, k;

	if (!b)
		return;
	admin_free(b); /* stopped already, or start failed after it began */
	for (i = 0; i < b->nlisteners; i++)
		moat_ocsp_free(b->listeners[i].ocsp); /* joins its thread first */
	moat_pool_free(b->auth_pool); /* finishes its checks: their answers wait in inboxes */
	guard_free(b);                /* the sentinel drains: its verdicts wait in inboxes */
	persist_flush(b);             /* the store commits: stored acknowledgements wait in inboxes */
	for (i = 0; i < b->nworkers; i++)
		worker_drain(b->workers[i]);
	persist_close(b);             /* what the drain wrote, then the store closes */
	for (i = 0; i < b->nworkers; i++)
		worker_free(b->workers[i]);
	if (b->nworkers)
		pthread_barrier_destroy(&b->stop_barrier);
	for (i = 0; i < b->nlisteners; i++) {
		for (k = 0; k < b->listeners[i].nfds; k++)
			close(b->listeners[i].fds[k]);
		moat_tls_server_free(b->listeners[i].tls);
		auth_listener_free(&b->listeners[i]);
	}
	moat_subs_free(b->subs);
	moat_retain_free(b->retain);
	inventory_free(b->inventory);
	blocks_free(b->blocks);
	free(b);
}
