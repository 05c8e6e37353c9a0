/* log: messages to stderr (the journal, under systemd) and error buffers. */
#ifndef LOGMETER_LOG_H
#define LOGMETER_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Messages above `level` are dropped. Default LOG_LVL_INFO. Thread-safe. */
void log_set_level(enum log_level level);

/* Parses "error", "warning", "info" or "debug". Returns 0, or -1 if `name` is none of them. */
int log_level_parse(const char *name, enum log_level *out);

/* Writes one line "logmeter: <level>: <message>\n" to stderr with a single write(2), so lines
 * from the ingest and sender threads never interleave. Messages longer than 4,095 bytes are cut.
 * Never pass the API key or anything derived from it. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/* Formats into the caller's error buffer `err` of `errlen` bytes (always NUL-terminated, cut if
 * needed). Safe with err == NULL or errlen == 0 (does nothing). The convention for every module:
 * a function returning -1 or NULL has put its reason here. */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Appends "\n" (if `err` is not empty) and the formatted text to `err`; for modules that
 * report several errors at once (config, rule). Cuts at errlen - 1 bytes. */
void err_append(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
