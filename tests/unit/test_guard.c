/* Unit tests of guard: which files guard_open refuses, how refusals and PCRE2 limit hits are
 * counted, and what `status` reads of them. The configuration is DIR/test.conf (DIR its
 * directory, protected), logs in a second directory OUT that nothing protects. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "ingest/guard.h"

#include "fixture.h"

struct gfx {
	struct fixture *fx;  /* DIR: the configuration, the key, the state directory */
	struct fixture *out; /* OUT: logs and targets */
	char path[PATH_MAX];
};

static int setup(void **state)
{
	struct gfx *g = calloc(1, sizeof(*g));

	assert_non_null(g);
	g->fx = fixture_new("test_guard");
	g->out = fixture_new("test_guard_out");
	*state = g;
	return 0;
}

static int teardown(void **state)
{
	struct gfx *g = *state;

	fixture_free(g->fx);
	fixture_free(g->out);
	free(g);
	return 0;
}

/* OUT/REL, in the fixture's buffer. */
static const char *out(const struct gfx *g, const char *rel)
{
	return fixture_path(g->out, rel);
}

/* The configuration: sources "plain" (OUT/logs/ *.log) and "links" (OUT/dirs/ * /app.log, with
 * follow_symlinks = `follow`), the key file DIR/stripe.key. */
static const struct config *load(struct gfx *g, int follow)
{
	fixture_write_text(fixture_path(g->fx, "stripe.key"), "sk_test_guard\n");
	return fixture_config(g->fx,
	                      "[stripe]\napi_key_file = stripe.key\n"
	                      "[source plain]\npath = %s/logs/*.log\nfollow_symlinks = %s\n"
	                      "[source dirs]\npath = %s/dirs/*/app.log\nfollow_symlinks = %s\n",
	                      g->out->dir, follow ? "yes" : "no", g->out->dir,
	                      follow ? "yes" : "no");
}

/* guard_open of `path` for source `si`: returns 0 if it opened, else the errno, with
 * *refused set. */
static int try_open(struct guard *gd, const struct config *cfg, size_t si, const char *path,
                    int *refused, char *err, size_t errlen)
{
	int fd = guard_open(gd, &cfg->sources[si], path, refused, err, errlen);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static void mk(const struct gfx *g, const char *rel)
{
	char cmd[PATH_MAX + 32];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", out(g, rel));
	assert_int_equal(system(cmd), 0);
}

/* follow_symlinks = no: the file itself a link, a directory a wildcard matched a link, both
 * refused; a link in the fixed part of the glob followed; a regular file opened. A NULL guard
 * applies the same rule, protects nothing and counts nothing. */
static void test_no_follow(void **state)
{
	struct gfx *g = *state;
	const struct config *cfg = load(g, 0);
	struct guard *gd;
	char err[1024] = "", target[PATH_MAX], dirs[PATH_MAX];
	int refused = 0;

	mk(g, "logs");
	mk(g, "real");
	mk(g, "real/good");
	fixture_write_text(out(g, "logs/a.log"), "x 1\n");
	fixture_write_text(out(g, "real/t.log"), "x 1\n");
	fixture_write_text(out(g, "real/good/app.log"), "x 1\n");
	snprintf(target, sizeof(target), "%s", out(g, "real/t.log"));
	assert_int_equal(symlink(target, out(g, "logs/link.log")), 0);
	snprintf(dirs, sizeof(dirs), "%s", out(g, "real"));
	assert_int_equal(symlink(dirs, out(g, "dirs")), 0); /* the fixed part: the admin's */
	snprintf(target, sizeof(target), "%s", out(g, "real/good"));
	assert_int_equal(symlink(target, out(g, "real/evil")), 0);

	gd = guard_new(cfg, err, sizeof(err));
	assert_non_null(gd);
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs/a.log"), &refused, err, sizeof(err)), 0);
	assert_int_equal(refused, 0);
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs/link.log"), &refused, err, sizeof(err)),
	                 EPERM);
	assert_int_equal(refused, 1);
	assert_non_null(
	    strstr(err, "a symbolic link, not followed ([source plain] follow_symlinks = no)"));
	/* Seen again at the next rescan: counted once. */
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs/link.log"), &refused, err, sizeof(err)),
	                 EPERM);
	assert_int_equal(
	    try_open(gd, cfg, 1, out(g, "dirs/good/app.log"), &refused, err, sizeof(err)), 0);
	assert_int_equal(
	    try_open(gd, cfg, 1, out(g, "dirs/evil/app.log"), &refused, err, sizeof(err)), EPERM);
	assert_non_null(strstr(err, "reached through a symbolic link (it is "));
	assert_int_equal(guard_counts(gd).refused_links, 2);
	assert_int_equal(guard_counts(gd).refused_protected, 0);
	/* Not a regular file: not opened. */
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs"), &refused, err, sizeof(err)), EINVAL);
	assert_int_equal(refused, 0);
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs/none.log"), &refused, err, sizeof(err)),
	                 ENOENT);
	guard_free(gd);

	assert_int_equal(
	    try_open(NULL, cfg, 0, out(g, "logs/link.log"), &refused, err, sizeof(err)), EPERM);
	assert_int_equal(refused, 1);
	assert_int_equal(guard_counts(NULL).refused_links, 0);
	guard_free(NULL);
}

