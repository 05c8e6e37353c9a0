/* run: the agent. Wires the two halves (ingest: watch/tail/rule; send: sender) to the spool in
 * two threads, while the main thread waits for signals (SIGTERM/SIGINT stop, SIGHUP reloads, a
 * worker's end) and tells systemd how it goes (util/health.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/space.h"
#include "ingest/watch.h"
#include "send/sender.h"
#include "store/spool.h"
#include "util/clock.h"
#include "util/crash.h"
#include "util/health.h"
#include "util/log.h"
#include "util/path.h"

#define SHUTDOWN_GRACE_MS 5000

struct agent {
	struct cli_setup setup;
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
	space_expire(a->space); /* delivered_retention; then every 10 minutes, by watch_run */
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
	    spool_set_durability(a->spool, cfg->agent.durability, err, sizeof(err)) != 0)
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
	char path[4096], err[1024] = "";
	int fd;

	/* The directory may not exist yet: the lock is taken before anything else touches it. */
	if (path_mkdirs(state_dir, err, sizeof(err)) != 0) {
		log_err("%s", err);
		return -1;
	}
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
	struct cli_setup next = {0};

	log_info("SIGHUP: reloading %s", path);
	if (cli_setup_load(&next, path) != 0) {
		log_err("reload failed: keeping the running configuration");
		return -1;
	}
	/* Another spool has other checkpoints: every file would be read and billed again. */
	if (strcmp(next.cfg->agent.state_dir, a->setup.cfg->agent.state_dir) != 0) {
		log_err("reload refused: state_dir changed from %s to %s; moving the spool needs a "
		        "restart (and moving its files): keeping the running configuration",
		        a->setup.cfg->agent.state_dir, next.cfg->agent.state_dir);
		cli_setup_free(&next);
		return -1;
	}
	agent_close(a);
	cli_setup_free(&a->setup);
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
	now = clock_mono_ms();
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

int cli_run(const struct cli_args *args)
{
	const char *path = args->config;
	int once = args->once;
	struct agent a;
	struct health_watch hw;
	sigset_t set;
	int sig, rc = CLI_EXIT_RUNTIME, lock_fd = -1;

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

	if (cli_setup_load(&a.setup, path) != 0)
		return CLI_EXIT_USAGE;
	/* The lock first: a second agent that is refused must not have touched the spool (its
	 * schema, its instance id) of the one that runs. */
	lock_fd = lock_state_dir(a.setup.cfg->agent.state_dir);
	if (lock_fd < 0)
		goto out;
	if (agent_open(&a) != 0)
		goto out;
	log_info("started: instance %s, %zu sources, %zu rules, spool %s%s", a.instance,
	         a.setup.cfg->n_sources, a.setup.cfg->n_rules, spool_path(a.spool),
	         once ? " (--once)" : "");
	if (agent_start_threads(&a) != 0) {
		log_err("cannot start threads: %s", strerror(errno));
		goto out;
	}
	/* systemd (Type=notify): ready once the threads run; the backlog is read after. */
	health_watch_init(&hw, clock_mono_ms());
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
			health_watch_reset(&hw, clock_mono_ms());
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
			rc = (a.ingest_rc == 0 && a.sender_rc >= 0) ? 0 : CLI_EXIT_RUNTIME;
			/* --once promises everything deliverable was delivered; a stop cuts that.
			 */
			if (once && rc == 0 && once_pending(&a) != 0)
				rc = CLI_EXIT_RUNTIME;
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
			rc = a.sender_rc == 0   ? 0
			     : a.sender_rc == 1 ? CLI_EXIT_AUTH
			                        : CLI_EXIT_RUNTIME;
			if (rc == 0 && a.once_partial)
				rc = CLI_EXIT_RUNTIME;
			break;
		}
		if (!once && (a.ingest_done || a.sender_done)) {
			log_err("a worker stopped unexpectedly: shutting down");
			health_notify("STOPPING=1\nSTATUS=a worker stopped unexpectedly");
			agent_stop_threads(&a);
			rc = CLI_EXIT_RUNTIME;
			break;
		}
	}
out:
	agent_close(&a);
	cli_setup_free(&a.setup);
	if (lock_fd >= 0)
		close(lock_fd);
	log_info("stopped");
	return rc;
}
