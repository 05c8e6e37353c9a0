/* events: an event read back whole. Its line's fields come from its batch (batch.c), what its
 * rule's events share from `rules`, its file's source and uid from `files`, its identifier is
 * computed from those (docs/identifiers.md), and its state from its row of `outcomes` if it has
 * one, else from the watermark: delivered up to it, pending after it. The handle caches what
 * never changes (rules, file names, the batch being read), so that reading events in order
 * costs their decoding and their identifier, not a query each. */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_int.h"
#include "util/log.h"

const struct spool_sql spool_events_sql[] = {
    {ST_RULE_GET, "SELECT id, instance, rule, event_name, payload_customer_key,"
                  " payload_value_key FROM rules WHERE id = ?1"},
    {ST_FILE_NAMES, "SELECT source, uid FROM files WHERE id = ?1"},
    /* The batch whose ids start at or before ?1: the rowid's b-tree, one search. */
    {ST_BATCH_AT,
     "SELECT " SPOOL_BATCH_COLUMNS " FROM batches WHERE id <= ?1 ORDER BY id DESC LIMIT 1"},
    {ST_BATCHES_FROM, "SELECT " SPOOL_BATCH_COLUMNS " FROM batches WHERE id >= ?1 ORDER BY id"},
    /* The same rows without their blob: a blob of 10,000 events (250 KB) spans overflow pages
     * that SQLite reads whenever a step returns it, even when the caller holds it already. */
    {ST_BATCH_HEADS, "SELECT id, n FROM batches WHERE id >= ?1 ORDER BY id"},
    {ST_OUTCOME_GET, "SELECT " SPOOL_OUTCOME_COLUMNS " FROM outcomes WHERE id = ?1"},
    {ST_ROWS_IN, "SELECT id FROM outcomes WHERE id >= ?1 AND id < ?2 ORDER BY id"},
    /* The row of deliveries covering ?1: the first whose watermark reached it, and where the
     * row before it ended. */
    {ST_DELIVERY_OF, "SELECT through, first_at, coalesce((SELECT max(through) FROM deliveries"
                     " WHERE through < ?1), 0) FROM deliveries WHERE through >= ?1"
                     " ORDER BY through LIMIT 1"},
    {ST_COUNT_, NULL},
};

static char *dup_col(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	return strdup(s != NULL ? (const char *)s : "");
}

const struct spool_rule *spool_rule_of(struct spool *sp, int64_t id, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_RULE_GET];
	struct spool_rule *r;
	int rc = SQLITE_OK;

	for (size_t i = 0; i < sp->n_rules; i++)
		if (sp->rules[i].id == id)
			return &sp->rules[i];
	if (sp->n_rules == sp->cap_rules) {
		size_t cap = sp->cap_rules > 0 ? 2 * sp->cap_rules : 16;

		r = realloc(sp->rules, cap * sizeof(*r));
		if (r == NULL) {
			err_set(err, errlen, "spool %s: out of memory", sp->path);
			return NULL;
		}
		sp->rules = r;
		sp->cap_rules = cap;
	}
	spool_bind_int(st, 1, id, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE)
			err_set(err, errlen, "spool %s: no rule %" PRId64 " for an event%s",
			        sp->path, id, spool_damage_hint(SQLITE_CORRUPT));
		else
			spool_fail(sp, rc, "reading a rule", err, errlen);
		spool_st_end(st);
		return NULL;
	}
	r = &sp->rules[sp->n_rules];
	r->id = id;
	r->instance = dup_col(st, 1);
	r->rule = dup_col(st, 2);
	r->event_name = dup_col(st, 3);
	r->payload_customer_key = dup_col(st, 4);
	r->payload_value_key = dup_col(st, 5);
	spool_st_end(st);
	if (r->instance == NULL || r->rule == NULL || r->event_name == NULL ||
	    r->payload_customer_key == NULL || r->payload_value_key == NULL) {
		free(r->instance);
		free(r->rule);
		free(r->event_name);
		free(r->payload_customer_key);
		free(r->payload_value_key);
		err_set(err, errlen, "spool %s: out of memory", sp->path);
		return NULL;
	}
	sp->n_rules++;
	return r;
}

