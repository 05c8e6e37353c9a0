/* Unit tests of stripe.c: classification of Stripe's answers, key loading, the base URL check,
 * and the request as it goes over the wire (to a loopback socket server in this file). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/event.h"
#include "send/stripe.h"

#include "fixture.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define FAKE_KEY "sk_test_FAKEKEY123"
#define FAKE_KEY_PART "FAKEKEY123"
#define TEST_ID "lm1-0123456789abcdef0123456789abcdef01234567"

static struct fixture *fx; /* the directory for key files */

static int setup_all(void **state)
{
	(void)state;
	fx = fixture_new("test_stripe");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	unsetenv("LOGMETER_STRIPE_API_KEY");
	return 0;
}

static int teardown_all(void **state)
{
	(void)state;
	curl_global_cleanup();
	fixture_free(fx);
	return 0;
}

/* ---- classification ---- */

struct classify_case {
	const char *name;
	CURLcode curl_code;
	long status;
	int should_retry;
	int replayed;     /* Idempotent-Replayed: true */
	const char *body; /* NUL-terminated; NULL for none */
	enum stripe_outcome want;
	const char *want_reason; /* exact reason, or NULL to skip */
};

static const char already_exists[] =
    "{\"error\":{\"message\":\"An event already exists with identifier " TEST_ID ".\","
    "\"type\":\"invalid_request_error\"}}";
static const char duplicate_v2[] =
    "{\"error\":{\"message\":\"Duplicate event.\",\"type\":\"invalid_request_error\","
    "\"code\":\"duplicate_meter_event\"}}";
static const char no_meter[] =
    "{\"error\":{\"message\":\"No active meter found for event name \\\"api_calls\\\".\","
    "\"type\":\"invalid_request_error\",\"doc_url\":\"https://stripe.com/docs\"}}";
static const char too_old[] =
    "{\"error\":{\"message\":\"The event timestamp cannot be more than 35 days in past. "
    "Please use a more recent timestamp.\",\"type\":\"invalid_request_error\"}}";
static const char bad_key[] =
    "{\"error\":{\"message\":\"Invalid API Key provided: "
    "sk_test_********************1234\",\"type\":\"invalid_request_error\"}}";
static const char forbidden[] =
    "{\"error\":{\"message\":\"The provided key 'rk_test_***xyz9' does not have the required "
    "permissions for this endpoint.\",\"type\":\"invalid_request_error\"}}";
static const char api_error[] = "{\"error\":{\"message\":\"An unknown error occurred\","
                                "\"type\":\"api_error\"}}";
static const char rate_limited[] =
    "{\"error\":{\"message\":\"Request rate limit exceeded.\",\"type\":\"invalid_request_error\","
    "\"code\":\"rate_limit\"}}";
static const char lock_timeout[] =
    "{\"error\":{\"message\":\"This object cannot be accessed right now because another API "
    "request or Stripe process is currently accessing it.\",\"type\":\"invalid_request_error\","
    "\"code\":\"lock_timeout\"}}";
static const char idem_conflict[] = "{\"error\":{\"message\":\"There is currently another "
                                    "in-progress request using this Idempotent Key.\","
                                    "\"type\":\"idempotency_error\"}}";
static const char idem_mismatch[] =
    "{\"error\":{\"message\":\"Keys for idempotent requests can only be used with the same "
    "parameters they were first used with.\",\"type\":\"idempotency_error\"}}";
static const char unknown_url[] =
    "{\"error\":{\"message\":\"Unrecognized request URL (POST: /v1/v1/billing/meter_events).\","
    "\"type\":\"invalid_request_error\"}}";
static const char meter_event[] =
    "{\"object\":\"billing.meter_event\",\"created\":1764000000,\"event_name\":\"api_calls\","
    "\"identifier\":\"" TEST_ID "\",\"livemode\":false,\"payload\":{\"value\":\"1\"},"
    "\"timestamp\":1764000000}";
static const char other_event[] =
    "{\"object\":\"billing.meter_event\",\"identifier\":\"lm1-someone-else\"}";

