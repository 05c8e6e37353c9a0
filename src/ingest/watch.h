/* watch: the inotify loop of the ingest half. Watches the directories of every source's glob,
 * opens a tail for each matching file (for one source only: the one that read it, else the first
 * in configuration order whose glob matches it; another whose glob matches it too logs it once
 * and counts it, guard_shared), reads files when they change, follows renames and
 * deletions (a renamed or deleted file is read to its end before it is let go; a rotated one only
 * after rotate_wait without change), finds files rotated while the agent was stopped, and rescans
 * the globs periodically and after IN_Q_OVERFLOW (inotify(7)). Files in directories it could not
 * watch (ENOSPC: the watch limit) are checked with stat(2) every second. At most
 * agent.max_open_files tails hold a descriptor: the least recently read are suspended and
 * resumed by name when they change. Events find their directory and tails through hash tables,
 * in constant time on average however many files are watched. A reload keeps the tails of the
 * sources it did not change (watch_reconfigure). See docs/tailing.md. */
#ifndef LOGMETER_WATCH_H
#define LOGMETER_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/tail.h"

struct watch;

/* Creates the inotify instance (IN_NONBLOCK | IN_CLOEXEC) and the stop eventfd. `ctx` is copied;
 * what it points to is borrowed. Returns the watch (caller frees), or NULL. */
struct watch *watch_new(const struct tail_ctx *ctx, char *err, size_t errlen);

/* Closes every tail, watch and descriptor. NULL is a no-op. */
void watch_free(struct watch *w);

/* Expands every source's glob, adds directory watches, opens tails for new files, and reads every
 * open tail to its current end. Files that cannot be opened are logged and retried at the next
 * scan. Returns 0, or -1 on a spool error. */
int watch_scan(struct watch *w, char *err, size_t errlen);

/* The ingest loop: waits on inotify, the stop eventfd and the rescan timer (monotonic clock),
 * reads what changed, until watch_stop. A spool error (a full disk, say) is logged and retried at
 * the next change or rescan: nothing is checkpointed past what was committed. Returns 0 when
 * stopped, -1 only if poll(2) or inotify itself fails. */
int watch_run(struct watch *w, char *err, size_t errlen);

/* One turn of watch_run's loop: a rescan or a stat(2) poll if one is due; else waits at most
 * `max_wait_ms` milliseconds (negative: until the next timer) for inotify events or watch_stop,
 * then handles the events read (one read(2) of at most 64 KiB) and reads the files they
 * concern. Returns 0, 1 once watch_stop was called, or -1 if poll(2) or inotify failed (`err`).
 * With max_wait_ms = 0 it never blocks: tests drive the loop with it, without a thread. */
int watch_turn(struct watch *w, int64_t max_wait_ms, char *err, size_t errlen);

/* Makes watch_run return after finishing (committing) the batch it is in. Async-signal-safe and
 * thread-safe (writes to an eventfd). */
void watch_stop(struct watch *w);

/* Number of tails (open or suspended). */
size_t watch_tail_count(const struct watch *w);

/* Takes a reloaded configuration: `ctx` replaces the one given to watch_new (copied; what it
 * points to is borrowed). `same` has one entry per source of ctx->cfg: the index in the current
 * configuration of the source with the same name none of whose options changed
 * (config_changes), or -1 (a new or changed source); NULL: every source is new. The tails of
 * unchanged sources keep their descriptors, records and checkpoints and apply ctx->rules from their
 * next read on (a read is never split between two rule sets: call this only while watch_run and
 * watch_scan are not running, after watch_stop made watch_run return). The tails of other sources
 * are closed without changing their records, as at a stop; new and changed sources get a first
 * scan at the next watch_scan, as at start (read_from applies, rotated files are recovered). A
 * lower max_open_files suspends idle tails at once; other [agent] settings are read when used.
 * The current configuration must still be valid during the call; afterwards it is no longer
 * used. Clears watch_stop's mark, so that watch_run may run again. Returns 0, or -1 (out of
 * memory, or `same` names a source that is not there: nothing changed). */
int watch_reconfigure(struct watch *w, const struct tail_ctx *ctx, const long *same, char *err,
                      size_t errlen);

/* Checks every hash table and list against the tails and directories (each found by each of its
 * keys, counts equal, open tails listed): O(files). For tests. Returns 0, or -1 with the first
 * inconsistency in `err`. */
int watch_check(const struct watch *w, char *err, size_t errlen);

#endif
