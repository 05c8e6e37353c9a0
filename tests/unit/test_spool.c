/* Unit tests for spool: real SQLite files in the fixture's directory, inspected through separate
 * raw sqlite3 connections. Events go in as the tail commits them (fixture_commit) and come back
 * through the spool's readers; the tables of schema 4 (batches, outcomes, deliveries, queue) are
 * looked at directly where a test is about how they are kept. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/spool.h"
#include "store/spool_int.h" /* a statement's steps: test_window_placed_steps */

#include "fixture.h"

/* The fixture's directory, its state_dir and spool.db, and fx->sp: a read-write handle on it. */
static int setup(void **state)
{
	struct fixture *fx = fixture_new("test_spool");

	fixture_spool(fx);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	fixture_free(*state);
	return 0;
}

/* ---- raw sqlite3 access, independent of the module ---- */

static sqlite3 *raw_open(const char *path)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	return db;
}

static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = raw_open(path);
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
	sqlite3 *db = raw_open(path);
	sqlite3_stmt *st = NULL;
	int64_t v;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* Creates a database at `path` and runs `sql` in it. */
static void raw_exec_create(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;

	assert_int_equal(
	    sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
	    SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s", msg);
	sqlite3_close(db);
}

/* Copies the first column of the first row of `sql` into out. */
static void raw_text(const char *path, const char *sql, char *out, size_t outlen)
{
	sqlite3 *db = raw_open(path);
	sqlite3_stmt *st = NULL;
	const unsigned char *s;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	s = sqlite3_column_text(st, 0);
	snprintf(out, outlen, "%s", s != NULL ? (const char *)s : "(null)");
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* ---- helpers ---- */

static int is_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static void file_init(struct spool_file *f, const char *source, const char *path, uint64_t dev,
                      uint64_t ino)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->source, sizeof(f->source), "%s", source);
	snprintf(f->path, sizeof(f->path), "%s", path);
	f->dev = dev;
	f->ino = ino;
	f->fp_len = 5;
	memset(f->fp_hash, 0xab, sizeof(f->fp_hash));
	f->state = SPOOL_FILE_READING;
}

static struct spool_file *add_file(struct fixture *fx, const char *source, uint64_t ino)
{
	struct spool_file *f = malloc(sizeof(*f));
	char err[512] = "";

	assert_non_null(f);
	file_init(f, source, "/var/log/x.log", 2049, ino);
	if (spool_file_add(fx->sp, f, err, sizeof(err)) != 0)
		fail_msg("spool_file_add: %s", err);
	return f;
}

static void event_init(struct event *ev, int64_t file_id, int64_t offset, const char *rule)
{
	memset(ev, 0, sizeof(*ev));
	ev->file_id = file_id;
	ev->line_offset = offset;
	snprintf(ev->rule, sizeof(ev->rule), "%s", rule);
	snprintf(ev->event_name, sizeof(ev->event_name), "api_requests");
	snprintf(ev->payload_customer_key, sizeof(ev->payload_customer_key), "stripe_customer_id");
	snprintf(ev->payload_value_key, sizeof(ev->payload_value_key), "value");
	snprintf(ev->customer_key, sizeof(ev->customer_key), "10.0.0.%lld",
	         (long long)(offset % 250));
	snprintf(ev->customer, sizeof(ev->customer), "cus_%lld", (long long)offset);
	snprintf(ev->value, sizeof(ev->value), "%lld", (long long)offset * 10);
	ev->timestamp = 1700000000 + offset;
	ev->state = EVENT_PENDING;
}

/* Commits events at offsets first, first + 100, ... for file f (rule r1), with f's offset
 * moved past them, in one batch. */
static void commit_n(struct fixture *fx, struct spool_file *f, int64_t first, size_t n)
{
	struct event *evs = calloc(n, sizeof(*evs));
	char err[512] = "";

	assert_non_null(evs);
	for (size_t i = 0; i < n; i++)
		event_init(&evs[i], f->id, first + 100 * (int64_t)i, "r1");
	f->offset = first + 100 * (int64_t)n;
	if (fixture_commit(fx->sp, f, evs, n, err, sizeof(err)) != 0)
		fail_msg("spool_commit: %s", err);
	for (size_t i = 0; i < n; i++)
		assert_true(evs[i].id > 0);
	free(evs);
}

/* commit_n of `n` events, each in a batch of its own. */
static void commit_each(struct fixture *fx, struct spool_file *f, int64_t first, size_t n)
{
	for (size_t i = 0; i < n; i++)
		commit_n(fx, f, first + 100 * (int64_t)i, 1);
}

static struct spool_counts counts(struct spool *sp)
{
	struct spool_counts c = {-1, -1, -1, -1};
	char err[512] = "";

	if (spool_counts(sp, &c, err, sizeof(err)) != 0)
		fail_msg("spool_counts: %s", err);
	return c;
}

/* The event with id `id` as the spool gives it back, in whatever state. */
struct find {
	int64_t id;
	struct event ev;
	int found;
};

static int find_event(const struct event *ev, void *ud)
{
	struct find *f = ud;

	if (ev->id == f->id) {
		f->ev = *ev;
		f->found = 1;
	}
	return 0;
}

static struct event event_of(struct spool *sp, int64_t id)
{
	struct find *f = calloc(1, sizeof(*f));
	struct event ev;
	char err[512] = "";

	assert_non_null(f);
	f->id = id;
	for (int s = EVENT_PENDING; s <= EVENT_UNSURE; s++)
		if (spool_events_foreach(sp, (enum event_state)s, find_event, f, err,
		                         sizeof(err)) != 0)
			fail_msg("spool_events_foreach: %s", err);
	if (!f->found)
		fail_msg("no event %lld", (long long)id);
	ev = f->ev;
	free(f);
	return ev;
}

static int collect_event(const struct event *ev, void *ud)
{
	struct event **pp = ud;

	**pp = *ev;
	(*pp)++;
	return 0;
}

struct listing {
	int64_t ids[16];
	char names[16][160];
	size_t n;
	size_t stop_after; /* 0: never */
};

static int list_event(const struct event *ev, void *ud)
{
	struct listing *l = ud;

	if (l->n >= 16)
		return -1;
	l->ids[l->n++] = ev->id;
	return l->stop_after != 0 && l->n >= l->stop_after ? -1 : 0;
}

static int list_file(const struct spool_file *f, void *ud)
{
	struct listing *l = ud;

	if (l->n >= 16)
		return -1;
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s:%lld", f->source, (long long)f->ino);
	l->ids[l->n++] = f->id;
	return l->stop_after != 0 && l->n >= l->stop_after ? -1 : 0;
}

struct decider {
	int verdict;      /* what decide returns */
	int64_t seen[32]; /* ids seen, in order */
	size_t n;
	const char *customer; /* set as the customer, if not NULL */
};

static int decide(struct event *ev, void *ud)
{
	struct decider *d = ud;

	if (d->n < 32)
		d->seen[d->n++] = ev->id;
	if (d->customer != NULL)
		snprintf(ev->customer, sizeof(ev->customer), "%s", d->customer);
	snprintf(ev->last_error, sizeof(ev->last_error), "replayed %lld", (long long)ev->id);
	return d->verdict;
}

/* Key generations, first unknown outcomes and unsure events: written by marks, read back with
 * the events, counted, listed, and replayed with the next key generation. */
static int collect(const struct event *ev, void *ud)
{
	struct event *out = ud;

	if (out[0].id == 0)
		out[0] = *ev;
	else
		out[1] = *ev;
	return 0;
}

/* Removes the fixture's spool (and its WAL files) so that a test can make an old one. */
static void spool_remove(struct fixture *fx)
{
	char side[sizeof(fx->db) + 8];

	spool_free(fx->sp);
	fx->sp = NULL;
	unlink(fx->db);
	snprintf(side, sizeof(side), "%s-wal", fx->db);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", fx->db);
	unlink(side);
}

/* ---- open ---- */

static void test_open_creates_dir_and_wal(void **state)
{
	struct fixture *fx = *state;
	char path[256], mode[32], err[512] = "";
	struct stat st;
	struct spool *sp;

	/* A nested state_dir is created with mode 0750. */
	snprintf(path, sizeof(path), "%s/a/b/c", fx->dir);
	umask(022);
	sp = spool_open(path, SPOOL_READ_WRITE, err, sizeof(err));
	if (sp == NULL)
		fail_msg("spool_open: %s", err);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	snprintf(path, sizeof(path), "%s/a/b", fx->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
	spool_free(sp);

	/* The fixture's database: WAL (a property of the file), this schema version, the tables. */
	assert_int_equal(stat(fx->db, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	raw_text(fx->db, "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "wal");
	assert_int_equal(raw_int(fx->db, "PRAGMA user_version"), SPOOL_SCHEMA_VERSION);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM sqlite_master WHERE name IN "
	                                 "('meta', 'files', 'rules', 'batches', 'queue',"
	                                 " 'deliveries', 'outcomes', 'outcomes_pending',"
	                                 " 'batches_position', 'batches_queue')"),
	                 10);
	assert_int_equal(
	    raw_int(fx->db, "SELECT count(*) FROM sqlite_master WHERE name = 'events'"), 0);
	/* Uniqueness is the line's position, at the end of its index: (file, first offset). */
	assert_int_equal(raw_int(fx->db, "SELECT \"unique\" FROM pragma_index_list('batches')"
	                                 " WHERE name = 'batches_position'"),
	                 1);
	assert_int_equal(raw_int(fx->db, "SELECT group_concat(name) = 'file_id,first_offset' FROM "
	                                 "pragma_index_info('batches_position')"),
	                 1);
	/* The sender's scan of pending rows follows the queue position. */
	assert_int_equal(raw_int(fx->db, "SELECT group_concat(name) = 'queue_seq' FROM "
	                                 "pragma_index_info('outcomes_pending')"),
	                 1);
	/* No CHECK constraint anywhere: SQLite 3.40 makes a temporary b-tree for one on every
	 * write of the row. */
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM sqlite_master WHERE"
	                                 " instr(sql, 'CHECK') > 0"),
	                 0);
	/* The queue's one row: nothing committed, nothing delivered. */
	assert_int_equal(raw_int(fx->db,
	                         "SELECT count(*) FROM queue WHERE next_id = 1 AND shift = 0"
	                         " AND delivered_through = 0"),
	                 1);

	/* Reopening an existing spool works, read-write and read-only, with both open. */
	sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	if (sp == NULL)
		fail_msg("reopen: %s", err);
	struct spool *ro = spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err));
	if (ro == NULL)
		fail_msg("read-only open: %s", err);
	spool_free(ro);
	spool_free(sp);
	spool_free(NULL);

	/* A reader alone, with no writer open (the agent stopped). */
	spool_free(fx->sp);
	fx->sp = NULL;
	ro = spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err));
	if (ro == NULL)
		fail_msg("read-only open without a writer: %s", err);
	assert_int_equal(counts(ro).pending, 0);
	spool_free(ro);
}

static void test_open_refuses_newer_schema(void **state)
{
	struct fixture *fx = *state;
	char err[512] = "";
	struct spool *sp;

	spool_free(fx->sp);
	fx->sp = NULL;
	raw_exec(fx->db, "PRAGMA user_version = 99");

	sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	assert_null(sp);
	assert_non_null(strstr(err, "newer"));
	assert_non_null(strstr(err, "99"));
	assert_non_null(strstr(err, fx->db));

	err[0] = '\0';
	sp = spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err));
	assert_null(sp);
	assert_non_null(strstr(err, "newer"));
	/* Refusing did not touch it. */
	assert_int_equal(raw_int(fx->db, "PRAGMA user_version"), 99);
}

/* The first bytes (up to 32 hex digits) of the marker of `state_dir` into `out`. */
static void marker_id(const char *state_dir, char out[33])
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/" SPOOL_MARKER_NAME, state_dir);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fread(out, 1, 32, f), 32);
	out[32] = '\0';
	fclose(f);
}

/* Opens the spool of `dir` read-write (making it, and the marker) and closes it. */
static void open_closed(const char *dir)
{
	char err[1024] = "";
	struct spool *sp = spool_open(dir, SPOOL_READ_WRITE, err, sizeof(err));

	if (sp == NULL)
		fail_msg("spool_open: %s", err);
	spool_free(sp);
}

/* A new spool gets an id and its state directory the marker; an empty or missing spool.db is
 * then refused, read-write and read-only, and so is another spool put in its place (read-write).
 * spool_start_over forgets the lost one or adopts the other; with nothing lost it refuses. */
static void test_marker(void **state)
{
	struct fixture *fx = *state;
	char err[1024] = "", what[512] = "", id[33], id2[33], other[200], cmd[600], meta[64] = "";
	struct stat st;

	open_closed(fx->state);
	marker_id(fx->state, id);
	raw_text(fx->db, "SELECT value FROM meta WHERE key = 'spool_id'", meta, sizeof(meta));
	assert_string_equal(meta, id);
	assert_int_equal(spool_start_over(fx->state, what, sizeof(what), err, sizeof(err)), 1);
	assert_non_null(strstr(err, "nothing to start over"));

	/* Emptied: refused both ways, and nothing is written to it. */
	assert_int_equal(truncate(fx->db, 0), 0);
	err[0] = '\0';
	assert_null(spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err)));
	assert_non_null(strstr(err, "is empty (0 bytes), but this state directory had a spool"));
	assert_non_null(strstr(err, id));
	assert_non_null(strstr(err, "spool start-over"));
	assert_null(spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err)));
	assert_non_null(strstr(err, "is empty (0 bytes)"));
	assert_int_equal(stat(fx->db, &st), 0);
	assert_int_equal(st.st_size, 0);
	/* Missing: the same. */
	assert_int_equal(unlink(fx->db), 0);
	assert_null(spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err)));
	assert_non_null(strstr(err, "is missing, but this state directory had a spool"));

	/* Started over: a new spool, a new id. */
	assert_int_equal(spool_start_over(fx->state, what, sizeof(what), err, sizeof(err)), 0);
	assert_non_null(strstr(what, "forgotten"));
	open_closed(fx->state);
	marker_id(fx->state, id2);
	assert_string_not_equal(id, id2);

	/* Another directory's spool put in its place: refused read-write, adopted by start-over. */
	snprintf(other, sizeof(other), "%s/other", fx->dir);
	open_closed(other);
	snprintf(cmd, sizeof(cmd), "cp %s/spool.db %s", other, fx->db);
	assert_int_equal(system(cmd), 0);
	assert_null(spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err)));
	assert_non_null(strstr(err, "another spool"));
	assert_int_equal(spool_start_over(fx->state, what, sizeof(what), err, sizeof(err)), 0);
	marker_id(other, id);
	marker_id(fx->state, id2);
	assert_string_equal(id, id2);
	open_closed(fx->state);
}

/* A spool of an earlier version has no id and no marker: it gets both, and a spool whose id row
 * was lost (rebuilt by spool recover) takes the marker's. */
static void test_marker_adopted(void **state)
{
	struct fixture *fx = *state;
	char id[33], meta[64] = "", path[256];

	open_closed(fx->state);
	marker_id(fx->state, id);
	raw_exec(fx->db, "DELETE FROM meta WHERE key = 'spool_id'");
	open_closed(fx->state);
	raw_text(fx->db, "SELECT value FROM meta WHERE key = 'spool_id'", meta, sizeof(meta));
	assert_string_equal(meta, id);

	snprintf(path, sizeof(path), "%s/" SPOOL_MARKER_NAME, fx->state);
	assert_int_equal(unlink(path), 0);
	raw_exec(fx->db, "DELETE FROM meta WHERE key = 'spool_id'");
	open_closed(fx->state);
	marker_id(fx->state, id);
	raw_text(fx->db, "SELECT value FROM meta WHERE key = 'spool_id'", meta, sizeof(meta));
	assert_string_equal(meta, id);
}

