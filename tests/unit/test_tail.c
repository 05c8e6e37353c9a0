/* Unit tests for tail and watch: real log files in the fixture's directory, a real spool, a
 * real rule set built from a configuration loaded as the agent loads it. Expected offsets and
 * values are computed from the bytes the tests write. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/event.h"
#include "util/log.h"
#include "core/rule.h"
#include "store/spool.h"
#include "ingest/tail.h"
#include "ingest/watch.h"

#include "fixture.h"

#define INSTANCE "test-instance"

struct tail_fixture {
	struct fixture *base; /* the directory, the spool, the configuration */
	const char *dir;      /* base's, for short */
	const char *state;
	struct spool *sp;
	char log[160];     /* DIR/app.log */
	char pattern[200]; /* the source's glob */
	char map[160];     /* DIR/customers.csv */
	struct rule_set *rules;
	struct tail_ctx ctx;
	atomic_int commits;
};

static void on_commit(void *ud)
{
	struct tail_fixture *fx = ud;

	atomic_fetch_add(&fx->commits, 1);
}

static int setup(void **state)
{
	struct tail_fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	fx->base = fixture_new("test_tail");
	fx->dir = fx->base->dir;
	fx->state = fx->base->state;
	fx->sp = fixture_spool(fx->base);
	snprintf(fx->log, sizeof(fx->log), "%s/app.log", fx->dir);
	snprintf(fx->pattern, sizeof(fx->pattern), "%s/*.log", fx->dir);
	snprintf(fx->map, sizeof(fx->map), "%s/customers.csv", fx->dir);
	fx->ctx.spool = fx->sp;
	fx->ctx.instance = INSTANCE;
	fx->ctx.on_commit = on_commit;
	fx->ctx.ud = fx;
	atomic_init(&fx->commits, 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct tail_fixture *fx = *state;

	rule_set_free(fx->rules);
	fixture_free(fx->base);
	free(fx);
	return 0;
}

/* Loads the configuration: the lines `agent`, `source` and `rule` ("key = value\n"..., or "")
 * in [agent], the source app (the files fx->pattern) and its rule r1; and builds the rule set. */
static void build_rules_with(struct tail_fixture *fx, const char *agent, const char *source,
                             const char *rule)
{
	char err[1024] = "";

	fx->ctx.cfg = fixture_config(fx->base,
	                             "[agent]\n%s"
	                             "[source app]\npath = %s\n%s"
	                             "[rule r1]\nsource = app\nevent_name = api_calls\n"
	                             "pattern = ^(?<cust>\\S+) (?<n>\\d+)$\n"
	                             "customer = cust\nvalue = n\n%s",
	                             agent, fx->pattern, source, rule);
	fx->rules = rule_set_new(fx->ctx.cfg, err, sizeof(err));
	if (fx->rules == NULL)
		fail_msg("rule_set_new: %s", err);
	fx->ctx.rules = fx->rules;
}

/* The periodic rescan a minute away: what the watch finds, inotify told it. */
static void build_rules(struct tail_fixture *fx)
{
	build_rules_with(fx, "rescan_interval = 1m\n", "", "");
}

static void write_str(const char *path, const char *s, int append)
{
	fixture_write(path, s, strlen(s), append);
}

/* ---- reading the spool back ---- */

struct evlist {
	struct event ev[64];
	size_t n;
};

static int collect(const struct event *ev, void *ud)
{
	struct evlist *l = ud;

	if (l->n >= sizeof(l->ev) / sizeof(l->ev[0]))
		return -1;
	l->ev[l->n++] = *ev;
	return 0;
}

static void events(struct spool *sp, enum event_state st, struct evlist *l)
{
	char err[512] = "";

	memset(l, 0, sizeof(*l));
	if (spool_events_foreach(sp, st, collect, l, err, sizeof(err)) != 0)
		fail_msg("spool_events_foreach: %s", err);
}

static int64_t pending(struct spool *sp)
{
	struct spool_counts c;
	char err[512] = "";

	if (spool_counts(sp, &c, err, sizeof(err)) != 0)
		fail_msg("spool_counts: %s", err);
	return c.pending;
}

/* Checks event i: its line offset, customer and value, its file and identifier. */
static void check_event(const struct event *ev, const struct spool_file *f, int64_t offset,
                        const char *customer, const char *value)
{
	char id[EVENT_IDENTIFIER_MAX];

	assert_int_equal(ev->line_offset, offset);
	assert_int_equal(ev->file_id, f->id);
	assert_string_equal(ev->customer, customer);
	assert_string_equal(ev->value, value);
	assert_string_equal(ev->rule, "r1");
	assert_string_equal(ev->event_name, "api_calls");
	assert_string_equal(ev->payload_customer_key, "stripe_customer_id");
	assert_string_equal(ev->payload_value_key, "value");
	assert_int_equal(event_identifier(id, INSTANCE, "app", f->uid, offset, "r1"), 0);
	assert_string_equal(ev->identifier, id);
}

static struct tail *open_tail(struct tail_fixture *fx, const char *path)
{
	char err[1024] = "";
	struct tail *t = tail_open(&fx->ctx, path, 0, err, sizeof(err));

	if (t == NULL)
		fail_msg("tail_open: %s", err);
	return t;
}

static int64_t read_tail(struct tail *t)
{
	char err[1024] = "";
	int64_t n = tail_read(t, err, sizeof(err));

	if (n < 0)
		fail_msg("tail_read: %s", err);
	return n;
}

/* ---- tests ---- */

static void test_lines_partial_restart(void **state)
{
	struct tail_fixture *fx = *state;
	const char *head = "cus_a 5\ncus_b 7\njunk line\ncus_c 9";
	struct spool_file f1;
	struct evlist l;
	struct tail *t;

	build_rules(fx);
	write_str(fx->log, head, 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(tail_file(t)->offset, 0);
	/* 8 + 8 + 10 bytes of complete lines; "cus_c 9" waits for its newline */
	assert_int_equal(read_tail(t), 26);
	spool_file_copy(&f1, tail_file(t));
	assert_int_equal(f1.offset, 26);
	assert_int_equal(f1.counters.lines, 3);
	assert_int_equal(f1.counters.matched, 2);
	assert_int_equal(f1.counters.unmatched, 1);
	assert_int_equal(f1.counters.events, 2);
	assert_int_equal(f1.state, SPOOL_FILE_READING);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 2);
	check_event(&l.ev[0], &f1, 0, "cus_a", "5");
	check_event(&l.ev[1], &f1, 8, "cus_b", "7");
	assert_int_equal(atomic_load(&fx->commits), 1);

	/* Nothing new: nothing read, nothing committed. */
	assert_int_equal(read_tail(t), 0);
	assert_int_equal(atomic_load(&fx->commits), 1);

	/* The partial line completes. */
	write_str(fx->log, "\n", 1);
	assert_int_equal(read_tail(t), 8);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 3);
	check_event(&l.ev[2], &f1, 26, "cus_c", "9");
	assert_int_equal(tail_file(t)->offset, 34);

	/* A restart: the same record, resumed at the checkpoint, nothing read twice. */
	write_str(fx->log, "cus_d 11\ncus_e", 1);
	tail_free(t);
	t = open_tail(fx, fx->log);
	assert_string_equal(tail_file(t)->uid, f1.uid);
	assert_int_equal(tail_file(t)->id, f1.id);
	assert_int_equal(tail_file(t)->offset, 34);
	assert_int_equal(read_tail(t), 9);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 4);
	check_event(&l.ev[3], &f1, 34, "cus_d", "11");
	assert_int_equal(tail_file(t)->offset, 43);

	/* The partial line survives the restart too. */
	tail_free(t);
	write_str(fx->log, " 12\n", 1);
	t = open_tail(fx, fx->log);
	assert_int_equal(tail_file(t)->offset, 43);
	assert_int_equal(read_tail(t), 9);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 5);
	check_event(&l.ev[4], &f1, 43, "cus_e", "12");
	assert_int_equal(tail_file(t)->counters.lines, 6);
	assert_int_equal(tail_file(t)->counters.events, 5);
	assert_int_equal(tail_file(t)->counters.resets, 0);
	tail_free(t);
}

