#!/usr/bin/env python3
"""Demo backend for meshgate: an HTTP/1.1 echo server.

Usage: scripts/echo_backend.py NAME PORT [--bind ADDR]

Answers every request (any method, any path) with 200, the header `x-backend: NAME`
and a JSON body describing the request it received:
    {"backend", "method", "path" (raw request-target incl. query), "host",
     "headers" (lower-cased names -> list of values), "body_len"}
Threaded, keeps connections alive (HTTP/1.1), standard library only.
Request header `x-echo-delay-ms: N` delays the answer by N ms (at most 60 s).
"""

import argparse
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_handler(name):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive unless the client says close
        def version_string(self):  # `Server: echo-backend` (meshgate replaces it)
            return "echo-backend"

        def log_message(self, fmt, *args):  # quiet: the demo prints meshgate's log
            pass

        def _read_body(self):
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def _handle(self):
            body = self._read_body()
            headers = {}
            for key, value in self.headers.items():
                headers.setdefault(key.lower(), []).append(value)
            delay = (self.headers.get("x-echo-delay-ms") or "").strip()
            if delay.isdigit():
                time.sleep(min(int(delay), 60000) / 1000.0)
            payload = json.dumps(
                {
                    "backend": name,
                    "method": self.command,
                    "path": self.path,
                    "host": self.headers.get("Host"),
                    "headers": headers,
                    "body_len": len(body),
                },
                indent=2,
            ).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-backend", name)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
        do_HEAD = do_OPTIONS = do_TRACE = _handle

    return Handler


def main():
    ap = argparse.ArgumentParser(description="meshgate demo echo backend")
    ap.add_argument("name", help="backend name, sent back in x-backend and the JSON body")
    ap.add_argument("port", type=int, help="TCP port to listen on")
    ap.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    args = ap.parse_args()
    server = EchoServer((args.bind, args.port), make_handler(args.name))
    # SIGTERM (what demo.sh sends) ends the process cleanly, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("echo backend %s listening on %s:%d" % (args.name, args.bind, args.port), flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
