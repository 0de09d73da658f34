/*
 * retain.h - the retained message store.
 *
 * A trie of topic levels with at most one message per node, shared by all
 * workers under a reader-writer lock: written by retained PUBLISHes, read
 * when a subscription is made. Lookups by filter walk only the branches the
 * filter allows, without recursion. Expired messages are skipped on lookup
 * and dropped when next met.
 */
#ifndef MOAT_BROKER_RETAIN_H
#define MOAT_BROKER_RETAIN_H

#include <stddef.h>
#include <stdint.h>

#include "broker/msg.h"
#include "core/mem.h"

struct moat_retain;

struct moat_retain *moat_retain_new(struct moat_mem *mem);
void moat_retain_free(struct moat_retain *r);

/*
 * Stores msg as the retained message of its topic (taking a new reference),
 * replacing any; a message with an empty payload deletes the topic's
 * retained message instead [MQTT-3.3.1-6]. Returns 0 or MOAT_ENOMEM.
 */
int moat_retain_set(struct moat_retain *r, struct moat_msg *msg);

/*
 * Calls cb(ctx, msg) for each retained message whose topic matches filter (a
 * valid non-shared filter), skipping those expired at now. msg is borrowed
 * for the call; take a reference to keep it. cb runs under the read lock and
 * must not call into the store.
 */
void moat_retain_match(struct moat_retain *r, const uint8_t *filter, size_t n, int64_t now,
		       void (*cb)(void *ctx, struct moat_msg *msg), void *ctx);

/* Number of retained messages. */
size_t moat_retain_count(struct moat_retain *r);

#endif
