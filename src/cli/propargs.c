/*
 * propargs.c - -D COMMAND PROPERTY VALUE (see propargs.h).
 *
 * One table row per property name gives its identifier, how its value is
 * written, and where it lives in struct moat_mqtt_props; whether it may
 * appear in a packet is asked of the codec (moat_mqtt_prop_allowed), so the
 * spec's table is not copied here. Values are checked as the codec's
 * decoder would check them, so a property the server would refuse is
 * refused before connecting.
 */
#include "cli/propargs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "mqtt/topic.h"
#include "mqtt/types.h"

enum vtype { V_BOOL, V_BYTE, V_U16, V_U16NZ, V_U32, V_U32NZ, V_VARINT, V_STR, V_TOPIC, V_BIN,
	     V_PAIR };

#define OFF(f) offsetof(struct moat_mqtt_props, f)

static const struct pname {
	const char *name;
	uint8_t id;
	uint8_t type;
	uint16_t off;
} pnames[] = {
	{"payload-format-indicator", MOAT_PROP_PAYLOAD_FORMAT_INDICATOR, V_BOOL, OFF(payload_format)},
	{"message-expiry-interval", MOAT_PROP_MESSAGE_EXPIRY_INTERVAL, V_U32, OFF(message_expiry)},
	{"content-type", MOAT_PROP_CONTENT_TYPE, V_STR, OFF(content_type)},
	{"response-topic", MOAT_PROP_RESPONSE_TOPIC, V_TOPIC, OFF(response_topic)},
	{"correlation-data", MOAT_PROP_CORRELATION_DATA, V_BIN, OFF(correlation_data)},
	{"subscription-identifier", MOAT_PROP_SUBSCRIPTION_IDENTIFIER, V_VARINT,
	 OFF(subscription_id)},
	{"session-expiry-interval", MOAT_PROP_SESSION_EXPIRY_INTERVAL, V_U32, OFF(session_expiry)},
	{"assigned-client-identifier", MOAT_PROP_ASSIGNED_CLIENT_IDENTIFIER, V_STR,
	 OFF(assigned_client_id)},
	{"server-keep-alive", MOAT_PROP_SERVER_KEEP_ALIVE, V_U16, OFF(server_keep_alive)},
	{"authentication-method", MOAT_PROP_AUTHENTICATION_METHOD, V_STR, OFF(auth_method)},
	{"authentication-data", MOAT_PROP_AUTHENTICATION_DATA, V_BIN, OFF(auth_data)},
	{"request-problem-information", MOAT_PROP_REQUEST_PROBLEM_INFORMATION, V_BOOL,
	 OFF(request_problem_info)},
	{"will-delay-interval", MOAT_PROP_WILL_DELAY_INTERVAL, V_U32, OFF(will_delay)},
	{"request-response-information", MOAT_PROP_REQUEST_RESPONSE_INFORMATION, V_BOOL,
	 OFF(request_response_info)},
	{"response-information", MOAT_PROP_RESPONSE_INFORMATION, V_STR, OFF(response_info)},
	{"server-reference", MOAT_PROP_SERVER_REFERENCE, V_STR, OFF(server_reference)},
	{"reason-string", MOAT_PROP_REASON_STRING, V_STR, OFF(reason_string)},
	{"receive-maximum", MOAT_PROP_RECEIVE_MAXIMUM, V_U16NZ, OFF(receive_maximum)},
	{"topic-alias-maximum", MOAT_PROP_TOPIC_ALIAS_MAXIMUM, V_U16, OFF(topic_alias_maximum)},
	{"topic-alias", MOAT_PROP_TOPIC_ALIAS, V_U16NZ, OFF(topic_alias)},
	{"maximum-qos", MOAT_PROP_MAXIMUM_QOS, V_BOOL, OFF(maximum_qos)},
	{"retain-available", MOAT_PROP_RETAIN_AVAILABLE, V_BOOL, OFF(retain_available)},
	{"user-property", MOAT_PROP_USER_PROPERTY, V_PAIR, 0},
	{"maximum-packet-size", MOAT_PROP_MAXIMUM_PACKET_SIZE, V_U32NZ, OFF(maximum_packet_size)},
	{"wildcard-subscription-available", MOAT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE, V_BOOL,
	 OFF(wildcard_sub_available)},
	{"subscription-identifier-available", MOAT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE, V_BOOL,
	 OFF(sub_id_available)},
	{"shared-subscription-available", MOAT_PROP_SHARED_SUBSCRIPTION_AVAILABLE, V_BOOL,
	 OFF(shared_sub_available)},
};

/* Command names and the packet (or MOAT_PROPS_WILL) their properties go in. */
static const struct {
	const char *name;
	uint8_t where;
} commands[MOAT_CLI_NCMD] = {
	[MOAT_CLI_CONNECT] = {"connect", MOAT_MQTT_CONNECT},
	[MOAT_CLI_PUBLISH] = {"publish", MOAT_MQTT_PUBLISH},
	[MOAT_CLI_SUBSCRIBE] = {"subscribe", MOAT_MQTT_SUBSCRIBE},
	[MOAT_CLI_UNSUBSCRIBE] = {"unsubscribe", MOAT_MQTT_UNSUBSCRIBE},
	[MOAT_CLI_DISCONNECT] = {"disconnect", MOAT_MQTT_DISCONNECT},
	[MOAT_CLI_WILL] = {"will", MOAT_PROPS_WILL},
};

