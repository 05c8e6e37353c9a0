/* extra: what the spool keeps about a file besides its record, in the table file_extra (one row
 * per file, only for files that have something to keep): the line ends of its head with a hash
 * of the bytes before each (head marks), by which a truncation that kept whole lines is told
 * apart from a rewrite (docs/tailing.md), and its lines that were not valid UTF-8 for a (*UTF)
 * rule; in the table file_torn (the same way) its lines torn by NUL bytes (core/lines.h); and in
 * the table file_realdir the real directory its path led to through a symbolic link, by which
 * its file is found after the link was re-pointed while logmeter was stopped (docs/tailing.md).
 *
 * The tables came after schema 3 and need no schema version: setup creates file_extra when
 * missing, the first torn line file_torn, the first path read through a directory symlink
 * file_realdir; a logmeter that predates them ignores them, and a spool
 * without them (rebuilt by `spool recover`, or opened read-only before an agent of this version ran
 * on it) reads as one where no file has anything extra. So their statements are prepared when first
 * used, not at open. file_torn and file_realdir are tables of their own rather than columns of
 * file_extra: a column added to a table is a new layout (a schema version), a new table is not. */
#include "store/spool.h"

#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <string.h>

#include "store/spool_int.h"
#include "util/log.h"

/* A mark in the head_marks blob: the length as 8 bytes big-endian, then the SHA-256. */
#define MARK_BYTES (8 + SPOOL_HASH_LEN)

const char spool_extra_schema[] = "CREATE TABLE IF NOT EXISTS file_extra ("
                                  " file_id INTEGER PRIMARY KEY REFERENCES files(id),"
                                  " bad_utf8 INTEGER NOT NULL DEFAULT 0,"
                                  " head_marks BLOB);";

/* Made at the first torn line, not at open: an empty table costs a page in every spool, and
 * max_spool_bytes counts it (a spool at a small limit would no longer get below its resume
 * mark). */
static const char torn_schema[] = "CREATE TABLE IF NOT EXISTS file_torn ("
                                  " file_id INTEGER PRIMARY KEY REFERENCES files(id),"
                                  " torn_lines INTEGER NOT NULL DEFAULT 0);";

/* Made at the first path read through a directory symlink, for the same reason as file_torn. */
static const char realdir_schema[] = "CREATE TABLE IF NOT EXISTS file_realdir ("
                                     " file_id INTEGER PRIMARY KEY REFERENCES files(id),"
                                     " dir TEXT NOT NULL);";

static const char *const extra_sql[SPOOL_XST_COUNT] = {
    [SPOOL_XST_GET] = "SELECT bad_utf8, head_marks FROM file_extra WHERE file_id = ?1",
    [SPOOL_XST_MARKS_PUT] = "INSERT INTO file_extra(file_id, head_marks) VALUES (?1, ?2)"
                            " ON CONFLICT(file_id) DO UPDATE SET head_marks = excluded.head_marks",
    [SPOOL_XST_UTF8_PUT] = "INSERT INTO file_extra(file_id, bad_utf8) VALUES (?1, ?2)"
                           " ON CONFLICT(file_id) DO UPDATE SET bad_utf8 = excluded.bad_utf8",
    [SPOOL_XST_TORN_GET] = "SELECT torn_lines FROM file_torn WHERE file_id = ?1",
    [SPOOL_XST_TORN_PUT] = "INSERT INTO file_torn(file_id, torn_lines) VALUES (?1, ?2)"
                           " ON CONFLICT(file_id) DO UPDATE SET torn_lines = excluded.torn_lines",
    [SPOOL_XST_REALDIR_GET] = "SELECT dir FROM file_realdir WHERE file_id = ?1",
    [SPOOL_XST_REALDIR_PUT] = "INSERT INTO file_realdir(file_id, dir) VALUES (?1, ?2)"
                              " ON CONFLICT(file_id) DO UPDATE SET dir = excluded.dir",
};

