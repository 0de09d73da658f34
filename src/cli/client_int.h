/*
 * client_int.h - what the two halves of the client share; not part of its API.
 *
 * client.c holds the connection, the pump and the calls of client.h;
 * client_in.c the handling of each packet the server sends, and the -d
 * output. Both work on struct moat_client, whose fields are described here.
 */
#ifndef MOAT_CLI_CLIENT_INT_H
#define MOAT_CLI_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/client.h"
#include "mqtt/frame.h"
#include "mqtt/packet.h"

#define ID_SPACE 65536 /* packet identifiers, 0 unused */

enum out_state { OUT_FREE, OUT_PUBACK, OUT_PUBREC, OUT_PUBCOMP, OUT_SUBACK, OUT_UNSUBACK };

/* An owned copy of a topic (the alias maps); p NULL = unmapped. */
struct moat_client_topic {
	uint8_t *p;
	size_t len;
};

struct moat_client {
	struct moat_transport *t; /* NULL = not connected */
	const struct moat_client_opts *o;
	uint8_t version;
	struct moat_mqtt_framer framer;
	uint8_t *tx; /* encode buffer */
	size_t txcap;
	uint8_t *out;   /* out[packet id]: enum out_state */
	uint8_t *in_q2; /* in_q2[packet id]: 1 while an incoming QoS 2 awaits PUBREL */
	uint16_t next_id;
	unsigned inflight;   /* outgoing QoS 1/2 publishes not yet complete */
	unsigned in_pending; /* incoming QoS 2 awaiting PUBREL */
	/* the server's limits, from CONNACK */
	uint16_t send_max;
	uint32_t out_max_packet; /* 0 = no limit */
	uint8_t max_qos;
	bool retain_ok;
	uint16_t out_alias_max;
	struct moat_client_topic *out_alias; /* [0..out_alias_max] */
	/* our own limits, from CONNECT */
	uint16_t recv_max;
	uint16_t in_alias_max;
	struct moat_client_topic *in_alias; /* [0..in_alias_max] */
	uint16_t keep_alive;
	int64_t last_tx;   /* ms, monotonic */
	int64_t ping_sent; /* 0 = no PINGREQ outstanding */
	/* the SUBACK / UNSUBACK being waited for */
	uint16_t ack_id;
	uint8_t *ack_reasons;
	size_t ack_n;
	int ack_rc;
	bool ack_done;
	bool got_connack;
	uint8_t connack_rc;
	bool stop;
	unsigned pub_failures;
	char *id; /* for debug output: as sent, or as assigned */
	char err[512];
};

/* Records why c failed in c->err; returns code (`return moat_client_fail(...)`). */
__attribute__((format(printf, 3, 4))) int moat_client_fail(struct moat_client *c, int code,
							   const char *fmt, ...);

/* Closes the transport (if open). */
void moat_client_close(struct moat_client *c);

/*
 * Encodes and sends p. Returns 0; MOAT_EINVAL if it cannot be encoded;
 * MOAT_ETOOBIG if it is over the server's Maximum Packet Size (nothing
 * sent, the connection stays up); MOAT_ENOMEM; a write error (closed).
 */
int moat_client_send(struct moat_client *c, const struct moat_mqtt_packet *p);

/* Sets the id -d output shows (a copy of id); keeps the old one without memory. */
void moat_client_set_id(struct moat_client *c, struct moat_slice id);

/* Replaces *t with a copy of s. Returns 0 or MOAT_ENOMEM (t untouched). */
int moat_client_topic_set(struct moat_client_topic *t, struct moat_slice s);

/*
 * Decodes and handles one packet from the server. Returns 0, or a negative
 * code with c->err set (the connection is then closed, after a 5.0
 * DISCONNECT with the reason when the server broke the protocol).
 */
int moat_client_handle(struct moat_client *c, const struct moat_mqtt_frame *fr);

/* The server broke the protocol: 5.0 DISCONNECT with reason, close. Returns code. */
int moat_client_server_fault(struct moat_client *c, int code, uint8_t reason, const char *why);

/* Prints, with -d, the line mosquitto's -d prints for sending p. */
void moat_client_debug_sent(const struct moat_client *c, const struct moat_mqtt_packet *p);

#endif
