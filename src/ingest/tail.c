/* tail: one reader per log file.
 *
 * Identity. A file is its spool record (its uid is part of every identifier). The record is
 * found by (source, dev, ino) and accepted only if the file still starts with the fingerprinted
 * head (SHA-256 of the first fp_len bytes; the fingerprint grows with the file up to
 * SPOOL_FP_MAX) and still holds the check bytes (SHA-256 of the up to TAIL_CHECK_MAX bytes just
 * before the checkpoint). Anything else is another file, or this one rewritten: it gets a new
 * record, so new identifiers, and is read from its start.
 *
 * Lines. core/lines.c splits the bytes read into lines and accounts for every byte (NULs
 * removed and counted, a trailing '\r' dropped, over-long lines skipped to their '\n' and
 * counted, a run of NULs at the end of the file left until something follows it: lines.h). This
 * file reads the file in chunks from the checkpoint, feeds them to it, applies the rules to each
 * line and commits the batches. An over-long line still without its '\n' at the end of a read is
 * not read again: the next read resumes after the bytes already skipped (t->skip).
 *
 * Checkpoint. The checkpoint moves only with a successful spool_commit that also holds the
 * events of the lines before it; a partial last line is not consumed, the checkpoint stays at its
 * start until its '\n' arrives. */
#include "ingest/tail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/crash.h"
#include "core/event.h"
#include "core/lines.h"
#include "util/health.h"
#include "util/log.h"
#include "util/path.h"
#include "ingest/backfill.h"
#include "ingest/guard.h"
#include "ingest/space.h"

#define TAIL_CHECK_MAX 64           /* bytes before the checkpoint covered by check_hash */
#define TAIL_CHUNK (128 * 1024)     /* bytes read (pread) and fed to the splitter at once */
#define TAIL_BACK_CHUNK (64 * 1024) /* scan back for read_from = tail */
#define TAIL_RACY_S 1               /* a ctime younger than this may not change with a write */

struct tail {
	struct tail_ctx ctx;
	int fd;
	char *path;
	size_t source_index;
	const char *source; /* the source's name, borrowed from the config */
	dev_t dev;
	ino_t ino;
	/* The committed record: only a successful commit changes it (keep_record). Allocated to fit
	 * its path (spool_file_fit_size), not the 4 KiB a path may take: with thousands of files
	 * watched the records were most of the agent's memory. Copied only with spool_file_copy. */
	struct spool_file *f;
	size_t f_size; /* bytes allocated at f */
	/* An over-long line still without its '\n' at the end of the last read
	 * (LINES_PENDING_LONG): it starts at skip_line (the checkpoint) and has no '\n' before
	 * skip_resume (lines_resume_point: NULs that end the read are read again, since text after
	 * them cuts the line), so the next read goes on from there (lines_resume_long) instead of
	 * reading it again. Valid while f.offset == skip_line. */
	int skip;
	int64_t skip_line, skip_resume;
	/* Opened again after tail_suspend: the next read checks the head too, since the file was
	 * not held open meanwhile. */
	int verify_head;
	/* The head marks last written for the record (spool_head_marks_put): how many, and the
	 * length of the last; -1 before any. */
	int64_t marks_n, marks_last;
	/* Monotonic seconds of the last warning about an unusable, over-long or torn line: each is
	 * counted, but logged at most once a minute per file so a bad pattern cannot flood the log.
	 */
	int64_t warned_invalid, warned_long, warned_utf8, warned_torn;
	/* The record made when the file was opened empty (f.id stays 0 until its first bytes come,
	 * first_record), so that a restart knows it was seen, empty, before it was written, copied
	 * and truncated (copytruncate); 0 if none. */
	int64_t empty_id;
	/* The record read_copy gave the truncated original (offset 0) when it moved f onto the
	 * copy, in the same transaction, for reset() to take on; 0 if none. */
	int64_t fresh_id;
	/* Where is_unread_copy puts a spool error: unread_copy's buffer while it runs (not one per
	 * tail: thousands of tails are held). */
	char *copy_err;
	size_t copy_errlen;
	/* spool_file_forgotten when record_lost last found f still its file's record, -1 before:
	 * until another record is deleted, it still is. */
	int64_t forgets_seen;
	int restarted;   /* f is the record reset() started (a truncation was seen) */
	int warned_hole; /* the file ends in a hole (sparse) past the checkpoint: warned */
	/* The status change time (ctime) the last successful read saw (its fstat), if
	 * `seen_known`: a file exactly as long as its checkpoint is checked against the record
	 * (same_size_stale) only when its ctime differs. The ctime, not the mtime: any process
	 * that may write the file may also set its mtime back (touch -r, cp -p over it), while
	 * every write, truncation or utimensat(2) sets the ctime to the current time (stat(2)).
	 * Not known when that ctime was less than TAIL_RACY_S seconds old then: a write in the same
	 * clock tick may have left it as it was (git's "racy clean" index). */
	struct timespec seen_ctime;
	int seen_known;
	/* An archive's content (tail_open_archive): its commits keep the record's state, and with
	 * `finish` its last line is read without its '\n'. */
	int archive, finish;
};

/* Whether a rate-limited warning is due (once a minute), updating *last. */
static int tail_warn_due(int64_t *last)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (*last != 0 && ts.tv_sec - *last < 60)
		return 0;
	*last = ts.tv_sec;
	return 1;
}

/* What one tail_read needs, allocated per call: idle tails (there may be thousands) hold no
 * buffers, and glibc reuses the freed blocks for the next read. */
struct tail_scratch {
	char *buf;
	size_t cap;
	struct rule_result *results;
	size_t n_results;
	struct spool_batch *batch; /* the events of the lines since the last commit */
};

static int sha256(const void *data, size_t len, unsigned char out[SPOOL_HASH_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != SPOOL_HASH_LEN)
		return -1;
	return 0;
}

/* pread(2) of exactly `len` bytes unless the file ends first. Returns the bytes read or -1. */
static ssize_t pread_full(int fd, void *buf, size_t len, int64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + (int64_t)got));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Copies a NUL-terminated string into a field. Returns -1 if it does not fit. */
static int copy_field(char *dst, size_t size, const char *src)
{
	size_t len = src != NULL ? strlen(src) : 0;

	if (len >= size)
		return -1;
	memcpy(dst, src != NULL ? src : "", len);
	dst[len] = '\0';
	return 0;
}

/* Whether `len` bytes at `p` hash to `want`. */
static int hash_is(const void *p, size_t len, const unsigned char want[SPOOL_HASH_LEN])
{
	unsigned char md[SPOOL_HASH_LEN];

	return sha256(p, len, md) == 0 && memcmp(md, want, SPOOL_HASH_LEN) == 0;
}

/* Hashes the first `len` bytes of the file. Returns 1 if they are there and hash to `want`,
 * 0 if not, -1 on a read error. */
static int head_matches(int fd, int64_t len, const unsigned char want[SPOOL_HASH_LEN])
{
	unsigned char buf[SPOOL_FP_MAX], md[SPOOL_HASH_LEN];
	ssize_t n;

	if (len <= 0)
		return 1;
	if (len > SPOOL_FP_MAX)
		return 0;
	n = pread_full(fd, buf, (size_t)len, 0);
	if (n < 0)
		return -1;
	if (n != len || sha256(buf, (size_t)n, md) < 0)
		return 0;
	return memcmp(md, want, SPOOL_HASH_LEN) == 0;
}

/* Computes the fingerprint of the file's head, min(size, SPOOL_FP_MAX) bytes, into *f.
 * Returns 0 or -1 (errno set on a read error). */
static int fingerprint(int fd, int64_t size, struct spool_file *f)
{
	unsigned char buf[SPOOL_FP_MAX];
	size_t want = size < SPOOL_FP_MAX ? (size_t)(size > 0 ? size : 0) : SPOOL_FP_MAX;
	ssize_t n = pread_full(fd, buf, want, 0);

	if (n < 0)
		return -1;
	if (sha256(buf, (size_t)n, f->fp_hash) < 0) {
		errno = ENOMEM;
		return -1;
	}
	f->fp_len = n;
	return 0;
}

/* Sets check_len and check_hash of *f for the checkpoint f->offset. Returns 0 or -1. */
static int checkpoint_hash(int fd, struct spool_file *f)
{
	unsigned char buf[TAIL_CHECK_MAX];
	int64_t len = f->offset < TAIL_CHECK_MAX ? f->offset : TAIL_CHECK_MAX;
	ssize_t n = pread_full(fd, buf, (size_t)len, f->offset - len);

	if (n < 0)
		return -1;
	/* A file cut shorter meanwhile: hash what is there; the next read sees the truncation. */
	if (sha256(buf, (size_t)n, f->check_hash) < 0) {
		errno = ENOMEM;
		return -1;
	}
	f->check_len = n;
	return 0;
}

/* Whether the bytes before f->offset still hash to f->check_hash. Returns 1, 0, or -1. */
static int checkpoint_matches(int fd, const struct spool_file *f)
{
	unsigned char buf[TAIL_CHECK_MAX], md[SPOOL_HASH_LEN];
	ssize_t n;

	if (f->check_len <= 0)
		return 1;
	if (f->check_len > TAIL_CHECK_MAX || f->check_len > f->offset)
		return 0;
	n = pread_full(fd, buf, (size_t)f->check_len, f->offset - f->check_len);
	if (n < 0)
		return -1;
	if (n != f->check_len || sha256(buf, (size_t)n, md) < 0)
		return 0;
	return memcmp(md, f->check_hash, SPOOL_HASH_LEN) == 0;
}

/* The compression format whose magic number the file starts with, or NULL: such a file is never
 * read as text, whatever the glob and exclude say (a rotated log compressed under a name the
 * exclude pattern does not cover). Magic numbers: RFC 1952 (gzip), the xz file format 1.1.0,
 * RFC 8878 (zstd), bzip2's stream and block headers. Returns NULL also on a read error. */
static const char *compressed(int fd)
{
	static const struct {
		const char *name;
		const char *magic;
		size_t len;
	} fmts[] = {
	    {"gzip", "\x1f\x8b\x08", 3},
	    {"xz", "\xfd\x37\x7a\x58\x5a\x00", 6}, /* \xfd "7zXZ" \0 */
	    {"zstd", "\x28\xb5\x2f\xfd", 4},
	    {"bzip2", "BZh", 3}, /* and a digit and the block magic, checked below */
	};
	unsigned char buf[10];
	ssize_t n = pread_full(fd, buf, sizeof(buf), 0);

	for (size_t i = 0; n > 0 && i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		if ((size_t)n < fmts[i].len || memcmp(buf, fmts[i].magic, fmts[i].len) != 0)
			continue;
		if (strcmp(fmts[i].name, "bzip2") == 0 &&
		    (n < 10 || buf[3] < '1' || buf[3] > '9' ||
		     memcmp(buf + 4, "\x31\x41\x59\x26\x53\x59", 6) != 0))
			continue;
		return fmts[i].name;
	}
	return NULL;
}

const char *tail_compression(int fd)
{
	return compressed(fd);
}

const char *tail_compression_at(const char *path)
{
	const char *kind;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0)
		return NULL;
	kind = compressed(fd);
	close(fd);
	return kind;
}

/* The offset where the file's partial last line starts (its size if it ends with '\n'). */
static int64_t last_line_start(int fd, int64_t size)
{
	char *buf = malloc(TAIL_BACK_CHUNK);
	int64_t pos = size, found = -1;

	if (buf == NULL)
		return -1;
	while (pos > 0 && found < 0) {
		size_t len = pos < TAIL_BACK_CHUNK ? (size_t)pos : TAIL_BACK_CHUNK;
		ssize_t n = pread_full(fd, buf, len, pos - (int64_t)len);
		char *nl;

		if (n < 0 || (size_t)n != len) {
			free(buf);
			return -1;
		}
		nl = memrchr(buf, '\n', len);
		if (nl != NULL)
			found = pos - (int64_t)len + (nl - buf) + 1;
		pos -= (int64_t)len;
	}
	free(buf);
	return found >= 0 ? found : 0;
}

/* The spool's record of t's file, the newest of its source, device and inode (spool_file_find),
 * into *r: a record allocated here, which the caller frees whatever is returned (*r is NULL only
 * when out of memory). Returns 1 (found), 0 (none: *r holds nothing), or -1, out of memory or on a
 * spool error, with the reason in `err`. */
static int find_own_record(struct tail *t, struct spool_file **r, char *err, size_t errlen)
{
	*r = malloc(sizeof(**r));
	if (*r == NULL) {
		err_set(err, errlen, "%s: out of memory", t->path);
		return -1;
	}
	return spool_file_find(t->ctx.spool, t->source, (uint64_t)t->dev, (uint64_t)t->ino, *r, err,
	                       errlen);
}

/* The record read_copy gave the original (t->fresh_id) becomes *nf, the new record filled by
 * new_record: nf takes its id and uid (nothing was read under it) and is written over it, if it
 * is still the newest record of the file and has read nothing. t->fresh_id is cleared. Returns 1
 * (taken), 0 (gone: the caller adds a record), -1 on a spool error. */
static int take_fresh(struct tail *t, struct spool_file *nf, char *err, size_t errlen)
{
	struct spool_file *r;
	int found = find_own_record(t, &r, err, errlen);

	if (r == NULL)
		return -1;
	if (found > 0)
		found = r->id == t->fresh_id && r->offset == 0 && r->fp_len == 0;
	t->fresh_id = 0;
	if (found > 0) {
		nf->id = r->id;
		memcpy(nf->uid, r->uid, sizeof(nf->uid));
		nf->first_seen = r->first_seen;
		if (spool_file_update(t->ctx.spool, nf, err, errlen) < 0)
			found = -1;
	}
	free(r);
	return found;
}

/* Starts a new record for the open file at `offset` (a new uid: new identifiers), keeping
 * `resets`. With `fresh`, the record read_copy gave the original, if any, is the one started
 * (take_fresh). A record that starts at 0 gets no fingerprint here: its first read takes it from
 * the bytes it reads (read_lines), so that the fingerprint and the lines billed under it are the
 * same version of the file. One that starts later (read_from = tail) gets its fingerprint and check
 * bytes now, and its first read checks them against the bytes it reads. Does not touch t->f.
 * Returns 0, or -1 (*spool_failed tells which side failed). */
static int start_record(struct tail *t, int64_t size, int64_t offset, int64_t resets, int fresh,
                        struct spool_file *nf, int *spool_failed, char *err, size_t errlen)
{
	memset(nf, 0, sizeof(*nf));
	*spool_failed = 0;
	if (copy_field(nf->source, sizeof(nf->source), t->source) < 0 ||
	    copy_field(nf->path, sizeof(nf->path), t->path) < 0) {
		errno = ENAMETOOLONG;
		err_set(err, errlen, "%s: path or source name too long for the spool", t->path);
		return -1;
	}
	nf->dev = (uint64_t)t->dev;
	nf->ino = (uint64_t)t->ino;
	nf->offset = offset;
	nf->size = size;
	nf->counters.resets = resets;
	nf->state = t->archive ? SPOOL_FILE_DRAINED : SPOOL_FILE_READING;
	if (offset > 0 && (fingerprint(t->fd, size, nf) < 0 || checkpoint_hash(t->fd, nf) < 0)) {
		err_set(err, errlen, "%s: %s", t->path, strerror(errno));
		return -1;
	}
	if (fresh && t->fresh_id != 0) {
		int found = take_fresh(t, nf, err, errlen);

		if (found != 0) {
			*spool_failed = found < 0;
			return found < 0 ? -1 : 0;
		}
	}
	if (spool_file_add(t->ctx.spool, nf, err, errlen) < 0) {
		*spool_failed = 1;
		return -1;
	}
	return 0;
}

/* start_record of a record of its own, not read_copy's. */
static int new_record(struct tail *t, int64_t size, int64_t offset, int64_t resets,
                      struct spool_file *nf, int *spool_failed, char *err, size_t errlen)
{
	return start_record(t, size, offset, resets, 0, nf, spool_failed, err, errlen);
}

/* A zeroed record for the tail, allocated to fit `path`, in t->f. Returns 0 or -1 (out of
 * memory). */
static int alloc_record(struct tail *t, const char *path)
{
	t->f_size = spool_file_fit_size(path);
	t->f = calloc(1, t->f_size);
	return t->f != NULL ? 0 : -1;
}

/* Grows t->f, if needed, to hold a record whose path is `path`: done before a commit that
 * renames the record, so that keep_record after it need not allocate. Returns 0 or -1. */
static int reserve_record(struct tail *t, const char *path)
{
	size_t need = spool_file_fit_size(path);
	struct spool_file *g;

	if (need <= t->f_size)
		return 0;
	g = realloc(t->f, need);
	if (g == NULL)
		return -1;
	t->f = g;
	t->f_size = need;
	return 0;
}

/* Makes `nf` the tail's committed record (t->f), growing it to fit nf's path. It follows a
 * commit, which cannot be undone: should the memory for a longer path not be had, the fields
 * (checkpoint, identity, counters) are still taken and only the path stays the one before (it
 * names where the file was last seen; the spool holds the new one), which is logged. */
