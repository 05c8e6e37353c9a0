/* Unit tests for watch: real files in a mkdtemp() directory, real inotify, a real spool and rule
 * set built from a hand-made configuration. The loop is driven without a thread, one
 * watch_turn(0) at a time: inotify queues an event before the system call that caused it
 * returns, so after a file operation its events are there to be read, whatever the machine's
 * load. After every step watch_check verifies the indexes (every tail and directory found by
 * each of its keys), and the spool shows that each event reached its file's tail: the record
 * (found by the file's path or inode) was read to the file's size as stat(2) gives it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "core/event.h"
#include "core/rule.h"
#include "ingest/tail.h"
#include "ingest/watch.h"
#include "store/spool.h"

#define MAX_SOURCES 3
#define MAX_RULES 4

/* A configuration made by hand: its strings point into the test's own buffers. */
struct conf {
	struct config cfg;
	struct config_source src[MAX_SOURCES];
	char glob[MAX_SOURCES][256];
	char src_name[MAX_SOURCES][32];
	struct config_rule rule[MAX_RULES];
	char rule_name[MAX_RULES][32], rule_source[MAX_RULES][32];
	struct rule_set *rules;
};

struct fixture {
	char dir[64];
	char state[128];
	struct conf a, b;
	struct spool *sp;
	struct tail_ctx ctx;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void conf_init(struct fixture *fx, struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->cfg.main_file = "test.conf";
	c->cfg.agent.state_dir = fx->state;
	c->cfg.agent.batch_lines = 1000;
	c->cfg.agent.rescan_interval_ms = 3600 * 1000; /* only the rescans a test asks for */
	c->cfg.agent.rotate_wait_ms = 3600 * 1000;
	c->cfg.agent.max_line_length = 65536;
	c->cfg.agent.max_open_files = 1000;
	c->cfg.sources = c->src;
	c->cfg.rules = c->rule;
}

/* Adds [source NAME] with path DIR/GLOB (DIR the test's directory). */
static void add_source(struct fixture *fx, struct conf *c, const char *name, const char *glob)
{
	struct config_source *s = &c->src[c->cfg.n_sources];

	assert_true(c->cfg.n_sources < MAX_SOURCES);
	snprintf(c->glob[c->cfg.n_sources], sizeof(c->glob[0]), "%s/%s", fx->dir, glob);
	snprintf(c->src_name[c->cfg.n_sources], sizeof(c->src_name[0]), "%s", name);
	s->name = c->src_name[c->cfg.n_sources];
	s->path = c->glob[c->cfg.n_sources];
	s->exclude = "*.gz";
	s->read_from = CONFIG_READ_FROM_HEAD;
	s->loc = (struct config_loc){"test.conf", 1};
	c->cfg.n_sources++;
}

/* Adds [rule NAME] for source SOURCE: "CUSTOMER N" lines, N the value. */
static void add_rule(struct conf *c, const char *name, const char *source)
{
	struct config_rule *r = &c->rule[c->cfg.n_rules];
	long si = config_source_find(&c->cfg, source);

	assert_true(c->cfg.n_rules < MAX_RULES);
	assert_true(si >= 0);
	snprintf(c->rule_name[c->cfg.n_rules], sizeof(c->rule_name[0]), "%s", name);
	snprintf(c->rule_source[c->cfg.n_rules], sizeof(c->rule_source[0]), "%s", source);
	r->name = c->rule_name[c->cfg.n_rules];
	r->source = c->rule_source[c->cfg.n_rules];
	r->source_index = (size_t)si;
	r->event_name = "api_calls";
	r->pattern = "^(?<cust>\\S+) (?<n>\\d+)$";
	r->customer = "cust";
	r->value = "n";
	r->timestamp_format = "%d/%b/%Y:%H:%M:%S %z";
	r->payload_customer_key = "stripe_customer_id";
	r->payload_value_key = "value";
	r->match_limit = r->depth_limit = 1000000; /* as config_load's defaults would be */
	r->heap_limit = 64 << 20;
	r->loc = r->pattern_loc = r->customer_loc = r->value_loc =
	    (struct config_loc){"test.conf", 5};
	c->cfg.n_rules++;
}

static void build_rules(struct conf *c)
{
	char err[1024] = "";

	c->rules = rule_set_new(&c->cfg, err, sizeof(err));
	if (c->rules == NULL)
		fail_msg("rule_set_new: %s", err);
}

static struct tail_ctx ctx_of(struct fixture *fx, struct conf *c)
{
	struct tail_ctx ctx = fx->ctx;

