#!/usr/bin/env python3
"""Small HTTP/port helpers for the shell test scripts (stdlib only, so no curl/jq needed).

    mgtest.py free-ports N                 print N distinct free TCP ports on 127.0.0.1
    mgtest.py ports-free PORT...           exit 1 (listing them) if any port is in use
    mgtest.py wait-http URL [STATUS] [T]   poll until GET URL answers STATUS (200), T s (20)
    mgtest.py get URL [HOST]               print "STATUS x-backend" of one GET
    mgtest.py json URL FIELD               print one top-level field of a JSON answer
    mgtest.py wait-json URL FIELD VALUE T  poll until str(field) == VALUE, T seconds
    mgtest.py wait-path PATH T             poll until PATH exists (e.g. an upgrade socket)
"""

import http.client
import json
import os
import socket
import sys
import time
import urllib.parse


def get(url, host=None, timeout=3.0):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        headers = {"Host": host} if host else {}
        conn.request("GET", (u.path or "/") + ("?" + u.query if u.query else ""), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("x-backend"), resp.read()
    finally:
        conn.close()


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "free-ports":
        socks, ports = [], []
        for _ in range(int(args[0])):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
        for s in socks:
            s.close()
        print(" ".join(map(str, ports)))
        return 0
    if cmd == "ports-free":
        busy = []
        for p in args:
            s = socket.socket()
            try:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", int(p))) == 0:
                    busy.append(p)
            finally:
                s.close()
        if busy:
            print("in use: " + " ".join(busy))
            return 1
        return 0
    if cmd == "wait-http":
        url = args[0]
        want = int(args[1]) if len(args) > 1 else 200
        deadline = time.monotonic() + (float(args[2]) if len(args) > 2 else 20.0)
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status, _, _ = get(url, timeout=1.0)
                if status == want:
                    return 0
                last = "status %d" % status
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        print("%s: still %s" % (url, last), file=sys.stderr)
        return 1
    if cmd == "get":
        try:
            status, backend, _ = get(args[0], args[1] if len(args) > 1 else None)
        except OSError as e:
            print("ERR %r" % e)
            return 1
        print("%d %s" % (status, backend or "-"))
        return 0
    if cmd == "json":
        status, _, body = get(args[0])
        print(json.loads(body).get(args[1]))
        return 0
    if cmd == "wait-json":
        url, field, value, t = args[0], args[1], args[2], float(args[3])
        deadline = time.monotonic() + t
        last = None
        while time.monotonic() < deadline:
            try:
                _, _, body = get(url, timeout=1.0)
                last = json.loads(body).get(field)
                if str(last) == value:
                    return 0
            except (OSError, ValueError) as e:
                last = repr(e)
            time.sleep(0.05)
        print("%s: %s is %r, wanted %s" % (url, field, last, value), file=sys.stderr)
        return 1
    if cmd == "wait-path":
        deadline = time.monotonic() + float(args[1])
        while time.monotonic() < deadline:
            if os.path.exists(args[0]):
                return 0
            time.sleep(0.05)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
