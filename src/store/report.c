/* report: the spool's queries for status and metrics beyond query.c's (store/report.h). */
#include "store/report.h"

#include <sqlite3.h>

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

int spool_rule_counts(struct spool *sp,
                      int (*cb)(const char *rule, enum event_state state, int64_t n, void *ud),
                      void *ud, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	char rule[EVENT_RULE_MAX];
	int rc, ret = -1;

	if (sp == NULL || cb == NULL) {
		err_set(err, errlen, "spool_rule_counts: invalid arguments");
		return -1;
	}
	rc = sqlite3_prepare_v2(
	    sp->db,
	    "SELECT rule, state, count(*) FROM events GROUP BY rule, state ORDER BY rule, state",
	    -1, &st, NULL);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "counting events by rule", err, errlen);
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t state = sqlite3_column_int64(st, 1);

		if (state < EVENT_PENDING || state > EVENT_UNSURE)
			continue; /* not a state this logmeter knows: spool check says so */
		spool_col_text(st, 0, rule, sizeof(rule));
		if (cb(rule, (enum event_state)state, sqlite3_column_int64(st, 2), ud) < 0) {
			err_set(err, errlen,
			        "spool %s: counting events by rule: stopped by the "
			        "callback",
			        sp->path);
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "counting events by rule", err, errlen);
		goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(st);
	return ret;
}

int spool_oldest_pending(struct spool *sp, int64_t *out, char *err, size_t errlen)
{
	/* The literal state lets the planner take the partial index of pending events. */
	return one_int(sp, "SELECT min(timestamp) FROM events WHERE state = 0", NULL,
	               "finding the oldest pending event", out, err, errlen);
}

int spool_dead_since(struct spool *sp, int64_t since, int64_t *out, char *err, size_t errlen)
{
	return one_int(sp,
	               "SELECT count(*) FROM events WHERE state = 2 AND coalesce(updated, 0) >= ?1",
	               &since, "counting dead letters", out, err, errlen);
}

int spool_file_events(struct spool *sp, int64_t file_id, int64_t *out, char *err, size_t errlen)
{
	return one_int(sp, "SELECT count(*) FROM events WHERE file_id = ?1", &file_id,
	               "counting a file's events", out, err, errlen);
}

int spool_events_between(struct spool *sp, int64_t from, int64_t to,
                         int (*cb)(const char *rule, const char *customer_key, const char *value,
                                   int64_t timestamp, int64_t file_id, void *ud),
                         void *ud, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	char rule[EVENT_RULE_MAX], key[EVENT_CUSTOMER_MAX], value[EVENT_VALUE_MAX];
	int rc, ret = -1;

	if (sp == NULL || cb == NULL) {
		err_set(err, errlen, "spool_events_between: invalid arguments");
		return -1;
	}
	rc = sqlite3_prepare_v2(sp->db,
	                        "SELECT rule, customer_key, value, timestamp, file_id FROM events"
	                        " WHERE timestamp BETWEEN ?1 AND ?2",
	                        -1, &st, NULL);
	spool_bind_int(st, 1, from, &rc);
	spool_bind_int(st, 2, to, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "reading events by time", err, errlen);
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		spool_col_text(st, 0, rule, sizeof(rule));
		spool_col_text(st, 1, key, sizeof(key));
		spool_col_text(st, 2, value, sizeof(value));
		if (cb(rule, key, value, sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4),
		       ud) < 0) {
			err_set(err, errlen,
			        "spool %s: reading events by time: stopped by the callback",
			        sp->path);
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading events by time", err, errlen);
		goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(st);
	return ret;
}
