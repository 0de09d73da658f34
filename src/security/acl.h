/*
 * acl.h - access control lists: Mosquitto's acl_file syntax, with what it
 * lacks, and default deny.
 *
 * Mosquitto's lines, with Mosquitto's meaning:
 *   topic [read|write|readwrite|deny] TOPIC   (readwrite when no access is given)
 *   user USERNAME                             following topic lines are that user's
 *   pattern [read|write|readwrite|deny] TOPIC for every client; %c = client id, %u = user name
 * Topic lines before any user line apply to clients without a user name.
 * moat's additions:
 *   clientid ID                               following topic lines are that client id's
 *   identity NAME                             ... that TLS identity's (certificate CN, subject
 *                                             or SAN, or PSK identity, as the listener names it)
 *   option no_wildcard_subscriptions          in a user/clientid/identity block: refuse
 *                                             subscriptions with '+' or '#'
 *   option max_qos 0|1|2                      ... refuse publishes and grant subscriptions above it
 *   option retain false                       ... refuse retained publishes
 *
 * A request is allowed when a rule that applies to the client grants that
 * access to a matching topic and no applicable `deny` rule matches: deny
 * always wins, and nothing matching means deny. A subscription filter is
 * allowed when the ACL topic covers it (the filter is matched as a topic
 * name, its wildcards taken literally, as Mosquitto does; but only a '#'
 * covers a '#': "a/+" does not cover "a/#"). A %c or %u that
 * would substitute text holding '+', '#' or '/' (CVE-2017-7650), or start
 * the filter with '$', makes an allowing pattern match nothing; a deny
 * pattern is substituted as written, and denies everything if that leaves no
 * valid filter (a deny is never weakened).
 *
 * Parsing fails closed: a malformed line refuses the whole file with its line
 * number; an empty file denies everything.
 */
#ifndef MOAT_SECURITY_ACL_H
#define MOAT_SECURITY_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { MOAT_ACL_READ = 1, MOAT_ACL_WRITE = 2, MOAT_ACL_SUBSCRIBE = 4 };

/* Decisions are an enum: test `== MOAT_ALLOW`; anything else denies. */
enum moat_decision { MOAT_DENY = 0, MOAT_ALLOW = 1 };

struct moat_acl;
struct moat_acl_client;

/* Who is asking. Any field may be NULL (no user name, no TLS identity). */
struct moat_acl_who {
	const char *username;
	const char *client_id;
	const char *identity;
};

/* The options a client's rules give it. */
struct moat_acl_opts {
	bool no_wildcard_subscriptions;
	uint8_t max_qos;   /* 2 unless limited */
	bool retain;       /* true unless forbidden */
};

/* Reads the ACL file at path (see above). 0 and *out, MOAT_EIO, or MOAT_ECONFIG with "PATH:LINE: why". */
int moat_acl_load(const char *path, struct moat_acl **out, char *err, size_t errlen);

/* The same from memory (for tests and the fuzz target). */
int moat_acl_parse(const char *text, size_t n, const char *name, struct moat_acl **out,
		   char *err, size_t errlen);

void moat_acl_free(struct moat_acl *a);

/* Number of rules. */
size_t moat_acl_count(const struct moat_acl *a);

/*
 * Compiles the rules that apply to who (its user, client id and identity
 * blocks, the general rules, and the patterns with %c/%u substituted) into a
 * per-client view, checked without looking at anyone else's rules and with a
 * small cache of recent decisions. Returns owned (moat_acl_client_free), or
 * NULL if out of memory or past a budget for substituted text (which the
 * caller treats as deny). The view keeps no
 * pointer into a or who: it outlives a reload of the ACL until rebound.
 */
struct moat_acl_client *moat_acl_bind(const struct moat_acl *a, const struct moat_acl_who *who);

void moat_acl_client_free(struct moat_acl_client *c);

/*
 * Decides access (one of MOAT_ACL_READ, _WRITE, _SUBSCRIBE) to topic (or,
 * for _SUBSCRIBE, a filter: a "$share/GROUP/" prefix is stripped, and a
 * wildcard is denied under no_wildcard_subscriptions). An invalid topic or
 * filter is denied. Not thread-safe: a view belongs to one client.
 */
enum moat_decision moat_acl_check(struct moat_acl_client *c, const uint8_t *topic, size_t n,
				  int access);

/* The options of the client's view. */
const struct moat_acl_opts *moat_acl_options(const struct moat_acl_client *c);

#endif
