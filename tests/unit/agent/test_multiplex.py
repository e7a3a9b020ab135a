"""Shared HTTP/2 connections for watches: an apiserver that does not choose h2 turns them off.

(Against a real kube-apiserver, which does choose h2: ``tests/e2e/test_agent_proxy.py``.)
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubegate.agent.multiplex import SharedConnections
from kubegate.pki import CertificateAuthority

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http1_only_server(tmp_path: Path) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    """A TLS server offering ALPN http/1.1 only, and a client context trusting it."""
    ca = CertificateAuthority.create("test-ca")
    leaf = ca.issue("127.0.0.1", hosts=("127.0.0.1",), server=True)
    leaf.write(tmp_path / "tls.crt", tmp_path / "tls.key")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    server_ctx.set_alpn_protocols(["http/1.1"])
    accepted: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=server_ctx)
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    client_ctx.set_alpn_protocols(["h2"])
    try:
        yield server.sockets[0].getsockname()[1], client_ctx
    finally:
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


async def test_an_apiserver_without_http2_turns_shared_connections_off(
    http1_only_server: tuple[int, ssl.SSLContext],
) -> None:
    port, client_ctx = http1_only_server
    shared = SharedConnections("127.0.0.1", port, client_ctx, authority=f"127.0.0.1:{port}")
    try:
        async with shared.request("GET", "/api/v1/pods?watch=1", [("accept", "*/*")]) as answer:
            assert answer is None  # the caller uses HTTP/1.1 instead
        assert shared.available is False
        assert shared.connections_opened == 0
        # Decided once: no second connection is tried.
        async with shared.request("GET", "/api/v1/pods?watch=1", []) as answer:
            assert answer is None
    finally:
        await shared.aclose()


async def test_an_unreachable_apiserver_is_an_os_error_not_a_fallback() -> None:
    with socket_free_port() as port:
        shared = SharedConnections(
            "127.0.0.1", port, ssl.create_default_context(), authority="127.0.0.1"
        )
        with pytest.raises(OSError):
            async with shared.request("GET", "/", []):
                pass
        assert shared.available is True
        await shared.aclose()


class socket_free_port:  # noqa: N801  (used as a context manager)
    """A loopback port nobody listens on (bound, never listened, so connects are refused)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port: int = self._sock.getsockname()[1]
        return port

    def __exit__(self, *exc_info: object) -> None:
        self._sock.close()
