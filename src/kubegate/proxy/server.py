"""The Kubernetes API proxy's own listener: HTTP/1.1 on a sans-IO ``h11`` parser.

An ASGI server cannot hand over the raw socket a SPDY upgrade needs, so kubectl talks to this
listener (DESIGN §4) while the REST API and portal stay on uvicorn. Each connection reads one
request head at a time (bounded: :data:`MAX_HEAD` bytes, 431 beyond), hands it to
:class:`~kubegate.proxy.forward.Forwarder`, and keeps the connection alive when the exchange
left it clean. ALPN offers ``http/1.1`` only (PROTOCOL-NOTES §3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass

import h11

from kubegate.errors import KubegateError
from kubegate.proxy.forward import Forwarder
from kubegate.proxy.status import status_response

log = logging.getLogger(__name__)

OutgoingEvent = h11.Response | h11.InformationalResponse | h11.Data | h11.EndOfMessage

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


class BadRequest(KubegateError):
    """Bytes that are not HTTP/1.1."""

    status = 400
    code = "bad_request"
    reason = "BadRequest"


@dataclass
class ClientConnection:
    """One accepted connection: its h11 state and its socket."""

    h11: h11.Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str

    async def next_event(self, *, idle: bool = False) -> object:
        """The next h11 event (or ``h11.PAUSED``), reading from the socket as needed."""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if idle:
                    async with asyncio.timeout(IDLE_TIMEOUT):
                        data = await self.reader.read(READ_SIZE)
                else:
                    data = await self.reader.read(READ_SIZE)
                self.h11.receive_data(data)
                continue
            return event

    async def send(self, event: OutgoingEvent) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def write(self, pieces: list[bytes]) -> None:
        """Write what h11 produced, in one go, and wait for the socket to drain."""
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
            h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD),
            reader,
            writer,
            f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
        )
        try:
            await self._serve(connection)
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
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
            except h11.RemoteProtocolError as exc:
                await self._refuse_garbage(connection, exc)
                return
            if isinstance(event, h11.Request):
                if _head_size(event) > MAX_HEAD:
                    # h11 bounds only a head still incomplete in its buffer; one that
                    # arrived whole is measured here.
                    await self._refuse_garbage(
                        connection, h11.RemoteProtocolError("head too large", 431)
                    )
                    return
                keep_alive = await self.forwarder.exchange(connection, event)
                if not keep_alive:
                    return
                if (
                    connection.h11.our_state is not h11.DONE
                    or connection.h11.their_state is not h11.DONE
                ):
                    return
                connection.h11.start_next_cycle()
            else:  # ConnectionClosed, or anything a client should not start with
                return

    async def _refuse_garbage(
        self, connection: ClientConnection, exc: h11.RemoteProtocolError
    ) -> None:
        """A head too large (431) or not HTTP (400): answer if we still can, then close."""
        if connection.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        error: KubegateError
        if exc.error_status_hint == 431:
            error = HeadTooLarge(f"the request line and headers exceed {MAX_HEAD // 1024} KiB")
        else:
            error = BadRequest(f"malformed HTTP/1.1 request: {exc}")
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


def _head_size(request: h11.Request) -> int:
    size = len(request.method) + len(request.target) + 12
    for name, value in request.headers:
        size += len(name) + len(value) + 4
    return size


def proxy_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """Server-side TLS for the proxy: the API's certificate, HTTP/1.1 only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context
