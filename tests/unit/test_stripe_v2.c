/* Unit tests of stripe_v2.c: the stream's request body, the classification of its answers (each
 * row cites where Stripe documents the answer), the session object and RFC 3339 times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/event.h"
#include "send/stripe_v2.h"

static void test_rfc3339(void **state)
{
	char out[32];
	int64_t t;

	(void)state;
	/* date -u -d @1717243200 +%FT%T: 2024-06-01T12:00:00, Stripe's example time */
	assert_int_equal(stripe_v2_rfc3339(1717243200, out, sizeof(out)), 0);
	assert_string_equal(out, "2024-06-01T12:00:00.000Z");
	assert_int_equal(stripe_v2_rfc3339(1717243200, out, 10), -1);
	assert_int_equal(stripe_v2_parse_rfc3339("2024-06-01T12:15:00.000Z", &t), 0);
	assert_int_equal(t, 1717243200 + 900);
	assert_int_equal(stripe_v2_parse_rfc3339("2024-06-01T13:00:00+01:00", &t), 0);
	assert_int_equal(t, 1717243200);
	assert_int_equal(stripe_v2_parse_rfc3339("2024-06-01T12:00:00", &t), -1);
	assert_int_equal(stripe_v2_parse_rfc3339("2024-06-01 12:00:00Z", &t), -1);
	assert_int_equal(stripe_v2_parse_rfc3339("2024-06-01T12:00:00.Z", &t), -1);
	assert_int_equal(stripe_v2_parse_rfc3339("2024-06-01T12:00:00Zjunk", &t), -1);
	assert_int_equal(stripe_v2_parse_rfc3339(NULL, &t), -1);
}

static void fill(struct event *ev, const char *id, const char *cus, const char *value)
{
	memset(ev, 0, sizeof(*ev));
	snprintf(ev->identifier, sizeof(ev->identifier), "%s", id);
	snprintf(ev->event_name, sizeof(ev->event_name), "bandwidth_bytes");
	snprintf(ev->payload_customer_key, sizeof(ev->payload_customer_key), "stripe_customer_id");
	snprintf(ev->payload_value_key, sizeof(ev->payload_value_key), "bytes");
	snprintf(ev->customer, sizeof(ev->customer), "%s", cus);
	snprintf(ev->value, sizeof(ev->value), "%s", value);
	ev->timestamp = 1717243200;
}

/* The body is the stream's schema (stripe-go v2billing_metereventstream_params.go): events with
 * event_name, identifier, payload of strings and an RFC 3339 timestamp. */
/* What JSON cannot carry is found before a request is built (RFC 8259 section 8.1). */
static void test_event_check(void **state)
{
	struct event a;
	char why[256] = "";

	(void)state;
	fill(&a, "lm1-a", "cus_\xc3\xa9", "25"); /* U+00E9: fine */
	assert_int_equal(stripe_v2_event_check(&a, why, sizeof(why)), 0);
	fill(&a, "lm1-a", "cus_\xff", "25");
	assert_int_equal(stripe_v2_event_check(&a, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "the customer is not valid UTF-8"));
	fill(&a, "lm1-a", "cus_\xc3", "25"); /* cut in the middle of a character */
	assert_int_equal(stripe_v2_event_check(&a, why, sizeof(why)), -1);
}

