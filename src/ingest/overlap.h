/* overlap: the files that the globs of two sources both match. The agent reads a file under one
 * source only (watch.c: the source that read it first, else the first in configuration order
 * whose glob matches it), or each of its lines would be billed once per source; so the rules of
 * the other source make nothing of it, and `check` refuses such a configuration
 * (docs/tailing.md). A pure function of the matches it is given: no I/O. */
#ifndef LOGMETER_OVERLAP_H
#define LOGMETER_OVERLAP_H

#include <stddef.h>
#include <stdint.h>

/* One file a source's glob matches. */
struct overlap_file {
	uint64_t dev, ino; /* the file's identity: st_dev and st_ino of the file opened (stat(2)) */
	size_t source;     /* the source's index in config.sources: configuration order */
	const char *path;  /* as the glob gave it; borrowed */
};

/* Called once per file and later source: `first` is the entry of the first source (in
 * configuration order) whose glob matches the file, the one that reads it; `other` the first
 * entry (by path) of a later source whose glob matches it too. */
typedef void (*overlap_cb)(const struct overlap_file *first, const struct overlap_file *other,
                           void *ud);

/* Sorts v[0..n) by identity, then source, then path, and calls `cb` (with `ud`) for every pair
 * (first source, later source) that match a same file: a file three sources match gives two
 * calls; two paths of one source to the same file (a hard link) give none. Returns the number of
 * calls. */
size_t overlap_find(struct overlap_file *v, size_t n, overlap_cb cb, void *ud);

#endif
