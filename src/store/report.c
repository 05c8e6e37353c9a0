/* report: the spool's queries for status and metrics beyond query.c's (store/report.h). */
#include "store/report.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_int.h"
#include "util/log.h"

/* Runs `sql`, with ?1 bound to *arg (NULL: nothing bound), which returns one integer row; its
 * value into *out (a NULL value: 0). */
static int one_int(struct spool *sp, const char *sql, const int64_t *arg, const char *what,
                   int64_t *out, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc, ret = -1;

	if (sp == NULL || out == NULL) {
		err_set(err, errlen, "%s: invalid arguments", what);
		return -1;
	}
	*out = 0;
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (arg != NULL)
		spool_bind_int(st, 1, *arg, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		spool_fail(sp, rc, what, err, errlen);
		goto out;
	}
	*out = sqlite3_column_int64(st, 0);
	ret = 0;
out:
	sqlite3_finalize(st);
	return ret;
}

/* Events counted by row of `rules` and state (spool_rule_counts). */
struct rule_count {
	int64_t rule_id;
	int64_t n[EVENT_UNSURE + 1];
};

struct rule_tally {
	struct rule_count *c;
	size_t n, cap;
	int64_t delivered; /* the watermark */
};

static int tally(struct rule_tally *t, int64_t rule_id, enum event_state state)
{
	size_t i;

	for (i = 0; i < t->n && t->c[i].rule_id != rule_id; i++)
		;
	if (i == t->n) {
		if (t->n == t->cap) {
			size_t cap = t->cap > 0 ? 2 * t->cap : 16;
			struct rule_count *c = realloc(t->c, cap * sizeof(*c));

			if (c == NULL)
				return -1;
			t->c = c;
			t->cap = cap;
		}
		memset(&t->c[t->n], 0, sizeof(t->c[0]));
		t->c[t->n++].rule_id = rule_id;
	}
	t->c[i].n[state]++;
	return 0;
}

static int tally_plain(struct spool *sp, const struct spool_view *v, const struct spool_item *it,
                       void *ud)
{
	struct rule_tally *t = ud;

	(void)sp;
	(void)v;
	return tally(t, it->rule_id, it->id <= t->delivered ? EVENT_DELIVERED : EVENT_PENDING);
}

/* The events with a row of outcomes, by the state it says. */
static int tally_rows(struct spool *sp, struct rule_tally *t, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc =
	    sqlite3_prepare_v2(sp->db, "SELECT id, state FROM outcomes ORDER BY id", -1, &st, NULL);

	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t state = sqlite3_column_int64(st, 1);
		struct spool_item it;
		int got;

		rc = SQLITE_OK;
		if (state < EVENT_PENDING || state > EVENT_UNSURE)
			continue; /* not a state this logmeter knows: spool check says so */
		got = spool_item_of(sp, sqlite3_column_int64(st, 0), &it, err, errlen);
		if (got < 0) {
			sqlite3_finalize(st);
			return -1;
		}
		if (got == 1 && tally(t, it.rule_id, (enum event_state)state) < 0) {
			sqlite3_finalize(st);
			err_set(err, errlen, "spool %s: out of memory", sp->path);
			return -1;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "counting events by rule", err, errlen);
		return -1;
	}
	return 0;
}

static int by_rule_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Calls cb for each rule name of t, in order, with the counts of all its rows of `rules` (a
 * reload or another instance makes several). */