/* The statement `which`, prepared at its first use. Returns it, or NULL: its table is not there
 * (*absent set: an old spool opened read-only) or another error (`err`). */
static sqlite3_stmt *extra_stmt(struct spool *sp, enum spool_xstmt which, int *absent, char *err,
                                size_t errlen)
{
	int rc;

	*absent = 0;
	if (sp->xst[which] != NULL)
		return sp->xst[which];
	rc = sqlite3_prepare_v3(sp->db, extra_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
	                        &sp->xst[which], NULL);
	if (rc == SQLITE_OK)
		return sp->xst[which];
	if (strstr(sqlite3_errmsg(sp->db), "no such table") != NULL) {
		*absent = 1;
		return NULL;
	}
	spool_fail(sp, rc, "preparing a statement on file_extra, file_torn or file_realdir", err,
	           errlen);
	return NULL;
}

void spool_extra_free(struct spool *sp)
{
	for (int i = 0; i < SPOOL_XST_COUNT; i++) {
		sqlite3_finalize(sp->xst[i]);
		sp->xst[i] = NULL;
	}
}

static void put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t get_be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* file_torn's count of record `file_id` into out->torn_lines (left 0 without a row or the
 * table). Returns 0 or -1. */
static int torn_get(struct spool *sp, int64_t file_id, struct spool_file_extra *out, char *err,
                    size_t errlen)
{
	int rc = SQLITE_OK, absent;
	sqlite3_stmt *st = extra_stmt(sp, SPOOL_XST_TORN_GET, &absent, err, errlen);

	if (st == NULL)
		return absent ? 0 : -1;
	spool_bind_int(st, 1, file_id, &rc);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			out->torn_lines = sqlite3_column_int64(st, 0);
			rc = SQLITE_DONE;
		}
	}
	spool_st_end(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading file_torn", err, errlen);
		return -1;
	}
	return 0;
}

