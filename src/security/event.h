/*
 * event.h - security events: one typed interface every decision that
 * matters goes through (who, from where, which method, what, and why not).
 *
 * An event becomes a log line ("security kind=... ...") and goes to every
 * sink: the broker's feeds the sentinel thread (audit log, $SYS, detectors).
 * Sinks are added before threads start. Emitting is thread-safe and never
 * blocks on the sink's behalf beyond its own call. Fields are borrowed for
 * the call; secrets are never among them.
 */
#ifndef MOAT_SECURITY_EVENT_H
#define MOAT_SECURITY_EVENT_H

#include <stdbool.h>
#include <stdint.h>

enum moat_sec_kind {
	MOAT_SEC_AUTH_SUCCESS,      /* a client is in: method says how */
	MOAT_SEC_AUTH_FAILURE,      /* refused at CONNECT: reason says why (not to the client) */
	MOAT_SEC_ACL_DENIED,        /* publish, subscribe or will refused (deliveries are filtered quietly) */
	MOAT_SEC_CERT_REVOKED,      /* a live session lost its certificate (CRL, OCSP) */
	MOAT_SEC_CREDENTIAL_REVOKED,/* a live session lost its password or user on reload */
	MOAT_SEC_PROTOCOL_VIOLATION,/* a malformed or forbidden packet closed the connection */
	MOAT_SEC_RELOAD,            /* the configuration was reloaded */
	MOAT_SEC_CONNECTION_OPENED, /* a socket was accepted */
	MOAT_SEC_CONNECTION_REFUSED,/* listener or address full at accept; lockdown at CONNECT */
	MOAT_SEC_ABNORMAL_CLOSE,    /* a session ended without DISCONNECT (not keepalive) */
	MOAT_SEC_KEEPALIVE_TIMEOUT, /* a client went silent past 1.5 x its keepalive */
	MOAT_SEC_CONNECT_TIMEOUT,   /* no CONNECT (or TLS handshake) in time: slowloris */
	MOAT_SEC_PACKET_TOO_LARGE,  /* a packet over the limit */
	MOAT_SEC_NO_SUBSCRIBER,     /* a PUBLISH no one receives */
	MOAT_SEC_NEW_TOPIC,         /* a topic new for the client; value 1 if a probe (see guard_topic) */
	MOAT_SEC_IDLE_CLIENT,       /* connected, but no PUBLISH or SUBSCRIBE within idle time */
	MOAT_SEC_RATE_LIMITED,      /* a rate limit was hit (reason says which); value 1 if a client's message/byte rate */
	MOAT_SEC_BAN_HIT,           /* a banned address, client id or user tried */
	MOAT_SEC_BANNED,            /* a ban was placed (reason: by whom and why) */
	MOAT_SEC_KICKED,            /* a client was disconnected by the sentinel or an admin */
	MOAT_SEC_AVAILABILITY,      /* a steadily connected client went missing */
	MOAT_SEC_DETECTION,         /* a detector's threshold was crossed (reason: which) */
	MOAT_SEC_LOCKDOWN,          /* lockdown switched on or off */
	MOAT_SEC_INTEGRITY,         /* stored state failed a check: the audit log cut short, damaged store rows */
	MOAT_SEC_ADMIN,             /* an operator acted through the admin API (reason: what; username: who) */
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
	uint16_t port;          /* the listener's port, 0 if none */
	int64_t value;          /* a count or size the kind gives meaning to, else 0 */
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

/*
 * auth_success and auth_failure events by their method, for metrics: the
 * methods the broker names (auth_method_name in src/broker/auth.c), then
 * "other" for any other string or none. moat_sec_auth_method(i) is the i-th
 * name, NULL past the end; moat_sec_auth_count(i, ok) its count of
 * successes (ok) or failures.
 */
const char *moat_sec_auth_method(unsigned i);
uint64_t moat_sec_auth_count(unsigned i, bool ok);

#endif
