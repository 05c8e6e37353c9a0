/* marker: the state directory remembers that it had a spool. A spool has an id (meta key
 * "spool_id", random, made with it), and the state directory a file, spool.id, that holds the
 * same id. A spool.db that is missing or empty while that file is there is not a new spool: it
 * is one that was lost (a restore, a file system that lost it), and starting a new one would read
 * and bill every line again. It is refused; so is, at a read-write open, a spool.db with another
 * id (another directory's spool put in its place). `logmeter spool start-over` is the way on when
 * that is what the operator wants (docs/spool.md). */
#include "store/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/spool_int.h"
#include "util/log.h"
#include "util/path.h"

#define SPOOL_ID_HEX 32 /* digits of a spool id */

/* "STATE_DIR/NAME" into `out`. Returns 0, or -1 if it does not fit. */
static int state_path(const char *state_dir, const char *name, char *out, size_t outlen, char *err,
                      size_t errlen)
{
	int n = snprintf(out, outlen, "%s/%s", state_dir, name);

	if (n < 0 || (size_t)n >= outlen) {
		err_set(err, errlen, "%s: path too long", state_dir);
		return -1;
	}
	return 0;
}

/* Reads the id in the marker into `id` (SPOOL_ID_HEX + 1 bytes). Returns 1, 0 if there is no
 * marker, or -1 (unreadable, or not a marker logmeter wrote: `err`). */
static int marker_read(const char *path, char *id, char *err, size_t errlen)
{
	char buf[256];
	FILE *f = fopen(path, "re");
	size_t n;

	if (f == NULL) {
		if (errno == ENOENT || errno == ENOTDIR) /* no directory: reported by its open */
			return 0;
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (n < SPOOL_ID_HEX || strspn(buf, "0123456789abcdef") != SPOOL_ID_HEX ||
	    (buf[SPOOL_ID_HEX] != '\n' && buf[SPOOL_ID_HEX] != '\0')) {
		err_set(err, errlen, "%s does not hold a spool id", path);
		return -1;
	}
	memcpy(id, buf, SPOOL_ID_HEX);
	id[SPOOL_ID_HEX] = '\0';
	return 1;
}

/* Writes the marker for `id` whole or not at all (a file beside it, fsync, rename, fsync of the
 * directory: a crash leaves the old marker or the new one). Returns 0 or -1. */
static int marker_write(const char *state_dir, const char *id, char *err, size_t errlen)
{
	char path[SPOOL_PATH_MAX], tmp[SPOOL_PATH_MAX], text[512], when[32];
	time_t now = time(NULL);
	struct tm tm;
	int fd = -1, dfd = -1, n, rc = -1;

	if (state_path(state_dir, SPOOL_MARKER_NAME, path, sizeof(path), err, errlen) < 0 ||
	    state_path(state_dir, "." SPOOL_MARKER_NAME ".new", tmp, sizeof(tmp), err, errlen) < 0)
		return -1;
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(text, sizeof(text),
	             "%s\n# written by logmeter on %s: the id of the spool of this directory.\n"
	             "# While this file is here, an empty or missing spool.db is refused, not\n"
	             "# taken for a new spool; see `logmeter spool start-over` (docs/spool.md).\n",
	             id, when);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) != 0 || close(fd) != 0) {
		err_set(err, errlen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) != 0) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0)
		err_set(err, errlen, "%s: %s", state_dir, strerror(errno));
	else
		rc = 0;
	if (dfd >= 0)
		close(dfd);
	return rc;
}

int spool_marker_check(const char *state_dir, const char *db, char *err, size_t errlen)
{
	char marker[SPOOL_PATH_MAX], id[SPOOL_ID_HEX + 1];
	struct stat st;
	int have, missing;

	if (state_path(state_dir, SPOOL_MARKER_NAME, marker, sizeof(marker), err, errlen) < 0)
		return -1;
	missing = stat(db, &st) != 0;
	if (missing && errno != ENOENT && errno != ENOTDIR) {
		err_set(err, errlen, "spool %s: %s", db, strerror(errno));
		return -1;
	}
	if (!missing && st.st_size > 0)
		return 0;
	have = marker_read(marker, id, err, errlen);
	if (have <= 0)
		return have;
	err_set(err, errlen,
	        "spool %s is %s, but this state directory had a spool (%s, id %s): starting a new "
	        "one would read every file again from its start and bill what was delivered "
	        "already. Restore the spool, or, to start over on purpose, stop logmeter and run "
	        "`logmeter spool start-over -c FILE` (docs/spool.md)",
	        db, missing ? "missing" : "empty (0 bytes)", marker, id);
	return -1;
}

int spool_lost_check(const char *state_dir, char *err, size_t errlen)
{
	char db[SPOOL_PATH_MAX];

	if (spool_path_of(state_dir, db, sizeof(db), err, errlen) < 0)
		return -1;
	return spool_marker_check(state_dir, db, err, errlen) < 0 ? -1 : 0;
}

