/* log: messages to stderr (the journal, under systemd) and error buffers. */
#ifndef LOGMETER_LOG_H
#define LOGMETER_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* How a line is written: "logmeter: <level>: <message>", or one JSON object. */
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };

/* Messages above `level` are dropped. Default LOG_LVL_INFO. Thread-safe. */
void log_set_level(enum log_level level);

/* Parses "error", "warning", "info" or "debug". Returns 0, or -1 if `name` is none of them. */
int log_level_parse(const char *name, enum log_level *out);

/* Parses "text" or "json". Returns 0, or -1 if `name` is neither. */
int log_format_parse(const char *name, enum log_format *out);

/* Sets the format of the lines written from now on (default LOG_FORMAT_TEXT), and looks again
 * whether stderr is the journal: systemd sets $JOURNAL_STREAM to "DEVICE:INODE" (decimal) of
 * the stream it connected to stdout or stderr, and a process is to compare them with fstat(2)
 * of its descriptor, since a child may have inherited the variable but not the stream
 * (systemd.exec(5), "Environment Variables Set or Propagated by the Service Manager"). When they
 * match, every line starts with its sd-daemon(3) priority prefix (SD_ERR "<3>", SD_WARNING
 * "<4>", SD_INFO "<6>", SD_DEBUG "<7>"), which journald takes as the entry's priority, so that
 * `journalctl -p warning` shows warnings and errors. Call it before other threads log. */
void log_setup(enum log_format format);

/* 1 if log_setup found stderr to be the journal, else 0. */
int log_to_journal(void);

/* Writes one line to stderr with a single write(2), so lines from the ingest and sender threads
 * never interleave: "logmeter: <level>: <message>\n", the message's control characters escaped
 * (log_escape) so that it stays one line, or with LOG_FORMAT_JSON one JSON object
 * {"time": "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC), "level": "error"|"warning"|"info"|"debug",
 * "pid": N, "message": "..."} (jansson; a message that is not UTF-8 has its other bytes as '?');
 * under the journal preceded by the priority prefix (log_setup). Messages longer than 4,095
 * bytes are cut. Never pass the API key or anything derived from it. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes `text` (lines, without a trailing newline) to stderr as it is, each line preceded by
 * the priority prefix of `level` when stderr is the journal: for what a command prints before
 * its configuration (and so its log format) is known, such as the configuration's errors. */
void log_plain(enum log_level level, const char *text);

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/* Replaces every byte of `s` outside ASCII with '?', in place: the last resort for text that is
 * not valid UTF-8 (a log line may quote a file's bytes, a path may be any bytes), which JSON
 * cannot carry and jansson refuses. */
void log_ascii_only(char *s);

/* Copies `src` into `dst` (`dstlen` bytes, always NUL-terminated, cut at a whole escape if
 * needed) with its control characters escaped: '\n' as "\\n", '\r' as "\\r", '\t' as "\\t",
 * the other bytes below 0x20 and DEL (0x7f) as "\\xHH". Text from outside (a path, which may
 * hold any byte but '/' and NUL; a line of a log; an answer) then never splits a log line or
 * the line of a command's output, nor moves the cursor of the terminal that shows it. log_msg
 * applies it to every message; commands apply it to what they print. Returns dst. */
const char *log_escape(char *dst, size_t dstlen, const char *src);

/* log_escape, and the bytes from 0x80 up written as "\\xHH" too: for text that is not valid
 * UTF-8 (a path may be any bytes), which JSON and Prometheus' label values cannot carry; unlike
 * '?' (log_ascii_only), two names that differ in one such byte stay apart. Returns dst. */
const char *log_escape_high(char *dst, size_t dstlen, const char *src);

/* Formats into the caller's error buffer `err` of `errlen` bytes (always NUL-terminated, cut if
 * needed). Safe with err == NULL or errlen == 0 (does nothing). The convention for every module:
 * a function returning -1 or NULL has put its reason here. */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Appends "\n" (if `err` is not empty) and the formatted text to `err`; for modules that
 * report several errors at once (config, rule). Cuts at errlen - 1 bytes. */
void err_append(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