/* The table of docs/stripe-contract.md: every row is a rule the sender relies on. */
static const struct classify_case classify_cases[] = {
    {"200 our meter event", CURLE_OK, 200, -1, 0, meter_event, STRIPE_DELIVERED, "HTTP 200"},
    {"200 replayed", CURLE_OK, 200, -1, 1, meter_event, STRIPE_DELIVERED, "HTTP 200 (replayed)"},
    {"200 without the identifier", CURLE_OK, 200, -1, 0, "{\"object\":\"billing.meter_event\"}",
     STRIPE_UNEXPECTED, "HTTP 200: the answer is not the meter event sent"},
    {"200 another identifier", CURLE_OK, 200, -1, 0, other_event, STRIPE_UNEXPECTED, NULL},
    {"200 no body", CURLE_OK, 200, -1, 0, NULL, STRIPE_UNEXPECTED, NULL},
    {"200 html", CURLE_OK, 200, -1, 0, "<html>portal</html>", STRIPE_UNEXPECTED,
     "HTTP 200: the answer is not the meter event sent"},
    {"201 our meter event", CURLE_OK, 201, -1, 0, meter_event, STRIPE_DELIVERED, "HTTP 201"},
    {"already exists", CURLE_OK, 400, -1, 0, already_exists, STRIPE_DELIVERED,
     "HTTP 400: An event already exists with identifier " TEST_ID "."},
    {"already exists, should-retry false", CURLE_OK, 400, 0, 0, already_exists, STRIPE_DELIVERED,
     NULL},
    {"already exists, replayed", CURLE_OK, 400, 0, 1, already_exists, STRIPE_DELIVERED,
     "HTTP 400: An event already exists with identifier " TEST_ID ". (replayed)"},
    {"duplicate_meter_event", CURLE_OK, 400, -1, 0, duplicate_v2, STRIPE_DELIVERED, NULL},
    {"no meter", CURLE_OK, 400, -1, 0, no_meter, STRIPE_REJECTED,
     "HTTP 400: No active meter found for event name \"api_calls\"."},
    {"no meter, replayed", CURLE_OK, 400, -1, 1, no_meter, STRIPE_UNKNOWN,
     "HTTP 400: No active meter found for event name \"api_calls\". (replayed)"},
    {"too old", CURLE_OK, 400, 0, 0, too_old, STRIPE_REJECTED,
     "HTTP 400: The event timestamp cannot be more than 35 days in past. Please use a more "
     "recent timestamp."},
    {"401", CURLE_OK, 401, -1, 0, bad_key, STRIPE_AUTH,
     "HTTP 401: Invalid API Key provided: [redacted]"},
    {"401 should-retry false", CURLE_OK, 401, 0, 0, bad_key, STRIPE_AUTH, NULL},
    {"403", CURLE_OK, 403, -1, 0, forbidden, STRIPE_AUTH,
     "HTTP 403: The provided key '[redacted]' does not have the required permissions for this "
     "endpoint."},
    {"409 key in use", CURLE_OK, 409, -1, 0, idem_conflict, STRIPE_RETRY,
     "HTTP 409: There is currently another in-progress request using this Idempotent Key."},
    {"429", CURLE_OK, 429, -1, 0, rate_limited, STRIPE_RATE_LIMITED,
     "HTTP 429: Request rate limit exceeded."},
    {"429 no body", CURLE_OK, 429, -1, 0, NULL, STRIPE_RATE_LIMITED, "HTTP 429"},
    {"429 lock timeout", CURLE_OK, 429, 1, 0, lock_timeout, STRIPE_RETRY, NULL},
    {"429 should-retry true", CURLE_OK, 429, 1, 0, NULL, STRIPE_RETRY, NULL},
    {"400 rate_limit", CURLE_OK, 400, -1, 0, rate_limited, STRIPE_RATE_LIMITED, NULL},
    {"400 lock_timeout", CURLE_OK, 400, -1, 0, lock_timeout, STRIPE_RETRY, NULL},
    {"400 should-retry true", CURLE_OK, 400, 1, 0, too_old, STRIPE_RETRY, NULL},
    {"400 idempotency mismatch", CURLE_OK, 400, -1, 0, idem_mismatch, STRIPE_UNKNOWN, NULL},
    {"500", CURLE_OK, 500, -1, 0, api_error, STRIPE_UNKNOWN, "HTTP 500: An unknown error occurred"},
    {"500 should-retry false", CURLE_OK, 500, 0, 0, api_error, STRIPE_UNKNOWN, NULL},
    {"500 replayed", CURLE_OK, 500, 0, 1, api_error, STRIPE_UNKNOWN,
     "HTTP 500: An unknown error occurred (replayed)"},
    {"502", CURLE_OK, 502, -1, 0, NULL, STRIPE_UNKNOWN, "HTTP 502"},
    {"503", CURLE_OK, 503, -1, 0, "", STRIPE_UNKNOWN, "HTTP 503"},
    {"504", CURLE_OK, 504, -1, 0, "   \r\n", STRIPE_UNKNOWN, "HTTP 504"},
    {"already exists but 500", CURLE_OK, 500, -1, 0, already_exists, STRIPE_UNKNOWN, NULL},
    {"html 502", CURLE_OK, 502, -1, 0,
     "<html>\r\n<body>Bad gateway \xc3\xa9\x01</body>\r\n</html>\r\n", STRIPE_UNKNOWN,
     "HTTP 502: <html>  <body>Bad gateway ?? </body>  </html>"},
    {"404 invalid_request_error", CURLE_OK, 404, -1, 0,
     "{\"error\":{\"type\":\"invalid_request_error\"}}", STRIPE_REJECTED,
     "HTTP 404: invalid_request_error"},
    {"404 unrecognized URL", CURLE_OK, 404, -1, 0, unknown_url, STRIPE_UNEXPECTED, NULL},
    {"404 not Stripe's", CURLE_OK, 404, -1, 0, "<html>Not Found</html>", STRIPE_UNEXPECTED,
     "HTTP 404: <html>Not Found</html>"},
    {"type and code only", CURLE_OK, 400, -1, 0, "{\"error\":{\"type\":\"t\",\"code\":\"c\"}}",
     STRIPE_UNEXPECTED, "HTTP 400: t (c)"},
    {"json not an error", CURLE_OK, 400, -1, 0, "[1,2,3]", STRIPE_UNEXPECTED, "HTTP 400"},
    {"message not a string", CURLE_OK, 400, -1, 0, "{\"error\":{\"message\":7}}", STRIPE_UNEXPECTED,
     "HTTP 400"},
    {"message with newlines", CURLE_OK, 400, -1, 0,
     "{\"error\":{\"message\":\"line one\\nline two\\ttab\",\"type\":\"invalid_request_error\"}}",
     STRIPE_REJECTED, "HTTP 400: line one line two tab"},
    {"302", CURLE_OK, 302, -1, 0, NULL, STRIPE_UNEXPECTED, "HTTP 302"},
    {"402", CURLE_OK, 402, -1, 0, "{\"error\":{\"type\":\"card_error\",\"message\":\"x\"}}",
     STRIPE_UNEXPECTED, "HTTP 402: x"},
    {"418", CURLE_OK, 418, -1, 0, NULL, STRIPE_UNEXPECTED, "HTTP 418"},
    {"no status", CURLE_OK, 0, -1, 0, NULL, STRIPE_UNKNOWN, NULL},
    {"couldn't connect", CURLE_COULDNT_CONNECT, 0, -1, 0, NULL, STRIPE_RETRY, NULL},
    {"couldn't resolve", CURLE_COULDNT_RESOLVE_HOST, 0, -1, 0, NULL, STRIPE_RETRY, NULL},
    {"timeout", CURLE_OPERATION_TIMEDOUT, 0, -1, 0, NULL, STRIPE_UNKNOWN, NULL},
    {"got nothing", CURLE_GOT_NOTHING, 0, -1, 0, NULL, STRIPE_UNKNOWN, NULL},
    {"reset", CURLE_RECV_ERROR, 0, -1, 0, NULL, STRIPE_UNKNOWN, NULL},
    {"partial body", CURLE_PARTIAL_FILE, 200, -1, 0, NULL, STRIPE_UNKNOWN, NULL},
    {"curl error despite a status", CURLE_RECV_ERROR, 200, -1, 0, NULL, STRIPE_UNKNOWN, NULL},
};

static void test_classify_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(classify_cases) / sizeof(classify_cases[0]); i++) {
		const struct classify_case *c = &classify_cases[i];
		struct stripe_response r = {
		    .curl_code = c->curl_code,
		    .status = c->status,
		    .should_retry = c->should_retry,
		    .replayed = c->replayed,
		    .body = c->body,
		    .body_len = c->body != NULL ? strlen(c->body) : 0,
		    .identifier = TEST_ID,
		};
		char reason[STRIPE_REASON_MAX];
		enum stripe_outcome got;

		memset(reason, 'x', sizeof(reason));
		got = stripe_classify(&r, reason, sizeof(reason));
		if (got != c->want)
			fail_msg("case \"%s\": outcome %d, want %d (reason: %s)", c->name, (int)got,
			         (int)c->want, reason);
		assert_non_null(memchr(reason, '\0', sizeof(reason)));
		if (c->want_reason != NULL && strcmp(reason, c->want_reason) != 0)
			fail_msg("case \"%s\": reason \"%s\", want \"%s\"", c->name, reason,
			         c->want_reason);
		/* One line, nothing unprintable. */
		for (const char *p = reason; *p != '\0'; p++)
			assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
	}
}

static void test_classify_curl_reason(void **state)
{
	static const CURLcode codes[] = {CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT,
	                                 CURLE_GOT_NOTHING};
	static const enum stripe_outcome want_out[] = {STRIPE_RETRY, STRIPE_UNKNOWN,
	                                               STRIPE_UNKNOWN};
	(void)state;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct stripe_response r = {.curl_code = codes[i], .should_retry = -1};
		char reason[STRIPE_REASON_MAX], want[STRIPE_REASON_MAX];

		assert_int_equal(stripe_classify(&r, reason, sizeof(reason)), want_out[i]);
		snprintf(want, sizeof(want), "network error: %s", curl_easy_strerror(codes[i]));
		assert_string_equal(reason, want);
	}
}

static void test_classify_long_body(void **state)
{
	char body[1000], want[300], reason[STRIPE_REASON_MAX];
	struct stripe_response r = {.status = 400, .should_retry = -1, .body = body};

	(void)state;
	memset(body, 'A', sizeof(body));
	r.body_len = sizeof(body); /* not NUL-terminated: the length is what counts */
	assert_int_equal(stripe_classify(&r, reason, sizeof(reason)), STRIPE_UNEXPECTED);
	memcpy(want, "HTTP 400: ", 10);
	memset(want + 10, 'A', 200);
	want[210] = '\0';
	assert_string_equal(reason, want);
}

static void test_classify_nul_in_body(void **state)
{
	static const char body[] = "oops\0{\"error\":{\"message\":\"x\"}}";
	struct stripe_response r = {
	    .status = 500, .should_retry = -1, .body = body, .body_len = sizeof(body) - 1};
	char reason[STRIPE_REASON_MAX];

	(void)state;
	assert_int_equal(stripe_classify(&r, reason, sizeof(reason)), STRIPE_UNKNOWN);
	assert_string_equal(reason, "HTTP 500: oops {\"error\":{\"message\":\"x\"}}");
}