static void test_open_state_dir_is_a_file(void **state)
{
	struct fixture *fx = *state;
	char path[256], sub[300], err[512] = "";
	FILE *fp;

	snprintf(path, sizeof(path), "%s/plain", fx->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);

	assert_null(spool_open(path, SPOOL_READ_WRITE, err, sizeof(err)));
	assert_non_null(strstr(err, "not a directory"));
	assert_non_null(strstr(err, path));

	snprintf(sub, sizeof(sub), "%s/below", path);
	err[0] = '\0';
	assert_null(spool_open(sub, SPOOL_READ_WRITE, err, sizeof(err)));
	assert_true(err[0] != '\0');

	err[0] = '\0';
	assert_null(spool_open(path, SPOOL_READ_ONLY, err, sizeof(err)));
	assert_true(err[0] != '\0');
}
static void test_open_read_only_missing(void **state)
{
	struct fixture *fx = *state;
	char path[256], expect[400], err[512] = "";
	struct stat st;

	snprintf(path, sizeof(path), "%s/never", fx->dir);
	assert_null(spool_open(path, SPOOL_READ_ONLY, err, sizeof(err)));
	snprintf(expect, sizeof(expect), "no spool at %s/spool.db: the agent has not run yet",
	         path);
	assert_string_equal(err, expect);
	/* Read-only mode creates nothing. */
	assert_int_equal(stat(path, &st), -1);

	/* An existing directory without the database: same. */
	assert_int_equal(mkdir(path, 0750), 0);
	err[0] = '\0';
	assert_null(spool_open(path, SPOOL_READ_ONLY, err, sizeof(err)));
	assert_string_equal(err, expect);
}
static void test_open_not_a_database(void **state)
{
	struct fixture *fx = *state;
	char path[256], db[300], err[512] = "";
	FILE *fp;

	snprintf(path, sizeof(path), "%s/junk", fx->dir);
	assert_int_equal(mkdir(path, 0750), 0);
	snprintf(db, sizeof(db), "%s/spool.db", path);
	fp = fopen(db, "w");
	assert_non_null(fp);
	for (int i = 0; i < 200; i++)
		fputs("this is not an SQLite database\n", fp);
	fclose(fp);
	assert_null(spool_open(path, SPOOL_READ_WRITE, err, sizeof(err)));
	assert_non_null(strstr(err, "SQLITE_NOTADB"));
}
/* The spool's path is made in one place, for every command and the agent. */
static void test_path_of(void **state)
{
	struct fixture *fx = *state;
	char out[SPOOL_PATH_MAX], small[16], err[512] = "";

	assert_int_equal(spool_path_of(fx->state, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, fx->db);
	assert_string_equal(spool_path(fx->sp), fx->db);
	assert_int_equal(spool_path_of("/var/lib/logmeter", small, sizeof(small), err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "too long"));
	assert_int_equal(spool_path_of(NULL, out, sizeof(out), err, sizeof(err)), -1);
}

/* ---- instance ---- */

static void test_instance(void **state)
{
	struct fixture *fx = *state;
	char a[64], b[64], small[4], err[512] = "";
	struct spool *ro;

	/* Generated once, then stable, also across handles. */
	assert_int_equal(spool_instance(fx->sp, NULL, a, sizeof(a), err, sizeof(err)), 0);
	assert_true(is_hex(a, 16));
	assert_int_equal(spool_instance(fx->sp, NULL, b, sizeof(b), err, sizeof(err)), 0);
	assert_string_equal(a, b);
	ro = spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err));
	assert_non_null(ro);
	assert_int_equal(spool_instance(ro, NULL, b, sizeof(b), err, sizeof(err)), 0);
	assert_string_equal(a, b);

	/* A configured one replaces it and is kept. */
	assert_int_equal(spool_instance(fx->sp, "web-01", b, sizeof(b), err, sizeof(err)), 0);
	assert_string_equal(b, "web-01");
	assert_int_equal(spool_instance(fx->sp, NULL, b, sizeof(b), err, sizeof(err)), 0);
	assert_string_equal(b, "web-01");
	raw_text(fx->db, "SELECT value FROM meta WHERE key = 'instance'", b, sizeof(b));
	assert_string_equal(b, "web-01");
	assert_int_equal(spool_instance(ro, NULL, b, sizeof(b), err, sizeof(err)), 0);
	assert_string_equal(b, "web-01");

	/* Too small an output buffer is an error, not a cut id. */
	err[0] = '\0';
	assert_int_equal(spool_instance(fx->sp, NULL, small, sizeof(small), err, sizeof(err)), -1);
	assert_true(err[0] != '\0');
	spool_free(ro);
}
static void test_instance_read_only_unset(void **state)
{
	struct fixture *fx = *state;
	char out[64], err[512] = "";
	struct spool *ro = spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err));

	assert_non_null(ro);
	assert_int_equal(spool_instance(ro, NULL, out, sizeof(out), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no instance id"));
	/* The configured one is what the agent will use. */
	assert_int_equal(spool_instance(ro, "cfg-1", out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "cfg-1");
	spool_free(ro);
}

/* ---- files ---- */

static void test_file_round_trip(void **state)
{
	struct fixture *fx = *state;
	struct spool_file a, b, got;
	char err[512] = "", text[64];
	int64_t t0 = (int64_t)time(NULL), t1;

	file_init(&a, "nginx", "/var/log/nginx/access.log", UINT64_MAX, (uint64_t)1 << 63);
	a.offset = 0;
	assert_int_equal(spool_file_add(fx->sp, &a, err, sizeof(err)), 0);
	file_init(&b, "nginx", "/var/log/nginx/error.log", 2049, 7);
	assert_int_equal(spool_file_add(fx->sp, &b, err, sizeof(err)), 0);
	t1 = (int64_t)time(NULL);

	assert_true(a.id > 0);
	assert_true(b.id > a.id);
	assert_true(is_hex(a.uid, 32));
	assert_true(is_hex(b.uid, 32));
	assert_string_not_equal(a.uid, b.uid);
	assert_true(a.first_seen >= t0 && a.first_seen <= t1);

	/* Everything comes back, including a dev and ino beyond INT64_MAX. */
	assert_int_equal(
	    spool_file_find(fx->sp, "nginx", UINT64_MAX, (uint64_t)1 << 63, &got, err, sizeof(err)),
	    1);
	assert_int_equal(got.id, a.id);
	assert_string_equal(got.uid, a.uid);
	assert_string_equal(got.source, "nginx");
	assert_string_equal(got.path, "/var/log/nginx/access.log");
	assert_true(got.dev == UINT64_MAX);
	assert_true(got.ino == (uint64_t)1 << 63);
	assert_int_equal(got.fp_len, 5);
	assert_memory_equal(got.fp_hash, a.fp_hash, SPOOL_HASH_LEN);
	assert_int_equal(got.state, SPOOL_FILE_READING);
	assert_int_equal(got.first_seen, a.first_seen);
	/* The database keeps the state as text, as every spool since the first release. */
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM files WHERE state = 'reading'"), 2);

	/* Not found: another source with the same identity, or another inode. */
	assert_int_equal(spool_file_find(fx->sp, "apache", 2049, 7, &got, err, sizeof(err)), 0);
	assert_int_equal(spool_file_find(fx->sp, "nginx", 2049, 8, &got, err, sizeof(err)), 0);

	/* Update writes back path, identity, checkpoint, counters and state. */
	snprintf(b.path, sizeof(b.path), "/var/log/nginx/error.log.1");
	b.offset = 12345;
	b.check_len = 1024;
	memset(b.check_hash, 0x5c, sizeof(b.check_hash));
	b.size = 20000;
	b.fp_len = 1024;
	memset(b.fp_hash, 0x11, sizeof(b.fp_hash));
	b.state = SPOOL_FILE_GONE;
	b.counters = (struct spool_counters){.lines = 100,
	                                     .matched = 60,
	                                     .unmatched = 30,
	                                     .invalid = 5,
	                                     .long_lines = 4,
	                                     .nul_bytes = 3,
	                                     .events = 61,
	                                     .resets = 2};
	assert_int_equal(spool_file_update(fx->sp, &b, err, sizeof(err)), 0);
	assert_int_equal(spool_file_find(fx->sp, "nginx", 2049, 7, &got, err, sizeof(err)), 1);
	assert_int_equal(got.id, b.id);
	assert_string_equal(got.uid, b.uid);
	assert_string_equal(got.path, "/var/log/nginx/error.log.1");
	assert_int_equal(got.offset, 12345);
	assert_int_equal(got.check_len, 1024);
	assert_memory_equal(got.check_hash, b.check_hash, SPOOL_HASH_LEN);
	assert_int_equal(got.size, 20000);
	assert_int_equal(got.fp_len, 1024);
	assert_memory_equal(got.fp_hash, b.fp_hash, SPOOL_HASH_LEN);
	assert_int_equal(got.state, SPOOL_FILE_GONE);
	raw_text(fx->db, "SELECT group_concat(state) FROM (SELECT state FROM files ORDER BY id)",
	         text, sizeof(text));
	assert_string_equal(text, "reading,gone");
	/* Each state, written and read back; the names status and the log show. */
	b.state = SPOOL_FILE_DRAINED;
	assert_int_equal(spool_file_update(fx->sp, &b, err, sizeof(err)), 0);
	assert_int_equal(spool_file_find(fx->sp, "nginx", 2049, 7, &got, err, sizeof(err)), 1);
	assert_int_equal(got.state, SPOOL_FILE_DRAINED);
	raw_text(fx->db, "SELECT state FROM files WHERE ino = 7", text, sizeof(text));
	assert_string_equal(text, "drained");
	assert_string_equal(spool_file_state_name(SPOOL_FILE_READING), "reading");
	assert_string_equal(spool_file_state_name(SPOOL_FILE_DRAINED), "drained");
	assert_string_equal(spool_file_state_name(SPOOL_FILE_GONE), "gone");
	assert_string_equal(spool_file_state_name((enum spool_file_state)9), "?");
	/* A state that is none is refused rather than stored. */
	b.state = (enum spool_file_state)9;
	assert_int_equal(spool_file_update(fx->sp, &b, err, sizeof(err)), -1);
	b.state = SPOOL_FILE_GONE;
	assert_int_equal(spool_file_update(fx->sp, &b, err, sizeof(err)), 0);
	assert_int_equal(got.counters.lines, 100);
	assert_int_equal(got.counters.matched, 60);
	assert_int_equal(got.counters.unmatched, 30);
	assert_int_equal(got.counters.invalid, 5);
	assert_int_equal(got.counters.long_lines, 4);
	assert_int_equal(got.counters.nul_bytes, 3);
	assert_int_equal(got.counters.events, 61);
	assert_int_equal(got.counters.resets, 2);
	assert_true(got.updated >= t0);

	/* A new record for the same identity (the inode was reused): find returns it. */
	struct spool_file c;

	file_init(&c, "nginx", "/var/log/nginx/error.log", 2049, 7);
	assert_int_equal(spool_file_add(fx->sp, &c, err, sizeof(err)), 0);
	assert_int_equal(spool_file_find(fx->sp, "nginx", 2049, 7, &got, err, sizeof(err)), 1);
	assert_int_equal(got.id, c.id);
	assert_string_equal(got.uid, c.uid);
	assert_int_equal(got.offset, 0);

	/* Updating a record that does not exist fails; bad values are refused. */
	c.id = 9999;
	err[0] = '\0';
	assert_int_equal(spool_file_update(fx->sp, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "9999"));
	c.id = b.id;
	c.fp_len = SPOOL_FP_MAX + 1;
	assert_int_equal(spool_file_update(fx->sp, &c, err, sizeof(err)), -1);
	assert_int_equal(spool_file_find(fx->sp, "nginx", 2049, 7, &got, err, sizeof(err)), 1);
	assert_int_equal(got.fp_len, 5);
}

/* spool_file_forget deletes the record of a file seen only empty, and only while the id is still
 * that file's: SQLite gives a deleted largest id to the next record
 * (https://www.sqlite.org/autoinc.html), so a copy's tail that kept the id of the record its file
 * was seen empty with must not delete the truncated original's new record that got it. */
static void test_file_forget(void **state)
{
	struct fixture *fx = *state;
	struct spool_file a, e, b, got;
	char err[512] = "";
	int64_t eid;

	file_init(&a, "r", "/var/log/app.log", 2049, 10);
	a.offset = 2758;
	assert_int_equal(spool_file_add(fx->sp, &a, err, sizeof(err)), 0);
	/* The copy, seen empty: nothing read. */
	file_init(&e, "r", "/var/log/app.log.1", 2049, 11);
	e.fp_len = 0;
	assert_int_equal(spool_file_add(fx->sp, &e, err, sizeof(err)), 0);
	eid = e.id;
	/* A record that read something, or another file's: kept. */
	assert_int_equal(spool_file_forget(fx->sp, a.id, 2049, 10, err, sizeof(err)), 0);
	assert_int_equal(spool_file_forget(fx->sp, eid, 2049, 10, err, sizeof(err)), 0);
	assert_int_equal(spool_file_forget(fx->sp, eid, 2050, 11, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM files"), 2);
	/* Nothing deleted: a tail whose record read nothing need not look for it. */
	assert_int_equal(spool_file_forgotten(fx->sp), 0);
	/* Its own, empty: deleted, and counted. */
	assert_int_equal(spool_file_forget(fx->sp, eid, 2049, 11, err, sizeof(err)), 1);
	assert_int_equal(spool_file_forgotten(fx->sp), 1);
	assert_int_equal(spool_file_find(fx->sp, "r", 2049, 11, &got, err, sizeof(err)), 0);
	/* The original's new record (its file truncated to nothing) gets another id (an older
	 * spool, or one copied by `spool recover`, may still give it: test_file_id_never_reused)...
	 */
	file_init(&b, "r", "/var/log/app.log", 2049, 10);
	b.fp_len = 0;
	assert_int_equal(spool_file_add(fx->sp, &b, err, sizeof(err)), 0);
	assert_true(b.id > eid);
	/* ...and the copy's tail forgetting its old record again leaves it. */
	assert_int_equal(spool_file_forget(fx->sp, eid, 2049, 11, err, sizeof(err)), 0);
	assert_int_equal(spool_file_forgotten(fx->sp), 1);
	assert_int_equal(spool_file_find(fx->sp, "r", 2049, 10, &got, err, sizeof(err)), 1);
	assert_int_equal(got.id, b.id);
	assert_string_equal(got.uid, b.uid);
}

/* spool_file_update_add: a record moved onto a copytruncate copy and the original's new record
 * are written together, or neither is (an add that fails leaves the move undone). */
static void test_file_update_add(void **state)
{
	struct fixture *fx = *state;
	struct spool_file a, b, bad, got;
	char err[512] = "";

	file_init(&a, "r", "/var/log/app.log", 2049, 10);
	a.offset = 2758;
	assert_int_equal(spool_file_add(fx->sp, &a, err, sizeof(err)), 0);
	/* Moved onto the copy (inode 11), the original (inode 10) gets a record at 0. */
	a.ino = 11;
	snprintf(a.path, sizeof(a.path), "/var/log/app.log.1");
	file_init(&b, "r", "/var/log/app.log", 2049, 10);
	b.fp_len = 0;
	b.offset = 0;
	assert_int_equal(spool_file_update_add(fx->sp, &a, &b, err, sizeof(err)), 0);
	assert_true(b.id > a.id);
	assert_int_equal(spool_file_find(fx->sp, "r", 2049, 11, &got, err, sizeof(err)), 1);
	assert_int_equal(got.id, a.id);
	assert_int_equal(got.offset, 2758);
	assert_string_equal(got.path, "/var/log/app.log.1");
	assert_int_equal(spool_file_find(fx->sp, "r", 2049, 10, &got, err, sizeof(err)), 1);
	assert_int_equal(got.id, b.id);
	assert_string_equal(got.uid, b.uid);
	assert_int_equal(got.offset, 0);
	/* An add that fails (an invalid record, checked after the update) undoes the update. */
	a.offset = 4106;
	file_init(&bad, "r", "/var/log/app.log", 2049, 10);
	bad.offset = -1;
	assert_int_equal(spool_file_update_add(fx->sp, &a, &bad, err, sizeof(err)), -1);
	assert_int_equal(spool_file_find(fx->sp, "r", 2049, 11, &got, err, sizeof(err)), 1);
	assert_int_equal(got.offset, 2758);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM files"), 2);
}

/* A file record's id is never given again once the record is deleted, even when it was the
 * largest (which SQLite's rowid would give to the next row: https://www.sqlite.org/autoinc.html),
 * through another handle too; so nothing another record left under that id (here a file_extra
 * row, as a spool written with foreign keys off may hold) is ever attached to a new file. A spool
 * without the counter (written before it) goes on from the largest id in the table. */
static void test_file_id_never_reused(void **state)
{
	struct fixture *fx = *state;
	struct spool_file a, e, b, c, d, got;
	char err[512] = "", sql[256];
	int64_t eid, max_id;

	file_init(&a, "r", "/var/log/app.log", 2049, 10);
	a.offset = 100;
	assert_int_equal(spool_file_add(fx->sp, &a, err, sizeof(err)), 0);
	file_init(&e, "r", "/var/log/app.log.1", 2049, 11);
	e.fp_len = 0;
	assert_int_equal(spool_file_add(fx->sp, &e, err, sizeof(err)), 0);
	eid = e.id;
	assert_true(eid > a.id);
	/* The newest record, deleted; a row of its own left behind. */
	assert_int_equal(spool_file_forget(fx->sp, eid, 2049, 11, err, sizeof(err)), 1);
	assert_int_equal(raw_int(fx->db, "SELECT max(id) FROM files"), a.id);
	snprintf(sql, sizeof(sql),
	         "INSERT INTO file_extra(file_id, bad_utf8) VALUES (%" PRId64 ", 7)", eid);
	raw_exec(fx->db, sql);

	/* The next record: a new id, nothing of the old record's attached to it. */
	file_init(&b, "r", "/var/log/app.log.2", 2049, 12);
	b.fp_len = 0;
	assert_int_equal(spool_file_add(fx->sp, &b, err, sizeof(err)), 0);
	assert_true(b.id > eid);
	assert_int_equal(spool_file_find(fx->sp, "r", 2049, 12, &got, err, sizeof(err)), 1);
	assert_int_equal(got.id, b.id);
	assert_int_equal(got.counters.bad_utf8, 0);
	snprintf(sql, sizeof(sql),
	         "SELECT (SELECT count(*) FROM file_extra WHERE file_id = %" PRId64 ")"
	         " + (SELECT count(*) FROM batches WHERE file_id = %" PRId64 ")"
	         " + (SELECT count(*) FROM windows WHERE file_id = %" PRId64 ")"
	         " + (SELECT count(*) FROM window_lines WHERE file_id = %" PRId64 ")",
	         b.id, b.id, b.id, b.id);
	assert_int_equal(raw_int(fx->db, sql), 0);

	/* Through another handle: the newest deleted again, the next id still past it. */
	spool_free(fx->sp);
	fx->sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	if (fx->sp == NULL)
		fail_msg("spool_open: %s", err);
	assert_int_equal(spool_file_forget(fx->sp, b.id, 2049, 12, err, sizeof(err)), 1);
	file_init(&c, "r", "/var/log/app.log.3", 2049, 13);
	assert_int_equal(spool_file_add(fx->sp, &c, err, sizeof(err)), 0);
	assert_true(c.id > b.id);

	/* Added inside the caller's transaction: counted in it. */
	assert_int_equal(spool_tx_begin(fx->sp, err, sizeof(err)), 0);
	file_init(&d, "r", "/var/log/app.log.4", 2049, 14);
	assert_int_equal(spool_file_add(fx->sp, &d, err, sizeof(err)), 0);
	assert_int_equal(spool_tx_commit(fx->sp, err, sizeof(err)), 0);
	assert_true(d.id > c.id);
	assert_int_equal(spool_file_find(fx->sp, "r", 2049, 14, &got, err, sizeof(err)), 1);
	assert_int_equal(got.id, d.id);

	/* A spool written before the counter: the largest id in the table, plus one. */
	raw_exec(fx->db, "DELETE FROM meta WHERE key = 'file_id_last'");
	max_id = raw_int(fx->db, "SELECT max(id) FROM files");
	file_init(&d, "r", "/var/log/app.log.5", 2049, 15);
	assert_int_equal(spool_file_add(fx->sp, &d, err, sizeof(err)), 0);
	assert_int_equal(d.id, max_id + 1);
	assert_int_equal(raw_int(fx->db, "SELECT CAST(value AS INTEGER) FROM meta"
	                                 " WHERE key = 'file_id_last'"),
	                 d.id);
}

/* Values another writer (or a damaged database) left: cut safely, wrong blobs count as absent,
 * a batch that does not decode is damage. */
/* The candidate of a file whose file system came back under another device number: same path
 * (or, renamed, same directory) and inode, another device, not gone. The content check is the
 * caller's (tail.c, t_device_change.sh). */
static void test_file_find_remounted(void **state)
{
	struct fixture *fx = *state;
	struct spool_file a, b, c, got;
	char err[512] = "";

	file_init(&a, "nginx", "/var/log/nginx/access.log", 2049, 13);
	assert_int_equal(spool_file_add(fx->sp, &a, err, sizeof(err)), 0);
	file_init(&b, "nginx", "/var/log/nginx/access.log.1", 2049, 14);
	assert_int_equal(spool_file_add(fx->sp, &b, err, sizeof(err)), 0);
	file_init(&c, "nginx", "/var/log/other/x.log", 2049, 15);
	c.state = SPOOL_FILE_GONE;
	assert_int_equal(spool_file_add(fx->sp, &c, err, sizeof(err)), 0);

	/* Device 2049 became 2050: found by path and inode. */
	assert_int_equal(spool_file_find_remounted(fx->sp, "nginx", "/var/log/nginx/access.log",
	                                           2050, 13, &got, err, sizeof(err)),
	                 1);
	assert_int_equal(got.id, a.id);
	assert_true(got.dev == 2049);
	/* Renamed while stopped (access.log.1 -> access.log.2): by inode in the same directory. */
	assert_int_equal(spool_file_find_remounted(fx->sp, "nginx", "/var/log/nginx/access.log.2",
	                                           2050, 14, &got, err, sizeof(err)),
	                 1);
	assert_int_equal(got.id, b.id);
	/* Not: the same device (spool_file_find's case), another inode, another directory, another
	 * source, or a gone record. */
	assert_int_equal(spool_file_find_remounted(fx->sp, "nginx", "/var/log/nginx/access.log",
	                                           2049, 13, &got, err, sizeof(err)),
	                 0);
	assert_int_equal(spool_file_find_remounted(fx->sp, "nginx", "/var/log/nginx/access.log",
	                                           2050, 99, &got, err, sizeof(err)),
	                 0);
	assert_int_equal(spool_file_find_remounted(fx->sp, "nginx", "/var/log/elsewhere/access.log",
	                                           2050, 13, &got, err, sizeof(err)),
	                 0);
	assert_int_equal(spool_file_find_remounted(fx->sp, "apache", "/var/log/nginx/access.log",
	                                           2050, 13, &got, err, sizeof(err)),
	                 0);
	assert_int_equal(spool_file_find_remounted(fx->sp, "nginx", "/var/log/other/x.log", 2050,
	                                           15, &got, err, sizeof(err)),
	                 0);
}

/* spool_file_find_other: the record of another source (configured or not: the spool does not
 * know) that read the most of a file, whatever its state; never the asking source's, nor one that
 * read nothing. */
static void test_file_find_other(void **state)
{
	struct fixture *fx = *state;
	struct spool_file a, b, c, d, got;
	char err[512] = "";

	file_init(&a, "link", "/var/log/current.log", 2049, 21);
	a.offset = 400;
	assert_int_equal(spool_file_add(fx->sp, &a, err, sizeof(err)), 0);
	file_init(&b, "old", "/var/log/app/access.log", 2049, 21);
	b.offset = 900;
	b.state = SPOOL_FILE_GONE;
	assert_int_equal(spool_file_add(fx->sp, &b, err, sizeof(err)), 0);
	file_init(&c, "empty", "/var/log/app/access.log", 2049, 21); /* read nothing */
	assert_int_equal(spool_file_add(fx->sp, &c, err, sizeof(err)), 0);
	file_init(&d, "nginx", "/var/log/app/access.log", 2049, 21);
	d.offset = 5000;
	assert_int_equal(spool_file_add(fx->sp, &d, err, sizeof(err)), 0);

	/* For nginx: old's (gone, but the furthest of the others), not its own. */
	assert_int_equal(spool_file_find_other(fx->sp, "nginx", 2049, 21, &got, err, sizeof(err)),
	                 1);
	assert_int_equal(got.id, b.id);
	assert_string_equal(got.source, "old");
	assert_true(got.offset == 900 && got.state == SPOOL_FILE_GONE);
	/* For a source none of them is: nginx's, which read the most. */
	assert_int_equal(spool_file_find_other(fx->sp, "all", 2049, 21, &got, err, sizeof(err)), 1);
	assert_int_equal(got.id, d.id);
	/* Another inode, another device: none. */
	assert_int_equal(spool_file_find_other(fx->sp, "nginx", 2049, 22, &got, err, sizeof(err)),
	                 0);
	assert_int_equal(spool_file_find_other(fx->sp, "nginx", 2050, 21, &got, err, sizeof(err)),
	                 0);
	assert_int_equal(spool_file_find_other(NULL, "nginx", 2049, 21, &got, err, sizeof(err)),
	                 -1);
}

static void test_read_back_bounds(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "src", 1), got;
	struct event ev, out[2];
	char sql[1024], err[512] = "";
	size_t n = 0;

	event_init(&ev, f->id, 0, "r1");
	f->offset = 100;
	assert_int_equal(fixture_commit(fx->sp, f, &ev, 1, err, sizeof(err)), 0);

	/* A row of outcomes whose customer is 126 ASCII bytes then "é" then more (longer than a
	 * customer's 255 bytes), and a long error: cut at a character boundary. */
	snprintf(sql, sizeof(sql),
	         "INSERT INTO outcomes(id, state, attempts, key_generation, last_error, customer,"
	         " queue_seq, updated) VALUES (1, 0, 1, 0, printf('%%.2000c', 'e'),"
	         " printf('%%.254c', 'x') || char(233) || 'tail', 1, 1);"
	         "UPDATE files SET fp_hash = x'0102', check_len = 10, check_hash = NULL,"
	         " state = 'a-state-longer-than-sixteen', path = printf('%%.5000c', 'p');");
	raw_exec(fx->db, sql);

	assert_int_equal(spool_pending(fx->sp, 0, out, 2, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(strlen(out[0].customer), 254);
	assert_int_equal(strspn(out[0].customer, "x"), 254);
	assert_int_equal(strlen(out[0].last_error), EVENT_ERROR_MAX - 1);

	/* A state whose text is none of logmeter's is refused, naming it, as an event's is. */
	err[0] = '\0';
	assert_int_equal(spool_file_find(fx->sp, "src", 2049, 1, &got, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "invalid state \"a-state-longer-than-sixteen\""));
	raw_exec(fx->db, "UPDATE files SET state = 'drained'");
	assert_int_equal(spool_file_find(fx->sp, "src", 2049, 1, &got, err, sizeof(err)), 1);
	assert_int_equal(got.state, SPOOL_FILE_DRAINED);
	assert_int_equal(got.fp_len, 0);
	assert_int_equal(got.check_len, 0);
	static const unsigned char zero[SPOOL_HASH_LEN];
	assert_memory_equal(got.fp_hash, zero, SPOOL_HASH_LEN);
	assert_int_equal(strlen(got.path), sizeof(got.path) - 1);

	/* A batch whose blob does not decode (cut, or another format) is reported as damage. */
	raw_exec(fx->db, "UPDATE batches SET events = substr(events, 1, length(events) - 2)");
	spool_free(fx->sp); /* no cached copy of the batch */
	fx->sp = NULL;
	err[0] = '\0';
	assert_int_equal(spool_pending(fixture_spool(fx), 0, out, 2, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "do not decode"));
	assert_non_null(strstr(err, "spool recover"));
	raw_exec(fx->db, "UPDATE batches SET events = x'07'");
	spool_free(fx->sp);
	fx->sp = NULL;
	assert_int_equal(spool_pending(fixture_spool(fx), 0, out, 2, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "do not decode"));
	free(f);
}

/* ---- commit ---- */

/* What a batch keeps of each event comes back as it went in: several rules on one line, a
 * customer equal to its key, another, an unmapped one (a dead letter with its reason), values
 * and timestamps that go up and down; and an event takes a few dozen bytes. */
static void test_batch_round_trip(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "web", 3);
	struct config_rule r1 = {.name = "bytes",
	                         .event_name = "bandwidth_bytes",
	                         .payload_customer_key = "stripe_customer_id",
	                         .payload_value_key = "value"};
	struct config_rule r2 = {.name = "hits",
	                         .event_name = "requests",
	                         .payload_customer_key = "customer",
	                         .payload_value_key = "count"};
	struct spool_new_event in[5] = {
	    {.line_offset = 0,
	     .rule = &r1,
	     .customer_key = "10.0.0.1",
	     .customer = "cus_NffrFeUf",
	     .value = "5120",
	     .timestamp = 1795953600},
	    {.line_offset = 0,
	     .rule = &r2,
	     .customer_key = "10.0.0.1",
	     .customer = "10.0.0.1",
	     .value = "1",
	     .timestamp = 1795953600},
	    {.line_offset = 213,
	     .rule = &r1,
	     .customer_key = "caf\xc3\xa9",
	     .customer = "",
	     .value = "-1.5",
	     .timestamp = 1795953599,
	     .dead = "customer key not in customer map"},
	    {.line_offset = 100000,
	     .rule = &r2,
	     .customer_key = "",
	     .customer = "cus_B",
	     .value = "0",
	     .timestamp = 0},
	    {.line_offset = (int64_t)1 << 40,
	     .rule = &r1,
	     .customer_key = "k",
	     .customer = "k",
	     .value = "123456789012345",
	     .timestamp = INT64_MAX / 2},
	};
	struct spool_batch *b = spool_batch_new("host-1", NULL, 0);
	struct event ev[5];
	char id[EVENT_IDENTIFIER_MAX], err[512] = "", big[EVENT_CUSTOMER_MAX + 1];
	int64_t added = -1;

	assert_non_null(b);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(spool_batch_add(b, &in[i], err, sizeof(err)), 0);
	assert_int_equal(spool_batch_count(b), 5);
	/* A field too long for an event is refused (the line is invalid), nothing appended. */
	memset(big, 'c', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	{
		struct spool_new_event e = in[4];

		e.line_offset = (int64_t)1 << 41;
		e.customer = big;
		assert_int_equal(spool_batch_add(b, &e, err, sizeof(err)), 1);
		/* An event before the last one is out of order. */
		e = in[0];
		assert_int_equal(spool_batch_add(b, &e, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "after one at"));
	}
	assert_int_equal(spool_batch_count(b), 5);
	f->offset = ((int64_t)1 << 40) + 10;
	assert_int_equal(spool_commit(fx->sp, f, b, &added, err, sizeof(err)), 0);
	assert_int_equal(added, 5);
	assert_int_equal(spool_batch_count(b), 0); /* emptied by the commit */
	spool_batch_free(b);
	spool_batch_free(NULL);

	for (int64_t i = 0; i < 5; i++)
		ev[i] = event_of(fx->sp, i + 1);
	for (size_t i = 0; i < 5; i++) {
		const struct config_rule *r = in[i].rule;

		assert_int_equal(ev[i].id, (int64_t)i + 1);
		assert_int_equal(ev[i].queue_seq, (int64_t)i + 1);
		assert_int_equal(ev[i].file_id, f->id);
		assert_int_equal(ev[i].line_offset, in[i].line_offset);
		assert_string_equal(ev[i].rule, r->name);
		assert_string_equal(ev[i].event_name, r->event_name);
		assert_string_equal(ev[i].payload_customer_key, r->payload_customer_key);
		assert_string_equal(ev[i].payload_value_key, r->payload_value_key);
		assert_string_equal(ev[i].customer_key, in[i].customer_key);
		assert_string_equal(ev[i].customer, in[i].customer);
		assert_string_equal(ev[i].value, in[i].value);
		assert_int_equal(ev[i].timestamp, in[i].timestamp);
		assert_int_equal(ev[i].state, in[i].dead != NULL ? EVENT_DEAD : EVENT_PENDING);
		assert_string_equal(ev[i].last_error, in[i].dead != NULL ? in[i].dead : "");
		assert_int_equal(ev[i].attempts, 0);
		/* The identifier is made from where the line is (test_event checks the layout). */
		assert_int_equal(
		    event_identifier(id, "host-1", "web", f->uid, in[i].line_offset, r->name), 0);
		assert_string_equal(ev[i].identifier, id);
	}
	/* One row for the commit, one per rule, one of outcomes for the dead letter only. */
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches"), 1);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM rules"), 2);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes"), 1);
	assert_int_equal(raw_int(fx->db, "SELECT id FROM outcomes WHERE state = 2"), 3);
	assert_int_equal(raw_int(fx->db, "SELECT first_offset FROM batches"), 0);
	assert_int_equal(raw_int(fx->db, "SELECT end_offset FROM batches"), f->offset);
	assert_int_equal(raw_int(fx->db, "SELECT next_id FROM queue"), 6);

	/* An event of the reference workload (an nginx line, a customer id of 15 characters, a
	 * byte count, the read time) takes about 25 bytes of the blob. */
	b = spool_batch_new("host-1", err, sizeof(err));
	for (int i = 0; i < 1000; i++) {
		char ck[32], val[16];
		struct spool_new_event e = {.line_offset = 208L * i,
		                            .rule = &r1,
		                            .customer_key = ck,
		                            .customer = ck,
		                            .value = val,
		                            .timestamp = 1787306400};

		snprintf(ck, sizeof(ck), "ck_%012d", i * 7919 % 5000);
		snprintf(val, sizeof(val), "%d", 100 + i * 37 % 5000);
		assert_int_equal(spool_batch_add(b, &e, err, sizeof(err)), 0);
	}
	assert_true(spool_batch_bytes(b) <= 1000 * 28);
	spool_batch_free(b);
	free(f);
}

static void test_commit_and_dedupe(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 42), got;
	struct event evs[4], listed[8], *lp = listed;
	struct spool_counts c;
	char err[512] = "";
	int64_t t0 = (int64_t)time(NULL), added = -1;

	event_init(&evs[0], f->id, 0, "bytes");
	event_init(&evs[1], f->id, 0, "requests"); /* a second rule on the same line */
	event_init(&evs[2], f->id, 120, "bytes");
	f->offset = 250;
	f->size = 250;
	f->counters.lines = 3;
	f->counters.matched = 2;
	f->counters.unmatched = 1;
	f->counters.events = 3;
	assert_int_equal(fixture_commit(fx->sp, f, evs, 3, err, sizeof(err)), 0);
	assert_true(evs[0].id > 0);
	assert_true(evs[1].id > evs[0].id);
	assert_true(evs[2].id > evs[1].id);
	assert_true(evs[0].created >= t0);
	/* Without replays, the queue is in id order: the position is the id. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(evs[i].queue_seq, evs[i].id);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches WHERE queue_seq = id"), 1);

	assert_int_equal(spool_file_find(fx->sp, "nginx", 2049, 42, &got, err, sizeof(err)), 1);
	assert_int_equal(got.offset, 250);
	assert_int_equal(got.size, 250);
	assert_int_equal(got.counters.lines, 3);
	assert_int_equal(got.counters.matched, 2);
	assert_int_equal(got.counters.unmatched, 1);
	assert_int_equal(got.counters.events, 3);

	c = counts(fx->sp);
	assert_int_equal(c.pending, 3);
	assert_int_equal(c.delivered, 0);
	assert_int_equal(c.dead, 0);

	/* Every field comes back as committed. */
	assert_int_equal(
	    spool_events_foreach(fx->sp, EVENT_PENDING, collect_event, &lp, err, sizeof(err)), 0);
	assert_int_equal(lp - listed, 3);
	assert_int_equal(listed[2].id, evs[2].id);
	assert_int_equal(listed[2].file_id, f->id);
	assert_int_equal(listed[2].line_offset, 120);
	assert_string_equal(listed[2].rule, "bytes");
	assert_string_equal(listed[2].identifier, evs[2].identifier);
	assert_string_equal(listed[2].event_name, "api_requests");
	assert_string_equal(listed[2].payload_customer_key, "stripe_customer_id");
	assert_string_equal(listed[2].payload_value_key, "value");
	assert_string_equal(listed[2].customer_key, "10.0.0.120");
	assert_string_equal(listed[2].customer, "cus_120");
	assert_string_equal(listed[2].value, "1200");
	assert_int_equal(listed[2].timestamp, 1700000120);
	assert_int_equal(listed[2].state, EVENT_PENDING);
	assert_int_equal(listed[2].attempts, 0);
	assert_string_equal(listed[2].last_error, "");
	assert_int_equal(listed[2].created, evs[2].created);
	assert_int_equal(listed[2].delivered_at, 0);
	assert_string_not_equal(listed[0].identifier, listed[1].identifier);

	/* The same lines read again (say, after a crash before the checkpoint moved on) add
	 * nothing; a new line in the same batch is added. */
	event_init(&evs[0], f->id, 0, "bytes");
	event_init(&evs[1], f->id, 0, "requests");
	event_init(&evs[2], f->id, 120, "bytes");
	event_init(&evs[3], f->id, 250, "bytes");
	f->offset = 300;
	assert_int_equal(fixture_commit(fx->sp, f, evs, 4, err, sizeof(err)), 0);
	assert_int_equal(evs[0].id, 0);
	assert_int_equal(evs[1].id, 0);
	assert_int_equal(evs[2].id, 0);
	assert_int_equal(evs[0].queue_seq, 0);
	assert_true(evs[3].id > listed[2].id);
	assert_int_equal(evs[3].queue_seq, evs[3].id);
	assert_int_equal(raw_int(fx->db, "SELECT sum(n) FROM batches"), 4);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches"), 2);
	assert_int_equal(raw_int(fx->db, "SELECT min(first_offset) FROM batches WHERE id > 1"),
	                 250);
	assert_int_equal(raw_int(fx->db, "SELECT \"offset\" FROM files WHERE ino = 42"), 300);
	assert_int_equal(counts(fx->sp).pending, 4);
	/* All of it read again: nothing stored, the checkpoint still written. */
	event_init(&evs[0], f->id, 120, "bytes");
	f->offset = 305;
	{
		struct spool_batch *b = spool_batch_new(FIXTURE_INSTANCE, err, sizeof(err));
		struct config_rule r = {.name = "bytes",
		                        .event_name = "api_requests",
		                        .payload_customer_key = "stripe_customer_id",
		                        .payload_value_key = "value"};
		struct spool_new_event e = {.line_offset = 120,
		                            .rule = &r,
		                            .customer_key = "k",
		                            .customer = "k",
		                            .value = "1",
		                            .timestamp = 1};

		assert_int_equal(spool_batch_add(b, &e, err, sizeof(err)), 0);
		assert_int_equal(spool_commit(fx->sp, f, b, &added, err, sizeof(err)), 0);
		assert_int_equal(added, 0);
		spool_batch_free(b);
	}
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches"), 2);
	assert_int_equal(raw_int(fx->db, "SELECT \"offset\" FROM files WHERE ino = 42"), 305);

	/* A batch of no events still moves the checkpoint. */
	f->offset = 310;
	assert_int_equal(spool_commit(fx->sp, f, NULL, &added, err, sizeof(err)), 0);
	assert_int_equal(added, 0);
	assert_int_equal(raw_int(fx->db, "SELECT \"offset\" FROM files WHERE ino = 42"), 310);
	free(f);
}

/* Aggregation windows: lines go into the window of their timestamp, a line read again adds
 * nothing, a line whose window has closed goes into the next open one (late), and closing
 * makes one pending meter event per window, stamped with its start, with the exact total. */
#define DAY_S 86400

static void test_windows(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 77);
	struct event evs[4], listed[8], *lp = listed;
	char err[512] = "", id[EVENT_IDENTIFIER_MAX], spool_id[64];
	int64_t now, start, closed = 0, next = 0;
	size_t n = 0;

	/* Day-long windows, so that where a late line goes (the window open by the clock at its
	 * commit) is this day's window whenever the test runs, except within a minute of
	 * midnight UTC: then wait until past it. */
	now = (int64_t)time(NULL);
	if (now % DAY_S < 60 || now % DAY_S > DAY_S - 60)
		sleep((unsigned)(120 - (now + 60) % DAY_S));
	now = (int64_t)time(NULL);
	start = now - now % DAY_S;

	for (int i = 0; i < 3; i++) {
		event_init(&evs[i], f->id, 100 * i, "bytes");
		snprintf(evs[i].customer, sizeof(evs[i].customer), "cus_W");
		evs[i].window_s = DAY_S;
		evs[i].window_grace_s = 10;
		evs[i].timestamp = start + i;
	}
	snprintf(evs[1].value, sizeof(evs[1].value), "0.25");
	f->offset = 300;
	assert_int_equal(fixture_commit(fx->sp, f, evs, 3, err, sizeof(err)), 0);
	assert_int_equal(evs[0].id, 0); /* in a window, not an event */
	/* Read again (a reset checkpoint): nothing more. */
	assert_int_equal(fixture_commit(fx->sp, f, evs, 3, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM windows"), 1);
	assert_int_equal(raw_int(fx->db, "SELECT lines FROM windows"), 3);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches"), 0);
	assert_int_equal(spool_windows_next_close(fx->sp, &next, err, sizeof(err)), 0);
	assert_int_equal(next, start + DAY_S + 10);
	/* Not due yet. */
	assert_int_equal(spool_windows_close(fx->sp, start + DAY_S + 9, &closed, err, sizeof(err)),
	                 0);
	assert_int_equal(closed, 0);
	/* A line of a window that ended two hours ago, never sent: into that window, late. */
	event_init(&evs[3], f->id, 300, "bytes");
	snprintf(evs[3].customer, sizeof(evs[3].customer), "cus_W");
	evs[3].window_s = DAY_S;
	evs[3].window_grace_s = 10;
	evs[3].timestamp = start - 7200;
	f->offset = 400;
	assert_int_equal(fixture_commit(fx->sp, f, &evs[3], 1, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT late FROM windows WHERE id = 2"), 1);
	assert_int_equal(raw_int(fx->db, "SELECT start FROM windows WHERE id = 2"), start - DAY_S);
	assert_int_equal(raw_int(fx->db, "SELECT lines FROM windows WHERE id = 1"), 3);
	/* Yesterday's closes at once, with its line's value. */
	assert_int_equal(spool_windows_close(fx->sp, now, &closed, err, sizeof(err)), 0);
	assert_int_equal(closed, 1);
	assert_int_equal(spool_pending(fx->sp, 0, listed, 8, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(lp->value, "3000");
	assert_int_equal(lp->timestamp, start - DAY_S);
	/* Closed: one event with the exact total (0 + 0.25 + 2000 = 2000.25). */
	assert_int_equal(spool_windows_close(fx->sp, start + DAY_S + 10, &closed, err, sizeof(err)),
	                 0);
	assert_int_equal(closed, 1);
	assert_int_equal(spool_pending(fx->sp, 0, listed, 8, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	lp = &listed[1];
	assert_string_equal(lp->value, "2000.25");
	assert_int_equal(lp->timestamp, start);
	assert_int_equal(lp->line_offset, -1); /* a batch of one at the window's own place */
	raw_text(fx->db, "SELECT value FROM meta WHERE key = 'spool_id'", spool_id,
	         sizeof(spool_id));
	assert_int_equal(event_window_identifier(id, "", spool_id, "bytes", "cus_W", start), 0);
	assert_string_equal(lp->identifier, id);
	assert_int_equal(spool_windows_next_close(fx->sp, &next, err, sizeof(err)), 0);
	assert_int_equal(next, 0);
	/* A line for the closed window now goes into the next one. */
	event_init(&evs[0], f->id, 400, "bytes");
	snprintf(evs[0].customer, sizeof(evs[0].customer), "cus_W");
	evs[0].window_s = DAY_S;
	evs[0].window_grace_s = 10;
	evs[0].timestamp = start;
	assert_int_equal(fixture_commit(fx->sp, f, evs, 1, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM windows WHERE state = 0"), 1);
	assert_true(raw_int(fx->db, "SELECT start FROM windows WHERE state = 0") > start);
	free(f);
}

/* The pending events as "value@line_offset" joined by commas, in queue order. */
static void pending_text(struct fixture *fx, char *out, size_t outlen)
{
	struct event listed[8];
	char err[512] = "";
	size_t n = 0, len = 0;

	assert_int_equal(spool_pending(fx->sp, 0, listed, 8, &n, err, sizeof(err)), 0);
	out[0] = '\0';
	for (size_t i = 0; i < n && len < outlen; i++)
		len += (size_t)snprintf(out + len, outlen - len, "%s%s@%" PRId64, i > 0 ? "," : "",
		                        listed[i].value, listed[i].line_offset);
}

/* A line that would give its window's total more than Stripe's 15 significant digits goes on
 * its own and the window keeps its total; read again, each line goes where it went first. */
static void test_window_digits(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "app", 78);
	struct event evs[3];
	static const char *values[3] = {"99999999999.9999", "0.00001", "3"};
	char err[512] = "", text[64];
	int64_t now = (int64_t)time(NULL), windows = 0, lines = 0, last = 0;

	for (int i = 0; i < 3; i++) {
		event_init(&evs[i], f->id, 100 * i, "usage");
		snprintf(evs[i].customer, sizeof(evs[i].customer), "cus_B");
		snprintf(evs[i].value, sizeof(evs[i].value), "%s", values[i]);
		evs[i].window_s = DAY_S;
		evs[i].window_grace_s = 10;
		evs[i].timestamp = now;
	}
	f->offset = 300;
	assert_int_equal(fixture_commit(fx->sp, f, evs, 3, err, sizeof(err)), 0);
	raw_text(fx->db, "SELECT total FROM windows", text, sizeof(text));
	assert_string_equal(text, "99999999999.9999");
	assert_int_equal(raw_int(fx->db, "SELECT lines FROM windows"), 1);
	/* 99999999999.99991 and 100000000002.9999 have 16 digits: both lines on their own. */
	pending_text(fx, text, sizeof(text));
	assert_string_equal(text, "0.00001@100,3@200");
	/* Read again: nothing moves, nothing is added. */
	assert_int_equal(fixture_commit(fx->sp, f, evs, 3, err, sizeof(err)), 0);
	pending_text(fx, text, sizeof(text));
	assert_string_equal(text, "0.00001@100,3@200");
	assert_int_equal(raw_int(fx->db, "SELECT lines FROM windows"), 1);
	assert_int_equal(
	    spool_windows_open_count(fx->sp, &windows, &lines, &last, err, sizeof(err)), 0);
	assert_int_equal(windows, 1);
	assert_int_equal(lines, 1);
	assert_int_equal(last, now - now % DAY_S + DAY_S + 10);
	free(f);
}

/* A window whose meter event is pruned keeps its row (not its lines) while Stripe remembers
 * identifiers: a line for it goes into a later window, never into a new row of the same start
 * (the same identifier). */
static void test_window_memory(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "app", 79);
	struct event ev;
	struct spool_mark m;
	struct spool_pruned n;
	char err[512] = "";
	int64_t now = (int64_t)time(NULL), start = now - now % DAY_S, closed = 0;

	event_init(&ev, f->id, 0, "usage");
	snprintf(ev.customer, sizeof(ev.customer), "cus_M");
	ev.window_s = DAY_S;
	ev.window_grace_s = 10;
	ev.timestamp = now;
	f->offset = 100;
	assert_int_equal(fixture_commit(fx->sp, f, &ev, 1, err, sizeof(err)), 0);
	assert_int_equal(spool_windows_close(fx->sp, start + DAY_S + 10, &closed, err, sizeof(err)),
	                 0);
	assert_int_equal(closed, 1);
	m = (struct spool_mark){.id = 1, .state = EVENT_DELIVERED, .attempts = 1, .when = 100};
	assert_int_equal(spool_mark(fx->sp, &m, 1, err, sizeof(err)), 0);
	assert_int_equal(spool_prune(fx->sp, &(struct spool_prune){.delivered_before = 200}, &n,
	                             err, sizeof(err)),
	                 0);
	assert_int_equal(n.expired, 1);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM windows WHERE state = 1"), 1);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM window_lines"), 0);
	/* Another line stamped in that window: into a later one. */
	event_init(&ev, f->id, 100, "usage");
	snprintf(ev.customer, sizeof(ev.customer), "cus_M");
	ev.window_s = DAY_S;
	ev.window_grace_s = 10;
	ev.timestamp = now;
	f->offset = 200;
	assert_int_equal(fixture_commit(fx->sp, f, &ev, 1, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM windows WHERE start = "
	                                 "(SELECT min(start) FROM windows)"),
	                 1);
	assert_true(raw_int(fx->db, "SELECT max(start) FROM windows WHERE state = 0") > start);

	free(f);
}

/* Whether a line was placed before (spool_window_commit, once per line of an aggregating rule)
 * looks at one batch, not at every batch before the line: the meter events of closed windows
 * are batches at negative places of their file, below every line, and a scan of them per line
 * made ingest superlinear while Stripe was unreachable. The count is of SQLite's steps, not of
 * time. */
#define PLACED_WINDOWS 300

static void test_window_placed_steps(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "app", 81);
	struct event ev;
	char err[512] = "";
	int64_t now = (int64_t)time(NULL), start = now - now % DAY_S, closed = 0;
	sqlite3_stmt *st = fx->sp->st[ST_WINDOW_OWN_EVENT];
	int steps;

	for (int i = 0; i <= PLACED_WINDOWS; i++) {
		event_init(&ev, f->id, 100 * i, "usage");
		snprintf(ev.customer, sizeof(ev.customer), "cus_%d", i);
		ev.window_s = DAY_S;
		ev.window_grace_s = 10;
		ev.timestamp = now;
		f->offset = 100 * (i + 1);
		if (i == PLACED_WINDOWS) {
			assert_int_equal(spool_windows_close(fx->sp, start + DAY_S + 10, &closed,
			                                     err, sizeof(err)),
			                 0);
			assert_int_equal(closed, PLACED_WINDOWS);
			sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 1);
		}
		assert_int_equal(fixture_commit(fx->sp, f, &ev, 1, err, sizeof(err)), 0);
	}
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches WHERE first_offset < 0"),
	                 PLACED_WINDOWS);
	steps = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 0);
	assert_true(steps > 0); /* it ran */
	assert_true(steps < PLACED_WINDOWS);
	free(f);
}

/* A window whose place among the events is taken (a recovered spool starts its window ids
 * again, and keeps the events) closes elsewhere instead of stopping every window. */
static void test_window_place(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "app", 80);
	struct event ev;
	char err[512] = "", text[64];
	int64_t now = (int64_t)time(NULL), start = now - now % DAY_S, closed = 0;

	for (int i = 0; i < 2; i++) {
		event_init(&ev, f->id, 100 * i, "usage");
		snprintf(ev.customer, sizeof(ev.customer), "cus_%c", 'P' + i);
		ev.window_s = DAY_S;
		ev.window_grace_s = 10;
		ev.timestamp = now;
		f->offset = 100 * (i + 1);
		assert_int_equal(fixture_commit(fx->sp, f, &ev, 1, err, sizeof(err)), 0);
		assert_int_equal(raw_int(fx->db, "SELECT max(id) FROM windows"), 1);
		assert_int_equal(
		    spool_windows_close(fx->sp, start + DAY_S + 10, &closed, err, sizeof(err)), 0);
		assert_int_equal(closed, 1);
		/* As `spool recover` does: the windows go, their events stay. */
		raw_exec_create(fx->db, "DELETE FROM window_lines; DELETE FROM windows;");
	}
	/* Schema 5: the meter events are batches of one, listed in queue order. */
	pending_text(fx, text, sizeof(text));
	assert_non_null(strstr(text, "@-1"));
	assert_non_null(strstr(text, "@-2"));
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches WHERE first_offset = -1"),
	                 1);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches WHERE first_offset = -2"),
	                 1);
	free(f);
}

