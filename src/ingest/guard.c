/* guard: symlinks and logmeter's own files refused as logs, lines that hit a PCRE2 limit counted
 * (guard.h, docs/security.md). */
#include "ingest/guard.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/path.h"
#include "util/statefile.h"

/* systemd.exec(5): the directory of the service's credentials (the key, LoadCredential=). */
#define GUARD_CREDENTIALS_ENV "CREDENTIALS_DIRECTORY"
/* Paths refused so far, remembered so that a link seen at every rescan counts once. */
#define GUARD_REMEMBER 4096
#define GUARD_WARN_EVERY_MS (60 * 1000)
/* Counts are written at most this often while lines keep hitting limits. */
#define GUARD_WRITE_EVERY_MS 1000
/* Rules counted by name; the names of rules past this many share one entry. */
#define GUARD_RULES_MAX 1024
#define GUARD_RULE_NAME_MAX 128
#define GUARD_CUT_LINE 32 /* bytes kept in the state region for "rules_cut N\n" */

enum refusal { REFUSED_LINK, REFUSED_PROTECTED, REFUSED_SHARED };

/* What the spool's directory holds besides the directory itself: refused even as a hard link. */
static const char *const spool_names[] = {"spool.db", "spool.db-wal", "spool.db-shm",
                                          STATEFILE_NAME, "agent.lock"};

/* A protected file as it was when the configuration was loaded. Its name may since lead to
 * another file (an editor or `mv` writes a new one), and its inode may then be freed and given to
 * a new file, such as a log: the birth time tells that file from this one. */
struct guard_file {
	dev_t dev;
	ino_t ino;
	int has_btime; /* the file system keeps birth times (statx(2) STATX_BTIME) */
	struct statx_timestamp btime;
	char *path;       /* as configured: what it names now is protected too */
	const char *what; /* static: "the API key file", ... */
};

struct guard_rule {
	char name[GUARD_RULE_NAME_MAX];
	int64_t hits[RULE_LIMITS];
	int64_t warned_at; /* monotonic ms of the last warning; 0: never */
};

struct guard {
	char *state_dir;
	char **dirs; /* real paths of the protected directories */
	size_t n_dirs;
	struct guard_file *files;
	size_t n_files;

	uint64_t *refused; /* hashes of the paths refused, GUARD_REMEMBER at most */
	size_t n_refused;
	uint64_t *shared; /* hashes of the paths left to another source, GUARD_REMEMBER at most */
	size_t n_shared;
	struct guard_counts counts;
	char tailing_path[GUARD_TAILINGS][GUARD_TAIL_PATH]; /* escaped (log_escape) */
	struct guard_rule *rules;
	size_t n_rules, cap_rules;

	struct statefile *sf; /* NULL until published */
	int dirty, write_warned;
	int64_t written_at; /* monotonic ms */
};

/* ---- what is protected ------------------------------------------------------------------- */

static void protect_free(char **dirs, size_t n_dirs, struct guard_file *files, size_t n_files)
{
	for (size_t i = 0; i < n_dirs; i++)
		free(dirs[i]);
	free(dirs);
	for (size_t i = 0; i < n_files; i++)
		free(files[i].path);
	free(files);
}

/* Adds directory `dir` by its real path (as written if it does not exist yet: the state
 * directory is made by `run`). */
static int protect_dir(char ***dirs, size_t *n, const char *dir)
{
	char real[PATH_MAX], **grown;
	char *copy;

	if (dir == NULL || dir[0] == '\0')
		return 0;
	if (realpath(dir, real) == NULL &&
	    (dir[0] != '/' || path_normalize(dir, real, sizeof(real))))
		return 0;
	copy = strdup(real);
	grown = copy != NULL ? realloc(*dirs, (*n + 1) * sizeof(**dirs)) : NULL;
	if (grown == NULL) {
		free(copy);
		return -1;
	}
	grown[(*n)++] = copy;
	*dirs = grown;
	return 0;
}

