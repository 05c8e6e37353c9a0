/* spool: the handle that every user of the spool shares (spool_int.h): opening and closing,
 * the statements of every user file prepared at open, error texts, binding and reading rows,
 * transactions, the instance id, durability, the queue's row. */
#include "store/spool.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "store/spool_int.h"
#include "util/log.h"
#include "util/path.h"

#define SPOOL_BUSY_TIMEOUT_MS 10000

const struct spool_sql spool_handle_sql[] = {
    {ST_BEGIN, "BEGIN IMMEDIATE"},
    {ST_BEGIN_READ, "BEGIN"},
    {ST_COMMIT, "COMMIT"},
    {ST_ROLLBACK, "ROLLBACK"},
    {ST_META_GET, "SELECT value FROM meta WHERE key = ?1"},
    {ST_META_PUT, "INSERT INTO meta(key, value) VALUES (?1, ?2)"
                  " ON CONFLICT(key) DO UPDATE SET value = excluded.value"},
    {ST_QUEUE_GET, "SELECT next_id, shift, delivered_through FROM queue"},
    {ST_COUNT_, NULL},
};

static const char *const rc_names[] = {
    [SQLITE_OK] = "SQLITE_OK",
    [SQLITE_ERROR] = "SQLITE_ERROR",
    [SQLITE_INTERNAL] = "SQLITE_INTERNAL",
    [SQLITE_PERM] = "SQLITE_PERM",
    [SQLITE_ABORT] = "SQLITE_ABORT",
    [SQLITE_BUSY] = "SQLITE_BUSY",
    [SQLITE_LOCKED] = "SQLITE_LOCKED",
    [SQLITE_NOMEM] = "SQLITE_NOMEM",
    [SQLITE_READONLY] = "SQLITE_READONLY",
    [SQLITE_INTERRUPT] = "SQLITE_INTERRUPT",
    [SQLITE_IOERR] = "SQLITE_IOERR",
    [SQLITE_CORRUPT] = "SQLITE_CORRUPT",
    [SQLITE_NOTFOUND] = "SQLITE_NOTFOUND",
    [SQLITE_FULL] = "SQLITE_FULL",
    [SQLITE_CANTOPEN] = "SQLITE_CANTOPEN",
    [SQLITE_PROTOCOL] = "SQLITE_PROTOCOL",
    [SQLITE_EMPTY] = "SQLITE_EMPTY",
    [SQLITE_SCHEMA] = "SQLITE_SCHEMA",
    [SQLITE_TOOBIG] = "SQLITE_TOOBIG",
    [SQLITE_CONSTRAINT] = "SQLITE_CONSTRAINT",
    [SQLITE_MISMATCH] = "SQLITE_MISMATCH",
    [SQLITE_MISUSE] = "SQLITE_MISUSE",
    [SQLITE_NOLFS] = "SQLITE_NOLFS",
    [SQLITE_AUTH] = "SQLITE_AUTH",
    [SQLITE_FORMAT] = "SQLITE_FORMAT",
    [SQLITE_RANGE] = "SQLITE_RANGE",
    [SQLITE_NOTADB] = "SQLITE_NOTADB",
    [SQLITE_NOTICE] = "SQLITE_NOTICE",
    [SQLITE_WARNING] = "SQLITE_WARNING",
};

static const char *rc_name(int rc)
{
	int primary = rc & 0xff;

	if (primary == SQLITE_ROW)
		return "SQLITE_ROW";
	if (primary == SQLITE_DONE)
		return "SQLITE_DONE";
	if (primary >= 0 && (size_t)primary < sizeof(rc_names) / sizeof(rc_names[0]) &&
	    rc_names[primary] != NULL)
		return rc_names[primary];
	return "SQLITE_UNKNOWN";
}

const char *spool_damage_hint(int rc)
{
	if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
		return " (the spool file is damaged: stop logmeter, then run `logmeter spool check "
		       "-c FILE` and `logmeter spool recover -c FILE`; see docs/spool.md)";
	return "";
}

