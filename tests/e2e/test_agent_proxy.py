"""The agent's half of the API proxy against a real kube-apiserver (and kwok pods).

A real WebSocket tunnel pair on loopback joins a gateway side, which opens one stream per
request with the headers ``tunnel/exchange.py`` prescribes, and an agent side, which serves
every stream with :func:`serve_proxied`. The agent reaches the apiserver through
:class:`CountingRelay`, a TCP relay that shows how many connections the agent opens and when
they close; cutting them is the only fault injected. RBAC is real: the admin binds the
built-in ClusterRoles to ``kubegate:<email>``, and the apiserver decides.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from lightkube import AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.resources.core_v1 import ConfigMap, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import RoleBinding
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from kubegate.agent.client import WebsocketsChannel
from kubegate.agent.manifest import IMPERSONATED_GROUP
from kubegate.agent.proxy import serve_proxied
from kubegate.agent.upstream import Upstream
from kubegate.tunnel.exchange import decode_response, tunnel_request_headers
from kubegate.tunnel.frames import FrameSession
from kubegate.tunnel.transport import (
    MAX_MESSAGE,
    StreamCancelled,
    TunnelConnection,
    TunnelStream,
)
from testenv.controlplane import Credentials
from testenv.pods import FakePod
from tests.fixtures.kube import MakePod

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

GUARD = 30.0  # a guard against hangs, never a speed assertion
PREFIX = "kubegate:"
RBAC = "rbac.authorization.k8s.io"
Headers = Sequence[tuple[str, str]]


# --- a TCP relay in front of the apiserver ----------------------------------------------------


class CountingRelay:
    """A TCP relay on 127.0.0.1 to the apiserver that counts the connections it carries.

    :attr:`accepted` counts every connection ever made, :attr:`open` those still open;
    :meth:`cut` resets every open one at once (the apiserver vanished).
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.accepted = 0
        self.open = 0
        self.port = 0
        self._changed = asyncio.Condition()
        self._transports: set[asyncio.WriteTransport] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CountingRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self.wait_open(0)
        await self._server.wait_closed()

    def cut(self) -> None:
        for transport in list(self._transports):
            sock = transport.get_extra_info("socket")
            if sock is not None:  # close with RST, not FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()

    async def wait_open(self, count: int) -> None:
        """Wait until exactly ``count`` connections are open."""
        async with asyncio.timeout(GUARD), self._changed:
            await self._changed.wait_for(lambda: self.open == count)

    async def _count(self, delta: int) -> None:
        async with self._changed:
            self.open += delta
            self._changed.notify_all()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await self._count(+1)
        self._transports.add(writer.transport)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            self._transports.add(upstream_writer.transport)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(_copy(reader, upstream_writer))
                tasks.create_task(_copy(upstream_reader, writer))
        except OSError:
            pass
        finally:
            for side in (writer, upstream_writer):
                if side is not None:
                    self._transports.discard(side.transport)
                    side.close()
                    with contextlib.suppress(OSError):
                        await side.wait_closed()
            await self._count(-1)


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(64 * 1024):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        sink.transport.abort()


# --- the tunnel pair ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tunnel_to(
    upstream: Upstream, managed: set[tuple[str, str]] | None = None
) -> AsyncIterator[TunnelConnection]:
    """A gateway-side tunnel connection whose agent side serves streams with the proxy;
    ``managed`` holds the ServiceAccounts in the agent's desired set (read at each request)."""
    accounts = managed if managed is not None else set()
    ready: asyncio.Future[TunnelConnection] = asyncio.get_running_loop().create_future()

    async def gateway_side(websocket: ServerConnection) -> None:
        connection = TunnelConnection(
            WebsocketsChannel(websocket), FrameSession.gateway, name="gateway"
        )
        runner = asyncio.create_task(connection.run())
        ready.set_result(connection)
        await asyncio.wait([runner])

    async def handler(stream: TunnelStream) -> None:
        await serve_proxied(
            stream,
            upstream,
            user_prefix=PREFIX,
            manages=lambda namespace, name: (namespace, name) in accounts,
        )

    options: dict[str, Any] = {
        "compression": None,
        "max_size": 4 * MAX_MESSAGE,
        "ping_interval": None,
    }
    async with serve(gateway_side, "127.0.0.1", 0, **options) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", **options) as websocket:
            agent = TunnelConnection(
                WebsocketsChannel(websocket), FrameSession.agent, handler=handler, name="agent"
            )
            agent_task = asyncio.create_task(agent.run())
            async with asyncio.timeout(GUARD):
                gateway = await ready
            try:
                yield gateway
            finally:
                async with asyncio.timeout(GUARD):
                    await gateway.close("the test is over")
                    await agent.close("the test is over")
                    await asyncio.wait([agent_task])


