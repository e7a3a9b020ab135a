"""What a Kubernetes API request asks to do, read the way kube-apiserver reads it.

:func:`decode_path` refuses any path that could be normalised into a different one upstream
than the one kubegate checked (dot segments, encoded slashes, backslashes, empty segments).
:func:`parse_request_info` is a port
of kube-apiserver's ``RequestInfoFactory.NewRequestInfo``
(``apiserver/pkg/endpoints/request/requestinfo.go``) so that scopes, limits and audit see the
request the way Kubernetes RBAC will. Pure: strings in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kubegate.errors import InvalidRequest

_HEX = frozenset(b"0123456789abcdefABCDEF")
# Bytes a request-target may carry as-is: visible ASCII except '#' (a fragment is never sent).
TARGET_BYTE = frozenset(range(0x21, 0x7F)) - {ord("#")}
# Percent-encoded bytes that would change how the upstream splits or normalises the path.
_SEPARATORS = frozenset(b"/\\")

_API_PREFIXES = frozenset({"api", "apis"})
_GROUPLESS_API_PREFIXES = frozenset({"api"})
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_STREAMING_POD_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})


def decode_path(path: str) -> tuple[str, ...]:
    """The percent-decoded segments of ``path``, after refusing anything ambiguous.

    Raises :class:`InvalidRequest` for control, space, ``#``, ``?`` or non-ASCII characters,
    raw backslashes, invalid percent-escapes, encoded ``/``
    or ``\\``, encoded control bytes, segments that are ``.`` or ``..`` (also when encoded),
    empty segments (``//``) and segments that are not UTF-8 once decoded. A single trailing
    ``/`` is allowed. The answer keeps the leading empty segment of an absolute path, so
    ``"/".join(...)`` gives the decoded path back.
    """
    bad = next((c for c in path if ord(c) not in TARGET_BYTE or c == "?"), None)
    if bad is not None:
        raise InvalidRequest(
            f"the request path contains a forbidden character {bad!r} "
            "(control, space, '#', '?' or non-ASCII); percent-encode it"
        )
    if "\\" in path:
        raise InvalidRequest("the request path must not contain a backslash")
    segments = path.split("/")
    decoded: list[str] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if not segment and 0 < index < last:
            raise InvalidRequest("the request path must not contain empty segments ('//')")
        text = _percent_decode_segment(segment)
        if text in (".", ".."):
            raise InvalidRequest("the request path must not contain '.' or '..' segments")
        decoded.append(text)
    return tuple(decoded)


def _percent_decode_segment(segment: str) -> str:
    """One ASCII path segment, percent-decoded, refusing what :func:`decode_path` documents."""
    if "%" not in segment:
        return segment
    raw = segment.encode("ascii")
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte != ord("%"):
            out.append(byte)
            i += 1
            continue
        escape = raw[i + 1 : i + 3]
        if len(escape) != 2 or not all(b in _HEX for b in escape):
            raise InvalidRequest("the request path contains an invalid percent-escape")
        value = int(escape, 16)
        if value in _SEPARATORS:
            raise InvalidRequest(
                "the request path must not contain an encoded slash or backslash (%2F, %5C)"
            )
        if value < 0x20 or value == 0x7F:
            raise InvalidRequest("the request path must not contain encoded control characters")
        out.append(value)
        i += 3
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the request path is not UTF-8 once percent-decoded") from None


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a request asks Kubernetes to do, as kube-apiserver's RequestInfo describes it.

    ``verb`` is the RequestInfo verb, except that a WebSocket GET on ``pods/exec``,
    ``pods/attach`` or ``pods/portforward`` counts as ``create`` (newer apiservers require
    ``create`` for it too; older ones would let a read-only key exec). ``path`` and ``parts``
    are percent-decoded; ``parts`` is empty for non-resource requests.
    """

    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str
    api_group: str
    api_version: str
    namespace: str
    resource: str
    subresource: str
    name: str
    parts: tuple[str, ...]

    @property
    def is_watch(self) -> bool:
        """True for a watch, whether asked with ``?watch=`` or the legacy ``/watch/`` path."""
        return self.verb == "watch"

    @property
    def is_discovery(self) -> bool:
        """True for the discovery reads kubectl needs before anything else.

        GET or HEAD on ``/api``, ``/api/<v>``, ``/apis``, ``/apis/<g>``, ``/apis/<g>/<v>``,
        ``/openapi/v2``, ``/openapi/v3`` and below, and ``/version``. Scoped keys always
        allow these.
        """
        if self.is_resource_request or self.verb not in ("get", "head"):
            return False
        parts = _split_path(self.path)
        match parts:
            case ("api" | "apis" | "version",):
                return True
            case ("api", _) | ("apis", _) | ("apis", _, _) | ("openapi", "v2"):
                return True
            case ("openapi", "v3", *_):
                return True
        return False


def _split_path(path: str) -> tuple[str, ...]:
    """requestinfo.go's ``splitPath``: trim slashes, split, nothing for an empty path."""
    trimmed = path.strip("/")
    return tuple(trimmed.split("/")) if trimmed else ()


def parse_request_info(method: str, path: str, query: str, *, upgrade: bool) -> RequestInfo:
    """Describe a request the way kube-apiserver's ``NewRequestInfo`` does.

    ``path`` is the upstream path as :func:`split_target` returns it (still percent-encoded;
    it is checked and decoded here), ``query`` the raw query string. ``upgrade`` is True when
    the request asks for a protocol upgrade (WebSocket or SPDY); with GET on ``pods/exec``,
    ``pods/attach`` or ``pods/portforward`` the verb becomes ``create``. ``method`` is
    case-sensitive, as in Go: ``delete`` is not ``DELETE`` and gets the verb ``""``.

    Like newer apiservers, a list or watch with ``fieldSelector=metadata.name=<x>`` gets the
    name ``x``. Unlike them, an undecodable *other* list option (a bad ``labelSelector``, say)
    does not clear that name; the name only feeds audit, never a decision.
    """
    decoded_path = "/".join(decode_path(path))
    verb = method.lower()
    non_resource = RequestInfo(
        is_resource_request=False,
        path=decoded_path,
        verb=verb,
        api_prefix="",
        api_group="",
        api_version="",
        namespace="",
        resource="",
        subresource="",
        name="",
        parts=(),
    )
    parts = list(_split_path(decoded_path))
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return non_resource
    api_prefix = parts.pop(0)
    api_group = ""
    if api_prefix not in _GROUPLESS_API_PREFIXES:
        if len(parts) < 3:
            return non_resource
        api_group = parts.pop(0)
    api_version = parts.pop(0)

    if parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            raise InvalidRequest(
                f"unable to determine kind and namespace from the path {decoded_path!r}"
            )
        verb = parts.pop(0)
    else:
        verb = _METHOD_VERBS.get(method, "")

    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]

    resource = parts[0] if parts else ""
    name = parts[1] if len(parts) >= 2 else ""
    subresource = ""
    if len(parts) >= 3 and verb not in _SPECIAL_VERBS_NO_SUBRESOURCES:
        subresource = parts[2]

    if not name and verb == "get":
        values = _parse_query(query)
        verb = "watch" if _query_bool(values, "watch") else "list"
        name = _field_selector_name(values.get("fieldSelector", []))
    if not name and verb == "delete":
        verb = "deletecollection"

    if (
        upgrade
        and method == "GET"
        and resource == "pods"
        and subresource in _STREAMING_POD_SUBRESOURCES
    ):
        verb = "create"

    return RequestInfo(
        is_resource_request=True,
        path=decoded_path,
        verb=verb,
        api_prefix=api_prefix,
        api_group=api_group,
        api_version=api_version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
        parts=tuple(parts),
    )


