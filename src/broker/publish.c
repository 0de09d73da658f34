/*
 * publish.c - where a message goes: match it against the subscription
 * index, merge the overlapping subscriptions of each session into one
 * delivery (the highest QoS, every Subscription Identifier: MQTT 5.0
 * [MQTT-3.3.4-2], [MQTT-3.3.4-3]), then hand each delivery to the session's
 * home worker: directly if that is us, else through its inbox.
 *
 * This is the fan-out hot path. It allocates nothing per delivery in the
 * common case: targets collect in per-worker scratch arrays that only grow.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"
#include "core/log.h"
#include "core/vec.h"

struct match {
	struct moat_worker *w;
	const struct moat_msg *msg;
};

/* Runs under the index's read lock: record the target and take a session reference. */
static void on_match(void *arg, struct moat_session *s, uint8_t opts, uint32_t subid, bool shared)
{
	struct match *m = arg;
	struct moat_worker *w = m->w;
	struct target *t;

	if ((opts & MOAT_SUBOPT_NO_LOCAL) && s->id == m->msg->origin)
		return;
	if (!moat_grow((void **)&w->targets, &w->targetcap, w->ntargets + 1, sizeof(*w->targets)))
		return;
	session_ref(s);
	t = &w->targets[w->ntargets++];
	t->s = s;
	t->qos = MOAT_SUBOPT_QOS(opts);
	t->rap = opts & MOAT_SUBOPT_RETAIN_AS_PUBLISHED;
	t->nsubids = subid ? 1 : 0;
	t->subid0 = subid;
	t->subid_off = shared; /* marks shared targets until merge() reuses the field */
}

/* Index of the first target of the same session (non-shared), via an open-addressed table. */
static bool merge(struct moat_worker *w)
{
	size_t n = w->ntargets, cap = 1, i, out = 0;

	while (cap < 2 * n)
		cap *= 2;
	if (!moat_grow((void **)&w->dedup, &w->dedupcap, cap, sizeof(*w->dedup)))
		return false;
	memset(w->dedup, 0, cap * sizeof(*w->dedup));
	w->nsubids = 0;
	for (i = 0; i < n; i++) {
		struct target *t = &w->targets[i], **slot, *lead;
		size_t h;

		if (t->subid_off) { /* shared: never merged */
			t->subid_off = 0;
			w->targets[out++] = *t;
			continue;
		}
		h = ((uintptr_t)t->s >> 4) * 0x9E3779B97F4A7C15ull >> 20;
		for (slot = &w->dedup[h & (cap - 1)]; *slot && (*slot)->s != t->s;
		     slot = &w->dedup[(++h) & (cap - 1)])
			;
		if (!*slot) {
			w->targets[out] = *t;
			*slot = &w->targets[out++];
			continue;
		}
		lead = *slot;
		if (t->qos > lead->qos)
			lead->qos = t->qos;
		lead->rap |= t->rap;
		if (t->subid0) {
			/* Move the leader's identifiers to the scratch array, then append. */
			if (!moat_grow((void **)&w->subids, &w->subidcap, w->nsubids + lead->nsubids + 1,
				  sizeof(*w->subids)))
				return false;
			if (lead->nsubids == 1) {
				lead->subid_off = w->nsubids;
				w->subids[w->nsubids++] = lead->subid0;
			} else if (lead->nsubids > 1 && lead->subid_off + lead->nsubids != w->nsubids) {
				memmove(w->subids + w->nsubids, w->subids + lead->subid_off,
					lead->nsubids * sizeof(*w->subids));
				lead->subid_off = w->nsubids;
				w->nsubids += lead->nsubids;
			}
			if (lead->nsubids == 0)
				lead->subid0 = t->subid0;
			else
				w->subids[w->nsubids++] = t->subid0;
			lead->nsubids++;
		}
		session_unref(t->s); /* the leader holds one reference */
	}
	w->ntargets = out;
	return true;
}

static const uint32_t *subids_of(const struct moat_worker *w, const struct target *t)
{
	return t->nsubids > 1 ? w->subids + t->subid_off : &t->subid0;
}

static void deliver(struct moat_worker *w, struct moat_msg *msg, struct target *t)
{
	uint8_t qos = w->b->conf->upgrade_outgoing_qos ? t->qos : (t->qos < msg->qos ? t->qos : msg->qos);
	bool retain = t->rap && msg->retain;
	const uint32_t *ids = subids_of(w, t);
	struct item it = {.kind = IT_DELIVER, .qos = qos, .retain = retain, .nsubids = t->nsubids,
			  .subid = t->subid0, .s = t->s};

	/* a durable copy first, so an acknowledgement may wait for it (persist.c) */
	it.key = persist_delivery_first(w, t->s, qos, ids, t->nsubids, msg);
	if (t->s->home == w) {
		session_deliver(t->s, msg, qos, retain, ids, t->nsubids, it.key);
		session_unref(t->s);
		return;
	}
	if (t->nsubids > 1) {
		it.subids = malloc(t->nsubids * sizeof(*ids));
		if (!it.subids) {
			session_unref(t->s);
			return;
		}
		memcpy(it.subids, ids, t->nsubids * sizeof(*ids));
	}
	it.msg = moat_msg_ref(msg);
	worker_push(w, t->s->home, it);
}

size_t publish_message(struct moat_worker *w, struct moat_msg *msg)
{
	struct match m = {w, msg};
	size_t i, n;

	w->ntargets = 0;
	moat_subs_match(w->b->subs, moat_msg_topic(msg), msg->topic_len, on_match, &m);
	if (w->ntargets > 1 && !merge(w)) {
		for (i = 0; i < w->ntargets; i++)
			session_unref(w->targets[i].s);
		w->ntargets = 0;
		return 0;
	}
	n = w->ntargets;
	for (i = 0; i < n; i++)
		deliver(w, msg, &w->targets[i]);
	w->ntargets = 0;
	return n;
}

void publish_will(struct moat_worker *w, struct moat_msg *will)
{
	if (will->retain && w->b->conf->retain_available && moat_retain_set(w->b->retain, will) == 0)
		persist_retained(w, w->b, will);
	publish_message(w, will);
}
