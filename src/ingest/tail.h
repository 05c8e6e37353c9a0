/* tail: one reader per log file. Knows the file's identity (device, inode, and a fingerprint of
 * its first bytes kept in the spool), resumes from its checkpoint after validating it, reads
 * complete lines, applies the rules and commits each batch of events with the new checkpoint in
 * one spool transaction. A partial last line is left for later: the checkpoint stays at its
 * start. */
#ifndef LOGMETER_TAIL_H
#define LOGMETER_TAIL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "config/config.h"
#include "core/rule.h"
#include "store/spool.h"

/* What a tail needs from the rest of the agent, borrowed for the tail's lifetime. */
struct space;
struct guard;

struct tail_ctx {
	const struct config *cfg;
	struct rule_set *rules;
	struct spool *spool;
	const char *instance;        /* for identifiers */
	void (*on_commit)(void *ud); /* called after each commit that added events; may be NULL */
	void *ud;
	/* Asked before each commit (space_admit) and told of failed ones; may be NULL (no
	 * limits). A refused commit fails tail_read like a spool error: nothing is lost. */
	struct space *space;
	/* Opens the files (guard_open: symlinks and logmeter's own files refused) and counts the
	 * lines that hit a PCRE2 limit; may be NULL (the source's symlink rule alone, no counts).
	 */
	struct guard *guard;
	/* May be NULL. Once it is non-zero (a signal handler sets it), tail_read stops after the
	 * batch it is committing: it fails with errno EINTR, everything before the checkpoint
	 * committed (backfill's SIGINT and SIGTERM). */
	const volatile sig_atomic_t *stop;
	/* The sources the spool has file records of that cfg does not have (removed or renamed
	 * since), n_old_sources names, borrowed; may be NULL with n_old_sources 0. A source whose
	 * own record of a file was left behind while one of them read on goes on from that one's
	 * checkpoint, not from its own (a source renamed and renamed back: docs/tailing.md, "A file
	 * another source read: taken over at its checkpoint"). */
	const char *const *old_sources;
	size_t n_old_sources;
};

struct tail;

/* Opens `path` for source `source_index` and identifies it (docs/tailing.md): the newest record
 * of the source with its dev/ino is resumed only if it is not "gone" (a deleted file's inode
 * reused is a new file), the file still starts with the fingerprinted head, and the check bytes
 * before the checkpoint still match (the file may have been truncated and grown again while the
 * agent was stopped). A record that fails the content checks is first looked for as a
 * copytruncate copy in the same directory (its rest read from the copy under the same record),
 * then the file starts again at 0 as a new record (counted in resets and logged unless a copy
 * explained it). A file never seen before starts at 0, or at its end with read_from = tail
 * (rounded back to the start of its partial last line); an empty one gets a record that read
 * nothing (so that a restart knows it was seen), taken over with its first bytes (tail_read). A
 * file that starts with a compression format's magic number (gzip, xz, zstd, bzip2) is refused
 * (EINVAL); so is a file guard_open refuses (EPERM: a symlink the source does not follow, or a file
 * of logmeter's own). Returns the tail (caller frees), or NULL (for example EACCES: `err` says so).
 */
struct tail *tail_open(const struct tail_ctx *ctx, const char *path, size_t source_index, char *err,
                       size_t errlen);

/* Flag of tail_open_flags: the file appeared while the agent was running, so a file never seen
 * before starts at 0 whatever read_from says (read_from = tail is for the files found at start,
 * not for new files whose every line is new). */
#define TAIL_OPEN_CREATED 1u

/* tail_open with flags. `expect` (or NULL): the stat(2) of the file the caller means to open
 * (its st_dev and st_ino are compared): a path that leads to another file when opened (renamed or
 * replaced since the caller looked: a rotation) fails with ESTALE before the spool is touched,
 * so that the caller looks for its file again. `judged`: the size in bytes the file had when the
 * caller judged it no copy of a file it tails (watch.c), or -1. A file with no record, to be read
 * from its start, that is longer now than it was then is opened as an empty file is (a record that
 * read nothing, t->f without an id), so that the caller judges it again by the size it has at its
 * first read: a copy `cp` created empty and filled between the caller's look and this open would
 * otherwise be read as a new file, its lines billed twice. If `file_errno` is non-NULL it is set on
 * failure: to the errno of the file (EACCES, ENOENT, ...; EINVAL if it is not a regular file) when
 * the file could not be opened or read, or to 0 when the spool failed: a file is retried later, a
 * spool error is the agent's failure. */