static void test_stream_body(void **state)
{
	struct event a, b;
	const struct event *evs[STRIPE_V2_BATCH_MAX + 1];
	char *body;
	json_t *root, *e;

	(void)state;
	fill(&a, "lm1-a", "cus_A", "25");
	fill(&b, "lm1-b", "cus_\"B\"", "-0.5");
	evs[0] = &a;
	evs[1] = &b;
	body = stripe_v2_stream_body(evs, 2);
	assert_non_null(body);
	root = json_loads(body, 0, NULL);
	assert_non_null(root);
	assert_int_equal(json_object_size(root), 1);
	assert_int_equal(json_array_size(json_object_get(root, "events")), 2);
	e = json_array_get(json_object_get(root, "events"), 1);
	assert_string_equal(json_string_value(json_object_get(e, "identifier")), "lm1-b");
	assert_string_equal(json_string_value(json_object_get(e, "event_name")), "bandwidth_bytes");
	assert_string_equal(json_string_value(json_object_get(e, "timestamp")),
	                    "2024-06-01T12:00:00.000Z");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(e, "payload"), "stripe_customer_id")),
	    "cus_\"B\"");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(e, "payload"), "bytes")), "-0.5");
	json_decref(root);
	free(body);
	for (size_t i = 0; i <= STRIPE_V2_BATCH_MAX; i++)
		evs[i] = &a;
	assert_null(stripe_v2_stream_body(evs, 0));
	assert_null(stripe_v2_stream_body(evs, STRIPE_V2_BATCH_MAX + 1));
	body = stripe_v2_stream_body(evs, STRIPE_V2_BATCH_MAX);
	assert_non_null(body);
	free(body);
}

/* The body as jansson writes the same events (json_dumps, JSON_COMPACT | JSON_PRESERVE_ORDER):
 * the independent reference for the body logmeter writes directly. NULL where jansson refuses
 * a text (not UTF-8). */
static char *jansson_body(const struct event *const *evs, size_t n)
{
	json_t *root = json_object(), *arr = json_array();
	char *body = NULL;
	int bad = json_object_set(root, "events", arr) != 0;

	for (size_t i = 0; i < n && !bad; i++) {
		const struct event *ev = evs[i];
		json_t *e = json_object(), *payload = json_object();
		char ts[32];

		assert_int_equal(stripe_v2_rfc3339(ev->timestamp, ts, sizeof(ts)), 0);
		json_array_append_new(arr, e);
		bad = json_object_set_new(payload, ev->payload_customer_key,
		                          json_string(ev->customer)) != 0 ||
		      json_object_set_new(payload, ev->payload_value_key, json_string(ev->value)) !=
		          0 ||
		      json_object_set_new(e, "event_name", json_string(ev->event_name)) != 0 ||
		      json_object_set_new(e, "identifier", json_string(ev->identifier)) != 0 ||
		      json_object_set(e, "payload", payload) != 0 ||
		      json_object_set_new(e, "timestamp", json_string(ts)) != 0;
		json_decref(payload); /* e holds it, unless a set above failed first */
	}
	if (!bad)
		body = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(arr);
	json_decref(root);
	return body;
}

/* Byte for byte what jansson writes: escapes of quotes, backslashes and every control
 * character, UTF-8 of two to four bytes kept as it is, DEL and U+2028 unescaped, one key when
 * both payload keys are the same, and texts that are not UTF-8 (overlong, surrogate, beyond
 * U+10FFFF, cut short, a lone continuation byte) refused. */
