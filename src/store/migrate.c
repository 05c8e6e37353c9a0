/* migrate: the events of schemas 3 and 4, one row each, into schema 5's batches (docs/spool.md, "An
 * older schema"). An event keeps its id, queue position, identifier, state and history:
 *
 * - Consecutive ids of one file committed together (the same `created`) in line order become
 *   one batch, as the commit that made them would now.
 * - The watermark is put just before the first event that is plainly pending (never attempted,
 *   never replayed); every delivered event up to it that has no history of its own is passed by
 *   it, its delivery time kept in `deliveries`.
 * - Every other event gets a row of outcomes with its state, attempts, key generation, first
 *   unknown outcome, last error, queue position and times.
 * - The identifier is computed from the stored fields with the spool's instance id; an event
 *   whose stored identifier differs (made under an earlier instance name, which the spool did not
 *   keep) keeps the stored one in its row: identifiers of events already made never change. */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "store/spool_int.h"
#include "util/log.h"

/* Deliveries within this many seconds of a row's first share the row (as queue.c does). */
#define MIGRATE_DELIVERY_MERGE_S 60
#define MIGRATE_BATCH_MAX 10000

/* A rule as schema 3 stored it with each event, standing in for a configured one. */
struct old_rule {
	struct config_rule r;
};

struct migration {
	struct spool *sp;
	char instance[1024];
	int64_t delivered; /* the watermark chosen */
	struct old_rule *rules;
	size_t n_rules, cap_rules;
	struct spool_batch *b;
	/* the batch being gathered; queue_seq is -1 until an event without a row fixes it */
	int64_t first_id, next_id, file_id, created, queue_seq, last_offset;
	/* its rows of outcomes, written once the batch is */
	struct spool_outcome *rows;
	size_t n_rows, cap_rows;
	/* the row of deliveries being gathered */
	int64_t dl_through, dl_first, dl_last;
	int64_t moved;
	char *err;
	size_t errlen;
};

static void rules_free(struct migration *m)
{
	for (size_t i = 0; i < m->n_rules; i++) {
		free(m->rules[i].r.name);
		free(m->rules[i].r.event_name);
		free(m->rules[i].r.payload_customer_key);
		free(m->rules[i].r.payload_value_key);
	}
	free(m->rules);
}

static const char *col(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	return s != NULL ? (const char *)s : "";
}

/* The stand-in for the rule of the current row. */
static const struct config_rule *rule_of(struct migration *m, sqlite3_stmt *st)
{
	const char *name = col(st, SPOOL_EC_RULE), *ev = col(st, SPOOL_EC_EVENT_NAME);
	const char *ck = col(st, SPOOL_EC_PAYLOAD_CUSTOMER_KEY);
	const char *vk = col(st, SPOOL_EC_PAYLOAD_VALUE_KEY);
	struct config_rule *r;

	for (size_t i = 0; i < m->n_rules; i++) {
		r = &m->rules[i].r;
		if (strcmp(r->name, name) == 0 && strcmp(r->event_name, ev) == 0 &&
		    strcmp(r->payload_customer_key, ck) == 0 &&
		    strcmp(r->payload_value_key, vk) == 0)
			return r;
	}
	if (m->n_rules == m->cap_rules) {
		size_t cap = m->cap_rules ? 2 * m->cap_rules : 8;
		struct old_rule *p = realloc(m->rules, cap * sizeof(*p));

		if (p == NULL)
			return NULL;
		m->rules = p;
		m->cap_rules = cap;
	}
	r = &m->rules[m->n_rules].r;
	memset(r, 0, sizeof(*r));
	r->name = strdup(name);
	r->event_name = strdup(ev);
	r->payload_customer_key = strdup(ck);
	r->payload_value_key = strdup(vk);
	m->n_rules++; /* freed by rules_free even if a strdup failed */
	if (r->name == NULL || r->event_name == NULL || r->payload_customer_key == NULL ||
	    r->payload_value_key == NULL)
		return NULL;
	return r;
}

/* Writes the gathered batch and its rows. Returns 0 or -1. */
static int flush_batch(struct migration *m)
{
	if (spool_batch_count(m->b) == 0)
		return 0;
	/* Every event of it has a row, with its own position: any base will do. */
	if (m->queue_seq < 0)
		m->queue_seq = m->first_id;
	if (spool_batch_store(m->sp, m->first_id, m->file_id, m->last_offset + 1, m->queue_seq,
	                      m->created, m->b, m->err, m->errlen) < 0)
		return -1;
	for (size_t i = 0; i < m->n_rows; i++)
		if (spool_outcome_put(m->sp, &m->rows[i], m->err, m->errlen) < 0)
			return -1;
	m->moved += (int64_t)spool_batch_count(m->b);
	spool_batch_clear(m->b);
	m->n_rows = 0;
	return 0;
}

