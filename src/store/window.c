/* window: aggregation windows. The ingest half adds each line of an aggregating rule to its
 * window inside the commit of its batch and checkpoint (spool_window_commit); the send half
 * closes the windows whose end plus grace has passed, each into one meter event, a batch of one
 * (spool_windows_close), in one transaction. A window is fixed when its line is committed
 * and closed once, so no crash can count a line twice, lose one, or send two totals under one
 * identifier (docs/architecture.md, "Aggregation windows"). */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/spool_int.h"
#include "util/crash.h"
#include "util/log.h"

#define WINDOW_CLOSE_MAX 500 /* windows closed per transaction */
#define WINDOW_STRIPE_DIGITS EVENT_STRIPE_DIGITS
#define WINDOW_AGE_MARGIN_S EVENT_WINDOW_AGE_MARGIN_S
#define WINDOW_COLUMNS                                                                             \
	"id, rule, customer, event_name, start, length, close_after, total, lines, late, state, "  \
	"coalesce(event_id, 0)"

const struct spool_sql spool_window_sql[] = {
    /* The windows of a rule and customer from a start on, in the order of the unique index
     * (rule, customer, start): one statement walks past any number of closed windows. */
    {ST_WINDOW_FROM, "SELECT id, state, total, event_name, payload_customer_key,"
                     " payload_value_key, length, close_after, start FROM windows"
                     " WHERE rule = ?1 AND customer = ?2 AND start >= ?3 ORDER BY start"},
    {ST_WINDOW_ADD, "INSERT INTO windows(rule, customer, customer_key, event_name,"
                    " payload_customer_key, payload_value_key, start, length, close_after, total,"
                    " lines, late, file_id, state, created)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, '0', 0, 0, ?10, 0, ?11)"},
    {ST_WINDOW_UPDATE, "UPDATE windows SET total = ?2, lines = lines + 1, late = late + ?3"
                       " WHERE id = ?1"},
    {ST_WINDOW_LINE_FIND, "SELECT 1 FROM window_lines"
                          " WHERE file_id = ?1 AND line_offset = ?2 AND rule = ?3"},
    /* An event of its own is in a batch that covers its line (a line of a batch's span that
     * made no event of its own went into a window, found above, or made none). A file's batches
     * do not overlap (each spans the lines between two checkpoints, or is a window's meter event
     * at a negative place of its own), so only the last one starting at or before the line can
     * cover it: one step down batches_position, not a scan of every batch before the line,
     * which grew with each window closed (all at negative places) and made ingest superlinear. */
    {ST_WINDOW_OWN_EVENT, "SELECT 1 FROM (SELECT end_offset FROM batches WHERE file_id = ?1"
                          " AND first_offset <= ?2 AND ?3 IS NOT NULL"
                          " ORDER BY first_offset DESC LIMIT 1) WHERE end_offset > ?2"},
    {ST_WINDOW_LINE_ADD, "INSERT INTO window_lines(file_id, line_offset, rule, window_id, value,"
                         " timestamp, late) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                         " ON CONFLICT(file_id, line_offset, rule) DO NOTHING"},
    /* The partial index windows_open, in close order. */
    {ST_WINDOW_DUE, "SELECT id, rule, customer, customer_key, event_name, payload_customer_key,"
                    " payload_value_key, start, total, file_id FROM windows"
                    " WHERE state = 0 AND close_after <= ?1 ORDER BY close_after, id LIMIT ?2"},
    {ST_WINDOW_CLOSE, "UPDATE windows SET state = 1, event_id = ?2, closed_at = ?3"
                      " WHERE id = ?1 AND state = 0"},
    {ST_WINDOW_NEXT, "SELECT coalesce(min(close_after), 0) FROM windows WHERE state = 0"},
    {ST_WINDOWS_OPEN_COUNT,
     "SELECT count(*), coalesce(sum(lines), 0), coalesce(max(close_after), 0)"
     " FROM windows WHERE state = 0"},
    /* 1 and a place below every batch of the file if the window's own place (?3) is taken. */
    {ST_WINDOW_FREE_PLACE, "SELECT EXISTS (SELECT 1 FROM batches WHERE file_id = ?1"
                           " AND first_offset = ?3), min(coalesce(min(first_offset), 0), 0) - 1"
                           " FROM batches WHERE file_id = ?1 AND ?2 IS NOT NULL"},
    {ST_WINDOW_PRUNE_LINES, "DELETE FROM window_lines WHERE window_id IN (SELECT id FROM windows"
                            " WHERE state = 1 AND NOT EXISTS"
                            " (SELECT 1 FROM batches WHERE batches.id = windows.event_id))"},
    {ST_WINDOW_PRUNE_ROWS, "DELETE FROM windows WHERE state = 1 AND start < ?1 AND NOT EXISTS"
                           " (SELECT 1 FROM batches WHERE batches.id = windows.event_id)"},
    {ST_WINDOWS_ALL, "SELECT " WINDOW_COLUMNS " FROM windows ORDER BY start, id"},
    {ST_WINDOWS_OPEN, "SELECT " WINDOW_COLUMNS " FROM windows WHERE state = 0"
                      " ORDER BY start, id"},
    {ST_WINDOW_LINES, "SELECT file_id, line_offset, timestamp, value, late FROM window_lines"
                      " WHERE window_id = ?1 ORDER BY file_id, line_offset"},
    {ST_COUNT_, NULL},
};

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Whether text column `col` of `st` is `want` (a NUL-terminated field of an event). */
static int col_is(sqlite3_stmt *st, int col, const char *want)
{
	const unsigned char *v = sqlite3_column_text(st, col);

	return v != NULL && strcmp((const char *)v, want) == 0;
}

/* A window's row as window_find reads it. */
struct window_row {
	int64_t id, length, close_after; /* seconds; close_after since the epoch */
	int state;                       /* 0 open, 1 closed */
	int same; /* it bills what the line bills: the event name and payload keys its first
	             line's rule had (a reload may have changed them since) */
	char total[EVENT_VALUE_MAX];
};

/* Reads the row ST_WINDOW_FROM is on into *w, comparing its event name and payload keys with
 * the line's. Returns the row's start (seconds since the epoch). */
static int64_t window_read(sqlite3_stmt *st, const struct event *ev, struct window_row *w)
{
	w->id = sqlite3_column_int64(st, 0);
	w->state = sqlite3_column_int(st, 1);
	spool_col_text(st, 2, w->total, sizeof(w->total));
	w->same = col_is(st, 3, ev->event_name) && col_is(st, 4, ev->payload_customer_key) &&
	          col_is(st, 5, ev->payload_value_key);
	w->length = sqlite3_column_int64(st, 6);
	w->close_after = sqlite3_column_int64(st, 7);
	return sqlite3_column_int64(st, 8);
}

/* Where a line of an aggregating rule went when it was first committed: 1 into a window, 2 an
 * event of its own, 0 neither (a first read), -1 on error. A line read again must go where it
 * went the first time, or it would be billed twice. */
static int line_placed(struct spool *sp, const struct event *ev, char *err, size_t errlen)
{
	static const int sts[2] = {ST_WINDOW_LINE_FIND, ST_WINDOW_OWN_EVENT};

	for (int i = 0; i < 2; i++) {
		sqlite3_stmt *st = sp->st[sts[i]];
		int rc = SQLITE_OK;

		spool_bind_int(st, 1, ev->file_id, &rc);
		spool_bind_int(st, 2, ev->line_offset, &rc);
		spool_bind_text(st, 3, ev->rule, sizeof(ev->rule), &rc);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st);
		spool_st_end(st);
		if (rc == SQLITE_ROW)
			return i + 1;
		if (rc != SQLITE_DONE) {
			spool_fail(sp, rc, "finding a window line", err, errlen);
			return -1;
		}
	}
	return 0;
}

