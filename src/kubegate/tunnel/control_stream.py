"""The control stream: one long-lived HTTP/2 stream carrying control messages both ways.

The gateway opens it (``POST`` :data:`CONTROL_PATH`) right after the connection starts; each
message is one JSON object in one ``CONTROL`` record (``records.py``, ``control.py``).
"""

from __future__ import annotations

import asyncio
from collections import deque

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.control import ControlMessage, decode_message, encode_message
from kubegate.tunnel.records import DEFAULT_MAX_RECORD, RecordDecoder, RecordKind, encode_record
from kubegate.tunnel.transport import TunnelStream

CONTROL_PATH = "/kubegate/control"
SCHEMA_HEADER = "kubegate-control-schema"


class ControlStream:
    """Send and receive :data:`ControlMessage` values on a tunnel stream."""

    def __init__(self, stream: TunnelStream, *, max_record: int = DEFAULT_MAX_RECORD) -> None:
        self.stream = stream
        self._decoder = RecordDecoder(max_record)
        self._pending: deque[ControlMessage] = deque()
        self._max_record = max_record
        self._sending = asyncio.Lock()

    async def send(self, message: ControlMessage) -> None:
        """Send one message (waits for flow-control window when the peer is slow).

        Several tasks may send at once (desired sets, token requests and answers): one
        record goes out whole before the next starts, even when the window splits it.
        """
        record = encode_record(RecordKind.CONTROL, encode_message(message), self._max_record)
        async with self._sending:
            await self.stream.send(record)

    async def receive(self) -> ControlMessage | None:
        """The next message, or None when the peer ended the stream cleanly.

        Raises :class:`TunnelProtocolError` for anything that is not a well-formed control
        message (the caller closes the connection with that reason).
        """
        while not self._pending:
            chunk = await self.stream.receive()
            if not chunk:
                self._decoder.finish()
                return None
            for record in self._decoder.feed(chunk):
                if record.kind is not RecordKind.CONTROL:
                    raise TunnelProtocolError(
                        f"unexpected {record.kind.name} record on the control stream"
                    )
                self._pending.append(decode_message(record.payload))
        return self._pending.popleft()
