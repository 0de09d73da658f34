/*
 * server.c - the admin plane's HTTP server (see admin.h): the request
 * parser, the router, and the socket with its threads.
 *
 * The parser is a pure function over all the bytes received so far. It
 * walks complete lines (a line is complete when its LF has arrived), so the
 * first line that breaks the syntax decides at once; it never looks past
 * max_head bytes. Strings it returns are copied, decoded where said, into
 * the request's own storage, whose size bounds them (each decoded string is
 * no longer than its encoded form, and the target is at most
 * MOAT_ADMIN_TARGET_MAX bytes).
 *
 * Threads:
 *
 *   accept thread:  poll(listen fd, stop eventfd) -> accept -> credentials
 *                   -> 403 | 503 (at the limit) | a connection thread
 *   connection:     read the head (under one deadline) -> parse -> route
 *                   -> handler -> write the answer -> close
 *
 * a->refs counts the owner (until moat_admin_stop gives up waiting) and the
 * connection threads; whoever drops it to 0 frees a. a->active counts the
 * connection threads, for the limit and for stop's wait.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "core/error.h"
#include "core/hex.h"

/* ---- characters ---- */

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A byte of the request target, '%' included (its two hex digits are checked apart). */
static bool is_target_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("-._~!$&'()*+,;=:@/?%", c));
}

static bool is_vbyte(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static bool eq_nocase(const char *v, size_t n, const char *s)
{
	return strlen(s) == n && strncasecmp(v, s, n) == 0;
}

/* ---- request storage ---- */

/* Copies s[0..n) into req's storage, decoded if asked. Returns it, or NULL if refused. */
static const char *store(struct moat_admin_req *req, const char *s, size_t n, bool decode,
			 bool plus)
{
	char *out = req->store + req->used;
	size_t i, k = 0;

	if (n >= sizeof(req->store) - req->used)
		return NULL;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (decode && c == '%') {
			int h, l;

			if (i + 2 >= n)
				return NULL;
			h = moat_hex_digit((unsigned char)s[i + 1]);
			l = moat_hex_digit((unsigned char)s[i + 2]);
			if (h < 0 || l < 0 || (h | l) == 0)
				return NULL; /* a bad escape, or %00 */
			c = (unsigned char)(h << 4 | l);
			i += 2;
		} else if (decode && plus && c == '+') {
			c = ' ';
		}
		out[k++] = (char)c;
	}
	out[k] = '\0';
	req->used += k + 1;
	return out;
}

const char *moat_admin_param(const struct moat_admin_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nparams; i++)
		if (strcmp(req->params[i].name, name) == 0)
			return req->params[i].value;
	return NULL;
}

/* ---- the parser ---- */

static int refuse(struct moat_admin_req *req, int status, const char *why)
{
	req->why = why;
	return status;
}

/* Splits the raw query into decoded parameters. Returns 0 or a refusal. */
static int parse_query(struct moat_admin_req *req, const char *q, size_t n)
{
	while (n) {
		const char *amp = memchr(q, '&', n);
		size_t len = amp ? (size_t)(amp - q) : n;
		const char *eq = memchr(q, '=', len);
		size_t nlen = eq ? (size_t)(eq - q) : len;
		const char *name, *value;

		if (len) {
			if (nlen == 0)
				return refuse(req, 400, "a query parameter without a name");
			if (req->nparams == MOAT_ADMIN_MAX_PARAMS)
				return refuse(req, 400, "too many query parameters");
			name = store(req, q, nlen, true, true);
			value = eq ? store(req, eq + 1, len - nlen - 1, true, true)
				   : store(req, "", 0, false, false);
			if (!name || !value)
				return refuse(req, 400, "a query parameter that does not decode");
			if (moat_admin_param(req, name))
				return refuse(req, 400, "a query parameter given twice");
			req->params[req->nparams].name = name;
			req->params[req->nparams].value = value;
			req->nparams++;
		}
		if (!amp)
			break;
		q += len + 1;
		n -= len + 1;
	}
	return 0;
}

