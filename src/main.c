/* main: the command line. `run` wires the two halves (ingest: watch/tail/rule; send: sender) to
 * the spool in two threads, while the main thread waits for signals; the other commands are
 * short-lived readers of the configuration or the spool. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "rule.h"
#include "sender.h"
#include "spool.h"
#include "stripe.h"
#include "watch.h"

#define EXIT_RUNTIME 1 /* the agent failed while running */
#define EXIT_USAGE 2   /* bad command line or configuration */
#define EXIT_AUTH 3    /* --once: Stripe refused the API key */

#define SHUTDOWN_GRACE_MS 5000

static void usage(FILE *out)
{
	fprintf(out,
		"usage: logmeter run -c FILE [--once]   tail the sources and send meter events\n"
		"       logmeter check -c FILE          validate the configuration (also: -n)\n"
		"       logmeter test-rule -c FILE [--rule NAME] [FILE|-]\n"
		"                                       show the events each input line makes\n"
		"       logmeter status -c FILE         files, checkpoints and event counts\n"
		"       logmeter options [--markdown]   every configuration option\n"
		"       logmeter --version\n");
}

/* The configuration and everything compiled from it. */
struct setup {
	struct config *cfg;
	struct rule_set *rules;
};

static void setup_free(struct setup *s)
{
	rule_set_free(s->rules);
	config_free(s->cfg);
	s->rules = NULL;
	s->cfg = NULL;
}

static int setup_load(struct setup *s, const char *path)
{
	char err[CONFIG_ERR_MAX];
	enum log_level level;

	err[0] = '\0';
	s->cfg = config_load(path, err, sizeof(err));
	if (s->cfg == NULL)
		goto fail;
	s->rules = rule_set_new(s->cfg, err, sizeof(err));
	if (s->rules == NULL)
		goto fail;
	if (log_level_parse(s->cfg->agent.log_level, &level) == 0)
		log_set_level(level);
	return 0;
fail:
	fprintf(stderr, "%s\n", err);
	setup_free(s);
	return -1;
}

/* ---- run ---------------------------------------------------------------------------------- */

struct agent {
	struct setup setup;
	struct spool *spool; /* the ingest half's handle */
	char instance[128];
	struct watch *watch;
	struct sender *sender;
	pthread_t ingest_thread, sender_thread;
	int ingest_started, sender_started;
	int once;
	int ingest_rc, sender_rc;
	volatile sig_atomic_t ingest_done, sender_done;
};

static void on_commit(void *ud)
{
	sender_notify(ud);
}

/* Worker threads tell the main thread they ended with a signal, so that the main thread has one
 * place to wait: sigwait. */
static void notify_main(void)
{
	kill(getpid(), SIGUSR1);
}

static void *ingest_main(void *arg)
{
	struct agent *a = arg;
	char err[1024] = "";

	/* The daemon carries on after a failed scan (a full disk, say): nothing was checkpointed
	 * past what was committed, and the next event or rescan tries again. */
	if (watch_scan(a->watch, err, sizeof(err)) != 0) {
		log_err("ingest: %s", err);
		if (a->once) {
			a->ingest_rc = -1;
			goto out;
		}
	}
	if (!a->once && watch_run(a->watch, err, sizeof(err)) != 0) {
		log_err("ingest: %s", err);
		a->ingest_rc = -1;
	}
out:
	a->ingest_done = 1;
	notify_main();
	return NULL;
}

static void *sender_main(void *arg)
{
	struct agent *a = arg;
	char err[1024] = "";

	a->sender_rc = sender_run(a->sender, a->once, err, sizeof(err));
	if (a->sender_rc < 0)
		log_err("sender: %s", err);
	a->sender_done = 1;
	notify_main();
	return NULL;
}

static void agent_stop_threads(struct agent *a)
{
	if (a->ingest_started) {
		watch_stop(a->watch);
		pthread_join(a->ingest_thread, NULL);
		a->ingest_started = 0;
	}
	if (a->sender_started) {
		sender_stop(a->sender, SHUTDOWN_GRACE_MS);
		pthread_join(a->sender_thread, NULL);
		a->sender_started = 0;
	}
}

static void agent_close(struct agent *a)
{
	agent_stop_threads(a);
	watch_free(a->watch);
	sender_free(a->sender);
	spool_free(a->spool);
	a->watch = NULL;
	a->sender = NULL;
	a->spool = NULL;
}

/* Opens the spool, the sender and the watch for the setup now in a->setup. */
static int agent_open(struct agent *a)
{
	char err[1024] = "";
	struct tail_ctx ctx;
	const struct config *cfg = a->setup.cfg;

	a->spool = spool_open(cfg->agent.state_dir, SPOOL_READ_WRITE, err, sizeof(err));
	if (a->spool == NULL)
		goto fail;
	if (spool_instance(a->spool, cfg->agent.instance, a->instance, sizeof(a->instance), err,
			   sizeof(err)) != 0)
		goto fail;
	a->sender = sender_new(cfg, err, sizeof(err));
	if (a->sender == NULL)
		goto fail;
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = cfg;
	ctx.rules = a->setup.rules;
	ctx.spool = a->spool;
	ctx.instance = a->instance;
	ctx.on_commit = on_commit;
	ctx.ud = a->sender;
	a->watch = watch_new(&ctx, err, sizeof(err));
	if (a->watch == NULL)
		goto fail;
	return 0;
fail:
	log_err("%s", err);
	agent_close(a);
	return -1;
}

