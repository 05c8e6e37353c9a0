/* main: the command line. `run` wires the two halves (ingest: watch/tail/rule; send: sender) to
 * the spool in two threads, while the main thread waits for signals; the other commands are
 * short-lived readers of the configuration or the spool. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "account.h"
#include "admin.h"
#include "config.h"
#include "crash.h"
#include "health.h"
#include "log.h"
#include "rule.h"
#include "sender.h"
#include "space.h"
#include "spool.h"
#include "stripe.h"
#include "watch.h"

#define EXIT_RUNTIME 1 /* the agent failed while running */
#define EXIT_USAGE 2   /* bad command line or configuration */
#define EXIT_AUTH 3    /* --once: Stripe refused the API key */

#define SHUTDOWN_GRACE_MS 5000

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: logmeter run -c FILE [--once]   tail the sources and send meter events\n"
	    "       logmeter check -c FILE [--stripe]\n"
	    "                                       validate the configuration (also: -n); with\n"
	    "                                       --stripe, hold the rules against the "
	    "account's\n"
	    "                                       meters\n"
	    "       logmeter test-rule -c FILE [--rule NAME] [FILE|-]\n"
	    "                                       show the events each input line makes\n"
	    "       logmeter status -c FILE         files, checkpoints and event counts\n"
	    "       logmeter replay -c FILE --dead [--rule NAME] [--reason TEXT] [--since TIME]\n"
	    "       logmeter replay -c FILE --delivered --since TIME [--rule NAME] [--force]\n"
	    "       logmeter replay -c FILE --unsure [--rule NAME] [--since TIME]\n"
	    "                                       move dead letters / delivered / unsure events\n"
	    "                                       back to pending (also: --dry-run)\n"
	    "       logmeter spool export -c FILE [--state pending|delivered|dead|unsure]\n"
	    "                                       every event as a JSON line\n"
	    "       logmeter spool check -c FILE    check the spool database for damage\n"
	    "       logmeter spool recover -c FILE  rebuild a damaged spool from its readable "
	    "rows\n"
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
	struct space *space; /* the ingest half's room and pause (space.c) */
	struct watch *watch;
	struct sender *sender;
	pthread_t ingest_thread, sender_thread;
	int ingest_started, sender_started;
	int once;
	int ingest_rc, sender_rc;
	int once_partial; /* --once stopped reading for lack of room (space.c): exit 1 */
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

	/* Started after the state directory's lock is taken: the state file is this agent's. */
	space_publish(a->space);
	/* The daemon carries on after a failed scan (a full disk, say): nothing was checkpointed
	 * past what was committed, and the next event or rescan tries again. A pause for room
	 * (space.c) is no failure: it was logged, and reading resumes by itself. */
	if (watch_scan(a->watch, err, sizeof(err)) != 0 && !space_paused(a->space)) {
		log_err("ingest: %s", err);
		if (a->once) {
			a->ingest_rc = -1;
			goto out;
		}
	}
	if (a->once && space_paused(a->space)) {
		/* --once has no sender running yet to make room: deliver what was read. */
		log_warn(
		    "run --once: reading stopped for lack of room in the spool; delivering what "
		    "was read; the next run reads the rest");
		a->once_partial = 1;
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

	/* Started after the state directory's lock is taken, as the ingest thread. */
	sender_publish(a->sender);
	a->sender_rc = sender_run(a->sender, a->once, err, sizeof(err));
	if (a->sender_rc < 0 || a->sender_rc == 2)
		log_err("sender: %s", err);
	a->sender_done = 1;
	notify_main();
	return NULL;
}

static void agent_stop_threads(struct agent *a)
{
	if (a->ingest_started) {
		watch_stop(a->watch);
		/* Told to stop, maybe committing its last batch (1st "shutdown" crash point). */
		crash_point("shutdown");
		pthread_join(a->ingest_thread, NULL);
		a->ingest_started = 0;
	}
	if (a->sender_started) {
		sender_stop(a->sender, SHUTDOWN_GRACE_MS);
		crash_point("shutdown"); /* finishing its requests in flight */
		pthread_join(a->sender_thread, NULL);
		a->sender_started = 0;
	}
}

