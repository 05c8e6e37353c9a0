#include "core/custmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

/* Stripe's limit on a payload value, which the customer id becomes. */
#define CUSTMAP_ID_MAX 100

struct custmap_entry {
	char *key; /* one allocation: key, NUL, id, NUL */
	size_t key_len;
	const char *id;
	unsigned line;
};

struct custmap {
	struct custmap_entry *entries;
	size_t n;
};

static int custmap_cmp_keys(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Ties are broken by line so that a duplicate is reported on its later line, whatever qsort
 * does with equal elements. */
static int custmap_cmp_sort(const void *pa, const void *pb)
{
	const struct custmap_entry *a = pa, *b = pb;
	int c = custmap_cmp_keys(a->key, a->key_len, b->key, b->key_len);

	if (c != 0)
		return c;
	return a->line < b->line ? -1 : a->line > b->line ? 1 : 0;
}

struct custmap_probe {
	const char *key;
	size_t len;
};

static int custmap_cmp_search(const void *pk, const void *pe)
{
	const struct custmap_probe *k = pk;
	const struct custmap_entry *e = pe;

	return custmap_cmp_keys(k->key, k->len, e->key, e->key_len);
}

static int custmap_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trims [*s, *s + *len) of surrounding whitespace. */
static void custmap_trim(const char **s, size_t *len)
{
	while (*len > 0 && custmap_is_space(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && custmap_is_space((*s)[*len - 1]))
		(*len)--;
}

/* Trims a field of whitespace, then of one pair of double quotes, which spreadsheets put around
 * fields. */
static void custmap_trim_field(const char **s, size_t *len)
{
	custmap_trim(s, len);
	if (*len >= 2 && (*s)[0] == '"' && (*s)[*len - 1] == '"') {
		(*s)++;
		*len -= 2;
	}
}

/* Stripe object ids are letters, digits and '_' (cus_NffrFeUfNV2Hib). */
static int custmap_is_stripe_id(const char *id, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return 0;
	}
	return 1;
}

/* A spreadsheet export starts with a header row such as "ip,customer_id". */
static int custmap_is_header(const char *id, size_t len)
{
	static const char *const names[] = {"customer", "customer_id", "cus_id",
	                                    "stripe_customer_id", "id"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], id, len) == 0)
			return 1;
	return 0;
}

void custmap_free(struct custmap *map)
{
	if (map == NULL)
		return;
	for (size_t i = 0; i < map->n; i++)
		free(map->entries[i].key);
	free(map->entries);
	free(map);
}

/* Parses one line into map (growing it). Returns 0, or -1 with the message (without the
 * "PATH:LINE: " prefix) in err. */
static int custmap_parse_line(struct custmap *map, size_t *cap, char *line, size_t len,
                              unsigned lineno, char *err, size_t errlen)
{
	const char *key = line, *id, *comma;
	size_t key_len, id_len;
	struct custmap_entry *e;
	char *buf;

	/* Spreadsheets save CSV with a UTF-8 byte order mark. */
	if (lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
		key += 3;
		len -= 3;
	}
	if (len > 0 && key[len - 1] == '\n')
		len--;
	if (len > 0 && key[len - 1] == '\r')
		len--;
	custmap_trim(&key, &len);
	if (len == 0 || key[0] == '#')
		return 0;
	if (memchr(key, '\0', len) != NULL) {
		err_set(err, errlen, "NUL byte in line");
		return -1;
	}
	comma = memchr(key, ',', len);
	if (comma == NULL) {
		err_set(err, errlen, "expected \"key,customer_id\", found no comma");
		return -1;
	}
	id = comma + 1;
	id_len = len - (size_t)(id - key);
	key_len = (size_t)(comma - key);
	/* A third column is more likely a mistake than part of an id: Stripe ids have no commas. */
	if (memchr(id, ',', id_len) != NULL) {
		err_set(err, errlen, "expected \"key,customer_id\", found more than one comma");
		return -1;
	}
	custmap_trim_field(&key, &key_len);
	custmap_trim_field(&id, &id_len);
	if (key_len == 0) {
		err_set(err, errlen, "empty key");
		return -1;
	}
	if (id_len == 0) {
		err_set(err, errlen, "empty customer id");
		return -1;
	}
	if (map->n == 0 && custmap_is_header(id, id_len))
		return 0;
	if (id_len > CUSTMAP_ID_MAX) {
		err_set(err, errlen, "customer id longer than %d bytes", CUSTMAP_ID_MAX);
		return -1;
	}
	if (!custmap_is_stripe_id(id, id_len)) {
		err_set(err, errlen,
		        "customer id '%.*s' is not a Stripe id (letters, digits and '_' only)",
		        (int)(id_len > 40 ? 40 : id_len), id);
		return -1;
	}
	if (map->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct custmap_entry *n = reallocarray(map->entries, ncap, sizeof(*n));

		if (n == NULL) {
			err_set(err, errlen, "out of memory");
			return -1;
		}
		map->entries = n;
		*cap = ncap;
	}
	buf = malloc(key_len + id_len + 2);
	if (buf == NULL) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	memcpy(buf, key, key_len);
	buf[key_len] = '\0';
	memcpy(buf + key_len + 1, id, id_len);
	buf[key_len + 1 + id_len] = '\0';
	e = &map->entries[map->n++];
	e->key = buf;
	e->key_len = key_len;
	e->id = buf + key_len + 1;
	e->line = lineno;
	return 0;
}

struct custmap *custmap_load(const char *path, char *err, size_t errlen)
{
	struct custmap *map = NULL;
	FILE *f = NULL;
	char *line = NULL;
	size_t linecap = 0, cap = 0;
	unsigned lineno = 0;
	ssize_t n;
	char msg[256];

	if (path == NULL) {
		err_set(err, errlen, "no path");
		return NULL;
	}
	f = fopen(path, "re");
	if (f == NULL) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	map = calloc(1, sizeof(*map));
	if (map == NULL) {
		err_set(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	errno = 0;
	while ((n = getline(&line, &linecap, f)) >= 0) {
		lineno++;
		if (custmap_parse_line(map, &cap, line, (size_t)n, lineno, msg, sizeof(msg)) < 0) {
			err_set(err, errlen, "%s:%u: %s", path, lineno, msg);
			goto fail;
		}
	}
	if (ferror(f)) {
		err_set(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
		goto fail;
	}
	if (map->n > 0) {
		qsort(map->entries, map->n, sizeof(map->entries[0]), custmap_cmp_sort);
		for (size_t i = 1; i < map->n; i++) {
			const struct custmap_entry *a = &map->entries[i - 1], *b = &map->entries[i];

			if (custmap_cmp_keys(a->key, a->key_len, b->key, b->key_len) == 0) {
				err_set(err, errlen, "%s:%u: duplicate key '%s' (first on line %u)",
				        path, b->line, b->key, a->line);
				goto fail;
			}
		}
	}
	free(line);
	fclose(f);
	return map;
fail:
	free(line);
	fclose(f);
	custmap_free(map);
	return NULL;
}

const char *custmap_lookup(const struct custmap *map, const char *key, size_t len)
{
	struct custmap_probe probe = {key, len};
	const struct custmap_entry *e;

	if (map == NULL || map->n == 0 || (key == NULL && len > 0))
		return NULL;
	if (key == NULL)
		probe.key = "";
	e = bsearch(&probe, map->entries, map->n, sizeof(map->entries[0]), custmap_cmp_search);
	return e ? e->id : NULL;
}

size_t custmap_size(const struct custmap *map)
{
	return map ? map->n : 0;
}