static int agent_start_threads(struct agent *a)
{
	a->ingest_done = a->sender_done = 0;
	if (pthread_create(&a->ingest_thread, NULL, ingest_main, a) != 0)
		return -1;
	a->ingest_started = 1;
	if (a->once)
		return 0;
	if (pthread_create(&a->sender_thread, NULL, sender_main, a) != 0)
		return -1;
	a->sender_started = 1;
	return 0;
}

/* SIGHUP: the new configuration replaces the old one only if it loads and compiles completely;
 * otherwise the agent goes on with the old one. */
static void agent_reload(struct agent *a, const char *path)
{
	struct setup next = {0};

	log_info("SIGHUP: reloading %s", path);
	if (setup_load(&next, path) != 0) {
		log_err("reload failed: keeping the running configuration");
		return;
	}
	agent_close(a);
	setup_free(&a->setup);
	a->setup = next;
	if (agent_open(a) != 0 || agent_start_threads(a) != 0) {
		log_err("reload: could not restart with the new configuration");
		a->ingest_rc = -1;
		a->ingest_done = 1;
		return;
	}
	log_info("configuration reloaded: %zu sources, %zu rules", a->setup.cfg->n_sources,
		 a->setup.cfg->n_rules);
}

static int cmd_run(const char *path, int once)
{
	struct agent a;
	sigset_t set;
	int sig, rc = EXIT_RUNTIME;

	memset(&a, 0, sizeof(a));
	a.once = once;

	/* Every thread inherits this mask; only the main thread takes signals, with sigwait. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (setup_load(&a.setup, path) != 0)
		return EXIT_USAGE;
	if (agent_open(&a) != 0)
		goto out;
	log_info("started: instance %s, %zu sources, %zu rules, spool %s/spool.db%s", a.instance,
		 a.setup.cfg->n_sources, a.setup.cfg->n_rules, a.setup.cfg->agent.state_dir,
		 once ? " (--once)" : "");
	if (agent_start_threads(&a) != 0) {
		log_err("cannot start threads: %s", strerror(errno));
		goto out;
	}

	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			if (!once)
				agent_reload(&a, path);
			continue;
		}
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			agent_stop_threads(&a);
			rc = (a.ingest_rc == 0 && a.sender_rc >= 0) ? 0 : EXIT_RUNTIME;
			break;
		}
		/* SIGUSR1: a worker ended. With --once, everything is read and committed before
		 * the sender starts, so that it can tell "nothing pending" from "not read yet". */
		if (once && a.ingest_done && a.ingest_started) {
			pthread_join(a.ingest_thread, NULL);
			a.ingest_started = 0;
			if (a.ingest_rc != 0)
				break;
			if (pthread_create(&a.sender_thread, NULL, sender_main, &a) != 0)
				break;
			a.sender_started = 1;
			continue;
		}
		if (once && a.sender_done) {
			agent_stop_threads(&a);
			rc = a.sender_rc == 0 ? 0 : a.sender_rc == 1 ? EXIT_AUTH : EXIT_RUNTIME;
			break;
		}
		if (!once && (a.ingest_done || a.sender_done)) {
			log_err("a worker stopped unexpectedly: shutting down");
			agent_stop_threads(&a);
			rc = EXIT_RUNTIME;
			break;
		}
	}
out:
	agent_close(&a);
	setup_free(&a.setup);
	log_info("stopped");
	return rc;
}

/* ---- check -------------------------------------------------------------------------------- */

static int cmd_check(const char *path)
{
	struct setup s = {0};
	char key[STRIPE_KEY_MAX], err[512] = "";

	if (setup_load(&s, path) != 0)
		return EXIT_USAGE;
	/* The key is not part of the configuration's validity (a package installs a working
	 * configuration before any key exists), but say what `run` will find. */
	if (stripe_key_load(s.cfg, key, sizeof(key), err, sizeof(err)) != 0)
		fprintf(stderr, "warning: %s\n", err);
	explicit_bzero(key, sizeof(key));
	printf("%s: OK: %zu files read, %zu sources, %zu rules\n", path, s.cfg->n_files,
	       s.cfg->n_sources, s.cfg->n_rules);
	setup_free(&s);
	return 0;
}

/* ---- test-rule ---------------------------------------------------------------------------- */

static void print_result(unsigned long lineno, const struct rule_result *r)
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
		printf(" value=%s timestamp=%lld (%s)\n", r->value, (long long)r->timestamp, when);
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