/* Adds file `path` by its device, inode and birth time, if it exists. */
static int protect_file(struct guard_file **files, size_t *n, const char *path, const char *what)
{
	struct guard_file *grown;
	struct statx stx;
	char *copy;

	if (path == NULL || statx(AT_FDCWD, path, 0, STATX_INO | STATX_BTIME, &stx) != 0 ||
	    !(stx.stx_mask & STATX_INO))
		return 0;
	copy = strdup(path);
	grown = copy != NULL ? realloc(*files, (*n + 1) * sizeof(**files)) : NULL;
	if (grown == NULL) {
		free(copy);
		return -1;
	}
	grown[*n] = (struct guard_file){makedev(stx.stx_dev_major, stx.stx_dev_minor),
	                                stx.stx_ino,
	                                (stx.stx_mask & STATX_BTIME) != 0,
	                                stx.stx_btime,
	                                copy,
	                                what};
	(*n)++;
	*files = grown;
	return 0;
}

/* The protected directories and files of `cfg` into `g` (replacing what it had). */
static int protect_set(struct guard *g, const struct config *cfg, char *err, size_t errlen)
{
	const char *creds = getenv(GUARD_CREDENTIALS_ENV);
	char **dirs = NULL, *main_dir = path_dir(cfg->main_file), *state_dir, cred[PATH_MAX];
	struct guard_file *files = NULL;
	size_t nd = 0, nf = 0;
	int rc = 0;

	state_dir = strdup(cfg->agent.state_dir);
	if (main_dir == NULL || state_dir == NULL)
		goto oom;
	rc |= protect_dir(&dirs, &nd, cfg->agent.state_dir);
	rc |= protect_dir(&dirs, &nd, main_dir[0] != '\0' ? main_dir : "."); /* -c NAME: the cwd */
	rc |= protect_dir(&dirs, &nd, cfg->agent.include_dir);
	rc |= protect_dir(&dirs, &nd, creds);
	rc |= protect_file(&files, &nf, cfg->stripe.api_key_file, "the API key file");
	if (creds != NULL &&
	    (size_t)snprintf(cred, sizeof(cred), "%s/stripe.key", creds) < sizeof(cred))
		rc |= protect_file(&files, &nf, cred, "the API key credential");
	for (size_t i = 0; i < cfg->n_files; i++)
		rc |= protect_file(&files, &nf, cfg->files[i], "a configuration file");
	for (size_t i = 0; i < cfg->n_rules; i++) {
		rc |= protect_file(&files, &nf, cfg->rules[i].customer_map, "a customer map");
		rc |= protect_file(&files, &nf, cfg->rules[i].pattern_file, "a pattern file");
	}
	if (rc != 0)
		goto oom;
	protect_free(g->dirs, g->n_dirs, g->files, g->n_files);
	free(g->state_dir);
	g->dirs = dirs;
	g->n_dirs = nd;
	g->files = files;
	g->n_files = nf;
	g->state_dir = state_dir;
	free(main_dir);
	return 0;
oom:
	err_set(err, errlen, "guard: out of memory");
	protect_free(dirs, nd, files, nf);
	free(main_dir);
	free(state_dir);
	return -1;
}

struct guard *guard_new(const struct config *cfg, char *err, size_t errlen)
{
	struct guard *g = calloc(1, sizeof(*g));

	if (g == NULL) {
		err_set(err, errlen, "guard: out of memory");
		return NULL;
	}
	if (protect_set(g, cfg, err, errlen) != 0) {
		free(g);
		return NULL;
	}
	return g;
}

int guard_reconfigure(struct guard *g, const struct config *cfg, char *err, size_t errlen)
{
	return protect_set(g, cfg, err, errlen);
}

/* ---- the state file ------------------------------------------------------------------------ */

