#include "store/spool.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "util/crash.h"
#include "util/log.h"
#include "util/path.h"

#define SPOOL_BUSY_TIMEOUT_MS 10000
#define SPOOL_INSTANCE_KEY "instance"

/* The statements of a handle, prepared once when it is opened. */
enum spool_stmt {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_META_GET,
	ST_META_PUT,
	ST_FILE_FIND,
	ST_FILE_ADD,
	ST_FILE_UPDATE,
	ST_FILES_ALL,
	ST_EVENT_INSERT,
	ST_PENDING,
	ST_MARK,
	ST_COUNTS,
	ST_LAST_ERROR,
	ST_EVENTS_PENDING,
	ST_EVENTS_DELIVERED,
	ST_EVENTS_DEAD,
	ST_EVENTS_UNSURE,
	ST_PRUNE,
	ST_COUNT_
};

struct spool {
	sqlite3 *db;
	char *path;
	enum spool_open_mode mode;
	sqlite3_stmt *st[ST_COUNT_];
	int last_rc, last_errno; /* of the last failure sp_err reported (spool_failed_full) */
};

/* The events table of schema 2 under a given name (a migration builds it beside the old one).
 * The state (enum event_state) is checked when a row is read, not by a CHECK constraint. */
#define EVENTS_TABLE(name)                                                                         \
	"CREATE TABLE " name " ("                                                                  \
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
	" first_unknown INTEGER,"                                                                  \
	" UNIQUE (file_id, line_offset, rule));"

#define EVENTS_INDEXES                                                                             \
	"CREATE INDEX events_pending ON events(id) WHERE state = 0;"                               \
	"CREATE INDEX events_dead ON events(id) WHERE state = 2;"                                  \
	"CREATE INDEX events_unsure ON events(id) WHERE state = 3;"                                \
	"CREATE INDEX events_delivered ON events(delivered_at) WHERE state = 1;"

/* Uniqueness follows the line's position (file, offset, rule), which grows at the end of the
 * index, never the random-looking identifier: see "Spool cost" in the design notes. The partial
 * indexes keep the sender's scan of pending events and the dead letters independent of the
 * number of delivered events kept for replay. */
static const char spool_schema[] =
    "CREATE TABLE meta ("
    " key TEXT PRIMARY KEY,"
    " value TEXT NOT NULL);"
    "CREATE TABLE files ("
    " id INTEGER PRIMARY KEY,"
    " uid TEXT NOT NULL UNIQUE,"
    " source TEXT NOT NULL,"
    " path TEXT NOT NULL,"
    " dev INTEGER NOT NULL,"
    " ino INTEGER NOT NULL,"
    " fp_len INTEGER NOT NULL DEFAULT 0,"
    " fp_hash BLOB,"
    " \"offset\" INTEGER NOT NULL DEFAULT 0,"
    " check_len INTEGER NOT NULL DEFAULT 0,"
    " check_hash BLOB,"
    " size INTEGER NOT NULL DEFAULT 0,"
    " state TEXT NOT NULL,"
    " lines INTEGER NOT NULL DEFAULT 0,"
    " matched INTEGER NOT NULL DEFAULT 0,"
    " unmatched INTEGER NOT NULL DEFAULT 0,"
    " invalid INTEGER NOT NULL DEFAULT 0,"
    " long_lines INTEGER NOT NULL DEFAULT 0,"
    " nul_bytes INTEGER NOT NULL DEFAULT 0,"
    " events INTEGER NOT NULL DEFAULT 0,"
    " resets INTEGER NOT NULL DEFAULT 0,"
    " first_seen INTEGER NOT NULL,"
    " updated INTEGER NOT NULL);"
    "CREATE INDEX files_identity ON files(source, dev, ino);" EVENTS_TABLE("events") EVENTS_INDEXES;

/* Schema 1 had no key_generation or first_unknown, and a CHECK on the state that allowed no
 * unsure events (and cost a temporary b-tree at every INSERT and UPDATE). SQLite cannot change a
 * CHECK in place (https://www.sqlite.org/lang_altertable.html#otheralter): the table is copied
 * into the new layout, in the transaction that sets user_version. */
static const char spool_migrate_1_2[] = EVENTS_TABLE(
    "events_v2") "INSERT INTO events_v2(id, file_id, line_offset, rule, identifier, event_name,"
                 " payload_customer_key, payload_value_key, customer_key, customer, value, "
                 "timestamp, state,"
                 " attempts, last_error, created, delivered_at, updated)"
                 " SELECT id, file_id, line_offset, rule, identifier, event_name, "
                 "payload_customer_key,"
                 " payload_value_key, customer_key, customer, value, timestamp, state, attempts, "
                 "last_error,"
                 " created, delivered_at, updated FROM events;"
                 "DROP TABLE events;"
                 "ALTER TABLE events_v2 RENAME TO events;" EVENTS_INDEXES;

/* Migrations by PRAGMA user_version: migrations[i] takes a spool of schema i + 1 to i + 2. A new
 * schema version adds its step here; a spool is never refused for being older. */
static const char *const spool_migrations[] = {spool_migrate_1_2};

_Static_assert(sizeof(spool_migrations) / sizeof(spool_migrations[0]) == SPOOL_SCHEMA_VERSION - 1,
               "one migration per schema version after the first");

#define FILE_COLUMNS                                                                               \
	"id, uid, source, path, dev, ino, fp_len, fp_hash, \"offset\", check_len, check_hash, "    \
	"size, state, lines, matched, unmatched, invalid, long_lines, nul_bytes, events, resets, " \
	"first_seen, updated"

#define EVENT_COLUMNS                                                                              \
	"id, file_id, line_offset, rule, identifier, event_name, payload_customer_key, "           \
	"payload_value_key, customer_key, customer, value, timestamp, state, attempts, "           \
	"last_error, created, delivered_at, key_generation, first_unknown"

