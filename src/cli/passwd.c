/*
 * passwd.c - `moat passwd`: manage password files, with mosquitto_passwd's
 * flags, messages and exit codes.
 *
 *   moat passwd [-H ALGO] [-c | -D] FILE USER         asks for the password
 *   moat passwd [-H ALGO] [-c] -b FILE USER PASSWORD  batch: password as an argument
 *   moat passwd [-H ALGO] -U FILE                     hashes plain-text passwords
 *
 * The password is never taken from the command line without -b. Asked for,
 * it is read twice from the terminal (/dev/tty) with echo off when standard
 * input is a terminal, else once, as the first line of standard input (for
 * scripts, and so that it never shows in `ps`). A -b password is wiped from
 * argv once copied, which hides it from `ps` after the first moment; every
 * copy is wiped before exit.
 *
 * -c creates the file or overwrites an existing one, as mosquitto_passwd
 * does. Every change is written atomically by moat_passwd_edit (a temporary
 * file renamed over the old one, mode 0600), keeping the other lines and
 * comments. -U hashes, with the -H algorithm, every entry whose hash moat
 * does not recognise, taking it as a plain-text password (mosquitto_passwd -U
 * hashes every entry; here files already hashed are left alone). After a
 * change, a file that moatd would refuse (lines kept as they were) is
 * reported with a warning.
 *
 * Exit codes: 0 done; 1 for usage errors and every failure (file, user not
 * found with -D, empty password); 2 when the two passwords typed differ.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/error.h"
#include "security/passwd.h"

#define PW_MAX 65535  /* mosquitto_passwd's limit */
#define HASH_CAP 512

struct pw_conf {
	enum moat_pw_algo algo;
	bool batch, create, del, upgrade;
	const char *file, *user;
	char *password_arg; /* -b: argv's copy, wiped once read */
};

static void usage(FILE *f)
{
	fprintf(f,
		"moat passwd manages password files for moat (and Mosquitto).\n\n"
		"Usage: moat passwd [-H algorithm] [-c | -D] passwordfile username\n"
		"       moat passwd [-H algorithm] [-c] -b passwordfile username password\n"
		"       moat passwd [-H algorithm] -U passwordfile\n"
		" -b : run in batch mode to allow passing passwords on the command line.\n"
		" -c : create a new password file. This will overwrite existing files.\n"
		" -D : delete the username rather than adding/updating its password.\n"
		" -H : the hashing algorithm: argon2id (the default), sha512-pbkdf2 (readable\n"
		"      by Mosquitto 2.0), scram-sha-256 or scram-sha-512 (for MQTT 5.0 SCRAM).\n"
		" -U : hash the plain-text passwords of a password file.\n\n"
		"Without -b the password is read twice from the terminal, not echoed, or once,\n"
		"as the first line of standard input when that is not a terminal.\n");
}

/* ---- reading a password ---- */

static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t echo_off;

