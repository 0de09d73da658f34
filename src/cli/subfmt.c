/*
 * subfmt.c - printing received messages (see subfmt.h for the format
 * language). The payload is written as bytes, never through printf's %s,
 * so NULs and invalid UTF-8 come out as they came in.
 */
#include "cli/subfmt.h"

#include <string.h>
#include <time.h>

#include "mqtt/props.h"

/* A conversion's flags: %-08.3t gives align '-', pad '0', width 8, precision 3. */
struct spec {
	bool left;
	char pad;
	int width;
	int precision; /* -1 = none */
};

struct ctx {
	FILE *f;
	const struct moat_client_msg *m;
	struct timespec now;
	struct tm tm;
};

static void pad(FILE *f, char c, int n)
{
	while (n-- > 0)
		fputc(c, f);
}

static void put_bytes(struct ctx *x, const struct spec *s, const uint8_t *p, size_t n)
{
	int fill;

	if (s->precision >= 0 && (size_t)s->precision < n)
		n = (size_t)s->precision;
	fill = s->width - (int)n;
	if (!s->left)
		pad(x->f, s->pad, fill);
	if (n)
		fwrite(p, 1, n, x->f);
	if (s->left)
		pad(x->f, ' ', fill);
}

static void put_str(struct ctx *x, const struct spec *s, const char *str)
{
	struct spec sp = *s;

	sp.pad = ' ';
	put_bytes(x, &sp, (const uint8_t *)str, strlen(str));
}

static void put_slice(struct ctx *x, const struct spec *s, struct moat_slice v)
{
	struct spec sp = *s;

	sp.pad = ' ';
	put_bytes(x, &sp, v.p, v.len);
}

static void put_num(struct ctx *x, const struct spec *s, unsigned long v)
{
	if (s->left)
		fprintf(x->f, "%-*lu", s->width, v);
	else if (s->pad == '0')
		fprintf(x->f, "%0*lu", s->width, v);
	else
		fprintf(x->f, "%*lu", s->width, v);
}

static void put_hex(struct ctx *x, const struct spec *s, bool upper)
{
	const struct moat_slice *p = &x->m->payload;
	size_t i;
	int fill = s->width - (int)(p->len * 2);

	if (!s->left)
		pad(x->f, s->pad, fill);
	for (i = 0; i < p->len; i++)
		fprintf(x->f, upper ? "%02X" : "%02x", p->p[i]);
	if (s->left)
		pad(x->f, ' ', fill);
}

/* Writes s as a JSON string body: quotes, backslashes and controls escaped. */
static void put_json_str(FILE *f, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\' || p[i] < 0x20)
			fprintf(f, "\\u%04x", p[i]);
		else
			fputc(p[i], f);
	}
}

static void put_json(struct ctx *x)
{
	const struct moat_client_msg *m = x->m;
	char tst[64];

	strftime(tst, sizeof(tst), "%Y-%m-%dT%H:%M:%S", &x->tm);
	fprintf(x->f, "{\"tst\":\"%s.%06ldZ\",\"topic\":\"", tst, x->now.tv_nsec / 1000);
	put_json_str(x->f, m->topic.p, m->topic.len);
	fprintf(x->f, "\",\"qos\":%u,\"retain\":%d,\"payloadlen\":%zu,", m->qos, m->retain,
		m->payload.len);
	if (m->qos)
		fprintf(x->f, "\"mid\":%u,", m->packet_id);
	fputs("\"payload\":\"", x->f);
	put_json_str(x->f, m->payload.p, m->payload.len);
	fputs("\"}", x->f);
}

static void put_users(struct ctx *x)
{
	struct moat_mqtt_prop_iter it;
	struct moat_slice k, v;
	bool first = true;

	moat_mqtt_props_iter(x->m->props, &it);
	while (moat_mqtt_props_next_user(&it, &k, &v)) {
		if (!first)
			fputc(' ', x->f);
		first = false;
		fprintf(x->f, "%.*s:%.*s", (int)k.len, (const char *)k.p, (int)v.len,
			(const char *)v.p);
	}
}

/* A numeric property, or blanks of the field's width when absent. */
static void put_prop_num(struct ctx *x, const struct spec *s, unsigned id, unsigned long v)
{
	if (moat_mqtt_props_has(x->m->props, id))
		put_num(x, s, v);
	else
		pad(x->f, s->pad, s->width);
}

static void put_prop_str(struct ctx *x, const struct spec *s, unsigned id, struct moat_slice v)
{
	if (moat_mqtt_props_has(x->m->props, id))
		put_slice(x, s, v);
	else
		pad(x->f, ' ', s->width);
}

static void put_time(struct ctx *x, const struct spec *s, char conv)
{
	char buf[64];

	if (conv == 'I') {
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S%z", &x->tm);
		put_str(x, s, buf);
	} else {
		fprintf(x->f, "%lld.%09ld", (long long)x->now.tv_sec, x->now.tv_nsec);
	}
}