/* The request line l[0..n) (CRLF removed). Returns 0 or a refusal. */
static int parse_request_line(struct moat_admin_req *req, const char *l, size_t n)
{
	const char *sp1, *sp2, *t, *qm;
	size_t mlen, tlen, i;

	sp1 = memchr(l, ' ', n);
	if (!sp1 || sp1 == l)
		return refuse(req, 400, "a malformed request line");
	mlen = (size_t)(sp1 - l);
	if (mlen > MOAT_ADMIN_METHOD_MAX)
		return refuse(req, 400, "a method too long");
	for (i = 0; i < mlen; i++)
		if (!is_tchar((unsigned char)l[i]))
			return refuse(req, 400, "a malformed method");
	t = sp1 + 1;
	sp2 = memchr(t, ' ', n - (size_t)(t - l));
	if (!sp2)
		return refuse(req, 400, "a malformed request line");
	tlen = (size_t)(sp2 - t);
	if (tlen > MOAT_ADMIN_TARGET_MAX)
		return refuse(req, 414, "a request target too long");
	if (tlen == 0 || t[0] != '/')
		return refuse(req, 400, "a request target not in origin form");
	for (i = 0; i < tlen; i++) {
		if (!is_target_char((unsigned char)t[i]))
			return refuse(req, 400, "a character not allowed in the request target");
		if (t[i] == '%' && (i + 2 >= tlen || moat_hex_digit((unsigned char)t[i + 1]) < 0 ||
				    moat_hex_digit((unsigned char)t[i + 2]) < 0))
			return refuse(req, 400, "a bad percent-escape in the request target");
	}
	i = n - (size_t)(sp2 + 1 - l);
	if (i != 8 || memcmp(sp2 + 1, "HTTP/1.1", 8) != 0) {
		const char *v = sp2 + 1;

		if (i == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' &&
		    v[6] == '.' && v[7] >= '0' && v[7] <= '9')
			return refuse(req, 505, "only HTTP/1.1 is served");
		return refuse(req, 400, "a malformed HTTP version");
	}
	memcpy(req->method, l, mlen);
	req->method[mlen] = '\0';
	qm = memchr(t, '?', tlen);
	req->path = store(req, t, qm ? (size_t)(qm - t) : tlen, false, false);
	req->query = qm ? store(req, qm + 1, tlen - (size_t)(qm + 1 - t), false, false) : "";
	if (!req->path || !req->query)
		return refuse(req, 414, "a request target too long");
	return qm ? parse_query(req, qm + 1, tlen - (size_t)(qm + 1 - t)) : 0;
}

struct head_state {
	unsigned hosts;
	bool content_length;
	bool authorization;
};

/* A header line l[0..n). Returns 0 or a refusal. */
static int parse_header(struct moat_admin_req *req, struct head_state *h, const char *l, size_t n)
{
	const char *colon, *v;
	size_t nlen, vn, i;

	if (l[0] == ' ' || l[0] == '\t')
		return refuse(req, 400, "a folded header line");
	colon = memchr(l, ':', n);
	if (!colon || colon == l)
		return refuse(req, 400, "a malformed header line");
	nlen = (size_t)(colon - l);
	for (i = 0; i < nlen; i++)
		if (!is_tchar((unsigned char)l[i]))
			return refuse(req, 400, "a malformed header name");
	v = colon + 1;
	vn = n - nlen - 1;
	while (vn && (*v == ' ' || *v == '\t'))
		v++, vn--;
	while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
		vn--;
	for (i = 0; i < vn; i++)
		if (!is_vbyte((unsigned char)v[i]))
			return refuse(req, 400, "a control character in a header value");
	if (eq_nocase(l, nlen, "host")) {
		h->hosts++;
	} else if (eq_nocase(l, nlen, "authorization")) {
		if (h->authorization)
			return refuse(req, 400, "Authorization given twice");
		h->authorization = true;
		if (vn > MOAT_ADMIN_AUTH_MAX ||
		    !(req->authorization = store(req, v, vn, false, false)))
			return refuse(req, 431, "an Authorization header too long");
	} else if (eq_nocase(l, nlen, "transfer-encoding")) {
		return refuse(req, 400, "a request body is not accepted (Transfer-Encoding)");
	} else if (eq_nocase(l, nlen, "content-length")) {
		if (h->content_length)
			return refuse(req, 400, "Content-Length given twice");
		h->content_length = true;
		if (vn == 0)
			return refuse(req, 400, "a malformed Content-Length");
		for (i = 0; i < vn; i++)
			if (v[i] < '0' || v[i] > '9')
				return refuse(req, 400, "a malformed Content-Length");
		for (i = 0; i < vn; i++)
			if (v[i] != '0')
				return refuse(req, 413, "a request body is not accepted: "
							"parameters go in the query string");
	}
	return 0;
}

