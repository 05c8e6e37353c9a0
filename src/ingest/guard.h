/* guard: what a writable log directory or a hostile log line can do to the ingest half, and the
 * count of what it refused (docs/security.md).
 *
 * Log directories are not trusted: whoever can create a file in one can put a symlink there.
 * A log file is opened through guard_open: a symlink that the source's glob matched (the file,
 * or a directory that a wildcard matched) is followed only with [source] follow_symlinks = yes,
 * and even then a link that leads into the state directory, the main configuration file's
 * directory, the include directory or the systemd credentials directory is refused; a file that
 * is the API key file, a configuration file, a customer map, a pattern file or a file of the
 * spool is refused however it was reached (a hard link). The checks are made on the open
 * descriptor (its real path from /proc/self/fd), so a link swapped between a check and the
 * open changes nothing.
 *
 * Log lines are not trusted either: a line that hits one of PCRE2's limits (rule.h) is counted
 * here per rule and warned about at most once a minute per rule.
 *
 * The counts are kept for the life of the agent (across reloads) and published in the guard
 * region of STATE_DIR/agent.state (statefile.h) for `logmeter status`. Used by the ingest
 * thread only (and by `check`, which opens nothing for good). */
#ifndef LOGMETER_GUARD_H
#define LOGMETER_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "core/rule.h"

struct guard;

/* The files and directories that `cfg` (borrowed during the call only) makes logmeter's own:
 * see above. Returns the guard (caller frees), or NULL with the reason in `err`. */
struct guard *guard_new(const struct config *cfg, char *err, size_t errlen);

/* A reload: the protected files and directories of `cfg` replace the old ones; the counts and
 * the publishing go on. Returns 0, or -1 (nothing changed) with the reason in `err`. */
int guard_reconfigure(struct guard *g, const struct config *cfg, char *err, size_t errlen);

/* Writes the counts one last time (if published) and frees. NULL is a no-op. */
void guard_free(struct guard *g);

/* From now on keeps the guard region of STATE_DIR/agent.state up to date. Call it once this
 * process holds the state directory's lock (as space_publish). A failure is logged, not fatal. */
void guard_publish(struct guard *g);

/* Writes the counts if they changed since the last write. Cheap when they did not: call it
 * after each read of a file. NULL is a no-op. */
void guard_flush(struct guard *g);

/* Opens log file `path` of source `src` for reading (O_RDONLY, O_NONBLOCK so that a FIFO does
 * not block, close-on-exec), with the rules above. Returns the descriptor (caller closes), or
 * -1 with errno set and the reason in `err`: a refusal sets errno to EPERM and *refused to 1
 * (may be NULL), counted once per path (the first 4096 paths refused are remembered; past them
 * each refusal counts); any other failure is open(2)'s errno. A NULL guard applies the symlink
 * rule of the source alone, protects nothing and counts nothing (unit tests). */
int guard_open(struct guard *g, const struct config_source *src, const char *path, int *refused,
               char *err, size_t errlen);

/* A line of `path` at byte `offset` hit PCRE2 limit `limit` of rule `rule` (its value in the
 * warning): counted for that rule, warned about at most once a minute per rule (monotonic
 * clock). NULL `g` is a no-op. */
void guard_limit_hit(struct guard *g, const struct config_rule *rule, enum rule_limit limit,
                     const char *path, int64_t offset);

/* A file was gone when the agent started (deleted, or moved out of its directory while
 * logmeter was stopped): whatever was written to it after its checkpoint was never read. Counted
 * (with the time, for `status --since`) so that `status` turns degraded; the caller logs it. NULL
 * `g` is a no-op. */
void guard_gone_unread(struct guard *g);

/* The tailing warnings counted for `status` (docs/tailing.md); each is logged by its caller. */
enum guard_tailing {
	/* A file last seen empty whose copy (copytruncate) was found by name, with no record,
	 * and read as its first lines: content cannot tell it from another file of that name. */
	GUARD_TAIL_EMPTY_COPY,
	/* A file rotated while logmeter was stopped and never read, read to its end as new. */
	GUARD_TAIL_ROTATED_STOPPED,
	/* A file whose end is a hole (sparse), not read until data follows it. */
	GUARD_TAIL_SPARSE,
	/* A file beside one rotated while logmeter was stopped, named after it but not taken for
	 * a rotation never read (its name is none logrotate gives, or it holds a piece of the
	 * rotated file): left unread. */
	GUARD_TAIL_NOT_ROTATION,
	/* A file another source's record (configured or not any more) read up to a checkpoint,
	 * gone on from there under the source that opened it (docs/tailing.md, "One file, one
	 * source"): its rules, not that source's, make the events from there. */
	GUARD_TAIL_TAKEN_OVER,
	GUARD_TAILINGS
};

