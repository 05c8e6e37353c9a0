/* libFuzzer harness: the line splitter (core/lines.c) on any bytes, cut into chunks where the
 * input says: the lines, their offsets and every counter must be the same however the bytes are
 * cut, and every byte fed before the checkpoint accounted for. The first byte sets
 * max_line_length (1..256), the second the chunk size (1..256); the rest is the file. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/lines.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	uint64_t hash; /* of every line's kind, offset, end and bytes, in order */
	int64_t last_end;
};

static int on_line(const struct lines_line *l, void *ud)
{
	struct seen *s = ud;
	const unsigned char *p = (const unsigned char *)l->data;

	/* A torn line has its bytes too (test-rule shows it), though no rule sees them. */
	if (l->offset < s->last_end || l->end <= l->offset ||
	    (l->kind == LINES_TEXT || l->kind == LINES_TORN) != (p != NULL))
		abort();
	s->last_end = l->end;
	s->hash =
	    s->hash * 31 + (uint64_t)l->kind * 7 + (uint64_t)l->offset * 13 + (uint64_t)l->end;
	for (size_t i = 0; p != NULL && i < l->len; i++) {
		if (p[i] == '\0' || p[i] == '\n')
			abort(); /* NULs are removed, newlines end lines */
		s->hash = s->hash * 131 + p[i];
	}
	return 0;
}

/* Splits `data` in chunks of `chunk` bytes; returns the counts and the hash of the lines. */
static struct lines_counts split(const uint8_t *data, size_t size, size_t max, size_t chunk,
                                 uint64_t *hash)
{
	struct seen s = {0, 0};
	struct lines_counts c;
	char err[256];
	struct lines *sp = lines_new(0, max, err, sizeof(err));

	if (sp == NULL)
		abort();
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (lines_feed(sp, (const char *)data + off, n, on_line, &s, err, sizeof(err)) != 0)
			abort();
	}
	c = *lines_counts(sp);
	if (c.fed != (int64_t)size || c.consumed > c.fed || c.long_lines > c.lines ||
	    c.torn_lines < 0)
		abort();
	lines_free(sp);
	*hash = s.hash;
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lines_counts a, b;
	uint64_t ha, hb;
	size_t max, chunk;

	if (size < 2)
		return 0;
	max = (size_t)data[0] + 1;
	chunk = (size_t)data[1] + 1;
	data += 2;
	size -= 2;
	a = split(data, size, max, size > 0 ? size : 1, &ha);
	b = split(data, size, max, chunk, &hb);
	if (memcmp(&a, &b, sizeof(a)) != 0 || ha != hb)
		abort();
	return 0;
}
