"""The keep-alive pool of plain HTTP/1.1 connections to kube-apiserver.

Our own, small, on the same connection code as upgrades: httpx/httpcore cost ~1 ms of CPU
per request here (its pool polls every idle socket on every request; anyio's TLS stream),
the largest share of the agent's time per proxied request (``docs/benchmarks.md``). There is
no cap on open connections (a watch on an apiserver without HTTP/2 holds one), only on idle
ones, and an idle one is kept below kube-apiserver's own idle timeout.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable

from kubegate.agent.connection import UpstreamConnection

MAX_IDLE_CONNECTIONS = 100
# Below kube-apiserver's 90 s idle timeout, so a pooled connection is ours to close.
KEEPALIVE_SECONDS = 30.0


class ConnectionPool:
    """Idle connections, most recently used first; new ones from ``connect``."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[UpstreamConnection]],
        *,
        max_idle: int = MAX_IDLE_CONNECTIONS,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._max_idle = max_idle
        self._keepalive_seconds = keepalive_seconds
        self._clock = clock
        self._idle: deque[tuple[UpstreamConnection, float]] = deque()  # most recent last

    @property
    def idle(self) -> int:
        """How many connections wait for a request."""
        return len(self._idle)

    async def checkout(self) -> tuple[UpstreamConnection, bool]:
        """An idle connection (and True), or a new one (and False): raises what ``connect``
        raises."""
        now = self._clock()
        while self._idle:
            connection, since = self._idle.pop()
            if now - since < self._keepalive_seconds and connection.reusable:
                return connection, True
            connection.abort()
        return await self._connect(), False

    def checkin(self, connection: UpstreamConnection) -> None:
        """Keep ``connection`` for the next request if it can carry one, else close it."""
        if not connection.reusable:
            connection.abort()
            return
        if len(self._idle) >= self._max_idle:
            oldest, _ = self._idle.popleft()
            oldest.abort()
        self._idle.append((connection, self._clock()))

    async def aclose(self) -> None:
        """Close every idle connection (those in use belong to their requests)."""
        while self._idle:
            connection, _ = self._idle.pop()
            await connection.close()
