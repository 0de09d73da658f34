/*
 * log.c - structured log lines (see log.h).
 *
 * The settings are written once before threads start and only read after,
 * so they need no lock. Each line is formatted into a stack buffer and
 * written with one write(): POSIX makes that atomic for pipes up to
 * PIPE_BUF, and for files opened O_APPEND.
 */
#include "core/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static enum moat_log_level log_min = MOAT_LOG_LVL_INFO;
static bool log_ts = true;

static const char *const level_names[] = {"debug", "info", "notice", "warning", "error"};

void moat_log_setup(int fd, enum moat_log_level min, bool timestamps)
{
	log_fd = fd;
	log_min = min;
	log_ts = timestamps;
}

bool moat_log_enabled(enum moat_log_level level)
{
	return level >= log_min && log_fd >= 0;
}

void moat_log(enum moat_log_level level, const char *fmt, ...)
{
	char line[2048];
	size_t n = 0;
	va_list ap;
	int r;

	if (!moat_log_enabled(level))
		return;
	if (log_ts) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &tm);
	}
	r = snprintf(line + n, sizeof(line) - n, "%s ", level_names[level]);
	n += r > 0 ? (size_t)r : 0;
	va_start(ap, fmt);
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(log_fd, line, n) < 0) {
		/* Nowhere left to report a failing log. */
	}
}

char *moat_log_quote(char *out, unsigned cap, const void *s, unsigned n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = s;
	unsigned o = 0, i;

	if (cap < 8) {
		if (cap)
			out[0] = 0;
		return out;
	}
	out[o++] = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (o + 8 >= cap) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f || c >= 0x80) {
			/* Non-ASCII is escaped too: log lines stay ASCII whatever a peer sends. */
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = 0;
	return out;
}
