/* backfill: bills archived log files, plain or gzip-compressed (zlib), through the same rules,
 * tails and spool as the agent. An archive's content (decompressed into an unlinked temporary
 * file first) is recognised by tail_identify as the file of a record, by the fingerprint of its
 * head and the bytes before the record's checkpoint: content that ends at or before the
 * checkpoint was read already (a copy taken earlier, a copytruncate copy the agent read past);
 * content that goes on past it continues the record from its checkpoint, so lines read live are
 * not read again and later ones get the identifiers they would have had; anything else is a new
 * record. A gzip archive made of several members is cut where a member starts a file read before
 * (a month of concatenated daily archives), each part billed as its own file. Content that starts
 * like a file read before but differs from it, or that another source read, is refused: content
 * cannot tell which of its lines were billed. Each batch is committed with the record's
 * checkpoint, as tail_read does. docs/backfill.md. */
#ifndef LOGMETER_BACKFILL_H
#define LOGMETER_BACKFILL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "ingest/tail.h"

/* One part of an archive's content, billed as one file: all of it, or, in a concatenation of
 * gzip members, the members from one that starts a file read before up to the next such. */
struct backfill_part {
	int64_t start, end;       /* bytes of the content (decompressed) */
	enum tail_match match;    /* what it is to `record`; TAIL_MATCH_NONE: a file never read */
	struct spool_file record; /* the record it lies within or continues (match != NONE) */
	char uid[SPOOL_UID_MAX];  /* the identity its new lines get; "" if none (nothing new) */
	int64_t checkpoint;       /* where that record stood (bytes of the part); 0 for a new one */
	int64_t in_spool;         /* events of that record in the spool before */
	int64_t lines;            /* lines read (dry run: every line of the part) */
	int64_t events;           /* dry run: the events its lines make, all of them */
	int64_t events_before;    /* dry run: of which from lines before the checkpoint */
	int64_t too_old;          /* dry run: new events stamped more than 35 days ago */
	int64_t stamped_now;      /* dry run: new events of rules without `timestamp =` */
	int64_t added;            /* events committed (not dry run) */
	int64_t unread;           /* bytes at its end not read: a plain file's last line without
	                             its '\n' (it may still be written) */
};

/* What one archive held, and what was done with it. */
struct backfill_result {
	char compression[8];         /* "gzip", or "" for a plain file */
	int64_t size;                /* bytes of content (decompressed) */
	struct backfill_part *parts; /* n_parts of them, in content order (backfill_result_free) */
	size_t n_parts;
	int refused; /* nothing of it was billed, for the reason backfill_file gave */
};

/* Frees the parts. NULL is a no-op. */
void backfill_result_free(struct backfill_result *r);

/* How a backfill runs. */
struct backfill_opts {
	int agent_running; /* an agent runs on the spool: the records it reads are its own */
	int dry_run;       /* write nothing: count what a run would do (ctx->spool may be NULL:
	                      no spool yet, every file is new) */
};

/* Decompresses the gzip file open as `in` (named `path` in messages; read from its start) into
 * an unlinked temporary file of $TMPDIR, or /tmp, as backfill decompresses an archive (RFC 1952:
 * every member; NUL padding after the last one). With `limit` >= 0 it stops once at least that
 * many bytes of content are out, the rest of the file neither read nor checked (a head to compare
 * first). Returns the temporary file's descriptor (caller closes), its size in bytes in *size, or
 * -1 (`err`; a damaged, truncated or padded-with-garbage file: "not a sound gzip file"). */
int backfill_gunzip(const char *path, int in, int64_t limit, int64_t *size, char *err,
                    size_t errlen);

struct backfill;

/* A backfill of one or more archives under `ctx` (borrowed: ctx->spool read-write unless dry
 * run, its space, if any, admitting each commit; ctx->stop, if set, interrupts it between two
 * batches). A dry run remembers what each archive would have made, so that the next one in the
 * same command is counted as the real run would count it. Returns it (caller frees), or NULL. */
struct backfill *backfill_new(const struct tail_ctx *ctx, const struct backfill_opts *opts,
                              char *err, size_t errlen);

/* Frees. NULL is a no-op. */
void backfill_free(struct backfill *b);

/* Bills the archive `path` for source `source_index`: reads its content (a gzip file is
 * decompressed into an unlinked temporary file of $TMPDIR, or /tmp, through zlib, every member;
 * xz, zstd and bzip2 are refused: decompress them first), cuts it into parts and identifies each
 * (tail_identify), then, if nothing is refused, reads each part that has lines not read yet from
 * its record's checkpoint (or from 0 as a new record, state "drained", under the archive's
 * absolute path, device and inode) to its end, committing batches. A gzip archive's last line
 * without its '\n' is read (an archive does not grow). A record left "reading" by a reader that
 * is gone (its file no longer at its path, or compressed) is taken over and left "drained".
 *
 * Refused, with nothing of the archive billed: a part that starts like a file read before but
 * differs from it before its checkpoint (TAIL_MATCH_HEAD), a part that another source read, the
 * file a running agent reads (opts->agent_running, the record "reading" and its file at its
 * path), and a part that goes on past the checkpoint of a file that is still there (not the
 * archive itself): its tail reads on from the file. Fills *out (backfill_result_free, also after a
 * failure). Returns 0, or -1 (`err`; out->refused says it was refused; errno EINTR: interrupted,
 * the batches committed before it stay, with their checkpoint, so that running it again goes on
 * from there). */
int backfill_file(struct backfill *b, size_t source_index, const char *path,
                  struct backfill_result *out, char *err, size_t errlen);

#endif
