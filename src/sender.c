/* sender: the delivery loop. One thread, one curl multi handle for its whole life (so
 * connections stay open), one spool handle of its own. Events are read in id order into a
 * bounded queue; each loop iteration collects finished transfers, applies their outcomes to the
 * spool in one transaction, and starts what the limits allow. */
#include "sender.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <search.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>

#include "crash.h"
#include "event.h"
#include "health.h"
#include "log.h"
#include "spool.h"
#include "stripe.h"

#define SENDER_QUEUE_MAX 2000
#define SENDER_LOAD_CHUNK 256
#define SENDER_POLL_MAX_MS 1000
#define SENDER_PRUNE_EVERY_MS (10 * 60 * 1000)
#define SENDER_LOG_EVERY_MS 10000
#define SENDER_RELOAD_EVERY_MS 5000 /* backstop for a missed sender_notify */
#define SENDER_IDLE_RELOAD_MS 1000
#define SENDER_SPOOL_RETRY_MS 1000
#define SENDER_ONCE_MARK_FAILURES 10 /* once-mode gives up after this many failed spool_marks */
#define SENDER_KEY_SEP '\x1f'

/* A queued event. */
struct sender_item {
	struct event ev;
	char key[EVENT_CUSTOMER_MAX + EVENT_NAME_MAX + 1]; /* customer SEP event_name */
	int64_t next_attempt;                              /* monotonic ms; 0: now */
	struct stripe_request *req;                        /* while in flight */
};

/* A log line that may repeat: the first is written, the rest are counted and summarised at most
 * once per SENDER_LOG_EVERY_MS. */
struct sender_ratelog {
	enum log_level level;
	const char *what; /* plural noun for the summary, e.g. "transient failures" */
	int logged;
	int64_t last;
	int64_t suppressed;
	char last_msg[STRIPE_REASON_MAX + 256];
};

struct sender {
	const struct config *cfg;
	struct spool *sp;
	CURLM *multi;
	char key[STRIPE_KEY_MAX];
	int curl_inited;

	struct sender_item **queue; /* in id order; NULL slots are compacted away */
	size_t n;
	int64_t cursor; /* highest id loaded since the last reset */
	int more;       /* the last load stopped because the queue was full */
	struct event *loadbuf;
	int64_t next_reload, next_idle_reload, next_spool_try;

	void *inflight_keys; /* tsearch tree of the keys (item->key) with a request in flight */
	size_t inflight;

	/* Outcomes waiting for one spool_mark call; errors[i] belongs to marks[i]. */
	struct spool_mark *marks;
	char (*errors)[EVENT_ERROR_MAX];
	size_t n_marks, cap_marks;
	int64_t next_mark_try;

	double tokens;
	int64_t tokens_at;

	int paused; /* after a 401/403, until pause_until */
	int64_t pause_until;
	int probe;       /* one request at a time until Stripe answers with the (re-read) key */
	int auth_failed; /* once-mode: stop, return 1 */
	long auth_status;

	int once;
	int fatal;         /* once-mode: a spool error ends the run with -1 */
	int mark_failures; /* consecutive failed spool_mark calls */
	char fatal_err[512];

	int64_t next_prune;
	struct sender_ratelog retry_log, dead_log, spool_log;
	uint64_t rng;

	atomic_int stop;
	atomic_int notify;
	_Atomic int64_t grace_ms;

