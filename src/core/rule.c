#include "core/rule.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pcre2.h>

#include "core/custmap.h"
#include "util/log.h"

/* Stripe's limit on a payload value, which the customer id becomes. */
#define RULE_STRIPE_VALUE_MAX 100
/* Stripe rejects values with more significant digits (API version 2026-04-22.dahlia). */
#define RULE_SIGNIFICANT_MAX 15
/* Quoted texts in reasons are cut to this many bytes so that the rest of the reason fits. */
#define RULE_QUOTE_MAX 64
/* A time without a year is taken in the latest year that puts it at most this far after the
 * time it is read (seconds): a writer's clock ahead of this host's. */
#define RULE_YEAR_AHEAD_S 86400
/* A timestamp no format could need more of. */
#define RULE_TIMESTAMP_TEXT_MAX 128
/* PCRE2's JIT stack: its default 32 KiB fails on long lines with nested groups. Reserved once. */
#define RULE_JIT_STACK_START (32 * 1024)
#define RULE_JIT_STACK_MAX (1024 * 1024)

/* The capture groups a name refers to: more than one when the pattern uses (?J) or (?|...). */
struct rule_group {
	uint32_t *numbers;
	size_t n;
};

struct rule_compiled {
	const struct config_rule *rule;
	pcre2_code *code;
	pcre2_match_data *md; /* one per rule, so that apply never allocates */
	/* The set's context (its JIT stack) with this rule's limits. */
	pcre2_match_context *mctx;
	struct rule_group customer;
	struct rule_group value;     /* n == 0: the constant below */
	struct rule_group timestamp; /* n == 0: the read time */
	char value_const[RULE_VALUE_MAX];
	const struct custmap *map; /* borrowed from rule_set.maps */
	/* The last timestamp text parsed: busy logs repeat it line after line, and strptime costs
	 * more than the match. Assumes TZ does not change while the set lives. */
	char ts_text[RULE_TIMESTAMP_TEXT_MAX];
	size_t ts_len; /* 0: nothing cached */
	int64_t ts_value, ts_now;
	bool ts_used_now;
};

struct rule_source {
	size_t *rules; /* indices into rule_set.rules, configuration order */
	size_t n;
};

struct rule_map {
	const char *path;    /* borrowed from the config */
	struct custmap *map; /* NULL if it failed to load (reported once) */
};

struct rule_set {
	const struct config *cfg;
	struct rule_compiled *rules;
	size_t n_rules;
	struct rule_source *sources;
	size_t n_sources;
	struct rule_map *maps;
	size_t n_maps;
	size_t max_per_source;
	pcre2_match_context *mctx;
	pcre2_jit_stack *jit_stack;
};

/* ---- values ------------------------------------------------------------------------------- */

static bool rule_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int rule_parse_value(const char *text, size_t len, char *out, size_t outlen)
{
	size_t i = 0, int_start, int_end, frac_start = 0, frac_end = 0, sig = 0, need, o = 0;
	bool neg = false, zero;

	if (text == NULL || out == NULL || outlen == 0)
		return -1;
	if (i < len && (text[i] == '-' || text[i] == '+')) {
		neg = text[i] == '-';
		i++;
	}
	int_start = i;
	while (i < len && rule_is_digit(text[i]))
		i++;
	int_end = i;
	/* ".5" and "1." are rejected: neither is how a log writes a number, so they more likely
	 * mean the pattern captured the wrong text. */
	if (int_end == int_start)
		return -1;
	if (i < len && text[i] == '.') {
		i++;
		frac_start = i;
		while (i < len && rule_is_digit(text[i]))
			i++;
		frac_end = i;
		if (frac_end == frac_start)
			return -1;
	}
	if (i != len)
		return -1;
	while (int_start < int_end - 1 && text[int_start] == '0')
		int_start++;
	while (frac_end > frac_start && text[frac_end - 1] == '0')
		frac_end--;
	zero = int_end - int_start == 1 && text[int_start] == '0';
	/* Significant digits run from the first non-zero digit to the last kept one; the integer
	 * part's trailing zeros count, since Stripe cannot tell them from precision. */
	if (!zero) {
		sig = (int_end - int_start) + (frac_end - frac_start);
	} else {
		size_t f = frac_start;

		while (f < frac_end && text[f] == '0')
			f++;
		sig = frac_end - f;
	}
	if (sig > RULE_SIGNIFICANT_MAX)
		return -2;
	if (zero && frac_end == frac_start)
		neg = false; /* "-0" */
	need = (neg ? 1 : 0) + (int_end - int_start) +
	       (frac_end > frac_start ? 1 + (frac_end - frac_start) : 0) + 1;
	if (need > outlen)
		return -1;
	if (neg)
		out[o++] = '-';
	memcpy(out + o, text + int_start, int_end - int_start);
	o += int_end - int_start;
	if (frac_end > frac_start) {
		out[o++] = '.';
		memcpy(out + o, text + frac_start, frac_end - frac_start);
		o += frac_end - frac_start;
	}
	out[o] = '\0';
	return 0;
}

