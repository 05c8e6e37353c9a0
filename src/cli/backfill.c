/* backfill: bills archived logs (plain or gzip) through the agent's rules, tails and spool
 * (ingest/backfill.h), whether the agent runs or not. The spool is SQLite in WAL mode and takes
 * writers from several processes one transaction at a time, as `replay` does. Backfills take the
 * state directory's backfill lock for their lifetime, one at a time, so that the same content is
 * never identified by two of them at once and billed under two identities; the one that holds it
 * then knows that whoever holds the agent's lock is an agent. Without an agent, backfill takes
 * the agent's lock too (an agent started meanwhile is refused) and delivers what it committed as
 * `run --once` does; with one, it only commits, and the agent's sender, which looks at the spool
 * every second when idle, sends it. The work runs in a thread while the main thread waits for
 * SIGINT and SIGTERM, which stop it at a commit, as they stop `run --once`. docs/backfill.md. */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/backfill.h"
#include "ingest/guard.h"
#include "ingest/space.h"
#include "send/sender.h"
#include "store/spool.h"
#include "util/log.h"
#include "util/path.h"

#define BACKFILL_GRACE_MS 5000 /* for requests in flight when stopped, as the agent's */

/* The directory of `path` made absolute against the working directory, without resolving links
 * (path_normalize), written as the part of a source's glob before its last '/' is: "" for a
 * file at the root; into `out` (`len` bytes). Returns 0, or -1 with the reason in `err`. */
