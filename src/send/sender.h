/* sender: the delivery loop. Reads pending events from its own spool handle, sends them with
 * libcurl's multi interface (keep-alive connections, at most max_concurrency requests in flight,
 * at most one per (customer, event_name), at most the rate Stripe allows the key or
 * max_requests_per_second, halved after a 429 and climbing back while requests succeed), retries
 * without limit with exponential backoff and jitter on the monotonic clock (a Retry-After is
 * honoured), moves to the next Idempotency-Key generation after an attempt whose outcome is
 * unknown, pauses all sending after a 401/403 or an answer that is not Stripe's, holds events
 * stamped more than 5 minutes ahead of the clock until they are valid, dead-letters only what
 * Stripe definitely refuses (and events older than its 35-day window), makes an event unsure
 * instead of re-sending it once its first unknown outcome is older than unsure_after, and marks
 * outcomes in the spool in batches. The rules and their sources: docs/stripe-contract.md. */
#ifndef LOGMETER_SENDER_H
#define LOGMETER_SENDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "send/stripe.h"

struct sender;

/* The request duration histogram's buckets: the upper bounds in seconds, ascending, of all but
 * the last bucket (which has none: +Inf). Prometheus' default buckets up to 10 s, then 30 s and
 * 60 s, since request_timeout may be up to 10 minutes. */
#define SENDER_DURATION_BOUNDS 13
extern const double sender_duration_bounds[SENDER_DURATION_BOUNDS];

/* Counters since sender_new, for logs and tests. */
struct sender_stats {
	int64_t requests;        /* HTTP requests started */
	int64_t delivered;       /* events marked delivered (including "already exists") */
	int64_t duplicates;      /* of which Stripe said the identifier already existed */
	int64_t retries;         /* failed attempts that will be retried (all kinds below) */
	int64_t unknown;         /* of which the outcome was unknown (a new key follows) */
	int64_t rate_limited;    /* of which Stripe rate-limited (429, 400 rate_limit) */
	int64_t dead;            /* events dead-lettered */
	int64_t unsure;          /* events made unsure */
	int64_t auth_pauses;     /* 401/403 answers */
	int64_t unexpected;      /* answers that were not Stripe's (sending paused) */
	int64_t sessions;        /* v2: meter event sessions created */
	int64_t session_expired; /* v2: stream answers "session expired" (sent again) */
	int64_t windows_closed;  /* aggregation windows closed into meter events */
	/* Requests that ended, by outcome (a connection never made counts too: retry) */
	int64_t outcomes[STRIPE_OUTCOMES];
	/* Their durations (libcurl's CURLINFO_TOTAL_TIME): how many ended within each bucket
	 * (not cumulative; the last is over every bound), and their sum in seconds. */
	int64_t duration_counts[SENDER_DURATION_BOUNDS + 1];
	double duration_sum;
};

/* Opens its own spool handle in cfg->agent.state_dir and reads the API key (stripe_key_load).
 * `cfg` must outlive the sender. Returns the sender (caller frees), or NULL. */
struct sender *sender_new(const struct config *cfg, char *err, size_t errlen);

/* Frees the sender; in-flight requests are abandoned (their events stay pending and are re-sent
 * with the same identifier next time). NULL is a no-op. */
void sender_free(struct sender *s);

/* From now on keeps the sender's region of STATE_DIR/agent.state (statefile.h) up to date with
 * its live state (rate, pause and why, requests in flight, events waiting for a retry or held).
 * Call it once this process holds the state directory's lock. A failure is logged, not fatal. */
void sender_publish(struct sender *s);

/* Runs the delivery loop until sender_stop is called. With `once` non-zero it returns instead
 * when no event is pending or in flight (events waiting for a retry or held count as pending:
 * --once keeps retrying them), or after sending paused. Returns 0; 1 if it stopped because
 * Stripe refused the key (401/403) in once-mode; 2 if it stopped in once-mode because an answer
 * was not Stripe's (a redirect, a 200 that is not the meter event...: logged); 3 if it ended in
 * once-mode with usage it cannot send now (events held for a timestamp ahead of the clock,
 * aggregation windows closing after the longest `aggregate` + `aggregate_grace` from its start:
 * logged with how many); or -1 on a spool error (`err`). */
int sender_run(struct sender *s, int once, char *err, size_t errlen);

