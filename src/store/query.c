/* query: what status and the operator's commands read. Counts by state, the last error, and
 * every file record or every event of a state, in a stable order. */
#include "store/spool.h"

#include <sqlite3.h>
#include <stdlib.h>

#include "store/spool_int.h"
#include "util/log.h"

const struct spool_sql spool_query_sql[] = {
    {ST_FILES_ALL, "SELECT " SPOOL_FILE_COLUMNS " FROM files ORDER BY source, id"},
    /* The pending and dead counts come from their partial indexes; only the total scans. */
    {ST_COUNTS, "SELECT (SELECT count(*) FROM events WHERE state = 0),"
                " (SELECT count(*) FROM events WHERE state = 2),"
                " (SELECT count(*) FROM events WHERE state = 3),"
                " (SELECT count(*) FROM events)"},
    {ST_LAST_ERROR, "SELECT last_error FROM events WHERE state IN (0, 2, 3)"
                    " AND last_error IS NOT NULL AND last_error <> ''"
                    " ORDER BY updated DESC, id DESC LIMIT 1"},
    {ST_EVENTS_PENDING, "SELECT " SPOOL_EVENT_COLUMNS " FROM events WHERE state = 0 ORDER BY id"},
    {ST_EVENTS_DELIVERED, "SELECT " SPOOL_EVENT_COLUMNS " FROM events WHERE state = 1 ORDER BY id"},
    {ST_EVENTS_DEAD, "SELECT " SPOOL_EVENT_COLUMNS " FROM events WHERE state = 2 ORDER BY id"},
    {ST_EVENTS_UNSURE, "SELECT " SPOOL_EVENT_COLUMNS " FROM events WHERE state = 3 ORDER BY id"},
    {ST_COUNT_, NULL},
};

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
		spool_fail(sp, rc, "counting events", err, errlen);
		spool_st_end(st);
		return -1;
	}
	out->pending = sqlite3_column_int64(st, 0);
	out->dead = sqlite3_column_int64(st, 1);
	out->unsure = sqlite3_column_int64(st, 2);
	out->delivered = sqlite3_column_int64(st, 3) - out->pending - out->dead - out->unsure;
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
		if (spool_row_event(sp, st, ev, err, errlen) < 0)
			goto out;
		if (cb(ev, ud) < 0) {
			err_set(err, errlen, "spool %s: listing events: stopped by the callback",
			        sp->path);
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "listing events", err, errlen);
		goto out;
	}
	ret = 0;
out:
	spool_st_end(st);
	free(ev);
	return ret;
}
