/* account: the rules held against the Stripe account they bill: for each rule, an active meter
 * with its event_name whose payload keys are the rule's, and what the meter's formula does with
 * the values the rule sends. Used by `logmeter check --stripe` and, as warnings, when the agent
 * starts. See docs/stripe-contract.md. */
#ifndef LOGMETER_ACCOUNT_H
#define LOGMETER_ACCOUNT_H

#include <stddef.h>

#include "config/config.h"
#include "send/stripe.h"

enum account_level {
	ACCOUNT_OK = 0,   /* the rule and its meter agree */
	ACCOUNT_WARN = 1, /* events are taken, but the meter's formula loses the rule's values */
	ACCOUNT_ERROR = 2 /* Stripe refuses the rule's events, or bills them to no one */
};

/* Receives one line per rule (several for a rule with more than one finding), without a
 * trailing newline. */
typedef void (*account_report_cb)(enum account_level level, const char *text, void *ud);

/* Holds every rule of `cfg` against the `n` meters of the account (stripe_meters_list): the
 * rule's event_name must have an active meter (Stripe answers "No active meter found" for
 * others: dead letters); the meter's customer_mapping.event_payload_key and
 * value_settings.event_payload_key must be the rule's payload_customer_key and
 * payload_value_key (else Stripe takes the events but cannot bill them: asynchronous errors);
 * the formula says what happens to the values: sum adds them; count counts events, so a rule
 * whose value is not the constant 1 loses its values; last keeps only the last value of each
 * period, so every event but the last is lost for billing. Reports through `cb`. Returns the
 * number of errors (ACCOUNT_ERROR lines). */
int account_check_rules(const struct config *cfg, const struct stripe_meter *meters, size_t n,
                        account_report_cb cb, void *ud);

#endif
