"""The tunnel transport over a real WebSocket pair on loopback: data, flow control,
cancellation, a failing handler (the pair: ``tunnel_pair.py``; closing and the heartbeat:
``test_transport_close.py``).
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from kubegate.tunnel.transport import StreamCancelled
from kubegate.tunnel.wire import CONNECTION_WINDOW, STREAM_WINDOW
from tests.fixtures.tunnel_pair import (
    GUARD,
    TunnelPair,
    ends_stream,
    read_all,
    tunnel_pair,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pair() -> AsyncIterator[TunnelPair]:
    async with tunnel_pair() as joined:
        yield joined


# --- data -------------------------------------------------------------------------------------


async def test_eight_mebibytes_echo_back_intact(pair: TunnelPair) -> None:
    payload = bytes(range(251)) * (8 * 1024 * 1024 // 251 + 1)
    stream = await pair.gateway.open_stream("PUT", "/echo")

    async def upload() -> None:
        for start in range(0, len(payload), 300_000):
            await stream.send(payload[start : start + 300_000])
        await stream.end()

    async with asyncio.timeout(GUARD), asyncio.TaskGroup() as tasks:
        tasks.create_task(upload())
        echoed = tasks.create_task(read_all(stream))
    assert (await stream.response()).status == 200
    assert echoed.result() == payload


async def test_two_hundred_concurrent_streams_each_get_their_own_answer(pair: TunnelPair) -> None:
    async def ask(n: int) -> tuple[int, str, bytes]:
        stream = await pair.request(f"/answer/{n}")
        response = await stream.response()
        return response.status, dict(response.headers)["x-path"], await read_all(stream)

    async with asyncio.timeout(GUARD):
        answers = await asyncio.gather(*(ask(n) for n in range(200)))
    assert answers == [(200, f"/answer/{n}", f"answer to /answer/{n}".encode()) for n in range(200)]


async def test_slow_reader_holds_the_sender_at_the_stream_window(pair: TunnelPair) -> None:
    stream = await pair.request("/download")
    async with asyncio.timeout(GUARD):
        await stream.response()
        await pair.app.window_filled.wait()
        # The reader pauses. Two round trips: after the first the gateway holds every byte
        # the agent sent, after the second any credit it gave back for them (it must give
        # none before they are read) has reached the agent, and let it send on.
        await pair.barrier()
        await pair.barrier()
    assert pair.agent.session.send_window(stream.stream_id) == 0
    assert pair.app.sent == STREAM_WINDOW
    assert not pair.app.send_finished.is_set()

    async with asyncio.timeout(GUARD):
        body = await read_all(stream)
        await pair.app.send_finished.wait()
    assert len(body) == 4 * STREAM_WINDOW == pair.app.sent


async def test_finished_stream_is_not_retained_by_the_connection(pair: TunnelPair) -> None:
    stream = await pair.request("/answer/once")
    async with asyncio.timeout(GUARD):
        assert await read_all(stream) == b"answer to /answer/once"
        await pair.app.done("/answer/once").wait()
    gone = weakref.ref(stream)
    del stream
    gc.collect()
    assert gone() is None, "the gateway keeps every finished stream for the tunnel's life"


# --- cancellation -----------------------------------------------------------------------------


async def test_gateway_cancel_makes_the_agents_receive_raise_stream_cancelled(
    pair: TunnelPair,
) -> None:
    stream = await pair.gateway.open_stream("POST", "/hold/1")
    async with asyncio.timeout(GUARD):
        await stream.response()
        await stream.cancel()
        await pair.app.done("/hold/1").wait()
    assert isinstance(pair.app.errors["/hold/1"], StreamCancelled)


async def test_on_dead_callbacks_run_once_when_the_peer_resets_and_at_once_after(
    pair: TunnelPair,
) -> None:
    stream = await pair.gateway.open_stream("POST", "/hold/2")
    async with asyncio.timeout(GUARD):
        await stream.response()
        held = pair.app.held["/hold/2"]
        calls: list[str] = []
        held.on_dead(lambda: calls.append("before"))
        await stream.cancel()
        await pair.app.done("/hold/2").wait()
    held.on_dead(lambda: calls.append("after"))
    assert calls == ["before", "after"]


async def test_agent_cancel_makes_the_gateways_receive_raise_stream_cancelled(
    pair: TunnelPair,
) -> None:
    stream = await pair.request("/cancel-me")
    async with asyncio.timeout(GUARD):
        with pytest.raises(StreamCancelled):
            await read_all(stream)


async def test_cancelling_one_stream_leaves_the_others_working(pair: TunnelPair) -> None:
    doomed = await pair.gateway.open_stream("POST", "/hold/doomed")
    async with asyncio.timeout(GUARD):
        await doomed.response()
        await doomed.cancel()
        assert await read_all(await pair.request("/answer/next")) == b"answer to /answer/next"


async def test_unread_bytes_of_cancelled_streams_return_to_the_connection_window(
    pair: TunnelPair,
) -> None:
    async with asyncio.timeout(5):
        for n in range(CONNECTION_WINDOW // STREAM_WINDOW):
            stream = await pair.request(f"/flood/{n}")
            await pair.app.flooded.get()
            await pair.barrier()  # the whole window now waits, unread, at the gateway
            await stream.cancel()
        last = await pair.request("/answer/after-the-floods")
        assert await read_all(last) == b"answer to /answer/after-the-floods"


async def test_answering_a_stream_the_gateway_already_cancelled_keeps_the_tunnel(
    pair: TunnelPair,
) -> None:
    stream = await pair.request("/late")
    async with asyncio.timeout(GUARD):
        await stream.cancel()
        await pair.barrier()  # the RST_STREAM reached the agent
        pair.app.released.set()
        await pair.app.done("/late").wait()
        assert not pair.gateway.is_closed, pair.gateway.close_reason
        assert await read_all(await pair.request("/answer/x")) == b"answer to /answer/x"


async def test_empty_send_with_end_stream_is_flushed_before_send_returns(
    pair: TunnelPair,
) -> None:
    stream = await pair.gateway.open_stream("POST", "/echo")
    async with asyncio.timeout(GUARD):
        await stream.response()
        await stream.send(b"", end_stream=True)
        pending = pair.gateway.session.data_to_send()
        await pair.gateway.channel.send(pending)  # let the stream finish regardless
        assert await read_all(stream) == b""
    assert not ends_stream(pending, stream.stream_id)


# --- errors in a handler ----------------------------------------------------------------------


async def test_handler_exception_resets_only_its_stream(pair: TunnelPair) -> None:
    stream = await pair.request("/boom")
    async with asyncio.timeout(GUARD):
        with pytest.raises(StreamCancelled):
            await stream.response()
        assert await read_all(await pair.request("/answer/1")) == b"answer to /answer/1"
    assert not pair.gateway.is_closed and not pair.agent.is_closed
