/* custmap: a customer map, the CSV file that turns a key found in a log line (an IP, a user
 * name, an API key) into a Stripe customer id. */
#ifndef LOGMETER_CUSTMAP_H
#define LOGMETER_CUSTMAP_H

#include <stddef.h>

struct custmap;

/* Reads `path`: one "key,cus_id" pair per line; blank lines and lines starting with '#' are
 * skipped; surrounding whitespace, then one pair of double quotes, of each field is dropped; a
 * trailing CR is dropped; a first row whose id column is a header name (customer, customer_id,
 * cus_id, stripe_customer_id, id) is skipped. An id that is not a Stripe id (letters, digits,
 * '_') is an error. A line
 * without a comma, an empty key or id, an id longer than 100 bytes (Stripe's payload value limit,
 * docs.stripe.com/api/billing/meter-event/create) or a key seen twice is an error
 * "PATH:LINE: message" in `err`. Returns a map owned by the caller, or NULL. */
struct custmap *custmap_load(const char *path, char *err, size_t errlen);

/* Frees the map. NULL is a no-op. */
void custmap_free(struct custmap *map);

/* Looks up the key of `len` bytes (need not be NUL-terminated). Returns the customer id, owned by
 * the map and valid until custmap_free, or NULL if the key is not in the map. O(log n). */
const char *custmap_lookup(const struct custmap *map, const char *key, size_t len);

/* Number of entries. */
size_t custmap_size(const struct custmap *map);

#endif
