"""The tunnel's sessions, sans-IO: two sessions joined by shuttling bytes, no sockets.

Every test on a :class:`Pair` runs on both protocols: 1 (HTTP/2, ``TunnelSession``) and 2
(kubegate's framing, ``FrameSession``), which promise the same behaviour. Tests of raw HTTP/2
bytes are protocol 1's; protocol 2's own are in ``test_frames.py``.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.frames import FrameSession
from kubegate.tunnel.session import (
    CONNECTION_WINDOW,
    MAX_FRAME,
    PING_INTERVAL,
    PING_TIMEOUT,
    STREAM_WINDOW,
    ConnectionClosed,
    DataReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TunnelSession,
    WindowOpened,
)
from kubegate.tunnel.transport import TICK

Session = TunnelSession | FrameSession
SESSIONS: dict[str, type[TunnelSession] | type[FrameSession]] = {
    "h2": TunnelSession,
    "frames": FrameSession,
}

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CANCEL = 0x8
DATA, SETTINGS = 0x0, 0x4


def frame(
    kind: int, flags: int, stream_id: int, payload: bytes, length: int | None = None
) -> bytes:
    """One raw HTTP/2 frame; ``length`` may lie about the payload."""
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload


@dataclass
class Pair:
    """A gateway (client) and an agent (server) session wired back to back."""

    gateway: Session = field(default_factory=lambda: TunnelSession(client=True))
    agent: Session = field(default_factory=lambda: TunnelSession(client=False))
    now: float = 0.0

    @classmethod
    def of(cls, kind: str) -> Pair:
        session = SESSIONS[kind]
        return cls(session(client=True), session(client=False))

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


@pytest.fixture(params=sorted(SESSIONS))
def pair(request: pytest.FixtureRequest) -> Pair:
    joined = Pair.of(request.param)
    joined.shuttle()  # prefaces, settings, the connection window's WINDOW_UPDATE
    return joined


def flow(events: list[Event], stream_id: int) -> int:
    return sum(
        e.flow_length for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def body(events: list[Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def acknowledge_all(session: Session, events: list[Event]) -> None:
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


def test_http1_request_instead_of_the_preface_is_a_protocol_error() -> None:
    agent = TunnelSession(client=False)
    with pytest.raises(TunnelProtocolError):
        agent.receive_data(b"GET / HTTP/1.1\r\nHost: agent\r\n\r\n", 0.0)
    assert agent.closed


def test_data_frame_instead_of_the_servers_settings_is_a_protocol_error() -> None:
    gateway = TunnelSession(client=True)
    with pytest.raises(TunnelProtocolError):
        gateway.receive_data(frame(DATA, 0, 0, b"HTTP/1.1 400 Bad Request\r\n\r\n"), 0.0)


@pytest.mark.parametrize(
    "bad_frame",
    [
        frame(DATA, 0, 1, bytes(MAX_FRAME + 1)),  # longer than any frame size we allow
        frame(SETTINGS, 0, 0, b"\x00" * 5),  # settings are 6-byte entries
        frame(DATA, 0, 0, b"data on stream zero"),
        frame(SETTINGS, 0, 3, b""),  # SETTINGS belongs to stream 0
    ],
    ids=["oversized-length", "settings-bad-length", "data-on-stream-0", "settings-on-a-stream"],
)
def test_invalid_frame_after_the_preface_is_a_protocol_error(bad_frame: bytes) -> None:
    agent = TunnelSession(client=False)
    agent.receive_data(CLIENT_PREFACE + frame(SETTINGS, 0, 0, b""), 0.0)
    with pytest.raises(TunnelProtocolError):
        agent.receive_data(bad_frame, 0.0)


def test_protocol_error_queues_a_goaway_for_the_peer() -> None:
    gateway = TunnelSession(client=True)
    agent = TunnelSession(client=False)
    agent.receive_data(gateway.data_to_send(), 0.0)
    with pytest.raises(TunnelProtocolError):
        agent.receive_data(frame(DATA, 0, 0, b"x"), 0.0)
    closed = [
        e
        for e in gateway.receive_data(agent.data_to_send(), 0.0)
        if isinstance(e, ConnectionClosed)
    ]
    assert len(closed) == 1 and closed[0].error_code != 0


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
    pair.shuttle()  # the agent's h2 answers the PING by itself
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


@pytest.mark.parametrize("kind", sorted(SESSIONS))
def test_dead_peer_is_detected_within_ten_seconds_at_the_transport_tick(kind: str) -> None:
    assert PING_INTERVAL + PING_TIMEOUT + TICK <= 10
    pair = Pair.of(kind)
    pair.shuttle()
    # Ticks as the transport makes them; the peer answers until it dies at ``death``.
    death = 31.3
    now = 0.0
    while True:
        now += TICK
        alive = pair.gateway.heartbeat(now)
        if now < death:
            pair.now = now
            pair.shuttle()
        else:
            pair.gateway.data_to_send()  # into the void
        if not alive:
            break
        assert now < death + 10, "the dead peer was never detected"
    assert death < now <= death + PING_INTERVAL + PING_TIMEOUT + TICK


# --- fuzzing ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(min_size=1, max_size=512))
def test_random_bytes_as_the_first_bytes_only_raise_protocol_errors(garbage: bytes) -> None:
    for client in (True, False):
        session = TunnelSession(client=client)
        with contextlib.suppress(TunnelProtocolError):
            session.receive_data(garbage, 0.0)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(
        st.binary(min_size=1, max_size=256)
        | st.builds(
            frame,
            st.integers(0, 10),
            st.integers(0, 255),
            st.integers(0, 9),
            st.binary(max_size=64),
        ),
        min_size=1,
        max_size=8,
    ),
    open_first=st.booleans(),
)
def test_random_bytes_after_a_valid_preface_only_raise_protocol_errors(
    chunks: list[bytes], open_first: bool
) -> None:
    pair = Pair()
    pair.shuttle()
    if open_first:
        pair.gateway.open_stream("POST", "/kubegate/control", ())
        pair.gateway.send_data(1, b"hello")
        pair.shuttle()
    for target in (pair.agent, pair.gateway):
        try:
            for chunk in chunks:
                target.receive_data(chunk, 0.0)
        except TunnelProtocolError:
            pass


def test_a_data_frame_is_described_by_its_length_not_its_bytes() -> None:
    # h2 builds repr(frame) for every frame it receives; the payload must not be hex-encoded.
    import hyperframe.frame

    import kubegate.tunnel.session  # noqa: F401  (installs the short description)

    frame = hyperframe.frame.DataFrame(1)
    frame.data = b"\xab" * 65536
    assert repr(frame).endswith("<65536 bytes>")
    assert "ab" not in repr(frame)
