"""One side of the tunnel's HTTP/2 connection, sans-IO: bytes and calls in, events and bytes out.

The gateway is the HTTP/2 client and the agent the HTTP/2 server (DESIGN §5). This module
drives ``h2`` the way httpcore drives ``h11``: it never awaits and never touches a socket.
``transport.py`` feeds it what the WebSocket received (:meth:`TunnelSession.receive_data`)
and sends what :meth:`TunnelSession.data_to_send` returns.

It translates ``h2``'s events into the few this project uses, turns every ``h2`` protocol
failure into :class:`~kubegate.errors.TunnelProtocolError`, and keeps the heartbeat: a PING
every :data:`PING_INTERVAL` seconds, and a peer that leaves a PING unanswered for
:data:`PING_TIMEOUT` seconds is dead (time is passed in, so tests need no clock).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from kubegate.errors import TunnelProtocolError


def _data_frame_body_repr(frame: hyperframe.frame.DataFrame) -> str:
    return f"<{len(frame.data)} bytes>"


# h2 formats every frame it receives for a trace log (``repr(frame)``, evaluated even when
# nothing logs it), and hyperframe's repr of a DATA frame copies the payload and hex-encodes
# all of it before cutting it to 20 characters: 60 µs for a 64 KiB frame, about a tenth of
# the tunnel's CPU per byte relayed. Only the debug text changes: the length, not the bytes.
hyperframe.frame.DataFrame._body_repr = _data_frame_body_repr  # type: ignore[method-assign,assignment]

# Windows are opened only as the receiver consumes (``acknowledge``), so these bound what a
# slow reader can make the other side buffer: per stream, and for the whole connection.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_FRAME = 256 * 1024
# Watches are long-lived streams: one gateway may hold tens of thousands on one agent.
MAX_CONCURRENT_STREAMS = 1 << 20
MAX_HEADER_LIST = 256 * 1024
PING_INTERVAL = 2.0
PING_TIMEOUT = 5.0
# RFC 9113's initial connection window, which only a WINDOW_UPDATE can raise.
_DEFAULT_WINDOW = 65_535

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """The agent got a request head: a new stream."""

    stream_id: int
    method: str
    path: str
    headers: Headers
    end_stream: bool


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The gateway got the response head of one of its streams."""

    stream_id: int
    status: int
    headers: Headers
    end_stream: bool


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Body bytes; ``flow_length`` must be given back to :meth:`TunnelSession.acknowledge`
    once the bytes are consumed, or the peer stops sending."""

    stream_id: int
    data: bytes
    flow_length: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream (END_STREAM): no more data from it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream was cancelled (RST_STREAM), by the peer or by us."""

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


Event = (
    RequestReceived
    | ResponseReceived
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowOpened
    | ConnectionClosed
)


def _text(value: bytes | str) -> str:
    # Header bytes are ASCII in practice; latin-1 maps any byte and never fails.
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _split_headers(raw: list[tuple[bytes, bytes]] | None) -> tuple[dict[str, str], Headers]:
    pseudo: dict[str, str] = {}
    regular: list[tuple[str, str]] = []
    for name, value in raw or []:
        key, text = _text(name), _text(value)
        if key.startswith(":"):
            pseudo[key] = text
        else:
            regular.append((key, text))
    return pseudo, tuple(regular)


class _Connection(h2.connection.H2Connection):
    """h2's connection, counting open streams at most every :data:`COUNT_EVERY` new streams.

    h2 counts them by walking every stream it holds, on each new stream and on both sides,
    and that walk is also where it forgets closed streams. With 10 000 watches open it took
    three quarters of the gateway's and the agent's time (docs/benchmarks.md). Our stream
    limit is 2**20, so a count up to :data:`COUNT_EVERY` streams stale is safe, and closed
    streams are still forgotten, in batches.
    """

    COUNT_EVERY = 256

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self._counted = {"out": 0, "in": 0}
        self._counts = {"out": 0, "in": 0}

    def _count(self, side: str, walk: Callable[[], int]) -> int:
        calls = self._counted[side]
        self._counted[side] = calls + 1
        if calls % self.COUNT_EVERY == 0:
            self._counts[side] = walk()
        return self._counts[side]

    @property
    def open_outbound_streams(self) -> int:
        return self._count("out", lambda: int(super(_Connection, self).open_outbound_streams))

    @property
    def open_inbound_streams(self) -> int:
        return self._count("in", lambda: int(super(_Connection, self).open_inbound_streams))


