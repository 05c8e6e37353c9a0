/* commit: what the ingest half writes. A file's record (its identity and checkpoint), and the
 * commit of a batch of events together with the checkpoint after them, in one transaction: one
 * row of `batches` per commit, found by its line position (file_id, first_offset), which grows
 * at the end of its index; the end of the file's last batch absorbs lines read again. */
#include "store/spool.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/spool_int.h"
#include "util/crash.h"
#include "util/log.h"

/* ST_FILE_ADD and ST_FILE_UPDATE share parameters ?2 to ?20 (see bind_file). */
const struct spool_sql spool_commit_sql[] = {
    {ST_FILE_FIND, "SELECT " SPOOL_FILE_COLUMNS " FROM files"
                   " WHERE source = ?1 AND dev = ?2 AND ino = ?3 ORDER BY id DESC LIMIT 1"},
    /* No index leads by (dev, ino): a scan of the files table, made only when a source is
     * about to read a file with content from its start (tail.c: taken_over_from). */
    {ST_FILE_FIND_OTHER, "SELECT " SPOOL_FILE_COLUMNS " FROM files"
                         " WHERE dev = ?2 AND ino = ?3 AND source <> ?1 AND \"offset\" > 0"
                         " ORDER BY \"offset\" DESC, id DESC LIMIT 1"},
    /* The id of the next file record: one past every id given before (kept in meta) and every
     * id in the table (a spool written before the key existed, or copied by `spool recover`). */
    {ST_FILE_ID_NEXT, "INSERT INTO meta(key, value) VALUES ('" SPOOL_FILE_ID_KEY "',"
                      " max(coalesce((SELECT max(id) FROM files), 0),"
                      " coalesce((SELECT CAST(value AS INTEGER) FROM meta"
                      " WHERE key = '" SPOOL_FILE_ID_KEY "'), 0)) + 1)"
                      " ON CONFLICT(key) DO UPDATE SET value = excluded.value"},
    {ST_FILE_ADD, "INSERT INTO files(id, uid, path, dev, ino, fp_len, fp_hash, \"offset\","
                  " check_len, check_hash, size, state, lines, matched, unmatched, invalid,"
                  " long_lines, nul_bytes, events, resets, updated, source, first_seen)"
                  " VALUES ((SELECT CAST(value AS INTEGER) FROM meta"
                  " WHERE key = '" SPOOL_FILE_ID_KEY "'), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                  " ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"},
    {ST_FILE_UPDATE, "UPDATE files SET path = ?2, dev = ?3, ino = ?4, fp_len = ?5,"
                     " fp_hash = ?6, \"offset\" = ?7, check_len = ?8, check_hash = ?9,"
                     " size = ?10, state = ?11, lines = ?12, matched = ?13,"
                     " unmatched = ?14, invalid = ?15, long_lines = ?16, nul_bytes = ?17,"
                     " events = ?18, resets = ?19, updated = ?20 WHERE id = ?1"},
    {ST_RULE_FIND, "SELECT id FROM rules WHERE instance = ?1 AND rule = ?2 AND event_name = ?3"
                   " AND payload_customer_key = ?4 AND payload_value_key = ?5"},
    {ST_RULE_ADD, "INSERT INTO rules(instance, rule, event_name, payload_customer_key,"
                  " payload_value_key) VALUES (?1, ?2, ?3, ?4, ?5)"},
    /* The file's last batch: its unique index (file_id, first_offset), one search. */
    {ST_BATCH_LAST_END, "SELECT end_offset FROM batches WHERE file_id = ?1"
                        " ORDER BY first_offset DESC LIMIT 1"},
    {ST_BATCH_INSERT, "INSERT INTO batches(" SPOOL_BATCH_COLUMNS ")"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
    {ST_OUTCOME_INSERT, "INSERT OR REPLACE INTO outcomes(" SPOOL_OUTCOME_COLUMNS ")"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"},
    {ST_QUEUE_NEXT, "UPDATE queue SET next_id = ?1"},
    {ST_COUNT_, NULL},
};

/* The counters file_extra and file_torn keep for *f. Returns 0 or -1. */
static int file_extra_counters(struct spool *sp, struct spool_file *f, char *err, size_t errlen)
{
	struct spool_file_extra x;

	if (spool_file_extra_get(sp, f->id, &x, err, errlen) < 0)
		return -1;
	f->counters.bad_utf8 = x.bad_utf8;
	f->counters.torn_lines = x.torn_lines;
	return 0;
}

/* The record statement `which` finds for (source, dev, ino) into *out; `what` names the look in an
 * error. Returns 1, 0 (none), or -1. */
static int file_by_identity(struct spool *sp, enum spool_stmt which, const char *what,
                            const char *source, uint64_t dev, uint64_t ino, struct spool_file *out,
                            char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[which];
	int rc = SQLITE_OK, found = 0;

	spool_bind_text(st, 1, source, SIZE_MAX, &rc);
	spool_bind_int(st, 2, (int64_t)dev, &rc);
	spool_bind_int(st, 3, (int64_t)ino, &rc);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			if (spool_row_file(sp, st, out, err, errlen) < 0) {
				spool_st_end(st);
				return -1;
			}
			found = 1;
			rc = SQLITE_DONE;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, what, err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return found;
}

int spool_file_find(struct spool *sp, const char *source, uint64_t dev, uint64_t ino,
                    struct spool_file *out, char *err, size_t errlen)
{
	int found;

	if (sp == NULL || source == NULL || out == NULL) {
		err_set(err, errlen, "spool_file_find: invalid arguments");
		return -1;
	}
	found = file_by_identity(sp, ST_FILE_FIND, "finding a file", source, dev, ino, out, err,
	                         errlen);
	if (found > 0 && file_extra_counters(sp, out, err, errlen) < 0)
		return -1;
	return found;
}

int spool_file_find_other(struct spool *sp, const char *source, uint64_t dev, uint64_t ino,
                          struct spool_file *out, char *err, size_t errlen)
{
	if (sp == NULL || source == NULL || out == NULL) {
		err_set(err, errlen, "spool_file_find_other: invalid arguments");
		return -1;
	}
	return file_by_identity(sp, ST_FILE_FIND_OTHER, "finding another source's file", source,
	                        dev, ino, out, err, errlen);
}

static int check_file(const struct spool *sp, const struct spool_file *f, char *err, size_t errlen)
{
	if (f->fp_len < 0 || f->fp_len > SPOOL_FP_MAX || f->offset < 0 || f->check_len < 0 ||
	    f->size < 0 ||
	    (f->state != SPOOL_FILE_READING && f->state != SPOOL_FILE_DRAINED &&
	     f->state != SPOOL_FILE_GONE)) {
		err_set(err, errlen,
		        "spool %s: invalid file record %" PRId64 " (fp_len %" PRId64
		        ", offset %" PRId64 ", check_len %" PRId64 ", size %" PRId64 ", state %d)",
		        sp->path, f->id, f->fp_len, f->offset, f->check_len, f->size,
		        (int)f->state);
		return -1;
	}
	return 0;
}

/* Binds ?2 to ?20 of ST_FILE_ADD and ST_FILE_UPDATE. */
static void bind_file(sqlite3_stmt *st, const struct spool_file *f, int64_t now, int *rc)
{
	spool_bind_text(st, 2, f->path, sizeof(f->path), rc);
	spool_bind_int(st, 3, (int64_t)f->dev, rc);
	spool_bind_int(st, 4, (int64_t)f->ino, rc);
	spool_bind_int(st, 5, f->fp_len, rc);
	spool_bind_blob(st, 6, f->fp_hash, SPOOL_HASH_LEN, rc);
	spool_bind_int(st, 7, f->offset, rc);
	spool_bind_int(st, 8, f->check_len, rc);
	spool_bind_blob(st, 9, f->check_hash, SPOOL_HASH_LEN, rc);
	spool_bind_int(st, 10, f->size, rc);
	spool_bind_text(st, 11, spool_file_state_name(f->state), SIZE_MAX, rc);
	spool_bind_int(st, 12, f->counters.lines, rc);
	spool_bind_int(st, 13, f->counters.matched, rc);
	spool_bind_int(st, 14, f->counters.unmatched, rc);
	spool_bind_int(st, 15, f->counters.invalid, rc);
	spool_bind_int(st, 16, f->counters.long_lines, rc);
	spool_bind_int(st, 17, f->counters.nul_bytes, rc);
	spool_bind_int(st, 18, f->counters.events, rc);
	spool_bind_int(st, 19, f->counters.resets, rc);
	spool_bind_int(st, 20, now, rc);
}

int spool_file_add(struct spool *sp, struct spool_file *f, char *err, size_t errlen)
{
	char uid[SPOOL_UID_MAX];
	sqlite3_stmt *st;
	int64_t now = (int64_t)time(NULL), id;
	int rc = SQLITE_OK, own_tx;

	if (sp == NULL || f == NULL) {
		err_set(err, errlen, "spool_file_add: invalid arguments");
		return -1;
	}
	if (check_file(sp, f, err, errlen) < 0 || spool_random_hex(uid, 16, err, errlen) < 0)
		return -1;
	/* An id is never given twice, even once its record is deleted (spool_file_forget):
	 * SQLite gives the largest rowid to the next row once that row is deleted
	 * (https://www.sqlite.org/autoinc.html), and a tail, batch or window that still held the
	 * old id would then read or write another file's record. The id is counted in meta and
	 * the record added in one transaction: the caller's, or one of its own. */
	own_tx = sqlite3_get_autocommit(sp->db);
	if (own_tx && spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	if (spool_st_run(sp, ST_FILE_ID_NEXT, "counting file ids", err, errlen) < 0)
		goto fail;
	st = sp->st[ST_FILE_ADD];
	spool_bind_text(st, 1, uid, sizeof(uid), &rc);
	bind_file(st, f, now, &rc);
	spool_bind_text(st, 21, f->source, sizeof(f->source), &rc);
	spool_bind_int(st, 22, now, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "adding a file", err, errlen);
		spool_st_end(st);
		goto fail;
	}
	if (spool_st_run(sp, ST_FILE_ADD, "adding a file", err, errlen) < 0)
		goto fail;
	id = sqlite3_last_insert_rowid(sp->db);
	if (own_tx && spool_tx_commit(sp, err, errlen) < 0)
		return -1;
	crash_point("spool_file_add"); /* the record (its uid) is committed, nothing read yet */
	f->id = id;
	memcpy(f->uid, uid, sizeof(uid));
	f->first_seen = now;
	f->updated = now;
	return 0;
fail:
	if (own_tx)
		spool_tx_rollback(sp);
	return -1;
}

/* Runs ST_FILE_UPDATE for *f; used alone and inside spool_commit's transaction. */
static int file_update(struct spool *sp, const struct spool_file *f, int64_t now, char *err,
                       size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_FILE_UPDATE];
	int rc = SQLITE_OK;

	if (check_file(sp, f, err, errlen) < 0)
		return -1;
	spool_bind_int(st, 1, f->id, &rc);
	bind_file(st, f, now, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "updating a file", err, errlen);
		spool_st_end(st);
		return -1;
	}
	if (spool_st_run(sp, ST_FILE_UPDATE, "updating a file", err, errlen) < 0)
		return -1;
	if (sqlite3_changes(sp->db) != 1) {
		err_set(err, errlen, "spool %s: no file record with id %" PRId64, sp->path, f->id);
		return -1;
	}
	if (spool_extra_utf8_put(sp, f, err, errlen) < 0)
		return -1;
	return spool_extra_torn_put(sp, f, err, errlen);
}

int spool_file_update(struct spool *sp, const struct spool_file *f, char *err, size_t errlen)
{
	if (sp == NULL || f == NULL) {
		err_set(err, errlen, "spool_file_update: invalid arguments");
		return -1;
	}
	return file_update(sp, f, (int64_t)time(NULL), err, errlen);
}

int spool_file_update_add(struct spool *sp, const struct spool_file *f, struct spool_file *nf,
                          char *err, size_t errlen)
{
	if (sp == NULL || f == NULL || nf == NULL || !sqlite3_get_autocommit(sp->db)) {
		err_set(err, errlen, "spool_file_update_add: invalid arguments");
		return -1;
	}
	if (spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	if (file_update(sp, f, (int64_t)time(NULL), err, errlen) < 0 ||
	    spool_file_add(sp, nf, err, errlen) < 0)
		goto fail;
	if (spool_tx_commit(sp, err, errlen) < 0) {
		nf->id = 0;
		return -1;
	}
	return 0;
fail:
	spool_tx_rollback(sp);
	return -1;
}

int spool_file_find_path(struct spool *sp, const char *source, const char *path,
                         struct spool_file *out, char *err, size_t errlen)
{
	static const char sql[] = "SELECT " SPOOL_FILE_COLUMNS " FROM files"
	                          " WHERE source = ?1 AND path = ?2 ORDER BY id DESC LIMIT 1";
	sqlite3_stmt *st = NULL;
	int rc, found = 0;

	if (sp == NULL || source == NULL || path == NULL || out == NULL) {
		err_set(err, errlen, "spool_file_find_path: invalid arguments");
		return -1;
	}
	/* Only when a file without a record appears: prepared when used. */
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, source, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (spool_row_file(sp, st, out, err, errlen) < 0) {
			sqlite3_finalize(st);
			return -1;
		}
		found = 1;
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "finding a file by its path", err, errlen);
		return -1;
	}
	if (found && file_extra_counters(sp, out, err, errlen) < 0)
		return -1;
	return found;
}

