"""One HTTP/1.1 connection to kube-apiserver: a request out, its response in, and after a
``101`` the upgraded protocol's bytes both ways.

:class:`UpstreamConnection` moves bytes between a :class:`~kubegate.agent.stream.ByteStream`
and the sans-IO :class:`~kubegate.agent.http1.ResponseParser`, and translates failures where
they enter (``errors.map_exceptions``): :class:`UpstreamUnavailable` until a response head has
arrived, :class:`UpstreamBroken` after one. Its :class:`ConnectionState` says what it is good
for; only an ``IDLE`` one may carry another request (the pool's keep-alive).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, Awaitable, Callable

from kubegate.agent.http1 import (
    MAX_HEAD,
    NEED_DATA,
    ConnectionClosed,
    Data,
    EndOfMessage,
    RemoteProtocolError,
    Response,
    ResponseParser,
)
from kubegate.agent.request_head import LAST_CHUNK, encode_chunk
from kubegate.agent.stream import ByteStream
from kubegate.errors import BadGateway, KubegateError, Unavailable, map_exceptions
from kubegate.tunnel.exchange import response_has_body

READ_CHUNK = 64 * 1024

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes]]


class UpstreamUnavailable(Unavailable):
    """The apiserver could not be reached, or gave up before its response head."""

    code = "upstream_unavailable"


class UpstreamBroken(BadGateway):
    """The apiserver's connection failed after its response head: the body is truncated."""

    code = "upstream_broken"


_Mapping = dict[type[BaseException], type[KubegateError]]
_BEFORE_HEAD: _Mapping = {OSError: UpstreamUnavailable, RemoteProtocolError: UpstreamUnavailable}
_AFTER_HEAD: _Mapping = {OSError: UpstreamBroken, RemoteProtocolError: UpstreamBroken}


class ConnectionState(enum.Enum):
    """What an :class:`UpstreamConnection` is good for."""

    IDLE = "idle"  # ready for a request: new, or its last response read to the end
    ACTIVE = "active"  # a request went out; its response is being read
    SWITCHED = "switched"  # a 101 came: the bytes are the upgraded protocol's
    MUST_CLOSE = "must_close"  # a response ended the exchange (or it failed): close it
    CLOSED = "closed"


_IDLE, _ACTIVE, _SWITCHED, _MUST_CLOSE, _CLOSED = ConnectionState


