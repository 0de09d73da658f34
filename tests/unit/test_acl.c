/*
 * test_acl.c - unit tests for access control lists (src/security/acl.c).
 *
 * Covers, line by line, Mosquitto's acl_file semantics: topic lines before
 * the first user line for clients without a user name, user blocks (repeated
 * blocks append), patterns with %c and %u (anywhere in the topic, skipped
 * when the value is missing), read / write / readwrite / deny, deny winning
 * wherever it is written, readwrite when no access is given ("topic read" is
 * the topic "read"), topics holding spaces, comments, blank lines, CRLF and a
 * byte order mark. Then moat's: SUBSCRIBE coverage ("a/#" covers "a/+/b",
 * "a/+" does not cover "a/#", $-topics, "$share/" stripped), the
 * CVE-2017-7650 substitutions ('+', '#', '/' in a client id or user name;
 * a deny pattern never weakened; a value that would start the filter with
 * '$'; very long values), clientid and identity blocks, options merged
 * most-restrictive-first, malformed files refused with their line numbers
 * and nothing returned, an empty file denying everything, invalid requests
 * denied, the cache telling accesses apart, allocation failures (outside
 * ASan builds), moat_acl_load. Finally a randomized
 * differential test of the cached checks against a reference written here
 * (its own matcher, its own coverage test by witness topics, its own
 * substitution), and a generated 10,000-rule file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "security/acl.h"
#include "fault_alloc.h"

static char err[512];

/* ---- helpers ---- */

static struct moat_acl *parse(const char *text)
{
	struct moat_acl *a = NULL;
	int rc = moat_acl_parse(text, strlen(text), "t.acl", &a, err, sizeof(err));

	if (rc != 0)
		fail_msg("parse failed (%d): %s", rc, err);
	assert_non_null(a);
	return a;
}

/* Expects the text refused with MOAT_ECONFIG and exactly the message msg. */
static void refused(const char *text, size_t n, const char *msg)
{
	struct moat_acl *a = (struct moat_acl *)&err; /* a sentinel: must stay untouched */
	int rc;

	err[0] = '\0';
	rc = moat_acl_parse(text, n, "t.acl", &a, err, sizeof(err));
	if (rc != MOAT_ECONFIG || strcmp(err, msg) != 0)
		fail_msg("text \"%.60s\": got %d \"%s\", wanted \"%s\"", text, rc, err, msg);
	assert_ptr_equal(a, (struct moat_acl *)&err);
}

static struct moat_acl_client *bind3(const struct moat_acl *a, const char *user, const char *id,
				     const char *identity)
{
	struct moat_acl_who who = {user, id, identity};
	struct moat_acl_client *c = moat_acl_bind(a, &who);

	assert_non_null(c);
	return c;
}

static bool can(struct moat_acl_client *c, int access, const char *topic)
{
	return moat_acl_check(c, (const uint8_t *)topic, strlen(topic), access) == MOAT_ALLOW;
}

#define R(c, t) can((c), MOAT_ACL_READ, (t))
#define W(c, t) can((c), MOAT_ACL_WRITE, (t))
#define S(c, t) can((c), MOAT_ACL_SUBSCRIBE, (t))

/* A request and the answer it must get. */
struct ask {
	int access; /* MOAT_ACL_READ, _WRITE or _SUBSCRIBE */
	const char *topic;
	bool allow;
};

/* Asks c each request of asks, in order, failing on the first wrong answer. */
static void expect(struct moat_acl_client *c, const struct ask *asks, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (can(c, asks[i].access, asks[i].topic) != asks[i].allow)
			fail_msg("access %d to \"%s\": wanted %s", asks[i].access, asks[i].topic,
				 asks[i].allow ? "allow" : "deny");
}

/* ---- Mosquitto's semantics ---- */

static void test_anonymous_general_rules(void **state)
{
	struct moat_acl *a = parse("# for clients without a user name\n"
				   "topic read a/b\n"
				   "topic write c/#\n"
				   "user alice\n"
				   "topic d\n");
	struct moat_acl_client *anon = bind3(a, NULL, "id1", NULL);
	struct moat_acl_client *alice = bind3(a, "alice", "id2", NULL);
	struct moat_acl_client *bob = bind3(a, "bob", "id3", NULL);

	(void)state;
	assert_int_equal(moat_acl_count(a), 3);
	assert_true(R(anon, "a/b"));
	assert_false(W(anon, "a/b"));
	assert_true(W(anon, "c/x/y"));
	assert_true(W(anon, "c"));
	assert_false(R(anon, "c/x"));
	assert_false(R(anon, "d"));
	/* A user name means the general rules do not apply, as in Mosquitto. */
	assert_true(R(alice, "d") && W(alice, "d"));
	assert_false(R(alice, "a/b"));
	assert_false(W(alice, "c/x"));
	/* A user without a block gets nothing. */
	assert_false(R(bob, "a/b") || R(bob, "d") || W(bob, "c/x"));
	moat_acl_client_free(anon);
	moat_acl_client_free(alice);
	moat_acl_client_free(bob);
	moat_acl_free(a);
}

static void test_user_blocks(void **state)
{
	struct moat_acl *a = parse("user alice\n"
				   "topic read x\n"
				   "user bob\n"
				   "topic write y\n"
				   "user alice\n" /* appends to alice's block */
				   "topic write z\n"
				   "user John Smith\n" /* a name is the rest of the line */
				   "topic j\n");
	struct moat_acl_client *alice = bind3(a, "alice", "c", NULL);
	struct moat_acl_client *bob = bind3(a, "bob", "c", NULL);
	struct moat_acl_client *john = bind3(a, "John Smith", "c", NULL);
	struct moat_acl_client *jo = bind3(a, "John", "c", NULL);

	(void)state;
	assert_true(R(alice, "x") && !W(alice, "x"));
	assert_true(W(alice, "z") && !R(alice, "z"));
	assert_false(W(alice, "y"));
	assert_true(W(bob, "y") && !R(bob, "x") && !W(bob, "z"));
	assert_true(R(john, "j") && W(john, "j"));
	assert_false(R(jo, "j"));
	moat_acl_client_free(alice);
	moat_acl_client_free(bob);
	moat_acl_client_free(john);
	moat_acl_client_free(jo);
	moat_acl_free(a);
}

