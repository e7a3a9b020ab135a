"""How one proxied Kubernetes request crosses the tunnel: pure header conventions.

The gateway opens one HTTP/2 stream per kubectl request. HTTP/2 forbids connection-specific
headers (``Connection``, ``Upgrade``, ``Transfer-Encoding``...) and has no ``101`` final
status, so two ``kubegate-*`` headers carry what they would say:

- request: ``kubegate-user`` is the authenticated user's email (the agent impersonates
  ``<prefix><email>``); ``kubegate-service-account: <namespace>/<name>`` instead marks a
  request made with a kubegate-managed ServiceAccount's kube token (the agent impersonates
  ``system:serviceaccount:<namespace>:<name>``, with the groups Kubernetes gives it, and only
  an account in its desired set); ``kubegate-upgrade`` is the client's ``Upgrade`` value
  on an upgrade request (exec, attach, cp, port-forward), absent otherwise;
  ``kubegate-long-running: watch`` marks a request the gateway counted as long-running (a
  watch, a followed log), which the agent may carry on an HTTP/2 connection to the
  apiserver shared with other such requests.
- response: an upstream ``101 Switching Protocols`` travels as ``:status 200`` with
  ``kubegate-upgrade: <the upstream's Upgrade value>``; from then on the stream's DATA frames
  carry the upgraded connection's raw bytes both ways (WebSocket or SPDY frames, never
  parsed). Any other status travels as itself.

The gateway never forwards the client's credentials (``gateway/headers.py`` strips them before
this module sees the headers); the agent drops any that arrive anyway and adds its own. The
HTTP rules both ends apply (hop-by-hop headers, which answers have no body) live here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubegate.domain.access import dns1123_label_problem
from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.events import Headers

USER_HEADER = "kubegate-user"
SERVICE_ACCOUNT_HEADER = "kubegate-service-account"
UPGRADE_HEADER = "kubegate-upgrade"
LONG_RUNNING_HEADER = "kubegate-long-running"
# The group every impersonated kubegate user gets besides system:authenticated.
KUBEGATE_GROUP = "kubegate:authenticated"
SWITCHED = 200  # the :status a 101 travels as

INTERNAL_PREFIX = "kubegate-"
"""kubegate's own headers; only the two ends of the tunnel read or write them."""

HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that describe one connection, never the message (RFC 9110 §7.6.1)."""

NO_BODY_STATUSES = frozenset({204, 304})
"""Final statuses whose answer never has a body (RFC 9110 §6.4.1)."""

# A Connection token may not remove a framing header: dropping one would desynchronise the
# body from the head on an HTTP/1.1 hop.
FRAMING = frozenset({"content-length"})

# Never forwarded to the apiserver from the tunnel, whatever the gateway sent: credentials,
# identity claims and connection-level headers are the agent's to set.
_AGENT_DROPS = HOP_BY_HOP | {"authorization", "host", "cookie"}
_AGENT_DROP_PREFIXES = ("impersonate-", "x-remote-", INTERNAL_PREFIX)


def response_has_body(method: str, status: int) -> bool:
    """Whether the answer to a ``method`` request with ``status`` carries a body at all."""
    return method != "HEAD" and status not in NO_BODY_STATUSES and status >= 200


def connection_tokens(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The lowercase tokens of every ``Connection`` header (comma lists, repeats); names
    must already be lowercase."""
    values = [value for name, value in headers if name == "connection"]
    return frozenset(token.lower() for token in list_items(values))


def list_items(values: Iterable[str]) -> list[str]:
    """The non-empty, trimmed items of comma-separated header values."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@dataclass(frozen=True, slots=True)
class ProxiedRequest:
    """What the agent needs to replay one request against the apiserver."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    user: str
    upgrade: str | None
    long_running: bool = False
    service_account: tuple[str, str] | None = None  # (namespace, name)

    @property
    def impersonated_user(self) -> str | None:
        """The ServiceAccount's Kubernetes username, when the request is one's."""
        if self.service_account is None:
            return None
        namespace, name = self.service_account
        return f"system:serviceaccount:{namespace}:{name}"


