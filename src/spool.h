/* spool: the SQLite database (WAL) in the state directory where the two halves meet: the ingest
 * half commits events together with its files' checkpoints; the send half reads pending events
 * and marks them delivered or dead. Each thread opens its own struct spool. */
#ifndef LOGMETER_SPOOL_H
#define LOGMETER_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define SPOOL_UID_MAX 33	/* file uid: 32 hex digits and the NUL */
#define SPOOL_FP_MAX 1024	/* bytes of a file's head its fingerprint grows to */
#define SPOOL_HASH_LEN 32	/* SHA-256 digest, bytes */
#define SPOOL_SCHEMA_VERSION 1

/* Per-file counters, cumulative since the file was first seen. Every byte read is in exactly one
 * of: a line that made events (matched), a line no rule matched (unmatched), a line a rule
 * matched but could not use (invalid), a skipped over-long line (long_lines), skipped NUL bytes. */
struct spool_counters {
	int64_t lines;	    /* complete lines read */
	int64_t matched;    /* lines that made at least one event */
	int64_t unmatched;  /* lines no rule matched */
	int64_t invalid;    /* lines a rule matched whose value or timestamp was unusable */
	int64_t long_lines; /* lines longer than max_line_length, skipped */
	int64_t nul_bytes;  /* NUL bytes skipped */
	int64_t events;	    /* events committed (pending or dead) */
	int64_t resets;	    /* times the checkpoint was found stale and the file restarted */
};

/* A tailed file's record: its identity and its checkpoint. */
struct spool_file {
	int64_t id;		   /* row id, assigned by spool_file_add */
	char uid[SPOOL_UID_MAX];   /* random, assigned when first seen; part of every identifier */
	char source[128];	   /* source name */
	char path[4096];	   /* last path it was seen under */
	uint64_t dev, ino;	   /* st_dev, st_ino */
	int64_t fp_len;		   /* bytes of the head covered by fp_hash (<= SPOOL_FP_MAX) */
	unsigned char fp_hash[SPOOL_HASH_LEN];	/* SHA-256 of the first fp_len bytes */
	int64_t offset;				/* checkpoint: where the next unread line starts */
	int64_t check_len;			/* bytes before offset covered by check_hash */
	unsigned char check_hash[SPOOL_HASH_LEN]; /* SHA-256 of the check_len bytes before offset */
	int64_t size;				  /* file size at the last commit, bytes */
	char state[16];				  /* "reading", "drained", "gone" */
	struct spool_counters counters;
	int64_t first_seen, updated; /* seconds since the epoch */
};

struct spool_counts {
	int64_t pending, delivered, dead;
};

enum spool_open_mode { SPOOL_READ_WRITE = 0, SPOOL_READ_ONLY = 1 };

struct spool;

/* Opens (creating it and `state_dir` with mode 0750 if needed, unless read-only) the spool
 * `state_dir`/spool.db: journal_mode=WAL, synchronous=FULL, busy_timeout 10 s, foreign keys.
 * Refuses a database whose schema version is newer than SPOOL_SCHEMA_VERSION. Read-only mode
 * fails if the database does not exist. Returns the handle (caller frees), or NULL. */
struct spool *spool_open(const char *state_dir, enum spool_open_mode mode, char *err,
			 size_t errlen);

/* Closes the database. NULL is a no-op. */
void spool_free(struct spool *sp);

/* The instance id kept in the spool: written at creation from 16 random hex digits, or the
 * configured one. If `configured` is non-NULL and differs from a stored one, it replaces it (and
 * the previous value is logged). Writes it to `out` (`outlen` bytes). Returns 0 or -1. */
int spool_instance(struct spool *sp, const char *configured, char *out, size_t outlen, char *err,
		   size_t errlen);

/* Finds the record of the file (dev, ino) of `source`, the most recent one if several.
 * Returns 1 and fills *out, 0 if none, -1 on error. */
int spool_file_find(struct spool *sp, const char *source, uint64_t dev, uint64_t ino,
		    struct spool_file *out, char *err, size_t errlen);

/* Inserts a new file record from *f (its source, path, dev, ino, fingerprint, offset), assigning
 * f->id and a random f->uid. Returns 0 or -1. */
int spool_file_add(struct spool *sp, struct spool_file *f, char *err, size_t errlen);

/* Writes back the record *f (path, identity, checkpoint, counters, state) without events, e.g.
 * when a file is renamed or gone. Returns 0 or -1. */
int spool_file_update(struct spool *sp, const struct spool_file *f, char *err, size_t errlen);

/* In one transaction: inserts the `n` events (INSERT OR IGNORE on (file_id, line_offset, rule):
 * a line read again adds nothing) and writes back the file record *f with its new checkpoint and
 * counters. Either all of it is committed or none of it. Sets each event's id when inserted (0 if
 * it was already there). Returns 0, or -1 (nothing committed; for example SQLITE_FULL). */
int spool_commit(struct spool *sp, const struct spool_file *f, struct event *events, size_t n,
		 char *err, size_t errlen);

/* Reads up to `max` pending events with id > `after_id`, in id order, into `out`. Sets *n.
 * Returns 0 or -1. */
int spool_pending(struct spool *sp, int64_t after_id, struct event *out, size_t max, size_t *n,
		  char *err, size_t errlen);

/* One outcome of sending an event. */
struct spool_mark {
	int64_t id;
	enum event_state state; /* EVENT_DELIVERED, EVENT_DEAD, or EVENT_PENDING (a retry) */
	int64_t attempts;	/* the event's attempt count now */
	const char *error;	/* last error text, or NULL to leave it */
	int64_t when;		/* seconds since the epoch (delivered_at for EVENT_DELIVERED) */
};

/* Applies `n` marks in one transaction. Returns 0 or -1 (none applied). */
int spool_mark(struct spool *sp, const struct spool_mark *marks, size_t n, char *err,
	       size_t errlen);

/* Counts events by state. Returns 0 or -1. */
int spool_counts(struct spool *sp, struct spool_counts *out, char *err, size_t errlen);

/* The most recent last_error of any pending or dead event (by update order) into `out`, "" if
 * none. Returns 0 or -1. */
int spool_last_error(struct spool *sp, char *out, size_t outlen, char *err, size_t errlen);

/* Calls cb for every file record (ordered by source, then id). Stops and returns -1 if cb does.
 * Returns 0 or -1. */
int spool_files_foreach(struct spool *sp, int (*cb)(const struct spool_file *f, void *ud),
			void *ud, char *err, size_t errlen);

/* Calls cb for every event in `state` (ordered by id). Stops and returns -1 if cb does. */
int spool_events_foreach(struct spool *sp, enum event_state state,
			 int (*cb)(const struct event *ev, void *ud), void *ud, char *err,
			 size_t errlen);

/* Deletes delivered events delivered before `before` (seconds since the epoch). Sets *deleted
 * if non-NULL. Returns 0 or -1. */
int spool_prune_delivered(struct spool *sp, int64_t before, int64_t *deleted, char *err,
			  size_t errlen);

#endif