/* ST_FILE_ADD and ST_FILE_UPDATE share parameters ?2 to ?20 (see bind_file). */
static const char *const spool_sql[ST_COUNT_] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_PUT] = "INSERT INTO meta(key, value) VALUES (?1, ?2)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [ST_FILE_FIND] = "SELECT " FILE_COLUMNS " FROM files"
                     " WHERE source = ?1 AND dev = ?2 AND ino = ?3 ORDER BY id DESC LIMIT 1",
    [ST_FILE_ADD] = "INSERT INTO files(uid, path, dev, ino, fp_len, fp_hash, \"offset\","
                    " check_len, check_hash, size, state, lines, matched, unmatched, invalid,"
                    " long_lines, nul_bytes, events, resets, updated, source, first_seen)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
                    " ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
    [ST_FILE_UPDATE] = "UPDATE files SET path = ?2, dev = ?3, ino = ?4, fp_len = ?5,"
                       " fp_hash = ?6, \"offset\" = ?7, check_len = ?8, check_hash = ?9,"
                       " size = ?10, state = ?11, lines = ?12, matched = ?13,"
                       " unmatched = ?14, invalid = ?15, long_lines = ?16, nul_bytes = ?17,"
                       " events = ?18, resets = ?19, updated = ?20 WHERE id = ?1",
    [ST_FILES_ALL] = "SELECT " FILE_COLUMNS " FROM files ORDER BY source, id",
    /* Only the position's conflict is absorbed; any other constraint still fails the batch. */
    [ST_EVENT_INSERT] = "INSERT INTO events(file_id, line_offset, rule, identifier, event_name,"
                        " payload_customer_key, payload_value_key, customer_key, customer,"
                        " value, timestamp, state, attempts, last_error, created,"
                        " delivered_at, updated)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                        " ?15, ?16, ?17)"
                        " ON CONFLICT(file_id, line_offset, rule) DO NOTHING",
    /* The literal "state = 0" lets the planner use the partial index events_pending. */
    [ST_PENDING] = "SELECT " EVENT_COLUMNS " FROM events"
                   " WHERE state = 0 AND id > ?1 ORDER BY id LIMIT ?2",
    [ST_MARK] = "UPDATE events SET state = ?2, attempts = ?3, updated = ?4,"
                " last_error = coalesce(?5, last_error), delivered_at = ?6,"
                " key_generation = ?7, first_unknown = ?8 WHERE id = ?1",
    /* The pending and dead counts come from their partial indexes; only the total scans. */
    [ST_COUNTS] = "SELECT (SELECT count(*) FROM events WHERE state = 0),"
                  " (SELECT count(*) FROM events WHERE state = 2),"
                  " (SELECT count(*) FROM events WHERE state = 3),"
                  " (SELECT count(*) FROM events)",
    [ST_LAST_ERROR] = "SELECT last_error FROM events WHERE state IN (0, 2, 3)"
                      " AND last_error IS NOT NULL AND last_error <> ''"
                      " ORDER BY updated DESC, id DESC LIMIT 1",
    [ST_EVENTS_PENDING] = "SELECT " EVENT_COLUMNS " FROM events WHERE state = 0 ORDER BY id",
    [ST_EVENTS_DELIVERED] = "SELECT " EVENT_COLUMNS " FROM events WHERE state = 1 ORDER BY id",
    [ST_EVENTS_DEAD] = "SELECT " EVENT_COLUMNS " FROM events WHERE state = 2 ORDER BY id",
    [ST_EVENTS_UNSURE] = "SELECT " EVENT_COLUMNS " FROM events WHERE state = 3 ORDER BY id",
    [ST_PRUNE] = "DELETE FROM events WHERE state = 1 AND delivered_at < ?1",
};

static const char *const sqlite_code_names[] = {
    [SQLITE_OK] = "SQLITE_OK",
    [SQLITE_ERROR] = "SQLITE_ERROR",
    [SQLITE_INTERNAL] = "SQLITE_INTERNAL",
    [SQLITE_PERM] = "SQLITE_PERM",
    [SQLITE_ABORT] = "SQLITE_ABORT",
    [SQLITE_BUSY] = "SQLITE_BUSY",
    [SQLITE_LOCKED] = "SQLITE_LOCKED",
    [SQLITE_NOMEM] = "SQLITE_NOMEM",
    [SQLITE_READONLY] = "SQLITE_READONLY",
    [SQLITE_INTERRUPT] = "SQLITE_INTERRUPT",
    [SQLITE_IOERR] = "SQLITE_IOERR",
    [SQLITE_CORRUPT] = "SQLITE_CORRUPT",
    [SQLITE_NOTFOUND] = "SQLITE_NOTFOUND",
    [SQLITE_FULL] = "SQLITE_FULL",
    [SQLITE_CANTOPEN] = "SQLITE_CANTOPEN",
    [SQLITE_PROTOCOL] = "SQLITE_PROTOCOL",
    [SQLITE_EMPTY] = "SQLITE_EMPTY",
    [SQLITE_SCHEMA] = "SQLITE_SCHEMA",
    [SQLITE_TOOBIG] = "SQLITE_TOOBIG",
    [SQLITE_CONSTRAINT] = "SQLITE_CONSTRAINT",
    [SQLITE_MISMATCH] = "SQLITE_MISMATCH",
    [SQLITE_MISUSE] = "SQLITE_MISUSE",
    [SQLITE_NOLFS] = "SQLITE_NOLFS",
    [SQLITE_AUTH] = "SQLITE_AUTH",
    [SQLITE_FORMAT] = "SQLITE_FORMAT",
    [SQLITE_RANGE] = "SQLITE_RANGE",
    [SQLITE_NOTADB] = "SQLITE_NOTADB",
    [SQLITE_NOTICE] = "SQLITE_NOTICE",
    [SQLITE_WARNING] = "SQLITE_WARNING",
};

static const char *sqlite_code_name(int rc)
{
	int primary = rc & 0xff;

	if (primary == SQLITE_ROW)
		return "SQLITE_ROW";
	if (primary == SQLITE_DONE)
		return "SQLITE_DONE";
	if (primary >= 0 &&
	    (size_t)primary < sizeof(sqlite_code_names) / sizeof(sqlite_code_names[0]) &&
	    sqlite_code_names[primary] != NULL)
		return sqlite_code_names[primary];
	return "SQLITE_UNKNOWN";
}

const char *spool_damage_hint(int rc)
{
	if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
		return " (the spool file is damaged: stop logmeter, then run `logmeter spool check "
		       "-c FILE` and `logmeter spool recover -c FILE`; see docs/spool.md)";
	return "";
}

/* "spool PATH: WHAT: SQLITE_FULL: database or disk is full". Called right after the failing
 * call, before a ROLLBACK replaces the connection's message. */
static void sp_err(struct spool *sp, int rc, const char *what, char *err, size_t errlen)
{
	const char *msg = sp->db != NULL ? sqlite3_errmsg(sp->db) : sqlite3_errstr(rc);

	sp->last_rc = rc;
	sp->last_errno = sp->db != NULL ? sqlite3_system_errno(sp->db) : 0;

	err_set(err, errlen, "spool %s: %s: %s: %s%s", sp->path, what, sqlite_code_name(rc), msg,
	        spool_damage_hint(rc));
}

/* Leaves a statement ready for its next use, holding no pointer into the caller's memory. */
static void st_end(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* The bind helpers keep the first error in *rc so a statement's bindings read as one block. */
static void b_int(sqlite3_stmt *st, int i, int64_t v, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_int64(st, i, v);
}

static void b_null(sqlite3_stmt *st, int i, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_null(st, i);
}

/* Binds a string field of a fixed-size buffer: never reads past `max` bytes, even if the field
 * lacks its NUL. The caller keeps it alive until st_end. */
static void b_text(sqlite3_stmt *st, int i, const char *s, size_t max, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_text(st, i, s, (int)strnlen(s, max), SQLITE_STATIC);
}

static void b_blob(sqlite3_stmt *st, int i, const void *p, int len, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_blob(st, i, p, len, SQLITE_STATIC);
}

/* Copies a text column into `out` (`outlen` >= 1 bytes), cut if needed at a UTF-8 character
 * boundary so that what is cut stays valid text for JSON export. */
static void col_text(sqlite3_stmt *st, int i, char *out, size_t outlen)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	size_t len = (size_t)sqlite3_column_bytes(st, i);

	if (s == NULL)
		len = 0;
	if (len > outlen - 1) {
		len = outlen - 1;
		/* Back off continuation bytes, then the lead byte they belonged to. */
		while (len > 0 && (s[len] & 0xc0) == 0x80)
			len--;
	}
	if (len > 0)
		memcpy(out, s, len);
	out[len] = '\0';
}

