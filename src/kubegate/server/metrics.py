"""The server's Prometheus metrics: the gateway's, plus kube token mints, grants by status
and database round trips (``docs/metrics.md``).

One :class:`ServerMetrics` per app, with its own :class:`~prometheus_client.CollectorRegistry`
(tests run many servers in one process; the library's global registry would mix them).

Grants by status come from the database, so they are never read on the proxy's path nor on
every scrape: :meth:`ServerMetrics.refresh` runs one ``GROUP BY`` at most every
:data:`GRANTS_MAX_AGE` seconds, from the ``/metrics`` handler (an async route: the query
waits on the loop like any other), concurrent scrapes sharing it under a lock. Between
refreshes a scrape answers the last counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Engine, event, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from kubegate.domain.access import GrantStatus
from kubegate.errors import failure_reason
from kubegate.gateway.metrics import GatewayMetrics
from kubegate.storage.models import Grant

log = logging.getLogger(__name__)

GRANTS_MAX_AGE = 15.0
"""Seconds a scrape may answer grant counts from the previous query."""

# One statement and its answer: well under a millisecond on SQLite, a few on a nearby
# PostgreSQL; seconds mean a lock or an overloaded database.
DATABASE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

_STARTED = "kubegate_metrics_started"


class ServerMetrics:
    """Everything ``/metrics`` on the server reports."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.gateway = GatewayMetrics(self.registry)
        self.kube_token_mints = Counter(
            "kubegate_kube_token_mints",
            "Kube tokens minted and committed (kubegate cluster kube-token, kubeconfigs).",
            registry=self.registry,
        )
        self.mints_refused = self.gateway.rate_limited["kube_token_mints"]
        self.database_duration = Histogram(
            "kubegate_database_query_duration_seconds",
            "Round trip of one SQL statement to the database (execute to answer).",
            buckets=DATABASE_BUCKETS,
            registry=self.registry,
        )
        grants = Gauge(
            "kubegate_grants",
            f"Grants by status, counted in the database at most every {GRANTS_MAX_AGE:g} s.",
            ["status"],
            registry=self.registry,
        )
        self._grants = {status.value: grants.labels(status=status.value) for status in GrantStatus}
        self._clock = clock
        self._grants_at: float | None = None
        self._refreshing = asyncio.Lock()

    def instrument(self, engine: Engine) -> None:
        """Time every statement ``engine`` sends (SQLAlchemy's cursor events, on this engine
        only)."""
        histogram = self.database_duration

        def before(conn: Any, cursor: Any, statement: Any, *args: Any) -> None:
            conn.info.setdefault(_STARTED, []).append(time.perf_counter())

        def after(conn: Any, cursor: Any, statement: Any, *args: Any) -> None:
            started = conn.info.get(_STARTED)
            if started:
                histogram.observe(time.perf_counter() - started.pop())

        def failed(context: Any) -> None:
            started = context.connection.info.get(_STARTED) if context.connection else None
            if started:
                histogram.observe(time.perf_counter() - started.pop())

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        event.listen(engine, "handle_error", failed)

    async def refresh(self, sessions: async_sessionmaker[Any]) -> None:
        """Recount grants by status when the last count is older than
        :data:`GRANTS_MAX_AGE` (scrapes arriving together share one query)."""
        async with self._refreshing:
            now = self._clock()
            if self._grants_at is not None and now - self._grants_at < GRANTS_MAX_AGE:
                return
            try:
                async with sessions() as db:
                    rows = (
                        await db.execute(select(Grant.status, func.count()).group_by(Grant.status))
                    ).all()
            except Exception as exc:
                # The scrape still answers (the database's own latency and the proxy's numbers
                # matter most while it is down), with the last counts.
                log.warning("cannot count grants for the metrics: %s", failure_reason(exc))
                self._grants_at = now
                return
            counts = {str(status): int(count) for status, count in rows}
            for status, child in self._grants.items():
                child.set(counts.get(status, 0))
            self._grants_at = self._clock()
