/* spool: the SQLite database (WAL) in the state directory where the two halves meet: the ingest
 * half commits events together with its files' checkpoints; the send half reads pending events
 * and marks them delivered or dead. Each thread opens its own struct spool. The functions are
 * implemented in one file per user (store/spool_int.h): spool.c (the handle), schema.c and
 * migrate.c, batch.c (how a commit's events are stored), commit.c (ingest), events.c (reading
 * events back), queue.c (sender), query.c (status, export), replay.c, room.c (space). */
#ifndef LOGMETER_SPOOL_H
#define LOGMETER_SPOOL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/event.h"

#define SPOOL_UID_MAX 33  /* file uid: 32 hex digits and the NUL */
#define SPOOL_FP_MAX 1024 /* bytes of a file's head its fingerprint grows to */
#define SPOOL_HASH_LEN 32 /* SHA-256 digest, bytes */
/* PRAGMA user_version of the spool this logmeter writes. 1: the first release; 2: events gained
 * key_generation and first_unknown, and the unsure state; 3: events gained queue_seq, their
 * position in the sender's queue, so that a replay moves an event without changing its id; 4:
 * the aggregation windows (tables windows and window_lines); 5: the events of a commit are one
 * row (a batch), identifiers are computed when events are read, delivery is a watermark, and
 * only events with a history of their own (a retry, a dead letter, a replay) have a row of
 * outcomes (docs/spool.md, "How events are stored").
 * Older spools are migrated by spool_open (read-write); newer ones are refused. */
#define SPOOL_SCHEMA_VERSION 5

/* Per-file counters, cumulative since the file was first seen. Every byte read is in exactly one
 * of: a line that made events (matched), a line no rule matched (unmatched), a line a rule
 * matched but could not use (invalid), a line a (*UTF) rule could not match because it is not
 * UTF-8 (bad_utf8), a skipped over-long line (long_lines), a line torn by NULs (torn_lines),
 * skipped NUL bytes. */
struct spool_counters {
	int64_t lines;      /* complete lines read */
	int64_t matched;    /* lines that made at least one event */
	int64_t unmatched;  /* lines no rule matched */
	int64_t invalid;    /* lines a rule matched whose value or timestamp was unusable */
	int64_t long_lines; /* lines longer than max_line_length, skipped */
	int64_t nul_bytes;  /* NUL bytes skipped */
	int64_t events;     /* events committed (pending or dead) */
	int64_t resets;     /* times the checkpoint was found stale and the file restarted */
	int64_t bad_utf8;   /* lines no rule made an event of because a (*UTF) rule found them
	                       not valid UTF-8; kept in file_extra (store/extra.c) */
	int64_t torn_lines; /* text followed by NULs, its end missing, not given to the rules
	                       (core/lines.h; not in `lines`); kept in file_torn (store/extra.c) */
};

/* Where a file record stands (docs/tailing.md). The database holds its text
 * (spool_file_state_name), as every spool has since the first release. */
enum spool_file_state {
	/* tailed, may grow (a zeroed record is reading) */
	SPOOL_FILE_READING = 0,
	/* rotated away or read from its copy, read to its end and released; the file still
	 * exists and is resumed if its glob matches it again */
	SPOOL_FILE_DRAINED = 1,
	/* deleted: a file found later with its inode is another file */
	SPOOL_FILE_GONE = 2
};

/* "reading", "drained" or "gone": the text of a state, as the database holds it and as status
 * and the log show it; "?" for a value that is not a state. Static storage. */
const char *spool_file_state_name(enum spool_file_state st);

/* A tailed file's record: its identity and its checkpoint. `path` comes last so that a record
 * kept for a long time (each tail holds one) can be allocated to fit its path
 * (spool_file_fit_size) instead of 4 KiB; such a record is copied only with spool_file_copy. */
struct spool_file {
	int64_t id;              /* row id, assigned by spool_file_add */
	char uid[SPOOL_UID_MAX]; /* random, assigned when first seen; part of every identifier */
	char source[128];        /* source name */
	uint64_t dev, ino;       /* st_dev, st_ino */
	int64_t fp_len;          /* bytes of the head covered by fp_hash (<= SPOOL_FP_MAX) */
	unsigned char fp_hash[SPOOL_HASH_LEN]; /* SHA-256 of the first fp_len bytes */
	int64_t offset;                        /* checkpoint: where the next unread line starts */
	int64_t check_len;                     /* bytes before offset covered by check_hash */
	unsigned char check_hash[SPOOL_HASH_LEN]; /* SHA-256 of the check_len bytes before offset */
	int64_t size;                             /* file size at the last commit, bytes */
	enum spool_file_state state;
	struct spool_counters counters;
	int64_t first_seen, updated; /* seconds since the epoch */
	char path[4096];             /* last path it was seen under; last (see above) */
};