	ctx.cfg = &c->cfg;
	ctx.rules = c->rules;
	return ctx;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char err[512] = "";

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_watch.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->state, sizeof(fx->state), "%s/state", fx->dir);
	fx->sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
	if (fx->sp == NULL) {
		print_error("spool_open: %s\n", err);
		return -1;
	}
	conf_init(fx, &fx->a);
	conf_init(fx, &fx->b);
	fx->ctx.spool = fx->sp;
	fx->ctx.instance = "test-instance";
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	rule_set_free(fx->a.rules);
	rule_set_free(fx->b.rules);
	spool_free(fx->sp);
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

/* ---- files ---- */

/* DIR/REL of the test's directory, in a static buffer per call site's `buf`. */
static const char *at(struct fixture *fx, char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s/%s", fx->dir, rel);
	return buf;
}

static void mkdir_rel(struct fixture *fx, const char *rel)
{
	char p[PATH_MAX];

	assert_int_equal(mkdir(at(fx, p, sizeof(p), rel), 0755), 0);
}

/* Appends `s` to DIR/REL (created if missing) with one write(2). */
static void append(struct fixture *fx, const char *rel, const char *s)
{
	char p[PATH_MAX];
	int fd = open(at(fx, p, sizeof(p), rel), O_WRONLY | O_CREAT | O_APPEND, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
	close(fd);
}

static void rename_rel(struct fixture *fx, const char *from, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX];

	assert_int_equal(rename(at(fx, a, sizeof(a), from), at(fx, b, sizeof(b), to)), 0);
}

static void unlink_rel(struct fixture *fx, const char *rel)
{
	char p[PATH_MAX];

	assert_int_equal(unlink(at(fx, p, sizeof(p), rel)), 0);
}

static off_t size_of(struct fixture *fx, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	assert_int_equal(stat(at(fx, p, sizeof(p), rel), &st), 0);
	return st.st_size;
}

/* The descriptor this process has open on DIR/REL (its target for a symlink), or -1. */
static int fd_of(struct fixture *fx, const char *rel)
{
	char p[PATH_MAX], real[PATH_MAX], link[300], target[PATH_MAX];
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int found = -1;

	assert_non_null(d);
	if (realpath(at(fx, p, sizeof(p), rel), real) == NULL)
		snprintf(real, sizeof(real), "%s", p);
	while ((de = readdir(d)) != NULL) {
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, real) == 0)
			found = atoi(de->d_name);
	}
	closedir(d);
	return found;
}

/* How many descriptors this process has open on files under DIR/REL/. */
static int fds_under(struct fixture *fx, const char *rel)
{
	char p[PATH_MAX], link[300], target[PATH_MAX];
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	size_t len;
	int n = 0;

	assert_non_null(d);
	at(fx, p, sizeof(p), rel);
	len = strlen(p);
	while ((de = readdir(d)) != NULL) {
		ssize_t k;

		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		k = readlink(link, target, sizeof(target) - 1);
		if (k <= 0)
			continue;
		target[k] = '\0';
		n += strncmp(target, p, len) == 0 && target[len] == '/';
	}
	closedir(d);
	return n;
}

/* ---- the spool ---- */

struct rec_query {
	const char *source;
	const char *path; /* or NULL: by dev and ino */
	uint64_t dev, ino;
	struct spool_file f;
	int found;
};

