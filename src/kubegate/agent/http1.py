"""The agent's HTTP/1.1 from kube-apiserver, sans-IO: ``httptools`` parses its answers.

The same shape as the gateway's listener (``gateway/http1.py``, h11's): bytes in
(:meth:`ResponseParser.receive_data`, ``b""`` at EOF), events out
(:meth:`~ResponseParser.next_event`: :class:`Response`, :class:`Data`, :class:`EndOfMessage`,
:data:`NEED_DATA`, :class:`ConnectionClosed`); the requests it answers are written by
``request_head.py``. llhttp (in C) parses a head and de-chunks a chunked body: the agent's
hot path, every proxied GET, with no regex per answer.

What it guards and decides:

- a response head larger than :attr:`~ResponseParser.max_head`, bytes llhttp refuses, a
  version other than HTTP/1.x and a body cut off by EOF are :class:`RemoteProtocolError`,
  raised from :meth:`~ResponseParser.next_event` after the events before them;
- a body is framed by ``Transfer-Encoding: chunked``, else ``Content-Length``, else it ends
  with the connection; HEAD, 204, 304 and 1xx answers have none (1xx other than 101 are
  skipped); after a ``101`` the bytes that came with the head are
  :attr:`~ResponseParser.trailing_data`, and the connection is the new protocol's;
- a body's bytes go out as they arrived: the pieces of one :meth:`receive_data` as one
  :class:`Data` (a LIST's 2 KiB chunks together, a lone watch event at once), and after the
  read that carried the head a ``Content-Length`` or close-delimited body bypasses llhttp,
  so its bytes are passed on without a copy;
- :attr:`~ResponseParser.reusable` says whether the connection can carry the next request.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

import httptools

from kubegate.tunnel.exchange import response_has_body

MAX_HEAD = 64 * 1024
_OWS = b" \t"


class RemoteProtocolError(Exception):
    """The apiserver's bytes are not an HTTP/1.1 answer we accept; the message says why, in
    words for the person reading the error ("it closed the connection without an answer")."""


# -- events --------------------------------------------------------------------------------


# Events are slotted but not frozen: a frozen dataclass's __init__ costs about 1 µs more per
# answer (object.__setattr__ per field), on the path every proxied request takes.


@dataclass(slots=True)
class Response:
    """A final response head (1xx other than 101 are not reported). Header names are
    lower-case, values as sent without surrounding whitespace."""

    status: int
    headers: list[tuple[str, str]]
    http_version: str
    content_length: int | None  # the declared length; None when chunked or undeclared


@dataclass(slots=True)
class Data:
    """A piece of the response body: what one :meth:`ResponseParser.receive_data` brought."""

    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    """The response is complete."""


@dataclass(slots=True)
class ConnectionClosed:
    """The apiserver closed the connection between responses."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
"""Read more from the socket and :meth:`ResponseParser.receive_data` it."""

Event = Response | Data | EndOfMessage | ConnectionClosed | _NeedData
_END = EndOfMessage()
_CLOSED = ConnectionClosed()


class ParserState(enum.Enum):
    """Where :class:`ResponseParser` is in the current exchange."""

    IDLE = "idle"  # no response expected (before start_response, or between cycles)
    HEAD = "head"  # reading a response head (1xx heads are read and dropped)
    BODY = "body"  # llhttp reads the body (chunked; or the part in the head's read)
    PASS = "pass"  # Content-Length or close-delimited body bytes, passed on as they come
    DONE = "done"  # the response is complete
    SWITCHED = "switched"  # a 101: the bytes after its head are another protocol's


# Module globals: an enum member looked up on its class costs 100 ns, one of these 20.
_IDLE, _HEAD, _BODY, _PASS, _DONE, _SWITCHED = ParserState


# -- the parser ----------------------------------------------------------------------------


