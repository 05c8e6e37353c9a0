/* crash: named crash points for fault-injection tests. Compiled into every build and inert unless
 * the environment variable LOGMETER_CRASH_AT names a point: then the process kills itself with
 * SIGKILL the n-th time that point is reached, as abruptly as a power cut can be simulated from
 * inside the process (no atexit handlers, no stdio flushing, no SQLite rollback; the kernel
 * closes the file descriptors). tests/t_crash_loop.sh uses them to prove that no crash loses or
 * double-bills an event; docs/crash-testing.md lists the points and what each one proves.
 *
 * LOGMETER_STOP_AT names points the same way, where the process stops itself (SIGSTOP) instead:
 * a test changes a file at that exact moment, then sends SIGCONT. This turns a race with a writer
 * (a file overwritten between two reads of the agent) into a sequence a test can repeat. */
#ifndef LOGMETER_CRASH_H
#define LOGMETER_CRASH_H

#include <stddef.h>
#include <stdint.h>

#define CRASH_ENV "LOGMETER_CRASH_AT"
#define CRASH_STOP_ENV "LOGMETER_STOP_AT"
#define CRASH_NAME_MAX 64    /* bytes of a point's name, with the NUL */
#define CRASH_TARGETS_MAX 16 /* entries in LOGMETER_CRASH_AT */
#define CRASH_COUNT_MAX 1000000000LL

/* One entry of LOGMETER_CRASH_AT: crash the `n`-th time (1-based) the point `name` is reached. */
struct crash_target {
	char name[CRASH_NAME_MAX];
	int64_t n;
};

/* The known crash points, in pipeline order, NULL-terminated. Every crash_point() call site
 * names one of these (tests/t_crash_loop.sh checks the sources against `logmeter crash-points`). */
extern const char *const crash_point_names[];

/* Whether `name` is one of crash_point_names. */
int crash_known(const char *name);

/* Parses `spec`, a comma-separated list of `POINT[:N]` (POINT: 1 to CRASH_NAME_MAX - 1 of
 * a-z 0-9 _; N: a decimal 1..CRASH_COUNT_MAX, default 1), into at most `max` targets, setting *n.
 * An empty or all-blank spec gives 0 targets. Names are not checked against the known points
 * (crash_known does that). Returns 0, or -1 with the reason in `err` (*n is then 0). */
int crash_parse(const char *spec, struct crash_target *out, size_t max, size_t *n, char *err,
                size_t errlen);

/* Reads LOGMETER_CRASH_AT and LOGMETER_STOP_AT once per process (pthread_once; later calls do
 * nothing). A malformed value disarms every point of that variable and logs an error; an unknown
 * point name logs a warning listing the known ones. Called by `logmeter run` at start so those
 * messages come first; crash_point calls it too. */
void crash_init(void);

/* A crash point. Inert (one pthread_once check and one branch) unless LOGMETER_CRASH_AT or
 * LOGMETER_STOP_AT names `name`; then it counts the calls (atomically: any thread may reach any
 * point) and on the N-th writes "logmeter: error: crash point NAME reached (N): exiting abruptly"
 * to stderr with one write(2) and raises SIGKILL (exit status 137 in a shell), never returning;
 * or, for LOGMETER_STOP_AT, writes "logmeter: warning: stop point NAME reached (N): stopped until
 * SIGCONT" and raises SIGSTOP, returning once the process is continued. */
void crash_point(const char *name);

#endif
