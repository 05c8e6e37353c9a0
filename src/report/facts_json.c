/* facts_json: the JSON document of `logmeter status --json` (docs/status-json.md), built with
 * jansson from the same facts as the text. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "report/facts.h"
#include "util/log.h"

/* A time (seconds since the epoch), or null for 0: "never" or "not now". */
static json_t *time_or_null(int64_t t)
{
	return t > 0 ? json_integer((json_int_t)t) : json_null();
}

/* A JSON string of `s`; text that is not UTF-8 (a path may be any bytes) has its bytes outside
 * ASCII as "\xHH" (log_escape_high). */
static json_t *text(const char *s)
{
	json_t *j = json_string(s);
	size_t len = strlen(s) * 4 + 1;
	char *copy;

	if (j != NULL || (copy = malloc(len)) == NULL)
		return j;
	j = json_string(log_escape_high(copy, len, s));
	free(copy);
	return j;
}

static json_t *text_or_null(const char *s)
{
	return s != NULL && s[0] != '\0' ? text(s) : json_null();
}

static json_t *health_json(const struct facts *f)
{
	json_t *problems = json_array();

	for (size_t i = 0; i < f->n_problems; i++)
		json_array_append_new(problems, text(f->problems[i]));
	return json_pack("{s:s, s:o, s:o}", "status", f->degraded ? "degraded" : "ok", "problems",
	                 problems, "dead_since",
	                 f->since_set ? json_pack("{s:I, s:I}", "since", (json_int_t)f->since,
	                                          "count", (json_int_t)f->dead_since)
	                              : json_null());
}

static json_t *events_json(const struct facts *f)
{
	json_t *rules = json_array();

	for (size_t i = 0; i < f->n_rules; i++) {
		const struct facts_rule *r = &f->rules[i];

		json_array_append_new(rules,
		                      json_pack("{s:s, s:I, s:I, s:I, s:I}", "rule", r->rule,
		                                "pending", (json_int_t)r->n[EVENT_PENDING],
		                                "delivered", (json_int_t)r->n[EVENT_DELIVERED],
		                                "dead", (json_int_t)r->n[EVENT_DEAD], "unsure",
		                                (json_int_t)r->n[EVENT_UNSURE]));
	}
	return json_pack(
	    "{s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "pending", (json_int_t)f->counts.pending,
	    "delivered", (json_int_t)f->counts.delivered, "dead", (json_int_t)f->counts.dead,
	    "unsure", (json_int_t)f->counts.unsure, "oldest_pending_timestamp",
	    time_or_null(f->oldest_pending), "oldest_pending_age_seconds",
	    f->oldest_pending > 0 ? json_integer((json_int_t)(f->now - f->oldest_pending))
	                          : json_null(),
	    "by_rule", rules);
}

static json_t *ingest_json(const struct facts *f)
{
	const struct space_status *in = &f->ingest;
	const char *state = f->ingest_err[0] != '\0' ? "unknown"
	                    : !in->running           ? "not-running"
	                                             : space_state_name(in->state);
	int paused = in->running && in->state != SPACE_READING;

	return json_pack("{s:s, s:b, s:b, s:o, s:o, s:o, s:b, s:o}", "state", state, "running",
	                 in->running, "paused", paused, "paused_since",
	                 time_or_null(paused ? in->since : 0), "detail",
	                 text_or_null(paused ? in->detail : ""), "error",
	                 text_or_null(f->ingest_err), "responding", in->running && !f->ingest_stale,
	                 "heartbeat", time_or_null(in->running ? in->written : 0));
}

static json_t *space_json(const struct facts *f)
{
	const struct spool_usage *u = &f->usage;

	if (!f->usage_known)
		return json_pack("{s:b, s:o}", "known", 0, "error", text(f->usage_err));
	return json_pack("{s:b, s:I, s:I, s:I, s:o, s:o}", "known", 1, "bytes_in_use",
	                 (json_int_t)((u->pages - u->free_pages) * u->page_size), "free_page_bytes",
	                 (json_int_t)(u->free_pages * u->page_size), "wal_bytes",
	                 (json_int_t)u->wal_file, "max_spool_bytes",
	                 f->max_spool_bytes > 0 ? json_integer((json_int_t)f->max_spool_bytes)
	                                        : json_null(),
	                 "file_system_free_bytes",
	                 f->fs_known ? json_integer((json_int_t)f->fs_free) : json_null());
}

