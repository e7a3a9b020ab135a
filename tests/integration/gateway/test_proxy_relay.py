"""The proxy's relay, observed from the agent's end of a real tunnel.

The app (SQLite and PostgreSQL) serves the proxy on its own listener; a real WebSocket
tunnel connects a minimal agent whose handler records what each proxied stream carries and
answers as the test needs. So these tests assert on exactly what reaches the agent, which is
all that could ever reach the apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from kubegate.tunnel.events import RequestReceived
from kubegate.tunnel.exchange import LONG_RUNNING_HEADER, UPGRADE_HEADER, USER_HEADER
from kubegate.tunnel.transport import TunnelStream
from tests.fixtures.access import MEMBER_EMAIL, grant, token_path
from tests.fixtures.api import Api
from tests.fixtures.tunnel_agent import Agent, agent_connected, register, wait_online

pytestmark = pytest.mark.anyio

GUARD = 20.0
PODS = "/api/v1/namespaces/default/pods"
Handler = Callable[[TunnelStream], Awaitable[None]]


async def setup(api: Api, member: tuple[str, str]) -> tuple[str, str, str]:
    """A cluster the member holds a grant on: (cluster id, agent credential, kube token)."""
    cluster_id, credential = await asyncio.to_thread(register, api, "prod")
    await asyncio.to_thread(grant, api, cluster_id, member[0])
    minted = await asyncio.to_thread(api.post, token_path(cluster_id), member[1])
    assert minted.status_code == 200, minted.text
    return cluster_id, credential, str(minted.json()["token"])


async def answer_json(stream: TunnelStream, body: bytes = b"{}") -> None:
    await stream.respond(200, (("content-type", "application/json"),))
    await stream.send(body, end_stream=True)


def recorder() -> tuple[list[RequestReceived], Handler]:
    """An agent handler that records each proxied request head and answers ``{}``."""
    seen: list[RequestReceived] = []

    async def record(stream: TunnelStream) -> None:
        assert stream.request is not None
        seen.append(stream.request)
        await answer_json(stream)

    return seen, record


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_the_agent_never_receives_client_credentials_or_identity_claims(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id, credential, token = await setup(api, member)
    seen, record = recorder()

    attack = {
        "Authorization": f"Bearer {token}",
        "Impersonate-User": "system:admin",
        "Impersonate-Group": "system:masters",
        "Impersonate-Uid": "0",
        "Impersonate-Extra-Scopes": "everything",
        "X-Remote-User": "root",
        "X-Remote-Group": "system:masters",
        "X-Remote-Extra-Foo": "bar",
        "Cookie": "kg_session=stolen",
        "Kubegate-User": "admin@example.com",
        "X-Forwarded-For": "10.9.9.9",
    }
    async with agent_connected(api.url, credential, proxied=record):
        await wait_online(api, cluster_id, True)
        async with httpx.AsyncClient(base_url=api.proxy_url, timeout=GUARD) as client:
            response = await client.get(f"/clusters/{cluster_id}{PODS}", headers=attack)
    assert response.status_code == 200, response.text
    (request,) = seen
    headers = dict(request.headers)
    assert headers[USER_HEADER] == MEMBER_EMAIL  # the authenticated user, not the claimed one
    forbidden = {"authorization", "cookie", "x-remote-user", "x-remote-group"}
    assert not forbidden & headers.keys()
    assert not [n for n in headers if n.startswith(("impersonate-", "x-remote-"))]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert token not in repr(request)
    assert request.path == PODS


async def test_watches_are_marked_long_running_for_the_agent_and_clients_cannot_claim_it(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id, credential, token = await setup(api, member)
    seen, record = recorder()

    claimed = {"Authorization": f"Bearer {token}", LONG_RUNNING_HEADER: "watch"}
    async with agent_connected(api.url, credential, proxied=record):
        await wait_online(api, cluster_id, True)
        async with httpx.AsyncClient(base_url=api.proxy_url, timeout=GUARD) as client:
            plain = await client.get(f"/clusters/{cluster_id}{PODS}", headers=claimed)
            watch = await client.get(
                f"/clusters/{cluster_id}{PODS}?watch=1",
                headers={"Authorization": f"Bearer {token}"},
            )
            follow = await client.get(
                f"/clusters/{cluster_id}{PODS}/web/log?follow=true",
                headers={"Authorization": f"Bearer {token}"},
            )
    assert [plain.status_code, watch.status_code, follow.status_code] == [200, 200, 200]
    marks = [dict(request.headers).get(LONG_RUNNING_HEADER) for request in seen]
    assert marks == [None, "watch", "watch"]


async def test_a_smuggled_bearer_subprotocol_is_stripped_and_upgraded_bytes_are_relayed(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id, credential, token = await setup(api, member)
    seen: list[RequestReceived] = []

    async def echo_upgrade(stream: TunnelStream) -> None:
        assert stream.request is not None
        seen.append(stream.request)
        await stream.respond(
            200, ((UPGRADE_HEADER, "websocket"), ("sec-websocket-protocol", "v5.channel.k8s.io"))
        )
        while data := await stream.receive():
            await stream.send(data.upper())
        await stream.end()

    async with agent_connected(api.url, credential, proxied=echo_upgrade):
        await wait_online(api, cluster_id, True)
        host, port = api.proxy_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        smuggled = "base64url.bearer.authorization.k8s.io.c3RvbGVu"
        writer.write(
            (
                f"GET /clusters/{cluster_id}/api/v1/namespaces/default/pods/web/exec"
                "?command=sh&stdin=true HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Protocol: {smuggled}, v5.channel.k8s.io\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(GUARD):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 "), head
            assert b"upgrade: websocket" in head.lower()
            writer.write(b"raw bytes, never parsed")
            echoed = await reader.readexactly(len(b"raw bytes, never parsed"))
        assert echoed == b"RAW BYTES, NEVER PARSED"
        writer.close()
        await writer.wait_closed()
    (request,) = seen
    headers = dict(request.headers)
    assert headers["sec-websocket-protocol"] == "v5.channel.k8s.io"
    assert headers[UPGRADE_HEADER] == "websocket"
    assert token not in repr(request)


async def test_keep_alive_carries_the_next_request_but_a_refused_upgrade_closes_after_its_answer(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id, credential, token = await setup(api, member)

    async def refuse_upgrades(stream: TunnelStream) -> None:
        assert stream.request is not None
        if UPGRADE_HEADER in dict(stream.request.headers):
            body = b'{"kind":"Status","code":403}'
            await stream.respond(
                403, (("content-type", "application/json"), ("content-length", str(len(body))))
            )
            await stream.send(body, end_stream=True)
        else:
            await answer_json(stream)

    async with agent_connected(api.url, credential, proxied=refuse_upgrades):
        await wait_online(api, cluster_id, True)
        host, port = api.proxy_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        plain = f"GET /clusters/{cluster_id}{PODS} HTTP/1.1\r\nHost: x\r\n"
        auth = f"Authorization: Bearer {token}\r\n"
        async with asyncio.timeout(GUARD):
            for _ in range(2):  # one connection, two answers
                writer.write(f"{plain}{auth}\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 "), head
                assert b"transfer-encoding: chunked" in head.lower()
                assert await reader.readuntil(b"0\r\n\r\n") == b"2\r\n{}\r\n0\r\n\r\n"
            writer.write(
                (
                    f"GET /clusters/{cluster_id}/api/v1/namespaces/default/pods/web/exec"
                    f"?command=sh HTTP/1.1\r\nHost: x\r\n{auth}Connection: Upgrade\r\n"
                    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                ).encode()
            )
            answer = await reader.read()  # up to EOF: the proxy closes after the answer
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 "), head
    assert b"connection: close" in head.lower()
    assert body == b'{"kind":"Status","code":403}'


WATCH_EVENT = b'{"type":"ADDED","object":{}}\n'


def endless_watch(ended: asyncio.Event) -> Handler:
    """An agent handler answering a watch with one event, then holding the stream open
    until the gateway cancels it, which sets ``ended``."""

    async def watch(stream: TunnelStream) -> None:
        await stream.respond(200, (("content-type", "application/json"),))
        await stream.send(WATCH_EVENT)
        await stream.wait_dead()
        ended.set()

    return watch


@contextlib.asynccontextmanager
async def watching(api: Api, cluster_id: str, token: str) -> AsyncIterator[AsyncIterator[bytes]]:
    """A client watch through the proxy, open; yields its body's chunks, the first read."""
    async with httpx.AsyncClient(base_url=api.proxy_url, timeout=GUARD) as client:
        auth = {"Authorization": f"Bearer {token}"}
        url = f"/clusters/{cluster_id}{PODS}?watch=1"
        async with client.stream("GET", url, headers=auth) as response:
            assert response.status_code == 200
            chunks = response.aiter_raw()
            assert await anext(chunks) == WATCH_EVENT  # before the stream ended
            yield chunks