/* Prints one %-conversion. */
static void conversion(struct ctx *x, const struct spec *s, char conv)
{
	const struct moat_client_msg *m = x->m;
	const struct moat_mqtt_props *pr = m->props;

	switch (conv) {
	case '%': fputc('%', x->f); break;
	case 't': put_slice(x, s, m->topic); break;
	case 'p': put_bytes(x, s, m->payload.p, m->payload.len); break;
	case 'x': put_hex(x, s, false); break;
	case 'X': put_hex(x, s, true); break;
	case 'q': put_num(x, s, m->qos); break;
	case 'r': put_num(x, s, m->retain); break;
	case 'l': put_num(x, s, m->payload.len); break;
	case 'm': put_num(x, s, m->packet_id); break;
	case 'I':
	case 'U': put_time(x, s, conv); break;
	case 'j': put_json(x); break;
	case 'A': put_prop_num(x, s, MOAT_PROP_TOPIC_ALIAS, pr->topic_alias); break;
	case 'E': put_prop_num(x, s, MOAT_PROP_MESSAGE_EXPIRY_INTERVAL, pr->message_expiry); break;
	case 'F': put_prop_num(x, s, MOAT_PROP_PAYLOAD_FORMAT_INDICATOR, pr->payload_format); break;
	case 'S': put_prop_num(x, s, MOAT_PROP_SUBSCRIPTION_IDENTIFIER, pr->subscription_id); break;
	case 'C': put_prop_str(x, s, MOAT_PROP_CONTENT_TYPE, pr->content_type); break;
	case 'R': put_prop_str(x, s, MOAT_PROP_RESPONSE_TOPIC, pr->response_topic); break;
	case 'D':
		if (moat_mqtt_props_has(pr, MOAT_PROP_CORRELATION_DATA))
			fwrite(pr->correlation_data.p, 1, pr->correlation_data.len, x->f);
		break;
	case 'P': put_users(x); break;
	default: break; /* unknown: nothing, as mosquitto_sub */
	}
}

/* Reads the flags of a conversion at *fmt (just past the %). */
static struct spec read_spec(const char **fmt)
{
	struct spec s = {false, ' ', 0, -1};
	const char *p = *fmt;

	if (*p == '-') {
		s.left = true;
		p++;
	}
	if (*p == '0') {
		s.pad = '0';
		p++;
	}
	for (; *p >= '0' && *p <= '9'; p++)
		s.width = s.width < 100000 ? s.width * 10 + (*p - '0') : s.width;
	if (*p == '.') {
		s.precision = 0;
		for (p++; *p >= '0' && *p <= '9'; p++)
			s.precision = s.precision < 100000 ? s.precision * 10 + (*p - '0') : s.precision;
	}
	*fmt = p;
	return s;
}

static void escape(FILE *f, char e)
{
	static const char from[] = "\\0aenrtv";
	static const char to[] = "\\\0\a\033\n\r\t\v";
	const char *at = e ? strchr(from, e) : NULL;

	if (at)
		fputc(to[at - from], f);
}

/*
 * @c: strftime's %c for the conversions C17 and POSIX define (anything else
 * is undefined behaviour there, so it prints nothing here).
 */
static void strftime_one(struct ctx *x, char c)
{
	static const char defined[] = "aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ";
	char spec[3] = {'%', c, '\0'}, buf[128];

	if (c == '@') {
		fputc('@', x->f);
		return;
	}
	if (c == 'N') {
		fprintf(x->f, "%09ld", x->now.tv_nsec);
		return;
	}
	if (strchr(defined, c) == NULL)
		return;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	if (strftime(buf, sizeof(buf), spec, &x->tm) > 0)
		fputs(buf, x->f);
#pragma GCC diagnostic pop
}

static void formatted(struct ctx *x, const char *fmt)
{
	while (*fmt) {
		char c = *fmt++;

		if (c == '%' && *fmt) {
			struct spec s = read_spec(&fmt);
			if (*fmt)
				conversion(x, &s, *fmt++);
		} else if (c == '@' && *fmt) {
			strftime_one(x, *fmt++);
		} else if (c == '\\' && *fmt) {
			escape(x->f, *fmt++);
		} else {
			fputc(c, x->f);
		}
	}
}

void moat_cli_print_message(FILE *f, const struct moat_cli_print *pr,
			    const struct moat_client_msg *m)
{
	struct ctx x = {f, m, {0, 0}, {0}};

	if (pr->format) {
		clock_gettime(CLOCK_REALTIME, &x.now);
		localtime_r(&x.now.tv_sec, &x.tm);
		formatted(&x, pr->format);
		if (pr->eol)
			fputc('\n', f);
	} else if (pr->verbose && m->payload.len) {
		fprintf(f, "%.*s ", (int)m->topic.len, (const char *)m->topic.p);
		fwrite(m->payload.p, 1, m->payload.len, f);
		if (pr->eol)
			fputc('\n', f);
	} else if (pr->verbose) {
		if (pr->eol) /* as mosquitto_sub: nothing at all with -N */
			fprintf(f, "%.*s (null)\n", (int)m->topic.len, (const char *)m->topic.p);
	} else if (m->payload.len) {
		fwrite(m->payload.p, 1, m->payload.len, f);
		if (pr->eol)
			fputc('\n', f);
	}
	fflush(f);
}
