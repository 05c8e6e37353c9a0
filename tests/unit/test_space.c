/* Unit tests for space (and the spool functions it uses): a real spool in the fixture's
 * directory, filled by spool_commit as the tail does, with the limits of a configuration loaded
 * as the agent loads it. Sizes are checked against SQLite's own page counts, read through a
 * separate raw connection. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/event.h"
#include "ingest/space.h"
#include "util/statefile.h"
#include "store/spool.h"

#include "fixture.h"

#define BATCH 200

struct space_fixture {
	struct fixture *base; /* the directory, the spool, the configuration */
	const char *state;    /* base's, for short */
	struct spool *sp;
	struct spool_file f;
	int64_t next_offset;
	int commits;    /* batches filled so far */
	int dead_every; /* every this many batches, one of dead letters */
	struct event *batch;
};

static int setup(void **state)
{
	struct space_fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	fx->base = fixture_new("test_space");
	fx->state = fx->base->state;
	fx->sp = fixture_spool(fx->base);
	fixture_file_add(fx->base, "app", 42, &fx->f);
	fx->batch = calloc(BATCH, sizeof(*fx->batch));
	assert_non_null(fx->batch);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct space_fixture *fx = *state;

	fixture_free(fx->base);
	free(fx->batch);
	free(fx);
	return 0;
}

/* The configuration: batches of BATCH lines, and the lines `agent` of [agent]. */
static struct config *config(struct space_fixture *fx, const char *agent)
{
	return fixture_config(fx->base, "[agent]\nbatch_lines = %d\n%s", BATCH, agent);
}

/* The next `n` (at most BATCH) events of the file; in every 10th batch (or dead_every),
 * dead letters (as unmapped customers are). A batch of events is stored as one row and pruned as
 * one (docs/spool.md), so a batch with a dead letter stays: these tests keep them apart. */
static void fill_events(struct space_fixture *fx, size_t n)
{
	int every = fx->dead_every > 0 ? fx->dead_every : 10;
	int dead = fx->commits++ % every == every - 1;

	for (size_t i = 0; i < n; i++) {
		struct event *ev = &fx->batch[i];
		int64_t off = fx->next_offset;

		fixture_event(ev, fx->f.id, off);
		snprintf(ev->customer_key, sizeof(ev->customer_key), "cus_%06lld",
		         (long long)(off % 97));
		snprintf(ev->customer, sizeof(ev->customer), "%s", ev->customer_key);
		snprintf(ev->value, sizeof(ev->value), "%lld", (long long)(off % 1000));
		ev->state = dead ? EVENT_DEAD : EVENT_PENDING;
		if (ev->state == EVENT_DEAD)
			snprintf(ev->last_error, sizeof(ev->last_error), "no customer");
		fx->next_offset += 100;
	}
	fx->f.offset = fx->next_offset;
}

static void fill_batch(struct space_fixture *fx)
{
	fill_events(fx, BATCH);
}

/* fill_events of `n` and their commit. */
static void commit_events(struct space_fixture *fx, size_t n)
{
	char err[512] = "";

	fill_events(fx, n);
	assert_int_equal(fixture_commit(fx->sp, &fx->f, fx->batch, n, err, sizeof(err)), 0);
}

