/*
 * auth.c - who may connect, and what they may do: the per-listener chain of
 * authentication methods, password checks on the auth pool, the SCRAM
 * exchange over AUTH packets, ACL checks, and what a reload does to live
 * sessions.
 *
 * A client proves factors (F_*): a verified certificate, a PSK, a password,
 * a SCRAM exchange; a client that presents nothing is anonymous. The
 * listener's auth_methods is a list of alternatives, each a set of factors
 * ("certificate+password" is two-factor); the client is in when one
 * alternative is within what it proved. A user name given with a password
 * file configured must have the right password: a wrong one never falls back
 * to anonymous.
 *
 *   CONNECT --> auth_connect --accepted now--> connect_accept
 *                  |--password--> auth pool --IT_AUTH--> auth_job_finished --> accept / refuse
 *                  |--SCRAM--> AUTH 0x18 <--> AUTH 0x18 (C_AUTH) --> accept (CONNACK with v=...)
 *
 * Failures tell the client only 0x86/0x87 (3.x: 4/5), after the same work
 * whether the user exists or not; the security event says why.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"
#include "core/error.h"
#include "core/log.h"

/* ---- the listener's credentials and rules ---- */

static void authdb_free(struct moat_authdb *db)
{
	moat_passwd_free(db->pw);
	moat_acl_free(db->acl);
	free(db);
}

void authdb_put(struct moat_authdb *db)
{
	if (db && atomic_fetch_sub(&db->refs, 1) == 1)
		authdb_free(db);
}

struct moat_authdb *authdb_get(struct moat_listener *l)
{
	struct moat_authdb *db;

	pthread_mutex_lock(&l->db_lock);
	db = l->db;
	atomic_fetch_add(&db->refs, 1);
	pthread_mutex_unlock(&l->db_lock);
	return db;
}

static int authdb_load(const struct moat_listener_conf *lc, struct moat_authdb **out, char *err,
		       size_t errlen)
{
	struct moat_authdb *db = calloc(1, sizeof(*db));
	int rc = 0;

	if (!db)
		return MOAT_ENOMEM;
	atomic_init(&db->refs, 1);
	if (lc->password_file)
		rc = moat_passwd_load(lc->password_file, &db->pw, err, errlen);
	if (rc == 0 && lc->acl_file)
		rc = moat_acl_load(lc->acl_file, &db->acl, err, errlen);
	if (rc < 0) {
		authdb_free(db);
		return rc;
	}
	*out = db;
	return 0;
}

/* ---- auth_methods ---- */

static const struct {
	const char *name;
	uint8_t factors;
} method_names[] = {
	{"anonymous", F_ANON},	   {"password", F_PASSWORD},	    {"certificate", F_CERT},
	{"psk", F_PSK},		   {"scram-sha-256", F_SCRAM256}, {"scram-sha-512", F_SCRAM512},
	{"scram", F_SCRAM256 | F_SCRAM512},
};

const char *auth_method_name(uint8_t proven)
{
	if (proven & F_SCRAM256)
		return "scram-sha-256";
	if (proven & F_SCRAM512)
		return "scram-sha-512";
	if ((proven & F_CERT) && (proven & F_PASSWORD))
		return "certificate+password";
	if (proven & F_PASSWORD)
		return "password";
	if (proven & F_PSK)
		return "psk";
	if (proven & F_CERT)
		return "certificate";
	return "anonymous";
}

/* Parses one alternative ("certificate+password"). Returns its factors, or 0. */
static uint8_t parse_alt(char *s)
{
	uint8_t f = 0;
	char *save = NULL, *tok;

	for (tok = strtok_r(s, "+", &save); tok; tok = strtok_r(NULL, "+", &save)) {
		size_t i;
		uint8_t one = 0;
		for (i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++)
			if (strcmp(tok, method_names[i].name) == 0)
				one = method_names[i].factors;
		if (!one)
			return 0;
		f |= one;
	}
	return f;
}

/* The alternatives of a listener without auth_methods: whatever it is configured for. */
static void default_alts(struct moat_listener *l)
{
	const struct moat_listener_conf *lc = l->conf;

	l->nalts = 0;
	if (lc->use_identity_as_username || lc->use_subject_as_username || lc->use_san_as_username)
		l->alts[l->nalts++] = F_CERT;
	if (lc->psk_file)
		l->alts[l->nalts++] = F_PSK;
	if (lc->password_file) {
		l->alts[l->nalts++] = F_PASSWORD;
		l->alts[l->nalts++] = F_SCRAM256;
		l->alts[l->nalts++] = F_SCRAM512;
	}
	if (l->allow_anonymous)
		l->alts[l->nalts++] = F_ANON;
}