static int absolute_dir(const char *path, char *out, size_t len, char *err, size_t errlen)
{
	char cwd[PATH_MAX], *joined = NULL, *slash;
	int rc = -1;

	if (path[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL) {
		err_set(err, errlen, "%s: the working directory: %s", path, strerror(errno));
		goto out;
	}
	joined = path_join(path[0] == '/' ? "" : cwd, path);
	if (joined == NULL || path_normalize(joined, out, len) != 0) {
		err_set(err, errlen, "%s: path too long, or out of memory", path);
		goto out;
	}
	slash = strrchr(out, '/');
	*slash = '\0';
	rc = 0;
out:
	free(joined);
	return rc;
}

/* The source an archive is billed as: --source, else the only source, else the only source
 * whose glob's directory is the archive's (a rotated log stays beside the live one), a relative
 * `path` taken from the working directory. Returns its index, or -1 with the reason in `err`. */
static long pick_source(const struct config *cfg, const char *name, const char *path, char *err,
                        size_t errlen)
{
	char dir[PATH_MAX];
	long found = -1;

	if (name != NULL) {
		found = config_source_find(cfg, name);
		if (found < 0)
			err_set(err, errlen, "no [source %s] in the configuration", name);
		return found;
	}
	if (cfg->n_sources == 1)
		return 0;
	if (absolute_dir(path, dir, sizeof(dir), err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < cfg->n_sources; i++) {
		const char *glob = cfg->sources[i].path, *gs = strrchr(glob, '/');

		if (gs == NULL || (size_t)(gs - glob) >= sizeof(dir))
			continue;
		{
			char gdir[4096];

			snprintf(gdir, sizeof(gdir), "%.*s", (int)(gs - glob), glob);
			if (fnmatch(gdir, dir, FNM_PATHNAME) != 0)
				continue;
		}
		if (found >= 0) {
			err_set(err, errlen,
			        "%s: sources %s and %s both read its directory: say which with "
			        "--source NAME",
			        path, cfg->sources[found].name, cfg->sources[i].name);
			return -1;
		}
		found = (long)i;
	}
	if (found < 0)
		err_set(err, errlen,
		        "%s: no source reads its directory: say which source's rules bill it with "
		        "--source NAME",
		        path);
	return found;
}

/* The first rule of the source that has no `timestamp =`: its events would be stamped with the
 * time they are read, so an archive's usage would land in the billing period of the backfill.
 * NULL if every rule has one. */
static const char *rule_without_timestamp(const struct config *cfg, size_t source_index)
{
	for (size_t i = 0; i < cfg->n_rules; i++)
		if (strcmp(cfg->rules[i].source, cfg->sources[source_index].name) == 0 &&
		    cfg->rules[i].timestamp == NULL)
			return cfg->rules[i].name;
	return NULL;
}

/* What became of one part of an archive (its line after the archive's name). */
static void print_part(const struct backfill_part *p, int dry_run, int stamp_now)
{
	char rpath[4096 * 4 + 1];

	log_escape(rpath, sizeof(rpath), p->record.path);
	if (dry_run) {
		char seen[4096 * 4 + 128];

		/* A record this dry run would have made from an earlier archive has no identity
		 * and no events in the spool yet. */
		if (p->record.id == 0)
			snprintf(seen, sizeof(seen), "read by this backfill before, as %s", rpath);
		else
			snprintf(seen, sizeof(seen),
			         "already read as %s (identity %s; %lld of its events are in the "
			         "spool)",
			         rpath, p->record.uid, (long long)p->in_spool);
		printf("%lld lines: %lld events", (long long)p->lines, (long long)p->events);
		if (p->match == TAIL_MATCH_WITHIN)
			printf(", all from the lines before offset %lld, %s: 0 new",
			       (long long)p->record.offset, seen);
		else if (p->match == TAIL_MATCH_BEYOND)
			printf("; %lld from the lines before offset %lld, %s; %lld new",
			       (long long)p->events_before, (long long)p->checkpoint, seen,
			       (long long)(p->events - p->events_before));
		else
			printf(", all new (a file never read)");
		if (p->too_old > 0)
			printf("; %lld of the new ones are stamped more than 35 days ago: Stripe "
			       "refuses them, they would be dead letters",
			       (long long)p->too_old);
		if (p->stamped_now > 0)
			printf("; %lld of the new ones come from rules without `timestamp =` and "
			       "would be stamped with the time of the backfill%s",
			       (long long)p->stamped_now,
			       stamp_now ? " (--stamp-now)" : ", which needs --stamp-now");
	} else if (p->match == TAIL_MATCH_WITHIN) {
		printf("0 events added: every line of it was read already, as %s (identity %s, up "
		       "to offset %lld)",
		       rpath, p->record.uid, (long long)p->record.offset);
	} else {
		printf("%lld events added from %lld lines", (long long)p->added,
		       (long long)p->lines);
		if (p->match == TAIL_MATCH_BEYOND)
			printf(" after offset %lld, where the file read as %s stood (identity %s)",
			       (long long)p->checkpoint, rpath, p->uid);
		else
			printf(" (a file never read: identity %s)",
			       p->uid[0] ? p->uid : "none, empty");
	}
	if (p->unread > 0)
		printf("; its last %lld bytes are a line without its newline, not read (a plain "
		       "file may still be written)",
		       (long long)p->unread);
	printf("\n");
}

static void print_result(const char *path, const struct backfill_result *r, int dry_run,
                         int stamp_now)
{
	char epath[4096 * 4 + 1];

	log_escape(epath, sizeof(epath), path);
	printf("%s: %s, %lld bytes", epath, r->compression[0] ? r->compression : "plain",
	       (long long)r->size);
	if (r->n_parts == 1) {
		printf(dry_run ? ", " : ": ");
		print_part(&r->parts[0], dry_run, stamp_now);
		return;
	}
	printf(", %zu parts (gzip members of several files, each billed as the file it is):\n",
	       r->n_parts);
	for (size_t i = 0; i < r->n_parts; i++) {
		printf("  bytes %lld to %lld: ", (long long)r->parts[i].start,
		       (long long)r->parts[i].end);
		print_part(&r->parts[i], dry_run, stamp_now);
	}
}

/* One backfill command: the work thread's and the main thread's. */
struct job {
	const struct cli_args *a;
	struct cli_setup s;
	long *src;
	volatile sig_atomic_t stop; /* set by the main thread at SIGINT or SIGTERM */
	volatile sig_atomic_t done; /* the work thread ended */
	pthread_mutex_t lock;       /* guards sender */
	struct sender *sender;      /* while delivering */
	int rc;
};

/* Takes the backfill lock, waiting for another backfill to end (or for a stop). Returns the
 * descriptor, or -1 (logged; also when stopped). */
static int lock_backfill(struct job *j)
{
	const char *dir = j->s.cfg->agent.state_dir;
	char err[1024] = "";
	int held = 0, fd, told = 0;

	while ((fd = cli_lock_file(dir, CLI_BACKFILL_LOCK_NAME, &held, err, sizeof(err))) < 0) {
		struct timespec ts = {0, 100 * 1000000L};

		if (!held) {
			log_err("%s", err);
			return -1;
		}
		if (!told)
			log_info(
			    "another backfill runs on %s: waiting for it to end (backfills run "
			    "one at a time)",
			    dir);
		told = 1;
		if (j->stop)
			return -1;
		nanosleep(&ts, NULL);
	}
	return fd;
}

/* Delivers what is pending, as `run --once` does (the caller holds the lock). Returns the exit
 * status. */
static int deliver(struct job *j, struct spool *sp)
{
	char err[1024] = "";
	struct sender *s = sender_new(j->s.cfg, err, sizeof(err));
	int rc;

	if (s == NULL) {
		log_err("%s", err);
		return CLI_EXIT_RUNTIME;
	}
	sender_publish(s);
	pthread_mutex_lock(&j->lock);
	j->sender = s;
	pthread_mutex_unlock(&j->lock);
	/* A stop that came before the sender was there: stop it now. */
	if (j->stop)
		sender_stop(s, BACKFILL_GRACE_MS);
	rc = sender_run(s, 1, err, sizeof(err));
	pthread_mutex_lock(&j->lock);
	j->sender = NULL;
	pthread_mutex_unlock(&j->lock);
	sender_free(s);
	if (rc < 0 || rc == 2)
		log_err("sender: %s", err);
	if (j->stop)
		return cli_pending_left(sp, "they are sent by the agent, or the next backfill") == 0
		           ? CLI_EXIT_OK
		           : CLI_EXIT_RUNTIME;
	return rc == 0 ? CLI_EXIT_OK : rc == 1 ? CLI_EXIT_AUTH : CLI_EXIT_RUNTIME;
}

/* Whether an agent runs, as far as its published state says (a dry run takes no lock). */
static int agent_seems_running(const char *state_dir)
{
	struct space_status in;
	struct sender_status out;
	char err[256];

	return (space_status_read(state_dir, &in, err, sizeof(err)) == 0 && in.running) ||
	       (sender_status_read(state_dir, &out, err, sizeof(err)) > 0 && out.running);
}

static int work(struct job *j)
{
	const struct cli_args *a = j->a;
	const struct config *cfg = j->s.cfg;
	struct backfill_opts opts = {.dry_run = a->dry_run};
	struct backfill *b = NULL;
	struct spool *sp = NULL;
	struct space *space = NULL;
	struct guard *guard = NULL;
	struct tail_ctx ctx;
	char err[2048] = "", instance[128] = "", path[4096];
	struct cli_lock lk = {-1, -1};
	int bf_fd = -1, rc = CLI_EXIT_RUNTIME, failed = 0, stopped = 0;
	int64_t added = 0;

	if (!a->dry_run) {
		bf_fd = lock_backfill(j);
		if (bf_fd < 0)
			goto out;
		if (cli_lock_state_dir(cfg->agent.state_dir, &lk, &opts.agent_running, err,
		                       sizeof(err)) < 0 &&
		    !opts.agent_running) {
			log_err("%s", err);
			goto out;
		}
		if (opts.agent_running)
			log_info(
			    "an agent runs on %s: backfill commits the events, the agent sends "
			    "them",
			    cfg->agent.state_dir);
	} else {
		opts.agent_running = agent_seems_running(cfg->agent.state_dir);
	}
	snprintf(path, sizeof(path), "%s/%s", cfg->agent.state_dir, SPOOL_FILE_NAME);
	if (a->dry_run && access(path, F_OK) != 0 && errno == ENOENT) {
		/* No spool yet: nothing was ever read, every file is new. */
		snprintf(instance, sizeof(instance), "%s",
		         cfg->agent.instance != NULL ? cfg->agent.instance : "");
	} else {
		sp = spool_open(cfg->agent.state_dir,
		                a->dry_run ? SPOOL_READ_ONLY : SPOOL_READ_WRITE, err, sizeof(err));
		if (sp == NULL ||
		    spool_instance(sp, a->dry_run ? NULL : cfg->agent.instance, instance,
		                   sizeof(instance), err, sizeof(err)) != 0) {
			log_err("%s", err);
			goto out;
		}
		/* The instance a dry run would use: the configured one, as the agent stores it. */
		if (a->dry_run && cfg->agent.instance != NULL)
			snprintf(instance, sizeof(instance), "%s", cfg->agent.instance);
	}
	/* Alone on the spool, backfill keeps its room as the agent does (and is its pruner
	 * meanwhile); beside a running agent, the agent's ingest thread is the one pruner. */
	if (!a->dry_run && !opts.agent_running) {
		space = space_new(cfg, sp, err, sizeof(err));
		if (space == NULL) {
			log_err("%s", err);
			goto out;
		}
	}
	/* An archive is opened as the agent opens a log (docs/security.md): a link planted among
	 * the archives leads to the key no more than one among the logs. */
	guard = guard_new(cfg, err, sizeof(err));
	if (guard == NULL) {
		log_err("%s", err);
		goto out;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = cfg;
	ctx.guard = guard;
	ctx.rules = j->s.rules;
	ctx.spool = sp;
	ctx.instance = instance;
	ctx.space = space;
	ctx.stop = &j->stop;
	b = backfill_new(&ctx, &opts, err, sizeof(err));
	if (b == NULL) {
		log_err("%s", err);
		goto out;
	}
	for (int i = 0; i < a->n_inputs && !stopped; i++) {
		struct backfill_result r;

		if (backfill_file(b, (size_t)j->src[i], a->inputs[i], &r, err, sizeof(err)) == 0) {
			print_result(a->inputs[i], &r, a->dry_run, a->stamp_now);
			for (size_t k = 0; k < r.n_parts; k++)
				added += r.parts[k].added;
		} else if (j->stop) {
			stopped = 1;
			for (size_t k = 0; k < r.n_parts; k++)
				added += r.parts[k].added;
			log_warn("backfill: %s: stopped: %lld events of it were committed; run the "
			         "backfill again to bill the rest (it goes on where it stopped)",
			         a->inputs[i], (long long)added);
		} else if (r.refused && a->dry_run) {
			printf("refused: %s\n", err);
			failed = 1;
		} else {
			log_err("backfill: %s", err);
			failed = 1;
		}
		backfill_result_free(&r);
	}
	fflush(stdout);
	rc = failed || stopped ? CLI_EXIT_RUNTIME : CLI_EXIT_OK;
	if (a->dry_run)
		goto out;
	if (opts.agent_running) {
		if (stopped)
			log_warn(
			    "backfill: the %lld events committed are sent by the running agent",
			    (long long)added);
		goto out;
	}
	space_free(space);
	space = NULL;
	if (stopped) {
		cli_pending_left(sp, "they are sent by the agent, or the next backfill");
		goto out;
	}
	/* Delivered with what else is pending, as `run --once` would. */
	log_info("backfill: %lld events added; delivering", (long long)added);
	{
		int drc = deliver(j, sp);

		if (drc != CLI_EXIT_OK)
			rc = drc;
	}
out:
	backfill_free(b);
	space_free(space);
	guard_free(guard);
	spool_free(sp);
	cli_unlock(&lk);
	if (bf_fd >= 0)
		close(bf_fd);
	return rc;
}

static void *work_main(void *arg)
{
	struct job *j = arg;

	j->rc = work(j);
	j->done = 1;
	kill(getpid(), SIGUSR1);
	return NULL;
}

int cli_backfill(const struct cli_args *a)
{
	struct job j;
	pthread_t th;
	sigset_t set;
	char err[1024] = "";
	int rc = CLI_EXIT_RUNTIME, sig;

	memset(&j, 0, sizeof(j));
	j.a = a;
	pthread_mutex_init(&j.lock, NULL);
	/* Every thread inherits this mask: only the main thread takes them, with sigwait. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (cli_setup_load(&j.s, a->config) != 0) {
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	j.src = calloc((size_t)a->n_inputs, sizeof(*j.src));
	if (j.src == NULL)
		goto out;
	for (int i = 0; i < a->n_inputs; i++) {
		const char *rule;

		j.src[i] = pick_source(j.s.cfg, a->source, a->inputs[i], err, sizeof(err));
		if (j.src[i] < 0) {
			fprintf(stderr, "logmeter backfill: %s\n", err);
			rc = CLI_EXIT_USAGE;
			goto out;
		}
		rule = rule_without_timestamp(j.s.cfg, (size_t)j.src[i]);
		if (rule != NULL && !a->dry_run && !a->stamp_now) {
			fprintf(
			    stderr,
			    "logmeter backfill: rule '%s' has no `timestamp =`: its events of an "
			    "archive would be stamped with the time of the backfill, so old usage "
			    "would land in the current billing period; give --stamp-now if that is "
			    "what you want, or a timestamp group to the rule\n",
			    rule);
			rc = CLI_EXIT_USAGE;
			goto out;
		}
	}
	if (pthread_create(&th, NULL, work_main, &j) != 0) {
		log_err("cannot start a thread: %s", strerror(errno));
		goto out;
	}
	while (!j.done) {
		if (sigwait(&set, &sig) != 0 || sig == SIGUSR1)
			continue;
		log_info("%s: stopping at the next commit", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		j.stop = 1;
		pthread_mutex_lock(&j.lock);
		if (j.sender != NULL)
			sender_stop(j.sender, BACKFILL_GRACE_MS);
		pthread_mutex_unlock(&j.lock);
	}
	pthread_join(th, NULL);
	rc = j.rc;
out:
	free(j.src);
	cli_setup_free(&j.s);
	pthread_mutex_destroy(&j.lock);
	return rc;
}
