/* clock: the two clocks logmeter uses (docs/architecture.md, "Time"): the monotonic clock for
 * every timer, backoff and wait, the wall clock only for what is a date. */
#ifndef LOGMETER_CLOCK_H
#define LOGMETER_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC: never jumps with the wall clock. */
int64_t clock_mono_ms(void);

/* Seconds since the epoch (time(2)). */
int64_t clock_wall_s(void);

#endif
