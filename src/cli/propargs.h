/*
 * propargs.h - MQTT 5.0 properties given on the command line, in
 * mosquitto's syntax: -D COMMAND PROPERTY VALUE, or for User Properties
 * -D COMMAND user-property KEY VALUE.
 *
 * COMMAND is connect, publish, subscribe, unsubscribe, disconnect or will;
 * PROPERTY is the spec's name in lower case with dashes
 * (message-expiry-interval, content-type, ...). A property is refused where
 * MQTT 5.0 does not allow it in that packet, or where only a server may send
 * it (e.g. subscription-identifier in publish). Strings and binary data are
 * borrowed from argv; User Properties are copied into owned blocks.
 */
#ifndef MOAT_CLI_PROPARGS_H
#define MOAT_CLI_PROPARGS_H

#include <stddef.h>
#include <stdint.h>

#include "mqtt/props.h"

enum moat_cli_prop_cmd {
	MOAT_CLI_CONNECT,
	MOAT_CLI_PUBLISH,
	MOAT_CLI_SUBSCRIBE,
	MOAT_CLI_UNSUBSCRIBE,
	MOAT_CLI_DISCONNECT,
	MOAT_CLI_WILL,
	MOAT_CLI_NCMD
};

/* The properties of each command; User Properties in owned wire-format blocks. */
struct moat_cli_props {
	struct moat_mqtt_props p[MOAT_CLI_NCMD];
	uint8_t *user[MOAT_CLI_NCMD];
	size_t user_len[MOAT_CLI_NCMD];
	size_t user_cap[MOAT_CLI_NCMD];
};

/*
 * Adds the property vals[0..avail) names (COMMAND PROPERTY VALUE [VALUE]).
 * Returns the number of values consumed (3, or 4 for user-property), or -1
 * after printing the error on stderr.
 */
int moat_cli_props_add(struct moat_cli_props *cp, char **vals, int avail);

/* Points each command's props at its User Property block. Call after the last add. */
void moat_cli_props_finish(struct moat_cli_props *cp);

/* Frees the User Property blocks. */
void moat_cli_props_free(struct moat_cli_props *cp);

#endif
