"""Tunnel protocol 2: kubegate's own stream framing, sans-IO, in place of HTTP/2.

The same contract as :class:`~kubegate.tunnel.session.TunnelSession` (protocol 1, HTTP/2 by
``h2``), with the same events and methods, so :class:`~kubegate.tunnel.transport.
TunnelConnection` drives either. It keeps what the tunnel needs from HTTP/2 and drops what it
does not (ADR 0003, ``docs/tunnel.md`` §3): every frame is a 10-byte head (type, flags,
stream id, payload length) and its payload.

- ``HEADERS`` opens a stream (gateway → agent: ``METHOD SP PATH``) or answers it (agent →
  gateway: the status), then one ``name NUL value`` line per header, lines joined by LF, in
  latin-1. Names go lower-case. A name or value with a LF or NUL cannot be sent.
- ``DATA`` carries body bytes, flow-controlled as in HTTP/2: each stream and the whole
  connection start with a fixed window (:data:`STREAM_WINDOW`, :data:`CONNECTION_WINDOW`;
  there is no SETTINGS frame), and the receiver sends ``WINDOW`` credit only as its reader
  consumes, a quarter of the window at a time.
- ``END_STREAM`` (flag) half-closes, ``RESET`` cancels, ``PING`` with a deadline is the
  heartbeat, ``GOAWAY`` closes the connection with a reason.

It is several times cheaper per request than ``h2``: no HPACK, no header validation beyond
what the tunnel needs, no SETTINGS and priority state. Measurements are in the ADR.
"""

from __future__ import annotations

import struct

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.session import (
    CONNECTION_WINDOW,
    MAX_FRAME,
    MAX_HEADER_LIST,
    PING_INTERVAL,
    PING_TIMEOUT,
    STREAM_WINDOW,
    ConnectionClosed,
    DataReceived,
    Event,
    Headers,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowOpened,
)

HEAD = struct.Struct("!BBII")
"""type, flags, stream id, payload length."""
U32 = struct.Struct("!I")

DATA = 0
HEADERS = 1
RESET = 3
PING = 6
GOAWAY = 7
WINDOW = 8
END_STREAM = 0x1
ACK = 0x1

NO_ERROR = 0
PROTOCOL_ERROR = 1
FLOW_CONTROL_ERROR = 3
CANCEL = 8

MAX_PAYLOAD = max(MAX_FRAME, MAX_HEADER_LIST)
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**32 - 1
MAX_REASON = 512


class _Stream:
    """What the session tracks of one open stream."""

    __slots__ = (
        "answered",
        "local_closed",
        "recv_window",
        "remote_closed",
        "send_window",
        "unacked",
    )

    def __init__(self) -> None:
        self.send_window = STREAM_WINDOW
        self.recv_window = STREAM_WINDOW
        self.unacked = 0
        self.local_closed = False
        self.remote_closed = False
        self.answered = False


def _encode_block(first: str, headers: Headers) -> bytes:
    text = "\n".join([first, *[f"{name.lower()}\0{value}" for name, value in headers]])
    try:
        block = text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise TunnelProtocolError(f"a header is not latin-1: {exc}") from exc
    count = len(headers)
    if block.count(b"\n") != count or block.count(b"\0") != count:
        raise TunnelProtocolError("a header name or value contains a line feed or NUL")
    if len(block) > MAX_HEADER_LIST:
        raise TunnelProtocolError(f"the headers exceed {MAX_HEADER_LIST // 1024} KiB")
    return block


def _decode_block(payload: bytes) -> tuple[str, Headers]:
    lines = payload.decode("latin-1").split("\n")
    if payload.count(b"\0") != len(lines) - 1:
        raise TunnelProtocolError("a HEADERS frame has a line that is not 'name NUL value'")
    headers = tuple(
        (name, value) for name, _, value in (line.partition("\0") for line in lines[1:])
    )
    return lines[0], headers


