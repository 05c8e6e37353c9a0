/* test-rule: what each rule makes of each input line, without spool or network. The input is
 * split into lines by core/lines, as the agent splits a file, so that `test-rule` and `run` make
 * the same events of the same file: NULs removed, CR dropped, over-long lines skipped, and a last
 * line without its newline not read (said so: the agent waits for it). A file is given to the
 * rules of the source that reads it in `run`, as the agent gives it: the first source in
 * configuration order whose path matches it and whose exclude does not (ingest/watch.c). */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/event.h"
#include "core/lines.h"
#include "util/clock.h"

#define TEST_RULE_CHUNK (64 * 1024) /* bytes read at once */

/* What run does with an event of an aggregating rule (store/window.c, spool_window_commit): the
 * line goes into the window of its rule and customer that holds its timestamp, and run bills the
 * window's total, stamped with its start; the lines Stripe would refuse on their own, and a late
 * line whose window would start too close to Stripe's 35 days, stay events of their own. Only
 * the line's own verdict: a window already sent, one of another length made before `aggregate`
 * changed, or a total that would have more than 15 significant digits, moves a line elsewhere,
 * which one line cannot tell. */
static void print_window(const struct rule_result *r, int64_t now)
{
	int64_t len = r->rule->aggregate_s, start;
	enum event_window win = event_window_of(r->timestamp, now);
	char when[32] = "";

	if (win == EVENT_WINDOW_OLD || win == EVENT_WINDOW_FAR_AHEAD)
		return; /* a dead letter of its own, said above */
	/* Floor, for timestamps before the epoch too. */
	start = r->timestamp / len * len;
	if (start > r->timestamp)
		start -= len;
	if (start + len + r->rule->aggregate_grace_s <= now &&
	    start < now - EVENT_MAX_AGE_S + EVENT_WINDOW_AGE_MARGIN_S) {
		printf(" -> sent on its own: its window would start too close to Stripe's 35 days");
		return;
	}
	clock_utc_text(start, when, sizeof(when));
	printf(" -> summed into the window of %lld s starting %lld (%s): billed as that window's "
	       "total for %s, at its start",
	       (long long)len, (long long)start, when, r->customer);
}

static void print_result(long long lineno, const struct rule_result *r, int64_t now)
{
	char when[32] = "";

	switch (r->outcome) {
	case RULE_EVENT:
		/* An epoch timestamp can be past any year gmtime or Stripe knows (INT64_MAX): it
		 * is still shown, as what it is. */
		clock_utc_text(r->timestamp, when, sizeof(when));
		if (when[0] == '\0')
			snprintf(when, sizeof(when), "no calendar date");
		printf("%lld: %s: event event_name=%s customer=%s", lineno, r->rule->name,
		       r->rule->event_name, r->customer);
		if (r->rule->customer_map != NULL)
			printf(" (key %s)", r->customer_key);
		printf(" value=%s timestamp=%lld (%s)", r->value, (long long)r->timestamp, when);
		/* What the sender will do with it (the same check, event_window_of). */
		switch (event_window_of(r->timestamp, now)) {
		case EVENT_WINDOW_OLD:
			printf(" -> dead letter: outside Stripe's window (more than 35 days in the "
			       "past)");
			break;
		case EVENT_WINDOW_FAR_AHEAD:
			printf(
			    " -> dead letter: more than a day ahead of this host's clock (a wrong "
			    "timestamp or clock)");
			break;
		case EVENT_WINDOW_AHEAD:
			if (r->rule->aggregate_s <= 0)
				printf(
				    " -> held: too far ahead of this host's clock for Stripe; sent "
				    "once Stripe takes it");
			break;
		case EVENT_WINDOW_OK:
			break;
		}
		if (r->rule->aggregate_s > 0)
			print_window(r, now);
		printf("\n");
		break;
	case RULE_UNMAPPED:
		printf("%lld: %s: dead letter: %s\n", lineno, r->rule->name, r->reason);
		break;
	case RULE_INVALID:
		printf("%lld: %s: invalid: %s\n", lineno, r->rule->name, r->reason);
		break;
	case RULE_BAD_UTF8:
		printf("%lld: %s: %s\n", lineno, r->rule->name, r->reason);
		break;
	case RULE_NO_MATCH:
		printf("%lld: %s: no match\n", lineno, r->rule->name);
		break;
	}
}

/* What the callback needs. */
struct test_rule_run {
	const struct cli_setup *s;
	const char *rule_name; /* --rule, or NULL */
	long source;           /* the source that reads the input in run; -1: every source */
	struct rule_result *results;
};

/* lines_fn: the verdict of each rule on one line, or why no rule sees it. */
static int test_rule_line(const struct lines_line *l, void *ud)
{
	const struct test_rule_run *r = ud;
	const struct config *cfg = r->s->cfg;
	long long lineno = (long long)l->number;
	int64_t now;

	if (l->kind == LINES_LONG) {
		/* The agent skips such lines before any rule sees them. */
		printf("%lld: skipped: line of %zu bytes is longer than max_line_length (%lld)\n",
		       lineno, l->len, (long long)cfg->agent.max_line_length);
		return 0;
	}
	if (l->kind == LINES_TORN) {
		/* Its end is missing: the agent gives it to no rule (docs/tailing.md, "Lines"). */
		printf("%lld: torn: %zu bytes followed by NUL bytes, its end missing (the agent "
		       "counts it as a torn line; what follows the NULs is a line of its own)\n",
		       lineno, l->len);
		return 0;
	}
	if (l->kind == LINES_NUL) {
		printf("%lld: no line: only NUL bytes (the agent counts them as NUL bytes)\n",
		       lineno);
		return 0;
	}
	now = (int64_t)time(NULL);
	for (size_t src = 0; src < cfg->n_sources; src++) {
		size_t n;

		if (r->source >= 0 && (size_t)r->source != src)
			continue;
		n = rule_set_apply(r->s->rules, src, l->data, l->len, now, r->results);

		for (size_t i = 0; i < n; i++) {
			if (r->rule_name != NULL && strcmp(r->results[i].rule->name, r->rule_name))
				continue;
			print_result(lineno, &r->results[i], now);
		}
	}
	return 0;
}