/* A hash column: anything but a blob of SPOOL_HASH_LEN bytes counts as absent. */
static void col_hash(sqlite3_stmt *st, int i, unsigned char out[SPOOL_HASH_LEN], int64_t *len)
{
	const void *p = sqlite3_column_blob(st, i);
	int n = sqlite3_column_bytes(st, i);

	if (p == NULL || n != SPOOL_HASH_LEN || *len < 0) {
		memset(out, 0, SPOOL_HASH_LEN);
		*len = 0;
		return;
	}
	memcpy(out, p, SPOOL_HASH_LEN);
}

static void row_file(sqlite3_stmt *st, struct spool_file *f)
{
	memset(f, 0, sizeof(*f));
	f->id = sqlite3_column_int64(st, 0);
	col_text(st, 1, f->uid, sizeof(f->uid));
	col_text(st, 2, f->source, sizeof(f->source));
	col_text(st, 3, f->path, sizeof(f->path));
	f->dev = (uint64_t)sqlite3_column_int64(st, 4);
	f->ino = (uint64_t)sqlite3_column_int64(st, 5);
	f->fp_len = sqlite3_column_int64(st, 6);
	if (f->fp_len > SPOOL_FP_MAX)
		f->fp_len = -1; /* out of range: col_hash treats it as absent */
	col_hash(st, 7, f->fp_hash, &f->fp_len);
	f->offset = sqlite3_column_int64(st, 8);
	f->check_len = sqlite3_column_int64(st, 9);
	col_hash(st, 10, f->check_hash, &f->check_len);
	f->size = sqlite3_column_int64(st, 11);
	col_text(st, 12, f->state, sizeof(f->state));
	f->counters.lines = sqlite3_column_int64(st, 13);
	f->counters.matched = sqlite3_column_int64(st, 14);
	f->counters.unmatched = sqlite3_column_int64(st, 15);
	f->counters.invalid = sqlite3_column_int64(st, 16);
	f->counters.long_lines = sqlite3_column_int64(st, 17);
	f->counters.nul_bytes = sqlite3_column_int64(st, 18);
	f->counters.events = sqlite3_column_int64(st, 19);
	f->counters.resets = sqlite3_column_int64(st, 20);
	f->first_seen = sqlite3_column_int64(st, 21);
	f->updated = sqlite3_column_int64(st, 22);
}

static int row_event(const struct spool *sp, sqlite3_stmt *st, struct event *ev, char *err,
                     size_t errlen)
{
	int64_t state;

	memset(ev, 0, sizeof(*ev));
	ev->id = sqlite3_column_int64(st, 0);
	ev->file_id = sqlite3_column_int64(st, 1);
	ev->line_offset = sqlite3_column_int64(st, 2);
	col_text(st, 3, ev->rule, sizeof(ev->rule));
	col_text(st, 4, ev->identifier, sizeof(ev->identifier));
	col_text(st, 5, ev->event_name, sizeof(ev->event_name));
	col_text(st, 6, ev->payload_customer_key, sizeof(ev->payload_customer_key));
	col_text(st, 7, ev->payload_value_key, sizeof(ev->payload_value_key));
	col_text(st, 8, ev->customer_key, sizeof(ev->customer_key));
	col_text(st, 9, ev->customer, sizeof(ev->customer));
	col_text(st, 10, ev->value, sizeof(ev->value));
	ev->timestamp = sqlite3_column_int64(st, 11);
	state = sqlite3_column_int64(st, 12);
	if (state < EVENT_PENDING || state > EVENT_UNSURE) {
		err_set(err, errlen, "spool %s: event %" PRId64 " has an invalid state %" PRId64,
		        sp->path, ev->id, state);
		return -1;
	}
	ev->state = (enum event_state)state;
	ev->attempts = sqlite3_column_int64(st, 13);
	col_text(st, 14, ev->last_error, sizeof(ev->last_error));
	ev->created = sqlite3_column_int64(st, 15);
	ev->delivered_at = sqlite3_column_int64(st, 16);
	ev->key_generation = sqlite3_column_int64(st, 17);
	ev->first_unknown = sqlite3_column_int64(st, 18);
	return 0;
}

/* Steps a statement that returns no row and ends it. */
static int st_run(struct spool *sp, enum spool_stmt which, const char *what, char *err,
                  size_t errlen)
{
	sqlite3_stmt *st = sp->st[which];
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		sp_err(sp, rc, what, err, errlen);
		st_end(st);
		return -1;
	}
	st_end(st);
	return 0;
}

static int tx_begin(struct spool *sp, char *err, size_t errlen)
{
	return st_run(sp, ST_BEGIN, "begin", err, errlen);
}

/* Ends a failed transaction; the caller's err already says why it failed. */
static void tx_rollback(struct spool *sp)
{
	int rc;

	/* A failed statement may already have rolled the transaction back. */
	if (sqlite3_get_autocommit(sp->db))
		return;
	rc = sqlite3_step(sp->st[ST_ROLLBACK]);
	if (rc != SQLITE_DONE)
		log_err("spool %s: rollback: %s: %s", sp->path, sqlite_code_name(rc),
		        sqlite3_errmsg(sp->db));
	st_end(sp->st[ST_ROLLBACK]);
}

static int tx_commit(struct spool *sp, char *err, size_t errlen)
{
	if (st_run(sp, ST_COMMIT, "commit", err, errlen) < 0) {
		tx_rollback(sp);
		return -1;
	}
	return 0;
}

static int random_hex(char *out, size_t nbytes, char *err, size_t errlen)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char buf[32];
	size_t got = 0;

	if (nbytes > sizeof(buf)) {
		err_set(err, errlen, "random_hex: %zu bytes asked, at most %zu", nbytes,
		        sizeof(buf));
		return -1;
	}
	while (got < nbytes) {
		ssize_t r = getrandom(buf + got, nbytes - got, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			err_set(err, errlen, "getrandom: %s", strerror(errno));
			return -1;
		}
		got += (size_t)r;
	}
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hex[buf[i] >> 4];
		out[2 * i + 1] = hex[buf[i] & 0x0f];
	}
	out[2 * nbytes] = '\0';
	return 0;
}

/* Runs a one-row PRAGMA or query and returns its integer value in *out. Prepared per call: these
 * run once per commit at most, so caching them is not worth a slot in the handle's table. */
static int pragma_int(struct spool *sp, const char *sql, int64_t *out, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK) {
		sp_err(sp, rc, sql, err, errlen);
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}

