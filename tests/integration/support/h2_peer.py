#!/usr/bin/env python3
"""Raw HTTP/2 frames against meshgate's h2c port (the `h2` package), for tests/integration/http2.rs.

  h2_peer.py PORT CASE      prints one JSON line

Cases:
  settings      the server's SETTINGS and its connection window after the preface
  rapid_reset   opens and at once resets 2,000 streams (CVE-2023-44487); reports how the
                connection ended and how many responses came
  ping_flood    sends 5,000 PINGs without reading; reports whether the connection was cut
  oversized_KIB one stream with a KIB KiB header value, then a normal one
  continuation_flood  HEADERS without END_HEADERS, then empty CONTINUATION frames until cut off
  settings_flood      20,000 SETTINGS frames without reading the ACKs
  connect       CONNECT on one stream, a normal request on the next
  zero_window   asks for a response with a zero stream window and never opens it; reports
                when (seconds) and how the stream ended
"""
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


# The most CONTINUATION frames continuation_flood sends before giving up on a cut-off.
FLOOD_FRAMES = 100_000


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return s, c


def pump(s, c, until, limit=5.0):
    """Reads events until `until(events_so_far)` or the connection closes or `limit` s pass."""
    events = []
    deadline = time.monotonic() + limit
    closed = False
    while time.monotonic() < deadline and not until(events):
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True
            break
        if not data:
            closed = True
            break
        try:
            events.extend(c.receive_data(data))
        except Exception as e:  # a protocol error on our side ends the exchange
            events.append(("error", str(e)))
            break
        out = c.data_to_send()
        if out:
            try:
                s.sendall(out)
            except OSError:
                closed = True
                break
    return events, closed


def headers(path, extra=()):
    return [(":method", "GET"), (":scheme", "http"), (":authority", "a.test"), (":path", path)] + list(extra)


def outcome(events, sid):
    """The :status a stream got, "reset" if it was reset first, None if neither."""
    for e in events:
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
            return dict(e.headers).get(":status")
        if isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
            return "reset"
    return None


