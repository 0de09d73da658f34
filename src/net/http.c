/*
 * http.c - the HTTP/1.1 upgrade handshake of RFC 6455: a strict, bounded,
 * incremental parser of the request (and of the 101 answer), and the writers.
 *
 * The parser reads whole lines. A line is complete when its LF has arrived;
 * it must end in CRLF (a bare LF, or a CR anywhere else, is refused), hold no
 * control character but HTAB in header values (no NUL, no DEL), and a header
 * line may not start with white space (obs-fold, RFC 7230 3.2.4) nor have
 * white space before its colon. The headers we act on are in one table with
 * their rules (once only? request or response?) and a handler; the others
 * are checked for syntax and ignored. Content-Length other than 0 and any
 * Transfer-Encoding are refused: an upgrade request has no body, and a body
 * we did not read would be taken for WebSocket frames.
 *
 * Origin is compared byte for byte with the allowed list when there is one;
 * a request without Origin comes from a program, not a browser, and the
 * check (against cross-site pages in a browser) has nothing to protect then.
 *
 * X-Forwarded-For is believed only from a trusted proxy, and then walked
 * from the right: the client is the rightmost address that is not itself a
 * trusted proxy (entries to its left were written by the client and prove
 * nothing); if every entry is a trusted proxy, the leftmost one.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/random.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "core/error.h"
#include "net/http.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- characters and lists ---- */

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A header value byte: VCHAR, SP, HTAB or obs-text; no other control, no DEL. */
static bool is_vbyte(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static void trim(const char **v, size_t *n)
{
	while (*n && is_ows(**v))
		(*v)++, (*n)--;
	while (*n && is_ows((*v)[*n - 1]))
		(*n)--;
}

static bool eq(const char *v, size_t n, const char *s, bool nocase)
{
	return strlen(s) == n && (nocase ? strncasecmp(v, s, n) : strncmp(v, s, n)) == 0;
}

/*
 * Walks the comma-separated list v[0..n): calls fn(arg, element, length) for
 * each non-empty element, white space trimmed, until fn returns true.
 * Returns true if fn did.
 */
static bool list_walk(const char *v, size_t n, bool (*fn)(void *, const char *, size_t),
		      void *arg)
{
	while (n) {
		const char *comma = memchr(v, ',', n);
		size_t len = comma ? (size_t)(comma - v) : n;
		const char *e = v;
		size_t el = len;

		trim(&e, &el);
		if (el && fn(arg, e, el))
			return true;
		if (!comma)
			break;
		v += len + 1;
		n -= len + 1;
	}
	return false;
}

struct tok {
	const char *want;
	bool nocase;
};

static bool tok_match(void *arg, const char *e, size_t n)
{
	const struct tok *t = arg;

	return eq(e, n, t->want, t->nocase);
}

static bool list_has(const char *v, size_t n, const char *want, bool nocase)
{
	struct tok t = {want, nocase};

	return list_walk(v, n, tok_match, &t);
}

/* ---- addresses ---- */

/* Narrows s[0..n) to its address: "a.b.c.d[:port]", "v6" or "[v6][:port]". */
static void host_part(const char **s, size_t *n)
{
	const char *p = *s, *c;

	if (*n && p[0] == '[') {
		c = memchr(p, ']', *n);
		if (c) {
			*s = p + 1;
			*n = (size_t)(c - p - 1);
		}
		return;
	}
	c = memchr(p, ':', *n);
	if (c && !memchr(c + 1, ':', *n - (size_t)(c + 1 - p)))
		*n = (size_t)(c - p); /* one colon: IPv4 and a port */
}

/* Parses an IPv4/IPv6 address (see host_part) into 16 bytes, IPv4 as ::ffff:a.b.c.d. */
static bool addr_parse(const char *s, size_t n, uint8_t out[16])
{
	char tmp[MOAT_HTTP_ADDR_MAX];
	struct in_addr v4;

	host_part(&s, &n);
	if (n == 0 || n >= sizeof(tmp))
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET, tmp, &v4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xFF;
		memcpy(out + 12, &v4, 4);
		return true;
	}
	return inet_pton(AF_INET6, tmp, out) == 1;
}

