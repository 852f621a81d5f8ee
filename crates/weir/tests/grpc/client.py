"""A gRPC client for weir's tests: makes the call named on the command line through the target
and prints what came back as one JSON object (code, details, messages, trailing metadata)."""
import json
import sys

import grpc


def main():
    target, call = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    result = {}
    with grpc.insecure_channel(target) as channel:
        try:
            if call == "unary":
                response, outcome = channel.unary_unary("/weir.test.Echo/Unary").with_call(b"hello", timeout=timeout)
                result["messages"] = [response.decode()]
            elif call == "server_stream":
                stream = channel.unary_stream("/weir.test.Echo/ServerStream")(b"100", timeout=timeout)
                result["messages"] = [m.decode() for m in stream]
                outcome = stream
            elif call == "client_stream":
                parts = (f"part {i}".encode() for i in range(50))
                response, outcome = channel.stream_unary("/weir.test.Echo/ClientStream").with_call(parts, timeout=timeout)
                result["messages"] = [response.decode()]
            elif call == "slow":
                response, outcome = channel.unary_unary("/weir.test.Echo/Slow").with_call(b"30", timeout=timeout)
                result["messages"] = [response.decode()]
            elif call == "fail":
                response, outcome = channel.unary_unary("/weir.test.Echo/Fail").with_call(b"x", timeout=timeout)
            elif call == "other_service":
                response, outcome = channel.unary_unary("/weir.test.Other/Unary").with_call(b"hi", timeout=timeout)
                result["messages"] = [response.decode()]
            else:
                raise SystemExit(f"unknown call {call}")
            result["code"] = outcome.code().name
            result["trailers"] = dict(outcome.trailing_metadata() or ())
        except grpc.RpcError as error:
            result["code"] = error.code().name
            result["details"] = error.details()
            result["trailers"] = dict(error.trailing_metadata() or ())
    print(json.dumps(result), flush=True)


main()
