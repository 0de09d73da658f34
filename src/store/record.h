/*
 * record.h - the byte layout of what the store keeps: messages (retained or
 * waiting for a session), sessions with their subscriptions, and a
 * session's deliveries.
 *
 * The store seals records whole; this layer only lays them out and reads
 * them back. Reading is zero-copy (slices into the record) and checks every
 * length and value, because a record is input like any other: a store
 * written by an older or broken build must be refused row by row, never
 * trusted. All integers are big-endian. Every record starts with its kind
 * and a format version, so a later layout can be told apart.
 *
 *   message:  'M' 1 | flags (qos 0-1, retain 2, has_expiry 3) | [expiry: i64 wall ms]
 *             | topic: u16 len + bytes | props: u32 len + bytes | payload: u32 len + bytes
 *   session:  'S' 1 | mqtt version u8 | expiry u32 s | disconnected_at i64 wall ms (0: online)
 *             | client id: u16 len + bytes | nsubs u32 | nsubs x (filter: u16 len + bytes,
 *             options u8, subscription id u32)
 *   delivery: 'D' 1 | state u8 | packet id u16 | qos u8 | flags (dup 0)
 *             | nsubids u16 | nsubids x subscription id u32 | message record
 *   will:     'W' 1 | due i64 wall ms (> 0) | message record   (a delayed will, waiting)
 *   device:   'I' 1 | first_seen, last_seen, last_disconnect i64 wall s | connects u64
 *             | versions u8 (bits 3-5) | method, client id, username, identity: u16 len +
 *             bytes | naddrs u8 (<= 4) x (u8 len + bytes) | nprops u8 (<= 8) x (u16 len +
 *             "key=value")   (the device inventory)
 */
#ifndef MOAT_STORE_RECORD_H
#define MOAT_STORE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A message: topic, 5.0 properties (the entries, no length prefix) and payload. */
struct moat_rec_msg {
	uint8_t qos;
	bool retain;
	bool has_expiry;
	int64_t expires_wall_ms;       /* if has_expiry: when it expires, wall clock */
	const uint8_t *topic;
	size_t topic_len;
	const uint8_t *props;
	size_t props_len;
	const uint8_t *payload;
	size_t payload_len;
};

struct moat_rec_sub {
	const uint8_t *filter;
	size_t filter_len;
	uint8_t options;               /* the SUBSCRIBE options byte */
	uint32_t subid;                /* 0: none */
};

struct moat_rec_session {
	uint8_t version;               /* 3, 4 or 5 */
	uint32_t expiry;               /* seconds; UINT32_MAX never */
	int64_t disconnected_wall_ms;  /* 0 while online */
	const uint8_t *client_id;
	size_t client_id_len;
	uint32_t nsubs;
	const uint8_t *subs;           /* the encoded list; walk it with moat_rec_sub_next */
	size_t subs_len;
};

enum moat_rec_state {
	MOAT_REC_QUEUED = 0,  /* waiting to be sent */
	MOAT_REC_SENT = 1,    /* sent, waiting for PUBACK or PUBREC */
	MOAT_REC_RELEASED = 2 /* QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP */
};

struct moat_rec_delivery {
	uint8_t state;                 /* enum moat_rec_state */
	uint16_t packet_id;            /* 0 while queued */
	uint8_t qos;
	bool dup;
	uint16_t nsubids;              /* MQTT 5 Subscription Identifiers to send with it */
	const uint8_t *subids;         /* nsubids x u32 big-endian; read with moat_rec_subid */
	struct moat_rec_msg msg;
};

/* A delayed will: the message, published at due_wall_ms unless the client comes back. */
struct moat_rec_will {
	int64_t due_wall_ms;
	struct moat_rec_msg msg;
};

/* An inventory entry: what the broker knows of a client id (broker/inventory.c). */
struct moat_rec_device {
	int64_t first_seen, last_seen, last_disconnect;
	uint64_t connects;
	uint8_t versions;
	struct moat_rec_str { const uint8_t *p; size_t n; } method, client_id, username, identity;
	uint8_t naddrs, nprops;
	struct moat_rec_str addrs[4], props[8];
};

/* Subscription identifier i of a delivery (encoding: give subids as an array in subid_list). */
uint32_t moat_rec_subid(const struct moat_rec_delivery *d, uint16_t i);

/* Sizes (0 if the record cannot be laid out: a field too long), and encoders into out. */
size_t moat_rec_msg_size(const struct moat_rec_msg *m);
size_t moat_rec_msg_encode(const struct moat_rec_msg *m, uint8_t *out);
size_t moat_rec_session_size(const struct moat_rec_session *s, const struct moat_rec_sub *subs);
size_t moat_rec_session_encode(const struct moat_rec_session *s, const struct moat_rec_sub *subs,
			       uint8_t *out);
size_t moat_rec_delivery_size(const struct moat_rec_delivery *d);
/* Encodes d with subid_list[0..d->nsubids) as its identifiers (d->subids is ignored). */
size_t moat_rec_delivery_encode(const struct moat_rec_delivery *d, const uint32_t *subid_list,
				uint8_t *out);

/*
 * Decoders: 0 and *out with slices into in[0..n), or MOAT_EMALFORMED (a
 * length past the end, bytes left over, a QoS of 3, an unknown flag, a topic
 * or filter MQTT would refuse, a client id that is not UTF-8...) or
 * MOAT_EVERSION (another kind or format version).
 */
int moat_rec_msg_decode(const uint8_t *in, size_t n, struct moat_rec_msg *out);
int moat_rec_session_decode(const uint8_t *in, size_t n, struct moat_rec_session *out);
int moat_rec_delivery_decode(const uint8_t *in, size_t n, struct moat_rec_delivery *out);
int moat_rec_will_decode(const uint8_t *in, size_t n, struct moat_rec_will *out);
size_t moat_rec_will_size(const struct moat_rec_will *v);
size_t moat_rec_will_encode(const struct moat_rec_will *v, uint8_t *out);
int moat_rec_device_decode(const uint8_t *in, size_t n, struct moat_rec_device *out);
size_t moat_rec_device_size(const struct moat_rec_device *d);
size_t moat_rec_device_encode(const struct moat_rec_device *d, uint8_t *out);

/* The next subscription of a decoded session: 1 and *out, or 0 at the end. */
int moat_rec_sub_next(const struct moat_rec_session *s, size_t *pos, struct moat_rec_sub *out);

#endif