static void test_classify_small_buffers(void **state)
{
	struct stripe_response r = {
	    .status = 400, .should_retry = -1, .body = no_meter, .body_len = strlen(no_meter)};
	struct stripe_response ex = {.status = 400,
	                             .should_retry = 0,
	                             .body = already_exists,
	                             .body_len = strlen(already_exists)};
	char buf[16];

	(void)state;
	/* The outcome never depends on room for the reason. */
	assert_int_equal(stripe_classify(&r, NULL, 0), STRIPE_REJECTED);
	assert_int_equal(stripe_classify(&ex, NULL, 0), STRIPE_DELIVERED);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(stripe_classify(&ex, buf, 1), STRIPE_DELIVERED);
	assert_int_equal(buf[0], '\0');
	assert_int_equal(buf[1], 'x'); /* nothing written past reasonlen */
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(stripe_classify(&r, buf, 8), STRIPE_REJECTED);
	assert_string_equal(buf, "HTTP 40");
	assert_int_equal(buf[8], 'x');
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(stripe_classify(&r, buf, 12), STRIPE_REJECTED);
	assert_string_equal(buf, "HTTP 400: N");
	assert_int_equal(stripe_classify(NULL, buf, sizeof(buf)), STRIPE_UNKNOWN);
}

static void test_classify_utf8_cut(void **state)
{
	/* "HTTP 400: " is 10 bytes; then "ab" and U+00FC (2 bytes). With 14 bytes of room the
	 * character does not fit whole and must not be cut in half. */
	static const char body[] =
	    "{\"error\":{\"message\":\"ab\xc3\xbc\",\"type\":\"invalid_request_error\"}}";
	struct stripe_response r = {
	    .status = 400, .should_retry = -1, .body = body, .body_len = sizeof(body) - 1};
	char buf[32];

	(void)state;
	assert_int_equal(stripe_classify(&r, buf, 14), STRIPE_REJECTED);
	assert_string_equal(buf, "HTTP 400: ab");
	assert_int_equal(stripe_classify(&r, buf, 15), STRIPE_REJECTED);
	assert_string_equal(buf, "HTTP 400: ab\xc3\xbc");
}

/* ---- base URL ---- */

static void test_check_base(void **state)
{
	static const struct {
		const char *base;
		int ok;
	} cases[] = {
	    {"https://api.stripe.com", 1},
	    {"https://api.stripe.com/", 1},
	    {"HTTPS://api.stripe.com", 1},
	    {"https://proxy.example:8443/stripe", 1},
	    {"http://127.0.0.1", 1},
	    {"http://127.0.0.1/", 1},
	    {"http://127.0.0.1:12111", 1},
	    {"http://127.0.0.1:12111/", 1},
	    {"http://127.0.0.1:65535", 1},
	    {"http://127.0.0.1:8080/stripe", 1},
	    {"https://api.stripe.com/v1/", 0},
	    {"http://api.stripe.com", 0},
	    {"http://localhost:12111", 0},
	    {"http://127.0.0.1:", 0},
	    {"http://127.0.0.1:0", 0},
	    {"http://127.0.0.1:65536", 0},
	    {"http://127.0.0.1:123456", 0},
	    {"http://127.0.0.1:12111/v1", 0},
	    {"http://127.0.0.1//", 0},
	    {"http://127.0.0.10", 0},
	    {"http://127.0.0.1.evil.example", 0},
	    {"http://127.0.0.1@evil.example", 0},
	    {"http://127.0.0.1:80x", 0},
	    {"ftp://api.stripe.com", 0},
	    {"https://", 0},
	    {"https:///v1", 0},
	    {"https://api.stripe.com\r\nX: y", 0},
	    {"https://api stripe.com", 0},
	    {"api.stripe.com", 0},
	    {"", 0},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		int rc = config_check_api_base(cases[i].base, err, sizeof(err));

		if ((rc == 0) != cases[i].ok)
			fail_msg("\"%s\": rc %d, want %s (%s)", cases[i].base, rc,
			         cases[i].ok ? "ok" : "refused", err);
		if (!cases[i].ok)
			assert_true(err[0] != '\0');
	}
	assert_int_equal(config_check_api_base(NULL, NULL, 0), -1);
}

/* ---- key ---- */

static char *tmp_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s", fixture_path(fx, name));
	return buf;
}

/* Loads the key from a file holding `content`; returns stripe_key_load's result. */
static int load_from(const char *content, size_t len, char *key, size_t keylen, char *err,
                     size_t errlen)
{
	char path[512];
	struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	tmp_path(path, sizeof(path), "key");
	fixture_write(path, content, len, 0);
	assert_int_equal(chmod(path, 0600), 0); /* others may not read a key file */
	cfg.stripe.api_key_file = path;
	return stripe_key_load(&cfg, key, keylen, err, errlen);
}

static void test_key_file(void **state)
{
	static const char *const good[] = {
	    FAKE_KEY "\n",
	    FAKE_KEY,
	    FAKE_KEY "\r\n",
	    FAKE_KEY "\r\n\r\n",
	};
	char key[STRIPE_KEY_MAX], err[512];

	(void)state;
	unsetenv("LOGMETER_STRIPE_API_KEY");
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		err[0] = '\0';
		if (load_from(good[i], strlen(good[i]), key, sizeof(key), err, sizeof(err)) != 0)
			fail_msg("case %zu: %s", i, err);
		assert_string_equal(key, FAKE_KEY);
	}
}

static void test_key_env_wins(void **state)
{
	char key[STRIPE_KEY_MAX], err[512] = "";

	(void)state;
	setenv("LOGMETER_STRIPE_API_KEY", "sk_test_FROMENV", 1);
	assert_int_equal(
	    load_from(FAKE_KEY "\n", strlen(FAKE_KEY) + 1, key, sizeof(key), err, sizeof(err)), 0);
	assert_string_equal(key, "sk_test_FROMENV");

	/* Also without any key file configured. */
	{
		struct config cfg;

		memset(&cfg, 0, sizeof(cfg));
		assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), 0);
		assert_string_equal(key, "sk_test_FROMENV");
	}

	/* Empty: the key file is read (stripe_key_shadowed warns of the variable)... */
	setenv("LOGMETER_STRIPE_API_KEY", "", 1);
	assert_int_equal(
	    load_from(FAKE_KEY "\n", strlen(FAKE_KEY) + 1, key, sizeof(key), err, sizeof(err)), 0);
	assert_string_equal(key, FAKE_KEY);
	/* ... and without one it is an error that names the variable. */
	{
		struct config cfg;

		memset(&cfg, 0, sizeof(cfg));
		err[0] = '\0';
		assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
		assert_non_null(strstr(err, "LOGMETER_STRIPE_API_KEY is set but empty"));
	}

	/* Blanks around the key are refused, not dropped. */
	setenv("LOGMETER_STRIPE_API_KEY", " sk_test_FROMENV", 1);
	err[0] = '\0';
	assert_int_equal(
	    load_from(FAKE_KEY "\n", strlen(FAKE_KEY) + 1, key, sizeof(key), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "blanks before or after it"));
	assert_null(strstr(err, "FROMENV"));

	setenv("LOGMETER_STRIPE_API_KEY", "sk_test_FAKE KEY123", 1);
	err[0] = '\0';
	assert_int_equal(
	    load_from(FAKE_KEY "\n", strlen(FAKE_KEY) + 1, key, sizeof(key), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "LOGMETER_STRIPE_API_KEY"));
	assert_null(strstr(err, "KEY123"));
	assert_null(strstr(err, "sk_test_FAKE"));
	unsetenv("LOGMETER_STRIPE_API_KEY");
}

