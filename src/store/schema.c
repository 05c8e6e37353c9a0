/* schema: the tables of the spool, their migrations by PRAGMA user_version, the layout of an
 * events row in each schema version (which spool_repair.c reads damaged pages by), and the checks
 * a handle makes when it is opened (the version) and before an agent uses it (spool_verify). */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/spool_int.h"
#include "util/log.h"

/* The columns of schema 2's events table, as they were: kept for the migration from 1 to 2 and
 * as the start of schema 3's. The state (enum event_state) is checked when a row is read, not by
 * a CHECK constraint. */
#define EVENTS_COLUMNS_V2                                                                          \
	" id INTEGER PRIMARY KEY,"                                                                 \
	" file_id INTEGER NOT NULL REFERENCES files(id),"                                          \
	" line_offset INTEGER NOT NULL,"                                                           \
	" rule TEXT NOT NULL,"                                                                     \
	" identifier TEXT NOT NULL,"                                                               \
	" event_name TEXT NOT NULL,"                                                               \
	" payload_customer_key TEXT NOT NULL,"                                                     \
	" payload_value_key TEXT NOT NULL,"                                                        \
	" customer_key TEXT NOT NULL,"                                                             \
	" customer TEXT NOT NULL,"                                                                 \
	" value TEXT NOT NULL,"                                                                    \
	" timestamp INTEGER NOT NULL,"                                                             \
	" state INTEGER NOT NULL,"                                                                 \
	" attempts INTEGER NOT NULL DEFAULT 0,"                                                    \
	" last_error TEXT,"                                                                        \
	" created INTEGER,"                                                                        \
	" delivered_at INTEGER,"                                                                   \
	" updated INTEGER,"                                                                        \
	" key_generation INTEGER NOT NULL DEFAULT 0,"                                              \
	" first_unknown INTEGER,"

/* The names of those columns, in order, for copying them. */
#define EVENTS_NAMES_V2                                                                            \
	"id, file_id, line_offset, rule, identifier, event_name, payload_customer_key,"            \
	" payload_value_key, customer_key, customer, value, timestamp, state, attempts,"           \
	" last_error, created, delivered_at, updated, key_generation, first_unknown"

#define EVENTS_TABLE_V2(name)                                                                      \
	"CREATE TABLE " name " (" EVENTS_COLUMNS_V2 " UNIQUE (file_id, line_offset, rule));"

#define EVENTS_INDEXES_V2                                                                          \
	"CREATE INDEX events_pending ON events(id) WHERE state = 0;"                               \
	"CREATE INDEX events_dead ON events(id) WHERE state = 2;"                                  \
	"CREATE INDEX events_unsure ON events(id) WHERE state = 3;"                                \
	"CREATE INDEX events_delivered ON events(delivered_at) WHERE state = 1;"

/* Schema 3's events table under a given name: what the migration from 2 made. */
#define EVENTS_TABLE_V3(name)                                                                      \
	"CREATE TABLE " name " (" EVENTS_COLUMNS_V2 " queue_seq INTEGER NOT NULL,"                 \
	" UNIQUE (file_id, line_offset, rule));"

#define EVENTS_INDEXES_V3                                                                          \
	"CREATE INDEX events_pending ON events(queue_seq) WHERE state = 0;"                        \
	"CREATE INDEX events_dead ON events(id) WHERE state = 2;"                                  \
	"CREATE INDEX events_unsure ON events(id) WHERE state = 3;"                                \
	"CREATE INDEX events_delivered ON events(delivered_at) WHERE state = 1;"

