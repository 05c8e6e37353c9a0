#include "fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

struct fixture *fixture_new(const char *name)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	assert_true(strlen(name) <= 40);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/%.40s.XXXXXX", name);
	if (mkdtemp(fx->dir) == NULL)
		fail_msg("mkdtemp %s: %s", fx->dir, strerror(errno));
	snprintf(fx->state, sizeof(fx->state), "%s/state", fx->dir);
	snprintf(fx->db, sizeof(fx->db), "%s/spool.db", fx->state);
	snprintf(fx->conf, sizeof(fx->conf), "%s/test.conf", fx->dir);
	return fx;
}

void fixture_free(struct fixture *fx)
{
	if (fx == NULL)
		return;
	config_free(fx->cfg);
	spool_free(fx->sp);
	/* Depth first, not following symlinks: a test's link to elsewhere is removed, not its
	 * target. */
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
}

int fixture_setup(void **state)
{
	*state = fixture_new("logmeter-unit");
	return 0;
}

int fixture_teardown(void **state)
{
	fixture_free(*state);
	*state = NULL;
	return 0;
}

const char *fixture_path(const struct fixture *fx, const char *rel)
{
	static char bufs[8][PATH_MAX];
	static unsigned next;
	char *b = bufs[next++ % 8];

	snprintf(b, PATH_MAX, "%s/%s", fx->dir, rel);
	return b;
}

void fixture_write(const char *path, const void *data, size_t len, int append)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);

	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

void fixture_write_text(const char *path, const char *text)
{
	fixture_write(path, text, strlen(text), 0);
}

struct config *fixture_config(struct fixture *fx, const char *fmt, ...)
{
	char err[CONFIG_ERR_MAX] = "";
	char *body = NULL, *text = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	/* A newline first: the text's last line may lack one. */
	assert_true(asprintf(&text, "%s\n[agent]\nstate_dir = %s\n", body, fx->state) >= 0);
	free(body);
	config_free(fx->cfg);
	fx->cfg = config_load_text(text, fx->conf, err, sizeof(err));
	if (fx->cfg == NULL)
		fail_msg("the test's configuration does not load:\n%s\n---\n%s", err, text);
	free(text);
	return fx->cfg;
}

struct spool *fixture_spool(struct fixture *fx)
{
	char err[512] = "";

	if (fx->sp == NULL) {
		fx->sp = spool_open(fx->state, SPOOL_READ_WRITE, err, sizeof(err));
		if (fx->sp == NULL)
			fail_msg("spool_open %s: %s", fx->state, err);
	}
	return fx->sp;
}

void fixture_file_add(struct fixture *fx, const char *source, uint64_t ino, struct spool_file *f)
{
	char err[512] = "";

	memset(f, 0, sizeof(*f));
	snprintf(f->source, sizeof(f->source), "%s", source);
	snprintf(f->path, sizeof(f->path), "%s/%s.log", fx->dir, source);
	f->dev = 1;
	f->ino = ino;
	if (spool_file_add(fixture_spool(fx), f, err, sizeof(err)) != 0)
		fail_msg("spool_file_add: %s", err);
}

void fixture_event(struct event *ev, int64_t file_id, int64_t line_offset)
{
	memset(ev, 0, sizeof(*ev));
	ev->file_id = file_id;
	ev->line_offset = line_offset;
	snprintf(ev->rule, sizeof(ev->rule), "r1");
	snprintf(ev->event_name, sizeof(ev->event_name), "api_calls");
	snprintf(ev->payload_customer_key, sizeof(ev->payload_customer_key), "stripe_customer_id");
	snprintf(ev->payload_value_key, sizeof(ev->payload_value_key), "value");
	snprintf(ev->customer_key, sizeof(ev->customer_key), "cus_A");
	snprintf(ev->customer, sizeof(ev->customer), "cus_A");
	snprintf(ev->value, sizeof(ev->value), "1");
	ev->timestamp = (int64_t)time(NULL);
	ev->state = EVENT_PENDING;
}

/* What fixture_commit finds again of its events. */
struct found {
	struct event *evs;
	size_t n;
	int64_t file_id, after; /* ids up to `after` were there before the commit */
};

static int find_committed(const struct event *ev, void *ud)
{
	struct found *fd = ud;

	if (ev->file_id != fd->file_id || ev->id <= fd->after)
		return 0;
	for (size_t i = 0; i < fd->n; i++) {
		struct event *e = &fd->evs[i];

		if (e->line_offset == ev->line_offset && strcmp(e->rule, ev->rule) == 0) {
			e->id = ev->id;
			e->queue_seq = ev->queue_seq;
			e->created = ev->created;
			memcpy(e->identifier, ev->identifier, sizeof(e->identifier));
		}
	}
	return 0;
}

/* The greatest event id in the spool (0 if none). */
static int max_id(const struct event *ev, void *ud)
{
	int64_t *m = ud;

	if (ev->id > *m)
		*m = ev->id;
	return 0;
}

int fixture_commit(struct spool *sp, const struct spool_file *f, struct event *evs, size_t n,
                   char *err, size_t errlen)
{
	struct config_rule *rules = calloc(n > 0 ? n : 1, sizeof(*rules));
	struct spool_batch *b = spool_batch_new(FIXTURE_INSTANCE, err, errlen);
	struct found fd = {evs, n, f->id, 0};
	size_t n_rules = 0;
	int rc = -1;

	assert_non_null(rules);
	assert_non_null(b);
	for (int s = EVENT_PENDING; s <= EVENT_UNSURE; s++)
		assert_int_equal(
		    spool_events_foreach(sp, (enum event_state)s, max_id, &fd.after, err, errlen),
		    0);
	for (size_t i = 0; i < n; i++) {
		struct event *e = &evs[i];
		struct spool_new_event ne;

		struct config_rule *r = NULL;

		/* One stand-in per distinct rule, as a configuration has. */
		for (size_t k = 0; k < n_rules && r == NULL; k++)
			if (strcmp(rules[k].name, e->rule) == 0 &&
			    strcmp(rules[k].event_name, e->event_name) == 0 &&
			    strcmp(rules[k].payload_customer_key, e->payload_customer_key) == 0 &&
			    strcmp(rules[k].payload_value_key, e->payload_value_key) == 0 &&
			    rules[k].aggregate_s == e->window_s &&
			    rules[k].aggregate_grace_s == e->window_grace_s)
				r = &rules[k];
		if (r == NULL) {
			r = &rules[n_rules++];
			r->name = e->rule;
			r->event_name = e->event_name;
			r->payload_customer_key = e->payload_customer_key;
			r->payload_value_key = e->payload_value_key;
			r->aggregate_s = e->window_s;
			r->aggregate_grace_s = e->window_grace_s;
		}
		ne =
		    (struct spool_new_event){.line_offset = e->line_offset,
		                             .rule = r,
		                             .customer_key = e->customer_key,
		                             .customer = e->customer,
		                             .value = e->value,
		                             .timestamp = e->timestamp,
		                             .dead = e->state == EVENT_DEAD ? e->last_error : NULL};
		e->id = e->queue_seq = 0;
		if (spool_batch_add(b, &ne, err, errlen) != 0)
			goto out;
	}
	rc = spool_commit(sp, f, b, NULL, err, errlen);
	if (rc == 0) {
		char e2[512];

		for (int s = EVENT_PENDING; s <= EVENT_UNSURE; s++)
			assert_int_equal(spool_events_foreach(sp, (enum event_state)s,
			                                      find_committed, &fd, e2, sizeof(e2)),
			                 0);
	}
out:
	spool_batch_free(b);
	free(rules);
	return rc;
}
