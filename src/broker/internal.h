/*
 * internal.h - the types the broker's files share: broker, worker,
 * connection, session, delivery. Not for use outside src/broker/.
 *
 * Ownership and threads, the rules everything else relies on:
 *  - A connection belongs to one worker: only that worker's thread touches
 *    its socket, buffers and fields. It may move once, right after its
 *    CONNECT, to the worker that is home to its client id (see route.c).
 *  - A session belongs to its home worker, worker[hash(client id) % W], for
 *    its whole life, so every CONNECT for a client id lands on the same
 *    thread and takeover needs no lock. Other threads hold session pointers
 *    only with a reference (refs) and touch only `online` and `id`.
 *  - The subscription index, the retained store and the statistics are the
 *    only state shared between workers.
 *  - A message reaches a session on another worker through that worker's
 *    inbox: items are batched per loop turn and handed over with one lock
 *    and one eventfd write.
 */
#ifndef MOAT_BROKER_INTERNAL_H
#define MOAT_BROKER_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "broker/msg.h"
#include "broker/retain.h"
#include "broker/subs.h"
#include "config/config.h"
#include "core/map.h"
#include "core/mem.h"
#include "event/loop.h"
#include "mqtt/frame.h"
#include "mqtt/packet.h"
#include "net/ocsp.h"
#include "security/acl.h"
#include "security/event.h"
#include "security/passwd.h"
#include "security/pool.h"
#include "security/scram.h"
#include "security/ban.h"
#include "security/bucket.h"
#include "security/sentinel.h"
#include "store/store.h"
#include "admin/admin.h"
#include "net/tls.h"
#include "net/transport.h"

#define MOAT_VERSION "0.1.0"
#define MAX_WORKERS 64
#define SESSION_NEVER_EXPIRES UINT32_MAX
#define MOUNT_MAX 65535
#define CLOSE_QUIET 255 /* close_kind: no security event (server shutdown) */

struct moat_worker;
struct moat_conn;
struct listen_io;

/* ---- statistics: one writer each (its worker), read by $SYS ---- */

/* Why a message was dropped (GET /metrics, admin_metrics.c); msgs_dropped counts them all. */
enum drop_reason {
	DROP_NOT_AUTHORIZED,    /* the ACL refused the PUBLISH, or the delivery to a subscriber */
	DROP_RATE_LIMITED,      /* a 5.0 QoS > 0 PUBLISH over max_message_rate / max_byte_rate */
	DROP_SIZE_LIMIT,        /* payload over message_size_limit */
	DROP_CLIENT_MAX_PACKET, /* larger than the subscriber's Maximum Packet Size */
	DROP_MEMORY,            /* memory_limit reached */
	DROP_QUEUE_FULL,        /* a session's max_queued_messages / max_queued_bytes */
	DROP_QOS0_OFFLINE,      /* QoS 0 for an offline session (queue_qos0_messages false) */
	DROP_CONGESTED,         /* QoS 0 for a connection whose output is backed up */
	DROP_EXPIRED,           /* its Message Expiry Interval passed while it was queued */
	DROP_REASONS
};

struct moat_stats {
	atomic_uint_fast64_t msgs_received, msgs_sent, msgs_dropped;
	atomic_uint_fast64_t bytes_received, bytes_sent;
	atomic_uint_fast64_t pub_received, pub_sent;
	atomic_uint_fast64_t pub_received_qos[4], pub_sent_qos[4]; /* by QoS (index qos & 3) */
	atomic_uint_fast64_t dropped[DROP_REASONS];               /* msgs_dropped by reason */
	atomic_uint_fast64_t connects, disconnects;
	atomic_int_fast64_t clients_connected;
	atomic_int_fast64_t sessions;
};

/* Single-writer increment: a relaxed load and store, no locked instruction. */
#define STAT_ADD(st, field, v) \
	atomic_store_explicit(&(st)->field, \
			      atomic_load_explicit(&(st)->field, memory_order_relaxed) + (v), \
			      memory_order_relaxed)

/* A dropped message: counted in msgs_dropped ($SYS) and under its reason. */
#define STAT_DROP(st, why) \
	do { \
		STAT_ADD(st, msgs_dropped, 1); \
		STAT_ADD(st, dropped[why], 1); \
	} while (0)

/* ---- listeners ---- */

