/* lines: the line splitter (lines.h gives the rules).
 *
 * Speed. The common line (no NUL, wholly inside the chunk) costs one memchr for its '\n' and a
 * few branches: the next NUL of the chunk is found once with memchr and looked for again only
 * after it is passed, so a chunk without NULs is scanned for them once. A line's bytes are
 * copied only when it spans chunks: NULs end a line's bytes (what follows them tears it), so no
 * line is made of bytes from both sides of a run of NULs.
 *
 * The length limit. A line is over-long when its bytes without NULs and without its trailing
 * '\r' are more than max_line_length. While a line is being read its last byte may yet be that
 * '\r', so max_line_length + 1 bytes are allowed as long as the last one seen is a '\r'; one
 * more byte, or a last byte that is not '\r', decides it. That decision does not depend on where
 * the chunks are cut, nor do the NULs counted: those after a line's bytes are counted when it
 * ends (torn) within the limit, those before its first byte when that byte comes (or the '\n').
 * Nor does a tear: it is decided by the first byte after the NULs, wherever that byte is. */
#include "core/lines.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define LINES_BUF_MIN 256

struct lines {
	size_t max; /* max_line_length */
	struct lines_counts c;
	int64_t rec_start; /* offset just after the last '\n' (or the first offset) */
	/* The line being read: the offset of its first byte that is not a NUL (-1 before it), its
	 * bytes without NULs so far, whether the last of them is '\r', and the run of NULs after
	 * its last byte (counted when it ends: any byte but a NUL decides that it is torn). */
	int64_t line_off;
	size_t line_len;
	int last_cr;
	int64_t line_nuls;
	/* NULs before any byte of a line that reached the end of the bytes fed: not consumed
	 * until something else follows them. */
	int64_t pend_nuls;
	/* NULs of this record were consumed before any other byte: a '\n' now ends no line. */
	int nul_only;
	int skipping; /* the line is over-long: its bytes are not kept */
	/* The line's bytes so far (line_len of them, unless skipping): in the chunk being fed at
	 * `direct` while they are contiguous there, else in buf. */
	const char *direct;
	char *buf;
	size_t cap;
};

struct lines *lines_new(int64_t offset, size_t max_line_length, char *err, size_t errlen)
{
	struct lines *sp;

	if (offset < 0 || max_line_length == 0 || max_line_length > SIZE_MAX / 2) {
		err_set(err, errlen, "lines_new: invalid arguments");
		errno = EINVAL;
		return NULL;
	}
	sp = calloc(1, sizeof(*sp));
	if (sp == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	sp->max = max_line_length;
	sp->c.consumed = sp->c.fed = sp->rec_start = offset;
	sp->line_off = -1;
	return sp;
}

void lines_free(struct lines *sp)
{
	if (sp == NULL)
		return;
	free(sp->buf);
	free(sp);
}

int lines_resume_long(struct lines *sp, int64_t resume)
{
	if (sp == NULL || sp->c.fed != sp->c.consumed || sp->line_off >= 0 || sp->pend_nuls > 0 ||
	    sp->c.newlines > 0 || resume <= sp->c.consumed) {
		errno = EINVAL;
		return -1;
	}
	sp->line_off = sp->c.consumed;
	sp->line_len = (size_t)(resume - sp->c.consumed);
	sp->skipping = 1;
	sp->c.fed = resume;
	return 0;
}

int64_t lines_resume_point(const struct lines *sp)
{
	return sp->c.fed - (sp->line_off >= 0 ? sp->line_nuls : 0);
}

const struct lines_counts *lines_counts(const struct lines *sp)
{
	return &sp->c;
}

enum lines_pending lines_pending(const struct lines *sp)
{
	if (sp->c.consumed == sp->c.fed)
		return LINES_PENDING_NONE;
	if (sp->line_off < 0)
		return LINES_PENDING_NUL;
	return sp->skipping ? LINES_PENDING_LONG : LINES_PENDING_LINE;
}

/* Room for `need` bytes in buf (need <= max + 1). Returns 0 or -1. */
static int reserve(struct lines *sp, size_t need, char *err, size_t errlen)
{
	size_t cap = sp->cap < LINES_BUF_MIN ? LINES_BUF_MIN : sp->cap;
	char *b;

	if (need <= sp->cap)
		return 0;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > sp->max + 1 && need <= sp->max + 1)
		cap = sp->max + 1;
	b = realloc(sp->buf, cap);
	if (b == NULL) {
		err_set(err, errlen, "out of memory for a line of %zu bytes", need);
		return -1;
	}
	sp->buf = b;
	sp->cap = cap;
	return 0;
}

