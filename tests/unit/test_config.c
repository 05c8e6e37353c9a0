#include <stdarg.h>
#include <stddef.h>
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

struct fx {
	char dir[64];
};

/* A valid [source] and [rule]: lines 1-9. */
static const char MINIMAL[] = "[source web]\n"
                              "path = /var/log/web/*.log\n"
                              "\n"
                              "[rule hits]\n"
                              "source = web\n"
                              "event_name = api_requests\n"
                              "pattern = ^(?<cust>\\S+) GET\n"
                              "customer = cust\n"
                              "value = 1\n";

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/test_config.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Full path of `rel` in the test directory, in a static ring of buffers. */
static const char *P(const struct fx *f, const char *rel)
{
	static char bufs[8][PATH_MAX];
	static int next;
	char *b = bufs[next++ % 8];

	snprintf(b, PATH_MAX, "%s/%s", f->dir, rel);
	return b;
}

static void mkdirs(const struct fx *f, const char *rel)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
	for (char *p = path + strlen(f->dir) + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
			*p = '/';
		}
	}
	assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
}

/* Writes `content` to `rel`, creating its directories. */
static const char *wfile(const struct fx *f, const char *rel, const char *content)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(rel, '/');
	const char *path;
	FILE *fp;

	if (slash != NULL) {
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - rel), rel);
		mkdirs(f, dir);
	}
	path = P(f, rel);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(content, 1, strlen(content), fp), strlen(content));
	assert_int_equal(fclose(fp), 0);
	return path;
}

static int count_lines(const char *s)
{
	int n = s[0] != '\0';

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Asserts that `err` has a line starting "PATH:LINE: " ("PATH: " for line 0) that contains
 * every one of the NULL-terminated keywords. */
static void expect_err(const char *err, const char *path, unsigned line, ...)
{
	char prefix[PATH_MAX + 32];
	const char *p = err;

	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", path);
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char *ln = strndup(p, len);
		bool ok = strncmp(ln, prefix, strlen(prefix)) == 0;
		va_list ap;
		const char *kw;

		assert_non_null(ln);
		va_start(ap, line);
		while (ok && (kw = va_arg(ap, const char *)) != NULL)
			ok = strstr(ln, kw) != NULL;
		va_end(ap);
		free(ln);
		if (ok)
			return;
		p += len + (eol != NULL);
	}
	fail_msg("no error starting '%s' with the keywords in:\n%s", prefix, err);
}

/* Loads what must be an invalid configuration; returns the error text. */
static const char *load_bad(const char *path)
{
	static char err[CONFIG_ERR_MAX];
	struct config *cfg;

	strcpy(err, "stale");
	cfg = config_load(path, err, sizeof(err));
	if (cfg != NULL) {
		config_free(cfg);
		fail_msg("%s loaded, but it is invalid", path);
	}
	assert_true(err[0] != '\0');
	assert_null(strstr(err, "stale"));
	return err;
}

static struct config *load_ok(const char *path)
{
	char err[CONFIG_ERR_MAX] = "";
	struct config *cfg = config_load(path, err, sizeof(err));

	if (cfg == NULL)
		fail_msg("%s did not load:\n%s", path, err);
	return cfg;
}

static void test_minimal_defaults(void **state)
{
	const struct fx *f = *state;
	const char *path = wfile(f, "logmeter.conf", MINIMAL);
	struct config *cfg = load_ok(path);
	const struct config_rule *r;

	assert_string_equal(cfg->main_file, path);
	assert_int_equal(cfg->n_files, 1);
	assert_string_equal(cfg->files[0], path);

	assert_null(cfg->agent.instance);
	assert_string_equal(cfg->agent.state_dir, "/var/lib/logmeter");
	assert_string_equal(cfg->agent.include_dir, P(f, "conf.d"));
	assert_string_equal(cfg->agent.log_level, "info");
	assert_int_equal(cfg->agent.batch_lines, 10000);
	assert_int_equal(cfg->agent.delivered_retention, 7 * 86400);
	assert_int_equal(cfg->agent.rescan_interval_ms, 10000);
	assert_int_equal(cfg->agent.max_line_length, 65536);
	assert_int_equal(cfg->agent.allow_core_dumps, 0);

	assert_null(cfg->stripe.api_key_file);
	assert_string_equal(cfg->stripe.api_base, "https://api.stripe.com");
	assert_int_equal(cfg->stripe.request_timeout_ms, 80000);
	assert_int_equal(cfg->stripe.max_concurrency, 8);
	assert_int_equal(cfg->stripe.max_requests_per_second, 0); /* auto: by the key */
	assert_int_equal(cfg->stripe.retry_min_backoff_ms, 500);
	assert_int_equal(cfg->stripe.retry_max_backoff_ms, 30000);
	assert_int_equal(cfg->stripe.auth_pause_ms, 60000);
	assert_null(cfg->stripe.account);
	assert_int_equal(cfg->stripe.unsure_after_s, 23 * 3600);

	assert_int_equal(cfg->n_sources, 1);
	assert_string_equal(cfg->sources[0].name, "web");
	assert_string_equal(cfg->sources[0].path, "/var/log/web/*.log");
	assert_string_equal(cfg->sources[0].exclude, "*.gz");
	assert_int_equal(cfg->sources[0].read_from, CONFIG_READ_FROM_HEAD);
	assert_int_equal(cfg->sources[0].follow_symlinks, 0);
	assert_ptr_equal(cfg->sources[0].loc.file, cfg->files[0]);
	assert_int_equal(cfg->sources[0].loc.line, 1);

	assert_int_equal(cfg->n_rules, 1);
	r = &cfg->rules[0];
	assert_string_equal(r->name, "hits");
	assert_string_equal(r->source, "web");
	assert_int_equal(r->source_index, 0);
	assert_string_equal(r->event_name, "api_requests");
	assert_string_equal(r->pattern, "^(?<cust>\\S+) GET");
	assert_null(r->pattern_file);
	assert_string_equal(r->customer, "cust");
	assert_null(r->customer_map);
	assert_string_equal(r->value, "1");
	assert_null(r->timestamp);
	assert_string_equal(r->timestamp_format, "%d/%b/%Y:%H:%M:%S %z");
	assert_string_equal(r->payload_customer_key, "stripe_customer_id");
	assert_string_equal(r->payload_value_key, "value");
	assert_int_equal(r->match_limit, 1000000);
	assert_int_equal(r->depth_limit, 100000);
	assert_int_equal(r->heap_limit, 64 * 1024 * 1024);
	assert_ptr_equal(r->loc.file, cfg->files[0]);
	assert_int_equal(r->loc.line, 4);
	assert_int_equal(r->pattern_loc.line, 7);
	assert_int_equal(r->customer_loc.line, 8);
	assert_int_equal(r->value_loc.line, 9);
	/* Keys left out point at the section. */
	assert_int_equal(r->timestamp_format_loc.line, 4);
	assert_ptr_equal(r->timestamp_format_loc.file, cfg->files[0]);

	assert_int_equal(config_source_find(cfg, "web"), 0);
	assert_int_equal(config_source_find(cfg, "nope"), -1);
	assert_int_equal(config_source_find(NULL, "web"), -1);
	config_free(cfg);
	config_free(NULL);
}

