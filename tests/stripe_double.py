#!/usr/bin/python3
"""A Stripe double for logmeter's integration tests: POST /v1/billing/meter_events and
GET /v1/billing/meters as Stripe documents them (docs/stripe-contract.md gives the sources), on
127.0.0.1 only, with injectable faults.

Python 3.11 standard library only.

Usage:
  stripe_double.py --api-key KEY [--port N] [--port-file PATH]
                   [--meter NAME[:CUST_KEY[:VALUE_KEY[:FORMULA[:STATUS]]]]]...
                   [--customer CUS]... [--customers-file PATH]
                   [--rate-limit N|auto] [--idempotency-ttl S] [--identifier-ttl S]
                   [--meters-page-max N] [--meters-stuck N[:first]] [--timestamp-skew S]
                   [--record PATH] [--log PATH]
                   [--faults SPEC] [--session-faults SPEC] [--session-ttl S]
                   [--session-created-skew S] [--session-expired-status N]
                   [--stream-duplicates drop|refuse]

  --meter          one billing meter: its event_name, the payload keys of the customer (default
                   stripe_customer_id) and of the value (default value), the aggregation formula
                   (sum, count or last; default sum) and the status (active or inactive; default
                   active). Empty fields take the default ("m::v" = customer key default).
  --customer, --customers-file (one id a line; blank lines and lines starting with # ignored):
                   the customers that exist. With none given every customer exists. With some, an
                   event for another customer is still accepted (200, recorded), as at Stripe, and
                   an asynchronous error report meter_event_customer_not_found is made of it.
  --rate-limit     0 (default): no limit. N (a number > 0): a token bucket over meter-event
                   requests, N a second, holding max(1, N) tokens, full at start. auto: by the
                   key, as Stripe documents for meter events: sk_live_/rk_live_ 1000, others 25
                   (test mode counts against the basic limit).
  --idempotency-ttl, --identifier-ttl  seconds (default 86400 each, Stripe's "at least 24 hours")
                   after which a saved Idempotency-Key answer, or an accepted identifier, is
                   forgotten: a request with it is then processed afresh (an identifier is accepted
                   and recorded again).
  --meters-page-max  caps the page size of GET /v1/billing/meters (default 100), so that tests
                   can force a client to paginate.
  --meters-stuck N[:first]  a hostile list (not Stripe's behaviour): the N pages of
                   GET /v1/billing/meters after the first are {data: [], has_more: true}, a list
                   that says there is more and gives no meter to go on from; with ":first", they
                   are the first page again, with has_more (a cache that ignores starting_after);
                   the page after them ends it (data [], has_more false). A client that follows
                   has_more without asking for progress asks for all N (stats meter_lists).
  --timestamp-skew S  Stripe's clock is real time plus S seconds (default 0): a negative S is a
                   Stripe clock behind the client's, a positive one a clock ahead. Event
                   timestamps are validated by it (35 days back, 5 minutes ahead; v1 at once, the
                   stream's later), and a meter event session's created and expires_at and every
                   answer's Date header are on it.

  --session-ttl S  seconds a meter event session's authentication token is valid (default 900,
                   Stripe's 15 minutes); tests make it short to make sessions expire.
  --session-created-skew S  a meter event session's created and expires_at are S seconds off
                   Stripe's clock (default 0), as in a wrong answer (a proxy's, a bug's), while
                   the Date header and timestamp validation stay on Stripe's clock.
  --session-expired-status N  the HTTP status (400-499) of the stream's answer to an expired
                   session's token (default 401, as Stripe's API reference gives it; the SDKs
                   read the error's type whatever the status, and stripe-ruby's tests answer it
                   with a 400).
  --stream-duplicates drop|refuse  what the stream does with a request that holds an identifier
                   it accepted within --identifier-ttl: drop that event silently and take the
                   others (drop, the default: the stream documents no duplicate answer), or
                   refuse the whole request, taking none of its events, with 400 {"error":
                   {"code": "duplicate_meter_event", "message": ...}} (refuse: the error Stripe's
                   OpenAPI spec defines as v2.error.duplicate_meter_event, not documented for
                   the stream; stats duplicates counts the identifiers).

Time: the double has its own clock for the TTLs, real time plus an offset that POST /_double/clock
moves forward. Saved answers, accepted identifiers (the record's accepted time) and error reports
are stamped with it. Timestamp validation (35 days, 5 minutes) uses real time plus
--timestamp-skew.

Meter events (POST /v1/billing/meter_events), checked in this order:
  1. a fault token is taken (queue first, then random mode; see FAULTS); the edge faults are
     answered here, before anything else;
  2. Authorization must be exactly "Bearer <api-key>", else 401 (not saved);
  3. the rate limiter (--rate-limit): over the limit, 429 rate_limit with
     Stripe-Rate-Limited-Reason: global-rate (test keys: meter events count against the basic
     limit) or endpoint-rate (live keys: the endpoint's own limit); not saved, as Stripe's
     limiter runs before its idempotency layer;
  4. Idempotency-Key (1-255 chars, else 400): a saved answer younger than --idempotency-ttl is
     replayed (same status, body and headers, plus "Idempotent-Replayed: true") if the parameters
     are the same, else 400 idempotency_error; a key whose first request is still being
     processed gets 409 idempotency_error; an older saved answer is forgotten and the request
     processed afresh;
  5. a "slow:MS" fault sleeps here (the key counts as in progress meanwhile);
  6. Content-Type and parameters are validated: 400 invalid_request_error with "param" (not saved:
     at Stripe the endpoint has not begun executing). An event_name without an active meter
     (unknown, or --meter ...:inactive) is 400 'No active meter found for event name "<name>".';
  7. the endpoint begins executing. Fault 500 fails here: 500 api_error with
     "Stripe-Should-Retry: false", nothing recorded, SAVED under the key;
  8. an identifier accepted less than --identifier-ttl ago gets 400 invalid_request_error
     "An event already exists with identifier <id>." and "Stripe-Should-Retry: false"; otherwise
     the event is accepted: 200 with the billing.meter_event (livemode true for sk_live_/rk_live_
     keys) and recorded; an unknown customer (see --customer) also makes an error report;
  9. fault 500rec: the answer of 8 is replaced by the 500 of 7 (the event stays recorded) and that
     500 is saved under the key instead.
  Saved under an Idempotency-Key: the 200, the 400 "already exists" and the 500s of faults 500 and
  500rec. Not saved (a retry with the key is processed afresh): edge faults, 401s, rate limiting,
  validation 400s and 409s.

FAULTS: a FIFO queue of comma-separated tokens KIND[*COUNT], one token consumed per meter-event
  request (control endpoints and GET requests are never faulted). A token is consumed even when
  the request does not reach the step where it acts (e.g. 500 on a replayed key).
  Edge faults, answered before authentication and the idempotency layer, never saved:
    502 503 504      that status with an api_error body (a load balancer's answer)
    429              429 rate_limit with Stripe-Rate-Limited-Reason: global-rate
    429lock          429 lock_timeout with Stripe-Should-Retry: true
    429ra:S          429 rate_limit with Stripe-Rate-Limited-Reason: global-rate and Retry-After: S
                     (S whole seconds). Stripe itself does not send Retry-After (see the contract);
                     this is what a proxy or a future API could send
    400rl            400 invalid_request_error with code rate_limit (the older form of Stripe's
                     rate-limit answer, which the SDKs still classify as a rate-limit error)
    409              409 idempotency_error (concurrent request)
    302              302 Found to https://portal.invalid/login with an HTML body (a misconfigured
                     proxy); .invalid never resolves, so a client that follows it fails
    200html          200 with a text/html body (a captive portal)
    drop             read the request, close the connection without answering (FIN)
    reset            read the request, close the connection with a TCP RST (SO_LINGER on, timeout
                     0): the client sees "connection reset by peer"
  Faults inside the endpoint:
    500              see step 7: nothing recorded, the 500 saved under the key
    500rec           see step 9: the event processed (accepted or found a duplicate), a 500
                     answered and saved under the key
    slow:MS          sleep MS milliseconds at step 5, then handle normally
  Faults after the endpoint (the event is processed and its answer saved as usual):
    drop_after       close without answering (FIN)
    reset_after      close with a TCP RST
    cut_after        send the status line, headers and half of the body, then close (unlike a
                     connection closed before any byte, libcurl cannot transparently re-send it)
    ok               no fault
  When the queue is empty, random mode (POST /_double/faults {"rate": 0.3, "kinds": [...],
  "seed": 1}) picks a kind from "kinds" with probability "rate".

Meter event streams (API v2; docs/stripe-contract.md, section 14):
  POST /v2/billing/meter_event_session  no parameters, checked in this order:
    1. a fault token is taken from the session's own queue (SESSION FAULTS); edge faults are
       answered here (429 and 429ra:S in the v2 shape, as the stream's);
    2. Bearer <api-key>, else 401 in the v2 shape (the operation's errors are v2.error): {"error":
       {"type": "invalid_request_error", "code": "invalid_api_key", message}}, the message the
       meter-event 401's ("Invalid API Key provided: sk_test_****1234"); the code is the
       double's own (Stripe documents none for a refused key), and the type one the SDKs do not
       map to another error, so that they take the 401 for a refused key (stats
       session_unauthorized);
    3. slow:MS sleeps; fault 500: 500 {"error": {"type": "api_error", "code":
       "internal_error", message}}, no session made;
    4. the session is made: 200 {id, object: "v2.billing.meter_event_session",
       authentication_token, created, expires_at (created + --session-ttl; RFC 3339 with
       milliseconds), livemode}. Fault 500rec: the session is made (its token works) and the
       500 of step 3 answered instead; the _after faults as for meter events (the session is
       made, the answer lost).
  POST /v2/billing/meter_event_stream, checked in this order:
    1. a fault token is taken (the same queue as meter events); edge faults are answered here
       (429 in the v2 shape: type rate_limit);
    2. Authorization "Bearer <token>" of a session: an unknown token is 401 in the v2 shape
       (the operation's errors are v2.error: code and message required, type optional):
       {"error": {"type": "invalid_request_error", "code": "invalid_authentication_token",
       message}} (the code is the double's own: Stripe documents none for it); fault 401token
       forgets the request's session first, so that it is answered so (a token Stripe no
       longer knows); fault 401v1 forgets it too and answers v1's 401 instead, {"error":
       {"type": "invalid_request_error", message}} without a code (not what Stripe documents
       for the stream: an answer from an authentication layer shared with API v1);
       a token past its expires_at (the double's clock) is 401 {"error": {"type":
       "temporary_session_expired", "code": "billing_meter_event_session_expired", message,
       doc_url}} (the OpenAPI schema v2.error.billing_meter_event_session_expired; the status
       is --session-expired-status); fault 401session answers the same and ends that session;
    3. the rate limiter (--rate-limit): a test key's stream request takes one token of the
       basic bucket (test-mode stream requests count against the basic limit); with a live
       key and --rate-limit auto, a bucket of 10,000 events a second takes one token per event;
       over it: 429 {"error": {"type": "rate_limit", "code": "account_rate_limit_exceeded",
       message}};
    4. the body is validated synchronously (Content-Type application/json, a JSON object with
       exactly "events", a list of 1 to 100 objects, each with event_name (string, at most 100
       characters), payload (an object of strings), and optionally identifier (string, at most
       100) and timestamp (an RFC 3339 date-time string); payload values at most 100
       characters, v1's limit, assumed): otherwise 400 {"error": {"code":
       "invalid_fields", "message": ...}} (v2 errors carry a code and may lack a type:
       stripe-node's generateV2Error; the message is the double's own) and none of the
       request's events is taken; fault 400fields refuses a valid request so;
    5. fault 500: 500 {"error": {"type": "api_error", "code": "internal_error", message}},
       nothing taken; slow:MS sleeps first;
    6. each event: an identifier accepted less than --identifier-ttl ago is dropped silently
       (stats duplicates; Stripe deduplicates the stream and says nothing); else what Stripe
       validates asynchronously is checked (an active meter for event_name, its customer key
       in the payload, a number of at most 15 significant digits under its value key, the
       timestamp within 35 days back and 5 minutes ahead): a failure makes an error report
       (no_meter, meter_event_no_customer_defined, meter_event_invalid_value,
       meter_event_value_too_many_digits, timestamp_too_far_in_past, timestamp_in_future) and
       the event is not billed; otherwise it is accepted and recorded (--record) as a v1 event
       is, with an empty idempotency key;
    7. 200 {} (fault 500rec: the events taken, then the 500 of step 5); the _after faults as for
       meter events.
  Stats: stream_requests, stream_ok (200 answers), stream_events (events in 200 answers),
  sessions, sessions_expired (401s for expired sessions), invalid_fields, unknown_tokens (401s
  for unknown tokens, also counted in unauthorized), session_requests, session_unauthorized
  (401s to session requests for a key not the double's), session_faults ({kind: n}: the
  session's faults, not counted in faults).

SESSION FAULTS: the session request has a queue of its own (--session-faults, or
  POST /_double/faults {"session_spec": ...}), one token consumed per session request, no random
  mode. The client asks for a session when it needs one, in between its stream requests, so one
  queue for both would give a token to whichever came first. The tokens are those of FAULTS but
  the stream's own (401session, 401token, 401v1, 400fields: refused): edge faults (502 503 504,
  429, 429ra:S, 429lock, 400rl, 409, 302, 200html, drop, reset), 500, 500rec, slow:MS, drop_after,
  reset_after, cut_after, ok, with the meanings given above. Stripe documents the session's
  errors as the stream's (v2.error), and rate limits, 5xx and broken connections can meet any
  request (docs/stripe-contract.md, section 14).

Other API endpoints (Bearer auth as above, else 401: GET /v1/billing/meters in the v1 shape of
the meter-event 401, GET /v2/core/events in the v2 shape of the session's; never faulted, not
rate limited):
  GET /v1/billing/meters  Stripe's list object {object: "list", url, has_more, data} of
        billing.meter objects (id "mtr_test_" or, for live keys, "mtr_" + 32 hex digits of the
        name's SHA-256, stable across restarts; created, customer_mapping {event_payload_key,
        type: by_id}, default_aggregation {formula}, display_name, event_name,
        event_time_window: null, livemode, status, status_transitions {deactivated_at},
        updated, value_settings {event_payload_key}), in --meter order (newest first: each meter
        is one second older than the one before). Query: limit (1-100, default 10, capped by
        --meters-page-max), starting_after or ending_before (a meter id; not both), status
        (active|inactive), expand[] (ignored). Bad or unknown parameters: 400 with "param".
  GET /v2/core/events  the error reports as v2.core.event objects of type
        v1.billing.meter.error_report_triggered (one event per report; Stripe groups the errors of
        a time window into one event), newest first, in the v2 list shape {data, next_page_url,
        previous_page_url}. Query: limit (1-100, default 20), page (the token in next_page_url),
        object_id (a meter id), types / types[] (event types).

Control endpoints (no auth, never faulted, not counted in the stats):
  POST /_double/faults  JSON {"clear": true, "spec": "...", "session_spec": "...", "rate": R,
                        "kinds": [...], "seed": S, "hold_meters": B}: clear both queues and
                        random mode (if "clear"), append "spec" to the queue and "session_spec" to
                        the session's queue, set random mode (if "rate"; rate 0 turns it off);
                        "hold_meters": true makes GET /v1/billing/meters wait (after
                        authentication) until "hold_meters": false, so that a test can act while
                        a client waits for its meters. Answers the fault state (with
                        "hold_meters" and "meters_waiting", the requests waiting).
  GET  /_double/faults  the fault state.
  POST /_double/clock   JSON {"advance": SECONDS} (>= 0): moves the double's clock forward, for the
                        TTLs only; {"skew": S} sets --timestamp-skew from now on (Stripe's clock
                        set right, or wrong, while a client runs). Answers {"offset": total
                        seconds, "now": the double's time}.
  GET  /_double/clock   the same.
  GET  /_double/stats   {requests, accepted, duplicates, replays, rejected, unauthorized,
                        idempotency_errors, faults: {kind: n}, concurrency_violations, in_flight,
                        max_in_flight, by_status: {"200": n, ..., "dropped": n, "reset": n},
                        not_found, saved_errors, error_replays, rate_limited, error_reports,
                        forgotten_keys, forgotten_identifiers, meter_lists, event_lists,
                        preloaded, preload_expired, rate_limit, fault_queue (alias faults_pending),
                        session_fault_queue, and the stream's and sessions' (above)}
                        requests: meter-event requests; accepted: events accepted (an identifier
                        accepted again after its TTL counts again); duplicates: "already exists"
                        answers; replays: answers replayed from an Idempotency-Key (of which
                        error_replays replayed a saved 500); rejected: 400s other than duplicates
                        (validation and idempotency mismatch; not injected faults);
                        idempotency_errors: 400 mismatches and 409 concurrent-key answers (not
                        injected 409s); concurrency_violations: requests that started while
                        another for the same (customer, event_name) was in flight; saved_errors:
                        500s saved under a key; rate_limited: requests refused by --rate-limit;
                        error_reports: reports made; forgotten_keys / forgotten_identifiers: saved
                        answers and identifiers found past their TTL and forgotten (when a request
                        met them); meter_lists / event_lists: authenticated GET /v1/billing/meters
                        and GET /v2/core/events requests; preloaded: identifiers loaded from the
                        record file at start; preload_expired: record lines past the identifier
                        TTL at start (not loaded); rate_limit: the limit in force (0: none).
  GET  /_double/events  JSON list of the events accepted by this process.
  GET  /_double/error_reports  JSON list of the error reports: {id, code, message, identifier,
                        event_name, meter, customer, time (the double's clock), idempotency_key}.
  POST /_double/reset   clears the in-memory fault queues, random mode, the rate limiter's bucket and
                        the stats. It keeps the accepted identifiers, the events list, the error
                        reports, the idempotency memory, the clock and the record file: the double
                        still rejects duplicates after a reset.

Files:
  --record: one line per ACCEPTED event, flushed, tab-separated: identifier, event_name, customer
    (the payload's customer-key value), value, timestamp, idempotency key (empty if none), time
    accepted (the double's clock, seconds, 3 decimals). Tabs, newlines, CRs and backslashes in
    fields are written as \\t \\n \\r \\\\. At start the identifiers of an existing record file
    are loaded, unless their accepted time is --identifier-ttl or more in the past, so a
    restarted double still rejects duplicates (its idempotency memory is lost, as allowed).
  --log: one line per request (except the read-only GET /_double/*), tab-separated: method, path,
    status ("none" when no answer was sent), fault applied ("-" if none; the token, e.g. 429ra:5),
    idempotency key ("-"), identifier ("-"), customer ("-"), event_name ("-"), notes
    (comma-separated: replay, duplicate, concurrent, saved_error, rate_limited, forgotten_key,
    forgotten_identifier, unknown_customer, ...; "-"), unix time.

Exit: 0 after SIGTERM/SIGINT, 2 on bad arguments, 1 if the port cannot be bound.
"""

