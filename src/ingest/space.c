/* space: the room the spool may still grow into, and the pause of the ingest half.
 *
 * Room. SQLite takes new pages from the free list of spool.db before it grows the file; in WAL
 * mode a commit first appends its pages to spool.db-wal, and a checkpoint later copies them into
 * spool.db, which then grows to page_count pages; the WAL file is reused from its start after a
 * checkpoint, and grows until wal_autocheckpoint pages start the next one
 * (https://www.sqlite.org/wal.html, https://www.sqlite.org/fileformat2.html). So the bytes the
 * spool may still grow by are
 *
 *     room = free space of the file system (statvfs f_bavail)
 *          - what the next checkpoint adds to spool.db   (page_count * page_size - its size)
 *          - what the WAL may still add to its file       (its full size - its size now)
 *          + the free pages of spool.db                   (freelist_count * page_size)
 *
 * Reading pauses while room < min_free_bytes: the spool never fills its file system itself, so
 * the sender can always record its outcomes (marks rewrite pages in the WAL's reused space) and
 * pruning can always free pages. If something else fills the file system, the commit fails
 * with SQLITE_FULL and reading pauses the same way.
 *
 * Size. max_spool_bytes bounds the pages in use: (page_count - freelist_count) * page_size.
 *
 * Making room. Delivered events are kept for delivered_retention, but they are already in
 * Stripe: when a limit is crossed, they are pruned early, oldest delivery first, down to the
 * resume marks (min_free_bytes * 1.5, 90 % of max_spool_bytes), so that one pause makes room for
 * many batches instead of pausing at each. Pending and dead events are never pruned: when they
 * alone fill the room, reading waits for the sender.
 *
 * One pruner. This module is the only one that deletes events: the early pruning above, and
 * delivered_retention, applied every 10 minutes (and at start) on the ingest thread, both through
 * spool_prune. */
#include "ingest/space.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "util/health.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/statefile.h"

#define SPACE_TICK_MS 1000 /* while paused: measure again this often */
/* Delivered events pruned per transaction, at most: whole batches (docs/spool.md), so a few
 * rows deleted for thousands of events. */
#define SPACE_PRUNE_CHUNK 20000
#define SPACE_PRUNE_CHUNK_MIN 64
#define SPACE_ROW_BYTES_MIN 16    /* less than any event takes in spool.db, with its batch's row */
#define SPACE_PRUNE_CHUNKS_MAX 25 /* transactions per admit or tick, so it never stalls */
#define SPACE_LOG_EVERY_MS 60000  /* the same pause, or early pruning, logged this often */
#define SPACE_RESUME_MIN (1024 * 1024)         /* after a failed commit: room needed to try again */
#define SPACE_EXPIRE_EVERY_MS (10 * 60 * 1000) /* delivered_retention is applied this often */
#define WAL_HEADER 32 /* bytes (https://www.sqlite.org/fileformat2.html#walformat) */
#define WAL_FRAME_HEADER 24

struct space {
	const struct config *cfg;
	struct spool *sp;
	char *state_dir;
	struct statefile *sf; /* its region of the state file; NULL until published */
	enum space_state state;
	int64_t since;       /* wall clock, seconds: when the pause began */
	int64_t paused_ms;   /* monotonic */
	int64_t next_try_ms; /* monotonic */
	char detail[512];
	int64_t pruned; /* pruned early since the last log line about it */
	int64_t pruned_log_ms;
	int64_t next_expire_ms;  /* monotonic: when delivered_retention is applied next; 0: now */
	int64_t pause_log_ms[3]; /* per state: the last time its pause was logged at warning */
	int pause_loud; /* this pause was logged at warning (not a repeat within a minute) */
	int measure_warned;
	int write_warned;
	int64_t
	    next_beat_ms; /* monotonic: the state is written again by then (statefile_beat_ms) */
};

struct room {
	struct spool_usage u;
	int64_t fs_free; /* bytes */
	int64_t used;    /* bytes of pages in use */
	int64_t room;    /* bytes the spool may still grow by */
};

