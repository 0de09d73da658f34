/*
 * types.h - the small types every part of the MQTT codec shares.
 *
 * The codec decodes without copying: a decoded packet holds moat_slice views
 * into the bytes it was decoded from, so those bytes must outlive the packet.
 */
#ifndef MOAT_MQTT_TYPES_H
#define MOAT_MQTT_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A borrowed run of bytes. p may be NULL only when len is 0. */
struct moat_slice {
	const uint8_t *p;
	size_t len;
};

#define MOAT_SLICE_STR(s) ((struct moat_slice){(const uint8_t *)(s), sizeof(s) - 1})

/* Protocol levels as they appear in CONNECT. */
enum moat_mqtt_version {
	MOAT_MQTT_V31 = 3,  /* MQTT 3.1, protocol name "MQIsdp" */
	MOAT_MQTT_V311 = 4, /* MQTT 3.1.1, protocol name "MQTT" */
	MOAT_MQTT_V5 = 5,   /* MQTT 5.0, protocol name "MQTT" */
};

/* Control packet types (high nibble of the first byte). 0 is reserved. */
enum moat_mqtt_type {
	MOAT_MQTT_CONNECT = 1,
	MOAT_MQTT_CONNACK = 2,
	MOAT_MQTT_PUBLISH = 3,
	MOAT_MQTT_PUBACK = 4,
	MOAT_MQTT_PUBREC = 5,
	MOAT_MQTT_PUBREL = 6,
	MOAT_MQTT_PUBCOMP = 7,
	MOAT_MQTT_SUBSCRIBE = 8,
	MOAT_MQTT_SUBACK = 9,
	MOAT_MQTT_UNSUBSCRIBE = 10,
	MOAT_MQTT_UNSUBACK = 11,
	MOAT_MQTT_PINGREQ = 12,
	MOAT_MQTT_PINGRESP = 13,
	MOAT_MQTT_DISCONNECT = 14,
	MOAT_MQTT_AUTH = 15, /* 5.0 only; reserved in 3.x */
};

/* Largest Remaining Length a 4-byte Variable Byte Integer holds. */
#define MOAT_MQTT_MAX_REMAINING 268435455u
/* Largest whole packet: 1 type byte + 4 length bytes + the body. */
#define MOAT_MQTT_MAX_PACKET (MOAT_MQTT_MAX_REMAINING + 5u)

/*
 * What a peer did wrong, and what the spec says to do about it. Filled by
 * every codec function that can refuse a peer's bytes; the matching negative
 * return code is in code.
 *
 * MQTT 5.0: send reason (in CONNACK if the fault is in CONNECT, otherwise in
 * DISCONNECT), then close. MQTT 3.x: if connack_v3 is non-zero send a CONNACK
 * with that return code (only for CONNECT faults), then close.
 */
struct moat_mqtt_fault {
	int code;            /* MOAT_EMALFORMED, MOAT_EPROTOCOL, MOAT_ETOOBIG, MOAT_EVERSION */
	uint8_t reason;      /* MQTT 5.0 reason code, e.g. 0x81 Malformed Packet */
	uint8_t connack_v3;  /* MQTT 3.x CONNACK return code, 0 = close without CONNACK */
	const char *rule;    /* normative statement, e.g. "MQTT-3.1.2-3", or NULL */
	const char *why;     /* static English text for logs; never NULL when set */
};

#endif