#define FILES_TABLE                                                                                \
	"CREATE TABLE files ("                                                                     \
	" id INTEGER PRIMARY KEY,"                                                                 \
	" uid TEXT NOT NULL UNIQUE,"                                                               \
	" source TEXT NOT NULL,"                                                                   \
	" path TEXT NOT NULL,"                                                                     \
	" dev INTEGER NOT NULL,"                                                                   \
	" ino INTEGER NOT NULL,"                                                                   \
	" fp_len INTEGER NOT NULL DEFAULT 0,"                                                      \
	" fp_hash BLOB,"                                                                           \
	" \"offset\" INTEGER NOT NULL DEFAULT 0,"                                                  \
	" check_len INTEGER NOT NULL DEFAULT 0,"                                                   \
	" check_hash BLOB,"                                                                        \
	" size INTEGER NOT NULL DEFAULT 0,"                                                        \
	" state TEXT NOT NULL,"                                                                    \
	" lines INTEGER NOT NULL DEFAULT 0,"                                                       \
	" matched INTEGER NOT NULL DEFAULT 0,"                                                     \
	" unmatched INTEGER NOT NULL DEFAULT 0,"                                                   \
	" invalid INTEGER NOT NULL DEFAULT 0,"                                                     \
	" long_lines INTEGER NOT NULL DEFAULT 0,"                                                  \
	" nul_bytes INTEGER NOT NULL DEFAULT 0,"                                                   \
	" events INTEGER NOT NULL DEFAULT 0,"                                                      \
	" resets INTEGER NOT NULL DEFAULT 0,"                                                      \
	" first_seen INTEGER NOT NULL,"                                                            \
	" updated INTEGER NOT NULL);"                                                              \
	"CREATE INDEX files_identity ON files(source, dev, ino);"

/* The tables of schema 5 that hold events (docs/spool.md, "How events are stored"):
 *
 * rules: what the events of a rule of an instance share, and the identifier needs (instance,
 *   rule name) or Stripe gets (event_name, payload keys); a rule changed by a reload is a new
 *   row, so events already spooled keep what they were made with.
 * batches: one row per commit of a file's lines: its events, ids id .. id + n - 1, queue
 *   positions queue_seq .. queue_seq + n - 1, in one blob (batch.c). Unique by line position
 *   (file_id, first_offset), which grows at the end of its index as a file is read; end_offset
 *   is the checkpoint committed with it.
 * queue: one row. next_id, the id of the next event; shift, the positions replays handed out;
 *   delivered_through, the watermark: an event up to it without a row of outcomes is delivered,
 *   one after it pending.
 * deliveries: when the watermark passed events: the events up to `through` (after the row
 *   before) were delivered between first_at and last_at (seconds since the epoch).
 * outcomes: a row for each event whose state is not what the watermark says: retried, dead,
 *   unsure, replayed, or delivered before the events ahead of it. Its customer or identifier,
 *   when not NULL, override the batch's (a replay's new mapping; a migrated event whose
 *   identifier was made under another instance name).
 *
 * No CHECK constraints: SQLite 3.40 evaluates `CHECK (state IN (...))` with a temporary b-tree
 * at every write (EXPLAIN shows OpenEphemeral); states are checked when a row is read. */
#define EVENT_TABLES                                                                               \
	"CREATE TABLE rules ("                                                                     \
	" id INTEGER PRIMARY KEY,"                                                                 \
	" instance TEXT NOT NULL,"                                                                 \
	" rule TEXT NOT NULL,"                                                                     \
	" event_name TEXT NOT NULL,"                                                               \
	" payload_customer_key TEXT NOT NULL,"                                                     \
	" payload_value_key TEXT NOT NULL,"                                                        \
	" UNIQUE (instance, rule, event_name, payload_customer_key, payload_value_key));"          \
	"CREATE TABLE batches ("                                                                   \
	" id INTEGER PRIMARY KEY,"                                                                 \
	" n INTEGER NOT NULL,"                                                                     \
	" file_id INTEGER NOT NULL REFERENCES files(id),"                                          \
	" first_offset INTEGER NOT NULL,"                                                          \
	" end_offset INTEGER NOT NULL,"                                                            \
	" queue_seq INTEGER NOT NULL,"                                                             \
	" created INTEGER NOT NULL,"                                                               \
	" events BLOB NOT NULL);"                                                                  \
	"CREATE UNIQUE INDEX batches_position ON batches(file_id, first_offset);"                  \
	"CREATE INDEX batches_queue ON batches(queue_seq);"                                        \
	"CREATE TABLE queue ("                                                                     \
	" next_id INTEGER NOT NULL,"                                                               \
	" shift INTEGER NOT NULL,"                                                                 \
	" delivered_through INTEGER NOT NULL);"                                                    \
	"CREATE TABLE deliveries ("                                                                \
	" through INTEGER PRIMARY KEY,"                                                            \
	" first_at INTEGER NOT NULL,"                                                              \
	" last_at INTEGER NOT NULL);"                                                              \
	"CREATE TABLE outcomes ("                                                                  \
	" id INTEGER PRIMARY KEY,"                                                                 \
	" state INTEGER NOT NULL,"                                                                 \
	" attempts INTEGER NOT NULL,"                                                              \
	" key_generation INTEGER NOT NULL,"                                                        \
	" first_unknown INTEGER,"                                                                  \
	" last_error TEXT,"                                                                        \
	" customer TEXT,"                                                                          \
	" identifier TEXT,"                                                                        \
	" queue_seq INTEGER NOT NULL,"                                                             \
	" updated INTEGER NOT NULL,"                                                               \
	" delivered_at INTEGER);"                                                                  \
	"CREATE INDEX outcomes_pending ON outcomes(queue_seq) WHERE state = 0;"

