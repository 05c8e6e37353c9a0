/* commit: what the ingest half writes. A file's record (its identity and checkpoint), and the
 * commit of a batch of events together with the checkpoint after them, in one transaction: the
 * line's position, UNIQUE(file_id, line_offset, rule), absorbs a batch read again. */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "store/spool_int.h"
#include "util/crash.h"
#include "util/log.h"

/* ST_FILE_ADD and ST_FILE_UPDATE share parameters ?2 to ?20 (see bind_file). */
const struct spool_sql spool_commit_sql[] = {
    {ST_FILE_FIND, "SELECT " SPOOL_FILE_COLUMNS " FROM files"
                   " WHERE source = ?1 AND dev = ?2 AND ino = ?3 ORDER BY id DESC LIMIT 1"},
    {ST_FILE_ADD, "INSERT INTO files(uid, path, dev, ino, fp_len, fp_hash, \"offset\","
                  " check_len, check_hash, size, state, lines, matched, unmatched, invalid,"
                  " long_lines, nul_bytes, events, resets, updated, source, first_seen)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
                  " ?16, ?17, ?18, ?19, ?20, ?21, ?22)"},
    {ST_FILE_UPDATE, "UPDATE files SET path = ?2, dev = ?3, ino = ?4, fp_len = ?5,"
                     " fp_hash = ?6, \"offset\" = ?7, check_len = ?8, check_hash = ?9,"
                     " size = ?10, state = ?11, lines = ?12, matched = ?13,"
                     " unmatched = ?14, invalid = ?15, long_lines = ?16, nul_bytes = ?17,"
                     " events = ?18, resets = ?19, updated = ?20 WHERE id = ?1"},
    /* Only the position's conflict is absorbed; any other constraint still fails the batch.
     * The id is the one SQLite would choose, max(id) + 1 (https://www.sqlite.org/autoinc.html),
     * given explicitly so that the queue position can be made from it in the same statement. */
    {ST_EVENT_INSERT, "INSERT INTO events(file_id, line_offset, rule, identifier, event_name,"
                      " payload_customer_key, payload_value_key, customer_key, customer,"
                      " value, timestamp, state, attempts, last_error, created,"
                      " delivered_at, updated, id, queue_seq)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                      " ?15, ?16, ?17, ?18, ?19)"
                      " ON CONFLICT(file_id, line_offset, rule) DO NOTHING"},
    {ST_COUNT_, NULL},
};

/* The counter file_extra keeps for *f. Returns 0 or -1. */
static int file_extra_counters(struct spool *sp, struct spool_file *f, char *err, size_t errlen)
{
	struct spool_file_extra x;

	if (spool_file_extra_get(sp, f->id, &x, err, errlen) < 0)
		return -1;
	f->counters.bad_utf8 = x.bad_utf8;
	return 0;
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
	spool_bind_text(st, 1, source, SIZE_MAX, &rc);
	spool_bind_int(st, 2, (int64_t)dev, &rc);
	spool_bind_int(st, 3, (int64_t)ino, &rc);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			if (spool_row_file(sp, st, out, err, errlen) < 0) {
				spool_st_end(st);
				return -1;
			}
			found = 1;
			rc = SQLITE_DONE;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "finding a file", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	if (found && file_extra_counters(sp, out, err, errlen) < 0)
		return -1;
	return found;
}

static int check_file(const struct spool *sp, const struct spool_file *f, char *err, size_t errlen)
{
	if (f->fp_len < 0 || f->fp_len > SPOOL_FP_MAX || f->offset < 0 || f->check_len < 0 ||
	    f->size < 0 ||
	    (f->state != SPOOL_FILE_READING && f->state != SPOOL_FILE_DRAINED &&
	     f->state != SPOOL_FILE_GONE)) {
		err_set(err, errlen,
		        "spool %s: invalid file record %" PRId64 " (fp_len %" PRId64
		        ", offset %" PRId64 ", check_len %" PRId64 ", size %" PRId64 ", state %d)",
		        sp->path, f->id, f->fp_len, f->offset, f->check_len, f->size,
		        (int)f->state);
		return -1;
	}
	return 0;
}

