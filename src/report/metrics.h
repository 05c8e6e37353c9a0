/* metrics: the agent's Prometheus endpoint. The agent binds [agent] metrics_listen itself and
 * hands the listening socket to a server process of its own (`logmeter metrics-serve`, started
 * from the agent's binary), where a libmicrohttpd daemon answers GET /metrics with the facts
 * (report/facts.h) gathered anew at each scrape, through a read-only spool handle of its own:
 * the numbers are those of `logmeter status` at that moment. Another process, so that a frozen
 * agent (SIGSTOP, a hung thread) still has its metrics served, saying that its live state is
 * stale, instead of a scrape that hangs. docs/metrics.md. */
#ifndef LOGMETER_METRICS_H
#define LOGMETER_METRICS_H

#include <stddef.h>

#include "config/config.h"

/* ---- in the agent ---- */

struct metrics;

/* Listens on cfg->agent.metrics_listen (which must be set; port 0: any free port) and starts
 * the server process on it, with the configuration file `config_path` (the agent's -c, read
 * again by the server: it must be the file `cfg` was loaded from). Logs the address it listens
 * on (with the port chosen for port 0), and a warning for an address outside loopback: the
 * endpoint has no authentication. Returns the endpoint (metrics_free), or NULL with the reason
 * in `err` (the address cannot be bound, say, naming it). */
struct metrics *metrics_new(const struct config *cfg, const char *config_path, char *err,
                            size_t errlen);

/* A reload kept the endpoint's address: the server process is started again, so that it reads
 * the new configuration (metrics_max_files, stale_after), on the same socket: no scrape is
 * refused meanwhile (the kernel queues them). */
void metrics_set_config(struct metrics *m, const struct config *cfg);

/* Called when a child process ended (SIGCHLD): if it is the server, reaps it and starts it
 * again, unless it ended within a second of its start twice in a row (then it logs that the
 * endpoint is down until the next reload). Other children are not touched. NULL is a no-op. */
void metrics_reap(struct metrics *m);

/* The port it listens on (the one chosen for port 0), or 0. */
unsigned metrics_port(const struct metrics *m);

/* Stops the server process (SIGTERM; a scrape under way finishes first), closes the socket and
 * frees. NULL is a no-op. */
void metrics_free(struct metrics *m);

/* ---- in the server process ---- */

struct metrics_server;

/* Serves the metrics of `cfg` (borrowed until metrics_server_free) on the listening socket `fd`
 * (taken over) with libmicrohttpd's own thread: at most 16 connections at once, each closed
 * after 30 s idle; GET and HEAD of /metrics, 404 elsewhere, 405 for other methods. Returns the
 * server, or NULL (`err`) if the daemon could not start. */
struct metrics_server *metrics_server_new(const struct config *cfg, int fd, char *err,
                                          size_t errlen);

/* Stops the daemon (a scrape under way finishes first), closes its descriptor of the socket
 * without shutting the socket down (the agent's: the server started after this one serves on it)
 * and frees. NULL is a no-op. */
void metrics_server_free(struct metrics_server *s);

#endif
