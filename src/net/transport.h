/*
 * transport.h - a byte stream to a peer, behind one vtable: plain TCP, TLS
 * over TCP, and WebSocket framing over either. The broker and the tools read
 * and write MQTT bytes through it without knowing which it is; OpenSSL
 * appears only in tls.c.
 *
 * Return conventions (every op):
 *   > 0 / 0  bytes read or accepted; read returns 0 at an orderly end of stream
 *   MOAT_EAGAIN   nothing can be done now: wait for moat_transport_want() events
 *   other < 0     the stream is broken (MOAT_EIO, MOAT_EPROTOCOL, MOAT_ECLOSED,
 *                 MOAT_EDENIED for a refused peer certificate); close it
 *
 * Bytes writev() accepts are the transport's: it may hold some (a TLS record
 * being written, a WebSocket frame) and push them out in flush(). The caller
 * calls flush() when the socket is writable and before closing.
 */
#ifndef MOAT_NET_TRANSPORT_H
#define MOAT_NET_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct moat_transport;

/* What the upper layers may learn about a secured connection. */
struct moat_tls_info {
	const char *version;       /* "TLSv1.3" */
	const char *cipher;        /* "TLS_AES_256_GCM_SHA384" */
	bool peer_verified;        /* a client certificate was presented and verified */
	char subject[512];         /* RFC 2253 subject of the peer certificate, "" if none */
	char cn[256];              /* its commonName, "" if none */
	char san[256];             /* its first email, DNS or URI subjectAltName, "" if none */
	char psk_identity[256];    /* the TLS-PSK identity used, "" if none */
};

struct moat_transport_ops {
	const char *name;
	ssize_t (*read)(struct moat_transport *t, void *buf, size_t n);
	ssize_t (*writev)(struct moat_transport *t, const struct iovec *iov, int n);
	int (*flush)(struct moat_transport *t);
	/* MOAT_EV_READ / MOAT_EV_WRITE the transport needs to progress now. */
	unsigned (*want)(const struct moat_transport *t, bool have_output);
	/* True while the transport holds read data the socket will not signal. */
	bool (*has_buffered)(const struct moat_transport *t);
	/* True once any handshake (TLS, HTTP upgrade) is complete. */
	bool (*ready)(const struct moat_transport *t);
	/* TLS details, or NULL for a plain stream. */
	const struct moat_tls_info *(*tls)(const struct moat_transport *t);
	/*
	 * Keying material exported from the TLS session (RFC 5705), for proof of
	 * possession (RFC 9431). Returns 0 or MOAT_EINVAL if not TLS.
	 */
	int (*export_keys)(struct moat_transport *t, uint8_t *out, size_t n, const char *label,
			   const uint8_t *context, size_t context_len);
	/* Frees the transport and closes its socket. */
	void (*free)(struct moat_transport *t);
};

struct moat_transport {
	const struct moat_transport_ops *ops;
	int fd;
};

/* A plain TCP (or unix socket) stream over connected socket fd, which it takes. */
struct moat_transport *moat_tcp_new(int fd);

static inline ssize_t moat_transport_read(struct moat_transport *t, void *buf, size_t n)
{
	return t->ops->read(t, buf, n);
}

static inline ssize_t moat_transport_writev(struct moat_transport *t, const struct iovec *iov,
					    int n)
{
	return t->ops->writev(t, iov, n);
}

static inline int moat_transport_flush(struct moat_transport *t)
{
	return t->ops->flush(t);
}

static inline unsigned moat_transport_want(const struct moat_transport *t, bool have_output)
{
	return t->ops->want(t, have_output);
}

static inline void moat_transport_free(struct moat_transport *t)
{
	if (t)
		t->ops->free(t);
}

#endif