/* Binds ?2 to ?20 of ST_FILE_ADD and ST_FILE_UPDATE. */
static void bind_file(sqlite3_stmt *st, const struct spool_file *f, int64_t now, int *rc)
{
	spool_bind_text(st, 2, f->path, sizeof(f->path), rc);
	spool_bind_int(st, 3, (int64_t)f->dev, rc);
	spool_bind_int(st, 4, (int64_t)f->ino, rc);
	spool_bind_int(st, 5, f->fp_len, rc);
	spool_bind_blob(st, 6, f->fp_hash, SPOOL_HASH_LEN, rc);
	spool_bind_int(st, 7, f->offset, rc);
	spool_bind_int(st, 8, f->check_len, rc);
	spool_bind_blob(st, 9, f->check_hash, SPOOL_HASH_LEN, rc);
	spool_bind_int(st, 10, f->size, rc);
	spool_bind_text(st, 11, spool_file_state_name(f->state), SIZE_MAX, rc);
	spool_bind_int(st, 12, f->counters.lines, rc);
	spool_bind_int(st, 13, f->counters.matched, rc);
	spool_bind_int(st, 14, f->counters.unmatched, rc);
	spool_bind_int(st, 15, f->counters.invalid, rc);
	spool_bind_int(st, 16, f->counters.long_lines, rc);
	spool_bind_int(st, 17, f->counters.nul_bytes, rc);
	spool_bind_int(st, 18, f->counters.events, rc);
	spool_bind_int(st, 19, f->counters.resets, rc);
	spool_bind_int(st, 20, now, rc);
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
	if (check_file(sp, f, err, errlen) < 0 || spool_random_hex(uid, 16, err, errlen) < 0)
		return -1;
	st = sp->st[ST_FILE_ADD];
	spool_bind_text(st, 1, uid, sizeof(uid), &rc);
	bind_file(st, f, now, &rc);
	spool_bind_text(st, 21, f->source, sizeof(f->source), &rc);
	spool_bind_int(st, 22, now, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "adding a file", err, errlen);
		spool_st_end(st);
		return -1;
	}
	if (spool_st_run(sp, ST_FILE_ADD, "adding a file", err, errlen) < 0)
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
	spool_bind_int(st, 1, f->id, &rc);
	bind_file(st, f, now, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "updating a file", err, errlen);
		spool_st_end(st);
		return -1;
	}
	if (spool_st_run(sp, ST_FILE_UPDATE, "updating a file", err, errlen) < 0)
		return -1;
	if (sqlite3_changes(sp->db) != 1) {
		err_set(err, errlen, "spool %s: no file record with id %" PRId64, sp->path, f->id);
		return -1;
	}
	return spool_extra_utf8_put(sp, f, err, errlen);
}

int spool_file_update(struct spool *sp, const struct spool_file *f, char *err, size_t errlen)
{
	if (sp == NULL || f == NULL) {
		err_set(err, errlen, "spool_file_update: invalid arguments");
		return -1;
	}
	return file_update(sp, f, (int64_t)time(NULL), err, errlen);
}

int spool_file_find_path(struct spool *sp, const char *source, const char *path,
                         struct spool_file *out, char *err, size_t errlen)
{
	static const char sql[] = "SELECT " SPOOL_FILE_COLUMNS " FROM files"
	                          " WHERE source = ?1 AND path = ?2 ORDER BY id DESC LIMIT 1";
	sqlite3_stmt *st = NULL;
	int rc, found = 0;

	if (sp == NULL || source == NULL || path == NULL || out == NULL) {
		err_set(err, errlen, "spool_file_find_path: invalid arguments");
		return -1;
	}
	/* Only when a file without a record appears: prepared when used. */
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, source, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (spool_row_file(sp, st, out, err, errlen) < 0) {
			sqlite3_finalize(st);
			return -1;
		}
		found = 1;
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "finding a file by its path", err, errlen);
		return -1;
	}
	if (found && file_extra_counters(sp, out, err, errlen) < 0)
		return -1;
	return found;
}

int spool_file_forget(struct spool *sp, int64_t id, char *err, size_t errlen)
{
	static const char sql[] =
	    "DELETE FROM files WHERE id = ?1 AND \"offset\" = 0 AND fp_len = 0"
	    " AND events = 0 AND lines = 0";
	sqlite3_stmt *st = NULL;
	int rc, changed;

	if (sp == NULL) {
		err_set(err, errlen, "spool_file_forget: invalid arguments");
		return -1;
	}
	/* Rare (a file seen empty that was someone else's copy): prepared when used. A record
	 * that read nothing has no file_extra row either. */
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_DONE)
		rc = SQLITE_OK;
	changed = sqlite3_changes(sp->db);
	sqlite3_finalize(st);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "forgetting an empty file's record", err, errlen);
		return -1;
	}
	return changed > 0;
}

