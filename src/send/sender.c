/* sender: the delivery loop. One thread, one curl multi handle for its whole life (so
 * connections stay open), one spool handle of its own. Events are read in queue order into a
 * bounded queue; each loop iteration collects finished transfers, applies their outcomes to the
 * spool in one transaction, and starts what the limits allow. */
#include "send/sender.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <search.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "send/account.h"
#include "util/crash.h"
#include "core/event.h"
#include "util/health.h"
#include "util/clock.h"
#include "util/log.h"
#include "store/spool.h"
#include "util/statefile.h"
#include "send/session.h"
#include "send/stripe.h"
#include "send/stripe_v2.h"

#define SENDER_QUEUE_MAX 2000
/* Events of one (customer, event_name) pair in the queue at most: only one of them can be in
 * flight, so more would only keep other customers' events out of the queue. */
#define SENDER_PAIR_MAX 32
/* Rows a load may pass over (events of pairs already full) before it gives the loop a turn. */
#define SENDER_SCAN_MAX 8192
#define SENDER_LOAD_CHUNK 256 /* events a pair's load reads at most (pairs_load) */
/* Room in the queue a load waits for while more is pending: each load is a read transaction
 * and a sync of the WAL (durability = normal), so it reads a quarter of the queue at least. */
#define SENDER_LOAD_MIN (SENDER_QUEUE_MAX / 4)
#define SENDER_POLL_MAX_MS 1000
#define SENDER_LOG_EVERY_MS 10000
#define SENDER_RELOAD_EVERY_MS 5000 /* backstop for a missed sender_notify */
#define SENDER_IDLE_RELOAD_MS 1000
#define SENDER_SPOOL_RETRY_MS 1000
#define SENDER_ONCE_MARK_FAILURES 10 /* once-mode gives up after this many failed spool_marks */
#define SENDER_KEY_SEP '\x1f'
#define SENDER_RATE_CUT_EVERY_MS 1000 /* 429s within this of a cut belong to the same burst */
#define SENDER_RATE_CLIMB_S 600      /* seconds of successes to climb from nothing to the maximum */
#define SENDER_HOLD_RECHECK_MS 60000 /* a held event is looked at again at least this often */
#define SENDER_TOO_EARLY_MS 10000    /* after Stripe's "too far in the future": wait this long */
#define SENDER_PUBLISH_EVERY_MS 1000 /* the live state is written at most this often */
#define SENDER_METERS_TIMEOUT_MS 10000 /* the meter check at start may delay sending this long */
/* v2: a stream answering "session expired" this many times in a row to fresh sessions is no
 * expiry (a clock far off, a fault at Stripe): sending pauses for auth_pause and then tries a
 * new session, as long as it takes; the key is not in question, since Stripe made the sessions
 * with it. */
#define SENDER_SESSION_EXPIRED_MAX 3
/* A change of this many seconds in how far Stripe's clock is behind this host's is logged. */
#define SENDER_CLOCK_NOTE_S 30
/* Stripe's clock carried on by the boot clock and this host's plus the offset may differ by this
 * many seconds (rounding, NTP slewing) before this host's clock is taken for stepped. */
#define SENDER_CLOCK_STEP_S 2
/* The latest time seen is kept in the spool (spool_clock_note) at most this often (ms), and when
 * the sender ends: a clock set back while the agent is stopped must not stretch unsure_after. */
#define SENDER_CLOCK_NOTE_MS 60000
/* This host's clock found behind the latest time seen by more than this (s) is logged. */
#define SENDER_CLOCK_BEHIND_S 60
/* The latest time kept (s->kept) found ahead of this host's clock and of Stripe's by more than
 * this (s) was wrong ahead (clock_saw_date); an event whose first_unknown is that far ahead of
 * the latest time seen was stamped by a wrong clock (item_check). Seconds. The kept time leads
 * a right clock by SENDER_CLOCK_STEP_S and a Date's rounding at most; a minute under-counts
 * the time stopped by a minute at most, well inside the hour the default unsure_after (23 h)
 * leaves before Stripe's 24. */
#define SENDER_CLOCK_AHEAD_S 60
/* A wrong-ahead kept time is checked against Stripe's Date by at most this many reads of the
 * meter list in a row (clock_confirm): two agree unless one answer was delayed by a second. */
#define SENDER_CLOCK_READS 3
/* An event whose first_unknown is ahead of the latest time seen by more than this (s) was
 * stamped by a clock wrong ahead (item_check). Within a run the latest time seen never falls
 * behind the time that stamps (s->kept), but the next run starts from the time the spool keeps,
 * written once every SENDER_CLOCK_NOTE_MS and a turn of the loop late (a turn may wait for
 * synchronous meter list reads): with this host's clock behind Stripe's and no Date read yet,
 * an event stamped just before a stop leads it by that much, and is not wrong. Three minutes
 * under-count the time stopped by three minutes at most, inside the hour the default
 * unsure_after (23 h) leaves before Stripe's 24. */
#define SENDER_CLOCK_STAMPED_S (SENDER_CLOCK_NOTE_MS / 1000 + 2 * SENDER_CLOCK_AHEAD_S)
/* The stream takes an event and checks its timestamp later, against Stripe's clock, with no
 * documented bound on how much later ("Events are processed asynchronously, including
 * validation"). An event closer than this to the end of Stripe's 35 days is a dead letter rather
 * than "delivered" and dropped by Stripe unseen: an hour is four sessions' lives (15 minutes
 * each) and every request timeout and retry of one attempt, and costs at most the last hour of
 * a 35-day window (docs/stripe-contract.md, section 14). Seconds. */
#define SENDER_V2_PAST_MARGIN_S 3600
/* While a rule's events are held for its meter, the meters are read again this often. */
#define SENDER_METERS_RECHECK_MS 60000
#define SENDER_HELD_RULES_MAX 32 /* rules held for their meter, by name; more are not held */
/* Aggregation windows are looked at this often at most, and when the next one is due. */
#define SENDER_WINDOW_CHECK_MS 1000
/* Deliveries are recorded in the spool together: at most this long after the first of them, or
 * once this many wait. Every commit is an fsync and a few pages of WAL whatever it holds, so one
 * per answer cost most of the sender's CPU time and kilobytes written per event; a crash loses
 * at most these marks, and the events are sent again under the same identifiers, which Stripe
 * answers as already there (docs/durability.md). Any other outcome is recorded at once. */
#define SENDER_MARK_DELAY_MS 1000
#define SENDER_MARK_BATCH (SENDER_QUEUE_MAX / 2)
/* Deliveries held back for the watermark (marks_defer), at most. */
#define SENDER_MARKS_DEFER_MAX (2 * SENDER_QUEUE_MAX)
/* v1 requests kept for the next events once answered (stripe_request_reuse), at most. */
#define SENDER_SPARE_MAX 64
/* Queue items kept for the events loaded next, at most: a full queue's worth, which the queue
 * held anyway, so that a steady flow allocates none (with two loads' worth, 60 % of the events
 * sent cost a calloc and a free of a few kilobytes each: bench/README.md). */
#define SENDER_SPARE_ITEMS SENDER_QUEUE_MAX

const double sender_duration_bounds[SENDER_DURATION_BOUNDS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

/* A (customer, event_name) pair with events in the queue, or more of them waiting in the spool. */
struct sender_pair {
	char key[EVENT_CUSTOMER_MAX + EVENT_NAME_MAX + 1]; /* customer SEP event_name */
	char customer[EVENT_CUSTOMER_MAX];
	char event_name[EVENT_NAME_MAX];
	size_t queued;    /* its events in the queue */
	int overflow;     /* more of its events wait in the spool: loaded by pairs_load */
	int64_t last_seq; /* queue position of its last event put in the queue */
};

/* A queued event. */
struct sender_item {
	struct event ev;
	char key[EVENT_CUSTOMER_MAX + EVENT_NAME_MAX + 1]; /* customer SEP event_name */
	int64_t next_attempt;                              /* monotonic ms; 0: now */
	int64_t started;                                   /* wall clock, s: the attempt's start */
	int held;                   /* waiting for its timestamp to come within Stripe's window */
	int64_t too_early_until;    /* monotonic ms: Stripe said "too far in the future" */
	struct sender_pair *pair;   /* its pair, which counts it */
	struct stripe_request *req; /* while in flight (v2: shared by its batch) */
	size_t batch_cap;           /* v2: events its next request may carry, halved by each
	                               refused request it was in; 0: STRIPE_V2_BATCH_MAX */
	int done;                   /* v2: its outcome is recorded; dropped at the next pass */
};

/* v2: the events of one stream request. */
struct sender_batch {
	struct sender_item *items[STRIPE_V2_BATCH_MAX];
	size_t n;
	int64_t session_gen; /* the session it was sent under */
};

/* Why sending is paused. */
enum sender_pause { PAUSE_NONE = 0, PAUSE_AUTH, PAUSE_ANSWER, PAUSE_SESSION };

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
	int v2;                    /* [stripe] api = v2: batches on the meter event stream */
	struct session *session;   /* v2: the meter event session */
	int64_t session_retry_at;  /* v2: monotonic ms before which no session is asked for */
	int64_t session_failed;    /* v2: session requests failed in a row (the backoff's) */
	int session_expired_run;   /* v2: sessions in a row whose first answer was "expired" */
	int64_t session_gen;       /* v2: sessions created so far */
	size_t pair_max;           /* events of one pair in the queue at most */
	int64_t next_window_check; /* monotonic ms: when to close the windows due */
	int windows_open;          /* aggregation windows are open (--once waits for them) */
	int64_t windows_next;      /* seconds since the epoch the next open window closes */
	int64_t once_until;        /* --once waits for windows closing by then (epoch seconds) */

	struct sender_item **queue; /* in queue order; NULL slots are compacted away */
	size_t n;
	struct sender_item **spare_items; /* finished items, for the next events loaded */
	size_t n_spare_items;
	int64_t cursor;                /* highest queue position loaded since the last reset */
	int more;                      /* the last load stopped because the queue was full */
	struct event *loadbuf;         /* pairs_load's */
	struct sender_item **loading;  /* queue_load's items being read into */
	struct event **loading_events; /* their events, for spool_pending_to */
	int64_t next_reload, next_idle_reload, next_spool_try;

	void *pairs;               /* tsearch tree of struct sender_pair, by key */
	struct sender_pair **over; /* the pairs with overflow set */
	size_t n_over, cap_over;
	void *inflight_keys; /* tsearch tree of the keys (item->key) with a request in flight */
	size_t inflight;

	/* Outcomes waiting for one spool_mark call; errors[i] belongs to marks[i]. */
	struct spool_mark *marks;
	char (*errors)[EVENT_ERROR_MAX];
	size_t n_marks, cap_marks;
	size_t n_deferred; /* of them, deliveries marks_defer held back at the last try */
	int64_t next_mark_try;
	int64_t marks_due; /* monotonic ms: when the waiting deliveries are recorded */
	/* v1: finished requests, made with s->key, for the next events */
	struct stripe_request *spare[SENDER_SPARE_MAX];
	size_t n_spare;
	int marks_now; /* an outcome other than a delivery waits: record at the next turn */

	double tokens;
	int64_t tokens_at;
	double rate_max;       /* requests/s: max_requests_per_second, or Stripe's for the key */
	double rate;           /* requests/s now: lowered by 429s, climbing back on successes */
	int64_t rate_cut_at;   /* monotonic ms of the last lowering, 0: never */
	int64_t rate_at;       /* monotonic ms the rate last changed or was confirmed */
	int64_t rate_cut_wall; /* the same, wall clock seconds */
	struct clock_steady steady; /* for unsure_after, which a clock set back must not stretch:
	                               the latest of this host's clock and of what was seen */
	struct clock_steady kept;   /* what first_unknown is stamped with and the spool keeps:
	                               the same but for a Stripe time no second answer agreed with */
	int64_t date_t;             /* the last answer's Date, 0: none yet */
	int64_t date_mono;          /* monotonic ms: when it was read */
	int64_t clock_noted;        /* the latest time seen, as last kept in the spool */
	int64_t clock_note_at;      /* monotonic ms: when it was */
	int clock_behind_logged;    /* this host's clock was found behind: said once */
	int date_agreed;            /* two answers' Dates agreed: Stripe's time is known */
	int clock_rewind;           /* s->kept was taken back: the spool's must follow */
	int clock_held;             /* events of unknown outcome wait for clock_confirm */
	int64_t next_clock_check;   /* monotonic ms: clock_confirm again while they do */
	char rate_why[160];         /* where rate_max comes from */
	int64_t hold_until;         /* monotonic ms: no request before (an answer's Retry-After) */

	enum sender_pause paused; /* until pause_until */
	int64_t pause_until;
	int64_t pause_since; /* wall clock, s */
	char pause_reason[STRIPE_REASON_MAX + 128];
	int probe; /* one request at a time until Stripe answers as Stripe again */
	enum sender_pause probe_kind; /* the pause the probe follows */
	int auth_failed;              /* once-mode: stop, return 1 */
	int answer_failed;            /* once-mode: stop, return 2 */
	long auth_status;

	int meters_unchecked; /* the meter check could not run: try again once the key works */
	int auth_by_meters;   /* Stripe refused the key to the meter check (401): with no event
	                         to probe with, the check tries the key again after the pause */
	/* Rules whose events Stripe would take without billing them (account_check_rule): their
	 * events are not loaded, so not sent, until a check of the meters finds them right. */
	char held_rules[SENDER_HELD_RULES_MAX][EVENT_RULE_MAX];
	size_t n_held_rules;
	char held_why[STRIPE_REASON_MAX]; /* the first held rule's finding */
	int64_t held_skipped;             /* their events the last load from the start passed */
	int64_t next_meters_check;        /* monotonic ms: read the meters again while held */
	int64_t stripe_offset;      /* v2: Stripe's clock less this host's, seconds (session) */
	int64_t stripe_behind_seen; /* v1: at least that, from "too far in the future" answers */
	struct statefile *sf;       /* the sender's region of the live state, NULL: not published */
	int64_t next_publish;
	int64_t next_beat; /* monotonic ms: the state is written again by then, changed or not */
	int64_t started;   /* wall clock, s: sender_new, the base of the published counters */
	int publish_due;
	int stopped;

	int once;
	int fatal;         /* once-mode: a spool error ends the run with -1 */
	int mark_failures; /* consecutive failed spool_mark calls */
	char fatal_err[512];

	struct sender_ratelog retry_log, dead_log, spool_log, rate_log, hold_log, unsure_log;
	uint64_t rng;

	atomic_int stop;
	atomic_int notify;
	_Atomic int64_t grace_ms;

	/* The rules held against the account's meters: cfg's at start, then those of each reload
	 * that kept the sender (sender_set_rules). rules_pending mirrors rules_check, so that a
	 * turn of the loop looks at it without the lock. */
	pthread_mutex_t rules_lock;
	pthread_cond_t rules_idle; /* signalled when rules_checking drops to 0 */
	const struct config *rules_cfg;
	int rules_check;    /* to be checked at the next turn */
	int rules_checking; /* being checked (check_meters) */
	atomic_int rules_pending;

	pthread_mutex_t stats_lock;
	struct sender_stats stats;
};

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

