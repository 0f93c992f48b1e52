#!/usr/bin/env python3
"""Hostile HTTP/1.x requests against meshgate over raw sockets (operations.md §2.2, §2.4, §2.6).

Starts its own echo backends (in this process, so every request they receive is recorded) and
its own meshgate on free loopback ports, then sends each case on a fresh connection and checks:
  * the response status(es) (or the close / deadline behaviour for timing cases),
  * that no backend saw a request it must not see: nothing at all for requests that must be
    rejected, never the `admin` backend (only routed for Host admin.internal), never a path with
    a dot-segment, an encoded dot-segment or a smuggled request line,
  * that the gateway still answers a normal request afterwards (and is still running).
Prints a table and `N passed, M failed`; exit status 1 if any case failed.

Usage: scripts/hostile_test.py [BIN] [--filter SUBSTR ...] [--header-timeout S]
                               [--idle-timeout S] [--list] [-v]
BIN defaults to target/release/meshgate. Python 3 standard library only.

Routing used by the cases (policies written to a temp dir):
  Host anything, PathPrefix /public         -> backend "public"
  Host admin.internal, PathPrefix /admin    -> backend "admin"
  everything else                           -> 404 (no route)
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from echo import EchoBackend  # noqa: E402  (our stdlib echo backend, scripts/lib/echo.py)

ROOT = os.path.dirname(HERE)
H = "public.example"  # the ordinary Host of the cases
SMUGGLE = "SMUGGLED"   # marker in smuggled request lines: must never reach a backend


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --------------------------------------------------------------------------- responses

def parse_responses(buf):
    """Parse as many complete HTTP/1.x responses as `buf` holds.
    Returns (list of (status, headers{lower: value}, body), rest, need_close) where need_close
    says the last response is close-delimited (complete only when the connection closes)."""
    out = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return out, buf, False
        head = buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
        if not m:
            return out, buf, False
        status = int(m.group(1))
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), v.strip())
        rest = buf[end + 4:]
        if 100 <= status < 200 and status != 101:
            buf = rest  # interim response: skip it
            continue
        if status in (204, 304):
            out.append((status, headers, b""))
            buf = rest
            continue
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            pos = 0
            complete = False
            while True:
                le = rest.find(b"\r\n", pos)
                if le < 0:
                    break
                try:
                    size = int(rest[pos:le].split(b";")[0], 16)
                except ValueError:
                    break
                if size == 0:
                    te = rest.find(b"\r\n\r\n", le)
                    if te < 0 and rest[le:le + 4] != b"\r\n\r\n":
                        break
                    pos = (te + 4) if te >= 0 else le + 4
                    complete = True
                    break
                if len(rest) < le + 2 + size + 2:
                    break
                body += rest[le + 2:le + 2 + size]
                pos = le + 2 + size + 2
            if not complete:
                return out, buf, False
            out.append((status, headers, body))
            buf = rest[pos:]
            continue
        if "content-length" in headers:
            n = int(headers["content-length"])
            if len(rest) < n:
                return out, buf, False
            out.append((status, headers, rest[:n]))
            buf = rest[n:]
            continue
        # close-delimited body
        return out, buf, True


class Exchange:
    """Result of one raw exchange."""

    def __init__(self):
        self.responses = []
        self.closed = False       # peer closed (EOF or reset)
        self.reset = False
        self.error = None
        self.closed_after = None  # seconds from the last byte sent to the close

    @property
    def statuses(self):
        return [r[0] for r in self.responses]


def exchange(port, data, expect_n=1, linger=0.3, timeout=3.0, chunks=None, gap=0.0):
    """Send `data` (or the list `chunks` with `gap` seconds between them) on a new connection,
    read until `expect_n` responses arrived and `linger` more seconds passed without data, or the
    peer closed, or `timeout`. Sending runs in a thread so a server that answers early (431, 400)
    is read while we are still writing."""
    ex = Exchange()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent_done = [time.monotonic()]

    def sender():
        try:
            for c in (chunks if chunks is not None else [data]):
                s.sendall(c)
                if gap:
                    time.sleep(gap)
        except OSError:
            pass  # the server may close early on a rejected request
        sent_done[0] = time.monotonic()

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    buf = b""
    deadline = time.monotonic() + timeout
    got_all_at = None
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if got_all_at is not None and now - got_all_at >= linger:
                break
            s.settimeout(min(0.1, max(0.01, deadline - now)))
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                ex.closed = ex.reset = True
                break
            if not d:
                ex.closed = True
                break
            buf += d
            resps, _, _ = parse_responses(buf)
            if len(resps) >= expect_n and got_all_at is None:
                got_all_at = time.monotonic()
    except OSError as e:
        ex.error = repr(e)
    resps, rest, need_close = parse_responses(buf)
    if need_close and ex.closed:
        # last response was close-delimited: it is complete now
        end = rest.find(b"\r\n\r\n")
        m = re.match(rb"HTTP/\d\.\d (\d{3})", rest)
        if m:
            resps.append((int(m.group(1)), {}, rest[end + 4:]))
    ex.responses = resps
    if ex.closed:
        ex.closed_after = time.monotonic() - sent_done[0]
    t.join(1)
    s.close()
    return ex


def timed_close(port, first, trickle=None, every=0.5, limit=10.0):
    """Send `first`, then (optionally) `trickle` every `every` s; return (seconds until the peer
    closed or answered, status or None). None seconds = still open at `limit`."""
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    t0 = time.monotonic()
    if first:
        s.sendall(first)
    nxt = t0 + every
    buf = b""
    try:
        while time.monotonic() - t0 < limit:
            s.settimeout(0.05)
            try:
                d = s.recv(65536)
                if not d:
                    st = parse_responses(buf)[0]
                    return time.monotonic() - t0, (st[0][0] if st else None)
                buf += d
            except socket.timeout:
                pass
            except ConnectionResetError:
                return time.monotonic() - t0, None
            if trickle and time.monotonic() >= nxt:
                try:
                    s.sendall(trickle)
                except OSError:
                    return time.monotonic() - t0, None
                nxt += every
        return None, None
    finally:
        s.close()


# --------------------------------------------------------------------------- cases

def req(line, headers=None, body=b"", host=H):
    """Build a raw request. `headers` is a list of raw header lines (str or bytes)."""
    out = line.encode("latin-1") if isinstance(line, str) else line
    out += b"\r\n"
    if host is not None:
        out += b"Host: " + host.encode() + b"\r\n"
    for h in headers or []:
        out += (h.encode("latin-1") if isinstance(h, str) else h) + b"\r\n"
    return out + b"\r\n" + body


SMUGGLED_REQ = ("GET /admin/%s HTTP/1.1\r\nHost: admin.internal\r\n\r\n" % SMUGGLE).encode()

# Each case: name, what, data, expect (set of acceptable first statuses), and options:
#   n: expected number of responses (pipelining), order: list of paths in order
#   backend: None = no backend may see anything (rejected before forwarding),
#            "public" = the public backend may see the (sanitised) request,
#   path: exact path the public backend must see (normalisation cases)
#   close_ok: closing without a response is acceptable
#   close: the connection must be closed after the response(s)
CASES = []
# Responses that are rejections, which must all be counted in
# meshgate_http_requests_rejected_total (issue 4: "every rejection is counted in metrics").
REJECT_STATUSES = {400, 408, 413, 414, 431}


def case(name, what, data, expect, **kw):
    CASES.append(dict(name=name, what=what, data=data, expect=set(expect), **kw))


# framing and smuggling (Pingora's parser + RFC 9112 §6)
case("cl-te-conflict", "Content-Length and Transfer-Encoding: chunked, smuggled tail",
     req("POST /public/clte HTTP/1.1", ["Content-Length: 5", "Transfer-Encoding: chunked"],
         b"0\r\n\r\n" + SMUGGLED_REQ), {400, 200}, backend="public", close=True)
case("te-cl-conflict", "Transfer-Encoding before Content-Length, chunk hides a request",
     req("POST /public/tecl HTTP/1.1", ["Transfer-Encoding: chunked", "Content-Length: 4"],
         b"%x\r\n" % len(SMUGGLED_REQ) + SMUGGLED_REQ + b"\r\n0\r\n\r\n"),
     {400, 200}, backend="public", close=True)
case("te-double", "Transfer-Encoding: chunked twice as separate fields",
     req("POST /public/tete HTTP/1.1", ["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
         b"0\r\n\r\n" + SMUGGLED_REQ), {400}, backend=None)
case("te-unknown", "Transfer-Encoding: xchunked",
     req("POST /public/x HTTP/1.1", ["Transfer-Encoding: xchunked"], b"0\r\n\r\n"), {400, 501},
     backend=None)
case("te-not-last", "Transfer-Encoding: chunked, identity (chunked not final)",
     req("POST /public/x HTTP/1.1", ["Transfer-Encoding: chunked, identity"], b"0\r\n\r\n"),
     {400, 501}, backend=None)
case("te-space-before-colon", "'Transfer-Encoding : chunked' (space before colon)",
     req("POST /public/x HTTP/1.1", ["Transfer-Encoding : chunked", "Content-Length: 5"],
         b"0\r\n\r\n" + SMUGGLED_REQ), {400}, backend=None)
case("te-vtab", "Transfer-Encoding with a vertical tab before the value",
     req("POST /public/x HTTP/1.1", [b"Transfer-Encoding:\x0bchunked", b"Content-Length: 5"],
         b"0\r\n\r\n" + SMUGGLED_REQ), {400, 501}, backend=None)
case("te-http10", "Transfer-Encoding: chunked on HTTP/1.0",
     req("POST /public/x HTTP/1.0", ["Transfer-Encoding: chunked"], b"0\r\n\r\n"), {400},
     backend=None)
case("cl-duplicate-differing", "two Content-Length fields with different values",
     req("POST /public/x HTTP/1.1", ["Content-Length: 5", "Content-Length: 6"], b"hello!"),
     {400}, backend=None)
case("cl-list-differing", "Content-Length: 5, 6",
     req("POST /public/x HTTP/1.1", ["Content-Length: 5, 6"], b"hello!"), {400}, backend=None)
case("cl-plus", "Content-Length: +5",
     req("POST /public/x HTTP/1.1", ["Content-Length: +5"], b"hello"), {400}, backend=None)
case("cl-negative", "Content-Length: -1",
     req("POST /public/x HTTP/1.1", ["Content-Length: -1"], b""), {400}, backend=None)
case("cl-hex", "Content-Length: 0x5",
     req("POST /public/x HTTP/1.1", ["Content-Length: 0x5"], b"hello"), {400}, backend=None)
case("get-body-smuggle", "GET with a Content-Length body that looks like a request",
     req("GET /public/getbody HTTP/1.1", ["Content-Length: %d" % len(SMUGGLED_REQ)], SMUGGLED_REQ),
     {200, 400}, backend="public")
case("chunk-size-invalid", "chunked body with a non-hex chunk size",
     req("POST /public/badchunk HTTP/1.1", ["Transfer-Encoding: chunked"],
         b"zz\r\nhello\r\n0\r\n\r\n" + SMUGGLED_REQ), {400, 502}, backend="public", close_ok=True,
     close=True)
case("chunk-size-overflow", "chunk size larger than 64 bits",
     req("POST /public/bigchunk HTTP/1.1", ["Transfer-Encoding: chunked"],
         b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n" + SMUGGLED_REQ), {400, 502},
     backend="public", close_ok=True, close=True)
case("chunk-missing-crlf", "chunk data not followed by CRLF",
     req("POST /public/chunkcrlf HTTP/1.1", ["Transfer-Encoding: chunked"],
         b"5\r\nhelloXX0\r\n\r\n" + SMUGGLED_REQ), {400, 502}, backend="public", close_ok=True,
     close=True)

# header syntax
case("obs-fold", "obs-fold continuation line",
     req("GET /public/x HTTP/1.1", ["X-Folded: a", " b"]), {400}, backend=None)
case("header-no-colon", "header line without a colon",
     req("GET /public/x HTTP/1.1", ["NoColonHere"]), {400}, backend=None)
case("header-name-space", "space inside a header name",
     req("GET /public/x HTTP/1.1", ["X Bad: 1"]), {400}, backend=None)
case("header-value-nul", "NUL byte in a header value",
     req("GET /public/x HTTP/1.1", [b"X-Nul: a\x00b"]), {400}, backend=None)
case("header-value-bare-cr", "bare CR inside a header value",
     req("GET /public/x HTTP/1.1", [b"X-Cr: a\rb"]), {400}, backend=None)
case("header-name-nul", "NUL byte in a header name",
     req("GET /public/x HTTP/1.1", [b"X-\x00Nul: 1"]), {400}, backend=None)
case("header-underscore", "header name with '_' (rejected by default, like Kuma/Envoy)",
     req("GET /public/x HTTP/1.1", ["X_Forwarded_For: 1.2.3.4"]), {400}, backend=None)

# size caps (431 like Envoy; Pingora alone allows ~1 MiB and 256 fields)
case("head-one-70k-header", "one 70 KiB header (head > 64 KiB)",
     req("GET /public/x HTTP/1.1", ["X-Big: " + "a" * (70 * 1024)]), {431}, backend=None)
case("head-80x1k", "80 headers of 1 KiB (head > 64 KiB, < 100 fields)",
     req("GET /public/x HTTP/1.1", ["X-H%d: %s" % (i, "b" * 1024) for i in range(80)]), {431},
     backend=None)
case("head-120-fields", "120 short header fields (> 100)",
     req("GET /public/x HTTP/1.1", ["X-F%d: v" % i for i in range(120)]), {431}, backend=None)
# Pingora's parser stops at 256 fields with a hard-coded 400 before any gateway hook runs
# (pingora-proxy-0.9.1 src/lib.rs, read_request error path): rejected either way; the 431
# contract itself is tested by the two cases above.
case("head-1000-fields", "1000 short header fields (beyond Pingora's 256-field parser cap)",
     req("GET /public/x HTTP/1.1", ["X-F%d: v" % i for i in range(1000)]), {431, 400},
     backend=None)
case("target-70k", "70 KiB request-target", req("GET /public/" + "p" * (70 * 1024) + " HTTP/1.1"),
     {400, 414, 431}, backend=None)
case("control-90-fields", "control: 90 header fields, 40 KiB head is accepted",
     req("GET /public/ok90 HTTP/1.1", ["X-C%d: %s" % (i, "c" * 440) for i in range(90)]),
     {200}, backend="public", path="/public/ok90")

# Host
case("host-missing-11", "HTTP/1.1 without Host", req("GET /public/x HTTP/1.1", host=None), {400},
     backend=None)
case("host-duplicate", "two Host fields", req("GET /public/x HTTP/1.1", ["Host: admin.internal"]),
     {400}, backend=None)
case("host-space", "Host with a space", req("GET /public/x HTTP/1.1", host="exa mple.com"), {400},
     backend=None)
case("host-slash", "Host with a slash", req("GET /public/x HTTP/1.1", host="a/b"), {400},
     backend=None)
case("host-userinfo", "Host with userinfo", req("GET /public/x HTTP/1.1", host="u@admin.internal"),
     {400}, backend=None)
case("host-bad-port", "Host with a non-numeric port", req("GET /public/x HTTP/1.1",
                                                          host="example.com:abc"), {400},
     backend=None)
case("host-unclosed-ipv6", "Host '[::1'", req("GET /public/x HTTP/1.1", host="[::1"), {400},
     backend=None)
case("host-ctl", "Host with a control byte", req(b"GET /public/x HTTP/1.1", host="a\x01b"), {400},
     backend=None)
case("control-http10-no-host", "control: HTTP/1.0 without Host is valid",
     req("GET /public/h10 HTTP/1.0", host=None), {200}, backend="public", path="/public/h10")
case("control-host-port", "control: Host with a port still matches (port stripped)",
     req("GET /public/port HTTP/1.1", host=H + ":8080"), {200}, backend="public",
     path="/public/port")

# request-target bytes (Pingora percent-escapes and forwards them)
case("target-nul", "NUL in the request-target", req(b"GET /public/a\x00b HTTP/1.1"), {400},
     backend=None)
case("target-space", "space in the request-target", req("GET /public/a b HTTP/1.1"), {400},
     backend=None)
case("target-ctl", "control byte 0x01 in the request-target", req(b"GET /public/a\x01b HTTP/1.1"),
     {400}, backend=None)
case("target-del", "DEL (0x7f) in the request-target", req(b"GET /public/a\x7fb HTTP/1.1"), {400},
     backend=None)
case("target-quote-angle", "'<' and '\"' in the request-target",
     req('GET /public/<script>"x HTTP/1.1'), {400}, backend=None)
case("target-fragment", "'#' fragment in the request-target (never sent by clients)",
     req("GET /public/a#frag HTTP/1.1"), {400, 200}, backend="public", path="/public/a")
case("version-bad", "HTTP/9.9", req("GET /public/x HTTP/9.9"), {400, 505}, backend=None,
     close_ok=True)
case("h2-preface", "HTTP/2 prior-knowledge preface on an HTTP/1 port",
     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}, backend=None, close_ok=True)
case("connect", "CONNECT method", req("CONNECT admin.internal:443 HTTP/1.1",
                                      host="admin.internal:443"), {405}, backend=None)

# absolute-form
case("absolute-host-mismatch", "absolute-form for admin.internal with a different Host",
     req("GET http://admin.internal/admin/x HTTP/1.1"), {400}, backend=None)
case("absolute-host-mismatch-2", "absolute-form for public with Host admin.internal",
     req("GET http://public.example/admin/x HTTP/1.1", host="admin.internal"), {400}, backend=None)
case("absolute-userinfo", "absolute-form with userinfo",
     req("GET http://u@public.example/public/x HTTP/1.1"), {400}, backend=None)

# path normalisation before routing (Kuma: normalize_path + merge_slashes +
# UNESCAPE_AND_REDIRECT for %2F/%5C). The backend must see the normalised path.
case("dot-segment-escape", "/public/../admin must not reach the admin backend",
     req("GET /public/../admin/x HTTP/1.1"), {404, 400}, backend=None)
case("dot-segment-escape-admin-host", "/public/../admin with Host admin.internal -> admin, normalised",
     req("GET /public/../admin/x HTTP/1.1", host="admin.internal"), {200, 400}, backend="admin",
     path="/admin/x")
case("encoded-dot-segment", "/public/%2e%2e/admin", req("GET /public/%2e%2e/admin/x HTTP/1.1"),
     {404, 400}, backend=None)
case("encoded-dot-segment-upper", "/public/%2E%2E/%2E%2E/etc/passwd",
     req("GET /public/%2E%2E/%2E%2E/etc/passwd HTTP/1.1"), {404, 400}, backend=None)
case("dot-segment-inside", "/public/a/../b is forwarded as /public/b",
     req("GET /public/a/../b HTTP/1.1"), {200}, backend="public", path="/public/b")
case("dot-segment-single", "/public/./c is forwarded as /public/c",
     req("GET /public/./c HTTP/1.1"), {200}, backend="public", path="/public/c")
case("dot-segment-above-root", "/../public/d: dot-segments above the root are dropped",
     req("GET /../public/d HTTP/1.1"), {200, 400}, backend="public", path="/public/d")
case("merge-slashes", "/public//e///f is forwarded as /public/e/f",
     req("GET /public//e///f HTTP/1.1"), {200}, backend="public", path="/public/e/f")
case("double-slash-prefix", "//public/g is forwarded as /public/g",
     req("GET //public/g HTTP/1.1"), {200}, backend="public", path="/public/g")
case("encoded-slash", "/public%2Fh: %2F is unescaped and redirected (or rejected), never forwarded",
     req("GET /public%2Fh HTTP/1.1"), {301, 302, 303, 307, 308, 400, 404}, backend=None)
case("encoded-slash-traversal", "/public/..%2Fadmin/x",
     req("GET /public/..%2Fadmin/x HTTP/1.1"), {301, 302, 303, 307, 308, 400, 404}, backend=None)
case("encoded-backslash-traversal", "/public/..%5Cadmin/x",
     req("GET /public/..%5Cadmin/x HTTP/1.1"), {301, 302, 303, 307, 308, 400, 404}, backend=None)
case("prefix-segment-boundary", "/publicity must not match PathPrefix /public",
     req("GET /publicity HTTP/1.1"), {404}, backend=None)

# pipelining (RFC 9112 §9.3.2: responses in request order)
case("pipelined-3", "three pipelined GETs answered in order",
     req("GET /public/p1 HTTP/1.1") + req("GET /public/p2 HTTP/1.1") + req("GET /public/p3 HTTP/1.1"),
     {200}, n=3, backend="public", order=["/public/p1", "/public/p2", "/public/p3"])
case("pipelined-after-404", "pipelined: a 404 then a routed request, in order",
     req("GET /nowhere HTTP/1.1") + req("GET /public/p4 HTTP/1.1"), {404}, n=2, backend="public",
     order=[None, "/public/p4"])
case("pipelined-bad-second", "pipelined: a good request then a malformed one (400, close)",
     req("GET /public/p5 HTTP/1.1") + req("GET /public/p6 HTTP/1.1", ["X Bad: 1"]),
     {200}, n=2, backend="public", order=["/public/p5", None], second={400}, close=True)
case("pipelined-after-chunked", "pipelined: a chunked upload (extension, trailer), then a GET, in order",
     req("POST /public/c1 HTTP/1.1", ["Transfer-Encoding: chunked"], b"5;a=b\r\nhello\r\n0\r\nx-t: 1\r\n\r\n")
     + req("GET /public/c2 HTTP/1.1"),
     {200}, n=2, backend="public", order=["/public/c1", "/public/c2"])
case("pipelined-bad-after-chunked",
     "pipelined: a chunked upload, then a head with an underscore name (checked: 400, close)",
     req("POST /public/c3 HTTP/1.1", ["Transfer-Encoding: chunked"], b"5;a=b\r\nhello\r\n0\r\nx-t: 1\r\n\r\n")
     + req("GET /public/c4 HTTP/1.1", ["X_Bad: 1"]),
     {200}, n=2, backend="public", order=["/public/c3", None], second={400}, close=True)


TIMING = ["slowloris-trickle", "slowloris-silent", "idle-keepalive"]


# --------------------------------------------------------------------------- harness

class Gateway:
    def __init__(self, binary, workdir, extra):
        self.binary = binary
        self.workdir = workdir
        self.extra = extra
        self.proc = None
        self.log_path = os.path.join(workdir, "meshgate.log")

    def start(self, policies, port_admin):
        log = open(self.log_path, "a")
        cmd = [self.binary, "--policies", policies, "--bind", "127.0.0.1",
               "--admin", "127.0.0.1:%d" % port_admin] + self.extra
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn")))
        self.admin = port_admin
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                ex = exchange(port_admin, req("GET /ready HTTP/1.1", host="127.0.0.1"), linger=0,
                              timeout=1)
                if ex.statuses[:1] == [200]:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast stop
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


POLICIES = """\
type: MeshGateway
mesh: default
name: edge-gateway
selectors:
- match:
    kuma.io/service: edge-gateway