int moat_admin_parse_request(const char *buf, size_t len, size_t max_head,
			     struct moat_admin_req *req)
{
	struct head_state h = {0, false, false};
	size_t max = max_head ? max_head : MOAT_ADMIN_HEAD_DEFAULT;
	size_t n, pos = 0;
	unsigned line = 0;
	int rc;

	if (max > MOAT_ADMIN_HEAD_LIMIT)
		max = MOAT_ADMIN_HEAD_LIMIT;
	n = len < max ? len : max;
	req->method[0] = '\0';
	req->path = req->query = "";
	req->tail = NULL;
	req->nparams = 0;
	req->head_len = 0;
	req->why = NULL;
	req->used = 0;
	for (;;) {
		const char *l = buf + pos, *lf = memchr(l, '\n', n - pos);
		size_t ln;

		if (!lf) {
			if (memchr(l, '\0', n - pos))
				return refuse(req, 400, "a NUL byte in the request head");
			if (line == 0 && n - pos > MOAT_ADMIN_TARGET_MAX + MOAT_ADMIN_METHOD_MAX + 11)
				return refuse(req, 414, "a request target too long");
			if (len >= max)
				return refuse(req, 431, "the request head is too large");
			return 0;
		}
		ln = (size_t)(lf - l);
		if (ln == 0 || l[ln - 1] != '\r')
			return refuse(req, 400, "a line not ending in CRLF");
		ln--;
		if (memchr(l, '\r', ln))
			return refuse(req, 400, "a bare CR in the request head");
		if (memchr(l, '\0', ln))
			return refuse(req, 400, "a NUL byte in the request head");
		pos += ln + 2;
		if (line == 0)
			rc = parse_request_line(req, l, ln);
		else if (ln == 0)
			break;
		else
			rc = parse_header(req, &h, l, ln);
		if (rc)
			return rc;
		line++;
	}
	if (line == 0)
		return refuse(req, 400, "an empty request line");
	req->head_len = pos;
	if (h.hosts != 1)
		return refuse(req, 400, h.hosts ? "Host given twice" : "no Host header");
	if (len > pos)
		return refuse(req, 400, "bytes after the request head");
	return 200;
}

/* ---- routing ---- */

/* Does route path p match path; for a wildcard route, *tail gets the last segment. */
static bool path_match(const char *p, const char *path, const char **tail, size_t *tlen)
{
	size_t pl = strlen(p);

	*tail = NULL;
	if (pl >= 2 && p[pl - 1] == '*' && p[pl - 2] == '/') {
		const char *seg = path + pl - 1;

		if (strncmp(p, path, pl - 1) != 0 || !*seg || strchr(seg, '/'))
			return false;
		*tail = seg;
		*tlen = strlen(seg);
		return true;
	}
	return strcmp(p, path) == 0;
}

/* Is method one of the ", "-separated list? */
static bool listed(const char *list, const char *method)
{
	size_t n = strlen(method);

	while (*list) {
		const char *comma = strchr(list, ',');
		size_t len = comma ? (size_t)(comma - list) : strlen(list);

		if (len == n && strncmp(list, method, n) == 0)
			return true;
		if (!comma)
			break;
		list = comma + 2;
	}
	return false;
}

int moat_admin_route(const struct moat_admin_route *routes, size_t n, struct moat_admin_req *req,
		     moat_admin_handler *fn, char *allow, size_t allowlen)
{
	const char *tail;
	size_t i, tlen = 0, alen = 0;
	bool known = false;

	if (allowlen)
		allow[0] = '\0';
	for (i = 0; i < n; i++) {
		if (!path_match(routes[i].path, req->path, &tail, &tlen))
			continue;
		if (strcmp(routes[i].method, req->method) == 0) {
			if (tail && !(req->tail = store(req, tail, tlen, true, false))) {
				req->why = "a path segment that does not decode";
				return 400;
			}
			*fn = routes[i].fn;
			return 200;
		}
		known = true;
		if (allowlen && !listed(allow, routes[i].method)) {
			int k = snprintf(allow + alen, allowlen - alen, "%s%s", alen ? ", " : "",
					 routes[i].method);
			if (k > 0 && (size_t)k < allowlen - alen)
				alen += (size_t)k;
		}
	}
	req->why = known ? "method not allowed" : "not found";
	return known ? 405 : 404;
}