/* ---- timestamps --------------------------------------------------------------------------- */

static int rule_parse_epoch(const char *text, size_t len, int64_t *out)
{
	size_t i = 0;
	int64_t v = 0;

	if (len == 0 || !rule_is_digit(text[0]))
		return -1;
	for (; i < len && rule_is_digit(text[i]); i++) {
		int d = text[i] - '0';

		if (v > (INT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (i < len && text[i] == '.') {
		size_t f = ++i;

		while (i < len && rule_is_digit(text[i]))
			i++;
		if (i == f)
			return -1;
	}
	if (i != len)
		return -1;
	*out = v;
	return 0;
}

/* Where `format` has the conversion `conv` (its '%'), skipping "%%" and the E and O modifiers,
 * with in *len the length of the conversion; NULL if it has none. */
static const char *rule_format_find(const char *format, char conv, size_t *len)
{
	for (const char *p = format; *p != '\0'; p++) {
		const char *start = p;

		if (*p != '%')
			continue;
		p++;
		while (*p == 'E' || *p == 'O')
			p++;
		if (*p == '\0')
			break;
		if (*p == conv) {
			*len = (size_t)(p + 1 - start);
			return start;
		}
	}
	return NULL;
}

/* Zone names that say offset 0 (RFC 5322 section 3.3 and ISO 8601 "Z"). */
static bool rule_zone_is_utc(const char *name, size_t len)
{
	static const char *const names[] = {"UTC", "GMT", "UT", "Z"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
			return true;
	return false;
}

/* Whether `format` has the conversion `conv`. */
static bool rule_format_has(const char *format, char conv)
{
	size_t len;

	return rule_format_find(format, conv, &len) != NULL;
}

/* strptime(3) with %Z read here: glibc's strptime consumes a zone name and sets nothing from
 * it, so "10:00:00 UTC" would be taken in the agent's local time zone. The format is given to
 * strptime in pieces between its %Z; each %Z takes a name of letters after optional
 * whitespace (as strptime skips it), which must be one of rule_zone_is_utc's: *utc is then set
 * and the time has offset 0 (unless a %z gives one). Any other name fails: which offset "CST"
 * means is not knowable. `text` is NUL-terminated. Returns where parsing stopped, or NULL. */
static const char *rule_strptime(const char *text, const char *format, struct tm *tm, bool *utc)
{
	char piece[RULE_TIMESTAMP_TEXT_MAX];
	const char *p = text, *f = format, *z;
	size_t zlen = 0, n;

	*utc = false;
	for (;;) {
		z = rule_format_find(f, 'Z', &zlen);
		if (z == NULL)
			return strptime(p, f, tm);
		n = (size_t)(z - f);
		if (n >= sizeof(piece))
			return NULL;
		memcpy(piece, f, n);
		piece[n] = '\0';
		p = strptime(p, piece, tm);
		if (p == NULL)
			return NULL;
		while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
			p++;
		n = 0;
		while ((p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= 'a' && p[n] <= 'z'))
			n++;
		if (!rule_zone_is_utc(p, n))
			return NULL;
		*utc = true;
		p += n;
		f = z + zlen;
	}
}

/* strptime takes "31/Feb" and mktime would roll it into March: a date that does not exist is
 * more likely a garbled line than an event. */
static bool rule_tm_date_exists(const struct tm *tm)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int year = tm->tm_year + 1900, max;

	if (tm->tm_mon < 0 || tm->tm_mon > 11)
		return false;
	max = days[tm->tm_mon];
	if (tm->tm_mon == 1 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
		max = 29;
	return tm->tm_mday <= max;
}

/* Turns the broken-down time strptime filled in into seconds: with %z its offset, else local
 * time. Returns 0, or -1 if it is out of range or the date, second or offset does not exist. */
static int rule_tm_to_seconds(struct tm *tm, bool has_z, int64_t *out)
{
	struct tm copy = *tm;
	time_t t;

	/* strptime takes seconds up to 61 and offsets up to 24 hours: no clock shows more than a
	 * leap second's 60, and no zone is further than -12:00 or +14:00 from UTC, so such a text
	 * is garbled, not a time to bill at. */
	if (!rule_tm_date_exists(tm) || tm->tm_sec > 60 ||
	    (has_z && (tm->tm_gmtoff < -12 * 3600 || tm->tm_gmtoff > 14 * 3600)))
		return -1;

	if (has_z) {
		/* glibc's strptime puts %z into tm_gmtoff, which timegm ignores. */
		long gmtoff = copy.tm_gmtoff;

		errno = 0;
		t = timegm(&copy);
		if (t == (time_t)-1 && errno != 0)
			return -1;
		*out = (int64_t)t - gmtoff;
		return 0;
	}
	/* tm_isdst is -1 (set before strptime) unless %s filled it in from localtime_r, which
	 * keeps a time in the repeated hour of a DST change exact. */
	t = mktime(&copy);
	/* mktime's -1 is also 1969-12-31T23:59:59Z, which no meter event can have. */
	if (t == (time_t)-1)
		return -1;
	*out = (int64_t)t;
	return 0;
}

/* rule_parse_timestamp, also telling whether the result depends on `now` (no year). */
static int rule_parse_timestamp_now(const char *format, const char *text, size_t len, int64_t now,
                                    int64_t *out, bool *used_now)
{
	char buf[RULE_TIMESTAMP_TEXT_MAX];
	struct tm tm;
	const char *end;
	bool has_z, has_year, utc;
	int64_t t;
	/* A tm_year no conversion can produce (%Y takes 0..9999): if strptime leaves it, the
	 * format has no year, whatever conversion (%Y, %y, %C, %D, %F, %s, %c, %x...) would set
	 * one. */
	const int no_year = 30000;

	*used_now = false;
	if (format == NULL || text == NULL || out == NULL || format[0] == '\0')
		return -1;
	if (strcmp(format, "epoch") == 0)
		return rule_parse_epoch(text, len, out);
	if (len == 0 || len >= sizeof(buf) || memchr(text, '\0', len) != NULL)
		return -1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	memset(&tm, 0, sizeof(tm));
	tm.tm_isdst = -1;
	tm.tm_year = no_year;
	end = rule_strptime(buf, format, &tm, &utc);
	if (end == NULL || *end != '\0')
		return -1;
	has_z = rule_format_has(format, 'z');
	if (utc && !has_z) {
		tm.tm_gmtoff = 0;
		has_z = true;
	}
	has_year = tm.tm_year != no_year;
	if (has_year)
		return rule_tm_to_seconds(&tm, has_z, out);

	/* syslog's "%b %d %H:%M:%S": the latest year that does not put the time more than a day
	 * after `now`, among the one after `now`'s year (in UTC with an offset, else in local
	 * time), that year and the one before. The year after: a January line read while `now`'s
	 * year is still the old one, as its offset is ahead of UTC ("Jan 01 00:30:00 +0100" is
	 * 23:30 UTC on 31 December) or the writer's clock a little ahead of this host's; taken in
	 * `now`'s year it would be a year early. The year before: December lines read in January.
	 * A date that one of them lacks (29 February) is tried in the next. */
	*used_now = true;
	{
		time_t now_t = (time_t)now;
		struct tm now_tm;

		if ((has_z ? gmtime_r(&now_t, &now_tm) : localtime_r(&now_t, &now_tm)) == NULL)
			return -1;
		for (int d = 1; d >= -1; d--) {
			tm.tm_year = now_tm.tm_year + d;
			if (rule_tm_to_seconds(&tm, has_z, &t) == 0 &&
			    t <= now + RULE_YEAR_AHEAD_S) {
				*out = t;
				return 0;
			}
		}
	}
	return -1;
}

int rule_parse_timestamp(const char *format, const char *text, size_t len, int64_t now,
                         int64_t *out)
{
	bool used_now;

	return rule_parse_timestamp_now(format, text, len, now, out, &used_now);
}

/* ---- reasons ------------------------------------------------------------------------------ */

/* Writes `len` bytes of `s` into `out` for quoting in a reason: at most RULE_QUOTE_MAX bytes (then
 * "..."), not cut inside a UTF-8 sequence, control bytes as '?' so a reason stays one line. */
static void rule_quote(char *out, size_t outlen, const char *s, size_t len)
{
	size_t n = len, o = 0;
	bool cut = false;

	if (outlen < 4) {
		if (outlen > 0)
			out[0] = '\0';
		return;
	}
	if (n > RULE_QUOTE_MAX || n > outlen - 4) {
		n = RULE_QUOTE_MAX < outlen - 4 ? RULE_QUOTE_MAX : outlen - 4;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
		cut = true;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		out[o++] = c < 0x20 || c == 0x7F ? '?' : (char)c;
	}
	if (cut) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* ---- building the set --------------------------------------------------------------------- */

static const char *rule_loc_file(const struct config_loc *loc)
{
	return loc->file ? loc->file : "(config)";
}

/* Finds the groups called `name`. Returns 0 (g->n may be 0: no such group), or -1 if out of
 * memory. */
static int rule_group_find(const pcre2_code *code, const char *name, struct rule_group *g)
{
	PCRE2_SPTR first, last;
	int size;

	g->numbers = NULL;
	g->n = 0;
	size = pcre2_substring_nametable_scan(code, (PCRE2_SPTR)name, &first, &last);
	if (size <= 0)
		return 0;
	g->n = (size_t)((last - first) / size) + 1;
	g->numbers = calloc(g->n, sizeof(*g->numbers));
	if (g->numbers == NULL) {
		g->n = 0;
		return -1;
	}
	for (size_t i = 0; i < g->n; i++) {
		PCRE2_SPTR e = first + i * (size_t)size;

		/* Each name table entry starts with the group number, two bytes, most significant
		 * first (pcre2api(3), "Information about a pattern"). */
		g->numbers[i] = ((uint32_t)e[0] << 8) | e[1];
	}
	return 0;
}

static const struct custmap *rule_map_get(struct rule_set *rs, const struct config_rule *r,
                                          char *err, size_t errlen, bool *failed)
{
	char msg[1024] = "";
	struct rule_map *m;

	*failed = false;
	for (size_t i = 0; i < rs->n_maps; i++) {
		if (strcmp(rs->maps[i].path, r->customer_map) == 0) {
			/* A map that failed is reported once, at the first rule using it. */
			*failed = rs->maps[i].map == NULL;
			return rs->maps[i].map;
		}
	}
	m = &rs->maps[rs->n_maps++];
	m->path = r->customer_map;
	m->map = custmap_load(r->customer_map, msg, sizeof(msg));
	if (m->map == NULL) {
		err_append(err, errlen, "%s:%u: rule '%s': customer map: %s",
		           rule_loc_file(&r->customer_map_loc), r->customer_map_loc.line, r->name,
		           msg);
		*failed = true;
	}
	return m->map;
}

/* Compiles one rule and checks its keys. Returns 0, or -1 if it is wrong (reported in err) or
 * memory ran out (*oom). */
/* The rule's own match context: a copy of the set's (which carries the JIT stack) with the
 * rule's limits. The option table bounds them to uint32_t, as PCRE2 takes them; heap_limit is
 * given to PCRE2 in KiB. Returns 0, or -1 out of memory. */
static int rule_limits_set(const struct rule_set *rs, struct rule_compiled *rc,
                           const struct config_rule *r)
{
	rc->mctx = pcre2_match_context_copy(rs->mctx);
	if (rc->mctx == NULL)
		return -1;
	pcre2_set_match_limit(rc->mctx, (uint32_t)r->match_limit);
	pcre2_set_depth_limit(rc->mctx, (uint32_t)r->depth_limit);
	pcre2_set_heap_limit(rc->mctx, (uint32_t)(r->heap_limit / 1024));
	return 0;
}

static int rule_compile_one(struct rule_set *rs, struct rule_compiled *rc,
                            const struct config_rule *r, bool jit, char *err, size_t errlen,
                            bool *oom)
{
	int errcode, ret = 0;
	PCRE2_SIZE erroffset;
	bool failed;

	rc->rule = r;
	if (r->source_index >= rs->n_sources) {
		err_append(err, errlen, "%s:%u: rule '%s': no source number %zu",
		           rule_loc_file(&r->loc), r->loc.line, r->name, r->source_index);
		ret = -1;
	}
	if (r->pattern == NULL) {
		err_append(err, errlen, "%s:%u: rule '%s': no pattern", rule_loc_file(&r->loc),
		           r->loc.line, r->name);
		return -1;
	}
	rc->code = pcre2_compile((PCRE2_SPTR)r->pattern, strlen(r->pattern), 0, &errcode,
	                         &erroffset, NULL);
	if (rc->code == NULL) {
		PCRE2_UCHAR msg[256];

		if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", errcode);
		err_append(err, errlen,
		           "%s:%u: rule '%s': pattern does not compile at offset %zu: %s",
		           rule_loc_file(&r->pattern_loc), r->pattern_loc.line, r->name,
		           (size_t)erroffset, (const char *)msg);
		return -1;
	}
	if (jit) {
		int jrc = pcre2_jit_compile(rc->code, PCRE2_JIT_COMPLETE);

		if (jrc != 0) {
			PCRE2_UCHAR msg[256] = "";

			pcre2_get_error_message(jrc, msg, sizeof(msg));
			log_debug("rule '%s': JIT compilation failed (%s), using the interpreter",
			          r->name, (const char *)msg);
		}
	}
	rc->md = pcre2_match_data_create_from_pattern(rc->code, NULL);
	if (rc->md == NULL || rule_limits_set(rs, rc, r) < 0)
		goto oom;

	if (r->customer == NULL || r->customer[0] == '\0') {
		err_append(err, errlen, "%s:%u: rule '%s': no customer group",
		           rule_loc_file(&r->loc), r->loc.line, r->name);
		ret = -1;
	} else {
		if (rule_group_find(rc->code, r->customer, &rc->customer) < 0)
			goto oom;
		if (rc->customer.n == 0) {
			err_append(err, errlen, "%s:%u: rule '%s': no named group '%s' in pattern",
			           rule_loc_file(&r->customer_loc), r->customer_loc.line, r->name,
			           r->customer);
			ret = -1;
		}
	}

	if (r->value == NULL || r->value[0] == '\0') {
		err_append(err, errlen, "%s:%u: rule '%s': no value", rule_loc_file(&r->loc),
		           r->loc.line, r->name);
		ret = -1;
	} else {
		int vrc = 0;

		if (rule_group_find(rc->code, r->value, &rc->value) < 0)
			goto oom;
		/* Group names cannot start with a digit or a sign, so a name and a number never
		 * look alike. */
		if (rc->value.n == 0)
			vrc = rule_parse_value(r->value, strlen(r->value), rc->value_const,
			                       sizeof(rc->value_const));
		if (vrc < 0) {
			bool numeric = strchr("0123456789+-.", r->value[0]) != NULL;

			/* -2: a number Stripe would refuse in every event, not a typo. */
			err_append(err, errlen,
			           vrc == -2 ? "%s:%u: rule '%s': value '%s' has more than 15 "
			                       "significant digits (Stripe's limit)"
			           : numeric ? "%s:%u: rule '%s': value '%s' is not a number"
			                     : "%s:%u: rule '%s': no named group '%s' in pattern",
			           rule_loc_file(&r->value_loc), r->value_loc.line, r->name,
			           r->value);
			ret = -1;
		}
	}

	if (r->timestamp != NULL) {
		if (rule_group_find(rc->code, r->timestamp, &rc->timestamp) < 0)
			goto oom;
		if (rc->timestamp.n == 0) {
			err_append(err, errlen, "%s:%u: rule '%s': no named group '%s' in pattern",
			           rule_loc_file(&r->timestamp_loc), r->timestamp_loc.line, r->name,
			           r->timestamp);
			ret = -1;
		}
		if (r->timestamp_format == NULL || r->timestamp_format[0] == '\0') {
			err_append(err, errlen, "%s:%u: rule '%s': timestamp_format is empty",
			           rule_loc_file(&r->timestamp_format_loc),
			           r->timestamp_format_loc.line, r->name);
			ret = -1;
		}
	}

	if (r->customer_map != NULL) {
		rc->map = rule_map_get(rs, r, err, errlen, &failed);
		if (failed)
			ret = -1;
	}
	return ret;
oom:
	*oom = true;
	return -1;
}

void rule_set_free(struct rule_set *rs)
{
	if (rs == NULL)
		return;
	for (size_t i = 0; i < rs->n_rules; i++) {
		struct rule_compiled *rc = &rs->rules[i];

		pcre2_match_data_free(rc->md);
		pcre2_match_context_free(rc->mctx);
		pcre2_code_free(rc->code);
		free(rc->customer.numbers);
		free(rc->value.numbers);
		free(rc->timestamp.numbers);
	}
	free(rs->rules);
	for (size_t i = 0; i < rs->n_sources; i++)
		free(rs->sources[i].rules);
	free(rs->sources);
	for (size_t i = 0; i < rs->n_maps; i++)
		custmap_free(rs->maps[i].map);
	free(rs->maps);
	pcre2_jit_stack_free(rs->jit_stack);
	pcre2_match_context_free(rs->mctx);
	free(rs);
}

struct rule_set *rule_set_new(const struct config *cfg, char *err, size_t errlen)
{
	struct rule_set *rs = NULL;
	uint32_t jit_available = 0;
	bool oom = false, bad = false;

	err_set(err, errlen, "%s", "");
	if (cfg == NULL) {
		err_set(err, errlen, "no configuration");
		return NULL;
	}
	rs = calloc(1, sizeof(*rs));
	if (rs == NULL)
		goto oom;
	rs->cfg = cfg;
	if (cfg->n_rules > 0) {
		rs->rules = calloc(cfg->n_rules, sizeof(*rs->rules));
		rs->maps = calloc(cfg->n_rules, sizeof(*rs->maps));
		if (rs->rules == NULL || rs->maps == NULL)
			goto oom;
	}
	rs->n_rules = cfg->n_rules;
	if (cfg->n_sources > 0) {
		rs->sources = calloc(cfg->n_sources, sizeof(*rs->sources));
		if (rs->sources == NULL)
			goto oom;
	}
	rs->n_sources = cfg->n_sources;
	rs->mctx = pcre2_match_context_create(NULL);
	if (rs->mctx == NULL)
		goto oom;
	if (pcre2_config(PCRE2_CONFIG_JIT, &jit_available) < 0)
		jit_available = 0;
	if (jit_available) {
		rs->jit_stack =
		    pcre2_jit_stack_create(RULE_JIT_STACK_START, RULE_JIT_STACK_MAX, NULL);
		if (rs->jit_stack != NULL)
			pcre2_jit_stack_assign(rs->mctx, NULL, rs->jit_stack);
	}

	for (size_t i = 0; i < cfg->n_rules; i++) {
		if (rule_compile_one(rs, &rs->rules[i], &cfg->rules[i], jit_available != 0, err,
		                     errlen, &oom) < 0)
			bad = true;
		if (oom)
			goto oom;
	}
	if (bad)
		goto fail;

	for (size_t s = 0; s < rs->n_sources; s++) {
		struct rule_source *src = &rs->sources[s];

		for (size_t i = 0; i < rs->n_rules; i++)
			if (cfg->rules[i].source_index == s)
				src->n++;
		if (src->n == 0)
			continue;
		src->rules = calloc(src->n, sizeof(*src->rules));
		if (src->rules == NULL)
			goto oom;
		src->n = 0;
		for (size_t i = 0; i < rs->n_rules; i++)
			if (cfg->rules[i].source_index == s)
				src->rules[src->n++] = i;
		if (src->n > rs->max_per_source)
			rs->max_per_source = src->n;
	}
	return rs;
oom:
	err_append(err, errlen, "rules: out of memory");
fail:
	rule_set_free(rs);
	return NULL;
}

size_t rule_set_max_per_source(const struct rule_set *rs)
{
	return rs ? rs->max_per_source : 0;
}

/* ---- applying ----------------------------------------------------------------------------- */

const char *rule_limit_name(enum rule_limit limit)
{
	static const char *const names[RULE_LIMITS] = {
	    [RULE_LIMIT_NONE] = "",
	    [RULE_LIMIT_MATCH] = "match_limit",
	    [RULE_LIMIT_DEPTH] = "depth_limit",
	    [RULE_LIMIT_HEAP] = "heap_limit",
	    [RULE_LIMIT_JIT_STACK] = "jit_stack",
	};

	return (unsigned)limit < RULE_LIMITS ? names[limit] : "";
}

/* The limit behind a pcre2_match error code, or RULE_LIMIT_NONE. */
static enum rule_limit rule_limit_of(int mrc)
{
	switch (mrc) {
	case PCRE2_ERROR_MATCHLIMIT:
		return RULE_LIMIT_MATCH;
	case PCRE2_ERROR_DEPTHLIMIT:
		return RULE_LIMIT_DEPTH;
	case PCRE2_ERROR_HEAPLIMIT:
		return RULE_LIMIT_HEAP;
	case PCRE2_ERROR_JIT_STACKLIMIT:
		return RULE_LIMIT_JIT_STACK;
	default:
		return RULE_LIMIT_NONE;
	}
}

/* The text of the first set group of `g`. Returns false if none of them took part in the
 * match. */
static bool rule_group_text(const struct rule_group *g, pcre2_match_data *md, int rc,
                            const char *line, const char **text, size_t *len)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);

	for (size_t i = 0; i < g->n; i++) {
		uint32_t num = g->numbers[i];

		if (num >= (uint32_t)rc || ov[2 * num] == PCRE2_UNSET)
			continue;
		*text = line + ov[2 * num];
		*len = ov[2 * num + 1] - ov[2 * num];
		return true;
	}
	return false;
}

static void rule_copy(char *dst, size_t dstlen, const char *src, size_t len)
{
	if (len >= dstlen)
		len = dstlen - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Fills `res` from a match. Returns the outcome. */
/* Parses a captured timestamp through the rule's one-entry cache. */
static int rule_timestamp(struct rule_compiled *rc, const char *text, size_t len, int64_t now,
                          int64_t *out)
{
	bool used_now;

	if (rc->ts_len != 0 && rc->ts_len == len && memcmp(rc->ts_text, text, len) == 0 &&
	    (!rc->ts_used_now || rc->ts_now == now)) {
		*out = rc->ts_value;
		return 0;
	}
	if (rule_parse_timestamp_now(rc->rule->timestamp_format, text, len, now, out, &used_now) <
	    0)
		return -1;
	if (len <= sizeof(rc->ts_text)) {
		memcpy(rc->ts_text, text, len);
		rc->ts_len = len;
		rc->ts_value = *out;
		rc->ts_now = now;
		rc->ts_used_now = used_now;
	}
	return 0;
}

static enum rule_outcome rule_use_match(struct rule_compiled *rc, int mrc, const char *line,
                                        int64_t read_time, struct rule_result *res)
{
	const struct config_rule *r = rc->rule;
	const char *text;
	size_t len;
	int vrc;
	char q[RULE_QUOTE_MAX + 4];

	if (!rule_group_text(&rc->customer, rc->md, mrc, line, &text, &len)) {
		snprintf(res->reason, sizeof(res->reason), "customer group '%s' did not match",
		         r->customer);
		return RULE_INVALID;
	}
	rule_copy(res->customer_key, sizeof(res->customer_key), text, len);
	if (len == 0 || len >= RULE_CUSTOMER_MAX) {
		snprintf(res->reason, sizeof(res->reason), "customer empty or longer than %d bytes",
		         RULE_CUSTOMER_MAX - 1);
		return RULE_INVALID;
	}
	if (memchr(text, '\0', len) != NULL) {
		snprintf(res->reason, sizeof(res->reason), "customer contains a NUL byte");
		return RULE_INVALID;
	}
	if (rc->map == NULL) {
		if (len > RULE_STRIPE_VALUE_MAX) {
			rule_quote(q, sizeof(q), text, len);
			snprintf(res->reason, sizeof(res->reason),
			         "customer '%s' longer than %d bytes", q, RULE_STRIPE_VALUE_MAX);
			return RULE_INVALID;
		}
		memcpy(res->customer, res->customer_key, len + 1);
	}

	if (rc->value.n == 0) {
		memcpy(res->value, rc->value_const, sizeof(res->value));
	} else if (!rule_group_text(&rc->value, rc->md, mrc, line, &text, &len)) {
		snprintf(res->reason, sizeof(res->reason), "value group '%s' did not match",
		         r->value);
		return RULE_INVALID;
	} else if ((vrc = rule_parse_value(text, len, res->value, sizeof(res->value))) < 0) {
		rule_quote(q, sizeof(q), text, len);
		snprintf(res->reason, sizeof(res->reason),
		         vrc == -2
		             ? "value '%s' has more than 15 significant digits (Stripe's limit)"
		             : "value '%s' is not a number",
		         q);
		return RULE_INVALID;
	}

	if (rc->timestamp.n == 0) {
		res->timestamp = read_time;
	} else if (!rule_group_text(&rc->timestamp, rc->md, mrc, line, &text, &len)) {
		snprintf(res->reason, sizeof(res->reason), "timestamp group '%s' did not match",
		         r->timestamp);
		return RULE_INVALID;
	} else if (rule_timestamp(rc, text, len, read_time, &res->timestamp) < 0) {
		char fq[RULE_QUOTE_MAX + 4];

		rule_quote(q, sizeof(q), text, len);
		rule_quote(fq, sizeof(fq), r->timestamp_format, strlen(r->timestamp_format));
		snprintf(res->reason, sizeof(res->reason),
		         "timestamp '%s' does not match format '%s'", q, fq);
		return RULE_INVALID;
	}

	/* Mapping comes last, so that a dead letter waiting for its key in the map is otherwise a
	 * valid event and can be replayed once the map has it. */
	if (rc->map != NULL) {
		const char *id =
		    custmap_lookup(rc->map, res->customer_key, strlen(res->customer_key));

		if (id == NULL) {
			rule_quote(q, sizeof(q), res->customer_key, strlen(res->customer_key));
			snprintf(res->reason, sizeof(res->reason),
			         "customer key '%s' not in customer map %s", q, r->customer_map);
			return RULE_UNMAPPED;
		}
		/* custmap refuses ids longer than Stripe's 100 bytes. */
		rule_copy(res->customer, sizeof(res->customer), id, strlen(id));
	}
	return RULE_EVENT;
}

size_t rule_set_apply(struct rule_set *rs, size_t source_index, const char *line, size_t len,
                      int64_t read_time, struct rule_result *out)
{
	const struct rule_source *src;

	if (rs == NULL || out == NULL || source_index >= rs->n_sources)
		return 0;
	if (line == NULL) {
		line = "";
		len = 0;
	}
	if (len > 0 && line[len - 1] == '\r')
		len--;
	src = &rs->sources[source_index];
	for (size_t i = 0; i < src->n; i++) {
		struct rule_compiled *rc = &rs->rules[src->rules[i]];
		struct rule_result *res = &out[i];
		int mrc;

		res->rule_index = src->rules[i];
		res->rule = rc->rule;
		res->customer_key[0] = '\0';
		res->customer[0] = '\0';
		res->value[0] = '\0';
		res->timestamp = 0;
		res->reason[0] = '\0';
		res->limit = RULE_LIMIT_NONE;
		mrc = pcre2_match(rc->code, (PCRE2_SPTR)line, len, 0, 0, rc->md, rc->mctx);
		if (mrc == PCRE2_ERROR_NOMATCH) {
			res->outcome = RULE_NO_MATCH;
			snprintf(res->reason, sizeof(res->reason), "no match");
			continue;
		}
		if (mrc <= PCRE2_ERROR_UTF8_ERR1 && mrc >= PCRE2_ERROR_UTF8_ERR21) {
			/* Under (*UTF) PCRE2 checks the subject first and matches nothing if it
			 * is not UTF-8 (pcre2unicode(3)); pcre2_get_startchar gives where the bad
			 * character starts. */
			PCRE2_UCHAR msg[200] = "";

			pcre2_get_error_message(mrc, msg, sizeof(msg));
			res->outcome = RULE_BAD_UTF8;
			snprintf(res->reason, sizeof(res->reason),
			         "not valid UTF-8 at byte %zu: %s",
			         (size_t)pcre2_get_startchar(rc->md), (const char *)msg);
			continue;
		}
		if (mrc < 0) {
			/* A limit (match, depth, heap) or the JIT stack: the line may have been
			 * meant to match, so it is counted as unusable, not unmatched. */
			PCRE2_UCHAR msg[200] = "";

			pcre2_get_error_message(mrc, msg, sizeof(msg));
			res->outcome = RULE_INVALID;
			res->limit = rule_limit_of(mrc);
			if (res->limit != RULE_LIMIT_NONE)
				snprintf(res->reason, sizeof(res->reason), "match failed: %s (%s)",
				         (const char *)msg, rule_limit_name(res->limit));
			else
				snprintf(res->reason, sizeof(res->reason), "match failed: %s",
				         (const char *)msg);
			continue;
		}
		/* 0 means the ovector was too small, which match data made from the pattern never
		 * is; treat it as "every group counted". */
		if (mrc == 0)
			mrc = (int)pcre2_get_ovector_count(rc->md);
		res->outcome = rule_use_match(rc, mrc, line, read_time, res);
	}
	return src->n;
}
