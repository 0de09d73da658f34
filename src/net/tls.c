/*
 * tls.c - TLS transports over OpenSSL 3 (see tls.h). The only file of moat
 * that includes <openssl/ssl.h>.
 *
 * Defaults are the modern ones: TLS 1.2 at least; for 1.2 only ECDHE key
 * exchange with AEAD ciphers; X25519, P-256, P-384; no compression, no
 * renegotiation, server cipher preference. A listener's context lives
 * behind a mutex-guarded pointer so a reload can swap it while workers
 * accept: every SSL object holds its own reference to the context it was
 * made from, so live connections are never disturbed.
 *
 * Writes: OpenSSL has no writev, and one SSL_write per MQTT packet would
 * cost a record and a system call each. The transport copies what it is
 * given into a 16 KiB staging buffer and writes that as one record. When the
 * socket is full, OpenSSL must be called again with the same bytes: the
 * staging buffer keeps them, writev reports them accepted, and flush()
 * finishes the record later.
 */
#include "net/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/hex.h"
#include "core/log.h"
#include "event/loop.h"

#define STAGE 16384
#define DEFAULT_CIPHERS                                                                        \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define PSK_CIPHERS                                                                            \
	"ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:"             \
	"PSK-CHACHA20-POLY1305"
#define DEFAULT_GROUPS "X25519:P-256:P-384"
#define MAX_PSK 64

struct psk {
	char *identity;
	uint8_t key[MAX_PSK];
	size_t len;
};

struct psk_table {
	struct psk *v;
	size_t n;
};

struct moat_tls_server {
	pthread_mutex_t lock;
	SSL_CTX *ctx;              /* current context; SSL objects hold their own reference */
	uint64_t key_update_bytes;
	uint32_t key_update_seconds;
};

struct moat_tls_client {
	SSL_CTX *ctx;
	char *servername;
	bool insecure;
	struct psk psk;
};

struct tls_tr {
	struct moat_transport base;
	SSL *ssl;
	struct moat_tls_server *server; /* NULL on the client side */
	struct moat_tls_client *client; /* NULL on the server side */
	bool want_write;                /* the last operation needs the socket writable */
	bool want_read;                 /* the last operation waits for the peer to send */
	bool failed;
	bool handshaken;
	uint8_t stage[STAGE];
	size_t stage_len;               /* > 0: a record to finish with the same bytes */
	uint64_t written;               /* since the last KeyUpdate */
	int64_t keyed_at;
	struct moat_tls_info info;
};

static _Thread_local char last_error[256];
static atomic_uint_fast64_t handshakes_ok, handshakes_failed; /* server side */

void moat_tls_handshake_counts(uint64_t *ok, uint64_t *failed)
{
	*ok = atomic_load_explicit(&handshakes_ok, memory_order_relaxed);
	*failed = atomic_load_explicit(&handshakes_failed, memory_order_relaxed);
}

const char *moat_tls_last_error(void)
{
	return last_error;
}

/* Moves OpenSSL's error queue into last_error (the queue is per thread and must be emptied). */
static void take_errors(const char *what)
{
	unsigned long e;
	size_t n = (size_t)snprintf(last_error, sizeof(last_error), "%s", what);

	while ((e = ERR_get_error()) != 0) {
		if (n + 3 < sizeof(last_error)) {
			char buf[200];
			ERR_error_string_n(e, buf, sizeof(buf));
			n += (size_t)snprintf(last_error + n, sizeof(last_error) - n, ": %s", buf);
		}
	}
}

/* ---- the PSK table (psk_file: "identity:hexkey" lines, as Mosquitto's) ---- */