static int rec_cb(const struct spool_file *f, void *ud)
{
	struct rec_query *q = ud;

	if (strcmp(f->source, q->source) != 0)
		return 0;
	if (q->path != NULL ? strcmp(f->path, q->path) != 0 : f->dev != q->dev || f->ino != q->ino)
		return 0;
	if (!q->found || f->id > q->f.id) {
		q->f = *f;
		q->found = 1;
	}
	return 0;
}

/* The newest record of SOURCE whose path is DIR/REL. */
static struct spool_file record(struct fixture *fx, const char *source, const char *rel)
{
	char p[PATH_MAX], err[512] = "";
	struct rec_query q = {.source = source, .path = at(fx, p, sizeof(p), rel)};

	assert_int_equal(spool_files_foreach(fx->sp, rec_cb, &q, err, sizeof(err)), 0);
	if (!q.found)
		fail_msg("no record of source %s for %s", source, p);
	return q.f;
}

/* The newest record of SOURCE for the file now at DIR/REL (by device and inode). */
static struct spool_file record_of_file(struct fixture *fx, const char *source, const char *rel)
{
	char p[PATH_MAX], err[512] = "";
	struct stat st;
	struct rec_query q = {.source = source};

	assert_int_equal(stat(at(fx, p, sizeof(p), rel), &st), 0);
	q.dev = (uint64_t)st.st_dev;
	q.ino = (uint64_t)st.st_ino;
	assert_int_equal(spool_files_foreach(fx->sp, rec_cb, &q, err, sizeof(err)), 0);
	if (!q.found)
		fail_msg("no record of source %s for the file at %s", source, p);
	return q.f;
}

/* The file at DIR/REL was read to its end under SOURCE's record, which names it. */
static void read_to_end(struct fixture *fx, const char *source, const char *rel)
{
	char p[PATH_MAX];
	struct spool_file f = record_of_file(fx, source, rel);

	if (f.offset != (int64_t)size_of(fx, rel) || strcmp(f.path, at(fx, p, sizeof(p), rel)) != 0)
		fail_msg("%s (source %s): record %s at offset %lld of %lld, state %s", p, source,
		         f.path, (long long)f.offset, (long long)size_of(fx, rel),
		         spool_file_state_name(f.state));
	assert_int_equal(f.state, SPOOL_FILE_READING);
}

struct ev_query {
	int64_t file_id;
	const char *rule;
	int64_t n;
};

static int ev_cb(const struct event *ev, void *ud)
{
	struct ev_query *q = ud;

	q->n += ev->file_id == q->file_id && strcmp(ev->rule, q->rule) == 0;
	return 0;
}

/* Pending events of rule RULE from the record `f`. */
static int64_t events_of(struct fixture *fx, const struct spool_file *f, const char *rule)
{
	char err[512] = "";
	struct ev_query q = {.file_id = f->id, .rule = rule};

	assert_int_equal(spool_events_foreach(fx->sp, EVENT_PENDING, ev_cb, &q, err, sizeof(err)),
	                 0);
	return q.n;
}

/* ---- the loop ---- */

static struct watch *start(struct fixture *fx, struct conf *c)
{
	char err[1024] = "";
	struct tail_ctx ctx = ctx_of(fx, c);
	struct watch *w = watch_new(&ctx, err, sizeof(err));

	if (w == NULL)
		fail_msg("watch_new: %s", err);
	if (watch_scan(w, err, sizeof(err)) != 0)
		fail_msg("watch_scan: %s", err);
	return w;
}

static void check(struct watch *w)
{
	char err[1024] = "";

	if (watch_check(w, err, sizeof(err)) != 0)
		fail_msg("watch_check: %s", err);
}

/* Handles every event queued so far: turns of the loop that never wait. A turn handles one
 * read(2) of events or one rescan; the tests make far fewer events than a few turns take. */