/* A checkpoint older than the committed events (a crash between the commit and ... nothing can
 * be between them, but a re-read must be harmless anyway): the unique key absorbs it. */
static void test_reread_absorbed(void **state)
{
	struct tail_fixture *fx = *state;
	struct spool_file f;
	char err[512] = "";
	struct tail *t;
	int commits;

	build_rules(fx);
	write_str(fx->log, "cus_a 1\ncus_b 2\n", 0);
	t = open_tail(fx, fx->log);
	read_tail(t);
	assert_int_equal(pending(fx->sp), 2);
	spool_file_copy(&f, tail_file(t));
	tail_free(t);

	f.offset = 0;
	f.check_len = 0;
	assert_int_equal(spool_file_update(fx->sp, &f, err, sizeof(err)), 0);
	commits = atomic_load(&fx->commits);
	t = open_tail(fx, fx->log);
	assert_int_equal(tail_file(t)->offset, 0);
	assert_int_equal(read_tail(t), 16);
	assert_int_equal(pending(fx->sp), 2);
	assert_int_equal(tail_file(t)->offset, 16);
	/* nothing inserted, so the sender is not woken */
	assert_int_equal(atomic_load(&fx->commits), commits);
	tail_free(t);
}

static void test_crlf(void **state)
{
	struct tail_fixture *fx = *state;
	struct evlist l;
	struct tail *t;

	build_rules(fx);
	write_str(fx->log, "cus_a 5\r\ncus_b 60\r\n", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 19);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 2);
	check_event(&l.ev[0], tail_file(t), 0, "cus_a", "5");
	check_event(&l.ev[1], tail_file(t), 9, "cus_b", "60");
	assert_int_equal(tail_file(t)->counters.matched, 2);
	tail_free(t);
}

static void test_long_lines(void **state)
{
	struct tail_fixture *fx = *state;
	char big[101];
	struct evlist l;
	struct tail *t;

	build_rules(fx);
	/* Below the option's least (256 bytes) to keep the test's lines short: tail takes any. */
	fx->base->cfg->agent.max_line_length = 16;
	memset(big, 'x', 100);
	big[100] = '\n';
	write_str(fx->log, "cus_a 1\n", 0);
	fixture_write(fx->log, big, sizeof(big), 1);
	/* 16 bytes, and with its CR 17: still not too long, the CR is dropped */
	write_str(fx->log, "cus_abcdefg 1234\r\n", 1);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 8 + 101 + 18);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 2);
	check_event(&l.ev[0], tail_file(t), 0, "cus_a", "1");
	check_event(&l.ev[1], tail_file(t), 109, "cus_abcdefg", "1234");
	assert_int_equal(tail_file(t)->counters.long_lines, 1);
	assert_int_equal(tail_file(t)->counters.lines, 3);

	/* A long line arriving in pieces, across reads: skipped, never buffered, and the checkpoint
	 * waits at its start until its newline. */
	fixture_write(fx->log, big, 60, 1);
	assert_int_equal(read_tail(t), 0);
	assert_int_equal(tail_file(t)->offset, 127);
	fixture_write(fx->log, big, 60, 1);
	assert_int_equal(read_tail(t), 0);
	/* its newline, then a line of 17 bytes: one too many */
	write_str(fx->log, "\n17 chars is 1 too\ncus_b 2\n", 1);
	assert_int_equal(read_tail(t), 121 + 18 + 8);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 3);
	check_event(&l.ev[2], tail_file(t), 127 + 121 + 18, "cus_b", "2");
	assert_int_equal(tail_file(t)->counters.long_lines, 3);
	assert_int_equal(tail_file(t)->counters.lines, 6);
	assert_int_equal(tail_file(t)->counters.unmatched, 0);
	tail_free(t);
}

static void test_nul_bytes(void **state)
{
	struct tail_fixture *fx = *state;
	/* offsets: "\0\0\0cus_a 5\n" 0-10, "\0\0\n" 11-13, "cus_b\0 6\n" 14-22: torn, its end
	 * missing, and " 6" a line of its own that matches nothing */
	static const char data[] = "\0\0\0cus_a 5\n\0\0\ncus_b\0 6\n";
	char zeros[1000];
	struct evlist l;
	struct tail *t;
	int64_t end;

	build_rules(fx);
	/* Below the option's least (256 bytes) to keep the test's lines short: tail takes any. */
	fx->base->cfg->agent.max_line_length = 16;
	fixture_write(fx->log, data, sizeof(data) - 1, 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 23);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 1);
	check_event(&l.ev[0], tail_file(t), 3, "cus_a", "5");
	assert_int_equal(tail_file(t)->counters.nul_bytes, 6);
	assert_int_equal(tail_file(t)->counters.lines, 2);
	assert_int_equal(tail_file(t)->counters.torn_lines, 1);
	assert_int_equal(tail_file(t)->counters.unmatched, 1);

	/* A run of NULs (a sparse file's hole) longer than max_line_length, at the end of the
	 * file: not consumed while nothing follows it (a preallocated file is overwritten in
	 * place); then the line after it is read, not skipped as too long. */
	memset(zeros, 0, sizeof(zeros));
	fixture_write(fx->log, zeros, sizeof(zeros), 1);
	assert_int_equal(read_tail(t), 0);
	assert_int_equal(tail_file(t)->offset, 23);
	assert_int_equal(tail_file(t)->counters.nul_bytes, 6);
	fixture_write(fx->log, zeros, 500, 1);
	write_str(fx->log, "cus_c 3\n", 1);
	end = 1023 + 500 + 8;
	assert_int_equal(read_tail(t), 1508);
	assert_int_equal(tail_file(t)->offset, end);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 2);
	check_event(&l.ev[1], tail_file(t), 1523, "cus_c", "3");
	assert_int_equal(tail_file(t)->counters.nul_bytes, 1506);
	assert_int_equal(tail_file(t)->counters.long_lines, 0);
	tail_free(t);
}

static void test_truncation(void **state)
{
	struct tail_fixture *fx = *state;
	struct spool_file f1, f2;
	struct evlist l;
	struct tail *t;

	build_rules(fx);
	write_str(fx->log, "cus_a 1\ncus_b 2\n", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 16);
	spool_file_copy(&f1, tail_file(t));

	/* copytruncate, and the file grows past the old offset before the tail looks again: only
	 * the check bytes before the checkpoint can tell. */
	assert_int_equal(truncate(fx->log, 0), 0);
	write_str(fx->log, "cus_c 3\ncus_d 4\ncus_e 5\n", 1);
	assert_int_equal(read_tail(t), 24);
	spool_file_copy(&f2, tail_file(t));
	assert_string_not_equal(f2.uid, f1.uid);
	assert_true(f2.id != f1.id);
	assert_int_equal(f2.counters.resets, 1);
	assert_int_equal(f2.counters.lines, 3);
	assert_int_equal(f2.offset, 24);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 5);
	check_event(&l.ev[2], &f2, 0, "cus_c", "3");
	check_event(&l.ev[3], &f2, 8, "cus_d", "4");
	check_event(&l.ev[4], &f2, 16, "cus_e", "5");

	/* Plain truncation while open: shorter than the checkpoint. */
	assert_int_equal(truncate(fx->log, 0), 0);
	write_str(fx->log, "cus_f 6\n", 1);
	assert_int_equal(read_tail(t), 8);
	assert_int_equal(tail_file(t)->counters.resets, 2);
	assert_string_not_equal(tail_file(t)->uid, f2.uid);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 6);
	check_event(&l.ev[5], tail_file(t), 0, "cus_f", "6");
	spool_file_copy(&f2, tail_file(t));
	tail_free(t);

	/* Rewritten while nobody watched (same inode, new head): found out at open. */
	write_str(fx->log, "cus_g 7\ncus_h 8\n", 0);
	t = open_tail(fx, fx->log);
	assert_string_not_equal(tail_file(t)->uid, f2.uid);
	assert_int_equal(tail_file(t)->counters.resets, 3);
	assert_int_equal(tail_file(t)->offset, 0);
	assert_int_equal(read_tail(t), 16);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 8);
	check_event(&l.ev[6], tail_file(t), 0, "cus_g", "7");
	tail_free(t);
}

