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

/* What the agent does with the events of a rule Stripe would take without billing them. */
#define HELD_TEXT "; the agent holds its events, unsent, until then"

int account_check_rule(const struct config_rule *r, int v2, const struct stripe_meter *meters,
                       size_t n, account_report_cb cb, void *ud, int *hold)
{
	const struct stripe_meter *m = meter_for(meters, n, r->event_name);
	const char *ckey, *vkey;
	int errors = 0;

	*hold = 0;
	if (m == NULL || strcmp(m->status, "active") != 0) {
		char what[256];

		if (m == NULL)
			snprintf(what, sizeof(what), "the account has no meter with event_name %s",
			         r->event_name);
		else
			snprintf(what, sizeof(what), "meter %s (event_name %s) is %s", m->id,
			         r->event_name, m->status[0] ? m->status : "not active");
		/* v1 refuses such an event at once ("No active meter found"): a dead letter,
		 * replayable. The v2 stream takes it and Stripe bills nothing, telling only an
		 * error report (docs/stripe-contract.md sections 7 and 14): held instead. */
		*hold = v2;
		if (v2)
			report(cb, ud, ACCOUNT_ERROR,
			       "rule %s: %s: Stripe's meter event stream would take its events and "
			       "bill nothing (an asynchronous error report); the agent holds them, "
			       "unsent, until the meter is active",
			       r->name, what);
		else
			report(cb, ud, ACCOUNT_ERROR,
			       "rule %s: %s: Stripe refuses its events (No active meter found) and "
			       "they become dead letters until the meter is active",
			       r->name, what);
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
		    "customer" HELD_TEXT " they agree",
		    r->name, m->id, ckey, r->payload_customer_key);
		errors++;
	}
	/* A count meter reads no value. */
	if (strcmp(m->formula, "count") != 0 && strcmp(vkey, r->payload_value_key) != 0) {
		report(
		    cb, ud, ACCOUNT_ERROR,
		    "rule %s: meter %s reads the value from payload key %s, the rule sends it as "
		    "%s (payload_value_key): Stripe takes the events but cannot bill their "
		    "values" HELD_TEXT " they agree",
		    r->name, m->id, vkey, r->payload_value_key);
		errors++;
	}
	if (errors > 0) {
		*hold = 1;
		return errors;
	}
	if (r->aggregate_s > 0 && strcmp(m->formula, "sum") != 0) {
		/* One meter event per window: a count meter counts it once, whatever the window
		 * holds ("count: Count the number of events", docs.stripe.com/api/billing/meter/
		 * create); a last meter keeps one window's total of a period. */
		report(
		    cb, ud, ACCOUNT_ERROR,
		    "rule %s: aggregate = %llds sends one meter event per window with the sum of "
		    "its values, but meter %s (event_name %s) has formula %s, which %s: use a "
		    "meter that sums (with value = 1 a window's total is its count of lines), or "
		    "no aggregate" HELD_TEXT,
		    r->name, (long long)r->aggregate_s, m->id, r->event_name,
		    m->formula[0] ? m->formula : "none",
		    strcmp(m->formula, "count") == 0
		        ? "counts each window's meter event as 1 however many lines it sums"
		        : "does not add the windows' totals up");
		*hold = 1;
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
	int errors = 0, hold;

	for (size_t i = 0; i < cfg->n_rules; i++)
		errors += account_check_rule(&cfg->rules[i], cfg->stripe.api == CONFIG_API_V2,
		                             meters, n, cb, ud, &hold);
	return errors;
}