static void test_access_words(void **state)
{
	struct moat_acl *a = parse("topic read r/#\n"
				   "topic write w/#\n"
				   "topic readwrite rw/#\n"
				   "topic plain/#\n"
				   "topic read\n"   /* the topic "read", readwrite */
				   "topic deny\n"); /* the topic "deny", readwrite */
	struct moat_acl_client *c = bind3(a, NULL, "c", NULL);

	(void)state;
	assert_true(R(c, "r/1") && !W(c, "r/1") && S(c, "r/+"));
	assert_true(W(c, "w/1") && !R(c, "w/1") && !S(c, "w/+"));
	assert_true(R(c, "rw/1") && W(c, "rw/1") && S(c, "rw/#"));
	assert_true(R(c, "plain/1") && W(c, "plain/1"));
	assert_true(R(c, "read") && W(c, "read"));
	assert_true(R(c, "deny") && W(c, "deny"));
	moat_acl_client_free(c);
	moat_acl_free(a);
}

static void test_deny_precedence(void **state)
{
	struct moat_acl *a = parse("topic readwrite a/#\n"
				   "topic deny a/secret\n"
				   "user u\n"
				   "topic readwrite #\n"
				   "pattern deny private/%c/#\n"
				   "pattern readwrite home/%u/#\n"
				   "user v\n"
				   "topic deny home/v/locked\n");
	struct moat_acl_client *anon = bind3(a, NULL, "c", NULL);
	struct moat_acl_client *u = bind3(a, "u", "cu", NULL);
	struct moat_acl_client *v = bind3(a, "v", "cv", NULL);

	(void)state;
	assert_true(R(anon, "a/public") && W(anon, "a/public"));
	assert_false(R(anon, "a/secret") || W(anon, "a/secret"));
	assert_true(R(anon, "a/secret/sub")); /* deny a/secret is exact */
	/* A pattern's deny wins over the user's "#", written before it or not. */
	assert_true(W(u, "private/other/x"));
	assert_false(W(u, "private/cu/x") || R(u, "private/cu"));
	/* A user's deny wins over a pattern's allow. */
	assert_true(W(v, "home/v/open"));
	assert_false(W(v, "home/v/locked") || R(v, "home/v/locked"));
	moat_acl_client_free(anon);
	moat_acl_client_free(u);
	moat_acl_client_free(v);
	moat_acl_free(a);
}

static void test_topics_with_spaces_and_layout(void **state)
{
	static const char text[] = "\xEF\xBB\xBF# a byte order mark, then a comment\r\n"
				   "\r\n"
				   "   # an indented comment\n"
				   "topic read a b/c d   \r\n"
				   "topic   write   x y\t\n"
				   "\ttopic\treadwrite\tt/#\n"
				   "topic read  two  spaces \n"
				   "user  spaced  name  \n"
				   "topic q";
	struct moat_acl *a = parse(text);
	struct moat_acl_client *c = bind3(a, NULL, "c", NULL);
	struct moat_acl_client *s = bind3(a, "spaced  name", "c", NULL);

	(void)state;
	assert_int_equal(moat_acl_count(a), 5);
	assert_true(R(c, "a b/c d"));
	assert_false(R(c, "a b/c d   "));
	assert_true(W(c, "x y"));
	assert_true(R(c, "t/1") && W(c, "t/1"));
	assert_true(R(c, "two  spaces"));
	assert_true(R(s, "q")); /* the last line has no newline */
	moat_acl_client_free(c);
	moat_acl_client_free(s);
	moat_acl_free(a);
}

static void test_patterns(void **state)
{
	struct moat_acl *a = parse("pattern readwrite dev/%c/#\n"
				   "pattern read users/%u/in\n"
				   "pattern write x%cy/%u%u\n"
				   "pattern read lit/%x/%%c\n");
	struct moat_acl_client *anon = bind3(a, NULL, "d1", NULL);
	struct moat_acl_client *u = bind3(a, "bob", "d2", NULL);

	(void)state;
	assert_true(W(anon, "dev/d1/t") && R(anon, "dev/d1"));
	assert_false(W(anon, "dev/d2/t"));
	assert_false(R(anon, "users//in")); /* %u needs a user name */
	assert_false(R(anon, "users/%u/in"));
	assert_true(W(u, "dev/d2/x") && R(u, "users/bob/in") && !W(u, "users/bob/in"));
	assert_false(R(u, "users/alice/in"));
	/* Substitution anywhere in a level, several times. */
	assert_true(W(u, "xd2y/bobbob"));
	assert_false(W(anon, "xd1y/"));
	/* Only %c and %u are special; "%%c" is '%' then %c. */
	assert_true(R(anon, "lit/%x/%d1"));
	moat_acl_client_free(anon);
	moat_acl_client_free(u);
	moat_acl_free(a);
}

/* CVE-2017-7650: a client id or user name holding '+', '#' or '/'. */
static void test_cve_2017_7650(void **state)
{
	struct moat_acl *a = parse("pattern readwrite dev/%c/#\n"
				   "pattern readwrite home/%u/#\n"
				   "pattern readwrite %c/own\n");
	static const char *const bad[] = {"+", "#", "a/b", "a+", "/", "x/#"};
	struct moat_acl_client *c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = bind3(a, bad[i], bad[i], NULL);
		assert_false(W(c, "dev/x/y"));
		assert_false(W(c, "dev/a/b/z"));
		assert_false(W(c, "dev/a"));
		assert_false(S(c, "dev/#"));
		assert_false(W(c, "home/a/b/x"));
		assert_false(R(c, "a/b/own"));
		moat_acl_client_free(c);
	}
	/* A value that would start the filter with '$' reaches no $-topic. */
	c = bind3(a, "$SYS", "$SYS", NULL);
	assert_false(W(c, "$SYS/own"));
	assert_true(W(c, "dev/$SYS/x"));
	moat_acl_client_free(c);
	/* The empty value: "%c/own" becomes "/own", "dev/%c/#" "dev//#". */
	c = bind3(a, "", "", NULL);
	assert_true(W(c, "/own") && W(c, "dev//x") && W(c, "home//x"));
	assert_false(W(c, "dev/x"));
	moat_acl_client_free(c);
	moat_acl_free(a);
}

/* A deny pattern is never weakened by a dangerous value. */
static void test_deny_pattern_not_weakened(void **state)
{
	struct moat_acl *a = parse("topic readwrite #\n"
				   "topic readwrite secret/#\n"
				   "pattern deny secret/%c/#\n"
				   "pattern deny x/%c\n");
	struct moat_acl_client *c;

	(void)state;
	c = bind3(a, NULL, "x/y", NULL); /* substituted as written */
	assert_false(W(c, "secret/x/y/z"));
	assert_true(W(c, "secret/x/z"));
	moat_acl_client_free(c);
	c = bind3(a, NULL, "+", NULL); /* a wildcard widens the deny */
	assert_false(W(c, "secret/any/z"));
	assert_false(W(c, "x/other"));
	assert_true(W(c, "other"));
	moat_acl_client_free(c);
	c = bind3(a, NULL, "a#", NULL); /* no valid filter: everything denied */
	assert_false(W(c, "other") || R(c, "other") || S(c, "other"));
	moat_acl_client_free(c);
	moat_acl_free(a);
}