def tunnel_request_headers(
    headers: Headers,
    *,
    user: str,
    upgrade: str | None,
    long_running: bool = False,
    service_account: tuple[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Gateway: the stream's request headers, from already-cleaned client headers."""
    out = [(USER_HEADER, user)]
    if service_account is not None:
        out.append((SERVICE_ACCOUNT_HEADER, "/".join(service_account)))
    if long_running:
        out.append((LONG_RUNNING_HEADER, "watch"))
    if upgrade is None:
        out.extend(headers)
        return out
    out.append((UPGRADE_HEADER, upgrade))
    # After the head an upgrade carries the new protocol's bytes, whatever length the head
    # declared (kubectl's SPDY POST says Content-Length: 0): HTTP/2 would hold the stream to it.
    out.extend(h for h in headers if h[0] != "content-length")
    return out


def decode_request(method: str, target: str, headers: Headers) -> ProxiedRequest:
    """Agent: the request the gateway sent; refuses a stream that names no user."""
    user: str | None = None
    upgrade: str | None = None
    long_running = False
    account: tuple[str, str] | None = None
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        key = name.lower()
        if key == USER_HEADER:
            user = value
        elif key == SERVICE_ACCOUNT_HEADER:
            account = _service_account(value)
        elif key == UPGRADE_HEADER:
            upgrade = value
        elif key == LONG_RUNNING_HEADER:
            long_running = value == "watch"
        elif key not in _AGENT_DROPS and not key.startswith(_AGENT_DROP_PREFIXES):
            kept.append((key, value))
    if not user:
        raise TunnelProtocolError("a proxied request arrived without the user it is for")
    if not target.startswith("/"):
        raise TunnelProtocolError("a proxied request's path must start with /")
    return ProxiedRequest(method, target, tuple(kept), user, upgrade, long_running, account)


def _service_account(value: str) -> tuple[str, str]:
    namespace, _, name = value.partition("/")
    if dns1123_label_problem(namespace) is not None or dns1123_label_problem(name) is not None:
        raise TunnelProtocolError(f"{SERVICE_ACCOUNT_HEADER} must be <namespace>/<name>")
    return namespace, name


def upstream_request_head(
    request: ProxiedRequest,
    *,
    host: str,
    authorization: str | None,
    user_prefix: str,
) -> list[tuple[str, str]]:
    """Agent: the HTTP/1.1 headers for the apiserver, impersonating the request's user."""
    head = [("Host", host)]
    if authorization:
        head.append(("Authorization", authorization))
    account = request.impersonated_user
    if account is not None:
        # No Impersonate-Group: Kubernetes then gives the account its own groups
        # (system:serviceaccounts, system:serviceaccounts:<namespace>), as its tokens have.
        head.append(("Impersonate-User", account))
    else:
        head.append(("Impersonate-User", f"{user_prefix}{request.user}"))
        head.append(("Impersonate-Group", KUBEGATE_GROUP))
    if request.upgrade is not None:
        head.append(("Connection", "Upgrade"))
        head.append(("Upgrade", request.upgrade))
    head.extend(request.headers)
    return head


def tunnel_response_head(status: int, headers: Headers) -> tuple[int, list[tuple[str, str]]]:
    """Agent: the apiserver's response head as the stream's response head.

    Names come back lowercase, minus hop-by-hop headers, those a ``Connection`` header
    names and kubegate's own; everything else (``Retry-After``, ``Audit-Id``, ``Warning``,
    ``X-Kubernetes-PF-*``, ...) passes in order. A ``101`` travels as :data:`SWITCHED` with
    its ``Upgrade`` value in :data:`UPGRADE_HEADER` and no ``Content-Length``.
    """
    lowered = [(name.lower(), value) for name, value in headers]
    dropped = HOP_BY_HOP | (connection_tokens(lowered) - FRAMING)
    kept = [h for h in lowered if h[0] not in dropped and not h[0].startswith(INTERNAL_PREFIX)]
    if status == 101:
        upgrade = next((v for n, v in lowered if n == "upgrade"), "")
        kept = [h for h in kept if h[0] != "content-length"]
        return SWITCHED, [(UPGRADE_HEADER, upgrade), *kept]
    return status, kept


@dataclass(frozen=True, slots=True)
class ProxiedResponse:
    """Gateway: the upstream response head as it came through the tunnel."""

    status: int
    headers: tuple[tuple[str, str], ...]
    upgrade: str | None  # set when the upstream switched protocols (a 101)


def decode_response(status: int, headers: Headers) -> ProxiedResponse:
    """Gateway: undo :func:`tunnel_response_head`."""
    upgrade: str | None = None
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        if name == UPGRADE_HEADER:
            upgrade = value
        elif not name.startswith(INTERNAL_PREFIX):
            kept.append((name, value))
    if upgrade is not None and status != SWITCHED:
        raise TunnelProtocolError(f"an upgraded response must travel as {SWITCHED}, not {status}")
    if not 200 <= status <= 599 and upgrade is None:
        raise TunnelProtocolError(f"the agent answered an invalid status {status}")
    return ProxiedResponse(101 if upgrade is not None else status, tuple(kept), upgrade)