struct addr_in_list {
	uint8_t a[16];
};

static bool addr_match(void *arg, const char *e, size_t n)
{
	const struct addr_in_list *x = arg;
	uint8_t b[16];

	return addr_parse(e, n, b) && memcmp(x->a, b, 16) == 0;
}

bool moat_http_addr_listed(const char *list, const char *text, size_t len)
{
	struct addr_in_list x;

	if (!list || !text || !addr_parse(text, len, x.a))
		return false;
	return list_walk(list, strlen(list), addr_match, &x);
}

/* ---- header handlers: return 0, or a status to refuse with at once ---- */

typedef int (*header_fn)(struct moat_http_parser *p, const char *v, size_t n);

static int refuse(struct moat_http_parser *p)
{
	return p->response ? MOAT_EMALFORMED : 400;
}

static int h_host(struct moat_http_parser *p, const char *v, size_t n)
{
	(void)v;
	p->host_ok = n > 0;
	return 0;
}

static int h_upgrade(struct moat_http_parser *p, const char *v, size_t n)
{
	p->upgrade = list_has(v, n, "websocket", true);
	return 0;
}

static int h_connection(struct moat_http_parser *p, const char *v, size_t n)
{
	p->conn_upgrade |= list_has(v, n, "upgrade", true);
	return 0;
}

static int h_version(struct moat_http_parser *p, const char *v, size_t n)
{
	p->version_ok = eq(v, n, "13", false);
	return 0;
}

static bool is_b64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* base64 of exactly 16 bytes: 21 characters, one whose low 4 bits are 0, "==". */
static int h_key(struct moat_http_parser *p, const char *v, size_t n)
{
	size_t i;

	if (n != MOAT_HTTP_KEY_LEN || v[22] != '=' || v[23] != '=' || !v[21] ||
	    !strchr("AQgw", v[21]))
		return 0;
	for (i = 0; i < 21; i++)
		if (!is_b64(v[i]))
			return 0;
	memcpy(p->key, v, n);
	p->key[n] = '\0';
	p->key_ok = true;
	return 0;
}

static int h_protocol(struct moat_http_parser *p, const char *v, size_t n)
{
	if (p->response) {
		/* We offered only "mqtt"; one answer, and that one. */
		if (p->proto || !eq(v, n, "mqtt", false))
			p->bad_field = true;
		p->proto = 2;
		return 0;
	}
	if (list_has(v, n, "mqtt", false))
		p->proto = 2;
	else if (p->proto < 1 && list_has(v, n, "mqttv3.1", false))
		p->proto = 1;
	return 0;
}

struct span {
	const char *v;
	size_t n;
};

static bool span_match(void *arg, const char *e, size_t n)
{
	const struct span *x = arg;

	return n == x->n && memcmp(e, x->v, n) == 0;
}

/* Exact, byte for byte: browsers serialise an origin one way. */
static int h_origin(struct moat_http_parser *p, const char *v, size_t n)
{
	const char *list = p->pol->allowed_origins;
	struct span x = {v, n};

	if (list)
		p->origin_ok = list_walk(list, strlen(list), span_match, &x);
	return 0;
}

/* The canonical text of a parsed address: dotted quad for IPv4, RFC 5952 for IPv6. */
static void addr_format(const uint8_t a[16], char out[MOAT_HTTP_ADDR_MAX])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

	if (memcmp(a, mapped, 12) == 0)
		inet_ntop(AF_INET, a + 12, out, MOAT_HTTP_ADDR_MAX);
	else
		inet_ntop(AF_INET6, a, out, MOAT_HTTP_ADDR_MAX);
}

/* One X-Forwarded-For entry, left to right; see the file header. */
static bool xff_entry(void *arg, const char *e, size_t n)
{
	struct moat_http_parser *p = arg;
	uint8_t a[16];
	bool valid = addr_parse(e, n, a);
	bool trusted = valid && moat_http_addr_listed(p->pol->trusted_proxies, e, n);

	if (!p->xff_first[0] && valid)
		addr_format(a, p->xff_first);
	if (!trusted) {
		p->xff_bad = !valid;
		p->xff_last[0] = '\0';
		if (valid)
			addr_format(a, p->xff_last);
	}
	return false;
}

