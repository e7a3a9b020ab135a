"""What the tunnel's framing (protocol 2, ``tunnel/frames.py``) costs per proxied GET.

The session is sans-IO, so this measures only the framing: a gateway session and an agent
session back to back in one process, no sockets, no event loop. One request is what a GET of
one ConfigMap through the proxy makes them do: the gateway opens a stream with kubegate's
request headers, the agent reads it, answers with the apiserver's response headers and a
658-byte body, and the gateway reads that and gives the credit back. The CPU time of both
sides together is reported per request (median of five runs). ADR 0003 has the results, with
protocol 1 (HTTP/2 by ``h2``, 260 µs) beside it; protocol 1 is gone since ADR 0004.

``python -m benchmarks.tunnel_framing [--requests N]``
"""

from __future__ import annotations

import argparse
import statistics
import time

from kubegate.tunnel.events import DataReceived, Headers
from kubegate.tunnel.frames import FrameSession

REQUEST_HEADERS: Headers = (
    ("kubegate-user", "member@example.com"),
    ("accept", "application/json"),
    ("user-agent", "kubectl/v1.32.0 (linux/amd64) kubernetes/abcdef0"),
    ("kubegate-request-id", "0123456789abcdef"),
)
RESPONSE_HEADERS: Headers = (
    ("audit-id", "4b1c7e9a-1111-2222-3333-444455556666"),
    ("cache-control", "no-cache, private"),
    ("content-type", "application/json"),
    ("x-kubernetes-pf-flowschema-uid", "7f6e5d4c-0000-1111-2222-333344445555"),
    ("x-kubernetes-pf-prioritylevel-uid", "0a1b2c3d-6666-7777-8888-999900001111"),
    ("date", "Tue, 24 Nov 2026 21:00:00 GMT"),
    ("content-length", "658"),
)
BODY = b"x" * 658
PATH = "/api/v1/namespaces/bench-get/configmaps/target"


def per_request_us(requests: int) -> float:
    gateway, agent = FrameSession.gateway(), FrameSession.agent()
    started = time.process_time()
    for _ in range(requests):
        stream_id = gateway.open_stream("GET", PATH, REQUEST_HEADERS, end_stream=True)
        agent.receive_data(gateway.data_to_send(), 0.0)
        agent.respond(stream_id, 200, RESPONSE_HEADERS)
        agent.send_data(stream_id, BODY, end_stream=True)
        for event in gateway.receive_data(agent.data_to_send(), 0.0):
            if isinstance(event, DataReceived):
                gateway.acknowledge(event.stream_id, event.flow_length)
        if credit := gateway.data_to_send():
            agent.receive_data(credit, 0.0)
    return (time.process_time() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per run")
    arguments = parser.parse_args()
    per_request_us(500)  # warm
    median = statistics.median(per_request_us(arguments.requests) for _ in range(5))
    print(f"protocol 2 (frames): {median:6.1f} µs of CPU per request, both sides")


if __name__ == "__main__":
    main()
