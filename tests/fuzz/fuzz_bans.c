/*
 * fuzz_bans.c - libFuzzer target: the bans file parser and the checks
 * (src/security/ban.c).
 *
 * The input is a bans file, any bytes, parsed into a fresh table whose
 * allow-list holds 10.0.0.0/8, fd00::/8 and the user name "admin". Checked:
 *   - moat_bans_parse returns 0, MOAT_ECONFIG or MOAT_ENOMEM; a refusal adds
 *     nothing and says why on one printable line starting "fuzz.bans:";
 *   - an accepted file holds no more bans than it has lines;
 *   - every ban listed by moat_bans_each has a canonical key (adding it again
 *     with its end and reason changes nothing), holds its own network address
 *     (unless the allow-list spares that address) or name, and is not a name
 *     the allow-list holds;
 *   - the listing written back as a bans file and parsed into a second table
 *     gives the same listing (keys, ends through the wall clock, reasons);
 *   - allow-listed addresses and names are never banned, and an IPv4 address
 *     and its IPv4-mapped IPv6 form get the same answer;
 *   - removing every listed ban leaves none; everything is freed
 *     (LeakSanitizer).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "security/ban.h"

#include "fuzz_common.h"

#define NOW_MS 1000000
#define WALL_S 1600000000

static const char *const kinds[] = {"addr", "clientid", "username"};

/* The bans of a table, as moat_bans_each gives them. */
struct listing {
	struct moat_ban_info *v;
	size_t n, cap;
};

static void collect(void *ctx, const struct moat_ban_info *info)
{
	struct listing *l = ctx;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		FZ_ASSERT(l->v != NULL);
	}
	l->v[l->n++] = *info;
}

static int by_line(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The listing as bans-file text, lines sorted (so two listings compare). Owned. */
static char *as_text(const struct listing *l)
{
	char **lines = calloc(l->n + 1, sizeof(*lines)), *text;
	size_t i, len = 1, off = 0;

	FZ_ASSERT(lines != NULL);
	for (i = 0; i < l->n; i++) {
		const struct moat_ban_info *b = &l->v[i];
		int64_t rem = b->until_ms - NOW_MS;
		long long until = b->until_ms ? WALL_S + rem / 1000 + (rem % 1000 != 0) : 0;

		if (until > INT64_MAX / 1000)
			until = INT64_MAX / 1000;
		FZ_ASSERT(asprintf(&lines[i], "%s %s %lld %s\n", kinds[b->kind], b->key, until,
			       b->reason) > 0);
		len += strlen(lines[i]);
	}
	qsort(lines, l->n, sizeof(*lines), by_line);
	text = malloc(len);
	FZ_ASSERT(text != NULL);
	for (i = 0; i < l->n; i++) {
		memcpy(text + off, lines[i], strlen(lines[i]));
		off += strlen(lines[i]);
		free(lines[i]);
	}
	text[off] = '\0';
	free(lines);
	return text;
}

/* A socket address for text (the part before any '/'); false if not one. */
static bool sockaddr_of(const char *text, struct sockaddr_storage *ss)
{
	char buf[INET6_ADDRSTRLEN];
	size_t n = strcspn(text, "/");

	memset(ss, 0, sizeof(*ss));
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, text, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, buf, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		ss->ss_family = AF_INET6;
		return true;
	}
	return false;
}

static bool banned_addr(struct moat_bans *b, const char *text)
{
	struct sockaddr_storage ss;

	FZ_ASSERT(sockaddr_of(text, &ss));
	return moat_bans_check_addr(b, (const struct sockaddr *)&ss, NOW_MS, NULL);
}

static void check_ban(struct moat_bans *b, const struct moat_ban_info *info, size_t count)
{
	struct moat_ban_info got;
	struct sockaddr_storage ss;
	size_t n = strlen(info->key);

	FZ_ASSERT(n > 0 && info->kind <= MOAT_BAN_USERNAME);
	FZ_ASSERT(strchr(info->key, ' ') == NULL);
	FZ_ASSERT(info->until_ms == 0 || info->until_ms > NOW_MS);
	FZ_ASSERT(moat_bans_add(b, info->kind, info->key, info->until_ms, info->reason) == 0);
	FZ_ASSERT(moat_bans_count(b, NOW_MS) == count);
	if (info->kind != MOAT_BAN_ADDR) {
		FZ_ASSERT(moat_bans_check_name(b, info->kind, info->key, n, NOW_MS, &got));
		FZ_ASSERT(strcmp(got.key, info->key) == 0 && got.until_ms == info->until_ms);
		FZ_ASSERT(!moat_bans_allowed_name(b, info->kind, info->key, n));
		return;
	}
	FZ_ASSERT(sockaddr_of(info->key, &ss));
	FZ_ASSERT(moat_bans_check_addr(b, (const struct sockaddr *)&ss, NOW_MS, NULL) !=
	      moat_bans_allowed_addr(b, (const struct sockaddr *)&ss));
}

