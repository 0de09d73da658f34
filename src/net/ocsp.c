/*
 * ocsp.c - OCSP checks of client certificates on their own thread (see
 * ocsp.h), with OpenSSL's OCSP and HTTP client (libcrypto; <openssl/ssl.h>
 * stays in tls.c).
 *
 * Every question carries a nonce, every answer must be signed by a
 * responder the CA trusts (OCSP_basic_verify against cafile/capath), match
 * the nonce when it echoes one, and be current (thisUpdate/nextUpdate with
 * five minutes of leeway). Anything else is UNKNOWN: the listener's
 * ocsp_mode decides whether that lets the client in (soft) or not (hard).
 */
#include "net/ocsp.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "core/map.h"

#define HTTP_TIMEOUT_S 5
#define MAX_RESPONSE 102400
#define UNKNOWN_CACHE_MS 30000 /* a responder that failed is asked again after this */
#define LEEWAY_S 300

struct entry {
	uint64_t key;
	enum moat_ocsp_status status;
	int64_t expires_at; /* monotonic ms; 0 = never answered */
	bool asking;
};

struct job {
	struct job *next;
	uint64_t key;
	uint8_t *cert, *issuer;
	size_t cert_len, issuer_len;
	char *url;
};

struct moat_ocsp {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct job *head, *tail;
	struct moat_map cache; /* key (8 bytes) -> entry */
	X509_STORE *store;
	char *responder;
	uint32_t cache_seconds;
	moat_ocsp_done done;
	void *ctx;
};

const char *moat_ocsp_status_name(enum moat_ocsp_status s)
{
	static const char *const names[] = {"pending", "good", "revoked", "unknown"};
	return (unsigned)s < 4 ? names[s] : "?";
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->cert);
	free(j->issuer);
	free(j->url);
	free(j);
}

/* ---- asking a responder ---- */

static OCSP_RESPONSE *transfer(const char *url, OCSP_REQUEST *req)
{
	char *host = NULL, *port = NULL, *path = NULL;
	int ssl = 0;
	BIO *body = NULL, *answer = NULL;
	OCSP_RESPONSE *resp = NULL;

	if (!OSSL_HTTP_parse_url(url, &ssl, NULL, &host, &port, NULL, &path, NULL, NULL))
		goto done;
	if (ssl) {
		moat_log(MOAT_LOG_LVL_WARNING, "ocsp_failed reason=\"https responders are not supported\"");
		goto done;
	}
	body = ASN1_item_i2d_mem_bio(ASN1_ITEM_rptr(OCSP_REQUEST), (const ASN1_VALUE *)req);
	if (!body)
		goto done;
	answer = OSSL_HTTP_transfer(NULL, host, port, path, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0,
				    NULL, "application/ocsp-request", body,
				    "application/ocsp-response", 1, MAX_RESPONSE, HTTP_TIMEOUT_S, 0);
	if (answer)
		resp = d2i_OCSP_RESPONSE_bio(answer, NULL);
done:
	BIO_free(answer);
	BIO_free(body);
	OPENSSL_free(host);
	OPENSSL_free(port);
	OPENSSL_free(path);
	return resp;
}

/* Checks a response against the question; returns the status and the time it holds until. */
static enum moat_ocsp_status judge(struct moat_ocsp *o, OCSP_REQUEST *req, OCSP_RESPONSE *resp,
				   OCSP_CERTID *id, int64_t *valid_s)
{
	OCSP_BASICRESP *bs = NULL;
	ASN1_GENERALIZEDTIME *this_upd = NULL, *next_upd = NULL, *rev = NULL;
	enum moat_ocsp_status st = MOAT_OCSP_UNKNOWN;
	int status, reason;

	if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL ||
	    !(bs = OCSP_response_get1_basic(resp)))
		goto done;
	if (OCSP_check_nonce(req, bs) == 0 || OCSP_basic_verify(bs, NULL, o->store, 0) != 1)
		goto done;
	if (!OCSP_resp_find_status(bs, id, &status, &reason, &rev, &this_upd, &next_upd) ||
	    !OCSP_check_validity(this_upd, next_upd, LEEWAY_S, -1))
		goto done;
	st = status == V_OCSP_CERTSTATUS_GOOD	   ? MOAT_OCSP_GOOD
	     : status == V_OCSP_CERTSTATUS_REVOKED ? MOAT_OCSP_REVOKED
						   : MOAT_OCSP_UNKNOWN;
	*valid_s = -1;
	if (next_upd) {
		int days, secs;
		if (ASN1_TIME_diff(&days, &secs, NULL, next_upd))
			*valid_s = (int64_t)days * 86400 + secs;
	}
