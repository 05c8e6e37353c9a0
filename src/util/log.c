#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static volatile int log_threshold = LOG_LVL_INFO;

static const char *const log_names[] = {"error", "warning", "info", "debug"};

void log_set_level(enum log_level level)
{
	log_threshold = (int)level;
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcasecmp(name, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[4096];
	int n, m;
	va_list ap;

	if ((int)level > log_threshold)
		return;
	n = snprintf(buf, sizeof(buf), "logmeter: %s: ", log_names[level]);
	va_start(ap, fmt);
	m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	/* One write per line keeps concurrent threads' lines whole. */
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

void err_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void err_append(char *err, size_t errlen, const char *fmt, ...)
{
	size_t used;
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	used = strnlen(err, errlen);
	if (used >= errlen - 1)
		return;
	if (used > 0) {
		err[used++] = '\n';
		err[used] = '\0';
		if (used >= errlen - 1)
			return;
	}
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
}