/* Very long values: unreachable allows vanish, denies deny all, views stay bounded. */
static void test_substitution_limits(void **state)
{
	static char id[300001], text[2048];
	struct moat_acl_who who = {NULL, id, NULL};
	struct moat_acl *a;
	struct moat_acl_client *c;
	size_t n = 0;
	int i;

	(void)state;
	memset(id, 'i', sizeof(id) - 1);
	a = parse("topic readwrite #\npattern readwrite p/%c\n");
	c = bind3(a, NULL, id, NULL); /* "p/iii..." is longer than any topic */
	assert_true(W(c, "p/x") && W(c, "q"));
	moat_acl_client_free(c);
	moat_acl_free(a);

	a = parse("topic readwrite #\npattern deny p/%c\n");
	c = bind3(a, NULL, id, NULL); /* a deny is never dropped: everything is denied */
	assert_false(W(c, "p/x") || W(c, "q"));
	moat_acl_client_free(c);
	id[100000] = '\0'; /* 100,000 bytes: substituted, and matching */
	c = bind3(a, NULL, id, NULL);
	assert_true(W(c, "q"));
	moat_acl_client_free(c);
	moat_acl_free(a);

	/* 30 patterns of 200,000 substituted bytes each: past the view's budget. */
	for (i = 0; i < 30; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "pattern read p%d/%%c/%%c\n", i);
	a = parse(text);
	assert_null(moat_acl_bind(a, &who));
	id[1000] = '\0';
	c = bind3(a, NULL, id, NULL);
	moat_acl_client_free(c);
	moat_acl_free(a);
}

static void test_subscribe_coverage(void **state)
{
	struct moat_acl *a = parse("topic read a/#\n"
				   "topic read b/+\n"
				   "topic read $SYS/#\n"
				   "topic read +/x\n"
				   "topic write w/#\n"
				   "topic read e/\n"
				   "topic deny a/secret/#\n");
	struct moat_acl_client *c = bind3(a, NULL, "c", NULL);
	static const struct ask asks[] = {
		{MOAT_ACL_SUBSCRIBE, "a/+/b", true},
		{MOAT_ACL_SUBSCRIBE, "a/#", true},
		{MOAT_ACL_SUBSCRIBE, "a", true},
		{MOAT_ACL_SUBSCRIBE, "a/x/+/#", true},
		{MOAT_ACL_SUBSCRIBE, "b/+", true},
		{MOAT_ACL_SUBSCRIBE, "b/x", true},
		{MOAT_ACL_SUBSCRIBE, "b/#", false}, /* "b/+" does not cover "b/#" */
		{MOAT_ACL_SUBSCRIBE, "b/x/y", false},
		{MOAT_ACL_SUBSCRIBE, "b", false},
		{MOAT_ACL_SUBSCRIBE, "#", false},
		{MOAT_ACL_SUBSCRIBE, "+/#", false},
		{MOAT_ACL_SUBSCRIBE, "$SYS/broker/+", true},
		{MOAT_ACL_SUBSCRIBE, "$SYS/#", true},
		{MOAT_ACL_SUBSCRIBE, "+/x", true}, /* "+/x" reaches no $-topic: covered */
		{MOAT_ACL_SUBSCRIBE, "q/x", true},
		{MOAT_ACL_SUBSCRIBE, "$q/x", false}, /* "+/x" does not cover a $-topic */
		{MOAT_ACL_SUBSCRIBE, "w/y", false},  /* write-only */
		{MOAT_ACL_SUBSCRIBE, "e/", true},
		{MOAT_ACL_SUBSCRIBE, "e/+", false},
		/* A deny covering the request wins; one merely overlapping it does not. */
		{MOAT_ACL_SUBSCRIBE, "a/secret/+", false},
		{MOAT_ACL_SUBSCRIBE, "a/secret", false},
		{MOAT_ACL_SUBSCRIBE, "a/+", true},
		{MOAT_ACL_READ, "a/secret/k", false}, /* the delivery check catches it */
		/* "$share/GROUP/" is stripped; malformed filters are denied. */
		{MOAT_ACL_SUBSCRIBE, "$share/g/a/+", true},
		{MOAT_ACL_SUBSCRIBE, "$share/g/b/#", false},
		{MOAT_ACL_SUBSCRIBE, "$share/g", false},
		{MOAT_ACL_SUBSCRIBE, "a/#/b", false},
		{MOAT_ACL_SUBSCRIBE, "a+", false},
		{MOAT_ACL_SUBSCRIBE, "", false},
	};

	(void)state;
	expect(c, asks, sizeof(asks) / sizeof(asks[0]));
	moat_acl_client_free(c);
	moat_acl_free(a);

	/* "#" alone has no parent level: "+/#" matches all it matches. */
	a = parse("topic read +/#\ntopic read x/+/#\n");
	c = bind3(a, NULL, "c", NULL);
	assert_true(S(c, "#") && S(c, "+/#") && S(c, "x/#"));
	assert_false(S(c, "$SYS/#"));
	moat_acl_client_free(c);
	moat_acl_free(a);
	a = parse("topic read x/+/#\n");
	c = bind3(a, NULL, "c", NULL);
	assert_false(S(c, "x/#")); /* "x/#" matches "x" */
	assert_true(S(c, "x/+/#") && S(c, "x/+"));
	moat_acl_client_free(c);
	moat_acl_free(a);
}

static void test_dollar_topics(void **state)
{
	struct moat_acl *a = parse("topic readwrite #\n"
				   "topic readwrite +/y\n"
				   "topic read $SYS/broker/#\n");
	struct moat_acl_client *c = bind3(a, NULL, "c", NULL);
	static const struct ask asks[] = {
		{MOAT_ACL_WRITE, "x/y/z", true},
		{MOAT_ACL_READ, "$SYS/x", false},
		{MOAT_ACL_WRITE, "$x/y", false},
		{MOAT_ACL_READ, "$SYS/broker/load", true},
		{MOAT_ACL_WRITE, "$SYS/broker/load", false},
	};

	(void)state;
	expect(c, asks, sizeof(asks) / sizeof(asks[0]));
	moat_acl_client_free(c);
	moat_acl_free(a);
}

