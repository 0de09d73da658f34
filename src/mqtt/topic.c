/*
 * topic.c - topic validation and matching (see topic.h).
 *
 * Matching walks filter and topic once, level by level, without recursion
 * or allocation: its cost is linear in the two lengths whatever the input,
 * so a very deep or very long topic (CVE-2019-11779) costs what it weighs.
 */
#include "mqtt/topic.h"

#include <string.h>

#include "core/error.h"

int moat_mqtt_topic_name_check(const uint8_t *p, size_t n)
{
	if (n == 0)
		return MOAT_EMALFORMED;
	if (memchr(p, '+', n) || memchr(p, '#', n))
		return MOAT_EMALFORMED;
	return 0;
}

/* Checks the wildcard placement of a filter that is not a shared one. */
static int plain_filter_check(const uint8_t *p, size_t n)
{
	size_t i;

	if (n == 0)
		return MOAT_EMALFORMED;
	for (i = 0; i < n; i++) {
		bool level_start = i == 0 || p[i - 1] == '/';
		bool level_end = i + 1 == n || p[i + 1] == '/';

		if (p[i] == '+' && !(level_start && level_end))
			return MOAT_EMALFORMED;
		if (p[i] == '#' && !(level_start && i + 1 == n))
			return MOAT_EMALFORMED;
	}
	return 0;
}

int moat_mqtt_share_split(const uint8_t *p, size_t n, struct moat_slice *group,
			  struct moat_slice *filter)
{
	static const char prefix[] = "$share/";
	const size_t plen = sizeof(prefix) - 1;
	const uint8_t *slash;
	size_t glen;

	if (n < plen || memcmp(p, prefix, plen) != 0)
		return 0;
	slash = memchr(p + plen, '/', n - plen);
	if (!slash)
		return MOAT_EMALFORMED;
	glen = (size_t)(slash - (p + plen));
	if (glen == 0 || memchr(p + plen, '+', glen) || memchr(p + plen, '#', glen))
		return MOAT_EMALFORMED;
	if (plain_filter_check(slash + 1, n - plen - glen - 1) < 0)
		return MOAT_EMALFORMED;
	group->p = p + plen;
	group->len = glen;
	filter->p = slash + 1;
	filter->len = n - plen - glen - 1;
	return 1;
}

int moat_mqtt_topic_filter_check(const uint8_t *p, size_t n)
{
	struct moat_slice g, f;
	int rc = moat_mqtt_share_split(p, n, &g, &f);

	if (rc != 0)
		return rc < 0 ? rc : 0;
	return plain_filter_check(p, n);
}

bool moat_mqtt_topic_match(const uint8_t *f, size_t fn, const uint8_t *t, size_t tn)
{
	size_t i = 0, j = 0;

	if (fn == 0 || tn == 0)
		return false;
	if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	for (;;) {
		/* Here i and j are at the start of a level of the filter and topic. */
		if (f[i] == '#')
			return true;
		if (f[i] == '+') {
			while (j < tn && t[j] != '/')
				j++;
			i++;
		} else {
			while (i < fn && f[i] != '/') {
				if (j >= tn || t[j] != f[i])
					return false;
				i++;
				j++;
			}
			if (j < tn && t[j] != '/')
				return false;
		}
		/* Both at a level end: the end of the string or a '/'. */
		if (i == fn)
			return j == tn;
		if (j == tn) /* "a/#" matches "a" */
			return fn - i == 2 && f[i + 1] == '#';
		i++;
		j++;
		if (i == fn) /* filter ends in '/': the topic must too */
			return j == tn;
	}
}