/* "spool PATH: WHAT: SQLITE_FULL: database or disk is full". Called right after the failing
 * call, before a ROLLBACK replaces the connection's message. */
void spool_fail(struct spool *sp, int rc, const char *what, char *err, size_t errlen)
{
	const char *msg = sp->db != NULL ? sqlite3_errmsg(sp->db) : sqlite3_errstr(rc);

	sp->last_rc = rc;
	sp->last_errno = sp->db != NULL ? sqlite3_system_errno(sp->db) : 0;

	err_set(err, errlen, "spool %s: %s: %s: %s%s", sp->path, what, rc_name(rc), msg,
	        spool_damage_hint(rc));
}

void spool_fail_damaged(struct spool *sp, int64_t batch_id, char *err, size_t errlen)
{
	sp->last_rc = SQLITE_CORRUPT;
	sp->last_errno = 0;
	err_set(err, errlen, "spool %s: the events of batch %" PRId64 " do not decode%s", sp->path,
	        batch_id, spool_damage_hint(SQLITE_CORRUPT));
}

/* Leaves a statement ready for its next use, holding no pointer into the caller's memory. */
void spool_st_end(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* The bind helpers keep the first error in *rc so a statement's bindings read as one block. */
void spool_bind_int(sqlite3_stmt *st, int i, int64_t v, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_int64(st, i, v);
}

void spool_bind_null(sqlite3_stmt *st, int i, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_null(st, i);
}

/* Binds a string field of a fixed-size buffer: never reads past `max` bytes, even if the field
 * lacks its NUL. The caller keeps it alive until spool_st_end. */
void spool_bind_text(sqlite3_stmt *st, int i, const char *s, size_t max, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_text(st, i, s, (int)strnlen(s, max), SQLITE_STATIC);
}

void spool_bind_blob(sqlite3_stmt *st, int i, const void *p, int len, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_blob(st, i, p, len, SQLITE_STATIC);
}

/* Copies a text column into `out` (`outlen` >= 1 bytes), cut if needed at a UTF-8 character
 * boundary so that what is cut stays valid text for JSON export. */
void spool_col_text(sqlite3_stmt *st, int i, char *out, size_t outlen)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	size_t len = (size_t)sqlite3_column_bytes(st, i);

	if (s == NULL)
		len = 0;
	if (len > outlen - 1) {
		len = outlen - 1;
		/* Back off continuation bytes, then the lead byte they belonged to. */
		while (len > 0 && (s[len] & 0xc0) == 0x80)
			len--;
	}
	if (len > 0)
		memcpy(out, s, len);
	out[len] = '\0';
}

/* A hash column: anything but a blob of SPOOL_HASH_LEN bytes counts as absent. */
static void col_hash(sqlite3_stmt *st, int i, unsigned char out[SPOOL_HASH_LEN], int64_t *len)
{
	const void *p = sqlite3_column_blob(st, i);
	int n = sqlite3_column_bytes(st, i);

	if (p == NULL || n != SPOOL_HASH_LEN || *len < 0) {
		memset(out, 0, SPOOL_HASH_LEN);
		*len = 0;
		return;
	}
	memcpy(out, p, SPOOL_HASH_LEN);
}

/* The text of each state in the database: what every logmeter has written. */
static const char *const file_state_names[] = {
    [SPOOL_FILE_READING] = "reading",
    [SPOOL_FILE_DRAINED] = "drained",
    [SPOOL_FILE_GONE] = "gone",
};

const char *spool_file_state_name(enum spool_file_state st)
{
	if ((size_t)st < sizeof(file_state_names) / sizeof(file_state_names[0]))
		return file_state_names[st];
	return "?";
}

int spool_file_state_parse(const char *text, size_t len, enum spool_file_state *out)
{
	for (size_t i = 0; i < sizeof(file_state_names) / sizeof(file_state_names[0]); i++) {
		if (strlen(file_state_names[i]) == len &&
		    memcmp(text, file_state_names[i], len) == 0) {
			*out = (enum spool_file_state)i;
			return 0;
		}
	}
	return -1;
}

