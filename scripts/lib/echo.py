#!/usr/bin/env python3
"""meshgate's echo backend: the demo's backends and the operations tests' (Python 3 standard
library only).

Every request gets 200 with the header `x-backend: NAME` and a JSON body describing the
request as the backend received it: {backend, method, path (raw request-target incl. query),
host, headers (lower-cased names -> list of values), body_len}. Request header
`x-echo-delay-ms: N` delays the answer by N ms (at most 60 s). Every request is also recorded
(in memory when imported, as JSON lines with --log), so a test can prove what reached which
backend. Threaded, keep-alive (HTTP/1.1).

    python3 scripts/lib/echo.py NAME PORT [--bind ADDR] [--log FILE]   # stand-alone
    from echo import EchoBackend                                        # in-process
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

    def __init__(self, name, port=0, log_path=None, bind="127.0.0.1"):
        self.name = name
        self.requests = []  # dicts: method, path, host, headers, time
        self.lock = threading.Lock()
        self.log_file = open(log_path, "a", buffering=1) if log_path else None
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive unless the client says close
            server_version = "echo-backend"  # meshgate replaces `server`
            sys_version = ""

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
                       "body_len": len(body)}
                backend._record(dict(rec, time=time.time()))
                delay = (self.headers.get("x-echo-delay-ms") or "").strip()
                if delay.isdigit():
                    time.sleep(min(int(delay), 60000) / 1000.0)
                payload = json.dumps(rec, indent=2).encode() + b"\n"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-backend", backend.name)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
            do_HEAD = do_OPTIONS = do_TRACE = _handle

        self.server = _Server((bind, port), Handler)
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
    ap.add_argument("name", help="backend name, sent back in x-backend and the JSON body")
    ap.add_argument("port", type=int, help="TCP port to listen on (0: any free port)")
    ap.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--log", help="append every request as a JSON line to this file")
    args = ap.parse_args()
    b = EchoBackend(args.name, args.port, args.log, args.bind)
    # Exit cleanly on SIGTERM so callers can stop it by PID (what demo.sh sends).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("echo backend %s listening on %s:%d (pid %d)" % (args.name, args.bind, b.port,
                                                          os.getpid()), flush=True)
    try:
        b.server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        b.server.server_close()


if __name__ == "__main__":
    main()
