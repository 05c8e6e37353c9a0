/* backfill: archived logs through the agent's tails (ingest/backfill.h). */
#include "ingest/backfill.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/event.h"
#include "core/lines.h"
#include "ingest/guard.h"
#include "store/report.h"
#include "util/log.h"

#define BACKFILL_CHUNK (1024 * 1024) /* bytes decompressed or read at once */

/* The compressors tail.c refuses too, by their magic numbers (RFC 1952, the xz file format,
 * RFC 8878, bzip2's stream header): only gzip is read here. */
static const char *magic_of(const unsigned char *b, size_t n)
{
	if (n >= 3 && memcmp(b, "\x1f\x8b\x08", 3) == 0)
		return "gzip";
	if (n >= 6 && memcmp(b, "\xfd\x37\x7a\x58\x5a\x00", 6) == 0)
		return "xz";
	if (n >= 4 && memcmp(b, "\x28\xb5\x2f\xfd", 4) == 0)
		return "zstd";
	if (n >= 4 && memcmp(b, "BZh", 3) == 0 && b[3] >= '1' && b[3] <= '9')
		return "bzip2";
	return NULL;
}

/* An unlinked file for the decompressed content, in $TMPDIR or /tmp. Returns it or -1. */
static int temp_file(char *err, size_t errlen)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd;

	if (dir == NULL || dir[0] == '\0')
		dir = "/tmp";
	fd = open(dir, O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	/* A file system without O_TMPFILE: a named file, unlinked at once. */
	snprintf(path, sizeof(path), "%s/logmeter-backfill.XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		err_set(err, errlen, "cannot make a temporary file in %s: %s", dir,
		        strerror(errno));
		return -1;
	}
	unlink(path);
	return fd;
}

