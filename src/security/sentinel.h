/*
 * sentinel.h - detection and response (NIST CSF Detect and Respond).
 *
 * Every security event from every worker reaches the sentinel's thread
 * through moat_sentinel_submit (a bounded queue: a flood of events cannot
 * take memory; what does not fit is counted and dropped). The thread writes
 * each event to the audit log, hands it to the $SYS publisher, and feeds the
 * detectors: counters over sliding windows keyed by address (and by address
 * prefix), user name and client id. When a detector's threshold is crossed
 * it acts by its policy: log, disconnect, throttle, or ban, with ban
 * durations that grow for repeat offenders. Nothing on the allow-list is
 * ever acted on. A trust score per address and per client id rises with
 * good behaviour and falls with events.
 *
 * Memory is bounded: each detector keeps at most a fixed number of keys
 * (the oldest are evicted), and windows are counted in a few buckets, not
 * per event.
 */
#ifndef MOAT_SECURITY_SENTINEL_H
#define MOAT_SECURITY_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "security/audit.h"
#include "security/ban.h"
#include "security/event.h"

enum moat_action { MOAT_ACT_LOG = 0, MOAT_ACT_DISCONNECT, MOAT_ACT_THROTTLE, MOAT_ACT_BAN };

enum moat_detector {
	MOAT_DET_CONNECT_RATE,       /* connection_opened per address, and per prefix */
	MOAT_DET_AUTH_FAIL_ADDR,     /* auth_failure per address (brute force) */
	MOAT_DET_AUTH_FAIL_USER,     /* auth_failure per user name (credential stuffing, one user) */
	MOAT_DET_AUTH_FAIL_CLIENTID, /* auth_failure per client id */
	MOAT_DET_ABNORMAL_CLOSE,     /* abnormal_close per client id and per address */
	MOAT_DET_FLAPPING,           /* auth_success per client id (reconnect loops) */
	MOAT_DET_TOPIC_SCAN,         /* new_topic per client id (and per address) */
	MOAT_DET_ACL_DENIALS,        /* acl_denied per client id (and per address) */
	MOAT_DET_UNDELIVERABLE,      /* no_subscriber per client id */
	MOAT_DET_IDLE,               /* idle_client per address */
	MOAT_DET_SLOWLORIS,          /* connect_timeout per address */
	MOAT_DET_VIOLATIONS,         /* protocol_violation and packet_too_large per address */
	MOAT_DET_PUBLISH_FLOOD,      /* rate_limited (message/byte rate) per client id */
	MOAT_DET_COUNT
};

/* The detector's name in config and logs: "connect_rate", "auth_fail_addr", ... */
const char *moat_detector_name(enum moat_detector d);
/* Looks a name up; -1 if unknown. */
int moat_detector_by_name(const char *name);
/* The action's name: "log", "disconnect", "throttle", "ban"; and back (-1 if unknown). */
const char *moat_action_name(enum moat_action a);
int moat_action_by_name(const char *name);

struct moat_detector_conf {
	bool enabled;
	uint32_t window_s;   /* sliding window */
	uint32_t threshold;  /* events within the window that trigger the action */
	uint8_t action;      /* enum moat_action */
};

#define MOAT_MAX_BAN_STEPS 8

struct moat_sentinel_conf {
	struct moat_detector_conf det[MOAT_DET_COUNT];
	uint32_t ban_steps_s[MOAT_MAX_BAN_STEPS]; /* 1st offence, 2nd, ...; the last repeats */
	int n_ban_steps;
	uint32_t offence_memory_s;   /* how long past offences count for escalation */
	uint32_t throttle_s;         /* how long a throttle lasts */
	uint32_t availability_min_s; /* online at least this long, then a keepalive timeout: availability event */
	uint8_t prefix4, prefix6;    /* address prefixes counted for connect_rate (24, 56) */
	uint32_t max_keys;           /* keys tracked per detector (memory bound) */
	uint32_t queue_max;          /* events waiting for the thread */
};

/* Fills c with moat's defaults: on, with thresholds that stop attacks and spare real fleets. */
void moat_sentinel_conf_defaults(struct moat_sentinel_conf *c);

/*
 * What the sentinel asks of the broker. Called on the sentinel thread; must
 * not block (the broker queues the work to its workers). Any may be NULL.
 */
struct moat_sentinel_ops {
	void *ctx;
	/*
	 * Disconnect the clients matching every non-NULL field (addr: a bare host,
	 * no port); MQTT 5 clients get a DISCONNECT with reason_code (0x98
	 * administrative action, 0x96 message rate too high).
	 */
	void (*disconnect)(void *ctx, const char *addr, const char *client_id, const char *username,
			   const char *why, uint8_t reason_code);
	/* Slow the matching clients down (pause their reads) for seconds. */
	void (*throttle)(void *ctx, const char *addr, const char *client_id, uint32_t seconds);
	/* Every event, for $SYS/moat/security/<kind> (the broker makes its own JSON of it). */
	void (*publish)(void *ctx, const struct moat_sec_event *e);
};

struct moat_sentinel;

/*
 * Makes a sentinel and starts its thread. bans (may be NULL) receives the
 * bans it places; audit (may be NULL) gets every event; ops tells the broker
 * what to do. Returns NULL if out of memory.
 */
struct moat_sentinel *moat_sentinel_new(const struct moat_sentinel_conf *c,
					struct moat_bans *bans, struct moat_audit *audit,
					const struct moat_sentinel_ops *ops);

/*
 * A reload: from its next event on, the sentinel judges by c's detectors,
 * ban steps and timings (table sizes and queue bound stay). Thread-safe.
 */
void moat_sentinel_reconfigure(struct moat_sentinel *s, const struct moat_sentinel_conf *c);

/* Drains the queue, stops the thread, frees. NULL is a no-op. */
void moat_sentinel_free(struct moat_sentinel *s);

/* Queues a copy of e (thread-safe, never blocks). The time is taken now. */
void moat_sentinel_submit(struct moat_sentinel *s, const struct moat_sec_event *e);

/*
 * Trust score (0..100, 50 for a stranger) of an address or a client id (give
 * one; the other NULL). Thread-safe.
 */
int moat_sentinel_trust(struct moat_sentinel *s, const char *addr, const char *client_id);

/* Events dropped because the queue was full. */
uint64_t moat_sentinel_dropped(struct moat_sentinel *s);

/*
 * Memory bounds, for tests and metrics (thread-safe, a snapshot): the keys
 * detector d tracks now, and the keys the trust scores track (addresses
 * plus client ids). Each table holds at most max_keys.
 */
size_t moat_sentinel_keys(struct moat_sentinel *s, enum moat_detector d);
size_t moat_sentinel_trust_keys(struct moat_sentinel *s);

/*
 * For tests: processes e at monotonic time now_ms on the calling thread,
 * exactly as the sentinel thread would (the thread must not be running:
 * use moat_sentinel_new_manual).
 */
struct moat_sentinel *moat_sentinel_new_manual(const struct moat_sentinel_conf *c,
					       struct moat_bans *bans, struct moat_audit *audit,
					       const struct moat_sentinel_ops *ops);
void moat_sentinel_feed(struct moat_sentinel *s, const struct moat_sec_event *e, int64_t now_ms);

#endif
