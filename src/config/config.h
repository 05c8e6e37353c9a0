/* config: reads the main configuration file and the drop-ins of its include directory into one
 * immutable, validated struct config. Nothing else in logmeter parses text configuration.
 *
 * Format (libinih, https://github.com/benhoyt/inih): sections [agent], [stripe], [source NAME],
 * [rule NAME]; "key = value"; whole-line comments start with ';' or '#'; an inline comment starts
 * at " ;" (whitespace then ';'). Debian's libinih reads at most 199 bytes per line, so a value may
 * continue on following lines that start with whitespace: the pieces are joined with nothing
 * between them (leading and trailing whitespace of each piece is dropped). A rule's pattern can
 * instead be read verbatim from a file with `pattern_file`, which has neither limit.
 *
 * The option table in config.c is the one description of every option: its default, its bounds,
 * its freeing and its documentation (`logmeter options`, docs/configuration.md). A struct config
 * that config_load returned has every option set, by the file or by its default, and within its
 * bounds: the rest of logmeter uses the values as they are and supplies no defaults of its own.
 * The comments below give units and meanings; the defaults are in the table. */
#ifndef LOGMETER_CONFIG_H
#define LOGMETER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Size of the error buffer callers should pass to config_load; every error is a line
 * "FILE:LINE: message". */
#define CONFIG_ERR_MAX 8192

/* Where a setting came from: the file (owned by struct config) and its 1-based line. */
struct config_loc {
	const char *file;
	unsigned line;
};

enum config_read_from { CONFIG_READ_FROM_HEAD = 0, CONFIG_READ_FROM_TAIL = 1 };

/* [agent] durability: how spool commits reach the disk (docs/durability.md). */
enum config_durability { CONFIG_DURABILITY_STRICT = 0, CONFIG_DURABILITY_NORMAL = 1 };

/* [stripe] api: which meter event API the sender uses (docs/stripe-contract.md). v1: one
 * request per event, POST /v1/billing/meter_events; v2: meter event streams, up to 100 events a
 * request to POST /v2/billing/meter_event_stream under a meter event session's token. */
enum config_api { CONFIG_API_V1 = 0, CONFIG_API_V2 = 1 };

struct config_agent {
	char *instance;      /* namespaces identifiers; NULL: the spool's stable generated id */
	char *state_dir;     /* directory holding spool.db */
	char *include_dir;   /* drop-in directory, resolved against the main file's */
	char *log_level;     /* error|warning|info|debug */
	char *log_format;    /* text|json */
	int64_t batch_lines; /* lines per spool transaction */
	int64_t delivered_retention; /* seconds delivered events are kept */
	int64_t rescan_interval_ms;  /* backstop glob rescan, milliseconds */
	int64_t max_line_length;     /* bytes; longer lines are skipped and counted */
	int64_t max_open_files;      /* open log descriptors before idle ones are closed */
	int64_t rotate_wait_ms;      /* ms a rotated-away file is kept once it stops growing */
	enum config_durability durability;
	int64_t max_spool_bytes; /* bytes of spool.db pages in use before reading pauses; 0: none */
	int64_t min_free_bytes;  /* room (bytes) the spool must keep, else reading pauses */
	int allow_core_dumps;    /* 1: `run` stays dumpable and keeps RLIMIT_CORE (debugging) */
	char *metrics_listen;    /* "ADDRESS:PORT" of the metrics endpoint; NULL or "": none */
	int64_t metrics_max_files; /* files with series of their own in the metrics */
	int64_t stale_after_ms; /* live state older than this (ms): the agent is not responding */
};

struct config_stripe {
	char *api_key_file; /* read when LOGMETER_STRIPE_API_KEY is unset; NULL if not set */
	char *api_base;     /* no trailing '/'; http:// only for 127.0.0.1 */
	struct config_loc api_base_loc;  /* its line, or the [stripe] line (file NULL: neither) */
	int64_t request_timeout_ms;      /* per attempt, milliseconds */
	int64_t max_concurrency;         /* requests in flight at once */
	int64_t max_requests_per_second; /* 0 (auto): by the key, stripe_default_rate */
	int64_t retry_min_backoff_ms;    /* milliseconds */
	int64_t retry_max_backoff_ms;    /* milliseconds, at least retry_min_backoff_ms */
	int64_t auth_pause_ms;   /* wait (ms) after a 401/403 or an answer that is not Stripe's
	                            before trying again */
	char *account;           /* Connect account id for Stripe-Account, or NULL */
	int64_t unsure_after_s;  /* an unknown outcome older than this (seconds) makes an event
	                            unsure */
	enum config_api api;     /* v1 or v2 */
	char *meter_events_base; /* v2 stream host, no trailing '/'; http:// only for 127.0.0.1 */
};

struct config_source {
	char *name;
	char *path;    /* glob(7) pattern of the files to tail */
	char *exclude; /* glob(7) pattern matched against a file's base name; "": none */
	enum config_read_from read_from; /* where a file seen for the first time starts */
	int follow_symlinks;             /* 1: a symlink the glob matches is followed */
	char *olddir;                    /* logrotate's olddir (relative: to a log's dir); NULL */
	struct config_loc loc;           /* the [source NAME] line */
};

