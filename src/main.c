/* main: the command line. Parses the options and dispatches through the command table to the
 * commands of src/cli/ (run is the agent; the others are short-lived readers of the
 * configuration or the spool). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "util/crash.h"
#include "util/log.h"

/* The options a command accepts (struct command.opts). */
enum {
	O_ONCE = 1u << 0,
	O_RULE = 1u << 1,
	O_MARKDOWN = 1u << 2,
	O_STRIPE = 1u << 3,
	O_DEAD = 1u << 4,
	O_DELIVERED = 1u << 5,
	O_UNSURE = 1u << 6,
	O_REASON = 1u << 7,
	O_SINCE = 1u << 8,
	O_FORCE = 1u << 9,
	O_DRY_RUN = 1u << 10,
	O_STATE = 1u << 11,
	O_JSON = 1u << 12,
	O_SOURCE = 1u << 13,
	O_WINDOWS = 1u << 14,
	O_NO_SEND = 1u << 15,
	O_STAMP_NOW = 1u << 16,
};

/* struct command.takes_input: the words after the command. */
enum { INPUT_NONE = 0, INPUT_ONE = 1, INPUT_MANY = 2 };

static int cmd_options(const struct cli_args *a)
{
	config_print_options(stdout, a->markdown);
	return CLI_EXIT_OK;
}

/* Not in the usage: for tests, the names LOGMETER_CRASH_AT takes. */
static int cmd_crash_points(const struct cli_args *a)
{
	(void)a;
	for (size_t i = 0; crash_point_names[i] != NULL; i++)
		printf("%s\n", crash_point_names[i]);
	return CLI_EXIT_OK;
}

/* The one command table: name, what it runs, whether it needs -c FILE, the words it takes after
 * it (INPUT_*), the options it accepts, and its lines of the usage (NULL: not shown). */
static const struct command {
	const char *name;
	int (*run)(const struct cli_args *a);
	int needs_config, takes_input;
	unsigned opts;
	const char *usage;
} commands[] = {
    {"run", cli_run, 1, 0, O_ONCE | O_NO_SEND,
     "run -c FILE [--once [--no-send]]\n"
     "                       tail the sources and send meter events; with --no-send,\n"
     "                       read and spool every source to its end, send nothing"},
    {"check", cli_check, 1, 0, O_STRIPE,
     "check -c FILE [--stripe]\n"
     "                       validate the configuration (also: -n); with --stripe,\n"
     "                       hold the rules against the account's meters"},
    {"test-rule", cli_test_rule, 1, 1, O_RULE,
     "test-rule -c FILE [--rule NAME] [FILE|-]\n"
     "                       show the events each input line makes"},
    {"status", cli_status, 1, 0, O_JSON | O_SINCE,
     "status -c FILE [--json] [--since TIME]\n"
     "                       files, checkpoints, events, sending, health; exit 1 when\n"
     "                       degraded (paused, or dead letters since TIME)"},
    {"replay", cli_replay, 1, 0,
     O_RULE | O_DEAD | O_DELIVERED | O_UNSURE | O_REASON | O_SINCE | O_FORCE | O_DRY_RUN,
     "replay -c FILE --dead [--rule NAME] [--reason TEXT] [--since TIME]\n"
     "logmeter replay -c FILE --delivered --since TIME [--rule NAME] [--force]\n"
     "logmeter replay -c FILE --unsure [--rule NAME] [--since TIME]\n"
     "                       move dead letters / delivered / unsure events back to\n"
     "                       pending (also: --dry-run)"},
    {"spool", cli_spool, 1, 1, O_STATE | O_WINDOWS | O_FORCE,
     "spool export -c FILE [--state pending|delivered|dead|unsure]\n"
     "                       every event as a JSON line\n"
     "logmeter spool export -c FILE --windows\n"
     "                       every aggregation window with its lines as a JSON line\n"
     "logmeter spool check -c FILE   check the spool database for damage\n"
     "logmeter spool recover -c FILE [--force]\n"
     "                       rebuild a damaged spool from its readable rows (a sound\n"
     "                       one only with --force)\n"
     "logmeter spool start-over -c FILE\n"
     "                       forget a spool that was lost (emptied, missing) or\n"
     "                       adopt another in its place"},
    {"backfill", cli_backfill, 1, INPUT_MANY, O_SOURCE | O_DRY_RUN | O_STAMP_NOW,
     "backfill -c FILE [--source NAME] [--dry-run] [--stamp-now] PATH...\n"
     "                       bill archived logs (plain or .gz), each line once"},
    {"options", cmd_options, 0, 0, O_MARKDOWN, "options [--markdown]   every configuration option"},
    {"crash-points", cmd_crash_points, 0, 0, 0, NULL},
    /* Not in the usage: the metrics endpoint's server process, started by `run`. */
    {"metrics-serve", cli_metrics_serve, 1, INPUT_ONE, 0, NULL},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	const char *lead = "usage: ";

	for (size_t i = 0; i < N_COMMANDS; i++) {
		const char *p = commands[i].usage;

		if (p == NULL)
			continue;
		/* Each line of a command's usage; continuation lines are indented. */
		while (*p != '\0') {
			const char *nl = strchr(p, '\n');
			size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);

			if (*p == ' ')
				fprintf(out, "       %.*s\n", (int)n, p);
			else if (strncmp(p, "logmeter ", 9) == 0)
				fprintf(out, "       %.*s\n", (int)n, p);
			else
				fprintf(out, "%slogmeter %.*s\n", lead, (int)n, p);
			lead = "       ";
			p += n + (nl != NULL);
		}
	}
	fprintf(out, "       logmeter --version\n");
}