/* spool_pending_to, read in loads as the sender reads (its cursor the last position it got),
 * gives the same events, identifiers byte for byte, as one spool_pending over the whole queue;
 * a batch pruned between two loads of it is not read from what the handle held of it. */
static void test_pending_to_loads(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 44);
	const size_t total = 1000, load = 37;
	struct event *ref = calloc(total, sizeof(*ref)), *got = calloc(load, sizeof(*got));
	struct event *ptr[37];
	size_t n = 0, seen = 0;
	int64_t cursor = 0;
	char err[512] = "";

	assert_non_null(ref);
	assert_non_null(got);
	commit_n(fx, f, 0, 500);
	commit_n(fx, f, 50000, 300);
	commit_n(fx, f, 80000, 200);
	assert_int_equal(spool_pending(fx->sp, 0, ref, total, &n, err, sizeof(err)), 0);
	assert_int_equal(n, total);
	for (size_t i = 0; i < load; i++)
		ptr[i] = &got[load - 1 - i]; /* anywhere the caller likes */
	for (;;) {
		assert_int_equal(spool_pending_to(fx->sp, cursor, ptr, load, &n, err, sizeof(err)),
		                 0);
		for (size_t i = 0; i < n; i++, seen++) {
			assert_true(seen < total);
			assert_int_equal(ptr[i]->id, ref[seen].id);
			assert_int_equal(ptr[i]->queue_seq, ref[seen].queue_seq);
			assert_string_equal(ptr[i]->identifier, ref[seen].identifier);
			assert_string_equal(ptr[i]->customer, ref[seen].customer);
			assert_string_equal(ptr[i]->value, ref[seen].value);
			assert_int_equal(ptr[i]->timestamp, ref[seen].timestamp);
			cursor = ptr[i]->queue_seq;
		}
		if (n < load)
			break;
	}
	assert_int_equal(seen, total);
	/* Half of the first batch read, then the batch is gone (its rows too): the rest of it
	 * must not come from the blob the handle read before. */
	assert_int_equal(spool_pending_to(fx->sp, 0, ptr, load, &n, err, sizeof(err)), 0);
	assert_int_equal(n, load);
	raw_exec(fx->db, "DELETE FROM batches WHERE id = (SELECT min(id) FROM batches)");
	assert_int_equal(
	    spool_pending_to(fx->sp, ptr[n - 1]->queue_seq, ptr, load, &n, err, sizeof(err)), 0);
	assert_int_equal(n, load);
	assert_int_equal(ptr[0]->id, ref[500].id);
	free(ref);
	free(got);
	free(f);
}

