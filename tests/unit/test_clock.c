/* Unit tests of clock.c: the steady wall clock never goes back. A wall clock set back is
 * simulated by an earlier reading that lies ahead of time(2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "util/clock.h"

static void test_follows_the_wall_clock(void **state)
{
	struct clock_steady c = {0};
	int64_t before = (int64_t)time(NULL), got = clock_steady_wall_s(&c);

	(void)state;
	assert_true(got >= before);
	assert_true(got <= (int64_t)time(NULL));
	assert_int_equal(c.wall_s, got);
}

static void test_a_step_back_is_not_seen(void **state)
{
	/* The last reading was an hour ahead of the wall clock now: as after `date -s` an hour
	 * back. */
	struct clock_steady c = {.wall_s = (int64_t)time(NULL) + 3600, .mono_ms = clock_mono_ms()};
	int64_t first = clock_steady_wall_s(&c), second;

	(void)state;
	assert_true(first >= c.wall_s);
	assert_true(first - (int64_t)time(NULL) >= 3599);
	/* The anchor stays: the monotonic clock carries it forward, it is not reset to time(2). */
	second = clock_steady_wall_s(&c);
	assert_true(second >= first);
	assert_true(second - (int64_t)time(NULL) >= 3599);
}

static void test_a_step_forward_is_taken(void **state)
{
	/* An anchor behind the wall clock (the clock was set forward): time(2) wins at once. */
	struct clock_steady c = {.wall_s = (int64_t)time(NULL) - 3600, .mono_ms = clock_mono_ms()};
	int64_t got = clock_steady_wall_s(&c);

	(void)state;
	assert_true(got >= (int64_t)time(NULL) - 1);
	assert_true(got <= (int64_t)time(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_follows_the_wall_clock),
	    cmocka_unit_test(test_a_step_back_is_not_seen),
	    cmocka_unit_test(test_a_step_forward_is_taken),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
