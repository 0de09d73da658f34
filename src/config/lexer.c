/*
 * lexer.c - lines, words and values of a config file (see internal.h).
 *
 * The syntax is Mosquitto's: one directive per line, words separated by
 * blanks, '#' starting a comment line. Numbers are stricter than Mosquitto's
 * atoi(): "12abc", "0x10", "1e9", "+5" and blanks inside are refused instead
 * of being read as some other number, and overflow is reported, never
 * wrapped. Nothing here allocates except moat_config_lex_read and _dir.
 */
#include "config/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void moat_config_lex_init(struct moat_config_lexer *lx, char *text, size_t len)
{
	lx->text = text;
	lx->len = len;
	lx->pos = 0;
	lx->line = 0;
}

int moat_config_lex_line(struct moat_config_lexer *lx, char **line)
{
	char *start, *nl;
	size_t rest, n;

	if (lx->pos >= lx->len)
		return 0;
	start = lx->text + lx->pos;
	rest = lx->len - lx->pos;
	nl = memchr(start, '\n', rest);
	n = nl ? (size_t)(nl - start) : rest;
	lx->pos += n + (nl ? 1 : 0);
	lx->line++;
	if (memchr(start, '\0', n))
		return -MOAT_LEX_NUL;
	while (n > 0 && start[n - 1] == '\r')
		n--;
	if (n > MOAT_CONFIG_MAX_LINE)
		return -MOAT_LEX_LONG;
	start[n] = '\0'; /* overwrites a '\r', the '\n', or the text's own terminator */
	*line = start;
	return 1;
}

bool moat_config_lex_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

char *moat_config_lex_trim(char *s)
{
	size_t n;

	while (moat_config_lex_blank(*s))
		s++;
	n = strlen(s);
	while (n > 0 && moat_config_lex_blank(s[n - 1]))
		s[--n] = '\0';
	return s;
}

char *moat_config_lex_word(char **s)
{
	char *p = *s, *word;

	while (moat_config_lex_blank(*p))
		p++;
	if (*p == '\0') {
		*s = p;
		return NULL;
	}
	word = p;
	while (*p != '\0' && !moat_config_lex_blank(*p))
		p++;
	if (*p != '\0')
		*p++ = '\0';
	while (moat_config_lex_blank(*p))
		p++;
	*s = p;
	return word;
}

int moat_config_lex_number(const char *s, bool *neg, uint64_t *mag)
{
	uint64_t v = 0;
	bool over = false;

	*neg = *s == '-';
	if (*neg)
		s++;
	if (*s < '0' || *s > '9')
		return MOAT_LEX_NOTNUM;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned digit = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - digit) / 10)
			over = true;
		else
			v = v * 10 + digit;
	}
	if (*s != '\0')
		return MOAT_LEX_NOTNUM;
	if (over)
		return MOAT_LEX_RANGE;
	*mag = v;
	return MOAT_LEX_OK;
}

/* Mosquitto's parser also takes 1 and 0, so a Mosquitto config that uses them keeps working. */
int moat_config_lex_bool(const char *s, bool *v)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
		*v = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
		*v = false;
	else
		return MOAT_LEX_NOTNUM;
	return MOAT_LEX_OK;
}

/* Seconds per Mosquitto duration unit, 0 if unit is not one. */
static int64_t unit_seconds(char unit)
{
	switch (unit) {
	case 'h':
		return 3600;
	case 'd':
		return 86400;
	case 'w':
		return 86400 * 7;
	case 'm':
		return 86400 * 30;
	case 'y':
		return 86400 * 365;
	default:
		return 0;
	}
}

int moat_config_lex_duration(const char *s, int64_t *seconds)
{
	char digits[32];
	size_t n = strlen(s);
	int64_t mult;
	uint64_t mag;
	bool neg;
	int rc;

	if (n < 2 || n > sizeof(digits))
		return n > sizeof(digits) ? MOAT_LEX_RANGE : MOAT_LEX_NOTNUM;
	mult = unit_seconds(s[n - 1]);
	if (mult == 0)
		return MOAT_LEX_NOTNUM;
	memcpy(digits, s, n - 1);
	digits[n - 1] = '\0';
	rc = moat_config_lex_number(digits, &neg, &mag);
	if (rc != MOAT_LEX_OK)
		return rc;
	if (neg || mag == 0)
		return MOAT_LEX_NOTNUM;
	if (mag > (uint64_t)(INT64_MAX / mult))
		return MOAT_LEX_RANGE;
	*seconds = (int64_t)mag * mult;
	return MOAT_LEX_OK;
}

