/* stripe: the Stripe API as logmeter uses it: one request per meter event
 * (POST /v1/billing/meter_events) and the classification of Stripe's answer.
 * Source of every rule here: ../shared/reference/stripe-meter-events.md, which cites
 * docs.stripe.com/api/billing/meter-event/create, docs.stripe.com/rate-limits,
 * docs.stripe.com/api/idempotent_requests and stripe-node's src/RequestSender.ts. */
#ifndef LOGMETER_STRIPE_H
#define LOGMETER_STRIPE_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "config.h"
#include "event.h"

/* The API version logmeter was tested against, sent as Stripe-Version. */
#define STRIPE_API_VERSION "2026-04-22.dahlia"
#define STRIPE_KEY_MAX 256 /* bytes of an API key, including the NUL */
#define STRIPE_REASON_MAX 512

/* Stripe's timestamp window (docs.stripe.com/api/billing/meter-event/create): at most 35 days
 * in the past, at most 5 minutes in the future. */
#define STRIPE_MAX_AGE_S (35 * 86400)
#define STRIPE_MAX_AHEAD_S 300

enum stripe_outcome {
	STRIPE_DELIVERED = 0, /* 200, or 400 "An event already exists with identifier" */
	STRIPE_RETRY,	      /* network error, timeout, 409, 429, 5xx, Stripe-Should-Retry: true */
	STRIPE_AUTH,	      /* 401 or 403: stop all sending until the key works */
	STRIPE_REJECTED	      /* any other answer: a dead letter with Stripe's message */
};

/* What came back for one request. */
struct stripe_response {
	CURLcode curl_code; /* CURLE_OK if an HTTP answer arrived */
	long status;	    /* HTTP status, 0 if none */
	int should_retry;   /* Stripe-Should-Retry: 1 true, 0 false, -1 absent */
	const char *body;   /* response body (may be NULL), `body_len` bytes */
	size_t body_len;
};

/* Reads the API key, first found wins: the environment variable LOGMETER_STRIPE_API_KEY if set
 * and not empty; the systemd credential $CREDENTIALS_DIRECTORY/stripe.key if that file exists
 * (LoadCredential=stripe.key:PATH, systemd.exec(5)); the file cfg->stripe.api_key_file. Of a file
 * the first line is the key (surrounding whitespace dropped); a file whose mode grants anything
 * to others (S_IRWXO) is refused, with the chmod/chown that fixes it. Writes the key to `key`
 * (`keylen` bytes, STRIPE_KEY_MAX). Errors never contain the key. Returns 0 or -1. */
int stripe_key_load(const struct config *cfg, char *key, size_t keylen, char *err, size_t errlen);

/* Checks that `api_base` is https://..., or http://127.0.0.1[:port] (the only place TLS may be
 * skipped: a local Stripe double). Returns 0 or -1. */
int stripe_check_base(const char *api_base, char *err, size_t errlen);

/* Classifies an answer as stripe-node does (retry on no answer, Stripe-Should-Retry: true, 409,
 * >= 500; never when Stripe-Should-Retry: false) and as Stripe's rate-limit guide asks (retry 429
 * with backoff). 400 whose message starts "An event already exists with identifier" is
 * STRIPE_DELIVERED. Writes a one-line reason (Stripe's error.message from the JSON body, with the
 * status, or curl's error) into `reason` (`reasonlen` bytes). */
enum stripe_outcome stripe_classify(const struct stripe_response *r, char *reason,
				    size_t reasonlen);

struct stripe_request;

/* Builds the request for `ev`: POST {api_base}/v1/billing/meter_events with the form body of
 * event_form_body, headers Authorization: Bearer <key>, Stripe-Version, Idempotency-Key equal to
 * the identifier, User-Agent "logmeter/<version>", Content-Type; TLS peer and host verification
 * on (except http://127.0.0.1); timeout cfg->stripe.request_timeout_ms. `api_key` is copied.
 * The easy handle is for one curl multi handle; `ud` is kept for the caller. Returns the request
 * (caller frees), or NULL. */
struct stripe_request *stripe_request_new(const struct config *cfg, const char *api_key,
					  const struct event *ev, void *ud, char *err,
					  size_t errlen);

/* The libcurl easy handle to add to a multi handle. Owned by the request. */
CURL *stripe_request_easy(struct stripe_request *req);

/* The caller's pointer given to stripe_request_new. */
void *stripe_request_ud(struct stripe_request *req);

/* The event the request is for (a copy owned by the request). */
const struct event *stripe_request_event(struct stripe_request *req);

/* After the transfer finished with `code`: classifies it (stripe_classify). */
enum stripe_outcome stripe_request_result(struct stripe_request *req, CURLcode code,
					  char *reason, size_t reasonlen);

/* Frees the request and its easy handle (remove it from the multi handle first). NULL is a
 * no-op. The key copy is cleared before it is freed. */
void stripe_request_free(struct stripe_request *req);

#endif
