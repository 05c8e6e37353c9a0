/* Unit tests of custmap: the customer map CSV ("key,cus_id" lines) with the quirks of files
 * written by hand and exported from spreadsheets, its errors as "PATH:LINE: message", and the
 * lookup. Every map is a file the test writes; the expected entries are read off its text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/custmap.h"

#include "fixture.h"

/* Writes `content` to NAME in the fixture's directory and loads it; fails the test if it does
 * not load. */
static struct custmap *load_ok(const struct fixture *fx, const char *name, const char *content)
{
	const char *path = fixture_path(fx, name);
	char err[512] = "";
	struct custmap *m;

	fixture_write_text(path, content);
	m = custmap_load(path, err, sizeof(err));
	if (m == NULL)
		fail_msg("%s: %s", name, err);
	assert_string_equal(err, "");
	return m;
}

/* Writes `content` to NAME and checks that loading it fails with "PATH:" `expect`. */
static void check_error(const struct fixture *fx, const char *name, const char *content,
                        const char *expect)
{
	const char *path = fixture_path(fx, name);
	char err[512] = "", want[512];
	struct custmap *m;

	fixture_write_text(path, content);
	m = custmap_load(path, err, sizeof(err));
	if (m != NULL) {
		custmap_free(m);
		fail_msg("%s was accepted", name);
	}
	snprintf(want, sizeof(want), "%s:%s", path, expect);
	assert_string_equal(err, want);
}

static void test_good(void **state)
{
	const struct fixture *fx = *state;
	struct custmap *m;

	m = load_ok(fx, "good.csv",
	            "\xEF\xBB\xBF# customers of the web tier\n"
	            "\n"
	            "83.149.9.216,cus_A\n"
	            "  10.0.0.1 ,\tcus_B  \r\n"
	            "   \t\n"
	            "  # indented comment\n"
	            "alice,cus_C\r\n"
	            "alice smith,cus_D\n"
	            "al,cus_E\n"
	            "last-no-newline,cus_F");
	assert_int_equal(custmap_size(m), 6);
	assert_string_equal(custmap_lookup(m, "83.149.9.216", 12), "cus_A");
	assert_string_equal(custmap_lookup(m, "10.0.0.1", 8), "cus_B");
	assert_string_equal(custmap_lookup(m, "alice", 5), "cus_C");
	assert_string_equal(custmap_lookup(m, "alice smith", 11), "cus_D");
	assert_string_equal(custmap_lookup(m, "al", 2), "cus_E");
	assert_string_equal(custmap_lookup(m, "last-no-newline", 15), "cus_F");
	/* Keys are length-delimited: a prefix or an extension of a key is another key. */
	assert_string_equal(custmap_lookup(m, "alice smith", 5), "cus_C");
	assert_string_equal(custmap_lookup(m, "alicex", 2), "cus_E");
	assert_null(custmap_lookup(m, "alic", 4));
	assert_null(custmap_lookup(m, "alice ", 6));
	assert_null(custmap_lookup(m, "a", 1));
	assert_null(custmap_lookup(m, "", 0));
	assert_null(custmap_lookup(m, "83.149.9.21", 11));
	assert_null(custmap_lookup(m, "# customers of the web tier", 27));
	assert_null(custmap_lookup(m, "zzz", 3));
	/* Case matters. */
	assert_null(custmap_lookup(m, "Alice", 5));
	custmap_free(m);
	custmap_free(NULL);
	assert_int_equal(custmap_size(NULL), 0);
	assert_null(custmap_lookup(NULL, "alice", 5));

	/* Spreadsheet CSV: a header row and quoted fields. */
	m = load_ok(fx, "sheet.csv",
	            "\"ip\",\"customer_id\"\r\n\"1.2.3.4\",\"cus_X\"\r\n5.6.7.8,cus_Y\r\n");
	assert_int_equal(custmap_size(m), 2);
	assert_string_equal(custmap_lookup(m, "1.2.3.4", 7), "cus_X");
	assert_string_equal(custmap_lookup(m, "5.6.7.8", 7), "cus_Y");
	assert_null(custmap_lookup(m, "ip", 2));
	custmap_free(m);

	/* An empty map is valid and maps nothing. */
	m = load_ok(fx, "empty.csv", "# nobody yet\n");
	assert_int_equal(custmap_size(m), 0);
	assert_null(custmap_lookup(m, "x", 1));
	assert_null(custmap_lookup(m, NULL, 0));
	custmap_free(m);
	m = load_ok(fx, "nothing.csv", "");
	assert_int_equal(custmap_size(m), 0);
	custmap_free(m);
}

