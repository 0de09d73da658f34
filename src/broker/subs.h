/*
 * subs.h - the subscription index: which sessions want a topic.
 *
 * Shared by all workers and read on every PUBLISH, changed on SUBSCRIBE and
 * UNSUBSCRIBE: a reader-writer lock guards it. Filters without wildcards
 * live in a hash map keyed by the whole filter (one lookup per publish);
 * filters with '+' or '#' live in a trie of levels walked without recursion,
 * so a deep topic or filter costs only its length. Shared subscriptions
 * ($share/group/filter) hang off the node of their inner filter as groups;
 * each message goes to one member of each matching group, in turn,
 * preferring members that are online.
 *
 * The index stores session pointers but never frees sessions: the owner
 * removes every subscription of a session (under the write lock) before the
 * session can die, and a match callback that keeps a session must take a
 * reference while the read lock is held.
 */
#ifndef MOAT_BROKER_SUBS_H
#define MOAT_BROKER_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mem.h"

struct moat_session;
struct moat_subs;

/* Returns owned index (free with moat_subs_free) or NULL. online(s) says if a session is connected. */
struct moat_subs *moat_subs_new(struct moat_mem *mem, bool (*online)(const struct moat_session *));
void moat_subs_free(struct moat_subs *x);

/*
 * Adds session s's subscription to filter (a valid filter, "$share/" ones
 * included) with options byte opts and subscription identifier subid (0 =
 * none), or replaces it if s already has one for that filter. Sets *existed.
 * Returns 0 or MOAT_ENOMEM.
 */
int moat_subs_add(struct moat_subs *x, const uint8_t *filter, size_t n, struct moat_session *s,
		  uint8_t opts, uint32_t subid, bool *existed);

/* Removes s's subscription to filter. Returns 0, or MOAT_ENOTFOUND. */
int moat_subs_remove(struct moat_subs *x, const uint8_t *filter, size_t n,
		     struct moat_session *s);

/*
 * Calls cb for every subscription matching topic (a valid topic name): once
 * per plain subscription, once per matching shared group (for the member
 * chosen). Runs under the read lock: cb must be quick and must not call back
 * into the index.
 */
typedef void (*moat_subs_cb)(void *ctx, struct moat_session *s, uint8_t opts, uint32_t subid,
			     bool shared);
void moat_subs_match(struct moat_subs *x, const uint8_t *topic, size_t n, moat_subs_cb cb,
		     void *ctx);

/* Number of subscriptions in the index. */
size_t moat_subs_count(struct moat_subs *x);

#endif
