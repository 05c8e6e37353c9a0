/* Unit tests for admin: --since parsing, state names, and the JSON export of a real spool in the
 * fixture's directory, read back with jansson. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/admin.h"
#include "store/spool.h"

#include "fixture.h"

static void test_parse_time(void **state)
{
	const int64_t now = 1795000000; /* 2026-11-18T05:46:40Z */
	int64_t t = -1;

	(void)state;
	assert_int_equal(admin_parse_time("24h", now, &t), 0);
	assert_int_equal(t, now - 86400);
	assert_int_equal(admin_parse_time("7d", now, &t), 0);
	assert_int_equal(t, now - 7 * 86400);
	assert_int_equal(admin_parse_time("90s", now, &t), 0);
	assert_int_equal(t, now - 90);
	assert_int_equal(admin_parse_time("30m", now, &t), 0);
	assert_int_equal(t, now - 1800);
	assert_int_equal(admin_parse_time("2w", now, &t), 0);
	assert_int_equal(t, now - 14 * 86400);
	/* date -u -d 2026-11-29T12:00:00Z +%s */
	assert_int_equal(admin_parse_time("2026-11-29T12:00:00Z", now, &t), 0);
	assert_int_equal(t, 1795953600);
	assert_int_equal(admin_parse_time("2026-11-29 12:00:00", now, &t), 0);
	assert_int_equal(t, 1795953600);
	assert_int_equal(admin_parse_time("2026-11-29T12:00:00.123456Z", now, &t), 0);
	assert_int_equal(t, 1795953600);
	assert_int_equal(admin_parse_time("2026-11-29T13:30:00+01:30", now, &t), 0);
	assert_int_equal(t, 1795953600);
	assert_int_equal(admin_parse_time("2026-11-29T07:00:00-0500", now, &t), 0);
	assert_int_equal(t, 1795953600);
	assert_int_equal(admin_parse_time("2026-11-29T12:00Z", now, &t), 0);
	assert_int_equal(t, 1795953600);
	assert_int_equal(admin_parse_time("2026-11-29", now, &t), 0);
	assert_int_equal(t, 1795953600 - 12 * 3600);
	assert_int_equal(admin_parse_time("@1700000000", now, &t), 0);
	assert_int_equal(t, 1700000000);

	static const char *const bad[] = {"",
	                                  "yesterday",
	                                  "24",
	                                  "24x",
	                                  "h",
	                                  "2026-13-01",
	                                  "2026-02-30",
	                                  "2026-11-29T25:00:00Z",
	                                  "2026-11-29T12:00:00+25:00",
	                                  "2026-11-29T12",
	                                  "2026-11-29Z",
	                                  "@",
	                                  "@-5",
	                                  "@12x",
	                                  "2026-11-29T12:00:00Zjunk",
	                                  "-5h"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (admin_parse_time(bad[i], now, &t) == 0)
			fail_msg("'%s' was accepted as %lld", bad[i], (long long)t);
	}
	assert_int_equal(admin_parse_time(NULL, now, &t), -1);
}

static void test_state_parse(void **state)
{
	(void)state;
	assert_int_equal(admin_state_parse("pending"), EVENT_PENDING);
	assert_int_equal(admin_state_parse("delivered"), EVENT_DELIVERED);
	assert_int_equal(admin_state_parse("dead"), EVENT_DEAD);
	assert_int_equal(admin_state_parse("Dead"), -1);
	assert_int_equal(admin_state_parse(NULL), -1);
}