done:
	OCSP_BASICRESP_free(bs);
	return st;
}

static enum moat_ocsp_status ask(struct moat_ocsp *o, const struct job *j, int64_t *valid_s)
{
	const unsigned char *p;
	X509 *cert = NULL, *issuer = NULL;
	OCSP_CERTID *id = NULL;
	OCSP_REQUEST *req = NULL;
	OCSP_RESPONSE *resp = NULL;
	enum moat_ocsp_status st = MOAT_OCSP_UNKNOWN;
	const char *url = o->responder ? o->responder : j->url;

	p = j->cert;
	cert = d2i_X509(NULL, &p, (long)j->cert_len);
	p = j->issuer;
	issuer = d2i_X509(NULL, &p, (long)j->issuer_len);
	if (!url || !cert || !issuer || !(id = OCSP_cert_to_id(NULL, cert, issuer)))
		goto done;
	req = OCSP_REQUEST_new();
	if (!req || !OCSP_request_add0_id(req, OCSP_CERTID_dup(id)) ||
	    !OCSP_request_add1_nonce(req, NULL, -1))
		goto done;
	resp = transfer(url, req);
	if (resp)
		st = judge(o, req, resp, id, valid_s);
done:
	if (st == MOAT_OCSP_UNKNOWN) {
		char why[200] = "no responder";
		if (url)
			ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
		moat_log(MOAT_LOG_LVL_WARNING, "ocsp_unknown responder=%s reason=\"%s\"",
			 url ? url : "-", why);
	}
	ERR_clear_error();
	OCSP_RESPONSE_free(resp);
	OCSP_REQUEST_free(req);
	OCSP_CERTID_free(id);
	X509_free(cert);
	X509_free(issuer);
	return st;
}

/* ---- the thread ---- */

static void record(struct moat_ocsp *o, uint64_t key, enum moat_ocsp_status st, int64_t valid_s)
{
	struct entry *e;
	int64_t hold = (int64_t)o->cache_seconds * 1000;

	if (valid_s >= 0 && valid_s * 1000 < hold)
		hold = valid_s * 1000;
	if (st == MOAT_OCSP_UNKNOWN && hold > UNKNOWN_CACHE_MS)
		hold = UNKNOWN_CACHE_MS;
	pthread_mutex_lock(&o->lock);
	e = moat_map_get(&o->cache, &key, sizeof(key));
	if (e) {
		e->status = st;
		e->expires_at = moat_now_ms() + hold;
		e->asking = false;
	}
	pthread_mutex_unlock(&o->lock);
}

static void *run(void *arg)
{
	struct moat_ocsp *o = arg;

	for (;;) {
		struct job *j;
		enum moat_ocsp_status st;
		int64_t valid_s = -1;

		pthread_mutex_lock(&o->lock);
		while (!o->stop && !o->head)
			pthread_cond_wait(&o->cond, &o->lock);
		if (o->stop) {
			pthread_mutex_unlock(&o->lock);
			return NULL;
		}
		j = o->head;
		o->head = j->next;
		if (!o->head)
			o->tail = NULL;
		pthread_mutex_unlock(&o->lock);
		st = ask(o, j, &valid_s);
		record(o, j->key, st, valid_s);
		moat_log(MOAT_LOG_LVL_INFO, "ocsp_answer key=%016llx status=%s",
			 (unsigned long long)j->key, moat_ocsp_status_name(st));
		o->done(o->ctx, j->key, st);
		job_free(j);
	}
}

