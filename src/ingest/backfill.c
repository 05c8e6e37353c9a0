/* backfill: archived logs through the agent's tails (ingest/backfill.h). */
#include "ingest/backfill.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
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
#include "util/path.h"

#define BACKFILL_CHUNK (1024 * 1024) /* bytes decompressed, copied or read at once */

struct backfill {
	struct tail_ctx ctx;
	struct backfill_opts opts;
	/* Dry run: the records the run would have made or moved so far (tail_identify's extra). */
	struct spool_file *overlay;
	size_t n_overlay, cap_overlay;
};

/* An archive's content. */
struct content {
	int fd;              /* the file itself, or the decompressed temporary file */
	struct stat ast;     /* stat(2) of the archive */
	char compression[8]; /* "gzip" or "" */
	int64_t size;        /* bytes */
	int64_t *members;    /* the offsets where gzip members start, the first 0 */
	size_t n_members, cap_members;
};

static int stopped(const struct backfill *b)
{
	return b->ctx.stop != NULL && *b->ctx.stop;
}

/* Whether the record's own file is still where it was seen, as a plain file (so a tail may read
 * it, and a writer may still write it): its path leads to its device and inode. */
static int record_file_there(const struct spool_file *r)
{
	struct stat st;

	return stat(r->path, &st) == 0 && (uint64_t)st.st_dev == r->dev &&
	       (uint64_t)st.st_ino == r->ino && tail_compression_at(r->path) == NULL;
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

static int write_all(int fd, const void *buf, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t w = write(fd, (const char *)buf + done, n - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

static int add_member(struct content *c, int64_t at)
{
	if (c->n_members > 0 && c->members[c->n_members - 1] == at)
		return 0; /* an empty member starts nothing */
	if (c->n_members == c->cap_members) {
		size_t cap = c->cap_members ? 2 * c->cap_members : 16;
		int64_t *m = realloc(c->members, cap * sizeof(*m));

		if (m == NULL)
			return -1;
		c->members = m;
		c->cap_members = cap;
	}
	c->members[c->n_members++] = at;
	return 0;
}

/* Inflates the gzip file `in` (RFC 1952: one member after another, each with its own header and
 * CRC) into a new temporary file c->fd, noting where each member starts in the content. NUL
 * bytes after the last member are padding (gzip(1) ignores them too); anything else there is
 * refused, as is a member cut short or damaged. With `limit` >= 0 it stops once that many bytes
 * of content (or more) are out, the rest neither read nor checked. Returns 0 or -1. */
static int gunzip(const char *path, int in, int64_t limit, struct content *c,
                  const volatile sig_atomic_t *stop, char *err, size_t errlen)
{
	unsigned char *ib = malloc(BACKFILL_CHUNK), *ob = malloc(BACKFILL_CHUNK);
	z_stream z;
	int zinit = 0, eof = 0, at_start = 1, rc = -1, zr;
	int64_t out = 0;
	uInt room;

	memset(&z, 0, sizeof(z));
	if (ib == NULL || ob == NULL || inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
		err_set(err, errlen, "%s: out of memory", path);
		goto out;
	}
	zinit = 1;
	c->fd = temp_file(err, errlen);
	if (c->fd < 0)
		goto out;
	for (;;) {
		if (stop != NULL && *stop) {
			err_set(err, errlen, "%s: interrupted while decompressing", path);
			errno = EINTR;
			goto out;
		}
		if (z.avail_in == 0 && !eof) {
			ssize_t n = read(in, ib, BACKFILL_CHUNK);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				err_set(err, errlen, "%s: %s", path, strerror(errno));
				goto out;
			}
			eof = n == 0;
			z.next_in = ib;
			z.avail_in = (uInt)n;
		}
		if (at_start) {
			/* Between members: NUL padding, the next member, or the end. */
			while (z.avail_in > 0 && *z.next_in == 0) {
				z.next_in++;
				z.avail_in--;
			}
			if (z.avail_in == 0) {
				if (eof)
					break;
				continue;
			}
			if (*z.next_in != 0x1f) {
				err_set(err, errlen,
				        "%s: not a sound gzip file: something other than a gzip "
				        "member follows the content's byte %" PRId64,
				        path, out);
				goto out;
			}
			if (add_member(c, out) < 0) {
				err_set(err, errlen, "%s: out of memory", path);
				goto out;
			}
			at_start = 0;
		}
		if (z.avail_in == 0 && eof) {
			err_set(err, errlen,
			        "%s: not a sound gzip file: it ends in the middle of a gzip stream "
			        "(truncated)",
			        path);
			goto out;
		}
		/* With a limit, no more than it is inflated (a head costs its own bytes). */
		room = limit >= 0 && limit - out < BACKFILL_CHUNK ? (uInt)(limit - out)
		                                                  : BACKFILL_CHUNK;
		z.next_out = ob;
		z.avail_out = room;
		zr = inflate(&z, Z_NO_FLUSH);
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
			err_set(err, errlen, "%s: not a sound gzip file: %s", path,
			        z.msg != NULL ? z.msg : "damaged");
			goto out;
		}
		if (write_all(c->fd, ob, room - z.avail_out) < 0) {
			err_set(err, errlen, "%s: writing the decompressed content: %s", path,
			        strerror(errno));
			goto out;
		}
		out += room - z.avail_out;
		if (limit >= 0 && out >= limit)
			break;
		if (zr == Z_STREAM_END) {
			inflateReset(&z);
			at_start = 1;
		}
	}
	c->size = out;
	rc = 0;
out:
	if (zinit)
		inflateEnd(&z);
	free(ib);
	free(ob);
	return rc;
}

static void content_close(struct content *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->members);
	c->fd = -1;
	c->members = NULL;
}