static void guard_write(struct guard *g)
{
	char buf[STATEFILE_REGION_BYTES];
	size_t n, cut = 0;

	g->written_at = clock_mono_ms();
	g->dirty = 0;
	if (g->sf == NULL)
		return;
	n = (size_t)snprintf(buf, sizeof(buf),
	                     "# logmeter guard counts: written in place by the agent, read by "
	                     "`logmeter status`\nrefused_links %" PRId64
	                     "\nrefused_protected %" PRId64 "\nlimit_lines %" PRId64
	                     "\nlimit_last %" PRId64 "\ngone_unread %" PRId64 "\ngone_last %" PRId64
	                     "\nshared_files %" PRId64 "\n",
	                     g->counts.refused_links, g->counts.refused_protected,
	                     g->counts.limit_lines, g->counts.limit_last, g->counts.gone_unread,
	                     g->counts.gone_last, g->counts.shared_files);
	/* "NAME N", "NAME_last T" per tailing warning that happened; their paths come last. */
	for (int w = 0; w < GUARD_TAILINGS && n < sizeof(buf); w++)
		if (g->counts.tailing[w] > 0)
			n += (size_t)snprintf(
			    buf + n, sizeof(buf) - n, "%s %" PRId64 "\n%s_last %" PRId64 "\n",
			    guard_tailing_name((enum guard_tailing)w), g->counts.tailing[w],
			    guard_tailing_name((enum guard_tailing)w), g->counts.tailing_last[w]);
	/* One line per rule, as many as the region holds with room for "rules_cut N": "rule NAME
	 * LIMIT N ...". The counts before a path: a path is the last one named, a count is lost
	 * lines. */
	for (size_t i = 0; i < g->n_rules; i++) {
		const struct guard_rule *r = &g->rules[i];
		char line[512];
		size_t len = (size_t)snprintf(line, sizeof(line), "rule %s", r->name);

		for (int l = RULE_LIMIT_NONE + 1; l < RULE_LIMITS; l++)
			if (r->hits[l] > 0 && len < sizeof(line))
				len += (size_t)snprintf(
				    line + len, sizeof(line) - len, " %s %" PRId64,
				    rule_limit_name((enum rule_limit)l), r->hits[l]);
		if (n >= sizeof(buf) || n + len + 2 + GUARD_CUT_LINE >= sizeof(buf)) {
			cut++;
			continue;
		}
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\n", line);
	}
	/* Said, so that `status` does not show fewer rules as all of them. */
	if (cut > 0 && n < sizeof(buf))
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "rules_cut %zu\n", cut);
	/* Each path whole or not at all: a cut one would name another file. */
	for (int w = 0; w < GUARD_TAILINGS && n < sizeof(buf); w++) {
		int len;

		if (g->counts.tailing[w] == 0)
			continue;
		len = snprintf(buf + n, sizeof(buf) - n, "%s_path %s\n",
		               guard_tailing_name((enum guard_tailing)w), g->tailing_path[w]);
		if (len > 0 && (size_t)len < sizeof(buf) - n)
			n += (size_t)len;
		else
			buf[n] = '\0';
	}
	if (statefile_write(g->sf, buf) != 0 && !g->write_warned) {
		log_warn("cannot write %s/%s: %s; `logmeter status` may show old refusal and limit "
		         "counts",
		         g->state_dir, STATEFILE_NAME, strerror(errno));
		g->write_warned = 1;
	}
}

void guard_publish(struct guard *g)
{
	char err[512] = "";

	if (g == NULL || g->sf != NULL)
		return;
	g->sf = statefile_open(g->state_dir, STATEFILE_GUARD, err, sizeof(err));
	if (g->sf == NULL)
		log_warn("%s: `logmeter status` will not show refusal and limit counts", err);
	guard_write(g);
}

void guard_flush(struct guard *g)
{
	if (g != NULL && g->dirty)
		guard_write(g);
}