static void test_commit_atomic(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 43), got;
	struct event evs[4];
	char err[512] = "";

	commit_n(fx, f, 0, 2); /* offsets 0, 100; checkpoint 200 */
	f->counters.lines = 2;
	assert_int_equal(spool_file_update(fx->sp, f, err, sizeof(err)), 0);

	/* Installed behind the handle's back: its prepared statements must cope. The dead letter
	 * (a row of outcomes) fails after its batch was inserted. */
	raw_exec(fx->db, "CREATE TRIGGER boom BEFORE INSERT ON outcomes WHEN NEW.id = 5 "
	                 "BEGIN SELECT RAISE(ABORT, 'injected'); END;");

	event_init(&evs[0], f->id, 200, "r1");
	event_init(&evs[1], f->id, 300, "r1");
	event_init(&evs[2], f->id, 999, "r1");
	evs[2].state = EVENT_DEAD;
	snprintf(evs[2].last_error, sizeof(evs[2].last_error), "unmapped");
	event_init(&evs[3], f->id, 1100, "r1");
	f->offset = 1200;
	f->counters.lines = 6;
	assert_int_equal(fixture_commit(fx->sp, f, evs, 4, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "injected"));
	assert_non_null(strstr(err, "SQLITE_CONSTRAINT"));
	for (int i = 0; i < 4; i++)
		assert_int_equal(evs[i].id, 0);

	/* Neither the batch nor the checkpoint nor the queue's next id were committed. */
	assert_int_equal(raw_int(fx->db, "SELECT sum(n) FROM batches"), 2);
	assert_int_equal(raw_int(fx->db, "SELECT next_id FROM queue"), 3);
	assert_int_equal(spool_file_find(fx->sp, "nginx", 2049, 43, &got, err, sizeof(err)), 1);
	assert_int_equal(got.offset, 200);
	assert_int_equal(got.counters.lines, 2);
	assert_int_equal(counts(fx->sp).pending, 2);

	/* The handle is still usable: the batch goes in once the trigger is gone. */
	raw_exec(fx->db, "DROP TRIGGER boom");
	evs[2].state = EVENT_DEAD;
	assert_int_equal(fixture_commit(fx->sp, f, evs, 4, err, sizeof(err)), 0);
	for (int i = 0; i < 4; i++)
		assert_true(evs[i].id > 0);
	assert_int_equal(evs[0].id, 3);
	assert_int_equal(spool_file_find(fx->sp, "nginx", 2049, 43, &got, err, sizeof(err)), 1);
	assert_int_equal(got.offset, 1200);
	assert_int_equal(got.counters.lines, 6);
	assert_int_equal(counts(fx->sp).pending, 5);
	assert_int_equal(counts(fx->sp).dead, 1);
	free(f);
}