	pthread_mutex_t stats_lock;
	struct sender_stats stats;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void key_nofree(void *p)
{
	(void)p;
}

/* xorshift64*: jitter needs no more than this, and must not share rand(3)'s global state. */
static double rand01(struct sender *s)
{
	uint64_t x = s->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s->rng = x;
	return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / (double)(1ULL << 53);
}

static void stats_add(struct sender *s, int64_t *field, int64_t n)
{
	pthread_mutex_lock(&s->stats_lock);
	*field += n;
	pthread_mutex_unlock(&s->stats_lock);
}

/* ---- logging that does not flood ---- */

static void ratelog_init(struct sender_ratelog *rl, enum log_level level, const char *what)
{
	memset(rl, 0, sizeof(*rl));
	rl->level = level;
	rl->what = what;
}

static void ratelog_add(struct sender_ratelog *rl, int64_t now, const char *msg)
{
	if (!rl->logged || now - rl->last >= SENDER_LOG_EVERY_MS) {
		if (rl->suppressed > 0)
			log_msg(rl->level, "%s (and %lld more %s before it)", msg,
			        (long long)rl->suppressed, rl->what);
		else
			log_msg(rl->level, "%s", msg);
		rl->logged = 1;
		rl->last = now;
		rl->suppressed = 0;
		return;
	}
	rl->suppressed++;
	snprintf(rl->last_msg, sizeof(rl->last_msg), "%s", msg);
}

/* Writes the summary of what was held back, if it is due (or `force`). */
static void ratelog_flush(struct sender_ratelog *rl, int64_t now, int force)
{
	if (rl->suppressed == 0 || (!force && now - rl->last < SENDER_LOG_EVERY_MS))
		return;
	log_msg(rl->level, "%lld more %s in the last %lld s; the last: %s",
	        (long long)rl->suppressed, rl->what, (long long)((now - rl->last) / 1000),
	        rl->last_msg);
	rl->last = now;
	rl->suppressed = 0;
}

static int64_t ratelog_due(const struct sender_ratelog *rl)
{
	return rl->suppressed > 0 ? rl->last + SENDER_LOG_EVERY_MS : INT64_MAX;
}

/* ---- marks ---- */

/* Records an outcome for the next spool_mark call. A later outcome for the same event replaces
 * an earlier unapplied one, so a spool that keeps failing cannot make the list grow. */
static int mark_add(struct sender *s, const struct event *ev, enum event_state state,
                    const char *error)
{
	size_t i;

	for (i = 0; i < s->n_marks; i++) {
		if (s->marks[i].id == ev->id)
			break;
	}
	if (i == s->n_marks) {
		if (s->n_marks == s->cap_marks) {
			size_t cap = s->cap_marks > 0 ? s->cap_marks * 2 : 64;
			struct spool_mark *m = realloc(s->marks, cap * sizeof(*m));
			char(*e)[EVENT_ERROR_MAX];

			if (m == NULL)
				return -1;
			s->marks = m;
			e = realloc(s->errors, cap * sizeof(*e));
			if (e == NULL)
				return -1;
			s->errors = e;
			s->cap_marks = cap;
		}
		s->n_marks++;
	}
	s->marks[i].id = ev->id;
	s->marks[i].state = state;
	s->marks[i].attempts = ev->attempts;
	s->marks[i].when = (int64_t)time(NULL);
	s->marks[i].error = NULL;
	if (error != NULL)
		snprintf(s->errors[i], EVENT_ERROR_MAX, "%s", error);
	else
		s->errors[i][0] = '\0';
	return 0;
}

/* Applies every recorded outcome in one transaction; on failure they are kept for the next try. */
static int marks_apply(struct sender *s, int64_t now)
{
	char err[512] = "";

	if (s->n_marks == 0)
		return 0;
	if (now < s->next_mark_try)
		return -1;
	for (size_t i = 0; i < s->n_marks; i++)
		s->marks[i].error = s->errors[i][0] != '\0' ? s->errors[i] : NULL;
	if (spool_mark(s->sp, s->marks, s->n_marks, err, sizeof(err)) != 0) {
		char msg[sizeof(err) + 128];

		err_set(msg, sizeof(msg),
		        "cannot record %zu delivery outcomes in the spool: %s; will retry",
		        s->n_marks, err);
		ratelog_add(&s->spool_log, now, msg);
		s->next_mark_try = now + SENDER_SPOOL_RETRY_MS;
		s->mark_failures++;
		if (s->once && !s->fatal && s->mark_failures >= SENDER_ONCE_MARK_FAILURES) {
			s->fatal = 1;
			err_set(s->fatal_err, sizeof(s->fatal_err), "spool: %s", err);
		}
		return -1;
	}
	s->mark_failures = 0;
	s->n_marks = 0;
	s->next_mark_try = 0;
	return 0;
}

/* ---- the queue ---- */

static void item_key(struct sender_item *it)
{
	snprintf(it->key, sizeof(it->key), "%s%c%s", it->ev.customer, SENDER_KEY_SEP,
	         it->ev.event_name);
}

/* Drops finished items, keeping the id order. */
static void queue_compact(struct sender *s)
{
	size_t j = 0;

	for (size_t i = 0; i < s->n; i++) {
		if (s->queue[i] != NULL)
			s->queue[j++] = s->queue[i];
	}
	s->n = j;
}

static void item_finish(struct sender *s, size_t idx)
{
	free(s->queue[idx]);
	s->queue[idx] = NULL;
}

/* Reads pending events after the cursor (after 0 with `reset`) until the queue is full. */
static int queue_load(struct sender *s, int reset, int64_t now, char *err, size_t errlen)
{
	if (reset)
		s->cursor = 0;
	s->more = 0;
	s->next_reload = now + SENDER_RELOAD_EVERY_MS;
	while (s->n < SENDER_QUEUE_MAX) {
		size_t want = SENDER_QUEUE_MAX - s->n, got = 0;

		if (want > SENDER_LOAD_CHUNK)
			want = SENDER_LOAD_CHUNK;
		if (spool_pending(s->sp, s->cursor, s->loadbuf, want, &got, err, errlen) != 0)
			return -1;
		if (got > want)
			got = want;
		for (size_t i = 0; i < got; i++) {
			struct sender_item *it = calloc(1, sizeof(*it));

			if (it == NULL) {
				/* Try the rest later; the cursor stays before them. */
				s->more = 1;
				return 0;
			}
			it->ev = s->loadbuf[i];
			item_key(it);
			s->queue[s->n++] = it;
			if (it->ev.id > s->cursor)
				s->cursor = it->ev.id;
		}
		if (got < want)
			return 0;
	}
	s->more = 1;
	return 0;
}

/* ---- limits ---- */

static int64_t backoff_ms(struct sender *s, int64_t attempts)
{
	int64_t lo =
	    s->cfg->stripe.retry_min_backoff_ms > 0 ? s->cfg->stripe.retry_min_backoff_ms : 500;
	int64_t hi =
	    s->cfg->stripe.retry_max_backoff_ms > lo ? s->cfg->stripe.retry_max_backoff_ms : lo;
	int64_t b = lo, d;

	for (int64_t i = 1; i < attempts && b < hi; i++) {
		if (b > INT64_MAX / 2) {
			b = hi;
			break;
		}
		b *= 2;
	}
	if (b > hi)
		b = hi;
	d = (int64_t)((double)b * (0.5 + 0.5 * rand01(s)));
	return d < lo / 2 ? lo / 2 : d;
}

/* Takes a token of the rate limit if there is one; else sets *wake to when there will be. */
static int token_take(struct sender *s, int64_t now, int64_t *wake)
{
	double rps = (double)s->cfg->stripe.max_requests_per_second;
	double cap = rps / 10.0 > 1.0 ? rps / 10.0 : 1.0; /* bursts of at most 100 ms' worth */

	if (rps <= 0)
		return 1;
	if (now > s->tokens_at) {
		s->tokens += (double)(now - s->tokens_at) * rps / 1000.0;
		s->tokens_at = now;
	}
	if (s->tokens > cap)
		s->tokens = cap;
	if (s->tokens >= 1.0) {
		s->tokens -= 1.0;
		return 1;
	}
	*wake = now + (int64_t)((1.0 - s->tokens) * 1000.0 / rps) + 1;
	return 0;
}

/* ---- sending ---- */

static int identifier_ok(const char *id)
{
	size_t n = strnlen(id, EVENT_IDENTIFIER_MAX);

	if (n == 0 || n >= EVENT_IDENTIFIER_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)id[i] <= 0x20 || (unsigned char)id[i] >= 0x7f)
			return 0;
	}
	return 1;
}

