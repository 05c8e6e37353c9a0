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

/* The literal "state = 1" lets the planner use the partial index events_delivered, by
 * delivered_at: the expired ones are at its oldest end, and so are the first delivered. */
const struct spool_sql spool_room_sql[] = {
    {ST_PRUNE_EXPIRED, "DELETE FROM events WHERE state = 1 AND delivered_at < ?1"},
    {ST_PRUNE_OLDEST, "DELETE FROM events WHERE id IN (SELECT id FROM events"
                      " WHERE state = 1 ORDER BY delivered_at, id LIMIT ?1)"},
    {ST_COUNT_, NULL},
};

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

/* Runs one of the prune statements with `v` bound to ?1 and counts what it deleted. */
static int prune_run(struct spool *sp, enum spool_stmt which, int64_t v, int64_t *deleted,
                     char *err, size_t errlen)
{
	int rc = SQLITE_OK;

	spool_bind_int(sp->st[which], 1, v, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "pruning delivered events", err, errlen);
		spool_st_end(sp->st[which]);
		return -1;
	}
	if (spool_st_run(sp, which, "pruning delivered events", err, errlen) < 0)
		return -1;
	*deleted = sqlite3_changes64(sp->db);
	return 0;
}

int spool_prune(struct spool *sp, const struct spool_prune *p, struct spool_pruned *out, char *err,
                size_t errlen)
{
	struct spool_pruned n = {0, 0};

	if (out != NULL)
		*out = n;
	if (sp == NULL || p == NULL || p->delivered_before < 0 || p->oldest < 0) {
		err_set(err, errlen, "spool_prune: invalid arguments");
		return -1;
	}
	if (p->delivered_before == 0 && p->oldest == 0)
		return 0;
	if (spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	if (p->delivered_before > 0 &&
	    prune_run(sp, ST_PRUNE_EXPIRED, p->delivered_before, &n.expired, err, errlen) < 0)
		goto fail;
	if (p->oldest > 0 && prune_run(sp, ST_PRUNE_OLDEST, p->oldest, &n.early, err, errlen) < 0)
		goto fail;
	if (n.expired + n.early > 0 && spool_windows_prune(sp, err, errlen) < 0)
		goto fail;
	if (spool_tx_commit(sp, err, errlen) < 0)
		return -1;
	if (out != NULL)
		*out = n;
	return 0;
fail:
	spool_tx_rollback(sp);
	return -1;
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