size_t spool_file_fit_size(const char *path)
{
	return offsetof(struct spool_file, path) +
	       strnlen(path, sizeof(((struct spool_file *)0)->path) - 1) + 1;
}

void spool_file_copy(struct spool_file *dst, const struct spool_file *src)
{
	size_t len = strnlen(src->path, sizeof(src->path) - 1);

	if (dst == src)
		return;
	memcpy(dst, src, offsetof(struct spool_file, path));
	memcpy(dst->path, src->path, len);
	dst->path[len] = '\0';
}

int spool_row_file(const struct spool *sp, sqlite3_stmt *st, struct spool_file *f, char *err,
                   size_t errlen)
{
	const char *state = (const char *)sqlite3_column_text(st, 12);
	size_t state_len = (size_t)sqlite3_column_bytes(st, 12);

	memset(f, 0, sizeof(*f));
	f->id = sqlite3_column_int64(st, 0);
	spool_col_text(st, 1, f->uid, sizeof(f->uid));
	spool_col_text(st, 2, f->source, sizeof(f->source));
	spool_col_text(st, 3, f->path, sizeof(f->path));
	f->dev = (uint64_t)sqlite3_column_int64(st, 4);
	f->ino = (uint64_t)sqlite3_column_int64(st, 5);
	f->fp_len = sqlite3_column_int64(st, 6);
	if (f->fp_len > SPOOL_FP_MAX)
		f->fp_len = -1; /* out of range: col_hash treats it as absent */
	col_hash(st, 7, f->fp_hash, &f->fp_len);
	f->offset = sqlite3_column_int64(st, 8);
	f->check_len = sqlite3_column_int64(st, 9);
	col_hash(st, 10, f->check_hash, &f->check_len);
	f->size = sqlite3_column_int64(st, 11);
	if (state == NULL || spool_file_state_parse(state, state_len, &f->state) < 0) {
		err_set(err, errlen,
		        "spool %s: file record %" PRId64 " has an invalid state \"%.32s\"",
		        sp->path, f->id, state != NULL ? state : "(null)");
		return -1;
	}
	f->counters.lines = sqlite3_column_int64(st, 13);
	f->counters.matched = sqlite3_column_int64(st, 14);
	f->counters.unmatched = sqlite3_column_int64(st, 15);
	f->counters.invalid = sqlite3_column_int64(st, 16);
	f->counters.long_lines = sqlite3_column_int64(st, 17);
	f->counters.nul_bytes = sqlite3_column_int64(st, 18);
	f->counters.events = sqlite3_column_int64(st, 19);
	f->counters.resets = sqlite3_column_int64(st, 20);
	f->first_seen = sqlite3_column_int64(st, 21);
	f->updated = sqlite3_column_int64(st, 22);
	return 0;
}

int spool_row_outcome(const struct spool *sp, sqlite3_stmt *st, struct spool_outcome *o, char *err,
                      size_t errlen)
{
	int64_t state = sqlite3_column_int64(st, SPOOL_OC_STATE);

	o->id = sqlite3_column_int64(st, SPOOL_OC_ID);
	if (state < EVENT_PENDING || state > EVENT_UNSURE) {
		err_set(err, errlen, "spool %s: event %" PRId64 " has an invalid state %" PRId64,
		        sp->path, o->id, state);
		return -1;
	}
	o->state = (enum event_state)state;
	o->attempts = sqlite3_column_int64(st, SPOOL_OC_ATTEMPTS);
	o->key_generation = sqlite3_column_int64(st, SPOOL_OC_KEY_GENERATION);
	o->first_unknown = sqlite3_column_int64(st, SPOOL_OC_FIRST_UNKNOWN);
	spool_col_text(st, SPOOL_OC_LAST_ERROR, o->last_error, sizeof(o->last_error));
	o->has_customer = sqlite3_column_type(st, SPOOL_OC_CUSTOMER) != SQLITE_NULL;
	spool_col_text(st, SPOOL_OC_CUSTOMER, o->customer, sizeof(o->customer));
	o->has_identifier = sqlite3_column_type(st, SPOOL_OC_IDENTIFIER) != SQLITE_NULL;
	spool_col_text(st, SPOOL_OC_IDENTIFIER, o->identifier, sizeof(o->identifier));
	o->queue_seq = sqlite3_column_int64(st, SPOOL_OC_QUEUE_SEQ);
	o->updated = sqlite3_column_int64(st, SPOOL_OC_UPDATED);
	o->delivered_at = sqlite3_column_int64(st, SPOOL_OC_DELIVERED_AT);
	return 0;
}