async def test_a_watch_is_streamed_and_closed_when_kubectl_goes_away(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id, credential, token = await setup(api, member)
    gone = asyncio.Event()
    async with agent_connected(api.url, credential, proxied=endless_watch(gone)):
        await wait_online(api, cluster_id, True)
        async with watching(api, cluster_id, token):
            pass
        async with asyncio.timeout(GUARD):
            await gone.wait()


async def test_revoke_all_closes_an_open_watch_and_the_agent_stream(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id, credential, token = await setup(api, member)
    cut = asyncio.Event()
    async with agent_connected(api.url, credential, proxied=endless_watch(cut)):
        await wait_online(api, cluster_id, True)
        async with watching(api, cluster_id, token) as chunks:
            revoked = await asyncio.to_thread(
                api.post, f"/api/v1/clusters/{cluster_id}/access/revoke-all"
            )
            assert revoked.status_code == 200
            started = time.monotonic()
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, StopAsyncIteration)):
                async with asyncio.timeout(GUARD):
                    await anext(chunks)
            closed_after = time.monotonic() - started
        async with asyncio.timeout(GUARD):
            await cut.wait()
    # Informational (not a speed assertion): printed with -s, recorded in the issue notes.
    print(f"watch closed {closed_after * 1000:.1f} ms after revoke-all answered")