static json_t *requests_json(const struct sender_status *st)
{
	json_t *by = json_object(), *buckets = json_array();
	long long cum = 0;

	for (size_t i = 0; i < STRIPE_OUTCOMES; i++)
		json_object_set_new(by, stripe_outcome_name((enum stripe_outcome)i),
		                    json_integer((json_int_t)st->outcomes[i]));
	for (size_t i = 0; i <= SENDER_DURATION_BOUNDS; i++) {
		cum += st->duration_counts[i];
		json_array_append_new(buckets, json_pack("{s:o, s:I}", "le",
		                                         i < SENDER_DURATION_BOUNDS
		                                             ? json_real(sender_duration_bounds[i])
		                                             : json_string("+Inf"),
		                                         "count", (json_int_t)cum));
	}
	return json_pack("{s:o, s:o, s:{s:o, s:f, s:I}}", "since", time_or_null(st->started),
	                 "by_outcome", by, "duration_seconds", "buckets", buckets, "sum",
	                 st->duration_sum, "count", (json_int_t)cum);
}

static json_t *sender_json(const struct facts *f)
{
	const struct sender_status *st = &f->sender;
	int paused = st->running && strncmp(st->state, "paused", 6) == 0;
	json_t *rate;

	if (f->sender_err[0] != '\0')
		return json_pack("{s:s, s:b, s:o}", "state", "unknown", "running", 0, "error",
		                 text(f->sender_err));
	if (!st->running) {
		rate =
		    json_pack("{s:o, s:o, s:o, s:o}", "max",
		              f->rate_known ? json_real(f->rate_max) : json_null(), "now",
		              json_null(), "source", text(f->rate_why), "lowered_at", json_null());
		return json_pack("{s:s, s:b, s:b, s:o}", "state", "not-running", "running", 0,
		                 "paused", 0, "rate", rate);
	}
	rate = json_pack("{s:f, s:f, s:o, s:o}", "max", st->rate_max, "now", st->rate, "source",
	                 text(st->rate_why), "lowered_at",
	                 time_or_null(st->rate + 0.05 < st->rate_max ? st->rate_cut : 0));
	return json_pack("{s:s, s:b, s:b, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:o, "
	                 "s:o, s:b, s:o, s:o, s:o}",
	                 "state", st->state, "running", 1, "paused", paused, "pause_reason",
	                 text_or_null(paused ? st->detail : ""), "paused_since",
	                 time_or_null(paused ? st->since : 0), "retry_at",
	                 time_or_null(paused ? st->pause_until : 0), "retry_after_until",
	                 time_or_null(st->hold_until > f->now ? st->hold_until : 0), "in_flight",
	                 (json_int_t)st->in_flight, "retrying", (json_int_t)st->retrying, "queued",
	                 (json_int_t)st->queued, "held", (json_int_t)st->held, "in_flight_events",
	                 (json_int_t)st->in_flight_events, "not_loaded",
	                 (json_int_t)facts_not_loaded(f), "rate", rate, "requests",
	                 requests_json(st), "responding", !f->sender_stale, "heartbeat",
	                 time_or_null((int64_t)st->written), "stripe_clock_behind",
	                 st->stripe_behind > 0 ? json_integer(st->stripe_behind) : json_null(),
	                 "stripe_clock_behind_from", text_or_null(st->stripe_behind_from));
}

static json_t *file_json(const struct facts_file *ff)
{
	const struct spool_counters *c = &ff->counters;

	return json_pack(
	    "{s:o, s:o, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I, "
	    "s:I, s:I, s:I, s:I, s:I}}",
	    "path", text(ff->path), "recorded_path",
	    ff->recorded != NULL ? text(ff->recorded) : json_null(), "source", ff->source,
	    "identity", ff->uid, "dev", (json_int_t)ff->dev, "inode", (json_int_t)ff->ino, "state",
	    spool_file_state_name(ff->state), "offset", (json_int_t)ff->offset, "size",
	    (json_int_t)ff->size, "lag", (json_int_t)ff->lag, "left_to",
	    ff->left_to[0] != '\0' ? json_string(ff->left_to) : json_null(), "counters", "lines",
	    (json_int_t)c->lines, "matched", (json_int_t)c->matched, "unmatched",
	    (json_int_t)c->unmatched, "invalid", (json_int_t)c->invalid, "long_lines",
	    (json_int_t)c->long_lines, "nul_bytes", (json_int_t)c->nul_bytes, "events",
	    (json_int_t)c->events, "resets", (json_int_t)c->resets, "bad_utf8",
	    (json_int_t)c->bad_utf8, "torn_lines", (json_int_t)c->torn_lines);
}

