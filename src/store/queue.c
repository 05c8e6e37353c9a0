/* queue: what the sender reads and writes. Pending events in queue order (queue_seq), after a
 * cursor that only moves forward while the sender has work, and the outcomes of its attempts
 * (marks), applied in batches. Also where the queue ends, for the commits and replays that add
 * to it (spool_int.h). */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdint.h>

#include "store/spool_int.h"
#include "util/crash.h"
#include "util/log.h"

const struct spool_sql spool_queue_sql[] = {
    /* max(id) is the last entry of the table's b-tree; the shift one row of meta. */
    {ST_QUEUE_END, "SELECT coalesce((SELECT max(id) FROM events), 0),"
                   " coalesce((SELECT CAST(value AS INTEGER) FROM meta"
                   " WHERE key = '" SPOOL_META_QUEUE_SHIFT "'), 0)"},
    /* The literal "state = 0" lets the planner use the partial index events_pending, which is
     * in queue_seq order. */
    {ST_PENDING, "SELECT " SPOOL_EVENT_COLUMNS " FROM events"
                 " WHERE state = 0 AND queue_seq > ?1 ORDER BY queue_seq LIMIT ?2"},
    /* One (customer, event_name) pair's pending events: the partial index in queue order, the
     * pair filtered row by row; asked only for pairs dense in the queue (sender.c). */
    {ST_PENDING_PAIR, "SELECT " SPOOL_EVENT_COLUMNS " FROM events"
                      " WHERE state = 0 AND queue_seq > ?1 AND customer = ?3 AND event_name = ?4"
                      " ORDER BY queue_seq LIMIT ?2"},
    {ST_MARK, "UPDATE events SET state = ?2, attempts = ?3, updated = ?4,"
              " last_error = coalesce(?5, last_error), delivered_at = ?6,"
              " key_generation = ?7, first_unknown = ?8 WHERE id = ?1"},
    {ST_COUNT_, NULL},
};

int spool_queue_end(struct spool *sp, int64_t *max_id, int64_t *shift, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_QUEUE_END];
	int rc = sqlite3_step(st);

	if (rc != SQLITE_ROW) {
		spool_fail(sp, rc, "reading the end of the queue", err, errlen);
		spool_st_end(st);
		return -1;
	}
	*max_id = sqlite3_column_int64(st, 0);
	*shift = sqlite3_column_int64(st, 1);
	spool_st_end(st);
	if (*max_id < 0 || *shift < 0 || *max_id > INT64_MAX / 2 || *shift > INT64_MAX / 2) {
		err_set(err, errlen,
		        "spool %s: the queue ends at id %" PRId64 " with shift %" PRId64
		        ", out of range",
		        sp->path, *max_id, *shift);
		return -1;
	}
	return 0;
}

/* With synchronous=NORMAL a commit reaches the disk only with a later sync of the WAL: until then
 * a power cut can undo it (https://www.sqlite.org/pragma.html#pragma_synchronous). Events read
 * from such a commit and sent would come back after the cut as lines read again, with another read
 * time, or under a new file uid: another payload, or another identifier, for what Stripe has. So
 * what the sender reads is made durable before it gets it: the WAL, which holds every commit of
 * every connection up to now, is synced through this connection's handle on it
 * (SQLITE_FCNTL_JOURNAL_POINTER, https://www.sqlite.org/c3ref/c_fcntl_begin_atomic_write.html:
 * the WAL file of a connection in WAL mode, open once it has read). One fsync per load of the
 * sender's queue; with synchronous=FULL every commit is synced already. Returns 0 or -1. */
static int pending_durable(struct spool *sp, char *err, size_t errlen)
{
	sqlite3_file *wal = NULL;
	int rc;

	if (sp->durability != CONFIG_DURABILITY_NORMAL)
		return 0;
	rc = sqlite3_file_control(sp->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
	if (rc != SQLITE_OK || wal == NULL || wal->pMethods == NULL) {
		err_set(err, errlen, "spool %s: no WAL to sync before sending (%s)", sp->path,
		        sqlite3_errstr(rc));
		return -1;
	}
	rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "syncing the WAL before sending", err, errlen);
		return -1;
	}
	return 0;
}

