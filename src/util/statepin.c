/* statepin: the state directory's claim and pin (util/statepin.h). */
#include "util/statepin.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/log.h"
#include "util/path.h"

/* The claim's name: a NUL, then this prefix and 64 hex digits (sun_path holds 108 bytes, too few
 * for a path itself). */
#define CLAIM_PREFIX "logmeter-state-dir/"

struct statepin {
	char *dir, *lock;
	dev_t dir_dev, lock_dev;
	ino_t dir_ino, lock_ino;
};

/* The real path `state_dir` had, now that it is gone (a wiped directory, still claimed by the
 * agent that ran in it): its parent's real path and its own name, into `out` (PATH_MAX bytes).
 * The same as realpath(3) gave while it existed, since state_dir is never a symbolic link
 * (harden_check_state_dir). Returns 0, or -1 with errno set. */
static int dir_gone_path(const char *state_dir, char *out, size_t outlen)
{
	char parent[PATH_MAX], *dir;
	const char *base;
	int rc = -1;

	if (errno != ENOENT)
		return -1;
	dir = path_dir(state_dir);
	base = path_base(state_dir);
	if (dir != NULL && base[0] != '\0' && realpath(dir, parent) != NULL &&
	    (size_t)snprintf(out, outlen, "%s/%s", strcmp(parent, "/") == 0 ? "" : parent, base) <
	        outlen)
		rc = 0;
	free(dir);
	if (rc < 0)
		errno = ENOENT;
	return rc;
}

/* The claim's socket address for `state_dir` into *sa and *len. Returns 0, or -1 (`err`). */
static int claim_address(const char *state_dir, struct sockaddr_un *sa, socklen_t *len, char *err,
                         size_t errlen)
{
	char real[PATH_MAX], *name;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t n;

	if (realpath(state_dir, real) == NULL && dir_gone_path(state_dir, real, sizeof(real)) < 0) {
		err_set(err, errlen, "state_dir %s: %s", state_dir, strerror(errno));
		return -1;
	}
	if (EVP_Digest(real, strlen(real), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 32) {
		err_set(err, errlen, "state_dir %s: cannot hash its path", state_dir);
		return -1;
	}
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	name = sa->sun_path + 1; /* sun_path[0] = '\0': the abstract namespace */
	n = (size_t)snprintf(name, sizeof(sa->sun_path) - 1, "%s", CLAIM_PREFIX);
	for (unsigned int i = 0; i < 32; i++)
		n += (size_t)snprintf(name + n, sizeof(sa->sun_path) - 1 - n, "%02x", md[i]);
	/* An abstract name is exactly the bytes given, no terminating NUL. */
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	return 0;
}

/* A socket bound to the claim of `state_dir`, or -1 with errno EADDRINUSE if it is held. */
static int claim_bind(const char *state_dir, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd;

	if (claim_address(state_dir, &sa, &len, err, errlen) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err_set(err, errlen, "state_dir %s: cannot claim it: socket: %s", state_dir,
		        strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sa, len) != 0) {
		int e = errno;

		err_set(err, errlen, "state_dir %s: cannot claim it: %s", state_dir, strerror(e));
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int statepin_claim(const char *state_dir, int *held, char *err, size_t errlen)
{
	int fd;

	*held = 0;
	fd = claim_bind(state_dir, err, errlen);
	if (fd < 0 && errno == EADDRINUSE) {
		*held = 1;
		err_set(err, errlen, "state_dir %s is claimed by another running logmeter",
		        state_dir);
	}
	return fd;
}

int statepin_claimed(const char *state_dir)
{
	struct sockaddr_un sa;
	socklen_t len;
	char err[512], want[sizeof(sa.sun_path) + 1], line[4096];
	size_t n;
	FILE *f;
	int found = 0;

	/* Read, not tried with bind(2): a probe must never make an agent that starts meanwhile
	 * find the name taken. unix(7): /proc/net/unix shows an abstract name with a leading '@'.
	 */
	if (claim_address(state_dir, &sa, &len, err, sizeof(err)) < 0)
		return -1;
	n = (size_t)len - offsetof(struct sockaddr_un, sun_path) - 1;
	want[0] = '@';
	memcpy(want + 1, sa.sun_path + 1, n);
	want[n + 1] = '\0';
	f = fopen("/proc/net/unix", "re");
	if (f == NULL)
		return -1;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		char *p = strrchr(line, ' ');

		line[strcspn(line, "\n")] = '\0';
		found = p != NULL && strcmp(p + 1, want) == 0;
	}
	fclose(f);
	return found;
}

struct statepin *statepin_new(const char *state_dir, const char *lock_path, int lock_fd, char *err,
                              size_t errlen)
{
	struct statepin *p = calloc(1, sizeof(*p));
	struct stat st;

	if (p == NULL || (p->dir = strdup(state_dir)) == NULL ||
	    (p->lock = strdup(lock_path)) == NULL) {
		err_set(err, errlen, "out of memory");
		goto fail;
	}
	if (stat(state_dir, &st) != 0) {
		err_set(err, errlen, "state_dir %s: %s", state_dir, strerror(errno));
		goto fail;
	}
	p->dir_dev = st.st_dev;
	p->dir_ino = st.st_ino;
	if (fstat(lock_fd, &st) != 0) {
		err_set(err, errlen, "%s: %s", lock_path, strerror(errno));
		goto fail;
	}
	p->lock_dev = st.st_dev;
	p->lock_ino = st.st_ino;
	return p;
fail:
	statepin_free(p);
	return NULL;
}

/* Whether `path` is still the file (dev, ino); else what it is now into `err`. */
static int same_file(const char *what, const char *path, dev_t dev, ino_t ino, char *err,
                     size_t errlen)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		err_set(err, errlen, "%s %s: %s: it was removed while logmeter ran", what, path,
		        strerror(errno));
		return -1;
	}
	if (st.st_dev != dev || st.st_ino != ino) {
		err_set(err, errlen,
		        "%s %s was removed and made again while logmeter ran (inode %llu, not the "
		        "%llu it opened)",
		        what, path, (unsigned long long)st.st_ino, (unsigned long long)ino);
		return -1;
	}
	return 0;
}

int statepin_check(const struct statepin *p, char *err, size_t errlen)
{
	if (p == NULL)
		return 0;
	if (same_file("state_dir", p->dir, p->dir_dev, p->dir_ino, err, errlen) < 0 ||
	    same_file("the lock file", p->lock, p->lock_dev, p->lock_ino, err, errlen) < 0)
		return -1;
	return 0;
}

void statepin_free(struct statepin *p)
{
	if (p == NULL)
		return;
	free(p->dir);
	free(p->lock);
	free(p);
}
