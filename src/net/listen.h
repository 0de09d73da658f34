/*
 * listen.h - listening sockets.
 */
#ifndef MOAT_NET_LISTEN_H
#define MOAT_NET_LISTEN_H

#include <stddef.h>
#include <stdint.h>

/*
 * Opens non-blocking listening TCP sockets for host:port (host NULL = every
 * address; domain 4 or 6 restricts the family, 0 allows both). One socket
 * per address the host resolves to, at most max. Returns the count (>= 1)
 * with fds filled, or a negative code with a message in err.
 */
int moat_listen_tcp(const char *host, uint16_t port, int domain, int *fds, int max, char *err,
		    size_t errlen);

/*
 * Opens a non-blocking listening unix stream socket at path, replacing a
 * stale socket file there (never another kind of file). Returns the fd, or a
 * negative code with a message in err.
 */
int moat_listen_unix(const char *path, char *err, size_t errlen);

struct sockaddr_storage;

/* Writes "a.b.c.d:port", "[v6]:port" or "unix" for sa into out. */
void moat_sockaddr_format(const struct sockaddr_storage *sa, char *out, size_t cap);

/* Writes the address alone ("a.b.c.d", "v6", "unix"): what bans and counts key on. */
void moat_sockaddr_host(const struct sockaddr_storage *sa, char *out, size_t cap);

#endif
