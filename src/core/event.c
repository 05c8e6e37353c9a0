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

struct event_ids {
	EVP_MD_CTX *ctx;
};

struct event_ids *event_ids_new(void)
{
	struct event_ids *ids = calloc(1, sizeof(*ids));

	if (ids == NULL)
		return NULL;
	ids->ctx = EVP_MD_CTX_new();
	if (ids->ctx == NULL) {
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
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	char off[24];
	unsigned int md_len = 0;
	char *p;

	if (out == NULL)
		return -1;
	out[0] = '\0';
	if (ids == NULL || instance == NULL || source == NULL || file_uid == NULL || rule == NULL)
		return -1;
	snprintf(off, sizeof(off), "%" PRId64, line_offset);
	if (EVP_MD_CTX_reset(ids->ctx) != 1 ||
	    EVP_DigestInit_ex(ids->ctx, EVP_sha256(), NULL) != 1 ||
	    event_hash_field(ids->ctx, instance, strlen(instance)) < 0 ||
	    event_hash_field(ids->ctx, source, strlen(source)) < 0 ||
	    event_hash_field(ids->ctx, file_uid, strlen(file_uid)) < 0 ||
	    event_hash_field(ids->ctx, off, strlen(off)) < 0 ||
	    event_hash_field(ids->ctx, rule, strlen(rule)) < 0 ||
	    EVP_DigestFinal_ex(ids->ctx, md, &md_len) != 1 || md_len < EVENT_ID_HASH_BYTES)
		return -1;
	memcpy(out, EVENT_ID_PREFIX, sizeof(EVENT_ID_PREFIX) - 1);
	p = out + sizeof(EVENT_ID_PREFIX) - 1;
	for (size_t i = 0; i < EVENT_ID_HASH_BYTES; i++) {
		*p++ = hex[md[i] >> 4];
		*p++ = hex[md[i] & 0x0F];
	}
	*p = '\0';
	return 0;
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
