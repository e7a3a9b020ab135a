"""Audit retention on SQLite and PostgreSQL: a sweep deletes exactly the events older than
``audit_retention_days`` (batch by batch), and the server sweeps by itself once started."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from kubegate.server.audit_retention import AuditRetention
from kubegate.storage.engine import RoundTrips, create_engine
from kubegate.storage.migrate import upgrade
from kubegate.storage.models import AuditEvent, new_id
from tests.fixtures.api import make_settings, serving
from tests.fixtures.gateway import wait_for


def rows(ages_in_days: list[float]) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    made = []
    for age in ages_in_days:
        at = now - dt.timedelta(days=age)
        made.append(
            {
                "id": new_id(),
                "org_id": None,
                "actor_email": "",
                "action": "kube.request",
                "target_type": "kube",
                "target_id": "pods",
                "result": "success",
                "detail": {"age": age},
                "created_at": at,
                "recorded_at": at,
            }
        )
    return made


async def ages(engine: AsyncEngine) -> list[float]:
    async with engine.connect() as conn:
        found = await conn.scalars(select(AuditEvent.detail))
        return sorted(float(detail["age"]) for detail in found)


@pytest.mark.anyio
async def test_a_sweep_deletes_every_event_past_the_retention_and_nothing_newer(
    migrated_engine: AsyncEngine,
) -> None:
    old = [91.0, 100.0, 365.0, 400.0, 1000.0, 95.0, 92.0]  # more than one batch of three
    new = [0.0, 1.0, 89.5]
    async with migrated_engine.begin() as conn:
        await conn.execute(insert(AuditEvent), rows(old + new))
    trips = RoundTrips(migrated_engine)
    try:
        retention = AuditRetention(trips, 90, batch=3)
        assert await retention.sweep() == len(old)
        assert await ages(migrated_engine) == sorted(new)
        assert await retention.sweep() == 0  # nothing left to delete
    finally:
        trips.close()


def test_the_server_sweeps_old_events_by_itself(database_url: str, tmp_path: Path) -> None:
    seeded = rows([45.0, 31.0, 29.0, 2.0])
    asyncio.run(migrate_and_insert(database_url, seeded))
    db = create_sync_engine(database_url.replace("+aiosqlite", ""))

    def remaining() -> set[str] | None:
        with db.connect() as conn:
            present = set(conn.scalars(select(AuditEvent.id)))
        left = present & {str(r["id"]) for r in seeded}
        return left if len(left) < len(seeded) else None

    try:
        settings = make_settings(database_url, tmp_path / "data", audit_retention_days=30)
        with serving(settings):
            kept = wait_for(remaining, timeout=30, what="the retention sweep at start")
        assert kept == {str(r["id"]) for r in seeded[2:]}
    finally:
        db.dispose()


async def migrate_and_insert(database_url: str, values: list[dict[str, Any]]) -> None:
    """The schema a server would make, and these events in it, before any server runs."""
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(insert(AuditEvent), values)
    finally:
        await engine.dispose()
