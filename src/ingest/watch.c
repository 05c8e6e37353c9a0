/* watch: the inotify loop of the ingest half.
 *
 * Directories are watched, not files: a watch on the directory part of each source's glob
 * reports creations, renames, deletions and writes of every file in it. A file reached through a
 * symlink also gets a watch of its own, since writes to a target in another directory are not
 * reported to the link's directory. A tail is found for an event by (directory, name); its
 * identity for a glob match is (source, dev, ino), never the path.
 *
 * A file that is renamed or deleted is read to its end at once. A deleted one (no links left) is
 * then closed: a deleted file held open fills the disk. One that was renamed to a name its glob
 * no longer matches (rotated away) stays, because the writer may still append to it until it
 * reopens its log; it is read on every change and released ("drained") by a rescan that finds it
 * read to its end and unchanged for rotate_wait. At start, a record still "reading" that no glob
 * finds was rotated while the agent was stopped: it is looked for by inode in its directory.
 *
 * Descriptors: at most max_open_files tails hold one. Before another is opened, the least
 * recently read tail whose name can lead back to it (not a symlink) is suspended; a suspended
 * tail is resumed by its path when an event or a rescan says it changed, its identity checked
 * again by tail.c; if its path leads elsewhere, it is looked for by inode in its directory.
 *
 * inotify is a hint: every rescan (rescan_interval_ms, and after IN_Q_OVERFLOW, a directory
 * created or moved) expands the globs again, and reads every file that changed. A directory that
 * cannot be watched (ENOSPC: fs.inotify.max_user_watches) has its files stat'ed every
 * WATCH_POLL_MS instead. A glob whose directory does not exist yet has its nearest existing
 * ancestor watched, so that the directory's creation triggers a rescan. */
#include "ingest/watch.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/health.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/path.h"
#include "ingest/space.h"

#define WATCH_DIR_MASK                                                                             \
	(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE |        \
	 IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define WATCH_FILE_MASK (IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_MOVE_SELF)
#define WATCH_EVBUF (64 * 1024)
#define WATCH_POLL_MS 1000 /* stat period of files without an inotify watch (ENOSPC) */

struct wdir {
	int wd;
	char *path; /* as the glob of the source's directory part spelled it */
	dev_t dev;
	ino_t ino;
};

struct wtail {
	struct tail *t;
	dev_t dir_dev; /* the directory its name is in */
	ino_t dir_ino;
	char *base;      /* its name there; NULL after it was moved to a name not known yet */
	int fwd;         /* the watch on the file itself (symlinked paths), or -1 */
	uint32_t cookie; /* IN_MOVED_FROM's cookie: IN_MOVED_TO tells its new name */
	int orphan;      /* its glob no longer matches it: released once drained and not growing */
	off_t orphan_size;    /* its size when last seen changing, -1 before */
	int64_t orphan_since; /* monotonic ms: when orphan_size was last seen to change */
	off_t read_size;      /* its size before its last successful read, -1 before */
	int64_t active; /* monotonic ms of its last read: the least recent is suspended first */
	unsigned seen;  /* the rescan generation that last matched it */
	struct timespec read_mtime; /* its mtime then */
	int link;                   /* its path is a symlink */
	char *real;                 /* then the path of its target when opened, else NULL */
	int dirty;                  /* changed: to be read after the current batch of events */
	int failing;                /* its last read failed (logged once, until it recovers) */
};

/* A path that could not be opened or watched, logged once per distinct error. */
struct wfail {
	char *path;
	char *msg;
	unsigned seen;
	int at_start; /* it failed in the first scan: it was there at start */
};

struct watch {
	struct tail_ctx ctx;
	int ifd, efd;
	atomic_int stop;
	struct wdir *dirs;
	size_t n_dirs, cap_dirs;
	struct wtail *tails;
	size_t n_tails, cap_tails;
	struct wfail *fails;
	size_t n_fails, cap_fails;
	unsigned gen;
	int scanned; /* the first scan is done: files found from now on are new */
	int enospc_warned;
	int polling; /* some directory has no watch (ENOSPC): its files are stat'ed */
	int need_scan;
	int64_t next_scan; /* monotonic, ms */
	int64_t next_poll; /* monotonic, ms, while polling */
	size_t n_open;     /* tails holding a descriptor */
	size_t max_open;   /* agent.max_open_files */
	int limit_warned;
	char *evbuf;
};


static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	ncap = *cap > 0 ? *cap * 2 : 16;
	p = realloc(*arr, ncap * size);
	if (p == NULL)
		return -1;
	*arr = p;
	*cap = ncap;
	return 0;
}


/* The directory part of a path or pattern: "." without a '/', "/" for "/x". */


static int excluded(const struct config_source *src, const char *base)
{
	return src->exclude != NULL && src->exclude[0] != '\0' &&
	       fnmatch(src->exclude, base, 0) == 0;
}

/* ---- failures, logged once per path and distinct error ------------------------------------- */

static long fail_find(const struct watch *w, const char *path)
{
	for (size_t i = 0; i < w->n_fails; i++)
		if (strcmp(w->fails[i].path, path) == 0)
			return (long)i;
	return -1;
}

static void fail_remove(struct watch *w, size_t i)
{
	free(w->fails[i].path);
	free(w->fails[i].msg);
	w->fails[i] = w->fails[--w->n_fails];
}

