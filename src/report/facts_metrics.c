/* facts_metrics: the facts in Prometheus' text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): "# HELP" and "# TYPE" once per
 * metric family, then its samples; label values in double quotes with backslash, double quote
 * and line feed escaped, and UTF-8. Names and units follow
 * https://prometheus.io/docs/practices/naming/ (a `logmeter_` prefix, base units: seconds and
 * bytes, `_total` only for counters). docs/metrics.md lists every family. */
#include <stdlib.h>
#include <string.h>

#include "report/facts.h"
#include "util/log.h"

/* The billing API of the configuration: v1 (POST /v1/billing/meter_events) or v2 (the meter
 * event stream). */
#define API_LABEL (f->api == CONFIG_API_V2 ? "v2" : "v1")

/* Writes `s` as a label value: escaped, and, unless all of it is valid UTF-8 (a path may be any
 * bytes), with its bytes outside ASCII as "\xHH" (log_escape_high), so that two file names that
 * differ in such a byte keep series of their own. */
static void label(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char *hexed = NULL;
	int ascii = 1, utf8 = 1;

	for (const unsigned char *q = p; *q != '\0'; q++)
		ascii &= *q < 0x80;
	if (!ascii) {
		/* Structure of UTF-8 sequences only: lead byte, then continuation bytes. */
		for (const unsigned char *q = p; *q != '\0' && utf8;) {
			size_t n = *q < 0x80             ? 1
			           : (*q & 0xe0) == 0xc0 ? 2
			           : (*q & 0xf0) == 0xe0 ? 3
			           : (*q & 0xf8) == 0xf0 ? 4
			                                 : 0;

			utf8 = n > 0;
			for (size_t i = 1; i < n && utf8; i++)
				utf8 = (q[i] & 0xc0) == 0x80;
			q += n;
		}
	}
	if (!utf8) {
		size_t len = strlen(s) * 4 + 1;

		hexed = malloc(len);
		p = (const unsigned char *)(hexed != NULL ? log_escape_high(hexed, len, s) : "?");
	}
	fputc('"', out);
	for (; *p != '\0'; p++) {
		if (*p == '\\')
			fputs("\\\\", out);
		else if (*p == '"')
			fputs("\\\"", out);
		else if (*p == '\n')
			fputs("\\n", out);
		else
			fputc(*p, out);
	}
	fputc('"', out);
	free(hexed);
}

static void family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample: name{k1="v1",k2="v2"} value, with the pairs of `kv` (NULL-terminated; may be
 * NULL). */
static void sample(FILE *out, const char *name, const char *const *kv, double v)
{
	fputs(name, out);
	if (kv != NULL && kv[0] != NULL) {
		fputc('{', out);
		for (size_t i = 0; kv[i] != NULL; i += 2) {
			fprintf(out, "%s%s=", i ? "," : "", kv[i]);
			label(out, kv[i + 1]);
		}
		fputc('}', out);
	}
	/* Counts as integers; other values with every digit a double holds. */
	if (v == (double)(int64_t)v && v > -1e15 && v < 1e15)
		fprintf(out, " %lld\n", (long long)v);
	else
		fprintf(out, " %.17g\n", v);
}

static void gauge(FILE *out, const char *name, const char *help, double v)
{
	family(out, name, "gauge", help);
	sample(out, name, NULL, v);
}

/* The files with per-file series: the first `max` being read, in the facts' order (by source,
 * then record id), so the set changes only when files start or stop being read. */
static int shown(const struct facts_file *ff, size_t *budget)
{
	if (ff->state != SPOOL_FILE_READING || *budget == 0)
		return 0;
	(*budget)--;
	return 1;
}

