"""Minting kube tokens: the short-lived bearers kubectl sends to the Kubernetes API proxy.

A token is ``kg_kube_…`` (256 random bits); only its SHA-256 is stored, with the user, the
organisation, the cluster and the cluster's token epoch at mint time, so revoke-all (which
bumps the epoch) voids every older token. A token is minted as soon as the caller holds a
grant on the cluster, whatever the grant's status: kubectl gets Forbidden from Kubernetes
until the grant is applied. Admins need a grant too.

Minting is on the hot path of every ``kubectl`` run through the exec plugin, so it is one
transaction with one lookup (cluster and grant together), one insert and its audit event.
Each user's mint rate is limited in memory, per server process (:class:`MintLimiter`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kubegate.auth.hashing import new_secret, secret_hash
from kubegate.domain.access import NO_ACCESS, ClusterKind, require_cluster_access_supported
from kubegate.errors import NotFound, PermissionDenied, RateLimited, ValidationFailed
from kubegate.kubeconfig import build_kubeconfig, entry_name, render_kubeconfig
from kubegate.proxy.limits import RateLimiter, retry_after
from kubegate.server.audit import failures_recorded, record
from kubegate.server.deps import Principal, State, error_responses
from kubegate.server.tls import ensure_serving_tls
from kubegate.settings import Settings
from kubegate.storage.models import Cluster, Grant, KubeToken, is_id, new_id, utcnow

MINT_ACTION = "kube_token.mint"
TOKEN_PREFIX = "kg_kube"
MIN_TTL_SECONDS = 60

# Expired rows are deleted while minting, for the minting user only and at most this often
# per user and process, once they are this far past expiry (so a token that has just expired
# still answers "expired", not "unknown", for a while).
_CLEANUP_EVERY = 300.0
_CLEANUP_AFTER = dt.timedelta(hours=1)
_CLEANUP_TRACKED = 10_000


class MintLimiter:
    """Kube token mints per user, in memory in one server process.

    A token bucket per user: ``per_minute`` at once, refilled evenly over a minute. Also
    remembers when each user's expired tokens were last cleaned up, so that costs a query only
    now and then.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limiter = RateLimiter(rate=per_minute / 60, burst=per_minute)
        self._clock = clock
        self._cleanup_due: dict[str, float] = {}

    def take(self, user_id: str) -> None:
        """Spend one mint of ``user_id``'s, or raise RateLimited saying how long to wait."""
        wait = self._limiter.take(user_id, self._clock())
        if wait > 0:
            seconds = retry_after(wait)
            raise RateLimited(
                f"too many kube tokens minted; try again in {seconds} s", retry_after=seconds
            )

    def cleanup_due(self, user_id: str) -> bool:
        """True at most once per cleanup interval per user: time to delete old rows."""
        now = self._clock()
        if self._cleanup_due.get(user_id, 0.0) > now:
            return False
        if len(self._cleanup_due) >= _CLEANUP_TRACKED:
            self._cleanup_due = {k: t for k, t in self._cleanup_due.items() if t > now}
        self._cleanup_due[user_id] = now + _CLEANUP_EVERY
        return True


def mint_limiter(request: Request, state: State) -> MintLimiter:
    """FastAPI dependency: the process's :class:`MintLimiter`, made on first use.

    Kept on ``app.state.kubegate_mint_limiter`` until it moves into ``AppState``.
    """
    limiter: MintLimiter | None = getattr(request.app.state, "kubegate_mint_limiter", None)
    if limiter is None:
        limiter = MintLimiter(state.settings.kube_token_mints_per_minute)
        request.app.state.kubegate_mint_limiter = limiter
    return limiter