class UpstreamConnection:
    """An HTTP/1.1 connection to the apiserver. Always :meth:`close` it (or give it back to
    the pool, which does)."""

    def __init__(self, stream: ByteStream, *, max_head: int = MAX_HEAD) -> None:
        self._stream = stream
        self._parser = ResponseParser(max_head=max_head)
        self.state = _IDLE
        self.response: Response | None = None  # the head of the current (or last) answer
        self._trailing = b""

    @property
    def status(self) -> int:
        assert self.response is not None, "no response head yet"
        return self.response.status

    @property
    def headers(self) -> list[tuple[str, str]]:
        assert self.response is not None, "no response head yet"
        return self.response.headers

    @property
    def switched(self) -> bool:
        """A ``101`` came: :meth:`relay_upgraded` and :meth:`feed_upgraded` carry the rest."""
        return self.state is _SWITCHED

    @property
    def reusable(self) -> bool:
        """Fit for another request: idle, and the apiserver has not closed it meanwhile."""
        return self.state is _IDLE and self._stream.reusable

    # -- one exchange ---------------------------------------------------------------------

    async def exchange(
        self,
        method: str,
        head: bytes,
        body: AsyncIterable[bytes] | None = None,
        *,
        chunked: bool = False,
    ) -> Response:
        """Send a request (``head`` from
        :func:`~kubegate.agent.request_head.encode_request_head`;
        ``body`` streamed, chunk-encoded if ``chunked``) and answer its response head.

        Raises :class:`UpstreamUnavailable` when no response head came (the connection is
        then ``MUST_CLOSE``).
        """
        if self.state is not _IDLE:
            raise RuntimeError(f"no request can go on a connection in state {self.state.name}")
        self.state = _ACTIVE
        parser = self._parser
        stream = self._stream
        try:
            with map_exceptions(_BEFORE_HEAD):
                parser.start_response(method)
                stream.write(head)
                if body is not None:
                    await self._send_body(body, chunked=chunked)
                await stream.drain()
                while True:
                    event = parser.next_event()
                    if event is NEED_DATA:
                        parser.receive_data(await stream.read(READ_CHUNK))
                    elif isinstance(event, Response):
                        break
                    else:  # a parser that reports no head first: not an answer we know
                        raise RemoteProtocolError("it did not answer in HTTP/1.1")
        except BaseException:
            self.state = _MUST_CLOSE
            raise
        self.response = event
        if event.status == 101:
            self.state = _SWITCHED
            self._trailing = parser.trailing_data
        elif not response_has_body(method, event.status):
            self._finish(parser.next_event())  # the end that came with the head
        return event

    async def _send_body(self, body: AsyncIterable[bytes], *, chunked: bool) -> None:
        stream = self._stream
        async for chunk in body:
            if not chunk:
                continue
            stream.write(encode_chunk(chunk) if chunked else chunk)
            await stream.drain()
        if chunked:
            stream.write(LAST_CHUNK)

    async def relay_body(self, send: Send) -> None:
        """Pass the response body on to ``send`` as it arrives (de-chunked, never decoded):
        ``send`` waiting is the backpressure. Nothing for an answer without a body.

        Raises :class:`UpstreamBroken` if the apiserver breaks off.
        """
        if self.state is not _ACTIVE:
            return  # no body, or it was read already
        parser = self._parser
        stream = self._stream
        try:
            with map_exceptions(_AFTER_HEAD):
                while True:
                    event = parser.next_event()
                    if isinstance(event, Data):
                        await send(event.data)
                    elif event is NEED_DATA:
                        parser.receive_data(await stream.read(READ_CHUNK))
                    else:
                        self._finish(event)
                        return
        except BaseException:
            self.state = _MUST_CLOSE
            raise

    async def read_body(self) -> bytes:
        """The whole body, for one the caller knows to be small."""
        pieces: list[bytes] = []

        async def keep(data: bytes) -> None:
            pieces.append(data)

        await self.relay_body(keep)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _finish(self, event: object) -> None:
        """The response ended (or the connection did, between responses)."""
        if isinstance(event, EndOfMessage) and self._parser.reusable:
            self.state = _IDLE
        elif isinstance(event, (EndOfMessage, ConnectionClosed)):
            self.state = _MUST_CLOSE
        else:
            raise RuntimeError(f"unexpected {event!r} at the end of a response")

    # -- after a 101 ------------------------------------------------------------------------

    async def relay_upgraded(self, send: Send, *, read_size: int) -> None:
        """Apiserver → ``send``: the upgraded protocol's bytes, those that came with the
        ``101`` head first, in pieces up to ``read_size``, until the apiserver's EOF.

        Raises :class:`UpstreamBroken` if the connection fails.
        """
        if self._trailing:
            trailing, self._trailing = self._trailing, b""
            await send(trailing)
        read = self._stream.read
        with map_exceptions(_AFTER_HEAD):
            while data := await read(read_size):
                await send(data)

    async def feed_upgraded(self, receive: Receive) -> None:
        """``receive`` → apiserver until ``receive`` answers ``b""``, then half-close where
        the transport can (TLS cannot: the apiserver's direction carries on until it ends).

        An apiserver that stops taking bytes ends this quietly: whether it ended or broke,
        its own direction (:meth:`relay_upgraded`) tells, after the bytes it sent before.
        """
        stream = self._stream
        try:
            while data := await receive():
                stream.write(data)
                await stream.drain()
            stream.write_eof()
        except OSError:
            pass

    # -- closing --------------------------------------------------------------------------

    async def close(self, *, abort: bool = False) -> None:
        """Close the connection; ``abort`` drops unsent bytes (nobody wants them any more)."""
        if abort:
            self.abort()
        elif self.state is not _CLOSED:
            self.state = _CLOSED
            await self._stream.aclose()

    def abort(self) -> None:
        """Close the connection at once."""
        if self.state is not _CLOSED:
            self.state = _CLOSED
            self._stream.abort()


class UpstreamResponse:
    """A plain response: the head now, the body as it arrives (:meth:`relay_body`)."""

    def __init__(self, connection: UpstreamConnection, response: Response) -> None:
        self._connection = connection
        self.status = response.status
        self.headers = response.headers
        self.content_length = response.content_length  # None: chunked, or until close

    async def read_small(self) -> bytes:
        """The whole body of an answer whose :attr:`content_length` is small (the caller
        checks), undecoded."""
        return await self._connection.read_body()

    async def relay_body(self, send: Send) -> None:
        """Pass each body chunk to ``send`` as it arrives (de-chunked, never decoded);
        ``send`` waiting is the backpressure. Raises :class:`UpstreamBroken` if the
        apiserver breaks off."""
        await self._connection.relay_body(send)