static void test_all_keys(void **state)
{
	const struct fx *f = *state;
	const char *path = wfile(f, "etc/main.conf",
	                         "# every key set\n"
	                         "[agent]\n"
	                         "instance = web-01\n"
	                         "state_dir = state\n"
	                         "log_level = debug\n"
	                         "batch_lines = 5\n"
	                         "delivered_retention = 2h\n"
	                         "rescan_interval = 500ms\n"
	                         "max_line_length = 1M\n"
	                         "[stripe]\n"
	                         "api_key_file = /etc/logmeter/stripe.key\n"
	                         "api_base = https://api.example.test/\n"
	                         "request_timeout = 2m\n"
	                         "max_concurrency = 64\n"
	                         "max_requests_per_second = 100\n"
	                         "retry_min_backoff = 1s\n"
	                         "retry_max_backoff = 1h\n"
	                         "auth_pause = 1d\n"
	                         "account = acct_1Ab2\n"
	                         "unsure_after = 12h\n"
	                         "[rule bytes]\n"
	                         "source = other\n"
	                         "event_name = bandwidth bytes\n"
	                         "pattern = (?<c>\\w+) (?<n>\\d+) (?<t>\\d+)\n"
	                         "customer = c\n"
	                         "customer_map = maps/customers.csv\n"
	                         "value = n\n"
	                         "timestamp = t\n"
	                         "timestamp_format = epoch\n"
	                         "payload_customer_key = cust.id\n"
	                         "payload_value_key = amount-1\n"
	                         "[source web]\n"
	                         "path = /var/log/web/*.log\n"
	                         "[source other]\n"
	                         "path = /srv/*/log/*.log\n"
	                         "exclude = *.[0-9]\n"
	                         "read_from = tail\n");
	struct config *cfg = load_ok(path);
	const struct config_rule *r;

	assert_string_equal(cfg->agent.instance, "web-01");
	assert_string_equal(cfg->agent.state_dir, P(f, "etc/state"));
	assert_string_equal(cfg->agent.include_dir, P(f, "etc/conf.d"));
	assert_string_equal(cfg->agent.log_level, "debug");
	assert_int_equal(cfg->agent.batch_lines, 5);
	assert_int_equal(cfg->agent.delivered_retention, 7200);
	assert_int_equal(cfg->agent.rescan_interval_ms, 500);
	assert_int_equal(cfg->agent.max_line_length, 1048576);
	assert_string_equal(cfg->stripe.api_key_file, "/etc/logmeter/stripe.key");
	assert_string_equal(cfg->stripe.api_base, "https://api.example.test");
	assert_int_equal(cfg->stripe.request_timeout_ms, 120000);
	assert_int_equal(cfg->stripe.max_concurrency, 64);
	assert_int_equal(cfg->stripe.max_requests_per_second, 100);
	assert_int_equal(cfg->stripe.retry_min_backoff_ms, 1000);
	assert_int_equal(cfg->stripe.retry_max_backoff_ms, 3600000);
	assert_int_equal(cfg->stripe.auth_pause_ms, 86400000);
	assert_string_equal(cfg->stripe.account, "acct_1Ab2");
	assert_int_equal(cfg->stripe.unsure_after_s, 12 * 3600);

	assert_int_equal(cfg->n_sources, 2);
	assert_string_equal(cfg->sources[1].name, "other");
	assert_string_equal(cfg->sources[1].path, "/srv/*/log/*.log");
	assert_string_equal(cfg->sources[1].exclude, "*.[0-9]");
	assert_int_equal(cfg->sources[1].read_from, CONFIG_READ_FROM_TAIL);
	assert_int_equal(cfg->sources[1].loc.line, 34);

	r = &cfg->rules[0];
	/* Defined before its source, in the same file. */
	assert_int_equal(r->source_index, 1);
	assert_string_equal(r->event_name, "bandwidth bytes");
	assert_string_equal(r->customer_map, P(f, "etc/maps/customers.csv"));
	assert_string_equal(r->value, "n");
	assert_string_equal(r->timestamp, "t");
	assert_string_equal(r->timestamp_format, "epoch");
	assert_string_equal(r->payload_customer_key, "cust.id");
	assert_string_equal(r->payload_value_key, "amount-1");
	assert_int_equal(r->loc.line, 21);
	assert_int_equal(r->customer_loc.line, 25);
	assert_int_equal(r->customer_map_loc.line, 26);
	assert_int_equal(r->value_loc.line, 27);
	assert_int_equal(r->timestamp_loc.line, 28);
	assert_int_equal(r->timestamp_format_loc.line, 29);
	config_free(cfg);
}

static const char *rule_text(const char *name, const char *source)
{
	static char buf[4][512];
	static int next;
	char *b = buf[next++ % 4];

	snprintf(b, 512,
	         "[rule %s]\nsource = %s\nevent_name = e\npattern = (?<c>x)\ncustomer = c\n"
	         "value = 1\n",
	         name, source);
	return b;
}

static void test_dropin_order(void **state)
{
	const struct fx *f = *state;
	char text[1024];
	const char *path;
	struct config *cfg;
	static const char *const want[] = {"r0", "ra", "rb", "rZ", "rlow"};

	/* The rule in the main file uses a source from a drop-in read after it. */
	snprintf(text, sizeof(text), "[agent]\nbatch_lines = 7\n\n%s", rule_text("r0", "web"));
	path = wfile(f, "main.conf", text);
	wfile(f, "conf.d/20-b.conf", rule_text("rb", "web"));
	snprintf(text, sizeof(text), "[source web]\npath = /var/log/*.log\n%s",
	         rule_text("ra", "web"));
	wfile(f, "conf.d/10-a.conf", text);
	/* Byte order: 'Z' (0x5a) sorts before 'a' (0x61). */
	wfile(f, "conf.d/a.conf", rule_text("rlow", "web"));
	wfile(f, "conf.d/Z.conf", rule_text("rZ", "web"));
	/* None of these is read: each would be an error. */
	wfile(f, "conf.d/x.conf.example", "this is not a configuration\n");
	wfile(f, "conf.d/.hidden.conf", "this is not a configuration\n");
	wfile(f, "conf.d/notes.txt", "this is not a configuration\n");
	mkdirs(f, "conf.d/dir.conf");

	cfg = load_ok(path);
	assert_int_equal(cfg->n_rules, 5);
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(cfg->rules[i].name, want[i]);
		assert_int_equal(cfg->rules[i].source_index, 0);
		assert_ptr_equal(cfg->rules[i].loc.file, cfg->files[i]);
	}
	assert_int_equal(cfg->n_files, 5);
	assert_string_equal(cfg->files[0], path);
	assert_string_equal(cfg->files[1], P(f, "conf.d/10-a.conf"));
	assert_string_equal(cfg->files[2], P(f, "conf.d/20-b.conf"));
	assert_string_equal(cfg->files[3], P(f, "conf.d/Z.conf"));
	assert_string_equal(cfg->files[4], P(f, "conf.d/a.conf"));
	assert_ptr_equal(cfg->sources[0].loc.file, cfg->files[1]);
	assert_int_equal(cfg->agent.batch_lines, 7);
	config_free(cfg);
}

static void test_include_dir(void **state)
{
	const struct fx *f = *state;
	char text[PATH_MAX + 512];
	const char *path, *err;
	struct config *cfg;

	/* conf.d is not read once include_dir names another directory. */
	wfile(f, "conf.d/bad.conf", "not a configuration\n");

	/* Relative: to the main file's directory, not to the current one. */
	snprintf(text, sizeof(text), "[agent]\ninclude_dir = extra.d\n%s", MINIMAL);
	path = wfile(f, "rel.conf", text);
	wfile(f, "extra.d/1.conf", rule_text("extra", "web"));
	cfg = load_ok(path);
	assert_string_equal(cfg->agent.include_dir, P(f, "extra.d"));
	assert_int_equal(cfg->n_rules, 2);
	assert_string_equal(cfg->rules[1].name, "extra");
	config_free(cfg);

	/* Absolute. */
	snprintf(text, sizeof(text), "[agent]\ninclude_dir = %s\n%s", P(f, "abs/dropins"), MINIMAL);
	path = wfile(f, "abs.conf", text);
	wfile(f, "abs/dropins/1.conf", rule_text("absolute", "web"));
	cfg = load_ok(path);
	assert_string_equal(cfg->agent.include_dir, P(f, "abs/dropins"));
	assert_int_equal(cfg->n_rules, 2);
	assert_string_equal(cfg->rules[1].name, "absolute");
	config_free(cfg);

	/* Missing: fine. */
	snprintf(text, sizeof(text), "[agent]\ninclude_dir = /nonexistent/logmeter.d\n%s", MINIMAL);
	path = wfile(f, "missing.conf", text);
	cfg = load_ok(path);
	assert_int_equal(cfg->n_files, 1);
	config_free(cfg);

	/* Unreadable (a file, so that the test holds as root too). */
	snprintf(text, sizeof(text), "[agent]\ninclude_dir = rel.conf\n%s", MINIMAL);
	path = wfile(f, "unreadable.conf", text);
	err = load_bad(path);
	expect_err(err, path, 2, "key 'include_dir'", "cannot read directory", P(f, "rel.conf"),
	           "Not a directory", NULL);

	/* The default one, unreadable. */
	path = wfile(f, "sub/main.conf", MINIMAL);
	wfile(f, "sub/conf.d", "a file\n");
	err = load_bad(path);
	expect_err(err, P(f, "sub/conf.d"), 0, "cannot read include directory", "Not a directory",
	           NULL);

	/* The main file inside its own include directory is read once. */
	snprintf(text, sizeof(text), "[agent]\ninclude_dir = .\n%s", MINIMAL);
	path = wfile(f, "self/main.conf", text);
	wfile(f, "self/other.conf", rule_text("other", "web"));
	cfg = load_ok(path);
	assert_int_equal(cfg->n_files, 2);
	assert_string_equal(cfg->files[1], P(f, "self/./other.conf"));
	assert_int_equal(cfg->n_rules, 2);
	config_free(cfg);

	/* Only the main file may set it. */
	path = wfile(f, "sub2/main.conf", MINIMAL);
	wfile(f, "sub2/conf.d/1.conf", "[agent]\n\ninclude_dir = /etc\n");
	err = load_bad(path);
	expect_err(err, P(f, "sub2/conf.d/1.conf"), 3, "include_dir", "main file", NULL);
}

