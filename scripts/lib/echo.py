#!/usr/bin/env python3
"""Tiny HTTP echo backend for meshgate's operations tests (Python 3 standard library only).

Same contract as the demo backend scripts/echo_backend.py: every request gets 200 with the
header `x-backend: NAME` and a JSON body {backend, method, path, host, headers}.  In addition
every request it sees is recorded (in memory when imported, as JSON lines with --log), so a test
can prove that a hostile request never reached a backend it must not reach.

    python3 scripts/lib/echo.py NAME PORT [--log FILE]      # stand-alone
    from echo import EchoBackend                             # in-process (hostile_test.py)
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default listen backlog (5) refuses connections under a load test; the
    # gateway opens many upstream connections at once.
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # A peer that goes away mid-answer (the gateway aborting a request with a broken
        # body, a load client stopping) is expected in these tests: no traceback noise.
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class EchoBackend:
    """A threaded HTTP/1.1 echo server on 127.0.0.1:port (0 = pick a free port)."""

    def __init__(self, name, port=0, log_path=None):
        self.name = name
        self.requests = []  # dicts: method, path, host, headers, time
        self.lock = threading.Lock()
        self.log_file = open(log_path, "a", buffering=1) if log_path else None
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "meshgate-test-echo"

            def log_message(self, *args):
                pass

            def _body(self):
                te = (self.headers.get("Transfer-Encoding") or "").lower()
                if "chunked" in te:
                    data = b""
                    while True:
                        line = self.rfile.readline(65537)
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline(3)
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n > 0 else b""

            def _handle(self):
                body = self._body()
                headers = {}
                for k, v in self.headers.items():
                    headers.setdefault(k.lower(), []).append(v)
                rec = {"backend": backend.name, "method": self.command, "path": self.path,
                       "host": self.headers.get("Host"), "headers": headers,
                       "body_length": len(body), "time": time.time()}
                backend._record(rec)
                payload = json.dumps(rec).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-backend", backend.name)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
            do_HEAD = do_OPTIONS = do_TRACE = _handle

        self.server = _Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, rec):
        with self.lock:
            self.requests.append(rec)
            if self.log_file:
                self.log_file.write(json.dumps(rec) + "\n")

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def count(self):
        with self.lock:
            return len(self.requests)

    def since(self, index):
        """Requests recorded after the first `index` ones."""
        with self.lock:
            return list(self.requests[index:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("port", type=int)
    ap.add_argument("--log", help="append every request as a JSON line to this file")
    args = ap.parse_args()
    b = EchoBackend(args.name, args.port, args.log)
    # Exit cleanly on SIGTERM so callers can stop it by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("echo backend %s listening on 127.0.0.1:%d (pid %d)" % (args.name, b.port, os.getpid()),
          flush=True)
    b.server.serve_forever()


if __name__ == "__main__":
    main()
