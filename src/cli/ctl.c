/*
 * ctl.c - `moat ctl`: talks to a running broker through its admin socket.
 *
 *   moat ctl [-s SOCKET] [-c CONFIG] [--json] COMMAND [ARGS] [--OPTION VALUE ...]
 *
 * The socket is -s SOCKET, else the one CONFIG names: its `admin_socket
 * PATH` line, else `persistence_location DIR` gives DIR/admin.sock (the
 * file's lines are scanned for these two directives only; the broker's
 * parser is not needed for that).
 *
 * Every command is a row of the table below: its name, the HTTP method and
 * path, its positional arguments and --options and the query parameters
 * they become (URL-encoded), and its help. A positional whose parameter is
 * "*" goes into the path instead (the route's last segment); a positional
 * marked ABSPATH is a file name the broker opens, made absolute here (the
 * broker's working directory is not ours).
 *
 * Output: the body of a 2xx answer, JSON pretty-printed with two-space
 * indentation (raw with --json), any other body as it is. Exit status:
 * 0 for 2xx; 1 otherwise, with "moat ctl: <the answer's error>" on stderr;
 * 2 for a usage error; 3 when the socket cannot be reached.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/hex.h"

enum {
	ABSPATH = 1,            /* the positional is a file name, made absolute */
	MAX_POS = 2,
	TARGET_MAX = 4096,      /* the server's MOAT_ADMIN_TARGET_MAX */
	RESPONSE_MAX = 80 << 20 /* above the server's 64 MiB document cap */
};

struct ctl_opt {
	const char *flag;  /* "--client-id" */
	const char *param; /* "client_id" */
	const char *metavar;
};

struct ctl_pos {
	const char *param; /* query parameter, or "*" for the path's last segment */
	const char *metavar;
	unsigned flags;
};

struct ctl_cmd {
	const char *name, *method, *path;
	struct ctl_pos pos[MAX_POS];
	const struct ctl_opt *opts; /* terminated by a NULL flag; NULL for none */
	const char *help;
	const char *secret;         /* a parameter read from stdin (a password), never argv */
};

static const struct ctl_opt selector_opts[] = {
	{"--address", "address", "ADDR"},
	{"--cidr", "cidr", "NET/LEN"},
	{"--client-id", "client_id", "ID"},
	{"--username", "username", "NAME"},
	{NULL, NULL, NULL},
};

static const struct ctl_opt kick_opts[] = {
	{"--address", "address", "ADDR"},
	{"--client-id", "client_id", "ID"},
	{"--username", "username", "NAME"},
	{"--identity", "identity", "CERT-SUBJECT|CN|PSK-ID"},
	{NULL, NULL, NULL},
};

static const struct ctl_opt inventory_opts[] = {
	{"--online", "online", "1"},
	{"--limit", "limit", "N"},
	{NULL, NULL, NULL},
};

static const struct ctl_opt flows_opts[] = {
	{"--format", "format", "json|dot"},
	{NULL, NULL, NULL},
};

static const struct ctl_opt user_opts[] = {
	{"--listener", "listener", "PORT"},
	{"--algo", "algo", "argon2id|sha512-pbkdf2|scram-sha-256|scram-sha-512"},
	{NULL, NULL, NULL},
};

static const struct ctl_opt user_del_opts[] = {
	{"--listener", "listener", "PORT"},
	{NULL, NULL, NULL},
};

static const struct ctl_opt backup_opts[] = {
	{"--replace", "replace", "1"},
	{NULL, NULL, NULL},
};

static const struct ctl_opt ban_opts[] = {
	{"--address", "address", "ADDR"},
	{"--cidr", "cidr", "NET/LEN"},
	{"--client-id", "client_id", "ID"},
	{"--username", "username", "NAME"},
	{"--duration", "duration", "SECONDS"},
	{"--reason", "reason", "TEXT"},
	{NULL, NULL, NULL},
};

static const struct ctl_opt events_opts[] = {
	{"--limit", "limit", "N"},
	{"--kind", "kind", "KIND"},
	{NULL, NULL, NULL},
};