/* Whether `a` and `b` name files in the same directory. */
static int same_dir(const char *a, const char *b)
{
	const char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');

	return sa != NULL && sb != NULL && sa - a == sb - b && memcmp(a, b, (size_t)(sa - a)) == 0;
}

int spool_file_find_remounted(struct spool *sp, const char *source, const char *path, uint64_t dev,
                              uint64_t ino, struct spool_file *out, char *err, size_t errlen)
{
	static const char sql[] =
	    "SELECT " SPOOL_FILE_COLUMNS " FROM files"
	    " WHERE source = ?1 AND ino = ?2 AND dev != ?3 AND state != 'gone'"
	    " ORDER BY id DESC";
	sqlite3_stmt *st = NULL;
	int rc, found = spool_file_find_path(sp, source, path, out, err, errlen);

	if (found < 0)
		return -1;
	if (found && out->ino == ino && out->dev != dev && out->state != SPOOL_FILE_GONE)
		return 1;
	/* Renamed while logmeter was stopped (rotated), as a file found by its inode in its
	 * directory is: the newest such record of the directory. Rare: prepared when used. */
	found = 0;
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, source, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, (int64_t)ino);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, (int64_t)dev);
	while (rc == SQLITE_OK && !found && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (spool_row_file(sp, st, out, err, errlen) < 0) {
			sqlite3_finalize(st);
			return -1;
		}
		found = same_dir(out->path, path);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK && rc != SQLITE_DONE) {
		spool_fail(sp, rc, "finding a file on another device", err, errlen);
		return -1;
	}
	if (found && file_extra_counters(sp, out, err, errlen) < 0)
		return -1;
	return found;
}

