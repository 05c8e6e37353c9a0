/* Unit tests of lines, the line splitter: one case per rule of lines.h with offsets worked out by
 * hand, then a property test. The property test builds inputs from real log lines (the shared
 * logs) and awkward content (CRLF, NUL runs in and between lines and at the end, over-long lines,
 * lines at the limit with and without '\r', invalid UTF-8, no final newline) and checks that fed
 * in one piece, in many random chunkings, and read the way tail.c reads a growing file (a new
 * splitter from each checkpoint), the splitter gives the same lines, offsets and counters as a
 * naive model written from the rules, and that every byte fed is either consumed or pending.
 * The seed is random unless LINES_SEED is set; it is printed with every failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/lines.h"

/* One line as called back, its bytes copied. */
struct rec {
	enum lines_kind kind;
	char *data;
	size_t len;
	int64_t offset, end, number;
};

/* Everything a split gives. */
struct got {
	struct rec *v;
	size_t n, cap;
	int64_t number_base; /* added to the numbers called back (a splitter started later) */
	struct lines_counts c;
	enum lines_pending pending;
	/* for the unit cases: where the chunk fed was, to see that lines are not copied */
	const char *chunk;
	size_t chunk_len;
	int copied;     /* a TEXT line's data pointed outside the chunk */
	int stop_after; /* > 0: the callback returns -1 at that line */
};

static void got_free(struct got *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->v[i].data);
	free(g->v);
	memset(g, 0, sizeof(*g));
}

static struct rec *got_add(struct got *g)
{
	if (g->n == g->cap) {
		g->cap = g->cap ? g->cap * 2 : 64;
		g->v = realloc(g->v, g->cap * sizeof(*g->v));
		assert_non_null(g->v);
	}
	memset(&g->v[g->n], 0, sizeof(g->v[0]));
	return &g->v[g->n++];
}

static int collect(const struct lines_line *l, void *ud)
{
	struct got *g = ud;
	struct rec *r = got_add(g);

	r->kind = l->kind;
	r->len = l->len;
	r->offset = l->offset;
	r->end = l->end;
	r->number = g->number_base + l->number;
	if (l->kind == LINES_TEXT || l->kind == LINES_TORN) {
		assert_non_null(l->data);
		r->data = malloc(l->len + 1);
		assert_non_null(r->data);
		memcpy(r->data, l->data, l->len);
		r->data[l->len] = '\0';
		if (g->chunk != NULL && l->len > 0 &&
		    (l->data < g->chunk || l->data + l->len > g->chunk + g->chunk_len))
			g->copied = 1;
	} else {
		assert_null(l->data);
	}
	if (g->stop_after > 0 && (int)g->n == g->stop_after)
		return -1;
	return 0;
}

/* Feeds `n` bytes in one piece to a splitter at offset 0. */
static void split_whole(const char *data, size_t n, size_t max, struct got *g)
{
	char err[256] = "";
	struct lines *sp = lines_new(0, max, err, sizeof(err));

	assert_non_null(sp);
	g->chunk = data;
	g->chunk_len = n;
	assert_int_equal(lines_feed(sp, data, n, collect, g, err, sizeof(err)), 0);
	g->c = *lines_counts(sp);
	g->pending = lines_pending(sp);
	lines_free(sp);
}

static void split_str(const char *s, size_t max, struct got *g)
{
	split_whole(s, strlen(s), max, g);
}

static void check_rec(const struct rec *r, enum lines_kind kind, const char *data, int64_t offset,
                      int64_t end)
{
	assert_int_equal(r->kind, kind);
	if (data != NULL) {
		assert_int_equal(r->len, strlen(data));
		assert_memory_equal(r->data, data, r->len);
	}
	assert_int_equal(r->offset, offset);
	assert_int_equal(r->end, end);
}

/* --- unit cases ------------------------------------------------------------------------------ */

static void test_plain(void **state)
{
	struct got g = {0};

	(void)state;
	split_str("GET /a 200\n\nPOST /b 500\n", 64, &g);
	assert_int_equal(g.n, 3);
	check_rec(&g.v[0], LINES_TEXT, "GET /a 200", 0, 11);
	check_rec(&g.v[1], LINES_TEXT, "", 11, 12); /* an empty line is a line */
	check_rec(&g.v[2], LINES_TEXT, "POST /b 500", 12, 24);
	assert_int_equal(g.v[2].number, 3);
	assert_false(g.copied); /* lines wholly inside the chunk are not copied */
	assert_int_equal(g.c.lines, 3);
	assert_int_equal(g.c.newlines, 3);
	assert_int_equal(g.c.consumed, 24);
	assert_int_equal(g.c.fed, 24);
	assert_int_equal(g.pending, LINES_PENDING_NONE);
	got_free(&g);
}

static void test_crlf(void **state)
{
	struct got g = {0};

	(void)state;
	/* One trailing '\r' is dropped; a '\r' elsewhere is a byte of the line. */
	split_str("a b\r\n\r\nx\ry\r\nz\r\r\n", 64, &g);
	assert_int_equal(g.n, 4);
	check_rec(&g.v[0], LINES_TEXT, "a b", 0, 5);
	check_rec(&g.v[1], LINES_TEXT, "", 5, 7);
	check_rec(&g.v[2], LINES_TEXT, "x\ry", 7, 12);
	check_rec(&g.v[3], LINES_TEXT, "z\r", 12, 16);
	got_free(&g);
}