/* Writes case `name`'s main file (MINIMAL, then `extra`) and returns its path. */
static const char *write_case(const struct fx *f, const char *name, const char *extra)
{
	char rel[128], text[4096];

	snprintf(rel, sizeof(rel), "%s/main.conf", name);
	snprintf(text, sizeof(text), "%s%s", MINIMAL, extra);
	return wfile(f, rel, text);
}

static void test_errors(void **state)
{
	const struct fx *f = *state;
	const char *path, *err;
	char missing[PATH_MAX + 64];

	/* Lines of `extra` start at 10. */
	path = write_case(f, "unknown_section", "[bogus]\nkey = v\n  more\n");
	err = load_bad(path);
	expect_err(err, path, 10, "unknown section [bogus]", NULL);
	assert_int_equal(count_lines(err), 1); /* its keys are not reported too */

	path = wfile(f, "outside/main.conf", "; comment\nfoo = bar\n[agent]\n");
	expect_err(load_bad(path), path, 2, "key 'foo'", "outside of any section", NULL);

	path = write_case(f, "unknown_key", "[source two]\npath = /x\npattern = y\nfrob = 1\n");
	err = load_bad(path);
	expect_err(err, path, 12, "unknown key 'pattern' in [source two]", "[rule NAME]", NULL);
	expect_err(err, path, 13, "unknown key 'frob' in [source two]", NULL);
	assert_null(strstr(strstr(err, "'frob'"), "belongs"));

	/* An indented key would otherwise be glued to the previous value. */
	path = write_case(f, "indented_key", "[source two]\npath = /x/*.log\n  exclude = *.1\n");
	expect_err(load_bad(path), path, 12, "indented line looks like a key", NULL);
	/* ... but an indented piece of a pattern is a continuation. */
	path = write_case(f, "indented_piece", "[source two]\npath = /x/\n  *.log\n");
	{
		struct config *cfg = load_ok(path);

		assert_string_equal(cfg->sources[1].path, "/x/*.log");
		config_free(cfg);
	}

	/* A drop-in that is a dangling symlink is an error, not silently skipped. */
	path = write_case(f, "dangling", "");
	wfile(f, "dangling/conf.d/ok.conf", "");
	assert_int_equal(symlink(P(f, "dangling/nowhere.conf"), P(f, "dangling/conf.d/gone.conf")),
	                 0);
	expect_err(load_bad(path), P(f, "dangling/conf.d/gone.conf"), 0, "cannot read drop-in",
	           NULL);

	path = write_case(f, "dup_key", "[source two]\npath = /a\n\npath = /b\n");
	expect_err(load_bad(path), path, 13, "duplicate key 'path'", "[source two]", path, ":11)",
	           NULL);

	path = write_case(f, "dup_source", "");
	wfile(f, "dup_source/conf.d/a.conf", "\n[source web]\npath = /b\n");
	expect_err(load_bad(path), P(f, "dup_source/conf.d/a.conf"), 2,
	           "duplicate section [source web]", path, ":1)", NULL);

	path = write_case(f, "dup_rule", "[rule hits]\n");
	expect_err(load_bad(path), path, 10, "duplicate section [rule hits]", ":4)", NULL);

	path = write_case(f, "dup_agent", "[agent]\nbatch_lines = 5\n");
	wfile(f, "dup_agent/conf.d/b.conf", "[agent]\nlog_level = debug\nbatch_lines = 6\n");
	expect_err(load_bad(path), P(f, "dup_agent/conf.d/b.conf"), 3,
	           "duplicate key 'batch_lines' in [agent]", path, ":11)", NULL);

	path = write_case(f, "bad_value", "[agent]\nbatch_lines = 12x\nlog_level = loud\n");
	err = load_bad(path);
	expect_err(err, path, 11, "key 'batch_lines'", "'12x' is not an integer",
	           "(allowed: 1..1000000)", NULL);
	expect_err(err, path, 12, "key 'log_level'", "error, warning, info, debug", NULL);

	path = write_case(f, "missing_key",
	                  "[rule r]\nsource = web\nevent_name = e\npattern = x\nvalue = 1\n");
	expect_err(load_bad(path), path, 10, "[rule r]", "missing required key 'customer'", NULL);

	path = write_case(f, "missing_pattern",
	                  "[rule r]\nsource = web\nevent_name = e\ncustomer = c\nvalue = 1\n");
	expect_err(load_bad(path), path, 10, "missing required key 'pattern'", "pattern_file",
	           NULL);

	path = write_case(f, "missing_source_key", "[source s]\nread_from = tail\n");
	expect_err(load_bad(path), path, 10, "[source s]", "missing required key 'path'", NULL);

	path = write_case(f, "no_source",
	                  "[rule r]\nevent_name = e\nsource = nope\npattern = x\ncustomer = c\n"
	                  "value = 1\n");
	expect_err(load_bad(path), path, 12, "key 'source'", "[source nope]", NULL);

	/* The same from a drop-in. */
	path = write_case(f, "no_source_dropin", "");
	wfile(f, "no_source_dropin/conf.d/r.conf", rule_text("r", "nope"));
	expect_err(load_bad(path), P(f, "no_source_dropin/conf.d/r.conf"), 2, "key 'source'",
	           "[source nope]", NULL);

	wfile(f, "both/p.re", "x\n");
	path = write_case(f, "both",
	                  "[rule r]\nsource = web\nevent_name = e\npattern = x\ncustomer = c\n"
	                  "value = 1\npattern_file = p.re\n");
	expect_err(load_bad(path), path, 16, "key 'pattern_file'", "also has a pattern", ":13)",
	           NULL);

	path = write_case(f, "no_pattern_file",
	                  "[rule r]\nsource = web\nevent_name = e\npattern_file = gone.re\n"
	                  "customer = c\nvalue = 1\n");
	err = load_bad(path);
	expect_err(err, path, 13, "key 'pattern_file'", "cannot open",
	           P(f, "no_pattern_file/gone.re"), "No such file", NULL);
	assert_int_equal(count_lines(err), 1);

	wfile(f, "two_lines/p.re", "a\nb\n");
	path = write_case(f, "two_lines",
	                  "[rule r]\nsource = web\nevent_name = e\npattern_file = p.re\n"
	                  "customer = c\nvalue = 1\n");
	expect_err(load_bad(path), path, 13, "key 'pattern_file'", "more than one line", NULL);

	{
		char text[512];

		snprintf(text, sizeof(text), "[agent]\ninstance = %0250d\n", 7);
		path = write_case(f, "long_line", text);
		err = load_bad(path);
		expect_err(err, path, 11,
		           "line longer than 199 bytes (libinih's limit): continue the value on "
		           "indented lines, or use pattern_file",
		           NULL);
		assert_int_equal(count_lines(err), 1); /* no second error about instance */
	}

	path = write_case(f, "no_equals", "[agent]\njust some words\n");
	expect_err(load_bad(path), path, 11, "expected", "key = value", NULL);

	path = write_case(f, "no_bracket", "[agent\n");
	expect_err(load_bad(path), path, 10, "expected", NULL);

	path = write_case(f, "no_name", "[agent]\n= 5\n");
	expect_err(load_bad(path), path, 11, "missing key name", NULL);

	path = write_case(f, "bad_names", "[rule a/b]\n[source]\n[agent x]\n");
	err = load_bad(path);
	expect_err(err, path, 10, "unknown section [rule a/b]", "NAME", NULL);
	expect_err(err, path, 11, "unknown section [source]", NULL);
	expect_err(err, path, 12, "unknown section [agent x]", NULL);

	path = write_case(f, "relative_glob", "[source rel]\npath = logs/*.log\n");
	expect_err(load_bad(path), path, 11, "key 'path'", "absolute", NULL);

	path = write_case(f, "bad_rule_values",
	                  "[rule r]\nsource = web\nevent_name = e\npattern = x\ncustomer = 1c\n"
	                  "value = 1.2.3\ntimestamp = a-b\npayload_value_key = a b\n");
	err = load_bad(path);
	expect_err(err, path, 14, "key 'customer'", "not a group name", NULL);
	expect_err(err, path, 15, "key 'value'", "neither a group name nor a number", NULL);
	expect_err(err, path, 16, "key 'timestamp'", "not a group name", NULL);
	expect_err(err, path, 17, "key 'payload_value_key'", "not a name", NULL);

	snprintf(missing, sizeof(missing), "%s/nonexistent.conf", f->dir);
	err = load_bad(missing);
	snprintf(missing + strlen(missing), 64, ": cannot open: %s", strerror(ENOENT));
	assert_string_equal(err, missing);
}