int spool_file_forget(struct spool *sp, int64_t id, uint64_t dev, uint64_t ino, char *err,
                      size_t errlen)
{
	/* The device and inode too: SQLite gives the largest rowid to the next row once that row
	 * is deleted (https://www.sqlite.org/autoinc.html), so an id a tail kept for the record
	 * its file was seen empty with may name another file's new record by now. */
	static const char sql[] =
	    "DELETE FROM files WHERE id = ?1 AND dev = ?2 AND ino = ?3 AND \"offset\" = 0"
	    " AND fp_len = 0 AND events = 0 AND lines = 0";
	sqlite3_stmt *st = NULL;
	int rc, changed;

	if (sp == NULL) {
		err_set(err, errlen, "spool_file_forget: invalid arguments");
		return -1;
	}
	/* Rare (a file seen empty that was someone else's copy): prepared when used. A record
	 * that read nothing has no file_extra row either. */
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)dev);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)ino);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_DONE)
		rc = SQLITE_OK;
	changed = sqlite3_changes(sp->db);
	sqlite3_finalize(st);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "forgetting an empty file's record", err, errlen);
		return -1;
	}
	if (changed > 0)
		sp->forgotten++;
	return changed > 0;
}

int64_t spool_file_forgotten(const struct spool *sp)
{
	return sp != NULL ? sp->forgotten : 0;
}