/* Moves the line's bytes from the chunk into buf, before the chunk goes away or before bytes
 * that are not contiguous with them are added. Returns 0 or -1. */
static int keep(struct lines *sp, char *err, size_t errlen)
{
	if (sp->direct == NULL)
		return 0;
	if (reserve(sp, sp->line_len, err, errlen) < 0)
		return -1;
	memcpy(sp->buf, sp->direct, sp->line_len);
	sp->direct = NULL;
	return 0;
}

/* Adds `k` (> 0) bytes of the line, none of them NUL or '\n', starting at file offset `off`.
 * Returns 0 or -1. */
static int add(struct lines *sp, const char *s, size_t k, int64_t off, char *err, size_t errlen)
{
	size_t nw = sp->line_len + k;

	if (sp->line_off < 0)
		sp->line_off = off;
	sp->last_cr = s[k - 1] == '\r';
	if (sp->skipping) {
		sp->line_len = nw;
		return 0;
	}
	if (nw > sp->max + 1 || (nw == sp->max + 1 && !sp->last_cr)) {
		sp->skipping = 1;
		sp->direct = NULL;
	} else if (sp->line_len == 0) {
		sp->direct = s;
	} else {
		if (keep(sp, err, errlen) < 0 || reserve(sp, nw, err, errlen) < 0)
			return -1;
		memcpy(sp->buf + sp->line_len, s, k);
	}
	sp->line_len = nw;
	return 0;
}

/* The end of a run of NULs starting at p[i]: the index of the first byte that is not NUL, or
 * n. Eight bytes at a time, for the long runs of sparse and preallocated files. */
static size_t nul_run_end(const char *p, size_t i, size_t n)
{
	while (n - i >= 8) {
		uint64_t w;

		memcpy(&w, p + i, sizeof(w));
		if (w != 0)
			break;
		i += 8;
	}
	while (i < n && p[i] == '\0')
		i++;
	return i;
}

/* The NULs p[i] .. p[q - 1], at file offset base + i; q == n if they reach the end of the bytes
 * fed. */
static void nuls(struct lines *sp, int64_t base, size_t i, size_t q, size_t n)
{
	if (sp->line_off >= 0) {
		sp->line_nuls += (int64_t)(q - i);
	} else if (q == n) {
		sp->pend_nuls += (int64_t)(q - i);
	} else {
		sp->c.nul_bytes += (int64_t)(q - i) + sp->pend_nuls;
		sp->pend_nuls = 0;
		sp->c.consumed = base + (int64_t)q;
		sp->nul_only = 1;
	}
}

/* The record that ends just before file offset `end` (after its '\n', or, from lines_finish,
 * at the end of the bytes, or at the first byte after the NULs that tore it): accounts for it and
 * calls back. */
static int end_record(struct lines *sp, int64_t end, int64_t number, lines_fn fn, void *ud)
{
	struct lines_line l = {0};
	int64_t nl = end - 1;

	l.number = number;
	l.end = end;
	if (sp->skipping) {
		/* Its NULs are its bytes: skipped with it, not counted as NUL bytes. */
		l.kind = LINES_LONG;
		l.offset = sp->line_off;
		l.len = sp->line_len - (size_t)sp->last_cr;
		sp->c.lines++;
		sp->c.long_lines++;
	} else if (sp->line_off < 0 && sp->nul_only) {
		l.kind = LINES_NUL;
		l.offset = sp->rec_start;
	} else {
		/* Text then NULs (then its '\n', the next text or the end of an archive): its end
		 * may be what the NULs stand for. */
		l.kind = sp->line_nuls > 0 ? LINES_TORN : LINES_TEXT;
		l.offset = sp->line_off >= 0 ? sp->line_off : nl;
		l.len = sp->line_len - (size_t)sp->last_cr;
		l.data = sp->direct != NULL ? sp->direct : sp->buf != NULL ? sp->buf : "";
		if (l.kind == LINES_TEXT)
			sp->c.lines++;
		else
			sp->c.torn_lines++;
		sp->c.nul_bytes += sp->line_nuls;
	}
	sp->c.consumed = sp->rec_start = end;
	sp->line_off = -1;
	sp->line_len = 0;
	sp->line_nuls = 0;
	sp->last_cr = sp->nul_only = sp->skipping = 0;
	sp->direct = NULL;
	return fn(&l, ud);
}

