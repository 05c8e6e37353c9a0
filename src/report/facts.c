/* facts: gathering what status and the metrics say (report/facts.h), the health, and the text
 * of `logmeter status`. */
#include "report/facts.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "ingest/tail.h"
#include "store/report.h"
#include "util/log.h"
#include "util/path.h"

struct gather {
	struct facts *f;
	size_t cap;
	char *err;
	size_t errlen;
};

/* Whether the file at `path` (device and inode those of record *sf) still holds what the record
 * read (tail_record_holds): 0 only if it was read and holds other bytes (written over in place);
 * 1 if it holds them, or if it cannot be opened or read (status keeps showing its live size). */
static int still_holds(const char *path, const struct spool_file *sf)
{
	struct stat st;
	int fd, rc = 1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return 1;
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_dev == sf->dev &&
	    (uint64_t)st.st_ino == sf->ino && tail_record_holds(sf, fd) == 0)
		rc = 0;
	close(fd);
	return rc;
}

static int add_file(const struct spool_file *sf, void *ud)
{
	struct gather *g = ud;
	struct facts *f = g->f;
	struct facts_file *ff;
	struct stat st;

	if (f->n_files == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 64;
		struct facts_file *p = realloc(f->files, cap * sizeof(*p));

		if (p == NULL)
			goto oom;
		f->files = p;
		g->cap = cap;
	}
	ff = &f->files[f->n_files];
	memset(ff, 0, sizeof(*ff));
	ff->path = strdup(sf->path);
	if (ff->path == NULL)
		goto oom;
	f->n_files++;
	/* Renamed since the agent last saw it (rotated again after it was released, or while the
	 * agent was stopped): found by inode where rotation leaves it, its directory. */
	if (sf->state != SPOOL_FILE_GONE &&
	    (stat(sf->path, &st) != 0 || (uint64_t)st.st_dev != sf->dev ||
	     (uint64_t)st.st_ino != sf->ino)) {
		char *dir = path_dir(sf->path), *now;

		now = dir != NULL ? path_find_ino(dir, (dev_t)sf->dev, (ino_t)sf->ino) : NULL;
		free(dir);
		if (now != NULL) {
			ff->recorded = ff->path;
			ff->path = now;
		}
	}
	ff->id = sf->id;
	snprintf(ff->source, sizeof(ff->source), "%s", sf->source);
	snprintf(ff->uid, sizeof(ff->uid), "%s", sf->uid);
	ff->dev = sf->dev;
	ff->ino = sf->ino;
	ff->state = sf->state;
	ff->offset = sf->offset;
	ff->counters = sf->counters;
	ff->updated = sf->updated;
	ff->size = sf->size;
	/* The live size, when the path still names the same file, shows the lag behind the
	 * writer; not an archive's, whose offsets are those of its content once decompressed. Of a
	 * drained record, only while the file still holds what it read: a rotated copy written
	 * over in place (`cp app.log app.log.1`) keeps its inode, not its bytes, and the new
	 * size past the checkpoint would be another file's bytes shown as this one's lag. */
	if (sf->state != SPOOL_FILE_GONE && stat(ff->path, &st) == 0 &&
	    (uint64_t)st.st_dev == sf->dev && (uint64_t)st.st_ino == sf->ino &&
	    (st.st_size == sf->size || tail_compression_at(ff->path) == NULL) &&
	    (sf->state == SPOOL_FILE_READING || st.st_size == sf->size ||
	     still_holds(ff->path, sf)))
		ff->size = (int64_t)st.st_size;
	ff->lag = ff->size > ff->offset ? ff->size - ff->offset : 0;
	return 0;
oom:
	err_set(g->err, g->errlen, "out of memory listing files");
	return -1;
}

static int cmp_identity(const void *a, const void *b)
{
	const struct facts_file *x = *(const struct facts_file *const *)a;
	const struct facts_file *y = *(const struct facts_file *const *)b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return 0;
}

/* Marks the records left behind by their source (left_to, no lag): a spool that read one file
 * under two sources (an older logmeter, or two configurations in turn) keeps the record of the
 * one the agent no longer reads it under "reading", its checkpoint still, while the other reads
 * on (watch.c file_owner); its lag would grow for ever, as if lines waited. The record of another
 * source, of the same device and inode, not gone, further on and changed as late or later tells
 * it. Sorted by identity: a spool may hold many thousands of records. Returns 0 or -1 (out of
 * memory). */
