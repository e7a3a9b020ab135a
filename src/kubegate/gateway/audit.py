"""Audit events for proxied requests, written in batches off the hot path.

Every proxied request (and every refusal) becomes an ``AuditEvent`` row with action
``kube.request``: identity, cluster, verb, resource, namespace, name, status, bytes and
duration; exec and attach sessions also carry their command. Requests only append to a
bounded in-memory queue; a background task hands what has gathered every
:data:`FLUSH_INTERVAL` seconds to the :class:`~kubegate.gateway.store.AuditStore`, which the
server writes in one Core statement off the event loop (the ORM's bulk insert on the loop
was about 4 % of the gateway's main thread under load). If the database stays down longer
than the queue lasts, the oldest events are dropped and the loss is logged with a count (the proxy
keeps serving: refusing kubectl because the audit store is slow would turn an outage of the
database into an outage of every cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from typing import Any

from kubegate.errors import KubegateError
from kubegate.gateway.store import AuditRecord, AuditStore

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
MAX_PENDING = 50_000
MAX_BATCH = 5_000


class AuditTrail:
    """A bounded queue of proxy audit events and the task that writes them."""

    def __init__(self, store: AuditStore, *, max_pending: int = MAX_PENDING):
        self._store = store
        self._pending: deque[AuditRecord] = deque()
        self._max_pending = max_pending
        self._dropped = 0

    def add(
        self,
        *,
        org_id: str | None,
        user_id: str | None,
        email: str,
        cluster_id: str | None,
        status: int,
        detail: dict[str, Any],
    ) -> None:
        """Queue one event (never blocks, never raises)."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self._dropped += 1
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
            )
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

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
                    self._dropped += 1
                log.warning("cannot write proxy audit events yet: %s", exc.message)
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
