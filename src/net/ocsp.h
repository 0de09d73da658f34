/*
 * ocsp.h - OCSP checks of client certificates (RFC 6960), on a thread of
 * their own so no worker ever waits on a responder.
 *
 * A checker answers from its cache when it can. Otherwise it queues the
 * question, and when the responder has answered (or failed to within the
 * timeout) it calls the done callback, on its own thread, with the
 * certificate's key and the status; the callback hands that on to whoever
 * waits. Answers are cached for cache_seconds (or until the response's
 * nextUpdate, if sooner), so a fleet reconnecting does not hammer the
 * responder, and asking again after that refreshes the status of live
 * sessions: a certificate revoked later is caught then.
 */
#ifndef MOAT_NET_OCSP_H
#define MOAT_NET_OCSP_H

#include <stddef.h>
#include <stdint.h>

enum moat_ocsp_status {
	MOAT_OCSP_PENDING = 0, /* asked; the answer comes through the callback */
	MOAT_OCSP_GOOD,
	MOAT_OCSP_REVOKED,
	MOAT_OCSP_UNKNOWN,     /* the responder does not know it, or could not be asked */
};

struct moat_ocsp;

typedef void (*moat_ocsp_done)(void *ctx, uint64_t key, enum moat_ocsp_status status);

/*
 * Makes a checker trusting cafile/capath for responder signatures, with
 * responder (a URL) overriding the certificates' own AIA when not NULL.
 * Starts its thread. Returns 0 and *out, or a code with err.
 */
int moat_ocsp_new(const char *cafile, const char *capath, const char *responder,
		  uint32_t cache_seconds, moat_ocsp_done done, void *ctx, struct moat_ocsp **out,
		  char *err, size_t errlen);

/* Stops the thread (an answer in flight is dropped) and frees. NULL is a no-op. */
void moat_ocsp_free(struct moat_ocsp *o);

/*
 * The status of cert (DER) issued by issuer (DER), with aia_url from the
 * certificate (may be NULL). Sets *key (the same for the same certificate).
 * Returns a cached status, or MOAT_OCSP_PENDING after queueing the question
 * (then done() will be called with *key). Thread-safe.
 */
enum moat_ocsp_status moat_ocsp_check(struct moat_ocsp *o, const uint8_t *cert, size_t cert_len,
				      const uint8_t *issuer, size_t issuer_len,
				      const char *aia_url, uint64_t *key);

const char *moat_ocsp_status_name(enum moat_ocsp_status s);

#endif