static void agent_close(struct agent *a)
{
	agent_stop_threads(a);
	watch_free(a->watch);
	sender_free(a->sender);
	space_free(a->space);
	spool_free(a->spool);
	a->watch = NULL;
	a->space = NULL;
	a->sender = NULL;
	a->spool = NULL;
}

struct orphan_check {
	const struct config *cfg;
	char last[128]; /* the last orphaned source reported: records come ordered by source */
};

static int warn_orphan(const struct spool_file *f, void *ud)
{
	struct orphan_check *oc = ud;

	if (config_source_find(oc->cfg, f->source) >= 0 || strcmp(oc->last, f->source) == 0)
		return 0;
	snprintf(oc->last, sizeof(oc->last), "%s", f->source);
	log_warn("the spool has checkpoints of [source %s], which the configuration no longer "
	         "has; if it was renamed, its files are new to the renamed source and will be read "
	         "(and billed) again from where read_from says: rename it back to avoid that",
	         f->source);
	return 0;
}

/* Opens the spool, the sender and the watch for the setup now in a->setup. */
static int agent_open(struct agent *a)
{
	char err[1024] = "";
	struct tail_ctx ctx;
	const struct config *cfg = a->setup.cfg;

	a->spool = spool_open(cfg->agent.state_dir, SPOOL_READ_WRITE, err, sizeof(err));
	/* A damaged spool is refused before anything is written to it (docs/spool.md). */
	if (a->spool == NULL || spool_verify(a->spool, err, sizeof(err)) != 0 ||
	    spool_set_durability(a->spool,
	                         cfg->agent.durability == CONFIG_DURABILITY_NORMAL
	                             ? SPOOL_DURABILITY_NORMAL
	                             : SPOOL_DURABILITY_STRICT,
	                         err, sizeof(err)) != 0)
		goto fail;
	if (spool_instance(a->spool, cfg->agent.instance, a->instance, sizeof(a->instance), err,
	                   sizeof(err)) != 0)
		goto fail;
	{
		struct orphan_check oc = {.cfg = cfg};

		if (spool_files_foreach(a->spool, warn_orphan, &oc, err, sizeof(err)) != 0)
			goto fail;
	}
	a->sender = sender_new(cfg, err, sizeof(err));
	if (a->sender == NULL)
		goto fail;
	a->space = space_new(cfg, a->spool, err, sizeof(err));
	if (a->space == NULL)
		goto fail;
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = cfg;
	ctx.rules = a->setup.rules;
	ctx.spool = a->spool;
	ctx.instance = a->instance;
	ctx.on_commit = on_commit;
	ctx.ud = a->sender;
	ctx.space = a->space;
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

/* Two agents on one spool would each read every file with their own checkpoints and bill each
 * new file twice: the first takes an exclusive lock for its lifetime (flock(2), released by the
 * kernel when the process dies, so a crash never leaves a stale lock). Returns the descriptor,
 * or -1. */
static int lock_state_dir(const char *state_dir)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/agent.lock", state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		log_err("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK)
			log_err("another logmeter is already running with state_dir %s (%s is "
			        "locked): refusing to start a second one on the same spool",
			        state_dir, path);
		else
			log_err("cannot lock %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* SIGHUP: the new configuration replaces the old one only if it loads and compiles completely;
 * otherwise the agent goes on with the old one. */
static int agent_reload(struct agent *a, const char *path)
{
	struct setup next = {0};

	log_info("SIGHUP: reloading %s", path);
	if (setup_load(&next, path) != 0) {
		log_err("reload failed: keeping the running configuration");
		return -1;
	}
	/* Another spool has other checkpoints: every file would be read and billed again. */
	if (strcmp(next.cfg->agent.state_dir, a->setup.cfg->agent.state_dir) != 0) {
		log_err("reload refused: state_dir changed from %s to %s; moving the spool needs a "
		        "restart (and moving its files): keeping the running configuration",
		        a->setup.cfg->agent.state_dir, next.cfg->agent.state_dir);
		setup_free(&next);
		return -1;
	}
	agent_close(a);
	setup_free(&a->setup);
	a->setup = next;
	if (agent_open(a) != 0 || agent_start_threads(a) != 0) {
		log_err("reload: could not restart with the new configuration");
		a->ingest_rc = -1;
		a->ingest_done = 1;
		return -1;
	}
	log_info("configuration reloaded: %zu sources, %zu rules", a->setup.cfg->n_sources,
	         a->setup.cfg->n_rules);
	return 0;
}

/* sd_notify READY=1 with a STATUS line (systemctl status shows it); `note` may be NULL. */
static void notify_ready(const struct agent *a, const char *note)
{
	health_notify("READY=1\nSTATUS=running: %zu sources, %zu rules%s%s",
	              a->setup.cfg->n_sources, a->setup.cfg->n_rules, note ? "; " : "",
	              note ? note : "");
}

/* Waits for one of `set`'s signals. Under a systemd watchdog it wakes at hw->next_at to check
 * the workers and ping (health_watch_tick), so that the pings continue however rarely signals
 * come. Returns the signal, or -1 (a check was due, or EINTR). */
static int wait_signal(const sigset_t *set, struct health_watch *hw, const struct agent *a)
{
	struct timespec ts;
	int64_t now, wait;
	int sig, running[HEALTH_WORKERS];

	if (hw->interval_ms <= 0)
		return sigwait(set, &sig) == 0 ? sig : -1;
	now = health_now_ms();
	if (now >= hw->next_at) {
		running[HEALTH_INGEST] = a->ingest_started && !a->ingest_done;
		running[HEALTH_SENDER] = a->sender_started && !a->sender_done;
		health_watch_tick(hw, running, now);
	}
	wait = hw->next_at > now ? hw->next_at - now : 1;
	ts.tv_sec = (time_t)(wait / 1000);
	ts.tv_nsec = (long)(wait % 1000) * 1000000L;
	sig = sigtimedwait(set, NULL, &ts);
	return sig > 0 ? sig : -1;
}

/* After an interrupted --once: returns 0 if nothing is pending, else logs how much is left and
 * returns -1. */
static int once_pending(struct agent *a)
{
	struct spool_counts counts;
	char err[512] = "";

	if (spool_counts(a->spool, &counts, err, sizeof(err)) != 0) {
		log_err("%s", err);
		return -1;
	}
	if (counts.pending == 0)
		return 0;
	log_warn("stopped before delivering everything: %lld events still pending (they are sent "
	         "by the next run)",
	         (long long)counts.pending);
	return -1;
}

static int cmd_run(const char *path, int once)
{
	struct agent a;
	struct health_watch hw;
	sigset_t set;
	int sig, rc = EXIT_RUNTIME, lock_fd = -1;

	memset(&a, 0, sizeof(a));
	a.once = once;
	crash_init(); /* a test's LOGMETER_CRASH_AT: its warnings come first */

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
	lock_fd = lock_state_dir(a.setup.cfg->agent.state_dir);
	if (lock_fd < 0)
		goto out;
	log_info("started: instance %s, %zu sources, %zu rules, spool %s/spool.db%s", a.instance,
	         a.setup.cfg->n_sources, a.setup.cfg->n_rules, a.setup.cfg->agent.state_dir,
	         once ? " (--once)" : "");
	if (agent_start_threads(&a) != 0) {
		log_err("cannot start threads: %s", strerror(errno));
		goto out;
	}
	/* systemd (Type=notify): ready once the threads run; the backlog is read after. */
	health_watch_init(&hw, health_now_ms());
	notify_ready(&a, NULL);

	for (;;) {
		sig = wait_signal(&set, &hw, &a);
		if (sig < 0)
			continue;
		if (sig == SIGHUP) {
			struct timespec mono;
			int reloaded;

			if (once)
				continue;
			clock_gettime(CLOCK_MONOTONIC, &mono);
			health_notify("RELOADING=1\nMONOTONIC_USEC=%lld\nSTATUS=reloading %s",
			              (long long)mono.tv_sec * 1000000LL + mono.tv_nsec / 1000,
			              path);
			reloaded = agent_reload(&a, path);
			health_watch_reset(&hw, health_now_ms());
			notify_ready(&a,
			             reloaded == 0 ? NULL : "the last reload failed, see the log");
			/* A reload that could not restart the workers ends the agent, below. */
			if (!(a.ingest_done || a.sender_done))
				continue;
		}
		if (sig == SIGTERM || sig == SIGINT) {
			health_notify("STOPPING=1\nSTATUS=stopping");
			log_info("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			agent_stop_threads(&a);
			rc = (a.ingest_rc == 0 && a.sender_rc >= 0) ? 0 : EXIT_RUNTIME;
			/* --once promises everything deliverable was delivered; a stop cuts that.
			 */
			if (once && rc == 0 && once_pending(&a) != 0)
				rc = EXIT_RUNTIME;
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
			if (rc == 0 && a.once_partial)
				rc = EXIT_RUNTIME;
			break;
		}
		if (!once && (a.ingest_done || a.sender_done)) {
			log_err("a worker stopped unexpectedly: shutting down");
			health_notify("STOPPING=1\nSTATUS=a worker stopped unexpectedly");
			agent_stop_threads(&a);
			rc = EXIT_RUNTIME;
			break;
		}
	}
out:
	agent_close(&a);
	setup_free(&a.setup);
	if (lock_fd >= 0)
		close(lock_fd);
	log_info("stopped");
	return rc;
}

/* ---- check -------------------------------------------------------------------------------- */

static void print_account_line(enum account_level level, const char *text, void *ud)
{
	static const char *const words[] = {"ok", "warning", "error"};

	(void)ud;
	printf("%s: %s\n", words[level], text);
}

/* `check --stripe`: the rules against the account's meters. Returns 0, or EXIT_RUNTIME if the
 * meters cannot be read or a rule has no usable meter. */
static int check_account(const struct config *cfg)
{
	struct stripe_meter *meters = NULL;
	char key[STRIPE_KEY_MAX], err[1024] = "";
	size_t n = 0;
	int errors, rc;

	if (stripe_key_load(cfg, key, sizeof(key), err, sizeof(err)) != 0) {
		fprintf(stderr, "check --stripe: %s\n", err);
		return EXIT_RUNTIME;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = stripe_meters_list(cfg, key, cfg->stripe.request_timeout_ms, &meters, &n, err,
	                        sizeof(err));
	explicit_bzero(key, sizeof(key));
	curl_global_cleanup();
	if (rc != 0) {
		fprintf(stderr, "check --stripe: cannot read the account's meters: %s\n", err);
		return EXIT_RUNTIME;
	}
	printf("stripe: %zu meters in the account\n", n);
	errors = account_check_rules(cfg, meters, n, print_account_line, NULL);
	free(meters);
	if (errors > 0) {
		fprintf(stderr,
		        "check --stripe: %d problems: those rules' events would not be "
		        "billed\n",
		        errors);
		return EXIT_RUNTIME;
	}
	return 0;
}

static int cmd_check(const char *path, int stripe)
{
	struct setup s = {0};
	char key[STRIPE_KEY_MAX], err[512] = "";
	int rc = 0;

	if (setup_load(&s, path) != 0)
		return EXIT_USAGE;
	/* The key is not part of the configuration's validity (a package installs a working
	 * configuration before any key exists), but say what `run` will find. */
	if (!stripe && stripe_key_load(s.cfg, key, sizeof(key), err, sizeof(err)) != 0)
		fprintf(stderr, "warning: %s\n", err);
	explicit_bzero(key, sizeof(key));
	printf("%s: OK: %zu files read, %zu sources, %zu rules\n", path, s.cfg->n_files,
	       s.cfg->n_sources, s.cfg->n_rules);
	sender_rate_print(stdout, s.cfg);
	if (stripe)
		rc = check_account(s.cfg);
	setup_free(&s);
	return rc;
}

/* ---- test-rule ---------------------------------------------------------------------------- */

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
		/* What the sender would do with it (sender.c checks the same window). */
		if (r->timestamp < now - STRIPE_MAX_AGE_S)
			printf(" -> dead letter: outside Stripe's window (more than 35 days in the "
			       "past)");
		else if (r->timestamp > now + STRIPE_MAX_AHEAD_S)
			printf(
			    " -> held: more than 5 minutes ahead of this host's clock; sent once "
			    "Stripe takes it");
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

static int cmd_test_rule(const char *path, const char *rule_name, const char *input)
{
	struct setup s = {0};
	struct rule_result *results = NULL;
	FILE *in = stdin;
	char *line = NULL;
	size_t cap = 0, n;
	ssize_t len;
	unsigned long lineno = 0;
	int64_t now;
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
	setup_free(&s);
	return rc;
}

/* ---- status ------------------------------------------------------------------------------- */

static int status_file(const struct spool_file *f, void *ud)
{
	struct stat st;
	long long size = f->size;

	(void)ud;
	/* The live size, when the path still names the same file, shows the lag behind the writer.
	 */
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
	printf("events: pending %lld, delivered %lld, dead letters %lld, unsure %lld\n",
	       (long long)counts.pending, (long long)counts.delivered, (long long)counts.dead,
	       (long long)counts.unsure);
	if (counts.unsure > 0)
		printf("unsure: %lld events had an attempt with an unknown outcome more than "
		       "unsure_after ago and are not re-sent by themselves: check Stripe, then "
		       "`logmeter replay --unsure` (docs/stripe-contract.md)\n",
		       (long long)counts.unsure);
	printf("last error: %s\n", last[0] ? last : "none");
	space_status_print(stdout, cfg, sp); /* "ingest: ..." and "space: ..." */
	sender_status_print(stdout, cfg);    /* "sender: ...", "rate: ...", "held: ..." */
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

/* ---- replay, spool ------------------------------------------------------------------------- */

/* The options of `replay` and `spool`. */
struct admin_args {
	int dead, delivered, unsure, force, dry_run;
	const char *reason, *since, *state;
};

static int admin_exit(int rc, const char *what, const char *err)
{
	if (rc != 0 && err[0] != '\0')
		fprintf(stderr, "logmeter %s: %s\n", what, err);
	return rc == 0 ? 0 : EXIT_RUNTIME;
}

static int cmd_replay(const char *path, const char *rule, const struct admin_args *aa)
{
	struct admin_replay opt;
	struct config *cfg;
	char err[CONFIG_ERR_MAX] = "";
	int rc;

	memset(&opt, 0, sizeof(opt));
	opt.now = (int64_t)time(NULL);
	if (aa->dead + aa->delivered + aa->unsure != 1) {
		fprintf(stderr,
		        "logmeter replay: give exactly one of --dead, --delivered and --unsure\n");
		return EXIT_USAGE;
	}
	if (aa->delivered && aa->since == NULL) {
		fprintf(stderr, "logmeter replay: --delivered needs --since TIME\n");
		return EXIT_USAGE;
	}
	if (aa->since != NULL && admin_parse_time(aa->since, opt.now, &opt.since) != 0) {
		fprintf(stderr,
		        "logmeter replay: --since '%s': expected 2026-11-29T12:00:00Z, 2026-11-29, "
		        "24h, 7d or @SECONDS\n",
		        aa->since);
		return EXIT_USAGE;
	}
	opt.from = aa->dead ? EVENT_DEAD : aa->delivered ? EVENT_DELIVERED : EVENT_UNSURE;
	opt.rule = rule;
	opt.reason = aa->reason;
	opt.force = aa->force;
	opt.dry_run = aa->dry_run;
	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	if (rule != NULL) {
		size_t i = 0;

		while (i < cfg->n_rules && strcmp(cfg->rules[i].name, rule) != 0)
			i++;
		if (i == cfg->n_rules)
			fprintf(
			    stderr,
			    "logmeter replay: warning: the configuration has no rule '%s' now\n",
			    rule);
	}
	rc = admin_replay(cfg, &opt, stdout, stderr, err, sizeof(err));
	config_free(cfg);
	return admin_exit(rc, "replay", err);
}

static int cmd_spool(const char *path, const char *sub, const struct admin_args *aa)
{
	struct config *cfg;
	char err[CONFIG_ERR_MAX] = "";
	int rc, state = -1;

	if (sub == NULL || (strcmp(sub, "export") != 0 && strcmp(sub, "check") != 0 &&
	                    strcmp(sub, "recover") != 0)) {
		fprintf(stderr, "logmeter spool: expected export, check or recover\n");
		return EXIT_USAGE;
	}
	if (aa->state != NULL &&
	    (strcmp(sub, "export") != 0 || (state = admin_state_parse(aa->state)) < 0)) {
		fprintf(
		    stderr,
		    "logmeter spool: --state pending|delivered|dead|unsure, with export only\n");
		return EXIT_USAGE;
	}
	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	if (strcmp(sub, "export") == 0)
		rc = admin_export(cfg, state, stdout, err, sizeof(err));
	else if (strcmp(sub, "check") == 0)
		rc = admin_check(cfg, stdout, err, sizeof(err));
	else
		rc = admin_recover(cfg, (int64_t)time(NULL), stdout, err, sizeof(err));
	config_free(cfg);
	return admin_exit(rc, sub, err);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'}, {"once", no_argument, NULL, 'o'},
	    {"rule", required_argument, NULL, 'r'},   {"markdown", no_argument, NULL, 'm'},
	    {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
	    {"dead", no_argument, NULL, 'D'},         {"delivered", no_argument, NULL, 'E'},
	    {"unsure", no_argument, NULL, 'U'},       {"stripe", no_argument, NULL, 'K'},
	    {"reason", required_argument, NULL, 'R'}, {"since", required_argument, NULL, 'S'},
	    {"force", no_argument, NULL, 'F'},        {"dry-run", no_argument, NULL, 'Y'},
	    {"state", required_argument, NULL, 'T'},  {NULL, 0, NULL, 0}};
	struct admin_args aa = {0};
	const char *cmd, *conf = NULL, *rule = NULL, *input = NULL;
	int once = 0, markdown = 0, check = 0, stripe = 0, c;

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
		case 'D':
			aa.dead = 1;
			break;
		case 'E':
			aa.delivered = 1;
			break;
		case 'U':
			aa.unsure = 1;
			break;
		case 'K':
			stripe = 1;
			break;
		case 'R':
			aa.reason = optarg;
			break;
		case 'S':
			aa.since = optarg;
			break;
		case 'F':
			aa.force = 1;
			break;
		case 'Y':
			aa.dry_run = 1;
			break;
		case 'T':
			aa.state = optarg;
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
	if (check && optind < argc && strcmp(argv[optind], "check") == 0)
		optind++; /* `logmeter -n check -c FILE` says the same twice */
	cmd = check ? "check" : optind < argc ? argv[optind++] : NULL;
	if (cmd == NULL) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (optind < argc)
		input = argv[optind++];
	if (optind < argc ||
	    (input != NULL && strcmp(cmd, "test-rule") != 0 && strcmp(cmd, "spool") != 0)) {
		fprintf(stderr, "logmeter %s: unexpected argument '%s'\n", cmd,
		        optind < argc ? argv[optind] : input);
		return EXIT_USAGE;
	}
	if (stripe && strcmp(cmd, "check") != 0) {
		fprintf(stderr, "logmeter %s: --stripe goes with check only\n", cmd);
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "options") == 0) {
		config_print_options(stdout, markdown);
		return 0;
	}
	if (strcmp(cmd, "crash-points") == 0) {
		/* Not in the usage: for tests, the names LOGMETER_CRASH_AT takes. */
		for (size_t i = 0; crash_point_names[i] != NULL; i++)
			printf("%s\n", crash_point_names[i]);
		return 0;
	}
	if (conf == NULL) {
		fprintf(stderr, "logmeter %s: -c FILE is required\n", cmd);
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "run") == 0)
		return cmd_run(conf, once);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(conf, stripe);
	if (strcmp(cmd, "test-rule") == 0)
		return cmd_test_rule(conf, rule, input);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(conf);
	if (strcmp(cmd, "replay") == 0)
		return cmd_replay(conf, rule, &aa);
	if (strcmp(cmd, "spool") == 0)
		return cmd_spool(conf, input, &aa);
	fprintf(stderr, "logmeter: unknown command '%s'\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
