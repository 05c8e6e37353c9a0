/* backfill: bills archived logs (plain or gzip) through the agent's rules, tails and spool
 * (ingest/backfill.h), whether the agent runs or not. The spool is SQLite in WAL mode and takes
 * writers from several processes one transaction at a time, as `replay` does; the state
 * directory's lock says who sends: without an agent, backfill takes the lock (an agent started
 * meanwhile is refused) and delivers what it committed as `run --once` does; with one, it only
 * commits, and the agent's sender, which looks at the spool every second when idle, sends it.
 * docs/backfill.md. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/backfill.h"
#include "ingest/guard.h"
#include "ingest/space.h"
#include "send/sender.h"
#include "store/spool.h"
#include "util/log.h"

/* The source an archive is billed as: --source, else the only source, else the only source
 * whose glob's directory is the archive's (a rotated log stays beside the live one). Returns its
 * index, or -1 with the reason in `err`. */
static long pick_source(const struct config *cfg, const char *name, const char *path, char *err,
                        size_t errlen)
{
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash != NULL ? (size_t)(slash - path) : 0;
	long found = -1;

	if (name != NULL) {
		found = config_source_find(cfg, name);
		if (found < 0)
			err_set(err, errlen, "no [source %s] in the configuration", name);
		return found;
	}
	if (cfg->n_sources == 1)
		return 0;
	for (size_t i = 0; i < cfg->n_sources; i++) {
		const char *glob = cfg->sources[i].path, *gs = strrchr(glob, '/');
		char dir[4096];

		snprintf(dir, sizeof(dir), "%.*s", slash != NULL ? (int)dirlen : 1,
		         slash != NULL ? path : ".");
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

static void print_result(const char *path, const struct backfill_result *r, int dry_run)
{
	const char *what = r->compression[0] ? r->compression : "plain";

	if (dry_run) {
		printf("%s: %s, %lld bytes, %lld lines: %lld events", path, what,
		       (long long)r->size, (long long)r->lines, (long long)r->events);
		if (r->continued)
			printf("; %lld from the lines before offset %lld, already read as %s "
			       "(identity %s; %lld of its events are in the spool); %lld new",
			       (long long)r->events_before, (long long)r->checkpoint,
			       r->record_path, r->uid, (long long)r->in_spool,
			       (long long)(r->events - r->events_before));
		else
			printf(", all new (a file never read)");
		if (r->too_old > 0)
			printf("; %lld of the new ones are stamped more than 35 days ago: Stripe "
			       "refuses them, they would be dead letters",
			       (long long)r->too_old);
		printf("\n");
		return;
	}
	printf("%s: %s, %lld bytes: %lld events added from %lld lines", path, what,
	       (long long)r->size, (long long)r->added, (long long)r->lines);
	if (r->continued)
		printf(" after offset %lld, where the file read as %s stood (identity %s)\n",
		       (long long)r->checkpoint, r->record_path, r->uid);
	else
		printf(" (a file never read: identity %s)\n", r->uid[0] ? r->uid : "none, empty");
}

/* Delivers what is pending, as `run --once` does (the caller holds the lock). Returns the exit
 * status. */
static int deliver(const struct config *cfg)
{
	char err[1024] = "";
	struct sender *s = sender_new(cfg, err, sizeof(err));
	int rc;

	if (s == NULL) {
		log_err("%s", err);
		return CLI_EXIT_RUNTIME;
	}
	sender_publish(s);
	rc = sender_run(s, 1, err, sizeof(err));
	sender_free(s);
	if (rc < 0 || rc == 2)
		log_err("sender: %s", err);
	return rc == 0 ? CLI_EXIT_OK : rc == 1 ? CLI_EXIT_AUTH : CLI_EXIT_RUNTIME;
}

int cli_backfill(const struct cli_args *a)
{
	struct cli_setup s = {0};
	struct spool *sp = NULL;
	struct space *space = NULL;
	struct guard *guard = NULL;
	struct tail_ctx ctx;
	char err[1024] = "", instance[128] = "";
	int lock_fd = -1, held = 0, rc = CLI_EXIT_RUNTIME, failed = 0;
	int64_t added = 0;
	long *src = NULL;

	if (cli_setup_load(&s, a->config) != 0)
		return CLI_EXIT_USAGE;
	src = calloc((size_t)a->n_inputs, sizeof(*src));
	if (src == NULL)
		goto out;
	for (int i = 0; i < a->n_inputs; i++) {
		src[i] = pick_source(s.cfg, a->source, a->inputs[i], err, sizeof(err));
		if (src[i] < 0) {
			fprintf(stderr, "logmeter backfill: %s\n", err);
			rc = CLI_EXIT_USAGE;
			goto out;
		}
	}
	if (!a->dry_run) {
		lock_fd = cli_lock_state_dir(s.cfg->agent.state_dir, &held, err, sizeof(err));
		if (lock_fd < 0 && !held) {
			log_err("%s", err);
			goto out;
		}
		if (held)
			log_info(
			    "an agent runs on %s: backfill commits the events, the agent sends "
			    "them",
			    s.cfg->agent.state_dir);
	}
	sp = spool_open(s.cfg->agent.state_dir, a->dry_run ? SPOOL_READ_ONLY : SPOOL_READ_WRITE,
	                err, sizeof(err));
	if (sp == NULL || spool_instance(sp, a->dry_run ? NULL : s.cfg->agent.instance, instance,
	                                 sizeof(instance), err, sizeof(err)) != 0) {
		log_err("%s", err);
		goto out;
	}
	/* The instance a dry run would use: the configured one, as the agent would store it. */
	if (a->dry_run && s.cfg->agent.instance != NULL)
		snprintf(instance, sizeof(instance), "%s", s.cfg->agent.instance);
	/* Alone on the spool, backfill keeps its room as the agent does (and is its pruner
	 * meanwhile); beside a running agent, the agent's ingest thread is the one pruner. */
	if (!a->dry_run && !held) {
		space = space_new(s.cfg, sp, err, sizeof(err));
		if (space == NULL) {
			log_err("%s", err);
			goto out;
		}
	}
	/* An archive is opened as the agent opens a log (docs/security.md): a link planted among
	 * the archives leads to the key no more than one among the logs. */
	guard = guard_new(s.cfg, err, sizeof(err));
	if (guard == NULL) {
		log_err("%s", err);
		goto out;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = s.cfg;
	ctx.guard = guard;
	ctx.rules = s.rules;
	ctx.spool = sp;
	ctx.instance = instance;
	ctx.space = space;
	for (int i = 0; i < a->n_inputs; i++) {
		struct backfill_result r;

		if (backfill_file(&ctx, (size_t)src[i], a->inputs[i], held, a->dry_run, &r, err,
		                  sizeof(err)) != 0) {
			log_err("backfill: %s", err);
			failed = 1;
			continue;
		}
		print_result(a->inputs[i], &r, a->dry_run);
		added += r.added;
	}
	fflush(stdout);
	rc = failed ? CLI_EXIT_RUNTIME : CLI_EXIT_OK;
	if (a->dry_run || held)
		goto out;
	space_free(space);
	space = NULL;
	/* Delivered with what else is pending, as `run --once` would. */
	log_info("backfill: %lld events added; delivering", (long long)added);
	{
		int drc = deliver(s.cfg);

		if (drc != CLI_EXIT_OK)
			rc = drc;
	}
out:
	space_free(space);
	guard_free(guard);
	spool_free(sp);
	if (lock_fd >= 0)
		close(lock_fd);
	free(src);
	cli_setup_free(&s);
	return rc;
}