static int h_xff(struct moat_http_parser *p, const char *v, size_t n)
{
	if (p->peer_trusted)
		list_walk(v, n, xff_entry, p);
	return 0;
}

/* No body on an upgrade: a body we do not read would be taken for frames. */
static int h_length(struct moat_http_parser *p, const char *v, size_t n)
{
	(void)p;
	return eq(v, n, "0", false) ? 0 : 400;
}

static int h_encoding(struct moat_http_parser *p, const char *v, size_t n)
{
	(void)p, (void)v, (void)n;
	return 400;
}

static int h_accept(struct moat_http_parser *p, const char *v, size_t n)
{
	p->accept_ok = eq(v, n, p->expect_accept, false);
	return 0;
}

static int h_extensions(struct moat_http_parser *p, const char *v, size_t n)
{
	(void)v, (void)n;
	p->bad_field = true; /* we offered none */
	return 0;
}

enum { ONCE = 1, REQ = 2, RESP = 4 };

static const struct header {
	const char *name;
	unsigned flags;
	header_fn fn;
} headers[] = {
	{"host", ONCE | REQ, h_host},
	{"upgrade", ONCE | REQ | RESP, h_upgrade},
	{"connection", REQ | RESP, h_connection},
	{"sec-websocket-version", ONCE | REQ, h_version},
	{"sec-websocket-key", ONCE | REQ, h_key},
	{"sec-websocket-protocol", REQ | RESP, h_protocol},
	{"origin", ONCE | REQ, h_origin},
	{"x-forwarded-for", REQ, h_xff},
	{"content-length", ONCE | REQ, h_length},
	{"transfer-encoding", REQ, h_encoding},
	{"sec-websocket-accept", ONCE | RESP, h_accept},
	{"sec-websocket-extensions", RESP, h_extensions},
};

/* ---- lines ---- */

/*
 * Takes the next complete line of buf (within the bound). Returns 1 with the
 * line in [*s, *s + *n) (CRLF removed), 0 if it is not complete yet, or -1 if
 * it does not end in CRLF.
 */
static int next_line(struct moat_http_parser *p, const char *buf, size_t len, const char **s,
		     size_t *n)
{
	size_t lim = len < p->max ? len : p->max;
	const char *lf;
	size_t e;

	if (lim <= p->scan)
		return 0;
	lf = memchr(buf + p->scan, '\n', lim - p->scan);
	if (!lf) {
		p->scan = lim;
		return 0;
	}
	e = (size_t)(lf - buf);
	if (e == p->line || buf[e - 1] != '\r')
		return -1;
	*s = buf + p->line;
	*n = e - 1 - p->line;
	p->line = p->scan = e + 1;
	return 1;
}

/* "GET /mqtt HTTP/1.1": one space each, an origin-form target of visible ASCII. */
static int request_line(struct moat_http_parser *p, const char *s, size_t n)
{
	const char *sp1 = memchr(s, ' ', n), *sp2, *t, *q;
	size_t tn, i;

	if (!sp1 || !eq(s, (size_t)(sp1 - s), "GET", false))
		return 400;
	t = sp1 + 1;
	sp2 = memchr(t, ' ', n - (size_t)(t - s));
	if (!sp2 || !eq(sp2 + 1, n - (size_t)(sp2 + 1 - s), "HTTP/1.1", false))
		return 400;
	tn = (size_t)(sp2 - t);
	if (tn == 0 || t[0] != '/')
		return 400;
	for (i = 0; i < tn; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7F)
			return 400;
	q = memchr(t, '?', tn);
	if (q)
		tn = (size_t)(q - t);
	p->path_ok = eq(t, tn, "/mqtt", false) || eq(t, tn, "/", false);
	return 0;
}

