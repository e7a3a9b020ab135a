"""The proxy listener's HTTP/1.1 (``proxy/http1.py``): bytes in, events out, responses framed.

The listener's behaviour end to end (431, 400, keep-alive through kubectl) is tested in
``tests/integration/proxy``; these pin the parser and the framing on their own.
"""

from __future__ import annotations

import pytest

from kubegate.gateway.http1 import (
    NEED_DATA,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    ServerConnection,
)

MAX_HEAD = 1024
READ_SIZE = 512
GET = b"GET /api/v1/pods?limit=1 HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\n\r\n"


def connection() -> ServerConnection:
    return ServerConnection(max_head=MAX_HEAD, read_size=READ_SIZE)


def events(http: ServerConnection) -> list[Event]:
    found: list[Event] = []
    while True:
        event = http.next_event()
        found.append(event)
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            return found


def test_a_get_is_a_request_then_its_end() -> None:
    http = connection()
    http.receive_data(GET)
    request, end, need = events(http)
    assert request == Request(
        b"GET",
        b"/api/v1/pods?limit=1",
        [(b"host", b"gw"), (b"accept", b"application/json")],
        "1.1",
        True,
    )
    assert end == EndOfMessage() and need is NEED_DATA
    assert http.request_complete and http.waiting_for_response


def test_a_head_fed_byte_by_byte_gives_the_same_request() -> None:
    http = connection()
    for index in range(len(GET)):
        http.receive_data(GET[index : index + 1])
    request = http.next_event()
    assert isinstance(request, Request) and request.target == b"/api/v1/pods?limit=1"


def test_a_chunked_body_arrives_as_data_then_the_end() -> None:
    http = connection()
    http.receive_data(
        b"POST /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    found = events(http)
    assert b"".join(e.data for e in found if isinstance(e, Data)) == b"hello world"
    assert found[-2] == EndOfMessage()


def test_a_small_response_is_framed_by_its_content_length() -> None:
    http = connection()
    http.receive_data(GET)
    events(http)
    head = http.response(200, [(b"Content-Type", b"application/json"), (b"Content-Length", b"2")])
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n"
    )
    assert http.data(b"{}") == b"{}"
    assert http.end() == b""
    assert http.reusable


def test_a_response_without_a_length_is_chunked_for_http_1_1() -> None:
    http = connection()
    http.receive_data(GET)
    events(http)
    head = http.response(200, [(b"transfer-encoding", b"chunked"), (b"connection", b"x")])
    assert head == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    assert http.data(b"event") == b"5\r\nevent\r\n"
    assert http.end() == b"0\r\n\r\n"


def test_an_http_1_0_client_gets_a_close_delimited_body_and_no_keep_alive() -> None:
    http = connection()
    http.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    events(http)
    head = http.response(200, [])
    assert head == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"
    assert http.data(b"body") == b"body"
    http.end()
    assert not http.reusable


