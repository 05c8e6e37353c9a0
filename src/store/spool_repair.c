#include "store/spool_repair.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/spool.h"
#include "store/report.h"
#include "store/spool_int.h"
#include "util/log.h"

/* ---- spool check ---------------------------------------------------------------------------- */

static int64_t count_query(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

int spool_check(const char *state_dir, spool_problem_cb cb, void *ud, struct spool_check_info *info,
                char *err, size_t errlen)
{
	char path[SPOOL_PATH_MAX], msg[sizeof(path) + 1024];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	struct stat sb;
	int rc, problems = 0, ret = -1;

	info->version = info->pending = info->delivered = info->dead = info->unsure = info->files =
	    -1;
	if (spool_path_of(state_dir, path, sizeof(path), err, errlen) < 0)
		return -1;
	if (stat(path, &sb) < 0) {
		err_set(err, errlen, "no spool at %s: %s", path, strerror(errno));
		return -1;
	}
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		err_set(err, errlen, "spool %s: open: %s", path,
		        db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		goto out;
	}
	sqlite3_busy_timeout(db, 10000);
	rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		/* Not a database, or a header SQLite refuses (a truncated file): nothing more can
		 * be checked through SQLite. */
		snprintf(msg, sizeof(msg), "%s cannot be read: %s", path, sqlite3_errmsg(db));
		cb(msg, ud);
		ret = 1;
		goto out;
	}
	info->version = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (info->version > SPOOL_SCHEMA_VERSION || info->version < 0) {
		snprintf(msg, sizeof(msg),
		         "schema version %" PRId64
		         " is newer than this logmeter understands (%d): use "
		         "the logmeter that wrote it",
		         info->version, SPOOL_SCHEMA_VERSION);
		cb(msg, ud);
		problems++;
	} else if (info->version == 0) {
		cb("the database has no logmeter schema (schema version 0)", ud);
		problems++;
	}
	rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(100)", -1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *row = (const char *)sqlite3_column_text(st, 0);

		rc = SQLITE_OK;
		if (row != NULL && strcmp(row, "ok") == 0)
			continue;
		cb(row != NULL ? row : "(null)", ud);
		problems++;
	}
	if (rc != SQLITE_DONE) {
		snprintf(msg, sizeof(msg), "PRAGMA integrity_check: %s", sqlite3_errmsg(db));
		cb(msg, ud);
		problems++;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (info->version == SPOOL_SCHEMA_VERSION) {
		rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL);
		while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
			snprintf(msg, sizeof(msg), "%s row %lld refers to a missing %s record",
			         (const char *)sqlite3_column_text(st, 0),
			         (long long)sqlite3_column_int64(st, 1),
			         (const char *)sqlite3_column_text(st, 2));
			cb(msg, ud);
			problems++;
			rc = SQLITE_OK;
		}
		if (rc != SQLITE_DONE) {
			snprintf(msg, sizeof(msg), "PRAGMA foreign_key_check: %s",
			         sqlite3_errmsg(db));
			cb(msg, ud);
			problems++;
		}
		sqlite3_finalize(st);
		st = NULL;
		struct spool_counts c;

		if (spool_counts_db(db, &c) == SQLITE_OK) {
			info->pending = c.pending;
			info->delivered = c.delivered;
			info->dead = c.dead;
			info->unsure = c.unsure;
		} else {
			cb("the events cannot be counted (the queue's row is missing or "
			   "unreadable)",
			   ud);
			problems++;
		}
		info->files = count_query(db, "SELECT count(*) FROM files");
	}
	ret = problems > 0 ? 1 : 0;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ret;
}

/* ---- reading pages: the database file with its WAL applied ---------------------------------- */

#define WAL_HEADER 32
#define WAL_FRAME_HEADER 24
#define LOCK_BYTE_OFFSET 0x40000000LL /* the lock-byte page is never used for data */
/* No spool row is near 2 MiB (a batch holds at most SPOOL_BATCH_BYTES_MAX of events and one
 * more): a bigger cell is garbage. */
#define MAX_PAYLOAD (2 << 20)
#define MAX_COLS 32

struct pager {
	int fd;
	int64_t file_pages;
	uint32_t page_size, usable;
	int64_t npages;
	int walfd;
	int64_t *wal_off; /* per page number: offset of its newest committed frame's data, or 0 */
	int64_t wal_pages, wal_frames;
	unsigned char *free; /* per page number: on the free-page list */
};

static uint32_t be16(const unsigned char *p)
{
	return ((uint32_t)p[0] << 8) | p[1];
}

static uint32_t be32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int read_full(int fd, void *buf, size_t n, int64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + (int64_t)got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* Page `pgno` (1-based) into buf (page_size bytes): the newest committed WAL frame, else the
 * database file. Returns 0, or -1 if neither has it. */
static int read_page(const struct pager *pg, int64_t pgno, unsigned char *buf)
{
	if (pgno < 1 || pgno > pg->npages)
		return -1;
	if (pg->wal_off != NULL && pgno <= pg->wal_pages && pg->wal_off[pgno] > 0)
		return read_full(pg->walfd, buf, pg->page_size, pg->wal_off[pgno]);
	if (pgno > pg->file_pages)
		return -1;
	return read_full(pg->fd, buf, pg->page_size, (pgno - 1) * (int64_t)pg->page_size);
}

/* The WAL checksum (fileformat2.html, "Checksum Algorithm") over `n` bytes (a multiple of 8),
 * continuing from s[0], s[1]; words big-endian if `big`, else little-endian. */
static void wal_checksum(int big, const unsigned char *p, size_t n, uint32_t s[2])
{
	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint32_t x0, x1;

		if (big) {
			x0 = be32(p + i);
			x1 = be32(p + i + 4);
		} else {
			x0 = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 |
			     (uint32_t)p[i + 3] << 24;
			x1 = (uint32_t)p[i + 4] | (uint32_t)p[i + 5] << 8 |
			     (uint32_t)p[i + 6] << 16 | (uint32_t)p[i + 7] << 24;
		}
		s[0] += x0 + s[1];
		s[1] += x1 + s[0];
	}
}

/* Indexes the committed frames of the WAL (if any): valid salts and checksums, up to the last
 * commit frame. Sets pg->npages to the database size of that commit. */
static int wal_load(struct pager *pg, const char *walpath, char *err, size_t errlen)
{
	unsigned char hdr[WAL_HEADER], fh[WAL_FRAME_HEADER], *page = NULL;
	uint32_t s[2] = {0, 0}, salt1, salt2;
	int64_t off, commit_end = 0, commit_pages = 0, frames = 0, committed = 0;
	int64_t *offs = NULL, *pending_pg = NULL;
	size_t npending = 0, cap = 0;
	int big;

	pg->walfd = open(walpath, O_RDONLY | O_CLOEXEC);
	if (pg->walfd < 0)
		return errno == ENOENT
		           ? 0
		           : (err_set(err, errlen, "%s: %s", walpath, strerror(errno)), -1);
	if (read_full(pg->walfd, hdr, sizeof(hdr), 0) < 0)
		return 0; /* empty or short: no frames */
	if ((be32(hdr) & 0xfffffffeu) != 0x377f0682u || be32(hdr + 8) != pg->page_size)
		return 0; /* not a WAL of this database: SQLite would ignore it too */
	big = be32(hdr) & 1;
	wal_checksum(big, hdr, 24, s);
	if (s[0] != be32(hdr + 24) || s[1] != be32(hdr + 28))
		return 0;
	salt1 = be32(hdr + 16);
	salt2 = be32(hdr + 20);
	page = malloc(pg->page_size);
	if (page == NULL)
		goto nomem;
	for (off = WAL_HEADER;; off += WAL_FRAME_HEADER + pg->page_size) {
		uint32_t pgno;

		if (read_full(pg->walfd, fh, sizeof(fh), off) < 0 ||
		    read_full(pg->walfd, page, pg->page_size, off + WAL_FRAME_HEADER) < 0)
			break;
		if (be32(fh + 8) != salt1 || be32(fh + 12) != salt2)
			break;
		wal_checksum(big, fh, 8, s);
		wal_checksum(big, page, pg->page_size, s);
		if (s[0] != be32(fh + 16) || s[1] != be32(fh + 20))
			break;
		pgno = be32(fh);
		if (pgno == 0)
			break;
		frames++;
		if (npending == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			int64_t *p = realloc(pending_pg, ncap * 2 * sizeof(*p));

			if (p == NULL)
				goto nomem;
			pending_pg = p;
			cap = ncap;
		}
		pending_pg[2 * npending] = pgno;
		pending_pg[2 * npending + 1] = off + WAL_FRAME_HEADER;
		npending++;
		if (be32(fh + 4) != 0) {
			/* A commit frame: the frames so far count. */
			commit_pages = be32(fh + 4);
			commit_end = (int64_t)npending;
			committed = frames;
		}
	}
	if (commit_end > 0) {
		int64_t maxpg = commit_pages;

		for (int64_t i = 0; i < commit_end; i++)
			if (pending_pg[2 * i] > maxpg)
				maxpg = pending_pg[2 * i];
		offs = calloc((size_t)maxpg + 1, sizeof(*offs));
		if (offs == NULL)
			goto nomem;
		for (int64_t i = 0; i < commit_end; i++)
			offs[pending_pg[2 * i]] = pending_pg[2 * i + 1];
		pg->wal_off = offs;
		pg->wal_pages = maxpg;
		pg->wal_frames = committed;
		pg->npages = commit_pages;
	}
	free(pending_pg);
	free(page);
	return 0;
nomem:
	free(pending_pg);
	free(page);
	free(offs);
	err_set(err, errlen, "out of memory reading %s", walpath);
	return -1;
}

/* Marks the pages of the free-page list (header offset 32: first trunk page, 36: count), which
 * may hold stale copies of rows. A damaged list is followed only while it makes sense. */