static int report_tally(struct spool *sp, const struct rule_tally *t,
                        int (*cb)(const char *rule, enum event_state state, int64_t n, void *ud),
                        void *ud, char *err, size_t errlen)
{
	const char **names = calloc(t->n + 1, sizeof(*names));
	int ret = -1;

	if (names == NULL) {
		err_set(err, errlen, "spool %s: out of memory", sp->path);
		return -1;
	}
	for (size_t i = 0; i < t->n; i++) {
		const struct spool_rule *r = spool_rule_of(sp, t->c[i].rule_id, err, errlen);

		if (r == NULL)
			goto out;
		names[i] = r->rule; /* the handle's cache of rules keeps it */
	}
	qsort(names, t->n, sizeof(*names), by_rule_name);
	for (size_t i = 0; i < t->n; i++) {
		int64_t n[EVENT_UNSURE + 1] = {0};

		if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
			continue;
		for (size_t j = 0; j < t->n; j++) {
			const struct spool_rule *r =
			    spool_rule_of(sp, t->c[j].rule_id, err, errlen);

			if (r == NULL)
				goto out;
			if (strcmp(r->rule, names[i]) == 0)
				for (int s = EVENT_PENDING; s <= EVENT_UNSURE; s++)
					n[s] += t->c[j].n[s];
		}
		for (int s = EVENT_PENDING; s <= EVENT_UNSURE; s++)
			if (n[s] > 0 && cb(names[i], (enum event_state)s, n[s], ud) < 0) {
				err_set(
				    err, errlen,
				    "spool %s: counting events by rule: stopped by the callback",
				    sp->path);
				goto out;
			}
	}
	ret = 0;
out:
	free(names);
	return ret;
}

int spool_rule_counts(struct spool *sp,
                      int (*cb)(const char *rule, enum event_state state, int64_t n, void *ud),
                      void *ud, char *err, size_t errlen)
{
	struct rule_tally t = {NULL, 0, 0, 0};
	struct spool_queue q;
	int ret = -1;

	if (sp == NULL || cb == NULL) {
		err_set(err, errlen, "spool_rule_counts: invalid arguments");
		return -1;
	}
	/* One snapshot: an event counted once, under the state the rows and watermark say. */
	if (spool_tx_begin_read(sp, err, errlen) < 0)
		return -1;
	if (spool_queue_get(sp, &q, err, errlen) < 0)
		goto out;
	t.delivered = q.delivered;
	if (spool_plain_foreach(sp, 1, INT64_MAX, tally_plain, &t, err, errlen) != 0) {
		if (err != NULL && err[0] == '\0')
			err_set(err, errlen, "spool %s: out of memory", sp->path);
		goto out;
	}
	if (tally_rows(sp, &t, err, errlen) < 0)
		goto out;
	ret = report_tally(sp, &t, cb, ud, err, errlen);
out:
	if (ret == 0) {
		if (spool_tx_commit(sp, err, errlen) < 0)
			ret = -1;
	} else {
		spool_tx_rollback(sp);
	}
	free(t.c);
	return ret;
}

/* The oldest timestamp among pending events (spool_oldest_pending). */
static int oldest_plain(struct spool *sp, const struct spool_view *v, const struct spool_item *it,
                        void *ud)
{
	int64_t *oldest = ud;

	(void)sp;
	(void)v;
	if (*oldest == 0 || it->timestamp < *oldest)
		*oldest = it->timestamp;
	return 0;
}

int spool_oldest_pending(struct spool *sp, int64_t *out, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	struct spool_queue q;
	int rc, ret = -1;

	if (sp == NULL || out == NULL) {
		err_set(err, errlen, "spool_oldest_pending: invalid arguments");
		return -1;
	}
	*out = 0;
	if (spool_tx_begin_read(sp, err, errlen) < 0)
		return -1;
	/* Pending: past the watermark without a row, and the rows that say so. */
	if (spool_queue_get(sp, &q, err, errlen) < 0 ||
	    spool_plain_foreach(sp, q.delivered + 1, INT64_MAX, oldest_plain, out, err, errlen) !=
	        0)
		goto out;
	/* The literal state lets the planner take the partial index of pending rows. */
	rc = sqlite3_prepare_v2(sp->db, "SELECT id FROM outcomes WHERE state = 0", -1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct spool_item it;
		int got = spool_item_of(sp, sqlite3_column_int64(st, 0), &it, err, errlen);

		rc = SQLITE_OK;
		if (got < 0)
			goto out;
		if (got == 1)
			oldest_plain(sp, NULL, &it, out);
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "finding the oldest pending event", err, errlen);
		goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(st);
	if (ret == 0) {
		if (spool_tx_commit(sp, err, errlen) < 0)
			ret = -1;
	} else {
		spool_tx_rollback(sp);
	}
	return ret;
}

