/* watch: the inotify loop of the ingest half.
 *
 * Directories are watched, not files: a watch on the directory part of each source's glob
 * reports creations, renames, deletions and writes of every file in it. A file reached through a
 * symlink also gets a watch of its own, since writes to a target in another directory are not
 * reported to the link's directory. A tail is found for an event by (directory, name); its
 * identity for a glob match is (source, dev, ino), never the path. A file is tailed for one
 * source only (file_owner), whatever number of globs match it, or its lines would be billed once
 * per source.
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
 * ancestor watched, so that the directory's creation triggers a rescan.
 *
 * Indexes: an event must cost the same with ten files as with ten thousand. Hash tables find
 * directories by watch descriptor and by (dev, ino), and tails by (directory, name), by (source,
 * dev, ino), by the watch on the file itself and by the cookie of an IN_MOVED_FROM whose
 * IN_MOVED_TO has not come yet; the tails an event marked are in a list, and so are the open
 * tails, the least recently read first. A key changes only through the few functions that keep
 * its table right (tail_place, tail_unname, tail_set_fwd, tail_set_cookie, tail_forget,
 * dir_remove, watch_reconfigure); watch_check verifies every table against the entries.
 *
 * A reload (watch_reconfigure) keeps the tails of the sources whose settings did not change and
 * gives them the new rules from their next read; the other sources are scanned anew as at
 * start. */
#include "ingest/watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/health.h"
#include "util/clock.h"
#include "util/crash.h"
#include "util/log.h"
#include "util/path.h"
#include "ingest/guard.h"
#include "ingest/space.h"

