/*
 * tls.h - TLS 1.2/1.3 transports, server and client (OpenSSL 3 lives in
 * tls.c only; nothing above sees its types).
 *
 * A struct moat_tls_server holds one TLS listener's context: certificate and
 * key, CA, CRL, ciphers, PSK table. Accepting wraps a socket in a transport
 * whose handshake runs inside its first reads and writes. Reloading builds a
 * fresh context from the files and swaps it in: new connections use it, live
 * ones keep theirs, and moat_tls_recheck() tells whether a live connection's
 * certificate is revoked under the new CRL.
 */
#ifndef MOAT_NET_TLS_H
#define MOAT_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "net/transport.h"

struct moat_tls_server;
struct moat_tls_client;

/*
 * Builds the TLS context of listener lc (which must have certfile or
 * psk_file). Returns 0 and *out, or MOAT_ECONFIG / MOAT_EIO with a message
 * naming the file and OpenSSL's reason in err.
 */
int moat_tls_server_new(const struct moat_listener_conf *lc, struct moat_tls_server **out,
			char *err, size_t errlen);

/*
 * Re-reads certificate, key, CA, CRL and PSK files of lc into a new context
 * and swaps it in. On failure the old context stays and err says why.
 * Thread-safe against moat_tls_accept and moat_tls_recheck.
 */
int moat_tls_server_reload(struct moat_tls_server *s, const struct moat_listener_conf *lc,
			   char *err, size_t errlen);

void moat_tls_server_free(struct moat_tls_server *s);

/* Wraps accepted socket fd (taken) in a server TLS transport, or NULL. Thread-safe. */
struct moat_transport *moat_tls_accept(struct moat_tls_server *s, int fd);

/*
 * Server-side handshakes since the process started (for metrics): *ok those
 * that completed, *failed those that did not (refused, or the peer left or
 * timed out before the end; counted when the transport is freed).
 */
void moat_tls_handshake_counts(uint64_t *ok, uint64_t *failed);

/*
 * Verifies the certificate a live connection presented against s's current
 * CA and CRL. Returns 0 if it stands (or there is none), MOAT_EDENIED if it is
 * now revoked. Thread-safe.
 */
int moat_tls_recheck(struct moat_tls_server *s, struct moat_transport *t);

/*
 * The peer certificate and its issuer in DER (malloc'd, caller frees), and the
 * OCSP responder URL from its Authority Information Access (malloc'd or NULL),
 * for an OCSP check. Returns 0, or MOAT_ENOTFOUND if there is no verified chain.
 */
int moat_tls_peer_der(struct moat_transport *t, uint8_t **cert, size_t *cert_len,
		      uint8_t **issuer, size_t *issuer_len, char **ocsp_url);

/* Options of a TLS client (moat pub/sub). */
struct moat_tls_client_opts {
	const char *cafile, *capath;    /* trust anchors; NULL both = the system's */
	const char *certfile, *keyfile; /* client certificate, optional */
	const char *ciphers;            /* TLS 1.2 list, optional */
	const char *psk_hex;            /* TLS-PSK key in hex: no certificates then */
	const char *psk_identity;
	const char *servername;         /* SNI and the name the certificate must carry */
	bool insecure;                  /* do not check the server certificate's name */
	uint8_t min_version;            /* 12 or 13; 0 = 12 */
	uint8_t max_version;            /* 0 = newest */
};

int moat_tls_client_new(const struct moat_tls_client_opts *o, struct moat_tls_client **out,
			char *err, size_t errlen);
void moat_tls_client_free(struct moat_tls_client *c);

/* Wraps connected socket fd (taken) in a client TLS transport, or NULL. */
struct moat_transport *moat_tls_connect(struct moat_tls_client *c, int fd);

/* The last TLS failure on this thread, as text (for messages), "" if none. */
const char *moat_tls_last_error(void);

/* The TLS library's name and version ("OpenSSL 3.0.11 19 Sep 2023"). */
const char *moat_tls_library(void);

/*
 * What a TLS listener offers now: its lowest protocol version ("TLSv1.2") into
 * *min_version and its cipher suites, in preference order, separated by ':'
 * into out[0..cap). Returns the number of suites, or MOAT_ENOMEM.
 */
int moat_tls_server_offer(struct moat_tls_server *s, const char **min_version, char *out,
			  size_t cap);

/*
 * Blocking TLS on a connected socket, for the admin API's TCP listener (a
 * thread per request; the caller sets SO_RCVTIMEO/SO_SNDTIMEO). accept does
 * the handshake under s's context (its client-certificate policy included)
 * and writes the verified client certificate's RFC 2253 subject into
 * subject ("" if none). read returns bytes, 0 at the peer's close_notify, or
 * -1 (error or timeout); write sends all or returns -1; free sends
 * close_notify and frees (the socket stays the caller's).
 */
struct moat_tls_session;
struct moat_tls_session *moat_tls_session_accept(struct moat_tls_server *s, int fd,
						 char *subject, size_t n, char *err, size_t errlen);
ssize_t moat_tls_session_read(struct moat_tls_session *t, void *buf, size_t n);
int moat_tls_session_write(struct moat_tls_session *t, const void *buf, size_t n);
void moat_tls_session_free(struct moat_tls_session *t);

#endif
