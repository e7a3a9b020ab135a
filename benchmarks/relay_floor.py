"""The floor of a two-process Python path: one hop of a byte relay, as a process of its own.

The proxy benchmark runs two of these in a chain (``relay-floor``), in the topology kubegate
has: the client's TLS connection ends in a first process (the gateway's place), which opens
a TLS connection to a second process (the agent's place), which opens a TLS connection to
kube-apiserver with the admin's client certificate. Every client connection gets its own
connection at each hop, and bytes are copied as they arrive: no HTTP parsing, no
multiplexing, no authentication, nothing kubegate does. It is what the cheapest conceivable
Python implementation of the topology costs, so kubegate's numbers can be read against it
(``docs/benchmarks.md``). The generator sends the impersonation headers itself, so the
apiserver does the same work as on kubegate's path.

``python -m benchmarks.relay_floor --port P --cert C --key K --upstream HOST:PORT
--upstream-ca CA [--client-cert C --client-key K]``; it prints ``ready`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from typing import cast

import uvloop

# Pause reading one side once this much waits to be written to the other.
HIGH_WATER = 1 << 20


class Half(asyncio.Protocol):
    """One side of a relayed connection: what it receives goes to its peer's transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Half | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport has a Transport's methods without being a subclass.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
            return
        peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def serve(arguments: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    listen = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    listen.load_cert_chain(arguments.cert, arguments.key)
    listen.set_alpn_protocols(["http/1.1"])
    upstream = ssl.create_default_context(cafile=arguments.upstream_ca)
    if arguments.client_cert:
        upstream.load_cert_chain(arguments.client_cert, arguments.client_key)
    upstream.set_alpn_protocols(["http/1.1"])
    host, _, port = arguments.upstream.rpartition(":")
    tasks: set[asyncio.Task[None]] = set()

    async def connect(front: Half) -> None:
        try:
            _, back = await loop.create_connection(
                Half, host, int(port), ssl=upstream, server_hostname=host
            )
        except OSError:
            if front.transport is not None:
                front.transport.close()
            return
        assert isinstance(back, Half) and back.transport is not None
        front.peer, back.peer = back, front
        for data in front.pending:
            back.transport.write(data)
        front.pending.clear()
        if front.closed:
            back.transport.close()

    def accepted() -> Half:
        front = Half()
        task = loop.create_task(connect(front))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return front

    server = await loop.create_server(
        accepted, "127.0.0.1", arguments.port, ssl=listen, backlog=1024
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the next hop")
    parser.add_argument("--upstream-ca", required=True)
    parser.add_argument("--client-cert")
    parser.add_argument("--client-key")
    arguments = parser.parse_args()
    try:
        uvloop.run(serve(arguments))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