/* ---- the latest time seen ---- */

/* Moves `c` on to `t` (seconds since the epoch) if that is later. Returns 1 if it did. */
static int steady_advance(struct clock_steady *c, int64_t t)
{
	if (t <= clock_steady_wall_s(c))
		return 0;
	c->wall_s = t;
	c->mono_ms = clock_mono_ms();
	return 1;
}

/* `t` (seconds since the epoch) was seen: read from `whose` clock, which is ahead of this host's
 * when the host's was set back, or not set, while the agent was stopped. unsure_after is judged by
 * the latest time seen (s->steady), so that a host clock behind cannot stretch it past Stripe's
 * 24 hours; that it is behind is logged once. The first unknown outcomes are stamped by s->kept
 * (clock_saw_date), never later than that. */
static void clock_saw(struct sender *s, int64_t t, const char *whose)
{
	int64_t host = clock_wall_s();

	if (!steady_advance(&s->steady, t))
		return;
	if (t - host > SENDER_CLOCK_BEHIND_S && !s->clock_behind_logged) {
		s->clock_behind_logged = 1;
		log_warn("this host's clock is %lld s behind %s: it was set back, or not set, "
		         "while the agent was stopped? The 24-hour limit of unknown outcomes "
		         "(unsure_after) is measured by the latter",
		         (long long)(t - host), whose);
	}
}

/* Keeps the latest time seen in the spool if it is due (SENDER_CLOCK_NOTE_MS) or `force`, so
 * that the next run judges by it even if this host's clock is set back meanwhile: later times
 * only, but for a kept time found wrong ahead (clock_ahead_fix, clock_rewind), which is written
 * back. A failure is logged and tried again later: it only weakens that protection. */
static void clock_note(struct sender *s, int64_t now, int force)
{
	char err[512];
	int64_t t;
	int rc;

	if (s->sp == NULL ||
	    (!force && s->clock_note_at != 0 && now - s->clock_note_at < SENDER_CLOCK_NOTE_MS))
		return;
	s->clock_note_at = now;
	t = clock_steady_wall_s(&s->kept);
	if (t <= s->clock_noted && !s->clock_rewind)
		return;
	rc = s->clock_rewind ? spool_clock_correct(s->sp, t, err, sizeof(err))
	                     : spool_clock_note(s->sp, t, err, sizeof(err));
	if (rc != 0) {
		log_warn("cannot keep the latest time seen in the spool: %s", err);
		return;
	}
	s->clock_noted = t;
	s->clock_rewind = 0;
}

/* Two agreeing answers of Stripe's say it is `t` (seconds since the epoch). If this host's clock
 * and `t` are both behind the kept time by more than SENDER_CLOCK_AHEAD_S, two independent
 * clocks agree that it is wrong ahead: a run whose host clock was ahead (a hardware clock wrong
 * at boot, a mistyped `date -s`) kept it. Kept, it would hold every later run's clock there, so
 * that the time stopped would not count toward unsure_after: the kept and the latest time seen
 * go back to the later of the two clocks, and so does the spool's (clock_note, at the loop's
 * next turn). One clock alone never moves them back: a Date (a proxy) or this host's clock
 * behind stays harmless. Events stamped by the wrong time become unsure (item_check). Returns 1
 * if it took them back. */
static int clock_ahead_fix(struct sender *s, int64_t t)
{
	int64_t host = clock_wall_s(), kept = clock_steady_wall_s(&s->kept);
	int64_t to = t > host ? t : host;
	char kt[24], ht[24], st[24];

	if (kept - t <= SENDER_CLOCK_AHEAD_S || kept - host <= SENDER_CLOCK_AHEAD_S)
		return 0;
	clock_utc_text(kept, kt, sizeof(kt));
	clock_utc_text(host, ht, sizeof(ht));
	clock_utc_text(t, st, sizeof(st));
	log_warn("the latest time seen (%s) is %lld s ahead of this host's clock (%s) and of "
	         "Stripe's (%s, two answers agree): a clock was wrong ahead while the agent ran; "
	         "it is taken back to %s, and events whose outcome became unknown by it are "
	         "unsure",
	         kt, (long long)(kept - to), ht, st, to == t ? st : ht);
	s->kept.wall_s = to;
	s->kept.mono_ms = clock_mono_ms();
	s->steady = s->kept;
	s->clock_rewind = 1;
	s->clock_note_at = 0; /* due at the loop's next turn (clock_note) */
	return 1;
}

/* The Date `t` (seconds since the epoch) of an answer of Stripe's was read. It judges unsure_after
 * at once (clock_saw: ahead, it makes events unsure early, never late), but one answer alone may
 * be wrong (a proxy's clock, a hostile answer): the time first_unknown is stamped with and the
 * spool keeps for good (s->kept) moves on to it only when the answer before it agrees, carried on
 * by the monotonic clock (SENDER_CLOCK_STEP_S). A Date far ahead once would otherwise stamp
 * first_unknown, and hold every later run's clock, there: the time stopped would not count. */
static void clock_saw_date(struct sender *s, int64_t t)
{
	int64_t mono = clock_mono_ms();

	clock_saw(s, t, "Stripe's clock (the Date of its answer)");
	if (s->date_t > 0 && llabs((long long)(t - s->date_t - (mono - s->date_mono) / 1000)) <=
	                         SENDER_CLOCK_STEP_S) {
		s->date_agreed = 1;
		if (!clock_ahead_fix(s, t))
			steady_advance(&s->kept, t);
	}
	s->date_t = t;
	s->date_mono = mono;
}

/* The kept time is ahead of this host's clock by more than SENDER_CLOCK_AHEAD_S and Stripe's
 * time is not known yet (no two answers agreed): it may be a wrong time kept by a run whose
 * clock was ahead, or this host's clock set back while the agent was stopped. Only Stripe's
 * clock tells which; until it does, events of unknown outcome are not re-sent (item_check). */
static int clock_unsettled(struct sender *s)
{
	return !s->date_agreed &&
	       clock_steady_wall_s(&s->kept) - clock_wall_s() > SENDER_CLOCK_AHEAD_S;
}

/* Reads the meter list for its Date, up to SENDER_CLOCK_READS times, until two answers agree
 * (clock_saw_date): done when the kept time is ahead of this host's clock (clock_unsettled), so
 * that the answers that judge it come before any event is sent. A failure is logged at debug
 * level: the events of unknown outcome wait, and this is tried again (clock_recheck_due). */
static void clock_confirm(struct sender *s)
{
	for (int i = 0; i < SENDER_CLOCK_READS && clock_unsettled(s); i++) {
		struct stripe_meter *meters = NULL;
		char err[1024] = "";
		size_t n = 0;
		long status = 0;
		int64_t date = 0;
		int rc;

		health_wait_begin(HEALTH_SENDER);
		rc = stripe_meters_list(s->cfg, s->key, SENDER_METERS_TIMEOUT_MS, &meters, &n,
		                        &status, &date, err, sizeof(err));
		health_wait_end(HEALTH_SENDER);
		free(meters);
		if (rc != 0 || date <= 0) {
			log_debug("cannot read Stripe's clock (the meter list): %s", err);
			return;
		}
		clock_saw_date(s, date);
	}
}

/* While events of unknown outcome wait for Stripe's time (clock_held), reads it again every
 * SENDER_HOLD_RECHECK_MS. */
static void clock_recheck_due(struct sender *s, int64_t now)
{
	if (!s->clock_held || now < s->next_clock_check)
		return;
	s->clock_held = 0;
	s->next_clock_check = now + SENDER_HOLD_RECHECK_MS;
	clock_confirm(s);
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

#define SENDER_RATELOGS(s)                                                                         \
	{                                                                                          \
		&(s)->retry_log, &(s)->dead_log, &(s)->spool_log, &(s)->rate_log, &(s)->hold_log,  \
		    &(s)->unsure_log                                                               \
	}

/* Flushes every repeating log line that is due (all with `force`); returns when the next one
 * will be due (monotonic ms), or INT64_MAX. */
static int64_t ratelogs_flush(struct sender *s, int64_t now, int force)
{
	struct sender_ratelog *logs[] = SENDER_RATELOGS(s);
	int64_t due = INT64_MAX;

	for (size_t i = 0; i < sizeof(logs) / sizeof(logs[0]); i++) {
		ratelog_flush(logs[i], now, force);
		if (ratelog_due(logs[i]) < due)
			due = ratelog_due(logs[i]);
	}
	return due;
}

/* ---- marks ---- */

/* Records an outcome for the next spool_mark call. While the spool refuses marks, a later
 * outcome for the same event replaces an earlier unapplied one, so that the list cannot grow;
 * otherwise an event has at most one: an outcome other than a delivery is applied at the next
 * turn, before the event can be sent again, and a delivered event leaves the queue (spool_mark
 * applies a list in order, so a repeated id would still end as its last mark says). */
static int mark_add(struct sender *s, const struct event *ev, enum event_state state,
                    const char *error)
{
	size_t i = s->n_marks;

	if (s->mark_failures > 0) {
		for (i = 0; i < s->n_marks; i++) {
			if (s->marks[i].id == ev->id)
				break;
		}
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
	if (s->marks_due == 0)
		s->marks_due = clock_mono_ms() + SENDER_MARK_DELAY_MS;
	if (state != EVENT_DELIVERED || s->n_marks >= SENDER_MARK_BATCH)
		s->marks_now = 1;
	s->marks[i].id = ev->id;
	s->marks[i].state = state;
	s->marks[i].attempts = ev->attempts;
	s->marks[i].key_generation = ev->key_generation;
	s->marks[i].first_unknown = ev->first_unknown;
	s->marks[i].when = (int64_t)time(NULL);
	s->marks[i].error = NULL;
	if (error != NULL)
		snprintf(s->errors[i], EVENT_ERROR_MAX, "%s", error);
	else
		s->errors[i][0] = '\0';
	return 0;
}

/* Puts the deliveries of events after the lowest one in flight at the end of the marks and
 * returns how many marks come before them. The spool's watermark of delivered events stops at
 * the first event still undecided, and each delivery beyond it is written as a row of its own
 * until the watermark passes it: with 16 requests in flight answered in any order, that was
 * 43 % of the events sent and an eighth of the sender's instructions (bench/README.md). Held
 * back until the requests before them are answered (a turn or two), they are passed by the
 * watermark at no cost. Only deliveries wait, SENDER_MARKS_DEFER_MAX marks at most (a slow
 * answer held a queue's worth back in bench/send_v2.sh), and they do not count as outcomes
 * the spool could not take (marks_blocked): an event in flight is
 * answered within its request's timeout, and a crash loses only these marks, whose events are
 * sent again under the same identifiers (docs/durability.md). One event has one mark at most,
 * so their order does not matter to spool_mark. */
static size_t marks_defer(struct sender *s)
{
	int64_t lo = INT64_MAX;
	size_t n = s->n_marks;

	for (size_t i = 0; i < s->n; i++) {
		const struct sender_item *it = s->queue[i];

		if (it != NULL && it->req != NULL && it->ev.id < lo)
			lo = it->ev.id;
	}
	if (lo == INT64_MAX || s->mark_failures > 0 || n >= SENDER_MARKS_DEFER_MAX)
		return n;
	for (size_t i = 0; i < n;) {
		struct spool_mark m = s->marks[i];

		if (m.state != EVENT_DELIVERED || s->errors[i][0] != '\0' || m.id < lo) {
			i++;
			continue;
		}
		n--;
		s->marks[i] = s->marks[n];
		s->marks[n] = m;
		memcpy(s->errors[i], s->errors[n], strlen(s->errors[n]) + 1);
		s->errors[n][0] = '\0';
	}
	return n;
}

/* 1 if a queue's worth of outcomes waits for the spool (deliveries held back by marks_defer
 * aside): sending waits for them. */
static int marks_blocked(const struct sender *s)
{
	return s->n_marks - s->n_deferred >= SENDER_QUEUE_MAX;
}

/* Applies the recorded outcomes in one transaction, if they are due (SENDER_MARK_DELAY_MS) or
 * `force`, all of them with `force`, else all but the deliveries marks_defer holds back; on
 * failure they are kept for the next try. Returns 0 (applied or not due yet) or -1. */
static int marks_apply(struct sender *s, int64_t now, int force)
{
	char err[512] = "";
	size_t n;

	if (s->n_marks == 0)
		return 0;
	if (now < s->next_mark_try)
		return -1;
	if (!force && !s->marks_now && now < s->marks_due)
		return 0;
	n = force ? s->n_marks : marks_defer(s);
	s->n_deferred = s->n_marks - n;
	if (n == 0) {
		s->marks_now = 0;
		s->marks_due = now + SENDER_MARK_DELAY_MS;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		s->marks[i].error = s->errors[i][0] != '\0' ? s->errors[i] : NULL;
	if (spool_mark(s->sp, s->marks, n, err, sizeof(err)) != 0) {
		char msg[sizeof(err) + 128];

		err_set(msg, sizeof(msg),
		        "cannot record %zu delivery outcomes in the spool: %s; will retry",
		        s->n_marks, err);
		ratelog_add(&s->spool_log, now, msg);
		s->next_mark_try = now + SENDER_SPOOL_RETRY_MS;
		s->mark_failures++;
		s->n_deferred = 0;
		if (s->once && !s->fatal && s->mark_failures >= SENDER_ONCE_MARK_FAILURES) {
			s->fatal = 1;
			err_set(s->fatal_err, sizeof(s->fatal_err), "spool: %s", err);
		}
		return -1;
	}
	s->mark_failures = 0;
	/* The deferred deliveries, moved to the front; their errors are all "". */
	memmove(s->marks, s->marks + n, (s->n_marks - n) * sizeof(*s->marks));
	for (size_t i = 0; i < s->n_marks - n; i++)
		s->errors[i][0] = '\0';
	s->n_marks -= n;
	s->n_deferred = s->n_marks;
	s->next_mark_try = 0;
	s->marks_due = s->n_marks > 0 ? now + SENDER_MARK_DELAY_MS : 0;
	s->marks_now = 0;
	return 0;
}

/* ---- the queue ---- */

/* "customer SEP event_name" into `key` (EVENT_CUSTOMER_MAX + EVENT_NAME_MAX + 1 bytes, which
 * always hold it): what snprintf would write, without its cost on every event loaded. */
static void pair_key(char *key, const struct event *ev)
{
	size_t c = strnlen(ev->customer, sizeof(ev->customer) - 1);
	size_t e = strnlen(ev->event_name, sizeof(ev->event_name) - 1);

	memcpy(key, ev->customer, c);
	key[c] = SENDER_KEY_SEP;
	memcpy(key + c + 1, ev->event_name, e);
	key[c + 1 + e] = '\0';
}

static void item_key(struct sender_item *it)
{
	pair_key(it->key, &it->ev);
}

/* Drops finished items, keeping the queue order. */
static void queue_compact(struct sender *s)
{
	size_t j = 0;

	for (size_t i = 0; i < s->n; i++) {
		if (s->queue[i] != NULL)
			s->queue[j++] = s->queue[i];
	}
	s->n = j;
}

static int pair_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sender_pair *)a)->key, ((const struct sender_pair *)b)->key);
}

