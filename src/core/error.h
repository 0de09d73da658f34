/*
 * error.h - moat's error codes.
 *
 * Every fallible function returns int: 0 on success, a negative MOAT_E* code on
 * failure. Out-parameters are written only on success. moat_strerror() turns a
 * code into a fixed English phrase suitable for logs; it never returns NULL.
 * Functions that explain a failure take a caller's (err, errlen) buffer and
 * fill it with moat_set_err().
 */
#ifndef MOAT_CORE_ERROR_H
#define MOAT_CORE_ERROR_H

#include <stddef.h>

enum {
	MOAT_OK = 0,
	MOAT_ENOMEM = -1,      /* allocation failed or a memory budget is spent */
	MOAT_EINVAL = -2,      /* caller passed an invalid argument (programmer's fault) */
	MOAT_EAGAIN = -3,      /* not enough input yet; call again with more */
	MOAT_EMALFORMED = -4,  /* peer sent bytes that do not parse */
	MOAT_EPROTOCOL = -5,   /* peer's bytes parse but break a protocol rule */
	MOAT_ETOOBIG = -6,     /* peer's packet exceeds the size limit */
	MOAT_EVERSION = -7,    /* peer asked for a protocol version we do not speak */
	MOAT_ENOSPC = -8,      /* output buffer too small */
	MOAT_EIO = -9,         /* an operating-system call failed; see errno */
	MOAT_ENOTFOUND = -10,  /* the named thing does not exist */
	MOAT_EEXIST = -11,     /* the named thing already exists */
	MOAT_EDENIED = -12,    /* refused by policy */
	MOAT_ECLOSED = -13,    /* the other side has gone */
	MOAT_ECONFIG = -14,    /* configuration is invalid */
	MOAT_E_LAST = -14
};

/* Returns a static, never-NULL description of code (0 or a MOAT_E* value). */
const char *moat_strerror(int code);

/* Formats a message into err[0..errlen), truncating; does nothing if err is NULL or errlen 0. */
void moat_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
