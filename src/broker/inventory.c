/*
 * inventory.c - every device (client id) the broker has seen: when first and
 * last, from where, as whom, with which protocol versions, and what it says
 * of itself (MQTT 5 CONNECT user properties: model, firmware...). NIST CSF
 * ID.AM-1: know the devices.
 *
 * One table for the broker, behind a mutex: it changes at CONNECT and at
 * disconnect, never per message. Bounded (inventory_max): when full, the
 * device seen longest ago makes room (an LRU list, O(1) per change).
 *
 *   GET /v1/inventory[?limit=N][&online=1]     (moat ctl inventory)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "broker/internal.h"
#include "core/clock.h"
#include "core/map.h"
#include "core/vec.h"
#include "store/record.h"

#define ADDRS 4      /* the most recent distinct addresses kept */
#define PROPS 8      /* user properties kept */
#define PROP_MAX 128 /* bytes of "key=value" kept per property */

/*
 * About 200 bytes and the names a device has: a fleet of 100,000 costs some
 * 20 MB. Names are allocated as they come, most devices having few.
 */
struct device {
	struct device *prev, *next; /* most recently seen first */
	int64_t first_seen, last_seen, last_disconnect; /* wall s; last_disconnect 0: never */
	uint64_t connects;
	bool online;
	uint8_t versions;           /* bit v: protocol version v seen (3, 4, 5) */
	uint8_t nprops;
	const char *method;         /* static (auth_method_name) */
	char addrs[ADDRS][46];      /* INET6_ADDRSTRLEN */
	char *username;             /* NULL: none */
	char *identity;             /* certificate subject or PSK identity; NULL: none */
	char *props;                /* nprops "key=value" strings, one after the other */
	size_t id_len;
	char id[];
};

static void device_free(struct device *d)
{
	free(d->username);
	free(d->identity);
	free(d->props);
	free(d);
}

/* *slot = a copy of s (NULL for none or empty), if it changed. */
static void set_name(char **slot, const char *s)
{
	if (!s || !s[0]) {
		free(*slot);
		*slot = NULL;
	} else if (!*slot || strcmp(*slot, s) != 0) {
		char *copy = strdup(s);
		if (copy) {
			free(*slot);
			*slot = copy;
		}
	}
}

struct moat_inventory {
	pthread_mutex_t lock;
	struct moat_map map;        /* client id -> device */
	struct device *head, *tail;
	size_t max;
	uint64_t evicted;
	struct device **loaded;     /* read from the store at start, linked by inventory_loaded */
	size_t nloaded, loadcap;
};

/*
 * With persistence, each device is a row of the store's STATE table, keyed
 * 'd' | the name key of its client id, written when it connects and when it
 * goes, deleted when it is evicted: "every device ever seen" survives
 * restarts.
 */
#define DKEY_LEN (1 + MOAT_SEAL_NAME_KEY_LEN)

static bool dev_key(struct moat_broker *b, const char *id, size_t n, uint8_t key[DKEY_LEN])
{
	key[0] = 'd';
	return b->store && moat_store_name_key(b->store, "client", id, n, key + 1) == 0;
}

/* The device as a record (owned buffer in *out), under the inventory's lock. */
static size_t dev_record(const struct device *d, uint8_t **out)
{
	struct moat_rec_device r = {
		.first_seen = d->first_seen, .last_seen = d->last_seen,
		.last_disconnect = d->last_disconnect, .connects = d->connects,
		.versions = d->versions & 0x38,
		.method = { (const uint8_t *)d->method, d->method ? strlen(d->method) : 0 },
		.client_id = { (const uint8_t *)d->id, d->id_len },
		.username = { (const uint8_t *)d->username, d->username ? strlen(d->username) : 0 },
		.identity = { (const uint8_t *)d->identity, d->identity ? strlen(d->identity) : 0 },
	};
	const char *p = d->props;
	size_t n;

	for (int i = 0; i < ADDRS && d->addrs[i][0]; i++)
		r.addrs[r.naddrs++] = (struct moat_rec_str){ (const uint8_t *)d->addrs[i],
							     strlen(d->addrs[i]) };
	for (int i = 0; i < d->nprops; i++, p += strlen(p) + 1)
		if (strchr(p, '='))
			r.props[r.nprops++] = (struct moat_rec_str){ (const uint8_t *)p, strlen(p) };
	if (!(n = moat_rec_device_size(&r)) || !(*out = malloc(n)))
		return 0;
	moat_rec_device_encode(&r, *out);
	return n;
}

