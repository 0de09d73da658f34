/*
 * http.h - the HTTP/1.1 half of a WebSocket opening handshake (RFC 6455
 * section 4): a small, bounded, incremental parser for the client's upgrade
 * request (server side) and the server's 101 answer (client side), and the
 * writers of the request, the 101 and the refusals.
 *
 * Why hand-written: the handshake is the first thing an unauthenticated peer
 * reaches, it is a few hundred bytes with a dozen headers we care about, and
 * being strict (no obs-fold, no bare CR or LF, no NUL, no duplicate critical
 * header, no body) is what keeps a proxy in front of us and us from reading
 * the same bytes differently (request smuggling).
 *
 * Invariants:
 *   - The parser never allocates and never looks past the first max_bytes of
 *     the buffer; it examines each byte a bounded number of times, however
 *     the bytes were split across calls.
 *   - Its verdict depends only on the bytes, not on how they were split:
 *     feeding buf[0..k) then buf[0..len) gives what buf[0..len) gives at once.
 *   - The first line that breaks the syntax decides (400); the meaning of the
 *     headers is judged once the blank line is seen, in a fixed order:
 *     404 path, 426 not an upgrade / not version 13, 400 missing or bad
 *     field, 403 origin.
 */
#ifndef MOAT_NET_HTTP_H
#define MOAT_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	MOAT_HTTP_KEY_LEN = 24,    /* Sec-WebSocket-Key: base64 of 16 bytes */
	MOAT_HTTP_ACCEPT_LEN = 28, /* Sec-WebSocket-Accept: base64 of a SHA-1 */
	MOAT_HTTP_ADDR_MAX = 46,   /* INET6_ADDRSTRLEN */
	MOAT_HTTP_DEFAULT_MAX = 8192,
};

/* What the server accepts. All strings borrowed for the parser's life. */
struct moat_http_policy {
	const char *allowed_origins; /* comma-separated exact Origin values; NULL = any */
	const char *trusted_proxies; /* comma-separated addresses; NULL = none */
	const char *peer_addr;       /* the TCP peer: "a.b.c.d", "v6", a ":port" after either
				      * ("[v6]:port"); NULL = unknown */
	size_t max_bytes;            /* bound on the request head; 0 = MOAT_HTTP_DEFAULT_MAX */
};

struct moat_http_parser {
	/* set by init */
	const struct moat_http_policy *pol;
	size_t max;
	bool response;     /* parsing a 101 (client side) rather than a request */
	bool peer_trusted; /* the peer's X-Forwarded-For is believed */
	char expect_accept[MOAT_HTTP_ACCEPT_LEN + 1]; /* client side */
	/* progress */
	size_t line;     /* offset of the line being read */
	size_t scan;     /* where the search for its LF resumes */
	unsigned nlines; /* complete lines so far */
	uint32_t seen;   /* one bit per header of the table met */
	int verdict;     /* 0 while undecided, then what parse returns forever */
	/* what the head said */
	int status;       /* response: the server's status code */
	bool path_ok;     /* request: /mqtt or / */
	bool upgrade;     /* Upgrade lists websocket */
	bool conn_upgrade;/* Connection lists upgrade */
	bool version_ok;  /* Sec-WebSocket-Version: 13 */
	bool key_ok, host_ok, origin_ok, accept_ok, bad_field, xff_bad;
	uint8_t proto;    /* best subprotocol offered: 0 none, 1 mqttv3.1, 2 mqtt */
	char key[MOAT_HTTP_KEY_LEN + 1];
	char xff_last[MOAT_HTTP_ADDR_MAX];  /* rightmost untrusted X-Forwarded-For entry */
	char xff_first[MOAT_HTTP_ADDR_MAX]; /* leftmost entry */
	/* results, valid once parse returned 101 */
	size_t end;                             /* bytes of the head, blank line included */
	const char *protocol;                   /* request: "mqtt" or "mqttv3.1" (static) */
	char forwarded[MOAT_HTTP_ADDR_MAX];     /* request: client address via a trusted proxy, or "" */
};

/* Starts parsing a request under pol (borrowed until the parser is dropped). */
void moat_http_request_init(struct moat_http_parser *p, const struct moat_http_policy *pol);

/* Starts parsing the answer to a request that sent key (24 base64 characters). */
void moat_http_response_init(struct moat_http_parser *p, const char *key);

/*
 * Parses buf[0..len), all the bytes received so far (the same buffer, grown,
 * on every call). Request: returns 0 while the head is incomplete, 101 when
 * it is a valid upgrade (then p->end, p->protocol, p->key and p->forwarded
 * are set), or the refusal status: 400, 403, 404, 426 or 431 (head longer
 * than the bound). Response: 0 while incomplete, 101 for a valid upgrade,
 * MOAT_EMALFORMED for a head that does not parse or a 101 that does not
 * answer our request, or the server's own status (> 0, not 101). Once
 * decided, later calls return the same.
 */
int moat_http_parse(struct moat_http_parser *p, const char *buf, size_t len);

/* Writes base64(SHA-1(key ++ RFC 6455 GUID)) and a NUL into out[29]. Returns 0 or MOAT_EIO. */
int moat_http_accept_key(const char *key, char out[MOAT_HTTP_ACCEPT_LEN + 1]);

/* Writes a fresh random Sec-WebSocket-Key and a NUL into out[25]. Returns 0 or MOAT_EIO. */
int moat_http_new_key(char out[MOAT_HTTP_KEY_LEN + 1]);

/*
 * The writers: each writes a complete head (and a refusal's short body) into
 * out[0..cap). Returns its length, or MOAT_ENOSPC if cap is too small, or
 * MOAT_EINVAL for a status the table does not know / a host or path that
 * would not make a valid request line.
 */
int moat_http_write_101(char *out, size_t cap, const char *key, const char *protocol);
int moat_http_write_refusal(char *out, size_t cap, int status);
int moat_http_write_request(char *out, size_t cap, const char *host, const char *path,
			    const char *key);

/*
 * True if text[0..len) is an IPv4/IPv6 address (a port allowed, as in
 * peer_addr) that the comma-separated list names; IPv4-mapped IPv6
 * addresses are the IPv4 ones.
 */
bool moat_http_addr_listed(const char *list, const char *text, size_t len);

#endif
