#!/usr/bin/env python3
"""Closed-loop HTTP GET load: CONCURRENCY threads, one new connection per
request (the way `openssl ocsp -port` serves), for DURATION seconds.
Prints requests/s and latency percentiles as JSON. Used where wrk cannot
drive the server (openssl's responder closes every connection)."""
import http.client, json, sys, threading, time, urllib.parse

url, duration, concurrency = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
u = urllib.parse.urlsplit(url)
path = u.path + (("?" + u.query) if u.query else "")
latencies, errors, lock = [], [0], threading.Lock()
deadline = time.monotonic() + duration

def worker():
    local = []
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            c.request("GET", path)
            r = c.getresponse(); r.read(); c.close()
            if r.status != 200:
                raise RuntimeError(r.status)
            local.append(time.monotonic() - start)
        except Exception:
            with lock:
                errors[0] += 1
    with lock:
        latencies.extend(local)

threads = [threading.Thread(target=worker) for _ in range(concurrency)]
for t in threads: t.start()
for t in threads: t.join()
latencies.sort()
pct = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else None
print(json.dumps({"requests_per_s": round(len(latencies) / duration, 1), "errors": errors[0],
                  "p50_ms": pct(0.50), "p99_ms": pct(0.99)}))