static int exec(struct spool *sp, const char *sql, const char *what, char *err, size_t errlen)
{
	int rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		sp_err(sp, rc, what, err, errlen);
		return -1;
	}
	return 0;
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
	if (pragma_int(sp, "PRAGMA user_version", &version, err, errlen) < 0 ||
	    check_version(sp, version, err, errlen) < 0)
		return -1;
	rc = sqlite3_prepare_v2(sp->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sp_err(sp, rc, "PRAGMA journal_mode=WAL", err, errlen);
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
	if (exec(sp, "PRAGMA synchronous=FULL", "PRAGMA synchronous=FULL", err, errlen) < 0 ||
	    exec(sp, "PRAGMA foreign_keys=ON", "PRAGMA foreign_keys=ON", err, errlen) < 0)
		goto out;
	if (version == SPOOL_SCHEMA_VERSION) {
		ret = 0;
		goto out;
	}
	if (exec(sp, "BEGIN IMMEDIATE", "begin", err, errlen) < 0)
		goto out;
	/* Another handle may have created it while this one waited for the lock. */
	if (pragma_int(sp, "PRAGMA user_version", &version, err, errlen) < 0 ||
	    check_version(sp, version, err, errlen) < 0)
		goto rollback;
	if (version != SPOOL_SCHEMA_VERSION) {
		char sql[64];
		int64_t from = version;

		if (version == 0) {
			if (exec(sp, spool_schema, "creating the schema", err, errlen) < 0)
				goto rollback;
		} else {
			for (; version < SPOOL_SCHEMA_VERSION; version++)
				if (exec(sp, spool_migrations[version - 1], "migrating the schema",
				         err, errlen) < 0)
					goto rollback;
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", SPOOL_SCHEMA_VERSION);
		if (exec(sp, sql, "setting the schema version", err, errlen) < 0)
			goto rollback;
		if (exec(sp, "COMMIT", "commit", err, errlen) < 0)
			goto rollback;
		if (from > 0)
			log_info("spool %s: migrated from schema %" PRId64 " to %d", sp->path, from,
			         SPOOL_SCHEMA_VERSION);
	} else if (exec(sp, "COMMIT", "commit", err, errlen) < 0) {
		goto rollback;
	}
	ret = 0;
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

	if (pragma_int(sp, "PRAGMA user_version", &version, err, errlen) < 0 ||
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

struct spool *spool_open(const char *state_dir, enum spool_open_mode mode, char *err, size_t errlen)
{
	struct spool *sp = NULL;
	struct stat stbuf;
	int flags, rc;

	if (state_dir == NULL || state_dir[0] == '\0') {
		err_set(err, errlen, "spool: no state directory given");
		return NULL;
	}
	if (mode != SPOOL_READ_WRITE && mode != SPOOL_READ_ONLY) {
		err_set(err, errlen, "spool: invalid open mode %d", (int)mode);
		return NULL;
	}
	sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		goto nomem;
	sp->mode = mode;
	if (asprintf(&sp->path, "%s/spool.db", state_dir) < 0) {
		sp->path = NULL;
		goto nomem;
	}
	if (mode == SPOOL_READ_ONLY) {
		if (stat(sp->path, &stbuf) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				err_set(err, errlen, "no spool at %s: the agent has not run yet",
				        sp->path);
			else
				err_set(err, errlen, "spool %s: %s", sp->path, strerror(errno));
			goto fail;
		}
		flags = SQLITE_OPEN_READONLY;
	} else {
		if (path_mkdirs(state_dir, err, errlen) < 0)
			goto fail;
		flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	}
	/* Each thread opens its own handle, so SQLite's per-connection mutex is not needed. */
	rc = sqlite3_open_v2(sp->path, &sp->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (sp->db == NULL)
			goto nomem;
		sp_err(sp, rc, "open", err, errlen);
		goto fail;
	}
	sqlite3_extended_result_codes(sp->db, 1);
	sqlite3_busy_timeout(sp->db, SPOOL_BUSY_TIMEOUT_MS);
	if (mode == SPOOL_READ_ONLY ? setup_read_only(sp, err, errlen) < 0
	                            : setup_read_write(sp, err, errlen) < 0)
		goto fail;
	for (int i = 0; i < ST_COUNT_; i++) {
		rc = sqlite3_prepare_v3(sp->db, spool_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		                        &sp->st[i], NULL);
		if (rc != SQLITE_OK) {
			sp_err(sp, rc, "preparing statements", err, errlen);
			goto fail;
		}
	}
	return sp;
nomem:
	err_set(err, errlen, "spool %s: out of memory",
	        sp != NULL && sp->path != NULL ? sp->path : state_dir);
fail:
	spool_free(sp);
	return NULL;
}

void spool_free(struct spool *sp)
{
	if (sp == NULL)
		return;
	for (int i = 0; i < ST_COUNT_; i++)
		sqlite3_finalize(sp->st[i]);
	if (sp->db != NULL && sqlite3_close(sp->db) != SQLITE_OK)
		log_err("spool %s: close: %s", sp->path, sqlite3_errmsg(sp->db));
	free(sp->path);
	free(sp);
}

/* Reads meta[key] into out. Returns 1 if found, 0 if not, -1 on error. */
static int meta_get(struct spool *sp, const char *key, char *out, size_t outlen, char *err,
                    size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_META_GET];
	int rc = SQLITE_OK, found = 0;

	b_text(st, 1, key, SIZE_MAX, &rc);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			col_text(st, 0, out, outlen);
			found = 1;
			rc = SQLITE_DONE;
		}
	}
	if (rc != SQLITE_DONE) {
		sp_err(sp, rc, "reading meta", err, errlen);
		st_end(st);
		return -1;
	}
	st_end(st);
	return found;
}

static int meta_put(struct spool *sp, const char *key, const char *value, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_META_PUT];
	int rc = SQLITE_OK;

	b_text(st, 1, key, SIZE_MAX, &rc);
	b_text(st, 2, value, SIZE_MAX, &rc);
	if (rc != SQLITE_OK) {
		sp_err(sp, rc, "writing meta", err, errlen);
		st_end(st);
		return -1;
	}
	return st_run(sp, ST_META_PUT, "writing meta", err, errlen);
}

/* Longer than any instance id logmeter writes, so that a longer stored one is noticed. */
#define INSTANCE_BUF 1024

int spool_instance(struct spool *sp, const char *configured, char *out, size_t outlen, char *err,
                   size_t errlen)
{
	char stored[INSTANCE_BUF] = "", fresh[17];
	const char *value;
	int found, in_tx = 0, changed = 0;

	if (sp == NULL || out == NULL || outlen == 0) {
		err_set(err, errlen, "spool_instance: invalid arguments");
		return -1;
	}
	if (configured != NULL && configured[0] == '\0')
		configured = NULL;
	if (configured != NULL && strlen(configured) >= outlen) {
		err_set(err, errlen, "instance id \"%s\" is longer than %zu bytes", configured,
		        outlen - 1);
		return -1;
	}
	/* One transaction, so that two handles starting together agree on a generated id. */
	if (sp->mode == SPOOL_READ_WRITE) {
		if (tx_begin(sp, err, errlen) < 0)
			return -1;
		in_tx = 1;
	}
	found = meta_get(sp, SPOOL_INSTANCE_KEY, stored, sizeof(stored), err, errlen);
	if (found < 0)
		goto fail;
	if (configured != NULL) {
		value = configured;
		changed = found && strcmp(stored, configured) != 0;
	} else if (found) {
		value = stored;
	} else if (sp->mode == SPOOL_READ_ONLY) {
		err_set(err, errlen, "spool %s has no instance id yet: the agent has not run yet",
		        sp->path);
		goto fail;
	} else {
		if (random_hex(fresh, 8, err, errlen) < 0)
			goto fail;
		value = fresh;
	}
	if (strlen(value) >= outlen) {
		err_set(err, errlen, "spool %s: instance id \"%s\" is longer than %zu bytes",
		        sp->path, value, outlen - 1);
		goto fail;
	}
	if (in_tx) {
		if ((!found || changed) && meta_put(sp, SPOOL_INSTANCE_KEY, value, err, errlen) < 0)
			goto fail;
		in_tx = 0;
		if (tx_commit(sp, err, errlen) < 0)
			return -1;
		if (changed)
			log_warn("instance id changed from \"%s\" to \"%s\": new events get "
			         "identifiers in the new namespace",
			         stored, value);
	}
	memcpy(out, value, strlen(value) + 1);
	return 0;
fail:
	if (in_tx)
		tx_rollback(sp);
	return -1;
}