static int flush_deliveries(struct migration *m)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (m->dl_through == 0)
		return 0;
	rc = sqlite3_prepare_v2(
	    m->sp->db, "INSERT INTO deliveries(through, first_at, last_at) VALUES (?1, ?2, ?3)", -1,
	    &st, NULL);
	spool_bind_int(st, 1, m->dl_through, &rc);
	spool_bind_int(st, 2, m->dl_first, &rc);
	spool_bind_int(st, 3, m->dl_last, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		spool_fail(m->sp, rc, "migrating delivery times", m->err, m->errlen);
		return -1;
	}
	m->dl_through = 0;
	return 0;
}

/* A delivered event passed by the watermark: its time joins the row being gathered. */
static int passed(struct migration *m, int64_t id, int64_t at)
{
	if (m->dl_through != 0 && (at - m->dl_first >= MIGRATE_DELIVERY_MERGE_S ||
	                           at - m->dl_first <= -MIGRATE_DELIVERY_MERGE_S)) {
		if (flush_deliveries(m) < 0)
			return -1;
	}
	if (m->dl_through == 0) {
		m->dl_first = m->dl_last = at;
	} else {
		if (at < m->dl_first)
			m->dl_first = at;
		if (at > m->dl_last)
			m->dl_last = at;
	}
	m->dl_through = id;
	return 0;
}

static int64_t int_or(sqlite3_stmt *st, int i, int64_t dflt)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_int64(st, i);
}

/* Takes the event of the current row. Returns 0 or -1. */
static int take(struct migration *m, sqlite3_stmt *st)
{
	int64_t id = sqlite3_column_int64(st, SPOOL_EC_ID);
	int64_t file_id = sqlite3_column_int64(st, SPOOL_EC_FILE_ID);
	int64_t off = sqlite3_column_int64(st, SPOOL_EC_LINE_OFFSET);
	int64_t created = int_or(st, SPOOL_EC_CREATED, 0);
	int64_t state = sqlite3_column_int64(st, SPOOL_EC_STATE);
	int64_t attempts = sqlite3_column_int64(st, SPOOL_EC_ATTEMPTS);
	int64_t kg = int_or(st, SPOOL_EC_KEY_GENERATION, 0);
	int64_t fu = int_or(st, SPOOL_EC_FIRST_UNKNOWN, 0);
	int64_t seq = int_or(st, SPOOL_EC_QUEUE_SEQ, id);
	int64_t updated = int_or(st, SPOOL_EC_UPDATED, created);
	int64_t dlv = int_or(st, SPOOL_EC_DELIVERED_AT, updated);
	const char *error = col(st, SPOOL_EC_LAST_ERROR), *stored = col(st, SPOOL_EC_IDENTIFIER);
	const struct config_rule *rule = rule_of(m, st);
	char computed[EVENT_IDENTIFIER_MAX];
	struct spool_new_event ne;
	int plain, rc;

	if (rule == NULL) {
		err_set(m->err, m->errlen, "spool %s: out of memory", m->sp->path);
		return -1;
	}
	if (state < EVENT_PENDING || state > EVENT_UNSURE) {
		err_set(m->err, m->errlen,
		        "spool %s: event %" PRId64 " has an invalid state %" PRId64, m->sp->path,
		        id, state);
		return -1;
	}
	/* The identifier from the stored fields, with the source and uid of its file record, as
	 * the event will be read back. */
	{
		struct spool_file_names names;
		sqlite3_stmt *fs = m->sp->st[ST_FILE_NAMES];

		rc = SQLITE_OK;
		memset(&names, 0, sizeof(names));
		spool_bind_int(fs, 1, file_id, &rc);
		if (rc == SQLITE_OK && sqlite3_step(fs) == SQLITE_ROW) {
			spool_col_text(fs, 0, names.source, sizeof(names.source));
			spool_col_text(fs, 1, names.uid, sizeof(names.uid));
		}
		spool_st_end(fs);
		if (event_ids_make(m->sp->ids, computed, m->instance, names.source, names.uid, off,
		                   rule->name) < 0)
			computed[0] = '\0';
	}
	plain = attempts <= 1 && kg == 0 && fu == 0 && error[0] == '\0' &&
	        strcmp(computed, stored) == 0 &&
	        ((state == EVENT_PENDING && attempts == 0 && id > m->delivered) ||
	         (state == EVENT_DELIVERED && id <= m->delivered));
	/* A batch is what one commit made: consecutive ids of one file, one time, line order,
	 * and positions that follow its ids (those of events without a row: a moved one has its
	 * own in its row). A window's meter event (at a negative offset, the window's id) is a
	 * batch of its own, as spool_windows_close makes it. */
	if (spool_batch_count(m->b) > 0 &&
	    (id != m->next_id || file_id != m->file_id || created != m->created ||
	     off < m->last_offset || off < 0 || m->last_offset < 0 ||
	     (plain && m->queue_seq >= 0 && seq - m->queue_seq != id - m->first_id) ||
	     (spool_batch_count(m->b) >= MIGRATE_BATCH_MAX && off != m->last_offset))) {
		if (flush_batch(m) < 0)
			return -1;
	}
	if (spool_batch_count(m->b) == 0) {
		m->first_id = id;
		m->file_id = file_id;
		m->created = created;
		m->queue_seq = -1;
	}
	if (plain && m->queue_seq < 0)
		m->queue_seq = seq - (id - m->first_id);
	ne = (struct spool_new_event){.line_offset = off,
	                              .rule = rule,
	                              .customer_key = col(st, SPOOL_EC_CUSTOMER_KEY),
	                              .customer = col(st, SPOOL_EC_CUSTOMER),
	                              .value = col(st, SPOOL_EC_VALUE),
	                              .timestamp = sqlite3_column_int64(st, SPOOL_EC_TIMESTAMP)};
	rc = spool_batch_add(m->b, &ne, m->err, m->errlen);
	if (rc != 0) {
		if (rc > 0)
			err_set(m->err, m->errlen,
			        "spool %s: event %" PRId64 " has a field too long", m->sp->path,
			        id);
		return -1;
	}
	m->next_id = id + 1;
	m->last_offset = off;
	if (plain)
		return state == EVENT_DELIVERED ? passed(m, id, dlv) : 0;
	if (m->n_rows == m->cap_rows) {
		size_t cap = m->cap_rows ? 2 * m->cap_rows : 64;
		struct spool_outcome *p = realloc(m->rows, cap * sizeof(*p));

		if (p == NULL) {
			err_set(m->err, m->errlen, "spool %s: out of memory", m->sp->path);
			return -1;
		}
		m->rows = p;
		m->cap_rows = cap;
	}
	{
		struct spool_outcome *o = &m->rows[m->n_rows++];

		memset(o, 0, sizeof(*o));
		o->id = id;
		o->state = (enum event_state)state;
		o->attempts = attempts;
		o->key_generation = kg;
		o->first_unknown = fu;
		snprintf(o->last_error, sizeof(o->last_error), "%s", error);
		if (strcmp(computed, stored) != 0) {
			o->has_identifier = 1;
			snprintf(o->identifier, sizeof(o->identifier), "%s", stored);
		}
		o->queue_seq = seq;
		o->updated = updated;
		o->delivered_at = state == EVENT_DELIVERED ? dlv : 0;
	}
	return 0;
}

