"""Audit events for proxied requests, written in batches off the hot path.

Every proxied request (and every refusal) becomes an ``AuditEvent`` row with action
``kube.request``: identity, cluster, verb, resource, namespace, name, status, bytes and
duration, client address and user agent; exec and attach sessions also carry their command
and container. Requests only append to a bounded in-memory queue; a background task hands
what has gathered every :data:`FLUSH_INTERVAL` seconds to the
:class:`~kubegate.gateway.store.AuditStore`, which the server writes in one Core statement off
the event loop (the ORM's bulk insert on the loop was about 4 % of the gateway's main thread
under load).

If the database is down or slower than the traffic for longer than the queue lasts
(``audit_queue_max_events``), the oldest events are dropped: the proxy keeps serving, since
refusing kubectl because the audit store is slow would turn an outage of the database into
an outage of every cluster. :attr:`AuditTrail.dropped_total` counts every event ever dropped
(the ``kubegate_audit_dropped_events`` metric reads it); while writes fail, each round's
warning says how many were dropped, and the first write that succeeds logs an error with the
count lost since the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from kubegate.errors import KubegateError
from kubegate.gateway.store import AuditRecord, AuditStore

if TYPE_CHECKING:
    from kubegate.gateway.admission import Outcome

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
MAX_PENDING = 50_000
MAX_BATCH = 5_000
USER_AGENT_MAX = 256


def _column(value: object, limit: int) -> str | None:
    """A detail value as a column: None when absent or empty, clipped to ``limit``."""
    if value is None or value == "":
        return None
    return str(value)[:limit]


class AuditTrail:
    """A bounded queue of proxy audit events and the task that writes them."""

    def __init__(self, store: AuditStore, *, max_pending: int = MAX_PENDING):
        self._store = store
        self._pending: deque[AuditRecord] = deque()
        self._max_pending = max_pending
        self._dropped = 0  # since the last log line
        self._dropped_total = 0  # since start; never reset

    def add(
        self,
        *,
        org_id: str | None,
        user_id: str | None,
        email: str,
        cluster_id: str | None,
        status: int,
        detail: dict[str, Any],
        source: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Queue one event (never blocks, never raises).

        ``detail``'s ``verb``, ``resource``, ``subresource`` and ``namespace`` also go to
        their own columns; ``source`` is the client's address and ``user_agent`` its
        ``User-Agent`` header (clipped to :data:`USER_AGENT_MAX`)."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self._count_drops(1)
        self._pending.append(
            AuditRecord(
                org_id=org_id,
                user_id=user_id,
                email=email,
                cluster_id=cluster_id,
                resource=str(detail.get("resource", "")),
                status=status,
                detail=detail,
                created_at=dt.datetime.now(dt.UTC),
                verb=_column(detail.get("verb"), 32),
                subresource=_column(detail.get("subresource"), 64),
                namespace=_column(detail.get("namespace"), 63),
                source=_column(source, 64),
                user_agent=_column(user_agent, USER_AGENT_MAX),
            )
        )

    def add_request(
        self, outcome: Outcome, *, source: str, user_agent: str | None, duration: float
    ) -> None:
        """Queue the event of one proxied request (or refusal) as the forwarder ends it:
        who (with the access key or service account), the RequestInfo, bytes each way and
        ``duration`` in seconds, plus what admission noted (an exec's command and container).
        """
        info = outcome.info
        identity = outcome.identity
        detail: dict[str, Any] = {
            "method": outcome.method,
            "path": outcome.path[:512],
            "bytes_in": outcome.bytes_in,
            "bytes_out": outcome.bytes_out,
            "duration_ms": round(duration * 1000, 3),
            **outcome.extra,
        }
        if info is not None:
            detail.update(
                verb=info.verb,
                resource=info.resource,
                subresource=info.subresource,
                namespace=info.namespace,
                name=info.name,
                api_group=info.api_group,
            )
        if identity is not None and identity.access_key_id:
            detail["access_key_id"] = identity.access_key_id
        if identity is not None and identity.service_account_id:
            detail["service_account_id"] = identity.service_account_id
        self.add(
            org_id=identity.org_id if identity else None,
            user_id=identity.user_id if identity else None,
            email=identity.email if identity else "",
            cluster_id=outcome.cluster_id,
            status=outcome.status,
            detail=detail,
            source=source,
            user_agent=user_agent,
        )

    @property
    def pending(self) -> int:
        """Events queued and not yet written."""
        return len(self._pending)

    @property
    def dropped_total(self) -> int:
        """Events dropped because the queue was full, since this trail was made (only grows)."""
        return self._dropped_total

    def _count_drops(self, count: int) -> None:
        self._dropped += count
        self._dropped_total += count

    async def flush(self) -> None:
        """Write everything queued so far (in batches)."""
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
            try:
                await self._store.write_audit(batch)
            except KubegateError as exc:
                # Put them back (oldest first) and try again next round.
                self._pending.extendleft(reversed(batch))
                while len(self._pending) > self._max_pending:
                    self._pending.popleft()
                    self._count_drops(1)
                log.warning(
                    "cannot write proxy audit events yet (%d queued, %d dropped since the "
                    "last write): %s",
                    len(self._pending),
                    self._dropped,
                    exc.message,
                )
                return
        if self._dropped:
            log.error("dropped %d proxy audit events while the database was down", self._dropped)
            self._dropped = 0

    async def run(self) -> None:
        """Flush every :data:`FLUSH_INTERVAL` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())


def user_agent_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """A request's ``User-Agent``, for its audit event."""
    for name, value in headers:
        if name == b"user-agent":
            return value.decode("ascii", "replace")
    return None