static void freelist_load(struct pager *pg, const unsigned char *page1, unsigned char *buf)
{
	int64_t trunk = be32(page1 + 32), left = be32(page1 + 36), guard = 0;
	uint32_t max_leaves = pg->usable / 4 - 2;

	while (trunk > 0 && trunk <= pg->npages && left > 0 && guard++ < pg->npages) {
		uint32_t n;

		if (pg->free[trunk] || read_page(pg, trunk, buf) < 0)
			break;
		pg->free[trunk] = 1;
		left--;
		n = be32(buf + 4);
		if (n > max_leaves)
			break;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t leaf = be32(buf + 8 + 4 * i);

			if (leaf > 0 && leaf <= pg->npages) {
				pg->free[leaf] = 1;
				left--;
			}
		}
		trunk = be32(buf);
	}
}

/* ---- decoding cells and records (fileformat2.html, "B-tree Pages", "Record Format") ---------- */

struct col {
	int type; /* SQLITE_NULL, SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB */
	int64_t i;
	double f;
	const unsigned char *p;
	size_t n;
};

/* Reads a varint at p (at most `n` bytes available). Returns its length, 0 if cut. */
static size_t varint(const unsigned char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	for (size_t i = 0; i < 9 && i < n; i++) {
		if (i == 8) {
			*out = (v << 8) | p[i];
			return 9;
		}
		v = (v << 7) | (p[i] & 0x7f);
		if ((p[i] & 0x80) == 0) {
			*out = v;
			return i + 1;
		}
	}
	return 0;
}

/* Decodes a record. Returns the number of columns, or -1 if it is not a well-formed record. */
static int record_decode(const unsigned char *p, size_t n, struct col *cols)
{
	uint64_t hsize, type;
	size_t h, body;
	int nc = 0;

	h = varint(p, n, &hsize);
	if (h == 0 || hsize > n || hsize < h)
		return -1;
	body = (size_t)hsize;
	while (h < hsize) {
		size_t len = varint(p + h, (size_t)hsize - h, &type), sz;
		struct col *c;

		if (len == 0 || nc == MAX_COLS)
			return -1;
		h += len;
		c = &cols[nc++];
		memset(c, 0, sizeof(*c));
		if (type == 0) {
			c->type = SQLITE_NULL;
			continue;
		}
		if (type == 8 || type == 9) {
			c->type = SQLITE_INTEGER;
			c->i = type == 9;
			continue;
		}
		if (type == 10 || type == 11)
			return -1;
		if (type <= 7) {
			static const size_t sizes[] = {0, 1, 2, 3, 4, 6, 8, 8};
			uint64_t v = 0;

			sz = sizes[type];
			if (body + sz > n)
				return -1;
			for (size_t i = 0; i < sz; i++)
				v = (v << 8) | p[body + i];
			if (type == 7) {
				c->type = SQLITE_FLOAT;
				memcpy(&c->f, &v, sizeof(c->f));
			} else {
				/* Sign-extend from sz bytes. */
				if (sz < 8 && (v >> (8 * sz - 1)) & 1)
					v |= ~0ULL << (8 * sz);
				c->type = SQLITE_INTEGER;
				c->i = (int64_t)v;
			}
			body += sz;
			continue;
		}
		sz = (size_t)((type - 12) / 2);
		if (sz > n || body + sz > n)
			return -1;
		c->type = (type & 1) ? SQLITE_TEXT : SQLITE_BLOB;
		c->p = p + body;
		c->n = sz;
		body += sz;
	}
	return body == n ? nc : -1;
}

static int is_int(const struct col *c)
{
	return c->type == SQLITE_INTEGER;
}

static int is_text(const struct col *c)
{
	return c->type == SQLITE_TEXT;
}

static int int_or_null(const struct col *c)
{
	return c->type == SQLITE_INTEGER || c->type == SQLITE_NULL;
}

/* A row is recognised by the layouts schema.c defines (spool_int.h): column 0 of files and
 * events is the rowid alias, stored as NULL; files have SPOOL_FILE_NCOLS columns in every schema;
 * an events row has the column count of one schema version (spool_event_layout). A row of any
 * version is taken into the new spool, which has the current one. */
static int looks_like_files(const struct col *c, int nc)
{
	enum spool_file_state state;

	if (nc != SPOOL_FILE_NCOLS || c[SPOOL_FC_ID].type != SQLITE_NULL ||
	    !is_text(&c[SPOOL_FC_UID]) || c[SPOOL_FC_UID].n == 0 || c[SPOOL_FC_UID].n >= 64 ||
	    !is_text(&c[SPOOL_FC_SOURCE]) || !is_text(&c[SPOOL_FC_PATH]) ||
	    !is_int(&c[SPOOL_FC_DEV]) || !is_int(&c[SPOOL_FC_INO]) ||
	    !is_int(&c[SPOOL_FC_FP_LEN]) || !is_text(&c[SPOOL_FC_STATE]) ||
	    spool_file_state_parse((const char *)c[SPOOL_FC_STATE].p, c[SPOOL_FC_STATE].n, &state) <
	        0)
		return 0;
	for (int i = SPOOL_FC_LINES; i < SPOOL_FILE_NCOLS; i++)
		if (!is_int(&c[i]))
			return 0;
	return is_int(&c[SPOOL_FC_OFFSET]) && is_int(&c[SPOOL_FC_CHECK_LEN]) &&
	       is_int(&c[SPOOL_FC_SIZE]);
}

/* The schema version whose events layout the row has, or 0 if it is not an event. */
static int64_t event_version(const struct col *c, int nc)
{
	const struct spool_event_layout *lay = NULL;
	int64_t v;

	for (v = 1; v <= SPOOL_SCHEMA_VERSION; v++) {
		lay = spool_event_layout(v);
		if (lay != NULL && lay->ncols == nc)
			break;
	}
	if (v > SPOOL_SCHEMA_VERSION || c[SPOOL_EC_ID].type != SQLITE_NULL ||
	    !is_int(&c[SPOOL_EC_FILE_ID]) || !is_int(&c[SPOOL_EC_LINE_OFFSET]) ||
	    !is_int(&c[SPOOL_EC_TIMESTAMP]) || !is_int(&c[SPOOL_EC_STATE]) ||
	    c[SPOOL_EC_STATE].i < 0 || c[SPOOL_EC_STATE].i > (int64_t)lay->max_state ||
	    !is_int(&c[SPOOL_EC_ATTEMPTS]) ||
	    !(is_text(&c[SPOOL_EC_LAST_ERROR]) || c[SPOOL_EC_LAST_ERROR].type == SQLITE_NULL) ||
	    !int_or_null(&c[SPOOL_EC_CREATED]) || !int_or_null(&c[SPOOL_EC_DELIVERED_AT]) ||
	    !int_or_null(&c[SPOOL_EC_UPDATED]))
		return 0;
	if (nc > SPOOL_EC_KEY_GENERATION &&
	    (!is_int(&c[SPOOL_EC_KEY_GENERATION]) || c[SPOOL_EC_KEY_GENERATION].i < 0))
		return 0;
	if (nc > SPOOL_EC_FIRST_UNKNOWN && !int_or_null(&c[SPOOL_EC_FIRST_UNKNOWN]))
		return 0;
	for (int i = SPOOL_EC_RULE; i <= SPOOL_EC_VALUE; i++)
		if (!is_text(&c[i]))
			return 0;
	return c[SPOOL_EC_IDENTIFIER].n > 0 && c[SPOOL_EC_IDENTIFIER].n < 101 ? v : 0;
}

/* Schema 5's rows (schema.c): column 0 of batches, outcomes, rules and deliveries is the rowid
 * alias, stored as NULL; the queue's row has three integers. */
static int looks_like_batch(const struct col *c, int nc)
{
	if (nc != SPOOL_BATCH_NCOLS || c[SPOOL_BC_ID].type != SQLITE_NULL ||
	    c[SPOOL_BC_EVENTS].type != SQLITE_BLOB || c[SPOOL_BC_EVENTS].n == 0)
		return 0;
	for (int i = SPOOL_BC_N; i < SPOOL_BC_EVENTS; i++)
		if (!is_int(&c[i]))
			return 0;
	return c[SPOOL_BC_N].i > 0;
}

static int looks_like_outcome(const struct col *c, int nc)
{
	return nc == SPOOL_OUTCOME_NCOLS && c[SPOOL_OC_ID].type == SQLITE_NULL &&
	       is_int(&c[SPOOL_OC_STATE]) && c[SPOOL_OC_STATE].i >= EVENT_PENDING &&
	       c[SPOOL_OC_STATE].i <= EVENT_UNSURE && is_int(&c[SPOOL_OC_ATTEMPTS]) &&
	       is_int(&c[SPOOL_OC_KEY_GENERATION]) && int_or_null(&c[SPOOL_OC_FIRST_UNKNOWN]) &&
	       (is_text(&c[SPOOL_OC_LAST_ERROR]) || c[SPOOL_OC_LAST_ERROR].type == SQLITE_NULL) &&
	       (is_text(&c[SPOOL_OC_CUSTOMER]) || c[SPOOL_OC_CUSTOMER].type == SQLITE_NULL) &&
	       (is_text(&c[SPOOL_OC_IDENTIFIER]) || c[SPOOL_OC_IDENTIFIER].type == SQLITE_NULL) &&
	       is_int(&c[SPOOL_OC_QUEUE_SEQ]) && is_int(&c[SPOOL_OC_UPDATED]) &&
	       int_or_null(&c[SPOOL_OC_DELIVERED_AT]);
}

static int looks_like_rule(const struct col *c, int nc)
{
	if (nc != SPOOL_RULE_NCOLS || c[SPOOL_RC_ID].type != SQLITE_NULL)
		return 0;
	for (int i = SPOOL_RC_INSTANCE; i < SPOOL_RULE_NCOLS; i++)
		if (!is_text(&c[i]))
			return 0;
	return 1;
}

