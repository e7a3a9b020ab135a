"""The agent's side of the tunnel: dial out, hold the connection, redial when it drops.

:class:`AgentTunnel` opens the WebSocket (cluster credential, pinned server CA, no
compression), serves the streams the gateway opens — the control stream, and every
other stream as one proxied Kubernetes API request (``agent/proxy.py``) — and hands each
desired RBAC set to the :class:`~kubegate.agent.reconcile.Reconciler`, whose
reports it sends back. Token requests (control schema 2) are answered each in a task of its
own, so a slow apiserver never holds up the control loop; those tasks end with the
connection. When the connection ends it waits :func:`reconnect_delay` and dials again, for as
long as the process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from kubegate import __version__
from kubegate.agent.backoff import reconnect_delay
from kubegate.agent.reconcile import Reconciler
from kubegate.errors import KubegateError, TunnelProtocolError
from kubegate.tunnel.control import (
    SCHEMA_VERSIONS,
    Desired,
    Failure,
    GrantResult,
    Hello,
    Results,
    ServiceAccountResult,
    TokenAnswer,
    TokenRequest,
    negotiate,
)
from kubegate.tunnel.control_stream import CONTROL_PATH, ControlStream
from kubegate.tunnel.frames import FrameSession
from kubegate.tunnel.handshake import (
    PROTOCOL_HEADER,
    PROTOCOLS,
    TUNNEL_PATH,
    VERSION_HEADER,
    accepted_protocol,
)
from kubegate.tunnel.transport import (
    MAX_MESSAGE,
    ChannelClosed,
    StreamHandler,
    TunnelClosed,
    TunnelConnection,
    TunnelStream,
)

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
OPEN_TIMEOUT = 10.0

MintToken = Callable[[TokenRequest], Awaitable[TokenAnswer]]
"""Answers one token request (:meth:`~kubegate.agent.tokens.TokenMinter.answer`)."""


class WebsocketsChannel:
    """A ``websockets`` connection (client or server side) as the tunnel's ``Channel``."""

    def __init__(self, websocket: Connection) -> None:
        self.websocket = websocket

    async def send(self, data: bytes) -> None:
        try:
            await self.websocket.send(data)
        except ConnectionClosed as exc:
            raise ChannelClosed(str(exc)) from exc

    async def receive(self) -> bytes:
        try:
            message = await self.websocket.recv()
        except ConnectionClosed as exc:
            raise ChannelClosed(str(exc)) from exc
        if isinstance(message, str):
            raise TunnelProtocolError("the tunnel carries binary WebSocket messages only")
        return message

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code, reason)


@dataclass(frozen=True, slots=True)
class TunnelTarget:
    """Where and how the agent dials: the server's base URL, credential and trust."""

    server_url: str
    cluster_token: str
    ca_file: str | None = None
    cluster_name: str = ""

    @property
    def tunnel_url(self) -> str:
        base = self.server_url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base.removeprefix("https://") + TUNNEL_PATH
        if base.startswith("http://"):
            return "ws://" + base.removeprefix("http://") + TUNNEL_PATH
        raise KubegateError(f"--server must be an http:// or https:// URL, not {base[:80]!r}")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Trust only the pinned CA when one is given; the system's roots otherwise."""
        if not self.tunnel_url.startswith("wss://"):
            return None
        return ssl.create_default_context(cafile=self.ca_file)


