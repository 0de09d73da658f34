/*
 * listen.c - listening sockets (see listen.h).
 *
 * IPv6 sockets are V6ONLY so that "every address" binds both families
 * side by side without one stealing the other's port.
 */
#include "net/listen.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/error.h"

static int open_one(const struct addrinfo *ai, char *err, size_t errlen, const char *what)
{
	int one = 1, fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				 ai->ai_protocol);

	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "cannot listen on %s: %s", what, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int moat_listen_tcp(const char *host, uint16_t port, int domain, int *fds, int max, char *err,
		    size_t errlen)
{
	struct addrinfo hints = {0}, *res, *ai;
	char sport[8], what[300];
	int n = 0, rc;

	err[0] = 0;
	hints.ai_family = domain == 4 ? AF_INET : domain == 6 ? AF_INET6 : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(sport, sizeof(sport), "%u", port);
	snprintf(what, sizeof(what), "%s:%u", host ? host : "*", port);
	rc = getaddrinfo(host, sport, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "cannot resolve %s: %s", what, gai_strerror(rc));
		return MOAT_EIO;
	}
	for (ai = res; ai && n < max; ai = ai->ai_next) {
		int fd = open_one(ai, err, errlen, what);
		if (fd < 0) {
			/* "every address" on a host without IPv6 still works with IPv4 alone */
			if (!host)
				continue;
			while (n)
				close(fds[--n]);
			freeaddrinfo(res);
			return MOAT_EIO;
		}
		fds[n++] = fd;
	}
	freeaddrinfo(res);
	if (!n) {
		if (!err[0])
			snprintf(err, errlen, "cannot listen on %s: no usable address", what);
		return MOAT_EIO;
	}
	err[0] = 0;
	return n;
}

int moat_listen_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "cannot listen on %s: path too long", path);
		return MOAT_EINVAL;
	}
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1024) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return MOAT_EIO;
	}
	return fd;
}

void moat_sockaddr_format(const struct sockaddr_storage *sa, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, cap, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, cap, "unix");
	}
}

void moat_sockaddr_host(const struct sockaddr_storage *sa, char *out, size_t cap)
{
	if (sa->ss_family == AF_INET) {
		if (!inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap))
			snprintf(out, cap, "?");
	} else if (sa->ss_family == AF_INET6) {
		if (!inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			       (socklen_t)cap))
			snprintf(out, cap, "?");
	} else {
		snprintf(out, cap, "unix");
	}
}
