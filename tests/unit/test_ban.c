/*
 * test_ban.c - unit tests for bans and the allow-list (src/security/ban.c).
 *
 * Covers: exact and CIDR address bans, IPv4 (/0, /8, /24, /32) and IPv6 (/0,
 * /48, /64, /128), canonical keys (host bits cleared, "/32" is the address),
 * IPv4-mapped addresses as keys and as peers, refused keys, expiry at exact
 * monotonic times, allow-list precedence (MOAT_EDENIED, bans lifted by a
 * later allow, prefixes that only overlap), client id and user name bans,
 * remove, a replacement keeping the later end, moat_bans_each and
 * moat_bans_count, reasons cleaned, the bound on the table (eviction of the
 * ban ending first), the bans file (round trip through the wall clock, mode
 * 0600, skipped lines, malformed files refused with their line and nothing
 * added, a full table undone), allocation failures (outside ASan builds),
 * checks racing an adding and removing thread, and 100,000 bans.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "security/ban.h"
#include "fault_alloc.h"

static char err[512];

/* ---- helpers ---- */

/* A socket address for text (IPv4 or IPv6). */
static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
	}
	return ss;
}

static bool banned(struct moat_bans *b, const char *text, int64_t now)
{
	struct sockaddr_storage ss = addr(text);

	return moat_bans_check_addr(b, (const struct sockaddr *)&ss, now, NULL);
}

/* The key of the ban holding text at now ("" if none). */
static const char *ban_key(struct moat_bans *b, const char *text, int64_t now)
{
	static struct moat_ban_info info;
	struct sockaddr_storage ss = addr(text);

	if (!moat_bans_check_addr(b, (const struct sockaddr *)&ss, now, &info))
		return "";
	return info.key;
}

static bool allowed(struct moat_bans *b, const char *text)
{
	struct sockaddr_storage ss = addr(text);

	return moat_bans_allowed_addr(b, (const struct sockaddr *)&ss);
}

static bool id_banned(struct moat_bans *b, const char *id, int64_t now)
{
	return moat_bans_check_name(b, MOAT_BAN_CLIENTID, id, strlen(id), now, NULL);
}

static bool user_banned(struct moat_bans *b, const char *user, int64_t now)
{
	return moat_bans_check_name(b, MOAT_BAN_USERNAME, user, strlen(user), now, NULL);
}

/* A ban's kind and key, for tables of keys expected refused. */
struct kind_key {
	enum moat_ban_kind kind;
	const char *key;
};

static void add_ok(struct moat_bans *b, enum moat_ban_kind kind, const char *key, int64_t until)
{
	int rc = moat_bans_add(b, kind, key, until, "test");

	if (rc != 0)
		fail_msg("add %s: %d", key, rc);
}

/* Collects moat_bans_each output as "KIND KEY UNTIL REASON" lines. */
struct listing {
	char text[4096];
	size_t n;
	int count;
};

static void collect(void *ctx, const struct moat_ban_info *info)
{
	static const char *const kinds[] = {"addr", "clientid", "username"};
	struct listing *l = ctx;

	l->n += (size_t)snprintf(l->text + l->n, sizeof(l->text) - l->n, "%s %s %lld %s\n",
				 kinds[info->kind], info->key, (long long)info->until_ms,
				 info->reason);
	l->count++;
}

/* A fresh scratch directory's file path. */
static char dir[64];

static const char *scratch(const char *name)
{
	static char path[128];

	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/test_ban.XXXXXX");
		assert_non_null(mkdtemp(dir));
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* ---- addresses ---- */

/*
 * An address ban and what the table holds once it is added (with the bans
 * of the rows before it): the addresses in `in` banned, those in `out` not.
 */
struct prefix_case {
	const char *ban;
	const char *in[2];
	const char *out[2];
};

/* Adds each row's ban in order (forever), checking the table after each. */
static void check_prefixes(struct moat_bans *b, const struct prefix_case *rows, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		add_ok(b, MOAT_BAN_ADDR, rows[i].ban, 0);
		for (j = 0; j < 2 && rows[i].in[j]; j++)
			if (!banned(b, rows[i].in[j], 1))
				fail_msg("with %s: %s not banned", rows[i].ban, rows[i].in[j]);
		for (j = 0; j < 2 && rows[i].out[j]; j++)
			if (banned(b, rows[i].out[j], 1))
				fail_msg("with %s: %s banned", rows[i].ban, rows[i].out[j]);
	}
}

static void test_v4(void **state)
{
	static const struct prefix_case prefixes[] = {
		{"192.0.2.7", {"192.0.2.7"}, {"192.0.2.8"}},
		{"198.51.100.0/24", {"198.51.100.0", "198.51.100.255"}, {"198.51.101.0"}},
		{"10.0.0.0/8", {"10.255.1.2"}, {"11.0.0.0"}},
		/* IPv4 bans never touch IPv6 peers. */
		{"203.0.113.9/32", {"203.0.113.9"}, {"203.0.113.8", "2001:db8::1"}},
	};
	static const struct prefix_case everything[] = {
		{"0.0.0.0/0", {"1.2.3.4", "255.255.255.255"}, {"::1"}},
	};
	struct moat_bans *b = moat_bans_new();

	(void)state;
	check_prefixes(b, prefixes, sizeof(prefixes) / sizeof(prefixes[0]));
	/* The most specific ban is the one reported. */
	add_ok(b, MOAT_BAN_ADDR, "10.1.2.3", 0);
	assert_string_equal(ban_key(b, "10.1.2.3", 1), "10.1.2.3");
	assert_string_equal(ban_key(b, "10.1.2.4", 1), "10.0.0.0/8");
	assert_int_equal(moat_bans_count(b, 1), 5);
	check_prefixes(b, everything, 1);
	moat_bans_free(b);
}