/* A source's path without a wildcard names its file: a link there that root or this user made is
 * the administrator's and followed without follow_symlinks (docs/security.md); never to the key. */
static void test_literal_link(void **state)
{
	struct gfx *g = *state;
	const struct config *cfg;
	struct guard *gd;
	char err[1024] = "", target[PATH_MAX];
	int refused = 0;

	fixture_write_text(fixture_path(g->fx, "stripe.key"), "sk_test_guard\n");
	cfg = fixture_config(g->fx,
	                     "[stripe]\napi_key_file = stripe.key\n"
	                     "[source cur]\npath = %s/logs/current.log\n"
	                     "[source key]\npath = %s/logs/key.log\n"
	                     "[source glob]\npath = %s/logs/*.txt\n",
	                     g->out->dir, g->out->dir, g->out->dir);
	mk(g, "logs");
	fixture_write_text(out(g, "logs/app-1.log"), "x 1\n");
	assert_int_equal(symlink("app-1.log", out(g, "logs/current.log")), 0);
	assert_int_equal(symlink("app-1.log", out(g, "logs/current.txt")), 0);
	snprintf(target, sizeof(target), "%s", fixture_path(g->fx, "stripe.key"));
	assert_int_equal(symlink(target, out(g, "logs/key.log")), 0);

	gd = guard_new(cfg, err, sizeof(err));
	assert_non_null(gd);
	assert_int_equal(
	    try_open(gd, cfg, 0, out(g, "logs/current.log"), &refused, err, sizeof(err)), 0);
	assert_int_equal(refused, 0);
	assert_int_equal(try_open(gd, cfg, 1, out(g, "logs/key.log"), &refused, err, sizeof(err)),
	                 EPERM);
	assert_non_null(strstr(err, "it is the API key file"));
	/* The same link matched by a wildcard: refused. */
	assert_int_equal(
	    try_open(gd, cfg, 2, out(g, "logs/current.txt"), &refused, err, sizeof(err)), EPERM);
	assert_int_equal(refused, 1);
	guard_free(gd);
}

/* follow_symlinks = yes: links elsewhere followed; into the state or configuration directory,
 * or to the key, refused; a hard link to the key refused too. */
static void test_follow(void **state)
{
	struct gfx *g = *state;
	const struct config *cfg = load(g, 1);
	struct guard *gd;
	char err[1024] = "", target[PATH_MAX];
	int refused = 0;

	mk(g, "logs");
	mk(g, "real");
	fixture_write_text(out(g, "real/t.log"), "x 1\n");
	fixture_write_text(fixture_path(g->fx, "notes.txt"), "x 1\n");
	snprintf(target, sizeof(target), "%s", out(g, "real/t.log"));
	assert_int_equal(symlink(target, out(g, "logs/other.log")), 0);
	snprintf(target, sizeof(target), "%s", fixture_path(g->fx, "stripe.key"));
	assert_int_equal(symlink(target, out(g, "logs/key.log")), 0);
	assert_int_equal(link(target, out(g, "logs/hard.log")), 0);
	snprintf(target, sizeof(target), "%s", fixture_path(g->fx, "notes.txt"));
	assert_int_equal(symlink(target, out(g, "logs/notes.log")), 0);
	snprintf(target, sizeof(target), "%s", fixture_path(g->fx, "state/spool.db"));
	assert_int_equal(symlink(target, out(g, "logs/spool.log")), 0);
	fixture_spool(g->fx);

	gd = guard_new(cfg, err, sizeof(err));
	assert_non_null(gd);
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs/other.log"), &refused, err, sizeof(err)),
	                 0);
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs/key.log"), &refused, err, sizeof(err)),
	                 EPERM);
	assert_non_null(strstr(err, "it is the API key file ("));
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs/hard.log"), &refused, err, sizeof(err)),
	                 EPERM);
	assert_non_null(strstr(err, "it is the API key file ("));
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs/spool.log"), &refused, err, sizeof(err)),
	                 EPERM);
	assert_non_null(strstr(err, "it is a file of the spool"));
	assert_int_equal(try_open(gd, cfg, 0, out(g, "logs/notes.log"), &refused, err, sizeof(err)),
	                 EPERM);
	assert_non_null(strstr(err, "a directory of logmeter's own"));
	assert_int_equal(guard_counts(gd).refused_links, 0);
	assert_int_equal(guard_counts(gd).refused_protected, 4);
	guard_free(gd);
}