/* The byte at file offset `off`, neither NUL nor '\n', comes after a run of NULs inside a line:
 * the line ends there, torn (or over-long), and the byte starts a line of its own on the same
 * line number. */
static int torn(struct lines *sp, int64_t off, lines_fn fn, void *ud)
{
	return end_record(sp, off, sp->c.newlines + 1, fn, ud);
}

/* The '\n' at file offset `nl`. */
static int newline(struct lines *sp, int64_t nl, lines_fn fn, void *ud)
{
	sp->c.newlines++;
	return end_record(sp, nl + 1, sp->c.newlines, fn, ud);
}

int lines_finish(struct lines *sp, lines_fn fn, void *ud)
{
	switch (sp != NULL && fn != NULL ? lines_pending(sp) : LINES_PENDING_NONE) {
	case LINES_PENDING_NONE:
		return 0;
	case LINES_PENDING_NUL:
		sp->c.nul_bytes += sp->pend_nuls;
		sp->pend_nuls = 0;
		sp->c.consumed = sp->rec_start = sp->c.fed;
		return 0;
	case LINES_PENDING_LINE:
	case LINES_PENDING_LONG:
		break;
	}
	/* Its bytes are in buf: lines_feed keeps an open line's bytes before it returns. */
	return end_record(sp, sp->c.fed, sp->c.newlines + 1, fn, ud);
}

int lines_feed(struct lines *sp, const char *data, size_t n, lines_fn fn, void *ud, char *err,
               size_t errlen)
{
	const char *p = data, *hit;
	int64_t base;
	size_t i = 0, nl, nul;

	if (sp == NULL || (data == NULL && n > 0) || fn == NULL) {
		err_set(err, errlen, "lines_feed: invalid arguments");
		errno = EINVAL;
		return -1;
	}
	if (n == 0)
		return 0;
	base = sp->c.fed;
	sp->c.fed += (int64_t)n;
	if (sp->pend_nuls > 0 && p[0] != '\0') {
		/* The NULs that ended the last chunk are followed by something: consumed now. */
		sp->c.nul_bytes += sp->pend_nuls;
		sp->pend_nuls = 0;
		sp->c.consumed = base;
		sp->nul_only = 1;
	}
	/* The next '\n' and the next NUL at or after i (n if none), each looked for again only once
	 * i has passed it. */
	hit = memchr(p, '\0', n);
	nul = hit != NULL ? (size_t)(hit - p) : n;
	hit = memchr(p, '\n', n);
	nl = hit != NULL ? (size_t)(hit - p) : n;
	while (i < n) {
		if (nl < i) {
			hit = memchr(p + i, '\n', n - i);
			nl = hit != NULL ? (size_t)(hit - p) : n;
		}
		if (nul < nl) {
			size_t q;

			if (nul > i && sp->line_nuls > 0 && torn(sp, base + (int64_t)i, fn, ud) < 0)
				return -1;
			if (nul > i && add(sp, p + i, nul - i, base + (int64_t)i, err, errlen) < 0)
				return -1;
			q = nul_run_end(p, nul, n);
			nuls(sp, base, nul, q, n);
			i = q;
			hit = i < n ? memchr(p + i, '\0', n - i) : NULL;
			nul = hit != NULL ? (size_t)(hit - p) : n;
			continue;
		}
		if (nl > i && sp->line_nuls > 0 && torn(sp, base + (int64_t)i, fn, ud) < 0)
			return -1;
		if (nl > i && add(sp, p + i, nl - i, base + (int64_t)i, err, errlen) < 0)
			return -1;
		if (nl == n)
			break;
		if (newline(sp, base + (int64_t)nl, fn, ud) < 0)
			return -1;
		i = nl + 1;
	}
	/* A line still open points into this chunk: keep its bytes. */
	return keep(sp, err, errlen);
}