/* Reads pending events after `after_seq`, of one pair if `customer` is not NULL. */
static int pending_read(struct spool *sp, int64_t after_seq, const char *customer,
                        const char *event_name, struct event *out, size_t max, size_t *n, char *err,
                        size_t errlen)
{
	sqlite3_stmt *st;
	size_t got = 0;
	int rc = SQLITE_OK;

	if (sp == NULL || n == NULL || (out == NULL && max > 0) ||
	    (customer != NULL && event_name == NULL)) {
		err_set(err, errlen, "spool_pending: invalid arguments");
		return -1;
	}
	*n = 0;
	if (max == 0)
		return 0;
	st = sp->st[customer != NULL ? ST_PENDING_PAIR : ST_PENDING];
	spool_bind_int(st, 1, after_seq, &rc);
	spool_bind_int(st, 2, max > INT64_MAX ? INT64_MAX : (int64_t)max, &rc);
	if (customer != NULL) {
		spool_bind_text(st, 3, customer, SIZE_MAX, &rc);
		spool_bind_text(st, 4, event_name, SIZE_MAX, &rc);
	}
	while (rc == SQLITE_OK && got < max) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			if (spool_row_event(sp, st, &out[got], err, errlen) < 0) {
				spool_st_end(st);
				return -1;
			}
			got++;
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK && rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading pending events", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	if (got > 0 && pending_durable(sp, err, errlen) < 0)
		return -1;
	*n = got;
	return 0;
}

int spool_pending(struct spool *sp, int64_t after_seq, struct event *out, size_t max, size_t *n,
                  char *err, size_t errlen)
{
	return pending_read(sp, after_seq, NULL, NULL, out, max, n, err, errlen);
}

int spool_pending_pair(struct spool *sp, const char *customer, const char *event_name,
                       int64_t after_seq, struct event *out, size_t max, size_t *n, char *err,
                       size_t errlen)
{
	if (customer == NULL) {
		err_set(err, errlen, "spool_pending_pair: invalid arguments");
		return -1;
	}
	return pending_read(sp, after_seq, customer, event_name, out, max, n, err, errlen);
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
	if (spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	st = sp->st[ST_MARK];
	for (i = 0; i < n; i++) {
		const struct spool_mark *m = &marks[i];

		rc = SQLITE_OK;
		spool_bind_int(st, 1, m->id, &rc);
		spool_bind_int(st, 2, (int64_t)m->state, &rc);
		spool_bind_int(st, 3, m->attempts, &rc);
		spool_bind_int(st, 4, m->when, &rc);
		if (m->error != NULL)
			spool_bind_text(st, 5, m->error, SIZE_MAX, &rc);
		else
			spool_bind_null(st, 5, &rc);
		/* Only a delivered event has a delivery time; a replayed one loses it. */
		if (m->state == EVENT_DELIVERED)
			spool_bind_int(st, 6, m->when, &rc);
		else
			spool_bind_null(st, 6, &rc);
		spool_bind_int(st, 7, m->key_generation, &rc);
		if (m->first_unknown > 0)
			spool_bind_int(st, 8, m->first_unknown, &rc);
		else
			spool_bind_null(st, 8, &rc);
		if (rc != SQLITE_OK) {
			spool_fail(sp, rc, "marking events", err, errlen);
			spool_st_end(st);
			goto fail;
		}
		/* An id that no longer exists has nothing to mark: not an error. */
		if (spool_st_run(sp, ST_MARK, "marking events", err, errlen) < 0)
			goto fail;
	}
	crash_point("spool_mark_inside"); /* marks written, not committed: all still pending */
	return spool_tx_commit(sp, err, errlen);
fail:
	spool_tx_rollback(sp);
	return -1;
}