/* Dead-letters item `idx` without sending it. */
static void item_dead(struct sender *s, size_t idx, const char *reason, int64_t now)
{
	struct sender_item *it = s->queue[idx];
	char msg[STRIPE_REASON_MAX + 256];

	crash_point("sender_dead_letter"); /* decided, not recorded: decided again next time */
	if (mark_add(s, &it->ev, EVENT_DEAD, reason) != 0) {
		log_err("out of memory recording the outcome of event %lld", (long long)it->ev.id);
		it->next_attempt = now + SENDER_SPOOL_RETRY_MS;
		return;
	}
	err_set(msg, sizeof(msg), "event %lld (%s, rule %s): %s; kept as a dead letter",
	        (long long)it->ev.id, it->ev.identifier, it->ev.rule, reason);
	ratelog_add(&s->dead_log, now, msg);
	stats_add(s, &s->stats.dead, 1);
	item_finish(s, idx);
}

/* Checks that item `idx` may be sent at all; dead-letters it if not. Returns 1 if it may. */
static int item_sendable(struct sender *s, size_t idx, int64_t now)
{
	struct sender_item *it = s->queue[idx];
	time_t wall = time(NULL);
	char reason[256];

	if (it->ev.customer[0] == '\0') {
		/* Ingest dead-letters unmapped events; one here must not block the queue. */
		item_dead(s, idx,
		          "no Stripe customer id (the customer key was not mapped); not sent", now);
		return 0;
	}
	if (!identifier_ok(it->ev.identifier)) {
		item_dead(s, idx, "the event has no usable identifier; not sent", now);
		return 0;
	}
	if (it->ev.timestamp < (int64_t)wall - STRIPE_MAX_AGE_S ||
	    it->ev.timestamp > (int64_t)wall + STRIPE_MAX_AHEAD_S) {
		snprintf(
		    reason, sizeof(reason),
		    "timestamp %lld is outside Stripe's window (at most 35 days in the past, 5 "
		    "minutes ahead); not sent",
		    (long long)it->ev.timestamp);
		item_dead(s, idx, reason, now);
		return 0;
	}
	return 1;
}

