/* query: what status and the operator's commands read. Counts by state, the last error, and
 * every file record or every event of a state, in a stable order. */
#include "store/spool.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_int.h"
#include "util/log.h"

/* Counts from the batches (every event), the watermark and the rows of outcomes: an event
 * without a row is delivered up to the watermark and pending after it (docs/spool.md). The rows
 * are few; the batches one per commit. */
#define COUNTS_SQL                                                                                 \
	"SELECT (SELECT coalesce(sum(n), 0) FROM batches),"                                        \
	" (SELECT coalesce(sum(min(n, q.delivered_through - id + 1)), 0) FROM batches"             \
	"  WHERE id <= q.delivered_through),"                                                      \
	" (SELECT count(*) FROM outcomes WHERE id <= q.delivered_through),"                        \
	" (SELECT count(*) FROM outcomes),"                                                        \
	" (SELECT count(*) FROM outcomes WHERE state = 0),"                                        \
	" (SELECT count(*) FROM outcomes WHERE state = 1),"                                        \
	" (SELECT count(*) FROM outcomes WHERE state = 2),"                                        \
	" (SELECT count(*) FROM outcomes WHERE state = 3) FROM queue q"

const struct spool_sql spool_query_sql[] = {
    {ST_FILES_ALL, "SELECT " SPOOL_FILE_COLUMNS " FROM files ORDER BY source, id"},
    {ST_COUNTS, COUNTS_SQL},
    {ST_LAST_ERROR, "SELECT last_error FROM outcomes WHERE state IN (0, 2, 3)"
                    " AND last_error IS NOT NULL AND last_error <> ''"
                    " ORDER BY updated DESC, id DESC LIMIT 1"},
    {ST_ROWS_OF_STATE,
     "SELECT " SPOOL_OUTCOME_COLUMNS " FROM outcomes WHERE state = ?1 ORDER BY id"},
    {ST_COUNT_, NULL},
};

/* The counts from a row of COUNTS_SQL. */
static void counts_of(sqlite3_stmt *st, struct spool_counts *out)
{
	int64_t total = sqlite3_column_int64(st, 0), upto = sqlite3_column_int64(st, 1);
	int64_t rows_upto = sqlite3_column_int64(st, 2), rows = sqlite3_column_int64(st, 3);

	out->pending = (total - upto) - (rows - rows_upto) + sqlite3_column_int64(st, 4);
	out->delivered = (upto - rows_upto) + sqlite3_column_int64(st, 5);
	out->dead = sqlite3_column_int64(st, 6);
	out->unsure = sqlite3_column_int64(st, 7);
}

int spool_counts_db(sqlite3 *db, struct spool_counts *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, COUNTS_SQL, -1, &st, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		counts_of(st, out);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_CORRUPT; /* no queue row */
	}
	sqlite3_finalize(st);
	return rc;
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
		if (rc == SQLITE_DONE)
			err_set(err, errlen, "spool %s: the queue's row is missing%s",
			        spool_path(sp), spool_damage_hint(SQLITE_CORRUPT));
		else
			spool_fail(sp, rc, "counting events", err, errlen);
		spool_st_end(st);
		return -1;
	}
	counts_of(st, out);
	spool_st_end(st);
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
		spool_col_text(st, 0, out, outlen);
		rc = SQLITE_DONE;
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading the last error", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return 0;
}

int spool_files_foreach(struct spool *sp, int (*cb)(const struct spool_file *f, void *ud), void *ud,
                        char *err, size_t errlen)
{
	struct spool_file *f = NULL;
	struct spool_file_extra x;
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
		if (spool_row_file(sp, st, f, err, errlen) < 0 ||
		    spool_file_extra_get(sp, f->id, &x, err, errlen) < 0)
			goto out;
		f->counters.bad_utf8 = x.bad_utf8;
		f->counters.torn_lines = x.torn_lines;
		if (cb(f, ud) < 0) {
			err_set(err, errlen, "spool %s: listing files: stopped by the callback",
			        sp->path);
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "listing files", err, errlen);
		goto out;
	}
	ret = 0;
out:
	spool_st_end(st);
	free(f);
	return ret;
}

/* What one spool_events_foreach walks: the rows of outcomes of the state, merged by id with the
 * plain events of that state. */
struct foreach_ctx {
	enum event_state state;
	int (*cb)(const struct event *ev, void *ud);
	void *ud;
	struct event *ev;
	int64_t delivered;
	sqlite3_stmt *rows;
	int row_state; /* 0: not read yet, 1: `row` holds the next, 2: no more */
	struct spool_outcome row;
	char *err;
	size_t errlen;
};