static void test_clientid_and_identity_blocks(void **state)
{
	struct moat_acl *a = parse("topic read anon/#\n"
				   "clientid sensor 1\n"
				   "topic write sensors/1/#\n"
				   "identity CN=gw, O=Example\n"
				   "topic readwrite gw/#\n"
				   "user alice\n"
				   "topic read alice/#\n");
	struct moat_acl_client *c;

	(void)state;
	/* No user name: general + clientid block. */
	c = bind3(a, NULL, "sensor 1", NULL);
	assert_true(R(c, "anon/x") && W(c, "sensors/1/t") && !R(c, "sensors/1/t"));
	moat_acl_client_free(c);
	/* A user name: user + clientid + identity blocks, not the general rules. */
	c = bind3(a, "alice", "sensor 1", "CN=gw, O=Example");
	assert_false(R(c, "anon/x"));
	assert_true(R(c, "alice/x") && W(c, "sensors/1/t") && W(c, "gw/x"));
	moat_acl_client_free(c);
	c = bind3(a, "alice", "sensor 2", "CN=gw");
	assert_true(R(c, "alice/x"));
	assert_false(W(c, "sensors/1/t") || W(c, "gw/x"));
	moat_acl_client_free(c);
	moat_acl_free(a);
}

static void test_options(void **state)
{
	struct moat_acl *a = parse("user alice\n"
				   "option max_qos 1\n"
				   "option retain true\n"
				   "topic readwrite #\n"
				   "clientid c1\n"
				   "option no_wildcard_subscriptions\n"
				   "option retain false\n"
				   "option max_qos 2\n"
				   "identity id\n"
				   "option max_qos 0\n"
				   "option no_wildcard_subscriptions false\n"
				   "user bob\n"
				   "option retain false\n"
				   "option retain true\n"); /* the most restrictive stays */
	const struct moat_acl_opts *o;
	struct moat_acl_client *c;

	(void)state;
	c = bind3(a, "alice", "c0", NULL);
	o = moat_acl_options(c);
	assert_int_equal(o->max_qos, 1);
	assert_true(o->retain);
	assert_false(o->no_wildcard_subscriptions);
	assert_true(S(c, "x/#"));
	moat_acl_client_free(c);

	c = bind3(a, "alice", "c1", NULL);
	o = moat_acl_options(c);
	assert_int_equal(o->max_qos, 1);
	assert_false(o->retain);
	assert_true(o->no_wildcard_subscriptions);
	assert_false(S(c, "x/#"));
	assert_false(S(c, "+"));
	assert_true(S(c, "x/y"));
	assert_true(W(c, "x/y"));
	moat_acl_client_free(c);

	c = bind3(a, "alice", "c1", "id");
	assert_int_equal(moat_acl_options(c)->max_qos, 0);
	moat_acl_client_free(c);

	c = bind3(a, "bob", "c9", NULL);
	assert_false(moat_acl_options(c)->retain);
	moat_acl_client_free(c);

	c = bind3(a, NULL, "c9", NULL); /* no block: the defaults */
	o = moat_acl_options(c);
	assert_int_equal(o->max_qos, 2);
	assert_true(o->retain);
	assert_false(o->no_wildcard_subscriptions);
	moat_acl_client_free(c);

	o = moat_acl_options(NULL); /* no view: the most restrictive */
	assert_int_equal(o->max_qos, 0);
	assert_false(o->retain);
	assert_true(o->no_wildcard_subscriptions);
	moat_acl_free(a);
}

static void test_malformed(void **state)
{
	static const struct {
		const char *text;
		const char *msg;
	} cases[] = {
		{"topic a\ntopc b\n", "t.acl:2: unknown keyword \"topc\""},
		{"Topic a\n", "t.acl:1: unknown keyword \"Topic\""},
		{"# c\n\ntopic rw a\n", "t.acl:3: unknown access \"rw\" (read, write, readwrite or deny)"},
		{"topic foo bar\n", "t.acl:1: unknown access \"foo\" (read, write, readwrite or deny)"},
		{"topic\n", "t.acl:1: missing topic"},
		{"topic   \n", "t.acl:1: missing topic"},
		{"pattern\n", "t.acl:1: missing pattern topic"},
		{"topic read a/#/b\n", "t.acl:1: invalid topic filter \"a/#/b\""},
		{"topic a+\n", "t.acl:1: invalid topic filter \"a+\""},
		{"topic a/b#\n", "t.acl:1: invalid topic filter \"a/b#\""},
		{"pattern read %c#\n", "t.acl:1: invalid topic filter \"%c#\""},
		{"topic $share/g\n", "t.acl:1: invalid topic filter \"$share/g\""},
		{"topic read a # comment\n", "t.acl:1: invalid topic filter \"a # comment\""},
		{"user\n", "t.acl:1: missing user name"},
		{"clientid \n", "t.acl:1: missing client id"},
		{"identity\n", "t.acl:1: missing identity"},
		{"topic a\noption max_qos 1\n",
		 "t.acl:2: option outside a user, clientid or identity block"},
		{"user u\noption max_qos 3\n",
		 "t.acl:2: option max_qos takes 0, 1 or 2, not \"3\""},
		{"user u\noption max_qos\n", "t.acl:2: option max_qos takes 0, 1 or 2, not \"\""},
		{"user u\noption max_qos 1 2\n",
		 "t.acl:2: option max_qos takes 0, 1 or 2, not \"1 2\""},
		{"user u\noption retain no\n",
		 "t.acl:2: option retain takes true or false, not \"no\""},
		{"user u\noption no_wildcard_subscriptions yes\n",
		 "t.acl:2: option no_wildcard_subscriptions takes nothing, true or false, not \"yes\""},
		{"user u\noption max_inflight 3\n", "t.acl:2: unknown option \"max_inflight\""},
		{"user u\noption\n", "t.acl:2: unknown option \"\""},
		{"topic read a\tb\n",
		 "t.acl:1: topic is not UTF-8 free of control characters and non-characters"},
		{"topic read a\xff\n",
		 "t.acl:1: topic is not UTF-8 free of control characters and non-characters"},
		{"user \xc3\x28\n",
		 "t.acl:1: user name is not UTF-8 free of control characters and non-characters"},
		{"\x01topic a\n", "t.acl:1: unknown keyword \"?topic\""},
		{"a\nb\nc\nd\ne\n", "t.acl:1: unknown keyword \"a\""},
		{"topic a\n\n\n\n\n\n\n\n\nuser\n", "t.acl:10: missing user name"},
		{"topic a\r\ntopic b c\r\n",
		 "t.acl:2: unknown access \"b\" (read, write, readwrite or deny)"},
		{"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx a\n",
		 "t.acl:1: unknown keyword \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\""},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		refused(cases[i].text, strlen(cases[i].text), cases[i].msg);
	/* A NUL byte, on line 2. */
	refused("topic a\ntopic b\0c\n", 18, "t.acl:2: NUL byte in line");
}

static void test_long_lines(void **state)
{
	static char text[70000];
	struct moat_acl *a = NULL;
	size_t i;
	struct moat_acl_client *c;

	(void)state;
	/* A 65535-byte topic is fine: its line is 65541 bytes, over the limit. */
	memcpy(text, "topic ", 6);
	memset(text + 6, 'x', 65535);
	text[6 + 65535] = '\n';
	refused(text, 6 + 65536, "t.acl:1: line longer than 65536 bytes");
	/* A line of exactly 65536 bytes: accepted if it is valid... */
	memcpy(text, "topic ", 6);
	memset(text + 6, 'y', 65530);
	assert_int_equal(moat_acl_parse(text, 65536, "t.acl", &a, err, sizeof(err)), 0);
	c = bind3(a, NULL, "c", NULL);
	text[6 + 65530] = '\0';
	assert_true(R(c, text + 6)); /* a topic past the cache's length limit */
	assert_true(R(c, text + 6));
	moat_acl_client_free(c);
	moat_acl_free(a);
	/* ... and one byte more is refused, on the right line. */
	memcpy(text, "\n\ntopic ", 8);
	for (i = 8; i < 2 + 65537; i++)
		text[i] = 'z';
	refused(text, 2 + 65537, "t.acl:3: line longer than 65536 bytes");
	/* A 65531-byte user name on a 65536-byte line. */
	memcpy(text, "user ", 5);
	memset(text + 5, 'n', 65531);
	assert_int_equal(moat_acl_parse(text, 65536, "t.acl", &a, err, sizeof(err)), 0);
	moat_acl_free(a);
}

static void test_empty_file_denies_all(void **state)
{
	static const char *const texts[] = {"", "\n", "# nothing\n\n   \n", "user u\n"};
	struct moat_acl *a;
	struct moat_acl_client *c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		a = parse(texts[i]);
		assert_int_equal(moat_acl_count(a), 0);
		c = bind3(a, NULL, "c", NULL);
		assert_false(R(c, "a") || W(c, "a") || S(c, "a") || R(c, "$SYS/x"));
		moat_acl_client_free(c);
		c = bind3(a, "u", "c", "i");
		assert_false(R(c, "a") || W(c, "a") || S(c, "#"));
		moat_acl_client_free(c);
		moat_acl_free(a);
	}
}