static void settle(struct watch *w)
{
	char err[1024] = "";

	for (int i = 0; i < 8; i++) {
		if (watch_turn(w, 0, err, sizeof(err)) < 0)
			fail_msg("watch_turn: %s", err);
		check(w);
	}
}

/* ---- tests ---- */

/* Hundreds of files in one directory: appends, deletions and new files each reach their own
 * tail, and the tables follow. */
static void test_many_files(void **state)
{
	struct fixture *fx = *state;
	enum { N = 300 };
	char rel[64], err[1024] = "";
	struct watch *w;

	mkdir_rel(fx, "logs");
	add_source(fx, &fx->a, "app", "logs/*.log");
	add_rule(&fx->a, "r1", "app");
	build_rules(&fx->a);
	for (int i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "logs/f%03d.log", i);
		append(fx, rel, "cus_a 1\n");
	}
	w = start(fx, &fx->a);
	check(w);
	assert_int_equal(watch_tail_count(w), N);

	for (int i = 0; i < N; i += 7) {
		snprintf(rel, sizeof(rel), "logs/f%03d.log", i);
		append(fx, rel, "cus_b 22\n");
	}
	settle(w);
	for (int i = 0; i < N; i++) {
		struct spool_file f;

		snprintf(rel, sizeof(rel), "logs/f%03d.log", i);
		read_to_end(fx, "app", rel);
		f = record(fx, "app", rel);
		assert_int_equal(events_of(fx, &f, "r1"), i % 7 == 0 ? 2 : 1);
	}

	/* Deleted: read to the end and released; new files: tailed. */
	for (int i = 0; i < N; i += 10) {
		snprintf(rel, sizeof(rel), "logs/f%03d.log", i);
		unlink_rel(fx, rel);
	}
	for (int i = 0; i < 20; i++) {
		snprintf(rel, sizeof(rel), "logs/new%02d.log", i);
		append(fx, rel, "cus_c 3\n");
	}
	settle(w);
	assert_int_equal(watch_tail_count(w), N - N / 10 + 20);
	for (int i = 0; i < N; i += 10) {
		snprintf(rel, sizeof(rel), "logs/f%03d.log", i);
		assert_int_equal(record(fx, "app", rel).state, SPOOL_FILE_GONE);
	}
	for (int i = 0; i < 20; i++) {
		snprintf(rel, sizeof(rel), "logs/new%02d.log", i);
		read_to_end(fx, "app", rel);
	}
	/* A rescan finds nothing new, and leaves the tables as they are. */
	assert_int_equal(watch_scan(w, err, sizeof(err)), 0);
	check(w);
	assert_int_equal(watch_tail_count(w), N - N / 10 + 20);
	watch_free(w);
}

/* Renames: followed by their cookies (IN_MOVED_FROM, then IN_MOVED_TO), to a matched name, to a
 * name the glob does not match (rotated away, still read), out of the watched directory (the
 * cookie never matched), over a tailed file (an atomic replace), and a whole rotation in one
 * batch of events. */
