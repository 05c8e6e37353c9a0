/* spool_repair: checking a spool database file and rebuilding a damaged one from every row that
 * can still be read (`logmeter spool check`, `logmeter spool recover`). See docs/spool.md. */
#ifndef LOGMETER_SPOOL_REPAIR_H
#define LOGMETER_SPOOL_REPAIR_H

#include <stddef.h>
#include <stdint.h>

/* Calls back with one line of text per problem found. */
typedef void (*spool_problem_cb)(const char *problem, void *ud);

/* What spool_check found besides problems. */
struct spool_check_info {
	int64_t version;                          /* PRAGMA user_version; -1 if unreadable */
	int64_t pending, delivered, dead, unsure; /* -1 if they could not be counted */
	int64_t files; /* file records, -1 if they could not be counted */
};

/* Checks `state_dir`/spool.db without changing it (a read-only connection): that it is an SQLite
 * database with a schema version this logmeter understands, PRAGMA integrity_check (every page,
 * index and constraint; https://www.sqlite.org/pragma.html#pragma_integrity_check) and PRAGMA
 * foreign_key_check. Reports each problem through `cb` (at most 100 from integrity_check).
 * Returns 0 if the spool is sound, 1 if problems were reported, -1 if it could not be checked at
 * all (no such file: `err`). */
int spool_check(const char *state_dir, spool_problem_cb cb, void *ud, struct spool_check_info *info,
                char *err, size_t errlen);

struct spool_recover_stats {
	int64_t pages;                /* pages in the old database (after its WAL) */
	int64_t pages_unreadable;     /* missing or not a b-tree page */
	int64_t pages_free;           /* on the free-page list, not read */
	int64_t wal_frames;           /* committed WAL frames applied */
	int64_t meta, files;          /* rows recovered */
	int64_t events[4];            /* by state (enum event_state): pending, delivered, dead,
	                                 unsure */
	int64_t cells_skipped;        /* cells that did not decode as a spool row */
	int64_t duplicates;           /* older copies of a row dropped for a newer one */
	int64_t lost_files;           /* placeholder file records made for orphaned events */
	int64_t outcomes_lost;        /* meter events of windows whose rows of outcomes were lost,
	                                 made unsure */
	int64_t windows_open;         /* aggregation windows recovered, still to be sent */
	int64_t windows_closed;       /* and those closed (their meter events made) */
	int64_t window_lines;         /* lines of the open windows recovered */
	int64_t window_lines_counted; /* lines the open windows' totals count */
	int64_t windows_lost;         /* windows whose rows were lost (their index entries or
	                                 lines name them) */
	int64_t windows_lost_open;    /* of those, with lines and no meter event: usage lost */
	int64_t windows_lost_unknown; /* of those, with neither: billed and pruned, or lines lost */
	int64_t window_lines_lost;    /* surviving lines of those, dropped, never billed */
	char windows_lost_detail[4096]; /* their customers and lines, as text ("" if none) */
	int instance_recovered;         /* the instance id was among the recovered rows */
	char old_path[4096 + 64];       /* where the old database was kept */
};

/* Rebuilds `state_dir`/spool.db from every row it can read. Refuses a spool that another process
 * has open (SQLite's POSIX locks on the file, https://www.sqlite.org/lockingv3.html), one that is
 * not an SQLite database, and one whose schema version is newer than this logmeter's. Reads the
 * old file page by page (with the committed frames of its WAL applied, checksums verified as
 * https://www.sqlite.org/fileformat2.html#the_write_ahead_log describes), so rows on pages the
 * b-tree no longer reaches are found too: a table's rows are told apart by their column count and
 * types; pages on the free-page list are skipped; of two copies of a row the one with the newer
 * `updated` time wins. Events whose file record is lost get a placeholder record (state "gone").
 * The new database is written in a directory beside it, synced, and then takes the name
 * spool.db; the old one (and its WAL) is kept as spool.db.corrupt-<now> (-wal), or, if `sound`
 * (the caller's spool_check found no problem), as spool.db.before-recover-<now> (-wal). Aggregation
 * windows whose rows were lost are counted (windows_lost*), as far as the entries of the windows'
 * unique index or their lines name them, and logged as a warning. Returns 0 and fills *st, or -1
 * (`err`; the old database is then still in place, unchanged). */
int spool_recover(const char *state_dir, int64_t now, int sound, struct spool_recover_stats *st,
                  char *err, size_t errlen);

/* The sentence that says which aggregation windows spool_recover found lost (st->windows_lost >
 * 0), written into `out` (`outlen` bytes, cut if need be); returns `out`. recover logs it, and
 * `spool recover` prints it. */
const char *spool_recover_windows_lost_text(const struct spool_recover_stats *st, char *out,
                                            size_t outlen);

/* The sentence that says how many meter events of aggregation windows spool_recover made
 * unsure because their rows of outcomes were lost (st->outcomes_lost > 0), written into `out`
 * (`outlen` bytes, cut if need be); returns `out`. recover logs it, and `spool recover` prints
 * it. */
const char *spool_recover_outcomes_lost_text(const struct spool_recover_stats *st, char *out,
                                             size_t outlen);

#endif