static void test_many_errors(void **state)
{
	const struct fx *f = *state;
	const char *path, *err;
	const char *p;
	unsigned last = 0;

	path = wfile(f, "many/main.conf",
	             "[agent]\n"                         /* 1 */
	             "batch_lines = 0\n"                 /* 2 */
	             "nonsense\n"                        /* 3 */
	             "[rule r]\n"                        /* 4: customer missing */
	             "source = web\n"                    /* 5: no such source */
	             "event_name = e\n"                  /* 6 */
	             "value = 1\n"                       /* 7 */
	             "pattern = x\n"                     /* 8 */
	             "[widgets]\n"                       /* 9 */
	             "[stripe]\n"                        /* 10 */
	             "api_base = http://example.com\n"); /* 11 */
	wfile(f, "many/conf.d/1.conf", "[stripe]\napi_base = https://x\n");
	err = load_bad(path);
	expect_err(err, path, 2, "key 'batch_lines'", "out of range", NULL);
	expect_err(err, path, 3, "expected", NULL);
	expect_err(err, path, 4, "missing required key 'customer'", NULL);
	expect_err(err, path, 5, "[source web]", NULL);
	expect_err(err, path, 9, "unknown section [widgets]", NULL);
	expect_err(err, path, 11, "key 'api_base'", "https://", NULL);
	expect_err(err, P(f, "many/conf.d/1.conf"), 2, "duplicate key 'api_base'", NULL);
	assert_int_equal(count_lines(err), 7);
	/* In the order of the files and lines. */
	for (p = err; (p = strstr(p, "main.conf:")) != NULL; p++) {
		unsigned line = (unsigned)strtoul(p + strlen("main.conf:"), NULL, 10);

		assert_true(line >= last);
		last = line;
	}
	assert_true(strstr(err, "main.conf:11:") < strstr(err, "1.conf:2:"));
}

static void test_continuation_and_pattern_file(void **state)
{
	const struct fx *f = *state;
	char a[101], b[101], c[101], want[512], text[2048], pat[512];
	const char *path;
	struct config *cfg;

	/* Three pieces of 100 bytes, each with inner spaces and a ';' not after a space. */
	memset(a, 'a', 100);
	memset(b, 'b', 100);
	memset(c, 'c', 100);
	a[100] = b[100] = c[100] = '\0';
	memcpy(a, "^(?<cust>\\S+) x", 15);
	memcpy(b + 40, "a;b", 3);
	memcpy(c + 50, "= [x]", 5);
	snprintf(want, sizeof(want), "%s%s%s", a, b, c);
	snprintf(text, sizeof(text),
	         "[source web]\n"
	         "path = /var/log/*.log\n"
	         "[rule long]\n"
	         "source = web\n"
	         "event_name = api_requests ; an inline comment\n"
	         "pattern = %s\n"
	         "    %s   \n"
	         "; a comment line does not end the value\n"
	         "\t%s ; and a comment\n"
	         "customer = cust\n"
	         "value = 1\n"
	         "timestamp = cust\n"
	         "timestamp_format = %%d;%%m\n",
	         a, b, c);
	path = wfile(f, "main.conf", text);

	/* pattern_file: verbatim, " ;" and all, from a drop-in, relative to the drop-in. */
	memset(pat, 'p', 300);
	pat[300] = '\0';
	memcpy(pat, "^(?<c>\\S+) ; x ", 15);
	pat[299] = ' '; /* kept: verbatim */
	snprintf(text, sizeof(text), "%s\r\n", pat);
	wfile(f, "conf.d/patterns/p.re", text);
	wfile(f, "conf.d/10-file.conf",
	      "[rule from_file]\r\n"
	      "source = web\r\n"
	      "event_name = e\r\n"
	      "customer = c\r\n"
	      "pattern_file = patterns/p.re\r\n"
	      "value = 2.5\r\n");

	cfg = load_ok(path);
	assert_int_equal(cfg->n_rules, 2);
	assert_int_equal(strlen(cfg->rules[0].pattern), 300);
	assert_string_equal(cfg->rules[0].pattern, want);
	assert_int_equal(cfg->rules[0].pattern_loc.line, 6);
	assert_string_equal(cfg->rules[0].event_name, "api_requests");
	assert_string_equal(cfg->rules[0].timestamp_format, "%d;%m");
	assert_int_equal(cfg->rules[0].customer_loc.line, 10);

	assert_string_equal(cfg->rules[1].pattern, pat);
	assert_int_equal(strlen(cfg->rules[1].pattern), 300);
	assert_string_equal(cfg->rules[1].pattern_file, P(f, "conf.d/patterns/p.re"));
	assert_int_equal(cfg->rules[1].pattern_loc.line, 5);
	assert_ptr_equal(cfg->rules[1].pattern_loc.file, cfg->files[1]);
	assert_string_equal(cfg->rules[1].value, "2.5");
	config_free(cfg);
}

/* libinih takes lines of up to 199 bytes; the reader must not cut one that fits. */
static void test_line_limit(void **state)
{
	const struct fx *f = *state;
	char pat[256], text[1024];
	const char *path, *err;
	struct config *cfg;

	memset(pat, 'q', sizeof(pat));
	pat[199 - strlen("pattern = ")] = '\0';
	snprintf(text, sizeof(text),
	         "[source web]\npath = /x/*\n[rule r]\nsource = web\nevent_name = e\n"
	         "customer = c\nvalue = 1\npattern = %s\n",
	         pat);
	path = wfile(f, "fits.conf", text);
	cfg = load_ok(path);
	assert_string_equal(cfg->rules[0].pattern, pat);
	config_free(cfg);

	strcat(pat, "q");
	snprintf(text, sizeof(text),
	         "[source web]\npath = /x/*\n[rule r]\nsource = web\nevent_name = e\n"
	         "customer = c\nvalue = 1\npattern = %s\n    continued\n",
	         pat);
	path = wfile(f, "long.conf", text);
	err = load_bad(path);
	expect_err(err, path, 8, "line longer than 199 bytes", NULL);
	assert_int_equal(count_lines(err), 1);
}

/* libinih keeps 49 bytes of a section name; the reader keeps all of it. */
static void test_long_names(void **state)
{
	const struct fx *f = *state;
	char n1[101], n2[101], text[2048];
	const char *path, *err;
	struct config *cfg;

	memset(n1, 'n', 100);
	n1[100] = '\0';
	memcpy(n2, n1, sizeof(n2));
	n2[99] = 'm';
	snprintf(text, sizeof(text), "[source %s]\npath = /x/*\n%s%s", n1, rule_text(n1, n1),
	         rule_text(n2, n1));
	path = wfile(f, "main.conf", text);
	cfg = load_ok(path);
	assert_int_equal(cfg->n_rules, 2);
	assert_string_equal(cfg->rules[0].name, n1);
	assert_string_equal(cfg->rules[1].name, n2);
	assert_string_equal(cfg->sources[0].name, n1);
	config_free(cfg);

	snprintf(text, sizeof(text), "[rule %s1]\n", n1);
	path = wfile(f, "toolong.conf", text);
	err = load_bad(path);
	expect_err(err, path, 1, "unknown section [rule", NULL);
}