static void test_renames(void **state)
{
	struct fixture *fx = *state;
	struct spool_file before, after;
	struct watch *w;

	mkdir_rel(fx, "logs");
	mkdir_rel(fx, "elsewhere");
	add_source(fx, &fx->a, "app", "logs/*.log*");
	add_rule(&fx->a, "r1", "app");
	build_rules(&fx->a);
	append(fx, "logs/a.log", "cus_a 1\n");
	append(fx, "logs/b.log", "cus_b 1\n");
	append(fx, "logs/c.log", "cus_c 1\n");
	append(fx, "logs/d.log", "cus_d 1\n");
	append(fx, "logs/d.log.1", "cus_d 0\n");
	w = start(fx, &fx->a);
	check(w);
	assert_int_equal(watch_tail_count(w), 5);

	/* To a matched name: the same record, under the new name, read on its next write. */
	before = record(fx, "app", "logs/a.log");
	rename_rel(fx, "logs/a.log", "logs/a.log.1");
	settle(w);
	after = record_of_file(fx, "app", "logs/a.log.1");
	assert_string_equal(after.uid, before.uid);
	append(fx, "logs/a.log.1", "cus_a 2\n");
	settle(w);
	read_to_end(fx, "app", "logs/a.log.1");

	/* To a name the glob does not match: still followed (rotated away), read while it grows. */
	before = record(fx, "app", "logs/b.log");
	rename_rel(fx, "logs/b.log", "logs/b.old");
	append(fx, "logs/b.old", "cus_b 2\n");
	settle(w);
	append(fx, "logs/b.old", "cus_b 3\n");
	settle(w);
	read_to_end(fx, "app", "logs/b.old");
	assert_string_equal(record(fx, "app", "logs/b.old").uid, before.uid);
	assert_int_equal(events_of(fx, &before, "r1"), 3);

	/* Renamed over: the replaced file is read to its end and released; the new one tailed. */
	before = record(fx, "app", "logs/c.log");
	append(fx, "logs/c.log", "cus_c 2\n");
	append(fx, "logs/c.tmp", "cus_c 9\n");
	rename_rel(fx, "logs/c.tmp", "logs/c.log");
	settle(w);
	assert_int_equal(events_of(fx, &before, "r1"), 2);
	read_to_end(fx, "app", "logs/c.log");
	assert_string_not_equal(record_of_file(fx, "app", "logs/c.log").uid, before.uid);

	/* A rotation in one batch: d.log.1 -> d.log.2, d.log -> d.log.1, a new d.log. */
	before = record(fx, "app", "logs/d.log");
	rename_rel(fx, "logs/d.log.1", "logs/d.log.2");
	rename_rel(fx, "logs/d.log", "logs/d.log.1");
	append(fx, "logs/d.log.1", "cus_d 2\n");
	append(fx, "logs/d.log", "cus_d 3\n");
	settle(w);
	read_to_end(fx, "app", "logs/d.log.2");
	read_to_end(fx, "app", "logs/d.log.1");
	read_to_end(fx, "app", "logs/d.log");
	assert_string_equal(record_of_file(fx, "app", "logs/d.log.1").uid, before.uid);

	/* Out of the watched directory: IN_MOVED_FROM's cookie is never matched; the rescan that
	 * follows finds it nowhere under the glob, and nothing is left pointing at it. */
	rename_rel(fx, "logs/a.log.1", "elsewhere/a.moved");
	settle(w);
	append(fx, "logs/a.log.1", "cus_a 7\n"); /* another file under the old name */
	settle(w);
	read_to_end(fx, "app", "logs/a.log.1");
	watch_free(w);
}

/* max_open_files: tails beyond it are suspended and resumed by name when they change; one
 * renamed while suspended is followed by its cookie and resumed under its new name. */
static void test_suspend_resume(void **state)
{
	struct fixture *fx = *state;
	enum { N = 40, MAX_OPEN = 16 };
	char rel[64], to[64];
	struct watch *w;
	int closed = -1;

	mkdir_rel(fx, "logs");
	add_source(fx, &fx->a, "app", "logs/*.log");
	add_rule(&fx->a, "r1", "app");
	fx->a.cfg.agent.max_open_files = MAX_OPEN;
	build_rules(&fx->a);
	for (int i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "logs/f%02d.log", i);
		append(fx, rel, "cus_a 1\n");
	}
	w = start(fx, &fx->a);
	check(w);
	assert_true(fds_under(fx, "logs") <= MAX_OPEN);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++) {
			snprintf(rel, sizeof(rel), "logs/f%02d.log", i);
			append(fx, rel, "cus_b 2\n");
			settle(w);
			read_to_end(fx, "app", rel);
			assert_true(fds_under(fx, "logs") <= MAX_OPEN);
		}
	}
	/* The least recently read were closed first: the last ones read are open. */
	assert_true(fd_of(fx, "logs/f39.log") >= 0);
	for (int i = 0; i < N && closed < 0; i++) {
		snprintf(rel, sizeof(rel), "logs/f%02d.log", i);
		if (fd_of(fx, rel) < 0)
			closed = i;
	}
	assert_true(closed >= 0);
	snprintf(rel, sizeof(rel), "logs/f%02d.log", closed);
	snprintf(to, sizeof(to), "logs/renamed%02d.log", closed);
	rename_rel(fx, rel, to);
	append(fx, to, "cus_c 3\n");
	settle(w);
	read_to_end(fx, "app", to);
	assert_int_equal(watch_tail_count(w), N);
	watch_free(w);
}