static void test_key_errors(void **state)
{
	struct {
		const char *content;
		size_t len;
		const char *want; /* substring of the error */
	} cases[] = {
	    {"", 0, "empty"},
	    {"\n", 1, "empty"},
	    {"   \n" FAKE_KEY "\n", 4 + strlen(FAKE_KEY) + 1, "more than one line"},
	    /* A second line would be ignored: an old key kept below, a note. */
	    {FAKE_KEY "\nsk_test_SECOND\n", strlen(FAKE_KEY) + 16, "more than one line"},
	    /* Stripe's secret keys start with sk_, restricted keys with rk_; a publishable key
	     * cannot create meter events (docs.stripe.com/keys). */
	    {"pk_test_FAKEKEY123\n", 19, "publishable"},
	    {"STRIPE_KEY=sk_test_FAKEKEY123\n", 30, "not a secret (sk_...) or restricted"},
	    {"sk_test_FAKE KEY123\n", 20, "whitespace"},
	    {"sk_test_FAKE\tKEY123\n", 20, "whitespace"},
	    {"sk_test_FAKE\x01KEY123\n", 20, "control"},
	    {"sk_test_FAKE\0KEY123\n", 20, "control"},
	    {"sk_test_FAKE\xc3\xa9KEY123\n", 21, "non-ASCII"},
	    /* Blanks around the key are refused, not dropped: the file says what is sent. */
	    {" sk_test_FAKEKEY123\n", 20, "blanks before or after the key"},
	    {"sk_test_FAKEKEY123 \n", 20, "blanks before or after the key"},
	    {"sk_test_FAKEKEY123\t\r\n", 21, "blanks before or after the key"},
	    {"\tsk_test_FAKEKEY123\r\n", 21, "blanks before or after the key"},
	    /* A prefix alone (docs.stripe.com/api/authentication names only the prefixes), and
	     * a character no Stripe key has. */
	    {"sk_test_\n", 9, "only the prefix sk_test_"},
	    {"rk_live\n", 8, "only the prefix rk_live"},
	    {"sk_\n", 4, "only the prefix sk_"},
	    {"sk_test_FAKE,KEY123\n", 20, "not a letter, a digit or _ (at byte 13)"},
	    {"sk_test_FAKE-KEY123\n", 20, "not a letter, a digit or _"},
	};
	char key[STRIPE_KEY_MAX], err[512];
	char longkey[STRIPE_KEY_MAX + 10];
	char hugekey[8192];

	(void)state;
	unsetenv("LOGMETER_STRIPE_API_KEY");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		memset(key, 'Z', sizeof(key));
		if (load_from(cases[i].content, cases[i].len, key, sizeof(key), err, sizeof(err)) !=
		    -1)
			fail_msg("case %zu loaded", i);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].want);
		assert_null(strstr(err, FAKE_KEY_PART));
		assert_null(strstr(err, "KEY123"));
		assert_int_equal(key[0], '\0'); /* a failed load leaves no partial key */
	}

	/* Longer than STRIPE_KEY_MAX - 1. */
	memcpy(longkey, FAKE_KEY, strlen(FAKE_KEY));
	memset(longkey + strlen(FAKE_KEY), 'k', sizeof(longkey) - strlen(FAKE_KEY));
	err[0] = '\0';
	assert_int_equal(load_from(longkey, sizeof(longkey), key, sizeof(key), err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "too long"));
	assert_null(strstr(err, FAKE_KEY_PART));
	/* Exactly STRIPE_KEY_MAX - 1 bytes fits. */
	err[0] = '\0';
	assert_int_equal(load_from(longkey, STRIPE_KEY_MAX - 1, key, sizeof(key), err, sizeof(err)),
	                 0);
	assert_int_equal(strlen(key), STRIPE_KEY_MAX - 1);
	/* A file far larger than any key, without a newline. */
	memset(hugekey, 'k', sizeof(hugekey));
	err[0] = '\0';
	assert_int_equal(load_from(hugekey, sizeof(hugekey), key, sizeof(key), err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "too long"));
	/* A buffer too small for the key. */
	err[0] = '\0';
	assert_int_equal(load_from(FAKE_KEY, strlen(FAKE_KEY), key, 8, err, sizeof(err)), -1);
	assert_null(strstr(err, FAKE_KEY_PART));
}

static void test_key_unreadable(void **state)
{
	char path[512], key[STRIPE_KEY_MAX], err[512] = "";
	struct config cfg;

	(void)state;
	unsetenv("LOGMETER_STRIPE_API_KEY");
	memset(&cfg, 0, sizeof(cfg));

	/* Not configured at all. */
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
	assert_string_equal(
	    err, "no Stripe API key: set LOGMETER_STRIPE_API_KEY or [stripe] api_key_file");
	assert_int_equal(stripe_key_load(NULL, key, sizeof(key), err, sizeof(err)), -1);

	/* Missing file: the error names the path and the reason. */
	cfg.stripe.api_key_file = tmp_path(path, sizeof(path), "no-such-key");
	err[0] = '\0';
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, strerror(ENOENT)));

	/* A directory. */
	cfg.stripe.api_key_file = tmp_path(path, sizeof(path), "keydir");
	assert_int_equal(mkdir(path, 0700), 0);
	err[0] = '\0';
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, strerror(EISDIR)));

	/* Unreadable by permissions (root reads anything: only checked when not root). */
	if (geteuid() != 0) {
		cfg.stripe.api_key_file = tmp_path(path, sizeof(path), "key-0000");
		fixture_write(path, FAKE_KEY "\n", strlen(FAKE_KEY) + 1, 0);
		assert_int_equal(chmod(path, 0), 0);
		err[0] = '\0';
		assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
		assert_non_null(strstr(err, strerror(EACCES)));
		assert_null(strstr(err, FAKE_KEY_PART));
	}
}

/* A key file that grants anything to others, or write to its group, is refused with the fix in
 * the message, and without the key; read by its group is fine when that is the group logmeter
 * runs as (0640 root:logmeter is the packaged layout; here the file's group is the test's). */
static void test_key_file_mode(void **state)
{
	static const mode_t refused[] = {0644, 0604, 0602, 0601, 0666, 0777};
	static const mode_t group_writable[] = {0660, 0620, 0460};
	static const mode_t accepted[] = {0600, 0640, 0400, 0440};
	char path[512], key[STRIPE_KEY_MAX], err[512], want[64];
	struct config cfg;

	(void)state;
	unsetenv("LOGMETER_STRIPE_API_KEY");
	unsetenv("CREDENTIALS_DIRECTORY");
	memset(&cfg, 0, sizeof(cfg));
	cfg.stripe.api_key_file = tmp_path(path, sizeof(path), "key-mode");
	fixture_write(path, FAKE_KEY "\n", strlen(FAKE_KEY) + 1, 0);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		assert_int_equal(chmod(path, refused[i]), 0);
		err[0] = '\0';
		memset(key, 'Z', sizeof(key));
		assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
		snprintf(want, sizeof(want), "(mode %04o)", (unsigned)refused[i]);
		if (strstr(err, want) == NULL || strstr(err, path) == NULL ||
		    strstr(err, "by others") == NULL || strstr(err, "chmod 640") == NULL ||
		    strstr(err, "chown root:logmeter") == NULL)
			fail_msg("mode %04o: error \"%s\"", (unsigned)refused[i], err);
		assert_null(strstr(err, FAKE_KEY_PART));
		assert_int_equal(key[0], '\0');
	}
	for (size_t i = 0; i < sizeof(group_writable) / sizeof(group_writable[0]); i++) {
		assert_int_equal(chmod(path, group_writable[i]), 0);
		err[0] = '\0';
		assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
		snprintf(want, sizeof(want), "(mode %04o)", (unsigned)group_writable[i]);
		if (strstr(err, want) == NULL || strstr(err, "is writable by its group") == NULL ||
		    strstr(err, "chmod 640") == NULL)
			fail_msg("mode %04o: error \"%s\"", (unsigned)group_writable[i], err);
		assert_null(strstr(err, FAKE_KEY_PART));
	}
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		assert_int_equal(chmod(path, accepted[i]), 0);
		err[0] = '\0';
		if (stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)) != 0)
			fail_msg("mode %04o refused: %s", (unsigned)accepted[i], err);
		assert_string_equal(key, FAKE_KEY);
	}
	/* The mode of the file itself counts, not that of a symlink to it. */
	{
		char link[512];

		tmp_path(link, sizeof(link), "key-link");
		assert_int_equal(chmod(path, 0644), 0);
		assert_int_equal(symlink(path, link), 0);
		cfg.stripe.api_key_file = link;
		assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
		assert_non_null(strstr(err, "(mode 0644)"));
		assert_int_equal(chmod(path, 0600), 0);
		assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), 0);
		assert_string_equal(key, FAKE_KEY);
		unlink(link);
	}
}