/* SIGINT/SIGTERM while echo is off: give the terminal back, then die of the signal. */
static void on_signal(int sig)
{
	if (echo_off)
		tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Reads one line from fd into buf (cap bytes, NUL-terminated, without the
 * line end), a byte at a time so nothing past the line is consumed. Returns
 * 0, 1 if the line is too long, or -1 on a read error.
 */
static int read_line(int fd, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;
	bool too_long = false;
	ssize_t k;
	char c;

	for (;;) {
		k = read(fd, &c, 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		if (k == 0 || c == '\n')
			break;
		if (n + 1 < cap)
			buf[n++] = c;
		else
			too_long = true;
	}
	if (n && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	*len = n;
	return too_long ? 1 : 0;
}

/* Prints prompt on the terminal and reads a line with echo off. */
static int ask(const char *prompt, char *buf, size_t cap, size_t *len)
{
	struct termios t;
	bool have_term = tcgetattr(tty_fd, &tty_saved) == 0;
	int rc;

	if (write(tty_fd, prompt, strlen(prompt)) < 0)
		return -1;
	if (have_term) {
		t = tty_saved;
		t.c_lflag &= ~(tcflag_t)ECHO;
		t.c_lflag |= ECHONL;
		echo_off = 1;
		if (tcsetattr(tty_fd, TCSAFLUSH, &t) < 0)
			echo_off = 0;
	}
	rc = read_line(tty_fd, buf, cap, len);
	if (echo_off) {
		tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
		echo_off = 0;
	}
	return rc;
}

/*
 * Gets the password into pw (cap bytes): twice from the terminal, or once
 * from standard input. Returns 0, or the exit code after a message.
 */
static int get_password(char *pw, char *again, size_t cap, size_t *len)
{
	size_t len2 = 0;
	int rc;

	if (!isatty(STDIN_FILENO)) {
		tty_fd = STDIN_FILENO;
		rc = read_line(STDIN_FILENO, pw, cap, len);
	} else {
		tty_fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
		if (tty_fd < 0)
			tty_fd = STDIN_FILENO;
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		rc = ask("Password: ", pw, cap, len);
		if (rc == 0)
			rc = ask("Reenter password: ", again, cap, &len2);
		if (tty_fd != STDIN_FILENO)
			close(tty_fd);
		if (rc == 0 && (len2 != *len || memcmp(pw, again, *len) != 0)) {
			fprintf(stderr, "Error: Passwords do not match.\n");
			return 2;
		}
	}
	if (rc == 0 && *len > PW_MAX)
		rc = 1;
	if (rc < 0) {
		fprintf(stderr, "Error: Unable to read the password: %s.\n", strerror(errno));
		return 1;
	}
	if (rc > 0) {
		fprintf(stderr, "Error: Password must be less than 65536 characters long.\n");
		return 1;
	}
	if (*len == 0) {
		fprintf(stderr, "Error: Empty password.\n");
		return 1;
	}
	return 0;
}

/* ---- options ---- */

static int set_algo(struct pw_conf *c, const char *name)
{
	if (name && strcmp(name, "sha512") == 0) {
		fprintf(stderr, "Error: Hash type 'sha512' ($6$) is too weak to write; moat only "
				"reads it. Use sha512-pbkdf2 for Mosquitto.\n");
		return -1;
	}
	if (moat_passwd_algo(name, &c->algo) < 0) {
		fprintf(stderr, "Error: Unknown hash type '%s'\n", name);
		return -1;
	}
	return 0;
}

/* Flags, mosquitto_passwd's way: all before the file. Returns the first operand's index, or -1. */
static int parse_flags(struct pw_conf *c, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-H") == 0) {
			if (i + 1 == argc) {
				fprintf(stderr, "Error: -H argument given but not enough other "
						"arguments.\n");
				return -1;
			}
			if (set_algo(c, argv[++i]) < 0)
				return -1;
		} else if (strcmp(argv[i], "-b") == 0) {
			c->batch = true;
		} else if (strcmp(argv[i], "-c") == 0) {
			c->create = true;
		} else if (strcmp(argv[i], "-D") == 0) {
			c->del = true;
		} else if (strcmp(argv[i], "-U") == 0) {
			c->upgrade = true;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "Error: Unknown option '%s'.\n\n", argv[i]);
			usage(stderr);
			return -1;
		} else {
			break;
		}
	}
	return i;
}

static int check_combination(const struct pw_conf *c)
{
	const char *msg = NULL;

	if (c->create && c->del)
		msg = "-c and -D";
	else if (c->create && c->upgrade)
		msg = "-c and -U";
	else if (c->del && c->upgrade)
		msg = "-D and -U";
	else if (c->del && c->batch)
		msg = "-b and -D";
	else if (c->upgrade && c->batch)
		msg = "-b and -U";
	if (msg)
		fprintf(stderr, "Error: %s cannot be used together.\n", msg);
	return msg ? -1 : 0;
}

/* The operands argv[i..argc): file, user and (-b) password, checked as mosquitto_passwd does. */
static int take_operands(struct pw_conf *c, int i, int argc, char **argv)
{
	int want = c->upgrade ? 1 : c->batch ? 3 : 2;

	if (argc - i != want) {
		if (c->create || c->del || c->upgrade)
			fprintf(stderr, "Error: %s argument given but %s missing.\n",
				c->create ? "-c" : c->del ? "-D" : "-U",
				c->upgrade ? "password file"
				: c->batch ? "password file, username, or password"
					   : "password file or username");
		else
			usage(stdout);
		return -1;
	}
	c->file = argv[i];
	c->user = c->upgrade ? NULL : argv[i + 1];
	c->password_arg = c->batch ? argv[i + 2] : NULL;
	return 0;
}

static int check_user(const char *user)
{
	size_t i, n = strlen(user);

	if (n > PW_MAX) {
		fprintf(stderr, "Error: Username must be less than 65536 characters long.\n");
		return -1;
	}
	for (i = 0; i < n; i++) {
		if ((unsigned char)user[i] < 0x20 || user[i] == 0x7f) {
			fprintf(stderr, "Error: Username must not contain control characters.\n");
			return -1;
		}
	}
	if (strchr(user, ':')) {
		fprintf(stderr, "Error: Username must not contain the ':' character.\n");
		return -1;
	}
	return 0;
}

/* ---- actions ---- */

/* Hashes pw and sets user's entry (create: in a new file). Returns the exit code. */
static int set_user(const struct pw_conf *c, const char *user, const char *pw, size_t len,
		    bool create)
{
	char hash[HASH_CAP], err[512];
	int rc;

	rc = moat_passwd_hash(c->algo, (const uint8_t *)pw, len, hash, sizeof(hash));
	if (rc < 0) {
		fprintf(stderr, "Error: Unable to hash password: %s.\n", moat_strerror(rc));
		return 1;
	}
	rc = moat_passwd_edit(c->file, user, hash, create, err, sizeof(err));
	explicit_bzero(hash, sizeof(hash));
	if (rc < 0) {
		fprintf(stderr, "Error: %s.\n", err);
		return 1;
	}
	return 0;
}