class ResponseParser:
    """The HTTP/1.1 state of one apiserver connection, reading side: for each request sent,
    :meth:`start_response`, then feed bytes and take events until :class:`EndOfMessage`."""

    def __init__(self, *, max_head: int = MAX_HEAD) -> None:
        self.max_head = max_head
        self._parser = httptools.HttpResponseParser(self)
        self._fresh = True  # llhttp is between messages (False once we ended one ourselves)
        self.state = _IDLE
        self._events: deque[Event] = deque()
        self._error: RemoteProtocolError | None = None
        self._eof = False
        self._keep_alive = True
        self._method = ""
        self._trailing = b""
        self._start_cycle()

    def _start_cycle(self) -> None:
        self._status_seen = False
        self._head_bytes = 0  # bytes of earlier reads that the head in progress spans
        self._framing_bytes = 0  # chunked framing (extensions, trailers) read without data
        self._feed_size = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._pieces: list[bytes] = []
        self._remaining: int | None = None  # Content-Length left; None: until close
        self._chunked = False
        self._switching: Response | None = None

    def start_response(self, method: str) -> None:
        """Expect the answer to a request sent with ``method`` (HEAD's has no body)."""
        if self.state is not _IDLE and not (self.state is _DONE and self.reusable):
            raise RuntimeError(f"no response can start in state {self.state.name}")
        if not self._fresh:
            self._parser = httptools.HttpResponseParser(self)
            self._fresh = True
        self._start_cycle()
        self._method = method
        self.state = _HEAD

    # -- llhttp's callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.state is not _HEAD:  # bytes after the answer: not for us
            self._keep_alive = False
        self._raw_headers = []

    def on_status(self, status: bytes) -> None:
        self._status_seen = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))  # a chunked body's trailers go to a spare

    def on_headers_complete(self) -> None:
        if self.state is not _HEAD:
            return
        raw_headers, self._raw_headers = self._raw_headers, []
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # 100 Continue, 103 Early Hints: the final answer follows
        if self._head_bytes + self._feed_size > self.max_head and (
            _head_size(raw_headers) > self.max_head
        ):
            raise self._failed(self._too_large())
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise self._failed(RemoteProtocolError("it did not answer in HTTP/1.1"))
        headers: list[tuple[str, str]] = []
        length: str | None = None
        connection = ""
        for raw_name, raw_value in raw_headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.rstrip(_OWS).decode("latin-1")  # llhttp trims the left only
            headers.append((name, value))
            if name == "transfer-encoding":  # chunked framing when it is the last coding
                self._chunked = value.rpartition(",")[2].strip().lower() == "chunked"
            elif name == "content-length":
                length = length or value
            elif name == "connection":
                connection = connection or value.lower()
        content_length = None if self._chunked or length is None else int(length)
        self._keep_alive = "close" not in connection and (
            version == "1.1" or "keep-alive" in connection
        )
        response = Response(status, headers, version, content_length)
        if status == 101:
            self._switching = response  # reported once llhttp says where its bytes start
            self.state = _SWITCHED
            return
        self._events.append(response)
        if not response_has_body(self._method, status):
            if self._method == "HEAD":
                self._fresh = False  # llhttp may wait for the body a GET would have had
            self._end()
            return
        self._remaining = content_length
        if not self._chunked and content_length is None:
            self._keep_alive = False  # the body ends with the connection
        self.state = _BODY

    def on_body(self, body: bytes) -> None:
        if self.state is _BODY:
            self._pieces.append(body)
        else:
            self._keep_alive = False  # a body where none belongs

    def on_message_complete(self) -> None:
        if self.state is _BODY:
            self._end()

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the socket; ``b""`` means it reached EOF. Errors wait for
        :meth:`next_event`."""
        if not data:
            self._eof = True
            return
        state = self.state
        if self._error is not None:
            return
        if state is _PASS:
            self._pass_on(data)
            return
        if state is _SWITCHED:
            self._trailing += data
            return
        if state is not _HEAD and state is not _BODY:
            self._keep_alive = False  # nothing was asked: the connection is not for reuse
            return
        self._feed_size = len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._switched(data[int(upgrade.args[0]) :])
            return
        except httptools.HttpParserCallbackError:
            if self._error is None:  # not one of ours (each sets _error first)
                raise
            return
        except httptools.HttpParserError:
            self._refuse()
            return
        state = self.state
        if state is _HEAD:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head:
                self._failed(self._too_large())
        elif state is _BODY:
            if self._pieces:
                self._flush()
                self._framing_bytes = 0
            elif self._chunked:
                self._count_framing(len(data))
            if not self._chunked:
                # What follows is body bytes up to the length (or EOF), without llhttp.
                self._fresh = False
                self.state = _PASS

    def _pass_on(self, data: bytes) -> None:
        remaining = self._remaining
        if remaining is not None:
            if len(data) >= remaining:
                if len(data) > remaining:
                    data = data[:remaining]
                    self._keep_alive = False  # more than the answer: not for reuse
                self._events.append(Data(data))
                self._end()
                return
            self._remaining = remaining - len(data)
        self._events.append(Data(data))

    def _flush(self) -> None:
        pieces, self._pieces = self._pieces, []
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if self._remaining is not None:
            self._remaining -= len(data)
        self._events.append(Data(data))

    def _end(self) -> None:
        if self._pieces:
            self._flush()
        self._events.append(_END)
        self.state = _DONE

    def _count_framing(self, size: int) -> None:
        """llhttp holds a chunked body's trailer in memory until it ends: bound that."""
        self._framing_bytes += size
        if self._framing_bytes > self.max_head:
            kib = self.max_head // 1024
            self._failed(
                RemoteProtocolError(f"malformed chunked body: over {kib} KiB of framing, no data")
            )

    def _switched(self, trailing: bytes) -> None:
        if self._switching is None:  # a 101 after the answer: not for us
            self._keep_alive = False
            return
        self._events.append(self._switching)
        self._trailing = trailing

    def _refuse(self) -> None:
        """llhttp refused the bytes: the part it was in decides what we say."""
        if self._pieces:
            self._flush()  # the body before the fault goes first
        state = self.state
        if state is _DONE:
            self._keep_alive = False  # junk after a complete answer
        elif state is _SWITCHED:
            # llhttp hands over only a 101 with Upgrade and Connection: upgrade.
            self._failed(RemoteProtocolError("it switched protocols without naming one"))
        elif state is _HEAD:
            seen = self._status_seen or self._raw_headers
            self._failed(
                RemoteProtocolError(
                    "its response head is malformed" if seen else "it did not answer in HTTP/1.1"
                )
            )
        else:
            self._failed(RemoteProtocolError("malformed chunked body"))

    def _failed(self, error: RemoteProtocolError) -> RemoteProtocolError:
        self._error = error
        self._keep_alive = False
        return error

    def _too_large(self) -> RemoteProtocolError:
        return RemoteProtocolError(f"its response head is larger than {self.max_head // 1024} KiB")

    def next_event(self) -> Event:
        """The next event, :data:`NEED_DATA` when more bytes are needed, or raises
        :class:`RemoteProtocolError`."""
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        if not self._eof:
            return NEED_DATA
        state = self.state
        if state is _HEAD:
            raise self._failed(RemoteProtocolError("it closed the connection without an answer"))
        if state is _PASS and self._remaining is None:
            self._end()  # a close-delimited body ends here
            return self._events.popleft()
        if state is _BODY or state is _PASS:
            raise self._failed(
                RemoteProtocolError("the connection closed before the end of the body")
            )
        self._keep_alive = False
        return _CLOSED

    @property
    def trailing_data(self) -> bytes:
        """After a ``101``: the upgraded protocol's bytes that came with the head."""
        return self._trailing

    @property
    def reusable(self) -> bool:
        """The response is complete and the connection can carry another request."""
        return self.state is _DONE and self._keep_alive and not self._eof


def _head_size(headers: list[tuple[bytes, bytes]]) -> int:
    size = 17  # "HTTP/1.1 200 \r\n" and the blank line; the reason phrase is not counted
    for name, value in headers:
        size += len(name) + len(value) + 4
    return size