static void dev_save(struct moat_broker *b, const char *id, size_t idn, uint8_t *rec, size_t n)
{
	uint8_t key[DKEY_LEN];

	if (rec && dev_key(b, id, idn, key))
		moat_store_put(b->store, MOAT_STORE_STATE, key, sizeof(key), rec, n, NULL, NULL);
	free(rec);
}

static void dev_forget(struct moat_broker *b, const char *id, size_t idn)
{
	uint8_t key[DKEY_LEN];

	if (dev_key(b, id, idn, key))
		moat_store_del(b->store, MOAT_STORE_STATE, key, sizeof(key), NULL, NULL);
}

struct moat_inventory *inventory_new(size_t max)
{
	struct moat_inventory *inv = calloc(1, sizeof(*inv));

	if (!inv)
		return NULL;
	pthread_mutex_init(&inv->lock, NULL);
	moat_map_init(&inv->map, NULL);
	inv->max = max;
	return inv;
}

void inventory_free(struct moat_inventory *inv)
{
	struct device *d, *next;

	if (!inv)
		return;
	for (d = inv->head; d; d = next) {
		next = d->next;
		device_free(d);
	}
	for (size_t i = 0; i < inv->nloaded; i++)
		device_free(inv->loaded[i]);
	free(inv->loaded);
	moat_map_free(&inv->map);
	pthread_mutex_destroy(&inv->lock);
	free(inv);
}

static void unlink_dev(struct moat_inventory *inv, struct device *d)
{
	*(d->prev ? &d->prev->next : &inv->head) = d->next;
	*(d->next ? &d->next->prev : &inv->tail) = d->prev;
	d->prev = d->next = NULL;
}

static void push_front(struct moat_inventory *inv, struct device *d)
{
	d->next = inv->head;
	d->prev = NULL;
	*(inv->head ? &inv->head->prev : &inv->tail) = d;
	inv->head = d;
}

/*
 * The device of client id, made (evicting the least recent if full: it is
 * handed back in *evicted for the caller to forget and free); NULL if off
 * or out of memory.
 */
static struct device *get_dev(struct moat_inventory *inv, const char *id, size_t n, int64_t now,
			      struct device **evicted)
{
	struct device *d = moat_map_get(&inv->map, id, n);

	if (d) {
		unlink_dev(inv, d);
		push_front(inv, d);
		return d;
	}
	if (!inv->max)
		return NULL;
	if (inv->map.len >= inv->max && inv->tail) {
		struct device *old = inv->tail;
		unlink_dev(inv, old);
		moat_map_del(&inv->map, old->id, old->id_len);
		*evicted = old;
		inv->evicted++;
	}
	if (!(d = calloc(1, sizeof(*d) + n + 1)))
		return NULL;
	memcpy(d->id, id, n);
	d->id_len = n;
	d->first_seen = now;
	if (moat_map_put(&inv->map, d->id, n, d) < 0) {
		free(d);
		return NULL;
	}
	push_front(inv, d);
	return d;
}

static void note_addr(struct device *d, const char *host)
{
	int i;

	for (i = 0; i < ADDRS - 1 && strcmp(d->addrs[i], host) != 0; i++)
		;
	memmove(d->addrs[1], d->addrs[0], (size_t)i * sizeof(d->addrs[0]));
	snprintf(d->addrs[0], sizeof(d->addrs[0]), "%.45s", host);
}

