/* stripe_v2: the meter event stream's request body, its answers and its session object. */
#include "send/stripe_v2.h"

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

char *stripe_v2_stream_body(const struct event *const *evs, size_t n)
{
	json_t *root = NULL, *arr = NULL;
	char *body = NULL;

	if (evs == NULL || n == 0 || n > STRIPE_V2_BATCH_MAX)
		return NULL;
	root = json_object();
	arr = json_array();
	if (root == NULL || arr == NULL || json_object_set(root, "events", arr) != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const struct event *ev = evs[i];
		char ts[32];
		json_t *e, *payload;

		if (stripe_v2_rfc3339(ev->timestamp, ts, sizeof(ts)) != 0)
			goto out;
		payload = json_object();
		e = json_object();
		if (payload == NULL || e == NULL || json_array_append_new(arr, e) != 0) {
			json_decref(payload);
			json_decref(e);
			goto out;
		}
		/* The event's fields are bounded arrays; jansson copies what it is given. */
		if (json_object_set_new(
		        payload, ev->payload_customer_key,
		        json_stringn_nocheck(ev->customer,
		                             strnlen(ev->customer, sizeof(ev->customer)))) != 0 ||
		    json_object_set_new(
		        payload, ev->payload_value_key,
		        json_stringn_nocheck(ev->value, strnlen(ev->value, sizeof(ev->value)))) !=
		        0 ||
		    json_object_set_new(e, "event_name", json_string(ev->event_name)) != 0 ||
		    json_object_set_new(e, "identifier", json_string(ev->identifier)) != 0 ||
		    json_object_set_new(e, "payload", payload) != 0 ||
		    json_object_set_new(e, "timestamp", json_string(ts)) != 0)
			goto out;
	}
	body = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(arr);
	json_decref(root);
	return body;
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

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *j = json_stringn(fields[i].text, strnlen(fields[i].text, fields[i].size));

		if (j == NULL) {
			snprintf(
			    why, whylen,
			    "%s is not valid UTF-8, which the meter event stream's JSON cannot "
			    "carry; not sent",
			    fields[i].name);
			return -1;
		}
		json_decref(j);
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
	} else if (st == 401 && (str_eq(type, "temporary_session_expired") ||
	                         str_eq(code, "billing_meter_event_session_expired"))) {
		out = STRIPE_SESSION_EXPIRED;
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