static int parse_methods(struct moat_listener *l, char *err, size_t errlen)
{
	const struct moat_listener_conf *lc = l->conf;
	char *copy, *save = NULL, *tok;

	if (!lc->auth_methods) {
		default_alts(l);
		return 0;
	}
	if (!(copy = strdup(lc->auth_methods)))
		return MOAT_ENOMEM;
	l->nalts = 0;
	for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		uint8_t f = parse_alt(tok);
		if (!f || l->nalts == MAX_AUTH_ALTS) {
			snprintf(err, errlen, "%s:%d: auth_methods: '%s' is not a method (%s)",
				 lc->file ? lc->file : "?", lc->line, tok,
				 "anonymous, password, certificate, psk, scram-sha-256, scram-sha-512, "
				 "joined with + for several factors");
			free(copy);
			return MOAT_ECONFIG;
		}
		l->alts[l->nalts++] = f;
	}
	free(copy);
	return 0;
}

int auth_listener_init(struct moat_listener *l, char *err, size_t errlen)
{
	int rc;

	pthread_mutex_init(&l->db_lock, NULL);
	pthread_mutex_init(&l->rehash_lock, NULL);
	moat_map_init(&l->rehashed, NULL);
	rc = authdb_load(l->conf, &l->db, err, errlen);
	if (rc < 0)
		return rc;
	return parse_methods(l, err, errlen);
}

void auth_listener_free(struct moat_listener *l)
{
	size_t pos = 0;
	struct rehash *r;

	if (!l->db)
		return;
	authdb_put(l->db);
	l->db = NULL;
	while ((r = moat_map_next(&l->rehashed, &pos, NULL, NULL)))
		free(r);
	moat_map_free(&l->rehashed);
	pthread_mutex_destroy(&l->rehash_lock);
	pthread_mutex_destroy(&l->db_lock);
}

int auth_listener_reload(struct moat_listener *l, char *err, size_t errlen)
{
	struct moat_authdb *db, *old;
	int rc;

	if (!l->conf->password_file && !l->conf->acl_file)
		return 0;
	rc = authdb_load(l->conf, &db, err, errlen);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&l->db_lock);
	old = l->db;
	l->db = db;
	pthread_mutex_unlock(&l->db_lock);
	authdb_put(old);
	return 1;
}

/* ---- events ---- */

static void event(struct moat_conn *c, enum moat_sec_kind kind, const char *client_id,
		  const char *method, const char *reason)
{
	struct moat_sec_event e = {.kind = kind, .addr = c->addr, .client_id = client_id,
				   .username = c->username, .method = method, .reason = reason,
				   .port = c->listener->conf->port};
	moat_sec_emit(&e);
}

/* ---- deciding ---- */

static bool accepted(const struct moat_listener *l, uint8_t proven)
{
	int i;

	for (i = 0; i < l->nalts; i++)
		if ((l->alts[i] & proven) == l->alts[i])
			return true;
	return false;
}

/* True if some alternative of l asks for one of the factors f. */
static bool uses_any(const struct moat_listener *l, uint8_t f)
{
	int i;

	for (i = 0; i < l->nalts; i++)
		if (l->alts[i] & f)
			return true;
	return false;
}

/* Factors the TLS layer proved, and the identity it gives. */
static uint8_t tls_factors(struct moat_conn *c)
{
	const struct moat_tls_info *ti = c->tr->ops->tls(c->tr);
	const struct moat_listener_conf *lc = c->listener->conf;
	const char *id = NULL;
	uint8_t f = 0;

	if (!ti)
		return 0;
	if (ti->psk_identity[0]) {
		f |= F_PSK;
		id = ti->psk_identity;
	} else if (ti->peer_verified) {
		f |= F_CERT;
		id = lc->use_subject_as_username ? ti->subject : lc->use_san_as_username ? ti->san : ti->cn;
	}
	free(c->identity);
	c->identity = id && id[0] ? strdup(id) : NULL;
	return f;
}

struct auth_job {
	struct moat_job job;
	struct moat_worker *w;
	struct moat_conn *c;
	struct moat_authdb *db;
	struct moat_listener *l;
	char *user;
	uint8_t *password;
	size_t plen;
	int result;
	uint64_t fp;
};

