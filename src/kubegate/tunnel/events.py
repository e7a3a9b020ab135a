"""What a sans-IO stream session reports, what it is asked to do, and its heartbeat.

:class:`~kubegate.tunnel.transport.TunnelConnection` drives any :class:`Session`: the tunnel's
(:class:`~kubegate.tunnel.frames.FrameSession`, protocol 2) and the agent's HTTP/2 client for
kube-apiserver (:class:`~kubegate.agent.http2.Http2Session`). Both report the events below,
count error codes as HTTP/2 does (RFC 9113 §7), and keep the same :class:`Heartbeat` (time
is passed in, so tests need no clock). No wire format lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

PING_INTERVAL = 2.0
PING_TIMEOUT = 5.0

# HTTP/2's error codes, which protocol 2 reuses on the wire.
NO_ERROR = 0
PROTOCOL_ERROR = 1
REFUSED_STREAM = 7
CANCEL = 8

Headers: TypeAlias = Sequence[tuple[str, str]]
"""A header list: (name, value) pairs in order, repeats kept; the one alias both ends use."""


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """The answering side got a request head: a new stream."""

    stream_id: int
    method: str
    path: str
    headers: Headers
    end_stream: bool


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The opening side got the response head of one of its streams."""

    stream_id: int
    status: int
    headers: Headers
    end_stream: bool


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Body bytes; ``flow_length`` must be given back to :meth:`Session.acknowledge` once
    the bytes are consumed, or the peer stops sending."""

    stream_id: int
    data: bytes
    flow_length: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream (END_STREAM): no more data from it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream was cancelled (a RESET), by the peer or by us."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """Send credit grew; ``stream_id`` 0 means the whole connection."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer sent GOAWAY: the connection is over."""

    error_code: int
    reason: str


Event: TypeAlias = (
    RequestReceived
    | ResponseReceived
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowOpened
    | ConnectionClosed
)


class Heartbeat:
    """The PING schedule both sessions keep: a PING every :data:`PING_INTERVAL` seconds, at
    most one unanswered, and the peer is dead once one stays unanswered for
    :data:`PING_TIMEOUT` seconds."""

    __slots__ = ("_count", "_last_sent", "_outstanding")

    def __init__(self, now: float) -> None:
        self._last_sent = now
        self._outstanding: tuple[bytes, float] | None = None
        self._count = 0

    def due(self, now: float) -> bytes | None:
        """The 8 opaque bytes of the PING to send now, if one is due (it is then the one
        outstanding)."""
        if self._outstanding is not None or now - self._last_sent < PING_INTERVAL:
            return None
        self._count += 1
        opaque = self._count.to_bytes(8, "big")
        self._outstanding = (opaque, now)
        self._last_sent = now
        return opaque

    def answered(self, opaque: bytes) -> None:
        """The peer acknowledged a PING with these bytes."""
        if self._outstanding is not None and opaque == self._outstanding[0]:
            self._outstanding = None

    def alive(self, now: float) -> bool:
        """False once the outstanding PING is :data:`PING_TIMEOUT` seconds old."""
        return self._outstanding is None or now - self._outstanding[1] < PING_TIMEOUT


class Session(Protocol):
    """One side of a connection of streams, sans-IO: bytes and calls in, events and bytes
    out; never awaits. A call the side cannot make (the answering side opening a stream)
    and bytes that break the protocol raise :class:`~kubegate.errors.TunnelProtocolError`."""

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; answers the events they complete. After a
        :class:`~kubegate.errors.TunnelProtocolError` the session is closed (a GOAWAY is
        queued)."""
        ...

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer, in order; empty when there is nothing."""
        ...

    def open_stream(
        self, method: str, path: str, headers: Headers, *, end_stream: bool = False
    ) -> int:
        """The opening side: start a request; answers its stream id."""
        ...

    def respond(
        self, stream_id: int, status: int, headers: Headers, *, end_stream: bool = False
    ) -> None:
        """The answering side: send the response head of ``stream_id``."""
        ...

    def send_window(self, stream_id: int) -> int:
        """How many bytes :meth:`send_data` can send on ``stream_id`` right now."""
        ...

    def send_data(
        self, stream_id: int, data: bytes | memoryview, *, end_stream: bool = False
    ) -> int:
        """Send as much of ``data`` as the windows allow; answers how many bytes went
        (``end_stream`` is honoured only when everything was sent)."""
        ...

    def end_stream(self, stream_id: int) -> None:
        """Half-close our side of the stream (END_STREAM)."""
        ...

    def acknowledge(self, stream_id: int, flow_length: int) -> None:
        """The application consumed ``flow_length`` bytes of the stream: reopen the window."""
        ...

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        """Cancel a stream; a stream already closed is left alone."""
        ...

    def close(self, reason: str = "", error_code: int = NO_ERROR) -> None:
        """Send GOAWAY with ``reason``; the connection is over."""
        ...

    @property
    def closed(self) -> bool:
        """GOAWAY was sent or received, or the peer broke the protocol."""
        ...

    def heartbeat(self, now: float) -> bool:
        """Call about every half second: sends the next PING when due, and answers False
        once the peer has left a PING unanswered for :data:`PING_TIMEOUT` seconds."""
        ...


SessionFactory: TypeAlias = Callable[[float], Session]
"""Makes a connection's session, given the connection's clock at the start (the heartbeat
counts from it)."""
