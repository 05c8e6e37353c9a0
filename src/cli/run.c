/* run: the agent. Wires the two halves (ingest: watch/tail/rule; send: sender) to the spool in
 * two threads, while the main thread waits for signals (SIGTERM/SIGINT stop, SIGHUP reloads, a
 * worker's end) and tells systemd how it goes (util/health.h). A reload keeps what it did not
 * change: the open files of unchanged sources, and the sender with its requests in flight
 * (docs/architecture.md, "Reload"). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/guard.h"
#include "ingest/space.h"
#include "ingest/watch.h"
#include "report/metrics.h"
#include "send/sender.h"
#include "send/stripe.h"
#include "store/spool.h"
#include "util/clock.h"
#include "util/crash.h"
#include "util/harden.h"
#include "util/health.h"
#include "util/log.h"
#include "util/path.h"
#include "util/statepin.h"

#define SHUTDOWN_GRACE_MS 5000

struct agent {
	struct cli_setup setup;
	const char *config_path; /* -c, read again by the metrics server at each start */
	/* The configuration the sender was made with, once a reload kept the sender and replaced
	 * setup.cfg (the sender borrows it for its life); NULL while that is setup.cfg. */
	struct config *sender_cfg;
	struct spool *spool; /* the ingest half's handle */
	char instance[128];
	struct space *space; /* the ingest half's room and pause (space.c) */
	struct guard *guard; /* symlinks and PCRE2 limits (guard.c); kept across reloads */
	struct watch *watch;
	/* The sources the spool has file records of that setup.cfg lacks (warn_orphans), which
	 * the tails look at too (tail_ctx.old_sources); n_old_sources names, owned. */
	char **old_sources;
	size_t n_old_sources;
	struct sender *sender;
	struct metrics *metrics; /* the Prometheus endpoint, or NULL (metrics_listen empty) */
	pthread_t ingest_thread, sender_thread;
	int ingest_started, sender_started;
	int once;
	/* --once --no-send: read and commit every source, then exit; no sender at all, so no API
	 * key is needed. The ingest half runs exactly as in the agent. */
	int no_send;
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
	guard_publish(a->guard);
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
		log_warn("run --once: reading stopped for lack of room in the spool; %s; the next "
		         "run reads the rest",
		         a->no_send ? "what was read is spooled" : "delivering what was read");
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

static void stop_ingest(struct agent *a)
{
	if (!a->ingest_started)
		return;
	watch_stop(a->watch);
	/* Told to stop, maybe committing its last batch (1st "shutdown" crash point). */
	crash_point("shutdown");
	pthread_join(a->ingest_thread, NULL);
	a->ingest_started = 0;
}

static void stop_sender(struct agent *a)
{
	if (!a->sender_started)
		return;
	sender_stop(a->sender, SHUTDOWN_GRACE_MS);
	crash_point("shutdown"); /* finishing its requests in flight */
	pthread_join(a->sender_thread, NULL);
	a->sender_started = 0;
}