const char *moat_admin_reason(int status)
{
	static const struct {
		int status;
		const char *reason;
	} t[] = {
		{200, "OK"}, {201, "Created"}, {202, "Accepted"}, {204, "No Content"},
		{400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"},
		{404, "Not Found"}, {405, "Method Not Allowed"}, {408, "Request Timeout"},
		{409, "Conflict"}, {410, "Gone"}, {412, "Precondition Failed"},
		{413, "Content Too Large"}, {414, "URI Too Long"}, {422, "Unprocessable Content"},
		{423, "Locked"}, {429, "Too Many Requests"},
		{431, "Request Header Fields Too Large"}, {500, "Internal Server Error"},
		{501, "Not Implemented"}, {503, "Service Unavailable"},
		{505, "HTTP Version Not Supported"}, {507, "Insufficient Storage"},
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].status == status)
			return t[i].reason;
	return "Unknown";
}

/* ---- the server ---- */

struct moat_admin {
	struct moat_admin_conf conf;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev; /* the socket file we made, so stop unlinks only that */
	ino_t ino;
	const struct moat_admin_route *routes;
	size_t nroutes;
	void *ctx;
	int lfd, tfd, stopfd;     /* the Unix socket, the TCP listener (or -1), the stop event */
	pthread_t acceptor;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled when active drops */
	unsigned active, refs;
};