/* Bytes of a struct spool_file whose path is `path` (a NUL-terminated string shorter than the
 * path field): the fields before the path and the path with its NUL. */
size_t spool_file_fit_size(const char *path);

/* Copies `src` (its fields and its path, up to the NUL) to `dst`, which must hold
 * spool_file_fit_size(src->path) bytes; either may be a record allocated to fit its path. */
void spool_file_copy(struct spool_file *dst, const struct spool_file *src);

struct spool_counts {
	int64_t pending, delivered, dead, unsure;
};

enum spool_open_mode { SPOOL_READ_WRITE = 0, SPOOL_READ_ONLY = 1 };

struct spool;

/* Opens (creating it and `state_dir` with mode 0750 if needed, unless read-only) the spool
 * `state_dir`/spool.db: journal_mode=WAL, synchronous=FULL, busy_timeout 10 s, foreign keys.
 * Refuses a database whose schema version is newer than SPOOL_SCHEMA_VERSION. Read-only mode
 * fails if the database does not exist. Refuses a spool.db that is missing or empty while the
 * state directory's marker (SPOOL_MARKER_NAME) says it had a spool, and, read-write, one whose
 * id is not the marker's; read-write, gives the spool an id and the directory its marker if they
 * have none (store/marker.c, docs/spool.md). Returns the handle (caller frees), or NULL. */
struct spool *spool_open(const char *state_dir, enum spool_open_mode mode, char *err,
                         size_t errlen);

/* Closes the database. NULL is a no-op. */
void spool_free(struct spool *sp);

/* The instance id kept in the spool: written at creation from 16 random hex digits, or the
 * configured one. If `configured` is non-NULL and differs from a stored one, it replaces it (and
 * the previous value is logged). Writes it to `out` (`outlen` bytes). Returns 0 or -1. */
int spool_instance(struct spool *sp, const char *configured, char *out, size_t outlen, char *err,
                   size_t errlen);

/* Finds the record of the file (dev, ino) of `source`, the most recent one if several, with its
 * bad_utf8 and torn_lines counters from file_extra and file_torn. Returns 1 and fills *out, 0 if
 * none, -1 on error. */
int spool_file_find(struct spool *sp, const char *source, uint64_t dev, uint64_t ino,
                    struct spool_file *out, char *err, size_t errlen);

/* The record of the file (dev, ino) of a source other than `source` (configured or not any
 * more) that read the most of it (largest checkpoint, then the newest), any state: the file read
 * under a source since removed, renamed, or whose record was marked gone while the file lived
 * on (docs/tailing.md, "One file, one source"). Only a candidate: the caller confirms it by
 * content (fingerprint and check bytes). Scans the files table. Returns 1 and fills *out, 0 if
 * none, -1 on error. */
int spool_file_find_other(struct spool *sp, const char *source, uint64_t dev, uint64_t ino,
                          struct spool_file *out, char *err, size_t errlen);

/* Inserts a new file record from *f (its source, path, dev, ino, fingerprint, offset), assigning
 * f->id and a random f->uid. The id is one past every id given before, in this spool, deleted
 * records' too (kept in meta, SPOOL_FILE_ID_KEY), so an id held for a deleted record never names
 * another file's. Runs in the caller's transaction, or in one of its own. Returns 0 or -1
 * (nothing added). */
int spool_file_add(struct spool *sp, struct spool_file *f, char *err, size_t errlen);

/* Writes back the record *f (path, identity, checkpoint, counters, state) without events, e.g.
 * when a file is renamed or gone. Returns 0 or -1. */
int spool_file_update(struct spool *sp, const struct spool_file *f, char *err, size_t errlen);

/* In one transaction: writes back the record *f (as spool_file_update) and inserts the new
 * record *nf (as spool_file_add, which assigns nf->id and nf->uid): a record that moves to
 * another file and the record that takes its place at the first file, so that no crash leaves
 * one without the other. Not inside a caller's transaction. Returns 0 or -1 (neither done). */