/* A window row (enum spool_window_col): column 0 is the rowid alias, stored as NULL. */
static int looks_like_window(const struct col *c, int nc)
{
	static const int texts[] = {SPOOL_WC_RULE,
	                            SPOOL_WC_CUSTOMER,
	                            SPOOL_WC_CUSTOMER_KEY,
	                            SPOOL_WC_EVENT_NAME,
	                            SPOOL_WC_PAYLOAD_CUSTOMER_KEY,
	                            SPOOL_WC_PAYLOAD_VALUE_KEY,
	                            SPOOL_WC_TOTAL};
	static const int ints[] = {SPOOL_WC_START, SPOOL_WC_LENGTH, SPOOL_WC_CLOSE_AFTER,
	                           SPOOL_WC_LINES, SPOOL_WC_LATE,   SPOOL_WC_FILE_ID,
	                           SPOOL_WC_STATE, SPOOL_WC_CREATED};

	if (nc != SPOOL_WINDOW_NCOLS || c[SPOOL_WC_ID].type != SQLITE_NULL)
		return 0;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		if (!is_text(&c[texts[i]]))
			return 0;
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		if (!is_int(&c[ints[i]]))
			return 0;
	return c[SPOOL_WC_LENGTH].i > 0 && c[SPOOL_WC_LINES].i >= 0 &&
	       (c[SPOOL_WC_STATE].i == 0 || c[SPOOL_WC_STATE].i == 1) &&
	       int_or_null(&c[SPOOL_WC_EVENT_ID]) && int_or_null(&c[SPOOL_WC_CLOSED_AT]);
}

/* A window_lines record (enum spool_window_line_col), read from an index b-tree page. */
static int looks_like_window_line(const struct col *c, int nc)
{
	return nc == SPOOL_WINDOW_LINE_NCOLS && is_int(&c[SPOOL_LC_FILE_ID]) &&
	       is_int(&c[SPOOL_LC_LINE_OFFSET]) && is_text(&c[SPOOL_LC_RULE]) &&
	       is_int(&c[SPOOL_LC_WINDOW_ID]) && is_text(&c[SPOOL_LC_VALUE]) &&
	       is_int(&c[SPOOL_LC_TIMESTAMP]) && is_int(&c[SPOOL_LC_LATE]);
}

/* An entry of the windows' unique index (rule, customer, start) with the window's id: the only
 * index of the spool whose records are text, text, integer, integer (schema.c). A window's row
 * lost with a damaged page may leave its entry on a page of the index, which names it. */
static int looks_like_window_key(const struct col *c, int nc)
{
	return nc == 4 && is_text(&c[0]) && is_text(&c[1]) && is_int(&c[2]) && is_int(&c[3]);
}

static int looks_like_delivery(const struct col *c, int nc)
{
	return nc == SPOOL_DELIVERY_NCOLS && c[0].type == SQLITE_NULL && is_int(&c[1]) &&
	       is_int(&c[2]);
}

static int looks_like_queue(const struct col *c, int nc)
{
	return nc == SPOOL_QUEUE_NCOLS && is_int(&c[0]) && is_int(&c[1]) && is_int(&c[2]) &&
	       c[0].i >= 1 && c[1].i >= 0 && c[2].i >= 0;
}

/* ---- writing the new database ---------------------------------------------------------------- */

struct builder {
	sqlite3 *db;
	int64_t version; /* of the old spool: events of an older layout are taken only from one */
	sqlite3_stmt *ins_event, *find_event, *del_event;
	sqlite3_stmt *ins_file, *find_file, *del_file;
	sqlite3_stmt *ins_meta;
	sqlite3_stmt *ins_batch, *find_batch, *del_batch;
	sqlite3_stmt *ins_outcome, *find_outcome, *del_outcome;
	sqlite3_stmt *ins_rule, *find_rule, *del_rule;
	sqlite3_stmt *ins_delivery, *find_delivery, *del_delivery;
	sqlite3_stmt *ins_queue;
	sqlite3_stmt *ins_window, *find_window, *del_window, *ins_window_line;
	sqlite3_stmt *ins_window_key;
	struct spool_recover_stats *st;
};

static void bind_col(sqlite3_stmt *s, int idx, const struct col *c)
{
	switch (c->type) {
	case SQLITE_INTEGER:
		sqlite3_bind_int64(s, idx, c->i);
		break;
	case SQLITE_FLOAT:
		sqlite3_bind_double(s, idx, c->f);
		break;
	case SQLITE_TEXT:
		sqlite3_bind_text(s, idx, (const char *)c->p, (int)c->n, SQLITE_TRANSIENT);
		break;
	case SQLITE_BLOB:
		sqlite3_bind_blob(s, idx, c->p, (int)c->n, SQLITE_TRANSIENT);
		break;
	default:
		sqlite3_bind_null(s, idx);
	}
}

static int step_done(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc;
}

/* Inserts a row (cols[0] replaced by the rowid); on a conflict with copies already taken, keeps
 * whichever has the newest `updated` (column `upd`). `find` takes ?1 rowid and the unique key
 * columns `key` (1-based bind positions ?2.. from cols indexes). Returns 1 inserted, 0 dropped as
 * older, -1 on a database error. */
static int put_row(struct builder *b, sqlite3_stmt *ins, sqlite3_stmt *find, sqlite3_stmt *del,
                   int64_t rowid, const struct col *cols, int nc, int upd, const int *key, int nkey)
{
	int rc;

	sqlite3_bind_int64(ins, 1, rowid);
	for (int i = 1; i < nc; i++)
		bind_col(ins, i + 1, &cols[i]);
	rc = step_done(ins);
	if (rc == SQLITE_DONE)
		return 1;
	if ((rc & 0xff) != SQLITE_CONSTRAINT)
		return -1;
	/* A second copy of the row (a page SQLite had moved it from): the newer one wins. */
	b->st->duplicates++;
	sqlite3_bind_int64(find, 1, rowid);
	for (int k = 0; k < nkey; k++)
		bind_col(find, k + 2, &cols[key[k]]);
	int newer = 1, n_old = 0;
	int64_t old_ids[4];

	while ((rc = sqlite3_step(find)) == SQLITE_ROW) {
		int64_t old_upd = sqlite3_column_int64(find, 1);
		int64_t new_upd = upd >= 0 && cols[upd].type == SQLITE_INTEGER ? cols[upd].i : 0;

		if (old_upd >= new_upd)
			newer = 0;
		if (n_old < 4)
			old_ids[n_old++] = sqlite3_column_int64(find, 0);
	}
	sqlite3_reset(find);
	sqlite3_clear_bindings(find);
	if (rc != SQLITE_DONE)
		return -1;
	if (!newer)
		return 0;
	for (int i = 0; i < n_old; i++) {
		sqlite3_bind_int64(del, 1, old_ids[i]);
		if (step_done(del) != SQLITE_DONE)
			return -1;
	}
	sqlite3_bind_int64(ins, 1, rowid);
	for (int i = 1; i < nc; i++)
		bind_col(ins, i + 1, &cols[i]);
	rc = step_done(ins);
	return rc == SQLITE_DONE ? 1 : ((rc & 0xff) == SQLITE_CONSTRAINT ? 0 : -1);
}

static int take_record(struct builder *b, int64_t rowid, const unsigned char *pl, size_t n)
{
	static const int event_key[] = {SPOOL_EC_FILE_ID, SPOOL_EC_LINE_OFFSET, SPOOL_EC_RULE};
	static const int file_key[] = {SPOOL_FC_UID};
	struct col cols[MAX_COLS + 1]; /* one more for a window's progress */
	int nc = record_decode(pl, n, cols), r;

	if (nc == 2 && is_text(&cols[0]) && is_text(&cols[1])) {
		bind_col(b->ins_meta, 1, &cols[0]);
		bind_col(b->ins_meta, 2, &cols[1]);
		r = step_done(b->ins_meta);
		if (r != SQLITE_DONE)
			return -1;
		if (sqlite3_changes(b->db) > 0)
			b->st->meta++;
		return 0;
	}
	if (nc > 0 && looks_like_files(cols, nc)) {
		r = put_row(b, b->ins_file, b->find_file, b->del_file, rowid, cols, nc,
		            SPOOL_FC_UPDATED, file_key, 1);
		return r < 0 ? -1 : 0;
	}
	/* Rows of an older layout in a spool of schema 5 are stale copies its migration left. */
	if (nc > 0 && b->version < SPOOL_SCHEMA_VERSION && event_version(cols, nc) > 0) {
		r = put_row(b, b->ins_event, b->find_event, b->del_event, rowid, cols, nc,
		            SPOOL_EC_UPDATED, event_key, 3);
		return r < 0 ? -1 : 0;
	}
	/* file_extra's rows (store/extra.c: 3 columns, the first the rowid alias, the last a blob
	 * or NULL, unlike a row of deliveries) are left behind on purpose: head marks and UTF-8
	 * counts bill nothing, and the rebuilt spool starts them anew. */
	if (nc == 3 && cols[0].type == SQLITE_NULL && is_int(&cols[1]) &&
	    (cols[2].type == SQLITE_BLOB || cols[2].type == SQLITE_NULL))
		return 0;
	/* file_torn's rows (2 columns, the rowid alias and a count), and file_realdir's (the rowid
	 * alias and a directory: found again at the next read through the link), likewise. */
	if (nc == 2 && cols[0].type == SQLITE_NULL && (is_int(&cols[1]) || is_text(&cols[1])))
		return 0;
	if (nc > 0 && looks_like_batch(cols, nc)) {
		r = put_row(b, b->ins_batch, b->find_batch, b->del_batch, rowid, cols, nc,
		            SPOOL_BC_CREATED, NULL, 0);
		return r < 0 ? -1 : 0;
	}
	if (nc > 0 && looks_like_outcome(cols, nc)) {
		r = put_row(b, b->ins_outcome, b->find_outcome, b->del_outcome, rowid, cols, nc,
		            SPOOL_OC_UPDATED, NULL, 0);
		return r < 0 ? -1 : 0;
	}
	if (nc > 0 && looks_like_rule(cols, nc)) {
		static const int rule_key[] = {SPOOL_RC_INSTANCE, SPOOL_RC_RULE,
		                               SPOOL_RC_EVENT_NAME, SPOOL_RC_PAYLOAD_CUSTOMER_KEY,
		                               SPOOL_RC_PAYLOAD_VALUE_KEY};

		r = put_row(b, b->ins_rule, b->find_rule, b->del_rule, rowid, cols, nc, -1,
		            rule_key, 5);
		return r < 0 ? -1 : 0;
	}
	if (nc > 0 && looks_like_window(cols, nc)) {
		static const int window_key[] = {SPOOL_WC_RULE, SPOOL_WC_CUSTOMER, SPOOL_WC_START};

		/* Of two copies, the one further on: more lines, or closed (its meter event may
		 * be out already; an open copy would close it again under the same identifier). */
		cols[nc].type = SQLITE_INTEGER;
		cols[nc].i = cols[SPOOL_WC_LINES].i * 2 + cols[SPOOL_WC_STATE].i;
		r = put_row(b, b->ins_window, b->find_window, b->del_window, rowid, cols, nc, nc,
		            window_key, 3);
		return r < 0 ? -1 : 0;
	}
	if (nc > 0 && looks_like_delivery(cols, nc)) {
		r = put_row(b, b->ins_delivery, b->find_delivery, b->del_delivery, rowid, cols, nc,
		            2, NULL, 0);
		return r < 0 ? -1 : 0;
	}
	if (nc > 0 && looks_like_queue(cols, nc)) {
		for (int i = 0; i < 3; i++)
			bind_col(b->ins_queue, i + 1, &cols[i]);
		return step_done(b->ins_queue) == SQLITE_DONE ? 0 : -1;
	}
	/* sqlite_schema rows (5 columns) and anything else are not spool rows. */
	if (nc != 5)
		b->st->cells_skipped++;
	return 0;
}

