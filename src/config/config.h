/*
 * config.h - moatd's configuration: Mosquitto's file syntax, read through a
 * directive table.
 *
 * A config file is lines of `directive value...`; `#` starts a comment line;
 * blank lines are ignored. `listener PORT [ADDRESS]` opens a listener block:
 * listener-scoped directives after it apply to that listener, while the same
 * directives before the first listener set the default every listener starts
 * from. Global directives may appear anywhere. `include_dir DIR` reads every
 * file of DIR named *.conf, in alphabetical order, at that point.
 *
 * Every directive Mosquitto 2.0 documents is known: the ones moat supports
 * are read with their Mosquitto meaning; the rest are refused with the file,
 * the line and why (never ignored). An unknown directive, a bad value or a
 * value out of bounds is refused the same way.
 */
#ifndef MOAT_CONFIG_CONFIG_H
#define MOAT_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MOAT_CONFIG_MAX_LISTENERS 64

enum moat_listener_proto { MOAT_PROTO_MQTT = 0, MOAT_PROTO_WEBSOCKETS = 1 };
enum moat_socket_domain { MOAT_DOMAIN_ANY = 0, MOAT_DOMAIN_IPV4 = 4, MOAT_DOMAIN_IPV6 = 6 };

/* Log destinations and types are bit masks. */
enum {
	MOAT_LOGDEST_STDERR = 1 << 0,
	MOAT_LOGDEST_STDOUT = 1 << 1,
	MOAT_LOGDEST_FILE = 1 << 2,
	MOAT_LOGDEST_SYSLOG = 1 << 3,
};
enum {
	MOAT_LOG_DEBUG = 1 << 0,
	MOAT_LOG_ERROR = 1 << 1,
	MOAT_LOG_WARNING = 1 << 2,
	MOAT_LOG_NOTICE = 1 << 3,
	MOAT_LOG_INFORMATION = 1 << 4,
	MOAT_LOG_SUBSCRIBE = 1 << 5,
	MOAT_LOG_UNSUBSCRIBE = 1 << 6,
	MOAT_LOG_WEBSOCKETS = 1 << 7,
	MOAT_LOG_ALL = 0xFF,
};

/*
 * A detector's settings from `sentinel_<name> THRESHOLD WINDOW_S ACTION` or
 * `sentinel_<name> off`; names and actions are src/security/sentinel.h's.
 */
#define MOAT_CONFIG_DETECTORS 13
#define MOAT_CONFIG_BAN_STEPS 8

struct moat_config_detector {
	bool set;                 /* given in the file; otherwise the sentinel's default */
	bool enabled;
	uint32_t threshold;
	uint32_t window_s;
	uint8_t action;           /* 0 log, 1 disconnect, 2 throttle, 3 ban */
};

/* The detector names, in sentinel.h's order (index = enum moat_detector). */
extern const char *const moat_config_detector_names[MOAT_CONFIG_DETECTORS];

/* Settings a listener carries; the defaults block and each listener hold one. */
struct moat_listener_conf {
	char *address;            /* bind address or host; NULL = all addresses */
	uint16_t port;
	uint8_t protocol;         /* enum moat_listener_proto */
	uint8_t socket_domain;    /* enum moat_socket_domain */
	int allow_anonymous;      /* -1 unset (see moat_config_load), 0 false, 1 true */
	int32_t max_connections;  /* -1 = unlimited */
	uint32_t max_accept_rate; /* new connections per second, all addresses; 0 = no limit */
	char *mount_point;        /* NULL = none */
	const char *file;         /* where the listener line was (for messages) */
	int line;