static void fail_log(struct watch *w, const char *path, const char *msg)
{
	long i;
	char *m;

	if (msg == NULL)
		msg = "unknown error";
	i = fail_find(w, path);

	if (i >= 0 && strcmp(w->fails[i].msg, msg) == 0) {
		w->fails[i].seen = w->gen;
		return;
	}
	log_warn("%s (retried at every rescan)", msg);
	m = strdup(msg);
	if (m == NULL)
		return;
	if (i >= 0) {
		free(w->fails[i].msg);
		w->fails[i].msg = m;
		w->fails[i].seen = w->gen;
		return;
	}
	if (grow((void **)&w->fails, &w->cap_fails, w->n_fails, sizeof(*w->fails)) < 0 ||
	    (w->fails[w->n_fails].path = strdup(path)) == NULL) {
		free(m);
		return;
	}
	w->fails[w->n_fails].msg = m;
	w->fails[w->n_fails].seen = w->gen;
	w->fails[w->n_fails].at_start = !w->scanned;
	w->n_fails++;
}

/* ---- directories ---------------------------------------------------------------------------- */

static long dir_find_wd(const struct watch *w, int wd)
{
	for (size_t i = 0; i < w->n_dirs; i++)
		if (w->dirs[i].wd == wd)
			return (long)i;
	return -1;
}

static void dir_remove(struct watch *w, size_t i)
{
	free(w->dirs[i].path);
	w->dirs[i] = w->dirs[--w->n_dirs];
}

static void watch_dir(struct watch *w, const char *path)
{
	struct stat st;
	char msg[PATH_MAX + 128];
	char *dup;
	int wd;

	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	for (size_t i = 0; i < w->n_dirs; i++)
		if (w->dirs[i].dev == st.st_dev && w->dirs[i].ino == st.st_ino)
			return;
	wd = inotify_add_watch(w->ifd, path, WATCH_DIR_MASK);
	if (wd < 0) {
		if (errno == ENOSPC) {
			/* Not a full disk: the per-user watch limit (inotify(7)). */
			if (!w->enospc_warned)
				log_warn(
				    "%s: cannot watch: the inotify watch limit "
				    "(fs.inotify.max_user_watches) is reached; files in "
				    "directories without a watch are checked with stat(2) every "
				    "%d ms, new files in them are found at each rescan",
				    path, WATCH_POLL_MS);
			w->enospc_warned = 1;
			if (!w->polling)
				w->next_poll = clock_mono_ms() + WATCH_POLL_MS;
			w->polling = 1;
			return;
		}
		snprintf(msg, sizeof(msg), "%s: cannot watch the directory: %s", path,
		         strerror(errno));
		fail_log(w, path, msg);
		return;
	}
	if (dir_find_wd(w, wd) >= 0)
		return;
	dup = strdup(path);
	if (dup == NULL || grow((void **)&w->dirs, &w->cap_dirs, w->n_dirs, sizeof(*w->dirs)) < 0) {
		free(dup);
		inotify_rm_watch(w->ifd, wd);
		return;
	}
	w->dirs[w->n_dirs++] =
	    (struct wdir){.wd = wd, .path = dup, .dev = st.st_dev, .ino = st.st_ino};
}

/* No directory matches the source's directory part yet: watches its nearest existing ancestor
 * (from the part before the first glob character up), so that the creation of the missing
 * directory (IN_CREATE with IN_ISDIR) triggers a rescan at once rather than at the next periodic
 * one. */
static void watch_ancestor(struct watch *w, const char *dpat)
{
	char *p = strdup(dpat), *g, *s;
	struct stat st;

	if (p == NULL)
		return;
	g = strpbrk(p, "*?[");
	if (g != NULL) {
		*g = '\0';
		s = strrchr(p, '/');
		if (s == NULL)
			p[0] = '\0';
		else
			s[s == p ? 1 : 0] = '\0';
	}
	while (p[0] != '\0') {
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
			watch_dir(w, p);
			break;
		}
		s = strrchr(p, '/');
		if (s == NULL || strcmp(p, "/") == 0)
			break;
		s[s == p ? 1 : 0] = '\0';
	}
	free(p);
}

static void watch_dirs(struct watch *w, const struct config_source *src)
{
	char *dpat = path_dir(src->path);
	glob_t g;

	if (dpat == NULL)
		return;
	memset(&g, 0, sizeof(g));
	if (glob(dpat, GLOB_ONLYDIR, NULL, &g) == 0)
		for (size_t i = 0; i < g.gl_pathc; i++)
			watch_dir(w, g.gl_pathv[i]);
	else
		watch_ancestor(w, dpat);
	globfree(&g);
	free(dpat);
}

/* Whether changes of tail wt's file are reported by inotify: a watch on the file itself, or (not
 * a symlinked path) one on the directory its name is in. */
static int tail_watched(const struct watch *w, const struct wtail *wt)
{
	if (wt->fwd >= 0)
		return 1;
	if (wt->base == NULL || wt->link)
		return 0;
	for (size_t i = 0; i < w->n_dirs; i++)
		if (w->dirs[i].dev == wt->dir_dev && w->dirs[i].ino == wt->dir_ino)
			return 1;
	return 0;
}

/* ---- tails ---------------------------------------------------------------------------------- */

