/* replay: moving dead letters, delivered or unsure events back to pending, for the operator's
 * `logmeter replay` (docs/spool.md), on its own connection while the agent may run. */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/spool_int.h"
#include "util/log.h"

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
	spool_bind_int(st, 1, rp->since, &rc);
	if (rp->rule != NULL)
		spool_bind_text(st, 2, rp->rule, SIZE_MAX, &rc);
	if (rp->reason != NULL)
		spool_bind_text(st, 3, rp->reason, SIZE_MAX, &rc);
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
		spool_fail(sp, rc, "selecting events to replay", err, errlen);
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
	    "SELECT " SPOOL_EVENT_COLUMNS " FROM events WHERE id = ?1 AND state = ?2";
	/* A queue position after every other (spool_int.h), its id and identifier unchanged: the
	 * identifier is what Stripe sees. The next Idempotency-Key generation makes the first
	 * attempt of the replay a fresh request, whatever Stripe saved under the last key; the
	 * identifier still keeps Stripe from counting the event twice within its window. The time
	 * of its first unknown outcome stays for a dead letter (an old one makes the sender set it
	 * unsure instead of sending it: Stripe may have it and may have forgotten it); a replay of
	 * unsure or delivered events is the operator's decision to send them, and forgets it. */
	static const char sql_move[] =
	    "UPDATE events SET queue_seq = ?5, state = 0, customer = ?2,"
	    " last_error = ?3, delivered_at = NULL, updated = ?4,"
	    " key_generation = key_generation + 1,"
	    " first_unknown = CASE WHEN ?6 THEN NULL ELSE first_unknown END WHERE id = ?1";
	char shift_text[32];
	int64_t max_id = 0, shift = 0;
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
		spool_fail(sp, rc, "preparing the replay", err, errlen);
		goto out;
	}
	while (i < n) {
		size_t end = i + REPLAY_BATCH < n ? i + REPLAY_BATCH : n;

		batch = 0;
		if (!rp->dry_run) {
			if (spool_tx_begin(sp, err, errlen) < 0)
				goto out;
			in_tx = 1;
			/* Read again in each batch: the agent commits between them. */
			if (spool_queue_end(sp, &max_id, &shift, err, errlen) < 0)
				goto out;
		}
		for (; i < end; i++) {
			int d;

			rc = SQLITE_OK;
			spool_bind_int(get, 1, ids[i], &rc);
			spool_bind_int(get, 2, (int64_t)rp->from, &rc);
			if (rc == SQLITE_OK)
				rc = sqlite3_step(get);
			if (rc == SQLITE_DONE) {
				/* Changed since it was selected (a sender or another replay). */
				spool_st_end(get);
				continue;
			}
			if (rc != SQLITE_ROW) {
				spool_fail(sp, rc, "reading an event to replay", err, errlen);
				spool_st_end(get);
				goto out;
			}
			if (spool_row_event(sp, get, ev, err, errlen) < 0) {
				spool_st_end(get);
				goto out;
			}
			spool_st_end(get);
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
			spool_bind_int(move, 1, ev->id, &rc);
			spool_bind_text(move, 2, ev->customer, sizeof(ev->customer), &rc);
			if (ev->last_error[0] != '\0')
				spool_bind_text(move, 3, ev->last_error, sizeof(ev->last_error),
				                &rc);
			else
				spool_bind_null(move, 3, &rc);
			spool_bind_int(move, 4, rp->now, &rc);
			spool_bind_int(move, 5, max_id + shift + 1, &rc);
			spool_bind_int(move, 6, rp->from != EVENT_DEAD, &rc);
			if (rc == SQLITE_OK)
				rc = sqlite3_step(move);
			if (rc != SQLITE_DONE) {
				spool_fail(sp, rc, "moving an event to pending", err, errlen);
				spool_st_end(move);
				goto out;
			}
			spool_st_end(move);
			shift++;
		}
		if (in_tx && batch > 0) {
			snprintf(shift_text, sizeof(shift_text), "%" PRId64, shift);
			if (spool_meta_put(sp, SPOOL_META_QUEUE_SHIFT, shift_text, err, errlen) < 0)
				goto out;
		}
		if (in_tx) {
			in_tx = 0;
			if (spool_tx_commit(sp, err, errlen) < 0)
				goto out; /* rolled back: this batch did not move */
		}
		count += batch;
		if (moved != NULL)
			*moved = count;
	}
	ret = 0;
out:
	if (in_tx)
		spool_tx_rollback(sp);
	sqlite3_finalize(get);
	sqlite3_finalize(move);
	free(ids);
	free(ev);
	return ret;
}