static void test_commit_bad_references(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 44), ghost;
	struct event evs[2];
	char err[512] = "";

	/* A file record that does not exist: the events are not kept either (foreign key). */
	ghost = *f;
	ghost.id = 778;
	event_init(&evs[0], f->id, 0, "r1");
	assert_int_equal(fixture_commit(fx->sp, &ghost, evs, 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "FOREIGN KEY"));
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches"), 0);
	/* Without events, the checkpoint of a record that does not exist is refused too. */
	assert_int_equal(spool_commit(fx->sp, &ghost, NULL, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "778"));
	assert_int_equal(raw_int(fx->db, "SELECT \"offset\" FROM files WHERE ino = 44"), 0);
	assert_int_equal(spool_commit(NULL, f, NULL, NULL, err, sizeof(err)), -1);
	free(f);
}

/* A batch read again in part (lines before the end of the file's last batch): only the lines
 * after it are stored, dead letters included, with the ids that follow. */
static void test_commit_overlap(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 45);
	struct event evs[4];
	char err[512] = "";

	commit_n(fx, f, 0, 3); /* offsets 0, 100, 200; the batch ends at 300 */
	event_init(&evs[0], f->id, 200, "r1");
	event_init(&evs[1], f->id, 300, "r1");
	evs[1].state = EVENT_DEAD;
	snprintf(evs[1].last_error, sizeof(evs[1].last_error), "unmapped");
	event_init(&evs[2], f->id, 400, "r1");
	event_init(&evs[3], f->id, 400, "r2");
	f->offset = 500;
	assert_int_equal(fixture_commit(fx->sp, f, evs, 4, err, sizeof(err)), 0);
	assert_int_equal(evs[0].id, 0);
	assert_int_equal(evs[1].id, 4);
	assert_int_equal(evs[2].id, 5);
	assert_int_equal(evs[3].id, 6);
	assert_int_equal(event_of(fx->sp, 4).state, EVENT_DEAD);
	assert_string_equal(event_of(fx->sp, 4).last_error, "unmapped");
	assert_int_equal(event_of(fx->sp, 6).line_offset, 400);
	assert_string_equal(event_of(fx->sp, 6).rule, "r2");
	assert_int_equal(raw_int(fx->db, "SELECT first_offset FROM batches WHERE id = 4"), 300);
	assert_int_equal(counts(fx->sp).pending, 5);
	assert_int_equal(counts(fx->sp).dead, 1);
	free(f);
}

/* ---- the sender's side ---- */

