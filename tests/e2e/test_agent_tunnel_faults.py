"""Faults in the tunnel's transport: the processes never crash, the connection closes with
a logged reason, and state converges after the agent reconnects.

Only the wire is faulted: a TCP relay that cuts or slows the connection, or a peer that
speaks the real protocol and then sends a bad record. Server and agent are the real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from kubegate import __version__
from kubegate.agent.client import TunnelTarget, WebsocketsChannel
from kubegate.tunnel.control import SCHEMA_VERSIONS, Desired, Hello
from kubegate.tunnel.control_stream import CONTROL_PATH, SCHEMA_HEADER, ControlStream
from kubegate.tunnel.frames import FrameSession
from kubegate.tunnel.handshake import PROTOCOL_HEADER, VERSION_HEADER
from kubegate.tunnel.records import RecordKind, encode_record
from kubegate.tunnel.transport import TunnelConnection, TunnelStream
from kubegate.tunnel.wire import DATA, HEAD
from testenv.agent import AgentProcess
from testenv.controlplane import Credentials
from testenv.gateway import GatewayServer
from tests.fixtures.faults import FaultyRelay
from tests.fixtures.gateway import Deployment, running_deployment, wait_for

pytestmark = pytest.mark.e2e

Misbehave = Callable[[TunnelStream], Awaitable[None]]

OVERSIZED = bytes([RecordKind.CONTROL]) + (40 * 1024 * 1024).to_bytes(4, "big")
TRUNCATED = encode_record(RecordKind.CONTROL, b'{"type":"results","revision":1,"results":[]}')[:-7]
UNKNOWN = encode_record(RecordKind.CONTROL, b'{"type":"launch-missiles"}')

BAD_RECORDS = {
    "oversized": (OVERSIZED, False, "exceeds the"),
    "truncated": (TRUNCATED, True, "truncated record"),
    "unknown-type": (UNKNOWN, False, "unknown control message type"),
}


async def fake_agent(deployment: Deployment, misbehave: Misbehave) -> TunnelConnection:
    """Connect as the cluster's agent, say hello properly, then ``misbehave``; answers the
    connection after the server closed it."""
    target = TunnelTarget(
        deployment.server.url,
        deployment.cluster["agent_credential"],
        str(deployment.server.ca_file),
    )

    async def handler(stream: TunnelStream) -> None:
        control = ControlStream(stream)
        assert isinstance(await control.receive(), Hello)
        await stream.respond(200)
        await control.send(Hello("agent", __version__, SCHEMA_VERSIONS, {}))
        assert isinstance(await control.receive(), Desired)
        await misbehave(stream)
        await asyncio.sleep(30)  # the server is expected to close before this

    headers = {
        "Authorization": f"Bearer {target.cluster_token}",
        PROTOCOL_HEADER: "2",
        VERSION_HEADER: __version__,
    }
    async with connect(
        target.tunnel_url, additional_headers=headers, ssl=target.ssl_context(), compression=None
    ) as websocket:
        connection = TunnelConnection(
            WebsocketsChannel(websocket), FrameSession.agent, handler=handler
        )
        await asyncio.wait_for(connection.run(), 20)
        return connection


def server_is_healthy(deployment: Deployment) -> bool:
    with deployment.api() as client:
        return client.get("/healthz").status_code == 200


@pytest.mark.parametrize("fault", sorted(BAD_RECORDS))
def test_bad_record_from_the_agent_closes_the_tunnel_and_state_converges_after(
    deployment: Deployment, namespace: str, fault: str
) -> None:
    record, end_stream, reason = BAD_RECORDS[fault]
    deployment.agent.stop()
    deployment.wait_online(False)
    grant = deployment.grant("fault@example.com", "view", namespace)

    async def misbehave(stream: TunnelStream) -> None:
        await stream.send(record, end_stream=end_stream)

    connection = asyncio.run(fake_agent(deployment, misbehave))
    assert connection.close_reason is not None and reason in connection.close_reason
    log = (deployment.server.data_dir / "server.log").read_text()
    assert reason in log, "the server logs why it closed the tunnel"
    assert server_is_healthy(deployment)

    deployment.agent.start()
    deployment.wait_status(grant["id"], "applied")
    assert deployment.owned_bindings() == [f"{namespace}/kubegate-{grant['id']}"]


def test_corrupt_bytes_from_the_agent_close_the_tunnel(deployment: Deployment) -> None:
    deployment.agent.stop()
    deployment.wait_online(False)
    corrupt_bytes = HEAD.pack(DATA, 0, 0, 4) + b"abcd"  # a DATA frame on stream 0

    async def corrupt() -> str:
        target = TunnelTarget(
            deployment.server.url,
            deployment.cluster["agent_credential"],
            str(deployment.server.ca_file),
        )
        headers = {"Authorization": f"Bearer {target.cluster_token}", PROTOCOL_HEADER: "2"}
        async with connect(
            target.tunnel_url, additional_headers=headers, ssl=target.ssl_context()
        ) as websocket:
            await websocket.send(corrupt_bytes)
            try:
                while True:
                    await asyncio.wait_for(websocket.recv(), 15)
            except ConnectionClosed as exc:
                return str(exc.rcvd.reason if exc.rcvd else "")

    reason = asyncio.run(corrupt())
    assert "protocol error" in reason.lower()
    assert server_is_healthy(deployment)
    deployment.agent.start()
    deployment.wait_online(True)


def test_a_protocol_1_agent_is_refused_with_426_and_the_server_carries_on(
    deployment: Deployment,
) -> None:
    """An agent from before tunnel protocol 2 (it offers 1 only, HTTP/2 framing) is told
    which protocols the server speaks; the server and the real agent are unaffected."""
    deployment.agent.stop()
    deployment.wait_online(False)

    async def dial_as_protocol_1() -> tuple[int, dict[str, Any]]:
        target = TunnelTarget(
            deployment.server.url,
            deployment.cluster["agent_credential"],
            str(deployment.server.ca_file),
        )
        headers = {
            "Authorization": f"Bearer {target.cluster_token}",
            PROTOCOL_HEADER: "1",
            VERSION_HEADER: "0.0.9",
        }
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                target.tunnel_url, additional_headers=headers, ssl=target.ssl_context()
            ):
                pass
        response = refused.value.response
        return response.status_code, json.loads(response.body or b"{}")

    status, body = asyncio.run(dial_as_protocol_1())
    assert status == 426
    assert body["error"]["details"]["server_protocols"] == [2]
    assert "speaks tunnel protocol 2" in body["error"]["message"]
    assert "(kubegate 0.0.9) offered 1" in body["error"]["message"]
    assert server_is_healthy(deployment)
    deployment.agent.start()
    deployment.wait_online(True)


def relayed(
    stack: contextlib.ExitStack, relays: list[FaultyRelay]
) -> Callable[[GatewayServer], str]:
    """Point the agent at a :class:`FaultyRelay` in front of the server."""

    def through_relay(server: GatewayServer) -> str:
        relay = stack.enter_context(FaultyRelay("127.0.0.1", server.port))
        relays.append(relay)
        return f"https://127.0.0.1:{relay.port}"

    return through_relay


def test_cut_connection_mid_reconcile_converges_without_duplicates(
    tmp_path: Path, kube_credentials: Credentials, kube_admin: Client, namespace: str
) -> None:
    relays: list[FaultyRelay] = []
    with (
        contextlib.ExitStack() as stack,
        running_deployment(
            tmp_path, kube_credentials, kube_admin, agent_server_url=relayed(stack, relays)
        ) as deployment,
    ):
        grants = [deployment.grant(f"cut{i}@example.com", "view", namespace) for i in range(60)]
        relays[0].go_down()  # mid-reconcile: the agent is applying them now
        deployment.wait_online(False, timeout=12)
        more = [deployment.grant(f"gap{i}@example.com", "edit", namespace) for i in range(10)]
        relays[0].come_back()
        deployment.wait_online(True, timeout=40)
        for grant in grants + more:
            deployment.wait_status(grant["id"], "applied")
        expected = sorted(f"{namespace}/kubegate-{g['id']}" for g in grants + more)
        assert deployment.owned_bindings() == expected


def test_slow_link_still_converges(
    tmp_path: Path, kube_credentials: Credentials, kube_admin: Client, namespace: str
) -> None:
    relays: list[FaultyRelay] = []
    with (
        contextlib.ExitStack() as stack,
        running_deployment(
            tmp_path, kube_credentials, kube_admin, agent_server_url=relayed(stack, relays)
        ) as deployment,
    ):
        relays[0].delay = 0.2  # every chunk, both ways, waits 200 ms
        grants = [deployment.grant(f"slow{i}@example.com", "view", namespace) for i in range(5)]
        for grant in grants:
            deployment.wait_status(grant["id"], "applied", timeout=30)
        assert deployment.cluster_state()["online"] is True


# --- the other direction: a server that misbehaves towards a real agent process -------------


@pytest.mark.parametrize("fault", sorted(BAD_RECORDS))
def test_bad_record_from_the_server_makes_the_agent_reconnect_not_crash(
    tmp_path: Path, kube_credentials: Credentials, fault: str
) -> None:
    record, end_stream, reason = BAD_RECORDS[fault]
    connections: list[str | None] = []

    async def scenario() -> None:
        async def handler(websocket: ServerConnection) -> None:
            connection = TunnelConnection(WebsocketsChannel(websocket), FrameSession.gateway)
            runner = asyncio.ensure_future(connection.run())
            stream = await connection.open_stream("POST", CONTROL_PATH, ((SCHEMA_HEADER, "1"),))
            control = ControlStream(stream)
            await control.send(Hello("server", __version__, SCHEMA_VERSIONS, {}))
            assert isinstance(await control.receive(), Hello)
            await stream.send(record, end_stream=end_stream)
            await asyncio.wait_for(runner, 20)
            connections.append(connection.close_reason)

        async with serve(
            handler, "127.0.0.1", 0, compression=None, process_response=name_protocol_2
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            agent = AgentProcess(
                server_url=f"http://127.0.0.1:{port}",
                cluster_token="kg_agent_fake",
                kubeconfig=kube_credentials.kubeconfig,
                log=tmp_path / "agent.log",
            )
            agent.start()
            try:
                while len(connections) < 2:  # closed once, and dialled again
                    await asyncio.sleep(0.05)
                    agent.check_running()
            finally:
                agent.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert all(r is not None and reason in r for r in connections), connections
    assert reason in (tmp_path / "agent.log").read_text()


def name_protocol_2(connection: ServerConnection, request: Request, response: Response) -> Response:
    """A fake server's 101 names tunnel protocol 2, as the real one does."""
    response.headers[PROTOCOL_HEADER] = "2"
    return response