static void test_export(void **state)
{
	struct fixture *fx = *state;
	char err[512] = "", *buf = NULL;
	const struct config *cfg = fixture_config(fx, "; the defaults\n");
	struct spool *sp = fixture_spool(fx);
	struct spool_file f;
	struct event ev[2];
	struct spool_mark m;
	size_t len = 0;
	FILE *out;
	json_t *o, *p;
	json_error_t jerr;
	char *nl;

	memset(&f, 0, sizeof(f));
	snprintf(f.source, sizeof(f.source), "web");
	snprintf(f.path, sizeof(f.path), "/var/log/caf\xc3\xa9.log");
	f.dev = 1;
	f.ino = 2;
	assert_int_equal(spool_file_add(sp, &f, err, sizeof(err)), 0);
	memset(ev, 0, sizeof(ev));
	for (int i = 0; i < 2; i++) {
		ev[i].file_id = f.id;
		ev[i].line_offset = 100 * i;
		snprintf(ev[i].rule, sizeof(ev[i].rule), "bytes");
		snprintf(ev[i].event_name, sizeof(ev[i].event_name), "bandwidth_bytes");
		snprintf(ev[i].payload_customer_key, sizeof(ev[i].payload_customer_key), "cust");
		snprintf(ev[i].payload_value_key, sizeof(ev[i].payload_value_key), "bytes");
		snprintf(ev[i].value, sizeof(ev[i].value), "%d", 10 + i);
		ev[i].timestamp = 1795000000 + i;
	}
	/* A mapped event, and a dead letter whose key is not UTF-8. */
	snprintf(ev[0].customer_key, sizeof(ev[0].customer_key), "10.0.0.1");
	snprintf(ev[0].customer, sizeof(ev[0].customer), "cus_A");
	snprintf(ev[1].customer_key, sizeof(ev[1].customer_key),
	         "ab\xff\xfe"
	         "c\xe2\x82");
	ev[1].state = EVENT_DEAD;
	snprintf(ev[1].last_error, sizeof(ev[1].last_error), "customer key not in customer map");
	assert_int_equal(fixture_commit(sp, &f, ev, 2, err, sizeof(err)), 0);
	m = (struct spool_mark){
	    .id = ev[0].id, .state = EVENT_DELIVERED, .attempts = 1, .when = 77};
	assert_int_equal(spool_mark(sp, &m, 1, err, sizeof(err)), 0);
	/* Exported by its own read-only handle, as `logmeter spool export` does. */
	spool_free(sp);
	fx->sp = NULL;

	out = open_memstream(&buf, &len);
	assert_non_null(out);
	assert_int_equal(admin_export(cfg, -1, out, err, sizeof(err)), 0);
	fclose(out);
	/* Two lines: the delivered one, then the dead letter. */
	nl = strchr(buf, '\n');
	assert_non_null(nl);
	*nl = '\0';
	o = json_loads(buf, 0, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "delivered");
	/* Computed from where its line is (test_event checks the layout against Python's). */
	{
		char id[EVENT_IDENTIFIER_MAX];

		assert_int_equal(event_identifier(id, FIXTURE_INSTANCE, "web", f.uid, 0, "bytes"),
		                 0);
		assert_string_equal(json_string_value(json_object_get(o, "identifier")), id);
	}
	p = json_object_get(o, "payload");
	assert_string_equal(json_string_value(json_object_get(p, "cust")), "cus_A");
	assert_string_equal(json_string_value(json_object_get(p, "bytes")), "10");
	assert_int_equal(json_integer_value(json_object_get(o, "delivered_at")), 77);
	assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 1);
	assert_true(json_is_null(json_object_get(o, "last_error")));
	assert_string_equal(json_string_value(json_object_get(o, "file")),
	                    "/var/log/caf\xc3\xa9.log");
	assert_int_equal(json_integer_value(json_object_get(o, "line_offset")), 0);
	json_decref(o);
	o = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "dead");
	assert_string_equal(json_string_value(json_object_get(o, "customer_key")),
	                    "ab\xef\xbf\xbd\xef\xbf\xbd"
	                    "c\xef\xbf\xbd\xef\xbf\xbd");
	assert_true(json_is_null(json_object_get(o, "delivered_at")));
	assert_string_equal(json_string_value(json_object_get(o, "last_error")),
	                    "customer key not in customer map");
	json_decref(o);
	free(buf);

	/* --state dead: one line. */
	buf = NULL;
	out = open_memstream(&buf, &len);
	assert_int_equal(admin_export(cfg, EVENT_DEAD, out, err, sizeof(err)), 0);
	fclose(out);
	assert_non_null(strstr(buf, "\"dead\""));
	assert_null(strstr(buf, "\"delivered\""));
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_time),
	    cmocka_unit_test(test_state_parse),
	    cmocka_unit_test_setup_teardown(test_export, fixture_setup, fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