static void test_invalid_requests(void **state)
{
	struct moat_acl *a = parse("topic readwrite #\n");
	struct moat_acl_client *c = bind3(a, NULL, "c", NULL);
	struct moat_acl_who nobody = {NULL, NULL, NULL};
	struct moat_acl_client *d;

	(void)state;
	assert_true(R(c, "x") && W(c, "x") && S(c, "#"));
	assert_false(R(c, "x/+") || W(c, "x/#") || R(c, ""));
	assert_int_equal(moat_acl_check(c, (const uint8_t *)"x", 1, 0), MOAT_DENY);
	assert_int_equal(moat_acl_check(c, (const uint8_t *)"x", 1, 3), MOAT_DENY);
	assert_int_equal(moat_acl_check(c, (const uint8_t *)"x", 1, 8), MOAT_DENY);
	assert_int_equal(moat_acl_check(c, NULL, 0, MOAT_ACL_READ), MOAT_DENY);
	assert_int_equal(moat_acl_check(NULL, (const uint8_t *)"x", 1, MOAT_ACL_READ), MOAT_DENY);
	/* The length is what counts, not a NUL. */
	assert_int_equal(moat_acl_check(c, (const uint8_t *)"x/+", 1, MOAT_ACL_WRITE), MOAT_ALLOW);
	/* A NULL who is a client with nothing: anonymous, so the general rules. */
	d = moat_acl_bind(a, NULL);
	assert_non_null(d);
	assert_true(R(d, "x"));
	moat_acl_client_free(d);
	d = moat_acl_bind(a, &nobody);
	assert_true(R(d, "x"));
	moat_acl_client_free(d);
	assert_null(moat_acl_bind(NULL, &nobody));
	moat_acl_client_free(NULL);
	moat_acl_free(NULL);
	assert_int_equal(moat_acl_count(NULL), 0);
	moat_acl_client_free(c);
	moat_acl_free(a);
}

/* The cache is keyed by access too, and the view outlives its ACL. */
static void test_cache_basics(void **state)
{
	struct moat_acl *a = parse("topic read r\ntopic write w\n");
	struct moat_acl_client *c = bind3(a, NULL, "c", NULL);
	static const struct ask asks[] = {
		{MOAT_ACL_READ, "r", true},
		{MOAT_ACL_WRITE, "r", false},
		{MOAT_ACL_SUBSCRIBE, "r", true},
		{MOAT_ACL_WRITE, "w", true},
		{MOAT_ACL_READ, "w", false},
		{MOAT_ACL_SUBSCRIBE, "w", false},
	};
	int i;

	(void)state;
	moat_acl_free(a); /* the view keeps no pointer into it */
	for (i = 0; i < 3; i++)
		expect(c, asks, sizeof(asks) / sizeof(asks[0]));
	moat_acl_client_free(c);

	/* Many topics, each asked with every access, twice: some share a slot. */
	a = parse("topic read #\n");
	c = bind3(a, NULL, "c", NULL);
	for (i = 0; i < 3000; i++) {
		char t[32];
		int k;

		snprintf(t, sizeof(t), "t/%d", i);
		for (k = 0; k < 2; k++) {
			assert_true(R(c, t));
			assert_false(W(c, t));
			assert_true(S(c, t));
		}
	}
	moat_acl_client_free(c);
	moat_acl_free(a);
}

