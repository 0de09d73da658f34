/*
 * connect.c - CONNECT: routing the connection to its client id's home
 * worker, the decisions of MQTT 5.0 section 3.1.4 (refusal, session
 * takeover, clean start or resumption), and the CONNACK.
 *
 *   accepting worker                      home worker (hash of client id)
 *   ----------------                      -------------------------------
 *   CONNECT decoded                 -->   handle_connect: refuse, or
 *   client id assigned if empty            take over the old connection,
 *   home == us ? handle : hand over        start or resume the session,
 *                                          CONNACK, resend what is in flight
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "broker/internal.h"
#include "core/error.h"
#include "core/log.h"
#include "net/ws.h"

/*
 * Refuses the CONNECT with a 5.0 reason (mapped for 3.x), records a security
 * event (which says why; the client only gets the code), and closes.
 */
void connect_refuse(struct moat_conn *c, uint8_t reason, const char *why)
{
	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNACK, .version = c->version};

	p.connack.reason = c->version == MOAT_MQTT_V5 ? reason : moat_mqtt_reason_to_connack_v3(reason);
	if (reason == MOAT_RC_CLIENT_IDENTIFIER_NOT_VALID && c->version != MOAT_MQTT_V5)
		p.connack.reason = MOAT_CONNACK_IDENTIFIER_REJECTED;
	conn_send(c, &p);
	/* A ban, lockdown or gate refusal is its own event: no credential was checked. */
	if (!c->refusal_reported)
		auth_failure(c, c->id_assigned ? c->assigned_id : c->pending_id, why);
	conn_close(c, why);
}

/* Gives an empty client id a fresh one (MQTT 5.0 3.1.3.1, 3.1.1 [MQTT-3.1.3-6]). */
static int assign_id(struct moat_conn *c, struct moat_mqtt_connect *cn)
{
	const struct moat_config *conf = c->w->b->conf;
	static const char hex[] = "0123456789abcdef";
	uint8_t rnd[12];
	int n;

	if (!conf->allow_zero_length_clientid)
		return -1;
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -1;
	n = snprintf(c->assigned_id, sizeof(c->assigned_id) - 2 * sizeof(rnd), "%s",
		     conf->auto_id_prefix ? conf->auto_id_prefix : "auto-");
	if (n < 0)
		return -1;
	for (size_t i = 0; i < sizeof(rnd); i++) {
		c->assigned_id[n++] = hex[rnd[i] >> 4];
		c->assigned_id[n++] = hex[rnd[i] & 15];
	}
	c->assigned_id[n] = 0;
	cn->client_id.p = (const uint8_t *)c->assigned_id;
	cn->client_id.len = (size_t)n;
	c->id_assigned = true;
	return 0;
}

int connect_route(struct moat_conn *c, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_connect *cn = &p->connect;
	struct moat_worker *home;

	c->version = cn->version;
	if (cn->client_id.len == 0 && assign_id(c, cn) < 0) {
		connect_refuse(c, MOAT_RC_CLIENT_IDENTIFIER_NOT_VALID,
			       "empty client identifier not allowed");
		return -1;
	}
	home = worker_home(c->w->b, cn->client_id.p, cn->client_id.len);
	if (home == c->w)
		return handle_connect(c, p);
	/*
	 * The packet's slices point into c's input buffer and c itself: both travel
	 * with c. From the push on, c belongs to the home worker.
	 */
	if (!(c->pending = malloc(sizeof(*c->pending)))) {
		conn_close(c, "out of memory");
		return -1;
	}
	*c->pending = *p;
	c->has_pending = true;
	conn_detach(c);
	worker_push_now(home, (struct item){.kind = IT_ADOPT, .conn = c});
	return -1;
}

/*
 * Settles the user name: with use_identity_as_username (or the subject or
 * SAN variants) it comes from the verified client certificate, or from the
 * TLS-PSK identity; else it is the CONNECT's. auth_connect decides whether
 * the client proved it. Returns 0, or a refusal reason with *why.
 */