static void test_v6(void **state)
{
	static const struct prefix_case prefixes[] = {
		{"2001:db8::7", {"2001:db8::7"}, {"2001:db8::8"}},
		{"2001:db8:1::/48", {"2001:db8:1:ffff::1"}, {"2001:db8:2::1"}},
		{"2001:db8:5:6::/64", {"2001:db8:5:6:ffff:ffff:ffff:ffff"}, {"2001:db8:5:7::"}},
		{"2001:db8:9::9/128", {"2001:db8:9::9"}, {"2001:db8:9::8", "192.0.2.1"}},
		/* ::/0 is IPv6 only: an IPv4-mapped peer is an IPv4 peer. */
		{"::/0", {"fe80::1", "::1"}, {"::ffff:192.0.2.1", "192.0.2.1"}},
	};
	struct moat_bans *b = moat_bans_new();

	(void)state;
	check_prefixes(b, prefixes, sizeof(prefixes) / sizeof(prefixes[0]));
	assert_string_equal(ban_key(b, "2001:db8:1::5", 1), "2001:db8:1::/48");
	moat_bans_free(b);
}

static void test_canonical_keys(void **state)
{
	static const char *const bad[] = {
		"", "1.2.3", "1.2.3.4/33", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/08", "1.2.3.4/+8",
		"1.2.3.4/1000", "::1/129", "fe80::1%eth0", "1.2.3.4 ", " 1.2.3.4", "a.b.c.d",
		"1.2.3.4/24/8", "1.2.3.4.5", "::ffff:1.2.3.4.5", "2001:db8:::1", "/24", "example.org",
	};
	struct moat_bans *b = moat_bans_new();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (moat_bans_add(b, MOAT_BAN_ADDR, bad[i], 0, NULL) != MOAT_EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
	assert_int_equal(moat_bans_add(b, 7, "x", 0, NULL), MOAT_EINVAL);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, NULL, 0, NULL), MOAT_EINVAL);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "1.2.3.4", -1, NULL), MOAT_EINVAL);
	assert_int_equal(moat_bans_count(b, 1), 0);
	/* Host bits are cleared: the network holding the address. */
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.77/24", 0);
	assert_string_equal(ban_key(b, "192.0.2.1", 1), "192.0.2.0/24");
	add_ok(b, MOAT_BAN_ADDR, "2001:db8:aaaa:bbbb:1:2:3:4/33", 0);
	assert_string_equal(ban_key(b, "2001:db8:8000::1", 1), "2001:db8:8000::/33");
	assert_false(banned(b, "2001:db8:7fff::1", 1));
	add_ok(b, MOAT_BAN_ADDR, "10.9.8.7/0", 0);
	assert_string_equal(ban_key(b, "11.1.1.1", 1), "0.0.0.0/0");
	/* "/32" is the exact address; the same key either way. */
	add_ok(b, MOAT_BAN_ADDR, "198.51.100.1/32", 0);
	assert_string_equal(ban_key(b, "198.51.100.1", 1), "198.51.100.1");
	add_ok(b, MOAT_BAN_ADDR, "2001:DB8:0:0::1/128", 0);
	assert_string_equal(ban_key(b, "2001:db8::1", 1), "2001:db8::1");
	assert_int_equal(moat_bans_count(b, 1), 5);
	/* Removal canonicalises the same way. */
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "192.0.2.200/24"), 0);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "198.51.100.1"), 0);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "2001:db8::1/128"), 0);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "0.0.0.0/0"), 0);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "1.2.3"), MOAT_EINVAL);
	assert_int_equal(moat_bans_count(b, 1), 1);
	moat_bans_free(b);
}

static void test_ipv4_mapped(void **state)
{
	struct moat_bans *b = moat_bans_new();
	struct moat_ban_info info;
	struct sockaddr_storage ss;

	(void)state;
	/* A v4 ban catches the same address arriving on a dual-stack socket. */
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.0/24", 0);
	assert_true(banned(b, "::ffff:192.0.2.7", 1));
	assert_false(banned(b, "::ffff:192.0.3.7", 1));
	/* A mapped key is an IPv4 key. */
	add_ok(b, MOAT_BAN_ADDR, "::ffff:198.51.100.7", 0);
	assert_string_equal(ban_key(b, "198.51.100.7", 1), "198.51.100.7");
	add_ok(b, MOAT_BAN_ADDR, "::ffff:203.0.113.0/120", 0);
	assert_string_equal(ban_key(b, "203.0.113.200", 1), "203.0.113.0/24");
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "198.51.100.7"), 0);
	/* ::ffff:0:0/96 is every IPv4 address, and no IPv6 one. */
	add_ok(b, MOAT_BAN_ADDR, "::ffff:0:0/96", 0);
	assert_string_equal(ban_key(b, "8.8.8.8", 1), "0.0.0.0/0");
	assert_false(banned(b, "2001:db8::1", 1));
	/* A shorter v6 prefix stays IPv6. */
	add_ok(b, MOAT_BAN_ADDR, "::ffff:0:0/95", 0);
	ss = addr("::fffe:1:1");
	assert_true(moat_bans_check_addr(b, (const struct sockaddr *)&ss, 1, &info));
	assert_string_equal(info.key, "::fffe:0:0/95");
	/* Not an IP socket: never banned. */
	ss.ss_family = AF_UNIX;
	assert_false(moat_bans_check_addr(b, (const struct sockaddr *)&ss, 1, NULL));
	assert_false(moat_bans_check_addr(b, NULL, 1, NULL));
	moat_bans_free(b);
}

/* ---- time ---- */

