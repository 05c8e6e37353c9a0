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

#include "config/config.h"
#include "core/event.h"

/* The API version logmeter was tested against, sent as Stripe-Version. */
#define STRIPE_API_VERSION "2026-04-22.dahlia"
#define STRIPE_KEY_MAX 256 /* bytes of an API key, including the NUL */
#define STRIPE_REASON_MAX 512

/* What an answer means for the event (docs/stripe-contract.md has the sources). */
enum stripe_outcome {
	STRIPE_DELIVERED = 0, /* 200 with the billing.meter_event of our identifier, or 400 "An
	                         event already exists with identifier" (code duplicate_meter_event
	                         in v2): Stripe has the event */
	STRIPE_RETRY,         /* not carried out, the key still good: a connection never made, 409
	                         (the key in use by a request still running), lock_timeout,
	                         Stripe-Should-Retry: true on a 4xx */
	STRIPE_UNKNOWN,       /* the outcome is unknown or Stripe saved an error under the key: a
	                         5xx (whatever Stripe-Should-Retry says), a timeout, a reset, an
	                         error answer marked Idempotent-Replayed, an idempotency_error. The
	                         next attempt goes under the next key generation; the identifier
	                         keeps Stripe from counting the event twice */
	STRIPE_RATE_LIMITED,  /* 429, or 400 with code rate_limit: again later, more slowly */
	STRIPE_TOO_EARLY,     /* 400 on the timestamp parameter: "more than 5 minutes in the
	                         future" by Stripe's clock, which runs behind this host's: hold the
	                         event and try again later (validation is not saved under the key) */
	STRIPE_AUTH,          /* 401 or 403: stop all sending until the key works */
	STRIPE_UNEXPECTED,    /* not Stripe's answer about this event: a redirect, a 2xx that is not
	                         our meter event, an unexpected status, an error without Stripe's
	                         error object: pause all sending (a proxy or a wrong api_base), and
	                         treat the attempt's outcome as unknown */
	STRIPE_REJECTED,      /* a definite refusal of the event (400 or 404 with Stripe's
	                         invalid_request_error: a bad parameter, no active meter, a timestamp
	                         out of range): a dead letter with Stripe's message */
	STRIPE_SESSION_EXPIRED /* v2 only: 401 temporary_session_expired: the meter event
	                          session's token ran out; a new session, the same events again */
};

/* How many outcomes there are (for arrays indexed by enum stripe_outcome). */
#define STRIPE_OUTCOMES (STRIPE_SESSION_EXPIRED + 1)

/* "delivered", "retry", "unknown", "rate_limited", "too_early", "auth", "unexpected",
 * "rejected", "session_expired": the outcome's name in status and metrics (the `outcome` label).
 * Static storage;
 * "?" for a value that is not an outcome. */
const char *stripe_outcome_name(enum stripe_outcome out);

/* What came back for one request. */
struct stripe_response {
	CURLcode curl_code; /* CURLE_OK if an HTTP answer arrived */
	long status;        /* HTTP status, 0 if none */
	int should_retry;   /* Stripe-Should-Retry: 1 true, 0 false, -1 absent */
	int replayed;       /* Idempotent-Replayed: true (a saved answer) */
	int64_t date; /* the Date header, seconds since the epoch (the server's clock); 0: none */
	const char *body; /* response body (may be NULL), `body_len` bytes */
	size_t body_len;
	const char *identifier; /* the identifier sent; a 2xx must carry it. NULL: not checked */
	const char *location;   /* the Location header of a redirect, or NULL */
};

/* Moves the environment variable LOGMETER_STRIPE_API_KEY, if set, into this module's memory for
 * the life of the process: its bytes in the environment are overwritten with NULs (so that
 * /proc/PID/environ, which shows the environment the process started with, no longer holds the
 * key) and it is unset, so that no child and no later getenv(3) sees it. stripe_key_load reads
 * the copy, at start and at every reload. Call it once, before any thread starts (setenv(3) and
 * unsetenv(3) are not thread-safe). Returns 1 if the variable was set, else 0. */
int stripe_key_take_env(void);

/* Wipes the copy stripe_key_take_env kept (explicit_bzero). For the end of the process. */
void stripe_key_forget(void);