int spool_file_update_add(struct spool *sp, const struct spool_file *f, struct spool_file *nf,
                          char *err, size_t errlen);

/* Finds the newest record of `source` last seen under `path` (any device and inode, any state):
 * the file a name led to before it was replaced (an edit written to a new file and renamed over
 * it). Returns 1 and fills *out, 0 if none, -1 on error. */
int spool_file_find_path(struct spool *sp, const char *source, const char *path,
                         struct spool_file *out, char *err, size_t errlen);

/* The newest record of `source` last seen under `path` (else, renamed while logmeter was stopped,
 * in the directory of `path`) with inode `ino` but another device than `dev`, not gone: the file a
 * file system mounted again under another device number shows (a reboot that numbers disks in
 * another order, LVM, a loop device, a container's bind mount; st_dev is the kernel's number for
 * the mount, not the disk's, stat(2)). Only a candidate: the caller confirms it by content
 * (fingerprint and check bytes, docs/tailing.md). Returns 1 and fills *out, 0 if none (*out then
 * undefined), -1 on error. */
int spool_file_find_remounted(struct spool *sp, const char *source, const char *path, uint64_t dev,
                              uint64_t ino, struct spool_file *out, char *err, size_t errlen);

/* Deletes the record `id` if it is still the record of the file (dev, ino) and nothing was ever
 * read under it (checkpoint 0, no fingerprint, no events): the record of a file seen only empty,
 * whose inode turned out to be another record's file (a copytruncate copy created empty) or a
 * compressor's output. A record that read anything is kept (its uid is in identifiers), and so is
 * another file's record that got the id since (SQLite reuses the largest rowid once its row is
 * deleted, https://www.sqlite.org/autoinc.html). Returns 1 (deleted), 0 (kept, or no such
 * record), or -1. */
int spool_file_forget(struct spool *sp, int64_t id, uint64_t dev, uint64_t ino, char *err,
                      size_t errlen);

/* How many records spool_file_forget deleted through this handle since it was opened: a tail
 * whose record read nothing need not look whether it is still there (it may be another file's
 * now) while this count is the one it last looked at. */
int64_t spool_file_forgotten(const struct spool *sp);

/* One event as the ingest half makes it of a line, for spool_batch_add. */
struct spool_new_event {
	int64_t line_offset;            /* where its line starts in the file, bytes */
	const struct config_rule *rule; /* its name, event_name and payload keys (borrowed) */
	const char *customer_key;       /* what the rule captured (NUL-terminated) */
	const char *customer;           /* the Stripe customer id; "" if unmapped */
	const char *value;              /* a decimal number as text */
	int64_t timestamp;              /* seconds since the epoch */
	const char *dead;   /* NULL: pending; else a dead letter from the start, with this reason
	                       (an unmapped customer) */
	int not_aggregated; /* an event of its own even if its rule aggregates (its window would
	                       not take it); the events of an aggregating rule otherwise go into
	                       their windows at commit (spool_commit) */
};

/* The events of one commit, gathered line by line before spool_commit. What a rule's events
 * share (its name, event_name and payload keys, the instance) is stored once per rule, and an
 * event keeps only its line offset, rule, customer key and customer, value and timestamp, a few
 * dozen bytes; the identifier is not stored but computed when the event is read
 * (docs/spool.md). Appending allocates only when the buffer grows. */
struct spool_batch;

/* A batch for the events of instance `instance` (copied; part of every identifier). Returns it
 * (caller frees), or NULL if out of memory. */
struct spool_batch *spool_batch_new(const char *instance, char *err, size_t errlen);

/* Frees it. NULL is a no-op. */
void spool_batch_free(struct spool_batch *b);

/* Appends *ev. Events come in file order: an offset before the last one's is refused. Returns 0;
 * 1 if a field does not fit an event (EVENT_*_MAX of core/event.h: nothing appended, the line is
 * then invalid); -1 if out of memory or out of order (`err`). */
int spool_batch_add(struct spool_batch *b, const struct spool_new_event *ev, char *err,
                    size_t errlen);

/* Events appended since the batch was made or last committed. */
size_t spool_batch_count(const struct spool_batch *b);