#define WATCH_DIR_MASK                                                                             \
	(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE |        \
	 IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define WATCH_FILE_MASK (IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_MOVE_SELF)
#define WATCH_EVBUF (64 * 1024)
#define WATCH_POLL_MS 1000    /* stat period of files without an inotify watch (ENOSPC) */
#define WATCH_HTAB_MIN 16     /* buckets of a hash table before it first grows */
#define WATCH_RECOVER_LOOKS 3 /* looks for a recorded file that a rotation moves on meanwhile */

/* The entry that holds `ptr`, a pointer to its `member`. */
#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define CONTAINER_CONST(ptr, type, member)                                                         \
	((const type *)(const void *)((const char *)(ptr)-offsetof(type, member)))

/* An entry's link in a hash table: the next in its bucket, and its key's hash. */
struct hlink {
	struct hlink *next;
	uint64_t hash;
};

/* A chained hash table whose links are inside the entries, so that adding or removing an entry
 * allocates nothing and cannot fail. Its first buckets are in place; it doubles when it holds
 * more entries than buckets, and if that allocation fails it keeps its size (longer chains,
 * never an error). glibc's hsearch_r cannot remove an entry, and tsearch is a tree (O(log n) per
 * lookup): neither fits. */
struct htab {
	struct hlink **b;
	size_t mask; /* buckets - 1; buckets is a power of two */
	size_t n;
	struct hlink *b0[WATCH_HTAB_MIN];
};

/* A link in a circular doubly linked list with a head; NULL links: in no list. */
struct dlink {
	struct dlink *prev, *next;
};

struct wdir {
	int wd;
	char *path; /* as the glob of the source's directory part spelled it */
	dev_t dev;
	ino_t ino;
	size_t slot; /* its index in watch.dirs */
	struct hlink by_wd, by_id;
};

struct wtail {
	struct tail *t;
	size_t slot;   /* its index in watch.tails */
	dev_t dir_dev; /* the directory its name is in */
	ino_t dir_ino;
	char *base;      /* its name there; NULL after it was moved to a name not known yet */
	int fwd;         /* the watch on the file itself (symlinked paths), or -1 */
	uint32_t cookie; /* IN_MOVED_FROM's cookie: IN_MOVED_TO tells its new name */
	int orphan;      /* its glob no longer matches it: released once drained and not growing */
	off_t orphan_size;          /* its size when last seen changing, -1 before */
	int64_t orphan_since;       /* monotonic ms: when orphan_size was last seen to change */
	off_t read_size;            /* its size before its last successful read, -1 before */
	unsigned seen;              /* the rescan generation that last matched it */
	struct timespec read_ctime; /* its ctime then (changed()) */
	int read_racy;              /* that ctime was under 2 s old then: it may not show a write
	                               made in the same clock tick (tail.c same_size_stale) */
	int link;                   /* its path is a symlink */
	char *real;                 /* then the path of its target when opened, else NULL */
	int failing;                /* its last read failed (logged once, until it recovers) */
	int64_t realdir_id;         /* the record note_realdir last looked at, 0 before */
	struct hlink by_name;       /* in tail_name while base != NULL */
	struct hlink by_id;         /* in tail_id, by (source, dev, ino) */
	struct hlink by_fwd;        /* in tail_fwd while fwd >= 0 */
	struct hlink by_cookie;     /* in tail_cookie while cookie != 0 */
	struct dlink lru;           /* in watch.lru while it holds a descriptor */
	struct dlink
	    dirty; /* in watch.dirty while changed: read after the current batch of events */
};

/* A file taken for the copy of a tailed file (copytruncate, tail_copy_of): not opened, since its
 * lines are the other file's; looked at again at every rescan. */
struct wcopy {
	char *path;
	unsigned seen; /* the rescan generation that last found it a copy */
	size_t si;     /* the source whose glob matched it */
};

/* A file that the glob of source si matches and another source reads (file_owner): not opened
 * for si, logged once while it stays so. */
struct wshare {
	char *path;
	size_t si;
	unsigned seen; /* the rescan generation that last found it so */
};

/* A file that appeared under a name a source's glob matches (IN_CREATE, IN_MOVED_TO), followed
 * through the renames the events report: a writer that rotates faster than the agent looks
 * renames it before the agent opens it, and opening the name then gives a newer file. Once every
 * queued event is handled, the file is where its token is; one no tail holds is opened there
 * (tokens_resolve). */
struct wtoken {
	size_t si;
	dev_t dir_dev; /* the directory it is in */
	ino_t dir_ino;
	char *name;      /* its name there as far as the events tell; NULL while moving */
	uint32_t cookie; /* while moving: its IN_MOVED_FROM's cookie */
};

/* A path that could not be opened or watched, logged once per distinct error. */
struct wfail {
	char *path;
	char *msg;
	unsigned seen;
	int at_start; /* it failed in the first scan of its source: it was there at start */
};

struct watch {
	struct tail_ctx ctx;
	int ifd, efd;
	atomic_int stop;
	struct wdir **dirs;
	size_t n_dirs, cap_dirs;
	struct wtail **tails;
	size_t n_tails, cap_tails;
	struct wfail *fails;
	size_t n_fails, cap_fails;
	struct wcopy *copies;
	size_t n_copies, cap_copies;
	struct wshare *shares;
	size_t n_shares, cap_shares;
	struct wtoken *tokens;
	size_t n_tokens, cap_tokens;
	unsigned long copies_taken;   /* files taken for copies since start, for the log */
	unsigned long unread_rotated; /* files unread_rotations found, for the log */
	unsigned long not_rotations;  /* files it left unread, for the log */
	struct spool_file *rec;       /* has_record's: a record holds a 4 KiB path */
	struct spool_file *orec;      /* file_owner's */
	struct htab dir_wd, dir_id;   /* struct wdir */
	struct htab tail_name, tail_id, tail_fwd, tail_cookie; /* struct wtail */
	struct dlink lru;     /* the open tails, the least recently read first */
	struct dlink dirty;   /* the tails marked changed */
	struct wtail **found; /* what the last found_by_*() collected */
	size_t cap_found;
	/* Per source, since watch_reconfigure: not scanned yet (NULL: none). */
	unsigned char *fresh;
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

static int excluded(const struct config_source *src, const char *base)
{
	return src->exclude != NULL && src->exclude[0] != '\0' &&
	       fnmatch(src->exclude, base, 0) == 0;
}

/* ---- hash tables and lists ------------------------------------------------------------------ */

static void htab_init(struct htab *h)
{
	memset(h, 0, sizeof(*h));
	h->b = h->b0;
	h->mask = WATCH_HTAB_MIN - 1;
}

static void htab_fini(struct htab *h)
{
	if (h->b != h->b0)
		free(h->b);
	h->b = h->b0;
}

static void htab_grow(struct htab *h)
{
	size_t nb = (h->mask + 1) * 2;
	struct hlink **b;

	if (nb > SIZE_MAX / sizeof(*b) || (b = calloc(nb, sizeof(*b))) == NULL)
		return; /* longer chains: slower, still right */
	for (size_t i = 0; i <= h->mask; i++) {
		struct hlink *l = h->b[i], *next;

		for (; l != NULL; l = next) {
			next = l->next;
			l->next = b[l->hash & (nb - 1)];
			b[l->hash & (nb - 1)] = l;
		}
	}
	if (h->b != h->b0)
		free(h->b);
	h->b = b;
	h->mask = nb - 1;
}

static void htab_add(struct htab *h, struct hlink *l, uint64_t hash)
{
	if (h->n > h->mask)
		htab_grow(h);
	l->hash = hash;
	l->next = h->b[hash & h->mask];
	h->b[hash & h->mask] = l;
	h->n++;
}

static void htab_del(struct htab *h, struct hlink *l)
{
	struct hlink **p = &h->b[l->hash & h->mask];

	while (*p != NULL && *p != l)
		p = &(*p)->next;
	if (*p == NULL)
		return;
	*p = l->next;
	l->next = NULL;
	h->n--;
}

/* The first link with `hash`, then the next ones (the caller compares the keys). */
static struct hlink *htab_first(const struct htab *h, uint64_t hash)
{
	struct hlink *l = h->b[hash & h->mask];

	while (l != NULL && l->hash != hash)
		l = l->next;
	return l;
}

static struct hlink *htab_next(struct hlink *l)
{
	uint64_t hash = l->hash;

	for (l = l->next; l != NULL && l->hash != hash; l = l->next)
		;
	return l;
}

/* Whether `l` is in h, under the hash it records. */
static int htab_has(const struct htab *h, const struct hlink *l)
{
	for (const struct hlink *c = h->b[l->hash & h->mask]; c != NULL; c = c->next)
		if (c == l)
			return 1;
	return 0;
}

/* splitmix64's finaliser: every bit of the input reaches every bit of the hash. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t hash_int(uint64_t v)
{
	return mix64(v);
}

static uint64_t hash_file(uint64_t dev, uint64_t ino)
{
	return mix64(mix64(dev) ^ ino);
}

static uint64_t hash_id(size_t source, dev_t dev, ino_t ino)
{
	return mix64(hash_file((uint64_t)dev, (uint64_t)ino) ^ (uint64_t)source);
}

/* FNV-1a over the name, from the directory's hash. */
static uint64_t hash_name(dev_t dev, ino_t ino, const char *name)
{
	uint64_t h = hash_file((uint64_t)dev, (uint64_t)ino) ^ 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	return mix64(h);
}

static void dl_init(struct dlink *head)
{
	head->prev = head->next = head;
}

static int dl_linked(const struct dlink *l)
{
	return l->next != NULL;
}

static void dl_append(struct dlink *head, struct dlink *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static void dl_del(struct dlink *l)
{
	if (l->next == NULL)
		return;
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = NULL;
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

/* Whether the scan under way is the first one of source si: at start, or after a reload that
 * added or changed it. Then read_from applies and records of rotated files are recovered. */
static int first_scan(const struct watch *w, size_t si)
{
	return !w->scanned || (w->fresh != NULL && si < w->ctx.cfg->n_sources && w->fresh[si] != 0);
}

/* ---- copies --------------------------------------------------------------------------------- */

static long copy_find(const struct watch *w, const char *path)
{
	for (size_t i = 0; i < w->n_copies; i++)
		if (strcmp(w->copies[i].path, path) == 0)
			return (long)i;
	return -1;
}

static void copy_remove(struct watch *w, size_t i)
{
	free(w->copies[i].path);
	w->copies[i] = w->copies[--w->n_copies];
}

/* Notes that `path` (*st) is taken for the copy of tail `of`: logged the first time. */
static void copy_note(struct watch *w, const char *path, const struct tail *of,
                      const struct stat *st)
{
	long i = copy_find(w, path);

	if (i >= 0) {
		w->copies[i].seen = w->gen;
		return;
	}
	w->copies_taken++;
	log_warn("%s: holds what %s held up to where logmeter read it: taken for its copy "
	         "(copytruncate), not read as a new file (%jd bytes; %lu taken for copies since "
	         "start); what it holds after that is read as %s's once that is truncated. A "
	         "file with the same first bytes that is not a copy cannot be told apart "
	         "(docs/tailing.md)",
	         path, tail_path(of), (intmax_t)st->st_size, w->copies_taken, tail_path(of));
	if (grow((void **)&w->copies, &w->cap_copies, w->n_copies, sizeof(*w->copies)) < 0 ||
	    (w->copies[w->n_copies].path = strdup(path)) == NULL)
		return;
	w->copies[w->n_copies].seen = w->gen;
	w->copies[w->n_copies].si = tail_source_index(of);
	w->n_copies++;
}

/* Opens `path`, a name in a directory of source si, for a look at its content, as a log is
 * opened (guard_open: a symlink only where the source follows it, never a file of logmeter's
 * own), so that no check reads what reading it would refuse. Returns the descriptor (caller
 * closes) or -1. */
static int look_open(struct watch *w, size_t si, const char *path)
{
	char e[1024];

	return guard_open(w->ctx.guard, &w->ctx.cfg->sources[si], path, NULL, e, sizeof(e));
}

/* Whether the spool has a record of the file (dev, ino) at `path` for source si that read
 * something and, unless it is still reading, still describes the file: then it is no copy of
 * another but a file logmeter knows (a copy whose rest was read becomes its original's record).
 * A spool error counts as a record: opening the file reports it. Its checkpoint in *offset
 * (INT64_MAX on a spool error), when there is one. */
static int has_record_at(struct watch *w, size_t si, const char *path, const struct stat *st,
                         int64_t *offset)
{
	char e[512];
	int found, fd, holds;

	*offset = INT64_MAX;
	if (w->rec == NULL && (w->rec = malloc(sizeof(*w->rec))) == NULL)
		return 1;
	found = spool_file_find(w->ctx.spool, w->ctx.cfg->sources[si].name, (uint64_t)st->st_dev,
	                        (uint64_t)st->st_ino, w->rec, e, sizeof(e));
	/* Its file system mounted again under another device number: opening it confirms the
	 * record by content (tail.c). */
	if (found == 0)
		found = spool_file_find_remounted(w->ctx.spool, w->ctx.cfg->sources[si].name, path,
		                                  (uint64_t)st->st_dev, (uint64_t)st->st_ino,
		                                  w->rec, e, sizeof(e));
	if (found <= 0)
		return found < 0;
	*offset = w->rec->offset;
	/* The record of a file seen only empty read nothing: a copy created empty has one. */
	if (w->rec->offset == 0 && w->rec->fp_len == 0)
		return 0;
	if (w->rec->state == SPOOL_FILE_READING)
		return 1;
	/* Drained or gone, and the inode given to another file since (a copy deleted and the
	 * next copy created under its name gets its inode at once on ext4): that file may be a
	 * copy itself, and the record is not its. */
	fd = look_open(w, si, path);
	if (fd < 0)
		return 1;
	holds = tail_record_holds(w->rec, fd);
	close(fd);
	return holds != 0;
}

/* has_record without the checkpoint. */
static int has_record(struct watch *w, size_t si, const char *path, const struct stat *st)
{
	int64_t offset;

	return has_record_at(w, si, path, st, &offset);
}

/* Whether `path` leads, now, to the file with device `dev` and inode `ino` (stat(2) follows a
 * symlink): the file a caller looked at or means is still under that name. */
static int names_file(const char *path, dev_t dev, ino_t ino)
{
	struct stat st;

	return stat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

/* Whether the file at `path` (a regular file of source si without a tail or a record) is the copy
 * of a file tailed in the same directory (tail_copy_of); noted if it is, forgotten as a copy if it
 * no longer is. The tailed file may be another source's (app.log read by one source, its copy
 * app.log.1 matched by another's app.log.*): the copy's lines are that file's, read by its source
 * (one file, one source), and billed once. With `fd` >= 0 (a tail's own descriptor, left open),
 * the file judged is the one open as `fd`, whatever `path`, its name when it was opened, leads to
 * now: a copy renamed since (`cp app.log tmp.log && mv tmp.log app.log.1`, a rotation that shifts
 * it) was judged by what its former name led to then (nothing, or another file) and read as a new
 * file (t_copy_renamed_race.sh); it is noted, or forgotten, only while `path` still leads to it.
 * With `fd` < 0 the file `path` leads to is opened for the look. *looked (if not NULL) gets the
 * fstat(2) of the file judged (its device, inode and size in bytes), its st_size -1 if it could
 * not be looked at: open_path opens no other file under `path`, and judges again a file that is
 * longer when opened. */
static int is_copy(struct watch *w, size_t si, const char *path, int fd, struct stat *looked)
{
	char *dir = path_dir(path);
	const struct wtail *of = NULL;
	struct stat st, dst;
	int own = fd < 0, named = 1, found = 0;
	long i;

	memset(&st, 0, sizeof(st));
	if (looked != NULL) {
		memset(looked, 0, sizeof(*looked));
		looked->st_size = -1;
	}
	if (own)
		fd = look_open(w, si, path);
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && dir != NULL &&
	    stat(dir, &dst) == 0) {
		int candidate = tail_copy_candidate(fd, &st);

		if (looked != NULL)
			*looked = st;
		if (!own)
			named = names_file(path, st.st_dev, st.st_ino);

		for (size_t k = 0; k < w->n_tails && of == NULL; k++) {
			const struct wtail *wt = w->tails[k];

			if (wt->base != NULL && wt->dir_dev == dst.st_dev &&
			    wt->dir_ino == dst.st_ino &&
			    tail_copy_of(wt->t, fd, &st, candidate) == 1)
				of = wt;
		}
		if (of != NULL && named)
			copy_note(w, path, of->t, &st);
		else if (of != NULL)
			log_warn(
			    "%s (inode %ju, renamed since): holds what %s held up to where "
			    "logmeter read it: taken for its copy (copytruncate), not read as a "
			    "new file (%jd bytes)",
			    path, (uintmax_t)st.st_ino, tail_path(of->t), (intmax_t)st.st_size);
		found = of != NULL;
	}
	if (own && fd >= 0)
		close(fd);
	free(dir);
	if (!found && named && (i = copy_find(w, path)) >= 0) {
		log_info("%s: no longer holds what its original held: read as a new file", path);
		copy_remove(w, (size_t)i);
	}
	return found;
}

/* ---- directories ---------------------------------------------------------------------------- */

static struct wdir *dir_by_wd(const struct watch *w, int wd)
{
	for (struct hlink *l = htab_first(&w->dir_wd, hash_int((uint64_t)wd)); l != NULL;
	     l = htab_next(l)) {
		struct wdir *d = CONTAINER(l, struct wdir, by_wd);

		if (d->wd == wd)
			return d;
	}
	return NULL;
}

static struct wdir *dir_by_id(const struct watch *w, dev_t dev, ino_t ino)
{
	for (struct hlink *l = htab_first(&w->dir_id, hash_file((uint64_t)dev, (uint64_t)ino));
	     l != NULL; l = htab_next(l)) {
		struct wdir *d = CONTAINER(l, struct wdir, by_id);

		if (d->dev == dev && d->ino == ino)
			return d;
	}
	return NULL;
}

static void dir_remove(struct watch *w, struct wdir *d)
{
	htab_del(&w->dir_wd, &d->by_wd);
	htab_del(&w->dir_id, &d->by_id);
	w->dirs[d->slot] = w->dirs[--w->n_dirs];
	w->dirs[d->slot]->slot = d->slot;
	free(d->path);
	free(d);
}

static void watch_dir(struct watch *w, const char *path)
{
	struct stat st;
	char msg[PATH_MAX + 128];
	struct wdir *d;
	char *dup;
	int wd;

	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	if (dir_by_id(w, st.st_dev, st.st_ino) != NULL)
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
	if (dir_by_wd(w, wd) != NULL)
		return;
	dup = strdup(path);
	d = calloc(1, sizeof(*d));
	if (dup == NULL || d == NULL ||
	    grow((void **)&w->dirs, &w->cap_dirs, w->n_dirs, sizeof(*w->dirs)) < 0) {
		free(dup);
		free(d);
		inotify_rm_watch(w->ifd, wd);
		return;
	}
	d->wd = wd;
	d->path = dup;
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	d->slot = w->n_dirs;
	w->dirs[w->n_dirs++] = d;
	htab_add(&w->dir_wd, &d->by_wd, hash_int((uint64_t)wd));
	htab_add(&w->dir_id, &d->by_id, hash_file((uint64_t)d->dev, (uint64_t)d->ino));
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
	return dir_by_id(w, wt->dir_dev, wt->dir_ino) != NULL;
}

/* ---- tails: their keys in the tables -------------------------------------------------------- */

static struct wtail *tail_find(const struct watch *w, size_t source, dev_t dev, ino_t ino)
{
	for (struct hlink *l = htab_first(&w->tail_id, hash_id(source, dev, ino)); l != NULL;
	     l = htab_next(l)) {
		struct wtail *wt = CONTAINER(l, struct wtail, by_id);
		const struct tail *t = wt->t;

		if (tail_source_index(t) == source && tail_dev(t) == dev && tail_ino(t) == ino)
			return wt;
	}
	return NULL;
}

/* The tail's name is no longer known (moved away, deleted, or about to be set anew). */
static void tail_unname(struct watch *w, struct wtail *wt)
{
	if (wt->base == NULL)
		return;
	htab_del(&w->tail_name, &wt->by_name);
	free(wt->base);
	wt->base = NULL;
}

/* Sets where the tail's name is: the directory of `path` and its base name. */
static void tail_place(struct watch *w, struct wtail *wt, const char *path)
{
	char *dir = path_dir(path), *base = strdup(path_base(path));
	struct stat st;

	tail_unname(w, wt);
	if (dir != NULL && base != NULL && stat(dir, &st) == 0) {
		wt->dir_dev = st.st_dev;
		wt->dir_ino = st.st_ino;
		wt->base = base;
		base = NULL;
		htab_add(&w->tail_name, &wt->by_name,
		         hash_name(wt->dir_dev, wt->dir_ino, wt->base));
	}
	free(base);
	free(dir);
}

static void tail_set_fwd(struct watch *w, struct wtail *wt, int fwd)
{
	if (wt->fwd >= 0)
		htab_del(&w->tail_fwd, &wt->by_fwd);
	wt->fwd = fwd;
	if (fwd >= 0)
		htab_add(&w->tail_fwd, &wt->by_fwd, hash_int((uint64_t)fwd));
}

static void tail_set_cookie(struct watch *w, struct wtail *wt, uint32_t cookie)
{
	if (wt->cookie != 0)
		htab_del(&w->tail_cookie, &wt->by_cookie);
	wt->cookie = cookie;
	if (cookie != 0)
		htab_add(&w->tail_cookie, &wt->by_cookie, hash_int(cookie));
}

/* Whether a tail still has the watch descriptor `fwd` on its file. */
static int fwd_in_use(const struct watch *w, int fwd)
{
	for (struct hlink *l = htab_first(&w->tail_fwd, hash_int((uint64_t)fwd)); l != NULL;
	     l = htab_next(l))
		if (CONTAINER(l, struct wtail, by_fwd)->fwd == fwd)
			return 1;
	return 0;
}

/* w->found[n] = wt. Returns n + 1, or n when out of memory (a rescan then makes up for the tail
 * this event misses). */
static size_t found_add(struct watch *w, size_t n, struct wtail *wt)
{
	if (grow((void **)&w->found, &w->cap_found, n, sizeof(*w->found)) < 0) {
		w->need_scan = 1;
		return n;
	}
	w->found[n] = wt;
	return n + 1;
}

/* These collect tails into w->found and return how many: their callers change the tables while
 * going through them. Nothing they call collects again. */

/* The tails known under `name` in the directory (dev, ino). */
static size_t found_by_name(struct watch *w, dev_t dev, ino_t ino, const char *name)
{
	size_t n = 0;

	for (struct hlink *l = htab_first(&w->tail_name, hash_name(dev, ino, name)); l != NULL;
	     l = htab_next(l)) {
		struct wtail *wt = CONTAINER(l, struct wtail, by_name);

		if (wt->dir_dev == dev && wt->dir_ino == ino && strcmp(wt->base, name) == 0)
			n = found_add(w, n, wt);
	}
	return n;
}

/* The tails whose file has the watch `fwd`. */
static size_t found_by_fwd(struct watch *w, int fwd)
{
	size_t n = 0;

	for (struct hlink *l = htab_first(&w->tail_fwd, hash_int((uint64_t)fwd)); l != NULL;
	     l = htab_next(l)) {
		struct wtail *wt = CONTAINER(l, struct wtail, by_fwd);

		if (wt->fwd == fwd)
			n = found_add(w, n, wt);
	}
	return n;
}

/* The tails whose IN_MOVED_FROM had `cookie`. */
static size_t found_by_cookie(struct watch *w, uint32_t cookie)
{
	size_t n = 0;

	for (struct hlink *l = htab_first(&w->tail_cookie, hash_int(cookie)); l != NULL;
	     l = htab_next(l)) {
		struct wtail *wt = CONTAINER(l, struct wtail, by_cookie);

		if (wt->cookie == cookie)
			n = found_add(w, n, wt);
	}
	return n;
}

/* Changed: read after the current batch of events. */
static void dirty_add(struct watch *w, struct wtail *wt)
{
	if (!dl_linked(&wt->dirty))
		dl_append(&w->dirty, &wt->dirty);
}

/* Holds a descriptor and was just opened or read: the most recently read. */
static void lru_touch(struct watch *w, struct wtail *wt)
{
	dl_del(&wt->lru);
	dl_append(&w->lru, &wt->lru);
}

/* Takes tail wt out of every table and list and frees it; the last entry of w->tails moves into
 * its place. */
static void tail_forget(struct watch *w, struct wtail *wt)
{
	int fwd = wt->fwd;

	if (fwd >= 0) {
		tail_set_fwd(w, wt, -1);
		if (!fwd_in_use(w, fwd))
			inotify_rm_watch(w->ifd, fwd);
	}
	tail_unname(w, wt);
	tail_set_cookie(w, wt, 0);
	htab_del(&w->tail_id, &wt->by_id);
	dl_del(&wt->dirty);
	if (tail_is_open(wt->t))
		w->n_open--;
	dl_del(&wt->lru);
	tail_free(wt->t);
	free(wt->real);
	w->tails[wt->slot] = w->tails[--w->n_tails];
	w->tails[wt->slot]->slot = wt->slot;
	free(wt);
}

/* ---- tails ---------------------------------------------------------------------------------- */

/* Lets tail wt go (freed): its record takes `state` (drained or gone), its descriptor and watch
 * are closed. */
static void release(struct watch *w, struct wtail *wt, const char *why, enum spool_file_state state)
{
	char err[512];

	if (tail_mark(wt->t, state, err, sizeof(err)) < 0)
		log_warn("%s", err);
	log_info("%s: %s: released (%s)", tail_path(wt->t), why, spool_file_state_name(state));
	tail_forget(w, wt);
}

/* A tail may be suspended (its descriptor closed) if it can be opened again by its name: its
 * name is known and is not a symlink (whose target may change). Whatever it has not read yet is
 * read when it is resumed: a change marks it dirty, and a rescan finds its size changed. */
static int suspendable(const struct wtail *wt)
{
	return tail_is_open(wt->t) && wt->base != NULL && !wt->link && wt->fwd < 0;
}

/* Keeps the open tails within max_open_files with room for `more` to be opened: suspends the
 * least recently read suspendable tails other than `except` (may be NULL). */
static void make_room(struct watch *w, const struct wtail *except, size_t more)
{
	while (w->n_open + more > w->max_open) {
		struct wtail *best = NULL;

		for (struct dlink *l = w->lru.next; l != &w->lru; l = l->next) {
			struct wtail *c = CONTAINER(l, struct wtail, lru);

			if (c != except && suspendable(c)) {
				best = c;
				break;
			}
		}
		if (best == NULL) {
			if (!w->limit_warned)
				log_warn(
				    "more than max_open_files (%zu) files must stay open (being "
				    "read, symlinked, or renamed out of sight): keeping them open",
				    w->max_open);
			w->limit_warned = 1;
			return;
		}
		log_debug("%s: idle: closed (max_open_files)", tail_path(best->t));
		tail_suspend(best->t);
		dl_del(&best->lru);
		w->n_open--;
	}
}

/* Tail wt's file is at `path` now: its record (tail_rename; should that fail, which is logged, it
 * keeps its former path) and its name in the tables (tail_place) follow. */
static void follow_name(struct watch *w, struct wtail *wt, const char *path)
{
	char e[1024];

	if (tail_rename(wt->t, path, e, sizeof(e)) < 0)
		log_warn("%s", e);
	tail_place(w, wt, path);
}

/* The file with device `dev` and inode `ino` among the entries of the directory of `path`
 * (path_find_ino). Returns its path (malloc'd, caller frees), or NULL if it is not there, the
 * directory cannot be read, or out of memory. */
static char *find_beside(const char *path, dev_t dev, ino_t ino)
{
	char *dir = path_dir(path);
	char *p = dir != NULL ? path_find_ino(dir, dev, ino) : NULL;

	free(dir);
	return p;
}

/* The path of suspended tail wt no longer leads to its file: it was renamed or deleted while it
 * was closed (unnoticed: polled, or the events were lost). Looks for it in the same directory.
 * Returns 0 if found (the tail follows the new name; a rescan decides whether its glob still
 * matches it) or 1 if not (released as gone: wt is freed). */
static int relocate(struct watch *w, struct wtail *wt)
{
	char *p = find_beside(tail_path(wt->t), tail_dev(wt->t), tail_ino(wt->t));

	if (p == NULL) {
		release(w, wt, "deleted or moved away while closed", SPOOL_FILE_GONE);
		return 1;
	}
	log_info("%s: renamed to %s while closed", tail_path(wt->t), p);
	follow_name(w, wt, p);
	free(p);
	w->need_scan = 1;
	return 0;
}

/* Opens a suspended tail again (making room first). Returns 0, -1 (logged, retried later), or
 * 1 if it was released (wt is freed). */
static int resume(struct watch *w, struct wtail *wt, char *err, size_t errlen)
{
	int rc;

	if (tail_is_open(wt->t))
		return 0;
	make_room(w, wt, 1);
	rc = tail_resume(wt->t, err, errlen);
	if (rc > 0) {
		if (relocate(w, wt) > 0)
			return 1;
		rc = tail_resume(wt->t, err, errlen);
		if (rc > 0) {
			release(w, wt, "replaced while closed", SPOOL_FILE_GONE);
			return 1;
		}
	}
	if (rc < 0)
		return -1;
	w->n_open++;
	lru_touch(w, wt);
	return 0;
}

static struct wtail *open_path(struct watch *w, size_t si, const char *path,
                               const struct stat *expect, const struct stat *judged,
                               int *spool_failed, char *err, size_t errlen);
static long file_owner(struct watch *w, size_t si, const char *path, const struct stat *st);
static void share_note(struct watch *w, size_t si, const char *path, size_t owner);

/* The noted copies of source si judged again (is_copy) after a tail of si took another record
 * (its file truncated, read from the start again): a copy of what that file held before may hold
 * lines its new record will never read (truncated again before it read them), and is read as a
 * new file now rather than at the next rescan. */
static void recheck_copies(struct watch *w, size_t si)
{
	/* Backwards: is_copy drops a copy by moving the last one, already judged, into its place.
	 */
	for (size_t i = w->n_copies; i-- > 0;) {
		char *path =
		    i < w->n_copies && w->copies[i].si == si ? strdup(w->copies[i].path) : NULL;
		char e[1024] = "";
		struct wtail *nt;
		struct stat st;
		int spool_failed;
		struct stat looked;

		if (path != NULL && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    tail_find(w, si, st.st_dev, st.st_ino) == NULL &&
		    !has_record(w, si, path, &st) && !is_copy(w, si, path, -1, &looked)) {
			nt = open_path(w, si, path, NULL, &looked, &spool_failed, e, sizeof(e));
			if (nt != NULL)
				dirty_add(w, nt);
			else if (e[0] != '\0') /* not silent: the next rescan finds it again */
				log_err("%s (retried at the next rescan)", e);
		}
		free(path);
	}
}

/* Keeps, for the record of tail wt, the real directory its path leads to when that path goes
 * through a symbolic link to a directory (a deploy's `current -> releases/N`), if the path still
 * leads to the file: re-pointed while logmeter is stopped, the link no longer leads to the file,
 * which recover() then looks for there (find_in_realdir). Once per record and tail; best effort
 * (what is lost is only that finding). */
static void note_realdir(struct watch *w, struct wtail *wt)
{
	int64_t id = tail_file(wt->t)->id;
	char *dir, *real = NULL, norm[PATH_MAX], e[1024];

	if (id == 0 || id == wt->realdir_id)
		return;
	wt->realdir_id = id;
	dir = path_dir(tail_path(wt->t));
	if (dir != NULL && dir[0] != '\0' && path_normalize(dir, norm, sizeof(norm)) == 0)
		real = realpath(dir, NULL);
	if (real != NULL && strcmp(real, norm) != 0 &&
	    names_file(tail_path(wt->t), tail_dev(wt->t), tail_ino(wt->t)) &&
	    spool_file_realdir_put(w->ctx.spool, id, real, e, sizeof(e)) < 0)
		log_warn("%s", e);
	free(real);
	free(dir);
}

/* Reads a tail to its end (opening it again if it was suspended), logging a failure once until
 * it recovers. Returns 0, -1, or 1 if the tail was released (wt is freed). */
static int read_tail(struct watch *w, struct wtail *wt, char *err, size_t errlen)
{
	char e[1024] = "";
	int64_t id = tail_file(wt->t)->id, limit = -1;
	struct stat st;
	struct timespec now;
	int rc;

	dl_del(&wt->dirty);
	if (space_paused(w->ctx.space))
		goto paused;
	rc = resume(w, wt, e, sizeof(e));
	if (rc > 0)
		return 1;
	/* Opened empty (no record yet), its first bytes may be another file's: a copy being
	 * written (cp creates its output empty first). Judged by the size it has now, and read no
	 * further: a copy seen empty here and filled before tail_read looked was read as a new
	 * file, its lines billed twice (t_copy_empty_race.sh). What came after the look comes with
	 * an event of its own, and is judged then. The copy may be matched by another source's glob
	 * only (app.log.1 of source old's app.log.*, app.log read by source live): when the
	 * original was read first, found truncated and its rest read from the copy, the copy is
	 * the original's record now, of the original's source (file_owner), and this tail leaves it
	 * to that source, or the copy would be read again, a new file of this one
	 * (t_copy_overlap_race.sh). The file judged is the one the tail holds open, not what its
	 * name leads to: a copy renamed before this look (t_copy_renamed_race.sh) is still it. */
	if (rc == 0 && tail_file(wt->t)->id == 0 && !wt->link && tail_stat(wt->t, &st) == 0) {
		size_t si = tail_source_index(wt->t);
		long owner = -1;
		struct stat looked;

		looked.st_size = -1;
		if (st.st_size > 0)
			crash_point("watch_first_look");
		if (st.st_size > 0 && (is_copy(w, si, tail_path(wt->t), tail_fd(wt->t), &looked) ||
		                       (owner = file_owner(w, si, tail_path(wt->t), &st)) >= 0)) {
			if (owner >= 0)
				share_note(w, si, tail_path(wt->t), (size_t)owner);
			tail_drop_empty(wt->t); /* its lines are the original's */
			tail_forget(w, wt);
			return 1;
		}
		/* Read no further than the size judged (it may have grown since the fstat). */
		limit = looked.st_size >= 0 ? (int64_t)looked.st_size : st.st_size;
		crash_point("watch_first_read");
	}
	errno = 0;
	if (rc == 0 && tail_stat(wt->t, &st) == 0 &&
	    tail_read_upto(wt->t, limit, e, sizeof(e)) >= 0) {
		if (wt->failing)
			log_info("%s: reading again", tail_path(wt->t));
		wt->failing = 0;
		/* Not read past the limit: changed() must see the rest. */
		wt->read_size = limit >= 0 && limit < st.st_size ? limit : st.st_size;
		wt->read_ctime = st.st_ctim;
		wt->read_racy =
		    clock_gettime(CLOCK_REALTIME, &now) != 0 || now.tv_sec - st.st_ctim.tv_sec <= 1;
		lru_touch(w, wt);
		note_realdir(w, wt);
		if (w->n_copies > 0 && tail_file(wt->t)->id != id)
			recheck_copies(w, tail_source_index(wt->t));
		return 0;
	}
	if (errno == EMEDIUMTYPE) {
		/* A compressed file that was empty when opened: let go of it, and remember why
		 * (opening it again is refused). */
		fail_log(w, tail_path(wt->t), e);
		release(w, wt, "compressed", SPOOL_FILE_GONE);
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
	dirty_add(w, wt);
	err_set(err, errlen, "%s: reading paused", tail_path(wt->t));
	return -1;
}

/* Whether tail wt's file may have changed since its last read: its size or ctime differ, or its
 * path no longer leads to it (a suspended tail), or that ctime was too recent to tell. The ctime,
 * not the mtime: a file truncated and written back to the same size may have its mtime set back
 * (touch -r), never its ctime. */
static int changed(const struct wtail *wt)
{
	struct stat st;

	if (wt->read_size < 0 || tail_stat(wt->t, &st) < 0)
		return 1;
	return st.st_size != wt->read_size || st.st_nlink == 0 || wt->read_racy ||
	       st.st_ctim.tv_sec != wt->read_ctime.tv_sec ||
	       st.st_ctim.tv_nsec != wt->read_ctime.tv_nsec;
}

/* After a successful read: closes the file if it was deleted, once it is read to its end. The read
 * before this call may have come before the last lines and the deletion (a rescan reads a file
 * while its writer appends and deletes it: those lines come with events the agent handles only
 * after the release, when the file can no longer be read), so a file found deleted is read once
 * more: after the deletion, nothing is written to it but by a writer that still holds it open
 * (tests/t_deleted_scan_race.sh). Returns 1 if released or freed by that read (wt is freed). */
static int release_if_deleted(struct watch *w, struct wtail *wt)
{
	struct stat st;
	char e[1024];
	int r;

	if (!tail_is_open(wt->t) || tail_stat(wt->t, &st) != 0 || st.st_nlink != 0)
		return 0;
	r = read_tail(w, wt, e, sizeof(e));
	if (r > 0)
		return 1;
	if (r < 0)
		return 0; /* logged; read again at the next change or rescan */
	release(w, wt, "deleted and read to its end", SPOOL_FILE_GONE);
	return 1;
}

/* ---- files the globs of several sources match ----------------------------------------------- */

/* Whether source si's glob matches `path` (its exclude too), as its scan would find it. */
static int source_matches(const struct config_source *src, const char *path)
{
	return fnmatch(src->path, path, FNM_PATHNAME) == 0 && !excluded(src, path_base(path));
}

/* The source other than si that reads the file *st (matched by si's glob at `path`), or -1 if si
 * may read it. A file is read by one source only, or its lines would be billed once per source:
 * the one whose tail holds it (also while it drains it after a rename to a name only another
 * source's glob matches); else, unless si has a record that describes it and read as far as any
 * other source's (a spool written before sources were kept apart: whichever of its sources opens
 * it first keeps it, unless another read further), a source whose record of it, further on than
 * si's, is still reading (under a name only si's glob matches: if it still describes it) or,
 * drained, still describes it. A file no source has read goes
 * to the first source in configuration order whose glob matches it: sources are scanned, and a
 * new name offered to them, in that order. A spool error counts as no record (opening the file
 * reports it).
 *
 * Drained, released, and grown since (the writer went on after rotate_wait, or a live log was
 * moved into another source's directory) by a source whose glob no longer matches it: that source
 * will not read it again, so si may; a record marked gone does not keep the file either. Where si
 * starts is tail.c's to say: from the checkpoint of the record of another source that read the
 * file the furthest (taken over), so that no line is billed twice nor lost. */
static long file_owner(struct watch *w, size_t si, const char *path, const struct stat *st)
{
	const struct config *cfg = w->ctx.cfg;
	char e[512];
	int64_t own = -1; /* the checkpoint of si's record that describes the file, or -1 */

	if (cfg->n_sources < 2)
		return -1;
	for (size_t sj = 0; sj < cfg->n_sources; sj++)
		if (sj != si && tail_find(w, sj, st->st_dev, st->st_ino) != NULL)
			return (long)sj;
	if (has_record_at(w, si, path, st, &own) == 0)
		own = -1;
	if (w->orec == NULL && (w->orec = malloc(sizeof(*w->orec))) == NULL)
		return -1;
	for (size_t sj = 0; sj < cfg->n_sources && own < INT64_MAX; sj++) {
		int fd, holds;

		/* A record of si that read as far goes on (a spool that read the file under two
		 * sources: the one that opens it first keeps it); one left behind, while another
		 * source read on, is not resumed: its lines from there were billed by the other. */
		if (sj == si ||
		    spool_file_find(w->ctx.spool, cfg->sources[sj].name, (uint64_t)st->st_dev,
		                    (uint64_t)st->st_ino, w->orec, e, sizeof(e)) <= 0 ||
		    w->orec->state == SPOOL_FILE_GONE || w->orec->offset <= own)
			continue;
		/* Still reading, under a name sj's glob matches: sj's (its open judges a
		 * truncation). Under a name only si's glob matches, it is sj's file renamed
		 * (a rotation sj drains) only if it holds what sj read: ext4 gives a freed inode to
		 * the next file created, in any directory, so that sj's file deleted or compressed
		 * while logmeter was stopped and a new log of si made after it share an inode, and
		 * taken for sj's, si's new file was read by no source at all. */
		if (w->orec->state == SPOOL_FILE_READING && source_matches(&cfg->sources[sj], path))
			return (long)sj;
		/* Drained, and the inode perhaps given to another file since. Looked at as si
		 * would open it. */
		if ((fd = look_open(w, si, path)) < 0) {
			if (w->orec->state == SPOOL_FILE_READING)
				return (long)sj;
			continue;
		}
		holds = tail_record_holds(w->orec, fd);
		close(fd);
		if (w->orec->state == SPOOL_FILE_READING && holds != 0)
			return (long)sj;
		if (holds != 1)
			continue;
		/* Released by sj, whose glob no longer matches it, and grown since: si reads on. */
		if (st->st_size <= w->orec->offset || source_matches(&cfg->sources[sj], path))
			return (long)sj;
	}
	return -1;
}

/* Notes that `path`, matched by source si's glob, is read by source `owner`: logged the first
 * time (until a rescan no longer finds it so) and counted once per path (guard_shared). */
static void share_note(struct watch *w, size_t si, const char *path, size_t owner)
{
	const struct config *cfg = w->ctx.cfg;

	for (size_t i = 0; i < w->n_shares; i++)
		if (w->shares[i].si == si && strcmp(w->shares[i].path, path) == 0) {
			w->shares[i].seen = w->gen;
			return;
		}
	log_warn("%s: matched by the glob of source %s (%s:%u) too, but read by source %s "
	         "(%s:%u) only: a file is read by one source, or its lines would be billed once "
	         "per source. Keep source %s, which reads it, and move the rules of source %s "
	         "into it (a source may carry many rules), or narrow the glob of source %s "
	         "(docs/tailing.md)",
	         path, cfg->sources[si].name, cfg->sources[si].loc.file, cfg->sources[si].loc.line,
	         cfg->sources[owner].name, cfg->sources[owner].loc.file,
	         cfg->sources[owner].loc.line, cfg->sources[owner].name, cfg->sources[si].name,
	         cfg->sources[si].name);
	guard_shared(w->ctx.guard, path);
	if (grow((void **)&w->shares, &w->cap_shares, w->n_shares, sizeof(*w->shares)) < 0 ||
	    (w->shares[w->n_shares].path = strdup(path)) == NULL)
		return;
	w->shares[w->n_shares].si = si;
	w->shares[w->n_shares].seen = w->gen;
	w->n_shares++;
}

static void share_remove(struct watch *w, size_t i)
{
	free(w->shares[i].path);
	w->shares[i] = w->shares[--w->n_shares];
}

/* Logs open_path's refusal of a name that leads to another file than `expect` now (`e` says
 * which), and what comes of it. */
static void moved_note(const char *e, const struct stat *expect, const struct stat *judged)
{
	log_info("%s (%s)", e,
	         expect == judged ? "replaced since it was judged: judged when seen again"
	                          : "rotated meanwhile: looked for again");
}

/* Opens a tail for `path` of source `si`. `expect` (or NULL): the file the caller means (its
 * st_dev and st_ino): if `path` leads to another one when looked at or opened (rotated since the
 * caller looked), nothing is opened (tail_open_flags, ESTALE) nor noted as another source's
 * (share_note), and the caller looks again. `judged` (or NULL, or its st_size -1: not judged, it
 * has a record or is opened for another reason): the file as is_copy found it no copy. Another
 * file under `path` now (a copy moved over it: `cp app.log copy.tmp && mv copy.tmp new.log`) is
 * not opened, but judged when the event of its name comes, or at the next rescan
 * (t_copy_replaced_race.sh); the file judged, longer now, is opened as an empty file is, and
 * judged again at its first read (t_copy_judged_race.sh). Returns it, or NULL: the file cannot be
 * opened now (logged), or *spool_failed is set and `err` says why. */
static struct wtail *open_path(struct watch *w, size_t si, const char *path,
                               const struct stat *expect, const struct stat *judged,
                               int *spool_failed, char *err, size_t errlen)
{
	char e[1024] = "";
	long fi = fail_find(w, path);
	int first = first_scan(w, si);
	unsigned flags = !first && !(fi >= 0 && w->fails[fi].at_start) ? TAIL_OPEN_CREATED : 0;
	struct tail *t;
	struct wtail *wt;
	struct stat st;
	int ferr = 0;
	long owner;
	int64_t size = judged != NULL ? (int64_t)judged->st_size : -1;

	*spool_failed = 0;
	if (size >= 0 && expect == NULL)
		expect = judged;
	/* Which source reads the file is asked of the file the caller means. Another one under the
	 * name now (moved there since the caller looked) is refused first, as tail_open_flags
	 * refuses it: not noted as shared, which would log it as matched by si's glob, count it in
	 * status and say degraded, for a file si never meant to open and whose name its glob may
	 * not even match (a rotation found at start: t_recover_shared_race.sh). */
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
		if (expect != NULL &&
		    (st.st_dev != expect->st_dev || st.st_ino != expect->st_ino)) {
			err_set(e, sizeof(e),
			        "%s: leads to another file (inode %ju) than a moment ago (%ju)",
			        path, (uintmax_t)st.st_ino, (uintmax_t)expect->st_ino);
			moved_note(e, expect, judged);
			return NULL;
		}
		if ((owner = file_owner(w, si, path, &st)) >= 0) {
			share_note(w, si, path, (size_t)owner);
			return NULL;
		}
	}
	make_room(w, NULL, 1);
	/* Between the look and the open, a copy may be filled (cp creates its output empty, then
	 * writes it): the tail opens it as it opens an empty file if it grew, and read_tail judges
	 * it again by the size it has then (t_copy_judged_race.sh). */
	if (size >= 0)
		crash_point("watch_open_judged");
	t = tail_open_flags(&w->ctx, path, si, flags, expect, size, &ferr, e, sizeof(e));
	if (t == NULL && ferr == ESTALE && expect != NULL) {
		moved_note(e, expect, judged);
		return NULL;
	}
	if (t == NULL) {
		fail_log(w, path, e);
		if (first && (fi = fail_find(w, path)) >= 0)
			w->fails[fi].at_start = 1;
		if (ferr != 0)
			return NULL;
		err_set(err, errlen, "%s", e);
		*spool_failed = 1;
		return NULL;
	}
	if (fi >= 0)
		fail_remove(w, (size_t)fi);
	wt = calloc(1, sizeof(*wt));
	if (wt == NULL ||
	    grow((void **)&w->tails, &w->cap_tails, w->n_tails, sizeof(*w->tails)) < 0) {
		free(wt);
		tail_free(t);
		log_err("%s: out of memory", path);
		return NULL;
	}
	wt->t = t;
	wt->fwd = -1;
	wt->orphan_size = -1;
	wt->read_size = -1;
	wt->seen = w->gen;
	wt->slot = w->n_tails;
	w->tails[w->n_tails++] = wt;
	htab_add(&w->tail_id, &wt->by_id, hash_id(si, tail_dev(t), tail_ino(t)));
	tail_place(w, wt, path);
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		int fwd = inotify_add_watch(w->ifd, path, WATCH_FILE_MASK);

		wt->link = 1;
		wt->real = realpath(path, NULL);
		if (fwd >= 0) {
			tail_set_fwd(w, wt, fwd);
		} else if (errno == ENOSPC) {
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
	w->n_open++;
	lru_touch(w, wt);
	log_info("%s: tailing for source %s from offset %jd", path, w->ctx.cfg->sources[si].name,
	         (intmax_t)tail_file(t)->offset);
	return wt;
}

/* Whether the tail's current path still names its file. */
static int path_still_names(const struct tail *t)
{
	return names_file(tail_path(t), tail_dev(t), tail_ino(t));
}

/* A glob match `path` is the file of tail wt: note it, follow a rename. */
static void matched_again(struct watch *w, struct wtail *wt, const char *path)
{
	wt->seen = w->gen;
	if (wt->orphan) {
		log_info("%s: matched again by its glob", path);
		wt->orphan = 0;
		wt->orphan_size = -1;
	}
	if (strcmp(tail_path(wt->t), path) != 0 && (wt->base == NULL || !path_still_names(wt->t)))
		follow_name(w, wt, path);
}

/* Whether `path`, a name source si's glob matched that leads to the file of tail wt under
 * another name, is one the source refuses to open (guard_open: a symlink it does not follow, b.log
 * -> a.log): then it is logged once and counted, as `check` lists it, and is no match of that
 * file. Asked at every scan, as for a refused name whose file no tail holds (open_path). */
static int refused_name(struct watch *w, size_t si, const struct wtail *wt, const char *path)
{
	char e[1024];
	int refused, fd;

	if (strcmp(tail_path(wt->t), path) == 0)
		return 0;
	fd = guard_open(w->ctx.guard, &w->ctx.cfg->sources[si], path, &refused, e, sizeof(e));
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (!refused)
		return 0;
	fail_log(w, path, e);
	return 1;
}

/* At start (or when a reload added the source): a source whose glob matches no file bills
 * nothing, often because the service cannot see where the admin's shell can (ProtectHome=). */
static void warn_nomatch(const struct config_source *src)
{
	char msg[PATH_MAX + 512];

	path_glob_nomatch(src->name, src->path, msg, sizeof(msg));
	log_warn("%s; nothing is read from it until a file appears", msg);
}

static int scan_source(struct watch *w, size_t si, char *err, size_t errlen)
{
	const struct config_source *src = &w->ctx.cfg->sources[si];
	glob_t g;
	int rc = 0, grc;
	size_t matched = 0;

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
			if (tail_source_index(w->tails[i]->t) == si)
				w->tails[i]->seen = w->gen;
		globfree(&g);
		return 0;
	}
	/* Files logmeter knows first, then new ones: a new file may be the copy of a known one
	 * (copytruncate), which is only told while that one is tailed. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; grc == 0 && k < g.gl_pathc; k++) {
			const char *path = g.gl_pathv[k];
			struct wtail *wt;
			struct stat st;
			int spool_failed;
			struct stat looked;

			looked.st_size = -1;
			if (excluded(src, path_base(path)) || stat(path, &st) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			matched += pass == 0;
			wt = tail_find(w, si, st.st_dev, st.st_ino);
			if (wt != NULL) {
				/* stat(2) followed a link the source would refuse to open: not
				 * the tailed file's name. */
				if (pass == 0 && !refused_name(w, si, wt, path))
					matched_again(w, wt, path);
				continue;
			}
			if (pass == 0 ? !has_record(w, si, path, &st)
			              : is_copy(w, si, path, -1, &looked))
				continue;
			if (open_path(w, si, path, NULL, &looked, &spool_failed, err, errlen) ==
			        NULL &&
			    spool_failed) {
				rc = -1;
				err = NULL; /* keep the first error */
			}
		}
	}
	globfree(&g);
	if (matched == 0 && first_scan(w, si))
		warn_nomatch(src);
	return rc;
}

/* A symlinked tail whose link now leads elsewhere: it takes the name its file has now in the
 * directory of the link's old target (found by inode: it may have been rotated there), so that
 * its record and status name the file itself. */
static void name_target(struct watch *w, struct wtail *wt)
{
	char *p = wt->real != NULL ? find_beside(wt->real, tail_dev(wt->t), tail_ino(wt->t)) : NULL;

	if (p != NULL) {
		log_info("%s: its link leads elsewhere now: it is %s", tail_path(wt->t), p);
		follow_name(w, wt, p);
	}
	free(p);
}

/* A tail whose name no event told (moved to a directory nobody watches, where IN_MOVED_TO is not
 * reported): its record takes the path the kernel knows for its descriptor, so that status names
 * the file where it is. */
static void name_from_fd(struct watch *w, struct wtail *wt)
{
	char path[PATH_MAX];

	if (wt->base != NULL || wt->link || tail_current_path(wt->t, path, sizeof(path)) < 0 ||
	    strcmp(path, tail_path(wt->t)) == 0)
		return;
	/* Its IN_MOVED_TO did not come by this rescan: it went where no watch sees it. */
	tail_set_cookie(w, wt, 0);
	log_info("%s: moved out of sight, to %s", tail_path(wt->t), path);
	follow_name(w, wt, path);
}

/* A tail no longer matched by its glob whose path no longer leads to its file, though the file
 * is neither deleted nor renamed: a directory symlink on the path re-pointed (a deploy's
 * `current -> releases/N`), the path now another file's, with a tail and record of its own. It
 * takes the name the kernel gives its descriptor, so that its record and status name the file
 * itself, not the path the other file has now. */
static void name_real(struct watch *w, struct wtail *wt)
{
	char path[PATH_MAX];

	if (wt->base == NULL || wt->link || path_still_names(wt->t) ||
	    tail_current_path(wt->t, path, sizeof(path)) < 0 ||
	    strcmp(path, tail_path(wt->t)) == 0 ||
	    !names_file(path, tail_dev(wt->t), tail_ino(wt->t)))
		return;
	log_info("%s: its path leads to another directory now: it is %s", tail_path(wt->t), path);
	follow_name(w, wt, path);
}

/* ---- records of files not found at start ---------------------------------------------------- */

struct reading_list {
	struct watch *w;
	struct spool_file *v;
	size_t n, cap;
};

/* Keeps the records recover() looks for: only those of files no tail holds. A record is a few
 * kilobytes (its path), and after the first scan of 1,000 new files all 1,000 are "reading":
 * copying them all made the agent's peak memory. */
static int collect_reading(const struct spool_file *f, void *ud)
{
	struct reading_list *l = ud;
	long si;

	if (f->state != SPOOL_FILE_READING)
		return 0;
	si = config_source_find(l->w->ctx.cfg, f->source);
	if (si < 0 || !first_scan(l->w, (size_t)si) ||
	    tail_find(l->w, (size_t)si, (dev_t)f->dev, (ino_t)f->ino) != NULL)
		return 0;
	if (grow((void **)&l->v, &l->cap, l->n, sizeof(*l->v)) < 0)
		return -1;
	l->v[l->n++] = *f;
	return 0;
}

/* The longest line start looked for by lines_found. */
#define WATCH_PIECE_LINE 4096

/* Whether the file `fd` holds, each at the start of one of its lines, the `n` (1 or 2) lines
 * `line[i]` (`len[i]` bytes, the newline included if the line had one within WATCH_PIECE_LINE
 * bytes). Reads the whole file once in 64 KiB steps, keeping the end of each step for a line cut
 * across two. Returns 1 if all were found, 0 if not, or if the file cannot be read. */
static int lines_found(int fd, char *const line[2], const size_t len[2], int n)
{
	enum { STEP = 65536 };
	char *buf = malloc(STEP + WATCH_PIECE_LINE + 1);
	size_t have = 0, keep = 0;
	int found[2] = {n < 1, n < 2};
	char before = '\n'; /* the byte before buf[0]: the file's start is a line's start */
	off_t at = 0;

	for (int i = 0; i < n; i++)
		if (len[i] > keep)
			keep = len[i];
	while (buf != NULL && !(found[0] && found[1])) {
		ssize_t r = pread(fd, buf + have, STEP, at);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		at += r;
		have += (size_t)r;
		for (int i = 0; i < n; i++) {
			const char *h = buf;

			while (!found[i] &&
			       (h = memmem(h, have - (size_t)(h - buf), line[i], len[i])) != NULL) {
				found[i] = (h == buf ? before : h[-1]) == '\n';
				h++;
			}
		}
		/* The last keep - 1 bytes may begin a line cut by the next step. */
		if (have > keep - 1) {
			size_t drop = have - (keep - 1);

			before = buf[drop - 1];
			memmove(buf, buf + drop, keep - 1);
			have = keep - 1;
		}
	}
	free(buf);
	return found[0] && found[1];
}

/* Whether the file open as `pfd` (not read, no record) holds a piece of the file `fd` (read, or
 * read to its end now): its first line, and its second if it has one, are whole lines of `fd`. A
 * file made of lines of a log (`tail`, `grep`, `sort` of it) is so; a rotation never read is not.
 * The lines it starts with that `fd` starts with too, in the same order, are left out first: a
 * header every file of the log starts with (a banner, or W3C's `#Version` and `#Fields` lines),
 * which a rotation never read holds as well and which told it for a piece. A piece cut from the
 * middle or the end of `fd` does not start with them, and the lines after them tell for one that
 * does. The first WATCH_PIECE_LINE bytes of a longer line stand for it. Returns 1 or 0 (0 if
 * `pfd` cannot be read). */
static int piece_of(int pfd, int fd)
{
	char *line[2] = {NULL, NULL}, *head = malloc(2 * WATCH_PIECE_LINE);
	char *own = malloc(2 * WATCH_PIECE_LINE);
	size_t len[2] = {0, 0}, skip = 0;
	ssize_t r = -1, o = -1;
	int n = 0, is_piece = 0;

	if (head != NULL && own != NULL) {
		do
			r = pread(pfd, head, 2 * WATCH_PIECE_LINE, 0);
		while (r < 0 && errno == EINTR);
		do
			o = pread(fd, own, 2 * WATCH_PIECE_LINE, 0);
		while (r > 0 && o < 0 && errno == EINTR);
	}
	while (r > 0 && o > 0 && skip < (size_t)r) {
		char *nl = memchr(head + skip, '\n', (size_t)r - skip);
		size_t end = nl != NULL ? (size_t)(nl - head) + 1 : 0;

		if (nl == NULL || end > (size_t)o ||
		    memcmp(head + skip, own + skip, end - skip) != 0)
			break;
		skip = end;
	}
	for (size_t at = skip; r > 0 && n < 2 && at < (size_t)r;) {
		char *nl = memchr(head + at, '\n', (size_t)r - at);
		size_t end = nl != NULL ? (size_t)(nl - head) + 1 : (size_t)r;

		line[n] = head + at;
		len[n++] = end - at > WATCH_PIECE_LINE ? WATCH_PIECE_LINE : end - at;
		at = end;
	}
	if (n > 0)
		is_piece = lines_found(fd, line, len, n);
	free(own);
	free(head);
	return is_piece;
}

/* Whether a source holds the file at `path` (stat *st) beside a file of source si recovered at
 * start: a tail of si, or another source (file_owner: its tail, or its record still reading, or
 * drained and still describing the file, when that source's own look at start has not opened
 * it yet, since records are recovered in source order). Such a file is that source's, read by
 * it, and no rotation of si never read (not noted as shared, nor counted). */
static int held_by_source(struct watch *w, size_t si, const char *path, const struct stat *st)
{
	return tail_find(w, si, st->st_dev, st->st_ino) != NULL || file_owner(w, si, path, st) >= 0;
}

/* unread_rotations in one directory, `dir` (the log's own, or its olddir). `rec` is scratch
 * space; `*nfd` is the renamed file `now` once opened for the first candidate (-2: not yet).
 * Each file is judged by what it holds when opened for the look (the stat of that descriptor),
 * and opened for its tail only if its name still leads to that file (open_path's `expect`): a
 * rotation meanwhile (logrotate's run as logmeter starts) moves it on (app.log.1 to app.log.2)
 * and another file into its name, the live log another tail reads, or one never judged. Then the
 * directory is looked through again (the files opened since have tails, and are skipped), at
 * most WATCH_RECOVER_LOOKS more times; a file judged no rotation was warned about by the first
 * look, and is left unread silently by the next ones. */
static void unread_in(struct watch *w, size_t si, const struct spool_file *f, const char *now,
                      const char *dir, struct spool_file *rec, int *nfd)
{
	const struct config_source *src = &w->ctx.cfg->sources[si];
	const char *base = path_base(f->path);
	char e[1024];
	size_t blen = strlen(base);
	struct dirent *de;
	DIR *d = opendir(dir);
	int looks = 0, moved = 0;

	while (d != NULL) {
		char *path;
		struct stat st, fst;
		int fd = -1, known = 1, spool_failed, ext = 0, named;
		const char *why = NULL;
		struct wtail *wt;

		if ((de = readdir(d)) == NULL) {
			if (!moved || looks++ >= WATCH_RECOVER_LOOKS)
				break;
			moved = 0;
			rewinddir(d);
			continue;
		}
		named = strncmp(de->d_name, base, blen) == 0 && de->d_name[blen] != '\0';
		if (!named)
			ext = tail_extension_rotation(base, de->d_name);
		if ((!named && !ext) || excluded(src, de->d_name) ||
		    (path = path_join(dir, de->d_name)) == NULL)
			continue;
		if (fnmatch(src->path, path, FNM_PATHNAME) != 0 && stat(path, &st) == 0 &&
		    S_ISREG(st.st_mode) && st.st_size > 0 && (int64_t)st.st_mtime >= f->updated &&
		    !has_record(w, si, path, &st) && !held_by_source(w, si, path, &st) &&
		    (fd = look_open(w, si, path)) >= 0) {
			/* Judged by what the look opened: renamed between the stat and the open,
			 * the name led to another file, judged as this one (looked at again below).
			 */
			if (fstat(fd, &fst) != 0 || fst.st_dev != st.st_dev ||
			    fst.st_ino != st.st_ino) {
				close(fd);
				free(path);
				moved = 1;
				continue;
			}
			/* Any match, a head alone too: which of its lines were read cannot be
			 * told, and it is not billed twice. */
			known = tail_identify(&w->ctx, fd, 0, st.st_size, src->name, NULL, 0, rec,
			                      e, sizeof(e)) != TAIL_MATCH_NONE;
			if (!known && !ext && !tail_rotation_suffix(de->d_name + blen))
				why = "its name is not one logrotate gives a rotated file";
			if (!known && why == NULL && now != NULL) {
				if (*nfd == -2)
					*nfd = look_open(w, si, now);
				if (*nfd >= 0 && piece_of(fd, *nfd))
					why =
					    "its first lines are lines of that file: a piece of it "
					    "(tail, grep or sort output), not a rotation";
			}
			close(fd);
		}
		if (why != NULL && looks > 0) {
			log_debug("%s: beside %s, not read: %s", path, now != NULL ? now : f->path,
			          why);
		} else if (why != NULL) {
			w->not_rotations++;
			log_warn(
			    "%s: beside %s, rotated while logmeter was stopped, but not read: %s "
			    "(%lu such files since start); if it is a rotation never read, "
			    "`logmeter backfill` reads it",
			    path, now != NULL ? now : f->path, why, w->not_rotations);
			guard_tailing(w->ctx.guard, GUARD_TAIL_NOT_ROTATION, path);
		} else if (!known) {
			/* Between the look and the open, a rotation may move it on and another file
			 * into its name (t_unread_rotated_race.sh): opened only if it is the file
			 * judged, else looked for again where the rotation left it. */
			crash_point("watch_unread_open");
			wt = open_path(w, si, path, &st, NULL, &spool_failed, e, sizeof(e));
			if (wt == NULL && !spool_failed &&
			    !names_file(path, st.st_dev, st.st_ino)) {
				moved = 1;
				free(path);
				continue;
			}
			w->unread_rotated++;
			log_warn(
			    "%s: rotated from %s while logmeter was stopped, and never read (no "
			    "record of it): read to its end as a new file. The file it held was "
			    "rotated again before logmeter started (%lu such files since start)",
			    path, f->path, w->unread_rotated);
			guard_tailing(w->ctx.guard, GUARD_TAIL_ROTATED_STOPPED, path);
			if (wt != NULL) {
				wt->orphan = 1;
				wt->orphan_size = -1;
			}
		}
		free(path);
	}
	if (d != NULL)
		closedir(d);
}

/* The record *f was found renamed at start (rotated while logmeter was stopped), now at `now`:
 * files beside it named after its old name with a suffix logrotate gives (app.log.1 beside
 * app.log.2, app.log-20250101, or with logrotate's `extension` app.1.log, app-20250101.log),
 * in the log's directory and in the source's olddir, that the glob does not match, changed
 * since the record's last update, without a record of the source and whose content no record
 * describes, were rotated from that name too and never read: a second rotation while logmeter
 * was stopped renamed the file that came after it. Each is read to its end as a rotated file,
 * with a warning. A file named otherwise (app.log.tail), or holding a piece of the renamed file
 * (its first lines are lines of it: `tail` or `sort` output), was made by hand of lines already
 * billed: it is left unread, with a warning, and counted. `now` NULL: the record's file was not
 * found at start (the second rotation compressed or deleted it); then only the name tells a
 * piece. */
static void unread_rotations(struct watch *w, size_t si, const struct spool_file *f,
                             const char *now)
{
	char *dir = path_dir(f->path), *old = tail_olddir(&w->ctx.cfg->sources[si], f->path);
	struct spool_file *rec = malloc(sizeof(*rec));
	int nfd = -2; /* the renamed file, opened for the first candidate */

	if (rec != NULL && dir != NULL)
		unread_in(w, si, f, now, dir, rec, &nfd);
	if (rec != NULL && old != NULL)
		unread_in(w, si, f, now, old, rec, &nfd);
	if (nfd >= 0)
		close(nfd);
	free(rec);
	free(old);
	free(dir);
}

/* Whether the file at `path` (found by the device and inode of record *f) holds what the record
 * read: its head and the check bytes before its checkpoint. A file that cannot be opened counts
 * as holding it (opening it for its tail reports why). */
static int holds_record(struct watch *w, size_t si, const char *path, const struct spool_file *f)
{
	int fd = look_open(w, si, path), holds;

	if (fd < 0)
		return 1;
	holds = tail_record_holds(f, fd) != 0;
	close(fd);
	return holds;
}

/* The tail of another source than f's that holds the file of record *f (its record read further,
 * or it went on from this record's checkpoint: tail.c), or NULL. Its file must still hold what
 * the record read (head and check bytes): a tail of another file that got the record's inode
 * after its file was deleted (ext4 gives a freed inode to the next file created) read that file
 * from its start, and the record's file is gone. */
static const struct wtail *tail_holder(struct watch *w, const struct spool_file *f)
{
	for (size_t sk = 0; sk < w->ctx.cfg->n_sources; sk++) {
		const struct wtail *wt = tail_find(w, sk, (dev_t)f->dev, (ino_t)f->ino);
		struct stat st;
		int fd, holds = 0;

		if (wt == NULL || strcmp(w->ctx.cfg->sources[sk].name, f->source) == 0)
			continue;
		fd = look_open(w, sk, tail_path(wt->t));
		if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_dev == f->dev &&
		    (uint64_t)st.st_ino == f->ino)
			holds = tail_record_holds(f, fd) == 1;
		if (fd >= 0)
			close(fd);
		return holds ? wt : NULL;
	}
	return NULL;
}