/* Symlinked files have watches of their own. A link two sources match is read by the first of
 * them only (one file, one source: its lines are billed once); a target deleted is read to its
 * end and released, and its watch goes. */
static void test_symlinks(void **state)
{
	struct fixture *fx = *state;
	char t1[PATH_MAX], t2[PATH_MAX], l1[PATH_MAX], l2[PATH_MAX], err[512] = "";
	struct spool_file all;
	struct rec_query q = {.source = "x"};
	struct watch *w;

	mkdir_rel(fx, "links");
	mkdir_rel(fx, "targets");
	add_source(fx, &fx->a, "all", "links/*.log");
	add_source(fx, &fx->a, "x", "links/x*.log");
	fx->a.src[0].follow_symlinks = 1;
	fx->a.src[1].follow_symlinks = 1;
	add_rule(&fx->a, "r_all", "all");
	add_rule(&fx->a, "r_x", "x");
	build_rules(&fx->a);
	append(fx, "targets/t1.txt", "cus_a 1\n");
	append(fx, "targets/t2.txt", "cus_b 1\n");
	assert_int_equal(symlink(at(fx, t1, sizeof(t1), "targets/t1.txt"),
	                         at(fx, l1, sizeof(l1), "links/x1.log")),
	                 0);
	assert_int_equal(symlink(at(fx, t2, sizeof(t2), "targets/t2.txt"),
	                         at(fx, l2, sizeof(l2), "links/y1.log")),
	                 0);
	w = start(fx, &fx->a);
	check(w);
	assert_int_equal(watch_tail_count(w), 2); /* all: x1, y1; x: none (all reads x1) */

	/* Writes to the targets are seen through the watches on the files themselves. */
	append(fx, "targets/t1.txt", "cus_a 2\n");
	append(fx, "targets/t2.txt", "cus_b 2\n");
	settle(w);
	read_to_end(fx, "all", "links/x1.log");
	read_to_end(fx, "all", "links/y1.log");
	all = record(fx, "all", "links/x1.log");
	assert_int_equal(events_of(fx, &all, "r_all"), 2);
	/* A rescan does not give it to x either. */
	assert_int_equal(watch_scan(w, err, sizeof(err)), 0);
	check(w);
	assert_int_equal(watch_tail_count(w), 2);
	q.path = l1; /* any record of x, under the link's path */
	assert_int_equal(spool_files_foreach(fx->sp, rec_cb, &q, err, sizeof(err)), 0);
	assert_false(q.found);

	/* The target deleted after a last line: read and let go. */
	append(fx, "targets/t1.txt", "cus_a 3\n");
	unlink_rel(fx, "targets/t1.txt");
	settle(w);
	assert_int_equal(watch_tail_count(w), 1);
	assert_int_equal(record(fx, "all", "links/x1.log").state, SPOOL_FILE_GONE);
	assert_int_equal(events_of(fx, &all, "r_all"), 3);
	assert_true(fd_of(fx, "targets/t2.txt") >= 0);

	/* The other target still reports. */
	append(fx, "targets/t2.txt", "cus_b 3\n");
	settle(w);
	read_to_end(fx, "all", "links/y1.log");
	watch_free(w);
}

/* Directories come and go: a watched directory deleted is forgotten (IN_DELETE_SELF,
 * IN_IGNORED), one created where the glob looks is watched at the next rescan. */
