/*
 * client.h - a small blocking MQTT client for the moat tool.
 *
 * One TCP connection (IPv4 or IPv6, found with getaddrinfo) speaking MQTT
 * 3.1, 3.1.1 or 5.0 through a struct moat_transport: plain TCP, or whatever
 * opts.stream wraps the socket in (TLS, WebSocket). It is built on the
 * codec: every packet is encoded with moat_mqtt_encode and every byte read
 * goes through the framer and moat_mqtt_decode. The calls block, with timeouts, and while they wait they
 * service the connection: incoming messages are handed to the on_message
 * callback and acknowledged (PUBACK, PUBREC/PUBCOMP), PUBREL is answered,
 * PINGREQ is sent when the keep alive is due.
 *
 * What the client enforces of the server's CONNACK (5.0): Receive Maximum
 * (QoS 1/2 publishes in flight), Maximum Packet Size (nothing larger is
 * sent), Maximum QoS and Retain Available (refused locally), Topic Alias
 * Maximum (outgoing aliases), Server Keep Alive. Of its own CONNECT: the
 * Topic Alias Maximum it announced (incoming aliases are mapped back to
 * topics), its Maximum Packet Size (the framer's limit) and its Receive
 * Maximum (a server exceeding it is disconnected with 0x93).
 *
 * There is no reconnection and no retransmission: a failed connection ends
 * the client, which is what a command-line tool wants.
 *
 * Timeouts are in milliseconds; -1 waits forever. A wait is cut short by a
 * signal when opts.sigmask is given (see moat_client_opts).
 */
#ifndef MOAT_CLI_CLIENT_H
#define MOAT_CLI_CLIENT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt/packet.h"
#include "net/transport.h"

struct moat_client;

/*
 * What the client speaks MQTT through once the TCP connection is up. The
 * client drives any handshake the transport has (TLS, HTTP upgrade) before
 * its CONNECT, within the connect timeout.
 */
struct moat_client_stream {
	/*
	 * Wraps connected socket fd, which it takes (closed on failure too).
	 * Returns an owned transport, or NULL with why[0..len) filled.
	 */
	struct moat_transport *(*wrap)(void *ctx, int fd, char *why, size_t len);
	/*
	 * Called once, when the transport wrap made has completed its
	 * handshake: returns the transport to speak MQTT through, t itself or
	 * one wrapping t (taking it), whose handshake the client then drives;
	 * or NULL with why filled, t freed. NULL hook = t as it is. (A
	 * WebSocket over TLS starts here, so its upgrade request does not wait
	 * inside an unfinished TLS handshake.)
	 */
	struct moat_transport *(*upgrade)(void *ctx, struct moat_transport *t, char *why,
					  size_t len);
	/*
	 * Describes why transport t (borrowed) failed with rc (0: it ended),
	 * before the CONNACK or after (connected), into why[0..len), or leaves
	 * why "" when it has nothing to add.
	 */
	void (*explain)(void *ctx, const struct moat_transport *t, int rc, bool connected,
			char *why, size_t len);
	void *ctx;
};

/* A message received from the server; everything is borrowed for the callback's duration. */
struct moat_client_msg {
	struct moat_slice topic; /* resolved from a Topic Alias when the server used one */
	struct moat_slice payload;
	uint8_t qos;
	bool retain;
	bool dup;
	uint16_t packet_id;
	const struct moat_mqtt_props *props; /* 5.0 properties; all zero in 3.x */
};

/*
 * Called for each message delivered. It may call moat_client_stop() and the
 * accessors, nothing else of c.
 */
typedef void moat_client_msg_fn(void *ctx, struct moat_client *c, const struct moat_client_msg *m);

/*
 * Called when an outgoing QoS 1/2 publish completes: reason is the 5.0
 * reason of its last acknowledgement (>= 0x80 is a failure), 0 in 3.x.
 */
typedef void moat_client_pub_fn(void *ctx, struct moat_client *c, uint16_t packet_id,
				uint8_t reason);

struct moat_client_opts {
	const char *host;          /* name or address */
	const char *port;          /* service, e.g. "1883" */
	const struct moat_client_stream *stream; /* NULL = plain TCP */
	uint8_t version;           /* MOAT_MQTT_V31, _V311 or _V5 */
	struct moat_slice client_id;
	bool clean_start;          /* Clean Session in 3.x */
	uint16_t keep_alive;       /* seconds, 0 = off */
	const char *username;      /* NULL = none */
	const char *password;      /* NULL = none; never printed */
	bool will;
	struct moat_slice will_topic;
	struct moat_slice will_payload;
	uint8_t will_qos;
	bool will_retain;
	const struct moat_mqtt_props *props;      /* CONNECT properties (5.0), or NULL */
	const struct moat_mqtt_props *will_props; /* Will Properties (5.0), or NULL */
	int timeout_ms;            /* for the TCP connection, any handshake and the CONNACK */
	bool debug;                /* print packets as mosquitto's -d does, on stdout */
	const sigset_t *sigmask;   /* if set, signals are let in only while waiting (ppoll) */
	moat_client_msg_fn *on_message;   /* may be NULL */
	moat_client_pub_fn *on_published; /* may be NULL */
	void *ctx;
};