static void keep_record(struct tail *t, const struct spool_file *nf)
{
	if (nf == t->f)
		return;
	if (reserve_record(t, nf->path) == 0) {
		spool_file_copy(t->f, nf);
		return;
	}
	memcpy(t->f, nf, offsetof(struct spool_file, path));
	log_warn("%s: out of memory: the record in memory keeps its former path %s", nf->path,
	         t->f->path);
}

/* new_record, made the tail's record (keep_record). Returns 0 or -1 as new_record. */
static int new_record_kept(struct tail *t, int64_t size, int64_t offset, int64_t resets,
                           int *spool_failed, char *err, size_t errlen)
{
	struct spool_file *nf = malloc(sizeof(*nf));
	int rc;

	*spool_failed = 0;
	if (nf == NULL) {
		err_set(err, errlen, "%s: out of memory", t->path);
		return -1;
	}
	rc = new_record(t, size, offset, resets, nf, spool_failed, err, errlen);
	if (rc == 0)
		keep_record(t, nf);
	free(nf);
	return rc;
}

/* The head marks of the record `f` into *x (allocated, caller frees). Returns 0 or -1. */
static int load_marks(struct tail *t, const struct spool_file *f, struct spool_file_extra **x,
                      char *err, size_t errlen)
{
	*x = malloc(sizeof(**x));
	if (*x == NULL) {
		err_set(err, errlen, "%s: out of memory", t->path);
		return -1;
	}
	if (spool_file_extra_get(t->ctx.spool, f->id, *x, err, errlen) < 0) {
		free(*x);
		*x = NULL;
		return -1;
	}
	return 0;
}

/* Whether t's record, which has read nothing yet (checkpoint 0, no fingerprint), is no longer its
 * file's in the spool: not the newest record of its device and inode, or not there at all. Another
 * tail deletes a record that read nothing of a file beside its own when it finds that file a copy
 * of its own (prefix_copy, forget_empty: spool_file_forget), and records the copy as read; SQLite
 * gives the deleted largest id to the next record added (https://www.sqlite.org/autoinc.html),
 * which may be another file's, so the id alone does not tell: the uid does. Looks only when a
 * record was deleted since it last looked (spool_file_forgotten). Returns 1 if lost, 0 if still
 * the file's (or the record read something: a record that did is never deleted), -1 on a spool
 * error. */
static int record_lost(struct tail *t, char *err, size_t errlen)
{
	struct spool_file *r;
	int found;

	if (t->archive || t->f->id == 0 || t->f->offset != 0 || t->f->fp_len != 0 ||
	    spool_file_forgotten(t->ctx.spool) == t->forgets_seen)
		return 0;
	found = find_own_record(t, &r, err, errlen);
	if (found > 0)
		found = r->id == t->f->id && strcmp(r->uid, t->f->uid) == 0;
	free(r);
	if (found > 0)
		t->forgets_seen = spool_file_forgotten(t->ctx.spool);
	return found < 0 ? -1 : !found;
}

/* spool_file_update of *f, t's record or a copy of it, unless t's record is lost (record_lost):
 * then its id may be another file's record now, which must not be overwritten; the tail's next
 * read finds its file's record again (tail_read). Returns 0 or -1 (`err`). */
static int update_own(struct tail *t, const struct spool_file *f, char *err, size_t errlen)
{
	int lost = record_lost(t, err, errlen);

	if (lost < 0)
		return -1;
	if (lost) {
		log_debug("%s: its record %" PRId64 " (uid %s), which read nothing, is no longer "
		          "its file's in the spool: not written",
		          t->path, t->f->id, t->f->uid);
		return 0;
	}
	return spool_file_update(t->ctx.spool, f, err, errlen);
}

/* How much of the file, whose record `f` is stale, is still what logmeter read: the bytes it
 * starts with that need not be read again (docs/tailing.md, truncations).
 *
 * A file cut shorter than its checkpoint in place (truncate -s) still holds its first `size`
 * bytes as they were: that is all of them if what the record knows of them holds, its
 * fingerprinted head if the file is at least that long, else the head mark (a line end, kept
 * with the hash of the bytes before it) at or before `size` with no line end after it.
 *
 * A file cut and written again before logmeter looked has new bytes after the cut: then the
 * longest head mark that still holds is where the old bytes end, as far as content tells. It
 * cannot tell a cut further on (beyond the head: those lines are read again) from a writer that
 * wrote the same first lines again (they are not read): *ambiguous is set.
 *
 * Returns the length kept (0: none, the file is new), or -1 on a spool error. */
static int64_t kept_prefix(struct tail *t, const struct spool_file *f, int64_t size, int *ambiguous,
                           char *err, size_t errlen)
{
	unsigned char head[SPOOL_FP_MAX];
	struct spool_file_extra *x = NULL;
	size_t len = size < SPOOL_FP_MAX ? (size_t)size : SPOOL_FP_MAX;
	int64_t kept = 0;

	*ambiguous = 0;
	if (size <= 0 || f->fp_len <= 0 || pread_full(t->fd, head, len, 0) != (ssize_t)len)
		return 0;
	if (size < f->offset && size >= f->fp_len && hash_is(head, (size_t)f->fp_len, f->fp_hash))
		return size;
	if (load_marks(t, f, &x, err, errlen) < 0)
		return -1;
	for (size_t i = x->n_marks; i-- > 0;) {
		const struct spool_mark_head *m = &x->marks[i];

		if (m->len > (int64_t)len || !hash_is(head, (size_t)m->len, m->hash))
			continue;
		if (size < f->offset && memchr(head + m->len, '\n', len - (size_t)m->len) == NULL &&
		    (int64_t)len == size) {
			kept = size; /* cut after this line end, before the next */
		} else {
			kept = m->len;
			*ambiguous = 1;
		}
		break;
	}
	free(x);
	return kept;
}

/* The record no longer describes the file: start a new one and retire the old one (to
 * "drained" if its rest was read from a copy, else "gone"). The new one starts at 0, or where a
 * truncation in place left the file (kept_prefix): its first bytes were read under the old
 * record, and what comes after them is new, at offsets the old record's lines had, so it needs
 * the new uid. A reset that neither a copy (`copied`: its rest was read from it; `copies`: copies
 * of what it held were found, all of it read) nor such a truncation explains is counted in the
 * new record's resets (which carries the old count on). */
static int reset(struct tail *t, int64_t size, int copied, int copies, int *spool_failed, char *err,
                 size_t errlen)
{
	struct spool_file nf, old;
	char uerr[256];
	int ambiguous = 0, lost = record_lost(t, err, errlen);
	int64_t kept = 0;

	spool_file_copy(&old, t->f);
	if (lost == 0)
		kept = kept_prefix(t, &old, size, &ambiguous, err, errlen);

	*spool_failed = 0;
	if (lost < 0 || kept < 0) {
		*spool_failed = 1;
		return -1;
	}
	if (kept > 0 && !ambiguous)
		log_info("%s: truncated in place to %" PRId64 " bytes, which were read already: "
		         "going on from there as a new file (its first bytes are not read again)",
		         t->path, kept);
	else if (kept > 0)
		log_warn(
		    "%s: checkpoint at %" PRId64 " no longer matches the file, which still "
		    "starts with the %" PRId64 " bytes (whole lines) it had: going on after "
		    "them as a new file. Truncated and written again before logmeter looked, "
		    "the file cannot tell whether more of it was kept (those lines are read "
		    "again) or its first lines were written again (they are not read); counted "
		    "as a checkpoint reset",
		    t->path, t->f->offset, kept);
	else if (copied || copies)
		log_info(
		    "%s: truncated after a copy (copytruncate): reading it from the start as a "
		    "new file",
		    t->path);
	else {
		char hint[256] = "";

		/* Truncated by copytruncate with the copy out of sight: what it held after the
		 * checkpoint is lost, and logrotate's olddir is the likely reason
		 * (docs/tailing.md). */
		if (t->ctx.cfg->sources[t->source_index].olddir == NULL)
			snprintf(
			    hint, sizeof(hint),
			    "; if logrotate copies it to an olddir (copytruncate), set olddir "
			    "in [source %s]: what it held after the checkpoint is only in that "
			    "copy",
			    t->source);
		log_warn("%s: checkpoint at %" PRId64 " no longer matches the file (replaced or "
		         "truncated): reading it from the start as a new file%s",
		         t->path, t->f->offset, hint);
	}
	if (start_record(t, size, kept,
	                 old.counters.resets +
	                     (copied || copies || (kept > 0 && !ambiguous) ? 0 : 1),
	                 copied, &nf, spool_failed, err, errlen) < 0)
		return -1;
	keep_record(t, &nf);
	t->skip = 0;
	t->verify_head = 0;
	t->restarted = 1;
	t->marks_n = t->marks_last = -1;
	/* Retired, so that status shows the old record's history ending here; its events are
	 * committed and stay. Failing this changes nothing that matters. */
	old.state = copied ? SPOOL_FILE_DRAINED : SPOOL_FILE_GONE;
	if (!lost && spool_file_update(t->ctx.spool, &old, uerr, sizeof(uerr)) < 0)
		log_warn("%s: %s", t->path, uerr);
	crash_point("tail_reset"); /* the new record is committed, nothing read under it yet */
	return 0;
}

static int64_t read_lines(struct tail *t, int64_t end, int *stale, char *err, size_t errlen);

/* A file beside the tail's, open as `fd` (its fstat in *st, its path in `path`), for
 * each_sibling's callback: returns 1 to keep the descriptor and stop, 0 to go on, -1 to stop on
 * an error. */
typedef int (*sibling_fn)(struct tail *t, const char *path, int fd, const struct stat *st,
                          void *ud);

char *tail_olddir(const struct config_source *src, const char *log)
{
	char *dir = NULL, *old = NULL;
	struct stat dst, ost;

	if (src == NULL || log == NULL || src->olddir == NULL || src->olddir[0] == '\0' ||
	    (dir = path_dir(log)) == NULL)
		goto out;
	if (src->olddir[0] == '/')
		old = strdup(src->olddir);
	else
		old = path_join(dir[0] != '\0' ? dir : ".", src->olddir);
	/* `olddir = .`, or one that leads back to the log's directory by a link or "..": that
	 * directory is looked in anyway, and a second look judges each file there twice (a file
	 * left unread was warned about and counted twice). */
	if (old != NULL && stat(dir[0] != '\0' ? dir : ".", &dst) == 0 && stat(old, &ost) == 0 &&
	    dst.st_dev == ost.st_dev && dst.st_ino == ost.st_ino) {
		free(old);
		old = NULL;
	}
out:
	free(dir);
	return old;
}

/* Whether `suffix` (what follows the log's name) is one logrotate gives a rotated file: digits
 * with '.', '-' or '_' before them and between them (".1", "-20250101", ".2025-01-01",
 * "_2025010112"), no letters (".gz", ".tail", ".sorted": compressed, or made by hand). */
int tail_rotation_suffix(const char *suffix)
{
	int digits = 0;

	if (*suffix != '.' && *suffix != '-' && *suffix != '_')
		return 0;
	for (const char *c = suffix; *c != '\0'; c++) {
		if (*c >= '0' && *c <= '9')
			digits = 1;
		else if (*c != '.' && *c != '-' && *c != '_')
			return 0;
	}
	return digits;
}

/* Whether `name` is one logrotate's `extension` gives a rotation of the log named `base`: the
 * extension (the last '.' of base and what follows it) kept at the end and the rotation's suffix
 * put before it (app.log -> app.1.log, app-20250101.log, app-2025-01-01-1735732800.log;
 * logrotate(8), extension). Only a suffix logrotate's numbering (".N") or a date (8 digits at
 * least: dateext, with the default dateformat or one with more in it) gives: a sibling log
 * app-2.log is another log, not a rotation of app.log. */
int tail_extension_rotation(const char *base, const char *name)
{
	const char *ext = strrchr(base, '.');
	size_t stem, elen, nlen = strlen(name), mlen, digits = 0;
	char mid[NAME_MAX + 1];

	if (ext == NULL || ext == base || ext[1] == '\0')
		return 0;
	stem = (size_t)(ext - base);
	elen = strlen(ext);
	if (nlen <= stem + elen || strncmp(name, base, stem) != 0 ||
	    strcmp(name + nlen - elen, ext) != 0)
		return 0;
	mlen = nlen - stem - elen;
	if (mlen > NAME_MAX)
		return 0;
	memcpy(mid, name + stem, mlen);
	mid[mlen] = '\0';
	if (!tail_rotation_suffix(mid))
		return 0;
	for (size_t i = 0; i < mlen; i++)
		digits += mid[i] >= '0' && mid[i] <= '9';
	return digits >= 8 || (mid[0] == '.' && digits == mlen - 1);
}

/* Whether `name` is one logrotate may give a copytruncate copy of the log named `base` (file
 * names, no directory): the log's name and more after it (app.log.1, app.log-20250101), or with
 * `extension` the suffix before the log's extension (tail_extension_rotation: app.1.log,
 * app-20250101.log, not a sibling log app-2.log). */
static int copy_name(const char *base, const char *name)
{
	size_t blen = strlen(base);

	return (strncmp(name, base, blen) == 0 && name[blen] != '\0') ||
	       tail_extension_rotation(base, name);
}

/* each_sibling_named in one directory, `dir`; `same_dev`: only files on the tail's device (its
 * own directory: a file elsewhere there is a mount point). Returns as each_sibling_named. */
static int each_in(struct tail *t, const char *dir, int same_dev, const char *base, sibling_fn fn,
                   void *ud, char **kept)
{
	const struct config_source *src = &t->ctx.cfg->sources[t->source_index];
	DIR *d = NULL;
	struct dirent *de;
	int fd = -1;

	*kept = NULL;
	if ((d = opendir(dir)) == NULL)
		goto out;
	while ((de = readdir(d)) != NULL) {
		char *path = NULL;
		struct stat st;
		int rc = 0;

		if ((de->d_type != DT_REG && de->d_type != DT_UNKNOWN) ||
		    (same_dev && (ino_t)de->d_ino == t->ino) ||
		    (src->exclude != NULL && src->exclude[0] != '\0' &&
		     fnmatch(src->exclude, de->d_name, 0) == 0) ||
		    (base != NULL && !copy_name(base, de->d_name)))
			continue;
		if (asprintf(&path, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, de->d_name) < 0)
			break;
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_dev == t->dev || !same_dev) &&
		    (st.st_dev != t->dev || st.st_ino != t->ino))
			rc = fn(t, path, fd, &st, ud);
		if (rc == 1) {
			*kept = path;
			break;
		}
		if (fd >= 0)
			close(fd);
		fd = rc < 0 ? -2 : -1;
		free(path);
		if (rc < 0)
			break;
	}
out:
	if (d != NULL)
		closedir(d);
	return fd;
}

/* Calls fn for every other regular file in the tail's directory, on its device, and then in its
 * source's olddir (tail_olddir: logrotate copies there with copytruncate, on any device), not
 * excluded by its source, whose name is one logrotate gives a copy of the log named `base`
 * (copy_name; NULL: any name): where copytruncate leaves its copies. Returns the descriptor fn kept
 * (its path in *kept, caller frees), -1 if none, or -2 if fn failed. */
static int each_sibling_named(struct tail *t, const char *base, sibling_fn fn, void *ud,
                              char **kept)
{
	char *dir = path_dir(t->path), *old = NULL;
	int fd = -1;

	*kept = NULL;
	/* "": a name without a '/', in the working directory. Out of memory (NULL): only the
	 * olddir is looked in. */
	if (dir != NULL)
		fd = each_in(t, dir[0] != '\0' ? dir : ".", 1, base, fn, ud, kept);
	if (fd == -1 && (old = tail_olddir(&t->ctx.cfg->sources[t->source_index], t->path)) != NULL)
		fd = each_in(t, old, 0, base, fn, ud, kept);
	free(old);
	free(dir);
	return fd;
}

static int each_sibling(struct tail *t, sibling_fn fn, void *ud, char **kept)
{
	return each_sibling_named(t, NULL, fn, ud, kept);
}

/* sibling_fn of find_copy: at least as long as the checkpoint, the fingerprinted head, and the
 * check bytes just before the checkpoint. */
static int is_full_copy(struct tail *t, const char *path, int fd, const struct stat *st, void *ud)
{
	(void)path;
	*(struct stat *)ud = *st;
	return st->st_size >= t->f->offset && head_matches(fd, t->f->fp_len, t->f->fp_hash) == 1 &&
	       checkpoint_matches(fd, t->f) == 1;
}

/* copytruncate (logrotate(8)) copies the file and then truncates it in place: what the agent had
 * not read yet is only in the copy. Looks in the file's directory for it (is_full_copy).
 * Returns its open descriptor (its fstat in *cst, its path in *cpath, caller frees), or -1. */
static int find_copy(struct tail *t, struct stat *cst, char **cpath)
{
	int fd;

	*cpath = NULL;
	if (t->f->offset <= 0 || t->f->fp_len <= 0)
		return -1;
	fd = each_sibling(t, is_full_copy, cst, cpath);
	return fd >= 0 ? fd : -1;
}

