/* clock: the two clocks logmeter uses (docs/architecture.md, "Time"): the monotonic clock for
 * every timer, backoff and wait, the wall clock only for what is a date. */
#ifndef LOGMETER_CLOCK_H
#define LOGMETER_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC: never jumps with the wall clock. */
int64_t clock_mono_ms(void);

/* Milliseconds of CLOCK_BOOTTIME: as CLOCK_MONOTONIC, never jumps with the wall clock, but goes
 * on while the system is suspended, as real time does (clock_gettime(2)). */
int64_t clock_boot_ms(void);

/* Seconds since the epoch (time(2)). */
int64_t clock_wall_s(void);

/* Writes `t` (seconds since the epoch) as "2026-12-06T21:55:34Z" (UTC) into `out` (`outlen`
 * bytes, 21 needed); "" if it does not fit or gmtime_r fails. */
void clock_utc_text(int64_t t, char *out, size_t outlen);

/* A wall clock that is never set back: what the last reading was, advanced by the monotonic
 * clock since then. Zero-initialise it; one per thread (no locking). */
struct clock_steady {
	int64_t wall_s;  /* the last value returned, seconds since the epoch */
	int64_t mono_ms; /* clock_mono_ms() when it was returned */
};

/* Seconds since the epoch: the larger of time(2) and the last value returned through `c` plus
 * the monotonic seconds elapsed since. For deadlines measured from a recorded date (the
 * unsure_after limit of docs/spool.md): a wall clock stepped back, by hand or by NTP, must not
 * stretch a 23-hour limit past Stripe's 24 hours. A step back while the process is not
 * running is not seen by this alone: the sender moves `wall_s` on to later times it learns
 * (Stripe's clock, the spool's latest time seen) and the monotonic clock carries them on. */
int64_t clock_steady_wall_s(struct clock_steady *c);

#endif
