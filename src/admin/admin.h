/*
 * admin.h - the admin plane's HTTP server: a small HTTP/1.1 API on a Unix
 * domain socket, for `moat ctl` and the operator's own tools.
 *
 * The broker gives a table of routes (method, path, handler) and a context
 * pointer; the server owns the socket and the threads, parses requests
 * strictly, checks who is calling, routes, and writes the handler's JSON
 * document as the response. It knows nothing of MQTT.
 *
 * Who may call: the socket file is created mode 0600 (then chmod to the
 * configured mode) and every connection's peer credentials (SO_PEERCRED)
 * are checked: root, the process's effective uid and the configured uids
 * are let in; anyone else gets 403 and the conf's refused() callback.
 *
 * Requests (one per connection, the connection closes after the answer):
 *   - request line METHOD SP origin-form-target SP HTTP/1.1 CRLF, then
 *     header lines ending in CRLF, then CRLF; no NUL, no bare CR or LF, no
 *     obs-fold, no white space before a header's colon, exactly one Host;
 *   - no body: Content-Length, if present, must be 0 (else 413), and
 *     Transfer-Encoding is refused (400); parameters go in the query string
 *     (name=value pairs separated by '&', %XX and '+' decoded; a name given
 *     twice, an empty name, a decoded NUL or more than MOAT_ADMIN_MAX_PARAMS
 *     pairs are refused 400);
 *   - bounds: the head at most conf.max_head bytes (else 431), the target at
 *     most MOAT_ADMIN_TARGET_MAX bytes (else 414);
 *   - refusals of the parser: 400, 413, 414, 431, 505 (another HTTP version).
 *
 * Responses: Content-Type application/json (text/plain for a handler
 * returning its status | MOAT_ADMIN_TEXT), Content-Length, Connection: close.
 * An error (status >= 400) with an empty document gets {"error":"<reason>"};
 * a document that failed (out of memory, over conf.max_response, or
 * unbalanced) turns any status into 500 {"error":"..."}.
 *
 * Threads: one accept thread, and one short-lived thread per accepted
 * connection, at most conf.max_concurrent at once (beyond that the accept
 * thread answers 503 at once). Handlers therefore run concurrently with one
 * another and with the broker: they must lock what they touch. A long
 * handler (a backup) does not hold up a quick one (a kick).
 */
#ifndef MOAT_ADMIN_ADMIN_H
#define MOAT_ADMIN_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "admin/json.h"

enum {
	MOAT_ADMIN_TARGET_MAX = 4096,   /* request target (path and query) */
	MOAT_ADMIN_MAX_PARAMS = 32,     /* query parameters */
	MOAT_ADMIN_METHOD_MAX = 16,     /* method token */
	MOAT_ADMIN_HEAD_DEFAULT = 8192, /* default bound on the request head */
	MOAT_ADMIN_HEAD_LIMIT = 65536,  /* largest conf.max_head */
	MOAT_ADMIN_WHO_MAX = 640,       /* "tcp ADDR:PORT cert=SUBJECT" */
	MOAT_ADMIN_AUTH_MAX = 512,      /* an Authorization header's value */
	MOAT_ADMIN_TEXT = 0x10000,      /* or'ed into a handler's status: text/plain body */
};

struct moat_admin_param {
	const char *name, *value; /* decoded, NUL-terminated, in the request's storage */
};

/*
 * A parsed request. Every pointer points into the struct itself (store),
 * so a request is valid as long as the struct is, and is not copied.
 */
struct moat_admin_req {
	char method[MOAT_ADMIN_METHOD_MAX + 1]; /* "GET", "POST", "DELETE", ... */
	const char *path;  /* the path as sent (percent-encoding kept), query removed */
	const char *query; /* the raw query string without '?', "" if none */
	const char *tail;  /* a wildcard route's last segment, decoded; else NULL */
	size_t nparams;
	struct moat_admin_param params[MOAT_ADMIN_MAX_PARAMS];
	size_t head_len;   /* bytes of the head, blank line included */
	const char *why;   /* a refusal: a static phrase saying what was wrong */
	const char *authorization; /* the Authorization header's value, or NULL */
	/* peer credentials (set by the server, not by the parser; -1 if unknown) */
	uid_t uid;
	gid_t gid;
	pid_t pid;
	char who[MOAT_ADMIN_WHO_MAX]; /* "uid=1000 gid=1000 pid=1234", for audit lines */
	/* storage of the strings above */
	size_t used;
	char store[2 * MOAT_ADMIN_TARGET_MAX + 64];
};

/*
 * The value of the parameter name (decoded; "" for "?name" or "?name="),
 * or NULL if the request does not have it. Returns borrowed (valid as long
 * as req).
 */
const char *moat_admin_param(const struct moat_admin_req *req, const char *name);

/*
 * Parses the request head in buf[0..len), all the bytes received so far,
 * bounded by max_head (0 = MOAT_ADMIN_HEAD_DEFAULT, at most
 * MOAT_ADMIN_HEAD_LIMIT). A pure function: no allocation, no I/O.
 * Returns
 *   0    the head is not complete yet (read more, call again with all of it);
 *   200  a valid request: req's method, path, query, params and head_len set;
 *   400, 413, 414, 431, 505: the refusal, with req->why saying why.
 * Complete lines are checked as they arrive, so a malformed head is refused
 * before its end. Bytes after the head (a body) are refused 400, when seen.
 * req is written in every case (its contents are meaningful on 200 only).
 */
