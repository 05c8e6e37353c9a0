/* stripe_v2: the meter event stream's request body, its answers and its session object. */
#include "send/stripe_v2.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "util/log.h"

int stripe_v2_rfc3339(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (out == NULL || outlen < 25 || gmtime_r(&tt, &tm) == NULL)
		return -1;
	return strftime(out, outlen, "%Y-%m-%dT%H:%M:%S.000Z", &tm) > 0 ? 0 : -1;
}

int stripe_v2_parse_rfc3339(const char *text, int64_t *out)
{
	struct tm tm;
	const char *p;
	int64_t t, off = 0;

	if (text == NULL || out == NULL)
		return -1;
	memset(&tm, 0, sizeof(tm));
	p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL)
		return -1;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
	           p[2] <= '9' && p[3] == ':' && p[4] >= '0' && p[4] <= '9' && p[5] >= '0' &&
	           p[5] <= '9') {
		off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 +
		      ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
		if (*p == '-')
			off = -off;
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	t = (int64_t)timegm(&tm);
	if (t == -1)
		return -1;
	*out = t - off;
	return 0;
}

/* A request body being written: `len` bytes in `p` (`cap` allocated); `failed` once memory ran
 * out or a string was not UTF-8. */
struct body {
	char *p;
	size_t len, cap;
	int failed;
};

static void put(struct body *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = 2 * (b->len + n + 1);
		char *p = realloc(b->p, cap);

		if (p == NULL) {
			b->failed = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* The length of the UTF-8 sequence at `s` (`n` bytes left), or 0 if it is not one: overlong
 * forms, surrogates and code points beyond U+10FFFF are refused, as jansson refuses them
 * (RFC 3629). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	uint32_t c;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2, c = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3, c = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4, c = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
	    (len == 4 && (c < 0x10000 || c > 0x10FFFF)))
		return 0;
	return len;
}

/* 1 if a JSON string carries byte `c` as it is: printable ASCII (DEL too) but quote and
 * backslash. */
static int json_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* The text at `s` (up to `max` bytes or its NUL) as a JSON string, escaped as jansson's json_dumps
 * escapes it (without JSON_ENSURE_ASCII): quote, backslash and control characters only. Text
 * that is not UTF-8 fails the body, as it fails jansson's. Scanned once, the NUL looked for
 * with the rest: a strnlen per field first cost as much as the escaping (bench/README.md). */
static void put_field(struct body *b, const char *s, size_t max)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t run = 0, i = 0;

	put(b, "\"", 1);
	while (i < max && u[i] != '\0') {
		size_t len;
		char esc[8];

		/* Printable ASCII other than quote and backslash, most of every text: taken as it
		 * is without a call per byte. */
		if (json_plain(u[i])) {
			i++;
			run++;
			continue;
		}
		if (u[i] >= 0x80) {
			len = utf8_len(u + i, max - i); /* a NUL is no continuation byte */
			if (len == 0) {
				b->failed = 1;
				return;
			}
			i += len;
			run += len;
			continue;
		}
		put(b, s + i - run, run);
		run = 0;
		switch (u[i]) {
		case '"':
			put(b, "\\\"", 2);
			break;
		case '\\':
			put(b, "\\\\", 2);
			break;
		case '\b':
			put(b, "\\b", 2);
			break;
		case '\f':
			put(b, "\\f", 2);
			break;
		case '\n':
			put(b, "\\n", 2);
			break;
		case '\r':
			put(b, "\\r", 2);
			break;
		case '\t':
			put(b, "\\t", 2);
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04X", u[i]);
			put(b, esc, 6);
		}
		i++;
	}
	put(b, s + i - run, run);
	put(b, "\"", 1);
}