/* Decodes hex into key[MAX_PSK]. Returns the length, or -1. */
static int unhex(const char *hex, uint8_t *key)
{
	size_t n = strlen(hex), i;

	if (n == 0 || n % 2 || n / 2 > MAX_PSK)
		return -1;
	for (i = 0; i < n / 2; i++) {
		int hi = moat_hex_digit((unsigned char)hex[2 * i]),
		    lo = moat_hex_digit((unsigned char)hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return (int)(n / 2);
}

static void psk_free(struct psk_table *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->n; i++) {
		OPENSSL_cleanse(t->v[i].key, sizeof(t->v[i].key));
		free(t->v[i].identity);
	}
	free(t->v);
	free(t);
}

static int psk_line(struct psk_table *t, char *line, const char *path, int lineno, char *err,
		    size_t errlen)
{
	char *colon = strchr(line, ':'), *end = line + strlen(line);
	struct psk *nv;
	int len;

	while (end > line && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		*--end = 0;
	if (!*line || *line == '#')
		return 0;
	if (!colon || colon == line) {
		snprintf(err, errlen, "%s:%d: expected identity:hexkey", path, lineno);
		return MOAT_ECONFIG;
	}
	*colon = 0;
	nv = realloc(t->v, (t->n + 1) * sizeof(*nv));
	if (!nv)
		return MOAT_ENOMEM;
	t->v = nv;
	len = unhex(colon + 1, nv[t->n].key);
	if (len < 0) {
		snprintf(err, errlen, "%s:%d: the key is not hex of 1..%d bytes", path, lineno, MAX_PSK);
		return MOAT_ECONFIG;
	}
	nv[t->n].len = (size_t)len;
	if (!(nv[t->n].identity = strdup(line)))
		return MOAT_ENOMEM;
	t->n++;
	return 0;
}

/* Reads psk_file. Returns 0 and *out (freed by psk_free), or fails closed with err. */
static int psk_load(const char *path, struct psk_table **out, char *err, size_t errlen)
{
	struct psk_table *t = calloc(1, sizeof(*t));
	FILE *f = fopen(path, "r");
	char line[1024];
	int lineno = 0, rc = 0;

	if (!t || !f) {
		snprintf(err, errlen, "psk_file %s: %s", path, strerror(errno));
		rc = MOAT_EIO;
		goto done;
	}
	while (rc == 0 && fgets(line, sizeof(line), f))
		rc = psk_line(t, line, path, ++lineno, err, errlen);
	if (rc == 0 && t->n == 0) {
		/* An empty PSK file must fail closed (CVE-2018-12551's class). */
		snprintf(err, errlen, "psk_file %s: no identity:key lines", path);
		rc = MOAT_ECONFIG;
	}
done:
	if (f)
		fclose(f);
	if (rc < 0) {
		psk_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

static int psk_index = -1; /* SSL_CTX ex_data slot of the PSK table */
static pthread_once_t psk_once = PTHREAD_ONCE_INIT;

static void psk_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			 void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	psk_free(ptr);
}

static void psk_index_init(void)
{
	psk_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, psk_ctx_free);
}

/*
 * TLS 1.2 PSK, and TLS 1.3 external PSK through OpenSSL's compatibility
 * path (SHA-256 suites). Returns the key length, 0 for an unknown identity.
 */
static void note_psk_identity(SSL *ssl, const char *identity);

static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk,
				  unsigned int max_len)
{
	struct psk_table *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), psk_index);
	size_t i;

	if (!t || !identity)
		return 0;
	for (i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].identity, identity) == 0 && t->v[i].len <= max_len) {
			memcpy(psk, t->v[i].key, t->v[i].len);
			note_psk_identity(ssl, identity);
			return (unsigned int)t->v[i].len;
		}
	}
	return 0;
}

/* ---- server contexts ---- */

static int fail_ctx(SSL_CTX *ctx, char *err, size_t errlen, const char *what, const char *file)
{
	char msg[300];

	snprintf(msg, sizeof(msg), "%s%s%s", what, file ? " " : "", file ? file : "");
	take_errors(msg);
	snprintf(err, errlen, "%s", last_error);
	SSL_CTX_free(ctx);
	return MOAT_ECONFIG;
}

static int load_crl(SSL_CTX *ctx, const char *path)
{
	X509_STORE *st = SSL_CTX_get_cert_store(ctx);
	X509_LOOKUP *lu = X509_STORE_add_lookup(st, X509_LOOKUP_file());

	if (!lu || X509_load_crl_file(lu, path, X509_FILETYPE_PEM) <= 0)
		return -1;
	X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	return 0;
}

static int load_dh(SSL_CTX *ctx, const char *path)
{
	BIO *bio = BIO_new_file(path, "r");
	EVP_PKEY *dh = bio ? PEM_read_bio_Parameters(bio, NULL) : NULL;

	BIO_free(bio);
	if (!dh || SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
		EVP_PKEY_free(dh);
		return -1;
	}
	return 0;
}

