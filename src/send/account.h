/* account: the rules held against the Stripe account they bill: for each rule, an active meter
 * with its event_name whose payload keys are the rule's, and what the meter's formula does with
 * the values the rule sends. Used by `logmeter check --stripe` and, as warnings, when the agent
 * starts, where the events of a rule Stripe would take without billing them are held. See
 * docs/stripe-contract.md, section 13. */
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

/* account_check_rules for the one rule `r`, sent with API v2 if `v2`. Sets *hold to 1 if Stripe
 * would take the rule's events without billing them as sent (no active meter under v2, payload
 * keys the meter does not read, windows into a meter that does not sum), so that the agent
 * holds them, unsent, rather than lose them; else 0 (billed, or refused at once by v1: dead
 * letters). Returns the number of errors. */
int account_check_rule(const struct config_rule *r, int v2, const struct stripe_meter *meters,
                       size_t n, account_report_cb cb, void *ud, int *hold);

#endif