int spool_file_find(struct spool *sp, const char *source, uint64_t dev, uint64_t ino,
                    struct spool_file *out, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc = SQLITE_OK, found = 0;

	if (sp == NULL || source == NULL || out == NULL) {
		err_set(err, errlen, "spool_file_find: invalid arguments");
		return -1;
	}
	st = sp->st[ST_FILE_FIND];
	b_text(st, 1, source, SIZE_MAX, &rc);
	b_int(st, 2, (int64_t)dev, &rc);
	b_int(st, 3, (int64_t)ino, &rc);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			row_file(st, out);
			found = 1;
			rc = SQLITE_DONE;
		}
	}
	if (rc != SQLITE_DONE) {
		sp_err(sp, rc, "finding a file", err, errlen);
		st_end(st);
		return -1;
	}
	st_end(st);
	return found;
}

static int check_file(const struct spool *sp, const struct spool_file *f, char *err, size_t errlen)
{
	if (f->fp_len < 0 || f->fp_len > SPOOL_FP_MAX || f->offset < 0 || f->check_len < 0 ||
	    f->size < 0) {
		err_set(err, errlen,
		        "spool %s: invalid file record %" PRId64 " (fp_len %" PRId64
		        ", offset %" PRId64 ", check_len %" PRId64 ", size %" PRId64 ")",
		        sp->path, f->id, f->fp_len, f->offset, f->check_len, f->size);
		return -1;
	}
	return 0;
}

/* Binds ?2 to ?20 of ST_FILE_ADD and ST_FILE_UPDATE. */
static void bind_file(sqlite3_stmt *st, const struct spool_file *f, int64_t now, int *rc)
{
	b_text(st, 2, f->path, sizeof(f->path), rc);
	b_int(st, 3, (int64_t)f->dev, rc);
	b_int(st, 4, (int64_t)f->ino, rc);
	b_int(st, 5, f->fp_len, rc);
	b_blob(st, 6, f->fp_hash, SPOOL_HASH_LEN, rc);
	b_int(st, 7, f->offset, rc);
	b_int(st, 8, f->check_len, rc);
	b_blob(st, 9, f->check_hash, SPOOL_HASH_LEN, rc);
	b_int(st, 10, f->size, rc);
	b_text(st, 11, f->state, sizeof(f->state), rc);
	b_int(st, 12, f->counters.lines, rc);
	b_int(st, 13, f->counters.matched, rc);
	b_int(st, 14, f->counters.unmatched, rc);
	b_int(st, 15, f->counters.invalid, rc);
	b_int(st, 16, f->counters.long_lines, rc);
	b_int(st, 17, f->counters.nul_bytes, rc);
	b_int(st, 18, f->counters.events, rc);
	b_int(st, 19, f->counters.resets, rc);
	b_int(st, 20, now, rc);
}

int spool_file_add(struct spool *sp, struct spool_file *f, char *err, size_t errlen)
{
	char uid[SPOOL_UID_MAX];
	sqlite3_stmt *st;
	int64_t now = (int64_t)time(NULL);
	int rc = SQLITE_OK;

	if (sp == NULL || f == NULL) {
		err_set(err, errlen, "spool_file_add: invalid arguments");
		return -1;
	}
	if (check_file(sp, f, err, errlen) < 0 || random_hex(uid, 16, err, errlen) < 0)
		return -1;
	if (f->state[0] == '\0')
		snprintf(f->state, sizeof(f->state), "reading");
	st = sp->st[ST_FILE_ADD];
	b_text(st, 1, uid, sizeof(uid), &rc);
	bind_file(st, f, now, &rc);
	b_text(st, 21, f->source, sizeof(f->source), &rc);
	b_int(st, 22, now, &rc);
	if (rc != SQLITE_OK) {
		sp_err(sp, rc, "adding a file", err, errlen);
		st_end(st);
		return -1;
	}
	if (st_run(sp, ST_FILE_ADD, "adding a file", err, errlen) < 0)
		return -1;
	crash_point("spool_file_add"); /* the record (its uid) is committed, nothing read yet */
	f->id = sqlite3_last_insert_rowid(sp->db);
	memcpy(f->uid, uid, sizeof(uid));
	f->first_seen = now;
	f->updated = now;
	return 0;
}

/* Runs ST_FILE_UPDATE for *f; used alone and inside spool_commit's transaction. */
static int file_update(struct spool *sp, const struct spool_file *f, int64_t now, char *err,
                       size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_FILE_UPDATE];
	int rc = SQLITE_OK;

	if (check_file(sp, f, err, errlen) < 0)
		return -1;
	b_int(st, 1, f->id, &rc);
	bind_file(st, f, now, &rc);
	if (rc != SQLITE_OK) {
		sp_err(sp, rc, "updating a file", err, errlen);
		st_end(st);
		return -1;
	}
	if (st_run(sp, ST_FILE_UPDATE, "updating a file", err, errlen) < 0)
		return -1;
	if (sqlite3_changes(sp->db) != 1) {
		err_set(err, errlen, "spool %s: no file record with id %" PRId64, sp->path, f->id);
		return -1;
	}
	return 0;
}

int spool_file_update(struct spool *sp, const struct spool_file *f, char *err, size_t errlen)
{
	if (sp == NULL || f == NULL) {
		err_set(err, errlen, "spool_file_update: invalid arguments");
		return -1;
	}
	return file_update(sp, f, (int64_t)time(NULL), err, errlen);
}