struct conn {
	struct moat_admin *a;
	int fd;
	bool fd_tcp;              /* from the TCP listener: TLS, and conf.tls's checks */
	void *tls;                /* its TLS session, once the handshake is done */
	struct moat_admin_req req;
	char buf[]; /* conf.max_head bytes */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_timeout(int fd, int opt, int64_t ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	if (ms <= 0)
		tv.tv_usec = 1000; /* 0 would mean no timeout */
	setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/* The TLS session this thread answers on (a TCP request), or none: answers go to the fd. */
static _Thread_local struct {
	void *session;
	const struct moat_admin_tls *ops;
} tls_out;

/* Writes all of iov (blocking, under SO_SNDTIMEO). Failures just end the answer. */
static void send_all(int fd, struct iovec *iov, int n)
{
	struct msghdr m = {0};

	if (tls_out.session) {
		for (int i = 0; i < n; i++)
			if (tls_out.ops->write(tls_out.session, iov[i].iov_base, iov[i].iov_len) < 0)
				return;
		return;
	}

	m.msg_iov = iov;
	m.msg_iovlen = (size_t)n;
	while (m.msg_iovlen) {
		ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		while (m.msg_iovlen && (size_t)w >= m.msg_iov->iov_len) {
			w -= (ssize_t)m.msg_iov->iov_len;
			m.msg_iov++;
			m.msg_iovlen--;
		}
		if (m.msg_iovlen) {
			m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + w;
			m.msg_iov->iov_len -= (size_t)w;
		}
	}
}

/* Writes a whole answer: status, headers, body[0..n). */
static void respond(int fd, int status, bool text, const char *allow, const char *body, size_t n)
{
	char head[512], clen[48] = "";
	struct iovec iov[2];
	int hl;

	if (status != 204) /* RFC 9110 8.6: a 204 has no Content-Length */
		snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", n);
	hl = snprintf(head, sizeof(head),
		      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s%s%s%s"
		      "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
		      status, moat_admin_reason(status),
		      text ? "text/plain; version=0.0.4; charset=utf-8" : "application/json", clen,
		      allow ? "Allow: " : "", allow ? allow : "", allow ? "\r\n" : "");
	if (hl < 0 || (size_t)hl >= sizeof(head))
		return;
	iov[0].iov_base = head;
	iov[0].iov_len = (size_t)hl;
	iov[1].iov_base = (void *)body;
	iov[1].iov_len = n;
	send_all(fd, iov, n ? 2 : 1);
}

/* An error answer {"error":why} (why defaults to the reason phrase, lower case). */
static void respond_error(int fd, int status, const char *why, const char *allow)
{
	struct moat_json j;
	char phrase[64];
	size_t i, n;
	const char *body;

	if (!why) {
		snprintf(phrase, sizeof(phrase), "%s", moat_admin_reason(status));
		for (i = 0; phrase[i]; i++)
			if (phrase[i] >= 'A' && phrase[i] <= 'Z')
				phrase[i] = (char)(phrase[i] - 'A' + 'a');
		why = phrase;
	}
	moat_json_init(&j, 4096);
	moat_json_begin_object(&j);
	moat_json_kstring(&j, "error", why);
	moat_json_end_object(&j);
	body = moat_json_data(&j, &n);
	if (moat_json_finish(&j) != 0) {
		body = "{\"error\":\"internal error\"}";
		n = strlen(body);
	}
	respond(fd, status, false, allow, body, n);
	moat_json_free(&j);
}

/* Reads the head under one deadline. Returns the parser's verdict, 408, or -1 (peer gone). */
static int read_head(struct conn *c)
{
	struct moat_admin *a = c->a;
	int64_t deadline = now_ms() + a->conf.timeout_ms;
	size_t len = 0, max = a->conf.max_head;

	for (;;) {
		int64_t left = deadline - now_ms();
		ssize_t r;

		if (left <= 0)
			return 408;
		set_timeout(c->fd, SO_RCVTIMEO, left);
		r = c->tls ? a->conf.tls->read(c->tls, c->buf + len, max - len)
			   : recv(c->fd, c->buf + len, max - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 408;
		if (r <= 0)
			return -1;
		len += (size_t)r;
		/* A verdict can change only when a line ends or the bound is reached. */
		if (memchr(c->buf + len - (size_t)r, '\n', (size_t)r) ||
		    memchr(c->buf + len - (size_t)r, '\0', (size_t)r) || len == max) {
			int rc = moat_admin_parse_request(c->buf, len, max, &c->req);
			if (rc)
				return rc;
		}
	}
}

/* Routes c's request, runs the handler and answers. */
static void serve(struct conn *c)
{
	struct moat_admin *a = c->a;
	moat_admin_handler fn = NULL;
	char allow[128];
	struct moat_json out;
	const char *body;
	size_t n;
	int status;
	bool text;

	status = moat_admin_route(a->routes, a->nroutes, &c->req, &fn, allow, sizeof(allow));
	if (status != 200) {
		respond_error(c->fd, status, status == 400 ? c->req.why : NULL,
			      status == 405 ? allow : NULL);
		return;
	}
	moat_json_init(&out, a->conf.max_response);
	status = fn(a->ctx, &c->req, &out);
	text = status & MOAT_ADMIN_TEXT;
	status &= ~MOAT_ADMIN_TEXT;
	if (status < 200 || status > 599)
		status = 500;
	if (out.len == 0 && status >= 400) {
		respond_error(c->fd, status, NULL, NULL);
	} else if (out.err || (out.len && !text && moat_json_finish(&out) != 0)) {
		respond_error(c->fd, 500, out.err == MOAT_ETOOBIG ? "response too large"
				       : out.err == MOAT_ENOMEM ? "out of memory"
				       : "internal error: malformed response", NULL);
	} else if (status == 204) {
		respond(c->fd, status, false, NULL, "", 0); /* 204 has no body, whatever was written */
	} else if (out.len == 0) {
		respond(c->fd, status, false, NULL, "{}", 2);
	} else {
		body = moat_json_data(&out, &n);
		respond(c->fd, status, text, NULL, body, n);
	}
	moat_json_free(&out);
}

static void release(struct moat_admin *a, bool conn)
{
	bool last;

	pthread_mutex_lock(&a->mu);
	if (conn)
		a->active--;
	last = --a->refs == 0;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	if (last) {
		pthread_cond_destroy(&a->cv);
		pthread_mutex_destroy(&a->mu);
		free(a);
	}
}

/* Constant-time: the Authorization header is "Bearer <token>", with conf's token. */
static bool token_ok(const char *auth, const char *token)
{
	size_t n = strlen(token), i;
	unsigned char diff;

	if (!auth || strncmp(auth, "Bearer ", 7) != 0 || strlen(auth + 7) != n)
		return false;
	diff = 0;
	for (i = 0; i < n; i++)
		diff |= (unsigned char)(auth[7 + i] ^ token[i]);
	return diff == 0;
}

/*
 * A TCP connection: the TLS handshake (the context decides whether a client
 * certificate is required), then who it is for the audit log. Returns false
 * (the connection is dropped) if the handshake fails.
 */
static bool tls_begin(struct conn *c)
{
	struct moat_admin *a = c->a;
	char subject[512], err[256], who[MOAT_ADMIN_WHO_MAX];

	set_timeout(c->fd, SO_RCVTIMEO, a->conf.timeout_ms);
	set_timeout(c->fd, SO_SNDTIMEO, a->conf.timeout_ms);
	c->tls = a->conf.tls->accept(a->conf.tls->ctx, c->fd, subject, sizeof(subject), err,
				     sizeof(err));
	if (!c->tls) {
		if (a->conf.refused)
			a->conf.refused(a->ctx, c->req.who, "admin TLS handshake failed");
		return false;
	}
	tls_out.session = c->tls;
	tls_out.ops = a->conf.tls;
	if (subject[0]) {
		snprintf(who, sizeof(who), "%.40s cert=%.500s", c->req.who, subject);
		memcpy(c->req.who, who, sizeof(who));
	}
	return true;
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct moat_admin *a = c->a;
	int rc;

	if (c->fd_tcp && !tls_begin(c)) {
		close(c->fd);
		free(c);
		release(a, true);
		return NULL;
	}
	rc = read_head(c);
	set_timeout(c->fd, SO_SNDTIMEO, a->conf.timeout_ms);
	if (rc == 200 && c->fd_tcp && a->conf.tls->token &&
	    !token_ok(c->req.authorization, a->conf.tls->token)) {
		if (a->conf.refused)
			a->conf.refused(a->ctx, c->req.who, "admin bearer token missing or wrong");
		respond_error(c->fd, 401, "a bearer token is needed (Authorization: Bearer ...)",
			      NULL);
	} else if (rc == 200) {
		serve(c);
	} else if (rc > 0) {
		respond_error(c->fd, rc, rc == 408 ? "request timeout" : c->req.why, NULL);
	}
	if (c->tls) {
		a->conf.tls->close(c->tls);
		tls_out.session = NULL;
	}
	shutdown(c->fd, SHUT_WR);
	close(c->fd);
	free(c);
	release(a, true);
	return NULL;
}

static bool uid_allowed(const struct moat_admin *a, uid_t uid)
{
	size_t i;

	if (uid == 0 || uid == geteuid())
		return true;
	for (i = 0; i < a->conf.n_allowed_uids; i++)
		if (a->conf.allowed_uids[i] == uid)
			return true;
	return false;
}

/* Hands connection fd to a thread of its own, within max_concurrent. */
static void spawn(struct moat_admin *a, int fd, bool tcp, const struct ucred *cr, const char *who)
{
	pthread_attr_t attr;
	pthread_t t;
	struct conn *c;
	bool busy;

	pthread_mutex_lock(&a->mu);
	busy = a->active >= a->conf.max_concurrent;
	if (!busy) {
		a->active++;
		a->refs++;
	}
	pthread_mutex_unlock(&a->mu);
	if (busy) { /* a TLS client cannot read a plain answer: it is just closed */
		if (!tcp)
			respond_error(fd, 503, "too many admin requests at once; try again", NULL);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c) + a->conf.max_head);
	if (c) {
		c->a = a;
		c->fd = fd;
		c->fd_tcp = tcp;
		c->req.uid = cr->uid;
		c->req.gid = cr->gid;
		c->req.pid = cr->pid;
		snprintf(c->req.who, sizeof(c->req.who), "%s", who);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, conn_main, c) == 0) {
			pthread_attr_destroy(&attr);
			return;
		}
		pthread_attr_destroy(&attr);
		free(c);
	}
	if (!tcp)
		respond_error(fd, 503, "cannot serve the request now", NULL);
	close(fd);
	release(a, true);
}

