"""Tunnel protocol 2 (``tunnel/wire.py``, ``tunnel/frames.py``): its wire format, its credit,
and what it refuses.

The behaviour every session promises (round trips, windows, resets, heartbeat) is in
``test_session.py``; these are the parts that are protocol 2's own.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.events import (
    PROTOCOL_ERROR,
    ConnectionClosed,
    DataReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
)
from kubegate.tunnel.frames import FrameSession
from kubegate.tunnel.wire import (
    CONNECTION_WINDOW,
    DATA,
    END_STREAM,
    GOAWAY,
    HEAD,
    HEADERS,
    MAX_PAYLOAD,
    PING,
    RESET,
    STREAM_WINDOW,
    U32,
    WINDOW,
)


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return HEAD.pack(kind, flags, stream_id, len(payload)) + payload


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Split bytes a session queued into (type, flags, stream id, payload)."""
    found = []
    while data:
        kind, flags, stream_id, length = HEAD.unpack_from(data)
        found.append((kind, flags, stream_id, data[HEAD.size : HEAD.size + length]))
        data = data[HEAD.size + length :]
    return found


def shuttle(sender: FrameSession, receiver: FrameSession) -> list[Event]:
    return receiver.receive_data(sender.data_to_send(), 0.0)


def test_a_request_head_is_one_headers_frame_in_the_documented_layout() -> None:
    gateway = FrameSession(client=True)
    stream_id = gateway.open_stream(
        "GET",
        "/api/v1/pods?watch=1",
        (("Accept", "application/json"), ("x-a", "1")),
        end_stream=True,
    )
    assert frames(gateway.data_to_send()) == [
        (
            HEADERS,
            END_STREAM,
            stream_id,
            b"GET /api/v1/pods?watch=1\naccept\0application/json\nx-a\x001",
        )
    ]


def test_a_response_is_a_headers_and_a_data_frame_in_one_write() -> None:
    gateway, agent = FrameSession(client=True), FrameSession(client=False)
    stream_id = gateway.open_stream("GET", "/version", (), end_stream=True)
    shuttle(gateway, agent)
    agent.respond(stream_id, 200, (("Content-Type", "application/json"),))
    agent.send_data(stream_id, b"{}", end_stream=True)
    assert frames(agent.data_to_send()) == [
        (HEADERS, 0, stream_id, b"200\ncontent-type\0application/json"),
        (DATA, END_STREAM, stream_id, b"{}"),
    ]


def test_stream_ids_are_odd_and_increasing() -> None:
    gateway = FrameSession(client=True)
    assert [gateway.open_stream("GET", "/", (), end_stream=True) for _ in range(3)] == [1, 3, 5]


@pytest.mark.parametrize("bad", ["line\nfeed", "nul\0byte", "snowman ☃"])
def test_a_header_that_cannot_be_framed_is_refused_and_nothing_is_queued(bad: str) -> None:
    gateway = FrameSession(client=True)
    for headers in ((("x-bad", bad),), ((bad, "value"),)):
        with pytest.raises(TunnelProtocolError):
            gateway.open_stream("GET", "/", headers)
    assert gateway.data_to_send() == b""
    assert gateway.open_streams == 0


def test_every_chunking_of_the_bytes_decodes_to_the_same_events() -> None:
    gateway, agent = FrameSession(client=True), FrameSession(client=False)
    stream_id = gateway.open_stream("POST", "/x", (("a", "b"),))
    gateway.send_data(stream_id, b"0123456789" * 10, end_stream=True)
    wire = gateway.data_to_send()
    whole = FrameSession(client=False).receive_data(wire, 0.0)
    one_by_one: list[Event] = []
    for index in range(len(wire)):
        one_by_one += agent.receive_data(wire[index : index + 1], 0.0)
    assert one_by_one == whole
    assert whole[0] == RequestReceived(stream_id, "POST", "/x", (("a", "b"),), False)
    assert whole[-1] == StreamEnded(stream_id)