/* Steps a statement that returns no row and ends it. */
int spool_st_run(struct spool *sp, enum spool_stmt which, const char *what, char *err,
                 size_t errlen)
{
	sqlite3_stmt *st = sp->st[which];
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, what, err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return 0;
}

int spool_tx_begin(struct spool *sp, char *err, size_t errlen)
{
	sp->n_rules_safe = sp->n_rules;
	return spool_st_run(sp, ST_BEGIN, "begin", err, errlen);
}

/* Forgets the cached rows of `rules` that a rolled-back transaction may have added. */
static void forget_uncommitted(struct spool *sp)
{
	while (sp->n_rules > sp->n_rules_safe) {
		struct spool_rule *r = &sp->rules[--sp->n_rules];

		free(r->instance);
		free(r->rule);
		free(r->event_name);
		free(r->payload_customer_key);
		free(r->payload_value_key);
	}
	sp->dl_lo = sp->dl_hi = 0;
}

int spool_tx_begin_read(struct spool *sp, char *err, size_t errlen)
{
	return spool_st_run(sp, ST_BEGIN_READ, "begin", err, errlen);
}

int spool_snapshot_begin(struct spool *sp, char *err, size_t errlen)
{
	return spool_tx_begin_read(sp, err, errlen);
}

int spool_snapshot_end(struct spool *sp, char *err, size_t errlen)
{
	return spool_tx_commit(sp, err, errlen);
}

/* Ends a failed transaction; the caller's err already says why it failed. */
void spool_tx_rollback(struct spool *sp)
{
	int rc;

	forget_uncommitted(sp);
	/* A failed statement may already have rolled the transaction back. */
	if (sqlite3_get_autocommit(sp->db))
		return;
	rc = sqlite3_step(sp->st[ST_ROLLBACK]);
	if (rc != SQLITE_DONE)
		log_err("spool %s: rollback: %s: %s", sp->path, rc_name(rc),
		        sqlite3_errmsg(sp->db));
	spool_st_end(sp->st[ST_ROLLBACK]);
}

int spool_tx_commit(struct spool *sp, char *err, size_t errlen)
{
	if (spool_st_run(sp, ST_COMMIT, "commit", err, errlen) < 0) {
		spool_tx_rollback(sp);
		return -1;
	}
	return 0;
}

int spool_random_hex(char *out, size_t nbytes, char *err, size_t errlen)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char buf[32];
	size_t got = 0;

	if (nbytes > sizeof(buf)) {
		err_set(err, errlen, "spool_random_hex: %zu bytes asked, at most %zu", nbytes,
		        sizeof(buf));
		return -1;
	}
	while (got < nbytes) {
		ssize_t r = getrandom(buf + got, nbytes - got, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			err_set(err, errlen, "getrandom: %s", strerror(errno));
			return -1;
		}
		got += (size_t)r;
	}
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hex[buf[i] >> 4];
		out[2 * i + 1] = hex[buf[i] & 0x0f];
	}
	out[2 * nbytes] = '\0';
	return 0;
}

/* Runs a one-row PRAGMA or query and returns its integer value in *out. Prepared per call: these
 * run once per commit at most, so caching them is not worth a slot in the handle's table. */
