"""One kubectl request through the proxy: admit it, relay it over the tunnel, audit it.

Admission is memory only (:class:`~kubegate.gateway.authority.Authority`): the token, the
request's RequestInfo, any access-key scope, the identity's rate and concurrency limits and
whether the cluster's agent is connected. A refused request gets a Kubernetes ``Status``.

The relay streams both ways without holding a whole body: the request body goes to the
tunnel stream as it arrives (each send waits for HTTP/2 window), the response goes to the
socket chunk by chunk (each write waits for the socket to drain), so a slow side slows the
other instead of filling memory. After a ``101`` the connection's raw bytes are relayed both
ways until the upstream ends it. kubectl going away resets the stream (the agent cancels the
upstream request); revocation cancels the exchange the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kubegate.errors import BadGateway, InvalidRequest, KubegateError, PayloadTooLarge, Unavailable
from kubegate.gateway.admission import Admission, Admitted, Outcome
from kubegate.gateway.audit import AuditTrail, user_agent_of
from kubegate.gateway.authority import Authority, Cancel
from kubegate.gateway.http1 import (
    Data,
    EndOfMessage,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
)
from kubegate.gateway.metrics import GatewayMetrics
from kubegate.gateway.registry import TunnelRegistry
from kubegate.kube.access_reviews import MAX_BODY
from kubegate.kube.status import status_response
from kubegate.settings import Settings
from kubegate.tunnel.exchange import ProxiedResponse, decode_response, tunnel_request_headers
from kubegate.tunnel.transport import StreamCancelled, TunnelClosed, TunnelStream

if TYPE_CHECKING:
    from kubegate.gateway.listener import ClientConnection

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# An upgraded connection's bytes go into the tunnel in pieces up to this (see the agent's
# UPGRADED_READ).
UPGRADED_READ = 256 * 1024
CLIENT_GONE_GRACE = 2.0
"""Seconds an upgraded stream's upstream may still take to end once the client's side of
the connection ended. kubectl never half-closes (its streams end inside the protocol), so
an EOF from it means it is gone: an attach or port-forward upstream that would otherwise
run on would hold the stream, a per-identity stream slot and a kubelet session for ever."""


class Forwarder:
    """Admits (:class:`~kubegate.gateway.admission.Admission`), relays and audits requests."""

    def __init__(
        self,
        *,
        settings: Settings,
        authority: Authority,
        tunnels: TunnelRegistry,
        audit: AuditTrail,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.authority = authority
        self.tunnels = tunnels
        self.audit = audit
        self.metrics = metrics
        self._clock = clock
        self.admission = Admission(
            settings=settings, authority=authority, tunnels=tunnels, metrics=metrics, clock=clock
        )

    async def exchange(self, conn: ClientConnection, request: Request) -> bool:
        """Serve one request; answers whether the connection may carry another."""
        method = request.method.decode("ascii", "replace")
        outcome = Outcome(self._clock(), method, request.target.decode("ascii", "replace"))
        admitted: Admitted | None = None
        body: list[bytes] = []

        async def read_body() -> bytes:
            body.append(await _read_small_body(conn, request, outcome))
            return body[0]

        try:
            try:
                admitted = await self.admission.admit(request, method, outcome, read_body)
            except KubegateError as exc:
                return await self._refuse(conn, exc, outcome)
            # The apiserver's audit log gets kubectl's real address (headers.py dropped any
            # address the client claimed).
            headers = [*admitted.headers, ("x-forwarded-for", _peer_address(conn.peer))]
            read = body[0] if body else None
            return await self._relay(conn, request, outcome, admitted, headers, read)
        finally:
            if admitted is not None:
                self.admission.release(admitted)
            self.audit.add_request(
                outcome,
                source=_peer_address(conn.peer),
                user_agent=user_agent_of(request.headers),
                duration=self._clock() - outcome.started,
            )
            self.metrics.finished(
                outcome,
                self._clock() - outcome.started,
                long_running=admitted is not None and admitted.kind is not None,
            )

    async def _refuse(self, conn: ClientConnection, error: KubegateError, outcome: Outcome) -> bool:
        answer = status_response(error)
        outcome.status = answer.status
        outcome.extra["error"] = error.message
        headers = [(k.encode(), v.encode()) for k, v in answer.headers]
        http = conn.http
        if not http.waiting_for_response:
            return False
        await conn.write(
            [http.response(answer.status, headers), http.data(answer.body), http.end()]
        )
        # Keep the connection only if the request had no body left unread.
        if http.request_complete:
            return True
        try:
            return isinstance(http.next_event(), EndOfMessage)
        except RemoteProtocolError:
            return False

    # -- relay -------------------------------------------------------------------------

    async def _relay(
        self,
        conn: ClientConnection,
        request: Request,
        outcome: Outcome,
        admitted: Admitted,
        headers: list[tuple[str, str]],
        read: bytes | None = None,
    ) -> bool:
        """Relay the exchange; ``read`` is the request body when admission already read it
        (it is sent as it is, and the connection is only watched for kubectl going away)."""
        identity, upgrade, cluster_name = admitted.identity, admitted.upgrade, admitted.cluster
        has_body = _has_body(request)
        link = self.tunnels.link(identity.cluster_id)
        if link is None:
            return await self._refuse(
                conn, Unavailable(f"cluster {cluster_name} is offline"), outcome
            )
        if not has_body and read is None:
            try:
                event = conn.http.next_event()
            except RemoteProtocolError:
                return False
            if not isinstance(event, EndOfMessage):  # pragma: no cover - llhttp guarantees
                return False
        try:
            stream = await link.connection.open_stream(
                outcome.method,
                admitted.target,
                tuple(
                    tunnel_request_headers(
                        headers,
                        user=identity.email,
                        upgrade=upgrade,
                        long_running=admitted.kind == "watch",
                        service_account=identity.service_account,
                    )
                ),
                # An upgrade's stream stays open: the new protocol's bytes follow the head.
                end_stream=not has_body and upgrade is None,
            )
        except (TunnelClosed, KubegateError) as exc:
            return await self._refuse(
                conn, Unavailable(f"cluster {cluster_name} is offline: {exc}"), outcome
            )
        reason: list[str] = []

        def cancel(why: str) -> None:
            # ``relay`` is bound below, before any task that calls this can run.
            if not reason and not relay.done():
                reason.append(why)
                relay.cancel()

        pump = asyncio.ensure_future(
            self._pump_client(conn, stream, outcome, has_body, cancel, read)
        )
        relay = asyncio.ensure_future(self._relay_stream(conn, stream, outcome, pump))
        try:
            with self.authority.registered(identity, "exchange", cancel):
                return await relay
        except asyncio.CancelledError:
            if not reason:
                raise  # the server is shutting down
            outcome.extra["closed"] = reason[0]
            await stream.cancel()
            if outcome.status == 0:
                outcome.status = 499  # the client went away before an answer
            return False
        finally:
            if not pump.done():
                pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _relay_stream(
        self,
        conn: ClientConnection,
        stream: TunnelStream,
        outcome: Outcome,
        pump: asyncio.Future[None],
    ) -> bool:
        """Tunnel → client: the response head and body (or the upgraded connection)."""
        head_sent = False
        try:
            head = await stream.response()
            response = decode_response(head.status, head.headers)
            if response.upgrade is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
                head_sent = True
                return await self._relay_upgraded(conn, stream, response, outcome)
            outcome.status = response.status
            # What the tunnel already holds is written together: a small answer (head, body,
            # end) is one write; a watch is written event by event as it arrives.
            http = conn.http
            pending = [
                http.response(
                    response.status, [(k.encode(), v.encode()) for k, v in response.headers]
                )
            ]
            head_sent = True
            while True:
                if not stream.ready:
                    await conn.write(pending)
                    pending = []
                chunk = await stream.receive()
                if not chunk:
                    break
                outcome.bytes_out += len(chunk)
                pending.append(http.data(chunk))
            pending.append(http.end())
            await conn.write(pending)
            return True
        except (StreamCancelled, TunnelClosed) as exc:
            await stream.cancel()
            if not head_sent:
                return await self._refuse(
                    conn, BadGateway(f"the agent failed the request: {exc}"), outcome
                )
            outcome.extra["closed"] = "the agent ended the stream early"
            return False
        except KubegateError as exc:  # the agent broke the exchange protocol
            await stream.cancel()
            if not head_sent:
                return await self._refuse(conn, BadGateway(str(exc)), outcome)
            return False
        except (LocalProtocolError, ConnectionError) as exc:
            await stream.cancel()
            outcome.extra["closed"] = f"client connection: {type(exc).__name__}"
            return False

    async def _pump_client(
        self,
        conn: ClientConnection,
        stream: TunnelStream,
        outcome: Outcome,
        has_body: bool,
        cancel: Cancel,
        read: bytes | None = None,
    ) -> None:
        """Client → tunnel: the request body, then watch for kubectl going away."""
        try:
            if read is not None:
                if read:
                    await stream.send(read)
                await stream.end()
            elif has_body:
                while True:
                    event = await conn.next_event()
                    if isinstance(event, Data):
                        outcome.bytes_in += len(event.data)
                        await stream.send(event.data)
                    elif isinstance(event, EndOfMessage):
                        await stream.end()
                        break
                    else:
                        cancel("kubectl closed the connection mid-request")
                        return
            data = await conn.reader.read(READ_SIZE)
            if not data:
                cancel("kubectl closed the connection")
            else:
                # A pipelined next request (or early bytes of an upgraded protocol): kept
                # for after this exchange; we stop watching for EOF.
                conn.http.receive_data(data)
        except (StreamCancelled, TunnelClosed):
            cancel("the tunnel stream failed while sending the request body")
        except (ConnectionError, RemoteProtocolError):
            cancel("kubectl's connection failed mid-request")

    async def _relay_upgraded(
        self,
        conn: ClientConnection,
        stream: TunnelStream,
        response: ProxiedResponse,
        outcome: Outcome,
    ) -> bool:
        """After the upstream's 101: raw bytes both ways until the upstream ends, or until
        :data:`CLIENT_GONE_GRACE` after the client's side ended."""
        outcome.status = 101
        switch = conn.http.switch(
            [
                (b"connection", b"Upgrade"),
                (b"upgrade", (response.upgrade or "").encode()),
                *[(k.encode(), v.encode()) for k, v in response.headers],
            ]
        )
        await conn.write([switch])
        trailing = conn.http.trailing_data
        up = asyncio.ensure_future(self._client_to_tunnel(conn, stream, trailing, outcome))
        down = asyncio.ensure_future(self._tunnel_to_client(conn, stream, outcome))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
            if not down.done():  # the client's side ended first
                await asyncio.wait((down,), timeout=CLIENT_GONE_GRACE)
            if not down.done():
                outcome.extra["closed"] = (
                    f"the client went away; the upstream did not end within {CLIENT_GONE_GRACE:g} s"
                )
                await stream.cancel()
            else:
                down.result()  # the relay's own failure goes to the caller's handlers
        finally:
            for task in (up, down):
                task.cancel()
            for task in (up, down):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return False

    async def _tunnel_to_client(
        self, conn: ClientConnection, stream: TunnelStream, outcome: Outcome
    ) -> None:
        while chunk := await stream.receive():
            outcome.bytes_out += len(chunk)
            conn.writer.write(chunk)
            await conn.writer.drain()

    async def _client_to_tunnel(
        self, conn: ClientConnection, stream: TunnelStream, first: bytes, outcome: Outcome
    ) -> None:
        with contextlib.suppress(StreamCancelled, TunnelClosed, ConnectionError):
            if first:
                outcome.bytes_in += len(first)
                await stream.send(first)
            while data := await conn.reader.read(UPGRADED_READ):
                outcome.bytes_in += len(data)
                await stream.send(data)
            await stream.end()


async def _read_small_body(conn: ClientConnection, request: Request, outcome: Outcome) -> bytes:
    """The whole body of a request admission must read (an access review), at most
    :data:`~kubegate.kube.access_reviews.MAX_BODY` bytes; 413 for more, 400 when kubectl's
    connection breaks mid-body."""
    if not _has_body(request):
        return b""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            event = await conn.next_event()
        except (ConnectionError, RemoteProtocolError) as exc:
            raise InvalidRequest(f"the request body could not be read: {exc}") from exc
        if isinstance(event, EndOfMessage):
            break
        if not isinstance(event, Data):
            raise InvalidRequest("the request body ended early")
        size += len(event.data)
        outcome.bytes_in += len(event.data)
        if size > MAX_BODY:
            raise PayloadTooLarge(
                f"an access review over {MAX_BODY // 1024} KiB is refused to an access key "
                "limited to some namespaces"
            )
        chunks.append(event.data)
    return b"".join(chunks)


def _peer_address(peer: str) -> str:
    """The client's address without its port (``host:port``, IPv6 hosts included)."""
    return peer.rsplit(":", 1)[0]


def _has_body(request: Request) -> bool:
    for name, value in request.headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
    return False