static void test_expiry(void **state)
{
	struct moat_bans *b = moat_bans_new();
	struct moat_ban_info info;

	(void)state;
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.1", 1000);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.0/24", 2000);
	add_ok(b, MOAT_BAN_CLIENTID, "c1", 1500);
	add_ok(b, MOAT_BAN_USERNAME, "u1", 0);
	assert_true(banned(b, "192.0.2.1", 999));
	assert_string_equal(ban_key(b, "192.0.2.1", 999), "192.0.2.1");
	/* An expired /32 falls through to the /24 still in force. */
	assert_string_equal(ban_key(b, "192.0.2.1", 1000), "192.0.2.0/24");
	assert_true(id_banned(b, "c1", 1499));
	assert_false(id_banned(b, "c1", 1500));
	assert_true(moat_bans_check_name(b, MOAT_BAN_USERNAME, "u1", 2, 1500, &info));
	assert_int_equal(info.until_ms, 0);
	assert_string_equal(info.reason, "test");
	assert_int_equal(moat_bans_count(b, 1999), 2);
	assert_false(banned(b, "192.0.2.1", 2000));
	assert_int_equal(moat_bans_count(b, 2000), 1);
	/* Over at a time already seen: purged, gone for remove, not stored again. */
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "192.0.2.0/24"), MOAT_ENOTFOUND);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.9", 1800, NULL), 0);
	assert_false(banned(b, "192.0.2.9", 1));
	assert_int_equal(moat_bans_count(b, 2000), 1);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.9", 5000);
	assert_true(banned(b, "192.0.2.9", 4999));
	moat_bans_free(b);
}

static void test_replace_keeps_later_end(void **state)
{
	struct moat_bans *b = moat_bans_new();
	struct moat_ban_info info;

	(void)state;
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.1", 5000, "first"), 0);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.1/32", 3000, "shorter"), 0);
	assert_true(banned(b, "192.0.2.1", 4000));
	assert_string_equal(ban_key(b, "192.0.2.1", 4999), "192.0.2.1");
	assert_false(banned(b, "192.0.2.1", 5000));
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.1", 9000, "longer"), 0);
	{
		struct sockaddr_storage ss = addr("192.0.2.1");

		assert_true(moat_bans_check_addr(b, (const struct sockaddr *)&ss, 5000, &info));
	}
	assert_int_equal(info.until_ms, 9000);
	assert_string_equal(info.reason, "longer");
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.1", 0, "forever"), 0);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.1", 99999, "shorter again"), 0);
	assert_int_equal(moat_bans_count(b, 5000), 1);
	assert_true(banned(b, "192.0.2.1", INT64_MAX - 1));
	assert_int_equal(moat_bans_count(b, INT64_MAX - 1), 1);
	moat_bans_free(b);
	/* Names alike; the reason goes with the end kept. */
	b = moat_bans_new();
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "c", 100, "a"), 0);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "c", 200, "b"), 0);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "c", 150, "c"), 0);
	assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "c", 1, 199, &info));
	assert_int_equal(info.until_ms, 200);
	assert_string_equal(info.reason, "b");
	assert_int_equal(moat_bans_count(b, 199), 1);
	moat_bans_free(b);
}

/* ---- names, allow-list, remove ---- */

static void test_names(void **state)
{
	static const struct kind_key bad[] = {
		{MOAT_BAN_CLIENTID, ""},      {MOAT_BAN_CLIENTID, "a b"},   {MOAT_BAN_CLIENTID, "a\tb"},
		{MOAT_BAN_USERNAME, "a\nb"}, {MOAT_BAN_USERNAME, "a\x7f"},
	};
	struct moat_bans *b = moat_bans_new();
	char name[300];
	size_t i;

	(void)state;
	add_ok(b, MOAT_BAN_CLIENTID, "sensor-1", 0);
	add_ok(b, MOAT_BAN_USERNAME, "mallory", 0);
	assert_true(id_banned(b, "sensor-1", 1));
	assert_false(id_banned(b, "sensor-2", 1));
	assert_false(id_banned(b, "mallory", 1)); /* kinds are apart */
	assert_true(user_banned(b, "mallory", 1));
	assert_false(user_banned(b, "sensor-1", 1));
	/* Checks take a length: no terminator needed, a prefix is another name. */
	assert_true(moat_bans_check_name(b, MOAT_BAN_USERNAME, "mallory!", 7, 1, NULL));
	assert_false(moat_bans_check_name(b, MOAT_BAN_USERNAME, "mallory", 6, 1, NULL));
	assert_false(moat_bans_check_name(b, MOAT_BAN_ADDR, "mallory", 7, 1, NULL));
	assert_false(moat_bans_check_name(b, MOAT_BAN_USERNAME, NULL, 0, 1, NULL));
	/* Names the bans file could not hold are refused. */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (moat_bans_add(b, bad[i].kind, bad[i].key, 0, NULL) != MOAT_EINVAL)
			fail_msg("accepted \"%s\"", bad[i].key);
	memset(name, 'x', 256);
	name[256] = '\0';
	assert_int_equal(moat_bans_add(b, MOAT_BAN_USERNAME, name, 0, NULL), MOAT_EINVAL);
	name[255] = '\0';
	add_ok(b, MOAT_BAN_USERNAME, name, 0);
	assert_true(moat_bans_check_name(b, MOAT_BAN_USERNAME, name, 255, 1, NULL));
	memset(name, 'x', sizeof(name));
	assert_false(moat_bans_check_name(b, MOAT_BAN_USERNAME, name, sizeof(name), 1, NULL));
	/* UTF-8 and '#', '+', '/' are fine. */
	add_ok(b, MOAT_BAN_CLIENTID, "d\xc3\xa9vice/#+", 0);
	assert_true(id_banned(b, "d\xc3\xa9vice/#+", 1));
	assert_int_equal(moat_bans_count(b, 1), 4);
	moat_bans_free(b);
}

static void test_remove(void **state)
{
	struct moat_bans *b = moat_bans_new();

	(void)state;
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.0/24", 0);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.1", 0);
	add_ok(b, MOAT_BAN_CLIENTID, "c", 0);
	add_ok(b, MOAT_BAN_USERNAME, "c", 0);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "192.0.2.1"), 0);
	assert_true(banned(b, "192.0.2.1", 1)); /* the /24 still holds it */
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "192.0.2.1"), MOAT_ENOTFOUND);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "192.0.2.0/25"), MOAT_ENOTFOUND);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "192.0.2.0/24"), 0);
	assert_false(banned(b, "192.0.2.1", 1));
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_CLIENTID, "c"), 0);
	assert_false(id_banned(b, "c", 1));
	assert_true(user_banned(b, "c", 1));
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_CLIENTID, "c"), MOAT_ENOTFOUND);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_CLIENTID, "a b"), MOAT_EINVAL);
	assert_int_equal(moat_bans_count(b, 1), 1);
	moat_bans_free(b);
	moat_bans_free(NULL);
}