static void test_pending_paging(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 45);
	struct event out[3];
	struct spool_mark m;
	char err[512] = "";
	size_t n = 99;

	assert_int_equal(spool_pending(fx->sp, 0, out, 3, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);

	commit_n(fx, f, 0, 5); /* ids 1..5, offsets 0..400 */
	assert_int_equal(spool_pending(fx->sp, 0, out, 2, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].id, 1);
	assert_int_equal(out[1].id, 2);
	assert_int_equal(out[1].line_offset, 100);
	assert_string_equal(out[1].customer, "cus_100");
	assert_int_equal(spool_pending(fx->sp, 2, out, 2, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].id, 3);
	assert_int_equal(out[1].id, 4);
	assert_int_equal(spool_pending(fx->sp, 4, out, 2, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].id, 5);
	assert_int_equal(spool_pending(fx->sp, 5, out, 2, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	assert_int_equal(spool_pending(fx->sp, 0, out, 0, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);

	/* Events no longer pending are skipped. */
	m = (struct spool_mark){.id = 2, .state = EVENT_DELIVERED, .attempts = 1, .when = 10};
	assert_int_equal(spool_mark(fx->sp, &m, 1, err, sizeof(err)), 0);
	m = (struct spool_mark){
	    .id = 3, .state = EVENT_DEAD, .attempts = 1, .error = "x", .when = 10};
	assert_int_equal(spool_mark(fx->sp, &m, 1, err, sizeof(err)), 0);
	assert_int_equal(spool_pending(fx->sp, 0, out, 3, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 3);
	assert_int_equal(out[0].id, 1);
	assert_int_equal(out[1].id, 4);
	assert_int_equal(out[2].id, 5);
	free(f);
}

/* A row of outcomes, raw: state, attempts, delivered_at (-1 if NULL), updated, last_error. */
struct row {
	int64_t state, attempts, delivered_at, updated;
	char last_error[64];
};

static struct row raw_row(const char *db, int64_t id)
{
	char sql[256];
	struct row r;

	snprintf(sql, sizeof(sql), "SELECT state FROM outcomes WHERE id = %lld", (long long)id);
	r.state = raw_int(db, sql);
	snprintf(sql, sizeof(sql), "SELECT attempts FROM outcomes WHERE id = %lld", (long long)id);
	r.attempts = raw_int(db, sql);
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(delivered_at, -1) FROM outcomes WHERE id = %lld", (long long)id);
	r.delivered_at = raw_int(db, sql);
	snprintf(sql, sizeof(sql), "SELECT updated FROM outcomes WHERE id = %lld", (long long)id);
	r.updated = raw_int(db, sql);
	snprintf(sql, sizeof(sql), "SELECT last_error FROM outcomes WHERE id = %lld",
	         (long long)id);
	raw_text(db, sql, r.last_error, sizeof(r.last_error));
	return r;
}

static void test_mark(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 46);
	struct spool_mark m[3];
	struct spool_counts c;
	struct event ev;
	struct row r;
	char last[EVENT_ERROR_MAX], err[512] = "";

	commit_n(fx, f, 0, 4); /* ids 1..4 */
	assert_int_equal(spool_last_error(fx->sp, last, sizeof(last), err, sizeof(err)), 0);
	assert_string_equal(last, "");

	m[0] = (struct spool_mark){.id = 1, .state = EVENT_DELIVERED, .attempts = 1, .when = 1000};
	m[1] = (struct spool_mark){.id = 2,
	                           .state = EVENT_DEAD,
	                           .attempts = 1,
	                           .error = "No such customer: 'cus_100'",
	                           .when = 1001};
	m[2] = (struct spool_mark){
	    .id = 3, .state = EVENT_PENDING, .attempts = 1, .error = "HTTP 503", .when = 1002};
	assert_int_equal(spool_mark(fx->sp, m, 3, err, sizeof(err)), 0);

	/* 1, delivered at its first attempt, has no row: the watermark passed it. */
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes WHERE id = 1"), 0);
	assert_int_equal(raw_int(fx->db, "SELECT delivered_through FROM queue"), 3);
	ev = event_of(fx->sp, 1);
	assert_int_equal(ev.state, EVENT_DELIVERED);
	assert_int_equal(ev.attempts, 1);
	assert_int_equal(ev.delivered_at, 1000);
	assert_string_equal(ev.last_error, "");
	r = raw_row(fx->db, 2);
	assert_int_equal(r.state, EVENT_DEAD);
	assert_int_equal(r.delivered_at, -1);
	assert_string_equal(r.last_error, "No such customer: 'cus_100'");
	r = raw_row(fx->db, 3);
	assert_int_equal(r.state, EVENT_PENDING);
	assert_int_equal(r.attempts, 1);
	assert_int_equal(r.updated, 1002);
	assert_string_equal(r.last_error, "HTTP 503");
	ev = event_of(fx->sp, 3);
	assert_int_equal(ev.state, EVENT_PENDING);
	assert_string_equal(ev.last_error, "HTTP 503");

	c = counts(fx->sp);
	assert_int_equal(c.pending, 2);
	assert_int_equal(c.delivered, 1);
	assert_int_equal(c.dead, 1);

	/* The most recently updated error of a pending or dead event. */
	assert_int_equal(spool_last_error(fx->sp, last, sizeof(last), err, sizeof(err)), 0);
	assert_string_equal(last, "HTTP 503");

	/* A retry without error text keeps the previous one. */
	m[0] = (struct spool_mark){.id = 3, .state = EVENT_PENDING, .attempts = 2, .when = 1003};
	assert_int_equal(spool_mark(fx->sp, m, 1, err, sizeof(err)), 0);
	r = raw_row(fx->db, 3);
	assert_int_equal(r.attempts, 2);
	assert_int_equal(r.updated, 1003);
	assert_string_equal(r.last_error, "HTTP 503");

	/* Ties on the update time go to the greatest id; delivered events do not count. */
	m[0] = (struct spool_mark){
	    .id = 4, .state = EVENT_DEAD, .attempts = 1, .error = "four", .when = 2000};
	m[1] = (struct spool_mark){
	    .id = 2, .state = EVENT_DEAD, .attempts = 2, .error = "two", .when = 2000};
	m[2] = (struct spool_mark){.id = 1,
	                           .state = EVENT_DELIVERED,
	                           .attempts = 1,
	                           .error = "delivered after all",
	                           .when = 3000};
	assert_int_equal(spool_mark(fx->sp, m, 3, err, sizeof(err)), 0);
	assert_int_equal(spool_last_error(fx->sp, last, sizeof(last), err, sizeof(err)), 0);
	assert_string_equal(last, "four");
	/* A short buffer gets a cut copy. */
	assert_int_equal(spool_last_error(fx->sp, last, 3, err, sizeof(err)), 0);
	assert_string_equal(last, "fo");
	/* A delivery with something to remember is a row of its own. */
	r = raw_row(fx->db, 1);
	assert_int_equal(r.state, EVENT_DELIVERED);
	assert_int_equal(r.delivered_at, 3000);

	/* A dead letter replayed and delivered. */
	m[0] = (struct spool_mark){.id = 2, .state = EVENT_DELIVERED, .attempts = 3, .when = 4000};
	assert_int_equal(spool_mark(fx->sp, m, 1, err, sizeof(err)), 0);
	r = raw_row(fx->db, 2);
	assert_int_equal(r.state, EVENT_DELIVERED);
	assert_int_equal(r.delivered_at, 4000);
	assert_int_equal(event_of(fx->sp, 2).delivered_at, 4000);
	c = counts(fx->sp);
	assert_int_equal(c.pending, 1);
	assert_int_equal(c.delivered, 2);
	assert_int_equal(c.dead, 1);

	/* An invalid state fails the whole batch before anything is applied. */
	m[0] = (struct spool_mark){.id = 3, .state = EVENT_DEAD, .attempts = 9, .when = 5000};
	m[1] =
	    (struct spool_mark){.id = 4, .state = (enum event_state)5, .attempts = 9, .when = 5000};
	err[0] = '\0';
	assert_int_equal(spool_mark(fx->sp, m, 2, err, sizeof(err)), -1);
	assert_true(err[0] != '\0');
	assert_int_equal(raw_row(fx->db, 3).attempts, 2);
	/* An id that does not exist has nothing to mark. */
	m[0] = (struct spool_mark){.id = 99, .state = EVENT_DEAD, .attempts = 1, .when = 1};
	assert_int_equal(spool_mark(fx->sp, m, 1, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes WHERE id = 99"), 0);
	free(f);
}

static void test_mark_atomic(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 47);
	struct spool_mark m[3];
	char err[512] = "";

	commit_n(fx, f, 0, 3);
	raw_exec(fx->db, "CREATE TRIGGER boom BEFORE UPDATE ON queue WHEN NEW.delivered_through = 3"
	                 " BEGIN SELECT RAISE(ABORT, 'no marks for 3'); END;");
	for (int i = 0; i < 3; i++)
		m[i] = (struct spool_mark){
		    .id = i + 1, .state = EVENT_DELIVERED, .attempts = 1, .when = 100};
	assert_int_equal(spool_mark(fx->sp, m, 3, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no marks for 3"));
	assert_int_equal(counts(fx->sp).pending, 3);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes"), 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM deliveries"), 0);
	assert_int_equal(spool_mark(fx->sp, m, 2, err, sizeof(err)), 0);
	assert_int_equal(counts(fx->sp).delivered, 2);
	free(f);
}

/* Delivery kept as a watermark plus exceptions (docs/spool.md): deliveries out of order are
 * rows until the events ahead of them are decided, then folded into the watermark; an event
 * that waits (a retry) does not hold it back; the delivery times are kept by ranges; marks of
 * many first deliveries write a few bytes, not a row each. */
static void test_watermark(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 48);
	struct spool_mark m[1000];
	struct spool_counts c;
	char err[512] = "";
	int64_t pages0, pages1;

	commit_n(fx, f, 0, 6); /* ids 1..6 */
	/* 3 and 5 delivered first: rows, the watermark stays at 0. */
	m[0] = (struct spool_mark){.id = 3, .state = EVENT_DELIVERED, .attempts = 1, .when = 103};
	m[1] = (struct spool_mark){.id = 5, .state = EVENT_DELIVERED, .attempts = 1, .when = 105};
	assert_int_equal(spool_mark(fx->sp, m, 2, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT delivered_through FROM queue"), 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes WHERE state = 1"), 2);
	c = counts(fx->sp);
	assert_int_equal(c.delivered, 2);
	assert_int_equal(c.pending, 4);
	/* 1 delivered, 2 retried (a row, pending): the watermark passes 1, 2 and 3. */
	m[0] = (struct spool_mark){.id = 1, .state = EVENT_DELIVERED, .attempts = 1, .when = 101};
	m[1] = (struct spool_mark){
	    .id = 2, .state = EVENT_PENDING, .attempts = 1, .error = "HTTP 500", .when = 102};
	assert_int_equal(spool_mark(fx->sp, m, 2, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT delivered_through FROM queue"), 3);
	/* 3's row is folded in: its time makes the range's first. */
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes"), 2); /* 2 and 5 */
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM deliveries WHERE through = 3 AND"
	                                 " first_at = 101 AND last_at = 103"),
	                 1);
	assert_int_equal(event_of(fx->sp, 3).delivered_at, 101);
	assert_int_equal(event_of(fx->sp, 1).delivered_at, 101);
	assert_int_equal(event_of(fx->sp, 2).state, EVENT_PENDING);
	c = counts(fx->sp);
	assert_int_equal(c.delivered, 3);
	assert_int_equal(c.pending, 3);
	/* 4 delivered: the watermark reaches 5, the row of 5 folded into the same range (marks
	 * within a minute of its first share it). */
	m[0] = (struct spool_mark){.id = 4, .state = EVENT_DELIVERED, .attempts = 1, .when = 104};
	assert_int_equal(spool_mark(fx->sp, m, 1, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT delivered_through FROM queue"), 5);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM deliveries"), 1);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM deliveries WHERE through = 5 AND"
	                                 " first_at = 101 AND last_at = 105"),
	                 1);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes"), 1); /* 2 */
	/* 2 delivered at its second attempt: its row stays, with its history. */
	m[0] = (struct spool_mark){.id = 2, .state = EVENT_DELIVERED, .attempts = 2, .when = 106};
	assert_int_equal(spool_mark(fx->sp, m, 1, err, sizeof(err)), 0);
	assert_int_equal(raw_row(fx->db, 2).attempts, 2);
	assert_string_equal(event_of(fx->sp, 2).last_error, "HTTP 500");
	c = counts(fx->sp);
	assert_int_equal(c.delivered, 5);
	assert_int_equal(c.pending, 1);
	/* A mark long after the last row of deliveries starts another. */
	m[0] = (struct spool_mark){.id = 6, .state = EVENT_DELIVERED, .attempts = 1, .when = 5000};
	assert_int_equal(spool_mark(fx->sp, m, 1, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM deliveries"), 2);
	assert_int_equal(event_of(fx->sp, 6).delivered_at, 5000);
	assert_int_equal(event_of(fx->sp, 5).delivered_at, 101);

	/* 1,000 first deliveries in one transaction: no row, a page or two. */
	commit_n(fx, f, 1000, 1000); /* ids 7..1006 */
	pages0 = raw_int(fx->db, "PRAGMA page_count");
	for (int i = 0; i < 1000; i++)
		m[i] = (struct spool_mark){
		    .id = 7 + i, .state = EVENT_DELIVERED, .attempts = 1, .when = 5001};
	assert_int_equal(spool_mark(fx->sp, m, 1000, err, sizeof(err)), 0);
	pages1 = raw_int(fx->db, "PRAGMA page_count");
	assert_int_equal(pages1, pages0);
	assert_int_equal(raw_int(fx->db, "SELECT delivered_through FROM queue"), 1006);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes"), 1); /* 2 */
	assert_int_equal(counts(fx->sp).delivered, 1006);
	assert_int_equal(counts(fx->sp).pending, 0);
	free(f);
}

static void test_mark_generation_unsure(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 47);
	struct spool_mark m[2];
	struct event got[2], pend[4];
	struct decider d = {.verdict = 1};
	struct spool_replay rp;
	struct spool_counts c;
	size_t n = 0;
	int64_t moved = 0;
	char err[512] = "";

	commit_n(fx, f, 0, 3); /* ids 1..3 */
	m[0] = (struct spool_mark){.id = 1,
	                           .state = EVENT_PENDING,
	                           .attempts = 1,
	                           .key_generation = 2,
	                           .first_unknown = 1700000100,
	                           .error = "HTTP 500",
	                           .when = 1001};
	m[1] = (struct spool_mark){.id = 2,
	                           .state = EVENT_UNSURE,
	                           .attempts = 7,
	                           .key_generation = 5,
	                           .first_unknown = 1700000000,
	                           .error = "unsure: ...",
	                           .when = 1002};
	assert_int_equal(spool_mark(fx->sp, m, 2, err, sizeof(err)), 0);
	/* Outcomes other than a first delivery are rows of outcomes. */
	assert_int_equal(raw_int(fx->db, "SELECT key_generation FROM outcomes WHERE id = 1"), 2);
	assert_int_equal(raw_int(fx->db, "SELECT first_unknown FROM outcomes WHERE id = 1"),
	                 1700000100);
	assert_int_equal(raw_int(fx->db, "SELECT state FROM outcomes WHERE id = 2"), EVENT_UNSURE);
	/* A pending event comes back with its generation and first unknown outcome. */
	assert_int_equal(spool_pending(fx->sp, 0, pend, 4, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2); /* 1 and 3: unsure is not pending */
	assert_int_equal(pend[0].id, 1);
	assert_int_equal(pend[0].key_generation, 2);
	assert_int_equal(pend[0].first_unknown, 1700000100);
	assert_int_equal(pend[1].id, 3);
	assert_int_equal(pend[1].key_generation, 0);
	assert_int_equal(pend[1].first_unknown, 0);
	c = counts(fx->sp);
	assert_int_equal(c.pending, 2);
	assert_int_equal(c.unsure, 1);
	assert_int_equal(c.delivered, 0);
	assert_int_equal(c.dead, 0);
	memset(got, 0, sizeof(got));
	assert_int_equal(spool_events_foreach(fx->sp, EVENT_UNSURE, collect, got, err, sizeof(err)),
	                 0);
	assert_int_equal(got[0].id, 2);
	assert_int_equal(got[0].state, EVENT_UNSURE);
	assert_int_equal(got[0].key_generation, 5);
	assert_int_equal(got[1].id, 0);
	/* A negative generation is refused. */
	m[0].key_generation = -1;
	assert_int_equal(spool_mark(fx->sp, m, 1, err, sizeof(err)), -1);

	/* Replaying the unsure event: pending again, next key generation, no unknown outcome. */
	memset(&rp, 0, sizeof(rp));
	rp.from = EVENT_UNSURE;
	rp.now = 5000;
	rp.decide = decide;
	rp.ud = &d;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 1);
	assert_int_equal(counts(fx->sp).unsure, 0);
	assert_int_equal(raw_int(fx->db, "SELECT key_generation FROM outcomes WHERE id = 2"), 6);
	assert_int_equal(raw_int(fx->db, "SELECT first_unknown IS NULL FROM outcomes WHERE id = 2"),
	                 1);
	free(f);
}

/* The files and events tables as schemas 1 to 3 had them (src/store/schema.c). */
#define OLD_FILES                                                                                  \
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"                           \
	"CREATE TABLE files (id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE,"                    \
	" source TEXT NOT NULL, path TEXT NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,"   \
	" fp_len INTEGER NOT NULL DEFAULT 0, fp_hash BLOB,"                                        \
	" \"offset\" INTEGER NOT NULL DEFAULT 0, check_len INTEGER NOT NULL DEFAULT 0,"            \
	" check_hash BLOB, size INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,"                  \
	" lines INTEGER NOT NULL DEFAULT 0, matched INTEGER NOT NULL DEFAULT 0,"                   \
	" unmatched INTEGER NOT NULL DEFAULT 0, invalid INTEGER NOT NULL DEFAULT 0,"               \
	" long_lines INTEGER NOT NULL DEFAULT 0, nul_bytes INTEGER NOT NULL DEFAULT 0,"            \
	" events INTEGER NOT NULL DEFAULT 0, resets INTEGER NOT NULL DEFAULT 0,"                   \
	" first_seen INTEGER NOT NULL, updated INTEGER NOT NULL);"                                 \
	"CREATE INDEX files_identity ON files(source, dev, ino);"

#define OLD_EVENTS_V2_COLUMNS                                                                      \
	"id INTEGER PRIMARY KEY,"                                                                  \
	" file_id INTEGER NOT NULL REFERENCES files(id), line_offset INTEGER NOT NULL,"            \
	" rule TEXT NOT NULL, identifier TEXT NOT NULL, event_name TEXT NOT NULL,"                 \
	" payload_customer_key TEXT NOT NULL, payload_value_key TEXT NOT NULL,"                    \
	" customer_key TEXT NOT NULL, customer TEXT NOT NULL, value TEXT NOT NULL,"                \
	" timestamp INTEGER NOT NULL, state INTEGER NOT NULL,"                                     \
	" attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created INTEGER,"                  \
	" delivered_at INTEGER, updated INTEGER, key_generation INTEGER NOT NULL DEFAULT 0,"       \
	" first_unknown INTEGER,"

/* After a migration: no events table, a sound database, and opening again changes nothing. */
static void check_migrated(struct fixture *fx)
{
	char err[512] = "", text[64];
	struct spool_counts c0, c1;

	assert_int_equal(raw_int(fx->db, "PRAGMA user_version"), SPOOL_SCHEMA_VERSION);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM sqlite_schema WHERE tbl_name ="
	                                 " 'events'"),
	                 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM meta WHERE key = 'queue_shift'"), 0);
	raw_text(fx->db, "PRAGMA integrity_check", text, sizeof(text));
	assert_string_equal(text, "ok");
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
	c0 = counts(fx->sp);
	spool_free(fx->sp);
	fx->sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	assert_non_null(fx->sp);
	c1 = counts(fx->sp);
	assert_memory_equal(&c0, &c1, sizeof(c0));
}

/* A spool of schema 1 (the first release: a CHECK on the state, no key generation) is migrated
 * when an agent opens it, keeping every event with its identifier and history; a read-only
 * open asks for the agent first. */
static void test_migrate_from_1(void **state)
{
	static const char v1[] = OLD_FILES
	    "CREATE TABLE events (id INTEGER PRIMARY KEY,"
	    " file_id INTEGER NOT NULL REFERENCES files(id), line_offset INTEGER NOT NULL,"
	    " rule TEXT NOT NULL, identifier TEXT NOT NULL, event_name TEXT NOT NULL,"
	    " payload_customer_key TEXT NOT NULL, payload_value_key TEXT NOT NULL,"
	    " customer_key TEXT NOT NULL, customer TEXT NOT NULL, value TEXT NOT NULL,"
	    " timestamp INTEGER NOT NULL, state INTEGER NOT NULL CHECK (state IN (0, 1, 2)),"
	    " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created INTEGER,"
	    " delivered_at INTEGER, updated INTEGER, UNIQUE (file_id, line_offset, rule));"
	    "CREATE INDEX events_pending ON events(id) WHERE state = 0;"
	    "CREATE INDEX events_dead ON events(id) WHERE state = 2;"
	    "CREATE INDEX events_delivered ON events(delivered_at) WHERE state = 1;"
	    "INSERT INTO meta VALUES ('instance', 'old-host');"
	    "INSERT INTO files(id, uid, source, path, dev, ino, state, first_seen, updated, "
	    "\"offset\")"
	    " VALUES (1, 'u1', 'nginx', '/var/log/a.log', 1, 2, 'reading', 1, 1, 300);"
	    "INSERT INTO events VALUES (1, 1, 0, 'r', 'lm1-a', 'e', 'stripe_customer_id', 'value',"
	    " 'k', 'cus_1', '5', 1700000000, 1, 1, NULL, 1, 10, 10);"
	    "INSERT INTO events VALUES (2, 1, 100, 'r', 'lm1-b', 'e', 'stripe_customer_id', "
	    "'value',"
	    " 'k', 'cus_1', '6', 1700000000, 0, 3, 'HTTP 500', 1, NULL, 11);"
	    "INSERT INTO events VALUES (3, 1, 200, 'r', 'lm1-c', 'e', 'stripe_customer_id', "
	    "'value',"
	    " 'k', 'cus_1', '7', 1700000000, 2, 1, 'No active meter', 1, NULL, 12);"
	    "PRAGMA user_version = 1;";
	struct fixture *fx = *state;
	struct event pend[4], ev;
	struct spool_counts c;
	struct spool *ro;
	size_t n = 0;
	char err[512] = "", text[64];

	spool_remove(fx);
	raw_exec_create(fx->db, v1);

	ro = spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err));
	assert_null(ro);
	assert_non_null(strstr(err, "schema version 1"));
	assert_non_null(strstr(err, "logmeter run"));
	assert_int_equal(raw_int(fx->db, "PRAGMA user_version"), 1);

	fx->sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	if (fx->sp == NULL)
		fail_msg("spool_open: %s", err);
	c = counts(fx->sp);
	assert_int_equal(c.delivered, 1);
	assert_int_equal(c.pending, 1);
	assert_int_equal(c.dead, 1);
	assert_int_equal(c.unsure, 0);
	assert_int_equal(spool_pending(fx->sp, 0, pend, 4, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(pend[0].id, 2);
	/* Its identifier is the one it had (made under an instance name the spool no longer
	 * knows: kept in its row). */
	assert_string_equal(pend[0].identifier, "lm1-b");
	assert_int_equal(pend[0].attempts, 3);
	assert_int_equal(pend[0].key_generation, 0);
	assert_int_equal(pend[0].first_unknown, 0);
	assert_int_equal(pend[0].queue_seq, 2);
	assert_string_equal(pend[0].last_error, "HTTP 500");
	assert_string_equal(pend[0].value, "6");
	ev = event_of(fx->sp, 1);
	assert_string_equal(ev.identifier, "lm1-a");
	assert_int_equal(ev.delivered_at, 10);
	assert_int_equal(ev.created, 1);
	ev = event_of(fx->sp, 3);
	assert_string_equal(ev.last_error, "No active meter");
	raw_text(fx->db, "SELECT value FROM meta WHERE key = 'instance'", text, sizeof(text));
	assert_string_equal(text, "old-host");
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches"), 1);
	check_migrated(fx);
}

/* A spool of schema 2 (events in id order, a replay renumbered them) is migrated through schema
 * 3 to this one: every event kept, each queue position its id, so the queue keeps its order; a
 * replay afterwards moves an event without changing its id. */
static void test_migrate_from_2(void **state)
{
	static const char v2[] = OLD_FILES
	    "CREATE TABLE events (" OLD_EVENTS_V2_COLUMNS " UNIQUE (file_id, line_offset, rule));"
	    "CREATE INDEX events_pending ON events(id) WHERE state = 0;"
	    "CREATE INDEX events_dead ON events(id) WHERE state = 2;"
	    "CREATE INDEX events_unsure ON events(id) WHERE state = 3;"
	    "CREATE INDEX events_delivered ON events(delivered_at) WHERE state = 1;"
	    "INSERT INTO meta VALUES ('instance', 'v2-host');"
	    "INSERT INTO files(id, uid, source, path, dev, ino, state, first_seen, updated,"
	    " \"offset\") VALUES (1, 'u1', 'nginx', '/var/log/a.log', 1, 2, 'drained', 1,"
	    " 1, 400);"
	    /* 1 delivered, 2 dead, 3 unsure, 4 pending; 7 pending: a replay of schema 2
	     * gave the event at offset 50 the id after every other. */
	    "INSERT INTO events VALUES (1, 1, 0, 'r', 'lm1-a', 'e', 'stripe_customer_id',"
	    " 'value', 'k', 'cus_1', '5', 1700000000, 1, 1, NULL, 1, 10, 10, 0, NULL);"
	    "INSERT INTO events VALUES (2, 1, 100, 'r', 'lm1-b', 'e',"
	    " 'stripe_customer_id', 'value', 'k', 'cus_1', '6', 1700000000, 2, 1,"
	    " 'No active meter', 1, NULL, 11, 0, NULL);"
	    "INSERT INTO events VALUES (3, 1, 200, 'r', 'lm1-c', 'e',"
	    " 'stripe_customer_id', 'value', 'k', 'cus_1', '7', 1700000000, 3, 9,"
	    " 'unsure: HTTP 500', 1, NULL, 12, 4, 1700000100);"
	    "INSERT INTO events VALUES (4, 1, 300, 'r', 'lm1-d', 'e',"
	    " 'stripe_customer_id', 'value', 'k', 'cus_1', '8', 1700000000, 0, 0, NULL,"
	    " 1, NULL, 13, 0, NULL);"
	    "INSERT INTO events VALUES (7, 1, 50, 'r', 'lm1-e', 'e',"
	    " 'stripe_customer_id', 'value', 'k', 'cus_1', '9', 1700000000, 0, 2,"
	    " 'replayed', 1, NULL, 14, 1, NULL);"
	    "PRAGMA user_version = 2;";
	struct fixture *fx = *state;
	struct event pend[4], ev;
	struct spool_counts c;
	struct spool *ro;
	struct decider d = {.verdict = 1};
	struct spool_replay rp;
	size_t n = 0;
	int64_t moved = 0;
	char err[512] = "", text[512];

	spool_remove(fx);
	raw_exec_create(fx->db, v2);

	ro = spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err));
	assert_null(ro);
	assert_non_null(strstr(err, "schema version 2"));
	assert_int_equal(raw_int(fx->db, "PRAGMA user_version"), 2);

	fx->sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	if (fx->sp == NULL)
		fail_msg("spool_open: %s", err);
	raw_text(fx->db, "SELECT value FROM meta WHERE key = 'instance'", text, sizeof(text));
	assert_string_equal(text, "v2-host");
	c = counts(fx->sp);
	assert_int_equal(c.delivered, 1);
	assert_int_equal(c.dead, 1);
	assert_int_equal(c.unsure, 1);
	assert_int_equal(c.pending, 2);
	{
		static const char *const ids[] = {"lm1-a", "lm1-b", "lm1-c", "lm1-d", "lm1-e"};
		static const int64_t eid[] = {1, 2, 3, 4, 7}, st[] = {1, 2, 3, 0, 0};
		static const int64_t at[] = {1, 1, 9, 0, 2}, kg[] = {0, 0, 4, 0, 1};

		for (int i = 0; i < 5; i++) {
			ev = event_of(fx->sp, eid[i]);
			assert_string_equal(ev.identifier, ids[i]);
			assert_int_equal(ev.state, st[i]);
			assert_int_equal(ev.attempts, at[i]);
			assert_int_equal(ev.key_generation, kg[i]);
		}
		assert_int_equal(event_of(fx->sp, 3).first_unknown, 1700000100);
	}
	/* The queue as schema 2 had it: 4, then 7. */
	assert_int_equal(spool_pending(fx->sp, 0, pend, 4, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(pend[0].id, 4);
	assert_int_equal(pend[0].queue_seq, 4);
	assert_int_equal(pend[1].id, 7);
	assert_int_equal(pend[1].queue_seq, 7);
	assert_string_equal(pend[1].identifier, "lm1-e");
	assert_int_equal(pend[1].line_offset, 50);

	/* A replay now: the dead letter keeps id 2 and comes after 7. */
	memset(&rp, 0, sizeof(rp));
	rp.from = EVENT_DEAD;
	rp.now = 5000;
	rp.decide = decide;
	rp.ud = &d;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 1);
	assert_int_equal(spool_pending(fx->sp, 7, pend, 4, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(pend[0].id, 2);
	assert_int_equal(pend[0].queue_seq, 8);
	assert_string_equal(pend[0].identifier, "lm1-b");
	check_migrated(fx);
	assert_int_equal(counts(fx->sp).pending, 3);
}

/* A spool of schema 3 made as that logmeter made it (identifiers from the layout of
 * docs/identifiers.md): what needs no row of its own (first deliveries, events never sent)
 * becomes batches passed by the watermark or after it; what has a history keeps it in a row. */
static void test_migrate_from_3(void **state)
{
	struct fixture *fx = *state;
	struct event pend[8], ev;
	struct spool_counts c;
	char err[512] = "", sql[8192], id[8][EVENT_IDENTIFIER_MAX];
	size_t n = 0, at = 0;

	spool_remove(fx);
	for (int i = 1; i <= 7; i++)
		assert_int_equal(
		    event_identifier(id[i], "v3-host", "nginx", "u1", 100 * (i - 1), "r"), 0);
	at += (size_t)snprintf(
	    sql + at, sizeof(sql) - at,
	    OLD_FILES "CREATE TABLE events (" OLD_EVENTS_V2_COLUMNS " queue_seq INTEGER NOT NULL,"
	              " UNIQUE (file_id, line_offset, rule));"
	              "CREATE INDEX events_pending ON events(queue_seq) WHERE state = 0;"
	              "INSERT INTO meta VALUES ('instance', 'v3-host');"
	              "INSERT INTO meta VALUES ('queue_shift', '2');"
	              "INSERT INTO files(id, uid, source, path, dev, ino, state, first_seen,"
	              " updated, \"offset\") VALUES (1, 'u1', 'nginx', '/var/log/a.log', 1, 2,"
	              " 'reading', 1, 1, 700);");
	/* 1, 2 delivered at their first attempt; 3 dead; 4, 5 never sent; 6 replayed (position
	 * 9, after the others, and a key generation); 7 unsure. */
	{
		static const char *const rest[] = {
		    "",
		    "1, 1, NULL, 5, 20, 20, 0, NULL, 1",
		    "1, 1, NULL, 5, 21, 21, 0, NULL, 2",
		    "2, 1, 'No active meter', 5, NULL, 22, 0, NULL, 3",
		    "0, 0, NULL, 5, NULL, 5, 0, NULL, 4",
		    "0, 0, NULL, 5, NULL, 5, 0, NULL, 5",
		    "0, 1, 'replayed at 30', 5, NULL, 30, 1, NULL, 9",
		    "3, 4, 'unsure: HTTP 500', 5, NULL, 40, 3, 1700000100, 7"};

		for (int i = 1; i <= 7; i++)
			at += (size_t)snprintf(
			    sql + at, sizeof(sql) - at,
			    "INSERT INTO events VALUES (%d, 1, %d, 'r', '%s', 'e',"
			    " 'stripe_customer_id', 'value', 'k%d', 'cus_%d', '%d',"
			    " %d, %s);",
			    i, 100 * (i - 1), id[i], i, i, i, 1700000000 + i, rest[i]);
	}
	snprintf(sql + at, sizeof(sql) - at, "PRAGMA user_version = 3;");
	raw_exec_create(fx->db, sql);

	fx->sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	if (fx->sp == NULL)
		fail_msg("spool_open: %s", err);
	c = counts(fx->sp);
	assert_int_equal(c.delivered, 2);
	assert_int_equal(c.dead, 1);
	assert_int_equal(c.unsure, 1);
	assert_int_equal(c.pending, 3);
	/* One batch; the watermark just before the first event never sent; rows for 3, 6, 7. */
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM batches"), 1);
	assert_int_equal(raw_int(fx->db, "SELECT delivered_through FROM queue"), 3);
	assert_int_equal(raw_int(fx->db, "SELECT next_id FROM queue"), 8);
	assert_int_equal(raw_int(fx->db, "SELECT shift FROM queue"), 2);
	assert_int_equal(raw_int(fx->db, "SELECT group_concat(id) = '3,6,7' FROM"
	                                 " (SELECT id FROM outcomes ORDER BY id)"),
	                 1);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes WHERE identifier IS NOT"
	                                 " NULL"),
	                 0);
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM deliveries WHERE through = 2 AND"
	                                 " first_at = 20 AND last_at = 21"),
	                 1);
	for (int i = 1; i <= 7; i++) {
		char want[16];

		ev = event_of(fx->sp, i);
		assert_string_equal(ev.identifier, id[i]);
		assert_int_equal(ev.line_offset, 100 * (i - 1));
		snprintf(want, sizeof(want), "cus_%d", i);
		assert_string_equal(ev.customer, want);
		assert_int_equal(ev.timestamp, 1700000000 + i);
		assert_int_equal(ev.created, 5);
	}
	assert_int_equal(event_of(fx->sp, 1).delivered_at, 20);
	assert_int_equal(event_of(fx->sp, 2).delivered_at, 20); /* its range's first */
	assert_int_equal(event_of(fx->sp, 7).key_generation, 3);
	/* The queue as schema 3 had it: 4, 5, then the replayed 6. */
	assert_int_equal(spool_pending(fx->sp, 0, pend, 8, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 3);
	assert_int_equal(pend[0].id, 4);
	assert_int_equal(pend[0].queue_seq, 4);
	assert_int_equal(pend[1].id, 5);
	assert_int_equal(pend[2].id, 6);
	assert_int_equal(pend[2].queue_seq, 9);
	assert_int_equal(pend[2].key_generation, 1);
	/* A new commit comes after every position given before: id 8 at 8 + 2. */
	{
		struct spool_file f;

		assert_int_equal(spool_file_find(fx->sp, "nginx", 1, 2, &f, err, sizeof(err)), 1);
		commit_n(fx, &f, 700, 1);
		assert_int_equal(event_of(fx->sp, 8).queue_seq, 10);
	}
	check_migrated(fx);
}

