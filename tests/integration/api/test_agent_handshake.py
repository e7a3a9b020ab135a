"""``GET /api/v1/agent/tunnel``: who may open a tunnel, and the first control conversation.

A real uvicorn serves the app (the ``api`` fixture); the agent side is a real ``websockets``
client carrying a :class:`TunnelConnection` whose handler answers the control stream the
way ``kubegate.agent.client.AgentTunnel`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from kubegate import __version__
from kubegate.agent.client import WebsocketsChannel
from kubegate.server.app import create_app
from kubegate.tunnel.control import SCHEMA_VERSIONS, Desired, Hello
from kubegate.tunnel.control_stream import CONTROL_PATH, ControlStream
from kubegate.tunnel.handshake import (
    PROTOCOL_HEADER,
    PROTOCOLS,
    TUNNEL_PATH,
    VERSION_HEADER,
    accepted_protocol,
)
from kubegate.tunnel.transport import MAX_MESSAGE, TunnelConnection, TunnelStream
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api, ServerThread, make_settings

pytestmark = pytest.mark.anyio

# A guard against hangs, not a speed assertion.
GUARD = 20.0


def tunnel_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1) + TUNNEL_PATH


def register(api: Api, name: str) -> tuple[str, str]:
    """A new cluster: its id and its agent credential."""
    created = api.post("/api/v1/clusters", json={"name": name})
    assert created.status_code == 201, created.text
    body = created.json()
    return str(body["cluster"]["id"]), str(body["agent_credential"])


def agent_headers(credential: str | None, protocol: str | None = "1") -> dict[str, str]:
    headers = {VERSION_HEADER: __version__}
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    if protocol is not None:
        headers[PROTOCOL_HEADER] = protocol
    return headers


async def refusal(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Dial and expect the upgrade to be refused: the status and the JSON error body."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers, compression=None):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def is_online(api: Api, cluster_id: str) -> bool:
    response = await asyncio.to_thread(api.get, f"/api/v1/clusters/{cluster_id}")
    assert response.status_code == 200, response.text
    online: bool = response.json()["online"]
    return online


async def wait_online(api: Api, cluster_id: str, expected: bool) -> None:
    deadline = time.monotonic() + GUARD
    while await is_online(api, cluster_id) is not expected:
        assert time.monotonic() < deadline, f"online never became {expected}"
        await asyncio.sleep(0.05)


# --- a minimal agent --------------------------------------------------------------------------


@dataclass
class Agent:
    """The agent's end of one tunnel: control conversation as in ``AgentTunnel``."""

    websocket: ClientConnection
    connection: TunnelConnection | None = None
    server_hello: Hello | None = None
    desired: asyncio.Queue[Desired] = field(default_factory=asyncio.Queue)
    runner: asyncio.Task[None] | None = None
    # Serves every other stream (the proxied requests) when set; 404 otherwise.
    proxied: Callable[[TunnelStream], Awaitable[None]] | None = None

    async def serve(self, stream: TunnelStream) -> None:
        request = stream.request
        assert request is not None
        if (request.method, request.path) != ("POST", CONTROL_PATH):
            if self.proxied is not None:
                await self.proxied(stream)
                return
            await stream.respond(404, end_stream=True)
            return
        control = ControlStream(stream)
        hello = await control.receive()
        assert isinstance(hello, Hello) and hello.role == "server"
        self.server_hello = hello
        await stream.respond(200)
        await control.send(
            Hello(
                role="agent",
                kubegate_version=__version__,
                schema_versions=SCHEMA_VERSIONS,
                info={"cluster_name": "test"},
            )
        )
        while (message := await control.receive()) is not None:
            if isinstance(message, Desired):
                await self.desired.put(message)

    async def next_desired(self) -> Desired:
        async with asyncio.timeout(GUARD):
            return await self.desired.get()


@contextlib.asynccontextmanager
async def agent_connected(
    base_url: str,
    credential: str,
    proxied: Callable[[TunnelStream], Awaitable[None]] | None = None,
    protocols: str = "1",
) -> AsyncIterator[Agent]:
    """A connected agent serving its tunnel, offering ``protocols`` and speaking the one the
    server names in its 101; closed (and its run() awaited) on exit."""
    async with connect(
        tunnel_url(base_url),
        additional_headers=agent_headers(credential, protocols),
        compression=None,
        max_size=4 * MAX_MESSAGE,
        ping_interval=None,
    ) as websocket:
        agent = Agent(websocket, proxied=proxied)
        assert websocket.response is not None
        agent.connection = TunnelConnection(
            WebsocketsChannel(websocket),
            client=False,
            handler=agent.serve,
            name="test agent",
            protocol=accepted_protocol(websocket.response.headers.get(PROTOCOL_HEADER)),
        )
        agent.runner = asyncio.create_task(agent.connection.run())
        try:
            yield agent
        finally:
            async with asyncio.timeout(GUARD):
                await agent.connection.close("the test agent is done")
                await asyncio.wait([agent.runner])


# --- refusals ---------------------------------------------------------------------------------


async def test_tunnel_without_credential_is_refused_with_401_saying_how_to_authenticate(
    api: Api,
) -> None:
    status, body = await refusal(tunnel_url(api.url), agent_headers(None))
    assert status == 401
    assert body["error"]["code"] == "unauthenticated"
    assert "Authorization: Bearer kg_agent_" in body["error"]["message"]


async def test_tunnel_with_unknown_credential_is_refused_with_401(api: Api) -> None:
    register(api, "known")
    status, body = await refusal(tunnel_url(api.url), agent_headers("kg_agent_" + "x" * 40))
    assert status == 401
    assert body["error"]["code"] == "unauthenticated"
    assert "not recognised" in body["error"]["message"]