/* A listener's credentials and rules, swapped whole on reload; refcounted. */
struct moat_authdb {
	atomic_uint refs;
	struct moat_passwd *pw;         /* NULL: no password_file */
	struct moat_acl *acl;           /* NULL: no acl_file, everything allowed */
};

/* Factors a client can prove; an auth_methods alternative is a set of them. */
enum {
	F_ANON = 1 << 0,
	F_PASSWORD = 1 << 1,
	F_CERT = 1 << 2,
	F_PSK = 1 << 3,
	F_SCRAM256 = 1 << 4,
	F_SCRAM512 = 1 << 5,
};

#define MAX_AUTH_ALTS 8

struct moat_listener {
	const struct moat_listener_conf *conf;
	struct moat_tls_server *tls;    /* NULL for a plain listener */
	struct moat_ocsp *ocsp;         /* OCSP checker when ocsp_mode is on */
	int fds[4];
	int nfds;
	atomic_int connections;
	int index;                      /* in the broker's listeners */
	bool allow_anonymous;
	pthread_mutex_t db_lock;
	struct moat_authdb *db;         /* current; take with authdb_get */
	uint8_t alts[MAX_AUTH_ALTS];    /* auth_methods: each a set of F_* that lets a client in */
	int nalts;
	pthread_mutex_t rehash_lock;
	struct moat_map rehashed;       /* user -> struct rehash: legacy entries re-hashed (auth_rehash) */
};

/* ---- the broker ---- */

struct moat_broker {
	struct moat_config *conf;
	struct moat_listener listeners[MOAT_CONFIG_MAX_LISTENERS];
	int nlisteners;
	struct moat_worker *workers[MAX_WORKERS];
	int nworkers;
	struct moat_subs *subs;
	struct moat_retain *retain;
	struct moat_mem msg_mem;      /* messages and queues; memory_limit */
	struct moat_mem conn_mem;     /* connection buffers */
	atomic_uint_fast64_t next_session_id;
	atomic_int_fast64_t clients_total, clients_maximum;
	atomic_bool stopping;
	int64_t started_at;           /* wall clock seconds */
	pthread_barrier_t stop_barrier;
	struct moat_stats sys_stats;  /* the main thread's own ($SYS publishes) */
	struct moat_pool *auth_pool;  /* password hashing, off the workers */
	/* detection and response */
	struct moat_bans *bans;
	struct moat_audit *audit;
	struct moat_sentinel *sentinel;
	struct moat_store *store;     /* durable state (persist.c); NULL without persistence */
	atomic_uint_fast64_t store_seq; /* the next delivery row's sequence */
	struct moat_sys *secsys;      /* $SYS/moat/security publisher (the sentinel's thread) */
	atomic_bool bans_dirty;       /* a ban was placed: save the bans file */
	uint64_t audit_head_saved;    /* the audit head last put in the store (main thread) */
	atomic_int lockdown_set;      /* set through the admin API: -1 not, 0 off, 1 on */
	struct moat_admin *admin;     /* the admin API's server (admin.c), or NULL */
	struct moat_tls_server *admin_tls; /* its TCP listener's TLS, or NULL */
	char *admin_token;            /* its bearer token, or NULL */
	struct moat_admin_tls admin_tls_ops;
	struct moat_inventory *inventory; /* every device seen (inventory.c), or NULL */
	struct moat_blocks *blocks;   /* topic filters an administrator blocked (block.c) */
	pthread_mutex_t addr_lock;    /* the three below (guard.c, gate.c) */
	struct moat_map addr_counts;  /* host -> struct addr_count: connections per address */
	struct moat_map addr_rates;   /* host -> struct rate_entry: new connections per address */
	struct moat_map auth_gate;    /* host -> struct gate_entry: password checks per address */
	struct moat_bucket listener_rates[MOAT_CONFIG_MAX_LISTENERS]; /* max_accept_rate */
};

/* ---- deliveries: a message queued for or in flight to a session ---- */

enum delivery_state { D_QUEUED, D_WAIT_ACK, D_WAIT_COMP };

struct delivery {
	struct delivery *next, *prev;
	struct moat_msg *msg;
	uint32_t *subids;     /* nsubids identifiers: &subid0, or owned when more than one */
	uint32_t subid0;
	uint16_t nsubids;
	uint16_t packet_id;
	uint8_t qos;
	uint8_t state;        /* enum delivery_state */
	bool retain;          /* retain flag to send */
	uint64_t seq;         /* its row in the store, 0 if none (persist.c) */
};

