/*
 * ban.h - bans and the allow-list.
 *
 * A ban names an address (exact, or a CIDR prefix, IPv4 or IPv6), a client
 * id, or a user name, and ends at a time (or never). The allow-list holds
 * networks and names no ban may touch (the operator's own networks and
 * admin identities): adding a ban that an allow entry covers is refused.
 * Checks are O(1) for names and O(number of prefix lengths in use) for
 * addresses, so they run at every accept and CONNECT. Expired bans stop
 * applying at once and are dropped lazily.
 *
 * Thread-safe: checks take a shared lock; changes (the sentinel, an admin)
 * an exclusive one. Times are monotonic milliseconds in memory; the bans
 * file keeps wall-clock seconds, so bans survive a restart.
 */
#ifndef MOAT_SECURITY_BAN_H
#define MOAT_SECURITY_BAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum moat_ban_kind { MOAT_BAN_ADDR = 0, MOAT_BAN_CLIENTID, MOAT_BAN_USERNAME };

struct moat_bans;

struct moat_ban_info {
	enum moat_ban_kind kind;
	char key[256];          /* the address/CIDR, client id or user name as banned */
	int64_t until_ms;       /* monotonic; 0 = never */
	char reason[128];
};

/* The most bans (and, separately, allow entries) a table holds unless set. */
#define MOAT_BANS_MAX 1000000u

struct moat_bans *moat_bans_new(void);
void moat_bans_free(struct moat_bans *b);

/*
 * Sets the most bans b holds (and allow entries). When full, a new ban
 * evicts the one ending first if it ends later itself, else is refused
 * (MOAT_ENOMEM). A lower max lifts no ban already held.
 */
void moat_bans_set_max(struct moat_bans *b, size_t max);

/*
 * Bans key ("192.0.2.7", "192.0.2.0/24", "2001:db8::/48", a client id or a
 * user name) until until_ms (0 = never), replacing an earlier ban of the
 * same key if it ends sooner. reason is copied (may be NULL). Returns 0,
 * MOAT_EINVAL (not an address or CIDR, empty name), MOAT_EDENIED (the
 * allow-list covers it: not banned), or MOAT_ENOMEM (out of memory, or full).
 */
int moat_bans_add(struct moat_bans *b, enum moat_ban_kind kind, const char *key, int64_t until_ms,
		  const char *reason);

/* Lifts the ban of exactly key. Returns 0, MOAT_ENOTFOUND or MOAT_EINVAL (bad key). */
int moat_bans_remove(struct moat_bans *b, enum moat_ban_kind kind, const char *key);

/*
 * Adds key (address, CIDR or name) to the allow-list, lifting the bans it
 * covers. Returns 0, MOAT_EINVAL or MOAT_ENOMEM.
 */
int moat_bans_allow(struct moat_bans *b, enum moat_ban_kind kind, const char *key);

/* Empties the allow-list (a reload then adds the new entries). */
void moat_bans_allow_clear(struct moat_bans *b);

/* True if the allow-list covers the address / name. */
bool moat_bans_allowed_addr(struct moat_bans *b, const struct sockaddr *sa);
bool moat_bans_allowed_name(struct moat_bans *b, enum moat_ban_kind kind, const char *name,
			    size_t n);

/*
 * True if sa is banned at now (a ban of its exact address or of a prefix
 * holding it); *info (may be NULL) gets the ban. Allow-listed addresses are
 * never banned.
 */
bool moat_bans_check_addr(struct moat_bans *b, const struct sockaddr *sa, int64_t now,
			  struct moat_ban_info *info);

/* True if the client id / user name is banned at now. */
bool moat_bans_check_name(struct moat_bans *b, enum moat_ban_kind kind, const char *name,
			  size_t n, int64_t now, struct moat_ban_info *info);

/* Calls fn for each ban in force at now (under the shared lock: fn must not call back). */
void moat_bans_each(struct moat_bans *b, int64_t now,
		    void (*fn)(void *ctx, const struct moat_ban_info *info), void *ctx);

/* Number of bans in force at now. */
size_t moat_bans_count(struct moat_bans *b, int64_t now);

/*
 * Writes the bans in force to path atomically (temporary file + rename),
 * one per line: "KIND KEY UNTIL REASON" with UNTIL in wall-clock seconds (0 =
 * never). now_ms/wall_s give the two clocks. Returns 0 or MOAT_EIO with err.
 */
int moat_bans_save(struct moat_bans *b, const char *path, int64_t now_ms, int64_t wall_s,
		   char *err, size_t errlen);

/* The same text as moat_bans_save writes, owned by the caller (free). 0 or MOAT_ENOMEM. */
int moat_bans_format(struct moat_bans *b, int64_t now_ms, int64_t wall_s, char **out, size_t *n);

/*
 * Reads bans from path (a missing file is no bans). Entries already over
 * are skipped. A malformed line refuses the file with "PATH:LINE: why"
 * (MOAT_ECONFIG) and nothing is added.
 */
int moat_bans_load(struct moat_bans *b, const char *path, int64_t now_ms, int64_t wall_s,
		   char *err, size_t errlen);

/* The same from memory (the durable store's copy; the fuzz target). */
int moat_bans_parse(struct moat_bans *b, const char *text, size_t n, const char *name,
		    int64_t now_ms, int64_t wall_s, char *err, size_t errlen);

#endif