/* Aggregation windows (schema 4; store/window.c). A window is one (rule, customer, start); its
 * running total is updated in the transaction that commits its lines with their file's
 * checkpoint. window_lines keeps each line's value under the line's position, so that a line
 * read again adds nothing. At close, the window's meter event becomes an event of its own (a batch
 * of one at line offset -id, its identifier in its row of outcomes), and event_id is its id. */
#define WINDOWS_TABLES                                                                             \
	"CREATE TABLE windows ("                                                                   \
	" id INTEGER PRIMARY KEY,"                                                                 \
	" rule TEXT NOT NULL,"                                                                     \
	" customer TEXT NOT NULL,"                                                                 \
	" customer_key TEXT NOT NULL,"                                                             \
	" event_name TEXT NOT NULL,"                                                               \
	" payload_customer_key TEXT NOT NULL,"                                                     \
	" payload_value_key TEXT NOT NULL,"                                                        \
	" start INTEGER NOT NULL,"                                                                 \
	" length INTEGER NOT NULL,"                                                                \
	" close_after INTEGER NOT NULL,"                                                           \
	" total TEXT NOT NULL,"                                                                    \
	" lines INTEGER NOT NULL,"                                                                 \
	" late INTEGER NOT NULL,"                                                                  \
	" file_id INTEGER NOT NULL REFERENCES files(id),"                                          \
	" state INTEGER NOT NULL,"                                                                 \
	" event_id INTEGER,"                                                                       \
	" created INTEGER NOT NULL,"                                                               \
	" closed_at INTEGER,"                                                                      \
	" UNIQUE (rule, customer, start));"                                                        \
	"CREATE INDEX windows_open ON windows(close_after) WHERE state = 0;"                       \
	"CREATE TABLE window_lines ("                                                              \
	" file_id INTEGER NOT NULL REFERENCES files(id),"                                          \
	" line_offset INTEGER NOT NULL,"                                                           \
	" rule TEXT NOT NULL,"                                                                     \
	" window_id INTEGER NOT NULL REFERENCES windows(id) ON DELETE CASCADE,"                    \
	" value TEXT NOT NULL,"                                                                    \
	" timestamp INTEGER NOT NULL,"                                                             \
	" late INTEGER NOT NULL,"                                                                  \
	" PRIMARY KEY (file_id, line_offset, rule)) WITHOUT ROWID;"                                \
	"CREATE INDEX window_lines_window ON window_lines(window_id);"

const char spool_schema_sql[] = "CREATE TABLE meta ("
                                " key TEXT PRIMARY KEY,"
                                " value TEXT NOT NULL);" FILES_TABLE EVENT_TABLES WINDOWS_TABLES
                                "INSERT INTO queue(next_id, shift, delivered_through)"
                                " VALUES (1, 0, 0);";

const char spool_legacy_events_sql[] = EVENTS_TABLE_V3("legacy_events");

/* Schema 1 had no key_generation or first_unknown, and a CHECK on the state that allowed no
 * unsure events (and cost a temporary b-tree at every INSERT and UPDATE). SQLite cannot change a
 * CHECK in place (https://www.sqlite.org/lang_altertable.html#otheralter): the table is copied
 * into the new layout, in the transaction that sets user_version. */
