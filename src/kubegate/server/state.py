"""What the running server holds: built in the app's lifespan, reached through ``Depends``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from kubegate.auth.device_codes import WrongCodeLimit
from kubegate.auth.oidc_provider import OidcProvider
from kubegate.gateway.authority import Authority
from kubegate.gateway.listener import ProxyServer
from kubegate.gateway.registry import TunnelRegistry
from kubegate.server.credentials import CredentialLookup
from kubegate.server.key_lookup import AccessKeyLookup
from kubegate.server.metrics import ServerMetrics
from kubegate.server.minter import Minter, MintLimiter
from kubegate.server.tls import GatewayCA
from kubegate.settings import Settings


@dataclass
class AppState:
    """Engine, session factory, settings and connected agents of one server process; the
    credential lookup every authenticated request goes through (and the access key lookup
    of those made with a key); and what kube token mints
    share: the minter that checks and commits them in batches, its per-user mint limiter and
    the CA kubeconfigs trust."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[Any]
    tunnels: TunnelRegistry
    authority: Authority
    proxy: ProxyServer
    credentials: CredentialLookup
    minter: Minter
    mint_limiter: MintLimiter
    gateway_ca: GatewayCA
    access_keys: AccessKeyLookup
    # Wrong codes typed on the kubegate login --sso approval page, per person.
    device_wrong_codes: WrongCodeLimit = field(default_factory=WrongCodeLimit)
    # The [oidc] provider people sign in with (None: no SSO on this server).
    oidc: OidcProvider | None = None
    # What GET /metrics reports (its own registry: never the library's global one).
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