static void test_directories(void **state)
{
	struct fixture *fx = *state;
	char err[1024] = "";
	struct watch *w;

	mkdir_rel(fx, "logs");
	mkdir_rel(fx, "logs/a");
	mkdir_rel(fx, "logs/b");
	add_source(fx, &fx->a, "app", "logs/*/app.log");
	add_rule(&fx->a, "r1", "app");
	build_rules(&fx->a);
	append(fx, "logs/a/app.log", "cus_a 1\n");
	append(fx, "logs/b/app.log", "cus_b 1\n");
	w = start(fx, &fx->a);
	check(w);
	assert_int_equal(watch_tail_count(w), 2);

	unlink_rel(fx, "logs/b/app.log");
	{
		char p[PATH_MAX];

		assert_int_equal(rmdir(at(fx, p, sizeof(p), "logs/b")), 0);
	}
	settle(w);
	assert_int_equal(watch_tail_count(w), 1);

	/* logs itself has no watch (the glob's directory part is its subdirectories): found by a
	 * rescan. */
	mkdir_rel(fx, "logs/c");
	append(fx, "logs/c/app.log", "cus_c 1\n");
	assert_int_equal(watch_scan(w, err, sizeof(err)), 0);
	check(w);
	assert_int_equal(watch_tail_count(w), 2);
	append(fx, "logs/c/app.log", "cus_c 2\n");
	append(fx, "logs/a/app.log", "cus_a 2\n");
	settle(w);
	read_to_end(fx, "app", "logs/c/app.log");
	read_to_end(fx, "app", "logs/a/app.log");
	watch_free(w);
}

/* A reload: the tails of a source whose settings did not change stay open (the same
 * descriptors, the same records) and apply the new rules from their next read; a changed source
 * and a new one get a first scan, as at start (read_from applies); a removed one's tails are
 * closed with their records left as they were. */
