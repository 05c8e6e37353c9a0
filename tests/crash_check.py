#!/usr/bin/env python3
"""Invariants of tests/t_crash_loop.sh, checked after every crash of the agent (while it is dead)
and once more at the end. Computes the expected events of the log files independently of
logmeter's C code: lines are split into fields (as awk would), not matched with the rules'
patterns, and identifiers come from tests/identifiers.py (the layout in docs/identifiers.md).

The rules of t_crash_loop.sh's configuration, as field tests (fields split on blanks, 0-based):
  downloads  f[5] == '"GET', f[6] == '/downloads/product_2' and f[8] == '200'
                                                                -> requests, f[0], 1
  bytes      f[8] is 20x and f[9] is all digits                -> bandwidth_bytes, f[0], f[9]
  stale      f[5] == '"GET' and f[6] == '/downloads/product_3'  -> dead letter (2015 timestamps
             are outside Stripe's 35-day window: the sender never sends them)
  rejected   f[8] == '403'                                      -> dead letter (the double has no
             meter "no_such_meter": Stripe's 400 rejection)

usage: crash_check.py --state DIR --config CONF --record FILE --stats FILE --log FILE [--final]
                      LOGFILE...

The spool's file records are read with sqlite3; its events through `logmeter spool export -c
CONF` ($LOGMETER), since schema 4 stores them in batches only logmeter decodes. The export gives
what the spool holds; every expected value still comes from the log files.

Checked every time (the agent is not running):
  - the double accepted no identifier twice, nothing outside the expected deliverable set, and
    each with the expected event name, customer and value;
  - every spooled event is an expected one, with the expected content, and lies before its file's
    checkpoint; every expected event before the checkpoint is spooled (a checkpoint never passes
    an uncommitted event); the checkpoint is at a line start;
  - an event marked delivered was accepted by the double, with the timestamp the spool holds
    (events keep the timestamp they were read with); only stale/rejected events are dead;
  - the double saw no idempotency mismatch (a re-send under a key always carried the same
    parameters); a 409 for a key still being processed (the killed agent's request in flight at
    the double) is no mismatch.
With --final also: accepted == expected deliverable set exactly, nothing pending, the dead letters
are exactly the stale and rejected events, and every file is read to its end.

Prints one line of key=value counters: accepted, spooled, pending, delivered, dead, expected,
resends (the double's replays + duplicates so far), recorded_faults (faults injected so far after
which the double had the event: drop_after, reset_after, cut_after, 500rec; each causes a re-send).
Exits 1 with the reasons on a violation.
"""
import argparse
import json
import os
import pickle
import re
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from identifiers import identifier  # noqa: E402

INSTANCE = "test"
SOURCE = "nginx"
DIGITS = re.compile(rb"^[0-9]+$")
STATUS_20X = re.compile(rb"^20[0-9]$")


def expected_rows(data, off=0):
    """(offset, rule, event_name, customer, value, deliverable) for each complete line from
    `off` (a line start), and the end of the last complete line."""
    out = []
    end = data.rfind(b"\n") + 1
    while off < end:
        nl = data.index(b"\n", off)
        f = data[off:nl].split()
        if len(f) >= 10:
            get = f[5] == b'"GET'
            if get and f[6] == b"/downloads/product_2" and f[8] == b"200":
                out.append((off, "downloads", "requests", f[0].decode(), "1", True))
            if STATUS_20X.match(f[8]) and DIGITS.match(f[9]):
                out.append((off, "bytes", "bandwidth_bytes", f[0].decode(), f[9].decode(), True))
            if get and f[6] == b"/downloads/product_3":
                out.append((off, "stale", "requests", f[0].decode(), "1", False))
            if f[8] == b"403":
                out.append((off, "rejected", "no_such_meter", f[0].decode(), "1", False))
        off = nl + 1
    return out, end