/* Largest value of each numeric type, and whether 0 is refused. */
static const struct {
	uint32_t max;
	bool nonzero;
} ranges[] = {
	[V_BOOL] = {1, false},		[V_BYTE] = {255, false},       [V_U16] = {65535, false},
	[V_U16NZ] = {65535, true},	[V_U32] = {UINT32_MAX, false}, [V_U32NZ] = {UINT32_MAX, true},
	[V_VARINT] = {MOAT_MQTT_MAX_REMAINING, true},
};

static const struct pname *find_name(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(pnames) / sizeof(pnames[0]); i++)
		if (strcmp(pnames[i].name, s) == 0)
			return &pnames[i];
	return NULL;
}

static int find_command(const char *s)
{
	int i;

	for (i = 0; i < MOAT_CLI_NCMD; i++)
		if (strcmp(commands[i].name, s) == 0)
			return i;
	return -1;
}

/* True if a client may send property id in packet `where`. */
static bool client_may_send(unsigned id, unsigned where)
{
	if (!moat_mqtt_prop_allowed(id, where))
		return false;
	/* allowed in the packet, but only from a server [MQTT-3.3.4-6] */
	return !(id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER && where == MOAT_MQTT_PUBLISH);
}

static bool utf8_ok(const char *s)
{
	return moat_utf8_check((const uint8_t *)s, strlen(s), 0) == MOAT_UTF8_OK;
}

static struct moat_slice slice(const char *s)
{
	return (struct moat_slice){(const uint8_t *)s, strlen(s)};
}

/* Stores a numeric value. Returns 0 or -1 if it is out of range. */
static int put_number(struct moat_mqtt_props *pr, const struct pname *d, const char *v)
{
	char *end;
	unsigned long long n;
	char *field = (char *)pr + d->off;

	if (v[0] < '0' || v[0] > '9')
		return -1;
	n = strtoull(v, &end, 10);
	if (*end || n > ranges[d->type].max || (n == 0 && ranges[d->type].nonzero))
		return -1;
	if (d->type == V_BOOL || d->type == V_BYTE)
		*(uint8_t *)field = (uint8_t)n;
	else if (d->type == V_U16 || d->type == V_U16NZ)
		*(uint16_t *)field = (uint16_t)n;
	else
		*(uint32_t *)field = (uint32_t)n;
	return 0;
}

/* Appends a User Property to cmd's block. Returns 0 or -1 (too long, no memory). */
static int put_user(struct moat_cli_props *cp, int cmd, const char *k, const char *v)
{
	size_t need = cp->user_len[cmd] + 5 + strlen(k) + strlen(v);

	if (!utf8_ok(k) || !utf8_ok(v))
		return -1;
	if (need > cp->user_cap[cmd]) {
		size_t cap = need * 2;
		uint8_t *nb = realloc(cp->user[cmd], cap);
		if (!nb)
			return -1;
		cp->user[cmd] = nb;
		cp->user_cap[cmd] = cap;
	}
	if (moat_mqtt_props_put_user(cp->user[cmd], cp->user_cap[cmd], &cp->user_len[cmd],
				     slice(k), slice(v)) < 0)
		return -1;
	cp->p[cmd].user_count++;
	return 0;
}

/* Stores value v of property d. Returns 0 or -1 if it is not valid. */
static int put_value(struct moat_cli_props *cp, int cmd, const struct pname *d, char **vals)
{
	struct moat_mqtt_props *pr = &cp->p[cmd];
	const char *v = vals[2];

	if (d->type == V_TOPIC && moat_mqtt_topic_name_check((const uint8_t *)v, strlen(v)) < 0)
		return -1;
	switch (d->type) {
	case V_PAIR:
		return put_user(cp, cmd, vals[2], vals[3]);
	case V_TOPIC:
	case V_STR:
		if (!utf8_ok(v) || strlen(v) > 65535)
			return -1;
		*(struct moat_slice *)((char *)pr + d->off) = slice(v);
		return 0;
	case V_BIN:
		if (strlen(v) > 65535)
			return -1;
		*(struct moat_slice *)((char *)pr + d->off) = slice(v);
		return 0;
	default:
		return put_number(pr, d, v);
	}
}

int moat_cli_props_add(struct moat_cli_props *cp, char **vals, int avail)
{
	const struct pname *d;
	int cmd = find_command(vals[0]);

	if (cmd < 0) {
		fprintf(stderr, "Error: Invalid command %s given in --property argument.\n", vals[0]);
		return -1;
	}
	d = find_name(vals[1]);
	if (!d) {
		fprintf(stderr, "Error: Invalid property name %s given in --property argument.\n",
			vals[1]);
		return -1;
	}
	if (!client_may_send(d->id, commands[cmd].where)) {
		fprintf(stderr, "Error: %s property not allowed for %s in --property argument.\n",
			d->name, commands[cmd].name);
		return -1;
	}
	if (d->type == V_PAIR && avail < 4) {
		fprintf(stderr, "Error: user-property needs a name and a value.\n");
		return -1;
	}
	if (put_value(cp, cmd, d, vals) < 0) {
		fprintf(stderr, "Error: Invalid value for %s property.\n", d->name);
		return -1;
	}
	cp->p[cmd].present |= MOAT_PROP_BIT(d->id);
	return d->type == V_PAIR ? 4 : 3;
}

void moat_cli_props_finish(struct moat_cli_props *cp)
{
	int i;

	for (i = 0; i < MOAT_CLI_NCMD; i++)
		cp->p[i].multi = (struct moat_slice){cp->user[i], cp->user_len[i]};
}

void moat_cli_props_free(struct moat_cli_props *cp)
{
	int i;

	for (i = 0; i < MOAT_CLI_NCMD; i++) {
		free(cp->user[i]);
		cp->user[i] = NULL;
		cp->user_len[i] = cp->user_cap[i] = 0;
	}
}