/*
 * A legacy entry re-hashed by auth_rehash: the file now holds new_fp's entry
 * for a password that did not change, so sessions that logged in with
 * old_fp's are not kicked by the next reload (auth_recheck), and the user is
 * not re-hashed again at every login before it.
 */
struct rehash {
	uint64_t old_fp, new_fp;
	size_t len;
	char user[];
};

static struct rehash *rehash_find(struct moat_listener *l, const char *user)
{
	return moat_map_get(&l->rehashed, user, strlen(user));
}

/* Re-hashes a's user's legacy entry to Argon2id, once. Runs on the auth pool. */
static void rehash(struct auth_job *a)
{
	struct moat_listener *l = a->l;
	struct rehash *r;
	char hash[512], err[256];
	size_t n = strlen(a->user);

	pthread_mutex_lock(&l->rehash_lock);
	r = rehash_find(l, a->user);
	if (r && r->old_fp == a->fp) { /* done since the file was loaded */
		a->fp = r->new_fp;
		goto done;
	}
	if (moat_passwd_hash(MOAT_PW_ARGON2ID, a->password, a->plen, hash, sizeof(hash)) < 0 ||
	    moat_passwd_edit(l->conf->password_file, a->user, hash, false, err, sizeof(err)) < 0) {
		moat_log(MOAT_LOG_LVL_WARNING, "password_rehash_failed");
		goto done;
	}
	if (!r && (r = malloc(sizeof(*r) + n + 1))) {
		memcpy(r->user, a->user, n + 1);
		r->len = n;
		if (moat_map_put(&l->rehashed, r->user, n, r) < 0) {
			free(r);
			r = NULL;
		}
	}
	if (r) {
		r->old_fp = a->fp;
		r->new_fp = moat_passwd_fingerprint_of(a->user, hash);
		a->fp = r->new_fp;
	}
	moat_log(MOAT_LOG_LVL_NOTICE, "password_rehashed algorithm=argon2id");
done:
	pthread_mutex_unlock(&l->rehash_lock);
}

/* True if a session that logged in with fp may stay now that user's entry is new_fp. */
static bool rehashed_same(struct moat_listener *l, const char *user, uint64_t fp, uint64_t new_fp)
{
	struct rehash *r;
	bool same;

	pthread_mutex_lock(&l->rehash_lock);
	r = rehash_find(l, user);
	same = r && r->new_fp == new_fp && (r->old_fp == fp || r->new_fp == fp);
	pthread_mutex_unlock(&l->rehash_lock);
	return same;
}

static void job_work(struct moat_job *j)
{
	struct auth_job *a = (struct auth_job *)j;
	enum moat_pw_algo algo = MOAT_PW_ARGON2ID;

	a->result = moat_passwd_check(a->db->pw, a->user, a->password, a->plen, &algo);
	a->fp = moat_passwd_fingerprint(a->db->pw, a->user);
	if (a->result == 0 && (algo == MOAT_PW_PBKDF2_SHA512 || algo == MOAT_PW_SHA512) &&
	    a->l->conf->auth_rehash)
		rehash(a);
	memset(a->password, 0, a->plen);
}

static void job_done(struct moat_job *j)
{
	struct auth_job *a = (struct auth_job *)j;

	worker_push_now(a->w, (struct item){.kind = IT_AUTH, .job = a});
}

static void job_free(struct auth_job *a)
{
	authdb_put(a->db);
	free(a->user);
	free(a->password);
	free(a);
}

/* Keeps the CONNECT (re-encoded) to finish it after an asynchronous check. */
static int stash(struct moat_conn *c, const struct moat_mqtt_packet *p)
{
	size_t n, len;

	if (moat_mqtt_encode_size(p, &n) < 0 || !(c->stash = malloc(n)))
		return MOAT_ENOMEM;
	moat_mqtt_encode(p, c->stash, n, &len);
	c->stash_len = len;
	return 0;
}

/* Decodes the stashed CONNECT back into *p (borrowing c->stash). */
static int unstash(struct moat_conn *c, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_decode_opts o = {0, true, false};
	struct moat_mqtt_fault f;
	uint8_t header;
	uint32_t rem;
	size_t hlen;

	if (moat_mqtt_fixed_header(c->stash, c->stash_len, &header, &rem, &hlen, &f) != 1)
		return MOAT_EINVAL;
	return moat_mqtt_decode(&o, header, c->stash + hlen, rem, p, &f);
}