static int event_insert(struct spool *sp, struct event *ev, int64_t now, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_EVENT_INSERT];
	int rc = SQLITE_OK;

	if (ev->state != EVENT_PENDING && ev->state != EVENT_DELIVERED && ev->state != EVENT_DEAD) {
		err_set(err, errlen, "spool %s: event at offset %" PRId64 " has invalid state %d",
		        sp->path, ev->line_offset, (int)ev->state);
		return -1;
	}
	b_int(st, 1, ev->file_id, &rc);
	b_int(st, 2, ev->line_offset, &rc);
	b_text(st, 3, ev->rule, sizeof(ev->rule), &rc);
	b_text(st, 4, ev->identifier, sizeof(ev->identifier), &rc);
	b_text(st, 5, ev->event_name, sizeof(ev->event_name), &rc);
	b_text(st, 6, ev->payload_customer_key, sizeof(ev->payload_customer_key), &rc);
	b_text(st, 7, ev->payload_value_key, sizeof(ev->payload_value_key), &rc);
	b_text(st, 8, ev->customer_key, sizeof(ev->customer_key), &rc);
	b_text(st, 9, ev->customer, sizeof(ev->customer), &rc);
	b_text(st, 10, ev->value, sizeof(ev->value), &rc);
	b_int(st, 11, ev->timestamp, &rc);
	b_int(st, 12, (int64_t)ev->state, &rc);
	b_int(st, 13, ev->attempts, &rc);
	if (ev->last_error[0] != '\0')
		b_text(st, 14, ev->last_error, sizeof(ev->last_error), &rc);
	else
		b_null(st, 14, &rc);
	b_int(st, 15, now, &rc);
	if (ev->state == EVENT_DELIVERED && ev->delivered_at > 0)
		b_int(st, 16, ev->delivered_at, &rc);
	else
		b_null(st, 16, &rc);
	b_int(st, 17, now, &rc);
	if (rc != SQLITE_OK) {
		sp_err(sp, rc, "inserting an event", err, errlen);
		st_end(st);
		return -1;
	}
	if (st_run(sp, ST_EVENT_INSERT, "inserting an event", err, errlen) < 0)
		return -1;
	/* 0 changes: the line's event was already spooled by an earlier read. */
	if (sqlite3_changes(sp->db) == 1) {
		ev->id = sqlite3_last_insert_rowid(sp->db);
		ev->created = now;
	} else {
		ev->id = 0;
	}
	return 0;
}

int spool_commit(struct spool *sp, const struct spool_file *f, struct event *events, size_t n,
                 char *err, size_t errlen)
{
	int64_t now = (int64_t)time(NULL);
	size_t i;

	if (sp == NULL || f == NULL || (events == NULL && n > 0)) {
		err_set(err, errlen, "spool_commit: invalid arguments");
		return -1;
	}
	sp->last_rc = sp->last_errno = 0; /* spool_failed_full describes this call */
	if (tx_begin(sp, err, errlen) < 0)
		return -1;
	for (i = 0; i < n; i++)
		if (event_insert(sp, &events[i], now, err, errlen) < 0)
			goto fail;
	if (file_update(sp, f, now, err, errlen) < 0)
		goto fail;
	crash_point("spool_commit_inside"); /* all written, not committed: none of it counts */
	if (tx_commit(sp, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	tx_rollback(sp);
	/* Nothing was committed, so no event has a row. */
	for (i = 0; i < n; i++)
		events[i].id = 0;
	return -1;
}

int spool_pending(struct spool *sp, int64_t after_id, struct event *out, size_t max, size_t *n,
                  char *err, size_t errlen)
{
	sqlite3_stmt *st;
	size_t got = 0;
	int rc = SQLITE_OK;

	if (sp == NULL || n == NULL || (out == NULL && max > 0)) {
		err_set(err, errlen, "spool_pending: invalid arguments");
		return -1;
	}
	*n = 0;
	if (max == 0)
		return 0;
	st = sp->st[ST_PENDING];
	b_int(st, 1, after_id, &rc);
	b_int(st, 2, max > INT64_MAX ? INT64_MAX : (int64_t)max, &rc);
	while (rc == SQLITE_OK && got < max) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			if (row_event(sp, st, &out[got], err, errlen) < 0) {
				st_end(st);
				return -1;
			}
			got++;
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK && rc != SQLITE_DONE) {
		sp_err(sp, rc, "reading pending events", err, errlen);
		st_end(st);
		return -1;
	}
	st_end(st);
	*n = got;
	return 0;
}

int spool_mark(struct spool *sp, const struct spool_mark *marks, size_t n, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	size_t i;
	int rc;

	if (sp == NULL || (marks == NULL && n > 0)) {
		err_set(err, errlen, "spool_mark: invalid arguments");
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (marks[i].state < EVENT_PENDING || marks[i].state > EVENT_UNSURE ||
		    marks[i].key_generation < 0) {
			err_set(err, errlen, "spool_mark: event %" PRId64 ": invalid state %d",
			        marks[i].id, (int)marks[i].state);
			return -1;
		}
	}
	if (n == 0)
		return 0;
	if (tx_begin(sp, err, errlen) < 0)
		return -1;
	st = sp->st[ST_MARK];
	for (i = 0; i < n; i++) {
		const struct spool_mark *m = &marks[i];

		rc = SQLITE_OK;
		b_int(st, 1, m->id, &rc);
		b_int(st, 2, (int64_t)m->state, &rc);
		b_int(st, 3, m->attempts, &rc);
		b_int(st, 4, m->when, &rc);
		if (m->error != NULL)
			b_text(st, 5, m->error, SIZE_MAX, &rc);
		else
			b_null(st, 5, &rc);
		/* Only a delivered event has a delivery time; a replayed one loses it. */
		if (m->state == EVENT_DELIVERED)
			b_int(st, 6, m->when, &rc);
		else
			b_null(st, 6, &rc);
		b_int(st, 7, m->key_generation, &rc);
		if (m->first_unknown > 0)
			b_int(st, 8, m->first_unknown, &rc);
		else
			b_null(st, 8, &rc);
		if (rc != SQLITE_OK) {
			sp_err(sp, rc, "marking events", err, errlen);
			st_end(st);
			goto fail;
		}
		/* An id that no longer exists has nothing to mark: not an error. */
		if (st_run(sp, ST_MARK, "marking events", err, errlen) < 0)
			goto fail;
	}
	crash_point("spool_mark_inside"); /* marks written, not committed: all still pending */
	return tx_commit(sp, err, errlen);
fail:
	tx_rollback(sp);
	return -1;
}

int spool_counts(struct spool *sp, struct spool_counts *out, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc;

	if (sp == NULL || out == NULL) {
		err_set(err, errlen, "spool_counts: invalid arguments");
		return -1;
	}
	st = sp->st[ST_COUNTS];
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sp_err(sp, rc, "counting events", err, errlen);
		st_end(st);
		return -1;
	}
	out->pending = sqlite3_column_int64(st, 0);
	out->dead = sqlite3_column_int64(st, 1);
	out->unsure = sqlite3_column_int64(st, 2);
	out->delivered = sqlite3_column_int64(st, 3) - out->pending - out->dead - out->unsure;
	st_end(st);
	return 0;
}

int spool_last_error(struct spool *sp, char *out, size_t outlen, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc;

	if (sp == NULL || out == NULL || outlen == 0) {
		err_set(err, errlen, "spool_last_error: invalid arguments");
		return -1;
	}
	st = sp->st[ST_LAST_ERROR];
	out[0] = '\0';
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		col_text(st, 0, out, outlen);
		rc = SQLITE_DONE;
	}
	if (rc != SQLITE_DONE) {
		sp_err(sp, rc, "reading the last error", err, errlen);
		st_end(st);
		return -1;
	}
	st_end(st);
	return 0;
}

