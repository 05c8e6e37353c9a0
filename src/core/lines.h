/* lines: splits the bytes of a log file into lines, and accounts for every byte. A pure function
 * of the bytes fed (no I/O), shared by the agent (ingest/tail.c) and `test-rule`, so that both
 * make the same lines of the same file (docs/tailing.md, "Lines"):
 *
 * - A line ends at '\n'. Bytes after the last '\n' are not consumed: the checkpoint stays at
 *   the start of a partial last line until its newline comes.
 * - NUL bytes are no part of a line: they are counted (nul_bytes). A line's offset is that of
 *   its first byte that is not a NUL. A '\n' after nothing but NULs ends no line. A run of
 *   NULs before any byte of a line that reaches the end of the bytes fed is not consumed until
 *   some other byte follows it: a preallocated file's zeros are overwritten in place later, and
 *   the line written there must be read then. Nor is a line whose bytes are followed by NULs up
 *   to the end of the bytes fed.
 * - A line followed by a run of NULs and then by anything (another byte, its '\n', or, from
 *   lines_finish, the end of an archive) is torn: a crash left its end as NULs (the size was
 *   written, the data was not). It is not a line for the rules: it is called back as LINES_TORN
 *   and counted (torn_lines), its NULs in nul_bytes; the text after the NULs, up to the '\n',
 *   is a line of its own at the offset of its first byte, on the same line number. An
 *   over-long line is cut the same way, as LINES_LONG.
 * - A trailing '\r' is dropped.
 * - A line longer than max_line_length (bytes without its NULs and its trailing '\r') is
 *   skipped to its newline (or to the text after NULs that cut it) without being buffered and
 *   counted as a line and a long line; its NULs (after its first byte) are accounted to it, not
 *   to nul_bytes.
 *
 * The bytes may come in chunks of any size, in file order; the lines, their offsets and every
 * counter are the same however the file is cut. The splitter copies bytes only for a line that
 * spans chunks or holds NULs (at most max_line_length + 1 bytes); a line wholly inside a chunk is
 * passed as a pointer into it. */
#ifndef LOGMETER_LINES_H
#define LOGMETER_LINES_H

#include <stddef.h>
#include <stdint.h>

/* What ended at a '\n' (or, LINES_TORN and LINES_LONG, at the text after NULs that cut it). */
enum lines_kind {
	LINES_TEXT, /* a line, for the rules */
	LINES_LONG, /* longer than max_line_length: skipped, its bytes are not given */
	LINES_NUL,  /* nothing but NUL bytes before the '\n': no line (its NULs are counted) */
	LINES_TORN, /* text followed by NULs, its end missing: not for the rules (see above) */
};

struct lines_line {
	enum lines_kind kind;
	/* LINES_TEXT and LINES_TORN: the line's `len` bytes, NULs removed, its trailing '\r'
	 * dropped; not NUL-terminated, valid only during the callback. NULL for the other kinds. */
	const char *data;
	/* LINES_TEXT, LINES_TORN and LINES_LONG: its length in bytes without NULs and its trailing
	 * '\r' (of a long line continued with lines_resume_long: the bytes before the resume point
	 * are counted as if they held neither). 0 for LINES_NUL. */
	size_t len;
	/* File offset of its first byte that is not a NUL; of a LINES_NUL line, of its first NUL.
	 */
	int64_t offset;
	/* File offset just after its '\n' (of a line cut by NULs, of the first byte after them):
	 * the checkpoint once this line is accounted for. */
	int64_t end;
	/* 1 for the first '\n' the splitter sees, 2 for the next...: from offset 0, the line's
	 * number in the file as an editor shows it. A line cut by NULs and the text after them
	 * share the number of the '\n' that ends the text. */
	int64_t number;
};

/* Cumulative since lines_new; inside a callback they already include the line called back. */
struct lines_counts {
	int64_t consumed;   /* the checkpoint: every byte before it is accounted for */
	int64_t fed;        /* the offset just after the last byte fed */
	int64_t lines;      /* LINES_TEXT and LINES_LONG lines */
	int64_t long_lines; /* LINES_LONG lines */
	int64_t nul_bytes;  /* NUL bytes consumed, but not those inside a long line */
	int64_t torn_lines; /* LINES_TORN lines (not in `lines`) */
	int64_t newlines;   /* '\n' seen: every kind */
};

/* What the bytes after the checkpoint (fed - consumed of them) are. They all start at the
 * checkpoint. */
enum lines_pending {
	LINES_PENDING_NONE, /* nothing: consumed == fed */
	LINES_PENDING_NUL,  /* a run of NULs before any byte of a line */
	LINES_PENDING_LINE, /* a line without its '\n' yet (maybe with NULs before its end) */
	LINES_PENDING_LONG, /* an over-long line without its '\n' yet: see lines_resume_long */
};

struct lines;

/* Called for each '\n', in file order. Returns 0 to go on, or -1 to stop the feed (which then
 * returns -1 and leaves `err` to the callback). */
typedef int (*lines_fn)(const struct lines_line *line, void *ud);

/* A splitter whose first byte fed is at file offset `offset` (>= 0: a checkpoint, or 0), for
 * lines of at most `max_line_length` bytes (>= 1). Returns it (free with lines_free), or NULL
 * (out of memory, or invalid arguments: `err` says which). */
struct lines *lines_new(int64_t offset, size_t max_line_length, char *err, size_t errlen);

/* Frees the splitter. NULL is a no-op. */
void lines_free(struct lines *sp);

/* Right after lines_new: the line at `offset` is over-long, and the bytes from it up to
 * `resume` (> offset) hold no '\n' (an earlier splitter stopped there with
 * LINES_PENDING_LONG), so they are not fed again: the next byte fed is the one at `resume`.
 * This keeps a line of any length skipped across reads without reading it twice. Returns 0, or
 * -1 if bytes were already fed or resume <= offset. */
int lines_resume_long(struct lines *sp, int64_t resume);

/* Where the next read of an over-long line left pending (LINES_PENDING_LONG) goes on from, for
 * lines_resume_long: the offset just after its last byte that is not a NUL (fed, unless NULs end
 * the bytes fed), so that the NULs are fed again and what follows them can still cut it. */
int64_t lines_resume_point(const struct lines *sp);

/* Feeds the next `n` bytes of the file (`data` is only read, and not kept after the call),
 * calling `fn` for each '\n' (and each line torn by NULs) among them. Linear in n; allocates only
 * to keep a line that spans chunks. Returns 0, or -1 if `fn` returned -1 or memory ran out (`err`
 * says so); after -1 only lines_counts and lines_free may be called. */
int lines_feed(struct lines *sp, const char *data, size_t n, lines_fn fn, void *ud, char *err,
               size_t errlen);

/* The bytes fed are all there will ever be (an archive, which does not grow: docs/backfill.md):
 * a pending line is a finished line, called back as LINES_TEXT (LINES_LONG if over-long,
 * LINES_TORN if NULs follow its bytes) with
 * `end` the offset after the last byte fed and the `number` it would have had; pending NULs are
 * counted in nul_bytes. Afterwards consumed == fed and nothing is pending; `newlines` does not
 * change (there was no '\n'). Returns 0, or -1 if `fn` returned -1. NULL `sp` is a no-op. */
int lines_finish(struct lines *sp, lines_fn fn, void *ud);

/* The counters. The pointer stays valid until lines_free. */
const struct lines_counts *lines_counts(const struct lines *sp);

/* What the bytes after the checkpoint are. */
enum lines_pending lines_pending(const struct lines *sp);

#endif