	/* TLS: a listener with certfile (or psk_file) speaks TLS */
	char *cafile, *capath, *certfile, *keyfile, *crlfile, *dhparamfile;
	char *ciphers;            /* TLS 1.2 cipher list; NULL = moat's ECDHE+AEAD list */
	char *ciphers_tls13;      /* TLS 1.3 suites; NULL = OpenSSL's */
	char *tls_curves;         /* key exchange groups (moat's); NULL = X25519:P-256:P-384 */
	uint8_t tls_version;      /* minimum: 12 or 13 */
	uint8_t tls_keyform;      /* 0 = PEM, the only form read */
	bool require_certificate;
	bool use_identity_as_username;  /* the certificate's CN */
	bool use_subject_as_username;   /* the certificate's whole subject */
	bool use_san_as_username;       /* the first email/DNS/URI SAN (moat's) */
	bool tls_session_tickets;       /* resumption (moat's); default true */
	char *psk_file, *psk_hint;
	uint8_t ocsp_mode;        /* moat's: 0 off, 1 soft-fail, 2 hard-fail */
	char *ocsp_responder;     /* moat's: URL overriding the certificate's AIA */
	uint32_t ocsp_cache_seconds; /* moat's: how long a good answer holds; default 3600 */
	uint64_t tls_key_update_bytes;   /* moat's: TLS 1.3 KeyUpdate after this much; 0 off */
	uint32_t tls_key_update_seconds; /* moat's: ... or after this long; 0 off */

	/* Authentication and authorization */
	char *password_file;
	char *acl_file;
	char *auth_methods;       /* moat's: ordered list; NULL = every configured method */
	bool auth_rehash;         /* moat's: re-hash a legacy password entry on login */

	/* WebSockets (moat's) */
	char *websockets_origin;          /* comma-separated allowed Origins; NULL = any */
	char *websockets_trusted_proxies; /* comma-separated addresses whose X-Forwarded-For counts */
};

enum { MOAT_OCSP_OFF = 0, MOAT_OCSP_SOFT = 1, MOAT_OCSP_HARD = 2 };

struct moat_config {
	/* listeners */
	struct moat_listener_conf defaults;    /* listener settings before any listener line */
	struct moat_listener_conf listeners[MOAT_CONFIG_MAX_LISTENERS];
	int n_listeners;

	/* sessions and delivery (Mosquitto names and meanings) */
	uint32_t max_inflight_messages;  /* 0 = unlimited; default 20 */
	uint64_t max_inflight_bytes;     /* 0 = unlimited */
	uint32_t max_queued_messages;    /* 0 = unlimited; default 1000 */
	uint64_t max_queued_bytes;       /* 0 = unlimited */
	bool queue_qos0_messages;        /* default false */
	uint32_t max_packet_size;        /* 0 = protocol maximum */
	uint32_t message_size_limit;     /* payload bytes; 0 = no limit */
	uint16_t max_keepalive;          /* default 65535 */
	uint16_t max_topic_alias;        /* default 10 */
	uint8_t max_qos;                 /* default 2 */
	bool retain_available;           /* default true */
	bool allow_zero_length_clientid; /* default true */
	char *auto_id_prefix;            /* default "auto-" */
	bool upgrade_outgoing_qos;       /* default false */
	int64_t persistent_client_expiration; /* seconds; 0 = never */
	uint32_t sys_interval;           /* seconds; 0 = off; default 10 */
	bool set_tcp_nodelay;            /* default true (Mosquitto: false) */

	/* moat's own */
	uint32_t workers;                /* worker threads; 0 = one per core */
	uint32_t connect_timeout;        /* seconds to send CONNECT; default 10 */
	uint32_t preauth_max_packet_size; /* packet limit before CONNECT is accepted; default 65536 */
	uint64_t memory_limit;           /* ceiling on queued/inflight message memory; 0 = none */
	uint32_t max_subscriptions_per_client; /* 0 = unlimited */
	uint32_t inventory_max;          /* moat's: devices the inventory keeps; 0 = none */
	uint32_t auth_threads;           /* password hashing threads; default 2 */

	/* durable state (issue 7) */
	bool persistence;                /* Mosquitto's: keep state across restarts; default false */
	char *persistence_location;      /* the store's directory; NULL: the working directory */
	char *persistence_key_file;      /* moat's: the store's key; NULL: MOAT_STORE_KEY */
	uint8_t persistence_sync;        /* moat's: 0 always, 1 batch, 2 off */
	uint32_t persistence_sync_interval; /* moat's, batch: ms a commit may wait; default 10 */
	const char *restore_from;        /* moatd --restore FILE: start from this backup (not a directive) */
	uint32_t autosave_interval;      /* Mosquitto's; moat writes as it goes: accepted, no effect */
	bool autosave_on_changes;        /* Mosquitto's; likewise */

