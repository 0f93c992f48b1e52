#!/usr/bin/env python3
"""Bounded keep-alive HTTP/1.1 load for meshgate's upgrade and reload tests (stdlib only).

N threads, each on one persistent HTTP/1.1 connection, send GET requests back to back until a
stop file appears or --duration runs out.  A response with `Connection: close` makes the thread
close and open a new connection before its next request (counted as `reconnects`: that is the
server's polite way to drain and is allowed).  Nothing is ever retried: a request that errors
(reset, EOF, timeout, non-2xx, wrong backend) counts as failed, a connect() that is refused as
refused.  Optional --close-threads send `Connection: close` on every request, so new
connections keep arriving during a listener handover.

Prints one JSON summary on stdout:
  {"requests", "ok", "failed", "refused", "connect_errors", "reconnects", "statuses",
   "backends", "errors" (first samples), "max_latency_ms", "elapsed_s"}
Exit status 0 if failed == refused == connect_errors == 0 (and ok > 0), else 1.
"""

import argparse
import http.client
import json
import os
import socket
import sys
import threading
import time
from collections import Counter


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = Counter()
        self.statuses = Counter()
        self.backends = Counter()
        self.errors = []
        self.max_latency = 0.0

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def error(self, kind, msg):
        with self.lock:
            self.c[kind] += 1
            if len(self.errors) < 20:
                self.errors.append("%.3f %s: %s" % (time.time(), kind, msg))


def worker(args, stats, stop, close_each, tid):
    conn = None
    seq = 0
    path = args.path
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
            try:
                conn.connect()
                # Small requests back to back: no Nagle delay.
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except ConnectionRefusedError as e:
                stats.error("refused", repr(e))
                conn = None
                time.sleep(0.05)  # bounded pace; this thread's next request is a new one
                continue
            except OSError as e:
                stats.error("connect_errors", repr(e))
                conn = None
                time.sleep(0.05)
                continue
        seq += 1
        headers = {"Host": args.host_header or "%s:%d" % (args.host, args.port),
                   "x-load-id": "%d-%d" % (tid, seq)}
        if close_each:
            headers["Connection"] = "close"
        t0 = time.monotonic()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
        except Exception as e:  # reset, EOF on a kept-alive connection, timeout ...
            stats.add("requests")
            stats.error("failed", "%s on request %d of thread %d" % (repr(e), seq, tid))
            conn.close()
            conn = None
            continue
        dt = time.monotonic() - t0
        stats.add("requests")
        backend = resp.getheader("x-backend")
        with stats.lock:
            stats.statuses[str(resp.status)] += 1
            stats.backends[backend or "-"] += 1
            stats.max_latency = max(stats.max_latency, dt)
        if resp.status >= 300 or (args.expect_backend and backend != args.expect_backend):
            stats.error("failed", "status %d backend %s" % (resp.status, backend))
        else:
            stats.add("ok")
        if resp.will_close or close_each:
            conn.close()
            conn = None
            if not close_each:
                stats.add("reconnects")
        if args.pace:
            time.sleep(args.pace)
    if conn is not None:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("--host-header", help="Host header (default host:port)")
    ap.add_argument("--threads", type=int, default=16, help="keep-alive clients")
    ap.add_argument("--close-threads", type=int, default=0,
                    help="extra clients that open a new connection per request")
    ap.add_argument("--duration", type=float, default=60.0, help="hard upper bound, seconds")
    ap.add_argument("--stop-file", help="stop as soon as this file exists")
    ap.add_argument("--ready-file", help="create this file once the first request succeeded")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request socket timeout")
    ap.add_argument("--pace", type=float, default=0.0, help="sleep between requests per thread")
    ap.add_argument("--expect-backend", help="x-backend every response must carry")
    args = ap.parse_args()

    stats = Stats()
    stop = threading.Event()
    threads = []
    t_start = time.monotonic()
    for i in range(args.threads + args.close_threads):
        t = threading.Thread(target=worker, args=(args, stats, stop, i >= args.threads, i),
                             daemon=True)
        t.start()
        threads.append(t)
    deadline = t_start + args.duration
    ready_written = False
    while time.monotonic() < deadline:
        if args.ready_file and not ready_written and stats.c["ok"] > 0:
            open(args.ready_file, "w").close()
            ready_written = True
        if args.stop_file and os.path.exists(args.stop_file):
            break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(args.timeout + 2)
    c = stats.c
    summary = {
        "requests": c["requests"], "ok": c["ok"], "failed": c["failed"],
        "refused": c["refused"], "connect_errors": c["connect_errors"],
        "reconnects": c["reconnects"], "statuses": dict(stats.statuses),
        "backends": dict(stats.backends), "errors": stats.errors,
        "max_latency_ms": round(stats.max_latency * 1000, 1),
        "elapsed_s": round(time.monotonic() - t_start, 2),
        "stopped_by": "stop-file" if time.monotonic() < deadline else "duration",
    }
    print(json.dumps(summary, sort_keys=True))
    good = c["ok"] > 0 and c["failed"] == 0 and c["refused"] == 0 and c["connect_errors"] == 0
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