/* truncate -s: a file cut in place keeps the bytes before the cut, which were read. Shorter than
 * its fingerprint, the cut is recognised at a line end of the head (a head mark), or inside the
 * line after one; what comes after it is new, under a new uid, and nothing before it is read
 * again. Cut and written again before the tail looked, the file goes on after the longest head
 * mark that still holds, counted as a reset (the content cannot tell how much was kept). */
static void test_truncation_kept(void **state)
{
	struct tail_fixture *fx = *state;
	struct spool_file f1, f2, f3;
	struct evlist l;
	struct tail *t;

	build_rules(fx);
	write_str(fx->log, "cus_a 1\ncus_b 2\ncus_c 3\n", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 24);
	write_str(fx->log, "cus_d 4\ncus_e 5\n", 1);
	assert_int_equal(read_tail(t), 16);
	spool_file_copy(&f1, tail_file(t));
	assert_int_equal(f1.fp_len, 40);

	assert_int_equal(truncate(fx->log, 16), 0); /* keeps cus_a and cus_b */
	assert_int_equal(read_tail(t), 0);
	write_str(fx->log, "cus_f 6\n", 1);
	assert_int_equal(read_tail(t), 8);
	spool_file_copy(&f2, tail_file(t));
	assert_string_not_equal(f2.uid, f1.uid);
	assert_int_equal(f2.counters.resets, 0);
	assert_int_equal(f2.offset, 24);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 6);
	check_event(&l.ev[5], &f2, 16, "cus_f", "6");

	/* Inside the line after the head mark at 16: "cus_" of cus_f stays. */
	assert_int_equal(truncate(fx->log, 20), 0);
	assert_int_equal(read_tail(t), 0);
	write_str(fx->log, "cus_g 7\n", 1);
	assert_int_equal(read_tail(t), 8);
	spool_file_copy(&f3, tail_file(t));
	assert_string_not_equal(f3.uid, f2.uid);
	assert_int_equal(f3.counters.resets, 0);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 7);
	check_event(&l.ev[6], &f3, 20, "cus_g", "7");

	/* Cut to its first line and written past the checkpoint before the tail looked. */
	assert_int_equal(truncate(fx->log, 8), 0);
	write_str(fx->log, "cus_h 8\ncus_i 9\ncus_j 10\n", 1);
	read_tail(t);
	assert_string_not_equal(tail_file(t)->uid, f3.uid);
	assert_int_equal(tail_file(t)->counters.resets, 1);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 10);
	check_event(&l.ev[7], tail_file(t), 8, "cus_h", "8");
	check_event(&l.ev[9], tail_file(t), 24, "cus_j", "10");
	tail_free(t);
}

/* The first `n` bytes of the file at `path` into a new file `dst` (a copy, whole or not yet). */
static void copy_head(const char *path, const char *dst, size_t n)
{
	char buf[4096];
	FILE *f = fopen(path, "rb");
	size_t got;

	assert_non_null(f);
	assert_true(n <= sizeof(buf));
	got = fread(buf, 1, n, f);
	fclose(f);
	assert_int_equal(got, n);
	fixture_write(dst, buf, n, 0);
}

/* Whether the file at `path` is a copy of t's file (tail_copy_of). */
static int copy_of(struct tail *t, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY), rc;

	assert_true(fd >= 0 && fstat(fd, &st) == 0);
	rc = tail_copy_of(t, fd, &st, tail_copy_candidate(fd, &st));
	close(fd);
	return rc;
}

/* tail_copy_of: a complete copy (by the record's head and check bytes), a copy being written
 * (its head, and its last bytes the original's), and, once the original was truncated before its
 * tail saw it, a copy shorter than the checkpoint by its head alone. A file that holds less than
 * the fingerprinted head (a header line) is no copy, nor one that differs after it. */
static void test_copy_of(void **state)
{
	struct tail_fixture *fx = *state;
	char copy[200], line[64];
	struct tail *t;

	build_rules(fx);
	snprintf(copy, sizeof(copy), "%s/app.log-1", fx->dir);
	for (int i = 0; i < 200; i++) {
		snprintf(line, sizeof(line), "cus_%03d %d\n", i, i); /* 12 to 14 bytes */
		write_str(fx->log, line, 1);
	}
	t = open_tail(fx, fx->log);
	assert_true(read_tail(t) > 2000);
	assert_int_equal(tail_file(t)->fp_len, SPOOL_FP_MAX);

	copy_head(fx->log, copy, (size_t)tail_file(t)->offset); /* whole */
	assert_int_equal(copy_of(t, copy), 1);
	copy_head(fx->log, copy, 1500); /* being written */
	assert_int_equal(copy_of(t, copy), 1);
	copy_head(fx->log, copy, 12); /* its first line only */
	assert_int_equal(copy_of(t, copy), 0);
	copy_head(fx->log, copy, 1500);
	write_str(copy, "other\n", 1); /* differs after the head */
	assert_int_equal(copy_of(t, copy), 0);

	/* The original truncated: the head is all there is to tell. */
	copy_head(fx->log, copy, 1500);
	assert_int_equal(truncate(fx->log, 0), 0);
	assert_int_equal(copy_of(t, copy), 1);
	tail_free(t);
}

/* A copy opened while still empty (cp creates it first), whose original read its rest from it
 * before the copy's tail read its first bytes: the copy is the original's record by then, and
 * its tail takes that record instead of making a new one that would bill the copy again. */
static void test_copy_opened_empty(void **state)
{
	struct tail_fixture *fx = *state;
	const char *body = "cus_a 1\ncus_b 2\ncus_c 3\n";
	struct tail *orig, *copy;
	int64_t rec;
	struct evlist l;
	char cpath[200];

	build_rules(fx);
	snprintf(cpath, sizeof(cpath), "%s/app.log-1", fx->dir);
	write_str(fx->log, body, 0);
	orig = open_tail(fx, fx->log);
	assert_int_equal(read_tail(orig), 24);
	rec = tail_file(orig)->id;

	write_str(cpath, "", 0);
	copy = open_tail(fx, cpath);
	assert_int_equal(tail_file(copy)->id, 0); /* empty: no record yet */
	write_str(cpath, body, 1);
	assert_int_equal(truncate(fx->log, 0), 0);
	assert_int_equal(read_tail(orig), 0); /* the rest (none) from the copy, then anew */
	assert_true(tail_file(orig)->id != rec);

	assert_int_equal(read_tail(copy), 0);
	assert_int_equal(tail_file(copy)->id, rec);
	assert_int_equal(tail_file(copy)->offset, 24);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 3);
	/* The original's new record got the id of the copy's deleted empty one (SQLite reuses
	 * the largest rowid), and the copy's tail left it: the original's next lines are stored. */
	write_str(fx->log, "cus_d 4\n", 1);
	assert_int_equal(read_tail(orig), 8);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 4);
	tail_free(copy);
	tail_free(orig);
}

/* tail_read_upto reads a file opened empty no further than the size its caller judged it by (the
 * watcher's copy check): nothing while that size was 0, and the bytes after it at the next read. */
