/* spool_int: what the files of the spool share, inside store/ only. The spool is split by its
 * users (docs/architecture.md): spool.c (the handle: open, statements, errors, transactions, the
 * instance id), schema.c (tables, migrations, row layouts, the check at start), commit.c (file
 * records and the ingest half's commits), queue.c (the sender's pending events and marks),
 * query.c (counts and listings for status and export), replay.c, and room.c (size, pruning, WAL
 * checkpoints). Each keeps its SQL next to its code; spool_open prepares all of it. */
#ifndef LOGMETER_SPOOL_INT_H
#define LOGMETER_SPOOL_INT_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "store/spool.h"

/* The statements of a handle, prepared once when it is opened, grouped by the file that owns
 * them. */
enum spool_stmt {
	/* spool.c */
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_META_GET,
	ST_META_PUT,
	/* commit.c */
	ST_FILE_FIND,
	ST_FILE_ADD,
	ST_FILE_UPDATE,
	ST_EVENT_INSERT,
	/* queue.c */
	ST_QUEUE_END,
	ST_PENDING,
	ST_PENDING_PAIR,
	ST_MARK,
	/* query.c */
	ST_FILES_ALL,
	ST_COUNTS,
	ST_LAST_ERROR,
	ST_EVENTS_PENDING,
	ST_EVENTS_DELIVERED,
	ST_EVENTS_DEAD,
	ST_EVENTS_UNSURE,
	/* room.c */
	ST_PRUNE_EXPIRED,
	ST_PRUNE_OLDEST,
	/* window.c */
	ST_WINDOW_FIND,
	ST_WINDOW_ADD,
	ST_WINDOW_UPDATE,
	ST_WINDOW_LINE_FIND,
	ST_WINDOW_OWN_EVENT,
	ST_WINDOW_LINE_ADD,
	ST_WINDOW_DUE,
	ST_WINDOW_CLOSE,
	ST_WINDOW_NEXT,
	ST_WINDOWS_OPEN_COUNT,
	ST_WINDOW_FREE_PLACE,
	ST_WINDOW_PRUNE_LINES,
	ST_WINDOW_PRUNE_ROWS,
	ST_WINDOWS_ALL,
	ST_WINDOWS_OPEN,
	ST_WINDOW_LINES,
	ST_COUNT_
};

/* One statement of a file's list: its slot in the handle and its text. A list ends with an
 * entry whose text is NULL. */
struct spool_sql {
	enum spool_stmt which;
	const char *text;
};

/* The statements on file_extra (extra.c), prepared at their first use: the table may be missing
 * from a spool opened read-only. */
enum spool_xstmt { SPOOL_XST_GET, SPOOL_XST_MARKS_PUT, SPOOL_XST_UTF8_PUT, SPOOL_XST_COUNT };

/* The lists of each file; spool_open prepares them all and refuses to open if a slot is left
 * without a statement. */
extern const struct spool_sql spool_handle_sql[];
extern const struct spool_sql spool_commit_sql[];
extern const struct spool_sql spool_queue_sql[];
extern const struct spool_sql spool_query_sql[];
extern const struct spool_sql spool_room_sql[];
extern const struct spool_sql spool_window_sql[];

struct spool {
	sqlite3 *db;
	char *path;
	enum spool_open_mode mode;
	sqlite3_stmt *st[ST_COUNT_];
	sqlite3_stmt *xst[SPOOL_XST_COUNT]; /* extra.c's, NULL until used */
	/* spool_set_durability's: with NORMAL, what spool_pending returns is synced first. */
	enum config_durability durability;
	int last_rc, last_errno; /* of the last failure spool_fail reported (spool_failed_full) */
	/* What `path` was when the handle opened it (spool_check_file): a spool.db removed or
	 * replaced under a running agent is noticed before the next commit goes into it. */
	int pinned;
	dev_t dev;
	ino_t ino;
};

