/* harden: umask, dumpability and core limit of the process, and the state directory's checks
 * (harden.h, docs/security.md). */
#include "util/harden.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "util/path.h"

/* The soft core limit the process was started with: what allow_core_dumps gives back. */
static struct rlimit core_found;
static int core_saved;

int harden_process(char *err, size_t errlen)
{
	struct rlimit rl;

	umask(077);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		err_set(err, errlen, "prctl(PR_SET_DUMPABLE, 0): %s", strerror(errno));
		return -1;
	}
	if (getrlimit(RLIMIT_CORE, &rl) != 0) {
		err_set(err, errlen, "getrlimit(RLIMIT_CORE): %s", strerror(errno));
		return -1;
	}
	if (!core_saved) {
		core_found = rl;
		core_saved = 1;
	}
	rl.rlim_cur = 0;
	if (setrlimit(RLIMIT_CORE, &rl) != 0) {
		err_set(err, errlen, "setrlimit(RLIMIT_CORE, 0): %s", strerror(errno));
		return -1;
	}
	return 0;
}

int harden_core_dumps(int allow, char *err, size_t errlen)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_CORE, &rl) != 0) {
		err_set(err, errlen, "getrlimit(RLIMIT_CORE): %s", strerror(errno));
		return -1;
	}
	rl.rlim_cur = allow && core_saved ? core_found.rlim_cur : 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_CORE, &rl) != 0) {
		err_set(err, errlen, "setrlimit(RLIMIT_CORE): %s", strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_DUMPABLE, allow ? 1 : 0, 0, 0, 0) != 0) {
		err_set(err, errlen, "prctl(PR_SET_DUMPABLE, %d): %s", allow ? 1 : 0,
		        strerror(errno));
		return -1;
	}
	return 0;
}

/* The user name of `uid` for messages, or "?" */
static const char *user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) != 0 || res == NULL)
		snprintf(buf, len, "?");
	else
		snprintf(buf, len, "%s", res->pw_name);
	return buf;
}

/* The ownership and mode rules, for the directory (`what` "state_dir") or a file in it. */
static int owned_and_private(const char *path, const struct stat *st, const char *what, char *err,
                             size_t errlen)
{
	char owner[64], me[64];

	if (st->st_uid != geteuid()) {
		err_set(err, errlen,
		        "%s %s belongs to uid %u (%s), not to the user running logmeter (uid %u, "
		        "%s): another user could replace the spool; chown it to the user that runs "
		        "logmeter",
		        what, path, (unsigned)st->st_uid,
		        user_name(st->st_uid, owner, sizeof(owner)), (unsigned)geteuid(),
		        user_name(geteuid(), me, sizeof(me)));
		return -1;
	}
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		err_set(
		    err, errlen,
		    "%s %s is writable by %s (mode %04o): another user could replace the spool; "
		    "chmod go-w it (0700, or 0750)",
		    what, path, (st->st_mode & S_IWOTH) ? "others" : "its group",
		    (unsigned)(st->st_mode & 07777));
		return -1;
	}
	return 0;
}

/* The directories that hold `real` (a real path: no links, no dots), from / down, `real` itself
 * included if `self`: each must be owned by root or the user running logmeter, and writable by
 * no one else unless sticky. Whoever may write a directory may rename what is in it: a state
 * directory renamed away takes spool.id with it, and the next start makes a new spool that
 * reads every file again from its start (double billing). A sticky directory (/tmp) lets only
 * the owner of an entry rename it (inode(7), S_ISVTX). Returns 0, or -1 with the reason. */
static int ancestors_safe(const char *state_dir, const char *real, int self, char *err,
                          size_t errlen)
{
	char path[PATH_MAX], owner[64];
	size_t len = strlen(real);
	struct stat st;

	if (len >= sizeof(path)) {
		err_set(err, errlen, "state_dir %s: path too long", state_dir);
		return -1;
	}
	for (size_t end = 0; end <= len; end++) {
		if (end < len && real[end] != '/')
			continue;
		if (end == len && !self)
			break;
		memcpy(path, real, end);
		path[end] = '\0';
		if (end == 0)
			snprintf(path, sizeof(path), "/");
		if (lstat(path, &st) != 0) {
			err_set(err, errlen, "state_dir %s: %s: %s", state_dir, path,
			        strerror(errno));
			return -1;
		}
		if (st.st_uid != 0 && st.st_uid != geteuid()) {
			err_set(
			    err, errlen,
			    "state_dir %s is inside %s, which belongs to uid %u (%s), neither root "
			    "nor the user running logmeter: that user could rename the state "
			    "directory away and make logmeter start a new spool that bills every "
			    "log again; move state_dir to a directory of root's or logmeter's",
			    state_dir, path, (unsigned)st.st_uid,
			    user_name(st.st_uid, owner, sizeof(owner)));
			return -1;
		}
		if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
			err_set(
			    err, errlen,
			    "state_dir %s is inside %s, which is writable by %s without the sticky "
			    "bit (mode %04o): anyone who may write it could rename the state "
			    "directory away and make logmeter start a new spool that bills every "
			    "log again; chmod go-w (or +t) it, or move state_dir",
			    state_dir, path, (st.st_mode & S_IWOTH) ? "others" : "its group",
			    (unsigned)(st.st_mode & 07777));
			return -1;
		}
	}
	return 0;
}

