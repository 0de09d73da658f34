/*
 * ws.h - MQTT over WebSockets (RFC 6455): a transport that wraps another one
 * (plain TCP or TLS) and carries the MQTT byte stream in binary messages.
 *
 * The server side reads the HTTP upgrade request through the lower transport
 * (see http.h for what it accepts), answers 101 or a refusal, then frames
 * with wslay. The client side (moat pub/sub -w) sends the upgrade request for
 * the subprotocol "mqtt" and checks the 101. Either way, read() returns MQTT
 * bytes, whatever the message and frame boundaries were, and writev()
 * queues bytes as binary messages that flush() pushes out.
 *
 * What ends a stream (read's result):
 *   0               the peer sent a close frame (answered), or the lower
 *                   stream ended
 *   MOAT_EPROTOCOL  a bad upgrade request (after its 400/404/426/431), a text
 *                   frame (close 1003), a frame breaking RFC 6455, such as an
 *                   unmasked client frame (close 1002); on the client side, a
 *                   refused or invalid upgrade answer (moat_ws_http_status)
 *   MOAT_EDENIED    an Origin not allowed (after the 403)
 *   MOAT_ETOOBIG    a data frame longer than max_frame_bytes (close 1009)
 *   MOAT_EIO ...    what the lower transport reported
 * The closing frame or refusal is queued: call flush() before freeing.
 *
 * Memory per connection is bounded whatever the peer announces: payload is
 * decoded straight into the caller's read buffer, control frames are at most
 * 125 bytes, and at most a fixed number of bytes and messages wait to be sent
 * (writev() returns MOAT_EAGAIN past that; reading pauses while too many
 * control answers wait).
 */
#ifndef MOAT_NET_WS_H
#define MOAT_NET_WS_H

#include <stddef.h>
#include <stdint.h>

#include "net/transport.h"

/* The largest data frame accepted by default: an MQTT packet of the largest size, and then some. */
#define MOAT_WS_MAX_FRAME_DEFAULT (((uint64_t)256 << 20) + 16)

struct moat_ws_opts {
	/* comma-separated list of exact Origin values; NULL = any origin (a request without
	 * Origin, from a non-browser client, is let in either way) */
	const char *allowed_origins;
	/* comma-separated IPv4/IPv6 addresses whose X-Forwarded-For is believed; NULL = none */
	const char *trusted_proxies;
	/* the TCP peer address as text ("a.b.c.d", "::1", either with ":port", "[v6]:port"),
	 * to decide whether it is a trusted proxy */
	const char *peer_addr;
	size_t max_header_bytes;  /* bound on the HTTP upgrade request; 0 = 8192 */
	uint64_t max_frame_bytes; /* bound on one data frame's payload; 0 = MOAT_WS_MAX_FRAME_DEFAULT */
};

/*
 * Server side. Takes ownership of lower; the HTTP upgrade is read through
 * lower. opts may be NULL (the defaults); its strings are copied. Returns an
 * owned transport (free with moat_transport_free, which frees lower too), or
 * NULL if out of memory, and then lower is still the caller's.
 */
struct moat_transport *moat_ws_server_new(struct moat_transport *lower,
					  const struct moat_ws_opts *opts);

/*
 * Client side (for moat pub/sub -w): sends the upgrade for path (e.g.
 * "/mqtt") with Host: host (e.g. "broker.example:8080") and subprotocol mqtt.
 * Bytes written before the 101 arrives wait for it. Takes ownership of lower.
 * Returns an owned transport, or NULL if out of memory or host/path are not
 * visible ASCII (then lower is still the caller's).
 */
struct moat_transport *moat_ws_client_new(struct moat_transport *lower, const char *host,
					  const char *path);

/*
 * After the handshake: the client address the proxy reported (X-Forwarded-For,
 * believed only when the peer is one of trusted_proxies), or NULL. Returns
 * borrowed (valid until t is freed); NULL too for a transport that is not a
 * WebSocket.
 */
const char *moat_ws_forwarded_for(const struct moat_transport *t);

/*
 * The HTTP status the handshake ended with. Server side: 101, or the refusal
 * sent (400, 403, 404, 426, 431). Client side: 101 once a valid 101 came, the
 * server's status when it was not 101, 0 for an answer that does not parse
 * or a 101 that does not answer our request. 0 while undecided, and for a
 * transport that is not a WebSocket.
 */
int moat_ws_http_status(const struct moat_transport *t);

#endif
