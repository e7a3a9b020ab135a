"""``create_app(settings)``: the REST API and portal API as one FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from kubegate import __version__
from kubegate.server import handlers
from kubegate.server.bootstrap import Announce, bootstrap
from kubegate.server.middleware import AccessLog, BodyLimit
from kubegate.server.routers import (
    agent,
    audit_log,
    auth,
    clusters,
    grants,
    health,
    portal,
    users,
)
from kubegate.server.state import AppState
from kubegate.server.tunnels import TunnelRegistry
from kubegate.settings import Settings
from kubegate.storage.engine import create_engine, database_url, session_factory
from kubegate.storage.migrate import upgrade


def _silent(email: str, password: str, generated: bool) -> None:
    del email, password, generated


def create_app(settings: Settings, announce: Announce = _silent) -> FastAPI:
    """Build the app. The lifespan migrates the database and bootstraps the first admin."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url(settings))
        try:
            await upgrade(engine)
            sessions = session_factory(engine)
            tunnels = TunnelRegistry(sessions)
            state = AppState(settings=settings, engine=engine, sessions=sessions, tunnels=tunnels)
            await bootstrap(state.sessions, settings, announce)
            app.state.kubegate = state
            try:
                yield
            finally:
                await tunnels.close_all("the server is shutting down")
        finally:
            await engine.dispose()

    app = FastAPI(
        title="kubegate",
        version=__version__,
        summary="Scoped, short-lived kubectl access to Kubernetes clusters.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    handlers.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(AccessLog)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(clusters.router)
    app.include_router(users.router)
    app.include_router(audit_log.router)
    app.include_router(grants.router)
    app.include_router(portal.router)
    app.include_router(agent.router)
    return app


def uvicorn_options() -> dict[str, Any]:
    """uvicorn settings the tunnel depends on (DESIGN §5): the sans-IO ``websockets``
    implementation, no per-message compression (it costs CPU on already-framed HTTP/2
    bytes), and room for the transport's 1 MiB messages."""
    return {"ws": "websockets-sansio", "ws_per_message_deflate": False, "ws_max_size": 4 << 20}