struct tail *tail_open_flags(const struct tail_ctx *ctx, const char *path, size_t source_index,
                             unsigned flags, const struct stat *expect, int64_t judged,
                             int *file_errno, char *err, size_t errlen);

/* How content (an archive, decompressed) relates to a file record (tail_identify). */
enum tail_match {
	TAIL_MATCH_NONE = 0,
	/* It starts with the record's fingerprinted head but goes on past the record's checkpoint
	 * without the record's check bytes there (or is as long, with other bytes there): another
	 * file that starts the same, or that file followed or cut by other content. Content cannot
	 * tell which of its lines were read. */
	TAIL_MATCH_HEAD,
	/* It starts with the record's whole fingerprinted head and ends at or before the record's
	 * checkpoint (at it: with the check bytes there): a copy of the file as it was earlier, or
	 * cut shorter; every line of it was read as that file. */
	TAIL_MATCH_WITHIN,
	/* It holds the record's head and its check bytes just before the checkpoint, and goes on
	 * past it: the file itself, the lines after the checkpoint not read yet. */
	TAIL_MATCH_BEYOND,
};

/* Identifies the bytes of `fd` from offset `start` to `end` (an archive's content, or a part of
 * it) against the records, in any state, of the source named `source` (NULL: of every source)
 * and against `n_extra` records `extra` (those a dry run would have made or moved so far; one
 * with the id of a spool record replaces it). A record's head is its first fp_len bytes
 * (SHA-256 fp_hash, up to SPOOL_FP_MAX), its check bytes the check_len bytes before its
 * checkpoint (check_hash): content shorter than the head is within a record only if it ends at
 * one of the record's head marks and holds the bytes before it (store/extra.c; ctx->spool may
 * be NULL: a dry run before the spool exists has only `extra`). Of several
 * records, the one that covers most of the content: a WITHIN match (all of it) before a BEYOND
 * one (up to its checkpoint: the one read furthest), either before a HEAD match. Copies the
 * record into *out. Returns the match (TAIL_MATCH_NONE: *out untouched), or -1 on a read or
 * spool error (`err`). */
int tail_identify(const struct tail_ctx *ctx, int fd, int64_t start, int64_t end,
                  const char *source, const struct spool_file *extra, size_t n_extra,
                  struct spool_file *out, char *err, size_t errlen);

/* Of the records of the sources other than `source` (those the configuration no longer has too)
 * and of the `n_extra` records `extra` (as for tail_identify), the one read furthest past
 * `offset` that the content from `start` to `end` of `fd` holds up to its checkpoint
 * (TAIL_MATCH_WITHIN or TAIL_MATCH_BEYOND): a file that `source` read up to `offset` and that
 * another source read on from there (a hand-over, watch.c file_owner, or a spool that read it
 * under two sources). The lines up to that record's checkpoint were billed under its source, so
 * reading them as `source` would bill them again. Copies it into *out. Returns 1, 0 if there is
 * none (*out untouched), or -1 on a read or spool error (`err`). */
int tail_identify_further(const struct tail_ctx *ctx, int fd, int64_t start, int64_t end,
                          const char *source, int64_t offset, const struct spool_file *extra,
                          size_t n_extra, struct spool_file *out, char *err, size_t errlen);

/* The fingerprinted heads of every record of the spool (any source, any state) and of `extra`
 * records (as for tail_identify; ctx->spool may be NULL), kept compact (about 50 bytes a record):
 * whether a file read before starts at some offset of a content is then one hash per distinct head
 * length, so that every member of a gzip archive can be tried. Returns it (caller frees), or NULL
 * (`err`). */
struct tail_heads;
struct tail_heads *tail_heads_new(const struct tail_ctx *ctx, const struct spool_file *extra,
                                  size_t n_extra, char *err, size_t errlen);

