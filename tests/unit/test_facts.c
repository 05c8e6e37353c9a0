/* Unit tests of report/: the facts of a real spool (made through the fixture) written as text,
 * JSON (parsed back with jansson) and Prometheus metrics: the same numbers in all three, label
 * values escaped, paths that are not UTF-8, at most metrics_max_files files with series of their
 * own while the per-source sums count every file, and the health with dead letters since a time.
 * Also store/report.c's queries, whose expected values come from the events the test commits. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fixture.h"
#include "report/facts.h"
#include "store/report.h"

#define NOW 1800000000LL

/* Three records of source web (one gone) and one of api; events of rules r1 and r2:
 * file a: 5 r1 events (2 delivered, 1 dead, 2 pending), file b: 3 r2 events (pending). */
struct world {
	struct fixture *fx;
	struct spool_file a, b, c, d;
};

static void commit(struct world *w, struct spool_file *f, const char *rule, int n, int64_t ts0)
{
	struct event ev[8];
	char err[512] = "";

	for (int i = 0; i < n; i++) {
		fixture_event(&ev[i], f->id, (int64_t)i * 100);
		snprintf(ev[i].rule, sizeof(ev[i].rule), "%s", rule);
		snprintf(ev[i].identifier, sizeof(ev[i].identifier), "lm1-%s-%lld-%d", rule,
		         (long long)f->id, i);
		ev[i].timestamp = ts0 + i;
	}
	f->offset = n * 100;
	f->counters.lines = n + 2;
	f->counters.matched = n;
	f->counters.unmatched = 2;
	f->counters.events = n;
	if (fixture_commit(w->fx->sp, f, ev, (size_t)n, err, sizeof(err)) != 0)
		fail_msg("fixture_commit: %s", err);
}

