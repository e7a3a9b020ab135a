"""The agent's HTTP/2 client for kube-apiserver (``agent/http2.py``), sans-IO: streams and
flow control.

The peer is a real HTTP/2 server state machine (``tests/unit/agent/http2_peer.py``) standing in
for kube-apiserver. These are the promises :class:`~kubegate.tunnel.transport.TunnelConnection`
relies on, as ``tests/unit/tunnel/test_session.py`` checks them for the tunnel's own session;
resets, protocol errors, heartbeat and fuzzing are in ``test_http2_failures.py``. (Against a
real kube-apiserver: ``tests/e2e/test_agent_proxy.py``.)
"""

from __future__ import annotations

import h2.events
import h2.exceptions
import pytest

from kubegate.agent.http2 import CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW
from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.events import ResponseReceived, StreamEnded, WindowOpened
from tests.fixtures.http2_peer import AUTHORITY, Pair, body, flow, joined_pair


@pytest.fixture
def pair() -> Pair:
    return joined_pair()


# --- streams ----------------------------------------------------------------------------------


def test_a_request_reaches_the_server_with_its_authority_path_and_headers(pair: Pair) -> None:
    stream_id = pair.client.open_stream(
        "GET", "/api/v1/pods?watch=1", (("accept", "application/json"),), end_stream=True
    )
    _, at_server = pair.shuttle()
    (request,) = [e for e in at_server if isinstance(e, h2.events.RequestReceived)]
    assert request.stream_id == stream_id
    assert list(request.headers or []) == [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", AUTHORITY.encode()),
        (b":path", b"/api/v1/pods?watch=1"),
        (b"accept", b"application/json"),
    ]
    assert any(isinstance(e, h2.events.StreamEnded) for e in at_server)


def test_a_response_arrives_as_head_body_and_end(pair: Pair) -> None:
    stream_id = pair.client.open_stream("GET", "/api/v1/pods", (), end_stream=True)
    pair.shuttle()
    pair.server.send_headers(stream_id, [(":status", "200"), ("content-type", "application/json")])
    pair.server.send_data(stream_id, b'{"ok":true}', end_stream=True)
    at_client, _ = pair.shuttle()
    assert at_client[0] == ResponseReceived(
        stream_id, 200, (("content-type", "application/json"),), end_stream=False
    )
    assert body(at_client, stream_id) == b'{"ok":true}'
    assert at_client[-1] == StreamEnded(stream_id)


def test_a_head_only_response_carries_end_stream_on_the_head(pair: Pair) -> None:
    stream_id = pair.client.open_stream("GET", "/version", (), end_stream=True)
    pair.shuttle()
    pair.answer(stream_id, 204)
    at_client, _ = pair.shuttle()
    assert at_client == [
        ResponseReceived(stream_id, 204, (), end_stream=True),
        StreamEnded(stream_id),
    ]


def test_interleaved_streams_keep_their_bodies_apart(pair: Pair) -> None:
    ids = [pair.client.open_stream("GET", f"/item/{n}", (), end_stream=True) for n in range(50)]
    pair.shuttle()
    for n, stream_id in reversed(list(enumerate(ids))):
        pair.answer(stream_id, 200, f"answer {n}".encode())
    at_client, _ = pair.shuttle()
    for n, stream_id in enumerate(ids):
        assert body(at_client, stream_id) == f"answer {n}".encode()
    assert {e.stream_id for e in at_client if isinstance(e, StreamEnded)} == set(ids)


def test_the_client_never_answers_a_stream(pair: Pair) -> None:
    with pytest.raises(TunnelProtocolError, match="cannot answer"):
        pair.client.respond(1, 200, ())


def test_server_push_is_turned_off(pair: Pair) -> None:
    stream_id = pair.client.open_stream("GET", "/api/v1/pods", (), end_stream=True)
    pair.shuttle()
    with pytest.raises(h2.exceptions.ProtocolError):
        pair.server.push_stream(stream_id, 2, [(":method", "GET"), (":path", "/x")])


