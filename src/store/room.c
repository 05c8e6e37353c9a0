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

/* Pruning goes a batch at a time, in id order (the order of their commits, which is about that
 * of their deliveries): a batch goes once the watermark passed its last event and every row of
 * outcomes in it says delivered. */
const struct spool_sql spool_room_sql[] = {
    {ST_PRUNE_CANDIDATES,
     "SELECT id, n FROM batches WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT 1"},
    {ST_PRUNE_ROWS_BAD, "SELECT count(*) FROM outcomes WHERE id >= ?1 AND id < ?2 AND state <> 1"},
    /* When its last event was delivered: its own rows', and those of the rows of deliveries
     * that cover its ids (through in [?1, ?3), and the first at or after ?3, its last id). */
    {ST_PRUNE_ROWS_LAST,
     "SELECT max(coalesce((SELECT max(delivered_at) FROM outcomes WHERE id >= ?1 AND id < ?2),"
     " 0), coalesce((SELECT max(last_at) FROM deliveries WHERE through >= ?1 AND through < ?3),"
     " 0), coalesce((SELECT last_at FROM deliveries WHERE through >= ?3 ORDER BY through"
     " LIMIT 1), 0))"},
    {ST_PRUNE_BATCH, "DELETE FROM batches WHERE id = ?1"},
    {ST_PRUNE_ROWS, "DELETE FROM outcomes WHERE id >= ?1 AND id < ?2"},
    /* Rows of deliveries that cover only pruned events. */
    {ST_PRUNE_DELIVERIES,
     "DELETE FROM deliveries WHERE through < coalesce((SELECT min(id) FROM batches), ?1)"},
    /* How far events can be expired: the last one the watermark passed before ?1. Past it
     * every event was delivered after ?1, or has a row of outcomes that says when. */
    {ST_PRUNE_EXPIRY_END,
     "SELECT max(coalesce((SELECT max(through) FROM deliveries WHERE last_at < ?1), 0),"
     " coalesce((SELECT max(id) FROM outcomes WHERE state = 1 AND delivered_at < ?1), 0))"},
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

/* Steps a statement that gives one integer, with ?1..?3 bound (unused ones ignored). */
static int one_int(struct spool *sp, enum spool_stmt which, int64_t a, int64_t b, int64_t c,
                   int64_t *out, int *found, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[which];
	int rc = SQLITE_OK, n = sqlite3_bind_parameter_count(st);

	*found = 0;
	spool_bind_int(st, 1, a, &rc);
	if (n >= 2)
		spool_bind_int(st, 2, b, &rc);
	if (n >= 3)
		spool_bind_int(st, 3, c, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out[0] = sqlite3_column_int64(st, 0);
		if (sqlite3_column_count(st) > 1)
			out[1] = sqlite3_column_int64(st, 1);
		*found = 1;
		rc = SQLITE_DONE;
	}
	spool_st_end(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "pruning delivered events", err, errlen);
		return -1;
	}
	return 0;
}

/* Deletes batch `id` of `n` events with its rows. */
static int prune_batch(struct spool *sp, int64_t id, int64_t n, char *err, size_t errlen)
{
	int rc = SQLITE_OK;

	spool_bind_int(sp->st[ST_PRUNE_BATCH], 1, id, &rc);
	if (rc != SQLITE_OK ||
	    spool_st_run(sp, ST_PRUNE_BATCH, "pruning delivered events", err, errlen) < 0)
		return -1;
	spool_bind_int(sp->st[ST_PRUNE_ROWS], 1, id, &rc);
	spool_bind_int(sp->st[ST_PRUNE_ROWS], 2, id + n, &rc);
	if (rc != SQLITE_OK)
		return -1;
	return spool_st_run(sp, ST_PRUNE_ROWS, "pruning delivered events", err, errlen);
}

/* One pass over the batches up to `to`, in id order: prunes those fully delivered (before
 * `before`, if it is non-zero), until `max` events went (0: no limit). Adds to *count. */
static int prune_pass(struct spool *sp, int64_t to, int64_t before, int64_t max, int64_t *count,
                      char *err, size_t errlen)
{
	int64_t after = 0, v[2];
	int found;

	while (max == 0 || *count < max) {
		int64_t id, n, bad, last;

		if (one_int(sp, ST_PRUNE_CANDIDATES, after, to, 0, v, &found, err, errlen) < 0)
			return -1;
		if (!found)
			break;
		id = v[0];
		n = v[1];
		after = id;
		/* Its last event not passed by the watermark: neither is anything after it. */
		if (id + n - 1 > to)
			break;
		if (one_int(sp, ST_PRUNE_ROWS_BAD, id, id + n, 0, &bad, &found, err, errlen) < 0)
			return -1;
		if (bad > 0)
			continue; /* a dead letter, unsure or pending event keeps its batch */
		if (before > 0) {
			if (one_int(sp, ST_PRUNE_ROWS_LAST, id, id + n, id + n - 1, &last, &found,
			            err, errlen) < 0)
				return -1;
			if (last >= before)
				continue;
		}
		if (prune_batch(sp, id, n, err, errlen) < 0)
			return -1;
		*count += n;
	}
	return 0;
}

int spool_prune(struct spool *sp, const struct spool_prune *p, struct spool_pruned *out, char *err,
                size_t errlen)
{
	struct spool_pruned n = {0, 0};
	struct spool_queue q;
	int64_t end;
	int found;

	if (out != NULL)
		*out = n;
	if (sp == NULL || p == NULL || p->delivered_before < 0 || p->oldest < 0 ||
	    sp->mode != SPOOL_READ_WRITE) {
		err_set(err, errlen, "spool_prune: invalid arguments");
		return -1;
	}
	if (p->delivered_before == 0 && p->oldest == 0)
		return 0;
	if (spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	if (spool_queue_get(sp, &q, err, errlen) < 0)
		goto fail;
	if (p->delivered_before > 0) {
		/* Only as far as deliveries before the cut-off reach: a scan that ends where
		 * the retention does, not at the end of the spool. */
		if (one_int(sp, ST_PRUNE_EXPIRY_END, p->delivered_before, 0, 0, &end, &found, err,
		            errlen) < 0)
			goto fail;
		if (end > q.delivered)
			end = q.delivered;
		if (prune_pass(sp, end, p->delivered_before, 0, &n.expired, err, errlen) < 0)
			goto fail;
	}
	if (p->oldest > 0 && prune_pass(sp, q.delivered, 0, p->oldest, &n.early, err, errlen) < 0)
		goto fail;
	if (n.expired + n.early > 0) {
		int rc = SQLITE_OK;

		spool_bind_int(sp->st[ST_PRUNE_DELIVERIES], 1, q.delivered + 1, &rc);
		if (rc != SQLITE_OK || spool_st_run(sp, ST_PRUNE_DELIVERIES,
		                                    "pruning delivered events", err, errlen) < 0)
			goto fail;
		if (spool_windows_prune(sp, err, errlen) < 0)
			goto fail;
	}
	if (spool_tx_commit(sp, err, errlen) < 0)
		return -1;
	sp->dl_lo = sp->dl_hi = 0;
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
