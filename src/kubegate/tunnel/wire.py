"""Tunnel protocol 2's wire format: the frame head, the frame types, the fixed windows and
limits, and the header block, with no state (``docs/tunnel.md`` §2, ADR 0003).

Every frame is a 10-byte head (:data:`HEAD`: type, flags, stream id, payload length) and its
payload. A HEADERS payload is a header block: a first line (``METHOD SP PATH`` on a request,
the status on a response), then one ``name NUL value`` line per header, lines joined by LF,
in latin-1. :class:`~kubegate.tunnel.frames.FrameSession` keeps the state.
"""

from __future__ import annotations

import struct

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.events import Headers

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

# Windows are opened only as the receiver consumes, so these bound what a slow reader can
# make the other side buffer: per stream, and for the whole connection. Fixed by the protocol
# version: there is no SETTINGS frame.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_FRAME = 256 * 1024
"""The largest DATA payload a sender puts in one frame."""
MAX_HEADER_LIST = 256 * 1024
"""The largest header block."""
MAX_PAYLOAD = max(MAX_FRAME, MAX_HEADER_LIST)
"""A frame head that declares more is refused before its payload is read."""
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**32 - 1
MAX_REASON = 512
"""GOAWAY reasons are cut to this many bytes."""


def encode_block(first: str, headers: Headers) -> bytes:
    """A header block; names go lower-case. Raises :class:`TunnelProtocolError` for a header
    that is not latin-1 or holds a LF or NUL, and for a block over :data:`MAX_HEADER_LIST`."""
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


def decode_block(payload: bytes) -> tuple[str, Headers]:
    """The first line and the headers of a header block; raises :class:`TunnelProtocolError`
    for a header line without NUL."""
    lines = payload.decode("latin-1").split("\n")
    if payload.count(b"\0") != len(lines) - 1:
        raise TunnelProtocolError("a HEADERS frame has a line that is not 'name NUL value'")
    headers = tuple(
        (name, value) for name, _, value in (line.partition("\0") for line in lines[1:])
    )
    return lines[0], headers


def decode_request(payload: bytes) -> tuple[str, str, Headers]:
    """A request's header block: method, path, headers."""
    first, headers = decode_block(payload)
    method, _, path = first.partition(" ")
    return method, path, headers


def decode_response(payload: bytes) -> tuple[int, Headers]:
    """A response's header block: the status (0 if it is not a number), headers."""
    first, headers = decode_block(payload)
    try:
        return int(first), headers
    except ValueError:
        return 0, headers


def decode_u32(payload: bytes, frame: str) -> int:
    """The payload of a RESET or WINDOW frame: one u32."""
    if len(payload) != 4:
        raise TunnelProtocolError(f"a {frame} frame's payload is not 4 bytes")
    value: int = U32.unpack(payload)[0]
    return value


def encode_goaway(error_code: int, reason: str) -> bytes:
    """A GOAWAY payload: the error code, then the reason in UTF-8, cut to :data:`MAX_REASON`
    bytes."""
    return U32.pack(error_code) + reason.encode("utf-8")[:MAX_REASON]


def decode_goaway(payload: bytes) -> tuple[int, str]:
    """A GOAWAY payload's error code and reason."""
    if len(payload) < 4:
        raise TunnelProtocolError("a GOAWAY frame's payload is shorter than 4 bytes")
    error_code: int = U32.unpack_from(payload)[0]
    return error_code, payload[4 : 4 + MAX_REASON].decode("utf-8", "replace")
