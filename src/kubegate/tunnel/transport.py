"""The tunnel's I/O: a :class:`TunnelSession` driven over a WebSocket-like :class:`Channel`.

:class:`TunnelConnection` reads the channel, feeds the session, wakes the streams the events
are for, sends what the session wants sent and keeps the heartbeat. Both ends use it: the
gateway as HTTP/2 client (``open_stream``), the agent as HTTP/2 server (``handler`` gets each
stream the gateway opens).

Backpressure is HTTP/2 flow control: a stream's received bytes are acknowledged only when
its reader takes them (:meth:`TunnelStream.receive`), and :meth:`TunnelStream.send` waits
for window. Every task this module starts is kept in a set until it finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from kubegate.errors import KubegateError, TunnelProtocolError
from kubegate.tunnel import session as h2s
from kubegate.tunnel.frames import FrameSession
from kubegate.tunnel.session import Headers, TunnelSession

log = logging.getLogger(__name__)

# One WebSocket message carries at most this much of the HTTP/2 byte stream.
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


class TunnelClosed(KubegateError):
    """The tunnel connection closed while a stream was using it."""

    status = 503
    code = "tunnel_closed"
    reason = "ServiceUnavailable"


class StreamCancelled(KubegateError):
    """The peer reset the stream (RST_STREAM)."""

    status = 502
    code = "stream_reset"
    reason = "BadGateway"


StreamHandler = Callable[["TunnelStream"], Awaitable[None]]


class TunnelStream:
    """One HTTP/2 stream: a request and its response, each a head and a body."""

    def __init__(
        self,
        connection: TunnelConnection,
        stream_id: int,
        request: h2s.RequestReceived | None = None,
    ) -> None:
        self._conn = connection
        self.stream_id = stream_id
        self.request = request
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._ended = False
        self._error: KubegateError | None = None
        self._readable = asyncio.Event()
        self._dead = asyncio.Event()
        self._dead_callbacks: list[Callable[[], None]] = []
        self._response: asyncio.Future[h2s.ResponseReceived] = (
            asyncio.get_running_loop().create_future()
        )
        self._local_ended = False

    # -- called by the connection -----------------------------------------------------

    def _on_response(self, event: h2s.ResponseReceived) -> None:
        if not self._response.done():
            self._response.set_result(event)
        if event.end_stream:
            self._on_end()

    def _on_data(self, event: h2s.DataReceived) -> None:
        self._chunks.append((event.data, event.flow_length))
        self._readable.set()

    def _on_end(self) -> None:
        self._ended = True
        self._readable.set()
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        """Both sides ended: the connection need not route anything to us any more (unread
        bytes stay here, and are acknowledged when read)."""
        if self._ended and self._local_ended and (self.request or self._response.done()):
            self._conn._streams.pop(self.stream_id, None)

    def _release(self) -> None:
        """Dropped unread: give the bytes' credit back, or the connection window shrinks
        for good and the whole tunnel stalls once it is gone."""
        unread = sum(flow for _, flow in self._chunks)
        self._chunks.clear()
        if unread and not self._conn.session.closed:
            self._conn.session.acknowledge(self.stream_id, unread)

    def _on_error(self, error: KubegateError) -> None:
        if self._error is None:
            self._error = error
        if not self._dead.is_set():
            self._dead.set()
            callbacks, self._dead_callbacks = self._dead_callbacks, []
            for callback in callbacks:
                callback()
        if not self._response.done():
            self._response.set_exception(error)
            self._response.exception()  # retrieved: no "never retrieved" warning
        self._readable.set()

    # -- used by the application ------------------------------------------------------

    @property
    def is_dead(self) -> bool:
        """The stream was reset (by either side) or its tunnel closed."""
        return self._dead.is_set()

    def on_dead(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the stream is reset or its tunnel closes (at once if it
        already is): cheaper than a task in :meth:`wait_dead` for every request."""
        if self._dead.is_set():
            callback()
        else:
            self._dead_callbacks.append(callback)

    async def wait_dead(self) -> None:
        """Wait until the stream is reset or its tunnel closes (a relay blocked on the other
        side uses this to notice that nobody is listening any more)."""
        await self._dead.wait()

    async def response(self) -> h2s.ResponseReceived:
        """Gateway: wait for the response head."""
        return await self._response

    async def respond(
        self, status: int, headers: Headers = (), *, end_stream: bool = False, body: bytes = b""
    ) -> None:
        """Agent: send the response head, and with ``body`` (then ``end_stream`` ends the
        stream after it) a small whole answer in the same write when the window allows."""
        if self._error is not None:
            raise self._error
        self._conn._check_open()
        session = self._conn.session
        if not body:
            session.respond(self.stream_id, status, headers, end_stream=end_stream)
            self._local_ended = self._local_ended or end_stream
            self._maybe_finished()
            await self._conn._flush()
            return
        session.respond(self.stream_id, status, headers)
        sent = session.send_data(self.stream_id, body, end_stream=end_stream)
        if sent < len(body):
            await self._conn._flush()
            await self.send(body[sent:], end_stream=end_stream)
            return
        self._local_ended = self._local_ended or end_stream
        self._maybe_finished()
        await self._conn._flush()

    @property
    def ready(self) -> bool:
        """:meth:`receive` would answer without waiting (data is buffered, or the stream
        ended or failed): a relay can gather more before writing."""
        return bool(self._chunks) or self._ended or self._error is not None

    async def receive(self) -> bytes:
        """The next chunk of the peer's body; ``b""`` once the peer ended the stream.

        Raises :class:`StreamCancelled` or :class:`TunnelClosed` if the stream died first.
        """
        while True:
            if self._chunks:
                data, flow = self._chunks.popleft()
                if not self._chunks and not self._ended:
                    self._readable.clear()
                if not self._conn.session.closed:
                    self._conn.session.acknowledge(self.stream_id, flow)
                    await self._conn._flush()
                return data
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            self._readable.clear()
            await self._readable.wait()

    async def send(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send body bytes, waiting for flow-control window as needed."""
        view = memoryview(data)
        while True:
            if self._error is not None:
                raise self._error
            self._conn._check_open()
            # Taken before trying: credit that arrives while we flush still wakes us.
            window = self._conn._window
            sent = self._conn.session.send_data(self.stream_id, view, end_stream=end_stream)
            view = view[sent:]
            if sent or (end_stream and not view):
                await self._conn._flush()
            if not view:
                self._local_ended = self._local_ended or end_stream
                self._maybe_finished()
                return
            await window.wait()

    async def end(self) -> None:
        """Half-close: no more data from us."""
        if self._local_ended:
            return
        if self._error is not None:
            raise self._error
        self._conn._check_open()
        self._local_ended = True
        self._conn.session.end_stream(self.stream_id)
        self._maybe_finished()
        await self._conn._flush()

    async def cancel(self) -> None:
        """Reset the stream (RST_STREAM CANCEL); safe to call more than once."""
        self._on_error(StreamCancelled(f"stream {self.stream_id} cancelled"))
        self._release()
        if not self._conn.session.closed:
            self._conn.session.reset(self.stream_id)
            self._conn._forget(self.stream_id)
            with contextlib.suppress(TunnelClosed):
                await self._conn._flush()


class TunnelConnection:
    """Both directions of one tunnel over one :class:`Channel`; :meth:`run` until it closes."""

    def __init__(
        self,
        channel: Channel,
        *,
        client: bool,
        handler: StreamHandler | None = None,
        name: str = "tunnel",
        clock: Callable[[], float] = time.monotonic,
        authority: str = "agent",
        protocol: int = 1,
    ) -> None:
        self.channel = channel
        self.name = name
        self._clock = clock
        self.protocol = protocol
        self.session: TunnelSession | FrameSession = (
            FrameSession(client=client, now=clock(), authority=authority)
            if protocol >= 2
            else TunnelSession(client=client, now=clock(), authority=authority)
        )
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

    def _dispatch(self, event: h2s.Event) -> None:
        if isinstance(event, h2s.RequestReceived):
            incoming = TunnelStream(self, event.stream_id, event)
            self._streams[event.stream_id] = incoming
            if event.end_stream:
                incoming._on_end()
            if self._handler is None:
                self.session.reset(event.stream_id, 7)  # REFUSED_STREAM
                return
            self._spawn(self._serve(incoming, self._handler))
        elif isinstance(event, h2s.ResponseReceived):
            if (stream := self._streams.get(event.stream_id)) is not None:
                stream._on_response(event)
        elif isinstance(event, h2s.DataReceived):
            if (stream := self._streams.get(event.stream_id)) is None:
                self.session.acknowledge(event.stream_id, event.flow_length)
            else:
                stream._on_data(event)
        elif isinstance(event, h2s.StreamEnded):
            if (stream := self._streams.get(event.stream_id)) is not None:
                stream._on_end()
        elif isinstance(event, h2s.StreamReset):
            if (stream := self._streams.pop(event.stream_id, None)) is not None:
                stream._on_error(StreamCancelled(f"stream {event.stream_id} reset by the peer"))
                stream._release()
        elif isinstance(event, h2s.WindowOpened):
            self._window_changed()
        elif isinstance(event, h2s.ConnectionClosed):
            reason = event.reason or f"HTTP/2 GOAWAY, error code {event.error_code}"
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
                await self.close(f"the peer did not answer a PING within {h2s.PING_TIMEOUT:g} s")
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
