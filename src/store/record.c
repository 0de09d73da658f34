/*
 * record.c - laying out and reading back the store's records (see record.h).
 */
#include "store/record.h"

#include <string.h>

#include "core/error.h"
#include "core/utf8.h"
#include "mqtt/topic.h"

#define FORMAT 1
#define MSG_QOS_MASK 0x03
#define MSG_RETAIN 0x04
#define MSG_EXPIRY 0x08
#define DLV_DUP 0x01
#define SUB_OPTIONS_RESERVED 0xC0 /* bits 6-7 of the SUBSCRIBE options must be 0 */

/* ---- writing ---- */

struct wr {
	uint8_t *p;
	size_t n;
};

static void w8(struct wr *w, uint8_t v)
{
	if (w->p)
		w->p[w->n] = v;
	w->n += 1;
}

static void wn(struct wr *w, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		w8(w, (uint8_t)(v >> (8 * i)));
}

static void wbytes(struct wr *w, const void *p, size_t n)
{
	if (w->p && n)
		memcpy(w->p + w->n, p, n);
	w->n += n;
}

static bool msg_fits(const struct moat_rec_msg *m)
{
	return m->topic_len <= UINT16_MAX && m->props_len <= UINT32_MAX &&
	       m->payload_len <= UINT32_MAX && m->qos <= 2;
}

static void put_msg(struct wr *w, const struct moat_rec_msg *m)
{
	w8(w, 'M');
	w8(w, FORMAT);
	w8(w, (uint8_t)(m->qos | (m->retain ? MSG_RETAIN : 0) | (m->has_expiry ? MSG_EXPIRY : 0)));
	if (m->has_expiry)
		wn(w, (uint64_t)m->expires_wall_ms, 8);
	wn(w, m->topic_len, 2);
	wbytes(w, m->topic, m->topic_len);
	wn(w, m->props_len, 4);
	wbytes(w, m->props, m->props_len);
	wn(w, m->payload_len, 4);
	wbytes(w, m->payload, m->payload_len);
}

size_t moat_rec_msg_size(const struct moat_rec_msg *m)
{
	struct wr w = { NULL, 0 };

	if (!msg_fits(m))
		return 0;
	put_msg(&w, m);
	return w.n;
}

size_t moat_rec_msg_encode(const struct moat_rec_msg *m, uint8_t *out)
{
	struct wr w = { out, 0 };

	if (!msg_fits(m))
		return 0;
	put_msg(&w, m);
	return w.n;
}

static bool session_fits(const struct moat_rec_session *s, const struct moat_rec_sub *subs)
{
	if (s->client_id_len > UINT16_MAX)
		return false;
	for (uint32_t i = 0; i < s->nsubs; i++)
		if (subs[i].filter_len > UINT16_MAX)
			return false;
	return true;
}

static void put_session(struct wr *w, const struct moat_rec_session *s,
			const struct moat_rec_sub *subs)
{
	w8(w, 'S');
	w8(w, FORMAT);
	w8(w, s->version);
	wn(w, s->expiry, 4);
	wn(w, (uint64_t)s->disconnected_wall_ms, 8);
	wn(w, s->client_id_len, 2);
	wbytes(w, s->client_id, s->client_id_len);
	wn(w, s->nsubs, 4);
	for (uint32_t i = 0; i < s->nsubs; i++) {
		wn(w, subs[i].filter_len, 2);
		wbytes(w, subs[i].filter, subs[i].filter_len);
		w8(w, subs[i].options);
		wn(w, subs[i].subid, 4);
	}
}

size_t moat_rec_session_size(const struct moat_rec_session *s, const struct moat_rec_sub *subs)
{
	struct wr w = { NULL, 0 };

	if (!session_fits(s, subs))
		return 0;
	put_session(&w, s, subs);
	return w.n;
}

size_t moat_rec_session_encode(const struct moat_rec_session *s, const struct moat_rec_sub *subs,
			       uint8_t *out)
{
	struct wr w = { out, 0 };

	if (!session_fits(s, subs))
		return 0;
	put_session(&w, s, subs);
	return w.n;
}

static void put_delivery(struct wr *w, const struct moat_rec_delivery *d, const uint32_t *ids)
{
	w8(w, 'D');
	w8(w, FORMAT);
	w8(w, d->state);
	wn(w, d->packet_id, 2);
	w8(w, d->qos);
	w8(w, d->dup ? DLV_DUP : 0);
	wn(w, d->nsubids, 2);
	for (uint16_t i = 0; i < d->nsubids; i++)
		wn(w, ids ? ids[i] : 0, 4);
	put_msg(w, &d->msg);
}

