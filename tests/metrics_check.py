#!/usr/bin/python3
"""Checks a scrape of logmeter's metrics endpoint against `logmeter status --json`, for
tests/t_metrics.sh. Parses the exposition with Debian's python3-prometheus-client (its text
parser; run it with /usr/bin/python3), so a scrape that does not parse fails.

Usage: metrics_check.py SCRAPE STATUS_BEFORE.json STATUS_AFTER.json MAX_FILES

STATUS_BEFORE and STATUS_AFTER are taken just before and just after the scrape: a counter of the
scrape must lie between their values, a value that did not change between them must be equal.
Prints what it compared; exits 1 on the first difference.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def fail(msg):
    sys.exit("metrics_check: " + msg)


scrape = open(sys.argv[1], encoding="utf-8").read()
before = json.load(open(sys.argv[2]))
after = json.load(open(sys.argv[3]))
max_files = int(sys.argv[4])

fam = {}
for f in text_string_to_metric_families(scrape):
    if f.name in fam:
        fail("family %s twice" % f.name)
    fam[f.name] = f
# Every family has its HELP and TYPE lines: without them the parser gives "unknown" and no text.
for f in fam.values():
    if f.documentation == "" or f.type == "unknown":
        fail("family %s without HELP or TYPE" % f.name)


def samples(name):
    """{frozenset(labels): value} of the samples called `name` (the parser files a counter's
    name_total samples under the family `name`)."""
    found = {frozenset(s.labels.items()): s.value
             for f in fam.values() for s in f.samples if s.name == name}
    if not found and not any(name.startswith(f) for f in fam):
        fail("no family of %s in the scrape" % name)
    return found


def one(family):
    s = samples(family)
    if len(s) != 1:
        fail("%s: %d samples" % (family, len(s)))
    return list(s.values())[0]


def between(what, got, lo, hi):
    if not (lo <= got <= hi):
        fail("%s: the scrape says %s, status said %s before and %s after" % (what, got, lo, hi))


checked = 0


def agree(what, got, get):
    """got (from the scrape) against get(status) before and after."""
    global checked
    lo, hi = get(before), get(after)
    between(what, got, min(lo, hi), max(lo, hi))
    checked += 1


# Events in the spool.
agree("pending", one("logmeter_pending_events"), lambda s: s["events"]["pending"])
agree("dead", one("logmeter_dead_events"), lambda s: s["events"]["dead"])
agree("unsure", one("logmeter_unsure_events"), lambda s: s["events"]["unsure"])
agree("windows open", one("logmeter_windows_open"), lambda s: s["windows"]["open"])
by_rule = samples("logmeter_spool_events")
for r in after["events"]["by_rule"]:
    for st in ("pending", "delivered", "dead", "unsure"):
        key = frozenset({"rule": r["rule"], "state": st}.items())

        def get(s, rule=r["rule"], st=st):
            return sum(x[st] for x in s["events"]["by_rule"] if x["rule"] == rule)

        agree("spool events %s %s" % (r["rule"], st), by_rule.get(key, -1), get)
age = one("logmeter_oldest_pending_seconds")
if after["events"]["pending"] == before["events"]["pending"] == 0:
    if age != 0:
        fail("oldest pending %s with nothing pending" % age)
elif before["events"]["oldest_pending_age_seconds"] is not None:
    between("oldest pending age", age, before["events"]["oldest_pending_age_seconds"],
            (after["events"]["oldest_pending_age_seconds"] or 0) + 1)

# Files: the per-source sums cover every record; per-file series at most max_files reading ones.
lines = samples("logmeter_source_lines_total")
results = {"matched": "matched", "unmatched": "unmatched", "invalid": "invalid",
           "long": "long_lines"}
for src in sorted({f["source"] for f in after["files"]}):
    for res, field in results.items():
        def get(s, src=src, field=field):
            return sum(f["counters"][field] for f in s["files"] if f["source"] == src)

        agree("source %s lines %s" % (src, res),
              lines[frozenset({"source": src, "result": res}.items())], get)
per_file = samples("logmeter_lines_total")
shown = {dict(k)["file"] for k in per_file}
reading = [f for f in after["files"] if f["state"] == "reading"]
if len(shown) != min(max_files, len(reading)):
    fail("%d files with series of their own, expected min(%d, %d)" %
         (len(shown), max_files, len(reading)))
for path in shown:
    for res, field in results.items():
        def get(s, path=path, field=field):
            return [f for f in s["files"] if f["path"] == path][0]["counters"][field]

        key = frozenset({"source": [f for f in after["files"] if f["path"] == path][0]["source"],
                         "file": path, "result": res}.items())
        agree("file %s lines %s" % (path, res), per_file[key], get)
lag = samples("logmeter_file_lag_bytes")
for k, v in lag.items():
    path = dict(k)["file"]
    agree("lag %s" % path, v, lambda s, p=path: [f for f in s["files"] if f["path"] == p][0]["lag"])

# Room and health.
agree("spool bytes", one("logmeter_spool_bytes"), lambda s: s["space"]["bytes_in_use"])
agree("ingest paused", one("logmeter_ingest_paused"), lambda s: int(s["ingest"]["paused"]))
agree("degraded", one("logmeter_degraded"), lambda s: int(s["health"]["status"] == "degraded"))
agree("key refused", one("logmeter_key_refused"),
      lambda s: int(s["sender"]["state"] == "paused-auth"))
agree("sender paused", one("logmeter_sender_paused"), lambda s: int(s["sender"]["paused"]))

# Requests, by outcome, and their histogram.
if after["sender"]["running"]:
    req = samples("logmeter_requests_total")
    for outcome in after["sender"]["requests"]["by_outcome"]:
        agree("requests %s" % outcome, req[frozenset({"api": "v1", "outcome": outcome}.items())],
              lambda s, o=outcome: s["sender"]["requests"]["by_outcome"][o])
    buckets = sorted(((float(dict(k)["le"]), v) for k, v in
                      samples("logmeter_request_duration_seconds_bucket").items()))
    if [v for _, v in buckets] != sorted(v for _, v in buckets) or buckets[-1][0] != float("inf"):
        fail("histogram buckets not cumulative up to +Inf: %s" % buckets)
    count = samples("logmeter_request_duration_seconds_count")
    if list(count.values())[0] != buckets[-1][1]:
        fail("histogram count %s, +Inf bucket %s" % (list(count.values())[0], buckets[-1][1]))
    if buckets[-1][1] != sum(v for k, v in req.items()):
        fail("histogram count %s, requests by outcome %s" % (buckets[-1][1], sum(req.values())))
    agree("request durations", buckets[-1][1],
          lambda s: s["sender"]["requests"]["duration_seconds"]["count"])
print("metrics_check: %d families, %d values agree with status --json, %d files shown" %
      (len(fam), checked, len(shown)))