int moat_ocsp_new(const char *cafile, const char *capath, const char *responder,
		  uint32_t cache_seconds, moat_ocsp_done done, void *ctx, struct moat_ocsp **out,
		  char *err, size_t errlen)
{
	struct moat_ocsp *o = calloc(1, sizeof(*o));

	if (!o)
		return MOAT_ENOMEM;
	o->store = X509_STORE_new();
	if (!o->store || (!cafile && !capath) ||
	    X509_STORE_load_locations(o->store, cafile, capath) != 1 ||
	    (responder && !(o->responder = strdup(responder)))) {
		snprintf(err, errlen, "ocsp_mode needs cafile or capath to trust responders");
		ERR_clear_error();
		X509_STORE_free(o->store);
		free(o->responder);
		free(o);
		return MOAT_ECONFIG;
	}
	o->cache_seconds = cache_seconds;
	o->done = done;
	o->ctx = ctx;
	moat_map_init(&o->cache, NULL);
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cond, NULL);
	if (pthread_create(&o->thread, NULL, run, o) != 0) {
		moat_ocsp_free(o);
		snprintf(err, errlen, "cannot start the OCSP thread");
		return MOAT_EIO;
	}
	*out = o;
	return 0;
}

void moat_ocsp_free(struct moat_ocsp *o)
{
	size_t pos = 0;
	struct entry *e;

	if (!o)
		return;
	pthread_mutex_lock(&o->lock);
	o->stop = true;
	pthread_cond_signal(&o->cond);
	pthread_mutex_unlock(&o->lock);
	if (o->thread)
		pthread_join(o->thread, NULL);
	while (o->head) {
		struct job *j = o->head;
		o->head = j->next;
		job_free(j);
	}
	while ((e = moat_map_next(&o->cache, &pos, NULL, NULL)))
		free(e);
	moat_map_free(&o->cache);
	X509_STORE_free(o->store);
	free(o->responder);
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

static struct job *job_new(uint64_t key, const uint8_t *cert, size_t clen, const uint8_t *issuer,
			   size_t ilen, const char *url)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j || !(j->cert = malloc(clen)) || !(j->issuer = malloc(ilen)) ||
	    (url && !(j->url = strdup(url)))) {
		job_free(j);
		return NULL;
	}
	j->key = key;
	memcpy(j->cert, cert, clen);
	memcpy(j->issuer, issuer, ilen);
	j->cert_len = clen;
	j->issuer_len = ilen;
	return j;
}

enum moat_ocsp_status moat_ocsp_check(struct moat_ocsp *o, const uint8_t *cert, size_t cert_len,
				      const uint8_t *issuer, size_t issuer_len,
				      const char *aia_url, uint64_t *key)
{
	uint64_t k = moat_hash(cert, cert_len);
	enum moat_ocsp_status st = MOAT_OCSP_PENDING;
	struct entry *e;
	struct job *j = NULL;

	*key = k;
	pthread_mutex_lock(&o->lock);
	e = moat_map_get(&o->cache, &k, sizeof(k));
	if (e && e->expires_at && moat_now_ms() < e->expires_at) {
		st = e->status;
	} else if (!e || !e->asking) {
		if (!e && (e = calloc(1, sizeof(*e)))) {
			e->key = k;
			if (moat_map_put(&o->cache, &e->key, sizeof(e->key), e) < 0) {
				free(e);
				e = NULL;
			}
		}
		j = e ? job_new(k, cert, cert_len, issuer, issuer_len, aia_url) : NULL;
		if (j) {
			e->asking = true;
			if (o->tail)
				o->tail->next = j;
			else
				o->head = j;
			o->tail = j;
			pthread_cond_signal(&o->cond);
		} else {
			st = MOAT_OCSP_UNKNOWN;
		}
	}
	pthread_mutex_unlock(&o->lock);
	return st;
}
