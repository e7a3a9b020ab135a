"""The Kubernetes API proxy's own listener: HTTP/1.1 on ``httptools`` (``proxy/http1.py``).

An ASGI server cannot hand over the raw socket a SPDY upgrade needs, so kubectl talks to this
listener (DESIGN §4) while the REST API and portal stay on uvicorn. Each connection reads one
request head at a time (bounded: :data:`MAX_HEAD` bytes, 431 beyond), hands it to
:class:`~kubegate.gateway.forward.Forwarder`, and keeps the connection alive when the exchange
left it clean. ALPN offers ``http/1.1`` only (PROTOCOL-NOTES §3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass

from kubegate.errors import InvalidRequest, KubegateError
from kubegate.gateway.forward import Forwarder
from kubegate.gateway.http1 import (
    NEED_DATA,
    Event,
    RemoteProtocolError,
    Request,
    ServerConnection,
)
from kubegate.kube.status import status_response

log = logging.getLogger(__name__)

# The largest request line plus headers accepted (kube-apiserver allows 1 MiB; kubectl's
# heads are a few KiB). Beyond it: 431.
MAX_HEAD = 64 * 1024
READ_SIZE = 64 * 1024
# A keep-alive connection with no request in flight is closed after this long.
IDLE_TIMEOUT = 300.0


class HeadTooLarge(KubegateError):
    """The request line and headers exceed :data:`MAX_HEAD`."""

    status = 431
    code = "request_header_fields_too_large"
    reason = "RequestHeaderFieldsTooLarge"


@dataclass
class ClientConnection:
    """One accepted connection: its HTTP/1.1 state and its socket."""

    http: ServerConnection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str

    async def next_event(self, *, idle: bool = False) -> Event:
        """The next HTTP/1.1 event, reading from the socket as needed."""
        while True:
            event = self.http.next_event()
            if event is NEED_DATA:
                if idle:
                    async with asyncio.timeout(IDLE_TIMEOUT):
                        data = await self.reader.read(READ_SIZE)
                else:
                    data = await self.reader.read(READ_SIZE)
                self.http.receive_data(data)
                continue
            return event

    async def write(self, pieces: list[bytes]) -> None:
        """Write these pieces in one go, and wait for the socket to drain."""
        data = b"".join(pieces)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


class ProxyServer:
    """Accepts kubectl connections and serves them until :meth:`close`."""

    def __init__(
        self, forwarder: Forwarder, *, host: str, port: int, tls: ssl.SSLContext | None
    ) -> None:
        self.forwarder = forwarder
        self.host = host
        self.port = port
        self.tls = tls
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    async def start(self) -> None:
        """Listen; with port 0 the kernel picks one and :attr:`port` says which."""
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, ssl=self.tls, limit=READ_SIZE, backlog=1024
        )
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info(
            "Kubernetes API proxy listening",
            extra={"url": f"{self.scheme}://{self.host}:{self.port}"},
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        connection = ClientConnection(
            ServerConnection(max_head=MAX_HEAD, read_size=READ_SIZE),
            reader,
            writer,
            f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
        )
        try:
            await self._serve(connection)
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("proxy connection failed", extra={"peer": connection.peer})
        finally:
            self._connections.discard(task)
            connection.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _serve(self, connection: ClientConnection) -> None:
        while True:
            try:
                event = await connection.next_event(idle=True)
            except RemoteProtocolError as exc:
                await self._refuse_garbage(connection, exc)
                return
            if isinstance(event, Request):
                keep_alive = await self.forwarder.exchange(connection, event)
                if not keep_alive or not connection.http.reusable:
                    return
                connection.http.start_next_cycle()
            else:  # ConnectionClosed, or anything a client should not start with
                return

    async def _refuse_garbage(self, connection: ClientConnection, exc: RemoteProtocolError) -> None:
        """A head too large (431) or not HTTP (400): answer if we still can, then close."""
        if connection.http.response_started:
            return
        error: KubegateError
        if exc.status_hint == 431:
            error = HeadTooLarge(f"the request line and headers exceed {MAX_HEAD // 1024} KiB")
        else:
            error = InvalidRequest(str(exc))
        answer = status_response(error)
        raw = (
            f"HTTP/1.1 {answer.status} {error.reason}\r\n".encode()
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in answer.headers)
            + b"connection: close\r\n\r\n"
            + answer.body
        )
        with contextlib.suppress(ConnectionError):
            connection.writer.write(raw)
            await connection.writer.drain()

    async def close(self) -> None:
        """Stop listening and end every open connection (kubectl sees them close)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


def proxy_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """Server-side TLS for the proxy: the API's certificate, HTTP/1.1 only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context
