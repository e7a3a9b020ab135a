"""Audit retention: events older than ``audit_retention_days`` are deleted in the background.

The lifespan starts :meth:`AuditRetention.run` when the setting is above 0: a sweep at start,
then one every :data:`SWEEP_INTERVAL`. A sweep deletes in batches of :data:`BATCH` rows, each
in a transaction of its own, so the first sweep after the setting was lowered (or after a
long pause) never holds the table in one huge transaction while the proxy writes its events.
Retention is by ``created_at`` (when it happened), which ``ix_audit_events_created_at``
serves. Several replicas sweeping at once only delete the same old rows; a database that is
down makes the sweep wait for the next round.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import Connection, delete, select
from sqlalchemy.exc import SQLAlchemyError

from kubegate.storage.engine import RoundTrips
from kubegate.storage.models import AuditEvent, utcnow

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600.0
BATCH = 5_000


class AuditRetention:
    """Deletes audit events older than ``days`` days (``days`` must be at least 1)."""

    def __init__(self, trips: RoundTrips, days: int, *, batch: int = BATCH) -> None:
        if days < 1:
            raise ValueError("retention needs at least one day; 0 means keep forever")
        self._trips = trips
        self._age = dt.timedelta(days=days)
        self._batch = batch

    async def sweep(self) -> int:
        """Delete every event older than the retention, batch by batch; how many went."""
        cutoff = utcnow() - self._age
        total = 0
        while True:
            deleted = await self._trips.run(_delete_batch, cutoff, self._batch)
            total += deleted
            if deleted < self._batch:
                break
        if total:
            log.info("audit retention: deleted %d events older than %s", total, cutoff.isoformat())
        return total

    async def run(self) -> None:
        """Sweep now and every :data:`SWEEP_INTERVAL` seconds until cancelled."""
        while True:
            try:
                await self.sweep()
            except SQLAlchemyError as exc:
                log.warning(
                    "audit retention: cannot delete old events now (%s); next try in %.0f s",
                    type(exc).__name__,
                    SWEEP_INTERVAL,
                )
            await asyncio.sleep(SWEEP_INTERVAL)


def _delete_batch(connection: Connection, cutoff: dt.datetime, batch: int) -> int:
    oldest = select(AuditEvent.id).where(AuditEvent.created_at < cutoff).limit(batch)
    result = connection.execute(delete(AuditEvent).where(AuditEvent.id.in_(oldest)))
    connection.commit()
    return int(result.rowcount)