/* "12.3 MiB", "512 KiB", "100 B" (binary units, as the size options). */
static void fmt_bytes(int64_t v, char *buf, size_t len)
{
	double d = (double)(v < 0 ? -v : v);
	const char *sign = v < 0 ? "-" : "";

	if (d >= 1024.0 * 1024 * 1024)
		snprintf(buf, len, "%s%.1f GiB", sign, d / (1024.0 * 1024 * 1024));
	else if (d >= 1024.0 * 1024)
		snprintf(buf, len, "%s%.1f MiB", sign, d / (1024.0 * 1024));
	else if (d >= 1024.0)
		snprintf(buf, len, "%s%.0f KiB", sign, d / 1024.0);
	else
		snprintf(buf, len, "%s%.0f B", sign, d);
}

void space_fmt_bytes(int64_t v, char *buf, size_t len)
{
	fmt_bytes(v, buf, len);
}

const char *space_state_name(enum space_state st)
{
	switch (st) {
	case SPACE_READING:
		return "reading";
	case SPACE_DISK_FULL:
		return "disk-full";
	case SPACE_LIMIT:
		return "spool-limit";
	case SPACE_STOPPED:
		return "stopped";
	}
	return "?";
}

/* ---- the state file ------------------------------------------------------------------------ */

static void state_write(struct space *s, enum space_state st)
{
	char buf[STATEFILE_REGION_BYTES];

	if (s->sf == NULL)
		return;
	s->next_beat_ms = clock_mono_ms() + statefile_beat_ms(s->cfg->agent.stale_after_ms);
	snprintf(buf, sizeof(buf),
	         "# logmeter ingest state: written in place by the agent, read by `logmeter "
	         "status`\npid %ld\ningest %s\nsince %" PRId64 "\ndetail %s\n",
	         (long)getpid(), space_state_name(st), s->since, s->detail);
	if (statefile_write(s->sf, buf) != 0) {
		if (!s->write_warned)
			log_warn("cannot write %s/%s: %s; `logmeter status` may show an old ingest "
			         "state",
			         s->state_dir, STATEFILE_NAME, strerror(errno));
		s->write_warned = 1;
	}
}

static void status_line(const char *key, const char *v, void *ud)
{
	struct space_status *out = ud;

	if (strcmp(key, "pid") == 0) {
		out->pid = strtol(v, NULL, 10);
	} else if (strcmp(key, "written") == 0) {
		out->written = strtoll(v, NULL, 10);
	} else if (strcmp(key, "since") == 0) {
		out->since = strtoll(v, NULL, 10);
	} else if (strcmp(key, "detail") == 0) {
		snprintf(out->detail, sizeof(out->detail), "%s", v);
	} else if (strcmp(key, "ingest") == 0) {
		for (int st = SPACE_READING; st <= SPACE_STOPPED; st++)
			if (strcmp(v, space_state_name((enum space_state)st)) == 0)
				out->state = (enum space_state)st;
	}
}