/* Adds the open window [start, start + len) of the line's rule and customer, closing after its
 * end plus the rule's grace. */
static int window_add(struct spool *sp, const struct event *ev, int64_t start, int64_t len,
                      int64_t now, int64_t *id, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_WINDOW_ADD];
	int rc = SQLITE_OK;

	spool_bind_text(st, 1, ev->rule, sizeof(ev->rule), &rc);
	spool_bind_text(st, 2, ev->customer, sizeof(ev->customer), &rc);
	spool_bind_text(st, 3, ev->customer_key, sizeof(ev->customer_key), &rc);
	spool_bind_text(st, 4, ev->event_name, sizeof(ev->event_name), &rc);
	spool_bind_text(st, 5, ev->payload_customer_key, sizeof(ev->payload_customer_key), &rc);
	spool_bind_text(st, 6, ev->payload_value_key, sizeof(ev->payload_value_key), &rc);
	spool_bind_int(st, 7, start, &rc);
	spool_bind_int(st, 8, len, &rc);
	spool_bind_int(st, 9, start + len + ev->window_grace_s, &rc);
	spool_bind_int(st, 10, ev->file_id, &rc);
	spool_bind_int(st, 11, now, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "adding a window", err, errlen);
		spool_st_end(st);
		return -1;
	}
	if (spool_st_run(sp, ST_WINDOW_ADD, "adding a window", err, errlen) < 0)
		return -1;
	*id = sqlite3_last_insert_rowid(sp->db);
	return 0;
}

