#include "cli/admin.h"

#include <ctype.h>
#include <stdio.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/custmap.h"
#include "util/crash.h"
#include "util/log.h"
#include "store/report.h"
#include "store/spool.h"
#include "store/spool_repair.h"

static const char *const state_names[] = {"pending", "delivered", "dead", "unsure"};

int admin_state_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof(state_names) / sizeof(state_names[0])); i++)
		if (name != NULL && strcmp(name, state_names[i]) == 0)
			return i;
	return -1;
}

static void iso_time(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, outlen, "@%" PRId64, t);
}

/* ---- --since TIME ---- */

static int parse_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int admin_parse_time(const char *text, int64_t now, int64_t *out)
{
	const char *p = text;
	struct tm tm;
	int y, mo, d, h = 0, mi = 0, s = 0, oh, om, sign = 0;
	int64_t t;

	if (text == NULL || *text == '\0')
		return -1;
	if (*p == '@') {
		char *end;
		long long v;

		errno = 0;
		v = strtoll(p + 1, &end, 10);
		if (p[1] == '\0' || *end != '\0' || errno != 0 || v < 0)
			return -1;
		*out = v;
		return 0;
	}
	/* A duration ago: digits and one unit. */
	{
		char *end;
		unsigned long long n;

		errno = 0;
		n = strtoull(p, &end, 10);
		if (end != p && end[0] != '\0' && end[1] == '\0' && isdigit((unsigned char)p[0]) &&
		    errno == 0 && n < 100ULL * 365 * 86400) {
			int64_t unit = 0;

			switch (end[0]) {
			case 's':
				unit = 1;
				break;
			case 'm':
				unit = 60;
				break;
			case 'h':
				unit = 3600;
				break;
			case 'd':
				unit = 86400;
				break;
			case 'w':
				unit = 7 * 86400;
				break;
			}
			if (unit == 0)
				return -1;
			*out = now - (int64_t)n * unit;
			return 0;
		}
	}
	if (parse_digits(&p, 4, &y) < 0 || *p++ != '-' || parse_digits(&p, 2, &mo) < 0 ||
	    *p++ != '-' || parse_digits(&p, 2, &d) < 0)
		return -1;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (parse_digits(&p, 2, &h) < 0 || *p++ != ':' || parse_digits(&p, 2, &mi) < 0)
			return -1;
		if (*p == ':') {
			p++;
			if (parse_digits(&p, 2, &s) < 0)
				return -1;
			if (*p == '.' || *p == ',') {
				p++;
				if (!isdigit((unsigned char)*p))
					return -1;
				while (isdigit((unsigned char)*p))
					p++; /* fractions of a second are dropped */
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			sign = *p++ == '+' ? 1 : -1;
			if (parse_digits(&p, 2, &oh) < 0)
				return -1;
			if (*p == ':')
				p++;
			if (parse_digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
				return -1;
		}
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	t = (int64_t)timegm(&tm);
	/* timegm normalises 31 February to March: refuse dates that do not exist. */
	if (tm.tm_mday != d || tm.tm_mon != mo - 1)
		return -1;
	if (sign != 0)
		t -= sign * (int64_t)(oh * 3600 + om * 60);
	*out = t;
	return 0;
}

/* ---- replay ---- */

struct rule_count {
	char rule[EVENT_RULE_MAX];
	int64_t moved;    /* to pending */
	int64_t remapped; /* of which got their customer id from the customer map now */
	int64_t unmapped; /* kept: their customer key is still not in the map */
	int64_t no_map;   /* kept: no customer, and the rule has no customer map (or is gone) */
	int64_t too_old;  /* --delivered: delivered more than 24 hours ago */
	int64_t window;   /* kept: timestamp outside Stripe's 35-day window */
	int64_t unsure;   /* --dead: moved, but their first unknown outcome is past unsure_after */
};

struct map_cache {
	char *path;
	struct custmap *map;
};

struct replay_ctx {
	const struct config *cfg;
	const struct admin_replay *opt;
	struct rule_count *counts;
	size_t n_counts;
	struct map_cache *maps;
	size_t n_maps;
	int64_t too_old;
	char stamp[32];
	char since[32]; /* opt->since as an RFC 3339 time, "" if 0 */
	char err[1024];
};

static struct rule_count *count_for(struct replay_ctx *c, const char *rule)
{
	struct rule_count *p;

	for (size_t i = 0; i < c->n_counts; i++)
		if (strcmp(c->counts[i].rule, rule) == 0)
			return &c->counts[i];
	p = realloc(c->counts, (c->n_counts + 1) * sizeof(*p));
	if (p == NULL)
		return NULL;
	c->counts = p;
	p = &c->counts[c->n_counts++];
	memset(p, 0, sizeof(*p));
	snprintf(p->rule, sizeof(p->rule), "%s", rule);
	return p;
}

static const struct config_rule *rule_find(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_rules; i++)
		if (strcmp(cfg->rules[i].name, name) == 0)
			return &cfg->rules[i];
	return NULL;
}

/* The customer map at `path`, loaded once. NULL with c->err set if it does not load. */
static const struct custmap *map_get(struct replay_ctx *c, const char *path)
{
	struct map_cache *p;
	struct custmap *m;

	for (size_t i = 0; i < c->n_maps; i++)
		if (strcmp(c->maps[i].path, path) == 0)
			return c->maps[i].map;
	m = custmap_load(path, c->err, sizeof(c->err));
	if (m == NULL)
		return NULL;
	p = realloc(c->maps, (c->n_maps + 1) * sizeof(*p));
	if (p == NULL || (p[c->n_maps].path = strdup(path)) == NULL) {
		if (p != NULL)
			c->maps = p;
		custmap_free(m);
		err_set(c->err, sizeof(c->err), "out of memory");
		return NULL;
	}
	c->maps = p;
	c->maps[c->n_maps++].map = m;
	return m;
}

static void replay_ctx_reset(struct replay_ctx *c)
{
	free(c->counts);
	c->counts = NULL;
	c->n_counts = 0;
	c->too_old = 0;
}

static void replay_ctx_free(struct replay_ctx *c)
{
	replay_ctx_reset(c);
	for (size_t i = 0; i < c->n_maps; i++) {
		free(c->maps[i].path);
		custmap_free(c->maps[i].map);
	}
	free(c->maps);
}

static int replay_decide(struct event *ev, void *ud)
{
	struct replay_ctx *c = ud;
	struct rule_count *rc = count_for(c, ev->rule);
	char old[EVENT_ERROR_MAX], when[32];
	int remapped = 0;

	if (rc == NULL) {
		err_set(c->err, sizeof(c->err), "out of memory");
		return -1;
	}
	if (ev->timestamp < c->opt->now - EVENT_MAX_AGE_S) {
		rc->window++;
		return 0;
	}
	/* Stripe may have had it since its first attempt with an unknown outcome, long before
	 * logmeter marked it delivered (from a later "already exists"): the earlier time counts. */
	if (c->opt->from == EVENT_DELIVERED &&
	    (ev->delivered_at < c->opt->now - ADMIN_DEDUPE_WINDOW_S ||
	     (ev->first_unknown > 0 && ev->first_unknown < c->opt->now - ADMIN_DEDUPE_WINDOW_S))) {
		rc->too_old++;
		c->too_old++;
		if (!c->opt->force)
			return 0;
	}
	if (ev->customer[0] == '\0') {
		/* An unmapped customer key: try the rule's customer map as it is now. */
		const struct config_rule *r = rule_find(c->cfg, ev->rule);
		const struct custmap *m;
		const char *id;

		if (r == NULL || r->customer_map == NULL) {
			rc->no_map++;
			return 0;
		}
		m = map_get(c, r->customer_map);
		if (m == NULL)
			return -1;
		id = custmap_lookup(m, ev->customer_key, strlen(ev->customer_key));
		if (id == NULL) {
			rc->unmapped++;
			return 0;
		}
		snprintf(ev->customer, sizeof(ev->customer), "%s", id);
		remapped = 1;
	}
	if (c->opt->from == EVENT_DEAD && ev->first_unknown > 0 &&
	    ev->first_unknown < c->opt->now - c->cfg->stripe.unsure_after_s)
		rc->unsure++; /* moved, but the sender makes it unsure instead of sending it */
	snprintf(old, sizeof(old), "%s", ev->last_error);
	if (c->opt->from == EVENT_DELIVERED) {
		iso_time(ev->delivered_at, when, sizeof(when));
		snprintf(ev->last_error, sizeof(ev->last_error),
		         "replayed at %s: re-sent after its delivery at %s", c->stamp, when);
	} else if (c->opt->from == EVENT_UNSURE) {
		snprintf(ev->last_error, sizeof(ev->last_error),
		         "replayed at %s from unsure (sent anyway); was: %.400s", c->stamp, old);
	} else {
		snprintf(ev->last_error, sizeof(ev->last_error),
		         "replayed at %s from dead letters%s; was: %.400s", c->stamp,
		         remapped ? " with its customer mapped" : "", old);
	}
	rc->moved++;
	rc->remapped += remapped;
	return 1;
}

static void replay_print(const struct replay_ctx *c, FILE *out, int dry_run)
{
	int64_t moved = 0, kept = 0;

	for (size_t i = 0; i < c->n_counts; i++) {
		const struct rule_count *r = &c->counts[i];

		fprintf(out, "rule %s: %" PRId64 " %s to pending", r->rule, r->moved,
		        dry_run ? "would move" : "moved");
		if (r->remapped > 0)
			fprintf(out, " (%" PRId64 " with their customer now mapped)", r->remapped);
		if (r->unmapped > 0)
			fprintf(out,
			        "; %" PRId64 " kept: customer key still not in the customer map",
			        r->unmapped);
		if (r->no_map > 0)
			fprintf(out,
			        "; %" PRId64
			        " kept: no customer id and the rule has no customer_map",
			        r->no_map);
		if (r->window > 0)
			fprintf(out,
			        "; %" PRId64 " kept: timestamp older than Stripe's 35-day window",
			        r->window);
		if (r->too_old > 0)
			fprintf(out, "; %" PRId64 " delivered more than 24 hours ago", r->too_old);
		if (r->unsure > 0)
			fprintf(out,
			        "; %" PRId64
			        " of them had an attempt with an unknown outcome more than "
			        "unsure_after ago: Stripe may have them, so the agent makes them "
			        "unsure "
			        "instead of sending them (check Stripe, then replay --unsure)",
			        r->unsure);
		fputc('\n', out);
		moved += r->moved;
		kept += r->unmapped + r->no_map + r->window;
	}
	fprintf(out, "replay: %" PRId64 " event%s %s to pending, %" PRId64 " kept where %s\n",
	        moved, cli_s(moved), dry_run ? "would move" : "moved", kept,
	        kept == 1 ? "it was" : "they were");
}

static int spool_exists(const struct config *cfg, char *err, size_t errlen)
{
	char path[SPOOL_PATH_MAX];
	struct stat st;

	if (spool_path_of(cfg->agent.state_dir, path, sizeof(path), err, errlen) < 0)
		return -1;
	if (stat(path, &st) < 0) {
		err_set(err, errlen, "no spool at %s: %s", path,
		        errno == ENOENT ? "the agent has not run yet" : strerror(errno));
		return -1;
	}
	return 0;
}

int admin_replay(const struct config *cfg, const struct admin_replay *opt, FILE *out, FILE *warn,
                 char *err, size_t errlen)
{
	struct replay_ctx c;
	struct spool_replay rp;
	struct spool *sp = NULL;
	int64_t moved = 0;
	int ret = -1;

	memset(&c, 0, sizeof(c));
	c.cfg = cfg;
	c.opt = opt;
	iso_time(opt->now, c.stamp, sizeof(c.stamp));
	if (opt->since > 0)
		iso_time(opt->since, c.since, sizeof(c.since));
	if (opt->from != EVENT_DEAD && opt->from != EVENT_DELIVERED && opt->from != EVENT_UNSURE) {
		err_set(err, errlen, "replay: --dead, --delivered or --unsure");
		return -1;
	}
	if (spool_exists(cfg, err, errlen) < 0)
		return -1;
	sp = spool_open(cfg->agent.state_dir, SPOOL_READ_WRITE, err, errlen);
	if (sp == NULL)
		return -1;
	if (spool_set_durability(sp, cfg->agent.durability, err, errlen) < 0)
		goto out;
	memset(&rp, 0, sizeof(rp));
	rp.from = opt->from;
	rp.rule = opt->rule;
	rp.reason = opt->reason;
	rp.since = opt->since;
	rp.now = opt->now;
	rp.decide = replay_decide;
	rp.ud = &c;
	/* Their warnings are for events that may be billed twice: with none selected there is
	 * nothing to warn of, and a warning then reads as if something were at stake. So a look
	 * first (replay_decide counts every selected event under its rule): none, and it says so
	 * and exits 0; some, and the move below takes them and any that became so since. */
	if (opt->from == EVENT_UNSURE || opt->from == EVENT_DELIVERED) {
		const char *what = opt->from == EVENT_UNSURE ? "unsure" : "delivered";

		rp.dry_run = 1;
		if (spool_replay(sp, &rp, &moved, err, errlen) < 0)
			goto stopped;
		if (c.n_counts == 0) {
			fprintf(out, "replay: nothing %s: no event is %s%s%s%s%s\n", what, what,
			        opt->rule != NULL ? " of rule " : "",
			        opt->rule != NULL ? opt->rule : "", opt->since > 0 ? " since " : "",
			        opt->since > 0 ? c.since : "");
			ret = 0;
			goto out;
		}
		replay_ctx_reset(&c);
	}
	if (opt->from == EVENT_DELIVERED)
		fprintf(
		    warn,
		    "warning: Stripe dedupes event identifiers for 24 hours only. A re-sent event "
		    "that Stripe still remembers is answered \"already exists\" and not billed "
		    "again (a new Stripe account bills it); an event delivered more than 24 hours "
		    "ago WILL be billed again.\n");
	else if (opt->from == EVENT_UNSURE)
		fprintf(
		    warn,
		    "warning: an unsure event had an attempt whose outcome is unknown more than "
		    "[stripe] unsure_after ago: Stripe may have accepted it and may no longer "
		    "remember its identifier (it dedupes them for 24 hours only), so sending it "
		    "now can bill it twice. Check the meter's event summaries in Stripe first "
		    "(docs/stripe-contract.md).\n");
	/* A delivered replay first looks without moving: either all of it is allowed, or none. */
	if (opt->dry_run || (opt->from == EVENT_DELIVERED && !opt->force)) {
		rp.dry_run = 1;
		if (spool_replay(sp, &rp, &moved, err, errlen) < 0)
			goto stopped;
		if (c.too_old > 0 && !opt->force) {
			replay_print(&c, out, 1);
			err_set(
			    err, errlen,
			    "refusing to re-send: %" PRId64
			    " of the selected events were delivered "
			    "more than 24 hours ago, so Stripe no longer dedupes them and would "
			    "bill "
			    "them again. Choose a later --since, or add --force to re-send them "
			    "anyway.",
			    c.too_old);
			ret = 1;
			goto out;
		}
		if (opt->dry_run) {
			replay_print(&c, out, 1);
			ret = 0;
			goto out;
		}
		replay_ctx_reset(&c);
	}
	rp.dry_run = 0;
	if (spool_replay(sp, &rp, &moved, err, errlen) < 0)
		goto stopped;
	replay_print(&c, out, 0);
	if (moved > 0)
		fprintf(out, "a running agent sends them within seconds; otherwise run "
		             "`logmeter run` (or `run --once`)\n");
	ret = 0;
	goto out;
stopped:
	/* The callback's own reason is more telling than "stopped by the caller". */
	if (c.err[0] != '\0')
		err_set(err, errlen, "%s", c.err);
out:
	replay_ctx_free(&c);
	spool_free(sp);
	return ret;
}

/* ---- export ---- */

/* A JSON string of `s`: as it is if it is UTF-8, else with each invalid byte as U+FFFD. */
static json_t *json_text(const char *s)
{
	json_t *j = json_string(s);
	size_t n, o = 0;
	char *fixed;

	if (j != NULL)
		return j;
	n = strlen(s);
	fixed = malloc(3 * n + 1);
	if (fixed == NULL)
		return NULL;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t len = c < 0x80             ? 1
		             : (c & 0xe0) == 0xc0 ? 2
		             : (c & 0xf0) == 0xe0 ? 3
		             : (c & 0xf8) == 0xf0 ? 4
		                                  : 0;
		json_t *probe = NULL;

		if (len > 1 && i + len <= n)
			probe = json_stringn(s + i, len);
		if (len == 1 || probe != NULL) {
			memcpy(fixed + o, s + i, len);
			o += len;
			i += len;
		} else {
			memcpy(fixed + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
		json_decref(probe);
	}
	fixed[o] = '\0';
	j = json_string(fixed);
	free(fixed);
	return j;
}

struct export_file {
	int64_t id;
	char *path;
};

struct export_ctx {
	FILE *out;
	struct export_file *files;
	size_t n_files;
	int64_t written;
	int failed;
};

/* Frees what export_open made. */
static void export_close(struct spool *sp, struct export_ctx *x)
{
	for (size_t i = 0; i < x->n_files; i++)
		free(x->files[i].path);
	free(x->files);
	spool_free(sp);
}

static int export_collect_file(const struct spool_file *f, void *ud)
{
	struct export_ctx *x = ud;
	struct export_file *p = realloc(x->files, (x->n_files + 1) * sizeof(*p));

	if (p == NULL)
		return -1;
	x->files = p;
	p[x->n_files].id = f->id;
	p[x->n_files].path = strdup(f->path);
	if (p[x->n_files].path == NULL)
		return -1;
	x->n_files++;
	return 0;
}

static int file_cmp(const void *a, const void *b)
{
	const struct export_file *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Sets key to value, taking the reference; a NULL value (out of memory) fails. */
static int jset(json_t *obj, const char *key, json_t *value)
{
	return value == NULL ? -1 : json_object_set_new(obj, key, value);
}

static int export_event(const struct event *ev, void *ud)
{
	struct export_ctx *x = ud;
	struct export_file key = {.id = ev->file_id}, *f;
	json_t *o = json_object(), *payload = json_object();
	int rc = -1;

	if (o == NULL || payload == NULL)
		goto out;
	f = bsearch(&key, x->files, x->n_files, sizeof(*x->files), file_cmp);
	if (json_object_set_new(payload, ev->payload_customer_key, json_text(ev->customer)) < 0 ||
	    json_object_set_new(payload, ev->payload_value_key, json_text(ev->value)) < 0)
		goto out;
	if (jset(o, "id", json_integer(ev->id)) < 0 ||
	    jset(o, "identifier", json_text(ev->identifier)) < 0 ||
	    jset(o, "event_name", json_text(ev->event_name)) < 0 ||
	    json_object_set(o, "payload", payload) < 0 ||
	    jset(o, "customer_key", json_text(ev->customer_key)) < 0 ||
	    jset(o, "timestamp", json_integer(ev->timestamp)) < 0 ||
	    jset(o, "state", json_string(state_names[ev->state])) < 0 ||
	    jset(o, "attempts", json_integer(ev->attempts)) < 0 ||
	    jset(o, "key_generation", json_integer(ev->key_generation)) < 0 ||
	    jset(o, "first_unknown",
	         ev->first_unknown > 0 ? json_integer(ev->first_unknown) : json_null()) < 0 ||
	    jset(o, "last_error", ev->last_error[0] ? json_text(ev->last_error) : json_null()) <
	        0 ||
	    jset(o, "rule", json_text(ev->rule)) < 0 ||
	    jset(o, "file_id", json_integer(ev->file_id)) < 0 ||
	    jset(o, "file", f != NULL ? json_text(f->path) : json_null()) < 0 ||
	    jset(o, "line_offset", json_integer(ev->line_offset)) < 0 ||
	    jset(o, "created", json_integer(ev->created)) < 0 ||
	    jset(o, "delivered_at",
	         ev->state == EVENT_DELIVERED ? json_integer(ev->delivered_at) : json_null()) < 0)
		goto out;
	if (json_dumpf(o, x->out, JSON_COMPACT | JSON_PRESERVE_ORDER) < 0 ||
	    fputc('\n', x->out) == EOF) {
		x->failed = 1;
		goto out;
	}
	x->written++;
	rc = 0;
out:
	json_decref(payload);
	json_decref(o);
	return rc;
}

/* Opens the spool read-only and collects its files' paths, by id, for an export to `out`; with
 * `snapshot`, in a snapshot that the caller ends (spool_snapshot_end), so that the events it lists
 * then find their files among these. Returns the spool (export_close), or NULL. */
static struct spool *export_open(const struct config *cfg, int snapshot, struct export_ctx *x,
                                 FILE *out, char *err, size_t errlen)
{
	struct spool *sp;

	memset(x, 0, sizeof(*x));
	x->out = out;
	sp = spool_open(cfg->agent.state_dir, SPOOL_READ_ONLY, err, errlen);
	if (sp == NULL)
		return NULL;
	if ((snapshot && spool_snapshot_begin(sp, err, errlen) < 0) ||
	    spool_files_foreach(sp, export_collect_file, x, err, errlen) < 0) {
		export_close(sp, x);
		return NULL;
	}
	qsort(x->files, x->n_files, sizeof(*x->files), file_cmp);
	return sp;
}

int admin_export(const struct config *cfg, int state, FILE *out, char *err, size_t errlen)
{
	struct export_ctx x;
	struct spool *sp;
	int ret = -1;

	/* One snapshot for every state: an event the agent delivers meanwhile is listed once. */
	sp = export_open(cfg, 1, &x, out, err, errlen);
	if (sp == NULL)
		return -1;
	for (int s = EVENT_PENDING; s <= EVENT_UNSURE; s++) {
		if (state >= 0 && s != state)
			continue;
		if (spool_events_foreach(sp, (enum event_state)s, export_event, &x, err, errlen) <
		    0) {
			if (x.failed)
				err_set(err, errlen, "writing the export: %s", strerror(errno));
			goto out;
		}
		crash_point("export_state");
	}
	if (spool_snapshot_end(sp, err, errlen) < 0)
		goto out;
	if (fflush(out) != 0) {
		err_set(err, errlen, "writing the export: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	export_close(sp, &x);
	return ret;
}

/* ---- check, recover ---- */

static void print_problem(const char *problem, void *ud)
{
	fprintf(ud, "problem: %s\n", problem);
}

int admin_check(const struct config *cfg, FILE *out, char *err, size_t errlen)
{
	struct spool_check_info info;
	char path[SPOOL_PATH_MAX];
	int rc;

	if (spool_path_of(cfg->agent.state_dir, path, sizeof(path), err, errlen) < 0)
		return -1;
	rc = spool_check(cfg->agent.state_dir, print_problem, out, &info, err, errlen);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		fprintf(out,
		        "spool %s: OK (schema version %" PRId64 "; %" PRId64
		        " file records; events: pending %" PRId64 ", delivered %" PRId64
		        ", dead letters %" PRId64 ", unsure %" PRId64 ")\n",
		        path, info.version, info.files, info.pending, info.delivered, info.dead,
		        info.unsure);
		return 0;
	}
	fprintf(out,
	        "spool %s is damaged. Stop logmeter and run `logmeter spool recover -c "
	        "FILE` to rebuild it from every readable row (docs/spool.md).\n",
	        path);
	return 1;
}

static void ignore_problem(const char *problem, void *ud)
{
	(void)problem;
	(void)ud;
}

int admin_recover(const struct config *cfg, int64_t now, int force, FILE *out, char *err,
                  size_t errlen)
{
	struct spool_recover_stats st;
	struct spool_check_info info;
	char path[SPOOL_PATH_MAX], e[1024];
	int sound;

	if (spool_path_of(cfg->agent.state_dir, path, sizeof(path), err, errlen) < 0)
		return -1;
	/* What `spool check` checks. A spool that cannot be checked at all (-1) is left to
	 * spool_recover, which says why it cannot be recovered either, or recovers it. */
	sound = spool_check(cfg->agent.state_dir, ignore_problem, NULL, &info, e, sizeof(e)) == 0;
	if (sound && !force) {
		fprintf(out,
		        "spool %s is sound (`logmeter spool check` finds no problem): nothing to "
		        "recover, left as it is. `logmeter spool recover --force` rebuilds it all "
		        "the same (docs/spool.md)\n",
		        path);
		return 0;
	}
	if (spool_recover(cfg->agent.state_dir, now, sound, &st, err, errlen) < 0)
		return -1;
	fprintf(out,
	        "recovered %s from %" PRId64 " pages (%" PRId64 " committed WAL frames"
	        " applied; %" PRId64 " pages unreadable, %" PRId64 " free pages skipped)\n",
	        path, st.pages, st.wal_frames, st.pages_unreadable, st.pages_free);
	fprintf(out,
	        "events: pending %" PRId64 ", delivered %" PRId64 ", dead letters %" PRId64
	        ", unsure %" PRId64 "\n",
	        st.events[EVENT_PENDING], st.events[EVENT_DELIVERED], st.events[EVENT_DEAD],
	        st.events[EVENT_UNSURE]);
	fprintf(out, "file records: %" PRId64 "; settings: %" PRId64 "\n", st.files, st.meta);
	fprintf(out,
	        "aggregation windows: %" PRId64 " open (%" PRId64 " lines), %" PRId64 " closed\n",
	        st.windows_open, st.window_lines_counted, st.windows_closed);
	if (st.window_lines < st.window_lines_counted)
		fprintf(out,
		        "warning: %" PRId64 " lines of open windows were lost; their windows keep "
		        "their totals, but such a line read again (a file record older than its "
		        "window) is counted again\n",
		        st.window_lines_counted - st.window_lines);
	if (st.windows_lost > 0) {
		char text[sizeof(st.windows_lost_detail) + 512];

		fprintf(out, "warning: %s\n",
		        spool_recover_windows_lost_text(&st, text, sizeof(text)));
	}
	if (st.outcomes_lost > 0) {
		char text[1024];

		fprintf(out, "warning: %s\n",
		        spool_recover_outcomes_lost_text(&st, text, sizeof(text)));
	}
	if (st.cells_skipped > 0 || st.duplicates > 0)
		fprintf(out,
		        "%" PRId64 " damaged rows skipped, %" PRId64 " older copies of rows "
		        "dropped\n",
		        st.cells_skipped, st.duplicates);
	if (st.lost_files > 0)
		fprintf(
		    out,
		    "warning: %" PRId64 " file records were lost; their events are kept under "
		    "placeholder records. The files themselves will be read again from the start "
		    "(read_from) as new files, with new identifiers: lines already delivered from "
		    "them will be billed again (docs/spool.md)\n",
		    st.lost_files);
	if (!st.instance_recovered && cfg->agent.instance == NULL)
		fprintf(out,
		        "warning: the instance id was lost and the configuration sets none: a new "
		        "one will be generated, so lines read again get new identifiers; set "
		        "[agent] instance to the old id if you know it (docs/identifiers.md)\n");
	fprintf(out, "the old database is kept as %s\n", st.old_path);
	return 0;
}

int admin_start_over(const struct config *cfg, FILE *out, char *err, size_t errlen)
{
	char what[1024] = "";
	struct cli_lock lk;
	int held, rc;

	if (cli_lock_state_dir(cfg->agent.state_dir, &lk, &held, err, errlen) < 0) {
		if (held)
			err_set(err, errlen,
			        "an agent runs on %s (its lock is held): stop it first",
			        cfg->agent.state_dir);
		return held ? 1 : -1;
	}
	rc = spool_start_over(cfg->agent.state_dir, what, sizeof(what), err, errlen);
	cli_unlock(&lk);
	if (rc == 0)
		fprintf(out, "%s\n", what);
	return rc;
}

/* ---- the commands `replay` and `spool` ---- */

static int admin_exit(int rc, const char *what, const char *err)
{
	if (rc != 0 && err[0] != '\0')
		fprintf(stderr, "logmeter %s: %s\n", what, err);
	return rc == 0 ? 0 : CLI_EXIT_RUNTIME;
}

struct rule_seen {
	const char *rule;
	int seen;
};

static int note_rule(const char *rule, enum event_state state, int64_t n, void *ud)
{
	struct rule_seen *rs = ud;

	(void)state;
	if (n > 0 && strcmp(rule, rs->rule) == 0)
		rs->seen = 1;
	return 0;
}

/* replay's --rule NAME: a rule of the configuration, or one the spool has events of (a rule
 * removed or renamed since: its events keep the event name and payload they were made with, so
 * they can still be sent; a warning says so). A name that is neither is a typo, which would
 * select nothing: refused, naming the rules there are. Prints the warning or the error to
 * standard error. Returns 0, or -1 (exit status CLI_EXIT_USAGE). */
static int replay_rule_check(const struct config *cfg, const char *rule)
{
	struct rule_seen rs = {rule, 0};
	struct spool *sp;
	char err[512] = "";

	for (size_t i = 0; i < cfg->n_rules; i++)
		if (strcmp(cfg->rules[i].name, rule) == 0)
			return 0;
	/* No spool, or one that cannot be read: no events of it that replay could move. */
	sp = spool_open(cfg->agent.state_dir, SPOOL_READ_ONLY, err, sizeof(err));
	if (sp != NULL && spool_rule_counts(sp, note_rule, &rs, err, sizeof(err)) != 0)
		rs.seen = 0;
	spool_free(sp);
	if (rs.seen) {
		fprintf(stderr,
		        "logmeter replay: warning: the configuration has no rule '%s' now; its "
		        "events in the spool keep the event name and payload they were made with\n",
		        rule);
		return 0;
	}
	fprintf(stderr,
	        "logmeter replay: --rule %s: no rule of that name, in the configuration or "
	        "in the spool; ",
	        rule);
	if (cfg->n_rules == 0)
		fprintf(stderr, "the configuration has no rules\n");
	for (size_t i = 0; i < cfg->n_rules; i++)
		fprintf(stderr, "%s%s", i == 0 ? "the rules: " : ", ", cfg->rules[i].name);
	if (cfg->n_rules > 0)
		fputc('\n', stderr);
	return -1;
}

int cli_replay(const struct cli_args *aa)
{
	const char *path = aa->config, *rule = aa->rule;
	struct admin_replay opt;
	struct config *cfg;
	char err[CONFIG_ERR_MAX] = "";
	int rc;

	memset(&opt, 0, sizeof(opt));
	opt.now = (int64_t)time(NULL);
	if (aa->dead + aa->delivered + aa->unsure != 1) {
		fprintf(stderr,
		        "logmeter replay: give exactly one of --dead, --delivered and --unsure\n");
		return CLI_EXIT_USAGE;
	}
	if (aa->delivered && aa->since == NULL) {
		fprintf(stderr, "logmeter replay: --delivered needs --since TIME\n");
		return CLI_EXIT_USAGE;
	}
	if (aa->since != NULL && admin_parse_time(aa->since, opt.now, &opt.since) != 0) {
		fprintf(stderr,
		        "logmeter replay: --since '%s': expected 2026-11-29T12:00:00Z, 2026-11-29, "
		        "24h, 7d or @SECONDS\n",
		        aa->since);
		return CLI_EXIT_USAGE;
	}
	opt.from = aa->dead ? EVENT_DEAD : aa->delivered ? EVENT_DELIVERED : EVENT_UNSURE;
	opt.rule = rule;
	opt.reason = aa->reason;
	opt.force = aa->force;
	opt.dry_run = aa->dry_run;
	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		return CLI_EXIT_USAGE;
	}
	if (rule != NULL && replay_rule_check(cfg, rule) != 0) {
		config_free(cfg);
		return CLI_EXIT_USAGE;
	}
	rc = admin_replay(cfg, &opt, stdout, stderr, err, sizeof(err));
	config_free(cfg);
	return admin_exit(rc, "replay", err);
}

/* spool export --windows: a window's JSON object is built as its lines come, and written when
 * the next window starts or the export ends. */
struct window_export {
	struct export_ctx *x;
	json_t *cur, *lines;
};

static int window_flush(struct window_export *we)
{
	int rc = 0;

	if (we->cur == NULL)
		return 0;
	if (json_dumpf(we->cur, we->x->out, JSON_COMPACT | JSON_PRESERVE_ORDER) < 0 ||
	    fputc('\n', we->x->out) == EOF) {
		we->x->failed = 1;
		rc = -1;
	} else {
		we->x->written++;
	}
	json_decref(we->cur);
	we->cur = we->lines = NULL;
	return rc;
}

static int export_window(const struct spool_window *w, void *ud)
{
	struct window_export *we = ud;
	json_t *o;

	if (window_flush(we) != 0)
		return -1;
	o = json_object();
	we->lines = json_array();
	if (o == NULL || we->lines == NULL || jset(o, "id", json_integer(w->id)) < 0 ||
	    jset(o, "rule", json_text(w->rule)) < 0 ||
	    jset(o, "customer", json_text(w->customer)) < 0 ||
	    jset(o, "event_name", json_text(w->event_name)) < 0 ||
	    jset(o, "start", json_integer(w->start)) < 0 ||
	    jset(o, "end", json_integer(w->start + w->length)) < 0 ||
	    jset(o, "close_after", json_integer(w->close_after)) < 0 ||
	    jset(o, "total", json_text(w->total)) < 0 ||
	    jset(o, "lines_count", json_integer(w->lines)) < 0 ||
	    jset(o, "late", json_integer(w->late)) < 0 ||
	    jset(o, "state", json_string(w->closed ? "closed" : "open")) < 0 ||
	    jset(o, "event_id", w->event_id > 0 ? json_integer(w->event_id) : json_null()) < 0 ||
	    json_object_set(o, "lines", we->lines) < 0) {
		json_decref(o);
		json_decref(we->lines);
		we->lines = NULL;
		return -1;
	}
	json_decref(we->lines); /* o holds it */
	we->cur = o;
	return 0;
}

static int export_window_line(const struct spool_window_line *l, void *ud)
{
	struct window_export *we = ud;
	struct export_file key = {.id = l->file_id}, *f;
	json_t *o = json_object();

	f = bsearch(&key, we->x->files, we->x->n_files, sizeof(*we->x->files), file_cmp);
	if (o == NULL || jset(o, "file_id", json_integer(l->file_id)) < 0 ||
	    jset(o, "file", f != NULL ? json_text(f->path) : json_null()) < 0 ||
	    jset(o, "line_offset", json_integer(l->line_offset)) < 0 ||
	    jset(o, "value", json_text(l->value)) < 0 ||
	    jset(o, "timestamp", json_integer(l->timestamp)) < 0 ||
	    jset(o, "late", json_boolean(l->late)) < 0 || json_array_append_new(we->lines, o) < 0) {
		json_decref(o);
		return -1;
	}
	return 0;
}

int admin_export_windows(const struct config *cfg, FILE *out, char *err, size_t errlen)
{
	struct export_ctx x;
	struct window_export we = {.x = &x};
	struct spool *sp;
	int ret = -1;

	sp = export_open(cfg, 1, &x, out, err, errlen);
	if (sp == NULL)
		return -1;
	if (spool_windows_foreach(sp, 0, export_window, export_window_line, &we, err, errlen) < 0 ||
	    window_flush(&we) != 0 || spool_snapshot_end(sp, err, errlen) < 0 || fflush(out) != 0) {
		if (x.failed || ferror(out))
			err_set(err, errlen, "writing the export: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	json_decref(we.cur);
	export_close(sp, &x);
	return ret;
}

int cli_spool(const struct cli_args *aa)
{
	const char *path = aa->config, *sub = aa->input;
	struct config *cfg;
	char err[CONFIG_ERR_MAX] = "";
	int rc, state = -1;

	if (sub == NULL || (strcmp(sub, "export") != 0 && strcmp(sub, "check") != 0 &&
	                    strcmp(sub, "recover") != 0 && strcmp(sub, "start-over") != 0)) {
		fprintf(stderr, "logmeter spool: expected export, check, recover or start-over\n");
		return CLI_EXIT_USAGE;
	}
	if (aa->state != NULL &&
	    (strcmp(sub, "export") != 0 || (state = admin_state_parse(aa->state)) < 0)) {
		fprintf(
		    stderr,
		    "logmeter spool: --state pending|delivered|dead|unsure, with export only\n");
		return CLI_EXIT_USAGE;
	}
	if (aa->force && strcmp(sub, "recover") != 0) {
		fprintf(stderr, "logmeter spool: --force, with recover only\n");
		return CLI_EXIT_USAGE;
	}
	if (aa->windows && (strcmp(sub, "export") != 0 || aa->state != NULL)) {
		fprintf(stderr,
		        "logmeter spool: --windows, with export only and without --state\n");
		return CLI_EXIT_USAGE;
	}
	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(sub, "export") == 0 && aa->windows)
		rc = admin_export_windows(cfg, stdout, err, sizeof(err));
	else if (strcmp(sub, "export") == 0)
		rc = admin_export(cfg, state, stdout, err, sizeof(err));
	else if (strcmp(sub, "check") == 0)
		rc = admin_check(cfg, stdout, err, sizeof(err));
	else if (strcmp(sub, "start-over") == 0)
		rc = admin_start_over(cfg, stdout, err, sizeof(err));
	else
		rc = admin_recover(cfg, (int64_t)time(NULL), aa->force, stdout, err, sizeof(err));
	config_free(cfg);
	return admin_exit(rc, sub, err);
}
