"""The byte stream an apiserver connection reads and writes through, and how one is opened.

:class:`ByteStream` is all :class:`~kubegate.agent.connection.UpstreamConnection` needs of a
socket: read what has arrived, write with backpressure, half-close, close. The agent's
streams are asyncio's (:class:`AsyncioStream`, from :func:`open_stream`): its buffer, capped
at ``limit``, stops reading the socket while the tunnel is slower than the apiserver.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Protocol

CLOSE_TIMEOUT = 2.0
# Reads have no timeout, so a vanished apiserver (host gone, no RST) must be found by TCP:
# probes after 30 s of silence, every 15 s, 4 tries (Go's dialer, which kubectl uses, does
# the same with 15 s).
_KEEPALIVE = [
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    *(
        (socket.IPPROTO_TCP, getattr(socket, name), value)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4))
        if hasattr(socket, name)
    ),
]


class ByteStream(Protocol):
    """A connected byte stream. Errors are :class:`OSError` (``ssl.SSLError`` included)."""

    async def read(self, max_bytes: int) -> bytes:
        """What has arrived, at most ``max_bytes`` (waiting for at least one); ``b""`` at
        EOF."""
        ...

    def write(self, data: bytes) -> None:
        """Queue ``data``; :meth:`drain` waits until the queue is short again."""
        ...

    async def drain(self) -> None: ...

    def write_eof(self) -> None:
        """Half-close, where the transport can (TCP; TLS cannot): the peer reads EOF."""
        ...

    @property
    def reusable(self) -> bool:
        """Open both ways, and the peer has not closed its side: fit for another request."""
        ...

    def abort(self) -> None:
        """Close at once, dropping what was not sent yet."""
        ...

    async def aclose(self) -> None:
        """Close cleanly (a TLS close_notify), waiting at most :data:`CLOSE_TIMEOUT`."""
        ...


class AsyncioStream:
    """:class:`ByteStream` over asyncio's ``StreamReader`` and ``StreamWriter``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.read = reader.read  # the hot path: no call of ours in between
        self.write = writer.write

    async def drain(self) -> None:
        await self._writer.drain()

    def write_eof(self) -> None:
        if self._writer.can_write_eof():
            self._writer.write_eof()

    @property
    def reusable(self) -> bool:
        return not self._writer.is_closing() and not self._reader.at_eof()

    def abort(self) -> None:
        self._writer.transport.abort()

    async def aclose(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            self._writer.transport.abort()


async def open_stream(
    host: str, port: int, ssl_context: ssl.SSLContext | None, *, limit: int
) -> AsyncioStream:
    """Connect (TLS when ``ssl_context`` is given, checking ``host``'s certificate), with
    TCP keepalive on; at most ``limit`` bytes are buffered before reading pauses. Raises
    :class:`OSError`; the caller bounds the time."""
    reader, writer = await asyncio.open_connection(
        host,
        port,
        ssl=ssl_context,
        server_hostname=host if ssl_context is not None else None,
        limit=limit,
    )
    sock = writer.get_extra_info("socket")
    if sock is not None:
        for level, option, value in _KEEPALIVE:
            sock.setsockopt(level, option, value)
    return AsyncioStream(reader, writer)