/* The pair of `ev`, made if it has none yet. NULL if out of memory. */
static struct sender_pair *pair_of(struct sender *s, const struct event *ev)
{
	struct sender_pair probe, *p, **slot;

	pair_key(probe.key, ev);
	slot = tfind(&probe, &s->pairs, pair_cmp);
	if (slot != NULL)
		return *slot;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	memcpy(p->key, probe.key, sizeof(p->key));
	memcpy(p->customer, ev->customer, strnlen(ev->customer, sizeof(p->customer) - 1));
	memcpy(p->event_name, ev->event_name, strnlen(ev->event_name, sizeof(p->event_name) - 1));
	if (tsearch(p, &s->pairs, pair_cmp) == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

static void pair_set_overflow(struct sender *s, struct sender_pair *p, int on)
{
	if (p->overflow == on)
		return;
	if (on) {
		if (s->n_over == s->cap_over) {
			size_t cap = s->cap_over > 0 ? s->cap_over * 2 : 16;
			struct sender_pair **o = realloc(s->over, cap * sizeof(*o));

			if (o == NULL)
				return; /* not marked: its events come with the main cursor */
			s->over = o;
			s->cap_over = cap;
		}
		s->over[s->n_over++] = p;
	} else {
		for (size_t i = 0; i < s->n_over; i++)
			if (s->over[i] == p)
				s->over[i] = s->over[--s->n_over];
	}
	p->overflow = on;
}

/* Forgets a pair with nothing queued and nothing waiting. */
static void pair_release(struct sender *s, struct sender_pair *p)
{
	if (p == NULL || p->queued > 0 || p->overflow)
		return;
	tdelete(p, &s->pairs, pair_cmp);
	free(p);
}

static void pair_free_node(void *p)
{
	free(p);
}

/* Forgets every pair: the queue is empty and the next load starts from the queue's start. */
static void pairs_clear(struct sender *s)
{
	tdestroy(s->pairs, pair_free_node);
	s->pairs = NULL;
	s->n_over = 0;
}

static void item_finish(struct sender *s, size_t idx)
{
	struct sender_item *it = s->queue[idx];

	if (it->pair != NULL) {
		it->pair->queued--;
		pair_release(s, it->pair);
	}
	/* Kept for the next event loaded: an item is a few kilobytes, taken and given back for
	 * every event sent. */
	if (s->n_spare_items < SENDER_SPARE_ITEMS)
		s->spare_items[s->n_spare_items++] = it;
	else
		free(it);
	s->queue[idx] = NULL;
}

/* An item for an event about to be read or copied, cleared but for the event and its key (which
 * queue_add sets): a spare one if there is one. NULL if out of memory. */
static struct sender_item *item_take(struct sender *s)
{
	struct sender_item *it;

	if (s->n_spare_items == 0)
		return calloc(1, sizeof(*it));
	it = s->spare_items[--s->n_spare_items];
	/* Clearing the whole item cost as much as the copy of its event. */
	memset((char *)it + offsetof(struct sender_item, next_attempt), 0,
	       sizeof(*it) - offsetof(struct sender_item, next_attempt));
	return it;
}

/* Gives back an item that item_take gave and that was not queued. */
static void item_give(struct sender *s, struct sender_item *it)
{
	if (s->n_spare_items < SENDER_SPARE_ITEMS)
		s->spare_items[s->n_spare_items++] = it;
	else
		free(it);
}

/* Puts item `it` (item_take's, its event written) at the end of the queue, counted in pair `p`
 * (v1), or in none (NULL: v2, whose items have no key either). */
static void queue_add(struct sender *s, struct sender_pair *p, struct sender_item *it)
{
	it->pair = p;
	it->key[0] = '\0';
	if (p != NULL) {
		item_key(it);
		p->queued++;
		p->last_seq = it->ev.queue_seq;
	}
	s->queue[s->n++] = it;
}

/* Puts a copy of `ev` at the end of the queue, counted in pair `p` (queue_add). Returns 0, or -1
 * if out of memory. */
static int queue_put(struct sender *s, struct sender_pair *p, const struct event *ev)
{
	struct sender_item *it = item_take(s);

	if (it == NULL)
		return -1;
	event_copy(&it->ev, ev);
	queue_add(s, p, it);
	return 0;
}

/* Reads pending events after the cursor (after the queue's start with `reset`) until the queue
 * is full. A pair that already has SENDER_PAIR_MAX events queued gets no more here: the cursor
 * passes over its events, which pairs_load reads for it later, so one customer's backlog never
 * keeps the others out of the queue. */
/* 1 if the events of rule `rule` are held for its meter. */
static int rule_held(const struct sender *s, const char *rule)
{
	for (size_t i = 0; i < s->n_held_rules; i++)
		if (strcmp(s->held_rules[i], rule) == 0)
			return 1;
	return 0;
}

static int queue_load(struct sender *s, int reset, int64_t now, char *err, size_t errlen)
{
	size_t scanned = 0;

	if (reset) {
		s->cursor = 0;
		s->held_skipped = 0;
		pairs_clear(s);
	}
	s->more = 0;
	s->next_reload = now + SENDER_RELOAD_EVERY_MS;
	while (s->n < SENDER_QUEUE_MAX) {
		size_t want = SENDER_QUEUE_MAX - s->n, got = 0, ready, i;

		if (scanned >= SENDER_SCAN_MAX)
			break;
		/* The events are read straight into the items that queue them: one read and one
		 * WAL sync for the whole room (SENDER_LOAD_MIN), and no copy. */
		for (ready = 0; ready < want; ready++) {
			struct sender_item *it = item_take(s);

			if (it == NULL)
				break;
			s->loading[ready] = it;
			s->loading_events[ready] = &it->ev;
		}
		if (ready == 0) {
			s->more = 1;
			return 0;
		}
		want = ready;
		if (spool_pending_to(s->sp, s->cursor, s->loading_events, want, &got, err,
		                     errlen) != 0) {
			for (i = 0; i < ready; i++)
				item_give(s, s->loading[i]);
			return -1;
		}
		if (got > want)
			got = want;
		scanned += got;
		for (i = 0; i < got; i++) {
			struct sender_item *it = s->loading[i];
			const struct event *ev = &it->ev;
			struct sender_pair *p;

			if (rule_held(s, ev->rule)) {
				s->held_skipped++;
				s->cursor = ev->queue_seq;
				item_give(s, it); /* ev is gone with it */
				continue;
			}
			if (s->v2) {
				/* The stream has no per-pair order or share: no pair to keep (a
				 * tree lookup, an insert and a delete per event cost a fifth of
				 * sending's CPU, bench/README.md). */
				queue_add(s, NULL, it);
				s->cursor = ev->queue_seq;
				continue;
			}
			p = pair_of(s, ev);
			if (p == NULL) {
				/* Try the rest later; the cursor stays before them. */
				for (; i < ready; i++)
					item_give(s, s->loading[i]);
				s->more = 1;
				return 0;
			}
			if (!p->overflow && p->queued >= s->pair_max)
				pair_set_overflow(s, p, 1);
			s->cursor = ev->queue_seq;
			if (p->overflow)
				item_give(s, it); /* ev is gone with it */
			else
				queue_add(s, p, it);
		}
		for (; i < ready; i++)
			item_give(s, s->loading[i]);
		if (got < want)
			return 0;
	}
	s->more = 1;
	return 0;
}

/* Tops up the pairs whose events the cursor passed over, once half their share is sent: only
 * with events up to the cursor, which reads those after it. */
static int pairs_load(struct sender *s, char *err, size_t errlen)
{
	for (size_t i = 0; i < s->n_over && s->n < SENDER_QUEUE_MAX;) {
		struct sender_pair *p = s->over[i];
		size_t want = s->pair_max - p->queued, got = 0;

		if (p->queued >= s->pair_max / 2) {
			i++;
			continue;
		}
		if (want > SENDER_QUEUE_MAX - s->n)
			want = SENDER_QUEUE_MAX - s->n;
		if (want > SENDER_LOAD_CHUNK)
			want = SENDER_LOAD_CHUNK;
		if (spool_pending_pair(s->sp, p->customer, p->event_name, p->last_seq, s->loadbuf,
		                       want, &got, err, errlen) != 0)
			return -1;
		for (size_t k = 0; k < got && k < want; k++) {
			/* Beyond the cursor: the cursor reads it when it gets there, once the
			 * pair has caught up; taken here too, it would be queued and sent twice. */
			if (s->loadbuf[k].queue_seq > s->cursor) {
				got = k;
				break;
			}
			if (!rule_held(s, s->loadbuf[k].rule) &&
			    queue_put(s, p, &s->loadbuf[k]) != 0)
				return 0;
		}
		if (got < want) {
			/* Caught up: what it commits from now on comes after the cursor. */
			pair_set_overflow(s, p, 0);
			pair_release(s, p);
			continue; /* s->over[i] is another pair now */
		}
		i++;
	}
	return 0;
}

/* ---- limits ---- */

static int64_t backoff_ms(struct sender *s, int64_t attempts)
{
	int64_t lo = s->cfg->stripe.retry_min_backoff_ms;
	int64_t hi = s->cfg->stripe.retry_max_backoff_ms;
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

/* The rate Stripe allows (or the configured one), for a key just (re)read. */
static void rate_init(struct sender *s)
{
	int64_t conf = s->cfg->stripe.max_requests_per_second;
	char why[128];

	if (conf > 0) {
		s->rate_max = (double)conf;
		snprintf(s->rate_why, sizeof(s->rate_why), "max_requests_per_second");
	} else if (s->v2) {
		s->rate_max = (double)stripe_v2_default_rate(s->key, s->cfg->stripe.account, why,
		                                             sizeof(why));
		snprintf(s->rate_why, sizeof(s->rate_why), "auto: %s", why);
	} else {
		s->rate_max =
		    (double)stripe_default_rate(s->key, s->cfg->stripe.account, why, sizeof(why));
		snprintf(s->rate_why, sizeof(s->rate_why), "auto: %s", why);
	}
	if (s->rate <= 0 || s->rate > s->rate_max)
		s->rate = s->rate_max;
	s->publish_due = 1;
}

/* A 429: Stripe says the account sends too fast, whichever of its requests got the answer. The
 * rate is halved once per burst of them (many requests in flight get their 429 together). */
static void rate_cut(struct sender *s, int64_t now, const char *reason)
{
	char msg[STRIPE_REASON_MAX + 256];

	if (s->rate_cut_at > 0 && now - s->rate_cut_at < SENDER_RATE_CUT_EVERY_MS)
		return;
	s->rate = s->rate / 2.0 > 1.0 ? s->rate / 2.0 : 1.0;
	s->rate_cut_at = now;
	s->rate_at = now;
	s->rate_cut_wall = (int64_t)time(NULL);
	s->tokens = 0.0;
	s->publish_due = 1;
	err_set(msg, sizeof(msg),
	        "Stripe rate-limited a request (%s): sending rate lowered to %.1f/s of %.0f/s; it "
	        "climbs back while requests succeed",
	        reason, s->rate, s->rate_max);
	ratelog_add(&s->rate_log, now, msg);
}

/* A success: the rate climbs back in proportion to the time since the last success or cut (at
 * most a second's worth per success), from nothing to the maximum in SENDER_RATE_CLIMB_S: slowly,
 * since hosts sharing the account's limit climb together. */
static void rate_up(struct sender *s, int64_t now)
{
	double dt = (double)(now - s->rate_at) / 1000.0;

	s->rate_at = now;
	if (s->rate >= s->rate_max)
		return;
	if (dt > 1.0)
		dt = 1.0;
	if (dt > 0)
		s->rate += dt * s->rate_max / SENDER_RATE_CLIMB_S;
	if (s->rate >= s->rate_max) {
		s->rate = s->rate_max;
		s->publish_due = 1;
	}
}

/* Takes a token of the rate limit if there is one; else sets *wake to when there will be. */
static int token_take(struct sender *s, int64_t now, int64_t *wake)
{
	double rps = s->rate;
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

/* Takes item `idx` out of sending for good as unsure: its first attempt with an unknown outcome
 * is older than unsure_after, so Stripe may have forgotten its identifier; or, `why` not NULL,
 * another reason a retry cannot tell whether that attempt reached Stripe. */
static void item_unsure(struct sender *s, size_t idx, int64_t wall, int64_t now, const char *why)
{
	struct sender_item *it = s->queue[idx];
	char reason[EVENT_ERROR_MAX], msg[EVENT_ERROR_MAX + 128];

	if (it->ev.first_unknown > wall)
		snprintf(
		    reason, sizeof(reason),
		    "unsure: an attempt stamped %lld s ahead of the clock had an unknown outcome "
		    "(last: %.250s) and %s; not re-sent by itself: check Stripe, then `logmeter "
		    "replay --unsure`",
		    (long long)(it->ev.first_unknown - wall), it->ev.last_error,
		    why != NULL ? why : "Stripe dedupes identifiers for 24 hours only");
	else
		snprintf(
		    reason, sizeof(reason),
		    "unsure: an attempt %lld s ago had an unknown outcome (last: %.300s) and %s; "
		    "not re-sent by itself: check Stripe, then `logmeter replay --unsure`",
		    (long long)(wall - it->ev.first_unknown), it->ev.last_error,
		    why != NULL ? why : "Stripe dedupes identifiers for 24 hours only");
	if (mark_add(s, &it->ev, EVENT_UNSURE, reason) != 0) {
		log_err("out of memory recording the outcome of event %lld", (long long)it->ev.id);
		it->next_attempt = now + SENDER_SPOOL_RETRY_MS;
		return;
	}
	err_set(msg, sizeof(msg), "event %lld (%s, rule %s): %s", (long long)it->ev.id,
	        it->ev.identifier, it->ev.rule, reason);
	ratelog_add(&s->unsure_log, now, msg);
	stats_add(s, &s->stats.unsure, 1);
	item_finish(s, idx);
}

/* Stripe's clock now (seconds since the epoch), and in *off how far it is off this host's: with
 * v2, as the last session measured it. That measure is carried on by the boot clock
 * (session_stripe_now): this host's clock stepped since (NTP setting it right) moves this host's
 * clock, not Stripe's, and the offset measured before no longer holds. Within
 * SENDER_CLOCK_STEP_S of this host's clock plus the offset (rounding, NTP slewing) it is that. */
static int64_t stripe_clock(struct sender *s, int64_t *off)
{
	int64_t host = (int64_t)time(NULL), w = session_stripe_now(s->session);

	*off = s->stripe_offset;
	if (w <= 0 || llabs((long long)(w - host - s->stripe_offset)) <= SENDER_CLOCK_STEP_S)
		return host + s->stripe_offset;
	*off = w - host;
	return w;
}

/* Checks item `idx` before it is sent: dead-letters what can never be sent, makes unsure what
 * must not be re-sent blindly, and holds an event stamped ahead of the clock (next_attempt).
 * Returns 1 if it stays queued, 0 if it was taken out. */
static int item_check(struct sender *s, size_t idx, int64_t now)
{
	struct sender_item *it = s->queue[idx];
	/* Stripe's clock decides what it takes: with v2 it checks later, against its own clock,
	 * and takes an event "up to 5 minutes in the future" without billing it; an event whose
	 * 35 days have run out by Stripe's clock is taken too, and dropped. */
	int64_t off, wall = stripe_clock(s, &off);
	char reason[384], clk[128] = "";
	enum event_window win;

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
	if (s->v2 && stripe_v2_event_check(&it->ev, reason, sizeof(reason)) != 0) {
		/* Else its every request fails before it is sent, forever. */
		item_dead(s, idx, reason, now);
		return 0;
	}
	/* Stripe refuses a value of more than 15 significant digits (docs/stripe-contract.md
	 * section 9); the v2 stream would take it and bill nothing. Rule values have 15 at most;
	 * this catches a window total a spool closed before windows kept to 15, replayed. */
	if (event_value_digits(it->ev.value) > EVENT_STRIPE_DIGITS) {
		snprintf(reason, sizeof(reason),
		         "the value %s has more than %d significant digits, which Stripe refuses; "
		         "not sent",
		         it->ev.value, EVENT_STRIPE_DIGITS);
		item_dead(s, idx, reason, now);
		return 0;
	}
	if (off > 0)
		clock_saw(s, wall, "Stripe's clock (a meter event session's created time)");
	if (it->ev.first_unknown > 0 && clock_steady_wall_s(&s->steady) - it->ev.first_unknown >
	                                    s->cfg->stripe.unsure_after_s) {
		item_unsure(s, idx, clock_steady_wall_s(&s->steady), now, NULL);
		return 0;
	}
	/* Stamped ahead of the latest time seen by more than an earlier run's kept time can lag
	 * (SENDER_CLOCK_STAMPED_S): two clocks found the time that stamped it wrong ahead
	 * (clock_ahead_fix), so how long ago the outcome became unknown cannot be known, nor
	 * whether Stripe still knows the identifier. */
	if (it->ev.first_unknown - clock_steady_wall_s(&s->steady) > SENDER_CLOCK_STAMPED_S) {
		item_unsure(
		    s, idx, clock_steady_wall_s(&s->steady), now,
		    "a clock was wrong ahead when it was stamped, so how long ago cannot be "
		    "known: Stripe may have forgotten its identifier");
		return 0;
	}
	/* The kept time ahead of this host's clock, Stripe's not known yet: judged by a kept
	 * time that is wrong ahead, a re-sent event may be one Stripe has forgotten. It waits
	 * for two agreeing answers (clock_confirm). */
	if (it->ev.first_unknown > 0 && clock_unsettled(s)) {
		if (!it->held) {
			char msg[256];

			snprintf(
			    msg, sizeof(msg),
			    "event %lld (%s): its earlier attempt's outcome is unknown and the "
			    "latest time seen is ahead of this host's clock: held until Stripe's "
			    "clock tells which is right",
			    (long long)it->ev.id, it->ev.identifier);
			ratelog_add(&s->hold_log, now, msg);
			s->publish_due = 1;
		}
		it->held = 1;
		it->next_attempt = now + SENDER_HOLD_RECHECK_MS;
		s->clock_held = 1;
		return 1;
	}
	if (off != 0)
		snprintf(clk, sizeof(clk),
		         " by Stripe's clock, which is %lld s %s this host's (a meter event "
		         "session's created time)",
		         (long long)llabs((long long)off), off > 0 ? "ahead of" : "behind");
	win = event_window_of(it->ev.timestamp, wall);
	/* An earlier attempt's outcome is unknown and the event has aged out of the window since:
	 * Stripe may have taken it then. With v1 it is sent again all the same, with its
	 * Idempotency-Key: Stripe answers an attempt it took with that answer saved (24 hours),
	 * delivered, and refuses one it did not see (400, a dead letter with its reason). The
	 * stream has no such answer: it would take the event and drop it, either way. */
	if (it->ev.first_unknown > 0 &&
	    (win == EVENT_WINDOW_OLD ||
	     (s->v2 && it->ev.timestamp < wall - EVENT_MAX_AGE_S + SENDER_V2_PAST_MARGIN_S))) {
		if (s->v2) {
			item_unsure(
			    s, idx, clock_steady_wall_s(&s->steady), now,
			    "its timestamp is now too near the end of Stripe's 35 days for the "
			    "stream, which checks timestamps later: Stripe may have taken it "
			    "then, and would drop it now");
			return 0;
		}
		win = EVENT_WINDOW_OK;
	}
	if (win == EVENT_WINDOW_OLD) {
		snprintf(reason, sizeof(reason),
		         "timestamp %lld is outside Stripe's window (more than 35 days in the "
		         "past)%s; not sent",
		         (long long)it->ev.timestamp, clk);
		item_dead(s, idx, reason, now);
		return 0;
	}
	if (s->v2 && it->ev.timestamp < wall - EVENT_MAX_AGE_S + SENDER_V2_PAST_MARGIN_S) {
		snprintf(
		    reason, sizeof(reason),
		    "timestamp %lld is within %d s of the end of Stripe's 35-day window%s; the "
		    "stream checks timestamps later (asynchronously, with no documented delay) and "
		    "drops one it finds too old, unbilled: not sent, as a margin",
		    (long long)it->ev.timestamp, SENDER_V2_PAST_MARGIN_S, clk);
		item_dead(s, idx, reason, now);
		return 0;
	}
	if (win == EVENT_WINDOW_FAR_AHEAD) {
		/* No clock step explains a day: a wrong timestamp in the line, or a host clock
		 * set to another date. Stripe would refuse it; `replay --dead` after the fix. */
		snprintf(reason, sizeof(reason),
		         "timestamp %lld is %lld s ahead of %s clock, more than a day: a wrong "
		         "timestamp or clock; not sent",
		         (long long)it->ev.timestamp, (long long)(it->ev.timestamp - wall),
		         off != 0 ? "Stripe's" : "this host's");
		item_dead(s, idx, reason, now);
		return 0;
	}
	if (win == EVENT_WINDOW_AHEAD || it->too_early_until > now) {
		/* The clock was stepped back, or the line came from a host whose clock runs ahead:
		 * Stripe takes the event once it is at most 5 minutes ahead of Stripe's clock,
		 * which may be a little behind this one (the margin, and Stripe's own answer). */
		int64_t wait =
		    (it->ev.timestamp - (EVENT_MAX_AHEAD_S - EVENT_HOLD_MARGIN_S) - wall) * 1000 +
		    1000;

		if (it->too_early_until > now + wait)
			wait = it->too_early_until - now;
		if (!it->held) {
			char msg[256];

			snprintf(msg, sizeof(msg),
			         "event %lld (%s): timestamp %lld is %lld s ahead of %s clock, "
			         "more than Stripe's 5 minutes: held until it is valid",
			         (long long)it->ev.id, it->ev.identifier,
			         (long long)it->ev.timestamp, (long long)(it->ev.timestamp - wall),
			         off != 0 ? "Stripe's" : "this host's");
			ratelog_add(&s->hold_log, now, msg);
			s->publish_due = 1;
		}
		it->held = 1;
		it->next_attempt = now + min64(wait, SENDER_HOLD_RECHECK_MS);
		return 1;
	}
	if (it->held) {
		it->held = 0;
		it->next_attempt = 0;
		s->publish_due = 1;
	}
	return 1;
}

/* Keeps a finished v1 request (out of the multi handle) for a later event, or frees it. */
static void spare_put(struct sender *s, struct stripe_request *req)
{
	if (s->n_spare < SENDER_SPARE_MAX)
		s->spare[s->n_spare++] = req;
	else
		stripe_request_free(req);
}

/* Frees the kept requests: at the end, and when the key may have changed. */
static void spares_drop(struct sender *s)
{
	while (s->n_spare > 0)
		stripe_request_free(s->spare[--s->n_spare]);
}

/* Starts the request of `it`. Returns 0, or -1 (it was given a backoff; logged). */
static int item_start(struct sender *s, struct sender_item *it, int64_t now)
{
	char err[512] = "";
	struct stripe_request *req;
	CURLMcode mc;

	it->started = clock_steady_wall_s(&s->kept);
	if (s->n_spare > 0) {
		req = s->spare[--s->n_spare];
		if (stripe_request_reuse(req, &it->ev, it, err, sizeof(err)) != 0) {
			stripe_request_free(req);
			req = NULL;
		}
	} else {
		req = stripe_request_new(s->cfg, s->key, &it->ev, it, err, sizeof(err));
	}
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
	s->publish_due = 1;
	stats_add(s, &s->stats.requests, 1);
	return 0;
fail:
	stripe_request_free(req);
	it->next_attempt = now + backoff_ms(s, it->ev.attempts + 1);
	return -1;
}

/* One pass over the queue in order: events of one (customer, event_name) go strictly in order
 * and one at a time, which is what Stripe asks. Returns when something becomes due (monotonic
 * ms), or INT64_MAX if only a finished transfer can change anything. */
static int64_t start_requests(struct sender *s, int64_t now)
{
	int64_t limit = s->probe ? 1 : s->cfg->stripe.max_concurrency;
	int64_t wake = INT64_MAX, token_wake = INT64_MAX;
	void *seen = NULL; /* keys of events this pass left queued */

	/* Outcomes the spool cannot take (a full disk) stay in memory until it can: beyond a
	 * queue's worth, sending waits for them rather than letting them grow without bound. */
	if (marks_blocked(s))
		return INT64_MAX;
	if (now < s->hold_until)
		return s->hold_until;
	for (size_t i = 0; i < s->n; i++) {
		struct sender_item *it = s->queue[i];

		if ((int64_t)s->inflight >= limit)
			break;
		if (it == NULL || it->req != NULL)
			continue;
		if (!item_check(s, i, now))
			continue;
		if (tfind(it->key, &s->inflight_keys, key_cmp) != NULL ||
		    tfind(it->key, &seen, key_cmp) != NULL)
			continue;
		if (it->next_attempt > now) {
			wake = min64(wake, it->next_attempt);
			/* A retry keeps its pair's order; a held event waits for the clock, maybe
			 * for hours, and lets the later events of its pair go. */
			if (!it->held && tsearch(it->key, &seen, key_cmp) == NULL)
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

/* Pauses all sending: Stripe refused the key (PAUSE_AUTH), or an answer was not Stripe's answer
 * about the event (PAUSE_ANSWER: a redirect, a 2xx without our meter event, an unexpected
 * status; a proxy or a wrong api_base), or v2 sessions keep expiring as soon as they are made
 * (PAUSE_SESSION). Events stay pending; after the pause one request tries again. In once-mode
 * the run ends, but for PAUSE_SESSION, which is retried as Stripe's SDKs retry an expired
 * session. */
static void pause_start(struct sender *s, enum sender_pause kind, const char *reason, int64_t now)
{
	int64_t pause = s->cfg->stripe.auth_pause_ms;
	const char *what = kind == PAUSE_AUTH ? "Stripe refused the API key"
	                   : kind == PAUSE_SESSION
	                       ? "Stripe's meter event sessions keep expiring as soon as they are "
	                         "made (check this "
	                         "host's clock, and Stripe's status)"
	                       : "the answer was not Stripe's answer about the event";

	s->pause_until = now + pause;
	s->publish_due = 1;
	if (s->paused != PAUSE_NONE && s->paused == kind)
		return;
	if (s->once && kind != PAUSE_SESSION)
		log_err("%s (%s): stopping; events stay pending%s", what, reason,
		        kind == PAUSE_ANSWER
		            ? "; check api_base and any proxy between logmeter and "
		              "Stripe"
		            : "");
	else if (s->probe)
		log_err("%s again (%s): sending paused for another %.1f s; events stay pending",
		        what, reason, (double)pause / 1000.0);
	else
		log_err("%s (%s): sending paused for %.1f s; events stay pending%s", what, reason,
		        (double)pause / 1000.0,
		        kind == PAUSE_ANSWER
		            ? "; check api_base and any proxy between logmeter and "
		              "Stripe"
		            : "");
	/* The same refusal again after a probe continues the pause: its start stays, so that a
	 * key refused for hours does not look a second old. */
	if (!(s->probe && s->probe_kind == kind))
		s->pause_since = (int64_t)time(NULL);
	s->paused = kind;
	snprintf(s->pause_reason, sizeof(s->pause_reason), "%s: %s", what, reason);
	s->probe = 0;
}

/* At the end of a pause: re-reads the key (an operator may have fixed the file) and lets one
 * request find out whether Stripe answers as Stripe again. */
static void pause_end(struct sender *s, int64_t now)
{
	char key[STRIPE_KEY_MAX];
	char err[512] = "";

	if (stripe_key_load(s->cfg, key, sizeof(key), err, sizeof(err)) != 0) {
		log_err("cannot re-read the Stripe API key: %s; sending stays paused", err);
		s->pause_until = now + s->cfg->stripe.auth_pause_ms;
		return;
	}
	explicit_bzero(s->key, sizeof(s->key));
	memcpy(s->key, key, sizeof(s->key));
	explicit_bzero(key, sizeof(key));
	spares_drop(s);           /* made with the old key */
	rate_init(s);             /* the key may now be of another kind */
	session_drop(s->session); /* made with the key Stripe refused */
	s->session_retry_at = 0;
	s->session_failed = 0;
	s->probe_kind = s->paused;
	s->paused = PAUSE_NONE;
	s->probe = 1;
	s->publish_due = 1;
	if (s->auth_by_meters) {
		/* The queue may be empty: the meter check is the request that tries the key. */
		pthread_mutex_lock(&s->rules_lock);
		s->rules_check = 1;
		atomic_store(&s->rules_pending, 1);
		pthread_mutex_unlock(&s->rules_lock);
	}
	log_info("trying Stripe again with one request");
}

/* Counts a request that ended by outcome and duration (`secs`: the metrics' histogram). */
static void stats_ended(struct sender *s, enum stripe_outcome out, double secs)
{
	size_t b = 0;

	if (secs < 0)
		secs = 0;
	while (b < SENDER_DURATION_BOUNDS && secs > sender_duration_bounds[b])
		b++;
	pthread_mutex_lock(&s->stats_lock);
	if ((int)out >= 0 && out < STRIPE_OUTCOMES)
		s->stats.outcomes[out]++;
	s->stats.duration_counts[b]++;
	s->stats.duration_sum += secs;
	pthread_mutex_unlock(&s->stats_lock);
}

/* Counts a finished request by outcome and duration (libcurl's total time). */
static void stats_request(struct sender *s, CURL *easy, enum stripe_outcome out)
{
	double secs = 0;

	if (curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &secs) != CURLE_OK)
		secs = 0;
	stats_ended(s, out, secs);
}

/* ---- v2: batches on the meter event stream ---- */

/* Drops the items whose outcome a batch recorded, keeping the queue order. */
static void queue_drop_done(struct sender *s)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->queue[i] != NULL && s->queue[i]->done)
			item_finish(s, i);
	}
	queue_compact(s);
}

/* Frees a batch's request: its items are no longer in flight. */
static void batch_release(struct sender *s, struct stripe_request *req, int remove)
{
	struct sender_batch *b = stripe_request_ud(req);

	if (remove)
		curl_multi_remove_handle(s->multi, stripe_request_easy(req));
	for (size_t i = 0; b != NULL && i < b->n; i++)
		b->items[i]->req = NULL;
	stripe_request_free(req);
	free(b);
	s->inflight--;
	s->publish_due = 1;
}

/* Starts one stream request for the `n` items of `items` with the session's `token`.
 * Returns 0, or -1 (they were given a backoff; logged). */
static int batch_start(struct sender *s, struct sender_item **items, size_t n, const char *token,
                       int64_t now)
{
	const struct event *evs[STRIPE_V2_BATCH_MAX];
	struct sender_batch *b = calloc(1, sizeof(*b));
	struct stripe_request *req = NULL;
	char err[512] = "", *body = NULL;
	int64_t wall = clock_steady_wall_s(&s->kept);

	if (b == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		evs[i] = &items[i]->ev;
		b->items[i] = items[i];
	}
	b->n = n;
	b->session_gen = s->session_gen;
	body = stripe_v2_stream_body(evs, n);
	if (body == NULL) {
		snprintf(err, sizeof(err), "out of memory building the stream request");
		goto fail;
	}
	req = stripe_request_new_post(s->cfg, s->cfg->stripe.meter_events_base,
	                              STRIPE_V2_STREAM_PATH, token, body, b, err, sizeof(err));
	free(body);
	body = NULL;
	if (req == NULL)
		goto fail;
	if (curl_multi_add_handle(s->multi, stripe_request_easy(req)) != CURLM_OK) {
		snprintf(err, sizeof(err), "curl_multi_add_handle failed");
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		items[i]->req = req;
		items[i]->started = wall;
	}
	s->inflight++;
	s->publish_due = 1;
	stats_add(s, &s->stats.requests, 1);
	return 0;
fail:
	log_err("cannot start a stream request of %zu events: %s", n,
	        err[0] ? err : "out of memory");
	free(body);
	if (req != NULL)
		stripe_request_free(req); /* frees nothing of b: the request does not own it */
	free(b);
	for (size_t i = 0; i < n; i++)
		items[i]->next_attempt = now + backoff_ms(s, items[i]->ev.attempts + 1);
	return -1;
}

/* A refused key (STRIPE_AUTH) or an answer that is not Stripe's (STRIPE_UNEXPECTED) for v2:
 * counted, sending paused, and --once told to end. */
static void pause_for(struct sender *s, enum stripe_outcome out, const char *reason, int64_t now)
{
	int auth = out != STRIPE_UNEXPECTED;

	stats_add(s, auth ? &s->stats.auth_pauses : &s->stats.unexpected, 1);
	pause_start(s, auth ? PAUSE_AUTH : PAUSE_ANSWER, reason, now);
	if (s->once && auth)
		s->auth_failed = 1;
	else if (s->once)
		s->answer_failed = 1;
}

/* Takes how far Stripe's clock is off this host's (v2 sessions tell it: seconds, Stripe's less
 * this host's), so that events are judged by Stripe's clock; says so when it changes by much. */
static void clock_offset(struct sender *s, int64_t offset)
{
	int64_t diff = offset - s->stripe_offset, apart = offset < 0 ? -offset : offset;

	if (diff < 0)
		diff = -diff;
	/* Seconds apart is agreement (NTP keeps clocks within seconds): a clock set right after
	 * hours off is said to agree, not to be checked again. */
	if (diff >= SENDER_CLOCK_NOTE_S && apart < SENDER_CLOCK_NOTE_S)
		log_info("this host's clock agrees with Stripe's again (%lld s apart)",
		         (long long)apart);
	else if (diff >= SENDER_CLOCK_NOTE_S && offset < 0)
		log_warn(
		    "this host's clock is %lld s ahead of Stripe's (a meter event session's "
		    "created time): events are held until Stripe's clock is within 5 minutes of "
		    "their timestamps; check this host's time (NTP)",
		    (long long)-offset);
	else if (diff >= SENDER_CLOCK_NOTE_S && offset > 0)
		log_warn("Stripe's clock is %lld s ahead of this host's (a meter event session's "
		         "created time): events are judged by Stripe's clock, and those older than "
		         "35 days by it, less %d s, are dead letters; check this host's time (NTP)",
		         (long long)offset, SENDER_V2_PAST_MARGIN_S);
	if (offset != s->stripe_offset)
		s->publish_due = 1;
	s->stripe_offset = offset;
	if (offset >= 0)
		s->stripe_behind_seen = 0; /* the session says Stripe's clock is not behind */
}

/* v2: no session could be made, so no event was sent. The events next in line (one request's
 * worth) are marked as a failed request's events are, with why (`why`: their last error, which
 * `status` shows), and wait until `until` (monotonic ms; 0: unchanged, as after a pause). Not an
 * attempt, and no unknown outcome: none of them left this host. */
static void session_failed_mark(struct sender *s, const char *why, int64_t until)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n && n < STRIPE_V2_BATCH_MAX; i++) {
		struct sender_item *it = s->queue[i];

		if (it == NULL || it->req != NULL || it->done || it->held)
			continue;
		snprintf(it->ev.last_error, sizeof(it->ev.last_error), "%s", why);
		if (mark_add(s, &it->ev, EVENT_PENDING, why) != 0) {
			log_err("out of memory recording the outcome of event %lld",
			        (long long)it->ev.id);
			break;
		}
		if (until > it->next_attempt)
			it->next_attempt = until;
		n++;
	}
	s->publish_due = 1;
}

/* A session to send with: the one held, or a new one. NULL when there is none now (a pause
 * started, or *wake says when to ask again). The session request is counted as a request and
 * its failure recorded as a stream request's is (session_failed_mark). */
static const char *session_get(struct sender *s, int64_t now, int64_t *wake)
{
	char reason[STRIPE_REASON_MAX], msg[STRIPE_REASON_MAX + 128], why[STRIPE_REASON_MAX + 64];
	const char *token = session_token(s->session, now);
	struct session_try t;
	enum stripe_outcome out;
	int64_t delay;

	if (token != NULL)
		return token;
	if (now < s->session_retry_at) {
		*wake = s->session_retry_at;
		return NULL;
	}
	stats_add(s, &s->stats.requests, 1);
	health_wait_begin(HEALTH_SENDER);
	out = session_renew(s->session, s->key, now, clock_steady_wall_s(&s->kept), reason,
	                    sizeof(reason), &t);
	health_wait_end(HEALTH_SENDER);
	now = clock_mono_ms();
	stats_ended(s, out, t.secs);
	s->publish_due = 1;
	if (out == STRIPE_DELIVERED) {
		stats_add(s, &s->stats.sessions, 1);
		s->session_gen++;
		s->session_failed = 0;
		clock_offset(s, session_clock_offset(s->session));
		return session_token(s->session, now);
	}
	err_set(why, sizeof(why), "cannot create a meter event session: %s", reason);
	switch (out) {
	case STRIPE_AUTH:
		s->auth_status = t.status;
		/* fall through */
	case STRIPE_UNEXPECTED:
		session_failed_mark(s, why, 0);
		pause_for(s, out, reason, now);
		return NULL;
	case STRIPE_RATE_LIMITED:
		rate_cut(s, now, reason);
		/* fall through */
	default:
		/* Doubling as for events: an outage is not met by a request every
		 * retry_min_backoff for as long as it lasts; an answer's Retry-After holds every
		 * request, as a stream request's does. */
		delay = backoff_ms(s, ++s->session_failed);
		if (t.retry_after_ms > 0) {
			if (t.retry_after_ms > delay)
				delay = t.retry_after_ms;
			if (now + t.retry_after_ms > s->hold_until)
				s->hold_until = now + t.retry_after_ms;
		}
		s->session_retry_at = now + delay;
		*wake = s->session_retry_at;
		session_failed_mark(s, why, s->session_retry_at);
		err_set(msg, sizeof(msg), "%s; will retry in %lld ms", why, (long long)delay);
		ratelog_add(&s->retry_log, now, msg);
		return NULL;
	}
}

/* start_requests for v2: the due events in queue order, in requests of up to
 * STRIPE_V2_BATCH_MAX (fewer for events whose earlier request was refused), as many in flight
 * as max_concurrency and the rate allow. The stream has no per-(customer, meter) rule, so no
 * pair waits for another. */
static int64_t start_batches(struct sender *s, int64_t now)
{
	int64_t limit = s->probe ? 1 : s->cfg->stripe.max_concurrency;
	int64_t wake = INT64_MAX, token_wake = INT64_MAX;
	struct sender_item *batch[STRIPE_V2_BATCH_MAX];
	const char *token = NULL;
	size_t nb = 0, cap = STRIPE_V2_BATCH_MAX;

	if (marks_blocked(s))
		return INT64_MAX;
	if (now < s->hold_until)
		return s->hold_until;
	/* The session first: it tells Stripe's clock, by which item_check holds events. */
	if (s->n > 0 && (token = session_get(s, now, &wake)) == NULL)
		return wake;
	for (size_t i = 0; i <= s->n; i++) {
		struct sender_item *it = i < s->n ? s->queue[i] : NULL;
		size_t c;

		if (i < s->n) {
			if (it == NULL || it->req != NULL || it->done)
				continue;
			if (!item_check(s, i, now))
				continue;
			if (it->next_attempt > now) {
				wake = min64(wake, it->next_attempt);
				continue;
			}
			c = it->batch_cap > 0 ? it->batch_cap : STRIPE_V2_BATCH_MAX;
			if (nb > 0 && c < nb + 1) {
				i--; /* the batch so far goes first; this item starts the next */
				it = NULL;
			} else {
				cap = nb == 0 || c < cap ? c : cap;
				batch[nb++] = it;
				if (nb < cap)
					continue;
			}
		}
		if (nb == 0)
			break;
		if ((int64_t)s->inflight >= limit)
			break;
		if (token == NULL && (token = session_get(s, now, &wake)) == NULL)
			break;
		if (!token_take(s, now, &token_wake)) {
			wake = min64(wake, token_wake);
			break;
		}
		if (batch_start(s, batch, nb, token, now) != 0)
			wake = min64(wake, batch[0]->next_attempt);
		nb = 0;
		cap = STRIPE_V2_BATCH_MAX;
	}
	if (token != NULL)
		wake = min64(wake, session_renew_at(s->session));
	queue_compact(s);
	return wake;
}

/* handle_done for a stream request: one answer for every event of its batch. */
static void batch_done(struct sender *s, struct stripe_request *req, CURLcode code, int64_t now)
{
	struct sender_batch *b = stripe_request_ud(req);
	struct stripe_response r;
	char reason[STRIPE_REASON_MAX], msg[STRIPE_REASON_MAX + 256];
	enum stripe_outcome out;
	int64_t retry_after = stripe_request_retry_after_ms(req), delay = 0, attempts = 1;
	long status;

	stripe_request_response(req, code, &r);
	out = stripe_v2_classify(&r, reason, sizeof(reason));
	stripe_request_reason_finish(req, &r, reason, sizeof(reason));
	stats_request(s, stripe_request_easy(req), out);
	status = r.status;
	/* Stripe may have taken the events: a crash now sends them again with their identifiers. */
	crash_point("sender_after_answer");
	{
		struct sender_batch copy = *b; /* batch_release frees b */

		batch_release(s, req, 1);
		b = &copy;
		if (s->probe && out != STRIPE_AUTH && out != STRIPE_UNEXPECTED &&
		    out != STRIPE_SESSION_EXPIRED && status != 0) {
			s->probe = 0;
			log_info("Stripe answers again: sending resumed");
		}
		if (out == STRIPE_SESSION_EXPIRED) {
			/* The requests in flight under one session meet its end together: only the
			 * first answer counts, and only a session refused in a row with its
			 * predecessors is suspicious. */
			int first =
			    b->session_gen == s->session_gen && session_renew_at(s->session) != 0;

			if (first)
				session_drop(s->session);
			if (first && ++s->session_expired_run >= SENDER_SESSION_EXPIRED_MAX) {
				s->session_expired_run = 0;
				pause_start(s, PAUSE_SESSION, reason, now);
			}
			stats_add(s, &s->stats.session_expired, 1);
			/* The same events again, under a new session: nothing was taken. */
			for (size_t i = 0; i < b->n; i++)
				b->items[i]->next_attempt = 0;
			return;
		}
		if (out == STRIPE_DELIVERED)
			s->session_expired_run = 0;
		if ((out == STRIPE_REJECTED || (out == STRIPE_DELIVERED && status >= 400)) &&
		    b->n > 1) {
			/* The stream refuses a request as a whole: halve it until the event Stripe
			 * refuses is alone, and dead-letter only that one. A duplicate identifier's
			 * 4xx (stripe_v2_classify) names no event either: halved the same way, it
			 * delivers only the event alone in its request. */
			for (size_t i = 0; i < b->n; i++) {
				b->items[i]->batch_cap = (b->n + 1) / 2;
				b->items[i]->next_attempt = 0;
			}
			log_debug(
			    "the stream refused a request of %zu events (%s): sending them in "
			    "halves",
			    b->n, reason);
			return;
		}
		switch (out) {
		case STRIPE_DELIVERED:
			rate_up(s, now);
			break;
		case STRIPE_REJECTED:
			crash_point("sender_dead_letter");
			err_set(
			    msg, sizeof(msg),
			    "Stripe's stream refused event %lld (%s, rule %s): %s; kept as a dead "
			    "letter",
			    (long long)b->items[0]->ev.id, b->items[0]->ev.identifier,
			    b->items[0]->ev.rule, reason);
			ratelog_add(&s->dead_log, now, msg);
			break;
		case STRIPE_AUTH:
			s->auth_status = status;
			/* fall through */
		case STRIPE_UNEXPECTED:
			pause_for(s, out, reason, now);
			break;
		case STRIPE_RATE_LIMITED:
			stats_add(s, &s->stats.rate_limited, (int64_t)b->n);
			rate_cut(s, now, reason);
			if (retry_after > 0 && now + retry_after > s->hold_until) {
				s->hold_until = now + retry_after;
				s->publish_due = 1;
			}
			break;
		default:
			break;
		}
		/* One backoff for the whole request: its events come due together and go out
		 * together again, not scattered by a draw of jitter each into requests of a
		 * few events. */
		if (out != STRIPE_DELIVERED && out != STRIPE_REJECTED && out != STRIPE_AUTH &&
		    out != STRIPE_UNEXPECTED) {
			for (size_t i = 0; i < b->n; i++)
				if (b->items[i]->ev.attempts + 1 > attempts)
					attempts = b->items[i]->ev.attempts + 1;
			delay = backoff_ms(s, attempts);
			if (retry_after > delay)
				delay = retry_after;
		}
		for (size_t i = 0; i < b->n; i++) {
			struct sender_item *it = b->items[i];
			enum event_state state = EVENT_PENDING;

			it->ev.attempts++;
			if (out == STRIPE_DELIVERED) {
				state = EVENT_DELIVERED;
			} else if (out == STRIPE_REJECTED) {
				state = EVENT_DEAD;
			} else if (out == STRIPE_AUTH || out == STRIPE_UNEXPECTED) {
				it->next_attempt = 0;
				if (out == STRIPE_UNEXPECTED && status / 100 == 2 &&
				    it->ev.first_unknown == 0)
					it->ev.first_unknown = it->started;
			} else {
				it->next_attempt = now + delay;
				if (out == STRIPE_UNKNOWN && it->ev.first_unknown == 0)
					it->ev.first_unknown = it->started > 0
					                           ? it->started
					                           : clock_steady_wall_s(&s->kept);
			}
			if (state == EVENT_PENDING)
				snprintf(it->ev.last_error, sizeof(it->ev.last_error), "%s",
				         reason);
			if (mark_add(s, &it->ev, state, state == EVENT_DELIVERED ? NULL : reason) !=
			    0) {
				log_err("out of memory recording the outcome of event %lld",
				        (long long)it->ev.id);
				if (state != EVENT_PENDING)
					it->next_attempt = now + backoff_ms(s, it->ev.attempts);
				continue;
			}
			if (state != EVENT_PENDING)
				it->done = 1;
		}
		if (out == STRIPE_DELIVERED) {
			stats_add(s, &s->stats.delivered, (int64_t)b->n);
			if (status >= 400)
				stats_add(s, &s->stats.duplicates, (int64_t)b->n);
		} else if (out == STRIPE_REJECTED) {
			stats_add(s, &s->stats.dead, 1);
		} else if (out != STRIPE_AUTH && out != STRIPE_UNEXPECTED) {
			stats_add(s, &s->stats.retries, (int64_t)b->n);
			if (out == STRIPE_UNKNOWN)
				stats_add(s, &s->stats.unknown, (int64_t)b->n);
			err_set(msg, sizeof(msg),
			        "a stream request of %zu events: %s; will retry in %lld ms%s", b->n,
			        reason, (long long)delay,
			        out == STRIPE_UNKNOWN ? " (outcome unknown: the identifiers decide)"
			                              : "");
			ratelog_add(&s->retry_log, now, msg);
		}
		queue_drop_done(s);
	}
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
	int64_t retry_after, delay;
	long status = 0;

	if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK || priv == NULL) {
		curl_multi_remove_handle(s->multi, easy);
		return;
	}
	req = (struct stripe_request *)(void *)priv;
	if (s->v2) {
		batch_done(s, req, code, now);
		return;
	}
	it = stripe_request_ud(req);
	out = stripe_request_result(req, code, reason, sizeof(reason));
	retry_after = stripe_request_retry_after_ms(req);
	/* Not what a proxy or a captive portal answers (unexpected): its clock is not Stripe's. */
	if (out != STRIPE_UNEXPECTED && stripe_request_date(req) > 0)
		clock_saw_date(s, stripe_request_date(req));
	/* Stripe may have accepted the event: a crash now re-sends it with the same identifier. */
	crash_point("sender_after_answer");
	if (code == CURLE_OK)
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	stats_request(s, easy, out);
	curl_multi_remove_handle(s->multi, easy);
	spare_put(s, req);
	it->req = NULL;
	tdelete(it->key, &s->inflight_keys, key_cmp);
	s->inflight--;
	it->ev.attempts++;
	s->publish_due = 1;

