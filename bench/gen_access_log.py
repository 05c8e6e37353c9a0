#!/usr/bin/env python3
"""Generate a synthetic nginx "combined" access log for benchmarking.

Format (nginx default 'combined'):
  $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"

~85% of requests carry an api_key=<customer id> query parameter (at a random
position among other params); the rest are static assets, health checks,
logins etc. without one.  Deterministic (fixed seed).

Usage: gen_access_log.py OUT_PATH [N_LINES]
Prints a JSON summary (lines, bytes, lines_with_api_key, sum_bytes_sent_of_those).

The workload of logmeter's ingest and send benchmarks (bench/ingest.sh, bench/send.sh), copied
unchanged (but for this paragraph) from the generator the project's figures were first measured
with, so that the same seed gives the same file and figures stay comparable: 1,000,000 lines,
208,056,080 bytes, 849,617 of them with an api_key.
"""
import json
import random
import sys
import time

out_path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
rnd = random.Random(20260821)

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
customers = ["ck_" + "".join(rnd.choice(ALNUM) for _ in range(rnd.randint(12, 24)))
             for _ in range(5000)]
# a few customer ids with underscores
customers += ["cust_%d_%s" % (i, "".join(rnd.choice(ALNUM) for _ in range(6))) for i in range(500)]
ips = ["%d.%d.%d.%d" % (rnd.randint(1, 223), rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(1, 254))
       for _ in range(20000)]
ips += ["2001:db8:%x:%x::%x" % (rnd.randint(0, 0xffff), rnd.randint(0, 0xffff), rnd.randint(1, 0xffff))
        for _ in range(2000)]
users = ["-"] * 30 + ["alice", "bob", "svc-batch"]
uas = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Apache-HttpClient/4.5.14 (Java/17.0.10)",
    "axios/1.6.8",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "PostmanRuntime/7.37.3",
]
referers = ["-"] * 6 + ["https://app.example.com/dashboard", "https://www.example.com/",
                        "https://app.example.com/settings/billing?tab=usage", "https://docs.example.com/api/v2"]
api_paths = ["/api/v1/orders", "/api/v1/items", "/api/v2/items/{id}", "/api/v2/users/{id}/events",
             "/api/v2/search", "/api/v1/invoices/{id}", "/api/v2/metrics", "/v1/ingest", "/api/v2/reports/{id}/export"]
other_paths = ["/static/js/app.{h}.js", "/static/css/main.{h}.css", "/favicon.ico", "/healthz", "/login",
               "/", "/robots.txt", "/images/logo.png", "/api/v1/status", "/api/v2/search"]
extra_params = ["page={n}", "limit={n}", "sort=created_at", "q=term{n}", "fields=id,name,total", "format=json",
                "since=2026-08-{d}T00:00:00Z", "include=lines", "v=2"]
status_w = [(200, 780), (201, 40), (204, 20), (301, 5), (304, 30), (400, 25), (401, 15), (403, 10),
            (404, 40), (429, 15), (500, 10), (502, 5), (503, 5)]
statuses = [s for s, w in status_w for _ in range(w)]
methods = ["GET"] * 14 + ["POST"] * 4 + ["PUT", "DELETE"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

t0 = 1787306400  # 2026-08-21 10:00:00 UTC
n_key = 0
sum_bytes_key = 0
total_bytes = 0
with open(out_path, "w", buffering=1 << 20) as f:
    cur_sec = None
    ts = ""
    for i in range(n):
        sec = t0 + i // 1000
        if sec != cur_sec:
            cur_sec = sec
            g = time.gmtime(sec)
            ts = "%02d/%s/%04d:%02d:%02d:%02d +0000" % (g.tm_mday, MONTHS[g.tm_mon - 1], g.tm_year,
                                                      g.tm_hour, g.tm_min, g.tm_sec)
        status = rnd.choice(statuses)
        if status in (204, 304):
            size = 0
        else:
            size = int(rnd.lognormvariate(7.5, 1.6))
            if size > 5_000_000:
                size = 5_000_000
        has_key = rnd.random() < 0.85
        if has_key:
            p = rnd.choice(api_paths).replace("{id}", str(rnd.randint(1, 9_999_999)))
            params = [rnd.choice(extra_params).replace("{n}", str(rnd.randint(1, 500)))
                      .replace("{d}", "%02d" % rnd.randint(1, 28)) for _ in range(rnd.randint(0, 3))]
            cust = rnd.choice(customers)
            params.insert(rnd.randint(0, len(params)), "api_key=" + cust)
            uri = p + "?" + "&".join(params)
            method = rnd.choice(methods)
            n_key += 1
            sum_bytes_key += size
        else:
            p = rnd.choice(other_paths).replace("{h}", "%08x" % rnd.getrandbits(32))
            if rnd.random() < 0.3:
                # a query string without api_key (e.g. token= / key= decoys)
                uri = p + "?" + rnd.choice(["token=abc%d" % rnd.randint(1, 99999), "page=%d" % rnd.randint(1, 50),
                                            "my_api_key_hint=1", "key=zz%d" % rnd.randint(1, 999)])
            else:
                uri = p
            method = "GET"
        line = '%s - %s [%s] "%s %s HTTP/1.1" %d %d "%s" "%s"\n' % (
            rnd.choice(ips), rnd.choice(users), ts, method, uri, status, size,
            rnd.choice(referers), rnd.choice(uas))
        total_bytes += len(line)
        f.write(line)

print(json.dumps({"path": out_path, "lines": n, "bytes": total_bytes, "lines_with_api_key": n_key,
                  "sum_bytes_sent_with_api_key": sum_bytes_key}))