/* At CONNECT accepted (the client's home worker). */
void inventory_connected(struct moat_broker *b, struct moat_conn *c,
			 const struct moat_mqtt_connect *cn)
{
	const struct moat_tls_info *ti = c->tr->ops->tls(c->tr);
	struct moat_session *s = c->session;
	struct device *d, *evicted = NULL;
	struct moat_mqtt_prop_iter it;
	struct moat_slice k, v;
	int64_t now = moat_wall_s();
	uint8_t *rec = NULL;
	size_t recn = 0;

	if (!b->inventory)
		return;
	pthread_mutex_lock(&b->inventory->lock);
	if ((d = get_dev(b->inventory, s->client_id, s->client_id_len, now, &evicted))) {
		d->last_seen = now;
		d->connects++;
		d->online = true;
		d->versions |= (uint8_t)(1u << (c->version & 7));
		note_addr(d, c->host);
		set_name(&d->username, c->username);
		set_name(&d->identity, ti && ti->subject[0] ? ti->subject :
				       ti && ti->psk_identity[0] ? ti->psk_identity : NULL);
		d->method = auth_method_name(c->proven);
		if (c->version == MOAT_MQTT_V5) {
			char buf[PROPS * PROP_MAX], *p = buf;
			uint8_t n = 0;
			moat_mqtt_props_iter(&cn->props, &it);
			while (n < PROPS && moat_mqtt_props_next_user(&it, &k, &v)) {
				int w = snprintf(p, PROP_MAX, "%.*s=%.*s", (int)k.len, (const char *)k.p,
						 (int)v.len, (const char *)v.p);
				p += (w < PROP_MAX ? w : PROP_MAX - 1) + 1;
				n++;
			}
			free(d->props);
			d->props = n ? malloc((size_t)(p - buf)) : NULL;
			if (d->props)
				memcpy(d->props, buf, (size_t)(p - buf));
			d->nprops = d->props ? n : 0;
		}
		if (b->store)
			recn = dev_record(d, &rec);
	}
	pthread_mutex_unlock(&b->inventory->lock);
	if (evicted) {
		dev_forget(b, evicted->id, evicted->id_len);
		device_free(evicted);
	}
	if (recn)
		dev_save(b, s->client_id, s->client_id_len, rec, recn);
}

/* When its connection ends. */
void inventory_disconnected(struct moat_broker *b, const char *client_id, size_t n)
{
	struct device *d;
	uint8_t *rec = NULL;
	size_t recn = 0;

	if (!b->inventory)
		return;
	pthread_mutex_lock(&b->inventory->lock);
	if ((d = moat_map_get(&b->inventory->map, client_id, n))) {
		d->online = false;
		d->last_seen = d->last_disconnect = moat_wall_s();
		if (b->store && !atomic_load(&b->stopping))
			recn = dev_record(d, &rec);
	}
	pthread_mutex_unlock(&b->inventory->lock);
	if (recn)
		dev_save(b, client_id, n, rec, recn);
}

/* ---- start-up: the devices kept in the store ---- */

/* One STATE row of a device: parked until inventory_loaded links them all. */
int inventory_load(struct moat_broker *b, const uint8_t *key, size_t kn, const uint8_t *v,
		   size_t vn)
{
	struct moat_inventory *inv = b->inventory;
	struct moat_rec_device r;
	struct device *d;
	char buf[PROPS * PROP_MAX];
	size_t used = 0;

	if (kn != DKEY_LEN || key[0] != 'd')
		return 1; /* not a device row */
	if (!inv || !inv->max)
		return 0;
	if (moat_rec_device_decode(v, vn, &r) < 0)
		return -1;
	if (!moat_grow((void **)&inv->loaded, &inv->loadcap, inv->nloaded + 1, sizeof(*inv->loaded)) ||
	    !(d = calloc(1, sizeof(*d) + r.client_id.n + 1)))
		return 0;
	memcpy(d->id, r.client_id.p, r.client_id.n);
	d->id_len = r.client_id.n;
	d->first_seen = r.first_seen;
	d->last_seen = r.last_seen;
	d->last_disconnect = r.last_disconnect;
	d->connects = r.connects;
	d->versions = r.versions;
	d->method = "-";
	for (const char *const *m = (const char *const[]){ "anonymous", "password", "certificate",
			"certificate+password", "psk", "scram-sha-256", "scram-sha-512", NULL };
	     *m; m++)
		if (strlen(*m) == r.method.n && memcmp(*m, r.method.p, r.method.n) == 0)
			d->method = *m;
	d->username = r.username.n ? strndup((const char *)r.username.p, r.username.n) : NULL;
	d->identity = r.identity.n ? strndup((const char *)r.identity.p, r.identity.n) : NULL;
	for (int i = 0; i < r.naddrs; i++)
		snprintf(d->addrs[i], sizeof(d->addrs[i]), "%.*s", (int)r.addrs[i].n,
			 (const char *)r.addrs[i].p);
	for (int i = 0; i < r.nprops && used + PROP_MAX <= sizeof(buf); i++) {
		int w = snprintf(buf + used, PROP_MAX, "%.*s", (int)r.props[i].n,
				 (const char *)r.props[i].p);
		used += (size_t)(w < PROP_MAX ? w : PROP_MAX - 1) + 1;
		d->nprops++;
	}
	if (used && (d->props = malloc(used)))
		memcpy(d->props, buf, used);
	else
		d->nprops = 0;
	inv->loaded[inv->nloaded++] = d;
	return 0;
}