/* Bytes of stored events the batch holds: a commit of more than SPOOL_BATCH_BYTES_MAX is not
 * made faster by growing, only bigger in memory. */
size_t spool_batch_bytes(const struct spool_batch *b);
#define SPOOL_BATCH_BYTES_MAX (1024 * 1024)

/* In one transaction: stores the events of `b` (nothing of a line read again: an event whose
 * line starts before the end of what the file's last batch covered is already spooled), adds
 * the lines of aggregating rules to their windows (store/window.c; one a window does not take,
 * say a timestamp outside Stripe's, is stored as an event of its own), and writes back the file
 * record *f with its new checkpoint and counters. Either all of it is
 * committed or none of it. The events get ids, and queue positions after every position given
 * before, by a commit or a replay (see spool_pending). `b` is emptied either way (NULL: no
 * events). Sets *added (if non-NULL) to the events stored. Returns 0, or -1 (nothing committed;
 * for example SQLITE_FULL). */
int spool_commit(struct spool *sp, const struct spool_file *f, struct spool_batch *b,
                 int64_t *added, char *err, size_t errlen);

/* Reads up to `max` pending events whose queue position (queue_seq) is after `after_seq`, in
 * queue order, into `out`. Sets *n. What it returns is on disk: with durability = normal (a
 * commit is synced only later) it syncs the WAL first, so that a power cut never undoes an event
 * the sender has sent (docs/durability.md). Every event made pending later, by a commit or a
 * replay, gets a position after every position given before, so a reader that keeps the last
 * position it read as its cursor finds it. An event's id never changes; its queue position is its
 * id plus the positions replays have handed out when it was inserted, and a replay moves it past
 * every other (docs/spool.md). Returns 0 or -1. */
int spool_pending(struct spool *sp, int64_t after_seq, struct event *out, size_t max, size_t *n,
                  char *err, size_t errlen);

/* spool_pending writing event i into *out[i] (`max` pointers to events the caller owns, each
 * written only if it is one of the *n gathered): the sender reads its whole load, up to a full
 * queue, straight into its queue's items, in one read transaction and one sync of the WAL,
 * where a buffer of struct events (1.7 KB each) would cost a copy per event or a load per few
 * hundred. Returns 0 or -1. */
int spool_pending_to(struct spool *sp, int64_t after_seq, struct event *const *out, size_t max,
                     size_t *n, char *err, size_t errlen);

/* spool_pending for the events of one (customer, event_name) pair only: the sender's way to
 * keep one busy pair from filling its whole queue. Same order, same cursor. Returns 0 or -1. */
int spool_pending_pair(struct spool *sp, const char *customer, const char *event_name,
                       int64_t after_seq, struct event *out, size_t max, size_t *n, char *err,
                       size_t errlen);

/* One outcome of sending an event. */
struct spool_mark {
	int64_t id;
	enum event_state state; /* EVENT_DELIVERED, EVENT_DEAD, EVENT_UNSURE, or EVENT_PENDING (a
	                           retry) */
	int64_t attempts;       /* the event's attempt count now */
	int64_t key_generation; /* the Idempotency-Key generation of its next attempt */
	int64_t first_unknown;  /* seconds since the epoch of its first attempt with an unknown
	                           outcome; 0 if none */
	const char *error;      /* last error text, or NULL to leave it */
	int64_t when;           /* seconds since the epoch (delivered_at for EVENT_DELIVERED) */
};

/* Applies `n` marks in one transaction. A first attempt delivered (attempts 1, key generation 0,
 * no unknown outcome) of an event with no history writes nothing of its own once the events
 * before it are decided: the watermark of delivered events passes it. Anything else keeps a row
 * of outcomes. An id that no longer exists has nothing to mark. Returns 0 or -1 (none applied). */
int spool_mark(struct spool *sp, const struct spool_mark *marks, size_t n, char *err,
               size_t errlen);

/* The latest time the sender has seen (seconds since the epoch): this host's clock or Stripe's
 * (an answer's Date, a meter event session's created time), as spool_clock_note kept it; 0 if
 * none was kept. A host clock behind it was set back: the 24-hour limit of unknown outcomes
 * (docs/stripe-contract.md section 13) is judged by it, not by that clock. Returns 0 or -1. */
int spool_clock_seen(struct spool *sp, int64_t *seen, char *err, size_t errlen);

