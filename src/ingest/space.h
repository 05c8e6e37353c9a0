/* space: the room the spool may still grow into, and the pause of the ingest half when there is
 * none. Before each commit, the ingest half asks space_admit; a full disk (min_free_bytes not
 * available, or a commit that failed with SQLITE_FULL) or a spool at max_spool_bytes pauses
 * reading: no line is read, so no checkpoint moves, while the sender goes on. Delivered events
 * are pruned early, oldest first, to make room; pending and dead events never are; and, as
 * the one pruner of the spool, this module applies delivered_retention too. While
 * paused, space_poll looks again every second (monotonic clock) and resumes reading once there
 * is room for more than one batch. The state is published in the ingest region of
 * STATE_DIR/agent.state (statefile.h), for `logmeter status`.
 * Used by the ingest thread only. See "Faults outside the process" in docs/architecture.md. */
#ifndef LOGMETER_SPACE_H
#define LOGMETER_SPACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "store/spool.h"

enum space_state {
	SPACE_READING = 0,   /* reading, or able to */
	SPACE_DISK_FULL = 1, /* paused: the spool's file system has no room left */
	SPACE_LIMIT = 2,     /* paused: pending and dead events fill max_spool_bytes */
	SPACE_STOPPED = 3    /* the agent stopped (only in the state file) */
};

struct space;

/* Keeps watch over the spool handle `sp` (borrowed; the ingest half's own) for the limits of
 * cfg->agent (borrowed). Returns the space (caller frees), or NULL. */
struct space *space_new(const struct config *cfg, struct spool *sp, char *err, size_t errlen);

/* From now on keeps the ingest region of STATE_DIR/agent.state up to date: creates it, or takes
 * it over, and writes the current state. Call it once this process owns the state directory (holds
 * its lock), so that a second agent refused at start never overwrites the first one's state. A
 * failure is logged, not fatal: only `status` needs the file. */
void space_publish(struct space *s);

/* Writes "stopped" to the state file (if published) and frees. NULL is a no-op. */
void space_free(struct space *s);

/* Called before each spool commit of the ingest half. Returns 0 if the commit may go ahead
 * (after pruning delivered events early if that made the room), or -1 if reading is paused
 * (`err` says why; the pause itself is logged once, here or where it began). A failure to
 * measure is logged once and admits the commit: a full disk still shows as a failed commit. */
int space_admit(struct space *s, char *err, size_t errlen);

/* Called after a spool commit of the ingest half failed, with its error text: pauses reading if
 * the disk is full (spool_failed_full on the handle), else does nothing. */
void space_commit_failed(struct space *s, const char *why);

/* 1 if reading is paused, else 0 (also for NULL). */
int space_paused(const struct space *s);

/* Prunes the delivered events older than delivered_retention (spool_prune), if that is due: at
 * the first call, then every 10 minutes (monotonic clock). Logs what it pruned, or why it could
 * not. The spool's only pruner with the early pruning of space_admit and space_poll: no other
 * module or thread deletes events. */
void space_expire(struct space *s);

/* Called at each turn of the ingest loop: applies delivered_retention when due (space_expire)
 * and, while paused, at most once a second: checkpoints the WAL (after a full disk), prunes
 * delivered events early, and measures again. Returns 1 if reading just resumed (the caller
 * reads every file again), else 0. Sets *wait_ms to the milliseconds until it wants to be
 * called again (at most a second while paused, at most the heartbeat while published, at most
 * 10 minutes while reading), or to -1 for a NULL space. */
int space_poll(struct space *s, int64_t *wait_ms);

/* Writes the state again if its heartbeat is due (statefile_beat_ms of stale_after), so that
 * `status` can tell a frozen agent from an idle one. space_poll and space_admit call it. NULL,
 * or not published: a no-op. */
void space_beat(struct space *s);

/* What the ingest region of STATE_DIR/agent.state says, for `logmeter status`. */
struct space_status {
	int found;   /* the file exists and could be read */
	int running; /* its process is alive (statefile_pid_alive) */
	long pid;
	int64_t
	    written; /* seconds since the epoch it was last written; 0: not said (older agent) */
	enum space_state state;
	int64_t since;    /* seconds since the epoch the state began */
	char detail[512]; /* why it is paused, "" when reading */
};

/* Reads the state file of `state_dir` into *out (found = 0 if there is none). Returns 0, or -1
 * if it exists but cannot be read. */
int space_status_read(const char *state_dir, struct space_status *out, char *err, size_t errlen);

/* Writes `v` bytes as the size options and the log say them: "12.3 MiB", "512 KiB", "100 B"
 * (binary units) into `buf` (`len` bytes, 32 is enough). */
void space_fmt_bytes(int64_t v, char *buf, size_t len);

/* "reading", "disk-full", "spool-limit", "stopped": the words of the state file. */
const char *space_state_name(enum space_state st);

#endif
