/* Unit tests of event: identifiers and the Stripe form body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/event.h"

#define UID "0123456789abcdef0123456789abcdef"

static void id_of(char out[EVENT_IDENTIFIER_MAX], const char *instance, const char *source,
                  const char *uid, int64_t offset, const char *rule)
{
	memset(out, 'x', EVENT_IDENTIFIER_MAX);
	assert_int_equal(event_identifier(out, instance, source, uid, offset, rule), 0);
}

static void check_shape(const char *id)
{
	assert_int_equal(strlen(id), 44);
	assert_memory_equal(id, "lm1-", 4);
	for (const char *p = id; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			fail_msg("'%c' in %s", *p, id);
	for (const char *p = id + 4; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'f') || (*p >= '0' && *p <= '9')))
			fail_msg("'%c' is not a lowercase hex digit in %s", *p, id);
}

static void test_identifier_known(void **state)
{
	char id[EVENT_IDENTIFIER_MAX];

	(void)state;
	/* Computed independently of event.c, over the layout of docs/identifiers.md (each field
	 * preceded by its length as 8-byte big-endian; the offset as its decimal text):
	 * python3 -c 'import hashlib,struct
	 * f=lambda b: struct.pack(">Q",len(b))+b
	 * d=f(b"web-01")+f(b"nginx")+f(b"0123456789abcdef0123456789abcdef")\
	 *   +f(b"4096")+f(b"nginx-bytes")
	 * print("lm1-"+hashlib.sha256(d).hexdigest()[:40])'
	 * and cross-checked with printf '\0...\006web-01...' | sha256sum. */
	id_of(id, "web-01", "nginx", UID, 4096, "nginx-bytes");
	assert_string_equal(id, "lm1-b9b90712c54838a104dc1a2acb1a66af18b2f257");
	check_shape(id);
	/* Empty fields are fields: the same command with b"" and b"0". */
	id_of(id, "", "", "", 0, "");
	assert_string_equal(id, "lm1-706b2ac0e295c144a220f14cad41c6cc1d2198b8");
	check_shape(id);
	/* The same command with str(offset) of the largest and of a negative offset, and with
	 * fields longer than the bytes event.c gathers before hashing (b"a" * 600, b"r" * 300). */
	id_of(id, "web-01", "nginx", UID, INT64_MAX, "r");
	assert_string_equal(id, "lm1-a6ca1cce791634a2eb48ab33911b4931ea3616f5");
	id_of(id, "web-01", "nginx", UID, -7, "r");
	assert_string_equal(id, "lm1-9f5f01cce334e204ae01f1799ccffb59290cdc63");
	{
		char inst[601], rule[301];

		memset(inst, 'a', 600);
		inst[600] = '\0';
		memset(rule, 'r', 300);
		rule[300] = '\0';
		id_of(id, inst, "nginx", UID, 1, rule);
		assert_string_equal(id, "lm1-0c122a8d4978db39882547b3574d0d60c0392e31");
	}
}

static void test_identifier_properties(void **state)
{
	char base[EVENT_IDENTIFIER_MAX], again[EVENT_IDENTIFIER_MAX], other[EVENT_IDENTIFIER_MAX];
	char seen[16][EVENT_IDENTIFIER_MAX];
	size_t n = 0;

	(void)state;
	id_of(base, "web-01", "nginx", UID, 0, "nginx-bytes");
	id_of(again, "web-01", "nginx", UID, 0, "nginx-bytes");
	assert_string_equal(base, again);
	check_shape(base);
	assert_true(strlen(base) < EVENT_IDENTIFIER_MAX && strlen(base) <= 100);

	/* Each field changes it. */
	memcpy(seen[n++], base, sizeof(base));
	id_of(seen[n++], "web-02", "nginx", UID, 0, "nginx-bytes");
	id_of(seen[n++], "web-01", "nginx2", UID, 0, "nginx-bytes");
	id_of(seen[n++], "web-01", "nginx", "0123456789abcdef0123456789abcdee", 0, "nginx-bytes");
	id_of(seen[n++], "web-01", "nginx", UID, 1, "nginx-bytes");
	id_of(seen[n++], "web-01", "nginx", UID, 256, "nginx-bytes");
	id_of(seen[n++], "web-01", "nginx", UID, INT64_MAX, "nginx-bytes");
	id_of(seen[n++], "web-01", "nginx", UID, 0, "nginx-requests");
	/* Field boundaries are part of the hash: ("ab","c") is not ("a","bc"). */
	id_of(seen[n++], "web-01n", "ginx", UID, 0, "nginx-bytes");
	id_of(seen[n++], "web-01", "nginx", UID, 0, "nginx-bytesx");
	id_of(seen[n++], "", "web-01nginx", UID, 0, "nginx-bytes");
	id_of(seen[n++], "web-01", "nginx", UID, 1, "0nginx-bytes");
	for (size_t i = 0; i < n; i++) {
		check_shape(seen[i]);
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(seen[i], seen[j]) == 0)
				fail_msg("cases %zu and %zu give %s", i, j, seen[i]);
	}
	id_of(other, "ab", "c", UID, 0, "r");
	id_of(again, "a", "bc", UID, 0, "r");
	assert_string_not_equal(other, again);

	/* Missing fields are refused, not hashed as empty. */
	assert_int_equal(event_identifier(other, NULL, "nginx", UID, 0, "r"), -1);
	assert_int_equal(event_identifier(other, "web-01", "nginx", UID, 0, NULL), -1);
}

