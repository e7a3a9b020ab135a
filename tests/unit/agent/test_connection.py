"""One apiserver connection over a real socket pair: bodies relayed as they arrive, never
whole, and after a 101 the bytes that came with the head first."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import pytest

from kubegate.agent.connection import (
    READ_CHUNK,
    ConnectionState,
    UpstreamBroken,
    UpstreamConnection,
    UpstreamUnavailable,
)
from kubegate.agent.request_head import encode_chunk, encode_request_head
from kubegate.agent.stream import AsyncioStream

pytestmark = pytest.mark.anyio

GUARD = 10.0  # a guard against hangs, never a speed assertion
GET = encode_request_head("GET", "/api/v1/pods", [("host", "apiserver")])


class Apiserver:
    """The far end of the socket pair, written to by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request_head(self) -> bytes:
        return await self.reader.readuntil(b"\r\n\r\n")


@pytest.fixture
async def pair() -> AsyncIterator[tuple[UpstreamConnection, Apiserver]]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours, limit=READ_CHUNK)
    apiserver = Apiserver(*await asyncio.open_connection(sock=theirs))
    connection = UpstreamConnection(AsyncioStream(reader, writer))
    yield connection, apiserver
    connection.abort()
    apiserver.writer.transport.abort()


async def test_chunks_that_arrived_together_are_passed_on_as_one_piece(
    pair: tuple[UpstreamConnection, Apiserver],
) -> None:
    connection, apiserver = pair
    pieces = [os.urandom(2048) for _ in range(20)]
    await apiserver.send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(encode_chunk(piece) for piece in pieces)
        + b"0\r\n\r\n"
    )
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    async with asyncio.timeout(GUARD):
        await connection.exchange("GET", GET)
        await connection.relay_body(send)

    assert b"".join(sent) == b"".join(pieces)
    assert len(sent) <= 2  # as they arrived: one read, or two if the socket split them
    assert connection.state is ConnectionState.IDLE


async def test_a_chunk_with_nothing_behind_it_is_passed_on_before_the_next_arrives(
    pair: tuple[UpstreamConnection, Apiserver],
) -> None:
    connection, apiserver = pair
    await apiserver.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    sent: asyncio.Queue[bytes] = asyncio.Queue()
    async with asyncio.timeout(GUARD):
        await connection.exchange("GET", GET)
        relay = asyncio.create_task(connection.relay_body(sent.put))
        await apiserver.send(encode_chunk(b'{"type":"ADDED"}\n'))
        # The second event does not exist yet: the first must not wait for it.
        assert await sent.get() == b'{"type":"ADDED"}\n'
        await apiserver.send(encode_chunk(b'{"type":"MODIFIED"}\n') + b"0\r\n\r\n")
        await relay
    assert sent.get_nowait() == b'{"type":"MODIFIED"}\n'


async def test_a_large_chunk_goes_on_in_pieces_of_at_most_read_chunk_intact(
    pair: tuple[UpstreamConnection, Apiserver],
) -> None:
    connection, apiserver = pair
    body = os.urandom(3 * READ_CHUNK + 123)
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    async with asyncio.timeout(GUARD):
        writing = asyncio.create_task(
            apiserver.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"".join(encode_chunk(p) for p in (b"head", body, b"tail"))
                + b"0\r\n\r\n"
            )
        )
        await connection.exchange("GET", GET)
        await connection.relay_body(send)
        await writing
    assert b"".join(sent) == b"head" + body + b"tail"
    assert max(len(piece) for piece in sent) <= READ_CHUNK


async def test_a_slow_reader_stops_the_connection_reading_the_apiserver(
    pair: tuple[UpstreamConnection, Apiserver],
) -> None:
    connection, apiserver = pair
    size = 32 * 1024 * 1024
    apiserver.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    apiserver.writer.write(bytes(size))  # all of it queued on the apiserver's side
    stalled = asyncio.Event()
    resume = asyncio.Event()
    received = 0

    async def send(data: bytes) -> None:
        nonlocal received
        received += len(data)
        stalled.set()
        await resume.wait()  # kubectl stopped reading

    async with asyncio.timeout(GUARD):
        await connection.exchange("GET", GET)
        relay = asyncio.create_task(connection.relay_body(send))
        await stalled.wait()
        for _ in range(200):  # plenty of turns for bytes to move, if anything read them
            await asyncio.sleep(0)
        # Only socket buffers and one read's worth left the apiserver: not the body.
        assert apiserver.writer.transport.get_write_buffer_size() > size // 2
        assert received <= READ_CHUNK
        resume.set()
        await relay
    assert received == size


async def test_a_body_cut_off_mid_chunk_is_upstream_broken(
    pair: tuple[UpstreamConnection, Apiserver],
) -> None:
    connection, apiserver = pair
    await apiserver.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly-eight")
    apiserver.writer.write_eof()

    async def send(data: bytes) -> None:
        del data

    async with asyncio.timeout(GUARD):
        await connection.exchange("GET", GET)
        with pytest.raises(UpstreamBroken, match="closed before the end of the body"):
            await connection.relay_body(send)
    assert connection.state is ConnectionState.MUST_CLOSE


async def test_no_answer_at_all_is_upstream_unavailable(
    pair: tuple[UpstreamConnection, Apiserver],
) -> None:
    connection, apiserver = pair
    apiserver.writer.write_eof()

    with pytest.raises(UpstreamUnavailable, match="closed the connection without an answer"):
        async with asyncio.timeout(GUARD):
            await connection.exchange("GET", GET)
    assert connection.state is ConnectionState.MUST_CLOSE


async def test_the_request_body_goes_out_chunked_and_the_answer_comes_back(
    pair: tuple[UpstreamConnection, Apiserver],
) -> None:
    connection, apiserver = pair

    async def body() -> AsyncIterator[bytes]:
        yield b'{"kind":'
        yield b""
        yield b'"ConfigMap"}'

    head = encode_request_head("POST", "/api/v1/configmaps", [("transfer-encoding", "chunked")])
    async with asyncio.timeout(GUARD):
        exchanging = asyncio.create_task(connection.exchange("POST", head, body(), chunked=True))
        assert await apiserver.request_head() == head
        assert await apiserver.reader.readuntil(b"0\r\n\r\n") == (
            encode_chunk(b'{"kind":') + encode_chunk(b'"ConfigMap"}') + b"0\r\n\r\n"
        )
        await apiserver.send(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
        response = await exchanging
        assert response.status == 201
        assert await connection.read_body() == b"{}"
    assert connection.reusable


async def test_switching_protocols_relays_the_bytes_that_came_with_the_head_first(
    pair: tuple[UpstreamConnection, Apiserver],
) -> None:
    connection, apiserver = pair
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n"
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    async def from_tunnel() -> AsyncIterator[bytes]:
        yield b"ping"

    feed = from_tunnel()

    async def receive() -> bytes:
        return await anext(feed, b"")

    async with asyncio.timeout(GUARD):
        await apiserver.send(head + b"first bytes")  # one write: the head and the first bytes
        response = await connection.exchange("POST", GET)
        assert response.status == 101 and connection.switched
        relay = asyncio.create_task(connection.relay_upgraded(send, read_size=READ_CHUNK))
        await connection.feed_upgraded(receive)
        await apiserver.request_head()
        assert await apiserver.reader.readexactly(4) == b"ping"
        assert await apiserver.reader.read() == b""  # the half-close arrived
        await apiserver.send(b" and later ones")
        apiserver.writer.close()
        await relay
    assert b"".join(sent) == b"first bytes and later ones"
    assert not connection.reusable