static const char spool_migrate_1_2[] =
    EVENTS_TABLE_V2("events_v2") "INSERT INTO events_v2(id, file_id, line_offset, rule,"
                                 " identifier, event_name, payload_customer_key,"
                                 " payload_value_key, customer_key, customer, value, timestamp,"
                                 " state, attempts, last_error, created, delivered_at, updated)"
                                 " SELECT id, file_id, line_offset, rule, identifier, event_name,"
                                 " payload_customer_key, payload_value_key, customer_key,"
                                 " customer, value, timestamp, state, attempts, last_error,"
                                 " created, delivered_at, updated FROM events;"
                                 "DROP TABLE events;"
                                 "ALTER TABLE events_v2 RENAME TO events;" EVENTS_INDEXES_V2;

/* Schema 2 kept the sender's queue in id order, so a replay gave a moved event a new id. Schema 3
 * added queue_seq, which started out equal to the id (the queue's order did not change), and
 * indexed pending events by it. The table was copied, as from 1 to 2, so that a migrated spool
 * had exactly the table a new one had (NOT NULL without a DEFAULT, which ALTER TABLE ADD COLUMN
 * cannot add: https://www.sqlite.org/lang_altertable.html#altertabaddcol). */
static const char spool_migrate_2_3[] =
    EVENTS_TABLE_V3("events_v3") "INSERT INTO events_v3(" EVENTS_NAMES_V2 ", queue_seq)"
                                 " SELECT " EVENTS_NAMES_V2 ", id FROM events;"
                                 "DROP TABLE events;"
                                 "ALTER TABLE events_v3 RENAME TO events;" EVENTS_INDEXES_V3;

/* Schema 4 added the aggregation windows; the events table did not change. */
static const char spool_migrate_3_4[] = WINDOWS_TABLES;

/* Schema 5 stores a commit's events as one row: its tables are made, schema 4's events are moved
 * into them (migrate.c: it encodes batches, which SQL cannot), and the old table goes. The
 * windows stay; the meter events of closed ones move with the others. */
static int migrate_4_5(struct spool *sp, char *err, size_t errlen)
{
	int64_t moved = 0;

	if (spool_exec(sp, EVENT_TABLES, "migrating the schema", err, errlen) < 0 ||
	    spool_prepare(sp, err, errlen) < 0 ||
	    spool_migrate_events(sp, "events", &moved, err, errlen) < 0 ||
	    spool_exec(sp, "DROP TABLE events; DELETE FROM meta WHERE key = 'queue_shift';",
	               "migrating the schema", err, errlen) < 0)
		return -1;
	log_info("spool %s: %" PRId64 " events stored in batches", sp->path, moved);
	return 0;
}

/* Migrations by PRAGMA user_version: migrations[i] takes a spool of schema i + 1 to i + 2, by
 * its SQL or its function. A new schema version adds its step here; a spool is never refused
 * for being older. */
static const struct {
	const char *sql;
	int (*fn)(struct spool *sp, char *err, size_t errlen);
} spool_migrations[] = {
    {spool_migrate_1_2, NULL},
    {spool_migrate_2_3, NULL},
    {spool_migrate_3_4, NULL},
    {NULL, migrate_4_5},
};

_Static_assert(sizeof(spool_migrations) / sizeof(spool_migrations[0]) == SPOOL_SCHEMA_VERSION - 1,
               "one migration per schema version after the first");

/* The events row of each schema version that had one (index: the version), next to the tables
 * they describe: schema 1 ended with `updated` and had no unsure state; schema 2 added
 * key_generation and first_unknown; schema 3 queue_seq; schema 4 the same as 3. Schema 5 has
 * batches instead. */
static const struct spool_event_layout event_layouts[] = {
    [1] = {.ncols = SPOOL_EC_KEY_GENERATION, .max_state = EVENT_DEAD},
    [2] = {.ncols = SPOOL_EC_QUEUE_SEQ, .max_state = EVENT_UNSURE},
    [3] = {.ncols = SPOOL_EVENT_NCOLS, .max_state = EVENT_UNSURE},
    [4] = {.ncols = SPOOL_EVENT_NCOLS, .max_state = EVENT_UNSURE},
};

_Static_assert(SPOOL_FILE_NCOLS == 23, "the files table has 23 columns in every schema version");

const struct spool_event_layout *spool_event_layout(int64_t version)
{
	if (version < 1 || version >= (int64_t)(sizeof(event_layouts) / sizeof(event_layouts[0])))
		return NULL;
	return &event_layouts[version];
}