static long tail_find(const struct watch *w, size_t source, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < w->n_tails; i++) {
		const struct tail *t = w->tails[i].t;

		if (tail_source_index(t) == source && tail_dev(t) == dev && tail_ino(t) == ino)
			return (long)i;
	}
	return -1;
}

/* Sets where the tail's name is: the directory of `path` and its base name. */
static void tail_place(struct wtail *wt, const char *path)
{
	char *dir = path_dir(path), *base = strdup(path_base(path));
	struct stat st;

	free(wt->base);
	wt->base = NULL;
	if (dir != NULL && base != NULL && stat(dir, &st) == 0) {
		wt->dir_dev = st.st_dev;
		wt->dir_ino = st.st_ino;
		wt->base = base;
		base = NULL;
	}
	free(base);
	free(dir);
}

/* Lets tail i go: its record takes `state` (drained or gone), its descriptor and watch are
 * closed, and the last entry moves into its place. */
static void release(struct watch *w, size_t i, const char *why, enum spool_file_state state)
{
	struct wtail *wt = &w->tails[i];
	char err[512];
	int shared = 0;

	if (tail_mark(wt->t, state, err, sizeof(err)) < 0)
		log_warn("%s", err);
	log_info("%s: %s: released (%s)", tail_path(wt->t), why, spool_file_state_name(state));
	if (wt->fwd >= 0) {
		for (size_t j = 0; j < w->n_tails; j++)
			if (j != i && w->tails[j].fwd == wt->fwd)
				shared = 1;
		if (!shared)
			inotify_rm_watch(w->ifd, wt->fwd);
	}
	if (tail_is_open(wt->t))
		w->n_open--;
	tail_free(wt->t);
	free(wt->base);
	free(wt->real);
	w->tails[i] = w->tails[--w->n_tails];
}

/* A tail may be suspended (its descriptor closed) if it can be opened again by its name: its
 * name is known and is not a symlink (whose target may change). Whatever it has not read yet is
 * read when it is resumed: a change marks it dirty, and a rescan finds its size changed. */
static int suspendable(const struct wtail *wt)
{
	return tail_is_open(wt->t) && wt->base != NULL && !wt->link && wt->fwd < 0;
}

/* Keeps the open tails below max_open_files before one more is opened: suspends the least
 * recently read suspendable tail other than `except`. */
static void make_room(struct watch *w, size_t except)
{
	while (w->n_open >= w->max_open) {
		size_t best = SIZE_MAX;

		for (size_t j = 0; j < w->n_tails; j++) {
			const struct wtail *c = &w->tails[j];

			if (j == except || !suspendable(c))
				continue;
			if (best == SIZE_MAX || c->active < w->tails[best].active)
				best = j;
		}
		if (best == SIZE_MAX) {
			if (!w->limit_warned)
				log_warn(
				    "more than max_open_files (%zu) files must stay open (being "
				    "read, symlinked, or renamed out of sight): keeping them open",
				    w->max_open);
			w->limit_warned = 1;
			return;
		}
		log_debug("%s: idle: closed (max_open_files)", tail_path(w->tails[best].t));
		tail_suspend(w->tails[best].t);
		w->n_open--;
	}
}

/* Searches directory `dir` for the regular file with device `dev` and inode `ino`. Returns its
 * path (caller frees) or NULL. */
static char *find_ino(const char *dir, dev_t dev, ino_t ino)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char *found = NULL;

	if (d == NULL)
		return NULL;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		char *p;

		if ((ino_t)de->d_ino != ino)
			continue;
		p = path_join(dir, de->d_name);
		if (p != NULL && lstat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == dev &&
		    st.st_ino == ino) {
			found = p;
			break;
		}
		free(p);
	}
	closedir(d);
	return found;
}

/* The path of suspended tail i no longer leads to its file: it was renamed or deleted while it
 * was closed (unnoticed: polled, or the events were lost). Looks for it in the same directory.
 * Returns 0 if found (the tail follows the new name; a rescan decides whether its glob still
 * matches it) or 1 if not (released as gone: tail i is now another tail). */
static int relocate(struct watch *w, size_t i)
{
	struct wtail *wt = &w->tails[i];
	char *dir = path_dir(tail_path(wt->t)), e[1024];
	char *p = dir != NULL ? find_ino(dir, tail_dev(wt->t), tail_ino(wt->t)) : NULL;

	free(dir);
	if (p == NULL) {
		release(w, i, "deleted or moved away while closed", SPOOL_FILE_GONE);
		return 1;
	}
	log_info("%s: renamed to %s while closed", tail_path(wt->t), p);
	if (tail_rename(wt->t, p, e, sizeof(e)) < 0)
		log_warn("%s", e);
	tail_place(wt, p);
	free(p);
	w->need_scan = 1;
	return 0;
}

/* Opens a suspended tail again (making room first). Returns 0, -1 (logged, retried later), or
 * 1 if it was released (tail i is now another tail). */
static int resume(struct watch *w, size_t i, char *err, size_t errlen)
{
	struct wtail *wt = &w->tails[i];
	int rc;

	if (tail_is_open(wt->t))
		return 0;
	make_room(w, i);
	rc = tail_resume(wt->t, err, errlen);
	if (rc > 0) {
		if (relocate(w, i) > 0)
			return 1;
		rc = tail_resume(wt->t, err, errlen);
		if (rc > 0) {
			release(w, i, "replaced while closed", SPOOL_FILE_GONE);
			return 1;
		}
	}
	if (rc < 0)
		return -1;
	w->n_open++;
	return 0;
}

