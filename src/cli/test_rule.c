/* test-rule: what each rule makes of each input line, without spool or network. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/event.h"

static void print_result(unsigned long lineno, const struct rule_result *r, int64_t now)
{
	char when[32] = "";
	time_t t = (time_t)r->timestamp;
	struct tm tm;

	switch (r->outcome) {
	case RULE_EVENT:
		if (gmtime_r(&t, &tm) != NULL)
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%lu: %s: event event_name=%s customer=%s", lineno, r->rule->name,
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
			printf(" -> held: too far ahead of this host's clock for Stripe; sent once "
			       "Stripe takes it");
			break;
		case EVENT_WINDOW_OK:
			break;
		}
		printf("\n");
		break;
	case RULE_UNMAPPED:
		printf("%lu: %s: dead letter: %s\n", lineno, r->rule->name, r->reason);
		break;
	case RULE_INVALID:
		printf("%lu: %s: invalid: %s\n", lineno, r->rule->name, r->reason);
		break;
	case RULE_NO_MATCH:
		printf("%lu: %s: no match\n", lineno, r->rule->name);
		break;
	}
}

int cli_test_rule(const struct cli_args *args)
{
	const char *path = args->config, *rule_name = args->rule, *input = args->input;
	struct cli_setup s = {0};
	struct rule_result *results = NULL;
	FILE *in = stdin;
	char *line = NULL;
	size_t cap = 0, n;
	ssize_t len;
	unsigned long lineno = 0;
	int64_t now;
	int rc = CLI_EXIT_USAGE;

	if (cli_setup_load(&s, path) != 0)
		return CLI_EXIT_USAGE;
	if (rule_name != NULL) {
		size_t i;
		for (i = 0; i < s.cfg->n_rules; i++)
			if (strcmp(s.cfg->rules[i].name, rule_name) == 0)
				break;
		if (i == s.cfg->n_rules) {
			fprintf(stderr, "test-rule: no rule named '%s'\n", rule_name);
			goto out;
		}
	}
	if (input != NULL && strcmp(input, "-") != 0) {
		in = fopen(input, "r");
		if (in == NULL) {
			fprintf(stderr, "test-rule: %s: %s\n", input, strerror(errno));
			goto out;
		}
	}
	results = calloc(rule_set_max_per_source(s.rules) + 1, sizeof(*results));
	if (results == NULL)
		goto out;
	while ((len = getline(&line, &cap, in)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		/* The tail skips such lines before any rule sees them. */
		if (len > s.cfg->agent.max_line_length) {
			printf("%lu: skipped: line of %lld bytes is longer than max_line_length "
			       "(%lld)\n",
			       lineno, (long long)len, (long long)s.cfg->agent.max_line_length);
			continue;
		}
		now = (int64_t)time(NULL);
		for (size_t src = 0; src < s.cfg->n_sources; src++) {
			n = rule_set_apply(s.rules, src, line, (size_t)len, now, results);
			for (size_t i = 0; i < n; i++) {
				if (rule_name != NULL && strcmp(results[i].rule->name, rule_name))
					continue;
				print_result(lineno, &results[i], now);
			}
		}
	}
	rc = 0;
out:
	if (in != NULL && in != stdin)
		fclose(in);
	free(line);
	free(results);
	cli_setup_free(&s);
	return rc;
}