static int set_protocol(SSL_CTX *ctx, const struct moat_listener_conf *lc, bool psk)
{
	char ciphers[512];

	SSL_CTX_set_min_proto_version(ctx, lc->tls_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (!lc->tls_session_tickets) {
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	}
	/* PSK suites first: a client offering them wants PSK (certificate clients never do). */
	if (lc->ciphers)
		snprintf(ciphers, sizeof(ciphers), "%s", lc->ciphers);
	else
		snprintf(ciphers, sizeof(ciphers), "%s%s%s", psk ? PSK_CIPHERS : "", psk ? ":" : "",
			 DEFAULT_CIPHERS);
	if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
		return -1;
	if (lc->ciphers_tls13 && SSL_CTX_set_ciphersuites(ctx, lc->ciphers_tls13) != 1)
		return -1;
	return SSL_CTX_set1_groups_list(ctx, lc->tls_curves ? lc->tls_curves : DEFAULT_GROUPS) == 1
		       ? 0
		       : -1;
}

static int set_identity(SSL_CTX *ctx, const struct moat_listener_conf *lc, char *err,
			size_t errlen)
{
	static const unsigned char sid[] = "moat";

	if (lc->certfile && SSL_CTX_use_certificate_chain_file(ctx, lc->certfile) != 1)
		return fail_ctx(ctx, err, errlen, "certfile", lc->certfile);
	if (lc->certfile && SSL_CTX_use_PrivateKey_file(ctx, lc->keyfile ? lc->keyfile : lc->certfile,
							SSL_FILETYPE_PEM) != 1)
		return fail_ctx(ctx, err, errlen, "keyfile", lc->keyfile);
	if (lc->certfile && SSL_CTX_check_private_key(ctx) != 1)
		return fail_ctx(ctx, err, errlen, "keyfile does not match certfile", lc->keyfile);
	if ((lc->cafile || lc->capath) &&
	    SSL_CTX_load_verify_locations(ctx, lc->cafile, lc->capath) != 1)
		return fail_ctx(ctx, err, errlen, "cafile/capath", lc->cafile ? lc->cafile : lc->capath);
	if (lc->crlfile && load_crl(ctx, lc->crlfile) < 0)
		return fail_ctx(ctx, err, errlen, "crlfile", lc->crlfile);
	if (lc->dhparamfile && load_dh(ctx, lc->dhparamfile) < 0)
		return fail_ctx(ctx, err, errlen, "dhparamfile", lc->dhparamfile);
	SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	if (lc->require_certificate)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	else if (lc->cafile || lc->capath)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL); /* a certificate is optional */
	return 0;
}

static int set_psk(SSL_CTX *ctx, const struct moat_listener_conf *lc, char *err, size_t errlen)
{
	struct psk_table *t;
	int rc;

	if (!lc->psk_file)
		return 0;
	pthread_once(&psk_once, psk_index_init);
	rc = psk_load(lc->psk_file, &t, err, errlen);
	if (rc < 0) {
		SSL_CTX_free(ctx);
		return rc;
	}
	SSL_CTX_set_ex_data(ctx, psk_index, t);
	SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
	if (lc->psk_hint && SSL_CTX_use_psk_identity_hint(ctx, lc->psk_hint) != 1)
		return fail_ctx(ctx, err, errlen, "psk_hint", NULL);
	return 0;
}

/* Makes a context from lc. Returns 0 and *out, or a code with err. */
static int make_ctx(const struct moat_listener_conf *lc, SSL_CTX **out, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int rc;

	ERR_clear_error();
	if (!ctx)
		return fail_ctx(ctx, err, errlen, "cannot make a TLS context", NULL);
	if (set_protocol(ctx, lc, lc->psk_file != NULL) < 0)
		return fail_ctx(ctx, err, errlen, "ciphers, ciphers_tls1.3 or tls_curves", NULL);
	if ((rc = set_identity(ctx, lc, err, errlen)) < 0)
		return rc;
	if ((rc = set_psk(ctx, lc, err, errlen)) < 0)
		return rc;
	*out = ctx;
	return 0;
}

