/* statepin: the running agent holds its state directory, whatever happens to the directory's
 * files. The flock(2) on agent.lock excludes a second agent only while that file is the one the
 * first agent locked: once the directory is wiped (a tmp cleaner, configuration management, an
 * operator "resetting" it) a second agent would lock a new file and bill every line again beside
 * the first. So the agent also claims the directory by its real path in the abstract Unix socket
 * namespace (unix(7): a name bound to no file, released by the kernel when the process ends),
 * and it pins the directory and its lock file by device and inode, to notice when they are no
 * longer the ones it opened and stop (docs/durability.md, "The state directory removed"). */
#ifndef LOGMETER_STATEPIN_H
#define LOGMETER_STATEPIN_H

#include <stddef.h>

/* Claims `state_dir` (an existing directory; its realpath(3) names the claim, so that every path
 * to it names the same claim) for the caller's lifetime: binds an abstract AF_UNIX socket named
 * after the SHA-256 of that path. Abstract names live in the network namespace: a process in
 * another one (a container, PrivateNetwork=) does not see the claim, and relies on agent.lock
 * alone. Returns the socket's descriptor (keep it open to hold the claim), or -1 with the reason
 * in `err` (`errlen` bytes) and *held 1 if another process holds the claim, else 0. */
int statepin_claim(const char *state_dir, int *held, char *err, size_t errlen);

/* Whether a process holds the claim of `state_dir` (a running agent, or a command that locks the
 * directory), as /proc/net/unix lists it: 1 yes, 0 no, -1 unknown (the directory's path cannot
 * be resolved, or /proc/net/unix cannot be read). Takes nothing, so it never keeps an agent out. */
int statepin_claimed(const char *state_dir);

struct statepin;

/* Pins `state_dir` and the lock file `lock_path` that `lock_fd` holds open: their st_dev and
 * st_ino now (the lock file's from fstat(2) of `lock_fd`). Returns the pin (statepin_free), or
 * NULL with the reason in `err`. */
struct statepin *statepin_new(const char *state_dir, const char *lock_path, int lock_fd, char *err,
                              size_t errlen);

/* Whether the directory and the lock file at their paths are still the ones pinned (stat(2)).
 * Returns 0, or -1 with what became of them in `err`. */
int statepin_check(const struct statepin *p, char *err, size_t errlen);

/* Frees the pin. NULL is a no-op. */
void statepin_free(struct statepin *p);

#endif