/*
 * Reads all of f into a growing buffer; see moat_config_lex_read. The buffer
 * may grow to one byte past the limit, which is how a file just over it is
 * told from one exactly at it.
 */
static int read_all(FILE *f, char **buf, size_t *len)
{
	size_t cap = 4096, n = 0, got;
	char *b = malloc(cap + 1), *nb;

	if (!b)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			size_t ncap = cap * 2 > MOAT_CONFIG_MAX_FILE + 1 ? MOAT_CONFIG_MAX_FILE + 1
								  : cap * 2;
			if (cap > MOAT_CONFIG_MAX_FILE) {
				free(b);
				return -EFBIG;
			}
			nb = realloc(b, ncap + 1);
			if (!nb) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
			cap = ncap;
		}
		got = fread(b + n, 1, cap - n, f);
		if (got == 0)
			break;
		n += got;
	}
	if (ferror(f)) {
		int e = errno ? errno : EIO;
		free(b);
		return -e;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

int moat_config_lex_read(const char *path, char **buf, size_t *len)
{
	FILE *f;
	int rc;

	errno = 0;
	f = fopen(path, "rb");
	if (!f)
		return errno ? -errno : -EIO;
	errno = 0;
	rc = read_all(f, buf, len);
	fclose(f);
	return rc;
}

static unsigned char ascii_lower(unsigned char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch - 'A' + 'a') : ch;
}

/* qsort order of moat_config_lex_dir: ASCII case ignored, then bytes. */
static int name_order(const void *a, const void *b)
{
	const unsigned char *x = *(const unsigned char *const *)a;
	const unsigned char *y = *(const unsigned char *const *)b;
	size_t i;

	for (i = 0; x[i] && ascii_lower(x[i]) == ascii_lower(y[i]); i++)
		;
	if (ascii_lower(x[i]) != ascii_lower(y[i]))
		return ascii_lower(x[i]) < ascii_lower(y[i]) ? -1 : 1;
	return strcmp((const char *)x, (const char *)y);
}

static bool is_conf_name(const char *name)
{
	size_t n = strlen(name);
	return n > 5 && strcmp(name + n - 5, ".conf") == 0;
}

/* Appends "dir/name" to the list; 0 or -ENOMEM. */
static int add_path(char ***paths, size_t *n, size_t *cap, const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	bool slash = dl > 0 && dir[dl - 1] == '/';
	char **np, *p;

	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		np = realloc(*paths, ncap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		*paths = np;
		*cap = ncap;
	}
	p = malloc(dl + nl + 2);
	if (!p)
		return -ENOMEM;
	memcpy(p, dir, dl);
	if (!slash)
		p[dl++] = '/';
	memcpy(p + dl, name, nl + 1);
	(*paths)[(*n)++] = p;
	return 0;
}

int moat_config_lex_dir(const char *dir, char ***paths, size_t *n)
{
	char **list = NULL;
	size_t count = 0, cap = 0;
	struct dirent *de;
	DIR *dh;
	int rc = 0;

	errno = 0;
	dh = opendir(dir);
	if (!dh)
		return errno ? -errno : -EIO;
	for (errno = 0; (de = readdir(dh)) != NULL; errno = 0) {
		if (!is_conf_name(de->d_name))
			continue;
		rc = add_path(&list, &count, &cap, dir, de->d_name);
		if (rc < 0)
			goto fail;
	}
	if (errno) {
		rc = -errno;
		goto fail;
	}
	closedir(dh);
	if (count > 1)
		qsort(list, count, sizeof(*list), name_order);
	*paths = list;
	*n = count;
	return 0;
fail:
	closedir(dh);
	moat_config_lex_dir_free(list, count);
	return rc;
}

void moat_config_lex_dir_free(char **paths, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

int moat_config_lex_code(int neg_errno)
{
	if (neg_errno == -ENOMEM)
		return MOAT_ENOMEM;
	return neg_errno == -EFBIG ? MOAT_ECONFIG : MOAT_EIO;
}

const char *moat_config_lex_reason(int neg_errno)
{
	return neg_errno == -EFBIG ? "larger than 16 MiB" : strerror(-neg_errno);
}