int moat_tls_server_new(const struct moat_listener_conf *lc, struct moat_tls_server **out,
			char *err, size_t errlen)
{
	struct moat_tls_server *s;
	SSL_CTX *ctx;
	int rc;

	if (!lc->certfile && !lc->psk_file) {
		snprintf(err, errlen, "a TLS listener needs certfile (or psk_file)");
		return MOAT_ECONFIG;
	}
	if (lc->certfile && !lc->keyfile) {
		snprintf(err, errlen, "certfile %s needs a keyfile", lc->certfile);
		return MOAT_ECONFIG;
	}
	rc = make_ctx(lc, &ctx, err, errlen);
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s) {
		SSL_CTX_free(ctx);
		return MOAT_ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->ctx = ctx;
	s->key_update_bytes = lc->tls_key_update_bytes;
	s->key_update_seconds = lc->tls_key_update_seconds;
	*out = s;
	return 0;
}

int moat_tls_server_reload(struct moat_tls_server *s, const struct moat_listener_conf *lc,
			   char *err, size_t errlen)
{
	SSL_CTX *ctx, *old;
	int rc = make_ctx(lc, &ctx, err, errlen);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&s->lock);
	old = s->ctx;
	s->ctx = ctx;
	pthread_mutex_unlock(&s->lock);
	SSL_CTX_free(old); /* live SSL objects keep their own references */
	return 0;
}

void moat_tls_server_free(struct moat_tls_server *s)
{
	if (!s)
		return;
	SSL_CTX_free(s->ctx);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* The current context with a reference taken (release with SSL_CTX_free). */
static SSL_CTX *current_ctx(struct moat_tls_server *s)
{
	SSL_CTX *ctx;

	pthread_mutex_lock(&s->lock);
	ctx = s->ctx;
	SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&s->lock);
	return ctx;
}

/* ---- the transport ---- */

static struct tls_tr *tr_of(struct moat_transport *t)
{
	return (struct tls_tr *)t;
}

/*
 * Keeps the identity of a PSK handshake: OpenSSL 3.0 does not report it for
 * TLS 1.3 (SSL_get_psk_identity returns NULL there). Such a session gets no
 * ticket, since a resumption would not come through this callback again.
 */
static void note_psk_identity(SSL *ssl, const char *identity)
{
	struct tls_tr *t = SSL_get_app_data(ssl);

	if (!t)
		return;
	snprintf(t->info.psk_identity, sizeof(t->info.psk_identity), "%s", identity);
	SSL_set_num_tickets(ssl, 0);
}

/* The first email, DNS or URI subjectAltName of x into out, or "". */
static void first_san(X509 *x, char *out, size_t cap)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int i;

	out[0] = 0;
	for (i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		const ASN1_IA5STRING *s = g->type == GEN_EMAIL ? g->d.rfc822Name
					  : g->type == GEN_DNS  ? g->d.dNSName
					  : g->type == GEN_URI  ? g->d.uniformResourceIdentifier
								: NULL;
		if (s && (size_t)s->length < cap && !memchr(s->data, 0, (size_t)s->length)) {
			memcpy(out, s->data, (size_t)s->length);
			out[s->length] = 0;
			break;
		}
	}
	GENERAL_NAMES_free(names);
}

static void fill_info(struct tls_tr *t)
{
	X509 *peer = SSL_get0_peer_certificate(t->ssl);
	const char *psk = SSL_get_psk_identity(t->ssl);

	t->info.version = SSL_get_version(t->ssl);
	t->info.cipher = SSL_get_cipher_name(t->ssl);
	t->info.peer_verified = peer && SSL_get_verify_result(t->ssl) == X509_V_OK;
	if (peer && t->info.peer_verified) {
		X509_NAME *name = X509_get_subject_name(peer);
		BIO *b = BIO_new(BIO_s_mem());
		if (b && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
			int n = BIO_read(b, t->info.subject, sizeof(t->info.subject) - 1);
			t->info.subject[n > 0 ? n : 0] = 0;
		}
		BIO_free(b);
		X509_NAME_get_text_by_NID(name, NID_commonName, t->info.cn, sizeof(t->info.cn));
		first_san(peer, t->info.san, sizeof(t->info.san));
	}
	if (psk && !t->info.psk_identity[0])
		snprintf(t->info.psk_identity, sizeof(t->info.psk_identity), "%s", psk);
	t->handshaken = true;
	t->keyed_at = moat_now_ms();
	if (t->server)
		atomic_fetch_add_explicit(&handshakes_ok, 1, memory_order_relaxed);
}

