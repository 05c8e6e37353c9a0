/* report: what the spool says for `logmeter status` and the metrics endpoint beyond the counts
 * of query.c: events by rule and state, the oldest pending event, dead letters since a time; and
 * for backfill, the events of a span of time.
 * Each prepares its statement per call: they run once per status or scrape, not per event. */
#ifndef LOGMETER_STORE_REPORT_H
#define LOGMETER_STORE_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "core/event.h"
#include "store/spool.h"

/* Calls cb(rule, state, count, ud) for each (rule, state) that has events in the spool, ordered
 * by rule then state; `rule` is valid during the call only. A full scan of the events table
 * (GROUP BY). Stops and returns -1 if cb does. Returns 0 or -1 (`err`). */
int spool_rule_counts(struct spool *sp,
                      int (*cb)(const char *rule, enum event_state state, int64_t n, void *ud),
                      void *ud, char *err, size_t errlen);

/* The timestamp (seconds since the epoch: the event's own time, which Stripe's 35-day window
 * is about) of the oldest pending event into *out, 0 if none is pending. Returns 0 or -1. */
int spool_oldest_pending(struct spool *sp, int64_t *out, char *err, size_t errlen);

/* How many dead letters became dead at or after `since` (seconds since the epoch; their
 * `updated` time, as `replay --dead --since` selects them) into *out. Returns 0 or -1. */
int spool_dead_since(struct spool *sp, int64_t since, int64_t *out, char *err, size_t errlen);

/* What `spool recover` lost for good, as it left it in the spool for `status`: when the last
 * recovery that lost the usage of aggregation windows ran (seconds since the epoch; 0: none
 * did), how many such windows, how many of their lines were found (a lower bound), and how many
 * lost windows left no line and no meter event (most likely billed, maybe lost), summed over such
 * recoveries. Returns 0 or -1. */
int spool_recover_loss(struct spool *sp, int64_t *when, int64_t *windows, int64_t *lines,
                       int64_t *unknown, char *err, size_t errlen);

/* How many events of the file record `file_id` the spool holds (any state) into *out: by the
 * UNIQUE (file_id, line_offset, rule) index. Returns 0 or -1. */
int spool_file_events(struct spool *sp, int64_t file_id, int64_t *out, char *err, size_t errlen);

/* Calls cb(rule, customer_key, value, timestamp, file_id, ud) for each event, in any state,
 * whose timestamp (seconds since the epoch) is in [from, to], in no particular order; the
 * strings are valid during the call only. A full scan of every batch, decoding each event (no
 * index on timestamp): for backfill's look for lines of new content billed already (once per
 * part of content never read), not per event. Stops and returns -1 if cb does. Returns 0 or -1
 * (`err`). */
int spool_events_between(struct spool *sp, int64_t from, int64_t to,
                         int (*cb)(const char *rule, const char *customer_key, const char *value,
                                   int64_t timestamp, int64_t file_id, void *ud),
                         void *ud, char *err, size_t errlen);

#endif
