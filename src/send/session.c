/* session: one meter event session at a time, renewed synchronously on the sender's thread. A
 * renewal is one small request every few minutes; doing it inline keeps the stream's requests,
 * which need its token, simply ordered after it. */
#include "send/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "send/stripe_v2.h"
#include "util/clock.h"
#include "util/log.h"

#define SESSION_TIMEOUT_MAX_MS 10000
#define SESSION_RENEW_MARGIN_MAX_MS 60000
#define SESSION_SKEW_MAX_S 86400 /* Stripe's clock against this host's, either way */
/* A session's created time this far ahead of what its Date header confirms is logged. */
#define SESSION_DATE_NOTE_S 30

struct session {
	const struct config *cfg;
	struct stripe_v2_session cur;
	int held;
	int64_t renew_at; /* monotonic ms */
	int64_t offset_s; /* Stripe's clock less this host's at its creation (seconds, signed) */
	int64_t stripe_s; /* Stripe's clock at the answer that measured it (seconds), kept on */
	int64_t stripe_boot_ms; /* clock_boot_ms() then; 0: never measured */
};

struct session *session_new(const struct config *cfg)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s != NULL)
		s->cfg = cfg;
	return s;
}

void session_free(struct session *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, sizeof(*s));
	free(s);
}

const char *session_token(const struct session *s, int64_t now_ms)
{
	if (s == NULL || !s->held || now_ms >= s->renew_at)
		return NULL;
	return s->cur.token;
}

int64_t session_renew_at(const struct session *s)
{
	return s != NULL && s->held ? s->renew_at : 0;
}

int64_t session_clock_offset(const struct session *s)
{
	return s != NULL ? s->offset_s : 0;
}

int64_t session_stripe_now(const struct session *s)
{
	if (s == NULL || s->stripe_boot_ms == 0)
		return 0;
	return s->stripe_s + (clock_boot_ms() - s->stripe_boot_ms) / 1000;
}

void session_drop(struct session *s)
{
	if (s == NULL)
		return;
	explicit_bzero(&s->cur, sizeof(s->cur));
	s->held = 0;
	s->renew_at = 0;
}

/* How far a time of Stripe's clock, `t`, made between `asked` and `answered` (this host's clock,
 * whole seconds), is off this host's clock at least: negative when behind, positive when ahead, 0
 * within the request's time (a second's slack for fractions). */
static int64_t clock_apart(int64_t t, int64_t asked, int64_t answered)
{
	if (t < asked - 1)
		return t - asked;
	if (t > answered + 1)
		return t - answered;
	return 0;
}

/* `t` (seconds since the epoch) as 2026-12-07T08:00:00Z into `buf` (`len` bytes), or the number
 * where it has no calendar date. */
static void utc_text(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%lld", (long long)t);
}

/* `created` is within SESSION_SKEW_MAX_S of `ref`, either way. */
static int created_near(int64_t created, int64_t ref)
{
	return created >= ref - SESSION_SKEW_MAX_S && created <= ref + SESSION_SKEW_MAX_S;
}