/* The guard's counts (docs/security.md): null before the agent wrote them. */
static json_t *guard_json(const struct facts *f)
{
	const struct guard_status *g = &f->guard;
	json_t *rules, *tailing;

	if (!g->found)
		return json_null();
	rules = json_array();
	for (size_t i = 0; i < g->n_rules; i++) {
		json_t *r = json_pack("{s:s}", "rule", g->rules[i].rule);

		for (int l = RULE_LIMIT_NONE + 1; l < RULE_LIMITS; l++)
			json_object_set_new(r, rule_limit_name((enum rule_limit)l),
			                    json_integer((json_int_t)g->rules[i].hits[l]));
		json_array_append_new(rules, r);
	}
	tailing = json_object();
	for (int w = 0; w < GUARD_TAILINGS; w++)
		json_object_set_new(
		    tailing, guard_tailing_name((enum guard_tailing)w),
		    json_pack("{s:I, s:o, s:o}", "count", (json_int_t)g->counts.tailing[w], "last",
		              time_or_null(g->counts.tailing_last[w]), "path",
		              g->tailing_path[w][0] != '\0' ? text(g->tailing_path[w])
		                                            : json_null()));
	return json_pack(
	    "{s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:o, s:I, s:o}", "refused_symlinks",
	    (json_int_t)g->counts.refused_links, "refused_protected",
	    (json_int_t)g->counts.refused_protected, "limit_lines",
	    (json_int_t)g->counts.limit_lines, "limit_last", time_or_null(g->counts.limit_last),
	    "limits_by_rule", rules, "limits_rules_cut", (json_int_t)g->rules_cut, "gone_unread",
	    (json_int_t)g->counts.gone_unread, "gone_last", time_or_null(g->counts.gone_last),
	    "shared_files", (json_int_t)g->counts.shared_files, "tailing", tailing);
}

static json_t *windows_json(const struct facts *f)
{
	json_t *list = json_array();

	for (size_t i = 0; i < f->n_windows; i++) {
		const struct spool_window *w = &f->windows[i];

		json_array_append_new(
		    list,
		    json_pack("{s:o, s:o, s:I, s:I, s:I, s:o, s:I, s:I}", "rule", text(w->rule),
		              "customer", text(w->customer), "start", (json_int_t)w->start, "end",
		              (json_int_t)(w->start + w->length), "close_after",
		              (json_int_t)w->close_after, "total", text(w->total), "lines",
		              (json_int_t)w->lines, "late", (json_int_t)w->late));
	}
	return json_pack("{s:I, s:o}", "open", (json_int_t)f->windows_open, "list", list);
}

/* "sources": [{"name", "path", "files", "problem"}]. */
static json_t *sources_json(const struct facts *f)
{
	json_t *list = json_array();

	for (size_t i = 0; i < f->n_sources; i++) {
		const struct facts_source *fs = &f->sources[i];

		json_array_append_new(list, json_pack("{s:o, s:o, s:I, s:o}", "name",
		                                      text(fs->name), "path", text(fs->path),
		                                      "files", (json_int_t)fs->files, "problem",
		                                      text_or_null(fs->problem)));
	}
	return list;
}

int facts_print_json_error(FILE *out, int64_t now, const char *why)
{
	json_t *doc =
	    json_pack("{s:i, s:I, s:o, s:{s:s, s:[o], s:n}}", "schema_version",
	              FACTS_SCHEMA_VERSION, "now", (json_int_t)now, "error", text(why), "health",
	              "status", "degraded", "problems", text(why), "dead_since");
	int rc = -1;

	if (doc != NULL && json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 &&
	    fputc('\n', out) != EOF)
		rc = 0;
	json_decref(doc);
	return rc;
}

int facts_print_json(FILE *out, const struct facts *f, char *err, size_t errlen)
{
	json_t *files = json_array(), *doc;
	int rc = -1;

	for (size_t i = 0; i < f->n_files; i++)
		json_array_append_new(files, file_json(&f->files[i]));
	/* json_pack steals the references of "o" values, also when it fails. */
	doc = json_pack("{s:i, s:I, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
	                "schema_version", FACTS_SCHEMA_VERSION, "now", (json_int_t)f->now, "spool",
	                text(f->spool), "instance", f->instance, "health", health_json(f), "events",
	                events_json(f), "last_error", text_or_null(f->last_error), "ingest",
	                ingest_json(f), "space", space_json(f), "guard", guard_json(f), "sender",
	                sender_json(f), "windows", windows_json(f), "sources", sources_json(f),
	                "files", files);
	if (doc == NULL) {
		err_set(err, errlen,
		        "cannot build the JSON status (out of memory, or text that is "
		        "not UTF-8)");
		return -1;
	}
	if (json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 &&
	    fputc('\n', out) != EOF)
		rc = 0;
	else
		err_set(err, errlen, "cannot write the JSON status");
	json_decref(doc);
	return rc;
}