static int start_password_check(struct moat_conn *c, struct moat_authdb *db,
				const struct moat_mqtt_connect *cn)
{
	struct auth_job *a = calloc(1, sizeof(*a));

	if (!a || !(a->user = strdup(c->username)) ||
	    !(a->password = malloc(cn->password.len ? cn->password.len : 1))) {
		if (a) {
			free(a->user);
			free(a);
		}
		authdb_put(db);
		return MOAT_ENOMEM;
	}
	memcpy(a->password, cn->password.p, cn->password.len);
	a->plen = cn->password.len;
	a->job.work = job_work;
	a->job.done = job_done;
	a->w = c->w;
	a->c = c;
	a->db = db;
	a->l = c->listener;
	c->auth_wait = true;
	c->attempted |= F_PASSWORD;
	moat_pool_submit(c->w->b->auth_pool, &a->job);
	return 0;
}

static int scram_begin(struct moat_conn *c, struct moat_authdb *db,
		       const struct moat_mqtt_connect *cn, int mech);

/*
 * Decides a CONNECT. Returns 0 if the client is in now (c->proven set), 1 if
 * a check goes on (password on the pool, or a SCRAM exchange: the CONNECT is
 * stashed), or -1 with a refusal reason.
 */
int auth_connect(struct moat_conn *c, const struct moat_mqtt_packet *p, uint8_t *reason,
		 const char **why)
{
	const struct moat_mqtt_connect *cn = &p->connect;
	struct moat_listener *l = c->listener;
	struct moat_authdb *db = authdb_get(l);
	int mech = 0;
	uint8_t f = tls_factors(c);

	*reason = MOAT_RC_NOT_AUTHORIZED;
	if (moat_mqtt_props_has(&cn->props, MOAT_PROP_AUTHENTICATION_METHOD)) {
		mech = moat_scram_mech(cn->props.auth_method.p, cn->props.auth_method.len);
		if (!mech || !db->pw) {
			authdb_put(db);
			*reason = MOAT_RC_BAD_AUTHENTICATION_METHOD;
			*why = "unsupported authentication method";
			return -1;
		}
		*reason = MOAT_RC_BAD_USER_NAME_OR_PASSWORD;
		*why = "malformed SCRAM client-first-message";
		c->proven = f; /* a certificate counts with SCRAM for certificate+scram */
		return scram_begin(c, db, cn, mech) < 0 || stash(c, p) < 0 ? -1 : 1;
	}
	/*
	 * A user name from the TLS identity is proven by the TLS layer; a password
	 * is then checked only when an alternative asks for both, and it must be
	 * that identity's password, which ties the two factors to one user.
	 */
	if (db->pw && c->username &&
	    (c->username_from_tls ? cn->has_password && uses_any(l, F_PASSWORD) : cn->has_username)) {
		if (!cn->has_password) {
			authdb_put(db);
			*reason = MOAT_RC_BAD_USER_NAME_OR_PASSWORD;
			*why = "user name without a password";
			return -1;
		}
		if ((*reason = guard_auth_begin(c, why))) { /* before the hash is paid for */
			authdb_put(db);
			return -1;
		}
		*reason = MOAT_RC_NOT_AUTHORIZED;
		if (start_password_check(c, db, cn) < 0 || stash(c, p) < 0) {
			guard_auth_end(c, false);
			return -1;
		}
		c->proven = f;
		return 1;
	}
	authdb_put(db);
	c->proven = f | F_ANON;
	if (!accepted(l, c->proven)) {
		*why = uses_any(l, f) ? "the listener's methods need more than this client proved"
				      : "anonymous access not allowed";
		return -1;
	}
	return 0;
}

/* A password check has ended: finish or refuse the CONNECT that waited for it. */
void auth_job_finished(struct moat_worker *w, void *job)
{
	struct auth_job *a = job;
	struct moat_conn *c = a->c;
	struct moat_mqtt_packet p;

	(void)w;
	c->auth_wait = false;
	guard_auth_end(c, a->result != 0);
	if (c->state == C_CLOSING) { /* it left while we checked: free it now */
		job_free(a);
		if (!c->store_wait) /* else the last stored acknowledgement frees it */
			conn_free_zombie(c);
		return;
	}
	if (a->result == 0) {
		c->proven |= F_PASSWORD;
		c->pw_fp = a->fp;
	}
	job_free(a);
	if (!(c->proven & F_PASSWORD) || !accepted(c->listener, c->proven)) {
		connect_refuse(c, MOAT_RC_BAD_USER_NAME_OR_PASSWORD,
			       c->proven & F_PASSWORD ? "the listener's methods need more factors"
						      : "wrong user name or password");
		return;
	}
	if (unstash(c, &p) < 0) {
		connect_refuse(c, MOAT_RC_UNSPECIFIED_ERROR, "out of memory");
		return;
	}
	if (connect_accept(c, &p) == 0)
		conn_process(c); /* packets that came behind the CONNECT */
}

