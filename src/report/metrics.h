/* metrics: the agent's Prometheus endpoint. A libmicrohttpd daemon with its own thread listens
 * on [agent] metrics_listen and answers GET /metrics with the facts (report/facts.h) gathered
 * anew at each scrape, through a read-only spool handle of its own: the numbers are those of
 * `logmeter status` at that moment. docs/metrics.md. */
#ifndef LOGMETER_METRICS_H
#define LOGMETER_METRICS_H

#include <stddef.h>

#include "config/config.h"

struct metrics;

/* Starts the endpoint on cfg->agent.metrics_listen (which must be set) for the spool of
 * cfg->agent.state_dir. `cfg` is borrowed until metrics_set_config replaces it or metrics_free.
 * Logs the address it listens on (with the port chosen for port 0), and a warning for an
 * address outside loopback: the endpoint has no authentication. Returns the endpoint
 * (metrics_free), or NULL with the reason in `err` (the address cannot be bound, say). */
struct metrics *metrics_new(const struct config *cfg, char *err, size_t errlen);

/* A reload kept the endpoint's address: scrapes read `cfg` from now on (metrics_max_files).
 * Waits for a scrape under way, so that the caller may free the old configuration once this
 * returns. Thread-safe. */
void metrics_set_config(struct metrics *m, const struct config *cfg);

/* The port it listens on (the one chosen for port 0), or 0. */
unsigned metrics_port(const struct metrics *m);

/* Stops the daemon (its thread ends; a scrape under way finishes first) and frees. NULL is a
 * no-op. */
void metrics_free(struct metrics *m);

#endif
