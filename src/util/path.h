/* path: the few path manipulations logmeter needs, one way each. Strings in and out; nothing is
 * looked up on the file system. */
#ifndef LOGMETER_PATH_H
#define LOGMETER_PATH_H

#include <stddef.h>
#include <sys/types.h>

/* The directory part of `path`: what comes before its last '/', "/" for "/name", and "" when
 * there is no '/'. Returns a malloc'd string (caller frees), or NULL if out of memory. */
char *path_dir(const char *path);

/* The part of `path` after its last '/' (a pointer into `path`). */
const char *path_base(const char *path);

/* `rel` resolved against `dir`: `rel` itself if it is absolute or `dir` is "", else `dir`, one
 * '/' and `rel`. Returns a malloc'd string (caller frees), or NULL if out of memory. */
char *path_join(const char *dir, const char *rel);

/* Absolute `path` as realpath(3) would write it if none of its components were a symbolic
 * link: without repeated '/' and "." components, a ".." taking the component before it away,
 * no trailing '/' ("/" for the root); into `out` (`len` bytes). Comparing it with realpath(3)
 * of the same path tells whether a link is on the way. Returns 0, or -1 if it does not fit. */
int path_normalize(const char *path, char *out, size_t len);

/* The regular file with device `dev` and inode `ino` among the entries of directory `dir` (not
 * below it): where a file renamed within its directory is now. Returns its path (malloc'd, caller
 * frees), or NULL if it is not there or `dir` cannot be read. */
char *path_find_ino(const char *dir, dev_t dev, ino_t ino);

/* mkdir -p `dir`: the missing components are created with mode 0750 (the umask applies). Fails
 * if `dir` exists and is not a directory. Returns 0 or -1 with the reason in `err`. */
int path_mkdirs(const char *dir, char *err, size_t errlen);

/* Why the glob `pattern` of source `source` matches no file, as one warning into `out` (`outlen`
 * bytes): "source S: PATTERN matches no file: its directory D does not exist" (or "cannot be read
 * by uid N: ...", or "has no file it matches"), D being the part of the pattern before its first
 * component with a wildcard. Under /home, /root, /run/user, /tmp and /var/tmp, when D cannot be
 * seen (missing or unreadable) by a process systemd started (INVOCATION_ID in the environment), it
 * adds that the systemd unit may hide those from the service (ProtectHome=, PrivateTmp=:
 * docs/systemd.md), where an admin's shell still sees the files. Shared by `check`, `run` and
 * `status`. */
void path_glob_nomatch(const char *source, const char *pattern, char *out, size_t outlen);

#endif