/* Whether the file open as `fd`, `size` bytes long (less than the checkpoint), holds what the
 * record read up to `size`, as far as the record can tell once the file it describes no longer
 * holds it: at least its whole fingerprinted head (1 KiB, or all of a file that was shorter), the
 * same; or, shorter than that head (a copy of a short file that grew since), exactly the bytes up
 * to one of its head marks. Returns 1, 0, or -1 on a read error. */
static int holds_prefix(struct tail *t, int fd, int64_t size)
{
	unsigned char head[SPOOL_FP_MAX];
	struct spool_file_extra *x = NULL;
	char e[256];
	int rc = 0;

	if (size >= t->f->fp_len)
		return head_matches(fd, t->f->fp_len, t->f->fp_hash);
	/* Shorter than the head: a copy of a short file that grew since. Its end must be one of
	 * the head's line ends (a head mark), with the same bytes before it. */
	if (size <= 0 || pread_full(fd, head, (size_t)size, 0) != size ||
	    load_marks(t, t->f, &x, e, sizeof(e)) < 0)
		return 0;
	for (size_t i = 0; i < x->n_marks && rc == 0; i++)
		rc = x->marks[i].len == size && hash_is(head, (size_t)size, x->marks[i].hash);
	free(x);
	return rc;
}

/* Whether the record *r, found by the device and inode of the file open as `fd`, is an earlier
 * file's: released (drained or gone) and no longer describing the file. ext4 gives a deleted
 * file's inode to the next file created, and logrotate deletes a copy and creates the next one
 * under the same name within a moment. */
static int stale_record(const struct spool_file *r, int fd)
{
	return r->state != SPOOL_FILE_READING && tail_record_holds(r, fd) == 0;
}

/* What record_prefix_copies needs from one sibling to the next. */
struct prefix_copies {
	int found; /* copies recorded */
	struct spool_file nf;
	char *err;
	size_t errlen;
};

/* sibling_fn of record_prefix_copies: a file without a record that holds a prefix of what the
 * record read gets a record at its end. Returns 0, or -1 on a spool error. */
static int prefix_copy(struct tail *t, const char *path, int fd, const struct stat *st, void *ud)
{
	struct prefix_copies *pc = ud;
	int64_t size = st->st_size;
	int64_t empty_id = 0;
	int found, is_copy;

	if (size <= 0 || size > t->f->offset)
		return 0;
	found = spool_file_find(t->ctx.spool, t->source, (uint64_t)st->st_dev, (uint64_t)st->st_ino,
	                        &pc->nf, pc->err, pc->errlen);
	/* A record of it that read nothing (seen empty, or made for it and not read under yet):
	 * it goes if the file is a copy, which gets the record below; not before it is judged
	 * one, since a tail may be about to read the file under it (record_lost). */
	if (found > 0 && pc->nf.offset == 0 && pc->nf.fp_len == 0) {
		empty_id = pc->nf.id;
		found = 0;
	} else if (found > 0 && stale_record(&pc->nf, fd))
		found = 0; /* an earlier file's, with its inode: the copy's record comes after it */
	if (found != 0)
		return found < 0 ? -1 : 0;
	is_copy = holds_prefix(t, fd, size);
	if (is_copy <= 0)
		return 0; /* unreadable: left to be found as a new file */
	memset(&pc->nf, 0, sizeof(pc->nf));
	pc->nf.dev = (uint64_t)st->st_dev;
	pc->nf.ino = (uint64_t)st->st_ino;
	pc->nf.size = size;
	pc->nf.offset = last_line_start(fd, size);
	/* Read to its end and tailed by nobody: drained, so that once the copy is deleted the
	 * next file given its inode (the next copy, on ext4) is not taken for it (stale_record). */
	pc->nf.state = SPOOL_FILE_DRAINED;
	if (pc->nf.offset < 0 || copy_field(pc->nf.source, sizeof(pc->nf.source), t->source) < 0 ||
	    copy_field(pc->nf.path, sizeof(pc->nf.path), path) < 0 ||
	    fingerprint(fd, size, &pc->nf) < 0 || checkpoint_hash(fd, &pc->nf) < 0)
		return 0; /* unreadable or unrecordable: left to be found as a new file */
	if (empty_id != 0 && spool_file_forget(t->ctx.spool, empty_id, (uint64_t)st->st_dev,
	                                       (uint64_t)st->st_ino, pc->err, pc->errlen) < 0)
		return -1;
	if (spool_file_add(t->ctx.spool, &pc->nf, pc->err, pc->errlen) < 0)
		return -1;
	pc->found++;
	log_info("%s: a copy of what %s held, made before logmeter read its last lines there: "
	         "all of it was read, recorded as read to its end",
	         path, t->path);
	return 0;
}

/* The copies of the file made before its last lines were read (copytruncate; the lines written
 * between the copy and the truncation were read from the original): files beside it without a
 * record of their own that hold a prefix of what the record read, its fingerprinted head (a copy
 * at least that long) or the bytes up to a head mark at their end. Everything in them was read:
 * each gets a record at its end, so that a glob that matches them never reads them as new files.
 * Returns how many, or -1 on a spool error. */
static int record_prefix_copies(struct tail *t, char *err, size_t errlen)
{
	struct prefix_copies *pc = calloc(1, sizeof(*pc));
	char *kept = NULL;
	int rc, found;

	if (pc == NULL) {
		err_set(err, errlen, "%s: out of memory", t->path);
		return -1;
	}
	pc->err = err;
	pc->errlen = errlen;
	rc = t->f->offset > 0 && t->f->fp_len > 0 ? each_sibling(t, prefix_copy, pc, &kept) : -1;
	found = pc->found;
	free(pc);
	free(kept);
	return rc == -2 ? -1 : found;
}

/* The copy *cst becomes the tail's record's file: a record it got while it was seen empty (the
 * glob matches copies too, and cp creates its output empty first) must not stay the newest record
 * of its inode, or the copy would be read again under it. Nor one of another configured source
 * whose glob matches the copy (app.log.1 of app.log.*): the copy's lines are this source's (one
 * file, one source, docs/tailing.md), and that source's tail, waiting for the copy's first bytes,
 * deletes it at its first read (watch.c) only if the agent is not stopped or killed before: left,
 * it would show at the next start as that source's record left to this one. Each source's newest
 * record of the inode goes if it read nothing (spool_file_forget). Returns 0 or -1. */
static int forget_empty(struct tail *t, const struct stat *cst, char *err, size_t errlen)
{
	const struct config *cfg = t->ctx.cfg;
	struct spool_file *e = malloc(sizeof(*e));
	int found = 0;

	if (e == NULL) {
		err_set(err, errlen, "%s: out of memory", t->path);
		return -1;
	}
	for (size_t si = 0; si < cfg->n_sources && found >= 0; si++) {
		found = spool_file_find(t->ctx.spool, cfg->sources[si].name, (uint64_t)cst->st_dev,
		                        (uint64_t)cst->st_ino, e, err, errlen);
		if (found > 0 && e->id != t->f->id && e->offset == 0 && e->fp_len == 0)
			found = spool_file_forget(t->ctx.spool, e->id, (uint64_t)cst->st_dev,
			                          (uint64_t)cst->st_ino, err, errlen);
	}
	free(e);
	return found < 0 ? -1 : 0;
}

/* Reads the copy `cfd` (found by find_copy) from the record's checkpoint to its end, as the
 * same record: the record now names the copy (its dev, inode and path), so the lines keep the
 * identifiers they would have had in the original, and a glob that later matches the copy finds
 * it read. Returns 0 or -1. */
static int read_copy(struct tail *t, int cfd, const struct stat *cst, char *cpath, char *err,
                     size_t errlen)
{
	int live_fd = t->fd;
	dev_t dev = t->dev;
	ino_t ino = t->ino;
	char *path = t->path;
	struct spool_file nf, fresh;
	int64_t rc;
	int stale = 0;

	spool_file_copy(&nf, t->f);

	log_info("%s: truncated in place: reading the %jd bytes after its checkpoint %jd from its "
	         "copy %s",
	         t->path, (intmax_t)(cst->st_size - t->f->offset), (intmax_t)t->f->offset, cpath);
	if (forget_empty(t, cst, err, errlen) < 0)
		return -1;
	nf.dev = (uint64_t)cst->st_dev;
	nf.ino = (uint64_t)cst->st_ino;
	if (copy_field(nf.path, sizeof(nf.path), cpath) < 0) {
		err_set(err, errlen, "%s: path too long for the spool", cpath);
		return -1;
	}
	/* The original gets its new record (offset 0, as reset() starts it) in the transaction
	 * that moves the record onto the copy: an agent that dies before reset() finds it at its
	 * next start and reads the original from its start. Without it the original would be a
	 * new file there, read from its end with read_from = tail: its lines written since the
	 * truncation would never be read. */
	memset(&fresh, 0, sizeof(fresh));
	if (copy_field(fresh.source, sizeof(fresh.source), t->source) < 0 ||
	    copy_field(fresh.path, sizeof(fresh.path), path) < 0) {
		err_set(err, errlen, "%s: path too long for the spool", path);
		return -1;
	}
	fresh.dev = (uint64_t)dev;
	fresh.ino = (uint64_t)ino;
	fresh.state = SPOOL_FILE_READING;
	if (spool_file_update_add(t->ctx.spool, &nf, &fresh, err, errlen) < 0)
		return -1;
	t->fresh_id = fresh.id;
	keep_record(t, &nf);
	t->fd = cfd;
	t->dev = cst->st_dev;
	t->ino = cst->st_ino;
	t->path = cpath;
	t->skip = 0;
	rc = read_lines(t, cst->st_size, &stale, err, errlen);
	/* Read to its end, the copy is done: nothing writes to a copy, and reset() marks its
	 * record drained once the original has its new record. Marked here already, so that an
	 * agent that dies in between leaves it settled: else its next start finds the record
	 * "reading" a file its source's glob does not match, takes it for a file rotated away, and
	 * status shows it read until rotate_wait has passed. The original has its new record
	 * already (fresh_id): that start reads it from its start, as reset() would have it read. */
	if (rc >= 0 && !stale) {
		t->f->state = SPOOL_FILE_DRAINED;
		if (update_own(t, t->f, err, errlen) < 0)
			rc = -1;
	}
	/* The copy read as the record's, the original not yet: another source's empty record of
	 * the copy is gone already (forget_empty). */
	if (rc >= 0)
		crash_point("tail_copy_read");
	t->fd = live_fd;
	t->dev = dev;
	t->ino = ino;
	t->path = path;
	t->skip = 0;
	if (stale)
		log_warn("%s: changed while its rest was read as the copy of %s", cpath, path);
	return rc < 0 ? -1 : 0;
}

/* sibling_fn of unread_copy: a file named after the tail's as logrotate names a copy (copy_name:
 * app.log.1, app.log-20250101, or with `extension` app.1.log, app-20250101.log) that the source's
 * glob does not match (one it matches is read as a file of its own, or taken for a copy while the
 * original still holds its bytes), not compressed, changed since the record began, without a record
 * of the source and whose content no record of the source describes (so none of its lines was
 * read), and that does not start as the tail's file does (then the file was not truncated). */
static int is_unread_copy(struct tail *t, const char *path, int fd, const struct stat *st, void *ud)
{
	const char *base = path_base(t->path), *cbase = path_base(path);
	unsigned char a[SPOOL_FP_MAX], b[SPOOL_FP_MAX];
	struct spool_file *rec;
	int64_t n;
	int rc = 0;

	if (st->st_size <= 0 || (int64_t)st->st_mtime < t->f->first_seen ||
	    !copy_name(base, cbase) ||
	    fnmatch(t->ctx.cfg->sources[t->source_index].path, path, FNM_PATHNAME) == 0 ||
	    compressed(fd) != NULL || (rec = malloc(sizeof(*rec))) == NULL)
		return 0;
	rc = spool_file_find(t->ctx.spool, t->source, (uint64_t)st->st_dev, (uint64_t)st->st_ino,
	                     rec, t->copy_err, t->copy_errlen);
	if (rc > 0 && stale_record(rec, fd))
		rc = 0; /* an earlier file's, with its inode */
	if (rc == 0)
		rc = tail_identify(&t->ctx, fd, 0, st->st_size, t->source, NULL, 0, rec,
		                   t->copy_err, t->copy_errlen);
	free(rec);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	n = st->st_size < SPOOL_FP_MAX ? st->st_size : SPOOL_FP_MAX;
	if (pread_full(fd, a, (size_t)n, 0) != n)
		return 0;
	if (pread_full(t->fd, b, (size_t)n, 0) == n && memcmp(a, b, (size_t)n) == 0)
		return 0;
	*(struct stat *)ud = *st;
	return 1;
}

/* A record that read nothing (its file was empty when logmeter last looked) whose file now has
 * bytes: the file may have been written, copied and truncated meanwhile (copytruncate while
 * logmeter was stopped or lagging), and then what it held is only in the copy, which nothing
 * identifies by content since the record has none. Such a copy (is_unread_copy) is read from its
 * start under the record, as find_copy's would be from the checkpoint, and the file starts anew.
 * Returns 0 or -1. */
static int unread_copy(struct tail *t, int64_t size, int *spool_failed, char *err, size_t errlen)
{
	struct stat cst;
	char *cpath = NULL, copy_err[256] = "";
	int cfd, rc;

	*spool_failed = 0;
	t->copy_err = copy_err;
	t->copy_errlen = sizeof(copy_err);
	cfd = each_sibling_named(t, path_base(t->path), is_unread_copy, &cst, &cpath);
	t->copy_err = NULL;
	if (cfd == -2 && copy_err[0] != '\0') {
		err_set(err, errlen, "%s", copy_err);
		*spool_failed = 1;
		return -1;
	}
	if (cfd < 0)
		return 0;
	log_warn("%s: was empty when logmeter last looked, and %s (%jd bytes, written since) has "
	         "no record: taken for its copy (copytruncate while logmeter was stopped or "
	         "behind) and read from its start as the file's first lines, then the file as a "
	         "new one. Content cannot tell such a copy from another file of that name",
	         t->path, cpath, (intmax_t)cst.st_size);
	guard_tailing(t->ctx.guard, GUARD_TAIL_EMPTY_COPY, cpath);
	rc = read_copy(t, cfd, &cst, cpath, err, errlen);
	close(cfd);
	free(cpath);
	if (rc < 0) {
		*spool_failed = 1;
		return -1;
	}
	return reset(t, size, 1, 0, spool_failed, err, errlen);
}

/* Whether `name` is one logrotate gives a compressed rotation of the log named `base`: a rotation's
 * name (logrotate(8): a numbered or dated suffix, or with `extension` that suffix before the
 * log's extension: tail_rotation_suffix, tail_extension_rotation) with ".gz" after it (compress):
 * app.log.1.gz, app.log-20250101.gz, app.1.log.gz. */
static int gz_rotation_name(const char *base, const char *name)
{
	size_t blen = strlen(base), nlen = strlen(name);
	char stem[NAME_MAX + 1];

	if (nlen <= 3 || nlen - 3 > NAME_MAX || strcmp(name + nlen - 3, ".gz") != 0)
		return 0;
	memcpy(stem, name, nlen - 3);
	stem[nlen - 3] = '\0';
	return (strncmp(stem, base, blen) == 0 && stem[blen] != '\0' &&
	        tail_rotation_suffix(stem + blen)) ||
	       tail_extension_rotation(base, stem);
}

/* Whether the gzip file `path`, open as `in`, holds the rest of the record *f: its decompressed
 * content starts with the record's fingerprinted head (decompressed first, alone, so that another
 * file costs a KiB of decompressing) and holds its check bytes before its checkpoint (the test of
 * backfill's "beyond a record's checkpoint", docs/backfill.md). A file that is not sound gzip is
 * skipped with a warning. Returns the descriptor of the decompressed content (caller closes), or
 * -1 if it does not hold the rest. */
static int gz_holds_rest(const char *path, int in, const struct spool_file *f)
{
	char e[512];
	int64_t size = 0;
	int fd, ok;

	fd = backfill_gunzip(path, in, f->fp_len, &size, e, sizeof(e));
	if (fd >= 0) {
		ok = size >= f->fp_len && head_matches(fd, f->fp_len, f->fp_hash) == 1;
		close(fd);
		if (!ok)
			return -1; /* another file: not a word */
		fd = backfill_gunzip(path, in, -1, &size, e, sizeof(e));
	}
	if (fd < 0) {
		log_warn("%s: skipped while looking for the rest of %s: %s", path, f->path, e);
		return -1;
	}
	if (size >= f->offset && checkpoint_matches(fd, f) == 1)
		return fd;
	log_info("%s: starts as %s did, but does not hold what logmeter read of it before offset "
	         "%jd: another file, not read",
	         path, f->path, (intmax_t)f->offset);
	close(fd);
	return -1;
}