/* Maps a failed SSL call to a transport result. */
static int ssl_result(struct tls_tr *t, int r, const char *what)
{
	int e = SSL_get_error(t->ssl, r);

	t->want_write = false;
	t->want_read = false;
	switch (e) {
	case SSL_ERROR_WANT_READ:
		t->want_read = true;
		return MOAT_EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		t->want_write = true;
		return MOAT_EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == EAGAIN || errno == EINTR) {
			ERR_clear_error();
			return MOAT_EAGAIN;
		}
		break;
	default:
		break;
	}
	t->failed = true;
	take_errors(what);
	if (!t->handshaken && SSL_get_verify_result(t->ssl) != X509_V_OK) {
		snprintf(last_error, sizeof(last_error), "%s: certificate: %s", what,
			 X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
		return MOAT_EDENIED;
	}
	return e == SSL_ERROR_SYSCALL ? MOAT_EIO : MOAT_EPROTOCOL;
}

static ssize_t tls_read(struct moat_transport *base, void *buf, size_t n)
{
	struct tls_tr *t = tr_of(base);
	int r;

	last_error[0] = 0;
	if (t->failed)
		return MOAT_EIO;
	ERR_clear_error();
	r = SSL_read(t->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
	if (!t->handshaken && SSL_is_init_finished(t->ssl))
		fill_info(t);
	if (r > 0) {
		t->want_write = t->want_read = false;
		return r;
	}
	return ssl_result(t, r, "TLS read");
}

/* Finishes the staged record. 0 when done, MOAT_EAGAIN, or an error. */
static int finish_stage(struct tls_tr *t)
{
	int r;

	if (!t->stage_len)
		return 0;
	ERR_clear_error();
	r = SSL_write(t->ssl, t->stage, (int)t->stage_len);
	if (r <= 0)
		return ssl_result(t, r, "TLS write");
	t->written += t->stage_len;
	t->stage_len = 0;
	t->want_write = t->want_read = false;
	return 0;
}

/* TLS 1.3 KeyUpdate after the configured bytes or seconds (seeds/002: renew session keys). */
static void maybe_update_keys(struct tls_tr *t)
{
	const struct moat_tls_server *s = t->server;

	if (!s || !t->handshaken || SSL_version(t->ssl) < TLS1_3_VERSION)
		return;
	if ((s->key_update_bytes && t->written >= s->key_update_bytes) ||
	    (s->key_update_seconds &&
	     moat_now_ms() - t->keyed_at >= (int64_t)s->key_update_seconds * 1000)) {
		if (SSL_key_update(t->ssl, SSL_KEY_UPDATE_REQUESTED) == 1) {
			t->written = 0;
			t->keyed_at = moat_now_ms();
		}
	}
}

static ssize_t tls_writev(struct moat_transport *base, const struct iovec *iov, int n)
{
	struct tls_tr *t = tr_of(base);
	size_t len = 0;
	int i, rc;

	if (t->failed)
		return MOAT_EIO;
	rc = finish_stage(t);
	if (rc < 0)
		return rc;
	for (i = 0; i < n && len < STAGE; i++) {
		size_t take = iov[i].iov_len < STAGE - len ? iov[i].iov_len : STAGE - len;
		memcpy(t->stage + len, iov[i].iov_base, take);
		len += take;
	}
	if (!len)
		return 0;
	maybe_update_keys(t);
	t->stage_len = len;
	rc = finish_stage(t);
	if (!t->handshaken && SSL_is_init_finished(t->ssl))
		fill_info(t);
	/* The staged bytes are ours now: accepted even if the record waits for the socket. */
	return rc < 0 && rc != MOAT_EAGAIN ? rc : (ssize_t)len;
}

static int tls_flush(struct moat_transport *base)
{
	struct tls_tr *t = tr_of(base);

	if (t->failed)
		return MOAT_EIO;
	if (t->stage_len)
		return finish_stage(t);
	if (!SSL_is_init_finished(t->ssl)) {
		int r;
		ERR_clear_error();
		r = SSL_do_handshake(t->ssl);
		if (r == 1) {
			fill_info(t);
			return 0;
		}
		return ssl_result(t, r, "TLS handshake");
	}
	return 0;
}

static unsigned tls_want(const struct moat_transport *base, bool have_output)
{
	const struct tls_tr *t = (const struct tls_tr *)base;

	/* Output waits while the handshake waits for the peer: asking to write would spin. */
	bool output = (have_output || t->stage_len) && !(t->want_read && !t->handshaken);

	return MOAT_EV_READ | (output || t->want_write ? MOAT_EV_WRITE : 0);
}

static bool tls_buffered(const struct moat_transport *base)
{
	const struct tls_tr *t = (const struct tls_tr *)base;

	return SSL_pending(t->ssl) > 0;
}

static bool tls_ready(const struct moat_transport *base)
{
	return ((const struct tls_tr *)base)->handshaken;
}

static const struct moat_tls_info *tls_info(const struct moat_transport *base)
{
	const struct tls_tr *t = (const struct tls_tr *)base;

	return t->handshaken ? &t->info : NULL;
}

static int tls_export(struct moat_transport *base, uint8_t *out, size_t n, const char *label,
		      const uint8_t *context, size_t context_len)
{
	struct tls_tr *t = tr_of(base);

	if (!t->handshaken ||
	    SSL_export_keying_material(t->ssl, out, n, label, strlen(label), context, context_len,
				       context != NULL) != 1) {
		ERR_clear_error();
		return MOAT_EINVAL;
	}
	return 0;
}

static void tls_free(struct moat_transport *base)
{
	struct tls_tr *t = tr_of(base);

	if (t->handshaken && !t->failed) {
		SSL_shutdown(t->ssl); /* close_notify, best effort: the socket is non-blocking */
	}
	if (t->server && !t->handshaken)
		atomic_fetch_add_explicit(&handshakes_failed, 1, memory_order_relaxed);
	ERR_clear_error();
	SSL_free(t->ssl);
	close(t->base.fd);
	OPENSSL_cleanse(t->stage, sizeof(t->stage));
	free(t);
}

static const struct moat_transport_ops tls_ops = {
	.name = "tls",
	.read = tls_read,
	.writev = tls_writev,
	.flush = tls_flush,
	.want = tls_want,
	.has_buffered = tls_buffered,
	.ready = tls_ready,
	.tls = tls_info,
	.export_keys = tls_export,
	.free = tls_free,
};

static struct moat_transport *wrap(SSL_CTX *ctx, int fd, bool server)
{
	struct tls_tr *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->base.ops = &tls_ops;
	t->base.fd = fd;
	t->ssl = SSL_new(ctx);
	if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
		ERR_clear_error();
		SSL_free(t->ssl);
		free(t);
		return NULL;
	}
	SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
	SSL_set_app_data(t->ssl, t);
	if (server)
		SSL_set_accept_state(t->ssl);
	else
		SSL_set_connect_state(t->ssl);
	return &t->base;
}