/* Takes a new Unix-socket connection: refuses a caller its uid does not allow. */
static void take(struct moat_admin *a, int fd)
{
	struct ucred cr = {.pid = -1, .uid = (uid_t)-1, .gid = (gid_t)-1};
	socklen_t crlen = sizeof(cr);
	char who[MOAT_ADMIN_WHO_MAX];

	set_timeout(fd, SO_SNDTIMEO, 200); /* the accept thread never waits long */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0)
		cr.uid = (uid_t)-1;
	snprintf(who, sizeof(who), "uid=%ld gid=%ld pid=%ld", (long)(int)cr.uid,
		 (long)(int)cr.gid, (long)cr.pid);
	if (cr.uid == (uid_t)-1 || !uid_allowed(a, cr.uid)) {
		respond_error(fd, 403, "this user may not use the admin socket", NULL);
		close(fd);
		if (a->conf.refused)
			a->conf.refused(a->ctx, who, "admin socket peer uid not allowed");
		return;
	}
	spawn(a, fd, false, &cr, who);
}

/* Takes a new TCP connection: TLS and the conf's checks happen on its thread. */
static void take_tcp(struct moat_admin *a, int fd, const struct sockaddr_storage *ss)
{
	struct ucred cr = {.pid = -1, .uid = (uid_t)-1, .gid = (gid_t)-1};
	char host[INET6_ADDRSTRLEN] = "?", who[MOAT_ADMIN_WHO_MAX];
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(who, sizeof(who), "tcp %s:%u", host, port);
	spawn(a, fd, true, &cr, who);
}

