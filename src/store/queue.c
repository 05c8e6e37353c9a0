/* queue: what the sender reads and writes. Pending events in queue order, after a cursor that
 * only moves forward while the sender has work: the events after the watermark that have no row
 * of outcomes (in their batches' order, which is the queue's), merged with the rows of outcomes
 * still pending (retried or replayed events, by their own positions). And the outcomes of its
 * attempts (marks), applied in batches: a first attempt delivered moves the watermark and writes
 * nothing of its own; anything else is a row of outcomes (docs/spool.md). */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_int.h"
#include "util/crash.h"
#include "util/log.h"

/* Deliveries recorded within this many seconds of a row of `deliveries` extend it instead of
 * adding one: a few rows a minute at most, however many marks. Seconds. */
#define QUEUE_DELIVERY_MERGE_S 60

const struct spool_sql spool_queue_sql[] = {
    /* The literal "state = 0" lets the planner use the partial index outcomes_pending, which
     * is in queue_seq order. */
    {ST_PENDING_ROWS, "SELECT " SPOOL_OUTCOME_COLUMNS " FROM outcomes"
                      " WHERE state = 0 AND queue_seq > ?1 ORDER BY queue_seq"},
    {ST_BATCH_OF_SEQ,
     "SELECT id, queue_seq FROM batches WHERE queue_seq <= ?1 ORDER BY queue_seq DESC LIMIT 1"},
    {ST_OUTCOME_MARK, "UPDATE outcomes SET state = ?2, attempts = ?3, updated = ?4,"
                      " last_error = coalesce(?5, last_error), delivered_at = ?6,"
                      " key_generation = ?7, first_unknown = ?8 WHERE id = ?1"},
    {ST_ROWS_AFTER, "SELECT id FROM outcomes WHERE id > ?1 ORDER BY id"},
    /* ?2 = 0: the batch holding ?1 (or starting before it); ?2 = 1: the first after ?1. */
    {ST_BATCH_AFTER, "SELECT id, n FROM (SELECT id, n FROM batches WHERE ?2 = 0 AND id <= ?1"
                     " ORDER BY id DESC LIMIT 1) UNION ALL SELECT id, n FROM (SELECT id, n FROM"
                     " batches WHERE ?2 = 1 AND id > ?1 ORDER BY id LIMIT 1)"},
    {ST_ABSORB_FIRST, "SELECT min(delivered_at), max(delivered_at) FROM outcomes"
                      " WHERE id > ?1 AND id <= ?2 AND " SPOOL_OUTCOME_PLAIN},
    {ST_ABSORB, "DELETE FROM outcomes WHERE id > ?1 AND id <= ?2 AND " SPOOL_OUTCOME_PLAIN},
    {ST_DELIVERY_LAST,
     "SELECT through, first_at, last_at FROM deliveries ORDER BY through DESC LIMIT 1"},
    {ST_DELIVERY_ADD, "INSERT INTO deliveries(through, first_at, last_at) VALUES (?1, ?2, ?3)"},
    {ST_DELIVERY_EXTEND, "UPDATE deliveries SET through = ?2, first_at = ?3, last_at = ?4"
                         " WHERE through = ?1"},
    {ST_QUEUE_WATERMARK, "UPDATE queue SET delivered_through = ?1"},
    {ST_COUNT_, NULL},
};

/* ---- reading pending events ---- */

/* What one pending_read gathers. */
struct pending_ctx {
	int64_t after;
	const char *customer, *event_name; /* a pair's only, or NULL */
	struct event *out; /* where the events go: out[i], or *outs[i] if outs is set */
	struct event *const *outs;
	size_t max, got;
	int64_t delivered;
	int from_rows;      /* an event gathered from a row of outcomes */
	int64_t max_plain;  /* the highest id of the plain events gathered, 0 if none */
	sqlite3_stmt *rows; /* ST_PENDING_ROWS, stepped as the plain events pass its positions */
	int row_state;      /* 0: not read yet, 1: `row` holds the next, 2: no more */
	struct spool_outcome row;
	char *err;
	size_t errlen;
};

