/*
 * broker.h - the broker as moatd sees it: make it from a configuration,
 * start its worker threads, reload, stop.
 */
#ifndef MOAT_BROKER_BROKER_H
#define MOAT_BROKER_BROKER_H

#include "config/config.h"

struct moat_broker;

/*
 * Makes a broker for config c (borrowed: it must outlive the broker) and
 * opens its listening sockets. Returns 0 and *out, or a negative code with a
 * message in err (e.g. a port already in use).
 */
int moat_broker_new(struct moat_config *c, struct moat_broker **out, char *err, size_t errlen);

/* Starts the worker threads. Returns 0 or MOAT_EIO. */
int moat_broker_start(struct moat_broker *b);

/*
 * Runs on the calling (main) thread until a stop signal: handles SIGTERM,
 * SIGINT (stop) and SIGHUP (reload from config_path, if not NULL), and
 * publishes $SYS topics every sys_interval. Returns 0 on a clean stop.
 */
int moat_broker_run(struct moat_broker *b, const char *config_path);

/* Stops the workers: stop accepting, disconnect clients (wills go out), join. */
void moat_broker_stop(struct moat_broker *b);

/* Frees everything. The broker must be stopped. NULL is a no-op. */
void moat_broker_free(struct moat_broker *b);

#endif