async def test_a_paused_reader_holds_the_agent_back_instead_of_filling_memory(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id, credential, token = await setup(api, member)
    total = 1 << 30
    chunk = os.urandom(256 * 1024)
    sent = 0
    streams: list[TunnelStream] = []

    async def firehose(stream: TunnelStream) -> None:
        nonlocal sent
        assert stream.request is not None
        if "follow=true" not in stream.request.path:
            await answer_json(stream)  # a round trip through proxy and tunnel, see held_back
            return
        streams.append(stream)
        await stream.respond(200, (("content-type", "application/octet-stream"),))
        while sent < total:
            await stream.send(chunk)
            sent += len(chunk)
        await stream.end()

    async def held_back(agent: Agent, client: httpx.AsyncClient, auth: dict[str, str]) -> int:
        """Wait until flow control holds the agent back (kubectl reads nothing meanwhile):
        its window on the stream is shut, and stays shut over a round trip through the proxy
        and the tunnel (the gateway sends any credit it owes before that request's head).
        Answers what the agent had sent by then."""
        assert agent.connection is not None
        session = agent.connection.session
        async with asyncio.timeout(GUARD):
            while True:
                before = sent
                if streams and session.send_window(streams[0].stream_id) == 0:
                    barrier = await client.get(f"/clusters/{cluster_id}{PODS}", headers=auth)
                    assert barrier.status_code == 200, barrier.text
                    if sent == before and session.send_window(streams[0].stream_id) == 0:
                        return sent
                await asyncio.sleep(0.01)

    async with agent_connected(api.url, credential, proxied=firehose) as agent:
        await wait_online(api, cluster_id, True)
        async with httpx.AsyncClient(base_url=api.proxy_url, timeout=120) as client:
            auth = {"Authorization": f"Bearer {token}"}
            async with client.stream(
                "GET", f"/clusters/{cluster_id}{PODS}/web/log?follow=true", headers=auth
            ) as response:
                body = response.aiter_raw()
                received = len(await anext(body))
                before = rss_bytes()
                sent_while_paused = await held_back(agent, client, auth)
                grown = rss_bytes() - before
                async for data in body:
                    received += len(data)
    assert received == total
    # Bounded by flow control (4 MiB stream window, socket buffers), not by the 1 GiB offered.
    assert sent_while_paused < 64 * 1024 * 1024, sent_while_paused
    assert grown < 64 * 1024 * 1024, grown


async def test_an_attach_whose_client_went_away_is_cancelled_at_the_agent(
    api: Api, member: tuple[str, str]
) -> None:
    """An attach (or port-forward) upstream never ends by itself: when kubectl closes the
    connection, the gateway must end the stream, or it holds a stream slot for ever."""
    cluster_id, credential, token = await setup(api, member)
    cut = asyncio.Event()

    async def endless_attach(stream: TunnelStream) -> None:
        await stream.respond(200, ((UPGRADE_HEADER, "SPDY/3.1"),))
        await stream.wait_dead()
        cut.set()

    async with agent_connected(api.url, credential, proxied=endless_attach):
        await wait_online(api, cluster_id, True)
        host, port = api.proxy_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                f"POST /clusters/{cluster_id}/api/v1/namespaces/default/pods/web/attach"
                f"?stdout=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(GUARD):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        writer.close()  # kubectl quits
        await writer.wait_closed()
        async with asyncio.timeout(GUARD):
            await cut.wait()