/* Where the next event gathered goes. */
static struct event *out_at(const struct pending_ctx *c)
{
	return c->outs != NULL ? c->outs[c->got] : &c->out[c->got];
}

/* Whether an event of `rule_id` for `customer` (`len` bytes) belongs to the pair asked for. */
static int in_pair(struct spool *sp, const struct pending_ctx *c, int64_t rule_id,
                   const char *customer, size_t len, int *yes)
{
	const struct spool_rule *r;

	*yes = 1;
	if (c->customer == NULL)
		return 0;
	if (strlen(c->customer) != len || memcmp(c->customer, customer, len) != 0) {
		*yes = 0;
		return 0;
	}
	r = spool_rule_of(sp, rule_id, c->err, c->errlen);
	if (r == NULL)
		return -1;
	*yes = strcmp(r->event_name, c->event_name) == 0;
	return 0;
}

/* Moves to the next pending row. Returns 0 or -1. */
static int row_next(struct spool *sp, struct pending_ctx *c)
{
	int rc = sqlite3_step(c->rows);

	if (rc == SQLITE_ROW) {
		if (spool_row_outcome(sp, c->rows, &c->row, c->err, c->errlen) < 0)
			return -1;
		c->row_state = 1;
		return 0;
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading pending events", c->err, c->errlen);
		return -1;
	}
	c->row_state = 2;
	return 0;
}

/* Takes the pending rows whose positions come before `pos` (INT64_MAX: all). Returns 0, 1 once
 * `max` events are gathered, or -1. */
static int rows_before(struct spool *sp, struct pending_ctx *c, int64_t pos)
{
	if (c->row_state == 0 && row_next(sp, c) < 0)
		return -1;
	while (c->row_state == 1 && c->row.queue_seq < pos) {
		struct spool_item it;
		int rc = spool_item_of(sp, c->row.id, &it, c->err, c->errlen), yes;

		if (rc < 0)
			return -1;
		/* A row whose event is gone (its batch pruned) has nothing to send. */
		if (rc > 0) {
			if (c->row.has_customer)
				rc = in_pair(sp, c, it.rule_id, c->row.customer,
				             strlen(c->row.customer), &yes);
			else
				rc = in_pair(sp, c, it.rule_id, it.customer, it.customer_len, &yes);
			if (rc < 0)
				return -1;
			if (yes) {
				if (spool_event_fill(sp, &sp->look, &it, &c->row, c->delivered,
				                     out_at(c), c->err, c->errlen) < 0)
					return -1;
				c->from_rows = 1;
				if (++c->got == c->max)
					return 1;
			}
		}
		if (row_next(sp, c) < 0)
			return -1;
	}
	return 0;
}

/* spool_plain_foreach's callback: a plain event after the watermark, merged with the rows. */
static int take_plain(struct spool *sp, const struct spool_view *v, const struct spool_item *it,
                      void *ud)
{
	struct pending_ctx *c = ud;
	int rc, yes;

	if (it->queue_seq <= c->after)
		return 0;
	rc = rows_before(sp, c, it->queue_seq);
	if (rc != 0)
		return rc;
	if (in_pair(sp, c, it->rule_id, it->customer, it->customer_len, &yes) < 0)
		return -1;
	if (!yes)
		return 0;
	if (spool_event_fill(sp, v, it, NULL, c->delivered, out_at(c), c->err, c->errlen) < 0)
		return -1;
	if (it->id > c->max_plain)
		c->max_plain = it->id;
	return ++c->got == c->max ? 1 : 0;
}

/* The id of the first event whose queue position is after `after`, or 0 if the batches give
 * none. Positions grow with ids (spool_queue_get), so the plain events from it on are the ones
 * after the cursor. */