struct num_case {
	const char *section, *key, *value;
	int64_t want;        /* when ok */
	const char *allowed; /* NULL: must load; else the "(allowed: ...)" text */
	const char *why;
};

static const struct num_case num_cases[] = {
    {"agent", "rescan_interval", "100ms", 100, NULL, NULL},
    {"agent", "rescan_interval", "1h", 3600000, NULL, NULL},
    {"agent", "rescan_interval", "2", 2000, NULL, NULL},
    {"agent", "rescan_interval", "5 s", 5000, NULL, NULL},
    {"agent", "rescan_interval", "3m", 180000, NULL, NULL},
    {"agent", "rescan_interval", "99ms", 0, "(allowed: 100ms..1h)", "out of range"},
    {"agent", "rescan_interval", "61m", 0, "(allowed: 100ms..1h)", "out of range"},
    {"agent", "rescan_interval", "10q", 0, "(allowed: 100ms..1h)", "not a duration"},
    {"agent", "rescan_interval", "10s5", 0, "(allowed: 100ms..1h)", "not a duration"},
    {"agent", "rescan_interval", "-1s", 0, "(allowed: 100ms..1h)", "not a duration"},
    {"agent", "rescan_interval", "", 0, "(allowed: 100ms..1h)", "not a duration"},
    {"agent", "rescan_interval", "99999999999999999999", 0, "(allowed: 100ms..1h)", "too large"},
    {"agent", "rescan_interval", "9223372036854775807d", 0, "(allowed: 100ms..1h)", "too large"},
    {"agent", "delivered_retention", "60", 60, NULL, NULL},
    {"agent", "delivered_retention", "36h", 129600, NULL, NULL},
    {"agent", "delivered_retention", "400d", 34560000, NULL, NULL},
    {"agent", "delivered_retention", "2000ms", 2, "(allowed: 1m..400d)", "out of range"},
    {"agent", "delivered_retention", "59", 0, "(allowed: 1m..400d)", "out of range"},
    {"agent", "delivered_retention", "401d", 0, "(allowed: 1m..400d)", "out of range"},
    {"agent", "delivered_retention", "61500ms", 0, "(allowed: 1m..400d)", "whole number"},
    {"agent", "max_line_length", "256", 256, NULL, NULL},
    {"agent", "max_line_length", "4K", 4096, NULL, NULL},
    {"agent", "max_line_length", "64M", 67108864, NULL, NULL},
    {"agent", "max_line_length", "255", 0, "(allowed: 256..64M)", "out of range"},
    {"agent", "max_line_length", "1G", 0, "(allowed: 256..64M)", "out of range"},
    {"agent", "max_line_length", "1T", 0, "(allowed: 256..64M)", "not a size"},
    {"agent", "max_line_length", "1kB", 0, "(allowed: 256..64M)", "not a size"},
    {"agent", "batch_lines", "1000000", 1000000, NULL, NULL},
    {"agent", "batch_lines", "0", 0, "(allowed: 1..1000000)", "out of range"},
    {"agent", "batch_lines", "-5", 0, "(allowed: 1..1000000)", "out of range"},
    {"agent", "batch_lines", "1.5", 0, "(allowed: 1..1000000)", "not an integer"},
    {"agent", "batch_lines", "1e3", 0, "(allowed: 1..1000000)", "not an integer"},
    {"stripe", "request_timeout", "1s", 1000, NULL, NULL},
    {"stripe", "request_timeout", "10m", 600000, NULL, NULL},
    {"stripe", "request_timeout", "999ms", 0, "(allowed: 1s..10m)", "out of range"},
    {"stripe", "max_concurrency", "65", 0, "(allowed: 1..64)", "out of range"},
    {"stripe", "max_requests_per_second", "10001", 0, "(allowed: auto, or 1..10000)",
     "out of range"},
    {"stripe", "max_requests_per_second", "auto", 0, NULL, NULL},
    {"stripe", "max_requests_per_second", "7", 7, NULL, NULL},
    {"stripe", "max_requests_per_second", "0", 0, "(allowed: auto, or 1..10000)", "out of range"},
    {"stripe", "max_requests_per_second", "Auto", 0, "(allowed: auto, or 1..10000)",
     "neither auto nor an integer"},
    {"stripe", "unsure_after", "23h", 82800, NULL, NULL},
    {"stripe", "unsure_after", "1s", 1, NULL, NULL},
    {"stripe", "unsure_after", "25h", 0, "(allowed: 1s..1d)", "out of range"},
    {"stripe", "retry_min_backoff", "10ms", 10, NULL, NULL},
    {"stripe", "retry_min_backoff", "9ms", 0, "(allowed: 10ms..1m)", "out of range"},
    {"stripe", "auth_pause", "1d", 86400000, NULL, NULL},
    {"stripe", "auth_pause", "25h", 0, "(allowed: 100ms..1d)", "out of range"},
};

static int64_t num_field(const struct config *cfg, const char *key)
{
	static const struct {
		const char *key;
		size_t off;
		bool stripe;
	} fields[] = {
	    {"rescan_interval", offsetof(struct config_agent, rescan_interval_ms), false},
	    {"delivered_retention", offsetof(struct config_agent, delivered_retention), false},
	    {"max_line_length", offsetof(struct config_agent, max_line_length), false},
	    {"batch_lines", offsetof(struct config_agent, batch_lines), false},
	    {"request_timeout", offsetof(struct config_stripe, request_timeout_ms), true},
	    {"retry_min_backoff", offsetof(struct config_stripe, retry_min_backoff_ms), true},
	    {"auth_pause", offsetof(struct config_stripe, auth_pause_ms), true},
	    {"max_requests_per_second", offsetof(struct config_stripe, max_requests_per_second),
	     true},
	    {"unsure_after", offsetof(struct config_stripe, unsure_after_s), true},
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const char *base =
		    fields[i].stripe ? (const char *)&cfg->stripe : (const char *)&cfg->agent;

		if (strcmp(fields[i].key, key) == 0)
			return *(const int64_t *)(base + fields[i].off);
	}
	fail_msg("no field for %s", key);
	return -1;
}

static void test_numbers(void **state)
{
	const struct fx *f = *state;

	for (size_t i = 0; i < sizeof(num_cases) / sizeof(num_cases[0]); i++) {
		const struct num_case *c = &num_cases[i];
		char text[512], name[64];
		const char *path;

		snprintf(text, sizeof(text), "[%s]\n%s = %s\n%s", c->section, c->key, c->value,
		         MINIMAL);
		snprintf(name, sizeof(name), "num%zu.conf", i);
		path = wfile(f, name, text);
		if (c->allowed == NULL) {
			struct config *cfg = load_ok(path);

			if (num_field(cfg, c->key) != c->want)
				fail_msg("%s = %s: got %lld, want %lld", c->key, c->value,
				         (long long)num_field(cfg, c->key), (long long)c->want);
			config_free(cfg);
		} else {
			char key[80];
			const char *err = load_bad(path);

			snprintf(key, sizeof(key), "key '%s'", c->key);
			expect_err(err, path, 2, key, c->why, c->allowed, NULL);
			assert_int_equal(count_lines(err), 1);
		}
	}
}

/* The switches of docs/security.md: yes or no, nothing else; PCRE2's limits within the
 * uint32_t that PCRE2 takes. */
static void test_hardening_keys(void **state)
{
	const struct fx *f = *state;
	char text[1024];
	struct config *cfg;
	const char *err;

	snprintf(text, sizeof(text),
	         "[agent]\n"
	         "allow_core_dumps = yes\n"
	         "[source web]\n"
	         "path = /var/log/web/*.log\n"
	         "follow_symlinks = yes\n"
	         "[rule hits]\n"
	         "source = web\n"
	         "event_name = api_requests\n"
	         "pattern = ^(?<cust>\\S+) GET\n"
	         "customer = cust\n"
	         "value = 1\n"
	         "match_limit = 4294967295\n"
	         "depth_limit = 100\n"
	         "heap_limit = 1M\n");
	cfg = load_ok(wfile(f, "yes.conf", text));
	assert_int_equal(cfg->sources[0].follow_symlinks, 1);
	assert_int_equal(cfg->agent.allow_core_dumps, 1);
	assert_int_equal(cfg->rules[0].match_limit, 4294967295LL);
	assert_int_equal(cfg->rules[0].depth_limit, 100);
	assert_int_equal(cfg->rules[0].heap_limit, 1048576);
	config_free(cfg);

	snprintf(text, sizeof(text), "[agent]\nallow_core_dumps = true\n%s", MINIMAL);
	err = load_bad(wfile(f, "true.conf", text));
	expect_err(err, P(f, "true.conf"), 2, "key 'allow_core_dumps'",
	           "'true' is not one of: no, yes", NULL);
	snprintf(text, sizeof(text), "%smatch_limit = 4294967296\nheap_limit = 1023k\n", MINIMAL);
	err = load_bad(wfile(f, "big.conf", text));
	expect_err(err, P(f, "big.conf"), 10, "key 'match_limit'", "out of range", NULL);
	assert_non_null(strstr(err, ":11: key 'heap_limit': '1023k' is out of range"));
}