/* Whether `p` (malloc'd, or NULL) is the file of record *f of source si by content too: it
 * still holds what the record read. Frees it and returns NULL if not. */
static char *if_holds(struct watch *w, size_t si, const struct spool_file *f, char *p)
{
	int fd = p != NULL ? look_open(w, si, p) : -1, holds = 0;

	if (fd >= 0) {
		holds = tail_record_holds(f, fd);
		close(fd);
	}
	if (holds != 1) {
		free(p);
		return NULL;
	}
	return p;
}

/* The file of record *f of source si, not under its last path nor in its directory: a path a
 * symlink led to (a literal symlink re-pointed while logmeter was stopped leaves its old target
 * where it was, beside the new one or in a directory another source watches), or another name of
 * it (a hard link, its first name deleted). Looked for by inode in the directory of the link's
 * target now, then in every directory the sources watch; taken only if it holds what the record
 * read, since an inode freed by a deletion is soon another file's. Returns its path (caller
 * frees) or NULL. */
static char *find_elsewhere(struct watch *w, size_t si, const struct spool_file *f)
{
	char *real = realpath(f->path, NULL);
	char *p = real != NULL ? find_beside(real, (dev_t)f->dev, (ino_t)f->ino) : NULL;

	free(real);
	p = if_holds(w, si, f, p);
	for (size_t i = 0; p == NULL && i < w->n_dirs; i++)
		if ((uint64_t)w->dirs[i]->dev == f->dev)
			p = if_holds(w, si, f,
			             path_find_ino(w->dirs[i]->path, (dev_t)f->dev, (ino_t)f->ino));
	return p;
}