struct dlist {
	struct delivery *head, *tail;
	uint32_t n;
	uint64_t bytes;
};

/* ---- sessions ---- */

struct sess_sub {
	uint8_t opts;
	uint32_t subid;
	size_t len;
	uint8_t filter[];
};

struct moat_session {
	atomic_uint refs;
	atomic_bool online;
	uint64_t id;
	struct moat_worker *home;
	struct moat_conn *conn;   /* NULL when offline */
	char *client_id;
	size_t client_id_len;
	uint8_t version;
	bool dead;                /* ended: not in the registry, takes no deliveries */
	uint32_t expiry;          /* seconds after disconnect; SESSION_NEVER_EXPIRES */
	int64_t expires_at;       /* monotonic ms, while offline */
	struct moat_map subs;     /* filter -> struct sess_sub */
	struct dlist queue;       /* waiting for the inflight window or for the client */
	struct dlist inflight;    /* sent, awaiting PUBACK / PUBREC / PUBCOMP, in send order */
	struct moat_map inflight_ids; /* packet id -> delivery in inflight */
	uint16_t next_packet_id;
	uint8_t skey[MOAT_SEAL_NAME_KEY_LEN]; /* its rows' key in the store (persist.c) */
	atomic_bool stored;       /* its row is in the store: deliveries to it are kept */
	/* inbound QoS 2 packet ids awaiting PUBREL: a small array, then a bitmap */
	uint16_t *qos2_small;
	uint16_t qos2_n;
	uint8_t *qos2_bits;       /* 8 KiB when in use */
	struct moat_msg *will;    /* delayed will waiting for will_at */
	int64_t will_at;
};

/* ---- connections ---- */

struct out_seg {
	size_t off, len;          /* header bytes in out.buf */
	struct moat_msg *msg;     /* its payload follows the header, or NULL */
};

struct out {
	uint8_t *buf;
	size_t len, cap;
	struct out_seg *seg;
	size_t nseg, segcap;
	size_t first;             /* first segment not fully written */
	size_t first_done;        /* bytes of it already written */
	size_t pending;           /* bytes queued, not yet written */
};

enum conn_state { C_NEW, C_AUTH, C_ACTIVE, C_CLOSING }; /* C_AUTH: an AUTH exchange (SCRAM) */