/* Reads a tail to its end (opening it again if it was suspended), logging a failure once until
 * it recovers. Returns 0, -1, or 1 if the tail was released (tail i is now another tail). */
static int read_tail(struct watch *w, size_t i, char *err, size_t errlen)
{
	struct wtail *wt = &w->tails[i];
	char e[1024] = "";
	struct stat st;
	int rc;

	wt->dirty = 0;
	if (space_paused(w->ctx.space))
		goto paused;
	rc = resume(w, i, e, sizeof(e));
	if (rc > 0)
		return 1;
	errno = 0;
	if (rc == 0 && tail_stat(wt->t, &st) == 0 && tail_read(wt->t, e, sizeof(e)) >= 0) {
		if (wt->failing)
			log_info("%s: reading again", tail_path(wt->t));
		wt->failing = 0;
		wt->read_size = st.st_size;
		wt->read_mtime = st.st_mtim;
		wt->active = clock_mono_ms();
		return 0;
	}
	if (errno == EMEDIUMTYPE) {
		/* A compressed file that was empty when opened: let go of it, and remember why
		 * (opening it again is refused). */
		fail_log(w, tail_path(wt->t), e);
		release(w, i, "compressed", SPOOL_FILE_GONE);
		return 1;
	}
	if (space_paused(w->ctx.space))
		goto paused;
	if (e[0] == '\0')
		snprintf(e, sizeof(e), "%s: %s", tail_path(wt->t), strerror(errno));
	if (!wt->failing)
		log_err("%s (retried at the next change or rescan)", e);
	else
		log_debug("%s", e);
	wt->failing = 1;
	err_set(err, errlen, "%s", e);
	return -1;
paused:
	/* No room in the spool (space.c logged why): read, whole, when reading resumes. */
	wt->dirty = 1;
	err_set(err, errlen, "%s: reading paused", tail_path(wt->t));
	return -1;
}

/* Whether tail i's file may have changed since its last read: its size or mtime differ, or its
 * path no longer leads to it (a suspended tail). */
static int changed(struct watch *w, size_t i)
{
	struct wtail *wt = &w->tails[i];
	struct stat st;

	if (wt->read_size < 0 || tail_stat(wt->t, &st) < 0)
		return 1;
	return st.st_size != wt->read_size || st.st_nlink == 0 ||
	       st.st_mtim.tv_sec != wt->read_mtime.tv_sec ||
	       st.st_mtim.tv_nsec != wt->read_mtime.tv_nsec;
}

/* After a successful read: closes the file if it was deleted. Returns 1 if released. */
static int release_if_deleted(struct watch *w, size_t i)
{
	struct stat st;

	if (tail_is_open(w->tails[i].t) && tail_stat(w->tails[i].t, &st) == 0 && st.st_nlink == 0) {
		release(w, i, "deleted and read to its end", SPOOL_FILE_GONE);
		return 1;
	}
	return 0;
}

/* Opens a tail for `path` of source `si`. Returns its index, -1 if the file cannot be opened
 * now (logged), -2 on a spool error (in `err`). */
static long open_path(struct watch *w, size_t si, const char *path, char *err, size_t errlen)
{
	char e[1024] = "";
	long fi = fail_find(w, path);
	unsigned flags = w->scanned && !(fi >= 0 && w->fails[fi].at_start) ? TAIL_OPEN_CREATED : 0;
	struct tail *t;
	struct wtail *wt;
	struct stat st;
	int ferr = 0;

	make_room(w, SIZE_MAX);
	t = tail_open_flags(&w->ctx, path, si, flags, &ferr, e, sizeof(e));
	if (t == NULL) {
		fail_log(w, path, e);
		if (ferr != 0)
			return -1;
		err_set(err, errlen, "%s", e);
		return -2;
	}
	if (fi >= 0)
		fail_remove(w, (size_t)fi);
	if (grow((void **)&w->tails, &w->cap_tails, w->n_tails, sizeof(*w->tails)) < 0) {
		tail_free(t);
		log_err("%s: out of memory", path);
		return -1;
	}
	wt = &w->tails[w->n_tails];
	memset(wt, 0, sizeof(*wt));
	wt->t = t;
	wt->fwd = -1;
	wt->orphan_size = -1;
	wt->read_size = -1;
	wt->active = clock_mono_ms();
	wt->seen = w->gen;
	tail_place(wt, path);
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		wt->link = 1;
		wt->real = realpath(path, NULL);
		wt->fwd = inotify_add_watch(w->ifd, path, WATCH_FILE_MASK);
		if (wt->fwd < 0 && errno == ENOSPC) {
			if (!w->enospc_warned)
				log_warn("%s: cannot watch: the inotify watch limit "
				         "(fs.inotify.max_user_watches) is reached; it is checked "
				         "with stat(2) every %d ms",
				         path, WATCH_POLL_MS);
			w->enospc_warned = 1;
			if (!w->polling)
				w->next_poll = clock_mono_ms() + WATCH_POLL_MS;
			w->polling = 1;
		}
	}
	w->n_tails++;
	w->n_open++;
	log_info("%s: tailing for source %s from offset %jd", path, w->ctx.cfg->sources[si].name,
	         (intmax_t)tail_file(t)->offset);
	return (long)(w->n_tails - 1);
}

