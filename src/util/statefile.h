/* statefile: STATE_DIR/agent.state, where the running agent publishes its live state for
 * `logmeter status`. The file has one region per writer (the ingest half, the sender), each of
 * STATEFILE_REGION_BYTES bytes of "key value" text lines padded with blanks. A writer overwrites
 * its whole region in place with one pwrite(2): the blocks were written when the region was
 * first written, so a full file system does not stop it, and a reader never sees a region's
 * text cut by a shorter one. Each region starts with "written SECONDS" (the wall clock of its
 * write): its writer writes it at least every stale_after / 4, so that a reader can tell a
 * frozen agent from an idle one. */
#ifndef LOGMETER_STATEFILE_H
#define LOGMETER_STATEFILE_H

#include <stddef.h>
#include <stdint.h>

#define STATEFILE_NAME "agent.state"
#define STATEFILE_REGION_BYTES 4096

enum statefile_region {
	STATEFILE_INGEST = 0, /* space.c: reading or paused */
	STATEFILE_SENDER = 1, /* sender.c */
	STATEFILE_GUARD = 2,  /* guard.c: refusals and PCRE2 limit counts */
	STATEFILE_REGIONS = 3
};

struct statefile;

/* Opens (creating it, mode 0600 as everything in the state directory) STATE_DIR/agent.state to
 * write `region`, without following a symlink. Call it only while holding the state directory's
 * lock, so that a second agent refused at start never overwrites the first one's state. Returns the
 * handle (caller frees), or NULL with the reason in `err`. */
struct statefile *statefile_open(const char *state_dir, enum statefile_region region, char *err,
                                 size_t errlen);

/* Replaces the region's text with "written SECONDS\n" (the wall clock now) and `text` (cut at
 * STATEFILE_REGION_BYTES - 1 bytes in all), padded with blanks to the region's size. Returns 0,
 * or -1 with errno set. NULL `sf` is a no-op (0). */
int statefile_write(struct statefile *sf, const char *text);

/* Closes the file. NULL is a no-op. */
void statefile_free(struct statefile *sf);

/* Reads `region` of STATE_DIR/agent.state into `buf` (`buflen` bytes, at least
 * STATEFILE_REGION_BYTES + 1), NUL-terminated. Returns 1 if it was read, 0 if there is no file
 * or the region was never written, -1 on an error (`err`). */
int statefile_read(const char *state_dir, enum statefile_region region, char *buf, size_t buflen,
                   char *err, size_t errlen);

/* Calls cb(key, value, ud) for each "key value" line of `text` (modified in place: lines are
 * cut at their ends; '#' lines and lines without a space are skipped; the value's trailing
 * blanks are dropped). */
void statefile_parse(char *text, void (*cb)(const char *key, const char *value, void *ud),
                     void *ud);

/* How often a writer of a region writes it, at least, for `stale_after_ms`: a quarter of it, at
 * most 15 s (milliseconds). */
int64_t statefile_beat_ms(int64_t stale_after_ms);

/* 1 if process `pid` exists and is a logmeter (its /proc/PID/comm, since a pid left by a killed
 * agent may have been reused), else 0. */
int statefile_pid_alive(long pid);

#endif
