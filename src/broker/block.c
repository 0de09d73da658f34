/*
 * block.c - topic filters an administrator blocked (NIST CSF RS.MI:
 * "block compromised channels"): a PUBLISH to a topic a blocked filter
 * matches is refused (MQTT 5: PUBACK/PUBREC 0x87 Not authorized; 3.1.1: the
 * message is dropped, as for an ACL denial), and a message already queued
 * for a subscriber on such a topic is not delivered.
 *
 *   GET    /v1/blocks
 *   POST   /v1/blocks?filter=F
 *   DELETE /v1/blocks?filter=F
 *
 * The list is short and changes rarely; it is read on every PUBLISH and
 * delivery only when it is not empty (one relaxed atomic load otherwise),
 * under a writer-first rwlock. Blocks last until lifted or moatd restarts.
 */
#include <stdio.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "broker/internal.h"
#include "core/error.h"
#include "core/rwlock.h"
#include "mqtt/topic.h"

#define MAX_BLOCKS 1024

struct moat_blocks {
	pthread_rwlock_t lock;
	atomic_size_t n;       /* read without the lock: 0 means nothing to check */
	char *filters[MAX_BLOCKS];
	size_t lens[MAX_BLOCKS];
};

struct moat_blocks *blocks_new(void)
{
	struct moat_blocks *bl = calloc(1, sizeof(*bl));

	if (bl)
		moat_rwlock_init(&bl->lock);
	return bl;
}

void blocks_free(struct moat_blocks *bl)
{
	if (!bl)
		return;
	for (size_t i = 0; i < atomic_load(&bl->n); i++)
		free(bl->filters[i]);
	pthread_rwlock_destroy(&bl->lock);
	free(bl);
}

bool blocks_hit(struct moat_blocks *bl, const uint8_t *topic, size_t n)
{
	bool hit = false;

	if (!bl || atomic_load_explicit(&bl->n, memory_order_relaxed) == 0)
		return false;
	pthread_rwlock_rdlock(&bl->lock);
	for (size_t i = 0; i < atomic_load(&bl->n) && !hit; i++)
		hit = moat_mqtt_topic_match((const uint8_t *)bl->filters[i], bl->lens[i], topic, n);
	pthread_rwlock_unlock(&bl->lock);
	return hit;
}

static ssize_t find(struct moat_blocks *bl, const char *f)
{
	for (size_t i = 0; i < atomic_load(&bl->n); i++)
		if (strcmp(bl->filters[i], f) == 0)
			return (ssize_t)i;
	return -1;
}

static int add(struct moat_blocks *bl, const char *f)
{
	size_t n = strlen(f);
	int rc = 0;

	struct moat_slice g, inner;

	if (moat_mqtt_topic_filter_check((const uint8_t *)f, n) < 0 ||
	    moat_mqtt_share_split((const uint8_t *)f, n, &g, &inner) != 0)
		return MOAT_EINVAL;
	pthread_rwlock_wrlock(&bl->lock);
	size_t k = atomic_load(&bl->n);
	if (find(bl, f) >= 0)
		rc = MOAT_EEXIST;
	else if (k >= MAX_BLOCKS)
		rc = MOAT_ENOMEM;
	else if (!(bl->filters[k] = strdup(f)))
		rc = MOAT_ENOMEM;
	else {
		bl->lens[k] = n;
		atomic_store(&bl->n, k + 1);
	}
	pthread_rwlock_unlock(&bl->lock);
	return rc;
}

static int del(struct moat_blocks *bl, const char *f)
{
	ssize_t i;
	int rc = 0;

	pthread_rwlock_wrlock(&bl->lock);
	if ((i = find(bl, f)) < 0) {
		rc = MOAT_ENOTFOUND;
	} else {
		size_t last = atomic_load(&bl->n) - 1;
		free(bl->filters[i]);
		bl->filters[i] = bl->filters[last];
		bl->lens[i] = bl->lens[last];
		atomic_store(&bl->n, last);
	}
	pthread_rwlock_unlock(&bl->lock);
	return rc;
}

static void event(const struct moat_admin_req *req, const char *what, const char *f, int rc)
{
	char reason[600];
	struct moat_sec_event e = { .kind = MOAT_SEC_ADMIN, .addr = req->who, .method = "admin",
				    .reason = reason, .topic = f };

	snprintf(reason, sizeof(reason), "%s %s: %s", what, f, rc == 0 ? "done" : moat_strerror(rc));
	moat_sec_emit(&e);
}

static int answer(struct moat_json *o, int status, const char *key, const char *value)
{
	moat_json_begin_object(o);
	moat_json_kstring(o, key, value);
	moat_json_end_object(o);
	return status;
}

int admin_blocks(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_blocks *bl = ((struct moat_broker *)ctx)->blocks;

	(void)req;
	moat_json_begin_object(o);
	moat_json_key(o, "blocked");
	moat_json_begin_array(o);
	pthread_rwlock_rdlock(&bl->lock);
	for (size_t i = 0; i < atomic_load(&bl->n); i++)
		moat_json_string(o, bl->filters[i]);
	pthread_rwlock_unlock(&bl->lock);
	moat_json_end_array(o);
	moat_json_end_object(o);
	return 200;
}

int admin_block(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_blocks *bl = ((struct moat_broker *)ctx)->blocks;
	const char *f = moat_admin_param(req, "filter");
	int rc;

	if (!f || !f[0])
		return answer(o, 400, "error", "filter: the topic filter to block");
	rc = add(bl, f);
	event(req, "block", f, rc);
	if (rc == MOAT_EINVAL)
		return answer(o, 400, "error", "not a valid topic filter ($share filters: block the "
					       "topic filter itself)");
	if (rc == MOAT_EEXIST)
		return answer(o, 409, "error", "already blocked");
	if (rc < 0)
		return answer(o, 507, "error", "too many blocked filters (1024)");
	return answer(o, 201, "blocked", f);
}

int admin_unblock(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_blocks *bl = ((struct moat_broker *)ctx)->blocks;
	const char *f = moat_admin_param(req, "filter");
	int rc;

	if (!f || !f[0])
		return answer(o, 400, "error", "filter: the blocked topic filter");
	rc = del(bl, f);
	event(req, "unblock", f, rc);
	if (rc < 0)
		return answer(o, 404, "error", "not blocked");
	return answer(o, 200, "unblocked", f);
}