static int mark_left(struct facts *f)
{
	const struct facts_file **v;

	if (f->n_files < 2)
		return 0;
	v = malloc(f->n_files * sizeof(*v));
	if (v == NULL)
		return -1;
	for (size_t i = 0; i < f->n_files; i++)
		v[i] = &f->files[i];
	qsort(v, f->n_files, sizeof(*v), cmp_identity);
	for (size_t i = 0, j; i < f->n_files; i = j) {
		for (j = i + 1; j < f->n_files && cmp_identity(&v[i], &v[j]) == 0; j++)
			;
		for (size_t a = i; a < j && j - i > 1; a++) {
			struct facts_file *fa = &f->files[v[a] - f->files];

			for (size_t b = i; b < j && fa->state != SPOOL_FILE_GONE; b++) {
				const struct facts_file *fb = v[b];

				if (fb->state != SPOOL_FILE_GONE &&
				    strcmp(fb->source, fa->source) != 0 &&
				    fb->offset > fa->offset && fb->updated >= fa->updated) {
					snprintf(fa->left_to, sizeof(fa->left_to), "%s",
					         fb->source);
					fa->lag = 0;
					break;
				}
			}
		}
	}
	free(v);
	return 0;
}

static int add_rule(const char *rule, enum event_state state, int64_t n, void *ud)
{
	struct gather *g = ud;
	struct facts *f = g->f;

	if (f->n_rules == 0 || strcmp(f->rules[f->n_rules - 1].rule, rule) != 0) {
		struct facts_rule *p;

		if (f->n_rules == g->cap) {
			size_t cap = g->cap ? 2 * g->cap : 16;

			p = realloc(f->rules, cap * sizeof(*p));
			if (p == NULL) {
				err_set(g->err, g->errlen, "out of memory counting rules");
				return -1;
			}
			f->rules = p;
			g->cap = cap;
		}
		p = &f->rules[f->n_rules++];
		memset(p, 0, sizeof(*p));
		snprintf(p->rule, sizeof(p->rule), "%s", rule);
	}
	f->rules[f->n_rules - 1].n[state] = n;
	return 0;
}

static int add_window(const struct spool_window *w, void *ud)
{
	struct facts *f = ud;

	if (f->n_windows < FACTS_WINDOWS_MAX)
		f->windows[f->n_windows++] = *w;
	f->windows_open++;
	f->window_lines += w->lines;
	if (f->window_due_first == 0 || w->close_after < f->window_due_first)
		f->window_due_first = w->close_after;
	return 0;
}