int spool_migrate_events(struct spool *sp, const char *table, int64_t *moved, char *err,
                         size_t errlen)
{
	struct migration m;
	sqlite3_stmt *st = NULL;
	char sql[1024], shift_text[32] = "0";
	int64_t shift = 0, max_id = 0, first_plain = 0;
	int rc, ret = -1;

	memset(&m, 0, sizeof(m));
	m.sp = sp;
	m.err = err;
	m.errlen = errlen;
	if (moved != NULL)
		*moved = 0;
	if (spool_meta_get(sp, "instance", m.instance, sizeof(m.instance), err, errlen) < 0 ||
	    spool_meta_get(sp, "queue_shift", shift_text, sizeof(shift_text), err, errlen) < 0)
		return -1;
	shift = strtoll(shift_text, NULL, 10);
	m.b = spool_batch_new(m.instance, err, errlen);
	if (m.b == NULL)
		return -1;
	/* The watermark: just before the first event never attempted and never replayed. */
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(max(id), 0),"
	         " (SELECT min(id) FROM %s WHERE state = 0 AND attempts = 0"
	         " AND coalesce(key_generation, 0) = 0 AND first_unknown IS NULL"
	         " AND coalesce(last_error, '') = '') FROM %s",
	         table, table);
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		spool_fail(sp, rc, "migrating events", err, errlen);
		goto out;
	}
	max_id = sqlite3_column_int64(st, 0);
	first_plain = sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	st = NULL;
	m.delivered = first_plain > 0 ? first_plain - 1 : max_id;
	snprintf(sql, sizeof(sql),
	         "SELECT id, file_id, line_offset, rule, identifier, event_name,"
	         " payload_customer_key, payload_value_key, customer_key, customer, value,"
	         " timestamp, state, attempts, last_error, created, delivered_at, updated,"
	         " key_generation, first_unknown, queue_seq FROM %s ORDER BY id",
	         table);
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (take(&m, st) < 0)
			goto out;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "migrating events", err, errlen);
		goto out;
	}
	if (flush_batch(&m) < 0 || flush_deliveries(&m) < 0)
		goto out;
	snprintf(sql, sizeof(sql),
	         "DELETE FROM queue; INSERT INTO queue(next_id, shift, delivered_through)"
	         " VALUES (%" PRId64 ", %" PRId64 ", %" PRId64 ")",
	         max_id + 1, shift, m.delivered);
	if (spool_exec(sp, sql, "migrating the queue", err, errlen) < 0)
		goto out;
	if (moved != NULL)
		*moved = m.moved;
	ret = 0;
out:
	sqlite3_finalize(st);
	spool_batch_free(m.b);
	rules_free(&m);
	free(m.rows);
	return ret;
}
