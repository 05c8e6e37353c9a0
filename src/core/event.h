/* event: the meter event as logmeter keeps it, its deterministic identifier, and its encodings
 * (the Stripe form body). */
#ifndef LOGMETER_EVENT_H
#define LOGMETER_EVENT_H

#include <stddef.h>
#include <stdint.h>

/* Field sizes in bytes, including the NUL. Stripe's limits (docs.stripe.com/api/billing/
 * meter-event/create): event_name and identifier <= 100 characters, payload values <= 100. */
#define EVENT_NAME_MAX 101
#define EVENT_IDENTIFIER_MAX 101 /* identifiers are 44 bytes: "lm1-" and 40 hex digits */
#define EVENT_KEY_MAX 101        /* payload key names */
#define EVENT_CUSTOMER_MAX 256   /* the raw customer key; the mapped id must be <= 100 */
#define EVENT_VALUE_MAX 64
#define EVENT_RULE_MAX 128
#define EVENT_ERROR_MAX 512

/* EVENT_UNSURE: an attempt's outcome was unknown (a 5xx, a timeout, a reset) and the first such
 * attempt is older than [stripe] unsure_after: Stripe may have forgotten the identifier, so a
 * re-send could bill it twice; it waits for an operator (`logmeter replay --unsure`). */
/* Stripe's timestamp window (docs.stripe.com/api/billing/meter-event/create): at most 35 days
 * in the past, at most 5 minutes in the future. Seconds. */
#define EVENT_MAX_AGE_S (35 * 86400)
#define EVENT_MAX_AHEAD_S 300
/* An event ahead of the clock is sent once it is this much inside Stripe's 5 minutes, so that a
 * Stripe clock a little behind this host's still takes it (seconds). */
#define EVENT_HOLD_MARGIN_S 60
/* Further ahead than this no clock step explains: a wrong timestamp, not held (seconds). */
#define EVENT_HOLD_MAX_S 86400
/* An aggregation window starting this close to Stripe's 35 days is not opened for a late line:
 * the line is billed on its own (store/window.c; seconds). Ingest judges by this host's clock;
 * the sender by Stripe's, which may be ahead (v2 measures it), less an hour with v2 (the stream
 * checks timestamps later). A window whose start a Stripe clock ahead puts within that hour would
 * be one dead letter holding lines each billable on its own: so the margin covers a Stripe clock
 * up to EVENT_HOLD_MAX_S ahead (further than a day no clock step explains) plus that hour. The
 * cost: late lines of the last 25 hours of the 35 days are billed one event each. */
#define EVENT_WINDOW_AGE_MARGIN_S (EVENT_HOLD_MAX_S + 3600)

/* Where a timestamp stands against Stripe's window at wall-clock time `now`: what the sender
 * does with it (docs/stripe-contract.md, section 13). */
enum event_window {
	EVENT_WINDOW_OK = 0,   /* sendable */
	EVENT_WINDOW_OLD,      /* more than 35 days in the past: a dead letter */
	EVENT_WINDOW_AHEAD,    /* ahead by more than the window less the margin: held */
	EVENT_WINDOW_FAR_AHEAD /* more than EVENT_HOLD_MAX_S ahead: a dead letter */
};

/* Classifies `timestamp` against `now` (both seconds since the epoch). */
enum event_window event_window_of(int64_t timestamp, int64_t now);

enum event_state { EVENT_PENDING = 0, EVENT_DELIVERED = 1, EVENT_DEAD = 2, EVENT_UNSURE = 3 };

/* Longest Idempotency-Key logmeter makes, including the NUL: the identifier and "-r" with a
 * generation of at most 19 digits. Stripe allows 255 characters (docs.stripe.com/api/
 * idempotent_requests). */
#define EVENT_IDEMPOTENCY_KEY_MAX (EVENT_IDENTIFIER_MAX + 22)