/* The source and uid of file record `id` (cached). */
static const struct spool_file_names *file_names(struct spool *sp, int64_t id, char *err,
                                                 size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_FILE_NAMES];
	struct spool_file_names *f;
	int rc = SQLITE_OK;

	for (size_t i = 0; i < SPOOL_FILE_CACHE; i++)
		if (sp->files[i].id == id && id != 0)
			return &sp->files[i];
	spool_bind_int(st, 1, id, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE)
			err_set(err, errlen, "spool %s: no file record %" PRId64 " for an event%s",
			        sp->path, id, spool_damage_hint(SQLITE_CORRUPT));
		else
			spool_fail(sp, rc, "reading a file record", err, errlen);
		spool_st_end(st);
		return NULL;
	}
	f = &sp->files[sp->next_file];
	sp->next_file = (sp->next_file + 1) % SPOOL_FILE_CACHE;
	f->id = id;
	spool_col_text(st, 0, f->source, sizeof(f->source));
	spool_col_text(st, 1, f->uid, sizeof(f->uid));
	spool_st_end(st);
	return f;
}

void spool_view_free(struct spool_view *v)
{
	free(v->blob);
	free(v->rule_ids);
	memset(v, 0, sizeof(*v));
}

int spool_view_take(struct spool *sp, struct spool_view *v, sqlite3_stmt *st, char *err,
                    size_t errlen)
{
	int64_t id = sqlite3_column_int64(st, SPOOL_BC_ID);
	const void *blob;
	size_t len;

	/* Batches never change: the one already held is the same. */
	if (v->loaded && v->id == id)
		return 0;
	v->loaded = 0;
	v->id = id;
	v->n = sqlite3_column_int64(st, SPOOL_BC_N);
	v->file_id = sqlite3_column_int64(st, SPOOL_BC_FILE_ID);
	v->first_offset = sqlite3_column_int64(st, SPOOL_BC_FIRST_OFFSET);
	v->end_offset = sqlite3_column_int64(st, SPOOL_BC_END_OFFSET);
	v->queue_seq = sqlite3_column_int64(st, SPOOL_BC_QUEUE_SEQ);
	v->created = sqlite3_column_int64(st, SPOOL_BC_CREATED);
	blob = sqlite3_column_blob(st, SPOOL_BC_EVENTS);
	len = (size_t)sqlite3_column_bytes(st, SPOOL_BC_EVENTS);
	if (v->n < 1 || blob == NULL) {
		spool_fail_damaged(sp, id, err, errlen);
		return -1;
	}
	if (len > v->cap) {
		unsigned char *p = realloc(v->blob, len);

		if (p == NULL) {
			err_set(err, errlen, "spool %s: out of memory", sp->path);
			return -1;
		}
		v->blob = p;
		v->cap = len;
	}
	memcpy(v->blob, blob, len);
	v->len = len;
	if (spool_view_start(v) < 0) {
		spool_fail_damaged(sp, id, err, errlen);
		return -1;
	}
	v->loaded = 1;
	return 0;
}

int spool_view_load(struct spool *sp, struct spool_view *v, int64_t id, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_BATCH_AT];
	int rc = SQLITE_OK;

	if (v->loaded && id >= v->id && id < v->id + v->n)
		return 1;
	spool_bind_int(st, 1, id, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		spool_st_end(st);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		spool_fail(sp, rc, "reading a batch of events", err, errlen);
		spool_st_end(st);
		return -1;
	}
	if (spool_view_take(sp, v, st, err, errlen) < 0) {
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return id < v->id + v->n ? 1 : 0;
}

int spool_outcome_get(struct spool *sp, int64_t id, struct spool_outcome *o, char *err,
                      size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_OUTCOME_GET];
	int rc = SQLITE_OK, found = 0;

	spool_bind_int(st, 1, id, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (spool_row_outcome(sp, st, o, err, errlen) < 0) {
			spool_st_end(st);
			return -1;
		}
		found = 1;
		rc = SQLITE_DONE;
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading an outcome", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return found;
}

