/*
 * fault.c - how the codec records what a peer did wrong.
 */
#include "core/error.h"
#include "core/utf8.h"
#include "mqtt/internal.h"
#include "mqtt/reason.h"

int moat_mqtt_fail_rc(struct moat_mqtt_fault *f, int code, uint8_t reason, uint8_t connack_v3,
		      const char *rule, const char *why)
{
	f->code = code;
	f->reason = reason;
	f->connack_v3 = connack_v3;
	f->rule = rule;
	f->why = why;
	return code;
}

int moat_mqtt_fail(struct moat_mqtt_fault *f, int code, const char *rule, const char *why)
{
	uint8_t reason = MOAT_RC_PROTOCOL_ERROR, v3 = 0;

	if (code == MOAT_EMALFORMED) {
		reason = MOAT_RC_MALFORMED_PACKET;
	} else if (code == MOAT_ETOOBIG) {
		reason = MOAT_RC_PACKET_TOO_LARGE;
	} else if (code == MOAT_EVERSION) {
		reason = MOAT_RC_UNSUPPORTED_PROTOCOL_VERSION;
		v3 = MOAT_CONNACK_BAD_PROTOCOL_VERSION;
	}
	return moat_mqtt_fail_rc(f, code, reason, v3, rule, why);
}

int moat_mqtt_check_utf8(const uint8_t *p, size_t n, bool strict, struct moat_mqtt_fault *f)
{
	unsigned flags = strict ? 0 : MOAT_UTF8_ALLOW_DISCOURAGED;

	switch (moat_utf8_check(p, n, flags)) {
	case MOAT_UTF8_OK:
		return 0;
	case MOAT_UTF8_ILLFORMED:
		return moat_mqtt_fail(f, MOAT_EMALFORMED, "MQTT-1.5.4-1", "string is not valid UTF-8");
	case MOAT_UTF8_NUL:
		return moat_mqtt_fail(f, MOAT_EMALFORMED, "MQTT-1.5.4-2", "string contains U+0000");
	case MOAT_UTF8_DISCOURAGED:
		break;
	}
	return moat_mqtt_fail(f, MOAT_EMALFORMED, NULL,
			      "string contains a control character or non-character");
}