static int rule_matches(const struct spool_rule *r, const char *instance,
                        const struct config_rule *rule)
{
	return strcmp(r->instance, instance) == 0 && strcmp(r->rule, rule->name) == 0 &&
	       strcmp(r->event_name, rule->event_name) == 0 &&
	       strcmp(r->payload_customer_key, rule->payload_customer_key) == 0 &&
	       strcmp(r->payload_value_key, rule->payload_value_key) == 0;
}

int spool_rule_id(struct spool *sp, const char *instance, const struct config_rule *rule,
                  int64_t *id, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc = SQLITE_OK;

	for (size_t i = 0; i < sp->n_rules; i++) {
		if (rule_matches(&sp->rules[i], instance, rule)) {
			*id = sp->rules[i].id;
			return 0;
		}
	}
	for (int pass = 0; pass < 2; pass++) {
		st = sp->st[pass == 0 ? ST_RULE_FIND : ST_RULE_ADD];
		rc = SQLITE_OK;
		spool_bind_text(st, 1, instance, SIZE_MAX, &rc);
		spool_bind_text(st, 2, rule->name, SIZE_MAX, &rc);
		spool_bind_text(st, 3, rule->event_name, SIZE_MAX, &rc);
		spool_bind_text(st, 4, rule->payload_customer_key, SIZE_MAX, &rc);
		spool_bind_text(st, 5, rule->payload_value_key, SIZE_MAX, &rc);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st);
		if (pass == 0 && rc == SQLITE_ROW) {
			*id = sqlite3_column_int64(st, 0);
			spool_st_end(st);
			/* Cache it through the reader, which keeps every row it reads. */
			return spool_rule_of(sp, *id, err, errlen) != NULL ? 0 : -1;
		}
		if (rc != SQLITE_DONE) {
			spool_fail(sp, rc, "recording a rule", err, errlen);
			spool_st_end(st);
			return -1;
		}
		spool_st_end(st);
	}
	*id = sqlite3_last_insert_rowid(sp->db);
	return spool_rule_of(sp, *id, err, errlen) != NULL ? 0 : -1;
}

