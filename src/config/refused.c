/*
 * refused.c - the Mosquitto directives moat knows but refuses, and why.
 *
 * moatd reads Mosquitto 2.0's language. Every directive mosquitto.conf(5)
 * documents that moat does not support yet is listed here, so a Mosquitto
 * user's config is refused at start-up with the line and the reason, never
 * silently half-applied, and never mistaken for a typo. A few that Mosquitto
 * itself only warns about (removed or RSMB options) are here too, so that
 * such a line names what it is. Entries with prefix set match every
 * directive that starts with the name (auth_opt_*, plugin_opt_*, bridge_*).
 *
 * The supported directives are in directives.c; a name in neither table is
 * unknown.
 */
#include "config/internal.h"

#include <string.h>

struct refusal {
	const char *name;
	const char *why;
	bool prefix;
};

#define R_ENGINE "not supported: moat reads keys from PEM files, not OpenSSL engines"
#define R_AUTH "not supported yet"
#define R_ACL "not supported yet"
#define R_PLUGIN "not supported: moat loads no plugins (use password_file, acl_file, auth_methods)"
#define R_STORE "not supported: moat keeps retained messages whenever persistence is on"
#define R_BRIDGE "not supported yet (bridges arrive after the broker core)"
#define R_PLS "not needed: moat always applies listener settings per listener"
#define R_LWS "not supported: it configures libwebsockets, which moat does not use"
#define R_OLD "not supported: deprecated by Mosquitto 2.0"
#define R_GONE "not supported: no longer a Mosquitto option; delete the line"
#define R_RSMB "not supported: an RSMB option Mosquitto also ignores; delete the line"

static const struct refusal refusals[] = {
	{ "address", R_BRIDGE, false },
	{ "addresses", R_BRIDGE, false },
	{ "allow_duplicate_messages", R_OLD, false },
	{ "auth_opt_", R_PLUGIN, true },
	{ "auth_plugin", R_PLUGIN, false },
	{ "auth_plugin_deny_special_chars", R_PLUGIN, false },
	{ "bind_interface", "not supported yet (bind to an address: listener PORT ADDRESS)",
	  false },
	{ "bridge_", R_BRIDGE, true },
	{ "check_retain_source", R_ACL, false },
	{ "cleansession", R_BRIDGE, false },
	{ "clientid", R_BRIDGE, false },
	{ "clientid_prefixes", R_OLD, false },
	{ "connection", R_BRIDGE, false },
	{ "ffdc_output", R_RSMB, false },
	{ "http_dir", "not supported: moat serves no files over HTTP", false },
	{ "idle_timeout", R_BRIDGE, false },
	{ "keepalive_interval", R_BRIDGE, false },
	{ "local_cleansession", R_BRIDGE, false },
	{ "local_clientid", R_BRIDGE, false },
	{ "local_password", R_BRIDGE, false },
	{ "local_username", R_BRIDGE, false },
	{ "log_facility", "not supported yet (moat logs to syslog's daemon facility)", false },
	{ "max_log_entries", R_RSMB, false },
	{ "notification_topic", R_BRIDGE, false },
	{ "notifications", R_BRIDGE, false },
	{ "notifications_local_only", R_BRIDGE, false },
	{ "password", R_BRIDGE, false },
	{ "per_listener_settings", R_PLS, false },
	{ "persistence_file", "not supported: moat keeps its store as moat.db in persistence_location",
	  false },
	{ "plugin", R_PLUGIN, false },
	{ "plugin_opt_", R_PLUGIN, true },
	{ "remote_clientid", R_BRIDGE, false },
	{ "remote_password", R_BRIDGE, false },
	{ "remote_username", R_BRIDGE, false },
	{ "restart_timeout", R_BRIDGE, false },
	{ "retained_persistence", R_STORE, false },
	{ "retry_interval", R_GONE, false },
	{ "round_robin", R_BRIDGE, false },
	{ "start_type", R_BRIDGE, false },
	{ "store_clean_interval", R_GONE, false },
	{ "threshold", R_BRIDGE, false },
	{ "tls_engine", R_ENGINE, false },
	{ "tls_engine_kpass_sha1", R_ENGINE, false },
	{ "topic", R_BRIDGE, false },
	{ "trace_level", R_RSMB, false },
	{ "trace_output", R_RSMB, false },
	{ "try_private", R_BRIDGE, false },
	{ "use_username_as_clientid", R_AUTH, false },
	{ "username", R_BRIDGE, false },
	{ "websockets_headers_size", "not supported yet (WebSocket limits are not configurable)",
	  false },
	{ "websockets_log_level", R_LWS, false },
};

const char *moat_config_refusal(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *r = &refusals[i];
		if (r->prefix ? strncmp(r->name, name, strlen(r->name)) == 0
			      : strcmp(r->name, name) == 0)
			return r->why;
	}
	return NULL;
}
