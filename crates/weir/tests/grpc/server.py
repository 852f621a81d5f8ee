"""A gRPC server for weir's tests, on raw bytes (no generated code).

Serves weir.test.Echo (Unary, ServerStream, ClientStream, Slow, Fail) and grpc.health.v1.Health/Check.
Prints its port, then serves until its standard input closes. Every answer carries the trailing
metadata `x-served-by` (the name given as the first argument) and `x-time-left-ms` (the deadline
the server saw, -1 without one). A line `health N` on standard input sets the serving status.
"""
import sys
import threading
from concurrent import futures

import grpc

NAME = sys.argv[1] if len(sys.argv) > 1 else "server"
serving_status = [1]  # SERVING


def trailers(context):
    left = context.time_remaining()
    left_ms = -1 if left is None else int(left * 1000)
    context.set_trailing_metadata((("x-served-by", NAME), ("x-time-left-ms", str(left_ms))))


def unary(request, context):
    trailers(context)
    return request


def server_stream(request, context):
    trailers(context)
    for i in range(int(request.decode())):
        yield f"message {i}".encode()


def client_stream(requests, context):
    trailers(context)
    return b"|".join(requests)


def slow(request, context):
    trailers(context)
    done = threading.Event()
    context.add_callback(done.set)
    done.wait(float(request.decode()))
    return b"finally"


def fail(request, context):
    trailers(context)
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())


def health(request, context):
    # HealthCheckResponse { ServingStatus status = 1; }
    return bytes([0x08, serving_status[0]])


def main():
    echo = grpc.method_handlers_generic_handler("weir.test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    })
    checks = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(health),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=(echo, checks))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) == 2 and words[0] == "health":
            serving_status[0] = int(words[1])
            print("ok", flush=True)
    server.stop(0)


main()