def config_for(credentials: Credentials, server: str) -> SingleConfig:
    """The admin kubeconfig (client certificate, system:masters), aimed at ``server``."""
    document = yaml.safe_load(credentials.kubeconfig.read_text())
    document["clusters"][0]["cluster"]["server"] = server
    config = KubeConfig.from_dict(document).get()
    assert config is not None
    return config


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Gateway:
    """The gateway's view: requests go in as streams, answers come back."""

    connection: TunnelConnection

    async def open(
        self,
        method: str,
        path: str,
        user: str,
        headers: Headers = (),
        *,
        upgrade: str | None = None,
        end_stream: bool | None = None,
        long_running: bool = False,
        service_account: tuple[str, str] | None = None,
    ) -> TunnelStream:
        """Open the stream as the gateway would (the user's email, cleaned headers); a
        plain request without a body ends at once, an upgrade stays open for its bytes."""
        head = tunnel_request_headers(
            headers,
            user=user,
            upgrade=upgrade,
            long_running=long_running,
            service_account=service_account,
        )
        if end_stream is None:
            end_stream = upgrade is None
        return await self.connection.open_stream(method, path, tuple(head), end_stream=end_stream)

    async def call(
        self,
        method: str,
        path: str,
        user: str,
        headers: Headers = (),
        body: bytes | None = None,
        service_account: tuple[str, str] | None = None,
    ) -> Answer:
        """One plain request and its whole answer."""
        async with asyncio.timeout(GUARD):
            stream = await self.open(
                method,
                path,
                user,
                headers,
                end_stream=body is None,
                service_account=service_account,
            )
            if body is not None:
                await stream.send(body, end_stream=True)
            head = await stream.response()
            return Answer(head.status, dict(head.headers), await read_all(stream))


@dataclass
class Proxy(Gateway):
    """A gateway whose agent reaches the apiserver through :attr:`relay`."""

    relay: CountingRelay
    upstream: Upstream
    managed: set[tuple[str, str]]


async def read_all(stream: TunnelStream) -> bytes:
    body = bytearray()
    while chunk := await stream.receive():
        body += chunk
    return bytes(body)


async def read_until(stream: TunnelStream, wanted: bytes, seen: bytearray) -> None:
    """Read the stream into ``seen`` until ``wanted`` appears in it."""
    async with asyncio.timeout(GUARD):
        while wanted not in seen:
            chunk = await stream.receive()
            assert chunk, f"the stream ended before {wanted!r} arrived; got {bytes(seen)!r}"
            seen += chunk


@pytest.fixture
async def admin(kube_credentials: Credentials) -> AsyncIterator[AsyncClient]:
    """The cluster superuser, for RBAC and objects the test sets up."""
    client = AsyncClient(KubeConfig.from_file(kube_credentials.kubeconfig), field_manager="test")
    yield client
    await client.close()


@pytest.fixture
async def proxy(kube_credentials: Credentials) -> AsyncIterator[Proxy]:
    """Gateway ⇄ tunnel ⇄ agent (``serve_proxied``) ⇄ counting relay ⇄ kube-apiserver."""
    apiserver = urlsplit(kube_credentials.server)
    assert apiserver.hostname is not None and apiserver.port is not None
    async with CountingRelay(apiserver.hostname, apiserver.port) as relay:
        upstream = Upstream.from_config(
            config_for(kube_credentials, f"https://127.0.0.1:{relay.port}")
        )
        managed: set[tuple[str, str]] = set()
        try:
            async with tunnel_to(upstream, managed) as gateway:
                yield Proxy(gateway, relay, upstream, managed)
        finally:
            await upstream.aclose()


@pytest.fixture
def email() -> str:
    return f"u-{uuid.uuid4().hex[:8]}@example.com"


