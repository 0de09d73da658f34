/*
 * packet.h - decode and encode every MQTT 3.1, 3.1.1 and 5.0 control packet.
 *
 * Decoding is zero-copy: the struct moat_mqtt_packet filled by
 * moat_mqtt_decode() holds slices into the body it was given, so the body
 * must outlive the packet. Decoding allocates nothing. Every rule of the
 * specs that can be checked from a packet alone is checked here; a refusal
 * comes back as a negative MOAT_E* code and a struct moat_mqtt_fault that
 * says what the receiver must answer (see types.h). Rules that need session
 * state (packet identifiers in flight, topic alias mappings, receive
 * maximum) belong to the broker.
 *
 * Encoding writes into a caller's buffer sized first with
 * moat_mqtt_encode_size(); the encoder writes what it is given and refuses
 * only what cannot be represented on the wire.
 */
#ifndef MOAT_MQTT_PACKET_H
#define MOAT_MQTT_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt/props.h"
#include "mqtt/reason.h"
#include "mqtt/types.h"

/* Subscription Options byte (5.0 section 3.8.3.1; 3.1.1 has only the QoS bits). */
#define MOAT_SUBOPT_QOS(o) ((o) & 0x03)
#define MOAT_SUBOPT_NO_LOCAL 0x04
#define MOAT_SUBOPT_RETAIN_AS_PUBLISHED 0x08
#define MOAT_SUBOPT_RETAIN_HANDLING(o) (((o) >> 4) & 0x03)

struct moat_mqtt_connect {
	uint8_t version;    /* MOAT_MQTT_V31, _V311 or _V5; selects the protocol name */
	bool clean_start;   /* Clean Session in 3.x */
	bool will;
	uint8_t will_qos;
	bool will_retain;
	bool has_username;
	bool has_password;
	uint16_t keep_alive;
	struct moat_slice client_id;
	struct moat_slice will_topic;
	struct moat_slice will_payload;
	struct moat_slice username;
	struct moat_slice password;
	struct moat_mqtt_props props;      /* 5.0 only */
	struct moat_mqtt_props will_props; /* 5.0 only */
};

struct moat_mqtt_connack {
	bool session_present;
	uint8_t reason; /* 5.0 reason code, or 3.x return code */
	struct moat_mqtt_props props;
};

