"""What the running server holds: built in the app's lifespan, reached through ``Depends``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from kubegate.server.tunnels import TunnelRegistry
from kubegate.settings import Settings

if TYPE_CHECKING:
    from kubegate.proxy.authority import Authority
    from kubegate.proxy.server import ProxyServer


@dataclass
class AppState:
    """Engine, session factory, settings and connected agents of one server process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[Any]
    tunnels: TunnelRegistry
    authority: Authority
    proxy: ProxyServer