static void test_reconfigure(void **state)
{
	struct fixture *fx = *state;
	char err[1024] = "";
	struct spool_file k1, a1, g1, n1;
	struct tail_ctx ctx;
	struct watch *w;
	int fd_k1, fd_k2;
	long same[3], bad[3];

	mkdir_rel(fx, "keep");
	mkdir_rel(fx, "move");
	mkdir_rel(fx, "gone");
	mkdir_rel(fx, "new");
	add_source(fx, &fx->a, "keep", "keep/*.log");
	add_source(fx, &fx->a, "move", "move/a*.log");
	add_source(fx, &fx->a, "gone", "gone/*.log");
	add_rule(&fx->a, "r_keep", "keep");
	add_rule(&fx->a, "r_move", "move");
	add_rule(&fx->a, "r_gone", "gone");
	build_rules(&fx->a);
	append(fx, "keep/k1.log", "cus_k 1\n");
	append(fx, "keep/k2.log", "cus_k 1\n");
	append(fx, "move/a1.log", "cus_m 1\n");
	append(fx, "move/b1.log", "cus_m 2\n"); /* not a1's copy (tail_copy_of) */
	append(fx, "gone/g1.log", "cus_g 1\n");
	append(fx, "new/n1.log", "cus_n 1\ncus_n 2\n");
	w = start(fx, &fx->a);
	check(w);
	assert_int_equal(watch_tail_count(w), 4);
	fd_k1 = fd_of(fx, "keep/k1.log");
	fd_k2 = fd_of(fx, "keep/k2.log");
	assert_true(fd_k1 >= 0 && fd_k2 >= 0);
	a1 = record(fx, "move", "move/a1.log");

	/* The new configuration: sources in another order, "move" with another glob, "gone"
	 * removed, "new" added (read_from = tail), and a second rule on "keep". */
	add_source(fx, &fx->b, "move", "move/*.log");
	add_source(fx, &fx->b, "keep", "keep/*.log");
	add_source(fx, &fx->b, "new", "new/*.log");
	fx->b.src[2].read_from = CONFIG_READ_FROM_TAIL;
	add_rule(&fx->b, "r_keep", "keep");
	add_rule(&fx->b, "r_keep2", "keep");
	add_rule(&fx->b, "r_move", "move");
	add_rule(&fx->b, "r_new", "new");
	build_rules(&fx->b);
	ctx = ctx_of(fx, &fx->b);

	/* A mapping that names another source is refused, and nothing changes. */
	bad[0] = 0; /* "move" is not "keep" */
	bad[1] = -1;
	bad[2] = -1;
	assert_int_equal(watch_reconfigure(w, &ctx, bad, err, sizeof(err)), -1);
	check(w);
	assert_int_equal(watch_tail_count(w), 4);

	same[0] = -1; /* changed */
	same[1] = 0;  /* "keep" was source 0 */
	same[2] = -1; /* new */
	if (watch_reconfigure(w, &ctx, same, err, sizeof(err)) != 0)
		fail_msg("watch_reconfigure: %s", err);
	check(w);
	assert_int_equal(watch_tail_count(w), 2); /* keep's two files */
	/* The old rules are gone: the kept tails must not use them any more. */
	rule_set_free(fx->a.rules);
	fx->a.rules = NULL;
	assert_int_equal(fd_of(fx, "keep/k1.log"), fd_k1);
	assert_int_equal(fd_of(fx, "keep/k2.log"), fd_k2);
	assert_true(fd_of(fx, "move/a1.log") < 0);
	assert_true(fd_of(fx, "gone/g1.log") < 0);

	/* The first turn after it scans: "move" and "new" as at start. */
	append(fx, "keep/k1.log", "cus_k 2\n");
	settle(w);
	assert_int_equal(watch_tail_count(w), 2 + 2 + 1);
	assert_int_equal(fd_of(fx, "keep/k1.log"), fd_k1);
	read_to_end(fx, "keep", "keep/k1.log");
	k1 = record(fx, "keep", "keep/k1.log");
	assert_int_equal(events_of(fx, &k1, "r_keep"), 2);
	assert_int_equal(events_of(fx, &k1, "r_keep2"), 1); /* only the line read after */
	/* move/a1.log: its record resumed at its checkpoint; move/b1.log: new, from its start. */
	read_to_end(fx, "move", "move/a1.log");
	assert_string_equal(record(fx, "move", "move/a1.log").uid, a1.uid);
	assert_int_equal(events_of(fx, &a1, "r_move"), 1);
	read_to_end(fx, "move", "move/b1.log");
	/* new/n1.log, there at the source's first scan: read_from = tail. */
	read_to_end(fx, "new", "new/n1.log");
	n1 = record(fx, "new", "new/n1.log");
	assert_int_equal(events_of(fx, &n1, "r_new"), 0);
	append(fx, "new/n1.log", "cus_n 3\n");
	/* gone/g1.log: closed, its record as it was (a stop, not a deletion). */
	append(fx, "gone/g1.log", "cus_g 2\n");
	settle(w);
	assert_int_equal(events_of(fx, &n1, "r_new"), 1);
	g1 = record(fx, "gone", "gone/g1.log");
	assert_int_equal(g1.state, SPOOL_FILE_READING);
	assert_int_equal(g1.offset, 8);
	assert_int_equal(events_of(fx, &g1, "r_gone"), 1);

	/* watch_run may run again after a stop, once reconfigured. */
	watch_stop(w);
	assert_int_equal(watch_turn(w, 0, err, sizeof(err)), 1);
	assert_int_equal(watch_reconfigure(w, &ctx, NULL, err, sizeof(err)), 0);
	check(w);
	assert_int_equal(watch_tail_count(w), 0); /* NULL: every source is new */
	settle(w);
	assert_int_equal(watch_tail_count(w), 5);
	read_to_end(fx, "keep", "keep/k1.log");
	watch_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_many_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_renames, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_suspend_resume, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_symlinks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_directories, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reconfigure, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
