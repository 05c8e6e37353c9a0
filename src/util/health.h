/* health: the liveness of the agent's two worker threads, and what `logmeter run` tells systemd
 * through sd_notify(3): READY, RELOADING, STOPPING, STATUS and the watchdog pings.
 *
 * The watchdog (WatchdogSec= in the unit, sd_watchdog_enabled(3)) must prove more than "the main
 * thread still runs": the main thread only waits for signals. So each worker reports progress
 * (health_beat: once per loop turn and once per committed batch) and brackets the waits that
 * only an outside event ends (health_wait_begin/_end). The main thread pings WATCHDOG=1 only
 * while every running worker is waiting or has beaten within the last half of the watchdog
 * interval; a worker stuck anywhere else stops the pings and systemd kills and restarts the
 * service (Restart=on-failure). */
#ifndef LOGMETER_HEALTH_H
#define LOGMETER_HEALTH_H

#include <stdint.h>

enum health_worker {
	HEALTH_INGEST = 0, /* watch/tail/rule thread */
	HEALTH_SENDER,     /* sender thread */
	HEALTH_WORKERS
};

/* Worker side: lock-free (C11 atomics), callable from any thread, never blocks (unless the test
 * stall below is armed). health_beat records progress. */
void health_beat(enum health_worker w);

/* Around a wait (poll(2)) that may last as long as no log line arrives: a waiting worker is
 * healthy however long it waits. health_wait_end also counts as a beat. */
void health_wait_begin(enum health_worker w);
void health_wait_end(enum health_worker w);

/* For tests only, inert unless the environment variable LOGMETER_STALL_AT is "ingest:N" or
 * "sender:N" (N >= 1): the N-th health_beat of that worker never returns (the thread sleeps
 * forever, as a thread stuck in a deadlock would), so that a test can see the watchdog pings
 * stop. Read once per process. */
#define HEALTH_STALL_ENV "LOGMETER_STALL_AT"

/* Main thread side. */
struct health_watch {
	int64_t interval_ms; /* between checks: a quarter of the watchdog timeout; 0: no watchdog */
	int64_t stall_ms;    /* a busy worker without a beat for this long is stuck: half of it */
	uint64_t seen[HEALTH_WORKERS]; /* beat counters at the last check */
	int64_t ok_at[HEALTH_WORKERS]; /* monotonic ms of the last check that found progress */
	int withheld;                  /* the last check withheld the ping (logged once) */
	int64_t next_at;               /* monotonic ms of the next check */
};

/* Reads the watchdog timeout systemd set for this process (sd_watchdog_enabled(3): WATCHDOG_USEC,
 * WATCHDOG_PID) into `hw`; `now_ms` is the monotonic clock. Without a watchdog interval_ms is 0.
 * Returns interval_ms. */
int64_t health_watch_init(struct health_watch *hw, int64_t now_ms);

/* Forgets past progress (after the workers were started anew, as on a reload): every worker
 * counts as healthy at `now_ms`. */
void health_watch_reset(struct health_watch *hw, int64_t now_ms);

/* One check at `now_ms`; `running[w]` non-zero for each worker thread that runs now (a worker
 * that is not running cannot be stuck). Pings WATCHDOG=1 if every running worker is waiting or
 * beat within stall_ms; otherwise logs once which worker is stuck and for how long. Returns 1 if
 * it pinged, 0 if not (or if there is no watchdog). */
int health_watch_tick(struct health_watch *hw, const int running[HEALTH_WORKERS], int64_t now_ms);

/* sd_notify(3) of `state` (for example "READY=1\nSTATUS=..."), with printf formatting. A no-op
 * when $NOTIFY_SOCKET is not set (not started by systemd as Type=notify). Errors are logged at
 * debug level only: a lost notification must not stop the agent. */
void health_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