@pytest.mark.parametrize(
    ("named", "refusal"),
    [(None, "named no tunnel protocol"), ("1", "has not offered")],
    ids=["older-server", "protocol-1"],
)
def test_the_agent_refuses_a_server_that_does_not_speak_protocol_2_and_dials_again(
    tmp_path: Path, kube_credentials: Credentials, named: str | None, refusal: str
) -> None:
    """A server from before tunnel protocol 2 answers the upgrade without naming a protocol
    (and would speak HTTP/2 framing): the agent closes at once, says why to the server and in
    its log, and keeps dialling with backoff."""
    offered: list[str | None] = []
    closes: list[tuple[int | None, str]] = []

    def old_server(connection: ServerConnection, request: Request, response: Response) -> Response:
        if named is not None:
            response.headers[PROTOCOL_HEADER] = named
        return response

    async def scenario() -> None:
        async def handler(websocket: ServerConnection) -> None:
            assert websocket.request is not None
            offered.append(websocket.request.headers.get(PROTOCOL_HEADER))
            with contextlib.suppress(ConnectionClosed):
                await websocket.recv()
            closes.append((websocket.close_code, websocket.close_reason or ""))

        async with serve(
            handler, "127.0.0.1", 0, compression=None, process_response=old_server
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            agent = AgentProcess(
                server_url=f"http://127.0.0.1:{port}",
                cluster_token="kg_agent_fake",
                kubeconfig=kube_credentials.kubeconfig,
                log=tmp_path / "agent.log",
            )
            agent.start()
            try:
                while len(closes) < 2:  # refused once, and dialled again
                    await asyncio.sleep(0.05)
                    agent.check_running()
            finally:
                agent.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert offered[:2] == ["2", "2"]
    assert all(code == 1002 and refusal in reason for code, reason in closes), closes
    log = (tmp_path / "agent.log").read_text()
    assert "tunnel handshake not understood" in log and refusal in log


def test_unreachable_server_is_retried_with_backoff(
    tmp_path: Path, kube_credentials: Credentials
) -> None:
    agent = AgentProcess(
        server_url="https://127.0.0.1:9",  # nothing listens on the discard port
        cluster_token="kg_agent_fake",
        kubeconfig=kube_credentials.kubeconfig,
        log=tmp_path / "agent.log",
    )
    agent.start()
    try:
        wait_for(
            lambda: (tmp_path / "agent.log").read_text().count("cannot reach") >= 3,
            timeout=20,
            what="three failed dials",
        )
        agent.check_running()
    finally:
        agent.stop()
