/* Unit tests of rule: values, timestamps, rule sets (custmap has test_custmap). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "util/log.h"
#include "core/rule.h"

#include "fixture.h"

/* The Apache combined log pattern of the design's configuration sketch. */
#define APACHE_PATTERN                                                                             \
	"^(?<ip>\\S+) \\S+ \\S+ \\[(?<time>[^\\]]+)\\] \"(?:GET|POST) [^\"]*\" 2\\d\\d "           \
	"(?<bytes>\\d+)"
#define APACHE_FORMAT "%d/%b/%Y:%H:%M:%S %z"
#define CONF_FILE "/etc/logmeter/test.conf"

static struct fixture *fx; /* the directory for customer maps */

/* ---- helpers ------------------------------------------------------------------------------ */

static int setup_tmpdir(void **state)
{
	(void)state;
	fx = fixture_new("test_rule");
	return 0;
}

static int teardown_tmpdir(void **state)
{
	(void)state;
	fixture_free(fx);
	return 0;
}

static void tmp_path(char *out, size_t outlen, const char *name)
{
	snprintf(out, outlen, "%s", fixture_path(fx, name));
}

struct test_config {
	struct config cfg;
	struct config_source sources[3];
	struct config_rule rules[4];
};

/* A config as config_load would return it, with two sources, "apache" and "other". */
static void tc_init(struct test_config *tc)
{
	memset(tc, 0, sizeof(*tc));
	tc->cfg.main_file = (char *)CONF_FILE;
	tc->cfg.sources = tc->sources;
	tc->cfg.n_sources = 2;
	tc->cfg.rules = tc->rules;
	tc->sources[0].name = (char *)"apache";
	tc->sources[0].path = (char *)"/var/log/apache2/access.log";
	tc->sources[0].loc = (struct config_loc){CONF_FILE, 1};
	tc->sources[1].name = (char *)"other";
	tc->sources[1].path = (char *)"/var/log/other.log";
	tc->sources[1].loc = (struct config_loc){CONF_FILE, 3};
}

/* Adds a rule whose keys are on consecutive lines from `line`: [rule] line, pattern +1,
 * customer +2, customer_map +3, value +4, timestamp +5, timestamp_format +6. */
static struct config_rule *tc_rule(struct test_config *tc, char *name, size_t source, char *pattern,
                                   char *customer, char *value, char *timestamp, unsigned line)
{
	struct config_rule *r = &tc->rules[tc->cfg.n_rules++];

	r->name = name;
	r->source = tc->sources[source].name;
	r->source_index = source;
	r->event_name = (char *)"bandwidth_bytes";
	r->pattern = pattern;
	r->customer = customer;
	r->value = value;
	r->timestamp = timestamp;
	r->timestamp_format = (char *)APACHE_FORMAT;
	r->payload_customer_key = (char *)"stripe_customer_id";
	r->payload_value_key = (char *)"value";
	/* PCRE2's built-in limits (pcre2api(3)): these tests are not about them. */
	r->match_limit = 10000000;
	r->depth_limit = 10000000;
	r->heap_limit = 20000000LL * 1024;
	r->loc = (struct config_loc){CONF_FILE, line};
	r->pattern_loc = (struct config_loc){CONF_FILE, line + 1};
	r->customer_loc = (struct config_loc){CONF_FILE, line + 2};
	r->customer_map_loc = (struct config_loc){CONF_FILE, line + 3};
	r->value_loc = (struct config_loc){CONF_FILE, line + 4};
	r->timestamp_loc = (struct config_loc){CONF_FILE, line + 5};
	r->timestamp_format_loc = (struct config_loc){CONF_FILE, line + 6};
	return r;
}

static size_t apply(struct rule_set *rs, size_t source, const char *line, int64_t read_time,
                    struct rule_result *out)
{
	return rule_set_apply(rs, source, line, strlen(line), read_time, out);
}

/* ---- values ------------------------------------------------------------------------------- */

static void test_value_good(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"0", "0"},
	    {"1", "1"},
	    {"42", "42"},
	    {"+42", "42"},
	    {"-42", "-42"},
	    {"007", "7"},
	    {"000", "0"},
	    {"-0", "0"},
	    {"+0", "0"},
	    {"-000.000", "0"},
	    {"1.50", "1.5"},
	    {"1.0", "1"},
	    {"00.25", "0.25"},
	    {"-0.5", "-0.5"},
	    {"-00.10", "-0.1"},
	    {"0.000001", "0.000001"},
	    {"123456789012345", "123456789012345"},    /* 15 significant digits */
	    {"000123456789012345", "123456789012345"}, /* leading zeros do not count */
	    {"1234567890.12345", "1234567890.12345"},
	    {"0.123456789012345", "0.123456789012345"},
	    {"1.234567890123450000", "1.23456789012345"}, /* trailing zeros do not count */
	    {"100000000000000", "100000000000000"},
	    {"203023", "203023"},
	};
	char out[RULE_VALUE_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(out, 'x', sizeof(out));
		if (rule_parse_value(cases[i].in, strlen(cases[i].in), out, sizeof(out)) != 0)
			fail_msg("'%s' was refused", cases[i].in);
		assert_string_equal(out, cases[i].out);
	}
	/* The length is what counts, not a NUL. */
	assert_int_equal(rule_parse_value("12345", 2, out, sizeof(out)), 0);
	assert_string_equal(out, "12");
}