int spool_file_extra_get(struct spool *sp, int64_t file_id, struct spool_file_extra *out, char *err,
                         size_t errlen)
{
	sqlite3_stmt *st;
	int rc = SQLITE_OK, absent;

	if (sp == NULL || out == NULL) {
		err_set(err, errlen, "spool_file_extra_get: invalid arguments");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	st = extra_stmt(sp, SPOOL_XST_GET, &absent, err, errlen);
	if (st == NULL)
		return absent ? torn_get(sp, file_id, out, err, errlen) : -1;
	spool_bind_int(st, 1, file_id, &rc);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			const unsigned char *b = sqlite3_column_blob(st, 1);
			size_t n = (size_t)sqlite3_column_bytes(st, 1) / MARK_BYTES;

			out->bad_utf8 = sqlite3_column_int64(st, 0);
			for (size_t i = 0; b != NULL && i < n && i < SPOOL_MARKS_MAX; i++) {
				out->marks[i].len = (int64_t)get_be64(b + i * MARK_BYTES);
				memcpy(out->marks[i].hash, b + i * MARK_BYTES + 8, SPOOL_HASH_LEN);
				out->n_marks++;
			}
			rc = SQLITE_DONE;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading file_extra", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return torn_get(sp, file_id, out, err, errlen);
}

/* Writes one value into the row of `file_id` of file_extra or file_torn with the upsert `which`:
 * `blob` (`len` bytes) if it is not NULL, else `value`. Returns 0 or -1 (`what` names it in
 * `err`). */
static int extra_put(struct spool *sp, enum spool_xstmt which, int64_t file_id, const void *blob,
                     int len, int64_t value, const char *what, char *err, size_t errlen)
{
	int rc = SQLITE_OK, absent;
	sqlite3_stmt *st = extra_stmt(sp, which, &absent, err, errlen);

	if (st == NULL) {
		if (absent)
			err_set(err, errlen, "spool %s has no table file_extra or file_torn",
			        sp->path);
		return -1;
	}
	spool_bind_int(st, 1, file_id, &rc);
	if (blob != NULL)
		spool_bind_blob(st, 2, blob, len, &rc);
	else
		spool_bind_int(st, 2, value, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, what, err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return 0;
}

int spool_head_marks_put(struct spool *sp, int64_t file_id, const struct spool_mark_head *marks,
                         size_t n, char *err, size_t errlen)
{
	unsigned char blob[SPOOL_MARKS_MAX * MARK_BYTES];

	if (sp == NULL || (marks == NULL && n > 0) || n > SPOOL_MARKS_MAX) {
		err_set(err, errlen, "spool_head_marks_put: invalid arguments");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		put_be64(blob + i * MARK_BYTES, (uint64_t)marks[i].len);
		memcpy(blob + i * MARK_BYTES + 8, marks[i].hash, SPOOL_HASH_LEN);
	}
	return extra_put(sp, SPOOL_XST_MARKS_PUT, file_id, blob, (int)(n * MARK_BYTES), 0,
	                 "writing head marks", err, errlen);
}

int spool_extra_utf8_put(struct spool *sp, const struct spool_file *f, char *err, size_t errlen)
{
	if (f->counters.bad_utf8 == 0)
		return 0;
	return extra_put(sp, SPOOL_XST_UTF8_PUT, f->id, NULL, 0, f->counters.bad_utf8,
	                 "counting lines of invalid UTF-8", err, errlen);
}

int spool_extra_torn_put(struct spool *sp, const struct spool_file *f, char *err, size_t errlen)
{
	int absent;

	if (f->counters.torn_lines == 0)
		return 0;
	if (extra_stmt(sp, SPOOL_XST_TORN_PUT, &absent, err, errlen) == NULL) {
		if (!absent || spool_exec(sp, torn_schema, "creating file_torn", err, errlen) < 0)
			return -1;
	}
	return extra_put(sp, SPOOL_XST_TORN_PUT, f->id, NULL, 0, f->counters.torn_lines,
	                 "counting torn lines", err, errlen);
}

int spool_file_realdir_get(struct spool *sp, int64_t file_id, char *dir, size_t len, char *err,
                           size_t errlen)
{
	int rc = SQLITE_OK, absent, found = 0;
	sqlite3_stmt *st;

	if (sp == NULL || dir == NULL || len == 0) {
		err_set(err, errlen, "spool_file_realdir_get: invalid arguments");
		return -1;
	}
	dir[0] = '\0';
	st = extra_stmt(sp, SPOOL_XST_REALDIR_GET, &absent, err, errlen);
	if (st == NULL)
		return absent ? 0 : -1;
	spool_bind_int(st, 1, file_id, &rc);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			const unsigned char *t = sqlite3_column_text(st, 0);
			size_t n = (size_t)sqlite3_column_bytes(st, 0);

			/* One that does not fit is no directory this host could have. */
			if (t != NULL && n < len) {
				memcpy(dir, t, n + 1);
				found = 1;
			}
			rc = SQLITE_DONE;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading file_realdir", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return found;
}

int spool_file_realdir_put(struct spool *sp, int64_t file_id, const char *dir, char *err,
                           size_t errlen)
{
	int rc = SQLITE_OK, absent;
	sqlite3_stmt *st;

	if (sp == NULL || dir == NULL) {
		err_set(err, errlen, "spool_file_realdir_put: invalid arguments");
		return -1;
	}
	if (extra_stmt(sp, SPOOL_XST_REALDIR_PUT, &absent, err, errlen) == NULL) {
		if (!absent ||
		    spool_exec(sp, realdir_schema, "creating file_realdir", err, errlen) < 0)
			return -1;
	}
	st = extra_stmt(sp, SPOOL_XST_REALDIR_PUT, &absent, err, errlen);
	if (st == NULL)
		return -1;
	spool_bind_int(st, 1, file_id, &rc);
	spool_bind_text(st, 2, dir, PATH_MAX, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "writing file_realdir", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return 0;
}