int spool_pragma_int(struct spool *sp, const char *sql, int64_t *out, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, sql, err, errlen);
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}

int spool_exec(struct spool *sp, const char *sql, const char *what, char *err, size_t errlen)
{
	int rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, what, err, errlen);
		return -1;
	}
	return 0;
}

int spool_prepare(struct spool *sp, char *err, size_t errlen)
{
	static const struct spool_sql *const lists[] = {
	    spool_handle_sql, spool_events_sql, spool_commit_sql, spool_queue_sql,
	    spool_query_sql,  spool_room_sql,   spool_window_sql,
	};

	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
		for (const struct spool_sql *q = lists[l]; q->text != NULL; q++) {
			int rc;

			if (sp->st[q->which] != NULL)
				continue;
			rc = sqlite3_prepare_v3(sp->db, q->text, -1, SQLITE_PREPARE_PERSISTENT,
			                        &sp->st[q->which], NULL);

			if (rc != SQLITE_OK) {
				spool_fail(sp, rc, "preparing statements", err, errlen);
				return -1;
			}
		}
	}
	/* A slot no list fills is a mistake in this program, not in the database. */
	for (int i = 0; i < ST_COUNT_; i++) {
		if (sp->st[i] == NULL) {
			err_set(err, errlen, "spool %s: statement %d has no SQL", sp->path, i);
			return -1;
		}
	}
	return 0;
}

/* spool_open, with the marker's checks or without them. */
static struct spool *open_spool(const char *state_dir, enum spool_open_mode mode, int marked,
                                char *err, size_t errlen)
{
	struct spool *sp = NULL;
	struct stat stbuf;
	size_t pathlen;
	int flags, rc;

	if (state_dir == NULL || state_dir[0] == '\0') {
		err_set(err, errlen, "spool: no state directory given");
		return NULL;
	}
	if (mode != SPOOL_READ_WRITE && mode != SPOOL_READ_ONLY) {
		err_set(err, errlen, "spool: invalid open mode %d", (int)mode);
		return NULL;
	}
	sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		goto nomem;
	sp->mode = mode;
	pathlen = strlen(state_dir) + sizeof("/" SPOOL_FILE_NAME);
	sp->path = malloc(pathlen);
	if (sp->path == NULL)
		goto nomem;
	if (spool_path_of(state_dir, sp->path, pathlen, err, errlen) < 0 ||
	    (marked && spool_marker_check(state_dir, sp->path, err, errlen) < 0))
		goto fail;
	if (mode == SPOOL_READ_ONLY) {
		if (stat(sp->path, &stbuf) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				err_set(err, errlen, "no spool at %s: the agent has not run yet",
				        sp->path);
			else
				err_set(err, errlen, "spool %s: %s", sp->path, strerror(errno));
			goto fail;
		}
		flags = SQLITE_OPEN_READONLY;
	} else {
		if (path_mkdirs(state_dir, err, errlen) < 0)
			goto fail;
		flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	}
	/* Each thread opens its own handle, so SQLite's per-connection mutex is not needed. A
	 * spool.db that is a symlink (or reached through one) is refused: whoever could plant it
	 * would have SQLite create or write the database at its target. SQLite's unix VFS opens
	 * the -wal and -shm files with O_NOFOLLOW anyway (os_unix.c, unixOpen). */
	rc = sqlite3_open_v2(sp->path, &sp->db, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
	                     NULL);
	if (rc != SQLITE_OK) {
		if (sp->db == NULL)
			goto nomem;
		if (sqlite3_extended_errcode(sp->db) == SQLITE_CANTOPEN_SYMLINK) {
			err_set(err, errlen,
			        "spool %s is a symbolic link or is reached through one: refused "
			        "(docs/security.md)",
			        sp->path);
			goto fail;
		}
		spool_fail(sp, rc, "open", err, errlen);
		goto fail;
	}
	sqlite3_extended_result_codes(sp->db, 1);
	sqlite3_busy_timeout(sp->db, SPOOL_BUSY_TIMEOUT_MS);
	sp->ids = event_ids_new();
	if (sp->ids == NULL) {
		err_set(err, errlen, "spool %s: libcrypto cannot make a digest context", sp->path);
		goto fail;
	}
	if (spool_schema_setup(sp, err, errlen) < 0)
		goto fail;
	if (spool_prepare(sp, err, errlen) < 0)
		goto fail;
	if (marked && mode == SPOOL_READ_WRITE && spool_marker_sync(sp, state_dir, err, errlen) < 0)
		goto fail;
	/* SQLite holds its own descriptor: the file it opened is the one the path named a moment
	 * ago, since nobody else may touch a state directory an agent holds. */
	if (stat(sp->path, &stbuf) == 0) {
		sp->pinned = 1;
		sp->dev = stbuf.st_dev;
		sp->ino = stbuf.st_ino;
	}
	return sp;
nomem:
	err_set(err, errlen, "spool %s: out of memory",
	        sp != NULL && sp->path != NULL ? sp->path : state_dir);
fail:
	spool_free(sp);
	return NULL;
}

