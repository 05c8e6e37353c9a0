#include "core/event.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* Bytes of the SHA-256 digest the identifier keeps: 160 bits make a collision among the events
 * of one 24-hour dedupe window (or of all time) negligible while staying short. */
#define EVENT_ID_HASH_BYTES 20
#define EVENT_ID_PREFIX "lm1-"

static void event_be64(unsigned char out[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (unsigned char)(v & 0xFF);
		v >>= 8;
	}
}

/* The hashed message is gathered here and given to the digest in one call (a call costs more
 * than hashing a short field). */
struct hash_msg {
	EVP_MD_CTX *ctx;
	unsigned char buf[512];
	size_t len;
	int failed;
};

static void msg_put(struct hash_msg *m, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len > 0 && !m->failed) {
		size_t n = sizeof(m->buf) - m->len;

		if (n > len)
			n = len;
		memcpy(m->buf + m->len, p, n);
		m->len += n;
		p += n;
		len -= n;
		if (m->len == sizeof(m->buf)) {
			m->failed = EVP_DigestUpdate(m->ctx, m->buf, m->len) != 1;
			m->len = 0;
		}
	}
}

/* A field: its length as an 8-byte big-endian unsigned integer, then its bytes. */
static void msg_field(struct hash_msg *m, const char *s)
{
	unsigned char len_be[8];
	size_t len = strlen(s);

	event_be64(len_be, (uint64_t)len);
	msg_put(m, len_be, sizeof(len_be));
	msg_put(m, s, len);
}

struct event_ids {
	EVP_MD_CTX *ctx; /* set up for SHA-256 once; each identifier re-initialises it */
};

struct event_ids *event_ids_new(void)
{
	struct event_ids *ids = calloc(1, sizeof(*ids));

	if (ids == NULL)
		return NULL;
	ids->ctx = EVP_MD_CTX_new();
	if (ids->ctx == NULL || EVP_DigestInit_ex(ids->ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ids->ctx);
		free(ids);
		return NULL;
	}
	return ids;
}

void event_ids_free(struct event_ids *ids)
{
	if (ids == NULL)
		return;
	EVP_MD_CTX_free(ids->ctx);
	free(ids);
}

/* Writes `prefix` and 40 lowercase hex digits of the first 20 bytes of SHA-256 over the `n`
 * strings of `fields`, each preceded by its length (msg_field), into `out`, with the context
 * `ctx` of event_ids_new. EVP_DigestInit_ex with no digest starts over with the one the context
 * has, keeping its provider state: with OpenSSL 3, EVP_MD_CTX_reset and a new
 * EVP_DigestInit_ex(EVP_sha256()) fetch the algorithm and allocate its state again for every
 * identifier (measured: about a third of the identifier's cost). */
static int hash_identifier(EVP_MD_CTX *ctx, char out[EVENT_IDENTIFIER_MAX], const char *prefix,
                           const char *const *fields, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	size_t plen = strlen(prefix);
	struct hash_msg m;
	char *p;

	out[0] = '\0';
	if (ctx == NULL || plen + 2 * EVENT_ID_HASH_BYTES >= EVENT_IDENTIFIER_MAX ||
	    EVP_DigestInit_ex(ctx, NULL, NULL) != 1)
		return -1;
	m.ctx = ctx;
	m.len = 0;
	m.failed = 0;
	for (size_t i = 0; i < n; i++)
		msg_field(&m, fields[i]);
	if (m.failed || (m.len > 0 && EVP_DigestUpdate(ctx, m.buf, m.len) != 1) ||
	    EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len < EVENT_ID_HASH_BYTES)
		return -1;
	memcpy(out, prefix, plen);
	p = out + plen;
	for (size_t i = 0; i < EVENT_ID_HASH_BYTES; i++) {
		*p++ = hex[md[i] >> 4];
		*p++ = hex[md[i] & 0x0F];
	}
	*p = '\0';
	return 0;
}

/* `v` as decimal text without leading zeros into `out` (24 bytes hold any int64_t): what
 * snprintf("%" PRId64) writes, at a fraction of its cost, once per identifier. */
static void decimal(char out[24], int64_t v)
{
	char tmp[24];
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	size_t n = 0, i = 0;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0)
		out[i++] = '-';
	while (n > 0)
		out[i++] = tmp[--n];
	out[i] = '\0';
}