/* tail_rest_from_gz in one directory, `dir`. Returns as tail_rest_from_gz. */
static int rest_from_gz_in(const struct tail_ctx *ctx, size_t source_index, struct spool_file *f,
                           const char *dir, char *err, size_t errlen)
{
	const char *base = path_base(f->path), *kind;
	DIR *d = opendir(dir);
	struct dirent *de;
	struct tail *t;
	struct stat st;
	char *path = NULL;
	int fd = -1, cfd = -1, rc = 0;

	if (d == NULL)
		return 0;
	while (cfd < 0 && (de = readdir(d)) != NULL) {
		if ((de->d_type != DT_REG && de->d_type != DT_UNKNOWN) ||
		    !gz_rotation_name(base, de->d_name))
			continue;
		free(path);
		if (asprintf(&path, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, de->d_name) < 0) {
			path = NULL;
			break;
		}
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (kind = tail_compression(fd)) != NULL && strcmp(kind, "gzip") == 0)
			cfd = gz_holds_rest(path, fd, f);
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	closedir(d);
	if (cfd < 0)
		goto out;
	log_info("%s: reading what it held after its checkpoint %jd from %s (compressed by "
	         "logrotate before logmeter read it), then marking it read to its end",
	         f->path, (intmax_t)f->offset, path);
	t = tail_open_archive(ctx, cfd, path, &st, source_index, f, TAIL_ARCHIVE_FINISH, err,
	                      errlen);
	if (t == NULL || tail_read(t, err, errlen) < 0) {
		tail_free(t);
		rc = -1;
		goto out;
	}
	spool_file_copy(f, tail_file(t));
	tail_free(t);
	f->state = SPOOL_FILE_DRAINED;
	rc = spool_file_update(ctx->spool, f, err, errlen) < 0 ? -1 : 1;
out:
	free(path);
	return rc;
}

int tail_rest_from_gz(const struct tail_ctx *ctx, size_t source_index, struct spool_file *f,
                      char *err, size_t errlen)
{
	char *dir, *old;
	int rc = 0;

	if (f->offset <= 0 || f->fp_len <= 0 || source_index >= ctx->cfg->n_sources)
		return 0;
	dir = path_dir(f->path);
	old = tail_olddir(&ctx->cfg->sources[source_index], f->path);
	if (dir != NULL)
		rc = rest_from_gz_in(ctx, source_index, f, dir[0] != '\0' ? dir : ".", err, errlen);
	if (rc == 0 && old != NULL)
		rc = rest_from_gz_in(ctx, source_index, f, old, err, errlen);
	free(dir);
	free(old);
	return rc;
}

/* The tail's record, its file truncated with no copy beside it: its rest read from a copy that
 * logrotate compressed (tail_rest_from_gz), the record then kept as read. Returns 1, 0 (none),
 * or -1 (`err`). */
static int copy_from_gz(struct tail *t, char *err, size_t errlen)
{
	struct spool_file *f = malloc(sizeof(*f));
	int rc;

	if (f == NULL) {
		err_set(err, errlen, "%s: out of memory", t->path);
		return -1;
	}
	spool_file_copy(f, t->f);
	rc = tail_rest_from_gz(&t->ctx, t->source_index, f, err, errlen);
	if (rc > 0)
		keep_record(t, f);
	free(f);
	return rc;
}

/* The record no longer describes the open file: reads the rest of it from a copytruncate copy
 * if there is one, then starts the file anew. Returns 0 or -1. */
static int restart_file(struct tail *t, int64_t size, int *spool_failed, char *err, size_t errlen)
{
	struct stat cst;
	char *cpath = NULL;
	int cfd = find_copy(t, &cst, &cpath), copied = 0, prefixes = 0, gz = 0;

	*spool_failed = 0;
	if (cfd < 0 && (gz = copy_from_gz(t, err, errlen)) != 0) {
		if (gz < 0) {
			*spool_failed =
			    1; /* retried as a whole: the compressed copy is found again */
			return -1;
		}
		copied = 1;
	} else if (cfd >= 0) {
		int rc = read_copy(t, cfd, &cst, cpath, err, errlen);

		close(cfd);
		free(cpath);
		if (rc < 0) {
			*spool_failed = 1; /* retried as a whole: the copy is found again */
			return -1;
		}
		copied = 1;
	} else if ((prefixes = record_prefix_copies(t, err, errlen)) < 0) {
		*spool_failed = 1;
		return -1;
	}
	return reset(t, size, copied, prefixes > 0, spool_failed, err, errlen);
}

/* Resumes the record *old, found for the open file and still valid, as t's: reading again under
 * its path, from its checkpoint, its head checked again by the first read, in the bytes it reads.
 * Returns 0, or -1 (*spool_failed tells which side failed). */
static int take_record(struct tail *t, const struct spool_file *old, int *spool_failed, char *err,
                       size_t errlen)
{
	struct spool_file nf;

	spool_file_copy(&nf, old);
	*spool_failed = 0;
	if (strcmp(old->path, t->path) != 0 || old->state != SPOOL_FILE_READING ||
	    old->dev != (uint64_t)t->dev || old->ino != (uint64_t)t->ino) {
		nf.dev = (uint64_t)t->dev;
		nf.ino = (uint64_t)t->ino;
		if (copy_field(nf.path, sizeof(nf.path), t->path) < 0) {
			err_set(err, errlen, "%s: path too long for the spool", t->path);
			errno = ENAMETOOLONG;
			return -1;
		}
		nf.state = SPOOL_FILE_READING;
		if (spool_file_update(t->ctx.spool, &nf, err, errlen) < 0) {
			*spool_failed = 1;
			return -1;
		}
	}
	keep_record(t, &nf);
	t->verify_head = 1;
	return 0;
}

/* No record has the device and inode of the file open as t: the record last seen under its path
 * with its inode on another device, if the file still holds what that record read (its
 * fingerprint, and the check bytes before its checkpoint), is the same file on a file system
 * mounted again under another device number; without this every log would be read again from its
 * start after such a reboot. Fills *old (its device still the recorded one: take_record writes the
 * new one). Returns 1, 0 (none, or not the same content), or -1 on a spool error. */
static int remounted_record(struct tail *t, const struct stat *st, struct spool_file *old,
                            char *err, size_t errlen)
{
	int found =
	    spool_file_find_remounted(t->ctx.spool, t->source, t->path, (uint64_t)st->st_dev,
	                              (uint64_t)st->st_ino, old, err, errlen);

	if (found <= 0)
		return found;
	if (old->offset > st->st_size || head_matches(t->fd, old->fp_len, old->fp_hash) != 1 ||
	    checkpoint_matches(t->fd, old) != 1)
		return 0;
	log_warn("%s: its record (uid %s) was made on device %ju:%ju, the file is now on device "
	         "%ju:%ju with the same inode %ju, first bytes and bytes before the checkpoint: "
	         "the same file on a file system mounted again under another device number "
	         "(a reboot, LVM, a loop device, a bind mount), going on from its checkpoint %jd",
	         t->path, old->uid, (uintmax_t)major((dev_t)old->dev),
	         (uintmax_t)minor((dev_t)old->dev), (uintmax_t)major(st->st_dev),
	         (uintmax_t)minor(st->st_dev), (uintmax_t)st->st_ino, (intmax_t)old->offset);
	return 1;
}

/* Deletes the record t's file was seen empty with (t->empty_id) if it is still that file's and
 * read nothing: the original of a copytruncate that read its rest from this file deleted it
 * already (forget_empty) if this file is that copy, and the spool may have given its id to another
 * file's record since (spool_file_forget). Returns 0 or -1. */
static int forget_own_empty(struct tail *t, char *err, size_t errlen)
{
	return spool_file_forget(t->ctx.spool, t->empty_id, (uint64_t)t->dev, (uint64_t)t->ino, err,
	                         errlen) < 0
	           ? -1
	           : 0;
}

/* A tail opened empty, now with bytes, or whose record is lost (record_lost): its record, if the
 * spool has a valid one for its file by now (a copytruncate copy whose original read its rest from
 * it while this tail waited for its first bytes: that copy is the original's record), else a new
 * one that starts at 0 with `resets` (the count the lost record carried). Returns 0 or -1. */
static int first_record(struct tail *t, int64_t size, int64_t resets, int *spool_failed, char *err,
                        size_t errlen)
{
	struct spool_file *old;
	int found, rc;

	*spool_failed = 0;
	found = find_own_record(t, &old, err, errlen);
	if (old == NULL)
		return -1;
	if (found < 0) {
		*spool_failed = 1;
		rc = -1;
	} else if (found && old->state != SPOOL_FILE_GONE && old->offset <= size &&
	           head_matches(t->fd, old->fp_len, old->fp_hash) == 1 &&
	           checkpoint_matches(t->fd, old) == 1) {
		rc = take_record(t, old, spool_failed, err, errlen);
	} else {
		rc = new_record(t, size, 0, resets, old, spool_failed, err, errlen);
		if (rc == 0)
			keep_record(t, old);
	}
	free(old);
	/* Another record took over (a copy's original): the one it was seen empty with goes. */
	if (rc == 0 && t->empty_id != 0 && t->empty_id != t->f->id &&
	    forget_own_empty(t, err, errlen) < 0) {
		*spool_failed = 1;
		return -1;
	}
	if (rc == 0)
		t->empty_id = 0;
	return rc;
}

/* The record of a file opened empty (tail.empty_id): nothing read under it, but a file that
 * was seen empty is known, so that what is written to it, copied and truncated before logmeter
 * reads it (while it is stopped, or lagging) is looked for in its copy (unread_copy). t->f stays
 * without an id: its first bytes may still be a compressor's output or another file's copy.
 * Returns 0 or -1. */
static int empty_record(struct tail *t, int *spool_failed, char *err, size_t errlen)
{
	struct spool_file *nf = malloc(sizeof(*nf));

	*spool_failed = 0;
	if (nf == NULL) {
		err_set(err, errlen, "%s: out of memory", t->path);
		return -1;
	}
	spool_file_copy(nf, t->f);
	if (spool_file_add(t->ctx.spool, nf, err, errlen) < 0) {
		*spool_failed = 1;
		free(nf);
		return -1;
	}
	t->empty_id = nf->id;
	free(nf);
	return 0;
}

/* Writes *f as the record of a file still empty (t->empty_id), for a rename or a change of
 * state: best effort, the record holds nothing read. */
static void empty_update(struct tail *t, const struct spool_file *f)
{
	struct spool_file *nf;
	char e[256];
	int found;

	if (t->empty_id == 0)
		return;
	/* Still its record: the newest of its inode, empty (forget_own_empty says why it may be
	 * gone, its id another file's). Else the tail has none any more. */
	found = find_own_record(t, &nf, e, sizeof(e));
	if (nf == NULL)
		return;
	if (found == 0 ||
	    (found > 0 && (nf->id != t->empty_id || nf->offset != 0 || nf->fp_len != 0))) {
		t->empty_id = 0;
		free(nf);
		return;
	}
	*nf = *f;
	nf->id = t->empty_id;
	if (found < 0 || spool_file_update(t->ctx.spool, nf, e, sizeof(e)) < 0)
		log_debug("%s: %s", t->path, e);
	free(nf);
}

/* The offset just after the last line end in the file (`size` bytes) whose TAIL_CHECK_MAX-or-less
 * bytes before it hash to the record's check bytes, or 0 if none: where the lines the record read
 * end in an edited version of its file (their length changed before it). Returns -1 on a read
 * error. */
static int64_t find_check(struct tail *t, const struct spool_file *old, int64_t size)
{
	size_t cl = (size_t)old->check_len, cap = TAIL_BACK_CHUNK + TAIL_CHECK_MAX;
	unsigned char *buf = malloc(cap);
	int64_t found = 0, pos = 0;

	if (buf == NULL)
		return -1;
	/* Each chunk is read with the check_len bytes before it, so a line end near its start is
	 * looked at with all the bytes before it. */
	while (pos < size) {
		int64_t from = pos >= (int64_t)cl ? pos - (int64_t)cl : 0;
		size_t len = size - from < (int64_t)cap ? (size_t)(size - from) : cap;
		ssize_t n = pread_full(t->fd, buf, len, from);

		if (n < 0) {
			free(buf);
			return -1;
		}
		for (size_t i = (size_t)(pos - from); i < (size_t)n; i++) {
			int64_t end = from + (int64_t)i + 1;

			if (buf[i] == '\n' && end >= (int64_t)cl && i + 1 >= cl &&
			    hash_is(buf + i + 1 - cl, cl, old->check_hash))
				found = end;
		}
		if ((size_t)n < len || n == 0)
			break;
		pos = from + n;
	}
	free(buf);
	return found;
}

/* Whether the open file (`size` bytes) starts with two whole lines at least of what record *old
 * read, by its head marks (docs/tailing.md): 2 if so, 0 if not, -1 on a spool error. */
static int lines_kept(struct tail *t, const struct spool_file *old, int64_t size)
{
	unsigned char head[SPOOL_FP_MAX];
	struct spool_file_extra *x = NULL;
	char e[256];
	size_t len = size < SPOOL_FP_MAX ? (size_t)size : SPOOL_FP_MAX;
	int rc = 0;

	if (pread_full(t->fd, head, len, 0) != (ssize_t)len)
		return 0;
	if (load_marks(t, old, &x, e, sizeof(e)) < 0)
		return -1;
	for (size_t i = 1; i < x->n_marks && rc == 0; i++)
		if (x->marks[i].len <= (int64_t)len &&
		    hash_is(head, (size_t)x->marks[i].len, x->marks[i].hash))
			rc = 2;
	free(x);
	return rc;
}

/* The head marks of record `old_id` that the open file still holds become those of t's new
 * record, which starts past its head: an edit of the file replaced again later is still told by
 * them (lines_kept). Best effort. */
static void inherit_marks(struct tail *t, int64_t old_id, int64_t same_head)
{
	struct spool_file_extra *x = malloc(sizeof(*x));
	unsigned char head[SPOOL_FP_MAX];
	ssize_t n = pread_full(t->fd, head, sizeof(head), 0);
	size_t kept = 0;
	char e[256];

	if (x == NULL || n < 0 || spool_file_extra_get(t->ctx.spool, old_id, x, e, sizeof(e)) < 0) {
		free(x);
		return;
	}
	/* The old head whole (its marks may not have been written: they are, once a read
	 * finds the head complete): its line ends are the marks. */
	if (same_head > 0 && same_head <= n) {
		const unsigned char *nl, *p = head;

		x->n_marks = 0;
		while (x->n_marks < SPOOL_MARKS_MAX &&
		       (nl = memchr(p, '\n', (size_t)(head + same_head - p))) != NULL) {
			x->marks[x->n_marks].len = nl + 1 - head;
			if (sha256(head, (size_t)(nl + 1 - head), x->marks[x->n_marks].hash) < 0)
				break;
			x->n_marks++;
			p = nl + 1;
		}
	}
	for (size_t i = 0; i < x->n_marks; i++)
		if (x->marks[i].len <= n &&
		    hash_is(head, (size_t)x->marks[i].len, x->marks[i].hash))
			x->marks[kept++] = x->marks[i];
	if (kept > 0 &&
	    spool_head_marks_put(t->ctx.spool, t->f->id, x->marks, kept, e, sizeof(e)) < 0)
		log_debug("%s: %s", t->path, e);
	free(x);
}

/* A file the source that opens it has no record of that read as far (none, one marked gone, or
 * one left behind while another source read on), whose identity (device and inode) and content
 * (fingerprint and the check bytes before the checkpoint) another source's record shows as read
 * up to a checkpoint beyond `after` (bytes): a source that was removed or renamed, whose record
 * was marked gone while the file lived on, or that drained and released it (renamed to a name
 * only this source's glob matches: watch.c file_owner lets this source open it once it grows).
 * Its read lines were billed under that source: read again from 0 they would be billed a second
 * time (an identifier holds the source, so Stripe would not dedupe them), and its own record left
 * behind would bill again what the other read since. This source goes on from that checkpoint
 * under a new record of its own instead, with a warning: every line once (docs/tailing.md, "One
 * file, one source"). Of several such records, the one that read the most. `after` > 0 (a
 * record of its own that describes the file, to resume unless another read further): only the
 * records of the configured sources and of ctx.old_sources (the sources the spool has records of
 * that the configuration no longer has) are looked at, by the spool's index, since this is asked
 * at every open; else every source's (spool_file_find_other, a scan of the files table, asked
 * only before a file is read from its start). Returns the checkpoint (0: no such record), -1 on a
 * spool error or -2 on a read error (errno set). */