static uint8_t identify(struct moat_conn *c, const struct moat_mqtt_connect *cn, const char **why)
{
	const struct moat_listener_conf *lc = c->listener->conf;
	const struct moat_tls_info *ti = c->tr->ops->tls(c->tr);
	bool by_cert = lc->use_identity_as_username || lc->use_subject_as_username ||
		       lc->use_san_as_username;
	const char *id = NULL;

	if (ti && ti->psk_identity[0]) {
		if (lc->use_identity_as_username)
			id = ti->psk_identity;
	} else if (by_cert) {
		if (!ti || !ti->peer_verified) {
			*why = "no verified client certificate for the identity";
			return MOAT_RC_NOT_AUTHORIZED;
		}
		id = lc->use_subject_as_username ? ti->subject
		     : lc->use_san_as_username  ? ti->san
						: ti->cn;
		if (!id[0]) {
			*why = "the client certificate has no such name";
			return MOAT_RC_NOT_AUTHORIZED;
		}
	}
	free(c->username);
	c->username_from_tls = id != NULL;
	c->username = id ? strdup(id)
		      : cn->has_username ? strndup((const char *)cn->username.p, cn->username.len)
					 : NULL;
	return 0;
}

/* Checks the CONNECT against this listener's and the broker's rules. Returns a reason or 0. */
static uint8_t check(struct moat_conn *c, const struct moat_mqtt_connect *cn, const char **why)
{
	const struct moat_config *conf = c->w->b->conf;
	uint8_t rc;

	if ((rc = identify(c, cn, why)) != 0)
		return rc;
	if (c->version != MOAT_MQTT_V5 && cn->keep_alive > conf->max_keepalive) {
		*why = "keepalive above max_keepalive";
		return MOAT_RC_CLIENT_IDENTIFIER_NOT_VALID;
	}
	if (cn->will && cn->will_qos > conf->max_qos) {
		*why = "will QoS above the server's maximum";
		return MOAT_RC_QOS_NOT_SUPPORTED;
	}
	if (cn->will && cn->will_retain && !conf->retain_available) {
		*why = "will retain not available";
		return MOAT_RC_RETAIN_NOT_SUPPORTED;
	}
	return 0;
}

/* Finds, ends or makes the session for cn. Returns it (a new reference) and *present. */
static struct moat_session *open_session(struct moat_conn *c, const struct moat_mqtt_connect *cn,
					 bool *present)
{
	struct moat_worker *w = c->w;
	struct moat_session *s = moat_map_get(&w->sessions, cn->client_id.p, cn->client_id.len);

	if (s && s->conn) {
		char id[160];
		moat_log(MOAT_LOG_LVL_NOTICE, "session_takeover client_id=%s old_addr=%s new_addr=%s",
			 moat_log_quote(id, sizeof(id), s->client_id, (unsigned)s->client_id_len),
			 s->conn->addr, c->addr);
		conn_disconnect(s->conn, MOAT_RC_SESSION_TAKEN_OVER, "session taken over");
		s = moat_map_get(&w->sessions, cn->client_id.p, cn->client_id.len);
	}
	if (s && cn->clean_start) {
		session_publish_will(s);
		session_end(s);
		s = NULL;
	}
	*present = s != NULL;
	if (s) {
		if (s->will) { /* reconnected in time: no delayed will [MQTT-3.1.3-9] */
			moat_msg_unref(s->will);
			s->will = NULL;
			persist_will(s);
		}
	} else if (!(s = session_new(w, cn->client_id.p, cn->client_id.len))) {
		return NULL;
	}
	session_ref(s);
	return s;
}

static uint32_t session_expiry(const struct moat_conn *c, const struct moat_mqtt_connect *cn)
{
	int64_t pce = c->w->b->conf->persistent_client_expiration;

	if (c->version == MOAT_MQTT_V5) {
		if (!moat_mqtt_props_has(&cn->props, MOAT_PROP_SESSION_EXPIRY_INTERVAL))
			return 0;
		return cn->props.session_expiry == UINT32_MAX ? SESSION_NEVER_EXPIRES
							      : cn->props.session_expiry;
	}
	if (cn->clean_start)
		return 0;
	return pce > 0 && pce < UINT32_MAX ? (uint32_t)pce : SESSION_NEVER_EXPIRES;
}

/* Takes the will of cn into c. Returns 0 or MOAT_ENOMEM. */
static int keep_will(struct moat_conn *c, const struct moat_mqtt_connect *cn)
{
	struct moat_mqtt_publish p = {0};
	struct moat_slice topic;

	if (!cn->will)
		return 0;
	p.qos = cn->will_qos;
	p.retain = cn->will_retain;
	p.payload = cn->will_payload;
	p.props = cn->will_props;
	if (mount_topic(c, cn->will_topic, c->w->mountbuf, &topic) < 0)
		return MOAT_ETOOBIG;
	c->will = moat_msg_from_publish(&c->w->b->msg_mem, &p, topic.p, topic.len, 0,
					worker_now(c->w));
	c->will_delay = cn->will_props.will_delay;
	return c->will ? 0 : MOAT_ENOMEM;
}