/* ---- SCRAM over AUTH ---- */

static int send_auth(struct moat_conn *c, uint8_t reason, const uint8_t *data, size_t n)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_AUTH, .version = MOAT_MQTT_V5};
	const char *name = c->scram_mech == MOAT_SCRAM_SHA512 ? "SCRAM-SHA-512" : "SCRAM-SHA-256";

	p.disconnect.reason = reason;
	p.disconnect.props.present = MOAT_PROP_BIT(MOAT_PROP_AUTHENTICATION_METHOD) |
				     MOAT_PROP_BIT(MOAT_PROP_AUTHENTICATION_DATA);
	p.disconnect.props.auth_method.p = (const uint8_t *)name;
	p.disconnect.props.auth_method.len = strlen(name);
	p.disconnect.props.auth_data.p = data;
	p.disconnect.props.auth_data.len = n;
	return conn_send(c, &p);
}

static int scram_begin(struct moat_conn *c, struct moat_authdb *db,
		       const struct moat_mqtt_connect *cn, int mech)
{
	struct moat_scram_cred cred;
	uint8_t out[1024];
	char user[256];
	size_t len;
	int found;

	if (moat_scram_start(mech, cn->props.auth_data.p, cn->props.auth_data.len, &c->scram, user,
			     sizeof(user)) < 0) {
		authdb_put(db);
		return -1;
	}
	found = moat_passwd_scram(db->pw, user, mech, &cred);
	c->pw_fp = moat_passwd_fingerprint(db->pw, user);
	authdb_put(db);
	free(c->username);
	c->username = strdup(user);
	c->scram_mech = (uint16_t)mech;
	c->attempted |= mech == MOAT_SCRAM_SHA512 ? F_SCRAM512 : F_SCRAM256;
	if (moat_scram_server_first(c->scram, found == 0 ? &cred : NULL, out, sizeof(out), &len) < 0)
		return -1;
	memset(&cred, 0, sizeof(cred));
	c->state = C_AUTH;
	return send_auth(c, MOAT_RC_CONTINUE_AUTHENTICATION, out, len);
}

/*
 * An AUTH packet during a SCRAM exchange (state C_AUTH): the
 * client-final-message. Accepts (CONNACK with the server-final-message) or
 * refuses. Returns 0 to go on reading, -1 when c was closed.
 */
int auth_packet(struct moat_conn *c, const struct moat_mqtt_packet *p)
{
	const struct moat_mqtt_props *pr = &p->disconnect.props;
	struct moat_mqtt_packet connect;
	uint8_t out[512];
	size_t len;
	int rc;
	uint8_t factor = c->scram_mech == MOAT_SCRAM_SHA512 ? F_SCRAM512 : F_SCRAM256;

	if (p->disconnect.reason != MOAT_RC_CONTINUE_AUTHENTICATION ||
	    moat_scram_mech(pr->auth_method.p, pr->auth_method.len) != c->scram_mech) {
		connect_refuse(c, MOAT_RC_PROTOCOL_ERROR, "AUTH does not continue the SCRAM exchange");
		return -1;
	}
	rc = moat_scram_finish(c->scram, pr->auth_data.p, pr->auth_data.len, out, sizeof(out), &len);
	moat_scram_free(c->scram);
	c->scram = NULL;
	if (rc < 0 || !accepted(c->listener, c->proven | factor)) {
		connect_refuse(c, MOAT_RC_BAD_USER_NAME_OR_PASSWORD,
			       rc == MOAT_EDENIED ? "wrong user name or password (SCRAM)"
			       : rc < 0		  ? "malformed SCRAM client-final-message"
						  : "the listener's methods do not accept SCRAM");
		return -1;
	}
	c->proven |= factor;
	if (!(c->connack_auth = malloc(len)))
		len = 0;
	else
		memcpy(c->connack_auth, out, len);
	c->connack_auth_len = len;
	if (unstash(c, &connect) < 0) {
		connect_refuse(c, MOAT_RC_UNSPECIFIED_ERROR, "out of memory");
		return -1;
	}
	c->state = C_NEW;
	return connect_accept(c, &connect);
}