/* When event `id`, passed by the watermark without a row of its own, was delivered: the first
 * time of the row of deliveries that covers it (docs/spool.md). 0 if none does. */
static int delivered_at(struct spool *sp, int64_t id, int64_t *at, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_DELIVERY_OF];
	int rc = SQLITE_OK;

	if (id > sp->dl_lo && id <= sp->dl_hi) {
		*at = sp->dl_first;
		return 0;
	}
	*at = 0;
	spool_bind_int(st, 1, id, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		sp->dl_hi = sqlite3_column_int64(st, 0);
		sp->dl_first = sqlite3_column_int64(st, 1);
		sp->dl_lo = sqlite3_column_int64(st, 2);
		*at = sp->dl_first;
		rc = SQLITE_DONE;
	}
	spool_st_end(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading delivery times", err, errlen);
		return -1;
	}
	return 0;
}

static void copy_text(char *dst, size_t size, const char *src, size_t n)
{
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void copy_str(char *dst, size_t size, const char *src)
{
	copy_text(dst, size, src, strlen(src));
}

int spool_event_fill(struct spool *sp, const struct spool_view *v, const struct spool_item *it,
                     const struct spool_outcome *o, int64_t delivered, struct event *ev, char *err,
                     size_t errlen)
{
	const struct spool_rule *r = spool_rule_of(sp, it->rule_id, err, errlen);
	const struct spool_file_names *f;

	if (r == NULL)
		return -1;
	f = file_names(sp, v->file_id, err, errlen);
	if (f == NULL)
		return -1;
	/* Not memset: every field is written below, and a struct event is 1.7 KB. */
	ev->id = it->id;
	ev->queue_seq = it->queue_seq;
	ev->file_id = v->file_id;
	ev->line_offset = it->line_offset;
	copy_str(ev->rule, sizeof(ev->rule), r->rule);
	copy_str(ev->event_name, sizeof(ev->event_name), r->event_name);
	copy_str(ev->payload_customer_key, sizeof(ev->payload_customer_key),
	         r->payload_customer_key);
	copy_str(ev->payload_value_key, sizeof(ev->payload_value_key), r->payload_value_key);
	copy_text(ev->customer_key, sizeof(ev->customer_key), it->customer_key,
	          it->customer_key_len);
	copy_text(ev->customer, sizeof(ev->customer), it->customer, it->customer_len);
	copy_text(ev->value, sizeof(ev->value), it->value, it->value_len);
	ev->timestamp = it->timestamp;
	ev->created = v->created;
	if (o != NULL && o->has_identifier) {
		copy_str(ev->identifier, sizeof(ev->identifier), o->identifier);
	} else if (event_ids_make(sp->ids, ev->identifier, r->instance, f->source, f->uid,
	                          it->line_offset, r->rule) < 0) {
		err_set(err, errlen, "spool %s: cannot compute the identifier of event %" PRId64,
		        sp->path, it->id);
		return -1;
	}
	if (o != NULL) {
		ev->queue_seq = o->queue_seq;
		ev->state = o->state;
		ev->attempts = o->attempts;
		ev->key_generation = o->key_generation;
		ev->first_unknown = o->first_unknown;
		copy_str(ev->last_error, sizeof(ev->last_error), o->last_error);
		ev->delivered_at = o->state == EVENT_DELIVERED ? o->delivered_at : 0;
		if (o->has_customer)
			copy_str(ev->customer, sizeof(ev->customer), o->customer);
		return 0;
	}
	ev->key_generation = ev->first_unknown = 0;
	ev->last_error[0] = '\0';
	if (it->id <= delivered) {
		ev->state = EVENT_DELIVERED;
		ev->attempts = 1;
		return delivered_at(sp, it->id, &ev->delivered_at, err, errlen);
	}
	ev->state = EVENT_PENDING;
	ev->attempts = 0;
	ev->delivered_at = 0;
	return 0;
}

int spool_item_of(struct spool *sp, int64_t id, struct spool_item *it, char *err, size_t errlen)
{
	int rc = spool_view_load(sp, &sp->look, id, err, errlen);

	if (rc <= 0)
		return rc;
	rc = spool_view_seek(&sp->look, id, it);
	if (rc < 0) {
		spool_fail_damaged(sp, sp->look.id, err, errlen);
		sp->look.loaded = 0;
		return -1;
	}
	return rc;
}

int spool_event_get(struct spool *sp, const struct spool_queue *q, int64_t id, struct event *ev,
                    char *err, size_t errlen)
{
	struct spool_outcome o;
	struct spool_item it;
	int has_row, rc;

	rc = spool_item_of(sp, id, &it, err, errlen);
	if (rc <= 0)
		return rc;
	has_row = spool_outcome_get(sp, id, &o, err, errlen);
	if (has_row < 0)
		return -1;
	if (spool_event_fill(sp, &sp->look, &it, has_row ? &o : NULL, q->delivered, ev, err,
	                     errlen) < 0)
		return -1;
	return 1;
}

int spool_rows_in(struct spool *sp, int64_t lo, int64_t hi, int64_t **ids, size_t *n, size_t *cap,
                  char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_ROWS_IN];
	int rc = SQLITE_OK;

	*n = 0;
	spool_bind_int(st, 1, lo, &rc);
	spool_bind_int(st, 2, hi, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == *cap) {
			size_t c = *cap > 0 ? 2 * *cap : 64;
			int64_t *p = realloc(*ids, c * sizeof(*p));

			if (p == NULL) {
				spool_st_end(st);
				err_set(err, errlen, "spool %s: out of memory", sp->path);
				return -1;
			}
			*ids = p;
			*cap = c;
		}
		(*ids)[(*n)++] = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
	spool_st_end(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading outcomes", err, errlen);
		return -1;
	}
	return 0;
}