/* marker.c: before a spool is opened, whether `db` (missing or empty) may be created anew, as far
 * as the state directory's marker tells; after a read-write open, the spool's id and the marker
 * made or compared. Return 0 or -1 (`err`). spool_open_unmarked: spool_open without those
 * checks, for spool_start_over and the spool `spool recover` builds aside. meta reads shared with
 * spool.c. */
int spool_marker_check(const char *state_dir, const char *db, char *err, size_t errlen);
int spool_marker_sync(struct spool *sp, const char *state_dir, char *err, size_t errlen);
struct spool *spool_open_unmarked(const char *state_dir, enum spool_open_mode mode, char *err,
                                  size_t errlen);
int spool_meta_get(struct spool *sp, const char *key, char *out, size_t outlen, char *err,
                   size_t errlen);

/* extra.c: the table file_extra, created when missing by every read-write open (it needs no
 * schema version); its statements' end; the bad_utf8 counter of *f written when it is not 0 (in
 * the caller's transaction). */
extern const char spool_extra_schema[];
void spool_extra_free(struct spool *sp);
int spool_extra_utf8_put(struct spool *sp, const struct spool_file *f, char *err, size_t errlen);

/* The columns spool_row_file and spool_row_event read, in their order. */
#define SPOOL_FILE_COLUMNS                                                                         \
	"id, uid, source, path, dev, ino, fp_len, fp_hash, \"offset\", check_len, check_hash, "    \
	"size, state, lines, matched, unmatched, invalid, long_lines, nul_bytes, events, resets, " \
	"first_seen, updated"

#define SPOOL_EVENT_COLUMNS                                                                        \
	"id, file_id, line_offset, rule, identifier, event_name, payload_customer_key, "           \
	"payload_value_key, customer_key, customer, value, timestamp, state, attempts, "           \
	"last_error, created, delivered_at, key_generation, first_unknown, queue_seq"

/* ---- errors ---- */

/* Writes "spool PATH: WHAT: SQLITE_FULL: database or disk is full" (and the damage hint) to
 * `err`, and keeps rc and errno for spool_failed_full. Call it right after the failing call,
 * before a ROLLBACK replaces the connection's message. */
void spool_fail(struct spool *sp, int rc, const char *what, char *err, size_t errlen);

/* ---- statements: binding, reading, stepping ---- */

/* Leaves a statement ready for its next use, holding no pointer into the caller's memory. */
void spool_st_end(sqlite3_stmt *st);

/* The bind helpers keep the first error in *rc, so that a statement's bindings read as one
 * block; they bind nothing once *rc is not SQLITE_OK. spool_bind_text never reads past `max`
 * bytes, even if the field lacks its NUL; text and blobs are bound SQLITE_STATIC: the caller
 * keeps them alive until spool_st_end. */
void spool_bind_int(sqlite3_stmt *st, int i, int64_t v, int *rc);
void spool_bind_null(sqlite3_stmt *st, int i, int *rc);
void spool_bind_text(sqlite3_stmt *st, int i, const char *s, size_t max, int *rc);
void spool_bind_blob(sqlite3_stmt *st, int i, const void *p, int len, int *rc);

/* Copies text column `i` into `out` (`outlen` >= 1 bytes), cut if needed at a UTF-8 character
 * boundary so that what is cut stays valid text for JSON export. */
void spool_col_text(sqlite3_stmt *st, int i, char *out, size_t outlen);

/* Reads a row of SPOOL_FILE_COLUMNS into *f. Returns 0, or -1 if its state is not the text of
 * an enum spool_file_state (`err`). */
int spool_row_file(const struct spool *sp, sqlite3_stmt *st, struct spool_file *f, char *err,
                   size_t errlen);

/* Reads a row of SPOOL_EVENT_COLUMNS into *ev. Returns 0, or -1 if its state is not an enum
 * event_state (`err`). */
int spool_row_event(const struct spool *sp, sqlite3_stmt *st, struct event *ev, char *err,
                    size_t errlen);

/* Steps the handle's statement `which`, which returns no row, and ends it. Returns 0 or -1
 * (`err` names `what`). */
int spool_st_run(struct spool *sp, enum spool_stmt which, const char *what, char *err,
                 size_t errlen);

