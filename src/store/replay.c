/* replay: moving dead letters, delivered or unsure events back to pending, for the operator's
 * `logmeter replay` (docs/spool.md), on its own connection while the agent may run. A moved
 * event gets (or keeps) a row of outcomes, pending, at a queue position after every other. */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_int.h"
#include "util/log.h"

#define REPLAY_BATCH 500

/* A growing list of event ids. */
struct id_list {
	int64_t *ids;
	size_t n, cap;
};

static int id_push(struct id_list *l, int64_t id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 1024;
		int64_t *p = realloc(l->ids, cap * sizeof(*p));

		if (p == NULL)
			return -1;
		l->ids = p;
		l->cap = cap;
	}
	l->ids[l->n++] = id;
	return 0;
}

static int id_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Runs `sql` (?1 since, ?2 reason or NULL) and adds the ids of its first column. */
static int select_ids(struct spool *sp, const char *sql, const struct spool_replay *rp,
                      struct id_list *out, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);

	spool_bind_int(st, 1, rp->since, &rc);
	if (rp->reason != NULL)
		spool_bind_text(st, 2, rp->reason, SIZE_MAX, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (id_push(out, sqlite3_column_int64(st, 0)) < 0) {
			sqlite3_finalize(st);
			err_set(err, errlen, "spool %s: out of memory", sp->path);
			return -1;
		}
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "selecting events to replay", err, errlen);
		return -1;
	}
	return 0;
}

struct plain_ids {
	struct id_list *out;
	int64_t upto;
	int nomem;
};

static int take_plain_id(struct spool *sp, const struct spool_view *v, const struct spool_item *it,
                         void *ud)
{
	struct plain_ids *p = ud;

	(void)sp;
	(void)v;
	if (it->id > p->upto)
		return 1;
	if (id_push(p->out, it->id) < 0) {
		p->nomem = 1;
		return -1;
	}
	return 0;
}

/* The delivered events the watermark passed without a row, delivered (by the last time of
 * their row of deliveries) at or after rp->since. */
static int select_plain_delivered(struct spool *sp, const struct spool_replay *rp,
                                  struct id_list *out, char *err, size_t errlen)
{
	static const char sql[] =
	    "SELECT coalesce((SELECT max(through) FROM deliveries d2 WHERE d2.through < d.through),"
	    " 0), through FROM deliveries d WHERE last_at >= ?1 ORDER BY through";
	sqlite3_stmt *st = NULL;
	struct spool_queue q;
	struct id_list ranges = {0};
	int rc, ret = -1;

	if (spool_queue_get(sp, &q, err, errlen) < 0)
		return -1;
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	spool_bind_int(st, 1, rp->since, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (id_push(&ranges, sqlite3_column_int64(st, 0) + 1) < 0 ||
		    id_push(&ranges, sqlite3_column_int64(st, 1)) < 0) {
			err_set(err, errlen, "spool %s: out of memory", sp->path);
			goto out;
		}
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "selecting events to replay", err, errlen);
		goto out;
	}
	for (size_t i = 0; i + 1 < ranges.n; i += 2) {
		struct plain_ids p = {out, q.delivered, 0};

		if (spool_plain_foreach(sp, ranges.ids[i], ranges.ids[i + 1], take_plain_id, &p,
		                        err, errlen) < 0) {
			if (p.nomem)
				err_set(err, errlen, "spool %s: out of memory", sp->path);
			goto out;
		}
	}
	ret = 0;
out:
	sqlite3_finalize(st);
	free(ranges.ids);
	return ret;
}

/* The ids spool_replay selects, in id order. */
static int replay_select(struct spool *sp, const struct spool_replay *rp, struct id_list *out,
                         char *err, size_t errlen)
{
	/* The reason filter (?2) is a substring of the last error; a delivered event that the
	 * watermark passed has none. */
	static const char sql_dead[] =
	    "SELECT id FROM outcomes WHERE state = 2 AND updated >= ?1"
	    " AND (?2 IS NULL OR instr(coalesce(last_error, ''), ?2) > 0) ORDER BY id";
	static const char sql_unsure[] =
	    "SELECT id FROM outcomes WHERE state = 3 AND updated >= ?1"
	    " AND (?2 IS NULL OR instr(coalesce(last_error, ''), ?2) > 0) ORDER BY id";
	static const char sql_delivered[] =
	    "SELECT id FROM outcomes WHERE state = 1 AND coalesce(delivered_at, 0) >= ?1"
	    " AND (?2 IS NULL OR instr(coalesce(last_error, ''), ?2) > 0) ORDER BY id";

	if (rp->from == EVENT_DEAD)
		return select_ids(sp, sql_dead, rp, out, err, errlen);
	if (rp->from == EVENT_UNSURE)
		return select_ids(sp, sql_unsure, rp, out, err, errlen);
	if (select_ids(sp, sql_delivered, rp, out, err, errlen) < 0)
		return -1;
	if (rp->reason == NULL && select_plain_delivered(sp, rp, out, err, errlen) < 0)
		return -1;
	/* Nothing selected leaves out->ids NULL, which qsort(3) must not be given. */
	if (out->n > 1)
		qsort(out->ids, out->n, sizeof(*out->ids), id_cmp);
	return 0;
}

