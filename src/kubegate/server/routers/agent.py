"""``GET /api/v1/agent/tunnel``: the WebSocket agents dial (DESIGN §5, docs/tunnel.md).

The agent authenticates with its cluster credential (``Authorization: Bearer kg_agent_…``,
looked up by hash). A refused upgrade answers a plain HTTP error with the REST error body, so
the agent can log why: 401 unknown credential, 426 no common tunnel protocol (the body names
this server's version), 404 when the access gateway is disabled.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, WebSocket
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from kubegate import __version__
from kubegate.auth.hashing import secret_hash
from kubegate.errors import (
    IncompatibleAgent,
    KubegateError,
    NotFound,
    TunnelProtocolError,
    Unauthenticated,
)
from kubegate.server.handlers import error_response
from kubegate.server.state import AppState
from kubegate.storage.models import Cluster
from kubegate.tunnel.handshake import (
    PROTOCOL_HEADER,
    PROTOCOLS,
    TUNNEL_PATH,
    VERSION_HEADER,
    choose_protocol,
)
from kubegate.tunnel.transport import ChannelClosed

log = logging.getLogger(__name__)

router = APIRouter(tags=["agent"])


class StarletteChannel:
    """A Starlette (uvicorn) WebSocket as the tunnel's ``Channel``."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def send(self, data: bytes) -> None:
        try:
            await self.websocket.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise ChannelClosed(str(exc)) from exc

    async def receive(self) -> bytes:
        try:
            message = await self.websocket.receive()
        except (RuntimeError, OSError) as exc:
            raise ChannelClosed(str(exc)) from exc
        if message["type"] == "websocket.disconnect":
            raise ChannelClosed(f"WebSocket closed with code {message.get('code')}")
        data = message.get("bytes")
        if data is None:
            raise TunnelProtocolError("the tunnel carries binary WebSocket messages only")
        assert isinstance(data, bytes)
        return data

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            await self.websocket.close(code, reason)


async def _authenticate(state: AppState, websocket: WebSocket) -> Cluster:
    if not state.settings.gateway_enabled:
        raise NotFound("the access gateway is disabled on this server")
    scheme, _, credential = (websocket.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not credential.startswith("kg_agent_"):
        raise Unauthenticated("send the cluster credential as 'Authorization: Bearer kg_agent_…'")
    async with state.sessions() as db:
        cluster: Cluster | None = await db.scalar(
            select(Cluster).where(Cluster.agent_credential_hash == secret_hash(credential))
        )
    if cluster is None:
        raise Unauthenticated(
            "the cluster credential is not recognised (was the cluster deleted or its "
            "credential replaced?)"
        )
    if choose_protocol(websocket.headers.get(PROTOCOL_HEADER)) is None:
        offered = websocket.headers.get(PROTOCOL_HEADER) or "none"
        raise IncompatibleAgent(
            f"this server (kubegate {__version__}) speaks tunnel protocol "
            f"{', '.join(map(str, PROTOCOLS))}; the agent "
            f"(kubegate {websocket.headers.get(VERSION_HEADER, 'unknown')[:40]}) offered "
            f"{offered[:40]}: install an agent that matches the server",
            details={"server_version": __version__, "server_protocols": list(PROTOCOLS)},
        )
    return cluster


@router.websocket(TUNNEL_PATH)
async def agent_tunnel(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.kubegate
    try:
        cluster = await _authenticate(state, websocket)
    except KubegateError as exc:
        log.warning(
            "agent tunnel refused",
            extra={"status": exc.status, "reason": exc.message, "client": _client(websocket)},
        )
        await websocket.send_denial_response(error_response(exc))
        return
    protocol = choose_protocol(websocket.headers.get(PROTOCOL_HEADER))
    assert protocol is not None  # _authenticate refused the upgrade otherwise
    await websocket.accept(headers=[(PROTOCOL_HEADER.lower().encode(), str(protocol).encode())])
    await state.tunnels.serve(
        StarletteChannel(websocket),
        cluster.id,
        cluster.name,
        websocket.headers.get(VERSION_HEADER, "unknown")[:40],
    )


def _client(websocket: WebSocket) -> str:
    return f"{websocket.client.host}:{websocket.client.port}" if websocket.client else ""