/* "HTTP/1.1 101 Switching Protocols": a status other than 101 decides at once. */
static int status_line(struct moat_http_parser *p, const char *s, size_t n)
{
	static const char pre[] = "HTTP/1.1 ";
	const size_t k = sizeof(pre) - 1;
	size_t i;

	if (n < k + 3 || memcmp(s, pre, k) != 0 || (n > k + 3 && s[k + 3] != ' '))
		return MOAT_EMALFORMED;
	for (i = k; i < k + 3; i++)
		if (s[i] < '0' || s[i] > '9')
			return MOAT_EMALFORMED;
	p->status = (s[k] - '0') * 100 + (s[k + 1] - '0') * 10 + (s[k + 2] - '0');
	if (p->status < 100)
		return MOAT_EMALFORMED;
	return p->status == 101 ? 0 : p->status;
}

static int header_line(struct moat_http_parser *p, const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	const char *v;
	size_t nn, vn, i;

	if (!colon || colon == s)
		return refuse(p); /* also obs-fold: a line starting with SP/HTAB has no name */
	nn = (size_t)(colon - s);
	for (i = 0; i < nn; i++)
		if (!is_tchar((unsigned char)s[i]))
			return refuse(p);
	v = colon + 1;
	vn = n - nn - 1;
	trim(&v, &vn);
	for (i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		const struct header *h = &headers[i];
		uint32_t bit = 1u << i;

		if (!eq(s, nn, h->name, true) || !(h->flags & (p->response ? RESP : REQ)))
			continue;
		if ((h->flags & ONCE) && (p->seen & bit))
			return refuse(p);
		p->seen |= bit;
		return h->fn(p, v, vn);
	}
	return 0;
}

/* Every byte of a line: no control character but HTAB, no DEL, no bare CR. */
static bool line_bytes_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!is_vbyte((unsigned char)s[i]))
			return false;
	return true;
}

/* ---- verdicts ---- */

static int judge_request(struct moat_http_parser *p)
{
	if (!p->path_ok)
		return 404;
	if (!p->upgrade || !p->conn_upgrade || !p->version_ok)
		return 426;
	if (p->bad_field || !p->host_ok || !p->key_ok || !p->proto)
		return 400;
	if (!p->origin_ok)
		return 403;
	if (p->xff_last[0] || p->xff_bad) {
		if (p->xff_bad)
			return 400; /* the proxy we trust wrote an address we cannot read */
		memcpy(p->forwarded, p->xff_last, sizeof(p->forwarded));
	} else if (p->xff_first[0]) {
		memcpy(p->forwarded, p->xff_first, sizeof(p->forwarded));
	}
	p->protocol = p->proto == 2 ? "mqtt" : "mqttv3.1";
	return 101;
}

static int judge_response(struct moat_http_parser *p)
{
	if (!p->upgrade || !p->conn_upgrade || !p->accept_ok || p->bad_field)
		return MOAT_EMALFORMED;
	return 101;
}

/* Handles one complete line. Returns 0 to go on, or the verdict. */
static int take_line(struct moat_http_parser *p, const char *s, size_t n)
{
	if (!line_bytes_ok(s, n))
		return refuse(p);
	if (p->nlines++ == 0) {
		for (size_t i = 0; i < n; i++)
			if (s[i] == '\t')
				return refuse(p);
		return p->response ? status_line(p, s, n) : request_line(p, s, n);
	}
	if (n == 0) {
		p->end = p->line;
		return p->response ? judge_response(p) : judge_request(p);
	}
	return header_line(p, s, n);
}

int moat_http_parse(struct moat_http_parser *p, const char *buf, size_t len)
{
	const char *s;
	size_t n;
	int r;

	while (!p->verdict) {
		r = next_line(p, buf, len, &s, &n);
		if (r < 0) {
			p->verdict = refuse(p);
		} else if (r == 0) {
			if (len >= p->max)
				p->verdict = p->response ? MOAT_EMALFORMED : 431;
			return p->verdict;
		} else {
			p->verdict = take_line(p, s, n);
		}
	}
	return p->verdict;
}

/* ---- starting ---- */

void moat_http_request_init(struct moat_http_parser *p, const struct moat_http_policy *pol)
{
	memset(p, 0, sizeof(*p));
	p->pol = pol;
	p->max = pol->max_bytes ? pol->max_bytes : MOAT_HTTP_DEFAULT_MAX;
	p->origin_ok = true; /* no Origin: not a browser, nothing to protect */
	p->peer_trusted = pol->peer_addr &&
			  moat_http_addr_listed(pol->trusted_proxies, pol->peer_addr,
						strlen(pol->peer_addr));
}