async def bind(admin: AsyncClient, namespace: str, email: str, role: str) -> None:
    """Give ``kubegate:<email>`` the built-in ``role`` in ``namespace``, as the agent would."""
    binding = RoleBinding.from_dict(
        {
            "metadata": {"name": f"test-{role}-{uuid.uuid4().hex[:6]}", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": PREFIX + email}
            ],
        }
    )
    await admin.create(binding)


async def until_status(
    call: Callable[[], Awaitable[Answer]], status: int, within: float = GUARD
) -> Answer:
    """Repeat ``call`` until it answers ``status`` (RBAC reads a cache: a new binding takes a
    moment); the timeout only guards a hang."""
    deadline = time.monotonic() + within
    while True:
        answer = await call()
        if answer.status == status:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"still {answer.status} after {within} s: {answer.body[:300]!r}")
        await asyncio.sleep(0.1)


# --- impersonation ------------------------------------------------------------------------------


async def test_request_runs_as_the_impersonated_user_and_rbac_decides(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"

    refused = await proxy.call("GET", path, email)

    assert refused.status == 403
    assert refused.headers["content-type"] == "application/json"
    assert f'User "{PREFIX}{email}" cannot list resource "configmaps"' in refused.json()["message"]

    await bind(admin, namespace, email, "view")
    allowed = await until_status(lambda: proxy.call("GET", path, email), 200)
    assert allowed.json()["kind"] == "ConfigMapList"


async def test_a_managed_service_accounts_request_runs_as_that_account(
    proxy: Proxy, admin: AsyncClient, namespace: str
) -> None:
    await admin.create(
        ServiceAccount.from_dict({"metadata": {"name": "ci", "namespace": namespace}})
    )
    proxy.managed.add((namespace, "ci"))
    review = await proxy.call(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "issuer@example.com",
        [("content-type", "application/json")],
        b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}',
        service_account=(namespace, "ci"),
    )
    assert review.status == 201, review.body
    user = review.json()["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:ci"
    # A ServiceAccount's own groups, never the kubegate users' group or the issuer's.
    assert IMPERSONATED_GROUP not in user.get("groups", [])


async def test_an_account_outside_the_desired_set_is_refused_before_the_apiserver(
    proxy: Proxy,
) -> None:
    before = proxy.relay.accepted
    refused = await proxy.call(
        "GET",
        "/api/v1/namespaces/kube-system/secrets",
        "issuer@example.com",
        service_account=("kube-system", "clusterrole-aggregation-controller"),
    )
    assert refused.status == 403
    status = refused.json()
    assert status["kind"] == "Status" and status["reason"] == "Forbidden"
    assert (
        "does not manage service account kube-system/clusterrole-aggregation-controller"
        in (status["message"])
    )
    assert proxy.relay.accepted == before  # the apiserver was never asked


async def test_client_credentials_and_impersonation_headers_are_dropped(
    proxy: Proxy, namespace: str, email: str
) -> None:
    smuggled = [
        ("authorization", "Bearer someone-elses-token"),
        ("impersonate-user", "system:admin"),
        ("impersonate-group", "system:masters"),
        ("x-remote-user", "system:admin"),
    ]

    answer = await proxy.call("GET", f"/api/v1/namespaces/{namespace}/secrets", email, smuggled)

    assert answer.status == 403
    assert f'User "{PREFIX}{email}"' in answer.json()["message"]


# --- plain requests -----------------------------------------------------------------------------


async def test_post_with_content_length_creates_an_object(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str
) -> None:
    await bind(admin, namespace, email, "edit")
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    body = json.dumps({"metadata": {"name": "sized"}, "data": {"k": "v"}}).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]

    created = await until_status(lambda: proxy.call("POST", path, email, headers, body), 201)

    assert created.json()["metadata"]["name"] == "sized"
    stored = await admin.get(ConfigMap, "sized", namespace=namespace)
    assert stored.data == {"k": "v"}


