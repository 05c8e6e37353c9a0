/* Unit tests of sender: a real sender, with its own spool handle and libcurl, against a small
 * HTTP server in this file on 127.0.0.1 that answers as Stripe does (docs/stripe-contract.md):
 * each request gets the next answer of the test's script, and a request under an
 * Idempotency-Key that already got a 500 gets that 500 again, replayed, as Stripe saves it. The
 * server records every request (its Idempotency-Key, identifier and times), and the spool is read
 * back after the run: the expected keys, states and counts follow from the script. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/event.h"
#include "send/sender.h"
#include "store/spool.h"
#include "util/clock.h"
#include "util/statefile.h"

#include "fixture.h"

#define TEST_KEY "sk_test_SENDERTEST"

/* What the server answers a POST of a meter event with. */
enum answer {
	ANS_OK,       /* 200, the meter event with the identifier sent */
	ANS_500,      /* 500 api_error, saved under the Idempotency-Key */
	ANS_429,      /* 429 rate_limit */
	ANS_429_WAIT, /* 429 rate_limit with Retry-After: 1 */
	ANS_302,      /* a redirect: not Stripe's answer */
	ANS_NO_METER, /* 400: no active meter for the event name */
	ANS_EXISTS,   /* 400: an event already exists with the identifier */
	ANS_BAD_KEY,  /* 401 */
};

struct request {
	char key[EVENT_IDEMPOTENCY_KEY_MAX]; /* Idempotency-Key */
	char identifier[EVENT_IDENTIFIER_MAX];
	char customer[64];
	int64_t timestamp; /* the form's timestamp */
	int64_t wall;      /* time(2) when it arrived */
	int64_t mono;      /* clock_mono_ms when it arrived */
	enum answer answer;
	int replayed; /* a saved answer sent again */
};

struct server {
	int fd, port;
	pthread_t thread;
	atomic_int stop;
	pthread_mutex_t lock;
	enum answer script[16]; /* the answers to fresh keys, in order; then `then` */
	size_t n_script, next;
	enum answer then;
	struct request reqs[256];
	size_t n_reqs;
	char saved[64][EVENT_IDEMPOTENCY_KEY_MAX]; /* keys that got a 500 */
	size_t n_saved;
	int meter_lists; /* GET /v1/billing/meters, at the sender's start */
};

struct sender_fixture {
	struct fixture *base;
	struct server sv;
	struct spool_file f;
};

/* ---- the server ---- */

/* The value of form field `name` in `body` (not percent-decoded: the tests' values need none). */
static void form_value(const char *body, const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name);
	const char *p = body;

	out[0] = '\0';
	while (p != NULL && *p != '\0') {
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			const char *end = strchr(p + n + 1, '&');
			size_t len = end != NULL ? (size_t)(end - p - n - 1) : strlen(p + n + 1);

			snprintf(out, outlen, "%.*s", (int)len, p + n + 1);
			return;
		}
		p = strchr(p, '&');
		if (p != NULL)
			p++;
	}
}

static void header_value(const char *head, const char *name, char *out, size_t outlen)
{
	char want[64];
	const char *p, *end;

	out[0] = '\0';
	snprintf(want, sizeof(want), "\r\n%s:", name);
	p = strcasestr(head, want);
	if (p == NULL)
		return;
	p += strlen(want);
	while (*p == ' ')
		p++;
	end = strstr(p, "\r\n");
	if (end != NULL)
		snprintf(out, outlen, "%.*s", (int)(end - p), p);
}

static int was_saved(const struct server *sv, const char *key)
{
	for (size_t i = 0; i < sv->n_saved; i++)
		if (strcmp(sv->saved[i], key) == 0)
			return 1;
	return 0;
}

/* Writes the whole answer to `c`. */
static void send_all(int c, const char *buf, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = write(c, buf + off, len - off);

		if (n <= 0)
			return;
		off += (size_t)n;
	}
}

static void respond(int c, const char *status, const char *headers, const char *body)
{
	char buf[2048];
	int n = snprintf(buf, sizeof(buf),
	                 "HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n%s"
	                 "Content-Length: %zu\r\n\r\n%s",
	                 status, headers, strlen(body), body);

	assert_true(n > 0 && (size_t)n < sizeof(buf));
	send_all(c, buf, (size_t)n);
}