static int cmd_test_rule(const char *path, const char *rule_name, const char *input)
{
	struct setup s = {0};
	struct rule_result *results = NULL;
	FILE *in = stdin;
	char *line = NULL;
	size_t cap = 0, n;
	ssize_t len;
	unsigned long lineno = 0;
	int rc = EXIT_USAGE;

	if (setup_load(&s, path) != 0)
		return EXIT_USAGE;
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
		for (size_t src = 0; src < s.cfg->n_sources; src++) {
			n = rule_set_apply(s.rules, src, line, (size_t)len, (int64_t)time(NULL),
					   results);
			for (size_t i = 0; i < n; i++) {
				if (rule_name != NULL && strcmp(results[i].rule->name, rule_name))
					continue;
				print_result(lineno, &results[i]);
			}
		}
	}
	rc = 0;
out:
	if (in != NULL && in != stdin)
		fclose(in);
	free(line);
	free(results);
	setup_free(&s);
	return rc;
}

/* ---- status ------------------------------------------------------------------------------- */

static int status_file(const struct spool_file *f, void *ud)
{
	struct stat st;
	long long size = f->size;

	(void)ud;
	/* The live size, when the path still names the same file, shows the lag behind the writer. */
	if (strcmp(f->state, "gone") != 0 && stat(f->path, &st) == 0 &&
	    (uint64_t)st.st_dev == f->dev && (uint64_t)st.st_ino == f->ino)
		size = (long long)st.st_size;
	printf("  %s\n", f->path);
	printf("    source %s  identity %s (dev %llu, inode %llu)  state %s\n", f->source, f->uid,
	       (unsigned long long)f->dev, (unsigned long long)f->ino, f->state);
	printf("    offset %lld  size %lld  lag %lld bytes\n", (long long)f->offset, size,
	       size > f->offset ? size - (long long)f->offset : 0LL);
	printf("    lines %lld  matched %lld  unmatched %lld  invalid %lld  long lines %lld  "
	       "NUL bytes %lld  events %lld  checkpoint resets %lld\n",
	       (long long)f->counters.lines, (long long)f->counters.matched,
	       (long long)f->counters.unmatched, (long long)f->counters.invalid,
	       (long long)f->counters.long_lines, (long long)f->counters.nul_bytes,
	       (long long)f->counters.events, (long long)f->counters.resets);
	return 0;
}

static int cmd_status(const char *path)
{
	struct config *cfg;
	struct spool *sp = NULL;
	struct spool_counts counts;
	char err[CONFIG_ERR_MAX] = "", last[EVENT_ERROR_MAX] = "", instance[128] = "";
	int rc = EXIT_RUNTIME;

	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	sp = spool_open(cfg->agent.state_dir, SPOOL_READ_ONLY, err, sizeof(err));
	if (sp == NULL)
		goto fail;
	if (spool_counts(sp, &counts, err, sizeof(err)) != 0 ||
	    spool_last_error(sp, last, sizeof(last), err, sizeof(err)) != 0)
		goto fail;
	/* Read-only: show the stored instance without changing it. */
	if (spool_instance(sp, NULL, instance, sizeof(instance), err, sizeof(err)) != 0)
		snprintf(instance, sizeof(instance), "?");
	printf("spool: %s/spool.db\n", cfg->agent.state_dir);
	printf("instance: %s\n", instance);
	printf("events: pending %lld, delivered %lld, dead letters %lld\n",
	       (long long)counts.pending, (long long)counts.delivered, (long long)counts.dead);
	printf("last error: %s\n", last[0] ? last : "none");
	printf("files:\n");
	if (spool_files_foreach(sp, status_file, NULL, err, sizeof(err)) != 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "status: %s\n", err);
out:
	spool_free(sp);
	config_free(cfg);
	return rc;
}

/* ---- dispatch ----------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"once", no_argument, NULL, 'o'},
		{"rule", required_argument, NULL, 'r'},	  {"markdown", no_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},	  {"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}};
	const char *cmd, *conf = NULL, *rule = NULL, *input = NULL;
	int once = 0, markdown = 0, check = 0, c;

	/* GNU getopt permutes: options may come before or after the command. */
	while ((c = getopt_long(argc, argv, "c:nhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 'o':
			once = 1;
			break;
		case 'r':
			rule = optarg;
			break;
		case 'm':
			markdown = 1;
			break;
		case 'V':
			printf("logmeter %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	cmd = check ? "check" : optind < argc ? argv[optind++] : NULL;
	if (cmd == NULL) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (optind < argc)
		input = argv[optind++];
	if (optind < argc || (input != NULL && strcmp(cmd, "test-rule") != 0)) {
		fprintf(stderr, "logmeter %s: unexpected argument '%s'\n", cmd,
			optind < argc ? argv[optind] : input);
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "options") == 0) {
		config_print_options(stdout, markdown);
		return 0;
	}
	if (conf == NULL) {
		fprintf(stderr, "logmeter %s: -c FILE is required\n", cmd);
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "run") == 0)
		return cmd_run(conf, once);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(conf);
	if (strcmp(cmd, "test-rule") == 0)
		return cmd_test_rule(conf, rule, input);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(conf);
	fprintf(stderr, "logmeter: unknown command '%s'\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
