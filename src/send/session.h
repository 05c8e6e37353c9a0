/* session: the meter event session of API v2 (POST /v2/billing/meter_event_session with the
 * secret key). Its authentication token authorises the stream for 15 minutes
 * (docs.stripe.com/api/v2/billing/meter-event-stream/session/create: "Authentication tokens are
 * only valid for 15 minutes"); logmeter renews it before then, measuring the token's life as
 * Stripe states it (expires_at - created) on the monotonic clock from the moment the request
 * was made, so that neither this host's clock nor Stripe's decides alone. */
#ifndef LOGMETER_SESSION_H
#define LOGMETER_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "send/stripe.h"

struct session;

/* A session holder with no session yet. `cfg` must outlive it. Returns it (caller frees), or
 * NULL if out of memory. */
struct session *session_new(const struct config *cfg);

/* Wipes the token and frees. NULL is a no-op. */
void session_free(struct session *s);

/* The token to send with, if a session is held and not due for renewal at `now_ms` (monotonic
 * milliseconds); else NULL. The pointer stays valid until the next session_renew or
 * session_drop. */
const char *session_token(const struct session *s, int64_t now_ms);

/* When the held session is due for renewal (monotonic ms), or 0 if none is held. */
int64_t session_renew_at(const struct session *s);

/* Seconds Stripe's clock was off this host's when the last session was made, as its `created`
 * time (Stripe's clock) shows against the request (this host's): negative when Stripe's clock is
 * behind (at least `asked - created`), positive when it is ahead (at least `created - answered`),
 * 0 when they agree within the request's time (whole seconds). The stream validates timestamps
 * later against Stripe's clock (35 days back, 5 minutes ahead), so the sender judges events by it.
 * At most a day either way of this host's clock or of the latest time seen (a session further
 * off both is refused by session_renew). */
int64_t session_clock_offset(const struct session *s);

/* Stripe's clock now, seconds since the epoch, as the last session measured it: this host's clock
 * at its answer plus session_clock_offset, carried on since by CLOCK_BOOTTIME (clock_boot_ms), so
 * that this host's clock stepped since (NTP, `date -s`) does not move it; a lower bound of
 * Stripe's clock when ahead (whole seconds). 0 if no session was made yet. Kept after
 * session_drop, until the next session measures again. */
int64_t session_stripe_now(const struct session *s);

/* Forgets the session (Stripe said it expired). */
void session_drop(struct session *s);

/* What one session request took, for the sender's counters and waits. */
struct session_try {
	long status;            /* the answer's HTTP status; 0: none (no connection, no answer) */
	double secs;            /* libcurl's total time of the request, seconds; 0 if not made */
	int64_t retry_after_ms; /* the answer's Retry-After (stripe_request_retry_after_ms), in
	                           milliseconds; -1: none */
};

/* Creates a new session with the secret `key`, synchronously (at most min(request_timeout, 10
 * s)), and holds it: it is renewed once four fifths of its life have passed, at most a minute
 * before it ends. Returns STRIPE_DELIVERED if a session is held now; else the outcome of the
 * answer as stripe_classify gives it (auth, rate limited, unknown, unexpected...) with the
 * reason in `reason` (`reasonlen` bytes; never the key or a token). A session whose `created`
 * is more than a day (86400 s) off this host's clock, either way, and off `seen` too, is not
 * held: STRIPE_UNEXPECTED, since no clock explains it and trusting it would hold every event
 * that long. `seen` (seconds since the epoch; 0: none) is the latest time the caller has seen
 * and trusts (the sender's kept time: this host's clock, Stripe's Date of two agreeing answers,
 * the spool's clock_seen), later than this host's clock when that was set back while the agent
 * was stopped: a session near it is Stripe's clock, not a wrong answer. What the request took
 * goes into *t (may be NULL). */
enum stripe_outcome session_renew(struct session *s, const char *key, int64_t now_ms, int64_t seen,
                                  char *reason, size_t reasonlen, struct session_try *t);

#endif
