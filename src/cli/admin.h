/* admin: the operator's commands on the spool: `replay` (dead letters or delivered events back to
 * pending), `spool export` (JSON lines), `spool check`, `spool recover` and `spool start-over`.
 * Each prints its report to `out` and returns 0 on success, 1 when it refused or found problems
 * (the reason is printed or in `err`), -1 on a failure (`err`). See docs/spool.md. */
#ifndef LOGMETER_ADMIN_H
#define LOGMETER_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "core/event.h"

/* Stripe dedupes identifiers for at least 24 hours (docs.stripe.com/api/billing/meter-event/
 * create, `identifier`); a delivered event older than this is billed again if re-sent. */
#define ADMIN_DEDUPE_WINDOW_S (24 * 3600)

struct admin_replay {
	enum event_state from; /* EVENT_DEAD, EVENT_DELIVERED or EVENT_UNSURE */
	const char *rule;      /* only this rule, or NULL */
	const char *reason;    /* only events whose last error contains this text, or NULL */
	int64_t since;         /* only events that became dead / were delivered at or after this
	                          time (seconds since the epoch), or 0 */
	int force;             /* --delivered: also events delivered more than 24 hours ago */
	int dry_run;           /* report what would move, move nothing */
	int64_t now;           /* seconds since the epoch */
};

/* Moves the selected events of the spool of `cfg` back to pending: see struct admin_replay and
 * docs/spool.md. Dead letters without a Stripe customer (an unmapped customer key) are looked up
 * again in their rule's current customer_map: found, they get the customer id and move; not
 * found, they stay dead letters and are counted. Events whose timestamp is outside Stripe's
 * 35-day window stay where they are (Stripe would refuse them). With EVENT_DELIVERED, a warning
 * about Stripe's 24-hour dedupe window goes to `warn`, and if any selected event was delivered
 * more than ADMIN_DEDUPE_WINDOW_S ago nothing is moved unless `force` (returns 1). Prints the
 * counts per rule to `out`. Works while the agent runs (separate SQLite connection, short
 * transactions). */
int admin_replay(const struct config *cfg, const struct admin_replay *opt, FILE *out, FILE *warn,
                 char *err, size_t errlen);

/* Writes every event of the spool of `cfg` (only those in `state` if it is an enum event_state;
 * all if it is -1) to `out` as JSON lines (jansson), pending, delivered, dead then unsure, each in
 * id order:
 * {"id", "identifier", "event_name", "payload": {<customer key>: customer, <value key>: value},
 * "customer_key", "timestamp", "state": "pending|delivered|dead|unsure", "attempts",
 * "key_generation" (of the Idempotency-Key of its next attempt), "first_unknown" (seconds since
 * the epoch of its first attempt whose outcome was unknown, or null), "last_error" (or
 * null), "rule", "file_id", "file" (the path, or null), "line_offset", "created",
 * "delivered_at" (or null)}. Text that is not UTF-8 has its invalid bytes replaced by U+FFFD.
 * Reads the spool read-only. Returns 0 or -1. */
int admin_export(const struct config *cfg, int state, FILE *out, char *err, size_t errlen);

/* Writes every aggregation window of the spool as one JSON line to `out`: id, rule, customer,
 * event_name, start and end (seconds since the epoch), close_after, total, lines, late, state
 * (open or closed), event_id (its meter event, null while open) and lines, the list of its lines
 * (file_id, file, line_offset, value, timestamp, late). Read-only. Returns 0 or -1. */
int admin_export_windows(const struct config *cfg, FILE *out, char *err, size_t errlen);

/* `spool check`: prints "OK" and the counts, or every problem; returns 0, 1 or -1. */
int admin_check(const struct config *cfg, FILE *out, char *err, size_t errlen);

/* `spool recover`: rebuilds the spool (spool_recover) and prints what it recovered. A spool
 * that spool_check finds sound is left as it is (said on `out`) unless `force`; then its old
 * file is kept under the name spool_recover gives a sound one. Returns 0 or -1. */
int admin_recover(const struct config *cfg, int64_t now, int force, FILE *out, char *err,
                  size_t errlen);

/* `spool start-over`: while no agent holds the state directory's lock, forgets a lost spool or
 * adopts another one in its place (spool_start_over) and prints what it did; returns 0, 1
 * (nothing to start over, or the agent runs: `err`) or -1. */
int admin_start_over(const struct config *cfg, FILE *out, char *err, size_t errlen);

/* Parses a --since TIME relative to `now` (seconds since the epoch): "N" followed by s, m, h, d
 * or w (that long ago), an RFC 3339 / ISO 8601 time "2026-11-29T12:00:00Z" (also with a space
 * instead of T, fractional seconds, an offset +HH:MM / +HHMM, or no zone, meaning UTC), a date
 * "2026-11-29" (00:00 UTC), or "@SECONDS" since the epoch. Returns 0 and the time in *out, or -1.
 */
int admin_parse_time(const char *text, int64_t now, int64_t *out);

/* "pending", "delivered", "dead", "unsure": the enum event_state; -1 if `name` is none of them. */
int admin_state_parse(const char *name);

#endif