int spool_window_commit(struct spool *sp, struct event *ev, int64_t now, char *err, size_t errlen)
{
	char sum[EVENT_VALUE_MAX];
	int64_t len = ev->window_s, start, end, id = 0;
	int late = 0, passed = 0, found = 0, placed, rc = SQLITE_OK;
	enum event_window win = event_window_of(ev->timestamp, now);
	struct window_row w;
	sqlite3_stmt *st;

	ev->id = ev->queue_seq = 0;
	/* Stripe refuses what is 35 days old or a day ahead: such a line stays an event of its own,
	 * which the sender keeps as a dead letter with the reason, rather than being billed now. */
	if (len <= 0 || win == EVENT_WINDOW_OLD || win == EVENT_WINDOW_FAR_AHEAD)
		return 1;
	placed = line_placed(sp, ev, err, errlen);
	if (placed < 0)
		return -1;
	if (placed > 0)
		return placed == 1 ? 0 : 1; /* read again: counted once, where it went first */
	start = floor_div(ev->timestamp, len) * len;
	end = start + len;
	/* A line after its window's end plus grace is late. It still goes into its own window
	 * if that one was never sent (no row, or a row not yet closed: the sender closes it with
	 * this line), so that a backfill or a slow shipper bills usage at its own time, in its
	 * invoice period; only a window already sent passes it on to the next one. */
	late = end + ev->window_grace_s <= now;
	/* Not so old that the window's start, a little older than the line, would be refused. */
	if (late && start < now - EVENT_MAX_AGE_S + WINDOW_AGE_MARGIN_S)
		return 1;
	/* The row at `start` may be of another length: `aggregate` changed (a reload, or a restart
	 * with another configuration) after it was made. Its start is its identifier's (rule,
	 * customer, start), so no other window may start there; it keeps its length and closes as
	 * it was made to. An open row whose span holds the line takes it (or, once a line passed a
	 * window already closed, the next open one takes it, late). Else the line goes on from
	 * that row's end: a window from there to the end of the line's window of the current
	 * length, [start, end), which holds the line unless a closed window held it (a late line
	 * then goes on as above). With one length every row is [start, end) and this is the next
	 * window of the same length. Every step starts later, so it ends. The steps are one
	 * ordered read of the rule and customer's windows from the line's start, not a look-up
	 * each: a late line may pass more than a hundred thousand closed windows (1 s windows of
	 * a customer busy every second for a day), and no number of them may fail the commit,
	 * which would be tried again with the same lines, and fail again, for ever. */
	st = sp->st[ST_WINDOW_FROM];
	spool_bind_text(st, 1, ev->rule, sizeof(ev->rule), &rc);
	spool_bind_text(st, 2, ev->customer, sizeof(ev->customer), &rc);
	spool_bind_int(st, 3, start, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t at = window_read(st, ev, &w);

		rc = SQLITE_OK;
		/* One that starts inside a window passed (of another length) is not a step. */
		if (at < start)
			continue;
		if (at > start)
			break; /* no window starts at `start` */
		if (w.state == 0 && ev->timestamp < start + w.length) {
			found = 1;
			late = passed || w.close_after <= now;
			break;
		}
		/* Closed already (a clock set back, a late line) with the line in its span (or
		 * after one such): the line is late, and goes to the next one. */
		if (w.state != 0 && ev->timestamp < start + w.length)
			passed = 1;
		start += w.length > 0 ? w.length : len;
		if (start >= end)
			end = (floor_div(start, len) + 1) * len;
	}
	if (rc != SQLITE_OK && rc != SQLITE_DONE) {
		spool_fail(sp, rc, "finding a window", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	rc = SQLITE_OK;
	/* An open window of another event name or payload keys was opened under the rule as it
	 * was before a reload (or a restart with another configuration): it closes into an event
	 * of those, while a line read now is billed as its rule says now (to the meter that
	 * replaced the old one, say). It goes on its own; a later window of the rule takes the
	 * new name. Not a second window of the same start: its identifier (rule, customer,
	 * start) would be the first one's, and Stripe would drop it as a duplicate. */
	if (found && !w.same)
		return 1;
	if (!found)
		late = passed || end + ev->window_grace_s <= now;
	/* A total Stripe would refuse (more than 15 significant digits) would lose the whole
	 * window: the line that would make it so is sent on its own instead, under its own
	 * identifier, and the window keeps the total it had. Both are billed, each once. */
	if (event_value_add(found ? w.total : "0", ev->value, sum, sizeof(sum)) != 0 ||
	    event_value_digits(sum) > WINDOW_STRIPE_DIGITS)
		return 1;
	if (found)
		id = w.id;
	else if (window_add(sp, ev, start, end - start, now, &id, err, errlen) < 0)
		return -1;
	st = sp->st[ST_WINDOW_LINE_ADD];
	spool_bind_int(st, 1, ev->file_id, &rc);
	spool_bind_int(st, 2, ev->line_offset, &rc);
	spool_bind_text(st, 3, ev->rule, sizeof(ev->rule), &rc);
	spool_bind_int(st, 4, id, &rc);
	spool_bind_text(st, 5, ev->value, sizeof(ev->value), &rc);
	spool_bind_int(st, 6, ev->timestamp, &rc);
	spool_bind_int(st, 7, late, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "adding a window line", err, errlen);
		spool_st_end(st);
		return -1;
	}
	if (spool_st_run(sp, ST_WINDOW_LINE_ADD, "adding a window line", err, errlen) < 0)
		return -1;
	if (sqlite3_changes(sp->db) == 0)
		return 0; /* the line is in a window already: read again, counted once */
	st = sp->st[ST_WINDOW_UPDATE];
	spool_bind_int(st, 1, id, &rc);
	spool_bind_text(st, 2, sum, sizeof(sum), &rc);
	spool_bind_int(st, 3, late, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "updating a window", err, errlen);
		spool_st_end(st);
		return -1;
	}
	return spool_st_run(sp, ST_WINDOW_UPDATE, "updating a window", err, errlen);
}

