/* overlap: files the globs of two sources both match (overlap.h, docs/tailing.md). */
#include "ingest/overlap.h"

#include <stdlib.h>
#include <string.h>

static int cmp_file(const void *a, const void *b)
{
	const struct overlap_file *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	if (x->source != y->source)
		return x->source < y->source ? -1 : 1;
	return strcmp(x->path, y->path);
}

size_t overlap_find(struct overlap_file *v, size_t n, overlap_cb cb, void *ud)
{
	size_t calls = 0;

	if (v == NULL || n < 2)
		return 0;
	qsort(v, n, sizeof(*v), cmp_file);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		/* v[i] is the first source's entry of its file; each later source's first entry
		 * follows it, after that source's other paths to the file. */
		for (; j < n && v[j].dev == v[i].dev && v[j].ino == v[i].ino; j++)
			if (v[j].source != v[i].source && v[j].source != v[j - 1].source) {
				if (cb != NULL)
					cb(&v[i], &v[j], ud);
				calls++;
			}
		i = j;
	}
	return calls;
}