static int check_version(struct spool *sp, int64_t version, char *err, size_t errlen)
{
	if (version > SPOOL_SCHEMA_VERSION || version < 0) {
		err_set(err, errlen,
		        "spool %s has schema version %" PRId64
		        ", newer than this logmeter understands (%d)",
		        sp->path, version, SPOOL_SCHEMA_VERSION);
		return -1;
	}
	return 0;
}

/* Sets up a read-write handle: WAL, durability, and the schema if the database is new. */
static int setup_read_write(struct spool *sp, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *jm;
	int64_t version;
	int rc, ret = -1;

	if (sqlite3_db_readonly(sp->db, "main") == 1) {
		err_set(err, errlen, "spool %s is not writable", sp->path);
		return -1;
	}
	/* Check before changing anything in a database a newer logmeter owns. */
	if (spool_pragma_int(sp, "PRAGMA user_version", &version, err, errlen) < 0 ||
	    check_version(sp, version, err, errlen) < 0)
		return -1;
	rc = sqlite3_prepare_v2(sp->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		spool_fail(sp, rc, "PRAGMA journal_mode=WAL", err, errlen);
		goto out;
	}
	jm = sqlite3_column_text(st, 0);
	if (jm == NULL || strcmp((const char *)jm, "wal") != 0) {
		err_set(err, errlen, "spool %s: cannot use WAL mode (journal_mode is %s)", sp->path,
		        jm != NULL ? (const char *)jm : "unknown");
		goto out;
	}
	/* A statement left running would keep the schema transaction below from committing. */
	sqlite3_finalize(st);
	st = NULL;
	/* cache_size: 256 KiB of pages instead of SQLite's 2 MiB. Every write appends at the end
	 * of a b-tree and every read walks the batches in order, so few pages are used twice;
	 * the default cache only held the pages of blobs already written, and was an eighth of
	 * the agent's peak memory (bench/ingest.sh: 2.2 MB less, the same CPU per line). */
	if (spool_exec(sp, "PRAGMA synchronous=FULL", "PRAGMA synchronous=FULL", err, errlen) < 0 ||
	    spool_exec(sp, "PRAGMA foreign_keys=ON", "PRAGMA foreign_keys=ON", err, errlen) < 0 ||
	    spool_exec(sp, "PRAGMA cache_size=-256", "PRAGMA cache_size", err, errlen) < 0)
		goto out;
	if (version == SPOOL_SCHEMA_VERSION) {
		ret = spool_exec(sp, spool_extra_schema, "creating file_extra", err, errlen);
		goto out;
	}
	if (spool_exec(sp, "BEGIN IMMEDIATE", "begin", err, errlen) < 0)
		goto out;
	/* Another handle may have created it while this one waited for the lock. */
	if (spool_pragma_int(sp, "PRAGMA user_version", &version, err, errlen) < 0 ||
	    check_version(sp, version, err, errlen) < 0)
		goto rollback;
	if (version != SPOOL_SCHEMA_VERSION) {
		char sql[64];
		int64_t from = version;

		if (version == 0) {
			if (spool_exec(sp, spool_schema_sql, "creating the schema", err, errlen) <
			    0)
				goto rollback;
		} else {
			for (; version < SPOOL_SCHEMA_VERSION; version++) {
				if (spool_migrations[version - 1].sql != NULL &&
				    spool_exec(sp, spool_migrations[version - 1].sql,
				               "migrating the schema", err, errlen) < 0)
					goto rollback;
				if (spool_migrations[version - 1].fn != NULL &&
				    spool_migrations[version - 1].fn(sp, err, errlen) < 0)
					goto rollback;
			}
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", SPOOL_SCHEMA_VERSION);
		if (spool_exec(sp, sql, "setting the schema version", err, errlen) < 0)
			goto rollback;
		if (spool_exec(sp, "COMMIT", "commit", err, errlen) < 0)
			goto rollback;
		if (from > 0)
			log_info("spool %s: migrated from schema %" PRId64 " to %d", sp->path, from,
			         SPOOL_SCHEMA_VERSION);
	} else if (spool_exec(sp, "COMMIT", "commit", err, errlen) < 0) {
		goto rollback;
	}
	ret = spool_exec(sp, spool_extra_schema, "creating file_extra", err, errlen);
	goto out;
rollback:
	if (!sqlite3_get_autocommit(sp->db))
		sqlite3_exec(sp->db, "ROLLBACK", NULL, NULL, NULL);
out:
	sqlite3_finalize(st);
	return ret;
}

static int setup_read_only(struct spool *sp, char *err, size_t errlen)
{
	int64_t version;

	if (spool_pragma_int(sp, "PRAGMA user_version", &version, err, errlen) < 0 ||
	    check_version(sp, version, err, errlen) < 0)
		return -1;
	if (version == 0) {
		err_set(err, errlen, "spool %s is empty: the agent has not run yet", sp->path);
		return -1;
	}
	if (version < SPOOL_SCHEMA_VERSION) {
		/* Reading it would need the old layout; the agent migrates it when it starts. */
		err_set(err, errlen,
		        "spool %s has schema version %" PRId64 " of an earlier logmeter: start the "
		        "agent (logmeter run) once to migrate it to version %d",
		        sp->path, version, SPOOL_SCHEMA_VERSION);
		return -1;
	}
	return 0;
}

/* Steps `sql` to its end, discarding rows. Returns 0 or -1 (err names `what`). */
static int read_all(struct spool *sp, const char *sql, const char *what, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);

	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = SQLITE_OK;
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, what, err, errlen);
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}

