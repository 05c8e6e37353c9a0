#include "util/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

static volatile int log_threshold = LOG_LVL_INFO;
static volatile int log_json;    /* LOG_FORMAT_JSON */
static volatile int log_journal; /* stderr is the journal: priority prefixes */

static const char *const log_names[] = {"error", "warning", "info", "debug"};
/* Indexed by enum log_level: sd-daemon(3)'s prefixes, syslog's priorities 3, 4, 6, 7. */
static const char *const log_prefixes[] = {SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG};
static const char *const log_format_names[] = {"text", "json"};

void log_set_level(enum log_level level)
{
	log_threshold = (int)level;
}

static int name_index(const char *name, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(name, names[i]) == 0)
			return (int)i;
	return -1;
}

int log_level_parse(const char *name, enum log_level *out)
{
	int i = name_index(name, log_names, sizeof(log_names) / sizeof(log_names[0]));

	if (i < 0)
		return -1;
	*out = (enum log_level)i;
	return 0;
}

int log_format_parse(const char *name, enum log_format *out)
{
	int i = name_index(name, log_format_names,
	                   sizeof(log_format_names) / sizeof(log_format_names[0]));

	if (i < 0)
		return -1;
	*out = (enum log_format)i;
	return 0;
}

/* systemd.exec(5): $JOURNAL_STREAM is "DEVICE:INODE" of the journal's stream; it is ours only
 * if stderr is still that stream. */
static int stderr_is_journal(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char tail;

	if (v == NULL || sscanf(v, "%llu:%llu%c", &dev, &ino, &tail) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(enum log_format format)
{
	log_json = format == LOG_FORMAT_JSON;
	log_journal = stderr_is_journal();
}

int log_to_journal(void)
{
	return log_journal;
}

void log_ascii_only(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p != '\0'; p++)
		if (*p >= 0x80)
			*p = '?';
}

/* log_escape, and with `high` the bytes from 0x80 up as "\xHH" too. */
static const char *escape(char *dst, size_t dstlen, const char *src, int high)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (dst == NULL || dstlen == 0)
		return dst;
	for (const unsigned char *p = (const unsigned char *)(src != NULL ? src : ""); *p != '\0';
	     p++) {
		char e[5];
		size_t k = 0;

		if (*p == '\n' || *p == '\r' || *p == '\t') {
			e[k++] = '\\';
			e[k++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
		} else if (*p < 0x20 || *p == 0x7f || (high && *p >= 0x80)) {
			e[k++] = '\\';
			e[k++] = 'x';
			e[k++] = hex[*p >> 4];
			e[k++] = hex[*p & 15];
		} else {
			e[k++] = (char)*p;
		}
		if (o + k >= dstlen)
			break;
		memcpy(dst + o, e, k);
		o += k;
	}
	dst[o] = '\0';
	return dst;
}

const char *log_escape(char *dst, size_t dstlen, const char *src)
{
	return escape(dst, dstlen, src, 0);
}

const char *log_escape_high(char *dst, size_t dstlen, const char *src)
{
	return escape(dst, dstlen, src, 1);
}

/* The JSON form of a message (log_msg), malloc'd with its newline, or NULL. */
static char *json_line(enum log_level level, char *msg)
{
	char when[48], frac[24];
	struct timespec ts;
	struct tm tm;
	json_t *o;
	char *dump, *line = NULL;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (gmtime_r(&ts.tv_sec, &tm) == NULL)
		return NULL;
	strftime(when, sizeof(when) - sizeof(frac), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(frac, sizeof(frac), ".%03dZ", (int)(ts.tv_nsec / 1000000L) % 1000);
	strcat(when, frac);
	o = json_pack("{s:s, s:s, s:I}", "time", when, "level", log_names[level], "pid",
	              (json_int_t)getpid());
	if (o == NULL)
		return NULL;
	if (json_object_set_new(o, "message", json_string(msg)) != 0) {
		log_ascii_only(msg);
		json_object_set_new(o, "message", json_string(msg));
	}
	dump = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (dump != NULL && (line = malloc(strlen(dump) + 2)) != NULL)
		sprintf(line, "%s\n", dump);
	free(dump);
	return line;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[4096], msg[4096];
	const char *prefix;
	int n = 0, m;
	va_list ap;

	if ((int)level > log_threshold)
		return;
	prefix = log_journal ? log_prefixes[level] : "";
	if (log_json) {
		char *line;

		va_start(ap, fmt);
		m = vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		if (m < 0)
			buf[0] = '\0';
		line = json_line(level, buf);
		if (line != NULL) {
			char *out = malloc(strlen(prefix) + strlen(line) + 1);

			if (out != NULL) {
				sprintf(out, "%s%s", prefix, line);
				/* One write per line keeps concurrent threads' lines whole. */
				if (write(STDERR_FILENO, out, strlen(out)) < 0)
					n = -1;
			}
			free(out);
			free(line);
			if (out != NULL)
				return;
		}
		/* Out of memory: the text form still says it. */
	}
	va_start(ap, fmt);
	m = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (m < 0)
		msg[0] = '\0';
	n = snprintf(buf, sizeof(buf), "%slogmeter: %s: ", prefix, log_names[level]);
	/* Escaped, so that a path or a line quoted in it cannot split it: under the journal a
	 * second line would lose its priority prefix. */
	log_escape(buf + n, sizeof(buf) - (size_t)n - 1, msg);
	n += (int)strlen(buf + n);
	buf[n++] = '\n';
	/* One write per line keeps concurrent threads' lines whole. */
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

void log_plain(enum log_level level, const char *text)
{
	const char *p = text;

	if (!log_journal) {
		fprintf(stderr, "%s\n", text);
		return;
	}
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);

		fprintf(stderr, "%s%.*s\n", log_prefixes[level], (int)n, p);
		p += n + (nl != NULL);
	}
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