/* Starts the request of `it`. Returns 0, or -1 (it was given a backoff; logged). */
static int item_start(struct sender *s, struct sender_item *it, int64_t now)
{
	char err[512] = "";
	struct stripe_request *req;
	CURLMcode mc;

	req = stripe_request_new(s->cfg, s->key, &it->ev, it, err, sizeof(err));
	if (req == NULL) {
		log_err("cannot build the request for event %lld: %s", (long long)it->ev.id, err);
		goto fail;
	}
	if (tsearch(it->key, &s->inflight_keys, key_cmp) == NULL) {
		log_err("out of memory starting a request");
		goto fail;
	}
	mc = curl_multi_add_handle(s->multi, stripe_request_easy(req));
	if (mc != CURLM_OK) {
		log_err("cannot start the request for event %lld: %s", (long long)it->ev.id,
		        curl_multi_strerror(mc));
		tdelete(it->key, &s->inflight_keys, key_cmp);
		goto fail;
	}
	it->req = req;
	s->inflight++;
	stats_add(s, &s->stats.requests, 1);
	return 0;
fail:
	stripe_request_free(req);
	it->next_attempt = now + backoff_ms(s, it->ev.attempts + 1);
	return -1;
}

/* One pass over the queue in id order: events of one (customer, event_name) go strictly in order
 * and one at a time, which is what Stripe asks. Returns when something becomes due (monotonic
 * ms), or INT64_MAX if only a finished transfer can change anything. */
static int64_t start_requests(struct sender *s, int64_t now)
{
	int64_t limit = s->probe ? 1 : s->cfg->stripe.max_concurrency;
	int64_t wake = INT64_MAX, token_wake = INT64_MAX;
	void *seen = NULL; /* keys of events this pass left queued */

	if (limit < 1)
		limit = 1;
	/* Outcomes the spool cannot take (a full disk) stay in memory until it can: beyond a
	 * queue's worth, sending waits for them rather than letting them grow without bound. */
	if (s->n_marks >= SENDER_QUEUE_MAX)
		return INT64_MAX;
	for (size_t i = 0; i < s->n; i++) {
		struct sender_item *it = s->queue[i];

		if ((int64_t)s->inflight >= limit)
			break;
		if (it == NULL || it->req != NULL)
			continue;
		if (!item_sendable(s, i, now))
			continue;
		if (tfind(it->key, &s->inflight_keys, key_cmp) != NULL ||
		    tfind(it->key, &seen, key_cmp) != NULL)
			continue;
		if (it->next_attempt > now) {
			wake = min64(wake, it->next_attempt);
			if (tsearch(it->key, &seen, key_cmp) == NULL)
				break;
			continue;
		}
		if (!token_take(s, now, &token_wake)) {
			wake = min64(wake, token_wake);
			break;
		}
		if (item_start(s, it, now) != 0) {
			wake = min64(wake, it->next_attempt);
			if (tsearch(it->key, &seen, key_cmp) == NULL)
				break;
		}
	}
	tdestroy(seen, key_nofree);
	queue_compact(s);
	return wake;
}