/* Whether the bytes of `fd` from `off` (up to `end`) start with the whole head of a record.
 * Returns 1, 0, or -1 (a read error, errno set). */
int tail_heads_at(const struct tail_heads *h, int fd, int64_t off, int64_t end);

/* The shortest head tail_heads_find looks for, in bytes: a record of a file that held a line or
 * two of a few bytes ("\n", "ok\n") has a head that new content holds by chance; 64 bytes is
 * more than a log line's prefix before its timestamp. */
#define TAIL_HEADS_FIND_MIN 64

/* The first line start (after a '\n') of the bytes of `fd` in (start, end) where the whole head,
 * of at least TAIL_HEADS_FIND_MIN bytes, of a record starts: content that holds a file read
 * before after lines of its own (a plain `cat new.log old.log`, which has no gzip members to
 * tell where old.log starts). One SHA-256 per distinct head length per line. Returns the offset,
 * 0 if there is none, or -1 (a read error, errno set). */
int64_t tail_heads_find(const struct tail_heads *h, int fd, int64_t start, int64_t end);

/* Frees. NULL is a no-op. */
void tail_heads_free(struct tail_heads *h);

/* What a record of the content of `fd` (`size` bytes) read up to `checkpoint` would hold, as
 * tail_open_archive and tail_read make it: the fingerprint of its first min(size, SPOOL_FP_MAX)
 * bytes and the check bytes before `checkpoint`, with offset and size, into *f (the rest of *f
 * is left as it is). For a dry run, whose records are never written (tail_identify's `extra`).
 * Returns 0, or -1 (errno set by the read). */
int tail_describe(int fd, int64_t size, int64_t checkpoint, struct spool_file *f);

/* Flags of tail_open_archive. TAIL_ARCHIVE_FINISH: the content does not grow, so a last line
 * without its '\n' is a finished line and is read (lines_finish). */
#define TAIL_ARCHIVE_FINISH 1u

/* A tail over `fd` (taken over: tail_free closes it, also after a failure), the content of the
 * archive `path` whose stat(2) is *ast: with `record` (from tail_identify) it continues that
 * record from its checkpoint, so its lines get the identifiers they had or would have had when
 * tailed; without, it starts a new record (a new uid) at 0, state "drained", with the archive's
 * device and inode (an empty archive gets none). tail_read then reads it to its end; its commits
 * keep the record's state (an archive is never "reading": no agent reads it, and a backfill
 * stopped half-way leaves nothing that looks read by a running agent). Returns the tail, or NULL
 * (`err`). */
struct tail *tail_open_archive(const struct tail_ctx *ctx, int fd, const char *path,
                               const struct stat *ast, size_t source_index,
                               const struct spool_file *record, unsigned flags, char *err,
                               size_t errlen);

/* The compression format whose magic number the open file `fd` starts with ("gzip", "xz",
 * "zstd", "bzip2": RFC 1952, the xz file format 1.1.0, RFC 8878, bzip2's stream and block
 * headers), or NULL (also on a read error). Static storage. Such a file is never read as text. */
const char *tail_compression(int fd);

/* tail_compression of the file at `path` (opened for it; NULL if it cannot be). */
const char *tail_compression_at(const char *path);

/* The rest of the record *f (of source `source_index`) whose file is gone (compressed by logrotate
 * while logmeter was not running) or was truncated with no copy beside it (copytruncate, the copy
 * compressed): looks in the directory of f->path, then in the source's olddir (tail_olddir), for
 * a gzip file named as logrotate names a compressed rotation of it (app.log.1.gz,
 * app.log-20250101.gz, with `extension` app.1.log.gz) whose decompressed content starts with the
 * record's fingerprinted head and holds its check bytes before its checkpoint, the test backfill
 * uses (docs/backfill.md, "Beyond a record's checkpoint"). The head of each is decompressed
 * first (backfill_gunzip, into an unlinked temporary file), and a file that is not sound gzip is
 * skipped with a warning. The first that holds it is read from the checkpoint to its end as the
 * record (tail_open_archive, tail_read: its uid and offsets, so nothing read before is read
 * again), committing batches, and the record is then marked drained, so that a later start does
 * not look again. *f is updated to the record as committed. Returns 1 (read from a .gz), 0 (none
 * holds it; a record that read nothing has nothing to look for), or -1 (a spool or read error:
 * `err`; what was committed stays, the record is still as it was otherwise). */