/* Opens the content of `path`, an archive of source `src`, into *c: the file itself if it is
 * plain text, or the decompressed bytes of a gzip file. It is opened through guard_open (`g` may
 * be NULL: guard.h), so that a symlink the source does not follow, or the key or another file of
 * logmeter's own, is refused (EPERM) as the agent refuses it. Returns 0 or -1 (nothing of a bad
 * archive is used). */
static int content_open(struct guard *g, const struct config_source *src, const char *path,
                        struct content *c, const volatile sig_atomic_t *stop, char *err,
                        size_t errlen)
{
	const char *kind;
	int fd, rc;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	fd = guard_open(g, src, path, NULL, err, errlen);
	if (fd < 0)
		return -1;
	if (fstat(fd, &c->ast) < 0 || !S_ISREG(c->ast.st_mode)) {
		err_set(err, errlen, "%s: %s", path,
		        S_ISREG(c->ast.st_mode) ? strerror(errno) : "not a regular file");
		close(fd);
		return -1;
	}
	kind = tail_compression(fd);
	if (kind == NULL) {
		c->fd = fd;
		c->size = (int64_t)c->ast.st_size;
		if (add_member(c, 0) < 0) {
			err_set(err, errlen, "%s: out of memory", path);
			content_close(c);
			return -1;
		}
		return 0;
	}
	if (strcmp(kind, "gzip") != 0) {
		err_set(
		    err, errlen,
		    "%s: %s-compressed: backfill reads plain and gzip files only; decompress it "
		    "first (for example `%s -dc FILE > FILE.log`) and backfill that",
		    path, kind, kind);
		close(fd);
		return -1;
	}
	snprintf(c->compression, sizeof(c->compression), "%s", kind);
	rc = gunzip(path, fd, -1, c, stop, err, errlen);
	close(fd);
	if (rc < 0)
		content_close(c); /* what was decompressed and the members noted so far */
	return rc;
}

int backfill_gunzip(const char *path, int in, int64_t limit, int64_t *size, char *err,
                    size_t errlen)
{
	struct content c;
	int fd;

	memset(&c, 0, sizeof(c));
	c.fd = -1;
	if (lseek(in, 0, SEEK_SET) < 0) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (gunzip(path, in, limit, &c, NULL, err, errlen) < 0) {
		content_close(&c);
		return -1;
	}
	fd = c.fd;
	c.fd = -1;
	*size = c.size;
	content_close(&c); /* the members */
	return fd;
}

/* A descriptor of the part's bytes alone (offsets from 0, as its file had them): the content's
 * own (dup'd) if the part is all of it, else a temporary copy. Returns it or -1. */
static int part_fd(const struct content *c, const struct backfill_part *p, char *err, size_t errlen)
{
	char *buf;
	int fd;

	if (p->start == 0 && p->end == c->size) {
		fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			err_set(err, errlen, "dup: %s", strerror(errno));
		return fd;
	}
	fd = temp_file(err, errlen);
	buf = malloc(BACKFILL_CHUNK);
	if (fd < 0 || buf == NULL)
		goto fail;
	for (int64_t pos = p->start; pos < p->end;) {
		size_t want =
		    p->end - pos < BACKFILL_CHUNK ? (size_t)(p->end - pos) : BACKFILL_CHUNK;
		ssize_t n = pread(c->fd, buf, want, (off_t)pos);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || write_all(fd, buf, (size_t)n) < 0) {
			err_set(err, errlen, "copying a part of the content: %s",
			        n == 0 ? "short read" : strerror(errno));
			goto fail;
		}
		pos += n;
	}
	free(buf);
	return fd;
