"""The agent's HTTP/2 client for kube-apiserver, sans-IO: bytes and calls in, events and bytes out.

``agent/multiplex.py`` carries watches and followed logs on a few shared HTTP/2 connections
to the apiserver. It drives this session with the tunnel's own
:class:`~kubegate.tunnel.transport.TunnelConnection` over a TLS stream, so the session
implements :class:`~kubegate.tunnel.events.Session` and reports the tunnel's events: flow
control opened only as a body is relayed, RST_STREAM for a cancelled watch, and the same PING
heartbeat. It drives ``h2`` the way httpcore drives ``h11``: it never awaits and never touches
a socket, and it turns every ``h2`` protocol failure into
:class:`~kubegate.errors.TunnelProtocolError`.

Only the client side exists: the agent opens streams, the apiserver answers them, and server
push is turned off. The tunnel itself no longer speaks HTTP/2 (ADR 0004). Only public ``h2``
API is used, so ``h2`` needs no upper bound. ``h2`` formats every frame it receives for a
trace log even when nothing logs it, and for a DATA frame that hex-encodes the payload: about
2 µs for a watch event's frame, 1 to 2 µs per KiB for larger ones. The frames here are watch
events and log lines, so that is left alone (it used to be patched out for every process,
when the tunnel's own 64 KiB frames went through ``h2``).
"""

from __future__ import annotations

import contextlib

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.events import (
    CANCEL,
    NO_ERROR,
    ConnectionClosed,
    DataReceived,
    Event,
    Headers,
    Heartbeat,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowOpened,
)

# Windows are opened only as the body is relayed (``acknowledge``), so these bound what a
# slow kubectl can make the agent buffer of one watch, and of one connection's watches.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_FRAME = 256 * 1024
MAX_HEADER_LIST = 256 * 1024
# RFC 9113's initial connection window, which only a WINDOW_UPDATE can raise.
_DEFAULT_WINDOW = 65_535


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


class Http2Session:
    """The client's HTTP/2 state of one connection to the apiserver."""

    def __init__(self, *, authority: str, now: float = 0.0) -> None:
        self.authority = authority
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config)
        self._h2.initiate_connection()
        # Sent after the preface and applied when the peer acknowledges (h2 tracks that).
        self._h2.update_settings(
            {
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            }
        )
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self._heartbeat = Heartbeat(now)
        self._closed = False

    # -- receiving ------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the apiserver; answers the events they complete.

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
            event = self._translate(raw)
            if event is not None:
                events.append(event)
        return events

    def _translate(self, raw: h2.events.Event) -> Event | None:
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
            if raw.ping_data is not None:
                self._heartbeat.answered(raw.ping_data)
            return None
        if isinstance(raw, h2.events.ConnectionTerminated):
            self._closed = True
            reason = (raw.additional_data or b"").decode("utf-8", "replace")
            return ConnectionClosed(int(raw.error_code or 0), reason)
        # Trailers and informational responses (the agent asks for neither) are ignored, not
        # obeyed; settings acks, pings (answered by h2) and priority need nothing.
        return None

    # -- sending --------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the apiserver, in order; empty when there is nothing."""
        return self._h2.data_to_send()

    def open_stream(
        self, method: str, path: str, headers: Headers, *, end_stream: bool = False
    ) -> int:
        """Start a request; answers its stream id."""
        stream_id = self._h2.get_next_available_stream_id()
        head = [
            (":method", method),
            (":scheme", "https"),
            (":authority", self.authority),
            (":path", path),
        ]
        try:
            self._h2.send_headers(stream_id, [*head, *headers], end_stream=end_stream)
        except (h2.exceptions.ProtocolError, ValueError) as exc:
            raise TunnelProtocolError(f"cannot send headers on stream {stream_id}: {exc}") from exc
        return stream_id

    def respond(
        self, stream_id: int, status: int, headers: Headers, *, end_stream: bool = False
    ) -> None:
        """Refused: the apiserver answers, never the agent."""
        raise TunnelProtocolError(f"the agent's HTTP/2 client cannot answer stream {stream_id}")

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
        """Send as much of ``data`` as the windows allow; answers how many bytes went
        (``end_stream`` is honoured only when everything was sent)."""
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

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        """Cancel a stream (RST_STREAM); a stream already closed is left alone."""
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, error_code)

    def close(self, reason: str = "", error_code: int = NO_ERROR) -> None:
        """Send GOAWAY with ``reason``; the connection is over."""
        if self._closed:
            return
        self._closed = True
        self._h2.close_connection(error_code, reason.encode("utf-8")[:512])

    @property
    def closed(self) -> bool:
        """GOAWAY was sent or received, or the peer broke HTTP/2."""
        return self._closed

    def heartbeat(self, now: float) -> bool:
        """Call about every half second: sends the next PING when due, and answers False
        once the peer has left a PING unanswered for
        :data:`~kubegate.tunnel.events.PING_TIMEOUT` seconds."""
        if self._closed:
            return True  # nothing to watch any more, and h2 refuses PINGs after GOAWAY
        if (opaque := self._heartbeat.due(now)) is not None:
            self._h2.ping(opaque)
        return self._heartbeat.alive(now)
