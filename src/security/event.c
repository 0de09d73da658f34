/*
 * event.c - security events (see event.h).
 */
#include "security/event.h"

#include <stdatomic.h>
#include <string.h>

#include "core/log.h"

#define MAX_SINKS 4

static struct {
	moat_sec_sink fn;
	void *ctx;
} sinks[MAX_SINKS];
static int nsinks;
static atomic_uint_fast64_t counts[MOAT_SEC_KIND_COUNT];

/* auth_success / auth_failure by method; "other" last, for anything else. */
static const char *const auth_methods[] = {
	"anonymous", "password", "certificate", "certificate+password", "psk",
	"scram-sha-256", "scram-sha-512", "other",
};
#define AUTH_METHODS (sizeof(auth_methods) / sizeof(auth_methods[0]))
static atomic_uint_fast64_t auth_counts[AUTH_METHODS][2]; /* [method][ok] */

static const char *const names[MOAT_SEC_KIND_COUNT] = {
	[MOAT_SEC_AUTH_SUCCESS] = "auth_success",
	[MOAT_SEC_AUTH_FAILURE] = "auth_failure",
	[MOAT_SEC_ACL_DENIED] = "acl_denied",
	[MOAT_SEC_CERT_REVOKED] = "certificate_revoked",
	[MOAT_SEC_CREDENTIAL_REVOKED] = "credential_revoked",
	[MOAT_SEC_PROTOCOL_VIOLATION] = "protocol_violation",
	[MOAT_SEC_RELOAD] = "reload",
	[MOAT_SEC_CONNECTION_OPENED] = "connection_opened",
	[MOAT_SEC_CONNECTION_REFUSED] = "connection_refused",
	[MOAT_SEC_ABNORMAL_CLOSE] = "abnormal_close",
	[MOAT_SEC_KEEPALIVE_TIMEOUT] = "keepalive_timeout",
	[MOAT_SEC_CONNECT_TIMEOUT] = "connect_timeout",
	[MOAT_SEC_PACKET_TOO_LARGE] = "packet_too_large",
	[MOAT_SEC_NO_SUBSCRIBER] = "no_subscriber",
	[MOAT_SEC_NEW_TOPIC] = "new_topic",
	[MOAT_SEC_IDLE_CLIENT] = "idle_client",
	[MOAT_SEC_RATE_LIMITED] = "rate_limited",
	[MOAT_SEC_BAN_HIT] = "ban_hit",
	[MOAT_SEC_BANNED] = "banned",
	[MOAT_SEC_KICKED] = "kicked",
	[MOAT_SEC_AVAILABILITY] = "availability",
	[MOAT_SEC_DETECTION] = "detection",
	[MOAT_SEC_LOCKDOWN] = "lockdown",
	[MOAT_SEC_INTEGRITY] = "integrity",
	[MOAT_SEC_ADMIN] = "admin",
};

const char *moat_sec_kind_name(enum moat_sec_kind k)
{
	return (unsigned)k < MOAT_SEC_KIND_COUNT && names[k] ? names[k] : "unknown";
}

void moat_sec_add_sink(moat_sec_sink sink, void *ctx)
{
	if (nsinks < MAX_SINKS) {
		sinks[nsinks].fn = sink;
		sinks[nsinks].ctx = ctx;
		nsinks++;
	}
}

uint64_t moat_sec_count(enum moat_sec_kind k)
{
	return (unsigned)k < MOAT_SEC_KIND_COUNT ? atomic_load(&counts[k]) : 0;
}

const char *moat_sec_auth_method(unsigned i)
{
	return i < AUTH_METHODS ? auth_methods[i] : NULL;
}

uint64_t moat_sec_auth_count(unsigned i, bool ok)
{
	return i < AUTH_METHODS ? atomic_load(&auth_counts[i][ok]) : 0;
}

static void count_auth(const struct moat_sec_event *e)
{
	unsigned i = 0;

	while (i < AUTH_METHODS - 1 && !(e->method && strcmp(e->method, auth_methods[i]) == 0))
		i++;
	atomic_fetch_add_explicit(&auth_counts[i][e->kind == MOAT_SEC_AUTH_SUCCESS], 1,
				  memory_order_relaxed);
}

/* Quotes s (peer-chosen text) for the log, or "-". */
static const char *q(char *buf, unsigned cap, const char *s)
{
	if (!s)
		return "-";
	return moat_log_quote(buf, cap, s, (unsigned)strlen(s));
}

/* Routine events log at debug or info; what an operator must see, at notice. */
static enum moat_log_level level(enum moat_sec_kind k)
{
	switch (k) {
	case MOAT_SEC_CONNECTION_OPENED:
	case MOAT_SEC_NEW_TOPIC:
	case MOAT_SEC_NO_SUBSCRIBER:
		return MOAT_LOG_LVL_DEBUG;
	case MOAT_SEC_AUTH_SUCCESS:
	case MOAT_SEC_ABNORMAL_CLOSE:
	case MOAT_SEC_IDLE_CLIENT:
		return MOAT_LOG_LVL_INFO;
	default:
		return MOAT_LOG_LVL_NOTICE;
	}
}

void moat_sec_emit(const struct moat_sec_event *e)
{
	enum moat_log_level lvl = level(e->kind);
	char id[160], user[160], topic[300];
	int i;

	if ((unsigned)e->kind < MOAT_SEC_KIND_COUNT)
		atomic_fetch_add_explicit(&counts[e->kind], 1, memory_order_relaxed);
	if (e->kind == MOAT_SEC_AUTH_SUCCESS || e->kind == MOAT_SEC_AUTH_FAILURE)
		count_auth(e);
	if (moat_log_enabled(lvl))
		moat_log(lvl, "security kind=%s addr=%s client_id=%s user=%s method=%s%s%s%s%s%s%s%s",
			 moat_sec_kind_name(e->kind), e->addr ? e->addr : "-",
			 q(id, sizeof(id), e->client_id), q(user, sizeof(user), e->username),
			 e->method ? e->method : "-", e->access ? " access=" : "",
			 e->access ? e->access : "", e->topic ? " topic=" : "",
			 e->topic ? q(topic, sizeof(topic), e->topic) : "",
			 e->reason ? " reason=\"" : "", e->reason ? e->reason : "",
			 e->reason ? "\"" : "");
	for (i = 0; i < nsinks; i++)
		sinks[i].fn(sinks[i].ctx, e);
}