static const struct ctl_cmd cmds[] = {
	{"status", "GET", "/v1/status", {{0}}, NULL, "the broker's state and counters", NULL},
	{"clients", "GET", "/v1/clients", {{0}}, NULL, "the connected clients", NULL},
	{"client", "GET", "/v1/clients/*", {{"*", "ID", 0}}, NULL, "one client, by client id", NULL},
	{"inventory", "GET", "/v1/inventory", {{0}}, inventory_opts,
	 "every device (client id) seen: when, from where, as whom, software", NULL},
	{"flows", "GET", "/v1/flows", {{0}}, flows_opts,
	 "the data-flow map: who publishes what to whom (--format dot: Graphviz)", NULL},
	{"user-set", "POST", "/v1/users", {{"username", "USER", 0}}, user_opts,
	 "add a user or change its password (read from stdin) in the password file, "
	 "and reload", "password"},
	{"user-del", "DELETE", "/v1/users", {{"username", "USER", 0}}, user_del_opts,
	 "remove a user from the password file and reload: its sessions are closed", NULL},
	{"software", "GET", "/v1/software", {{0}}, NULL,
	 "versions, and per listener the TLS versions, cipher suites and password hashes", NULL},
	{"block", "POST", "/v1/blocks", {{"filter", "FILTER", 0}}, NULL,
	 "block a topic filter: publishes refused, queued deliveries dropped", NULL},
	{"unblock", "DELETE", "/v1/blocks", {{"filter", "FILTER", 0}}, NULL,
	 "lift a topic filter's block", NULL},
	{"blocks", "GET", "/v1/blocks", {{0}}, NULL, "the blocked topic filters", NULL},
	{"kick", "POST", "/v1/kick", {{0}}, kick_opts,
	 "disconnect clients, by client id, user name, address or TLS identity", NULL},
	{"ban", "POST", "/v1/bans", {{0}}, ban_opts,
	 "ban an address, network, client id or user name", NULL},
	{"unban", "DELETE", "/v1/bans", {{0}}, selector_opts, "lift a ban", NULL},
	{"bans", "GET", "/v1/bans", {{0}}, NULL, "the bans in force", NULL},
	{"backup", "POST", "/v1/store/backup", {{"file", "FILE", ABSPATH}}, backup_opts,
	 "write a consistent copy of the store to FILE", NULL},
	{"rekey", "POST", "/v1/store/rekey", {{"key_file", "KEYFILE", ABSPATH}}, NULL,
	 "re-encrypt the store under the key in KEYFILE (it replaces the key file)", NULL},
	{"rotate", "POST", "/v1/store/rekey", {{0}}, NULL,
	 "re-encrypt the store under a fresh data key (the key file stays)", NULL},
	{"reload", "POST", "/v1/reload", {{0}}, NULL, "re-read the configuration files", NULL},
	{"lockdown", "POST", "/v1/lockdown", {{"state", "on|off", 0}}, NULL,
	 "refuse (on) or again accept (off) new connections", NULL},
	{"events", "GET", "/v1/events", {{0}}, events_opts,
	 "recent security events, newest last (default 100)", NULL},
	{"metrics", "GET", "/metrics", {{0}}, NULL, "the metrics, in Prometheus' text format", NULL},
	{"shutdown", "POST", "/v1/shutdown", {{0}}, NULL, "stop the broker", NULL},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *f)
{
	size_t i, k;

	fprintf(f, "Usage: moat ctl [-s SOCKET] [-c CONFIG] [--json] COMMAND [ARGS]\n\n"
		   "  -s SOCKET   the broker's admin socket\n"
		   "  -c CONFIG   find it in the broker's config (admin_socket, or\n"
		   "              persistence_location DIR: DIR/admin.sock)\n"
		   "  --json      print the answer's JSON as it came, not indented\n\n"
		   "Commands:\n");
	for (i = 0; i < NCMDS; i++) {
		const struct ctl_cmd *c = &cmds[i];
		char syn[64];
		int n = snprintf(syn, sizeof(syn), "%s", c->name);

		for (k = 0; k < MAX_POS && c->pos[k].param && n > 0 && (size_t)n < sizeof(syn); k++)
			n += snprintf(syn + n, sizeof(syn) - (size_t)n, " %s", c->pos[k].metavar);
		fprintf(f, "  %-18s %s\n", syn, c->help);
		for (k = 0; c->opts && c->opts[k].flag; k++)
			fprintf(f, "  %-18s   %s %s\n", "", c->opts[k].flag, c->opts[k].metavar);
	}
	fprintf(f, "\nExit status: 0 done, 1 the broker refused or failed, 2 usage, "
		   "3 the socket cannot be reached.\n");
}

