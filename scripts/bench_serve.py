#!/usr/bin/env python3
"""Load benchmark of `cinefuse serve` (not a test): N predictions of one movie with a poster
from C concurrent clients against POST /api/predict; prints throughput, latency percentiles and
the server's peak resident memory at the start and at the end of the run.

Usage: scripts/bench_serve.py --url http://127.0.0.1:PORT --poster FILE [--model NAME]
                              [--requests 2000] [--clients 8] [--pid SERVER_PID]
Standard library only.
"""
import argparse
import base64
import json
import os
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounded_io as bio  # noqa: E402


def rss_kib(pid, key):
    if not pid:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--poster", required=True)
    ap.add_argument("--model")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--pid", type=int)
    a = ap.parse_args()
    body = {"movie": {"title": "A quiet house", "plot": "A family moves into an old house by the sea "
                      "and finds letters that change what they know about each other.", "year": 2004,
                      "runtime_min": 104},
            "poster_base64": base64.b64encode(bio.read_bytes(a.poster, bio.POSTER_CAP, name=f"--poster {a.poster}")).decode()}
    if a.model:
        body["model"] = a.model
    data = json.dumps(body).encode()

    def once():
        req = urllib.request.Request(a.url + "/api/predict", data=data,
                                     headers={"content-type": "application/json"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            assert r.status == 200
        return time.perf_counter() - t

    for _ in range(5):  # warm-up: the model loads on the first request
        once()
    rss_start = rss_kib(a.pid, "VmRSS")
    latencies, lock, next_i = [], threading.Lock(), [0]

    def client():
        while True:
            with lock:
                if next_i[0] >= a.requests:
                    return
                next_i[0] += 1
            dt = once()
            with lock:
                latencies.append(dt)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000
    out = {"requests": len(latencies), "clients": a.clients, "seconds": round(wall, 2),
           "per_second": round(len(latencies) / wall, 1), "p50_ms": round(pct(50), 1),
           "p90_ms": round(pct(90), 1), "p99_ms": round(pct(99), 1), "max_ms": round(latencies[-1] * 1000, 1),
           "rss_start_mib": rss_start and round(rss_start / 1024, 1),
           "rss_end_mib": a.pid and round(rss_kib(a.pid, "VmRSS") / 1024, 1),
           "peak_rss_mib": a.pid and round(rss_kib(a.pid, "VmHWM") / 1024, 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
