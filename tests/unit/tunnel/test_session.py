"""The tunnel's session (``FrameSession``, protocol 2), sans-IO: a gateway and an agent
session joined by shuttling bytes, no sockets.

These are the behaviours :class:`~kubegate.tunnel.transport.TunnelConnection` relies on
(``tunnel/events.py``'s ``Session``); the bytes of protocol 2 and what it refuses are in
``test_frames.py``, and the agent's HTTP/2 client keeps the same promises in
``tests/unit/agent/test_http2.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from kubegate.tunnel.events import (
    CANCEL,
    PING_INTERVAL,
    PING_TIMEOUT,
    ConnectionClosed,
    DataReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowOpened,
)
from kubegate.tunnel.frames import FrameSession
from kubegate.tunnel.wire import CONNECTION_WINDOW, STREAM_WINDOW
from tests.fixtures.heartbeat import assert_a_dead_peer_is_detected_within_ten_seconds


@dataclass
class Pair:
    """A gateway (client) and an agent (server) session wired back to back."""

    gateway: FrameSession = field(default_factory=FrameSession.gateway)
    agent: FrameSession = field(default_factory=FrameSession.agent)
    now: float = 0.0

    def shuttle(self) -> tuple[list[Event], list[Event]]:
        """Deliver bytes both ways until both are quiet; answers (gateway, agent) events."""
        at_gateway: list[Event] = []
        at_agent: list[Event] = []
        while True:
            to_agent = self.gateway.data_to_send()
            to_gateway = self.agent.data_to_send()
            if not to_agent and not to_gateway:
                return at_gateway, at_agent
            if to_agent:
                at_agent += self.agent.receive_data(to_agent, self.now)
            if to_gateway:
                at_gateway += self.gateway.receive_data(to_gateway, self.now)


@pytest.fixture
def pair() -> Pair:
    joined = Pair()
    joined.shuttle()  # nothing to exchange before the first stream: no preface, no SETTINGS
    return joined


def flow(events: list[Event], stream_id: int) -> int:
    return sum(
        e.flow_length for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def body(events: list[Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def acknowledge_all(session: FrameSession, events: list[Event]) -> None:
    for event in events:
        if isinstance(event, DataReceived):
            session.acknowledge(event.stream_id, event.flow_length)


# --- streams ----------------------------------------------------------------------------------


def test_request_and_response_round_trip_with_headers_body_and_end_stream(pair: Pair) -> None:
    stream_id = pair.gateway.open_stream("POST", "/api/v1/pods", (("x-kind", "pod"),))
    assert pair.gateway.send_data(stream_id, b"request body", end_stream=True) == 12
    _, at_agent = pair.shuttle()
    assert at_agent[0] == RequestReceived(
        stream_id, "POST", "/api/v1/pods", (("x-kind", "pod"),), end_stream=False
    )
    assert body(at_agent, stream_id) == b"request body"
    assert at_agent[-1] == StreamEnded(stream_id)

    pair.agent.respond(stream_id, 201, (("content-type", "application/json"),))
    assert pair.agent.send_data(stream_id, b'{"ok":true}', end_stream=True) == 11
    at_gateway, _ = pair.shuttle()
    assert at_gateway[0] == ResponseReceived(
        stream_id, 201, (("content-type", "application/json"),), end_stream=False
    )
    assert body(at_gateway, stream_id) == b'{"ok":true}'
    assert at_gateway[-1] == StreamEnded(stream_id)


def test_head_only_request_and_response_carry_end_stream_on_the_head(pair: Pair) -> None:
    stream_id = pair.gateway.open_stream("GET", "/version", (), end_stream=True)
    _, at_agent = pair.shuttle()
    assert at_agent == [
        RequestReceived(stream_id, "GET", "/version", (), end_stream=True),
        StreamEnded(stream_id),
    ]
    pair.agent.respond(stream_id, 204, (), end_stream=True)
    at_gateway, _ = pair.shuttle()
    assert at_gateway == [
        ResponseReceived(stream_id, 204, (), end_stream=True),
        StreamEnded(stream_id),
    ]


def test_interleaved_streams_keep_their_bodies_apart(pair: Pair) -> None:
    ids = [pair.gateway.open_stream("GET", f"/item/{n}", ()) for n in range(50)]
    for round_ in range(3):
        for n, stream_id in enumerate(ids):
            pair.gateway.send_data(stream_id, f"<{n}.{round_}>".encode(), end_stream=round_ == 2)
    _, at_agent = pair.shuttle()
    requests = [e for e in at_agent if isinstance(e, RequestReceived)]
    assert [r.path for r in requests] == [f"/item/{n}" for n in range(50)]
    for n, stream_id in enumerate(ids):
        assert body(at_agent, stream_id) == f"<{n}.0><{n}.1><{n}.2>".encode()
    assert {e.stream_id for e in at_agent if isinstance(e, StreamEnded)} == set(ids)

    for n, stream_id in reversed(list(enumerate(ids))):
        pair.agent.respond(stream_id, 200, ())
        pair.agent.send_data(stream_id, f"answer {n}".encode(), end_stream=True)
    at_gateway, _ = pair.shuttle()
    for n, stream_id in enumerate(ids):
        assert body(at_gateway, stream_id) == f"answer {n}".encode()


# --- flow control -----------------------------------------------------------------------------


def test_sender_is_held_to_the_stream_window_until_the_receiver_acknowledges(pair: Pair) -> None:
    stream_id = pair.gateway.open_stream("PUT", "/big", ())
    payload = bytes(3 * STREAM_WINDOW)
    assert pair.gateway.send_data(stream_id, payload) == STREAM_WINDOW
    assert pair.gateway.send_window(stream_id) == 0
    assert pair.gateway.send_data(stream_id, payload[STREAM_WINDOW:]) == 0

    _, at_agent = pair.shuttle()
    assert flow(at_agent, stream_id) == STREAM_WINDOW
    assert pair.gateway.send_data(stream_id, payload[STREAM_WINDOW:]) == 0  # nothing consumed

    pair.agent.acknowledge(stream_id, flow(at_agent, stream_id))
    at_gateway, _ = pair.shuttle()
    assert WindowOpened(stream_id) in at_gateway
    assert pair.gateway.send_data(stream_id, payload[STREAM_WINDOW:]) == STREAM_WINDOW


def test_body_larger_than_both_windows_flows_when_each_chunk_is_acknowledged(pair: Pair) -> None:
    stream_id = pair.gateway.open_stream("PUT", "/big", ())
    payload = bytes(range(256)) * (CONNECTION_WINDOW // 256 + 4096)
    sent = 0
    received = bytearray()
    for _ in range(1000):
        if sent == len(payload):
            break
        sent += pair.gateway.send_data(stream_id, payload[sent:], end_stream=True)
        _, at_agent = pair.shuttle()
        received += body(at_agent, stream_id)
        acknowledge_all(pair.agent, at_agent)
        pair.shuttle()
    assert sent == len(payload)
    pair.shuttle()
    assert received == payload


def test_connection_window_bounds_the_sum_of_all_streams(pair: Pair) -> None:
    streams = CONNECTION_WINDOW // STREAM_WINDOW + 2
    ids = [pair.gateway.open_stream("PUT", f"/s{n}", ()) for n in range(streams)]
    sent = [pair.gateway.send_data(stream_id, bytes(STREAM_WINDOW)) for stream_id in ids]
    assert sum(sent) == CONNECTION_WINDOW
    assert sent[-1] == 0  # the last stream has stream window but no connection window

    _, at_agent = pair.shuttle()
    first = ids[0]
    pair.agent.acknowledge(first, flow(at_agent, first))
    pair.shuttle()
    # Consuming one stream frees connection credit for the others.
    assert pair.gateway.send_data(ids[-1], bytes(STREAM_WINDOW)) == STREAM_WINDOW


def test_unacknowledged_bytes_of_a_reset_stream_are_still_owed_to_the_connection(
    pair: Pair,
) -> None:
    ids = [
        pair.gateway.open_stream("PUT", f"/s{n}", ())
        for n in range(CONNECTION_WINDOW // STREAM_WINDOW)
    ]
    for stream_id in ids:
        assert pair.gateway.send_data(stream_id, bytes(STREAM_WINDOW)) == STREAM_WINDOW
    _, at_agent = pair.shuttle()
    for stream_id in ids:
        pair.agent.reset(stream_id)
        pair.agent.acknowledge(stream_id, flow(at_agent, stream_id))
    pair.shuttle()
    fresh = pair.gateway.open_stream("PUT", "/after", ())
    assert pair.gateway.send_data(fresh, bytes(STREAM_WINDOW)) == STREAM_WINDOW


# --- reset, close, protocol errors ------------------------------------------------------------


def test_gateway_reset_reaches_the_agent_as_stream_reset(pair: Pair) -> None:
    stream_id = pair.gateway.open_stream("GET", "/watch", ())
    pair.shuttle()
    pair.gateway.reset(stream_id)
    _, at_agent = pair.shuttle()
    assert at_agent == [StreamReset(stream_id, CANCEL)]


def test_agent_reset_reaches_the_gateway_as_stream_reset(pair: Pair) -> None:
    stream_id = pair.gateway.open_stream("GET", "/watch", ())
    pair.shuttle()
    pair.agent.reset(stream_id)
    at_gateway, _ = pair.shuttle()
    assert at_gateway == [StreamReset(stream_id, CANCEL)]


def test_reset_of_one_stream_leaves_the_others_working(pair: Pair) -> None:
    doomed = pair.gateway.open_stream("GET", "/a", ())
    kept = pair.gateway.open_stream("GET", "/b", ())
    pair.shuttle()
    pair.gateway.reset(doomed)
    pair.shuttle()
    pair.agent.respond(kept, 200, ())
    pair.agent.send_data(kept, b"still here", end_stream=True)
    at_gateway, _ = pair.shuttle()
    assert body(at_gateway, kept) == b"still here"


def test_goaway_reason_reaches_the_peer_as_connection_closed(pair: Pair) -> None:
    pair.agent.close("agent shutting down")
    assert pair.agent.closed
    at_gateway, _ = pair.shuttle()
    assert at_gateway == [ConnectionClosed(0, "agent shutting down")]
    assert pair.gateway.closed


# --- heartbeat --------------------------------------------------------------------------------


def test_no_ping_is_sent_before_the_interval(pair: Pair) -> None:
    assert pair.gateway.heartbeat(PING_INTERVAL - 0.01)
    assert pair.gateway.data_to_send() == b""


def test_ping_goes_out_once_the_interval_has_passed(pair: Pair) -> None:
    assert pair.gateway.heartbeat(PING_INTERVAL)
    assert pair.gateway.data_to_send() != b""  # the PING


def test_only_one_ping_is_outstanding_at_a_time(pair: Pair) -> None:
    assert pair.gateway.heartbeat(PING_INTERVAL)
    pair.gateway.data_to_send()
    assert pair.gateway.heartbeat(2 * PING_INTERVAL)
    assert pair.gateway.data_to_send() == b""


def test_acknowledged_ping_never_times_out(pair: Pair) -> None:
    assert pair.gateway.heartbeat(PING_INTERVAL)
    pair.shuttle()  # the agent's session answers the PING by itself
    assert pair.gateway.heartbeat(PING_INTERVAL + PING_TIMEOUT + 60)


def test_unanswered_ping_makes_heartbeat_fail_at_the_timeout(pair: Pair) -> None:
    assert pair.gateway.heartbeat(PING_INTERVAL)
    pair.gateway.data_to_send()  # lost on the way: the peer never sees it
    assert pair.gateway.heartbeat(PING_INTERVAL + PING_TIMEOUT - 0.01)
    assert not pair.gateway.heartbeat(PING_INTERVAL + PING_TIMEOUT)


def test_agent_side_detects_a_dead_gateway_too(pair: Pair) -> None:
    assert pair.agent.heartbeat(PING_INTERVAL)
    pair.agent.data_to_send()
    assert not pair.agent.heartbeat(PING_INTERVAL + PING_TIMEOUT)


def test_heartbeat_after_close_sends_nothing_and_does_not_raise(pair: Pair) -> None:
    pair.gateway.close("bye")
    pair.gateway.data_to_send()  # the GOAWAY
    pair.gateway.heartbeat(PING_INTERVAL)
    assert pair.gateway.data_to_send() == b""


def test_dead_peer_is_detected_within_ten_seconds_at_the_transport_tick() -> None:
    pair = Pair()
    assert_a_dead_peer_is_detected_within_ten_seconds(pair, pair.gateway)
