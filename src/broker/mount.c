/*
 * mount.c - mount points (Mosquitto's mount_point): a listener's clients
 * live under a topic prefix. Topics and filters they send get the prefix in
 * front; topics sent to them lose it (conn_send_publish). Such a client can
 * see nothing outside its prefix, $SYS included.
 */
#include <string.h>

#include "broker/internal.h"
#include "core/error.h"
#include "mqtt/topic.h"

/*
 * Writes the mounted form of topic or filter `in` into buf (MOUNT_MAX bytes)
 * and points *out at it; with no mount point, *out is `in`. A shared filter
 * keeps "$share/group/" in front of the prefix. Returns 0, or MOAT_ETOOBIG if
 * the result would not fit a topic (65535 bytes).
 */
int mount_topic(const struct moat_conn *c, struct moat_slice in, uint8_t *buf,
		struct moat_slice *out)
{
	struct moat_slice group, inner;
	const uint8_t *orig = in.p;
	size_t head = 0;

	if (!c->mount_len) {
		*out = in;
		return 0;
	}
	if (moat_mqtt_share_split(in.p, in.len, &group, &inner) == 1) {
		head = (size_t)(inner.p - in.p); /* "$share/group/" */
		in = inner;
	}
	if (head + c->mount_len + in.len > MOUNT_MAX)
		return MOAT_ETOOBIG;
	memcpy(buf, orig, head);
	memcpy(buf + head, c->mount, c->mount_len);
	memcpy(buf + head + c->mount_len, in.p, in.len);
	out->p = buf;
	out->len = head + c->mount_len + in.len;
	return 0;
}
