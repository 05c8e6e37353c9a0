#include "util/path.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

char *path_dir(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return strdup("");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

const char *path_base(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

char *path_join(const char *dir, const char *rel)
{
	char *out;
	size_t n = strlen(dir);

	if (rel[0] == '/' || n == 0)
		return strdup(rel);
	if (asprintf(&out, "%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", rel) < 0)
		return NULL;
	return out;
}

int path_normalize(const char *path, char *out, size_t len)
{
	size_t n = 0;
	const char *p = path;

	if (len < 2)
		return -1;
	while (*p != '\0') {
		const char *end;
		size_t clen;

		while (*p == '/')
			p++;
		end = strchrnul(p, '/');
		clen = (size_t)(end - p);
		if (clen == 0 || (clen == 1 && p[0] == '.')) {
			p = end;
			continue;
		}
		if (clen == 2 && p[0] == '.' && p[1] == '.') {
			/* Lexically: the last component goes ("/.." is "/"). */
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--;
			p = end;
			continue;
		}
		if (n + 1 + clen + 1 > len)
			return -1;
		out[n++] = '/';
		memcpy(out + n, p, clen);
		n += clen;
		p = end;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = '\0';
	return 0;
}

int path_mkdirs(const char *dir, char *err, size_t errlen)
{
	char *p, *s = strdup(dir);
	struct stat stbuf;
	int ret = -1;

	if (s == NULL) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	for (p = s + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(s, 0750) < 0 && errno != EEXIST) {
			err_set(err, errlen, "cannot create the state directory %s: %s", s,
			        strerror(errno));
			goto out;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	if (stat(dir, &stbuf) < 0) {
		err_set(err, errlen, "state directory %s: %s", dir, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(stbuf.st_mode)) {
		err_set(err, errlen, "state directory %s is not a directory", dir);
		goto out;
	}
	ret = 0;
out:
	free(s);
	return ret;
}

char *path_find_ino(const char *dir, dev_t dev, ino_t ino)
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

/* Whether `path` is `dir` or below it. */
static int below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

void path_glob_nomatch(const char *source, const char *pattern, char *out, size_t outlen)
{
	static const char *const hidden[] = {"/home", "/root", "/run/user", "/tmp", "/var/tmp"};
	char dir[4096];
	const char *wild = strpbrk(pattern, "*?["), *cut;
	struct stat st;
	DIR *d;
	size_t n;
	int len, seen = 0;

	/* The directory that must exist for anything to match: up to the last '/' before the
	 * first wildcard (or before the base name, without one). */
	cut = wild != NULL ? wild : pattern + strlen(pattern);
	while (cut > pattern && cut[-1] != '/')
		cut--;
	n = cut > pattern + 1 ? (size_t)(cut - pattern - 1) : (cut > pattern ? 1 : 0);
	if (n == 0 || n >= sizeof(dir))
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)n, pattern);
	len = snprintf(out, outlen, "source %s: %s matches no file: ", source, pattern);
	if (len < 0 || (size_t)len >= outlen)
		return;
	out += len;
	outlen -= (size_t)len;
	if (stat(dir, &st) != 0 && (errno == ENOENT || errno == ENOTDIR))
		len = snprintf(out, outlen, "its directory %s does not exist", dir);
	else if (stat(dir, &st) != 0)
		len = snprintf(out, outlen, "its directory %s: %s", dir, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		len = snprintf(out, outlen, "%s is not a directory", dir);
	else if ((d = opendir(dir)) == NULL)
		len = snprintf(out, outlen, "its directory %s cannot be read by uid %lu: %s", dir,
		               (unsigned long)geteuid(), strerror(errno));
	else {
		closedir(d);
		len = snprintf(out, outlen, "its directory %s has no file it matches", dir);
		seen = 1;
	}
	if (len < 0 || (size_t)len >= outlen)
		return;
	out += len;
	outlen -= (size_t)len;
	/* The unit hides a directory (a private /tmp, an empty or refused /home), it does not empty
	 * one this process reads: a directory seen is merely empty. And only a process the service
	 * manager started sees what the unit hides (systemd sets INVOCATION_ID for it): `check` or
	 * `status` in an admin's shell see what the shell sees. */
	if (seen || getenv("INVOCATION_ID") == NULL)
		return;
	for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
		if (below(pattern, hidden[i])) {
			snprintf(out, outlen,
			         " (the systemd unit may hide %s from the service: ProtectHome=, "
			         "PrivateTmp=; docs/systemd.md says how to allow it)",
			         hidden[i]);
			break;
		}
}