/* Precedence: LOGMETER_STRIPE_API_KEY > $CREDENTIALS_DIRECTORY/stripe.key > api_key_file. */
static void test_key_credential(void **state)
{
	char dir[512], cred[600], path[512], key[STRIPE_KEY_MAX], err[512] = "";
	struct config cfg;

	(void)state;
	unsetenv("LOGMETER_STRIPE_API_KEY");
	memset(&cfg, 0, sizeof(cfg));
	tmp_path(dir, sizeof(dir), "credentials");
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(cred, sizeof(cred), "%s/stripe.key", dir);
	cfg.stripe.api_key_file = tmp_path(path, sizeof(path), "key-file");
	fixture_write(path, "sk_test_FROMFILE\n", 17, 0);
	assert_int_equal(chmod(path, 0600), 0);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);

	/* The directory without the credential: the key file. */
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), 0);
	assert_string_equal(key, "sk_test_FROMFILE");

	/* systemd writes credentials 0400; the credential beats the file. */
	fixture_write(cred, "sk_test_FROMCRED\n", 17, 0);
	assert_int_equal(chmod(cred, 0400), 0);
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), 0);
	assert_string_equal(key, "sk_test_FROMCRED");
	/* Even with no key file configured. */
	cfg.stripe.api_key_file = NULL;
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), 0);
	assert_string_equal(key, "sk_test_FROMCRED");
	cfg.stripe.api_key_file = path;

	/* The environment beats the credential. */
	setenv("LOGMETER_STRIPE_API_KEY", "sk_test_FROMENV", 1);
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), 0);
	assert_string_equal(key, "sk_test_FROMENV");
	unsetenv("LOGMETER_STRIPE_API_KEY");

	/* A bad credential is an error naming it, not a silent fall-back to the file. */
	assert_int_equal(chmod(cred, 0644), 0);
	err[0] = '\0';
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
	assert_non_null(strstr(err, cred));
	assert_non_null(strstr(err, "(mode 0644)"));
	fixture_write(cred, "\n", 1, 0);
	assert_int_equal(chmod(cred, 0400), 0);
	err[0] = '\0';
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "empty"));
	assert_non_null(strstr(err, cred));

	/* A relative CREDENTIALS_DIRECTORY is not systemd's: ignored. */
	setenv("CREDENTIALS_DIRECTORY", "credentials", 1);
	assert_int_equal(stripe_key_load(&cfg, key, sizeof(key), err, sizeof(err)), 0);
	assert_string_equal(key, "sk_test_FROMFILE");
	unsetenv("CREDENTIALS_DIRECTORY");
}

/* ---- requests ---- */

static void fill_event(struct event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->id = 42;
	ev->file_id = 1;
	ev->line_offset = 1234;
	snprintf(ev->rule, sizeof(ev->rule), "nginx-requests");
	snprintf(ev->identifier, sizeof(ev->identifier), TEST_ID);
	snprintf(ev->event_name, sizeof(ev->event_name), "api_calls");
	snprintf(ev->payload_customer_key, sizeof(ev->payload_customer_key), "stripe_customer_id");
	snprintf(ev->payload_value_key, sizeof(ev->payload_value_key), "value");
	snprintf(ev->customer_key, sizeof(ev->customer_key), "10.0.0.1");
	snprintf(ev->customer, sizeof(ev->customer), "cus_TEST1");
	snprintf(ev->value, sizeof(ev->value), "25");
	ev->timestamp = 1767225600;
}

static void fill_config(struct config *cfg, char *base)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->stripe.api_base = base;
	cfg->stripe.request_timeout_ms = 5000;
	cfg->stripe.max_concurrency = 1;
}

static void test_request_refused(void **state)
{
	struct config cfg;
	struct event ev;
	char err[512];

	(void)state;
	fill_event(&ev);
	fill_config(&cfg, "http://api.stripe.com");
	err[0] = '\0';
	assert_null(stripe_request_new(&cfg, FAKE_KEY, &ev, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "https://"));

	fill_config(&cfg, "https://api.stripe.com");
	ev.identifier[0] = '\0';
	err[0] = '\0';
	assert_null(stripe_request_new(&cfg, FAKE_KEY, &ev, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "identifier"));

	fill_event(&ev);
	snprintf(ev.identifier, sizeof(ev.identifier), "lm1-x\r\nX-Evil: 1");
	assert_null(stripe_request_new(&cfg, FAKE_KEY, &ev, NULL, err, sizeof(err)));

	fill_event(&ev);
	err[0] = '\0';
	assert_null(
	    stripe_request_new(&cfg, "sk_test_FAKE\r\nKEY123", &ev, NULL, err, sizeof(err)));
	assert_null(strstr(err, "KEY123"));
	assert_null(stripe_request_new(&cfg, "", &ev, NULL, err, sizeof(err)));

	stripe_request_free(NULL);
}

/* Over https to a closed loopback port: the URL is built from the base with one trailing '/'
 * dropped, and a connection failure is a retry naming curl's error. */
static void test_request_url_https(void **state)
{
	static char *const bases[] = {"https://127.0.0.1:1", "https://127.0.0.1:1/"};
	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct config cfg;
		struct event ev;
		struct stripe_request *req;
		char err[512] = "", reason[STRIPE_REASON_MAX];
		char *url = NULL;
		int ud;
		CURLcode code;

		fill_event(&ev);
		fill_config(&cfg, bases[i]);
		req = stripe_request_new(&cfg, FAKE_KEY, &ev, &ud, err, sizeof(err));
		if (req == NULL)
			fail_msg("%s", err);
		assert_ptr_equal(stripe_request_ud(req), &ud);
		assert_string_equal(stripe_request_event(req)->identifier, TEST_ID);
		assert_int_equal(stripe_request_event(req)->id, 42);
		code = curl_easy_perform(stripe_request_easy(req));
		assert_int_not_equal(code, CURLE_OK);
		assert_int_equal(
		    curl_easy_getinfo(stripe_request_easy(req), CURLINFO_EFFECTIVE_URL, &url),
		    CURLE_OK);
		assert_string_equal(url, "https://127.0.0.1:1/v1/billing/meter_events");
		assert_int_equal(stripe_request_result(req, code, reason, sizeof(reason)),
		                 STRIPE_RETRY);
		assert_true(strncmp(reason, "network error: ", 15) == 0);
		assert_null(strstr(reason, FAKE_KEY_PART));
		stripe_request_free(req);
	}
}