/* Runs a one-row PRAGMA or query and returns its integer value in *out. Prepared per call: these
 * run once per commit at most, so caching them is not worth a slot in the handle's table.
 * Returns 0 or -1. */
int spool_pragma_int(struct spool *sp, const char *sql, int64_t *out, char *err, size_t errlen);

/* sqlite3_exec of `sql`. Returns 0 or -1 (`err` names `what`). */
int spool_exec(struct spool *sp, const char *sql, const char *what, char *err, size_t errlen);

/* ---- transactions (BEGIN IMMEDIATE: the write lock is taken at once) ---- */

/* Begins a write transaction. Returns 0 or -1. */
int spool_tx_begin(struct spool *sp, char *err, size_t errlen);

/* Commits; a failed commit is rolled back. Returns 0 or -1. */
int spool_tx_commit(struct spool *sp, char *err, size_t errlen);

/* Ends a failed transaction, if a failed statement has not already rolled it back; the
 * caller's err already says why it failed. */
void spool_tx_rollback(struct spool *sp);

/* ---- small things several users need ---- */

/* The state whose text (spool_file_state_name) is the `len` bytes at `text` (not necessarily
 * NUL-terminated) into *out. Returns 0, or -1 if it names none. */
int spool_file_state_parse(const char *text, size_t len, enum spool_file_state *out);

/* Writes 2 * `nbytes` random lowercase hex digits and a NUL to `out` (getrandom(2)); `nbytes` is
 * at most 32. Returns 0 or -1. */
int spool_random_hex(char *out, size_t nbytes, char *err, size_t errlen);

/* ---- the queue's order (queue.c) ---- */

/* meta key: the queue positions replays have handed out, in all (absent: 0). An event inserted
 * takes position id + shift, a replayed one max(id) + shift + 1 (and the shift grows by one), so
 * every new position comes after every position given before, without a write per commit and
 * without changing an event's id. This holds while ids grow, i.e. unless the newest event itself
 * was pruned (SQLite then gives its id again: https://www.sqlite.org/autoinc.html), as it did
 * for the ids that ordered the queue before schema 3. */
#define SPOOL_META_QUEUE_SHIFT "queue_shift"

/* Reads, inside the caller's write transaction, the highest event id (0 if none) and the
 * queue shift. Returns 0 or -1. */
int spool_queue_end(struct spool *sp, int64_t *max_id, int64_t *shift, char *err, size_t errlen);

/* Reads meta[key] into `out` (`outlen` bytes). Returns 1 if found, 0 if not, -1 on error. */
int spool_meta_get(struct spool *sp, const char *key, char *out, size_t outlen, char *err,
                   size_t errlen);

/* The meta key of the instance id (spool_instance). */
#define SPOOL_INSTANCE_KEY "instance"
/* The meta key of the spool's random id (marker.c), part of window identifiers (window.c). */
#define SPOOL_ID_KEY "spool_id"

/* Inside the caller's write transaction: inserts *ev with id *next and queue position
 * *next + shift (ON CONFLICT of its line's position: nothing); advances *next if it was new and
 * sets ev->id, ev->queue_seq, ev->created (else sets them to 0). Returns 0 or -1. */
int spool_event_insert(struct spool *sp, struct event *ev, int64_t now, int64_t *next,
                       int64_t shift, char *err, size_t errlen);

/* Inside spool_commit's transaction: adds the value of the line event *ev (ev->window_s > 0) to
 * its window (window.c): the window of its timestamp if that one is still open at `now`, else
 * the next open one (counted as late); a line read again goes where it went the first time.
 * Returns 0, 1 if the event is not to be aggregated (a timestamp Stripe would refuse, a value
 * beyond exact sums or one that would give the window's total more than Stripe's 15
 * significant digits, docs/stripe-contract.md section 15): it is then inserted as an event of
 * its own; or -1. */
int spool_window_commit(struct spool *sp, struct event *ev, int64_t now, char *err, size_t errlen);