int spool_files_foreach(struct spool *sp, int (*cb)(const struct spool_file *f, void *ud), void *ud,
                        char *err, size_t errlen)
{
	struct spool_file *f = NULL;
	sqlite3_stmt *st;
	int rc, ret = -1;

	if (sp == NULL || cb == NULL) {
		err_set(err, errlen, "spool_files_foreach: invalid arguments");
		return -1;
	}
	/* A record holds a 4 KiB path: keep it off the caller's stack. */
	f = malloc(sizeof(*f));
	if (f == NULL) {
		err_set(err, errlen, "spool %s: out of memory", sp->path);
		return -1;
	}
	st = sp->st[ST_FILES_ALL];
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_file(st, f);
		if (cb(f, ud) < 0) {
			err_set(err, errlen, "spool %s: listing files: stopped by the callback",
			        sp->path);
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		sp_err(sp, rc, "listing files", err, errlen);
		goto out;
	}
	ret = 0;
out:
	st_end(st);
	free(f);
	return ret;
}

int spool_events_foreach(struct spool *sp, enum event_state state,
                         int (*cb)(const struct event *ev, void *ud), void *ud, char *err,
                         size_t errlen)
{
	struct event *ev = NULL;
	sqlite3_stmt *st;
	int rc, ret = -1;

	if (sp == NULL || cb == NULL) {
		err_set(err, errlen, "spool_events_foreach: invalid arguments");
		return -1;
	}
	switch (state) {
	case EVENT_PENDING:
		st = sp->st[ST_EVENTS_PENDING];
		break;
	case EVENT_DELIVERED:
		st = sp->st[ST_EVENTS_DELIVERED];
		break;
	case EVENT_DEAD:
		st = sp->st[ST_EVENTS_DEAD];
		break;
	case EVENT_UNSURE:
		st = sp->st[ST_EVENTS_UNSURE];
		break;
	default:
		err_set(err, errlen, "spool_events_foreach: invalid state %d", (int)state);
		return -1;
	}
	ev = malloc(sizeof(*ev));
	if (ev == NULL) {
		err_set(err, errlen, "spool %s: out of memory", sp->path);
		return -1;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (row_event(sp, st, ev, err, errlen) < 0)
			goto out;
		if (cb(ev, ud) < 0) {
			err_set(err, errlen, "spool %s: listing events: stopped by the callback",
			        sp->path);
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		sp_err(sp, rc, "listing events", err, errlen);
		goto out;
	}
	ret = 0;
out:
	st_end(st);
	free(ev);
	return ret;
}

int spool_prune_delivered(struct spool *sp, int64_t before, int64_t *deleted, char *err,
                          size_t errlen)
{
	sqlite3_stmt *st;
	int rc = SQLITE_OK;

	if (sp == NULL) {
		err_set(err, errlen, "spool_prune_delivered: invalid arguments");
		return -1;
	}
	st = sp->st[ST_PRUNE];
	b_int(st, 1, before, &rc);
	if (rc != SQLITE_OK) {
		sp_err(sp, rc, "pruning delivered events", err, errlen);
		st_end(st);
		return -1;
	}
	if (st_run(sp, ST_PRUNE, "pruning delivered events", err, errlen) < 0)
		return -1;
	if (deleted != NULL)
		*deleted = sqlite3_changes64(sp->db);
	return 0;
}

/* ---- durability, integrity, replay ---- */

int spool_set_durability(struct spool *sp, enum spool_durability d, char *err, size_t errlen)
{
	const char *sql;

	if (sp == NULL || (d != SPOOL_DURABILITY_STRICT && d != SPOOL_DURABILITY_NORMAL)) {
		err_set(err, errlen, "spool_set_durability: invalid arguments");
		return -1;
	}
	sql =
	    d == SPOOL_DURABILITY_STRICT ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
	return exec(sp, sql, sql, err, errlen);
}

/* Steps `sql` to its end, discarding rows. Returns 0 or -1 (err names `what`). */
static int read_all(struct spool *sp, const char *sql, const char *what, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);

	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = SQLITE_OK;
	if (rc != SQLITE_DONE) {
		sp_err(sp, rc, what, err, errlen);
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
		sp_err(sp, rc, "PRAGMA quick_check", err, errlen);
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
			ret = read_all(sp, "SELECT * FROM events WHERE state = 0 ORDER BY id",
			               "reading the pending events", err, errlen);
		if (ret == 0)
			ret = read_all(sp, "SELECT * FROM events ORDER BY id DESC LIMIT 1000",
			               "reading the newest events", err, errlen);
	}
	/* Leave a damaged file as it is: no checkpoint of the WAL into it at close. */
	if (ret != 0)
		sqlite3_db_config(sp->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	return ret;
}

#define REPLAY_BATCH 500

/* The ids spool_replay selects, in id order. */
static int replay_select(struct spool *sp, const struct spool_replay *rp, int64_t **ids, size_t *n,
                         char *err, size_t errlen)
{
	/* The literal state lets the planner use the partial indexes events_dead and
	 * events_delivered; a delivered event's updated time is its delivered_at. */
	static const char sql_dead[] =
	    "SELECT id FROM events WHERE state = 2 AND coalesce(updated, 0) >= ?1"
	    " AND (?2 IS NULL OR rule = ?2) AND (?3 IS NULL OR instr(coalesce(last_error, ''), ?3) "
	    "> 0)"
	    " ORDER BY id";
	static const char sql_delivered[] =
	    "SELECT id FROM events WHERE state = 1 AND delivered_at >= ?1"
	    " AND (?2 IS NULL OR rule = ?2) AND (?3 IS NULL OR instr(coalesce(last_error, ''), ?3) "
	    "> 0)"
	    " ORDER BY id";
	static const char sql_unsure[] =
	    "SELECT id FROM events WHERE state = 3 AND coalesce(updated, 0) >= ?1"
	    " AND (?2 IS NULL OR rule = ?2) AND (?3 IS NULL OR instr(coalesce(last_error, ''), ?3) "
	    "> 0)"
	    " ORDER BY id";
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int rc;

	*ids = NULL;
	*n = 0;
	rc = sqlite3_prepare_v2(sp->db,
	                        rp->from == EVENT_DEAD        ? sql_dead
	                        : rp->from == EVENT_DELIVERED ? sql_delivered
	                                                      : sql_unsure,
	                        -1, &st, NULL);
	b_int(st, 1, rp->since, &rc);
	if (rp->rule != NULL)
		b_text(st, 2, rp->rule, SIZE_MAX, &rc);
	if (rp->reason != NULL)
		b_text(st, 3, rp->reason, SIZE_MAX, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			size_t ncap = cap ? 2 * cap : 1024;
			int64_t *p = realloc(*ids, ncap * sizeof(*p));

			if (p == NULL) {
				err_set(err, errlen, "spool %s: out of memory", sp->path);
				goto fail;
			}
			*ids = p;
			cap = ncap;
		}
		(*ids)[(*n)++] = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE) {
		sp_err(sp, rc, "selecting events to replay", err, errlen);
		goto fail;
	}
	sqlite3_finalize(st);
	return 0;
fail:
	sqlite3_finalize(st);
	free(*ids);
	*ids = NULL;
	*n = 0;
	return -1;
}