conf:
  listeners:
  - port: {lport}
    protocol: HTTP
    tags:
      port: http-hostile
---
type: MeshHTTPRoute
name: hostile-route
mesh: default
spec:
  targetRef:
    kind: MeshGateway
    name: edge-gateway
  to:
  - targetRef:
      kind: Mesh
    rules:
    - matches:
      - path:
          type: PathPrefix
          value: /public
      default:
        backendRefs:
        - kind: MeshService
          name: public
  - targetRef:
      kind: Mesh
    hostnames:
    - admin.internal
    rules:
    - matches:
      - path:
          type: PathPrefix
          value: /admin
      default:
        backendRefs:
        - kind: MeshService
          name: admin
---
type: Dataplane
mesh: default
name: edge-gateway-1
networking:
  address: 127.0.0.1
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: edge-gateway
---
type: Dataplane
mesh: default
name: public-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {public}
    tags:
      kuma.io/service: public
      kuma.io/protocol: http
---
type: Dataplane
mesh: default
name: admin-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {admin}
    tags:
      kuma.io/service: admin
      kuma.io/protocol: http
"""


def bad_hit(rec, allowed_backend, allowed_path):
    """Why a backend request is forbidden, or None."""
    path = rec["path"]
    low = path.lower()
    if SMUGGLE.lower() in low or SMUGGLE in json.dumps(rec["headers"]):
        return "smuggled request reached %s" % rec["backend"]
    if allowed_backend is None:
        return "%s saw %s %s (request should have been rejected)" % (rec["backend"], rec["method"],
                                                                     path)
    if rec["backend"] != allowed_backend:
        return "%s saw %s %s (only %s may)" % (rec["backend"], rec["method"], path, allowed_backend)
    segs = low.split("?")[0]
    if "/../" in segs + "/" or "/./" in segs + "/" or "%2e" in segs or "//" in segs or "%2f" in segs \
            or "%5c" in segs:
        return "%s saw an unnormalised path %s" % (rec["backend"], path)
    if allowed_path is not None and path.split("?")[0] != allowed_path:
        return "%s saw %s, expected the normalised %s" % (rec["backend"], path, allowed_path)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bin", nargs="?", default=os.path.join(ROOT, "target", "release", "meshgate"))
    ap.add_argument("--filter", action="append", default=[])
    ap.add_argument("--header-timeout", type=float, default=2.0,
                    help="passed to meshgate --header-timeout (slowloris deadline), seconds")
    ap.add_argument("--idle-timeout", type=float, default=3.0,
                    help="passed to meshgate --idle-timeout (keep-alive idle), seconds")
    ap.add_argument("--margin", type=float, default=1.5, help="allowed lateness of a deadline, s")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    names = [c["name"] for c in CASES] + TIMING + ["rejections-counted"]
    if args.list:
        for c in CASES:
            print("%-32s %s" % (c["name"], c["what"]))
        for n in TIMING + ["rejections-counted"]:
            print(n)
        return 0
    sel = lambda n: not args.filter or any(f in n for f in args.filter)  # noqa: E731
    if not os.access(args.bin, os.X_OK):
        print("hostile_test: no meshgate binary at %s (cargo build --release)" % args.bin,
              file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="meshgate-hostile-")
    public = EchoBackend("public").start()
    admin = EchoBackend("admin").start()
    backends = [public, admin]
    lport, aport = free_port(), free_port()
    pol = os.path.join(work, "policies")
    os.makedirs(pol)
    with open(os.path.join(pol, "hostile.yaml"), "w") as f:
        f.write(POLICIES.format(lport=lport, public=public.port, admin=admin.port))

    def ival(x):
        return str(int(x)) if float(x).is_integer() else str(x)

    extra = ["--header-timeout", ival(args.header_timeout), "--idle-timeout", ival(args.idle_timeout)]
    gw = Gateway(args.bin, work, extra)
    results = []  # (name, ok, expected, got, note)
    try:
        if not gw.start(pol, aport):
            print("hostile_test: meshgate did not become ready:\n" + gw.log_tail(), file=sys.stderr)
            return 1

        def liveness(tag):
            if not gw.alive():
                return "gateway process exited (status %s)" % gw.proc.returncode
            try:
                ex = exchange(lport, req("GET /public/alive-%s HTTP/1.1" % tag), linger=0, timeout=3)
            except OSError as e:
                return "normal request afterwards failed: %r" % e
            if ex.statuses[:1] != [200] or ex.responses[0][1].get("x-backend") != "public":
                return "normal request afterwards got %s" % (ex.statuses or "no response")
            return None

        def hits_since(marks):
            out = []
            for b, m in zip(backends, marks):
                out += [r for r in b.since(m) if "/public/alive-" not in r["path"]]
            return out

        observed_rejections = 0
        for c in CASES:
            if not sel(c["name"]):
                continue
            marks = [b.count() for b in backends]
            n = c.get("n", 1)
            try:
                ex = exchange(lport, c["data"], expect_n=n, linger=0.4 if n == 1 else 0.6)
            except OSError as e:
                ex = Exchange()
                ex.error = repr(e)
            time.sleep(0.05)  # let a backend finish recording
            hits = hits_since(marks)
            problems = []
            st = ex.statuses
            if not st:
                if not (c.get("close_ok") and ex.closed):
                    problems.append("no response" + (" (connection reset)" if ex.reset else
                                                     " (closed)" if ex.closed else ""))
            elif st[0] not in c["expect"]:
                problems.append("status %d" % st[0])
            if n > 1:
                if len(st) < n:
                    problems.append("%d of %d responses" % (len(st), n))
                elif "second" in c and st[1] not in c["second"]:
                    problems.append("second status %d" % st[1])
                for i, want in enumerate(c.get("order", [])):
                    if want is None or i >= len(ex.responses):
                        continue
                    try:
                        seen = json.loads(ex.responses[i][2]).get("path")
                    except ValueError:
                        seen = None
                    if seen != want:
                        problems.append("response %d is for %s, expected %s" % (i + 1, seen, want))
            if len(st) > n:
                problems.append("%d extra response(s) %s: a smuggled request was parsed" %
                                (len(st) - n, st[n:]))
            if c.get("close") and not ex.closed and st and st[-1] >= 400:
                problems.append("connection left open after an error")
            # backends
            path = c.get("path")
            allowed = c.get("backend")
            for r in hits:
                why = bad_hit(r, allowed, path if n == 1 else None)
                if why is None and st and st[0] >= 400 and c.get("backend") and not (
                        c.get("close_ok") or n > 1 or c["name"].startswith(("cl-te", "te-cl"))):
                    why = "%s saw %s although the gateway answered %d" % (r["backend"], r["path"], st[0])
                if why:
                    problems.append(why)
            if path and st and st[0] == 200 and not any(r["path"].split("?")[0] == path for r in hits):
                problems.append("backend did not see %s" % path)
            live = liveness(c["name"])
            if live:
                problems.append(live)
                if not gw.alive():
                    gw.start(pol, aport)  # keep going so the table is complete
            got = ",".join(map(str, st)) or ("reset" if ex.reset else "closed" if ex.closed else "none")
            if ex.closed and st:
                got += "+close"
            redirects = {301, 302, 303, 307, 308}
            exp = "/".join((["3xx"] if redirects <= c["expect"] else []) +
                           [str(x) for x in sorted(c["expect"] - redirects)])
            if n > 1:
                exp = "%dx in order" % n
            results.append((c["name"], not problems, exp, got, "; ".join(problems)))
            observed_rejections += sum(1 for x in st[:n] if x in REJECT_STATUSES)
            if not st and ex.closed:
                observed_rejections += 1  # refused by closing: still a rejection
            if args.verbose:
                print("%s: %s -> %s %s" % (c["name"], c["what"], got, hits and
                                           [(r["backend"], r["path"]) for r in hits]))

        ht, it, mg = args.header_timeout, args.idle_timeout, args.margin
        if sel("slowloris-trickle"):
            # Headers trickle in, a line every 0.5 s: per-read timeouts never fire, only a
            # whole-head deadline does.
            marks = [b.count() for b in backends]
            took, status = timed_close(lport, b"GET /public/slow HTTP/1.1\r\nHost: " + H.encode() +
                                       b"\r\n", trickle=b"X-Slow: 1\r\n", every=0.5, limit=ht + mg + 3)
            problems = []
            if took is None or took > ht + mg:
                problems.append("still open after %.1fs (deadline %.1fs)" % (took or ht + mg + 3, ht))
            if status not in (None, 408, 400):
                problems.append("status %s" % status)
            hits = hits_since(marks)
            if hits:
                problems.append("backend saw %s" % hits[0]["path"])
            live = liveness("slowloris")
            if live:
                problems.append(live)
            observed_rejections += 1 if took is not None else 0
            results.append(("slowloris-trickle", not problems, "close<=%.1fs" % (ht + mg),
                            "closed %.1fs%s" % (took, " %s" % status if status else "") if took else "open",
                            "; ".join(problems)))
        if sel("slowloris-silent"):
            took, status = timed_close(lport, b"", limit=ht + mg + 3)
            problems = []
            if took is None or took > ht + mg:
                problems.append("idle new connection still open after %.1fs" % (took or ht + mg + 3))
            live = liveness("silent")
            if live:
                problems.append(live)
            observed_rejections += 1 if took is not None else 0
            results.append(("slowloris-silent", not problems, "close<=%.1fs" % (ht + mg),
                            "closed %.1fs" % took if took else "open", "; ".join(problems)))
        if sel("idle-keepalive"):
            # One full request, then silence: the keep-alive connection must be closed after
            # the idle timeout (and not before the response).
            s = socket.create_connection(("127.0.0.1", lport), timeout=3)
            s.sendall(req("GET /public/idle HTTP/1.1"))
            buf = b""
            t_resp = None
            took = None
            t_end = time.monotonic() + it + mg + 3
            while time.monotonic() < t_end:
                s.settimeout(0.05)
                try:
                    d = s.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    d = b""
                if not d:
                    took = time.monotonic() - (t_resp or time.monotonic())
                    break
                buf += d
                if t_resp is None and parse_responses(buf)[0]:
                    t_resp = time.monotonic()
            s.close()
            problems = []
            if t_resp is None:
                problems.append("no response to the first request")
            elif took is None:
                problems.append("still open %.1fs after the response" % (it + mg + 3))
            elif took > it + mg:
                problems.append("closed %.1fs after the response (idle timeout %.1fs)" % (took, it))
            live = liveness("idle")
            if live:
                problems.append(live)
            results.append(("idle-keepalive", not problems, "close<=%.1fs" % (it + mg),
                            "closed %.1fs" % took if took is not None else "open",
                            "; ".join(problems)))
        if sel("rejections-counted"):
            # Every rejection is counted in metrics (issue 4 item 3).
            problems = []
            ex = exchange(aport, req("GET /metrics HTTP/1.1", host="127.0.0.1"), linger=0.2, timeout=3)
            body = ex.responses[0][2].decode("utf-8", "replace") if ex.responses else ""
            total = 0.0
            reasons = set()
            for line in body.splitlines():
                if line.startswith("meshgate_http_requests_rejected_total"):
                    m = re.search(r'reason="([^"]*)"', line)
                    if m:
                        reasons.add(m.group(1))
                    try:
                        total += float(line.rsplit(" ", 1)[1])
                    except ValueError:
                        pass
            if not ex.statuses or ex.statuses[0] != 200:
                problems.append("/metrics answered %s" % (ex.statuses or "nothing"))
            elif total < max(observed_rejections, 1):
                problems.append("meshgate_http_requests_rejected_total = %g, but this run saw %d "
                                "rejections (400/408/413/414/431 or a close); reasons counted: %s"
                                % (total, observed_rejections, ",".join(sorted(reasons)) or "none"))
            results.append(("rejections-counted", not problems, ">=%d counted" % observed_rejections,
                            "%g counted" % total, "; ".join(problems)))
    finally:
        gw.stop()
        for b in backends:
            b.stop()
        if results and not all(r[1] for r in results):
            tail = gw.log_tail(15)
            if tail:
                print("---- meshgate log (last lines)\n" + tail)
        shutil.rmtree(work, ignore_errors=True)

    w = max(len(r[0]) for r in results) if results else 10
    print("%-*s  %-6s %-18s %-22s %s" % (w, "case", "result", "expected", "got", "why"))
    for name, ok, exp, got, note in results:
        print("%-*s  %-6s %-18s %-22s %s" % (w, name, "PASS" if ok else "FAIL", exp, got[:22], note))
    p = sum(1 for r in results if r[1])
    f = len(results) - p
    print("%d passed, %d failed" % (p, f))
    unknown = [n for n in args.filter if not any(n in x for x in names)]
    if unknown:
        print("no case matches filter %s" % unknown, file=sys.stderr)
    return 0 if f == 0 and results else 1


if __name__ == "__main__":
    sys.exit(main())