/* Inside spool_prune's transaction, after meter events were pruned: drops the lines of the
 * closed windows whose meter event is gone, and the rows of those whose start is older than
 * Stripe's 35 days and a day (window.c). A younger row stays as the memory that its window was
 * sent: a line for it goes into an open window, never into a new row with the identifier
 * Stripe already has (and would drop as a duplicate, 24 hours and more). Returns 0 or -1. */
int spool_windows_prune(struct spool *sp, char *err, size_t errlen);

/* Writes meta[key] = `value` (text). Returns 0 or -1. */
int spool_meta_put(struct spool *sp, const char *key, const char *value, char *err, size_t errlen);

/* ---- the schema (schema.c) ---- */

/* Sets up a newly opened handle: for SPOOL_READ_WRITE, WAL mode, synchronous=FULL, foreign keys,
 * and the schema created or migrated to SPOOL_SCHEMA_VERSION in one transaction; for
 * SPOOL_READ_ONLY, a check that the schema is this version. Refuses a newer schema. Returns 0 or
 * -1. */
int spool_schema_setup(struct spool *sp, char *err, size_t errlen);

/* The columns of a files row, in the order of its record (the table's column order); the same in
 * every schema version. */
enum spool_file_col {
	SPOOL_FC_ID,
	SPOOL_FC_UID,
	SPOOL_FC_SOURCE,
	SPOOL_FC_PATH,
	SPOOL_FC_DEV,
	SPOOL_FC_INO,
	SPOOL_FC_FP_LEN,
	SPOOL_FC_FP_HASH,
	SPOOL_FC_OFFSET,
	SPOOL_FC_CHECK_LEN,
	SPOOL_FC_CHECK_HASH,
	SPOOL_FC_SIZE,
	SPOOL_FC_STATE,
	SPOOL_FC_LINES,
	SPOOL_FC_MATCHED,
	SPOOL_FC_UNMATCHED,
	SPOOL_FC_INVALID,
	SPOOL_FC_LONG_LINES,
	SPOOL_FC_NUL_BYTES,
	SPOOL_FC_EVENTS,
	SPOOL_FC_RESETS,
	SPOOL_FC_FIRST_SEEN,
	SPOOL_FC_UPDATED,
	SPOOL_FILE_NCOLS
};

/* The columns of an events row, in the order of its record. A schema version only ever adds
 * columns at the end (a migration that copies the table keeps the order), so a row of an older
 * version has the first columns of this list: see spool_event_layout. */
enum spool_event_col {
	SPOOL_EC_ID,
	SPOOL_EC_FILE_ID,
	SPOOL_EC_LINE_OFFSET,
	SPOOL_EC_RULE,
	SPOOL_EC_IDENTIFIER,
	SPOOL_EC_EVENT_NAME,
	SPOOL_EC_PAYLOAD_CUSTOMER_KEY,
	SPOOL_EC_PAYLOAD_VALUE_KEY,
	SPOOL_EC_CUSTOMER_KEY,
	SPOOL_EC_CUSTOMER,
	SPOOL_EC_VALUE,
	SPOOL_EC_TIMESTAMP,
	SPOOL_EC_STATE,
	SPOOL_EC_ATTEMPTS,
	SPOOL_EC_LAST_ERROR,
	SPOOL_EC_CREATED,
	SPOOL_EC_DELIVERED_AT,
	SPOOL_EC_UPDATED,
	SPOOL_EC_KEY_GENERATION, /* schema 2 */
	SPOOL_EC_FIRST_UNKNOWN,  /* schema 2 */
	SPOOL_EC_QUEUE_SEQ,      /* schema 3 */
	SPOOL_EVENT_NCOLS
};

/* What an events row of one schema version looks like. */
struct spool_event_layout {
	int ncols;                  /* its columns: the first `ncols` of enum spool_event_col */
	enum event_state max_state; /* the highest state it can hold */
};

/* The layout of an events row of schema `version`, or NULL if there is no such version (0, or
 * newer than SPOOL_SCHEMA_VERSION). Static storage. */
const struct spool_event_layout *spool_event_layout(int64_t version);

#endif
