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

static const char *const names[MOAT_SEC_KIND_COUNT] = {
	[MOAT_SEC_AUTH_SUCCESS] = "auth_success",
	[MOAT_SEC_AUTH_FAILURE] = "auth_failure",
	[MOAT_SEC_ACL_DENIED] = "acl_denied",
	[MOAT_SEC_CERT_REVOKED] = "certificate_revoked",
	[MOAT_SEC_CREDENTIAL_REVOKED] = "credential_revoked",
	[MOAT_SEC_PROTOCOL_VIOLATION] = "protocol_violation",
	[MOAT_SEC_RELOAD] = "reload",
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

/* Quotes s (peer-chosen text) for the log, or "-". */
static const char *q(char *buf, unsigned cap, const char *s)
{
	if (!s)
		return "-";
	return moat_log_quote(buf, cap, s, (unsigned)strlen(s));
}

void moat_sec_emit(const struct moat_sec_event *e)
{
	enum moat_log_level lvl = e->kind == MOAT_SEC_AUTH_SUCCESS ? MOAT_LOG_LVL_INFO
								   : MOAT_LOG_LVL_NOTICE;
	char id[160], user[160], topic[300];
	int i;

	if ((unsigned)e->kind < MOAT_SEC_KIND_COUNT)
		atomic_fetch_add_explicit(&counts[e->kind], 1, memory_order_relaxed);
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
