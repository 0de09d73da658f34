/*
 * audit.h - the audit log: every security event as a JSON line, chained.
 *
 * Each line is one JSON object: the event's fields ("ts" in RFC 3339 UTC with
 * milliseconds, "seq", "kind", "addr", "client_id", "username", "method",
 * "reason", "topic", "access", "port", "value" where set; strings escaped as
 * JSON requires, control characters and invalid UTF-8 as \\u escapes), then
 * "prev" (the hex SHA-256 of the previous line, or of the previous file's
 * last line after a rotation, or 64 zeros for the very first line) and
 * "hash" (hex SHA-256 of this line's text up to and including the "prev"
 * member, i.e. the line with ',"hash":"..."}' removed). Changing, removing or
 * reordering a line breaks the chain at that line.
 *
 * Rotation by size: when the file passes max_size it is renamed PATH.1 (older
 * ones shift to PATH.2 ... PATH.keep, the oldest deleted) and a new PATH
 * starts with a "rotated" line whose "prev" is the last hash of PATH.1.
 * Reopening an existing log continues its chain.
 *
 * One writer (the sentinel thread); not thread-safe itself.
 */
#ifndef MOAT_SECURITY_AUDIT_H
#define MOAT_SECURITY_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "security/event.h"

struct moat_audit;

/*
 * Opens (creating, mode 0600) or continues the audit log at path. max_size 0
 * means no rotation; keep is how many rotated files to keep (1..99).
 * Returns 0 and *out, or MOAT_EIO / MOAT_ECONFIG with err (a log whose last
 * line is not a valid audit line is refused rather than silently restarted).
 */
int moat_audit_open(const char *path, uint64_t max_size, int keep, struct moat_audit **out,
		    char *err, size_t errlen);

/* Appends event e at wall-clock time wall_ms. Returns 0 or MOAT_EIO. */
int moat_audit_write(struct moat_audit *a, const struct moat_sec_event *e, int64_t wall_ms);

/*
 * The event as one JSON object, the audit line's members without "seq",
 * "prev" and "hash": {"ts":"...","kind":"...",...}. Writes at most cap
 * bytes with the NUL; returns the length, or 0 (out = "") if it did not fit.
 */
size_t moat_audit_event_json(const struct moat_sec_event *e, int64_t wall_ms, char *out,
			     size_t cap);

/* Flushes to disk (fsync). */
int moat_audit_sync(struct moat_audit *a);

/*
 * The head of the chain known to be on disk: the seq and hash (64 hex digits
 * and a NUL) of the last line synced, or found when the log was opened (seq
 * 0 and zeros for a new log). Any thread may call it; the durable store
 * keeps it, so a log cut short or replaced behind moatd's back is noticed
 * at the next start.
 */
void moat_audit_head(struct moat_audit *a, uint64_t *seq, char hash[65]);

void moat_audit_close(struct moat_audit *a);

/*
 * Verifies the chain of the log file at path (one file; give prev_hash, a
 * 64-hex-digit string, to check it continues another, or NULL to accept its
 * first "prev" if that line begins the log (seq 1, "prev" zeros) or is a
 * "rotated" line, as every file written begins). Returns 0 and *lines, or
 * MOAT_EPROTOCOL with err naming the first bad line ("PATH:LINE: hash does
 * not match" ...), or MOAT_EIO.
 * last_hash (65 bytes, may be NULL) receives the file's last hash.
 */
int moat_audit_verify(const char *path, const char *prev_hash, uint64_t *lines, char *last_hash,
		      char *err, size_t errlen);

#endif