static int first_after(struct spool *sp, int64_t after, int64_t *id, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_BATCH_OF_SEQ];
	int rc = SQLITE_OK;

	*id = 0;
	spool_bind_int(st, 1, after + 1, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0) + (after + 1 - sqlite3_column_int64(st, 1));
		rc = SQLITE_DONE;
	}
	spool_st_end(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading the queue", err, errlen);
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
 * the WAL file of a connection in WAL mode, open once it has read). With synchronous=FULL every
 * commit is synced already.
 *
 * A load whose events are all plain (no row of outcomes: never sent, the state a batch starts in
 * and that no later commit brings back) from batches below sp->synced_below needs no sync: those
 * batches, and the file records they refer to, were committed before the last sync (batch ids come
 * from the queue's next_id, which only grows). What a later commit changed about them (a mark)
 * can only make them not pending. Any event from a row (a retry, a replay) is synced for, as
 * before. `next_id` is the queue's next_id in the snapshot the load read: every batch below it
 * is in a commit that the sync covers. Returns 0 or -1. */
static int pending_durable(struct spool *sp, const struct pending_ctx *c, int64_t next_id,
                           char *err, size_t errlen)
{
	sqlite3_file *wal = NULL;
	int rc;

	if (sp->durability != CONFIG_DURABILITY_NORMAL)
		return 0;
	if (!c->from_rows && c->max_plain < sp->synced_below)
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
	if (next_id > sp->synced_below)
		sp->synced_below = next_id;
	return 0;
}

/* Reads pending events after `after_seq`, of one pair if `customer` is not NULL. */
static int pending_read(struct spool *sp, int64_t after_seq, const char *customer,
                        const char *event_name, struct event *out, struct event *const *outs,
                        size_t max, size_t *n, char *err, size_t errlen)
{
	struct pending_ctx c;
	struct spool_queue q;
	int64_t from;
	int rc = SQLITE_OK, ret = -1;

	if (sp == NULL || n == NULL || (out == NULL && outs == NULL && max > 0) ||
	    (customer != NULL && event_name == NULL) || after_seq < 0) {
		err_set(err, errlen, "spool_pending: invalid arguments");
		return -1;
	}
	*n = 0;
	if (max == 0)
		return 0;
	memset(&c, 0, sizeof(c));
	c.after = after_seq;
	c.customer = customer;
	c.event_name = event_name;
	c.out = out;
	c.outs = outs;
	c.max = max;
	c.err = err;
	c.errlen = errlen;
	c.rows = sp->st[ST_PENDING_ROWS];
	/* One snapshot: a row written between two of the reads below must not make an event
	 * come twice or not at all. */
	if (spool_tx_begin_read(sp, err, errlen) < 0)
		return -1;
	if (spool_queue_get(sp, &q, err, errlen) < 0 ||
	    first_after(sp, after_seq, &from, err, errlen) < 0)
		goto out;
	c.delivered = q.delivered;
	if (from <= q.delivered)
		from = q.delivered + 1;
	spool_bind_int(c.rows, 1, after_seq, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "reading pending events", err, errlen);
		goto out;
	}
	rc = spool_plain_foreach(sp, from, q.next_id - 1, take_plain, &c, err, errlen);
	if (rc < 0)
		goto out;
	if (rc == 0 && rows_before(sp, &c, INT64_MAX) < 0)
		goto out;
	*n = c.got;
	ret = 0;
out:
	spool_st_end(c.rows);
	if (ret == 0)
		ret = spool_tx_commit(sp, err, errlen);
	else
		spool_tx_rollback(sp);
	if (ret == 0 && *n > 0)
		ret = pending_durable(sp, &c, q.next_id, err, errlen);
	if (ret != 0)
		*n = 0;
	return ret;
}

int spool_pending(struct spool *sp, int64_t after_seq, struct event *out, size_t max, size_t *n,
                  char *err, size_t errlen)
{
	return pending_read(sp, after_seq, NULL, NULL, out, NULL, max, n, err, errlen);
}

int spool_pending_to(struct spool *sp, int64_t after_seq, struct event *const *out, size_t max,
                     size_t *n, char *err, size_t errlen)
{
	return pending_read(sp, after_seq, NULL, NULL, NULL, out, max, n, err, errlen);
}

int spool_pending_pair(struct spool *sp, const char *customer, const char *event_name,
                       int64_t after_seq, struct event *out, size_t max, size_t *n, char *err,
                       size_t errlen)
{
	if (customer == NULL) {
		err_set(err, errlen, "spool_pending_pair: invalid arguments");
		return -1;
	}
	return pending_read(sp, after_seq, customer, event_name, out, NULL, max, n, err, errlen);
}