int space_status_read(const char *state_dir, struct space_status *out, char *err, size_t errlen)
{
	char buf[STATEFILE_REGION_BYTES + 1];
	int rc;

	if (state_dir == NULL || out == NULL) {
		err_set(err, errlen, "space_status_read: invalid arguments");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	out->state = SPACE_STOPPED;
	rc = statefile_read(state_dir, STATEFILE_INGEST, buf, sizeof(buf), err, errlen);
	if (rc <= 0)
		return rc;
	statefile_parse(buf, status_line, out);
	out->found = 1;
	out->running = out->state != SPACE_STOPPED && statefile_pid_alive(out->pid);
	return 0;
}

/* ---- measuring and making room ------------------------------------------------------------- */

static int measure(struct space *s, struct room *r, char *err, size_t errlen)
{
	struct statvfs vfs;
	int64_t ps, db_growth, wal_full, wal_growth;

	if (spool_usage(s->sp, &r->u, err, errlen) != 0)
		return -1;
	if (statvfs(s->state_dir, &vfs) != 0) {
		err_set(err, errlen, "statvfs %s: %s", s->state_dir, strerror(errno));
		return -1;
	}
	ps = r->u.page_size;
	r->fs_free = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
	r->used = (r->u.pages - r->u.free_pages) * ps;
	db_growth = r->u.pages * ps - r->u.db_file;
	if (db_growth < 0)
		db_growth = 0;
	wal_full = r->u.wal_autocheckpoint > 0
	               ? WAL_HEADER + r->u.wal_autocheckpoint * (ps + WAL_FRAME_HEADER)
	               : 0;
	wal_growth = wal_full - r->u.wal_file;
	if (wal_growth < 0)
		wal_growth = 0;
	r->room = r->fs_free - db_growth - wal_growth + r->u.free_pages * ps;
	return 0;
}

/* The room a pause for a full disk waits for. */
static int64_t resume_room(const struct space *s)
{
	int64_t min_free = s->cfg->agent.min_free_bytes;
	int64_t want = min_free + min_free / 2;

	if (s->state == SPACE_DISK_FULL && want < SPACE_RESUME_MIN)
		want = SPACE_RESUME_MIN;
	return want;
}

/* The pause the numbers call for: at the limits themselves, or (`resume`) at the marks below
 * them that a pause waits for. */
static enum space_state over(const struct space *s, const struct room *r, int resume)
{
	int64_t limit = s->cfg->agent.max_spool_bytes;
	int64_t want = resume ? resume_room(s) : s->cfg->agent.min_free_bytes;

	if (want > 0 && r->room < want)
		return SPACE_DISK_FULL;
	if (limit > 0 && r->used >= limit - (resume ? limit / 10 : 0))
		return SPACE_LIMIT;
	return SPACE_READING;
}

static void describe(const struct space *s, enum space_state st, const struct room *r, char *buf,
                     size_t len)
{
	char a[32], b[32];

	if (st == SPACE_LIMIT) {
		fmt_bytes(r->used, a, sizeof(a));
		fmt_bytes(s->cfg->agent.max_spool_bytes, b, sizeof(b));
		snprintf(buf, len, "%s in use, max_spool_bytes %s", a, b);
	} else {
		fmt_bytes(r->room, a, sizeof(a));
		fmt_bytes(s->cfg->agent.min_free_bytes, b, sizeof(b));
		snprintf(buf, len, "room for %s more, min_free_bytes %s", a, b);
	}
}

static void log_pruned(struct space *s, int64_t now, int force)
{
	if (s->pruned == 0 || (!force && now - s->pruned_log_ms < SPACE_LOG_EVERY_MS))
		return;
	log_warn("pruned %" PRId64 " delivered events before their delivered_retention to make "
	         "room in the spool (they are in Stripe; pending and dead events are kept)",
	         s->pruned);
	s->pruned = 0;
	s->pruned_log_ms = now;
}

/* Prunes delivered events, oldest delivery first, while the numbers are above the resume marks
 * (and *r is measured again after each chunk). Returns 0, or -1 if measuring failed. */
static int relieve(struct space *s, struct room *r, char *err, size_t errlen)
{
	int64_t now = clock_mono_ms();
	char e[512];

	for (int i = 0; i < SPACE_PRUNE_CHUNKS_MAX; i++) {
		enum space_state st = over(s, r, 1);
		struct spool_pruned n;
		int64_t excess, chunk;

		if (st == SPACE_READING)
			break;
		/* An event takes 20 to 40 bytes of its batch: deleting excess/16 of them frees the
		 * excess without pruning far below the mark. */
		excess = st == SPACE_LIMIT ? r->used - (s->cfg->agent.max_spool_bytes -
		                                        s->cfg->agent.max_spool_bytes / 10)
		                           : resume_room(s) - r->room;
		chunk = excess / SPACE_ROW_BYTES_MIN + 1;
		if (chunk < SPACE_PRUNE_CHUNK_MIN)
			chunk = SPACE_PRUNE_CHUNK_MIN;
		if (chunk > SPACE_PRUNE_CHUNK)
			chunk = SPACE_PRUNE_CHUNK;
		if (spool_prune(s->sp, &(struct spool_prune){.oldest = chunk}, &n, e, sizeof(e)) !=
		    0) {
			log_debug("%s", e);
			break;
		}
		if (n.early == 0)
			break;
		s->pruned += n.early;
		if (measure(s, r, err, errlen) != 0)
			return -1;
	}
	log_pruned(s, now, 0);
	return 0;
}

static void pause_reading(struct space *s, enum space_state st, const char *detail)
{
	int64_t now = clock_mono_ms();
	int loud = s->pause_log_ms[st] == 0 || now - s->pause_log_ms[st] >= SPACE_LOG_EVERY_MS;
	enum log_level level = loud ? LOG_LVL_WARN : LOG_LVL_DEBUG;

	s->state = st;
	s->since = (int64_t)time(NULL);
	s->paused_ms = now;
	s->next_try_ms = now + SPACE_TICK_MS;
	snprintf(s->detail, sizeof(s->detail), "%s", detail);
	s->pause_loud = loud; /* its end is logged at the same level */
	if (loud)
		s->pause_log_ms[st] = now;
	if (st == SPACE_LIMIT)
		log_msg(
		    level,
		    "spool limit reached (%s): reading paused; nothing is lost, resuming when the "
		    "sender has delivered events (%s)",
		    spool_path(s->sp), detail);
	else
		log_msg(
		    level,
		    "spool disk full (%s): reading paused; nothing is lost, resuming when space "
		    "is free (%s)",
		    spool_path(s->sp), detail);
	state_write(s, st);
	/* systemctl status shows it too. */
	health_notify("STATUS=reading paused (%s): %s",
	              st == SPACE_LIMIT ? "spool limit reached" : "disk full", detail);
}

static void resume_reading(struct space *s, const struct room *r)
{
	int64_t now = clock_mono_ms();
	char d[256];

	describe(s, s->state, r, d, sizeof(d));
	log_pruned(s, now, 0);
	log_msg(s->pause_loud ? LOG_LVL_INFO : LOG_LVL_DEBUG,
	        "spool %s has room again (%s): reading resumed after %" PRId64 " ms",
	        spool_path(s->sp), d, now - s->paused_ms);
	s->state = SPACE_READING;
	s->since = (int64_t)time(NULL);
	s->detail[0] = '\0';
	state_write(s, SPACE_READING);
	health_notify("STATUS=running: %zu sources, %zu rules", s->cfg->n_sources, s->cfg->n_rules);
}

/* ---- public -------------------------------------------------------------------------------- */

struct space *space_new(const struct config *cfg, struct spool *sp, char *err, size_t errlen)
{
	struct space *s;

	if (cfg == NULL || sp == NULL || cfg->agent.state_dir == NULL) {
		err_set(err, errlen, "space_new: invalid arguments");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto nomem;
	s->cfg = cfg;
	s->sp = sp;
	s->state = SPACE_READING;
	s->since = (int64_t)time(NULL);
	s->state_dir = strdup(cfg->agent.state_dir);
	if (s->state_dir == NULL)
		goto nomem;
	return s;
nomem:
	err_set(err, errlen, "out of memory");
	space_free(s);
	return NULL;
}

void space_publish(struct space *s)
{
	char err[512] = "";

	if (s == NULL || s->sf != NULL)
		return;
	s->sf = statefile_open(s->state_dir, STATEFILE_INGEST, err, sizeof(err));
	if (s->sf == NULL) {
		log_warn("%s; `logmeter status` will not show whether reading is paused", err);
		return;
	}
	state_write(s, s->state);
}

void space_free(struct space *s)
{
	if (s == NULL)
		return;
	if (s->sf != NULL) {
		s->since = (int64_t)time(NULL);
		s->detail[0] = '\0';
		state_write(s, SPACE_STOPPED);
		statefile_free(s->sf);
	}
	log_pruned(s, clock_mono_ms(), 1);
	free(s->state_dir);
	free(s);
}

int space_admit(struct space *s, char *err, size_t errlen)
{
	struct room r;
	enum space_state st;
	char e[512], d[256];

	if (s == NULL)
		return 0;
	space_beat(s); /* a long backlog is read batch by batch, without a turn of the loop */
	if (s->state != SPACE_READING) {
		err_set(err, errlen, "reading paused: %s", s->detail);
		return -1;
	}
	if (s->cfg->agent.min_free_bytes <= 0 && s->cfg->agent.max_spool_bytes <= 0)
		return 0;
	if (measure(s, &r, e, sizeof(e)) != 0)
		goto unmeasured;
	if (over(s, &r, 0) == SPACE_READING)
		return 0;
	if (relieve(s, &r, e, sizeof(e)) != 0)
		goto unmeasured;
	st = over(s, &r, 0);
	if (st == SPACE_READING)
		return 0;
	describe(s, st, &r, d, sizeof(d));
	pause_reading(s, st, d);
	err_set(err, errlen, "reading paused: %s", s->detail);
	return -1;
unmeasured:
	/* Not knowing the room is no reason to stop: a full disk still fails the commit. */
	if (!s->measure_warned)
		log_warn("cannot measure the spool's room: %s; reading goes on", e);
	s->measure_warned = 1;
	return 0;
}

void space_commit_failed(struct space *s, const char *why)
{
	if (s == NULL || s->state != SPACE_READING || !spool_failed_full(s->sp))
		return;
	pause_reading(s, SPACE_DISK_FULL, why != NULL ? why : "a commit failed: disk full");
}

int space_paused(const struct space *s)
{
	return s != NULL && s->state != SPACE_READING;
}

void space_expire(struct space *s)
{
	char err[512] = "";
	struct spool_pruned n;
	int64_t now, retention;

	if (s == NULL)
		return;
	now = clock_mono_ms();
	if (s->next_expire_ms != 0 && now < s->next_expire_ms)
		return;
	s->next_expire_ms = now + SPACE_EXPIRE_EVERY_MS;
	retention = s->cfg->agent.delivered_retention;
	if (retention < 0)
		return;
	/* The cut-off is a date: the wall clock (docs/architecture.md, "Time"). */
	if (spool_prune(s->sp,
	                &(struct spool_prune){.delivered_before = (int64_t)time(NULL) - retention},
	                &n, err, sizeof(err)) != 0) {
		log_err("cannot prune delivered events from the spool: %s", err);
		return;
	}
	if (n.expired > 0)
		log_info("pruned %lld delivered events older than %lld s from the spool",
		         (long long)n.expired, (long long)retention);
}

void space_beat(struct space *s)
{
	if (s != NULL && s->sf != NULL && clock_mono_ms() >= s->next_beat_ms)
		state_write(s, s->state);
}

int space_poll(struct space *s, int64_t *wait_ms)
{
	struct room r;
	int64_t now, wait;
	int resumed = 0;
	char e[512];

	if (wait_ms != NULL)
		*wait_ms = -1;
	if (s == NULL)
		return 0;
	space_expire(s);
	space_beat(s);
	now = clock_mono_ms();
	wait = s->next_expire_ms - now;
	if (s->sf != NULL && s->next_beat_ms - now < wait)
		wait = s->next_beat_ms - now;
	if (s->state == SPACE_READING)
		goto out;
	if (now < s->next_try_ms) {
		if (s->next_try_ms - now < wait)
			wait = s->next_try_ms - now;
		goto out;
	}
	s->next_try_ms = now + SPACE_TICK_MS;
	if (SPACE_TICK_MS < wait)
		wait = SPACE_TICK_MS;
	/* After a failed commit the last checkpoint may have failed too: the WAL can only start
	 * over once it is copied into spool.db. */
	if (s->state == SPACE_DISK_FULL && spool_checkpoint(s->sp, e, sizeof(e)) != 0)
		log_debug("%s", e);
	if (measure(s, &r, e, sizeof(e)) != 0 || relieve(s, &r, e, sizeof(e)) != 0) {
		log_debug("cannot measure the spool's room: %s", e);
		goto out;
	}
	if (over(s, &r, 1) != SPACE_READING)
		goto out;
	resume_reading(s, &r);
	resumed = 1;
	wait = s->next_expire_ms - now;
out:
	if (wait_ms != NULL)
		*wait_ms = wait > 0 ? wait : 0;
	return resumed;
}
