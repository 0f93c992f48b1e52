#!/usr/bin/env python3
"""A real WebSocket server and client (the `websockets` package) for tests/integration/protocols.rs.

  ws_peer.py server PORT          echo server; prints "ready" once listening
  ws_peer.py client URL [CAFILE SNI]  text, binary, ping/pong and a clean close; prints JSON
"""
import asyncio
import json
import ssl
import sys

import websockets


async def serve(port):
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", port):
        print("ready", flush=True)
        await asyncio.Future()


async def client(url, ca=None, sni=None):
    kwargs = {}
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        kwargs["ssl"] = ctx
        kwargs["server_hostname"] = sni
    out = {}
    async with websockets.connect(url, **kwargs) as ws:
        await ws.send("hello")
        out["text"] = await ws.recv()
        await ws.send(bytes(range(256)) * 40)
        data = await ws.recv()
        out["binary_ok"] = data == bytes(range(256)) * 40
        pong = await ws.ping(b"p")
        await asyncio.wait_for(pong, 5)
        out["pong"] = True
        await ws.close(code=1000, reason="done")
        out["close_code"] = ws.close_code
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        tls = sys.argv[3:5] if len(sys.argv) > 4 else [None, None]
        asyncio.run(client(sys.argv[2], *tls))