static void *accept_main(void *arg)
{
	struct moat_admin *a = arg;
	struct pollfd p[3] = {{.fd = a->stopfd, .events = POLLIN}, {.fd = a->lfd, .events = POLLIN},
			      {.fd = a->tfd, .events = POLLIN}};
	int backoff = -1, n = a->tfd >= 0 ? 3 : 2;

	for (;;) {
		if (poll(p, (nfds_t)n, backoff) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		backoff = -1;
		for (int i = 1; i < n; i++) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			int fd;

			if (!(p[i].revents & POLLIN))
				continue;
			p[i].revents = 0;
			fd = accept4(p[i].fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
				    errno == ENOMEM)
					backoff = 100; /* let descriptors free up, don't spin */
				continue;
			}
			if (i == 1)
				take(a, fd);
			else
				take_tcp(a, fd, &ss);
		}
	}
	return NULL;
}

/* The TCP listener: conf.tcp_address (numeric, default 127.0.0.1) and conf.tcp_port. */
static int make_tcp(struct moat_admin *a, char *err, size_t errlen)
{
	const char *addr = a->conf.tcp_address ? a->conf.tcp_address : "127.0.0.1";
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	int fd, one = 1;

	if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(a->conf.tcp_port);
		sl = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(a->conf.tcp_port);
		sl = sizeof(struct sockaddr_in6);
	} else {
		moat_set_err(err, errlen, "admin listener: %s is not a numeric address", addr);
		return MOAT_EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 16) != 0) {
		moat_set_err(err, errlen, "admin listener %s port %u: %s", addr, a->conf.tcp_port,
			     strerror(errno));
		if (fd >= 0)
			close(fd);
		return MOAT_EIO;
	}
	return fd;
}

/* Clears the way for the socket at path: refuses a non-socket or a live socket. */
static int clear_path(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, rc, e;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		moat_set_err(err, errlen, "admin socket %s: %s", path, strerror(errno));
		return MOAT_EIO;
	}
	if (!S_ISSOCK(st.st_mode)) {
		moat_set_err(err, errlen, "admin socket %s exists and is not a socket; "
					  "refusing to replace it", path);
		return MOAT_EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		moat_set_err(err, errlen, "socket: %s", strerror(errno));
		return MOAT_EIO;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	e = errno;
	close(fd);
	if (rc == 0) {
		moat_set_err(err, errlen, "admin socket %s is in use by another moatd", path);
		return MOAT_EEXIST;
	}
	if (e != ECONNREFUSED) {
		moat_set_err(err, errlen, "admin socket %s: cannot tell whether it is in use: %s",
			     path, strerror(e));
		return MOAT_EIO;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		moat_set_err(err, errlen, "admin socket %s: cannot remove the stale socket: %s",
			     path, strerror(errno));
		return MOAT_EIO;
	}
	return 0;
}

/* Creates, binds (never more open than 0600), chmods and listens. Returns the fd or < 0. */
static int make_socket(struct moat_admin *a, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	mode_t old;
	int fd, rc, e;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		moat_set_err(err, errlen, "socket: %s", strerror(errno));
		return MOAT_EIO;
	}
	memcpy(sa.sun_path, a->path, strlen(a->path) + 1);
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	e = errno;
	umask(old);
	if (rc != 0) {
		close(fd);
		moat_set_err(err, errlen, "admin socket %s: %s%s", a->path, strerror(e),
			     e == EADDRINUSE ? " (created by another process meanwhile)" : "");
		return e == EADDRINUSE ? MOAT_EEXIST : MOAT_EIO;
	}
	if (chmod(a->path, a->conf.socket_mode) != 0 || lstat(a->path, &st) != 0 ||
	    listen(fd, 16) != 0) {
		e = errno;
		unlink(a->path);
		close(fd);
		moat_set_err(err, errlen, "admin socket %s: %s", a->path, strerror(e));
		return MOAT_EIO;
	}
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	return fd;
}

