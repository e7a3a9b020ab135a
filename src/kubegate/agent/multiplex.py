"""Long-running requests (watches, followed logs) on a few shared HTTP/2 connections.

A watch held on its own HTTP/1.1 connection costs the agent a TLS connection for as long as
it is open (about 36 KiB of OpenSSL and event-loop state, plus buffers), and kube-apiserver a
connection too. kube-apiserver speaks HTTP/2, as client-go does with it, so the agent carries
up to :data:`STREAMS_PER_CONNECTION` long-running requests on each of a few HTTP/2
connections instead (``docs/agent.md``). Short requests keep the HTTP/1.1 keep-alive pool:
per request, Python's ``h2`` costs more CPU than a raw HTTP/1.1 exchange.

The HTTP/2 side is the agent's sans-IO client (:class:`~kubegate.agent.http2.Http2Session`,
``h2``) driven by the tunnel's own :class:`~kubegate.tunnel.transport.TunnelConnection`
(flow control opened only as the body is relayed, PING heartbeat) over a TLS stream instead
of a WebSocket. An apiserver that does not choose ``h2`` in ALPN (or plain
``http://``) turns this off: every request then goes over HTTP/1.1, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kubegate.agent.http2 import Http2Session
from kubegate.tunnel.events import Headers, ResponseReceived, Session
from kubegate.tunnel.transport import ChannelClosed, TunnelConnection, TunnelStream

log = logging.getLogger(__name__)

# Below kube-apiserver's own limit (--http2-max-streams-per-connection; Go's default 250).
STREAMS_PER_CONNECTION = 100
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
READ_SIZE = 256 * 1024
# HTTP/2 has no connection-specific headers; Host travels as :authority.
_H2_DROPS = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "upgrade", "te"})


class TlsChannel:
    """The tunnel's :class:`~kubegate.tunnel.transport.Channel` over a TLS byte stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (OSError, ssl.SSLError) as exc:
            raise ChannelClosed(str(exc)) from exc

    async def receive(self) -> bytes:
        try:
            data = await self.reader.read(READ_SIZE)
        except (OSError, ssl.SSLError) as exc:
            raise ChannelClosed(str(exc)) from exc
        if not data:
            raise ChannelClosed("the apiserver closed the connection")
        return data

    async def close(self, code: int, reason: str) -> None:
        del code, reason
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.writer.wait_closed()


@dataclass(eq=False)
class _Link:
    connection: TunnelConnection
    task: asyncio.Task[None]
    streams: int = 0
    closing: bool = False

    @property
    def usable(self) -> bool:
        return not self.closing and not self.connection.is_closed


class SharedConnections:
    """HTTP/2 connections to the apiserver shared by long-running requests.

    :attr:`available` turns False for good when the apiserver does not choose ``h2``.
    :meth:`aclose` at exit.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        authority: str,
        streams_per_connection: int = STREAMS_PER_CONNECTION,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.authority = authority
        self.streams_per_connection = streams_per_connection
        self.available = True
        self.connections_opened = 0
        self._links: list[_Link] = []
        self._connecting: asyncio.Lock = asyncio.Lock()

    async def _link(self) -> _Link | None:
        """A connection with room for one more stream (made if needed), or None when the
        apiserver does not do HTTP/2. Raises OSError or ssl.SSLError when connecting fails."""
        async with self._connecting:
            self._links = [link for link in self._links if not link.connection.is_closed]
            for link in self._links:
                if link.usable and link.streams < self.streams_per_connection:
                    return link
            if not self.available:
                return None
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host,
                    limit=READ_SIZE,
                )
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                self.available = False
                writer.close()
                log.info("the Kubernetes API server does not offer HTTP/2; watches use HTTP/1.1")
                return None
            self.connections_opened += 1
            connection = TunnelConnection(
                TlsChannel(reader, writer), self._session, name="apiserver HTTP/2 connection"
            )
            link = _Link(connection, asyncio.ensure_future(connection.run()))
            self._links.append(link)
            return link

    def _session(self, now: float) -> Session:
        return Http2Session(authority=self.authority, now=now)

    @contextlib.asynccontextmanager
    async def request(
        self, method: str, target: str, headers: Headers
    ) -> AsyncIterator[tuple[ResponseReceived, TunnelStream] | None]:
        """Send a bodiless request on a shared connection and yield its response head and
        stream (whose :meth:`~TunnelStream.receive` gives the body), or ``None`` when HTTP/2
        is not available. Leaving the block resets a stream that has not ended.

        Raises OSError or ssl.SSLError when no connection could be made, and
        :class:`~kubegate.tunnel.transport.TunnelClosed` or
        :class:`~kubegate.tunnel.transport.StreamCancelled` when the connection or the stream
        fails before the response head.
        """
        link = await self._link()
        if link is None:
            yield None
            return
        link.streams += 1
        stream: TunnelStream | None = None
        try:
            h2_headers = tuple(
                (name.lower(), value) for name, value in headers if name.lower() not in _H2_DROPS
            )
            stream = await link.connection.open_stream(method, target, h2_headers, end_stream=True)
            head = await stream.response()
            yield head, stream
        finally:
            link.streams -= 1
            if stream is not None and not stream.is_dead:
                await stream.cancel()
            await self._retire(link)

    async def _retire(self, link: _Link) -> None:
        """Close a connection nobody uses when another one is there for new requests."""
        if link.streams or link.closing:
            return
        spare = [other for other in self._links if other is not link and other.usable]
        if not spare:
            return
        link.closing = True
        with contextlib.suppress(Exception):
            await link.connection.close("idle", expected=True)
        await asyncio.wait((link.task,), timeout=CLOSE_TIMEOUT)

    async def aclose(self) -> None:
        links, self._links = self._links, []
        for link in links:
            link.closing = True
            with contextlib.suppress(Exception):
                await link.connection.close("the agent is stopping", expected=True)
        if links:
            await asyncio.wait([link.task for link in links], timeout=CLOSE_TIMEOUT)
            for link in links:
                link.task.cancel()
