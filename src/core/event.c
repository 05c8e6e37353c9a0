#include "core/event.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
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

static int event_hash_field(EVP_MD_CTX *ctx, const void *data, size_t len)
{
	unsigned char len_be[8];

	event_be64(len_be, (uint64_t)len);
	if (EVP_DigestUpdate(ctx, len_be, sizeof(len_be)) != 1)
		return -1;
	if (len > 0 && EVP_DigestUpdate(ctx, data, len) != 1)
		return -1;
	return 0;
}

/* The hashed bytes are, in this order, each field preceded by its length in bytes as an 8-byte
 * big-endian unsigned integer (docs/identifiers.md):
 *   instance, source, file_uid (their bytes, without a NUL),
 *   line_offset as its decimal text without leading zeros ("0", "4096"),
 *   rule.
 * Length prefixes make the encoding injective: ("ab", "c") and ("a", "bc") hash differently.
 * "lm1-" names this layout; a new layout must take a new prefix, since identifiers of events
 * already sent must never change. */
/* Writes `prefix` and 40 lowercase hex digits of the first 20 bytes of SHA-256 over the `n`
 * strings of `fields`, each preceded by its length (event_hash_field), into `out`. */
static int hash_identifier(char out[EVENT_IDENTIFIER_MAX], const char *prefix,
                           const char *const *fields, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	size_t plen = strlen(prefix);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ret = -1;
	char *p;

	out[0] = '\0';
	if (ctx == NULL || plen + 2 * EVENT_ID_HASH_BYTES >= EVENT_IDENTIFIER_MAX ||
	    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (event_hash_field(ctx, fields[i], strlen(fields[i])) < 0)
			goto out;
	if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len < EVENT_ID_HASH_BYTES)
		goto out;
	memcpy(out, prefix, plen);
	p = out + plen;
	for (size_t i = 0; i < EVENT_ID_HASH_BYTES; i++) {
		*p++ = hex[md[i] >> 4];
		*p++ = hex[md[i] & 0x0F];
	}
	*p = '\0';
	ret = 0;
out:
	EVP_MD_CTX_free(ctx);
	return ret;
}

int event_identifier(char out[EVENT_IDENTIFIER_MAX], const char *instance, const char *source,
                     const char *file_uid, int64_t line_offset, const char *rule)
{
	char off[24];
	const char *fields[5];

	if (out == NULL)
		return -1;
	out[0] = '\0';
	if (instance == NULL || source == NULL || file_uid == NULL || rule == NULL)
		return -1;
	snprintf(off, sizeof(off), "%" PRId64, line_offset);
	fields[0] = instance;
	fields[1] = source;
	fields[2] = file_uid;
	fields[3] = off;
	fields[4] = rule;
	return hash_identifier(out, EVENT_ID_PREFIX, fields, 5);
}

/* lmw2: with the spool's id (lmw1, before it, could be shared by two hosts of one instance). */
#define EVENT_WINDOW_ID_PREFIX "lmw2-"

int event_window_identifier(char out[EVENT_IDENTIFIER_MAX], const char *instance,
                            const char *spool_id, const char *rule, const char *customer,
                            int64_t window_start)
{
	char start[24];
	const char *fields[5];

	if (out == NULL)
		return -1;
	out[0] = '\0';
	if (instance == NULL || spool_id == NULL || rule == NULL || customer == NULL)
		return -1;
	snprintf(start, sizeof(start), "%" PRId64, window_start);
	fields[0] = instance;
	fields[1] = spool_id;
	fields[2] = rule;
	fields[3] = customer;
	fields[4] = start;
	return hash_identifier(out, EVENT_WINDOW_ID_PREFIX, fields, 5);
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

/* Percent-encodes a field of a struct event (bounded by its array, in case it lacks a NUL). */
static char *event_escape(const char *s, size_t max)
{
	/* A length of 0 makes curl take strlen, which is also 0 for an empty field. */
	return curl_easy_escape(NULL, s, (int)strnlen(s, max));
}

char *event_form_body(const struct event *ev)
{
	char *name = NULL, *id = NULL, *ckey = NULL, *cust = NULL, *vkey = NULL, *val = NULL;
	char *body = NULL;
	size_t size;
	int n;

	if (ev == NULL)
		return NULL;
	name = event_escape(ev->event_name, sizeof(ev->event_name));
	id = event_escape(ev->identifier, sizeof(ev->identifier));
	ckey = event_escape(ev->payload_customer_key, sizeof(ev->payload_customer_key));
	cust = event_escape(ev->customer, sizeof(ev->customer));
	vkey = event_escape(ev->payload_value_key, sizeof(ev->payload_value_key));
	val = event_escape(ev->value, sizeof(ev->value));
	if (name == NULL || id == NULL || ckey == NULL || cust == NULL || vkey == NULL ||
	    val == NULL)
		goto out;
	/* 21 bytes hold any int64; the rest is the fixed text around the fields. */
	size = strlen(name) + strlen(id) + strlen(ckey) + strlen(cust) + strlen(vkey) +
	       strlen(val) + 21 +
	       sizeof("event_name=&identifier=&timestamp=&payload[]=&payload[]=");
	body = malloc(size);
	if (body == NULL)
		goto out;
	n = snprintf(body, size,
	             "event_name=%s&identifier=%s&timestamp=%" PRId64
	             "&payload[%s]=%s&payload[%s]=%s",
	             name, id, ev->timestamp, ckey, cust, vkey, val);
	if (n < 0 || (size_t)n >= size) {
		free(body);
		body = NULL;
	}
out:
	curl_free(name);
	curl_free(id);
	curl_free(ckey);
	curl_free(cust);
	curl_free(vkey);
	curl_free(val);
	return body;
}
