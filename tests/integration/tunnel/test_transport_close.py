"""The tunnel transport over a real WebSocket pair on loopback: closing, and finding a dead
peer by the heartbeat (the pair and its fault injection: ``tunnel_pair.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from kubegate.tunnel.events import PING_INTERVAL, PING_TIMEOUT
from kubegate.tunnel.transport import TICK, TunnelClosed, TunnelConnection
from tests.fixtures.tunnel_pair import GUARD, Fault, TunnelPair, read_all, tunnel_pair

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pair() -> AsyncIterator[TunnelPair]:
    async with tunnel_pair() as joined:
        yield joined


# --- closing ----------------------------------------------------------------------------------


async def test_closing_the_tunnel_ends_every_open_stream_on_both_sides(pair: TunnelPair) -> None:
    paths = [f"/hold/{n}" for n in range(5)]
    streams = [await pair.gateway.open_stream("POST", path) for path in paths]
    async with asyncio.timeout(GUARD):
        for stream in streams:
            await stream.response()
        readers = [asyncio.create_task(read_all(stream)) for stream in streams]
        await pair.gateway.close("maintenance")
        await asyncio.wait(readers)
        for path in paths:
            await pair.app.done(path).wait()  # the agent's handlers are over too
    for reader in readers:
        assert isinstance(reader.exception(), TunnelClosed)
    for path in paths:
        with pytest.raises(TunnelClosed):
            await pair.app.held[path].receive()


async def test_closing_the_tunnel_returns_run_on_both_sides(pair: TunnelPair) -> None:
    await pair.gateway.open_stream("POST", "/hold/open")
    async with asyncio.timeout(GUARD):
        await pair.gateway.close("maintenance")
        await asyncio.wait([pair.gateway_task, pair.agent_task])
    assert pair.gateway_task.exception() is None
    assert pair.agent_task.exception() is None


async def test_gateway_close_reason_reaches_the_agent(pair: TunnelPair) -> None:
    async with asyncio.timeout(GUARD):
        await pair.gateway.close("maintenance")
        await pair.agent_task
    assert pair.agent.close_reason == "the peer closed the tunnel: maintenance"


async def test_opening_a_stream_on_a_closed_tunnel_raises_tunnel_closed(pair: TunnelPair) -> None:
    await pair.gateway.close("maintenance")
    with pytest.raises(TunnelClosed):
        await pair.gateway.open_stream("GET", "/answer/too-late")


async def test_agent_close_reason_reaches_the_gateway(pair: TunnelPair) -> None:
    async with asyncio.timeout(GUARD):
        await pair.agent.close("agent shutting down")
        await pair.gateway_task
    assert pair.gateway.close_reason == "the peer closed the tunnel: agent shutting down"


# --- heartbeat --------------------------------------------------------------------------------

DETECTION = PING_INTERVAL + PING_TIMEOUT + TICK


async def wait_closed_within(connection: TunnelConnection, seconds: float) -> float:
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await connection.wait_closed()
    return time.monotonic() - started


async def test_silent_agent_is_declared_dead_by_the_heartbeat(pair: TunnelPair) -> None:
    assert await read_all(await pair.request("/answer/1")) == b"answer to /answer/1"
    pair.agent_channel.fail(Fault.SILENT)
    elapsed = await wait_closed_within(pair.gateway, 10)
    assert pair.gateway.is_closed
    assert "PING" in (pair.gateway.close_reason or "")
    assert elapsed <= DETECTION + 1
    async with asyncio.timeout(GUARD):
        await pair.gateway_task


async def test_vanished_agent_is_declared_dead_even_when_sends_block(pair: TunnelPair) -> None:
    assert await read_all(await pair.request("/answer/1")) == b"answer to /answer/1"
    pair.gateway_channel.fail(Fault.JAMMED)
    await wait_closed_within(pair.gateway, 10)
    assert pair.gateway.is_closed
    assert "PING" in (pair.gateway.close_reason or "")