/* The name of a tailing warning in the state file and in `status --json`: "empty_copies",
 * "rotated_stopped", "sparse_holes", "not_rotations", "taken_over". Static storage. */
const char *guard_tailing_name(enum guard_tailing what);

/* The longest path the state file keeps for a tailing warning (escaped, log_escape), NUL
 * included: a longer one is cut, and ends in GUARD_TAIL_CUT. */
#define GUARD_TAIL_PATH 512
#define GUARD_TAIL_CUT " [cut]"

/* Counts tailing warning `what` about file `path` (the last one named is kept, escaped and cut to
 * GUARD_TAIL_PATH with GUARD_TAIL_CUT at its end, with the time), written with the next
 * guard_flush. NULL `g` is a no-op. */
void guard_tailing(struct guard *g, enum guard_tailing what, const char *path);

/* A file the glob of a source matches is read by another source (the first in configuration
 * order that matched it, or the one that read it first: docs/tailing.md), so this source does not
 * open it: counted once per path, as a refusal (the first 4096 paths remembered), so that
 * `status` turns degraded. The caller logs it. NULL `g` is a no-op. */
void guard_shared(struct guard *g, const char *path);

/* A reload changed the sources: the files left to another source are counted anew by the scan
 * that follows (watch_reconfigure), so that a configuration that no longer makes any does not
 * keep `status` degraded. NULL `g` is a no-op. */
void guard_shared_reset(struct guard *g);

/* The counts, for tests and `status`. */
struct guard_counts {
	int64_t refused_links;     /* symlinks refused by follow_symlinks = no */
	int64_t refused_protected; /* files refused as logmeter's own */
	int64_t limit_lines;       /* lines that hit a PCRE2 limit, all rules */
	int64_t limit_last;  /* when the last of them was read, seconds since the epoch; 0: none */
	int64_t gone_unread; /* files gone while logmeter was stopped (guard_gone_unread) */
	int64_t gone_last;   /* when the last of them was found, seconds since the epoch; 0 */
	int64_t tailing[GUARD_TAILINGS];      /* per enum guard_tailing (guard_tailing) */
	int64_t tailing_last[GUARD_TAILINGS]; /* when the last was, seconds since the epoch; 0 */
	int64_t shared_files; /* files left to another source whose glob matches them too */
};

/* The counts of `g` (zeros for NULL). */
struct guard_counts guard_counts(const struct guard *g);

/* What the guard region of STATE_DIR/agent.state says, for `logmeter status` and the metrics
 * (report/facts.h). Rules past GUARD_STATUS_RULES are left out of `rules` and counted in
 * `rules_cut` (the totals count their lines), as are those the agent had no room for: the region
 * holds the counts first, then one line per rule that hit a limit, then the path each tailing
 * warning last named, each whole or left out. */
#define GUARD_STATUS_RULES 64

struct guard_rule_hits {
	char rule[128];
	int64_t hits[RULE_LIMITS]; /* lines per enum rule_limit (RULE_LIMIT_NONE: 0) */
};

struct guard_status {
	int found; /* the region was written */
	struct guard_counts counts;
	/* The file the last of each tailing warning named, escaped (log_escape); "" if none. */
	char tailing_path[GUARD_TAILINGS][GUARD_TAIL_PATH];
	struct guard_rule_hits rules[GUARD_STATUS_RULES];
	size_t n_rules;
	/* Rules that hit a limit but are not in `rules`: the agent's 4 KiB region had no room for
	 * them ("rules_cut N"), or past GUARD_STATUS_RULES. Their lines are in the totals. */
	int64_t rules_cut;
};

/* Reads the guard region of `state_dir`'s agent.state into *out (found = 0 if never written).
 * Returns 0, or -1 if the file exists but cannot be read (the reason in `err`). */
int guard_status_read(const char *state_dir, struct guard_status *out, char *err, size_t errlen);

#endif