static void test_nul_bytes(void **state)
{
	/* "\0\0\0cus_a 5\n" 0-10, "\0\0\n" 11-13, "cus_b\0 6\n" 14-22 (torn at 19), "\0\n" 23-24,
	 * "\0x\n" 25-27 */
	static const char data[] = "\0\0\0cus_a 5\n\0\0\ncus_b\0 6\n\0\n\0x\n";
	struct got g = {0};

	(void)state;
	split_whole(data, sizeof(data) - 1, 64, &g);
	assert_int_equal(g.n, 6);
	check_rec(&g.v[0], LINES_TEXT, "cus_a 5", 3, 11); /* offset: its first byte not NUL */
	check_rec(&g.v[1], LINES_NUL, NULL, 11, 14);      /* only NULs: no line */
	/* text after NULs: the text before them is torn, not joined to it */
	check_rec(&g.v[2], LINES_TORN, "cus_b", 14, 20);
	check_rec(&g.v[3], LINES_TEXT, " 6", 20, 23);
	check_rec(&g.v[4], LINES_NUL, NULL, 23, 25);
	check_rec(&g.v[5], LINES_TEXT, "x", 26, 28);
	assert_int_equal(g.v[1].number, 2);
	assert_int_equal(g.v[2].number, 3);
	assert_int_equal(g.v[3].number, 3);
	assert_int_equal(g.c.lines, 3);
	assert_int_equal(g.c.torn_lines, 1);
	assert_int_equal(g.c.newlines, 5);
	assert_int_equal(g.c.nul_bytes, 8);
	assert_int_equal(g.c.consumed, 28);
	got_free(&g);
}