static void pause_start(struct sender *s, long status, int64_t now)
{
	int64_t pause = s->cfg->stripe.auth_pause_ms > 0 ? s->cfg->stripe.auth_pause_ms : 60000;

	s->pause_until = now + pause;
	if (s->paused)
		return;
	if (s->once)
		log_err("Stripe refused the API key (HTTP %ld): stopping; events stay pending",
		        status);
	else if (s->probe)
		log_err("Stripe still refuses the API key (HTTP %ld): sending paused for another "
		        "%lld s; events stay pending",
		        status, (long long)(pause / 1000));
	else
		log_err("Stripe refused the API key (HTTP %ld): sending paused for %lld s; events "
		        "stay pending",
		        status, (long long)(pause / 1000));
	s->paused = 1;
	s->probe = 0;
}

/* At the end of a pause: re-reads the key (an operator may have fixed the file) and lets one
 * request find out whether Stripe takes it. */
static void pause_end(struct sender *s, int64_t now)
{
	char key[STRIPE_KEY_MAX];
	char err[512] = "";

	if (stripe_key_load(s->cfg, key, sizeof(key), err, sizeof(err)) != 0) {
		log_err("cannot re-read the Stripe API key: %s; sending stays paused", err);
		s->pause_until =
		    now + (s->cfg->stripe.auth_pause_ms > 0 ? s->cfg->stripe.auth_pause_ms : 60000);
		return;
	}
	explicit_bzero(s->key, sizeof(s->key));
	memcpy(s->key, key, sizeof(s->key));
	explicit_bzero(key, sizeof(key));
	s->paused = 0;
	s->probe = 1;
	log_info("trying the Stripe API key again with one request");
}

/* Applies the outcome of one finished transfer. */
static void handle_done(struct sender *s, CURL *easy, CURLcode code, int64_t now)
{
	struct stripe_request *req;
	struct sender_item *it;
	char *priv = NULL;
	char reason[STRIPE_REASON_MAX];
	char msg[STRIPE_REASON_MAX + 256];
	enum stripe_outcome out;
	enum event_state state = EVENT_PENDING;
	long status = 0;

	if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK || priv == NULL) {
		curl_multi_remove_handle(s->multi, easy);
		return;
	}
	req = (struct stripe_request *)(void *)priv;
	it = stripe_request_ud(req);
	out = stripe_request_result(req, code, reason, sizeof(reason));
	/* Stripe may have accepted the event: a crash now re-sends it with the same identifier. */
	crash_point("sender_after_answer");
	if (code == CURLE_OK)
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(s->multi, easy);
	stripe_request_free(req);
	it->req = NULL;
	tdelete(it->key, &s->inflight_keys, key_cmp);
	s->inflight--;
	it->ev.attempts++;

	if (s->probe && out != STRIPE_AUTH && status != 0) {
		s->probe = 0;
		log_info("Stripe accepts the API key: sending resumed");
	}
	switch (out) {
	case STRIPE_DELIVERED:
		state = EVENT_DELIVERED;
		stats_add(s, &s->stats.delivered, 1);
		if (strstr(reason, "already exists") != NULL) {
			stats_add(s, &s->stats.duplicates, 1);
			log_debug("event %lld (%s) was already delivered: %s", (long long)it->ev.id,
			          it->ev.identifier, reason);
		}
		break;
	case STRIPE_REJECTED:
		crash_point("sender_dead_letter");
		state = EVENT_DEAD;
		stats_add(s, &s->stats.dead, 1);
		err_set(msg, sizeof(msg),
		        "Stripe rejected event %lld (%s, rule %s): %s; kept as a dead letter",
		        (long long)it->ev.id, it->ev.identifier, it->ev.rule, reason);
		ratelog_add(&s->dead_log, now, msg);
		break;
	case STRIPE_RETRY: {
		int64_t delay = backoff_ms(s, it->ev.attempts);

		it->next_attempt = now + delay;
		stats_add(s, &s->stats.retries, 1);
		err_set(msg, sizeof(msg),
		        "event %lld (%s): %s; will retry in %lld ms (attempt %lld)",
		        (long long)it->ev.id, it->ev.identifier, reason, (long long)delay,
		        (long long)it->ev.attempts);
		ratelog_add(&s->retry_log, now, msg);
		break;
	}
	case STRIPE_AUTH:
		stats_add(s, &s->stats.auth_pauses, 1);
		it->next_attempt = 0;
		s->auth_status = status;
		pause_start(s, status, now);
		if (s->once)
			s->auth_failed = 1;
		break;
	}
	if (mark_add(s, &it->ev, state, state == EVENT_DELIVERED ? NULL : reason) != 0) {
		/* Not recorded: a delivered event stays queued and is sent again (Stripe answers
		 * "already exists"); a dead one is retried. Nothing is lost. */
		log_err("out of memory recording the outcome of event %lld", (long long)it->ev.id);
		if (state != EVENT_PENDING)
			it->next_attempt = now + backoff_ms(s, it->ev.attempts);
		return;
	}
	if (state != EVENT_PENDING) {
		for (size_t i = 0; i < s->n; i++) {
			if (s->queue[i] == it) {
				item_finish(s, i);
				break;
			}
		}
	}
}

