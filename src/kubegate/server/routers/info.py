"""``GET /api/v1/info``: what a client needs to know about the server before signing in.

Unauthenticated on purpose: the CLI reads it at login to show and pin the CA (trust on first
use, by its fingerprint) and to know which sign-in methods the server offers (a password,
SSO), and ``kubegate doctor`` prints the version. It holds only what any
TLS client sees anyway (the CA certificate) and what every kubeconfig says (the proxy URL).
"""

from __future__ import annotations

from fastapi import APIRouter

from kubegate import __version__
from kubegate.server.deps import State
from kubegate.server.kube_tokens import public_proxy_url
from kubegate.server.schemas.info import ServerInfo, SsoInfo

router = APIRouter(prefix="/api/v1", tags=["info"])


@router.get("/info", summary="The server's version, proxy URL and CA (no authentication)")
async def server_info(state: State) -> ServerInfo:
    settings = state.settings
    gateway = settings.gateway_enabled
    ca_pem = await state.gateway_ca.pem()
    return ServerInfo(
        version=__version__,
        gateway_enabled=gateway,
        proxy_url=public_proxy_url(state) if gateway else None,
        ca_pem=ca_pem.decode() if ca_pem is not None else None,
        password_login=settings.password_login,
        sso=SsoInfo(display_name=settings.oidc.display_name, login_path="/auth/oidc/login")
        if settings.oidc is not None
        else None,
    )
