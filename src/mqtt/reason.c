/*
 * reason.c - the reason code table of MQTT 5.0 section 2.4, and which packets
 * may carry each code (the "Packets" column of that table).
 */
#include "mqtt/reason.h"

#include <stddef.h>

#include "mqtt/types.h"

#define T(x) (1u << MOAT_MQTT_##x)
#define ACKS (T(PUBACK) | T(PUBREC))

struct reason {
	const char *name;
	uint16_t packets; /* bit (1 << type) for each packet type that may carry the code */
};

static const struct reason reasons[256] = {
	[0x00] = {"Success", T(CONNACK) | ACKS | T(PUBREL) | T(PUBCOMP) | T(SUBACK) |
				     T(UNSUBACK) | T(DISCONNECT) | T(AUTH)},
	[0x01] = {"Granted QoS 1", T(SUBACK)},
	[0x02] = {"Granted QoS 2", T(SUBACK)},
	[0x04] = {"Disconnect with Will Message", T(DISCONNECT)},
	[0x10] = {"No matching subscribers", ACKS},
	[0x11] = {"No subscription existed", T(UNSUBACK)},
	[0x18] = {"Continue authentication", T(AUTH)},
	[0x19] = {"Re-authenticate", T(AUTH)},
	[0x80] = {"Unspecified error", T(CONNACK) | ACKS | T(SUBACK) | T(UNSUBACK) | T(DISCONNECT)},
	[0x81] = {"Malformed Packet", T(CONNACK) | T(DISCONNECT)},
	[0x82] = {"Protocol Error", T(CONNACK) | T(DISCONNECT)},
	[0x83] = {"Implementation specific error",
		  T(CONNACK) | ACKS | T(SUBACK) | T(UNSUBACK) | T(DISCONNECT)},
	[0x84] = {"Unsupported Protocol Version", T(CONNACK)},
	[0x85] = {"Client Identifier not valid", T(CONNACK)},
	[0x86] = {"Bad User Name or Password", T(CONNACK)},
	[0x87] = {"Not authorized", T(CONNACK) | ACKS | T(SUBACK) | T(UNSUBACK) | T(DISCONNECT)},
	[0x88] = {"Server unavailable", T(CONNACK)},
	[0x89] = {"Server busy", T(CONNACK) | T(DISCONNECT)},
	[0x8A] = {"Banned", T(CONNACK)},
	[0x8B] = {"Server shutting down", T(DISCONNECT)},
	[0x8C] = {"Bad authentication method", T(CONNACK) | T(DISCONNECT)},
	[0x8D] = {"Keep Alive timeout", T(DISCONNECT)},
	[0x8E] = {"Session taken over", T(DISCONNECT)},
	[0x8F] = {"Topic Filter invalid", T(SUBACK) | T(UNSUBACK) | T(DISCONNECT)},
	[0x90] = {"Topic Name invalid", T(CONNACK) | ACKS | T(DISCONNECT)},
	[0x91] = {"Packet Identifier in use", ACKS | T(SUBACK) | T(UNSUBACK)},
	[0x92] = {"Packet Identifier not found", T(PUBREL) | T(PUBCOMP)},
	[0x93] = {"Receive Maximum exceeded", T(DISCONNECT)},
	[0x94] = {"Topic Alias invalid", T(DISCONNECT)},
	[0x95] = {"Packet too large", T(CONNACK) | T(DISCONNECT)},
	[0x96] = {"Message rate too high", T(DISCONNECT)},
	[0x97] = {"Quota exceeded", T(CONNACK) | ACKS | T(SUBACK) | T(DISCONNECT)},
	[0x98] = {"Administrative action", T(DISCONNECT)},
	[0x99] = {"Payload format invalid", T(CONNACK) | ACKS | T(DISCONNECT)},
	[0x9A] = {"Retain not supported", T(CONNACK) | T(DISCONNECT)},
	[0x9B] = {"QoS not supported", T(CONNACK) | T(DISCONNECT)},
	[0x9C] = {"Use another server", T(CONNACK) | T(DISCONNECT)},
	[0x9D] = {"Server moved", T(CONNACK) | T(DISCONNECT)},
	[0x9E] = {"Shared Subscriptions not supported", T(SUBACK) | T(DISCONNECT)},
	[0x9F] = {"Connection rate exceeded", T(CONNACK) | T(DISCONNECT)},
	[0xA0] = {"Maximum connect time", T(DISCONNECT)},
	[0xA1] = {"Subscription Identifiers not supported", T(SUBACK) | T(DISCONNECT)},
	[0xA2] = {"Wildcard Subscriptions not supported", T(SUBACK) | T(DISCONNECT)},
};

const char *moat_mqtt_reason_name(uint8_t rc, uint8_t type)
{
	if (rc == 0x00 && type == MOAT_MQTT_DISCONNECT)
		return "Normal disconnection";
	if (rc == 0x00 && type == MOAT_MQTT_SUBACK)
		return "Granted QoS 0";
	return reasons[rc].name ? reasons[rc].name : "Unknown reason code";
}

bool moat_mqtt_reason_valid(uint8_t rc, uint8_t type)
{
	return type < 16 && (reasons[rc].packets & (1u << type)) != 0;
}

static const char *const connack_v3_names[] = {
	"Connection Accepted",
	"Connection Refused, unacceptable protocol version",
	"Connection Refused, identifier rejected",
	"Connection Refused, Server unavailable",
	"Connection Refused, bad user name or password",
	"Connection Refused, not authorized",
};

const char *moat_mqtt_connack_v3_name(uint8_t rc)
{
	if (rc < sizeof(connack_v3_names) / sizeof(connack_v3_names[0]))
		return connack_v3_names[rc];
	return "Unknown return code";
}

uint8_t moat_mqtt_reason_to_connack_v3(uint8_t rc)
{
	switch (rc) {
	case MOAT_RC_SUCCESS:
		return MOAT_CONNACK_ACCEPTED;
	case MOAT_RC_UNSUPPORTED_PROTOCOL_VERSION:
		return MOAT_CONNACK_BAD_PROTOCOL_VERSION;
	case MOAT_RC_CLIENT_IDENTIFIER_NOT_VALID:
		return MOAT_CONNACK_IDENTIFIER_REJECTED;
	case MOAT_RC_BAD_USER_NAME_OR_PASSWORD:
	case MOAT_RC_BAD_AUTHENTICATION_METHOD:
		return MOAT_CONNACK_BAD_USERNAME_PASSWORD;
	case MOAT_RC_NOT_AUTHORIZED:
	case MOAT_RC_BANNED:
		return MOAT_CONNACK_NOT_AUTHORIZED;
	default:
		return MOAT_CONNACK_SERVER_UNAVAILABLE;
	}
}

static const char *const type_names[16] = {
	"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT",
	"AUTH",
};

const char *moat_mqtt_type_name(uint8_t t)
{
	return t < 16 ? type_names[t] : "RESERVED";
}