class AgentTunnel:
    """Keeps one tunnel to the server open for the life of the agent.

    ``proxy`` serves each proxied request stream (:func:`~kubegate.agent.proxy.serve_proxied`
    bound to the agent's apiserver); without one, proxied requests are answered 404.
    ``tokens`` answers the server's token requests; without it, each is answered with an
    error.
    """

    def __init__(
        self,
        target: TunnelTarget,
        reconciler: Reconciler,
        *,
        info: Mapping[str, str] | None = None,
        proxy: StreamHandler | None = None,
        tokens: MintToken | None = None,
    ) -> None:
        self.target = target
        self.reconciler = reconciler
        self.proxy = proxy
        self.tokens = tokens
        self.info = dict(info or {})
        self._control: ControlStream | None = None
        self._revision: int | None = None
        self.connected = asyncio.Event()
        self.connections = 0

    async def report(
        self,
        revision: int,
        results: Sequence[GrantResult],
        service_accounts: Sequence[ServiceAccountResult] = (),
    ) -> None:
        """The reconciler's per-grant and per-ServiceAccount results, to the server (dropped
        while disconnected: the server sends the desired set again on reconnect, which
        brings a fresh report)."""
        control = self._control
        if control is None:
            return
        message = Results(
            revision=revision, results=tuple(results), service_accounts=tuple(service_accounts)
        )
        with contextlib.suppress(TunnelClosed, ChannelClosed):
            await control.send(message)

    async def run(self) -> None:
        """Dial, serve, and redial with backoff, until cancelled."""
        attempt = 0
        while True:
            try:
                hello_seen = await self._connect_once()
            except InvalidStatus as exc:
                hello_seen = False
                _log_refusal(exc)
            except TunnelProtocolError as exc:
                hello_seen = False
                log.error("tunnel handshake not understood", extra={"error": str(exc)})
            except (OSError, TimeoutError, InvalidHandshake, ssl.SSLError) as exc:
                hello_seen = False
                log.warning(
                    "cannot reach the kubegate server",
                    extra={"url": self.target.tunnel_url, "error": str(exc) or type(exc).__name__},
                )
            attempt = 0 if hello_seen else attempt + 1
            delay = reconnect_delay(attempt)
            log.info("reconnecting", extra={"in_seconds": round(delay, 2), "attempt": attempt})
            await asyncio.sleep(delay)

    async def _connect_once(self) -> bool:
        """One connection's life; answers whether the server's hello was received."""
        headers = {
            "Authorization": f"Bearer {self.target.cluster_token}",
            PROTOCOL_HEADER: ",".join(map(str, PROTOCOLS)),
            VERSION_HEADER: __version__,
        }
        try:
            websocket_cm = connect(
                self.target.tunnel_url,
                additional_headers=headers,
                ssl=self.target.ssl_context(),
                compression=None,
                max_size=MAX_MESSAGE * 4,
                open_timeout=OPEN_TIMEOUT,
                ping_interval=None,  # the tunnel's PING is the heartbeat
                close_timeout=5,
                user_agent_header=f"kubegate-agent/{__version__}",
            )
        except InvalidURI as exc:
            raise KubegateError(f"invalid server URL: {exc}") from exc
        async with websocket_cm as websocket:
            response = websocket.response
            try:
                protocol = accepted_protocol(
                    response.headers.get(PROTOCOL_HEADER) if response is not None else None
                )
            except TunnelProtocolError as exc:
                await websocket.close(1002, str(exc)[:120])  # the server logs why
                raise
            connection = TunnelConnection(
                WebsocketsChannel(websocket),
                FrameSession.agent,
                handler=self._serve_stream,
                name="tunnel to the kubegate server",
            )
            self._hello_seen = False
            log.info("tunnel open", extra={"url": self.target.tunnel_url, "protocol": protocol})
            self.connections += 1
            try:
                await connection.run()
            finally:
                self._control = None
                self.connected.clear()
            log.warning("tunnel closed", extra={"reason": connection.close_reason})
            return self._hello_seen

    async def _serve_stream(self, stream: TunnelStream) -> None:
        request = stream.request
        assert request is not None
        if request.method == "POST" and request.path == CONTROL_PATH:
            await self._serve_control(stream)
            return
        if self.proxy is not None:
            await self.proxy(stream)
            return
        await stream.respond(404, (("content-type", "text/plain"),))
        await stream.send(b"no such tunnel endpoint\n", end_stream=True)

    async def _serve_control(self, stream: TunnelStream) -> None:
        control = ControlStream(stream)
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                hello = await control.receive()
        except TimeoutError:
            raise TunnelProtocolError(
                f"the server sent no hello within {HELLO_TIMEOUT:g} s"
            ) from None
        if not isinstance(hello, Hello) or hello.role != "server":
            raise TunnelProtocolError("the server's first control message was not its hello")
        await stream.respond(200, ())
        schema = negotiate(SCHEMA_VERSIONS, hello.schema_versions)
        if schema is None:
            message = (
                f"this agent (kubegate {__version__}) speaks control schema "
                f"{', '.join(map(str, SCHEMA_VERSIONS))}; the server (kubegate "
                f"{hello.kubegate_version}) speaks {', '.join(map(str, hello.schema_versions))}"
            )
            await control.send(Failure(code="incompatible_version", message=message))
            raise TunnelProtocolError(message)
        await control.send(
            Hello(
                role="agent",
                kubegate_version=__version__,
                schema_versions=SCHEMA_VERSIONS,
                info=self.info,
            )
        )
        self._hello_seen = True
        self._control = control
        self.connected.set()
        log.info(
            "connected to the kubegate server",
            extra={"server_version": hello.kubegate_version, "schema": schema, **hello.info},
        )
        answering: set[asyncio.Task[None]] = set()  # token requests in flight
        try:
            while (incoming := await control.receive()) is not None:
                if isinstance(incoming, Desired):
                    log.info(
                        "desired RBAC received",
                        extra={
                            "revision": incoming.revision,
                            "grants": len(incoming.grants),
                            "service_accounts": len(incoming.service_accounts),
                        },
                    )
                    self.reconciler.set_desired(
                        incoming.revision, incoming.grants, incoming.service_accounts
                    )
                elif isinstance(incoming, TokenRequest):
                    task = asyncio.create_task(
                        self._answer_token(control, incoming),
                        name=f"token request {incoming.request_id}",
                    )
                    answering.add(task)
                    task.add_done_callback(answering.discard)
                elif isinstance(incoming, Failure):
                    raise TunnelProtocolError(
                        f"the server gave up: {incoming.code}: {incoming.message}"
                    )
                else:
                    raise TunnelProtocolError(
                        f"unexpected {type(incoming).__name__} message from the server"
                    )
        finally:
            # The answers could not reach the server any more: the server gives up on them.
            for task in answering:
                task.cancel()
            if answering:
                await asyncio.wait(answering)

    async def _answer_token(self, control: ControlStream, request: TokenRequest) -> None:
        """Mint one token (or say why not) and send the answer; never raises."""
        if self.tokens is None:
            answer = TokenAnswer(request.request_id, error="this agent does not mint tokens")
        else:
            try:
                answer = await self.tokens(request)
            except Exception as exc:  # a bug: the server still gets an answer
                log.exception(
                    "answering a token request failed", extra={"request_id": request.request_id}
                )
                answer = TokenAnswer(
                    request.request_id, error=f"the agent failed: {type(exc).__name__}"
                )
        with contextlib.suppress(TunnelClosed, ChannelClosed):
            await control.send(answer)


def _log_refusal(exc: InvalidStatus) -> None:
    response = exc.response
    message = ""
    with contextlib.suppress(ValueError, AttributeError):
        body: Any = json.loads(response.body or b"{}")
        message = str(body.get("error", {}).get("message", ""))
    log.error(
        "the kubegate server refused the tunnel",
        extra={"status": response.status_code, "error": message or response.reason_phrase},
    )
