/*
 * fuzz_acl.c - libFuzzer target: the ACL file parser and checks
 * (src/security/acl.c).
 *
 * The input is an ACL file, any bytes. Checked:
 *   - moat_acl_parse returns 0, MOAT_ECONFIG or MOAT_ENOMEM; a refusal
 *     leaves *out untouched and says why on one printable line starting
 *     "fuzz.acl:";
 *   - an accepted file counts no more rules than it has lines;
 *   - for a few fixed clients (with and without a user name, with client ids
 *     and user names holding '+', '#', '/' and '$', and the empty string)
 *     and topics (fixed ones and the last word of the input's first lines):
 *     every decision is MOAT_ALLOW or MOAT_DENY, asking again (from the
 *     cache) gives the same answer, and a fresh bind asked in the reverse
 *     order (another cache state) agrees;
 *   - READ and SUBSCRIBE agree on a topic name without wildcards (coverage
 *     of a plain filter is matching), unless it starts with "$share/";
 *   - options stay in range; everything is freed (LeakSanitizer).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "security/acl.h"

#include "fuzz_common.h"

#define MAX_TOPICS 16
#define ACCESSES 3

static const int accesses[ACCESSES] = {MOAT_ACL_READ, MOAT_ACL_WRITE, MOAT_ACL_SUBSCRIBE};

static const struct moat_acl_who clients[] = {
	{NULL, "c1", NULL},
	{"alice", "sensor1", "CN=gw"},
	{"bob", "x/y", NULL},
	{"#", "+", "id"},
	{"$SYS", "$SYS", NULL},
	{"", "", ""},
};

static const char *const fixed_topics[] = {
	"a/b", "#", "a/+", "$SYS/broker/load", "sensor1/x", "alice/in", "+/+/#", "$share/g/a/#",
};

struct topic {
	const uint8_t *p;
	size_t n;
};

/* The fixed topics, then the last word of the input's first lines. */
static size_t gather_topics(const uint8_t *data, size_t size, struct topic *t)
{
	size_t k = 0, off = 0;

	for (; k < sizeof(fixed_topics) / sizeof(fixed_topics[0]); k++)
		t[k] = (struct topic){(const uint8_t *)fixed_topics[k], strlen(fixed_topics[k])};
	while (off < size && k < MAX_TOPICS) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t end = nl ? (size_t)(nl - data) : size, b = end;

		while (b > off && data[b - 1] != ' ')
			b--;
		if (end > b)
			t[k++] = (struct topic){data + b, end - b};
		off = end + 1;
	}
	return k;
}

static bool plain_name(struct topic t)
{
	return t.n > 0 && !memchr(t.p, '+', t.n) && !memchr(t.p, '#', t.n) &&
	       !(t.n >= 7 && memcmp(t.p, "$share/", 7) == 0);
}

static void check_client(const struct moat_acl *a, const struct moat_acl_who *who,
			 const struct topic *t, size_t nt)
{
	enum moat_decision d[MAX_TOPICS][ACCESSES];
	struct moat_acl_client *c = moat_acl_bind(a, who), *fresh;
	const struct moat_acl_opts *o;
	size_t i, k;

	if (!c)
		return; /* out of memory (or the substitution budget): the caller denies */
	o = moat_acl_options(c);
	FZ_ASSERT(o->max_qos <= 2);
	for (i = 0; i < nt; i++) {
		for (k = 0; k < ACCESSES; k++) {
			d[i][k] = moat_acl_check(c, t[i].p, t[i].n, accesses[k]);
			FZ_ASSERT(d[i][k] == MOAT_ALLOW || d[i][k] == MOAT_DENY);
			FZ_ASSERT(moat_acl_check(c, t[i].p, t[i].n, accesses[k]) == d[i][k]);
		}
		if (plain_name(t[i]))
			FZ_ASSERT(d[i][0] == d[i][2]);
	}
	fresh = moat_acl_bind(a, who);
	if (fresh) {
		for (i = nt; i-- > 0;)
			for (k = ACCESSES; k-- > 0;)
				FZ_ASSERT(moat_acl_check(fresh, t[i].p, t[i].n, accesses[k]) == d[i][k]);
		moat_acl_client_free(fresh);
	}
	/* And again from the first view's cache, after all the others. */
	for (i = 0; i < nt; i++)
		for (k = 0; k < ACCESSES; k++)
			FZ_ASSERT(moat_acl_check(c, t[i].p, t[i].n, accesses[k]) == d[i][k]);
	moat_acl_client_free(c);
}

static void check_message(const char *err, size_t len)
{
	size_t i;

	FZ_ASSERT(memchr(err, '\0', len) != NULL);
	FZ_ASSERT(strncmp(err, "fuzz.acl:", 9) == 0);
	for (i = 0; err[i]; i++)
		FZ_ASSERT((unsigned char)err[i] >= 0x20 && err[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_acl *a = (struct moat_acl *)&fz_fail; /* a sentinel */
	struct topic t[MAX_TOPICS];
	char err[256];
	size_t i, nt, lines = 1;
	int rc;

	memset(err, 0x55, sizeof(err));
	rc = moat_acl_parse((const char *)data, size, "fuzz.acl", &a, err, sizeof(err));
	FZ_ASSERT(rc == 0 || rc == MOAT_ECONFIG || rc == MOAT_ENOMEM);
	if (rc != 0) {
		FZ_ASSERT(a == (struct moat_acl *)&fz_fail);
		check_message(err, sizeof(err));
		return 0;
	}
	for (i = 0; i < size; i++)
		lines += data[i] == '\n';
	FZ_ASSERT(moat_acl_count(a) <= lines);
	nt = gather_topics(data, size, t);
	for (i = 0; i < sizeof(clients) / sizeof(clients[0]); i++)
		check_client(a, &clients[i], t, nt);
	moat_acl_free(a);
	return 0;
}