/* ---- marks ---- */

/* A mark the watermark can take without a row: a first attempt delivered, nothing to keep. */
static int plain_delivery(const struct spool_mark *m)
{
	return m->state == EVENT_DELIVERED && m->attempts <= 1 && m->key_generation == 0 &&
	       m->first_unknown == 0 && m->error == NULL;
}

struct delivered_id {
	int64_t id, when;
};

/* The batch holding `id` (after = 0) or the first after it (after = 1): *lo its first id, *hi
 * one past its last. Returns 1, 0 if none, -1 on error. */
static int batch_span(struct spool *sp, int64_t id, int after, int64_t *lo, int64_t *hi, char *err,
                      size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_BATCH_AFTER];
	int rc = SQLITE_OK, found = 0;

	spool_bind_int(st, 1, id, &rc);
	spool_bind_int(st, 2, after, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*lo = sqlite3_column_int64(st, 0);
		*hi = *lo + sqlite3_column_int64(st, 1);
		found = 1;
		rc = SQLITE_DONE;
	}
	spool_st_end(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading the queue", err, errlen);
		return -1;
	}
	return found;
}

/* How far the watermark can move from q->delivered: over every following event that was
 * delivered now (`d`, sorted) or has a row of outcomes. Sets *to. Returns 0 or -1. */
static int watermark_reach(struct spool *sp, const struct spool_queue *q,
                           const struct delivered_id *d, size_t nd, int64_t *to, char *err,
                           size_t errlen)
{
	sqlite3_stmt *rows = sp->st[ST_ROWS_AFTER];
	int64_t c = q->delivered, lo = 0, hi = 0, row = -1;
	size_t j = 0;
	int rc = SQLITE_OK, ret = -1;

	spool_bind_int(rows, 1, c, &rc);
	for (;;) {
		int64_t e = c + 1;

		if (e < lo || e >= hi) {
			rc = batch_span(sp, e, 0, &lo, &hi, err, errlen);
			if (rc >= 0 && (rc == 0 || e >= hi)) {
				rc = batch_span(sp, e, 1, &lo, &hi, err, errlen);
				if (rc > 0)
					e = lo;
			}
			if (rc < 0)
				goto out;
			if (rc == 0)
				break;
		}
		if (e >= q->next_id)
			break;
		while (j < nd && d[j].id < e)
			j++;
		if (j < nd && d[j].id == e) {
			c = e;
			continue;
		}
		while (row != INT64_MAX && row < e) {
			rc = sqlite3_step(rows);
			if (rc == SQLITE_ROW) {
				row = sqlite3_column_int64(rows, 0);
			} else if (rc == SQLITE_DONE) {
				row = INT64_MAX;
			} else {
				spool_fail(sp, rc, "reading outcomes", err, errlen);
				goto out;
			}
		}
		if (row != e)
			break;
		c = e;
	}
	*to = c;
	ret = 0;
out:
	spool_st_end(rows);
	return ret;
}

/* Records that the events up to `to` (from after q->delivered) were delivered between `first`
 * and `last`: extends the last row of `deliveries` if it ends where these begin and is recent,
 * else adds one. Returns 0 or -1. */