def unescape(s):
    if "\\" not in s:
        return s
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m.group(1),
                                                                         m.group(1)), s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--config", required=True, help="the agent's configuration, for export")
    ap.add_argument("--record", required=True)
    ap.add_argument("--stats", required=True, help="the double's /_double/stats, saved")
    ap.add_argument("--log", required=True, help="the double's request log")
    ap.add_argument("--final", action="store_true")
    ap.add_argument("--cache", help="keeps the expected events of the lines already seen")
    ap.add_argument("logs", nargs="+")
    a = ap.parse_args()
    errors = []

    def bad(msg):
        if len(errors) < 20:
            errors.append(msg)

    db = sqlite3.connect("file:%s/spool.db?mode=ro" % a.state, uri=True, timeout=30)
    files = {}
    for fid, uid, path, ckpt, size in db.execute(
            'SELECT id, uid, path, "offset", size FROM files ORDER BY id'):
        files[path] = (fid, uid, ckpt, size)  # the latest record of a path wins
    db.close()
    events = {}
    states = {"pending": 0, "delivered": 1, "dead": 2, "unsure": 3}
    out = subprocess.run([os.environ.get("LOGMETER", "logmeter"), "spool", "export", "-c",
                          a.config], stdout=subprocess.PIPE, check=True).stdout
    for line in out.decode("utf-8").splitlines():
        o = json.loads(line)
        ident = o["identifier"]
        if ident in events:
            bad("the spool holds identifier %s twice" % ident)
        cust = [v for k, v in o["payload"].items() if k != "value"]
        events[ident] = (o["file_id"], o["line_offset"], o["rule"], o["event_name"],
                         cust[0] if cust else "", o["payload"].get("value"), o["timestamp"],
                         states[o["state"]])

    # Expected events of every file, and the checkpoint invariants. The files only grow, so the
    # rows (with their identifiers) of the lines seen last time are kept in the cache.
    cache = {}
    if a.cache and os.path.exists(a.cache):
        with open(a.cache, "rb") as fh:
            cache = pickle.load(fh)
    expected = {}  # identifier -> (event_name, customer, value, deliverable)
    by_file = {}
    for path in a.logs:
        with open(path, "rb") as fh:
            data = fh.read()
        rec = files.get(path)
        if rec is None:
            by_file[path] = None
            continue
        fid, uid, ckpt, size = rec
        old = cache.get(path)
        if old is not None and old[0] == uid and old[1] <= len(data) and \
                data[old[1] - 1:old[1]] == b"\n" and old[2] == data[:64]:
            rows, start = old[3], old[1]
        else:
            rows, start = [], 0
        more, complete = expected_rows(data, start)
        rows = rows + [r + (identifier(INSTANCE, SOURCE, uid, r[0], r[1]),) for r in more]
        if complete < start:
            complete = start
        cache[path] = (uid, complete, data[:64], rows)
        if ckpt > len(data) or (ckpt > 0 and data[ckpt - 1:ckpt] != b"\n"):
            bad("%s: checkpoint %d is not at the start of a line" % (path, ckpt))
        if a.final and ckpt != complete:
            bad("%s: read to %d of %d bytes at the end" % (path, ckpt, complete))
        for off, rule, name, cust, value, ok, ident in rows:
            expected[ident] = (name, cust, value, ok)
            ev = events.get(ident)
            if off < ckpt and ev is None:
                bad("%s: the checkpoint %d passed line %d, whose %s event is not spooled"
                    % (path, ckpt, off, rule))
            if ev is not None and (ev[0] != fid or ev[1] != off or ev[2] != rule):
                bad("%s: %s spooled for file %s offset %s rule %s, expected %s %d %s"
                    % (path, ident, ev[0], ev[1], ev[2], fid, off, rule))
        by_file[path] = fid
    checkpoints = {rec[0]: (path, rec[2]) for path, rec in files.items()}
    for ident, ev in events.items():
        path, ckpt = checkpoints.get(ev[0], (None, None))
        if path in by_file and ev[1] >= ckpt:
            bad("%s: event %s at offset %d is past the checkpoint %d"
                % (path, ident, ev[1], ckpt))

    counts = {0: 0, 1: 0, 2: 0}
    for ident, (fid, off, rule, name, cust, value, ts, state) in events.items():
        counts[state] = counts.get(state, 0) + 1
        exp = expected.get(ident)
        if exp is None:
            bad("spooled event %s (file %d offset %d rule %s) is not expected"
                % (ident, fid, off, rule))
            continue
        if (name, cust, value) != exp[:3]:
            bad("spooled event %s is %r, expected %r" % (ident, (name, cust, value), exp[:3]))
        if state == 2 and exp[3]:
            bad("deliverable event %s is a dead letter" % ident)
        if state == 1 and not exp[3]:
            bad("event %s that must not be sent is marked delivered" % ident)

    accepted = {}
    if os.path.exists(a.record):
        with open(a.record, encoding="utf-8") as fh:
            for line in fh:
                f = [unescape(x) for x in line.rstrip("\n").split("\t")]
                ident, name, cust, value, ts = f[0], f[1], f[2], f[3], int(f[4])
                if ident in accepted:
                    bad("the double accepted %s twice" % ident)
                accepted[ident] = (name, cust, value, ts)
    for ident, (name, cust, value, ts) in accepted.items():
        exp = expected.get(ident)
        if exp is None or not exp[3]:
            bad("the double accepted %s, which is not an expected deliverable event" % ident)
            continue
        if (name, cust, value) != exp[:3]:
            bad("content differs under %s: accepted %r, expected %r"
                % (ident, (name, cust, value), exp[:3]))
        ev = events.get(ident)
        if ev is None:
            bad("the double accepted %s, which is not in the spool" % ident)
        elif ev[6] != ts:
            bad("%s was accepted with timestamp %d, the spool holds %d" % (ident, ts, ev[6]))
    for ident, ev in events.items():
        if ev[7] == 1 and ident not in accepted:
            bad("%s is marked delivered but the double never accepted it" % ident)

    with open(a.stats, encoding="utf-8") as fh:
        stats = json.load(fh)
    mismatches = 0
    with open(a.log, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) > 8 and "idempotency_mismatch" in f[8].split(","):
                mismatches += 1
    if mismatches:
        bad("the double saw %d idempotency mismatches (a re-send with other parameters)"
            % mismatches)

    if a.cache:
        with open(a.cache + ".tmp", "wb") as fh:
            pickle.dump(cache, fh)
        os.replace(a.cache + ".tmp", a.cache)

    deliverable = {i for i, e in expected.items() if e[3]}
    if a.final:
        missing = deliverable - set(accepted)
        if missing:
            bad("%d expected events were never accepted, e.g. %s"
                % (len(missing), sorted(missing)[:3]))
        if counts.get(0, 0) != 0:
            bad("%d events still pending" % counts[0])
        dead_expected = {i for i, e in expected.items() if not e[3]}
        dead = {i for i, ev in events.items() if ev[7] == 2}
        if dead != dead_expected:
            bad("dead letters differ from the stale and rejected events: %d unexpected, %d "
                "missing" % (len(dead - dead_expected), len(dead_expected - dead)))
        if None in by_file.values():
            bad("files never seen by the agent: %s"
                % [p for p, f in by_file.items() if f is None])

    print("accepted=%d spooled=%d pending=%d delivered=%d dead=%d expected=%d resends=%d "
          "recorded_faults=%d" % (len(accepted), len(events), counts.get(0, 0), counts.get(1, 0),
                             counts.get(2, 0), len(deliverable),
                             stats.get("replays", 0) + stats.get("duplicates", 0),
                             sum(stats.get("faults", {}).get(k, 0) for k in
                                 ("drop_after", "reset_after", "cut_after", "500rec"))))
    if errors:
        for e in errors:
            print("crash_check: " + e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
