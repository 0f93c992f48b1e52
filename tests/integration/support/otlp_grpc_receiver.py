#!/usr/bin/env python3
"""A real gRPC server (grpcio) standing in for an OpenTelemetry collector, for tests/integration/tracing.rs
and tests/integration/access_logs.rs.

  otlp_grpc_receiver.py      prints {"port": N}, then one JSON line per call received:
                             {"method": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                              "body": "<base64 of the request message>"}

Every unary method is accepted and answered with an empty message (an empty Export*Response);
the test decodes the request bytes with the OpenTelemetry protobuf types.
"""
import base64
import json
import sys
from concurrent import futures

import grpc


class AnyUnary(grpc.GenericRpcHandler):
    def service(self, details):
        method = details.method

        def unary(request, context):
            print(json.dumps({"method": method, "body": base64.b64encode(request).decode()}), flush=True)
            return b""

        # No (de)serializers: the handler sees and returns raw bytes.
        return grpc.unary_unary_rpc_method_handler(unary)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((AnyUnary(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    try:
        sys.stdin.read()  # ends when the test closes our stdin (or dies)
    finally:
        server.stop(0)


if __name__ == "__main__":
    main()