static void test_backoff_order(void **state)
{
	const struct fx *f = *state;
	char text[512];
	const char *path;

	snprintf(text, sizeof(text),
	         "[stripe]\nretry_min_backoff = 1m\nretry_max_backoff = 30s\n%s", MINIMAL);
	path = wfile(f, "backoff.conf", text);
	expect_err(load_bad(path), path, 3, "key 'retry_max_backoff'", "30s",
	           "retry_min_backoff (1m)", NULL);

	/* Against the default maximum (30s): reported where the minimum is set. */
	snprintf(text, sizeof(text), "[stripe]\nretry_min_backoff = 1m\n%s", MINIMAL);
	path = wfile(f, "backoff2.conf", text);
	expect_err(load_bad(path), path, 2, "key 'retry_min_backoff'", "retry_max_backoff (30s)",
	           NULL);
}

/* Odd bytes: a byte-order mark, CRLF, a NUL byte. */
static void test_odd_bytes(void **state)
{
	const struct fx *f = *state;
	static const char nul[] = "[agent]\ninst\0ance = x\n";
	char text[1024];
	const char *path, *err;
	struct config *cfg;
	FILE *fp;

	snprintf(text, sizeof(text), "\xEF\xBB\xBF%s", MINIMAL);
	path = wfile(f, "bom.conf", text);
	cfg = load_ok(path);
	assert_string_equal(cfg->sources[0].name, "web");
	config_free(cfg);

	path = wfile(f, "nul.conf", MINIMAL);
	fp = fopen(path, "a");
	assert_non_null(fp);
	assert_int_equal(fwrite(nul, 1, sizeof(nul) - 1, fp), sizeof(nul) - 1);
	assert_int_equal(fclose(fp), 0);
	err = load_bad(path);
	expect_err(err, path, 11, "NUL", NULL);
	assert_int_equal(count_lines(err), 1);
}

/* Thousands of errors: whole lines only, within the buffer, and a count of the rest. */
static void test_error_flood(void **state)
{
	const struct fx *f = *state;
	size_t len = 5000 * 8 + 16;
	char *text = malloc(len), *p = text;
	const char *path, *err, *last;

	assert_non_null(text);
	p += sprintf(p, "[agent]\n");
	for (int i = 0; i < 5000; i++)
		p += sprintf(p, "bad %d\n", i % 10);
	path = wfile(f, "flood.conf", text);
	free(text);
	err = load_bad(path);
	assert_true(strlen(err) < CONFIG_ERR_MAX);
	expect_err(err, path, 2, "expected", NULL);
	last = strrchr(err, '\n');
	assert_non_null(last);
	assert_non_null(strstr(last, " more errors)"));
	/* The line before the count is whole. */
	assert_true(last[-1] == 't' || last[-1] == ')');
}

static void test_api_base(void **state)
{
	const struct fx *f = *state;
	static const struct {
		const char *value, *want; /* want NULL: refused */
	} cases[] = {
	    {"http://127.0.0.1:1234", "http://127.0.0.1:1234"},
	    {"http://127.0.0.1", "http://127.0.0.1"},
	    {"http://127.0.0.1:8080/stripe/", "http://127.0.0.1:8080/stripe"},
	    {"https://api.stripe.com/", "https://api.stripe.com"},
	    {"https://api.stripe.com/v1", NULL},
	    {"http://127.0.0.1:8080/v1/", NULL},
	    {"http://example.com", NULL},
	    {"http://api.stripe.com", NULL},
	    {"http://127.0.0.1.example.com", NULL},
	    {"http://127.0.0.1:99999", NULL},
	    {"http://127.0.0.1:", NULL},
	    {"ftp://127.0.0.1", NULL},
	    {"https://", NULL},
	    {"api.stripe.com", NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512], name[64];
		const char *path;

		snprintf(text, sizeof(text), "[stripe]\napi_base = %s\n%s", cases[i].value,
		         MINIMAL);
		snprintf(name, sizeof(name), "api%zu.conf", i);
		path = wfile(f, name, text);
		if (cases[i].want != NULL) {
			struct config *cfg = load_ok(path);

			assert_string_equal(cfg->stripe.api_base, cases[i].want);
			config_free(cfg);
		} else {
			expect_err(load_bad(path), path, 2, "key 'api_base'", cases[i].value, NULL);
		}
	}
}

/* [stripe] api and meter_events_base, [rule] aggregate and aggregate_grace: defaults, values,
 * bounds (1 s to 1 day), and errors with file and line. */
static void test_v2_and_aggregate(void **state)
{
	const struct fx *f = *state;
	const char *name = P(f, "etc/agg.conf");
	char err[CONFIG_ERR_MAX] = "", text[1024];
	struct config *cfg = config_load_text(MINIMAL, name, err, sizeof(err));

	assert_non_null(cfg);
	assert_int_equal(cfg->stripe.api, CONFIG_API_V1);
	assert_string_equal(cfg->stripe.meter_events_base, "https://meter-events.stripe.com");
	assert_int_equal(cfg->rules[0].aggregate_s, 0);
	assert_int_equal(cfg->rules[0].aggregate_grace_s, 10);
	config_free(cfg);
	snprintf(text, sizeof(text),
	         "[stripe]\napi = v2\nmeter_events_base = http://127.0.0.1:9/\n%s"
	         "aggregate = 1m\naggregate_grace = 0\n",
	         MINIMAL);
	cfg = config_load_text(text, name, err, sizeof(err));
	if (cfg == NULL)
		fail_msg("%s", err);
	assert_int_equal(cfg->stripe.api, CONFIG_API_V2);
	assert_string_equal(cfg->stripe.meter_events_base, "http://127.0.0.1:9");
	assert_int_equal(cfg->rules[0].aggregate_s, 60);
	assert_int_equal(cfg->rules[0].aggregate_grace_s, 0);
	config_free(cfg);
	snprintf(text, sizeof(text), "%saggregate = 2d\n", MINIMAL);
	assert_null(config_load_text(text, name, err, sizeof(err)));
	expect_err(err, name, 10, "key 'aggregate'", "out of range", NULL);
	snprintf(text, sizeof(text), "%saggregate = 1500ms\n", MINIMAL);
	assert_null(config_load_text(text, name, err, sizeof(err)));
	expect_err(err, name, 10, "key 'aggregate'", "whole number", NULL);
	assert_null(config_load_text("[stripe]\napi = v3\n", name, err, sizeof(err)));
	expect_err(err, name, 2, "key 'api'", NULL);
	assert_null(config_load_text("[stripe]\nmeter_events_base = http://example.com\n", name,
	                             err, sizeof(err)));
	expect_err(err, name, 2, "key 'meter_events_base'", "https://", NULL);
}

/* config_warnings' callback: keeps the last message in `ud` (CONFIG_ERR_MAX bytes). */
static void keep_warning(const char *msg, void *ud)
{
	snprintf(ud, CONFIG_ERR_MAX, "%s", msg);
}

/* Valid keys that are mistakes together: aggregate_grace without aggregate and a constant 0
 * with it are refused at their line; api = v2 with api_base moved and meter_events_base left at
 * Stripe's is a warning naming api_base's line. */
