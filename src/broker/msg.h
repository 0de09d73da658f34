/*
 * msg.h - the message object: one per PUBLISH received, shared by every
 * delivery of it.
 *
 * A message is immutable once made and refcounted with atomics, because its
 * deliveries live on several worker threads. It holds the topic, the 5.0
 * properties that travel with it (in wire form, without Message Expiry,
 * Topic Alias and Subscription Identifiers, which are per delivery) and the
 * payload, in one allocation charged to the broker's message account.
 */
#ifndef MOAT_BROKER_MSG_H
#define MOAT_BROKER_MSG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/mem.h"
#include "mqtt/packet.h"

struct moat_msg {
	atomic_uint refs;
	uint8_t qos;
	bool retain;
	bool has_expiry;
	uint16_t topic_len;
	uint32_t props_len;
	uint32_t payload_len;
	int64_t expires_at;     /* monotonic ms, if has_expiry */
	uint64_t origin;        /* id of the publishing session, 0 for the broker (No Local) */
	struct moat_mem *mem;
	size_t size;            /* bytes charged */
	uint8_t data[];         /* topic | props | payload */
};

static inline const uint8_t *moat_msg_topic(const struct moat_msg *m)
{
	return m->data;
}

static inline const uint8_t *moat_msg_props(const struct moat_msg *m)
{
	return m->data + m->topic_len;
}

static inline const uint8_t *moat_msg_payload(const struct moat_msg *m)
{
	return m->data + m->topic_len + m->props_len;
}

/*
 * Makes a message from a decoded PUBLISH (topic given separately, since an
 * alias may have supplied it). Copies what it keeps; `now` is the monotonic
 * time for Message Expiry. Returns owned message (release with
 * moat_msg_unref) or NULL when the account's limit is reached.
 */
struct moat_msg *moat_msg_from_publish(struct moat_mem *mem, const struct moat_mqtt_publish *p,
				       const uint8_t *topic, size_t topic_len, uint64_t origin,
				       int64_t now);

/* Makes a message from parts (wills, $SYS). props are forwarded 5.0 properties. */
struct moat_msg *moat_msg_new(struct moat_mem *mem, const void *topic, size_t topic_len,
			      const void *props, size_t props_len, const void *payload,
			      size_t payload_len, uint8_t qos, bool retain, int64_t expires_at,
			      uint64_t origin);

static inline struct moat_msg *moat_msg_ref(struct moat_msg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

/* Drops a reference; frees the message with the last one. NULL is a no-op. */
void moat_msg_unref(struct moat_msg *m);

/* True if the message has expired at monotonic time now. */
static inline bool moat_msg_expired(const struct moat_msg *m, int64_t now)
{
	return m->has_expiry && now >= m->expires_at;
}

/* Seconds of Message Expiry left at now (at least 1 while not expired). */
uint32_t moat_msg_expiry_left(const struct moat_msg *m, int64_t now);

#endif
