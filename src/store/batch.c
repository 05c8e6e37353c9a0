/* batch: how the events of one commit are stored, as one blob in one row of `batches`
 * (docs/spool.md, "How events are stored"). Writing appends each event to a buffer; reading
 * decodes them in order, in place, without allocating.
 *
 * The blob, format 1 (integers are unsigned LEB128 varints; "zigzag" maps a signed delta to an
 * unsigned one: 0, -1, 1, -2... as 0, 1, 2, 3...):
 *
 *   1                                   the format
 *   R, then R rule ids                  the rows of `rules` its events refer to
 *   then per event, in line order:
 *     line offset - the previous one's  (never negative; the first: zigzag of the offset itself,
 *                                        which is negative for a window's meter event)
 *     rule: an index into the R ids
 *     zigzag(timestamp - the previous)  (the first: zigzag of the timestamp)
 *     customer key: length, bytes
 *     customer: 0 = the customer key itself, 1 = "" (unmapped), else 2 + length, bytes
 *     value: length, bytes
 *
 * An event of the reference workload (an nginx line, a customer id of 15 characters, a byte
 * count) takes about 25 bytes. Nothing of it can be changed in place: what changes later (an
 * outcome, a replay's new customer) is a row of `outcomes`, which overrides it. */
#include "store/spool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_int.h"
#include "util/log.h"

#define BATCH_FORMAT 1
#define BATCH_BUF_MIN 4096

/* A dead letter of the batch: its index and Stripe-free reason, made at ingest. */
struct batch_dead {
	size_t index;
	char *reason;
};

struct spool_batch {
	char *instance;
	unsigned char *buf; /* the encoded events, without the header */
	size_t len, cap;
	size_t n;
	int64_t first_offset, last_offset, last_ts;
	/* The rules its events refer to, by pointer; resolved to rows of `rules` at commit. */
	const struct config_rule **rules;
	size_t n_rules, cap_rules;
	size_t last_rule; /* index of the last rule used: lines of one rule come in runs */
	struct batch_dead *dead;
	size_t n_dead, cap_dead;
	/* The events of aggregating rules (aggregate = ...), which go into their windows at commit
	 * rather than into this batch: encoded the same way, in a batch of their own. */
	struct spool_batch *agg;
	int aggregated; /* this is such a batch of another */
};

/* ---- varints ---- */