uint32_t moat_rec_subid(const struct moat_rec_delivery *d, uint16_t i)
{
	const uint8_t *p = d->subids + 4 * (size_t)i;

	if (i >= d->nsubids)
		return 0;
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t moat_rec_delivery_size(const struct moat_rec_delivery *d)
{
	struct wr w = { NULL, 0 };

	if (!msg_fits(&d->msg) || d->qos > 2 || d->state > MOAT_REC_RELEASED)
		return 0;
	put_delivery(&w, d, NULL);
	return w.n;
}

size_t moat_rec_delivery_encode(const struct moat_rec_delivery *d, const uint32_t *subid_list,
				uint8_t *out)
{
	struct wr w = { out, 0 };

	if (!msg_fits(&d->msg) || d->qos > 2 || d->state > MOAT_REC_RELEASED)
		return 0;
	put_delivery(&w, d, subid_list);
	return w.n;
}

static void put_will(struct wr *w, const struct moat_rec_will *v)
{
	w8(w, 'W');
	w8(w, FORMAT);
	wn(w, (uint64_t)v->due_wall_ms, 8);
	put_msg(w, &v->msg);
}

size_t moat_rec_will_size(const struct moat_rec_will *v)
{
	struct wr w = { NULL, 0 };

	if (!msg_fits(&v->msg) || v->due_wall_ms <= 0)
		return 0;
	put_will(&w, v);
	return w.n;
}

size_t moat_rec_will_encode(const struct moat_rec_will *v, uint8_t *out)
{
	struct wr w = { out, 0 };

	if (!msg_fits(&v->msg) || v->due_wall_ms <= 0)
		return 0;
	put_will(&w, v);
	return w.n;
}

static bool device_fits(const struct moat_rec_device *d)
{
	if (d->naddrs > 4 || d->nprops > 8 || d->method.n > UINT16_MAX || d->client_id.n == 0 ||
	    d->client_id.n > UINT16_MAX || d->username.n > UINT16_MAX || d->identity.n > UINT16_MAX)
		return false;
	for (int i = 0; i < d->naddrs; i++)
		if (d->addrs[i].n > UINT8_MAX)
			return false;
	for (int i = 0; i < d->nprops; i++)
		if (d->props[i].n > UINT16_MAX)
			return false;
	return true;
}

static void put_str16(struct wr *w, const struct moat_rec_str *x)
{
	wn(w, x->n, 2);
	wbytes(w, x->p, x->n);
}

static void put_device(struct wr *w, const struct moat_rec_device *d)
{
	w8(w, 'I');
	w8(w, FORMAT);
	wn(w, (uint64_t)d->first_seen, 8);
	wn(w, (uint64_t)d->last_seen, 8);
	wn(w, (uint64_t)d->last_disconnect, 8);
	wn(w, d->connects, 8);
	w8(w, d->versions);
	put_str16(w, &d->method);
	put_str16(w, &d->client_id);
	put_str16(w, &d->username);
	put_str16(w, &d->identity);
	w8(w, d->naddrs);
	for (int i = 0; i < d->naddrs; i++) {
		w8(w, (uint8_t)d->addrs[i].n);
		wbytes(w, d->addrs[i].p, d->addrs[i].n);
	}
	w8(w, d->nprops);
	for (int i = 0; i < d->nprops; i++)
		put_str16(w, &d->props[i]);
}

size_t moat_rec_device_size(const struct moat_rec_device *d)
{
	struct wr w = { NULL, 0 };

	if (!device_fits(d))
		return 0;
	put_device(&w, d);
	return w.n;
}

size_t moat_rec_device_encode(const struct moat_rec_device *d, uint8_t *out)
{
	struct wr w = { out, 0 };

	if (!device_fits(d))
		return 0;
	put_device(&w, d);
	return w.n;
}

/* ---- reading ---- */

struct rd {
	const uint8_t *p;
	size_t n, i;
	bool bad;
};

static uint64_t rn(struct rd *r, int bytes)
{
	uint64_t v = 0;

	if (r->bad || r->n - r->i < (size_t)bytes) {
		r->bad = true;
		return 0;
	}
	for (int k = 0; k < bytes; k++)
		v = v << 8 | r->p[r->i++];
	return v;
}

static const uint8_t *rbytes(struct rd *r, size_t len)
{
	const uint8_t *p;

	if (r->bad || r->n - r->i < len) {
		r->bad = true;
		return NULL;
	}
	p = r->p + r->i;
	r->i += len;
	return p;
}

/* The kind and format bytes: 0, MOAT_EVERSION, or MOAT_EMALFORMED if too short. */
static int header(struct rd *r, uint8_t kind)
{
	uint8_t k = (uint8_t)rn(r, 1), f = (uint8_t)rn(r, 1);

	if (r->bad)
		return MOAT_EMALFORMED;
	return k == kind && f == FORMAT ? 0 : MOAT_EVERSION;
}

static bool utf8_ok(const uint8_t *p, size_t n)
{
	return moat_utf8_check(p, n, 0) == MOAT_UTF8_OK;
}

static int read_msg(struct rd *r, struct moat_rec_msg *m)
{
	uint8_t flags;
	int rc;

	memset(m, 0, sizeof(*m));
	if ((rc = header(r, 'M')) < 0)
		return rc;
	flags = (uint8_t)rn(r, 1);
	if (flags & ~(MSG_QOS_MASK | MSG_RETAIN | MSG_EXPIRY) || (flags & MSG_QOS_MASK) == 3)
		return MOAT_EMALFORMED;
	m->qos = flags & MSG_QOS_MASK;
	m->retain = flags & MSG_RETAIN;
	m->has_expiry = flags & MSG_EXPIRY;
	if (m->has_expiry)
		m->expires_wall_ms = (int64_t)rn(r, 8);
	m->topic_len = (size_t)rn(r, 2);
	m->topic = rbytes(r, m->topic_len);
	m->props_len = (size_t)rn(r, 4);
	m->props = rbytes(r, m->props_len);
	m->payload_len = (size_t)rn(r, 4);
	m->payload = rbytes(r, m->payload_len);
	if (r->bad || !utf8_ok(m->topic, m->topic_len) ||
	    moat_mqtt_topic_name_check(m->topic, m->topic_len) < 0)
		return MOAT_EMALFORMED;
	return 0;
}

int moat_rec_msg_decode(const uint8_t *in, size_t n, struct moat_rec_msg *out)
{
	struct rd r = { in, n, 0, false };
	int rc = read_msg(&r, out);

	if (rc < 0)
		return rc;
	return r.i == n ? 0 : MOAT_EMALFORMED;
}

/* One subscription at r; MOAT_EMALFORMED if it is not one MQTT would accept. */
static int read_sub(struct rd *r, struct moat_rec_sub *s)
{
	s->filter_len = (size_t)rn(r, 2);
	s->filter = rbytes(r, s->filter_len);
	s->options = (uint8_t)rn(r, 1);
	s->subid = (uint32_t)rn(r, 4);
	if (r->bad || s->options & SUB_OPTIONS_RESERVED || (s->options & 3) == 3 ||
	    (s->options >> 4 & 3) == 3 || s->subid > 268435455 || !utf8_ok(s->filter, s->filter_len) ||
	    moat_mqtt_topic_filter_check(s->filter, s->filter_len) < 0)
		return MOAT_EMALFORMED;
	return 0;
}

int moat_rec_session_decode(const uint8_t *in, size_t n, struct moat_rec_session *out)
{
	struct rd r = { in, n, 0, false };
	struct moat_rec_sub sub;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = header(&r, 'S')) < 0)
		return rc;
	out->version = (uint8_t)rn(&r, 1);
	out->expiry = (uint32_t)rn(&r, 4);
	out->disconnected_wall_ms = (int64_t)rn(&r, 8);
	out->client_id_len = (size_t)rn(&r, 2);
	out->client_id = rbytes(&r, out->client_id_len);
	out->nsubs = (uint32_t)rn(&r, 4);
	if (r.bad || out->version < 3 || out->version > 5 ||
	    !utf8_ok(out->client_id, out->client_id_len))
		return MOAT_EMALFORMED;
	out->subs = r.p + r.i;
	for (uint32_t i = 0; i < out->nsubs; i++) /* each is 7 bytes at least: no overflow */
		if (read_sub(&r, &sub) < 0)
			return MOAT_EMALFORMED;
	out->subs_len = (size_t)(r.p + r.i - out->subs);
	return r.i == n ? 0 : MOAT_EMALFORMED;
}