static void test_read_upto(void **state)
{
	struct tail_fixture *fx = *state;
	struct tail *t;
	struct evlist l;
	char err[1024] = "";

	build_rules(fx);
	write_str(fx->log, "", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(tail_file(t)->id, 0);
	write_str(fx->log, "cus_a 1\ncus_b 2\n", 1);
	assert_int_equal(tail_read_upto(t, 0, err, sizeof(err)), 0); /* judged empty */
	assert_int_equal(tail_file(t)->id, 0);                       /* no record taken yet */
	assert_int_equal(tail_read_upto(t, 8, err, sizeof(err)), 8);
	assert_true(tail_file(t)->id != 0);
	assert_int_equal(tail_file(t)->offset, 8);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(tail_read_upto(t, -1, err, sizeof(err)), 8);
	assert_int_equal(tail_file(t)->offset, 16);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 2);
	tail_free(t);
}

/* A file whose whole fingerprinted head survives a copytruncate (a header, say): only the check
 * bytes before the checkpoint show that the lines after it are not the ones read. */
static void test_check_hash_alone(void **state)
{
	struct tail_fixture *fx = *state;
	char head[1201];
	struct spool_file f1;
	struct evlist l;
	struct tail *t;

	build_rules(fx);
	memset(head, '#', 1200);
	head[1199] = '\n';
	head[1200] = '\0';
	write_str(fx->log, head, 0);
	write_str(fx->log, "cus_a 1\ncus_b 2\n", 1);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 1216);
	spool_file_copy(&f1, tail_file(t));
	assert_int_equal(f1.fp_len, SPOOL_FP_MAX);
	assert_int_equal(f1.counters.unmatched, 1);

	assert_int_equal(truncate(fx->log, 0), 0);
	write_str(fx->log, head, 1);
	write_str(fx->log, "cus_c 3\ncus_d 4\ncus_e 5\n", 1);
	assert_int_equal(read_tail(t), 1224);
	assert_string_not_equal(tail_file(t)->uid, f1.uid);
	assert_int_equal(tail_file(t)->counters.resets, 1);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 5);
	check_event(&l.ev[2], tail_file(t), 1200, "cus_c", "3");
	tail_free(t);
}

/* Several MiB in one read: lines, NULs and over-long lines straddle the read buffer's
 * boundaries, and batches commit along the way. */
struct expect {
	int64_t *offset;
	int64_t *value;
	size_t n, i;
	int bad;
};

static int expect_cb(const struct event *ev, void *ud)
{
	struct expect *x = ud;
	char v[32];

	if (x->i >= x->n)
		return -1;
	snprintf(v, sizeof(v), "%" PRId64, x->value[x->i]);
	if (ev->line_offset != x->offset[x->i] || strcmp(ev->value, v) != 0) {
		print_error("event %zu: offset %" PRId64 " value %s, expected %" PRId64 " %s\n",
		            x->i, ev->line_offset, ev->value, x->offset[x->i], v);
		x->bad = 1;
		return -1;
	}
	x->i++;
	return 0;
}

static void test_big_file(void **state)
{
	struct tail_fixture *fx = *state;
	const size_t lines = 160000;
	struct expect x = {0};
	char err[512] = "", line[400];
	int64_t off = 0, longs = 0, nuls = 0, torn = 0;
	struct tail *t;
	FILE *fp;

	build_rules(fx);
	/* Below the option's least (256 bytes) to keep the test's lines short: tail takes any. */
	fx->base->cfg->agent.max_line_length = 200;
	x.offset = calloc(lines, sizeof(*x.offset));
	x.value = calloc(lines, sizeof(*x.value));
	assert_non_null(x.offset);
	assert_non_null(x.value);
	fp = fopen(fx->log, "w");
	assert_non_null(fp);
	for (size_t i = 0; i < lines; i++) {
		size_t len;

		if (i % 997 == 0) { /* too long: 300 bytes and its newline */
			memset(line, 'y', 300);
			line[300] = '\n';
			len = 301;
			longs++;
		} else if (i % 101 == 0) { /* NULs before the line, and a CR */
			len = (size_t)snprintf(line + 2, sizeof(line) - 2, "cus_%zu %zu\r\n", i, i);
			line[0] = line[1] = '\0';
			len += 2;
			nuls += 2;
			x.offset[x.n] = off + 2;
			x.value[x.n++] = (int64_t)i;
		} else if (i % 103 == 0) { /* torn by NULs, then a line after them */
			size_t a = (size_t)snprintf(line, sizeof(line), "cus_%zu 9", i);

			memset(line + a, '\0', 3);
			len = a + 3 +
			      (size_t)snprintf(line + a + 3, sizeof(line) - a - 3, "cus_%zu %zu\n",
			                       i, i);
			nuls += 3;
			torn++;
			x.offset[x.n] = off + (int64_t)a + 3;
			x.value[x.n++] = (int64_t)i;
		} else {
			len = (size_t)snprintf(line, sizeof(line), "cus_%zu %zu\n", i, i);
			x.offset[x.n] = off;
			x.value[x.n++] = (int64_t)i;
		}
		assert_int_equal(fwrite(line, 1, len, fp), len);
		off += (int64_t)len;
	}
	assert_int_equal(fclose(fp), 0);
	assert_true(off > 2 * 1024 * 1024); /* crosses the 1 MiB read buffer */

	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), off);
	assert_int_equal(tail_file(t)->counters.lines, (int64_t)lines);
	assert_int_equal(tail_file(t)->counters.long_lines, longs);
	assert_int_equal(tail_file(t)->counters.nul_bytes, nuls);
	assert_int_equal(tail_file(t)->counters.torn_lines, torn);
	assert_int_equal(tail_file(t)->counters.matched, (int64_t)x.n);
	assert_int_equal(pending(fx->sp), (int64_t)x.n);
	assert_int_equal(
	    spool_events_foreach(fx->sp, EVENT_PENDING, expect_cb, &x, err, sizeof(err)), 0);
	assert_false(x.bad);
	assert_int_equal(x.i, x.n);
	/* One commit per batch_lines lines (its default), torn lines counted among them. */
	assert_int_equal(
	    atomic_load(&fx->commits),
	    (int)((lines + (size_t)torn + (size_t)fx->base->cfg->agent.batch_lines - 1) /
	          (size_t)fx->base->cfg->agent.batch_lines));
	tail_free(t);
	free(x.offset);
	free(x.value);
}

static void test_fingerprint_grows(void **state)
{
	struct tail_fixture *fx = *state;
	char line[64];
	struct tail *t;
	int64_t fp1;

	build_rules(fx);
	write_str(fx->log, "cus_a 1\n", 0);
	t = open_tail(fx, fx->log);
	read_tail(t);
	fp1 = tail_file(t)->fp_len;
	assert_int_equal(fp1, 8);
	for (int i = 0; i < 200; i++) {
		snprintf(line, sizeof(line), "cus_%03d %d\n", i, i); /* 10 or more bytes */
		write_str(fx->log, line, 1);
	}
	read_tail(t);
	assert_int_equal(tail_file(t)->fp_len, SPOOL_FP_MAX);
	tail_free(t);
	/* still recognised with the full fingerprint */
	t = open_tail(fx, fx->log);
	assert_int_equal(tail_file(t)->counters.resets, 0);
	assert_int_equal(tail_file(t)->counters.events, 201);
	assert_int_equal(read_tail(t), 0);
	tail_free(t);
}

static void test_unmatched_and_invalid(void **state)
{
	struct tail_fixture *fx = *state;
	/* 19 significant digits: more than Stripe takes, so the rule matches but is unusable */
	const char *data = "hello\nworld\ncus_a 1234567890123456789\ncus_b 2\n";
	struct tail *t;

	build_rules(fx);
	write_str(fx->log, data, 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), (int64_t)strlen(data));
	assert_int_equal(tail_file(t)->counters.lines, 4);
	assert_int_equal(tail_file(t)->counters.unmatched, 2);
	assert_int_equal(tail_file(t)->counters.invalid, 1);
	assert_int_equal(tail_file(t)->counters.matched, 1);
	assert_int_equal(tail_file(t)->offset, (int64_t)strlen(data));
	assert_int_equal(pending(fx->sp), 1);
	tail_free(t);
	/* the checkpoint covers the unmatched lines: nothing is read again */
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 0);
	assert_int_equal(tail_file(t)->counters.lines, 4);
	tail_free(t);
}