/* Reads the API key, first found wins: the environment variable LOGMETER_STRIPE_API_KEY if set
 * and not empty (taken by stripe_key_take_env, or still in the environment); the systemd credential
 * $CREDENTIALS_DIRECTORY/stripe.key if that file exists (LoadCredential=stripe.key:PATH,
 * systemd.exec(5)); the file cfg->stripe.api_key_file. An empty variable counts as unset
 * (stripe_key_shadowed warns), and is refused when no key file exists. Of a file the first line
 * is the key (ending with \n or \r\n; blanks around the key are refused, as in the variable); a
 * key is refused unless it starts sk_ or rk_, is more than its prefix (sk_test_) and holds only
 * letters, digits and _; a file owned by a user other than root and geteuid(), whose
 * mode grants anything to others (S_IRWXO), that
 * its group may write, or that a group may read other than the one logmeter runs as (getegid) or
 * the group logmeter is refused, with the chmod/chown that fixes it (docs/security.md). Writes the
 * key to `key`
 * (`keylen` bytes, STRIPE_KEY_MAX). Errors never contain the key. Returns 0 or -1. */
int stripe_key_load(const struct config *cfg, char *key, size_t keylen, char *err, size_t errlen);

/* Whether stripe_key_load takes the key from LOGMETER_STRIPE_API_KEY while a key file also
 * exists that it then never reads: the systemd credential, else cfg->stripe.api_key_file. The
 * variable's precedence is defined (README), but a stale one beats a rotated file silently, so
 * `check` and `run` warn. Also whether the variable is set but empty while such a file exists
 * (the file is read, the variable ignored; without a file stripe_key_load refuses). Writes the
 * warning (no key in it) to `what` (`whatlen` bytes) and returns 1; else 0. */
int stripe_key_shadowed(const struct config *cfg, char *what, size_t whatlen);

/* Requests per second of POST /v1/billing/meter_events that Stripe allows the account of `key`
 * (docs.stripe.com/rate-limits): live keys (sk_live_, rk_live_) 1000, in their own bucket; test
 * keys (sk_test_, rk_test_) count against the basic sandbox limit of 25; with a Connect
 * `account` (the Stripe-Account header; NULL or "" for none) live keys get 100; an unknown key
 * kind gets 25. Writes a short explanation ("live key (sk_live_...): Stripe's live-mode limit for
 * meter events") into `why` (`whylen` bytes, may be NULL). Never copies more of the key than
 * its kind prefix. */
int64_t stripe_default_rate(const char *key, const char *account, char *why, size_t whylen);

/* Classifies an answer (the table of docs/stripe-contract.md): see enum stripe_outcome. Writes a
 * one-line reason (the status, Stripe's error.message from the JSON body or an excerpt of a
 * non-JSON body, a redirect's Location, curl's error; "(replayed)" for a saved answer) into
 * `reason` (`reasonlen` bytes). Sources: docs.stripe.com/api/idempotent_requests,
 * docs.stripe.com/error-low-level, docs.stripe.com/rate-limits, stripe-node
 * src/RequestSender.ts. */
enum stripe_outcome stripe_classify(const struct stripe_response *r, char *reason,
                                    size_t reasonlen);

struct stripe_request;

/* Builds the request for `ev`: POST {api_base}/v1/billing/meter_events with the form body of
 * event_form_body, headers Authorization: Bearer <key>, Stripe-Version, Idempotency-Key of the
 * event's key generation (event_idempotency_key), Stripe-Account if cfg->stripe.account is set,
 * User-Agent "logmeter/<version>", Content-Type; TLS peer and host verification on (except
 * http://127.0.0.1); redirects not followed; timeout cfg->stripe.request_timeout_ms. `api_key`
 * is copied.
 * The easy handle is for one curl multi handle; `ud` is kept for the caller. Returns the request
 * (caller frees), or NULL. */
struct stripe_request *stripe_request_new(const struct config *cfg, const char *api_key,
                                          const struct event *ev, void *ud, char *err,
                                          size_t errlen);

/* Points a finished request of stripe_request_new (removed from its multi handle) at another
 * event `ev` (copied) and `ud`, keeping its easy handle, its headers but the Idempotency-Key
 * (that of `ev`), the key and the settings it was made with: a sender that keeps its finished
 * requests builds no handle, header list or URL per event (libcurl keeps the connection in the
 * multi handle either way). Returns 0, or -1 with `err` (the request is unchanged then, or for a
 * body that did not fit, holds no event: free it). */
int stripe_request_reuse(struct stripe_request *req, const struct event *ev, void *ud, char *err,
                         size_t errlen);