static void test_load(void **state)
{
	char path[] = "/tmp/moat-test-acl-XXXXXX";
	static const char text[] = "user u\ntopic read x\n";
	struct moat_acl *a = NULL;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);
	assert_int_equal(moat_acl_load(path, &a, err, sizeof(err)), 0);
	assert_int_equal(moat_acl_count(a), 1);
	moat_acl_free(a);

	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "bad\n", 4), 4);
	close(fd);
	a = NULL;
	assert_int_equal(moat_acl_load(path, &a, err, sizeof(err)), MOAT_ECONFIG);
	assert_null(a);
	{
		char want[256];
		snprintf(want, sizeof(want), "%s:3: unknown keyword \"bad\"", path);
		assert_string_equal(err, want);
	}
	unlink(path);
	assert_int_equal(moat_acl_load(path, &a, err, sizeof(err)), MOAT_EIO);
	assert_null(a);
	assert_non_null(strstr(err, path));
	assert_int_equal(moat_acl_load("/", &a, err, sizeof(err)), MOAT_EIO);
}

static void test_alloc_failures(void **state)
{
	static const char text[] = "topic read a/#\n"
				   "user alice\ntopic write b\noption max_qos 1\n"
				   "clientid c1\ntopic c\n"
				   "identity i\ntopic d\n"
				   "pattern readwrite p/%c/%u\n"
				   "user bob\ntopic e\ntopic f\ntopic g\ntopic h\ntopic i\n";
	struct moat_acl *a;
	struct moat_acl_client *c;
	long budget;
	int rc;

	(void)state;
	if (!ALLOC_FAULTS)
		skip();
	for (budget = 0; budget < 200; budget++) {
		a = NULL;
		alloc_budget = budget;
		rc = moat_acl_parse(text, sizeof(text) - 1, "t.acl", &a, err, sizeof(err));
		alloc_budget = -1;
		if (rc == 0)
			break;
		assert_int_equal(rc, MOAT_ENOMEM);
		assert_null(a);
		assert_non_null(strstr(err, "out of memory"));
	}
	assert_int_equal(rc, 0);
	for (budget = 0; budget < 100; budget++) {
		struct moat_acl_who who = {"alice", "c1", "i"};
		bool ok;

		alloc_budget = budget;
		c = moat_acl_bind(a, &who);
		ok = c && R(c, "p/c1/alice") && W(c, "b") && !R(c, "b") && W(c, "c");
		alloc_budget = -1;
		if (c) {
			/* A failed cache store never makes an answer wrong. */
			assert_true(ok);
			assert_true(R(c, "p/c1/alice") && W(c, "b") && !R(c, "b"));
			moat_acl_client_free(c);
			if (budget > 20)
				break;
		}
	}
	moat_acl_free(a);
}

/* ---- the randomized differential test ---- */

#define MAXR 8
#define MAXB 3

struct rrule {
	char f[48];
	int access; /* 1 read, 2 write, 3 readwrite, 8 deny */
};

struct rblock {
	char name[8];
	struct rrule r[MAXR];
	int n;
	int nowild, qos, retain; /* -1 = option not given */
};

struct model {
	struct rrule general[MAXR], patterns[MAXR];
	int ngeneral, npatterns;
	struct rblock blk[3][MAXB]; /* user, clientid, identity */
	int nblk[3];
};

struct rview {
	struct rrule r[4 * MAXR + MAXR];
	int n;
	bool deny_all;
	bool nowild;
	int qos;
	bool retain;
};

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)((rng_state >> 33) % n);
}

/* Splits s into levels (at most 16, each at most 47 bytes). */
static int levels(const char *s, char lv[16][48])
{
	int n = 0;
	const char *p = s;

	for (;;) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		memcpy(lv[n], p, len);
		lv[n][len] = '\0';
		n++;
		if (!e || n == 16)
			return n;
		p = e + 1;
	}
}

static bool ref_valid_filter(const char *f)
{
	char lv[16][48];
	int n, i;

	if (!*f)
		return false;
	n = levels(f, lv);
	for (i = 0; i < n; i++) {
		if (strchr(lv[i], '#') && (strcmp(lv[i], "#") != 0 || i != n - 1))
			return false;
		if (strchr(lv[i], '+') && strcmp(lv[i], "+") != 0)
			return false;
	}
	return true;
}

static bool ref_match_lv(char f[][48], int nf, char t[][48], int nt)
{
	if (nf == 0)
		return nt == 0;
	if (strcmp(f[0], "#") == 0)
		return true;
	if (nt == 0)
		return false;
	if (strcmp(f[0], "+") != 0 && strcmp(f[0], t[0]) != 0)
		return false;
	return ref_match_lv(f + 1, nf - 1, t + 1, nt - 1);
}

static bool ref_match(const char *f, const char *t)
{
	char fl[16][48], tl[16][48];
	int nf = levels(f, fl), nt = levels(t, tl);

	if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	return ref_match_lv(fl, nf, tl, nt);
}

/*
 * Coverage by witnesses: f covers q if f matches every witness topic of q,
 * where a '+' of q becomes a fresh level "~" (no rule or value holds it), and
 * a '#' becomes nothing, "~", "~/~", ... up to more levels than f has. w
 * holds the witness levels so far.
 */
static bool ref_witnesses(const char *f, int nf, char q[][48], int nq, char w[][48], int nw)
{
	char topic[1024];
	int extra, k;

	if (nq > 0 && strcmp(q[0], "#") != 0) {
		strcpy(w[nw], strcmp(q[0], "+") == 0 ? "~" : q[0]);
		return ref_witnesses(f, nf, q + 1, nq - 1, w, nw + 1);
	}
	for (extra = 0; extra <= (nq ? nf + 1 : 0); extra++) {
		if (nw + extra == 0)
			continue; /* "#" alone has no parent topic */
		topic[0] = '\0';
		for (k = 0; k < nw + extra; k++) {
			if (k)
				strcat(topic, "/");
			strcat(topic, k < nw ? w[k] : "~");
		}
		if (!ref_match(f, topic))
			return false;
	}
	return true;
}

static bool ref_covers(const char *f, const char *q)
{
	char fl[16][48], ql[16][48], w[40][48];
	int nf = levels(f, fl), nq = levels(q, ql);

	return ref_witnesses(f, nf, ql, nq, w, 0);
}

static bool dangerous(const char *v)
{
	return strpbrk(v, "+#/") != NULL;
}