/* Reads one request from `c` and answers it. */
static void serve(struct server *sv, int c)
{
	char req[16384], key[EVENT_IDEMPOTENCY_KEY_MAX], body[512], cl[32], ts[32];
	size_t len = 0, want = 0;
	struct request *r;
	enum answer ans;
	const char *end;
	int replayed = 0;

	while (len < sizeof(req) - 1) {
		ssize_t n = read(c, req + len, sizeof(req) - 1 - len);

		if (n <= 0)
			return;
		len += (size_t)n;
		req[len] = '\0';
		end = strstr(req, "\r\n\r\n");
		if (end == NULL)
			continue;
		header_value(req, "Content-Length", cl, sizeof(cl));
		want = (size_t)(end + 4 - req) + (size_t)strtoul(cl, NULL, 10);
		if (len >= want)
			break;
	}
	end = strstr(req, "\r\n\r\n");
	if (end == NULL)
		return;
	if (strncmp(req, "GET /v1/billing/meters", 22) == 0) {
		pthread_mutex_lock(&sv->lock);
		sv->meter_lists++;
		pthread_mutex_unlock(&sv->lock);
		respond(c, "200 OK", "", "{\"object\":\"list\",\"data\":[],\"has_more\":false}");
		return;
	}
	assert_true(strncmp(req, "POST /v1/billing/meter_events HTTP/1.1\r\n", 40) == 0);
	snprintf(body, sizeof(body), "%s", end + 4);
	header_value(req, "Idempotency-Key", key, sizeof(key));

	pthread_mutex_lock(&sv->lock);
	if (was_saved(sv, key)) {
		ans = ANS_500;
		replayed = 1;
	} else {
		ans = sv->next < sv->n_script ? sv->script[sv->next++] : sv->then;
		if (ans == ANS_500 && sv->n_saved < sizeof(sv->saved) / sizeof(sv->saved[0]))
			snprintf(sv->saved[sv->n_saved++], sizeof(sv->saved[0]), "%s", key);
	}
	assert_true(sv->n_reqs < sizeof(sv->reqs) / sizeof(sv->reqs[0]));
	r = &sv->reqs[sv->n_reqs++];
	memset(r, 0, sizeof(*r));
	snprintf(r->key, sizeof(r->key), "%s", key);
	form_value(body, "identifier", r->identifier, sizeof(r->identifier));
	form_value(body, "payload[stripe_customer_id]", r->customer, sizeof(r->customer));
	form_value(body, "timestamp", ts, sizeof(ts));
	r->timestamp = strtoll(ts, NULL, 10);
	r->wall = (int64_t)time(NULL);
	r->mono = clock_mono_ms();
	r->answer = ans;
	r->replayed = replayed;
	pthread_mutex_unlock(&sv->lock);

	switch (ans) {
	case ANS_OK: {
		char ev[512];

		snprintf(
		    ev, sizeof(ev),
		    "{\"object\":\"billing.meter_event\",\"identifier\":\"%s\",\"livemode\":false,"
		    "\"timestamp\":%lld}",
		    r->identifier, (long long)r->timestamp);
		respond(c, "200 OK", "", ev);
		break;
	}
	case ANS_500:
		respond(c, "500 Internal Server Error",
		        replayed ? "Idempotent-Replayed: true\r\n" : "",
		        "{\"error\":{\"message\":\"An unknown error "
		        "occurred\",\"type\":\"api_error\"}}");
		break;
	case ANS_429:
	case ANS_429_WAIT:
		respond(c, "429 Too Many Requests", ans == ANS_429_WAIT ? "Retry-After: 1\r\n" : "",
		        "{\"error\":{\"message\":\"Request rate limit exceeded.\","
		        "\"type\":\"invalid_request_error\",\"code\":\"rate_limit\"}}");
		break;
	case ANS_302:
		respond(c, "302 Found", "Location: https://login.example.com/\r\n", "");
		break;
	case ANS_NO_METER:
		respond(
		    c, "400 Bad Request", "",
		    "{\"error\":{\"message\":\"No active meter found for event name api_calls.\","
		    "\"type\":\"invalid_request_error\"}}");
		break;
	case ANS_EXISTS: {
		char msg[512];

		snprintf(msg, sizeof(msg),
		         "{\"error\":{\"message\":\"An event already exists with identifier %s.\","
		         "\"type\":\"invalid_request_error\"}}",
		         r->identifier);
		respond(c, "400 Bad Request", "", msg);
		break;
	}
	case ANS_BAD_KEY:
		respond(c, "401 Unauthorized", "",
		        "{\"error\":{\"message\":\"Invalid API Key provided: sk_test_****TEST\","
		        "\"type\":\"invalid_request_error\"}}");
		break;
	}
}