static void collect_done(struct sender *s, int64_t now)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
		if (msg->msg == CURLMSG_DONE)
			handle_done(s, msg->easy_handle, msg->data.result, now);
	}
	queue_compact(s);
}

/* Abandons what is still in flight: those events stay pending and are sent again later with the
 * same identifier. */
static void abandon_inflight(struct sender *s)
{
	for (size_t i = 0; i < s->n; i++) {
		struct sender_item *it = s->queue[i];

		if (it == NULL || it->req == NULL)
			continue;
		curl_multi_remove_handle(s->multi, stripe_request_easy(it->req));
		stripe_request_free(it->req);
		it->req = NULL;
		tdelete(it->key, &s->inflight_keys, key_cmp);
	}
	s->inflight = 0;
}

static void prune(struct sender *s, int64_t now)
{
	char err[512] = "";
	int64_t deleted = 0;
	int64_t before = (int64_t)time(NULL) - s->cfg->agent.delivered_retention;

	s->next_prune = now + SENDER_PRUNE_EVERY_MS;
	if (s->cfg->agent.delivered_retention < 0)
		return;
	if (spool_prune_delivered(s->sp, before, &deleted, err, sizeof(err)) != 0) {
		log_err("cannot prune delivered events from the spool: %s", err);
		return;
	}
	if (deleted > 0)
		log_info("pruned %lld delivered events older than %lld s from the spool",
		         (long long)deleted, (long long)s->cfg->agent.delivered_retention);
}

/* ---- public ---- */

struct sender *sender_new(const struct config *cfg, char *err, size_t errlen)
{
	struct sender *s;
	const char *base;
	int64_t conc;

	if (cfg == NULL || cfg->agent.state_dir == NULL) {
		err_set(err, errlen, "sender: no configuration");
		return NULL;
	}
	base = cfg->stripe.api_base != NULL ? cfg->stripe.api_base : "https://api.stripe.com";
	if (stripe_check_base(base, err, errlen) != 0)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	pthread_mutex_init(&s->stats_lock, NULL);
	atomic_init(&s->stop, 0);
	atomic_init(&s->notify, 0);
	atomic_init(&s->grace_ms, 0);
	ratelog_init(&s->retry_log, LOG_LVL_WARN, "transient failures");
	ratelog_init(&s->dead_log, LOG_LVL_WARN, "dead letters");
	ratelog_init(&s->spool_log, LOG_LVL_ERR, "spool errors");
	if (getrandom(&s->rng, sizeof(s->rng), GRND_NONBLOCK) != (ssize_t)sizeof(s->rng))
		s->rng = (uint64_t)mono_ms() ^ (uint64_t)time(NULL) << 20;
	if (s->rng == 0)
		s->rng = 0x9e3779b97f4a7c15ULL;

