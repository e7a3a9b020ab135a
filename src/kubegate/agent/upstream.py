"""The agent's connection to its own kube-apiserver: where it is, how to trust it, who we are.

:class:`Upstream` is built once from the same kubeconfig (``SingleConfig``) the reconciler
uses and reaches the apiserver two ways (DESIGN §4):

- plain requests go over a small pool of keep-alive HTTP/1.1 connections, sent exactly as
  given: no headers added or changed (``Accept-Encoding``, ``User-Agent`` are the client's),
  the request target byte for byte (a client library might resolve ``..`` segments, so a path
  the gateway authorised could turn into another one), bodies streamed both ways, never
  decompressed;
- upgrade requests (exec, attach, port-forward) get a raw TLS connection each: the request
  head is written by hand, the response head read back (at most 64 KiB), and after a ``101``
  the connection is handed over for a byte relay.

Only ALPN ``http/1.1`` is offered. Reads have no timeout (watches, ``logs -f`` and exec
sessions are quiet for as long as they like); only connecting is bounded. Foreign errors are
translated here: :class:`UpstreamUnavailable` before a response head, :class:`UpstreamBroken`
after one. Nothing here logs or echoes the agent's token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
import socket
import ssl
import tempfile
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import User

from kubegate.agent.multiplex import SharedConnections
from kubegate.errors import InvalidRequest, KubegateError, Unavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
# kubelet rotates a projected service account token well before it expires (after 80 % of its
# life, an hour at the least); re-reading the file this often always sees the fresh one.
TOKEN_REREAD_SECONDS = 60.0
MAX_RESPONSE_HEAD = 64 * 1024
READ_CHUNK = 64 * 1024
MAX_IDLE_CONNECTIONS = 100
# Below kube-apiserver's 90 s idle timeout, so a pooled connection is ours to close.
KEEPALIVE_SECONDS = 30.0
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

Headers = Sequence[tuple[str, str]]
Send = Callable[[bytes], Awaitable[None]]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
_NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamUnavailable(Unavailable):
    """The apiserver could not be reached, or gave up before its response head."""

    code = "upstream_unavailable"


class UpstreamBroken(KubegateError):
    """The apiserver's connection failed after its response head: the body is truncated."""

    status = 502
    code = "upstream_broken"
    reason = "BadGateway"


def failure_reason(exc: BaseException) -> str:
    """A short, secret-free description of a connection-level failure."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiServer:
    """Where the apiserver is, from the kubeconfig's ``server`` URL."""

    scheme: str
    host: str  # for connecting and TLS: no brackets around an IPv6 address
    port: int
    base_path: str  # "" or a prefix without the trailing "/" (an apiserver behind a path)
    host_header: str

    @classmethod
    def from_url(cls, url: str) -> ApiServer:
        """Parse ``https://host[:port][/prefix]`` (``http://`` is accepted, for completeness)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise KubegateError(f"the kubeconfig's server URL is invalid: {exc}") from exc
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise KubegateError(
                f"the kubeconfig's server must be an https:// URL, not {url[:80]!r}"
            )
        netloc = parts.netloc.rpartition("@")[2]
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=port or (443 if parts.scheme == "https" else 80),
            base_path=parts.path.rstrip("/"),
            host_header=netloc,
        )

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class TokenFile:
    """A bearer token read from a file (the in-cluster service account token, which kubelet
    rotates): re-read at most every :data:`TOKEN_REREAD_SECONDS`, the last good one kept."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = TOKEN_REREAD_SECONDS,
    ) -> None:
        self.path = path
        self._clock = clock
        self._interval = interval
        self._bearer = self._read()
        self._read_at = clock()

    def _read(self) -> str:
        try:
            token = self.path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KubegateError(f"cannot read the token file {self.path}: {exc}") from exc
        if not token:
            raise KubegateError(f"the token file {self.path} is empty")
        return f"Bearer {token}"

    def authorization(self) -> str:
        now = self._clock()
        if now - self._read_at >= self._interval:
            self._read_at = now
            try:
                self._bearer = self._read()
            except KubegateError as exc:
                log.warning("keeping the previous service account token", extra={"error": str(exc)})
        return self._bearer