static void *server_main(void *arg)
{
	struct server *sv = arg;

	while (!atomic_load(&sv->stop)) {
		struct pollfd pfd = {.fd = sv->fd, .events = POLLIN};
		int c;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		c = accept(sv->fd, NULL, NULL);
		if (c < 0)
			continue;
		serve(sv, c);
		close(c);
	}
	return NULL;
}

static void server_start(struct server *sv)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);

	sv->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(sv->fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(sv->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(sv->fd, 16), 0);
	assert_int_equal(getsockname(sv->fd, (struct sockaddr *)&sa, &salen), 0);
	sv->port = ntohs(sa.sin_port);
	pthread_mutex_init(&sv->lock, NULL);
	atomic_init(&sv->stop, 0);
	assert_int_equal(pthread_create(&sv->thread, NULL, server_main, sv), 0);
}

static void server_stop(struct server *sv)
{
	atomic_store(&sv->stop, 1);
	pthread_join(sv->thread, NULL);
	close(sv->fd);
	pthread_mutex_destroy(&sv->lock);
}

/* The answers to the next `n` requests under fresh keys, then `then` to the rest. */
static void script(struct server *sv, size_t n, const enum answer *answers, enum answer then)
{
	pthread_mutex_lock(&sv->lock);
	assert_true(n <= sizeof(sv->script) / sizeof(sv->script[0]));
	if (n > 0)
		memcpy(sv->script, answers, n * sizeof(*answers));
	sv->n_script = n;
	sv->next = 0;
	sv->then = then;
	pthread_mutex_unlock(&sv->lock);
}

/* ---- fixture ---- */

static int setup(void **state)
{
	struct sender_fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	fx->base = fixture_new("test_sender");
	fixture_file_add(fx->base, "app", 7, &fx->f);
	server_start(&fx->sv);
	setenv("LOGMETER_STRIPE_API_KEY", TEST_KEY, 1);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct sender_fixture *fx = *state;

	server_stop(&fx->sv);
	fixture_free(fx->base);
	free(fx);
	return 0;
}

/* The configuration: the server as api_base, one request at a time, and the lines `stripe` of
 * [stripe]. */
static const struct config *config(struct sender_fixture *fx, const char *stripe)
{
	return fixture_config(fx->base,
	                      "[stripe]\napi_base = http://127.0.0.1:%d\nmax_concurrency = 1\n"
	                      "request_timeout = 10s\n%s",
	                      fx->sv.port, stripe);
}

/* [stripe] lines: quick retries, and a rate that never makes a test wait. */
#define FAST "max_requests_per_second = 1000\nretry_min_backoff = 10ms\nretry_max_backoff = 100ms\n"

/* Spools `n` events at offsets 0, 100, ...: customers cus_0, cus_1, ... (each its own (customer,
 * event_name), so none waits for another), stamped `timestamp` (0: now); sets their ids. */
static void spool_events(struct sender_fixture *fx, struct event *evs, size_t n, int64_t timestamp)
{
	char err[512] = "";

	for (size_t i = 0; i < n; i++) {
		fixture_event(&evs[i], fx->f.id, (int64_t)i * 100);
		snprintf(evs[i].customer, sizeof(evs[i].customer), "cus_%zu", i);
		snprintf(evs[i].customer_key, sizeof(evs[i].customer_key), "cus_%zu", i);
		if (timestamp != 0)
			evs[i].timestamp = timestamp;
	}
	fx->f.offset = (int64_t)n * 100;
	if (fixture_commit(fixture_spool(fx->base), &fx->f, evs, n, err, sizeof(err)) != 0)
		fail_msg("spool_commit: %s", err);
}