/* ---- a growable string ---- */

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void bput(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void bputs(struct buf *b, const char *s)
{
	bput(b, s, strlen(s));
}

/* Appends s percent-encoded: everything but RFC 3986's unreserved characters. */
static void bput_enc(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			bput(b, (const char *)&c, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			bput(b, e, 3);
		}
	}
}

/* ---- finding the socket ---- */

/* Scans CONFIG for admin_socket / persistence_location. Returns 0 and out, or -1. */
static int socket_from_config(const char *file, char *out, size_t cap)
{
	char line[4096], found_dir[PATH_MAX] = "";
	FILE *f = fopen(file, "r");
	bool found = false;

	if (!f) {
		fprintf(stderr, "moat ctl: %s: %s\n", file, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *k = line, *v, *e;

		while (*k == ' ' || *k == '\t')
			k++;
		for (v = k; *v && *v != ' ' && *v != '\t' && *v != '\n' && *v != '\r'; v++)
			;
		if (!*v || *v == '\n' || *v == '\r')
			continue;
		*v++ = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		e = v + strlen(v);
		while (e > v && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (!*v)
			continue;
		if (strcmp(k, "admin_socket") == 0) {
			snprintf(out, cap, "%s", v);
			found = true;
		} else if (strcmp(k, "persistence_location") == 0) {
			snprintf(found_dir, sizeof(found_dir), "%s", v);
		}
	}
	fclose(f);
	if (found)
		return 0;
	if (found_dir[0]) {
		size_t n = strlen(found_dir);
		int k = snprintf(out, cap, "%s%sadmin.sock", found_dir,
				 found_dir[n - 1] == '/' ? "" : "/");

		if (k > 0 && (size_t)k < cap)
			return 0;
		fprintf(stderr, "moat ctl: %s: persistence_location too long\n", file);
		return -1;
	}
	fprintf(stderr, "moat ctl: %s names no admin_socket nor persistence_location; "
			"pass -s SOCKET\n", file);
	return -1;
}

/* FILE made absolute: the real path of its directory, then its name. Returns 0 or -1. */
static int absolute(const char *file, char *out, size_t cap)
{
	char dir[PATH_MAX], real[PATH_MAX];
	const char *slash = strrchr(file, '/'), *base = slash ? slash + 1 : file;
	int n;

	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
		fprintf(stderr, "moat ctl: %s: not a file name\n", file);
		return -1;
	}
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == file)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file), file);
	if (!realpath(dir, real)) {
		fprintf(stderr, "moat ctl: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	n = snprintf(out, cap, "%s%s%s", real, strcmp(real, "/") ? "/" : "", base);
	if (n < 0 || (size_t)n >= cap) {
		fprintf(stderr, "moat ctl: %s: path too long\n", file);
		return -1;
	}
	return 0;
}

/* ---- the request ---- */

static const char *opt_param(const struct ctl_cmd *c, const char *flag, size_t flen)
{
	size_t i;

	for (i = 0; c->opts && c->opts[i].flag; i++)
		if (strlen(c->opts[i].flag) == flen && strncmp(c->opts[i].flag, flag, flen) == 0)
			return c->opts[i].param;
	return NULL;
}

static void add_param(struct buf *q, const char *name, const char *value)
{
	bputs(q, q->len ? "&" : "");
	bput_enc(q, name);
	bputs(q, "=");
	bput_enc(q, value);
}

/*
 * Builds the request target of c from its arguments argv[1..argc) into t.
 * Returns 0, or 2 (usage, said on stderr).
 */
/*
 * A secret (a password) comes from stdin, never from the command line, where
 * ps shows it: one line, its newline removed; a terminal gets a prompt
 * without echo.
 */
static int read_secret(const struct ctl_cmd *c, struct buf *q)
{
	char line[1024];
	struct termios old, quiet;
	bool tty = isatty(0) && tcgetattr(0, &old) == 0;
	size_t n;

	if (tty) {
		fprintf(stderr, "%s: ", c->secret);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(0, TCSAFLUSH, &quiet);
	}
	char *got = fgets(line, sizeof(line), stdin);
	if (tty) {
		tcsetattr(0, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	n = got ? strcspn(line, "\r\n") : 0;
	if (!got || n == 0) {
		fprintf(stderr, "moat ctl %s: no %s on stdin\n", c->name, c->secret);
		return -1;
	}
	line[n] = 0;
	add_param(q, c->secret, line);
	explicit_bzero(line, sizeof(line));
	return 0;
}

static int build_target(const struct ctl_cmd *c, int argc, char **argv, struct buf *t)
{
	struct buf q = {0};
	const char *tail = NULL;
	size_t npos = 0, want = 0;
	int i, rc = 2;

	while (want < MAX_POS && c->pos[want].param)
		want++;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strncmp(a, "--", 2) == 0 && a[2]) {
			const char *eq = strchr(a, '=');
			size_t flen = eq ? (size_t)(eq - a) : strlen(a);
			const char *p = opt_param(c, a, flen), *v;

			if (!p) {
				fprintf(stderr, "moat ctl %s: unknown option %.*s\n", c->name,
					(int)flen, a);
				goto out;
			}
			if (eq) {
				v = eq + 1;
			} else if (i + 1 < argc) {
				v = argv[++i];
			} else {
				fprintf(stderr, "moat ctl %s: %s needs a value\n", c->name, a);
				goto out;
			}
			add_param(&q, p, v);
			continue;
		}
		if (npos == want) {
			fprintf(stderr, "moat ctl %s: unexpected argument '%s'\n", c->name, a);
			goto out;
		}
		if (c->pos[npos].flags & ABSPATH) {
			char abs[PATH_MAX];

			if (absolute(a, abs, sizeof(abs)) < 0) {
				rc = 1;
				goto out;
			}
			add_param(&q, c->pos[npos].param, abs);
		} else if (strcmp(c->pos[npos].param, "*") == 0) {
			tail = a;
		} else {
			add_param(&q, c->pos[npos].param, a);
		}
		npos++;
	}
	if (npos != want) {
		fprintf(stderr, "moat ctl %s: missing %s\n", c->name, c->pos[npos].metavar);
		goto out;
	}
	if (c->secret && read_secret(c, &q) < 0)
		goto out;
	if (tail) {
		if (!*tail) {
			fprintf(stderr, "moat ctl %s: an empty %s\n", c->name, c->pos[0].metavar);
			goto out;
		}
		bput(t, c->path, strlen(c->path) - 1);
		bput_enc(t, tail);
	} else {
		bputs(t, c->path);
	}
	if (q.len) {
		bputs(t, "?");
		bput(t, q.p, q.len);
	}
	if (t->oom || q.oom) {
		fprintf(stderr, "moat ctl: out of memory\n");
		rc = 1;
	} else if (t->len > TARGET_MAX) {
		fprintf(stderr, "moat ctl %s: the arguments are too long\n", c->name);
	} else {
		rc = 0;
	}
out:
	free(q.p);
	return rc;
}

/* Sends the request and reads the whole answer into r. Returns 0, 1 (said), 3 (unreachable). */
static int exchange(const char *sock, const char *method, const char *target, struct buf *r)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct buf req = {0};
	size_t off = 0;
	int fd;

	if (strlen(sock) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "moat ctl: socket path %s is too long\n", sock);
		return 3;
	}
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "moat ctl: cannot reach the admin socket %s: %s (is moatd running?)\n",
			sock, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 3;
	}
	bputs(&req, method);
	bputs(&req, " ");
	bputs(&req, target);
	bputs(&req, " HTTP/1.1\r\nHost: moat\r\nUser-Agent: moat-ctl\r\n");
	if (strcmp(method, "GET") != 0)
		bputs(&req, "Content-Length: 0\r\n");
	bputs(&req, "Connection: close\r\n\r\n");
	/* A refusal may come before we finish writing: then read it anyway. */
	while (!req.oom && off < req.len) {
		ssize_t w = send(fd, req.p + off, req.len - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	free(req.p);
	for (;;) {
		char chunk[65536];
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && r->len == 0) {
			fprintf(stderr, "moat ctl: reading the answer: %s\n", strerror(errno));
			close(fd);
			return 1;
		}
		if (n <= 0)
			break;
		if (r->len + (size_t)n > RESPONSE_MAX) {
			fprintf(stderr, "moat ctl: the answer is too large\n");
			close(fd);
			return 1;
		}
		bput(r, chunk, (size_t)n);
		if (r->oom) {
			fprintf(stderr, "moat ctl: out of memory\n");
			close(fd);
			return 1;
		}
	}
	close(fd);
	return 0;
}