import argparse
import errno
import hashlib
import http.server
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid

METER_EVENTS_PATH = "/v1/billing/meter_events"
SESSION_PATH = "/v2/billing/meter_event_session"
STREAM_PATH = "/v2/billing/meter_event_stream"
STREAM_MAX_EVENTS = 100
DEFAULT_SESSION_TTL = 900
STREAM_RATE_LIVE_EVENTS = 10000.0
SESSION_EXPIRED_MESSAGE = "The temporary session token has expired."
METERS_PATH = "/v1/billing/meters"
V2_EVENTS_PATH = "/v2/core/events"
MAX_BODY = 1 << 20
MAX_IDEMPOTENCY_KEY = 255
MAX_STRING = 100
PAST_WINDOW_S = 35 * 86400
FUTURE_WINDOW_S = 300
VALUE_RE = re.compile(r"^-?\d+(\.\d+)?$")
INT_RE = re.compile(r"^-?\d+$")
MAX_SIGNIFICANT_DIGITS = 15
DEFAULT_TTL = 86400
LIVE_KEY_RE = re.compile(r"^(sk|rk)_live_")
AUTO_RATE_LIVE = 1000.0
# The description of v2.error.duplicate_meter_event in Stripe's OpenAPI spec.
DUPLICATE_V2_MESSAGE = "A meter event with a duplicate identifier has already been submitted."
AUTO_RATE_TEST = 25.0
REDIRECT_LOCATION = "https://portal.invalid/login"
FORMULAS = ("sum", "count", "last")
METER_STATUSES = ("active", "inactive")