/* The event with id `id` as the spool has it now (any state). */
struct find {
	int64_t id;
	struct event ev;
	int found;
};

static int find_cb(const struct event *ev, void *ud)
{
	struct find *f = ud;

	if (ev->id == f->id) {
		f->ev = *ev;
		f->found = 1;
	}
	return 0;
}

static struct event spooled(struct sender_fixture *fx, int64_t id)
{
	static const enum event_state states[] = {EVENT_PENDING, EVENT_DELIVERED, EVENT_DEAD,
	                                          EVENT_UNSURE};
	struct find f = {.id = id};
	char err[512] = "";

	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if (spool_events_foreach(fixture_spool(fx->base), states[i], find_cb, &f, err,
		                         sizeof(err)) != 0)
			fail_msg("spool_events_foreach: %s", err);
	if (!f.found)
		fail_msg("event %lld is not in the spool", (long long)id);
	return f.ev;
}

/* The Idempotency-Key of generation `gen` of `identifier`, as docs/identifiers.md gives it. */
static const char *key_of(const char *identifier, int gen)
{
	static char buf[4][EVENT_IDEMPOTENCY_KEY_MAX];
	static unsigned next;
	char *b = buf[next++ % 4];

	if (gen == 0)
		snprintf(b, EVENT_IDEMPOTENCY_KEY_MAX, "%s", identifier);
	else
		snprintf(b, EVENT_IDEMPOTENCY_KEY_MAX, "%s-r%d", identifier, gen);
	return b;
}

/* Runs a new sender in once-mode to its end; returns sender_run's result, with its error text
 * in `err` and its counters in *st. */
static int run_once(const struct config *cfg, struct sender_stats *st, char *err, size_t errlen)
{
	struct sender *s;
	int rc;

	s = sender_new(cfg, err, errlen);
	if (s == NULL)
		fail_msg("sender_new: %s", err);
	rc = sender_run(s, 1, err, errlen);
	sender_get_stats(s, st);
	sender_free(s);
	return rc;
}

/* A sender running in its own thread (not once-mode), stopped by runner_stop. */
struct runner {
	struct sender *s;
	pthread_t th;
	int rc;
	char err[512];
};

static void *runner_main(void *arg)
{
	struct runner *r = arg;

	r->rc = sender_run(r->s, 0, r->err, sizeof(r->err));
	return NULL;
}

static void runner_start(struct runner *r, const struct config *cfg)
{
	char err[512] = "";

	memset(r, 0, sizeof(*r));
	r->s = sender_new(cfg, err, sizeof(err));
	if (r->s == NULL)
		fail_msg("sender_new: %s", err);
	sender_publish(r->s);
	assert_int_equal(pthread_create(&r->th, NULL, runner_main, r), 0);
}

/* Stops the sender, keeps its counters in *st, and frees it (which writes its last state). */
static void runner_stop(struct runner *r, struct sender_stats *st)
{
	sender_stop(r->s, 1000);
	assert_int_equal(pthread_join(r->th, NULL), 0);
	assert_int_equal(r->rc, 0);
	sender_get_stats(r->s, st);
	sender_free(r->s);
	r->s = NULL;
}

/* Waits until event `id` is in `state` in the spool (read by its own handle, as `status` would),
 * 60 s at most; on timeout stops the sender first, so that the failure is reported cleanly. */
static void wait_state(struct sender_fixture *fx, struct runner *r, int64_t id,
                       enum event_state state)
{
	struct timespec ts = {0, 20 * 1000 * 1000};
	struct sender_stats st;

	for (int i = 0; i < 3000; i++) {
		if (spooled(fx, id).state == state)
			return;
		nanosleep(&ts, NULL);
	}
	runner_stop(r, &st);
	fail_msg("timed out (60 s) waiting for event %lld to reach state %d", (long long)id,
	         (int)state);
}