static void per_file(FILE *out, const struct facts *f, size_t max_files)
{
	static const char *const results[] = {"matched", "unmatched", "invalid",
	                                      "long",    "bad_utf8",  "torn"};
	size_t budget;

	family(
	    out, "logmeter_lines_total", "counter",
	    "Lines read from a file being read, by what became of them (at most metrics_max_files "
	    "files; logmeter_source_lines_total counts every file).");
	budget = max_files;
	for (size_t i = 0; i < f->n_files; i++) {
		const struct facts_file *ff = &f->files[i];
		const struct spool_counters *c = &ff->counters;
		const int64_t v[] = {c->matched,    c->unmatched, c->invalid,
		                     c->long_lines, c->bad_utf8,  c->torn_lines};

		if (!shown(ff, &budget))
			continue;
		for (size_t r = 0; r < sizeof(results) / sizeof(results[0]); r++) {
			const char *kv[] = {"source", ff->source, "file", ff->path,
			                    "result", results[r], NULL};

			sample(out, "logmeter_lines_total", kv, (double)v[r]);
		}
	}
	family(out, "logmeter_nul_bytes_total", "counter",
	       "NUL bytes skipped in a file being read (the files of logmeter_lines_total).");
	budget = max_files;
	for (size_t i = 0; i < f->n_files; i++) {
		const char *kv[] = {"source", f->files[i].source, "file", f->files[i].path, NULL};

		if (shown(&f->files[i], &budget))
			sample(out, "logmeter_nul_bytes_total", kv,
			       (double)f->files[i].counters.nul_bytes);
	}
	family(out, "logmeter_file_lag_bytes", "gauge",
	       "Bytes of a file being read after its checkpoint (the files of "
	       "logmeter_lines_total).");
	budget = max_files;
	for (size_t i = 0; i < f->n_files; i++) {
		const char *kv[] = {"source", f->files[i].source, "file", f->files[i].path, NULL};

		if (shown(&f->files[i], &budget))
			sample(out, "logmeter_file_lag_bytes", kv, (double)f->files[i].lag);
	}
}

/* Sums of one source's records; f->files is ordered by source. */
struct source_sum {
	const char *source;
	struct spool_counters c;
	int64_t lag; /* of the files being read */
	int64_t n[SPOOL_FILE_GONE + 1];
};

/* Fills sums[] (at most f->n_files of them); returns how many sources. */
static size_t source_sums(const struct facts *f, struct source_sum *sums)
{
	size_t n = 0;

	for (size_t i = 0; i < f->n_files; i++) {
		const struct facts_file *ff = &f->files[i];
		struct source_sum *s;

		if (n == 0 || strcmp(sums[n - 1].source, ff->source) != 0) {
			memset(&sums[n], 0, sizeof(sums[n]));
			sums[n++].source = ff->source;
		}
		s = &sums[n - 1];
		s->c.lines += ff->counters.lines;
		s->c.matched += ff->counters.matched;
		s->c.unmatched += ff->counters.unmatched;
		s->c.invalid += ff->counters.invalid;
		s->c.bad_utf8 += ff->counters.bad_utf8;
		s->c.torn_lines += ff->counters.torn_lines;
		s->c.long_lines += ff->counters.long_lines;
		s->c.nul_bytes += ff->counters.nul_bytes;
		s->c.events += ff->counters.events;
		s->c.resets += ff->counters.resets;
		if (ff->state == SPOOL_FILE_READING)
			s->lag += ff->lag;
		if ((int)ff->state >= 0 && ff->state <= SPOOL_FILE_GONE)
			s->n[ff->state]++;
	}
	return n;
}

static void per_source(FILE *out, const struct source_sum *sums, size_t n)
{
	static const char *const results[] = {"matched", "unmatched", "invalid",
	                                      "long",    "bad_utf8",  "torn"};

	family(out, "logmeter_source_lines_total", "counter",
	       "Lines read from every file of a source, by what became of them.");
	for (size_t i = 0; i < n; i++) {
		const int64_t v[] = {sums[i].c.matched,  sums[i].c.unmatched,
		                     sums[i].c.invalid,  sums[i].c.long_lines,
		                     sums[i].c.bad_utf8, sums[i].c.torn_lines};

		for (size_t r = 0; r < sizeof(results) / sizeof(results[0]); r++) {
			const char *kv[] = {"source", sums[i].source, "result", results[r], NULL};

			sample(out, "logmeter_source_lines_total", kv, (double)v[r]);
		}
	}
#define PER_SOURCE(name, type, help, expr)                                                         \
	family(out, name, type, help);                                                             \
	for (size_t i = 0; i < n; i++) {                                                           \
		const char *kv[] = {"source", sums[i].source, NULL};                               \
		sample(out, name, kv, (double)(expr));                                             \
	}
	PER_SOURCE("logmeter_source_nul_bytes_total", "counter",
	           "NUL bytes skipped in every file of a source.", sums[i].c.nul_bytes)
	PER_SOURCE("logmeter_source_events_total", "counter",
	           "Events made from the lines of every file of a source.", sums[i].c.events)
	PER_SOURCE("logmeter_source_checkpoint_resets_total", "counter",
	           "Times a file's checkpoint was found stale and the file read again from its "
	           "start.",
	           sums[i].c.resets)
	PER_SOURCE("logmeter_source_lag_bytes", "gauge",
	           "Bytes after the checkpoints of every file of a source being read.", sums[i].lag)
#undef PER_SOURCE
	family(out, "logmeter_files", "gauge", "File records of a source, by state.");
	for (size_t i = 0; i < n; i++) {
		for (int st = SPOOL_FILE_READING; st <= SPOOL_FILE_GONE; st++) {
			const char *kv[] = {"source", sums[i].source, "state",
			                    spool_file_state_name((enum spool_file_state)st), NULL};

			sample(out, "logmeter_files", kv, (double)sums[i].n[st]);
		}
	}
}