/* How long the file `st` describes has been unchanged, in milliseconds, at most `cap`, as its
 * ctime tells it: every write, truncation and rename sets it to the current time, and no user can
 * set it back (stat(2), inode(7)). 0 if the ctime is ahead of the wall clock (a clock stepped
 * back) or the clock cannot be read. */
static int64_t unchanged_ms(const struct stat *st, int64_t cap)
{
	struct timespec now;
	int64_t d;

	if (clock_gettime(CLOCK_REALTIME, &now) != 0)
		return 0;
	d = ((int64_t)now.tv_sec - (int64_t)st->st_ctim.tv_sec) * 1000 +
	    ((int64_t)now.tv_nsec - (int64_t)st->st_ctim.tv_nsec) / 1000000;
	if (d < 0)
		return 0;
	return d < cap ? d : cap;
}

/* The file of record *f of source si in the directory its path led to through a symbolic link
 * when it was last read there (note_realdir), if the path leads to another directory now (the
 * link re-pointed while logmeter was stopped: the file itself was neither moved nor deleted).
 * Sets *moved (then `was` holds that directory and `now` where the path leads now, `len` bytes
 * each, "no directory" if nowhere) and returns the file's path if it is still there and holds
 * what the record read (caller frees), else NULL. */
static char *find_in_realdir(struct watch *w, size_t si, const struct spool_file *f, char *was,
                             char *now, size_t len, int *moved)
{
	char e[1024], *dir, *real = NULL;
	int r = spool_file_realdir_get(w->ctx.spool, f->id, was, len, e, sizeof(e));

	*moved = 0;
	if (r < 0)
		log_warn("%s", e);
	if (r <= 0)
		return NULL;
	dir = path_dir(f->path);
	if (dir != NULL && dir[0] != '\0')
		real = realpath(dir, NULL);
	free(dir);
	*moved = real == NULL || strcmp(real, was) != 0;
	snprintf(now, len, "%s", real != NULL ? real : "no directory");
	free(real);
	if (!*moved)
		return NULL;
	return if_holds(w, si, f, path_find_ino(was, (dev_t)f->dev, (ino_t)f->ino));
}