class GatewayCA:
    """The CA a kubeconfig trusts: the gateway's own (made on first use if the server has not
    made it yet) or the operator's ``tls_cert_file``; None when TLS is off.

    Read once per process and kept: the server serves the certificate it started with, so a
    file changed on disk only matters after a restart, which rereads it too.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = asyncio.Lock()
        self._pem: bytes | None = None

    async def pem(self) -> bytes | None:
        if not self._settings.tls:
            return None
        async with self._lock:
            if self._pem is None:
                # File I/O and key parsing: off the event loop.
                tls = await asyncio.to_thread(ensure_serving_tls, self._settings)
                self._pem = tls.ca_pem
        return self._pem


def gateway_ca(request: Request, state: State) -> GatewayCA:
    """FastAPI dependency: the process's :class:`GatewayCA`, made on first use.

    Kept on ``app.state.kubegate_gateway_ca`` until it moves into ``AppState``.
    """
    ca: GatewayCA | None = getattr(request.app.state, "kubegate_gateway_ca", None)
    if ca is None:
        ca = GatewayCA(state.settings)
        request.app.state.kubegate_gateway_ca = ca
    return ca


Limiter = Annotated[MintLimiter, Depends(mint_limiter)]
CA = Annotated[GatewayCA, Depends(gateway_ca)]


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A freshly minted kube token; ``token`` exists only here and in the answer."""

    token: str
    token_id: str
    expires_at: dt.datetime
    cluster_id: str
    cluster_name: str
    server: str


@dataclass(frozen=True, slots=True)
class IssuedKubeconfig:
    """A kubeconfig with an embedded kube token, and the file name to save it under."""

    filename: str
    text: str


def _lifetime(settings: Settings, ttl_seconds: int | None) -> int:
    """The token's lifetime: the setting, or a shorter one the caller asked for."""
    configured = settings.kube_token_ttl_seconds
    if ttl_seconds is None:
        return configured
    if not MIN_TTL_SECONDS <= ttl_seconds <= configured:
        raise ValidationFailed(
            f"ttl_seconds must be between {MIN_TTL_SECONDS} and {configured} (this server's "
            f"kube token lifetime); got {ttl_seconds}",
            details={"field": "ttl_seconds"},
        )
    return ttl_seconds