static void conf_defaults(struct moat_admin_conf *c)
{
	if (!c->socket_mode)
		c->socket_mode = 0600;
	if (!c->max_concurrent)
		c->max_concurrent = 4;
	if (!c->timeout_ms)
		c->timeout_ms = 5000;
	if (!c->max_head)
		c->max_head = MOAT_ADMIN_HEAD_DEFAULT;
	if (c->max_head > MOAT_ADMIN_HEAD_LIMIT)
		c->max_head = MOAT_ADMIN_HEAD_LIMIT;
	if (!c->max_response)
		c->max_response = MOAT_JSON_DEFAULT_MAX;
	if (!c->stop_wait_ms)
		c->stop_wait_ms = 10000;
}

int moat_admin_start(const struct moat_admin_conf *c, const struct moat_admin_route *routes,
		     size_t nroutes, void *ctx, struct moat_admin **out, char *err, size_t errlen)
{
	struct moat_admin *a;
	pthread_condattr_t ca;
	sigset_t all, old;
	int rc;

	if (!c || !c->socket_path || !c->socket_path[0] || (nroutes && !routes) || !out) {
		moat_set_err(err, errlen, "admin: no socket path");
		return MOAT_EINVAL;
	}
	if (strlen(c->socket_path) >= sizeof(a->path)) {
		moat_set_err(err, errlen, "admin socket path %s is too long (at most %zu bytes)",
			     c->socket_path, sizeof(a->path) - 1);
		return MOAT_EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		moat_set_err(err, errlen, "admin: out of memory");
		return MOAT_ENOMEM;
	}
	a->conf = *c;
	conf_defaults(&a->conf);
	memcpy(a->path, c->socket_path, strlen(c->socket_path) + 1);
	a->conf.socket_path = a->path;
	a->routes = routes;
	a->nroutes = nroutes;
	a->ctx = ctx;
	a->refs = 1;
	a->lfd = a->tfd = a->stopfd = -1;
	pthread_mutex_init(&a->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cv, &ca);
	pthread_condattr_destroy(&ca);

	if (c->tcp_port && !c->tls) {
		moat_set_err(err, errlen, "admin listener: TLS is required");
		rc = MOAT_EINVAL;
		goto fail;
	}
	if ((rc = clear_path(a->path, err, errlen)) < 0 ||
	    (rc = a->lfd = make_socket(a, err, errlen)) < 0)
		goto fail;
	if (c->tcp_port && (rc = a->tfd = make_tcp(a, err, errlen)) < 0)
		goto fail_unlink;
	a->stopfd = eventfd(0, EFD_CLOEXEC);
	if (a->stopfd < 0) {
		moat_set_err(err, errlen, "eventfd: %s", strerror(errno));
		rc = MOAT_EIO;
		goto fail_unlink;
	}
	/* Our threads take no signals: the broker's main thread handles them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&a->acceptor, NULL, accept_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		moat_set_err(err, errlen, "admin: cannot start its thread: %s", strerror(rc));
		rc = MOAT_EIO;
		goto fail_unlink;
	}
	*out = a;
	return 0;

fail_unlink:
	unlink(a->path);
fail:
	if (a->lfd >= 0)
		close(a->lfd);
	if (a->tfd >= 0)
		close(a->tfd);
	if (a->stopfd >= 0)
		close(a->stopfd);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	free(a);
	return rc;
}

unsigned moat_admin_active(struct moat_admin *a)
{
	unsigned n;

	pthread_mutex_lock(&a->mu);
	n = a->active;
	pthread_mutex_unlock(&a->mu);
	return n;
}

void moat_admin_stop(struct moat_admin *a)
{
	uint64_t one = 1;
	struct timespec dl;
	struct stat st;

	if (!a)
		return;
	if (write(a->stopfd, &one, sizeof(one)) != sizeof(one))
		abort(); /* an eventfd write of 1 cannot fail; if it did, join would hang */
	pthread_join(a->acceptor, NULL);
	close(a->lfd);
	if (a->tfd >= 0)
		close(a->tfd);
	close(a->stopfd);
	if (lstat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino)
		unlink(a->path);
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += a->conf.stop_wait_ms / 1000;
	dl.tv_nsec += (long)(a->conf.stop_wait_ms % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&a->mu);
	while (a->active && pthread_cond_timedwait(&a->cv, &a->mu, &dl) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&a->mu);
	release(a, false);
}
