/*
 * loop.h - the event loop: file descriptors, a periodic tick, cross-thread
 * wake-ups and a before-sleep hook. Knows nothing of MQTT.
 *
 * One loop per thread, never shared. A watched fd is described by a struct
 * moat_io the caller embeds in its own object; the loop keeps a pointer to
 * it, so the object must stay alive until moat_loop_del() and until the
 * current batch of events has been dispatched: free such objects from the
 * before-sleep hook (deferred close), never inside their own callback.
 */
#ifndef MOAT_EVENT_LOOP_H
#define MOAT_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

enum {
	MOAT_EV_READ = 1,
	MOAT_EV_WRITE = 2,
	MOAT_EV_ERROR = 4,
	MOAT_EV_EXCLUSIVE = 8, /* moat_loop_add only: wake one of the loops sharing the fd */
};

struct moat_loop;
struct moat_io;

typedef void (*moat_io_cb)(struct moat_loop *loop, struct moat_io *io, unsigned events);
typedef void (*moat_loop_cb)(struct moat_loop *loop, void *arg);

struct moat_io {
	int fd;
	unsigned events; /* MOAT_EV_READ | MOAT_EV_WRITE currently watched */
	moat_io_cb cb;
};

/* Returns owned loop (free with moat_loop_free), or NULL with errno set. */
struct moat_loop *moat_loop_new(void);
void moat_loop_free(struct moat_loop *loop);

/* Starts watching io->fd for events. Returns 0 or MOAT_EIO. */
int moat_loop_add(struct moat_loop *loop, struct moat_io *io, unsigned events);

/* Changes the events watched (no system call if unchanged). Returns 0 or MOAT_EIO. */
int moat_loop_mod(struct moat_loop *loop, struct moat_io *io, unsigned events);

/* Stops watching io->fd (call before closing it). */
void moat_loop_del(struct moat_loop *loop, struct moat_io *io);

/* Calls cb(loop, arg) every interval_ms (one tick; 0 turns it off). */
void moat_loop_set_tick(struct moat_loop *loop, unsigned interval_ms, moat_loop_cb cb, void *arg);

/* Calls cb(loop, arg) after each batch of events, before waiting again. */
void moat_loop_set_before_sleep(struct moat_loop *loop, moat_loop_cb cb, void *arg);

/* Calls cb(loop, arg) on the loop's thread after moat_loop_wake() from any thread. */
void moat_loop_set_wake(struct moat_loop *loop, moat_loop_cb cb, void *arg);

/* Thread-safe: makes the loop run its wake callback soon. Cheap if already pending. */
void moat_loop_wake(struct moat_loop *loop);

/* Runs until moat_loop_stop(). Returns 0, or MOAT_EIO if epoll fails. */
int moat_loop_run(struct moat_loop *loop);

/* Makes moat_loop_run return after the current iteration (loop thread, or with a wake). */
void moat_loop_stop(struct moat_loop *loop);

/* The loop's cached monotonic time in ms, updated once per iteration. */
int64_t moat_loop_now(const struct moat_loop *loop);

#endif
