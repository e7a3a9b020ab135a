"""The proxy listener's HTTP/1.1, server side, sans-IO: ``httptools`` parses, we serialise.

DESIGN §4 builds the listener on a sans-IO HTTP/1.1 parser, ``h11`` or ``httptools`` if it
measures faster. It does: h11 took about 47 µs of the gateway's CPU per GET (21 to parse the
request, 26 to validate and frame the response), httptools (llhttp, in C) parses the same
request in about 1 µs, and writing a response head by hand costs a few (ADR 0003's sibling
numbers are in ``docs/benchmarks.md``). This module keeps h11's shape, so the listener reads
like one: bytes in (:meth:`ServerConnection.receive_data`), events out
(:meth:`~ServerConnection.next_event`: :class:`Request`, :class:`Data`,
:class:`EndOfMessage`, :data:`NEED_DATA`, :class:`ConnectionClosed`), and responses as bytes
(:meth:`~ServerConnection.response`, :meth:`~ServerConnection.data`,
:meth:`~ServerConnection.end`, :meth:`~ServerConnection.switch`).

What it guards, as h11 did:

- a request head larger than :attr:`max_head` is a 431 (one still incomplete after
  ``max_head`` + one read of bytes already), any bytes llhttp refuses are a 400
  (:class:`RemoteProtocolError`), and both are raised from
  :meth:`~ServerConnection.next_event`, after the events before them;
- reading is demand-driven: the caller reads the socket only on :data:`NEED_DATA`, so a
  pipelining client cannot make it buffer more than one read ahead;
- a response is framed by its ``Content-Length``, else chunked (close-delimited for an
  HTTP/1.0 client), and more or fewer body bytes than declared is a
  :class:`LocalProtocolError`; a header name or value with CR, LF or NUL is refused, so
  nothing an upstream sends can split a response.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from http import HTTPStatus

import httptools

from kubegate.tunnel.exchange import NO_BODY_STATUSES

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_FORBIDDEN = (b"\r", b"\n", b"\0")


class RemoteProtocolError(Exception):
    """The client's bytes are not HTTP/1.1 we accept; ``status_hint`` is the answer (400 or
    431), which the listener turns into a Kubernetes ``Status``."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class LocalProtocolError(Exception):
    """We were about to send something that is not valid HTTP/1.1 for this exchange."""