struct moat_conn {
	struct moat_io io;
	struct moat_transport *tr;      /* tcp, tls, websocket: owns the socket */
	struct moat_worker *w;
	struct moat_conn *prev, *next;  /* the worker's list */
	struct moat_listener *listener;
	uint8_t state;
	uint8_t version;
	bool dirty;                     /* in the worker's flush list */
	bool unread;                    /* in the worker's unread list (conn_read_unread) */
	bool disconnect_sent;
	bool graceful;                  /* DISCONNECT received: no will */
	struct moat_mqtt_framer in;
	struct out out;
	struct moat_session *session;
	char addr[64];
	int64_t connected_at;
	int64_t connected_wall;         /* wall clock seconds, for the admin API */
	int64_t last_rx;
	uint64_t bytes_in, bytes_out;   /* this connection's own counts (admin API) */
	uint64_t pub_in, pub_out;
	int64_t deadline;               /* connect timeout or keepalive */
	const char *mount;              /* the listener's mount_point, or NULL */
	uint16_t mount_len;
	uint16_t keepalive;
	/* what the client accepts */
	uint16_t client_receive_max;
	uint32_t client_max_packet;
	uint16_t client_alias_max;
	bool problem_info;
	/* what we accept */
	uint16_t receive_max;
	/* topic aliases, client to server: alias -> topic */
	struct { uint8_t *p; uint16_t len; } *alias_in;
	/* topic aliases, server to client: topic -> alias */
	struct moat_map alias_out;
	uint16_t alias_out_next;
	/* will of this connection */
	struct moat_msg *will;
	uint32_t will_delay;
	/* CONNECT decoded by the accepting worker, handled by the home worker (on the heap:
	   a decoded packet is large, and only connections changing worker need one) */
	struct moat_mqtt_packet *pending;
	bool has_pending;
	char assigned_id[40];
	bool id_assigned;
	const char *close_why;
	char *username;                 /* as authenticated: from CONNECT or the TLS identity */
	bool username_from_tls;
	char pending_id[128];           /* the CONNECT's client id, for events before a session */
	/* authentication and authorization */
	char *identity;                 /* TLS identity (certificate name or PSK identity), or NULL */
	uint8_t proven;                 /* F_* the client proved */
	uint8_t attempted;              /* F_* it is trying to prove (for events) */
	uint8_t max_qos;                /* effective for this client: server and ACL options */
	bool may_retain;
	bool may_wildcard;
	bool auth_wait;                 /* a password check is running on the auth pool */
	bool zombie;                    /* closed, in the worker's zombies until its work returns */
	uint32_t store_wait;            /* acknowledgements waiting for the store (persist.c) */
	uint64_t pw_fp;                 /* fingerprint of the password entry it used */
	struct moat_acl_client *acl;    /* its view of the ACL, or NULL (no acl_file) */
	uint8_t *stash;                 /* the CONNECT body kept while authentication goes on */
	size_t stash_len;
	struct moat_scram *scram;
	uint16_t scram_mech;
	uint8_t *connack_auth;          /* SCRAM server-final-message for the CONNACK */
	size_t connack_auth_len;
	bool acl_required;              /* the listener has an ACL: no view means deny */
	/* detection and rate limits */
	char host[64];                  /* addr without the port: what bans and counts key on */
	bool counted;                   /* counted in the broker's connections per address */
	bool auth_gated;                /* holds a place in its address's password checks (gate.c) */
	bool forwarded;                 /* addr is what a trusted proxy forwarded (X-Forwarded-For) */
	bool refusal_reported;          /* the guard's event tells why CONNECT is refused: no auth_failure */
	bool did_work;                  /* sent a PUBLISH or SUBSCRIBE (else idle after a time) */
	bool idle_reported;
	uint8_t close_kind;             /* the security event its close is (abnormal by default) */
	struct moat_bucket msg_bucket, byte_bucket;
	int64_t paused_until;           /* rate limited: no reading until then (monotonic ms) */
	int64_t throttled_until;        /* the sentinel throttles it until then */
	struct moat_map topics;         /* topic -> struct topic_use: what it used (bounded) */
	/* OCSP of the client certificate (listeners with ocsp_mode) */
	uint64_t ocsp_key;
	int64_t ocsp_checked_at;
	bool ocsp_started;
	bool ocsp_wait;                 /* hard-fail: CONNECT waits for the answer */
};

/* A topic a connection used (guard_topic): for new_topic events and the data-flow map. */
struct topic_use {
	uint64_t published;             /* accepted PUBLISHes to it */
	int64_t since;                  /* first use, monotonic ms */
	size_t len;
	char text[];
};

/* ---- workers ---- */

enum item_kind { IT_DELIVER, IT_ADOPT, IT_RECHECK, IT_OCSP, IT_AUTH, IT_REAUTH, IT_KICK,
		 IT_THROTTLE, IT_STORED, IT_QUERY };

/* A sentinel decision sent to a worker (IT_KICK, IT_THROTTLE): who, and why. */
struct verdict {
	char addr[64];        /* host without port, "" = any */
	char client_id[256];  /* "" = any */
	char username[256];   /* "" = any */
	char identity[256];   /* TLS identity (certificate name, PSK identity); "" = any */
	char why[128];
	uint32_t seconds;     /* IT_THROTTLE */
	uint8_t reason_code;  /* IT_KICK: the MQTT 5 DISCONNECT reason (0: 0x98) */
	bool banned;          /* IT_KICK: whoever the bans table now covers (the names above unused) */
};

struct item {
	uint8_t kind;
	uint8_t qos;
	bool retain;
	uint16_t nsubids;
	uint32_t subid;           /* the one identifier, when nsubids is 1 */
	uint32_t *subids;         /* owned array when nsubids > 1 */
	struct moat_session *s;   /* holds a reference */
	struct moat_msg *msg;     /* holds a reference */
	struct moat_conn *conn;   /* IT_ADOPT */
	uint64_t key;             /* IT_OCSP: the certificate; IT_REAUTH: the listener index */
	void *job;                /* IT_AUTH: the finished password check */
};

struct itemvec {
	struct item *v;
	size_t n, cap;
};

