/* room: the spool's size as SQLite and the file system see it, the pruning of delivered events,
 * and WAL checkpoints: what src/ingest/space.c needs to keep the spool from filling its file
 * system (docs/architecture.md, "Disk full"). */
#include "store/spool.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "store/spool_int.h"
#include "util/log.h"

const struct spool_sql spool_room_sql[] = {
    {ST_PRUNE, "DELETE FROM events WHERE state = 1 AND delivered_at < ?1"},
    {ST_COUNT_, NULL},
};

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
	spool_bind_int(st, 1, before, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "pruning delivered events", err, errlen);
		spool_st_end(st);
		return -1;
	}
	if (spool_st_run(sp, ST_PRUNE, "pruning delivered events", err, errlen) < 0)
		return -1;
	if (deleted != NULL)
		*deleted = sqlite3_changes64(sp->db);
	return 0;
}

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
	if (spool_pragma_int(sp, "PRAGMA page_size", &out->page_size, err, errlen) < 0 ||
	    spool_pragma_int(sp, "PRAGMA page_count", &out->pages, err, errlen) < 0 ||
	    spool_pragma_int(sp, "PRAGMA freelist_count", &out->free_pages, err, errlen) < 0 ||
	    spool_pragma_int(sp, "PRAGMA wal_autocheckpoint", &out->wal_autocheckpoint, err,
	                     errlen) < 0)
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
		spool_fail(sp, rc, "pruning delivered events", err, errlen);
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
		spool_fail(sp, rc, "checkpointing the WAL", err, errlen);
		return -1;
	}
	return 0;
}