/* One maker reused for many identifiers gives each the identifier event_identifier gives, in any
 * order: nothing of one hash leaks into the next. */
static void test_identifier_reused_context(void **state)
{
	struct event_ids *ids = event_ids_new();
	char a[EVENT_IDENTIFIER_MAX], b[EVENT_IDENTIFIER_MAX];

	(void)state;
	assert_non_null(ids);
	for (int64_t off = 0; off < 2000; off += 97) {
		id_of(a, "web-01", "nginx", UID, off, off % 2 ? "r1" : "r2");
		assert_int_equal(
		    event_ids_make(ids, b, "web-01", "nginx", UID, off, off % 2 ? "r1" : "r2"), 0);
		assert_string_equal(a, b);
	}
	assert_int_equal(event_ids_make(ids, b, "web-01", "nginx", UID, 4096, "nginx-bytes"), 0);
	assert_string_equal(b, "lm1-b9b90712c54838a104dc1a2acb1a66af18b2f257");
	assert_int_equal(event_ids_make(ids, b, "web-01", NULL, UID, 0, "r"), -1);
	assert_string_equal(b, "");
	assert_int_equal(event_ids_make(NULL, b, "web-01", "nginx", UID, 0, "r"), -1);
	event_ids_free(ids);
	event_ids_free(NULL);
}

static struct event make_event(const char *customer, const char *value)
{
	struct event ev;

	memset(&ev, 0, sizeof(ev));
	snprintf(ev.event_name, sizeof(ev.event_name), "bandwidth_bytes");
	snprintf(ev.identifier, sizeof(ev.identifier),
	         "lm1-b9b90712c54838a104dc1a2acb1a66af18b2f257");
	snprintf(ev.payload_customer_key, sizeof(ev.payload_customer_key), "stripe_customer_id");
	snprintf(ev.payload_value_key, sizeof(ev.payload_value_key), "value");
	snprintf(ev.customer, sizeof(ev.customer), "%s", customer);
	snprintf(ev.value, sizeof(ev.value), "%s", value);
	ev.timestamp = 1431857103;
	return ev;
}

static void check_body(const struct event *ev, const char *want)
{
	char *body = event_form_body(ev);

	assert_non_null(body);
	assert_string_equal(body, want);
	free(body);
}