char *stripe_v2_stream_body(const struct event *const *evs, size_t n)
{
	struct body b = {NULL, 0, 0, 0};
	char ts[32] = "";
	int64_t ts_of = 0;

	if (evs == NULL || n == 0 || n > STRIPE_V2_BATCH_MAX)
		return NULL;
	/* About 200 bytes an event here: one allocation for most bodies. */
	b.cap = 256 * n + 16;
	b.p = malloc(b.cap);
	if (b.p == NULL)
		return NULL;
	/* Written directly: building a jansson tree per event (objects, copies, a hash table)
	 * and dumping it cost 15 times the rest of sending an event (bench/send_v2.sh). The unit
	 * test holds the result to what jansson makes of the same events. */
	put(&b, "{\"events\":[", 11);
	for (size_t i = 0; i < n; i++) {
		const struct event *ev = evs[i];

		/* A batch's events are mostly of the same second. */
		if (ts[0] == '\0' || ev->timestamp != ts_of) {
			if (stripe_v2_rfc3339(ev->timestamp, ts, sizeof(ts)) != 0) {
				b.failed = 1;
				break;
			}
			ts_of = ev->timestamp;
		}
		put(&b, i > 0 ? ",{\"event_name\":" : "{\"event_name\":", i > 0 ? 15 : 14);
		put_field(&b, ev->event_name, sizeof(ev->event_name));
		put(&b, ",\"identifier\":", 14);
		put_field(&b, ev->identifier, sizeof(ev->identifier));
		put(&b, ",\"payload\":{", 12);
		/* One key for both (a JSON object has each key once): the value, as jansson's
		 * second set replaces the first. */
		if (strncmp(ev->payload_customer_key, ev->payload_value_key,
		            sizeof(ev->payload_value_key)) != 0) {
			put_field(&b, ev->payload_customer_key, sizeof(ev->payload_customer_key));
			put(&b, ":", 1);
			put_field(&b, ev->customer, sizeof(ev->customer));
			put(&b, ",", 1);
		}
		put_field(&b, ev->payload_value_key, sizeof(ev->payload_value_key));
		put(&b, ":", 1);
		put_field(&b, ev->value, sizeof(ev->value));
		put(&b, "},\"timestamp\":", 14);
		put_field(&b, ts, sizeof(ts));
		put(&b, "}", 1);
	}
	put(&b, "]}", 2);
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	b.p[b.len] = '\0';
	return b.p;
}

/* 1 if the text at `s` (up to `max` bytes or its NUL) is UTF-8 as jansson's json_stringn takes
 * it (utf8_len), else 0. */
static int utf8_valid(const char *s, size_t max)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < max && u[i] != '\0') {
		size_t len;

		if (u[i] < 0x80) {
			i++;
			continue;
		}
		len = utf8_len(u + i, max - i); /* a NUL is no continuation byte */
		if (len == 0)
			return 0;
		i += len;
	}
	return 1;
}

int stripe_v2_event_check(const struct event *ev, char *why, size_t whylen)
{
	const struct {
		const char *name, *text;
		size_t size;
	} fields[] = {
	    {"the customer", ev->customer, sizeof(ev->customer)},
	    {"the value", ev->value, sizeof(ev->value)},
	    {"event_name", ev->event_name, sizeof(ev->event_name)},
	    {"the identifier", ev->identifier, sizeof(ev->identifier)},
	    {"payload_customer_key", ev->payload_customer_key, sizeof(ev->payload_customer_key)},
	    {"payload_value_key", ev->payload_value_key, sizeof(ev->payload_value_key)},
	};

	/* The check jansson's json_stringn makes, without a string allocated and freed per field
	 * of every event sent (14 % of sending's instructions, bench/README.md); the unit test
	 * holds the two to the same answers. */
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (!utf8_valid(fields[i].text, fields[i].size)) {
			snprintf(
			    why, whylen,
			    "%s is not valid UTF-8, which the meter event stream's JSON cannot "
			    "carry; not sent",
			    fields[i].name);
			return -1;
		}
	}
	return 0;
}

static int str_eq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

