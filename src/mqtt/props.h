/*
 * props.h - MQTT 5.0 properties (section 2.2.2).
 *
 * A decoded property block is held in struct moat_mqtt_props: one field per
 * single-use property, a bit in `present` for each property seen, and the
 * two repeatable properties (User Property, and Subscription Identifier in
 * PUBLISH) left in wire format in `multi`, walked with the iterators below.
 * Nothing is copied or allocated: slices point into the decoded packet.
 *
 * For encoding, fill the fields, set their bits in `present`, and put any
 * User Properties and (server-to-client PUBLISH) Subscription Identifiers in
 * a wire-format block built with moat_mqtt_props_put_user/_put_subid. The
 * encoder writes each present single-use property, then every User Property
 * and Subscription Identifier entry of `multi`, then, when subid_count is 0
 * and the Subscription Identifier bit is present, the scalar subscription_id.
 */
#ifndef MOAT_MQTT_PROPS_H
#define MOAT_MQTT_PROPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt/types.h"

enum moat_mqtt_prop_id {
	MOAT_PROP_PAYLOAD_FORMAT_INDICATOR = 0x01,
	MOAT_PROP_MESSAGE_EXPIRY_INTERVAL = 0x02,
	MOAT_PROP_CONTENT_TYPE = 0x03,
	MOAT_PROP_RESPONSE_TOPIC = 0x08,
	MOAT_PROP_CORRELATION_DATA = 0x09,
	MOAT_PROP_SUBSCRIPTION_IDENTIFIER = 0x0B,
	MOAT_PROP_SESSION_EXPIRY_INTERVAL = 0x11,
	MOAT_PROP_ASSIGNED_CLIENT_IDENTIFIER = 0x12,
	MOAT_PROP_SERVER_KEEP_ALIVE = 0x13,
	MOAT_PROP_AUTHENTICATION_METHOD = 0x15,
	MOAT_PROP_AUTHENTICATION_DATA = 0x16,
	MOAT_PROP_REQUEST_PROBLEM_INFORMATION = 0x17,
	MOAT_PROP_WILL_DELAY_INTERVAL = 0x18,
	MOAT_PROP_REQUEST_RESPONSE_INFORMATION = 0x19,
	MOAT_PROP_RESPONSE_INFORMATION = 0x1A,
	MOAT_PROP_SERVER_REFERENCE = 0x1C,
	MOAT_PROP_REASON_STRING = 0x1F,
	MOAT_PROP_RECEIVE_MAXIMUM = 0x21,
	MOAT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
	MOAT_PROP_TOPIC_ALIAS = 0x23,
	MOAT_PROP_MAXIMUM_QOS = 0x24,
	MOAT_PROP_RETAIN_AVAILABLE = 0x25,
	MOAT_PROP_USER_PROPERTY = 0x26,
	MOAT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
	MOAT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28,
	MOAT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29,
	MOAT_PROP_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A,
};

/* Where a property block sits: a packet type, or the Will Properties of CONNECT. */
#define MOAT_PROPS_WILL 0 /* packet type 0 is reserved, so it names the will */

#define MOAT_PROP_BIT(id) (1ull << (id))

struct moat_mqtt_props {
	uint64_t present; /* MOAT_PROP_BIT(id) for each property seen / to encode */
	uint32_t message_expiry;
	uint32_t session_expiry;
	uint32_t will_delay;
	uint32_t maximum_packet_size;
	uint32_t subscription_id;   /* the first Subscription Identifier */
	uint16_t server_keep_alive;
	uint16_t receive_maximum;
	uint16_t topic_alias_maximum;
	uint16_t topic_alias;
	uint8_t payload_format;
	uint8_t request_problem_info;
	uint8_t request_response_info;
	uint8_t maximum_qos;
	uint8_t retain_available;
	uint8_t wildcard_sub_available;
	uint8_t sub_id_available;
	uint8_t shared_sub_available;
	uint32_t user_count;  /* User Property entries in multi */
	uint32_t subid_count; /* Subscription Identifier entries in multi */
	struct moat_slice content_type;
	struct moat_slice response_topic;
	struct moat_slice correlation_data;
	struct moat_slice assigned_client_id;
	struct moat_slice auth_method;
	struct moat_slice auth_data;
	struct moat_slice response_info;
	struct moat_slice server_reference;
	struct moat_slice reason_string;
	struct moat_slice multi; /* wire-format entries; a decoder sets the whole block */
};