static int delete_user(const struct pw_conf *c)
{
	char err[512];
	int rc = moat_passwd_edit(c->file, c->user, NULL, false, err, sizeof(err));

	if (rc == MOAT_ENOTFOUND) {
		fprintf(stderr, "Warning: User %s not found in password file.\n", c->user);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "Error: %s.\n", err);
		return 1;
	}
	return 0;
}

static bool file_readable(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "Error: Unable to open password file %s. %s.\n", path,
			strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

/* Is h a hash moat reads (as opposed to a plain-text password)? */
static bool is_hash(const char *h)
{
	struct moat_passwd *p = NULL;
	size_t n = strlen(h);
	char *line = malloc(n + 4);
	bool ok;

	if (!line)
		return true; /* leave the entry alone */
	memcpy(line, "u:", 2);
	memcpy(line + 2, h, n);
	memcpy(line + 2 + n, "\n", 2);
	ok = moat_passwd_parse(line, n + 3, "-", &p, NULL, 0) == 0;
	moat_passwd_free(p);
	explicit_bzero(line, n + 3);
	free(line);
	return ok;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/*
 * One line of -U: if it holds a plain-text password, hashes it into the file.
 * Returns 0, or the exit code after a message.
 */
static int upgrade_line(const struct pw_conf *c, char *line, unsigned no)
{
	char *t = trim(line), *colon, *user, *pw;

	if (*t == '\0' || *t == '#')
		return 0;
	colon = strchr(t, ':');
	if (colon)
		*colon = '\0';
	user = trim(t);
	pw = colon ? trim(colon + 1) : NULL;
	if (!pw || *user == '\0' || *pw == '\0') {
		fprintf(stderr, "Error: Corrupt password file at line %u.\n", no);
		return 1;
	}
	if (is_hash(pw))
		return 0;
	if (check_user(user) < 0)
		return 1;
	return set_user(c, user, pw, strlen(pw), false);
}

/*
 * -U: the file is read through once; each plain-text entry is hashed and
 * written back (each write atomic, so an interrupted run leaves a valid file
 * with some entries done: run it again).
 */
static int upgrade(const struct pw_conf *c)
{
	FILE *f = fopen(c->file, "re");
	char *line = NULL;
	size_t cap = 0;
	unsigned no = 0;
	int rc = 0;

	if (!f) {
		fprintf(stderr, "Error: Unable to open password file %s. %s.\n", c->file,
			strerror(errno));
		return 1;
	}
	while (rc == 0 && getline(&line, &cap, f) >= 0)
		rc = upgrade_line(c, line, ++no);
	if (line)
		explicit_bzero(line, cap);
	free(line);
	fclose(f);
	return rc;
}

/* Adding or changing a user (with -c: in a new file). */
static int add_user(struct pw_conf *c)
{
	static char pw[PW_MAX + 2], again[PW_MAX + 2];
	size_t len = 0;
	int rc;

	if (!c->create && !file_readable(c->file))
		return 1;
	if (c->batch) {
		len = strlen(c->password_arg);
		rc = len > PW_MAX ? 1 : len == 0 ? 1 : 0;
		if (rc == 0)
			memcpy(pw, c->password_arg, len + 1);
		explicit_bzero(c->password_arg, len);
		if (rc)
			fprintf(stderr, len ? "Error: Password must be less than 65536 characters "
					      "long.\n"
					    : "Error: Empty password.\n");
	} else {
		rc = get_password(pw, again, sizeof(pw), &len);
	}
	if (rc == 0)
		rc = set_user(c, c->user, pw, len, c->create);
	explicit_bzero(pw, sizeof(pw));
	explicit_bzero(again, sizeof(again));
	return rc;
}

/* After a change: says so if moatd would refuse the file (lines this tool keeps as they are). */
static int warn_unloadable(const char *path, int rc)
{
	struct moat_passwd *p = NULL;
	char err[512];

	if (rc == 0 && moat_passwd_load(path, &p, err, sizeof(err)) < 0)
		fprintf(stderr, "Warning: moatd will refuse this file: %s\n", err);
	moat_passwd_free(p);
	return rc;
}

int moat_cmd_passwd(int argc, char **argv)
{
	struct pw_conf c = {.algo = MOAT_PW_ARGON2ID};
	int i;

	if (argc == 1) {
		usage(stdout);
		return 1;
	}
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if ((i = parse_flags(&c, argc, argv)) < 0 || check_combination(&c) < 0 ||
	    take_operands(&c, i, argc, argv) < 0)
		return 1;
	if (c.user && check_user(c.user) < 0)
		return 1;
	if (c.upgrade)
		return warn_unloadable(c.file, upgrade(&c));
	if (c.del)
		return warn_unloadable(c.file, delete_user(&c));
	return warn_unloadable(c.file, add_user(&c));
}
