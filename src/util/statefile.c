#include "util/statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

struct statefile {
	int fd;
	off_t off; /* of the region */
};

static int state_path(const char *state_dir, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s/%s", state_dir, STATEFILE_NAME);

	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

struct statefile *statefile_open(const char *state_dir, enum statefile_region region, char *err,
                                 size_t errlen)
{
	char path[4096];
	struct statefile *sf;

	if (state_dir == NULL || region < 0 || region >= STATEFILE_REGIONS ||
	    state_path(state_dir, path, sizeof(path)) != 0) {
		err_set(err, errlen, "statefile_open: invalid arguments");
		return NULL;
	}
	sf = calloc(1, sizeof(*sf));
	if (sf == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	sf->off = (off_t)region * STATEFILE_REGION_BYTES;
	sf->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (sf->fd < 0) {
		err_set(err, errlen, "cannot open %s: %s", path, strerror(errno));
		free(sf);
		return NULL;
	}
	return sf;
}

int statefile_write(struct statefile *sf, const char *text)
{
	char buf[STATEFILE_REGION_BYTES];
	size_t n;

	if (sf == NULL)
		return 0;
	n = (size_t)snprintf(buf, sizeof(buf), "written %lld\n%s", (long long)time(NULL), text);
	if (n > sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	/* Blanks to the fixed size, so a shorter state leaves nothing of a longer one. */
	memset(buf + n, ' ', sizeof(buf) - n - 1);
	buf[sizeof(buf) - 1] = '\n';
	if (pwrite(sf->fd, buf, sizeof(buf), sf->off) != (ssize_t)sizeof(buf)) {
		if (errno == 0)
			errno = EIO;
		return -1;
	}
	return 0;
}

int64_t statefile_beat_ms(int64_t stale_after_ms)
{
	int64_t beat = stale_after_ms / 4;

	return beat > 15000 ? 15000 : beat > 0 ? beat : 1;
}

void statefile_free(struct statefile *sf)
{
	if (sf == NULL)
		return;
	close(sf->fd);
	free(sf);
}

int statefile_read(const char *state_dir, enum statefile_region region, char *buf, size_t buflen,
                   char *err, size_t errlen)
{
	char path[4096];
	ssize_t n;
	int fd;

	if (state_dir == NULL || buf == NULL || buflen < STATEFILE_REGION_BYTES + 1 || region < 0 ||
	    region >= STATEFILE_REGIONS || state_path(state_dir, path, sizeof(path)) != 0) {
		err_set(err, errlen, "statefile_read: invalid arguments");
		return -1;
	}
	buf[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	n = pread(fd, buf, STATEFILE_REGION_BYTES, (off_t)region * STATEFILE_REGION_BYTES);
	close(fd);
	if (n < 0) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	/* A region never written reads as nothing, or as the zeros of a hole. */
	return n > 0 && buf[0] != '\0' ? 1 : 0;
}

void statefile_parse(char *text, void (*cb)(const char *key, const char *value, void *ud), void *ud)
{
	char *line, *save = NULL;

	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(line, ' ');
		size_t len;

		if (line[0] == '#' || v == NULL)
			continue;
		*v++ = '\0';
		len = strlen(v);
		while (len > 0 && v[len - 1] == ' ')
			v[--len] = '\0';
		cb(line, v, ud);
	}
}

int statefile_pid_alive(long pid)
{
	char path[64], comm[64] = "";
	FILE *f;

	if (pid <= 0 || pid > 0x7fffffffL)
		return 0;
	if (kill((pid_t)pid, 0) != 0 && errno != EPERM)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 1;
	if (fgets(comm, sizeof(comm), f) == NULL)
		comm[0] = '\0';
	fclose(f);
	return strstr(comm, "logmeter") != NULL;
}