/* Keeps `seen` (seconds since the epoch) as the latest time seen if it is later than the one kept,
 * in a transaction of its own (meta key "clock_seen", docs/architecture.md "Spool schema").
 * Returns 0 or -1 (nothing written). */
int spool_clock_note(struct spool *sp, int64_t seen, char *err, size_t errlen);

/* Keeps `seen` (seconds since the epoch) as the latest time seen even if it is earlier than the
 * one kept, in a transaction of its own: only for a kept time that two independent clocks (this
 * host's and Stripe's Date of two agreeing answers) found wrong ahead (docs/stripe-contract.md,
 * 13); everything else keeps later times only (spool_clock_note). Returns 0 or -1 (nothing
 * written). */
int spool_clock_correct(struct spool *sp, int64_t seen, char *err, size_t errlen);

/* ---- aggregation windows (store/window.c, docs/architecture.md "Aggregation windows") ---- */

/* An aggregation window as status and export show it. */
struct spool_window {
	int64_t id;
	char rule[EVENT_RULE_MAX];
	char customer[EVENT_CUSTOMER_MAX];
	char event_name[EVENT_NAME_MAX];
	int64_t start, length; /* seconds since the epoch, seconds */
	int64_t close_after;   /* seconds since the epoch: closed once this has passed */
	char total[EVENT_VALUE_MAX];
	int64_t lines, late; /* lines in it; of which arrived after their own window closed */
	int closed;          /* its meter event is made (event_id) */
	int64_t event_id;    /* 0 while open */
};

/* One line of a window, as spool export shows it. */
struct spool_window_line {
	int64_t file_id, line_offset, timestamp;
	char value[EVENT_VALUE_MAX];
	int late;
};

/* Closes every open window whose close_after is at most `now` (seconds since the epoch), at
 * most 500 per call, in one transaction: each becomes one pending meter event in the events
 * table (identifier event_window_identifier with the spool's instance, timestamp its start,
 * value its total; a dead letter if the total has more than 15 significant digits, which Stripe
 * refuses), after every queue position given before. Sets *closed to how many. Returns 0 or
 * -1 (none closed). */
int spool_windows_close(struct spool *sp, int64_t now, int64_t *closed, char *err, size_t errlen);

/* The earliest close_after of the open windows into *when (seconds since the epoch), 0 if no
 * window is open. Returns 0 or -1. */
int spool_windows_next_close(struct spool *sp, int64_t *when, char *err, size_t errlen);

/* How much waits in open windows, for `run --once` to say what it leaves unsent: *windows open
 * windows holding *lines lines in all, the last of them closing at *last_close (seconds since
 * the epoch; 0 if none is open). Returns 0 or -1. */
int spool_windows_open_count(struct spool *sp, int64_t *windows, int64_t *lines,
                             int64_t *last_close, char *err, size_t errlen);

/* Calls cb for every window (open ones only with `open_only`), by start then id; with
 * `lines_cb`, also for every line of each window after it. Stops and returns -1 if a callback
 * does. Returns 0 or -1. */
int spool_windows_foreach(struct spool *sp, int open_only,
                          int (*cb)(const struct spool_window *w, void *ud),
                          int (*lines_cb)(const struct spool_window_line *l, void *ud), void *ud,
                          char *err, size_t errlen);

/* Counts events by state. Returns 0 or -1. */
int spool_counts(struct spool *sp, struct spool_counts *out, char *err, size_t errlen);

/* The most recent last_error of any pending or dead event (by update order) into `out`, "" if
 * none. Returns 0 or -1. */
int spool_last_error(struct spool *sp, char *out, size_t outlen, char *err, size_t errlen);

/* Calls cb for every file record (ordered by source, then id), with its bad_utf8 and torn_lines
 * counters from file_extra and file_torn. Stops and returns -1 if cb does. Returns 0 or -1. */
int spool_files_foreach(struct spool *sp, int (*cb)(const struct spool_file *f, void *ud), void *ud,
                        char *err, size_t errlen);

/* Calls cb for every event in `state` (any enum event_state; ordered by id). Stops and returns -1
 * if cb does. One snapshot of the spool: its own, or the caller's between spool_snapshot_begin and
 * spool_snapshot_end. */
int spool_events_foreach(struct spool *sp, enum event_state state,
                         int (*cb)(const struct event *ev, void *ud), void *ud, char *err,
                         size_t errlen);

