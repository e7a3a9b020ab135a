"""An HTTP/2 server state machine (``h2``, server side) standing in for kube-apiserver, wired
back to back with the agent's client (``agent/http2.py``) by shuttling bytes: no sockets."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

from kubegate.agent.http2 import Http2Session
from kubegate.tunnel.events import DataReceived, Event

DATA, SETTINGS = 0x0, 0x4
AUTHORITY = "apiserver.example:6443"


def frame(
    kind: int, flags: int, stream_id: int, payload: bytes, length: int | None = None
) -> bytes:
    """One raw HTTP/2 frame; ``length`` may lie about the payload."""
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload


def apiserver() -> h2.connection.H2Connection:
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    server.initiate_connection()
    return server


@dataclass
class Pair:
    """The agent's client and an HTTP/2 server (the apiserver's part) wired back to back."""

    client: Http2Session = field(default_factory=lambda: Http2Session(authority=AUTHORITY))
    server: h2.connection.H2Connection = field(default_factory=apiserver)
    now: float = 0.0

    def shuttle(self) -> tuple[list[Event], list[h2.events.Event]]:
        """Deliver bytes both ways until both are quiet; answers (client, server) events."""
        at_client: list[Event] = []
        at_server: list[h2.events.Event] = []
        while True:
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return at_client, at_server
            if to_server:
                at_server += self.server.receive_data(to_server)
            if to_client:
                at_client += self.client.receive_data(to_client, self.now)

    def answer(self, stream_id: int, status: int, body: bytes = b"") -> None:
        """The server answers ``stream_id`` with ``body`` and ends it."""
        self.server.send_headers(stream_id, [(":status", str(status))], end_stream=not body)
        if body:
            self.server.send_data(stream_id, body, end_stream=True)


def body(events: list[Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def flow(events: list[Event], stream_id: int) -> int:
    return sum(
        e.flow_length for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def joined_pair() -> Pair:
    joined = Pair()
    joined.shuttle()  # prefaces, settings, the connection window's WINDOW_UPDATE
    return joined
