/*
 * admin_software.c - the software and cryptography inventory (NIST CSF
 * ID.AM-2: software platforms and applications are inventoried):
 *
 *   GET /v1/software        (moat ctl software)
 *
 * The versions of moat and of the libraries it runs with, and per listener
 * what it offers: transport, lowest TLS version and the cipher suites in
 * preference order, client certificates, PSK, OCSP, the authentication
 * methods, and how the passwords of its password file are hashed (so an
 * operator sees which entries still use a legacy hash: mosquitto_passwd's
 * $6$ SHA-512 or $7$ PBKDF2). And how the store seals data at rest.
 */
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "broker/internal.h"
#include "net/tls.h"

static const char *transport_name(const struct moat_listener *l)
{
	bool ws = l->conf->protocol == MOAT_PROTO_WEBSOCKETS;

	if (l->conf->port == 0 && l->conf->address && l->conf->address[0] == '/')
		return "unix";
	return l->tls ? (ws ? "wss" : "tls") : (ws ? "ws" : "tcp");
}

static void suites(struct moat_json *o, const char *list)
{
	const char *p = list, *colon;

	moat_json_key(o, "cipher_suites");
	moat_json_begin_array(o);
	while (*p) {
		colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		moat_json_string_n(o, p, n);
		p += n + (colon != NULL);
	}
	moat_json_end_array(o);
}

static void password_hashes(struct moat_json *o, struct moat_listener *l)
{
	struct moat_authdb *db = authdb_get(l);
	size_t counts[MOAT_PW_ALGO_COUNT];

	moat_json_key(o, "password_hashes");
	if (!db || !db->pw) {
		moat_json_null(o);
	} else {
		moat_passwd_algo_counts(db->pw, counts);
		moat_json_begin_object(o);
		for (int a = 0; a < MOAT_PW_ALGO_COUNT; a++)
			if (counts[a])
				moat_json_kuint(o, moat_passwd_algo_name(a), counts[a]);
		moat_json_end_object(o);
	}
	if (db)
		authdb_put(db);
}

static void listener(struct moat_json *o, struct moat_listener *l)
{
	const struct moat_listener_conf *lc = l->conf;
	char list[8192];
	const char *minv = NULL;

	moat_json_begin_object(o);
	moat_json_kuint(o, "port", lc->port);
	moat_json_kstring(o, "address", lc->address);
	moat_json_kstring(o, "transport", transport_name(l));
	if (l->tls && moat_tls_server_offer(l->tls, &minv, list, sizeof(list)) >= 0) {
		moat_json_kstring(o, "tls_min_version", minv);
		suites(o, list);
		moat_json_kstring(o, "client_certificates",
				  lc->require_certificate ? "required" : lc->cafile || lc->capath ?
				  "verified if sent" : "not asked");
		moat_json_kbool(o, "psk", lc->psk_file != NULL);
		moat_json_kstring(o, "ocsp", lc->ocsp_mode == MOAT_OCSP_HARD ? "hard-fail" :
					     lc->ocsp_mode == MOAT_OCSP_SOFT ? "soft-fail" : "off");
		moat_json_kbool(o, "crl", lc->crlfile != NULL);
	}
	moat_json_kbool(o, "anonymous", l->allow_anonymous);
	moat_json_kstring(o, "auth_methods", lc->auth_methods ? lc->auth_methods : "all configured");
	moat_json_kbool(o, "acl", lc->acl_file != NULL);
	password_hashes(o, l);
	moat_json_end_object(o);
}

int admin_software(void *ctx, const struct moat_admin_req *req, struct moat_json *o)
{
	struct moat_broker *b = ctx;

	(void)req;
	moat_json_begin_object(o);
	moat_json_kstring(o, "moat", MOAT_VERSION);
	moat_json_key(o, "libraries");
	moat_json_begin_object(o);
	moat_json_kstring(o, "tls", moat_tls_library());
	moat_json_kstring(o, "sqlite", sqlite3_libversion());
	moat_json_kstring(o, "libsodium", sodium_version_string());
	moat_json_end_object(o);
	moat_json_key(o, "listeners");
	moat_json_begin_array(o);
	for (int i = 0; i < b->nlisteners; i++)
		listener(o, &b->listeners[i]);
	moat_json_end_array(o);
	moat_json_key(o, "store");
	if (b->store) {
		moat_json_begin_object(o);
		moat_json_kstring(o, "values", "AES-256-GCM, random 96-bit nonces, table and row "
					       "key as associated data");
		moat_json_kstring(o, "row_keys", "HMAC-SHA256 of names");
		moat_json_kstring(o, "key_wrap", "AES-256-GCM under the operator's key (HKDF-SHA256)");
		moat_json_end_object(o);
	} else {
		moat_json_null(o);
	}
	moat_json_end_object(o);
	return 200;
}