/* Writes the gzip stream of `in` (not closed) into a new temporary file. Returns it or -1. */
static int gunzip(const char *path, int in, char *err, size_t errlen)
{
	char *buf = malloc(BACKFILL_CHUNK);
	int out = -1, dupfd = -1, n, errnum;
	gzFile gz = NULL;

	if (buf == NULL) {
		err_set(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	out = temp_file(err, errlen);
	if (out < 0)
		goto fail;
	dupfd = dup(in);
	if (dupfd < 0 || lseek(dupfd, 0, SEEK_SET) != 0 || (gz = gzdopen(dupfd, "rb")) == NULL) {
		err_set(err, errlen, "%s: %s", path, strerror(errno != 0 ? errno : ENOMEM));
		if (dupfd >= 0)
			close(dupfd);
		goto fail;
	}
	while ((n = gzread(gz, buf, BACKFILL_CHUNK)) > 0) {
		for (ssize_t done = 0, w; done < n; done += w) {
			w = write(out, buf + done, (size_t)(n - done));
			if (w < 0 && errno == EINTR) {
				w = 0;
				continue;
			}
			if (w < 0) {
				err_set(err, errlen, "%s: writing the decompressed content: %s",
				        path, strerror(errno));
				goto fail;
			}
		}
	}
	if (n < 0) {
		const char *msg = gzerror(gz, &errnum);

		err_set(err, errlen, "%s: not a sound gzip file: %s", path,
		        errnum == Z_ERRNO ? strerror(errno) : msg);
		goto fail;
	}
	/* A stream cut short reads as its end without an error from gzread; zlib says so
	 * through gzclose (Z_BUF_ERROR: "the last read ended in the middle of a gzip stream"). */
	n = gzclose_r(gz);
	gz = NULL;
	if (n != Z_OK) {
		err_set(err, errlen, "%s: not a sound gzip file: %s", path,
		        n == Z_BUF_ERROR ? "it ends in the middle of a gzip stream (truncated)"
		                         : "read error");
		goto fail;
	}
	free(buf);
	return out;
fail:
	if (gz != NULL)
		gzclose_r(gz);
	if (out >= 0)
		close(out);
	free(buf);
	return -1;
}

int backfill_content(struct guard *g, const struct config_source *src, const char *path,
                     struct stat *ast, char compression[8], char *err, size_t errlen)
{
	unsigned char head[8];
	const char *kind;
	ssize_t n;
	int fd, out;

	compression[0] = '\0';
	fd = guard_open(g, src, path, NULL, err, errlen);
	if (fd < 0)
		return -1;
	if (fstat(fd, ast) < 0 || !S_ISREG(ast->st_mode)) {
		err_set(err, errlen, "%s: %s", path,
		        S_ISREG(ast->st_mode) ? strerror(errno) : "not a regular file");
		close(fd);
		return -1;
	}
	n = pread(fd, head, sizeof(head), 0);
	kind = n > 0 ? magic_of(head, (size_t)n) : NULL;
	if (kind == NULL)
		return fd;
	if (strcmp(kind, "gzip") != 0) {
		err_set(
		    err, errlen,
		    "%s: %s-compressed: backfill reads plain and gzip files only; decompress it "
		    "first (for example `%s -dc FILE > FILE.log`) and backfill that",
		    path, kind, kind);
		close(fd);
		return -1;
	}
	snprintf(compression, 8, "%s", kind);
	out = gunzip(path, fd, err, errlen);
	close(fd);
	return out;
}

/* --dry-run: the events every line makes, counted as tail.c would make them (an event per
 * RULE_EVENT and RULE_UNMAPPED result), split at the checkpoint. */
struct counter {
	const struct tail_ctx *ctx;
	size_t source_index;
	struct rule_result *results;
	size_t n_results;
	struct backfill_result *out;
	int64_t now;
};

static int count_line(const struct lines_line *l, void *ud)
{
	struct counter *c = ud;
	size_t n;

	if (l->kind != LINES_TEXT)
		return 0;
	n = rule_set_apply(c->ctx->rules, c->source_index, l->data, l->len, c->now, c->results);
	for (size_t i = 0; i < n && i < c->n_results; i++) {
		const struct rule_result *r = &c->results[i];

		if (r->outcome != RULE_EVENT && r->outcome != RULE_UNMAPPED)
			continue;
		c->out->events++;
		if (l->offset < c->out->checkpoint)
			c->out->events_before++;
		else if (r->outcome == RULE_EVENT &&
		         event_window_of(r->timestamp, c->now) == EVENT_WINDOW_OLD)
			c->out->too_old++;
	}
	return 0;
}

static int count_events(const struct tail_ctx *ctx, size_t source_index, int fd,
                        struct backfill_result *out, char *err, size_t errlen)
{
	struct counter c = {.ctx = ctx, .source_index = source_index, .out = out};
	struct lines *sp = lines_new(0, (size_t)ctx->cfg->agent.max_line_length, err, errlen);
	char *buf = malloc(BACKFILL_CHUNK);
	int64_t pos = 0;
	int rc = -1;

	c.now = (int64_t)time(NULL);
	c.n_results = rule_set_max_per_source(ctx->rules);
	c.results = calloc(c.n_results > 0 ? c.n_results : 1, sizeof(*c.results));
	if (sp == NULL || buf == NULL || c.results == NULL) {
		err_set(err, errlen, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = pread(fd, buf, BACKFILL_CHUNK, (off_t)pos);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_set(err, errlen, "read: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		pos += n;
		if (lines_feed(sp, buf, (size_t)n, count_line, &c, err, errlen) < 0)
			goto out;
	}
	out->lines = lines_counts(sp)->lines;
	rc = 0;
out:
	lines_free(sp);
	free(buf);
	free(c.results);
	return rc;
}

int backfill_file(const struct tail_ctx *ctx, size_t source_index, const char *path,
                  int agent_running, int dry_run, struct backfill_result *out, char *err,
                  size_t errlen)
{
	struct spool_file rec, after;
	struct tail *t = NULL;
	struct stat ast, st;
	int fd, found, rc = -1;
	int64_t n;

	memset(out, 0, sizeof(*out));
	fd = backfill_content(ctx->guard, &ctx->cfg->sources[source_index], path, &ast,
	                      out->compression, err, errlen);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	out->size = (int64_t)st.st_size;
	found = tail_identify(ctx, fd, out->size, source_index, &rec, err, errlen);
	if (found < 0)
		goto out;
	if (found) {
		out->continued = 1;
		out->checkpoint = rec.offset;
		snprintf(out->uid, sizeof(out->uid), "%s", rec.uid);
		snprintf(out->record_path, sizeof(out->record_path), "%s", rec.path);
		if (spool_file_events(ctx->spool, rec.id, &out->in_spool, err, errlen) != 0)
			goto out;
		if (agent_running && rec.state == SPOOL_FILE_READING) {
			err_set(err, errlen,
			        "%s: the running agent is reading this file (as %s): it bills it; "
			        "backfill it once it is rotated away",
			        path, rec.path);
			goto out;
		}
	}
	if (dry_run) {
		rc = count_events(ctx, source_index, fd, out, err, errlen);
		goto out;
	}
	t = tail_open_archive(ctx, fd, path, &ast, source_index, found ? &rec : NULL, err, errlen);
	fd = -1; /* the tail's now */
	if (t == NULL)
		goto out;
	if (!found)
		snprintf(out->uid, sizeof(out->uid), "%s", tail_file(t)->uid);
	n = tail_read(t, err, errlen);
	if (n < 0)
		goto out;
	after = *tail_file(t);
	out->lines = after.counters.lines - (found ? rec.counters.lines : 0);
	out->added = after.counters.events - (found ? rec.counters.events : 0);
	/* tail_read leaves a record it committed "reading": give it back its state, or, new,
	 * "drained" (read to its end). */
	if (after.id != 0 && tail_mark(t, found ? rec.state : SPOOL_FILE_DRAINED, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	tail_free(t);
	if (fd >= 0)
		close(fd);
	return rc;
}