/* A request of another shape than one v1 meter event (the v2 meter event session and stream,
 * send/stripe_v2.h): POST {base}{path} with the JSON `body`, Authorization: Bearer `token` (the
 * secret key, or a session's authentication token; copied, and scrubbed from answers as the key
 * is), Stripe-Version, Stripe-Account if cfg->stripe.account is set, no Idempotency-Key; TLS,
 * redirects and timeout as stripe_request_new. `base` must pass config_check_api_base. Returns
 * the request (caller frees), or NULL with `err`. */
struct stripe_request *stripe_request_new_post(const struct config *cfg, const char *base,
                                               const char *path, const char *token,
                                               const char *body, void *ud, char *err,
                                               size_t errlen);

/* After the transfer finished with `code`: the answer as stripe_classify reads it (status,
 * Stripe-Should-Retry, Idempotent-Replayed, the body with every occurrence of the credential
 * blanked, Location). The body stays owned by the request. */
void stripe_request_response(struct stripe_request *req, CURLcode code, struct stripe_response *r);

/* Completes a reason written by a classifier from `r`: curl's own error text, the
 * Stripe-Rate-Limited-Reason of a 429, and the credential scrubbed from all of it. */
void stripe_request_reason_finish(struct stripe_request *req, const struct stripe_response *r,
                                  char *reason, size_t reasonlen);

/* The libcurl easy handle to add to a multi handle. Owned by the request. */
CURL *stripe_request_easy(struct stripe_request *req);

/* The caller's pointer given to stripe_request_new. */
void *stripe_request_ud(struct stripe_request *req);

/* The event the request is for (a copy owned by the request). */
const struct event *stripe_request_event(struct stripe_request *req);

/* After the transfer finished with `code`: classifies it (stripe_classify). */
enum stripe_outcome stripe_request_result(struct stripe_request *req, CURLcode code, char *reason,
                                          size_t reasonlen);

/* The wait the answer asked for with Retry-After (delay-seconds or an HTTP date, RFC 9110
 * 10.2.3; honoured by stripe-python), in milliseconds, at most STRIPE_RETRY_AFTER_MAX_MS; -1 if
 * there was none or it did not parse. */
int64_t stripe_request_retry_after_ms(const struct stripe_request *req);

/* The answer's Date header (RFC 9110 6.6.1: the server's clock when it answered, to the second),
 * seconds since the epoch; 0 if there was none or it did not parse. */
int64_t stripe_request_date(const struct stripe_request *req);

/* An answer's Retry-After is trusted up to this: a hostile or broken one must not stop sending
 * for long (milliseconds). */
#define STRIPE_RETRY_AFTER_MAX_MS (5 * 60 * 1000)

/* Frees the request and its easy handle (remove it from the multi handle first). NULL is a
 * no-op. The key copy is cleared before it is freed. */
void stripe_request_free(struct stripe_request *req);

/* ---- the account's meters (GET /v1/billing/meters) ---- */

/* A billing.meter as `check --stripe` needs it (docs.stripe.com/api/billing/meter/object). */
struct stripe_meter {
	char id[64];
	char event_name[EVENT_NAME_MAX];
	char customer_key[EVENT_KEY_MAX]; /* customer_mapping.event_payload_key */
	char value_key[EVENT_KEY_MAX];    /* value_settings.event_payload_key */
	char formula[16];                 /* default_aggregation.formula: sum, count, last */
	char status[16];                  /* active, inactive */
};

/* Meters read at most: an account with more is not one logmeter was made for, and a hostile
 * answer must not make it page forever. */
#define STRIPE_METERS_MAX 10000

/* Lists every meter of the account of `key` (and cfg->stripe.account): GET
 * {api_base}/v1/billing/meters?limit=100, then &starting_after=<last id> while has_more
 * (docs.stripe.com/api/billing/meter/list, docs.stripe.com/api/pagination), each request with
 * a time limit of `timeout_ms`. Sets *out to a malloc'd array (caller frees) of *n meters.
 * Returns 0, or -1 with the reason in `err` (network error, Stripe's answer with its status, or
 * an answer that is not a list of meters) and, if `status` is not NULL, the HTTP status of an
 * answer other than 200 in *status (401: "No valid API key provided", docs.stripe.com/api/errors;
 * 0 when there was none); the key never appears in `err`. If `date` is not NULL, *date is, on
 * success, the Date header (seconds since the epoch) of the last page that had one, else 0:
 * Stripe's clock, for deadlines this host's clock alone must not decide (docs/stripe-contract.md
 * section 13, "The 24-hour edge"). */
int stripe_meters_list(const struct config *cfg, const char *key, long timeout_ms,
                       struct stripe_meter **out, size_t *n, long *status, int64_t *date, char *err,
                       size_t errlen);

#endif
