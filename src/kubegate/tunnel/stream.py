"""One stream of a :class:`~kubegate.tunnel.transport.TunnelConnection`: a request and its
response, each a head and a body, with the errors a stream raises.

The connection routes each stream's events here (the ``_on_*`` methods); the application reads
and writes through the public methods. Backpressure is the session's flow control: received
bytes are acknowledged only when :meth:`TunnelStream.receive` hands them out, and
:meth:`TunnelStream.send` waits for window.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from kubegate.errors import KubegateError
from kubegate.tunnel.events import DataReceived, Headers, RequestReceived, ResponseReceived

if TYPE_CHECKING:
    from kubegate.tunnel.transport import TunnelConnection


class TunnelClosed(KubegateError):
    """The tunnel connection closed while a stream was using it."""

    status = 503
    code = "tunnel_closed"
    reason = "ServiceUnavailable"


class StreamCancelled(KubegateError):
    """The peer reset the stream."""

    status = 502
    code = "stream_reset"
    reason = "BadGateway"


class TunnelStream:
    """One stream: a request and its response, each a head and a body."""

    def __init__(
        self,
        connection: TunnelConnection,
        stream_id: int,
        request: RequestReceived | None = None,
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
        self._response: asyncio.Future[ResponseReceived] = (
            asyncio.get_running_loop().create_future()
        )
        self._local_ended = False

    # -- called by the connection -----------------------------------------------------

    def _on_response(self, event: ResponseReceived) -> None:
        if not self._response.done():
            self._response.set_result(event)
        if event.end_stream:
            self._on_end()

    def _on_data(self, event: DataReceived) -> None:
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

    async def response(self) -> ResponseReceived:
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