/* One target of a PUBLISH, after overlapping subscriptions are merged. */
struct target {
	struct moat_session *s;
	uint8_t qos;
	bool rap;
	uint16_t nsubids;
	uint32_t subid0;
	size_t subid_off;         /* into the scratch subid array when nsubids > 1 */
};

struct moat_worker {
	int index;
	pthread_t thread;
	struct moat_broker *b;
	struct moat_loop *loop;
	struct listen_io *listen[MOAT_CONFIG_MAX_LISTENERS * 4];
	int nlisten;
	struct moat_map sessions;        /* client id -> session, for sessions homed here */
	struct moat_conn *conns;         /* every connection of this worker */
	size_t nconns;
	uint64_t store_writes;           /* store writes queued by this worker (persist.c) */
	uint64_t store_mark;             /* store_writes when the current packet began */
	struct moat_conn **dirty;        /* connections with output to flush */
	size_t ndirty, dirtycap;
	struct moat_conn **unread;       /* input waiting in their transport, not the socket */
	size_t nunread, unreadcap;
	struct moat_conn *closing;       /* closed, freed before sleeping */
	struct moat_conn *zombies;       /* closed while a password check runs: freed when it ends */
	pthread_mutex_t inbox_lock;
	struct itemvec inbox;            /* filled by other threads */
	struct itemvec work;             /* the inbox taken over, being processed */
	struct itemvec *outbox;          /* per destination worker, flushed before sleep */
	struct moat_stats stats;
	uint8_t mountbuf[MOUNT_MAX];     /* a topic or filter under a mount point */
	/* scratch for matching one PUBLISH */
	struct target *targets;
	size_t ntargets, targetcap;
	uint32_t *subids;
	size_t nsubids, subidcap;
	struct target **dedup;
	size_t dedupcap;
	bool stop;
};

/* ---- functions shared between files ---- */

/* session.c */
struct moat_session *session_new(struct moat_worker *w, const uint8_t *id, size_t n);
void session_ref(struct moat_session *s);
void session_unref(struct moat_session *s);
void session_end(struct moat_session *s);
void session_deliver(struct moat_session *s, struct moat_msg *msg, uint8_t qos, bool retain,
		     const uint32_t *subids, uint16_t nsubids, uint64_t seq);
void session_deliver_retained(struct moat_session *s, struct moat_msg *msg, uint8_t qos,
			      const uint32_t *subids, uint16_t nsubids);
int session_restore_delivery(struct moat_session *s, struct moat_msg *msg, uint8_t qos,
			     bool retain, const uint32_t *subids, uint16_t nsubids, uint8_t state,
			     uint16_t packet_id, uint64_t seq);
void session_resume(struct moat_session *s);
void session_fill_window(struct moat_session *s);
int session_ack(struct moat_session *s, uint16_t id, uint8_t type);
int session_qos2_add(struct moat_session *s, uint16_t id);
bool session_qos2_has(struct moat_session *s, uint16_t id);
void session_qos2_del(struct moat_session *s, uint16_t id);
void session_tick(struct moat_worker *w, int64_t now);
bool session_online(const struct moat_session *s);
int session_subscribe(struct moat_session *s, const uint8_t *f, size_t n, uint8_t opts,
		      uint32_t subid, bool *existed);
int session_unsubscribe(struct moat_session *s, const uint8_t *f, size_t n);
void session_publish_will(struct moat_session *s);

/* persist.c */
int persist_open(struct moat_broker *b, char *err, size_t errlen);
int persist_load(struct moat_broker *b, char *err, size_t errlen);
void persist_flush(struct moat_broker *b);
int persist_rekey(struct moat_broker *b, const char *new_key_file, struct moat_store_stats *after,
		  char *err, size_t errlen);
int persist_backup(struct moat_broker *b, const char *path, bool replace, char *err, size_t errlen);
void persist_close(struct moat_broker *b);
void persist_session_init(struct moat_session *s);
void persist_retained(struct moat_worker *w, struct moat_broker *b, const struct moat_msg *m);
void persist_session(struct moat_session *s);
void persist_session_end(struct moat_session *s);
void persist_will(struct moat_session *s);
void persist_bans(struct moat_broker *b);
void persist_audit_head(struct moat_broker *b);
uint64_t persist_delivery_first(struct moat_worker *w, struct moat_session *s, uint8_t qos,
				const uint32_t *subids, uint16_t nsubids, const struct moat_msg *m);