/* The hashed bytes are, in this order, each field preceded by its length in bytes as an 8-byte
 * big-endian unsigned integer (docs/identifiers.md):
 *   instance, source, file_uid (their bytes, without a NUL),
 *   line_offset as its decimal text without leading zeros ("0", "4096"),
 *   rule.
 * Length prefixes make the encoding injective: ("ab", "c") and ("a", "bc") hash differently.
 * "lm1-" names this layout; a new layout must take a new prefix, since identifiers of events
 * already sent must never change. */
int event_ids_make(struct event_ids *ids, char out[EVENT_IDENTIFIER_MAX], const char *instance,
                   const char *source, const char *file_uid, int64_t line_offset, const char *rule)
{
	char off[24];
	const char *fields[5];

	if (out == NULL)
		return -1;
	out[0] = '\0';
	if (ids == NULL || instance == NULL || source == NULL || file_uid == NULL || rule == NULL)
		return -1;
	decimal(off, line_offset);
	fields[0] = instance;
	fields[1] = source;
	fields[2] = file_uid;
	fields[3] = off;
	fields[4] = rule;
	return hash_identifier(ids->ctx, out, EVENT_ID_PREFIX, fields, 5);
}

int event_identifier(char out[EVENT_IDENTIFIER_MAX], const char *instance, const char *source,
                     const char *file_uid, int64_t line_offset, const char *rule)
{
	struct event_ids *ids;
	int ret;

	if (out == NULL)
		return -1;
	out[0] = '\0';
	ids = event_ids_new();
	ret = event_ids_make(ids, out, instance, source, file_uid, line_offset, rule);
	event_ids_free(ids);
	return ret;
}

/* Copies the text `src` (an array of `size` bytes) up to its NUL, or whole if it has none. */
static void copy_text(char *dst, const char *src, size_t size)
{
	size_t n = strnlen(src, size);

	memcpy(dst, src, n < size ? n + 1 : size);
}

void event_copy(struct event *dst, const struct event *src)
{
	dst->id = src->id;
	dst->queue_seq = src->queue_seq;
	dst->file_id = src->file_id;
	dst->line_offset = src->line_offset;
	copy_text(dst->rule, src->rule, sizeof(dst->rule));
	copy_text(dst->identifier, src->identifier, sizeof(dst->identifier));
	copy_text(dst->event_name, src->event_name, sizeof(dst->event_name));
	copy_text(dst->payload_customer_key, src->payload_customer_key,
	          sizeof(dst->payload_customer_key));
	copy_text(dst->payload_value_key, src->payload_value_key, sizeof(dst->payload_value_key));
	copy_text(dst->customer_key, src->customer_key, sizeof(dst->customer_key));
	copy_text(dst->customer, src->customer, sizeof(dst->customer));
	copy_text(dst->value, src->value, sizeof(dst->value));
	dst->timestamp = src->timestamp;
	dst->state = src->state;
	dst->attempts = src->attempts;
	dst->key_generation = src->key_generation;
	dst->first_unknown = src->first_unknown;
	copy_text(dst->last_error, src->last_error, sizeof(dst->last_error));
	dst->created = src->created;
	dst->delivered_at = src->delivered_at;
	dst->window_s = src->window_s;
	dst->window_grace_s = src->window_grace_s;
}

/* lmw2: with the spool's id (lmw1, before it, could be shared by two hosts of one instance). */
#define EVENT_WINDOW_ID_PREFIX "lmw2-"

int event_ids_window(struct event_ids *ids, char out[EVENT_IDENTIFIER_MAX], const char *instance,
                     const char *spool_id, const char *rule, const char *customer,
                     int64_t window_start)
{
	char start[24];
	const char *fields[5];

	if (out == NULL)
		return -1;
	out[0] = '\0';
	if (ids == NULL || instance == NULL || spool_id == NULL || rule == NULL || customer == NULL)
		return -1;
	decimal(start, window_start);
	fields[0] = instance;
	fields[1] = spool_id;
	fields[2] = rule;
	fields[3] = customer;
	fields[4] = start;
	return hash_identifier(ids->ctx, out, EVENT_WINDOW_ID_PREFIX, fields, 5);
}