struct moat_transport *moat_tls_accept(struct moat_tls_server *s, int fd)
{
	SSL_CTX *ctx = current_ctx(s);
	struct moat_transport *t = wrap(ctx, fd, true);

	SSL_CTX_free(ctx); /* the SSL object holds its own reference */
	if (t)
		tr_of(t)->server = s;
	return t;
}

int moat_tls_recheck(struct moat_tls_server *s, struct moat_transport *base)
{
	struct tls_tr *t = tr_of(base);
	X509 *peer = SSL_get0_peer_certificate(t->ssl);
	SSL_CTX *ctx;
	X509_STORE_CTX *xs;
	int ok = 1, err = X509_V_OK;

	if (!peer || base->ops != &tls_ops)
		return 0;
	ctx = current_ctx(s);
	xs = X509_STORE_CTX_new();
	if (xs && X509_STORE_CTX_init(xs, SSL_CTX_get_cert_store(ctx), peer,
				      SSL_get_peer_cert_chain(t->ssl)) == 1) {
		X509_STORE_CTX_set_purpose(xs, X509_PURPOSE_SSL_CLIENT);
		ok = X509_verify_cert(xs);
		err = X509_STORE_CTX_get_error(xs);
	}
	X509_STORE_CTX_free(xs);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	/* Only revocation ends a live session; other changes (an expired CRL) are logged. */
	if (ok != 1 && err == X509_V_ERR_CERT_REVOKED)
		return MOAT_EDENIED;
	if (ok != 1)
		moat_log(MOAT_LOG_LVL_WARNING, "tls_recheck_failed reason=\"%s\"",
			 X509_verify_cert_error_string(err));
	return 0;
}