/* Substitutes pattern p for (id, user) into v, as acl.h says. */
static void ref_pattern(struct rview *v, const struct rrule *p, const char *id, const char *user)
{
	char out[512];
	size_t o = 0, i;
	bool deny = p->access == 8;

	for (i = 0; p->f[i]; i++) {
		const char *val = NULL;
		if (p->f[i] == '%' && (p->f[i + 1] == 'c' || p->f[i + 1] == 'u')) {
			val = p->f[i + 1] == 'c' ? id : user;
			if (!val || (!deny && dangerous(val)))
				return;
			memcpy(out + o, val, strlen(val));
			o += strlen(val);
			i++;
		} else {
			out[o++] = p->f[i];
		}
	}
	out[o] = '\0';
	if (deny && !ref_valid_filter(out)) {
		v->deny_all = true;
		return;
	}
	if (!deny && (o == 0 || (out[0] == '$' && p->f[0] != '$')))
		return;
	assert_true(o < sizeof(v->r[v->n].f));
	memcpy(v->r[v->n].f, out, o + 1);
	v->r[v->n++].access = p->access;
}

static void ref_add_block(struct rview *v, const struct rblock *b)
{
	int i;

	for (i = 0; i < b->n; i++)
		v->r[v->n++] = b->r[i];
	if (b->nowild == 1)
		v->nowild = true;
	if (b->qos >= 0 && b->qos < v->qos)
		v->qos = b->qos;
	if (b->retain == 0)
		v->retain = false;
}

static const struct rblock *ref_find(const struct model *m, int kind, const char *name)
{
	int i;

	for (i = 0; name && i < m->nblk[kind]; i++)
		if (strcmp(m->blk[kind][i].name, name) == 0)
			return &m->blk[kind][i];
	return NULL;
}

static void ref_bind(struct rview *v, const struct model *m, const char *user, const char *id,
		     const char *ident)
{
	const char *names[3] = {user, id, ident};
	int i, k;

	memset(v, 0, sizeof(*v));
	v->qos = 2;
	v->retain = true;
	if (!user)
		for (i = 0; i < m->ngeneral; i++)
			v->r[v->n++] = m->general[i];
	for (k = 0; k < 3; k++) {
		const struct rblock *b = ref_find(m, k, names[k]);
		if (b)
			ref_add_block(v, b);
	}
	for (i = 0; i < m->npatterns; i++)
		ref_pattern(v, &m->patterns[i], id, user);
}

static bool ref_check(const struct rview *v, int access, const char *t)
{
	bool sub = access == MOAT_ACL_SUBSCRIBE;
	int need = access == MOAT_ACL_WRITE ? 2 : 1, i;
	bool allow = false;

	if (v->deny_all)
		return false;
	if (sub && (!ref_valid_filter(t) || (v->nowild && strpbrk(t, "+#"))))
		return false;
	if (!sub && (!*t || strpbrk(t, "+#")))
		return false;
	for (i = 0; i < v->n; i++) {
		bool hit = sub ? ref_covers(v->r[i].f, t) : ref_match(v->r[i].f, t);
		if (!hit)
			continue;
		if (v->r[i].access == 8)
			return false;
		allow |= (v->r[i].access & need) != 0;
	}
	return allow;
}

static const char *const rule_levels[] = {"a", "b", "$a", "", "+", "c1", "u1"};
static const char *const pattern_levels[] = {"a", "%c", "%u", "x%cy", "+", "", "$a"};
static const char *const topic_levels[] = {"a", "b", "$a", "", "c1", "u1", "xc1y", "Z",
					   "+", "#", "x/y", "xay", "xZy"};

/* A random filter (or topic) from the level alphabet; hash last with probability 1/4. */
static void rnd_filter(char *out, const char *const *alpha, size_t na, bool hash, bool valid)
{
	do {
		int n = 1 + (int)rnd(3), i;
		out[0] = '\0';
		for (i = 0; i < n; i++) {
			if (i)
				strcat(out, "/");
			strcat(out, alpha[rnd((uint32_t)na)]);
		}
		if (hash && rnd(4) == 0) {
			if (rnd(5) == 0)
				out[0] = '\0';
			strcat(out, out[0] ? "/#" : "#");
		}
	} while (valid && !ref_valid_filter(out));
}

static int rnd_access(void)
{
	static const int acc[] = {1, 2, 3, 8, 3, 1};
	return acc[rnd(6)];
}

static const char *access_word(int access)
{
	switch (access) {
	case 1:
		return "read";
	case 2:
		return "write";
	case 8:
		return "deny";
	default:
		return rnd(2) ? "readwrite" : NULL;
	}
}

static void emit_rule(char **p, const char *kw, const struct rrule *r)
{
	const char *w = access_word(r->access);
	*p += w ? sprintf(*p, "%s %s %s\n", kw, w, r->f) : sprintf(*p, "%s %s\n", kw, r->f);
}

static void rnd_rules(struct rrule *r, int *n, bool pattern)
{
	int i;

	*n = (int)rnd(MAXR / 2 + 1);
	for (i = 0; i < *n; i++) {
		if (pattern)
			rnd_filter(r[i].f, pattern_levels, 7, true, true);
		else
			rnd_filter(r[i].f, rule_levels, 7, true, true);
		r[i].access = rnd_access();
	}
}

/* A random model, written out as an ACL file in text. */
static void rnd_model(struct model *m, char *text)
{
	static const char *const names[3][MAXB] = {
		{"u1", "a", "#"}, {"c1", "a", "x/y"}, {"i1", "i2", "a"}};
	static const char *const kw[3] = {"user", "clientid", "identity"};
	char *p = text;
	int k, b, i, np = 0;

	memset(m, 0, sizeof(*m));
	rnd_rules(m->general, &m->ngeneral, false);
	rnd_rules(m->patterns, &m->npatterns, true);
	for (i = 0; i < m->ngeneral; i++)
		emit_rule(&p, "topic", &m->general[i]);
	for (k = 0; k < 3; k++) {
		m->nblk[k] = (int)rnd(MAXB + 1);
		for (b = 0; b < m->nblk[k]; b++) {
			struct rblock *bl = &m->blk[k][b];
			strcpy(bl->name, names[k][b]);
			rnd_rules(bl->r, &bl->n, false);
			bl->nowild = (int)rnd(3) - 1;
			bl->qos = (int)rnd(4) - 1;
			bl->retain = (int)rnd(3) - 1;
			p += sprintf(p, "%s %s\n", kw[k], bl->name);
			if (bl->nowild >= 0)
				p += sprintf(p, "option no_wildcard_subscriptions %s\n",
					     bl->nowild ? "true" : "false");
			if (bl->qos >= 0)
				p += sprintf(p, "option max_qos %d\n", bl->qos);
			if (bl->retain >= 0)
				p += sprintf(p, "option retain %s\n", bl->retain ? "true" : "false");
			for (i = 0; i < bl->n; i++) {
				emit_rule(&p, "topic", &bl->r[i]);
				if (np < m->npatterns && rnd(3) == 0) /* patterns anywhere */
					emit_rule(&p, "pattern", &m->patterns[np++]);
			}
		}
	}
	while (np < m->npatterns)
		emit_rule(&p, "pattern", &m->patterns[np++]);
	*p = '\0';
}

