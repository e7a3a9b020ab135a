"""Tunnel protocol 2's session state, sans-IO: kubegate's own stream framing (ADR 0003).

:class:`FrameSession` is one side of a tunnel connection, the gateway's (it opens streams) or
the agent's (it answers them); it implements :class:`~kubegate.tunnel.events.Session`, so
:class:`~kubegate.tunnel.transport.TunnelConnection` drives it, and its bytes are
``tunnel/wire.py``'s. It keeps what the tunnel needs from HTTP/2 (``docs/tunnel.md`` §2):
streams opened by HEADERS, half-closed by END_STREAM and cancelled by RESET; DATA
flow-controlled per stream and per connection from fixed windows, with WINDOW credit sent only
as the reader consumes, a quarter of a window at a time; a PING heartbeat; GOAWAY with a
reason. Without HPACK, header validation, SETTINGS and priorities it is several times cheaper
per request than HTTP/2 by ``h2`` (the ADR has the measurements).
"""

from __future__ import annotations

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.events import (
    CANCEL,
    NO_ERROR,
    PROTOCOL_ERROR,
    ConnectionClosed,
    DataReceived,
    Event,
    Headers,
    Heartbeat,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowOpened,
)
from kubegate.tunnel.wire import (
    ACK,
    CONNECTION_WINDOW,
    DATA,
    END_STREAM,
    GOAWAY,
    HEAD,
    HEADERS,
    MAX_FRAME,
    MAX_PAYLOAD,
    MAX_STREAM_ID,
    MAX_WINDOW,
    PING,
    RESET,
    STREAM_WINDOW,
    U32,
    WINDOW,
    decode_goaway,
    decode_request,
    decode_response,
    decode_u32,
    encode_block,
    encode_goaway,
)


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


class FrameSession:
    """Protocol 2's state of one tunnel connection, as gateway (client) or agent (server)."""

    @classmethod
    def gateway(cls, now: float = 0.0) -> FrameSession:
        """The gateway's side, which opens the streams (a ``SessionFactory``)."""
        return cls(client=True, now=now)

    @classmethod
    def agent(cls, now: float = 0.0) -> FrameSession:
        """The agent's side, which answers them (a ``SessionFactory``)."""
        return cls(client=False, now=now)

    def __init__(self, *, client: bool, now: float = 0.0) -> None:
        self.client = client
        self._streams: dict[int, _Stream] = {}
        self._out: list[bytes] = []
        self._buffer = b""
        self._next_id = 1
        self._last_peer_id = 0
        self._send_window = CONNECTION_WINDOW
        self._recv_window = CONNECTION_WINDOW
        self._unacked = 0
        self._heartbeat = Heartbeat(now)
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
            self._queue(GOAWAY, 0, 0, encode_goaway(PROTOCOL_ERROR, "protocol error"))

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
            status, headers = decode_response(payload)
            stream.answered = True
            events.append(ResponseReceived(stream_id, status, headers, end_stream))
        else:
            if stream_id % 2 == 0:
                raise TunnelProtocolError(f"the gateway opened even stream {stream_id}")
            if stream_id <= self._last_peer_id:
                return  # a stream already closed
            self._last_peer_id = stream_id
            method, path, headers = decode_request(payload)
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
        increment = decode_u32(payload, "WINDOW")
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
        error_code = decode_u32(payload, "RESET")
        if self._streams.pop(stream_id, None) is not None:
            events.append(StreamReset(stream_id, error_code))

    def _on_ping(self, flags: int, payload: bytes) -> None:
        if len(payload) != 8:
            raise TunnelProtocolError("a PING frame's payload is not 8 bytes")
        if flags & ACK:
            self._heartbeat.answered(payload)
        elif not self._closed:
            self._queue(PING, ACK, 0, payload)

    def _on_goaway(self, payload: bytes, events: list[Event]) -> None:
        error_code, reason = decode_goaway(payload)
        self._closed = True
        events.append(ConnectionClosed(error_code, reason))

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
        block = encode_block(f"{method} {path}", headers)
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
        block = encode_block(str(status), headers)
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
        """Send as much of ``data`` as the windows allow; answers how many bytes went
        (``end_stream`` is honoured only when everything was sent)."""
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
        self._queue(GOAWAY, 0, 0, encode_goaway(error_code, reason))

    @property
    def closed(self) -> bool:
        """GOAWAY was sent or received, or the peer broke the protocol."""
        return self._closed

    @property
    def open_streams(self) -> int:
        """Streams not yet closed both ways (for tests and diagnostics)."""
        return len(self._streams)

    def heartbeat(self, now: float) -> bool:
        """Call about every half second: sends the next PING when due, and answers False
        once the peer has left a PING unanswered for
        :data:`~kubegate.tunnel.events.PING_TIMEOUT` seconds."""
        if self._closed:
            return True
        if (opaque := self._heartbeat.due(now)) is not None:
            self._queue(PING, 0, 0, opaque)
        return self._heartbeat.alive(now)