/* A window due to close, as ST_WINDOW_DUE reads it. */
struct window_due {
	int64_t id, start, file_id;
	struct event ev; /* its meter event, but for the identifier and the queue position */
};

/* If the window's own place (ev->line_offset) is taken by a batch of its file, moves
 * ev->line_offset to a place below every batch of the file. Returns 1 if it moved, 0 if not, -1
 * on error. */
static int free_place(struct spool *sp, struct event *ev, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_WINDOW_FREE_PLACE];
	int rc = SQLITE_OK, moved = 0;

	spool_bind_int(st, 1, ev->file_id, &rc);
	spool_bind_text(st, 2, ev->rule, sizeof(ev->rule), &rc);
	spool_bind_int(st, 3, ev->line_offset, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		spool_fail(sp, rc, "finding a place for a window", err, errlen);
		spool_st_end(st);
		return -1;
	}
	if (sqlite3_column_int64(st, 0) != 0) {
		ev->line_offset = sqlite3_column_int64(st, 1);
		moved = 1;
	}
	spool_st_end(st);
	return moved;
}

static int close_one(struct spool *sp, struct window_due *w, const char *instance,
                     const char *spool_id, int64_t now, struct spool_queue *q, char *err,
                     size_t errlen)
{
	struct event *ev = &w->ev;
	sqlite3_stmt *st;
	int rc = SQLITE_OK;

	if (event_ids_window(sp->ids, ev->identifier, instance, spool_id, ev->rule, ev->customer,
	                     w->start) < 0) {
		err_set(err, errlen, "cannot compute a window identifier");
		return -1;
	}
	ev->file_id = w->file_id;
	ev->line_offset = -w->id; /* no line has it: the window's own place */
	ev->timestamp = w->start;
	ev->state = EVENT_PENDING;
	if (event_value_digits(ev->value) > WINDOW_STRIPE_DIGITS) {
		ev->state = EVENT_DEAD;
		snprintf(ev->last_error, sizeof(ev->last_error),
		         "the window's total %s has more than %d significant digits, which Stripe "
		         "refuses; use a shorter aggregate",
		         ev->value, WINDOW_STRIPE_DIGITS);
	}
	/* A batch of one at the window's own place: the unique position refuses a second one. Its
	 * place is taken when window ids start again after `spool recover` lost a window's row but
	 * kept its meter event: then below every place of the file, as one window's trouble must
	 * not stop every window from closing. */
	rc = free_place(sp, ev, err, errlen);
	if (rc < 0)
		return -1;
	if (rc > 0)
		log_warn("window %" PRId64 " of rule %s: its place in the spool was taken (a "
		         "recovered spool?): its meter event is at offset %" PRId64 " instead",
		         w->id, ev->rule, ev->line_offset);
	rc = SQLITE_OK;
	if (spool_event_store_one(sp, q, ev, now, err, errlen) < 0)
		return -1;
	st = sp->st[ST_WINDOW_CLOSE];
	spool_bind_int(st, 1, w->id, &rc);
	spool_bind_int(st, 2, ev->id, &rc);
	spool_bind_int(st, 3, now, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "closing a window", err, errlen);
		spool_st_end(st);
		return -1;
	}
	return spool_st_run(sp, ST_WINDOW_CLOSE, "closing a window", err, errlen);
}