static void test_form_body(void **state)
{
	struct event ev;

	(void)state;
	ev = make_event("cus_NffrFeUfNV2Hib", "203023");
	check_body(&ev,
	           "event_name=bandwidth_bytes&identifier=lm1-b9b90712c54838a104dc1a2acb1a66af18b2"
	           "f257&timestamp=1431857103&payload[stripe_customer_id]=cus_NffrFeUfNV2Hib"
	           "&payload[value]=203023");

	/* Everything but A-Za-z0-9-._~ is percent-encoded, with uppercase hex digits. */
	ev = make_event("a b&c=d+e[f]g%h/i~j.k-l_m?n#o;p,q:r@s\"t'u\\v", "-1.5");
	check_body(&ev,
	           "event_name=bandwidth_bytes&identifier=lm1-b9b90712c54838a104dc1a2acb1a66af18b2"
	           "f257&timestamp=1431857103&payload[stripe_customer_id]=a%20b%26c%3Dd%2Be%5Bf"
	           "%5Dg%25h%2Fi~j.k-l_m%3Fn%23o%3Bp%2Cq%3Ar%40s%22t%27u%5Cv&payload[value]=-1.5");

	/* UTF-8 bytes one by one; an empty value stays a present, empty parameter. */
	ev = make_event("caf\xc3\xa9", "");
	check_body(
	    &ev, "event_name=bandwidth_bytes&identifier=lm1-b9b90712c54838a104dc1a2acb1a66af18b2"
	         "f257&timestamp=1431857103&payload[stripe_customer_id]=caf%C3%A9&payload[value]=");

	/* Key names are encoded inside raw brackets; so are the event name and a timestamp. */
	ev = make_event("cus_1", "1");
	snprintf(ev.payload_customer_key, sizeof(ev.payload_customer_key), "my key[x]");
	snprintf(ev.payload_value_key, sizeof(ev.payload_value_key), "v=1&2");
	snprintf(ev.event_name, sizeof(ev.event_name), "api calls/min");
	ev.timestamp = 0;
	check_body(&ev,
	           "event_name=api%20calls%2Fmin&identifier=lm1-b9b90712c54838a104dc1a2acb1a66"
	           "af18b2f257&timestamp=0&payload[my%20key%5Bx%5D]=cus_1&payload[v%3D1%262]=1");

	/* A field that fills its array without a NUL is cut at the array, not read past it. */
	ev = make_event("cus_1", "1");
	memset(ev.value, '7', sizeof(ev.value));
	{
		char *body = event_form_body(&ev);
		char want[200];

		assert_non_null(body);
		snprintf(want, sizeof(want), "&payload[value]=%.*s", (int)sizeof(ev.value),
		         "7777777777777777777777777777777777777777777777777777777777777777777777");
		assert_non_null(strstr(body, want));
		assert_int_equal(strlen(strstr(body, want)), strlen(want));
		free(body);
	}
	assert_null(event_form_body(NULL));

	/* Into a caller's buffer: the same bytes; one byte short of the body and its NUL is 0. */
	ev = make_event("a b", "12");
	{
		char *body = event_form_body(&ev), buf[EVENT_FORM_BODY_MAX];
		size_t len = strlen(body);

		assert_int_equal(event_form_body_write(&ev, buf, sizeof(buf)), len);
		assert_string_equal(buf, body);
		assert_int_equal(event_form_body_write(&ev, buf, len + 1), len);
		assert_int_equal(event_form_body_write(&ev, buf, len), 0);
		assert_int_equal(event_form_body_write(NULL, buf, sizeof(buf)), 0);
		free(body);
	}
	/* The longest fields fit EVENT_FORM_BODY_MAX. */
	memset(&ev, 0xff, sizeof(ev));
	ev.timestamp = INT64_MIN;
	{
		char buf[EVENT_FORM_BODY_MAX];

		assert_true(event_form_body_write(&ev, buf, sizeof(buf)) > 0);
	}
}

/* The window identifier, against Python's hashlib over the same length-prefixed fields:
 * sha256(be64(4) "test" be64(16) "0123456789abcdef" be64(5) "bytes" be64(5) "cus_A" be64(10)
 * "1717243200")[:20] in hex. */
static void test_window_identifier(void **state)
{
	char id[EVENT_IDENTIFIER_MAX], other[EVENT_IDENTIFIER_MAX];

	(void)state;
#define SPOOL_ID "0123456789abcdef"
	assert_int_equal(
	    event_window_identifier(id, "test", SPOOL_ID, "bytes", "cus_A", 1717243200), 0);
	assert_string_equal(id, "lmw2-ee42bd1203957649195326d54970f82ec73cd96d");
	assert_int_equal(
	    event_window_identifier(other, "test", SPOOL_ID, "bytes", "cus_A", 1717243260), 0);
	assert_string_not_equal(id, other);
	assert_int_equal(
	    event_window_identifier(other, "test", SPOOL_ID, "bytesc", "us_A", 1717243200), 0);
	assert_string_not_equal(id, other);
	/* Another spool of the same instance (another host): another identifier. */
	assert_int_equal(event_window_identifier(other, "test", "fedcba9876543210", "bytes",
	                                         "cus_A", 1717243200),
	                 0);
	assert_string_not_equal(id, other);
	assert_int_equal(event_window_identifier(id, NULL, SPOOL_ID, "bytes", "cus_A", 0), -1);
	/* With one context for every window (event_ids_window): the same identifiers, a start
	 * before the epoch written as "-3600" (hashlib over the same fields). */
	{
		struct event_ids *ids = event_ids_new();

		assert_non_null(ids);
		for (int k = 0; k < 2; k++) {
			assert_int_equal(event_ids_window(ids, id, "test", SPOOL_ID, "bytes",
			                                  "cus_A", 1717243200),
			                 0);
			assert_string_equal(id, "lmw2-ee42bd1203957649195326d54970f82ec73cd96d");
			assert_int_equal(
			    event_ids_window(ids, id, "test", SPOOL_ID, "bytes", "cus_A", -3600),
			    0);
			assert_string_equal(id, "lmw2-0ddd5fb7efefaddb143e02a57948fac8ff7274dd");
		}
		assert_int_equal(event_ids_window(NULL, id, "test", SPOOL_ID, "b", "c", 0), -1);
		assert_string_equal(id, "");
		event_ids_free(ids);
	}
#undef SPOOL_ID
}