struct spool *spool_open(const char *state_dir, enum spool_open_mode mode, char *err, size_t errlen)
{
	return open_spool(state_dir, mode, 1, err, errlen);
}

struct spool *spool_open_unmarked(const char *state_dir, enum spool_open_mode mode, char *err,
                                  size_t errlen)
{
	return open_spool(state_dir, mode, 0, err, errlen);
}

void spool_free(struct spool *sp)
{
	if (sp == NULL)
		return;
	for (int i = 0; i < ST_COUNT_; i++)
		sqlite3_finalize(sp->st[i]);
	spool_extra_free(sp);
	if (sp->db != NULL && sqlite3_close(sp->db) != SQLITE_OK)
		log_err("spool %s: close: %s", sp->path, sqlite3_errmsg(sp->db));
	for (size_t i = 0; i < sp->n_rules; i++) {
		free(sp->rules[i].instance);
		free(sp->rules[i].rule);
		free(sp->rules[i].event_name);
		free(sp->rules[i].payload_customer_key);
		free(sp->rules[i].payload_value_key);
	}
	free(sp->rules);
	spool_view_free(&sp->scan);
	spool_view_free(&sp->look);
	event_ids_free(sp->ids);
	free(sp->path);
	free(sp);
}

int spool_meta_get(struct spool *sp, const char *key, char *out, size_t outlen, char *err,
                   size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_META_GET];
	int rc = SQLITE_OK, found = 0;

	spool_bind_text(st, 1, key, SIZE_MAX, &rc);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			spool_col_text(st, 0, out, outlen);
			found = 1;
			rc = SQLITE_DONE;
		}
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading meta", err, errlen);
		spool_st_end(st);
		return -1;
	}
	spool_st_end(st);
	return found;
}

int spool_meta_put(struct spool *sp, const char *key, const char *value, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_META_PUT];
	int rc = SQLITE_OK;

	spool_bind_text(st, 1, key, SIZE_MAX, &rc);
	spool_bind_text(st, 2, value, SIZE_MAX, &rc);
	if (rc != SQLITE_OK) {
		spool_fail(sp, rc, "writing meta", err, errlen);
		spool_st_end(st);
		return -1;
	}
	return spool_st_run(sp, ST_META_PUT, "writing meta", err, errlen);
}

/* Reads the kept latest time into *seen (0: none, or not a number). Returns 0 or -1. */
static int clock_seen_get(struct spool *sp, int64_t *seen, char *err, size_t errlen)
{
	char v[32] = "", *end = NULL;
	long long t;
	int found;

	*seen = 0;
	found = spool_meta_get(sp, SPOOL_CLOCK_SEEN_KEY, v, sizeof(v), err, errlen);
	if (found < 0)
		return -1;
	if (!found)
		return 0;
	errno = 0;
	t = strtoll(v, &end, 10);
	if (errno == 0 && end != v && *end == '\0' && t > 0)
		*seen = (int64_t)t;
	return 0;
}

