/* harden: the process's own defences, the same for every command (docs/security.md). Whatever
 * logmeter creates is private to the user running it (umask 077); no core dump, ptrace or
 * /proc/PID/mem of another user shows the API key (PR_SET_DUMPABLE 0, RLIMIT_CORE 0) unless
 * [agent] allow_core_dumps asks for them; and the state directory, where the spool is, is one
 * that no other user can change. */
#ifndef LOGMETER_HARDEN_H
#define LOGMETER_HARDEN_H

#include <stddef.h>

/* Sets the umask to 077, makes the process not dumpable (prctl(2) PR_SET_DUMPABLE 0: no core
 * dump, and ptrace and /proc/PID/{mem,environ} only for CAP_SYS_PTRACE; proc(5)) and its soft
 * core size limit 0 (setrlimit(2) RLIMIT_CORE: no core file even where fs.suid_dumpable = 2
 * dumps undumpable processes; core(5) says a pipe handler ignores it, hence both). Keeps the
 * soft limit it found, for harden_core_dumps. Call it once, before reading a key and before any
 * thread starts. Returns 0, or -1 with the reason in `err` (`errlen` bytes). */
int harden_process(char *err, size_t errlen);

/* allow non-zero: dumpable again (PR_SET_DUMPABLE 1) with the soft core limit harden_process
 * found, for debugging ([agent] allow_core_dumps = yes); 0: as harden_process left it. Returns 0,
 * or -1 with the reason in `err`. */
int harden_core_dumps(int allow, char *err, size_t errlen);

/* Whether `dir` is fit to hold the spool: a directory reached without a symbolic link (SQLite
 * opens spool.db with SQLITE_OPEN_NOFOLLOW, which refuses a path through one), owned by the
 * effective user, writable by neither its group nor others; the files logmeter keeps in it
 * (spool.db, its -wal and -shm, agent.state, agent.lock) regular files of that user where they
 * exist. A directory that does not exist is fit if `missing_ok` (`run` creates it, mode 0700
 * under the umask above). Returns 0, or -1 with the reason and the fix in `err`. */
int harden_check_state_dir(const char *dir, int missing_ok, char *err, size_t errlen);

#endif
