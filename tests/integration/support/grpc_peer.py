#!/usr/bin/env python3
"""A real gRPC server and client (grpcio) for tests/integration/http2.rs, without generated code: the
messages are raw bytes, the methods generic handlers of service `meshgate.test.Echo`.

  grpc_peer.py server PORT NAME            serve until killed; prints "ready" once listening
  grpc_peer.py client TARGET CASE [--ca FILE --authority HOST]
                                           run CASE, print one JSON line with what happened

Cases: unary, server_stream, client_stream, bidi, error, large, deadline, missing_method.
"""
import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "meshgate.test.Echo"


def serve(port, name):
    def unary(request, context):
        context.set_trailing_metadata((("x-backend", name),))
        return name.encode() + b":" + request

    def server_stream(request, context):
        for i in range(int(request or b"3")):
            yield f"{name}:{i}".encode()

    def client_stream(requests, context):
        return name.encode() + b":" + b"".join(requests)

    def bidi(requests, context):
        for r in requests:
            yield name.encode() + b":" + r

    def error(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())

    def large(request, context):
        return request * 2

    def slow(request, context):
        time.sleep(float(request or b"2"))
        return b"late"

    ident = lambda b: b
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
        "Error": grpc.unary_unary_rpc_method_handler(error, ident, ident),
        "Large": grpc.unary_unary_rpc_method_handler(large, ident, ident),
        "Slow": grpc.unary_unary_rpc_method_handler(slow, ident, ident),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def client(target, case, ca=None, authority=None):
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    if authority:
        options.append(("grpc.ssl_target_name_override", authority))
        options.append(("grpc.default_authority", authority))
    if ca:
        creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
        channel = grpc.secure_channel(target, creds, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    ident = lambda b: b
    m = lambda kind, name: getattr(channel, kind)(f"/{SERVICE}/{name}", request_serializer=ident,
                                                  response_deserializer=ident)
    out = {"case": case}
    try:
        if case == "unary":
            resp, call = m("unary_unary", "Unary").with_call(b"hello", timeout=10)
            out["response"] = resp.decode()
            out["trailers"] = {k: v for k, v in call.trailing_metadata()}
        elif case == "server_stream":
            out["responses"] = [r.decode() for r in m("unary_stream", "ServerStream")(b"5", timeout=10)]
        elif case == "client_stream":
            out["response"] = m("stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), timeout=10).decode()
        elif case == "bidi":
            out["responses"] = [r.decode() for r in m("stream_stream", "Bidi")(iter([b"x", b"y"]), timeout=10)]
        elif case == "error":
            m("unary_unary", "Error")(b"thing", timeout=10)
        elif case == "large":
            payload = b"z" * (3 << 20)
            resp = m("unary_unary", "Large")(payload, timeout=30)
            out["length"] = len(resp)
        elif case == "deadline":
            started = time.monotonic()
            try:
                m("unary_unary", "Slow")(b"3", timeout=0.5)
            finally:
                out["elapsed"] = time.monotonic() - started
        elif case == "missing_method":
            channel.unary_unary("/other.Service/Nothing", request_serializer=ident,
                                response_deserializer=ident)(b"", timeout=10)
        out["code"] = "OK"
    except grpc.RpcError as e:
        out["code"] = e.code().name
        out["details"] = e.details()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        args = sys.argv[2:]
        ca = authority = None
        if "--ca" in args:
            ca = args[args.index("--ca") + 1]
        if "--authority" in args:
            authority = args[args.index("--authority") + 1]
        client(args[0], args[1], ca, authority)