FAULT_KINDS = {"500", "500rec", "502", "503", "504", "429", "429lock", "400rl", "409", "302",
               "200html", "drop", "drop_after", "reset", "reset_after", "cut_after", "ok",
               "401session", "401token", "401v1", "400fields"}
# Tokens of the stream's own (a session's token, the events' fields): no meaning for the session
# request, so its queue refuses them.
STREAM_ONLY_FAULTS = {"401session", "401token", "401v1", "400fields"}
EDGE_FAULTS = {"502", "503", "504", "429", "429lock", "400rl", "409", "302", "200html", "drop",
               "reset"}

RATE_LIMIT_MESSAGE = ("Request rate limit exceeded. You can learn more about rate limits here "
                      "https://stripe.com/docs/rate-limits.")


class FaultSpecError(ValueError):
    pass


def parse_fault_token(tok):
    """'KIND', 'slow:MS' or '429ra:S' (without a count) -> normalized token string."""
    tok = tok.strip()
    if tok in FAULT_KINDS:
        return tok
    m = re.fullmatch(r"slow:(\d{1,7})", tok)
    if m:
        return "slow:%d" % int(m.group(1))
    m = re.fullmatch(r"429ra:(\d{1,6})", tok)
    if m:
        return "429ra:%d" % int(m.group(1))
    raise FaultSpecError("unknown fault %r (known: %s, slow:MS, 429ra:S)" %
                         (tok, " ".join(sorted(FAULT_KINDS))))


def parse_fault_spec(spec, session=False):
    """'500*5,drop_after,slow:2000*2' -> list of tokens, expanded. With `session`, for the
    session request's queue, which refuses the stream's own tokens."""
    out = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        count = 1
        if "*" in item:
            item, _, n = item.partition("*")
            if not re.fullmatch(r"\d{1,6}", n.strip()):
                raise FaultSpecError("bad fault count in %r" % spec)
            count = int(n)
        tok = parse_fault_token(item)
        if session and tok in STREAM_ONLY_FAULTS:
            raise FaultSpecError("fault %r is the stream's own, not the session request's"
                                 % tok)
        out.extend([tok] * count)
    return out


def fault_kind(tok):
    """The stats' name of a token: 'slow:200' -> 'slow', '429ra:5' -> '429ra'."""
    return tok.partition(":")[0]