static int by_last_seen(const void *a, const void *b)
{
	const struct device *x = *(struct device *const *)a, *y = *(struct device *const *)b;

	return x->last_seen < y->last_seen ? -1 : x->last_seen > y->last_seen;
}

/* Links the devices loaded, most recently seen first; those over inventory_max are dropped. */
size_t inventory_loaded(struct moat_broker *b)
{
	struct moat_inventory *inv = b->inventory;
	size_t n = 0;

	if (!inv || !inv->nloaded)
		return 0;
	qsort(inv->loaded, inv->nloaded, sizeof(*inv->loaded), by_last_seen);
	for (size_t i = 0; i < inv->nloaded; i++) {
		struct device *d = inv->loaded[i];
		if (inv->nloaded - i > inv->max || moat_map_get(&inv->map, d->id, d->id_len) ||
		    moat_map_put(&inv->map, d->id, d->id_len, d) < 0) {
			device_free(d);
			continue;
		}
		push_front(inv, d);
		n++;
	}
	free(inv->loaded);
	inv->loaded = NULL;
	inv->nloaded = inv->loadcap = 0;
	return n;
}

static void device_json(struct moat_json *o, const struct device *d)
{
	static const char *const names[8] = { [3] = "3.1", [4] = "3.1.1", [5] = "5.0" };

	moat_json_begin_object(o);
	moat_json_key(o, "client_id");
	moat_json_string_n(o, d->id, d->id_len);
	moat_json_kbool(o, "online", d->online);
	moat_json_kint(o, "first_seen", d->first_seen);
	moat_json_kint(o, "last_seen", d->last_seen);
	moat_json_kuint(o, "connects", d->connects);
	moat_json_key(o, "addresses");
	moat_json_begin_array(o);
	for (int i = 0; i < ADDRS && d->addrs[i][0]; i++)
		moat_json_string(o, d->addrs[i]);
	moat_json_end_array(o);
	moat_json_kstring(o, "username", d->username);
	moat_json_kstring(o, "identity", d->identity);
	moat_json_kstring(o, "auth_method", d->method);
	moat_json_key(o, "protocols");
	moat_json_begin_array(o);
	for (int v = 3; v <= 5; v++)
		if (d->versions & (1u << v))
			moat_json_string(o, names[v]);
	moat_json_end_array(o);
	moat_json_key(o, "software");
	moat_json_begin_object(o);
	const char *p = d->props;
	for (int i = 0; i < d->nprops; i++, p += strlen(p) + 1) {
		const char *eq = strchr(p, '=');
		char key[PROP_MAX];
		if (!eq) /* a key that filled the whole entry */
			continue;
		snprintf(key, sizeof(key), "%.*s", (int)(eq - p), p);
		moat_json_kstring(o, key, eq + 1);
	}
	moat_json_end_object(o);
	moat_json_end_object(o);
}

int admin_inventory(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;
	const char *limit = moat_admin_param(req, "limit"), *online = moat_admin_param(req, "online");
	size_t max = 100000, shown = 0, total = 0;

	if (limit) {
		char *end;
		long long n = strtoll(limit, &end, 10);
		if (*end || n < 0 || n > 10000000) {
			moat_json_begin_object(o);
			moat_json_kstring(o, "error", "limit: 0 to 10000000");
			moat_json_end_object(o);
			return 400;
		}
		max = (size_t)n;
	}
	moat_json_begin_object(o);
	moat_json_key(o, "devices");
	moat_json_begin_array(o);
	if (b->inventory) {
		pthread_mutex_lock(&b->inventory->lock);
		for (struct device *d = b->inventory->head; d; d = d->next) {
			if (online && strcmp(online, "1") == 0 && !d->online)
				continue;
			total++;
			if (shown < max) {
				device_json(o, d);
				shown++;
			}
		}
		moat_json_end_array(o);
		moat_json_kuint(o, "total", total);
		moat_json_kbool(o, "truncated", shown < total);
		moat_json_kuint(o, "capacity", b->inventory->max);
		moat_json_kuint(o, "evicted", b->inventory->evicted);
		pthread_mutex_unlock(&b->inventory->lock);
	} else {
		moat_json_end_array(o);
		moat_json_kuint(o, "total", 0);
		moat_json_kuint(o, "capacity", 0);
	}
	moat_json_end_object(o);
	return 200;
}
