/*
 * topic.h - topic names, topic filters and matching (MQTT 5.0 section 4.7,
 * 3.1.1 section 4.7), and shared subscription filters (5.0 section 4.8.2).
 *
 * These functions check the structure MQTT gives topics; the UTF-8 rules of
 * section 1.5.4 are checked where the string is decoded, not here.
 */
#ifndef MOAT_MQTT_TOPIC_H
#define MOAT_MQTT_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt/types.h"

/*
 * Returns 0 if p[0..n) is a valid Topic Name: at least one character
 * [MQTT-4.7.3-1] and no wildcard '+' or '#' [MQTT-3.3.2-2]. Otherwise
 * MOAT_EMALFORMED.
 */
int moat_mqtt_topic_name_check(const uint8_t *p, size_t n);

/*
 * Returns 0 if p[0..n) is a valid Topic Filter: at least one character,
 * '#' only as a whole last level [MQTT-4.7.1-1], '+' only as a whole level
 * [MQTT-4.7.1-2]. A "$share/" filter must also be a valid shared filter
 * (see moat_mqtt_share_split). Otherwise MOAT_EMALFORMED.
 */
int moat_mqtt_topic_filter_check(const uint8_t *p, size_t n);

/*
 * True if topic name t matches topic filter f. '+' matches exactly one level
 * (possibly empty), '#' the rest of the levels including the parent ("a/#"
 * matches "a"), and a filter starting with a wildcard never matches a topic
 * starting with '$' [MQTT-4.7.2-1]. f must be a valid filter (not a "$share/"
 * one: match its inner filter) and t a valid name; for other input the result
 * is false or true, never a fault.
 */
bool moat_mqtt_topic_match(const uint8_t *f, size_t fn, const uint8_t *t, size_t tn);

/*
 * Splits a shared subscription filter "$share/{ShareName}/{filter}".
 * Returns 1 and sets *group and *filter (borrowed from p) if p is a valid
 * shared filter; 0 if p does not start with "$share/" (not shared, nothing
 * set); MOAT_EMALFORMED if it starts with "$share/" but the ShareName is empty
 * or holds '/', '+' or '#' [MQTT-4.8.2-2], or the inner filter is missing or
 * invalid [MQTT-4.8.2-1].
 */
int moat_mqtt_share_split(const uint8_t *p, size_t n, struct moat_slice *group,
			  struct moat_slice *filter);

#endif