int spool_dead_since(struct spool *sp, int64_t since, int64_t *out, char *err, size_t errlen)
{
	/* A dead letter always has its row of outcomes, which says when it died. */
	return one_int(sp, "SELECT count(*) FROM outcomes WHERE state = 2 AND updated >= ?1",
	               &since, "counting dead letters", out, err, errlen);
}

int spool_file_events(struct spool *sp, int64_t file_id, int64_t *out, char *err, size_t errlen)
{
	return one_int(sp, "SELECT sum(n) FROM batches WHERE file_id = ?1", &file_id,
	               "counting a file's events", out, err, errlen);
}

/* `n` bytes at `p` into `out` (`size` bytes) with a NUL, cut if they do not fit. */
static void item_text(char *out, size_t size, const char *p, size_t n)
{
	if (n >= size)
		n = size - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

int spool_events_between(struct spool *sp, int64_t from, int64_t to,
                         int (*cb)(const char *rule, const char *customer_key, const char *value,
                                   int64_t timestamp, int64_t file_id, void *ud),
                         void *ud, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	struct spool_view v;
	char key[EVENT_CUSTOMER_MAX], value[EVENT_VALUE_MAX];
	int rc = SQLITE_OK, ret = -1;

	if (sp == NULL || cb == NULL) {
		err_set(err, errlen, "spool_events_between: invalid arguments");
		return -1;
	}
	/* Every batch, every event of it whatever its row of outcomes says: the rule, customer
	 * key, value and timestamp are the batch's. A view of its own, so that the handle's
	 * (the sender's reads) are left as they were. */
	memset(&v, 0, sizeof(v));
	st = sp->st[ST_BATCHES_FROM];
	spool_bind_int(st, 1, 0, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct spool_item it;
		int got;

		rc = SQLITE_OK;
		if (spool_view_take(sp, &v, st, err, errlen) < 0)
			goto out;
		for (got = spool_view_next(&v, &it); got == 1; got = spool_view_next(&v, &it)) {
			const struct spool_rule *r;

			if (it.timestamp < from || it.timestamp > to)
				continue;
			r = spool_rule_of(sp, it.rule_id, err, errlen);
			if (r == NULL)
				goto out;
			item_text(key, sizeof(key), it.customer_key, it.customer_key_len);
			item_text(value, sizeof(value), it.value, it.value_len);
			if (cb(r->rule, key, value, it.timestamp, v.file_id, ud) < 0) {
				err_set(err, errlen,
				        "spool %s: reading events by time: stopped by the callback",
				        sp->path);
				goto out;
			}
		}
		if (got < 0) {
			spool_fail_damaged(sp, v.id, err, errlen);
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading events by time", err, errlen);
		goto out;
	}
	ret = 0;
out:
	spool_st_end(st);
	spool_view_free(&v);
	return ret;
}

int spool_recover_loss(struct spool *sp, int64_t *when, int64_t *windows, int64_t *lines,
                       int64_t *unknown, char *err, size_t errlen)
{
	char v[128] = "";
	long long w = 0, n = 0, l = 0, u = 0;
	int found;

	*when = *windows = *lines = *unknown = 0;
	found = spool_meta_get(sp, SPOOL_RECOVER_LOSS_KEY, v, sizeof(v), err, errlen);
	if (found < 0)
		return -1;
	/* Written by spool recover alone; anything else in it is no loss recorded. */
	if (found > 0 && sscanf(v, "%lld %lld %lld %lld", &w, &n, &l, &u) == 4 && w > 0 && n > 0 &&
	    l >= 0 && u >= 0) {
		*when = (int64_t)w;
		*windows = (int64_t)n;
		*lines = (int64_t)l;
		*unknown = (int64_t)u;
	}
	return 0;
}
