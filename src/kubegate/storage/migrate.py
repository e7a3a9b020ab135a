"""Running Alembic migrations from kubegate itself (server start, ``kubegate db``, tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config, built in code: no alembic.ini to keep in step."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this build knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _migrate(engine: AsyncEngine, step: Callable[[Connection], None]) -> None:
    """Run ``step`` in one transaction.

    On SQLite, foreign keys are off meanwhile: batch migrations recreate tables, and dropping
    the old copy of a parent table would otherwise cascade into its children (the pragma is
    a no-op inside a transaction, so it is set before the transaction starts).
    """
    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            await conn.run_sync(step)
            if sqlite:
                problems = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if problems:
                    raise RuntimeError(f"migration broke foreign keys: {problems[:5]}")
            await conn.commit()
        finally:
            if sqlite:
                await conn.rollback()
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``, in one transaction."""
    await _migrate(engine, lambda c: command.upgrade(alembic_config(c), revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` empties it)."""
    await _migrate(engine, lambda c: command.downgrade(alembic_config(c), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