/* PCRE2 limit hits are counted per rule and published; status reads them back. */
static void test_limits_status(void **state)
{
	struct gfx *g = *state;
	const struct config *cfg = fixture_config(
	    g->fx, "[source s]\npath = /var/log/x.log\n"
	           "[rule r1]\nsource = s\nevent_name = e\npattern = ^(?<c>a)\ncustomer = c\n"
	           "value = 1\n[rule r2]\nsource = s\nevent_name = e\npattern = ^(?<c>a)\n"
	           "customer = c\nvalue = 1\n");
	char err[512] = "";
	struct guard_status st;
	struct guard *gd;

	fixture_spool(g->fx); /* the state directory */
	gd = guard_new(cfg, err, sizeof(err));
	assert_non_null(gd);
	guard_publish(gd);
	guard_limit_hit(gd, &cfg->rules[0], RULE_LIMIT_MATCH, "/var/log/x.log", 0);
	guard_limit_hit(gd, &cfg->rules[0], RULE_LIMIT_MATCH, "/var/log/x.log", 10);
	guard_limit_hit(gd, &cfg->rules[1], RULE_LIMIT_HEAP, "/var/log/x.log", 20);
	guard_limit_hit(gd, &cfg->rules[1], RULE_LIMIT_NONE, "/var/log/x.log", 30); /* no-op */
	guard_limit_hit(NULL, &cfg->rules[1], RULE_LIMIT_HEAP, "/var/log/x.log", 30);
	assert_int_equal(guard_counts(gd).limit_lines, 3);
	guard_flush(gd);

	assert_int_equal(guard_status_read(g->fx->state, &st, err, sizeof(err)), 0);
	assert_int_equal(st.found, 1);
	assert_int_equal(st.counts.limit_lines, 3);
	assert_int_equal(st.counts.refused_links, 0);
	assert_int_equal(st.n_rules, 2);
	assert_string_equal(st.rules[0].rule, "r1");
	assert_int_equal(st.rules[0].hits[RULE_LIMIT_MATCH], 2);
	assert_int_equal(st.rules[0].hits[RULE_LIMIT_HEAP], 0);
	assert_string_equal(st.rules[1].rule, "r2");
	assert_int_equal(st.rules[1].hits[RULE_LIMIT_HEAP], 1);
	guard_free(gd);

	/* No region written: not found. */
	assert_int_equal(guard_status_read(g->out->dir, &st, err, sizeof(err)), 0);
	assert_int_equal(st.found, 0);
}

/* Tailing warnings are counted per kind with the last file named, escaped so that a path with
 * a newline stays one line of the state file; status reads them back. */
