/*
 * log.h - structured log lines.
 *
 * One line per event: a timestamp, a level and key=value fields, e.g.
 *   2026-11-23T01:02:03Z notice connect client_id="c1" addr=127.0.0.1:51234 proto=5
 * The logger is process-wide (set up once by moatd before threads start) and
 * each line reaches its destination in a single write(), so lines from
 * different threads never interleave. Secrets must never be passed here.
 */
#ifndef MOAT_CORE_LOG_H
#define MOAT_CORE_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum moat_log_level {
	MOAT_LOG_LVL_DEBUG = 0,
	MOAT_LOG_LVL_INFO,
	MOAT_LOG_LVL_NOTICE,
	MOAT_LOG_LVL_WARNING,
	MOAT_LOG_LVL_ERROR,
};

/*
 * Sets where lines go: fd (e.g. 2), the lowest level written, and whether
 * lines start with a timestamp. Call before starting threads.
 */
void moat_log_setup(int fd, enum moat_log_level min, bool timestamps);

/* True if a line at level would be written (to skip building costly fields). */
bool moat_log_enabled(enum moat_log_level level);

/* Writes one line: the printf-style fields after the timestamp and level. */
void moat_log(enum moat_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Writes s[0..n) into out[0..cap) as a quoted, escaped string safe for a log
 * line (control bytes and quotes escaped, invalid UTF-8 as \xNN, cut at cap
 * with "..."). Returns out.
 */
char *moat_log_quote(char *out, unsigned cap, const void *s, unsigned n);

#endif