static void test_allow_list(void **state)
{
	static const struct kind_key covered[] = {
		{MOAT_BAN_ADDR, "10.1.2.3"},
		{MOAT_BAN_ADDR, "10.1.0.0/16"},
		{MOAT_BAN_ADDR, "10.0.0.0/8"},
		{MOAT_BAN_ADDR, "::ffff:10.9.9.9"},
		{MOAT_BAN_ADDR, "2001:db8:a:b::/64"},
		{MOAT_BAN_USERNAME, "admin"},
		{MOAT_BAN_CLIENTID, "ops-console"},
	};
	struct moat_bans *b = moat_bans_new();
	size_t i;

	(void)state;
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_ADDR, "10.0.0.0/8"), 0);
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_ADDR, "2001:db8:a::/48"), 0);
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_USERNAME, "admin"), 0);
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_CLIENTID, "ops-console"), 0);
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_ADDR, "10.0.0.0/8"), 0); /* twice is fine */
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_ADDR, "10.0.0/8"), MOAT_EINVAL);
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_USERNAME, ""), MOAT_EINVAL);
	assert_true(allowed(b, "10.20.30.40"));
	assert_true(allowed(b, "::ffff:10.1.1.1"));
	assert_true(allowed(b, "2001:db8:a:1::1"));
	assert_false(allowed(b, "11.0.0.1"));
	assert_true(moat_bans_allowed_name(b, MOAT_BAN_USERNAME, "admin", 5));
	assert_false(moat_bans_allowed_name(b, MOAT_BAN_CLIENTID, "admin", 5));
	assert_true(moat_bans_allowed_name(b, MOAT_BAN_CLIENTID, "ops-console", 11));
	/* Bans the allow-list covers wholly are refused. */
	for (i = 0; i < sizeof(covered) / sizeof(covered[0]); i++)
		if (moat_bans_add(b, covered[i].kind, covered[i].key, 0, NULL) != MOAT_EDENIED)
			fail_msg("ban on allowed \"%s\" not refused", covered[i].key);
	assert_int_equal(moat_bans_count(b, 1), 0);
	/* A client id "admin" is not the user "admin". */
	add_ok(b, MOAT_BAN_CLIENTID, "admin", 0);
	/* A wider ban that only overlaps is kept and spares the allowed part. */
	add_ok(b, MOAT_BAN_ADDR, "0.0.0.0/0", 0);
	add_ok(b, MOAT_BAN_ADDR, "2001:db8::/32", 0);
	assert_true(banned(b, "11.0.0.1", 1));
	assert_false(banned(b, "10.0.0.1", 1));
	assert_false(banned(b, "::ffff:10.0.0.1", 1));
	assert_true(banned(b, "2001:db8:b::1", 1));
	assert_false(banned(b, "2001:db8:a::1", 1));
	assert_false(user_banned(b, "admin", 1));
	/* Allowing later lifts the bans it covers wholly, and only those. */
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.1", 0);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.128/25", 0);
	add_ok(b, MOAT_BAN_ADDR, "192.0.0.0/16", 0);
	add_ok(b, MOAT_BAN_USERNAME, "root", 0);
	assert_int_equal(moat_bans_count(b, 1), 7);
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_ADDR, "192.0.2.0/24"), 0);
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_USERNAME, "root"), 0);
	assert_int_equal(moat_bans_count(b, 1), 4);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "192.0.2.1"), MOAT_ENOTFOUND);
	assert_int_equal(moat_bans_remove(b, MOAT_BAN_ADDR, "192.0.0.0/16"), 0);
	assert_false(banned(b, "192.0.2.1", 1));
	assert_false(user_banned(b, "root", 1));
	assert_true(id_banned(b, "admin", 1));
	moat_bans_free(b);
}

/* ---- listing, reasons, bound ---- */

static void test_each_and_count(void **state)
{
	struct moat_bans *b = moat_bans_new();
	struct listing l = {0};

	(void)state;
	moat_bans_each(b, 1, collect, &l);
	assert_int_equal(l.count, 0);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.1", 100);
	add_ok(b, MOAT_BAN_ADDR, "2001:db8::/64", 0);
	add_ok(b, MOAT_BAN_CLIENTID, "c1", 300);
	add_ok(b, MOAT_BAN_USERNAME, "u1", 200);
	moat_bans_each(b, 50, collect, &l);
	assert_int_equal(l.count, 4);
	assert_non_null(strstr(l.text, "addr 192.0.2.1 100 test\n"));
	assert_non_null(strstr(l.text, "addr 2001:db8::/64 0 test\n"));
	assert_non_null(strstr(l.text, "clientid c1 300 test\n"));
	assert_non_null(strstr(l.text, "username u1 200 test\n"));
	memset(&l, 0, sizeof(l));
	moat_bans_each(b, 200, collect, &l);
	assert_int_equal(l.count, 2);
	assert_null(strstr(l.text, "u1"));
	assert_int_equal(moat_bans_count(b, 200), 2);
	assert_int_equal(moat_bans_count(b, 300), 1);
	assert_int_equal(moat_bans_count(NULL, 300), 0);
	moat_bans_free(b);
}