/* One meter event. Plain data: copying the struct copies the event. */
struct event {
	int64_t id;          /* spool row id, for the event's life; 0 before it is committed */
	int64_t queue_seq;   /* its position in the sender's queue (spool_pending); 0 before */
	int64_t file_id;     /* spool id of the file its line came from */
	int64_t line_offset; /* byte offset where its line starts in that file */
	char rule[EVENT_RULE_MAX];
	char identifier[EVENT_IDENTIFIER_MAX];
	char event_name[EVENT_NAME_MAX];
	char payload_customer_key[EVENT_KEY_MAX]; /* e.g. "stripe_customer_id" */
	char payload_value_key[EVENT_KEY_MAX];    /* e.g. "value" */
	char customer_key[EVENT_CUSTOMER_MAX];    /* what the rule captured */
	char customer[EVENT_CUSTOMER_MAX];        /* Stripe customer id; "" if unmapped */
	char value[EVENT_VALUE_MAX];              /* decimal number as text */
	int64_t timestamp;                        /* seconds since the epoch */
	enum event_state state;
	int64_t attempts;                 /* requests made for it so far */
	int64_t key_generation;           /* which Idempotency-Key the next attempt uses */
	int64_t first_unknown;            /* seconds since the epoch of the first attempt whose
	                                     outcome was unknown; 0 if none */
	char last_error[EVENT_ERROR_MAX]; /* Stripe's message or the local reason; "" if none */
	int64_t created;                  /* seconds since the epoch it was spooled */
	int64_t delivered_at;             /* seconds since the epoch, 0 if not delivered */
	int64_t window_s;       /* its rule's aggregate: its value goes into a window of this many
	                           seconds (spool_commit); 0: it is a meter event of its own */
	int64_t window_grace_s; /* its rule's aggregate_grace, seconds */
	                        /* A new field must be copied in event_copy too. */
};

/* Copies `src` to `dst` as a struct copy would, but each text up to its NUL only (the bytes
 * after it are left as they were): a struct event is 1.7 KB of which an event uses a few
 * hundred bytes, and a struct copy per event queued cost more than any other step of the v2
 * sender but the identifier (bench/README.md). Texts without a NUL in their array are copied
 * whole. No error. */
void event_copy(struct event *dst, const struct event *src);

/* Computes the identifier of the event that rule `rule` makes from the line starting at byte
 * `line_offset` of the file with identity `file_uid`, tailed by source `source` of instance
 * `instance`: "lm1-" followed by the first 20 bytes of SHA-256 (libcrypto EVP) over the five
 * fields, each preceded by its length, as 40 lowercase hex digits: 44 URL-safe characters.
 * The same inputs always give the same identifier; see docs/identifiers.md.
 * `out` must have EVENT_IDENTIFIER_MAX bytes. Returns 0, or -1 if hashing failed. */
int event_identifier(char out[EVENT_IDENTIFIER_MAX], const char *instance, const char *source,
                     const char *file_uid, int64_t line_offset, const char *rule);

/* What computes identifiers for one thread: a SHA-256 context (libcrypto EVP) set up once and
 * started over for each identifier, so that making one allocates nothing. The identifier is a
 * function of stored fields, made when an event is read from the spool: a sender pays it per
 * event sent, not ingest per line. */
struct event_ids;

/* Returns a new maker (caller frees), or NULL if libcrypto cannot make a digest context. */
struct event_ids *event_ids_new(void);

/* Frees it. NULL is a no-op. */
void event_ids_free(struct event_ids *ids);

/* event_identifier with the context of `ids`: the same identifier for the same fields. Returns
 * 0, or -1 if hashing failed or a field is NULL (`out` is then ""). */
int event_ids_make(struct event_ids *ids, char out[EVENT_IDENTIFIER_MAX], const char *instance,
                   const char *source, const char *file_uid, int64_t line_offset, const char *rule);
