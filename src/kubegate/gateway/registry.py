"""The server's side of agent tunnels: who is connected, and the control conversation.

One :class:`TunnelRegistry` per server process holds the live :class:`AgentLink` of each
connected cluster (so ``online`` is a dictionary lookup). For each link the gateway, as the
side that opens streams, opens the control stream, exchanges hellos, then sends the
cluster's full desired RBAC on connect and whenever :meth:`TunnelRegistry.desired_changed`
is called, and has the per-grant results the agent reports stored
(:class:`~kubegate.gateway.store.AgentStore`).

Replicas: a link lives in the replica that accepted the WebSocket; ``desired_changed`` reaches
links in this process only (cross-replica notification comes with PostgreSQL LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import secrets
from collections import Counter
from collections.abc import Callable

from kubegate import __version__
from kubegate.errors import (
    BadGateway,
    Conflict,
    KubegateError,
    TunnelProtocolError,
    Unavailable,
)
from kubegate.gateway.store import AgentStore
from kubegate.tunnel.control import (
    SCHEMA_VERSIONS,
    SERVICE_ACCOUNTS_SCHEMA,
    Desired,
    Failure,
    Hello,
    Results,
    TokenAnswer,
    TokenRequest,
    negotiate,
)
from kubegate.tunnel.control_stream import CONTROL_PATH, SCHEMA_HEADER, ControlStream
from kubegate.tunnel.frames import FrameSession
from kubegate.tunnel.transport import Channel, TunnelConnection

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
SEEN_INTERVAL = 30.0
TOKEN_TIMEOUT = 15.0
"""Seconds to wait for the agent's answer to a token request."""


@dataclasses.dataclass
class AgentLink:
    """One connected agent."""

    cluster_id: str
    cluster_name: str
    agent_version: str
    connection: TunnelConnection
    connected_at: dt.datetime
    info: dict[str, str] = dataclasses.field(default_factory=dict)
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    # Set once the connect is recorded (last_seen_at, waiting grants pending): only then is
    # the cluster reported online, so nobody sees it online with no last-seen time.
    recorded: bool = False
    schema: int = 1
    control: ControlStream | None = None
    # Token requests sent and not yet answered, by request id.
    tokens: dict[str, asyncio.Future[TokenAnswer]] = dataclasses.field(default_factory=dict)