void guard_gone_unread(struct guard *g)
{
	if (g == NULL)
		return;
	g->counts.gone_unread++;
	g->counts.gone_last = (int64_t)time(NULL);
	g->dirty = 1;
}

const char *guard_tailing_name(enum guard_tailing what)
{
	static const char *const names[GUARD_TAILINGS] = {
	    "empty_copies", "rotated_stopped", "sparse_holes", "not_rotations", "taken_over"};

	return (int)what >= 0 && what < GUARD_TAILINGS ? names[what] : "?";
}

void guard_tailing(struct guard *g, enum guard_tailing what, const char *path)
{
	char full[GUARD_TAIL_PATH + 8];

	if (g == NULL || (int)what < 0 || what >= GUARD_TAILINGS)
		return;
	g->counts.tailing[what]++;
	g->counts.tailing_last[what] = (int64_t)time(NULL);
	/* One line of the state file whatever bytes the path holds; a path too long is marked cut,
	 * not shown as the path of another file. A buffer a few bytes longer tells (log_escape
	 * cuts at a whole escape, 4 bytes at most). */
	log_escape(full, sizeof(full), path != NULL ? path : "");
	if (strlen(full) < sizeof(g->tailing_path[what])) {
		memcpy(g->tailing_path[what], full, strlen(full) + 1);
	} else {
		log_escape(g->tailing_path[what],
		           sizeof(g->tailing_path[what]) - (sizeof(GUARD_TAIL_CUT) - 1), path);
		strcat(g->tailing_path[what], GUARD_TAIL_CUT);
	}
	g->dirty = 1;
}

void guard_free(struct guard *g)
{
	if (g == NULL)
		return;
	guard_flush(g);
	statefile_free(g->sf);
	protect_free(g->dirs, g->n_dirs, g->files, g->n_files);
	free(g->state_dir);
	free(g->refused);
	free(g->shared);
	free(g->rules);
	free(g);
}

struct guard_counts guard_counts(const struct guard *g)
{
	struct guard_counts none;

	if (g != NULL)
		return g->counts;
	memset(&none, 0, sizeof(none));
	return none;
}

/* ---- opening log files --------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Counts a refusal of `path` once (while fewer than GUARD_REMEMBER paths were refused). */
static void count_refusal(struct guard *g, enum refusal kind, const char *path)
{
	uint64_t h = fnv1a(fnv1a(14695981039346656037ULL, &kind, sizeof(kind)), path, strlen(path));
	uint64_t **set;
	size_t *n;

	if (g == NULL)
		return;
	/* Shared files apart: a reload counts them anew (guard_shared_reset). */
	set = kind == REFUSED_SHARED ? &g->shared : &g->refused;
	n = kind == REFUSED_SHARED ? &g->n_shared : &g->n_refused;

	for (size_t i = 0; i < *n; i++)
		if ((*set)[i] == h)
			return;
	if (*set == NULL)
		*set = calloc(GUARD_REMEMBER, sizeof(**set));
	if (*set != NULL && *n < GUARD_REMEMBER)
		(*set)[(*n)++] = h;
	if (kind == REFUSED_LINK)
		g->counts.refused_links++;
	else if (kind == REFUSED_SHARED)
		g->counts.shared_files++;
	else
		g->counts.refused_protected++;
	guard_write(g);
}

void guard_shared(struct guard *g, const char *path)
{
	count_refusal(g, REFUSED_SHARED, path);
}

void guard_shared_reset(struct guard *g)
{
	if (g == NULL)
		return;
	g->n_shared = 0;
	g->counts.shared_files = 0;
	guard_write(g);
}