static void test_differential_random(void **state)
{
	static const char *const users[] = {NULL, "u1", "a", "#", "x/y", "$a", "nobody"};
	static const char *const ids[] = {"c1", "a", "+", "x/y", "$a", "b", "", "Z"};
	static const char *const idents[] = {NULL, "i1", "i2", "a"};
	static const int accesses[] = {MOAT_ACL_READ, MOAT_ACL_WRITE, MOAT_ACL_SUBSCRIBE};
	char text[8192], pool[34][64];
	struct model m;
	struct rview v;
	int round, cl, i;
	long checks = 0, allows = 0;

	(void)state;
	rng_state = 0x5eed;
	for (round = 0; round < 400; round++) {
		struct moat_acl *a;

		rnd_model(&m, text);
		a = parse(text);
		/* Each topic with each access: the cache must tell them apart. */
		for (i = 0; i < 34; i++)
			rnd_filter(pool[i], topic_levels, 13, true, false);
		for (cl = 0; cl < 6; cl++) {
			const char *u = users[rnd(7)], *id = ids[rnd(8)], *ident = idents[rnd(4)];
			struct moat_acl_client *c = bind3(a, u, id, ident);
			const struct moat_acl_opts *o = moat_acl_options(c);

			ref_bind(&v, &m, u, id, ident);
			assert_int_equal(o->no_wildcard_subscriptions, v.nowild);
			assert_int_equal(o->max_qos, v.qos);
			assert_int_equal(o->retain, v.retain);
			for (i = 0; i < 400; i++) {
				int k = (int)rnd(i < 200 ? 30 : 102); /* repeats, then evictions */
				int acc = accesses[k % 3];
				const char *t = pool[k / 3];
				bool got = can(c, acc, t);
				bool want = ref_check(&v, acc, t);
				if (got != want)
					fail_msg("round %d: user %s id %s identity %s: access %d "
						 "\"%s\": got %d, want %d\nfile:\n%s",
						 round, u ? u : "(none)", id, ident ? ident : "(none)",
						 acc, t, got, want, text);
				checks++;
				allows += got;
			}
			moat_acl_client_free(c);
		}
		moat_acl_free(a);
	}
	assert_true(checks == 400L * 6 * 400);
	print_message("%ld checks, %ld allowed\n", checks, allows);
	assert_true(allows > checks / 20); /* not a test of deny alone */
}

/* The reference's coverage agrees with the examples stated in acl.h and the brief. */
static void test_reference_sanity(void **state)
{
	(void)state;
	assert_true(ref_covers("a/#", "a/+/b"));
	assert_false(ref_covers("a/+", "a/#"));
	assert_true(ref_covers("a/#", "a"));
	assert_true(ref_covers("+/#", "#"));
	assert_false(ref_covers("#", "$a/#"));
	assert_true(ref_covers("+/x", "+/x"));
	assert_false(ref_covers("/#", "#"));
	assert_false(ref_covers("a/+/#", "a/#"));
	assert_false(ref_covers("+/+/#", "#"));
	assert_true(ref_match("a/#", "a"));
	assert_false(ref_match("#", "$SYS/x"));
}

/* ---- a 10,000-rule file ---- */

static void test_ten_thousand_rules(void **state)
{
	static const char *const words[] = {"read", "write", "readwrite"};
	static char text[1u << 20];
	size_t cap = sizeof(text), n = 0;
	char topic[64], user[32];
	struct moat_acl *a;
	struct moat_acl_client *c;
	struct timespec t0, t1;
	int u, k, i;
	double ns;

	(void)state;
	n += (size_t)sprintf(text + n, "topic read public/#\n");
	for (u = 0; u < 1000; u++) {
		n += (size_t)sprintf(text + n, "user user%04d\n", u);
		for (k = 0; k < 10; k++)
			n += (size_t)sprintf(text + n, "topic %s home/user%04d/t%d\n", words[k % 3],
					     u, k);
	}
	n += (size_t)sprintf(text + n, "pattern readwrite clients/%%c/#\n"
				       "pattern deny home/%%u/t9\n");
	assert_true(n < cap);
	assert_int_equal(moat_acl_parse(text, n, "big.acl", &a, err, sizeof(err)), 0);
	assert_int_equal(moat_acl_count(a), 1 + 10000 + 2);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 1000; i++) {
		snprintf(user, sizeof(user), "user%04d", (i * 7) % 1000);
		c = bind3(a, user, "dev", NULL);
		moat_acl_client_free(c);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1000;
	print_message("10,000 rules: %.0f ns per bind (this build's flags)\n", ns);

	c = bind3(a, "user0500", "dev", NULL);
	for (k = 0; k < 10; k++) {
		snprintf(topic, sizeof(topic), "home/user0500/t%d", k);
		assert_int_equal(R(c, topic), k != 9 && k % 3 != 1);
		assert_int_equal(W(c, topic), k != 9 && k % 3 != 0);
		snprintf(topic, sizeof(topic), "home/user0501/t%d", k);
		assert_false(R(c, topic) || W(c, topic));
	}
	assert_true(W(c, "clients/dev/x"));
	assert_false(W(c, "clients/other/x"));
	assert_false(R(c, "public/x")); /* general rules are for clients without a user name */
	moat_acl_client_free(c);
	c = bind3(a, NULL, "anon", NULL);
	assert_true(R(c, "public/x") && W(c, "clients/anon/1"));
	assert_false(R(c, "home/user0000/t0"));
	moat_acl_client_free(c);
	moat_acl_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_anonymous_general_rules),
		cmocka_unit_test(test_user_blocks),
		cmocka_unit_test(test_access_words),
		cmocka_unit_test(test_deny_precedence),
		cmocka_unit_test(test_topics_with_spaces_and_layout),
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_cve_2017_7650),
		cmocka_unit_test(test_deny_pattern_not_weakened),
		cmocka_unit_test(test_substitution_limits),
		cmocka_unit_test(test_subscribe_coverage),
		cmocka_unit_test(test_dollar_topics),
		cmocka_unit_test(test_clientid_and_identity_blocks),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_empty_file_denies_all),
		cmocka_unit_test(test_invalid_requests),
		cmocka_unit_test(test_cache_basics),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_reference_sanity),
		cmocka_unit_test(test_differential_random),
		cmocka_unit_test(test_ten_thousand_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