/* Starts a read transaction: the reads until spool_snapshot_end see the spool as it is now,
 * whatever the agent commits meanwhile (SQLite's WAL snapshot isolation,
 * sqlite.org/isolation.html), so that several listings agree (an event is in one state only).
 * Not nested. Returns 0 or -1. */
int spool_snapshot_begin(struct spool *sp, char *err, size_t errlen);

/* Ends what spool_snapshot_begin started. Returns 0 or -1 (the snapshot is ended either way). */
int spool_snapshot_end(struct spool *sp, char *err, size_t errlen);

/* ---- what is kept about a file besides its record (store/extra.c) ---- */

/* Head marks: at most this many line ends of a file's first SPOOL_FP_MAX bytes: every line end
 * of a head whose lines are 8 bytes long on average, so that a cut anywhere in the first KiB of a
 * log of short lines is recognised (docs/tailing.md). A spool written with more marks than an
 * older agent keeps is read by it as its first ones. */
#define SPOOL_MARKS_MAX 128

/* A line end in a file's head: the file's first `len` bytes (a '\n' last) hash to `hash`
 * (SHA-256). With them a file cut to one of its line ends can be recognised, when its
 * fingerprint covers more bytes than the file still has (docs/tailing.md, truncations). */
struct spool_mark_head {
	int64_t len;
	unsigned char hash[SPOOL_HASH_LEN];
};

struct spool_file_extra {
	int64_t bad_utf8;   /* see struct spool_counters */
	int64_t torn_lines; /* see struct spool_counters; from file_torn */
	struct spool_mark_head marks[SPOOL_MARKS_MAX];
	size_t n_marks; /* in increasing len */
};

/* Reads what file_extra and file_torn hold for the record `file_id` into *out (all zero if
 * nothing, or if the spool has no such table yet: an older agent wrote it). Returns 0 or -1. */
int spool_file_extra_get(struct spool *sp, int64_t file_id, struct spool_file_extra *out, char *err,
                         size_t errlen);

/* Replaces the head marks of record `file_id` with `n` (<= SPOOL_MARKS_MAX) marks. On its own
 * (not in a batch's transaction): losing them loses only the recognition of a truncation.
 * Returns 0 or -1. */
int spool_head_marks_put(struct spool *sp, int64_t file_id, const struct spool_mark_head *marks,
                         size_t n, char *err, size_t errlen);

/* The directory record `file_id`'s path led to when its file was last read there, if that path
 * goes through a symbolic link (a deploy's `current -> releases/N`): written into `dir` (`len`
 * bytes, NUL-terminated), an absolute real path (realpath(3)). Returns 1, 0 if none is kept (the
 * table file_realdir is not there yet: no such path was ever read), or -1 (`err`). */
int spool_file_realdir_get(struct spool *sp, int64_t file_id, char *dir, size_t len, char *err,
                           size_t errlen);

/* Keeps `dir` (NUL-terminated, at most PATH_MAX bytes) as the directory record `file_id`'s path
 * leads to (spool_file_realdir_get), in the table file_realdir, created at the first such
 * record. On its own (not in a batch's transaction): losing it loses only the finding of the
 * file after its link was re-pointed while logmeter was stopped. Returns 0 or -1 (`err`). */
int spool_file_realdir_put(struct spool *sp, int64_t file_id, const char *dir, char *err,
                           size_t errlen);

/* ---- durability, integrity, replay: see docs/spool.md ---- */

/* Sets PRAGMA synchronous on this handle (each connection has its own setting) for the
 * configured durability: CONFIG_DURABILITY_STRICT is synchronous=FULL (a commit is on disk when
 * it returns), CONFIG_DURABILITY_NORMAL synchronous=NORMAL. In WAL mode, FULL fsyncs the WAL at
 * every commit; NORMAL fsyncs it only at checkpoints, so a power cut (not a crash of logmeter)
 * can roll back the last transactions but never corrupts the database
 * (https://www.sqlite.org/pragma.html#pragma_synchronous, https://www.sqlite.org/wal.html).
 * spool_open starts with STRICT. Returns 0 or -1. */
int spool_set_durability(struct spool *sp, enum config_durability d, char *err, size_t errlen);

/* Spools up to this size (database and WAL, bytes) get a full PRAGMA quick_check from
 * spool_verify; it reads every page: about 3.3 ms per MiB from the page cache and 21 ms per MiB
 * from disk on the reference machine (docs/spool.md). */