class FrameSession:
    """Protocol 2's state of one tunnel connection, as gateway (client) or agent (server)."""

    def __init__(self, *, client: bool, now: float = 0.0, authority: str = "agent") -> None:
        self.client = client
        self.authority = authority  # protocol 1 sends it; protocol 2 has no use for it
        self._streams: dict[int, _Stream] = {}
        self._out: list[bytes] = []
        self._buffer = b""
        self._next_id = 1
        self._last_peer_id = 0
        self._send_window = CONNECTION_WINDOW
        self._recv_window = CONNECTION_WINDOW
        self._unacked = 0
        self._last_ping_sent = now
        self._ping_outstanding: tuple[bytes, float] | None = None
        self._ping_count = 0
        self._closed = False

    # -- receiving ------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; answers the events they complete.

        Raises :class:`TunnelProtocolError` when the bytes break the protocol; the
        connection is then over (GOAWAY is queued in :meth:`data_to_send`).
        """
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        offset, end = 0, len(buffer)
        try:
            while end - offset >= HEAD.size:
                kind, flags, stream_id, length = HEAD.unpack_from(buffer, offset)
                if length > MAX_PAYLOAD:
                    raise TunnelProtocolError(f"a frame of {length} bytes exceeds the limit")
                start = offset + HEAD.size
                if end - start < length:
                    break
                offset = start + length
                payload = buffer[start:offset]
                if kind == DATA:
                    self._on_data(stream_id, flags, payload, events)
                elif kind == HEADERS:
                    self._on_headers(stream_id, flags, payload, events)
                elif kind == WINDOW:
                    self._on_window(stream_id, payload, events)
                elif kind == RESET:
                    self._on_reset(stream_id, payload, events)
                elif kind == PING:
                    self._on_ping(flags, payload)
                elif kind == GOAWAY:
                    self._on_goaway(payload, events)
                # Any other type is ignored, as HTTP/2 ignores unknown frame types.
        except TunnelProtocolError as exc:
            self._fail()
            raise TunnelProtocolError(f"tunnel protocol error from the peer: {exc}") from exc
        self._buffer = buffer[offset:] if offset < end else b""
        return events

    def _fail(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue(GOAWAY, 0, 0, U32.pack(PROTOCOL_ERROR) + b"protocol error")

    def _on_data(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if stream_id == 0:
            raise TunnelProtocolError("a DATA frame on stream 0")
        length = len(payload)
        self._recv_window -= length
        if self._recv_window < 0:
            raise TunnelProtocolError("the peer sent more than the connection window allows")
        stream = self._streams.get(stream_id)
        if stream is None:
            # A stream we reset or forgot: drop the bytes, give their credit back.
            self._credit_connection(length)
            return
        if stream.remote_closed:
            raise TunnelProtocolError(f"DATA on stream {stream_id} after its end")
        stream.recv_window -= length
        if stream.recv_window < 0:
            raise TunnelProtocolError(f"the peer sent more than stream {stream_id}'s window")
        if length:
            events.append(DataReceived(stream_id, payload, length))
        if flags & END_STREAM:
            self._remote_end(stream_id, stream, events)

    def _on_headers(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if stream_id == 0:
            raise TunnelProtocolError("a HEADERS frame on stream 0")
        stream = self._streams.get(stream_id)
        if stream is not None and (stream.answered or not self.client):
            # Trailers: neither side sends them; a peer that does gets them ignored.
            if stream.remote_closed:
                raise TunnelProtocolError(f"HEADERS on stream {stream_id} after its end")
            if flags & END_STREAM:
                self._remote_end(stream_id, stream, events)
            return
        end_stream = bool(flags & END_STREAM)
        if self.client:
            if stream is None:
                return  # the answer to a stream we reset
            first, headers = _decode_block(payload)
            try:
                status = int(first)
            except ValueError:
                status = 0
            stream.answered = True
            events.append(ResponseReceived(stream_id, status, headers, end_stream))
        else:
            if stream_id % 2 == 0:
                raise TunnelProtocolError(f"the gateway opened even stream {stream_id}")
            if stream_id <= self._last_peer_id:
                return  # a stream already closed
            self._last_peer_id = stream_id
            first, headers = _decode_block(payload)
            method, _, path = first.partition(" ")
            stream = self._streams[stream_id] = _Stream()
            events.append(RequestReceived(stream_id, method, path, headers, end_stream))
        if end_stream:
            self._remote_end(stream_id, stream, events)

    def _remote_end(self, stream_id: int, stream: _Stream, events: list[Event]) -> None:
        stream.remote_closed = True
        events.append(StreamEnded(stream_id))
        if stream.local_closed:
            del self._streams[stream_id]

    def _on_window(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise TunnelProtocolError("a WINDOW frame's payload is not 4 bytes")
        (increment,) = U32.unpack(payload)
        if increment == 0:
            return
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise TunnelProtocolError("the peer opened the connection window beyond 2**31-1")
            events.append(WindowOpened(0))
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            raise TunnelProtocolError(f"the peer opened stream {stream_id}'s window too far")
        events.append(WindowOpened(stream_id))

    def _on_reset(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise TunnelProtocolError("a RESET frame's payload is not 4 bytes")
        if self._streams.pop(stream_id, None) is not None:
            events.append(StreamReset(stream_id, U32.unpack(payload)[0]))

    def _on_ping(self, flags: int, payload: bytes) -> None:
        if len(payload) != 8:
            raise TunnelProtocolError("a PING frame's payload is not 8 bytes")
        if flags & ACK:
            if self._ping_outstanding and payload == self._ping_outstanding[0]:
                self._ping_outstanding = None
        elif not self._closed:
            self._queue(PING, ACK, 0, payload)

    def _on_goaway(self, payload: bytes, events: list[Event]) -> None:
        if len(payload) < 4:
            raise TunnelProtocolError("a GOAWAY frame's payload is shorter than 4 bytes")
        self._closed = True
        reason = payload[4 : 4 + MAX_REASON].decode("utf-8", "replace")
        events.append(ConnectionClosed(U32.unpack_from(payload)[0], reason))

    # -- sending --------------------------------------------------------------------

    def _queue(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        self._out.append(HEAD.pack(kind, flags, stream_id, len(payload)))
        if payload:
            self._out.append(payload)

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer, in order; empty when there is nothing."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _open(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            raise TunnelProtocolError(f"stream {stream_id} is closed")
        return stream

    def open_stream(
        self, method: str, path: str, headers: Headers, *, end_stream: bool = False
    ) -> int:
        """Gateway: start a request; answers its stream id."""
        if not self.client:
            raise TunnelProtocolError("only the gateway opens streams")
        if self._closed:
            raise TunnelProtocolError("the tunnel connection is closed")
        stream_id = self._next_id
        if stream_id > MAX_STREAM_ID:
            self.close("stream ids are used up")
            raise TunnelProtocolError("stream ids are used up: the tunnel reconnects")
        block = _encode_block(f"{method} {path}", headers)
        self._next_id += 2
        stream = self._streams[stream_id] = _Stream()
        stream.local_closed = end_stream
        self._queue(HEADERS, END_STREAM if end_stream else 0, stream_id, block)
        return stream_id

    def respond(
        self, stream_id: int, status: int, headers: Headers, *, end_stream: bool = False
    ) -> None:
        """Agent: send the response head of ``stream_id``."""
        stream = self._open(stream_id)
        if self.client or stream.answered:
            raise TunnelProtocolError(f"cannot send headers on stream {stream_id} twice")
        block = _encode_block(str(status), headers)
        stream.answered = True
        self._queue(HEADERS, END_STREAM if end_stream else 0, stream_id, block)
        if end_stream:
            self._local_end(stream_id, stream)

    def _local_end(self, stream_id: int, stream: _Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self._streams[stream_id]

    def send_window(self, stream_id: int) -> int:
        """How many bytes :meth:`send_data` can send on ``stream_id`` right now."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return 0
        return max(0, min(stream.send_window, self._send_window, MAX_FRAME * 16))

    def send_data(
        self, stream_id: int, data: bytes | memoryview, *, end_stream: bool = False
    ) -> int:
        """Send as much of ``data`` as the windows allow; answers how many bytes went.

        ``end_stream`` is honoured only when everything was sent.
        """
        stream = self._open(stream_id)
        total = len(data)
        if total == 0:
            if end_stream:
                self._queue(DATA, END_STREAM, stream_id, b"")
                self._local_end(stream_id, stream)
            return 0
        sent = 0
        view = memoryview(data)
        while sent < total:
            size = min(stream.send_window, self._send_window, MAX_FRAME, total - sent)
            if size <= 0:
                break
            if size == total and isinstance(data, bytes):
                chunk = data
            else:
                chunk = view[sent : sent + size].tobytes()
            sent += size
            stream.send_window -= size
            self._send_window -= size
            last = end_stream and sent == total
            self._queue(DATA, END_STREAM if last else 0, stream_id, chunk)
        if end_stream and sent == total:
            self._local_end(stream_id, stream)
        return sent

    def end_stream(self, stream_id: int) -> None:
        """Half-close our side of the stream (END_STREAM)."""
        stream = self._open(stream_id)
        self._queue(DATA, END_STREAM, stream_id, b"")
        self._local_end(stream_id, stream)

    def acknowledge(self, stream_id: int, flow_length: int) -> None:
        """The application consumed ``flow_length`` bytes of the stream: reopen the window
        (credit goes back a quarter of a window at a time)."""
        if flow_length <= 0:
            return
        self._credit_connection(flow_length)
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return  # no more data will come on it: no stream credit to give
        stream.unacked += flow_length
        if stream.unacked >= STREAM_WINDOW // 4:
            stream.recv_window += stream.unacked
            self._queue(WINDOW, 0, stream_id, U32.pack(stream.unacked))
            stream.unacked = 0

    def _credit_connection(self, length: int) -> None:
        self._unacked += length
        if self._unacked >= CONNECTION_WINDOW // 4 and not self._closed:
            self._recv_window += self._unacked
            self._queue(WINDOW, 0, 0, U32.pack(self._unacked))
            self._unacked = 0

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        """Cancel a stream (RESET); a stream already closed is left alone."""
        if self._closed or self._streams.pop(stream_id, None) is None:
            return
        self._queue(RESET, 0, stream_id, U32.pack(error_code))

    def close(self, reason: str = "", error_code: int = NO_ERROR) -> None:
        """Send GOAWAY with ``reason``; the connection is over."""
        if self._closed:
            return
        self._closed = True
        self._queue(GOAWAY, 0, 0, U32.pack(error_code) + reason.encode("utf-8")[:MAX_REASON])

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def open_streams(self) -> int:
        """Streams not yet closed both ways (for tests and diagnostics)."""
        return len(self._streams)

    # -- heartbeat ------------------------------------------------------------------

    def heartbeat(self, now: float) -> bool:
        """Call about every half second: sends the next PING when due, and answers False
        once the peer has left a PING unanswered for :data:`PING_TIMEOUT` seconds."""
        if self._closed:
            return True
        if self._ping_outstanding is not None:
            return now - self._ping_outstanding[1] < PING_TIMEOUT
        if now - self._last_ping_sent >= PING_INTERVAL:
            self._ping_count += 1
            opaque = self._ping_count.to_bytes(8, "big")
            self._queue(PING, 0, 0, opaque)
            self._ping_outstanding = (opaque, now)
            self._last_ping_sent = now
        return True