/* Reads the client's 5.0 limits and sets ours. */
static void take_limits(struct moat_conn *c, const struct moat_mqtt_connect *cn)
{
	const struct moat_config *conf = c->w->b->conf;
	const struct moat_mqtt_props *pr = &cn->props;

	c->keepalive = cn->keep_alive;
	if (c->version == MOAT_MQTT_V5 && c->keepalive > conf->max_keepalive)
		c->keepalive = conf->max_keepalive;
	c->client_receive_max = moat_mqtt_props_has(pr, MOAT_PROP_RECEIVE_MAXIMUM) ? pr->receive_maximum : 65535;
	if (moat_mqtt_props_has(pr, MOAT_PROP_MAXIMUM_PACKET_SIZE))
		c->client_max_packet = pr->maximum_packet_size;
	c->client_alias_max = moat_mqtt_props_has(pr, MOAT_PROP_TOPIC_ALIAS_MAXIMUM) ? pr->topic_alias_maximum : 0;
	c->problem_info = !moat_mqtt_props_has(pr, MOAT_PROP_REQUEST_PROBLEM_INFORMATION) ||
			  pr->request_problem_info;
	c->receive_max = conf->max_inflight_messages && conf->max_inflight_messages < 65535
				 ? (uint16_t)conf->max_inflight_messages
				 : 65535;
	moat_mqtt_framer_set_max(&c->in, conf->max_packet_size);
}

static void send_connack(struct moat_conn *c, const struct moat_mqtt_connect *cn, bool present)
{
	const struct moat_config *conf = c->w->b->conf;

	struct moat_mqtt_packet p = {.type = MOAT_MQTT_CONNACK, .version = c->version};
	struct moat_mqtt_props *pr = &p.connack.props;

	p.connack.session_present = present;
	if (c->version == MOAT_MQTT_V5) {
		if (c->id_assigned) {
			pr->present |= MOAT_PROP_BIT(MOAT_PROP_ASSIGNED_CLIENT_IDENTIFIER);
			pr->assigned_client_id = cn->client_id;
		}
		if (c->receive_max != 65535) {
			pr->present |= MOAT_PROP_BIT(MOAT_PROP_RECEIVE_MAXIMUM);
			pr->receive_maximum = c->receive_max;
		}
		if (c->max_qos < 2) { /* the server's, or lower by this client's ACL options */
			pr->present |= MOAT_PROP_BIT(MOAT_PROP_MAXIMUM_QOS);
			pr->maximum_qos = c->max_qos;
		}
		if (!c->may_retain) {
			pr->present |= MOAT_PROP_BIT(MOAT_PROP_RETAIN_AVAILABLE);
			pr->retain_available = 0;
		}
		if (!c->may_wildcard) {
			pr->present |= MOAT_PROP_BIT(MOAT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE);
			pr->wildcard_sub_available = 0;
		}
		if (c->scram_mech) {
			pr->present |= MOAT_PROP_BIT(MOAT_PROP_AUTHENTICATION_METHOD) |
				       MOAT_PROP_BIT(MOAT_PROP_AUTHENTICATION_DATA);
			pr->auth_method = cn->props.auth_method;
			pr->auth_data.p = c->connack_auth;
			pr->auth_data.len = c->connack_auth_len;
		}
		if (conf->max_packet_size) {
			pr->present |= MOAT_PROP_BIT(MOAT_PROP_MAXIMUM_PACKET_SIZE);
			pr->maximum_packet_size = conf->max_packet_size;
		}
		if (conf->max_topic_alias) {
			pr->present |= MOAT_PROP_BIT(MOAT_PROP_TOPIC_ALIAS_MAXIMUM);
			pr->topic_alias_maximum = conf->max_topic_alias;
		}
		if (c->keepalive != cn->keep_alive) {
			pr->present |= MOAT_PROP_BIT(MOAT_PROP_SERVER_KEEP_ALIVE);
			pr->server_keep_alive = c->keepalive;
		}
	}
	conn_send(c, &p);
}

