"""The agent's HTTP/2 client for kube-apiserver (``agent/http2.py``), sans-IO: resets, GOAWAY,
protocol errors, the heartbeat, and random bytes from the server (peer:
``tests/unit/agent/http2_peer.py``).
"""

from __future__ import annotations

import contextlib

import h2.events
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubegate.agent.http2 import MAX_FRAME, Http2Session
from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.events import (
    CANCEL,
    PING_INTERVAL,
    PING_TIMEOUT,
    ConnectionClosed,
    StreamReset,
)
from tests.fixtures.heartbeat import assert_a_dead_peer_is_detected_within_ten_seconds
from tests.fixtures.http2_peer import AUTHORITY, DATA, SETTINGS, Pair, body, frame, joined_pair


@pytest.fixture
def pair() -> Pair:
    return joined_pair()


# --- reset, close, protocol errors ------------------------------------------------------------


def test_a_client_reset_reaches_the_server(pair: Pair) -> None:
    stream_id = pair.client.open_stream("GET", "/watch", (), end_stream=True)
    pair.shuttle()
    pair.client.reset(stream_id)
    _, at_server = pair.shuttle()
    (reset,) = [e for e in at_server if isinstance(e, h2.events.StreamReset)]
    assert (reset.stream_id, reset.error_code) == (stream_id, CANCEL)


def test_a_server_reset_reaches_the_client_as_stream_reset(pair: Pair) -> None:
    stream_id = pair.client.open_stream("GET", "/watch", (), end_stream=True)
    pair.shuttle()
    pair.server.reset_stream(stream_id, CANCEL)
    at_client, _ = pair.shuttle()
    assert at_client == [StreamReset(stream_id, CANCEL)]


def test_reset_of_one_stream_leaves_the_others_working(pair: Pair) -> None:
    doomed = pair.client.open_stream("GET", "/a", (), end_stream=True)
    kept = pair.client.open_stream("GET", "/b", (), end_stream=True)
    pair.shuttle()
    pair.client.reset(doomed)
    pair.shuttle()
    pair.answer(kept, 200, b"still here")
    at_client, _ = pair.shuttle()
    assert body(at_client, kept) == b"still here"


def test_goaway_reason_from_the_server_reaches_the_client_as_connection_closed(
    pair: Pair,
) -> None:
    pair.server.close_connection(0, b"apiserver shutting down")
    at_client, _ = pair.shuttle()
    assert at_client == [ConnectionClosed(0, "apiserver shutting down")]
    assert pair.client.closed


def test_the_clients_goaway_carries_its_reason(pair: Pair) -> None:
    pair.client.close("the agent is stopping")
    assert pair.client.closed
    _, at_server = pair.shuttle()
    (closed,) = [e for e in at_server if isinstance(e, h2.events.ConnectionTerminated)]
    assert closed.additional_data == b"the agent is stopping"


def test_data_frame_instead_of_the_servers_settings_is_a_protocol_error() -> None:
    client = Http2Session(authority=AUTHORITY)
    with pytest.raises(TunnelProtocolError):
        client.receive_data(frame(DATA, 0, 0, b"HTTP/1.1 400 Bad Request\r\n\r\n"), 0.0)
    assert client.closed


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
def test_invalid_frame_after_the_servers_preface_is_a_protocol_error(
    pair: Pair, bad_frame: bytes
) -> None:
    pair.client.open_stream("GET", "/api/v1/pods", (), end_stream=True)
    pair.shuttle()
    with pytest.raises(TunnelProtocolError):
        pair.client.receive_data(bad_frame, 0.0)
    assert pair.client.closed


def test_protocol_error_queues_a_goaway_for_the_server(pair: Pair) -> None:
    with pytest.raises(TunnelProtocolError):
        pair.client.receive_data(frame(DATA, 0, 0, b"x"), 0.0)
    closed = [
        e
        for e in pair.server.receive_data(pair.client.data_to_send())
        if isinstance(e, h2.events.ConnectionTerminated)
    ]
    assert len(closed) == 1 and closed[0].error_code != 0


# --- heartbeat --------------------------------------------------------------------------------


def test_no_ping_is_sent_before_the_interval(pair: Pair) -> None:
    assert pair.client.heartbeat(PING_INTERVAL - 0.01)
    assert pair.client.data_to_send() == b""


def test_ping_goes_out_once_the_interval_has_passed(pair: Pair) -> None:
    assert pair.client.heartbeat(PING_INTERVAL)
    _, at_server = pair.shuttle()
    assert any(isinstance(e, h2.events.PingReceived) for e in at_server)


def test_only_one_ping_is_outstanding_at_a_time(pair: Pair) -> None:
    assert pair.client.heartbeat(PING_INTERVAL)
    pair.client.data_to_send()
    assert pair.client.heartbeat(2 * PING_INTERVAL)
    assert pair.client.data_to_send() == b""


def test_acknowledged_ping_never_times_out(pair: Pair) -> None:
    assert pair.client.heartbeat(PING_INTERVAL)
    pair.shuttle()  # the server's h2 answers the PING by itself
    assert pair.client.heartbeat(PING_INTERVAL + PING_TIMEOUT + 60)


def test_unanswered_ping_makes_heartbeat_fail_at_the_timeout(pair: Pair) -> None:
    assert pair.client.heartbeat(PING_INTERVAL)
    pair.client.data_to_send()  # lost on the way: the server never sees it
    assert pair.client.heartbeat(PING_INTERVAL + PING_TIMEOUT - 0.01)
    assert not pair.client.heartbeat(PING_INTERVAL + PING_TIMEOUT)


def test_heartbeat_after_close_sends_nothing_and_does_not_raise(pair: Pair) -> None:
    pair.client.close("bye")
    pair.client.data_to_send()  # the GOAWAY
    pair.client.heartbeat(PING_INTERVAL)
    assert pair.client.data_to_send() == b""


def test_dead_apiserver_is_detected_within_ten_seconds_at_the_transport_tick() -> None:
    pair = Pair()
    assert_a_dead_peer_is_detected_within_ten_seconds(pair, pair.client)


# --- fuzzing ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(min_size=1, max_size=512))
def test_random_bytes_as_the_first_bytes_only_raise_protocol_errors(garbage: bytes) -> None:
    client = Http2Session(authority=AUTHORITY)
    with contextlib.suppress(TunnelProtocolError):
        client.receive_data(garbage, 0.0)


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
        stream_id = pair.client.open_stream("GET", "/api/v1/pods?watch=1", (), end_stream=True)
        pair.shuttle()
        pair.server.send_headers(stream_id, [(":status", "200")])
        pair.server.send_data(stream_id, b"{}")
        pair.shuttle()
    try:
        for chunk in chunks:
            pair.client.receive_data(chunk, 0.0)
    except TunnelProtocolError:
        pass