static int64_t taken_over_from(struct tail *t, int64_t size, int64_t after, char *err,
                               size_t errlen)
{
	struct spool_file *old = malloc(sizeof(*old)), *o = NULL;
	int64_t from = 0;
	int found = 0, same = 0, valid = 0;

	if (old == NULL || (after > 0 && (o = malloc(sizeof(*o))) == NULL)) {
		free(old);
		err_set(err, errlen, "%s: out of memory", t->path);
		return -1;
	}
	if (after > 0) {
		size_t n = t->ctx.cfg->n_sources;

		/* The configured sources, then those the spool has records of that the
		 * configuration no longer has (a source renamed and renamed back). */
		for (size_t sj = 0; sj < n + t->ctx.n_old_sources && found >= 0; sj++) {
			const char *name =
			    sj < n ? t->ctx.cfg->sources[sj].name : t->ctx.old_sources[sj - n];
			int r;

			if (sj == t->source_index)
				continue;
			r = spool_file_find(t->ctx.spool, name, (uint64_t)t->dev, (uint64_t)t->ino,
			                    o, err, errlen);
			if (r < 0)
				found = -1;
			else if (r > 0 && (found == 0 || o->offset > old->offset)) {
				*old = *o;
				found = 1;
			}
		}
		free(o);
	} else {
		found = spool_file_find_other(t->ctx.spool, t->source, (uint64_t)t->dev,
		                              (uint64_t)t->ino, old, err, errlen);
	}
	if (found == 1 && old->offset > after && old->offset <= size && old->fp_len > 0 &&
	    (same = head_matches(t->fd, old->fp_len, old->fp_hash)) == 1)
		valid = checkpoint_matches(t->fd, old);
	if (found < 0) {
		free(old);
		return -1;
	}
	if (same < 0 || valid < 0) {
		err_set(err, errlen, "%s: %s", t->path, strerror(errno));
		free(old);
		return -2;
	}
	if (valid == 1) {
		from = old->offset;
		log_warn(
		    "%s: read up to offset %jd by source %s (its record is %s): source %s goes "
		    "on from there, so that the lines read are not billed a second time under "
		    "another source (docs/tailing.md, \"One file, one source\")",
		    t->path, (intmax_t)from, old->source, spool_file_state_name(old->state),
		    t->source);
	}
	free(old);
	return from;
}

/* A file without a record of its own under a name whose last record (the file the name led to
 * before, replaced since: `sed -i`, an editor, a redaction script write a new file and rename it
 * over the old one) read lines that the new file still starts with: its content is the old file's,
 * edited or not, and is not billed again. Returns where the new file goes on (0: it is a new file,
 * read as any), setting *resets (the old record's count, one more where it cannot be told where
 * the read lines end), -1 on a spool error or -2 on a read error (errno set). */
static int64_t replaced_from(struct tail *t, int64_t size, int64_t *resets, int64_t *old_id,
                             int64_t *same_head, char *err, size_t errlen)
{
	struct spool_file *old = malloc(sizeof(*old));
	int64_t from = 0;
	int found, head = 0;

	if (old == NULL) {
		err_set(err, errlen, "%s: out of memory", t->path);
		return -1;
	}
	found = spool_file_find_path(t->ctx.spool, t->source, t->path, old, err, errlen);
	if (found <= 0 || old->offset <= 0 || old->fp_len <= 0 ||
	    (old->dev == (uint64_t)t->dev && old->ino == (uint64_t)t->ino) ||
	    (head = head_matches(t->fd, old->fp_len, old->fp_hash)) < 0 ||
	    (head == 0 && (head = lines_kept(t, old, size)) <= 0)) {
		free(old);
		return found < 0 || head == -1 ? -1 : 0;
	}
	*resets = old->counters.resets;
	*old_id = old->id;
	*same_head = head == 1 ? old->fp_len : 0;
	if (head == 2) {
		/* Its first lines only: an edit within them, if the lines read end somewhere. */
		from = find_check(t, old, size);
		if (from > 0)
			log_warn(
			    "%s: replaced under its name by another file (inode %ju) that starts "
			    "with the first lines of the file it replaced and holds the last bytes "
			    "logmeter read of it at offset %jd (read up to %jd there): edited (sed "
			    "-i, a redaction), going on from there as a new file; the lines before "
			    "are not read again",
			    t->path, (uintmax_t)t->ino, (intmax_t)from, (intmax_t)old->offset);
	} else if (old->offset <= size && checkpoint_matches(t->fd, old) == 1) {
		from = old->offset;
		log_warn(
		    "%s: replaced under its name by another file (inode %ju) that starts with "
		    "the %jd bytes logmeter read of the file it replaced (an edit such as sed -i, "
		    "or a copy put in its place): going on after them as a new file; they are "
		    "not read again",
		    t->path, (uintmax_t)t->ino, (intmax_t)from);
	} else if ((from = find_check(t, old, size)) > 0) {
		log_warn(
		    "%s: replaced under its name by another file (inode %ju) that starts as the "
		    "file it replaced and holds the last bytes logmeter read of it at offset %jd "
		    "(read up to %jd there): edited (sed -i, a redaction), going on from there as "
		    "a new file; the lines before are not read again",
		    t->path, (uintmax_t)t->ino, (intmax_t)from, (intmax_t)old->offset);
	} else if (from == 0) {
		from = last_line_start(t->fd, size);
		(*resets)++;
		log_warn(
		    "%s: replaced under its name by another file (inode %ju) that starts as the "
		    "file it replaced but no longer holds the last bytes logmeter read of it (at "
		    "%jd): an edit that cannot be lined up with what was read. Not read before "
		    "its last line (offset %jd) rather than billed twice: lines written after the "
		    "edit before logmeter opened it are not read; counted as a checkpoint reset",
		    t->path, (uintmax_t)t->ino, (intmax_t)old->offset, (intmax_t)from);
	}
	free(old);
	if (from < 0) {
		err_set(err, errlen, "%s: %s", t->path, strerror(errno));
		return -2;
	}
	return from;
}

struct tail *tail_open_flags(const struct tail_ctx *ctx, const char *path, size_t source_index,
                             unsigned flags, const struct stat *expect, int64_t judged,
                             int *file_errno, char *err, size_t errlen)
{
	struct tail *t = NULL;
	struct spool_file old;
	struct stat st;
	int found, spool_failed = 0, e, same = 0, valid = 0;

	if (file_errno != NULL)
		*file_errno = 0;
	if (ctx == NULL || ctx->cfg == NULL || ctx->spool == NULL || path == NULL ||
	    source_index >= ctx->cfg->n_sources) {
		err_set(err, errlen, "tail_open: invalid arguments");
		errno = EINVAL;
		goto fail_file;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		err_set(err, errlen, "%s: out of memory", path);
		errno = ENOMEM;
		goto fail_file;
	}
	t->fd = -1;
	t->marks_n = t->marks_last = -1;
	t->forgets_seen = -1;
	t->ctx = *ctx;
	t->source_index = source_index;
	t->source = ctx->cfg->sources[source_index].name;
	t->path = strdup(path);
	if (t->path == NULL || alloc_record(t, path) < 0) {
		err_set(err, errlen, "%s: out of memory", path);
		errno = ENOMEM;
		goto fail_file;
	}
	/* Symlinks only where the source follows them (/var/log/containers), never to
	 * logmeter's own files (guard.h). */
	t->fd = guard_open(ctx->guard, &ctx->cfg->sources[source_index], path, NULL, err, errlen);
	if (t->fd < 0)
		goto fail_file;
	if (fstat(t->fd, &st) < 0) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		goto fail_file;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, errlen, "%s: not a regular file", path);
		errno = EINVAL;
		goto fail_file;
	}
	if (expect != NULL && (st.st_dev != expect->st_dev || st.st_ino != expect->st_ino)) {
		err_set(err, errlen,
		        "%s: leads to another file (inode %ju) than a moment ago (%ju)", path,
		        (uintmax_t)st.st_ino, (uintmax_t)expect->st_ino);
		errno = ESTALE;
		goto fail_file;
	}
	if (compressed(t->fd) != NULL) {
		err_set(err, errlen,
		        "%s: %s-compressed data, never read as text (add it to the "
		        "source's exclude)",
		        path, compressed(t->fd));
		errno = EINVAL;
		goto fail_file;
	}
	t->dev = st.st_dev;
	t->ino = st.st_ino;

	found = spool_file_find(ctx->spool, t->source, (uint64_t)st.st_dev, (uint64_t)st.st_ino,
	                        &old, err, errlen);
	if (found == 0)
		found = remounted_record(t, &st, &old, err, errlen);
	if (found < 0)
		goto fail_spool;
	if (found) {
		same = head_matches(t->fd, old.fp_len, old.fp_hash);
		/* A file seen deleted is never resumed: a file with its inode now is another. */
		if (same > 0 && old.offset <= st.st_size && old.state != SPOOL_FILE_GONE)
			valid = checkpoint_matches(t->fd, &old);
		if (same < 0 || valid < 0) {
			err_set(err, errlen, "%s: %s", path, strerror(errno));
			goto fail_file;
		}
	}
	if (found && (valid || old.state == SPOOL_FILE_GONE) && st.st_size > 0) {
		/* A record of its own that another source's read past (left behind) or that is
		 * gone is not resumed: that source's checkpoint is gone on from. */
		int64_t from = taken_over_from(t, st.st_size, valid ? old.offset : 0, err, errlen);

		if (from != 0) {
			spool_failed = from == -1;
			if (from < 0 ||
			    new_record_kept(t, st.st_size, from, 0, &spool_failed, err, errlen) < 0)
				goto fail_either;
			guard_tailing(ctx->guard, GUARD_TAIL_TAKEN_OVER, path);
			return t;
		}
	}
	if (found) {
		if (valid) {
			if (take_record(t, &old, &spool_failed, err, errlen) < 0)
				goto fail_either;
		} else if (old.state == SPOOL_FILE_GONE) {
			/* The inode of a file deleted earlier, reused by a new one: not a reset,
			 * just a new file, read from its start. */
			log_debug("%s: a new file (inode %ju reused)", path, (uintmax_t)st.st_ino);
			if (new_record_kept(t, st.st_size, 0, 0, &spool_failed, err, errlen) < 0)
				goto fail_either;
		} else {
			keep_record(t, &old);
			if (restart_file(t, st.st_size, &spool_failed, err, errlen) < 0)
				goto fail_either;
		}
	} else {
		int64_t offset = 0, resets = 0, old_id = 0, same_head = 0;

		if (st.st_size > 0 && (offset = replaced_from(t, st.st_size, &resets, &old_id,
		                                              &same_head, err, errlen)) < 0) {
			spool_failed = offset == -1;
			goto fail_either;
		}
		if (offset > 0) {
			if (new_record_kept(t, st.st_size, offset, resets, &spool_failed, err,
			                    errlen) < 0)
				goto fail_either;
			inherit_marks(t, old_id, same_head);
			return t;
		}
		if (st.st_size > 0 &&
		    (offset = taken_over_from(t, st.st_size, 0, err, errlen)) != 0) {
			spool_failed = offset == -1;
			if (offset < 0 || new_record_kept(t, st.st_size, offset, 0, &spool_failed,
			                                  err, errlen) < 0)
				goto fail_either;
			guard_tailing(ctx->guard, GUARD_TAIL_TAKEN_OVER, path);
			return t;
		}
		if (ctx->cfg->sources[source_index].read_from == CONFIG_READ_FROM_TAIL &&
		    !(flags & TAIL_OPEN_CREATED)) {
			offset = last_line_start(t->fd, st.st_size);
			if (offset < 0) {
				err_set(err, errlen, "%s: %s", path, strerror(errno));
				goto fail_file;
			}
		}
		if (st.st_size == 0 || (offset == 0 && judged >= 0 && st.st_size > judged)) {
			/* Empty: its record is made when its first bytes come (tail_read), so that
			 * a file a compressor is about to fill never gets one. Or filled since the
			 * caller judged it: its first read is judged again. */
			if (copy_field(t->f->source, sizeof(t->f->source), t->source) < 0 ||
			    copy_field(t->f->path, sizeof(t->f->path), path) < 0) {
				err_set(err, errlen, "%s: path too long for the spool", path);
				errno = ENAMETOOLONG;
				goto fail_file;
			}
			t->f->dev = (uint64_t)st.st_dev;
			t->f->ino = (uint64_t)st.st_ino;
			t->f->state = SPOOL_FILE_READING;
			if (empty_record(t, &spool_failed, err, errlen) < 0)
				goto fail_either;
		} else if (new_record_kept(t, st.st_size, offset, 0, &spool_failed, err, errlen) <
		           0) {
			goto fail_either;
		}
	}
	return t;

fail_either:
	if (spool_failed)
		goto fail_spool;
fail_file:
	e = errno != 0 ? errno : EIO;
	if (file_errno != NULL)
		*file_errno = e;
	tail_free(t);
	return NULL;
fail_spool:
	if (file_errno != NULL)
		*file_errno = 0;
	tail_free(t);
	return NULL;
}

struct tail *tail_open(const struct tail_ctx *ctx, const char *path, size_t source_index, char *err,
                       size_t errlen)
{
	return tail_open_flags(ctx, path, source_index, 0, NULL, -1, NULL, err, errlen);
}

struct identify {
	int fd;
	int64_t start, end;
	const char *source; /* NULL: every source */
	/* tail_identify_further: records of other sources than this one only, read past `past` */
	const char *other_than;
	int64_t past;
	const struct spool_file *extra;
	size_t n_extra;
	unsigned char head[SPOOL_FP_MAX];
	size_t head_len;                     /* bytes of the content's head read */
	unsigned char (*md)[SPOOL_HASH_LEN]; /* SHA-256 of the first len bytes, by len */
	unsigned char *md_done;              /* md[len] computed */
	struct spool_file *best;
	enum tail_match match;
	int failed;
	struct spool *sp; /* for the head marks of records; NULL: none */
};

/* Content shorter than record f's fingerprinted head: WITHIN if it ends at one of the record's
 * head marks (a line end of the file's first bytes, kept with the hash of the bytes before it:
 * store/extra.c) and holds those bytes, else NONE (nothing to tell it by). */
static int short_within(struct identify *id, const struct spool_file *f)
{
	struct spool_file_extra x;
	char err[256];

	if (f->id == 0 || id->sp == NULL ||
	    spool_file_extra_get(id->sp, f->id, &x, err, sizeof(err)) < 0)
		return TAIL_MATCH_NONE;
	for (size_t i = 0; i < x.n_marks; i++)
		if (x.marks[i].len == (int64_t)id->head_len &&
		    id->end - id->start == x.marks[i].len &&
		    hash_is(id->head, id->head_len, x.marks[i].hash))
			return TAIL_MATCH_WITHIN;
	return TAIL_MATCH_NONE;
}

/* How the content relates to record f (enum tail_match), or -1 on a read error. */
static int match_one(struct identify *id, const struct spool_file *f)
{
	unsigned char buf[TAIL_CHECK_MAX];
	int64_t len = id->end - id->start;
	ssize_t n;

	if (f->fp_len > (int64_t)id->head_len && f->fp_len <= SPOOL_FP_MAX)
		return short_within(id, f);
	if (f->fp_len <= 0 || f->fp_len > SPOOL_FP_MAX)
		return TAIL_MATCH_NONE;
	if (!id->md_done[f->fp_len]) {
		if (sha256(id->head, (size_t)f->fp_len, id->md[f->fp_len]) < 0)
			return TAIL_MATCH_NONE;
		id->md_done[f->fp_len] = 1;
	}
	if (memcmp(id->md[f->fp_len], f->fp_hash, SPOOL_HASH_LEN) != 0)
		return TAIL_MATCH_NONE;
	if (len < f->offset)
		return TAIL_MATCH_WITHIN; /* nothing after the head can be held against it */
	if (f->check_len > 0) {
		if (f->check_len > TAIL_CHECK_MAX || f->check_len > f->offset)
			return TAIL_MATCH_HEAD;
		n = pread_full(id->fd, buf, (size_t)f->check_len,
		               id->start + f->offset - f->check_len);
		if (n < 0)
			return -1;
		if (n != f->check_len || !hash_is(buf, (size_t)n, f->check_hash))
			return TAIL_MATCH_HEAD;
	}
	return len == f->offset ? TAIL_MATCH_WITHIN : TAIL_MATCH_BEYOND;
}

static void consider(struct identify *id, const struct spool_file *f)
{
	int m;

	if (id->failed || (id->source != NULL && strcmp(f->source, id->source) != 0) ||
	    (id->other_than != NULL &&
	     (strcmp(f->source, id->other_than) == 0 || f->offset <= id->past)))
		return;
	m = match_one(id, f);
	if (m < 0) {
		id->failed = errno != 0 ? errno : EIO;
		return;
	}
	if (id->other_than != NULL) {
		/* Any record that describes the content up to its checkpoint: the furthest. */
		if (m >= TAIL_MATCH_WITHIN &&
		    (id->match == TAIL_MATCH_NONE || f->offset > id->best->offset)) {
			*id->best = *f;
			id->match = (enum tail_match)m;
		}
		return;
	}
	/* The record that covers most of the content; of equals, the one read furthest. */
	if (m == TAIL_MATCH_NONE || (int)m < (int)id->match ||
	    ((int)m == (int)id->match && f->offset <= id->best->offset))
		return;
	*id->best = *f;
	id->match = (enum tail_match)m;
}