static int refuse(struct guard *g, enum refusal kind, const char *path, int fd, int *refused,
                  char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* Closes `fd` (if open), counts, and fails with EPERM and the formatted reason. */
static int refuse(struct guard *g, enum refusal kind, const char *path, int fd, int *refused,
                  char *err, size_t errlen, const char *fmt, ...)
{
	char msg[PATH_MAX * 2 + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err_set(err, errlen, "%s", msg);
	if (fd >= 0)
		close(fd);
	count_refusal(g, kind, path);
	if (refused != NULL)
		*refused = 1;
	errno = EPERM;
	return -1;
}

/* The part of glob `pattern` that the configuration fixed: its directories up to the first one
 * with a wildcard (never its last component, the file). "" if the first has one. */
static size_t fixed_len(const char *pattern)
{
	size_t fixed = 0;

	for (const char *p = pattern; *p != '\0';) {
		const char *end = strchrnul(p + 1, '/');

		if (*end == '\0')
			break; /* the file name: matched, never fixed */
		for (const char *c = p; c < end; c++)
			if (strchr("*?[\\", *c) != NULL)
				return fixed;
		fixed = (size_t)(end - pattern);
		p = end;
	}
	return fixed;
}

/* Whether open file `real` (its real path) is what `path` names without a symlink in the part
 * of it that the source's glob matched: the fixed part resolved (the configuration's own links
 * are followed), the rest as written. Returns 1 if so, 0 if a link was on the way, -1 if the
 * fixed part cannot be resolved (errno). */
static int reached_directly(const struct config_source *src, const char *path, const char *real)
{
	size_t fixed = fixed_len(src->path);
	char dir[PATH_MAX], resolved[PATH_MAX], joined[PATH_MAX * 2], expect[PATH_MAX * 2];

	if (fixed == 0 || fixed >= sizeof(dir) || strncmp(path, src->path, fixed) != 0 ||
	    path[fixed] != '/') {
		/* Not under the fixed part (a file found by inode elsewhere): every link counts. */
		return path_normalize(path, expect, sizeof(expect)) == 0 &&
		       strcmp(expect, real) == 0;
	}
	memcpy(dir, path, fixed);
	dir[fixed] = '\0';
	if (realpath(dir, resolved) == NULL)
		return -1;
	snprintf(joined, sizeof(joined), "%s%s", resolved, path + fixed);
	return path_normalize(joined, expect, sizeof(expect)) == 0 && strcmp(expect, real) == 0;
}

/* The real path of open descriptor `fd` (readlink of /proc/self/fd/N; realpath of `path`
 * without /proc). Returns 0, or -1 with errno. */
static int fd_real_path(int fd, const char *path, char *out, size_t len)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, out, len - 1);
	if (n > 0 && (size_t)n < len - 1 && out[0] == '/') {
		out[n] = '\0';
		return 0;
	}
	return len >= PATH_MAX && realpath(path, out) != NULL ? 0 : -1;
}

/* Whether the file open as `fd` was born after protected file `f`, which had the same inode: a
 * new file that was given the inode `f` freed, not `f` (statx(2): birth times are kept by ext4,
 * XFS, Btrfs and tmpfs; without them the inode alone decides). */
static int born_since(const struct guard_file *f, int fd)
{
	struct statx stx;

	if (!f->has_btime || statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &stx) != 0 ||
	    !(stx.stx_mask & STATX_BTIME))
		return 0;
	return stx.stx_btime.tv_sec != f->btime.tv_sec || stx.stx_btime.tv_nsec != f->btime.tv_nsec;
}

/* What protected file `st` (open as `fd`) is, or NULL: the configuration's files, the key, the
 * spool's; each as it was when the configuration was loaded, and what its name leads to now (a
 * key or map replaced by a new file since). */