static void test_stream_body_as_jansson(void **state)
{
	static const char *const texts[] = {"cus_plain",
	                                    "a\"b\\c/d",
	                                    "tab\there\nnl\r\b\f",
	                                    "\x01\x1f\x7f end",
	                                    "caf\xc3\xa9",
	                                    "\xe2\x80\xa8 ls",
	                                    "\xf0\x9f\x98\x80 4 bytes",
	                                    "\xef\xbf\xbf",
	                                    "\xc0\xaf",
	                                    "\xed\xa0\x80",
	                                    "\xf4\x90\x80\x80",
	                                    "cut \xe2\x82",
	                                    "\x80 lone",
	                                    "\xc2",
	                                    "\xf5\x80\x80\x80",
	                                    ""};
	size_t n_texts = sizeof(texts) / sizeof(texts[0]);
	struct event evs[4];
	const struct event *p[4] = {&evs[0], &evs[1], &evs[2], &evs[3]};

	(void)state;
	for (size_t i = 0; i < n_texts; i++) {
		for (int where = 0; where < 4; where++) {
			char *want, *got;

			for (int k = 0; k < 4; k++) {
				fill(&evs[k], "lm1-x", "cus_A", "1");
				evs[k].timestamp = 1717243200 + k / 2;
			}
			/* The text as a customer, an event name, a payload key, a value. */
			if (where == 0)
				snprintf(evs[1].customer, sizeof(evs[1].customer), "%s", texts[i]);
			else if (where == 1)
				snprintf(evs[2].event_name, sizeof(evs[2].event_name), "%s",
				         texts[i]);
			else if (where == 2)
				snprintf(evs[3].payload_value_key, sizeof(evs[3].payload_value_key),
				         "%s", texts[i]);
			else
				snprintf(evs[0].value, sizeof(evs[0].value), "%s", texts[i]);
			want = jansson_body(p, 4);
			got = stripe_v2_stream_body(p, 4);
			if (want == NULL) {
				assert_null(got);
			} else {
				assert_non_null(got);
				assert_string_equal(got, want);
			}
			/* The check before sending refuses what jansson refuses, and only that. */
			for (int k = 0; k < 4; k++) {
				char why[256];
				json_t *j[6] = {
				    json_string(evs[k].customer),
				    json_string(evs[k].value),
				    json_string(evs[k].event_name),
				    json_string(evs[k].identifier),
				    json_string(evs[k].payload_customer_key),
				    json_string(evs[k].payload_value_key),
				};
				int ok = 1;

				for (int f = 0; f < 6; f++) {
					ok = ok && j[f] != NULL;
					json_decref(j[f]);
				}
				assert_int_equal(stripe_v2_event_check(&evs[k], why, sizeof(why)),
				                 ok ? 0 : -1);
			}
			free(want);
			free(got);
		}
	}
	/* Both payload keys the same. */
	fill(&evs[0], "lm1-x", "cus_A", "7");
	snprintf(evs[0].payload_value_key, sizeof(evs[0].payload_value_key), "%s",
	         evs[0].payload_customer_key);
	{
		char *want = jansson_body(p, 1), *got = stripe_v2_stream_body(p, 1);

		assert_non_null(want);
		assert_non_null(got);
		assert_string_equal(got, want);
		free(want);
		free(got);
	}
}

struct row {
	const char *why; /* the source */
	long status;
	const char *body;
	enum stripe_outcome want;
};

