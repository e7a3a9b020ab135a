"""The tunnel's I/O: a sans-IO :class:`~kubegate.tunnel.events.Session` driven over a
WebSocket-like :class:`Channel`.

:class:`TunnelConnection` reads the channel, feeds the session, wakes the streams
(:class:`~kubegate.tunnel.stream.TunnelStream`) the events are for, sends what the session
wants sent and keeps the heartbeat. Both ends of the tunnel use it with a
:class:`~kubegate.tunnel.frames.FrameSession`: the gateway opens streams
(:meth:`TunnelConnection.open_stream`), the agent answers them (``handler`` gets each stream
the gateway opens). The agent also drives its HTTP/2 client for kube-apiserver with it
(``agent/multiplex.py``). Every task this module starts is kept in a set until it finishes.

The streams and their errors are re-exported here: this module is the tunnel's I/O API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.events import (
    PING_TIMEOUT,
    REFUSED_STREAM,
    ConnectionClosed,
    DataReceived,
    Event,
    Headers,
    RequestReceived,
    ResponseReceived,
    Session,
    SessionFactory,
    StreamEnded,
    StreamReset,
    WindowOpened,
)
from kubegate.tunnel.stream import StreamCancelled, TunnelClosed, TunnelStream

__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_MESSAGE",
    "TICK",
    "Channel",
    "ChannelClosed",
    "StreamCancelled",
    "StreamHandler",
    "TunnelClosed",
    "TunnelConnection",
    "TunnelStream",
]

log = logging.getLogger(__name__)

# One WebSocket message carries at most this much of the session's byte stream.
MAX_MESSAGE = 1024 * 1024
TICK = 0.5
CLOSE_TIMEOUT = 2.0


class ChannelClosed(Exception):
    """The WebSocket under the tunnel is gone."""


class Channel(Protocol):
    """What the tunnel needs from a WebSocket: binary messages both ways, and close."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes:
        """The next binary message; raises :class:`ChannelClosed` when the socket closed."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


StreamHandler = Callable[[TunnelStream], Awaitable[None]]


class TunnelConnection:
    """Both directions of one tunnel over one :class:`Channel`; :meth:`run` until it closes."""

    def __init__(
        self,
        channel: Channel,
        session: SessionFactory,
        *,
        handler: StreamHandler | None = None,
        name: str = "tunnel",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``session`` makes the connection's session from the clock's time now, e.g.
        :meth:`FrameSession.gateway <kubegate.tunnel.frames.FrameSession.gateway>`."""
        self.channel = channel
        self.name = name
        self._clock = clock
        self.session: Session = session(clock())
        self._handler = handler
        self._streams: dict[int, TunnelStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()
        self._window: asyncio.Event = asyncio.Event()
        self._closed = asyncio.Event()
        self.close_reason: str | None = None
        self._reader: asyncio.Task[object] | None = None
        self._stopping_reader = False

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise TunnelClosed(f"{self.name} closed: {self.close_reason}")

    def _forget(self, stream_id: int) -> None:
        """The application is done with the stream: drop it and free its unread bytes."""
        if (stream := self._streams.pop(stream_id, None)) is not None:
            stream._release()

    async def _flush(self) -> None:
        async with self._write_lock:
            data = self.session.data_to_send()
            if not data:
                return
            try:
                for start in range(0, len(data), MAX_MESSAGE):
                    await self.channel.send(data[start : start + MAX_MESSAGE])
            except ChannelClosed:
                self._mark_closed("the WebSocket closed")
                raise TunnelClosed(f"{self.name} closed: {self.close_reason}") from None

    def _window_changed(self) -> None:
        """Wake every sender waiting for credit (and, on close, for good)."""
        self._window.set()
        self._window = asyncio.Event()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open_stream(
        self, method: str, path: str, headers: Headers = (), *, end_stream: bool = False
    ) -> TunnelStream:
        """Gateway: start a request on a new stream."""
        self._check_open()
        stream_id = self.session.open_stream(method, path, headers, end_stream=end_stream)
        stream = TunnelStream(self, stream_id)
        stream._local_ended = end_stream
        self._streams[stream_id] = stream
        await self._flush()
        return stream

    async def run(self) -> None:
        """Read and dispatch until the connection closes; then close every stream.

        Never raises for a peer's misbehaviour: the connection is closed with the reason
        logged and kept in :attr:`close_reason`.
        """
        self._reader = asyncio.current_task()
        heartbeat = asyncio.ensure_future(self._heartbeat())
        try:
            await self._flush()  # our preface and settings
            while not self._closed.is_set():
                data = await self.channel.receive()
                events = self.session.receive_data(data, self._clock())
                for event in events:
                    self._dispatch(event)
                await self._flush()
        except ChannelClosed:
            self._mark_closed("the WebSocket closed")
        except TunnelClosed:
            pass
        except TunnelProtocolError as exc:
            await self.close(str(exc), code=1002)
        except asyncio.CancelledError:
            if not self._stopping_reader:
                raise  # cancelled from outside
            # close() stopped the read: a normal end.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        finally:
            self._reader = None
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            if not self._closed.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.close("shutting down", code=1001))
            else:
                with contextlib.suppress(Exception):
                    await self.channel.close(1000, (self.close_reason or "")[:120])
            await self._finish_streams()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            incoming = TunnelStream(self, event.stream_id, event)
            self._streams[event.stream_id] = incoming
            if event.end_stream:
                incoming._on_end()
            if self._handler is None:
                self.session.reset(event.stream_id, REFUSED_STREAM)
                return
            self._spawn(self._serve(incoming, self._handler))
        elif isinstance(event, ResponseReceived):
            if (stream := self._streams.get(event.stream_id)) is not None:
                stream._on_response(event)
        elif isinstance(event, DataReceived):
            if (stream := self._streams.get(event.stream_id)) is None:
                self.session.acknowledge(event.stream_id, event.flow_length)
            else:
                stream._on_data(event)
        elif isinstance(event, StreamEnded):
            if (stream := self._streams.get(event.stream_id)) is not None:
                stream._on_end()
        elif isinstance(event, StreamReset):
            if (stream := self._streams.pop(event.stream_id, None)) is not None:
                stream._on_error(StreamCancelled(f"stream {event.stream_id} reset by the peer"))
                stream._release()
        elif isinstance(event, WindowOpened):
            self._window_changed()
        elif isinstance(event, ConnectionClosed):
            reason = event.reason or f"GOAWAY, error code {event.error_code}"
            self._mark_closed(f"the peer closed the tunnel: {reason}")

    async def _serve(self, stream: TunnelStream, handler: StreamHandler) -> None:
        try:
            await handler(stream)
        except (TunnelClosed, StreamCancelled):
            pass
        except TunnelProtocolError as exc:
            # The peer broke the protocol on this stream: the whole tunnel goes.
            await self.close(str(exc), code=1002)
        except Exception:
            log.exception("tunnel stream handler failed", extra={"stream_id": stream.stream_id})
            await stream.cancel()
        finally:
            self._forget(stream.stream_id)

    async def _heartbeat(self) -> None:
        while not self._closed.is_set():
            await asyncio.sleep(TICK)
            if self._closed.is_set():
                return
            # The deadline is checked without the write lock: a peer that stopped reading
            # blocks writers, and must still be found dead.
            if not self.session.heartbeat(self._clock()):
                await self.close(f"the peer did not answer a PING within {PING_TIMEOUT:g} s")
                return
            if not self._write_lock.locked():  # else the writer takes our PING along
                # In a task of its own: a send that blocks must not stop this loop.
                self._spawn(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(TunnelClosed):
            await self._flush()

    def _mark_closed(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        self._window.set()  # senders wake, see the close and raise

    async def close(self, reason: str, *, code: int = 1000, expected: bool = False) -> None:
        """Close the tunnel: GOAWAY with ``reason``, then the WebSocket. Logs the reason: a
        warning, or at info level when the close is ``expected`` (routine, not a problem)."""
        if self._closed.is_set():
            return
        log.log(logging.INFO if expected else logging.WARNING, "closing %s: %s", self.name, reason)
        self.session.close(reason)
        self._mark_closed(reason)
        # A peer that stopped reading must not hold the close up.
        with contextlib.suppress(TunnelClosed, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._flush()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.channel.close(code, reason[:120])
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            self._stopping_reader = True
            reader.cancel()

    async def _finish_streams(self) -> None:
        error = TunnelClosed(f"{self.name} closed: {self.close_reason}")
        for stream in list(self._streams.values()):
            stream._on_error(error)
        self._streams.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_closed(self) -> None:
        await self._closed.wait()