enum stripe_outcome session_renew(struct session *s, const char *key, int64_t now_ms, int64_t seen,
                                  char *reason, size_t reasonlen, struct session_try *t)
{
	struct stripe_request *req;
	struct stripe_response r;
	struct stripe_v2_session next;
	char err[512] = "";
	enum stripe_outcome out;
	CURLcode code;
	int64_t life_ms, margin, asked, answered, answered_boot, by_created, by_date;
	long timeout;

	if (t != NULL) {
		t->status = 0;
		t->secs = 0;
		t->retry_after_ms = -1;
	}
	session_drop(s);
	req = stripe_request_new_post(s->cfg, s->cfg->stripe.api_base, STRIPE_V2_SESSION_PATH, key,
	                              "{}", NULL, err, sizeof(err));
	if (req == NULL) {
		snprintf(reason, reasonlen, "cannot make the session request: %s", err);
		return STRIPE_UNKNOWN;
	}
	timeout = (long)s->cfg->stripe.request_timeout_ms;
	if (timeout > SESSION_TIMEOUT_MAX_MS)
		timeout = SESSION_TIMEOUT_MAX_MS;
	curl_easy_setopt(stripe_request_easy(req), CURLOPT_TIMEOUT_MS, timeout);
	asked = (int64_t)time(NULL);
	code = curl_easy_perform(stripe_request_easy(req));
	answered = (int64_t)time(NULL);
	answered_boot = clock_boot_ms();
	stripe_request_response(req, code, &r);
	out = stripe_classify(&r, reason, reasonlen);
	if (code == CURLE_OK && r.status >= 200 && r.status <= 299) {
		/* stripe_classify looks for a v1 meter event: the session object is judged here. */
		if (stripe_v2_session_parse(r.body, r.body_len, &next, err, sizeof(err)) == 0) {
			out = STRIPE_DELIVERED;
		} else {
			snprintf(reason, reasonlen, "HTTP %ld: %s", r.status, err);
			out = STRIPE_UNEXPECTED;
		}
	} else if (out == STRIPE_DELIVERED || out == STRIPE_REJECTED || out == STRIPE_TOO_EARLY) {
		/* A session request has no event to refuse: not Stripe's answer to it. */
		out = STRIPE_UNEXPECTED;
	}
	stripe_request_reason_finish(req, &r, reason, reasonlen);
	if (t != NULL) {
		double secs = 0;

		if (curl_easy_getinfo(stripe_request_easy(req), CURLINFO_TOTAL_TIME, &secs) ==
		        CURLE_OK &&
		    secs > 0)
			t->secs = secs;
		t->retry_after_ms = stripe_request_retry_after_ms(req);
		t->status = code == CURLE_OK ? r.status : 0;
	}
	stripe_request_free(req);
	if (out != STRIPE_DELIVERED)
		return out;
	/* Stripe's `created` measures its clock against this one, and the sender holds every event
	 * by the difference. Clocks kept by NTP differ by seconds, a failed NTP by minutes or
	 * hours; a day or more is no clock but a wrong answer (a proxy's, a cache's, a bug's), and
	 * trusting it would hold every event for that long (decades, for a `created` of 0). Such a
	 * session is not used: the answer is unexpected, the sender pauses and says why, and the
	 * events wait pending, none lost. Near the latest time seen (`seen`, ahead of this host's
	 * clock when it was set back while the agent was stopped) it is Stripe's clock: refused,
	 * it would pause sending for good, until this host's clock is set right. */
	if (!created_near(next.created, asked) &&
	    (seen <= asked || !created_near(next.created, seen))) {
		char theirs[32], ours[32];
		long long off = llabs((long long)(asked - next.created));

		/* Both times in UTC, so that the operator sees which one is the wrong date: a
		 * host whose clock was set to another day is as likely as an answer that is
		 * not Stripe's, and `date -u` against a trusted clock tells them apart. */
		utc_text(next.created, theirs, sizeof(theirs));
		utc_text(asked, ours, sizeof(ours));
		snprintf(
		    reason, reasonlen,
		    "the meter event session's created time %s is %lld s (%.1f days) %s this "
		    "host's clock (%s): no drift explains a day, so this host's date is wrong "
		    "(compare date -u with a trusted clock; timedatectl, NTP) or what answers at "
		    "api_base is not Stripe (a proxy, a cache); the session is not used",
		    theirs, off, (double)off / 86400.0,
		    next.created < asked ? "behind" : "ahead of", ours);
		explicit_bzero(&next, sizeof(next));
		return STRIPE_UNEXPECTED;
	}
	life_ms = (next.expires_at - next.created) * 1000;
	margin = life_ms / 5;
	if (margin > SESSION_RENEW_MARGIN_MAX_MS)
		margin = SESSION_RENEW_MARGIN_MAX_MS;
	s->cur = next;
	s->held = 1;
	s->renew_at = now_ms + life_ms - margin;
	/* Stripe made it between the request and the answer: a `created` before the request is
	 * Stripe's clock behind this one by at least the difference, one after the answer is
	 * Stripe's clock ahead by at least that (whole seconds: `created` may carry
	 * milliseconds). Within the request's time the clocks agree as far as this can tell. One
	 * wrong field (a proxy's, a cache's, a bug's) must not make dead letters of events Stripe
	 * takes (a clock ahead) nor hold them for hours (behind): the answer's Date header is
	 * Stripe's clock too (RFC 9110 6.6.1), made apart from the body, and the clock is taken as
	 * off only as far as both say, the lesser. Without a Date, only behind, which holds events
	 * but loses none. */
	by_created = clock_apart(next.created, asked, answered);
	by_date = r.date != 0 ? clock_apart(r.date, asked, answered) : 0;
	if (r.date == 0)
		s->offset_s = by_created < 0 ? by_created : 0;
	else if ((by_created < 0 && by_date < 0) || (by_created > 0 && by_date > 0))
		s->offset_s =
		    llabs((long long)by_date) < llabs((long long)by_created) ? by_date : by_created;
	else
		s->offset_s = 0;
	/* Carried on by the boot clock, not this host's: a step of this host's clock while the
	 * session is held (NTP setting it right) must not move Stripe's clock with it. */
	s->stripe_s = answered + s->offset_s;
	s->stripe_boot_ms = answered_boot > 0 ? answered_boot : 1;
	if (llabs((long long)(by_created - s->offset_s)) >= SESSION_DATE_NOTE_S)
		log_warn("the meter event session's created time is %lld s %s this host's clock, "
		         "but the answer's Date header %s: Stripe's clock is taken as %lld s off "
		         "this host's",
		         llabs((long long)by_created), by_created < 0 ? "behind" : "ahead of",
		         r.date == 0 ? "is missing" : "says otherwise", (long long)s->offset_s);
	explicit_bzero(&next, sizeof(next));
	log_debug("meter event session created, valid %lld s", (long long)(life_ms / 1000));
	return STRIPE_DELIVERED;
}
