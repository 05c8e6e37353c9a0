/* crash: named crash and stop points (see crash.h). The variables are read once; each armed target
 * keeps an atomic count of the times its point was reached, so the ingest and the sender threads
 * can reach points concurrently and exactly one call (the N-th) fires. */
#include "util/crash.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

/* Keep in pipeline order; docs/crash-testing.md says what a crash at each one proves. */
const char *const crash_point_names[] = {
    "spool_file_add",      /* a new file's record committed, nothing read from it yet */
    "tail_reset",          /* a stale checkpoint gave the open file a new record, not read yet */
    "watch_recover_open",  /* a reading record's file found at start, before it is opened */
    "watch_unread_open",   /* a rotation never read judged at start, before it is opened */
    "watch_open_judged",   /* a file without a record judged no copy, before it is opened */
    "watch_first_look",    /* a file opened empty holds bytes now, before they are judged */
    "watch_first_read",    /* a file opened empty judged (a copy or not), before its first read */
    "watch_scan_read",     /* a rescan read a tail, before it looks whether it was deleted */
    "tail_before_commit",  /* lines read and turned into events, before the commit */
    "spool_commit_inside", /* events and checkpoint written in the transaction, not committed */
    "spool_commit_after",  /* committed, before the tail advances its in-memory checkpoint */
    "tail_copy_read",      /* a truncated file's rest read from its copy, the original not yet */
    "sender_after_answer", /* Stripe answered and the answer is classified, not yet marked */
    "sender_dead_letter",  /* an event is being dead-lettered, the mark not yet recorded */
    "spool_mark_inside",   /* outcomes written in the mark transaction, not committed */
    "window_close_inside", /* windows closed into meter events in the transaction, not committed */
    "shutdown",            /* stopping the workers: 1st the ingest, 2nd the sender told to stop */
    "export_state",        /* `spool export`: one state's events listed, the next not yet */
    NULL,
};

struct crash_armed {
	struct crash_target t;
	int stop; /* from LOGMETER_STOP_AT: SIGSTOP, not SIGKILL */
	atomic_llong count;
};

static pthread_once_t crash_once = PTHREAD_ONCE_INIT;
static struct crash_armed crash_targets[2 * CRASH_TARGETS_MAX];
static size_t crash_n;
static int crash_armed_any; /* written once inside pthread_once, read-only after */

int crash_known(const char *name)
{
	if (name == NULL)
		return 0;
	for (size_t i = 0; crash_point_names[i] != NULL; i++)
		if (strcmp(crash_point_names[i], name) == 0)
			return 1;
	return 0;
}

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* crash_parse for the variable `var`, which the errors name. */
static int parse_var(const char *var, const char *spec, struct crash_target *out, size_t max,
                     size_t *n, char *err, size_t errlen)
{
	const char *p = spec;
	size_t got = 0;

	if (n == NULL || (out == NULL && max > 0)) {
		err_set(err, errlen, "crash_parse: invalid arguments");
		return -1;
	}
	*n = 0;
	if (spec == NULL || spec[strspn(spec, " \t")] == '\0')
		return 0;
	for (;;) {
		const char *start, *end;
		size_t len;
		int64_t count = 1;

		p += strspn(p, " \t");
		start = p;
		while (name_char(*p))
			p++;
		len = (size_t)(p - start);
		end = p;
		if (len == 0 || len >= CRASH_NAME_MAX) {
			err_set(err, errlen,
			        "%s: bad point name at \"%.40s\" (1 to %d of a-z, 0-9, _)", var,
			        start, CRASH_NAME_MAX - 1);
			return -1;
		}
		if (*p == ':') {
			char *stop;
			long long v;

			p++;
			if (*p < '0' || *p > '9') {
				err_set(err, errlen, "%s: \"%.*s\" needs a count after ':'", var,
				        (int)len, start);
				return -1;
			}
			errno = 0;
			v = strtoll(p, &stop, 10);
			if (errno != 0 || v < 1 || v > CRASH_COUNT_MAX) {
				err_set(err, errlen, "%s: \"%.*s\": the count must be 1..%lld", var,
				        (int)len, start, (long long)CRASH_COUNT_MAX);
				return -1;
			}
			count = (int64_t)v;
			p = stop;
		}
		p += strspn(p, " \t");
		if (*p != ',' && *p != '\0') {
			err_set(err, errlen, "%s: unexpected \"%.20s\" after \"%.*s\"", var, p,
			        (int)(end - start), start);
			return -1;
		}
		if (got == max) {
			err_set(err, errlen, "%s: more than %zu points", var, max);
			return -1;
		}
		memcpy(out[got].name, start, len);
		out[got].name[len] = '\0';
		out[got].n = count;
		got++;
		if (*p == '\0')
			break;
		p++; /* ',' */
	}
	*n = got;
	return 0;
}

