/*
 * gate.c - the password gate: how many password checks one address may have
 * in flight, and whether it may have any more at all.
 *
 * A password check costs an Argon2id hash; an attacker must not be able to
 * buy them in bulk. The sentinel bans an address after auth_fail_addr
 * failures, but it hears of them a moment later, and a burst of parallel
 * CONNECTs would all reach the pool first. So, before each check, counted
 * here synchronously: at most AUTH_INFLIGHT_MAX checks at once per address,
 * and none once the address has failed auth_fail_addr times in its window.
 * Allow-listed addresses pass.
 *
 *   auth.c: guard_auth_begin --0--> auth pool --> guard_auth_end(failed)
 *                  |
 *                  +--refused--> MOAT_RC_CONNECTION_RATE_EXCEEDED, a rate_limited event
 *
 * The address is the client's own (guard_client_host: a trusted proxy's
 * forwarded one, else the peer's), so a proxy does not pool its clients.
 *
 * Invariants, all under the broker's addr_lock (shared with guard.c's counts
 * per address; guard.c also creates and frees the auth_gate map):
 *   - an entry's inflight is the number of connections of that address with
 *     auth_gated set; guard_auth_end gives each place back exactly once;
 *   - an entry holding nothing (no check in flight, no failure in its
 *     window) is dropped, at once by guard_auth_end, or by a sweep when the
 *     map is full;
 *   - the map holds at most GATE_MAP_MAX addresses. When it is full even
 *     after a sweep (or out of memory), the check goes on ungated; the
 *     sentinel's bans still apply.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"

#define AUTH_INFLIGHT_MAX 8 /* password checks at once from one address */
#define GATE_MAP_MAX 65536  /* addresses with a gate entry */

struct gate_entry {
	int inflight;      /* password checks running for the address */
	uint32_t fails;    /* failed since window_ms */
	int64_t window_ms;
	size_t len;
	char host[];
};

/*
 * The sentinel's auth_fail_addr detector, as the gate applies it: threshold
 * 0 when the gate refuses nothing (sentinel off, detector disabled, or an
 * action other than ban).
 */
static void gate_limits(const struct moat_config *c, uint32_t *threshold, uint32_t *window_s)
{
	const struct moat_config_detector *d = &c->detectors[MOAT_DET_AUTH_FAIL_ADDR];
	struct moat_sentinel_conf sc;

	moat_sentinel_conf_defaults(&sc);
	*threshold = d->set ? (d->enabled ? d->threshold : 0) : sc.det[MOAT_DET_AUTH_FAIL_ADDR].threshold;
	*window_s = d->set ? d->window_s : sc.det[MOAT_DET_AUTH_FAIL_ADDR].window_s;
	if (d->set && d->enabled && d->action != MOAT_ACT_BAN)
		*threshold = 0; /* the policy is not to refuse: the gate does not either */
	if (!c->sentinel)
		*threshold = 0;
}

/* Drops the entries that hold nothing (the caller holds addr_lock). */
static void gate_sweep(struct moat_broker *b, int64_t now, int64_t window_ms)
{
	size_t pos = 0;
	struct gate_entry *g;

	while ((g = moat_map_next(&b->auth_gate, &pos, NULL, NULL)))
		if (g->inflight == 0 && (g->fails == 0 || now - g->window_ms >= window_ms)) {
			moat_map_del(&b->auth_gate, g->host, g->len);
			free(g);
			pos = 0; /* the map changed under the cursor: start over */
		}
}

/* Returns 0 to go on with the password check, or the refusal reason with *why. */
uint8_t guard_auth_begin(struct moat_conn *c, const char **why)
{
	struct moat_broker *b = c->w->b;
	int64_t now = worker_now(c->w);
	uint32_t threshold, window_s;
	struct sockaddr_storage sa;
	const char *host = guard_client_host(c);
	size_t n = strlen(host);
	struct gate_entry *g;
	uint8_t rc = 0;

	if (guard_client_sockaddr(c, &sa) && moat_bans_allowed_addr(b->bans, (struct sockaddr *)&sa))
		return 0;
	gate_limits(b->conf, &threshold, &window_s);
	pthread_mutex_lock(&b->addr_lock);
	g = moat_map_get(&b->auth_gate, host, n);
	if (!g && b->auth_gate.len >= GATE_MAP_MAX)
		gate_sweep(b, now, (int64_t)window_s * 1000);
	if (!g && b->auth_gate.len < GATE_MAP_MAX && (g = calloc(1, sizeof(*g) + n + 1))) {
		memcpy(g->host, host, n + 1);
		g->len = n;
		g->window_ms = now;
		if (moat_map_put(&b->auth_gate, g->host, n, g) < 0) {
			free(g);
			g = NULL;
		}
	}
	if (g) {
		if (now - g->window_ms >= (int64_t)window_s * 1000) {
			g->fails = 0;
			g->window_ms = now;
		}
		if (threshold && g->fails >= threshold) {
			rc = MOAT_RC_CONNECTION_RATE_EXCEEDED; /* until the sentinel's ban lands */
			*why = "too many failed logins from this address";
		} else if (g->inflight >= AUTH_INFLIGHT_MAX) {
			rc = MOAT_RC_CONNECTION_RATE_EXCEEDED;
			*why = "too many logins at once from this address";
		} else {
			g->inflight++;
			c->auth_gated = true;
		}
	}
	pthread_mutex_unlock(&b->addr_lock);
	if (rc) {
		guard_event(c, MOAT_SEC_RATE_LIMITED, *why);
		c->refusal_reported = true;
	}
	return rc;
}

/* A password check ended (failed: it was wrong). */
void guard_auth_end(struct moat_conn *c, bool failed)
{
	struct moat_broker *b = c->w->b;
	struct gate_entry *g;

	if (!c->auth_gated)
		return;
	c->auth_gated = false;
	pthread_mutex_lock(&b->addr_lock);
	g = moat_map_get(&b->auth_gate, guard_client_host(c), strlen(guard_client_host(c)));
	if (g) {
		g->inflight--;
		if (failed)
			g->fails++;
		if (g->inflight == 0 && g->fails == 0) {
			moat_map_del(&b->auth_gate, g->host, g->len);
			free(g);
		}
	}
	pthread_mutex_unlock(&b->addr_lock);
}

/*
 * The sentinel banned addr (on its thread): the ban takes over from the
 * gate, so its step, not the gate's window, says when the address may try
 * again.
 */
void gate_banned(struct moat_broker *b, const char *addr)
{
	struct gate_entry *g;

	pthread_mutex_lock(&b->addr_lock);
	if ((g = moat_map_get(&b->auth_gate, addr, strlen(addr))))
		g->fails = 0;
	pthread_mutex_unlock(&b->addr_lock);
}