/* A one-connection HTTP server on 127.0.0.1 that records the request and sends a canned
 * answer; with `second` set, it then does the same for a second connection with `second`, and
 * `first_request` keeps the first one's request. */
struct server {
	int fd;
	int port;
	const char *response; /* raw bytes after which the server closes */
	size_t response_len;
	const char *second;
	char request[65536];
	size_t request_len;
	char first_request[65536];
	pthread_t thread;
};

static void serve_one(struct server *sv);

static void *server_main(void *arg)
{
	struct server *sv = arg;

	serve_one(sv);
	if (sv->second != NULL) {
		memcpy(sv->first_request, sv->request, sizeof(sv->request));
		sv->request_len = 0;
		sv->request[0] = '\0';
		sv->response = sv->second;
		sv->response_len = strlen(sv->second);
		serve_one(sv);
	}
	return NULL;
}

static void serve_one(struct server *sv)
{
	int c = accept(sv->fd, NULL, NULL);
	size_t want = 0;

	if (c < 0)
		return;
	/* Read the head, then as much body as Content-Length says. */
	while (sv->request_len < sizeof(sv->request) - 1) {
		ssize_t n = read(c, sv->request + sv->request_len,
		                 sizeof(sv->request) - 1 - sv->request_len);
		char *end;

		if (n <= 0)
			break;
		sv->request_len += (size_t)n;
		sv->request[sv->request_len] = '\0';
		end = strstr(sv->request, "\r\n\r\n");
		if (end != NULL) {
			const char *cl = strcasestr(sv->request, "\r\nContent-Length:");

			if (want == 0)
				want = (size_t)(end + 4 - sv->request) +
				       (cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
			if (sv->request_len >= want)
				break;
		}
	}
	for (size_t off = 0; off < sv->response_len;) {
		ssize_t n = write(c, sv->response + off, sv->response_len - off);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(c, SHUT_WR);
	{
		char drain[256];

		while (read(c, drain, sizeof(drain)) > 0)
			;
	}
	close(c);
}

static void server_start(struct server *sv, const char *response, size_t len)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);

	memset(sv, 0, sizeof(*sv));
	sv->response = response;
	sv->response_len = len;
	sv->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(sv->fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(sv->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(sv->fd, 1), 0);
	assert_int_equal(getsockname(sv->fd, (struct sockaddr *)&sa, &salen), 0);
	sv->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&sv->thread, NULL, server_main, sv), 0);
}

static void server_join(struct server *sv)
{
	pthread_join(sv->thread, NULL);
	close(sv->fd);
}

/* Sends the test event to a server answering `response`; returns the outcome and the reason. */
/* One request for `ev` (fill_event's if NULL), with `account` as [stripe] account (may be
 * NULL), answered by `response`; *retry_after (if not NULL) gets the answer's Retry-After. */
static enum stripe_outcome exchange_full(struct server *sv, const char *response, size_t len,
                                         const struct event *evp, char *account, char *reason,
                                         size_t reasonlen, int64_t *retry_after)
{
	struct config cfg;
	struct event ev;
	struct stripe_request *req;
	char base[64], err[512] = "";
	enum stripe_outcome out;
	CURLcode code;

	server_start(sv, response, len);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d/", sv->port);
	if (evp != NULL)
		ev = *evp;
	else
		fill_event(&ev);
	fill_config(&cfg, base);
	cfg.stripe.account = account;
	req = stripe_request_new(&cfg, FAKE_KEY, &ev, NULL, err, sizeof(err));
	if (req == NULL)
		fail_msg("%s", err);
	code = curl_easy_perform(stripe_request_easy(req));
	out = stripe_request_result(req, code, reason, reasonlen);
	if (retry_after != NULL)
		*retry_after = stripe_request_retry_after_ms(req);
	stripe_request_free(req);
	server_join(sv);
	return out;
}

static enum stripe_outcome exchange(struct server *sv, const char *response, size_t len,
                                    char *reason, size_t reasonlen)
{
	return exchange_full(sv, response, len, NULL, NULL, reason, reasonlen, NULL);
}

static char *make_response(const char *status, const char *headers, const char *body)
{
	size_t len = strlen(status) + strlen(headers) + strlen(body) + 256;
	char *r = malloc(len);

	assert_non_null(r);
	snprintf(r, len,
	         "HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n%s"
	         "Content-Length: %zu\r\n\r\n%s",
	         status, headers, strlen(body), body);
	return r;
}

static int has_header_line(const char *req, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\r\n%s\r\n", line);
	return strstr(req, want) != NULL;
}

static void test_request_wire(void **state)
{
	static struct server sv;
	char *resp = make_response("200 OK", "", meter_event);
	char reason[STRIPE_REASON_MAX];
	const char *body, *key_at;
	struct event ev;
	char *form;

	(void)state;
	assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)),
	                 STRIPE_DELIVERED);
	assert_string_equal(reason, "HTTP 200");
	free(resp);

	assert_true(strncmp(sv.request, "POST /v1/billing/meter_events HTTP/1.1\r\n", 40) == 0);
	assert_true(has_header_line(sv.request, "Authorization: Bearer " FAKE_KEY));
	assert_true(has_header_line(sv.request, "Idempotency-Key: " TEST_ID));
	assert_true(has_header_line(sv.request, "Stripe-Version: " STRIPE_API_VERSION));
	assert_true(has_header_line(sv.request, "User-Agent: logmeter/" PACKAGE_VERSION));
	assert_true(has_header_line(sv.request, "Content-Type: application/x-www-form-urlencoded"));
	assert_null(strcasestr(sv.request, "\r\nExpect:"));
	assert_null(strcasestr(sv.request, "\r\nStripe-Account:"));
	/* The key appears exactly once: in the Authorization header. */
	key_at = strstr(sv.request, FAKE_KEY);
	assert_non_null(key_at);
	assert_true(key_at - sv.request >= 22);
	assert_true(strncmp(key_at - 22, "Authorization: Bearer ", 22) == 0);
	assert_null(strstr(key_at + strlen(FAKE_KEY), FAKE_KEY_PART));

	body = strstr(sv.request, "\r\n\r\n");
	assert_non_null(body);
	body += 4;
	assert_string_equal(body, "event_name=api_calls&identifier=" TEST_ID
	                          "&timestamp=1767225600&payload[stripe_customer_id]=cus_TEST1"
	                          "&payload[value]=25");
	fill_event(&ev);
	form = event_form_body(&ev);
	assert_non_null(form);
	assert_string_equal(body, form);
	free(form);
}

/* A request used again for another event (stripe_request_reuse, as the sender does with its
 * finished requests) sends that event's body and Idempotency-Key, and forgets the first answer:
 * its Retry-After and body. */