static const char *protected_file(const struct guard *g, int fd, const struct stat *st)
{
	char p[PATH_MAX + 32];
	struct stat sp;

	for (size_t i = 0; i < g->n_files; i++) {
		const struct guard_file *f = &g->files[i];

		if (f->dev == st->st_dev && f->ino == st->st_ino && !born_since(f, fd))
			return f->what;
		if (stat(f->path, &sp) == 0 && sp.st_dev == st->st_dev && sp.st_ino == st->st_ino)
			return f->what;
	}
	for (size_t i = 0; i < sizeof(spool_names) / sizeof(spool_names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", g->state_dir, spool_names[i]);
		if (stat(p, &sp) == 0 && sp.st_dev == st->st_dev && sp.st_ino == st->st_ino)
			return "a file of the spool";
	}
	return NULL;
}

/* The protected directory `real` is in, or NULL. */
static const char *protected_dir(const struct guard *g, const char *real)
{
	for (size_t i = 0; i < g->n_dirs; i++) {
		size_t n = strlen(g->dirs[i]);

		if (strncmp(real, g->dirs[i], n) == 0 &&
		    (real[n] == '/' || real[n] == '\0' || (n == 1 && g->dirs[i][0] == '/')))
			return g->dirs[i];
	}
	return NULL;
}

/* Whether `path` is the source's `path` itself, written without a wildcard, and a symbolic link
 * that root or the user running logmeter made: the administrator named that file, and links in
 * what the administrator wrote are followed (/var/log/app/current.log -> app-20250101.log). A
 * link another user made there is not the administrator's (as fs.protected_symlinks judges links
 * in sticky directories, proc(5)). */
static int literal_link(const struct config_source *src, const char *path, uid_t *owner)
{
	struct stat st;

	if (strpbrk(src->path, "*?[\\") != NULL || strcmp(src->path, path) != 0 ||
	    lstat(path, &st) != 0 || !S_ISLNK(st.st_mode))
		return 0;
	*owner = st.st_uid;
	return st.st_uid == 0 || st.st_uid == geteuid() ? 1 : -1;
}

/* The name of user `uid` into `buf` (`len` bytes): "name (uid N)", or "uid N" without one. */
static const char *user_text(uid_t uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL && pw->pw_name != NULL)
		snprintf(buf, len, "%s (uid %lu)", pw->pw_name, (unsigned long)uid);
	else
		snprintf(buf, len, "uid %lu", (unsigned long)uid);
	return buf;
}