/* An index record: only window_lines' rows (a WITHOUT ROWID table is an index b-tree) are
 * spool rows; the entries of the indexes proper are made anew from the tables, except that
 * those of the windows' unique index are noted, to name the windows whose rows were lost. */
static int take_index_record(struct builder *b, const unsigned char *pl, size_t n)
{
	struct col cols[MAX_COLS];
	int nc = record_decode(pl, n, cols);

	if (nc > 0 && looks_like_window_key(cols, nc)) {
		for (int i = 0; i < nc; i++)
			bind_col(b->ins_window_key, i + 1, &cols[i]);
		return step_done(b->ins_window_key) == SQLITE_DONE ? 0 : -1;
	}
	if (nc <= 0 || !looks_like_window_line(cols, nc))
		return 0;
	for (int i = 0; i < nc; i++)
		bind_col(b->ins_window_line, i + 1, &cols[i]);
	return step_done(b->ins_window_line) == SQLITE_DONE ? 0 : -1;
}

/* Reads every cell of a table leaf page (type 0x0d), or of an index page (0x0a leaf, 0x02
 * interior: both hold records), following overflow chains (fileformat2.html, "B-tree Pages"). */
static int scan_cells(struct builder *b, const struct pager *pg, int64_t pgno,
                      const unsigned char *page, unsigned char *ovf, unsigned char *payload)
{
	size_t hdr = pgno == 1 ? 100 : 0, U = pg->usable;
	int type = page[hdr], table = type == 0x0d;
	size_t head = type == 0x02 ? 12 : 8, child = type == 0x02 ? 4 : 0;
	uint32_t ncells = be16(page + hdr + 3);
	size_t X = table ? U - 35 : ((U - 12) * 64 / 255) - 23, M = ((U - 12) * 32 / 255) - 23;

	if (hdr + head + 2 * (size_t)ncells > U)
		return 0;
	for (uint32_t i = 0; i < ncells; i++) {
		size_t ptr = be16(page + hdr + head + 2 * i), k, k2 = 0, local, got;
		uint64_t P, rowid = 0;

		if (ptr < hdr + head || ptr + child >= U) {
			b->st->cells_skipped++;
			continue;
		}
		ptr += child;
		k = varint(page + ptr, U - ptr, &P);
		if (k == 0 || P > MAX_PAYLOAD) {
			b->st->cells_skipped++;
			continue;
		}
		if (table && (k2 = varint(page + ptr + k, U - ptr - k, &rowid)) == 0) {
			b->st->cells_skipped++;
			continue;
		}
		ptr += k + k2;
		if (P <= X) {
			local = (size_t)P;
		} else {
			size_t K = M + (size_t)((P - M) % (U - 4));

			local = K <= X ? K : M;
		}
		if (ptr + local + (local < P ? 4 : 0) > U) {
			b->st->cells_skipped++;
			continue;
		}
		memcpy(payload, page + ptr, local);
		got = local;
		if (local < P) {
			int64_t next = be32(page + ptr + local), hops = 0;

			while (got < P && next > 0 && hops++ < pg->npages &&
			       read_page(pg, next, ovf) == 0) {
				size_t take = U - 4 < P - got ? U - 4 : (size_t)(P - got);

				memcpy(payload + got, ovf + 4, take);
				got += take;
				next = be32(ovf);
			}
			if (got < P) {
				b->st->cells_skipped++;
				continue;
			}
		}
		if ((table ? take_record(b, (int64_t)rowid, payload, (size_t)P)
		           : take_index_record(b, payload, (size_t)P)) < 0)
			return -1;
	}
	return 0;
}

/* Schema 3's events table, into which `spool recover` puts the events it finds in an older
 * spool, for spool_migrate_events to move into batches as the migration would. */
#define LEGACY_EVENTS "legacy_events"

static int builder_prepare(struct builder *b)
{
	/* put_row binds column k of a row (enum spool_event_col, spool_file_col...) to ?k+1, so
	 * the inserts name the columns in record order; a row of an older schema leaves the
	 * columns it lacks unbound (NULL). */
	_Static_assert(SPOOL_EVENT_NCOLS == 21 && SPOOL_SCHEMA_VERSION == 5,
	               "the inserts below name every column of the current layouts");
	static const char *const sql[] = {
	    "INSERT INTO " LEGACY_EVENTS "(id, file_id, line_offset, rule, identifier, event_name,"
	    " payload_customer_key, payload_value_key, customer_key, customer, value, timestamp,"
	    " state, attempts, last_error, created, delivered_at, updated, key_generation,"
	    " first_unknown, queue_seq)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, "
	    "?18, coalesce(?19, 0), ?20, coalesce(?21, ?1))",
	    "SELECT id, coalesce(updated, 0) FROM " LEGACY_EVENTS " WHERE id = ?1"
	    " OR (file_id = ?2 AND line_offset = ?3 AND rule = ?4)",
	    "DELETE FROM " LEGACY_EVENTS " WHERE id = ?1",
	    "INSERT INTO files(id, uid, source, path, dev, ino, fp_len, fp_hash, \"offset\","
	    " check_len, check_hash, size, state, lines, matched, unmatched, invalid, long_lines,"
	    " nul_bytes, events, resets, first_seen, updated)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
	    " ?18, ?19, ?20, ?21, ?22, ?23)",
	    "SELECT id, updated FROM files WHERE id = ?1 OR uid = ?2",
	    "DELETE FROM files WHERE id = ?1",
	    "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
	    "INSERT INTO batches(" SPOOL_BATCH_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	    "SELECT id, created FROM batches WHERE id = ?1",
	    "DELETE FROM batches WHERE id = ?1",
	    "INSERT INTO outcomes(" SPOOL_OUTCOME_COLUMNS ")"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	    "SELECT id, updated FROM outcomes WHERE id = ?1",
	    "DELETE FROM outcomes WHERE id = ?1",
	    "INSERT INTO rules(id, instance, rule, event_name, payload_customer_key,"
	    " payload_value_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	    "SELECT id, 0 FROM rules WHERE id = ?1 OR (instance = ?2 AND rule = ?3 AND"
	    " event_name = ?4 AND payload_customer_key = ?5 AND payload_value_key = ?6)",
	    "DELETE FROM rules WHERE id = ?1",
	    "INSERT INTO deliveries(through, first_at, last_at) VALUES (?1, ?2, ?3)",
	    "SELECT through, last_at FROM deliveries WHERE through = ?1",
	    "DELETE FROM deliveries WHERE through = ?1",
	    /* Of several copies of the queue's row, the furthest of each: nothing given twice. */
	    "UPDATE queue SET next_id = max(next_id, ?1), shift = max(shift, ?2),"
	    " delivered_through = max(delivered_through, ?3)",
	    "INSERT INTO windows(id, rule, customer, customer_key, event_name,"
	    " payload_customer_key, payload_value_key, start, length, close_after, total, lines,"
	    " late, file_id, state, event_id, created, closed_at)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
	    " ?18)",
	    "SELECT id, lines * 2 + (state != 0) FROM windows WHERE id = ?1"
	    " OR (rule = ?2 AND customer = ?3 AND start = ?4)",
	    "DELETE FROM windows WHERE id = ?1",
	    /* A line's row never changes: any copy is as good as another. */
	    "INSERT INTO window_lines(file_id, line_offset, rule, window_id, value, timestamp,"
	    " late) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
	    "INSERT OR IGNORE INTO temp.window_keys(rule, customer, start, id)"
	    " VALUES (?1, ?2, ?3, ?4)",
	};
	sqlite3_stmt **out[] = {
	    &b->ins_event,     &b->find_event,    &b->del_event,    &b->ins_file,
	    &b->find_file,     &b->del_file,      &b->ins_meta,     &b->ins_batch,
	    &b->find_batch,    &b->del_batch,     &b->ins_outcome,  &b->find_outcome,
	    &b->del_outcome,   &b->ins_rule,      &b->find_rule,    &b->del_rule,
	    &b->ins_delivery,  &b->find_delivery, &b->del_delivery, &b->ins_queue,
	    &b->ins_window,    &b->find_window,   &b->del_window,   &b->ins_window_line,
	    &b->ins_window_key};

	_Static_assert(sizeof(sql) / sizeof(sql[0]) == sizeof(out) / sizeof(out[0]),
	               "one statement per slot");

	if (sqlite3_exec(b->db,
	                 "CREATE TEMP TABLE window_keys(rule TEXT, customer TEXT, start INTEGER,"
	                 " id INTEGER, PRIMARY KEY (rule, customer, start, id))",
	                 NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++)
		if (sqlite3_prepare_v2(b->db, sql[i], -1, out[i], NULL) != SQLITE_OK)
			return -1;
	return 0;
}

/* Finalizes the statements (before COMMIT and close); safe to call twice. */
static void builder_finalize(struct builder *b)
{
	sqlite3_stmt **all[] = {
	    &b->ins_event,     &b->find_event,    &b->del_event,    &b->ins_file,
	    &b->find_file,     &b->del_file,      &b->ins_meta,     &b->ins_batch,
	    &b->find_batch,    &b->del_batch,     &b->ins_outcome,  &b->find_outcome,
	    &b->del_outcome,   &b->ins_rule,      &b->find_rule,    &b->del_rule,
	    &b->ins_delivery,  &b->find_delivery, &b->del_delivery, &b->ins_queue,
	    &b->ins_window,    &b->find_window,   &b->del_window,   &b->ins_window_line,
	    &b->ins_window_key};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		sqlite3_finalize(*all[i]);
		*all[i] = NULL;
	}
}

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		err_set(err, errlen, "building the new spool: %s: %s", sql, msg ? msg : "?");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* ---- spool recover ------------------------------------------------------------------------- */

/* Whether another process holds one of SQLite's POSIX locks on `path` in [start, start+len). */
static int locked_by_other(const char *path, off_t start, off_t len, pid_t *pid)
{
	struct flock fl;
	int fd = open(path, O_RDONLY | O_CLOEXEC), held = 0;

	if (fd < 0)
		return 0;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = start;
	fl.l_len = len;
	if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
		held = 1;
		*pid = fl.l_pid;
	}
	close(fd);
	return held;
}

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC), rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[4096 + 300];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* Reads the old database `db_path` (and its WAL) page by page into the open new database. */
static int recover_rows(const char *db_path, struct builder *b, char *err, size_t errlen)
{
	struct pager pg;
	unsigned char hdr[100], *page = NULL, *ovf = NULL, *payload = NULL;
	char walpath[4096 + 16];
	struct stat sb;
	int64_t version, header_pages;
	uint32_t ps;
	int ret = -1;

	memset(&pg, 0, sizeof(pg));
	pg.walfd = -1;
	pg.fd = open(db_path, O_RDONLY | O_CLOEXEC);
	if (pg.fd < 0 || fstat(pg.fd, &sb) < 0) {
		err_set(err, errlen, "%s: %s", db_path, strerror(errno));
		goto out;
	}
	if (read_full(pg.fd, hdr, sizeof(hdr), 0) < 0 || memcmp(hdr, "SQLite format 3", 16) != 0) {
		err_set(
		    err, errlen,
		    "%s is not an SQLite database (no SQLite header): there is nothing to recover "
		    "from it; see docs/spool.md for starting with a new spool",
		    db_path);
		goto out;
	}
	ps = be16(hdr + 16);
	ps = ps == 1 ? 65536 : ps;
	if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0 || hdr[20] > 64) {
		err_set(err, errlen, "%s: the database header is damaged (page size %u)", db_path,
		        ps);
		goto out;
	}
	pg.page_size = ps;
	pg.usable = ps - hdr[20];
	pg.file_pages = sb.st_size / ps;
	header_pages = be32(hdr + 28);
	pg.npages = header_pages > pg.file_pages ? header_pages : pg.file_pages;
	if ((size_t)snprintf(walpath, sizeof(walpath), "%s-wal", db_path) >= sizeof(walpath)) {
		err_set(err, errlen, "%s: path too long", db_path);
		goto out;
	}
	if (wal_load(&pg, walpath, err, errlen) < 0)
		goto out;
	b->st->wal_frames = pg.wal_frames;
	b->st->pages = pg.npages;
	page = malloc(ps);
	ovf = malloc(ps);
	payload = malloc(MAX_PAYLOAD);
	pg.free = calloc((size_t)pg.npages + 1, 1);
	if (page == NULL || ovf == NULL || payload == NULL || pg.free == NULL) {
		err_set(err, errlen, "out of memory recovering %s", db_path);
		goto out;
	}
	/* Page 1 as the WAL left it: the schema version and the free-page list. */
	if (read_page(&pg, 1, page) < 0) {
		err_set(err, errlen, "%s: page 1 cannot be read", db_path);
		goto out;
	}
	version = be32(page + 60);
	b->version = version;
	if (version > SPOOL_SCHEMA_VERSION) {
		err_set(err, errlen,
		        "%s has schema version %" PRId64
		        ", newer than this logmeter understands (%d): "
		        "recover it with the logmeter that wrote it",
		        db_path, version, SPOOL_SCHEMA_VERSION);
		goto out;
	}
	freelist_load(&pg, page, ovf);
	for (int64_t p = 1; p <= pg.npages; p++) {
		size_t h = p == 1 ? 100 : 0;

		if (pg.free[p]) {
			b->st->pages_free++;
			continue;
		}
		if ((p - 1) * (int64_t)ps == LOCK_BYTE_OFFSET)
			continue;
		if (read_page(&pg, p, page) < 0) {
			b->st->pages_unreadable++;
			continue;
		}
		switch (page[h]) {
		case 0x0d:
		case 0x0a:
		case 0x02:
			if (scan_cells(b, &pg, p, page, ovf, payload) < 0) {
				err_set(err, errlen, "writing the new spool: %s",
				        sqlite3_errmsg(b->db));
				goto out;
			}
			break;
		case 0x05:
			break; /* table interior pages: the rows are on the leaves */
		default:
			/* Overflow pages and garbage alike; overflow pages are read through their
			 * cells. */
			break;
		}
	}
	ret = 0;