static void agent_stop_threads(struct agent *a)
{
	stop_ingest(a);
	stop_sender(a);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void agent_close(struct agent *a)
{
	agent_stop_threads(a);
	watch_free(a->watch);
	sender_free(a->sender);
	config_free(a->sender_cfg);
	space_free(a->space);
	guard_free(a->guard);
	spool_free(a->spool);
	a->watch = NULL;
	a->space = NULL;
	a->guard = NULL;
	a->sender = NULL;
	a->sender_cfg = NULL;
	a->spool = NULL;
	free_names(a->old_sources, a->n_old_sources);
	a->old_sources = NULL;
	a->n_old_sources = 0;
}

struct orphan_check {
	const struct config *cfg;
	char last[128]; /* the last orphaned source reported: records come ordered by source */
	char **names;   /* the orphaned sources, n of them (cap allocated) */
	size_t n, cap;
	int oom;
};

/* config_warnings' callback: what `check` prints, logged. */
static void warn_config(const char *msg, void *ud)
{
	(void)ud;
	log_warn("%s", msg);
}

static int warn_orphan(const struct spool_file *f, void *ud)
{
	struct orphan_check *oc = ud;

	if (config_source_find(oc->cfg, f->source) >= 0 || strcmp(oc->last, f->source) == 0)
		return 0;
	snprintf(oc->last, sizeof(oc->last), "%s", f->source);
	if (oc->n == oc->cap) {
		size_t cap = oc->cap ? 2 * oc->cap : 4;
		char **names = realloc(oc->names, cap * sizeof(*names));

		if (names == NULL)
			return oc->oom = -1;
		oc->names = names;
		oc->cap = cap;
	}
	if ((oc->names[oc->n] = strdup(f->source)) == NULL)
		return oc->oom = -1;
	oc->n++;
	log_warn("the spool has checkpoints of [source %s], which the configuration no longer "
	         "has (renamed, or its rules moved to another source): a file it read that a "
	         "source of the configuration matches is read by that source from its checkpoint "
	         "on, with a warning, while the file still holds what it read; its other files are "
	         "not read (docs/tailing.md, \"One file, one source\")",
	         f->source);
	return 0;
}

/* Warns about the sources the spool has records of that a->setup lacks, and lists them in *names
 * (*n of them; the caller frees them with free_names). Returns 0 or -1 (*names NULL, *n 0). */
static int warn_orphans(struct agent *a, char ***names, size_t *n, char *err, size_t errlen)
{
	struct orphan_check oc = {.cfg = a->setup.cfg};
	int rc = spool_files_foreach(a->spool, warn_orphan, &oc, err, errlen);

	*names = NULL;
	*n = 0;
	if (rc != 0) {
		if (oc.oom)
			err_set(err, errlen,
			        "listing the sources of the spool's records: out of memory");
		free_names(oc.names, oc.n);
		return -1;
	}
	*names = oc.names;
	*n = oc.n;
	return 0;
}

/* What the ingest half works with: a->setup's configuration and rules, the spool, the sender to
 * wake after commits. */
static void ingest_ctx(const struct agent *a, struct tail_ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->cfg = a->setup.cfg;
	ctx->rules = a->setup.rules;
	ctx->spool = a->spool;
	ctx->instance = a->instance;
	ctx->on_commit = on_commit;
	ctx->ud = a->sender;
	ctx->space = a->space;
	ctx->guard = a->guard;
	ctx->old_sources = (const char *const *)a->old_sources;
	ctx->n_old_sources = a->n_old_sources;
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
	if (warn_orphans(a, &a->old_sources, &a->n_old_sources, err, sizeof(err)) != 0)
		goto fail;
	if (!a->no_send && (a->sender = sender_new(cfg, err, sizeof(err))) == NULL)
		goto fail;
	a->space = space_new(cfg, a->spool, err, sizeof(err));
	if (a->space == NULL)
		goto fail;
	a->guard = guard_new(cfg, err, sizeof(err));
	if (a->guard == NULL)
		goto fail;
	ingest_ctx(a, &ctx);
	a->watch = watch_new(&ctx, err, sizeof(err));
	if (a->watch == NULL)
		goto fail;
	return 0;
fail:
	log_err("%s", err);
	agent_close(a);
	return -1;
}

static int start_ingest(struct agent *a)
{
	a->ingest_done = 0;
	if (pthread_create(&a->ingest_thread, NULL, ingest_main, a) != 0)
		return -1;
	a->ingest_started = 1;
	return 0;
}

static int start_sender(struct agent *a)
{
	a->sender_done = 0;
	if (pthread_create(&a->sender_thread, NULL, sender_main, a) != 0)
		return -1;
	a->sender_started = 1;
	return 0;
}

static int agent_start_threads(struct agent *a)
{
	if (start_ingest(a) != 0)
		return -1;
	return a->once ? 0 : start_sender(a);
}

/* Two agents on one spool would each read every file with their own checkpoints and bill each
 * new file twice: the first takes the state directory's lock and claim for its lifetime
 * (cli_lock_state_dir), and pins them (statepin_new). Returns 0, or -1 (logged). */
static int lock_state_dir(const char *state_dir, struct cli_lock *lk, struct statepin **pin)
{
	char err[1024] = "", path[4096];
	int held = 0;

	if (cli_lock_state_dir(state_dir, lk, &held, err, sizeof(err)) != 0) {
		if (held)
			log_err("another logmeter is already running with state_dir %s (%s): "
			        "refusing to start a second one on the same spool",
			        state_dir, err);
		else
			log_err("%s", err);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/" CLI_LOCK_NAME, state_dir);
	*pin = statepin_new(state_dir, path, lk->fd, err, sizeof(err));
	if (*pin == NULL) {
		log_err("%s", err);
		cli_unlock(lk);
		return -1;
	}
	return 0;
}

/* Whether the state directory, its lock file and the spool are still the ones the agent opened
 * (statepin_check, spool_check_file). If not, the agent must stop: its commits would go into a
 * file nobody reads again, and a second agent would no longer be kept out by the lock file. The
 * directory is left saying that it had a spool (spool_mark_lost), so that no later start bills
 * every line again as new. Returns 0, or -1 (logged). */
static int state_dir_still_ours(const struct statepin *pin, const struct spool *sp)
{
	char err[1024] = "";

	if (statepin_check(pin, err, sizeof(err)) == 0 &&
	    spool_check_file(sp, err, sizeof(err)) == 0)
		return 0;
	log_err("%s: stopping. What was read since is not in the spool, and a state directory "
	        "that is not the one this agent locked keeps no second agent out. Put the state "
	        "directory back (a backup of the spool), or start over on purpose: `logmeter spool "
	        "start-over -c FILE` with read_from = tail (docs/durability.md)",
	        err);
	return -1;
}

/* After state_dir_still_ours failed and the threads stopped: the state directory says it had
 * this spool (spool_mark_lost). */
static void state_dir_mark_lost(struct agent *a)
{
	char err[1024] = "";

	if (spool_mark_lost(a->spool, a->setup.cfg->agent.state_dir, err, sizeof(err)) != 0)
		log_err("cannot mark %s as having had a spool: %s: a start with no spool.id there "
		        "makes a new spool and reads every file again",
		        a->setup.cfg->agent.state_dir, err);
	else
		log_info("%s/" SPOOL_MARKER_NAME " keeps the lost spool's id: the next start is "
		         "refused until the spool is back or `logmeter spool start-over`",
		         a->setup.cfg->agent.state_dir);
}

/* ---- SIGHUP ---------------------------------------------------------------------------------- */

/* What a reload does about each [agent] setting that changed (docs/architecture.md, "Reload"):
 * RELOAD_LIVE ones take effect at once (read where they are used, or applied by agent_reload);
 * RELOAD_SENDER ones are read by the sender only when it starts, so it restarts. state_dir is
 * refused before. A setting missing here (added later without a decision) restarts everything,
 * as at start. */
enum reload_how { RELOAD_LIVE, RELOAD_SENDER };

static const struct {
	const char *key;
	enum reload_how how;
} reload_agent[] = {
    {"instance", RELOAD_LIVE},    /* the identifiers of lines read from now on */
    {"include_dir", RELOAD_LIVE}, /* used only to load the configuration */
    {"log_level", RELOAD_LIVE},   /* set when the configuration was loaded */
    {"log_format", RELOAD_LIVE},
    {"batch_lines", RELOAD_LIVE},     /* read at each read of a file */
    {"max_line_length", RELOAD_LIVE}, /* from the next line on */
    {"rescan_interval", RELOAD_LIVE}, /* after the rescan that follows the reload */
    {"rotate_wait", RELOAD_LIVE},
    {"max_open_files", RELOAD_LIVE},  /* a lower limit closes idle files at once */
    {"max_spool_bytes", RELOAD_LIVE}, /* the room is measured anew (space.c) */
    {"metrics_listen", RELOAD_LIVE},  /* the endpoint moves: agent_metrics */
    {"metrics_max_files", RELOAD_LIVE},
    {"stale_after", RELOAD_SENDER}, /* the ingest half's heartbeat takes it at once */
    {"min_free_bytes", RELOAD_LIVE},
    {"allow_core_dumps", RELOAD_LIVE}, /* applied by agent_reload */
    {"durability", RELOAD_SENDER},     /* the ingest half's connection takes it at once */
    {"delivered_retention", RELOAD_SENDER},
};

/* What a reload changes, worked out before anything running is touched. */
struct reload_plan {
	long *same; /* per new source: its index now if its settings are the same, else -1 */
	size_t kept, changed, added, removed; /* sources */
	char restart[160];                    /* why the sender restarts; "" if it is kept */
	int check_rules; /* a rule is new or changed: the kept sender holds them against meters */
	const char *unknown; /* an [agent] setting without a decision above: restart everything */
	int durability, instance;
};

static int reload_plan_make(const struct agent *a, const struct config *next, struct reload_plan *p,
                            char *err, size_t errlen)
{
	const struct config *cur = a->setup.cfg;
	const struct config *scfg = a->sender_cfg != NULL ? a->sender_cfg : cur;
	const char *keys[64];
	char key[STRIPE_KEY_MAX];
	long n;

	memset(p, 0, sizeof(*p));
	p->same = calloc(next->n_sources > 0 ? next->n_sources : 1, sizeof(*p->same));
	if (p->same == NULL) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	for (size_t si = 0; si < next->n_sources; si++) {
		const char *name = next->sources[si].name;
		long old = config_source_find(cur, name);

		p->same[si] = -1;
		if (old < 0) {
			p->added++;
		} else if (config_changes(cur, next, "source", name, NULL, 0) == 0) {
			p->same[si] = old;
			p->kept++;
		} else {
			p->changed++;
		}
	}
	for (size_t si = 0; si < cur->n_sources; si++)
		p->removed += config_source_find(next, cur->sources[si].name) < 0;
	for (size_t r = 0; r < next->n_rules && !p->check_rules; r++)
		p->check_rules =
		    config_changes(cur, next, "rule", next->rules[r].name, NULL, 0) != 0;

	n = config_changes(cur, next, "agent", NULL, keys, sizeof(keys) / sizeof(keys[0]));
	for (long k = 0; k < n && k < (long)(sizeof(keys) / sizeof(keys[0])); k++) {
		size_t i = 0;

		while (i < sizeof(reload_agent) / sizeof(reload_agent[0]) &&
		       strcmp(reload_agent[i].key, keys[k]) != 0)
			i++;
		if (i == sizeof(reload_agent) / sizeof(reload_agent[0])) {
			p->unknown = keys[k];
			continue;
		}
		p->durability |= strcmp(keys[k], "durability") == 0;
		p->instance |= strcmp(keys[k], "instance") == 0;
		if (reload_agent[i].how == RELOAD_SENDER && p->restart[0] == '\0')
			snprintf(p->restart, sizeof(p->restart), "[agent] %s changed", keys[k]);
	}
	n = config_changes(scfg, next, "stripe", NULL, keys, 1);
	if (n != 0 && p->restart[0] == '\0')
		snprintf(p->restart, sizeof(p->restart), "[stripe] %s changed",
		         n > 0 ? keys[0] : "settings");
	if (p->restart[0] != '\0')
		return 0; /* sender_new reads the new key */
	/* The key file may have a new key in it, whatever the configuration says. */
	if (stripe_key_load(next, key, sizeof(key), err, errlen) != 0) {
		free(p->same);
		p->same = NULL;
		return -1;
	}
	if (!sender_key_is(a->sender, key))
		snprintf(p->restart, sizeof(p->restart), "the API key changed");
	explicit_bzero(key, sizeof(key));
	return 0;
}

/* The instance id that events get under `cfg` (spool_instance), through a spool handle of its
 * own: the ingest thread still uses a->spool. */
static int resolve_instance(const struct config *cfg, char *out, size_t outlen, char *err,
                            size_t errlen)
{
	struct spool *sp = spool_open(cfg->agent.state_dir, SPOOL_READ_WRITE, err, errlen);
	int rc;

	if (sp == NULL)
		return -1;
	rc = spool_instance(sp, cfg->agent.instance, out, outlen, err, errlen);
	spool_free(sp);
	return rc;
}

static int listen_same(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* Makes the metrics endpoint follow a->setup.cfg, which replaces `old` (NULL at start; still
 * valid during the call): kept with the new configuration if its address is the same, else
 * closed and opened on the new one. Returns 0, or -1 if it could not listen (logged; there is
 * no endpoint then). */
static int agent_metrics(struct agent *a, const struct config *old)
{
	const char *want = a->setup.cfg->agent.metrics_listen;
	char err[512] = "";

	if (old != NULL && a->metrics != NULL && listen_same(old->agent.metrics_listen, want)) {
		metrics_set_config(a->metrics, a->setup.cfg);
		return 0;
	}
	metrics_free(a->metrics);
	a->metrics = NULL;
	if (want == NULL || want[0] == '\0')
		return 0;
	a->metrics = metrics_new(a->setup.cfg, a->config_path, err, sizeof(err));
	if (a->metrics == NULL) {
		log_err("%s", err);
		return -1;
	}
	return 0;
}

/* A reload that must restart everything, as at start: stops both threads, closes every file and
 * the sender, and opens it all again with `next` (taken over). Returns 0 or -1 (the agent then
 * stops). */
static int agent_reload_all(struct agent *a, struct cli_setup *next)
{
	struct cli_setup old;

	agent_close(a);
	old = a->setup;
	a->setup = *next;
	agent_metrics(a, old.cfg); /* a failure is logged; the agent goes on */
	cli_setup_free(&old);
	if (agent_open(a) != 0 || agent_start_threads(a) != 0) {
		log_err("reload: could not restart with the new configuration");
		a->ingest_rc = -1;
		a->ingest_done = 1;
		return -1;
	}
	log_info("configuration reloaded: %zu source%s, %zu rule%s (everything restarted)",
	         a->setup.cfg->n_sources, cli_s((long long)a->setup.cfg->n_sources),
	         a->setup.cfg->n_rules, cli_s((long long)a->setup.cfg->n_rules));
	return 0;
}

/* The errors of a configuration a reload refused (`errs`, one "FILE:LINE: message" a line), one
 * error of the agent's log each, in its log format (log_format = json: one JSON object each), and
 * then that the running configuration is kept. */
static void log_reload_errors(const char *errs)
{
	const char *p = errs;

	while (*p != '\0') {
		size_t n = strcspn(p, "\n");

		if (n > 0)
			log_err("reload failed: %.*s", (int)n, p);
		p += n + (p[n] == '\n');
	}
	log_err("reload failed: keeping the running configuration");
}

/* SIGHUP: the new configuration replaces the old one only if it loads and compiles completely,
 * and the sender it needs (if any) can be made; otherwise the agent goes on with the old one.
 * Then the ingest thread stops between two batches, the tails of unchanged sources take the
 * new rules and the others are closed or scanned (watch_reconfigure), and the ingest thread
 * starts again. The sender, with its requests in flight, is kept unless its settings or the key
 * changed; then it finishes what is in flight (at most SHUTDOWN_GRACE_MS) before the new one
 * starts. */
static int agent_reload(struct agent *a, const char *path)
{
	struct cli_setup next = {0}, old;
	struct reload_plan plan = {0};
	struct sender *sender = NULL;
	struct space *space = NULL;
	struct tail_ctx ctx;
	char err[1024] = "", cerr[CONFIG_ERR_MAX], instance[sizeof(a->instance)], **olds;
	size_t kept, n_olds;
	int restart;

	log_info("SIGHUP: reloading %s", path);
	if (cli_setup_load_err(&next, path, cerr, sizeof(cerr)) != 0) {
		log_reload_errors(cerr);
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
	if (reload_plan_make(a, next.cfg, &plan, err, sizeof(err)) != 0)
		goto refuse;
	if (plan.unknown != NULL) {
		log_warn("reload: [agent] %s changed: restarting everything", plan.unknown);
		free(plan.same);
		return agent_reload_all(a, &next);
	}
	restart = plan.restart[0] != '\0';
	if (restart && (sender = sender_new(next.cfg, err, sizeof(err))) == NULL)
		goto refuse;
	space = space_new(next.cfg, a->spool, err, sizeof(err));
	if (space == NULL)
		goto refuse;
	snprintf(instance, sizeof(instance), "%s", a->instance);
	if (plan.instance &&
	    resolve_instance(next.cfg, instance, sizeof(instance), err, sizeof(err)) != 0)
		goto refuse;

	/* Nothing was refused: from here on the new configuration is taken. */
	stop_ingest(a);
	old = a->setup;
	a->setup = next;
	agent_metrics(a, old.cfg); /* a failure is logged; the agent goes on */
	if (restart) {
		log_info("reload: %s: the sender finishes its requests in flight (at most %d s), "
		         "then a new one starts",
		         plan.restart, SHUTDOWN_GRACE_MS / 1000);
		stop_sender(a);
		sender_free(a->sender);
		config_free(a->sender_cfg);
		a->sender_cfg = NULL;
		a->sender = sender;
	} else {
		sender_set_rules(a->sender, a->setup.cfg, plan.check_rules);
		if (a->sender_cfg == NULL) {
			a->sender_cfg = old.cfg; /* the sender's, for its life */
			old.cfg = NULL;
		}
	}
	space_free(a->space);
	a->space = space;
	if (plan.durability &&
	    spool_set_durability(a->spool, a->setup.cfg->agent.durability, err, sizeof(err)) != 0)
		log_warn("reload: %s", err);
	snprintf(a->instance, sizeof(a->instance), "%s", instance);
	if (guard_reconfigure(a->guard, a->setup.cfg, err, sizeof(err)) != 0)
		log_warn("reload: %s: the files of the old configuration stay protected", err);
	if (harden_core_dumps(a->setup.cfg->agent.allow_core_dumps, err, sizeof(err)) != 0)
		log_warn("reload: %s", err);
	olds = a->old_sources;
	n_olds = a->n_old_sources;
	if (warn_orphans(a, &a->old_sources, &a->n_old_sources, err, sizeof(err)) != 0)
		log_warn("%s", err);
	ingest_ctx(a, &ctx);
	if (watch_reconfigure(a->watch, &ctx, plan.same, err, sizeof(err)) != 0) {
		/* Out of memory: nothing changed in it; start it anew as at start instead. */
		log_warn("reload: %s: opening every file anew", err);
		watch_free(a->watch);
		a->watch = watch_new(&ctx, err, sizeof(err));
	}
	cli_setup_free(&old);     /* no tail uses it any more; the sender's is kept above */
	free_names(olds, n_olds); /* nor these */
	free(plan.same);
	if (a->watch == NULL)
		goto fatal;
	kept = watch_tail_count(a->watch); /* before the ingest thread runs again */
	if (start_ingest(a) != 0 || (restart && start_sender(a) != 0)) {
		err_set(err, sizeof(err), "cannot start a thread");
		goto fatal;
	}
	log_info("configuration reloaded: %zu source%s, %zu rule%s; sources: %zu unchanged (%zu "
	         "file%s kept), %zu changed, %zu new, %zu removed; sender %s",
	         a->setup.cfg->n_sources, cli_s((long long)a->setup.cfg->n_sources),
	         a->setup.cfg->n_rules, cli_s((long long)a->setup.cfg->n_rules), plan.kept, kept,
	         cli_s((long long)kept), plan.changed, plan.added, plan.removed,
	         restart ? "restarted" : "kept");
	return 0;
fatal: /* the main loop stops the agent */
	log_err("reload: could not restart with the new configuration: %s", err);
	a->ingest_rc = -1;
	a->ingest_done = 1;
	return -1;
refuse:
	log_err("reload failed: %s: keeping the running configuration", err);
	sender_free(sender);
	space_free(space);
	free(plan.same);
	cli_setup_free(&next);
	return -1;
}

/* ---- what `run --once` lost ------------------------------------------------------------------ */

/* What a run --once is judged by besides its delivery (docs/logmeter.8, "run --once"), read from
 * the spool when it starts and again when it ends: what grew in between came during the run. The
 * lines the guard counts as lost (guard_counts) need no reading at start: its counts are this
 * process's. */
struct once_marks {
	int64_t dead;       /* events in the spool that are dead letters */
	int64_t gone_files; /* records of files gone before they were read to their end */
	int64_t gone_bytes; /* what those files held past their checkpoint, bytes */
};

static int once_gone_record(const struct spool_file *f, void *ud)
{
	struct once_marks *m = ud;

	/* What `status` calls files gone before they were read to their end (report/facts.c). */
	if (f->state == SPOOL_FILE_GONE && f->size > f->offset) {
		m->gone_files++;
		m->gone_bytes += f->size - f->offset;
	}
	return 0;
}

/* Fills *m from `sp`. Returns 0, or -1 with the reason in `err`. */
static int once_marks_read(struct spool *sp, struct once_marks *m, char *err, size_t errlen)
{
	struct spool_counts c;

	memset(m, 0, sizeof(*m));
	if (spool_counts(sp, &c, err, errlen) != 0 ||
	    spool_files_foreach(sp, once_gone_record, m, err, errlen) != 0)
		return -1;
	m->dead = c.dead;
	return 0;
}

/* "N WHAT" (WHAT in the number N asks for: the caller's), appended to `out` (`outlen` bytes)
 * after a comma if `out` holds something already; nothing for N = 0. */
static void once_part(char *out, size_t outlen, int64_t n, const char *what)
{
	size_t len = strlen(out);

	if (n <= 0 || len >= outlen)
		return;
	snprintf(out + len, outlen - len, "%s%lld %s", len > 0 ? ", " : "", (long long)n, what);
}

/* At the end of a run --once that got to its end: compares the spool with `start` (read when the
 * run started) and the guard's counts, and if events became dead letters or lines were lost during
 * the run, writes the log line that says so and what to do into `news` (`newslen` bytes) and
 * returns 1; returns 0 if none were (`news` ""), -1 if the spool could not be read (`news` says
 * so). A file gone when the run started, read to the size it had when last seen, may have held
 * more or not: what was written to it while logmeter was stopped cannot be known, and a file
 * deleted by an ordinary rotation (`rotate N`, a dated log expired) after it was read to its end is
 * the same case. Only that: `news` says so and 2 is returned, a warning, not a loss known; a
 * cron job that failed at every rotation would teach its owner to ignore the exit status. The
 * caller logs `news` last. */
static int once_losses(const struct agent *a, const struct once_marks *start, char *news,
                       size_t newslen)
{
	struct guard_counts g = guard_counts(a->guard);
	struct once_marks end;
	char err[512] = "", lost[512] = "", what[160];
	int64_t dead, gone_files, gone_bytes;

	news[0] = '\0';
	if (once_marks_read(a->spool, &end, err, sizeof(err)) != 0) {
		snprintf(news, newslen,
		         "run --once: cannot tell whether events became dead letters during this "
		         "run: %s; see `logmeter status`",
		         err);
		return -1;
	}
	/* A replay of older dead letters while the run went on lowers the count: never below 0. */
	dead = end.dead > start->dead ? end.dead - start->dead : 0;
	gone_files = end.gone_files > start->gone_files ? end.gone_files - start->gone_files : 0;
	gone_bytes = end.gone_bytes > start->gone_bytes ? end.gone_bytes - start->gone_bytes : 0;
	once_part(lost, sizeof(lost), g.limit_lines,
	          g.limit_lines == 1 ? "line hit a PCRE2 limit" : "lines hit a PCRE2 limit");
	if (gone_files > 0) {
		snprintf(what, sizeof(what), "%s before %s read to %s end (%lld byte%s unread)",
		         gone_files == 1 ? "file was gone" : "files were gone",
		         gone_files == 1 ? "it was" : "they were",
		         gone_files == 1 ? "its" : "their", (long long)gone_bytes,
		         cli_s((long long)gone_bytes));
		once_part(lost, sizeof(lost), gone_files, what);
	}
	once_part(lost, sizeof(lost), g.refused_links,
	          g.refused_links == 1 ? "symbolic link was refused"
	                               : "symbolic links were refused");
	/* Not the files left to another source whose glob matches them too: that source reads
	 * their lines (`status` still says so, and `check` refuses such a configuration). */
	if (dead == 0 && lost[0] == '\0') {
		if (g.gone_unread <= 0)
			return 0;
		snprintf(
		    news, newslen,
		    "run --once: %lld %s gone when the run started (deleted, or moved out of "
		    "%s directory, while logmeter was not running), read to %s checkpoint: "
		    "what was written to %s after the last run, if anything, was not read (the "
		    "warnings above name each; `logmeter status`)",
		    (long long)g.gone_unread, g.gone_unread == 1 ? "file was" : "files were",
		    g.gone_unread == 1 ? "its" : "their", g.gone_unread == 1 ? "its" : "their",
		    g.gone_unread == 1 ? "it" : "them");
		return 2;
	}
	what[0] = '\0';
	if (dead > 0)
		snprintf(what, sizeof(what), "%lld %s", (long long)dead,
		         dead == 1 ? "event became a dead letter" : "events became dead letters");
	snprintf(news, newslen,
	         "run --once: during this run %s%s%s%s%s: `logmeter status` says why%s", what,
	         dead > 0 && lost[0] != '\0' ? " and " : "",
	         lost[0] != '\0' ? "lines were lost (" : "", lost, lost[0] != '\0' ? ")" : "",
	         dead > 0 ? "; once their cause is fixed (a meter created, the customer map "
	                    "completed), `logmeter replay --dead` sends the dead letters again"
	                  : "");
	return 1;
}

/* sd_notify READY=1 with a STATUS line (systemctl status shows it); `note` may be NULL. */
static void notify_ready(const struct agent *a, const char *note)
{
	health_notify("READY=1\nSTATUS=running: %zu source%s, %zu rule%s%s%s",
	              a->setup.cfg->n_sources, cli_s((long long)a->setup.cfg->n_sources),
	              a->setup.cfg->n_rules, cli_s((long long)a->setup.cfg->n_rules),
	              note ? "; " : "", note ? note : "");
}

/* How often the main thread checks that the state directory is still the agent's
 * (state_dir_still_ours), at most, in milliseconds; the ingest checks at each commit. */
#define STATE_CHECK_MS 2000

/* Waits for one of `set`'s signals, at most STATE_CHECK_MS. Under a systemd watchdog it wakes at
 * hw->next_at to check the workers and ping (health_watch_tick), so that the pings continue
 * however rarely signals come. Returns the signal, or -1 (a check was due, or EINTR). */
static int wait_signal(const sigset_t *set, struct health_watch *hw, const struct agent *a)
{
	struct timespec ts;
	int64_t now, wait;
	int sig, running[HEALTH_WORKERS];

	now = clock_mono_ms();
	if (hw->interval_ms > 0 && now >= hw->next_at) {
		running[HEALTH_INGEST] = a->ingest_started && !a->ingest_done;
		running[HEALTH_SENDER] = a->sender_started && !a->sender_done;
		health_watch_tick(hw, running, now);
	}
	wait = hw->interval_ms <= 0 ? STATE_CHECK_MS : hw->next_at > now ? hw->next_at - now : 1;
	if (wait > STATE_CHECK_MS)
		wait = STATE_CHECK_MS;
	ts.tv_sec = (time_t)(wait / 1000);
	ts.tv_nsec = (long)(wait % 1000) * 1000000L;
	sig = sigtimedwait(set, NULL, &ts);
	return sig > 0 ? sig : -1;
}

int cli_run(const struct cli_args *args)
{
	const char *path = args->config;
	int once = args->once;
	struct agent a;
	struct health_watch hw;
	sigset_t set;
	char err[1024] = "";
	struct cli_lock lk = {-1, -1};
	struct statepin *pin = NULL;
	int sig, rc = CLI_EXIT_RUNTIME;
	struct once_marks marks = {0};
	char news[2048] = ""; /* what run --once lost (once_losses): its last log line */
	int news_rc = 0;      /* once_losses's: 2 for a warning */

	memset(&a, 0, sizeof(a));
	a.config_path = path;
	a.once = once;
	a.no_send = args->no_send;
	if (a.no_send && !once) {
		fprintf(stderr, "logmeter run: --no-send goes only with --once\n");
		return CLI_EXIT_USAGE;
	}
	crash_init(); /* a test's LOGMETER_CRASH_AT: its warnings come first */

	/* Every thread inherits this mask; only the main thread takes signals, with sigwait. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGCHLD); /* the metrics server ended */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (cli_setup_load(&a.setup, path) != 0)
		return CLI_EXIT_USAGE;
	config_warnings(a.setup.cfg, warn_config, NULL);
	/* What `check` refuses, `run` refuses, with the same words and exit status: a restart
	 * (Restart=on-failure) would not change a key file or a state directory. --no-send reads
	 * no key: it spools ahead of one. */
	if (cli_preflight(a.setup.cfg, !a.no_send, err, sizeof(err)) != 0) {
		log_err("%s", err);
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	if (!a.no_send && stripe_key_shadowed(a.setup.cfg, err, sizeof(err)))
		log_warn("%s", err);
	if (harden_core_dumps(a.setup.cfg->agent.allow_core_dumps, err, sizeof(err)) != 0) {
		log_err("%s", err);
		goto out;
	}
	/* The lock first: a second agent that is refused must not have touched the spool (its
	 * schema, its instance id) of the one that runs. */
	if (lock_state_dir(a.setup.cfg->agent.state_dir, &lk, &pin) != 0) {
		/* The one refusal cli_preflight cannot see before the directory exists. */
		if (harden_check_state_dir(a.setup.cfg->agent.state_dir, 0, err, sizeof(err)) != 0)
			rc = CLI_EXIT_USAGE;
		goto out;
	}
	if (agent_open(&a) != 0 || agent_metrics(&a, NULL) != 0)
		goto out;
	/* Before anything is read or sent: older dead letters are not this run's. */
	if (once && once_marks_read(a.spool, &marks, err, sizeof(err)) != 0) {
		log_err("%s", err);
		goto out;
	}
	log_info("started: instance %s, %zu source%s, %zu rule%s, spool %s%s", a.instance,
	         a.setup.cfg->n_sources, cli_s((long long)a.setup.cfg->n_sources),
	         a.setup.cfg->n_rules, cli_s((long long)a.setup.cfg->n_rules), spool_path(a.spool),
	         a.no_send ? " (--once --no-send)"
	         : once    ? " (--once)"
	                   : "");
	if (agent_start_threads(&a) != 0) {
		log_err("cannot start threads: %s", strerror(errno));
		goto out;
	}
	/* systemd (Type=notify): ready once the threads run; the backlog is read after. */
	health_watch_init(&hw, clock_mono_ms());
	notify_ready(&a, NULL);

	for (;;) {
		sig = wait_signal(&set, &hw, &a);
		if (state_dir_still_ours(pin, a.spool) != 0) {
			health_notify("STOPPING=1\nSTATUS=the state directory was removed");
			agent_stop_threads(&a);
			state_dir_mark_lost(&a);
			rc = CLI_EXIT_RUNTIME;
			break;
		}
		if (sig < 0)
			continue;
		if (sig == SIGCHLD) {
			metrics_reap(a.metrics);
			continue;
		}
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
			if (once && !a.no_send && rc == 0 &&
			    cli_pending_left(a.spool, "they are sent by the next run") != 0)
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
			if (a.no_send) {
				rc = a.once_partial ? CLI_EXIT_RUNTIME : CLI_EXIT_OK;
				/* Unmapped customers are dead letters from their commit. */
				news_rc = once_losses(&a, &marks, news, sizeof(news));
				if (news_rc == 1 || news_rc == -1)
					rc = CLI_EXIT_RUNTIME;
				break;
			}
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
			/* Said also when rc says something else: the next run does not say it. */
			news_rc = once_losses(&a, &marks, news, sizeof(news));
			if ((news_rc == 1 || news_rc == -1) && rc == 0)
				rc = CLI_EXIT_RUNTIME;
			/* Then it is the last line, after the refusal of the key: it says that
			 * too, or the end of a cron job's mail spoke of dead letters only. */
			if (rc == CLI_EXIT_AUTH && news[0] != '\0')
				snprintf(news + strlen(news), sizeof(news) - strlen(news),
				         "; and Stripe refused the API key: nothing more was sent, "
				         "the events stay pending until the key is right (exit 3)");
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
	metrics_free(a.metrics);
	cli_setup_free(&a.setup);
	statepin_free(pin);
	cli_unlock(&lk);
	log_info("stopped");
	/* Last, for whoever reads only the end of a cron job's mail. */
	if (news[0] != '\0' && news_rc == 2 && rc != CLI_EXIT_AUTH)
		log_warn("%s", news);
	else if (news[0] != '\0')
		log_err("%s", news);
	return rc;
}