static void events(FILE *out, const struct facts *f)
{
	static const char *const states[] = {"pending", "delivered", "dead", "unsure"};

	family(out, "logmeter_spool_events", "gauge",
	       "Events in the spool, by rule and state (delivered ones leave it after "
	       "delivered_retention).");
	for (size_t i = 0; i < f->n_rules; i++) {
		for (int st = EVENT_PENDING; st <= EVENT_UNSURE; st++) {
			const char *kv[] = {"rule", f->rules[i].rule, "state", states[st], NULL};

			sample(out, "logmeter_spool_events", kv, (double)f->rules[i].n[st]);
		}
	}
	gauge(out, "logmeter_pending_events", "Events waiting to be sent.",
	      (double)f->counts.pending);
	gauge(out, "logmeter_dead_events", "Dead letters: events Stripe refused, kept with why.",
	      (double)f->counts.dead);
	gauge(out, "logmeter_unsure_events",
	      "Events whose attempts had unknown outcomes for unsure_after: not re-sent by "
	      "themselves.",
	      (double)f->counts.unsure);
	gauge(out, "logmeter_windows_open",
	      "Open aggregation windows: usage summed, not yet a meter event.",
	      (double)f->windows_open);
	gauge(out, "logmeter_window_lines", "Lines in the open aggregation windows.",
	      (double)f->window_lines);
	gauge(out, "logmeter_windows_overdue_seconds",
	      "How long ago the first open aggregation window was due to close (its end plus "
	      "aggregate_grace); 0 if none is overdue. Only a running agent closes windows.",
	      (double)(f->window_due_first > 0 && f->window_due_first < f->now
	                   ? f->now - f->window_due_first
	                   : 0));
	gauge(out, "logmeter_oldest_pending_seconds",
	      "Age of the oldest pending event's timestamp (Stripe refuses events older than 35 "
	      "days); 0 when none is pending.",
	      f->oldest_pending > 0 ? (double)(f->now - f->oldest_pending) : 0.0);
}

static void room(FILE *out, const struct facts *f)
{
	const struct spool_usage *u = &f->usage;
	int paused = f->ingest.running && f->ingest.state != SPACE_READING;

	if (f->usage_known) {
		gauge(out, "logmeter_spool_bytes",
		      "Bytes of spool.db pages in use (what max_spool_bytes bounds).",
		      (double)((u->pages - u->free_pages) * u->page_size));
		gauge(out, "logmeter_spool_wal_bytes", "Bytes of the spool's write-ahead log file.",
		      (double)u->wal_file);
	}
	if (f->fs_known)
		gauge(out, "logmeter_spool_filesystem_free_bytes",
		      "Bytes free on the file system of state_dir.", (double)f->fs_free);
	gauge(out, "logmeter_ingest_running", "1 if the ingest thread runs.", f->ingest.running);
	gauge(out, "logmeter_ingest_paused",
	      "1 if reading is paused for lack of room (disk full, or max_spool_bytes reached).",
	      paused);
	gauge(out, "logmeter_ingest_responding",
	      "1 if the ingest thread runs and its live state is younger than stale_after.",
	      f->ingest.running && !f->ingest_stale);
}

