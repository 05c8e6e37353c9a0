/* sender: the delivery loop. Reads pending events from its own spool handle, sends them with
 * libcurl's multi interface (keep-alive connections, at most max_concurrency requests in flight,
 * at most one per (customer, event_name), at most max_requests_per_second), retries transient
 * failures without limit with exponential backoff and jitter on the monotonic clock, pauses all
 * sending after a 401/403, dead-letters rejected events and events outside Stripe's timestamp
 * window, and marks outcomes in the spool in batches. */
#ifndef LOGMETER_SENDER_H
#define LOGMETER_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct sender;

/* Counters since sender_new, for logs and tests. */
struct sender_stats {
	int64_t requests;  /* HTTP requests started */
	int64_t delivered; /* events marked delivered (including "already exists") */
	int64_t duplicates; /* of which Stripe said the identifier already existed */
	int64_t retries;   /* transient failures that will be retried */
	int64_t dead;	   /* events dead-lettered */
	int64_t auth_pauses; /* 401/403 answers */
};

/* Opens its own spool handle in cfg->agent.state_dir and reads the API key (stripe_key_load).
 * `cfg` must outlive the sender. Returns the sender (caller frees), or NULL. */
struct sender *sender_new(const struct config *cfg, char *err, size_t errlen);

/* Frees the sender; in-flight requests are abandoned (their events stay pending and are re-sent
 * with the same identifier next time). NULL is a no-op. */
void sender_free(struct sender *s);

/* Runs the delivery loop until sender_stop is called. With `once` non-zero it returns instead
 * when no event is pending or in flight (events waiting for a retry count as pending: --once
 * keeps retrying them), or after an auth failure. Returns 0, 1 if it stopped because Stripe
 * refused the key (401/403) in once-mode, or -1 on a spool error (`err`). */
int sender_run(struct sender *s, int once, char *err, size_t errlen);

/* Asks sender_run to return soon: it stops starting requests and waits at most `grace_ms`
 * milliseconds for those in flight (marking their outcomes). Safe from another thread (it wakes
 * the loop with curl_multi_wakeup(3)); not from a signal handler. */
void sender_stop(struct sender *s, int64_t grace_ms);

/* Tells the sender new events were committed. Safe from another thread. */
void sender_notify(struct sender *s);

/* Copies the counters. Safe from another thread. */
void sender_get_stats(struct sender *s, struct sender_stats *out);

#endif