static void test_tailing_status(void **state)
{
	struct gfx *g = *state;
	const struct config *cfg = fixture_config(
	    g->fx, "[source s]\npath = /var/log/x.log\n"
	           "[rule r1]\nsource = s\nevent_name = e\npattern = ^(?<c>a)\ncustomer = c\n"
	           "value = 1\n");
	char err[512] = "", longp[2048];
	struct guard_status st;
	struct guard *gd;

	fixture_spool(g->fx);
	gd = guard_new(cfg, err, sizeof(err));
	assert_non_null(gd);
	guard_publish(gd);
	guard_tailing(gd, GUARD_TAIL_SPARSE, "/var/log/a.log");
	guard_tailing(gd, GUARD_TAIL_SPARSE, "/var/log/b\nrule r9 match_limit 5.log");
	guard_tailing(gd, GUARD_TAIL_ROTATED_STOPPED, "/var/log/x.log.1");
	guard_tailing(NULL, GUARD_TAIL_SPARSE, "/var/log/c.log");
	guard_tailing(gd, GUARD_TAILINGS, "/var/log/c.log"); /* no such kind: nothing */
	assert_int_equal(guard_counts(gd).tailing[GUARD_TAIL_SPARSE], 2);
	guard_flush(gd);

	assert_int_equal(guard_status_read(g->fx->state, &st, err, sizeof(err)), 0);
	assert_int_equal(st.found, 1);
	assert_int_equal(st.counts.tailing[GUARD_TAIL_SPARSE], 2);
	assert_true(st.counts.tailing_last[GUARD_TAIL_SPARSE] > 0);
	assert_string_equal(st.tailing_path[GUARD_TAIL_SPARSE],
	                    "/var/log/b\\nrule r9 match_limit 5.log");
	assert_int_equal(st.counts.tailing[GUARD_TAIL_ROTATED_STOPPED], 1);
	assert_string_equal(st.tailing_path[GUARD_TAIL_ROTATED_STOPPED], "/var/log/x.log.1");
	assert_int_equal(st.counts.tailing[GUARD_TAIL_EMPTY_COPY], 0);
	assert_int_equal(st.counts.tailing_last[GUARD_TAIL_EMPTY_COPY], 0);
	assert_string_equal(st.tailing_path[GUARD_TAIL_EMPTY_COPY], "");
	assert_int_equal(st.n_rules, 0); /* the path's newline made no rule line */

	/* A path longer than the state file keeps is cut, and the region still parses. */
	memset(longp, 'p', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	guard_tailing(gd, GUARD_TAIL_EMPTY_COPY, longp);
	guard_flush(gd);
	assert_int_equal(guard_status_read(g->fx->state, &st, err, sizeof(err)), 0);
	assert_int_equal(st.counts.tailing[GUARD_TAIL_EMPTY_COPY], 1);
	assert_int_equal(strlen(st.tailing_path[GUARD_TAIL_EMPTY_COPY]), GUARD_TAIL_PATH - 1);
	assert_int_equal(st.counts.tailing[GUARD_TAIL_SPARSE], 2);
	assert_string_equal(guard_tailing_name(GUARD_TAIL_SPARSE), "sparse_holes");
	assert_string_equal(guard_tailing_name(GUARD_TAIL_NOT_ROTATION), "not_rotations");
	assert_string_equal(guard_tailing_name(GUARD_TAIL_TAKEN_OVER), "taken_over");
	guard_tailing(gd, GUARD_TAIL_TAKEN_OVER, "/var/log/app/access.log");
	guard_flush(gd);
	assert_int_equal(guard_status_read(g->fx->state, &st, err, sizeof(err)), 0);
	assert_int_equal(st.counts.tailing[GUARD_TAIL_TAKEN_OVER], 1);
	assert_string_equal(st.tailing_path[GUARD_TAIL_TAKEN_OVER], "/var/log/app/access.log");
	guard_free(gd);
}

/* The files left to another source are counted once per path, and anew after a reload
 * (guard_shared_reset); the other refusals are not reset. */
static void test_shared_reset(void **state)
{
	struct gfx *g = *state;
	const struct config *cfg = fixture_config(
	    g->fx, "[source s]\npath = /var/log/x.log\n"
	           "[rule r1]\nsource = s\nevent_name = e\npattern = ^(?<c>a)\ncustomer = c\n"
	           "value = 1\n");
	char err[512] = "";
	struct guard_status st;
	struct guard *gd;

	fixture_spool(g->fx);
	gd = guard_new(cfg, err, sizeof(err));
	assert_non_null(gd);
	guard_publish(gd);
	guard_shared(gd, "/var/log/a.log");
	guard_shared(gd, "/var/log/a.log");
	guard_shared(gd, "/var/log/b.log");
	assert_int_equal(guard_counts(gd).shared_files, 2);
	guard_shared_reset(gd);
	guard_shared_reset(NULL);
	assert_int_equal(guard_counts(gd).shared_files, 0);
	assert_int_equal(guard_status_read(g->fx->state, &st, err, sizeof(err)), 0);
	assert_int_equal(st.counts.shared_files, 0);
	/* Found again by the scan after the reload: counted again, once. */
	guard_shared(gd, "/var/log/a.log");
	guard_shared(gd, "/var/log/a.log");
	assert_int_equal(guard_counts(gd).shared_files, 1);
	guard_free(gd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_no_follow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_literal_link, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_follow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_limits_status, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_reset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tailing_status, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