/* The sender's region of STATE/agent.state, as sender_publish wrote it last. */
struct published {
	double rate, rate_max;
	long long rate_cut, held;
	char state[32];
};

static void published_cb(const char *key, const char *value, void *ud)
{
	struct published *p = ud;

	if (strcmp(key, "rate") == 0)
		p->rate = strtod(value, NULL);
	else if (strcmp(key, "rate_max") == 0)
		p->rate_max = strtod(value, NULL);
	else if (strcmp(key, "rate_cut") == 0)
		p->rate_cut = strtoll(value, NULL, 10);
	else if (strcmp(key, "held") == 0)
		p->held = strtoll(value, NULL, 10);
	else if (strcmp(key, "sender") == 0)
		snprintf(p->state, sizeof(p->state), "%s", value);
}

static struct published published(struct sender_fixture *fx)
{
	char buf[STATEFILE_REGION_BYTES + 1], err[512] = "";
	struct published p;

	memset(&p, 0, sizeof(p));
	if (statefile_read(fx->base->state, STATEFILE_SENDER, buf, sizeof(buf), err, sizeof(err)) !=
	    1)
		fail_msg("the sender's state was not published: %s", err);
	statefile_parse(buf, published_cb, &p);
	return p;
}

/* ---- tests ---- */

/* A 500 is saved by Stripe under its Idempotency-Key: the next attempt goes under the next key
 * generation, with the same identifier and the same parameters, and gets a fresh answer. */
static void test_saved_500_new_generation(void **state)
{
	static const enum answer answers[] = {ANS_500};
	struct sender_fixture *fx = *state;
	struct sender_stats st;
	struct event ev, got;
	char err[512] = "";
	int64_t t0 = (int64_t)time(NULL), t1;

	script(&fx->sv, 1, answers, ANS_OK);
	spool_events(fx, &ev, 1, 0);
	assert_int_equal(run_once(config(fx, FAST), &st, err, sizeof(err)), 0);
	t1 = (int64_t)time(NULL);

	assert_int_equal(fx->sv.meter_lists, 1);
	assert_int_equal(fx->sv.n_reqs, 2);
	assert_string_equal(fx->sv.reqs[0].key, key_of(ev.identifier, 0));
	assert_int_equal(fx->sv.reqs[0].answer, ANS_500);
	assert_string_equal(fx->sv.reqs[1].key, key_of(ev.identifier, 1));
	assert_int_equal(fx->sv.reqs[1].answer, ANS_OK);
	assert_int_equal(fx->sv.reqs[1].replayed, 0);
	for (size_t i = 0; i < 2; i++) {
		assert_string_equal(fx->sv.reqs[i].identifier, ev.identifier);
		assert_int_equal(fx->sv.reqs[i].timestamp, ev.timestamp);
		assert_string_equal(fx->sv.reqs[i].customer, "cus_0");
	}
	assert_int_equal(st.requests, 2);
	assert_int_equal(st.delivered, 1);
	assert_int_equal(st.retries, 1);
	assert_int_equal(st.unknown, 1);
	assert_int_equal(st.dead, 0);

	/* The marks in the spool: delivered, two attempts, the generation it was delivered under,
	 * and when the unknown outcome was. */
	got = spooled(fx, ev.id);
	assert_int_equal(got.state, EVENT_DELIVERED);
	assert_int_equal(got.attempts, 2);
	assert_int_equal(got.key_generation, 1);
	assert_true(got.first_unknown >= t0 && got.first_unknown <= t1);
	assert_true(got.delivered_at >= t0 && got.delivered_at <= t1);
}

/* A saved 500 replayed under a key the sender would use again could never be delivered: here
 * Stripe saved the 500s of generations 0 and 1, and only generation 2 gets through. */