int spool_outcome_put(struct spool *sp, const struct spool_outcome *o, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_OUTCOME_INSERT];
	int rc = SQLITE_OK;

	spool_bind_int(st, 1, o->id, &rc);
	spool_bind_int(st, 2, (int64_t)o->state, &rc);
	spool_bind_int(st, 3, o->attempts, &rc);
	spool_bind_int(st, 4, o->key_generation, &rc);
	if (o->first_unknown > 0)
		spool_bind_int(st, 5, o->first_unknown, &rc);
	else
		spool_bind_null(st, 5, &rc);
	if (o->last_error[0] != '\0')
		spool_bind_text(st, 6, o->last_error, sizeof(o->last_error), &rc);
	else
		spool_bind_null(st, 6, &rc);
	if (o->has_customer)
		spool_bind_text(st, 7, o->customer, sizeof(o->customer), &rc);
	else
		spool_bind_null(st, 7, &rc);
	if (o->has_identifier)
		spool_bind_text(st, 8, o->identifier, sizeof(o->identifier), &rc);
	else
		spool_bind_null(st, 8, &rc);
	spool_bind_int(st, 9, o->queue_seq, &rc);
	spool_bind_int(st, 10, o->updated, &rc);
	if (o->state == EVENT_DELIVERED && o->delivered_at > 0)
		spool_bind_int(st, 11, o->delivered_at, &rc);
	else
		spool_bind_null(st, 11, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "recording an outcome", err, errlen);
		spool_st_end(st);
		return -1;
	}
	return spool_st_run(sp, ST_OUTCOME_INSERT, "recording an outcome", err, errlen);
}

/* Rule ids that fit on the stack; a batch of more rules allocates. */
#define COMMIT_RULES_LOCAL 16

int spool_batch_store(struct spool *sp, int64_t id, int64_t file_id, int64_t end_offset,
                      int64_t queue_seq, int64_t created, const struct spool_batch *b, char *err,
                      size_t errlen)
{
	const struct config_rule *const *rules;
	int64_t local_ids[COMMIT_RULES_LOCAL], *ids = local_ids;
	size_t n_rules = spool_batch_rules(b, &rules), len, hlen;
	const unsigned char *events = spool_batch_events(b, &len);
	unsigned char *blob = NULL;
	sqlite3_stmt *st = sp->st[ST_BATCH_INSERT];
	int rc = SQLITE_OK, ret = -1;

	if (n_rules > COMMIT_RULES_LOCAL && (ids = malloc(n_rules * sizeof(*ids))) == NULL)
		goto nomem;
	for (size_t i = 0; i < n_rules; i++)
		if (spool_rule_id(sp, spool_batch_instance(b), rules[i], &ids[i], err, errlen) < 0)
			goto out;
	blob = malloc(1 + 10 * (n_rules + 1) + len);
	if (blob == NULL)
		goto nomem;
	hlen = spool_blob_header(blob, ids, n_rules);
	if (len > 0)
		memcpy(blob + hlen, events, len);
	spool_bind_int(st, 1, id, &rc);
	/* The events in the blob: not the lines of the batch that went into windows. */
	spool_bind_int(st, 2, (int64_t)spool_batch_stored(b), &rc);
	spool_bind_int(st, 3, file_id, &rc);
	spool_bind_int(st, 4, spool_batch_first_offset(b), &rc);
	spool_bind_int(st, 5, end_offset, &rc);
	spool_bind_int(st, 6, queue_seq, &rc);
	spool_bind_int(st, 7, created, &rc);
	spool_bind_blob(st, 8, blob, (int)(hlen + len), &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "inserting a batch of events", err, errlen);
		spool_st_end(st);
		goto out;
	}
	if (spool_st_run(sp, ST_BATCH_INSERT, "inserting a batch of events", err, errlen) < 0)
		goto out;
	/* Dead letters from the start (unmapped customers) have their outcome at once. */
	for (size_t i = 0; i < spool_batch_n_dead(b); i++) {
		struct spool_outcome o;
		const char *reason;
		size_t k = spool_batch_dead(b, i, &reason);

		memset(&o, 0, sizeof(o));
		o.id = id + (int64_t)k;
		o.state = EVENT_DEAD;
		o.queue_seq = queue_seq + (int64_t)k;
		o.updated = created;
		snprintf(o.last_error, sizeof(o.last_error), "%s", reason);
		if (spool_outcome_put(sp, &o, err, errlen) < 0)
			goto out;
	}
	ret = 0;
	goto out;
nomem:
	err_set(err, errlen, "spool %s: out of memory", sp->path);
out:
	free(blob);
	if (ids != local_ids)
		free(ids);
	return ret;
}

/* The end of what the file's last batch covered (0 if it has none): a line before it is
 * spooled already. */
static int last_end(struct spool *sp, int64_t file_id, int64_t *end, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_BATCH_LAST_END];
	int rc = SQLITE_OK;

	*end = 0;
	spool_bind_int(st, 1, file_id, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*end = sqlite3_column_int64(st, 0);
		rc = SQLITE_DONE;
	}
	spool_st_end(st);
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading a file's last batch", err, errlen);
		return -1;
	}
	return 0;
}

/* A batch's events decoded in order, with the batch's own rules: decoded against their indexes
 * as ids, so that rules[it.rule_id] is the rule of `it`. */