	if (s->probe && out != STRIPE_AUTH && out != STRIPE_UNEXPECTED && status != 0) {
		s->probe = 0;
		log_info("Stripe answers again: sending resumed");
		/* A key that works now may read the meters it could not read at start. */
		if (s->meters_unchecked) {
			pthread_mutex_lock(&s->rules_lock);
			s->rules_check = 1;
			atomic_store(&s->rules_pending, 1);
			pthread_mutex_unlock(&s->rules_lock);
		}
	}
	if (out == STRIPE_UNKNOWN || out == STRIPE_UNEXPECTED) {
		/* Stripe may have carried the attempt out, or saved its error under the key: the
		 * next attempt goes under a new key, and the identifier decides. A redirect was
		 * never Stripe's work, but a new key costs nothing. */
		it->ev.key_generation++;
		if (it->ev.first_unknown == 0 && (out == STRIPE_UNKNOWN || status / 100 == 2))
			it->ev.first_unknown =
			    it->started > 0 ? it->started : clock_steady_wall_s(&s->kept);
	}
	switch (out) {
	case STRIPE_DELIVERED:
		state = EVENT_DELIVERED;
		stats_add(s, &s->stats.delivered, 1);
		rate_up(s, now);
		/* Stripe took a timestamp at most 5 minutes ahead of its clock: its clock is behind
		 * by at most now - (timestamp - 5 minutes). Less than what "too far in the future"
		 * showed is a clock that caught up: forget it. */
		if (s->stripe_behind_seen > 0 &&
		    (int64_t)time(NULL) - (it->ev.timestamp - EVENT_MAX_AHEAD_S) <
		        s->stripe_behind_seen) {
			s->stripe_behind_seen = 0;
			s->publish_due = 1;
		}
		if (strstr(reason, "already exists") != NULL ||
		    strstr(reason, "duplicate_meter_event") != NULL) {
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
	case STRIPE_TOO_EARLY:
		/* Stripe refuses a timestamp more than 5 minutes ahead of its clock: its clock is
		 * behind this host's by at least now - (timestamp - 5 minutes), when that is > 0.
		 */
		if ((int64_t)time(NULL) - (it->ev.timestamp - EVENT_MAX_AHEAD_S) >
		    s->stripe_behind_seen) {
			s->stripe_behind_seen =
			    (int64_t)time(NULL) - (it->ev.timestamp - EVENT_MAX_AHEAD_S);
			s->publish_due = 1;
		}
		it->too_early_until = now + SENDER_TOO_EARLY_MS;
		it->next_attempt = it->too_early_until;
		it->held = 1; /* counted as held; item_check logs nothing more of it */
		stats_add(s, &s->stats.retries, 1);
		err_set(msg, sizeof(msg),
		        "event %lld (%s): %s; Stripe's clock is behind this host's: held %d s",
		        (long long)it->ev.id, it->ev.identifier, reason,
		        SENDER_TOO_EARLY_MS / 1000);
		ratelog_add(&s->hold_log, now, msg);
		break;
	case STRIPE_RETRY:
	case STRIPE_UNKNOWN:
	case STRIPE_RATE_LIMITED:
		delay = backoff_ms(s, it->ev.attempts);
		if (retry_after > delay)
			delay = retry_after;
		it->next_attempt = now + delay;
		stats_add(s, &s->stats.retries, 1);
		if (out == STRIPE_UNKNOWN)
			stats_add(s, &s->stats.unknown, 1);
		if (out == STRIPE_RATE_LIMITED) {
			stats_add(s, &s->stats.rate_limited, 1);
			rate_cut(s, now, reason);
			if (retry_after > 0 && now + retry_after > s->hold_until) {
				s->hold_until = now + retry_after;
				s->publish_due = 1;
			}
		}
		err_set(
		    msg, sizeof(msg), "event %lld (%s): %s; will retry in %lld ms (attempt %lld%s)",
		    (long long)it->ev.id, it->ev.identifier, reason, (long long)delay,
		    (long long)it->ev.attempts,
		    out == STRIPE_UNKNOWN ? ", outcome unknown: next under a new Idempotency-Key"
		                          : "");
		ratelog_add(&s->retry_log, now, msg);
		break;
	case STRIPE_AUTH:
	case STRIPE_SESSION_EXPIRED: /* v2 only: batch_done */
		stats_add(s, &s->stats.auth_pauses, 1);
		it->next_attempt = 0;
		s->auth_status = status;
		pause_start(s, PAUSE_AUTH, reason, now);
		if (s->once)
			s->auth_failed = 1;
		break;
	case STRIPE_UNEXPECTED:
		stats_add(s, &s->stats.unexpected, 1);
		it->next_attempt = 0;
		pause_start(s, PAUSE_ANSWER, reason, now);
		if (s->once)
			s->answer_failed = 1;
		break;
	}
	/* The text of a retry is kept too, so that status, export and an unsure verdict say why
	 * it waits. */
	if (state == EVENT_PENDING)
		snprintf(it->ev.last_error, sizeof(it->ev.last_error), "%s", reason);
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
 * same identifier and key (Stripe replays the answer it saved, if it got that far). With
 * `record`, their attempt is recorded as one whose outcome is unknown (first_unknown), so that
 * unsure_after counts from it. */
/* Records an attempt abandoned in flight: its outcome is unknown. */
static void abandon_record(struct sender *s, struct sender_item *it)
{
	it->ev.attempts++;
	if (it->ev.first_unknown == 0)
		it->ev.first_unknown =
		    it->started > 0 ? it->started : clock_steady_wall_s(&s->kept);
	if (mark_add(s, &it->ev, EVENT_PENDING, "abandoned in flight when the agent stopped") != 0)
		log_err("out of memory recording the outcome of event %lld", (long long)it->ev.id);
}

static void abandon_inflight(struct sender *s, int record)
{
	for (size_t i = 0; i < s->n; i++) {
		struct sender_item *it = s->queue[i];

		if (it == NULL || it->req == NULL)
			continue;
		if (s->v2) {
			struct sender_batch *b = stripe_request_ud(it->req);

			for (size_t k = 0; record && b != NULL && k < b->n; k++)
				abandon_record(s, b->items[k]);
			batch_release(s, it->req, 1); /* every item of its batch */
			continue;
		}
		curl_multi_remove_handle(s->multi, stripe_request_easy(it->req));
		stripe_request_free(it->req);
		it->req = NULL;
		tdelete(it->key, &s->inflight_keys, key_cmp);
		if (record)
			abandon_record(s, it);
	}
	s->inflight = 0;
}

/* ---- the rules against the account's meters, once at start ---- */

/* log_account_line's `ud`: the last error reported, for held_why. */
struct account_lines {
	char last_error[STRIPE_REASON_MAX];
};

static void log_account_line(enum account_level level, const char *text, void *ud)
{
	struct account_lines *al = ud;

	if (level == ACCOUNT_OK) {
		log_debug("%s", text);
		return;
	}
	log_warn("%s", text);
	if (level == ACCOUNT_ERROR)
		snprintf(al->last_error, sizeof(al->last_error), "%s", text);
}

/* Holds the rules of `rules` against the account's meters (account.h): warns about those whose
 * events Stripe would refuse or bill wrongly, and holds the events of those it would take
 * without billing them (no usage lost in silence: they wait in the spool, pending, and status
 * says why, until a check finds the meter right, every SENDER_METERS_RECHECK_MS). If the meters
 * cannot be read (the key may lack the permission) nothing is held. */
static void check_meters(struct sender *s, const struct config *rules)
{
	struct stripe_meter *meters = NULL;
	struct account_lines al;
	char err[1024] = "";
	size_t n = 0, was_held = s->n_held_rules;
	int rc, errors = 0;
	long status = 0;
	int64_t date = 0;

	health_wait_begin(HEALTH_SENDER);
	rc = stripe_meters_list(s->cfg, s->key, SENDER_METERS_TIMEOUT_MS, &meters, &n, &status,
	                        &date, err, sizeof(err));
	health_wait_end(HEALTH_SENDER);
	/* Read before any event is sent: Stripe's clock decides unsure_after from the start. A
	 * kept time ahead of this host's clock is judged by a second answer at once. */
	if (rc == 0 && date > 0) {
		clock_saw_date(s, date);
		clock_confirm(s);
	}
	if (rc != 0 && status == 401) {
		/* A refused key is an error even with nothing to send: the operator learns it now,
		 * not when the first line is billed (and `run --once` ends with CLI_EXIT_AUTH).
		 * Only 401: a restricted key may send meter events without the permission to
		 * read meters: a 403, "The API key doesn't have permissions to perform
		 * the request" (docs.stripe.com/api/errors). */
		stats_add(s, &s->stats.auth_pauses, 1);
		s->auth_status = status;
		s->auth_by_meters = 1;
		s->meters_unchecked = 1;
		pause_start(s, PAUSE_AUTH, err, clock_mono_ms());
		if (s->once)
			s->auth_failed = 1;
		return;
	}
	if (rc == 0 && s->auth_by_meters) {
		s->auth_by_meters = 0;
		if (s->probe && s->probe_kind == PAUSE_AUTH) {
			s->probe = 0;
			log_info("Stripe takes the API key again (the account's meters were read): "
			         "sending resumed");
		}
	}
	if (rc != 0) {
		log_warn("cannot hold the rules against the account's meters (%s); `logmeter check "
		         "--stripe` does it on demand",
		         err);
		s->meters_unchecked = 1;
		return;
	}
	s->meters_unchecked = 0;
	s->n_held_rules = 0;
	s->held_why[0] = '\0';
	for (size_t i = 0; i < rules->n_rules; i++) {
		const struct config_rule *r = &rules->rules[i];
		int hold = 0;

		al.last_error[0] = '\0';
		errors += account_check_rule(r, s->v2, meters, n, log_account_line, &al, &hold);
		if (!hold || s->n_held_rules >= SENDER_HELD_RULES_MAX)
			continue;
		snprintf(s->held_rules[s->n_held_rules++], sizeof(s->held_rules[0]), "%s", r->name);
		if (s->held_why[0] == '\0')
			snprintf(s->held_why, sizeof(s->held_why), "%s", al.last_error);
	}
	free(meters);
	s->publish_due = 1;
	s->next_meters_check = clock_mono_ms() + SENDER_METERS_RECHECK_MS;
	if (errors == 0)
		log_info("the account's meters (%zu) take every rule's events", n);
	if (s->n_held_rules > 0)
		log_err("the events of %zu rules are held, not sent, until their meters bill them "
		        "(checked again every %d s); `logmeter status` names them",
		        s->n_held_rules, SENDER_METERS_RECHECK_MS / 1000);
	else if (was_held > 0)
		log_info("no rule's events are held for its meter any more: sending them");
}

/* While events are held for their meters: asks for another check when it is due. */
static void meters_recheck_due(struct sender *s, int64_t now)
{
	if (s->n_held_rules == 0 || now < s->next_meters_check)
		return;
	s->next_meters_check = now + SENDER_METERS_RECHECK_MS;
	pthread_mutex_lock(&s->rules_lock);
	s->rules_check = 1;
	atomic_store(&s->rules_pending, 1);
	pthread_mutex_unlock(&s->rules_lock);
}

/* 1 if every queued event is held for its timestamp (and some are), else 0. */
static int only_held(const struct sender *s)
{
	size_t held = 0;

	for (size_t i = 0; i < s->n; i++) {
		if (s->queue[i] == NULL)
			continue;
		if (!s->queue[i]->held)
			return 0;
		held++;
	}
	return held > 0;
}

/* A reload that kept the sender changed the rules: holds the new ones against the meters, as at
 * start (requests in flight wait meanwhile, at most SENDER_METERS_TIMEOUT_MS). */
static void recheck_rules(struct sender *s)
{
	const struct config *rules = NULL;

	if (!atomic_load(&s->rules_pending))
		return;
	pthread_mutex_lock(&s->rules_lock);
	if (s->rules_check) {
		s->rules_check = 0;
		s->rules_checking = 1;
		rules = s->rules_cfg;
	}
	atomic_store(&s->rules_pending, 0);
	pthread_mutex_unlock(&s->rules_lock);
	if (rules == NULL)
		return;
	check_meters(s, rules);
	pthread_mutex_lock(&s->rules_lock);
	s->rules_checking = 0;
	pthread_cond_broadcast(&s->rules_idle);
	pthread_mutex_unlock(&s->rules_lock);
}

/* ---- live state (statefile.h), for `logmeter status` ---- */

static const char *sender_state_word(const struct sender *s)
{
	if (s->stopped)
		return "stopped";
	if (s->paused == PAUSE_AUTH)
		return "paused-auth";
	if (s->paused == PAUSE_ANSWER)
		return "paused-answer";
	if (s->paused == PAUSE_SESSION)
		return "paused-session";
	return "sending";
}

/* Appends the request counters to the state text `buf` (`len` bytes): "started T", "outcomes"
 * and "duration_counts" with one number per enum stripe_outcome or bucket, "duration_sum S". */
static void append_counters(struct sender *s, char *buf, size_t len)
{
	struct sender_stats st;
	size_t n = strlen(buf);

	sender_get_stats(s, &st);
	n += (size_t)snprintf(buf + n, len - n, "started %lld\noutcomes", (long long)s->started);
	for (size_t i = 0; i < STRIPE_OUTCOMES && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, " %lld", (long long)st.outcomes[i]);
	if (n < len)
		n += (size_t)snprintf(buf + n, len - n, "\nduration_counts");
	for (size_t i = 0; i <= SENDER_DURATION_BOUNDS && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, " %lld", (long long)st.duration_counts[i]);
	if (n < len)
		snprintf(buf + n, len - n, "\nduration_sum %.6f\n", st.duration_sum);
}

/* Writes the live state when something changed (always with `force`), at most once per
 * SENDER_PUBLISH_EVERY_MS, and at least once per heartbeat (statefile_beat_ms of stale_after)
 * whatever changed, so that `status` can tell a frozen sender from an idle one. Returns when it
 * wants to be called again (monotonic ms), or INT64_MAX. */
static int64_t publish_state(struct sender *s, int64_t now, int force)
{
	char buf[STATEFILE_REGION_BYTES];
	size_t retrying = 0, held = 0, in_flight = 0, ready = 0, o;
	int64_t wall = (int64_t)time(NULL), behind;
	char rules[SENDER_HELD_RULES_MAX * 8] = "";

	if (s->sf == NULL)
		return INT64_MAX;
	if (!force && !s->publish_due && now < s->next_beat)
		return s->next_beat;
	if (!force && now < s->next_publish)
		return s->next_publish;
	/* Four buckets that do not overlap, so that they add up to what the queue holds. */
	for (size_t i = 0; i < s->n; i++) {
		const struct sender_item *it = s->queue[i];

		if (it == NULL)
			continue;
		if (it->req != NULL)
			in_flight++;
		else if (it->next_attempt > now && it->held)
			held++;
		else if (it->next_attempt > now)
			retrying++;
		else
			ready++;
	}
	snprintf(buf, sizeof(buf),
	         "# logmeter sender state: written in place by the agent, read by `logmeter "
	         "status`\n"
	         "pid %ld\nsender %s\nsince %lld\ndetail %s\npause_until %lld\n"
	         "rate_max %.1f\nrate_why %s\nrate %.1f\nrate_cut %lld\nhold_until %lld\n"
	         "in_flight %zu\nin_flight_events %zu\nretrying %zu\nheld %zu\nqueued %zu\n",
	         (long)getpid(), sender_state_word(s),
	         (long long)(s->paused != PAUSE_NONE ? s->pause_since : 0),
	         s->paused != PAUSE_NONE ? s->pause_reason : "",
	         (long long)(s->paused != PAUSE_NONE
	                         ? wall + (s->pause_until > now ? (s->pause_until - now) / 1000 : 0)
	                         : 0),
	         s->rate_max, s->rate_why, s->rate, (long long)s->rate_cut_wall,
	         (long long)(s->hold_until > now ? wall + (s->hold_until - now + 999) / 1000 : 0),
	         s->inflight, in_flight, retrying, held, ready);
	for (size_t i = 0, r = 0; i < s->n_held_rules && r + 1 < sizeof(rules); i++)
		r += (size_t)snprintf(rules + r, sizeof(rules) - r, "%s%s", i ? " " : "",
		                      s->held_rules[i]);
	o = strlen(buf);
	if (o < sizeof(buf))
		snprintf(buf + o, sizeof(buf) - o, "held_rules %s\nheld_why %s\n", rules,
		         s->n_held_rules > 0 ? s->held_why : "");
	/* How far Stripe's clock is behind, so that `status` blames the right clock for held
	 * events: the session's `created` (v2) measures it, "too far in the future" answers (v1)
	 * bound it from below. */
	behind = s->stripe_offset < 0 ? -s->stripe_offset : 0;
	o = strlen(buf);
	if (o < sizeof(buf))
		snprintf(
		    buf + o, sizeof(buf) - o, "stripe_behind %lld\nstripe_behind_from %s\n",
		    (long long)(behind > s->stripe_behind_seen ? behind : s->stripe_behind_seen),
		    behind > 0 && behind >= s->stripe_behind_seen ? "session"
		    : s->stripe_behind_seen > 0                   ? "answers"
		                                                  : "");
	append_counters(s, buf, sizeof(buf));
	if (statefile_write(s->sf, buf) != 0)
		log_debug("cannot write the sender's state: %s", strerror(errno));
	s->publish_due = 0;
	s->next_publish = now + SENDER_PUBLISH_EVERY_MS;
	s->next_beat = now + statefile_beat_ms(s->cfg->agent.stale_after_ms);
	return s->next_beat;
}

void sender_publish(struct sender *s)
{
	char err[512] = "";

	if (s == NULL || s->sf != NULL)
		return;
	s->sf = statefile_open(s->cfg->agent.state_dir, STATEFILE_SENDER, err, sizeof(err));
	if (s->sf == NULL) {
		log_warn("%s; `logmeter status` will not show the sender's state", err);
		return;
	}
	publish_state(s, clock_mono_ms(), 1);
}

int sender_rate_of(const struct config *cfg, double *rate, char *why, size_t whylen)
{
	char key[STRIPE_KEY_MAX], err[512] = "", how[128];

	*rate = 0;
	if (cfg->stripe.max_requests_per_second > 0) {
		*rate = (double)cfg->stripe.max_requests_per_second;
		snprintf(why, whylen, "max_requests_per_second");
		return 0;
	}
	if (stripe_key_load(cfg, key, sizeof(key), err, sizeof(err)) != 0) {
		snprintf(why, whylen, "auto: set by the key's kind, which cannot be read here (%s)",
		         err);
		return -1;
	}
	*rate = (double)(cfg->stripe.api == CONFIG_API_V2
	                     ? stripe_v2_default_rate(key, cfg->stripe.account, how, sizeof(how))
	                     : stripe_default_rate(key, cfg->stripe.account, how, sizeof(how)));
	explicit_bzero(key, sizeof(key));
	snprintf(why, whylen, "auto: %s", how);
	return 0;
}

void sender_rate_print(FILE *out, const struct config *cfg)
{
	char why[700];
	double rate;

	if (sender_rate_of(cfg, &rate, why, sizeof(why)) != 0)
		fprintf(out, "rate: %s\n", why);
	else
		fprintf(out, "rate: up to %.0f requests/s (%s)\n", rate, why);
}

/* The keys of the sender's region of the state file (publish_state writes them). */
static const struct {
	const char *key;
	char type; /* 's' text of `size` bytes, 'i' integer, 'd' decimal, 'a' integers */
	size_t off, size;
} status_fields[] = {
#define SF(k, t, f)                                                                                \
	{                                                                                          \
#k, t, offsetof(struct sender_status, f), sizeof(((struct sender_status *)0)->f)   \
	}
    SF(pid, 'i', pid),
    SF(sender, 's', state),
    SF(detail, 's', detail),
    SF(held_rules, 's', held_rules),
    SF(held_why, 's', held_why),
    SF(rate_why, 's', rate_why),
    SF(since, 'i', since),
    SF(pause_until, 'i', pause_until),
    SF(rate_cut, 'i', rate_cut),
    SF(hold_until, 'i', hold_until),
    SF(rate_max, 'd', rate_max),
    SF(rate, 'd', rate),
    SF(in_flight, 'i', in_flight),
    SF(in_flight_events, 'i', in_flight_events),
    SF(written, 'i', written),
    SF(retrying, 'i', retrying),
    SF(held, 'i', held),
    SF(queued, 'i', queued),
    SF(stripe_behind, 'i', stripe_behind),
    SF(stripe_behind_from, 's', stripe_behind_from),
    SF(started, 'i', started),
    SF(outcomes, 'a', outcomes),
    SF(duration_counts, 'a', duration_counts),
    SF(duration_sum, 'd', duration_sum),
#undef SF
};

static void status_line(const char *key, const char *v, void *ud)
{
	char *base = ud;

	for (size_t i = 0; i < sizeof(status_fields) / sizeof(status_fields[0]); i++) {
		void *field = base + status_fields[i].off;

		if (strcmp(key, status_fields[i].key) != 0)
			continue;
		if (status_fields[i].type == 's') {
			snprintf(field, status_fields[i].size, "%s", v);
		} else if (status_fields[i].type == 'd') {
			*(double *)field = strtod(v, NULL);
		} else if (status_fields[i].type == 'a') {
			long long *a = field;
			char *end;

			for (size_t k = 0; k < status_fields[i].size / sizeof(*a); k++, v = end)
				a[k] = strtoll(v, &end, 10);
		} else {
			*(long long *)field = strtoll(v, NULL, 10);
		}
		return;
	}
}

int sender_status_read(const char *state_dir, struct sender_status *out, char *err, size_t errlen)
{
	char buf[STATEFILE_REGION_BYTES + 1];
	int rc;

	memset(out, 0, sizeof(*out));
	rc = statefile_read(state_dir, STATEFILE_SENDER, buf, sizeof(buf), err, errlen);
	if (rc <= 0)
		return rc;
	statefile_parse(buf, status_line, out);
	out->found = 1;
	out->running = strcmp(out->state, "stopped") != 0 && statefile_pid_alive((long)out->pid);
	return 0;
}

/* ---- public ---- */

struct sender *sender_new(const struct config *cfg, char *err, size_t errlen)
{
	struct sender *s;
	long conc;

	if (cfg == NULL) {
		err_set(err, errlen, "sender: no configuration");
		return NULL;
	}
	if (config_check_api_base(cfg->stripe.api_base, err, errlen) != 0 ||
	    (cfg->stripe.api == CONFIG_API_V2 &&
	     config_check_api_base(cfg->stripe.meter_events_base, err, errlen) != 0))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->rules_cfg = cfg;
	s->v2 = cfg->stripe.api == CONFIG_API_V2;
	/* The stream has no per-pair rule: a pair's share would only make batches smaller. */
	s->pair_max = s->v2 ? SENDER_QUEUE_MAX : SENDER_PAIR_MAX;
	s->started = (int64_t)time(NULL);
	pthread_mutex_init(&s->stats_lock, NULL);
	pthread_mutex_init(&s->rules_lock, NULL);
	pthread_cond_init(&s->rules_idle, NULL);
	atomic_init(&s->rules_pending, 0);
	atomic_init(&s->stop, 0);
	atomic_init(&s->notify, 0);
	atomic_init(&s->grace_ms, 0);
	ratelog_init(&s->retry_log, LOG_LVL_WARN, "failed attempts");
	ratelog_init(&s->dead_log, LOG_LVL_WARN, "dead letters");
	ratelog_init(&s->spool_log, LOG_LVL_ERR, "spool errors");
	ratelog_init(&s->rate_log, LOG_LVL_WARN, "rate limits");
	ratelog_init(&s->hold_log, LOG_LVL_WARN, "events held");
	ratelog_init(&s->unsure_log, LOG_LVL_ERR, "unsure events");
	if (getrandom(&s->rng, sizeof(s->rng), GRND_NONBLOCK) != (ssize_t)sizeof(s->rng))
		s->rng = (uint64_t)clock_mono_ms() ^ (uint64_t)time(NULL) << 20;
	if (s->rng == 0)
		s->rng = 0x9e3779b97f4a7c15ULL;

	if (stripe_key_load(cfg, s->key, sizeof(s->key), err, errlen) != 0)
		goto fail;
	rate_init(s);
	log_info("sending at up to %.0f requests per second (%s)", s->rate_max, s->rate_why);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		err_set(err, errlen, "curl_global_init failed");
		goto fail;
	}
	s->curl_inited = 1;
	if (s->v2 && (s->session = session_new(cfg)) == NULL) {
		err_set(err, errlen, "out of memory");
		goto fail;
	}
	s->queue = calloc(SENDER_QUEUE_MAX, sizeof(*s->queue));
	s->loadbuf = calloc(SENDER_LOAD_CHUNK, sizeof(*s->loadbuf));
	s->spare_items = calloc(SENDER_SPARE_ITEMS, sizeof(*s->spare_items));
	s->loading = calloc(SENDER_QUEUE_MAX, sizeof(*s->loading));
	s->loading_events = calloc(SENDER_QUEUE_MAX, sizeof(*s->loading_events));
	if (s->queue == NULL || s->loadbuf == NULL || s->spare_items == NULL ||
	    s->loading == NULL || s->loading_events == NULL) {
		err_set(err, errlen, "out of memory");
		goto fail;
	}
	s->multi = curl_multi_init();
	if (s->multi == NULL) {
		err_set(err, errlen, "curl_multi_init failed");
		goto fail;
	}
	conc = (long)cfg->stripe.max_concurrency;
	curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conc);
	curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, conc);
	s->sp = spool_open(cfg->agent.state_dir, SPOOL_READ_WRITE, err, errlen);
	if (s->sp == NULL || spool_set_durability(s->sp, cfg->agent.durability, err, errlen) < 0 ||
	    spool_clock_seen(s->sp, &s->clock_noted, err, errlen) < 0)
		goto fail;
	clock_saw(s, s->clock_noted, "the latest time this spool has seen");
	steady_advance(&s->kept, s->clock_noted);
	s->tokens = 1.0;
	s->tokens_at = clock_mono_ms();
	return s;