def test_a_client_asking_to_close_is_not_kept() -> None:
    http = connection()
    http.receive_data(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    events(http)
    assert b"connection: close" in http.response(204, [])
    http.end()
    assert not http.reusable


def test_a_head_request_gets_no_body_but_keeps_its_length() -> None:
    http = connection()
    http.receive_data(b"HEAD / HTTP/1.1\r\n\r\n")
    events(http)
    assert b"content-length: 658" in http.response(200, [(b"content-length", b"658")])
    with pytest.raises(LocalProtocolError):
        http.data(b"x")
    assert http.end() == b""


@pytest.mark.parametrize(("body", "error"), [(b"abc", "more body"), (b"a", "less body")])
def test_a_body_that_breaks_its_content_length_is_refused(body: bytes, error: str) -> None:
    http = connection()
    http.receive_data(GET)
    events(http)
    http.response(200, [(b"content-length", b"2")])
    with pytest.raises(LocalProtocolError, match=error):
        http.data(body)
        http.end()


@pytest.mark.parametrize(
    "header",
    [(b"x-a", b"v\r\nset-cookie: x"), (b"x-a", b"v\nx"), (b"x\r\n-a", b"v"), (b"x-a", b"\0")],
)
def test_a_header_that_would_split_the_response_is_refused(header: tuple[bytes, bytes]) -> None:
    http = connection()
    http.receive_data(GET)
    events(http)
    with pytest.raises(LocalProtocolError, match="CR, LF or NUL"):
        http.response(200, [header])
    assert http.waiting_for_response  # nothing was sent: a Status can still go out


def test_pipelined_requests_come_one_exchange_at_a_time() -> None:
    http = connection()
    http.receive_data(GET + GET.replace(b"limit=1", b"limit=2"))
    first = http.next_event()
    assert isinstance(first, Request) and first.target.endswith(b"limit=1")
    assert http.next_event() == EndOfMessage()
    http.response(204, [])
    http.end()
    http.start_next_cycle()
    second = http.next_event()
    assert isinstance(second, Request) and second.target.endswith(b"limit=2")


def test_the_next_cycle_needs_the_exchange_finished() -> None:
    http = connection()
    http.receive_data(GET)
    events(http)
    with pytest.raises(LocalProtocolError):
        http.start_next_cycle()


def test_an_upgrade_keeps_the_bytes_after_its_head_and_switches() -> None:
    http = connection()
    http.receive_data(
        b"GET /exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nEARLY"
    )
    request, end, _ = events(http)
    assert isinstance(request, Request) and end == EndOfMessage()
    http.receive_data(b"-MORE")
    assert http.trailing_data == b"EARLY-MORE"
    head = http.switch([(b"connection", b"Upgrade"), (b"upgrade", b"websocket")])
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert not http.reusable


def test_a_refused_upgrade_closes_the_connection_after_its_answer() -> None:
    http = connection()
    http.receive_data(b"GET /exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
    events(http)
    assert b"connection: close" in http.response(403, [(b"content-length", b"0")])
    http.end()
    assert not http.reusable


def test_only_an_upgrade_request_can_switch() -> None:
    http = connection()
    http.receive_data(GET)
    events(http)
    with pytest.raises(LocalProtocolError):
        http.switch([])


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on the plain port
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        # Request smuggling: two lengths, or a folded header hiding one.
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET / HTTP/1.1\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
    ],
)
def test_bytes_that_are_not_http_are_a_400(garbage: bytes) -> None:
    http = connection()
    http.receive_data(garbage)
    with pytest.raises(RemoteProtocolError) as refused:
        events(http)
    assert refused.value.status_hint == 400


def test_a_head_still_incomplete_beyond_the_limit_is_a_431() -> None:
    http = connection()
    http.receive_data(b"GET /" + b"a" * (MAX_HEAD // 2))
    assert http.next_event() is NEED_DATA
    http.receive_data(b"a" * (MAX_HEAD + READ_SIZE))
    with pytest.raises(RemoteProtocolError) as refused:
        http.next_event()
    assert refused.value.status_hint == 431


def test_a_whole_head_over_the_limit_is_a_431() -> None:
    http = connection()
    http.receive_data(b"GET / HTTP/1.1\r\nX-Big: " + b"x" * MAX_HEAD + b"\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as refused:
        http.next_event()
    assert refused.value.status_hint == 431


def test_events_before_an_error_still_come_first() -> None:
    http = connection()
    http.receive_data(GET + b"\x00garbage\r\n\r\n")
    assert isinstance(http.next_event(), Request)
    assert http.next_event() == EndOfMessage()
    http.response(204, [])
    http.end()
    http.start_next_cycle()
    with pytest.raises(RemoteProtocolError):
        http.next_event()


def test_eof_between_requests_is_a_close_and_mid_request_an_error() -> None:
    idle = connection()
    idle.receive_data(b"")
    assert idle.next_event() == ConnectionClosed()
    cut = connection()
    cut.receive_data(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    assert isinstance(cut.next_event(), Request)
    assert cut.next_event() == Data(b"abc")
    cut.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="mid-request"):
        cut.next_event()