int crash_parse(const char *spec, struct crash_target *out, size_t max, size_t *n, char *err,
                size_t errlen)
{
	return parse_var(CRASH_ENV, spec, out, max, n, err, errlen);
}

/* Arms the points `var` names; `stop`: they stop the process instead of killing it. */
static void read_var(const char *var, int stop)
{
	struct crash_target parsed[CRASH_TARGETS_MAX];
	const char *spec = getenv(var);
	char err[256] = "";
	size_t n = 0;

	if (spec == NULL || *spec == '\0')
		return;
	if (parse_var(var, spec, parsed, CRASH_TARGETS_MAX, &n, err, sizeof(err)) != 0) {
		log_err("%s; no %s point is armed", err, stop ? "stop" : "crash");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (!crash_known(parsed[i].name)) {
			char known[1024] = "";
			size_t used = 0;

			for (size_t k = 0; crash_point_names[k] != NULL && used < sizeof(known);
			     k++) {
				int w = snprintf(known + used, sizeof(known) - used, "%s%s",
				                 k > 0 ? ", " : "", crash_point_names[k]);
				if (w < 0)
					break;
				used += (size_t)w;
			}
			log_warn(
			    "%s: unknown crash point \"%s\" (it never fires); the known points: "
			    "%s",
			    var, parsed[i].name, known);
			continue;
		}
		crash_targets[crash_n].t = parsed[i];
		crash_targets[crash_n].stop = stop;
		atomic_init(&crash_targets[crash_n].count, 0);
		crash_n++;
		crash_armed_any = 1;
	}
}

static void crash_read_env(void)
{
	size_t before;

	read_var(CRASH_ENV, 0);
	if (crash_n > 0)
		log_warn("%s is set: this process kills itself at a crash point (a test)",
		         CRASH_ENV);
	before = crash_n;
	read_var(CRASH_STOP_ENV, 1);
	if (crash_n > before)
		log_warn("%s is set: this process stops itself (SIGSTOP) at a point (a test)",
		         CRASH_STOP_ENV);
}

void crash_init(void)
{
	pthread_once(&crash_once, crash_read_env);
}

void crash_point(const char *name)
{
	pthread_once(&crash_once, crash_read_env);
	if (!crash_armed_any)
		return;
	for (size_t i = 0; i < crash_n; i++) {
		struct crash_armed *a = &crash_targets[i];

		if (strcmp(a->t.name, name) != 0)
			continue;
		if (atomic_fetch_add(&a->count, 1) + 1 != a->t.n)
			continue;
		if (a->stop) {
			/* The test that set it waits for the stopped state, acts, and sends
			 * SIGCONT; only this thread's work waits, as at any SIGSTOP. */
			log_warn("stop point %s reached (%" PRId64 "): stopped until SIGCONT", name,
			         a->t.n);
			raise(SIGSTOP);
			continue;
		}
		/* log_msg writes the line with one write(2): nothing is buffered that the kill
		 * could lose, and nothing else is flushed. */
		log_err("crash point %s reached (%" PRId64 "): exiting abruptly", name, a->t.n);
		raise(SIGKILL);
		_exit(137); /* not reached: SIGKILL cannot be caught or blocked */
	}
}