	if (stripe_key_load(cfg, s->key, sizeof(s->key), err, errlen) != 0)
		goto fail;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		err_set(err, errlen, "curl_global_init failed");
		goto fail;
	}
	s->curl_inited = 1;
	s->queue = calloc(SENDER_QUEUE_MAX, sizeof(*s->queue));
	s->loadbuf = calloc(SENDER_LOAD_CHUNK, sizeof(*s->loadbuf));
	if (s->queue == NULL || s->loadbuf == NULL) {
		err_set(err, errlen, "out of memory");
		goto fail;
	}
	s->multi = curl_multi_init();
	if (s->multi == NULL) {
		err_set(err, errlen, "curl_multi_init failed");
		goto fail;
	}
	conc = cfg->stripe.max_concurrency > 0 ? cfg->stripe.max_concurrency : 1;
	if (conc > LONG_MAX / 2)
		conc = LONG_MAX / 2;
	curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
	curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)conc);
	s->sp = spool_open(cfg->agent.state_dir, SPOOL_READ_WRITE, err, errlen);
	if (s->sp == NULL ||
	    spool_set_durability(s->sp,
	                         cfg->agent.durability == CONFIG_DURABILITY_NORMAL
	                             ? SPOOL_DURABILITY_NORMAL
	                             : SPOOL_DURABILITY_STRICT,
	                         err, errlen) < 0)
		goto fail;
	s->tokens = 1.0;
	s->tokens_at = mono_ms();
	return s;
fail:
	sender_free(s);
	return NULL;
}

void sender_free(struct sender *s)
{
	if (s == NULL)
		return;
	if (s->multi != NULL)
		abandon_inflight(s);
	tdestroy(s->inflight_keys, key_nofree);
	if (s->queue != NULL) {
		for (size_t i = 0; i < s->n; i++)
			free(s->queue[i]);
	}
	free(s->queue);
	free(s->loadbuf);
	free(s->marks);
	free(s->errors);
	if (s->multi != NULL)
		curl_multi_cleanup(s->multi);
	spool_free(s->sp);
	if (s->curl_inited)
		curl_global_cleanup();
	explicit_bzero(s->key, sizeof(s->key));
	pthread_mutex_destroy(&s->stats_lock);
	free(s);
}

/* Loads events as the situation asks. Returns 0, or -1 on a spool error (logged). */
static int maybe_load(struct sender *s, int once, int notified, int64_t now)
{
	char err[512] = "";
	int idle = s->n == 0 && s->inflight == 0 && s->n_marks == 0;
	int rc = 0;

	if (now < s->next_spool_try)
		return 0;
	if (idle) {
		/* Starting over from id 0 also finds events another process (replay) made
		 * pending again; with an empty queue it cannot load one twice. */
		if (once || notified || now >= s->next_idle_reload) {
			s->next_idle_reload = now + SENDER_IDLE_RELOAD_MS;
			rc = queue_load(s, 1, now, err, sizeof(err));
		}
	} else if (s->n < SENDER_QUEUE_MAX &&
	           (notified || now >= s->next_reload ||
	            (s->more && SENDER_QUEUE_MAX - s->n >= SENDER_LOAD_CHUNK))) {
		rc = queue_load(s, 0, now, err, sizeof(err));
	} else if (notified) {
		s->more = 1;
	}
	if (rc != 0) {
		char msg[sizeof(err) + 64];

		err_set(msg, sizeof(msg), "cannot read pending events from the spool: %s", err);
		ratelog_add(&s->spool_log, now, msg);
		s->next_spool_try = now + SENDER_SPOOL_RETRY_MS;
		if (once && !s->fatal) {
			s->fatal = 1;
			err_set(s->fatal_err, sizeof(s->fatal_err), "spool: %s", err);
		}
	}
	return rc;
}