static inline bool moat_mqtt_props_has(const struct moat_mqtt_props *p, unsigned id)
{
	return (p->present & MOAT_PROP_BIT(id)) != 0;
}

/* Returns the spec's name of property id ("Topic Alias", ...), or NULL if unknown. */
const char *moat_mqtt_prop_name(unsigned id);

/* True if property id may appear in packet type `where` (MOAT_PROPS_WILL for the will). */
bool moat_mqtt_prop_allowed(unsigned id, unsigned where);

/*
 * Decodes a property block: a Variable Byte Integer length followed by that
 * many bytes of properties, starting at p with n bytes available. `where` is
 * the packet type or MOAT_PROPS_WILL. strict_utf8 refuses the code points
 * MQTT discourages (controls, non-characters) in strings.
 *
 * Returns 0 and fills *out (slices borrow from p) and *used (bytes consumed),
 * or a negative MOAT_E* code with *fault describing the peer's error.
 * Checks: lengths within the block, known identifiers allowed in `where`
 * (else Malformed, section 2.2.2.2), no duplicates of single-use properties
 * (Protocol Error), values in range (Payload Format Indicator, Receive
 * Maximum, Topic Alias, Subscription Identifier, ... : Protocol Error), and
 * UTF-8 strings well-formed (Malformed).
 */
int moat_mqtt_props_decode(const uint8_t *p, size_t n, unsigned where, bool strict_utf8,
			   struct moat_mqtt_props *out, size_t *used,
			   struct moat_mqtt_fault *fault);

/*
 * Returns the size of the property block of pr for packet `where`, length
 * prefix included, or 0 if pr cannot be encoded there (a property not
 * allowed in `where`, a string longer than 65535 bytes).
 */
size_t moat_mqtt_props_size(const struct moat_mqtt_props *pr, unsigned where);

/*
 * Encodes the property block of pr for packet `where` (length prefix
 * included) into buf[0..cap). Returns 0 and sets *len, MOAT_ENOSPC, or
 * MOAT_EINVAL as moat_mqtt_props_size would return 0.
 */
int moat_mqtt_props_encode(const struct moat_mqtt_props *pr, unsigned where, uint8_t *buf,
			   size_t cap, size_t *len);

/*
 * Appends a User Property (0x26 key value) / Subscription Identifier (0x0B
 * varint) entry in wire format to buf[*len..cap). Returns 0 and advances *len,
 * MOAT_ENOSPC if it does not fit, MOAT_EINVAL if key/value exceed 65535 bytes
 * or id is 0 or above 268435455.
 */
int moat_mqtt_props_put_user(uint8_t *buf, size_t cap, size_t *len, struct moat_slice key,
			     struct moat_slice value);
int moat_mqtt_props_put_subid(uint8_t *buf, size_t cap, size_t *len, uint32_t id);

/* Walks the repeatable entries of pr->multi. */
struct moat_mqtt_prop_iter {
	const uint8_t *p;
	const uint8_t *end;
};

void moat_mqtt_props_iter(const struct moat_mqtt_props *pr, struct moat_mqtt_prop_iter *it);

/* Returns true and the next User Property, or false at the end. */
bool moat_mqtt_props_next_user(struct moat_mqtt_prop_iter *it, struct moat_slice *key,
			       struct moat_slice *value);

/*
 * Returns true and the next entry of any kind: its identifier and its raw
 * wire bytes (identifier included), or false at the end. For copying a block
 * while leaving some properties out.
 */
bool moat_mqtt_props_next_raw(struct moat_mqtt_prop_iter *it, uint32_t *id,
			      struct moat_slice *raw);

/* Returns true and the next Subscription Identifier, or false at the end. */
bool moat_mqtt_props_next_subid(struct moat_mqtt_prop_iter *it, uint32_t *id);

#endif