async def test_post_with_a_streamed_body_of_unknown_length_creates_an_object(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str
) -> None:
    await bind(admin, namespace, email, "edit")
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    await until_status(lambda: proxy.call("GET", path, email), 200)
    body = json.dumps({"metadata": {"name": "chunked"}, "data": {"k": "v" * 100_000}}).encode()

    stream = await proxy.open(
        "POST", path, email, [("content-type", "application/json")], end_stream=False
    )
    half = len(body) // 2
    await stream.send(body[:half])
    await stream.send(body[half:], end_stream=True)
    head = await stream.response()

    assert head.status == 201, await read_all(stream)
    await read_all(stream)
    stored = await admin.get(ConfigMap, "chunked", namespace=namespace)
    assert stored.data == {"k": "v" * 100_000}


async def test_sequential_requests_reuse_one_upstream_connection(proxy: Proxy, email: str) -> None:
    for _ in range(50):
        answer = await proxy.call("GET", "/version", email)
        assert answer.status == 200
        assert "gitVersion" in answer.json()

    assert proxy.relay.accepted <= 2


async def test_successful_requests_log_nothing(
    proxy: Proxy, email: str, caplog: pytest.LogCaptureFixture
) -> None:
    await proxy.call("GET", "/version", email)  # the first connection is made
    caplog.set_level(logging.INFO)

    for _ in range(5):
        assert (await proxy.call("GET", "/version", email)).status == 200

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []


# --- watches and logs ---------------------------------------------------------------------------


async def configmaps_as_viewer(proxy: Proxy, admin: AsyncClient, namespace: str, email: str) -> str:
    """Make ``email`` a viewer of ``namespace``; answers its ConfigMaps path once the
    apiserver lets them read it."""
    await bind(admin, namespace, email, "view")
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    await until_status(lambda: proxy.call("GET", path, email), 200)
    return path


async def test_watch_streams_new_events_and_a_cancel_closes_the_upstream_request(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str
) -> None:
    path = await configmaps_as_viewer(proxy, admin, namespace, email)

    watch = await proxy.open("GET", f"{path}?watch=1", email)
    head = await watch.response()
    assert head.status == 200
    await admin.create(ConfigMap.from_dict({"metadata": {"name": "later", "namespace": namespace}}))
    seen = bytearray()
    await read_until(watch, b'"name":"later"', seen)
    events = [json.loads(line) for line in bytes(seen).splitlines() if line.strip()]
    assert any(e["type"] == "ADDED" and e["object"]["metadata"]["name"] == "later" for e in events)

    holding = proxy.relay.open  # the watch's connection, plus any idle ones in the pool
    await watch.cancel()
    await proxy.relay.wait_open(holding - 1)
    assert (await proxy.call("GET", path, email)).status == 200


async def test_closing_the_tunnel_closes_the_upstream_watch(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str
) -> None:
    path = await configmaps_as_viewer(proxy, admin, namespace, email)
    watch = await proxy.open("GET", f"{path}?watch=1", email)
    assert (await watch.response()).status == 200
    holding = proxy.relay.open

    await proxy.connection.close("the gateway went away")

    await proxy.relay.wait_open(holding - 1)


@pytest.mark.parametrize("long_running", [False, True], ids=["http1", "shared-http2"])
async def test_apiserver_breaking_off_a_watch_resets_the_stream(
    proxy: Proxy,
    admin: AsyncClient,
    namespace: str,
    email: str,
    caplog: pytest.LogCaptureFixture,
    long_running: bool,
) -> None:
    path = await configmaps_as_viewer(proxy, admin, namespace, email)
    watch = await proxy.open("GET", f"{path}?watch=1", email, long_running=long_running)
    assert (await watch.response()).status == 200
    await admin.create(ConfigMap.from_dict({"metadata": {"name": "first", "namespace": namespace}}))
    await read_until(watch, b'"name":"first"', bytearray())

    proxy.relay.cut()

    with pytest.raises(StreamCancelled):
        async with asyncio.timeout(GUARD):
            while await watch.receive():
                pass
    failures = [r for r in caplog.records if r.getMessage() == "proxied request failed"]
    assert [getattr(r, "path", None) for r in failures] == [path]
    # The next watch gets a new connection.
    again = await proxy.open("GET", f"{path}?watch=1", email, long_running=long_running)
    assert (await again.response()).status == 200