/* At the first scan of a source (at start, or after a reload added or changed it), after the
 * globs were expanded: a record still "reading" whose file no glob found was rotated (renamed to
 * a name its glob does not match) or deleted while logmeter was not reading it. Looks for it
 * under its last path, then by inode in that directory (where rotation leaves it), then where
 * its symlink leads now and in the watched directories (find_elsewhere), and reads it to its end
 * as a rotated-away file; a file not found is marked gone. Returns 0 or -1 (a spool
 * error, in `err`). */
static int recover(struct watch *w, char *err, size_t errlen)
{
	struct reading_list l = {w, NULL, 0, 0};
	char e[1024];
	int rc = 0;

	if (spool_files_foreach(w->ctx.spool, collect_reading, &l, err, errlen) != 0) {
		free(l.v);
		return -1;
	}
	for (size_t k = 0; k < l.n; k++) {
		struct spool_file *f = &l.v[k];
		long si = config_source_find(w->ctx.cfg, f->source);
		struct wtail *wt;
		const struct wtail *holder;
		struct stat st, want;
		char *path = NULL, *dir;
		int spool_failed, looks = 0, moved_dir = 0, in_realdir = 0;
		char was[PATH_MAX], now[PATH_MAX];

		if (si < 0 || !first_scan(w, (size_t)si) ||
		    tail_find(w, (size_t)si, (dev_t)f->dev, (ino_t)f->ino) != NULL ||
		    fail_find(w, f->path) >= 0)
			continue;
		memset(&want, 0, sizeof(want));
		want.st_dev = (dev_t)f->dev;
		want.st_ino = (ino_t)f->ino;
	look:
		in_realdir = 0;
		if (stat(f->path, &st) == 0 && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_dev == f->dev && (uint64_t)st.st_ino == f->ino) {
			path = strdup(f->path);
		} else {
			path = find_beside(f->path, (dev_t)f->dev, (ino_t)f->ino);
		}
		/* logrotate's olddir: moved out of the log's directory by the rotation. */
		if (path == NULL &&
		    (dir = tail_olddir(&w->ctx.cfg->sources[si], f->path)) != NULL) {
			path = path_find_ino(dir, (dev_t)f->dev, (ino_t)f->ino);
			free(dir);
		}
		if (path != NULL && !holds_record(w, (size_t)si, path, f)) {
			/* Its inode given to another file after it was deleted or compressed (ext4
			 * gives a freed inode to the next file created in the directory): that
			 * file, which no glob matches, is not the record's, and reading it as a
			 * rotation would bill what it holds (a `tail` of the log) again. */
			log_debug("%s: has the inode of %s, but not what it read: not that file",
			          path, f->path);
			free(path);
			path = NULL;
		}
		if (path == NULL && (holder = tail_holder(w, f)) != NULL) {
			/* Another source reads the file now (its record read it further, or took
			 * it over from this one: tail.c): nothing is lost, and this record is left
			 * behind. */
			log_info(
			    "%s: moved while logmeter was stopped to %s, which source %s reads",
			    f->path, tail_path(holder->t),
			    w->ctx.cfg->sources[tail_source_index(holder->t)].name);
			f->state = SPOOL_FILE_DRAINED;
			if (spool_file_update(w->ctx.spool, f, e, sizeof(e)) < 0)
				log_warn("%s", e);
			continue;
		}
		/* A directory symlink on its path re-pointed (a deploy's `current`): the file is
		 * where the path led when it was last read. */
		if (path == NULL) {
			path = find_in_realdir(w, (size_t)si, f, was, now, sizeof(was), &moved_dir);
			in_realdir = path != NULL;
		}
		if (path == NULL)
			path = find_elsewhere(w, (size_t)si, f);
		if (path == NULL && moved_dir) {
			log_warn("%s: gone while logmeter was stopped: its path leads to another "
			         "directory now (%s, was %s), and its file is not there any more: "
			         "nothing after offset %jd of it can be read",
			         f->path, now, was, (intmax_t)f->offset);
			guard_gone_unread(w->ctx.guard);
			f->state = SPOOL_FILE_GONE;
			if (spool_file_update(w->ctx.spool, f, e, sizeof(e)) < 0)
				log_warn("%s", e);
			continue;
		}
		if (path == NULL) {
			const struct config_source *src = &w->ctx.cfg->sources[si];
			char hint[PATH_MAX + 128];
			int gz = tail_rest_from_gz(&w->ctx, (size_t)si, f, rc == 0 ? err : e,
			                           rc == 0 ? errlen : sizeof(e));

			/* Renamed and compressed at once (compress without delaycompress): its
			 * rest is read from the .gz, and it is drained. Failed half-way, it stays
			 * "reading", to go on from its checkpoint at the next start. */
			if (gz < 0) {
				rc = -1;
				continue;
			}
			if (gz > 0) {
				unread_rotations(w, (size_t)si, f, NULL);
				continue;
			}
			if (src->olddir == NULL)
				snprintf(hint, sizeof(hint),
				         "; if logrotate moves rotated files to an olddir, set "
				         "olddir in [source %s]",
				         src->name);
			else
				snprintf(hint, sizeof(hint), ", nor in its olddir %s", src->olddir);
			log_warn(
			    "%s: gone while logmeter was stopped (deleted, or moved out of its "
			    "directory): nothing after offset %jd of it can be read%s",
			    f->path, (intmax_t)f->offset, hint);
			guard_gone_unread(w->ctx.guard);
			f->state = SPOOL_FILE_GONE;
			if (spool_file_update(w->ctx.spool, f, e, sizeof(e)) < 0)
				log_warn("%s", e);
			/* Compressed, or deleted, by a second rotation (compress with
			 * delaycompress, rotate 1): the file that came after it may be beside it,
			 * never read. */
			unread_rotations(w, (size_t)si, f, NULL);
			continue;
		}
		/* Between the look and the open, a rotation may move the file on (app.log.1 to
		 * app.log.2) and another into its place: the file opened would be that one, read
		 * twice or by a second tail, and the record's rest never read
		 * (t_recover_rotated_race.sh). Opened only if it is the record's file; else looked
		 * for again where the rotation left it. */
		crash_point("watch_recover_open");
		wt = open_path(w, (size_t)si, path, &want, NULL, &spool_failed, rc == 0 ? err : e,
		               rc == 0 ? errlen : sizeof(e));
		if (spool_failed)
			rc = -1;
		if (wt == NULL && !spool_failed && looks++ < WATCH_RECOVER_LOOKS &&
		    !names_file(path, (dev_t)f->dev, (ino_t)f->ino)) {
			free(path);
			path = NULL;
			goto look;
		}
		if (wt != NULL) {
			/* Under its recorded name: rotated before, read to its end by an earlier
			 * run that stopped before releasing it, not rotated since. */
			if (in_realdir)
				log_info("%s: its path leads to another directory now (%s): it is "
				         "%s, where it led, read to its end",
				         f->path, now, path);
			else if (strcmp(path, f->path) != 0)
				log_info("%s: rotated while logmeter was stopped: read to its end",
				         path);
			else
				log_info(
				    "%s: rotated earlier and not released yet: read to its end",
				    path);
			wt->orphan = 1;
			wt->orphan_size = -1;
			/* Not rotated: where its path led, under its own name. */
			if (strcmp(path, f->path) != 0 && !in_realdir)
				unread_rotations(w, (size_t)si, f, path);
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
	if ((!w->scanned || w->fresh != NULL) &&
	    recover(w, rc == 0 ? err : e, rc == 0 ? errlen : sizeof(e)) < 0)
		rc = -1;
	for (size_t i = 0; i < w->n_tails; i++) {
		struct wtail *wt = w->tails[i];

		if (wt->seen != w->gen && !wt->orphan) {
			log_info("%s: no longer matched by its glob: read until it stops growing",
			         tail_path(wt->t));
			wt->orphan = 1;
			wt->orphan_size = -1;
			if (wt->link)
				name_target(w, wt);
			else
				name_real(w, wt);
		}
		if (wt->base == NULL)
			name_from_fd(w, wt);
	}
	wait = w->ctx.cfg->agent.rotate_wait_ms;
	/* Backwards: a released tail's place is taken by the last one, already seen. */
	for (size_t i = w->n_tails; i-- > 0;) {
		struct wtail *wt = w->tails[i];
		struct stat st;
		int r = 0;

		if (atomic_load(&w->stop))
			break;
		/* A suspended file is opened only if it changed. */
		if (tail_is_open(wt->t) || changed(wt))
			r = read_tail(w, wt, rc == 0 ? err : e, rc == 0 ? errlen : sizeof(e));
		if (r > 0)
			continue;
		if (r < 0) {
			rc = -1;
			continue;
		}
		crash_point("watch_scan_read");
		if (release_if_deleted(w, wt) || !wt->orphan || tail_stat(wt->t, &st) < 0)
			continue;
		now = clock_mono_ms();
		if (st.st_size != wt->orphan_size) {
			/* Unchanged since its ctime, which may be long before this look: a run
			 * --once, or a start, sees a file rotated away while logmeter was stopped
			 * for one scan only, and kept it "reading" for ever, so that its deletion
			 * by a later rotation was counted as lines lost. */
			wt->orphan_size = st.st_size;
			wt->orphan_since = now - unchanged_ms(&st, wait);
		}
		if (now - wt->orphan_since >= wait) {
			if (tail_file(wt->t)->offset < st.st_size)
				log_info("%s: %jd bytes of an unfinished last line are left unread",
				         tail_path(wt->t),
				         (intmax_t)(st.st_size - tail_file(wt->t)->offset));
			release(w, wt,
			        "rotated away, read to its end and unchanged for rotate_wait",
			        SPOOL_FILE_DRAINED);
		}
	}
	for (size_t i = w->n_fails; i-- > 0;)
		if (w->fails[i].seen != w->gen)
			fail_remove(w, i);
	for (size_t i = w->n_copies; i-- > 0;)
		if (w->copies[i].seen != w->gen)
			copy_remove(w, i);
	for (size_t i = w->n_shares; i-- > 0;)
		if (w->shares[i].seen != w->gen)
			share_remove(w, i);
	w->scanned = 1;
	free(w->fresh);
	w->fresh = NULL;
	w->next_scan = clock_mono_ms() + w->ctx.cfg->agent.rescan_interval_ms;
	return rc;
}

/* ---- events --------------------------------------------------------------------------------- */

static void mark_dirty(struct watch *w, const struct wdir *d, const char *name)
{
	for (struct hlink *l = htab_first(&w->tail_name, hash_name(d->dev, d->ino, name));
	     l != NULL; l = htab_next(l)) {
		struct wtail *wt = CONTAINER(l, struct wtail, by_name);

		if (wt->dir_dev == d->dev && wt->dir_ino == d->ino && strcmp(wt->base, name) == 0)
			dirty_add(w, wt);
	}
}

/* A name appeared (or changed its attributes) in a watched directory: open it if a source's glob
 * matches it and it is not open yet. */
/* Whether source si's glob matches `name` in directory d (whose joined path is `joined`); sets
 * *cand to the path to open it by. */
static int glob_match(const struct watch *w, size_t si, const struct wdir *d, const char *name,
                      const char *joined, const char **cand)
{
	const struct config_source *src = &w->ctx.cfg->sources[si];

	*cand = joined;
	/* A pattern without a '/' is relative to the working directory and so are the paths
	 * glob(3) gives for it. */
	if (strchr(src->path, '/') == NULL) {
		if (strcmp(d->path, ".") != 0)
			return 0;
		*cand = name;
	}
	return fnmatch(src->path, *cand, FNM_PATHNAME | FNM_PERIOD) == 0 && !excluded(src, name);
}

static void try_open(struct watch *w, const struct wdir *d, const char *name)
{
	char *joined = path_join(d->path, name), e[1024];

	if (joined == NULL)
		return;
	for (size_t si = 0; si < w->ctx.cfg->n_sources; si++) {
		const char *cand;
		struct wtail *wt;
		struct stat st;
		int spool_failed;
		struct stat looked;

		looked.st_size = -1;
		if (!glob_match(w, si, d, name, joined, &cand) || stat(cand, &st) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		wt = tail_find(w, si, st.st_dev, st.st_ino);
		if (wt != NULL) {
			if (refused_name(w, si, wt, cand))
				continue;
			if (wt->base == NULL || wt->orphan)
				matched_again(w, wt, cand);
			dirty_add(w, wt);
			continue;
		}
		if (!has_record(w, si, cand, &st) && is_copy(w, si, cand, -1, &looked))
			continue;
		wt = open_path(w, si, cand, NULL, &looked, &spool_failed, e, sizeof(e));
		if (wt != NULL)
			dirty_add(w, wt);
	}
	free(joined);
}

static void name_gone(struct watch *w, struct wtail *wt, uint32_t cookie);

/* A name was created or renamed over: a tail still known under it whose file is no longer what
 * the name leads to (an editor's or a logger's atomic replace: no IN_DELETE for the old file)
 * lost its name. */
static void name_replaced(struct watch *w, const struct wdir *d, const char *name)
{
	char *path = path_join(d->path, name);
	struct stat st;
	int have = path != NULL && stat(path, &st) == 0;
	size_t n;

	free(path);
	n = found_by_name(w, d->dev, d->ino, name);
	for (size_t k = 0; k < n; k++) {
		struct wtail *wt = w->found[k];

		if (have && st.st_dev == tail_dev(wt->t) && st.st_ino == tail_ino(wt->t))
			continue;
		name_gone(w, wt, 0);
	}
}

/* IN_MOVED_TO with the cookie of a tail's IN_MOVED_FROM: its new name. */
static void moved_to(struct watch *w, const struct wdir *d, const char *name, uint32_t cookie)
{
	size_t n;

	if (cookie == 0)
		return;
	n = found_by_cookie(w, cookie);
	for (size_t k = 0; k < n; k++) {
		struct wtail *wt = w->found[k];
		char *path;

		tail_set_cookie(w, wt, 0);
		path = path_join(d->path, name);
		if (path == NULL)
			continue;
		follow_name(w, wt, path);
		dirty_add(w, wt);
		free(path);
	}
}

/* The tail's name was moved away or deleted: read what it still holds, close it if it was
 * deleted, and let a rescan decide about a renamed one. */
static void name_gone(struct watch *w, struct wtail *wt, uint32_t cookie)
{
	char e[1024];
	int r;

	if (!tail_is_open(wt->t)) {
		/* Suspended (read to its end when it was closed) and its name deleted: it can no
		 * longer be opened. A renamed one is followed by IN_MOVED_TO or a rescan. */
		if (cookie == 0) {
			release(w, wt, "deleted while closed", SPOOL_FILE_GONE);
			return;
		}
	} else {
		r = read_tail(w, wt, e, sizeof(e));
		if (r > 0 || (r == 0 && release_if_deleted(w, wt)))
			return;
	}
	tail_unname(w, wt);
	tail_set_cookie(w, wt, cookie);
	w->need_scan = 1;
}

/* ---- files renamed before they were opened ----------------------------------------------------
 */

static void token_drop(struct watch *w, size_t i)
{
	free(w->tokens[i].name);
	w->tokens[i] = w->tokens[--w->n_tokens];
}

static void tokens_clear(struct watch *w)
{
	while (w->n_tokens > 0)
		token_drop(w, w->n_tokens - 1);
}

static int token_at(const struct wtoken *k, const struct wdir *d, const char *name)
{
	return k->name != NULL && k->dir_dev == d->dev && k->dir_ino == d->ino &&
	       strcmp(k->name, name) == 0;
}

/* Follows the files of the tokens through event `ev` of directory d, and gives a token to a file
 * that appears under a name a glob matches. */
static void tokens_event(struct watch *w, const struct wdir *d, const struct inotify_event *ev)
{
	char *joined;

	if (ev->mask & IN_MOVED_FROM) {
		for (size_t i = 0; i < w->n_tokens; i++) {
			struct wtoken *k = &w->tokens[i];

			if (token_at(k, d, ev->name)) {
				free(k->name);
				k->name = NULL;
				k->cookie = ev->cookie;
			}
		}
	}
	if (ev->mask & (IN_DELETE | IN_CREATE | IN_MOVED_TO)) {
		/* Deleted, or replaced by what comes now. */
		for (size_t i = w->n_tokens; i-- > 0;)
			if (token_at(&w->tokens[i], d, ev->name))
				token_drop(w, i);
	}
	if ((ev->mask & IN_MOVED_TO) && ev->cookie != 0) {
		for (size_t i = 0; i < w->n_tokens; i++) {
			struct wtoken *k = &w->tokens[i];

			if (k->name == NULL && k->cookie == ev->cookie &&
			    (k->name = strdup(ev->name)) != NULL) {
				k->dir_dev = d->dev;
				k->dir_ino = d->ino;
				k->cookie = 0;
			}
		}
	}
	if (!(ev->mask & (IN_CREATE | IN_MOVED_TO)) ||
	    (joined = path_join(d->path, ev->name)) == NULL)
		return;
	for (size_t si = 0; si < w->ctx.cfg->n_sources; si++) {
		const char *cand;
		struct wtoken *k;

		if (!glob_match(w, si, d, ev->name, joined, &cand) ||
		    grow((void **)&w->tokens, &w->cap_tokens, w->n_tokens, sizeof(*w->tokens)) < 0)
			continue;
		k = &w->tokens[w->n_tokens];
		k->si = si;
		k->dir_dev = d->dev;
		k->dir_ino = d->ino;
		k->cookie = 0;
		if ((k->name = strdup(ev->name)) != NULL)
			w->n_tokens++;
	}
	free(joined);
}

/* Every queued event handled: each token's file is under its name now (unless it was renamed
 * again since, which the next events tell). A file no tail holds was renamed before the agent
 * opened it: it is opened there and read to its end, as a rotated file (the rescan that follows
 * finds its glob no longer matches it). One that moved out of the watched directories before the
 * agent could open it is lost: said so. */
static void tokens_resolve(struct watch *w)
{
	char e[1024];

	for (size_t i = 0; i < w->n_tokens; i++) {
		const struct wtoken *k = &w->tokens[i];
		const struct config_source *src = &w->ctx.cfg->sources[k->si];
		const struct wdir *d =
		    k->name != NULL ? dir_by_id(w, k->dir_dev, k->dir_ino) : NULL;
		char *path = d != NULL ? path_join(d->path, k->name) : NULL;
		struct wtail *wt;
		struct stat st;
		int spool_failed;
		struct stat looked;

		looked.st_size = -1;
		if (k->name == NULL)
			log_warn(
			    "source %s: a file that appeared under a name its glob matches was "
			    "moved out of the watched directories before logmeter could open it: "
			    "its lines are not read",
			    src->name);
		if (path != NULL && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    tail_find(w, k->si, st.st_dev, st.st_ino) == NULL &&
		    (has_record(w, k->si, path, &st) || !is_copy(w, k->si, path, -1, &looked))) {
			wt = open_path(w, k->si, path, NULL, &looked, &spool_failed, e, sizeof(e));
			if (wt != NULL) {
				log_info(
				    "%s: appeared under a name the glob of source %s matches and "
				    "was renamed before logmeter opened it: read to its end",
				    path, src->name);
				dirty_add(w, wt);
			}
		}
		free(path);
	}
	tokens_clear(w);
}

/* Whether events are waiting in the inotify queue (FIONREAD, inotify(7)). */
static int events_queued(const struct watch *w)
{
	int n = 0;

	return ioctl(w->ifd, FIONREAD, &n) == 0 && n > 0;
}

/* A watch on a file itself (a symlinked path) reported `ev`. */
static void file_event(struct watch *w, const struct inotify_event *ev)
{
	size_t n = found_by_fwd(w, ev->wd);
	char e[1024];

	for (size_t k = 0; k < n; k++) {
		struct wtail *wt = w->found[k];

		if (ev->mask & IN_IGNORED) {
			tail_set_fwd(w, wt, -1);
			continue;
		}
		if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE))
			dirty_add(w, wt);
		if (ev->mask & IN_MOVE_SELF)
			w->need_scan = 1;
		/* IN_ATTRIB: its link count may have dropped to 0 */
		if ((ev->mask & IN_ATTRIB) && read_tail(w, wt, e, sizeof(e)) == 0)
			release_if_deleted(w, wt);
	}
}

static void handle_event(struct watch *w, const struct inotify_event *ev)
{
	struct wdir *d;

	if (ev->mask & IN_Q_OVERFLOW) {
		log_warn("the inotify event queue overflowed: events were lost; rescanning");
		w->need_scan = 1;
		/* What they would have told of files renamed before they were opened is lost: the
		 * rescan finds what its globs match. */
		tokens_clear(w);
		return;
	}
	d = dir_by_wd(w, ev->wd);
	if (d == NULL) {
		file_event(w, ev);
		return;
	}
	if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
		/* Gone or moved, so its path no longer leads to it: forget it, and let a rescan
		 * watch whatever the glob now finds. */
		if (!(ev->mask & IN_IGNORED))
			inotify_rm_watch(w->ifd, ev->wd);
		dir_remove(w, d);
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
	/* Nothing below removes a directory: d stays valid. */
	tokens_event(w, d, ev);
	if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE))
		mark_dirty(w, d, ev->name);
	if (ev->mask & (IN_CREATE | IN_MOVED_TO))
		name_replaced(w, d, ev->name);
	if (ev->mask & IN_MOVED_TO)
		moved_to(w, d, ev->name, ev->cookie);
	if (ev->mask & (IN_CREATE | IN_MOVED_TO | IN_ATTRIB))
		try_open(w, d, ev->name);
	if (ev->mask & (IN_MOVED_FROM | IN_DELETE)) {
		size_t n = found_by_name(w, d->dev, d->ino, ev->name);

		for (size_t k = 0; k < n; k++) {
			/* The name still leads to the tail's file: the event was about an earlier
			 * file under it, one renamed before the agent opened it (its token). */
			if (path_still_names(w->found[k]->t))
				continue;
			name_gone(w, w->found[k], (ev->mask & IN_MOVED_FROM) ? ev->cookie : 0);
		}
	}
}