/* ancestors_safe for a state directory that does not exist yet: its nearest existing ancestor,
 * where `run` will create it, and the directories above. */
static int missing_ancestors_safe(const char *state_dir, const char *plain, char *err,
                                  size_t errlen)
{
	char up[PATH_MAX], real[PATH_MAX];
	char *slash;
	struct stat st;

	snprintf(up, sizeof(up), "%s", plain);
	do {
		slash = strrchr(up, '/');
		if (slash == NULL)
			return 0;
		if (slash == up)
			slash[1] = '\0';
		else
			*slash = '\0';
	} while (lstat(up, &st) != 0 && strcmp(up, "/") != 0);
	if (realpath(up, real) == NULL)
		return 0; /* run's mkdir reports it */
	return ancestors_safe(state_dir, real, 1, err, errlen);
}

int harden_check_state_dir(const char *dir, int missing_ok, char *err, size_t errlen)
{
	static const char *const files[] = {"spool.db", "spool.db-wal", "spool.db-shm",
	                                    "agent.state", "agent.lock"};
	char plain[PATH_MAX], real[PATH_MAX], path[PATH_MAX * 2 + 32], cwd[PATH_MAX];
	struct stat st;

	if (dir == NULL || dir[0] == '\0') {
		err_set(err, errlen, "no state_dir");
		return -1;
	}
	/* A relative one (a configuration given as a relative path) is the working directory's. */
	if (dir[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		snprintf(path, sizeof(path), "%s", dir);
	else
		snprintf(path, sizeof(path), "%s/%s", cwd, dir);
	if (path_normalize(path, plain, sizeof(plain)) != 0) {
		err_set(err, errlen, "state_dir %s: path too long", dir);
		return -1;
	}
	if (lstat(plain, &st) != 0) {
		if (errno == ENOENT && missing_ok)
			return missing_ancestors_safe(dir, plain, err, errlen);
		err_set(err, errlen, "state_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (realpath(plain, real) == NULL) {
		err_set(err, errlen, "state_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (strcmp(real, plain) != 0) {
		char why[1024] = "";
		struct stat rst;

		/* The advice must work: the real path is held to the same checks first, so that
		 * following it does not only meet the next refusal. */
		if (stat(real, &rst) != 0)
			err_set(why, sizeof(why), "%s: %s", real, strerror(errno));
		else if (!S_ISDIR(rst.st_mode))
			err_set(why, sizeof(why), "%s is not a directory", real);
		else if (owned_and_private(real, &rst, "state_dir", why, sizeof(why)) == 0)
			(void)ancestors_safe(real, real, 0, why, sizeof(why));
		if (why[0] != '\0')
			err_set(err, errlen,
			        "state_dir %s is reached through a symbolic link (its real path is "
			        "%s): logmeter opens the spool without following links; set "
			        "state_dir = %s once it passes too, which it does not now: %s",
			        dir, real, real, why);
		else
			err_set(err, errlen,
			        "state_dir %s is reached through a symbolic link (its real path is "
			        "%s): logmeter opens the spool without following links; set "
			        "state_dir = %s (under the packaged systemd unit, also "
			        "ReadWritePaths=%s in a drop-in: docs/systemd.md)",
			        dir, real, real, real);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		err_set(err, errlen, "state_dir %s is not a directory", dir);
		return -1;
	}
	if (owned_and_private(dir, &st, "state_dir", err, errlen) != 0 ||
	    ancestors_safe(dir, real, 0, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", plain, files[i]);
		if (lstat(path, &st) != 0) {
			if (errno == ENOENT)
				continue;
			err_set(err, errlen, "%s: %s", path, strerror(errno));
			return -1;
		}
		if (!S_ISREG(st.st_mode)) {
			err_set(
			    err, errlen,
			    "%s is %s, not a regular file: logmeter neither follows nor replaces "
			    "it; remove it",
			    path, S_ISLNK(st.st_mode) ? "a symbolic link" : "something else");
			return -1;
		}
		if (owned_and_private(path, &st, "the file", err, errlen) != 0)
			return -1;
	}
	return 0;
}