/* ---- the answer ---- */

struct answer {
	int status;
	bool json;
	const char *body;
	size_t len;
};

/* Splits the raw answer. Returns 0, or -1 if it is not an HTTP/1.1 answer. */
static int parse_answer(const char *r, size_t n, struct answer *a)
{
	const char *end, *l;
	long clen = -1;

	if (n < 13 || memcmp(r, "HTTP/1.1 ", 9) != 0 || r[9] < '1' || r[9] > '5' ||
	    r[10] < '0' || r[10] > '9' || r[11] < '0' || r[11] > '9')
		return -1;
	a->status = (r[9] - '0') * 100 + (r[10] - '0') * 10 + (r[11] - '0');
	end = memmem(r, n, "\r\n\r\n", 4);
	if (!end)
		return -1;
	a->json = false;
	for (l = memchr(r, '\n', (size_t)(end - r)); l && l < end; l = memchr(l, '\n', (size_t)(end - l))) {
		l++;
		if (strncasecmp(l, "content-type:", 13) == 0) {
			const char *v = l + 13;
			while (*v == ' ')
				v++;
			a->json = strncasecmp(v, "application/json", 16) == 0;
		} else if (strncasecmp(l, "content-length:", 15) == 0) {
			clen = strtol(l + 15, NULL, 10);
		}
	}
	a->body = end + 4;
	a->len = n - (size_t)(a->body - r);
	if (clen >= 0) {
		if ((size_t)clen > a->len)
			return -1; /* cut short */
		a->len = (size_t)clen;
	}
	return 0;
}