static void test_unmapped_dead(void **state)
{
	struct tail_fixture *fx = *state;
	struct evlist l;
	struct tail *t;

	write_str(fx->map, "alice,cus_ALICE\n", 0);
	build_rules_with(fx, "", "", "customer_map = customers.csv\n");
	write_str(fx->log, "alice 3\nbob 4\n", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 14);
	assert_int_equal(tail_file(t)->counters.matched, 2);
	assert_int_equal(tail_file(t)->counters.events, 2);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 1);
	check_event(&l.ev[0], tail_file(t), 0, "cus_ALICE", "3");
	assert_string_equal(l.ev[0].customer_key, "alice");
	events(fx->sp, EVENT_DEAD, &l);
	assert_int_equal(l.n, 1);
	check_event(&l.ev[0], tail_file(t), 8, "", "4");
	assert_string_equal(l.ev[0].customer_key, "bob");
	assert_true(strlen(l.ev[0].last_error) > 0);
	tail_free(t);
}

static void test_batches(void **state)
{
	struct tail_fixture *fx = *state;
	struct tail *t;

	build_rules_with(fx, "batch_lines = 2\n", "", "");
	write_str(fx->log, "cus_a 1\ncus_b 2\ncus_c 3\ncus_d 4\ncus_e 5\n", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 40);
	assert_int_equal(atomic_load(&fx->commits), 3);
	assert_int_equal(pending(fx->sp), 5);
	tail_free(t);
}

static void test_read_from_tail(void **state)
{
	struct tail_fixture *fx = *state;
	char err[512] = "", path[200];
	struct evlist l;
	struct tail *t;
	int ferr = -1;

	build_rules_with(fx, "", "read_from = tail\n", "");
	write_str(fx->log, "cus_a 1\ncus_b 2\ncus_c", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(tail_file(t)->offset, 16);
	assert_int_equal(read_tail(t), 0);
	write_str(fx->log, " 3\n", 1);
	assert_int_equal(read_tail(t), 8);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 1);
	check_event(&l.ev[0], tail_file(t), 16, "cus_c", "3");
	tail_free(t);

	/* A file that appeared while running is read from its head whatever read_from says. */
	snprintf(path, sizeof(path), "%s/new.log", fx->dir);
	write_str(path, "cus_n 1\n", 0);
	t = tail_open_flags(&fx->ctx, path, 0, TAIL_OPEN_CREATED, NULL, -1, &ferr, err,
	                    sizeof(err));
	assert_non_null(t);
	assert_int_equal(tail_file(t)->offset, 0);
	assert_int_equal(read_tail(t), 8);
	tail_free(t);
}

static void test_open_errors(void **state)
{
	struct tail_fixture *fx = *state;
	char err[512] = "", path[200];
	struct spool *ro;
	struct tail *t;
	int ferr = -1;

	build_rules(fx);
	snprintf(path, sizeof(path), "%s/missing.log", fx->dir);
	assert_null(tail_open_flags(&fx->ctx, path, 0, 0, NULL, -1, &ferr, err, sizeof(err)));
	assert_int_equal(ferr, ENOENT);
	assert_non_null(strstr(err, "missing.log"));

	ferr = -1;
	assert_null(tail_open_flags(&fx->ctx, fx->dir, 0, 0, NULL, -1, &ferr, err, sizeof(err)));
	assert_int_equal(ferr, EINVAL);

	/* A spool that cannot be written: a spool error, not the file's. */
	write_str(fx->log, "cus_a 1\n", 0);
	ro = spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err));
	assert_non_null(ro);
	fx->ctx.spool = ro;
	ferr = -1;
	t = tail_open_flags(&fx->ctx, fx->log, 0, 0, NULL, -1, &ferr, err, sizeof(err));
	assert_null(t);
	assert_int_equal(ferr, 0);
	fx->ctx.spool = fx->sp;
	spool_free(ro);
}

/* ---- watch ---- */

struct runner {
	struct watch *w;
	int rc;
	char err[1024];
};

static void *run_watch(void *arg)
{
	struct runner *r = arg;

	r->rc = watch_run(r->w, r->err, sizeof(r->err));
	return NULL;
}

struct find_file {
	const char *suffix;
	int64_t id; /* if non-zero, the record with this id */
	struct spool_file f;
	int found;
};

static int find_file_cb(const struct spool_file *f, void *ud)
{
	struct find_file *ff = ud;
	size_t n = strlen(f->path), m = strlen(ff->suffix);

	if (ff->id != 0 ? f->id == ff->id : n >= m && strcmp(f->path + n - m, ff->suffix) == 0) {
		ff->f = *f;
		ff->found = 1;
	}
	return 0;
}

/* Polls (with a second spool handle, as another thread would) until `cond` holds or 60 s pass:
 * a bound for a sanitizer build on a loaded machine, not a wait (it returns as soon as `cond`
 * holds). */