class TunnelRegistry:
    """Connected agents of this server process, by cluster id."""

    def __init__(self, store: AgentStore) -> None:
        self._store = store
        self._links: dict[str, AgentLink] = {}
        self._access_listeners: list[Callable[[str], None]] = []
        # Tunnels accepted (after the hello) per cluster id, for the metrics.
        self.connects: Counter[str] = Counter()

    def connected_count(self) -> int:
        """How many clusters' agents are connected (and recorded online) now."""
        return sum(1 for link in self._links.values() if link.recorded)

    def is_online(self, cluster_id: str) -> bool:
        link = self._links.get(cluster_id)
        return link is not None and link.recorded

    def link(self, cluster_id: str) -> AgentLink | None:
        return self._links.get(cluster_id)

    def on_access_changed(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(cluster_id)`` after every committed change of a cluster's grants or
        token epoch (the proxy drops what it cached about the cluster)."""
        self._access_listeners.append(listener)

    def desired_changed(self, cluster_id: str) -> None:
        """A grant of the cluster changed (committed): its agent gets the new desired set
        soon, and the access listeners hear of it at once."""
        if (link := self._links.get(cluster_id)) is not None:
            link.changed.set()
        for listener in self._access_listeners:
            listener(cluster_id)

    async def request_token(
        self,
        cluster_id: str,
        *,
        namespace: str,
        name: str,
        expiration_seconds: int,
        break_glass: bool = False,
    ) -> TokenAnswer:
        """Have the cluster's agent mint a bound token for a ServiceAccount kubegate manages
        (the TokenRequest API); ``break_glass`` makes it ensure the admin kubeconfig's account
        first. Raises 503 when the agent is not connected or does not answer in time, 409 when
        it is too old, 502 with the agent's reason when it could not."""
        link = self._links.get(cluster_id)
        if link is None or not link.recorded or link.control is None:
            raise Unavailable(
                "the cluster's agent is not connected: a token that goes straight to the "
                "apiserver is minted by the agent, so it must be online"
            )
        if link.schema < SERVICE_ACCOUNTS_SCHEMA:
            raise Conflict(
                f"the agent of cluster {link.cluster_name} (kubegate {link.agent_version}) is "
                "too old to mint ServiceAccount tokens: upgrade it"
            )
        request = TokenRequest(
            secrets.token_hex(16), namespace, name, expiration_seconds, break_glass
        )
        waiter: asyncio.Future[TokenAnswer] = asyncio.get_running_loop().create_future()
        link.tokens[request.request_id] = waiter
        try:
            await link.control.send(request)
            async with asyncio.timeout(TOKEN_TIMEOUT):
                answer = await asyncio.shield(waiter)
        except TimeoutError:
            raise Unavailable(
                f"the agent of cluster {link.cluster_name} did not answer the token request "
                f"within {TOKEN_TIMEOUT:g} s; retry"
            ) from None
        finally:
            link.tokens.pop(request.request_id, None)
        if answer.error:
            raise BadGateway(f"the agent could not mint the token: {answer.error[:500]}")
        return answer

    async def disconnect(self, cluster_id: str, reason: str) -> None:
        """Close the cluster's tunnel (e.g. the cluster was deleted)."""
        if (link := self._links.get(cluster_id)) is not None:
            await link.connection.close(reason)

    async def close_all(self, reason: str) -> None:
        for link in list(self._links.values()):
            await link.connection.close(reason, code=1001)

    async def serve(
        self,
        channel: Channel,
        cluster_id: str,
        cluster_name: str,
        agent_version: str,
    ) -> None:
        """Run one agent's tunnel until it closes; ``channel`` is its accepted WebSocket
        (tunnel protocol 2, the only one)."""
        name = f"tunnel to cluster {cluster_name} ({cluster_id})"
        connection = TunnelConnection(channel, FrameSession.gateway, name=name)
        link = AgentLink(
            cluster_id, cluster_name, agent_version, connection, dt.datetime.now(dt.UTC)
        )
        runner = asyncio.create_task(connection.run(), name=f"{name} reader")
        try:
            await self._converse(link)
        except KubegateError as exc:
            code = 1002 if isinstance(exc, TunnelProtocolError) else 1011
            await connection.close(str(exc), code=code)
        finally:
            await connection.close("the control conversation ended")
            await runner
            if self._links.get(cluster_id) is link:
                del self._links[cluster_id]
                try:
                    await self._store.mark_offline(cluster_id)
                except Exception:
                    # Its grants stay as they were (``pending``) until the agent reconnects.
                    log.exception(
                        "cannot record the agent's disconnect",
                        extra={"cluster_id": cluster_id},
                    )
            log.info(
                "agent disconnected",
                extra={"cluster_id": cluster_id, "reason": connection.close_reason},
            )

    async def _converse(self, link: AgentLink) -> None:
        connection = link.connection
        stream = await connection.open_stream(
            "POST", CONTROL_PATH, ((SCHEMA_HEADER, ",".join(map(str, SCHEMA_VERSIONS))),)
        )
        control = ControlStream(stream)
        await control.send(
            Hello(
                role="server",
                kubegate_version=__version__,
                schema_versions=SCHEMA_VERSIONS,
                info={"cluster_id": link.cluster_id, "cluster_name": link.cluster_name},
            )
        )
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                head = await stream.response()
                hello = await control.receive()
        except TimeoutError:
            raise TunnelProtocolError(
                f"the agent sent no hello within {HELLO_TIMEOUT:g} s"
            ) from None
        if head.status != 200:
            raise TunnelProtocolError(f"the agent answered the control stream with {head.status}")
        if not isinstance(hello, Hello) or hello.role != "agent":
            raise TunnelProtocolError("the agent's first control message was not its hello")
        schema = negotiate(SCHEMA_VERSIONS, hello.schema_versions)
        if schema is None:
            message = (
                f"kubegate {__version__} speaks control schema "
                f"{', '.join(map(str, SCHEMA_VERSIONS))}; agent {hello.kubegate_version} speaks "
                f"{', '.join(map(str, hello.schema_versions)) or 'none'}: upgrade the agent"
            )
            await control.send(Failure(code="incompatible_version", message=message))
            raise TunnelProtocolError(message)
        link.info = dict(hello.info)
        link.schema = schema
        link.control = control
        previous = self._links.get(link.cluster_id)
        self._links[link.cluster_id] = link
        if previous is not None:
            await previous.connection.close("replaced by a newer connection from the agent")
        await self._store.mark_online(link.cluster_id, link.info)
        link.recorded = True
        self.connects[link.cluster_id] += 1
        log.info(
            "agent connected",
            extra={
                "cluster_id": link.cluster_id,
                "agent_version": hello.kubegate_version,
                "schema": schema,
                **{f"agent_{k}": v for k, v in sorted(link.info.items())[:8]},
            },
        )
        link.changed.set()
        # The first of the three to end (the agent closing the stream, or any failure) ends
        # the conversation; its exception, unwrapped, is the reason the tunnel closes.
        tasks = {
            asyncio.create_task(self._receive_reports(link, control)),
            asyncio.create_task(self._push_desired(link, control)),
            asyncio.create_task(self._keep_seen(link)),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for waiter in link.tokens.values():
                if not waiter.done():
                    waiter.set_exception(Unavailable("the agent's tunnel closed; retry"))
                    waiter.exception()  # the requester may be gone: retrieved here
        for task in done:
            if (error := task.exception()) is not None:
                raise error

    async def _push_desired(self, link: AgentLink, control: ControlStream) -> None:
        sent: int | None = None
        while True:
            await link.changed.wait()
            link.changed.clear()
            desired: Desired = await self._store.load_desired(link.cluster_id)
            if desired.revision == sent:
                continue
            if link.schema < SERVICE_ACCOUNTS_SCHEMA:
                desired = dataclasses.replace(desired, service_accounts=())
            await control.send(desired)
            sent = desired.revision
            log.debug(
                "desired RBAC sent",
                extra={"cluster_id": link.cluster_id, "revision": desired.revision},
            )

    async def _keep_seen(self, link: AgentLink) -> None:
        while True:
            await asyncio.sleep(SEEN_INTERVAL)
            await self._store.mark_seen(link.cluster_id)

    async def _receive_reports(self, link: AgentLink, control: ControlStream) -> None:
        while (message := await control.receive()) is not None:
            if isinstance(message, TokenAnswer):
                waiter = link.tokens.get(message.request_id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
            elif isinstance(message, Results):
                changed = await self._store.record_results(
                    link.cluster_id, message.results, message.service_accounts
                )
                log.info(
                    "reconcile results",
                    extra={
                        "cluster_id": link.cluster_id,
                        "revision": message.revision,
                        "grants": len(message.results),
                        "changed": changed,
                    },
                )
            elif isinstance(message, Failure):
                raise TunnelProtocolError(f"the agent gave up: {message.code}: {message.message}")
            else:
                raise TunnelProtocolError(
                    f"unexpected {type(message).__name__} message from the agent"
                )