/* Without a watch (ENOSPC) a file's changes go unreported: its size and mtime are checked with
 * stat(2) every WATCH_POLL_MS, and it is read when they changed. */
static void poll_unwatched(struct watch *w)
{
	char e[1024];

	/* Backwards: a released tail's place is taken by the last one, already seen. */
	for (size_t i = w->n_tails; i-- > 0;) {
		struct wtail *wt = w->tails[i];

		if (atomic_load(&w->stop))
			return;
		if (tail_watched(w, wt) || !changed(wt))
			continue;
		if (read_tail(w, wt, e, sizeof(e)) == 0)
			release_if_deleted(w, wt);
	}
	w->next_poll = clock_mono_ms() + WATCH_POLL_MS;
}

/* Reads the tails the last batch of events marked. */
static void read_dirty(struct watch *w)
{
	struct dlink todo;
	char e[1024];

	if (w->dirty.next == &w->dirty)
		return;
	/* Taken out of w->dirty first: a read that is paused marks its tail again, for later. */
	todo = w->dirty;
	todo.next->prev = &todo;
	todo.prev->next = &todo;
	dl_init(&w->dirty);
	while (todo.next != &todo && !atomic_load(&w->stop)) {
		struct wtail *wt = CONTAINER(todo.next, struct wtail, dirty);

		dl_del(&wt->dirty);
		read_tail(w, wt, e, sizeof(e)); /* may free wt, never another tail */
	}
	while (todo.next != &todo) { /* stopped: the rest stays marked */
		struct dlink *l = todo.next;

		dl_del(l);
		dl_append(&w->dirty, l);
	}
}

