"""The tunnel transport over a real WebSocket pair on loopback.

The WebSocket server side plays the gateway (client, opens streams) and the WebSocket client
side plays the agent (server, a handler answers each stream), as in production. Every test
runs on both tunnel protocols: 1 (HTTP/2) and 2 (kubegate frames).
The only fault injection is :class:`FaultyChannel`, a channel that stops carrying messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from kubegate.agent.client import WebsocketsChannel
from kubegate.tunnel.frames import DATA, END_STREAM, HEAD, HEADERS
from kubegate.tunnel.session import CONNECTION_WINDOW, PING_INTERVAL, PING_TIMEOUT, STREAM_WINDOW
from kubegate.tunnel.transport import (
    MAX_MESSAGE,
    TICK,
    Channel,
    ChannelClosed,
    StreamCancelled,
    TunnelClosed,
    TunnelConnection,
    TunnelStream,
)

pytestmark = pytest.mark.anyio

# A guard against hangs, not a speed assertion.
GUARD = 30.0
CHUNK = 64 * 1024


class Fault(Enum):
    NONE = "none"
    SILENT = "silent"  # the peer vanished: our sends go nowhere, nothing ever arrives
    JAMMED = "jammed"  # ... and the socket's send buffer is full: our sends block


class FaultyChannel:
    """Fault injection: a channel that carries messages until the peer vanishes.

    After :meth:`fail`, nothing is delivered any more (not even the close of the WebSocket)
    and sends are dropped or block, until :meth:`release` ends the pretence.
    """

    def __init__(self, inner: Channel) -> None:
        self.inner = inner
        self.fault = Fault.NONE
        self._released = asyncio.Event()

    def fail(self, fault: Fault) -> None:
        self.fault = fault

    def release(self) -> None:
        self._released.set()

    async def _vanish(self) -> bytes:
        await self._released.wait()
        raise ChannelClosed("released after fault injection")

    async def send(self, data: bytes) -> None:
        if self.fault is Fault.SILENT:
            return
        if self.fault is Fault.JAMMED:
            await self._vanish()
        await self.inner.send(data)

    async def receive(self) -> bytes:
        while True:
            if self.fault is not Fault.NONE:
                return await self._vanish()
            try:
                data = await self.inner.receive()
            except ChannelClosed:
                if self.fault is Fault.NONE:
                    raise
                return await self._vanish()
            if self.fault is Fault.NONE:
                return data

    async def close(self, code: int, reason: str) -> None:
        if self.fault is Fault.NONE or self._released.is_set():
            await self.inner.close(code, reason)


# --- the agent's stream handler ---------------------------------------------------------------


async def read_all(stream: TunnelStream) -> bytes:
    body = bytearray()
    while chunk := await stream.receive():
        body += chunk
    return bytes(body)


def ends_stream(data: bytes, stream_id: int, protocol: int) -> bool:
    """Whether these whole frames (HTTP/2, or protocol 2's) include END_STREAM for
    ``stream_id``."""
    offset = 0
    while protocol >= 2 and offset < len(data):
        kind, flags, frame_stream, length = HEAD.unpack_from(data, offset)
        if kind in (DATA, HEADERS) and flags & END_STREAM and frame_stream == stream_id:
            return True
        offset += HEAD.size + length
    while protocol < 2 and offset < len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        kind, flags = data[offset + 3], data[offset + 4]
        frame_stream = int.from_bytes(data[offset + 5 : offset + 9], "big") & 0x7FFF_FFFF
        if kind in (0x0, 0x1) and flags & 0x1 and frame_stream == stream_id:
            return True
        offset += 9 + length
    return False


@dataclass
class AgentApp:
    """The agent side's handler: a few endpoints, and a record of what each stream saw."""

    flooded: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    window_filled: asyncio.Event = field(default_factory=asyncio.Event)
    send_finished: asyncio.Event = field(default_factory=asyncio.Event)
    held: dict[str, TunnelStream] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    handler_done: dict[str, asyncio.Event] = field(default_factory=dict)

    def done(self, path: str) -> asyncio.Event:
        return self.handler_done.setdefault(path, asyncio.Event())

    async def __call__(self, stream: TunnelStream) -> None:
        assert stream.request is not None
        path = stream.request.path
        try:
            await self._route(stream, path)
        except BaseException as exc:
            self.errors[path] = exc
            raise
        finally:
            self.done(path).set()

    async def _route(self, stream: TunnelStream, path: str) -> None:
        if path == "/echo":
            await stream.respond(200)
            while chunk := await stream.receive():
                await stream.send(chunk)
            await stream.end()
        elif path.startswith("/answer/"):
            await stream.respond(200, (("x-path", path),))
            await stream.send(f"answer to {path}".encode(), end_stream=True)
        elif path == "/barrier":
            await stream.respond(204, end_stream=True)
        elif path == "/download":
            await stream.respond(200)
            for _ in range(4 * STREAM_WINDOW // CHUNK):
                await stream.send(bytes(CHUNK))
                self.sent += CHUNK
                if self.sent >= STREAM_WINDOW:
                    self.window_filled.set()
            await stream.end()
            self.send_finished.set()
        elif path.startswith("/flood"):
            await stream.respond(200)
            await stream.send(bytes(STREAM_WINDOW))
            await self.flooded.put(STREAM_WINDOW)
            await stream.receive()  # until cancelled
        elif path.startswith("/hold"):
            self.held[path] = stream
            await stream.respond(200)
            await stream.receive()
        elif path == "/cancel-me":
            await stream.respond(200)
            await stream.cancel()
        elif path == "/late":
            await self.released.wait()  # a slow upstream, meanwhile the gateway gives up
            await stream.respond(200, end_stream=True)
        elif path == "/boom":
            raise RuntimeError("a bug in the handler")
        else:
            await stream.respond(404, end_stream=True)


# --- the tunnel pair --------------------------------------------------------------------------


@dataclass
class TunnelPair:
    gateway: TunnelConnection
    agent: TunnelConnection
    app: AgentApp
    gateway_channel: FaultyChannel
    agent_channel: FaultyChannel
    gateway_task: asyncio.Task[None]
    agent_task: asyncio.Task[None]

    async def request(self, path: str) -> TunnelStream:
        """A GET without a body."""
        return await self.gateway.open_stream("GET", path, end_stream=True)

    async def barrier(self) -> None:
        """Returns once everything the agent flushed before now reached the gateway."""
        stream = await self.request("/barrier")
        assert (await stream.response()).status == 204


@contextlib.asynccontextmanager
async def tunnel_pair(protocol: int = 1) -> AsyncIterator[TunnelPair]:
    app = AgentApp()
    gateway_ready: asyncio.Future[tuple[TunnelConnection, FaultyChannel, asyncio.Task[None]]] = (
        asyncio.get_running_loop().create_future()
    )

    async def gateway_side(websocket: ServerConnection) -> None:
        channel = FaultyChannel(WebsocketsChannel(websocket))
        connection = TunnelConnection(channel, client=True, name="gateway", protocol=protocol)
        runner = asyncio.create_task(connection.run())
        gateway_ready.set_result((connection, channel, runner))
        # The test looks at how run() ended; the WebSocket closes when this returns.
        await asyncio.wait([runner])

    async with serve(
        gateway_side, "127.0.0.1", 0, compression=None, max_size=4 * MAX_MESSAGE, ping_interval=None
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(
            f"ws://127.0.0.1:{port}/",
            compression=None,
            max_size=4 * MAX_MESSAGE,
            ping_interval=None,
        ) as websocket:
            agent_channel = FaultyChannel(WebsocketsChannel(websocket))
            agent = TunnelConnection(
                agent_channel, client=False, handler=app, name="agent", protocol=protocol
            )
            agent_task = asyncio.create_task(agent.run())
            async with asyncio.timeout(GUARD):
                gateway, gateway_channel, gateway_task = await gateway_ready
            pair = TunnelPair(
                gateway, agent, app, gateway_channel, agent_channel, gateway_task, agent_task
            )
            try:
                yield pair
            finally:
                gateway_channel.release()
                agent_channel.release()
                async with asyncio.timeout(GUARD):
                    await gateway.close("the test is over")
                    await agent.close("the test is over")
                    await asyncio.wait([gateway_task, agent_task])


@pytest.fixture(params=[1, 2], ids=["h2", "frames"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[TunnelPair]:
    """A gateway and an agent joined by a real WebSocket, on tunnel protocol 1 or 2; the
    agent answers with AgentApp."""
    async with tunnel_pair(request.param) as joined:
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
    await asyncio.sleep(0.5)  # the reader pauses; the sender must be waiting
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
    assert not ends_stream(pending, stream.stream_id, pair.gateway.protocol)


# --- errors in a handler ----------------------------------------------------------------------


async def test_handler_exception_resets_only_its_stream(pair: TunnelPair) -> None:
    stream = await pair.request("/boom")
    async with asyncio.timeout(GUARD):
        with pytest.raises(StreamCancelled):
            await stream.response()
        assert await read_all(await pair.request("/answer/1")) == b"answer to /answer/1"
    assert not pair.gateway.is_closed and not pair.agent.is_closed


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
