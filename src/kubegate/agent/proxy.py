"""The agent's half of the API proxy: one tunnel stream becomes one apiserver request.

:func:`serve_proxied` replays the request the gateway opened (``tunnel/exchange.py`` has the
header convention) against the agent's :class:`~kubegate.agent.upstream.Upstream`, as the
user (``Impersonate-User: <prefix><email>``, ``Impersonate-Group: kubegate:authenticated``)
with the agent's own credential, and streams the answer back:

- plain requests: the request body is streamed from the tunnel into the apiserver, the
  response body from the apiserver into the tunnel chunk by chunk; ``TunnelStream.send``
  waits for HTTP/2 window, so a slow kubectl stops the agent reading the apiserver;
- upgrades (exec, attach, port-forward): a ``101`` travels as ``200`` + ``kubegate-upgrade``,
  then bytes are relayed both ways, unparsed, with no idle timeout, until both sides ended.

A reset stream or a closed tunnel (kubectl went away) cancels the apiserver request at once,
even while it waits for the apiserver (a quiet watch). An apiserver that breaks off after the
response head makes the agent reset the stream, so the gateway cuts kubectl's connection
instead of ending a truncated body cleanly. Before a head, failures are answered with a
Kubernetes ``Status`` (503 when the apiserver cannot be reached).

A request made with a managed ServiceAccount's kube token (``kubegate-service-account``)
is impersonated as that account only when the account is in the agent's current desired set
(``manages``); any other is refused with ``403 Forbidden`` before the apiserver is contacted,
so not even a bug on the server's side can make the agent act as, say, a ``kube-system``
account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from kubegate.agent.connection import UpstreamBroken, UpstreamConnection, UpstreamUnavailable
from kubegate.agent.desired import Manages
from kubegate.agent.multiplex import CONNECT_TIMEOUT, SharedConnections
from kubegate.agent.request_head import check_request_head
from kubegate.agent.upstream import Upstream
from kubegate.errors import (
    InvalidRequest,
    KubegateError,
    PermissionDenied,
    failure_reason,
    map_exceptions,
)
from kubegate.kube.status import status_response
from kubegate.tunnel.exchange import (
    ProxiedRequest,
    decode_request,
    response_has_body,
    tunnel_response_head,
    upstream_request_head,
)
from kubegate.tunnel.transport import StreamCancelled, TunnelClosed, TunnelStream

log = logging.getLogger(__name__)

# A body of known length up to this size is read before the head goes, so head and body
# travel in two tunnel writes instead of three (most API answers are this small).
SMALL_BODY = 64 * 1024
# Upgraded bytes (port-forward, cp, exec) are read in pieces up to this: fewer, larger tunnel
# messages cost less per byte (port-forward went from about 45 % to 50-60 % of direct with
# 256 KiB instead of 64 KiB).
UPGRADED_READ = 256 * 1024
_GONE = (StreamCancelled, TunnelClosed)  # the gateway's side of the stream is over


def _manages_none(namespace: str, name: str) -> bool:
    return False


async def serve_proxied(
    stream: TunnelStream,
    upstream: Upstream,
    *,
    user_prefix: str,
    manages: Manages = _manages_none,
) -> None:
    """Serve one proxied request stream (the agent's handler for every non-control stream).

    ``manages`` decides which ServiceAccounts a request may act as (by default none).
    Raises :class:`~kubegate.errors.TunnelProtocolError` for a stream that is not a proxied
    request (no user): the tunnel's convention is to close the connection that carried it.
    """
    incoming = stream.request
    assert incoming is not None, "the agent serves streams the gateway opened"
    request = decode_request(incoming.method, incoming.path, incoming.headers)
    exchange = _Exchange(stream, upstream, request, user_prefix, incoming.end_stream, manages)
    relay = asyncio.ensure_future(exchange.run())
    abandoned = False

    def abandon() -> None:
        # Once, and never again while it cleans up: a second cancel would interrupt the
        # closing of its apiserver connection (a TaskGroup's abort would be that second one).
        nonlocal abandoned
        if not abandoned and not relay.done() and not exchange.settled:
            abandoned = True
            relay.cancel()

    # Waiting on the apiserver (a quiet watch) must not keep an abandoned stream alive.
    stream.on_dead(abandon)
    cancelled = False
    while not relay.done():
        try:
            await asyncio.wait((relay,))  # unlike awaiting it, never cancels it
        except asyncio.CancelledError:
            cancelled = True
            abandon()
    if cancelled:  # passed on once the relay has finished
        raise asyncio.CancelledError
    if not relay.cancelled():
        relay.result()


class _Exchange:
    """One request's relay; :meth:`run` never raises for an expected failure."""

    def __init__(
        self,
        stream: TunnelStream,
        upstream: Upstream,
        request: ProxiedRequest,
        user_prefix: str,
        bodiless: bool,
        manages: Manages = _manages_none,
    ) -> None:
        self.stream = stream
        self.upstream = upstream
        self.request = request
        self.user_prefix = user_prefix
        self.bodiless = bodiless
        self.manages = manages
        self.responded = False
        # Set once the outcome is decided: the stream's death from then on is our own reset
        # (or a late one), and must not interrupt sending it.
        self.settled = False

    async def run(self) -> None:
        request = self.request
        account = request.service_account
        if account is not None and not self.manages(*account):
            self.settled = True
            message = (
                f"kubegate's agent does not manage service account {account[0]}/{account[1]}, "
                f"so it will not act as {request.impersonated_user}"
            )
            self._log_failure(message, PermissionDenied.status)
            await self._answer_error(PermissionDenied(message), message)
            return
        try:
            head = upstream_request_head(
                request,
                host=self.upstream.host_header,
                authorization=self.upstream.authorization(),
                user_prefix=self.user_prefix,
            )
            check_request_head(request.method, request.target, head)
            if request.upgrade is None:
                await self._plain(head)
            else:
                await self._upgrade(head)
        except _GONE:
            pass  # kubectl went away: the upstream request is closed on the way out
        except UpstreamBroken as exc:
            self.settled = True
            message = f"the Kubernetes API server broke off its response: {exc}"
            self._log_failure(message)
            await self._answer_error(exc, message)
        except (UpstreamUnavailable, InvalidRequest) as exc:
            self.settled = True
            message = str(exc)
            if isinstance(exc, UpstreamUnavailable):
                message = f"the agent cannot reach the Kubernetes API server: {message}"
            self._log_failure(message, exc.status)
            await self._answer_error(exc, message)

    def _log_failure(self, error: str, status: int | None = None) -> None:
        extra: dict[str, object] = {
            "method": self.request.method,
            "path": self.request.target.partition("?")[0],
            "user": self.request.user,
            "error": error,
        }
        if self.request.service_account is not None:
            extra["service_account"] = "/".join(self.request.service_account)
        if status is not None:
            extra["status"] = status
        log.warning("proxied request failed", extra=extra)

    async def _answer_error(self, error: KubegateError, message: str) -> None:
        if self.responded:  # too late for a status: the gateway must see a cut
            await self.stream.cancel()
            return
        answer = status_response(type(error)(message))
        with contextlib.suppress(*_GONE):
            await self.stream.respond(
                answer.status, answer.headers, end_stream=True, body=answer.body
            )

    # -- plain requests ------------------------------------------------------------------

    async def _plain(self, head: list[tuple[str, str]]) -> None:
        request = self.request
        shared = self.upstream.shared
        if (
            request.long_running
            and self.bodiless
            and shared is not None
            and shared.available
            and await self._shared(shared, head)
        ):
            return
        body = await self._request_body()
        async with self.upstream.request(request.method, request.target, head, body) as answer:
            status, headers = tunnel_response_head(answer.status, answer.headers)
            if not response_has_body(request.method, answer.status):
                await self.stream.respond(status, tuple(headers), end_stream=True)
                self.responded = True
                return
            length = answer.content_length
            if length is not None and length <= SMALL_BODY:
                content = await answer.read_small()
                # Head and body in one tunnel write.
                await self.stream.respond(status, tuple(headers), end_stream=True, body=content)
                self.responded = True
                return
            await self.stream.respond(status, tuple(headers))
            self.responded = True
            await answer.relay_body(self.stream.send)
            await self.stream.end()

    async def _shared(self, shared: SharedConnections, head: list[tuple[str, str]]) -> bool:
        """A watch or followed log on a shared HTTP/2 connection; False (nothing sent yet)
        when the apiserver turned out not to speak HTTP/2."""
        request = self.request
        target = self.upstream.server.base_path + request.target
        with map_exceptions({OSError: UpstreamUnavailable}):
            try:
                async with shared.request(request.method, target, head) as answer:
                    if answer is None:
                        return False
                    response, upstream = answer
                    status, headers = tunnel_response_head(response.status, response.headers)
                    end = response.end_stream
                    await self.stream.respond(status, tuple(headers), end_stream=end)
                    self.responded = True
                    if response.end_stream:
                        return True
                    while True:
                        try:
                            chunk = await upstream.receive()
                        except (StreamCancelled, TunnelClosed) as exc:
                            # Ours too (KubegateError), which map_exceptions passes through.
                            raise UpstreamBroken(failure_reason(exc)) from exc
                        if not chunk:
                            break
                        await self.stream.send(chunk)
                    await self.stream.end()
                    return True
            except TimeoutError:  # an OSError too, with a message of its own
                raise UpstreamUnavailable(
                    f"connecting timed out after {CONNECT_TIMEOUT:g} s"
                ) from None
            except (StreamCancelled, TunnelClosed) as exc:
                if self.responded or self.stream.is_dead:
                    raise
                raise UpstreamUnavailable(f"its HTTP/2 connection failed: {exc}") from exc

    async def _request_body(self) -> AsyncIterator[bytes] | None:
        """The request body as a stream from the tunnel, or ``None`` when there is none.

        With a Content-Length it goes as is; without one it is sent chunked, unless the
        gateway ends the stream without data (a GET, a DELETE without options): then the
        apiserver gets no body at all.
        """
        if self.bodiless:
            return None
        if any(name == "content-length" for name, _ in self.request.headers):
            return self._body(b"")
        first = await self.stream.receive()
        if not first:
            return None
        return self._body(first)

    async def _body(self, first: bytes) -> AsyncIterator[bytes]:
        if first:
            yield first
        while chunk := await self.stream.receive():
            yield chunk

    # -- upgrades ------------------------------------------------------------------------

    async def _upgrade(self, head: list[tuple[str, str]]) -> None:
        request = self.request
        connection = await self.upstream.open_upgrade(request.method, request.target, head)
        clean = False
        try:
            status, headers = tunnel_response_head(connection.status, connection.headers)
            await self.stream.respond(status, tuple(headers))
            self.responded = True
            if connection.switched:
                await self._relay_upgraded(connection)
            else:
                await connection.relay_body(self.stream.send)
                await self.stream.end()
            clean = True
        finally:
            await connection.close(abort=not clean)

    async def _relay_upgraded(self, connection: UpstreamConnection) -> None:
        """Bytes both ways until both directions ended or either failed."""

        async def to_upstream() -> None:
            await connection.feed_upgraded(self.stream.receive)

        async def to_tunnel() -> None:
            await connection.relay_upgraded(self.stream.send, read_size=UPGRADED_READ)
            await self.stream.end()

        broken: UpstreamBroken | None = None
        gone: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(to_upstream())
                tasks.create_task(to_tunnel())
        except* UpstreamBroken as group:
            first = group.exceptions[0]
            broken = first if isinstance(first, UpstreamBroken) else UpstreamBroken(str(first))
        except* _GONE as group:
            gone = group.exceptions[0]
        if broken is not None:
            raise broken
        if gone is not None:
            raise gone