int watch_turn(struct watch *w, int64_t max_wait_ms, char *err, size_t errlen)
{
	struct pollfd pfd[2];
	int64_t now, wait, space_wait;
	char e[1024];
	ssize_t n;
	int prc;

	if (w == NULL) {
		err_set(err, errlen, "watch_turn: invalid arguments");
		return -1;
	}
	if (atomic_load(&w->stop))
		return 1;
	now = clock_mono_ms();
	health_beat(HEALTH_INGEST); /* the systemd watchdog's proof of progress */
	if (w->n_tokens > 0 && !events_queued(w))
		tokens_resolve(w); /* before a rescan decides what its globs no longer match */
	if (space_poll(w->ctx.space, &space_wait))
		w->need_scan = 1; /* reading resumed: read every file */
	/* Spool errors are logged (by read_tail) and retried at the next change or rescan: a
	 * full disk must not end ingest, and the checkpoint simply does not move meanwhile. */
	if (w->need_scan || now >= w->next_scan) {
		watch_scan(w, e, sizeof(e));
		return 0;
	}
	if (w->polling && now >= w->next_poll) {
		poll_unwatched(w);
		return 0;
	}
	wait = w->next_scan - now;
	if (w->polling && w->next_poll - now < wait)
		wait = w->next_poll - now;
	if (space_wait >= 0 && space_wait < wait)
		wait = space_wait; /* paused: space_poll looks for room again */
	if (max_wait_ms >= 0 && max_wait_ms < wait)
		wait = max_wait_ms;
	pfd[0] = (struct pollfd){.fd = w->ifd, .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = w->efd, .events = POLLIN};
	health_wait_begin(HEALTH_INGEST); /* waiting for lines is not being stuck */
	prc = poll(pfd, 2, wait > INT_MAX ? INT_MAX : (int)wait);
	health_wait_end(HEALTH_INGEST);
	if (prc < 0) {
		if (errno == EINTR)
			return 0;
		err_set(err, errlen, "poll: %s", strerror(errno));
		return -1;
	}
	if (pfd[1].revents != 0)
		return 1;
	if (pfd[0].revents & (POLLERR | POLLNVAL)) {
		err_set(err, errlen, "inotify descriptor failed");
		return -1;
	}
	if (!(pfd[0].revents & POLLIN))
		return 0;
	n = read(w->ifd, w->evbuf, WATCH_EVBUF);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		err_set(err, errlen, "reading inotify events: %s", strerror(errno));
		return -1;
	}
	for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
		const struct inotify_event *ev =
		    (const struct inotify_event *)(void *)(w->evbuf + off);

		handle_event(w, ev);
		off += (ssize_t)sizeof(struct inotify_event) + ev->len;
	}
	/* Tokens are resolved only once the queue is empty: a rename still queued would move
	 * their files elsewhere. */
	if (w->n_tokens > 0 && !events_queued(w))
		tokens_resolve(w);
	read_dirty(w);
	return 0;
}

