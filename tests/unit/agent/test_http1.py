"""The agent's sans-IO HTTP/1.1 response parser: apiserver bytes in, events out."""

from __future__ import annotations

import pytest

from kubegate.agent.http1 import (
    NEED_DATA,
    ConnectionClosed,
    Data,
    EndOfMessage,
    RemoteProtocolError,
    Response,
    ResponseParser,
)
from kubegate.agent.request_head import encode_chunk

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
CHUNKED_WITH_EXTENSIONS_AND_TRAILERS = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value;flag\r\nhello\r\n"
    b"1\r\n \r\n"
    b"5\r\nworld\r\n"
    b"0\r\nX-Trailer: a\r\nX-Other: b\r\n\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n"
    b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
)


class Exchange:
    """What a parser made of the bytes: the head, the body, how it ended."""

    def __init__(self) -> None:
        self.head: Response | None = None
        self.pieces: list[bytes] = []
        self.ended = False

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)


def drain(parser: ResponseParser, exchange: Exchange) -> None:
    """Take every event that is ready."""
    while not exchange.ended:
        event = parser.next_event()
        if event is NEED_DATA:
            return
        if isinstance(event, Response):
            exchange.head = event
            if event.status == 101:
                return
        elif isinstance(event, Data):
            exchange.pieces.append(event.data)
        elif isinstance(event, EndOfMessage):
            exchange.ended = True
        else:
            raise AssertionError(f"unexpected {event!r}")


def parse(*reads: bytes, method: str = "GET", eof: bool = False) -> tuple[Exchange, ResponseParser]:
    """Feed ``reads`` one by one (then EOF) to a fresh parser expecting ``method``'s answer."""
    parser = ResponseParser()
    parser.start_response(method)
    exchange = Exchange()
    for data in reads:
        parser.receive_data(data)
        drain(parser, exchange)
    if eof:
        parser.receive_data(b"")
        drain(parser, exchange)
    return exchange, parser


def refusal(*reads: bytes, method: str = "GET", eof: bool = False) -> str:
    with pytest.raises(RemoteProtocolError) as caught:
        parse(*reads, method=method, eof=eof)
    return str(caught.value)


# --- bodies -------------------------------------------------------------------------------


def test_content_length_body_is_the_declared_bytes_and_the_connection_is_reusable() -> None:
    exchange, parser = parse(OK_HEAD + b'Content-Length: 7\r\n\r\n{"a":1}')

    assert exchange.head is not None
    assert (exchange.head.status, exchange.head.content_length) == (200, 7)
    assert exchange.head.headers == [
        ("content-type", "application/json"),
        ("content-length", "7"),
    ]
    assert (exchange.body, exchange.ended, parser.reusable) == (b'{"a":1}', True, True)


def test_content_length_body_after_the_head_read_is_passed_on_read_by_read() -> None:
    reads = [b"x" * 1000, b"y" * 5000, b"z" * 24]
    exchange, parser = parse(OK_HEAD + b"Content-Length: 6024\r\n\r\n", *reads)

    assert exchange.pieces == reads
    assert exchange.ended and parser.reusable


def test_chunked_body_drops_extensions_and_trailers() -> None:
    exchange, parser = parse(CHUNKED_WITH_EXTENSIONS_AND_TRAILERS)

    assert exchange.head is not None and exchange.head.content_length is None
    assert exchange.body == b"hello world"
    assert exchange.ended and parser.reusable


def test_chunks_that_arrive_together_are_one_piece_and_a_lone_chunk_comes_at_once() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    together = b"".join(encode_chunk(b"%d," % i) for i in range(20))
    parser = ResponseParser()
    parser.start_response("GET")
    exchange = Exchange()

    parser.receive_data(head + together)
    drain(parser, exchange)
    assert exchange.pieces == [b"".join(b"%d," % i for i in range(20))]

    parser.receive_data(encode_chunk(b'{"type":"ADDED"}\n'))  # nothing behind it yet
    drain(parser, exchange)
    assert exchange.pieces[-1] == b'{"type":"ADDED"}\n' and not exchange.ended

    parser.receive_data(b"0\r\n\r\n")
    drain(parser, exchange)
    assert exchange.ended


