"""The agent de-chunks the apiserver's chunked bodies: gathered when they arrive together,
passed on at once when nothing follows (a watch event)."""

from __future__ import annotations

import asyncio
import os
from typing import Any, cast

import pytest

from kubegate.agent.upstream import READ_CHUNK, UpgradeConnection, UpstreamBroken

pytestmark = pytest.mark.anyio


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


def _connection(reader: asyncio.StreamReader) -> UpgradeConnection:
    headers = [("Transfer-Encoding", "chunked")]
    return UpgradeConnection(reader, cast(Any, None), 200, headers)


async def test_chunks_that_arrived_together_are_passed_on_as_one_piece() -> None:
    reader = asyncio.StreamReader()
    pieces = [os.urandom(2048) for _ in range(20)]
    reader.feed_data(_chunked(*pieces) + b"0\r\n\r\n")
    reader.feed_eof()
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    await _connection(reader).relay_body(send, method="GET")
    assert sent == [b"".join(pieces)]


async def test_a_chunk_with_nothing_behind_it_is_passed_on_before_the_next_arrives() -> None:
    reader = asyncio.StreamReader()
    sent: asyncio.Queue[bytes] = asyncio.Queue()
    relay = asyncio.create_task(_connection(reader).relay_body(sent.put, method="GET"))
    reader.feed_data(_chunked(b'{"type":"ADDED"}\n'))
    # The second event does not exist yet: the first must not wait for it.
    assert await asyncio.wait_for(sent.get(), 10) == b'{"type":"ADDED"}\n'
    reader.feed_data(_chunked(b'{"type":"MODIFIED"}\n') + b"0\r\n\r\n")
    await asyncio.wait_for(relay, 10)
    assert sent.get_nowait() == b'{"type":"MODIFIED"}\n'


async def test_a_large_chunk_goes_on_in_pieces_of_at_most_read_chunk_intact() -> None:
    reader = asyncio.StreamReader()
    body = os.urandom(3 * READ_CHUNK + 123)
    reader.feed_data(_chunked(b"head", body, b"tail") + b"0\r\n\r\n")
    reader.feed_eof()
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    await _connection(reader).relay_body(send, method="GET")
    assert b"".join(sent) == b"head" + body + b"tail"
    assert max(len(piece) for piece in sent) <= READ_CHUNK


async def test_a_body_cut_off_mid_chunk_is_upstream_broken() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"10\r\nonly-eight")
    reader.feed_eof()

    async def send(data: bytes) -> None:
        del data

    with pytest.raises(UpstreamBroken):
        await _connection(reader).relay_body(send, method="GET")