static void test_saved_500s_replayed(void **state)
{
	static const enum answer answers[] = {ANS_500, ANS_500};
	struct sender_fixture *fx = *state;
	struct sender_stats st;
	struct event ev;
	char err[512] = "";

	script(&fx->sv, 2, answers, ANS_OK);
	spool_events(fx, &ev, 1, 0);
	assert_int_equal(run_once(config(fx, FAST), &st, err, sizeof(err)), 0);
	assert_int_equal(fx->sv.n_reqs, 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(fx->sv.reqs[i].key, key_of(ev.identifier, i));
		assert_int_equal(fx->sv.reqs[i].replayed, 0);
	}
	assert_int_equal(spooled(fx, ev.id).state, EVENT_DELIVERED);
	assert_int_equal(spooled(fx, ev.id).key_generation, 2);
	assert_int_equal(st.unknown, 2);
}

/* A 429 halves the rate (from max_requests_per_second) and is retried under the same key: the
 * request was not carried out. With Retry-After, nothing is sent before it has passed. */
static void test_429_halves_rate(void **state)
{
	static const enum answer answers[] = {ANS_429_WAIT};
	struct sender_fixture *fx = *state;
	struct sender_stats st;
	struct published p;
	struct event ev, got;
	struct runner r;
	int64_t t0 = (int64_t)time(NULL);

	script(&fx->sv, 1, answers, ANS_OK);
	spool_events(fx, &ev, 1, 0);
	runner_start(&r, config(fx, "max_requests_per_second = 100\nretry_min_backoff = 10ms\n"));
	wait_state(fx, &r, ev.id, EVENT_DELIVERED);
	runner_stop(&r, &st);

	assert_int_equal(fx->sv.n_reqs, 2);
	assert_int_equal(fx->sv.reqs[0].answer, ANS_429_WAIT);
	assert_string_equal(fx->sv.reqs[0].key, key_of(ev.identifier, 0));
	assert_string_equal(fx->sv.reqs[1].key, key_of(ev.identifier, 0));
	/* Retry-After: 1 is a second from the answer, which came after the request arrived. */
	assert_true(fx->sv.reqs[1].mono - fx->sv.reqs[0].mono >= 1000);
	assert_int_equal(st.rate_limited, 1);
	assert_int_equal(st.unknown, 0);
	assert_int_equal(st.delivered, 1);
	got = spooled(fx, ev.id);
	assert_int_equal(got.attempts, 2);
	assert_int_equal(got.key_generation, 0);
	assert_int_equal(got.first_unknown, 0);

	/* Halved to 50/s; the one success since climbs back at most a second's share of the
	 * climb (100/s over 60 s). */
	p = published(fx);
	assert_string_equal(p.state, "stopped");
	assert_true(p.rate_max == 100.0);
	assert_true(p.rate >= 50.0 && p.rate <= 50.0 + 100.0 / 60.0 + 0.05);
	assert_true(p.rate_cut >= t0 && p.rate_cut <= (int64_t)time(NULL));
}

/* A redirect is not Stripe's answer: sending pauses (in once-mode the run ends with 2), the event
 * stays pending under the next key generation, and nothing else is sent. */
static void test_redirect_pauses(void **state)
{
	static const enum answer answers[] = {ANS_302};
	struct sender_fixture *fx = *state;
	struct sender_stats st;
	struct event evs[2], got;
	char err[512] = "";

	script(&fx->sv, 1, answers, ANS_OK);
	spool_events(fx, evs, 2, 0);
	assert_int_equal(run_once(config(fx, FAST), &st, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "HTTP 302"));
	assert_non_null(strstr(err, "https://login.example.com/"));
	assert_non_null(strstr(err, "the events stay pending"));
	assert_int_equal(fx->sv.n_reqs, 1);
	assert_int_equal(st.unexpected, 1);
	got = spooled(fx, evs[0].id);
	assert_int_equal(got.state, EVENT_PENDING);
	assert_int_equal(got.attempts, 1);
	assert_int_equal(got.key_generation, 1);
	assert_int_equal(got.first_unknown, 0); /* a redirect carried nothing out */
	assert_non_null(strstr(got.last_error, "HTTP 302"));
	got = spooled(fx, evs[1].id);
	assert_int_equal(got.state, EVENT_PENDING);
	assert_int_equal(got.attempts, 0);
}