# --- flow control -----------------------------------------------------------------------------


def test_the_server_is_held_to_the_stream_window_until_the_client_acknowledges(
    pair: Pair,
) -> None:
    stream_id = pair.client.open_stream("GET", "/big", (), end_stream=True)
    pair.shuttle()
    pair.server.send_headers(stream_id, [(":status", "200")])
    assert pair.server.local_flow_control_window(stream_id) == STREAM_WINDOW
    for _ in range(STREAM_WINDOW // MAX_FRAME):
        pair.server.send_data(stream_id, bytes(MAX_FRAME))
    assert pair.server.local_flow_control_window(stream_id) == 0

    at_client, _ = pair.shuttle()
    assert flow(at_client, stream_id) == STREAM_WINDOW
    assert pair.server.local_flow_control_window(stream_id) == 0  # nothing consumed yet

    pair.client.acknowledge(stream_id, flow(at_client, stream_id))
    pair.shuttle()
    assert pair.server.local_flow_control_window(stream_id) == STREAM_WINDOW


def test_the_connection_window_bounds_the_sum_of_all_streams(pair: Pair) -> None:
    streams = CONNECTION_WINDOW // STREAM_WINDOW + 1
    ids = [pair.client.open_stream("GET", f"/s{n}", (), end_stream=True) for n in range(streams)]
    pair.shuttle()
    for stream_id in ids:
        pair.server.send_headers(stream_id, [(":status", "200")])
    sent = 0
    for stream_id in ids:
        while (window := pair.server.local_flow_control_window(stream_id)) > 0:
            size = min(window, MAX_FRAME)
            pair.server.send_data(stream_id, bytes(size))
            sent += size
    assert sent == CONNECTION_WINDOW
    assert pair.server.local_flow_control_window(ids[-1]) == 0

    at_client, _ = pair.shuttle()
    pair.client.acknowledge(ids[0], flow(at_client, ids[0]))
    pair.shuttle()
    # Consuming one stream frees connection credit for the others.
    assert pair.server.local_flow_control_window(ids[-1]) == STREAM_WINDOW


def test_unacknowledged_bytes_of_a_reset_stream_are_still_owed_to_the_connection(
    pair: Pair,
) -> None:
    ids = [
        pair.client.open_stream("GET", f"/s{n}", (), end_stream=True)
        for n in range(CONNECTION_WINDOW // STREAM_WINDOW)
    ]
    pair.shuttle()
    for stream_id in ids:
        pair.server.send_headers(stream_id, [(":status", "200")])
        for _ in range(STREAM_WINDOW // MAX_FRAME):
            pair.server.send_data(stream_id, bytes(MAX_FRAME))
    at_client, _ = pair.shuttle()
    for stream_id in ids:
        pair.client.reset(stream_id)
        pair.client.acknowledge(stream_id, flow(at_client, stream_id))
    pair.shuttle()
    fresh = pair.client.open_stream("GET", "/after", (), end_stream=True)
    pair.shuttle()
    pair.server.send_headers(fresh, [(":status", "200")])
    assert pair.server.local_flow_control_window(fresh) == STREAM_WINDOW


def test_the_client_is_held_to_the_servers_window_until_it_reads(pair: Pair) -> None:
    stream_id = pair.client.open_stream("PUT", "/upload", ())
    window = pair.client.send_window(stream_id)
    assert window == 65_535  # the server's initial stream window: it never raised it
    assert pair.client.send_data(stream_id, bytes(2 * window)) == window
    assert pair.client.send_window(stream_id) == 0
    _, at_server = pair.shuttle()
    received = sum(
        e.flow_controlled_length or 0 for e in at_server if isinstance(e, h2.events.DataReceived)
    )
    pair.server.acknowledge_received_data(received, stream_id)
    at_client, _ = pair.shuttle()
    assert WindowOpened(stream_id) in at_client
    assert pair.client.send_data(stream_id, bytes(window), end_stream=True) == window