static int deliveries_add(struct spool *sp, const struct spool_queue *q, int64_t to, int64_t first,
                          int64_t last, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_DELIVERY_LAST];
	int64_t through = -1, lfirst = 0, llast = 0;
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW) {
		through = sqlite3_column_int64(st, 0);
		lfirst = sqlite3_column_int64(st, 1);
		llast = sqlite3_column_int64(st, 2);
		rc = SQLITE_DONE;
	}
	spool_st_end(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading delivery times", err, errlen);
		return -1;
	}
	rc = SQLITE_OK;
	if (through == q->delivered && last - lfirst < QUEUE_DELIVERY_MERGE_S &&
	    first - lfirst > -QUEUE_DELIVERY_MERGE_S) {
		st = sp->st[ST_DELIVERY_EXTEND];
		spool_bind_int(st, 1, through, &rc);
		spool_bind_int(st, 2, to, &rc);
		spool_bind_int(st, 3, first < lfirst ? first : lfirst, &rc);
		spool_bind_int(st, 4, last > llast ? last : llast, &rc);
		sp->dl_lo = sp->dl_hi = 0; /* the cached row may be this one */
		if (rc == SQLITE_OK)
			return spool_st_run(sp, ST_DELIVERY_EXTEND, "recording deliveries", err,
			                    errlen);
	} else {
		st = sp->st[ST_DELIVERY_ADD];
		spool_bind_int(st, 1, to, &rc);
		spool_bind_int(st, 2, first, &rc);
		spool_bind_int(st, 3, last, &rc);
		if (rc == SQLITE_OK)
			return spool_st_run(sp, ST_DELIVERY_ADD, "recording deliveries", err,
			                    errlen);
	}
	spool_fail(sp, rc, "recording deliveries", err, errlen);
	spool_st_end(st);
	return -1;
}

/* Moves the watermark over what `d` (sorted) and the rows allow, folding the plain rows it
 * passes into `deliveries`, and keeps the deliveries it cannot pass yet as plain rows. */