static void log_connect(struct moat_conn *c, const struct moat_mqtt_connect *cn, bool present)
{
	char id[160], user[160] = "-";

	if (!moat_log_enabled(MOAT_LOG_LVL_NOTICE) || !c->w->b->conf->connection_messages)
		return;
	const struct moat_tls_info *ti = c->tr->ops->tls(c->tr);

	if (c->username)
		moat_log_quote(user, sizeof(user), c->username, (unsigned)strlen(c->username));
	moat_log(MOAT_LOG_LVL_NOTICE,
		 "connect client_id=%s addr=%s proto=%s user=%s clean=%d keepalive=%u "
		 "session_present=%d tls=%s%s%s",
		 moat_log_quote(id, sizeof(id), cn->client_id.p, (unsigned)cn->client_id.len),
		 c->addr, c->version == 5 ? "5.0" : c->version == 4 ? "3.1.1" : "3.1", user,
		 cn->clean_start, c->keepalive, present, ti ? ti->version : "no",
		 ti ? " cipher=" : "", ti ? ti->cipher : "");
}

/*
 * Lets the client in: the will (if the ACL allows its topic), the session
 * (taking over, starting or resuming it), the limits, the CONNACK, and what
 * the session had in flight. Returns 0, or -1 if c was refused.
 */
int connect_accept(struct moat_conn *c, const struct moat_mqtt_packet *p)
{
	const struct moat_mqtt_connect *cn = &p->connect;
	struct moat_worker *w = c->w;
	struct moat_session *s;
	bool present;

	acl_bind(c, cn->client_id.p, cn->client_id.len);
	if (cn->will) {
		struct moat_slice t;
		if (mount_topic(c, cn->will_topic, w->mountbuf, &t) < 0 ||
		    !acl_allows(c, t.p, t.len, MOAT_ACL_WRITE)) {
			acl_denied(c, t.p, t.len, "will");
			connect_refuse(c, MOAT_RC_NOT_AUTHORIZED, "will topic not allowed by the ACL");
			return -1;
		}
	}
	if (keep_will(c, cn) < 0 || !(s = open_session(c, cn, &present))) {
		connect_refuse(c, MOAT_RC_SERVER_UNAVAILABLE, "out of memory");
		return -1;
	}
	s->expiry = session_expiry(c, cn);
	s->version = c->version;
	s->conn = c;
	atomic_store(&s->online, true);
	c->session = s;
	c->state = C_ACTIVE;
	persist_session(s); /* a session that outlives its connection is kept (or dropped) now */
	take_limits(c, cn);
	send_connack(c, cn, present);
	log_connect(c, cn, present);
	auth_success(c, s->client_id);
	inventory_connected(w->b, c, cn);
	STAT_ADD(&w->stats, connects, 1);
	STAT_ADD(&w->stats, clients_connected, 1);
	atomic_fetch_add(&w->b->clients_total, 1);
	if (present)
		session_resume(s);
	free(c->stash); /* p may point into it: only now */
	c->stash = NULL;
	return 0;
}

/*
 * A CONNECT on the client id's home worker: checks it, authenticates (maybe
 * asynchronously: then the connection waits, and auth.c finishes it), and
 * accepts. Returns 0 to go on reading, -1 when c was refused.
 */
int handle_connect(struct moat_conn *c, struct moat_mqtt_packet *p)
{
	struct moat_mqtt_connect *cn = &p->connect;
	const char *why = NULL;
	uint8_t reason;
	int rc;

	if (moat_ws_forwarded_for(c->tr)) { /* a trusted proxy says who the client is */
		snprintf(c->addr, sizeof(c->addr), "%s", moat_ws_forwarded_for(c->tr));
		c->forwarded = true;
	}
	snprintf(c->pending_id, sizeof(c->pending_id), "%.*s",
		 (int)(cn->client_id.len < sizeof(c->pending_id) - 1 ? cn->client_id.len
								       : sizeof(c->pending_id) - 1),
		 (const char *)cn->client_id.p);
	reason = check(c, cn, &why);
	if (!reason) /* bans and lockdown: before any expensive check */
		reason = guard_connect(c, cn->client_id.p, cn->client_id.len, &why);
	if (reason) {
		connect_refuse(c, reason, why);
		return -1;
	}
	rc = auth_connect(c, p, &reason, &why);
	if (rc < 0) {
		connect_refuse(c, reason, why);
		return -1;
	}
	if (rc > 0)
		return 0; /* a password check or a SCRAM exchange goes on */
	return connect_accept(c, p);
}