out:
	if (pg.fd >= 0)
		close(pg.fd);
	if (pg.walfd >= 0)
		close(pg.walfd);
	free(pg.wal_off);
	free(pg.free);
	free(page);
	free(ovf);
	free(payload);
	return ret;
}

/* Files whose records were lost keep a placeholder, "gone", that no real file matches (its
 * source is ""): the events of such a file cannot get their identifiers (the uid is part of
 * them), so those not delivered yet become dead letters rather than be sent under new ones. */
static int placeholders(sqlite3 *db, int64_t now, struct spool_recover_stats *st, char *err,
                        size_t errlen)
{
	char sql[1024];

	snprintf(sql, sizeof(sql),
	         "INSERT INTO files(id, uid, source, path, dev, ino, state, first_seen, updated)"
	         " SELECT DISTINCT file_id, printf('lost%%028d', file_id), '',"
	         " printf('(lost file record %%d)', file_id), 0, 0, '%s', %" PRId64 ", %" PRId64
	         " FROM (SELECT file_id FROM batches UNION SELECT file_id FROM " LEGACY_EVENTS
	         " UNION SELECT file_id FROM windows UNION SELECT file_id FROM window_lines)"
	         " WHERE file_id NOT IN (SELECT id FROM files)",
	         spool_file_state_name(SPOOL_FILE_GONE), now, now);
	if (exec_sql(db, sql, err, errlen) < 0)
		return -1;
	st->lost_files = sqlite3_changes(db);
	return 0;
}

/* Keeps in the new spool's meta (SPOOL_RECOVER_LOSS_KEY) that this recovery lost the usage of
 * windows, added to what an earlier one lost, so that `status` says so after recover's output is
 * gone. Returns 0 or -1. */
static int record_loss(struct spool *sp, int64_t now, const struct spool_recover_stats *st,
                       char *err, size_t errlen)
{
	char v[128];
	int64_t when = 0, windows = 0, lines = 0, unknown = 0;

	if (st->windows_lost_open == 0)
		return 0;
	if (spool_recover_loss(sp, &when, &windows, &lines, &unknown, err, errlen) < 0)
		return -1;
	snprintf(v, sizeof(v), "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64, now,
	         windows + st->windows_lost_open, lines + st->window_lines_lost,
	         unknown + st->windows_lost_unknown);
	return spool_meta_put(sp, SPOOL_RECOVER_LOSS_KEY, v, err, errlen);
}

/* Appends `text` to st->windows_lost_detail (cut at its end). */
static void detail_add(struct spool_recover_stats *st, const char *text)
{
	size_t used = strlen(st->windows_lost_detail);

	if (used + 1 < sizeof(st->windows_lost_detail))
		snprintf(st->windows_lost_detail + used, sizeof(st->windows_lost_detail) - used,
		         "%s", text);
}

/* How many customers, and files, windows_lost names at most. */
#define LOST_CUSTOMERS_MAX 64
#define LOST_FILES_MAX 8

/* Finds the aggregation windows whose rows were lost, before finish() drops their lines: those
 * the windows' unique index still names (rule, customer, start, id) without a row, and those
 * only their lines name (window_id without a row: the customer is in the row alone). A window
 * whose meter event survives (a batch at line offset minus its id) was closed: its usage is in
 * that event. One with lines but no meter event was open, or closed with its event lost too:
 * the usage of those lines is lost, since their files' checkpoints are past them. One with
 * neither is most often closed and billed, its event pruned after delivered_retention and its
 * lines with it (its row stays 36 days), but may have had its lines lost as well: nothing left
 * tells which, and naming its customer to bill by hand could bill it twice, so it is counted
 * apart (windows_lost_unknown). Fills st->windows_lost* and window_lines_lost; -1 on a
 * database error. */