static int wait_for(struct spool *sp, int (*cond)(struct spool *sp, void *ud), void *ud)
{
	struct timespec ts = {0, 20 * 1000 * 1000};

	for (int i = 0; i < 3000; i++) {
		if (cond(sp, ud))
			return 1;
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* Waits like wait_for; on timeout stops the watch thread first, so that a failure is reported
 * cleanly instead of tearing the fixture down under a running thread. */
static void wait_or_fail(struct spool *sp, int (*cond)(struct spool *sp, void *ud), void *ud,
                         struct watch *w, pthread_t th, const char *what)
{
	if (wait_for(sp, cond, ud))
		return;
	watch_stop(w);
	pthread_join(th, NULL);
	fail_msg("timed out (60 s) waiting for %s (%lld events pending)", what,
	         (long long)pending(sp));
}

static int pending_is(struct spool *sp, void *ud)
{
	return pending(sp) == *(int64_t *)ud;
}

static int file_state_is(struct spool *sp, void *ud)
{
	struct find_file *ff = ud;
	char err[512];
	enum spool_file_state want = ff->f.state;
	struct find_file probe = {.suffix = ff->suffix, .id = ff->id};

	if (spool_files_foreach(sp, find_file_cb, &probe, err, sizeof(err)) != 0)
		return 0;
	return probe.found && probe.f.state == want;
}

static void test_watch(void **state)
{
	struct tail_fixture *fx = *state;
	char err[1024] = "", a[200], b[200], gz[200], rot[200], pat[200], other[200], real[200],
	     link[200], d[200], dtmp[200];
	struct spool *sp2;
	struct watch *w;
	struct runner r = {0};
	struct evlist l;
	pthread_t th;
	int64_t want;
	struct find_file ff = {0};

	snprintf(pat, sizeof(pat), "%s/*.log*", fx->dir);
	snprintf(fx->pattern, sizeof(fx->pattern), "%s", pat);
	/* link.log below: a symlink the source follows. */
	build_rules_with(fx, "rescan_interval = 1m\n", "follow_symlinks = yes\n", "");
	snprintf(a, sizeof(a), "%s/a.log", fx->dir);
	snprintf(b, sizeof(b), "%s/b.log", fx->dir);
	snprintf(gz, sizeof(gz), "%s/old.log.gz", fx->dir);
	snprintf(rot, sizeof(rot), "%s/a.log.1", fx->dir);
	write_str(a, "cus_a 1\ncus_a 2\n", 0);
	write_str(gz, "cus_z 1\n", 0);
	/* A symlinked log whose target is in a directory nobody watches: its writes are seen
	 * through a watch on the file itself. */
	snprintf(other, sizeof(other), "%s/other", fx->dir);
	snprintf(real, sizeof(real), "%s/other/real.txt", fx->dir);
	snprintf(link, sizeof(link), "%s/link.log", fx->dir);
	assert_int_equal(mkdir(other, 0755), 0);
	write_str(real, "cus_r 1\n", 0);
	assert_int_equal(symlink(real, link), 0);

	w = watch_new(&fx->ctx, err, sizeof(err));
	if (w == NULL)
		fail_msg("watch_new: %s", err);
	assert_int_equal(watch_scan(w, err, sizeof(err)), 0);
	assert_int_equal(watch_tail_count(w), 2); /* the .gz is excluded */
	assert_int_equal(pending(fx->sp), 3);

	sp2 = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	assert_non_null(sp2);
	r.w = w;
	assert_int_equal(pthread_create(&th, NULL, run_watch, &r), 0);

	/* A new file and an append, seen through inotify (the rescan is a minute away). */
	write_str(b, "cus_b 5\n", 0);
	write_str(a, "cus_a 3\n", 1);
	write_str(real, "cus_r 2\n", 1);
	want = 6;
	wait_or_fail(sp2, pending_is, &want, w, th,
	             "the new file, the append and the symlink target's append");

	/* Rotation: a line written just before the rename is read, and the file is followed to
	 * its new name (still matched). Then a deleted file is read to its end and released. */
	write_str(a, "cus_a 4\n", 1);
	assert_int_equal(rename(a, rot), 0);
	write_str(b, "cus_b 6\n", 1);
	want = 8;
	wait_or_fail(sp2, pending_is, &want, w, th,
	             "the line written just before the rotation and the append to b.log");
	ff.suffix = "/a.log.1";
	ff.f.state = SPOOL_FILE_READING;
	wait_or_fail(sp2, file_state_is, &ff, w, th, "a.log's record under its new name");

	write_str(b, "cus_b 7\n", 1);
	assert_int_equal(unlink(b), 0);
	ff.suffix = "/b.log";
	ff.f.state = SPOOL_FILE_GONE;
	wait_or_fail(sp2, file_state_is, &ff, w, th, "b.log's release");
	want = 9;
	wait_or_fail(sp2, pending_is, &want, w, th, "b.log's last line, read before its release");

	/* Replaced by a rename over it: the old file is read to its end and released at once (no
	 * IN_DELETE comes for it), the new one is read from its start. */
	snprintf(d, sizeof(d), "%s/d.log", fx->dir);
	snprintf(dtmp, sizeof(dtmp), "%s/d.tmp", fx->dir);
	write_str(d, "cus_d 1\n", 0);
	want = 10;
	wait_or_fail(sp2, pending_is, &want, w, th, "the new d.log");
	memset(&ff, 0, sizeof(ff));
	ff.suffix = "/d.log";
	assert_int_equal(spool_files_foreach(sp2, find_file_cb, &ff, err, sizeof(err)), 0);
	assert_true(ff.found);
	write_str(d, "cus_d 2\n", 1);
	write_str(dtmp, "cus_d 3\n", 0);
	assert_int_equal(rename(dtmp, d), 0);
	ff.id = ff.f.id;
	ff.f.state = SPOOL_FILE_GONE;
	wait_or_fail(sp2, file_state_is, &ff, w, th, "the replaced file's release");
	want = 12;
	wait_or_fail(sp2, pending_is, &want, w, th,
	             "d.log's last line and the line of the file renamed over it");

	watch_stop(w);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(watch_tail_count(w), 3); /* a.log.1, link.log, the new d.log */

	events(sp2, EVENT_PENDING, &l);
	assert_int_equal(l.n, 12);
	for (size_t i = 0; i < l.n; i++)
		assert_true(strncmp(l.ev[i].customer, "cus_z", 5) != 0);
	watch_free(w);
	spool_free(sp2);
}

/* Rotation to a name the glob does not match: the writer keeps appending to the renamed file
 * until it reopens its log, so the file stays open, is read, and is released ("drained") only by
 * a rescan that finds it unchanged for rotate_wait. */
static void test_watch_rotate_away(void **state)
{
	struct tail_fixture *fx = *state;
	char err[1024] = "", c[200], old[200];
	struct spool *sp2;
	struct watch *w;
	struct runner r = {0};
	pthread_t th;
	int64_t want;
	struct find_file ff = {0};

	build_rules_with(fx, "rescan_interval = 300ms\nrotate_wait = 300ms\n", "", "");
	snprintf(c, sizeof(c), "%s/c.log", fx->dir);
	snprintf(old, sizeof(old), "%s/c.old", fx->dir);
	write_str(c, "cus_c 1\n", 0);

	w = watch_new(&fx->ctx, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(watch_scan(w, err, sizeof(err)), 0);
	assert_int_equal(watch_tail_count(w), 1);
	assert_int_equal(pending(fx->sp), 1);
	sp2 = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	assert_non_null(sp2);
	r.w = w;
	assert_int_equal(pthread_create(&th, NULL, run_watch, &r), 0);

	assert_int_equal(rename(c, old), 0);
	write_str(old, "cus_c 2\n", 1); /* the writer has not reopened yet */
	write_str(c, "cus_c 3\n", 0);   /* now it has */
	want = 3;
	wait_or_fail(sp2, pending_is, &want, w, th, "pending events");
	ff.suffix = "/c.old";
	ff.f.state = SPOOL_FILE_DRAINED;
	wait_or_fail(sp2, file_state_is, &ff, w, th, "the file record's state");

	watch_stop(w);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(watch_tail_count(w), 1); /* the new c.log */
	watch_free(w);
	spool_free(sp2);
}

/* Events lost to a full inotify queue (IN_Q_OVERFLOW) are made up by a rescan: a file whose
 * IN_CREATE was dropped is found anyway, long before the periodic rescan (a minute away). */
static void test_watch_overflow(void **state)
{
	struct tail_fixture *fx = *state;
	char err[1024] = "", path[200];
	struct spool *sp2;
	struct watch *w;
	struct runner r = {0};
	pthread_t th;
	int64_t want = 1;
	long limit = 0;
	FILE *fp = fopen("/proc/sys/fs/inotify/max_queued_events", "r");

	if (fp == NULL || fscanf(fp, "%ld", &limit) != 1 || limit <= 0 || limit > 1000000) {
		if (fp != NULL)
			fclose(fp);
		skip();
	}
	fclose(fp);
	build_rules(fx);
	w = watch_new(&fx->ctx, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(watch_scan(w, err, sizeof(err)), 0);
	assert_int_equal(watch_tail_count(w), 0);
	/* Nobody reads the queue yet: fill it (IN_CREATE and IN_CLOSE_WRITE per file). */
	for (long i = 0; i < limit / 2 + 100; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/junk%ld", fx->dir, i);
		fd = open(path, O_WRONLY | O_CREAT, 0644);
		assert_true(fd >= 0);
		close(fd);
	}
	write_str(fx->log, "cus_o 1\n", 0);
	sp2 = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	assert_non_null(sp2);
	r.w = w;
	assert_int_equal(pthread_create(&th, NULL, run_watch, &r), 0);
	wait_or_fail(sp2, pending_is, &want, w, th, "the file created during the overflow");
	watch_stop(w);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(watch_tail_count(w), 1);
	watch_free(w);
	spool_free(sp2);
}

/* A suspended tail (max_open_files) holds no descriptor; resumed by its path it reads what came
 * meanwhile. Resuming fails softly (1) when the path leads elsewhere, and a file rewritten in
 * place while closed is caught by the content checks. */
static void test_suspend_resume(void **state)
{
	struct tail_fixture *fx = *state;
	char err[1024] = "", rot[200];
	struct evlist l;
	struct tail *t;
	struct stat st;
	char uid[SPOOL_UID_MAX];

	build_rules(fx);
	write_str(fx->log, "cus_a 1\n", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 8);
	tail_suspend(t);
	assert_false(tail_is_open(t));
	assert_int_equal(tail_stat(t, &st), 0); /* through its path */
	write_str(fx->log, "cus_a 2\n", 1);
	assert_int_equal(tail_resume(t, err, sizeof(err)), 0);
	assert_true(tail_is_open(t));
	assert_int_equal(read_tail(t), 8);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 2);
	check_event(&l.ev[1], tail_file(t), 8, "cus_a", "2");

	/* Rewritten in place while closed, longer than before: same inode, other content. */
	tail_suspend(t);
	snprintf(uid, sizeof(uid), "%s", tail_file(t)->uid);
	write_str(fx->log, "cus_b 7\ncus_b 8\ncus_b 9\n", 0);
	assert_int_equal(tail_resume(t, err, sizeof(err)), 0);
	assert_int_equal(read_tail(t), 24);
	assert_string_not_equal(tail_file(t)->uid, uid);
	assert_int_equal(tail_file(t)->counters.resets, 1);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 5);
	check_event(&l.ev[2], tail_file(t), 0, "cus_b", "7");

	/* Renamed while closed: the path no longer leads to it. */
	tail_suspend(t);
	snprintf(rot, sizeof(rot), "%s.1", fx->log);
	assert_int_equal(rename(fx->log, rot), 0);
	assert_int_equal(tail_resume(t, err, sizeof(err)), 1);
	write_str(fx->log, "cus_c 1\n", 0);
	assert_int_equal(tail_resume(t, err, sizeof(err)), 1);
	errno = 0;
	assert_int_equal(tail_stat(t, &st), -1);
	assert_int_equal(errno, ESTALE);
	assert_int_equal(tail_rename(t, rot, err, sizeof(err)), 0);
	assert_int_equal(tail_resume(t, err, sizeof(err)), 0);
	assert_int_equal(read_tail(t), 0);
	tail_free(t);
}

/* copytruncate: lines not read yet when the file was copied and truncated are read from the copy,
 * under the original record (the same identifiers), which then names the copy and is drained;
 * the truncated file starts anew, and no reset is counted. */
static void test_copytruncate(void **state)
{
	struct tail_fixture *fx = *state;
	static const char head[] = "cus_a 1\ncus_a 2\n", rest[] = "cus_a 3\ncus_a 4\n";
	char copy[200], err[512] = "";
	struct spool_file old;
	struct evlist l;
	struct tail *t;
	struct stat cst;
	int found;

	build_rules(fx);
	write_str(fx->log, head, 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 16);
	spool_file_copy(&old, tail_file(t));
	write_str(fx->log, rest, 1); /* not read before the rotation */
	snprintf(copy, sizeof(copy), "%s.1", fx->log);
	write_str(copy, head, 0);
	write_str(copy, rest, 1);
	write_str(fx->log, "", 0); /* truncated */
	write_str(fx->log, "cus_n 5\n", 1);
	assert_int_equal(read_tail(t), 8);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 5);
	check_event(&l.ev[2], &old, 16, "cus_a", "3");
	check_event(&l.ev[3], &old, 24, "cus_a", "4");
	check_event(&l.ev[4], tail_file(t), 0, "cus_n", "5");
	assert_int_equal(tail_file(t)->counters.resets, 0);
	assert_int_equal(stat(copy, &cst), 0);
	found = spool_file_find(fx->sp, "app", (uint64_t)cst.st_dev, (uint64_t)cst.st_ino, &old,
	                        err, sizeof(err));
	assert_int_equal(found, 1);
	assert_int_equal(old.state, SPOOL_FILE_DRAINED);
	assert_int_equal(old.offset, 32);
	tail_free(t);
}

/* Compressed files are never read as text: refused at open by their magic number, and a file
 * opened empty (no record yet) whose first bytes are a compressor's fails its read. */
static void test_compressed(void **state)
{
	struct tail_fixture *fx = *state;
	static const char gz[] = "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03";
	char err[1024] = "", zpath[200];
	struct evlist l;
	struct tail *t;

	build_rules(fx);
	snprintf(zpath, sizeof(zpath), "%s/old.log.1", fx->dir);
	fixture_write(zpath, gz, sizeof(gz) - 1, 0);
	assert_null(tail_open(&fx->ctx, zpath, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "gzip-compressed"));

	write_str(zpath, "", 0);
	t = open_tail(fx, zpath);
	assert_int_equal(tail_file(t)->id, 0); /* empty: no record yet */
	assert_int_equal(read_tail(t), 0);
	fixture_write(zpath, gz, sizeof(gz) - 1, 1);
	errno = 0;
	assert_int_equal(tail_read(t, err, sizeof(err)), -1);
	assert_int_equal(errno, EMEDIUMTYPE);
	tail_free(t);

	write_str(fx->log, "", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(tail_file(t)->id, 0);
	write_str(fx->log, "cus_a 1\n", 1);
	assert_int_equal(read_tail(t), 8);
	assert_true(tail_file(t)->id != 0);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 1);
	check_event(&l.ev[0], tail_file(t), 0, "cus_a", "1");
	tail_free(t);
}

/* Writes `len` bytes of `data` to a new file DIR/NAME and returns it open for reading. */
static int content_file(struct tail_fixture *fx, const char *name, const char *data, size_t len)
{
	char path[200];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
	fixture_write(path, data, len, 0);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/* tail_identify: content within a record (a copy cut at or before its checkpoint), beyond it
 * (its check bytes there, more after), starting like it but different (head only), unrelated
 * or shorter than the head; another source's record only when asked for every source; a dry
 * run's records (extra) like the spool's; tail_heads_at and tail_heads_find at a file's start
 * inside content. */
static void test_identify(void **state)
{
	struct tail_fixture *fx = *state;
	char buf[4096], err[512] = "";
	struct spool_file rec, f;
	struct tail *t;
	size_t len = 0, cut = 0;
	int fd;

	build_rules(fx);
	for (int i = 0; len < 2000; i++) {
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "cus_a %d\n", i);
		if (len < 1500)
			cut = len; /* a line end past the 1 KiB head */
	}
	fixture_write(fx->log, buf, len, 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), (int64_t)len);
	assert_int_equal(tail_file(t)->fp_len, SPOOL_FP_MAX);
	tail_free(t);

	fd = content_file(fx, "cut.txt", buf, cut);
	assert_int_equal(
	    tail_identify(&fx->ctx, fd, 0, (int64_t)cut, "app", NULL, 0, &rec, err, sizeof(err)),
	    TAIL_MATCH_WITHIN);
	assert_int_equal(rec.offset, (int64_t)len);
	assert_int_equal(
	    tail_identify(&fx->ctx, fd, 0, (int64_t)cut, "other", NULL, 0, &rec, err, sizeof(err)),
	    TAIL_MATCH_NONE);
	close(fd);
	fd = content_file(fx, "whole.txt", buf, len);
	assert_int_equal(
	    tail_identify(&fx->ctx, fd, 0, (int64_t)len, NULL, NULL, 0, &rec, err, sizeof(err)),
	    TAIL_MATCH_WITHIN);
	close(fd);
	memcpy(buf + len, "cus_b 9\n", 8);
	fd = content_file(fx, "more.txt", buf, len + 8);
	assert_int_equal(tail_identify(&fx->ctx, fd, 0, (int64_t)len + 8, "app", NULL, 0, &rec, err,
	                               sizeof(err)),
	                 TAIL_MATCH_BEYOND);
	close(fd);
	memset(buf + 1100, 'x', len - 1100); /* the head, then other bytes up to and past it */
	fd = content_file(fx, "other.txt", buf, len + 8);
	assert_int_equal(tail_identify(&fx->ctx, fd, 0, (int64_t)len + 8, "app", NULL, 0, &rec, err,
	                               sizeof(err)),
	                 TAIL_MATCH_HEAD);
	/* Shorter than the head: nothing to tell it by. */
	assert_int_equal(
	    tail_identify(&fx->ctx, fd, 0, 500, "app", NULL, 0, &rec, err, sizeof(err)),
	    TAIL_MATCH_NONE);
	close(fd);

	/* A dry run's record of content never written to the spool. */
	fd = content_file(fx, "new.txt", "cus_n 1\ncus_n 2\n", 16);
	memset(&f, 0, sizeof(f));
	snprintf(f.source, sizeof(f.source), "app");
	assert_int_equal(tail_describe(fd, 16, 16, &f), 0);
	assert_int_equal(tail_identify(&fx->ctx, fd, 0, 16, "app", NULL, 0, &rec, err, sizeof(err)),
	                 TAIL_MATCH_NONE);
	assert_int_equal(tail_identify(&fx->ctx, fd, 0, 16, "app", &f, 1, &rec, err, sizeof(err)),
	                 TAIL_MATCH_WITHIN);
	close(fd);

	/* The record's file starts at byte 9 of this content. */
	{
		struct tail_heads *h = tail_heads_new(&fx->ctx, NULL, 0, err, sizeof(err));
		char whole[4096];
		size_t n;

		assert_non_null(h);
		/* the head of the record: the first 1 KiB of the log */
		fd = open(fx->log, O_RDONLY | O_CLOEXEC);
		n = (size_t)pread(fd, whole + 9, SPOOL_FP_MAX, 0);
		close(fd);
		assert_int_equal(n, SPOOL_FP_MAX);
		memcpy(whole, "cus_z 0\n\n", 9);
		fd = content_file(fx, "cat.txt", whole, 9 + n);
		assert_int_equal(tail_heads_at(h, fd, 9, (int64_t)(9 + n)), 1);
		assert_int_equal(tail_heads_at(h, fd, 0, (int64_t)(9 + n)), 0);
		assert_int_equal(tail_heads_at(h, fd, 10, (int64_t)(9 + n)), 0);
		/* found at the line it starts, after new lines; none after its own start */
		assert_int_equal(tail_heads_find(h, fd, 0, (int64_t)(9 + n)), 9);
		assert_int_equal(tail_heads_find(h, fd, 9, (int64_t)(9 + n)), 0);
		close(fd);
		tail_heads_free(h);
	}
}

