/* rule: compiled PCRE2 patterns (with JIT) and what a match yields: the customer, the value and
 * the timestamp of one meter event per matching rule. */
#ifndef LOGMETER_RULE_H
#define LOGMETER_RULE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Buffer sizes of struct rule_result, in bytes including the NUL. */
#define RULE_CUSTOMER_MAX                                                                          \
	256               /* a captured customer (or map key) longer than 255 bytes is invalid */
#define RULE_VALUE_MAX 64 /* a value longer than 63 bytes is invalid */
#define RULE_REASON_MAX 256

enum rule_outcome {
	RULE_NO_MATCH = 0, /* the pattern did not match */
	RULE_EVENT,        /* a meter event: customer, value, timestamp are set */
	RULE_INVALID,      /* matched, but the value or timestamp could not be used: see reason */
	RULE_UNMAPPED,     /* matched, but the customer key is not in the customer map: the event
	                      is kept as a dead letter with `reason`, customer is "" */
	RULE_BAD_UTF8      /* the rule's pattern asks for UTF-8 ((*UTF)) and the line is not valid
	                      UTF-8, so it could not be matched: `reason` gives the offset of the
	                      first bad byte in the line */
};

/* Which of PCRE2's resource limits stopped a match (pcre2api(3): pcre2_set_match_limit,
 * pcre2_set_depth_limit, pcre2_set_heap_limit; pcre2jit(3) for the JIT stack). */
enum rule_limit {
	RULE_LIMIT_NONE = 0,
	RULE_LIMIT_MATCH,     /* PCRE2_ERROR_MATCHLIMIT: [rule] match_limit */
	RULE_LIMIT_DEPTH,     /* PCRE2_ERROR_DEPTHLIMIT: [rule] depth_limit (interpreter only) */
	RULE_LIMIT_HEAP,      /* PCRE2_ERROR_HEAPLIMIT: [rule] heap_limit (interpreter only) */
	RULE_LIMIT_JIT_STACK, /* PCRE2_ERROR_JIT_STACKLIMIT: the JIT's stack (1 MiB) */
	RULE_LIMITS
};

struct rule_result {
	size_t rule_index;              /* index in config.rules */
	const struct config_rule *rule; /* borrowed from the config */
	enum rule_outcome outcome;
	char customer_key[RULE_CUSTOMER_MAX]; /* the captured text */
	char customer[RULE_CUSTOMER_MAX];     /* the Stripe customer id (mapped, or the capture) */
	char value[RULE_VALUE_MAX];           /* normalised decimal number as Stripe takes it */
	int64_t timestamp;                    /* seconds since the epoch */
	char reason[RULE_REASON_MAX];         /* why RULE_INVALID / RULE_UNMAPPED / no match */
	/* With RULE_INVALID: the PCRE2 limit that stopped the match, or RULE_LIMIT_NONE. Such a
	 * line may have been meant to match: it is counted apart (docs/security.md). */
	enum rule_limit limit;
};

/* The option a limit comes from, such as "match_limit" ("jit_stack" for the JIT's stack);
 * "" for RULE_LIMIT_NONE. A static string. */
const char *rule_limit_name(enum rule_limit limit);

struct rule_set;

/* Compiles every rule of `cfg` (PCRE2 with PCRE2_JIT_COMPLETE where the JIT is available, falling
 * back to the interpreter otherwise), gives each rule a match context with its match_limit,
 * depth_limit and heap_limit (the JIT honours only the first), checks that the groups named by
 * customer, value and timestamp exist, that a constant value is a number, and loads each
 * customer_map once. Errors name the configuration file and line of the offending key, e.g.
 * "FILE:LINE: rule 'x': pattern does not compile at offset 4: missing closing parenthesis"
 * (PCRE2's message, pcre2_get_error_message(3)); all errors are reported, one per line.
 * `cfg` must outlive the rule set. Returns the set (caller frees), or NULL. */
struct rule_set *rule_set_new(const struct config *cfg, char *err, size_t errlen);

/* Frees the set. NULL is a no-op. */
void rule_set_free(struct rule_set *rs);

/* The largest number of rules any one source has: the size of the `out` array for
 * rule_set_apply. */
size_t rule_set_max_per_source(const struct rule_set *rs);

/* Applies every rule of source `source_index`, in configuration order, to one line of `len`
 * bytes (without its "\n"; a trailing "\r" is ignored; the bytes need not be UTF-8 and are
 * matched as bytes). `read_time` (seconds since the epoch) is the timestamp of rules without a
 * timestamp group. Writes one result per rule of the source into `out` (which has room for
 * rule_set_max_per_source entries) and returns how many it wrote. Not thread-safe: one set per
 * thread. Value rules: optional '-', digits, optional '.' and digits; at most 15 significant
 * digits (Stripe's limit since 2026-04-22.dahlia); leading zeros and '+' are normalised away. */
size_t rule_set_apply(struct rule_set *rs, size_t source_index, const char *line, size_t len,
                      int64_t read_time, struct rule_result *out);

/* Parses `text` (`len` bytes) with `format` (strptime(3), or "epoch" for seconds since the epoch
 * with an optional fraction, which is dropped). With %z the offset is applied; without it the
 * time is local time (mktime(3), the TZ environment), as a server writing such a log meant it.
 * A date that does not exist (31 February) does not match.
 * A format without a year (%Y, %y, %G, %s: syslog's "%b %d %H:%M:%S") takes the latest of the
 * year after that of `now` (seconds since the epoch; its year in UTC with %z or %Z, else in local
 * time), that year and the year before, in which the date exists and the time is at most a day
 * after `now`: "Jan 01 00:30:00 +0100" read at 23:30 UTC on 31 December is that very time, not a
 * year earlier. Returns 0 and the seconds since the epoch in *out, or -1 if the text does not
 * match the whole format. */
int rule_parse_timestamp(const char *format, const char *text, size_t len, int64_t now,
                         int64_t *out);

/* Checks and normalises a value: writes the canonical form into `out` (`outlen` bytes).
 * Returns 0; -1 if `text` is not a whole or decimal number; -2 if it has more than 15
 * significant digits, which Stripe refuses since API version 2026-04-22.dahlia. */
int rule_parse_value(const char *text, size_t len, char *out, size_t outlen);

#endif