static int call_back(struct spool *sp, struct foreach_ctx *c)
{
	if (c->cb(c->ev, c->ud) < 0) {
		err_set(c->err, c->errlen, "spool %s: listing events: stopped by the callback",
		        sp->path);
		return -1;
	}
	return 0;
}

/* Calls back for the rows before id `before` (INT64_MAX: all). Returns 0 or -1. */
static int rows_until(struct spool *sp, struct foreach_ctx *c, int64_t before)
{
	for (;;) {
		struct spool_item it;
		int rc;

		if (c->row_state == 0) {
			rc = sqlite3_step(c->rows);
			if (rc == SQLITE_ROW) {
				if (spool_row_outcome(sp, c->rows, &c->row, c->err, c->errlen) < 0)
					return -1;
				c->row_state = 1;
			} else if (rc == SQLITE_DONE) {
				c->row_state = 2;
			} else {
				spool_fail(sp, rc, "listing events", c->err, c->errlen);
				return -1;
			}
		}
		if (c->row_state == 2 || c->row.id >= before)
			return 0;
		rc = spool_item_of(sp, c->row.id, &it, c->err, c->errlen);
		if (rc < 0)
			return -1;
		/* A row whose batch is gone has no event left to list. */
		if (rc > 0 && (spool_event_fill(sp, &sp->look, &it, &c->row, c->delivered, c->ev,
		                                c->err, c->errlen) < 0 ||
		               call_back(sp, c) < 0))
			return -1;
		c->row_state = 0;
	}
}

static int foreach_plain(struct spool *sp, const struct spool_view *v, const struct spool_item *it,
                         void *ud)
{
	struct foreach_ctx *c = ud;

	if (rows_until(sp, c, it->id) < 0)
		return -1;
	if (spool_event_fill(sp, v, it, NULL, c->delivered, c->ev, c->err, c->errlen) < 0)
		return -1;
	return call_back(sp, c) < 0 ? -1 : 0;
}

int spool_events_foreach(struct spool *sp, enum event_state state,
                         int (*cb)(const struct event *ev, void *ud), void *ud, char *err,
                         size_t errlen)
{
	struct foreach_ctx c;
	struct spool_queue q;
	int rc = SQLITE_OK, ret = -1, own_tx;

	if (sp == NULL || cb == NULL) {
		err_set(err, errlen, "spool_events_foreach: invalid arguments");
		return -1;
	}
	if (state < EVENT_PENDING || state > EVENT_UNSURE) {
		err_set(err, errlen, "spool_events_foreach: invalid state %d", (int)state);
		return -1;
	}
	memset(&c, 0, sizeof(c));
	c.state = state;
	c.cb = cb;
	c.ud = ud;
	c.err = err;
	c.errlen = errlen;
	c.rows = sp->st[ST_ROWS_OF_STATE];
	c.ev = malloc(sizeof(*c.ev));
	if (c.ev == NULL) {
		err_set(err, errlen, "spool %s: out of memory", sp->path);
		return -1;
	}
	/* One snapshot for the whole listing; inside the caller's (spool_snapshot_begin), that one.
	 */
	own_tx = sqlite3_get_autocommit(sp->db);
	if (own_tx && spool_tx_begin_read(sp, err, errlen) < 0)
		goto out;
	if (spool_queue_get(sp, &q, err, errlen) < 0)
		goto out;
	c.delivered = q.delivered;
	spool_bind_int(c.rows, 1, (int64_t)state, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "listing events", err, errlen);
		goto out;
	}
	c.row_state = 0;
	if (rows_until(sp, &c, INT64_MIN) < 0)
		goto out;
	if (state == EVENT_PENDING && spool_plain_foreach(sp, q.delivered + 1, q.next_id - 1,
	                                                  foreach_plain, &c, err, errlen) != 0)
		goto out;
	if (state == EVENT_DELIVERED &&
	    spool_plain_foreach(sp, 1, q.delivered, foreach_plain, &c, err, errlen) != 0)
		goto out;
	if (rows_until(sp, &c, INT64_MAX) < 0)
		goto out;
	ret = 0;
out:
	spool_st_end(c.rows);
	if (own_tx && ret == 0)
		ret = spool_tx_commit(sp, err, errlen);
	else if (own_tx)
		spool_tx_rollback(sp);
	free(c.ev);
	return ret;
}