/* Whether the tail's current path still names its file. */
static int path_still_names(const struct tail *t)
{
	struct stat st;

	return stat(tail_path(t), &st) == 0 && st.st_dev == tail_dev(t) && st.st_ino == tail_ino(t);
}

/* A glob match `path` of source `si` is the file of tail i: note it, follow a rename. */
static void matched_again(struct watch *w, size_t i, const char *path)
{
	struct wtail *wt = &w->tails[i];
	char e[1024];

	wt->seen = w->gen;
	if (wt->orphan) {
		log_info("%s: matched again by its glob", path);
		wt->orphan = 0;
		wt->orphan_size = -1;
	}
	if (strcmp(tail_path(wt->t), path) != 0 && (wt->base == NULL || !path_still_names(wt->t))) {
		if (tail_rename(wt->t, path, e, sizeof(e)) < 0)
			log_warn("%s", e);
		tail_place(wt, path);
	}
}

static int scan_source(struct watch *w, size_t si, char *err, size_t errlen)
{
	const struct config_source *src = &w->ctx.cfg->sources[si];
	glob_t g;
	int rc = 0, grc;

	watch_dirs(w, src);
	memset(&g, 0, sizeof(g));
	grc = glob(src->path, 0, NULL, &g);
	if (grc != 0 && grc != GLOB_NOMATCH) {
		char msg[PATH_MAX + 128];

		snprintf(msg, sizeof(msg), "source %s: cannot expand %s%s", src->name, src->path,
		         grc == GLOB_NOSPACE ? ": out of memory" : "");
		fail_log(w, src->path, msg);
		/* Not seeing its files now is no sign that they are gone. */
		for (size_t i = 0; i < w->n_tails; i++)
			if (tail_source_index(w->tails[i].t) == si)
				w->tails[i].seen = w->gen;
		globfree(&g);
		return 0;
	}
	for (size_t k = 0; grc == 0 && k < g.gl_pathc; k++) {
		const char *path = g.gl_pathv[k];
		struct stat st;
		long i;

		if (excluded(src, path_base(path)) || stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		i = tail_find(w, si, st.st_dev, st.st_ino);
		if (i >= 0) {
			matched_again(w, (size_t)i, path);
			continue;
		}
		if (open_path(w, si, path, err, errlen) == -2) {
			rc = -1;
			err = NULL; /* keep the first error */
		}
	}
	globfree(&g);
	return rc;
}

/* A symlinked tail whose link now leads elsewhere: it takes the name its file has now in the
 * directory of the link's old target (found by inode: it may have been rotated there), so that
 * its record and status name the file itself. */
static void name_target(struct wtail *wt)
{
	char *dir = wt->real != NULL ? path_dir(wt->real) : NULL, e[1024];
	char *p = dir != NULL ? find_ino(dir, tail_dev(wt->t), tail_ino(wt->t)) : NULL;

	if (p != NULL) {
		log_info("%s: its link leads elsewhere now: it is %s", tail_path(wt->t), p);
		if (tail_rename(wt->t, p, e, sizeof(e)) < 0)
			log_warn("%s", e);
		tail_place(wt, p);
	}
	free(p);
	free(dir);
}

/* ---- records of files not found at start ---------------------------------------------------- */

struct reading_list {
	struct spool_file *v;
	size_t n, cap;
};

static int collect_reading(const struct spool_file *f, void *ud)
{
	struct reading_list *l = ud;

	if (f->state != SPOOL_FILE_READING)
		return 0;
	if (grow((void **)&l->v, &l->cap, l->n, sizeof(*l->v)) < 0)
		return -1;
	l->v[l->n++] = *f;
	return 0;
}

/* At start, after the globs were expanded: a record still "reading" whose file no glob found was
 * rotated (renamed to a name its glob does not match) or deleted while logmeter was stopped.
 * Looks for it under its last path, then by inode in that directory (where rotation leaves it),
 * and reads it to its end as a rotated-away file; a file not found is marked gone. Returns 0 or
 * -1 (a spool error, in `err`). */
static int recover(struct watch *w, char *err, size_t errlen)
{
	struct reading_list l = {0};
	char e[1024];
	int rc = 0;

	if (spool_files_foreach(w->ctx.spool, collect_reading, &l, err, errlen) != 0) {
		free(l.v);
		return -1;
	}
	for (size_t k = 0; k < l.n; k++) {
		struct spool_file *f = &l.v[k];
		long si = config_source_find(w->ctx.cfg, f->source), i;
		struct stat st;
		char *path = NULL, *dir;

		if (si < 0 || tail_find(w, (size_t)si, (dev_t)f->dev, (ino_t)f->ino) >= 0 ||
		    fail_find(w, f->path) >= 0)
			continue;
		if (stat(f->path, &st) == 0 && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_dev == f->dev && (uint64_t)st.st_ino == f->ino) {
			path = strdup(f->path);
		} else if ((dir = path_dir(f->path)) != NULL) {
			path = find_ino(dir, (dev_t)f->dev, (ino_t)f->ino);
			free(dir);
		}
		if (path == NULL) {
			log_warn(
			    "%s: gone while logmeter was stopped (deleted, or moved out of its "
			    "directory): nothing after offset %jd of it can be read",
			    f->path, (intmax_t)f->offset);
			f->state = SPOOL_FILE_GONE;
			if (spool_file_update(w->ctx.spool, f, e, sizeof(e)) < 0)
				log_warn("%s", e);
			continue;
		}
		i = open_path(w, (size_t)si, path, rc == 0 ? err : e, rc == 0 ? errlen : sizeof(e));
		if (i == -2)
			rc = -1;
		if (i >= 0) {
			log_info("%s: rotated while logmeter was stopped: read to its end", path);
			w->tails[i].orphan = 1;
			w->tails[i].orphan_size = -1;
		}
		free(path);
	}
	free(l.v);
	return rc;
}

int watch_scan(struct watch *w, char *err, size_t errlen)
{
	char e[1024];
	int rc = 0;
	int64_t now, wait;

	if (w == NULL) {
		err_set(err, errlen, "watch_scan: invalid arguments");
		return -1;
	}
	w->gen++;
	w->need_scan = 0;
	for (size_t si = 0; si < w->ctx.cfg->n_sources; si++) {
		if (scan_source(w, si, rc == 0 ? err : NULL, errlen) < 0)
			rc = -1;
	}
	if (!w->scanned && recover(w, rc == 0 ? err : e, rc == 0 ? errlen : sizeof(e)) < 0)
		rc = -1;
	for (size_t i = 0; i < w->n_tails; i++) {
		struct wtail *wt = &w->tails[i];

		if (wt->seen != w->gen && !wt->orphan) {
			log_info("%s: no longer matched by its glob: read until it stops growing",
			         tail_path(wt->t));
			wt->orphan = 1;
			wt->orphan_size = -1;
			if (wt->link)
				name_target(wt);
		}
	}
	wait = w->ctx.cfg->agent.rotate_wait_ms;
	/* Backwards: release() moves the last entry into the released one's place. */
	for (size_t i = w->n_tails; i-- > 0;) {
		struct wtail *wt = &w->tails[i];
		struct stat st;
		int r = 0;

		if (atomic_load(&w->stop))
			break;
		/* A suspended file is opened only if it changed. */
		if (tail_is_open(wt->t) || changed(w, i))
			r = read_tail(w, i, rc == 0 ? err : e, rc == 0 ? errlen : sizeof(e));
		if (r > 0)
			continue;
		if (r < 0) {
			rc = -1;
			continue;
		}
		if (release_if_deleted(w, i) || !wt->orphan || tail_stat(wt->t, &st) < 0)
			continue;
		now = clock_mono_ms();
		if (st.st_size != wt->orphan_size) {
			wt->orphan_size = st.st_size;
			wt->orphan_since = now;
		} else if (now - wt->orphan_since >= wait) {
			if (tail_file(wt->t)->offset < st.st_size)
				log_info("%s: %jd bytes of an unfinished last line are left unread",
				         tail_path(wt->t),
				         (intmax_t)(st.st_size - tail_file(wt->t)->offset));
			release(w, i, "rotated away, read to its end and unchanged for rotate_wait",
			        SPOOL_FILE_DRAINED);
		}
	}
	for (size_t i = w->n_fails; i-- > 0;)
		if (w->fails[i].seen != w->gen)
			fail_remove(w, i);
	w->scanned = 1;
	w->next_scan = clock_mono_ms() + w->ctx.cfg->agent.rescan_interval_ms;
	return rc;
}

/* ---- events --------------------------------------------------------------------------------- */

static void mark_dirty(struct watch *w, const struct wdir *d, const char *name)
{
	for (size_t i = 0; i < w->n_tails; i++) {
		struct wtail *wt = &w->tails[i];

		if (wt->base != NULL && wt->dir_dev == d->dev && wt->dir_ino == d->ino &&
		    strcmp(wt->base, name) == 0)
			wt->dirty = 1;
	}
}

/* A name appeared (or changed its attributes) in a watched directory: open it if a source's glob
 * matches it and it is not open yet. */
static void try_open(struct watch *w, const struct wdir *d, const char *name)
{
	char *joined = path_join(d->path, name), e[1024];

	if (joined == NULL)
		return;
	for (size_t si = 0; si < w->ctx.cfg->n_sources; si++) {
		const struct config_source *src = &w->ctx.cfg->sources[si];
		const char *cand = joined;
		struct stat st;
		long i;

		/* A pattern without a '/' is relative to the working directory and so are the
		 * paths glob(3) gives for it. */
		if (strchr(src->path, '/') == NULL) {
			if (strcmp(d->path, ".") != 0)
				continue;
			cand = name;
		}
		if (fnmatch(src->path, cand, FNM_PATHNAME | FNM_PERIOD) != 0 ||
		    excluded(src, name) || stat(cand, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		i = tail_find(w, si, st.st_dev, st.st_ino);
		if (i >= 0) {
			if (w->tails[i].base == NULL || w->tails[i].orphan)
				matched_again(w, (size_t)i, cand);
			w->tails[i].dirty = 1;
			continue;
		}
		i = open_path(w, si, cand, e, sizeof(e));
		if (i >= 0)
			w->tails[i].dirty = 1;
	}
	free(joined);
}

static void name_gone(struct watch *w, size_t i, uint32_t cookie);

/* A name was created or renamed over: a tail still known under it whose file is no longer what
 * the name leads to (an editor's or a logger's atomic replace: no IN_DELETE for the old file)
 * lost its name. */
static void name_replaced(struct watch *w, const struct wdir *d, const char *name)
{
	char *path = path_join(d->path, name);
	struct stat st;
	int have = path != NULL && stat(path, &st) == 0;

	free(path);
	for (size_t i = w->n_tails; i-- > 0;) {
		struct wtail *wt = &w->tails[i];

		if (wt->base == NULL || wt->dir_dev != d->dev || wt->dir_ino != d->ino ||
		    strcmp(wt->base, name) != 0)
			continue;
		if (have && st.st_dev == tail_dev(wt->t) && st.st_ino == tail_ino(wt->t))
			continue;
		name_gone(w, i, 0);
	}
}

/* IN_MOVED_TO with the cookie of a tail's IN_MOVED_FROM: its new name. */
static void moved_to(struct watch *w, const struct wdir *d, const char *name, uint32_t cookie)
{
	char e[1024];

	if (cookie == 0)
		return;
	for (size_t i = 0; i < w->n_tails; i++) {
		struct wtail *wt = &w->tails[i];
		char *path;

		if (wt->cookie != cookie)
			continue;
		wt->cookie = 0;
		path = path_join(d->path, name);
		if (path == NULL)
			continue;
		if (tail_rename(wt->t, path, e, sizeof(e)) < 0)
			log_warn("%s", e);
		tail_place(wt, path);
		wt->dirty = 1;
		free(path);
	}
}

/* The tail's name was moved away or deleted: read what it still holds, close it if it was
 * deleted, and let a rescan decide about a renamed one. */
static void name_gone(struct watch *w, size_t i, uint32_t cookie)
{
	struct wtail *wt = &w->tails[i];
	char e[1024];
	int r;

	if (!tail_is_open(wt->t)) {
		/* Suspended (read to its end when it was closed) and its name deleted: it can no
		 * longer be opened. A renamed one is followed by IN_MOVED_TO or a rescan. */
		if (cookie == 0) {
			release(w, i, "deleted while closed", SPOOL_FILE_GONE);
			return;
		}
	} else {
		r = read_tail(w, i, e, sizeof(e));
		if (r > 0 || (r == 0 && release_if_deleted(w, i)))
			return;
	}
	free(wt->base);
	wt->base = NULL;
	wt->cookie = cookie;
	w->need_scan = 1;
}

static void handle_event(struct watch *w, const struct inotify_event *ev)
{
	long d;

	if (ev->mask & IN_Q_OVERFLOW) {
		log_warn("the inotify event queue overflowed: events were lost; rescanning");
		w->need_scan = 1;
		return;
	}
	d = dir_find_wd(w, ev->wd);
	if (d >= 0) {
		struct wdir dir = w->dirs[d]; /* a copy: the array may change below */

		if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
			/* Gone or moved, so its path no longer leads to it: forget it, and let a
			 * rescan watch whatever the glob now finds. */
			if (!(ev->mask & IN_IGNORED))
				inotify_rm_watch(w->ifd, ev->wd);
			dir_remove(w, (size_t)d);
			w->need_scan = 1;
			return;
		}
		if (ev->len == 0 || ev->name[0] == '\0')
			return;
		if (ev->mask & IN_ISDIR) {
			if (ev->mask & (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE))
				w->need_scan = 1;
			return;
		}
		if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE))
			mark_dirty(w, &dir, ev->name);
		if (ev->mask & (IN_CREATE | IN_MOVED_TO))
			name_replaced(w, &dir, ev->name);
		if (ev->mask & IN_MOVED_TO)
			moved_to(w, &dir, ev->name, ev->cookie);
		if (ev->mask & (IN_CREATE | IN_MOVED_TO | IN_ATTRIB))
			try_open(w, &dir, ev->name);
		if (ev->mask & (IN_MOVED_FROM | IN_DELETE)) {
			for (size_t i = w->n_tails; i-- > 0;) {
				struct wtail *wt = &w->tails[i];

				if (wt->base != NULL && wt->dir_dev == dir.dev &&
				    wt->dir_ino == dir.ino && strcmp(wt->base, ev->name) == 0)
					name_gone(w, i,
					          (ev->mask & IN_MOVED_FROM) ? ev->cookie : 0);
			}
		}
		return;
	}
	/* A watch on a file itself. */
	for (size_t i = w->n_tails; i-- > 0;) {
		struct wtail *wt = &w->tails[i];
		char e[1024];

		if (wt->fwd != ev->wd)
			continue;
		if (ev->mask & IN_IGNORED) {
			wt->fwd = -1;
			continue;
		}
		if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE))
			wt->dirty = 1;
		if (ev->mask & IN_MOVE_SELF)
			w->need_scan = 1;
		/* IN_ATTRIB: its link count may have dropped to 0 */
		if ((ev->mask & IN_ATTRIB) && read_tail(w, i, e, sizeof(e)) == 0)
			release_if_deleted(w, i);
	}
}

