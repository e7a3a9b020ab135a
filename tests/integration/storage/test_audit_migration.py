"""Migration 0006_audit copies old proxied events' request facts out of ``detail`` and
stamps old rows as recorded when they happened."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kubegate.storage.migrate import downgrade, upgrade

pytestmark = pytest.mark.anyio

_INSERT = text(
    "INSERT INTO audit_events (id, org_id, actor_user_id, actor_email, action, target_type, "
    "target_id, cluster_id, result, detail, created_at) VALUES (:id, NULL, NULL, '', :action, "
    "'', '', NULL, 'success', :detail, CURRENT_TIMESTAMP)"
)


async def test_0006_backfills_request_columns_of_old_proxied_events(engine: AsyncEngine) -> None:
    await upgrade(engine, "0005")
    request = {
        "verb": "delete",
        "resource": "pods",
        "subresource": "",
        "namespace": "team-a",
        "status": 403,
    }
    async with engine.begin() as conn:
        await conn.execute(
            _INSERT, {"id": "e1", "action": "kube.request", "detail": json.dumps(request)}
        )
        await conn.execute(
            _INSERT, {"id": "e2", "action": "cluster.register", "detail": json.dumps({})}
        )
    await upgrade(engine, "0006_audit")
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, verb, resource, subresource, namespace, status_code "
                "FROM audit_events ORDER BY id"
            )
        )
        assert [tuple(r) for r in rows] == [
            ("e1", "delete", "pods", None, "team-a", 403),
            ("e2", None, None, None, None, None),
        ]
        stamps = await conn.execute(
            text("SELECT count(*) FROM audit_events WHERE recorded_at = created_at")
        )
        assert stamps.scalar() == 2  # old rows count as recorded when they happened
    await downgrade(engine, "0005")
    async with engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM audit_events"))
        assert count == 2