static void utc(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;

	out[0] = '\0';
	if (gmtime_r(&tt, &tm) != NULL)
		strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void problem(struct facts *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct facts *f, const char *fmt, ...)
{
	va_list ap;

	f->degraded = 1;
	if (f->n_problems == FACTS_PROBLEMS_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(f->problems[f->n_problems++], sizeof(f->problems[0]), fmt, ap);
	va_end(ap);
}

/* What makes the agent degraded, in the words of the text status; more in health_no_agent and
 * health_losses. */
static void health(struct facts *f)
{
	char when[32];

	if (f->ingest.running && f->ingest.state != SPACE_READING) {
		utc(f->ingest.since, when, sizeof(when));
		problem(f, "ingest paused (%s since %s): %s",
		        f->ingest.state == SPACE_DISK_FULL ? "disk full" : "spool limit reached",
		        when, f->ingest.detail);
	}
	if (f->sender.running && strncmp(f->sender.state, "paused", 6) == 0) {
		utc(f->sender.since, when, sizeof(when));
		problem(f, "sending paused since %s: %s", when, f->sender.detail);
	}
	/* A run that ended with sending paused (`run --once` stopped by a refused key or an answer
	 * not Stripe's; an agent stopped while paused) left its events pending: until the next
	 * run sends them, that is the news. */
	if (f->sender.found && !f->sender.running && f->sender.detail[0] != '\0') {
		utc(f->sender.since, when, sizeof(when));
		problem(f, "the last run stopped with sending paused since %s: %s", when,
		        f->sender.detail);
	}
	/* Stripe would take these events and bill nothing (a missing meter under v2, a meter
	 * that does not sum windows): held, unsent, until the meters are right. */
	if (f->sender.found && f->sender.held_rules[0] != '\0')
		problem(f, "the events of rules %s are held, not sent: %s", f->sender.held_rules,
		        f->sender.held_why);
	if (f->ingest_stale) {
		utc(f->ingest.written, when, sizeof(when));
		problem(f,
		        "ingest not responding: its live state was last written at %s, %lld s ago "
		        "(stale_after %lld s): the agent is frozen or its reading thread hangs",
		        when, (long long)(f->now - f->ingest.written), (long long)f->stale_after);
	}
	if (f->sender_stale) {
		utc(f->sender.written, when, sizeof(when));
		problem(f,
		        "sender not responding: its live state was last written at %s, %lld s ago "
		        "(stale_after %lld s): the agent is frozen or its sending thread hangs",
		        when, (long long)(f->now - f->sender.written), (long long)f->stale_after);
	}
	if (f->since_set && f->dead_since > 0) {
		utc(f->since, when, sizeof(when));
		problem(f, "%lld dead letters since %s", (long long)f->dead_since, when);
	}
}

/* Each configured source with the number of files its glob matches now, and why it matches none.
 * Returns 0, or -1 out of memory. */
static int add_sources(struct facts *f, const struct config *cfg)
{
	f->sources = calloc(cfg->n_sources > 0 ? cfg->n_sources : 1, sizeof(*f->sources));
	if (f->sources == NULL)
		return -1;
	for (size_t si = 0; si < cfg->n_sources; si++) {
		const struct config_source *src = &cfg->sources[si];
		struct facts_source *fs = &f->sources[f->n_sources++];
		glob_t g;
		struct stat st;

		snprintf(fs->name, sizeof(fs->name), "%s", src->name);
		snprintf(fs->path, sizeof(fs->path), "%s", src->path);
		memset(&g, 0, sizeof(g));
		if (glob(src->path, 0, NULL, &g) != 0)
			g.gl_pathc = 0;
		for (size_t k = 0; k < g.gl_pathc; k++)
			if ((src->exclude[0] == '\0' ||
			     fnmatch(src->exclude, path_base(g.gl_pathv[k]), 0) != 0) &&
			    stat(g.gl_pathv[k], &st) == 0 && S_ISREG(st.st_mode))
				fs->files++;
		globfree(&g);
		if (fs->files == 0)
			path_glob_nomatch(src->name, src->path, fs->problem, sizeof(fs->problem));
	}
	return 0;
}

/* No agent runs (neither half's live state names a live process) while one is needed: lines
 * wait unread in files being tailed, or events wait to be delivered. A crashed agent, a unit
 * skipped for a missing key, or one refused at start bills nothing; `run --once` from a timer is
 * degraded between runs only while lines or events wait. */
static void health_no_agent(struct facts *f)
{
	int64_t lag = 0, files = 0;

	if (f->ingest.running || f->sender.running || f->ingest_err[0] != '\0')
		return;
	for (size_t i = 0; i < f->n_files; i++)
		if (f->files[i].state == SPOOL_FILE_READING && f->files[i].lag > 0) {
			lag += f->files[i].lag;
			files++;
		}
	if (lag > 0 || f->counts.pending > 0)
		problem(f,
		        "no agent is running, and %lld bytes wait unread in %lld files and %lld "
		        "events wait to be delivered: nothing is billed until one runs",
		        (long long)lag, (long long)files, (long long)f->counts.pending);
}

/* Lines lost for good that the running (or last) agent counted: lines a PCRE2 limit stopped
 * and files found gone at start (with `since`, only if the last came at or after it), symbolic
 * links refused (their lines are not read), files left to another source whose glob matches them
 * too (the rules of this one make nothing of them), and files gone before they were read to their
 * end (with `since`, those whose record changed at or after it). */
static void health_losses(struct facts *f)
{
	const struct guard_counts *c = &f->guard.counts;
	int64_t gone = 0, bytes = 0;
	const char *first = NULL;
	char when[32];

	if (f->guard.found && c->limit_lines > 0 && (!f->since_set || c->limit_last >= f->since)) {
		utc(c->limit_last, when, sizeof(when));
		problem(
		    f,
		    "%lld lines hit a PCRE2 limit since the agent started, the last at %s: they "
		    "made no event (limits: docs/security.md)",
		    (long long)c->limit_lines, when);
	}
	if (f->guard.found && c->refused_links > 0)
		problem(
		    f,
		    "%lld symbolic links were refused (the source does not set follow_symlinks): "
		    "their lines are not read; the agent's log names each link and its target: "
		    "name a target that is a log of yours in a source's path, or exclude the link "
		    "(exclude =); set follow_symlinks = yes only where no untrusted user can make "
		    "links (docs/security.md)",
		    (long long)c->refused_links);
	if (f->guard.found && c->shared_files > 0)
		problem(f,
		        "%lld files are matched by the globs of more than one source: each is read "
		        "by one source only (the one that read it first, or the first in "
		        "configuration order), so the rules of the others make no events of it "
		        "(the agent's log and `logmeter check` name each file and its sources): "
		        "keep the source that reads it and move the others' rules into it "
		        "(docs/tailing.md)",
		        (long long)c->shared_files);
	/* Usage lost for good, which only a person can bill: said until `--since` passes it. */
	if (f->recover_loss_windows > 0 && (!f->since_set || f->recover_loss_when >= f->since)) {
		utc(f->recover_loss_when, when, sizeof(when));
		char more[160] = "";

		if (f->recover_loss_unknown > 0)
			snprintf(more, sizeof(more),
			         "; %lld more lost windows left no line and no meter event (most "
			         "likely billed, maybe lost)",
			         (long long)f->recover_loss_unknown);
		problem(
		    f,
		    "`spool recover` at %s lost the usage of %lld aggregation windows (at least "
		    "%lld lines), never billed%s: its output and log name their customers and "
		    "lines, to bill by hand (docs/spool.md); `status --since` a later time "
		    "leaves this out",
		    when, (long long)f->recover_loss_windows, (long long)f->recover_loss_lines,
		    more);
	}
	if (f->guard.found && c->gone_unread > 0 && (!f->since_set || c->gone_last >= f->since)) {
		utc(c->gone_last, when, sizeof(when));
		problem(
		    f,
		    "%lld files were gone when the agent started (deleted, or moved out of their "
		    "directory while logmeter was stopped), the last found at %s: what was "
		    "written to them after their checkpoint was not read (the agent's log names "
		    "each file and offset; logrotate's olddir: set olddir in the source, "
		    "docs/tailing.md)",
		    (long long)c->gone_unread, when);
	}
	for (size_t i = 0; i < f->n_files; i++) {
		const struct facts_file *ff = &f->files[i];

		if (ff->state != SPOOL_FILE_GONE || ff->size <= ff->offset ||
		    (f->since_set && ff->updated < f->since))
			continue;
		gone++;
		bytes += ff->size - ff->offset;
		if (first == NULL)
			first = ff->path;
	}
	if (gone > 0) {
		char path[4096 * 4 + 1];

		problem(f,
		        "%lld files were gone before they were read to their end (%lld bytes "
		        "unread), the first %s",
		        (long long)gone, (long long)bytes, log_escape(path, sizeof(path), first));
	}
}

struct facts *facts_new(const struct config *cfg, struct spool *sp, int64_t now, int64_t since,
                        char *err, size_t errlen)
{
	struct facts *f;
	struct gather g = {.err = err, .errlen = errlen};
	struct statvfs vfs;
	char e[512];

	if (cfg == NULL || sp == NULL) {
		err_set(err, errlen, "facts_new: invalid arguments");
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	g.f = f;
	f->now = now;
	f->api = cfg->stripe.api;
	f->since = since >= 0 ? since : 0;
	f->since_set = since >= 0;
	f->stale_after = (cfg->agent.stale_after_ms + 999) / 1000;
	f->spool = spool_path(sp);
	f->max_spool_bytes = cfg->agent.max_spool_bytes;
	if (spool_counts(sp, &f->counts, err, errlen) != 0 ||
	    spool_last_error(sp, f->last_error, sizeof(f->last_error), err, errlen) != 0 ||
	    spool_oldest_pending(sp, &f->oldest_pending, err, errlen) != 0 ||
	    (f->since_set && spool_dead_since(sp, f->since, &f->dead_since, err, errlen) != 0) ||
	    spool_recover_loss(sp, &f->recover_loss_when, &f->recover_loss_windows,
	                       &f->recover_loss_lines, &f->recover_loss_unknown, err, errlen) != 0)
		goto fail;
	/* Read-only: show the stored instance without changing it. */
	if (spool_instance(sp, NULL, f->instance, sizeof(f->instance), e, sizeof(e)) != 0)
		snprintf(f->instance, sizeof(f->instance), "?");
	if (spool_rule_counts(sp, add_rule, &g, err, errlen) != 0)
		goto fail;
	g.cap = 0;
	if (spool_files_foreach(sp, add_file, &g, e, sizeof(e)) != 0) {
		/* the callback's own reason, if it gave one */
		if (err == NULL || err[0] == '\0')
			err_set(err, errlen, "%s", e);
		goto fail;
	}
	if (mark_left(f) != 0) {
		err_set(err, errlen, "out of memory listing files");
		goto fail;
	}
	if (spool_windows_foreach(sp, 1, add_window, NULL, f, err, errlen) != 0)
		goto fail;
	if (space_status_read(cfg->agent.state_dir, &f->ingest, f->ingest_err,
	                      sizeof(f->ingest_err)) != 0)
		f->ingest.found = 0;
	else
		f->ingest_err[0] = '\0';
	f->usage_known = spool_usage(sp, &f->usage, f->usage_err, sizeof(f->usage_err)) == 0;
	if (statvfs(cfg->agent.state_dir, &vfs) == 0) {
		f->fs_known = 1;
		f->fs_free = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
	}
	if (guard_status_read(cfg->agent.state_dir, &f->guard, f->guard_err,
	                      sizeof(f->guard_err)) == 0)
		f->guard_err[0] = '\0';
	if (sender_status_read(cfg->agent.state_dir, &f->sender, f->sender_err,
	                       sizeof(f->sender_err)) == 0)
		f->sender_err[0] = '\0';
	/* What stops every event is what the operator must act on, not the last event's error:
	 * while sending is paused (a refused key, answers not Stripe's, sessions expiring at once),
	 * or after a run that stopped so, the pause's reason is the last error; once sending goes
	 * on, the events' own again. */
	if (f->sender.found && f->sender.detail[0] != '\0' &&
	    (!f->sender.running || strncmp(f->sender.state, "paused", 6) == 0)) {
		size_t n = strnlen(f->sender.detail, sizeof(f->last_error) - 1);

		memcpy(f->last_error, f->sender.detail, n); /* cut to fit */
		f->last_error[n] = '\0';
	}
	/* A state written in the future (a clock set back) is not stale. */
	f->ingest_stale =
	    f->ingest.running && f->ingest.written > 0 && now - f->ingest.written > f->stale_after;
	f->sender_stale = f->sender.running && f->sender.written > 0 &&
	                  now - (int64_t)f->sender.written > f->stale_after;
	if (add_sources(f, cfg) != 0) {
		err_set(err, errlen, "out of memory listing sources");
		goto fail;
	}
	if (!f->sender.running)
		f->rate_known =
		    sender_rate_of(cfg, &f->rate_max, f->rate_why, sizeof(f->rate_why)) == 0;
	health(f);
	health_no_agent(f);
	health_losses(f);
	return f;
fail:
	facts_free(f);
	return NULL;
}

void facts_free(struct facts *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n_files; i++) {
		free(f->files[i].path);
		free(f->files[i].recorded);
	}
	free(f->files);
	free(f->sources);
	free(f->rules);
	free(f);
}

/* ---- the text of `logmeter status` ---------------------------------------------------------- */

static void print_ingest(FILE *out, const struct facts *f)
{
	char when[32], a[32], b[32], c[32], d[32];
	const struct spool_usage *u = &f->usage;

	utc(f->ingest.since, when, sizeof(when));
	if (f->ingest_err[0] != '\0')
		fprintf(out, "ingest: unknown (%s)\n", f->ingest_err);
	else if (!f->ingest.running)
		fprintf(out, "ingest: not running\n");
	else if (f->ingest_stale)
		fprintf(out, "ingest: not responding (its live state is %lld s old)\n",
		        (long long)(f->now - f->ingest.written));
	else if (f->ingest.state == SPACE_DISK_FULL)
		fprintf(out, "ingest: paused (disk full since %s): %s\n", when, f->ingest.detail);
	else if (f->ingest.state == SPACE_LIMIT)
		fprintf(out, "ingest: paused (spool limit reached since %s): %s\n", when,
		        f->ingest.detail);
	else
		fprintf(out, "ingest: reading\n");
	if (!f->usage_known) {
		fprintf(out, "space: unknown (%s)\n", f->usage_err);
		return;
	}
	space_fmt_bytes((u->pages - u->free_pages) * u->page_size, a, sizeof(a));
	space_fmt_bytes(u->free_pages * u->page_size, b, sizeof(b));
	space_fmt_bytes(u->wal_file, c, sizeof(c));
	fprintf(out, "space: %s in use", a);
	if (f->max_spool_bytes > 0) {
		space_fmt_bytes(f->max_spool_bytes, d, sizeof(d));
		fprintf(out, " (max_spool_bytes %s)", d);
	}
	fprintf(out, ", %s of free pages, WAL %s", b, c);
	if (f->fs_known) {
		space_fmt_bytes(f->fs_free, d, sizeof(d));
		fprintf(out, "; %s free on its file system", d);
	}
	fprintf(out, "\n");
}

/* "tailing: ..." (docs/tailing.md): the warnings about files whose lines were read in a way content
 * cannot prove right, or not read yet, counted since the agent started, and the last file each
 * named (already escaped by the agent). */
static void print_tailing(FILE *out, const struct guard_status *g)
{
	static const char *const what[GUARD_TAILINGS] = {
	    "copies of files last seen empty, read as their first lines",
	    "files rotated while logmeter was stopped, read as new files",
	    "files that end in a hole (sparse), not read past it",
	    "files beside a rotated one left unread (not rotations)",
	    "files another source had read, gone on from its checkpoint"};
	char when[32];

	fprintf(out, "tailing: %lld %s, %lld %s, %lld %s, %lld %s, %lld %s (docs/tailing.md)\n",
	        (long long)g->counts.tailing[GUARD_TAIL_EMPTY_COPY], what[GUARD_TAIL_EMPTY_COPY],
	        (long long)g->counts.tailing[GUARD_TAIL_ROTATED_STOPPED],
	        what[GUARD_TAIL_ROTATED_STOPPED], (long long)g->counts.tailing[GUARD_TAIL_SPARSE],
	        what[GUARD_TAIL_SPARSE], (long long)g->counts.tailing[GUARD_TAIL_NOT_ROTATION],
	        what[GUARD_TAIL_NOT_ROTATION], (long long)g->counts.tailing[GUARD_TAIL_TAKEN_OVER],
	        what[GUARD_TAIL_TAKEN_OVER]);
	for (int w = 0; w < GUARD_TAILINGS; w++) {
		if (g->counts.tailing[w] == 0)
			continue;
		utc(g->counts.tailing_last[w], when, sizeof(when));
		fprintf(out, "  %s: the last at %s: %s\n",
		        guard_tailing_name((enum guard_tailing)w), when,
		        g->tailing_path[w][0] != '\0' ? g->tailing_path[w]
		                                      : "(its path not kept: the agent's state "
		                                        "region is full; its log names it)");
	}
}

/* "refused: ...", "limits: ..." and "tailing: ..." (docs/security.md, docs/tailing.md), once the
 * agent wrote them. */
static void print_guard(FILE *out, const struct facts *f)
{
	const struct guard_status *g = &f->guard;

	if (f->guard_err[0] != '\0') {
		fprintf(out, "refused: unknown (%s)\n", f->guard_err);
		return;
	}
	if (!g->found)
		return;
	fprintf(out,
	        "refused: %lld symbolic links not followed, %lld files of logmeter's own "
	        "(docs/security.md)\n",
	        (long long)g->counts.refused_links, (long long)g->counts.refused_protected);
	if (g->counts.shared_files > 0)
		fprintf(out,
		        "shared: %lld files matched by more than one source's glob, each read by "
		        "one source only (docs/tailing.md)\n",
		        (long long)g->counts.shared_files);
	fprintf(out, "limits: %lld lines hit a PCRE2 limit\n", (long long)g->counts.limit_lines);
	print_tailing(out, g);
	for (size_t i = 0; i < g->n_rules; i++) {
		fprintf(out, "  rule %s", g->rules[i].rule);
		for (int l = RULE_LIMIT_NONE + 1; l < RULE_LIMITS; l++)
			if (g->rules[i].hits[l] > 0)
				fprintf(out, " %s %lld", rule_limit_name((enum rule_limit)l),
				        (long long)g->rules[i].hits[l]);
		fprintf(out, "\n");
	}
	if (g->rules_cut > 0)
		fprintf(out,
		        "  %lld more rules hit a limit, not shown: the agent's state region has no "
		        "room for them (their lines are in the total above; the agent's log names "
		        "each rule)\n",
		        (long long)g->rules_cut);
}

static void print_sender(FILE *out, const struct facts *f)
{
	const struct sender_status *st = &f->sender;
	char a[32], b[32];
	long long total = 0;

	if (f->sender_err[0] != '\0') {
		fprintf(out, "sender: unknown (%s)\n", f->sender_err);
		return;
	}
	if (!st->running) {
		if (st->found && st->detail[0] != '\0')
			fprintf(out, "sender: not running (it stopped paused: %s)\n", st->detail);
		else
			fprintf(out, "sender: not running\n");
		if (f->rate_known)
			fprintf(out, "rate: up to %.0f requests/s (%s)\n", f->rate_max,
			        f->rate_why);
		else
			fprintf(out, "rate: %s\n", f->rate_why);
		return;
	}
	if (f->sender_stale) {
		fprintf(out, "sender: not responding (its live state is %lld s old)\n",
		        (long long)(f->now - st->written));
	} else if (strncmp(st->state, "paused", 6) == 0) {
		utc(st->since, a, sizeof(a));
		utc(st->pause_until, b, sizeof(b));
		fprintf(out, "sender: paused since %s: %s; trying again at %s\n", a, st->detail, b);
	} else if (st->hold_until > f->now) {
		utc(st->hold_until, a, sizeof(a));
		fprintf(out, "sender: waiting until %s, as Stripe asked (Retry-After)\n", a);
	} else {
		fprintf(out, "sender: sending\n");
	}
	/* Buckets that do not overlap: with the pending events not read from the spool yet, they
	 * add up to the pending count. */
	fprintf(out,
	        "queue: %lld requests in flight with %lld events, %lld events waiting to retry, "
	        "%lld held, %lld ready to send; %lld more pending in the spool\n",
	        st->in_flight, st->in_flight_events, st->retrying, st->held, st->queued,
	        (long long)facts_not_loaded(f));
	fprintf(out, "rate: up to %.0f requests/s (%s)", st->rate_max, st->rate_why);
	if (st->rate + 0.05 < st->rate_max) {
		utc(st->rate_cut, a, sizeof(a));
		fprintf(out, "; now %.1f/s, lowered after a 429 at %s, climbing back", st->rate, a);
	}
	fprintf(out, "\n");
	if (st->held > 0 && st->stripe_behind > 0)
		fprintf(out,
		        "held: %lld events stamped more than 5 minutes ahead of Stripe's clock, "
		        "which is %s%lld s behind this host's (see clock); sent once Stripe takes "
		        "them\n",
		        st->held, strcmp(st->stripe_behind_from, "session") == 0 ? "" : "at least ",
		        st->stripe_behind);
	else if (st->held > 0)
		fprintf(out,
		        "held: %lld events stamped too far ahead of this host's clock for Stripe "
		        "(more than 5 minutes, less a minute of margin); sent once Stripe takes "
		        "them\n",
		        st->held);
	if (st->stripe_behind > 0)
		fprintf(
		    out,
		    "clock: Stripe's clock is %s%lld s behind this host's (%s): events are held "
		    "until they are within 5 minutes of Stripe's clock; if this host's clock is "
		    "the one that is wrong, fix it (timedatectl, NTP)\n",
		    strcmp(st->stripe_behind_from, "session") == 0 ? "" : "at least ",
		    st->stripe_behind,
		    strcmp(st->stripe_behind_from, "session") == 0
		        ? "a meter event session's created time"
		        : "Stripe's answers: timestamp too far in the future");
	for (size_t i = 0; i < STRIPE_OUTCOMES; i++)
		total += st->outcomes[i];
	utc(st->started, a, sizeof(a));
	fprintf(out, "requests: %lld since %s", total, a);
	for (size_t i = 0; i < STRIPE_OUTCOMES; i++)
		if (st->outcomes[i] > 0)
			fprintf(out, ", %s %lld", stripe_outcome_name((enum stripe_outcome)i),
			        st->outcomes[i]);
	fprintf(out, "\n");
}

int64_t facts_not_loaded(const struct facts *f)
{
	const struct sender_status *st = &f->sender;
	int64_t n = f->counts.pending -
	            (int64_t)(st->in_flight_events + st->retrying + st->held + st->queued);

	/* The sender's view is a moment older or newer than the spool's count. */
	return st->running && n > 0 ? n : 0;
}

static void print_file(FILE *out, const struct facts_file *ff)
{
	char path[4096 * 4 + 1];

	/* One line per path, whatever bytes it holds (log_escape). */
	fprintf(out, "  %s\n", log_escape(path, sizeof(path), ff->path));
	if (ff->recorded != NULL)
		fprintf(out, "    renamed since logmeter last saw it, as %s\n",
		        log_escape(path, sizeof(path), ff->recorded));
	fprintf(out, "    source %s  identity %s (dev %llu, inode %llu)  state %s\n", ff->source,
	        ff->uid, (unsigned long long)ff->dev, (unsigned long long)ff->ino,
	        spool_file_state_name(ff->state));
	fprintf(out, "    offset %lld  size %lld  lag %lld bytes\n", (long long)ff->offset,
	        (long long)ff->size, (long long)ff->lag);
	if (ff->left_to[0] != '\0')
		fprintf(out,
		        "    left to source %s, which read the file further: its lines from this "
		        "checkpoint on are read under that source only (docs/tailing.md)\n",
		        ff->left_to);
	fprintf(out,
	        "    lines %lld  matched %lld  unmatched %lld  invalid %lld  long lines %lld  "
	        "NUL bytes %lld  events %lld  checkpoint resets %lld  invalid UTF-8 %lld  "
	        "torn lines %lld\n",
	        (long long)ff->counters.lines, (long long)ff->counters.matched,
	        (long long)ff->counters.unmatched, (long long)ff->counters.invalid,
	        (long long)ff->counters.long_lines, (long long)ff->counters.nul_bytes,
	        (long long)ff->counters.events, (long long)ff->counters.resets,
	        (long long)ff->counters.bad_utf8, (long long)ff->counters.torn_lines);
}

/* "sources:", one line each: how many files its glob matches now, or why none. */
static void print_sources(FILE *out, const struct facts *f)
{
	fprintf(out, "sources:\n");
	for (size_t i = 0; i < f->n_sources; i++) {
		const struct facts_source *fs = &f->sources[i];

		char esc[sizeof(fs->problem) * 4 + 1];

		/* One line per source, whatever bytes its glob holds (log_escape). */
		if (fs->files > 0)
			fprintf(out, "  source %s: %s: %lld files\n", fs->name,
			        log_escape(esc, sizeof(esc), fs->path), (long long)fs->files);
		else
			fprintf(out, "  %s (0 files)\n", log_escape(esc, sizeof(esc), fs->problem));
	}
}

void facts_print_text(FILE *out, const struct facts *f)
{
	char when[32];

	fprintf(out, "spool: %s\n", f->spool);
	fprintf(out, "instance: %s\n", f->instance);
	fprintf(out, "events: pending %lld, delivered %lld, dead letters %lld, unsure %lld\n",
	        (long long)f->counts.pending, (long long)f->counts.delivered,
	        (long long)f->counts.dead, (long long)f->counts.unsure);
	if (f->oldest_pending > 0) {
		utc(f->oldest_pending, when, sizeof(when));
		fprintf(out,
		        "oldest pending: %s (%lld s ago; Stripe takes events up to 35 days old)\n",
		        when, (long long)(f->now - f->oldest_pending));
	}
	if (f->counts.unsure > 0)
		fprintf(out,
		        "unsure: %lld events had an attempt with an unknown outcome more than "
		        "unsure_after ago and are not re-sent by themselves: check Stripe, then "
		        "`logmeter replay --unsure` (docs/stripe-contract.md)\n",
		        (long long)f->counts.unsure);
	fprintf(out, "last error: %s\n", f->last_error[0] ? f->last_error : "none");
	print_ingest(out, f);
	print_guard(out, f);
	print_sender(out, f);
	fprintf(out, "windows: %lld open aggregation windows\n", (long long)f->windows_open);
	for (size_t i = 0; i < f->n_windows; i++) {
		const struct spool_window *w = &f->windows[i];
		char a[32], b[32];

		utc(w->start, a, sizeof(a));
		utc(w->start + w->length, b, sizeof(b));
		fprintf(
		    out, "  rule %s  customer %s  %s .. %s  total %s over %lld lines (%lld late)\n",
		    w->rule, w->customer, a, b, w->total, (long long)w->lines, (long long)w->late);
	}
	if (f->windows_open > (int64_t)f->n_windows)
		fprintf(out, "  ... and %lld more\n",
		        (long long)(f->windows_open - (int64_t)f->n_windows));
	if (f->n_problems == 0) {
		fprintf(out, "health: ok\n");
	} else {
		for (size_t i = 0; i < f->n_problems; i++)
			fprintf(out, "health: degraded: %s\n", f->problems[i]);
	}
	print_sources(out, f);
	fprintf(out, "files:\n");
	for (size_t i = 0; i < f->n_files; i++)
		print_file(out, &f->files[i]);
}