class TunnelSession:
    """The HTTP/2 state of one tunnel connection, as gateway (client) or agent (server)."""

    def __init__(self, *, client: bool, now: float = 0.0, authority: str = "agent") -> None:
        self.client = client
        self.authority = authority
        config = h2.config.H2Configuration(client_side=client, header_encoding=None)
        self._h2 = _Connection(config)
        self._h2.initiate_connection()
        # Sent after the preface and applied when the peer acknowledges (h2 tracks that).
        self._h2.update_settings(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            }
        )
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self._last_ping_sent = now
        self._ping_outstanding: tuple[bytes, float] | None = None
        self._ping_count = 0
        self._closed = False

    # -- receiving ------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; answers the events they complete.

        Raises :class:`TunnelProtocolError` when the bytes break HTTP/2; the connection is
        then over (GOAWAY is queued in :meth:`data_to_send`).
        """
        try:
            raw_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._closed = True
            raise TunnelProtocolError(f"HTTP/2 protocol error from the peer: {exc}") from exc
        events: list[Event] = []
        for raw in raw_events:
            event = self._translate(raw, now)
            if event is not None:
                events.append(event)
        return events

    def _translate(self, raw: h2.events.Event, now: float) -> Event | None:
        if isinstance(raw, h2.events.RequestReceived):
            pseudo, headers = _split_headers(raw.headers)
            assert raw.stream_id is not None
            return RequestReceived(
                raw.stream_id,
                pseudo.get(":method", ""),
                pseudo.get(":path", ""),
                headers,
                raw.stream_ended is not None,
            )
        if isinstance(raw, h2.events.ResponseReceived):
            pseudo, headers = _split_headers(raw.headers)
            assert raw.stream_id is not None
            try:
                status = int(pseudo.get(":status", ""))
            except ValueError:
                status = 0
            return ResponseReceived(raw.stream_id, status, headers, raw.stream_ended is not None)
        if isinstance(raw, h2.events.DataReceived):
            assert raw.stream_id is not None and raw.data is not None
            return DataReceived(raw.stream_id, raw.data, raw.flow_controlled_length or 0)
        if isinstance(raw, h2.events.StreamEnded):
            assert raw.stream_id is not None
            return StreamEnded(raw.stream_id)
        if isinstance(raw, h2.events.StreamReset):
            assert raw.stream_id is not None
            return StreamReset(raw.stream_id, int(raw.error_code or 0))
        if isinstance(raw, h2.events.WindowUpdated):
            return WindowOpened(raw.stream_id or 0)
        if isinstance(raw, h2.events.RemoteSettingsChanged):
            # A larger initial window from the peer opens every stream at once.
            return WindowOpened(0)
        if isinstance(raw, h2.events.PingAckReceived):
            if self._ping_outstanding and raw.ping_data == self._ping_outstanding[0]:
                self._ping_outstanding = None
            return None
        if isinstance(raw, h2.events.ConnectionTerminated):
            self._closed = True
            reason = (raw.additional_data or b"").decode("utf-8", "replace")
            return ConnectionClosed(int(raw.error_code or 0), reason)
        if isinstance(raw, h2.events.TrailersReceived | h2.events.InformationalResponseReceived):
            # Neither side sends these; a peer that does gets them ignored, not obeyed.
            return None
        return None  # settings acks, pings (answered by h2), priority: nothing to do

    # -- sending --------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer, in order; empty when there is nothing."""
        return self._h2.data_to_send()

    def open_stream(
        self, method: str, path: str, headers: Headers, *, end_stream: bool = False
    ) -> int:
        """Gateway: start a request; answers its stream id."""
        stream_id = self._h2.get_next_available_stream_id()
        head = [
            (":method", method),
            (":scheme", "https"),
            (":authority", self.authority),
            (":path", path),
        ]
        self._send_headers(stream_id, [*head, *headers], end_stream)
        return stream_id

    def respond(
        self, stream_id: int, status: int, headers: Headers, *, end_stream: bool = False
    ) -> None:
        """Agent: send the response head of ``stream_id``."""
        self._send_headers(stream_id, [(":status", str(status)), *headers], end_stream)

    def _send_headers(self, stream_id: int, headers: list[tuple[str, str]], end: bool) -> None:
        try:
            self._h2.send_headers(stream_id, headers, end_stream=end)
        except (h2.exceptions.ProtocolError, ValueError) as exc:
            raise TunnelProtocolError(f"cannot send headers on stream {stream_id}: {exc}") from exc

    def send_window(self, stream_id: int) -> int:
        """How many bytes :meth:`send_data` can send on ``stream_id`` right now."""
        try:
            window = self._h2.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return 0
        return max(0, min(window, self._h2.max_outbound_frame_size * 16))

    def send_data(
        self, stream_id: int, data: bytes | memoryview, *, end_stream: bool = False
    ) -> int:
        """Send as much of ``data`` as the windows allow; answers how many bytes went.

        ``end_stream`` is honoured only when everything was sent.
        """
        sent = 0
        frame = self._h2.max_outbound_frame_size
        total = len(data)
        view = memoryview(data)
        try:
            while sent < total:
                window = self._h2.local_flow_control_window(stream_id)
                if window <= 0:
                    break
                size = min(window, frame, total - sent)
                last = end_stream and sent + size == total
                self._h2.send_data(stream_id, view[sent : sent + size].tobytes(), end_stream=last)
                sent += size
            if total == 0 and end_stream:
                self._h2.end_stream(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
            raise TunnelProtocolError(f"cannot send on stream {stream_id}: {exc}") from exc
        return sent

    def end_stream(self, stream_id: int) -> None:
        """Half-close our side of the stream (END_STREAM)."""
        try:
            self._h2.end_stream(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
            raise TunnelProtocolError(f"cannot end stream {stream_id}: {exc}") from exc

    def acknowledge(self, stream_id: int, flow_length: int) -> None:
        """The application consumed ``flow_length`` bytes of the stream: reopen the window."""
        if flow_length <= 0:
            return
        try:
            self._h2.acknowledge_received_data(flow_length, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            # The stream is gone: its bytes still count for the connection window.
            self._h2.increment_flow_control_window(flow_length)

    def reset(self, stream_id: int, error_code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        """Cancel a stream (RST_STREAM); a stream already closed is left alone."""
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, error_code)

    def close(self, reason: str = "", error_code: int = h2.errors.ErrorCodes.NO_ERROR) -> None:
        """Send GOAWAY with ``reason``; the connection is over."""
        if self._closed:
            return
        self._closed = True
        self._h2.close_connection(error_code, reason.encode("utf-8")[:512])

    @property
    def closed(self) -> bool:
        return self._closed

    # -- heartbeat ------------------------------------------------------------------

    def heartbeat(self, now: float) -> bool:
        """Call about every half second: sends the next PING when due, and answers False
        once the peer has left a PING unanswered for :data:`PING_TIMEOUT` seconds."""
        if self._closed:
            return True  # nothing to watch any more, and h2 refuses PINGs after GOAWAY
        if self._ping_outstanding is not None:
            return now - self._ping_outstanding[1] < PING_TIMEOUT
        if now - self._last_ping_sent >= PING_INTERVAL:
            self._ping_count += 1
            opaque = self._ping_count.to_bytes(8, "big")
            self._h2.ping(opaque)
            self._ping_outstanding = (opaque, now)
            self._last_ping_sent = now
        return True
