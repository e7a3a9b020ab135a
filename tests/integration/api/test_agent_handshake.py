"""``GET /api/v1/agent/tunnel``: who may open a tunnel, and the first control conversation.

A real uvicorn serves the app (the ``api`` fixture); the agent side is the minimal agent of
``tests/fixtures/tunnel_agent.py``: a real ``websockets`` client carrying a
:class:`TunnelConnection` whose handler answers the control stream the way
``kubegate.agent.client.AgentTunnel`` does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kubegate import __version__
from kubegate.errors import Unavailable
from kubegate.server.gateway_store import SqlGatewayStore
from kubegate.tunnel.handshake import PROTOCOL_HEADER, PROTOCOLS, VERSION_HEADER
from tests.fixtures.api import ADMIN_EMAIL, Api
from tests.fixtures.tunnel_agent import (
    GUARD,
    agent_connected,
    agent_headers,
    is_online,
    register,
    tunnel_url,
    wait_online,
)

pytestmark = pytest.mark.anyio


async def refusal(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Dial and expect the upgrade to be refused: the status and the JSON error body."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers, compression=None):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


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


async def test_protocol_1_agent_is_refused_with_426_naming_both_sides_versions(
    api: Api,
) -> None:
    """Tunnel protocol 1 (HTTP/2 framing) is gone (ADR 0004): an agent that offers only it is
    told what this server speaks and what it offered, before any tunnel is opened."""
    cluster_id, credential = register(api, "prod")
    headers = agent_headers(credential, "1") | {VERSION_HEADER: "0.1.0-old"}
    status, body = await refusal(tunnel_url(api.url), headers)
    assert status == 426
    assert body["error"]["code"] == "incompatible_agent"
    assert body["error"]["details"] == {"server_version": __version__, "server_protocols": [2]}
    message = body["error"]["message"]
    assert f"kubegate {__version__}) speaks tunnel protocol 2;" in message
    assert "(kubegate 0.1.0-old) offered 1" in message
    assert not await is_online(api, cluster_id)


async def test_426_error_code_is_the_documented_incompatible_agent(api: Api) -> None:
    _, credential = register(api, "prod")
    _, body = await refusal(tunnel_url(api.url), agent_headers(credential, "99"))
    assert body["error"]["code"] == "incompatible_agent"


# --- a connected agent ------------------------------------------------------------------------


@pytest.mark.parametrize("offered", ["2", "1, 2", "2, 1, 99"])
async def test_agent_with_the_right_credential_gets_the_desired_grants(
    api: Api, offered: str
) -> None:
    """On tunnel protocol 2, named in the server's 101, whatever else the agent offers."""
    cluster_id, credential = register(api, "prod")
    grant = api.post(
        f"/api/v1/clusters/{cluster_id}/access/grants", json={"email": ADMIN_EMAIL, "role": "view"}
    )
    assert grant.status_code == 201, grant.text
    async with agent_connected(api.url, credential, protocols=offered) as agent:
        desired = await agent.next_desired()
        assert agent.websocket.response is not None
        assert agent.websocket.response.headers[PROTOCOL_HEADER] == "2"
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


async def disconnect_handled(caplog: pytest.LogCaptureFixture, cluster_id: str) -> None:
    """Wait for the server's tunnel handler to log "agent disconnected", its last step,
    after it tried to mark the cluster offline."""
    deadline = time.monotonic() + GUARD
    while not any(
        r.getMessage() == "agent disconnected" and getattr(r, "cluster_id", None) == cluster_id
        for r in caplog.records
    ):
        assert time.monotonic() < deadline, "the server's tunnel handler never finished"
        await asyncio.sleep(0.01)


async def test_agent_disconnect_logs_no_server_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubegate")
    cluster_id, credential = register(api, "prod")
    async with agent_connected(api.url, credential) as agent:
        await agent.next_desired()
    await wait_online(api, cluster_id, False)
    await disconnect_handled(caplog, cluster_id)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def test_a_disconnect_the_database_cannot_record_is_logged_and_the_agent_can_return(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="kubegate")
    cluster_id, credential = register(api, "prod")

    async def database_down(self: SqlGatewayStore, cluster_id: str) -> None:
        raise Unavailable("cannot record the agent's disconnect: the database is down")

    async with agent_connected(api.url, credential) as agent:
        await agent.next_desired()
        monkeypatch.setattr(SqlGatewayStore, "mark_offline", database_down)
    await disconnect_handled(caplog, cluster_id)
    failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.getMessage(), getattr(r, "cluster_id", None)) for r in failed] == [
        ("cannot record the agent's disconnect", cluster_id)
    ]
    assert failed[0].exc_info is not None
    assert "the database is down" in str(failed[0].exc_info[1])

    monkeypatch.undo()
    async with agent_connected(api.url, credential) as agent:
        assert (await agent.next_desired()).revision >= 0
        assert await is_online(api, cluster_id)
    await wait_online(api, cluster_id, False)


# --- the gateway switch -----------------------------------------------------------------------


async def test_tunnel_is_404_when_the_gateway_is_disabled(gateway_off: Api) -> None:
    status, body = await refusal(tunnel_url(gateway_off.url), agent_headers("kg_agent_whatever"))
    assert status == 404
    assert body["error"]["message"] == "the access gateway is disabled on this server"
