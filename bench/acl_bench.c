/*
 * acl_bench.c - what an ACL decision costs (src/security/acl.c).
 *
 * Builds an ACL of 10,000 user rules (1,000 users x 10 topics, some with
 * wildcards), a few general rules and patterns, then measures:
 *   - parsing the file;
 *   - binding a client (user block lookup, pattern substitution, one
 *     allocation) and freeing it;
 *   - checking with a warm cache (the same few topics again and again, as
 *     deliveries on a busy topic are) and with a cold one (every topic new,
 *     so every check misses, scans the client's rules and fills a slot);
 *   - the same cold check for an anonymous client holding 1,000 general
 *     rules, the case the cache exists for.
 * Numbers are nanoseconds per call, from CLOCK_MONOTONIC over many calls.
 * Not a test: `make bench-acl` builds it with the release flags and runs it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "security/acl.h"

#define USERS 1000
#define TOPICS_PER_USER 10
#define GENERAL 1000
#define COLD_TOPICS (1u << 18)

static volatile unsigned sink;

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Writes form with '@' replaced by name, and a newline, at dst. Returns the length. */
static size_t expand(char *dst, const char *form, const char *name)
{
	size_t n = 0, k = strlen(name);

	for (; *form; form++) {
		if (*form == '@') {
			memcpy(dst + n, name, k);
			n += k;
		} else {
			dst[n++] = *form;
		}
	}
	dst[n++] = '\n';
	return n;
}

/* The ACL text: general rules, 1,000 user blocks, patterns. Returns malloc'd text. */
static char *make_acl(size_t *len)
{
	static const char *const forms[TOPICS_PER_USER] = {
		"topic readwrite home/@/living/#",    "topic read home/@/+/temperature",
		"topic write home/@/commands",         "topic read sensors/@/+",
		"topic deny home/@/living/secret",     "topic readwrite devices/@/state",
		"topic read shared/announcements/#",   "topic write telemetry/@/+/raw",
		"topic read home/@/kitchen/+",        "topic readwrite inbox/@",
	};
	size_t cap = 4u << 20, n = 0;
	char *t = malloc(cap);
	int u, k;

	if (!t)
		return NULL;
	for (k = 0; k < GENERAL; k++)
		n += (size_t)snprintf(t + n, cap - n, "topic read public/area%d/+/status\n", k);
	for (u = 0; u < USERS; u++) {
		char name[16];

		snprintf(name, sizeof(name), "user%04d", u);
		n += (size_t)snprintf(t + n, cap - n, "user %s\n", name);
		for (k = 0; k < TOPICS_PER_USER; k++)
			n += expand(t + n, forms[k], name);
	}
	n += (size_t)snprintf(t + n, cap - n,
			      "pattern readwrite clients/%%c/#\n"
			      "pattern read users/%%u/inbox/+\n"
			      "pattern deny clients/%%c/admin\n"
			      "pattern write $SYS/broker/connection/%%c/state\n");
	*len = n;
	return t;
}

static double bench_bind(const struct moat_acl *a, const char *user, int iters)
{
	struct moat_acl_who who = {user, "client-42", NULL};
	double t0 = now_ns();
	int i;

	for (i = 0; i < iters; i++) {
		struct moat_acl_client *c = moat_acl_bind(a, &who);
		sink += c != NULL;
		moat_acl_client_free(c);
	}
	return (now_ns() - t0) / iters;
}

static double bench_bind_many_users(const struct moat_acl *a, int iters)
{
	char names[64][16];
	double t0;
	int i;

	for (i = 0; i < 64; i++)
		snprintf(names[i], sizeof(names[i]), "user%04d", (i * 97) % USERS);
	t0 = now_ns();
	for (i = 0; i < iters; i++) {
		struct moat_acl_who who = {names[i & 63], "client-42", NULL};
		struct moat_acl_client *c = moat_acl_bind(a, &who);
		sink += c != NULL;
		moat_acl_client_free(c);
	}
	return (now_ns() - t0) / iters;
}

