/* Unit tests of crash: parsing LOGMETER_CRASH_AT, counting occurrences, inertness, stop points. A
 * crash point that fires kills its process, so every test that reaches one does it in a forked
 * child and the parent observes how it died, how many calls returned before, and what it wrote to
 * stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/crash.h"

/* ---- parsing ---- */

static void test_parse_ok(void **state)
{
	struct crash_target t[CRASH_TARGETS_MAX];
	char err[256] = "";
	size_t n = 99;

	(void)state;
	assert_int_equal(
	    crash_parse("tail_before_commit", t, CRASH_TARGETS_MAX, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(t[0].name, "tail_before_commit");
	assert_int_equal(t[0].n, 1);

	assert_int_equal(crash_parse("spool_mark_inside:3, shutdown:2 ,x_9:1000000000", t,
	                             CRASH_TARGETS_MAX, &n, err, sizeof(err)),
	                 0);
	assert_int_equal(n, 3);
	assert_string_equal(t[0].name, "spool_mark_inside");
	assert_int_equal(t[0].n, 3);
	assert_string_equal(t[1].name, "shutdown");
	assert_int_equal(t[1].n, 2);
	assert_string_equal(t[2].name, "x_9");
	assert_int_equal(t[2].n, CRASH_COUNT_MAX);

	/* Nothing to arm. */
	n = 99;
	assert_int_equal(crash_parse("", t, CRASH_TARGETS_MAX, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	n = 99;
	assert_int_equal(crash_parse(" \t", t, CRASH_TARGETS_MAX, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	n = 99;
	assert_int_equal(crash_parse(NULL, t, CRASH_TARGETS_MAX, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
}

static void test_parse_errors(void **state)
{
	static const char *const bad[] = {
	    "Shutdown",   /* upper case */
	    "shutdown:",  /* no count */
	    "shutdown:0", /* counts start at 1 */
	    "shutdown:-1",
	    "shutdown:+1",
	    "shutdown:1x",
	    "shutdown:2:3",
	    "shutdown:1000000001",              /* over CRASH_COUNT_MAX */
	    "shutdown:99999999999999999999999", /* over long long */
	    "a,,b",
	    ",a",
	    "a,",
	    "a b",
	    "a-b",
	    ":3",
	    "shutdown :3",
	};
	struct crash_target t[CRASH_TARGETS_MAX];
	char err[256], name[CRASH_NAME_MAX + 1], many[CRASH_TARGETS_MAX * 3 + 8] = "";
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		n = 99;
		if (crash_parse(bad[i], t, CRASH_TARGETS_MAX, &n, err, sizeof(err)) != -1)
			fail_msg("\"%s\" was accepted", bad[i]);
		assert_int_equal(n, 0);
		assert_non_null(strstr(err, CRASH_ENV));
	}
	/* A name of CRASH_NAME_MAX - 1 bytes fits, one more does not. */
	memset(name, 'a', CRASH_NAME_MAX - 1);
	name[CRASH_NAME_MAX - 1] = '\0';
	assert_int_equal(crash_parse(name, t, CRASH_TARGETS_MAX, &n, err, sizeof(err)), 0);
	assert_int_equal(strlen(t[0].name), CRASH_NAME_MAX - 1);
	name[CRASH_NAME_MAX - 1] = 'a';
	name[CRASH_NAME_MAX] = '\0';
	assert_int_equal(crash_parse(name, t, CRASH_TARGETS_MAX, &n, err, sizeof(err)), -1);
	/* More entries than room. */
	for (int i = 0; i <= CRASH_TARGETS_MAX; i++)
		strcat(many, i > 0 ? ",p" : "p");
	assert_int_equal(crash_parse(many, t, CRASH_TARGETS_MAX, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than"));
	many[strlen(many) - 2] = '\0'; /* exactly CRASH_TARGETS_MAX */
	assert_int_equal(crash_parse(many, t, CRASH_TARGETS_MAX, &n, err, sizeof(err)), 0);
	assert_int_equal(n, CRASH_TARGETS_MAX);
}

static void test_known(void **state)
{
	size_t count = 0;

	(void)state;
	for (size_t i = 0; crash_point_names[i] != NULL; i++) {
		assert_true(crash_known(crash_point_names[i]));
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(crash_point_names[i], crash_point_names[j]);
		count++;
	}
	/* The points the issue asks for, at least. */
	assert_true(crash_known("tail_before_commit"));
	assert_true(crash_known("spool_commit_inside"));
	assert_true(crash_known("spool_commit_after"));
	assert_true(crash_known("sender_after_answer"));
	assert_true(crash_known("spool_mark_inside"));
	assert_true(crash_known("sender_dead_letter"));
	assert_true(crash_known("shutdown"));
	assert_true(count >= 7);
	assert_false(crash_known("nope"));
	assert_false(crash_known(""));
	assert_false(crash_known(NULL));
}

/* ---- firing, in a child ---- */

/* How a child ended: the calls that returned (one byte each on a pipe) and its stderr. */
struct outcome {
	int status;
	size_t returned;
	char err[4096];
};

/* Reads a pipe to its end into buf (cut at len - 1 bytes, NUL-terminated); returns bytes read. */
static size_t drain(int fd, char *buf, size_t len)
{
	size_t got = 0, total = 0;
	char tmp[512];

	for (;;) {
		ssize_t r = read(fd, tmp, sizeof(tmp));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		total += (size_t)r;
		if (buf != NULL && got < len - 1) {
			size_t c = (size_t)r < len - 1 - got ? (size_t)r : len - 1 - got;

			memcpy(buf + got, tmp, c);
			got += c;
		}
	}
	if (buf != NULL)
		buf[got] = '\0';
	return total;
}

static int calls_fd = -1; /* the child's end of the "returned" pipe */

static void returned(void)
{
	char c = 'r';

	if (write(calls_fd, &c, 1) != 1)
		_exit(3);
}

/* Forks; the child points its stderr and the "returned" pipe at errp and calls, sets the variable
 * `env` to `spec` (unsets the other one, and `env` if spec is NULL), runs body() and exits 0.
 * Returns the child's pid; the caller reads the pipes' other ends. */
static pid_t fork_child(const char *env, const char *spec, void (*body)(void), int calls[2],
                        int errp[2])
{
	pid_t pid;

	assert_int_equal(pipe(calls), 0);
	assert_int_equal(pipe(errp), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(calls[0]);
		close(errp[0]);
		if (dup2(errp[1], STDERR_FILENO) < 0)
			_exit(4);
		calls_fd = calls[1];
		unsetenv(strcmp(env, CRASH_ENV) == 0 ? CRASH_STOP_ENV : CRASH_ENV);
		if (spec != NULL)
			setenv(env, spec, 1);
		else
			unsetenv(env);
		body();
		_exit(0);
	}
	close(calls[1]);
	close(errp[1]);
	return pid;
}

/* Forks; the child sets LOGMETER_CRASH_AT to `spec` (unset if NULL), runs body() and exits 0. */
static void run_child(const char *spec, void (*body)(void), struct outcome *out)
{
	int calls[2], errp[2];
	pid_t pid = fork_child(CRASH_ENV, spec, body, calls, errp);

	memset(out, 0, sizeof(*out));
	out->returned = drain(calls[0], NULL, 0);
	drain(errp[0], out->err, sizeof(out->err));
	close(calls[0]);
	close(errp[0]);
	assert_int_equal(waitpid(pid, &out->status, 0), pid);
}

static void assert_killed(const struct outcome *o)
{
	if (!WIFSIGNALED(o->status) || WTERMSIG(o->status) != SIGKILL)
		fail_msg("the child was not killed by SIGKILL (status 0x%x); stderr: %s", o->status,
		         o->err);
}

static void assert_exited_0(const struct outcome *o)
{
	if (!WIFEXITED(o->status) || WEXITSTATUS(o->status) != 0)
		fail_msg("the child did not exit 0 (status 0x%x); stderr: %s", o->status, o->err);
}

static void five_commits(void)
{
	for (int i = 0; i < 5; i++) {
		crash_point("spool_commit_after"); /* another point: never counts */
		crash_point("tail_before_commit");
		returned();
	}
}

static void test_fires_at_nth(void **state)
{
	struct outcome o;

	(void)state;
	run_child("tail_before_commit:3", five_commits, &o);
	assert_killed(&o);
	assert_int_equal(o.returned, 2); /* calls 1 and 2 returned, the 3rd never did */
	assert_non_null(strstr(o.err, "crash point tail_before_commit reached (3): exiting "
	                              "abruptly"));

	run_child("tail_before_commit", five_commits, &o); /* default: the first time */
	assert_killed(&o);
	assert_int_equal(o.returned, 0);

	run_child("tail_before_commit:5", five_commits, &o);
	assert_killed(&o);
	assert_int_equal(o.returned, 4);

	run_child("tail_before_commit:6", five_commits, &o); /* reached 5 times only */
	assert_exited_0(&o);
	assert_int_equal(o.returned, 5);
	assert_null(strstr(o.err, "crash point tail_before_commit reached"));
}

static void marks_then_shutdown(void)
{
	crash_point("spool_mark_inside");
	returned();
	crash_point("shutdown");
	returned();
	crash_point("spool_mark_inside");
	returned();
}

static void test_several(void **state)
{
	struct outcome o;

	(void)state;
	/* Whichever target comes first fires. */
	run_child("spool_mark_inside:2, shutdown", marks_then_shutdown, &o);
	assert_killed(&o);
	assert_int_equal(o.returned, 1);
	assert_non_null(strstr(o.err, "crash point shutdown reached (1)"));

	run_child("shutdown:2,spool_mark_inside:2", marks_then_shutdown, &o);
	assert_killed(&o);
	assert_int_equal(o.returned, 2);
	assert_non_null(strstr(o.err, "crash point spool_mark_inside reached (2)"));
}

static void every_point_many_times(void)
{
	for (int k = 0; k < 1000; k++)
		for (size_t i = 0; crash_point_names[i] != NULL; i++)
			crash_point(crash_point_names[i]);
	returned();
}

static void test_inert(void **state)
{
	struct outcome o;

	(void)state;
	/* Unset, empty, malformed (disarms everything, says why), unknown (says which exist). */
	run_child(NULL, every_point_many_times, &o);
	assert_exited_0(&o);
	assert_int_equal(o.returned, 1);
	assert_string_equal(o.err, "");

	run_child("", every_point_many_times, &o);
	assert_exited_0(&o);
	assert_string_equal(o.err, "");

	run_child("shutdown:0", every_point_many_times, &o);
	assert_exited_0(&o);
	assert_int_equal(o.returned, 1);
	assert_non_null(strstr(o.err, "the count must be"));
	assert_non_null(strstr(o.err, "no crash point is armed"));

	run_child("no_such_point:1", every_point_many_times, &o);
	assert_exited_0(&o);
	assert_int_equal(o.returned, 1);
	assert_non_null(strstr(o.err, "unknown crash point \"no_such_point\""));
	assert_non_null(strstr(o.err, "tail_before_commit")); /* the list of known points */
	assert_non_null(strstr(o.err, "shutdown"));
}

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20000; i++)
		crash_point("sender_after_answer");
	return NULL;
}

static void two_threads(void)
{
	pthread_t a, b;

	crash_init();
	if (pthread_create(&a, NULL, hammer, NULL) != 0 ||
	    pthread_create(&b, NULL, hammer, NULL) != 0)
		_exit(5);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	returned();
}

static void test_threads(void **state)
{
	struct outcome o;

	(void)state;
	/* 40,000 calls from two threads: the 30,000th fires, exactly once. */
	run_child("sender_after_answer:30000", two_threads, &o);
	assert_killed(&o);
	assert_int_equal(o.returned, 0);
	assert_non_null(strstr(o.err, "crash point sender_after_answer reached (30000)"));
	assert_null(strstr(strstr(o.err, "reached (30000)") + 1, "reached"));

	run_child("sender_after_answer:40001", two_threads, &o);
	assert_exited_0(&o);
	assert_int_equal(o.returned, 1);
}

/* LOGMETER_STOP_AT: the child stops itself at the N-th call and goes on once continued. */
static void test_stop_point(void **state)
{
	int calls[2], errp[2], status;
	char err[4096], c;
	pid_t pid;

	(void)state;
	pid = fork_child(CRASH_STOP_ENV, "tail_before_commit:2", five_commits, calls, errp);
	/* Stopped at the 2nd call: one call returned before. */
	assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
	assert_true(WIFSTOPPED(status));
	assert_int_equal(WSTOPSIG(status), SIGSTOP);
	assert_int_equal(read(calls[0], &c, 1), 1);
	assert_int_equal(kill(pid, SIGCONT), 0);
	/* Then every call returns, and the child exits as if nothing happened. */
	assert_int_equal(drain(calls[0], NULL, 0), 4);
	drain(errp[0], err, sizeof(err));
	close(calls[0]);
	close(errp[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the child did not exit 0 (status 0x%x); stderr: %s", status, err);
	assert_non_null(strstr(err, "stop point tail_before_commit reached (2): stopped until "
	                            "SIGCONT"));
	assert_null(strstr(err, "crash point"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_ok), cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_known),    cmocka_unit_test(test_fires_at_nth),
	    cmocka_unit_test(test_several),  cmocka_unit_test(test_inert),
	    cmocka_unit_test(test_threads),  cmocka_unit_test(test_stop_point),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