	/* the sentinel: detection and response (moat's) */
	bool sentinel;                   /* default true */
	char *audit_log;                 /* NULL = no audit log */
	uint64_t audit_log_max_size;     /* rotate past this; default 100 MiB; 0 = never */
	uint32_t audit_log_keep;         /* rotated files kept; default 5 */
	char *bans_file;                 /* bans that survive a restart; NULL = none */
	char *admin_socket;              /* moat's: the admin API's Unix socket; "none" = off;
					  * NULL = DIR/admin.sock with persistence, else off */
	uint32_t admin_port;             /* moat's: the admin API over TCP+TLS; 0 = none */
	char *admin_address;             /* its numeric address; NULL = 127.0.0.1 */
	char *admin_certfile, *admin_keyfile; /* its TLS certificate and key (required) */
	char *admin_cafile;              /* client certificates from this CA required; NULL = none */
	char *admin_token_file;          /* a bearer token required; NULL = none */
	struct moat_config_detector detectors[MOAT_CONFIG_DETECTORS];
	uint32_t ban_steps[MOAT_CONFIG_BAN_STEPS]; /* seconds; n_ban_steps 0 = the default */
	int n_ban_steps;
	char *sentinel_allow;            /* allow-list, space-separated; NULL = loopback, "" = none */
	uint32_t idle_timeout;           /* seconds without PUBLISH/SUBSCRIBE: an idle client; 0 off */
	uint32_t availability_s;         /* online this long, then lost: availability event; 0 off */
	uint32_t throttle_s;             /* how long the throttle response lasts; default 30 */
	uint32_t max_connection_rate;    /* new connections per second per address; 0 = no limit */
	uint32_t max_connections_per_address; /* 0 = no limit */
	uint32_t max_message_rate;       /* PUBLISHes per second per client; 0 = no limit */
	uint64_t max_byte_rate;          /* bytes per second per client; 0 = no limit */
	bool lockdown;                   /* refuse every new client not on the allow-list */

	/* process */
	char *pid_file;
	char *user;                      /* drop privileges to this user if started as root */
	unsigned log_dest;               /* MOAT_LOGDEST_* */
	char *log_file;                  /* for MOAT_LOGDEST_FILE */
	unsigned log_type;               /* MOAT_LOG_* */
	bool log_timestamp;              /* default true */
	char *log_timestamp_format;      /* strftime format; NULL = ISO 8601 UTC */
	bool connection_messages;        /* default true */
};

/* Sets every field to its default. No listener is configured. */
void moat_config_defaults(struct moat_config *c);

/*
 * Reads the file at path into c (which moat_config_defaults initialised).
 * Returns 0, or MOAT_ECONFIG with a message "FILE:LINE: why" in err[0..errlen),
 * or MOAT_EIO if the file cannot be read (message says which and why).
 * After a successful load, each listener's unset allow_anonymous is taken
 * from the defaults block; if that is unset too it stays -1, and the broker
 * allows anonymous clients on loopback and unix-socket listeners only.
 */
int moat_config_load(struct moat_config *c, const char *path, char *err, size_t errlen);

/*
 * Parses configuration text held in memory (for tests): the same rules as a
 * file; `file` names it in messages. include_dir is relative to the cwd.
 */
int moat_config_parse(struct moat_config *c, const char *text, const char *file, char *err,
		      size_t errlen);

/*
 * As moat_config_parse, for len bytes that may hold anything (a NUL byte in
 * a line is refused like any other fault): what moat_config_load does with a
 * file's bytes, exposed for the fuzzer.
 */
int moat_config_parse_mem(struct moat_config *c, const char *text, size_t len, const char *file,
			  char *err, size_t errlen);

/* Adds the listener moatd uses with no config: 127.0.0.1:1883, anonymous allowed. */
int moat_config_add_default_listener(struct moat_config *c, uint16_t port);

/*
 * For SIGHUP: copies into live every reload-safe setting of fresh (the
 * directive table marks which), and writes into msg a list of the settings
 * that differ but need a restart (empty string if none). Returns the number
 * of such settings.
 */
int moat_config_apply_reload(struct moat_config *live, const struct moat_config *fresh,
			     char *msg, size_t msglen);

/* Frees every string c owns. c may be reused after moat_config_defaults. */
void moat_config_free(struct moat_config *c);

#endif
