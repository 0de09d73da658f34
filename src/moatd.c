/*
 * moatd.c - the broker daemon's entry point: arguments, configuration,
 * logging, signals, privilege drop, then the broker.
 *
 *   moatd [-c FILE] [-p PORT] [-v] [-h] [--version] [--restore BACKUP]
 *
 * With no configuration file (or one without listeners) moatd listens on
 * 127.0.0.1 only, port 1883 or -p, and lets anonymous clients in there:
 * local-only mode, as Mosquitto 2.0 does.
 */
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "broker/broker.h"
#include "config/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/map.h"

#define MOAT_VERSION "0.1.0"

static void usage(FILE *f)
{
	fprintf(f, "moatd %s - an MQTT broker that defends itself\n\n"
		   "usage: moatd [-c FILE] [-p PORT] [-v] [--restore BACKUP]\n\n"
		   "  -c FILE    read the configuration from FILE (Mosquitto syntax)\n"
		   "  -p PORT    port of the local-only listener used when FILE has none (1883)\n"
		   "  -v         verbose: log every event, debug included\n"
		   "  --restore BACKUP  start from BACKUP (made by `moat ctl backup`); the store\n"
		   "             in persistence_location is moved aside, not deleted\n"
		   "  -h         this help\n"
		   "  --version  print the version\n"
		   "\nWith no listener configured, moatd listens on 127.0.0.1 only.\n",
		MOAT_VERSION);
}

static int open_log(const struct moat_config *c, bool verbose)
{
	enum moat_log_level min = MOAT_LOG_LVL_ERROR;
	int fd = 2;

	if (c->log_type & MOAT_LOG_WARNING)
		min = MOAT_LOG_LVL_WARNING;
	if (c->log_type & MOAT_LOG_NOTICE)
		min = MOAT_LOG_LVL_NOTICE;
	if (c->log_type & MOAT_LOG_INFORMATION)
		min = MOAT_LOG_LVL_INFO;
	if (verbose || (c->log_type & MOAT_LOG_DEBUG))
		min = MOAT_LOG_LVL_DEBUG;
	if (c->log_dest & MOAT_LOGDEST_FILE && c->log_file) {
		fd = open(c->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0) {
			perror(c->log_file);
			return -1;
		}
	} else if (c->log_dest & MOAT_LOGDEST_STDOUT) {
		fd = 1;
	} else if (!c->log_dest) {
		fd = -1;
	}
	moat_log_setup(fd, min, c->log_timestamp);
	return 0;
}

/* Drops root privileges to the configured user, after the listeners are open. */
static int drop_privileges(const struct moat_config *c)
{
	struct passwd *pw;

	if (geteuid() != 0 || !c->user)
		return 0;
	pw = getpwnam(c->user);
	if (!pw) {
		moat_log(MOAT_LOG_LVL_WARNING, "user_not_found user=%s (still running as root)", c->user);
		return 0;
	}
	if (initgroups(c->user, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		moat_log(MOAT_LOG_LVL_ERROR, "cannot drop privileges user=%s", c->user);
		return -1;
	}
	return 0;
}

static void write_pid(const struct moat_config *c)
{
	FILE *f;

	if (!c->pid_file || !(f = fopen(c->pid_file, "w")))
		return;
	fprintf(f, "%ld\n", (long)getpid());
	fclose(f);
}

static void block_signals(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/*
 * A broker's connections are descriptors: take every one the hard limit
 * allows (the soft default, often 1024, is a desktop's). Logged once the log
 * is open, so an operator sees the ceiling.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	moat_log(MOAT_LOG_LVL_INFO, "fd_limit value=%llu", (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"version", no_argument, NULL, 'V'}, {"help", no_argument, NULL, 'h'},
		{"restore", required_argument, NULL, 'R'}, {0}};
	struct moat_config conf;
	struct moat_broker *b = NULL;
	const char *path = NULL, *restore = NULL;
	char err[512];
	long port = 1883;
	bool verbose = false;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "c:p:vhdV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'p':
			port = strtol(optarg, NULL, 10);
			if (port < 1 || port > 65535) {
				fprintf(stderr, "moatd: -p: port must be 1..65535\n");
				return 2;
			}
			break;
		case 'v':
			verbose = true;
			break;
		case 'R':
			restore = optarg;
			break;
		case 'V':
			printf("moatd %s\n", MOAT_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'd':
			fprintf(stderr, "moatd: -d: daemon mode is not supported; use a service manager\n");
			return 2;
		default:
			usage(stderr);
			return 2;
		}
	}
	moat_hash_seed();
	moat_config_defaults(&conf);
	if (path && moat_config_load(&conf, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "moatd: %s\n", err);
		goto out;
	}
	conf.restore_from = restore;
	if (conf.n_listeners == 0 && moat_config_add_default_listener(&conf, (uint16_t)port) < 0)
		goto out;
	if (open_log(&conf, verbose) < 0)
		goto out;
	raise_fd_limit();
	block_signals();
	if (moat_broker_new(&conf, &b, err, sizeof(err)) < 0) {
		moat_log(MOAT_LOG_LVL_ERROR, "startup_failed reason=\"%s\"", err);
		fprintf(stderr, "moatd: %s\n", err);
		goto out;
	}
	if (drop_privileges(&conf) < 0 || moat_broker_start(b) < 0)
		goto out;
	write_pid(&conf);
	rc = moat_broker_run(b, path) < 0;
	moat_broker_stop(b);
	if (conf.pid_file)
		unlink(conf.pid_file);
out:
	moat_broker_free(b);
	moat_config_free(&conf);
	return rc;
}