/* Bytes of pages in use, by a separate raw connection. */
static int64_t raw_used(const struct space_fixture *fx)
{
	char path[192];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	snprintf(path, sizeof(path), "%s/spool.db", fx->state);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT (p.page_count - f.freelist_count) * s.page_size"
	                                    " FROM pragma_page_count p, pragma_freelist_count f,"
	                                    " pragma_page_size s",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* Marks every pending event delivered, `when` seconds since the epoch. Returns how many. */
static int64_t deliver_all(struct space_fixture *fx, int64_t when)
{
	struct event *evs = calloc(BATCH, sizeof(*evs));
	struct spool_mark m[BATCH];
	int64_t total = 0, after = 0;
	size_t n;
	char err[512] = "";

	assert_non_null(evs);
	for (;;) {
		assert_int_equal(spool_pending(fx->sp, after, evs, BATCH, &n, err, sizeof(err)), 0);
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			m[i] = (struct spool_mark){
			    .id = evs[i].id, .state = EVENT_DELIVERED, .attempts = 1, .when = when};
			after = evs[i].queue_seq;
		}
		assert_int_equal(spool_mark(fx->sp, m, n, err, sizeof(err)), 0);
		total += (int64_t)n;
	}
	free(evs);
	return total;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Commits batches, asking space_admit first as the tail does, until it refuses. Returns the
 * batches committed. */
static int fill_until_paused(struct space_fixture *fx, struct space *s, int max_batches)
{
	char err[512] = "";
	int i;

	for (i = 0; i < max_batches; i++) {
		if (space_admit(s, err, sizeof(err)) != 0)
			break;
		fill_batch(fx);
		assert_int_equal(fixture_commit(fx->sp, &fx->f, fx->batch, BATCH, err, sizeof(err)),
		                 0);
	}
	return i;
}

/* max_spool_bytes: reading pauses at the limit, stays paused while nothing is delivered, and
 * resumes once delivered events can be pruned; pending and dead events are never pruned. */
static void test_limit_pause_and_resume(void **state)
{
	struct space_fixture *fx = *state;
	struct space *s;
	struct space_status ss;
	struct spool_counts c0, c1;
	char err[512] = "";
	int64_t wait = 0, limit = 256 * 1024, used, dead_before, delivered;
	int batches;

	s = space_new(config(fx, "min_free_bytes = 0\nmax_spool_bytes = 256k\n"), fx->sp, err,
	              sizeof(err));
	assert_non_null(s);
	space_publish(s);
	assert_int_equal(space_paused(s), 0);
	assert_int_equal(space_status_read(fx->state, &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.found, 1);
	assert_int_equal(ss.state, SPACE_READING);
	assert_int_equal(ss.pid, (long)getpid());

	batches = fill_until_paused(fx, s, 1000);
	assert_true(batches > 1 && batches < 1000);
	assert_int_equal(space_paused(s), 1);
	used = raw_used(fx);
	assert_true(used >= limit);
	assert_true(used <= limit + 128 * 1024); /* at most one batch past it */
	/* Refused again without measuring, with the reason. */
	assert_int_equal(space_admit(s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "reading paused"));
	assert_non_null(strstr(err, "max_spool_bytes"));
	assert_int_equal(space_status_read(fx->state, &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.state, SPACE_LIMIT);
	assert_non_null(strstr(ss.detail, "max_spool_bytes 256 KiB"));
	assert_true(ss.since > 0 && ss.since <= (int64_t)time(NULL));

	/* Not due yet; then due, but nothing delivered: still paused, nothing pruned. */
	assert_int_equal(space_poll(s, &wait), 0);
	assert_true(wait > 0 && wait <= 1000);
	assert_int_equal(spool_counts(fx->sp, &c0, err, sizeof(err)), 0);
	sleep_ms(1100);
	assert_int_equal(space_poll(s, &wait), 0);
	assert_int_equal(space_paused(s), 1);
	assert_int_equal(spool_counts(fx->sp, &c1, err, sizeof(err)), 0);
	assert_memory_equal(&c0, &c1, sizeof(c0));

	/* The sender delivers everything: the next poll prunes delivered events and resumes. */
	dead_before = c0.dead;
	delivered = deliver_all(fx, (int64_t)time(NULL));
	assert_int_equal(delivered, c0.pending);
	sleep_ms(1100);
	assert_int_equal(space_poll(s, &wait), 1);
	/* Reading: no more polls every second; only delivered_retention (10 minutes). */
	assert_true(wait > 1000 && wait <= 10 * 60 * 1000);
	assert_int_equal(space_paused(s), 0);
	assert_int_equal(spool_counts(fx->sp, &c1, err, sizeof(err)), 0);
	assert_int_equal(c1.pending, 0);
	assert_int_equal(c1.dead, dead_before); /* never pruned */
	assert_true(c1.delivered < delivered);  /* some pruned before their retention */
	assert_true(raw_used(fx) < limit - limit / 10 + 4096);
	assert_int_equal(space_status_read(fx->state, &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.state, SPACE_READING);
	assert_string_equal(ss.detail, "");

	/* Reading goes on; then stopping writes "stopped". */
	assert_int_equal(space_admit(s, err, sizeof(err)), 0);
	space_free(s);
	assert_int_equal(space_status_read(fx->state, &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.state, SPACE_STOPPED);
	assert_int_equal(ss.running, 0);
}

/* Before pausing, admit prunes delivered events itself if that makes the room: reading then
 * does not pause at all. */
static void test_limit_prunes_delivered_first(void **state)
{
	struct space_fixture *fx = *state;
	struct space *s;
	struct spool_counts c;
	char err[512] = "";
	int64_t limit = 256 * 1024;
	int batches;

	s = space_new(config(fx, "min_free_bytes = 0\nmax_spool_bytes = 256k\n"), fx->sp, err,
	              sizeof(err));
	assert_non_null(s);
	/* About three times the limit's worth of batches (a batch of BATCH events takes some
	 * 3 KiB), each delivered right after its commit; their dead letters (one batch in 50,
	 * kept, each with its row of outcomes) stay well below it. */
	fx->dead_every = 50;
	for (batches = 0; batches < 250; batches++) {
		assert_int_equal(space_admit(s, err, sizeof(err)), 0);
		fill_batch(fx);
		assert_int_equal(fixture_commit(fx->sp, &fx->f, fx->batch, BATCH, err, sizeof(err)),
		                 0);
		deliver_all(fx, (int64_t)time(NULL));
	}
	assert_int_equal(space_paused(s), 0);
	assert_int_equal(spool_counts(fx->sp, &c, err, sizeof(err)), 0);
	assert_true(c.delivered < 250 * BATCH * 9 / 10 / 2); /* pruned early */
	assert_int_equal(c.dead, 250 * BATCH / 50);          /* kept */
	assert_true(raw_used(fx) <= limit + 128 * 1024);
	space_free(s);
}

/* min_free_bytes larger than any disk: the first admit pauses for lack of room. */
static void test_min_free_pauses(void **state)
{
	struct space_fixture *fx = *state;
	struct config *cfg;
	struct space *s;
	struct space_status ss;
	char err[512] = "";
	int64_t wait;

	cfg = config(fx, "");
	/* 1 PiB, past the option's bound (1 TiB), so as to be more than any disk has. */
	cfg->agent.min_free_bytes = 1024LL << 40;
	s = space_new(cfg, fx->sp, err, sizeof(err));
	assert_non_null(s);
	space_publish(s);
	assert_int_equal(space_admit(s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "min_free_bytes"));
	assert_int_equal(space_paused(s), 1);
	assert_int_equal(space_status_read(fx->state, &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.state, SPACE_DISK_FULL);
	sleep_ms(1100);
	assert_int_equal(space_poll(s, &wait), 0);
	assert_int_equal(space_paused(s), 1);
	assert_int_equal(wait, 1000);
	space_free(s);
}

/* No limits: admit never measures nor refuses; a failed commit that was not a full disk does not
 * pause. */
static void test_no_limits(void **state)
{
	struct space_fixture *fx = *state;
	struct space *s;
	char err[512] = "";

	s = space_new(config(fx, "min_free_bytes = 0\n"), fx->sp, err, sizeof(err));
	assert_non_null(s);
	assert_int_equal(fill_until_paused(fx, s, 20), 20);
	/* A commit that fails for another reason: an unknown file id (foreign key). */
	fx->f.id = 9999;
	fill_batch(fx);
	assert_int_equal(fixture_commit(fx->sp, &fx->f, fx->batch, BATCH, err, sizeof(err)), -1);
	assert_int_equal(spool_failed_full(fx->sp), 0);
	space_commit_failed(s, err);
	assert_int_equal(space_paused(s), 0);
	assert_int_equal(space_admit(NULL, err, sizeof(err)), 0);
	assert_int_equal(space_paused(NULL), 0);
	space_free(s);
	space_free(NULL);
}

/* spool_prune with its room rule alone. */
static int oldest(struct space_fixture *fx, int64_t max, struct spool_pruned *out)
{
	char err[512] = "";

	return spool_prune(fx->sp, &(struct spool_prune){.oldest = max}, out, err, sizeof(err));
}

/* spool_prune's room rule, as relieve uses it: whole batches, the first committed first,
 * never one with a pending or dead event. */
static void test_prune_oldest_delivered(void **state)
{
	struct space_fixture *fx = *state;
	struct event evs[3];
	struct spool_mark m;
	struct spool_counts c;
	char err[512] = "";
	int64_t now = (int64_t)time(NULL);
	struct spool_pruned deleted;
	size_t n;

	for (int k = 0; k < 3; k++)
		commit_events(fx, 1); /* three batches of one event */
	commit_events(fx, 5);         /* then five pending */
	assert_int_equal(spool_pending(fx->sp, 0, evs, 3, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 3);
	/* Delivered in the order 2, 0, 1: the last two marks move the watermark over all three. */
	for (int k = 0; k < 3; k++) {
		int i = (k + 2) % 3;

		m = (struct spool_mark){.id = evs[i].id,
		                        .state = EVENT_DELIVERED,
		                        .attempts = 1,
		                        .when = now - 100 + k};
		assert_int_equal(spool_mark(fx->sp, &m, 1, err, sizeof(err)), 0);
	}
	assert_int_equal(oldest(fx, 2, &deleted), 0);
	assert_int_equal(deleted.early, 2);
	assert_int_equal(spool_counts(fx->sp, &c, err, sizeof(err)), 0);
	assert_int_equal(c.delivered, 1);
	assert_int_equal(c.pending, 5);
	/* The one left is the third committed. */
	assert_int_equal(oldest(fx, 0, &deleted), 0);
	assert_int_equal(deleted.early, 0);
	assert_int_equal(oldest(fx, 10, &deleted), 0);
	assert_int_equal(deleted.early, 1);
	assert_int_equal(spool_counts(fx->sp, &c, err, sizeof(err)), 0);
	assert_int_equal(c.delivered + c.pending + c.dead, 5);
	assert_int_equal(oldest(fx, 10, &deleted), 0);
	assert_int_equal(deleted.early, 0);
	/* A batch partly delivered stays. */
	assert_int_equal(spool_pending(fx->sp, 0, evs, 1, &n, err, sizeof(err)), 0);
	m = (struct spool_mark){
	    .id = evs[0].id, .state = EVENT_DELIVERED, .attempts = 1, .when = now};
	assert_int_equal(spool_mark(fx->sp, &m, 1, err, sizeof(err)), 0);
	assert_int_equal(oldest(fx, 10, &deleted), 0);
	assert_int_equal(deleted.early, 0);
}

/* Marks the first `k` pending events (queue order) delivered at `when`. */
static void deliver_first(struct space_fixture *fx, size_t k, int64_t when)
{
	struct event evs[BATCH];
	struct spool_mark m[BATCH];
	char err[512] = "";
	size_t n;

	assert_true(k <= BATCH);
	assert_int_equal(spool_pending(fx->sp, 0, evs, k, &n, err, sizeof(err)), 0);
	assert_int_equal(n, k);
	for (size_t i = 0; i < n; i++)
		m[i] = (struct spool_mark){
		    .id = evs[i].id, .state = EVENT_DELIVERED, .attempts = 1, .when = when};
	assert_int_equal(spool_mark(fx->sp, m, n, err, sizeof(err)), 0);
}

/* delivered_retention is applied by space, the spool's one pruner, on the ingest thread: at its
 * first poll (or space_expire, as --once calls it), then every 10 minutes; only delivered
 * events older than the retention go, pending and dead ones never. */
static void test_retention(void **state)
{
	struct space_fixture *fx = *state;
	const struct config *cfg = config(fx, "delivered_retention = 1h\n");
	struct space *s;
	struct spool_counts c;
	char err[512] = "";
	int64_t now = (int64_t)time(NULL), wait = -1;

	/* 200 events in batches of 10: the 10th and the 20th dead letters, the others pending. */
	for (int k = 0; k < 20; k++)
		commit_events(fx, 10);
	deliver_first(fx, 10, now - 7200); /* past the retention */
	deliver_first(fx, 10, now - 1800); /* within it */
	deliver_first(fx, 10, now - 3700); /* past it */
	s = space_new(cfg, fx->sp, err, sizeof(err));
	assert_non_null(s);
	assert_int_equal(space_poll(s, &wait), 0);
	assert_true(wait > 0 && wait <= 10 * 60 * 1000); /* reading: called again for the next */
	assert_int_equal(spool_counts(fx->sp, &c, err, sizeof(err)), 0);
	assert_int_equal(c.delivered, 10);
	assert_int_equal(c.pending, 150);
	assert_int_equal(c.dead, 20);
	assert_int_equal(space_paused(s), 0);
	/* Not due again yet: what expires meanwhile waits for the next round. */
	deliver_first(fx, 10, now - 7200);
	assert_int_equal(space_poll(s, &wait), 0);
	space_expire(s);
	assert_int_equal(spool_counts(fx->sp, &c, err, sizeof(err)), 0);
	assert_int_equal(c.delivered, 20);
	space_free(s);
	/* A new agent (a restart, a reload) applies it at once. */
	s = space_new(cfg, fx->sp, err, sizeof(err));
	assert_non_null(s);
	space_expire(s);
	assert_int_equal(spool_counts(fx->sp, &c, err, sizeof(err)), 0);
	assert_int_equal(c.delivered, 10);
	assert_int_equal(c.pending, 140);
	assert_int_equal(c.dead, 20);
	space_expire(NULL);
	assert_int_equal(space_poll(NULL, &wait), 0);
	assert_int_equal(wait, -1);
	space_free(s);
}

/* spool_usage against SQLite's own numbers, and the files' sizes. */
static void test_usage(void **state)
{
	struct space_fixture *fx = *state;
	struct spool_usage u;
	char err[512] = "", path[192];
	struct stat st;

	for (int i = 0; i < 5; i++) {
		fill_batch(fx);
		assert_int_equal(fixture_commit(fx->sp, &fx->f, fx->batch, BATCH, err, sizeof(err)),
		                 0);
	}
	assert_int_equal(spool_usage(fx->sp, &u, err, sizeof(err)), 0);
	assert_int_equal(u.page_size, 4096);
	assert_int_equal((u.pages - u.free_pages) * u.page_size, raw_used(fx));
	assert_int_equal(u.wal_autocheckpoint, 1000);
	snprintf(path, sizeof(path), "%s/spool.db-wal", fx->state);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(u.wal_file, st.st_size);
	snprintf(path, sizeof(path), "%s/spool.db", fx->state);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(u.db_file, st.st_size);
	assert_true(u.wal_file > 0);
	assert_int_equal(spool_checkpoint(fx->sp, err, sizeof(err)), 0);
	assert_int_equal(spool_usage(fx->sp, &u, err, sizeof(err)), 0);
	assert_int_equal(u.db_file, u.pages * u.page_size); /* copied in: the file has every page */
	assert_string_equal(spool_path(fx->sp), path);
}

/* The state file as `status` reads it. */
static void test_status_read(void **state)
{
	struct space_fixture *fx = *state;
	struct space_status ss;
	char err[512] = "", path[192];
	FILE *f;

	assert_int_equal(space_status_read(fx->state, &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.found, 0);
	assert_int_equal(ss.running, 0);
	snprintf(path, sizeof(path), "%s/%s", fx->state, STATEFILE_NAME);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f,
	        "# comment\npid 1\ningest spool-limit\nsince 1700000000\ndetail 4.0 MiB in use, "
	        "max_spool_bytes 4.0 MiB   \n%200s\n",
	        "");
	fclose(f);
	assert_int_equal(space_status_read(fx->state, &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.found, 1);
	assert_int_equal(ss.pid, 1);
	assert_int_equal(ss.state, SPACE_LIMIT);
	assert_int_equal(ss.since, 1700000000);
	assert_string_equal(ss.detail, "4.0 MiB in use, max_spool_bytes 4.0 MiB");
	assert_int_equal(ss.running, 0); /* pid 1 is not a logmeter */
	assert_string_equal(space_state_name(SPACE_DISK_FULL), "disk-full");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_limit_pause_and_resume, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_limit_prunes_delivered_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_min_free_pauses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prune_oldest_delivered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_status_read, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
