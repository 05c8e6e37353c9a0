/* Unit tests of log.c: the journal's priority prefixes when $JOURNAL_STREAM names standard
 * error's device and inode (systemd.exec(5)), none when it names another file, and the JSON
 * form (parsed back with jansson), with text that is not UTF-8. Standard error goes to a file of
 * the fixture's directory for each test. */
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "util/log.h"

static int saved_stderr = -1;

/* Points standard error at a new file DIR/NAME; returns its path. */
static const char *capture(struct fixture *fx, const char *name)
{
	const char *path = fixture_path(fx, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	if (saved_stderr < 0)
		saved_stderr = dup(STDERR_FILENO);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
	return path;
}

/* Gives standard error back and returns what was written to `path` (static buffer). */
static const char *captured(const char *path)
{
	static char buf[8192];
	FILE *f;
	size_t n;

	fflush(stderr);
	assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void journal_stream_of(const char *path)
{
	struct stat st;
	char v[64];

	assert_int_equal(stat(path, &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
}

static void test_journal_prefixes(void **state)
{
	struct fixture *fx = *state;
	const char *path = capture(fx, "journal.log");

	journal_stream_of(path);
	log_set_level(LOG_LVL_DEBUG);
	log_setup(LOG_FORMAT_TEXT);
	assert_int_equal(log_to_journal(), 1);
	log_err("e %d", 1);
	log_warn("w");
	log_info("i");
	log_debug("d");
	log_plain(LOG_LVL_ERR, "conf:1: one\nconf:2: two");
	assert_string_equal(captured(path), "<3>logmeter: error: e 1\n"
	                                    "<4>logmeter: warning: w\n"
	                                    "<6>logmeter: info: i\n"
	                                    "<7>logmeter: debug: d\n"
	                                    "<3>conf:1: one\n<3>conf:2: two\n");
	unsetenv("JOURNAL_STREAM");
	log_setup(LOG_FORMAT_TEXT);
	log_set_level(LOG_LVL_INFO);
}

/* A JOURNAL_STREAM inherited by a process whose stderr is elsewhere, or malformed: no prefix. */
static void test_not_the_journal(void **state)
{
	struct fixture *fx = *state;
	const char *other = fixture_path(fx, "other");
	const char *path;

	fixture_write_text(other, "x");
	path = capture(fx, "plain.log");
	journal_stream_of(other);
	log_setup(LOG_FORMAT_TEXT);
	assert_int_equal(log_to_journal(), 0);
	log_warn("w");
	setenv("JOURNAL_STREAM", "12:", 1);
	log_setup(LOG_FORMAT_TEXT);
	assert_int_equal(log_to_journal(), 0);
	log_plain(LOG_LVL_ERR, "conf:1: one");
	assert_string_equal(captured(path), "logmeter: warning: w\nconf:1: one\n");
	unsetenv("JOURNAL_STREAM");
	log_setup(LOG_FORMAT_TEXT);
}

static void test_json(void **state)
{
	struct fixture *fx = *state;
	const char *path = capture(fx, "json.log"), *text;
	json_error_t jerr;
	json_t *o;
	char *nl;

	log_setup(LOG_FORMAT_JSON);
	log_warn("a \"quoted\" %s\tand \xff\xfe bytes", "word");
	log_setup(LOG_FORMAT_TEXT);
	text = captured(path);
	nl = strchr(text, '\n');
	assert_non_null(nl);
	assert_string_equal(nl + 1, ""); /* one line */
	o = json_loadb(text, (size_t)(nl - text), 0, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "level")), "warning");
	assert_string_equal(json_string_value(json_object_get(o, "message")),
	                    "a \"quoted\" word\tand ?? bytes");
	assert_int_equal(json_integer_value(json_object_get(o, "pid")), (json_int_t)getpid());
	assert_int_equal(strlen(json_string_value(json_object_get(o, "time"))),
	                 strlen("2025-01-31T10:00:00.000Z"));
	assert_int_equal(json_object_size(o), 4);
	json_decref(o);
}

/* log_escape: control characters become escapes, other bytes stay; the output is cut at a
 * whole escape and always terminated. */
static void test_escape(void **state)
{
	char out[64];

	(void)state;
	assert_string_equal(log_escape(out, sizeof(out), "a\nb\rc\td\x1b[2J\x7f\\caf\xc3\xa9"),
	                    "a\\nb\\rc\\td\\x1b[2J\\x7f\\caf\xc3\xa9");
	assert_string_equal(log_escape(out, 6, "ab\ncd"), "ab\\nc");
	assert_string_equal(log_escape(out, 5, "abc\x01"), "abc");
	assert_string_equal(log_escape(out, sizeof(out), NULL), "");
}

static void test_parse(void **state)
{
	enum log_format f = LOG_FORMAT_TEXT;
	enum log_level l = LOG_LVL_INFO;

	(void)state;
	assert_int_equal(log_format_parse("json", &f), 0);
	assert_int_equal(f, LOG_FORMAT_JSON);
	assert_int_equal(log_format_parse("text", &f), 0);
	assert_int_equal(f, LOG_FORMAT_TEXT);
	assert_int_equal(log_format_parse("xml", &f), -1);
	assert_int_equal(log_level_parse("warning", &l), 0);
	assert_int_equal(l, LOG_LVL_WARN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_journal_prefixes, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_not_the_journal, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_json, fixture_setup, fixture_teardown),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