int event_window_identifier(char out[EVENT_IDENTIFIER_MAX], const char *instance,
                            const char *spool_id, const char *rule, const char *customer,
                            int64_t window_start)
{
	struct event_ids *ids;
	int ret;

	if (out == NULL)
		return -1;
	out[0] = '\0';
	ids = event_ids_new();
	ret = event_ids_window(ids, out, instance, spool_id, rule, customer, window_start);
	event_ids_free(ids);
	return ret;
}

/* Window totals are exact: 18 decimals and 20 integer digits fit a 128-bit integer (1.7e38). */
#define EVENT_SUM_DECIMALS 18
#define EVENT_SUM_INT_DIGITS 20

static int value_parse(const char *v, __int128 *out)
{
	__int128 x = 0;
	int neg = 0, idig = 0, fdig = 0;

	if (*v == '-') {
		neg = 1;
		v++;
	}
	if (*v < '0' || *v > '9')
		return -1;
	for (; *v >= '0' && *v <= '9'; v++) {
		if (++idig > EVENT_SUM_INT_DIGITS)
			return -1;
		x = x * 10 + (*v - '0');
	}
	if (*v == '.') {
		v++;
		if (*v < '0' || *v > '9')
			return -1;
		for (; *v >= '0' && *v <= '9'; v++) {
			if (++fdig > EVENT_SUM_DECIMALS)
				return -1;
			x = x * 10 + (*v - '0');
		}
	}
	if (*v != '\0')
		return -1;
	for (; fdig < EVENT_SUM_DECIMALS; fdig++)
		x *= 10;
	*out = neg ? -x : x;
	return 0;
}

int event_value_add(const char *a, const char *b, char *out, size_t outlen)
{
	__int128 x, y, sum, mag;
	char digits[64];
	int n = 0, neg, frac_end = EVENT_SUM_DECIMALS;
	size_t o = 0;

	if (a == NULL || b == NULL || out == NULL || value_parse(a, &x) != 0 ||
	    value_parse(b, &y) != 0)
		return -1;
	sum = x + y;
	neg = sum < 0;
	mag = neg ? -sum : sum;
	/* Digits least significant first: 18 of fraction, then the integer part. */
	do {
		digits[n++] = (char)('0' + (int)(mag % 10));
		mag /= 10;
	} while ((mag > 0 || n <= EVENT_SUM_DECIMALS) && n < (int)sizeof(digits));
	if (n > EVENT_SUM_DECIMALS + EVENT_SUM_INT_DIGITS)
		return -1;
	while (frac_end > 0 && digits[EVENT_SUM_DECIMALS - frac_end] == '0')
		frac_end--;
	if (neg && outlen > 1)
		out[o++] = '-';
	for (int i = n - 1; i >= EVENT_SUM_DECIMALS && o + 1 < outlen; i--)
		out[o++] = digits[i];
	if (frac_end > 0 && o + 1 < outlen)
		out[o++] = '.';
	for (int i = EVENT_SUM_DECIMALS - 1; i >= EVENT_SUM_DECIMALS - frac_end && o + 1 < outlen;
	     i--)
		out[o++] = digits[i];
	if (o + 1 >= outlen)
		return -1;
	out[o] = '\0';
	return 0;
}

int event_value_digits(const char *v)
{
	const char *first = NULL, *last = NULL;
	int n = 0;

	for (const char *p = v; *p != '\0'; p++) {
		if (*p >= '1' && *p <= '9' && first == NULL)
			first = p;
		if (*p >= '0' && *p <= '9')
			last = p;
	}
	if (first == NULL)
		return 0;
	for (const char *p = first; p <= last; p++)
		n += *p >= '0' && *p <= '9';
	return n;
}

enum event_window event_window_of(int64_t timestamp, int64_t now)
{
	if (timestamp < now - EVENT_MAX_AGE_S)
		return EVENT_WINDOW_OLD;
	if (timestamp > now + EVENT_HOLD_MAX_S)
		return EVENT_WINDOW_FAR_AHEAD;
	if (timestamp > now + EVENT_MAX_AHEAD_S - EVENT_HOLD_MARGIN_S)
		return EVENT_WINDOW_AHEAD;
	return EVENT_WINDOW_OK;
}

