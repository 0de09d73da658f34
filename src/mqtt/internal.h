/*
 * internal.h - helpers shared by the files of src/mqtt/, not part of its API.
 */
#ifndef MOAT_MQTT_INTERNAL_H
#define MOAT_MQTT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt/props.h"
#include "mqtt/types.h"
#include "mqtt/wire.h"

/*
 * Records a fault: code is MOAT_EMALFORMED, MOAT_EPROTOCOL, MOAT_ETOOBIG or
 * MOAT_EVERSION; the MQTT 5.0 reason follows from it (0x81, 0x82, 0x95, 0x84).
 * Returns code, so callers write `return moat_mqtt_fail(...)`.
 */
int moat_mqtt_fail(struct moat_mqtt_fault *f, int code, const char *rule, const char *why);

/* As moat_mqtt_fail, with an explicit MQTT 5.0 reason and MQTT 3.x CONNACK code. */
int moat_mqtt_fail_rc(struct moat_mqtt_fault *f, int code, uint8_t reason, uint8_t connack_v3,
		      const char *rule, const char *why);

/*
 * Checks the bytes of a UTF-8 Encoded String (MQTT 5.0 section 1.5.4,
 * 3.1.1 section 1.5.3): ill-formed or U+0000 is Malformed [MQTT-1.5.4-1],
 * [MQTT-1.5.4-2]; with strict, so are the discouraged code points.
 */
int moat_mqtt_check_utf8(const uint8_t *p, size_t n, bool strict, struct moat_mqtt_fault *f);

/* Writes the property block of pr (length prefix included). 0 or MOAT_EINVAL. */
int moat_mqtt_props_put(struct wr *w, const struct moat_mqtt_props *pr, unsigned where);

#endif