/* Every header name a spreadsheet may give the id column, in any case, as the first row even
 * after comments and blank lines; a key column named so is an ordinary key. */
static void test_headers(void **state)
{
	static const char *const names[] = {
	    "customer", "customer_id", "cus_id", "stripe_customer_id", "id", "Customer_ID", "ID"};
	const struct fixture *fx = *state;
	char text[256];
	struct custmap *m;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(text, sizeof(text), "# exported\n\nip , \"%s\"\n1.2.3.4,cus_X\n",
		         names[i]);
		m = load_ok(fx, "header.csv", text);
		if (custmap_size(m) != 1)
			fail_msg("header %s: %zu entries", names[i], custmap_size(m));
		assert_null(custmap_lookup(m, "ip", 2));
		assert_string_equal(custmap_lookup(m, "1.2.3.4", 7), "cus_X");
		custmap_free(m);
	}
	m = load_ok(fx, "keyhdr.csv", "customer_id,cus_K\n");
	assert_int_equal(custmap_size(m), 1);
	assert_string_equal(custmap_lookup(m, "customer_id", 11), "cus_K");
	custmap_free(m);
	/* "cus_id" as a first row's id is a header, not the id cus_id. */
	m = load_ok(fx, "cusid.csv", "k,cus_id\nk,cus_real\n");
	assert_int_equal(custmap_size(m), 1);
	assert_string_equal(custmap_lookup(m, "k", 1), "cus_real");
	custmap_free(m);
}

/* Whitespace, then one pair of double quotes, is taken off each field; what is inside the
 * quotes stays, and so does a quote without its pair. */
static void test_quotes_and_space(void **state)
{
	const struct fixture *fx = *state;
	struct custmap *m;

	m = load_ok(fx, "quotes.csv",
	            "\" a \",cus_A\n"
	            "\"\"b\"\",cus_B\n"
	            "\"c,cus_C\n"
	            "d\",cus_D\n"
	            "\v\fe\t , \"cus_E\"\t\r\n"
	            "\xEF\xBB\xBF"
	            "f,cus_F\n");
	assert_int_equal(custmap_size(m), 6);
	assert_string_equal(custmap_lookup(m, " a ", 3), "cus_A");
	assert_null(custmap_lookup(m, "a", 1));
	assert_string_equal(custmap_lookup(m, "\"b\"", 3), "cus_B");
	assert_string_equal(custmap_lookup(m, "\"c", 2), "cus_C");
	assert_string_equal(custmap_lookup(m, "d\"", 2), "cus_D");
	assert_string_equal(custmap_lookup(m, "e", 1), "cus_E");
	/* A byte-order mark is one only at the start of the file. */
	assert_string_equal(custmap_lookup(m,
	                                   "\xEF\xBB\xBF"
	                                   "f",
	                                   4),
	                    "cus_F");
	assert_null(custmap_lookup(m, "f", 1));
	custmap_free(m);
}

