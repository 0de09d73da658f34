/*
 * internal.h - what the files of src/config/ share; not part of its API.
 *
 *   lexer.c       lines, words, value syntax (numbers, booleans, durations),
 *                 reading a file, listing a directory; knows no directive.
 *   directives.c  the table of supported directives and the reader that
 *                 applies a text to a config (include_dir included).
 *   refused.c     the table of Mosquitto directives moat knows but refuses.
 *   config.c      the config object: defaults, deep copy, free, the
 *                 transactional parse/load, the default listener, reload.
 *
 * The lexer works on caller-owned, mutable text: words are cut out by
 * writing NULs into it, so no token is ever allocated.
 */
#ifndef MOAT_CONFIG_INTERNAL_H
#define MOAT_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* ---- lexer.c ---- */

#define MOAT_CONFIG_MAX_LINE 4096                  /* bytes, "\r\n" or "\n" excluded */
#define MOAT_CONFIG_MAX_FILE (16u * 1024u * 1024u) /* bytes in one file */

/* Walks the lines of a text of known length (it may hold NUL bytes). */
struct moat_config_lexer {
	char *text;
	size_t len;
	size_t pos;
	int line; /* number of the line last returned, 1-based */
};

/* What moat_config_lex_line found wrong with a line. */
enum { MOAT_LEX_LONG = 1, MOAT_LEX_NUL = 2 };

void moat_config_lex_init(struct moat_config_lexer *lx, char *text, size_t len);

/*
 * Returns the next line in *line, NUL-terminated in place with its '\n' and
 * any '\r' before it removed, and lx->line set to its number. Returns 1 for a
 * line, 0 at the end of the text, or -MOAT_LEX_NUL (holds a NUL byte) /
 * -MOAT_LEX_LONG (longer than MOAT_CONFIG_MAX_LINE without its line end);
 * lx->line names the faulty line and reading may go on after it.
 */
int moat_config_lex_line(struct moat_config_lexer *lx, char **line);

/* Returns true for the blanks that separate words: space, tab, CR, VT, FF. */
bool moat_config_lex_blank(char ch);

/* Cuts leading and trailing blanks off s, in place; returns the new start. */
char *moat_config_lex_trim(char *s);

/*
 * Cuts the first word off *s: returns it NUL-terminated (in place), and
 * leaves *s at the next word or at the terminating NUL. Returns NULL if *s
 * holds only blanks.
 */
char *moat_config_lex_word(char **s);

/* Results of the value scanners. */
enum { MOAT_LEX_OK = 0, MOAT_LEX_NOTNUM = -1, MOAT_LEX_RANGE = -2 };

/*
 * Scans a decimal integer: an optional '-' then ASCII digits, nothing else
 * (no '+', no hex, no exponent, no fraction, no blanks; leading zeros are
 * decimal). Writes the sign to *neg and the magnitude to *mag. Returns
 * MOAT_LEX_OK, MOAT_LEX_NOTNUM, or MOAT_LEX_RANGE if the magnitude exceeds
 * UINT64_MAX.
 */
int moat_config_lex_number(const char *s, bool *neg, uint64_t *mag);

/* Scans exactly "true" or "false". Returns MOAT_LEX_OK or MOAT_LEX_NOTNUM. */
int moat_config_lex_bool(const char *s, bool *v);

/*
 * Scans a Mosquitto duration: a positive integer followed by one unit, h
 * (hour), d (day), w (week), m (30 days) or y (365 days). Writes seconds.
 * Returns MOAT_LEX_OK, MOAT_LEX_NOTNUM (syntax, unit, or zero) or
 * MOAT_LEX_RANGE (does not fit in int64_t seconds).
 */
int moat_config_lex_duration(const char *s, int64_t *seconds);

/*
 * Reads the whole file at path into *buf (returns owned, NUL-terminated,
 * free with free()) and its length into *len. Returns 0, or a negative errno
 * value: the open/read error, -EFBIG past MOAT_CONFIG_MAX_FILE, -ENOMEM.
 */
int moat_config_lex_read(const char *path, char **buf, size_t *len);

/*
 * Lists the entries of dir whose names end in ".conf" (and are longer than
 * that), as "dir/name" paths sorted by name ignoring ASCII case, ties broken
 * by byte value. *paths returns owned (free with moat_config_lex_dir_free).
 * Returns 0 or a negative errno value.
 */