fail:
	sender_free(s);
	return NULL;
}

void sender_free(struct sender *s)
{
	if (s == NULL)
		return;
	if (s->sf != NULL) {
		s->stopped = 1;
		publish_state(s, clock_mono_ms(), 1);
		statefile_free(s->sf);
	}
	if (s->multi != NULL)
		abandon_inflight(s, 0);
	spares_drop(s);
	tdestroy(s->inflight_keys, key_nofree);
	if (s->queue != NULL) {
		for (size_t i = 0; i < s->n; i++)
			free(s->queue[i]);
	}
	free(s->queue);
	if (s->spare_items != NULL) {
		for (size_t i = 0; i < s->n_spare_items; i++)
			free(s->spare_items[i]);
	}
	free(s->spare_items);
	pairs_clear(s);
	free(s->over);
	free(s->loadbuf);
	free(s->loading);
	free(s->loading_events);
	free(s->marks);
	free(s->errors);
	if (s->multi != NULL)
		curl_multi_cleanup(s->multi);
	spool_free(s->sp);
	session_free(s->session);
	if (s->curl_inited)
		curl_global_cleanup();
	explicit_bzero(s->key, sizeof(s->key));
	pthread_mutex_destroy(&s->stats_lock);
	pthread_mutex_destroy(&s->rules_lock);
	pthread_cond_destroy(&s->rules_idle);
	free(s);
}