int tail_rest_from_gz(const struct tail_ctx *ctx, size_t source_index, struct spool_file *f,
                      char *err, size_t errlen);

/* Closes the file descriptor. NULL is a no-op. */
void tail_free(struct tail *t);

/* Reads from the checkpoint to the current end of the file, committing a spool transaction every
 * cfg->agent.batch_lines lines and at the end. The checkpoint is validated first (as tail_open
 * does; a resumed tail's head too). A tail opened empty whose first bytes are a compressor's
 * output fails with errno EMEDIUMTYPE. A record that read nothing whose file now has bytes first
 * looks for the copy of what the file held if it was written, copied and truncated meanwhile
 * (copytruncate, docs/tailing.md), and reads that first. Lines longer than max_line_length are
 * skipped to their newline and counted; NUL bytes are skipped and counted; a trailing CR is dropped
 * before matching. Returns the number of bytes consumed (>= 0), or -1 (a spool or read error:
 * nothing past the last commit is lost, the checkpoint still covers only committed events). */
int64_t tail_read(struct tail *t, char *err, size_t errlen);

/* tail_read as if the file ended at `limit` bytes (>= 0; -1: no limit) when it is longer: for
 * a tail opened empty, whose caller judged the file (a copy of another?) by the size it had
 * then, so that bytes written after that look (a copy filled a moment after it was created
 * empty) are not read unjudged; they are read at the next call. Same returns. */
int64_t tail_read_upto(struct tail *t, int64_t limit, char *err, size_t errlen);

/* A reload kept the tail's source (same name, no option changed: config_changes): from now on the
 * tail uses `ctx` (copied, as by tail_open; ctx->rules from its next tail_read on: a read never
 * mixes two rule sets) and finds its source at `source_index` of ctx->cfg. Its file, record and
 * checkpoint stay. The configuration it had must still be valid during the call. Returns 0, or
 * -1 if that source is not there or has another name (nothing changed). */
int tail_set_ctx(struct tail *t, const struct tail_ctx *ctx, size_t source_index, char *err,
                 size_t errlen);

/* The path it was opened with, and its record (identity, checkpoint, counters), owned by the
 * tail and valid until its next call. The record is allocated to fit its path, not a whole
 * struct spool_file: copy it with spool_file_copy, never by assignment. */
const char *tail_path(const struct tail *t);
const struct spool_file *tail_file(const struct tail *t);
size_t tail_source_index(const struct tail *t);

/* Device and inode of the open file. */
dev_t tail_dev(const struct tail *t);
ino_t tail_ino(const struct tail *t);

/* fstat(2) of the open file (st_nlink == 0: deleted); of a suspended tail, stat(2) of its path
 * if that still leads to its file. Returns 0 or -1 (errno set; ESTALE: the path leads to another
 * file). */
int tail_stat(const struct tail *t, struct stat *st);

/* Closes the file descriptor but keeps the tail (its record, checkpoint and path): an idle file
 * costs no descriptor (max_open_files). tail_read needs tail_resume first. NULL is a no-op. */
void tail_suspend(struct tail *t);

/* Whether the tail holds its file open (not suspended). */
int tail_is_open(const struct tail *t);

/* The descriptor the tail holds its file open by, or -1 (suspended, or t NULL): for a look at the
 * very file the tail reads, whatever its path leads to now. It stays the tail's: the caller reads
 * it with pread(2) and fstat(2) only, and never closes it. */
int tail_fd(const struct tail *t);

/* Opens a suspended tail again by its path. The next tail_read checks the whole identity (head
 * fingerprint and check bytes), since the file was not held meanwhile. Returns 0 (open again, or
 * it was open), 1 if the path no longer leads to the tail's device and inode (renamed, deleted or
 * replaced meanwhile: nothing opened), or -1 (for example EACCES or EMFILE, in `err`). */
int tail_resume(struct tail *t, char *err, size_t errlen);