/* The queue's order across replays and commits, as a running sender sees it: its cursor only
 * moves forward, yet it finds every event made pending after it read, by a commit of the agent
 * or a replay on another connection; no event's id ever changes. */
static void test_queue_order_across_replay(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 70);
	struct event out[8];
	struct spool_mark m;
	struct decider d = {.verdict = 1};
	struct spool_replay rp;
	struct spool *cli;
	char err[512] = "", text[256];
	int64_t moved = 0, cursor;
	size_t n = 0;

	commit_n(fx, f, 0, 3); /* ids 1..3 at positions 1..3 */
	m = (struct spool_mark){
	    .id = 1, .state = EVENT_DEAD, .attempts = 1, .error = "x", .when = 1};
	assert_int_equal(spool_mark(fx->sp, &m, 1, err, sizeof(err)), 0);

	/* The sender reads 2 and 3: its cursor is at position 3. */
	assert_int_equal(spool_pending(fx->sp, 0, out, 8, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].id, 2);
	assert_int_equal(out[1].id, 3);
	cursor = out[1].queue_seq;
	assert_int_equal(cursor, 3);

	/* The operator replays event 1 on a connection of its own: position 4, id 1. */
	cli = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	assert_non_null(cli);
	memset(&rp, 0, sizeof(rp));
	rp.from = EVENT_DEAD;
	rp.now = 100;
	rp.decide = decide;
	rp.ud = &d;
	assert_int_equal(spool_replay(cli, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 1);
	assert_int_equal(spool_pending(fx->sp, cursor, out, 8, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].id, 1);
	assert_int_equal(out[0].queue_seq, 4);
	cursor = out[0].queue_seq;
	raw_text(fx->db, "SELECT shift FROM queue", text, sizeof(text));
	assert_string_equal(text, "1");

	/* The agent commits two more lines: ids 4 and 5, after the replayed event (5 and 6). */
	commit_n(fx, f, 300, 2);
	assert_int_equal(spool_pending(fx->sp, cursor, out, 8, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].id, 4);
	assert_int_equal(out[0].queue_seq, 5);
	assert_int_equal(out[1].id, 5);
	assert_int_equal(out[1].queue_seq, 6);
	cursor = out[1].queue_seq;

	/* Event 4 delivered, then replayed: after 5 (max id 5, shift 1: position 7); the next line
	 * committed (id 6) comes after it (position 8). */
	m = (struct spool_mark){.id = 4, .state = EVENT_DELIVERED, .attempts = 1, .when = 200};
	assert_int_equal(spool_mark(fx->sp, &m, 1, err, sizeof(err)), 0);
	rp.from = EVENT_DELIVERED;
	assert_int_equal(spool_replay(cli, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 1);
	commit_n(fx, f, 500, 1);
	assert_int_equal(spool_pending(fx->sp, cursor, out, 8, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].id, 4);
	assert_int_equal(out[0].queue_seq, 7);
	assert_int_equal(out[1].id, 6);
	assert_int_equal(out[1].queue_seq, 8);

	/* The whole queue from its start, and each id still its line's. */
	assert_int_equal(spool_pending(fx->sp, 0, out, 8, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 6);
	{
		static const int64_t ids[] = {2, 3, 1, 5, 4, 6};
		static const int64_t seqs[] = {2, 3, 4, 6, 7, 8};

		for (size_t i = 0; i < n; i++) {
			assert_int_equal(out[i].id, ids[i]);
			assert_int_equal(out[i].queue_seq, seqs[i]);
			assert_int_equal(out[i].line_offset, (ids[i] - 1) * 100);
		}
	}
	/* Positions: the batches' (one per commit), and the moved events' rows of outcomes. */
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes WHERE id IN (1, 4) AND"
	                                 " state = 0 AND queue_seq IN (4, 7)"),
	                 2);
	spool_free(cli);
	free(f);
}

/* The retention rule alone: delivered before the cut-off, a batch (here: an event) at a time. */
static void test_prune(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 48);
	struct spool_mark m[4];
	struct spool_counts c;
	struct spool_pruned n = {-1, -1};
	char err[512] = "";

	commit_each(fx, f, 0, 5); /* ids 1..5, a batch each */
	m[0] = (struct spool_mark){.id = 1, .state = EVENT_DELIVERED, .attempts = 1, .when = 100};
	m[1] = (struct spool_mark){.id = 2, .state = EVENT_DELIVERED, .attempts = 1, .when = 200};
	m[2] = (struct spool_mark){.id = 3, .state = EVENT_DELIVERED, .attempts = 1, .when = 300};
	m[3] = (struct spool_mark){
	    .id = 4, .state = EVENT_DEAD, .attempts = 1, .error = "no", .when = 50};
	/* One mark each: each its own row of deliveries (a minute apart, or more). */
	for (int i = 0; i < 4; i++)
		assert_int_equal(spool_mark(fx->sp, &m[i], 1, err, sizeof(err)), 0);

	assert_int_equal(spool_prune(fx->sp, &(struct spool_prune){.delivered_before = 200}, &n,
	                             err, sizeof(err)),
	                 0);
	assert_int_equal(n.expired, 1);
	assert_int_equal(n.early, 0);
	assert_int_equal(spool_prune(fx->sp, &(struct spool_prune){.delivered_before = 250}, &n,
	                             err, sizeof(err)),
	                 0);
	assert_int_equal(n.expired, 1);
	assert_int_equal(spool_prune(fx->sp, &(struct spool_prune){.delivered_before = 250}, NULL,
	                             err, sizeof(err)),
	                 0);
	assert_int_equal(raw_int(fx->db, "SELECT group_concat(id) = '3,4,5' FROM "
	                                 "(SELECT id FROM batches ORDER BY id)"),
	                 1);
	/* The rows of deliveries of what went, gone with it. */
	assert_int_equal(raw_int(fx->db, "SELECT min(through) FROM deliveries"), 3);
	c = counts(fx->sp);
	assert_int_equal(c.pending, 1);
	assert_int_equal(c.delivered, 1);
	assert_int_equal(c.dead, 1);
	assert_int_equal(event_of(fx->sp, 3).delivered_at, 300);
	/* Neither rule: nothing happens; a negative value is refused. */
	assert_int_equal(spool_prune(fx->sp, &(struct spool_prune){0}, &n, err, sizeof(err)), 0);
	assert_int_equal(n.expired + n.early, 0);
	assert_int_equal(
	    spool_prune(fx->sp, &(struct spool_prune){.oldest = -1}, &n, err, sizeof(err)), -1);
	assert_int_equal(spool_prune(NULL, &(struct spool_prune){0}, &n, err, sizeof(err)), -1);
	free(f);
}

/* Both rules in one call: first everything past its retention, then whole batches in the order
 * of their commits up to the count, whatever their age; pending, dead and unsure events never
 * go, nor a batch that holds one. */
static void test_prune_both_rules(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 49);
	struct spool_mark m[8];
	struct spool_counts c;
	struct spool_pruned n = {-1, -1};
	char err[512] = "";

	commit_each(fx, f, 0, 9); /* ids 1..9, a batch each */
	/* Delivered at 500 (id 6), 100 (2), 400 (4), 300 (7), 200 (1), 600 (8); 3 dead at 10, 5
	 * unsure at 10, 9 pending. */
	m[0] = (struct spool_mark){.id = 6, .state = EVENT_DELIVERED, .attempts = 1, .when = 500};
	m[1] = (struct spool_mark){.id = 2, .state = EVENT_DELIVERED, .attempts = 1, .when = 100};
	m[2] = (struct spool_mark){.id = 4, .state = EVENT_DELIVERED, .attempts = 1, .when = 400};
	m[3] = (struct spool_mark){.id = 7, .state = EVENT_DELIVERED, .attempts = 1, .when = 300};
	m[4] = (struct spool_mark){.id = 1, .state = EVENT_DELIVERED, .attempts = 1, .when = 200};
	m[5] = (struct spool_mark){.id = 8, .state = EVENT_DELIVERED, .attempts = 1, .when = 600};
	m[6] = (struct spool_mark){
	    .id = 3, .state = EVENT_DEAD, .attempts = 1, .error = "no", .when = 10};
	m[7] = (struct spool_mark){
	    .id = 5, .state = EVENT_UNSURE, .attempts = 1, .error = "?", .when = 10};
	for (int i = 0; i < 8; i++)
		assert_int_equal(spool_mark(fx->sp, &m[i], 1, err, sizeof(err)), 0);
	assert_int_equal(raw_int(fx->db, "SELECT delivered_through FROM queue"), 8);

	/* Retention cuts before 250: 2 (100) and 1 (200); then the 2 committed first of the
	 * rest: 4 and 6 (3 is dead, 5 unsure). Left: 7 and 8 delivered. */
	assert_int_equal(spool_prune(fx->sp,
	                             &(struct spool_prune){.delivered_before = 250, .oldest = 2},
	                             &n, err, sizeof(err)),
	                 0);
	assert_int_equal(n.expired, 2);
	assert_int_equal(n.early, 2);
	assert_int_equal(raw_int(fx->db, "SELECT group_concat(id) = '3,5,7,8,9' FROM "
	                                 "(SELECT id FROM batches ORDER BY id)"),
	                 1);
	/* More than there is: only delivered events go. */
	assert_int_equal(spool_prune(fx->sp,
	                             &(struct spool_prune){.delivered_before = 1000, .oldest = 50},
	                             &n, err, sizeof(err)),
	                 0);
	assert_int_equal(n.expired, 2);
	assert_int_equal(n.early, 0);
	c = counts(fx->sp);
	assert_int_equal(c.delivered, 0);
	assert_int_equal(c.pending, 1);
	assert_int_equal(c.dead, 1);
	assert_int_equal(c.unsure, 1);

	/* Retention looks past a batch delivered later: a batch delivered early after it goes. */
	commit_each(fx, f, 900, 3); /* ids 10, 11, 12 */
	m[0] = (struct spool_mark){.id = 9, .state = EVENT_DELIVERED, .attempts = 1, .when = 2000};
	m[1] = (struct spool_mark){.id = 10, .state = EVENT_DELIVERED, .attempts = 2, .when = 5000};
	m[2] = (struct spool_mark){.id = 11, .state = EVENT_DELIVERED, .attempts = 1, .when = 2100};
	for (int i = 0; i < 3; i++)
		assert_int_equal(spool_mark(fx->sp, &m[i], 1, err, sizeof(err)), 0);
	assert_int_equal(spool_prune(fx->sp, &(struct spool_prune){.delivered_before = 3000}, &n,
	                             err, sizeof(err)),
	                 0);
	assert_int_equal(n.expired, 2); /* 9 and 11; 10 (delivered at 5000) stays */
	assert_int_equal(raw_int(fx->db, "SELECT group_concat(id) = '3,5,10,12' FROM "
	                                 "(SELECT id FROM batches ORDER BY id)"),
	                 1);
	free(f);
}

/* ---- replay ---- */

