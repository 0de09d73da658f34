/*
 * loop.c - epoll event loop (see loop.h), in the manner of Redis's ae.c.
 *
 * Wake-ups use one eventfd per loop; `wake_pending` makes repeated
 * moat_loop_wake() calls between two iterations cost one write() in total.
 */
#include "event/loop.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"

#define MAX_EVENTS 256

struct moat_loop {
	int epfd;
	struct moat_io wake_io;
	atomic_bool wake_pending;
	atomic_bool stop;
	int64_t now;
	unsigned tick_ms;
	int64_t next_tick;
	moat_loop_cb tick_cb, sleep_cb, wake_cb;
	void *tick_arg, *sleep_arg, *wake_arg;
};

static uint32_t to_epoll(unsigned ev)
{
	if (ev & MOAT_EV_EXCLUSIVE) /* EPOLLRDHUP is not allowed with EPOLLEXCLUSIVE */
		return EPOLLIN | EPOLLEXCLUSIVE;
	return (ev & MOAT_EV_READ ? EPOLLIN | EPOLLRDHUP : 0) | (ev & MOAT_EV_WRITE ? EPOLLOUT : 0);
}

static void on_wake(struct moat_loop *loop, struct moat_io *io, unsigned events)
{
	uint64_t v;
	(void)events;
	if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
		/* Nothing to do: the wake-up still happened. */
	}
	atomic_store(&loop->wake_pending, false);
	if (loop->wake_cb)
		loop->wake_cb(loop, loop->wake_arg);
}

struct moat_loop *moat_loop_new(void)
{
	struct moat_loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	loop->wake_io.cb = on_wake;
	if (loop->epfd < 0 || loop->wake_io.fd < 0 ||
	    moat_loop_add(loop, &loop->wake_io, MOAT_EV_READ) < 0)
		goto fail;
	loop->now = moat_now_ms();
	return loop;
fail:
	moat_loop_free(loop);
	return NULL;
}

void moat_loop_free(struct moat_loop *loop)
{
	if (!loop)
		return;
	if (loop->epfd >= 0)
		close(loop->epfd);
	if (loop->wake_io.fd > 0)
		close(loop->wake_io.fd);
	free(loop);
}

int moat_loop_add(struct moat_loop *loop, struct moat_io *io, unsigned events)
{
	struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};

	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
		return MOAT_EIO;
	io->events = events;
	return 0;
}

int moat_loop_mod(struct moat_loop *loop, struct moat_io *io, unsigned events)
{
	struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};

	if (io->events == events)
		return 0;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return MOAT_EIO;
	io->events = events;
	return 0;
}

void moat_loop_del(struct moat_loop *loop, struct moat_io *io)
{
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->events = 0;
}

void moat_loop_set_tick(struct moat_loop *loop, unsigned interval_ms, moat_loop_cb cb, void *arg)
{
	loop->tick_ms = interval_ms;
	loop->tick_cb = cb;
	loop->tick_arg = arg;
	loop->next_tick = moat_now_ms() + interval_ms;
}

void moat_loop_set_before_sleep(struct moat_loop *loop, moat_loop_cb cb, void *arg)
{
	loop->sleep_cb = cb;
	loop->sleep_arg = arg;
}

void moat_loop_set_wake(struct moat_loop *loop, moat_loop_cb cb, void *arg)
{
	loop->wake_cb = cb;
	loop->wake_arg = arg;
}

void moat_loop_wake(struct moat_loop *loop)
{
	uint64_t one = 1;

	if (atomic_exchange(&loop->wake_pending, true))
		return;
	if (write(loop->wake_io.fd, &one, sizeof(one)) < 0) {
		/* EAGAIN means the counter is saturated: a wake-up is pending anyway. */
	}
}

void moat_loop_stop(struct moat_loop *loop)
{
	atomic_store(&loop->stop, true);
}

int64_t moat_loop_now(const struct moat_loop *loop)
{
	return loop->now;
}

static int wait_timeout(const struct moat_loop *loop)
{
	int64_t left;

	if (!loop->tick_ms)
		return -1;
	left = loop->next_tick - loop->now;
	return left < 0 ? 0 : (int)left;
}

int moat_loop_run(struct moat_loop *loop)
{
	struct epoll_event evs[MAX_EVENTS];

	while (!atomic_load(&loop->stop)) {
		int n, i;

		if (loop->sleep_cb)
			loop->sleep_cb(loop, loop->sleep_arg);
		n = epoll_wait(loop->epfd, evs, MAX_EVENTS, wait_timeout(loop));
		if (n < 0 && errno != EINTR)
			return MOAT_EIO;
		loop->now = moat_now_ms();
		for (i = 0; i < n; i++) {
			struct moat_io *io = evs[i].data.ptr;
			unsigned ev = 0;
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
				ev |= MOAT_EV_READ;
			if (evs[i].events & EPOLLOUT)
				ev |= MOAT_EV_WRITE;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				ev |= MOAT_EV_ERROR | MOAT_EV_READ;
			io->cb(loop, io, ev);
		}
		if (loop->tick_ms && loop->now >= loop->next_tick) {
			loop->next_tick = loop->now + loop->tick_ms;
			loop->tick_cb(loop, loop->tick_arg);
		}
	}
	return 0;
}