int spool_windows_close(struct spool *sp, int64_t now, int64_t *closed, char *err, size_t errlen)
{
	static struct window_due due[WINDOW_CLOSE_MAX]; /* the sender's thread only */
	char instance[256] = "", spool_id[256] = "";
	struct spool_queue q;
	sqlite3_stmt *st;
	size_t n = 0;
	int rc = SQLITE_OK;

	if (sp == NULL || closed == NULL) {
		err_set(err, errlen, "spool_windows_close: invalid arguments");
		return -1;
	}
	*closed = 0;
	if (spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	st = sp->st[ST_WINDOW_DUE];
	spool_bind_int(st, 1, now, &rc);
	spool_bind_int(st, 2, WINDOW_CLOSE_MAX, &rc);
	while (rc == SQLITE_OK && n < WINDOW_CLOSE_MAX) {
		struct window_due *w = &due[n];

		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW)
			break;
		rc = SQLITE_OK;
		memset(w, 0, sizeof(*w));
		w->id = sqlite3_column_int64(st, 0);
		spool_col_text(st, 1, w->ev.rule, sizeof(w->ev.rule));
		spool_col_text(st, 2, w->ev.customer, sizeof(w->ev.customer));
		spool_col_text(st, 3, w->ev.customer_key, sizeof(w->ev.customer_key));
		spool_col_text(st, 4, w->ev.event_name, sizeof(w->ev.event_name));
		spool_col_text(st, 5, w->ev.payload_customer_key,
		               sizeof(w->ev.payload_customer_key));
		spool_col_text(st, 6, w->ev.payload_value_key, sizeof(w->ev.payload_value_key));
		w->start = sqlite3_column_int64(st, 7);
		spool_col_text(st, 8, w->ev.value, sizeof(w->ev.value));
		w->file_id = sqlite3_column_int64(st, 9);
		n++;
	}
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		spool_fail(sp, rc, "reading windows due", err, errlen);
		spool_st_end(st);
		goto fail;
	}
	spool_st_end(st);
	if (n == 0) {
		spool_tx_rollback(sp);
		return 0;
	}
	if (spool_meta_get(sp, SPOOL_INSTANCE_KEY, instance, sizeof(instance), err, errlen) < 0 ||
	    spool_meta_get(sp, SPOOL_ID_KEY, spool_id, sizeof(spool_id), err, errlen) < 0 ||
	    spool_queue_get(sp, &q, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (close_one(sp, &due[i], instance, spool_id, now, &q, err, errlen) < 0)
			goto fail;
	crash_point("window_close_inside"); /* closed, not committed: all still open */
	if (spool_tx_commit(sp, err, errlen) < 0)
		return -1;
	*closed = (int64_t)n;
	return 0;
fail:
	spool_tx_rollback(sp);
	return -1;
}

int spool_windows_next_close(struct spool *sp, int64_t *when, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_WINDOW_NEXT];
	int rc = sqlite3_step(st);

	if (rc != SQLITE_ROW) {
		spool_fail(sp, rc, "reading the next window to close", err, errlen);
		spool_st_end(st);
		return -1;
	}
	*when = sqlite3_column_int64(st, 0);
	spool_st_end(st);
	return 0;
}

