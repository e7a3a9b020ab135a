"""A gateway and an agent joined by a real WebSocket pair on loopback, for the transport's
integration tests.

The WebSocket server side plays the gateway (it opens streams) and the WebSocket client side
plays the agent (a handler, :class:`AgentApp`, answers each stream), as in production, on
tunnel protocol 2 (``FrameSession``). The only fault injection is :class:`FaultyChannel`, a
channel that stops carrying messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from kubegate.agent.client import WebsocketsChannel
from kubegate.tunnel.frames import FrameSession
from kubegate.tunnel.transport import (
    MAX_MESSAGE,
    Channel,
    ChannelClosed,
    TunnelConnection,
    TunnelStream,
)
from kubegate.tunnel.wire import DATA, END_STREAM, HEAD, HEADERS, STREAM_WINDOW

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


def ends_stream(data: bytes, stream_id: int) -> bool:
    """Whether these whole frames include END_STREAM for ``stream_id``."""
    offset = 0
    while offset < len(data):
        kind, flags, frame_stream, length = HEAD.unpack_from(data, offset)
        if kind in (DATA, HEADERS) and flags & END_STREAM and frame_stream == stream_id:
            return True
        offset += HEAD.size + length
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
async def tunnel_pair() -> AsyncIterator[TunnelPair]:
    """A gateway and an agent joined by a real WebSocket; the agent answers with AgentApp."""
    app = AgentApp()
    gateway_ready: asyncio.Future[tuple[TunnelConnection, FaultyChannel, asyncio.Task[None]]] = (
        asyncio.get_running_loop().create_future()
    )

    async def gateway_side(websocket: ServerConnection) -> None:
        channel = FaultyChannel(WebsocketsChannel(websocket))
        connection = TunnelConnection(channel, FrameSession.gateway, name="gateway")
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
            agent = TunnelConnection(agent_channel, FrameSession.agent, handler=app, name="agent")
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