/* Closes the aggregation windows whose end plus grace has passed (spool_windows_close): each
 * becomes one pending meter event, which the next load finds. The sender does it because it
 * is what sends them, and its loop turns at least every second; the ingest half waits on
 * inotify. */
static void windows_tick(struct sender *s, int64_t now)
{
	char err[512] = "", msg[600];
	int64_t wall = (int64_t)time(NULL), closed = 0, next = 0;

	if (now < s->next_window_check)
		return;
	s->next_window_check = now + SENDER_WINDOW_CHECK_MS;
	if (spool_windows_close(s->sp, wall, &closed, err, sizeof(err)) != 0 ||
	    spool_windows_next_close(s->sp, &next, err, sizeof(err)) != 0) {
		err_set(msg, sizeof(msg), "cannot close aggregation windows: %s; will retry", err);
		ratelog_add(&s->spool_log, now, msg);
		/* --once must not end as if nothing were left: windows_open still says what the
		 * last check found (none, at the first), not the windows due now. */
		if (s->once && !s->fatal) {
			s->fatal = 1;
			err_set(s->fatal_err, sizeof(s->fatal_err),
			        "spool: cannot close aggregation windows: %s", err);
		}
		return;
	}
	if (closed > 0) {
		stats_add(s, &s->stats.windows_closed, closed);
		log_debug("closed %lld aggregation windows into meter events", (long long)closed);
		atomic_store(&s->notify, 1);
	}
	s->windows_open = next > 0;
	s->windows_next = next;
	if (next > 0 && next <= wall)
		s->next_window_check = now; /* more are due than one transaction closes */
	else if (next > 0 && (next - wall) * 1000 < SENDER_WINDOW_CHECK_MS)
		s->next_window_check = now + (next - wall) * 1000;
}

