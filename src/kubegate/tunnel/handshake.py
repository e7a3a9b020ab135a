"""The WebSocket handshake that opens a tunnel: path, headers and protocol versions.

The agent offers the tunnel protocol versions it speaks in :data:`PROTOCOL_HEADER`; the
server accepts the highest one it shares, or refuses the upgrade with 426 naming its own.
"""

from __future__ import annotations

TUNNEL_PATH = "/api/v1/agent/tunnel"
PROTOCOL_HEADER = "X-Kubegate-Tunnel-Protocol"
VERSION_HEADER = "X-Kubegate-Agent-Version"
# Version 1: HTTP/2 (h2) in binary WebSocket messages, control stream per docs/tunnel.md.
PROTOCOLS: tuple[int, ...] = (1,)


def offered_protocols(header: str | None) -> tuple[int, ...]:
    """The versions in a ``1, 2`` style header; junk entries are ignored."""
    versions = []
    for part in (header or "").split(","):
        part = part.strip()
        if part.isdigit() and len(part) < 6:
            versions.append(int(part))
    return tuple(versions)


def choose_protocol(header: str | None) -> int | None:
    """The highest version both sides speak, or None."""
    common = set(PROTOCOLS) & set(offered_protocols(header))
    return max(common) if common else None
