/* Unit tests of path: the few path manipulations, one way each. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/path.h"

static void test_normalize(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"/", "/"},
	    {"//", "/"},
	    {"/var/lib/logmeter", "/var/lib/logmeter"},
	    {"/var//lib/./logmeter/", "/var/lib/logmeter"},
	    {"/var/lib/../lib/logmeter", "/var/lib/logmeter"},
	    {"/etc/logmeter/../../var/x", "/var/x"},
	    {"/..", "/"},
	    {"/../../a", "/a"},
	    {"/a/b/..", "/a"},
	    {"/a/.", "/a"},
	    {"/a/...", "/a/..."},
	};
	char out[PATH_MAX], small[4];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(path_normalize(cases[i].in, out, sizeof(out)), 0);
		if (strcmp(out, cases[i].out) != 0)
			fail_msg("%s: got %s, want %s", cases[i].in, out, cases[i].out);
	}
	assert_int_equal(path_normalize("/abcd", small, sizeof(small)), -1);
	assert_int_equal(path_normalize("/ab", small, sizeof(small)), 0);
	assert_string_equal(small, "/ab");
	assert_int_equal(path_normalize("/", small, 1), -1);
}

static void test_dir_base_join(void **state)
{
	char *s;

	(void)state;
	s = path_dir("/etc/logmeter/logmeter.conf");
	assert_string_equal(s, "/etc/logmeter");
	free(s);
	s = path_dir("/logmeter.conf");
	assert_string_equal(s, "/");
	free(s);
	s = path_dir("logmeter.conf");
	assert_string_equal(s, "");
	free(s);
	assert_string_equal(path_base("/etc/logmeter/x.conf"), "x.conf");
	assert_string_equal(path_base("x.conf"), "x.conf");
	s = path_join("/etc/logmeter", "customers.csv");
	assert_string_equal(s, "/etc/logmeter/customers.csv");
	free(s);
	s = path_join("/etc/logmeter/", "/abs");
	assert_string_equal(s, "/abs");
	free(s);
	s = path_join("", "rel");
	assert_string_equal(s, "rel");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_normalize),
	    cmocka_unit_test(test_dir_base_join),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