int guard_open(struct guard *g, const struct config_source *src, const char *path, int *refused,
               char *err, size_t errlen)
{
	uid_t owner = 0;
	int literal = literal_link(src, path, &owner);
	int follow = src->follow_symlinks || literal > 0, fd, direct, e;
	char real[PATH_MAX];
	const char *what;
	struct stat st;

	if (refused != NULL)
		*refused = 0;
	if (!follow && literal < 0) {
		char who[96], me[96], to[PATH_MAX];
		ssize_t n = readlink(path, to, sizeof(to) - 1);

		to[n > 0 ? n : 0] = '\0';
		/* Named in the configuration, but another user made the link and could point it
		 * at anything (docs/security.md): say who owns it and who may, and the fix that
		 * keeps the check (not follow_symlinks, which would follow any link). */
		return refuse(
		    g, REFUSED_LINK, path, -1, refused, err, errlen,
		    "%s: a symbolic link (to %s) owned by %s: [source %s] path names it "
		    "without wildcards, and such a link is followed only when root or the "
		    "user running logmeter, %s, owns it: refused; if it points where it "
		    "should, chown -h root it, or set path to its target",
		    path, to[0] != '\0' ? to : "?", user_text(owner, who, sizeof(who)), src->name,
		    user_text(geteuid(), me, sizeof(me)));
	}
	/* Links and what is not a regular file are not even opened (opening a device can do
	 * something). The checks on the descriptor below are what counts: these only keep such
	 * names unopened while nobody swaps them. */
	if (!follow && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		return refuse(
		    g, REFUSED_LINK, path, -1, refused, err, errlen,
		    "%s: a symbolic link, not followed ([source %s] follow_symlinks = no): "
		    "refused",
		    path, src->name);
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		err_set(err, errlen, "%s: not a regular file", path);
		errno = EINVAL;
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
	if (fd < 0) {
		e = errno;
		if (e == ELOOP && !follow)
			return refuse(g, REFUSED_LINK, path, -1, refused, err, errlen,
			              "%s: a symbolic link, not followed ([source %s] "
			              "follow_symlinks = no): refused",
			              path, src->name);
		err_set(err, errlen, "%s: cannot open: %s", path, strerror(e));
		errno = e;
		return -1;
	}
	if (fstat(fd, &st) != 0 || fd_real_path(fd, path, real, sizeof(real)) != 0 ||
	    (direct = reached_directly(src, path, real)) < 0) {
		e = errno;
		err_set(err, errlen, "%s: %s", path, strerror(e));
		close(fd);
		errno = e;
		return -1;
	}
	if (!direct && !follow)
		return refuse(
		    g, REFUSED_LINK, path, fd, refused, err, errlen,
		    "%s: reached through a symbolic link (it is %s), not followed ([source "
		    "%s] follow_symlinks = no): refused",
		    path, real, src->name);
	if (g == NULL)
		return fd;
	what = protected_file(g, fd, &st);
	if (what != NULL)
		return refuse(g, REFUSED_PROTECTED, path, fd, refused, err, errlen,
		              "%s: it is %s (%s), which logmeter never reads as a log: refused",
		              path, what, real);
	if (!direct && (what = protected_dir(g, real)) != NULL)
		return refuse(g, REFUSED_PROTECTED, path, fd, refused, err, errlen,
		              "%s: a symbolic link into %s (to %s), a directory of logmeter's own: "
		              "refused",
		              path, what, real);
	return fd;
}

/* ---- PCRE2 limits -------------------------------------------------------------------------- */

static struct guard_rule *rule_entry(struct guard *g, const char *name)
{
	struct guard_rule *r;

	for (size_t i = 0; i < g->n_rules; i++)
		if (strcmp(g->rules[i].name, name) == 0)
			return &g->rules[i];
	if (g->n_rules == GUARD_RULES_MAX)
		return &g->rules[g->n_rules - 1]; /* shared by the rules past the limit */
	if (g->n_rules == g->cap_rules) {
		size_t cap = g->cap_rules ? g->cap_rules * 2 : 8;

		r = realloc(g->rules, cap * sizeof(*r));
		if (r == NULL)
			return NULL;
		g->rules = r;
		g->cap_rules = cap;
	}
	r = &g->rules[g->n_rules++];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	return r;
}

void guard_limit_hit(struct guard *g, const struct config_rule *rule, enum rule_limit limit,
                     const char *path, int64_t offset)
{
	struct guard_rule *r;
	char value[32] = "";
	int64_t now;

	if (g == NULL || rule == NULL || limit <= RULE_LIMIT_NONE || limit >= RULE_LIMITS)
		return;
	g->counts.limit_lines++;
	/* For `status --since` (report/facts.c): whether lines were lost since a time. */
	g->counts.limit_last = (int64_t)time(NULL);
	g->dirty = 1;
	r = rule_entry(g, rule->name);
	if (r == NULL)
		return;
	r->hits[limit]++;
	now = clock_mono_ms();
	if (r->warned_at == 0 || now - r->warned_at >= GUARD_WARN_EVERY_MS) {
		r->warned_at = now > 0 ? now : 1;
		if (limit == RULE_LIMIT_MATCH)
			snprintf(value, sizeof(value), " %" PRId64, rule->match_limit);
		else if (limit == RULE_LIMIT_DEPTH)
			snprintf(value, sizeof(value), " %" PRId64, rule->depth_limit);
		else if (limit == RULE_LIMIT_HEAP)
			snprintf(value, sizeof(value), " %" PRId64, rule->heap_limit);
		log_warn("%s: line at offset %" PRId64 ": rule '%s' gave up on it: it hit PCRE2's "
		         "%s%s (a pattern that backtracks without bound, or a line made to make it "
		         "do so): no event; counted in `logmeter status` (limits) and as invalid; "
		         "logged at most once a minute per rule",
		         path, offset, rule->name, rule_limit_name(limit), value);
	}
	if (now - g->written_at >= GUARD_WRITE_EVERY_MS)
		guard_write(g);
}

/* ---- status ---------------------------------------------------------------------------------- */

/* A tailing warning's line of the state file ("NAME N", "NAME_last T", "NAME_path PATH") into
 * *s. Returns 1 if it was one. */
static int tailing_line(struct guard_status *s, const char *key, const char *v)
{
	for (int w = 0; w < GUARD_TAILINGS; w++) {
		const char *name = guard_tailing_name((enum guard_tailing)w);
		size_t len = strlen(name);

		if (strncmp(key, name, len) != 0)
			continue;
		if (key[len] == '\0')
			s->counts.tailing[w] = strtoll(v, NULL, 10);
		else if (strcmp(key + len, "_last") == 0)
			s->counts.tailing_last[w] = strtoll(v, NULL, 10);
		else if (strcmp(key + len, "_path") == 0)
			snprintf(s->tailing_path[w], sizeof(s->tailing_path[w]), "%s", v);
		else
			continue;
		return 1;
	}
	return 0;
}

static void status_line(const char *key, const char *v, void *ud)
{
	struct guard_status *s = ud;
	struct guard_rule_hits *r;
	char name[128], limit[32];
	long long n;
	int used = 0;

	if (strcmp(key, "refused_links") == 0) {
		s->counts.refused_links = strtoll(v, NULL, 10);
	} else if (strcmp(key, "refused_protected") == 0) {
		s->counts.refused_protected = strtoll(v, NULL, 10);
	} else if (strcmp(key, "limit_lines") == 0) {
		s->counts.limit_lines = strtoll(v, NULL, 10);
	} else if (strcmp(key, "limit_last") == 0) {
		s->counts.limit_last = strtoll(v, NULL, 10);
	} else if (strcmp(key, "gone_unread") == 0) {
		s->counts.gone_unread = strtoll(v, NULL, 10);
	} else if (strcmp(key, "gone_last") == 0) {
		s->counts.gone_last = strtoll(v, NULL, 10);
	} else if (strcmp(key, "shared_files") == 0) {
		s->counts.shared_files = strtoll(v, NULL, 10);
	} else if (strcmp(key, "rules_cut") == 0) {
		s->rules_cut += strtoll(v, NULL, 10);
	} else if (tailing_line(s, key, v)) {
		/* done */
	} else if (strcmp(key, "rule") == 0 && s->n_rules == GUARD_STATUS_RULES) {
		s->rules_cut++;
	} else if (strcmp(key, "rule") == 0 && sscanf(v, "%127s%n", name, &used) == 1) {
		/* "NAME LIMIT N LIMIT N ..." */
		r = &s->rules[s->n_rules++];
		memset(r, 0, sizeof(*r));
		snprintf(r->rule, sizeof(r->rule), "%s", name);
		for (v += used; sscanf(v, " %31s %lld%n", limit, &n, &used) == 2; v += used)
			for (int l = RULE_LIMIT_NONE + 1; l < RULE_LIMITS; l++)
				if (strcmp(limit, rule_limit_name((enum rule_limit)l)) == 0)
					r->hits[l] = n;
	}
}

int guard_status_read(const char *state_dir, struct guard_status *out, char *err, size_t errlen)
{
	char buf[STATEFILE_REGION_BYTES + 1];
	int rc;

	memset(out, 0, sizeof(*out));
	rc = statefile_read(state_dir, STATEFILE_GUARD, buf, sizeof(buf), err, errlen);
	if (rc <= 0)
		return rc;
	statefile_parse(buf, status_line, out);
	out->found = 1;
	return 0;
}