/* ---- ACL ---- */

void acl_bind(struct moat_conn *c, const uint8_t *client_id, size_t n)
{
	struct moat_authdb *db = authdb_get(c->listener);
	char *id = strndup((const char *)client_id, n);
	/* Only a proven name gets a user's rules: a claimed one is an anonymous client's. */
	bool proven = c->username_from_tls || (c->proven & (F_PASSWORD | F_SCRAM256 | F_SCRAM512));
	struct moat_acl_who who = {proven ? c->username : NULL, id, c->identity};

	moat_acl_client_free(c->acl);
	c->acl = NULL;
	c->max_qos = c->w->b->conf->max_qos;
	c->may_retain = c->w->b->conf->retain_available;
	c->may_wildcard = true;
	if (db->acl) {
		/* No view (out of memory) with an ACL configured denies everything: acl_allows. */
		c->acl = id ? moat_acl_bind(db->acl, &who) : NULL;
		c->acl_required = true;
		if (c->acl) {
			const struct moat_acl_opts *o = moat_acl_options(c->acl);
			if (o->max_qos < c->max_qos)
				c->max_qos = o->max_qos;
			c->may_retain = c->may_retain && o->retain;
			c->may_wildcard = !o->no_wildcard_subscriptions;
		}
	}
	free(id);
	authdb_put(db);
}

bool acl_allows(struct moat_conn *c, const uint8_t *topic, size_t n, int access)
{
	if (!c->acl_required)
		return true;
	return c->acl && moat_acl_check(c->acl, topic, n, access) == MOAT_ALLOW;
}

void acl_refused(struct moat_conn *c, const uint8_t *topic, size_t n, const char *access,
		 const char *why)
{
	char *t = strndup((const char *)topic, n);
	struct moat_sec_event e = {.kind = MOAT_SEC_ACL_DENIED, .addr = c->addr,
				   .client_id = c->session ? c->session->client_id : NULL,
				   .username = c->username, .method = auth_method_name(c->proven),
				   .reason = why, .topic = t, .access = access,
				   .port = c->listener->conf->port};

	moat_sec_emit(&e);
	free(t);
}

void acl_denied(struct moat_conn *c, const uint8_t *topic, size_t n, const char *access)
{
	acl_refused(c, topic, n, access, "not allowed by the ACL");
}

/* ---- reload ---- */

/*
 * After a reload of the listener's password or ACL file: a client whose
 * password entry changed or went is disconnected; everyone's ACL view is
 * rebound, so rules removed stop deliveries at once.
 */
void auth_recheck(struct moat_conn *c)
{
	struct moat_authdb *db;
	uint64_t fp;

	if (c->state != C_ACTIVE)
		return;
	db = authdb_get(c->listener);
	fp = (c->proven & (F_PASSWORD | F_SCRAM256 | F_SCRAM512)) && c->username
		     ? moat_passwd_fingerprint(db->pw, c->username)
		     : c->pw_fp;
	authdb_put(db);
	if (fp != c->pw_fp && rehashed_same(c->listener, c->username, c->pw_fp, fp))
		c->pw_fp = fp; /* only auth_rehash wrote the entry anew */
	if (fp != c->pw_fp) {
		event(c, MOAT_SEC_CREDENTIAL_REVOKED, c->session ? c->session->client_id : NULL,
		      auth_method_name(c->proven), fp ? "password changed" : "user removed");
		c->close_kind = MOAT_SEC_CREDENTIAL_REVOKED; /* not an abnormal close too */
		conn_disconnect(c, MOAT_RC_ADMINISTRATIVE_ACTION, "credentials revoked");
		return;
	}
	if (c->session)
		acl_bind(c, (const uint8_t *)c->session->client_id, c->session->client_id_len);
}

void auth_conn_free(struct moat_conn *c)
{
	moat_acl_client_free(c->acl);
	moat_scram_free(c->scram);
	free(c->identity);
	free(c->stash);
	free(c->connack_auth);
}

void auth_success(struct moat_conn *c, const char *client_id)
{
	event(c, MOAT_SEC_AUTH_SUCCESS, client_id, auth_method_name(c->proven), NULL);
}

void auth_failure(struct moat_conn *c, const char *client_id, const char *why)
{
	event(c, MOAT_SEC_AUTH_FAILURE, client_id, auth_method_name(c->proven | c->attempted), why);
}