static void test_classify(void **state)
{
	static const struct row rows[] = {
	    /* docs.stripe.com/api/v2/billing/meter-event-stream/create: "Response {}" */
	    {"200 {}", 200, "{}", STRIPE_DELIVERED},
	    /* a captive portal or proxy: not Stripe's answer */
	    {"200 html", 200, "<html>login</html>", STRIPE_UNEXPECTED},
	    {"200 error object", 200, "{\"error\":{\"code\":\"x\",\"message\":\"y\"}}",
	     STRIPE_UNEXPECTED},
	    /* the same page, Error Codes: 401 billing_meter_event_session_expired; the OpenAPI
	     * schema v2.error.billing_meter_event_session_expired (type temporary_session_expired)
	     */
	    {"401 session expired", 401,
	     "{\"error\":{\"type\":\"temporary_session_expired\",\"code\":"
	     "\"billing_meter_event_session_expired\",\"message\":\"The temporary session token "
	     "has "
	     "expired.\",\"doc_url\":\"https://docs.stripe.com\"}}",
	     STRIPE_SESSION_EXPIRED},
	    /* stripe-node test/RequestSender.spec.ts: the type alone decides */
	    {"401 type only", 401, "{\"error\":{\"type\":\"temporary_session_expired\"}}",
	     STRIPE_SESSION_EXPIRED},
	    /* a token Stripe does not take, in the v2 error shape (the stream's `default` response,
	     * schema v2.error: code and message required): the session's token is refused, never
	     * the key, which the stream does not see */
	    {"401 v2 error", 401,
	     "{\"error\":{\"type\":\"invalid_request_error\",\"code\":"
	     "\"invalid_authentication_token\",\"message\":\"Invalid authentication token\"}}",
	     STRIPE_SESSION_EXPIRED},
	    {"401 v2 error, no type", 401,
	     "{\"error\":{\"code\":\"unauthorized\",\"message\":\"no\"}}", STRIPE_SESSION_EXPIRED},
	    /* v1's 401 (docs.stripe.com/api/errors: a type, no code) to a stream request: the
	     * request carries the session's token, not the key, so the token is refused, whatever
	     * the body (a key Stripe refuses is refused by the next session request) */
	    {"401 v1 error", 401,
	     "{\"error\":{\"type\":\"invalid_request_error\",\"message\":\"Invalid API Key\"}}",
	     STRIPE_SESSION_EXPIRED},
	    {"401 no body", 401, "", STRIPE_SESSION_EXPIRED},
	    /* the session-expired error with another status: stripe-ruby's V2ErrorTest answers it
	     * with a 400 and expects TemporarySessionExpiredError; the type decides, not a refusal
	     * of the events (which would make dead letters of events Stripe never looked at) */
	    {"400 session expired", 400,
	     "{\"error\":{\"type\":\"temporary_session_expired\",\"code\":"
	     "\"billing_meter_event_session_expired\",\"message\":\"expired\"}}",
	     STRIPE_SESSION_EXPIRED},
	    {"403 session expired code only", 403,
	     "{\"error\":{\"code\":\"billing_meter_event_session_expired\",\"message\":\"x\"}}",
	     STRIPE_SESSION_EXPIRED},
	    {"401 html", 401, "<html>401 Unauthorized</html>", STRIPE_SESSION_EXPIRED},
	    /* the OpenAPI spec's v2.error.duplicate_meter_event (not documented for the stream):
	     * the identifier is Stripe's already; batch_done halves a request of several events */
	    {"400 duplicate_meter_event", 400,
	     "{\"error\":{\"code\":\"duplicate_meter_event\",\"message\":\"A meter event with "
	     "a duplicate identifier has already been submitted.\"}}",
	     STRIPE_DELIVERED},
	    /* stripe-node generateV2Error: invalid_fields carries a code, no type */
	    {"400 invalid_fields", 400,
	     "{\"error\":{\"code\":\"invalid_fields\",\"message\":\"events[0].payload\"}}",
	     STRIPE_REJECTED},
	    /* stripe-go example TestRateLimitErrorClient: type rate_limit */
	    {"429 rate_limit", 429,
	     "{\"error\":{\"type\":\"rate_limit\",\"code\":\"account_rate_limit_exceeded\","
	     "\"message\":\"slow down\"}}",
	     STRIPE_RATE_LIMITED},
	    {"400 rate_limit type", 400,
	     "{\"error\":{\"type\":\"rate_limit\",\"code\":\"x\",\"message\":\"slow down\"}}",
	     STRIPE_RATE_LIMITED},
	    /* 5xx: the outcome is unknown, the identifiers decide (docs/stripe-contract.md 3) */
	    {"500", 500,
	     "{\"error\":{\"type\":\"api_error\",\"code\":\"internal_error\","
	     "\"message\":\"oops\"}}",
	     STRIPE_UNKNOWN},
	    {"503 html", 503, "<html>down</html>", STRIPE_UNKNOWN},
	    /* a wrong meter_events_base: Stripe's 404 for a path it does not serve */
	    {"404 url", 404,
	     "{\"error\":{\"type\":\"invalid_request_error\",\"message\":\"Unrecognized request "
	     "URL (POST: /v2/x)\"}}",
	     STRIPE_UNEXPECTED},
	    {"302", 302, "", STRIPE_UNEXPECTED},
	    {"403", 403, "{\"error\":{\"code\":\"forbidden\",\"message\":\"no\"}}", STRIPE_AUTH},
	};
	char reason[STRIPE_REASON_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct stripe_response r = {.curl_code = CURLE_OK,
		                            .status = rows[i].status,
		                            .should_retry = -1,
		                            .body = rows[i].body,
		                            .body_len = strlen(rows[i].body)};
		enum stripe_outcome got = stripe_v2_classify(&r, reason, sizeof(reason));

		if (got != rows[i].want)
			fail_msg("%s: outcome %d, want %d (%s)", rows[i].why, (int)got,
			         (int)rows[i].want, reason);
	}
	{
		struct stripe_response r = {.curl_code = CURLE_RECV_ERROR, .should_retry = -1};

		assert_int_equal(stripe_v2_classify(&r, reason, sizeof(reason)), STRIPE_UNKNOWN);
		r.curl_code = CURLE_COULDNT_CONNECT;
		assert_int_equal(stripe_v2_classify(&r, reason, sizeof(reason)), STRIPE_RETRY);
	}
}