static void test_reasons(void **state)
{
	struct moat_bans *b = moat_bans_new();
	struct moat_ban_info info;
	char longr[300];

	(void)state;
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "a", 0, NULL), 0);
	assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "a", 1, 1, &info));
	assert_string_equal(info.reason, "");
	assert_int_equal(info.kind, MOAT_BAN_CLIENTID);
	assert_string_equal(info.key, "a");
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "b", 0, "  brute\nforce\t\r  "), 0);
	assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "b", 1, 1, &info));
	assert_string_equal(info.reason, "brute force");
	/* Cut to 127 bytes, never inside a character. */
	memset(longr, 'r', sizeof(longr));
	memcpy(longr + 126, "\xc3\xa9", 2);
	longr[sizeof(longr) - 1] = '\0';
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "c", 0, longr), 0);
	assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "c", 1, 1, &info));
	assert_int_equal(strlen(info.reason), 126);
	memset(longr, 'r', sizeof(longr) - 1);
	memcpy(longr + 125, "\xc3\xa9", 2);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "d", 0, longr), 0);
	assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "d", 1, 1, &info));
	assert_int_equal(strlen(info.reason), 127);
	assert_memory_equal(info.reason + 125, "\xc3\xa9", 2);
	memset(longr, 'r', sizeof(longr) - 1);
	memcpy(longr + 125, "\xe2\x82\xac", 3); /* cut after two bytes of three */
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "e", 0, longr), 0);
	assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "e", 1, 1, &info));
	assert_int_equal(strlen(info.reason), 125);
	moat_bans_free(b);
}

static void test_bound(void **state)
{
	struct moat_bans *b = moat_bans_new();

	(void)state;
	moat_bans_set_max(b, 3);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.1", 100);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.2", 300);
	add_ok(b, MOAT_BAN_CLIENTID, "c", 200);
	/* Full: the ban ending first gives way to one ending later. */
	add_ok(b, MOAT_BAN_USERNAME, "u", 400);
	assert_int_equal(moat_bans_count(b, 1), 3);
	assert_false(banned(b, "192.0.2.1", 1));
	assert_true(id_banned(b, "c", 1));
	/* ... but not to one ending sooner than all. */
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.9", 150, NULL), MOAT_ENOMEM);
	/* A replacement is no new ban. */
	add_ok(b, MOAT_BAN_CLIENTID, "c", 250);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.3", 0);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.4", 0);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.5", 0);
	/* Permanent bans are never pushed out by timed ones, nor by permanent ones. */
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.6", INT64_MAX, NULL),
			 MOAT_ENOMEM);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.6", 0, NULL), MOAT_ENOMEM);
	assert_true(banned(b, "192.0.2.3", 1) && banned(b, "192.0.2.4", 1) &&
		    banned(b, "192.0.2.5", 1));
	/* Time frees room. */
	moat_bans_set_max(b, 4);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.7", 1000);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.8", 900, NULL), MOAT_ENOMEM);
	assert_int_equal(moat_bans_count(b, 1000), 3);
	add_ok(b, MOAT_BAN_ADDR, "192.0.2.8", 2000);
	/* The allow-list is bounded too. */
	moat_bans_set_max(b, 1);
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_USERNAME, "a"), 0);
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_USERNAME, "b"), MOAT_ENOMEM);
	/* A lower max lifts nothing: a new ban still needs one ending sooner to evict. */
	moat_bans_set_max(b, 0);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.9", 1500, NULL), MOAT_ENOMEM);
	assert_int_equal(moat_bans_count(b, 1000), 4);
	moat_bans_free(b);
}

/* ---- the bans file ---- */

static void test_save_load_round_trip(void **state)
{
	struct moat_bans *b = moat_bans_new(), *c;
	char path[128];
	struct listing l = {0};
	struct moat_ban_info info;
	struct sockaddr_storage ss;
	struct stat st;
	char text[2048];
	FILE *f;
	size_t n;

	(void)state;
	snprintf(path, sizeof(path), "%s", scratch("bans"));
	unlink(path);
	/* now_ms 10,000 is wall 1,700,000,000 s. */
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.1", 70000, "flood"), 0);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "2001:db8:1::/48", 0, "scan"), 0);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "c#1", 10001, NULL), 0);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_USERNAME, "bob", 5000, "over"), 0);
	assert_int_equal(moat_bans_save(b, path, 10000, 1700000000, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	assert_true(text[0] == '#');
	assert_non_null(strstr(text, "\naddr 192.0.2.1 1700000060 flood\n"));
	assert_non_null(strstr(text, "\naddr 2001:db8:1::/48 0 scan\n"));
	/* 1 ms left rounds up to a second: a ban never gets shorter. */
	assert_non_null(strstr(text, "\nclientid c#1 1700000001\n"));
	assert_null(strstr(text, "bob"));
	/* Reloaded after a restart: 10 s of wall time later, monotonic at 500. */
	c = moat_bans_new();
	assert_int_equal(moat_bans_load(c, path, 500, 1700000010, err, sizeof(err)), 0);
	assert_int_equal(moat_bans_count(c, 500), 2); /* c#1 ended meanwhile */
	ss = addr("192.0.2.1");
	assert_true(moat_bans_check_addr(c, (const struct sockaddr *)&ss, 500, &info));
	assert_int_equal(info.until_ms, 500 + 50000);
	assert_string_equal(info.reason, "flood");
	assert_true(banned(c, "2001:db8:1:2::3", 500));
	moat_bans_each(c, 500, collect, &l);
	assert_int_equal(l.count, 2);
	/* Saving again over the file, then loading it twice, changes nothing. */
	assert_int_equal(moat_bans_save(c, path, 500, 1700000010, err, sizeof(err)), 0);
	assert_int_equal(moat_bans_load(c, path, 500, 1700000010, err, sizeof(err)), 0);
	assert_int_equal(moat_bans_count(c, 500), 2);
	/* A missing file is no bans; an unwritable path says why. */
	assert_int_equal(moat_bans_load(c, scratch("none"), 500, 1, err, sizeof(err)), 0);
	assert_int_equal(moat_bans_save(c, "/nonexistent-dir/bans", 500, 1, err, sizeof(err)),
			 MOAT_EIO);
	assert_non_null(strstr(err, "/nonexistent-dir/bans: "));
	moat_bans_free(b);
	moat_bans_free(c);
	unlink(path);
}

static void test_load_layout(void **state)
{
	static const char text[] = "# bans\n"
				   "\n"
				   "   \t\n"
				   "  # indented comment\n"
				   "addr 192.0.2.1 0\n"
				   "addr\t192.0.2.0/24\t\t2000000000\t  spaces  and\ttabs  \r\n"
				   "clientid c1 0 reason # not a comment\n"
				   "username u1 1000 long over\n"
				   "username u2 0\r\n"
				   "clientid c1 1600000000 shorter: the later end is kept\n"
				   "addr 10.0.0.1 0 allow-listed: skipped\n"
				   "addr ::ffff:198.51.100.9 0 mapped";
	struct moat_bans *b = moat_bans_new();
	struct moat_ban_info info;
	struct sockaddr_storage ss;

	(void)state;
	assert_int_equal(moat_bans_allow(b, MOAT_BAN_ADDR, "10.0.0.0/8"), 0);
	assert_int_equal(moat_bans_parse(b, text, sizeof(text) - 1, "t.bans", 1000, 1500000000,
					 err, sizeof(err)),
			 0);
	assert_int_equal(moat_bans_count(b, 1000), 5);
	ss = addr("192.0.2.5");
	assert_true(moat_bans_check_addr(b, (const struct sockaddr *)&ss, 1000, &info));
	assert_string_equal(info.reason, "spaces  and tabs");
	assert_int_equal(info.until_ms, 1000 + 500000000000ll);
	assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "c1", 2, 1000, &info));
	assert_string_equal(info.reason, "reason # not a comment");
	assert_int_equal(info.until_ms, 0);
	assert_false(user_banned(b, "u1", 1000));
	assert_true(user_banned(b, "u2", 1000));
	assert_true(banned(b, "198.51.100.9", 1000));
	assert_false(banned(b, "10.0.0.1", 1000));
	/* Empty text is no bans. */
	assert_int_equal(moat_bans_parse(b, "", 0, "t.bans", 1000, 1, err, sizeof(err)), 0);
	assert_int_equal(moat_bans_parse(b, NULL, 0, "t.bans", 1000, 1, err, sizeof(err)), 0);
	moat_bans_free(b);
}

