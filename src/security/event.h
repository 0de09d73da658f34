/*
 * event.h - security events: one typed interface every decision that
 * matters goes through (who, from where, which method, what, and why not).
 *
 * Today an event becomes a log line ("security kind=... ..."); the sentinel
 * and the audit log (issue 6) attach as a sink and receive every event. The
 * sink is set once before threads start. Emitting is thread-safe and never
 * blocks on the sink's behalf beyond its own call. Fields are borrowed for
 * the call; secrets are never among them.
 */
#ifndef MOAT_SECURITY_EVENT_H
#define MOAT_SECURITY_EVENT_H

#include <stdint.h>

enum moat_sec_kind {
	MOAT_SEC_AUTH_SUCCESS,      /* a client is in: method says how */
	MOAT_SEC_AUTH_FAILURE,      /* refused at CONNECT: reason says why (not to the client) */
	MOAT_SEC_ACL_DENIED,        /* publish, subscribe, will or delivery refused */
	MOAT_SEC_CERT_REVOKED,      /* a live session lost its certificate (CRL, OCSP) */
	MOAT_SEC_CREDENTIAL_REVOKED,/* a live session lost its password or user on reload */
	MOAT_SEC_PROTOCOL_VIOLATION,
	MOAT_SEC_RELOAD,
	MOAT_SEC_KIND_COUNT
};

struct moat_sec_event {
	enum moat_sec_kind kind;
	const char *addr;       /* peer address, "" if none */
	const char *client_id;  /* may be NULL */
	const char *username;   /* may be NULL */
	const char *method;     /* "password", "certificate", "psk", "scram-sha-256", "anonymous"... */
	const char *reason;     /* for failures and denials */
	const char *topic;      /* for ACL events */
	const char *access;     /* "publish", "subscribe", "receive", "will" */
};

typedef void (*moat_sec_sink)(void *ctx, const struct moat_sec_event *e);

/* Adds a sink (at most 4) before threads start. */
void moat_sec_add_sink(moat_sec_sink sink, void *ctx);

/* Emits e: a log line, then every sink. */
void moat_sec_emit(const struct moat_sec_event *e);

/* The event kind's name as it appears in logs: "auth_failure", ... */
const char *moat_sec_kind_name(enum moat_sec_kind k);

/* How many events of each kind were emitted (for metrics and $SYS). */
uint64_t moat_sec_count(enum moat_sec_kind k);

#endif