async def test_long_running_watches_share_one_http2_connection_to_the_apiserver(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str
) -> None:
    path = await configmaps_as_viewer(proxy, admin, namespace, email)
    accepted = proxy.relay.accepted

    watches = [
        await proxy.open("GET", f"{path}?watch=1", email, long_running=True) for _ in range(20)
    ]
    assert [(await w.response()).status for w in watches] == [200] * 20
    await admin.create(ConfigMap.from_dict({"metadata": {"name": "one", "namespace": namespace}}))
    for watch in watches:
        await read_until(watch, b'"name":"one"', bytearray())
    assert proxy.relay.accepted - accepted == 1  # twenty watches, one connection
    shared = proxy.upstream.shared
    assert shared is not None and shared.connections_opened == 1

    # Cancelling one watch resets its HTTP/2 stream only: the others carry on.
    await watches.pop().cancel()
    await admin.create(ConfigMap.from_dict({"metadata": {"name": "two", "namespace": namespace}}))
    for watch in watches:
        await read_until(watch, b'"name":"two"', bytearray())
    assert proxy.relay.accepted - accepted == 1


async def test_a_shared_watch_is_authorised_per_user(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str
) -> None:
    path = await configmaps_as_viewer(proxy, admin, namespace, email)
    allowed = await proxy.open("GET", f"{path}?watch=1", email, long_running=True)
    assert (await allowed.response()).status == 200

    stranger = f"u-{uuid.uuid4().hex[:8]}@example.com"
    refused = await proxy.open("GET", f"{path}?watch=1", stranger, long_running=True)
    head = await refused.response()
    body = json.loads(await read_all(refused))

    assert head.status == 403
    assert body["kind"] == "Status" and f"{PREFIX}{stranger}" in body["message"]


async def test_pod_logs_are_returned_and_followed(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str, make_pod: MakePod
) -> None:
    pod: FakePod = await asyncio.to_thread(make_pod, "web", ["hello from kwok"])
    await bind(admin, namespace, email, "view")
    path = f"/api/v1/namespaces/{namespace}/pods/web/log"

    logs = await until_status(lambda: proxy.call("GET", path, email), 200)
    assert b"hello from kwok" in logs.body

    follow = await proxy.open("GET", f"{path}?follow=true", email)
    assert (await follow.response()).status == 200
    seen = bytearray()
    await read_until(follow, b"hello from kwok", seen)
    pod.append_log("a line written later")
    await read_until(follow, b"a line written later", seen)
    await follow.cancel()


# --- upgrades -----------------------------------------------------------------------------------


def websocket_exec_headers() -> list[tuple[str, str]]:
    return [
        ("sec-websocket-key", base64.b64encode(os.urandom(16)).decode()),
        ("sec-websocket-version", "13"),
        ("sec-websocket-protocol", "v5.channel.k8s.io"),
    ]