/* The index of the source whose rules `run` applies to the file `input` (a path as given on the
 * command line, relative to the working directory or absolute): the first source in
 * configuration order whose path (an absolute glob, matched as watch.c matches it) matches it
 * and whose exclude does not match its name. -1 if none does: a copy of a log elsewhere, which
 * `run` would not read (then every source's rules are applied, as to standard input). */
static long test_rule_source(const struct config *cfg, const char *input)
{
	char path[PATH_MAX], cwd[PATH_MAX];
	const char *base;
	int n;

	if (input[0] == '/') {
		n = snprintf(path, sizeof(path), "%s", input);
	} else {
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return -1;
		n = snprintf(path, sizeof(path), "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd,
		             strncmp(input, "./", 2) == 0 ? input + 2 : input);
	}
	if (n < 0 || (size_t)n >= sizeof(path))
		return -1;
	base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	for (size_t si = 0; si < cfg->n_sources; si++) {
		const struct config_source *src = &cfg->sources[si];

		if (fnmatch(src->path, path, FNM_PATHNAME | FNM_PERIOD) != 0)
			continue;
		if (src->exclude != NULL && src->exclude[0] != '\0' &&
		    fnmatch(src->exclude, base, 0) == 0)
			continue;
		return (long)si;
	}
	return -1;
}

int cli_test_rule(const struct cli_args *args)
{
	const char *path = args->config, *rule_name = args->rule, *input = args->input;
	struct cli_setup s = {0};
	struct test_rule_run run = {0};
	struct lines *sp = NULL;
	const struct lines_counts *c;
	FILE *in = stdin;
	char *buf = NULL, err[256] = "";
	size_t got, rule_index = 0;
	int rc = CLI_EXIT_USAGE;

	if (cli_setup_load(&s, path) != 0)
		return CLI_EXIT_USAGE;
	if (rule_name != NULL) {
		size_t i;
		for (i = 0; i < s.cfg->n_rules; i++)
			if (strcmp(s.cfg->rules[i].name, rule_name) == 0)
				break;
		rule_index = i;
		if (i == s.cfg->n_rules) {
			fprintf(stderr, "test-rule: no rule named '%s'\n", rule_name);
			goto out;
		}
	}
	if (input == NULL || strcmp(input, "-") == 0)
		input = "-";
	else if ((in = fopen(input, "rb")) == NULL) {
		fprintf(stderr, "test-rule: %s: %s\n", input, strerror(errno));
		goto out;
	}
	rc = CLI_EXIT_RUNTIME;
	run.s = &s;
	run.rule_name = rule_name;
	run.source = -1;
	if (in != stdin) {
		/* run reads the file under one source only: the rules of the others make nothing
		 * of it, however well they match its lines. */
		run.source = test_rule_source(s.cfg, input);
		if (run.source < 0)
			fprintf(
			    stderr,
			    "test-rule: %s: no source's path matches it (run would not read it): "
			    "the rules of every source are applied\n",
			    input);
		else if (rule_name != NULL &&
		         s.cfg->rules[rule_index].source_index != (size_t)run.source)
			fprintf(stderr,
			        "test-rule: %s is read by source '%s'; rule '%s' reads source '%s' "
			        "and makes nothing of it\n",
			        input, s.cfg->sources[run.source].name, rule_name,
			        s.cfg->sources[s.cfg->rules[rule_index].source_index].name);
	}
	run.results = calloc(rule_set_max_per_source(s.rules) + 1, sizeof(*run.results));
	buf = malloc(TEST_RULE_CHUNK);
	sp = lines_new(0, (size_t)s.cfg->agent.max_line_length, err, sizeof(err));
	if (run.results == NULL || buf == NULL || sp == NULL) {
		fprintf(stderr, "test-rule: %s\n", sp == NULL ? err : "out of memory");
		goto out;
	}
	while ((got = fread(buf, 1, TEST_RULE_CHUNK, in)) > 0)
		if (lines_feed(sp, buf, got, test_rule_line, &run, err, sizeof(err)) < 0) {
			fprintf(stderr, "test-rule: %s: %s\n", input, err);
			goto out;
		}
	if (ferror(in)) {
		fprintf(stderr, "test-rule: %s: %s\n", input, strerror(errno));
		goto out;
	}
	/* The input is finished, the file the agent reads may not be: what it leaves for later. */
	c = lines_counts(sp);
	switch (lines_pending(sp)) {
	case LINES_PENDING_LINE:
	case LINES_PENDING_LONG:
		printf("%lld: not read: the last line has no newline yet (run waits for it)\n",
		       (long long)c->newlines + 1);
		break;
	case LINES_PENDING_NUL:
		printf("%lld: not read: %lld NUL bytes at the end (run waits for what follows "
		       "them)\n",
		       (long long)c->newlines + 1, (long long)(c->fed - c->consumed));
		break;
	case LINES_PENDING_NONE:
		break;
	}
	rc = 0;
out:
	if (in != NULL && in != stdin)
		fclose(in);
	lines_free(sp);
	free(buf);
	free(run.results);
	cli_setup_free(&s);
	return rc;
}