/* PRAGMA quick_check: "ok", or up to 100 rows naming problems. */
static int quick_check(struct spool *sp, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *first = NULL;
	char first_copy[256] = "";
	int rc = sqlite3_prepare_v2(sp->db, "PRAGMA quick_check(100)", -1, &st, NULL);
	int rows = 0, ok = 0;

	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		first = sqlite3_column_text(st, 0);
		if (rows++ == 0 && first != NULL) {
			snprintf(first_copy, sizeof(first_copy), "%s", (const char *)first);
			ok = strcmp(first_copy, "ok") == 0;
		}
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "PRAGMA quick_check", err, errlen);
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	if (rows == 1 && ok)
		return 0;
	err_set(err, errlen, "spool %s is damaged: PRAGMA quick_check: %s%s%s", sp->path,
	        first_copy, rows > 1 ? " (and more)" : "", spool_damage_hint(SQLITE_CORRUPT));
	return -1;
}

int spool_schema_setup(struct spool *sp, char *err, size_t errlen)
{
	return sp->mode == SPOOL_READ_ONLY ? setup_read_only(sp, err, errlen)
	                                   : setup_read_write(sp, err, errlen);
}

int spool_verify(struct spool *sp, char *err, size_t errlen)
{
	struct stat st;
	long long bytes = 0;
	char *wal = NULL;
	int ret = -1;

	if (sp == NULL) {
		err_set(err, errlen, "spool_verify: invalid arguments");
		return -1;
	}
	if (stat(sp->path, &st) == 0)
		bytes += st.st_size;
	if (asprintf(&wal, "%s-wal", sp->path) >= 0) {
		if (stat(wal, &st) == 0)
			bytes += st.st_size;
		free(wal);
	}
	if (bytes <= SPOOL_QUICK_CHECK_MAX_BYTES) {
		ret = quick_check(sp, err, errlen);
	} else {
		/* NOT INDEXED: read the table itself, not only an index that covers the query. */
		ret = read_all(sp, "SELECT * FROM files NOT INDEXED", "reading the file records",
		               err, errlen);
		if (ret == 0)
			ret = read_all(sp, "SELECT * FROM rules NOT INDEXED", "reading the rules",
			               err, errlen);
		if (ret == 0)
			ret = read_all(sp, "SELECT * FROM outcomes NOT INDEXED",
			               "reading the outcomes", err, errlen);
		if (ret == 0)
			ret = read_all(
			    sp,
			    "SELECT * FROM batches WHERE id + n > (SELECT delivered_through"
			    " FROM queue) OR id >= (SELECT max(id) FROM batches) - 1000"
			    " ORDER BY id",
			    "reading the pending and newest batches", err, errlen);
	}
	/* Leave a damaged file as it is: no checkpoint of the WAL into it at close. */
	if (ret != 0)
		sqlite3_db_config(sp->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	return ret;
}