static size_t put_varint(unsigned char *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Reads a varint at *pos of `len` bytes. Returns 0, or -1 if it is cut or longer than 10 bytes. */
static int get_varint(const unsigned char *p, size_t len, size_t *pos, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift = 0;

	while (*pos < len && shift < 64) {
		unsigned char c = p[(*pos)++];

		v |= (uint64_t)(c & 0x7f) << shift;
		if ((c & 0x80) == 0) {
			*out = v;
			return 0;
		}
		shift += 7;
	}
	return -1;
}

/* ---- writing ---- */

struct spool_batch *spool_batch_new(const char *instance, char *err, size_t errlen)
{
	struct spool_batch *b = calloc(1, sizeof(*b));

	if (b == NULL || (b->instance = strdup(instance != NULL ? instance : "")) == NULL) {
		free(b);
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	return b;
}

void spool_batch_free(struct spool_batch *b)
{
	if (b == NULL)
		return;
	spool_batch_clear(b);
	spool_batch_free(b->agg);
	free(b->instance);
	free(b->buf);
	free(b->rules);
	free(b->dead);
	free(b);
}

void spool_batch_clear(struct spool_batch *b)
{
	for (size_t i = 0; i < b->n_dead; i++)
		free(b->dead[i].reason);
	b->n_dead = 0;
	b->len = b->n = b->n_rules = b->last_rule = 0;
	if (b->agg != NULL)
		spool_batch_clear(b->agg);
}

size_t spool_batch_count(const struct spool_batch *b)
{
	return b == NULL ? 0 : b->n + (b->agg != NULL ? b->agg->n : 0);
}

size_t spool_batch_bytes(const struct spool_batch *b)
{
	return b == NULL ? 0 : b->len + (b->agg != NULL ? b->agg->len : 0);
}

size_t spool_batch_stored(const struct spool_batch *b)
{
	return b->n;
}

const struct spool_batch *spool_batch_aggregated(const struct spool_batch *b)
{
	return b->agg != NULL && b->agg->n > 0 ? b->agg : NULL;
}

const char *spool_batch_instance(const struct spool_batch *b)
{
	return b->instance;
}

size_t spool_batch_rules(const struct spool_batch *b, const struct config_rule *const **rules)
{
	*rules = b->rules;
	return b->n_rules;
}

const unsigned char *spool_batch_events(const struct spool_batch *b, size_t *len)
{
	*len = b->len;
	return b->buf;
}

int64_t spool_batch_first_offset(const struct spool_batch *b)
{
	return b->first_offset;
}

size_t spool_batch_dead(const struct spool_batch *b, size_t i, const char **reason)
{
	*reason = b->dead[i].reason;
	return b->dead[i].index;
}

size_t spool_batch_n_dead(const struct spool_batch *b)
{
	return b->n_dead;
}

static int fits(const char *s, size_t max)
{
	return s != NULL && strnlen(s, max) < max;
}

/* The index of `rule` among the batch's rules, added if new. Returns -1 if out of memory, -2 if
 * a field of the rule does not fit an event. */
static long rule_ref(struct spool_batch *b, const struct config_rule *rule)
{
	if (b->n_rules > 0 && b->rules[b->last_rule] == rule)
		return (long)b->last_rule;
	for (size_t i = 0; i < b->n_rules; i++) {
		if (b->rules[i] == rule) {
			b->last_rule = i;
			return (long)i;
		}
	}
	if (!fits(rule->name, EVENT_RULE_MAX) || !fits(rule->event_name, EVENT_NAME_MAX) ||
	    !fits(rule->payload_customer_key, EVENT_KEY_MAX) ||
	    !fits(rule->payload_value_key, EVENT_KEY_MAX))
		return -2;
	if (b->n_rules == b->cap_rules) {
		size_t cap = b->cap_rules > 0 ? 2 * b->cap_rules : 8;
		const struct config_rule **r = realloc(b->rules, cap * sizeof(*r));

		if (r == NULL)
			return -1;
		b->rules = r;
		b->cap_rules = cap;
	}
	b->rules[b->n_rules] = rule;
	b->last_rule = b->n_rules;
	return (long)b->n_rules++;
}

static int reserve(struct spool_batch *b, size_t more)
{
	size_t cap = b->cap < BATCH_BUF_MIN ? BATCH_BUF_MIN : b->cap;
	unsigned char *p;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->buf, cap);
	if (p == NULL)
		return -1;
	b->buf = p;
	b->cap = cap;
	return 0;
}

static size_t put_text(unsigned char *p, const char *s, size_t n)
{
	size_t k = put_varint(p, n);

	memcpy(p + k, s, n);
	return k + n;
}

int spool_batch_add(struct spool_batch *b, const struct spool_new_event *ev, char *err,
                    size_t errlen)
{
	size_t klen, clen, vlen, at;
	unsigned char *p;
	long ref;

	if (b == NULL || ev == NULL || ev->rule == NULL || ev->customer_key == NULL ||
	    ev->customer == NULL || ev->value == NULL) {
		err_set(err, errlen, "spool_batch_add: invalid arguments");
		return -1;
	}
	/* A line of an aggregating rule goes into its window (spool_window_commit), unless it is a
	 * dead letter (an unmapped customer): that stays an event of its own. */
	if (ev->rule->aggregate_s > 0 && ev->dead == NULL && !ev->not_aggregated &&
	    !b->aggregated) {
		if (b->agg == NULL) {
			b->agg = spool_batch_new(b->instance, err, errlen);
			if (b->agg == NULL)
				return -1;
			b->agg->aggregated = 1;
		}
		return spool_batch_add(b->agg,
		                       &(struct spool_new_event){.line_offset = ev->line_offset,
		                                                 .rule = ev->rule,
		                                                 .customer_key = ev->customer_key,
		                                                 .customer = ev->customer,
		                                                 .value = ev->value,
		                                                 .timestamp = ev->timestamp,
		                                                 .dead = NULL},
		                       err, errlen);
	}
	if (b->n > 0 && ev->line_offset < b->last_offset) {
		err_set(err, errlen,
		        "spool_batch_add: event at offset %" PRId64 " after one at %" PRId64,
		        ev->line_offset, b->last_offset);
		return -1;
	}
	klen = strnlen(ev->customer_key, EVENT_CUSTOMER_MAX);
	clen = strnlen(ev->customer, EVENT_CUSTOMER_MAX);
	vlen = strnlen(ev->value, EVENT_VALUE_MAX);
	if (klen >= EVENT_CUSTOMER_MAX || clen >= EVENT_CUSTOMER_MAX || vlen >= EVENT_VALUE_MAX)
		return 1;
	ref = rule_ref(b, ev->rule);
	if (ref == -2)
		return 1;
	/* Six varints of at most 10 bytes and the three texts. */
	if (ref < 0 || reserve(b, 60 + klen + clen + vlen) < 0)
		goto nomem;
	if (ev->dead != NULL) {
		if (b->n_dead == b->cap_dead) {
			size_t cap = b->cap_dead > 0 ? 2 * b->cap_dead : 8;
			struct batch_dead *d = realloc(b->dead, cap * sizeof(*d));

			if (d == NULL)
				goto nomem;
			b->dead = d;
			b->cap_dead = cap;
		}
		b->dead[b->n_dead].index = b->n;
		b->dead[b->n_dead].reason = strndup(ev->dead, EVENT_ERROR_MAX - 1);
		if (b->dead[b->n_dead].reason == NULL)
			goto nomem;
		b->n_dead++;
	}
	p = b->buf;
	at = b->len;
	if (b->n == 0) {
		b->first_offset = ev->line_offset;
		at += put_varint(p + at, zigzag(ev->line_offset));
		at += put_varint(p + at, (uint64_t)ref);
		at += put_varint(p + at, zigzag(ev->timestamp));
	} else {
		at += put_varint(p + at, (uint64_t)(ev->line_offset - b->last_offset));
		at += put_varint(p + at, (uint64_t)ref);
		at += put_varint(p + at, zigzag(ev->timestamp - b->last_ts));
	}
	at += put_text(p + at, ev->customer_key, klen);
	if (clen == klen && memcmp(ev->customer, ev->customer_key, klen) == 0) {
		p[at++] = 0;
	} else if (clen == 0) {
		p[at++] = 1;
	} else {
		at += put_varint(p + at, 2 + (uint64_t)clen);
		memcpy(p + at, ev->customer, clen);
		at += clen;
	}
	at += put_text(p + at, ev->value, vlen);
	b->len = at;
	b->last_offset = ev->line_offset;
	b->last_ts = ev->timestamp;
	b->n++;
	return 0;
nomem:
	err_set(err, errlen, "out of memory");
	return -1;
}

size_t spool_blob_header(unsigned char *out, const int64_t *rule_ids, size_t n_rules)
{
	size_t at = 0;

	out[at++] = BATCH_FORMAT;
	at += put_varint(out + at, n_rules);
	for (size_t i = 0; i < n_rules; i++)
		at += put_varint(out + at, (uint64_t)rule_ids[i]);
	return at;
}

/* ---- reading ---- */

int spool_view_start(struct spool_view *v)
{
	uint64_t r, id;
	size_t pos = 0;

	v->next = 0;
	v->pos = 0;
	if (v->len < 1 || v->blob[0] != BATCH_FORMAT)
		return -1;
	pos = 1;
	if (get_varint(v->blob, v->len, &pos, &r) < 0 || r > v->len)
		return -1;
	if (r > v->cap_rules) {
		int64_t *ids = realloc(v->rule_ids, (size_t)r * sizeof(*ids));

		if (ids == NULL)
			return -1;
		v->rule_ids = ids;
		v->cap_rules = (size_t)r;
	}
	for (size_t i = 0; i < r; i++) {
		if (get_varint(v->blob, v->len, &pos, &id) < 0 || id > INT64_MAX)
			return -1;
		v->rule_ids[i] = (int64_t)id;
	}
	v->n_rules = (size_t)r;
	v->pos = pos;
	v->offset = v->timestamp = 0;
	return 0;
}

static int get_text(const struct spool_view *v, size_t *pos, size_t max, const char **s, size_t *n)
{
	uint64_t len;

	if (get_varint(v->blob, v->len, pos, &len) < 0 || len >= max || len > v->len - *pos)
		return -1;
	*s = (const char *)v->blob + *pos;
	*n = (size_t)len;
	*pos += (size_t)len;
	return 0;
}

int spool_view_next(struct spool_view *v, struct spool_item *it)
{
	uint64_t off, ref, ts, code;
	size_t pos = v->pos;

	if (v->next >= v->n)
		return 0;
	if (get_varint(v->blob, v->len, &pos, &off) < 0 || (v->next > 0 && off > INT64_MAX) ||
	    get_varint(v->blob, v->len, &pos, &ref) < 0 || ref >= v->n_rules ||
	    get_varint(v->blob, v->len, &pos, &ts) < 0)
		return -1;
	if (v->next == 0) {
		v->offset = unzigzag(off);
		v->timestamp = unzigzag(ts);
	} else {
		if (v->offset >= 0 && (int64_t)off > INT64_MAX - v->offset)
			return -1;
		v->offset += (int64_t)off;
		v->timestamp = (int64_t)((uint64_t)v->timestamp + (uint64_t)unzigzag(ts));
	}
	if (get_text(v, &pos, EVENT_CUSTOMER_MAX, &it->customer_key, &it->customer_key_len) < 0 ||
	    get_varint(v->blob, v->len, &pos, &code) < 0)
		return -1;
	if (code == 0) {
		it->customer = it->customer_key;
		it->customer_len = it->customer_key_len;
	} else if (code == 1) {
		it->customer = "";
		it->customer_len = 0;
	} else {
		code -= 2;
		if (code >= EVENT_CUSTOMER_MAX || code > v->len - pos)
			return -1;
		it->customer = (const char *)v->blob + pos;
		it->customer_len = (size_t)code;
		pos += (size_t)code;
	}
	if (get_text(v, &pos, EVENT_VALUE_MAX, &it->value, &it->value_len) < 0)
		return -1;
	it->id = v->id + v->next;
	it->queue_seq = v->queue_seq + v->next;
	it->line_offset = v->offset;
	it->timestamp = v->timestamp;
	it->rule_id = v->rule_ids[ref];
	v->pos = pos;
	v->next++;
	v->last = *it;
	/* The last event ends the blob: anything after it is damage. */
	if (v->next == v->n && pos != v->len)
		return -1;
	return 1;
}

int spool_view_seek(struct spool_view *v, int64_t id, struct spool_item *it)
{
	int rc;

	if (id < v->id || id >= v->id + v->n)
		return 0;
	if (v->next > 0 && id == v->id + v->next - 1) {
		*it = v->last;
		return 1;
	}
	if (id < v->id + v->next && spool_view_start(v) < 0)
		return -1;
	do {
		rc = spool_view_next(v, it);
	} while (rc == 1 && it->id < id);
	return rc;
}