static void mark(struct world *w, int64_t id, enum event_state st, int64_t when)
{
	struct spool_mark m = {.id = id,
	                       .state = st,
	                       .attempts = 1,
	                       .when = when,
	                       .error = st == EVENT_DEAD ? "No active meter found" : NULL};
	char err[512] = "";

	if (spool_mark(w->fx->sp, &m, 1, err, sizeof(err)) != 0)
		fail_msg("spool_mark: %s", err);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	char err[512] = "";

	w->fx = fixture_new("test_facts");
	fixture_config(w->fx, "[source web]\npath = /x/*.log\n[source api]\npath = /y/*.log\n");
	fixture_file_add(w->fx, "web", 11, &w->a);
	/* A label value with a quote, a backslash and a newline; a path that is not UTF-8. */
	snprintf(w->a.path, sizeof(w->a.path), "/logs/a\"b\\c\nd.log");
	fixture_file_add(w->fx, "web", 12, &w->b);
	snprintf(w->b.path, sizeof(w->b.path), "/logs/\xff\xfe.log");
	fixture_file_add(w->fx, "web", 13, &w->c);
	w->c.state = SPOOL_FILE_GONE;
	w->c.counters.lines = 7;
	w->c.counters.unmatched = 7;
	if (spool_file_update(w->fx->sp, &w->c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	fixture_file_add(w->fx, "api", 14, &w->d);
	commit(w, &w->a, "r1", 5, NOW - 1000);
	commit(w, &w->b, "r2", 3, NOW - 5000);
	/* The events' ids are 1..5 (file a) and 6..8 (file b). */
	mark(w, 1, EVENT_DELIVERED, NOW - 100);
	mark(w, 2, EVENT_DELIVERED, NOW - 100);
	mark(w, 3, EVENT_DEAD, NOW - 50);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	fixture_free(w->fx);
	free(w);
	return 0;
}

static char *print(const struct facts *f, int how, size_t max_files)
{
	char *buf = NULL, err[256] = "";
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);

	assert_non_null(mem);
	if (how == 0)
		facts_print_text(mem, f);
	else if (how == 1)
		assert_int_equal(facts_print_json(mem, f, err, sizeof(err)), 0);
	else
		assert_int_equal(facts_print_metrics(mem, f, max_files), 0);
	fclose(mem);
	return buf;
}

/* spool_events_between's callback: counts the events, checks they are file `ud`'s of rule r1,
 * and stops (-1) when *ud is negative. */
static int between_cb(const char *rule, const char *customer_key, const char *value,
                      int64_t timestamp, int64_t file_id, void *ud)
{
	int64_t *want = ud;

	(void)customer_key;
	(void)value;
	if (*want < 0)
		return -1;
	assert_string_equal(rule, "r1");
	assert_int_equal(file_id, *want);
	assert_in_range(timestamp, NOW - 1000, NOW - 998);
	want[1]++;
	return 0;
}

static void test_queries(void **state)
{
	struct world *w = *state;
	int64_t v = -1;
	char err[256] = "";

	assert_int_equal(spool_oldest_pending(w->fx->sp, &v, err, sizeof(err)), 0);
	assert_int_equal(v, NOW - 5000); /* file b's first event */
	assert_int_equal(spool_dead_since(w->fx->sp, NOW - 60, &v, err, sizeof(err)), 0);
	assert_int_equal(v, 1);
	assert_int_equal(spool_dead_since(w->fx->sp, NOW - 10, &v, err, sizeof(err)), 0);
	assert_int_equal(v, 0);
	assert_int_equal(spool_file_events(w->fx->sp, w->a.id, &v, err, sizeof(err)), 0);
	assert_int_equal(v, 5);
	assert_int_equal(spool_file_events(w->fx->sp, w->d.id, &v, err, sizeof(err)), 0);
	assert_int_equal(v, 0);
	{
		int64_t want[2] = {w->a.id, 0}; /* file a's events are at NOW - 1000 .. - 996 */

		assert_int_equal(spool_events_between(w->fx->sp, NOW - 1000, NOW - 998, between_cb,
		                                      want, err, sizeof(err)),
		                 0);
		assert_int_equal(want[1], 3);
		want[0] = -1;
		assert_int_equal(spool_events_between(w->fx->sp, NOW - 1000, NOW - 998, between_cb,
		                                      want, err, sizeof(err)),
		                 -1);
	}
}

static void test_health(void **state)
{
	struct world *w = *state;
	char err[512] = "", *text;
	struct facts *f;

	f = facts_new(w->fx->cfg, w->fx->sp, NOW, FACTS_NO_SINCE, err, sizeof(err));
	assert_non_null(f);
	/* No agent's live state here, and events pending: the one problem. */
	assert_int_equal(f->degraded, 1);
	assert_int_equal(f->n_problems, 1);
	text = print(f, 0, 0);
	if (strstr(text, "\nhealth: degraded: no agent is running, and ") == NULL ||
	    strstr(text, " and 5 events wait to be delivered: nothing is billed until one "
	                 "runs\n") == NULL)
		fail_msg("%s", text);
	assert_non_null(strstr(text, "events: pending 5, delivered 2, dead letters 1, unsure 0\n"));
	free(text);
	facts_free(f);
	/* Dead letters since a minute ago: degraded; since after the dead letter: healthy. */
	f = facts_new(w->fx->cfg, w->fx->sp, NOW, NOW - 60, err, sizeof(err));
	assert_int_equal(f->degraded, 1);
	assert_int_equal(f->dead_since, 1);
	text = print(f, 0, 0);
	assert_non_null(strstr(text, "\nhealth: degraded: 1 dead letters since "));
	free(text);
	facts_free(f);
	f = facts_new(w->fx->cfg, w->fx->sp, NOW, NOW - 10, err, sizeof(err));
	assert_int_equal(f->n_problems, 1); /* no agent, as above; no dead letters */
	assert_null(strstr(f->problems[0], "dead letters"));
	facts_free(f);
}

static void test_json(void **state)
{
	struct world *w = *state;
	char err[512] = "", *text;
	struct facts *f = facts_new(w->fx->cfg, w->fx->sp, NOW, FACTS_NO_SINCE, err, sizeof(err));
	json_error_t jerr;
	json_t *doc, *files, *rules;

	assert_non_null(f);
	text = print(f, 1, 0);
	doc = json_loads(text, 0, &jerr);
	if (doc == NULL)
		fail_msg("not JSON: %s: %s", jerr.text, text);
	assert_int_equal(json_integer_value(json_object_get(doc, "schema_version")), 1);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(doc, "events"), "pending")), 5);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "events"),
	                                                    "oldest_pending_age_seconds")),
	                 5000);
	rules = json_object_get(json_object_get(doc, "events"), "by_rule");
	assert_int_equal(json_array_size(rules), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rules, 0), "rule")),
	                    "r1");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(rules, 0), "delivered")),
	                 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(rules, 1), "pending")),
	                 3);
	files = json_object_get(doc, "files");
	assert_int_equal(json_array_size(files), 4);
	/* Ordered by source: api first. The path that is not UTF-8 comes with its bytes outside
	 * ASCII as \xHH. */
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 2), "path")),
	                    "/logs/\\xff\\xfe.log");
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 1), "path")),
	                    "/logs/a\"b\\c\nd.log");
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 3), "state")),
	                    "gone");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(doc, "health"), "status")),
	    "degraded"); /* no agent, events pending */
	json_decref(doc);
	free(text);
	facts_free(f);
}

