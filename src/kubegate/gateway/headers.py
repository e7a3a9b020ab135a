"""Which headers cross the proxy, each way.

Towards the cluster, nothing a client sends may speak for it: its ``Authorization``,
``Impersonate-*``, ``X-Remote-*``, cookies, claimed source addresses (``X-Forwarded-For``,
``Forwarded``, ``X-Real-IP``), kubegate's internal headers and any bearer token
smuggled in a WebSocket subprotocol are removed, and so are hop-by-hop headers, which the
tunnel (HTTP/2) cannot carry. The caller re-adds ``Connection: Upgrade`` / ``Upgrade`` from
:attr:`CleanRequest.upgrade` on upgrade requests. Pure: header lists in, header lists out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubegate.tunnel.exchange import (
    FRAMING,
    HOP_BY_HOP,
    INTERNAL_PREFIX,
    connection_tokens,
    list_items,
)

CLIENT_CREDENTIALS = frozenset({"authorization", "cookie", "host"})
"""Request headers a client may not forward: its own credentials, and the proxy's host."""

CLIENT_ADDRESS_CLAIMS = frozenset({"x-forwarded-for", "forwarded", "x-real-ip"})
"""Where a client would claim another source address; the proxy sets ``X-Forwarded-For``
from the real peer instead, which the apiserver's audit log records."""

STRIPPED_PREFIXES = ("impersonate-", "x-remote-", INTERNAL_PREFIX)
"""Request header prefixes never forwarded: impersonation, front-proxy identity, internal."""

BEARER_SUBPROTOCOL = "base64url.bearer.authorization.k8s.io."
"""The WebSocket subprotocol kube-apiserver reads a bearer token from."""


@dataclass(frozen=True, slots=True)
class CleanRequest:
    """A client's request headers, made safe to forward to a cluster.

    ``headers`` have lowercase names and are HTTP/2-legal (no connection-specific headers);
    ``upgrade`` is the client's ``Upgrade`` value when it asked for an upgrade, else None;
    ``stripped`` names what was removed, for logs (never values).
    """

    headers: tuple[tuple[str, str], ...]
    upgrade: str | None
    stripped: tuple[str, ...]


def clean_request_headers(headers: Sequence[tuple[bytes, bytes]]) -> CleanRequest:
    """Remove everything from a client's headers that must not reach the cluster.

    ``headers`` are the parsed (name, value) byte pairs, names lower-case. Removes
    credentials (``authorization``, ``cookie``), ``host``, ``impersonate-*``, ``x-remote-*``,
    ``kubegate-*``, hop-by-hop headers and every header a ``Connection`` header names, plus
    ``content-length`` when ``transfer-encoding`` is present (RFC 9112 §6.3).
    ``sec-websocket-protocol`` loses every bearer-token subprotocol entry. Everything else
    passes in order, repeats included.
    """
    decoded = [(_text(name).lower(), _text(value)) for name, value in headers]
    tokens = connection_tokens(decoded)
    names = {name for name, _ in decoded}
    upgrade_values = [v.strip() for n, v in decoded if n == "upgrade" and v.strip()]
    upgrade = ", ".join(upgrade_values) if "upgrade" in tokens and upgrade_values else None
    nominated = tokens - FRAMING
    if "transfer-encoding" in names:
        nominated = nominated | {"content-length"}

    kept: list[tuple[str, str]] = []
    stripped: dict[str, None] = {}
    protocols: list[str] | None = None
    protocol_at = 0
    for name, value in decoded:
        if _is_stripped_request_header(name) or name in nominated:
            stripped[name] = None
        elif name == "sec-websocket-protocol":
            if protocols is None:
                protocols, protocol_at = [], len(kept)
            protocols.extend(list_items([value]))
        else:
            kept.append((name, value))

    if protocols is not None:
        allowed = [p for p in protocols if BEARER_SUBPROTOCOL not in p]
        if len(allowed) != len(protocols):
            stripped["sec-websocket-protocol"] = None
        if allowed:
            kept.insert(protocol_at, ("sec-websocket-protocol", ", ".join(allowed)))
    return CleanRequest(headers=tuple(kept), upgrade=upgrade, stripped=tuple(stripped))


def bearer_token(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The token of the first ``Authorization`` header when it is ``Bearer <token>``.

    Parses as kube-apiserver's bearer authenticator does: the scheme is case-insensitive,
    scheme and token are separated by one space. None when there is no such header, it is
    another scheme, or the token is empty.
    """
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        parts = _text(value).strip().split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
            return None
        return parts[1]
    return None


def _is_stripped_request_header(name: str) -> bool:
    return (
        name in HOP_BY_HOP
        or name in CLIENT_CREDENTIALS
        or name in CLIENT_ADDRESS_CLAIMS
        or name.startswith(STRIPPED_PREFIXES)
    )


def _text(data: bytes | str) -> str:
    return data.decode("latin-1") if isinstance(data, bytes) else data