struct batch_reader {
	const struct spool_batch *b;
	const struct config_rule *const *rules;
	size_t n_dead, d;
	struct spool_view v;
	int64_t *idx;
};

static int reader_open(struct spool *sp, struct batch_reader *r, const struct spool_batch *b,
                       char *err, size_t errlen)
{
	size_t n_rules, len;
	const unsigned char *events;

	memset(r, 0, sizeof(*r));
	r->b = b;
	n_rules = spool_batch_rules(b, &r->rules);
	events = spool_batch_events(b, &len);
	r->n_dead = spool_batch_n_dead(b);
	r->idx = calloc(n_rules + 1, sizeof(*r->idx));
	r->v.blob = malloc(1 + 10 * (n_rules + 1) + len);
	if (r->idx == NULL || r->v.blob == NULL) {
		err_set(err, errlen, "spool %s: out of memory", sp->path);
		return -1;
	}
	for (size_t i = 0; i < n_rules; i++)
		r->idx[i] = (int64_t)i;
	r->v.len = spool_blob_header(r->v.blob, r->idx, n_rules);
	if (len > 0) /* none when every line went into a window: events is NULL */
		memcpy(r->v.blob + r->v.len, events, len);
	r->v.len += len;
	r->v.n = (int64_t)spool_batch_stored(b);
	if (spool_view_start(&r->v) < 0) {
		err_set(err, errlen, "spool %s: a batch being committed does not decode", sp->path);
		return -1;
	}
	return 0;
}

static void reader_close(struct batch_reader *r)
{
	free(r->v.blob);
	free(r->v.rule_ids);
	free(r->idx);
}

/* The next event as a struct spool_new_event, its texts copied into `text` (3 fields of
 * EVENT_CUSTOMER_MAX bytes). Returns 1, 0 at the end, -1 on damage. */
static int reader_next(struct batch_reader *r, struct spool_new_event *ne,
                       char text[3][EVENT_CUSTOMER_MAX])
{
	struct spool_item it;
	const char *dead = NULL;
	int rc = spool_view_next(&r->v, &it);

	if (rc <= 0)
		return rc;
	/* it.id is the event's index: the view's first id is 0. Dead letters are in order. */
	while (r->d < r->n_dead && spool_batch_dead(r->b, r->d, &dead) < (size_t)it.id)
		r->d++;
	if (r->d >= r->n_dead || spool_batch_dead(r->b, r->d, &dead) != (size_t)it.id)
		dead = NULL;
	memcpy(text[0], it.customer_key, it.customer_key_len);
	text[0][it.customer_key_len] = '\0';
	memcpy(text[1], it.customer, it.customer_len);
	text[1][it.customer_len] = '\0';
	memcpy(text[2], it.value, it.value_len);
	text[2][it.value_len] = '\0';
	*ne = (struct spool_new_event){.line_offset = it.line_offset,
	                               .rule = r->rules[it.rule_id],
	                               .customer_key = text[0],
	                               .customer = text[1],
	                               .value = text[2],
	                               .timestamp = it.timestamp,
	                               .dead = dead};
	return 1;
}

/* The events of `b` from file offset `end` on, merged in line order with the `n_extra` events
 * of `extra` (themselves in line order), into `out` (emptied first): a batch read again in
 * part, or lines of an aggregating rule that are to be events of their own after all. Rare. */
static int rebuild(struct spool *sp, const struct spool_batch *b, int64_t end,
                   const struct spool_new_event *extra, size_t n_extra, struct spool_batch *out,
                   char *err, size_t errlen)
{
	char(*text)[EVENT_CUSTOMER_MAX] = malloc(3 * EVENT_CUSTOMER_MAX);
	struct batch_reader r;
	struct spool_new_event ne;
	size_t x = 0;
	int rc, ret = -1;

	if (text == NULL || reader_open(sp, &r, b, err, errlen) < 0) {
		if (text == NULL)
			err_set(err, errlen, "spool %s: out of memory", sp->path);
		else
			reader_close(&r);
		free(text);
		return -1;
	}
	spool_batch_clear(out);
	while ((rc = reader_next(&r, &ne, text)) == 1) {
		if (ne.line_offset < end)
			continue;
		for (; x < n_extra && extra[x].line_offset <= ne.line_offset; x++)
			if (spool_batch_add(out, &extra[x], err, errlen) != 0)
				goto out;
		if (spool_batch_add(out, &ne, err, errlen) != 0)
			goto out;
	}
	if (rc < 0) {
		err_set(err, errlen, "spool %s: a batch being committed does not decode", sp->path);
		goto out;
	}
	for (; x < n_extra; x++)
		if (spool_batch_add(out, &extra[x], err, errlen) != 0)
			goto out;
	ret = 0;
out:
	reader_close(&r);
	free(text);
	return ret;
}