int spool_windows_open_count(struct spool *sp, int64_t *windows, int64_t *lines,
                             int64_t *last_close, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc;

	if (sp == NULL || windows == NULL || lines == NULL || last_close == NULL) {
		err_set(err, errlen, "spool_windows_open_count: invalid arguments");
		return -1;
	}
	st = sp->st[ST_WINDOWS_OPEN_COUNT];
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		spool_fail(sp, rc, "counting the open windows", err, errlen);
		spool_st_end(st);
		return -1;
	}
	*windows = sqlite3_column_int64(st, 0);
	*lines = sqlite3_column_int64(st, 1);
	*last_close = sqlite3_column_int64(st, 2);
	spool_st_end(st);
	return 0;
}

int spool_windows_prune(struct spool *sp, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_WINDOW_PRUNE_ROWS];
	int rc = SQLITE_OK;

	if (spool_st_run(sp, ST_WINDOW_PRUNE_LINES, "pruning window lines", err, errlen) < 0)
		return -1;
	/* A line older than that is a dead letter of its own (event_window_of): no window. */
	spool_bind_int(st, 1, (int64_t)time(NULL) - EVENT_MAX_AGE_S - 86400, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "pruning windows", err, errlen);
		spool_st_end(st);
		return -1;
	}
	return spool_st_run(sp, ST_WINDOW_PRUNE_ROWS, "pruning windows", err, errlen);
}

static int lines_foreach(struct spool *sp, int64_t id,
                         int (*cb)(const struct spool_window_line *l, void *ud), void *ud,
                         char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_WINDOW_LINES];
	struct spool_window_line l;
	int rc = SQLITE_OK;

	spool_bind_int(st, 1, id, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		memset(&l, 0, sizeof(l));
		l.file_id = sqlite3_column_int64(st, 0);
		l.line_offset = sqlite3_column_int64(st, 1);
		l.timestamp = sqlite3_column_int64(st, 2);
		spool_col_text(st, 3, l.value, sizeof(l.value));
		l.late = sqlite3_column_int(st, 4);
		if (cb(&l, ud) != 0) {
			spool_st_end(st);
			err_set(err, errlen, "stopped");
			return -1;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading a window's lines", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return 0;
}

int spool_windows_foreach(struct spool *sp, int open_only,
                          int (*cb)(const struct spool_window *w, void *ud),
                          int (*lines_cb)(const struct spool_window_line *l, void *ud), void *ud,
                          char *err, size_t errlen)
{
	sqlite3_stmt *st;
	struct spool_window w;
	int rc = SQLITE_OK;

	if (sp == NULL || cb == NULL) {
		err_set(err, errlen, "spool_windows_foreach: invalid arguments");
		return -1;
	}
	/* The lines are read with another statement while this one runs: a prepared copy. */
	if (sqlite3_prepare_v2(sp->db,
	                       sqlite3_sql(sp->st[open_only ? ST_WINDOWS_OPEN : ST_WINDOWS_ALL]),
	                       -1, &st, NULL) != SQLITE_OK) {
		spool_fail(sp, sqlite3_errcode(sp->db), "reading windows", err, errlen);
		return -1;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&w, 0, sizeof(w));
		w.id = sqlite3_column_int64(st, 0);
		spool_col_text(st, 1, w.rule, sizeof(w.rule));
		spool_col_text(st, 2, w.customer, sizeof(w.customer));
		spool_col_text(st, 3, w.event_name, sizeof(w.event_name));
		w.start = sqlite3_column_int64(st, 4);
		w.length = sqlite3_column_int64(st, 5);
		w.close_after = sqlite3_column_int64(st, 6);
		spool_col_text(st, 7, w.total, sizeof(w.total));
		w.lines = sqlite3_column_int64(st, 8);
		w.late = sqlite3_column_int64(st, 9);
		w.closed = sqlite3_column_int(st, 10) != 0;
		w.event_id = sqlite3_column_int64(st, 11);
		if (cb(&w, ud) != 0 ||
		    (lines_cb != NULL && lines_foreach(sp, w.id, lines_cb, ud, err, errlen) != 0)) {
			sqlite3_finalize(st);
			if (err != NULL && err[0] == '\0')
				err_set(err, errlen, "stopped");
			return -1;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading windows", err, errlen);
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}