/* Asks sender_run to return soon: it stops starting requests and waits at most `grace_ms`
 * milliseconds for those in flight (marking their outcomes). Safe from another thread (it wakes
 * the loop with curl_multi_wakeup(3)); not from a signal handler. */
void sender_stop(struct sender *s, int64_t grace_ms);

/* Tells the sender new events were committed. Safe from another thread. */
void sender_notify(struct sender *s);

/* Whether `key` is the API key the sender was made with (a reload that finds another one starts
 * a new sender). */
int sender_key_is(const struct sender *s, const char *key);

/* A reload kept the sender (its [stripe] settings, key and the [agent] settings it reads did not
 * change) but has new rules: from now on the rules of `cfg` (borrowed until the next call or
 * sender_free; the settings the sender uses stay those of sender_new's configuration) are the
 * ones held against the account's meters, and with `check` non-zero they are held against them
 * at the sender's next turn, as at start (warnings only; sending waits for it, at most 10 s).
 * Waits for a check under way on the previous rules to end (at most that long too), so that the
 * caller may free them once this returns. Safe from another thread. */
void sender_set_rules(struct sender *s, const struct config *cfg, int check);

/* What the sender's region of STATE_DIR/agent.state says, for `logmeter status` and the
 * metrics. The counters count since the sender started (`started`): at the agent's start, or
 * at a reload that replaced the sender. */
struct sender_status {
	int found;   /* the region was written */
	int running; /* its process is alive and the sender did not stop (statefile_pid_alive) */
	long long pid;
	char state[32]; /* "sending", "paused-auth", "paused-answer", "paused-session",
	                 * "stopped" (with the pause's detail if the agent stopped paused) */
	char detail[STRIPE_REASON_MAX + 128]; /* why it is paused; "" if not */
	char rate_why[160];                   /* where rate_max comes from */
	char held_rules[256]; /* rules whose events are held for their meter, space-separated */
	char held_why[STRIPE_REASON_MAX]; /* the first one's finding (account.h) */
	long long since;       /* seconds since the epoch the pause began; 0 if not paused */
	long long pause_until; /* seconds since the epoch it tries again; 0 if not paused */
	long long rate_cut;    /* seconds since the epoch a 429 last lowered the rate; 0: never */
	long long hold_until;  /* seconds since the epoch a Retry-After holds requests until */
	double rate_max, rate; /* requests per second: at most, and now */
	/* Requests in flight; events: in those requests, waiting to retry, held for a timestamp
	 * ahead of the clock, and queued ready to be sent: the last four do not overlap, and add
	 * up to what the sender holds of the pending events (SENDER_QUEUE_MAX at most). */
	long long in_flight, in_flight_events, retrying, held, queued;
	/* Seconds Stripe's clock is behind this host's, 0 if not known to be: measured by a v2
	 * session's `created` (stripe_behind_from "session"), or at least that much by v1's "too
	 * far in the future" answers ("answers") since the agent started. */
	long long stripe_behind;
	char stripe_behind_from[16];
	long long written; /* seconds since the epoch the region was written; 0: not said */
	long long started; /* seconds since the epoch */
	long long outcomes[STRIPE_OUTCOMES]; /* as struct sender_stats */
	long long duration_counts[SENDER_DURATION_BOUNDS + 1];
	double duration_sum; /* seconds */
};

/* Reads the sender's region of STATE_DIR/agent.state into *out (zeroed first; found = 0 if it
 * was never written). Returns 0, or -1 if the file exists but cannot be read (`err`). */
int sender_status_read(const char *state_dir, struct sender_status *out, char *err, size_t errlen);

/* The most requests per second the sender would make under `cfg`: max_requests_per_second, or
 * the rate Stripe allows the key that cfg gives (stripe_default_rate). Sets *rate and writes
 * where it comes from to `why` ("max_requests_per_second", "auto: test key ..."). Returns 0, or
 * -1 if the key cannot be read here (*rate 0, `why` says so). */
int sender_rate_of(const struct config *cfg, double *rate, char *why, size_t whylen);

/* Prints "rate: up to N requests/s (WHERE FROM)" (sender_rate_of), or why it cannot be known
 * here. */
void sender_rate_print(FILE *out, const struct config *cfg);

/* Copies the counters. Safe from another thread. */
void sender_get_stats(struct sender *s, struct sender_stats *out);

#endif