/* Running: after the pause (auth_pause), one request finds out whether Stripe answers again;
 * then everything is sent. */
static void test_redirect_then_resume(void **state)
{
	static const enum answer answers[] = {ANS_302};
	struct sender_fixture *fx = *state;
	struct sender_stats st;
	struct event evs[3];
	struct runner r;

	script(&fx->sv, 1, answers, ANS_OK);
	spool_events(fx, evs, 3, 0);
	runner_start(&r, config(fx, FAST "auth_pause = 300ms\n"));
	for (size_t i = 0; i < 3; i++)
		wait_state(fx, &r, evs[i].id, EVENT_DELIVERED);
	runner_stop(&r, &st);
	assert_int_equal(fx->sv.n_reqs, 4);
	assert_string_equal(fx->sv.reqs[0].key, key_of(evs[0].identifier, 0));
	assert_string_equal(fx->sv.reqs[1].key, key_of(evs[0].identifier, 1));
	/* Nothing during the pause. */
	assert_true(fx->sv.reqs[1].mono - fx->sv.reqs[0].mono >= 300);
	assert_int_equal(st.unexpected, 1);
	assert_int_equal(st.delivered, 3);
}

/* An event stamped more than 5 minutes ahead of the clock is held, not sent (Stripe would
 * refuse it) and not dead, while the others go; one stamped just past the limit goes once the
 * clock has caught up, never before. */
static void test_ahead_held(void **state)
{
	struct sender_fixture *fx = *state;
	struct sender_stats st;
	struct published p;
	struct event ahead, soon, now;
	struct runner r;
	int64_t t0 = (int64_t)time(NULL);

	spool_events(fx, &ahead, 1, t0 + 3600);
	fx->f.offset = 1000;
	fixture_event(&soon, fx->f.id, 1000);
	snprintf(soon.customer, sizeof(soon.customer), "cus_soon");
	soon.timestamp = t0 + EVENT_MAX_AHEAD_S - EVENT_HOLD_MARGIN_S + 2;
	fixture_event(&now, fx->f.id, 1100);
	snprintf(now.customer, sizeof(now.customer), "cus_now");
	{
		struct event two[2] = {soon, now};
		char err[512] = "";

		fx->f.offset = 1200;
		assert_int_equal(
		    fixture_commit(fixture_spool(fx->base), &fx->f, two, 2, err, sizeof(err)), 0);
		soon = two[0]; /* with its id and identifier */
		now = two[1];
	}
	runner_start(&r, config(fx, FAST));
	wait_state(fx, &r, now.id, EVENT_DELIVERED);
	wait_state(fx, &r, soon.id, EVENT_DELIVERED);
	runner_stop(&r, &st);

	assert_int_equal(fx->sv.n_reqs, 2);
	for (size_t i = 0; i < fx->sv.n_reqs; i++) {
		assert_string_not_equal(fx->sv.reqs[i].identifier, ahead.identifier);
		/* Sent only once Stripe takes it, with a minute of margin for Stripe's clock. */
		assert_true(fx->sv.reqs[i].timestamp <=
		            fx->sv.reqs[i].wall + EVENT_MAX_AHEAD_S - EVENT_HOLD_MARGIN_S);
	}
	assert_string_equal(fx->sv.reqs[1].identifier, soon.identifier);
	assert_int_equal(spooled(fx, ahead.id).state, EVENT_PENDING);
	assert_int_equal(spooled(fx, ahead.id).attempts, 0);
	assert_int_equal(st.dead, 0);
	p = published(fx);
	assert_int_equal(p.held, 1);
}

/* 500s without end: each attempt under a new generation, until the first unknown outcome is
 * older than unsure_after; then the event is unsure, not re-sent, not dead. */