/* Computes the identifier of the meter event of an aggregation window: rule `rule` of instance
 * `instance` and spool `spool_id` (its random id: two hosts given one instance still send
 * different identifiers, which Stripe would otherwise dedupe into one), Stripe customer
 * `customer`, window starting at `window_start` (seconds since the epoch): "lmw2-" and 40
 * lowercase hex digits of SHA-256 over the five fields, each preceded by its length, the start
 * as decimal text (docs/identifiers.md). One window, one identifier: a window is closed once,
 * so two totals never share one. `out` has EVENT_IDENTIFIER_MAX bytes. Returns 0, or -1 if
 * hashing failed. */
int event_window_identifier(char out[EVENT_IDENTIFIER_MAX], const char *instance,
                            const char *spool_id, const char *rule, const char *customer,
                            int64_t window_start);

/* event_window_identifier with the context of `ids` (event_ids_new): the same identifier, without
 * a digest context made and freed per window closed (a twentieth of the aggregated sender's CPU,
 * bench/README.md). Returns 0, or -1 if hashing failed or a field is NULL (`out` is then ""). */
int event_ids_window(struct event_ids *ids, char out[EVENT_IDENTIFIER_MAX], const char *instance,
                     const char *spool_id, const char *rule, const char *customer,
                     int64_t window_start);

/* Adds the decimal numbers `a` and `b` (as rule_parse_value writes them: optional '-', digits,
 * optional '.' and digits) exactly, in fixed point with 18 decimals and at most 20 integer
 * digits, and writes the sum in the same form (no trailing fraction zeros) into `out` (`outlen`
 * bytes, EVENT_VALUE_MAX is enough). Returns 0, or -1 if an operand does not parse or does not
 * fit that range. */
int event_value_add(const char *a, const char *b, char *out, size_t outlen);

/* Significant digits of a decimal number as event_value_add writes it (Stripe refuses more than
 * 15 since API version 2026-04-22.dahlia): from the first non-zero digit to the last digit. */
int event_value_digits(const char *v);
#define EVENT_STRIPE_DIGITS 15 /* the most significant digits Stripe takes in a value */

/* Writes the Idempotency-Key of the next attempt for `ev` into `out` (EVENT_IDEMPOTENCY_KEY_MAX
 * bytes): the identifier itself for generation 0, else the identifier followed by "-r" and the
 * generation in decimal. Stripe saves the first answer under a key, a 500 included, and replays
 * it (docs.stripe.com/api/idempotent_requests); after an attempt whose outcome is unknown the
 * sender moves to the next generation, so that the next attempt gets a fresh answer while the
 * unchanged identifier keeps Stripe from counting the event twice (docs/identifiers.md).
 * Returns 0, or -1 if the identifier is empty or the generation negative. */
int event_idempotency_key(const struct event *ev, char out[EVENT_IDEMPOTENCY_KEY_MAX]);

/* Builds the application/x-www-form-urlencoded body of POST /v1/billing/meter_events as Stripe's
 * SDKs do: event_name, identifier, timestamp, payload[<customer key>], payload[<value key>].
 * Keys and values are percent-encoded as curl_easy_escape(3) does (everything but A-Za-z0-9-._~);
 * the brackets of payload[...] are sent raw, as stripe-node does. Returns a malloc'd string
 * (caller frees), or NULL on allocation failure. */
char *event_form_body(const struct event *ev);

/* Bytes that hold the longest body event_form_body_write makes, with its NUL: every field of a
 * struct event percent-encoded (3 bytes per byte at most), a 20-digit timestamp and the text
 * around them. */
#define EVENT_FORM_BODY_MAX                                                                        \
	(3 * (EVENT_NAME_MAX + EVENT_IDENTIFIER_MAX + 2 * EVENT_KEY_MAX + EVENT_CUSTOMER_MAX +     \
	      EVENT_VALUE_MAX) +                                                                   \
	 128)

/* event_form_body into the caller's `out` (`outlen` bytes; EVENT_FORM_BODY_MAX is always
 * enough), NUL-terminated, without allocating: the same bytes. Returns the body's length, or 0
 * if `ev` is NULL or it does not fit. */
size_t event_form_body_write(const struct event *ev, char *out, size_t outlen);

#endif