def server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole unmasked WebSocket frames (opcode, payload) at the start of ``data``, and the
    rest (an incomplete frame)."""
    frames: list[tuple[int, bytes]] = []
    while len(data) >= 2:
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            length, offset = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, offset = int.from_bytes(data[2:10], "big"), 10
        if len(data) < offset + length:
            break
        frames.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames, data


async def test_websocket_exec_switches_protocols_and_relays_the_command_output(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str, make_pod: MakePod
) -> None:
    await asyncio.to_thread(make_pod, "web")
    await bind(admin, namespace, email, "edit")
    path = f"/api/v1/namespaces/{namespace}/pods/web"
    await until_status(lambda: proxy.call("GET", path, email), 200)

    stream = await proxy.open(
        "GET",
        f"{path}/exec?command=echo&command=hi&stdout=true",
        email,
        websocket_exec_headers(),
        upgrade="websocket",
    )
    raw = await stream.response()
    answer = decode_response(raw.status, raw.headers)

    assert (raw.status, answer.status, answer.upgrade) == (200, 101, "websocket")
    assert dict(answer.headers)["sec-websocket-protocol"] == "v5.channel.k8s.io"
    stdout = bytearray()
    pending = b""
    closed = False
    async with asyncio.timeout(GUARD):
        while not closed and (chunk := await stream.receive()):
            frames, pending = server_frames(pending + chunk)
            for opcode, payload in frames:
                closed |= opcode == 0x8
                if opcode == 0x2 and payload[:1] == b"\x01":
                    stdout += payload[1:]
    assert bytes(stdout) == b"hi\n"
    await stream.cancel()


async def test_refused_websocket_exec_relays_the_apiserver_answer(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str, make_pod: MakePod
) -> None:
    await asyncio.to_thread(make_pod, "web")
    await bind(admin, namespace, email, "view")  # view may not exec

    stream = await proxy.open(
        "GET",
        f"/api/v1/namespaces/{namespace}/pods/web/exec?command=true&stdout=true",
        email,
        websocket_exec_headers(),
        upgrade="websocket",
    )
    head = await stream.response()
    body = json.loads(await read_all(stream))

    assert head.status == 403
    assert body["kind"] == "Status"
    assert f'User "{PREFIX}{email}"' in body["message"]


async def test_spdy_exec_switches_protocols_and_bytes_flow_both_ways(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str, make_pod: MakePod
) -> None:
    await asyncio.to_thread(make_pod, "web")
    await bind(admin, namespace, email, "edit")
    path = f"/api/v1/namespaces/{namespace}/pods/web"
    await until_status(lambda: proxy.call("GET", path, email), 200)
    before = proxy.relay.open

    stream = await proxy.open(
        "POST",
        f"{path}/exec?command=sleep&command=30&stdout=true",
        email,
        # kubectl also sends Content-Length: 0, which the gateway must drop: on an HTTP/2
        # stream it would forbid the upgraded bytes that follow.
        [("x-stream-protocol-version", "v4.channel.k8s.io")],
        upgrade="SPDY/3.1",
    )
    raw = await stream.response()
    answer = decode_response(raw.status, raw.headers)

    assert (answer.status, answer.upgrade) == (101, "SPDY/3.1")
    assert dict(answer.headers)["x-stream-protocol-version"] == "v4.channel.k8s.io"
    assert proxy.relay.open == before + 1
    # A SPDY/3 PING (control frame, type 6, id 1): the server's SPDY session echoes it.
    ping = bytes.fromhex("800300060000000400000001")
    await stream.send(ping)
    await read_until(stream, ping, bytearray())

    await stream.cancel()
    await proxy.relay.wait_open(before)


async def test_apiserver_breaking_off_an_exec_session_resets_the_stream(
    proxy: Proxy, admin: AsyncClient, namespace: str, email: str, make_pod: MakePod
) -> None:
    await asyncio.to_thread(make_pod, "web")
    await bind(admin, namespace, email, "edit")
    path = f"/api/v1/namespaces/{namespace}/pods/web"
    await until_status(lambda: proxy.call("GET", path, email), 200)
    stream = await proxy.open(
        "POST",
        f"{path}/exec?command=sleep&command=30&stdout=true",
        email,
        [("x-stream-protocol-version", "v4.channel.k8s.io")],
        upgrade="SPDY/3.1",
    )
    assert (await stream.response()).status == 200

    proxy.relay.cut()

    with pytest.raises(StreamCancelled):
        async with asyncio.timeout(GUARD):
            while await stream.receive():
                pass


# --- failures -----------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_apiserver_is_answered_with_a_503_status(
    kube_credentials: Credentials, email: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kubegate")
    config = config_for(kube_credentials, f"https://127.0.0.1:{closed_port()}")
    upstream = Upstream.from_config(config)
    try:
        async with tunnel_to(upstream) as gateway:
            proxy = Gateway(gateway)
            plain = await proxy.call("GET", "/api/v1/namespaces", email)
            stream = await proxy.open(
                "GET",
                "/api/v1/namespaces/default/pods/web/exec?command=true",
                email,
                websocket_exec_headers(),
                upgrade="websocket",
            )
            upgrade_head = await stream.response()
            upgrade_body = json.loads(await read_all(stream))
    finally:
        await upstream.aclose()

    assert plain.status == 503
    status = plain.json()
    assert status["kind"] == "Status"
    assert (status["code"], status["reason"]) == (503, "ServiceUnavailable")
    assert status["message"].startswith("the agent cannot reach the Kubernetes API server: ")
    assert upgrade_head.status == 503
    assert upgrade_body["reason"] == "ServiceUnavailable"
    failures = [r for r in caplog.records if r.getMessage() == "proxied request failed"]
    assert len(failures) == 2