int moat_config_lex_dir(const char *dir, char ***paths, size_t *n);

void moat_config_lex_dir_free(char **paths, size_t n);

/*
 * For a negative errno from moat_config_lex_read or _dir: the moat code
 * (MOAT_ENOMEM, MOAT_ECONFIG for -EFBIG, else MOAT_EIO) and the reason to
 * print (strerror, or the size limit). The reason is a static string.
 */
int moat_config_lex_code(int neg_errno);
const char *moat_config_lex_reason(int neg_errno);

/* ---- directives.c ---- */

enum moat_config_vtype {
	MOAT_CFG_BOOL,     /* exactly true or false */
	MOAT_CFG_UINT,     /* decimal integer in [min, max] */
	MOAT_CFG_INT,      /* the same, min may be negative */
	MOAT_CFG_BYTES,    /* a count of bytes: as UINT, messages say "bytes" */
	MOAT_CFG_DURATION, /* Mosquitto duration (1h, 2d, 1w, 1m, 1y) in int64_t seconds */
	MOAT_CFG_STRING,   /* the rest of the line, UTF-8, owned copy */
	MOAT_CFG_ENUM,     /* one of the words of names */
	MOAT_CFG_CUSTOM,   /* a handler of its own */
};

enum {
	MOAT_CFG_LISTENER = 1 << 0, /* listener scope: the field is in moat_listener_conf */
	MOAT_CFG_RELOAD = 1 << 1,   /* moat_config_apply_reload copies it into a live config */
	MOAT_CFG_MOAT = 1 << 2,     /* moat's own directive, not Mosquitto's */
	MOAT_CFG_ONE_VALUE = 1 << 3, /* per listener in Mosquitto, one value for all in moat */
	MOAT_CFG_TOPIC = 1 << 4,    /* string value may not hold '+' or '#' */
	MOAT_CFG_LOGFILE = 1 << 5,  /* its field travels with log_file (log_dest) */
};

struct moat_config_enum {
	const char *name;
	uint8_t value;
};

struct moat_config_parser;

/*
 * One supported directive. width is the size of its field (at off in struct
 * moat_config, or in struct moat_listener_conf with MOAT_CFG_LISTENER), 0
 * when it has none of its own (listener, port, bind_address, include_dir).
 * min and max bound numbers; names lists an enum's words; set handles a
 * MOAT_CFG_CUSTOM directive and receives the trimmed, non-empty value.
 */
struct moat_config_directive {
	const char *name;
	uint8_t type;
	uint8_t flags;
	uint8_t width;
	size_t off;
	int64_t min;
	uint64_t max;
	const struct moat_config_enum *names;
	int (*set)(struct moat_config_parser *p, const struct moat_config_directive *d,
		   char *value);
};

#define MOAT_CONFIG_MAX_DIRECTIVES 128 /* bound on the table's size, checked at build time */

extern const struct moat_config_directive moat_config_directives[];
extern const size_t moat_config_n_directives;

/*
 * Applies text (len bytes, text[len] == '\0', modified in place) to c,
 * named file in messages. canon is the file's canonical path (borrowed, may
 * be NULL), used to detect include loops. Not transactional: on failure c
 * holds part of the text (the caller works on a copy). Returns 0,
 * MOAT_ECONFIG, MOAT_EIO or MOAT_ENOMEM with "FILE:LINE: why" in err.
 */
int moat_config_read(struct moat_config *c, char *text, size_t len, const char *file,
		     const char *canon, char *err, size_t errlen);

/* ---- refused.c ---- */

/* Returns why moat refuses the Mosquitto directive name, or NULL if it is not one. */
const char *moat_config_refusal(const char *name);

/* ---- config.c ---- */

/*
 * Appends to c a listener built from c->defaults, on port and addr
 * (borrowed, NULL = all addresses), declared at file:line (borrowed, may be
 * NULL). Returns 0; MOAT_EEXIST if c already listens there (*dup says where,
 * if dup is not NULL); MOAT_ENOSPC if c has MOAT_CONFIG_MAX_LISTENERS; or
 * MOAT_ENOMEM. Nothing is added on failure.
 */
int moat_config_new_listener(struct moat_config *c, unsigned port, const char *addr,
			     const char *file, int line, const struct moat_listener_conf **dup);

#endif
