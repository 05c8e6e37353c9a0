/* Unit tests of health.c: when the main thread pings systemd's watchdog, checked on a real
 * AF_UNIX datagram socket in $NOTIFY_SOCKET, as systemd's would receive them (sd_notify(3)). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/health.h"

static char dir[] = "/tmp/test_health.XXXXXX";
static char sock_path[64];
static int sock = -1;

static int setup_all(void **state)
{
	struct sockaddr_un sa;

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/notify", dir);
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sock < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (bind(sock, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return -1;
	setenv("NOTIFY_SOCKET", sock_path, 1);
	return 0;
}

static int teardown_all(void **state)
{
	(void)state;
	if (sock >= 0)
		close(sock);
	unlink(sock_path);
	rmdir(dir);
	return 0;
}

/* The next datagram, or "" if none is waiting. */
static const char *next_msg(void)
{
	static char buf[1024];
	ssize_t n = recv(sock, buf, sizeof(buf) - 1, 0);

	if (n < 0) {
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		return "";
	}
	buf[n] = '\0';
	return buf;
}

static void drain(void)
{
	while (next_msg()[0] != '\0')
		;
}

/* WATCHDOG_USEC for this process: 400 ms gives checks every 100 ms and a 200 ms stall limit. */
static void watchdog_env(const char *usec)
{
	char pid[32];

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_USEC", usec, 1);
	setenv("WATCHDOG_PID", pid, 1);
}

static void test_no_watchdog(void **state)
{
	struct health_watch hw;
	int running[HEALTH_WORKERS] = {1, 1};

	(void)state;
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	drain();
	assert_int_equal(health_watch_init(&hw, 0), 0);
	assert_int_equal(health_watch_tick(&hw, running, 1000), 0);
	assert_string_equal(next_msg(), "");

	/* Another process's watchdog is not ours (WATCHDOG_PID, sd_watchdog_enabled(3)). */
	setenv("WATCHDOG_USEC", "400000", 1);
	setenv("WATCHDOG_PID", "1", 1);
	assert_int_equal(health_watch_init(&hw, 0), 0);
	assert_int_equal(health_watch_tick(&hw, running, 1000), 0);
	assert_string_equal(next_msg(), "");
}

static void test_pings_while_progressing(void **state)
{
	struct health_watch hw;
	int running[HEALTH_WORKERS] = {1, 1};
	int64_t t = 10000;

	(void)state;
	watchdog_env("400000");
	drain();
	assert_int_equal(health_watch_init(&hw, t), 100);
	assert_int_equal(hw.stall_ms, 200);
	assert_int_equal(hw.next_at, t + 100);
	for (int i = 0; i < 10; i++) {
		t += 100;
		health_beat(HEALTH_INGEST);
		health_beat(HEALTH_SENDER);
		assert_int_equal(health_watch_tick(&hw, running, t), 1);
		assert_string_equal(next_msg(), "WATCHDOG=1");
		assert_int_equal(hw.next_at, t + 100);
	}
}

static void test_stuck_worker_stops_pings(void **state)
{
	struct health_watch hw;
	int running[HEALTH_WORKERS] = {1, 1};
	int64_t t = 50000;

	(void)state;
	watchdog_env("400000");
	drain();
	health_watch_init(&hw, t);
	/* The sender beats; the ingest thread is busy (not waiting) and does not. Up to the
	 * stall limit (200 ms) that is fine. */
	for (int i = 1; i <= 2; i++) {
		health_beat(HEALTH_SENDER);
		assert_int_equal(health_watch_tick(&hw, running, t + 100 * i), 1);
		assert_string_equal(next_msg(), "WATCHDOG=1");
	}
	/* Past it: no ping, at any later check. */
	for (int i = 3; i <= 6; i++) {
		health_beat(HEALTH_SENDER);
		assert_int_equal(health_watch_tick(&hw, running, t + 100 * i), 0);
		assert_string_equal(next_msg(), "");
	}
	assert_int_equal(hw.withheld, 1);
	/* One beat and the pings resume. */
	health_beat(HEALTH_INGEST);
	health_beat(HEALTH_SENDER);
	assert_int_equal(health_watch_tick(&hw, running, t + 700), 1);
	assert_string_equal(next_msg(), "WATCHDOG=1");
	assert_int_equal(hw.withheld, 0);
}

static void test_waiting_is_healthy(void **state)
{
	struct health_watch hw;
	int running[HEALTH_WORKERS] = {1, 1};
	int64_t t = 90000;

	(void)state;
	watchdog_env("400000");
	drain();
	health_watch_init(&hw, t);
	/* Both threads wait for input for a long time without a beat: healthy. */
	health_wait_begin(HEALTH_INGEST);
	health_wait_begin(HEALTH_SENDER);
	for (int i = 1; i <= 10; i++) {
		assert_int_equal(health_watch_tick(&hw, running, t + 100 * i), 1);
		assert_string_equal(next_msg(), "WATCHDOG=1");
	}
	/* Leaving the wait is a beat; then stuck for longer than the limit: no ping. */
	health_wait_end(HEALTH_INGEST);
	assert_int_equal(health_watch_tick(&hw, running, t + 1100), 1);
	assert_string_equal(next_msg(), "WATCHDOG=1");
	assert_int_equal(health_watch_tick(&hw, running, t + 1200), 1);
	assert_int_equal(health_watch_tick(&hw, running, t + 1300), 1);
	drain();
	assert_int_equal(health_watch_tick(&hw, running, t + 1400), 0);
	assert_string_equal(next_msg(), "");
	health_wait_end(HEALTH_SENDER);
	/* A worker that is not running cannot be stuck. */
	running[HEALTH_INGEST] = 0;
	assert_int_equal(health_watch_tick(&hw, running, t + 1500), 1);
	assert_string_equal(next_msg(), "WATCHDOG=1");
	/* After a reset (the workers were restarted on a reload) every worker starts healthy. */
	running[HEALTH_INGEST] = 1;
	health_watch_reset(&hw, t + 5000);
	assert_int_equal(health_watch_tick(&hw, running, t + 5100), 1);
	assert_string_equal(next_msg(), "WATCHDOG=1");
}

static void test_notify(void **state)
{
	(void)state;
	drain();
	health_notify("READY=1\nSTATUS=running: %d sources, %d rules", 2, 3);
	assert_string_equal(next_msg(), "READY=1\nSTATUS=running: 2 sources, 3 rules");
	/* Without NOTIFY_SOCKET: nothing, and no error. */
	unsetenv("NOTIFY_SOCKET");
	health_notify("STOPPING=1");
	assert_string_equal(next_msg(), "");
	setenv("NOTIFY_SOCKET", sock_path, 1);
	health_notify("STOPPING=1");
	assert_string_equal(next_msg(), "STOPPING=1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_watchdog),
	    cmocka_unit_test(test_pings_while_progressing),
	    cmocka_unit_test(test_stuck_worker_stops_pings),
	    cmocka_unit_test(test_waiting_is_healthy),
	    cmocka_unit_test(test_notify),
	};

	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