static const struct command *command_find(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
	                                         {"once", no_argument, NULL, 'o'},
	                                         {"rule", required_argument, NULL, 'r'},
	                                         {"markdown", no_argument, NULL, 'm'},
	                                         {"help", no_argument, NULL, 'h'},
	                                         {"version", no_argument, NULL, 'V'},
	                                         {"dead", no_argument, NULL, 'D'},
	                                         {"delivered", no_argument, NULL, 'E'},
	                                         {"unsure", no_argument, NULL, 'U'},
	                                         {"stripe", no_argument, NULL, 'K'},
	                                         {"reason", required_argument, NULL, 'R'},
	                                         {"since", required_argument, NULL, 'S'},
	                                         {"force", no_argument, NULL, 'F'},
	                                         {"dry-run", no_argument, NULL, 'Y'},
	                                         {"state", required_argument, NULL, 'T'},
	                                         {"json", no_argument, NULL, 'J'},
	                                         {"source", required_argument, NULL, 'O'},
	                                         {"windows", no_argument, NULL, 'W'},
	                                         {"no-send", no_argument, NULL, 'X'},
	                                         {"stamp-now", no_argument, NULL, 'N'},
	                                         {NULL, 0, NULL, 0}};
	/* The option bit of each long option's value, for the command's check. */
	static const struct {
		int c;
		unsigned bit;
		const char *name;
	} bits[] = {{'o', O_ONCE, "--once"},          {'r', O_RULE, "--rule"},
	            {'m', O_MARKDOWN, "--markdown"},  {'K', O_STRIPE, "--stripe"},
	            {'D', O_DEAD, "--dead"},          {'E', O_DELIVERED, "--delivered"},
	            {'U', O_UNSURE, "--unsure"},      {'R', O_REASON, "--reason"},
	            {'S', O_SINCE, "--since"},        {'F', O_FORCE, "--force"},
	            {'Y', O_DRY_RUN, "--dry-run"},    {'T', O_STATE, "--state"},
	            {'J', O_JSON, "--json"},          {'O', O_SOURCE, "--source"},
	            {'W', O_WINDOWS, "--windows"},    {'X', O_NO_SEND, "--no-send"},
	            {'N', O_STAMP_NOW, "--stamp-now"}};
	struct cli_args a;
	const struct command *cmd;
	const char *name;
	unsigned given = 0;
	int check = 0, c, rc;

	/* First: the key leaves the environment before anything could dump or expose it. */
	if (cli_process_setup() != 0)
		return CLI_EXIT_RUNTIME;
	memset(&a, 0, sizeof(a));
	/* Under systemd, errors before a configuration is loaded carry the journal's priority. */
	log_setup(LOG_FORMAT_TEXT);
	/* GNU getopt permutes: options may come before or after the command. */
	while ((c = getopt_long(argc, argv, "c:nhV", longopts, NULL)) != -1) {
		for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
			if (bits[i].c == c)
				given |= bits[i].bit;
		switch (c) {
		case 'c':
			a.config = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 'o':
			a.once = 1;
			break;
		case 'X':
			a.no_send = 1;
			break;
		case 'r':
			a.rule = optarg;
			break;
		case 'm':
			a.markdown = 1;
			break;
		case 'D':
			a.dead = 1;
			break;
		case 'E':
			a.delivered = 1;
			break;
		case 'U':
			a.unsure = 1;
			break;
		case 'K':
			a.stripe = 1;
			break;
		case 'R':
			a.reason = optarg;
			break;
		case 'S':
			a.since = optarg;
			break;
		case 'F':
			a.force = 1;
			break;
		case 'Y':
			a.dry_run = 1;
			break;
		case 'T':
			a.state = optarg;
			break;
		case 'J':
			a.json = 1;
			break;
		case 'O':
			a.source = optarg;
			break;
		case 'W':
			a.windows = 1;
			break;
		case 'N':
			a.stamp_now = 1;
			break;
		case 'V':
			printf("logmeter %s\n", PACKAGE_VERSION);
			return CLI_EXIT_OK;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (check && optind < argc && strcmp(argv[optind], "check") == 0)
		optind++; /* `logmeter -n check -c FILE` says the same twice */
	name = check ? "check" : optind < argc ? argv[optind++] : NULL;
	if (name == NULL) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	cmd = command_find(name);
	if (cmd == NULL) {
		fprintf(stderr, "logmeter: unknown command '%s'\n", name);
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (cmd->takes_input == INPUT_MANY) {
		if (optind >= argc) {
			fprintf(stderr, "logmeter %s: no PATH given\n", name);
			return CLI_EXIT_USAGE;
		}
		a.inputs = argv + optind;
		a.n_inputs = argc - optind;
		optind = argc;
	} else if (optind < argc && cmd->takes_input) {
		a.input = argv[optind++];
	}
	if (optind < argc) {
		fprintf(stderr, "logmeter %s: unexpected argument '%s'\n", name, argv[optind]);
		return CLI_EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		if ((given & bits[i].bit) && !(cmd->opts & bits[i].bit)) {
			fprintf(stderr, "logmeter %s: %s does not go with this command\n", name,
			        bits[i].name);
			return CLI_EXIT_USAGE;
		}
	}
	if (cmd->needs_config && a.config == NULL) {
		fprintf(stderr, "logmeter %s: -c FILE is required\n", name);
		return CLI_EXIT_USAGE;
	}
	rc = cmd->run(&a);
	cli_process_end();
	return rc;
}
