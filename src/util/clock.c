#include "util/clock.h"

#include <time.h>

int64_t clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_boot_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_wall_s(void)
{
	return (int64_t)time(NULL);
}

int64_t clock_steady_wall_s(struct clock_steady *c)
{
	int64_t wall = clock_wall_s(), mono = clock_mono_ms();

	if (c->mono_ms > 0 && c->wall_s + (mono - c->mono_ms) / 1000 > wall)
		wall = c->wall_s + (mono - c->mono_ms) / 1000;
	else {
		/* Re-anchor only when the wall clock is ahead, so rounding never accumulates. */
		c->wall_s = wall;
		c->mono_ms = mono;
	}
	return wall;
}

void clock_utc_text(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (out == NULL || outlen == 0)
		return;
	out[0] = '\0';
	if (gmtime_r(&tt, &tm) == NULL || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		out[0] = '\0';
}