void persist_delivery(struct moat_session *s, struct delivery *d);
void persist_delivery_gone(struct moat_session *s, uint64_t seq);
void persist_qos2(struct moat_session *s, uint16_t id, bool add);
void persist_ack(struct moat_conn *c, uint8_t type, uint16_t id, uint8_t reason,
		 uint64_t writes_before);
void persist_ack_done(struct moat_worker *w, void *job);

/* conn.c */
struct moat_conn *conn_new(struct moat_worker *w, struct moat_transport *tr,
			   struct moat_listener *l, const struct sockaddr_storage *sa);
void conn_attach(struct moat_worker *w, struct moat_conn *c);
void conn_detach(struct moat_conn *c);
void conn_close(struct moat_conn *c, const char *why);
void conn_fail(struct moat_conn *c, const struct moat_mqtt_fault *f);
void conn_disconnect(struct moat_conn *c, uint8_t reason, const char *why);
void conn_free(struct moat_conn *c);
int conn_process(struct moat_conn *c);
void conn_flush(struct moat_conn *c);
void conn_mark_dirty(struct moat_conn *c);
void conn_read_unread(struct moat_worker *w);
bool conn_congested(const struct moat_conn *c);
int conn_send(struct moat_conn *c, const struct moat_mqtt_packet *p);
int conn_send_publish(struct moat_conn *c, struct moat_msg *msg, uint8_t qos, bool retain,
		      bool dup, uint16_t packet_id, const uint32_t *subids, uint16_t nsubids);
void conn_send_ack(struct moat_conn *c, uint8_t type, uint16_t id, uint8_t reason);
void conn_tick(struct moat_worker *w, int64_t now);
void conn_ocsp_answer(struct moat_conn *c, enum moat_ocsp_status st);

/* mount.c */
int mount_topic(const struct moat_conn *c, struct moat_slice in, uint8_t *buf,
		struct moat_slice *out);

/* auth.c */
int auth_listener_init(struct moat_listener *l, char *err, size_t errlen);
void auth_listener_free(struct moat_listener *l);
int auth_listener_reload(struct moat_listener *l, char *err, size_t errlen);
struct moat_authdb *authdb_get(struct moat_listener *l);
void authdb_put(struct moat_authdb *db);
int auth_connect(struct moat_conn *c, const struct moat_mqtt_packet *p, uint8_t *reason,
		 const char **why);
void auth_job_finished(struct moat_worker *w, void *job);
int auth_packet(struct moat_conn *c, const struct moat_mqtt_packet *p);
void auth_recheck(struct moat_conn *c);
void auth_conn_free(struct moat_conn *c);
void acl_bind(struct moat_conn *c, const uint8_t *client_id, size_t n);
bool acl_allows(struct moat_conn *c, const uint8_t *topic, size_t n, int access);
void acl_refused(struct moat_conn *c, const uint8_t *topic, size_t n, const char *access,
		 const char *why);
void acl_denied(struct moat_conn *c, const uint8_t *topic, size_t n, const char *access);
const char *auth_method_name(uint8_t proven);
void auth_success(struct moat_conn *c, const char *client_id);
void auth_failure(struct moat_conn *c, const char *client_id, const char *why);
void conn_free_zombie(struct moat_conn *c);

/* handlers.c / connect.c */
int connect_accept(struct moat_conn *c, const struct moat_mqtt_packet *p);
void connect_refuse(struct moat_conn *c, uint8_t reason, const char *why);
int handle_packet(struct moat_conn *c, struct moat_mqtt_packet *p);
int handle_connect(struct moat_conn *c, struct moat_mqtt_packet *p);
int connect_route(struct moat_conn *c, struct moat_mqtt_packet *p);

/* publish.c */
size_t publish_message(struct moat_worker *w, struct moat_msg *msg);
void publish_will(struct moat_worker *w, struct moat_msg *will);

/* guard.c: the broker's side of the sentinel */
int guard_init(struct moat_broker *b, char *err, size_t errlen);
void guard_free(struct moat_broker *b);
void guard_event(struct moat_conn *c, enum moat_sec_kind kind, const char *reason);
void guard_note(enum moat_sec_kind kind, const char *reason);
void guard_reload(struct moat_broker *b);
int guard_accept(struct moat_worker *w, struct moat_listener *l, const struct sockaddr_storage *sa,
		 const char *host);