int spool_clock_seen(struct spool *sp, int64_t *seen, char *err, size_t errlen)
{
	if (sp == NULL || seen == NULL) {
		err_set(err, errlen, "spool_clock_seen: invalid arguments");
		return -1;
	}
	return clock_seen_get(sp, seen, err, errlen);
}

int spool_clock_note(struct spool *sp, int64_t seen, char *err, size_t errlen)
{
	char v[32];
	int64_t kept;

	if (sp == NULL || seen <= 0) {
		err_set(err, errlen, "spool_clock_note: invalid arguments");
		return -1;
	}
	if (spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	if (clock_seen_get(sp, &kept, err, errlen) < 0)
		goto fail;
	if (seen > kept) {
		snprintf(v, sizeof(v), "%lld", (long long)seen);
		if (spool_meta_put(sp, SPOOL_CLOCK_SEEN_KEY, v, err, errlen) < 0)
			goto fail;
	}
	return spool_tx_commit(sp, err, errlen);
fail:
	spool_tx_rollback(sp);
	return -1;
}

int spool_clock_correct(struct spool *sp, int64_t seen, char *err, size_t errlen)
{
	char v[32];

	if (sp == NULL || seen <= 0) {
		err_set(err, errlen, "spool_clock_correct: invalid arguments");
		return -1;
	}
	snprintf(v, sizeof(v), "%lld", (long long)seen);
	if (spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	if (spool_meta_put(sp, SPOOL_CLOCK_SEEN_KEY, v, err, errlen) < 0)
		goto fail;
	return spool_tx_commit(sp, err, errlen);
fail:
	spool_tx_rollback(sp);
	return -1;
}

/* Longer than any instance id logmeter writes, so that a longer stored one is noticed. */
#define INSTANCE_BUF 1024

int spool_instance(struct spool *sp, const char *configured, char *out, size_t outlen, char *err,
                   size_t errlen)
{
	char stored[INSTANCE_BUF] = "", fresh[17];
	const char *value;
	int found, in_tx = 0, changed = 0;

	if (sp == NULL || out == NULL || outlen == 0) {
		err_set(err, errlen, "spool_instance: invalid arguments");
		return -1;
	}
	if (configured != NULL && configured[0] == '\0')
		configured = NULL;
	if (configured != NULL && strlen(configured) >= outlen) {
		err_set(err, errlen, "instance id \"%s\" is longer than %zu bytes", configured,
		        outlen - 1);
		return -1;
	}
	/* One transaction, so that two handles starting together agree on a generated id. */
	if (sp->mode == SPOOL_READ_WRITE) {
		if (spool_tx_begin(sp, err, errlen) < 0)
			return -1;
		in_tx = 1;
	}
	found = spool_meta_get(sp, SPOOL_INSTANCE_KEY, stored, sizeof(stored), err, errlen);
	if (found < 0)
		goto fail;
	if (configured != NULL) {
		value = configured;
		changed = found && strcmp(stored, configured) != 0;
	} else if (found) {
		value = stored;
	} else if (sp->mode == SPOOL_READ_ONLY) {
		err_set(err, errlen, "spool %s has no instance id yet: the agent has not run yet",
		        sp->path);
		goto fail;
	} else {
		if (spool_random_hex(fresh, 8, err, errlen) < 0)
			goto fail;
		value = fresh;
	}
	if (strlen(value) >= outlen) {
		err_set(err, errlen, "spool %s: instance id \"%s\" is longer than %zu bytes",
		        sp->path, value, outlen - 1);
		goto fail;
	}
	if (in_tx) {
		if ((!found || changed) &&
		    spool_meta_put(sp, SPOOL_INSTANCE_KEY, value, err, errlen) < 0)
			goto fail;
		in_tx = 0;
		if (spool_tx_commit(sp, err, errlen) < 0)
			return -1;
		if (changed)
			log_warn("instance id changed from \"%s\" to \"%s\": new events get "
			         "identifiers in the new namespace",
			         stored, value);
	}
	memcpy(out, value, strlen(value) + 1);
	return 0;
fail:
	if (in_tx)
		spool_tx_rollback(sp);
	return -1;
}

int spool_queue_get(struct spool *sp, struct spool_queue *q, char *err, size_t errlen)
{
	sqlite3_stmt *st = sp->st[ST_QUEUE_GET];
	int rc = sqlite3_step(st);

	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE)
			err_set(err, errlen, "spool %s: the queue's row is missing%s", sp->path,
			        spool_damage_hint(SQLITE_CORRUPT));
		else
			spool_fail(sp, rc, "reading the queue", err, errlen);
		spool_st_end(st);
		return -1;
	}
	q->next_id = sqlite3_column_int64(st, 0);
	q->shift = sqlite3_column_int64(st, 1);
	q->delivered = sqlite3_column_int64(st, 2);
	spool_st_end(st);
	if (q->next_id < 1 || q->shift < 0 || q->delivered < 0 || q->delivered >= q->next_id ||
	    q->next_id > INT64_MAX / 4 || q->shift > INT64_MAX / 4) {
		err_set(err, errlen,
		        "spool %s: the queue's row is out of range (next id %" PRId64
		        ", shift %" PRId64 ", delivered through %" PRId64 ")%s",
		        sp->path, q->next_id, q->shift, q->delivered,
		        spool_damage_hint(SQLITE_CORRUPT));
		return -1;
	}
	return 0;
}