fail:
	if (buf == NULL)
		err_set(err, errlen, "out of memory");
	free(buf);
	if (fd >= 0)
		close(fd);
	return -1;
}

/* ---- the dry run's counting ---------------------------------------------------------------- */

/* The events every line makes, counted as tail.c would make them (an event per RULE_EVENT and
 * RULE_UNMAPPED result), split at the checkpoint. */
struct counter {
	const struct tail_ctx *ctx;
	size_t source_index;
	struct rule_result *results;
	size_t n_results;
	struct backfill_part *p;
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
		c->p->events++;
		if (l->offset < c->p->checkpoint) {
			c->p->events_before++;
			continue;
		}
		if (r->rule != NULL && r->rule->timestamp == NULL)
			c->p->stamped_now++;
		else if (r->outcome == RULE_EVENT &&
		         event_window_of(r->timestamp, c->now) == EVENT_WINDOW_OLD)
			c->p->too_old++;
	}
	return 0;
}

/* Counts the lines and events of the part's bytes (`fd`, `size` bytes), the last line without
 * its '\n' too with `finish`. Sets *consumed to where a read would leave the checkpoint. Returns
 * 0 or -1. */
static int count_events(const struct backfill *b, size_t source_index, int fd, int64_t size,
                        int finish, struct backfill_part *p, int64_t *consumed, char *err,
                        size_t errlen)
{
	struct counter c = {.ctx = &b->ctx, .source_index = source_index, .p = p};
	struct lines *sp = lines_new(0, (size_t)b->ctx.cfg->agent.max_line_length, err, errlen);
	char *buf = malloc(BACKFILL_CHUNK);
	int64_t pos = 0;
	int rc = -1;

	c.now = (int64_t)time(NULL);
	c.n_results = rule_set_max_per_source(b->ctx.rules);
	c.results = calloc(c.n_results > 0 ? c.n_results : 1, sizeof(*c.results));
	if (sp == NULL || buf == NULL || c.results == NULL) {
		err_set(err, errlen, "out of memory");
		goto out;
	}
	while (pos < size) {
		ssize_t n = pread(fd, buf, BACKFILL_CHUNK, (off_t)pos);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_set(err, errlen, "read: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (stopped(b)) {
			err_set(err, errlen, "interrupted");
			errno = EINTR;
			goto out;
		}
		pos += n;
		if (lines_feed(sp, buf, (size_t)n, count_line, &c, err, errlen) < 0)
			goto out;
	}
	if (finish)
		lines_finish(sp, count_line, &c);
	p->lines = lines_counts(sp)->lines;
	*consumed = lines_counts(sp)->consumed;
	rc = 0;
out:
	lines_free(sp);
	free(buf);
	free(c.results);
	return rc;
}

/* Remembers what the dry run's read of a part made of its record: `f` (a new record, id 0, or
 * the record it continued, with its new checkpoint). Returns 0 or -1. */
static int overlay_put(struct backfill *b, const struct spool_file *f)
{
	size_t i = 0;

	while (f->id != 0 && i < b->n_overlay && b->overlay[i].id != f->id)
		i++;
	if (f->id == 0 || i == b->n_overlay) {
		if (b->n_overlay == b->cap_overlay) {
			size_t cap = b->cap_overlay ? 2 * b->cap_overlay : 8;
			struct spool_file *v = realloc(b->overlay, cap * sizeof(*v));

			if (v == NULL)
				return -1;
			b->overlay = v;
			b->cap_overlay = cap;
		}
		i = b->n_overlay++;
	}
	b->overlay[i] = *f;
	return 0;
}

/* ---- lines of new content billed already ------------------------------------------------- */

/* Content that does not start with the head of the file it was cut from (a piece of a log's
 * middle or end) is new to tail_identify, though its lines were billed as that file. Its first
 * BACKFILL_PROBE events are looked for among the spool's (delivered events are kept
 * delivered_retention, 7 days by default): when at least half of them, and BACKFILL_PROBE_MIN,
 * are there, the content is refused. Only events of rules with a timestamp and no aggregation
 * are looked for: an event stamped with the time it is read, or a window's sum, is like no
 * other. Two lines of different files with the same rule, customer, value and second are rare
 * in logs; half of 200 by chance is not a thing that happens. */