def test_body_without_a_length_ends_with_the_connection() -> None:
    exchange, parser = parse(OK_HEAD + b"\r\nfirst ", b"second", eof=True)

    assert (exchange.body, exchange.ended) == (b"first second", True)
    assert not parser.reusable


def test_transfer_coding_that_does_not_end_in_chunked_is_read_until_close() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
    exchange, parser = parse(head + b"3\r\nabc", eof=True)
    assert (exchange.body, exchange.ended, parser.reusable) == (b"3\r\nabc", True, False)


def test_body_cut_off_before_its_length_is_refused() -> None:
    message = refusal(OK_HEAD + b"Content-Length: 10\r\n\r\nonly", eof=True)
    assert message == "the connection closed before the end of the body"


def test_chunked_body_cut_off_mid_chunk_is_refused() -> None:
    message = refusal(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly", eof=True)
    assert message == "the connection closed before the end of the body"


def test_malformed_chunk_size_is_refused() -> None:
    message = refusal(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert message == "malformed chunked body"


def test_endless_chunk_extensions_are_refused() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x="
    message = refusal(head, *[b"y" * 16384] * 5)
    assert message.startswith("malformed chunked body")


# --- answers without a body ---------------------------------------------------------------


def test_head_answer_has_no_body_even_with_a_content_length() -> None:
    parser = ResponseParser()
    for _ in range(2):  # and the connection carries the next exchange
        parser.start_response("HEAD")
        exchange = Exchange()
        parser.receive_data(OK_HEAD + b"Content-Length: 1234\r\n\r\n")
        drain(parser, exchange)
        assert exchange.head is not None and exchange.head.content_length == 1234
        assert (exchange.body, exchange.ended, parser.reusable) == (b"", True, True)

    parser.start_response("GET")
    exchange = Exchange()
    parser.receive_data(OK_HEAD + b"Content-Length: 2\r\n\r\nok")
    drain(parser, exchange)
    assert (exchange.body, exchange.ended) == (b"ok", True)


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_and_not_modified_have_no_body(status: int) -> None:
    head = b"HTTP/1.1 %d X\r\nContent-Length: 99\r\n\r\n" % status
    exchange, parser = parse(head)

    assert exchange.head is not None and exchange.head.status == status
    assert (exchange.body, exchange.ended, parser.reusable) == (b"", True, True)


def test_informational_answers_before_the_final_one_are_skipped() -> None:
    exchange, _ = parse(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        + OK_HEAD
        + b"Content-Length: 2\r\n\r\nok"
    )
    assert exchange.head is not None and exchange.head.status == 200
    assert exchange.body == b"ok"


# --- switching protocols ------------------------------------------------------------------


def test_switching_protocols_hands_over_the_bytes_that_came_with_the_head() -> None:
    first_frames = b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"
    exchange, parser = parse(SWITCHING + first_frames)

    assert exchange.head is not None and exchange.head.status == 101
    assert ("upgrade", "SPDY/3.1") in exchange.head.headers
    assert parser.trailing_data == first_frames
    assert not parser.reusable


def test_switching_protocols_without_naming_one_is_refused() -> None:
    assert refusal(b"HTTP/1.1 101 Switching Protocols\r\n\r\n") == (
        "it switched protocols without naming one"
    )


# --- every byte boundary --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        (OK_HEAD + b"Content-Length: 11\r\n\r\nhello world", b"hello world"),
        (CHUNKED_WITH_EXTENSIONS_AND_TRAILERS, b"hello world"),
        (b"HTTP/1.1 204 No Content\r\nAudit-Id: 1\r\n\r\n", b""),
    ],
    ids=["content-length", "chunked", "no-content"],
)
def test_an_answer_split_at_any_byte_parses_the_same(wire: bytes, body: bytes) -> None:
    whole, _ = parse(wire)
    for cut in range(1, len(wire)):
        split, parser = parse(wire[:cut], wire[cut:])
        assert split.head == whole.head, cut
        assert (split.body, split.ended, parser.reusable) == (body, True, True), cut
    one_by_one, _ = parse(*(wire[i : i + 1] for i in range(len(wire))))
    assert (one_by_one.head, one_by_one.body) == (whole.head, body)


