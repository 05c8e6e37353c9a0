/* spool_int: what the files of the spool share, inside store/ only. The spool is split by its
 * users (docs/architecture.md): spool.c (the handle: open, statements, errors, transactions, the
 * instance id, the caches), schema.c (tables, migrations, row layouts, the check at start),
 * migrate.c (schema 3's events into batches), batch.c (a commit's events as one blob), commit.c
 * (file records and the ingest half's commits), events.c (an event read back: its batch, its
 * outcomes, its identifier), queue.c (the sender's pending events, marks and the watermark),
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
	ST_BEGIN_READ,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_META_GET,
	ST_META_PUT,
	ST_QUEUE_GET,
	/* events.c */
	ST_RULE_GET,
	ST_FILE_NAMES,
	ST_BATCH_AT,
	ST_BATCHES_FROM,
	ST_BATCH_HEADS,
	ST_OUTCOME_GET,
	ST_ROWS_IN,
	ST_DELIVERY_OF,
	/* commit.c */
	ST_FILE_FIND,
	ST_FILE_ID_NEXT,
	ST_FILE_FIND_OTHER,
	ST_FILE_ADD,
	ST_FILE_UPDATE,
	ST_RULE_FIND,
	ST_RULE_ADD,
	ST_BATCH_LAST_END,
	ST_BATCH_INSERT,
	ST_OUTCOME_INSERT,
	ST_QUEUE_NEXT,
	/* queue.c */
	ST_PENDING_ROWS,
	ST_BATCH_OF_SEQ,
	ST_OUTCOME_MARK,
	ST_ROWS_AFTER,
	ST_BATCH_AFTER,
	ST_ABSORB_FIRST,
	ST_ABSORB,
	ST_DELIVERY_LAST,
	ST_DELIVERY_ADD,
	ST_DELIVERY_EXTEND,
	ST_QUEUE_WATERMARK,
	/* query.c */
	ST_FILES_ALL,
	ST_COUNTS,
	ST_LAST_ERROR,
	ST_ROWS_OF_STATE,
	/* room.c */
	ST_PRUNE_CANDIDATES,
	ST_PRUNE_ROWS_BAD,
	ST_PRUNE_ROWS_LAST,
	ST_PRUNE_BATCH,
	ST_PRUNE_ROWS,
	ST_PRUNE_DELIVERIES,
	ST_PRUNE_EXPIRY_END,
	/* window.c */
	ST_WINDOW_FROM,
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

/* The statements on file_extra and file_torn (extra.c), prepared at their first use: the tables
 * may be missing from a spool opened read-only. */
enum spool_xstmt {
	SPOOL_XST_GET,
	SPOOL_XST_MARKS_PUT,
	SPOOL_XST_UTF8_PUT,
	SPOOL_XST_TORN_GET,
	SPOOL_XST_TORN_PUT,
	SPOOL_XST_REALDIR_GET,
	SPOOL_XST_REALDIR_PUT,
	SPOOL_XST_COUNT
};

/* The lists of each file; spool_open prepares them all and refuses to open if a slot is left
 * without a statement. */
extern const struct spool_sql spool_handle_sql[];
extern const struct spool_sql spool_events_sql[];
extern const struct spool_sql spool_commit_sql[];
extern const struct spool_sql spool_queue_sql[];
extern const struct spool_sql spool_query_sql[];
extern const struct spool_sql spool_room_sql[];
extern const struct spool_sql spool_window_sql[];

/* ---- a batch's events, decoded (batch.c, events.c) ---- */

/* One event of a batch as stored: the text fields point into the batch's blob, not
 * NUL-terminated. */
struct spool_item {
	int64_t id, queue_seq;
	int64_t line_offset, timestamp;
	int64_t rule_id; /* a row of `rules` */
	const char *customer_key, *customer, *value;
	size_t customer_key_len, customer_len, value_len;
};

/* A row of `batches` being read: its columns, a copy of its blob, and where decoding stands
 * (`next` events decoded, the next one at byte `pos`). A handle keeps two: one for reading in
 * order, one for looking events up by id. */
struct spool_view {
	int64_t id, n, file_id, first_offset, end_offset, queue_seq, created;
	unsigned char *blob;
	size_t len, cap;
	int64_t *rule_ids;
	size_t n_rules, cap_rules;
	int64_t next, offset, timestamp;
	size_t pos;
	struct spool_item last; /* the last decoded */
	int loaded;
};