static int identify_one(const struct spool_file *f, void *ud)
{
	struct identify *id = ud;

	for (size_t i = 0; i < id->n_extra; i++)
		if (id->extra[i].id != 0 && id->extra[i].id == f->id)
			return 0; /* a dry run's later view of it is in extra */
	consider(id, f);
	return id->failed ? -1 : 0;
}

/* tail_identify, or with `other_than` tail_identify_further. */
static int identify(const struct tail_ctx *ctx, int fd, int64_t start, int64_t end,
                    const char *source, const char *other_than, int64_t past,
                    const struct spool_file *extra, size_t n_extra, struct spool_file *out,
                    char *err, size_t errlen)
{
	struct identify *id = NULL;
	ssize_t n;
	int rc = -1;

	if (ctx == NULL || out == NULL || start < 0 || end < start ||
	    (extra == NULL && n_extra > 0)) {
		err_set(err, errlen, "tail_identify: invalid arguments");
		return -1;
	}
	id = calloc(1, sizeof(*id));
	if (id != NULL) {
		id->md = calloc(SPOOL_FP_MAX + 1, sizeof(*id->md));
		id->md_done = calloc(SPOOL_FP_MAX + 1, 1);
	}
	if (id == NULL || id->md == NULL || id->md_done == NULL) {
		err_set(err, errlen, "out of memory");
		goto out;
	}
	id->fd = fd;
	id->start = start;
	id->end = end;
	id->source = source;
	id->other_than = other_than;
	id->past = past;
	id->extra = extra;
	id->n_extra = n_extra;
	id->best = out;
	id->sp = ctx->spool;
	n = pread_full(fd, id->head,
	               end - start < SPOOL_FP_MAX ? (size_t)(end - start) : SPOOL_FP_MAX, start);
	if (n < 0) {
		err_set(err, errlen, "reading the content: %s", strerror(errno));
		goto out;
	}
	id->head_len = (size_t)n;
	if (ctx->spool != NULL &&
	    spool_files_foreach(ctx->spool, identify_one, id, err, errlen) < 0 && !id->failed)
		goto out;
	for (size_t i = 0; i < n_extra && !id->failed; i++)
		consider(id, &extra[i]);
	if (id->failed) {
		err_set(err, errlen, "reading the content: %s", strerror(id->failed));
		goto out;
	}
	rc = (int)id->match;
out:
	if (id != NULL) {
		free(id->md);
		free(id->md_done);
	}
	free(id);
	return rc;
}

int tail_identify(const struct tail_ctx *ctx, int fd, int64_t start, int64_t end,
                  const char *source, const struct spool_file *extra, size_t n_extra,
                  struct spool_file *out, char *err, size_t errlen)
{
	return identify(ctx, fd, start, end, source, NULL, 0, extra, n_extra, out, err, errlen);
}

int tail_identify_further(const struct tail_ctx *ctx, int fd, int64_t start, int64_t end,
                          const char *source, int64_t offset, const struct spool_file *extra,
                          size_t n_extra, struct spool_file *out, char *err, size_t errlen)
{
	int m;

	if (source == NULL) {
		err_set(err, errlen, "tail_identify_further: invalid arguments");
		return -1;
	}
	m = identify(ctx, fd, start, end, NULL, source, offset, extra, n_extra, out, err, errlen);
	return m < 0 ? -1 : m != TAIL_MATCH_NONE;
}

struct tail_head {
	int64_t len;
	unsigned char hash[SPOOL_HASH_LEN];
};

struct tail_heads {
	struct tail_head *v; /* sorted by len, then hash */
	size_t n, cap;
	int64_t *lens; /* the distinct lens, increasing */
	size_t n_lens;
};

static int head_cmp(const void *a, const void *b)
{
	const struct tail_head *x = a, *y = b;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->hash, y->hash, SPOOL_HASH_LEN);
}

static int heads_add(const struct spool_file *f, void *ud)
{
	struct tail_heads *h = ud;

	if (f->fp_len <= 0 || f->fp_len > SPOOL_FP_MAX)
		return 0;
	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 256;
		struct tail_head *v = realloc(h->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		h->v = v;
		h->cap = cap;
	}
	h->v[h->n].len = f->fp_len;
	memcpy(h->v[h->n].hash, f->fp_hash, SPOOL_HASH_LEN);
	h->n++;
	return 0;
}

