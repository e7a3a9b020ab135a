"""The database engine: URL resolution, connection setup and translating driver errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from kubegate.settings import Settings

SQLITE_FILE = "kubegate.db"


def database_url(settings: Settings) -> str:
    """The SQLAlchemy async URL: ``KUBEGATE_DATABASE_URL`` or SQLite in the data dir."""
    if not settings.database_url:
        return f"sqlite+aiosqlite:///{Path(settings.data_dir) / SQLITE_FILE}"
    return async_url(settings.database_url)


def async_url(url: str) -> str:
    """Map plain ``postgresql://`` and ``sqlite://`` URLs to the async drivers we ship."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    else:
        raise ValueError(f"unsupported database {backend!r}: use postgresql:// or sqlite://")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys, WAL and a busy timeout."""
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if not is_sqlite:
        kwargs.update(pool_size=10, max_overflow=20, pool_timeout=5)
    engine = create_async_engine(url, **kwargs)
    if is_sqlite:
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    """Sessions that keep loaded attributes after commit (responses read them)."""
    return async_sessionmaker(engine, expire_on_commit=False)