def test_credit_goes_back_a_quarter_window_at_a_time() -> None:
    gateway, agent = FrameSession(client=True), FrameSession(client=False)
    stream_id = gateway.open_stream("PUT", "/big", ())
    gateway.send_data(stream_id, bytes(STREAM_WINDOW))
    shuttle(gateway, agent)
    quarter = STREAM_WINDOW // 4
    agent.acknowledge(stream_id, quarter - 1)
    assert agent.data_to_send() == b""  # not yet worth a frame
    agent.acknowledge(stream_id, 1)
    credit = agent.data_to_send()
    assert frames(credit) == [(WINDOW, 0, stream_id, U32.pack(quarter))]
    assert gateway.send_window(stream_id) == 0
    gateway.receive_data(credit, 0.0)
    assert gateway.send_window(stream_id) == quarter


def test_the_connection_window_is_credited_a_quarter_at_a_time() -> None:
    gateway, agent = FrameSession(client=True), FrameSession(client=False)
    ids = [gateway.open_stream("PUT", f"/s{n}", ()) for n in range(4)]
    for stream_id in ids:
        gateway.send_data(stream_id, bytes(STREAM_WINDOW), end_stream=True)
    shuttle(gateway, agent)
    for stream_id in ids[:-1]:
        agent.acknowledge(stream_id, STREAM_WINDOW)  # ended streams: connection credit only
    assert frames(agent.data_to_send()) == [
        (WINDOW, 0, 0, U32.pack(CONNECTION_WINDOW // 4)),
        (WINDOW, 0, 0, U32.pack(CONNECTION_WINDOW // 4)),
        (WINDOW, 0, 0, U32.pack(CONNECTION_WINDOW // 4)),
    ]


def test_bytes_for_a_stream_already_reset_still_give_their_connection_credit_back() -> None:
    gateway, agent = FrameSession(client=True), FrameSession(client=False)
    ids = [gateway.open_stream("PUT", f"/s{n}", ()) for n in range(4)]
    shuttle(gateway, agent)
    for stream_id in ids:
        agent.reset(stream_id)  # the RESETs have not reached the gateway yet
        gateway.send_data(stream_id, bytes(STREAM_WINDOW))
    assert shuttle(gateway, agent) == []  # dropped
    shuttle(agent, gateway)
    fresh = gateway.open_stream("PUT", "/after", ())
    assert gateway.send_window(fresh) == STREAM_WINDOW


def test_an_answer_to_a_stream_the_gateway_reset_is_dropped() -> None:
    gateway, agent = FrameSession(client=True), FrameSession(client=False)
    stream_id = gateway.open_stream("GET", "/slow", (), end_stream=True)
    shuttle(gateway, agent)
    gateway.reset(stream_id)
    agent.respond(stream_id, 200, ())
    agent.send_data(stream_id, b"late", end_stream=True)
    assert shuttle(agent, gateway) == []
    assert gateway.open_streams == 0


def test_a_finished_stream_is_forgotten_on_both_sides() -> None:
    gateway, agent = FrameSession(client=True), FrameSession(client=False)
    stream_id = gateway.open_stream("GET", "/", (), end_stream=True)
    shuttle(gateway, agent)
    agent.respond(stream_id, 200, (), end_stream=True)
    assert agent.open_streams == 0
    assert shuttle(agent, gateway) == [
        ResponseReceived(stream_id, 200, (), True),
        StreamEnded(stream_id),
    ]
    assert gateway.open_streams == 0


def test_unknown_frame_types_are_ignored() -> None:
    agent = FrameSession(client=False)
    assert agent.receive_data(frame(0x42, 0, 1, b"future"), 0.0) == []
    assert not agent.closed


def test_stream_ids_running_out_close_the_session() -> None:
    gateway = FrameSession(client=True)
    gateway._next_id = 2**32 + 1
    with pytest.raises(TunnelProtocolError, match="used up"):
        gateway.open_stream("GET", "/", ())
    assert gateway.closed


def _open(stream_id: int = 1, end: bool = False) -> bytes:
    return frame(HEADERS, END_STREAM if end else 0, stream_id, b"GET /")


@pytest.mark.parametrize(
    ("at_agent", "bad"),
    [
        pytest.param(True, frame(DATA, 0, 0, b"x"), id="data-on-stream-0"),
        pytest.param(True, frame(HEADERS, 0, 0, b"GET /"), id="headers-on-stream-0"),
        pytest.param(True, frame(HEADERS, 0, 2, b"GET /"), id="even-stream-from-gateway"),
        pytest.param(
            True,
            _open() + frame(DATA, 0, 1, bytes(STREAM_WINDOW + 1)[:MAX_PAYLOAD]) * 17,
            id="beyond-stream-window",
        ),
        pytest.param(True, _open(end=True) + frame(DATA, 0, 1, b"x"), id="data-after-end"),
        pytest.param(True, frame(HEADERS, 0, 1, b"GET /\nno-separator"), id="bad-header-line"),
        pytest.param(True, frame(WINDOW, 0, 0, b"\x00\x01"), id="short-window"),
        pytest.param(True, frame(WINDOW, 0, 0, U32.pack(2**31)), id="window-overflow"),
        pytest.param(True, frame(RESET, 0, 1, b""), id="short-reset"),
        pytest.param(True, frame(PING, 0, 0, b"1234"), id="short-ping"),
        pytest.param(True, frame(GOAWAY, 0, 0, b"\x00"), id="short-goaway"),
        pytest.param(True, HEAD.pack(DATA, 0, 1, MAX_PAYLOAD + 1), id="frame-too-large"),
        pytest.param(False, frame(HEADERS, 0, 0, b"200"), id="response-on-stream-0"),
    ],
)
def test_a_broken_frame_is_a_protocol_error_and_queues_a_goaway(at_agent: bool, bad: bytes) -> None:
    session = FrameSession(client=not at_agent)
    with pytest.raises(TunnelProtocolError):
        session.receive_data(bad, 0.0)
    assert session.closed
    (goaway,) = frames(session.data_to_send())
    assert goaway[0] == GOAWAY and U32.unpack_from(goaway[3])[0] == PROTOCOL_ERROR
    peer = FrameSession(client=at_agent)
    events = peer.receive_data(frame(*goaway), 0.0)
    assert isinstance(events[0], ConnectionClosed) and events[0].error_code == PROTOCOL_ERROR


def test_a_ping_is_answered_with_its_own_payload() -> None:
    agent = FrameSession(client=False)
    agent.receive_data(frame(PING, 0, 0, b"12345678"), 0.0)
    assert frames(agent.data_to_send()) == [(PING, 1, 0, b"12345678")]


def test_body_bytes_arrive_as_sent_with_their_flow_length() -> None:
    gateway, agent = FrameSession(client=True), FrameSession(client=False)
    stream_id = gateway.open_stream("PUT", "/", ())
    gateway.send_data(stream_id, memoryview(b"abcdef")[1:4])
    events = shuttle(gateway, agent)
    assert events[-1] == DataReceived(stream_id, b"bcd", 3)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(
        st.binary(min_size=1, max_size=128)
        | st.builds(
            frame,
            st.sampled_from([DATA, HEADERS, RESET, PING, GOAWAY, WINDOW, 9]),
            st.integers(0, 3),
            st.integers(0, 6),
            st.binary(max_size=48),
        ),
        min_size=1,
        max_size=10,
    ),
    client=st.booleans(),
)
def test_random_frames_only_raise_protocol_errors_and_then_the_session_is_closed(
    chunks: list[bytes], client: bool
) -> None:
    session = FrameSession(client=client)
    if client:
        session.open_stream("GET", "/", ())
        session.open_stream("GET", "/", ())
    try:
        for chunk in chunks:
            session.receive_data(chunk, 0.0)
    except TunnelProtocolError:
        assert session.closed
    with contextlib.suppress(TunnelProtocolError):
        session.open_stream("GET", "/", ()) if client else session.respond(1, 200, ())