struct tail_heads *tail_heads_new(const struct tail_ctx *ctx, const struct spool_file *extra,
                                  size_t n_extra, char *err, size_t errlen)
{
	struct tail_heads *h = calloc(1, sizeof(*h));

	if (h == NULL || ctx == NULL || (extra == NULL && n_extra > 0)) {
		err_set(err, errlen,
		        h == NULL ? "out of memory" : "tail_heads_new: invalid arguments");
		goto fail;
	}
	if (ctx->spool != NULL && spool_files_foreach(ctx->spool, heads_add, h, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < n_extra; i++)
		if (heads_add(&extra[i], h) < 0)
			goto oom;
	if (h->n > 0)
		qsort(h->v, h->n, sizeof(*h->v), head_cmp);
	h->lens = malloc((h->n > 0 ? h->n : 1) * sizeof(*h->lens));
	if (h->lens == NULL)
		goto oom;
	for (size_t i = 0; i < h->n; i++)
		if (h->n_lens == 0 || h->lens[h->n_lens - 1] != h->v[i].len)
			h->lens[h->n_lens++] = h->v[i].len;
	return h;
oom:
	err_set(err, errlen, "out of memory");
fail:
	tail_heads_free(h);
	return NULL;
}

/* tail_heads_at for the heads of at least min_len bytes. */
static int heads_at(const struct tail_heads *h, int fd, int64_t off, int64_t end, int64_t min_len)
{
	unsigned char buf[SPOOL_FP_MAX];
	struct tail_head key;
	ssize_t n;

	if (h == NULL || h->n == 0 || off >= end)
		return 0;
	n = pread_full(fd, buf, end - off < SPOOL_FP_MAX ? (size_t)(end - off) : SPOOL_FP_MAX, off);
	if (n < 0)
		return -1;
	for (size_t i = 0; i < h->n_lens && h->lens[i] <= n; i++) {
		if (h->lens[i] < min_len)
			continue;
		key.len = h->lens[i];
		if (sha256(buf, (size_t)key.len, key.hash) < 0) {
			errno = ENOMEM;
			return -1;
		}
		if (bsearch(&key, h->v, h->n, sizeof(*h->v), head_cmp) != NULL)
			return 1;
	}
	return 0;
}

int tail_heads_at(const struct tail_heads *h, int fd, int64_t off, int64_t end)
{
	return heads_at(h, fd, off, end, 0);
}

int64_t tail_heads_find(const struct tail_heads *h, int fd, int64_t start, int64_t end)
{
	unsigned char buf[65536];
	int64_t pos = start;

	if (h == NULL || h->n == 0)
		return 0;
	while (pos < end) {
		size_t want = end - pos < (int64_t)sizeof(buf) ? (size_t)(end - pos) : sizeof(buf);
		ssize_t n = pread_full(fd, buf, want, pos);

		if (n <= 0)
			return n < 0 ? -1 : 0;
		for (ssize_t i = 0; i < n; i++) {
			int hit;

			if (buf[i] != '\n' || pos + i + 1 >= end)
				continue;
			hit = heads_at(h, fd, pos + i + 1, end, TAIL_HEADS_FIND_MIN);
			if (hit != 0)
				return hit < 0 ? -1 : pos + i + 1;
		}
		pos += n;
	}
	return 0;
}

void tail_heads_free(struct tail_heads *h)
{
	if (h == NULL)
		return;
	free(h->v);
	free(h->lens);
	free(h);
}

int tail_describe(int fd, int64_t size, int64_t checkpoint, struct spool_file *f)
{
	if (fd < 0 || f == NULL || checkpoint < 0 || checkpoint > size) {
		errno = EINVAL;
		return -1;
	}
	f->offset = checkpoint;
	f->size = size;
	return fingerprint(fd, size, f) < 0 || checkpoint_hash(fd, f) < 0 ? -1 : 0;
}

struct tail *tail_open_archive(const struct tail_ctx *ctx, int fd, const char *path,
                               const struct stat *ast, size_t source_index,
                               const struct spool_file *record, unsigned flags, char *err,
                               size_t errlen)
{
	struct tail *t = NULL;
	struct stat st;
	int spool_failed = 0;

	if (ctx == NULL || ctx->cfg == NULL || ctx->spool == NULL || path == NULL || ast == NULL ||
	    source_index >= ctx->cfg->n_sources || fd < 0) {
		err_set(err, errlen, "tail_open_archive: invalid arguments");
		goto fail;
	}
	t = calloc(1, sizeof(*t));
	if (t != NULL) {
		t->fd = -1;
		t->marks_n = t->marks_last = -1;
	}
	if (t == NULL || (t->path = strdup(path)) == NULL || alloc_record(t, path) < 0) {
		err_set(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	t->fd = fd;
	fd = -1;
	t->ctx = *ctx;
	t->source_index = source_index;
	t->source = ctx->cfg->sources[source_index].name;
	t->dev = ast->st_dev;
	t->ino = ast->st_ino;
	t->archive = 1;
	t->finish = (flags & TAIL_ARCHIVE_FINISH) != 0;
	if (fstat(t->fd, &st) < 0) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (record != NULL) {
		keep_record(t, record);
		t->verify_head = 1; /* tail_read checks the head again, and the checkpoint */
	} else if (st.st_size > 0) {
		if (new_record_kept(t, st.st_size, 0, 0, &spool_failed, err, errlen) < 0)
			goto fail;
	}
	return t;
fail:
	if (fd >= 0)
		close(fd);
	tail_free(t);
	return NULL;
}

void tail_free(struct tail *t)
{
	if (t == NULL)
		return;
	if (t->fd >= 0)
		close(t->fd);
	free(t->path);
	free(t->f);
	free(t);
}

/* Adds the event of a rule result to the batch. Returns 0, 1 if a field does not fit an event
 * (the result is then treated as invalid), or -1 (out of memory). */
static int add_event(struct tail *t, struct tail_scratch *s, const struct rule_result *r,
                     int64_t line_offset, char *err, size_t errlen)
{
	struct spool_new_event ev = {
	    .line_offset = line_offset,
	    .rule = r->rule,
	    .customer_key = r->customer_key,
	    .customer = r->customer,
	    .value = r->value,
	    .timestamp = r->timestamp,
	    .dead = r->outcome == RULE_UNMAPPED ? r->reason : NULL,
	};
	int rc;

	if (r->rule == NULL)
		return 1;
	rc = spool_batch_add(s->batch, &ev, err, errlen);
	if (rc < 0)
		err_set(err, errlen, "%s: cannot keep an event: %s", t->path, err);
	return rc;
}

/* Applies the rules to one complete line (`len` bytes, NULs removed, '\r' dropped) and counts
 * its outcome in nf (the line itself is counted by the splitter). Returns 0 or -1. */
static int take_line(struct tail *t, struct tail_scratch *s, struct spool_file *nf,
                     const char *line, size_t len, int64_t line_offset, int64_t now, char *err,
                     size_t errlen)
{
	size_t n, events = 0, no_match = 0, bad_utf8 = 0;

	n = rule_set_apply(t->ctx.rules, t->source_index, line, len, now, s->results);
	if (n > s->n_results)
		n = s->n_results;
	for (size_t i = 0; i < n; i++) {
		const struct rule_result *r = &s->results[i];
		const char *name = r->rule != NULL ? r->rule->name : "?";
		int rc;

		switch (r->outcome) {
		case RULE_NO_MATCH:
			no_match++;
			break;
		case RULE_EVENT:
		case RULE_UNMAPPED:
			rc = add_event(t, s, r, line_offset, err, errlen);
			if (rc < 0)
				return -1;
			if (rc > 0) {
				log_debug("%s:%" PRId64 ": rule '%s': a field is too long for an "
				          "event",
				          t->path, line_offset, name);
				break;
			}
			events++;
			break;
		case RULE_BAD_UTF8:
			bad_utf8++;
			if (tail_warn_due(&t->warned_utf8))
				log_warn(
				    "%s: line at offset %" PRId64 " is %s; rule '%s' asks for "
				    "UTF-8 ((*UTF)) and cannot match it (such lines are counted as "
				    "invalid UTF-8 in `logmeter status`; logged at most once a "
				    "minute per file)",
				    t->path, line_offset, r->reason, name);
			else
				log_debug("%s:%" PRId64 ": rule '%s': %s", t->path, line_offset,
				          name, r->reason);
			break;
		case RULE_INVALID:
		default:
			if (r->limit != RULE_LIMIT_NONE)
				guard_limit_hit(t->ctx.guard, r->rule, r->limit, t->path,
				                line_offset);
			else if (tail_warn_due(&t->warned_invalid))
				log_warn(
				    "%s: line at offset %" PRId64 ": rule '%s' matched but made no "
				    "event: %s (such lines are counted as invalid in `logmeter "
				    "status`; logged at most once a minute per file)",
				    t->path, line_offset, name, r->reason);
			else
				log_debug("%s:%" PRId64 ": rule '%s': %s", t->path, line_offset,
				          name, r->reason);
			break;
		}
	}
	if (events > 0)
		nf->counters.matched++;
	else if (bad_utf8 > 0)
		nf->counters.bad_utf8++;
	else if (no_match == n)
		nf->counters.unmatched++;
	else
		nf->counters.invalid++;
	nf->counters.events += (int64_t)events;
	/* A line is progress: a batch of lines that each cost up to a PCRE2 limit is slow, not
	 * hung, and the watchdog must not take it for a hang (health.h). */
	health_beat(HEALTH_INGEST);
	return 0;
}

/* Commits the batch in s->events with nf at checkpoint `consumed`, whose check bytes (the up to
 * TAIL_CHECK_MAX bytes before it, as read) are `check` (`check_len` bytes). On success t->f
 * becomes the new record. Returns 0 or -1 (nothing changed). */
static int commit(struct tail *t, struct tail_scratch *s, struct spool_file *nf, int64_t consumed,
                  int64_t size, const unsigned char *check, size_t check_len, char *err,
                  size_t errlen)
{
	int64_t added = 0;

	nf->offset = consumed;
	nf->size = size > consumed ? size : consumed;
	nf->state = t->archive ? t->f->state : SPOOL_FILE_READING;
	nf->updated = (int64_t)time(NULL);
	if (sha256(check, check_len, nf->check_hash) < 0) {
		err_set(err, errlen, "%s: cannot hash the check bytes", t->path);
		return -1;
	}
	nf->check_len = (int64_t)check_len;
	crash_point("tail_before_commit"); /* a crash here: the lines are read again */
	/* No room (space.c): the batch is dropped unread, as after a failed commit. */
	if (space_admit(t->ctx.space, err, errlen) < 0)
		return -1;
	if (spool_commit(t->ctx.spool, nf, s->batch, &added, err, errlen) < 0) {
		space_commit_failed(t->ctx.space, err);
		return -1;
	}
	/* Committed, the in-memory record not advanced yet: a restart must resume from the spool.
	 */
	crash_point("spool_commit_after");
	keep_record(t, nf);
	health_beat(HEALTH_INGEST); /* a long backlog is progress, batch by batch */
	if (added > 0 && t->ctx.on_commit != NULL)
		t->ctx.on_commit(t->ctx.ud);
	return 0;
}

static void scratch_free(struct tail_scratch *s)
{
	free(s->buf);
	free(s->results);
	spool_batch_free(s->batch);
}

/* Where the data of the file (`size` bytes) ends if all of it after some point past the checkpoint
 * is a hole (lseek(2) SEEK_HOLE, then SEEK_DATA finds nothing after it: ENXIO), else `size`: a
 * sparse file (`truncate -s`, a writer that extends its file first). Its NULs are not consumed
 * until other bytes follow them (docs/tailing.md), so reading them at every change would scan the
 * whole hole each time, on the thread that reads every file. Warned about once per tail. A file
 * system without SEEK_HOLE reports data everywhere: then all of it is read as before. */
static int64_t data_end(struct tail *t, int64_t size)
{
	off_t hole, data;

	if (size <= t->f->offset)
		return size;
	hole = lseek(t->fd, (off_t)t->f->offset, SEEK_HOLE);
	if (hole < 0 || (int64_t)hole >= size)
		return size;
	data = lseek(t->fd, hole, SEEK_DATA);
	if (data >= 0 || errno != ENXIO)
		return size;
	if (!t->warned_hole) {
		log_warn("%s: its last %jd bytes are a hole, a sparse file: not read until data is "
		         "written after it (%jd bytes of data)",
		         t->path, (intmax_t)(size - hole), (intmax_t)hole);
		guard_tailing(t->ctx.guard, GUARD_TAIL_SPARSE, t->path);
	}
	t->warned_hole = 1;
	return (int64_t)hole;
}

/* Whether a file exactly as long as its checkpoint (st), which read_lines reads nothing of and so
 * checks nothing of, no longer holds what the record read: a copytruncate followed, before
 * logmeter looked, by new lines that bring it back to that very size. Only when its ctime changed
 * since the last read (or was too recent then to tell), so that an idle file or a spurious event
 * costs nothing (an mtime set back to its old value, touch -r, still changes the ctime); then the
 * check bytes before the checkpoint and the head are read (64 bytes and up to 1 KiB). Returns 1 if
 * stale, 0, or -1 on a read error (errno set). */
static int same_size_stale(struct tail *t, const struct stat *st)
{
	int rc;

	if (t->f->id == 0 || t->f->offset == 0 || st->st_size != t->f->offset)
		return 0;
	if (t->seen_known && st->st_ctim.tv_sec == t->seen_ctime.tv_sec &&
	    st->st_ctim.tv_nsec == t->seen_ctime.tv_nsec)
		return 0;
	rc = checkpoint_matches(t->fd, t->f);
	if (rc > 0)
		rc = head_matches(t->fd, t->f->fp_len, t->f->fp_hash);
	return rc < 0 ? -1 : !rc;
}

/* Records the ctime a successful read saw (st, its fstat made before `now`, CLOCK_REALTIME) for
 * same_size_stale. */
static void seen_ctime(struct tail *t, const struct stat *st, const struct timespec *now)
{
	t->seen_ctime = st->st_ctim;
	t->seen_known = now->tv_sec - st->st_ctim.tv_sec > TAIL_RACY_S;
}

int64_t tail_read(struct tail *t, char *err, size_t errlen)
{
	return tail_read_upto(t, -1, err, errlen);
}

int64_t tail_read_upto(struct tail *t, int64_t limit, char *err, size_t errlen)
{
	struct stat st;
	struct timespec now;
	int spool_failed = 0, stale = 1, rc;
	int64_t rv = 0;

	if (t == NULL) {
		err_set(err, errlen, "tail_read: invalid arguments");
		return -1;
	}
	if (t->fd < 0) {
		err_set(err, errlen, "%s: closed (not resumed)", t->path);
		errno = EBADF;
		return -1;
	}
	if (fstat(t->fd, &st) < 0 || clock_gettime(CLOCK_REALTIME, &now) < 0) {
		err_set(err, errlen, "%s: %s", t->path, strerror(errno));
		return -1;
	}
	/* Bytes the caller did not judge: read once it has (they came with an event of their
	 * own, written after its look). */
	if (limit >= 0 && st.st_size > limit)
		st.st_size = (off_t)limit;
	if (t->f->id == 0) {
		/* Opened empty: its record comes with its first bytes, unless they are a
		 * compressor's output. */
		if (st.st_size == 0)
			return 0;
		if (compressed(t->fd) != NULL) {
			char e[256];

			/* A compressor's output is no log: it leaves no record. */
			if (t->empty_id != 0 && forget_own_empty(t, e, sizeof(e)) < 0)
				log_debug("%s: %s", t->path, e);
			t->empty_id = 0;
			err_set(err, errlen,
			        "%s: %s-compressed data, never read as text (add it "
			        "to the source's exclude)",
			        t->path, compressed(t->fd));
			errno = EMEDIUMTYPE;
			return -1;
		}
		if (first_record(t, st.st_size, 0, &spool_failed, err, errlen) < 0)
			return -1;
	}
	/* A record that read nothing may have been deleted meanwhile by another file's tail, and
	 * its id given to that file's next record: reading under it would bill this file's lines
	 * under the other's record (committed there as lines already read, so lost) and leave
	 * this file to be read again under a record of its own later (billed twice). */
	rc = record_lost(t, err, errlen);
	if (rc < 0)
		return -1;
	if (rc > 0) {
		log_info("%s: its record (uid %s), which had read nothing yet, was replaced in the "
		         "spool while it waited (a file beside it was found truncated): taking the "
		         "file's record again",
		         t->path, t->f->uid);
		if (first_record(t, st.st_size, t->f->counters.resets, &spool_failed, err, errlen) <
		    0)
			return -1;
		t->skip = 0;
		t->marks_n = t->marks_last = -1;
	}
	/* A record made while its file was empty, or just after a truncation, that has read
	 * nothing yet: a file first seen with bytes has no copy to look for. */
	if (t->f->offset == 0 && t->f->fp_len == 0 && st.st_size > 0 &&
	    (t->f->size == 0 || t->restarted) &&
	    unread_copy(t, st.st_size, &spool_failed, err, errlen) < 0)
		return -1;
	/* Only what is there now: a file written faster than it is read must not keep this call
	 * (and watch_stop) waiting; what comes later has its own inotify event. A file shorter
	 * than its checkpoint is stale without reading it. */
	rc = same_size_stale(t, &st);
	if (rc < 0) {
		err_set(err, errlen, "%s: read: %s", t->path, strerror(errno));
		return -1;
	}
	if (rc == 0 && st.st_size >= t->f->offset) {
		rv = read_lines(t, data_end(t, st.st_size), &stale, err, errlen);
		if (!stale) {
			if (rv >= 0)
				seen_ctime(t, &st, &now);
			return rv;
		}
	}
	if (restart_file(t, st.st_size, &spool_failed, err, errlen) < 0)
		return -1;
	rv = read_lines(t, data_end(t, st.st_size), &stale, err, errlen);
	/* Rewritten once more since: the next read starts it over. */
	if (rv >= 0 && !stale)
		seen_ctime(t, &st, &now);
	return rv < 0 ? -1 : rv;
}

/* What the splitter's callback needs during one read_lines. */
struct tail_reader {
	struct tail *t;
	struct tail_scratch *s;
	struct spool_file *nf;        /* the record to commit */
	struct spool_counters base;   /* its counters when the read began */
	const struct lines_counts *c; /* the splitter's, added to base at each commit */
	int64_t end, now, total;
	size_t batch, in_batch;
	int dirty;
	/* The file's bytes as this read saw them: s->buf holds buf_len of them from buf_off, the
	 * chunk being fed and the up to TAIL_CHECK_MAX bytes before it. The check bytes of a
	 * checkpoint come from here, so that they are the bytes the lines before it were read
	 * from. `held` keeps those of the last checkpoint in an earlier chunk (held_end). */
	int64_t buf_off;
	size_t buf_len;
	unsigned char held[TAIL_CHECK_MAX];
	size_t held_len;
	int64_t held_end;
	/* The head's line ends, found when the fingerprint grew; written once the read committed
	 * the fingerprint they belong to. */
	struct spool_mark_head marks[SPOOL_MARKS_MAX];
	size_t n_marks;
	int marks_new;
	char *err;
	size_t errlen;
};

/* Points *p at the check bytes of checkpoint `at` (the up to TAIL_CHECK_MAX bytes before it)
 * as this read saw them, and sets *len. Returns 0, or -1 if the read holds them no longer. */
static int reader_check_bytes(const struct tail_reader *rd, int64_t at, const unsigned char **p,
                              size_t *len)
{
	int64_t n = at < TAIL_CHECK_MAX ? at : TAIL_CHECK_MAX;

	if (at - n >= rd->buf_off && at <= rd->buf_off + (int64_t)rd->buf_len) {
		*p = (const unsigned char *)rd->s->buf + (at - n - rd->buf_off);
		*len = (size_t)n;
		return 0;
	}
	if (at == rd->held_end) {
		*p = rd->held;
		*len = rd->held_len;
		return 0;
	}
	return -1;
}

/* Commits the batch with the checkpoint `consumed` and the splitter's counters. Returns 0 or
 * -1. */
static int reader_commit(struct tail_reader *rd, int64_t consumed)
{
	struct spool_counters *k = &rd->nf->counters;
	int64_t before = rd->t->f->offset;
	unsigned char back[TAIL_CHECK_MAX];
	const unsigned char *check;
	size_t check_len;

	if (reader_check_bytes(rd, consumed, &check, &check_len) < 0) {
		/* Not reached: a checkpoint is in the current chunk's bytes, or is the one held.
		 * Read again, they are right, only not from the same pread as the lines. */
		check_len = (size_t)(consumed < TAIL_CHECK_MAX ? consumed : TAIL_CHECK_MAX);
		if (pread_full(rd->t->fd, back, check_len, consumed - (int64_t)check_len) !=
		    (ssize_t)check_len) {
			err_set(rd->err, rd->errlen, "%s: cut shorter while read", rd->t->path);
			return -1;
		}
		log_debug("%s: check bytes of %" PRId64 " read again", rd->t->path, consumed);
		check = back;
	}
	k->lines = rd->base.lines + rd->c->lines;
	k->long_lines = rd->base.long_lines + rd->c->long_lines;
	k->nul_bytes = rd->base.nul_bytes + rd->c->nul_bytes;
	k->torn_lines = rd->base.torn_lines + rd->c->torn_lines;
	if (commit(rd->t, rd->s, rd->nf, consumed, rd->end, check, check_len, rd->err, rd->errlen) <
	    0)
		return -1;
	rd->total += consumed - before;
	rd->in_batch = 0;
	rd->dirty = 0;
	return 0;
}

/* lines_fn: one line (or one '\n' after only NULs, or a line torn by NULs); commits every `batch`
 * of them. */
static int reader_line(const struct lines_line *l, void *ud)
{
	struct tail_reader *rd = ud;
	struct tail *t = rd->t;

	if (l->kind == LINES_TEXT) {
		if (take_line(t, rd->s, rd->nf, l->data, l->len, l->offset, rd->now, rd->err,
		              rd->errlen) < 0)
			return -1;
	} else if (l->kind == LINES_LONG) {
		if (tail_warn_due(&t->warned_long))
			log_warn("%s: skipped a line longer than max_line_length (%" PRId64
			         " bytes) before offset %" PRId64 " (counted as long lines in "
			         "`logmeter status`; logged at most once a minute per file)",
			         t->path, t->ctx.cfg->agent.max_line_length, l->end - 1);
	} else if (l->kind == LINES_TORN) {
		/* Its end is missing (a crash left NULs where it was): "bytes=5" may have been
		 * "bytes=512", so no rule sees it. */
		if (tail_warn_due(&t->warned_torn))
			log_warn(
			    "%s: skipped a torn line at offset %" PRId64 ": %zu bytes followed by "
			    "NUL bytes, its end missing (a crash?); the text after the NULs is "
			    "read "
			    "as a line of its own (counted as torn lines in `logmeter status`; "
			    "logged at most once a minute per file)",
			    t->path, l->offset, l->len);
	}
	/* A batch of events beyond SPOOL_BATCH_BYTES_MAX is only bigger in memory, not faster. */
	if (++rd->in_batch >= rd->batch ||
	    spool_batch_bytes(rd->s->batch) >= SPOOL_BATCH_BYTES_MAX) {
		if (reader_commit(rd, l->end) < 0)
			return -1;
		if (t->ctx.stop != NULL && *t->ctx.stop) {
			err_set(rd->err, rd->errlen, "%s: interrupted at offset %" PRId64, t->path,
			        l->end);
			errno = EINTR;
			return -1;
		}
	}
	return 0;
}

/* The line ends of the head's `len` bytes at `b` (the bytes the fingerprint was just taken from)
 * into rd->marks, each with the hash of the bytes up to it; rd->marks_new if they differ from
 * those written last. */
static void head_marks(struct tail_reader *rd, const unsigned char *b, size_t len)
{
	const unsigned char *p = b, *nl;

	rd->n_marks = 0;
	while (rd->n_marks < SPOOL_MARKS_MAX &&
	       (nl = memchr(p, '\n', len - (size_t)(p - b))) != NULL) {
		struct spool_mark_head *m = &rd->marks[rd->n_marks];

		m->len = nl + 1 - b;
		if (sha256(b, (size_t)m->len, m->hash) < 0)
			break;
		rd->n_marks++;
		p = nl + 1;
	}
	rd->marks_new = (int64_t)rd->n_marks != rd->t->marks_n ||
	                (rd->n_marks > 0 && rd->marks[rd->n_marks - 1].len != rd->t->marks_last);
}

/* The first chunk of a read, `n` bytes from `start`: whether it still holds what the record says
 * (the check bytes before the checkpoint if `check` is set, and the head if `head` is set: then
 * start is 0), and the fingerprint grown from the same bytes into rd->nf. Returns 1 if it does, 0
 * if the record is stale. */
static int first_chunk_valid(struct tail_reader *rd, int64_t start, size_t n, int check, int head)
{
	const struct spool_file *f = rd->t->f;
	const unsigned char *b = (const unsigned char *)rd->s->buf;
	int64_t have = start + (int64_t)n;

	if (have < f->offset)
		return 0; /* cut shorter than the checkpoint since the fstat */
	if (check && f->check_len > 0 &&
	    (f->check_len > f->offset - start ||
	     !hash_is(b + (f->offset - f->check_len - start), (size_t)f->check_len, f->check_hash)))
		return 0;
	if (!head)
		return 1;
	if (f->fp_len > 0 && (have < f->fp_len || !hash_is(b, (size_t)f->fp_len, f->fp_hash)))
		return 0;
	rd->t->verify_head = 0;
	if (f->fp_len < SPOOL_FP_MAX && have > f->fp_len) {
		size_t len = have < SPOOL_FP_MAX ? (size_t)have : SPOOL_FP_MAX;

		if (sha256(b, len, rd->nf->fp_hash) < 0)
			return 0;
		rd->nf->fp_len = (int64_t)len;
		rd->dirty = 1;
		head_marks(rd, b, len);
	}
	return 1;
}

/* Before an over-long line is read on from where the last read stopped (`resume`), what the
 * record says is checked on its own: the check bytes, the head, and the fingerprint grown (the
 * first line of a file can be that long). Returns 1, 0 if stale, -1 on a read error. */
static int resumed_long_valid(struct tail_reader *rd, int64_t end)
{
	struct tail *t = rd->t;
	int rc = checkpoint_matches(t->fd, t->f);

	if (rc <= 0)
		return rc;
	if (t->verify_head || (t->f->fp_len < SPOOL_FP_MAX && end > t->f->fp_len)) {
		rc = head_matches(t->fd, t->f->fp_len, t->f->fp_hash);
		if (rc <= 0)
			return rc;
		t->verify_head = 0;
		if (t->f->fp_len < SPOOL_FP_MAX && end > t->f->fp_len) {
			if (fingerprint(t->fd, end, rd->nf) < 0)
				return -1;
			rd->dirty = rd->nf->fp_len != t->f->fp_len;
		}
	}
	return 1;
}

/* Reads complete lines from the checkpoint t->f->offset up to `end`, committing batches under
 * t->f (its fingerprint grown, while it covers less than SPOOL_FP_MAX bytes, from the bytes
 * read). What the record says is checked in the bytes of the first pread, the bytes the first
 * lines come from: the check bytes before the checkpoint, and the head when it is checked (a
 * resumed file) or grows (then the checkpoint is within it, so one pread from 0 holds both). Each
 * later pread starts TAIL_CHECK_MAX bytes before the previous one ended, and those bytes must
 * read the same again: a file rewritten while it is read is not read on as if it were one file
 * (the read stops; the next one finds the checkpoint stale). Sets *stale, with nothing read, if
 * the file no longer is what the record says. Returns the bytes consumed or -1. */
static int64_t read_lines(struct tail *t, int64_t end, int *stale, char *err, size_t errlen)
{
	struct tail_scratch s = {0};
	struct spool_file nf;
	const struct config_agent *agent = &t->ctx.cfg->agent;
	struct tail_reader rd = {0};
	struct lines *sp = NULL;
	unsigned char prev[TAIL_CHECK_MAX];
	int64_t c = t->f->offset, pos = c, start, rv = -1;

	spool_file_copy(&nf, t->f);
	int head, first = 1, rc;

	*stale = 0;
	rd.t = t;
	rd.s = &s;
	rd.nf = &nf;
	rd.held_end = -1;
	head = (t->verify_head || (t->f->fp_len < SPOOL_FP_MAX && end > t->f->fp_len)) &&
	       c <= SPOOL_FP_MAX;
	if (t->skip && t->skip_line == c && t->skip_resume > c && t->skip_resume <= end) {
		/* The rest of an over-long line: its bytes up to skip_resume hold no '\n'. */
		pos = t->skip_resume;
		head = 0;
		rc = resumed_long_valid(&rd, end);
		if (rc < 0) {
			err_set(err, errlen, "%s: %s", t->path, strerror(errno));
			return -1;
		}
		if (rc == 0)
			goto stale;
	} else if (t->verify_head && !head) {
		/* The head of a resumed file is far from the checkpoint: read on its own. */
		rc = head_matches(t->fd, t->f->fp_len, t->f->fp_hash);
		if (rc < 0) {
			err_set(err, errlen, "%s: %s", t->path, strerror(errno));
			return -1;
		}
		if (rc == 0)
			goto stale;
		t->verify_head = 0;
	}
	t->skip = 0;
	if (pos >= end && !head && !rd.dirty)
		return 0;
	start = head ? 0 : pos - (pos < TAIL_CHECK_MAX ? pos : TAIL_CHECK_MAX);

	/* Never more than what there is to read: a few appended lines (the usual case, and with
	 * thousands of files the usual case times thousands) take a small block. */
	s.cap = end - start < TAIL_CHUNK ? (size_t)(end > start ? end - start : 0) : TAIL_CHUNK;
	if (s.cap < 2 * TAIL_CHECK_MAX)
		s.cap = 2 * TAIL_CHECK_MAX;
	s.buf = malloc(s.cap);
	s.n_results = rule_set_max_per_source(t->ctx.rules);
	s.results = calloc(s.n_results > 0 ? s.n_results : 1, sizeof(*s.results));
	s.batch = spool_batch_new(t->ctx.instance != NULL ? t->ctx.instance : "", err, errlen);
	sp = lines_new(c, (size_t)agent->max_line_length, err, errlen);
	if (s.buf == NULL || s.results == NULL || s.batch == NULL || sp == NULL) {
		err_set(err, errlen, "%s: out of memory", t->path);
		goto out;
	}
	rd.base = nf.counters;
	rd.c = lines_counts(sp);
	rd.end = end;
	rd.batch = (size_t)agent->batch_lines;
	rd.err = err;
	rd.errlen = errlen;
	if (pos != c && lines_resume_long(sp, pos) < 0) {
		err_set(err, errlen, "%s: cannot resume an over-long line", t->path);
		goto out;
	}

	while (first || pos < end) {
		size_t overlap = (size_t)(pos - start), want = s.cap;
		ssize_t n;

		if ((int64_t)want > end - start)
			want = (size_t)(end - start);
		n = pread_full(t->fd, s.buf, want, start);
		if (n < 0) {
			err_set(err, errlen, "%s: read: %s", t->path, strerror(errno));
			goto out;
		}
		if (first) {
			if (!first_chunk_valid(&rd, start, (size_t)n, pos == c, head)) {
				lines_free(sp);
				scratch_free(&s);
				goto stale;
			}
		} else if ((size_t)n <= overlap || memcmp(s.buf, prev, overlap) != 0) {
			/* Cut shorter, or rewritten, since the last pread: not read on. */
			break;
		}
		first = 0;
		rd.buf_off = start;
		rd.buf_len = (size_t)n;
		if ((size_t)n > overlap) {
			rd.now = (int64_t)time(NULL);
			if (lines_feed(sp, s.buf + overlap, (size_t)n - overlap, reader_line, &rd,
			               err, errlen) < 0)
				goto out;
		}
		pos = start + n;
		if ((size_t)n < want)
			break; /* the file ends before `end` now: the next read sees why */
		/* What the next pread must read again, and the check bytes of a checkpoint in
		 * this chunk that the next one may not hold. */
		overlap =
		    (size_t)(pos - start) < TAIL_CHECK_MAX ? (size_t)(pos - start) : TAIL_CHECK_MAX;
		memcpy(prev, s.buf + (size_t)n - overlap, overlap);
		if (rd.c->consumed != rd.held_end) {
			const unsigned char *chk;
			size_t chk_len;

			if (reader_check_bytes(&rd, rd.c->consumed, &chk, &chk_len) == 0) {
				memcpy(rd.held, chk, chk_len);
				rd.held_len = chk_len;
				rd.held_end = rd.c->consumed;
			}
		}
		start = pos - (int64_t)overlap;
	}
	if (t->finish && pos >= end && lines_finish(sp, reader_line, &rd) < 0)
		goto out;
	if (lines_pending(sp) == LINES_PENDING_LONG) {
		/* It starts at the checkpoint: NULs before it were consumed, nothing else was. */
		t->skip = 1;
		t->skip_line = rd.c->consumed;
		t->skip_resume = lines_resume_point(sp);
	}
	if (rd.c->consumed > t->f->offset || rd.dirty || spool_batch_count(s.batch) > 0) {
		if (reader_commit(&rd, rd.c->consumed) < 0) {
			t->skip = 0;
			goto out;
		}
	}
	if (rd.marks_new && t->f->fp_len == nf.fp_len) {
		char merr[256];

		/* Only the recognition of a truncation depends on them: a failure is logged. */
		if (spool_head_marks_put(t->ctx.spool, t->f->id, rd.marks, rd.n_marks, merr,
		                         sizeof(merr)) < 0) {
			log_warn("%s: %s", t->path, merr);
		} else {
			t->marks_n = (int64_t)rd.n_marks;
			t->marks_last = rd.n_marks > 0 ? rd.marks[rd.n_marks - 1].len : 0;
		}
	}
	rv = rd.total;
out:
	guard_flush(t->ctx.guard);
	lines_free(sp);
	scratch_free(&s);
	return rv;
stale:
	*stale = 1;
	t->skip = 0;
	return 0;
}

int tail_set_ctx(struct tail *t, const struct tail_ctx *ctx, size_t source_index, char *err,
                 size_t errlen)
{
	if (t == NULL || ctx == NULL || ctx->cfg == NULL || ctx->spool == NULL ||
	    source_index >= ctx->cfg->n_sources ||
	    strcmp(ctx->cfg->sources[source_index].name, t->source) != 0) {
		err_set(err, errlen, "tail_set_ctx: invalid arguments");
		return -1;
	}
	t->ctx = *ctx;
	t->source_index = source_index;
	t->source = ctx->cfg->sources[source_index].name;
	return 0;
}

const char *tail_path(const struct tail *t)
{
	return t != NULL ? t->path : NULL;
}

const struct spool_file *tail_file(const struct tail *t)
{
	return t != NULL ? t->f : NULL;
}

size_t tail_source_index(const struct tail *t)
{
	return t != NULL ? t->source_index : 0;
}

dev_t tail_dev(const struct tail *t)
{
	return t != NULL ? t->dev : 0;
}

ino_t tail_ino(const struct tail *t)
{
	return t != NULL ? t->ino : 0;
}

int tail_stat(const struct tail *t, struct stat *st)
{
	if (t == NULL || st == NULL) {
		errno = EINVAL;
		return -1;
	}
	if (t->fd >= 0)
		return fstat(t->fd, st);
	if (stat(t->path, st) < 0)
		return -1;
	if (st->st_dev != t->dev || st->st_ino != t->ino) {
		errno = ESTALE;
		return -1;
	}
	return 0;
}

void tail_suspend(struct tail *t)
{
	if (t == NULL || t->fd < 0)
		return;
	close(t->fd);
	t->fd = -1;
	t->skip = 0;
}

int tail_is_open(const struct tail *t)
{
	return t != NULL && t->fd >= 0;
}

int tail_fd(const struct tail *t)
{
	return t != NULL ? t->fd : -1;
}

int tail_resume(struct tail *t, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (t == NULL) {
		err_set(err, errlen, "tail_resume: invalid arguments");
		errno = EINVAL;
		return -1;
	}
	if (t->fd >= 0)
		return 0;
	fd = guard_open(t->ctx.guard, &t->ctx.cfg->sources[t->source_index], t->path, NULL, err,
	                errlen);
	/* Gone, or now a name the source may not open (EPERM, counted): not the tail's file. */
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR || errno == EPERM ? 1 : -1;
	if (fstat(fd, &st) < 0) {
		err_set(err, errlen, "%s: %s", t->path, strerror(errno));
		close(fd);
		return -1;
	}
	if (st.st_dev != t->dev || st.st_ino != t->ino) {
		close(fd);
		return 1;
	}
	t->fd = fd;
	t->verify_head = 1;
	return 0;
}

int tail_current_path(const struct tail *t, char *out, size_t outlen)
{
	static const char deleted[] = " (deleted)";
	char link[64];
	ssize_t n;

	if (t == NULL || t->fd < 0 || outlen < 2)
		return -1;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", t->fd);
	n = readlink(link, out, outlen - 1);
	if (n <= 0 || (size_t)n >= outlen - 1 || out[0] != '/')
		return -1;
	out[n] = '\0';
	if ((size_t)n >= sizeof(deleted) - 1 &&
	    strcmp(out + n - (sizeof(deleted) - 1), deleted) == 0)
		return -1;
	return 0;
}

int tail_rename(struct tail *t, const char *path, char *err, size_t errlen)
{
	struct spool_file nf;
	char *dup;

	if (t == NULL || path == NULL) {
		err_set(err, errlen, "tail_rename: invalid arguments");
		return -1;
	}
	spool_file_copy(&nf, t->f);
	if (copy_field(nf.path, sizeof(nf.path), path) < 0) {
		err_set(err, errlen, "%s: path too long for the spool", path);
		return -1;
	}
	dup = strdup(path);
	if (dup == NULL || reserve_record(t, path) < 0) {
		free(dup);
		err_set(err, errlen, "%s: out of memory", path);
		return -1;
	}
	if (nf.id != 0 && update_own(t, &nf, err, errlen) < 0) {
		free(dup);
		return -1;
	}
	if (nf.id == 0)
		empty_update(t, &nf);
	free(t->path);
	t->path = dup;
	keep_record(t, &nf);
	return 0;
}

/* Whether `len` bytes at `off` are the same in both files. Returns 1, 0, or -1. */
static int same_bytes(int fd1, int fd2, int64_t off, size_t len)
{
	unsigned char a[SPOOL_FP_MAX], b[SPOOL_FP_MAX];
	ssize_t n1, n2;

	if (len > sizeof(a))
		return 0;
	n1 = pread_full(fd1, a, len, off);
	n2 = pread_full(fd2, b, len, off);
	if (n1 < 0 || n2 < 0)
		return -1;
	return n1 == (ssize_t)len && n2 == (ssize_t)len && memcmp(a, b, len) == 0;
}

static int record_copy_of(struct tail *t, int fd, const struct stat *st);

/* Opens tail t's file by its path while t is suspended (max_open_files), for prefix_of_live, if
 * t has read nothing yet (then its record cannot tell a copy: record_copy_of) and its path still
 * leads to its file, `size` bytes long at least. Returns the descriptor (caller closes), or -1. */
static int open_unread(struct tail *t, int64_t size)
{
	struct stat pst;
	char e[1024];
	int fd;

	if (t->f->offset != 0 || stat(t->path, &pst) != 0 || pst.st_dev != t->dev ||
	    pst.st_ino != t->ino || pst.st_size < size)
		return -1;
	fd = guard_open(t->ctx.guard, &t->ctx.cfg->sources[t->source_index], t->path, NULL, e,
	                sizeof(e));
	if (fd < 0)
		log_debug("%s", e);
	return fd;
}

/* Whether the file open as `fd`, `size` bytes long, holds exactly the first `size` bytes that
 * tail t's file holds now: a copy of it made since, whatever logmeter read of either (the original
 * grew after the copy, or its new lines are not read yet). t must hold its file open, or have read
 * nothing of it yet (then it is opened for the look: open_unread). Returns 1, 0, or -1 on a read
 * error. */
static int prefix_of_live(struct tail *t, int fd, int64_t size)
{
	unsigned char *a = NULL, *b = NULL;
	struct stat ost;
	int ofd = t->fd, rc = 0;

	/* Only a file held open (read lately: the ones copies are made of; opening every idle
	 * file of a directory for each new file there would cost a descriptor and a read each),
	 * or one closed for max_open_files before it read anything (opened empty: its record
	 * says nothing a copy could be recognised by, and a copy of its first lines made before
	 * they were read would be read as a new file, and the original then taken for its copy);
	 * and one whose fingerprinted head the file holds if it is that long. Unless the original
	 * no longer starts as its record says (truncated and written again, not seen yet: frozen
	 * across a copytruncate and the copy of the next one): then the record tells nothing of
	 * what the copy may hold, and only the original's bytes can. */
	if (ofd < 0 && (ofd = open_unread(t, size)) < 0)
		return 0;
	if (size >= t->f->fp_len && head_matches(fd, t->f->fp_len, t->f->fp_hash) != 1 &&
	    head_matches(ofd, t->f->fp_len, t->f->fp_hash) == 1)
		goto out;
	if (fstat(ofd, &ost) == 0 && ost.st_dev == t->dev && ost.st_ino == t->ino &&
	    ost.st_size >= size && (a = malloc(TAIL_BACK_CHUNK)) != NULL &&
	    (b = malloc(TAIL_BACK_CHUNK)) != NULL) {
		/* The first chunk small, then doubling: two files of a directory almost always
		 * differ in their first line, and every new file of a directory is compared with
		 * every open file there (1,000 files at start: half a million pairs). */
		size_t chunk = SPOOL_FP_MAX;

		rc = 1;
		for (int64_t off = 0; off < size && rc == 1; off += (int64_t)chunk,
		             chunk = chunk < TAIL_BACK_CHUNK / 2 ? chunk * 2 : TAIL_BACK_CHUNK) {
			size_t len = size - off < (int64_t)chunk ? (size_t)(size - off) : chunk;
			ssize_t n1 = pread_full(fd, a, len, off), n2 = pread_full(ofd, b, len, off);

			if (n1 < 0 || n2 < 0)
				rc = -1;
			else if ((size_t)n1 != len || (size_t)n2 != len || memcmp(a, b, len) != 0)
				rc = 0;
		}
	}
out:
	if (ofd != t->fd)
		close(ofd);
	free(a);
	free(b);
	return rc;
}

int tail_copy_candidate(int fd, const struct stat *st)
{
	unsigned char head[SPOOL_FP_MAX];
	const unsigned char *nl;
	int64_t size = st != NULL ? st->st_size : 0;

	/* One line is no proof: a new log often starts with the line the last one began with. */
	if (fd < 0 || size <= 0)
		return 0;
	if (size >= SPOOL_FP_MAX)
		return 1;
	return pread_full(fd, head, (size_t)size, 0) == size &&
	       (nl = memchr(head, '\n', (size_t)size)) != NULL &&
	       memchr(nl + 1, '\n', (size_t)(head + size - (nl + 1))) != NULL;
}

int tail_copy_of(struct tail *t, int fd, const struct stat *st, int candidate)
{
	int rc;

	if (t == NULL || fd < 0 || st == NULL)
		return 0;
	rc = record_copy_of(t, fd, st);
	if (rc != 0 || !candidate || (st->st_dev == t->dev && st->st_ino == t->ino))
		return rc;
	return prefix_of_live(t, fd, st->st_size);
}

/* tail_copy_of by what t's record read (its head and check bytes), so also once t's file was
 * truncated. Returns 1, 0, or -1. */
static int record_copy_of(struct tail *t, int fd, const struct stat *st)
{
	int64_t size = st->st_size, tail;
	struct stat ost;
	int ofd = -1, rc;
	char e[1024];

	if (t == NULL || fd < 0 || t->f->id == 0 || t->f->offset <= 0 || t->f->fp_len <= 0 ||
	    size < t->f->fp_len || (st->st_dev == t->dev && st->st_ino == t->ino))
		return 0;
	if (size >= t->f->offset) {
		rc = head_matches(fd, t->f->fp_len, t->f->fp_hash);
		return rc <= 0 ? rc : checkpoint_matches(fd, t->f);
	}
	rc = holds_prefix(t, fd, size);
	if (rc <= 0 || size == t->f->fp_len)
		return rc;
	/* Being written, or made before the last lines were read: its last bytes are the
	 * original's at the same place, if the original (opened again if it was closed) still
	 * holds them; once truncated, the head is all there is to tell. */
	ofd = t->fd;
	if (ofd < 0 && (ofd = guard_open(t->ctx.guard, &t->ctx.cfg->sources[t->source_index],
	                                 t->path, NULL, e, sizeof(e))) < 0)
		return 1;
	tail = size - t->f->fp_len < TAIL_CHECK_MAX ? size - t->f->fp_len : TAIL_CHECK_MAX;
	if (fstat(ofd, &ost) == 0 && ost.st_dev == t->dev && ost.st_ino == t->ino &&
	    ost.st_size >= t->f->offset)
		rc = same_bytes(fd, ofd, size - tail, (size_t)tail);
	if (ofd != t->fd)
		close(ofd);
	return rc;
}

void tail_drop_empty(struct tail *t)
{
	char e[256];

	if (t == NULL || t->f->id != 0 || t->empty_id == 0)
		return;
	if (forget_own_empty(t, e, sizeof(e)) < 0)
		log_debug("%s: %s", t->path, e);
	t->empty_id = 0;
}

int tail_record_holds(const struct spool_file *f, int fd)
{
	int rc;

	if (f == NULL || fd < 0)
		return -1;
	rc = head_matches(fd, f->fp_len, f->fp_hash);
	return rc <= 0 ? rc : checkpoint_matches(fd, f);
}

int tail_mark_gone(struct tail *t, char *err, size_t errlen)
{
	return tail_mark(t, SPOOL_FILE_GONE, err, errlen);
}

int tail_mark(struct tail *t, enum spool_file_state state, char *err, size_t errlen)
{
	struct spool_file nf;

	if (t == NULL) {
		err_set(err, errlen, "tail_mark: invalid arguments");
		return -1;
	}
	spool_file_copy(&nf, t->f);
	if (nf.state == state)
		return 0;
	nf.state = state;
	/* A file still empty has only the record it was seen empty with. */
	if (nf.id != 0 && update_own(t, &nf, err, errlen) < 0)
		return -1;
	if (nf.id == 0)
		empty_update(t, &nf);
	keep_record(t, &nf);
	return 0;
}
