/* health: worker liveness and sd_notify(3) for `logmeter run` under systemd (see health.h). */
#include "util/health.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "util/clock.h"
#include "util/log.h"

static const char *const worker_names[HEALTH_WORKERS] = {"ingest", "sender"};

static atomic_uint_fast64_t beats[HEALTH_WORKERS];
static atomic_int waiting[HEALTH_WORKERS];

/* The test stall (HEALTH_STALL_ENV), parsed once. */
static pthread_once_t stall_once = PTHREAD_ONCE_INIT;
static int stall_worker = -1;
static uint64_t stall_at;

static void stall_init(void)
{
	const char *spec = getenv(HEALTH_STALL_ENV);
	char *end;
	unsigned long long n;

	if (spec == NULL || spec[0] == '\0')
		return;
	for (int w = 0; w < HEALTH_WORKERS; w++) {
		size_t len = strlen(worker_names[w]);

		if (strncmp(spec, worker_names[w], len) != 0 || spec[len] != ':')
			continue;
		errno = 0;
		n = strtoull(spec + len + 1, &end, 10);
		if (errno == 0 && *end == '\0' && n >= 1) {
			stall_worker = w;
			stall_at = n;
			return;
		}
	}
	log_err("%s=%s is not ingest:N or sender:N: ignored", HEALTH_STALL_ENV, spec);
}

static void stall_forever(enum health_worker w, uint64_t n)
{
	struct timespec ts = {3600, 0};

	log_err("%s: the %s thread stops at its beat %llu (a simulated hang)", HEALTH_STALL_ENV,
	        worker_names[w], (unsigned long long)n);
	for (;;)
		nanosleep(&ts, NULL);
}

void health_beat(enum health_worker w)
{
	uint64_t n;

	if ((unsigned)w >= HEALTH_WORKERS)
		return;
	n = atomic_fetch_add(&beats[w], 1) + 1;
	pthread_once(&stall_once, stall_init);
	if (stall_worker == (int)w && n == stall_at)
		stall_forever(w, n);
}

void health_wait_begin(enum health_worker w)
{
	if ((unsigned)w < HEALTH_WORKERS)
		atomic_store(&waiting[w], 1);
}

void health_wait_end(enum health_worker w)
{
	if ((unsigned)w >= HEALTH_WORKERS)
		return;
	atomic_store(&waiting[w], 0);
	health_beat(w);
}

void health_watch_reset(struct health_watch *hw, int64_t now_ms)
{
	for (int w = 0; w < HEALTH_WORKERS; w++) {
		hw->seen[w] = atomic_load(&beats[w]);
		hw->ok_at[w] = now_ms;
	}
	hw->next_at = now_ms + hw->interval_ms;
}

int64_t health_watch_init(struct health_watch *hw, int64_t now_ms)
{
	uint64_t usec = 0;
	int r;

	memset(hw, 0, sizeof(*hw));
	/* unset_environment = 0: the variables stay for a re-exec; WATCHDOG_PID makes sure only
	 * this process, not a child, takes them as its own. */
	r = sd_watchdog_enabled(0, &usec);
	if (r < 0)
		log_warn("watchdog: WATCHDOG_USEC/WATCHDOG_PID unusable (%s): no watchdog pings",
		         strerror(-r));
	if (r > 0 && usec >= 4000) {
		hw->interval_ms = (int64_t)(usec / 4000);
		hw->stall_ms = (int64_t)(usec / 2000);
		log_info("watchdog: timeout %llu ms, checking the workers every %lld ms",
		         (unsigned long long)(usec / 1000), (long long)hw->interval_ms);
	}
	health_watch_reset(hw, now_ms);
	return hw->interval_ms;
}

int health_watch_tick(struct health_watch *hw, const int running[HEALTH_WORKERS], int64_t now_ms)
{
	int stuck = -1;
	int r;

	if (hw->interval_ms <= 0)
		return 0;
	hw->next_at = now_ms + hw->interval_ms;
	for (int w = 0; w < HEALTH_WORKERS; w++) {
		/* Read the wait flag first: a worker that leaves its wait between the two loads
		 * has beaten, and is seen at the next check. */
		int wt = atomic_load(&waiting[w]);
		uint64_t b = atomic_load(&beats[w]);

		if (!running[w] || wt || b != hw->seen[w]) {
			hw->seen[w] = b;
			hw->ok_at[w] = now_ms;
		}
		if (stuck < 0 && now_ms - hw->ok_at[w] > hw->stall_ms)
			stuck = w;
	}
	if (stuck >= 0) {
		if (!hw->withheld)
			log_err("watchdog: the %s thread has made no progress for %lld ms: "
			        "withholding the watchdog ping, systemd will restart the service",
			        worker_names[stuck], (long long)(now_ms - hw->ok_at[stuck]));
		hw->withheld = 1;
		return 0;
	}
	if (hw->withheld)
		log_info("watchdog: every worker makes progress again");
	hw->withheld = 0;
	r = sd_notify(0, "WATCHDOG=1");
	if (r < 0)
		log_debug("sd_notify WATCHDOG=1: %s", strerror(-r));
	return r > 0;
}

void health_notify(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int r;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	r = sd_notify(0, buf);
	if (r < 0)
		log_debug("sd_notify: %s", strerror(-r));
}