/* docs.stripe.com/api/v2/billing/meter-event-stream/session/create, the example response */
static void test_session_parse(void **state)
{
	static const char ok[] =
	    "{\"id\":\"mes_1\",\"livemode\":false,\"object\":\"v2.billing.meter_event_session\","
	    "\"authentication_token\":\"token_12345678\",\"created\":\"2024-06-01T12:00:00.000Z\","
	    "\"expires_at\":\"2024-06-01T12:15:00.000Z\"}";
	struct stripe_v2_session s;
	char err[256];

	(void)state;
	assert_int_equal(stripe_v2_session_parse(ok, strlen(ok), &s, err, sizeof(err)), 0);
	assert_string_equal(s.token, "token_12345678");
	assert_int_equal(s.expires_at - s.created, 900);
	static const char *const bad[] = {
	    "{}",
	    "{\"object\":\"v2.billing.meter_event\",\"authentication_token\":\"t\","
	    "\"created\":\"2024-06-01T12:00:00Z\",\"expires_at\":\"2024-06-01T12:15:00Z\"}",
	    "{\"object\":\"v2.billing.meter_event_session\",\"authentication_token\":\"a b\","
	    "\"created\":\"2024-06-01T12:00:00Z\",\"expires_at\":\"2024-06-01T12:15:00Z\"}",
	    "{\"object\":\"v2.billing.meter_event_session\",\"authentication_token\":\"t\","
	    "\"created\":\"2024-06-01T12:15:00Z\",\"expires_at\":\"2024-06-01T12:00:00Z\"}",
	    "{\"object\":\"v2.billing.meter_event_session\",\"authentication_token\":\"t\","
	    "\"created\":1717243200,\"expires_at\":1717244100}",
	    "not json",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(
		    stripe_v2_session_parse(bad[i], strlen(bad[i]), &s, err, sizeof(err)), -1);
		assert_true(err[0] != '\0');
		assert_null(strstr(err, "token_"));
	}
}

/* The changelog of 2024-09-30.acacia: 10k events a second; in test mode each request counts
 * against the basic limit (docs.stripe.com/billing/subscriptions/usage-based/
 * recording-usage-api). */
static void test_default_rate(void **state)
{
	(void)state;
	assert_int_equal(stripe_v2_default_rate("sk_live_x", NULL, NULL, 0), 100);
	assert_int_equal(stripe_v2_default_rate("rk_live_x", "", NULL, 0), 100);
	assert_int_equal(stripe_v2_default_rate("sk_test_x", NULL, NULL, 0), 25);
	assert_int_equal(stripe_v2_default_rate("weird", NULL, NULL, 0), 25);
	assert_int_equal(stripe_v2_default_rate("sk_live_x", "acct_1", NULL, 0), 25);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc3339),
	    cmocka_unit_test(test_stream_body),
	    cmocka_unit_test(test_stream_body_as_jansson),
	    cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_session_parse),
	    cmocka_unit_test(test_default_rate),
	    cmocka_unit_test(test_event_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