enum stripe_outcome stripe_v2_classify(const struct stripe_response *r, char *reason,
                                       size_t reasonlen)
{
	enum stripe_outcome v1 = stripe_classify(r, reason, reasonlen);
	json_t *root = NULL, *e;
	const char *type = NULL, *code = NULL, *message = NULL;
	enum stripe_outcome out = v1;
	long st;

	if (r == NULL || r->curl_code != CURLE_OK)
		return v1;
	st = r->status;
	if (r->body != NULL && r->body_len > 0)
		root = json_loadb(r->body, r->body_len, 0, NULL);
	e = json_object_get(root, "error");
	if (json_is_object(e)) {
		type = json_string_value(json_object_get(e, "type"));
		code = json_string_value(json_object_get(e, "code"));
		message = json_string_value(json_object_get(e, "message"));
	}
	if (st >= 200 && st <= 299) {
		/* The stream answers {}: no meter event to check, only that it is Stripe's JSON. A
		 * captive portal's HTML stays unexpected. */
		if (json_is_object(root) && e == NULL) {
			out = STRIPE_DELIVERED;
			if (reason != NULL && reasonlen > 0)
				snprintf(reason, reasonlen, "HTTP %ld", st);
		}
	} else if (st == 401 || (st >= 400 && st <= 499 &&
	                         (str_eq(type, "temporary_session_expired") ||
	                          str_eq(code, "billing_meter_event_session_expired")))) {
		/* The stream is authorised by the session's token alone, never the key (which
		 * the session request shows Stripe takes): a 401 refuses the token, whatever its
		 * body (the session expired, v2.error, v1's error without a code), as an expired
		 * one. A new session, and the same events again; a key Stripe refuses meanwhile
		 * is refused there, and three sessions refused in a row pause. So does the
		 * session-expired error with another 4xx status: Stripe's reference gives it 401,
		 * but the SDKs read its type whatever the status (stripe-node generateV2Error;
		 * stripe-ruby tests it with a 400), and taken for a refusal of the events it
		 * made dead letters of every event sent with that token. */
		out = STRIPE_SESSION_EXPIRED;
	} else if (v1 == STRIPE_DELIVERED && st >= 400 && st <= 499) {
		/* A duplicate identifier (code duplicate_meter_event, or v1's "An event already
		 * exists"): that event Stripe has. The stream documents no such answer, and one to
		 * a request of several events does not say which of them, nor whether the others
		 * were taken: batch_done halves such a request as a refused one, and takes the
		 * answer for a delivery only for a request of one event. */
		out = STRIPE_DELIVERED;
	} else if ((st == 400 || st == 404 || st == 422) && json_is_object(e) &&
	           (code != NULL || type != NULL) && message != NULL &&
	           !str_eq(type, "rate_limit") && !str_eq(code, "rate_limit") &&
	           !str_eq(type, "idempotency_error") &&
	           strncmp(message, "Unrecognized request URL", 24) != 0 &&
	           v1 != STRIPE_RATE_LIMITED && v1 != STRIPE_RETRY) {
		/* v2 errors carry a code and may lack a type (invalid_fields: stripe-node's
		 * generateV2Error); v1 required invalid_request_error. */
		out = STRIPE_REJECTED;
	} else if (st == 429 || str_eq(type, "rate_limit")) {
		out = STRIPE_RATE_LIMITED;
	}
	json_decref(root);
	return out;
}

int stripe_v2_session_parse(const char *body, size_t len, struct stripe_v2_session *out, char *err,
                            size_t errlen)
{
	json_t *root;
	const char *object, *token, *created, *expires;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	root = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
	object = json_string_value(json_object_get(root, "object"));
	token = json_string_value(json_object_get(root, "authentication_token"));
	created = json_string_value(json_object_get(root, "created"));
	expires = json_string_value(json_object_get(root, "expires_at"));
	if (!str_eq(object, "v2.billing.meter_event_session")) {
		err_set(err, errlen, "the answer is not a v2.billing.meter_event_session");
		goto out;
	}
	if (token == NULL || token[0] == '\0' || strlen(token) >= sizeof(out->token)) {
		err_set(err, errlen, "the session has no usable authentication_token");
		goto out;
	}
	for (const char *p = token; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			err_set(err, errlen,
			        "the session's authentication_token is not visible ASCII");
			goto out;
		}
	}
	if (stripe_v2_parse_rfc3339(created, &out->created) != 0 ||
	    stripe_v2_parse_rfc3339(expires, &out->expires_at) != 0 ||
	    out->expires_at <= out->created) {
		err_set(err, errlen,
		        "the session's created and expires_at are not RFC 3339 times "
		        "with expires_at after created");
		goto out;
	}
	memcpy(out->token, token, strlen(token) + 1);
	rc = 0;
out:
	json_decref(root);
	if (rc != 0)
		explicit_bzero(out, sizeof(*out));
	return rc;
}

#define STRIPE_V2_RATE_LIVE 100 /* requests of 100 events: 10,000 events a second */
#define STRIPE_V2_RATE_TEST 25

int64_t stripe_v2_default_rate(const char *key, const char *account, char *why, size_t whylen)
{
	char scratch[1];
	int live =
	    key != NULL && (strncmp(key, "sk_live_", 8) == 0 || strncmp(key, "rk_live_", 8) == 0);

	if (why == NULL || whylen == 0) {
		why = scratch;
		whylen = sizeof(scratch);
	}
	if (live && account != NULL && account[0] != '\0') {
		snprintf(why, whylen,
		         "v2 stream, live key for a connected account: no documented "
		         "limit, the test-mode one");
		return STRIPE_V2_RATE_TEST;
	}
	if (live) {
		snprintf(why, whylen,
		         "v2 stream, live key (%.8s...): Stripe's 10,000 events a second, "
		         "in requests of 100",
		         key);
		return STRIPE_V2_RATE_LIVE;
	}
	snprintf(why, whylen, "v2 stream, %s: each request counts against Stripe's basic limit",
	         key != NULL &&
	                 (strncmp(key, "sk_test_", 8) == 0 || strncmp(key, "rk_test_", 8) == 0)
	             ? "test key"
	             : "a key of unknown kind");
	return STRIPE_V2_RATE_TEST;
}
