"""Length-prefixed records: message boundaries that survive HTTP/2's re-chunking.

An HTTP/2 stream is a byte stream: DATA frames may split or merge whatever the sender wrote.
Streams that carry messages (the control stream, upgraded exec/port-forward streams) therefore
carry a sequence of records, each a 5-byte header (1 byte kind, 4 bytes big-endian unsigned
payload length) followed by the payload. Pure: bytes in, records out, no I/O.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from kubegate.errors import TunnelProtocolError

HEADER_SIZE = 5
DEFAULT_MAX_RECORD = 32 * 1024 * 1024
_MAX_ENCODABLE = 0xFFFF_FFFF
_HEADER = struct.Struct(">BI")


class RecordKind(enum.IntEnum):
    """What a record's payload is; the first byte of its header."""

    CONTROL = 1  # one JSON control message (control.py)
    DATA = 2  # opaque bytes (upgraded-stream payload)
    CLOSE = 3  # orderly end of the message flow; payload is a UTF-8 reason, possibly empty


_KINDS_BY_BYTE = {int(kind): kind for kind in RecordKind}


@dataclass(frozen=True, slots=True)
class Record:
    """One whole record, as the sender wrote it."""

    kind: RecordKind
    payload: bytes


def _check_limit(max_size: int) -> None:
    if not 0 <= max_size <= _MAX_ENCODABLE:
        raise ValueError(f"max_size must be between 0 and {_MAX_ENCODABLE}; got {max_size}")


def _too_large(size: int, max_size: int) -> TunnelProtocolError:
    return TunnelProtocolError(
        f"record of {size} bytes exceeds the {max_size}-byte limit",
        details={"size": size, "limit": max_size},
    )


def encode_record(kind: RecordKind, payload: bytes, max_size: int = DEFAULT_MAX_RECORD) -> bytes:
    """The wire bytes of one record: header then payload.

    Raises TunnelProtocolError if ``payload`` is larger than ``max_size`` (the peer would refuse
    it), so a sender finds out before it writes anything.
    """
    _check_limit(max_size)
    if len(payload) > max_size:
        raise _too_large(len(payload), max_size)
    return _HEADER.pack(kind, len(payload)) + payload


class RecordDecoder:
    """Incremental: bytes in (any chunking), whole records out.

    A header is checked as soon as it arrives: an unknown kind or a declared length above
    ``max_size`` fails before any of the body is buffered, so a peer cannot make us hold more
    than ``max_size + HEADER_SIZE`` bytes. After an error the decoder stays failed: the stream
    has lost its framing and nothing after the error can be trusted.
    """

    __slots__ = ("_buffer", "_error", "_max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_RECORD) -> None:
        _check_limit(max_size)
        self._max_size = max_size
        self._buffer = bytearray()
        self._error: TunnelProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete record."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Record]:
        """Add ``data``; return every record it completes, in order.

        Raises TunnelProtocolError on an unknown kind byte or an oversized declared length.
        """
        self._raise_if_failed()
        buffer = self._buffer
        buffer += data
        records: list[Record] = []
        position = 0
        end = len(buffer)
        try:
            with memoryview(buffer) as view:
                while position < end:
                    kind = self._check_kind(buffer[position])
                    if end - position < HEADER_SIZE:
                        break
                    _, size = _HEADER.unpack_from(buffer, position)
                    if size > self._max_size:
                        raise _too_large(size, self._max_size)
                    body_end = position + HEADER_SIZE + size
                    if body_end > end:
                        break
                    records.append(Record(kind, bytes(view[position + HEADER_SIZE : body_end])))
                    position = body_end
        except TunnelProtocolError as exc:
            self._fail(exc)
            raise
        del buffer[:position]
        return records

    def finish(self) -> None:
        """Check, at the end of the stream, that no partial record is left.

        Raises TunnelProtocolError naming how much of the record arrived.
        """
        self._raise_if_failed()
        held = len(self._buffer)
        if held == 0:
            return
        if held < HEADER_SIZE:
            error = TunnelProtocolError(
                f"truncated record header: got {held} of {HEADER_SIZE} bytes"
            )
        else:
            _, size = _HEADER.unpack_from(self._buffer, 0)
            error = TunnelProtocolError(
                f"truncated record: got {held - HEADER_SIZE} of {size} bytes",
                details={"received": held - HEADER_SIZE, "size": size},
            )
        self._fail(error)
        raise error

    @staticmethod
    def _check_kind(byte: int) -> RecordKind:
        kind = _KINDS_BY_BYTE.get(byte)
        if kind is None:
            raise TunnelProtocolError(f"unknown record kind {byte}", details={"kind": byte})
        return kind

    def _fail(self, error: TunnelProtocolError) -> None:
        self._error = error
        self._buffer.clear()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise TunnelProtocolError(
                f"record stream already failed: {self._error.message}",
                details=self._error.details,
            )