/* A message to publish; everything is borrowed for the call's duration. */
struct moat_client_pub {
	struct moat_slice topic;
	struct moat_slice payload;
	uint8_t qos;
	bool retain;
	const struct moat_mqtt_props *props; /* 5.0; a Topic Alias here is managed (see publish) */
};

/* Returns an owned, unconnected client (free with moat_client_free), or NULL without memory. */
struct moat_client *moat_client_new(void);

/* Closes the transport (without DISCONNECT) and frees c. moat_client_free(NULL) is a no-op. */
void moat_client_free(struct moat_client *c);

/*
 * Connects to o->host:o->port and exchanges CONNECT/CONNACK. o is borrowed
 * for the client's lifetime (strings, props and callback). Returns 0 when
 * the server accepted; MOAT_EDENIED when it refused (moat_client_connack_rc
 * says why); MOAT_EIO (resolution, connection or handshake failed, e.g. a
 * certificate refused: never MOAT_EDENIED), MOAT_ECLOSED,
 * MOAT_EAGAIN (timeout or signal), MOAT_ETOOBIG, MOAT_EMALFORMED,
 * MOAT_EPROTOCOL or MOAT_ENOMEM otherwise. moat_client_error describes each.
 */
int moat_client_connect(struct moat_client *c, const struct moat_client_opts *o);

/* The CONNACK reason (5.0) or return code (3.x) of the last connect; 0 if none came. */
uint8_t moat_client_connack_rc(const struct moat_client *c);

/* The version the client speaks (as asked for in connect). */
uint8_t moat_client_version(const struct moat_client *c);

/* The packet identifier given to the last QoS 1/2 PUBLISH, SUBSCRIBE or UNSUBSCRIBE. */
uint16_t moat_client_last_id(const struct moat_client *c);

/* Returns borrowed text describing the last failure (valid until the next call on c). */
const char *moat_client_error(const struct moat_client *c);

/*
 * Publishes p. QoS 0 is sent at once. For QoS 1 and 2 it first waits,
 * servicing the connection, until fewer than the server's Receive Maximum
 * publishes are in flight, then sends and returns: the handshake completes
 * during later waits (see moat_client_flush). A Topic Alias in p->props is
 * checked against the server's Topic Alias Maximum; once an alias is mapped
 * to a topic, later publishes of that topic with that alias send an empty
 * topic name. Returns 0; MOAT_EINVAL if the server's CONNACK forbids it
 * (QoS above Maximum QoS, retain not available, alias out of range) or the
 * packet cannot be encoded; MOAT_ETOOBIG over the server's Maximum Packet
 * Size; MOAT_EAGAIN on timeout or signal; or a connection error.
 */
int moat_client_publish(struct moat_client *c, const struct moat_client_pub *p, int timeout_ms);

/*
 * Waits until no publish is in flight either way: every QoS 1/2 publish
 * sent is acknowledged, and every incoming QoS 2 message has had its
 * PUBREL. Returns 0, MOAT_EAGAIN on timeout or signal, or a connection error.
 */
int moat_client_flush(struct moat_client *c, int timeout_ms);

/* Number of 5.0 publishes the server answered with a failure reason (>= 0x80). */
unsigned moat_client_publish_failures(const struct moat_client *c);

/*
 * Subscribes to n filters in one SUBSCRIBE (options[i] is the Subscription
 * Options byte of filters[i]) and waits for the SUBACK. Messages arriving
 * meanwhile are delivered. reasons[0..n) receives the SUBACK's codes.
 * Returns 0, MOAT_EPROTOCOL if the SUBACK's count differs, MOAT_EAGAIN, or
 * a connection or encoding error.
 */
int moat_client_subscribe(struct moat_client *c, const struct moat_slice *filters,
			  const uint8_t *options, size_t n, const struct moat_mqtt_props *props,
			  uint8_t *reasons, int timeout_ms);

/*
 * Unsubscribes from n filters and waits for the UNSUBACK. reasons[0..n)
 * receives its codes (5.0; all 0 in 3.x). Returns as moat_client_subscribe.
 */
int moat_client_unsubscribe(struct moat_client *c, const struct moat_slice *filters, size_t n,
			    const struct moat_mqtt_props *props, uint8_t *reasons, int timeout_ms);

/*
 * Services the connection for up to timeout_ms. If fd >= 0, returns 1 as
 * soon as fd is readable. Returns 0 on timeout, on a signal, or when the
 * on_message callback called moat_client_stop; a negative code if the
 * connection failed or the server disconnected (MOAT_ECLOSED).
 */
int moat_client_wait(struct moat_client *c, int fd, int timeout_ms);

/* Asks the current and later waits to return 0 at once (from a callback). */
void moat_client_stop(struct moat_client *c);

/* True once moat_client_stop was called. */
bool moat_client_stopped(const struct moat_client *c);

/*
 * Sends DISCONNECT (5.0: with reason and props, e.g. a Session Expiry
 * Interval), waits up to timeout_ms for the server to close its side, and
 * closes the transport. Returns 0, MOAT_EINVAL (props not encodable: nothing
 * sent, still connected) or a connection error.
 */
int moat_client_disconnect(struct moat_client *c, uint8_t reason,
			   const struct moat_mqtt_props *props, int timeout_ms);

#endif