static int watermark_move(struct spool *sp, const struct spool_queue *q,
                          const struct delivered_id *d, size_t nd, char *err, size_t errlen)
{
	int64_t to, first = INT64_MAX, last = 0;
	int rc = SQLITE_OK;

	if (watermark_reach(sp, q, d, nd, &to, err, errlen) < 0)
		return -1;
	if (to > q->delivered) {
		sqlite3_stmt *st = sp->st[ST_ABSORB_FIRST];

		spool_bind_int(st, 1, q->delivered, &rc);
		spool_bind_int(st, 2, to, &rc);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
				first = sqlite3_column_int64(st, 0);
				last = sqlite3_column_int64(st, 1);
			}
			rc = SQLITE_OK;
		}
		spool_st_end(st);
		if (rc != SQLITE_OK) {
			spool_fail(sp, rc, "reading outcomes", err, errlen);
			return -1;
		}
		for (size_t j = 0; j < nd && d[j].id <= to; j++) {
			if (d[j].when < first)
				first = d[j].when;
			if (d[j].when > last)
				last = d[j].when;
		}
		st = sp->st[ST_ABSORB];
		spool_bind_int(st, 1, q->delivered, &rc);
		spool_bind_int(st, 2, to, &rc);
		if (rc != SQLITE_OK) {
			spool_fail(sp, rc, "recording deliveries", err, errlen);
			spool_st_end(st);
			return -1;
		}
		if (spool_st_run(sp, ST_ABSORB, "recording deliveries", err, errlen) < 0)
			return -1;
		/* Passed over only rows of other states: no delivery to date. */
		if (first != INT64_MAX && deliveries_add(sp, q, to, first, last, err, errlen) < 0)
			return -1;
		st = sp->st[ST_QUEUE_WATERMARK];
		spool_bind_int(st, 1, to, &rc);
		if (rc != SQLITE_OK ||
		    spool_st_run(sp, ST_QUEUE_WATERMARK, "moving the watermark", err, errlen) < 0)
			return -1;
	}
	/* Delivered ahead of an event still undecided: kept until the watermark passes them. */
	for (size_t j = 0; j < nd; j++) {
		struct spool_outcome o;

		if (d[j].id <= to || (j > 0 && d[j].id == d[j - 1].id))
			continue;
		rc = spool_view_load(sp, &sp->look, d[j].id, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 0)
			continue;
		memset(&o, 0, sizeof(o));
		o.id = d[j].id;
		o.state = EVENT_DELIVERED;
		o.attempts = 1;
		o.queue_seq = sp->look.queue_seq + (d[j].id - sp->look.id);
		o.updated = o.delivered_at = d[j].when;
		if (spool_outcome_put(sp, &o, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* Applies mark *m to an event that has no row: a row made from its batch's position. Returns 1,
 * 0 if there is no such event (nothing to mark), -1 on error. */
static int mark_new_row(struct spool *sp, const struct spool_mark *m, char *err, size_t errlen)
{
	struct spool_outcome o;
	int rc = spool_view_load(sp, &sp->look, m->id, err, errlen);

	if (rc <= 0)
		return rc; /* an id that no longer exists has nothing to mark */
	memset(&o, 0, sizeof(o));
	o.id = m->id;
	o.state = m->state;
	o.attempts = m->attempts;
	o.key_generation = m->key_generation;
	o.first_unknown = m->first_unknown;
	if (m->error != NULL)
		snprintf(o.last_error, sizeof(o.last_error), "%s", m->error);
	o.queue_seq = sp->look.queue_seq + (m->id - sp->look.id);
	o.updated = m->when;
	o.delivered_at = m->state == EVENT_DELIVERED ? m->when : 0;
	return spool_outcome_put(sp, &o, err, errlen) < 0 ? -1 : 1;
}

/* Applies mark *m to its row. */
static int mark_row(struct spool *sp, const struct spool_mark *m, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_OUTCOME_MARK];
	int rc = SQLITE_OK;

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
		return -1;
	}
	return spool_st_run(sp, ST_OUTCOME_MARK, "marking events", err, errlen);
}

/* Marks in id order, a repeated id in the order given (spool_mark). */
struct mark_ref {
	int64_t id;
	size_t i;
};

static int mark_ref_cmp(const void *a, const void *b)
{
	const struct mark_ref *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static int has_id(const int64_t *ids, size_t n, int64_t id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ids[mid] == id)
			return 1;
		if (ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

int spool_mark(struct spool *sp, const struct spool_mark *marks, size_t n, char *err, size_t errlen)
{
	struct delivered_id *d = NULL;
	struct mark_ref *order = NULL;
	int64_t *rows = NULL, made = 0;
	size_t nd = 0, n_rows = 0, cap_rows = 0;
	struct spool_queue q;

	if (sp == NULL || (marks == NULL && n > 0)) {
		err_set(err, errlen, "spool_mark: invalid arguments");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (marks[i].state < EVENT_PENDING || marks[i].state > EVENT_UNSURE ||
		    marks[i].key_generation < 0) {
			err_set(err, errlen, "spool_mark: event %" PRId64 ": invalid state %d",
			        marks[i].id, (int)marks[i].state);
			return -1;
		}
	}
	if (n == 0)
		return 0;
	d = malloc(n * sizeof(*d));
	order = malloc(n * sizeof(*order));
	if (d == NULL || order == NULL) {
		err_set(err, errlen, "spool %s: out of memory", sp->path);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = (struct mark_ref){marks[i].id, i};
	qsort(order, n, sizeof(*order), mark_ref_cmp);
	if (spool_tx_begin(sp, err, errlen) < 0)
		goto out;
	/* Which of them have a row: one range read of `outcomes` rather than a lookup per mark
	 * (rows are the exceptions, so the range holds few). */
	if (spool_queue_get(sp, &q, err, errlen) < 0 ||
	    spool_rows_in(sp, order[0].id, order[n - 1].id + 1, &rows, &n_rows, &cap_rows, err,
	                  errlen) < 0)
		goto fail;
	for (size_t k = 0; k < n; k++) {
		const struct spool_mark *m = &marks[order[k].i];
		int rc;

		if (has_id(rows, n_rows, m->id) || (made != 0 && made == m->id)) {
			if (mark_row(sp, m, err, errlen) < 0)
				goto fail;
		} else if (plain_delivery(m)) {
			/* Up to the watermark without a row: delivered already. */
			if (m->id > q.delivered)
				d[nd++] = (struct delivered_id){m->id, m->when};
		} else {
			rc = mark_new_row(sp, m, err, errlen);
			if (rc < 0)
				goto fail;
			if (rc > 0)
				made = m->id; /* a later mark of this id updates it */
		}
	}
	/* Already in id order. */
	if (watermark_move(sp, &q, d, nd, err, errlen) < 0)
		goto fail;
	crash_point("spool_mark_inside"); /* marks written, not committed: all still pending */
	free(d);
	free(order);
	free(rows);
	return spool_tx_commit(sp, err, errlen);
fail:
	spool_tx_rollback(sp);
out:
	free(d);
	free(order);
	free(rows);
	return -1;
}