/* --once waits for the windows that close within the longest `aggregate` + `aggregate_grace`
 * of its start: the windows of lines stamped ahead of the clock close later (up to a day).
 * Returns that time, in seconds since the epoch. */
static int64_t once_wait_until(const struct config *cfg, int64_t wall)
{
	int64_t longest = 0;

	for (size_t i = 0; i < cfg->n_rules; i++) {
		const struct config_rule *r = &cfg->rules[i];

		if (r->aggregate_s > 0 && r->aggregate_s + r->aggregate_grace_s > longest)
			longest = r->aggregate_s + r->aggregate_grace_s;
	}
	return wall + longest + 1; /* +1: a window closes once its second has passed */
}

/* --once ends with usage it cannot send now: says how much, and why, and returns 3. */
static int once_unsent(struct sender *s, char *err, size_t errlen)
{
	char e[512] = "", when[32] = "";
	int64_t windows = 0, lines = 0, last = 0, behind;
	size_t held = 0;

	for (size_t i = 0; i < s->n; i++)
		held += s->queue[i] != NULL;
	if (s->held_skipped > 0)
		log_warn(
		    "run --once: %lld events of rules whose meters would not bill them are held "
		    "(%s); they stay pending and a later run sends them once the meters are "
		    "right",
		    (long long)s->held_skipped, s->held_why);
	if (spool_windows_open_count(s->sp, &windows, &lines, &last, e, sizeof(e)) != 0)
		log_err("%s", e);
	if (last > 0) {
		time_t t = (time_t)last;
		struct tm tm;

		if (gmtime_r(&t, &tm) != NULL)
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	behind =
	    -s->stripe_offset > s->stripe_behind_seen ? -s->stripe_offset : s->stripe_behind_seen;
	if (held > 0 && behind > 0)
		log_warn(
		    "run --once: %zu events are held (their timestamps are more than 5 minutes "
		    "ahead of Stripe's clock); Stripe's clock is at least %lld s behind this "
		    "host's (%s); they stay pending and a later run sends them",
		    held, (long long)behind,
		    -s->stripe_offset > s->stripe_behind_seen
		        ? "a meter event session's created time"
		        : "Stripe's answers: timestamp too far in the future");
	else if (held > 0)
		log_warn(
		    "run --once: %zu events are held (their timestamps are more than 5 minutes "
		    "ahead of this host's clock); they stay pending and a later run sends them",
		    held);
	if (windows > 0)
		log_warn(
		    "run --once: %lld aggregation windows (%lld lines) stay open, the last until "
		    "%s (lines stamped ahead of this host's clock); a later run closes and sends "
		    "them",
		    (long long)windows, (long long)lines, when);
	err_set(err, errlen,
	        "usage left unsent: %zu events held for the clock, %lld for their meters, %lld "
	        "windows open",
	        held, (long long)s->held_skipped, (long long)windows);
	return 3;
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
		/* Starting over from the queue's start also finds events another process
		 * (replay) made pending again; with an empty queue it cannot load one twice. */
		if (once || notified || now >= s->next_idle_reload) {
			s->next_idle_reload = now + SENDER_IDLE_RELOAD_MS;
			rc = queue_load(s, 1, now, err, sizeof(err));
		}
	} else if (s->n < SENDER_QUEUE_MAX &&
	           (notified || now >= s->next_reload ||
	            (s->more && SENDER_QUEUE_MAX - s->n >= SENDER_LOAD_MIN))) {
		rc = queue_load(s, 0, now, err, sizeof(err));
	} else if (notified) {
		s->more = 1;
	}
	if (rc == 0 && s->n_over > 0)
		rc = pairs_load(s, err, sizeof(err));
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
	int stopping = 0, unsent = 0;
	int64_t stop_deadline = 0;
	int64_t now = clock_mono_ms();
	int rc = 0;

	if (s == NULL) {
		err_set(err, errlen, "sender_run: no sender");
		return -1;
	}
	s->once = once;
	s->once_until = once_wait_until(s->cfg, (int64_t)time(NULL));
	check_meters(s, s->cfg);
	for (;;) {
		int64_t wake = INT64_MAX, timeout;
		int running = 0, notified;
		CURLMcode mc;

		health_beat(HEALTH_SENDER); /* each turn, at least every SENDER_POLL_MAX_MS */
		mc = curl_multi_perform(s->multi, &running);
		if (mc != CURLM_OK)
			log_err("curl_multi_perform: %s", curl_multi_strerror(mc));
		/* After the transfers: an answer curl_multi_perform read is of now, and its
		 * Retry-After counts from it, not from before the request was even sent (a loaded
		 * machine showed it: test_sender's 429 retried 1 s after the turn began). */
		now = clock_mono_ms();
		collect_done(s, now);
		if (s->n_marks > 0)
			marks_apply(s, now, 0);
		clock_note(s, now, 0);

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
		if (s->auth_failed || s->answer_failed || s->fatal) {
			/* once-mode: start nothing more; end when the last answers are in. */
			if (s->inflight == 0)
				break;
			goto poll;
		}

		meters_recheck_due(s, now);
		clock_recheck_due(s, now);
		recheck_rules(s);
		windows_tick(s, now);
		notified = atomic_exchange(&s->notify, 0);
		maybe_load(s, once, notified, now);
		if (s->fatal)
			continue;
		if (once && s->n == 0 && s->inflight == 0 && s->n_marks == 0 && !s->windows_open &&
		    s->held_skipped == 0)
			break; /* queue_load from 0 just found nothing pending, no window is open */

		if (s->paused && now >= s->pause_until)
			pause_end(s, now);
		if (!s->paused)
			wake = s->v2 ? start_batches(s, now) : start_requests(s, now);
		else
			wake = s->pause_until;
		/* --once with nothing left to send records what it has at once. */
		if (s->n_marks > 0)
			marks_apply(s, now, once && s->n == 0 && s->inflight == 0);

		/* A full queue loads nothing (maybe_load) until an item finishes, which an answer
		 * or a retry's time wakes the loop for: its reload time, past while Stripe is
		 * unreachable, would make the loop spin over the whole queue every millisecond. */
		if (s->n < SENDER_QUEUE_MAX)
			wake = min64(wake, s->next_reload);
		wake = min64(wake, s->next_window_check);
		if (s->n == 0 && s->inflight == 0)
			wake = min64(wake, s->next_idle_reload);
		wake = min64(wake, ratelogs_flush(s, now, 0));
		wake = min64(wake, publish_state(s, now, 0));
		if (once && s->inflight == 0 && s->n_marks == 0 && !s->more &&
		    (only_held(s) || (s->n == 0 && (s->held_skipped > 0 || s->windows_open))) &&
		    (!s->windows_open || s->windows_next > s->once_until)) {
			/* --once delivers what can be delivered now: a held event, or a window of
			 * lines stamped ahead, waits for the clock, maybe for hours, and a later
			 * run sends it. Not a success: the exit status says usage is unsent. */
			unsent = 1;
			break;
		}
	poll:
		if (s->n_marks > 0)
			wake = min64(wake, s->next_mark_try > now ? s->next_mark_try
			                   : s->marks_now         ? now
			                                          : s->marks_due);
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

	abandon_inflight(s, 1);
	queue_compact(s);
	now = clock_mono_ms();
	ratelogs_flush(s, now, 1);
	if (s->n_marks > 0) {
		s->next_mark_try = 0;
		if (marks_apply(s, now, 1) != 0 && !stopping && !s->fatal) {
			/* Those events are sent again next time; Stripe answers "already exists".
			 */
			s->fatal = 1;
			if (s->fatal_err[0] == '\0')
				err_set(s->fatal_err, sizeof(s->fatal_err),
				        "spool: cannot record delivery outcomes");
		}
	}
	clock_note(s, now, 1);
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
	} else if (s->answer_failed) {
		err_set(err, errlen, "%s; the events stay pending", s->pause_reason);
		rc = 2;
	} else if (unsent) {
		rc = once_unsent(s, err, errlen);
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

int sender_key_is(const struct sender *s, const char *key)
{
	return s != NULL && key != NULL && strcmp(s->key, key) == 0;
}

void sender_set_rules(struct sender *s, const struct config *cfg, int check)
{
	if (s == NULL || cfg == NULL)
		return;
	pthread_mutex_lock(&s->rules_lock);
	/* A check under way reads the rules it took: they must outlive it. */
	while (s->rules_checking)
		pthread_cond_wait(&s->rules_idle, &s->rules_lock);
	s->rules_cfg = cfg;
	if (check)
		s->rules_check = 1;
	atomic_store(&s->rules_pending, s->rules_check);
	pthread_mutex_unlock(&s->rules_lock);
	if (check)
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