int spool_mark_lost(struct spool *sp, const char *state_dir, char *err, size_t errlen)
{
	char marker[SPOOL_PATH_MAX], have[SPOOL_ID_HEX + 1], id[256] = "";
	int marked;

	if (sp == NULL || state_dir == NULL) {
		err_set(err, errlen, "spool_mark_lost: invalid arguments");
		return -1;
	}
	/* The handle still reads its unlinked file. */
	if (spool_meta_get(sp, SPOOL_ID_KEY, id, sizeof(id), err, errlen) <= 0) {
		if (err != NULL && err[0] == '\0')
			err_set(err, errlen, "spool %s has no id", sp->path);
		return -1;
	}
	if (path_mkdirs(state_dir, err, errlen) < 0 ||
	    state_path(state_dir, SPOOL_MARKER_NAME, marker, sizeof(marker), err, errlen) < 0)
		return -1;
	marked = marker_read(marker, have, err, errlen);
	if (marked < 0)
		return -1;
	if (marked)
		return 0; /* this spool's, or a new one's that someone made on purpose */
	return marker_write(state_dir, id, err, errlen);
}

int spool_marker_sync(struct spool *sp, const char *state_dir, char *err, size_t errlen)
{
	char marker[SPOOL_PATH_MAX], have[SPOOL_ID_HEX + 1], id[256] = "";
	int found, marked;

	if (state_path(state_dir, SPOOL_MARKER_NAME, marker, sizeof(marker), err, errlen) < 0)
		return -1;
	marked = marker_read(marker, have, err, errlen);
	if (marked < 0)
		return -1;
	/* One transaction, so that two handles opening together agree on a new id. */
	if (spool_tx_begin(sp, err, errlen) < 0)
		return -1;
	found = spool_meta_get(sp, SPOOL_ID_KEY, id, sizeof(id), err, errlen);
	if (found < 0)
		goto fail;
	if (!found) {
		/* A spool of a logmeter before ids, or rebuilt by `spool recover` without its id:
		 * the directory's spool, with the marker's id if there is one. */
		if (marked)
			memcpy(id, have, sizeof(have));
		else if (spool_random_hex(id, SPOOL_ID_HEX / 2, err, errlen) < 0)
			goto fail;
		if (spool_meta_put(sp, SPOOL_ID_KEY, id, err, errlen) < 0)
			goto fail;
	}
	if (spool_tx_commit(sp, err, errlen) < 0)
		return -1;
	if (marked && strcmp(have, id) != 0) {
		err_set(err, errlen,
		        "spool %s has id %s, but this state directory had the spool %s (%s): it is "
		        "another spool, whose checkpoints are not those of these files. Put the "
		        "right spool back, or, to go on with this one on purpose, stop logmeter "
		        "and run `logmeter spool start-over -c FILE` (docs/spool.md)",
		        sp->path, id, have, marker);
		return -1;
	}
	return marked ? 0 : marker_write(state_dir, id, err, errlen);
fail:
	spool_tx_rollback(sp);
	return -1;
}

int spool_start_over(const char *state_dir, char *what, size_t whatlen, char *err, size_t errlen)
{
	char db[SPOOL_PATH_MAX], marker[SPOOL_PATH_MAX], side[SPOOL_PATH_MAX + 8];
	char id[SPOOL_ID_HEX + 1], kept[256] = "";
	struct spool *sp;
	struct stat st;
	int marked;

	if (spool_path_of(state_dir, db, sizeof(db), err, errlen) < 0 ||
	    state_path(state_dir, SPOOL_MARKER_NAME, marker, sizeof(marker), err, errlen) < 0)
		return -1;
	marked = marker_read(marker, id, err, errlen);
	if (marked < 0)
		return -1;
	if (stat(db, &st) != 0 || st.st_size == 0) {
		/* Lost: the empty file and its WAL go, so that the next start makes a new spool. */
		if (!marked) {
			err_set(err, errlen, "nothing to start over: no spool in %s", state_dir);
			return 1;
		}
		static const char *const suffixes[] = {"", "-wal", "-shm"};

		for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
			snprintf(side, sizeof(side), "%s%s", db, suffixes[i]);
			if (unlink(side) != 0 && errno != ENOENT) {
				err_set(err, errlen, "%s: %s", side, strerror(errno));
				return -1;
			}
		}
		if (unlink(marker) != 0) {
			err_set(err, errlen, "%s: %s", marker, strerror(errno));
			return -1;
		}
		err_set(what, whatlen,
		        "the spool %s is forgotten: the next start makes a new one, and reads "
		        "every file as new (from its start, or its end with read_from = tail)",
		        id);
		return 0;
	}
	/* Another spool in its place: it is adopted, the marker takes its id. */
	sp = spool_open_unmarked(state_dir, SPOOL_READ_ONLY, err, errlen);
	if (sp == NULL)
		return -1;
	if (spool_meta_get(sp, SPOOL_ID_KEY, kept, sizeof(kept), err, errlen) < 0) {
		spool_free(sp);
		return -1;
	}
	spool_free(sp);
	if (kept[0] == '\0' || (marked && strcmp(kept, id) == 0)) {
		err_set(err, errlen,
		        "nothing to start over: %s is the spool this state directory had%s", db,
		        kept[0] == '\0' ? " (or one that has not run yet)" : "");
		return 1;
	}
	if (unlink(marker) != 0 && errno != ENOENT) {
		err_set(err, errlen, "%s: %s", marker, strerror(errno));
		return -1;
	}
	if (marker_write(state_dir, kept, err, errlen) < 0)
		return -1;
	err_set(what, whatlen, "the spool %s in %s is this state directory's now (it had %s)", kept,
	        db, marked ? id : "none");
	return 0;
}