#define BACKFILL_PROBE 200
#define BACKFILL_PROBE_MIN 20

struct probe_key {
	char rule[EVENT_RULE_MAX];
	char key[EVENT_CUSTOMER_MAX];
	char value[EVENT_VALUE_MAX];
	int64_t timestamp;
	int64_t file_id; /* the record of an event like it in the spool; 0: none found */
};

struct probe {
	const struct tail_ctx *ctx;
	size_t source_index;
	struct rule_result *results;
	size_t n_results;
	int64_t now;
	struct probe_key keys[BACKFILL_PROBE];
	size_t n, found;
	int64_t from, to;                        /* the span of their timestamps */
	char path[PATH_MAX], uid[SPOOL_UID_MAX]; /* of one record they were found in */
	int64_t file_id;
};

static int probe_line(const struct lines_line *l, void *ud)
{
	struct probe *pr = ud;
	size_t n;

	if (l->kind != LINES_TEXT || pr->n == BACKFILL_PROBE)
		return 0;
	n = rule_set_apply(pr->ctx->rules, pr->source_index, l->data, l->len, pr->now, pr->results);
	for (size_t i = 0; i < n && i < pr->n_results && pr->n < BACKFILL_PROBE; i++) {
		const struct rule_result *r = &pr->results[i];
		struct probe_key *k = &pr->keys[pr->n];

		if ((r->outcome != RULE_EVENT && r->outcome != RULE_UNMAPPED) || r->rule == NULL ||
		    r->rule->timestamp == NULL || r->rule->aggregate_s > 0)
			continue;
		snprintf(k->rule, sizeof(k->rule), "%s", r->rule->name);
		snprintf(k->key, sizeof(k->key), "%s", r->customer_key);
		snprintf(k->value, sizeof(k->value), "%s", r->value);
		k->timestamp = r->timestamp;
		k->file_id = 0;
		if (pr->n == 0 || r->timestamp < pr->from)
			pr->from = r->timestamp;
		if (pr->n == 0 || r->timestamp > pr->to)
			pr->to = r->timestamp;
		pr->n++;
	}
	return 0;
}

/* An event of the spool: the first key like it not matched yet is found (one key per event, so
 * that a line repeated in the content is not found twice by one event). */
static int probe_seen(const char *rule, const char *key, const char *value, int64_t timestamp,
                      int64_t file_id, void *ud)
{
	struct probe *pr = ud;

	for (size_t i = 0; i < pr->n; i++) {
		struct probe_key *k = &pr->keys[i];

		if (k->file_id == 0 && k->timestamp == timestamp && strcmp(k->value, value) == 0 &&
		    strcmp(k->key, key) == 0 && strcmp(k->rule, rule) == 0) {
			k->file_id = file_id;
			pr->found++;
			return 0;
		}
	}
	return 0;
}

static int probe_record(const struct spool_file *f, void *ud)
{
	struct probe *pr = ud;

	if (f->id == pr->file_id) {
		snprintf(pr->path, sizeof(pr->path), "%s", f->path);
		snprintf(pr->uid, sizeof(pr->uid), "%s", f->uid);
	}
	return 0;
}

/* Looks for the first events of part p (content never read) among the spool's events; says in
 * `err` why it is refused, and sets *refused, if they are there. Returns 0 or -1. */