static void test_errors(void **state)
{
	const struct fixture *fx = *state;
	char id101[160], content[200];

	check_error(fx, "nocomma.csv", "# x\na,cus_A\nb cus_B\n",
	            "3: expected \"key,customer_id\", found no comma");
	check_error(fx, "emptykey.csv", "a,cus_A\n\n , cus_B\n", "3: empty key");
	check_error(fx, "quotedempty.csv", "\"\",cus_A\n", "1: empty key");
	check_error(fx, "emptyid.csv", "a,  \n", "1: empty customer id");
	check_error(fx, "dup.csv", "a,cus_A\nb,cus_B\r\n# c\na,cus_C\n",
	            "4: duplicate key 'a' (first on line 1)");
	/* Keys are compared after trimming. */
	check_error(fx, "dup2.csv", "b,cus_B\n  a ,cus_A\na,cus_C\n",
	            "3: duplicate key 'a' (first on line 2)");
	/* The later line is named, whatever the order of the keys. */
	check_error(fx, "dup3.csv", "z,cus_1\nb,cus_2\na,cus_3\nz,cus_4\nb,cus_5\n",
	            "5: duplicate key 'b' (first on line 2)");
	check_error(fx, "threecols.csv", "a,cus_A,extra\n",
	            "1: expected \"key,customer_id\", found more than one comma");
	check_error(fx, "notanid.csv", "a,cus_A\nb,not a customer\n",
	            "2: customer id 'not a customer' is not a Stripe id (letters, digits and "
	            "'_' only)");
	check_error(fx, "dash.csv", "a,cus-A\n",
	            "1: customer id 'cus-A' is not a Stripe id (letters, digits and '_' only)");
	/* A header row is skipped only as the first row. */
	check_error(fx, "latehdr.csv", "a,cus_A\nkey,customer id\n",
	            "2: customer id 'customer id' is not a Stripe id (letters, digits and "
	            "'_' only)");

	/* An id of 100 bytes is Stripe's limit; 101 is over it. */
	memset(id101, 'c', 101);
	id101[101] = '\0';
	snprintf(content, sizeof(content), "a,%s\n", id101);
	check_error(fx, "longid.csv", content, "1: customer id longer than 100 bytes");
	{
		struct custmap *m;

		id101[100] = '\0';
		snprintf(content, sizeof(content), "a,%s\n", id101);
		m = load_ok(fx, "id100.csv", content);
		assert_string_equal(custmap_lookup(m, "a", 1), id101);
		custmap_free(m);
	}

	/* A NUL byte is refused where it is. */
	{
		static const char nul[] = "a,cus_A\nb\0x,cus_B\n";
		const char *path = fixture_path(fx, "nul.csv");
		char err[512] = "", want[512];

		fixture_write(path, nul, sizeof(nul) - 1, 0);
		assert_null(custmap_load(path, err, sizeof(err)));
		snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
		assert_string_equal(err, want);
	}

	/* A missing file, a directory and no path name themselves. */
	{
		const char *path = fixture_path(fx, "missing.csv");
		char err[512] = "";

		assert_null(custmap_load(path, err, sizeof(err)));
		assert_non_null(strstr(err, path));
		assert_non_null(strstr(err, "No such file"));
		assert_null(custmap_load(fx->dir, err, sizeof(err)));
		assert_non_null(strstr(err, fx->dir));
		assert_non_null(strstr(err, "Is a directory"));
		assert_null(custmap_load(NULL, err, sizeof(err)));
		assert_string_equal(err, "no path");
	}
}

/* Many keys, written in an order unlike their sorted one: every one is found with its own id,
 * and keys between them are not. */
static void test_many(void **state)
{
	enum { N = 5000 };
	const struct fixture *fx = *state;
	size_t cap = (size_t)N * 40, used = 0;
	char *text = malloc(cap), key[32], id[32];
	struct custmap *m;

	assert_non_null(text);
	/* 7919 is prime, so i * 7919 % N visits every index once. */
	for (int i = 0; i < N; i++) {
		int k = (int)((long)i * 7919 % N);

		used += (size_t)snprintf(text + used, cap - used, "10.%d.%d.1,cus_%05d\n", k / 256,
		                         k % 256, k);
	}
	m = load_ok(fx, "many.csv", text);
	free(text);
	assert_int_equal(custmap_size(m), N);
	for (int k = 0; k < N; k++) {
		snprintf(key, sizeof(key), "10.%d.%d.1", k / 256, k % 256);
		snprintf(id, sizeof(id), "cus_%05d", k);
		assert_string_equal(custmap_lookup(m, key, strlen(key)), id);
		snprintf(key, sizeof(key), "10.%d.%d.2", k / 256, k % 256);
		assert_null(custmap_lookup(m, key, strlen(key)));
	}
	custmap_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_headers),
	    cmocka_unit_test(test_quotes_and_space),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_many),
	};

	return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