static void test_malformed(void **state)
{
	static const struct {
		const char *text;
		const char *msg;
	} cases[] = {
		{"addr 192.0.2.1\n", "t.bans:1: expected KIND KEY UNTIL [REASON]"},
		{"addr\n", "t.bans:1: expected KIND KEY UNTIL [REASON]"},
		{"# c\nban 192.0.2.1 0\n", "t.bans:2: unknown kind (addr, clientid or username)"},
		{"ADDR 192.0.2.1 0\n", "t.bans:1: unknown kind (addr, clientid or username)"},
		{"addr 192.0.2.256 0\n", "t.bans:1: bad address or CIDR"},
		{"addr 192.0.2.0/33 0\n", "t.bans:1: bad address or CIDR"},
		{"addr 2001:db8::/129 0\n", "t.bans:1: bad address or CIDR"},
		{"addr host.example 0\n", "t.bans:1: bad address or CIDR"},
		{"clientid a\x01 0\n", "t.bans:1: bad name (1 to 255 bytes, no space or control)"},
		{"addr 192.0.2.1 -1\n", "t.bans:1: bad UNTIL (seconds since the epoch, 0 = never)"},
		{"addr 192.0.2.1 +5\n", "t.bans:1: bad UNTIL (seconds since the epoch, 0 = never)"},
		{"addr 192.0.2.1 00\n", "t.bans:1: bad UNTIL (seconds since the epoch, 0 = never)"},
		{"addr 192.0.2.1 1e9\n", "t.bans:1: bad UNTIL (seconds since the epoch, 0 = never)"},
		{"addr 192.0.2.1 99999999999999999999\n",
		 "t.bans:1: bad UNTIL (seconds since the epoch, 0 = never)"},
		{"addr 192.0.2.1 9223372036854776\n",
		 "t.bans:1: bad UNTIL (seconds since the epoch, 0 = never)"},
		{"addr 192.0.2.1 0 bell\x07\n", "t.bans:1: control character in the reason"},
		{"addr 192.0.2.1 0 a\rb\n", "t.bans:1: control character in the reason"},
		{"addr 192.0.2.1 0\r\r\n", "t.bans:1: bad UNTIL (seconds since the epoch, 0 = never)"},
	};
	struct moat_bans *b = moat_bans_new();
	char text[2048];
	size_t i;
	int rc;

	(void)state;
	add_ok(b, MOAT_BAN_CLIENTID, "existing", 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* Good lines first: nothing of the file may be added. */
		snprintf(text, sizeof(text), "addr 203.0.113.1 0 good\nclientid existing 0\n%s",
			 cases[i].text);
		err[0] = '\0';
		rc = moat_bans_parse(b, text, strlen(text), "t.bans", 1, 1, err, sizeof(err));
		assert_int_equal(rc, MOAT_ECONFIG);
		{
			char want[256];
			const char *colon = strchr(cases[i].msg, ':');
			long line = strtol(colon + 1, NULL, 10);

			snprintf(want, sizeof(want), "t.bans:%ld:%s", line + 2,
				 strchr(colon + 1, ':') + 1);
			if (strcmp(err, want) != 0)
				fail_msg("case %zu: got \"%s\", wanted \"%s\"", i, err, want);
		}
		assert_int_equal(moat_bans_count(b, 1), 1);
		assert_false(banned(b, "203.0.113.1", 1));
	}
	/* A NUL byte, a long line, a long reason, a line past the bound. */
	memcpy(text, "addr 192.0.2.1 0 a\0b\n", 21);
	assert_int_equal(moat_bans_parse(b, text, 21, "t.bans", 1, 1, err, sizeof(err)),
			 MOAT_ECONFIG);
	assert_string_equal(err, "t.bans:1: NUL byte");
	memset(text, ' ', 1100);
	memcpy(text, "addr 192.0.2.1 0 r", 18);
	assert_int_equal(moat_bans_parse(b, text, 1025, "t.bans", 1, 1, err, sizeof(err)),
			 MOAT_ECONFIG);
	assert_string_equal(err, "t.bans:1: line longer than 1024 bytes");
	assert_int_equal(moat_bans_parse(b, text, 1024, "t.bans", 1, 1, err, sizeof(err)), 0);
	memset(text + 18, 'r', 200);
	assert_int_equal(moat_bans_parse(b, text, 18 + 110, "t.bans", 1, 1, err, sizeof(err)), 0);
	assert_int_equal(moat_bans_parse(b, text, 17 + 128, "t.bans", 1, 1, err, sizeof(err)),
			 MOAT_ECONFIG);
	assert_string_equal(err, "t.bans:1: reason longer than 127 bytes");
	moat_bans_set_max(b, 2);
	snprintf(text, sizeof(text), "clientid a 0\nclientid b 0\nclientid c 0\n");
	assert_int_equal(moat_bans_parse(b, text, strlen(text), "t.bans", 1, 1, err, sizeof(err)),
			 MOAT_ECONFIG);
	assert_string_equal(err, "t.bans:3: more than 2 bans");
	assert_int_equal(moat_bans_count(b, 1), 2);
	moat_bans_free(b);
}