void guard_uncount(struct moat_broker *b, const char *host);
uint8_t guard_connect(struct moat_conn *c, const uint8_t *client_id, size_t n, const char **why);
const char *guard_client_host(const struct moat_conn *c);
bool guard_client_sockaddr(const struct moat_conn *c, struct sockaddr_storage *sa);
void guard_release(struct moat_broker *b, struct moat_conn *c);
bool guard_publish(struct moat_conn *c, size_t bytes);
void guard_topic(struct moat_conn *c, const uint8_t *topic, size_t n, bool probe, bool published);
void guard_tick(struct moat_conn *c, int64_t now);
void guard_verdict(struct moat_worker *w, int kind, struct verdict *v);
void guard_save_bans(struct moat_broker *b);
void guard_kick(struct moat_broker *b, const char *addr, const char *client_id,
		const char *username, const char *identity, const char *why);
void guard_kick_banned(struct moat_broker *b);
bool guard_lockdown(struct moat_broker *b);
void guard_set_lockdown(struct moat_broker *b, bool on);

/* admin.c, admin_clients.c, admin_metrics.c, admin_events.c */
int admin_start(struct moat_broker *b, char *err, size_t errlen);
void admin_stop(struct moat_broker *b);
void admin_free(struct moat_broker *b);
struct moat_admin_req;
struct moat_json;
int admin_clients(void *ctx, const struct moat_admin_req *req, struct moat_json *o);
int admin_client(void *ctx, const struct moat_admin_req *req, struct moat_json *o);
int admin_inventory(void *ctx, const struct moat_admin_req *req, struct moat_json *o);
int admin_flows(void *ctx, const struct moat_admin_req *req, struct moat_json *o);
int admin_software(void *ctx, const struct moat_admin_req *req, struct moat_json *o);

/* block.c */
struct moat_blocks *blocks_new(void);
void blocks_free(struct moat_blocks *bl);
bool blocks_hit(struct moat_blocks *bl, const uint8_t *topic, size_t n);
int admin_blocks(void *ctx, const struct moat_admin_req *req, struct moat_json *o);
int admin_block(void *ctx, const struct moat_admin_req *req, struct moat_json *o);
int admin_unblock(void *ctx, const struct moat_admin_req *req, struct moat_json *o);

/* inventory.c */
struct moat_inventory *inventory_new(size_t max);
void inventory_free(struct moat_inventory *inv);
void inventory_connected(struct moat_broker *b, struct moat_conn *c,
			 const struct moat_mqtt_connect *cn);
void inventory_disconnected(struct moat_broker *b, const char *client_id, size_t n);
int inventory_load(struct moat_broker *b, const uint8_t *key, size_t kn, const uint8_t *v,
		   size_t vn);
size_t inventory_loaded(struct moat_broker *b);
int admin_metrics(void *ctx, const struct moat_admin_req *req, struct moat_json *o);
int admin_events(void *ctx, const struct moat_admin_req *req, struct moat_json *o);
void admin_events_init(void);

/* gate.c: the password gate, password checks in flight per address */
uint8_t guard_auth_begin(struct moat_conn *c, const char **why);
void guard_auth_end(struct moat_conn *c, bool failed);
void gate_banned(struct moat_broker *b, const char *addr);

/* worker.c */
struct moat_worker *worker_new(struct moat_broker *b, int index);
int worker_start(struct moat_worker *w);
void worker_stop(struct moat_worker *w);
void worker_join(struct moat_worker *w);
void worker_free(struct moat_worker *w);
void worker_recheck_tls(struct moat_worker *w);
void worker_drain(struct moat_worker *w);
void worker_push(struct moat_worker *from, struct moat_worker *to, struct item it);
void worker_push_now(struct moat_worker *to, struct item it);
int worker_query(struct moat_broker *b, void (*fn)(struct moat_worker *w, void *arg), void *arg,
		 int timeout_ms);
void worker_query_run(struct moat_worker *w, void *job, bool run);
struct moat_worker *worker_home(struct moat_broker *b, const uint8_t *id, size_t n);
int64_t worker_now(const struct moat_worker *w);

#endif