static void test_request_reuse(void **state)
{
	static struct server sv;
	char *first = make_response("429 Too Many Requests", "Retry-After: 7\r\n", rate_limited);
	char *second = make_response("200 OK", "", meter_event);
	char reason[STRIPE_REASON_MAX], base[64], err[512] = "", *form;
	struct event a, b;
	struct config cfg;
	struct stripe_request *req;
	const char *body;
	int ud = 0;

	(void)state;
	fill_event(&a);
	snprintf(a.identifier, sizeof(a.identifier), "lm1-first");
	snprintf(a.value, sizeof(a.value), "99");
	fill_event(&b);
	b.key_generation = 2;
	server_start(&sv, first, strlen(first));
	sv.second = second;
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", sv.port);
	fill_config(&cfg, base);
	req = stripe_request_new(&cfg, FAKE_KEY, &a, NULL, err, sizeof(err));
	if (req == NULL)
		fail_msg("%s", err);
	assert_int_equal(stripe_request_result(req, curl_easy_perform(stripe_request_easy(req)),
	                                       reason, sizeof(reason)),
	                 STRIPE_RATE_LIMITED);
	assert_int_equal(stripe_request_retry_after_ms(req), 7000);
	assert_int_equal(stripe_request_reuse(req, &b, &ud, err, sizeof(err)), 0);
	assert_ptr_equal(stripe_request_ud(req), &ud);
	assert_string_equal(stripe_request_event(req)->identifier, TEST_ID);
	assert_int_equal(stripe_request_result(req, curl_easy_perform(stripe_request_easy(req)),
	                                       reason, sizeof(reason)),
	                 STRIPE_DELIVERED);
	assert_int_equal(stripe_request_retry_after_ms(req), -1);
	stripe_request_free(req);
	server_join(&sv);
	free(first);
	free(second);

	assert_true(has_header_line(sv.first_request, "Idempotency-Key: lm1-first"));
	assert_non_null(strstr(sv.first_request, "&payload[value]=99"));
	assert_true(has_header_line(sv.request, "Idempotency-Key: " TEST_ID "-r2"));
	assert_null(strstr(sv.request, "lm1-first"));
	assert_true(has_header_line(sv.request, "Authorization: Bearer " FAKE_KEY));
	assert_true(has_header_line(sv.request, "Stripe-Version: " STRIPE_API_VERSION));
	body = strstr(sv.request, "\r\n\r\n");
	assert_non_null(body);
	form = event_form_body(&b);
	assert_non_null(form);
	assert_string_equal(body + 4, form);
	free(form);
	/* Only a meter event request can take another event. */
	assert_int_equal(stripe_request_reuse(NULL, &b, NULL, err, sizeof(err)), -1);
}

/* Some libcurl versions ask for "Expect: 100-continue" (and wait for the server) above 1 KiB of
 * body, which a customer id that needs percent-encoding exceeds: logmeter turns that off. */
static void test_request_no_expect(void **state)
{
	static struct server sv;
	char *resp = make_response("200 OK", "", meter_event);
	char reason[STRIPE_REASON_MAX];
	struct config cfg;
	struct event ev;
	struct stripe_request *req;
	char base[64], err[512] = "";
	const char *body;

	(void)state;
	server_start(&sv, resp, strlen(resp));
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", sv.port);
	fill_event(&ev);
	memset(ev.customer, ' ', sizeof(ev.customer) - 1);
	ev.customer[sizeof(ev.customer) - 1] = '\0';
	memset(ev.event_name, '/', sizeof(ev.event_name) - 1);
	ev.event_name[sizeof(ev.event_name) - 1] = '\0';
	fill_config(&cfg, base);
	req = stripe_request_new(&cfg, FAKE_KEY, &ev, NULL, err, sizeof(err));
	if (req == NULL)
		fail_msg("%s", err);
	assert_int_equal(stripe_request_result(req, curl_easy_perform(stripe_request_easy(req)),
	                                       reason, sizeof(reason)),
	                 STRIPE_DELIVERED);
	stripe_request_free(req);
	server_join(&sv);
	free(resp);
	assert_null(strcasestr(sv.request, "\r\nExpect:"));
	body = strstr(sv.request, "\r\n\r\n");
	assert_non_null(body);
	assert_true(strlen(body + 4) > 1024);
	assert_non_null(strstr(body, "&payload[stripe_customer_id]=%20%20%20"));
}

static void test_request_headers_classified(void **state)
{
	static struct server sv;
	char reason[STRIPE_REASON_MAX];
	int64_t retry_after;
	char *resp;

	(void)state;
	/* Idempotent-Replayed: true makes a refusal a saved answer, retried under a new key:
	 * proves the header is read (the same answer without it is a dead letter). */
	resp = make_response("400 Bad Request", "idempotent-replayed: True\r\n", no_meter);
	assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)), STRIPE_UNKNOWN);
	assert_string_equal(reason, "HTTP 400: No active meter found for event name \"api_calls\". "
	                            "(replayed)");
	free(resp);

	/* Stripe-Should-Retry: true turns a refusal into a retry under the same key. */
	resp = make_response("400 Bad Request", "Stripe-Should-Retry:True\r\n", too_old);
	assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)), STRIPE_RETRY);
	free(resp);

	/* And false never makes a 500 a dead letter. */
	resp =
	    make_response("500 Internal Server Error", "stripe-should-retry: False\r\n", api_error);
	assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)), STRIPE_UNKNOWN);
	free(resp);

	resp = make_response("400 Bad Request", "Stripe-Should-Retry: false\r\n", already_exists);
	assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)),
	                 STRIPE_DELIVERED);
	free(resp);

	resp = make_response("429 Too Many Requests",
	                     "Stripe-Rate-Limited-Reason: global-rate\r\nRetry-After: 7\r\n",
	                     rate_limited);
	assert_int_equal(exchange_full(&sv, resp, strlen(resp), NULL, NULL, reason, sizeof(reason),
	                               &retry_after),
	                 STRIPE_RATE_LIMITED);
	assert_string_equal(reason, "HTTP 429: Request rate limit exceeded. "
	                            "(Stripe-Rate-Limited-Reason: global-rate)");
	assert_int_equal(retry_after, 7000);
	free(resp);

	/* A Retry-After far off is capped; one that does not parse is ignored. */
	resp = make_response("503 Service Unavailable", "Retry-After: 999999999\r\n", "");
	assert_int_equal(exchange_full(&sv, resp, strlen(resp), NULL, NULL, reason, sizeof(reason),
	                               &retry_after),
	                 STRIPE_UNKNOWN);
	assert_int_equal(retry_after, STRIPE_RETRY_AFTER_MAX_MS);
	free(resp);
	resp = make_response("503 Service Unavailable", "Retry-After: soon\r\n", "");
	assert_int_equal(exchange_full(&sv, resp, strlen(resp), NULL, NULL, reason, sizeof(reason),
	                               &retry_after),
	                 STRIPE_UNKNOWN);
	assert_int_equal(retry_after, -1);
	free(resp);
	resp = make_response("503 Service Unavailable",
	                     "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", "");
	assert_int_equal(exchange_full(&sv, resp, strlen(resp), NULL, NULL, reason, sizeof(reason),
	                               &retry_after),
	                 STRIPE_UNKNOWN);
	assert_int_equal(retry_after, 0); /* a date in the past: no wait */
	free(resp);

	/* A redirect is not followed; its Location is quoted. */
	resp = make_response("302 Found", "Location: https://login.example/portal\r\n", "");
	assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)),
	                 STRIPE_UNEXPECTED);
	assert_string_equal(reason, "HTTP 302 (redirect to https://login.example/portal)");
	free(resp);

	/* A server that echoes the key: it never reaches the reason. */
	resp = make_response("401 Unauthorized", "",
	                     "{\"error\":{\"message\":\"bad key xx" FAKE_KEY "xx\"}}");
	assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)), STRIPE_AUTH);
	assert_null(strstr(reason, FAKE_KEY_PART));
	assert_string_equal(reason, "HTTP 401: bad key xx******************xx");
	free(resp);

	/* A non-JSON body that echoes it. */
	resp = make_response("502 Bad Gateway", "", "upstream said " FAKE_KEY);
	assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)), STRIPE_UNKNOWN);
	assert_string_equal(reason, "HTTP 502: upstream said ******************");
	free(resp);
}

/* A proxy's error page that echoes the request: the key is cut by the 200-byte excerpt, or comes
 * after "Bearer " in another form; neither the whole key nor a piece of it reaches the reason. */