static int windows_lost(sqlite3 *db, struct spool_recover_stats *st, char *err, size_t errlen)
{
	sqlite3_stmt *q = NULL;
	char buf[512], esc[320];
	int64_t n = 0, unknown = 0;
	int rc, ret = -1;

	if (exec_sql(db,
	             "CREATE TEMP TABLE lost AS SELECT id, rule, customer, start,"
	             " id IN (SELECT -first_offset FROM batches WHERE first_offset < 0) AS closed,"
	             " (SELECT count(*) FROM window_lines l WHERE l.window_id = x.id"
	             " AND x.id NOT IN (SELECT id FROM windows)) AS lines"
	             " FROM (SELECT k.id AS id, k.rule AS rule, k.customer AS customer,"
	             " k.start AS start FROM temp.window_keys k WHERE NOT EXISTS"
	             " (SELECT 1 FROM windows w WHERE w.rule = k.rule AND w.customer = k.customer"
	             " AND w.start = k.start)"
	             " UNION SELECT DISTINCT window_id, rule, NULL, NULL FROM window_lines"
	             " WHERE window_id NOT IN (SELECT id FROM windows)"
	             " AND window_id NOT IN (SELECT id FROM temp.window_keys)) x",
	             err, errlen) < 0)
		return -1;
	rc = sqlite3_prepare_v2(db,
	                        "SELECT count(*), coalesce(sum(NOT closed AND lines > 0), 0),"
	                        " coalesce(sum(CASE WHEN closed THEN 0 ELSE lines END), 0),"
	                        " coalesce(sum(NOT closed AND lines > 0 AND customer IS NULL), 0),"
	                        " coalesce(sum(NOT closed AND lines = 0), 0) FROM temp.lost",
	                        -1, &q, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		st->windows_lost = sqlite3_column_int64(q, 0);
		st->windows_lost_open = sqlite3_column_int64(q, 1);
		st->window_lines_lost = sqlite3_column_int64(q, 2);
		unknown = sqlite3_column_int64(q, 3);
		st->windows_lost_unknown = sqlite3_column_int64(q, 4);
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(q);
	q = NULL;
	if (rc != SQLITE_DONE)
		goto fail;
	if (st->windows_lost_open == 0) {
		ret = 0;
		goto out;
	}
	/* Which customers, and where the lines are: enough to bill them by hand. */
	rc = sqlite3_prepare_v2(db,
	                        "SELECT customer, count(*) FROM temp.lost WHERE NOT closed"
	                        " AND lines > 0 AND customer IS NOT NULL GROUP BY customer"
	                        " ORDER BY customer",
	                        -1, &q, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *c = (const char *)sqlite3_column_text(q, 0);
		int64_t w = sqlite3_column_int64(q, 1);

		rc = SQLITE_OK;
		if (n++ >= LOST_CUSTOMERS_MAX)
			continue;
		log_escape(esc, sizeof(esc), c != NULL ? c : "");
		if (w > 1)
			snprintf(buf, sizeof(buf), "%s%s (%" PRId64 " windows)",
			         n > 1 ? ", " : "customers ", esc, w);
		else
			snprintf(buf, sizeof(buf), "%s%s", n > 1 ? ", " : "customers ", esc);
		detail_add(st, buf);
	}
	sqlite3_finalize(q);
	q = NULL;
	if (rc != SQLITE_DONE)
		goto fail;
	if (n > LOST_CUSTOMERS_MAX) {
		snprintf(buf, sizeof(buf), " and %" PRId64 " more customers",
		         n - LOST_CUSTOMERS_MAX);
		detail_add(st, buf);
	}
	if (unknown > 0) {
		snprintf(buf, sizeof(buf),
		         "%s%" PRId64 " windows whose customers are unknown (only their lines "
		         "survive)",
		         n > 0 ? "; " : "", unknown);
		detail_add(st, buf);
	}
	n = 0;
	rc = sqlite3_prepare_v2(db,
	                        "SELECT f.path, count(*), min(l.line_offset), max(l.line_offset)"
	                        " FROM window_lines l JOIN files f ON f.id = l.file_id"
	                        " WHERE l.window_id IN (SELECT id FROM temp.lost WHERE NOT closed)"
	                        " AND l.window_id NOT IN (SELECT id FROM windows)"
	                        " GROUP BY l.file_id ORDER BY f.path",
	                        -1, &q, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *path = (const char *)sqlite3_column_text(q, 0);

		rc = SQLITE_OK;
		if (n++ >= LOST_FILES_MAX)
			continue;
		log_escape(esc, sizeof(esc), path != NULL ? path : "");
		snprintf(buf, sizeof(buf),
		         "%s%" PRId64 " lines of %s between byte offsets %" PRId64 " and %" PRId64,
		         n > 1 ? ", " : "; ", (int64_t)sqlite3_column_int64(q, 1), esc,
		         (int64_t)sqlite3_column_int64(q, 2), (int64_t)sqlite3_column_int64(q, 3));
		detail_add(st, buf);
	}
	sqlite3_finalize(q);
	q = NULL;
	if (rc != SQLITE_DONE)
		goto fail;
	if (n > LOST_FILES_MAX) {
		snprintf(buf, sizeof(buf), " and lines of %" PRId64 " more files",
		         n - LOST_FILES_MAX);
		detail_add(st, buf);
	}
	ret = 0;
	goto out;
fail:
	err_set(err, errlen, "finding the lost aggregation windows: %s", sqlite3_errmsg(db));
out:
	sqlite3_finalize(q);
	return ret;
}

#define LOST_REASON                                                                                \
	"lost in spool recover: its file record or rule was lost, so its identifier cannot be "    \
	"computed; not sent"

/* Every event of batch `v` not known delivered whose identifier cannot be had becomes a dead
 * letter with LOST_REASON: one whose rule's row was lost (the instance and the rule name of its
 * identifier, and its event name, were in it), and one of a lost file record (`file_lost`: the
 * uid of its identifier was in it) unless its row of outcomes keeps its identifier. That is a
 * window's meter event (its identifier holds no file uid, docs/identifiers.md) or an event kept
 * under an earlier instance name: it stays as it is, to be sent under that very identifier,
 * which Stripe may have already. Returns 0 or -1. */
static int batch_lost(struct spool *sp, struct spool_view *v, const struct spool_queue *q,
                      int file_lost, int64_t now, char *err, size_t errlen)
{
	for (int64_t id = v->id; id < v->id + v->n; id++) {
		struct spool_outcome o;
		struct spool_item it;
		int has = spool_outcome_get(sp, id, &o, err, errlen), known;

		if (has < 0)
			return -1;
		if (has ? o.state != EVENT_PENDING : id <= q->delivered)
			continue;
		known = spool_view_seek(v, id, &it) == 1 &&
		        spool_rule_of(sp, it.rule_id, err, errlen) != NULL &&
		        (!file_lost || (has && o.has_identifier));
		err[0] = '\0'; /* a rule lost, as finish() found */
		if (known)
			continue;
		if (!has) {
			memset(&o, 0, sizeof(o));
			o.id = id;
			o.queue_seq = v->queue_seq + (id - v->id);
		}
		o.state = EVENT_DEAD;
		o.updated = now;
		snprintf(o.last_error, sizeof(o.last_error), "%s", LOST_REASON);
		if (spool_outcome_put(sp, &o, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* A closed window whose row was lost but whose meter event survives (a batch of one at a
 * negative place that no window row names) gets a closed row again, rebuilt from that event:
 * rule, event name and payload keys from its row of `rules`, customer, start (the event's
 * timestamp) and total from the event. Without it a line that comes later for that window's
 * time would open a new window of the same start, whose identifier (rule, customer, start) is
 * the kept meter event's: Stripe would drop it as a duplicate, and the line's usage with it.
 * Kept closed, the window passes such a line on to a later window, as before the damage. Its
 * length is lost with its row: 1 s, the least a window has, so that a late line of its span
 * goes into a window from the second after its start, in the same invoice period. A meter event
 * whose rule's row was lost names no rule and is left as it is. Counts the rows made in
 * *rebuilt. Returns 0 or -1. */
static int windows_rebuild_closed(struct spool *sp, int64_t *rebuilt, char *err, size_t errlen)
{
	static const char sel[] =
	    "SELECT " SPOOL_BATCH_COLUMNS " FROM batches b WHERE first_offset < 0 AND n = 1"
	    " AND id NOT IN (SELECT event_id FROM windows WHERE event_id IS NOT NULL) ORDER BY id";
	static const char ins[] =
	    "INSERT INTO windows(id, rule, customer, customer_key, event_name,"
	    " payload_customer_key, payload_value_key, start, length, close_after, total, lines,"
	    " late, file_id, state, event_id, created, closed_at)"
	    " SELECT CASE WHEN ?1 > 0 AND NOT EXISTS (SELECT 1 FROM windows WHERE id = ?1)"
	    " THEN ?1 END, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?8 + 1, ?9, 0, 0, ?10, 1, ?11, ?12, ?12"
	    " WHERE NOT EXISTS (SELECT 1 FROM windows WHERE rule = ?2 AND customer = ?3"
	    " AND start = ?8)";
	sqlite3_stmt *q = NULL, *st = NULL;
	int rc, ret = -1;

	*rebuilt = 0;
	rc = sqlite3_prepare_v2(sp->db, sel, -1, &q, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(sp->db, ins, -1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const struct spool_rule *r;
		struct spool_item it;

		rc = SQLITE_OK;
		if (spool_view_take(sp, &sp->scan, q, err, errlen) < 0 ||
		    spool_view_seek(&sp->scan, sp->scan.id, &it) != 1) {
			err[0] = '\0';
			continue; /* damaged batches were dropped before: none left here */
		}
		r = spool_rule_of(sp, it.rule_id, err, errlen);
		err[0] = '\0'; /* NULL: its rule's row was lost, as finish() found */
		if (r == NULL)
			continue;
		spool_bind_int(st, 1, -sp->scan.first_offset, &rc);
		spool_bind_text(st, 2, r->rule, SIZE_MAX, &rc);
		spool_bind_text(st, 3, it.customer, it.customer_len, &rc);
		spool_bind_text(st, 4, it.customer_key, it.customer_key_len, &rc);
		spool_bind_text(st, 5, r->event_name, SIZE_MAX, &rc);
		spool_bind_text(st, 6, r->payload_customer_key, SIZE_MAX, &rc);
		spool_bind_text(st, 7, r->payload_value_key, SIZE_MAX, &rc);
		spool_bind_int(st, 8, it.timestamp, &rc);
		spool_bind_text(st, 9, it.value, it.value_len, &rc);
		spool_bind_int(st, 10, sp->scan.file_id, &rc);
		spool_bind_int(st, 11, sp->scan.id, &rc);
		spool_bind_int(st, 12, sp->scan.created, &rc);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st);
		if (rc == SQLITE_DONE) {
			*rebuilt += sqlite3_changes(sp->db);
			rc = SQLITE_OK;
		}
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "rebuilding closed windows from their meter events", err,
		           errlen);
		goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(q);
	sqlite3_finalize(st);
	return ret;
}

#define OUTCOME_LOST_REASON                                                                        \
	"lost in spool recover: the row of outcomes of this aggregation window's meter event was " \
	"lost (its state, attempts and identifier): whether Stripe has it is not known. Not "      \
	"sent; "                                                                                   \
	"check Stripe for its identifier, then 'logmeter replay --unsure' or leave it"

/* The meter event of a closed aggregation window (a batch of one at a negative place) always
 * has a row of outcomes, kept with its batch until both are pruned: the row holds its `lmw2-`
 * identifier, which no stored field of the batch gives (docs/identifiers.md), and the
 * watermark passes it once it has one, whatever its state. Such an event without one lost it
 * with a damaged page: taken as it is, one up to the watermark would count as delivered and
 * never be sent, one after it would be sent under a line identifier Stripe never saw. Its
 * delivery cannot be known, so it becomes unsure with OUTCOME_LOST_REASON, never sent by
 * itself. Its identifier is made again as closing the window made it (the instance of its
 * rule's row, which closing took from the spool's `meta` as the identifier's, the spool's id,
 * the rule, customer and timestamp), for the operator to look up and for `replay --unsure`: a
 * window closed by an earlier version had an `lmw1-` one, which nothing left tells. Without
 * its rule's row or the spool's id it gets none. Counts them in *lost. Returns 0 or -1. */
static int window_events_lost(struct spool *sp, int64_t now, int64_t *lost, char *err,
                              size_t errlen)
{
	static const char sel[] =
	    "SELECT " SPOOL_BATCH_COLUMNS " FROM batches b WHERE first_offset < 0 AND n = 1"
	    " AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.id = b.id) ORDER BY id";
	char spool_id[256];
	sqlite3_stmt *q = NULL;
	int rc, have_id, ret = -1;

	*lost = 0;
	have_id = spool_meta_get(sp, SPOOL_ID_KEY, spool_id, sizeof(spool_id), err, errlen);
	if (have_id < 0)
		return -1;
	rc = sqlite3_prepare_v2(sp->db, sel, -1, &q, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const struct spool_rule *r;
		struct spool_outcome o;
		struct spool_item it;

		rc = SQLITE_OK;
		if (spool_view_take(sp, &sp->scan, q, err, errlen) < 0 ||
		    spool_view_seek(&sp->scan, sp->scan.id, &it) != 1) {
			err[0] = '\0';
			continue; /* damaged batches were dropped before: none left here */
		}
		memset(&o, 0, sizeof(o));
		o.id = sp->scan.id;
		o.queue_seq = sp->scan.queue_seq;
		o.state = EVENT_UNSURE;
		o.attempts = 1;
		o.updated = now;
		snprintf(o.last_error, sizeof(o.last_error), "%s", OUTCOME_LOST_REASON);
		r = spool_rule_of(sp, it.rule_id, err, errlen);
		err[0] = '\0'; /* NULL: its rule's row was lost, as finish() found */
		if (r != NULL && have_id > 0) {
			char customer[EVENT_CUSTOMER_MAX];

			snprintf(customer, sizeof(customer), "%.*s", (int)it.customer_len,
			         it.customer);
			o.has_identifier =
			    event_ids_window(sp->ids, o.identifier, r->instance, spool_id, r->rule,
			                     customer, it.timestamp) == 0;
		}
		if (spool_outcome_put(sp, &o, err, errlen) < 0)
			goto out;
		(*lost)++;
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "reading meter events without their rows of outcomes", err,
		           errlen);
		goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(q);
	return ret;
}

/* After the rows are in: the legacy events moved into batches, the queue's row made consistent
 * with what survived, and the events whose identifiers are lost made dead letters. */
static int finish(struct spool *sp, int64_t now, struct spool_recover_stats *st, char *err,
                  size_t errlen)
{
	sqlite3_stmt *q = NULL;
	struct spool_queue queue;
	int64_t legacy = 0, rebuilt = 0, *damaged = NULL;
	size_t n_damaged = 0;
	int rc, ret = -1;

	if (spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	if (spool_pragma_int(sp, "SELECT count(*) FROM " LEGACY_EVENTS, &legacy, err, errlen) < 0)
		goto out;
	if (legacy > 0 && spool_migrate_events(sp, LEGACY_EVENTS, NULL, err, errlen) < 0)
		goto out;
	/* New ids after every id a recovered row names: a batch's events, a row of outcomes or
	 * of deliveries, a window's meter event. A new event given the id of one lost with its
	 * batch would take that one's row of outcomes (its state, its identifier), and a watermark
	 * passing an id a row of deliveries already ends at could not record it. Then the rows of
	 * outcomes of events lost with their batches are dropped: nothing of them can be sent,
	 * and counted they would make events of other states out of pending ones. The watermark
	 * no further than the rows of deliveries say it reached (whichever copy of the queue's row
	 * survived); new queue positions after every recovered one. */
	if (spool_exec(
	        sp,
	        "DROP TABLE " LEGACY_EVENTS ";"
	        "DELETE FROM meta WHERE key = 'queue_shift';"
	        /* A line whose window was lost cannot say where its usage went. */
	        "DELETE FROM window_lines WHERE window_id NOT IN (SELECT id FROM windows);"
	        "UPDATE queue SET next_id = max(next_id,"
	        " coalesce((SELECT max(id + n) FROM batches), 1),"
	        " coalesce((SELECT max(id) + 1 FROM outcomes), 1),"
	        " coalesce((SELECT max(through) + 1 FROM deliveries), 1),"
	        " coalesce((SELECT max(event_id) + 1 FROM windows), 1));"
	        "DELETE FROM outcomes WHERE coalesce((SELECT b.id + b.n FROM batches b"
	        " WHERE b.id <= outcomes.id ORDER BY b.id DESC LIMIT 1), 0) <= id;"
	        "UPDATE queue SET delivered_through = min(next_id - 1, max(delivered_through,"
	        " coalesce((SELECT max(through) FROM deliveries), 0)));"
	        "UPDATE queue SET shift = max(shift, coalesce(max("
	        " (SELECT max(queue_seq + n) FROM batches),"
	        " (SELECT max(queue_seq) + 1 FROM outcomes)) - next_id, 0));",
	        "making the queue consistent", err, errlen) < 0)
		goto out;
	if (spool_queue_get(sp, &queue, err, errlen) < 0)
		goto out;
	/* The batches of a lost file record, or naming a rule whose row was lost: their events
	 * whose identifiers cannot be had become dead letters (batch_lost). */
	rc = sqlite3_prepare_v2(sp->db,
	                        "SELECT " SPOOL_BATCH_COLUMNS ", (SELECT source FROM files f"
	                        " WHERE f.id = b.file_id) FROM batches b ORDER BY id",
	                        -1, &q, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const unsigned char *src = sqlite3_column_text(q, SPOOL_BATCH_NCOLS);
		int file_lost = src == NULL || src[0] == '\0', lost = file_lost;

		rc = SQLITE_OK;
		if (spool_view_take(sp, &sp->scan, q, err, errlen) < 0) {
			/* Its blob does not decode: nothing of it can be read, now or later. */
			int64_t *p = realloc(damaged, (n_damaged + 1) * sizeof(*p));

			if (p == NULL) {
				err_set(err, errlen, "out of memory");
				goto out;
			}
			damaged = p;
			damaged[n_damaged++] = sqlite3_column_int64(q, SPOOL_BC_ID);
			continue;
		}
		for (size_t i = 0; i < sp->scan.n_rules && !lost; i++) {
			if (spool_rule_of(sp, sp->scan.rule_ids[i], err, errlen) == NULL)
				lost = 1;
		}
		err[0] = '\0';
		if (lost && batch_lost(sp, &sp->scan, &queue, file_lost, now, err, errlen) < 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		spool_fail(sp, rc, "checking the recovered batches", err, errlen);
		goto out;
	}
	sqlite3_finalize(q);
	q = NULL;
	for (size_t i = 0; i < n_damaged; i++) {
		char sql[160];

		snprintf(sql, sizeof(sql),
		         "DELETE FROM outcomes WHERE id >= %" PRId64 " AND id < %" PRId64
		         " + (SELECT n FROM batches WHERE id = %" PRId64 ");"
		         "DELETE FROM batches WHERE id = %" PRId64 ";",
		         damaged[i], damaged[i], damaged[i], damaged[i]);
		if (spool_exec(sp, sql, "dropping a damaged batch", err, errlen) < 0)
			goto out;
		st->cells_skipped++;
	}
	if (window_events_lost(sp, now, &st->outcomes_lost, err, errlen) < 0 ||
	    windows_rebuild_closed(sp, &rebuilt, err, errlen) < 0)
		goto out;
	if (rebuilt > 0)
		log_info("spool recover: %" PRId64 " closed aggregation windows whose rows were "
		         "lost rebuilt from their meter events: no later line opens them again",
		         rebuilt);
	if (spool_tx_commit(sp, err, errlen) < 0)
		goto done;
	ret = 0;
	goto done;
out:
	sqlite3_finalize(q);
	spool_tx_rollback(sp);
done:
	free(damaged);
	return ret;
}

static int build_new(const char *old_db, const char *tmpdir, struct spool_recover_stats *st,
                     int64_t now, char *err, size_t errlen)
{
	struct builder b;
	struct spool *sp;
	struct spool_counts counts;
	char path[4096 + 64];
	sqlite3_stmt *q = NULL;
	int64_t v;
	int ret = -1;

	memset(&b, 0, sizeof(b));
	b.st = st;
	/* spool_open makes the schema of this version, exactly as the agent would; the spool's id
	 * is the old one's, copied with its meta rows (store/marker.c). */
	sp = spool_open_unmarked(tmpdir, SPOOL_READ_WRITE, err, errlen);
	if (sp == NULL)
		return -1;
	spool_free(sp);
	sp = NULL;
	if (spool_path_of(tmpdir, path, sizeof(path), err, errlen) < 0)
		goto out;
	if (sqlite3_open_v2(path, &b.db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		err_set(err, errlen, "%s: %s", path, b.db ? sqlite3_errmsg(b.db) : "out of memory");
		goto out;
	}
	sqlite3_extended_result_codes(b.db, 1);
	/* Nothing of it counts until it is synced and renamed into place. */
	if (exec_sql(b.db, "PRAGMA synchronous=OFF", err, errlen) < 0 ||
	    exec_sql(b.db, "PRAGMA foreign_keys=OFF", err, errlen) < 0 ||
	    exec_sql(b.db, "BEGIN", err, errlen) < 0 ||
	    exec_sql(b.db, spool_legacy_events_sql, err, errlen) < 0)
		goto out;
	if (builder_prepare(&b) < 0) {
		err_set(err, errlen, "building the new spool: %s", sqlite3_errmsg(b.db));
		goto out;
	}
	if (recover_rows(old_db, &b, err, errlen) < 0 ||
	    placeholders(b.db, now, st, err, errlen) < 0 || windows_lost(b.db, st, err, errlen) < 0)
		goto out;
	builder_finalize(&b);
	if (exec_sql(b.db, "COMMIT", err, errlen) < 0)
		goto out;
	if (sqlite3_close(b.db) != SQLITE_OK) {
		err_set(err, errlen, "closing the new spool: %s", sqlite3_errmsg(b.db));
		b.db = NULL;
		goto out;
	}
	b.db = NULL;
	/* The rest through the spool's own code, as the agent will read it. */
	sp = spool_open(tmpdir, SPOOL_READ_WRITE, err, errlen);
	if (sp == NULL || spool_exec(sp, "PRAGMA synchronous=OFF", "recovering", err, errlen) < 0 ||
	    finish(sp, now, st, err, errlen) < 0 || record_loss(sp, now, st, err, errlen) < 0 ||
	    spool_counts(sp, &counts, err, errlen) < 0)
		goto out;
	st->events[EVENT_PENDING] = counts.pending;
	st->events[EVENT_DELIVERED] = counts.delivered;
	st->events[EVENT_DEAD] = counts.dead;
	st->events[EVENT_UNSURE] = counts.unsure;
	if (spool_pragma_int(sp, "SELECT count(*) FROM files", &v, err, errlen) < 0)
		goto out;
	st->files = v - st->lost_files;
	if (spool_pragma_int(sp, "SELECT count(*) FROM meta WHERE key = 'instance'", &v, err,
	                     errlen) < 0)
		goto out;
	st->instance_recovered = v > 0;
	if (spool_pragma_int(sp, "SELECT count(*) FROM windows WHERE state = 0", &st->windows_open,
	                     err, errlen) < 0 ||
	    spool_pragma_int(sp, "SELECT count(*) FROM windows WHERE state != 0",
	                     &st->windows_closed, err, errlen) < 0 ||
	    spool_pragma_int(sp,
	                     "SELECT count(*) FROM window_lines WHERE window_id IN"
	                     " (SELECT id FROM windows WHERE state = 0)",
	                     &st->window_lines, err, errlen) < 0 ||
	    spool_pragma_int(sp, "SELECT coalesce(sum(lines), 0) FROM windows WHERE state = 0",
	                     &st->window_lines_counted, err, errlen) < 0)
		goto out;
	if (spool_exec(sp, "PRAGMA wal_checkpoint(TRUNCATE)", "recovering", err, errlen) < 0)
		goto out;
	spool_free(sp);
	sp = NULL;
	if (fsync_path(path, O_RDONLY) < 0) {
		err_set(err, errlen, "fsync %s: %s", path, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(q);
	builder_finalize(&b);
	if (b.db != NULL)
		sqlite3_close(b.db);
	spool_free(sp);
	return ret;
}

const char *spool_recover_outcomes_lost_text(const struct spool_recover_stats *st, char *out,
                                             size_t outlen)
{
	snprintf(out, outlen,
	         "%" PRId64 " meter events of aggregation windows lost their rows of outcomes "
	         "(their state and identifier): whether Stripe has them is not known, so they "
	         "are unsure, never sent by themselves; check Stripe for their identifiers "
	         "(logmeter spool export --state unsure) and send those it lacks with "
	         "'logmeter replay --unsure' (docs/spool.md)",
	         st->outcomes_lost);
	return out;
}

const char *spool_recover_windows_lost_text(const struct spool_recover_stats *st, char *out,
                                            size_t outlen)
{
	int n = snprintf(out, outlen,
	                 "%" PRId64 " aggregation windows were lost (their rows could "
	                 "not be read)",
	                 st->windows_lost);

	/* A lost window's row held its count of lines, and a line of it on a page that cannot be
	 * read left no trace: the lines found, and the byte offsets they span, are a lower bound,
	 * not the whole, whatever recover could read. */
	if (n >= 0 && (size_t)n < outlen && st->windows_lost_open > 0)
		n += snprintf(
		    out + n, outlen - (size_t)n,
		    ": %" PRId64 " of them not known to be closed, and the usage of their "
		    "%" PRId64 " lines is lost at least (the lines found: a lost window's "
		    "row held its count of lines, and lines of it on damaged pages left no "
		    "trace, also outside the byte offsets below), never billed (their "
		    "files' checkpoints are past them): %s",
		    st->windows_lost_open, st->window_lines_lost, st->windows_lost_detail);
	if (n >= 0 && (size_t)n < outlen && st->windows_lost_unknown > 0)
		n += snprintf(
		    out + n, outlen - (size_t)n,
		    "; %" PRId64 " left no line and no meter event: most likely closed and "
		    "billed, their meter events pruned after delivered_retention with their "
		    "lines, but their lines may have been lost too; recover cannot tell which",
		    st->windows_lost_unknown);
	if (n >= 0 && (size_t)n < outlen &&
	    st->windows_lost > st->windows_lost_open + st->windows_lost_unknown)
		snprintf(out + n, outlen - (size_t)n,
		         "; %" PRId64 " closed, whose meter events are kept",
		         st->windows_lost - st->windows_lost_open - st->windows_lost_unknown);
	return out;
}

int spool_recover(const char *state_dir, int64_t now, int sound, struct spool_recover_stats *st,
                  char *err, size_t errlen)
{
	char db[4096 + 16], wal[4096 + 32], shm[4096 + 32], tmp[4096 + 64], newdb[4096 + 80];
	char old_wal[sizeof(st->old_path) + 8];
	/* The old file's name says what it was: damaged, or sound and rebuilt all the same. */
	const char *kept = sound ? "before-recover" : "corrupt";
	struct stat sb;
	pid_t pid = 0;
	uid_t owner;
	gid_t group;
	int have_wal;

	memset(st, 0, sizeof(*st));
	if (spool_path_of(state_dir, db, sizeof(db), err, errlen) < 0)
		return -1;
	snprintf(wal, sizeof(wal), "%s-wal", db);
	snprintf(shm, sizeof(shm), "%s-shm", db);
	if (stat(db, &sb) < 0) {
		err_set(err, errlen, "no spool at %s: %s", db, strerror(errno));
		return -1;
	}
	owner = sb.st_uid;
	group = sb.st_gid;
	/* SQLite's lock bytes: the database file's at 1 GiB (pending, reserved, shared), and the
	 * WAL index's (120..128) that every open connection holds a read lock on. */
	if (locked_by_other(db, (off_t)LOCK_BYTE_OFFSET, 512, &pid) ||
	    locked_by_other(shm, 120, 9, &pid)) {
		err_set(err, errlen,
		        "spool %s is open in process %ld (a running logmeter?): stop it before "
		        "recovering the spool",
		        db, (long)pid);
		return -1;
	}
	snprintf(tmp, sizeof(tmp), "%s/spool.recover.%ld", state_dir, (long)getpid());
	remove_tree(tmp);
	if (mkdir(tmp, 0700) < 0) {
		err_set(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (build_new(db, tmp, st, now, err, errlen) < 0)
		goto fail;

	/* Keep the old files under new names (links: nothing is lost if we stop here), then put
	 * the new database in place with one rename. */
	for (int i = 0;; i++) {
		if (i == 0)
			snprintf(st->old_path, sizeof(st->old_path), "%s.%s-%" PRId64, db, kept,
			         now);
		else
			snprintf(st->old_path, sizeof(st->old_path), "%s.%s-%" PRId64 ".%d", db,
			         kept, now, i);
		if (link(db, st->old_path) == 0)
			break;
		if (errno != EEXIST || i > 100) {
			err_set(err, errlen, "cannot keep the old spool as %s: %s", st->old_path,
			        strerror(errno));
			goto fail;
		}
	}
	snprintf(old_wal, sizeof(old_wal), "%s-wal", st->old_path);
	have_wal = stat(wal, &sb) == 0;
	if (have_wal && link(wal, old_wal) < 0) {
		err_set(err, errlen, "cannot keep the old WAL as %s: %s", old_wal, strerror(errno));
		unlink(st->old_path);
		goto fail;
	}
	/* The old WAL and WAL index must not meet the new database. */
	if ((unlink(shm) < 0 && errno != ENOENT) || (unlink(wal) < 0 && errno != ENOENT)) {
		err_set(err, errlen, "cannot remove the old WAL files of %s: %s", db,
		        strerror(errno));
		goto fail;
	}
	if (spool_path_of(tmp, newdb, sizeof(newdb), err, errlen) < 0)
		goto fail;
	/* Run as root (the natural way), the new file would be root's, and the agent, running as
	 * the spool's owner, would refuse it. SQLite gives its -wal and -shm files the database's
	 * owner itself (os_unix.c, robustFchown); the database is ours to give. */
	if (geteuid() == 0 && (owner != 0 || group != 0) && chown(newdb, owner, group) < 0) {
		err_set(err, errlen, "cannot give %s the old spool's owner %u:%u: %s", newdb,
		        (unsigned)owner, (unsigned)group, strerror(errno));
		goto fail;
	}
	if (rename(newdb, db) < 0) {
		err_set(err, errlen, "cannot move %s to %s: %s (the old spool is kept as %s)",
		        newdb, db, strerror(errno), st->old_path);
		goto fail;
	}
	if (fsync_path(state_dir, O_RDONLY | O_DIRECTORY) < 0)
		log_warn("fsync %s: %s", state_dir, strerror(errno));
	remove_tree(tmp);
	if (st->windows_lost > 0) {
		char text[sizeof(st->windows_lost_detail) + 512];

		log_warn("%s", spool_recover_windows_lost_text(st, text, sizeof(text)));
	}
	if (st->outcomes_lost > 0) {
		char text[1024];

		log_warn("%s", spool_recover_outcomes_lost_text(st, text, sizeof(text)));
	}
	return 0;
fail:
	remove_tree(tmp);
	return -1;
}