def main(port, case):
    out = {"case": case}
    s, c = connect(port)
    if case == "settings":
        events, _ = pump(s, c, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev)
                         and any(isinstance(e, h2.events.WindowUpdated) and e.stream_id == 0 for e in ev), 3)
        for e in events:
            if isinstance(e, h2.events.RemoteSettingsChanged):
                out["max_concurrent_streams"] = c.remote_settings.max_concurrent_streams
                out["initial_window_size"] = c.remote_settings.initial_window_size
        out["connection_window"] = c.outbound_flow_control_window
    elif case == "rapid_reset":
        sent = 0
        try:
            for i in range(2000):
                sid = c.get_next_available_stream_id()
                c.send_headers(sid, headers(f"/reset/{i}"), end_stream=True)
                c.reset_stream(sid)
                sent += 1
                if i % 50 == 49:
                    s.sendall(c.data_to_send())
            s.sendall(c.data_to_send())
        except Exception as e:
            out["send_error"] = type(e).__name__
        events, closed = pump(s, c, lambda ev: any(isinstance(e, h2.events.ConnectionTerminated) for e in ev), 5)
        out["sent"] = sent
        out["responses"] = sum(1 for e in events if isinstance(e, h2.events.ResponseReceived))
        term = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        out["goaway"] = term[0].error_code.name if term and hasattr(term[0].error_code, "name") else (str(term[0].error_code) if term else None)
        out["closed"] = closed or bool(term)
    elif case == "ping_flood":
        try:
            for i in range(5000):
                c.ping(i.to_bytes(8, "big"))
                if i % 100 == 99:
                    s.sendall(c.data_to_send())
            s.sendall(c.data_to_send())
            out["sent"] = True
        except OSError:
            out["sent"] = False
        events, closed = pump(s, c, lambda ev: False, 3)
        out["acks"] = sum(1 for e in events if isinstance(e, h2.events.PingAckReceived))
        out["terminated"] = closed or any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
    elif case.startswith("oversized_"):
        # oversized_KIB: a stream with a KIB KiB header value, then a normal stream on the
        # same connection; reports what each got and how the connection ended.
        size = int(case.split("_")[1]) * 1024
        # Without Huffman coding: pure-Python Huffman takes minutes for a 1 MiB value.
        encode = c.encoder.encode
        c.encoder.encode = lambda headers, huffman=True: encode(headers, huffman=False)
        big = c.get_next_available_stream_id()
        c.send_headers(big, headers("/big", [("x-big", "v" * size)]), end_stream=True)
        small = c.get_next_available_stream_id()
        c.send_headers(small, headers("/small"), end_stream=True)
        try:
            s.sendall(c.data_to_send())
        except OSError:
            pass  # cut off while sending: what was received still says how
        events, closed = pump(s, c, lambda ev: any(isinstance(e, h2.events.ConnectionTerminated) for e in ev) or len([e for e in ev if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))]) >= 2, 5)
        out["big"] = outcome(events, big)
        out["small"] = outcome(events, small)
        goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        out["goaway"] = goaway[0].error_code.name if goaway else None
        out["closed"] = closed
    elif case == "continuation_flood":
        # A header block that never ends: HEADERS without END_HEADERS, then empty
        # CONTINUATION frames (CVE-2024-27316 and its kin) until the gateway ends the
        # connection, at most FLOOD_FRAMES. Paced (100 frames per 5 ms, so the whole flood
        # takes over 5 s) and read between batches: the kernel's loopback buffers hold
        # megabytes, so an unpaced flood is written whole before a busy gateway reads any
        # of it, and "sent" would say nothing about where the gateway cut it off.
        import hyperframe.frame as hf
        import select
        block = c.encoder.encode(headers("/flood"))
        batch = b"".join(hf.ContinuationFrame(1, data=b"").serialize() for _ in range(100))
        events, closed, sent = [], False, 0
        ended = lambda: closed or any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
        try:
            s.sendall(hf.HeadersFrame(1, data=block, flags=["END_STREAM"]).serialize())
            while sent < FLOOD_FRAMES and not ended():
                s.sendall(batch)
                sent += 100
                time.sleep(0.005)
                while not closed and select.select([s], [], [], 0)[0]:
                    data = s.recv(65536)
                    closed = not data
                    events.extend(c.receive_data(data) if data else [])
        except OSError:
            closed = True
        out["sent"] = sent
        more, more_closed = pump(s, c, lambda ev: ended() or any(isinstance(e, h2.events.ConnectionTerminated) for e in ev), 5)
        events += more
        goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        out["goaway"] = goaway[0].error_code.name if goaway else None
        out["closed"] = closed or more_closed
    elif case == "settings_flood":
        # SETTINGS frames sent as fast as possible without reading the ACKs.
        sent = 0
        try:
            for i in range(20000):
                c.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100 + i % 2})
                if i % 500 == 499:
                    s.sendall(c.data_to_send())
                    sent = i + 1
            s.sendall(c.data_to_send())
            sent = 20000
        except Exception:
            pass
        out["sent"] = sent
        events, closed = pump(s, c, lambda ev: any(isinstance(e, h2.events.ConnectionTerminated) for e in ev), 3)
        goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        out["goaway"] = goaway[0].error_code.name if goaway else None
        out["closed"] = closed
    elif case == "connect":
        # CONNECT (RFC 9113 §8.5) on one stream, a normal request on the next.
        tunnel = c.get_next_available_stream_id()
        c.send_headers(tunnel, [(":method", "CONNECT"), (":authority", "backend.test:443")], end_stream=False)
        normal = c.get_next_available_stream_id()
        c.send_headers(normal, headers("/after-connect"), end_stream=True)
        s.sendall(c.data_to_send())
        ended = lambda ev: {e.stream_id for e in ev if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))}
        events, closed = pump(s, c, lambda ev: {tunnel, normal} <= ended(ev), 5)
        out["connect"] = outcome(events, tunnel)
        out["normal"] = outcome(events, normal)
        out["closed"] = closed
    elif case == "zero_window":
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, headers("/stall", [("x-echo-delay-ms", "0")]), end_stream=True)
        s.sendall(c.data_to_send())
        started = time.monotonic()
        events, closed = pump(s, c, lambda ev: any(isinstance(e, (h2.events.StreamReset, h2.events.StreamEnded)) and e.stream_id == sid for e in ev), 10)
        ended = [e for e in events if isinstance(e, (h2.events.StreamReset, h2.events.StreamEnded)) and e.stream_id == sid]
        out["ended_by"] = type(ended[0]).__name__ if ended else None
        out["after_s"] = round(time.monotonic() - started, 2)
        out["closed"] = closed
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