def tsv_escape(s):
    return (s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def tsv_unescape(s):
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(n, n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def mask_key(token):
    """Like Stripe: never echo a key, only a prefix and its last 4 characters."""
    m = re.match(r"^((?:sk|rk|pk)_(?:test|live)_)", token)
    prefix = m.group(1) if m else ""
    tail = token[-4:] if len(token) > 8 else ""
    return prefix + "****" + tail


def error_body(etype, message, param=None, code=None):
    err = {"type": etype, "message": message}
    if param is not None:
        err["param"] = param
    if code is not None:
        err["code"] = code
    return {"error": err}


# The code of a v2 401 for a key Stripe does not take (the session request, GET /v2/core/events).
# The double's own: Stripe documents the v2 error shape (schema v2.error: code and message
# required, type optional) but no code for a refused key. The SDKs expect a 401 whose type they
# do not know to be an authentication error (stripe-node generateV2Error falls back to
# generateV1Error, stripe-python specific_v2_api_error to specific_v1_api_error: 401 is
# AuthenticationError), so the type is v1's invalid_request_error, never one they map to
# another error (temporary_session_expired, rate_limit, idempotency_error), and the code is
# not invalid_fields.
V2_KEY_REFUSED = "invalid_api_key"


def v2_error(code, message, etype=None, doc_url=None):
    """A v2 error body (the OpenAPI schema v2.error: code and message required, type optional)."""
    e = {"code": code, "message": message}
    if etype:
        e["type"] = etype
    if doc_url:
        e["doc_url"] = doc_url
    return {"error": e}


def rfc3339_ms(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


RFC3339_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def parse_rfc3339(text):
    """Seconds since the epoch (the fraction dropped), or None."""
    import calendar
    m = RFC3339_RE.match(text)
    if not m:
        return None
    try:
        t = calendar.timegm((int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)),
                             int(m.group(5)), int(m.group(6)), 0, 0, 0))
        time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    tz = m.group(8)
    if tz not in ("Z", "z"):
        off = int(tz[1:3]) * 3600 + int(tz[4:6]) * 60
        t -= off if tz[0] == "+" else -off
    return t


def request_id():
    return "req_" + uuid.uuid4().hex[:14]


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


class Reply:
    """What to send back: status, extra headers, body (JSON unless ctype says otherwise); or a
    drop, reset or cut of the connection."""

    def __init__(self, status, body, headers=None, store=False, note=None,
                 ctype="application/json", stripe=True):
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = list(headers or [])
        if stripe and not any(k.lower() == "request-id" for k, _ in self.headers):
            self.headers.append(("Request-Id", request_id()))
        self.store = store  # an Idempotency-Key keeps this result
        self.note = note
        self.ctype = ctype
        self.drop = False  # close without answering (FIN)
        self.reset = False  # close without answering (RST)
        self.cut = False  # send headers and half the body, then close


def bad_request(message, param=None, note="rejected"):
    return Reply(400, error_body("invalid_request_error", message, param), note=note)


def rate_limit_reply(reason, note=None, retry_after=None):
    headers = [("Stripe-Rate-Limited-Reason", reason)]
    if retry_after is not None:
        headers.append(("Retry-After", str(retry_after)))
    return Reply(429, error_body("invalid_request_error", RATE_LIMIT_MESSAGE, code="rate_limit"),
                 headers, note=note)


def server_error(note):
    # The SDKs expect "Stripe-Should-Retry: false" on most 500s, "since our idempotency framework
    # would typically replay it anyway" (stripe-node src/RequestSender.ts, _shouldRetry).
    return Reply(500, error_body("api_error", "An unknown error occurred. Please try again later "
                                 "or contact support."),
                 [("Stripe-Should-Retry", "false")], note=note)


class Meter:
    def __init__(self, spec, index, live, start):
        parts = spec.split(":")
        if len(parts) > 5 or not parts[0]:
            raise ValueError("bad --meter %r" % spec)
        parts += [""] * (5 - len(parts))
        self.event_name = parts[0]
        self.cust_key = parts[1] or "stripe_customer_id"
        self.val_key = parts[2] or "value"
        self.formula = parts[3] or "sum"
        self.status = parts[4] or "active"
        if self.formula not in FORMULAS:
            raise ValueError("bad formula %r in --meter %r (sum, count or last)"
                             % (self.formula, spec))
        if self.status not in METER_STATUSES:
            raise ValueError("bad status %r in --meter %r (active or inactive)"
                             % (self.status, spec))
        digest = hashlib.sha256(self.event_name.encode()).hexdigest()[:32]
        self.id = ("mtr_" if live else "mtr_test_") + digest
        self.created = int(start) - index
        self.live = live

    def obj(self):
        return {
            "id": self.id,
            "object": "billing.meter",
            "created": self.created,
            "customer_mapping": {"event_payload_key": self.cust_key, "type": "by_id"},
            "default_aggregation": {"formula": self.formula},
            "display_name": self.event_name,
            "event_name": self.event_name,
            "event_time_window": None,
            "livemode": self.live,
            "status": self.status,
            "status_transitions": {
                "deactivated_at": self.created if self.status == "inactive" else None},
            "updated": self.created,
            "value_settings": {"event_payload_key": self.val_key},
        }


class TokenBucket:
    def __init__(self, rate):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.refill()

    def refill(self):
        self.tokens = self.capacity
        self.last = time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.api_key = args.api_key
        self.timestamp_skew = args.timestamp_skew
        self.session_created_skew = args.session_created_skew
        self.live = bool(LIVE_KEY_RE.match(args.api_key))
        self.started = time.time()
        self.clock_offset = 0.0
        self.idempotency_ttl = args.idempotency_ttl
        self.identifier_ttl = args.identifier_ttl
        self.meters_page_max = args.meters_page_max
        # Hostile pages with has_more still to answer, and whether they repeat the first.
        self.meters_stuck, self.meters_stuck_first = args.meters_stuck
        self.meters_stuck_given = self.meters_stuck > 0
        # POST /_double/faults {"hold_meters": true}: GET /v1/billing/meters waits (set) until
        # {"hold_meters": false}; meters_waiting counts the requests waiting.
        self.meters_go = threading.Event()
        self.meters_go.set()
        self.meters_waiting = 0
        self.session_ttl = args.session_ttl
        self.session_expired_status = args.session_expired_status
        self.stream_refuse_duplicates = args.stream_duplicates == "refuse"
        self.sessions = {}  # token -> expires_at (the double's clock)
        self.stream_bucket = None
        self.meters = {}  # event_name -> Meter, in --meter order
        for i, spec in enumerate(args.meter or []):
            try:
                m = Meter(spec, i, self.live, self.started)
            except ValueError as e:
                raise SystemExit("stripe_double: %s" % e)
            self.meters[m.event_name] = m
        self.meter_list = list(self.meters.values())
        self.customers = set(args.customer or [])
        if args.customers_file:
            try:
                with open(args.customers_file, encoding="utf-8") as f:
                    for line in f:
                        line = line.strip()
                        if line and not line.startswith("#"):
                            self.customers.add(line)
            except OSError as e:
                raise SystemExit("stripe_double: --customers-file: %s" % e)
        self.check_customers = bool(args.customer or args.customers_file)
        if args.rate_limit == "auto":
            self.rate_limit = AUTO_RATE_LIVE if self.live else AUTO_RATE_TEST
        else:
            self.rate_limit = float(args.rate_limit)
        self.bucket = TokenBucket(self.rate_limit) if self.rate_limit > 0 else None
        if self.live and args.rate_limit == "auto":
            self.stream_bucket = TokenBucket(STREAM_RATE_LIVE_EVENTS)
        self.ids = {}  # identifier -> accepted time (the double's clock)
        self.events = []
        self.error_reports = []
        self.idem = {}  # key -> None while in progress, else (hash, Reply, saved time)
        self.inflight = {}  # (customer, event_name) -> n
        self.queue = []
        self.session_queue = []  # the session request's faults (SESSION FAULTS)
        self.rate = 0.0
        self.kinds = []
        self.rng = random.Random()
        self.record = None
        self.log = None
        self.reset_stats()
        self.preloaded = 0
        self.preload_expired = 0
        if args.record:
            self.load_record(args.record)
            self.record = open(args.record, "a", encoding="utf-8", newline="\n")
        if args.log:
            self.log = open(args.log, "a", encoding="utf-8", newline="\n")
        if args.faults:
            self.queue.extend(parse_fault_spec(args.faults))
        if args.session_faults:
            self.session_queue.extend(parse_fault_spec(args.session_faults, session=True))

    def now(self):
        """The double's clock: real time plus the offset of POST /_double/clock."""
        return time.time() + self.clock_offset

    def reset_stats(self):
        self.stats = {
            "requests": 0, "accepted": 0, "duplicates": 0, "replays": 0, "rejected": 0,
            "unauthorized": 0, "idempotency_errors": 0, "faults": {},
            "concurrency_violations": 0, "in_flight": 0, "max_in_flight": 0, "by_status": {},
            "not_found": 0, "saved_errors": 0, "error_replays": 0, "rate_limited": 0,
            "error_reports": 0, "forgotten_keys": 0, "forgotten_identifiers": 0,
            "meter_lists": 0, "event_lists": 0,
            "stream_requests": 0, "stream_ok": 0, "stream_events": 0, "sessions": 0,
            "sessions_expired": 0, "invalid_fields": 0, "session_requests": 0,
            "session_faults": {}, "unknown_tokens": 0, "session_unauthorized": 0,
        }

    def load_record(self, path):
        now = self.now()
        seen = {}
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if not line:
                        continue
                    cols = line.split("\t")
                    ident = tsv_unescape(cols[0])
                    if not ident:
                        continue
                    try:
                        at = float(cols[6])
                    except (IndexError, ValueError):
                        at = now  # no usable time: remembered for a full TTL
                    seen[ident] = max(at, seen.get(ident, at))  # the latest acceptance counts
        except FileNotFoundError:
            pass
        for ident, at in seen.items():
            if now - at >= self.identifier_ttl:
                self.preload_expired += 1
            else:
                self.ids[ident] = at
                self.preloaded += 1

    # All methods below are called with self.lock held.

    def next_fault(self):
        if self.queue:
            return self.queue.pop(0)
        if self.rate > 0 and self.kinds and self.rng.random() < self.rate:
            return self.rng.choice(self.kinds)
        return None

    def fault_state(self):
        return {"queue": list(self.queue), "rate": self.rate, "kinds": list(self.kinds),
                "session_queue": list(self.session_queue),
                "hold_meters": not self.meters_go.is_set(),
                "meters_waiting": self.meters_waiting}

    def clock_state(self):
        return {"offset": self.clock_offset, "now": round(self.now(), 3)}

    def count_status(self, key):
        bs = self.stats["by_status"]
        bs[key] = bs.get(key, 0) + 1

    def count_reply(self, reply):
        if reply.drop:
            self.count_status("dropped")
        elif reply.reset:
            self.count_status("reset")
        else:
            self.count_status(str(reply.status))

    def write_log(self, fields):
        if self.log:
            self.log.write("\t".join(tsv_escape(f) if f else "-" for f in fields) + "\n")
            self.log.flush()

    def report_error(self, code, message, identifier, event_name, meter, customer, at, idem):
        """An asynchronous error report (section 7 of the contract), as Stripe makes them."""
        self.stats["error_reports"] += 1
        self.error_reports.append({
            "id": "evt_test_double_%06d" % len(self.error_reports), "code": code,
            "message": message, "identifier": identifier, "event_name": event_name,
            "meter": meter.id if meter else None, "customer": customer,
            "time": round(at, 3), "idempotency_key": idem,
        })

    def snapshot(self):
        s = json.loads(json.dumps(self.stats))
        s["preloaded"] = self.preloaded
        s["preload_expired"] = self.preload_expired
        s["rate_limit"] = self.rate_limit
        s["fault_queue"] = len(self.queue)
        s["session_fault_queue"] = len(self.session_queue)
        s["faults_pending"] = len(self.queue)  # alias used by t_faults.sh
        return s


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stripe-double"
    # Headers and body go out in one write, and without Nagle: otherwise delayed ACKs cap a
    # keep-alive connection at about 25 requests per second.
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # noqa: A002 (base class signature)
        pass

    def date_time_string(self, timestamp=None):
        """The Date header, on Stripe's clock (--timestamp-skew), as a real Stripe's would be."""
        if timestamp is None:
            timestamp = time.time() + self.st.timestamp_skew
        return super().date_time_string(timestamp)

    @property
    def st(self):
        return self.server.state

    # --- plumbing -------------------------------------------------------------------------

    def read_body(self):
        """The request body, or None after answering 400/413 (the connection is then closed)."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    self.send_json(400, error_body("invalid_request_error", "Bad chunked body."))
                    return None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    self.send_json(413, error_body("invalid_request_error", "Body too large."))
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            self.send_json(413 if n > 0 else 400,
                           error_body("invalid_request_error", "Bad Content-Length."))
            return None
        return self.rfile.read(n) if n else b""

    def send_json(self, status, obj, headers=(), ctype="application/json"):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(body)
        self.flush_headers()

    def emit(self, reply, extra_headers=()):
        headers = list(reply.headers) + list(extra_headers)
        if reply.drop or reply.reset:
            self.close_connection = True
            if reply.reset:
                # Closed by the server after this handler returns, with SO_LINGER {on, 0} and
                # without the usual shutdown(SHUT_WR), whose FIN would reach the client first.
                self.server.mark_reset(self.connection)
            return
        if reply.cut:
            self.close_connection = True
            self.send_response(reply.status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Type", reply.ctype)
            self.send_header("Content-Length", str(len(reply.body)))
            self._headers_buffer.append(b"\r\n")
            self._headers_buffer.append(reply.body[: len(reply.body) // 2])
            self.flush_headers()
            return
        self.send_json(reply.status, reply.body, headers, reply.ctype)

    @staticmethod
    def after_faults(reply, fault, notes):
        """The faults that act on the answer: close, reset or cut it (the work is done)."""
        if reply.note:
            notes.append(reply.note)
        if fault in ("drop", "drop_after"):
            reply.drop = True
        elif fault in ("reset", "reset_after"):
            reply.reset = True
        elif fault == "cut_after":
            reply.cut = True

    def safely(self, fn):
        try:
            fn()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def authorized(self, count=True, v2=False):
        """None if the Authorization header carries the key, else the 401 Reply (counted in the
        stats' "unauthorized" if `count`: meter-event requests only). `v2`: an API v2 request,
        answered in the v2 error shape (V2_KEY_REFUSED)."""
        auth = self.headers.get("Authorization")
        if auth == "Bearer " + self.st.api_key:
            return None
        if count:
            with self.st.lock:
                self.st.stats["unauthorized"] += 1
        if not auth:
            msg = ("You did not provide an API key. You need to provide your API key in the "
                   "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                   "YOUR_SECRET_KEY').")
        else:
            token = auth[7:] if auth.startswith("Bearer ") else auth
            msg = "Invalid API Key provided: %s" % mask_key(token)
        if v2:
            body = v2_error(V2_KEY_REFUSED, msg, "invalid_request_error")
        else:
            body = error_body("invalid_request_error", msg)
        return Reply(401, body, [("WWW-Authenticate", 'Bearer realm="Stripe"')],
                     note="unauthorized")

    # --- routing --------------------------------------------------------------------------

    def do_GET(self):
        self.safely(self.route_get)

    def do_POST(self):
        self.safely(self.route_post)

    def do_DELETE(self):
        self.safely(self.not_found)

    do_PUT = do_DELETE

    def route_get(self):
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path
        st = self.st
        if path == METERS_PATH:
            return self.api_get(self.list_meters, parts.query, "meter_lists")
        if path == V2_EVENTS_PATH:
            return self.api_get(self.list_v2_events, parts.query, "event_lists", v2=True)
        if path == "/_double/stats":
            with st.lock:
                obj = st.snapshot()
        elif path == "/_double/events":
            with st.lock:
                obj = list(st.events)
        elif path == "/_double/error_reports":
            with st.lock:
                obj = list(st.error_reports)
        elif path == "/_double/faults":
            with st.lock:
                obj = st.fault_state()
        elif path == "/_double/clock":
            with st.lock:
                obj = st.clock_state()
        elif path == "/_double/health":
            obj = {"ok": True}
        else:
            return self.not_found()
        # Read-only control requests are not logged: tests poll them, and the log's tail should
        # show the meter-event traffic when a test fails.
        self.send_json(200, obj)

    def route_post(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == METER_EVENTS_PATH:
            return self.meter_event()
        if path == SESSION_PATH:
            return self.meter_event_session()
        if path == STREAM_PATH:
            return self.meter_event_stream()
        if path == "/_double/faults":
            return self.control_faults()
        if path == "/_double/clock":
            return self.control_clock()
        if path == "/_double/reset":
            body = self.read_body()
            if body is None:
                return
            with self.st.lock:
                self.st.queue.clear()
                self.st.session_queue.clear()
                self.st.rate = 0.0
                self.st.kinds = []
                if self.st.bucket:
                    self.st.bucket.refill()
                in_flight = self.st.stats["in_flight"]  # still true after the reset
                self.st.reset_stats()
                self.st.stats["in_flight"] = in_flight
            self.log_control(200)
            return self.send_json(200, {"ok": True})
        self.not_found()

    def not_found(self):
        body = self.read_body() if self.command in ("POST", "PUT") else b""
        if body is None:
            return
        with self.st.lock:
            self.st.stats["not_found"] += 1
        self.log_control(404)
        self.send_json(404, error_body(
            "invalid_request_error",
            "Unrecognized request URL (%s: %s)." % (self.command, self.path)),
            [("Request-Id", request_id())])

    def log_control(self, status, notes=""):
        with self.st.lock:
            self.st.write_log([self.command, self.path, str(status), "", "", "", "", "", notes,
                               "%.3f" % time.time()])

    def read_json_control(self):
        """The JSON object of a control request, or None after answering 400."""
        body = self.read_body()
        if body is None:
            return None
        try:
            req = json.loads(body or b"{}")
            if not isinstance(req, dict):
                raise ValueError("expected a JSON object")
        except ValueError as e:
            self.log_control(400)
            self.send_json(400, error_body("invalid_request_error", str(e)))
            return None
        return req

    def control_faults(self):
        req = self.read_json_control()
        if req is None:
            return
        st = self.st
        try:
            spec = parse_fault_spec(str(req.get("spec") or ""))
            session_spec = parse_fault_spec(str(req.get("session_spec") or ""), session=True)
            kinds = None
            if "kinds" in req:
                if not isinstance(req["kinds"], list):
                    raise ValueError("kinds must be a list")
                kinds = [parse_fault_token(str(k)) for k in req["kinds"]]
            rate = None
            if "rate" in req:
                rate = float(req["rate"])
                if not 0.0 <= rate <= 1.0:
                    raise ValueError("rate must be within 0..1")
            hold = req.get("hold_meters")
            if hold is not None and not isinstance(hold, bool):
                raise ValueError("hold_meters must be true or false")
        except (ValueError, TypeError) as e:
            self.log_control(400)
            return self.send_json(400, error_body("invalid_request_error", str(e)))
        with st.lock:
            if req.get("clear"):
                st.queue.clear()
                st.session_queue.clear()
                st.rate = 0.0
                st.kinds = []
            st.queue.extend(spec)
            st.session_queue.extend(session_spec)
            if kinds is not None:
                st.kinds = kinds
            if rate is not None:
                st.rate = rate
            if "seed" in req:
                st.rng.seed(req["seed"])
            if hold is True:
                st.meters_go.clear()
            elif hold is False:
                st.meters_go.set()
            obj = st.fault_state()
        self.log_control(200)
        self.send_json(200, obj)

    def control_clock(self):
        req = self.read_json_control()
        if req is None:
            return
        try:
            advance = float(req.get("advance", 0))
            if not advance >= 0:  # also refuses NaN
                raise ValueError("advance must be a number of seconds >= 0")
            skew = req.get("skew")
            if skew is not None and (isinstance(skew, bool) or not isinstance(skew, int)):
                raise ValueError("skew must be an integer number of seconds")
        except (ValueError, TypeError) as e:
            self.log_control(400)
            return self.send_json(400, error_body("invalid_request_error", str(e)))
        with self.st.lock:
            self.st.clock_offset += advance
            if skew is not None:
                self.st.timestamp_skew = skew
            obj = self.st.clock_state()
        self.log_control(200, "advance=%g skew=%s" % (advance, skew))
        self.send_json(200, obj)

    # --- the list endpoints ---------------------------------------------------------------

    def api_get(self, fn, query, counter, v2=False):
        st = self.st
        reply = self.authorized(count=False, v2=v2)
        if reply is None:
            with st.lock:
                st.stats[counter] += 1
            try:
                params = urllib.parse.parse_qsl(query, keep_blank_values=True,
                                                max_num_fields=100)
            except ValueError:
                params = None
            reply = (fn(params) if params is not None
                     else bad_request("Invalid request: the query string cannot be parsed."))
        with st.lock:
            st.write_log([self.command, self.path, str(reply.status), "", "", "", "", "",
                          reply.note or "", "%.3f" % time.time()])
        self.emit(reply)

    @staticmethod
    def int_param(value, name, lo, hi):
        """(int, None) or (None, 400 Reply)."""
        if not INT_RE.match(value):
            return None, bad_request("Invalid integer: %s" % value, name)
        n = int(value)
        if not lo <= n <= hi:
            return None, bad_request("Invalid %s: must be between %d and %d" % (name, lo, hi),
                                     name)
        return n, None

    def list_meters(self, params):
        st = self.st
        if not st.meters_go.is_set():
            with st.lock:
                st.meters_waiting += 1
            st.meters_go.wait()
            with st.lock:
                st.meters_waiting -= 1
        limit, after, before, status = 10, None, None, None
        for k, v in params:
            if k == "limit":
                limit, err = self.int_param(v, "limit", 1, 100)
                if err:
                    return err
            elif k == "starting_after":
                after = v
            elif k == "ending_before":
                before = v
            elif k == "status":
                if v not in METER_STATUSES:
                    return bad_request("Invalid status: must be one of active, inactive",
                                       "status")
                status = v
            elif k == "expand[]" or re.fullmatch(r"expand\[\d+\]", k):
                pass
            else:
                return bad_request("Received unknown parameter: %s" % k, k)
        if after is not None and before is not None:
            return bad_request("You may only specify one of these parameters: ending_before, "
                               "starting_after.", "ending_before")
        order = [m.id for m in st.meter_list]  # newest first
        items = [m for m in st.meter_list if status is None or m.status == status]
        page = min(limit, st.meters_page_max)
        cursor = after if after is not None else before
        if cursor is not None and st.meters_stuck_given:
            # --meters-stuck: pages that promise more and give nothing new, then an empty end.
            with st.lock:
                more = st.meters_stuck > 0
                st.meters_stuck -= 1 if more else 0
            data = [m.obj() for m in items[:page]] if more and st.meters_stuck_first else []
            return Reply(200, {"object": "list", "url": METERS_PATH, "has_more": more,
                               "data": data})
        if cursor is not None and cursor not in order:
            return bad_request("No such billing meter: '%s'" % cursor,
                               "starting_after" if after is not None else "ending_before")
        # The cursor's place in the filtered list: how many listed meters come before it (the
        # cursor itself may have been filtered out by status).
        pos = order.index(cursor) if cursor is not None else -1
        before_cursor = sum(1 for m in items if order.index(m.id) < pos)
        if before is not None:
            lo = max(0, before_cursor - page)
            data, has_more = items[lo:before_cursor], lo > 0
        else:
            lo = 0
            if after is not None:
                lo = before_cursor + (1 if any(m.id == after for m in items) else 0)
            data, has_more = items[lo:lo + page], lo + page < len(items)
        return Reply(200, {"object": "list", "url": METERS_PATH, "has_more": has_more,
                           "data": [m.obj() for m in data]})

    def list_v2_events(self, params):
        st = self.st
        limit, start, object_id, types = 20, 0, None, []
        for k, v in params:
            if k == "limit":
                limit, err = self.int_param(v, "limit", 1, 100)
                if err:
                    return err
            elif k == "page":
                m = re.fullmatch(r"page_(\d{1,9})", v)
                if not m:
                    return bad_request("Invalid page token.", "page")
                start = int(m.group(1))
            elif k == "object_id":
                object_id = v
            elif k == "types" or re.fullmatch(r"types\[\d*\]", k):
                types.append(v)
            else:
                return bad_request("Received unknown parameter: %s" % k, k)
        with st.lock:
            reports = list(reversed(st.error_reports))
        evs = [self.v2_event(r) for r in reports]
        evs = [e for e in evs
               if (object_id is None or e["related_object"]["id"] == object_id)
               and (not types or e["type"] in types)]
        data = evs[start:start + limit]
        nxt = None
        if start + limit < len(evs):
            q = [("limit", str(limit)), ("page", "page_%d" % (start + limit))]
            if object_id is not None:
                q.append(("object_id", object_id))
            q.extend(("types", t) for t in types)
            nxt = "%s?%s" % (V2_EVENTS_PATH, urllib.parse.urlencode(q))
        return Reply(200, {"data": data, "next_page_url": nxt, "previous_page_url": None})

    def v2_event(self, r):
        """An error report as Stripe's thin event v1.billing.meter.error_report_triggered."""
        return {
            "id": r["id"],
            "object": "v2.core.event",
            "context": None,
            "created": rfc3339(r["time"]),
            "livemode": self.st.live,
            "reason": None,
            "related_object": {"id": r["meter"], "type": "billing.meter",
                               "url": "%s/%s" % (METERS_PATH, r["meter"])},
            "type": "v1.billing.meter.error_report_triggered",
            "data": {
                "developer_message_summary": "There is 1 invalid event",
                "reason": {
                    "error_count": 1,
                    "error_types": [{
                        "code": r["code"],
                        "error_count": 1,
                        "sample_errors": [{"error_message": r["message"],
                                           "request": {"identifier": r["identifier"]}}],
                    }],
                },
                "validation_start": rfc3339(r["time"]),
                "validation_end": rfc3339(r["time"]),
            },
        }

    # --- the meter event endpoint ---------------------------------------------------------

    def parse_params(self, body):
        """-> (params list or None, error Reply or None)"""
        if not body:
            return [], None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return None, bad_request(
                "Invalid request: the body must be application/x-www-form-urlencoded, not %r."
                % ctype)
        try:
            text = body.decode("ascii")
            params = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8",
                                            errors="strict", max_num_fields=1000)
        except (UnicodeDecodeError, ValueError):
            return None, bad_request("Invalid request: the body is not valid form-urlencoded UTF-8.")
        return params, None

    def meter_event(self):
        body = self.read_body()
        if body is None:
            return
        st = self.st
        idem = self.headers.get("Idempotency-Key")
        params, perr = self.parse_params(body)
        if params is not None:
            canon = json.dumps(sorted(params)).encode()
        else:
            canon = body
        phash = hashlib.sha256(canon).hexdigest()
        pmap = dict(params or [])
        event_name = pmap.get("event_name", "")
        meter = st.meters.get(event_name)
        cust_key = meter.cust_key if meter else "stripe_customer_id"
        customer = pmap.get("payload[%s]" % cust_key, "")
        pair = (customer, event_name) if customer and event_name else None
        notes = []
        with st.lock:
            st.stats["requests"] += 1
            fault = st.next_fault()
            if fault and fault != "ok":
                f = st.stats["faults"]
                k = fault_kind(fault)
                f[k] = f.get(k, 0) + 1
            st.stats["in_flight"] += 1
            st.stats["max_in_flight"] = max(st.stats["max_in_flight"], st.stats["in_flight"])
            if pair:
                n = st.inflight.get(pair, 0) + 1
                st.inflight[pair] = n
                if n > 1:
                    st.stats["concurrency_violations"] += 1
                    notes.append("concurrent")
        ctx = {"identifier": pmap.get("identifier", ""), "notes": notes}
        try:
            reply = self.process(fault, idem, phash, params, perr, ctx)
        except Exception as e:  # a bug in the double must not hang the client
            reply = Reply(500, error_body("api_error", "stripe double internal error: %s" % e))
            notes.append("internal_error")
        finally:
            # Before any byte is written: a client that has our answer may legitimately start
            # its next request for the same pair at once.
            with st.lock:
                st.stats["in_flight"] -= 1
                if pair:
                    n = st.inflight.get(pair, 0) - 1
                    if n > 0:
                        st.inflight[pair] = n
                    else:
                        st.inflight.pop(pair, None)
        self.after_faults(reply, fault, notes)
        with st.lock:
            st.count_reply(reply)
            st.write_log([self.command, self.path,
                          "none" if reply.drop or reply.reset else str(reply.status),
                          fault or "", idem or "", ctx["identifier"], customer, event_name,
                          ",".join(notes), "%.3f" % time.time()])
        self.emit(reply)

    def edge_fault(self, fault):
        """The answer of an edge fault (before authentication and idempotency), or None."""
        if fault in ("drop", "reset"):
            return Reply(0, b"", note="dropped" if fault == "drop" else "reset")
        if fault in ("502", "503", "504"):
            return Reply(int(fault), error_body(
                "api_error", "An unknown error occurred (injected %s)." % fault))
        if fault == "429":
            return rate_limit_reply("global-rate")
        if fault.startswith("429ra:"):
            return rate_limit_reply("global-rate", retry_after=int(fault[6:]))
        if fault == "400rl":
            return Reply(400, error_body("invalid_request_error", RATE_LIMIT_MESSAGE,
                                         code="rate_limit"))
        if fault == "429lock":
            return Reply(429, error_body(
                "invalid_request_error",
                "This object cannot be accessed right now because another API request or Stripe "
                "process is currently accessing it. If you see this error intermittently, retry "
                "the request.", code="lock_timeout"),
                [("Stripe-Should-Retry", "true")])
        if fault == "409":
            return Reply(409, error_body(
                "idempotency_error",
                "There is currently another in-progress request using this idempotency key "
                "(injected 409). Please try again later."))
        if fault == "302":
            return Reply(302, b"<html><body>Moved: <a href=\"%s\">log in</a></body></html>\n"
                         % REDIRECT_LOCATION.encode(),
                         [("Location", REDIRECT_LOCATION)], ctype="text/html; charset=utf-8",
                         stripe=False)
        if fault == "200html":
            return Reply(200, b"<!DOCTYPE html>\n<html><head><title>Network login</title></head>"
                         b"<body><form action=\"/login\">Accept the terms to continue."
                         b"</form></body></html>\n", ctype="text/html; charset=utf-8",
                         note="html", stripe=False)
        return None

    def process(self, fault, idem, phash, params, perr, ctx):
        st = self.st
        if fault in EDGE_FAULTS or (fault or "").startswith("429ra:"):
            return self.edge_fault(fault)

        reply = self.authorized()
        if reply is not None:
            return reply

        if st.bucket is not None:
            with st.lock:
                allowed = st.bucket.take()
                if not allowed:
                    st.stats["rate_limited"] += 1
            if not allowed:
                return rate_limit_reply("endpoint-rate" if st.live else "global-rate",
                                        note="rate_limited")

        if idem is not None:
            if len(idem) > MAX_IDEMPOTENCY_KEY or not idem:
                with st.lock:
                    st.stats["rejected"] += 1
                return bad_request("Invalid idempotency key: it must be 1 to 255 characters.")
            with st.lock:
                entry = st.idem.get(idem, False)
                if entry is not False and entry is not None and \
                        st.now() - entry[2] >= st.idempotency_ttl:
                    del st.idem[idem]
                    st.stats["forgotten_keys"] += 1
                    ctx["notes"].append("forgotten_key")
                    entry = False
                if entry is None:
                    st.stats["idempotency_errors"] += 1
                    return Reply(409, error_body(
                        "idempotency_error",
                        "There is currently another in-progress request using this "
                        "idempotency key (that probably means you submitted twice, and the "
                        "other request is still going through): %s. Please try again later."
                        % idem), note="concurrent_key")
                if entry is not False:
                    if entry[0] != phash:
                        st.stats["idempotency_errors"] += 1
                        st.stats["rejected"] += 1
                        return Reply(400, error_body(
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other than "
                            "'%s' if you meant to execute a different request." % idem),
                            note="idempotency_mismatch")
                    st.stats["replays"] += 1
                    old = entry[1]
                    if old.status >= 500:
                        st.stats["error_replays"] += 1
                    return Reply(old.status, old.body,
                                 old.headers + [("Idempotent-Replayed", "true")], note="replay")
                st.idem[idem] = None  # in progress
        reply = None
        try:
            if fault and fault.startswith("slow:"):
                time.sleep(int(fault[5:]) / 1000.0)
            if perr is not None:
                reply = perr
            else:
                ev, reply = self.validate(params, ctx)
                if reply is None:
                    # The endpoint begins executing: from here on, the answer is saved.
                    if fault == "500":
                        reply = server_error("fault_500")
                    else:
                        reply = self.accept(ev, idem, ctx)
                        if fault == "500rec":
                            reply = server_error("fault_500rec")
                    reply.store = True
            if idem is not None:
                reply.headers.append(("Idempotency-Key", idem))
            if reply.status == 400 and reply.note == "rejected":
                with st.lock:
                    st.stats["rejected"] += 1
            return reply
        finally:
            if idem is not None:
                with st.lock:
                    if reply is not None and reply.store:
                        st.idem[idem] = (phash, reply, st.now())
                        if reply.status >= 500:
                            st.stats["saved_errors"] += 1
                            ctx["notes"].append("saved_error")
                    else:
                        st.idem.pop(idem, None)

    def validate(self, params, ctx):
        """-> (the event, None) or (None, the 400 Reply). Nothing is recorded here."""
        st = self.st
        allowed = ("event_name", "identifier", "timestamp")
        payload = {}
        top = {}
        for k, v in params:
            if k in allowed:
                top[k] = v
            elif k.startswith("payload[") and k.endswith("]"):
                inner = k[len("payload["):-1]
                if not inner or "[" in inner or "]" in inner:
                    return None, bad_request("Invalid object", "payload")
                payload[inner] = v
            elif k == "payload":
                return None, bad_request("Invalid object", "payload")
            else:
                return None, bad_request("Received unknown parameter: %s" % k, k)

        event_name = top.get("event_name", "")
        if not event_name:
            return None, bad_request("Missing required param: event_name.", "event_name")
        if len(event_name) > MAX_STRING:
            return None, bad_request("Invalid string: %s...; must be at most %d characters"
                                     % (event_name[:20], MAX_STRING), "event_name")
        if not payload:
            return None, bad_request("Missing required param: payload.", "payload")
        for k, v in payload.items():
            if len(v) > MAX_STRING:
                return None, bad_request("Invalid string: %s...; must be at most %d characters"
                                         % (v[:20], MAX_STRING), "payload[%s]" % k)
        meter = st.meters.get(event_name)
        if meter is None or meter.status != "active":
            return None, bad_request('No active meter found for event name "%s".' % event_name,
                                     "event_name")
        customer = payload.get(meter.cust_key, "")
        if not customer:
            return None, bad_request("Missing required param: payload[%s]." % meter.cust_key,
                                     "payload[%s]" % meter.cust_key)
        if meter.val_key not in payload:
            return None, bad_request("Missing required param: payload[%s]." % meter.val_key,
                                     "payload[%s]" % meter.val_key)
        value = payload[meter.val_key]
        if not VALUE_RE.match(value):
            return None, bad_request('Invalid value "%s" for payload[%s]: it must be a number.'
                                     % (value, meter.val_key), "payload[%s]" % meter.val_key)
        if len(re.sub(r"\D", "", value).lstrip("0")) > MAX_SIGNIFICANT_DIGITS:
            # The message of Stripe's changelog for 2026-04-22.dahlia.
            return None, bad_request("The value in the event payload can have at most %d digits. "
                                     "Received %s." % (MAX_SIGNIFICANT_DIGITS, value),
                                     "payload[%s]" % meter.val_key)
        identifier = top.get("identifier", "")
        if len(identifier) > MAX_STRING:
            return None, bad_request("Invalid string: %s...; must be at most %d characters"
                                     % (identifier[:20], MAX_STRING), "identifier")
        now = time.time() + self.st.timestamp_skew
        ts_text = top.get("timestamp", "")
        if ts_text:
            if not INT_RE.match(ts_text):
                return None, bad_request("Invalid integer: %s" % ts_text, "timestamp")
            timestamp = int(ts_text)
            if timestamp < now - PAST_WINDOW_S:
                return None, bad_request(
                    "The event timestamp cannot be more than 35 days in past. Please use a "
                    "timestamp within the last 35 days.", "timestamp")
            if timestamp > now + FUTURE_WINDOW_S:
                return None, bad_request("The event timestamp cannot be more than 5 minutes in "
                                         "the future.", "timestamp")
        else:
            timestamp = int(now)
        if not identifier:
            identifier = "double_" + uuid.uuid4().hex
        ctx["identifier"] = identifier
        return {"identifier": identifier, "event_name": event_name, "customer": customer,
                "value": value, "timestamp": timestamp, "payload": payload,
                "meter": meter}, None

    def accept(self, ev, idem, ctx):
        """The endpoint's work: 400 "already exists", or the event accepted and recorded."""
        st = self.st
        identifier = ev["identifier"]
        with st.lock:
            at = st.ids.get(identifier)
            if at is not None and st.now() - at >= st.identifier_ttl:
                del st.ids[identifier]
                st.stats["forgotten_identifiers"] += 1
                ctx["notes"].append("forgotten_identifier")
                at = None
            if at is not None:
                st.stats["duplicates"] += 1
                return Reply(400, error_body(
                    "invalid_request_error",
                    "An event already exists with identifier %s." % identifier),
                    [("Stripe-Should-Retry", "false")], note="duplicate")
            accepted_at = st.now()
            st.ids[identifier] = accepted_at
            st.stats["accepted"] += 1
            if st.record:
                st.record.write("\t".join(tsv_escape(f) for f in (
                    identifier, ev["event_name"], ev["customer"], ev["value"],
                    str(ev["timestamp"]), idem or "", "%.3f" % accepted_at)) + "\n")
                st.record.flush()
            st.events.append({
                "identifier": identifier, "event_name": ev["event_name"],
                "customer": ev["customer"], "value": ev["value"], "timestamp": ev["timestamp"],
                "payload": dict(ev["payload"]), "idempotency_key": idem,
                "accepted_at": accepted_at,
            })
            if st.check_customers and ev["customer"] not in st.customers:
                # Accepted all the same: Stripe checks the customer asynchronously and reports
                # the failure as a v1.billing.meter.error_report_triggered event.
                ctx["notes"].append("unknown_customer")
                st.report_error("meter_event_customer_not_found",
                                "No customer found with id %s (payload key %s)."
                                % (ev["customer"], ev["meter"].cust_key), identifier,
                                ev["event_name"], ev["meter"], ev["customer"], accepted_at, idem)
        return Reply(200, {
            "object": "billing.meter_event",
            "created": int(time.time()),
            "event_name": ev["event_name"],
            "identifier": identifier,
            "livemode": st.live,
            "payload": ev["payload"],
            "timestamp": ev["timestamp"],
        }, note="accepted")

    # --- API v2: meter event sessions and the stream --------------------------------------

    def meter_event_session(self):
        body = self.read_body()
        if body is None:
            return
        st = self.st
        notes = []
        with st.lock:
            st.stats["session_requests"] += 1
            # Its own queue (SESSION FAULTS): the client asks for a session when it needs one,
            # so a shared queue would hand a token to whichever request came first.
            fault = st.session_queue.pop(0) if st.session_queue else None
            if fault and fault != "ok":
                f = st.stats["session_faults"]
                k = fault_kind(fault)
                f[k] = f.get(k, 0) + 1
        try:
            reply = self.session_process(fault)
        except Exception as e:  # a bug in the double must not hang the client
            reply = Reply(500, v2_error("internal_error", "stripe double internal error: %s" % e,
                                        "api_error"))
            notes.append("internal_error")
        self.after_faults(reply, fault, notes)
        with st.lock:
            st.count_reply(reply)
            st.write_log([self.command, self.path,
                          "none" if reply.drop or reply.reset else str(reply.status),
                          fault or "", "", "", "", "", ",".join(notes), "%.3f" % time.time()])
        self.emit(reply)

    def session_process(self, fault):
        """The answer to POST /v2/billing/meter_event_session under fault token `fault`."""
        st = self.st
        if fault == "429" or (fault or "").startswith("429ra:"):
            return self.v2_rate_limited(fault)
        if fault in EDGE_FAULTS:
            return self.edge_fault(fault)
        reply = self.authorized(count=False, v2=True)
        if reply is not None:
            with st.lock:
                st.stats["session_unauthorized"] += 1
            return reply
        if fault and fault.startswith("slow:"):
            time.sleep(int(fault[5:]) / 1000.0)
        if fault == "500":
            return Reply(500, v2_error("internal_error", "An unknown error occurred.",
                                       "api_error"), note="fault_500")
        with st.lock:
            created = st.now()
            token = "mes_token_" + uuid.uuid4().hex
            st.sessions[token] = created + st.session_ttl
            st.stats["sessions"] += 1
        if fault == "500rec":
            # The session is made (its token works) and the answer lost in a 500.
            return Reply(500, v2_error("internal_error", "An unknown error occurred.",
                                       "api_error"), note="fault_500rec")
        return Reply(200, {
            "id": "mes_" + uuid.uuid4().hex[:24],
            "object": "v2.billing.meter_event_session",
            "authentication_token": token,
            # Stripe's clock, which --timestamp-skew sets apart from this host's (and
            # --session-created-skew from Stripe's: a wrong answer).
            "created": rfc3339_ms(created + st.timestamp_skew + st.session_created_skew),
            "expires_at": rfc3339_ms(created + st.timestamp_skew + st.session_created_skew
                                     + st.session_ttl),
            "livemode": st.live,
        }, note="session")

    @staticmethod
    def v2_rate_limited(fault):
        """A 429 in the v2 shape (fault 429, or 429ra:S with Retry-After: S)."""
        reply = Reply(429, v2_error("account_rate_limit_exceeded", RATE_LIMIT_MESSAGE,
                                    "rate_limit"), [("Stripe-Rate-Limited-Reason",
                                                     "global-rate")])
        if fault.startswith("429ra:"):
            reply.headers.append(("Retry-After", fault[6:]))
        return reply

    def meter_event_stream(self):
        body = self.read_body()
        if body is None:
            return
        st = self.st
        notes = []
        with st.lock:
            st.stats["stream_requests"] += 1
            fault = st.next_fault()
            if fault and fault != "ok":
                f = st.stats["faults"]
                k = fault_kind(fault)
                f[k] = f.get(k, 0) + 1
        n_events = 0
        try:
            reply, n_events = self.stream_process(fault, body, notes)
        except Exception as e:  # a bug in the double must not hang the client
            reply = Reply(500, v2_error("internal_error", "stripe double internal error: %s" % e,
                                        "api_error"))
            notes.append("internal_error")
        self.after_faults(reply, fault, notes)
        with st.lock:
            st.count_reply(reply)
            if reply.status == 200 and not (reply.drop or reply.reset or reply.cut):
                st.stats["stream_ok"] += 1
                st.stats["stream_events"] += n_events
            st.write_log([self.command, self.path,
                          "none" if reply.drop or reply.reset else str(reply.status),
                          fault or "", "", "", "", "", ",".join(notes + ["events=%d" % n_events]),
                          "%.3f" % time.time()])
        self.emit(reply)

    def stream_process(self, fault, body, notes):
        """-> (Reply, number of events in the request)"""
        st = self.st
        if fault == "429" or (fault or "").startswith("429ra:"):
            return self.v2_rate_limited(fault), 0
        if fault in EDGE_FAULTS:
            return self.edge_fault(fault), 0
        auth = self.headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else None
        with st.lock:
            if fault in ("401token", "401v1") and token:
                st.sessions.pop(token, None)  # forgotten: answered as a token never made
            expires = st.sessions.get(token) if token else None
            if expires is not None and (fault == "401session" or st.now() >= expires):
                if fault == "401session":
                    st.sessions[token] = st.now()
                st.stats["sessions_expired"] += 1
                return Reply(st.session_expired_status, v2_error(
                    "billing_meter_event_session_expired", SESSION_EXPIRED_MESSAGE,
                    "temporary_session_expired",
                    doc_url="https://docs.stripe.com/api/v2/billing/meter-event-stream/create"),
                    note="session_expired"), 0
            if expires is None:
                st.stats["unauthorized"] += 1
                st.stats["unknown_tokens"] += 1
        if expires is None and fault == "401v1":
            # Not Stripe's documented answer: v1's 401 (a type, no code), as from an
            # authentication layer shared with API v1.
            return Reply(401, error_body("invalid_request_error", "Invalid API Key provided: %s"
                                         % mask_key(token or auth)),
                         [("WWW-Authenticate", 'Bearer realm="Stripe"')],
                         note="unauthorized"), 0
        if expires is None:
            # The stream's errors are v2.error (its `default` response in the OpenAPI spec):
            # code and message required, type optional. The code is the double's own: Stripe
            # documents none for a token it does not know.
            return Reply(401, v2_error("invalid_authentication_token",
                                       "Invalid authentication token provided: %s"
                                       % mask_key(token or auth), "invalid_request_error"),
                         [("WWW-Authenticate", 'Bearer realm="Stripe"')],
                         note="unauthorized"), 0
        events, err = self.stream_validate(body)
        n = len(events) if events else 0
        if fault == "400fields" and err is None:
            err = "events[0]: refused (injected 400fields)."
        if st.bucket is not None or st.stream_bucket is not None:
            with st.lock:
                if st.stream_bucket is not None:
                    allowed = all(st.stream_bucket.take() for _ in range(max(n, 1)))
                else:
                    allowed = st.bucket.take()
                if not allowed:
                    st.stats["rate_limited"] += 1
            if not allowed:
                return Reply(429, v2_error("account_rate_limit_exceeded", RATE_LIMIT_MESSAGE,
                                           "rate_limit"),
                             [("Stripe-Rate-Limited-Reason",
                               "endpoint-rate" if st.live else "global-rate")],
                             note="rate_limited"), n
        if err is not None:
            with st.lock:
                st.stats["invalid_fields"] += 1
                st.stats["rejected"] += 1
            return Reply(400, v2_error("invalid_fields", err), note="invalid_fields"), n
        if fault and fault.startswith("slow:"):
            time.sleep(int(fault[5:]) / 1000.0)
        if fault == "500":
            return Reply(500, v2_error("internal_error", "An unknown error occurred.",
                                       "api_error"), note="fault_500"), n
        if st.stream_refuse_duplicates:
            with st.lock:
                dups = sum(1 for ev in events
                           if ev["identifier"] in st.ids
                           and st.now() - st.ids[ev["identifier"]] < st.identifier_ttl)
                st.stats["duplicates"] += dups
            if dups:
                return Reply(400, v2_error("duplicate_meter_event", DUPLICATE_V2_MESSAGE),
                             note="duplicate"), n
        for ev in events:
            self.stream_take(ev)
        if fault == "500rec":
            return Reply(500, v2_error("internal_error", "An unknown error occurred.",
                                       "api_error"), note="fault_500rec"), n
        return Reply(200, {}, note="stream"), n

    def stream_validate(self, body):
        """-> (list of events, None) or (None, the message of a 400 invalid_fields)."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return None, "The body must be application/json, not %r." % ctype
        try:
            req = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, "The body is not valid JSON."
        if not isinstance(req, dict):
            return None, "The body must be a JSON object."
        extra = sorted(set(req) - {"events"})
        if extra:
            return None, "Unknown field: %s." % extra[0]
        events = req.get("events")
        if not isinstance(events, list) or not events:
            return None, "events: required, a list of 1 to %d events." % STREAM_MAX_EVENTS
        if len(events) > STREAM_MAX_EVENTS:
            return None, "events: at most %d events per request, got %d." % (
                STREAM_MAX_EVENTS, len(events))
        out = []
        for i, e in enumerate(events):
            where = "events[%d]" % i
            if not isinstance(e, dict):
                return None, "%s: must be an object." % where
            extra = sorted(set(e) - {"event_name", "payload", "identifier", "timestamp"})
            if extra:
                return None, "%s.%s: unknown field." % (where, extra[0])
            name = e.get("event_name")
            if not isinstance(name, str) or not name or len(name) > MAX_STRING:
                return None, "%s.event_name: required, a string of 1 to %d characters." % (
                    where, MAX_STRING)
            payload = e.get("payload")
            if not isinstance(payload, dict) or not payload or \
                    not all(isinstance(k, str) and isinstance(v, str)
                            for k, v in payload.items()):
                return None, "%s.payload: required, an object of strings." % where
            for k, v in payload.items():
                # v1's limit on payload values, assumed for the stream (docs/stripe-contract.md)
                if len(v) > MAX_STRING:
                    return None, "%s.payload.%s: at most %d characters." % (where, k, MAX_STRING)
            ident = e.get("identifier", "")
            if not isinstance(ident, str) or len(ident) > MAX_STRING:
                return None, "%s.identifier: a string of at most %d characters." % (
                    where, MAX_STRING)
            ts = e.get("timestamp")
            if ts is not None:
                t = parse_rfc3339(ts) if isinstance(ts, str) else None
                if t is None:
                    return None, "%s.timestamp: an RFC 3339 date-time string." % where
            else:
                t = int(time.time())
            out.append({"event_name": name, "payload": payload,
                        "identifier": ident or "double_" + uuid.uuid4().hex, "timestamp": t})
        return out, None

    def stream_take(self, e):
        """Stripe's asynchronous part, done at once: dedupe, validate, record or report."""
        st = self.st
        now = time.time() + st.timestamp_skew
        meter = st.meters.get(e["event_name"])
        cust_key = meter.cust_key if meter else "stripe_customer_id"
        customer = e["payload"].get(cust_key, "")
        value = e["payload"].get(meter.val_key, "") if meter else ""
        code = None
        if meter is None or meter.status != "active":
            code, msg = "no_meter", "No active meter for event name %s." % e["event_name"]
        elif not customer:
            code, msg = ("meter_event_no_customer_defined",
                         "Customer mapping key %s not found in payload." % cust_key)
        elif not VALUE_RE.match(value):
            code, msg = "meter_event_invalid_value", "Invalid value %r." % value
        elif len(re.sub(r"\D", "", value).lstrip("0")) > MAX_SIGNIFICANT_DIGITS:
            code, msg = "meter_event_value_too_many_digits", "Too many digits: %s." % value
        elif e["timestamp"] < now - PAST_WINDOW_S:
            code, msg = "timestamp_too_far_in_past", "Timestamp more than 35 days in the past."
        elif e["timestamp"] > now + FUTURE_WINDOW_S:
            code, msg = "timestamp_in_future", "Timestamp more than 5 minutes in the future."
        identifier = e["identifier"]
        with st.lock:
            at = st.ids.get(identifier)
            if at is not None and st.now() - at >= st.identifier_ttl:
                del st.ids[identifier]
                st.stats["forgotten_identifiers"] += 1
                at = None
            if at is not None:
                st.stats["duplicates"] += 1
                return
            if code is not None:
                st.report_error(code, msg, identifier, e["event_name"], meter, customer,
                                st.now(), None)
                st.ids[identifier] = st.now()
                return
            accepted_at = st.now()
            st.ids[identifier] = accepted_at
            st.stats["accepted"] += 1
            if st.record:
                st.record.write("\t".join(tsv_escape(f) for f in (
                    identifier, e["event_name"], customer, value, str(e["timestamp"]), "",
                    "%.3f" % accepted_at)) + "\n")
                st.record.flush()
            st.events.append({
                "identifier": identifier, "event_name": e["event_name"], "customer": customer,
                "value": value, "timestamp": e["timestamp"], "payload": dict(e["payload"]),
                "idempotency_key": None, "accepted_at": accepted_at,
            })
            if st.check_customers and customer not in st.customers:
                st.report_error("meter_event_customer_not_found",
                                "No customer found with id %s (payload key %s)."
                                % (customer, cust_key), identifier, e["event_name"], meter,
                                customer, accepted_at, None)



class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._reset_lock = threading.Lock()
        self._reset_socks = set()

    def mark_reset(self, sock):
        with self._reset_lock:
            self._reset_socks.add(sock)

    def shutdown_request(self, request):
        with self._reset_lock:
            reset = request in self._reset_socks
            self._reset_socks.discard(request)
        if not reset:
            return super().shutdown_request(request)
        try:
            request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_request(request)


def rate_limit_arg(text):
    if text == "auto":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of requests a second, or auto")
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError("expected a number >= 0, or auto")
    return text


def positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number")
    if v < 1:
        raise argparse.ArgumentTypeError("expected a number >= 1")
    return v


def meters_stuck_arg(text):
    """--meters-stuck N[:first]: (N, repeat the first page)."""
    n, sep, kind = text.partition(":")
    if sep and kind != "first":
        raise argparse.ArgumentTypeError("expected N or N:first")
    return positive_int(n), bool(sep)


def status_4xx_arg(text):
    v = positive_int(text)
    if not 400 <= v <= 499:
        raise argparse.ArgumentTypeError("expected an HTTP status from 400 to 499")
    return v


def seconds_arg(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError("expected a number of seconds > 0")
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="A Stripe double for logmeter's tests: the v1 meter events and meters API "
        "and the v2 meter event session and stream, as Stripe documents them, on 127.0.0.1 "
        "only, with injectable faults.",
        epilog="The module's docstring (pydoc3 tests/stripe_double.py, or the top of this file) "
        "gives every endpoint's checks in order, the fault kinds, the error reports and the "
        "/_double/* control API.")
    ap.add_argument("--port", type=int, default=0, metavar="N",
                    help="port on 127.0.0.1 (default 0: any free port)")
    ap.add_argument("--port-file", metavar="PATH",
                    help="write the port listened on into PATH once listening")
    ap.add_argument("--api-key", required=True, metavar="KEY",
                    help="the secret key requests must carry (Authorization: Bearer KEY); "
                    "sk_live_/rk_live_ give live-mode answers")
    ap.add_argument("--meter", action="append",
                    metavar="NAME[:CUST_KEY[:VALUE_KEY[:FORMULA[:STATUS]]]]",
                    help="a billing meter: event_name, customer payload key (default "
                    "stripe_customer_id), value payload key (default value), formula sum, count "
                    "or last (default sum), status active or inactive (default active); "
                    "repeatable")
    ap.add_argument("--customer", action="append", metavar="CUS",
                    help="a customer that exists (repeatable); with none given, every customer "
                    "exists; an event for another is accepted and reported asynchronously")
    ap.add_argument("--customers-file", metavar="PATH",
                    help="customers that exist, one id a line (# comments, blank lines ignored)")
    ap.add_argument("--rate-limit", type=rate_limit_arg, default="0", metavar="N|auto",
                    help="meter-event requests a second (token bucket); 0: no limit (default); "
                    "auto: by the key as Stripe documents (live 1000, test 25)")
    ap.add_argument("--idempotency-ttl", type=seconds_arg, default=DEFAULT_TTL, metavar="S",
                    help="seconds a saved Idempotency-Key answer is replayed (default 86400)")
    ap.add_argument("--identifier-ttl", type=seconds_arg, default=DEFAULT_TTL, metavar="S",
                    help="seconds an accepted meter event identifier is deduplicated "
                    "(default 86400)")
    ap.add_argument("--meters-page-max", type=positive_int, default=100, metavar="N",
                    help="largest page of GET /v1/billing/meters (default 100)")
    ap.add_argument("--meters-stuck", type=meters_stuck_arg, default=(0, False),
                    metavar="N[:first]",
                    help="the N pages of GET /v1/billing/meters after the first are empty (or "
                    "the first page again, with :first) with has_more true, then one ends the "
                    "list (a hostile list; default: none)")
    ap.add_argument("--timestamp-skew", type=int, default=0, metavar="S",
                    help="Stripe's clock is real time plus S seconds (default 0; negative: "
                    "behind the client's) for validating timestamps and for a session's "
                    "created and expires_at")
    ap.add_argument("--record", metavar="PATH",
                    help="append one tab-separated line per accepted event (identifier, "
                    "event_name, customer, value, ...); identifiers already in PATH are "
                    "duplicates")
    ap.add_argument("--faults", metavar="SPEC",
                    help="a queue of faults KIND[*COUNT],... answered to meter-event requests "
                    "(see FAULTS in the docstring)")
    ap.add_argument("--session-faults", metavar="SPEC",
                    help="a queue of faults answered to meter event session requests (see "
                    "SESSION FAULTS in the docstring)")
    ap.add_argument("--log", metavar="PATH",
                    help="append one tab-separated line per request (method, path, status, ...)")
    ap.add_argument("--session-created-skew", type=int, default=0, metavar="S",
                    help="seconds a meter event session's created and expires_at are off "
                    "Stripe's clock (a wrong answer; default 0)")
    ap.add_argument("--session-expired-status", type=status_4xx_arg, default=401, metavar="N",
                    help="HTTP status of the stream's answer to an expired session (default "
                    "401)")
    ap.add_argument("--stream-duplicates", choices=("drop", "refuse"), default="drop",
                    help="a stream request holding an identifier already accepted: drop that "
                    "event (default) or refuse the whole request (400 duplicate_meter_event)")
    ap.add_argument("--session-ttl", type=seconds_arg, default=DEFAULT_SESSION_TTL, metavar="S",
                    help="seconds a meter event session's token is valid (default 900, "
                    "Stripe's 15 minutes)")
    args = ap.parse_args(argv)
    try:
        state = State(args)
    except FaultSpecError as e:
        ap.error(str(e))

    server = None
    deadline = time.monotonic() + 5
    while server is None:
        try:
            server = Server(("127.0.0.1", args.port), Handler)
        except OSError as e:
            # A restart on the same port may race with the old socket's teardown.
            if e.errno != errno.EADDRINUSE or args.port == 0 or time.monotonic() > deadline:
                print("stripe_double: cannot bind 127.0.0.1:%d: %s" % (args.port, e),
                      file=sys.stderr)
                return 1
            time.sleep(0.1)
    server.state = state

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    port = server.server_address[1]
    if args.port_file:
        tmp = "%s.tmp.%d" % (args.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    with state.lock:
        for f in (state.record, state.log):
            if f:
                f.close()
        state.record = state.log = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
