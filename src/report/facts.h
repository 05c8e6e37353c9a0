/* facts: everything `logmeter status` says, gathered once from the spool, the running agent's
 * live state (STATE_DIR/agent.state) and the file system, then written out as text (`status`),
 * as JSON (`status --json`, schema FACTS_SCHEMA_VERSION: docs/status-json.md) and as Prometheus
 * metrics (the metrics endpoint, docs/metrics.md). One collection feeds all three, so they
 * never disagree; the agent gathers anew at each scrape. */
#ifndef LOGMETER_FACTS_H
#define LOGMETER_FACTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "core/event.h"
#include "ingest/guard.h"
#include "ingest/space.h"
#include "send/sender.h"
#include "store/spool.h"

/* The version of the JSON document of `status --json`: raised when a field changes meaning or
 * goes away (adding fields does not raise it). docs/status-json.md. */
#define FACTS_SCHEMA_VERSION 1

/* facts_new's `since` when no time was asked for: dead letters do not count for health. */
#define FACTS_NO_SINCE (-1)

/* Problems that make the health "degraded", at most this many kept. */
#define FACTS_PROBLEMS_MAX 8

/* Open aggregation windows listed by status, at most (the rest are counted). */
#define FACTS_WINDOWS_MAX 20

/* A file record, with what the file system says of it now. */
struct facts_file {
	int64_t id;
	char *path;     /* malloc'd: where the file is now (found by inode in the recorded path's
	                   directory if it was renamed since logmeter last saw it), else the
	                   recorded path */
	char *recorded; /* malloc'd: the path in the spool when it differs from `path`, else NULL */
	char source[128];
	char uid[SPOOL_UID_MAX];
	uint64_t dev, ino;
	enum spool_file_state state;
	int64_t offset; /* checkpoint, bytes */
	int64_t size;   /* bytes: the live size when the path still leads to the file, else the
	                   size at the last commit */
	int64_t lag;    /* size - offset when positive, else 0: bytes not read yet; 0 when
	                   `left_to` is set */
	/* The source of another record of the same file (device and inode) that read further and
	 * changed since: this record was left behind (one file, one source: docs/tailing.md), its
	 * lines from its checkpoint on are that source's. "" if none. */
	char left_to[128];
	int64_t updated; /* when the record last changed, seconds since the epoch */
	struct spool_counters counters;
};

/* A configured source and how many files its glob matches now (not excluded, regular). */
struct facts_source {
	char name[128];
	char path[4096];    /* its glob */
	int64_t files;      /* files it matches now, as seen by the user running status */
	char problem[8192]; /* when it matches none: why (path_glob_nomatch); else "" */
};

/* The events of one rule in the spool, by enum event_state. */
struct facts_rule {
	char rule[EVENT_RULE_MAX];
	int64_t n[EVENT_UNSURE + 1];
};

struct facts {
	int64_t now;         /* seconds since the epoch, when gathered */
	enum config_api api; /* the configuration's [stripe] api */
	const char *spool;   /* the spool's path, owned by the handle given to facts_new */
	char instance[128];
	struct spool_counts counts;
	int64_t oldest_pending; /* timestamp (s since the epoch) of the oldest pending event; 0 */
	/* While sending is paused, or after a run that stopped so: the pause's reason (the sender's
	 * detail, cut to fit); else the last error of a pending, dead or unsure event; "": none. */
	char last_error[EVENT_ERROR_MAX];
	int64_t since;      /* the caller's time for dead letters (s since the epoch); 0: none */
	int64_t dead_since; /* dead letters since then */
	/* What `spool recover` lost for good (spool_recover_loss): when the last recovery that lost
	 * the usage of aggregation windows ran (0: none), how many windows, how many lines found,
	 * how many lost windows left no trace of their usage. */
	int64_t recover_loss_when, recover_loss_windows, recover_loss_lines, recover_loss_unknown;