/* Sums against Python's decimal.Decimal of the same operands. */
static void test_value_add(void **state)
{
	static const struct {
		const char *a, *b, *sum;
	} rows[] = {
	    {"1", "2", "3"},
	    {"0.5", "-0.5", "0"},
	    {"-1", "0.25", "-0.75"},
	    {"99999999999999999999", "0", "99999999999999999999"},
	    {"123.456", "0.000000000000000001", "123.456000000000000001"},
	    {"-0.1", "-0.2", "-0.3"},
	    {"1000", "-1001", "-1"},
	};
	char out[EVENT_VALUE_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		assert_int_equal(event_value_add(rows[i].a, rows[i].b, out, sizeof(out)), 0);
		assert_string_equal(out, rows[i].sum);
	}
	/* Beyond the fixed point, or not a number: refused, never rounded. */
	assert_int_equal(event_value_add("99999999999999999999", "1", out, sizeof(out)), -1);
	assert_int_equal(event_value_add("0.0000000000000000001", "0", out, sizeof(out)), -1);
	assert_int_equal(event_value_add("1e3", "0", out, sizeof(out)), -1);
	assert_int_equal(event_value_add("1.", "0", out, sizeof(out)), -1);
	assert_int_equal(event_value_add("1", "2", out, 2), -1);
	assert_int_equal(event_value_digits("123456789012345"), 15);
	assert_int_equal(event_value_digits("-1000"), 4);
	assert_int_equal(event_value_digits("0.0012"), 2);
	assert_int_equal(event_value_digits("0"), 0);
}

/* event_copy gives what a struct copy gives, compared field by field as the sender reads them:
 * numbers, texts up to their NUL, and a text that fills its array whole. */
static void test_event_copy(void **state)
{
	struct event src, dst;

	(void)state;
	memset(&src, 0, sizeof(src));
	memset(&dst, 0xAA, sizeof(dst));
	src.id = 7;
	src.queue_seq = 8;
	src.file_id = 9;
	src.line_offset = 4096;
	snprintf(src.rule, sizeof(src.rule), "api");
	snprintf(src.identifier, sizeof(src.identifier), "lm1-0123");
	snprintf(src.event_name, sizeof(src.event_name), "bandwidth_bytes");
	snprintf(src.payload_customer_key, sizeof(src.payload_customer_key), "stripe_customer_id");
	snprintf(src.payload_value_key, sizeof(src.payload_value_key), "value");
	snprintf(src.customer_key, sizeof(src.customer_key), "key_1");
	memset(src.customer, 'c', sizeof(src.customer)); /* no NUL: copied whole */
	snprintf(src.value, sizeof(src.value), "12.5");
	src.timestamp = 1717243200;
	src.state = EVENT_DEAD;
	src.attempts = 3;
	src.key_generation = 2;
	src.first_unknown = 1717243100;
	snprintf(src.last_error, sizeof(src.last_error), "HTTP 400");
	src.created = 1717243201;
	src.delivered_at = 1717243202;
	src.window_s = 60;
	src.window_grace_s = 5;
	event_copy(&dst, &src);
	assert_int_equal(dst.id, 7);
	assert_int_equal(dst.queue_seq, 8);
	assert_int_equal(dst.file_id, 9);
	assert_int_equal(dst.line_offset, 4096);
	assert_string_equal(dst.rule, "api");
	assert_string_equal(dst.identifier, "lm1-0123");
	assert_string_equal(dst.event_name, "bandwidth_bytes");
	assert_string_equal(dst.payload_customer_key, "stripe_customer_id");
	assert_string_equal(dst.payload_value_key, "value");
	assert_string_equal(dst.customer_key, "key_1");
	assert_memory_equal(dst.customer, src.customer, sizeof(src.customer));
	assert_string_equal(dst.value, "12.5");
	assert_int_equal(dst.timestamp, 1717243200);
	assert_int_equal(dst.state, EVENT_DEAD);
	assert_int_equal(dst.attempts, 3);
	assert_int_equal(dst.key_generation, 2);
	assert_int_equal(dst.first_unknown, 1717243100);
	assert_string_equal(dst.last_error, "HTTP 400");
	assert_int_equal(dst.created, 1717243201);
	assert_int_equal(dst.delivered_at, 1717243202);
	assert_int_equal(dst.window_s, 60);
	assert_int_equal(dst.window_grace_s, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_identifier_known),
	    cmocka_unit_test(test_identifier_properties),
	    cmocka_unit_test(test_identifier_reused_context),
	    cmocka_unit_test(test_form_body),
	    cmocka_unit_test(test_event_copy),
	    cmocka_unit_test(test_window_identifier),
	    cmocka_unit_test(test_value_add),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