struct moat_mqtt_publish {
	uint8_t qos;
	bool dup;
	bool retain;
	uint16_t packet_id; /* 0 when qos is 0 */
	struct moat_slice topic;
	struct moat_slice payload;
	struct moat_mqtt_props props;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
struct moat_mqtt_ack {
	uint16_t packet_id;
	uint8_t reason; /* 5.0; 0 in 3.x */
	struct moat_mqtt_props props;
};

/*
 * SUBSCRIBE: entries is the payload in wire format, (Topic Filter, Options)
 * repeated count times; UNSUBSCRIBE: (Topic Filter) repeated. Walk them with
 * moat_mqtt_sub_next / moat_mqtt_unsub_next; build them for encoding with
 * moat_mqtt_sub_put / moat_mqtt_unsub_put.
 */
struct moat_mqtt_subscribe {
	uint16_t packet_id;
	uint32_t count;
	struct moat_slice entries;
	struct moat_mqtt_props props;
};

/* SUBACK and UNSUBACK: one reason code byte per filter (UNSUBACK has none in 3.x). */
struct moat_mqtt_suback {
	uint16_t packet_id;
	struct moat_slice reasons;
	struct moat_mqtt_props props;
};

/* DISCONNECT and AUTH (both 5.0 reason + properties; DISCONNECT is empty in 3.x). */
struct moat_mqtt_disconnect {
	uint8_t reason;
	struct moat_mqtt_props props;
};

struct moat_mqtt_packet {
	uint8_t type;    /* enum moat_mqtt_type */
	uint8_t version; /* the version it was decoded as / is to be encoded as */
	union {
		struct moat_mqtt_connect connect;
		struct moat_mqtt_connack connack;
		struct moat_mqtt_publish publish;
		struct moat_mqtt_ack ack;              /* PUBACK, PUBREC, PUBREL, PUBCOMP */
		struct moat_mqtt_subscribe subscribe;  /* SUBSCRIBE, UNSUBSCRIBE */
		struct moat_mqtt_suback suback;        /* SUBACK, UNSUBACK */
		struct moat_mqtt_disconnect disconnect; /* DISCONNECT, AUTH */
	};
};

struct moat_mqtt_decode_opts {
	uint8_t version;   /* negotiated version; ignored when decoding CONNECT */
	bool from_client;  /* true in a server: the packet came from a client */
	bool strict_utf8;  /* refuse controls and non-characters in strings (section 1.5.4) */
};

/*
 * Checks the first byte of a packet: type not reserved, flags as section
 * 2.1.3 fixes them for the type [MQTT-2.1.3-1], PUBLISH QoS not 3
 * [MQTT-3.3.1-4] and no DUP at QoS 0 [MQTT-3.3.1-2]. Needs no version, so a
 * framer can refuse a packet before buffering its body. Returns 0 or a fault.
 */
int moat_mqtt_header_check(uint8_t header, struct moat_mqtt_fault *fault);

/*
 * Decodes one packet: header is its first byte, body[0..len) the bytes after
 * the Remaining Length. Returns 0 and fills *out (borrowing from body), or a
 * negative MOAT_E* code with *fault filled. For CONNECT, out->version is the
 * version the packet asks for; when a CONNECT is refused, the fault carries
 * both the 5.0 reason and the 3.x return code, and the caller answers in the
 * version moat_mqtt_connect_version() reports.
 */
int moat_mqtt_decode(const struct moat_mqtt_decode_opts *opts, uint8_t header,
		     const uint8_t *body, size_t len, struct moat_mqtt_packet *out,
		     struct moat_mqtt_fault *fault);

/*
 * Peeks at a CONNECT body for its protocol level without decoding the rest,
 * so a server knows which version of CONNACK to send even when the CONNECT
 * is refused. Returns 3, 4 or 5, or 0 if the body has no recognisable
 * protocol name and level.
 */
uint8_t moat_mqtt_connect_version(const uint8_t *body, size_t len);

/*
 * Sets *size to the encoded size of pkt (fixed header included) as version
 * pkt->version. Returns 0, or MOAT_EINVAL if pkt cannot be represented: a
 * string or binary over 65535 bytes, a body over 268435455 bytes, a property
 * not allowed in the packet, a reserved type.
 */
int moat_mqtt_encode_size(const struct moat_mqtt_packet *pkt, size_t *size);

/*
 * Encodes pkt into buf[0..cap). Returns 0 and sets *len, MOAT_ENOSPC if cap
 * is too small (nothing meaningful written), or MOAT_EINVAL as above.
 */
int moat_mqtt_encode(const struct moat_mqtt_packet *pkt, uint8_t *buf, size_t cap, size_t *len);

/* Walks SUBSCRIBE / UNSUBSCRIBE entries (already validated by the decoder or built here). */
struct moat_mqtt_sub_iter {
	const uint8_t *p;
	const uint8_t *end;
};

void moat_mqtt_sub_iter(const struct moat_mqtt_subscribe *s, struct moat_mqtt_sub_iter *it);
bool moat_mqtt_sub_next(struct moat_mqtt_sub_iter *it, struct moat_slice *filter,
			uint8_t *options);
bool moat_mqtt_unsub_next(struct moat_mqtt_sub_iter *it, struct moat_slice *filter);

/*
 * Appends a SUBSCRIBE entry (filter, options) / an UNSUBSCRIBE entry to
 * buf[*len..cap). Returns 0 and advances *len, MOAT_ENOSPC, or MOAT_EINVAL if
 * the filter is longer than 65535 bytes.
 */
int moat_mqtt_sub_put(uint8_t *buf, size_t cap, size_t *len, struct moat_slice filter,
		      uint8_t options);
int moat_mqtt_unsub_put(uint8_t *buf, size_t cap, size_t *len, struct moat_slice filter);

#endif
