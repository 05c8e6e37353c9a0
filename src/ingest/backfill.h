/* backfill: bills archived log files, plain or gzip-compressed (zlib), through the same rules,
 * tails and spool as the agent. An archive's content (decompressed into an unlinked temporary
 * file first) is recognised as the file it was by the fingerprint of its head and the bytes
 * before a record's checkpoint (tail_identify): then it continues that record from its
 * checkpoint, so lines read live before the file was rotated and compressed are not read again
 * and later ones get the identifiers they would have had; otherwise it is a new record. Each
 * batch is committed with the record's checkpoint, as tail_read does. docs/backfill.md. */
#ifndef LOGMETER_BACKFILL_H
#define LOGMETER_BACKFILL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "ingest/tail.h"

/* What one archive holds, or would make with dry_run. */
struct backfill_result {
	char compression[8];     /* "gzip", or "" for a plain file */
	int continued;           /* it is the file of an existing record */
	char uid[SPOOL_UID_MAX]; /* the record's identity ("" for an empty new file in dry_run) */
	char record_path[4096];  /* the path the record was read as (continued) */
	int64_t checkpoint;      /* where the record stood before (bytes; 0 for a new one) */
	int64_t size;            /* bytes of content (decompressed) */
	int64_t lines;           /* complete lines of the content */
	int64_t events;          /* events its lines make, all of them (dry_run) */
	int64_t events_before;   /* of which from lines before the checkpoint: already read */
	int64_t in_spool;        /* events of the record in the spool before (any state) */
	int64_t too_old;         /* of the events after the checkpoint, stamped more than 35 days
	                            ago: Stripe refuses them, they become dead letters (dry_run) */
	int64_t added;           /* events committed (not dry_run) */
};

/* Opens the content of `path`, an archive of source `src`, through guard_open (`g` may be NULL:
 * guard.h), so that a symlink the source does not follow, or the key or another file of
 * logmeter's own, is refused (EPERM) as the agent refuses it: the file itself if it is plain
 * text, or, if it starts with
 * gzip's magic number (RFC 1952), its decompressed bytes in an unlinked temporary file of
 * $TMPDIR (or /tmp), written through zlib's gzread (concatenated members included). Other
 * compressors (xz, zstd, bzip2) are refused: decompress them first. Sets *ast to stat(2) of the
 * archive, writes the compression's name to `compression` (8 bytes; "" if none). Returns the
 * descriptor (caller closes), or -1 (`err`: a bad or truncated archive reads as an error, and
 * nothing of it is used). */
int backfill_content(struct guard *g, const struct config_source *src, const char *path,
                     struct stat *ast, char compression[8], char *err, size_t errlen);

/* Bills the archive `path` for source `source_index` under ctx (ctx->spool read-write; its
 * space, if any, admits each commit): identifies it, reads it from the record's checkpoint (or
 * from 0 as a new record) to its end, committing batches, and leaves the record in its state
 * before (a new one "drained": read to its end; a glob that matches the file later resumes
 * it). A record being tailed by a running agent (`agent_running` and state "reading") is
 * refused: the agent reads it. With `dry_run` nothing is written: the rules are applied to
 * every line to count the events. Fills *out. Returns 0, or -1 (`err`; batches committed
 * before the error stay, with their checkpoint: running it again goes on from there). */
int backfill_file(const struct tail_ctx *ctx, size_t source_index, const char *path,
                  int agent_running, int dry_run, struct backfill_result *out, char *err,
                  size_t errlen);

#endif