#define SPOOL_QUICK_CHECK_MAX_BYTES (64LL * 1024 * 1024)

/* Checks the database before an agent uses it: PRAGMA quick_check if it is at most
 * SPOOL_QUICK_CHECK_MAX_BYTES, else it reads what the agent depends on first (every file
 * record, every pending event, the newest events). Truncated and non-SQLite files are already
 * refused by spool_open (SQLITE_CORRUPT, SQLITE_NOTADB). Returns 0, or -1 with the problem in
 * `err`; after a failure, closing the handle does not checkpoint the WAL into the damaged file. */
int spool_verify(struct spool *sp, char *err, size_t errlen);

/* For an SQLite result code: "" or, for SQLITE_CORRUPT and SQLITE_NOTADB, a sentence (starting
 * with a space) telling the operator to stop logmeter and run `spool check` / `spool recover`.
 * Static storage. */
const char *spool_damage_hint(int sqlite_rc);

/* What spool_replay moves back to pending. */
struct spool_replay {
	enum event_state from; /* EVENT_DEAD, EVENT_DELIVERED or EVENT_UNSURE */
	const char *rule;      /* exact rule name, or NULL: any rule */
	const char *reason;    /* substring (case-sensitive) of last_error, or NULL: any */
	int64_t since;         /* only events that became dead (for EVENT_DELIVERED: were
	                          delivered) at or after this time, seconds since the epoch; 0: any */
	int64_t now;           /* seconds since the epoch, written as the events' updated time */
	int dry_run;           /* call `decide` but change nothing */
	/* Called for each selected event, inside a transaction, in id order: returns 1 to move it
	 * to pending (it may change ev->customer and ev->last_error, which are written back), 0 to
	 * leave it as it is, -1 to stop (the current batch is rolled back). */
	int (*decide)(struct event *ev, void *ud);
	void *ud;
};

/* Moves the selected dead, delivered or unsure events back to pending, in transactions of at most
 * 500 events (so that a running agent's commits wait at most one batch). A moved event keeps its
 * identifier, payload and attempts; it moves to the next Idempotency-Key generation, forgets its
 * first unknown outcome, loses its delivery time and gets a queue position
 * after every existing one (its id stays), so that a running sender, whose cursor only moves
 * forward while it has work, finds it at its next load. Sets *moved (if non-NULL) to the number
 * moved (or that would be, with dry_run). Returns 0 or -1 (the batches committed before the error
 * stay moved). */
int spool_replay(struct spool *sp, const struct spool_replay *rp, int64_t *moved, char *err,
                 size_t errlen);

/* ---- room: size, pruning, full disk (src/ingest/space.c, docs/architecture.md) ---- */

/* The spool's size as SQLite and the file system see it. */
struct spool_usage {
	int64_t page_size;  /* PRAGMA page_size, bytes */
	int64_t pages;      /* PRAGMA page_count: pages in the latest commit (WAL included) */
	int64_t free_pages; /* PRAGMA freelist_count: unused pages, reused before the file grows */
	int64_t
	    wal_autocheckpoint; /* PRAGMA wal_autocheckpoint: WAL pages that start a checkpoint */
	int64_t db_file;        /* st_size of spool.db, bytes; a checkpoint grows it to pages */
	int64_t wal_file;       /* st_size of spool.db-wal, bytes (0 if there is none) */
};

/* Fills *out (https://www.sqlite.org/pragma.html, stat(2)). Works on read-only handles.
 * Returns 0 or -1. */
int spool_usage(struct spool *sp, struct spool_usage *out, char *err, size_t errlen);

/* The two rules by which delivered events leave the spool. They are already in Stripe and kept
 * only for replay and status; pending, dead and unsure events are never pruned. */
struct spool_prune {
	int64_t delivered_before; /* retention: every event delivered before this time (seconds
	                             since the epoch) goes; 0: this rule is off */
	int64_t oldest;           /* room: then batches in the order of their commits (about
	                             that of their deliveries), whatever their age, until this
	                             many more went (the last batch may take a few more); 0:
	                             this rule is off */
};

/* How many events each rule deleted. */
struct spool_pruned {
	int64_t expired; /* by delivered_before */
	int64_t early;   /* by oldest, before their retention */
};