	struct space_status ingest; /* found = 0: no state file */
	char ingest_err[256];       /* why the state file could not be read; "" */
	/* A running thread whose live state is older than stale_after (seconds; the
	 * configuration's): frozen, or hung. Not said of a state without its time (an older
	 * agent). */
	int64_t stale_after;
	int ingest_stale, sender_stale;
	int usage_known;
	struct spool_usage usage;
	char usage_err[256];
	int64_t max_spool_bytes; /* the configuration's, 0: none */
	int fs_known;
	int64_t fs_free; /* bytes free for the spool's file system (f_bavail) */

	struct guard_status guard; /* found = 0: never written */
	char guard_err[256];       /* why it could not be read; "" */

	struct sender_status sender;
	char sender_err[256];
	/* When the sender is not running: its rate worked out from the configuration (rate_known
	 * 0: the key cannot be read here, rate_why says so). */
	int rate_known;
	double rate_max;
	char rate_why[700];

	struct facts_rule *rules;
	size_t n_rules;
	struct facts_file *files; /* by source, then record id */
	size_t n_files;
	struct facts_source *sources; /* the configuration's, in its order */
	size_t n_sources;

	/* The open aggregation windows: how many, and the first FACTS_WINDOWS_MAX by start. */
	int64_t windows_open;
	int64_t window_lines;     /* lines in the open windows: usage not yet a meter event */
	int64_t window_due_first; /* the earliest close_after of the open windows; 0: none */
	struct spool_window windows[FACTS_WINDOWS_MAX];
	size_t n_windows;

	/* Health: degraded when reading is paused, sending is paused (the key refused, or answers
	 * that are not Stripe's), a running thread does not answer (its live state is stale), dead
	 * letters came since `since` (since_set: 0 counts them all), no agent runs while lines or
	 * events wait, or lines were lost (a PCRE2 limit, a refused symlink, a file gone unread):
	 * docs/status-json.md. */
	int since_set;
	int degraded;
	char problems[FACTS_PROBLEMS_MAX][600];
	size_t n_problems;
};

/* Gathers the facts of the spool `sp` (any handle, read-only is enough; borrowed) and of
 * cfg->agent.state_dir, at wall-clock time `now`, counting the dead letters since `since`
 * (seconds since the epoch, 0 included; FACTS_NO_SINCE: none asked, they do not count).
 * What cannot be read
 * of the live state or the file system is kept as its error text; what cannot be read of the
 * spool fails. Returns the facts (facts_free), or NULL with the reason in `err`. */
struct facts *facts_new(const struct config *cfg, struct spool *sp, int64_t now, int64_t since,
                        char *err, size_t errlen);

/* Frees everything facts_new made. NULL is a no-op. */
void facts_free(struct facts *f);

/* Pending events the running sender has not read from the spool yet: the pending count less
 * its four buckets (in flight, retrying, held, queued); 0 if it does not run. */
int64_t facts_not_loaded(const struct facts *f);

/* Writes the text of `logmeter status` to `out` (README, "Commands"). */
void facts_print_text(FILE *out, const struct facts *f);

/* Writes the JSON document of `logmeter status --json` (docs/status-json.md) to `out`, with a
 * final newline. Returns 0, or -1 (out of memory, or a write error) with the reason in `err`. */
int facts_print_json(FILE *out, const struct facts *f, char *err, size_t errlen);

/* When the facts cannot be gathered (no spool yet, a spool that cannot be read): writes to `out`
 * the JSON document that says so, so that a health check parsing the output gets JSON: the
 * schema_version, `now` (seconds since the epoch), "error": `why`, and a degraded health with
 * `why` as its problem. Returns 0, or -1 on a write error. */
int facts_print_json_error(FILE *out, int64_t now, const char *why);

/* Writes the Prometheus text exposition format 0.0.4 of the facts to `out` (docs/metrics.md):
 * per-file series for at most `max_files` files being read (by source, then record), every
 * file in the per-source totals. Returns 0, or -1 on a write error. */
int facts_print_metrics(FILE *out, const struct facts *f, size_t max_files);

#endif