static void test_value_bad(void **state)
{
	static const char *const cases[] = {
	    "",     "-",     "+",     "1.",  ".5",  "-.5", "1e3", " 1",  "1 ",
	    "0x10", "1,000", "1.2.3", "--1", "+-1", "abc", "12a", "NaN", "inf",
	};
	char out[RULE_VALUE_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (rule_parse_value(cases[i], strlen(cases[i]), out, sizeof(out)) != -1)
			fail_msg("'%s' was accepted as '%s'", cases[i], out);
	/* Numbers with more than 15 significant digits are told apart: Stripe's limit. */
	{
		static const char *const too_precise[] = {
		    "1234567890123456",   /* 16 significant digits */
		    "1000000000000000",   /* 16 digits: integer zeros count */
		    "0.1234567890123456", /* 16 after the leading zeros */
		    "1234567890.123456",
		};
		for (size_t i = 0; i < sizeof(too_precise) / sizeof(too_precise[0]); i++)
			if (rule_parse_value(too_precise[i], strlen(too_precise[i]), out,
			                     sizeof(out)) != -2)
				fail_msg("'%s' was not refused as too precise", too_precise[i]);
	}
	/* A NUL inside the length is not a number. */
	assert_int_equal(rule_parse_value("1\0002", 3, out, sizeof(out)), -1);
	/* Too small an output buffer is a refusal, not an overflow. */
	assert_int_equal(rule_parse_value("12345", 5, out, 5), -1);
	assert_int_equal(rule_parse_value("12345", 5, out, 6), 0);
	assert_string_equal(out, "12345");
	/* 0.000...01 has 1 significant digit but does not fit RULE_VALUE_MAX. */
	{
		char big[100];

		memset(big, '0', sizeof(big));
		big[1] = '.';
		big[sizeof(big) - 1] = '1';
		assert_int_equal(rule_parse_value(big, sizeof(big), out, sizeof(out)), -1);
	}
}

/* ---- timestamps --------------------------------------------------------------------------- */

static char *saved_tz;

static void set_tz(const char *tz)
{
	assert_int_equal(setenv("TZ", tz, 1), 0);
	tzset();
}

static int save_tz(void **state)
{
	const char *tz = getenv("TZ");

	(void)state;
	saved_tz = tz ? strdup(tz) : NULL;
	return 0;
}

static int restore_tz(void **state)
{
	(void)state;
	if (saved_tz != NULL)
		setenv("TZ", saved_tz, 1);
	else
		unsetenv("TZ");
	tzset();
	free(saved_tz);
	saved_tz = NULL;
	return 0;
}

static int64_t ts(const char *format, const char *text, int64_t now)
{
	int64_t out = -12345;

	if (rule_parse_timestamp(format, text, strlen(text), now, &out) != 0)
		fail_msg("'%s' does not match '%s'", text, format);
	return out;
}

static int ts_fails(const char *format, const char *text)
{
	int64_t out;

	return rule_parse_timestamp(format, text, strlen(text), 1772366400, &out) == -1;
}

static void test_timestamp_offset(void **state)
{
	(void)state;
	/* Local time must not matter when the text has an offset. */
	set_tz("EST5EDT,M3.2.0,M11.1.0");
	/* date -u -d '2015-05-17 10:05:03' +%s */
	assert_int_equal(ts(APACHE_FORMAT, "17/May/2015:10:05:03 +0000", 0), 1431857103);
	/* 10:05:03 at +0200 is 08:05:03 UTC: date -u -d '2015-05-17 08:05:03' +%s */
	assert_int_equal(ts(APACHE_FORMAT, "17/May/2015:10:05:03 +0200", 0), 1431849903);
	assert_int_equal(ts(APACHE_FORMAT, "17/May/2015:10:05:03 +0200", 0), 1431857103 - 7200);
	assert_int_equal(ts(APACHE_FORMAT, "17/May/2015:10:05:03 -0130", 0), 1431857103 + 5400);
	set_tz("UTC");
	assert_int_equal(ts(APACHE_FORMAT, "17/May/2015:10:05:03 +0000", 0), 1431857103);

	assert_true(ts_fails(APACHE_FORMAT, "17/May/2015:10:05:03 +0000 "));
	assert_true(ts_fails(APACHE_FORMAT, "17/May/2015:10:05:03 +0000x"));
	assert_true(ts_fails(APACHE_FORMAT, "17/May/2015:10:05:03"));
	assert_true(ts_fails(APACHE_FORMAT, "17/Mai/2015:10:05:03 +0000"));
	/* Dates that do not exist are not rolled into the next month. */
	assert_true(ts_fails(APACHE_FORMAT, "31/Feb/2026:10:05:03 +0000"));
	assert_true(ts_fails(APACHE_FORMAT, "29/Feb/2015:10:05:03 +0000"));
	assert_true(ts_fails(APACHE_FORMAT, "31/Apr/2015:10:05:03 +0000"));
	/* date -u -d '2016-02-29 00:00:00' +%s */
	assert_int_equal(ts(APACHE_FORMAT, "29/Feb/2016:00:00:00 +0000", 0), 1456704000);
	assert_true(ts_fails(APACHE_FORMAT, ""));
	assert_true(ts_fails(APACHE_FORMAT, "-"));
	assert_true(ts_fails("", "17/May/2015:10:05:03 +0000"));
	{
		int64_t out;

		/* The length bounds the text: without it the offset is missing. */
		assert_int_equal(
		    rule_parse_timestamp(APACHE_FORMAT, "17/May/2015:10:05:03 +0000", 20, 0, &out),
		    -1);
		assert_int_equal(rule_parse_timestamp(APACHE_FORMAT,
		                                      "17/May/2015:10:05:03 +0000 trailing", 26, 0,
		                                      &out),
		                 0);
		assert_int_equal(out, 1431857103);
	}
}

/* strptime(3) reads %Z and ignores it: a UTC time must not be taken in the local zone. */
static void test_timestamp_zone_name(void **state)
{
	const char *f = "%Y-%m-%d %H:%M:%S %Z";

	(void)state;
	set_tz("EST5EDT,M3.2.0,M11.1.0");
	/* date -u -d '2015-05-17 10:05:03' +%s */
	assert_int_equal(ts(f, "2015-05-17 10:05:03 UTC", 0), 1431857103);
	assert_int_equal(ts(f, "2015-05-17 10:05:03 GMT", 0), 1431857103);
	assert_int_equal(ts(f, "2015-05-17 10:05:03 Z", 0), 1431857103);
	/* date(1)'s own format, the zone before the year. */
	assert_int_equal(ts("%a %b %e %H:%M:%S %Z %Y", "Sun May 17 10:05:03 UTC 2015", 0),
	                 1431857103);
	/* A numeric offset wins. */
	assert_int_equal(ts("%Y-%m-%d %H:%M:%S %Z%z", "2015-05-17 10:05:03 GMT+0200", 0),
	                 1431857103 - 7200);
	/* No year: the one of `now` in UTC. date -u -d '2015-05-17 12:00:00' +%s = 1431864000 */
	assert_int_equal(ts("%b %d %H:%M:%S %Z", "May 17 10:05:03 UTC", 1431864000), 1431857103);
	/* Names whose offset is not knowable, and no name at all. */
	assert_true(ts_fails(f, "2015-05-17 10:05:03 PST"));
	assert_true(ts_fails(f, "2015-05-17 10:05:03 EST"));
	assert_true(ts_fails(f, "2015-05-17 10:05:03 UTCX"));
	assert_true(ts_fails(f, "2015-05-17 10:05:03 "));
	assert_true(ts_fails(f, "2015-05-17 10:05:03"));
	/* Seconds and offsets no clock or zone has; a leap second is a time. */
	assert_true(ts_fails(APACHE_FORMAT, "17/May/2015:10:05:61 +0000"));
	assert_true(ts_fails(APACHE_FORMAT, "17/May/2015:10:05:03 -2400"));
	assert_true(ts_fails(APACHE_FORMAT, "17/May/2015:10:05:03 +1500"));
	assert_true(ts_fails(APACHE_FORMAT, "17/May/2015:10:05:03 -1201"));
	/* date -u -d '2015-05-16 20:05:03' +%s = 1431806703 */
	assert_int_equal(ts(APACHE_FORMAT, "17/May/2015:10:05:03 +1400", 0), 1431806703);
	/* date -u -d '2015-05-17 22:05:03' +%s = 1431900303 */
	assert_int_equal(ts(APACHE_FORMAT, "17/May/2015:10:05:03 -1200", 0), 1431900303);
	/* 23:59:60 is the second after 23:59:59: date -u -d '2016-12-31 23:59:59' +%s = 1483228799
	 */
	assert_int_equal(ts(APACHE_FORMAT, "31/Dec/2016:23:59:60 +0000", 0), 1483228800);
	/* "%%Z" is a literal "%Z", not a zone. */
	set_tz("UTC");
	assert_int_equal(ts("%Y-%m-%d %H:%M:%S %%Z", "2015-05-17 10:05:03 %Z", 0), 1431857103);
}

static void test_timestamp_local(void **state)
{
	(void)state;
	set_tz("UTC");
	/* date -u -d '2015-05-17 10:05:03' +%s */
	assert_int_equal(ts("%Y-%m-%d %H:%M:%S", "2015-05-17 10:05:03", 0), 1431857103);
	assert_int_equal(ts("%Y-%m-%dT%H:%M:%S", "2015-05-17T10:05:03", 0), 1431857103);
	/* A POSIX TZ string needs no tzdata: EST is UTC-5 in February.
	 * date -u -d '2026-02-25 21:19:38' +%s = 1772054378 */
	set_tz("EST5EDT,M3.2.0,M11.1.0");
	assert_int_equal(ts("%Y-%m-%d %H:%M:%S", "2026-02-25 16:19:38", 0), 1772054378);
	/* EDT (UTC-4) in May. */
	assert_int_equal(ts("%Y-%m-%d %H:%M:%S", "2015-05-17 06:05:03", 0), 1431857103);
	assert_true(ts_fails("%Y-%m-%d %H:%M:%S", "2015-05-17"));
	assert_true(ts_fails("%Y-%m-%d %H:%M:%S", "2015-13-17 10:05:03"));
}

static void test_timestamp_no_year(void **state)
{
	const char *syslog = "%b %d %H:%M:%S";

	(void)state;
	set_tz("UTC");
	/* now = 2026-03-01 12:00:00 UTC (date -u -d '2026-03-01 12:00:00' +%s);
	 * 2026-02-25 16:19:38 UTC is date -u -d '2026-02-25 16:19:38' +%s */
	assert_int_equal(ts(syslog, "Feb 25 16:19:38", 1772366400), 1772036378);
	/* syslog pads the day with a space. */
	assert_int_equal(ts(syslog, "Feb  5 16:19:38", 1772366400), 1772036378 - 20 * 86400);
	/* December read on New Year's Day is last year's: now = 2026-01-01 00:10:00 UTC
	 * (1767226200); date -u -d '2025-12-31 23:59:00' +%s = 1767225540 */
	assert_int_equal(ts(syslog, "Dec 31 23:59:00", 1767226200), 1767225540);
	/* Up to a day in the future (clock skew) stays in this year: now = 2026-02-25 16:19:38;
	 * 2026-02-26 16:19:38 is exactly 86400 s later. */
	assert_int_equal(ts(syslog, "Feb 26 16:19:38", 1772036378), 1772036378 + 86400);
	/* One second more is last year's: date -u -d '2025-02-26 16:19:39' +%s = 1740586779 */
	assert_int_equal(ts(syslog, "Feb 26 16:19:39", 1772036378), 1740586779);
	/* Local time applies: in EST, 16:19:38 is 21:19:38 UTC. */
	set_tz("EST5EDT,M3.2.0,M11.1.0");
	assert_int_equal(ts(syslog, "Feb 25 16:19:38", 1772366400), 1772036378 + 5 * 3600);
	/* With an offset but no year, the offset applies and the year is inferred. */
	assert_int_equal(ts("%b %d %H:%M:%S %z", "Feb 25 18:19:38 +0200", 1772366400), 1772036378);
	/* A January line whose offset is ahead of UTC, read while it is still 31 December in UTC,
	 * is next year's: "Jan 01 00:30:00 +0100" is 2026-12-31 23:30:00 UTC (date -u -d
	 * '2026-12-31 23:30:00' +%s = 1798759800), read at that very second; in `now`'s year it
	 * was 2025-12-31 23:30:00 UTC (1767223800), a year early. */
	assert_int_equal(ts("%b %d %H:%M:%S %z", "Jan 01 00:30:00 +0100", 1798759800), 1798759800);
	/* A writer's clock 40 s ahead at New Year, in local time: now = 2026-12-31 23:59:50 UTC
	 * (1798761590); date -u -d '2027-01-01 00:00:30' +%s = 1798761630, not 2026's 1767225630.
	 */
	set_tz("UTC");
	assert_int_equal(ts(syslog, "Jan 01 00:00:30", 1798761590), 1798761630);
	/* 29 February exists in 2028 only: read then (now = 2028-03-01 00:10:00, 1835482200) it is
	 * date -u -d '2028-02-29 10:00:00' +%s = 1835431200; read in March 2026 (ts_fails), none
	 * of 2025, 2026 and 2027 has it: invalid. */
	assert_int_equal(ts(syslog, "Feb 29 10:00:00", 1835482200), 1835431200);
	assert_true(ts_fails(syslog, "Feb 29 10:00:00"));
	/* A two-digit year is a year. date -u -d '2015-05-17 10:05:03' +%s */
	set_tz("UTC");
	assert_int_equal(ts("%d/%m/%y %H:%M:%S", "17/05/15 10:05:03", 1772366400), 1431857103);
	assert_int_equal(ts("%F %T", "2015-05-17 10:05:03", 1772366400), 1431857103);
}

static void test_timestamp_epoch(void **state)
{
	(void)state;
	assert_int_equal(ts("epoch", "1761019822.3152757", 0), 1761019822);
	assert_int_equal(ts("epoch", "1761019822", 0), 1761019822);
	assert_int_equal(ts("epoch", "0", 0), 0);
	assert_true(ts_fails("epoch", "-1761019822"));
	assert_true(ts_fails("epoch", "1761019822."));
	assert_true(ts_fails("epoch", ".5"));
	assert_true(ts_fails("epoch", "1e9"));
	assert_true(ts_fails("epoch", ""));
	assert_true(ts_fails("epoch", " 1761019822"));
	assert_true(ts_fails("epoch", "1761019822 "));
	assert_true(ts_fails("epoch", "99999999999999999999999"));
	/* strptime's %s is seconds since the epoch too, whatever the local time. */
	set_tz("EST5EDT,M3.2.0,M11.1.0");
	assert_int_equal(ts("%s", "1761019822", 0), 1761019822);
	/* 2025-11-02 05:30:00 UTC is 01:30 EST, inside the hour that repeats when EDT ends:
	 * date -u -d '2025-11-02 05:30:00' +%s = 1762061400 */
	assert_int_equal(ts("%s", "1762061400", 0), 1762061400);
	assert_int_equal(ts("%s", "1762061400", 0) - ts("%s", "1762057800", 0), 3600);
}

/* ---- rule sets ---------------------------------------------------------------------------- */

/* Where the shared real logs are: $LOGMETER_LOGS, else $top_srcdir/../shared/data/logs. */
static FILE *open_apache_log(void)
{
	char path[4096];
	const char *dir = getenv("LOGMETER_LOGS");
	const char *top = getenv("top_srcdir");

	if (dir != NULL)
		snprintf(path, sizeof(path), "%s/elastic_apache_logs.log", dir);
	else if (top != NULL)
		snprintf(path, sizeof(path), "%s/../shared/data/logs/elastic_apache_logs.log", top);
	else
		return NULL;
	return fopen(path, "r");
}

static void test_apache_real_lines(void **state)
{
	struct test_config tc;
	struct rule_set *rs;
	struct rule_result res[2];
	char err[1024] = "";
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	size_t lineno = 0, events = 0, no_match = 0, other = 0;
	int64_t sum = 0;

	(void)state;
	f = open_apache_log();
	if (f == NULL) {
		skip();
		return;
	}
	tc_init(&tc);
	tc_rule(&tc, "apache-bytes", 0, APACHE_PATTERN, "ip", "bytes", "time", 10);
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	assert_int_equal(rule_set_max_per_source(rs), 1);
	while ((len = getline(&line, &cap, f)) >= 0) {
		if (len > 0 && line[len - 1] == '\n')
			len--;
		lineno++;
		assert_int_equal(rule_set_apply(rs, 0, line, (size_t)len, 1, res), 1);
		assert_int_equal(res[0].rule_index, 0);
		assert_ptr_equal(res[0].rule, &tc.rules[0]);
		if (lineno == 1) {
			/* 83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET ..." 200 203023 */
			assert_int_equal(res[0].outcome, RULE_EVENT);
			assert_string_equal(res[0].customer_key, "83.149.9.216");
			assert_string_equal(res[0].customer, "83.149.9.216");
			assert_string_equal(res[0].value, "203023");
			assert_int_equal(res[0].timestamp, 1431857103);
		} else if (lineno == 2) {
			/* [17/May/2015:10:05:43 +0000] ... 200 171717 */
			assert_int_equal(res[0].outcome, RULE_EVENT);
			assert_string_equal(res[0].value, "171717");
			assert_int_equal(res[0].timestamp, 1431857103 + 40);
		}
		if (res[0].outcome == RULE_EVENT) {
			events++;
			sum += strtoll(res[0].value, NULL, 10);
		} else if (res[0].outcome == RULE_NO_MATCH) {
			no_match++;
			assert_string_equal(res[0].reason, "no match");
		} else {
			other++;
		}
	}
	free(line);
	fclose(f);
	rule_set_free(rs);
	/* Counted independently with Python's re over the same file:
	 * 8958 matching lines of 10000, their byte counts summing to 2746963282. */
	assert_int_equal(lineno, 10000);
	assert_int_equal(events, 8958);
	assert_int_equal(no_match, 10000 - 8958);
	assert_int_equal(other, 0);
	assert_int_equal(sum, 2746963282LL);
}

static const char *const apache_line =
    "83.149.9.216 - - [17/May/2015:10:05:03 +0000] \"GET /presentations/logstash-monitorama-"
    "2013/images/kibana-search.png HTTP/1.1\" 200 203023 \"http://semicomplete.com/\" "
    "\"Mozilla/5.0\"";

static void test_apply_basics(void **state)
{
	struct test_config tc;
	struct rule_set *rs;
	struct rule_result res[3];
	char err[1024] = "";
	char line[512];

	(void)state;
	tc_init(&tc);
	tc_rule(&tc, "bytes", 0, APACHE_PATTERN, "ip", "bytes", "time", 10);
	/* The same lines counted as requests: a constant value, the read time. */
	tc_rule(&tc, "requests", 0, "^(?<ip>\\S+) .*\" (?<status>\\d{3}) (?<bytes>\\S+)$", "ip",
	        "1", NULL, 20);
	tc_rule(&tc, "whole", 0, "^(?<all>.*)$", "all", "+0012.50", NULL, 30);
	tc_rule(&tc, "other", 1, "^(?<c>\\w+) (?<v>\\S+)", "c", "v", NULL, 40);
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	assert_int_equal(rule_set_max_per_source(rs), 3);

	/* Two rules (of three) on one source each give a result, in configuration order. */
	assert_int_equal(apply(rs, 0, apache_line, 1000, res), 3);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_int_equal(res[0].rule_index, 0);
	assert_string_equal(res[0].value, "203023");
	assert_int_equal(res[0].timestamp, 1431857103);
	assert_int_equal(res[1].outcome, RULE_NO_MATCH); /* the line ends with a quote */
	assert_int_equal(res[1].rule_index, 1);
	assert_string_equal(res[1].reason, "no match");
	assert_int_equal(res[2].outcome, RULE_INVALID); /* the whole line is over 100 bytes */
	assert_non_null(strstr(res[2].reason, "longer than 100 bytes"));

	snprintf(line, sizeof(line),
	         "10.0.0.7 - - [17/May/2015:10:05:03 +0200] \"GET / HTTP/1.1\" 200 0");
	assert_int_equal(apply(rs, 0, line, 1000, res), 3);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_string_equal(res[0].customer, "10.0.0.7");
	assert_string_equal(res[0].value, "0");
	assert_int_equal(res[0].timestamp, 1431849903);
	assert_int_equal(res[1].outcome, RULE_EVENT);
	assert_string_equal(res[1].customer, "10.0.0.7");
	assert_string_equal(res[1].value, "1");
	assert_int_equal(res[1].timestamp, 1000); /* no timestamp group: the read time */
	assert_int_equal(res[2].outcome, RULE_EVENT);
	assert_string_equal(res[2].customer, line);
	assert_string_equal(res[2].value, "12.5");

	/* A CRLF line: the CR is not captured. */
	snprintf(line, sizeof(line),
	         "10.0.0.7 - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1\" 200 -\r");
	assert_int_equal(apply(rs, 0, line, 1000, res), 3);
	assert_int_equal(res[0].outcome, RULE_NO_MATCH); /* \d+ does not take '-' */
	/* "(?<bytes>\S+)$" matches only if the CR was dropped: \S is not CR, $ is not before it. */
	assert_int_equal(res[1].outcome, RULE_EVENT);
	assert_int_equal(res[2].outcome, RULE_EVENT);
	assert_null(strchr(res[2].customer, '\r'));
	assert_int_equal(strlen(res[2].customer), strlen(line) - 1);

	/* Only the rules of the source asked for; a '-' value is invalid. */
	assert_int_equal(apply(rs, 1, "alice -\r", 77, res), 1);
	assert_int_equal(res[0].rule_index, 3);
	assert_int_equal(res[0].outcome, RULE_INVALID);
	assert_string_equal(res[0].customer_key, "alice");
	assert_string_equal(res[0].reason, "value '-' is not a number");
	assert_int_equal(apply(rs, 1, "alice 0042\r", 77, res), 1);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_string_equal(res[0].value, "42");
	assert_int_equal(res[0].timestamp, 77);
	assert_int_equal(apply(rs, 1, "alice 1,5", 77, res), 1);
	assert_int_equal(res[0].outcome, RULE_INVALID);
	assert_string_equal(res[0].reason, "value '1,5' is not a number");
	assert_int_equal(apply(rs, 1, "", 77, res), 1);
	assert_int_equal(res[0].outcome, RULE_NO_MATCH);
	assert_int_equal(rule_set_apply(rs, 1, NULL, 0, 77, res), 1);
	assert_int_equal(res[0].outcome, RULE_NO_MATCH);
	/* A lone CR is an empty line. */
	assert_int_equal(apply(rs, 0, "\r", 77, res), 3);
	assert_int_equal(res[2].outcome, RULE_INVALID);
	assert_string_equal(res[2].reason, "customer empty or longer than 255 bytes");
	/* No such source. */
	assert_int_equal(apply(rs, 2, "alice 1", 77, res), 0);

	/* The bytes need not be UTF-8. */
	{
		static const char bad[] =
		    "\xff\xfe\xc3(caf\xe9 \x80 - [17/May/2015:10:05:03 +0000] "
		    "\"POST /\xc0\xaf HTTP/1.1\" 201 5";

		assert_int_equal(rule_set_apply(rs, 0, bad, sizeof(bad) - 1, 1, res), 3);
		assert_int_equal(res[0].outcome, RULE_EVENT);
		assert_string_equal(res[0].customer, "\xff\xfe\xc3(caf\xe9");
		assert_string_equal(res[0].value, "5");
		assert_int_equal(res[0].timestamp, 1431857103);
	}
	/* The length counts, not a NUL; control bytes are not quoted raw in reasons. */
	{
		static const char nul[] = "bob 3\0";

		assert_int_equal(rule_set_apply(rs, 1, nul, sizeof(nul) - 1, 1, res), 1);
		assert_int_equal(res[0].outcome, RULE_INVALID);
		assert_string_equal(res[0].reason, "value '3?' is not a number");
		assert_int_equal(rule_set_apply(rs, 1, nul, 5, 1, res), 1);
		assert_int_equal(res[0].outcome, RULE_EVENT);
		assert_string_equal(res[0].customer, "bob");
		assert_string_equal(res[0].value, "3");
	}
	/* A bad timestamp is invalid, with the text and the format. */
	assert_int_equal(
	    apply(rs, 0, "1.2.3.4 - - [17/Foo/2015:10:05:03 +0000] \"GET / x\" 200 1", 1, res), 3);
	assert_int_equal(res[0].outcome, RULE_INVALID);
	assert_string_equal(res[0].reason, "timestamp '17/Foo/2015:10:05:03 +0000' does not match "
	                                   "format '%d/%b/%Y:%H:%M:%S %z'");
	rule_set_free(rs);
	rule_set_free(NULL);
}

/* Under (*UTF) a line that is not UTF-8 cannot be matched: its own outcome, with where the bad
 * byte is, not "invalid" (a rule that matched but could not use the line). */
static void test_bad_utf8(void **state)
{
	struct test_config tc;
	struct rule_set *rs;
	struct rule_result res[2];
	char err[1024] = "";

	(void)state;
	tc_init(&tc);
	tc_rule(&tc, "utf", 0, "(*UTF)^(?<c>\\S+) (?<v>\\d+)$", "c", "v", NULL, 10);
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	assert_int_equal(apply(rs, 0, "caf\xc3\xa9 3", 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_int_equal(apply(rs, 0, "cafe\xff 3", 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_BAD_UTF8);
	assert_non_null(strstr(res[0].reason, "not valid UTF-8 at byte 4: "));
	assert_int_equal(apply(rs, 0, "caf\xc3 3", 1, res), 1); /* a sequence cut short */
	assert_int_equal(res[0].outcome, RULE_BAD_UTF8);
	assert_non_null(strstr(res[0].reason, "at byte 3"));
	rule_set_free(rs);
}

static void test_customer_limits(void **state)
{
	struct test_config tc;
	struct rule_set *rs;
	struct rule_result res[1];
	char err[1024] = "";
	char line[600];

	(void)state;
	tc_init(&tc);
	tc_rule(&tc, "c", 0, "^(?<c>[^ ]*) ?(?<v>\\d+)?", "c", "v", NULL, 10);
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	/* 100 bytes is Stripe's limit for a payload value. */
	memset(line, 'k', 100);
	snprintf(line + 100, sizeof(line) - 100, " 7");
	assert_int_equal(apply(rs, 0, line, 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_int_equal(strlen(res[0].customer), 100);
	memset(line, 'k', 101);
	snprintf(line + 101, sizeof(line) - 101, " 7");
	assert_int_equal(apply(rs, 0, line, 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_INVALID);
	/* The quoted text is cut to fit. */
	assert_string_equal(res[0].reason,
	                    "customer 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
	                    "kkkkkkkkkkkkkk...' longer than 100 bytes");
	memset(line, 'k', 256);
	snprintf(line + 256, sizeof(line) - 256, " 7");
	assert_int_equal(apply(rs, 0, line, 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_INVALID);
	assert_string_equal(res[0].reason, "customer empty or longer than 255 bytes");
	assert_int_equal(apply(rs, 0, " 7", 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_INVALID);
	assert_string_equal(res[0].reason, "customer empty or longer than 255 bytes");
	/* The value group did not take part in the match. */
	assert_int_equal(apply(rs, 0, "bob", 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_INVALID);
	assert_string_equal(res[0].reason, "value group 'v' did not match");
	rule_set_free(rs);
}

static void test_customer_map(void **state)
{
	struct test_config tc;
	struct rule_set *rs;
	struct rule_result res[2];
	char err[1024] = "", path[128], want[256];
	struct config_rule *r;

	(void)state;
	tmp_path(path, sizeof(path), "customers.csv");
	fixture_write_text(path,
	                   "# ip,customer\n83.149.9.216,cus_NffrFeUfNV2Hib\n10.0.0.7,cus_B\n");
	tc_init(&tc);
	r = tc_rule(&tc, "bytes", 0, APACHE_PATTERN, "ip", "bytes", "time", 10);
	r->customer_map = path;
	/* A second rule with the same map shares it. */
	r = tc_rule(&tc, "requests", 0, "^(?<ip>\\S+) ", "ip", "1", NULL, 20);
	r->customer_map = path;
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	assert_int_equal(apply(rs, 0, apache_line, 5, res), 2);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_string_equal(res[0].customer_key, "83.149.9.216");
	assert_string_equal(res[0].customer, "cus_NffrFeUfNV2Hib");
	assert_string_equal(res[0].value, "203023");
	assert_int_equal(res[1].outcome, RULE_EVENT);
	assert_string_equal(res[1].customer, "cus_NffrFeUfNV2Hib");

	assert_int_equal(
	    apply(rs, 0, "10.0.0.8 - - [17/May/2015:10:05:03 +0000] \"GET / x\" 200 9", 5, res), 2);
	assert_int_equal(res[0].outcome, RULE_UNMAPPED);
	assert_string_equal(res[0].customer_key, "10.0.0.8");
	assert_string_equal(res[0].customer, "");
	/* An unmapped event is otherwise complete, so that it can be replayed once mapped. */
	assert_string_equal(res[0].value, "9");
	assert_int_equal(res[0].timestamp, 1431857103);
	snprintf(want, sizeof(want), "customer key '10.0.0.8' not in customer map %s", path);
	assert_string_equal(res[0].reason, want);
	assert_int_equal(res[1].outcome, RULE_UNMAPPED);
	/* A longer key than any in the map is still just unmapped. */
	assert_int_equal(apply(rs, 0, "10.0.0.77 ", 5, res), 2);
	assert_int_equal(res[1].outcome, RULE_UNMAPPED);
	assert_int_equal(apply(rs, 0, "10.0.0.7 ", 5, res), 2);
	assert_int_equal(res[1].outcome, RULE_EVENT);
	assert_string_equal(res[1].customer, "cus_B");
	rule_set_free(rs);

	/* A map that does not load is an error at customer_map's line, reported once. */
	tc_init(&tc);
	tmp_path(path, sizeof(path), "badmap.csv");
	fixture_write_text(path, "a,cus_A\nb\n");
	r = tc_rule(&tc, "bytes", 0, APACHE_PATTERN, "ip", "bytes", "time", 10);
	r->customer_map = path;
	r = tc_rule(&tc, "requests", 0, "^(?<ip>\\S+) ", "ip", "1", NULL, 20);
	r->customer_map = path;
	assert_null(rule_set_new(&tc.cfg, err, sizeof(err)));
	snprintf(want, sizeof(want),
	         CONF_FILE ":13: rule 'bytes': customer map: %s:2: expected \"key,customer_id\", "
	                   "found no comma",
	         path);
	assert_string_equal(err, want);
}

static void test_set_errors(void **state)
{
	struct test_config tc;
	struct config_rule *r;
	char err[2048] = "";

	(void)state;
	/* A pattern that does not compile: PCRE2's message and offset at pattern's line. */
	tc_init(&tc);
	tc_rule(&tc, "x", 0, "^(?<ip>\\S+ (?<bytes>\\d+)", "ip", "bytes", NULL, 10);
	assert_null(rule_set_new(&tc.cfg, err, sizeof(err)));
	assert_string_equal(err, CONF_FILE ":11: rule 'x': pattern does not compile at offset 24: "
	                                   "missing closing parenthesis");

	/* A missing group at the line of the key naming it. */
	tc_init(&tc);
	tc_rule(&tc, "x", 0, "^(?<ip>\\S+) (?<byte>\\d+)", "ip", "bytes", NULL, 10);
	assert_null(rule_set_new(&tc.cfg, err, sizeof(err)));
	assert_string_equal(err, CONF_FILE ":14: rule 'x': no named group 'bytes' in pattern");

	/* Every error of every rule is reported, one per line. */
	tc_init(&tc);
	tc_rule(&tc, "a", 0, "^(?<ip>\\S+) (?<n>\\d+)", "user", "1.", "when", 10);
	r = tc_rule(&tc, "b", 1, "(?<x>", "x", "1", NULL, 20);
	r = tc_rule(&tc, "c", 1, "^(?<u>\\w+) (?<t>\\S+)", "u", "1", "t", 30);
	r->timestamp_format = (char *)"";
	r = tc_rule(&tc, "d", 0, "^(?<u>\\w+)", "u", "1", NULL, 40);
	r->customer_map = (char *)"/nonexistent/customers.csv";
	assert_null(rule_set_new(&tc.cfg, err, sizeof(err)));
	assert_string_equal(err, CONF_FILE
	                    ":12: rule 'a': no named group 'user' in pattern\n" CONF_FILE
	                    ":14: rule 'a': value '1.' is not a number\n" CONF_FILE
	                    ":15: rule 'a': no named group 'when' in pattern\n" CONF_FILE
	                    ":21: rule 'b': pattern does not compile at offset 5: missing closing "
	                    "parenthesis\n" CONF_FILE
	                    ":36: rule 'c': timestamp_format is empty\n" CONF_FILE
	                    ":43: rule 'd': customer map: /nonexistent/customers.csv: No such file "
	                    "or directory");

	/* A clean set leaves the error buffer empty. */
	tc_init(&tc);
	tc_rule(&tc, "ok", 0, "^(?<ip>\\S+) (?<n>\\d+)", "ip", "n", NULL, 10);
	{
		struct rule_set *rs = rule_set_new(&tc.cfg, err, sizeof(err));
		struct rule_result res[1];

		assert_non_null(rs);
		assert_string_equal(err, "");
		assert_int_equal(apply(rs, 0, "x 5", 1, res), 1);
		assert_string_equal(res[0].value, "5");
		rule_set_free(rs);
	}

	/* No rules at all is a valid, empty set. */
	tc_init(&tc);
	{
		struct rule_set *rs = rule_set_new(&tc.cfg, err, sizeof(err));
		struct rule_result res[1];

		assert_non_null(rs);
		assert_int_equal(rule_set_max_per_source(rs), 0);
		assert_int_equal(apply(rs, 0, "x", 1, res), 0);
		rule_set_free(rs);
	}
}

/* A repeated timestamp text is parsed once, but a year-less one still follows the read time. */
static void test_timestamp_repeat(void **state)
{
	struct test_config tc;
	struct rule_set *rs;
	struct rule_result res[1];
	char err[1024] = "";
	struct config_rule *r;

	(void)state;
	tc_init(&tc);
	r = tc_rule(&tc, "syslog", 0, "^(?<t>\\w+ +\\d+ [\\d:]+) (?<c>\\w+) (?<v>\\d+)", "c", "v",
	            "t", 10);
	r->timestamp_format = (char *)"%b %d %H:%M:%S";
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	/* date -u -d '2025-12-31 23:59:00' +%s = 1767225540, read 30 s later */
	assert_int_equal(apply(rs, 0, "Dec 31 23:59:00 alice 1", 1767225570, res), 1);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_int_equal(res[0].timestamp, 1767225540);
	assert_int_equal(apply(rs, 0, "Dec 31 23:59:00 bob 2", 1767225570, res), 1);
	assert_int_equal(res[0].timestamp, 1767225540);
	/* The same text a year later: date -u -d '2026-12-31 23:59:00' +%s = 1798761540 */
	assert_int_equal(apply(rs, 0, "Dec 31 23:59:00 alice 1", 1798761570, res), 1);
	assert_int_equal(res[0].timestamp, 1798761540);
	assert_int_equal(apply(rs, 0, "Dec 31 23:59:01 alice 1", 1798761570, res), 1);
	assert_int_equal(res[0].timestamp, 1798761541);
	assert_int_equal(apply(rs, 0, "Dec 31 23:59:00 alice 1", 1798761570, res), 1);
	assert_int_equal(res[0].timestamp, 1798761540);
	/* A bad text after a good one is not taken for it. */
	assert_int_equal(apply(rs, 0, "Dec 32 23:59:00 alice 1", 1798761570, res), 1);
	assert_int_equal(res[0].outcome, RULE_INVALID);
	rule_set_free(rs);

	/* With a year, the same text gives the same time whatever the read time. */
	tc_init(&tc);
	tc_rule(&tc, "apache", 0, APACHE_PATTERN, "ip", "bytes", "time", 10);
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	assert_int_equal(apply(rs, 0, apache_line, 1, res), 1);
	assert_int_equal(res[0].timestamp, 1431857103);
	assert_int_equal(apply(rs, 0, apache_line, 1798761570, res), 1);
	assert_int_equal(res[0].timestamp, 1431857103);
	rule_set_free(rs);
}

/* Duplicate names ((?J) or a (?|...) branch reset) take the group that matched. */
static void test_duplicate_names(void **state)
{
	struct test_config tc;
	struct rule_set *rs;
	struct rule_result res[1];
	char err[1024] = "";

	(void)state;
	tc_init(&tc);
	tc_rule(&tc, "dup", 0, "(?J)^(?:user=(?<c>\\w+)|ip=(?<c>[\\d.]+)) (?<v>\\d+)$", "c", "v",
	        NULL, 10);
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	assert_int_equal(apply(rs, 0, "user=alice 3", 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_string_equal(res[0].customer, "alice");
	assert_int_equal(apply(rs, 0, "ip=10.0.0.1 4", 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_string_equal(res[0].customer, "10.0.0.1");
	assert_string_equal(res[0].value, "4");
	rule_set_free(rs);
}

/* A rule with its own PCRE2 limits. */
static struct config_rule *limited_rule(struct test_config *tc, char *name, char *pattern,
                                        int64_t match, int64_t depth, int64_t heap)
{
	struct config_rule *r = tc_rule(tc, name, 0, pattern, "c", "1", NULL, 10);

	r->match_limit = match;
	r->depth_limit = depth;
	r->heap_limit = heap;
	return r;
}

/* PCRE2's limits (pcre2api(3)): a line that hits one is invalid, with the limit named; the next
 * line of the same rule is matched afresh. (*NO_JIT) puts a pattern in the interpreter, the
 * only matcher that honours depth_limit and heap_limit. */
static void test_limits(void **state)
{
	struct test_config tc;
	struct rule_set *rs;
	struct rule_result res[1];
	char err[1024] = "", line[80000];
	size_t n = 0;

	(void)state;
	/* Nested unlimited repeats: 2^30 ways to fail on 30 a's and a b. */
	tc_init(&tc);
	limited_rule(&tc, "nested", "^(?<c>(?:a+)+)$", 10000, 10000000, 1LL << 30);
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	assert_int_equal(apply(rs, 0, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_INVALID);
	assert_int_equal(res[0].limit, RULE_LIMIT_MATCH);
	assert_string_equal(res[0].reason, "match failed: match limit exceeded (match_limit)");
	assert_int_equal(apply(rs, 0, "aaaa", 1, res), 1);
	assert_int_equal(res[0].outcome, RULE_EVENT);
	assert_int_equal(res[0].limit, RULE_LIMIT_NONE);
	assert_string_equal(res[0].customer, "aaaa");
	rule_set_free(rs);

	/* 10,000 words: each repeat of the group is one more nested backtracking point, and
	 * more frames than 1 MiB holds. */
	while (n < 10000 * 6) {
		memcpy(line + n, "word5 ", 6);
		n += 6;
	}
	memcpy(line + n, "42", 3);
	tc_init(&tc);
	limited_rule(&tc, "depth", "(*NO_JIT)^(?:(?<c>\\S+) )+\\d+$", 100000000, 1000, 1LL << 30);
	limited_rule(&tc, "heap", "(*NO_JIT)^(?:(?<c>\\S+) )+\\d+$", 100000000, 100000000,
	             1LL << 20);
	limited_rule(&tc, "enough", "(*NO_JIT)^(?:(?<c>\\S+) )+\\d+$", 100000000, 100000000,
	             1LL << 30);
	rs = rule_set_new(&tc.cfg, err, sizeof(err));
	if (rs == NULL)
		fail_msg("%s", err);
	{
		struct rule_result three[3];

		assert_int_equal(apply(rs, 0, line, 1, three), 3);
		assert_int_equal(three[0].limit, RULE_LIMIT_DEPTH);
		assert_non_null(strstr(three[0].reason, "(depth_limit)"));
		assert_int_equal(three[1].limit, RULE_LIMIT_HEAP);
		assert_non_null(strstr(three[1].reason, "(heap_limit)"));
		assert_int_equal(three[2].outcome, RULE_EVENT);
		assert_string_equal(three[2].customer, "word5");
	}
	rule_set_free(rs);
	assert_string_equal(rule_limit_name(RULE_LIMIT_JIT_STACK), "jit_stack");
	assert_string_equal(rule_limit_name(RULE_LIMIT_NONE), "");
	assert_string_equal(rule_limit_name((enum rule_limit)99), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_value_good),
	    cmocka_unit_test(test_value_bad),
	    cmocka_unit_test_setup_teardown(test_timestamp_offset, save_tz, restore_tz),
	    cmocka_unit_test_setup_teardown(test_timestamp_local, save_tz, restore_tz),
	    cmocka_unit_test_setup_teardown(test_timestamp_zone_name, save_tz, restore_tz),
	    cmocka_unit_test_setup_teardown(test_timestamp_no_year, save_tz, restore_tz),
	    cmocka_unit_test_setup_teardown(test_timestamp_epoch, save_tz, restore_tz),
	    cmocka_unit_test(test_apache_real_lines),
	    cmocka_unit_test(test_apply_basics),
	    cmocka_unit_test(test_bad_utf8),
	    cmocka_unit_test(test_customer_limits),
	    cmocka_unit_test(test_customer_map),
	    cmocka_unit_test(test_set_errors),
	    cmocka_unit_test(test_timestamp_repeat),
	    cmocka_unit_test(test_duplicate_names),
	    cmocka_unit_test(test_limits),
	};

	/* Timestamps with %z must not depend on the machine's zone; the others set TZ. */
	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