int moat_rec_sub_next(const struct moat_rec_session *s, size_t *pos, struct moat_rec_sub *out)
{
	struct rd r = { s->subs, s->subs_len, *pos, false };

	if (*pos >= s->subs_len || read_sub(&r, out) < 0)
		return 0;
	*pos = r.i;
	return 1;
}

int moat_rec_delivery_decode(const uint8_t *in, size_t n, struct moat_rec_delivery *out)
{
	struct rd r = { in, n, 0, false };
	uint8_t flags;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = header(&r, 'D')) < 0)
		return rc;
	out->state = (uint8_t)rn(&r, 1);
	out->packet_id = (uint16_t)rn(&r, 2);
	out->qos = (uint8_t)rn(&r, 1);
	flags = (uint8_t)rn(&r, 1);
	out->dup = flags & DLV_DUP;
	out->nsubids = (uint16_t)rn(&r, 2);
	out->subids = rbytes(&r, 4 * (size_t)out->nsubids);
	for (uint16_t i = 0; !r.bad && i < out->nsubids; i++) {
		uint32_t id = moat_rec_subid(out, i);
		if (id == 0 || id > 268435455)
			return MOAT_EMALFORMED;
	}
	if (r.bad || out->state > MOAT_REC_RELEASED || out->qos > 2 || flags & ~DLV_DUP ||
	    (out->state != MOAT_REC_QUEUED && (out->packet_id == 0 || out->qos == 0)) ||
	    (out->state == MOAT_REC_RELEASED && out->qos != 2))
		return MOAT_EMALFORMED;
	if ((rc = read_msg(&r, &out->msg)) < 0)
		return rc == MOAT_EVERSION ? MOAT_EVERSION : MOAT_EMALFORMED;
	return r.i == n ? 0 : MOAT_EMALFORMED;
}

