#include "send/account.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void report(account_report_cb cb, void *ud, enum account_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(account_report_cb cb, void *ud, enum account_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cb(level, text, ud);
}

/* The active meter of `event_name`, else an inactive one, else NULL (Stripe has one meter per
 * event name). */
static const struct stripe_meter *meter_for(const struct stripe_meter *m, size_t n,
                                            const char *event_name)
{
	const struct stripe_meter *inactive = NULL;

	for (size_t i = 0; i < n; i++) {
		if (strcmp(m[i].event_name, event_name) != 0)
			continue;
		if (strcmp(m[i].status, "active") == 0)
			return &m[i];
		inactive = &m[i];
	}
	return inactive;
}

static int check_rule(const struct config_rule *r, const struct stripe_meter *meters, size_t n,
                      account_report_cb cb, void *ud)
{
	const struct stripe_meter *m = meter_for(meters, n, r->event_name);
	const char *ckey, *vkey;
	int errors = 0;

	if (m == NULL) {
		report(cb, ud, ACCOUNT_ERROR,
		       "rule %s: the account has no meter with event_name %s: Stripe refuses its "
		       "events (No active meter found) and they become dead letters",
		       r->name, r->event_name);
		return 1;
	}
	if (strcmp(m->status, "active") != 0) {
		report(
		    cb, ud, ACCOUNT_ERROR,
		    "rule %s: meter %s (event_name %s) is %s: Stripe refuses its events and they "
		    "become dead letters until it is reactivated",
		    r->name, m->id, r->event_name, m->status[0] ? m->status : "not active");
		return 1;
	}
	/* Stripe's defaults where the answer leaves them out (docs.stripe.com/api/billing/meter).
	 */
	ckey = m->customer_key[0] != '\0' ? m->customer_key : "stripe_customer_id";
	vkey = m->value_key[0] != '\0' ? m->value_key : "value";
	if (strcmp(ckey, r->payload_customer_key) != 0) {
		report(
		    cb, ud, ACCOUNT_ERROR,
		    "rule %s: meter %s reads the customer from payload key %s, the rule sends it "
		    "as %s (payload_customer_key): Stripe takes the events but bills them to no "
		    "customer",
		    r->name, m->id, ckey, r->payload_customer_key);
		errors++;
	}
	/* A count meter reads no value. */
	if (strcmp(m->formula, "count") != 0 && strcmp(vkey, r->payload_value_key) != 0) {
		report(
		    cb, ud, ACCOUNT_ERROR,
		    "rule %s: meter %s reads the value from payload key %s, the rule sends it as "
		    "%s (payload_value_key): Stripe takes the events but cannot bill their values",
		    r->name, m->id, vkey, r->payload_value_key);
		errors++;
	}
	if (errors > 0)
		return errors;
	if (r->aggregate_s > 0 && strcmp(m->formula, "sum") != 0) {
		/* One meter event per window: a count meter counts it once, whatever the window
		 * holds ("count: Count the number of events", docs.stripe.com/api/billing/meter/
		 * create); a last meter keeps one window's total of a period. */
		report(
		    cb, ud, ACCOUNT_ERROR,
		    "rule %s: aggregate = %llds sends one meter event per window with the sum of "
		    "its values, but meter %s (event_name %s) has formula %s, which %s: use a "
		    "meter that sums (with value = 1 a window's total is its count of lines), or "
		    "no aggregate",
		    r->name, (long long)r->aggregate_s, m->id, r->event_name,
		    m->formula[0] ? m->formula : "none",
		    strcmp(m->formula, "count") == 0
		        ? "counts each window's meter event as 1 however many lines it sums"
		        : "does not add the windows' totals up");
		return 1;
	}
	if (strcmp(m->formula, "sum") == 0) {
		report(cb, ud, ACCOUNT_OK,
		       "rule %s: meter %s (event_name %s) is active and sums the values the rule "
		       "sends (value = %s%s)",
		       r->name, m->id, r->event_name, r->value,
		       r->aggregate_s > 0 ? ", summed per customer per window first" : "");
	} else if (strcmp(m->formula, "count") == 0) {
		if (strcmp(r->value, "1") == 0)
			report(cb, ud, ACCOUNT_OK,
			       "rule %s: meter %s (event_name %s) is active and counts the rule's "
			       "events",
			       r->name, m->id, r->event_name);
		else
			report(
			    cb, ud, ACCOUNT_WARN,
			    "rule %s: meter %s (event_name %s) counts events (formula count): the "
			    "rule's values (value = %s) are not billed, only how many events there "
			    "are; use value = 1, or a meter that sums",
			    r->name, m->id, r->event_name, r->value);
	} else if (strcmp(m->formula, "last") == 0) {
		report(cb, ud, ACCOUNT_WARN,
		       "rule %s: meter %s (event_name %s) keeps only the last value of each period "
		       "(formula last): logmeter sends one event per line, so every value but the "
		       "last one of a period is lost for billing; use a meter that sums unless the "
		       "lines report a running total",
		       r->name, m->id, r->event_name);
	} else {
		report(
		    cb, ud, ACCOUNT_WARN,
		    "rule %s: meter %s (event_name %s) has a formula logmeter does not know (%s)",
		    r->name, m->id, r->event_name, m->formula[0] ? m->formula : "none");
	}
	return 0;
}

int account_check_rules(const struct config *cfg, const struct stripe_meter *meters, size_t n,
                        account_report_cb cb, void *ud)
{
	int errors = 0;

	for (size_t i = 0; i < cfg->n_rules; i++)
		errors += check_rule(&cfg->rules[i], meters, n, cb, ud);
	return errors;
}
