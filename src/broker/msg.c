/*
 * msg.c - message objects (see msg.h).
 */
#include "broker/msg.h"

#include <string.h>

/*
 * Bytes of a property block to forward: everything but the per-delivery
 * properties (and Will Delay Interval, when the block is a will's).
 */
static size_t forwarded_props(const struct moat_mqtt_props *pr, uint8_t *out)
{
	struct moat_mqtt_prop_iter it;
	struct moat_slice raw;
	uint32_t id;
	size_t n = 0;

	moat_mqtt_props_iter(pr, &it);
	while (moat_mqtt_props_next_raw(&it, &id, &raw)) {
		if (id == MOAT_PROP_MESSAGE_EXPIRY_INTERVAL || id == MOAT_PROP_TOPIC_ALIAS ||
		    id == MOAT_PROP_SUBSCRIPTION_IDENTIFIER || id == MOAT_PROP_WILL_DELAY_INTERVAL)
			continue;
		if (out)
			memcpy(out + n, raw.p, raw.len);
		n += raw.len;
	}
	return n;
}

static struct moat_msg *alloc_msg(struct moat_mem *mem, size_t topic_len, size_t props_len,
				  size_t payload_len)
{
	size_t size = sizeof(struct moat_msg) + topic_len + props_len + payload_len;
	struct moat_msg *m = moat_mem_alloc(mem, size);

	if (!m)
		return NULL;
	atomic_init(&m->refs, 1);
	m->topic_len = (uint16_t)topic_len;
	m->props_len = (uint32_t)props_len;
	m->payload_len = (uint32_t)payload_len;
	m->mem = mem;
	m->size = size;
	m->has_expiry = false;
	m->expires_at = 0;
	return m;
}

struct moat_msg *moat_msg_from_publish(struct moat_mem *mem, const struct moat_mqtt_publish *p,
				       const uint8_t *topic, size_t topic_len, uint64_t origin,
				       int64_t now)
{
	size_t props_len = forwarded_props(&p->props, NULL);
	struct moat_msg *m = alloc_msg(mem, topic_len, props_len, p->payload.len);

	if (!m)
		return NULL;
	m->qos = p->qos;
	m->retain = p->retain;
	m->origin = origin;
	memcpy(m->data, topic, topic_len);
	forwarded_props(&p->props, m->data + topic_len);
	if (p->payload.len)
		memcpy(m->data + topic_len + props_len, p->payload.p, p->payload.len);
	if (moat_mqtt_props_has(&p->props, MOAT_PROP_MESSAGE_EXPIRY_INTERVAL)) {
		m->has_expiry = true;
		m->expires_at = now + (int64_t)p->props.message_expiry * 1000;
	}
	return m;
}

struct moat_msg *moat_msg_new(struct moat_mem *mem, const void *topic, size_t topic_len,
			      const void *props, size_t props_len, const void *payload,
			      size_t payload_len, uint8_t qos, bool retain, int64_t expires_at,
			      uint64_t origin)
{
	struct moat_msg *m = alloc_msg(mem, topic_len, props_len, payload_len);

	if (!m)
		return NULL;
	m->qos = qos;
	m->retain = retain;
	m->origin = origin;
	m->has_expiry = expires_at != 0;
	m->expires_at = expires_at;
	memcpy(m->data, topic, topic_len);
	if (props_len)
		memcpy(m->data + topic_len, props, props_len);
	if (payload_len)
		memcpy(m->data + topic_len + props_len, payload, payload_len);
	return m;
}

void moat_msg_unref(struct moat_msg *m)
{
	if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		moat_mem_free(m->mem, m, m->size);
}

uint32_t moat_msg_expiry_left(const struct moat_msg *m, int64_t now)
{
	int64_t left = (m->expires_at - now + 999) / 1000;

	return left < 1 ? 1 : left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}