/* Parses the blob's header and rewinds to its first event. Returns 0, or -1 if the blob is not
 * a batch of format 1 (damage). */
int spool_view_start(struct spool_view *v);

/* Decodes the next event into *it. Returns 1, 0 at the end, or -1 on damage. */
int spool_view_next(struct spool_view *v, struct spool_item *it);

/* Decodes event `id` of the view into *it (rewinding if it is behind). Returns 1, 0 if the batch
 * has no such event, -1 on damage. */
int spool_view_seek(struct spool_view *v, int64_t id, struct spool_item *it);

/* Writes the header of a blob whose events refer to `n_rules` rows of `rules` into `out` (room
 * for 1 + 10 * (n_rules + 1) bytes). Returns its length. */
size_t spool_blob_header(unsigned char *out, const int64_t *rule_ids, size_t n_rules);

/* What commit.c takes of a struct spool_batch (batch.c). spool_batch_stored: its events stored
 * in the batch itself; spool_batch_aggregated: those of aggregating rules, for their windows
 * (NULL if none). */
void spool_batch_clear(struct spool_batch *b);
size_t spool_batch_stored(const struct spool_batch *b);
const struct spool_batch *spool_batch_aggregated(const struct spool_batch *b);
const char *spool_batch_instance(const struct spool_batch *b);
size_t spool_batch_rules(const struct spool_batch *b, const struct config_rule *const **rules);
const unsigned char *spool_batch_events(const struct spool_batch *b, size_t *len);
int64_t spool_batch_first_offset(const struct spool_batch *b);
size_t spool_batch_n_dead(const struct spool_batch *b);
/* Dead letter `i` of the batch: returns its event's index, sets *reason. */
size_t spool_batch_dead(const struct spool_batch *b, size_t i, const char **reason);

/* ---- outcomes ---- */

/* A row of `outcomes`: the state of an event with a history of its own, overriding what its
 * batch and the watermark say. Text fields are "" when NULL; has_customer/has_identifier tell
 * an override from none. */
struct spool_outcome {
	int64_t id;
	enum event_state state;
	int64_t attempts, key_generation, first_unknown, queue_seq, updated, delivered_at;
	char last_error[EVENT_ERROR_MAX];
	char customer[EVENT_CUSTOMER_MAX];
	char identifier[EVENT_IDENTIFIER_MAX];
	int has_customer, has_identifier;
};

#define SPOOL_OUTCOME_COLUMNS                                                                      \
	"id, state, attempts, key_generation, first_unknown, last_error, customer, identifier,"    \
	" queue_seq, updated, delivered_at"

#define SPOOL_BATCH_COLUMNS "id, n, file_id, first_offset, end_offset, queue_seq, created, events"

/* An outcome that the watermark absorbs: delivered at its first attempt, with nothing else to
 * remember. Written for an event delivered before the events ahead of it were decided. */
#define SPOOL_OUTCOME_PLAIN                                                                        \
	"state = 1 AND attempts <= 1 AND key_generation = 0 AND first_unknown IS NULL AND"         \
	" last_error IS NULL AND customer IS NULL AND identifier IS NULL"

/* Reads a row of SPOOL_OUTCOME_COLUMNS. Returns 0, or -1 if its state is not an enum
 * event_state (`err`). */
int spool_row_outcome(const struct spool *sp, sqlite3_stmt *st, struct spool_outcome *o, char *err,
                      size_t errlen);

/* The row of `outcomes` of event `id` into *o. Returns 1, 0 if it has none, -1 on error. */
int spool_outcome_get(struct spool *sp, int64_t id, struct spool_outcome *o, char *err,
                      size_t errlen);

/* ---- the handle ---- */

/* A row of `rules`, cached in the handle: rows never change, so a cached one stays true. */
struct spool_rule {
	int64_t id;
	char *instance, *rule, *event_name, *payload_customer_key, *payload_value_key;
};

/* The source and uid of a file record, cached: they never change for an id. */
struct spool_file_names {
	int64_t id;
	char source[128];
	char uid[SPOOL_UID_MAX];
};

#define SPOOL_FILE_CACHE 8

