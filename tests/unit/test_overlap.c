/* Unit tests of overlap: which pairs of sources overlap_find reports for the files their globs
 * match, whatever order the matches come in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/overlap.h"

/* What the callback saw: "first-source:first-path>other-source:other-path" lines. */
struct seen {
	char text[1024];
};

static void record(const struct overlap_file *first, const struct overlap_file *other, void *ud)
{
	struct seen *s = ud;
	size_t len = strlen(s->text);

	snprintf(s->text + len, sizeof(s->text) - len, "%zu:%s>%zu:%s\n", first->source,
	         first->path, other->source, other->path);
}

static void test_none(void **state)
{
	struct overlap_file v[] = {
	    {1, 10, 0, "/a/x.log"},
	    {1, 11, 1, "/a/y.log"},
	    {2, 10, 1, "/b/x.log"}, /* the same inode on another device: another file */
	};
	struct seen s = {""};

	(void)state;
	assert_int_equal(overlap_find(NULL, 0, record, &s), 0);
	assert_int_equal(overlap_find(v, 1, record, &s), 0);
	assert_int_equal(overlap_find(v, 3, record, &s), 0);
	assert_string_equal(s.text, "");
}

/* Given in any order, the first source in configuration order is the reader, and the later
 * source's first path (by name) is named. */
static void test_pair(void **state)
{
	struct overlap_file v[] = {
	    {1, 10, 1, "/logs/app.log"},
	    {1, 11, 0, "/logs/other.log"},
	    {1, 10, 0, "/cur/current.log"},
	};
	struct seen s = {""};

	(void)state;
	assert_int_equal(overlap_find(v, 3, record, &s), 1);
	assert_string_equal(s.text, "0:/cur/current.log>1:/logs/app.log\n");
}

/* A hard link (two paths of one source to one file) is no overlap; three sources give two
 * pairs, each later source named once however many of its paths lead to the file. */
static void test_links_and_three(void **state)
{
	struct overlap_file v[] = {
	    {5, 7, 2, "/c/b.log"},     {5, 7, 0, "/a/z.log"}, {5, 7, 2, "/c/a.log"},
	    {5, 7, 0, "/a/y.log"},     {5, 7, 1, "/b/x.log"}, {5, 8, 1, "/b/hard1.log"},
	    {5, 8, 1, "/b/hard2.log"},
	};
	struct seen s = {""};

	(void)state;
	assert_int_equal(overlap_find(v, 7, record, &s), 2);
	assert_string_equal(s.text, "0:/a/y.log>1:/b/x.log\n0:/a/y.log>2:/c/a.log\n");
	assert_int_equal(overlap_find(v, 7, NULL, NULL), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_none),
	    cmocka_unit_test(test_pair),
	    cmocka_unit_test(test_links_and_three),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