static void test_request_echoed_key(void **state)
{
	static struct server sv;
	char reason[STRIPE_REASON_MAX], body[600], *resp;
	const char *piece = FAKE_KEY_PART;

	(void)state;
	for (int offset = 150; offset <= 190; offset += 20) {
		memset(body, 'x', (size_t)offset);
		snprintf(body + offset, sizeof(body) - (size_t)offset,
		         "Authorization: Bearer " FAKE_KEY " and again " FAKE_KEY "</pre>");
		resp = make_response("502 Bad Gateway", "", body);
		assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)),
		                 STRIPE_UNKNOWN);
		for (size_t k = 0; k + 4 <= strlen(piece); k++) {
			char frag[5];

			memcpy(frag, piece + k, 4);
			frag[4] = '\0';
			if (strstr(reason, frag) != NULL)
				fail_msg("offset %d: the reason keeps a piece of the key: %s",
				         offset, reason);
		}
		free(resp);
	}
}

static void test_classify_redacts_tokens(void **state)
{
	/* Not a key: a made-up token in a key's shape, split so that no secret scanner takes
	 * the source for a leaked key. */
	static const char body[] = "<pre>Authorization: Bearer sk_"
	                           "live_NOTAKEYxxxxxxxxxxxx "
	                           "token=rk_test_zzz X-Other: bearer eyJhbGciOi.secret</pre>";
	struct stripe_response r = {
	    .status = 502, .should_retry = -1, .body = body, .body_len = sizeof(body) - 1};
	char reason[STRIPE_REASON_MAX];

	(void)state;
	assert_int_equal(stripe_classify(&r, reason, sizeof(reason)), STRIPE_UNKNOWN);
	assert_string_equal(reason, "HTTP 502: <pre>Authorization: Bearer [redacted] "
	                            "token=[redacted] X-Other: bearer [redacted]</pre>");
}

/* The Idempotency-Key follows the event's key generation; the identifier never changes. A
 * Connect account goes into Stripe-Account. */
static void test_request_key_generation(void **state)
{
	static struct server sv;
	char reason[STRIPE_REASON_MAX];
	struct event ev;
	char *resp = make_response("200 OK", "", meter_event);

	(void)state;
	fill_event(&ev);
	ev.key_generation = 3;
	assert_int_equal(
	    exchange_full(&sv, resp, strlen(resp), &ev, "acct_1AbC", reason, sizeof(reason), NULL),
	    STRIPE_DELIVERED);
	assert_true(has_header_line(sv.request, "Idempotency-Key: " TEST_ID "-r3"));
	assert_true(has_header_line(sv.request, "Stripe-Account: acct_1AbC"));
	assert_non_null(strstr(sv.request, "&identifier=" TEST_ID "&"));
	free(resp);
}

/* Stripe's rate for meter events follows the key (docs.stripe.com/rate-limits). */
static void test_default_rate(void **state)
{
	char why[128];

	(void)state;
	assert_int_equal(stripe_default_rate("sk_live_abc", NULL, why, sizeof(why)), 1000);
	assert_non_null(strstr(why, "sk_live_..."));
	assert_null(strstr(why, "abc"));
	assert_int_equal(stripe_default_rate("rk_live_abc", "", why, sizeof(why)), 1000);
	assert_int_equal(stripe_default_rate("sk_test_abc", NULL, why, sizeof(why)), 25);
	assert_int_equal(stripe_default_rate("rk_test_abc", NULL, NULL, 0), 25);
	assert_int_equal(stripe_default_rate("sk_live_abc", "acct_1", why, sizeof(why)), 100);
	assert_int_equal(stripe_default_rate("sk_test_abc", "acct_1", why, sizeof(why)), 25);
	assert_int_equal(stripe_default_rate("whatever", NULL, why, sizeof(why)), 25);
	assert_int_equal(stripe_default_rate(NULL, NULL, why, sizeof(why)), 25);
}

static void test_check_account(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(config_check_account("acct_1A2b3C", err, sizeof(err)), 0);
	assert_int_equal(config_check_account("acct_", err, sizeof(err)), -1);
	assert_int_equal(config_check_account("cus_123", err, sizeof(err)), -1);
	assert_int_equal(config_check_account("acct_12 3", err, sizeof(err)), -1);
	assert_int_equal(config_check_account("acct_1\r\nX-Evil: 1", err, sizeof(err)), -1);
	assert_int_equal(config_check_account(NULL, err, sizeof(err)), -1);
}

static void test_request_bad_answers(void **state)
{
	static struct server sv;
	static const char garbage[] = "this is not HTTP at all\r\n\r\n";
	char reason[STRIPE_REASON_MAX];
	size_t big = 200 * 1024;
	char *body, *resp;

	(void)state;
	/* A body far over the 64 KiB kept: classified from what was kept. */
	body = malloc(big + 1);
	assert_non_null(body);
	memset(body, 'B', big);
	body[big] = '\0';
	resp = make_response("503 Service Unavailable", "", body);
	assert_int_equal(exchange(&sv, resp, strlen(resp), reason, sizeof(reason)), STRIPE_UNKNOWN);
	assert_true(strncmp(reason, "HTTP 503: BBBB", 14) == 0);
	assert_int_equal(strlen(reason), 10 + 200);
	free(resp);
	free(body);

	/* Not HTTP: curl fails the transfer; the outcome is unknown. */
	assert_int_equal(exchange(&sv, garbage, strlen(garbage), reason, sizeof(reason)),
	                 STRIPE_UNKNOWN);
	assert_true(strncmp(reason, "network error: ", 15) == 0);

	/* Connection closed without an answer. */
	assert_int_equal(exchange(&sv, "", 0, reason, sizeof(reason)), STRIPE_UNKNOWN);
	assert_true(strncmp(reason, "network error: ", 15) == 0);

	/* Truncated answer: fewer body bytes than Content-Length. */
	{
		static const char cut[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"obj";

		assert_int_equal(exchange(&sv, cut, strlen(cut), reason, sizeof(reason)),
		                 STRIPE_UNKNOWN);
	}
	/* A tiny reason buffer on a real exchange. */
	{
		char tiny[4];
		char *r = make_response("400 Bad Request", "", no_meter);

		assert_int_equal(exchange(&sv, r, strlen(r), tiny, sizeof(tiny)), STRIPE_REJECTED);
		assert_string_equal(tiny, "HTT");
		free(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classify_table),
	    cmocka_unit_test(test_classify_curl_reason),
	    cmocka_unit_test(test_classify_long_body),
	    cmocka_unit_test(test_classify_nul_in_body),
	    cmocka_unit_test(test_classify_small_buffers),
	    cmocka_unit_test(test_classify_utf8_cut),
	    cmocka_unit_test(test_check_base),
	    cmocka_unit_test(test_key_file),
	    cmocka_unit_test(test_key_env_wins),
	    cmocka_unit_test(test_key_errors),
	    cmocka_unit_test(test_key_unreadable),
	    cmocka_unit_test(test_key_file_mode),
	    cmocka_unit_test(test_key_credential),
	    cmocka_unit_test(test_request_refused),
	    cmocka_unit_test(test_request_url_https),
	    cmocka_unit_test(test_request_wire),
	    cmocka_unit_test(test_request_reuse),
	    cmocka_unit_test(test_request_no_expect),
	    cmocka_unit_test(test_request_headers_classified),
	    cmocka_unit_test(test_request_bad_answers),
	    cmocka_unit_test(test_request_key_generation),
	    cmocka_unit_test(test_request_echoed_key),
	    cmocka_unit_test(test_classify_redacts_tokens),
	    cmocka_unit_test(test_default_rate),
	    cmocka_unit_test(test_check_account),
	};

	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
