/* Unit tests of account.c: which rules the agent holds, unsent, because Stripe would take their
 * events without billing them (docs/stripe-contract.md section 13), and which Stripe refuses at
 * once (v1: dead letters). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "send/account.h"

struct lines {
	int errors;
	char last[1024];
};

static void collect(enum account_level level, const char *text, void *ud)
{
	struct lines *l = ud;

	l->errors += level == ACCOUNT_ERROR;
	snprintf(l->last, sizeof(l->last), "%s", text);
}

static struct config_rule rule(char *event_name, char *value, int64_t aggregate_s)
{
	struct config_rule r;

	memset(&r, 0, sizeof(r));
	r.name = "r";
	r.event_name = event_name;
	r.value = value;
	r.payload_customer_key = "stripe_customer_id";
	r.payload_value_key = "value";
	r.aggregate_s = aggregate_s;
	return r;
}

static const struct stripe_meter meters[] = {
    {.id = "m1", .event_name = "bytes", .formula = "sum", .status = "active"},
    {.id = "m2", .event_name = "hits", .formula = "count", .status = "active"},
    {.id = "m3", .event_name = "old", .formula = "sum", .status = "inactive"},
    {.id = "m4",
     .event_name = "keyed",
     .customer_key = "customer",
     .formula = "sum",
     .status = "active"},
};
#define N_METERS (sizeof(meters) / sizeof(meters[0]))

/* One row: the rule, the API, whether it is held, how many errors. */
static void check(const char *event_name, const char *value, int64_t aggregate_s, int v2, int held,
                  int errors, const char *words)
{
	struct config_rule r =
	    rule((char *)(uintptr_t)event_name, (char *)(uintptr_t)value, aggregate_s);
	struct lines l = {0, ""};
	int hold = -1;

	assert_int_equal(account_check_rule(&r, v2, meters, N_METERS, collect, &l, &hold), errors);
	assert_int_equal(hold, held);
	assert_int_equal(l.errors, errors);
	if (words != NULL && strstr(l.last, words) == NULL)
		fail_msg("\"%s\" lacks \"%s\"", l.last, words);
}

static void test_hold(void **state)
{
	(void)state;
	/* Billed. */
	check("bytes", "bytes", 0, 0, 0, 0, NULL);
	check("bytes", "bytes", 60, 1, 0, 0, NULL);
	check("hits", "1", 0, 1, 0, 0, NULL);
	/* No active meter: v1 refuses at once ("No active meter found": dead letters), the v2
	 * stream takes them and bills nothing. */
	check("nosuch", "1", 0, 0, 0, 1, "become dead letters");
	check("nosuch", "1", 0, 1, 1, 1, "holds them");
	check("old", "1", 0, 0, 0, 1, "become dead letters");
	check("old", "1", 0, 1, 1, 1, "holds them");
	/* Taken and not billed with either API: held. */
	check("keyed", "1", 0, 0, 1, 1, "holds its events");
	check("hits", "1", 60, 0, 1, 1, "holds its events");
	check("hits", "1", 60, 1, 1, 1, "counts each window");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hold),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