/* Without a watch (ENOSPC) a file's changes go unreported: its size and mtime are checked with
 * stat(2) every WATCH_POLL_MS, and it is read when they changed. */
static void poll_unwatched(struct watch *w)
{
	char e[1024];

	for (size_t i = w->n_tails; i-- > 0;) {
		if (atomic_load(&w->stop))
			return;
		if (tail_watched(w, &w->tails[i]) || !changed(w, i))
			continue;
		if (read_tail(w, i, e, sizeof(e)) == 0)
			release_if_deleted(w, i);
	}
	w->next_poll = clock_mono_ms() + WATCH_POLL_MS;
}

/* Reads the tails the last batch of events marked. */
static void read_dirty(struct watch *w)
{
	char e[1024];

	for (size_t i = w->n_tails; i-- > 0;) {
		if (atomic_load(&w->stop))
			return;
		if (w->tails[i].dirty)
			read_tail(w, i, e, sizeof(e));
	}
}

int watch_run(struct watch *w, char *err, size_t errlen)
{
	char e[1024];

	if (w == NULL) {
		err_set(err, errlen, "watch_run: invalid arguments");
		return -1;
	}
	/* Spool errors are logged (by read_tail) and retried at the next change or rescan: a
	 * full disk must not end ingest, and the checkpoint simply does not move meanwhile. */
	while (!atomic_load(&w->stop)) {
		struct pollfd pfd[2];
		int64_t now = clock_mono_ms(), wait, space_wait;
		ssize_t n;
		int prc;

		health_beat(HEALTH_INGEST); /* the systemd watchdog's proof of progress */
		if (space_poll(w->ctx.space, &space_wait))
			w->need_scan = 1; /* reading resumed: read every file */
		if (w->need_scan || now >= w->next_scan) {
			watch_scan(w, e, sizeof(e));
			continue;
		}
		if (w->polling && now >= w->next_poll) {
			poll_unwatched(w);
			continue;
		}
		wait = w->next_scan - now;
		if (w->polling && w->next_poll - now < wait)
			wait = w->next_poll - now;
		if (space_wait >= 0 && space_wait < wait)
			wait = space_wait; /* room while paused; delivered_retention */
		pfd[0] = (struct pollfd){.fd = w->ifd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = w->efd, .events = POLLIN};
		health_wait_begin(HEALTH_INGEST); /* waiting for lines is not being stuck */
		prc = poll(pfd, 2, wait > INT_MAX ? INT_MAX : (int)wait);
		health_wait_end(HEALTH_INGEST);
		if (prc < 0) {
			if (errno == EINTR)
				continue;
			err_set(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (pfd[1].revents != 0)
			break;
		if (pfd[0].revents & (POLLERR | POLLNVAL)) {
			err_set(err, errlen, "inotify descriptor failed");
			return -1;
		}
		if (!(pfd[0].revents & POLLIN))
			continue;
		n = read(w->ifd, w->evbuf, WATCH_EVBUF);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			err_set(err, errlen, "reading inotify events: %s", strerror(errno));
			return -1;
		}
		for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
			const struct inotify_event *ev =
			    (const struct inotify_event *)(void *)(w->evbuf + off);

			handle_event(w, ev);
			off += (ssize_t)sizeof(struct inotify_event) + ev->len;
		}
		read_dirty(w);
	}
	return 0;
}