static double bench_warm(struct moat_acl_client *c, int iters)
{
	static const char *const topics[8] = {
		"home/user0500/living/lamp",  "home/user0500/bedroom/temperature",
		"sensors/user0500/humidity",  "home/user0500/living/secret",
		"clients/client-42/out",      "shared/announcements/today",
		"home/user0001/living/lamp",  "users/user0500/inbox/1",
	};
	size_t len[8];
	double t0;
	int i;

	for (i = 0; i < 8; i++)
		len[i] = strlen(topics[i]);
	for (i = 0; i < 16; i++) /* warm up the cache */
		sink += moat_acl_check(c, (const uint8_t *)topics[i & 7], len[i & 7], MOAT_ACL_READ);
	t0 = now_ns();
	for (i = 0; i < iters; i++)
		sink += moat_acl_check(c, (const uint8_t *)topics[i & 7], len[i & 7], MOAT_ACL_READ);
	return (now_ns() - t0) / iters;
}

/* Distinct topics, so that every check misses the 64-slot cache. */
static char (*cold_topics(const char *prefix))[48]
{
	char (*t)[48] = malloc(COLD_TOPICS * sizeof(*t));
	unsigned i;

	if (t)
		for (i = 0; i < COLD_TOPICS; i++)
			snprintf(t[i], sizeof(t[i]), "%s/dev%u/temperature", prefix, i);
	return t;
}

static double bench_cold(struct moat_acl_client *c, char (*t)[48], int access)
{
	double t0 = now_ns();
	unsigned i;

	for (i = 0; i < COLD_TOPICS; i++)
		sink += moat_acl_check(c, (const uint8_t *)t[i], strlen(t[i]), access);
	return (now_ns() - t0) / COLD_TOPICS;
}

int main(void)
{
	struct moat_acl_who user = {"user0500", "client-42", NULL};
	struct moat_acl_who anon = {NULL, "client-43", NULL};
	struct moat_acl_client *c, *ca;
	struct moat_acl *a = NULL;
	char (*cold)[48], (*cold_anon)[48];
	char err[256];
	size_t len = 0;
	char *text = make_acl(&len);
	double t0, parse_ms;

	if (!text)
		return 1;
	t0 = now_ns();
	if (moat_acl_parse(text, len, "bench.acl", &a, err, sizeof(err)) != 0) {
		fprintf(stderr, "parse: %s\n", err);
		return 1;
	}
	parse_ms = (now_ns() - t0) / 1e6;
	c = moat_acl_bind(a, &user);
	ca = moat_acl_bind(a, &anon);
	cold = cold_topics("home/user0500/room");
	cold_anon = cold_topics("public/area999");
	if (!c || !ca || !cold || !cold_anon)
		return 1;

	printf("ACL: %zu rules (%d users x %d topics, %d general, 4 patterns), %zu bytes\n",
	       moat_acl_count(a), USERS, TOPICS_PER_USER, GENERAL, len);
	printf("  %-46s %10.2f ms\n", "parse", parse_ms);
	printf("  %-46s %10.0f ns\n", "bind+free, one user (14 rules)",
	       bench_bind(a, "user0500", 200000));
	printf("  %-46s %10.0f ns\n", "bind+free, 64 users in turn",
	       bench_bind_many_users(a, 200000));
	printf("  %-46s %10.0f ns\n", "bind+free, anonymous (1,004 rules)",
	       bench_bind(a, NULL, 20000));
	printf("  %-46s %10.1f ns\n", "check, warm cache (8 topics, READ)",
	       bench_warm(c, 10000000));
	printf("  %-46s %10.1f ns\n", "check, cold cache (new topic each, READ)",
	       bench_cold(c, cold, MOAT_ACL_READ));
	printf("  %-46s %10.1f ns\n", "check, cold cache (new filter each, SUBSCRIBE)",
	       bench_cold(c, cold, MOAT_ACL_SUBSCRIBE));
	printf("  %-46s %10.1f ns\n", "check, cold cache, anonymous (1,004 rules)",
	       bench_cold(ca, cold_anon, MOAT_ACL_READ));
	printf("  %-46s %10.1f ns\n", "check, warm cache, anonymous",
	       bench_warm(ca, 10000000));

	free(cold);
	free(cold_anon);
	moat_acl_client_free(c);
	moat_acl_client_free(ca);
	moat_acl_free(a);
	free(text);
	return sink == 0xdeadbeef;
}