static void test_unsure_after(void **state)
{
	struct sender_fixture *fx = *state;
	struct sender_stats st;
	struct event ev, got;
	char err[512] = "";
	int64_t t0 = (int64_t)time(NULL);
	size_t n;

	/* Every fresh key gets a 500. */
	script(&fx->sv, 0, NULL, ANS_500);
	spool_events(fx, &ev, 1, 0);
	assert_int_equal(run_once(config(fx, FAST "unsure_after = 1s\n"), &st, err, sizeof(err)),
	                 0);
	n = fx->sv.n_reqs;
	assert_true(n >= 2);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(fx->sv.reqs[i].key, key_of(ev.identifier, (int)i));
		assert_string_equal(fx->sv.reqs[i].identifier, ev.identifier);
		assert_int_equal(fx->sv.reqs[i].answer, ANS_500);
	}
	got = spooled(fx, ev.id);
	assert_int_equal(got.state, EVENT_UNSURE);
	assert_int_equal(got.attempts, (int64_t)n);
	assert_int_equal(got.key_generation, (int64_t)n);
	/* The start of the first attempt. */
	assert_true(got.first_unknown >= t0 && got.first_unknown <= fx->sv.reqs[0].wall);
	assert_non_null(strstr(got.last_error, "unsure"));
	assert_int_equal(st.unsure, 1);
	assert_int_equal(st.dead, 0);
	assert_int_equal(st.delivered, 0);
}

/* An event whose unknown outcome the spool dates older than unsure_after is made unsure at once,
 * without a request. */
static void test_unsure_from_spool(void **state)
{
	struct sender_fixture *fx = *state;
	struct sender_stats st;
	struct event ev;
	struct spool_mark m;
	char err[512] = "";
	int64_t now = (int64_t)time(NULL);

	spool_events(fx, &ev, 1, 0);
	m = (struct spool_mark){.id = ev.id,
	                        .state = EVENT_PENDING,
	                        .attempts = 3,
	                        .key_generation = 3,
	                        .first_unknown = now - 7200,
	                        .error = "HTTP 500: An unknown error occurred",
	                        .when = now};
	assert_int_equal(spool_mark(fixture_spool(fx->base), &m, 1, err, sizeof(err)), 0);
	assert_int_equal(run_once(config(fx, "unsure_after = 1h\n"), &st, err, sizeof(err)), 0);
	assert_int_equal(fx->sv.n_reqs, 0);
	assert_int_equal(spooled(fx, ev.id).state, EVENT_UNSURE);
	assert_int_equal(spooled(fx, ev.id).attempts, 3);
	assert_non_null(
	    strstr(spooled(fx, ev.id).last_error, "HTTP 500: An unknown error occurred"));
	assert_int_equal(st.unsure, 1);
}

/* Stripe's definite refusal is a dead letter with its message; "already exists" is delivered
 * (an earlier attempt got through); a refused key ends a once-run with 1, the event pending. */
static void test_dead_duplicate_auth(void **state)
{
	static const enum answer answers[] = {ANS_NO_METER, ANS_EXISTS, ANS_BAD_KEY};
	struct sender_fixture *fx = *state;
	struct sender_stats st;
	struct event evs[3], got;
	char err[512] = "";

	script(&fx->sv, 3, answers, ANS_OK);
	spool_events(fx, evs, 3, 0);
	assert_int_equal(run_once(config(fx, FAST), &st, err, sizeof(err)), 1);
	assert_non_null(strstr(err, "HTTP 401"));
	assert_int_equal(fx->sv.n_reqs, 3);
	got = spooled(fx, evs[0].id);
	assert_int_equal(got.state, EVENT_DEAD);
	assert_int_equal(got.attempts, 1);
	assert_non_null(strstr(got.last_error, "No active meter found for event name api_calls."));
	got = spooled(fx, evs[1].id);
	assert_int_equal(got.state, EVENT_DELIVERED);
	got = spooled(fx, evs[2].id);
	assert_int_equal(got.state, EVENT_PENDING);
	assert_int_equal(got.attempts, 1);
	assert_int_equal(got.key_generation, 0);
	assert_int_equal(st.dead, 1);
	assert_int_equal(st.delivered, 1);
	assert_int_equal(st.duplicates, 1);
	assert_int_equal(st.auth_pauses, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_saved_500_new_generation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_saved_500s_replayed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_429_halves_rate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_redirect_pauses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_redirect_then_resume, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ahead_held, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsure_after, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsure_from_spool, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dead_duplicate_auth, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
