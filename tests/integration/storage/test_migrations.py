"""Migrations build the schema the models describe, and undo it, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from kubegate.storage.migrate import current_revision, downgrade, head_revision, upgrade
from kubegate.storage.models import Base

pytestmark = pytest.mark.anyio

TABLES = {
    "organizations",
    "users",
    "memberships",
    "clusters",
    "grants",
    "api_tokens",
    "audit_events",
    "kube_tokens",
    "user_identities",
    "oidc_logins",
    "device_authorizations",
    "access_keys",
    "service_accounts",
}


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


async def test_upgrade_creates_every_table_and_matches_the_models(engine: AsyncEngine) -> None:
    assert await current_revision(engine) is None
    await upgrade(engine)
    assert await current_revision(engine) == head_revision()
    async with engine.connect() as conn:
        assert await conn.run_sync(_tables) == TABLES
        assert await conn.run_sync(_diff) == []


async def test_downgrade_to_base_removes_everything_and_upgrade_works_again(
    engine: AsyncEngine,
) -> None:
    await upgrade(engine)
    await downgrade(engine, "base")
    assert await current_revision(engine) is None
    async with engine.connect() as conn:
        assert await conn.run_sync(_tables) == set()
    await upgrade(engine)
    assert await current_revision(engine) == head_revision()


async def test_upgrade_twice_is_a_no_op(engine: AsyncEngine) -> None:
    await upgrade(engine)
    await upgrade(engine)
    assert await current_revision(engine) == head_revision()


async def test_0002_moves_deactivation_from_users_to_memberships_and_back(
    engine: AsyncEngine,
) -> None:
    from sqlalchemy import text

    await upgrade(engine, "0001")
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO organizations VALUES ('o1', 'org', CURRENT_TIMESTAMP)")
        )
        for user, active in (("u1", True), ("u2", False)):
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, display_name, is_active, created_at) "
                    "VALUES (:id, :email, '', :active, CURRENT_TIMESTAMP)"
                ),
                {"id": user, "email": f"{user}@example.com", "active": active},
            )
            await conn.execute(
                text("INSERT INTO memberships VALUES ('o1', :id, 'member', CURRENT_TIMESTAMP)"),
                {"id": user},
            )
    await upgrade(engine, "0002")
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT user_id, is_active FROM memberships ORDER BY 1"))
        assert [(r[0], bool(r[1])) for r in rows] == [("u1", True), ("u2", False)]
    await downgrade(engine, "0001")
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, is_active FROM users ORDER BY 1"))
        assert [(r[0], bool(r[1])) for r in rows] == [("u1", True), ("u2", False)]