int moat_rec_will_decode(const uint8_t *in, size_t n, struct moat_rec_will *out)
{
	struct rd r = { in, n, 0, false };
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = header(&r, 'W')) < 0)
		return rc;
	out->due_wall_ms = (int64_t)rn(&r, 8);
	if (r.bad || out->due_wall_ms <= 0)
		return MOAT_EMALFORMED;
	if ((rc = read_msg(&r, &out->msg)) < 0)
		return rc == MOAT_EVERSION ? MOAT_EVERSION : MOAT_EMALFORMED;
	return r.i == n ? 0 : MOAT_EMALFORMED;
}

/* A UTF-8 string with a u16 (wide) or u8 length. */
static bool read_str(struct rd *r, struct moat_rec_str *x, bool wide)
{
	x->n = (size_t)rn(r, wide ? 2 : 1);
	x->p = rbytes(r, x->n);
	return !r->bad && utf8_ok(x->p, x->n);
}

int moat_rec_device_decode(const uint8_t *in, size_t n, struct moat_rec_device *out)
{
	struct rd r = { in, n, 0, false };
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = header(&r, 'I')) < 0)
		return rc;
	out->first_seen = (int64_t)rn(&r, 8);
	out->last_seen = (int64_t)rn(&r, 8);
	out->last_disconnect = (int64_t)rn(&r, 8);
	out->connects = rn(&r, 8);
	out->versions = (uint8_t)rn(&r, 1);
	if (r.bad || out->versions & ~0x38 || !read_str(&r, &out->method, true) ||
	    !read_str(&r, &out->client_id, true) || out->client_id.n == 0 ||
	    !read_str(&r, &out->username, true) || !read_str(&r, &out->identity, true))
		return MOAT_EMALFORMED;
	out->naddrs = (uint8_t)rn(&r, 1);
	if (r.bad || out->naddrs > 4)
		return MOAT_EMALFORMED;
	for (int i = 0; i < out->naddrs; i++)
		if (!read_str(&r, &out->addrs[i], false))
			return MOAT_EMALFORMED;
	out->nprops = (uint8_t)rn(&r, 1);
	if (r.bad || out->nprops > 8)
		return MOAT_EMALFORMED;
	for (int i = 0; i < out->nprops; i++)
		if (!read_str(&r, &out->props[i], true) ||
		    !memchr(out->props[i].p, '=', out->props[i].n))
			return MOAT_EMALFORMED;
	return r.i == n ? 0 : MOAT_EMALFORMED;
}