struct config_rule {
	char *name;
	char *source;        /* name of a [source] */
	size_t source_index; /* index of that source in config.sources */
	char *event_name;    /* Stripe meter event name, <= 100 bytes */
	char *pattern;       /* PCRE2 pattern (joined continuation lines or pattern_file content) */
	char *pattern_file;  /* NULL unless the pattern was read from a file */
	char *customer;      /* named group holding the customer (or the key for customer_map) */
	char *customer_map;  /* path of a CSV "key,cus_id" file, or NULL */
	char *value;         /* named group, or a constant number such as "1" */
	char *timestamp;     /* named group, or NULL: the time the line was read */
	char *timestamp_format;     /* strptime(3) format, or "epoch" */
	char *payload_customer_key; /* meter's customer_mapping.event_payload_key */
	char *payload_value_key;    /* meter's value_settings.event_payload_key */
	int64_t match_limit;        /* PCRE2 match limit of one match (pcre2_set_match_limit) */
	int64_t depth_limit;        /* PCRE2 backtracking depth limit (interpreter only) */
	int64_t heap_limit;         /* bytes of PCRE2 backtracking memory (interpreter only) */
	int64_t aggregate_s;        /* window length in seconds; 0: one meter event per line */
	int64_t aggregate_grace_s;  /* seconds a window stays open after its end */
	struct config_loc loc;      /* the [rule NAME] line */
	struct config_loc pattern_loc, customer_loc, customer_map_loc, value_loc, timestamp_loc,
	    timestamp_format_loc;
};

struct config {
	char *main_file; /* as given to config_load */
	struct config_agent agent;
	struct config_stripe stripe;
	struct config_source *sources;
	size_t n_sources;
	struct config_rule *rules; /* in the order read (main file, then drop-ins lexically) */
	size_t n_rules;
	char **files; /* every file read, in order; struct config_loc.file points into these */
	size_t n_files;
};

/* Reads `path`, then every "*.conf" in the include directory in strcmp(3) order of their names,
 * applies defaults and validates every value and cross-reference (a rule's source exists, names
 * are unique, numbers in bounds, required keys present). Does not compile patterns or read
 * customer maps: rule_set_new does that (and reports with the same FILE:LINE form).
 * Returns a new struct config, owned by the caller (config_free), or NULL with one line per error
 * ("FILE:LINE: message") in `err` (`errlen` bytes, CONFIG_ERR_MAX is enough). A missing include
 * directory is not an error; an unreadable one is. */
struct config *config_load(const char *path, char *err, size_t errlen);

/* config_load with the main file's content given as `text` (a NUL-terminated string) rather than
 * read from `name`; `name` stands for the file in errors ("NAME:LINE: message"), in
 * config.main_file and config.files, and as the directory relative paths are resolved against
 * (state_dir, customer_map, pattern_file, ...). No include directory is read: include_dir is
 * validated and set, its drop-ins are not looked for. For tests, which get a configuration
 * exactly as the agent would, defaults and all. Returns a new struct config (config_free), or
 * NULL with the errors in `err` (`errlen` bytes). */
struct config *config_load_text(const char *text, const char *name, char *err, size_t errlen);

/* Frees everything config_load or config_load_text returned: the text of every option, as the
 * option table describes them, the names, the arrays and the file names. NULL is a no-op. */
void config_free(struct config *cfg);

/* Returns the index of the source named `name`, or -1. */
long config_source_find(const struct config *cfg, const char *name);

/* What differs between two configurations in one section, option by option as the option
 * table stores them (strings byte for byte, numbers and choices by value; an option left out
 * counts as its default): `section` is "agent", "stripe", "source" or "rule", the last two the
 * [source NAME] or [rule NAME] named `name` in each. Writes the keys of the first `max` options
 * that differ to `keys` (may be NULL; static strings, such as "batch_lines") and returns how many
 * differ: 0 if none. Returns -1 if `section` is none of these or either configuration lacks the
 * named section. */
long config_changes(const struct config *a, const struct config *b, const char *section,
                    const char *name, const char **keys, size_t max);

/* Checks that `api_base` is https://..., or http://127.0.0.1[:port] (the only place TLS may be
 * skipped: a local Stripe double), and does not already end in an API version (/v1, /v2).
 * The same rule holds for meter_events_base. Returns 0 or -1 with the reason in `err`. */
int config_check_api_base(const char *api_base, char *err, size_t errlen);

/* Calls `cb` with each warning about a valid configuration that likely does not do what was
 * meant (a message with file and line, up to 1 KiB, valid during the call): `check` prints them,
 * `run` logs them at start. Returns how many there were. */
size_t config_warnings(const struct config *cfg, void (*cb)(const char *msg, void *ud), void *ud);

/* 1 if `api_base` is http://127.0.0.1[:port][/path] (plain HTTP allowed), else 0. */
int config_api_base_is_local(const char *api_base);

/* Parses "ADDRESS:PORT" as [agent] metrics_listen takes it: a numeric IPv4 address
 * (127.0.0.1:9464) or an IPv6 one in brackets ([::1]:9464), and a port from 0 to 65535 (0: any
 * free port). Fills *out (a struct sockaddr_in or sockaddr_in6) and *outlen (bytes), and sets
 * *loopback to 1 for an address of the loopback range (127.0.0.0/8, ::1), else 0. Returns 0, or
 * -1 with the reason in `err`. */
int config_parse_listen(const char *text, struct sockaddr_storage *out, socklen_t *outlen,
                        int *loopback, char *err, size_t errlen);

/* Checks a Connect account id for the Stripe-Account header: "acct_" followed by 1 to 250
 * letters and digits. Returns 0 or -1 with the reason in `err`. */
int config_check_account(const char *account, char *err, size_t errlen);

/* Writes the option table (section, key, type, default, bounds, help) to `out` (a FILE *): as
 * a Markdown table if `markdown` is non-zero, else as plain text. This is the documentation of
 * every option; docs/configuration.md is generated from it. */
void config_print_options(void *out, int markdown);

#endif
