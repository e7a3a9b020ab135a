"""The agent's kube-apiserver, as the proxy sees it: :class:`Upstream`.

Built once from the same kubeconfig (``SingleConfig``) the reconciler uses
(``credentials.py``), it reaches the apiserver three ways (DESIGN §4):

- plain requests go over a keep-alive pool of HTTP/1.1 connections (``pool.py``), sent
  exactly as given: no headers added or changed (``Accept-Encoding``, ``User-Agent`` are the
  client's), the request target byte for byte (a client library might resolve ``..``
  segments, so a path the gateway authorised could turn into another one), bodies streamed
  both ways, never decompressed;
- upgrade requests (exec, attach, port-forward) get a connection each: the request head goes
  out, the response head comes back (at most 64 KiB), and after a ``101`` the connection is
  handed over for a byte relay;
- watches and followed logs share HTTP/2 connections (:attr:`Upstream.shared`,
  ``multiplex.py``).

Only ALPN ``http/1.1`` is offered on the first two. Reads have no timeout (watches,
``logs -f`` and exec sessions are quiet for as long as they like); only connecting is bounded.
Failures are :class:`~kubegate.agent.connection.UpstreamUnavailable` before a response
head, :class:`~kubegate.agent.connection.UpstreamBroken` after one. Nothing here logs or
echoes the agent's token.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable

from lightkube.config.kubeconfig import SingleConfig

from kubegate.agent.connection import (
    READ_CHUNK,
    UpstreamConnection,
    UpstreamResponse,
    UpstreamUnavailable,
)
from kubegate.agent.credentials import (
    ApiServer,
    StaticAuthorization,
    TokenFile,
    credential_for,
    tls_context,
)
from kubegate.agent.multiplex import SharedConnections
from kubegate.agent.pool import ConnectionPool
from kubegate.agent.request_head import encode_request_head
from kubegate.agent.stream import open_stream
from kubegate.errors import KubegateError, map_exceptions
from kubegate.tunnel.events import Headers

CONNECT_TIMEOUT = 10.0

_CONNECTING: dict[type[BaseException], type[KubegateError]] = {OSError: UpstreamUnavailable}


class Upstream:
    """The agent's kube-apiserver: one keep-alive pool for plain requests, a connection per
    upgrade, and the agent's own credential. :meth:`aclose` it at exit."""

    def __init__(
        self,
        server: ApiServer,
        ssl_context: ssl.SSLContext | None,
        credential: TokenFile | StaticAuthorization,
    ) -> None:
        self.server = server
        self.ssl_context = ssl_context
        self._credential = credential
        self._pool = ConnectionPool(self._connect)
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
        data = encode_request_head(method, self.server.base_path + target, head)
        # A pooled connection the apiserver closed meanwhile fails before any answer: a
        # request without a body is then sent once more, on a new connection.
        for attempt in range(2):
            connection, reused = await self._pool.checkout()
            try:
                response = await connection.exchange(method, data, body, chunked=chunked)
            except UpstreamUnavailable:
                connection.abort()
                if reused and body is None and attempt == 0:
                    continue
                raise
            except BaseException:
                connection.abort()
                raise
            break
        try:
            yield UpstreamResponse(connection, response)
        finally:
            self._pool.checkin(connection)  # closed unless read to the end and reusable

    async def _connect(self) -> UpstreamConnection:
        server = self.server
        with map_exceptions(_CONNECTING):
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    stream = await open_stream(
                        server.host, server.port, self.ssl_context, limit=READ_CHUNK
                    )
            except TimeoutError:
                raise UpstreamUnavailable(
                    f"connecting timed out after {CONNECT_TIMEOUT:g} s"
                ) from None
        self.connections_opened += 1
        return UpstreamConnection(stream)

    async def open_upgrade(self, method: str, target: str, headers: Headers) -> UpstreamConnection:
        """Connect, send an upgrade request head and read the answer head.

        Raises :class:`UpstreamUnavailable` when that fails; the caller closes the answer.
        """
        connection = await self._connect()
        try:
            await connection.exchange(
                method, encode_request_head(method, self.server.base_path + target, headers)
            )
        except BaseException:
            connection.abort()
            raise
        return connection

    async def aclose(self) -> None:
        """Close the keep-alive pool and the shared HTTP/2 connections (upgrade connections
        belong to their requests)."""
        await self._pool.aclose()
        if self.shared is not None:
            await self.shared.aclose()