int spool_set_durability(struct spool *sp, enum config_durability d, char *err, size_t errlen)
{
	const char *sql;

	if (sp == NULL || (d != CONFIG_DURABILITY_STRICT && d != CONFIG_DURABILITY_NORMAL)) {
		err_set(err, errlen, "spool_set_durability: invalid arguments");
		return -1;
	}
	sql =
	    d == CONFIG_DURABILITY_STRICT ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
	if (spool_exec(sp, sql, sql, err, errlen) < 0)
		return -1;
	sp->durability = d;
	return 0;
}

int spool_failed_full(const struct spool *sp)
{
	if (sp == NULL)
		return 0;
	if ((sp->last_rc & 0xff) == SQLITE_FULL)
		return 1;
	return (sp->last_rc & 0xff) == SQLITE_IOERR &&
	       (sp->last_errno == ENOSPC || sp->last_errno == EDQUOT);
}

int spool_path_of(const char *state_dir, char *out, size_t outlen, char *err, size_t errlen)
{
	int n;

	if (state_dir == NULL || out == NULL || outlen == 0) {
		err_set(err, errlen, "spool_path_of: invalid arguments");
		return -1;
	}
	n = snprintf(out, outlen, "%s/%s", state_dir, SPOOL_FILE_NAME);
	if (n < 0 || (size_t)n >= outlen) {
		err_set(err, errlen, "%s: path too long for the spool", state_dir);
		return -1;
	}
	return 0;
}

int spool_check_file(const struct spool *sp, char *err, size_t errlen)
{
	struct stat st;

	if (sp == NULL || !sp->pinned)
		return 0;
	if (stat(sp->path, &st) != 0) {
		err_set(err, errlen,
		        "spool %s: %s: it was removed while logmeter ran (the state directory "
		        "wiped?): nothing more goes into the removed file",
		        sp->path, strerror(errno));
		return -1;
	}
	if (st.st_dev != sp->dev || st.st_ino != sp->ino) {
		err_set(err, errlen,
		        "spool %s was replaced while logmeter ran (inode %llu, not %llu): nothing "
		        "more goes into the file it had open",
		        sp->path, (unsigned long long)st.st_ino, (unsigned long long)sp->ino);
		return -1;
	}
	return 0;
}

const char *spool_path(const struct spool *sp)
{
	return sp != NULL ? sp->path : NULL;
}
