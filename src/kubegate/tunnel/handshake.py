"""The WebSocket handshake that opens a tunnel: path, headers and protocol versions.

The agent offers the tunnel protocol versions it speaks in :data:`PROTOCOL_HEADER`; the
server accepts the highest one it shares and names it in the same header of its 101 answer,
or refuses the upgrade with 426 naming its own. Only version 2 exists (ADR 0004): version 1,
the same streams in HTTP/2 framing, was dropped before the first release.
"""

from __future__ import annotations

from kubegate.errors import TunnelProtocolError

TUNNEL_PATH = "/api/v1/agent/tunnel"
PROTOCOL_HEADER = "X-Kubegate-Tunnel-Protocol"
VERSION_HEADER = "X-Kubegate-Agent-Version"
# Version 2: kubegate's own stream framing (tunnel/frames.py, ADR 0003) in binary WebSocket
# messages, control stream per docs/tunnel.md.
PROTOCOLS: tuple[int, ...] = (2,)


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


def accepted_protocol(header: str | None) -> int:
    """The agent's reading of the server's 101: the version it named.

    Raises :class:`TunnelProtocolError` for a version the agent did not offer, and for a 101
    that names none: only a server from before tunnel protocol 2 answers so, and it would
    speak HTTP/2 framing, which this agent does not.
    """
    ours = ", ".join(map(str, PROTOCOLS))
    if header is None:
        raise TunnelProtocolError(
            "the server named no tunnel protocol in its answer, so it is older than tunnel "
            f"protocol 2 and speaks only protocol 1, which this agent does not (it speaks "
            f"{ours}): upgrade the server"
        )
    named = offered_protocols(header)
    if len(named) != 1 or named[0] not in PROTOCOLS:
        raise TunnelProtocolError(
            f"the server chose tunnel protocol {header[:20]!r}, which this agent has not offered "
            f"({ours}): run an agent and a server of matching versions"
        )
    return named[0]
