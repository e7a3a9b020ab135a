"""The database engine: URL resolution, connection setup and translating driver errors."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from kubegate.settings import Settings

SQLITE_FILE = "kubegate.db"
SQLITE_POOL_SIZE = 32


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
    # WAL: readers never wait for the writer. synchronous stays FULL (SQLite's default), so
    # a commit is on disk when it returns: a minted token is durable before it is answered.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _is_sqlite_file(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys, WAL and a busy timeout.

    PostgreSQL connections are pinged when taken from the pool (the server or the network
    may have dropped them). A SQLite file cannot go away under an open connection, and with
    aiosqlite each ping is a round trip to the connection's thread, so SQLite is not pinged.
    SQLite keeps more connections open than the pool's default five: every aiosqlite
    connection is a thread, and one opened past the pool's size is closed again on return, so
    a busy server would start and stop a thread per request.
    """
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {}
    if _is_sqlite_file(parsed):
        assert parsed.database is not None
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.update(pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE)
    elif not is_sqlite:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=5)
    engine = create_async_engine(url, **kwargs)
    if is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    """Sessions that keep loaded attributes after commit (responses read them)."""
    return async_sessionmaker(engine, expire_on_commit=False)


P = ParamSpec("P")
T = TypeVar("T")


class RoundTrips:
    """Runs a unit of synchronous SQLAlchemy work on one connection in one trip off the loop.

    For the hottest paths (batched credential lookups and kube token mints). PostgreSQL: on a
    connection of the async engine (``run_sync``; psycopg is natively async). A SQLite file:
    aiosqlite moves every DBAPI call (cursor, execute, fetch, close, commit) to the
    connection's thread and back, a dozen thread switches for a small transaction, and on a
    2-core machine those switches cost more CPU than the SQL; here the whole unit runs on a
    plain ``sqlite3`` connection (same pragmas) in a worker thread: one switch there, one back.
    Made and closed by the app's lifespan, with the async engine it sits beside.
    """

    def __init__(self, engine: AsyncEngine, *, threads: int = 4) -> None:
        self._engine = engine
        self._sync: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        url = engine.url
        if _is_sqlite_file(url):
            self._sync = sa_create_engine(
                url.set(drivername="sqlite+pysqlite"), pool_size=threads, max_overflow=threads
            )
            event.listen(self._sync, "connect", _sqlite_pragmas)
            self._executor = ThreadPoolExecutor(threads, thread_name_prefix="kubegate-db")

    @property
    def sync_engine(self) -> Engine | None:
        """The plain ``sqlite3`` engine the work runs on for a SQLite file (None otherwise:
        the async engine's connections carry it)."""
        return self._sync

    async def run(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``work(connection, *args, **kwargs)``; it commits what it writes itself (the
        connection is rolled back and returned to its pool after)."""
        if self._sync is None or self._executor is None:
            async with self._engine.connect() as conn:
                return await conn.run_sync(work, *args, **kwargs)
        call = functools.partial(self._run_sqlite, self._sync, work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    @staticmethod
    def _run_sqlite(
        sync: Engine,
        work: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        with sync.connect() as conn:
            return work(conn, *args, **kwargs)

    def close(self) -> None:
        """Stop the worker threads and close the SQLite connections (nothing may be running:
        the lifespan closes what uses this first)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()