static void test_load_refused_file(void **state)
{
	struct moat_bans *b = moat_bans_new();
	char want[256], path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s", scratch("bad.bans"));
	write_file(path, "addr 192.0.2.1 0\n\nclientid a 0 b c\nusername x 0 bad\x01\n");
	assert_int_equal(moat_bans_load(b, path, 1, 1, err, sizeof(err)), MOAT_ECONFIG);
	snprintf(want, sizeof(want), "%s:4: control character in the reason", path);
	assert_string_equal(err, want);
	assert_int_equal(moat_bans_count(b, 1), 0);
	write_file(path, "addr 192.0.2.1 0\naddr 192.0.2.2 0 ");
	{
		FILE *f = fopen(path, "a");

		for (int i = 0; i < 2000; i++)
			fputc('x', f);
		fputs("\naddr 192.0.2.3 0\n", f);
		fclose(f);
	}
	assert_int_equal(moat_bans_load(b, path, 1, 1, err, sizeof(err)), MOAT_ECONFIG);
	snprintf(want, sizeof(want), "%s:2: line longer than 1024 bytes", path);
	assert_string_equal(err, want);
	assert_int_equal(moat_bans_count(b, 1), 0);
	/* A directory cannot be read as a file. */
	assert_int_equal(moat_bans_load(b, dir, 1, 1, err, sizeof(err)), MOAT_EIO);
	moat_bans_free(b);
	unlink(path);
}

/* A file that fills the table is undone whole, replacements included. */
static void test_load_full_undone(void **state)
{
	static const char text[] = "clientid keep 0 replaced\n"
				   "addr 192.0.2.1 0\n"
				   "addr 192.0.2.0/24 0\n";
	struct moat_bans *b = moat_bans_new();
	struct moat_ban_info info;

	(void)state;
	moat_bans_set_max(b, 3);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "keep", 50, "original"), 0);
	assert_int_equal(moat_bans_add(b, MOAT_BAN_USERNAME, "other", 0, NULL), 0);
	assert_int_equal(moat_bans_parse(b, text, sizeof(text) - 1, "t.bans", 1, 1, err,
					 sizeof(err)),
			 MOAT_ENOMEM);
	assert_string_equal(err, "t.bans: the bans table is full");
	assert_int_equal(moat_bans_count(b, 1), 2);
	assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "keep", 4, 1, &info));
	assert_int_equal(info.until_ms, 50);
	assert_string_equal(info.reason, "original");
	assert_false(banned(b, "192.0.2.1", 1) || banned(b, "192.0.2.2", 1));
	moat_bans_set_max(b, 4);
	assert_int_equal(moat_bans_parse(b, text, sizeof(text) - 1, "t.bans", 1, 1, err,
					 sizeof(err)),
			 0);
	assert_int_equal(moat_bans_count(b, 1), 4);
	assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "keep", 4, 100, &info));
	assert_string_equal(info.reason, "replaced");
	moat_bans_free(b);
}

/* ---- allocation failures ---- */

static void test_alloc_failures(void **state)
{
	static const char text[] = "clientid keep 0 replaced\n"
				   "clientid keep 0 twice\n"
				   "addr 192.0.2.1 0\n"
				   "addr 192.0.2.0/24 0\n"
				   "addr 2001:db8::/48 0\n"
				   "addr 2001:db8::1 0\n"
				   "username u 0\n"
				   "clientid c2 0\n";
	struct moat_bans *b;
	struct moat_ban_info info;
	long budget;
	int rc = -1;

	(void)state;
	if (!ALLOC_FAULTS)
		skip();
	for (budget = 0; budget < 200; budget++) {
		b = moat_bans_new();
		assert_non_null(b);
		assert_int_equal(moat_bans_add(b, MOAT_BAN_CLIENTID, "keep", 50, "original"), 0);
		assert_int_equal(moat_bans_add(b, MOAT_BAN_ADDR, "198.51.100.1", 0, NULL), 0);
		alloc_budget = budget;
		rc = moat_bans_parse(b, text, sizeof(text) - 1, "t.bans", 1, 1, err, sizeof(err));
		alloc_budget = -1;
		if (rc == 0) {
			assert_int_equal(moat_bans_count(b, 1), 8);
			moat_bans_free(b);
			break;
		}
		assert_int_equal(rc, MOAT_ENOMEM);
		assert_non_null(strstr(err, "out of memory"));
		assert_int_equal(moat_bans_count(b, 1), 2);
		assert_true(moat_bans_check_name(b, MOAT_BAN_CLIENTID, "keep", 4, 1, &info));
		assert_int_equal(info.until_ms, 50);
		assert_false(banned(b, "192.0.2.1", 1) || banned(b, "2001:db8::5", 1));
		assert_false(user_banned(b, "u", 1) || id_banned(b, "c2", 1));
		assert_true(banned(b, "198.51.100.1", 1));
		moat_bans_free(b);
	}
	assert_int_equal(rc, 0);
	for (budget = 0; budget < 50; budget++) {
		b = moat_bans_new();
		if (!b)
			continue;
		alloc_budget = budget;
		rc = moat_bans_add(b, MOAT_BAN_ADDR, "192.0.2.0/24", 0, NULL);
		if (rc == 0)
			rc = moat_bans_allow(b, MOAT_BAN_ADDR, "192.0.2.0/25");
		alloc_budget = -1;
		assert_true(rc == 0 || rc == MOAT_ENOMEM);
		if (rc == 0)
			assert_false(banned(b, "192.0.2.1", 1));
		moat_bans_free(b);
	}
}