/* Moves *ev (just read, state rp->from) to pending at the queue's end. */
static int move_one(struct spool *sp, const struct spool_replay *rp, struct spool_queue *q,
                    sqlite3_stmt *shift, const struct event *ev, char *err, size_t errlen)
{
	struct spool_outcome o, old;
	int has = spool_outcome_get(sp, ev->id, &old, err, errlen), rc = SQLITE_OK;

	if (has < 0)
		return -1;
	memset(&o, 0, sizeof(o));
	o.id = ev->id;
	o.state = EVENT_PENDING;
	o.attempts = ev->attempts;
	/* A fresh Idempotency-Key for its first attempt after the replay; the identifier, which
	 * is what Stripe dedupes on, stays. The time of its first unknown outcome stays for a dead
	 * letter (an old one makes the sender set it unsure instead of sending it: Stripe may have
	 * it and may have forgotten it); a replay of unsure or delivered events is the operator's
	 * decision to send them, and forgets it. */
	o.key_generation = ev->key_generation + 1;
	o.first_unknown = rp->from == EVENT_DEAD ? ev->first_unknown : 0;
	snprintf(o.last_error, sizeof(o.last_error), "%s", ev->last_error);
	/* decide may have mapped the customer anew. */
	o.has_customer = 1;
	snprintf(o.customer, sizeof(o.customer), "%s", ev->customer);
	if (has && old.has_identifier) {
		o.has_identifier = 1;
		memcpy(o.identifier, old.identifier, sizeof(o.identifier));
	}
	/* After every position given before (spool_queue_get). */
	o.queue_seq = q->next_id + q->shift;
	o.updated = rp->now;
	if (spool_outcome_put(sp, &o, err, errlen) < 0)
		return -1;
	q->shift++;
	spool_bind_int(shift, 1, q->shift, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(shift);
	spool_st_end(shift);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "moving an event to pending", err, errlen);
		return -1;
	}
	return 0;
}

int spool_replay(struct spool *sp, const struct spool_replay *rp, int64_t *moved, char *err,
                 size_t errlen)
{
	sqlite3_stmt *shift = NULL;
	struct event *ev = NULL;
	struct id_list ids = {0};
	struct spool_queue q;
	int64_t count = 0, batch;
	size_t i = 0;
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
	if (replay_select(sp, rp, &ids, err, errlen) < 0)
		goto out;
	rc = sqlite3_prepare_v2(sp->db, "UPDATE queue SET shift = ?1", -1, &shift, NULL);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "preparing the replay", err, errlen);
		goto out;
	}
	while (i < ids.n) {
		size_t end = i + REPLAY_BATCH < ids.n ? i + REPLAY_BATCH : ids.n;

		batch = 0;
		if (!rp->dry_run) {
			if (spool_tx_begin(sp, err, errlen) < 0)
				goto out;
			in_tx = 1;
		}
		/* Read again in each batch: the agent commits between them. */
		if (spool_queue_get(sp, &q, err, errlen) < 0)
			goto out;
		for (; i < end; i++) {
			int d;

			if (i > 0 && ids.ids[i] == ids.ids[i - 1])
				continue;
			rc = spool_event_get(sp, &q, ids.ids[i], ev, err, errlen);
			if (rc < 0)
				goto out;
			/* Gone, or changed since it was selected (a sender or another replay). */
			if (rc == 0 || ev->state != rp->from)
				continue;
			if (rp->rule != NULL && strcmp(ev->rule, rp->rule) != 0)
				continue;
			d = rp->decide(ev, rp->ud);
			if (d < 0) {
				err_set(err, errlen, "spool %s: replay stopped by the caller",
				        sp->path);
				goto out;
			}
			if (d == 0)
				continue;
			batch++;
			if (!rp->dry_run && move_one(sp, rp, &q, shift, ev, err, errlen) < 0)
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
	sqlite3_finalize(shift);
	free(ids.ids);
	free(ev);
	return ret;
}