void moat_http_response_init(struct moat_http_parser *p, const char *key)
{
	static const struct moat_http_policy none;

	memset(p, 0, sizeof(*p));
	p->pol = &none;
	p->max = MOAT_HTTP_DEFAULT_MAX;
	p->response = true;
	if (moat_http_accept_key(key, p->expect_accept) < 0)
		p->expect_accept[0] = '\0';
}

/* ---- writing ---- */

int moat_http_accept_key(const char *key, char out[MOAT_HTTP_ACCEPT_LEN + 1])
{
	char buf[MOAT_HTTP_KEY_LEN + sizeof(WS_GUID)];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t kn = strlen(key);

	if (kn != MOAT_HTTP_KEY_LEN)
		return MOAT_EINVAL;
	memcpy(buf, key, kn);
	memcpy(buf + kn, WS_GUID, sizeof(WS_GUID) - 1);
	if (EVP_Digest(buf, kn + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) != 1 ||
	    mdlen != 20)
		return MOAT_EIO;
	EVP_EncodeBlock((unsigned char *)out, md, 20);
	return 0;
}

int moat_http_new_key(char out[MOAT_HTTP_KEY_LEN + 1])
{
	unsigned char nonce[16];

	if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		return MOAT_EIO;
	EVP_EncodeBlock((unsigned char *)out, nonce, sizeof(nonce));
	return 0;
}

/* snprintf's verdict as a writer's return. */
static int written(int n, size_t cap)
{
	if (n < 0)
		return MOAT_EINVAL;
	return (size_t)n < cap ? n : MOAT_ENOSPC;
}

int moat_http_write_101(char *out, size_t cap, const char *key, const char *protocol)
{
	char accept[MOAT_HTTP_ACCEPT_LEN + 1];
	int rc = moat_http_accept_key(key, accept);

	if (rc < 0)
		return rc;
	return written(snprintf(out, cap,
				"HTTP/1.1 101 Switching Protocols\r\n"
				"Upgrade: websocket\r\n"
				"Connection: Upgrade\r\n"
				"Sec-WebSocket-Accept: %s\r\n"
				"Sec-WebSocket-Protocol: %s\r\n\r\n",
				accept, protocol),
		       cap);
}

static const struct refusal {
	int status;
	const char *reason;
	const char *body;
	const char *extra;
} refusals[] = {
	{400, "Bad Request", "bad websocket upgrade request\n", ""},
	{403, "Forbidden", "origin not allowed\n", ""},
	{404, "Not Found", "mqtt is served on /mqtt\n", ""},
	{426, "Upgrade Required", "websocket upgrade required\n",
	 "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"},
	{431, "Request Header Fields Too Large", "request header too large\n", ""},
};

int moat_http_write_refusal(char *out, size_t cap, int status)
{
	size_t i;

	for (i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *r = &refusals[i];

		if (r->status != status)
			continue;
		return written(snprintf(out, cap,
					"HTTP/1.1 %d %s\r\n"
					"Connection: close\r\n"
					"Content-Type: text/plain\r\n"
					"Content-Length: %zu\r\n%s\r\n%s",
					r->status, r->reason, strlen(r->body), r->extra, r->body),
			       cap);
	}
	return MOAT_EINVAL;
}

/* Visible ASCII only, non-empty, bounded: fit for a request line or a Host header. */
static bool visible(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1), i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7F)
			return false;
	return true;
}

int moat_http_write_request(char *out, size_t cap, const char *host, const char *path,
			    const char *key)
{
	if (!host || !path || !visible(host, 255) || !visible(path, 1024) || path[0] != '/')
		return MOAT_EINVAL;
	return written(snprintf(out, cap,
				"GET %s HTTP/1.1\r\n"
				"Host: %s\r\n"
				"Upgrade: websocket\r\n"
				"Connection: Upgrade\r\n"
				"Sec-WebSocket-Key: %s\r\n"
				"Sec-WebSocket-Version: 13\r\n"
				"Sec-WebSocket-Protocol: mqtt\r\n\r\n",
				path, host, key),
		       cap);
}