static void test_aggregate_mistakes(void **state)
{
	const struct fx *f = *state;
	const char *name = P(f, "etc/mistakes.conf");
	char err[CONFIG_ERR_MAX] = "", text[1024], warning[CONFIG_ERR_MAX] = "";
	struct config *cfg;

	snprintf(text, sizeof(text), "%saggregate_grace = 5s\n", MINIMAL);
	assert_null(config_load_text(text, name, err, sizeof(err)));
	expect_err(err, name, 10, "key 'aggregate_grace'", "does not aggregate", NULL);
	snprintf(text, sizeof(text), "%saggregate = 0\naggregate_grace = 5s\n", MINIMAL);
	assert_null(config_load_text(text, name, err, sizeof(err)));
	expect_err(err, name, 11, "key 'aggregate_grace'", "does not aggregate", NULL);
	static const char *const zeros[] = {"0", "-0.0", "000.000"};

	for (size_t i = 0; i < sizeof(zeros) / sizeof(zeros[0]); i++) {
		snprintf(text, sizeof(text),
		         "[source web]\npath = /x\n[rule hits]\nsource = web\nevent_name = e\n"
		         "pattern = ^(?<c>\\S+)\ncustomer = c\nvalue = %s\naggregate = 1m\n",
		         zeros[i]);
		assert_null(config_load_text(text, name, err, sizeof(err)));
		expect_err(err, name, 8, "key 'value'", "bill nothing", NULL);
		/* Without aggregate, or a constant that is not 0: accepted. */
		snprintf(text, sizeof(text),
		         "[source web]\npath = /x\n[rule hits]\nsource = web\nevent_name = e\n"
		         "pattern = ^(?<c>\\S+)\ncustomer = c\nvalue = %s\n",
		         zeros[i]);
		cfg = config_load_text(text, name, err, sizeof(err));
		if (cfg == NULL)
			fail_msg("%s", err);
		config_free(cfg);
	}

	snprintf(text, sizeof(text), "[stripe]\napi = v2\napi_base = http://127.0.0.1:9\n%s",
	         MINIMAL);
	cfg = config_load_text(text, name, err, sizeof(err));
	if (cfg == NULL)
		fail_msg("%s", err);
	assert_int_equal(config_warnings(cfg, keep_warning, warning), 1);
	expect_err(warning, name, 3, "api_base is http://127.0.0.1:9",
	           "meter_events_base is left at Stripe's https://meter-events.stripe.com", NULL);
	config_free(cfg);
	snprintf(text, sizeof(text),
	         "[stripe]\napi = v2\napi_base = http://127.0.0.1:9\n"
	         "meter_events_base = http://127.0.0.1:9\n%s",
	         MINIMAL);
	cfg = config_load_text(text, name, err, sizeof(err));
	assert_non_null(cfg);
	assert_int_equal(config_warnings(cfg, keep_warning, warning), 0);
	config_free(cfg);
	snprintf(text, sizeof(text), "[stripe]\napi_base = http://127.0.0.1:9\n%s", MINIMAL);
	cfg = config_load_text(text, name, err, sizeof(err));
	assert_non_null(cfg);
	assert_int_equal(config_warnings(cfg, keep_warning, warning), 0); /* v1: no stream */
	config_free(cfg);
}

/* config_load_text reads a string as config_load reads the same bytes from a file: the same
 * values, defaults and errors, relative paths against the name's directory; no drop-ins. */
static void test_load_text(void **state)
{
	const struct fx *f = *state;
	char err[CONFIG_ERR_MAX] = "stale", text[1024];
	const char *name = P(f, "etc/text.conf");
	struct config *from_file, *cfg;

	/* Every drop-in would be an error, and so would reading the name. */
	wfile(f, "etc/conf.d/bad.conf", "not a configuration\n");
	wfile(f, "etc/text.conf", "not a configuration\n");
	snprintf(text, sizeof(text),
	         "[agent]\nstate_dir = state\nbatch_lines = 5\n[stripe]\napi_base = "
	         "http://127.0.0.1:9/\n%s",
	         MINIMAL);
	cfg = config_load_text(text, name, err, sizeof(err));
	if (cfg == NULL)
		fail_msg("%s", err);
	assert_string_equal(err, "");
	assert_string_equal(cfg->main_file, name);
	assert_int_equal(cfg->n_files, 1);
	assert_string_equal(cfg->files[0], name);
	assert_string_equal(cfg->agent.state_dir, P(f, "etc/state"));
	assert_string_equal(cfg->agent.include_dir, P(f, "etc/conf.d"));
	assert_int_equal(cfg->agent.batch_lines, 5);
	assert_string_equal(cfg->stripe.api_base, "http://127.0.0.1:9");
	assert_int_equal(cfg->n_rules, 1);
	assert_int_equal(cfg->rules[0].loc.line, 9);
	assert_ptr_equal(cfg->rules[0].loc.file, cfg->files[0]);

	/* The defaults are config_load's. */
	from_file = load_ok(wfile(f, "file.conf", MINIMAL));
	config_free(cfg);
	cfg = config_load_text(MINIMAL, name, err, sizeof(err));
	assert_non_null(cfg);
	assert_string_equal(cfg->agent.state_dir, from_file->agent.state_dir);
	assert_string_equal(cfg->agent.log_level, from_file->agent.log_level);
	assert_int_equal(cfg->agent.batch_lines, from_file->agent.batch_lines);
	assert_int_equal(cfg->agent.max_line_length, from_file->agent.max_line_length);
	assert_int_equal(cfg->agent.max_open_files, from_file->agent.max_open_files);
	assert_int_equal(cfg->agent.rotate_wait_ms, from_file->agent.rotate_wait_ms);
	assert_int_equal(cfg->agent.min_free_bytes, from_file->agent.min_free_bytes);
	assert_string_equal(cfg->stripe.api_base, from_file->stripe.api_base);
	assert_int_equal(cfg->stripe.request_timeout_ms, from_file->stripe.request_timeout_ms);
	assert_int_equal(cfg->stripe.auth_pause_ms, from_file->stripe.auth_pause_ms);
	assert_string_equal(cfg->sources[0].exclude, from_file->sources[0].exclude);
	assert_string_equal(cfg->rules[0].timestamp_format, from_file->rules[0].timestamp_format);
	config_free(from_file);
	config_free(cfg);

	/* Errors name the name and the line of the text. */
	snprintf(text, sizeof(text), "%s[agent]\nbatch_lines = 0\n", MINIMAL);
	strcpy(err, "stale");
	assert_null(config_load_text(text, name, err, sizeof(err)));
	expect_err(err, name, 11, "key 'batch_lines'", "out of range", NULL);
	assert_int_equal(count_lines(err), 1);

	/* Nothing at all is a configuration of defaults without sources or rules. */
	cfg = config_load_text("", name, err, sizeof(err));
	assert_non_null(cfg);
	assert_int_equal(cfg->n_sources, 0);
	assert_int_equal(cfg->n_rules, 0);
	assert_string_equal(cfg->agent.log_level, "info");
	config_free(cfg);

	assert_null(config_load_text(NULL, name, err, sizeof(err)));
	assert_null(config_load_text(MINIMAL, "", err, sizeof(err)));
}

/* [agent] metrics_listen: numeric IPv4 and bracketed IPv6 addresses with a port; a bad one is
 * refused with file and line; loopback told apart (the agent warns about the others). */