/* The value of the sample line that starts with `head` ("name{labels} "), or -1. */
static long long sample(const char *text, const char *head)
{
	const char *p = text;

	while ((p = strstr(p, head)) != NULL) {
		if (p == text || p[-1] == '\n')
			return strtoll(p + strlen(head), NULL, 10);
		p++;
	}
	return -1;
}

static int count_lines(const char *text, const char *prefix)
{
	int n = 0;

	for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
		n += strncmp(p, prefix, strlen(prefix)) == 0;
	return n;
}

static void test_metrics(void **state)
{
	struct world *w = *state;
	char err[512] = "", *text;
	struct facts *f = facts_new(w->fx->cfg, w->fx->sp, NOW, FACTS_NO_SINCE, err, sizeof(err));

	assert_non_null(f);
	/* One file with series of its own: the first of source api (by source, then record). */
	text = print(f, 2, 1);
	assert_int_equal(count_lines(text, "logmeter_file_lag_bytes{"), 1);
	assert_int_equal(count_lines(text, "logmeter_lines_total{"),
	                 6); /* by result, bad_utf8 and torn too */
	assert_true(sample(text, "logmeter_file_lag_bytes{source=\"api\",") >= 0);
	/* The sums count every file, the gone one too: 5 + 3 matched; 2 + 2 + 7 unmatched. */
	assert_int_equal(
	    sample(text, "logmeter_source_lines_total{source=\"web\",result=\"matched\"} "), 8);
	assert_int_equal(
	    sample(text, "logmeter_source_lines_total{source=\"web\",result=\"unmatched\"} "), 11);
	assert_int_equal(sample(text, "logmeter_files{source=\"web\",state=\"gone\"} "), 1);
	assert_int_equal(sample(text, "logmeter_pending_events "), 5);
	assert_int_equal(sample(text, "logmeter_dead_events "), 1);
	assert_int_equal(sample(text, "logmeter_spool_events{rule=\"r1\",state=\"delivered\"} "),
	                 2);
	assert_int_equal(sample(text, "logmeter_spool_events{rule=\"r2\",state=\"pending\"} "), 3);
	assert_int_equal(sample(text, "logmeter_oldest_pending_seconds "), 5000);
	free(text);
	/* Every file being read: escaped label values, bytes outside UTF-8 as \xHH (the backslash
	 * escaped in turn). */
	text = print(f, 2, 100);
	assert_int_equal(count_lines(text, "logmeter_file_lag_bytes{"), 3);
	assert_non_null(strstr(text, "file=\"/logs/a\\\"b\\\\c\\nd.log\""));
	assert_non_null(strstr(text, "file=\"/logs/\\\\xff\\\\xfe.log\""));
	free(text);
	text = print(f, 2, 0);
	assert_int_equal(count_lines(text, "logmeter_file_lag_bytes{"), 0);
	free(text);
	facts_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_queries, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_health, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