def is_long_running(info: RequestInfo, query: str) -> Literal["watch", None]:
    """``"watch"`` for a request that holds a read open: a watch, or a followed pod log.

    Both count against the per-identity limit on open watches; anything else is ``None``.
    """
    if info.is_watch:
        return "watch"
    if (
        info.is_resource_request
        and info.verb == "get"
        and info.api_group == ""
        and info.resource == "pods"
        and info.subresource == "log"
        and _query_bool(_parse_query(query), "follow")
    ):
        return "watch"
    return None


def _parse_query(query: str) -> dict[str, list[str]]:
    """Go's ``url.ParseQuery``, keeping what it keeps.

    Pairs are split on ``&``; a pair containing ``;`` or an invalid escape is dropped, ``+`` is
    a space. Values are decoded as UTF-8, invalid bytes replaced.
    """
    values: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if not pair or ";" in pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = _query_unescape(raw_key)
        value = _query_unescape(raw_value)
        if key is None or value is None:
            continue
        values.setdefault(key, []).append(value)
    return values


def _query_unescape(text: str) -> str | None:
    """Go's ``url.QueryUnescape``: None for an invalid escape."""
    raw = text.encode("utf-8", errors="replace")
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == ord("%"):
            escape = raw[i + 1 : i + 3]
            if len(escape) != 2 or not all(b in _HEX for b in escape):
                return None
            out.append(int(escape, 16))
            i += 3
            continue
        out.append(ord(" ") if byte == ord("+") else byte)
        i += 1
    return out.decode("utf-8", errors="replace")


def _query_bool(values: dict[str, list[str]], key: str) -> bool:
    """apimachinery's ``Convert_Slice_string_To_bool``: present and not ``0``/``false``.

    Only the first value counts; ``false`` is case-insensitive and an empty value is true.
    """
    given = values.get(key)
    if not given:
        return False
    first = given[0]
    return not (first == "0" or first.lower() == "false")


def _field_selector_name(selectors: list[str]) -> str:
    """The ``metadata.name`` a field selector requires exactly, or ``""``.

    Ports ``fields.ParseSelector`` + ``RequiresExactMatch("metadata.name")``: terms split on
    unescaped commas and sorted, ``=`` or ``==`` (not ``!=``) with an unescaped value; the
    name must be a valid path segment name (not ``.``/``..``, no ``/`` or ``%``).
    """
    if not selectors:
        return ""
    terms: list[tuple[str, str, str]] = []
    for part in sorted(_split_selector_terms(selectors[0])):
        if not part:
            continue
        term = _split_selector_term(part)
        if term is None:
            return ""
        field, operator, raw_value = term
        value = _unescape_selector_value(raw_value)
        if value is None:
            return ""
        terms.append((field, operator, value))
    for field, operator, value in terms:
        if field == "metadata.name" and operator != "!=":
            if value in (".", "..") or "/" in value or "%" in value:
                return ""
            return value
    return ""


def _split_selector_terms(selector: str) -> list[str]:
    if not selector:
        return []
    terms: list[str] = []
    start = 0
    escaped = False
    for index, char in enumerate(selector):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(selector[start:index])
            start = index + 1
    terms.append(selector[start:])
    return terms


def _split_selector_term(term: str) -> tuple[str, str, str] | None:
    for index in range(len(term)):
        for operator in ("!=", "==", "="):
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


def _unescape_selector_value(value: str) -> str | None:
    out: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            if char not in "\\,=":
                return None
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            return None
        else:
            out.append(char)
    return None if escaped else "".join(out)