int spool_replay(struct spool *sp, const struct spool_replay *rp, int64_t *moved, char *err,
                 size_t errlen)
{
	static const char sql_get[] =
	    "SELECT " EVENT_COLUMNS " FROM events WHERE id = ?1 AND state = ?2";
	/* max(id) + 1: after every row, as an insert would be; the identifier column is what
	 * Stripe sees and it does not change. The next Idempotency-Key generation makes the first
	 * attempt of the replay a fresh request, whatever Stripe saved under the last key; the
	 * identifier still keeps Stripe from counting the event twice within its window. */
	static const char sql_move[] =
	    "UPDATE events SET id = (SELECT max(id) FROM events) + 1, state = 0, customer = ?2,"
	    " last_error = ?3, delivered_at = NULL, updated = ?4,"
	    " key_generation = key_generation + 1, first_unknown = NULL WHERE id = ?1";
	sqlite3_stmt *get = NULL, *move = NULL;
	struct event *ev = NULL;
	int64_t *ids = NULL, count = 0, batch;
	size_t n = 0, i = 0;
	int rc, in_tx = 0, ret = -1;

	if (moved != NULL)
		*moved = 0;
	if (sp == NULL || rp == NULL || rp->decide == NULL ||
	    (rp->from != EVENT_DEAD && rp->from != EVENT_DELIVERED && rp->from != EVENT_UNSURE) ||
	    sp->mode != SPOOL_READ_WRITE) {
		err_set(err, errlen, "spool_replay: invalid arguments");
		return -1;
	}
	ev = malloc(sizeof(*ev));
	if (ev == NULL) {
		err_set(err, errlen, "spool %s: out of memory", sp->path);
		return -1;
	}
	if (replay_select(sp, rp, &ids, &n, err, errlen) < 0)
		goto out;
	rc = sqlite3_prepare_v2(sp->db, sql_get, -1, &get, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(sp->db, sql_move, -1, &move, NULL);
	if (rc != SQLITE_OK) {
		sp_err(sp, rc, "preparing the replay", err, errlen);
		goto out;
	}
	while (i < n) {
		size_t end = i + REPLAY_BATCH < n ? i + REPLAY_BATCH : n;

		batch = 0;
		if (!rp->dry_run) {
			if (tx_begin(sp, err, errlen) < 0)
				goto out;
			in_tx = 1;
		}
		for (; i < end; i++) {
			int d;

			rc = SQLITE_OK;
			b_int(get, 1, ids[i], &rc);
			b_int(get, 2, (int64_t)rp->from, &rc);
			if (rc == SQLITE_OK)
				rc = sqlite3_step(get);
			if (rc == SQLITE_DONE) {
				/* Changed since it was selected (a sender or another replay). */
				st_end(get);
				continue;
			}
			if (rc != SQLITE_ROW) {
				sp_err(sp, rc, "reading an event to replay", err, errlen);
				st_end(get);
				goto out;
			}
			if (row_event(sp, get, ev, err, errlen) < 0) {
				st_end(get);
				goto out;
			}
			st_end(get);
			d = rp->decide(ev, rp->ud);
			if (d < 0) {
				err_set(err, errlen, "spool %s: replay stopped by the caller",
				        sp->path);
				goto out;
			}
			if (d == 0)
				continue;
			batch++;
			if (rp->dry_run)
				continue;
			rc = SQLITE_OK;
			b_int(move, 1, ev->id, &rc);
			b_text(move, 2, ev->customer, sizeof(ev->customer), &rc);
			if (ev->last_error[0] != '\0')
				b_text(move, 3, ev->last_error, sizeof(ev->last_error), &rc);
			else
				b_null(move, 3, &rc);
			b_int(move, 4, rp->now, &rc);
			if (rc == SQLITE_OK)
				rc = sqlite3_step(move);
			if (rc != SQLITE_DONE) {
				sp_err(sp, rc, "moving an event to pending", err, errlen);
				st_end(move);
				goto out;
			}
			st_end(move);
		}
		if (in_tx) {
			in_tx = 0;
			if (tx_commit(sp, err, errlen) < 0)
				goto out; /* rolled back: this batch did not move */
		}
		count += batch;
		if (moved != NULL)
			*moved = count;
	}
	ret = 0;
out:
	if (in_tx)
		tx_rollback(sp);
	sqlite3_finalize(get);
	sqlite3_finalize(move);
	free(ids);
	free(ev);
	return ret;
}

/* ---- room: size, early pruning, full disk (src/space.c) ---- */

/* st_size of `path`, 0 if it does not exist. Returns 0 or -1. */
static int file_size(const char *path, int64_t *out)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		if (errno != ENOENT)
			return -1;
		*out = 0;
		return 0;
	}
	*out = (int64_t)st.st_size;
	return 0;
}

int spool_usage(struct spool *sp, struct spool_usage *out, char *err, size_t errlen)
{
	char wal[PATH_MAX];

	if (sp == NULL || out == NULL) {
		err_set(err, errlen, "spool_usage: invalid arguments");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	if (pragma_int(sp, "PRAGMA page_size", &out->page_size, err, errlen) < 0 ||
	    pragma_int(sp, "PRAGMA page_count", &out->pages, err, errlen) < 0 ||
	    pragma_int(sp, "PRAGMA freelist_count", &out->free_pages, err, errlen) < 0 ||
	    pragma_int(sp, "PRAGMA wal_autocheckpoint", &out->wal_autocheckpoint, err, errlen) < 0)
		return -1;
	snprintf(wal, sizeof(wal), "%s-wal", sp->path);
	if (file_size(sp->path, &out->db_file) < 0 || file_size(wal, &out->wal_file) < 0) {
		err_set(err, errlen, "spool %s: %s", sp->path, strerror(errno));
		return -1;
	}
	return 0;
}

int spool_prune_oldest_delivered(struct spool *sp, int64_t max, int64_t *deleted, char *err,
                                 size_t errlen)
{
	/* The literal "state = 1" and the order by delivered_at let the planner walk the partial
	 * index events_delivered from its oldest end. */
	static const char sql[] = "DELETE FROM events WHERE id IN (SELECT id FROM events"
	                          " WHERE state = 1 ORDER BY delivered_at, id LIMIT ?1)";
	sqlite3_stmt *st = NULL;
	int rc;

	if (deleted != NULL)
		*deleted = 0;
	if (sp == NULL || max < 0) {
		err_set(err, errlen, "spool_prune_oldest_delivered: invalid arguments");
		return -1;
	}
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, max);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		sp_err(sp, rc, "pruning delivered events", err, errlen);
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	if (deleted != NULL)
		*deleted = sqlite3_changes64(sp->db);
	return 0;
}

int spool_checkpoint(struct spool *sp, char *err, size_t errlen)
{
	int rc;

	if (sp == NULL) {
		err_set(err, errlen, "spool_checkpoint: invalid arguments");
		return -1;
	}
	rc = sqlite3_wal_checkpoint_v2(sp->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	if (rc != SQLITE_OK) {
		sp_err(sp, rc, "checkpointing the WAL", err, errlen);
		return -1;
	}
	return 0;
}

int spool_failed_full(const struct spool *sp)
{
	if (sp == NULL)
		return 0;
	if ((sp->last_rc & 0xff) == SQLITE_FULL)
		return 1;
	return (sp->last_rc & 0xff) == SQLITE_IOERR &&
	       (sp->last_errno == ENOSPC || sp->last_errno == EDQUOT);
}

const char *spool_path(const struct spool *sp)
{
	return sp != NULL ? sp->path : NULL;
}