/* The queue's one row. */
struct spool_queue {
	int64_t next_id;   /* the id of the next event committed */
	int64_t shift;     /* queue positions replays handed out, in all */
	int64_t delivered; /* the watermark: every event up to this id is delivered, unless it
	                      has a row of outcomes that says otherwise */
};

struct spool {
	sqlite3 *db;
	char *path;
	enum spool_open_mode mode;
	sqlite3_stmt *st[ST_COUNT_];
	sqlite3_stmt *xst[SPOOL_XST_COUNT]; /* extra.c's, NULL until used */
	/* spool_set_durability's: with NORMAL, what spool_pending returns is synced first. */
	enum config_durability durability;
	/* With NORMAL: every batch whose id is below this was on disk at the last sync of the WAL
	 * (the queue's next_id when spool_pending last synced), so a load of only such events
	 * needs no sync of its own. 0: nothing known. */
	int64_t synced_below;
	int last_rc, last_errno; /* of the last failure spool_fail reported (spool_failed_full) */
	struct event_ids *ids;   /* for the identifiers of events read back */
	struct spool_rule *rules;
	size_t n_rules, cap_rules;
	size_t n_rules_safe; /* those known committed: a rollback forgets the rest */
	struct spool_file_names files[SPOOL_FILE_CACHE];
	size_t next_file;
	struct spool_view scan, look;
	/* The row of `deliveries` last used: events lo < id <= hi were delivered at first_at. */
	int64_t dl_lo, dl_hi, dl_first;
	/* What `path` was when the handle opened it (spool_check_file): a spool.db removed or
	 * replaced under a running agent is noticed before the next commit goes into it. */
	int pinned;
	dev_t dev;
	ino_t ino;
	/* File records spool_file_forget deleted through this handle (spool_file_forgotten). */
	int64_t forgotten;
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

/* extra.c: the table file_extra, created when missing by every read-write open, and file_torn,
 * created by the first torn_lines written (they need no schema version); their statements' end;
 * the bad_utf8 and torn_lines counters of *f written when they are not 0 (in the caller's
 * transaction). */
extern const char spool_extra_schema[];
void spool_extra_free(struct spool *sp);
int spool_extra_utf8_put(struct spool *sp, const struct spool_file *f, char *err, size_t errlen);
int spool_extra_torn_put(struct spool *sp, const struct spool_file *f, char *err, size_t errlen);

/* The columns spool_row_file reads, in their order. */
#define SPOOL_FILE_COLUMNS                                                                         \
	"id, uid, source, path, dev, ino, fp_len, fp_hash, \"offset\", check_len, check_hash, "    \
	"size, state, lines, matched, unmatched, invalid, long_lines, nul_bytes, events, resets, " \
	"first_seen, updated"

/* ---- errors ---- */

/* Writes "spool PATH: WHAT: SQLITE_FULL: database or disk is full" (and the damage hint) to
 * `err`, and keeps rc and errno for spool_failed_full. Call it right after the failing call,
 * before a ROLLBACK replaces the connection's message. */
void spool_fail(struct spool *sp, int rc, const char *what, char *err, size_t errlen);

/* "spool PATH: batch ID is damaged ...": a blob that does not decode. */
void spool_fail_damaged(struct spool *sp, int64_t batch_id, char *err, size_t errlen);

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

/* ---- transactions ---- */

/* Begins a write transaction (BEGIN IMMEDIATE: the write lock is taken at once). Returns 0 or
 * -1. */
int spool_tx_begin(struct spool *sp, char *err, size_t errlen);

/* Begins a read transaction (BEGIN): what the statements until spool_tx_commit read is one
 * snapshot. Returns 0 or -1. */
int spool_tx_begin_read(struct spool *sp, char *err, size_t errlen);

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

/* The meta key of the instance id (spool_instance). */
#define SPOOL_INSTANCE_KEY "instance"
/* The meta key of the spool's random id (marker.c), part of window identifiers (window.c). */
#define SPOOL_ID_KEY "spool_id"
/* meta: what `spool recover` found lost for good (the usage of aggregation windows whose rows
 * could not be read), kept for `status`: "WHEN WINDOWS LINES UNKNOWN", WHEN the last recovery
 * that lost any (seconds since the epoch), WINDOWS (not known to be closed, with lines), LINES
 * (those found, a lower bound) and UNKNOWN (lost windows that left no line and no meter event)
 * summed over such recoveries. */
#define SPOOL_RECOVER_LOSS_KEY "recover_loss"
/* meta: the largest id ever given to a file record (commit.c, spool_file_add), so that the id of
 * a deleted record is never given again. Absent in a spool written before it: the largest id in
 * `files` then. */
#define SPOOL_FILE_ID_KEY "file_id_last"

/* meta: the latest time the sender has seen, seconds since the epoch (spool_clock_seen). Absent
 * in a spool written before it, or before a sender ran: nothing seen. */
#define SPOOL_CLOCK_SEEN_KEY "clock_seen"

/* ---- aggregation windows (window.c) ---- */

/* Inside spool_commit's transaction: adds the value of the line event *ev (ev->window_s > 0) to
 * its window (window.c): the window of its timestamp if that one is still open at `now`, else
 * the next open one (counted as late); a line read again goes where it went the first time.
 * Returns 0, 1 if the event is not to be aggregated (a timestamp Stripe would refuse, a value
 * beyond exact sums or one that would give the window's total more than Stripe's 15
 * significant digits, docs/stripe-contract.md section 15): it is then stored as an event of
 * its own; or -1. */
int spool_window_commit(struct spool *sp, struct event *ev, int64_t now, char *err, size_t errlen);

/* Inside the caller's write transaction: stores *ev (its rule, event_name, payload keys,
 * customer_key, customer, value, timestamp, file_id and line_offset, which may be negative: a
 * window's meter event has no line) as an event of its own, in a batch of one, with id
 * q->next_id and queue position q->next_id + q->shift, advancing q->next_id and the queue's row;
 * with a row of outcomes if its identifier is given (ev->identifier not "": a window's, which no
 * stored field gives) or it is dead (ev->state EVENT_DEAD, ev->last_error). Sets ev->id and
 * ev->queue_seq. Returns 0 or -1. */
int spool_event_store_one(struct spool *sp, struct spool_queue *q, struct event *ev, int64_t now,
                          char *err, size_t errlen);

/* Inside spool_prune's transaction, after meter events were pruned: drops the lines of the
 * closed windows whose meter event is gone, and the rows of those whose start is older than
 * Stripe's 35 days and a day (window.c). A younger row stays as the memory that its window was
 * sent: a line for it goes into an open window, never into a new row with the identifier
 * Stripe already has (and would drop as a duplicate, 24 hours and more). Returns 0 or -1. */
int spool_windows_prune(struct spool *sp, char *err, size_t errlen);

/* Writes meta[key] = `value` (text). Returns 0 or -1. */
int spool_meta_put(struct spool *sp, const char *key, const char *value, char *err, size_t errlen);

/* Reads meta[key] into `out`. Returns 1 if found, 0 if not, -1 on error. */
int spool_meta_get(struct spool *sp, const char *key, char *out, size_t outlen, char *err,
                   size_t errlen);

/* ---- the queue's order (queue.c, commit.c, replay.c) ---- */

/* Reads the queue's row into *q. An event committed takes id next_id and position
 * next_id + shift; a replayed one position next_id + shift and the shift grows by one: every new
 * position comes after every position given before, without changing an event's id. Returns 0
 * or -1. */
int spool_queue_get(struct spool *sp, struct spool_queue *q, char *err, size_t errlen);

/* ---- reading events back (events.c) ---- */

/* The row of `rules` with this id (cached). Returns it (owned by the handle), or NULL (`err`). */
const struct spool_rule *spool_rule_of(struct spool *sp, int64_t id, char *err, size_t errlen);

/* Loads into *v the batch holding event `id`. Returns 1, 0 if no batch holds it, -1 on error
 * (a damaged blob too). */
int spool_view_load(struct spool *sp, struct spool_view *v, int64_t id, char *err, size_t errlen);

/* Loads into *v the row of `batches` the statement `st` (SPOOL_BATCH_COLUMNS) is on, unless *v
 * already holds it. Returns 0 or -1 (a damaged blob). */
int spool_view_take(struct spool *sp, struct spool_view *v, sqlite3_stmt *st, char *err,
                    size_t errlen);

/* Frees what a view holds. */
void spool_view_free(struct spool_view *v);

/* Fills *ev with the event `it` of batch `v`: what its batch, rule and file say, its identifier,
 * and what its row of outcomes `o` says (NULL: it has none: then its state is delivered if its
 * id is at most the watermark `delivered`, else pending). Returns 0 or -1. */
int spool_event_fill(struct spool *sp, const struct spool_view *v, const struct spool_item *it,
                     const struct spool_outcome *o, int64_t delivered, struct event *ev, char *err,
                     size_t errlen);

/* Decodes event `id` from its batch into *it, with the handle's lookup view (sp->look, which
 * then holds its batch). Returns 1, 0 if no batch holds it, -1 on error. */
int spool_item_of(struct spool *sp, int64_t id, struct spool_item *it, char *err, size_t errlen);

/* Reads event `id` whole: its batch, its row of outcomes, the watermark (`q`). Returns 1, 0 if
 * there is no such event, -1 on error. */
int spool_event_get(struct spool *sp, const struct spool_queue *q, int64_t id, struct event *ev,
                    char *err, size_t errlen);

/* The ids of the rows of `outcomes` with lo <= id < hi, in order, into the handle-owned array
 * *ids (grown as needed; *cap its size). Sets *n. Returns 0 or -1. */
int spool_rows_in(struct spool *sp, int64_t lo, int64_t hi, int64_t **ids, size_t *n, size_t *cap,
                  char *err, size_t errlen);

/* Calls cb for every event whose row of outcomes is absent (plain: pending after the watermark,
 * delivered up to it) with from <= id <= to, in id order. Stops when cb returns non-zero (that
 * value is returned; 1 means "enough"); -1 on error. */
int spool_plain_foreach(struct spool *sp, int64_t from, int64_t to,
                        int (*cb)(struct spool *sp, const struct spool_view *v,
                                  const struct spool_item *it, void *ud),
                        void *ud, char *err, size_t errlen);

/* ---- storing events (commit.c), for the ingest half and migrations ---- */

/* The id of the row of `rules` for `rule` of `instance`, added if new (inside the caller's write
 * transaction). Returns 0 or -1. */
int spool_rule_id(struct spool *sp, const char *instance, const struct config_rule *rule,
                  int64_t *id, char *err, size_t errlen);

/* Stores the events of `b` as batch `id` (ids id .. id + n - 1) of file `file_id`, covering up
 * to `end_offset`, at queue positions from `queue_seq`, made at `created`, with rows of outcomes
 * for its dead letters; inside the caller's write transaction. Returns 0 or -1. */
int spool_batch_store(struct spool *sp, int64_t id, int64_t file_id, int64_t end_offset,
                      int64_t queue_seq, int64_t created, const struct spool_batch *b, char *err,
                      size_t errlen);

/* Inserts or replaces the row of outcomes *o (its id is the event's). Returns 0 or -1. */
int spool_outcome_put(struct spool *sp, const struct spool_outcome *o, char *err, size_t errlen);

/* ---- the schema (schema.c, migrate.c) ---- */

/* Sets up a newly opened handle: for SPOOL_READ_WRITE, WAL mode, synchronous=FULL, foreign keys,
 * and the schema created or migrated to SPOOL_SCHEMA_VERSION in one transaction; for
 * SPOOL_READ_ONLY, a check that the schema is this version. Refuses a newer schema. Returns 0 or
 * -1. */
int spool_schema_setup(struct spool *sp, char *err, size_t errlen);

/* Prepares the handle's statements of every user file (those not prepared yet): at open, once
 * the schema is this version, and by a migration that needs them. Returns 0 or -1. */
int spool_prepare(struct spool *sp, char *err, size_t errlen);

/* The statements that make the tables and indexes of the current schema in an empty database. */
extern const char spool_schema_sql[];

/* Makes schema 3's events table, with its constraints, under the name "legacy_events": where
 * `spool recover` puts the events it finds in an older spool before they are migrated. */
extern const char spool_legacy_events_sql[];

/* Moves the events of a table of schema 3's layout named `table` (in the handle's database,
 * inside the caller's write transaction; its rows left as they are) into the tables of the
 * current schema: batches of consecutive ids of one file, one commit and one instance's
 * identifiers, rows of outcomes for what is not plainly pending or delivered, the watermark and
 * the delivery times. Used by the migration from schema 3 and by `spool recover` for the
 * events it finds in an older layout. Sets *moved (if non-NULL). Returns 0 or -1. */
int spool_migrate_events(struct spool *sp, const char *table, int64_t *moved, char *err,
                         size_t errlen);

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

/* The columns of an events row of schemas 1 to 4, in the order of its record. A schema version
 * only ever added columns at the end (a migration that copied the table kept the order), so a
 * row of an older version has the first columns of this list: see spool_event_layout. Schema 5
 * has no events table: `spool recover` still reads such rows of older spools. */
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

/* The layout of an events row of schema `version` (1 to 4), or NULL if that version has none.
 * Static storage. */
const struct spool_event_layout *spool_event_layout(int64_t version);

/* The columns of the rows of schema 5's tables, in the order of their records. */
enum spool_batch_col {
	SPOOL_BC_ID,
	SPOOL_BC_N,
	SPOOL_BC_FILE_ID,
	SPOOL_BC_FIRST_OFFSET,
	SPOOL_BC_END_OFFSET,
	SPOOL_BC_QUEUE_SEQ,
	SPOOL_BC_CREATED,
	SPOOL_BC_EVENTS,
	SPOOL_BATCH_NCOLS
};

enum spool_outcome_col {
	SPOOL_OC_ID,
	SPOOL_OC_STATE,
	SPOOL_OC_ATTEMPTS,
	SPOOL_OC_KEY_GENERATION,
	SPOOL_OC_FIRST_UNKNOWN,
	SPOOL_OC_LAST_ERROR,
	SPOOL_OC_CUSTOMER,
	SPOOL_OC_IDENTIFIER,
	SPOOL_OC_QUEUE_SEQ,
	SPOOL_OC_UPDATED,
	SPOOL_OC_DELIVERED_AT,
	SPOOL_OUTCOME_NCOLS
};

enum spool_rule_col {
	SPOOL_RC_ID,
	SPOOL_RC_INSTANCE,
	SPOOL_RC_RULE,
	SPOOL_RC_EVENT_NAME,
	SPOOL_RC_PAYLOAD_CUSTOMER_KEY,
	SPOOL_RC_PAYLOAD_VALUE_KEY,
	SPOOL_RULE_NCOLS
};

/* The aggregation windows (schema 4 on; schema.c WINDOWS_TABLES). */
enum spool_window_col {
	SPOOL_WC_ID,
	SPOOL_WC_RULE,
	SPOOL_WC_CUSTOMER,
	SPOOL_WC_CUSTOMER_KEY,
	SPOOL_WC_EVENT_NAME,
	SPOOL_WC_PAYLOAD_CUSTOMER_KEY,
	SPOOL_WC_PAYLOAD_VALUE_KEY,
	SPOOL_WC_START,
	SPOOL_WC_LENGTH,
	SPOOL_WC_CLOSE_AFTER,
	SPOOL_WC_TOTAL,
	SPOOL_WC_LINES,
	SPOOL_WC_LATE,
	SPOOL_WC_FILE_ID,
	SPOOL_WC_STATE,
	SPOOL_WC_EVENT_ID,
	SPOOL_WC_CREATED,
	SPOOL_WC_CLOSED_AT,
	SPOOL_WINDOW_NCOLS
};

/* window_lines is WITHOUT ROWID: its records, on index b-tree pages, hold every column, the
 * primary key (file_id, line_offset, rule) first, as declared. */
enum spool_window_line_col {
	SPOOL_LC_FILE_ID,
	SPOOL_LC_LINE_OFFSET,
	SPOOL_LC_RULE,
	SPOOL_LC_WINDOW_ID,
	SPOOL_LC_VALUE,
	SPOOL_LC_TIMESTAMP,
	SPOOL_LC_LATE,
	SPOOL_WINDOW_LINE_NCOLS
};

/* `deliveries` (through, first_at, last_at) and `queue` (next_id, shift, delivered_through)
 * both have three columns: the first of a deliveries record is its rowid alias (NULL). */
#define SPOOL_DELIVERY_NCOLS 3
#define SPOOL_QUEUE_NCOLS 3

/* Counts the events of the database `db` by state (spool_counts, and `spool check` and `spool
 * recover` on their own connections). Returns an SQLite result code (SQLITE_OK). */
int spool_counts_db(sqlite3 *db, struct spool_counts *out);

#endif