static void test_metrics_listen(void **state)
{
	const struct fx *f = *state;
	struct sockaddr_storage sa;
	socklen_t len = 0;
	int loopback = -1;
	char err[256] = "";
	struct config *cfg;
	const char *e;

	assert_int_equal(
	    config_parse_listen("127.0.0.1:9464", &sa, &len, &loopback, err, sizeof(err)), 0);
	assert_int_equal(sa.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 9464);
	assert_int_equal(loopback, 1);
	assert_int_equal(config_parse_listen("[::1]:0", &sa, &len, &loopback, err, sizeof(err)), 0);
	assert_int_equal(sa.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(loopback, 1);
	assert_int_equal(
	    config_parse_listen("0.0.0.0:9464", &sa, &len, &loopback, err, sizeof(err)), 0);
	assert_int_equal(loopback, 0);
	assert_int_equal(config_parse_listen("[::]:9464", &sa, &len, &loopback, err, sizeof(err)),
	                 0);
	assert_int_equal(loopback, 0);
	assert_int_equal(
	    config_parse_listen("localhost:9464", &sa, &len, &loopback, err, sizeof(err)), -1);
	assert_int_equal(
	    config_parse_listen("127.0.0.1:65536", &sa, &len, &loopback, err, sizeof(err)), -1);
	assert_int_equal(config_parse_listen("127.0.0.1", &sa, &len, &loopback, err, sizeof(err)),
	                 -1);
	assert_int_equal(config_parse_listen("::1:9464", &sa, &len, &loopback, err, sizeof(err)),
	                 -1);

	cfg = load_ok(wfile(f, "ok.conf", "[agent]\nmetrics_listen = [::1]:9464\n"));
	assert_string_equal(cfg->agent.metrics_listen, "[::1]:9464");
	assert_int_equal(cfg->agent.metrics_max_files, 100);
	config_free(cfg);
	cfg = load_ok(wfile(f, "off.conf", "[agent]\nlog_format = json\n"));
	assert_null(cfg->agent.metrics_listen);
	assert_string_equal(cfg->agent.log_format, "json");
	config_free(cfg);
	e = load_bad(wfile(f, "bad.conf", "[agent]\nstate_dir = /x\nmetrics_listen = 9464\n"));
	assert_non_null(strstr(e, "bad.conf:3: "));
	assert_non_null(strstr(e, "metrics_listen"));
	e = load_bad(wfile(f, "bad2.conf", "[agent]\nlog_format = xml\n"));
	assert_non_null(strstr(e, "bad2.conf:2: "));
}

/* config_changes: what a reload changed, per section, from the option table. */
static void test_changes(void **state)
{
	const struct fx *f = *state;
	const char *keys[8];
	struct config *a, *b, *c;

	a = load_ok(wfile(f, "a.conf",
	                  "[agent]\nbatch_lines = 10000\nrescan_interval = 10s\n"
	                  "[stripe]\nmax_concurrency = 4\n"
	                  "[source web]\npath = /var/log/web/*.log\n"
	                  "[source api]\npath = /var/log/api/*.log\n"
	                  "[rule hits]\nsource = web\nevent_name = api_requests\n"
	                  "pattern = ^(?<cust>\\S+) GET\ncustomer = cust\nvalue = 1\n"));
	/* batch_lines left out is its default, 10000: the same. */
	b = load_ok(wfile(f, "b.conf",
	                  "[agent]\nrescan_interval = 20s\nmax_open_files = 99\n"
	                  "[stripe]\nmax_concurrency = 4\n"
	                  "[source api]\npath = /var/log/api/*.txt\nread_from = tail\n"
	                  "[source web]\npath = /var/log/web/*.log\n"
	                  "[source new]\npath = /var/log/new/*.log\n"
	                  "[rule hits]\nsource = web\nevent_name = api_requests\n"
	                  "pattern = ^(?<cust>\\S+) POST\ncustomer = cust\nvalue = 1\n"));

	assert_int_equal(config_changes(a, b, "agent", NULL, keys, 8), 2);
	assert_string_equal(keys[0], "rescan_interval");
	assert_string_equal(keys[1], "max_open_files");
	assert_int_equal(config_changes(a, b, "agent", NULL, keys, 1), 2); /* counted past max */
	assert_int_equal(config_changes(a, b, "stripe", NULL, NULL, 0), 0);
	assert_int_equal(config_changes(a, b, "source", "web", NULL, 0), 0);
	assert_int_equal(config_changes(a, b, "source", "api", keys, 8), 2);
	assert_string_equal(keys[0], "path");
	assert_string_equal(keys[1], "read_from");
	assert_int_equal(config_changes(a, b, "rule", "hits", keys, 8), 1);
	assert_string_equal(keys[0], "pattern");
	assert_int_equal(config_changes(a, a, "rule", "hits", NULL, 0), 0);
	/* Every key of a source, not only path, exclude and read_from: a reload keeps a source's
	 * files only if none changed (docs/architecture.md, Reload). */
	c = load_ok(wfile(f, "c.conf",
	                  "[source web]\npath = /var/log/web/*.log\nfollow_symlinks = yes\n"
	                  "olddir = old\n"
	                  "[source api]\npath = /var/log/api/*.log\nexclude = *.gz\n"
	                  "read_from = head\n"));
	assert_int_equal(config_changes(a, c, "source", "web", keys, 8), 2);
	assert_string_equal(keys[0], "follow_symlinks");
	assert_string_equal(keys[1], "olddir");
	assert_int_equal(config_changes(a, c, "source", "api", NULL, 0), 0); /* defaults written */
	config_free(c);
	/* A section one of them lacks, or no such section. */
	assert_int_equal(config_changes(a, b, "source", "new", NULL, 0), -1);
	assert_int_equal(config_changes(a, b, "rule", "nope", NULL, 0), -1);
	assert_int_equal(config_changes(a, b, "sources", NULL, NULL, 0), -1);
	assert_int_equal(config_changes(a, NULL, "agent", NULL, NULL, 0), -1);
	config_free(a);
	config_free(b);
}

static char *print_options(int markdown)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	assert_non_null(fp);
	config_print_options(fp, markdown);
	assert_int_equal(fclose(fp), 0);
	assert_non_null(buf);
	return buf;
}

static void test_print_options(void **state)
{
	static const char *const keys[] = {
	    "instance",
	    "state_dir",
	    "include_dir",
	    "log_level",
	    "log_format",
	    "batch_lines",
	    "delivered_retention",
	    "rescan_interval",
	    "max_line_length",
	    "max_open_files",
	    "rotate_wait",
	    "durability",
	    "max_spool_bytes",
	    "min_free_bytes",
	    "allow_core_dumps",
	    "metrics_listen",
	    "metrics_max_files",
	    "stale_after",
	    "api_key_file",
	    "api_base",
	    "request_timeout",
	    "max_concurrency",
	    "max_requests_per_second",
	    "retry_min_backoff",
	    "retry_max_backoff",
	    "auth_pause",
	    "account",
	    "unsure_after",
	    "path",
	    "exclude",
	    "read_from",
	    "follow_symlinks",
	    "olddir",
	    "source",
	    "event_name",
	    "pattern",
	    "pattern_file",
	    "customer",
	    "customer_map",
	    "value",
	    "timestamp",
	    "timestamp_format",
	    "payload_customer_key",
	    "payload_value_key",
	    "match_limit",
	    "depth_limit",
	    "heap_limit",
	    "api",
	    "meter_events_base",
	    "aggregate",
	    "aggregate_grace",
	};
	char *plain = print_options(0), *md = print_options(1);
	char needle[128];
	int rows = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(needle, sizeof(needle), "] %s (", keys[i]);
		if (strstr(plain, needle) == NULL)
			fail_msg("plain text lacks %s:\n%s", keys[i], plain);
		snprintf(needle, sizeof(needle), " | `%s` | ", keys[i]);
		if (strstr(md, needle) == NULL)
			fail_msg("markdown lacks %s:\n%s", keys[i], md);
	}
	assert_non_null(
	    strstr(plain, "\n[agent] batch_lines (integer; default 10000; 1..1000000)\n"));
	assert_non_null(
	    strstr(plain, "\n[agent] rescan_interval (duration; default 10s; 100ms..1h)\n"));
	assert_non_null(strstr(plain, "\n[rule NAME] customer (group; default (required); "));
	assert_true(strncmp(md,
	                    "| section | key | type | default | bounds | description |\n"
	                    "|---|---|---|---|---|---|\n",
	                    strlen("| section | key | type | default | bounds | description |\n"
	                           "|---|---|---|---|---|---|\n")) == 0);
	assert_non_null(strstr(md, "\n| [source NAME] | `exclude` | glob | `*.gz` | no '/' | "));
	assert_non_null(
	    strstr(md, "\n| [source NAME] | `read_from` | enum | `head` | head, tail | "));
	assert_non_null(
	    strstr(md, "\n| [stripe] | `retry_max_backoff` | duration | `30s` | 100ms..1h | "));
	for (const char *p = md; (p = strchr(p, '\n')) != NULL; p++)
		rows++;
	assert_int_equal(rows, 2 + (int)(sizeof(keys) / sizeof(keys[0])));
	free(plain);
	free(md);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_minimal_defaults, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_all_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dropin_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_include_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_continuation_and_pattern_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_line_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_long_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hardening_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backoff_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_base, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_odd_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_flood, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_text, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_changes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metrics_listen, setup, teardown),
	    cmocka_unit_test(test_print_options),
	    cmocka_unit_test_setup_teardown(test_v2_and_aggregate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_aggregate_mistakes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
