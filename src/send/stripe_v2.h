/* stripe_v2: Stripe's meter event streams (API v2) as logmeter uses them: the JSON body of
 * POST /v2/billing/meter_event_stream (up to 100 events a request), the classification of the
 * stream's answers, the meter event session object, and the rate Stripe allows the stream.
 * Sources: docs.stripe.com/api/v2/billing/meter-event-stream/create,
 * docs.stripe.com/api/v2/billing/meter-event-stream/session/create, the OpenAPI spec
 * (github.com/stripe/openapi: schemas v2.error and v2.error.billing_meter_event_session_expired),
 * stripe-go (v2billing_metereventstream_params.go, error.go) and stripe-node (src/Error.ts
 * generateV2Error); docs/stripe-contract.md, section 14, quotes them. */
#ifndef LOGMETER_STRIPE_V2_H
#define LOGMETER_STRIPE_V2_H

#include <stddef.h>
#include <stdint.h>

#include "core/event.h"
#include "send/stripe.h"

#define STRIPE_V2_SESSION_PATH "/v2/billing/meter_event_session"
#define STRIPE_V2_STREAM_PATH "/v2/billing/meter_event_stream"
/* "Supports up to 100 events per request" (the stream's `events` parameter). */
#define STRIPE_V2_BATCH_MAX 100

/* The JSON body of a stream request for the `n` events of `evs` (1 to STRIPE_V2_BATCH_MAX):
 * {"events": [{"event_name", "identifier", "payload": {<customer key>: customer, <value key>:
 * value}, "timestamp": RFC 3339 in UTC with milliseconds}]}. Returns a malloc'd string (caller
 * frees), or NULL (no memory, or n out of range). */
char *stripe_v2_stream_body(const struct event *const *evs, size_t n);

/* Whether the stream's JSON can carry the event at all: its customer, value, event_name,
 * identifier and payload keys must be UTF-8 (RFC 8259 section 8.1; jansson refuses anything
 * else). A log line may hold any bytes, so a customer id may not be. Returns 0, or -1 with the
 * field at fault in `why` (`whylen` bytes): such an event can never be sent, a dead letter. */
int stripe_v2_event_check(const struct event *ev, char *why, size_t whylen);

/* Writes `t` (seconds since the epoch) as "2026-11-29T12:00:00.000Z" into `out` (at least 25
 * bytes), the form of Stripe's examples. Returns 0, or -1 if it does not fit or gmtime fails. */
int stripe_v2_rfc3339(int64_t t, char *out, size_t outlen);

/* Parses an RFC 3339 date-time ("2024-06-01T12:00:00.000Z", or with an offset "+01:00"; the
 * fraction is dropped) into seconds since the epoch. Returns 0, or -1. */
int stripe_v2_parse_rfc3339(const char *text, int64_t *out);

/* Classifies an answer of the stream (the reason as stripe_classify writes it):
 * a 2xx whose body is a JSON object (Stripe answers {}) is STRIPE_DELIVERED for every event of
 * the request (validation is asynchronous; an identifier seen before is deduplicated by Stripe,
 * which is as good as delivered); a 401, whatever its body (type temporary_session_expired,
 * another v2 error object, v1's error, none: the session's token refused, since the stream
 * never sees the key), is STRIPE_SESSION_EXPIRED; a 400, 404 or 422 carrying
 * Stripe's v2 error object (error.code and error.message: the OpenAPI schema v2.error) that is
 * not a rate limit and not Stripe's "Unrecognized request URL" is STRIPE_REJECTED: the request
 * as a whole was refused and none of its events taken; everything else as stripe_classify
 * (429 and type rate_limit: rate limited; 5xx, resets, timeouts: unknown; 403: auth;
 * redirects, HTML, other 2xx: unexpected). */
enum stripe_outcome stripe_v2_classify(const struct stripe_response *r, char *reason,
                                       size_t reasonlen);

/* A meter event session as Stripe returns it (v2.billing.meter_event_session). */
struct stripe_v2_session {
	char token[STRIPE_KEY_MAX]; /* authentication_token */
	int64_t created;            /* seconds since the epoch, by Stripe's clock */
	int64_t expires_at;         /* seconds since the epoch, by Stripe's clock */
};

/* Reads the body of a 200 answer to POST /v2/billing/meter_event_session (`len` bytes) into
 * *out: object "v2.billing.meter_event_session", a non-empty authentication_token of visible
 * ASCII shorter than STRIPE_KEY_MAX, created and expires_at RFC 3339 with expires_at after
 * created. Returns 0, or -1 with what is wrong in `err` (never the token). */
int stripe_v2_session_parse(const char *body, size_t len, struct stripe_v2_session *out, char *err,
                            size_t errlen);

/* Requests per second of the stream that Stripe allows the account of `key`, for batches of
 * STRIPE_V2_BATCH_MAX events: live keys 100 (Stripe's 10,000 events a second: the changelog
 * speaks of events, the API reference of requests; the lower reading is taken), test keys and
 * keys of unknown kind 25 (each request counts against the basic limit), a live key with a
 * Connect `account` 25 (no figure is documented). Writes an explanation into `why` (`whylen`
 * bytes, may be NULL). */
int64_t stripe_v2_default_rate(const char *key, const char *account, char *why, size_t whylen);

#endif