class StaticAuthorization:
    """An ``Authorization`` value that never changes (a token, basic auth, or none)."""

    def __init__(self, value: str | None) -> None:
        self._value = value

    def authorization(self) -> str | None:
        return self._value


def credential_for(
    user: User | None,
    abs_file: Callable[[str], object],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> TokenFile | StaticAuthorization:
    """The ``Authorization`` source of a kubeconfig user; exec plugins are refused."""
    if user is None:
        return StaticAuthorization(None)
    if user.exec is not None:
        raise KubegateError(
            "the agent's kubeconfig user runs an exec credential plugin "
            f"({user.exec.command!r}), which the agent does not support: give it a "
            "ServiceAccount token (token or tokenFile) or a client certificate"
        )
    if user.auth_provider:
        raise KubegateError(
            "the agent's kubeconfig user uses an auth-provider, which the agent does not "
            "support: give it a ServiceAccount token or a client certificate"
        )
    if user.token_file is not None:
        return TokenFile(Path(str(abs_file(user.token_file))), clock=clock)
    if user.token is not None:
        return StaticAuthorization(f"Bearer {user.token.strip()}")
    if user.username and user.password:
        basic = base64.b64encode(f"{user.username}:{user.password}".encode()).decode()
        return StaticAuthorization(f"Basic {basic}")
    return StaticAuthorization(None)  # a client certificate, or anonymous


def _b64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise KubegateError(f"the kubeconfig's {what} is not valid base64") from exc


def tls_context(config: SingleConfig, alpn: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext | None:
    """Trust the cluster CA (or nothing, with ``insecure-skip-tls-verify``), present the
    client certificate when there is one, offer ``alpn`` (``http/1.1`` only by default).
    ``None`` for http."""
    cluster, user = config.cluster, config.user
    if ApiServer.from_url(cluster.server).scheme != "https":
        return None
    try:
        if cluster.certificate_auth:
            ctx = ssl.create_default_context(cafile=str(config.abs_file(cluster.certificate_auth)))
        elif cluster.certificate_auth_data:
            ca = _b64(cluster.certificate_auth_data, "certificate-authority-data")
            ctx = ssl.create_default_context(cadata=ca.decode("ascii", "strict"))
        else:
            ctx = ssl.create_default_context()
        if cluster.insecure and not (cluster.certificate_auth or cluster.certificate_auth_data):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if user is not None:
            _load_client_certificate(ctx, config, user)
        ctx.set_alpn_protocols(list(alpn))
    except (ssl.SSLError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise KubegateError(
            f"cannot set up TLS to the Kubernetes API server from the kubeconfig: {exc}"
        ) from exc
    return ctx


def _load_client_certificate(ctx: ssl.SSLContext, config: SingleConfig, user: User) -> None:
    if not (user.client_cert or user.client_cert_data):
        return
    if not (user.client_key or user.client_key_data):
        raise KubegateError("the kubeconfig user has a client certificate but no client key")
    # ssl loads certificates from files only: embedded data goes through a private temp dir.
    with tempfile.TemporaryDirectory(prefix="kubegate-agent-") as tmp:
        if user.client_cert_data:
            cert = Path(tmp, "client.crt")
            cert.write_bytes(_b64(user.client_cert_data, "client-certificate-data"))
        else:
            cert = Path(str(config.abs_file(str(user.client_cert))))
        if user.client_key_data:
            key = Path(tmp, "client.key")
            key.touch(mode=0o600)
            key.write_bytes(_b64(user.client_key_data, "client-key-data"))
        else:
            key = Path(str(config.abs_file(str(user.client_key))))
        ctx.load_cert_chain(cert, key)


def check_request_head(method: str, target: str, headers: Headers) -> None:
    """Refuse what cannot go on an HTTP/1.1 request line or header (CR, LF, NUL, spaces)."""
    if not _TOKEN.fullmatch(method):
        raise InvalidRequest("the request method is not a valid HTTP token")
    if not _TARGET.fullmatch(target):
        raise InvalidRequest("the request path contains characters HTTP/1.1 does not allow")
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise InvalidRequest(f"the request header {name[:60]!r} is not valid HTTP/1.1")


# -- plain requests ----------------------------------------------------------------------------


class UpstreamResponse:
    """A plain response: the head now, the body as it arrives (:meth:`relay_body`)."""

    def __init__(self, connection: UpgradeConnection, method: str) -> None:
        self._connection = connection
        self._method = method
        self.status = connection.status
        self.headers = connection.headers
        # Without a body to read, the connection is ready for the next request at once.
        self.complete = method == "HEAD" or self.status in _NO_BODY_STATUSES
        connection_header = (connection._header("connection") or "").lower()
        delimited = (
            "chunked" in (connection._header("transfer-encoding") or "").lower()
            or connection._header("content-length") is not None
        )
        # A body that ends when the socket does, or a server that said so: not reusable.
        self.reusable = "close" not in connection_header and (self.complete or delimited)

    @property
    def content_length(self) -> int | None:
        """The declared body length; ``None`` for a chunked (streamed) body."""
        if self._connection._header("transfer-encoding") is not None:
            return None
        value = (self._connection._header("content-length") or "").strip()
        return int(value) if value.isdigit() else None

    async def read_small(self) -> bytes:
        """The whole body of an answer whose :attr:`content_length` is small (the caller
        checks), undecoded."""
        body = bytearray()

        async def keep(chunk: bytes) -> None:
            body.extend(chunk)

        await self.relay_body(keep)
        return bytes(body)

    async def relay_body(self, send: Send) -> None:
        """Pass each body chunk to ``send`` as it arrives (de-chunked, never decoded);
        ``send`` waiting is the backpressure. Raises :class:`UpstreamBroken` if the
        apiserver breaks off."""
        await self._connection.relay_body(send, method=self._method)
        self.complete = True


# -- upgrades ----------------------------------------------------------------------------------


class UpgradeConnection:
    """A raw connection that carried one upgrade request, with the apiserver's answer head.

    After a ``101`` (:attr:`switched`) :attr:`reader` and :attr:`writer` carry the upgraded
    protocol's bytes; otherwise :meth:`relay_body` passes the error body on. Always
    :meth:`close` it.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: list[tuple[str, str]],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers = headers
        self._indexed: list[tuple[str, str]] | None = None
        self._index: dict[str, str] = {}

    @property
    def switched(self) -> bool:
        return self.status == 101

    def _header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case) in the current answer's head."""
        if self._indexed is not self.headers:  # a pooled connection's next answer
            index: dict[str, str] = {}
            for key, value in self.headers:
                index.setdefault(key.lower(), value)
            self._index, self._indexed = index, self.headers
        return self._index.get(name)

    async def relay_body(self, send: Send, *, method: str) -> None:
        """The body of a non-101 answer, de-chunked: Content-Length, chunked, or until EOF."""
        try:
            if method == "HEAD" or self.status in _NO_BODY_STATUSES or self.status < 200:
                return
            encoding = (self._header("transfer-encoding") or "").lower()
            length = self._header("content-length")
            if "chunked" in encoding:
                await self._relay_chunked(send)
            elif length is not None and length.strip().isdigit():
                await self._relay_exactly(int(length), send)
            else:
                while data := await self.reader.read(READ_CHUNK):
                    await send(data)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            raise UpstreamBroken(failure_reason(e)) from e

    async def _relay_exactly(self, remaining: int, send: Send) -> None:
        while remaining:
            data = await self.reader.read(min(remaining, READ_CHUNK))
            if not data:
                raise UpstreamBroken("the connection closed before the end of the body")
            remaining -= len(data)
            await send(data)

    async def _relay_chunked(self, send: Send) -> None:
        """De-chunk, passing on what has arrived in as few pieces as possible.

        kube-apiserver writes a LIST in 2 KiB chunks. Chunks that are already here together
        go on as one piece (up to :data:`READ_CHUNK`); a chunk with nothing behind it goes
        on at once, so a watch event is never held back waiting for the next one.
        """
        pending = bytearray()
        while True:
            line = await self.reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                if pending:
                    await send(bytes(pending))
                while await self.reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers: not forwarded
                return
            while size:
                data = await self.reader.read(min(size, READ_CHUNK - len(pending)))
                if not data:
                    raise UpstreamBroken("the connection closed before the end of the body")
                size -= len(data)
                pending += data
                if len(pending) >= READ_CHUNK:
                    await send(bytes(pending))
                    pending.clear()
            if await self.reader.readexactly(2) != b"\r\n":
                raise UpstreamBroken("malformed chunked body")
            if pending and not _buffered(self.reader):
                await send(bytes(pending))
                pending.clear()

    async def close(self, *, abort: bool = False) -> None:
        """Close the socket; ``abort`` drops unsent bytes (nobody wants them any more)."""
        transport = self.writer.transport
        if abort:
            transport.abort()
        else:
            self.writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            transport.abort()


def _buffered(reader: asyncio.StreamReader) -> int:
    """How many bytes ``reader`` already holds. asyncio has no public peek; ``_buffer`` (a
    bytearray) has been StreamReader's buffer since Python 3.4. Without it: 0 (every chunk
    is then passed on by itself, which is correct, only slower)."""
    buffer = getattr(reader, "_buffer", None)
    return len(buffer) if isinstance(buffer, bytearray) else 0


def _encode_head(method: str, target: str, headers: Headers) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]]]:
    """Status and headers of one HTTP/1.1 response head (informational 1xx other than 101
    are skipped); at most :data:`MAX_RESPONSE_HEAD` bytes."""
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise UpstreamUnavailable(
                f"its response head is larger than {MAX_RESPONSE_HEAD // 1024} KiB"
            ) from None
        except asyncio.IncompleteReadError:
            raise UpstreamUnavailable("it closed the connection without an answer") from None
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise UpstreamUnavailable("it did not answer in HTTP/1.1")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                raise UpstreamUnavailable("its response head is malformed")
            headers.append((name, value.strip(" \t")))
        status = int(code)
        if status == 101 or not 100 <= status < 200:
            return status, headers