int spool_plain_foreach(struct spool *sp, int64_t from, int64_t to,
                        int (*cb)(struct spool *sp, const struct spool_view *v,
                                  const struct spool_item *it, void *ud),
                        void *ud, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_BATCH_HEADS];
	struct spool_view *v = &sp->scan;
	int64_t *rows = NULL, start;
	size_t n_rows = 0, cap_rows = 0;
	int rc = SQLITE_OK, ret = -1;

	/* From the batch that holds `from`, if one does. */
	start = from;
	if (spool_view_load(sp, &sp->look, from, err, errlen) < 0)
		return -1;
	if (sp->look.loaded && from >= sp->look.id && from < sp->look.id + sp->look.n)
		start = sp->look.id;
	spool_bind_int(st, 1, start, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		struct spool_item it;
		size_t r = 0;
		int got;

		rc = SQLITE_OK;
		if (id > to)
			break;
		/* The sender reads a batch in loads of a few hundred events: the blob is read and
		 * copied once, not once per load (batches never change; that the row still exists
		 * is what this step says). */
		if (!v->loaded || v->id != id || v->n != sqlite3_column_int64(st, 1)) {
			v->loaded = 0;
			if (spool_view_load(sp, v, id, err, errlen) < 0)
				goto out;
			if (!v->loaded || v->id != id) {
				spool_fail_damaged(sp, id, err, errlen);
				goto out;
			}
		}
		if (spool_rows_in(sp, v->id, v->id + v->n, &rows, &n_rows, &cap_rows, err, errlen) <
		    0)
			goto out;
		if (from > v->id) {
			got = spool_view_seek(v, from, &it);
		} else {
			if (spool_view_start(v) < 0) {
				got = -1;
			} else {
				got = spool_view_next(v, &it);
			}
		}
		for (; got == 1; got = spool_view_next(v, &it)) {
			int c;

			if (it.id > to)
				break;
			while (r < n_rows && rows[r] < it.id)
				r++;
			if (r < n_rows && rows[r] == it.id)
				continue;
			c = cb(sp, v, &it, ud);
			if (c != 0) {
				ret = c;
				goto out;
			}
		}
		if (got < 0) {
			spool_fail_damaged(sp, v->id, err, errlen);
			v->loaded = 0;
			goto out;
		}
	}
	if (rc != SQLITE_OK && rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading batches of events", err, errlen);
		goto out;
	}
	ret = 0;
out:
	spool_st_end(st);
	free(rows);
	return ret;
}
