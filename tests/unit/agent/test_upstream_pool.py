"""The agent's :class:`Upstream` against a scripted TLS HTTP/1.1 server on loopback: which
connections are kept, which are closed, and upgrades.

(Against a real kube-apiserver: ``tests/e2e/test_agent_proxy.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from kubegate.agent.connection import UpstreamUnavailable
from kubegate.agent.credentials import ApiServer, StaticAuthorization
from kubegate.agent.upstream import Upstream
from kubegate.pki import CertificateAuthority

pytestmark = pytest.mark.anyio

GUARD = 10.0  # a guard against hangs, never a speed assertion

# The server's answer to one request head; it may also close the connection itself.
Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bytes]]


class ScriptedApiserver:
    """Answers every request with ``answer(request_head)``; counts the connections."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.accepted = 0
        self.requests: list[bytes] = []
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.requests.append(head)
                lower = head.lower()
                if b"transfer-encoding: chunked" in lower:
                    self.bodies.append(await reader.readuntil(b"0\r\n\r\n"))
                answer = await self.answer(head, writer)
                writer.write(answer)
                await writer.drain()
                if answer.startswith(b"HTTP/1.1 101 "):  # an echo of four bytes, then the end
                    writer.write(await reader.readexactly(4))
                    await writer.drain()
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def serving(
    answer: Answer, tmp_path: Path
) -> AsyncIterator[tuple[Upstream, ScriptedApiserver]]:
    ca = CertificateAuthority.create("test-ca")
    leaf = ca.issue("127.0.0.1", hosts=("127.0.0.1",), server=True)
    leaf.write(tmp_path / "tls.crt", tmp_path / "tls.key")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    apiserver = ScriptedApiserver(answer)
    server = await asyncio.start_server(apiserver.handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    client_ctx.set_alpn_protocols(["http/1.1"])
    upstream = Upstream(
        ApiServer.from_url(f"https://127.0.0.1:{port}"), client_ctx, StaticAuthorization(None)
    )
    try:
        async with asyncio.timeout(GUARD):
            yield upstream, apiserver
    finally:
        await upstream.aclose()
        server.close()
        await server.wait_closed()


async def get(upstream: Upstream, method: str = "GET", path: str = "/version") -> bytes:
    """One request, its whole body."""
    body = bytearray()

    async def keep(data: bytes) -> None:
        body.extend(data)

    async with upstream.request(method, path, [("host", "apiserver")], None) as answer:
        await answer.relay_body(keep)
    return bytes(body)


def fixed(answer: bytes) -> Answer:
    async def respond(head: bytes, writer: asyncio.StreamWriter) -> bytes:
        del head, writer
        return answer

    return respond


async def test_sequential_requests_reuse_one_connection(tmp_path: Path) -> None:
    answer = fixed(b'HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{"gitVersion":""}')
    async with serving(answer, tmp_path) as (upstream, apiserver):
        for _ in range(20):
            assert await get(upstream) == b'{"gitVersion":""}'

    assert (apiserver.accepted, upstream.connections_opened) == (1, 1)


async def test_chunked_answers_read_to_the_end_keep_the_connection(tmp_path: Path) -> None:
    answer = fixed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with serving(answer, tmp_path) as (upstream, apiserver):
        for _ in range(5):
            assert await get(upstream) == b"hello"

    assert apiserver.accepted == 1


async def test_head_no_content_and_not_modified_answers_keep_the_connection(
    tmp_path: Path,
) -> None:
    async def respond(head: bytes, writer: asyncio.StreamWriter) -> bytes:
        del writer
        if head.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
        if b"/gone" in head:
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        if b"/same" in head:
            return b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5000\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async with serving(respond, tmp_path) as (upstream, apiserver):
        async with upstream.request("HEAD", "/x", [], None) as answer:
            assert (answer.status, answer.content_length) == (200, 5000)
        async with upstream.request("DELETE", "/gone", [], None) as answer:
            assert answer.status == 204
        async with upstream.request("GET", "/same", [], None) as answer:
            assert answer.status == 304
        assert await get(upstream) == b"ok"

    assert apiserver.accepted == 1


async def test_an_answer_that_says_close_is_not_reused(tmp_path: Path) -> None:
    answer = fixed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    async with serving(answer, tmp_path) as (upstream, apiserver):
        assert await get(upstream) == b"ok"
        assert await get(upstream) == b"ok"

    assert apiserver.accepted == 2


async def test_an_answer_not_read_to_the_end_closes_its_connection(tmp_path: Path) -> None:
    answer = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
    async with serving(answer, tmp_path) as (upstream, apiserver):
        async with upstream.request("GET", "/version", [], None) as response:
            assert response.status == 200  # kubectl went away before the body
        assert await get(upstream) == b"0123456789"

    assert apiserver.accepted == 2


async def test_a_pooled_connection_the_apiserver_closed_is_retried_once(tmp_path: Path) -> None:
    async def respond(head: bytes, writer: asyncio.StreamWriter) -> bytes:
        del head
        # The apiserver's idle timeout: it closes right after this answer, unannounced.
        asyncio.get_running_loop().call_soon(writer.transport.abort)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async with serving(respond, tmp_path) as (upstream, apiserver):
        assert await get(upstream) == b"ok"
        assert await get(upstream) == b"ok"

    assert apiserver.accepted == 2


async def test_a_streamed_request_body_goes_out_chunked(tmp_path: Path) -> None:
    answer = fixed(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")

    async def body() -> AsyncIterator[bytes]:
        yield b'{"metadata":'
        yield b'{"name":"x"}}'

    async with (
        serving(answer, tmp_path) as (upstream, apiserver),
        upstream.request("POST", "/api/v1/configmaps", [], body()) as response,
    ):
        assert response.status == 201
        assert await response.read_small() == b"{}"

    assert b"Transfer-Encoding: chunked\r\n" in apiserver.requests[0]
    assert apiserver.bodies == [b'c\r\n{"metadata":\r\nd\r\n{"name":"x"}}\r\n0\r\n\r\n']


async def test_an_upgrade_relays_the_bytes_that_came_with_the_101_and_then_both_ways(
    tmp_path: Path,
) -> None:
    async def respond(head: bytes, writer: asyncio.StreamWriter) -> bytes:
        del head, writer
        # The head and the upgraded protocol's first bytes in one write.
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\n"
            b"Connection: Upgrade\r\n\r\nfirst-frame"
        )

    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    from_tunnel = iter([b"pi", b"ng", b""])

    async def receive() -> bytes:
        return next(from_tunnel)

    async with serving(respond, tmp_path) as (upstream, apiserver):
        headers = [("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]
        connection = await upstream.open_upgrade(
            "POST", "/api/v1/namespaces/a/pods/p/exec", headers
        )
        try:
            assert (connection.status, connection.switched) == (101, True)
            assert ("upgrade", "SPDY/3.1") in connection.headers
            await connection.feed_upgraded(receive)
            await connection.relay_upgraded(send, read_size=64 * 1024)  # until the server's EOF
        finally:
            await connection.close()

    assert b"".join(sent) == b"first-frameping"
    assert apiserver.requests[0].startswith(b"POST /api/v1/namespaces/a/pods/p/exec HTTP/1.1")


async def test_an_unreachable_apiserver_is_unavailable() -> None:
    with socket_nobody_listens_on() as port:
        upstream = Upstream(
            ApiServer.from_url(f"http://127.0.0.1:{port}"), None, StaticAuthorization(None)
        )
        with pytest.raises(UpstreamUnavailable, match="[Cc]onnect"):
            await get(upstream)
        with pytest.raises(UpstreamUnavailable, match="[Cc]onnect"):
            await upstream.open_upgrade("GET", "/exec", [])
        await upstream.aclose()


async def test_an_apiserver_that_answers_nothing_is_unavailable(tmp_path: Path) -> None:
    async def respond(head: bytes, writer: asyncio.StreamWriter) -> bytes:
        del head
        writer.write_eof() if writer.can_write_eof() else writer.close()
        return b""

    async with serving(respond, tmp_path) as (upstream, _):
        with pytest.raises(UpstreamUnavailable, match="without an answer"):
            await get(upstream)


@contextlib.contextmanager
def socket_nobody_listens_on() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
        yield sock.getsockname()[1]
