/*
 * subfmt.h - how `moat sub` prints a message: plain, -v, or -F format.
 *
 * -F follows mosquitto_sub's format language:
 *
 *   %%  a literal %            %t  topic               %p  payload
 *   %q  QoS                    %r  retain flag (0/1)   %l  payload length
 *   %m  packet identifier      %x  payload in hex      %X  payload in upper-case hex
 *   %I  ISO 8601 local time    %U  Unix time with nanoseconds
 *   %j  JSON object: tst, topic, qos, retain, payloadlen, mid (QoS > 0), payload (escaped)
 *   5.0 properties (empty when absent):
 *   %A  Topic Alias            %C  Content Type        %D  Correlation Data
 *   %E  Message Expiry         %F  Payload Format      %P  User Properties "k:v k:v"
 *   %R  Response Topic         %S  Subscription Identifier
 *
 * A % may be followed by '-' (left align), '0' (zero pad), a field width and
 * '.precision' (strings), as in printf. @X prints strftime's %X of the
 * receive time (@N: nanoseconds, @@: a literal @). Escapes: \\ \0 \a \e \n
 * \r \t \v. Unknown specifiers print nothing. A newline ends each message
 * unless -N.
 */
#ifndef MOAT_CLI_SUBFMT_H
#define MOAT_CLI_SUBFMT_H

#include <stdbool.h>
#include <stdio.h>

#include "cli/client.h"

struct moat_cli_print {
	const char *format; /* -F, or NULL */
	bool verbose;       /* -v: "topic payload" */
	bool eol;           /* a newline after each message (not -N) */
};

/* Prints m to f as pr says, and flushes f. */
void moat_cli_print_message(FILE *f, const struct moat_cli_print *pr,
			    const struct moat_client_msg *m);

#endif
