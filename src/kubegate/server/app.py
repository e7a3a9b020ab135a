"""``create_app(settings)``: the REST API and portal API as one FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from kubegate import __version__
from kubegate.auth.oidc_provider import OidcProvider
from kubegate.gateway.audit import AuditTrail
from kubegate.gateway.authority import Authority
from kubegate.gateway.forward import Forwarder
from kubegate.gateway.listener import ProxyServer, proxy_tls_context
from kubegate.gateway.registry import TunnelRegistry
from kubegate.gateway.store import GatewayStore
from kubegate.server import handlers
from kubegate.server.audit_retention import AuditRetention
from kubegate.server.bootstrap import Announce, bootstrap
from kubegate.server.credentials import CredentialLookup
from kubegate.server.gateway_store import SqlGatewayStore
from kubegate.server.key_lookup import AccessKeyLookup
from kubegate.server.metrics import ServerMetrics
from kubegate.server.middleware import AccessLog, BodyLimit
from kubegate.server.minter import Minter, MintLimiter
from kubegate.server.portal_render import STATIC_PATH, PortalStatic, PortalTemplates
from kubegate.server.routers import (
    access_keys,
    agent,
    audit_log,
    auth,
    clusters,
    device,
    grants,
    health,
    info,
    metrics,
    oidc,
    portal,
    portal_access_pages,
    portal_admin_kubeconfig_pages,
    portal_audit_pages,
    portal_key_pages,
    portal_member_pages,
    portal_pages,
    portal_register_pages,
    portal_service_account_pages,
    service_accounts,
    users,
)
from kubegate.server.state import AppState
from kubegate.server.tls import GatewayCA, ensure_serving_tls
from kubegate.settings import Settings
from kubegate.storage.engine import RoundTrips, create_engine, database_url, session_factory
from kubegate.storage.migrate import upgrade


def _silent(email: str, password: str, generated: bool) -> None:
    del email, password, generated


def create_app(settings: Settings, announce: Announce = _silent) -> FastAPI:
    """Build the app. The lifespan migrates the database and bootstraps the first admin."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Whatever was started is closed in reverse order, even when a later step raises.
        async with contextlib.AsyncExitStack() as stack:
            engine = create_engine(database_url(settings))
            stack.push_async_callback(engine.dispose)
            trips = RoundTrips(engine)
            stack.callback(trips.close)
            server_metrics = ServerMetrics()
            server_metrics.instrument(engine.sync_engine)
            if trips.sync_engine is not None:
                server_metrics.instrument(trips.sync_engine)
            await upgrade(engine)
            sessions = session_factory(engine)
            store: GatewayStore = SqlGatewayStore(sessions, trips)
            tunnels = TunnelRegistry(store)
            authority = Authority(store)
            stack.push_async_callback(authority.close)
            tunnels.on_access_changed(authority.cluster_changed)
            audit = AuditTrail(store, max_pending=settings.audit_queue_max_events)
            server_metrics.gateway.watch(tunnels=tunnels, audit=audit)
            forwarder = Forwarder(
                settings=settings,
                authority=authority,
                tunnels=tunnels,
                audit=audit,
                metrics=server_metrics.gateway,
            )
            proxy = ProxyServer(
                forwarder,
                host=settings.host,
                port=settings.proxy_port,
                tls=_proxy_tls(settings),
            )
            mint_limiter = MintLimiter(
                settings.kube_token_mints_per_minute, refused=server_metrics.mints_refused
            )
            credentials = CredentialLookup(trips)
            key_lookup = AccessKeyLookup(trips)
            minter = Minter(trips, settings, mint_limiter, minted=server_metrics.kube_token_mints)
            state = AppState(
                settings=settings,
                engine=engine,
                sessions=sessions,
                tunnels=tunnels,
                authority=authority,
                proxy=proxy,
                credentials=credentials,
                minter=minter,
                mint_limiter=mint_limiter,
                gateway_ca=GatewayCA(settings),
                access_keys=key_lookup,
                oidc=OidcProvider(settings.oidc) if settings.oidc else None,
                metrics=server_metrics,
            )
            if state.oidc is not None:
                stack.push_async_callback(state.oidc.aclose)
            await bootstrap(state.sessions, settings, announce)
            app.state.kubegate = state
            audit_task = asyncio.create_task(audit.run(), name="proxy audit")
            stack.push_async_callback(_stop, audit_task)  # it writes what is left first
            if settings.audit_retention_days:
                retention = AuditRetention(trips, settings.audit_retention_days)
                retention_task = asyncio.create_task(retention.run(), name="audit retention")
                stack.push_async_callback(_stop, retention_task)
            stack.push_async_callback(tunnels.close_all, "the server is shutting down")
            await proxy.start()
            stack.push_async_callback(proxy.close)
            credentials.start()
            stack.push_async_callback(credentials.close)
            key_lookup.start()
            stack.push_async_callback(key_lookup.close)
            # Requests have finished by teardown; mints still queued are written before the end.
            minter.start()
            stack.push_async_callback(minter.close)
            yield

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
    app.include_router(metrics.router)
    app.include_router(info.router)
    app.include_router(auth.router)
    app.include_router(device.router)
    app.include_router(clusters.router)
    app.include_router(users.router)
    app.include_router(access_keys.router)
    app.include_router(access_keys.admin_router)
    app.include_router(audit_log.router)
    app.include_router(service_accounts.router)
    app.include_router(grants.router)
    app.include_router(portal.router)
    app.include_router(oidc.router)
    for router in _portal_page_routers():
        app.include_router(router)
    app.mount(STATIC_PATH, PortalStatic(), name="portal-static")
    app.include_router(agent.router)
    return app


@functools.cache
def _portal_page_routers() -> tuple[APIRouter, ...]:
    """The portal's page routers, built once per process and shared by every app: building
    one analyses each route's parameters (some 20 ms a route, most of ``create_app``'s time),
    and neither they nor the templates hold anything of one app's own."""
    templates = PortalTemplates()
    return (
        portal_pages.pages_router(templates),
        # before the Access view, whose /portal/clusters/{cluster_id} would match .../register
        portal_register_pages.register_pages_router(templates),
        portal_access_pages.access_pages_router(templates),
        portal_admin_kubeconfig_pages.admin_kubeconfig_pages_router(templates),
        portal_key_pages.key_pages_router(templates),
        portal_service_account_pages.service_account_pages_router(templates),
        portal_audit_pages.audit_pages_router(templates),
        portal_member_pages.member_pages_router(templates),
    )


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _proxy_tls(settings: Settings) -> ssl.SSLContext | None:
    """The proxy serves the API's certificate (the CA every kubeconfig embeds)."""
    if not settings.tls:
        return None
    tls = ensure_serving_tls(settings)
    return proxy_tls_context(str(tls.cert_file), str(tls.key_file))


def uvicorn_options() -> dict[str, Any]:
    """uvicorn settings the tunnel depends on (DESIGN §5): the sans-IO ``websockets``
    implementation, no per-message compression (it costs CPU on already-framed HTTP/2
    bytes), and room for the transport's 1 MiB messages."""
    return {"ws": "websockets-sansio", "ws_per_message_deflate": False, "ws_max_size": 4 << 20}
