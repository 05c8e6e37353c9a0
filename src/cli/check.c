/* check: the configuration, its rules and customer maps; with --stripe, the rules against the
 * account's meters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fnmatch.h>
#include <glob.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli/cli.h"
#include "ingest/guard.h"
#include "ingest/overlap.h"
#include "ingest/space.h"
#include "ingest/tail.h"
#include "send/account.h"
#include "send/sender.h"
#include "send/stripe.h"
#include "store/spool.h"
#include "util/path.h"

static void print_account_line(enum account_level level, const char *text, void *ud)
{
	static const char *const words[] = {"ok", "warning", "error"};

	(void)ud;
	printf("%s: %s\n", words[level], text);
}

/* `check --stripe`: the rules against the account's meters. Returns 0, or CLI_EXIT_RUNTIME if the
 * meters cannot be read or a rule has no usable meter. */
static int check_account(const struct config *cfg)
{
	struct stripe_meter *meters = NULL;
	char key[STRIPE_KEY_MAX], err[1024] = "";
	size_t n = 0;
	int errors, rc;

	if (stripe_key_load(cfg, key, sizeof(key), err, sizeof(err)) != 0) {
		fprintf(stderr, "check --stripe: %s\n", err);
		return CLI_EXIT_RUNTIME;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = stripe_meters_list(cfg, key, cfg->stripe.request_timeout_ms, &meters, &n, NULL, NULL,
	                        err, sizeof(err));
	explicit_bzero(key, sizeof(key));
	curl_global_cleanup();
	if (rc != 0) {
		fprintf(stderr, "check --stripe: cannot read the account's meters: %s\n", err);
		return CLI_EXIT_RUNTIME;
	}
	printf("stripe: %zu meter%s in the account\n", n, cli_s((long long)n));
	errors = account_check_rules(cfg, meters, n, print_account_line, NULL);
	free(meters);
	if (errors > 0) {
		fprintf(stderr, "check --stripe: %d problem%s: %s events would not be billed\n",
		        errors, cli_s(errors), errors == 1 ? "that rule's" : "those rules'");
		return CLI_EXIT_RUNTIME;
	}
	return 0;
}

/* Notes a file of source `src` (open as `fd`) that the source has no record of, or one that read
 * less of it (left behind: a source renamed and renamed back), and another source's record
 * (configured or not any more) shows as read further, by identity and content: `run` goes on
 * from that record's checkpoint under `src` (tail.c, docs/tailing.md "One file, one source"), which
 * `check` says, so that nobody expects the file read again or its rules to apply to the lines read
 * before. A configured source whose record is not gone keeps the file instead (not said here: the
 * overlap, if any, is), unless it drained and released it, its glob no longer matching it, and the
 * file grew since (watch.c: file_owner). `sp` NULL (no spool) or `rec` NULL: nothing. */
static void read_elsewhere(const struct config *cfg, struct spool *sp, struct spool_file *rec,
                           const struct config_source *src, const char *path, int fd)
{
	char err[512];
	struct stat st;
	int64_t own = -1; /* the checkpoint of src's own record, if it would be resumed */
	long sj;
	int found;

	if (sp == NULL || rec == NULL || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (found = spool_file_find(sp, src->name, (uint64_t)st.st_dev, (uint64_t)st.st_ino, rec,
	                             err, sizeof(err))) < 0)
		return;
	if (found == 1) {
		if (rec->state == SPOOL_FILE_GONE || rec->offset > (int64_t)st.st_size ||
		    tail_record_holds(rec, fd) != 1)
			return;
		own = rec->offset;
	}
	if (spool_file_find_other(sp, src->name, (uint64_t)st.st_dev, (uint64_t)st.st_ino, rec, err,
	                          sizeof(err)) != 1 ||
	    rec->offset <= own || rec->offset > (int64_t)st.st_size ||
	    tail_record_holds(rec, fd) != 1)
		return;
	/* A configured source whose record is not gone keeps the file (watch.c: file_owner),
	 * unless it released it (drained, its glob not matching it, as its scan finds files) and
	 * the file grew since. */
	if ((sj = config_source_find(cfg, rec->source)) >= 0 && rec->state != SPOOL_FILE_GONE) {
		const struct config_source *o = &cfg->sources[sj];
		const char *base = strrchr(path, '/');

		base = base != NULL ? base + 1 : path;
		if (rec->state != SPOOL_FILE_DRAINED || (int64_t)st.st_size <= rec->offset ||
		    (fnmatch(o->path, path, FNM_PATHNAME) == 0 &&
		     !(o->exclude[0] != '\0' && fnmatch(o->exclude, base, 0) == 0)))
			return;
	}
	if (own >= 0)
		fprintf(
		    stderr,
		    "warning: %s: read up to offset %jd by source %s (its record is %s), "
		    "further than the record of source %s (offset %jd), which was left behind: "
		    "`run` reads it under source %s from offset %jd on, not again from offset %jd "
		    "(docs/tailing.md)\n",
		    path, (intmax_t)rec->offset, rec->source, spool_file_state_name(rec->state),
		    src->name, (intmax_t)own, src->name, (intmax_t)rec->offset, (intmax_t)own);
	else
		fprintf(stderr,
		        "warning: %s: read up to offset %jd by source %s (its record is %s), of "
		        "which source %s has no record: `run` reads it under source %s from there "
		        "on, not again from its start (docs/tailing.md)\n",
		        path, (intmax_t)rec->offset, rec->source, spool_file_state_name(rec->state),
		        src->name, src->name);
}

/* Warns of a source whose glob matches no file now (path_glob_nomatch), and of the files the
 * sources' globs match now that `run` would refuse (guard_open: a symlink the source does not
 * follow, a file of logmeter's own), in the words `run` logs. */
static void check_files(const struct config *cfg, struct spool *sp)
{
	char err[1024] = "";
	struct guard *g = guard_new(cfg, err, sizeof(err));
	struct spool_file *rec = sp != NULL ? malloc(sizeof(*rec)) : NULL;

	if (g == NULL) {
		fprintf(stderr, "warning: %s\n", err);
		free(rec);
		return;
	}
	for (size_t si = 0; si < cfg->n_sources; si++) {
		const struct config_source *src = &cfg->sources[si];
		glob_t gl;
		size_t matched = 0;

		memset(&gl, 0, sizeof(gl));
		if (glob(src->path, 0, NULL, &gl) != 0)
			gl.gl_pathc = 0;
		for (size_t k = 0; k < gl.gl_pathc; k++) {
			const char *path = gl.gl_pathv[k], *base = strrchr(path, '/');
			int no, fd;

			base = base != NULL ? base + 1 : path;
			if (src->exclude[0] != '\0' && fnmatch(src->exclude, base, 0) == 0)
				continue;
			matched++;
			fd = guard_open(g, src, path, &no, err, sizeof(err));
			if (fd >= 0) {
				read_elsewhere(cfg, sp, rec, src, path, fd);
				close(fd);
			} else if (no) {
				fprintf(stderr, "warning: %s\n", err);
			}
		}
		globfree(&gl);
		if (matched == 0) {
			path_glob_nomatch(src->name, src->path, err, sizeof(err));
			fprintf(stderr, "warning: %s\n", err);
		}
	}
	guard_free(g);
	free(rec);
}

/* What print_overlap needs: the configuration, the spool when there is one (NULL: none, or
 * not readable), the guard to open a file as `run` would, and a record to fill. */
struct overlap_ctx {
	const struct config *cfg;
	struct spool *spool;
	struct guard *guard;
	struct spool_file *rec;
};

/* The source whose spool record reads the file of `e` (as watch.c's file_owner: a record still
 * reading, or drained while the file still holds what it read), the first in configuration order
 * if several, or -1 if none (no spool: a fresh start). */
static long spool_reader(const struct overlap_ctx *c, const struct overlap_file *e)
{
	char err[512];

	if (c->spool == NULL || c->rec == NULL)
		return -1;
	for (size_t sj = 0; sj < c->cfg->n_sources; sj++) {
		int fd, holds;

		if (spool_file_find(c->spool, c->cfg->sources[sj].name, e->dev, e->ino, c->rec, err,
		                    sizeof(err)) <= 0 ||
		    c->rec->state == SPOOL_FILE_GONE)
			continue;
		if (c->rec->state == SPOOL_FILE_READING)
			return (long)sj;
		fd = guard_open(c->guard, &c->cfg->sources[e->source], e->path, NULL, err,
		                sizeof(err));
		if (fd < 0)
			continue;
		holds = tail_record_holds(c->rec, fd);
		close(fd);
		if (holds == 1)
			return (long)sj;
	}
	return -1;
}

/* overlap_find's callback: the refusal, in the words `run` logs, naming the source `run` reads
 * the file under: the one whose record in the spool reads it, else the first in configuration
 * order. That is the source to keep: its record holds the file's checkpoint. */
static void print_overlap(const struct overlap_file *first, const struct overlap_file *other,
                          void *ud)
{
	const struct overlap_ctx *c = ud;
	const struct config *cfg = c->cfg;
	const struct config_source *a = &cfg->sources[first->source];
	const struct config_source *b = &cfg->sources[other->source];
	long r = spool_reader(c, first);
	const struct config_source *keep = r >= 0 ? &cfg->sources[r] : a;
	const struct config_source *drop = keep == b ? a : b;

	fprintf(stderr,
	        "error: %s is matched by source %s (%s:%u) and source %s (%s:%u)%s%s: `run` "
	        "reads a file under one source only, so that its lines are not billed twice: "
	        "under source %s (%s), and the rules of source %s would make nothing of it. Keep "
	        "source %s and move the rules of source %s into it (a source may carry many "
	        "rules), or narrow the glob of source %s (docs/tailing.md)\n",
	        first->path, a->name, a->loc.file, a->loc.line, b->name, b->loc.file, b->loc.line,
	        strcmp(first->path, other->path) != 0 ? ", as " : "",
	        strcmp(first->path, other->path) != 0 ? other->path : "", keep->name,
	        r >= 0 ? "its record in the spool reads it"
	               : "no source has read it: the first in configuration order",
	        drop->name, keep->name, drop->name, drop->name);
}

/* The files that two sources' globs match now (the same file by device and inode, however it
 * is reached: a symlink a source follows, a hard link), each refused with both sources' file and
 * line. Only what `run` would open counts (guard_open), and a file is what is opened. Returns the
 * number of refusals (0 when the files cannot be listed: `run` decides then). */
static size_t check_overlaps(const struct config *cfg, struct spool *sp)
{
	char err[1024] = "";
	struct guard *g;
	struct overlap_file *v = NULL;
	glob_t *gls;
	size_t n = 0, cap = 0, found = 0;
	struct overlap_ctx oc = {cfg, sp, NULL, NULL};

	if (cfg->n_sources < 2)
		return 0;
	gls = calloc(cfg->n_sources, sizeof(*gls));
	g = guard_new(cfg, err, sizeof(err));
	if (gls == NULL || g == NULL) {
		free(gls);
		guard_free(g);
		return 0;
	}
	oc.guard = g;
	for (size_t si = 0; si < cfg->n_sources; si++) {
		const struct config_source *src = &cfg->sources[si];

		if (glob(src->path, 0, NULL, &gls[si]) != 0)
			continue;
		for (size_t k = 0; k < gls[si].gl_pathc; k++) {
			const char *path = gls[si].gl_pathv[k], *base = strrchr(path, '/');
			struct stat st;
			int fd, ok;

			base = base != NULL ? base + 1 : path;
			if (src->exclude[0] != '\0' && fnmatch(src->exclude, base, 0) == 0)
				continue;
			fd = guard_open(g, src, path, NULL, err, sizeof(err));
			if (fd < 0)
				continue;
			ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
			close(fd);
			if (!ok)
				continue;
			if (n == cap) {
				size_t ncap = cap > 0 ? cap * 2 : 64;
				struct overlap_file *nv = realloc(v, ncap * sizeof(*v));

				if (nv == NULL)
					goto out;
				v = nv;
				cap = ncap;
			}
			v[n].dev = (uint64_t)st.st_dev;
			v[n].ino = (uint64_t)st.st_ino;
			v[n].source = si;
			v[n].path = path;
			n++;
		}
	}
	/* The spool, if there is one, says which source reads a file already: run keeps it. */
	oc.rec = sp != NULL ? malloc(sizeof(*oc.rec)) : NULL;
	found = overlap_find(v, n, print_overlap, &oc);
	free(oc.rec);
out:
	free(v);
	for (size_t si = 0; si < cfg->n_sources; si++)
		globfree(&gls[si]);
	free(gls);
	guard_free(g);
	return found;
}

/* Reading pauses while the spool's file system has less room than min_free_bytes
 * (ingest/space.c: statvfs f_bavail, plus the spool's free pages): a value above what it has
 * free now pauses `run` at once, one above its size for good. Said before the agent starts
 * waiting on it; the state directory's own file system, or its parent's before `run` made it. */
static void check_room(const struct config *cfg)
{
	int64_t min_free = cfg->agent.min_free_bytes, room, total;
	char *dir = strdup(cfg->agent.state_dir), a[32], b[32], c[32];
	struct statvfs vfs;

	while (dir != NULL && statvfs(dir, &vfs) != 0) {
		char *up = path_dir(dir);

		/* Up to "/", or to "" for a relative path: then nothing to say. */
		if (up != NULL && (up[0] == '\0' || strcmp(up, dir) == 0)) {
			free(up);
			up = NULL;
		}
		free(dir);
		dir = up;
	}
	if (dir == NULL || min_free <= 0)
		goto out;
	room = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
	total = (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize;
	if (room >= min_free)
		goto out;
	space_fmt_bytes(min_free, a, sizeof(a));
	space_fmt_bytes(room, b, sizeof(b));
	space_fmt_bytes(total, c, sizeof(c));
	if (total < min_free)
		fprintf(stderr,
		        "warning: [agent] min_free_bytes is %s, more than the file system of %s "
		        "holds in all (%s): `run` would never read (status: ingest paused, disk "
		        "full)\n",
		        a, dir, c);
	else
		fprintf(stderr,
		        "warning: [agent] min_free_bytes is %s, more than the %s free now on the "
		        "file system of %s: `run` would pause reading until that much is free "
		        "(status: ingest paused, disk full)\n",
		        a, b, dir);
out:
	free(dir);
}

/* config_warnings' callback. */
static void print_warning(const char *msg, void *ud)
{
	(void)ud;
	fprintf(stderr, "warning: %s\n", msg);
}

int cli_check(const struct cli_args *args)
{
	const char *path = args->config;
	int stripe = args->stripe;
	struct cli_setup s = {0};
	struct spool *sp = NULL;
	char err[1024] = "";
	int rc = 0;

	if (cli_setup_load(&s, path) != 0)
		return CLI_EXIT_USAGE;
	/* What `run` would refuse to start with, in its words: the configuration is valid, but
	 * the agent would not run (a package installs the configuration before any key). No
	 * "OK" then: the exit status and the last line must say the same. */
	if (cli_preflight(s.cfg, 1, err, sizeof(err)) != 0) {
		fprintf(stderr, "error: %s\n", err);
		cli_setup_free(&s);
		return CLI_EXIT_USAGE;
	}
	/* The spool, if there is one: which source reads a file already. */
	if (access(s.cfg->agent.state_dir, F_OK) == 0)
		sp = spool_open(s.cfg->agent.state_dir, SPOOL_READ_ONLY, err, sizeof(err));
	/* A file two sources read would bill its lines under one of them only: refused, as a
	 * configuration error, before any "OK". */
	if (check_overlaps(s.cfg, sp) > 0) {
		spool_free(sp);
		cli_setup_free(&s);
		return CLI_EXIT_USAGE;
	}
	printf("%s: OK: %zu file%s read, %zu source%s, %zu rule%s\n", path, s.cfg->n_files,
	       cli_s((long long)s.cfg->n_files), s.cfg->n_sources,
	       cli_s((long long)s.cfg->n_sources), s.cfg->n_rules,
	       cli_s((long long)s.cfg->n_rules));
	config_warnings(s.cfg, print_warning, NULL);
	check_room(s.cfg);
	if (stripe_key_shadowed(s.cfg, err, sizeof(err)))
		fprintf(stderr, "warning: %s\n", err);
	sender_rate_print(stdout, s.cfg);
	check_files(s.cfg, sp);
	spool_free(sp);
	if (stripe)
		rc = check_account(s.cfg);
	cli_setup_free(&s);
	return rc;
}