int moat_admin_parse_request(const char *buf, size_t len, size_t max_head,
			     struct moat_admin_req *req);

/*
 * A handler: reads req (borrowed for the call), writes its answer into out
 * (an empty document) and returns an HTTP status (200, 201, 400, 404, 409,
 * 500, 503, ...), or'ed with MOAT_ADMIN_TEXT for a text/plain body written
 * with moat_json_raw. For an error it may write {"error":"..."} itself
 * ("error" first: `moat ctl` prints that member); left empty, the server
 * writes a default one. A 2xx left empty is answered {}; a 204 has no body. Called on a connection's
 * thread, concurrently with other handlers.
 */
typedef int (*moat_admin_handler)(void *ctx, const struct moat_admin_req *req,
				  struct moat_json *out);

/*
 * A route: method and path matched exactly, byte for byte on the path as
 * sent. A wildcard path, whose last segment is "*" (written here as
 * "/v1/clients/<*>", in the table without the brackets), matches one more
 * non-empty segment (no '/'), decoded into req->tail: it serves
 * GET /v1/clients/c%2F1 with tail "c/1". Unknown path: 404; a known path with another method: 405 and
 * an Allow header listing the methods the table has for it.
 */
struct moat_admin_route {
	const char *method;
	const char *path;
	moat_admin_handler fn;
};

/*
 * TLS for the TCP listener, done by the broker (OpenSSL lives in src/net/):
 * accept handshakes on a blocking fd and returns a session (NULL: refused),
 * writing the verified client certificate's subject ("" if none); read,
 * write and close as moat_tls_session_*. token, if set, is the bearer token
 * every TCP request must carry (Authorization: Bearer TOKEN), compared in
 * constant time; a missing or wrong one gets 401.
 */
struct moat_admin_tls {
	void *ctx;
	void *(*accept)(void *ctx, int fd, char *subject, size_t n, char *err, size_t errlen);
	ssize_t (*read)(void *session, void *buf, size_t n);
	int (*write)(void *session, const void *buf, size_t n);
	void (*close)(void *session);
	const char *token;
};

struct moat_admin_conf {
	const char *socket_path;   /* required; at most 107 bytes */
	mode_t socket_mode;        /* 0 = 0600 */
	const uid_t *allowed_uids; /* more uids let in (root and our euid always are) */
	size_t n_allowed_uids;
	unsigned max_concurrent;   /* requests served at once; 0 = 4 */
	unsigned timeout_ms;       /* to read a request, and to write each answer; 0 = 5000 */
	size_t max_head;           /* request head bound; 0 = 8192, capped at MOAT_ADMIN_HEAD_LIMIT */
	size_t max_response;       /* response document bound; 0 = 64 MiB */
	unsigned stop_wait_ms;     /* how long stop waits for handlers; 0 = 10000 */
	uint16_t tcp_port;         /* an optional TCP listener, TLS only; 0 = none */
	const char *tcp_address;   /* its numeric address; NULL = 127.0.0.1 */
	const struct moat_admin_tls *tls; /* required with tcp_port (borrowed until stop) */
	/*
	 * Optional: called (on the accept thread, with start's ctx) when a
	 * connection is refused for its credentials; who is like req->who,
	 * why a static phrase. Must not block.
	 */
	void (*refused)(void *ctx, const char *who, const char *why);
};

struct moat_admin;

/*
 * Creates the socket and starts serving routes[0..nroutes) with ctx
 * (routes, ctx and conf's strings borrowed until moat_admin_stop returns;
 * the conf struct itself is copied).
 *
 * The socket path: a path that exists and is not a socket is refused; a
 * socket nobody listens on (connect gives ECONNREFUSED) is removed as
 * stale; a socket someone listens on is refused ("admin socket PATH is in
 * use by another moatd"). The bind runs under umask 0177, so the socket is
 * never more accessible than 0600 before its chmod to conf->socket_mode
 * (umask is process-wide: call this before other threads create files, or
 * accept that a file created during the bind gets mode & 0600).
 *
 * Returns 0 and *out (owned, stop with moat_admin_stop), or MOAT_EINVAL,
 * MOAT_EEXIST (path in use, or not a socket), MOAT_EIO, MOAT_ENOMEM, with
 * err saying why.
 */
int moat_admin_start(const struct moat_admin_conf *c, const struct moat_admin_route *routes,
		     size_t nroutes, void *ctx, struct moat_admin **out, char *err,
		     size_t errlen);

/*
 * Stops accepting, waits up to conf.stop_wait_ms for the requests in
 * flight, unlinks the socket and frees a. A handler still running after
 * the wait keeps what it needs of a alive and frees it when it ends; ctx
 * must then outlive it (returns without waiting further). NULL is a no-op.
 */
void moat_admin_stop(struct moat_admin *a);

/* Requests being served now (for tests and metrics). */
unsigned moat_admin_active(struct moat_admin *a);

/*
 * Routes req (parsed) in routes[0..n): sets *fn and req->tail and returns
 * 200, or 404, or 405 with the allowed methods in allow[0..allowlen) ("GET,
 * POST"), or 400 for a tail whose decoding is refused. Exposed for tests.
 */
int moat_admin_route(const struct moat_admin_route *routes, size_t n, struct moat_admin_req *req,
		     moat_admin_handler *fn, char *allow, size_t allowlen);

/* The reason phrase of an HTTP status ("Not Found"); "Unknown" if not in the table. */
const char *moat_admin_reason(int status);

#endif