static void indent(FILE *f, int depth)
{
	fputc('\n', f);
	for (int i = 0; i < depth; i++)
		fputs("  ", f);
}

/* Re-indents the JSON text s[0..n) with two spaces a level; strings kept byte for byte. */
static void pretty(FILE *f, const char *s, size_t n)
{
	bool in_str = false, esc = false;
	int depth = 0;
	size_t i, k;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (in_str) {
			fputc(c, f);
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		switch (c) {
		case ' ': case '\t': case '\n': case '\r':
			break;
		case '"':
			in_str = true;
			fputc(c, f);
			break;
		case '{': case '[':
			fputc(c, f);
			for (k = i + 1; k < n && strchr(" \t\r\n", s[k]) && s[k]; k++)
				;
			if (k < n && (s[k] == '}' || s[k] == ']')) {
				fputc(s[k], f); /* {} and [] stay on one line */
				i = k;
			} else {
				indent(f, ++depth);
			}
			break;
		case '}': case ']':
			indent(f, depth > 0 ? --depth : 0);
			fputc(c, f);
			break;
		case ',':
			fputc(c, f);
			indent(f, depth);
			break;
		case ':':
			fputs(": ", f);
			break;
		default:
			fputc(c, f);
		}
	}
	fputc('\n', f);
}

/* Appends the UTF-8 of cp to b, a control character as '?'. */
static void put_cp(struct buf *b, unsigned cp)
{
	char u[4];

	if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
		bputs(b, "?");
	else if (cp < 0x80)
		u[0] = (char)cp, bput(b, u, 1);
	else if (cp < 0x800)
		u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), bput(b, u, 2);
	else
		u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
		u[2] = (char)(0x80 | (cp & 0x3f)), bput(b, u, 3);
}