static int to_der(X509 *x, uint8_t **out, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);

	if (n <= 0)
		return -1;
	*out = malloc((size_t)n);
	if (!*out) {
		OPENSSL_free(der);
		return -1;
	}
	memcpy(*out, der, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(der);
	return 0;
}

int moat_tls_peer_der(struct moat_transport *base, uint8_t **cert, size_t *cert_len,
		      uint8_t **issuer, size_t *issuer_len, char **ocsp_url)
{
	struct tls_tr *t = tr_of(base);
	STACK_OF(X509) *chain;
	STACK_OF(OPENSSL_STRING) *urls;

	if (base->ops != &tls_ops || !(chain = SSL_get0_verified_chain(t->ssl)) ||
	    sk_X509_num(chain) < 2)
		return MOAT_ENOTFOUND;
	*cert = *issuer = NULL;
	if (to_der(sk_X509_value(chain, 0), cert, cert_len) < 0 ||
	    to_der(sk_X509_value(chain, 1), issuer, issuer_len) < 0) {
		free(*cert);
		free(*issuer);
		return MOAT_ENOMEM;
	}
	*ocsp_url = NULL;
	urls = X509_get1_ocsp(sk_X509_value(chain, 0));
	if (urls && sk_OPENSSL_STRING_num(urls) > 0)
		*ocsp_url = strdup(sk_OPENSSL_STRING_value(urls, 0));
	X509_email_free(urls);
	return 0;
}

/* ---- clients ---- */

static unsigned int psk_client_cb(SSL *ssl, const char *hint, char *identity,
				  unsigned int max_identity, unsigned char *psk,
				  unsigned int max_psk)
{
	struct tls_tr *t = SSL_get_app_data(ssl);
	struct moat_tls_client *c = t ? t->client : NULL;

	(void)hint;
	if (!c || strlen(c->psk.identity) + 1 > max_identity || c->psk.len > max_psk)
		return 0;
	strcpy(identity, c->psk.identity);
	memcpy(psk, c->psk.key, c->psk.len);
	return (unsigned int)c->psk.len;
}