int sender_run(struct sender *s, int once, char *err, size_t errlen)
{
	int stopping = 0;
	int64_t stop_deadline = 0;
	int64_t now = mono_ms();
	int rc = 0;

	if (s == NULL) {
		err_set(err, errlen, "sender_run: no sender");
		return -1;
	}
	s->once = once;
	prune(s, now);
	for (;;) {
		int64_t wake = INT64_MAX, timeout;
		int running = 0, notified;
		CURLMcode mc;

		health_beat(HEALTH_SENDER); /* each turn, at least every SENDER_POLL_MAX_MS */
		now = mono_ms();
		mc = curl_multi_perform(s->multi, &running);
		if (mc != CURLM_OK)
			log_err("curl_multi_perform: %s", curl_multi_strerror(mc));
		collect_done(s, now);
		if (s->n_marks > 0)
			marks_apply(s, now);

		if (!stopping && atomic_load(&s->stop)) {
			stopping = 1;
			stop_deadline = now + atomic_load(&s->grace_ms);
		}
		if (stopping) {
			if (s->inflight == 0 || now >= stop_deadline)
				break;
			wake = stop_deadline;
			goto poll;
		}
		if (s->auth_failed || s->fatal) {
			/* once-mode: start nothing more; end when the last answers are in. */
			if (s->inflight == 0)
				break;
			goto poll;
		}

		notified = atomic_exchange(&s->notify, 0);
		maybe_load(s, once, notified, now);
		if (s->fatal)
			continue;
		if (once && s->n == 0 && s->inflight == 0 && s->n_marks == 0)
			break; /* queue_load from 0 just found nothing pending */

		if (now >= s->next_prune)
			prune(s, now);
		if (s->paused && now >= s->pause_until)
			pause_end(s, now);
		if (!s->paused)
			wake = start_requests(s, now);
		else
			wake = s->pause_until;
		if (s->n_marks > 0)
			marks_apply(s, now);

		wake = min64(wake, s->next_prune);
		wake = min64(wake, s->next_reload);
		if (s->n == 0 && s->inflight == 0)
			wake = min64(wake, s->next_idle_reload);
		ratelog_flush(&s->retry_log, now, 0);
		ratelog_flush(&s->dead_log, now, 0);
		ratelog_flush(&s->spool_log, now, 0);
		wake = min64(wake, ratelog_due(&s->retry_log));
		wake = min64(wake, ratelog_due(&s->dead_log));
		wake = min64(wake, ratelog_due(&s->spool_log));
	poll:
		if (s->n_marks > 0)
			wake = min64(wake, s->next_mark_try);
		if (s->next_spool_try > now)
			wake = min64(wake, s->next_spool_try);
		timeout = wake == INT64_MAX ? SENDER_POLL_MAX_MS : wake - now;
		if (timeout > SENDER_POLL_MAX_MS)
			timeout = SENDER_POLL_MAX_MS;
		if (timeout < 1)
			timeout = 1; /* everything due was handled above: never spin */
		health_wait_begin(HEALTH_SENDER);
		mc = curl_multi_poll(s->multi, NULL, 0, (int)timeout, NULL);
		health_wait_end(HEALTH_SENDER);
		if (mc != CURLM_OK) {
			struct timespec ts = {0, 10 * 1000 * 1000};

			log_err("curl_multi_poll: %s", curl_multi_strerror(mc));
			nanosleep(&ts, NULL);
		}
	}

	abandon_inflight(s);
	queue_compact(s);
	now = mono_ms();
	ratelog_flush(&s->retry_log, now, 1);
	ratelog_flush(&s->dead_log, now, 1);
	ratelog_flush(&s->spool_log, now, 1);
	if (s->n_marks > 0) {
		s->next_mark_try = 0;
		if (marks_apply(s, now) != 0 && !stopping && !s->fatal) {
			/* Those events are sent again next time; Stripe answers "already exists".
			 */
			s->fatal = 1;
			if (s->fatal_err[0] == '\0')
				err_set(s->fatal_err, sizeof(s->fatal_err),
				        "spool: cannot record delivery outcomes");
		}
	}
	if (stopping) {
		rc = 0;
	} else if (s->fatal) {
		err_set(err, errlen, "%s", s->fatal_err[0] != '\0' ? s->fatal_err : "spool error");
		rc = -1;
	} else if (s->auth_failed) {
		err_set(err, errlen,
		        "Stripe refused the API key (HTTP %ld); the events stay pending",
		        s->auth_status);
		rc = 1;
	}
	return rc;
}

void sender_stop(struct sender *s, int64_t grace_ms)
{
	if (s == NULL)
		return;
	atomic_store(&s->grace_ms, grace_ms > 0 ? grace_ms : 0);
	atomic_store(&s->stop, 1);
	curl_multi_wakeup(s->multi);
}

void sender_notify(struct sender *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->notify, 1);
	curl_multi_wakeup(s->multi);
}

void sender_get_stats(struct sender *s, struct sender_stats *out)
{
	if (s == NULL || out == NULL)
		return;
	pthread_mutex_lock(&s->stats_lock);
	*out = s->stats;
	pthread_mutex_unlock(&s->stats_lock);
}