static void test_nul_run_at_end(void **state)
{
	static const char data[] = "a\n\0\0\0\0";
	char err[256] = "";
	struct lines *sp = lines_new(100, 64, err, sizeof(err));
	struct got g = {0};

	(void)state;
	assert_non_null(sp);
	/* A run of NULs before any byte of a line, at the end of what was fed: not consumed
	 * (a preallocated file's zeros are overwritten in place later). */
	assert_int_equal(lines_feed(sp, data, 6, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(lines_counts(sp)->consumed, 102);
	assert_int_equal(lines_counts(sp)->fed, 106);
	assert_int_equal(lines_counts(sp)->nul_bytes, 0);
	assert_int_equal(lines_pending(sp), LINES_PENDING_NUL);
	/* More NULs: still pending. */
	assert_int_equal(lines_feed(sp, data + 2, 3, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_counts(sp)->consumed, 102);
	assert_int_equal(lines_pending(sp), LINES_PENDING_NUL);
	/* Something follows them: all seven are consumed, the line starts after them. */
	assert_int_equal(lines_feed(sp, "b", 1, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_counts(sp)->nul_bytes, 7);
	assert_int_equal(lines_counts(sp)->consumed, 109);
	assert_int_equal(lines_pending(sp), LINES_PENDING_LINE);
	/* NULs between its text and its '\n': torn, its end may be what they stand for. */
	assert_int_equal(lines_feed(sp, "\0\n", 2, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(g.n, 2);
	check_rec(&g.v[1], LINES_TORN, "b", 109, 112);
	assert_int_equal(g.v[1].number, 2);
	assert_int_equal(lines_counts(sp)->torn_lines, 1);
	assert_int_equal(lines_counts(sp)->nul_bytes, 8);
	assert_int_equal(lines_counts(sp)->consumed, 112);
	assert_int_equal(lines_pending(sp), LINES_PENDING_NONE);
	/* NULs followed by a '\n' in the next chunk: a record of NULs, consumed. */
	assert_int_equal(lines_feed(sp, "\0\0", 2, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_counts(sp)->consumed, 112);
	assert_int_equal(lines_feed(sp, "\n", 1, collect, &g, err, sizeof(err)), 0);
	check_rec(&g.v[2], LINES_NUL, NULL, 112, 115);
	assert_int_equal(lines_counts(sp)->nul_bytes, 10);
	assert_int_equal(lines_counts(sp)->lines, 1);
	assert_int_equal(lines_counts(sp)->consumed, 115);
	lines_free(sp);
	got_free(&g);

	/* NULs after the first byte of a line belong to the line: pending with it. */
	split_whole("ab\0\0", 4, 64, &g);
	assert_int_equal(g.c.consumed, 0);
	assert_int_equal(g.pending, LINES_PENDING_LINE);
	assert_int_equal(g.c.nul_bytes, 0);
	got_free(&g);
}

static void test_partial_last_line(void **state)
{
	struct got g = {0};

	(void)state;
	split_str("one\ntwo\nthr", 64, &g);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.c.consumed, 8); /* the checkpoint stays at its start */
	assert_int_equal(g.c.fed, 11);
	assert_int_equal(g.c.lines, 2);
	assert_int_equal(g.pending, LINES_PENDING_LINE);
	got_free(&g);
	/* NULs before it are consumed: it starts at its first byte. */
	split_whole("one\n\0\0thr", 9, 64, &g);
	assert_int_equal(g.c.consumed, 6);
	assert_int_equal(g.c.nul_bytes, 2);
	assert_int_equal(g.pending, LINES_PENDING_LINE);
	got_free(&g);
}

/* lines_finish: an archive's last line without its '\n' is a line (torn if NULs end it); NULs
 * and a trailing run of NULs are counted; an over-long one is a long line. */
static void test_finish(void **state)
{
	static const char data[] = "one\ntw\0o\r";
	char err[256] = "";
	struct lines *sp = lines_new(10, 64, err, sizeof(err));
	struct got g = {0};

	(void)state;
	assert_non_null(sp);
	assert_int_equal(lines_feed(sp, data, sizeof(data) - 1, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_pending(sp), LINES_PENDING_LINE);
	assert_int_equal(lines_finish(sp, collect, &g), 0);
	assert_int_equal(g.n, 3);
	check_rec(&g.v[1], LINES_TORN, "tw", 14, 17); /* cut by the NUL, called back by the feed */
	check_rec(&g.v[2], LINES_TEXT, "o", 17, 19);  /* the '\r' dropped */
	assert_int_equal(g.v[1].number, 2);
	assert_int_equal(g.v[2].number, 2);
	assert_int_equal(lines_counts(sp)->consumed, 19);
	assert_int_equal(lines_counts(sp)->lines, 2);
	assert_int_equal(lines_counts(sp)->torn_lines, 1);
	assert_int_equal(lines_counts(sp)->newlines, 1);
	assert_int_equal(lines_counts(sp)->nul_bytes, 1);
	assert_int_equal(lines_pending(sp), LINES_PENDING_NONE);
	assert_int_equal(lines_finish(sp, collect, &g), 0); /* nothing more */
	assert_int_equal(g.n, 3);
	lines_free(sp);
	got_free(&g);

	/* NULs after the last line's text: pending while the file may grow, torn at the end. */
	sp = lines_new(0, 64, err, sizeof(err));
	assert_non_null(sp);
	assert_int_equal(lines_feed(sp, "a\nbytes=5\0\0", 11, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_pending(sp), LINES_PENDING_LINE);
	assert_int_equal(lines_counts(sp)->consumed, 2);
	assert_int_equal(lines_finish(sp, collect, &g), 0);
	assert_int_equal(g.n, 2);
	check_rec(&g.v[1], LINES_TORN, "bytes=5", 2, 11);
	assert_int_equal(lines_counts(sp)->torn_lines, 1);
	assert_int_equal(lines_counts(sp)->nul_bytes, 2);
	assert_int_equal(lines_counts(sp)->consumed, 11);
	lines_free(sp);
	got_free(&g);

	/* A run of NULs at the end: counted, consumed, no line. */
	sp = lines_new(0, 64, err, sizeof(err));
	assert_non_null(sp);
	assert_int_equal(lines_feed(sp, "a\n\0\0\0", 5, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_finish(sp, collect, &g), 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(lines_counts(sp)->nul_bytes, 3);
	assert_int_equal(lines_counts(sp)->consumed, 5);
	lines_free(sp);
	got_free(&g);

	/* Over-long without its '\n': a long line. */
	sp = lines_new(0, 4, err, sizeof(err));
	assert_non_null(sp);
	assert_int_equal(lines_feed(sp, "ab\n123456", 9, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_pending(sp), LINES_PENDING_LONG);
	assert_int_equal(lines_finish(sp, collect, &g), 0);
	assert_int_equal(g.n, 2);
	check_rec(&g.v[1], LINES_LONG, NULL, 3, 9);
	assert_int_equal(lines_counts(sp)->long_lines, 1);
	assert_int_equal(lines_counts(sp)->consumed, 9);
	lines_free(sp);
	got_free(&g);
	assert_int_equal(lines_finish(NULL, collect, NULL), 0);
}

static void test_length_limit(void **state)
{
	/* max_line_length 8: the '\r' and NULs do not count. */
	static const char data[] = "12345678\n"       /*  0- 8: at the limit */
	                           "123456789\n"      /*  9-18: one over */
	                           "12345678\r\n"     /* 19-28: at the limit with its CR */
	                           "123456789\r\n"    /* 29-39: one over with its CR */
	                           "12345678\r\r\n"   /* 40-50: "12345678\r" is one over */
	                           "1234\0\0005678\n" /* 51-61: torn at 57 */
	                           "\0\0001234567890\0"
	                           "ab\n"            /* 62-77: 2 NULs, long, cut at 75 by the NUL */
	                           "123456789\0\0\n" /* 78-89: long, NULs before its '\n' */
	                           "ok\n";           /* 90-92 */
	struct got g = {0};

	(void)state;
	split_whole(data, sizeof(data) - 1, 8, &g);
	assert_int_equal(g.n, 11);
	check_rec(&g.v[0], LINES_TEXT, "12345678", 0, 9);
	check_rec(&g.v[1], LINES_LONG, NULL, 9, 19);
	assert_int_equal(g.v[1].len, 9);
	check_rec(&g.v[2], LINES_TEXT, "12345678", 19, 29);
	check_rec(&g.v[3], LINES_LONG, NULL, 29, 40);
	assert_int_equal(g.v[3].len, 9);
	check_rec(&g.v[4], LINES_LONG, NULL, 40, 51);
	check_rec(&g.v[5], LINES_TORN, "1234", 51, 57);
	check_rec(&g.v[6], LINES_TEXT, "5678", 57, 62);
	check_rec(&g.v[7], LINES_LONG, NULL, 64, 75);
	assert_int_equal(g.v[7].len, 10);
	check_rec(&g.v[8], LINES_TEXT, "ab", 75, 78);
	check_rec(&g.v[9], LINES_LONG, NULL, 78, 90);
	check_rec(&g.v[10], LINES_TEXT, "ok", 90, 93);
	assert_int_equal(g.c.lines, 10);
	assert_int_equal(g.c.long_lines, 5);
	assert_int_equal(g.c.torn_lines, 1);
	/* 2 after the torn line, 2 before a long line; those after a long line's bytes are its own
	 */
	assert_int_equal(g.c.nul_bytes, 4);
	assert_int_equal(g.c.consumed, 93);
	got_free(&g);
}

static void test_long_line_across_feeds(void **state)
{
	char big[100], err[256] = "";
	struct lines *sp = lines_new(0, 16, err, sizeof(err));
	struct lines *sp2;
	struct got g = {0};

	(void)state;
	memset(big, 'y', sizeof(big));
	assert_non_null(sp);
	assert_int_equal(lines_feed(sp, "a\n", 2, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_feed(sp, big, 60, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_pending(sp), LINES_PENDING_LONG);
	assert_int_equal(lines_counts(sp)->consumed, 2);
	assert_int_equal(lines_counts(sp)->fed, 62);
	/* A new splitter (the next read) goes on after the bytes already skipped. */
	sp2 = lines_new(2, 16, err, sizeof(err));
	assert_non_null(sp2);
	assert_int_equal(lines_resume_long(sp2, 62), 0);
	assert_int_equal(lines_resume_long(sp2, 62), -1); /* only once, before any byte */
	assert_int_equal(lines_pending(sp2), LINES_PENDING_LONG);
	assert_int_equal(lines_feed(sp2, big, 40, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_feed(sp2, "\nb\n", 3, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(g.n, 3);
	check_rec(&g.v[1], LINES_LONG, NULL, 2, 103);
	assert_int_equal(g.v[1].len, 100);
	check_rec(&g.v[2], LINES_TEXT, "b", 103, 105);
	assert_int_equal(lines_counts(sp2)->long_lines, 1);
	assert_int_equal(lines_counts(sp2)->consumed, 105);
	lines_free(sp);
	lines_free(sp2);
	got_free(&g);

	/* NULs at the end of a read inside an over-long line are fed again by the next read, so
	 * that the text after them still cuts it. */
	sp = lines_new(0, 16, err, sizeof(err));
	assert_non_null(sp);
	assert_int_equal(lines_feed(sp, "a\n", 2, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_feed(sp, big, 60, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_feed(sp, "\0\0\0", 3, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_pending(sp), LINES_PENDING_LONG);
	assert_int_equal(lines_resume_point(sp), 62);
	sp2 = lines_new(2, 16, err, sizeof(err));
	assert_non_null(sp2);
	assert_int_equal(lines_resume_long(sp2, lines_resume_point(sp)), 0);
	assert_int_equal(lines_feed(sp2, "\0\0\0zz\n", 6, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(g.n, 3);
	check_rec(&g.v[1], LINES_LONG, NULL, 2, 65);
	check_rec(&g.v[2], LINES_TEXT, "zz", 65, 68);
	assert_int_equal(g.v[2].number, 1);                /* the first line of sp2 */
	assert_int_equal(lines_counts(sp2)->nul_bytes, 0); /* the long line's */
	lines_free(sp);
	lines_free(sp2);
	got_free(&g);

	/* A line within the limit that spans feeds is kept whole. */
	sp = lines_new(0, 16, err, sizeof(err));
	assert_non_null(sp);
	assert_int_equal(lines_feed(sp, "abc", 3, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_feed(sp, "de", 2, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_feed(sp, "f\r", 2, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_feed(sp, "\n", 1, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(g.n, 1);
	check_rec(&g.v[0], LINES_TEXT, "abcdef", 0, 8);
	lines_free(sp);
	got_free(&g);
}

/* Feeds d[0..n) cut at `cuts` (k increasing offsets inside it) to a splitter at offset 0. */
static void split_at(const char *d, size_t n, const size_t *cuts, size_t k, size_t max,
                     struct got *g)
{
	char err[256] = "";
	struct lines *sp = lines_new(0, max, err, sizeof(err));
	size_t from = 0;

	assert_non_null(sp);
	for (size_t i = 0; i <= k; i++) {
		size_t to = i < k ? cuts[i] : n;
		char *chunk = malloc(to - from + 1);

		/* a copy, wiped after the feed: no pointer into it may be kept */
		assert_non_null(chunk);
		memcpy(chunk, d + from, to - from);
		assert_int_equal(lines_feed(sp, chunk, to - from, collect, g, err, sizeof(err)), 0);
		memset(chunk, '#', to - from);
		free(chunk);
		from = to;
	}
	g->c = *lines_counts(sp);
	g->pending = lines_pending(sp);
	lines_free(sp);
}

/* The torn lines of `torn_input` with a run of `run` NULs, wherever the chunks are cut. */
static void check_torn(const struct got *g, size_t run)
{
	int64_t b = (int64_t)run; /* offsets after the run move with it */

	assert_int_equal(g->n, 6);
	/* text, NULs, text: the first is torn (bytes=5 may have been bytes=512), the second a
	 * line of its own at its first byte, on the same line number */
	check_rec(&g->v[0], LINES_TORN, "10.0.0.1 - cus_A bytes=5", 0, 24 + b);
	check_rec(&g->v[1], LINES_TEXT, "10.0.0.2 - cus_B bytes=7", 24 + b, 49 + b);
	assert_int_equal(g->v[0].number, 1);
	assert_int_equal(g->v[1].number, 1);
	/* NULs at the start of a line: the writer went on after the hole, a line as before */
	check_rec(&g->v[2], LINES_TEXT, "cus_C bytes=9", 52 + b, 66 + b);
	/* NULs between the text and its '\n': torn too */
	check_rec(&g->v[3], LINES_TORN, "cus_D bytes=4", 66 + b, 83 + b);
	assert_int_equal(g->v[3].number, 3);
	/* CRLF: its '\r' after the NULs is a line of its own, empty once the '\r' is dropped */
	check_rec(&g->v[4], LINES_TORN, "cus_E bytes=6", 83 + b, 98 + b);
	check_rec(&g->v[5], LINES_TEXT, "", 98 + b, 100 + b);
	assert_int_equal(g->v[5].number, 4);
	assert_int_equal(g->c.lines, 3);
	assert_int_equal(g->c.torn_lines, 3);
	assert_int_equal(g->c.nul_bytes, (int64_t)run + 3 + 3 + 2);
	assert_int_equal(g->c.newlines, 4);
	assert_int_equal(g->c.consumed, 100 + b);
	assert_int_equal(g->pending, LINES_PENDING_NONE);
}

static void torn_input(char *d, size_t run, size_t *n)
{
	static const char a[] = "10.0.0.1 - cus_A bytes=5";
	static const char rest[] = "10.0.0.2 - cus_B bytes=7\n\0\0\0cus_C bytes=9\ncus_D "
	                           "bytes=4\0\0\0\ncus_E bytes=6\0\0\r\n";

	memcpy(d, a, sizeof(a) - 1);
	memset(d + sizeof(a) - 1, '\0', run);
	memcpy(d + sizeof(a) - 1 + run, rest, sizeof(rest) - 1);
	*n = sizeof(a) - 1 + run + sizeof(rest) - 1;
}

static void test_torn(void **state)
{
	static char d[4096];
	size_t n, cuts[2];
	struct got g = {0};

	(void)state;
	/* A crash's 3000 NULs: in one piece, and cut in two at every offset. */
	torn_input(d, 3000, &n);
	split_whole(d, n, 64, &g);
	check_torn(&g, 3000);
	got_free(&g);
	for (cuts[0] = 1; cuts[0] < n; cuts[0]++) {
		split_at(d, n, cuts, 1, 64, &g);
		check_torn(&g, 3000);
		got_free(&g);
	}
	/* A short run, cut in three at every pair of offsets. */
	torn_input(d, 5, &n);
	for (cuts[0] = 1; cuts[0] < n; cuts[0]++)
		for (cuts[1] = cuts[0] + 1; cuts[1] < n; cuts[1]++) {
			split_at(d, n, cuts, 2, 64, &g);
			check_torn(&g, 5);
			got_free(&g);
		}
	/* The torn text and the text after it are judged on their own against the limit: each is
	 * within 24 bytes, together they are not. */
	torn_input(d, 5, &n);
	split_whole(d, n, 24, &g);
	check_torn(&g, 5);
	got_free(&g);
}

static void test_callback_stops(void **state)
{
	char err[256] = "";
	struct lines *sp = lines_new(0, 16, err, sizeof(err));
	struct got g = {0};

	(void)state;
	assert_non_null(sp);
	g.stop_after = 2;
	assert_int_equal(lines_feed(sp, "a\nb\nc\n", 6, collect, &g, err, sizeof(err)), -1);
	assert_int_equal(g.n, 2);
	/* The counters include the line the callback refused: its checkpoint was handed over. */
	assert_int_equal(lines_counts(sp)->consumed, 4);
	lines_free(sp);
	got_free(&g);
}

static void test_arguments(void **state)
{
	char err[256] = "";
	struct lines *sp;
	struct got g = {0};

	(void)state;
	assert_null(lines_new(-1, 16, err, sizeof(err)));
	assert_null(lines_new(0, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "invalid"));
	lines_free(NULL);
	sp = lines_new(0, 16, err, sizeof(err));
	assert_non_null(sp);
	assert_int_equal(lines_resume_long(sp, 0), -1);
	assert_int_equal(lines_feed(sp, NULL, 0, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_feed(sp, "x", 1, collect, &g, err, sizeof(err)), 0);
	assert_int_equal(lines_resume_long(sp, 5), -1);
	assert_int_equal(lines_feed(sp, NULL, 1, collect, &g, err, sizeof(err)), -1);
	lines_free(sp);
}

/* --- the property test ----------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static size_t rnd_below(size_t n)
{
	return n > 0 ? (size_t)(rnd() % n) : 0;
}

static uint64_t seed;

struct buf {
	char *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *data, size_t n)
{
	if (b->n + n > b->cap) {
		while (b->n + n > b->cap)
			b->cap = b->cap ? b->cap * 2 : 4096;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, data, n);
	b->n += n;
}

static void put_fill(struct buf *b, int c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = (char)c;

		put(b, &ch, 1);
	}
}

/* The real log lines, without their newlines. */
struct corpus {
	char *data;
	size_t n;
	const char **line;
	size_t *len;
	size_t lines;
};

static void corpus_load(struct corpus *k)
{
	static const char *const files[] = {"elastic_nginx_logs_prefix29480.log",
	                                    "elastic_apache_logs.log", "lnav_haproxy_httplog.log",
	                                    "lnav_caddy_json_docker.log"};
	const char *dir = getenv("LOGMETER_LOGS"), *top = getenv("top_srcdir");
	char path[8192], base[4096];
	struct buf b = {0};

	if (dir != NULL)
		snprintf(base, sizeof(base), "%s", dir);
	else
		snprintf(base, sizeof(base), "%s/../shared/data/logs", top != NULL ? top : "..");
	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		FILE *fp;
		char chunk[65536];
		size_t got, taken = 0;

		snprintf(path, sizeof(path), "%s/%s", base, files[f]);
		fp = fopen(path, "rb");
		if (fp == NULL)
			fail_msg("the shared test logs are missing: %s (set LOGMETER_LOGS to their "
			         "directory)",
			         path);
		/* 256 KiB of each is plenty of variety */
		while (taken < 256 * 1024 && (got = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
			put(&b, chunk, got);
			taken += got;
		}
		fclose(fp);
		if (b.n > 0 && b.p[b.n - 1] != '\n')
			put(&b, "\n", 1);
	}
	k->data = b.p;
	k->n = b.n;
	for (size_t i = 0; i < b.n; i++)
		k->lines += b.p[i] == '\n';
	k->line = calloc(k->lines, sizeof(*k->line));
	k->len = calloc(k->lines, sizeof(*k->len));
	assert_non_null(k->line);
	assert_non_null(k->len);
	for (size_t i = 0, s = 0, l = 0; i < b.n; i++)
		if (b.p[i] == '\n') {
			k->line[l] = b.p + s;
			k->len[l++] = i - s;
			s = i + 1;
		}
	assert_true(k->lines > 1000);
}

static void corpus_free(struct corpus *k)
{
	free(k->data);
	free(k->line);
	free(k->len);
}

/* Up to `n` bytes of a random real line (its start), or of 'x' beyond it. */
static void put_real(struct buf *b, const struct corpus *k, size_t n)
{
	size_t i = rnd_below(k->lines), take = k->len[i] < n ? k->len[i] : n;

	put(b, k->line[i], take);
	put_fill(b, 'x', n - take);
}

static void put_nuls(struct buf *b, size_t max)
{
	put_fill(b, '\0', 1 + rnd_below(rnd_below(4) == 0 ? 3 * max : 4));
}

/* One input: a few hundred pieces, real lines most of them. */
static void make_input(struct buf *b, const struct corpus *k, size_t max)
{
	static const char bad_utf8[] = "\xff\xfe\xc0\xaf\xed\xa0\x80\x80";
	size_t pieces = 50 + rnd_below(400);

	b->n = 0;
	for (size_t i = 0; i < pieces; i++) {
		const char *eol = rnd_below(4) == 0 ? "\r\n" : "\n";
		size_t c = rnd_below(20);

		if (c < 9) { /* a real line, whole */
			size_t l = rnd_below(k->lines);

			put(b, k->line[l], k->len[l]);
		} else if (c == 9) { /* at the limit, one under, one over */
			put_real(b, k, max - 1 + rnd_below(3));
		} else if (c == 10) { /* at the limit or one over, then a CR (and maybe another) */
			put_real(b, k, max + rnd_below(2));
			put(b, "\r\r", 1 + (rnd_below(4) == 0));
		} else if (c == 11) { /* over-long, up to 3 times the limit */
			put_real(b, k, max + 1 + rnd_below(2 * max));
		} else if (c == 12) { /* NULs inside a real line */
			size_t l = rnd_below(k->lines), at = rnd_below(k->len[l] + 1);

			put(b, k->line[l], at);
			put_nuls(b, max);
			put(b, k->line[l] + at, k->len[l] - at);
		} else if (c == 13) { /* NULs before a line, or a line of NULs */
			put_nuls(b, max);
			if (rnd_below(2))
				put_real(b, k, rnd_below(max));
		} else if (c == 14) { /* invalid UTF-8 in a line */
			size_t l = rnd_below(k->lines), at = rnd_below(k->len[l] + 1);

			put(b, k->line[l], at);
			put(b, bad_utf8 + rnd_below(4), 1 + rnd_below(4));
			put(b, k->line[l] + at, k->len[l] - at);
		} else if (c == 15) { /* empty */
		} else if (c == 16) { /* a CR inside, and at the limit with NULs around the CR */
			put_real(b, k, max);
			if (rnd_below(2))
				put_nuls(b, max);
			put(b, "\r", 1);
			if (rnd_below(2))
				put_nuls(b, max);
		} else { /* NULs after a line, before its newline */
			put_real(b, k, rnd_below(max + 2));
			put_nuls(b, max);
		}
		put(b, eol, strlen(eol));
	}
	switch (rnd_below(5)) { /* the end */
	case 0:
		break; /* a last newline */
	case 1:
		put_real(b, k, 1 + rnd_below(max)); /* a last line without it */
		break;
	case 2:
		put_nuls(b, max); /* NULs at the end */
		break;
	case 3:
		put_real(b, k, max + 1 + rnd_below(max)); /* an over-long last line */
		if (rnd_below(2))
			put_nuls(b, max);
		break;
	default:
		put_nuls(b, max); /* NULs then a partial line */
		put_real(b, k, 1 + rnd_below(max));
		break;
	}
}

/* The bare length of a piece of `len` bytes (without NULs) and whether it is over-long, as
 * lines.h defines it: more than max once a trailing '\r' is dropped. */
static size_t bare_len(const char *line, size_t len)
{
	return len > 0 && line[len - 1] == '\r' ? len - 1 : len;
}

/* Emits one piece of a line: its bytes line[0..len), its offset, end and number; `nuls` NULs
 * follow it (torn if > 0) unless it is over-long. */
static void model_piece(struct got *g, const char *line, size_t len, size_t nuls, int64_t offset,
                        int64_t end, int64_t number, size_t max)
{
	struct rec *r = got_add(g);
	size_t bare = bare_len(line, len);

	r->number = number;
	r->end = end;
	r->offset = offset;
	r->len = bare;
	if (bare > max) {
		r->kind = LINES_LONG;
		g->c.lines++;
		g->c.long_lines++;
		return;
	}
	r->kind = nuls > 0 ? LINES_TORN : LINES_TEXT;
	r->data = malloc(bare + 1);
	assert_non_null(r->data);
	memcpy(r->data, line, bare);
	if (nuls > 0)
		g->c.torn_lines++;
	else
		g->c.lines++;
	g->c.nul_bytes += (int64_t)nuls;
}

/* The rules of lines.h, one record at a time, written without the splitter's state machine:
 * a record is cut at every run of NULs that text follows; each piece before such a run is torn
 * (or long), the last piece ends at the '\n' (torn if NULs end it). */
static void model(const char *d, size_t n, size_t max, struct got *g)
{
	size_t s = 0;
	char *line = malloc(n + 1);

	assert_non_null(line);
	memset(&g->c, 0, sizeof(g->c));
	for (;;) {
		const char *nl = memchr(d + s, '\n', n - s);
		size_t e = nl != NULL ? (size_t)(nl - d) : n, lead = 0, p;

		while (s + lead < e && d[s + lead] == '\0')
			lead++;
		if (nl == NULL && s + lead == n) {
			/* the end: NULs only (pending) */
			g->pending = s == n ? LINES_PENDING_NONE : LINES_PENDING_NUL;
			g->c.consumed = (int64_t)s;
			break;
		}
		if (nl != NULL && lead > 0 && s + lead == e) {
			struct rec *r = got_add(g);

			g->c.newlines++;
			r->kind = LINES_NUL;
			r->number = g->c.newlines;
			r->offset = (int64_t)s;
			r->end = (int64_t)e + 1;
			g->c.nul_bytes += (int64_t)lead;
			s = e + 1;
			continue;
		}
		g->c.nul_bytes += (int64_t)lead;
		p = s + lead;
		for (;;) {
			size_t t = p, u;

			while (t < e && d[t] != '\0')
				t++;
			u = t;
			while (u < e && d[u] == '\0')
				u++;
			memcpy(line, d + p, t - p);
			if (u < e) { /* text follows the NULs: this piece is torn */
				model_piece(g, line, t - p, u - t, (int64_t)p, (int64_t)u,
				            g->c.newlines + 1, max);
				p = u;
				continue;
			}
			if (nl == NULL) {
				size_t len = t - p;

				g->c.consumed = (int64_t)p;
				g->pending =
				    len > max + 1 || (len == max + 1 && line[len - 1] != '\r')
				        ? LINES_PENDING_LONG
				        : LINES_PENDING_LINE;
			} else {
				g->c.newlines++;
				model_piece(g, line, t - p, u - t, (int64_t)p, (int64_t)e + 1,
				            g->c.newlines, max);
			}
			break;
		}
		if (nl == NULL)
			break;
		s = e + 1;
	}
	g->c.fed = (int64_t)n;
	free(line);
}

/* Feeds d[from, to) in random chunks: mostly tiny, sometimes around the limit, sometimes big. */
static void feed_random(struct lines *sp, const char *d, size_t from, size_t to, size_t max,
                        struct got *g)
{
	char err[256] = "";
	int mode = (int)rnd_below(3);

	while (from < to) {
		size_t c;

		switch (mode) {
		case 0:
			c = 1 + rnd_below(8);
			break;
		case 1:
			c = 1 + rnd_below(2 * max + 3);
			break;
		default:
			c = 1 + rnd_below(rnd_below(4) == 0 ? 1 : 64 * 1024);
			break;
		}
		if (c > to - from)
			c = to - from;
		/* a copy: the splitter must not keep pointers into a chunk after its feed */
		{
			char *chunk = malloc(c);

			assert_non_null(chunk);
			memcpy(chunk, d + from, c);
			if (lines_feed(sp, chunk, c, collect, g, err, sizeof(err)) != 0)
				fail_msg("seed %llu: lines_feed: %s", (unsigned long long)seed,
				         err);
			memset(chunk, '#', c);
			free(chunk);
		}
		from += c;
	}
}

static void split_chunks(const char *d, size_t n, size_t max, struct got *g)
{
	char err[256] = "";
	struct lines *sp = lines_new(0, max, err, sizeof(err));

	assert_non_null(sp);
	feed_random(sp, d, 0, n, max, g);
	g->c = *lines_counts(sp);
	g->pending = lines_pending(sp);
	lines_free(sp);
}

static int64_t newlines_before(const char *d, size_t n)
{
	int64_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += d[i] == '\n';
	return k;
}

/* As tail.c reads a file that grows: each read is a new splitter from the checkpoint (or after
 * the bytes of an over-long line already skipped), fed up to the file's size at that moment;
 * the counters add up across reads. */
static void split_reads(const char *d, size_t n, size_t max, struct got *g)
{
	char err[256] = "";
	size_t size = 0, reads = 1 + rnd_below(12);
	int64_t checkpoint = 0, resume = -1;
	struct lines_counts sum = {0};

	for (size_t r = 0; r < reads; r++) {
		struct lines *sp = lines_new(checkpoint, max, err, sizeof(err));
		const struct lines_counts *c;
		size_t from = (size_t)checkpoint;

		assert_non_null(sp);
		size = r + 1 == reads ? n : size + rnd_below(n - size + 1);
		if (resume >= 0 && (size_t)resume <= size) {
			assert_int_equal(lines_resume_long(sp, resume), 0);
			from = (size_t)resume;
		}
		g->number_base = newlines_before(d, (size_t)checkpoint);
		feed_random(sp, d, from, size, max, g);
		c = lines_counts(sp);
		sum.lines += c->lines;
		sum.long_lines += c->long_lines;
		sum.nul_bytes += c->nul_bytes;
		sum.torn_lines += c->torn_lines;
		sum.newlines += c->newlines;
		checkpoint = c->consumed;
		sum.consumed = c->consumed;
		sum.fed = c->fed;
		g->pending = lines_pending(sp);
		resume = g->pending == LINES_PENDING_LONG ? lines_resume_point(sp) : -1;
		lines_free(sp);
	}
	g->c = sum;
	g->number_base = 0;
}

static void same(const struct got *want, const struct got *g, const char *how, size_t input)
{
	const char *what = NULL;
	size_t i;

	for (i = 0; i < want->n && i < g->n && what == NULL; i++) {
		const struct rec *a = &want->v[i], *b = &g->v[i];

		if (a->kind != b->kind)
			what = "kind";
		else if (a->offset != b->offset)
			what = "offset";
		else if (a->end != b->end)
			what = "end";
		else if (a->number != b->number)
			what = "number";
		else if (a->len != b->len && !(a->kind == LINES_LONG && strcmp(how, "reads") == 0))
			what = "len";
		else if ((a->kind == LINES_TEXT || a->kind == LINES_TORN) &&
		         memcmp(a->data, b->data, a->len) != 0)
			what = "bytes";
	}
	if (what != NULL)
		fail_msg("seed %llu, input %zu, %s: line %zu: the %s differs (want offset %lld end "
		         "%lld kind %d len %zu, got offset %lld end %lld kind %d len %zu)",
		         (unsigned long long)seed, input, how, i - 1, what,
		         (long long)want->v[i - 1].offset, (long long)want->v[i - 1].end,
		         (int)want->v[i - 1].kind, want->v[i - 1].len,
		         (long long)g->v[i - 1].offset, (long long)g->v[i - 1].end,
		         (int)g->v[i - 1].kind, g->v[i - 1].len);
	if (want->n != g->n)
		fail_msg("seed %llu, input %zu, %s: %zu lines called back, want %zu",
		         (unsigned long long)seed, input, how, g->n, want->n);
#define SAME(f)                                                                                    \
	if (want->c.f != g->c.f)                                                                   \
	fail_msg("seed %llu, input %zu, %s: " #f " %lld, want %lld", (unsigned long long)seed,     \
	         input, how, (long long)g->c.f, (long long)want->c.f)
	SAME(consumed);
	SAME(fed);
	SAME(lines);
	SAME(long_lines);
	SAME(nul_bytes);
	SAME(torn_lines);
	SAME(newlines);
#undef SAME
	if (want->pending != g->pending)
		fail_msg("seed %llu, input %zu, %s: pending %d, want %d", (unsigned long long)seed,
		         input, how, (int)g->pending, (int)want->pending);
}

/* Every byte fed is consumed or pending; the lines tile what is consumed, with only NULs between
 * them; a line ends at its '\n', or (torn or long) at text after NULs; what is pending is a NUL
 * run, or a line (no '\n') starting with a byte that is not NUL, with no NULs inside it that
 * text follows. */
static void accounted(const char *d, size_t n, const struct got *g, size_t input)
{
	int64_t at = 0, nuls = 0;
	size_t last = 0, lead = 0, start;

	for (size_t i = 0; i < g->n; i++) {
		const struct rec *r = &g->v[i];
		int at_nl, at_text;

		for (; at < r->offset; at++)
			if (d[at] != '\0')
				fail_msg(
				    "seed %llu, input %zu: byte %lld before line %zu is not NUL",
				    (unsigned long long)seed, input, (long long)at, i);
		at_nl = r->end > r->offset && d[r->end - 1] == '\n';
		at_text = (r->kind == LINES_TORN || r->kind == LINES_LONG) && r->end > r->offset &&
		          (size_t)r->end < n && d[r->end - 1] == '\0' && d[r->end] != '\0' &&
		          d[r->end] != '\n';
		if ((!at_nl && !at_text) || r->end <= r->offset ||
		    memchr(d + r->offset, '\n', (size_t)(r->end - 1 - r->offset)) != NULL)
			fail_msg("seed %llu, input %zu: line %zu is not one line",
			         (unsigned long long)seed, input, i);
		at = r->end;
	}
	for (int64_t i = 0; i < g->c.consumed; i++)
		nuls += d[i] == '\0';
	assert_true(nuls >= g->c.nul_bytes);
	assert_true(g->c.consumed >= at);
	assert_int_equal(g->c.fed, (int64_t)n);
	/* What is after the last '\n': all NULs (all pending), or a line after its leading NULs
	 * and after the last NULs that text follows (those consumed, the line pending). */
	for (size_t i = 0; i < n; i++)
		if (d[i] == '\n')
			last = i + 1;
	while (last + lead < n && d[last + lead] == '\0')
		lead++;
	start = last + lead == n ? last : last + lead;
	for (size_t i = last + lead + 1; i < n; i++)
		if (d[i - 1] == '\0' && d[i] != '\0')
			start = i;
	if (g->c.consumed != (int64_t)start)
		fail_msg("seed %llu, input %zu: consumed %lld, want %zu (fed %lld)",
		         (unsigned long long)seed, input, (long long)g->c.consumed, start,
		         (long long)g->c.fed);
	if (g->pending == LINES_PENDING_NONE)
		assert_int_equal(g->c.consumed, (int64_t)n);
	else if (g->pending == LINES_PENDING_NUL)
		for (size_t i = (size_t)g->c.consumed; i < n; i++)
			assert_int_equal(d[i], '\0');
	else
		assert_true(d[g->c.consumed] != '\0' &&
		            memchr(d + g->c.consumed, '\n', n - (size_t)g->c.consumed) == NULL);
}

static void test_property(void **state)
{
	static const size_t maxes[] = {1, 16, 200, 256, 512, 1024, 4096};
	const char *env = getenv("LINES_SEED");
	struct corpus k = {0};
	struct buf b = {0};
	size_t inputs = 60, checks = 0, kinds[4] = {0}, ends[4] = {0};

	(void)state;
	seed = env != NULL ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)clock();
	print_message("test_lines: seed %llu (LINES_SEED=%llu repeats this run)\n",
	              (unsigned long long)seed, (unsigned long long)seed);
	rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
	corpus_load(&k);
	for (size_t in = 0; in < inputs; in++) {
		size_t max = maxes[rnd_below(sizeof(maxes) / sizeof(maxes[0]))];
		struct got want = {0}, whole = {0};

		make_input(&b, &k, max < 16 ? 16 : max);
		model(b.p, b.n, max, &want);
		split_whole(b.p, b.n, max, &whole);
		same(&want, &whole, "one piece", in);
		for (size_t i = 0; i < whole.n; i++)
			kinds[whole.v[i].kind]++;
		ends[whole.pending]++;
		accounted(b.p, b.n, &whole, in);
		for (int round = 0; round < 25; round++) {
			struct got g = {0};

			split_chunks(b.p, b.n, max, &g);
			same(&whole, &g, "chunks", in);
			got_free(&g);
			split_reads(b.p, b.n, max, &g);
			same(&whole, &g, "reads", in);
			got_free(&g);
			checks += 2;
		}
		got_free(&want);
		got_free(&whole);
	}
	print_message("test_lines: %zu inputs, %zu splits compared; %zu lines, %zu long lines, %zu "
	              "of NULs only, %zu torn; ending with nothing pending %zu times, NULs %zu, a "
	              "line %zu, a "
	              "long line %zu\n",
	              inputs, checks, kinds[LINES_TEXT], kinds[LINES_LONG], kinds[LINES_NUL],
	              kinds[LINES_TORN], ends[LINES_PENDING_NONE], ends[LINES_PENDING_NUL],
	              ends[LINES_PENDING_LINE], ends[LINES_PENDING_LONG]);
	/* the generator makes every case (or the test proves less than it says) */
	for (size_t i = 0; i < 4; i++)
		assert_true(kinds[i] > 0);
	for (size_t i = 0; i < 4; i++)
		assert_true(ends[i] > 0);
	free(b.p);
	corpus_free(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain),
	    cmocka_unit_test(test_crlf),
	    cmocka_unit_test(test_nul_bytes),
	    cmocka_unit_test(test_nul_run_at_end),
	    cmocka_unit_test(test_partial_last_line),
	    cmocka_unit_test(test_finish),
	    cmocka_unit_test(test_length_limit),
	    cmocka_unit_test(test_long_line_across_feeds),
	    cmocka_unit_test(test_torn),
	    cmocka_unit_test(test_callback_stops),
	    cmocka_unit_test(test_arguments),
	    cmocka_unit_test(test_property),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