class KubeTokenIssuer:
    """Mints kube tokens, bare or in a kubeconfig, with one process's settings, mint limiter,
    gateway CA and proxy URL (``proxy_url``: the proxy's base URL as clients reach it)."""

    def __init__(
        self, settings: Settings, limiter: MintLimiter, ca: GatewayCA, proxy_url: str
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.ca = ca
        self.proxy_url = proxy_url

    def server(self, cluster_id: str) -> str:
        """The cluster's URL on the Kubernetes API proxy."""
        return f"{self.proxy_url}/clusters/{cluster_id}"

    async def mint(
        self,
        db: AsyncSession,
        sessions: async_sessionmaker[Any],
        caller: Principal,
        cluster_id: str,
        *,
        ttl_seconds: int | None = None,
        via: str,
    ) -> MintedToken:
        """Mint a kube token for the caller on the cluster, checked in this order: the
        cluster exists in the caller's organisation (404), supports Cluster Access (409), the
        caller holds a grant on it (403), the requested lifetime fits (422), the caller's
        mint rate (429).

        One transaction holds the token and its ``kube_token.mint`` audit event (``via``
        says which endpoint); a refused attempt is audited on its own. The token is never
        logged or audited.
        """
        actor = caller.actor
        fields = {"target_type": "cluster", "target_id": cluster_id, "cluster_id": cluster_id}
        async with failures_recorded(sessions, caller, MINT_ACTION, **fields), db.begin():
            row = None
            if is_id(cluster_id):
                holds_grant = (
                    select(Grant.id)
                    .where(Grant.cluster_id == cluster_id, Grant.user_id == actor.user_id)
                    .exists()
                )
                row = (
                    await db.execute(
                        select(
                            Cluster.org_id,
                            Cluster.name,
                            Cluster.kind,
                            Cluster.token_epoch,
                            holds_grant,
                        ).where(Cluster.id == cluster_id)
                    )
                ).first()
            # Another organisation's cluster answers exactly like a missing one.
            if row is None or row.org_id != actor.org_id:
                raise NotFound(f"cluster {cluster_id[:64]} not found")
            org_id, name, kind, epoch, has_grant = row
            require_cluster_access_supported(ClusterKind(kind))
            if not has_grant:
                raise PermissionDenied(NO_ACCESS)
            lifetime = _lifetime(self.settings, ttl_seconds)
            self.limiter.take(actor.user_id)

            now = utcnow()
            # Whole seconds: the answer (an ExecCredential's expirationTimestamp) and the
            # stored expiry are the same instant.
            expires_at = (now + dt.timedelta(seconds=lifetime)).replace(microsecond=0)
            token, token_id = new_secret(TOKEN_PREFIX), new_id()
            if self.limiter.cleanup_due(actor.user_id):
                await db.execute(
                    delete(KubeToken)
                    .where(
                        KubeToken.user_id == actor.user_id,
                        KubeToken.expires_at < now - _CLEANUP_AFTER,
                    )
                    .execution_options(synchronize_session=False)
                )
            db.add(
                KubeToken(
                    id=token_id,
                    token_hash=secret_hash(token),
                    user_id=actor.user_id,
                    cluster_id=cluster_id,
                    org_id=org_id,
                    token_epoch=epoch,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            record(
                db,
                caller,
                MINT_ACTION,
                target_type="kube_token",
                target_id=token_id,
                cluster_id=cluster_id,
                detail={
                    "via": via,
                    "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
                    "token_epoch": epoch,
                },
            )
        return MintedToken(
            token=token,
            token_id=token_id,
            expires_at=expires_at,
            cluster_id=cluster_id,
            cluster_name=name,
            server=self.server(cluster_id),
        )

    async def kubeconfig(
        self,
        db: AsyncSession,
        sessions: async_sessionmaker[Any],
        caller: Principal,
        cluster_id: str,
    ) -> IssuedKubeconfig:
        """A complete kubeconfig for the cluster around a freshly minted kube token (same
        checks and rate limit as :meth:`mint`), trusting the gateway's CA when TLS is on."""
        minted = await self.mint(db, sessions, caller, cluster_id, via="kubeconfig")
        config = build_kubeconfig(
            name=minted.cluster_name,
            server=minted.server,
            ca_pem=await self.ca.pem(),
            token=minted.token,
        )
        return IssuedKubeconfig(
            filename=f"{entry_name(minted.cluster_name)}.kubeconfig",
            text=render_kubeconfig(config),
        )


def kube_token_issuer(state: State, limiter: Limiter, ca: CA) -> KubeTokenIssuer:
    """FastAPI dependency: the issuer, with the port the running proxy really listens on."""
    return KubeTokenIssuer(
        state.settings, limiter, ca, state.settings.proxy_url(bound_port=state.proxy.port)
    )


Issuer = Annotated[KubeTokenIssuer, Depends(kube_token_issuer)]


NO_STORE = {"Cache-Control": "no-store"}


class YamlResponse(Response):
    """A YAML document (a kubeconfig)."""

    media_type = "application/yaml"


def kubeconfig_response(issued: IssuedKubeconfig) -> YamlResponse:
    """The download: YAML, saved as ``kubegate-<cluster>.kubeconfig``, never cached."""
    return YamlResponse(
        issued.text,
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="{issued.filename}"',
        },
    )


def kubeconfig_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` of a kubeconfig route (``response_class=YamlResponse``): the
    YAML document, and the JSON error body for ``statuses`` (plus ``deps.ALWAYS``).

    The error bodies are spelled out rather than given as ``model``, which FastAPI would file
    under the route's YAML media type.
    """
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    return {
        200: {
            "description": "A kubeconfig (YAML) with one cluster, user and context named "
            "kubegate-<cluster name>, the context current, and a kube token embedded.",
        },
        **{status: {"content": error} for status in error_responses(*statuses)},
    }
