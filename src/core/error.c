/*
 * error.c - names of moat's error codes, and filling a caller's err buffer.
 */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const messages[] = {
	[0] = "success",
	[-MOAT_ENOMEM] = "out of memory",
	[-MOAT_EINVAL] = "invalid argument",
	[-MOAT_EAGAIN] = "more input needed",
	[-MOAT_EMALFORMED] = "malformed packet",
	[-MOAT_EPROTOCOL] = "protocol error",
	[-MOAT_ETOOBIG] = "packet too large",
	[-MOAT_EVERSION] = "unsupported protocol version",
	[-MOAT_ENOSPC] = "buffer too small",
	[-MOAT_EIO] = "I/O error",
	[-MOAT_ENOTFOUND] = "not found",
	[-MOAT_EEXIST] = "already exists",
	[-MOAT_EDENIED] = "denied",
	[-MOAT_ECLOSED] = "connection closed",
	[-MOAT_ECONFIG] = "invalid configuration",
};

const char *moat_strerror(int code)
{
	if (code > 0 || code < MOAT_E_LAST)
		return "unknown error";
	return messages[-code];
}

void moat_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