def test_switching_protocols_split_at_any_byte_hands_over_the_same_bytes() -> None:
    wire = SWITCHING + b"raw bytes"
    for cut in range(1, len(wire)):
        exchange, parser = parse(wire[:cut], wire[cut:])
        assert exchange.head is not None and exchange.head.status == 101, cut
        assert parser.trailing_data == b"raw bytes", cut


# --- refused heads --------------------------------------------------------------------------


def test_oversized_head_is_refused_whole_or_in_pieces() -> None:
    header = b"X-Big: " + b"a" * (64 * 1024) + b"\r\n"
    wire = OK_HEAD + header + b"\r\n"
    expected = "its response head is larger than 64 KiB"

    assert refusal(wire) == expected
    assert refusal(*(wire[i : i + 4096] for i in range(0, len(wire), 4096))) == expected


def test_head_just_under_the_limit_is_accepted() -> None:
    wire = OK_HEAD + b"X-Big: " + b"a" * (60 * 1024) + b"\r\nContent-Length: 0\r\n\r\n"
    exchange, _ = parse(*(wire[i : i + 1000] for i in range(0, len(wire), 1000)))
    assert exchange.ended


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "it did not answer in HTTP/1.1"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "it did not answer in HTTP/1.1"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "it did not answer in HTTP/1.1"),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "its response head is malformed"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "its response head is malformed"),
        (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "its response head is malformed"),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", "its response head is malformed"),
    ],
    ids=["not-http", "http2", "status", "bare-lf", "space-in-name", "nul", "folding"],
)
def test_malformed_head_is_refused(wire: bytes, message: str) -> None:
    assert refusal(wire) == message


def test_close_before_any_answer_is_refused() -> None:
    assert refusal(eof=True) == "it closed the connection without an answer"
    assert refusal(b"HTTP/1.1 200 OK\r\n", eof=True) == "it closed the connection without an answer"


def test_events_before_an_error_come_first() -> None:
    parser = ResponseParser()
    parser.start_response("GET")
    parser.receive_data(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n")

    assert isinstance(parser.next_event(), Response)
    assert parser.next_event() == Data(b"ok")
    with pytest.raises(RemoteProtocolError, match="malformed chunked body"):
        parser.next_event()


# --- keep-alive -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0"],
)
def test_answer_that_ends_the_connection_is_not_reusable(head: bytes) -> None:
    exchange, parser = parse(head + b"ok")
    assert exchange.ended and not parser.reusable


def test_http_1_0_keep_alive_is_reusable() -> None:
    head = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"
    exchange, parser = parse(head + b"ok")
    assert exchange.ended and parser.reusable


def test_bytes_after_the_answer_make_the_connection_unfit_for_reuse() -> None:
    exchange, parser = parse(OK_HEAD + b"Content-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
    assert (exchange.body, exchange.ended) == (b"ok", True)
    assert not parser.reusable


def test_close_between_answers_is_connection_closed() -> None:
    _, parser = parse(OK_HEAD + b"Content-Length: 2\r\n\r\nok")
    parser.receive_data(b"")
    assert isinstance(parser.next_event(), ConnectionClosed)
    assert not parser.reusable


def test_a_new_response_cannot_start_before_the_last_one_ended() -> None:
    _, parser = parse(OK_HEAD + b"Content-Length: 10\r\n\r\nhalf")
    with pytest.raises(RuntimeError):
        parser.start_response("GET")