@dataclass(frozen=True, slots=True)
class Request:
    """A request head. Header names are lower-case; values are as sent."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    http_version: str
    keep_alive: bool


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of the request body."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The request (head and body) is complete."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The client closed its side between requests."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
"""Read more from the socket and :meth:`ServerConnection.receive_data` it."""

Event = Request | Data | EndOfMessage | ConnectionClosed | _NeedData
_END = EndOfMessage()
_CLOSED = ConnectionClosed()


class ServerConnection:
    """The HTTP/1.1 state of one client connection: one request, then its response, and so
    on (keep-alive)."""

    def __init__(self, *, max_head: int, read_size: int) -> None:
        self.max_head = max_head
        self._head_budget = max_head + read_size  # one read of the next head may ride along
        self._parser = httptools.HttpRequestParser(self)
        self._events: deque[Request | Data | EndOfMessage] = deque()
        self._error: RemoteProtocolError | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._head_bytes = 0
        self._upgraded = False
        self._trailing = bytearray()
        self._eof = False
        self._in_message = False
        # The exchange in progress:
        self.request: Request | None = None
        self.request_complete = False
        self._keep_alive = True
        self._head_only = False
        self.response_started = False
        self.response_complete = False
        self._remaining: int | None = None
        self._chunked = False

    # -- llhttp's callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._in_head = True
        self._in_message = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        parser = self._parser
        self._events.append(
            Request(
                parser.get_method(),
                self._url,
                self._headers,
                parser.get_http_version(),
                parser.should_keep_alive(),
            )
        )

    def on_body(self, body: bytes) -> None:
        self._events.append(Data(body))

    def on_message_complete(self) -> None:
        self._in_message = False
        self._events.append(_END)

    # -- receiving ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the socket; ``b""`` means it reached EOF. Errors wait for
        :meth:`next_event`."""
        if not data:
            self._eof = True
            return
        if self._error is not None:
            return  # the connection is over: the caller answers the error and closes
        if self._upgraded:
            self._trailing += data
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded = True
            self._trailing += data[int(upgrade.args[0]) :]
            if self._in_message:  # llhttp pauses before completing a bodiless upgrade
                self._in_message = False
                self._events.append(_END)
            return
        except httptools.HttpParserError as exc:
            self._error = RemoteProtocolError(f"malformed HTTP/1.1 request: {exc}")
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._head_budget:
                self._error = self._too_large()

    def next_event(self) -> Event:
        """The next event, :data:`NEED_DATA` when more bytes are needed, or raises
        :class:`RemoteProtocolError`."""
        if self._events:
            event = self._events.popleft()
            if isinstance(event, Request):
                if _head_size(event) > self.max_head:
                    # A head that arrived whole is measured here; one still arriving is
                    # bounded in receive_data.
                    self._events.clear()
                    self._error = self._too_large()
                    raise self._error
                self.request = event
                self._keep_alive = event.keep_alive
                self._head_only = event.method == b"HEAD"
            elif event is _END:
                self.request_complete = True
            return event
        if self._error is not None:
            raise self._error
        if self._eof:
            if self._in_message:
                raise RemoteProtocolError("the client closed the connection mid-request")
            return _CLOSED
        return NEED_DATA

    def _too_large(self) -> RemoteProtocolError:
        return RemoteProtocolError(
            f"the request line and headers exceed {self.max_head // 1024} KiB", 431
        )

    @property
    def trailing_data(self) -> bytes:
        """Bytes that arrived after an upgrade request's head (the new protocol's first)."""
        return bytes(self._trailing)

    @property
    def waiting_for_response(self) -> bool:
        """A request head arrived and no response has started: one can be sent."""
        return self.request is not None and not self.response_started

    # -- sending ----------------------------------------------------------------------

    def response(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The response head for the current request. Framing headers are ours: a
        ``Content-Length`` given is kept and enforced, ``Transfer-Encoding`` and
        ``Connection`` are replaced."""
        if not self.waiting_for_response:
            raise LocalProtocolError("no request is waiting for a response")
        length: int | None = None
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise LocalProtocolError(f"bad Content-Length {value!r}") from None
                if length < 0:
                    raise LocalProtocolError(f"bad Content-Length {value!r}")
                continue  # written below, once
            if lower in (b"transfer-encoding", b"connection", b"keep-alive"):
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        bodiless = self._head_only or status in NO_BODY_STATUSES
        if bodiless:
            self._remaining = 0
            if length is not None:
                lines.append(b"content-length: %d\r\n" % length)
        elif length is not None:
            self._remaining = length
            lines.append(b"content-length: %d\r\n" % length)
        elif self.request is not None and self.request.http_version == "1.1":
            self._chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            self._keep_alive = False  # an HTTP/1.0 client: the close ends the body
        if not self._keep_alive or self._upgraded:
            # An upgrade request that was not switched: its connection is not reused.
            self._keep_alive = False
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        head = b"".join(lines)
        _check(head, len(lines))
        self.response_started = True
        return head

    def data(self, chunk: bytes) -> bytes:
        """A piece of the response body, framed."""
        if not self.response_started or self.response_complete:
            raise LocalProtocolError("no response body is being sent")
        if not chunk:
            return b""
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(chunk), chunk)
        if self._remaining is not None:
            if len(chunk) > self._remaining:
                raise LocalProtocolError("more body than the Content-Length declared")
            self._remaining -= len(chunk)
        return chunk

    def end(self) -> bytes:
        """The end of the response body."""
        if not self.response_started or self.response_complete:
            raise LocalProtocolError("no response body is being sent")
        if self._remaining:
            raise LocalProtocolError("less body than the Content-Length declared")
        self.response_complete = True
        return b"0\r\n\r\n" if self._chunked else b""

    def switch(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        """``101 Switching Protocols`` for an upgrade request; the connection is then raw
        bytes (:attr:`trailing_data` first)."""
        if not self.waiting_for_response or not self._upgraded:
            raise LocalProtocolError("only an upgrade request can switch protocols")
        lines = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        lines += [b"%s: %s\r\n" % (name, value) for name, value in headers]
        lines.append(b"\r\n")
        head = b"".join(lines)
        _check(head, len(lines))
        self.response_started = self.response_complete = True
        self._keep_alive = False
        return head

    # -- keep-alive ---------------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        """The exchange ended cleanly and both sides want another on this connection."""
        return (
            self._keep_alive
            and self.request_complete
            and self.response_complete
            and not self._upgraded
        )

    def start_next_cycle(self) -> None:
        """Forget the finished exchange; the next request's events (already parsed, if it
        was pipelined) follow."""
        if not self.reusable:
            raise LocalProtocolError("the connection cannot carry another request")
        self.request = None
        self.request_complete = False
        self.response_started = self.response_complete = False
        self._remaining = None
        self._chunked = False
        self._head_only = False


def _head_size(request: Request) -> int:
    size = len(request.method) + len(request.target) + 12
    for name, value in request.headers:
        size += len(name) + len(value) + 4
    return size


def _check(head: bytes, lines: int) -> None:
    """Every CR and LF of ``head`` is a line end of ours, and there is no NUL."""
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
        raise LocalProtocolError("a response header contains CR, LF or NUL")
