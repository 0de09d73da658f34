/*
 * tcp.c - the plain stream transport: read() and writev() on the socket.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/error.h"
#include "event/loop.h"
#include "net/transport.h"

static ssize_t tcp_read(struct moat_transport *t, void *buf, size_t n)
{
	ssize_t r;

	do
		r = read(t->fd, buf, n);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	return errno == EAGAIN ? MOAT_EAGAIN : MOAT_EIO;
}

static ssize_t tcp_writev(struct moat_transport *t, const struct iovec *iov, int n)
{
	ssize_t r;

	do
		r = writev(t->fd, iov, n);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	return errno == EAGAIN ? MOAT_EAGAIN : MOAT_EIO;
}

static int tcp_flush(struct moat_transport *t)
{
	(void)t;
	return 0;
}

static unsigned tcp_want(const struct moat_transport *t, bool have_output)
{
	(void)t;
	return MOAT_EV_READ | (have_output ? MOAT_EV_WRITE : 0);
}

static bool tcp_no(const struct moat_transport *t)
{
	(void)t;
	return false;
}

static bool tcp_yes(const struct moat_transport *t)
{
	(void)t;
	return true;
}

static const struct moat_tls_info *tcp_tls(const struct moat_transport *t)
{
	(void)t;
	return NULL;
}

static int tcp_export(struct moat_transport *t, uint8_t *out, size_t n, const char *label,
		      const uint8_t *ctx, size_t ctx_len)
{
	(void)t, (void)out, (void)n, (void)label, (void)ctx, (void)ctx_len;
	return MOAT_EINVAL;
}

static void tcp_free(struct moat_transport *t)
{
	close(t->fd);
	free(t);
}

static const struct moat_transport_ops tcp_ops = {
	.name = "tcp",
	.read = tcp_read,
	.writev = tcp_writev,
	.flush = tcp_flush,
	.want = tcp_want,
	.has_buffered = tcp_no,
	.ready = tcp_yes,
	.tls = tcp_tls,
	.export_keys = tcp_export,
	.free = tcp_free,
};

struct moat_transport *moat_tcp_new(int fd)
{
	struct moat_transport *t = malloc(sizeof(*t));

	if (!t)
		return NULL;
	t->ops = &tcp_ops;
	t->fd = fd;
	return t;
}