/* Fixed probes: the allow-list holds, mapped and plain IPv4 agree. */
static void check_probes(struct moat_bans *b)
{
	static const char *const v4[] = {"192.0.2.1", "0.0.0.0", "255.255.255.255", "10.1.2.3",
					 "127.0.0.1"};
	char mapped[64];
	size_t i;

	for (i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
		snprintf(mapped, sizeof(mapped), "::ffff:%s", v4[i]);
		FZ_ASSERT(banned_addr(b, v4[i]) == banned_addr(b, mapped));
	}
	FZ_ASSERT(!banned_addr(b, "10.1.2.3") && !banned_addr(b, "fd00::1"));
	FZ_ASSERT(!moat_bans_check_name(b, MOAT_BAN_USERNAME, "admin", 5, NOW_MS, NULL));
	(void)banned_addr(b, "2001:db8::1");
	(void)banned_addr(b, "::");
	(void)moat_bans_check_name(b, MOAT_BAN_CLIENTID, "c1", 2, NOW_MS, NULL);
}

static struct moat_bans *fresh(void)
{
	struct moat_bans *b = moat_bans_new();

	FZ_ASSERT(b != NULL);
	FZ_ASSERT(moat_bans_allow(b, MOAT_BAN_ADDR, "10.0.0.0/8") == 0);
	FZ_ASSERT(moat_bans_allow(b, MOAT_BAN_ADDR, "fd00::/8") == 0);
	FZ_ASSERT(moat_bans_allow(b, MOAT_BAN_USERNAME, "admin") == 0);
	return b;
}

static void check_message(const char *err, size_t len)
{
	size_t i;

	FZ_ASSERT(memchr(err, '\0', len) != NULL);
	FZ_ASSERT(strncmp(err, "fuzz.bans:", 10) == 0);
	for (i = 0; err[i]; i++)
		FZ_ASSERT((unsigned char)err[i] >= 0x20 && err[i] != 0x7f);
}

/* Writes l back as a file, parses it into a second table: the same listing. */
static void check_round_trip(const struct listing *l)
{
	struct moat_bans *c = fresh();
	struct listing l2 = {0};
	char *t1 = as_text(l), *t2, err[256];

	FZ_ASSERT(moat_bans_parse(c, t1, strlen(t1), "fuzz.bans", NOW_MS, WALL_S, err,
			      sizeof(err)) == 0);
	moat_bans_each(c, NOW_MS, collect, &l2);
	t2 = as_text(&l2);
	FZ_ASSERT(strcmp(t1, t2) == 0);
	free(t1);
	free(t2);
	free(l2.v);
	moat_bans_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_bans *b = fresh();
	struct listing l = {0};
	char err[256];
	size_t i, lines = 1;
	int rc;

	memset(err, 0x55, sizeof(err));
	rc = moat_bans_parse(b, (const char *)data, size, "fuzz.bans", NOW_MS, WALL_S, err,
			     sizeof(err));
	FZ_ASSERT(rc == 0 || rc == MOAT_ECONFIG || rc == MOAT_ENOMEM);
	if (rc != 0) {
		check_message(err, sizeof(err));
		FZ_ASSERT(moat_bans_count(b, NOW_MS) == 0);
		moat_bans_free(b);
		return 0;
	}
	for (i = 0; i < size; i++)
		lines += data[i] == '\n';
	moat_bans_each(b, NOW_MS, collect, &l);
	FZ_ASSERT(l.n == moat_bans_count(b, NOW_MS) && l.n <= lines);
	for (i = 0; i < l.n; i++)
		check_ban(b, &l.v[i], l.n);
	check_probes(b);
	check_round_trip(&l);
	for (i = 0; i < l.n; i++)
		FZ_ASSERT(moat_bans_remove(b, l.v[i].kind, l.v[i].key) == 0);
	FZ_ASSERT(moat_bans_count(b, NOW_MS) == 0);
	free(l.v);
	moat_bans_free(b);
	return 0;
}