int watch_run(struct watch *w, char *err, size_t errlen)
{
	int rc;

	if (w == NULL) {
		err_set(err, errlen, "watch_run: invalid arguments");
		return -1;
	}
	while ((rc = watch_turn(w, -1, err, errlen)) == 0)
		;
	return rc < 0 ? -1 : 0;
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
	htab_init(&w->dir_wd);
	htab_init(&w->dir_id);
	htab_init(&w->tail_name);
	htab_init(&w->tail_id);
	htab_init(&w->tail_fwd);
	htab_init(&w->tail_cookie);
	dl_init(&w->lru);
	dl_init(&w->dirty);
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
		tail_free(w->tails[i]->t);
		free(w->tails[i]->base);
		free(w->tails[i]->real);
		free(w->tails[i]);
	}
	free(w->tails);
	for (size_t i = 0; i < w->n_dirs; i++) {
		free(w->dirs[i]->path);
		free(w->dirs[i]);
	}
	free(w->dirs);
	for (size_t i = 0; i < w->n_fails; i++) {
		free(w->fails[i].path);
		free(w->fails[i].msg);
	}
	free(w->fails);
	for (size_t i = 0; i < w->n_copies; i++)
		free(w->copies[i].path);
	free(w->copies);
	for (size_t i = 0; i < w->n_shares; i++)
		free(w->shares[i].path);
	free(w->shares);
	tokens_clear(w);
	free(w->tokens);
	free(w->rec);
	free(w->orec);
	htab_fini(&w->dir_wd);
	htab_fini(&w->dir_id);
	htab_fini(&w->tail_name);
	htab_fini(&w->tail_id);
	htab_fini(&w->tail_fwd);
	htab_fini(&w->tail_cookie);
	free(w->found);
	free(w->fresh);
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

/* ---- a reload ------------------------------------------------------------------------------- */

int watch_reconfigure(struct watch *w, const struct tail_ctx *ctx, const long *same, char *err,
                      size_t errlen)
{
	size_t n_old, n_new;
	unsigned char *fresh;
	long *to_new;
	uint64_t drain;
	char e[512];

	if (w == NULL || ctx == NULL || ctx->cfg == NULL || ctx->spool == NULL) {
		err_set(err, errlen, "watch_reconfigure: invalid arguments");
		return -1;
	}
	n_old = w->ctx.cfg->n_sources;
	n_new = ctx->cfg->n_sources;
	for (size_t si = 0; same != NULL && si < n_new; si++) {
		if (same[si] >= (long)n_old ||
		    (same[si] >= 0 &&
		     strcmp(w->ctx.cfg->sources[same[si]].name, ctx->cfg->sources[si].name) != 0)) {
			err_set(err, errlen, "watch_reconfigure: source %s is not an old one",
			        ctx->cfg->sources[si].name);
			return -1;
		}
	}
	/* Everything that can fail first: then nothing has changed yet. */
	fresh = calloc(n_new > 0 ? n_new : 1, 1);
	to_new = malloc((n_old > 0 ? n_old : 1) * sizeof(*to_new));
	if (fresh == NULL || to_new == NULL) {
		free(fresh);
		free(to_new);
		err_set(err, errlen, "out of memory");
		return -1;
	}
	for (size_t si = 0; si < n_old; si++)
		to_new[si] = -1;
	for (size_t si = 0; si < n_new; si++) {
		long old = same != NULL ? same[si] : -1;

		if (old >= 0 && to_new[old] < 0)
			to_new[old] = (long)si;
		else
			fresh[si] = 1;
	}
	/* Backwards: a forgotten tail's place is taken by the last one, already seen. */
	for (size_t i = w->n_tails; i-- > 0;) {
		struct wtail *wt = w->tails[i];
		size_t old = tail_source_index(wt->t);
		long si = old < n_old ? to_new[old] : -1;

		if (si < 0 || tail_set_ctx(wt->t, ctx, (size_t)si, e, sizeof(e)) < 0) {
			/* Closed as at a stop: its record keeps its state and checkpoint, so the
			 * source, back or changed, finds it again at its first scan. */
			log_info("%s: closed: its source was removed or changed by the reload",
			         tail_path(wt->t));
			tail_forget(w, wt);
			continue;
		}
		htab_del(&w->tail_id, &wt->by_id);
		htab_add(&w->tail_id, &wt->by_id,
		         hash_id((size_t)si, tail_dev(wt->t), tail_ino(wt->t)));
	}
	free(to_new);
	/* Noted by the old sources' indexes: found again, and logged again, by the next scan. */
	while (w->n_shares > 0)
		share_remove(w, w->n_shares - 1);
	guard_shared_reset(ctx->guard);
	w->ctx = *ctx;
	free(w->fresh);
	w->fresh = fresh;
	w->max_open = (size_t)ctx->cfg->agent.max_open_files;
	w->limit_warned = 0;
	make_room(w, NULL, 0);
	w->need_scan = 1;
	/* watch_stop's mark: watch_run may run again. */
	atomic_store(&w->stop, 0);
	while (read(w->efd, &drain, sizeof(drain)) > 0)
		;
	return 0;
}

/* ---- self-check ----------------------------------------------------------------------------- */

/* Verifies that table h holds exactly `n` links, each in the bucket of the hash it records. */
static int htab_check(const struct htab *h, size_t n, const char *what, char *err, size_t errlen)
{
	size_t count = 0;

	for (size_t i = 0; i <= h->mask; i++)
		for (const struct hlink *l = h->b[i]; l != NULL; l = l->next) {
			if ((l->hash & h->mask) != i) {
				err_set(err, errlen, "%s: an entry in the wrong bucket", what);
				return -1;
			}
			count++;
		}
	if (count != h->n || count != n) {
		err_set(err, errlen, "%s: %zu entries in the table, %zu counted, %zu expected",
		        what, h->n, count, n);
		return -1;
	}
	return 0;
}

int watch_check(const struct watch *w, char *err, size_t errlen)
{
	size_t named = 0, fwds = 0, cookies = 0, open = 0, listed = 0;

	if (w == NULL) {
		err_set(err, errlen, "watch_check: invalid arguments");
		return -1;
	}
	for (size_t i = 0; i < w->n_dirs; i++) {
		const struct wdir *d = w->dirs[i];

		if (d->slot != i || dir_by_wd(w, d->wd) != d || dir_by_id(w, d->dev, d->ino) != d ||
		    d->by_wd.hash != hash_int((uint64_t)d->wd) ||
		    d->by_id.hash != hash_file((uint64_t)d->dev, (uint64_t)d->ino)) {
			err_set(err, errlen, "directory %s: not found by its keys", d->path);
			return -1;
		}
	}
	for (size_t i = 0; i < w->n_tails; i++) {
		const struct wtail *wt = w->tails[i];
		const char *p = tail_path(wt->t);
		size_t si = tail_source_index(wt->t);

		if (wt->slot != i) {
			err_set(err, errlen, "%s: in slot %zu, says %zu", p, i, wt->slot);
			return -1;
		}
		if (tail_find(w, si, tail_dev(wt->t), tail_ino(wt->t)) != wt ||
		    wt->by_id.hash != hash_id(si, tail_dev(wt->t), tail_ino(wt->t))) {
			err_set(err, errlen, "%s: not found by (source, dev, ino)", p);
			return -1;
		}
		if (wt->base != NULL) {
			named++;
			if (!htab_has(&w->tail_name, &wt->by_name) ||
			    wt->by_name.hash != hash_name(wt->dir_dev, wt->dir_ino, wt->base)) {
				err_set(err, errlen, "%s: not found by its name %s", p, wt->base);
				return -1;
			}
		}
		if (wt->fwd >= 0) {
			fwds++;
			if (!htab_has(&w->tail_fwd, &wt->by_fwd) ||
			    wt->by_fwd.hash != hash_int((uint64_t)wt->fwd)) {
				err_set(err, errlen, "%s: not found by its watch %d", p, wt->fwd);
				return -1;
			}
		}
		if (wt->cookie != 0) {
			cookies++;
			if (!htab_has(&w->tail_cookie, &wt->by_cookie) ||
			    wt->by_cookie.hash != hash_int(wt->cookie)) {
				err_set(err, errlen, "%s: not found by its cookie", p);
				return -1;
			}
		}
		if (tail_is_open(wt->t) != dl_linked(&wt->lru)) {
			err_set(err, errlen, "%s: %s, but %s the list of open files", p,
			        tail_is_open(wt->t) ? "open" : "closed",
			        dl_linked(&wt->lru) ? "in" : "not in");
			return -1;
		}
		open += tail_is_open(wt->t) != 0;
	}
	if (htab_check(&w->dir_wd, w->n_dirs, "directories by watch", err, errlen) < 0 ||
	    htab_check(&w->dir_id, w->n_dirs, "directories by inode", err, errlen) < 0 ||
	    htab_check(&w->tail_id, w->n_tails, "tails by inode", err, errlen) < 0 ||
	    htab_check(&w->tail_name, named, "tails by name", err, errlen) < 0 ||
	    htab_check(&w->tail_fwd, fwds, "tails by file watch", err, errlen) < 0 ||
	    htab_check(&w->tail_cookie, cookies, "tails by cookie", err, errlen) < 0)
		return -1;
	for (const struct dlink *l = w->lru.next; l != &w->lru; l = l->next) {
		const struct wtail *wt = CONTAINER_CONST(l, struct wtail, lru);

		if (wt->slot >= w->n_tails || w->tails[wt->slot] != wt || l->next->prev != l) {
			err_set(err, errlen, "the list of open files holds a stray entry");
			return -1;
		}
		listed++;
	}
	if (open != w->n_open || listed != open) {
		err_set(err, errlen, "%zu tails open, %zu counted, %zu listed", open, w->n_open,
		        listed);
		return -1;
	}
	for (const struct dlink *l = w->dirty.next; l != &w->dirty; l = l->next) {
		const struct wtail *wt = CONTAINER_CONST(l, struct wtail, dirty);

		if (wt->slot >= w->n_tails || w->tails[wt->slot] != wt || l->next->prev != l) {
			err_set(err, errlen, "the list of changed files holds a stray entry");
			return -1;
		}
	}
	return 0;
}