static int probe_part(struct backfill *b, const struct content *c, size_t source_index,
                      const char *path, const char *where, const struct backfill_part *p,
                      int *refused, char *err, size_t errlen)
{
	struct probe *pr = calloc(1, sizeof(*pr));
	struct lines *sp = NULL;
	char *buf = malloc(BACKFILL_CHUNK);
	int64_t pos = p->start;
	int rc = -1;

	if (pr == NULL || buf == NULL) {
		err_set(err, errlen, "out of memory");
		goto out;
	}
	if (b->ctx.spool == NULL) { /* a dry run before the agent ever ran: nothing billed */
		rc = 0;
		goto out;
	}
	pr->ctx = &b->ctx;
	pr->source_index = source_index;
	pr->now = (int64_t)time(NULL);
	pr->n_results = rule_set_max_per_source(b->ctx.rules);
	pr->results = calloc(pr->n_results > 0 ? pr->n_results : 1, sizeof(*pr->results));
	sp = lines_new(0, (size_t)b->ctx.cfg->agent.max_line_length, err, errlen);
	if (pr->results == NULL || sp == NULL) {
		err_set(err, errlen, "out of memory");
		goto out;
	}
	while (pos < p->end && pr->n < BACKFILL_PROBE) {
		size_t want =
		    p->end - pos < BACKFILL_CHUNK ? (size_t)(p->end - pos) : BACKFILL_CHUNK;
		ssize_t n = pread(c->fd, buf, want, (off_t)pos);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_set(err, errlen, "%s: reading the content: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		pos += n;
		if (lines_feed(sp, buf, (size_t)n, probe_line, pr, err, errlen) < 0)
			goto out;
	}
	rc = 0;
	if (pr->n < BACKFILL_PROBE_MIN)
		goto out;
	if (spool_events_between(b->ctx.spool, pr->from, pr->to, probe_seen, pr, err, errlen) < 0) {
		rc = -1;
		goto out;
	}
	if (pr->found * 2 < pr->n)
		goto out;
	for (size_t i = 0; i < pr->n && pr->file_id == 0; i++)
		pr->file_id = pr->keys[i].file_id;
	snprintf(pr->path, sizeof(pr->path), "?");
	snprintf(pr->uid, sizeof(pr->uid), "?");
	if (spool_files_foreach(b->ctx.spool, probe_record, pr, err, errlen) < 0) {
		rc = -1;
		goto out;
	}
	*refused = 1;
	err_set(err, errlen,
	        "%s%s: starts like no file read before, but %zu of its first %zu events have the "
	        "rule, customer, value and timestamp of events in the spool (of the file read as "
	        "%s, identity %s, among others): its lines look billed already, as a file this "
	        "content is a piece of (cut from its middle or end, or filtered), and content "
	        "cannot tell which: refused rather than billed twice (backfill that file's whole "
	        "archive instead)",
	        path, where, pr->found, pr->n, pr->path, pr->uid);
out:
	lines_free(sp);
	if (pr != NULL)
		free(pr->results);
	free(pr);
	free(buf);
	return rc;
}

/* ---- which file each part is ---------------------------------------------------------------- */

static int add_part(struct backfill_result *r, size_t at, int64_t start, int64_t end)
{
	struct backfill_part *v = realloc(r->parts, (r->n_parts + 1) * sizeof(*v));

	if (v == NULL)
		return -1;
	r->parts = v;
	memmove(&v[at + 1], &v[at], (r->n_parts - at) * sizeof(*v));
	memset(&v[at], 0, sizeof(*v));
	v[at].start = start;
	v[at].end = end;
	r->n_parts++;
	return 0;
}

/* Cuts the content where a gzip member starts a file read before: each part is then one file
 * (tail_heads_at). Returns 0 or -1. */
static int cut_parts(struct backfill *b, const struct content *c, const struct tail_heads *h,
                     struct backfill_result *r, char *err, size_t errlen)
{
	int64_t start = 0;

	for (size_t i = 1; i <= c->n_members; i++) {
		int64_t at = i < c->n_members ? c->members[i] : c->size;
		int hit = 0;

		if (i < c->n_members) {
			hit = tail_heads_at(h, c->fd, at, c->size);
			if (hit < 0) {
				err_set(err, errlen, "reading the content: %s", strerror(errno));
				return -1;
			}
		}
		if ((hit || i == c->n_members) && add_part(r, r->n_parts, start, at) < 0) {
			err_set(err, errlen, "out of memory");
			return -1;
		}
		if (hit)
			start = at;
		if (stopped(b)) {
			err_set(err, errlen, "interrupted");
			errno = EINTR;
			return -1;
		}
	}
	if (r->n_parts == 0 && add_part(r, 0, 0, 0) < 0) { /* an empty archive */
		err_set(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Whether a gzip member starts at `at` (0 < at). */
static int member_at(const struct content *c, int64_t at)
{
	size_t lo = 0, hi = c->n_members;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (c->members[mid] < at)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->n_members && c->members[lo] == at;
}

/* Where part i should be cut, or 0: after the checkpoint of the record it continues, if a
 * member or a file read before starts there (a concatenation: the file ended there); in a new
 * part, at the first line where a file read before starts (tail_heads_find: a plain
 * concatenation), or before it at the first member that starts a line, each member being a file
 * of its own (a month of daily archives of files never read): so that each gets a record of its
 * own, and a member backfilled again alone later is recognised. Not inside what a record covers:
 * its lines were read as that file, whatever the members say. Returns 0 (no cut), the offset, or
 * -1. */
static int64_t cut_at(const struct content *c, const struct tail_heads *h,
                      const struct backfill_part *p)
{
	int64_t head;
	char nl;

	if (p->match == TAIL_MATCH_BEYOND) {
		int64_t at = p->start + p->record.offset;
		int hit;

		if (at >= p->end)
			return 0;
		if (member_at(c, at))
			return at;
		hit = tail_heads_at(h, c->fd, at, p->end);
		return hit < 0 ? -1 : hit ? at : 0;
	}
	if (p->match != TAIL_MATCH_NONE)
		return 0;
	/* A file read before that starts on a line of new content, member or not: its lines are
	 * that file's, not new (they were billed as it). */
	head = tail_heads_find(h, c->fd, p->start, p->end);
	if (head < 0)
		return -1;
	for (size_t i = 0; i < c->n_members; i++) {
		int64_t at = c->members[i];

		if (at <= p->start || at >= p->end || (head > 0 && at >= head))
			continue;
		if (pread(c->fd, &nl, 1, (off_t)(at - 1)) != 1)
			return -1;
		if (nl == '\n')
			return at;
	}
	return head;
}

/* Cuts part i at cut_at, if anywhere: the rest is the next part. Returns 0 or -1. */
static int cut(const struct content *c, const struct tail_heads *h, struct backfill_result *r,
               size_t i, char *err, size_t errlen)
{
	int64_t at = cut_at(c, h, &r->parts[i]);

	if (at < 0) {
		err_set(err, errlen, "reading the content: %s", strerror(errno));
		return -1;
	}
	if (at == 0)
		return 0;
	if (add_part(r, i + 1, at, r->parts[i].end) < 0) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	r->parts[i].end = at;
	if (r->parts[i].match == TAIL_MATCH_BEYOND)
		r->parts[i].match = TAIL_MATCH_WITHIN; /* read to its end as that file */
	return 0;
}

/* Identifies part `i` (tail_identify), and cuts it (cut_at) where another file starts after
 * what it is known to be. Says in `err` why it is refused (and sets *refused), if it is.
 * Returns 0 or -1. */
static int identify_part(struct backfill *b, const struct content *c, const struct tail_heads *h,
                         size_t source_index, const char *path, struct backfill_result *r, size_t i,
                         int *refused, char *err, size_t errlen)
{
	const char *source = b->ctx.cfg->sources[source_index].name;
	struct backfill_part *p = &r->parts[i];
	struct spool_file *rec = &p->record;
	char where[64] = "";
	int m, same, there;

	if (r->n_parts > 1)
		snprintf(where, sizeof(where), " (its bytes %" PRId64 " to %" PRId64 ")", p->start,
		         p->end);
	m = tail_identify(&b->ctx, c->fd, p->start, p->end, source, b->overlay, b->n_overlay, rec,
	                  err, errlen);
	if (m == TAIL_MATCH_NONE)
		m = tail_identify(&b->ctx, c->fd, p->start, p->end, NULL, b->overlay, b->n_overlay,
		                  rec, err, errlen);
	if (m < 0)
		return -1;
	p->match = (enum tail_match)m;
	if (m == TAIL_MATCH_NONE) {
		if (cut(c, h, r, i, err, errlen) < 0)
			return -1;
		return probe_part(b, c, source_index, path, where, &r->parts[i], refused, err,
		                  errlen);
	}
	/* Read past this record's checkpoint by another source (the file was handed over to it:
	 * watch.c file_owner): the lines from there on were billed under that source, and
	 * reading them here would bill them again under new identifiers. */
	if (m == TAIL_MATCH_BEYOND && strcmp(rec->source, source) == 0 &&
	    tail_identify_further(&b->ctx, c->fd, p->start, p->end, source, rec->offset, b->overlay,
	                          b->n_overlay, rec, err, errlen) < 0)
		return -1;
	*refused = 1;
	if (strcmp(rec->source, source) != 0) {
		err_set(
		    err, errlen,
		    "%s%s: already read by [source %s] as %s (identity %s, up to offset %" PRId64
		    "); identifiers belong to a source, so billing it as [source %s] would bill "
		    "those lines again: refused (backfill it with --source %s to bill what that "
		    "source has not read)",
		    path, where, rec->source, rec->path, rec->uid, rec->offset, source,
		    rec->source);
		return 0;
	}
	if (m == TAIL_MATCH_HEAD) {
		err_set(
		    err, errlen,
		    "%s%s: starts like the file read as %s (identity %s) but differs from it "
		    "before offset %" PRId64 ", where that file was read to: content cannot tell "
		    "which of its lines were billed, so nothing of it is billed (if it holds that "
		    "file followed by others, backfill the original archives one by one)",
		    path, where, rec->path, rec->uid, rec->offset);
		return 0;
	}
	same = (uint64_t)c->ast.st_dev == rec->dev && (uint64_t)c->ast.st_ino == rec->ino;
	there = record_file_there(rec);
	if (b->opts.agent_running && rec->state == SPOOL_FILE_READING && there &&
	    (m == TAIL_MATCH_BEYOND || same)) {
		err_set(err, errlen,
		        "%s%s: the running agent is reading this file (as %s, identity %s): it "
		        "bills it; backfill it once it is rotated away",
		        path, where, rec->path, rec->uid);
		return 0;
	}
	/* The file itself is the authority on what follows its checkpoint: a copy that goes on
	 * past it (taken later, or another file that starts the same) would move the checkpoint
	 * of a file that its tail reads on from there. */
	if (m == TAIL_MATCH_BEYOND && there && !same) {
		err_set(
		    err, errlen,
		    "%s%s: goes on past offset %" PRId64 ", where the file read as %s (identity "
		    "%s) was read to, and that file is still there: its lines after that are "
		    "billed from it, by the agent; backfill the file itself, or its archive once "
		    "it is rotated away",
		    path, where, rec->offset, rec->path, rec->uid);
		return 0;
	}
	*refused = 0;
	return cut(c, h, r, i, err, errlen);
}

/* ---- reading ------------------------------------------------------------------------------ */

/* A dry run's part: counts it and remembers what the run would have made of its record. */
static int count_part(struct backfill *b, size_t source_index, const struct content *c,
                      const char *path, struct backfill_part *p, char *err, size_t errlen)
{
	int64_t len = p->end - p->start, consumed = 0;
	int finish = c->compression[0] != '\0';
	struct spool_file f;
	int fd = part_fd(c, p, err, errlen), rc = -1;

	if (fd < 0)
		return -1;
	if (count_events(b, source_index, fd, len, finish, p, &consumed, err, errlen) < 0)
		goto out;
	p->unread = len - consumed;
	if (p->match == TAIL_MATCH_WITHIN) {
		rc = 0;
		goto out;
	}
	if (p->match == TAIL_MATCH_BEYOND) {
		f = p->record;
	} else {
		memset(&f, 0, sizeof(f));
		snprintf(f.source, sizeof(f.source), "%s", b->ctx.cfg->sources[source_index].name);
		snprintf(f.path, sizeof(f.path), "%s", path);
		snprintf(f.uid, sizeof(f.uid), "(new)");
		f.state = SPOOL_FILE_DRAINED;
	}
	if (consumed > 0 && (tail_describe(fd, len, consumed, &f) < 0 || overlay_put(b, &f) < 0)) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/* A run's part: reads it from its record's checkpoint, or as a new record. */
static int read_part(struct backfill *b, size_t source_index, const struct content *c,
                     const char *path, struct backfill_part *p, char *err, size_t errlen)
{
	struct spool_file *rec = p->match == TAIL_MATCH_BEYOND ? &p->record : NULL;
	unsigned flags = 0;
	struct tail *t = NULL;
	struct spool_file after;
	int fd, rc = -1;

	if (c->compression[0] != '\0')
		flags |= TAIL_ARCHIVE_FINISH;
	/* Its reader is gone (a backfill stopped half-way, or its file rotated away and
	 * compressed): nobody reads it but this backfill, and it ends read to its end. */
	if (rec != NULL && rec->state == SPOOL_FILE_READING && !record_file_there(rec)) {
		rec->state = SPOOL_FILE_DRAINED;
		if (spool_file_update(b->ctx.spool, rec, err, errlen) < 0)
			return -1;
	}
	fd = part_fd(c, p, err, errlen);
	if (fd < 0)
		return -1;
	t = tail_open_archive(&b->ctx, fd, path, &c->ast, source_index, rec, flags, err, errlen);
	if (t == NULL)
		return -1;
	snprintf(p->uid, sizeof(p->uid), "%s", tail_file(t)->uid);
	if (tail_read(t, err, errlen) < 0)
		goto out;
	spool_file_copy(&after, tail_file(t));
	p->lines = after.counters.lines - (rec != NULL ? rec->counters.lines : 0);
	p->added = after.counters.events - (rec != NULL ? rec->counters.events : 0);
	p->unread = after.size > after.offset ? after.size - after.offset : 0;
	rc = 0;
out:
	if (rc < 0 && tail_file(t) != NULL) {
		/* What was committed before the error stays; say how far it got. */
		spool_file_copy(&after, tail_file(t));
		p->added = after.counters.events - (rec != NULL ? rec->counters.events : 0);
	}
	tail_free(t);
	return rc;
}

/* `path` made absolute against the working directory, without resolving links (path_normalize),
 * into `out` (`len` bytes). Returns 0 or -1. */
static int absolute(const char *path, char *out, size_t len, char *err, size_t errlen)
{
	char cwd[PATH_MAX];
	char *joined;
	int rc;

	if (path[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL) {
		err_set(err, errlen, "%s: the working directory: %s", path, strerror(errno));
		return -1;
	}
	joined = path_join(path[0] == '/' ? "" : cwd, path);
	rc = joined != NULL ? path_normalize(joined, out, len) : -1;
	free(joined);
	if (rc < 0)
		err_set(err, errlen, "%s: path too long, or out of memory", path);
	return rc;
}

struct backfill *backfill_new(const struct tail_ctx *ctx, const struct backfill_opts *opts,
                              char *err, size_t errlen)
{
	struct backfill *b;

	if (ctx == NULL || ctx->cfg == NULL || ctx->rules == NULL || opts == NULL ||
	    (ctx->spool == NULL && !opts->dry_run)) {
		err_set(err, errlen, "backfill_new: invalid arguments");
		return NULL;
	}
	b = calloc(1, sizeof(*b));
	if (b == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	b->ctx = *ctx;
	b->opts = *opts;
	return b;
}

void backfill_free(struct backfill *b)
{
	if (b == NULL)
		return;
	free(b->overlay);
	free(b);
}

void backfill_result_free(struct backfill_result *r)
{
	if (r == NULL)
		return;
	free(r->parts);
	r->parts = NULL;
	r->n_parts = 0;
}

int backfill_file(struct backfill *b, size_t source_index, const char *path,
                  struct backfill_result *out, char *err, size_t errlen)
{
	struct content c;
	struct tail_heads *h = NULL;
	char abspath[PATH_MAX];
	int refused = 0, rc = -1;

	memset(out, 0, sizeof(*out));
	if (b == NULL || path == NULL || source_index >= b->ctx.cfg->n_sources) {
		err_set(err, errlen, "backfill_file: invalid arguments");
		return -1;
	}
	/* The record keeps the path it was read under: a relative one would name nothing once
	 * the command's directory is forgotten. Links on the way stay, for the guard to see. */
	if (absolute(path, abspath, sizeof(abspath), err, errlen) < 0)
		return -1;
	path = abspath;
	if (content_open(b->ctx.guard, &b->ctx.cfg->sources[source_index], path, &c, b->ctx.stop,
	                 err, errlen) < 0)
		return -1;
	snprintf(out->compression, sizeof(out->compression), "%s", c.compression);
	out->size = c.size;
	h = tail_heads_new(&b->ctx, b->overlay, b->n_overlay, err, errlen);
	if (h == NULL)
		goto out;
	if (cut_parts(b, &c, h, out, err, errlen) < 0)
		goto out;
	/* Every part is identified before anything is read: a refused part refuses the archive,
	 * with nothing of it billed. */
	for (size_t i = 0; i < out->n_parts; i++) {
		struct backfill_part *p;

		if (identify_part(b, &c, h, source_index, path, out, i, &refused, err, errlen) < 0)
			goto out;
		if (refused) {
			out->refused = 1;
			goto out;
		}
		p = &out->parts[i];
		if (p->match != TAIL_MATCH_NONE) {
			p->checkpoint =
			    p->match == TAIL_MATCH_WITHIN ? p->end - p->start : p->record.offset;
			if (p->record.id != 0 && spool_file_events(b->ctx.spool, p->record.id,
			                                           &p->in_spool, err, errlen) != 0)
				goto out;
			if (p->match == TAIL_MATCH_WITHIN)
				snprintf(p->uid, sizeof(p->uid), "%s", p->record.uid);
		}
	}
	for (size_t i = 0; i < out->n_parts; i++) {
		struct backfill_part *p = &out->parts[i];

		if (b->opts.dry_run) {
			if (count_part(b, source_index, &c, abspath, p, err, errlen) < 0)
				goto out;
		} else if (p->match != TAIL_MATCH_WITHIN && p->end > p->start) {
			if (read_part(b, source_index, &c, abspath, p, err, errlen) < 0)
				goto out;
		}
	}
	rc = 0;
out:
	tail_heads_free(h);
	content_close(&c);
	return rc;
}