static void test_replay(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 61);
	struct spool_mark m[6];
	struct decider d = {.verdict = 1};
	struct spool_replay rp;
	struct event evs[8], ev;
	char err[512] = "", before[EVENT_IDENTIFIER_MAX];
	int64_t moved = -1;

	/* ids 1..8 at offsets 0..700, event 6 of rule r2; one batch. */
	for (int i = 0; i < 8; i++)
		event_init(&evs[i], f->id, 100 * i, i == 5 ? "r2" : "r1");
	f->offset = 800;
	assert_int_equal(fixture_commit(fx->sp, f, evs, 8, err, sizeof(err)), 0);
	memcpy(before, evs[1].identifier, sizeof(before));
	/* 1, 2: dead (no meter) at t=1000; 3: dead (other reason) at t=2000; 4, 5: delivered at
	 * 1500 and 3000; 6: dead at 3000 in rule r2; 7, 8 stay pending. */
	m[0] = (struct spool_mark){.id = 1,
	                           .state = EVENT_DEAD,
	                           .attempts = 1,
	                           .error = "No active meter found",
	                           .when = 1000};
	m[1] = (struct spool_mark){.id = 2,
	                           .state = EVENT_DEAD,
	                           .attempts = 2,
	                           .error = "No active meter found",
	                           .when = 1000};
	m[2] = (struct spool_mark){
	    .id = 3, .state = EVENT_DEAD, .attempts = 1, .error = "value too large", .when = 2000};
	m[3] = (struct spool_mark){.id = 4, .state = EVENT_DELIVERED, .attempts = 1, .when = 1500};
	m[4] = (struct spool_mark){.id = 5, .state = EVENT_DELIVERED, .attempts = 1, .when = 3000};
	m[5] = (struct spool_mark){.id = 6,
	                           .state = EVENT_DEAD,
	                           .attempts = 1,
	                           .error = "No active meter found",
	                           .when = 3000};
	/* Marked in two transactions, as a sender would over time. */
	assert_int_equal(spool_mark(fx->sp, m, 4, err, sizeof(err)), 0);
	assert_int_equal(spool_mark(fx->sp, m + 4, 2, err, sizeof(err)), 0);

	memset(&rp, 0, sizeof(rp));
	rp.from = EVENT_DEAD;
	rp.now = 5000;
	rp.decide = decide;
	rp.ud = &d;

	/* A dry run sees every dead letter and changes nothing. */
	rp.dry_run = 1;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 4);
	assert_int_equal(d.n, 4);
	assert_int_equal(d.seen[0], 1);
	assert_int_equal(d.seen[3], 6);
	assert_int_equal(counts(fx->sp).dead, 4);
	rp.dry_run = 0;

	/* --reason and --rule: only 1 and 2 (r1, "No active"); 6 is in r2. */
	d.n = 0;
	rp.rule = "r1";
	rp.reason = "No active";
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 2);
	/* Moved to the end of the queue (positions 9, 10) with their ids (1, 2), pending,
	 * identifier, attempts and payload kept, the new last_error written, delivery time
	 * cleared, updated = now, the next key generation. */
	assert_int_equal(raw_int(fx->db, "SELECT count(*) FROM outcomes WHERE id IN (1, 2) AND "
	                                 "queue_seq IN (9, 10) AND state = 0 AND updated = 5000 "
	                                 "AND delivered_at IS NULL AND key_generation = 1"),
	                 2);
	assert_int_equal(raw_int(fx->db, "SELECT queue_seq FROM outcomes WHERE id = 2"), 10);
	assert_int_equal(raw_int(fx->db, "SELECT max(id + n - 1) FROM batches"), 8);
	ev = event_of(fx->sp, 2);
	assert_string_equal(ev.identifier, before);
	assert_int_equal(ev.attempts, 2);
	assert_string_equal(ev.value, "1000");
	assert_string_equal(ev.last_error, "replayed 2");
	assert_int_equal(counts(fx->sp).pending, 4);

	/* --since: only dead letters that became dead at or after 2500 (id 6, any rule). */
	d.n = 0;
	rp.rule = NULL;
	rp.reason = NULL;
	rp.since = 2500;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 1);
	assert_int_equal(d.seen[0], 6);

	/* decide = 0 leaves them; decide may change the customer. */
	d.n = 0;
	d.verdict = 0;
	rp.since = 0;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 0);
	assert_int_equal(d.n, 1); /* id 3 */
	assert_int_equal(event_of(fx->sp, 3).state, EVENT_DEAD);
	d.verdict = 1;
	d.customer = "cus_new";
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 1);
	assert_string_equal(event_of(fx->sp, 3).customer, "cus_new");
	assert_string_equal(event_of(fx->sp, 3).customer_key, "10.0.0.200");

	/* Delivered since 2000: only id 5; the other keeps its delivery. */
	d.n = 0;
	d.customer = NULL;
	rp.from = EVENT_DELIVERED;
	rp.since = 2000;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 1);
	assert_int_equal(d.seen[0], 5);
	ev = event_of(fx->sp, 4);
	assert_int_equal(ev.state, EVENT_DELIVERED);
	assert_int_equal(ev.delivered_at, 1500);
	ev = event_of(fx->sp, 5);
	assert_int_equal(ev.state, EVENT_PENDING);
	assert_int_equal(ev.key_generation, 1);
	assert_int_equal(ev.attempts, 1);
	assert_int_equal(counts(fx->sp).delivered, 1);
	assert_int_equal(counts(fx->sp).dead, 0);
	assert_int_equal(counts(fx->sp).pending, 7);

	/* A running sender's view: spool_pending after its cursor finds the moved events. */
	{
		struct event out[8];
		size_t n = 0;

		assert_int_equal(spool_pending(fx->sp, 8, out, 8, &n, err, sizeof(err)), 0);
		assert_int_equal(n, 5);
	}

	/* decide = -1 stops with an error; the batch is rolled back. */
	d.verdict = -1;
	rp.since = 0;
	rp.from = EVENT_DELIVERED;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), -1);
	assert_int_equal(event_of(fx->sp, 4).state, EVENT_DELIVERED);

	/* Invalid arguments. */
	rp.from = EVENT_PENDING;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), -1);
	rp.from = EVENT_DEAD;
	rp.decide = NULL;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), -1);
	assert_int_equal(spool_replay(NULL, &rp, &moved, err, sizeof(err)), -1);
	free(f);
}

static void test_replay_many(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 62);
	struct spool_mark *m = calloc(1234, sizeof(*m));
	struct decider d = {.verdict = 1};
	struct spool_replay rp;
	char err[512] = "";
	int64_t moved = -1;

	/* More than one batch of 500. */
	assert_non_null(m);
	commit_n(fx, f, 0, 1234);
	for (int i = 0; i < 1234; i++)
		m[i] = (struct spool_mark){
		    .id = i + 1, .state = EVENT_DEAD, .attempts = 1, .error = "x", .when = 10};
	assert_int_equal(spool_mark(fx->sp, m, 1234, err, sizeof(err)), 0);
	memset(&rp, 0, sizeof(rp));
	rp.from = EVENT_DEAD;
	rp.now = 20;
	rp.decide = decide;
	rp.ud = &d;
	assert_int_equal(spool_replay(fx->sp, &rp, &moved, err, sizeof(err)), 0);
	assert_int_equal(moved, 1234);
	assert_int_equal(counts(fx->sp).pending, 1234);
	/* Ids kept; queue positions after the 1,234 the commit gave, across the batches. */
	assert_int_equal(raw_int(fx->db, "SELECT min(id) FROM outcomes"), 1);
	assert_int_equal(raw_int(fx->db, "SELECT min(queue_seq) FROM outcomes"), 1235);
	assert_int_equal(raw_int(fx->db, "SELECT max(queue_seq) FROM outcomes"), 2468);
	assert_int_equal(
	    raw_int(fx->db, "SELECT count(*) FROM outcomes WHERE queue_seq = id + 1234"), 1234);
	assert_int_equal(raw_int(fx->db, "SELECT shift FROM queue"), 1234);
	free(m);
	free(f);
}

static void test_foreach(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *z = add_file(fx, "zeta", 1);
	struct spool_file *a1 = add_file(fx, "alpha", 2);
	struct spool_file *a2 = add_file(fx, "alpha", 3);
	struct listing l = {0};
	struct spool_mark m[3];
	char err[512] = "";

	assert_int_equal(spool_files_foreach(fx->sp, list_file, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.names[0], "alpha:2");
	assert_string_equal(l.names[1], "alpha:3");
	assert_string_equal(l.names[2], "zeta:1");

	commit_n(fx, z, 0, 3);  /* ids 1..3 */
	commit_n(fx, a1, 0, 3); /* ids 4..6 */
	m[0] = (struct spool_mark){
	    .id = 5, .state = EVENT_DEAD, .attempts = 1, .error = "e", .when = 1};
	m[1] = (struct spool_mark){
	    .id = 2, .state = EVENT_DEAD, .attempts = 1, .error = "e", .when = 2};
	m[2] = (struct spool_mark){.id = 3, .state = EVENT_DELIVERED, .attempts = 1, .when = 3};
	assert_int_equal(spool_mark(fx->sp, m, 3, err, sizeof(err)), 0);

	memset(&l, 0, sizeof(l));
	assert_int_equal(spool_events_foreach(fx->sp, EVENT_DEAD, list_event, &l, err, sizeof(err)),
	                 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.ids[0], 2);
	assert_int_equal(l.ids[1], 5);

	memset(&l, 0, sizeof(l));
	assert_int_equal(
	    spool_events_foreach(fx->sp, EVENT_PENDING, list_event, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.ids[0], 1);
	assert_int_equal(l.ids[1], 4);
	assert_int_equal(l.ids[2], 6);

	memset(&l, 0, sizeof(l));
	assert_int_equal(
	    spool_events_foreach(fx->sp, EVENT_DELIVERED, list_event, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.ids[0], 3);

	/* A callback that fails stops the walk; the statement is left reusable. */
	memset(&l, 0, sizeof(l));
	l.stop_after = 2;
	assert_int_equal(
	    spool_events_foreach(fx->sp, EVENT_PENDING, list_event, &l, err, sizeof(err)), -1);
	assert_int_equal(l.n, 2);
	memset(&l, 0, sizeof(l));
	l.stop_after = 1;
	assert_int_equal(spool_files_foreach(fx->sp, list_file, &l, err, sizeof(err)), -1);
	assert_int_equal(l.n, 1);
	memset(&l, 0, sizeof(l));
	assert_int_equal(
	    spool_events_foreach(fx->sp, EVENT_PENDING, list_event, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 3);

	assert_int_equal(
	    spool_events_foreach(fx->sp, (enum event_state)9, list_event, &l, err, sizeof(err)),
	    -1);
	free(z);
	free(a1);
	free(a2);
}

/* The status command reads while the agent writes. */
static void test_read_only_beside_writer(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 49), got;
	struct spool_counts c;
	struct spool_mark m = {.id = 1, .state = EVENT_DELIVERED, .attempts = 1, .when = 5};
	struct spool *ro;
	struct event out[4];
	char err[512] = "";
	size_t n;

	commit_n(fx, f, 0, 3);
	ro = spool_open(fx->state, SPOOL_READ_ONLY, err, sizeof(err));
	if (ro == NULL)
		fail_msg("read-only open: %s", err);
	c = counts(ro);
	assert_int_equal(c.pending, 3);

	/* New commits of the writer are visible to the reader's next query. */
	commit_n(fx, f, 300, 2);
	c = counts(ro);
	assert_int_equal(c.pending, 5);
	assert_int_equal(spool_pending(ro, 0, out, 4, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 4);
	assert_int_equal(spool_file_find(ro, "nginx", 2049, 49, &got, err, sizeof(err)), 1);
	assert_int_equal(got.offset, 500);

	/* The reader cannot write; the writer is unaffected. */
	err[0] = '\0';
	assert_int_equal(spool_mark(ro, &m, 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "SQLITE_READONLY"));
	assert_int_equal(
	    spool_prune(ro, &(struct spool_prune){.delivered_before = 100}, NULL, err, sizeof(err)),
	    -1);
	assert_int_equal(spool_mark(fx->sp, &m, 1, err, sizeof(err)), 0);
	c = counts(ro);
	assert_int_equal(c.pending, 4);
	assert_int_equal(c.delivered, 1);
	spool_free(ro);
	free(f);
}

/* ---- durability, verify ---- */

static void test_durability(void **state)
{
	struct fixture *fx = *state;
	char err[512] = "";

	assert_int_equal(spool_set_durability(fx->sp, CONFIG_DURABILITY_NORMAL, err, sizeof(err)),
	                 0);
	assert_int_equal(spool_set_durability(fx->sp, CONFIG_DURABILITY_STRICT, err, sizeof(err)),
	                 0);
	assert_int_equal(spool_set_durability(fx->sp, (enum config_durability)7, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "invalid"));
	assert_int_equal(spool_set_durability(NULL, CONFIG_DURABILITY_STRICT, err, sizeof(err)),
	                 -1);
}
/* The latest time seen (meta clock_seen): none at first, and never set back by an earlier one
 * but through spool_clock_correct. */
static void test_clock_seen(void **state)
{
	struct fixture *fx = *state;
	char err[512] = "";
	int64_t seen = -1;

	assert_int_equal(spool_clock_seen(fx->sp, &seen, err, sizeof(err)), 0);
	assert_int_equal(seen, 0);
	assert_int_equal(spool_clock_note(fx->sp, 1900000000, err, sizeof(err)), 0);
	assert_int_equal(spool_clock_note(fx->sp, 1800000000, err, sizeof(err)), 0);
	assert_int_equal(spool_clock_seen(fx->sp, &seen, err, sizeof(err)), 0);
	assert_int_equal(seen, 1900000000);
	assert_int_equal(raw_int(fx->db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = "
	                                 "'clock_seen'"),
	                 1900000000);
	assert_int_equal(spool_clock_note(fx->sp, 1900000001, err, sizeof(err)), 0);
	assert_int_equal(spool_clock_seen(fx->sp, &seen, err, sizeof(err)), 0);
	assert_int_equal(seen, 1900000001);
	/* A value that is not a number is nothing seen, and is replaced. */
	raw_exec(fx->db, "UPDATE meta SET value = 'x' WHERE key = 'clock_seen'");
	assert_int_equal(spool_clock_seen(fx->sp, &seen, err, sizeof(err)), 0);
	assert_int_equal(seen, 0);
	assert_int_equal(spool_clock_note(fx->sp, 5, err, sizeof(err)), 0);
	assert_int_equal(spool_clock_seen(fx->sp, &seen, err, sizeof(err)), 0);
	assert_int_equal(seen, 5);
	assert_int_equal(spool_clock_note(fx->sp, 0, err, sizeof(err)), -1);
	/* Found wrong ahead: spool_clock_correct sets it back, and later notes go on from there. */
	assert_int_equal(spool_clock_note(fx->sp, 2000000000, err, sizeof(err)), 0);
	assert_int_equal(spool_clock_correct(fx->sp, 1800000000, err, sizeof(err)), 0);
	assert_int_equal(spool_clock_seen(fx->sp, &seen, err, sizeof(err)), 0);
	assert_int_equal(seen, 1800000000);
	assert_int_equal(raw_int(fx->db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = "
	                                 "'clock_seen'"),
	                 1800000000);
	assert_int_equal(spool_clock_note(fx->sp, 1700000000, err, sizeof(err)), 0);
	assert_int_equal(spool_clock_note(fx->sp, 1800000060, err, sizeof(err)), 0);
	assert_int_equal(spool_clock_seen(fx->sp, &seen, err, sizeof(err)), 0);
	assert_int_equal(seen, 1800000060);
	assert_int_equal(spool_clock_correct(fx->sp, 0, err, sizeof(err)), -1);
}

static void test_verify(void **state)
{
	struct fixture *fx = *state;
	struct spool_file *f = add_file(fx, "nginx", 60);
	char err[512] = "";
	struct stat sb;
	FILE *fp;
	long pages;

	commit_n(fx, f, 0, 3000);
	assert_int_equal(spool_verify(fx->sp, err, sizeof(err)), 0);
	spool_free(fx->sp);
	fx->sp = NULL;
	/* Garbage over pages in the middle of the file: found by quick_check. */
	assert_int_equal(stat(fx->db, &sb), 0);
	pages = (long)(sb.st_size / 4096);
	assert_true(pages > 20);
	fp = fopen(fx->db, "r+");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, (pages / 2) * 4096L, SEEK_SET), 0);
	for (int i = 0; i < 4 * 4096; i++)
		fputc((i * 7919) & 0xff, fp);
	fclose(fp);
	fx->sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	assert_non_null(fx->sp);
	assert_int_equal(spool_verify(fx->sp, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "damaged"));
	assert_non_null(strstr(err, "logmeter spool recover"));
	assert_int_equal(spool_verify(NULL, err, sizeof(err)), -1);
	free(f);
}
static void test_damage_hint(void **state)
{
	(void)state;
	assert_non_null(strstr(spool_damage_hint(SQLITE_CORRUPT), "spool check"));
	assert_non_null(strstr(spool_damage_hint(SQLITE_NOTADB), "spool recover"));
	assert_non_null(strstr(spool_damage_hint(SQLITE_CORRUPT_INDEX), "damaged"));
	assert_string_equal(spool_damage_hint(SQLITE_FULL), "");
	assert_string_equal(spool_damage_hint(SQLITE_OK), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_creates_dir_and_wal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_refuses_newer_schema, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_state_dir_is_a_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_marker, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_marker_adopted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_read_only_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_not_a_database, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_path_of, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_instance, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_instance_read_only_unset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_find_remounted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_find_other, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_forget, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_update_add, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_id_never_reused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_back_bounds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_windows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_window_digits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_window_memory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_window_place, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_window_placed_steps, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_and_dedupe, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_bad_references, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_overlap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pending_paging, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mark, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mark_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watermark, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mark_generation_unsure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_from_1, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_from_2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_from_3, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_order_across_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prune_both_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_foreach, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_only_beside_writer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_durability, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_clock_seen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damage_hint, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pending_to_loads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replay_many, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