/* The top-level "error" string of a JSON object s[0..n), unescaped into out; false if none. */
static bool error_of(const char *s, size_t n, struct buf *out)
{
	const char *key = "\"error\":\"", *p;
	size_t i;

	/* The server writes it first and compact: {"error":"..."}. */
	if (n < 11 || s[0] != '{' || memcmp(s + 1, key, strlen(key)) != 0)
		return false;
	p = s + 1 + strlen(key);
	for (i = (size_t)(p - s); i < n && s[i] != '"'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c != '\\') {
			if (c < 0x20 || c == 0x7f)
				bputs(out, "?");
			else
				bput(out, s + i, 1);
			continue;
		}
		if (++i >= n)
			return false;
		switch (s[i]) {
		case 'n': case 'r': case 't': case 'b': case 'f':
			bputs(out, " ");
			break;
		case 'u': {
			unsigned cp = 0;
			int k;

			for (k = 1; k <= 4; k++) {
				int h = moat_hex_digit(i + (size_t)k < n ? (unsigned char)s[i + (size_t)k]
									  : 'x');
				cp = cp << 4 | (unsigned)(h < 0 ? 0 : h);
			}
			i += 4;
			put_cp(out, cp >= 0xd800 && cp < 0xe000 ? '?' : cp);
			break;
		}
		default:
			bput(out, s + i, 1);
		}
	}
	return !out->oom && i < n;
}

/* Prints the answer and returns the exit status. */
static int report(const char *raw, size_t n, bool raw_json)
{
	struct answer a;
	struct buf msg = {0};
	int rc;

	if (parse_answer(raw, n, &a) < 0) {
		fprintf(stderr, "moat ctl: the broker's answer is not HTTP/1.1 or was cut short\n");
		return 1;
	}
	if (a.status >= 200 && a.status < 300) {
		if (a.json && !raw_json && a.len)
			pretty(stdout, a.body, a.len);
		else
			fwrite(a.body, 1, a.len, stdout);
		if (a.json && raw_json && a.len && a.body[a.len - 1] != '\n')
			fputc('\n', stdout);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (a.json && error_of(a.body, a.len, &msg)) {
		fprintf(stderr, "moat ctl: %s\n", msg.p);
		rc = 1;
	} else {
		fprintf(stderr, "moat ctl: the broker answered %d\n", a.status);
		fwrite(a.body, 1, a.len, stderr);
		rc = 1;
	}
	free(msg.p);
	return rc;
}

int moat_cmd_ctl(int argc, char **argv)
{
	const char *sock = NULL, *conf = NULL;
	char path[PATH_MAX];
	const struct ctl_cmd *c = NULL;
	struct buf target = {0}, resp = {0};
	bool raw_json = false;
	int i, rc;
	size_t k;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if ((strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc) {
			if (argv[i][1] == 's')
				sock = argv[++i];
			else
				conf = argv[++i];
		} else if (strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "-c") == 0) {
			fprintf(stderr, "moat ctl: %s needs a value\n", argv[i]);
			return 2;
		} else if (strcmp(argv[i], "--json") == 0) {
			raw_json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "moat ctl: unknown option %s\n\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i == argc) {
		usage(stderr);
		return 2;
	}
	for (k = 0; k < NCMDS; k++)
		if (strcmp(argv[i], cmds[k].name) == 0)
			c = &cmds[k];
	if (!c) {
		fprintf(stderr, "moat ctl: unknown command '%s'\n\n", argv[i]);
		usage(stderr);
		return 2;
	}
	if (i + 1 < argc && (strcmp(argv[i + 1], "--help") == 0 || strcmp(argv[i + 1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (!sock && conf) {
		if (socket_from_config(conf, path, sizeof(path)) < 0)
			return 2;
		sock = path;
	}
	if (!sock) {
		fprintf(stderr, "moat ctl: which broker? pass -s SOCKET (or -c CONFIG)\n");
		return 2;
	}
	rc = build_target(c, argc - i, argv + i, &target);
	if (rc == 0)
		rc = exchange(sock, c->method, target.p, &resp);
	if (rc == 0)
		rc = report(resp.p ? resp.p : "", resp.len, raw_json);
	free(target.p);
	free(resp.p);
	return rc;
}