void watch_stop(struct watch *w)
{
	uint64_t one = 1;

	if (w == NULL)
		return;
	atomic_store(&w->stop, 1);
	if (write(w->efd, &one, sizeof(one)) < 0)
		return; /* the counter is full: a stop is already pending */
}

struct watch *watch_new(const struct tail_ctx *ctx, char *err, size_t errlen)
{
	struct watch *w;

	if (ctx == NULL || ctx->cfg == NULL || ctx->spool == NULL) {
		err_set(err, errlen, "watch_new: invalid arguments");
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	w->ctx = *ctx;
	w->efd = -1;
	atomic_init(&w->stop, 0);
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ifd < 0) {
		err_set(err, errlen, "inotify_init1: %s%s", strerror(errno),
		        errno == EMFILE ? " (the limit fs.inotify.max_user_instances is reached)"
		                        : "");
		goto fail;
	}
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		err_set(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	w->evbuf = malloc(WATCH_EVBUF);
	if (w->evbuf == NULL) {
		err_set(err, errlen, "out of memory");
		goto fail;
	}
	w->next_scan = clock_mono_ms();
	w->max_open = (size_t)ctx->cfg->agent.max_open_files;
	return w;
fail:
	watch_free(w);
	return NULL;
}

void watch_free(struct watch *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->n_tails; i++) {
		tail_free(w->tails[i].t);
		free(w->tails[i].base);
		free(w->tails[i].real);
	}
	free(w->tails);
	for (size_t i = 0; i < w->n_dirs; i++)
		free(w->dirs[i].path);
	free(w->dirs);
	for (size_t i = 0; i < w->n_fails; i++) {
		free(w->fails[i].path);
		free(w->fails[i].msg);
	}
	free(w->fails);
	free(w->evbuf);
	if (w->ifd >= 0)
		close(w->ifd);
	if (w->efd >= 0)
		close(w->efd);
	free(w);
}

size_t watch_tail_count(const struct watch *w)
{
	return w != NULL ? w->n_tails : 0;
}