async def test_tunnel_with_an_admin_token_instead_of_an_agent_credential_is_refused(
    api: Api,
) -> None:
    register(api, "prod")
    status, _ = await refusal(tunnel_url(api.url), agent_headers(api.admin_token))
    assert status == 401


@pytest.mark.parametrize("offered", ["99", None, "two, three"], ids=["99", "missing", "junk"])
async def test_tunnel_without_a_common_protocol_is_refused_with_426_naming_the_server(
    api: Api, offered: str | None
) -> None:
    _, credential = register(api, "prod")
    status, body = await refusal(tunnel_url(api.url), agent_headers(credential, offered))
    assert status == 426
    assert body["error"]["details"] == {
        "server_version": __version__,
        "server_protocols": list(PROTOCOLS),
    }
    assert __version__ in body["error"]["message"]


async def test_426_error_code_is_the_documented_incompatible_agent(api: Api) -> None:
    _, credential = register(api, "prod")
    _, body = await refusal(tunnel_url(api.url), agent_headers(credential, "99"))
    assert body["error"]["code"] == "incompatible_agent"


# --- a connected agent ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "spoken"),
    [("1", 1), ("2", 2), ("1, 2", 2), ("2, 1, 99", 2)],
)
async def test_agent_with_the_right_credential_gets_the_desired_grants(
    api: Api, offered: str, spoken: int
) -> None:
    """On the highest tunnel protocol both speak, named in the server's 101: an agent that
    knows only protocol 1 (HTTP/2) still works."""
    cluster_id, credential = register(api, "prod")
    grant = api.post(
        f"/api/v1/clusters/{cluster_id}/access/grants", json={"email": ADMIN_EMAIL, "role": "view"}
    )
    assert grant.status_code == 201, grant.text
    async with agent_connected(api.url, credential, protocols=offered) as agent:
        desired = await agent.next_desired()
        assert agent.connection is not None and agent.connection.protocol == spoken
        assert agent.websocket.response is not None
        assert agent.websocket.response.headers[PROTOCOL_HEADER] == str(spoken)
    assert agent.server_hello is not None
    assert agent.server_hello.info["cluster_id"] == cluster_id
    assert desired.revision >= 1
    assert [(g.grant_id, g.email, g.role, g.namespace) for g in desired.grants] == [
        (grant.json()["id"], ADMIN_EMAIL, "view", None)
    ]


async def test_cluster_is_online_while_its_agent_is_connected_and_offline_after(
    api: Api,
) -> None:
    cluster_id, credential = register(api, "prod")
    assert not await is_online(api, cluster_id)
    async with agent_connected(api.url, credential) as agent:
        await agent.next_desired()
        assert await is_online(api, cluster_id)
    await wait_online(api, cluster_id, False)


async def test_newer_connection_of_the_same_cluster_replaces_the_older(api: Api) -> None:
    cluster_id, credential = register(api, "prod")
    async with agent_connected(api.url, credential) as older:
        await older.next_desired()
        async with agent_connected(api.url, credential) as newer:
            await newer.next_desired()
            async with asyncio.timeout(GUARD):
                await older.websocket.wait_closed()
            assert older.connection is not None and newer.connection is not None
            assert "replaced by a newer connection" in (older.connection.close_reason or "")
            assert not newer.connection.is_closed
            assert await is_online(api, cluster_id)


async def test_text_frame_from_the_agent_closes_the_tunnel(api: Api) -> None:
    _, credential = register(api, "prod")
    async with agent_connected(api.url, credential) as agent:
        await agent.next_desired()
        await agent.websocket.send("not binary")
        async with asyncio.timeout(GUARD):
            await agent.websocket.wait_closed()
            assert agent.runner is not None
            await asyncio.wait([agent.runner])
        assert agent.websocket.close_code == 1002
        assert "binary" in (agent.websocket.close_reason or "")


async def test_server_keeps_serving_after_an_agent_sent_a_text_frame(api: Api) -> None:
    cluster_id, credential = register(api, "prod")
    async with agent_connected(api.url, credential) as rude:
        await rude.next_desired()
        await rude.websocket.send("not binary")
        async with asyncio.timeout(GUARD):
            await rude.websocket.wait_closed()
    await wait_online(api, cluster_id, False)
    health = await asyncio.to_thread(api.client.get, "/healthz")
    assert health.status_code == 200
    async with agent_connected(api.url, credential) as polite:
        assert (await polite.next_desired()).revision >= 0
        assert await is_online(api, cluster_id)


async def test_agent_disconnect_logs_no_server_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    cluster_id, credential = register(api, "prod")
    async with agent_connected(api.url, credential) as agent:
        await agent.next_desired()
    await wait_online(api, cluster_id, False)
    await asyncio.sleep(0.2)  # the server's handler finishes after it marked the cluster offline
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


# --- the gateway switch -----------------------------------------------------------------------


@pytest.fixture
def gateway_off(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The app with ``gateway_enabled=False``."""
    settings = make_settings(database_url, tmp_path / "data", gateway_enabled=False)
    with (
        ServerThread(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        api = Api(client, settings, "", server.url)
        api.admin_token = api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        yield api


async def test_tunnel_is_404_when_the_gateway_is_disabled(gateway_off: Api) -> None:
    status, body = await refusal(tunnel_url(gateway_off.url), agent_headers("kg_agent_whatever"))
    assert status == 404
    assert body["error"]["message"] == "the access gateway is disabled on this server"