/* The lines of aggregating rules of `b` after `end` into their windows. Those that are not to
 * be aggregated (spool_window_commit's 1) are appended to *extra (their texts owned by *texts),
 * to be stored as events of their own. Returns 0 or -1. */
static int into_windows(struct spool *sp, const struct spool_file *f, const struct spool_batch *b,
                        int64_t end, int64_t now, struct spool_new_event **extra, size_t *n_extra,
                        char **texts, char *err, size_t errlen)
{
	const struct spool_batch *agg = spool_batch_aggregated(b);
	char(*text)[EVENT_CUSTOMER_MAX] = malloc(3 * EVENT_CUSTOMER_MAX);
	struct event *ev = malloc(sizeof(*ev));
	struct batch_reader r;
	struct spool_new_event ne;
	size_t cap = 0;
	int rc = 0, ret = -1;

	*extra = NULL;
	*n_extra = 0;
	*texts = NULL;
	if (agg == NULL) {
		free(text);
		free(ev);
		return 0;
	}
	if (text == NULL || ev == NULL || reader_open(sp, &r, agg, err, errlen) < 0) {
		if (text == NULL || ev == NULL)
			err_set(err, errlen, "spool %s: out of memory", sp->path);
		else
			reader_close(&r);
		free(text);
		free(ev);
		return -1;
	}
	while ((rc = reader_next(&r, &ne, text)) == 1) {
		if (ne.line_offset < end)
			continue; /* read again: in its window already */
		memset(ev, 0, sizeof(*ev));
		ev->file_id = f->id;
		ev->line_offset = ne.line_offset;
		ev->timestamp = ne.timestamp;
		ev->state = EVENT_PENDING;
		ev->window_s = ne.rule->aggregate_s;
		ev->window_grace_s = ne.rule->aggregate_grace_s;
		snprintf(ev->rule, sizeof(ev->rule), "%s", ne.rule->name);
		snprintf(ev->event_name, sizeof(ev->event_name), "%s", ne.rule->event_name);
		snprintf(ev->payload_customer_key, sizeof(ev->payload_customer_key), "%s",
		         ne.rule->payload_customer_key);
		snprintf(ev->payload_value_key, sizeof(ev->payload_value_key), "%s",
		         ne.rule->payload_value_key);
		snprintf(ev->customer_key, sizeof(ev->customer_key), "%s", ne.customer_key);
		snprintf(ev->customer, sizeof(ev->customer), "%s", ne.customer);
		snprintf(ev->value, sizeof(ev->value), "%s", ne.value);
		rc = spool_window_commit(sp, ev, now, err, errlen);
		if (rc < 0)
			goto out;
		if (rc == 0)
			continue;
		/* Not aggregatable (outside Stripe's window, beyond exact sums): its own event. */
		if (*n_extra == cap) {
			size_t c = cap > 0 ? 2 * cap : 8;
			struct spool_new_event *e = realloc(*extra, c * sizeof(*e));
			char *t = realloc(*texts, c * 3 * EVENT_CUSTOMER_MAX);

			if (e != NULL)
				*extra = e;
			if (t != NULL)
				*texts = t;
			if (e == NULL || t == NULL) {
				err_set(err, errlen, "spool %s: out of memory", sp->path);
				goto out;
			}
			cap = c;
		}
		memcpy(*texts + *n_extra * 3 * EVENT_CUSTOMER_MAX, text, 3 * EVENT_CUSTOMER_MAX);
		(*extra)[(*n_extra)++] = ne;
	}
	if (rc < 0) {
		err_set(err, errlen, "spool %s: a batch being committed does not decode", sp->path);
		goto out;
	}
	/* The texts moved with the array: point each event at its own copy. */
	for (size_t i = 0; i < *n_extra; i++) {
		char *t = *texts + i * 3 * EVENT_CUSTOMER_MAX;

		(*extra)[i].customer_key = t;
		(*extra)[i].customer = t + EVENT_CUSTOMER_MAX;
		(*extra)[i].value = t + 2 * EVENT_CUSTOMER_MAX;
		(*extra)[i].not_aggregated = 1;
	}
	ret = 0;
out:
	reader_close(&r);
	free(text);
	free(ev);
	return ret;
}

/* Stores `n` (> 0) events of `b` at the end of the queue, q->next_id on. */
static int store_batch(struct spool *sp, struct spool_queue *q, int64_t file_id, int64_t end_offset,
                       int64_t now, const struct spool_batch *b, char *err, size_t errlen)
{
	int64_t n = (int64_t)spool_batch_stored(b);

	if (q->next_id > INT64_MAX / 4 - n) {
		err_set(err, errlen, "spool %s: event ids are exhausted", sp->path);
		return -1;
	}
	if (spool_batch_store(sp, q->next_id, file_id, end_offset, q->next_id + q->shift, now, b,
	                      err, errlen) < 0)
		return -1;
	q->next_id += n;
	sqlite3_bind_int64(sp->st[ST_QUEUE_NEXT], 1, q->next_id);
	return spool_st_run(sp, ST_QUEUE_NEXT, "advancing the queue", err, errlen);
}