/* tail_open_archive: a new record of content that does not grow is "drained" from the start,
 * keeps that state through its commits, and with TAIL_ARCHIVE_FINISH its last line is read
 * without its newline; without, it is left. */
static void test_archive(void **state)
{
	struct tail_fixture *fx = *state;
	static const char data[] = "cus_a 1\ncus_a 2";
	char err[512] = "";
	struct stat st;
	struct evlist l;
	struct tail *t;
	int fd;

	build_rules(fx);
	fd = content_file(fx, "a.txt", data, sizeof(data) - 1);
	assert_int_equal(fstat(fd, &st), 0);
	t = tail_open_archive(&fx->ctx, fd, "a.txt.gz", &st, 0, NULL, TAIL_ARCHIVE_FINISH, err,
	                      sizeof(err));
	assert_non_null(t);
	assert_int_equal(tail_file(t)->state, SPOOL_FILE_DRAINED);
	assert_int_equal(read_tail(t), (int64_t)sizeof(data) - 1);
	assert_int_equal(tail_file(t)->state, SPOOL_FILE_DRAINED);
	assert_int_equal(tail_file(t)->counters.lines, 2);
	events(fx->sp, EVENT_PENDING, &l);
	assert_int_equal(l.n, 2);
	check_event(&l.ev[1], tail_file(t), 8, "cus_a", "2");
	tail_free(t);

	fd = content_file(fx, "b.txt", "cus_b 1\ncus_b 2", 15);
	assert_int_equal(fstat(fd, &st), 0);
	t = tail_open_archive(&fx->ctx, fd, "b.txt", &st, 0, NULL, 0, err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(read_tail(t), 8);
	assert_int_equal(tail_file(t)->offset, 8);
	tail_free(t);
	assert_int_equal(pending(fx->sp), 3);
}

/* A record marked gone (its file was seen deleted) is never resumed, even by a file with the
 * same device, inode and content: that is another file (a reused inode), read from its start
 * under a new uid, and not counted as a reset. */
static void test_gone_not_resumed(void **state)
{
	struct tail_fixture *fx = *state;
	char err[512] = "", uid[SPOOL_UID_MAX];
	struct tail *t;

	build_rules(fx);
	write_str(fx->log, "cus_a 1\n", 0);
	t = open_tail(fx, fx->log);
	assert_int_equal(read_tail(t), 8);
	snprintf(uid, sizeof(uid), "%s", tail_file(t)->uid);
	assert_int_equal(tail_mark_gone(t, err, sizeof(err)), 0);
	tail_free(t);
	t = open_tail(fx, fx->log);
	assert_string_not_equal(tail_file(t)->uid, uid);
	assert_int_equal(tail_file(t)->offset, 0);
	assert_int_equal(tail_file(t)->counters.resets, 0);
	assert_int_equal(read_tail(t), 8);
	assert_int_equal(pending(fx->sp), 2);
	tail_free(t);
}

/* One file, one source: a source with no record of a file that another source's record shows read
 * (identity and content) goes on from that record's checkpoint under a new record of its own (taken
 * over); a source whose own record is behind another's does not resume it but takes over too. */
static void test_taken_over(void **state)
{
	struct tail_fixture *fx = *state;
	char err[512] = "", uid_other[SPOOL_UID_MAX], uid_app[SPOOL_UID_MAX];
	struct tail *t;

	build_rules_with(fx, "rescan_interval = 1m\n", "",
	                 "[source other]\npath = /nonexistent/*.log\n"
	                 "[rule r2]\nsource = other\nevent_name = api_calls\n"
	                 "pattern = ^(?<cust>\\S+) (?<n>\\d+)$\ncustomer = cust\nvalue = n\n");
	write_str(fx->log, "cus_a 1\ncus_b 2\n", 0);
	t = tail_open(&fx->ctx, fx->log, 1, err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(read_tail(t), 16);
	snprintf(uid_other, sizeof(uid_other), "%s", tail_file(t)->uid);
	tail_free(t);

	/* app has no record: not from 0, from other's checkpoint. */
	write_str(fx->log, "cus_c 3\n", 1);
	t = open_tail(fx, fx->log);
	assert_int_equal(tail_file(t)->offset, 16);
	assert_string_not_equal(tail_file(t)->uid, uid_other);
	assert_int_equal(read_tail(t), 8);
	snprintf(uid_app, sizeof(uid_app), "%s", tail_file(t)->uid);
	tail_free(t);
	assert_int_equal(pending(fx->sp), 3);

	/* other's own record (at 16) is behind app's (at 24): not resumed, taken over at 24. */
	write_str(fx->log, "cus_d 4\n", 1);
	t = tail_open(&fx->ctx, fx->log, 1, err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(tail_file(t)->offset, 24);
	assert_string_not_equal(tail_file(t)->uid, uid_other);
	assert_string_not_equal(tail_file(t)->uid, uid_app);
	assert_int_equal(read_tail(t), 8);
	tail_free(t);
	assert_int_equal(pending(fx->sp), 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_lines_partial_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reread_absorbed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crlf, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nul_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncation_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_copy_of, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_copy_opened_empty, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_upto, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_check_hash_alone, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_big_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fingerprint_grows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unmatched_and_invalid, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unmapped_dead, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batches, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_from_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watch_rotate_away, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watch_overflow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_suspend_resume, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_copytruncate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compressed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gone_not_resumed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_taken_over, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_identify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_archive, setup, teardown),
	};

	log_set_level(LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