static int client_ctx(const struct moat_tls_client_opts *o, struct moat_tls_client *c, char *err,
		      size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		return fail_ctx(ctx, err, errlen, "cannot make a TLS context", NULL);
	c->ctx = ctx;
	SSL_CTX_set_min_proto_version(ctx, o->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	if (o->max_version)
		SSL_CTX_set_max_proto_version(ctx, o->max_version == 13 ? TLS1_3_VERSION
									: TLS1_2_VERSION);
	if (o->ciphers && SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1)
		goto fail;
	if (o->psk_hex) {
		int len = unhex(o->psk_hex, c->psk.key);
		if (len < 0 || !o->psk_identity) {
			snprintf(err, errlen, "--psk must be hex of 1..%d bytes, with --psk-identity",
				 MAX_PSK);
			return MOAT_EINVAL;
		}
		c->psk.len = (size_t)len;
		c->psk.identity = strdup(o->psk_identity);
		if (!o->ciphers)
			SSL_CTX_set_cipher_list(ctx, PSK_CIPHERS);
		SSL_CTX_set_psk_client_callback(ctx, psk_client_cb);
		return 0;
	}
	if ((o->cafile || o->capath) ? SSL_CTX_load_verify_locations(ctx, o->cafile, o->capath) != 1
				     : SSL_CTX_set_default_verify_paths(ctx) != 1)
		goto fail;
	if (o->certfile && (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1 ||
			    SSL_CTX_use_PrivateKey_file(ctx, o->keyfile ? o->keyfile : o->certfile,
							SSL_FILETYPE_PEM) != 1))
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return 0;
fail:
	take_errors("TLS client setup");
	snprintf(err, errlen, "%s", last_error);
	return MOAT_ECONFIG;
}

int moat_tls_client_new(const struct moat_tls_client_opts *o, struct moat_tls_client **out,
			char *err, size_t errlen)
{
	struct moat_tls_client *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return MOAT_ENOMEM;
	c->insecure = o->insecure;
	if (o->servername && !(c->servername = strdup(o->servername))) {
		moat_tls_client_free(c);
		return MOAT_ENOMEM;
	}
	rc = client_ctx(o, c, err, errlen);
	if (rc < 0) {
		moat_tls_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void moat_tls_client_free(struct moat_tls_client *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->ctx);
	OPENSSL_cleanse(c->psk.key, sizeof(c->psk.key));
	free(c->psk.identity);
	free(c->servername);
	free(c);
}

struct moat_transport *moat_tls_connect(struct moat_tls_client *c, int fd)
{
	struct moat_transport *t = wrap(c->ctx, fd, false);
	SSL *ssl;

	if (!t)
		return NULL;
	ssl = tr_of(t)->ssl;
	tr_of(t)->client = c;
	if (c->servername) {
		SSL_set_tlsext_host_name(ssl, c->servername);
		if (!c->insecure && !c->psk.len)
			SSL_set1_host(ssl, c->servername);
	}
	return t;
}

/* ---- what the inventory reports (admin API) ---- */

const char *moat_tls_library(void)
{
	return OpenSSL_version(OPENSSL_VERSION);
}

int moat_tls_server_offer(struct moat_tls_server *s, const char **min_version, char *out,
			  size_t cap)
{
	STACK_OF(SSL_CIPHER) *ciphers;
	size_t len = 0;
	int n = 0, v;

	out[0] = 0;
	pthread_mutex_lock(&s->lock);
	SSL *ssl = SSL_new(s->ctx); /* the suites a handshake would offer, TLS 1.3 ones too */
	pthread_mutex_unlock(&s->lock);
	if (!ssl)
		return MOAT_ENOMEM;
	v = SSL_get_min_proto_version(ssl);
	*min_version = v == TLS1_3_VERSION ? "TLSv1.3" : v == TLS1_2_VERSION ? "TLSv1.2" : "TLSv1.2";
	ciphers = SSL_get1_supported_ciphers(ssl);
	for (int i = 0; ciphers && i < sk_SSL_CIPHER_num(ciphers); i++) {
		const char *name = SSL_CIPHER_get_name(sk_SSL_CIPHER_value(ciphers, i));
		int k = snprintf(out + len, cap - len, "%s%s", n ? ":" : "", name);
		if (k < 0 || (size_t)k >= cap - len)
			break;
		len += (size_t)k;
		n++;
	}
	sk_SSL_CIPHER_free(ciphers);
	SSL_free(ssl);
	return n;
}

/* ---- blocking sessions (the admin API's TCP listener: a thread per request) ---- */

struct moat_tls_session {
	SSL *ssl;
};

struct moat_tls_session *moat_tls_session_accept(struct moat_tls_server *s, int fd,
						 char *subject, size_t n, char *err, size_t errlen)
{
	struct moat_tls_session *t = calloc(1, sizeof(*t));
	X509 *peer;

	if (subject && n)
		subject[0] = 0;
	if (!t)
		return NULL;
	pthread_mutex_lock(&s->lock);
	t->ssl = SSL_new(s->ctx);
	pthread_mutex_unlock(&s->lock);
	if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1 || SSL_accept(t->ssl) != 1) {
		moat_set_err(err, errlen, "TLS handshake failed: %s", moat_tls_last_error());
		ERR_clear_error();
		SSL_free(t->ssl);
		free(t);
		return NULL;
	}
	peer = SSL_get0_peer_certificate(t->ssl);
	if (peer && SSL_get_verify_result(t->ssl) == X509_V_OK && subject && n) {
		BIO *b = BIO_new(BIO_s_mem());
		if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
			int k = BIO_read(b, subject, (int)n - 1);
			subject[k > 0 ? k : 0] = 0;
		}
		BIO_free(b);
	}
	return t;
}

ssize_t moat_tls_session_read(struct moat_tls_session *t, void *buf, size_t n)
{
	int r = SSL_read(t->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);

	if (r > 0)
		return r;
	if (SSL_get_error(t->ssl, r) == SSL_ERROR_ZERO_RETURN)
		return 0;
	ERR_clear_error();
	return -1; /* a timeout (SO_RCVTIMEO) ends up here too */
}

int moat_tls_session_write(struct moat_tls_session *t, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		int w = SSL_write(t->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
		if (w <= 0) {
			ERR_clear_error();
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

void moat_tls_session_free(struct moat_tls_session *t)
{
	if (!t)
		return;
	SSL_shutdown(t->ssl); /* close_notify; the caller closes the socket */
	ERR_clear_error();
	SSL_free(t->ssl);
	free(t);
}