int event_idempotency_key(const struct event *ev, char out[EVENT_IDEMPOTENCY_KEY_MAX])
{
	size_t n;
	int w;

	if (out == NULL)
		return -1;
	out[0] = '\0';
	if (ev == NULL || ev->key_generation < 0)
		return -1;
	n = strnlen(ev->identifier, sizeof(ev->identifier));
	if (n == 0 || n >= sizeof(ev->identifier))
		return -1;
	if (ev->key_generation == 0)
		w = snprintf(out, EVENT_IDEMPOTENCY_KEY_MAX, "%.*s", (int)n, ev->identifier);
	else
		w = snprintf(out, EVENT_IDEMPOTENCY_KEY_MAX, "%.*s-r%" PRId64, (int)n,
		             ev->identifier, ev->key_generation);
	return w > 0 && w < EVENT_IDEMPOTENCY_KEY_MAX ? 0 : -1;
}

/* What stays as it is in a form value: A-Za-z0-9-._~, as curl_easy_escape(3) and Stripe's SDKs
 * leave it (RFC 3986's unreserved characters). */
static int event_unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* A body being written into a fixed buffer; `ok` drops to 0 once something does not fit. */
struct event_body {
	char *p;
	size_t len, cap;
	int ok;
};

static void body_raw(struct event_body *b, const char *s, size_t n)
{
	if (!b->ok || n >= b->cap - b->len) {
		b->ok = 0;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Appends a field of a struct event percent-encoded (bounded by its array, in case it lacks a
 * NUL), uppercase hex digits as curl_easy_escape writes them. */
static void body_escaped(struct event_body *b, const char *s, size_t max)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strnlen(s, max);

	if (!b->ok || 3 * n >= b->cap - b->len) {
		/* Not necessarily too long: escape byte by byte with the exact check. */
		for (size_t i = 0; i < n && b->ok; i++) {
			unsigned char c = (unsigned char)s[i];
			char e[3] = {'%', hex[c >> 4], hex[c & 0x0F]};

			if (event_unreserved(c))
				body_raw(b, (const char *)&s[i], 1);
			else
				body_raw(b, e, 3);
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (event_unreserved(c)) {
			b->p[b->len++] = (char)c;
		} else {
			b->p[b->len++] = '%';
			b->p[b->len++] = hex[c >> 4];
			b->p[b->len++] = hex[c & 0x0F];
		}
	}
}

size_t event_form_body_write(const struct event *ev, char *out, size_t outlen)
{
	struct event_body b = {out, 0, outlen, out != NULL && outlen > 0};
	char ts[sizeof("&timestamp=-9223372036854775808")];
	int n;

	if (ev == NULL || !b.ok)
		return 0;
	/* Stripe's SDKs send the brackets of payload[...] raw, as stripe-node does. */
	body_raw(&b, "event_name=", 11);
	body_escaped(&b, ev->event_name, sizeof(ev->event_name));
	body_raw(&b, "&identifier=", 12);
	body_escaped(&b, ev->identifier, sizeof(ev->identifier));
	n = snprintf(ts, sizeof(ts), "&timestamp=%" PRId64, ev->timestamp);
	body_raw(&b, ts, n > 0 && (size_t)n < sizeof(ts) ? (size_t)n : 0);
	body_raw(&b, "&payload[", 9);
	body_escaped(&b, ev->payload_customer_key, sizeof(ev->payload_customer_key));
	body_raw(&b, "]=", 2);
	body_escaped(&b, ev->customer, sizeof(ev->customer));
	body_raw(&b, "&payload[", 9);
	body_escaped(&b, ev->payload_value_key, sizeof(ev->payload_value_key));
	body_raw(&b, "]=", 2);
	body_escaped(&b, ev->value, sizeof(ev->value));
	if (!b.ok || b.len >= b.cap) {
		out[0] = '\0';
		return 0;
	}
	out[b.len] = '\0';
	return b.len;
}

char *event_form_body(const struct event *ev)
{
	char *body;

	if (ev == NULL)
		return NULL;
	body = malloc(EVENT_FORM_BODY_MAX);
	if (body == NULL)
		return NULL;
	if (event_form_body_write(ev, body, EVENT_FORM_BODY_MAX) == 0) {
		free(body);
		return NULL;
	}
	return body;
}