static void sender(FILE *out, const struct facts *f)
{
	const struct sender_status *st = &f->sender;
	int paused = st->running && strncmp(st->state, "paused", 6) == 0;
	const char *api[] = {"api", API_LABEL, NULL};
	long long cum = 0;
	char le[32];

	gauge(out, "logmeter_sender_running", "1 if the sender runs.", st->running);
	gauge(out, "logmeter_sender_paused",
	      "1 if sending is paused: the key refused, answers that are not Stripe's, or v2 "
	      "sessions "
	      "expiring as soon as they are made.",
	      paused);
	gauge(out, "logmeter_key_refused", "1 if Stripe refused the API key (401 or 403).",
	      st->running && strcmp(st->state, "paused-auth") == 0);
	gauge(out, "logmeter_sender_responding",
	      "1 if the sender runs and its live state is younger than stale_after.",
	      st->running && !f->sender_stale);
	if (!st->running)
		return;
	gauge(out, "logmeter_sender_in_flight_requests", "Requests in flight.",
	      (double)st->in_flight);
	gauge(out, "logmeter_sender_in_flight_events", "Events in the requests in flight.",
	      (double)st->in_flight_events);
	gauge(out, "logmeter_sender_retrying_events", "Events waiting for their next attempt.",
	      (double)st->retrying);
	gauge(out, "logmeter_sender_queued_events",
	      "Events in the sender's queue ready to be sent (not in flight, waiting to retry or "
	      "held).",
	      (double)st->queued);
	gauge(out, "logmeter_sender_held_events",
	      "Events held for a timestamp ahead of this host's clock.", (double)st->held);
	gauge(out, "logmeter_sender_max_requests_per_second",
	      "Most requests per second: max_requests_per_second, or Stripe's for the key.",
	      st->rate_max);
	gauge(out, "logmeter_sender_requests_per_second",
	      "Requests per second allowed now (lowered after a 429).", st->rate);
	family(out, "logmeter_requests_total", "counter",
	       "Requests to the billing API that ended, by outcome, since the sender started.");
	for (size_t i = 0; i < STRIPE_OUTCOMES; i++) {
		const char *kv[] = {"api", API_LABEL, "outcome",
		                    stripe_outcome_name((enum stripe_outcome)i), NULL};

		sample(out, "logmeter_requests_total", kv, (double)st->outcomes[i]);
	}
	family(out, "logmeter_request_duration_seconds", "histogram",
	       "Duration of requests to the billing API, since the sender started.");
	for (size_t i = 0; i <= SENDER_DURATION_BOUNDS; i++) {
		const char *kv[] = {"api", API_LABEL, "le", le, NULL};

		cum += st->duration_counts[i];
		if (i < SENDER_DURATION_BOUNDS)
			snprintf(le, sizeof(le), "%g", sender_duration_bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		sample(out, "logmeter_request_duration_seconds_bucket", kv, (double)cum);
	}
	sample(out, "logmeter_request_duration_seconds_sum", api, st->duration_sum);
	sample(out, "logmeter_request_duration_seconds_count", api, (double)cum);
}

/* What the guard refused and counted (docs/security.md), once the agent wrote it. */
static void guard(FILE *out, const struct facts *f)
{
	const struct guard_status *g = &f->guard;
	const char *links[] = {"reason", "symlink", NULL};
	const char *own[] = {"reason", "protected", NULL};
	const char *shared[] = {"reason", "shared", NULL};

	if (!g->found)
		return;
	family(out, "logmeter_files_refused_total", "counter",
	       "Log files refused, once per path: symlinks a source does not follow, files of "
	       "logmeter's own (the key, the configuration, the spool), files another source "
	       "reads (its glob matches them too), since the agent started.");
	sample(out, "logmeter_files_refused_total", links, (double)g->counts.refused_links);
	sample(out, "logmeter_files_refused_total", own, (double)g->counts.refused_protected);
	sample(out, "logmeter_files_refused_total", shared, (double)g->counts.shared_files);
	family(out, "logmeter_limit_lines_total", "counter",
	       "Lines that hit a PCRE2 limit of a rule (no event for that rule), since the agent "
	       "started.");
	for (size_t i = 0; i < g->n_rules; i++) {
		for (int l = RULE_LIMIT_NONE + 1; l < RULE_LIMITS; l++) {
			const char *kv[] = {"rule", g->rules[i].rule, "limit",
			                    rule_limit_name((enum rule_limit)l), NULL};

			if (g->rules[i].hits[l] > 0)
				sample(out, "logmeter_limit_lines_total", kv,
				       (double)g->rules[i].hits[l]);
		}
	}
}

int facts_print_metrics(FILE *out, const struct facts *f, size_t max_files)
{
	const char *version[] = {"version", PACKAGE_VERSION, NULL};
	struct source_sum *sums = calloc(f->n_files > 0 ? f->n_files : 1, sizeof(*sums));
	size_t n;

	if (sums == NULL)
		return -1;
	family(out, "logmeter_build_info", "gauge", "The logmeter build (always 1).");
	sample(out, "logmeter_build_info", version, 1);
	gauge(out, "logmeter_degraded",
	      "1 if `logmeter status` says degraded: reading or sending paused.", f->degraded);
	per_file(out, f, max_files);
	n = source_sums(f, sums);
	per_source(out, sums, n);
	free(sums);
	events(out, f);
	room(out, f);
	guard(out, f);
	sender(out, f);
	return ferror(out) ? -1 : 0;
}