int spool_event_insert(struct spool *sp, struct event *ev, int64_t now, int64_t *next,
                       int64_t shift, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_EVENT_INSERT];
	int rc = SQLITE_OK;

	if (ev->state != EVENT_PENDING && ev->state != EVENT_DELIVERED && ev->state != EVENT_DEAD) {
		err_set(err, errlen, "spool %s: event at offset %" PRId64 " has invalid state %d",
		        sp->path, ev->line_offset, (int)ev->state);
		return -1;
	}
	spool_bind_int(st, 1, ev->file_id, &rc);
	spool_bind_int(st, 2, ev->line_offset, &rc);
	spool_bind_text(st, 3, ev->rule, sizeof(ev->rule), &rc);
	spool_bind_text(st, 4, ev->identifier, sizeof(ev->identifier), &rc);
	spool_bind_text(st, 5, ev->event_name, sizeof(ev->event_name), &rc);
	spool_bind_text(st, 6, ev->payload_customer_key, sizeof(ev->payload_customer_key), &rc);
	spool_bind_text(st, 7, ev->payload_value_key, sizeof(ev->payload_value_key), &rc);
	spool_bind_text(st, 8, ev->customer_key, sizeof(ev->customer_key), &rc);
	spool_bind_text(st, 9, ev->customer, sizeof(ev->customer), &rc);
	spool_bind_text(st, 10, ev->value, sizeof(ev->value), &rc);
	spool_bind_int(st, 11, ev->timestamp, &rc);
	spool_bind_int(st, 12, (int64_t)ev->state, &rc);
	spool_bind_int(st, 13, ev->attempts, &rc);
	if (ev->last_error[0] != '\0')
		spool_bind_text(st, 14, ev->last_error, sizeof(ev->last_error), &rc);
	else
		spool_bind_null(st, 14, &rc);
	spool_bind_int(st, 15, now, &rc);
	if (ev->state == EVENT_DELIVERED && ev->delivered_at > 0)
		spool_bind_int(st, 16, ev->delivered_at, &rc);
	else
		spool_bind_null(st, 16, &rc);
	spool_bind_int(st, 17, now, &rc);
	spool_bind_int(st, 18, *next, &rc);
	spool_bind_int(st, 19, *next + shift, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "inserting an event", err, errlen);
		spool_st_end(st);
		return -1;
	}
	if (spool_st_run(sp, ST_EVENT_INSERT, "inserting an event", err, errlen) < 0)
		return -1;
	/* 0 changes: the line's event was already spooled by an earlier read. */
	if (sqlite3_changes(sp->db) == 1) {
		ev->id = *next;
		ev->queue_seq = *next + shift;
		ev->created = now;
		(*next)++;
	} else {
		ev->id = 0;
		ev->queue_seq = 0;
	}
	return 0;
}

int spool_commit(struct spool *sp, const struct spool_file *f, struct event *events, size_t n,
                 char *err, size_t errlen)
{
	int64_t now = (int64_t)time(NULL), next = 0, shift = 0;
	size_t i;

	if (sp == NULL || f == NULL || (events == NULL && n > 0)) {
		err_set(err, errlen, "spool_commit: invalid arguments");
		return -1;
	}
	sp->last_rc = sp->last_errno = 0; /* spool_failed_full describes this call */
	if (spool_check_file(sp, err, errlen) < 0 || spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	/* Inside the transaction: no other connection can add to the queue meanwhile. */
	if (n > 0 && spool_queue_end(sp, &next, &shift, err, errlen) < 0)
		goto fail;
	next++;
	for (i = 0; i < n; i++) {
		/* A pending event of an aggregating rule goes into its window instead; dead
		 * letters (unmapped customers) stay events of their own. */
		if (events[i].window_s > 0 && events[i].state == EVENT_PENDING) {
			int rc = spool_window_commit(sp, &events[i], now, err, errlen);

			if (rc < 0)
				goto fail;
			if (rc == 0)
				continue;
			/* 1: not aggregatable (outside Stripe's window): an event of its own. */
		}
		if (spool_event_insert(sp, &events[i], now, &next, shift, err, errlen) < 0)
			goto fail;
	}
	if (file_update(sp, f, now, err, errlen) < 0)
		goto fail;
	crash_point("spool_commit_inside"); /* all written, not committed: none of it counts */
	if (spool_tx_commit(sp, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	spool_tx_rollback(sp);
	/* Nothing was committed, so no event has a row. */
	for (i = 0; i < n; i++)
		events[i].id = events[i].queue_seq = 0;
	return -1;
}