/* Applies both rules of *p in one transaction; src/ingest/space.c is its one caller (the ingest
 * thread's handle), for delivered_retention and to make room. Events are stored by commit, so
 * they go a commit at a time: a batch whose every event is delivered, all before the cut-off for
 * the first rule; the second rule takes whole batches until at least `oldest` events went. The
 * pages of what is deleted go to SQLite's free list and are reused by new events. Fills *out if
 * non-NULL. Returns 0 or -1 (nothing deleted). */
int spool_prune(struct spool *sp, const struct spool_prune *p, struct spool_pruned *out, char *err,
                size_t errlen);

/* PRAGMA wal_checkpoint(PASSIVE) (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html): copies
 * what readers allow from the WAL into spool.db, so that the WAL can start over. Returns 0 or
 * -1 (for example SQLITE_FULL when spool.db cannot grow). */
int spool_checkpoint(struct spool *sp, char *err, size_t errlen);

/* 1 if the last failure reported on this handle (spool_commit resets it when it starts) was a
 * full disk: SQLITE_FULL (SQLite's unix VFS reports ENOSPC on write so), or an I/O error with
 * errno ENOSPC or EDQUOT (fsync, ftruncate, mmap of the -shm file). Else 0. */
int spool_failed_full(const struct spool *sp);

/* "STATE_DIR/spool.db", owned by the handle. */
/* Whether spool.db at the handle's path is still the file the handle opened (stat(2): same
 * st_dev and st_ino). A spool removed under a running agent (the state directory wiped, spool.db
 * deleted, another file renamed over it) keeps taking commits into an unlinked inode that nobody
 * will ever read again; spool_commit calls this first, and the agent every few seconds. Returns 0
 * (the same file, or the handle recorded none), or -1 with what happened in `err`. */
int spool_check_file(const struct spool *sp, char *err, size_t errlen);

/* The running spool's file went away (spool_check_file failed): makes sure `state_dir` still
 * says that it had a spool, this one's id in SPOOL_MARKER_NAME, creating the directory (0700)
 * and the marker if they went too (a wiped state directory). The next start is then refused, as
 * for a lost spool, instead of taking every file for new and billing it again; `spool
 * start-over` is the way on (docs/spool.md). A marker with another id is left alone. Returns 0,
 * or -1 with the reason in `err`. */
int spool_mark_lost(struct spool *sp, const char *state_dir, char *err, size_t errlen);

const char *spool_path(const struct spool *sp);

/* The spool's database file in its state directory; its WAL and WAL index are beside it, with
 * "-wal" and "-shm" appended (https://www.sqlite.org/wal.html). */
#define SPOOL_FILE_NAME "spool.db"

/* The state directory's record that it had a spool: the spool's id (store/marker.c). */
#define SPOOL_MARKER_NAME "spool.id"

/* `logmeter spool start-over` (the agent stopped, its lock held by the caller): a spool.db that
 * is missing or empty while the marker says the directory had a spool is forgotten (the empty
 * file, its WAL and the marker go: the next start makes a new spool and reads every file as new);
 * a spool.db with another id than the marker's is adopted (the marker takes its id). Writes what
 * it did into `what`. Returns 0, 1 if there is nothing to start over (`err` says why), or -1. */
int spool_start_over(const char *state_dir, char *what, size_t whatlen, char *err, size_t errlen);

/* Bytes that hold the path of the spool of any state_dir the configuration accepts (at most
 * PATH_MAX - 1 bytes), with its NUL. */
#define SPOOL_PATH_MAX (PATH_MAX + sizeof("/" SPOOL_FILE_NAME))

/* Writes the path of the spool of `state_dir`, "STATE_DIR/spool.db", to `out` (`outlen` bytes;
 * SPOOL_PATH_MAX is enough for a configured state_dir). The one place that path is made. Returns
 * 0, or -1 if it does not fit (`err`). */
int spool_path_of(const char *state_dir, char *out, size_t outlen, char *err, size_t errlen);
/* Whether `state_dir`'s spool was lost: spool.db missing or empty while the directory's marker
 * says it had a spool (store/marker.c, docs/spool.md), which only an operator can settle (a
 * restore, or `spool start-over`). Returns 0 (not lost, or never had one), or -1 with the
 * refusal (or a stat error) in `err`. */
int spool_lost_check(const char *state_dir, char *err, size_t errlen);

#endif