int spool_event_store_one(struct spool *sp, struct spool_queue *q, struct event *ev, int64_t now,
                          char *err, size_t errlen)
{
	struct config_rule rule = {.name = ev->rule,
	                           .event_name = ev->event_name,
	                           .payload_customer_key = ev->payload_customer_key,
	                           .payload_value_key = ev->payload_value_key};
	struct spool_new_event ne = {.line_offset = ev->line_offset,
	                             .rule = &rule,
	                             .customer_key = ev->customer_key,
	                             .customer = ev->customer,
	                             .value = ev->value,
	                             .timestamp = ev->timestamp};
	char instance[256] = "";
	struct spool_batch *b = NULL;
	int rc, ret = -1;

	if (spool_meta_get(sp, SPOOL_INSTANCE_KEY, instance, sizeof(instance), err, errlen) < 0)
		return -1;
	b = spool_batch_new(instance, err, errlen);
	if (b == NULL)
		return -1;
	rc = spool_batch_add(b, &ne, err, errlen);
	if (rc != 0) {
		if (rc > 0)
			err_set(err, errlen,
			        "spool %s: a field of event at %" PRId64 " is too long", sp->path,
			        ev->line_offset);
		goto out;
	}
	ev->id = q->next_id;
	ev->queue_seq = q->next_id + q->shift;
	ev->created = now;
	if (store_batch(sp, q, ev->file_id, ev->line_offset + 1, now, b, err, errlen) < 0)
		goto out;
	if (ev->identifier[0] != '\0' || ev->state == EVENT_DEAD) {
		struct spool_outcome o;

		memset(&o, 0, sizeof(o));
		o.id = ev->id;
		o.state = ev->state == EVENT_DEAD ? EVENT_DEAD : EVENT_PENDING;
		o.queue_seq = ev->queue_seq;
		o.updated = now;
		snprintf(o.last_error, sizeof(o.last_error), "%s", ev->last_error);
		if (ev->identifier[0] != '\0') {
			o.has_identifier = 1;
			snprintf(o.identifier, sizeof(o.identifier), "%s", ev->identifier);
		}
		if (spool_outcome_put(sp, &o, err, errlen) < 0)
			goto out;
	}
	ret = 0;
out:
	spool_batch_free(b);
	return ret;
}

int spool_commit(struct spool *sp, const struct spool_file *f, struct spool_batch *b,
                 int64_t *added, char *err, size_t errlen)
{
	int64_t now = (int64_t)time(NULL), end = 0;
	struct spool_batch *rest = NULL;
	const struct spool_batch *store = b;
	struct spool_new_event *extra = NULL;
	char *texts = NULL;
	struct spool_queue q;
	size_t n = b != NULL ? spool_batch_stored(b) : 0, n_extra = 0;
	int ret = -1;

	if (added != NULL)
		*added = 0;
	if (sp == NULL || f == NULL) {
		err_set(err, errlen, "spool_commit: invalid arguments");
		goto out;
	}
	sp->last_rc = sp->last_errno = 0; /* spool_failed_full describes this call */
	if (spool_check_file(sp, err, errlen) < 0 || spool_tx_begin(sp, err, errlen) < 0)
		goto out;
	if (spool_batch_count(b) > 0) {
		/* Inside the transaction: no other connection can add to the queue meanwhile. */
		if (spool_queue_get(sp, &q, err, errlen) < 0 ||
		    last_end(sp, f->id, &end, err, errlen) < 0 ||
		    into_windows(sp, f, b, end, now, &extra, &n_extra, &texts, err, errlen) < 0)
			goto fail;
		if ((n > 0 && spool_batch_first_offset(b) < end) || n_extra > 0) {
			rest = spool_batch_new(spool_batch_instance(b), err, errlen);
			if (rest == NULL ||
			    rebuild(sp, b, end, extra, n_extra, rest, err, errlen) < 0)
				goto fail;
			store = rest;
			n = spool_batch_stored(rest);
		}
	}
	if (n > 0 && store_batch(sp, &q, f->id, f->offset, now, store, err, errlen) < 0)
		goto fail;
	if (file_update(sp, f, now, err, errlen) < 0)
		goto fail;
	crash_point("spool_commit_inside"); /* all written, not committed: none of it counts */
	if (spool_tx_commit(sp, err, errlen) < 0)
		goto out;
	if (added != NULL)
		*added = (int64_t)n;
	ret = 0;
	goto out;
fail:
	spool_tx_rollback(sp);
out:
	spool_batch_free(rest);
	free(extra);
	free(texts);
	if (b != NULL)
		spool_batch_clear(b);
	return ret;
}