/* The path of the open file as the kernel knows it now (readlink of /proc/self/fd/N, proc(5)):
 * where it is after renames no event reported, such as a move to a directory nobody watches.
 * Writes it to `out` (`outlen` bytes). Returns 0, or -1 (not open, deleted, or it does not fit).
 */
int tail_current_path(const struct tail *t, char *out, size_t outlen);

/* Records that the file was renamed to `path` (still the same open file). Returns 0 or -1. */
int tail_rename(struct tail *t, const char *path, char *err, size_t errlen);

/* Whether the file open as `fd` (its fstat in *st) is a copy of tail t's file as far as t read it
 * (copytruncate, docs/tailing.md): another file that holds at least t's whole fingerprinted head
 * (so a new file that only repeats a header line is not one), and then t's check bytes before
 * its checkpoint at the same place, or, shorter than the checkpoint (a copy still being written,
 * or made before the last lines were read), the bytes t's file has just before the copy's end,
 * while t's file still holds them. Or a file that holds exactly the first bytes t's file holds
 * now, if `candidate` (tail_copy_candidate) and t holds its file open, whatever t read, or t
 * was suspended before it read anything (then t's file is opened by its path for the look): a
 * copy made before the original grew on, or before t read what it holds. Its lines are t's
 * lines: t reads the rest from it when its own file is truncated (find_copy), under its own
 * record, or records it as read to its end. Returns 1, 0 (not a copy, or nothing tells: t read
 * nothing yet and the file is no candidate), or -1 on a read error. */
int tail_copy_of(struct tail *t, int fd, const struct stat *st, int candidate);

/* Whether the file open as `fd` (its fstat in *st) may be taken for a copy by the bytes it holds
 * alone (tail_copy_of's `candidate`): 1 KiB at least, or two lines. Computed once per file, not
 * per tail it is compared with. Returns 1 or 0. */
int tail_copy_candidate(int fd, const struct stat *st);

/* A tail opened empty whose file turned out to be another's copy: deletes the record it was seen
 * empty with (nothing was read under it), so that no start reads the copy under it. Best effort;
 * NULL or a tail with a record of its own: nothing. */
void tail_drop_empty(struct tail *t);

/* Whether the file open as `fd` still holds what record *f read: its fingerprinted head and its
 * check bytes before the checkpoint. Returns 1, 0, or -1 on a read error. */
int tail_record_holds(const struct spool_file *f, int fd);

/* The directory logrotate's `olddir` puts the rotated files (and copytruncate's copies) of
 * source *src's log at `log` in: src->olddir as is if absolute, else relative to the log's
 * directory, as logrotate(8) takes it. NULL if the source sets none, if it is the log's own
 * directory (`olddir = .`, or a path leading there: the same device and inode, by stat(2); that
 * directory is looked in anyway), or out of memory. Returns a malloc'd path (caller frees). */
char *tail_olddir(const struct config_source *src, const char *log);

/* Whether `suffix` (what follows a log's name in a file's name, NUL-terminated) is one logrotate
 * gives a rotated file or a copytruncate copy: digits with '.', '-' or '_' before them and between
 * them (".1", "-20250101", ".2025-01-01"), no letters (".gz", ".tail": compressed, or made by
 * hand). Returns 1 or 0. */
int tail_rotation_suffix(const char *suffix);

/* Whether the file name `name` is one logrotate's `extension` gives a rotation (or a
 * copytruncate copy) of the log named `base` (both file names, no directory, NUL-terminated):
 * the extension (the last '.' of base and what follows it) kept at the end and the suffix put
 * before it (app.log -> app.1.log, app-20250101.log; logrotate(8), extension). Only logrotate's
 * numbering (".N") or a date (8 digits at least) counts: a sibling log app-2.log is another log.
 * Returns 1 or 0. */
int tail_extension_rotation(const char *base, const char *name);

/* Sets the record's state (enum spool_file_state, docs/tailing.md). Returns 0 or -1. */
int tail_mark(struct tail *t, enum spool_file_state state, char *err, size_t errlen);

/* tail_mark(t, SPOOL_FILE_GONE). */
int tail_mark_gone(struct tail *t, char *err, size_t errlen);

#endif
