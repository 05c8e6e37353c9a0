#!/usr/bin/python3
"""A fast Stripe sink for bench/send_v2.sh, on 127.0.0.1 only: accepts every meter event without
checking it (the test double, tests/stripe_double.py, checks; this only answers fast enough that
logmeter, not the answering side, is what a benchmark measures).

  POST /v2/billing/meter_event_session  a session valid 15 minutes
  POST /v2/billing/meter_event_stream   200 {} (events counted by their "identifier" keys)
  POST /v1/billing/meter_events         200 with the billing.meter_event of the identifier sent
  GET  /v1/billing/meters               one list page: --meter NAME meters that sum
  GET  /count                           {"events": N, "requests": N}

usage: sink.py --port-file PATH [--meter NAME]...
"""
import argparse
import http.server
import json
import os
import threading
import time
import urllib.parse

lock = threading.Lock()
counts = {"events": 0, "requests": 0}
meters = []


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def answer(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/count"):
            with lock:
                return self.answer(dict(counts))
        now = int(time.time())
        return self.answer({"object": "list", "url": "/v1/billing/meters", "has_more": False,
                            "data": [{"id": "mtr_test_%d" % i, "object": "billing.meter",
                                      "event_name": m, "status": "active",
                                      "customer_mapping": {"event_payload_key":
                                                           "stripe_customer_id",
                                                           "type": "by_id"},
                                      "value_settings": {"event_payload_key": "value"},
                                      "default_aggregation": {"formula": "sum"},
                                      "created": now, "updated": now}
                                     for i, m in enumerate(meters)]})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        path = self.path
        if path.endswith("/meter_event_session"):
            now = time.time()
            return self.answer({"id": "mes_bench", "object": "v2.billing.meter_event_session",
                                "authentication_token": "mes_token_bench", "created": iso(now),
                                "expires_at": iso(now + 900), "livemode": False})
        if path.endswith("/meter_event_stream"):
            k = body.count(b'"identifier"')
            with lock:
                counts["events"] += k
                counts["requests"] += 1
            return self.answer({})
        params = dict(urllib.parse.parse_qsl(body.decode("ascii", "replace")))
        with lock:
            counts["events"] += 1
            counts["requests"] += 1
        return self.answer({"object": "billing.meter_event", "identifier": params.get("identifier"),
                            "event_name": params.get("event_name"), "created": int(time.time()),
                            "livemode": False, "payload": {}, "timestamp": 0})


class Server(http.server.ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: the 16 connections logmeter opens at once
    # overflowed it, a dropped SYN is retried by the kernel after a second (TCP's initial
    # retransmission timeout, RFC 6298), and the request on that connection held the
    # sender's watermark back for the whole run (every delivery after it written as a row of
    # outcomes): the benchmark measured the sink. tests/stripe_double.py listens with 128 too.
    request_queue_size = 128
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--meter", action="append", default=[])
    a = ap.parse_args()
    meters.extend(a.meter)
    srv = Server(("127.0.0.1", 0), H)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
