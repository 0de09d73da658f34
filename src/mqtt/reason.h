/*
 * reason.h - MQTT 5.0 reason codes and MQTT 3.x CONNACK return codes.
 */
#ifndef MOAT_MQTT_REASON_H
#define MOAT_MQTT_REASON_H

#include <stdbool.h>
#include <stdint.h>

enum moat_mqtt_reason {
	MOAT_RC_SUCCESS = 0x00, /* also Normal disconnection, Granted QoS 0 */
	MOAT_RC_GRANTED_QOS1 = 0x01,
	MOAT_RC_GRANTED_QOS2 = 0x02,
	MOAT_RC_DISCONNECT_WITH_WILL = 0x04,
	MOAT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
	MOAT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
	MOAT_RC_CONTINUE_AUTHENTICATION = 0x18,
	MOAT_RC_REAUTHENTICATE = 0x19,
	MOAT_RC_UNSPECIFIED_ERROR = 0x80,
	MOAT_RC_MALFORMED_PACKET = 0x81,
	MOAT_RC_PROTOCOL_ERROR = 0x82,
	MOAT_RC_IMPLEMENTATION_SPECIFIC_ERROR = 0x83,
	MOAT_RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84,
	MOAT_RC_CLIENT_IDENTIFIER_NOT_VALID = 0x85,
	MOAT_RC_BAD_USER_NAME_OR_PASSWORD = 0x86,
	MOAT_RC_NOT_AUTHORIZED = 0x87,
	MOAT_RC_SERVER_UNAVAILABLE = 0x88,
	MOAT_RC_SERVER_BUSY = 0x89,
	MOAT_RC_BANNED = 0x8A,
	MOAT_RC_SERVER_SHUTTING_DOWN = 0x8B,
	MOAT_RC_BAD_AUTHENTICATION_METHOD = 0x8C,
	MOAT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
	MOAT_RC_SESSION_TAKEN_OVER = 0x8E,
	MOAT_RC_TOPIC_FILTER_INVALID = 0x8F,
	MOAT_RC_TOPIC_NAME_INVALID = 0x90,
	MOAT_RC_PACKET_IDENTIFIER_IN_USE = 0x91,
	MOAT_RC_PACKET_IDENTIFIER_NOT_FOUND = 0x92,
	MOAT_RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93,
	MOAT_RC_TOPIC_ALIAS_INVALID = 0x94,
	MOAT_RC_PACKET_TOO_LARGE = 0x95,
	MOAT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
	MOAT_RC_QUOTA_EXCEEDED = 0x97,
	MOAT_RC_ADMINISTRATIVE_ACTION = 0x98,
	MOAT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
	MOAT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
	MOAT_RC_QOS_NOT_SUPPORTED = 0x9B,
	MOAT_RC_USE_ANOTHER_SERVER = 0x9C,
	MOAT_RC_SERVER_MOVED = 0x9D,
	MOAT_RC_SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E,
	MOAT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
	MOAT_RC_MAXIMUM_CONNECT_TIME = 0xA0,
	MOAT_RC_SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1,
	MOAT_RC_WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2,
};

/* MQTT 3.1 / 3.1.1 CONNACK return codes. */
enum moat_mqtt_connack_v3 {
	MOAT_CONNACK_ACCEPTED = 0,
	MOAT_CONNACK_BAD_PROTOCOL_VERSION = 1,
	MOAT_CONNACK_IDENTIFIER_REJECTED = 2,
	MOAT_CONNACK_SERVER_UNAVAILABLE = 3,
	MOAT_CONNACK_BAD_USERNAME_PASSWORD = 4,
	MOAT_CONNACK_NOT_AUTHORIZED = 5,
};

/*
 * Returns the spec's name for reason code rc as used in packet type (e.g.
 * 0x00 is "Normal disconnection" in DISCONNECT, "Granted QoS 0" in SUBACK,
 * "Success" elsewhere), or "Unknown reason code". type 0 means "any packet".
 */
const char *moat_mqtt_reason_name(uint8_t rc, uint8_t type);

/* True if MQTT 5.0 allows reason code rc in packet type (CONNACK, PUBACK, ..., AUTH). */
bool moat_mqtt_reason_valid(uint8_t rc, uint8_t type);

/* Returns the name of MQTT 3.x CONNACK return code rc, or "Unknown return code". */
const char *moat_mqtt_connack_v3_name(uint8_t rc);

/*
 * Maps an MQTT 5.0 CONNACK reason code to the closest MQTT 3.x return code,
 * for answering a 3.x client with the same decision.
 */
uint8_t moat_mqtt_reason_to_connack_v3(uint8_t rc);

/* Returns the name of packet type t ("CONNECT", ...), or "RESERVED". */
const char *moat_mqtt_type_name(uint8_t t);

#endif