# -- the upstream ------------------------------------------------------------------------------


class Upstream:
    """The agent's kube-apiserver: one keep-alive pool for plain requests, a raw connection
    per upgrade, and the agent's own credential. :meth:`aclose` it at exit."""

    def __init__(
        self,
        server: ApiServer,
        ssl_context: ssl.SSLContext | None,
        credential: TokenFile | StaticAuthorization,
    ) -> None:
        self.server = server
        self.ssl_context = ssl_context
        self._credential = credential
        # Idle keep-alive connections, most recently used last. Our own small pool on the
        # same raw HTTP/1.1 code as upgrades: httpx/httpcore cost ~1 ms of CPU per request
        # here (its pool polls every idle socket on every request; anyio's TLS stream), the
        # largest share of the agent's time per proxied request (docs/benchmarks.md).
        self._idle: deque[tuple[UpgradeConnection, float]] = deque()
        self._clock = time.monotonic
        self.connections_opened = 0
        # Watches and followed logs, on shared HTTP/2 connections (set by from_config).
        self.shared: SharedConnections | None = None

    @classmethod
    def from_config(
        cls, config: SingleConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> Upstream:
        """From the agent's kubeconfig context; a clear :class:`KubegateError` for what the
        agent cannot use (exec plugins, auth providers, unreadable certificates)."""
        server = ApiServer.from_url(config.cluster.server)
        credential = credential_for(config.user, config.abs_file, clock=clock)
        upstream = cls(server, tls_context(config), credential)
        h2_context = tls_context(config, alpn=("h2",))
        if h2_context is not None:
            upstream.shared = SharedConnections(
                server.host, server.port, h2_context, authority=server.host_header
            )
        return upstream

    @property
    def host_header(self) -> str:
        return self.server.host_header

    def authorization(self) -> str | None:
        """The agent's own ``Authorization`` value (``None`` with a client certificate)."""
        return self._credential.authorization()

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterable[bytes] | None,
    ) -> AsyncIterator[UpstreamResponse]:
        """Send one plain request exactly as given (``body`` is streamed; chunked unless
        ``headers`` has a Content-Length) on a pooled connection, and yield the response
        once its head arrived. The connection goes back to the pool only when the response
        was read to its end.

        Raises :class:`UpstreamUnavailable` when no response head came.
        """
        head = list(headers)
        chunked = body is not None and not any(n.lower() == "content-length" for n, _ in head)
        if chunked:
            head.append(("Transfer-Encoding", "chunked"))
        data = _encode_head(method, self.server.base_path + target, head)
        # A pooled connection the apiserver closed meanwhile fails before any answer: a
        # request without a body is then sent once more, on a new connection.
        for attempt in range(2):
            connection, reused = await self._checkout()
            try:
                connection.writer.write(data)
                if body is not None:
                    await _send_body(connection.writer, body, chunked=chunked)
                await connection.writer.drain()
                connection.status, connection.headers = await _read_response_head(connection.reader)
            except (UpstreamUnavailable, OSError, ssl.SSLError) as exc:
                await connection.close(abort=True)
                if reused and body is None and attempt == 0:
                    continue
                if isinstance(exc, UpstreamUnavailable):
                    raise
                raise UpstreamUnavailable(failure_reason(exc)) from exc
            except BaseException:
                await connection.close(abort=True)
                raise
            break
        response = UpstreamResponse(connection, method)
        try:
            yield response
        finally:
            if response.complete and response.reusable:
                self._checkin(connection)
            else:
                await connection.close(abort=True)

    async def _checkout(self) -> tuple[UpgradeConnection, bool]:
        """An idle pooled connection (answers True), or a new one."""
        now = self._clock()
        while self._idle:
            connection, since = self._idle.pop()
            if (
                now - since < KEEPALIVE_SECONDS
                and not connection.writer.is_closing()
                and not connection.reader.at_eof()
            ):
                return connection, True
            connection.writer.transport.abort()
        return await self._connect(), False

    def _checkin(self, connection: UpgradeConnection) -> None:
        if len(self._idle) >= MAX_IDLE_CONNECTIONS:
            oldest, _ = self._idle.popleft()
            oldest.writer.transport.abort()
        self._idle.append((connection, self._clock()))

    async def _connect(self) -> UpgradeConnection:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    self.server.host,
                    self.server.port,
                    ssl=self.ssl_context,
                    server_hostname=self.server.host if self.ssl_context is not None else None,
                    limit=MAX_RESPONSE_HEAD,
                )
        except TimeoutError:
            raise UpstreamUnavailable(f"connecting timed out after {CONNECT_TIMEOUT:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamUnavailable(failure_reason(exc)) from exc
        self.connections_opened += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            for level, option, value in _KEEPALIVE:
                sock.setsockopt(level, option, value)
        return UpgradeConnection(reader, writer, 0, [])

    async def open_upgrade(self, method: str, target: str, headers: Headers) -> UpgradeConnection:
        """Connect, send an upgrade request head and read the answer head.

        Raises :class:`UpstreamUnavailable` when that fails; the caller closes the answer.
        """
        connection = await self._connect()
        try:
            connection.writer.write(_encode_head(method, self.server.base_path + target, headers))
            await connection.writer.drain()
            connection.status, connection.headers = await _read_response_head(connection.reader)
        except BaseException as exc:
            await connection.close(abort=True)
            if isinstance(exc, OSError):
                raise UpstreamUnavailable(failure_reason(exc)) from exc
            raise
        return connection

    async def aclose(self) -> None:
        """Close the keep-alive pool and the shared HTTP/2 connections (upgrade connections
        belong to their requests)."""
        while self._idle:
            connection, _ = self._idle.pop()
            await connection.close()
        if self.shared is not None:
            await self.shared.aclose()


async def _send_body(
    writer: asyncio.StreamWriter, body: AsyncIterable[bytes], *, chunked: bool
) -> None:
    """Stream a request body, chunk-encoded when it has no Content-Length."""
    async for chunk in body:
        if not chunk:
            continue
        if chunked:
            writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        else:
            writer.write(chunk)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