/* ---- concurrency ---- */

struct race {
	struct moat_bans *b;
	atomic_bool done;
	atomic_long checks;
};

static void *race_reader(void *arg)
{
	struct race *r = arg;
	char a[32], id[16];
	unsigned i = 0;

	while (!atomic_load(&r->done) || i < 1000) {
		snprintf(a, sizeof(a), "192.0.%u.%u", (i >> 8) & 255, i & 255);
		snprintf(id, sizeof(id), "c%u", i % 512);
		(void)banned(r->b, a, i);
		(void)id_banned(r->b, id, i);
		/* What no writer touches never changes. */
		if (!banned(r->b, "203.0.113.9", i) || banned(r->b, "198.51.100.1", i) ||
		    !user_banned(r->b, "fixed", i))
			fail_msg("a fixed ban changed under a reader");
		i++;
	}
	atomic_fetch_add(&r->checks, (long)i);
	return NULL;
}

static void test_concurrent(void **state)
{
	struct race r = {.b = moat_bans_new()};
	pthread_t t[4];
	char a[32], id[16];
	int i;

	(void)state;
	atomic_init(&r.done, false);
	atomic_init(&r.checks, 0);
	add_ok(r.b, MOAT_BAN_ADDR, "203.0.113.9", 0);
	add_ok(r.b, MOAT_BAN_USERNAME, "fixed", 0);
	assert_int_equal(moat_bans_allow(r.b, MOAT_BAN_ADDR, "198.51.100.0/24"), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race_reader, &r), 0);
	for (i = 0; i < 20000; i++) {
		snprintf(a, sizeof(a), "192.0.%d.%d/%d", (i >> 8) & 255, i & 255, 24 + i % 9);
		snprintf(id, sizeof(id), "c%d", i % 512);
		(void)moat_bans_add(r.b, MOAT_BAN_ADDR, a, i % 3 ? i + 500 : 0, "race");
		(void)moat_bans_add(r.b, MOAT_BAN_CLIENTID, id, i + 100, NULL);
		if (i % 2)
			(void)moat_bans_remove(r.b, MOAT_BAN_ADDR, a);
		if (i % 7 == 0)
			(void)moat_bans_remove(r.b, MOAT_BAN_CLIENTID, id);
		if (i % 1000 == 0)
			(void)moat_bans_count(r.b, i);
	}
	atomic_store(&r.done, true);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_true(atomic_load(&r.checks) >= 4000);
	assert_true(banned(r.b, "203.0.113.9", INT64_MAX - 1));
	moat_bans_free(r.b);
}

/* ---- scale ---- */

static void test_hundred_thousand(void **state)
{
	struct moat_bans *b = moat_bans_new();
	char key[64];
	int i;

	(void)state;
	for (i = 0; i < 100000; i++) {
		switch (i % 4) {
		case 0:
			snprintf(key, sizeof(key), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255,
				 i & 255);
			add_ok(b, MOAT_BAN_ADDR, key, 0);
			break;
		case 1:
			snprintf(key, sizeof(key), "2001:db8:%x:%x::/64", (i >> 16) & 0xffff,
				 i & 0xffff);
			add_ok(b, MOAT_BAN_ADDR, key, 0);
			break;
		case 2:
			snprintf(key, sizeof(key), "172.%d.%d.0/24", 16 + ((i >> 16) & 15),
				 (i >> 8) & 255);
			(void)moat_bans_add(b, MOAT_BAN_ADDR, key, i + 1, NULL);
			break;
		default:
			snprintf(key, sizeof(key), "client-%d", i);
			add_ok(b, MOAT_BAN_CLIENTID, key, 0);
		}
	}
	for (i = 0; i < 100000; i += 4) {
		snprintf(key, sizeof(key), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		assert_true(banned(b, key, 1));
		snprintf(key, sizeof(key), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255,
			 (i + 1) & 255);
		assert_false(banned(b, key, 1));
		snprintf(key, sizeof(key), "2001:db8:%x:%x:1:2:3:4", ((i + 1) >> 16) & 0xffff,
			 (i + 1) & 0xffff);
		assert_true(banned(b, key, 1));
		snprintf(key, sizeof(key), "client-%d", i + 3);
		assert_true(id_banned(b, key, 1));
		snprintf(key, sizeof(key), "client-%d", i);
		assert_false(id_banned(b, key, 1));
	}
	assert_true(banned(b, "172.17.1.9", 1));
	assert_false(banned(b, "172.15.1.9", 1));
	assert_false(banned(b, "2001:db9::1", 1));
	/* The /24s: 256 with i < 65536, 135 above; replacements keep the later end. */
	assert_int_equal(moat_bans_count(b, 1), 75000 + 256 + 135);
	moat_bans_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v4),
		cmocka_unit_test(test_v6),
		cmocka_unit_test(test_canonical_keys),
		cmocka_unit_test(test_ipv4_mapped),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_replace_keeps_later_end),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_allow_list),
		cmocka_unit_test(test_each_and_count),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_save_load_round_trip),
		cmocka_unit_test(test_load_layout),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_load_refused_file),
		cmocka_unit_test(test_load_full_undone),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_hundred_thousand),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	if (dir[0])
		rmdir(dir);
	return rc;
}
