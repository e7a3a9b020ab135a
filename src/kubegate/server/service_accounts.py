"""Service accounts for automation, and kubeconfigs that bypass the gateway.

A managed ServiceAccount is a row here and a real Kubernetes ServiceAccount plus one binding
on the cluster, which the agent creates, reconciles and repairs like a grant's binding
(``rbac_sync`` sends it in the desired set; its status moves the same way). Its kubeconfig
comes two ways:

- **through the gateway** (default): a kube token bound to the account (``kube_tokens.
  service_account_id``); the proxy acts as the account and the agent impersonates
  ``system:serviceaccount:NS:NAME``. Deleting the account deletes the token at once
  (the proxy re-checks the cluster and closes its streams); so does revoke-all's epoch;
- **direct** (``direct``): a bound token from the TokenRequest API, minted by the agent,
  with the apiserver URL and CA the operator set or the agent reported. It works while
  kubegate is down and dies when the ServiceAccount does (bound tokens carry its uid).

The **admin kubeconfig** (break-glass) is direct too: a bound token of the agent's
``kubegate-break-glass`` ServiceAccount, bound to ``cluster-admin``, for organisation admins
who hold a ``cluster-admin`` grant on the whole cluster; every issuance and every refusal is
audited as ``cluster.admin_kubeconfig``.

Only admins manage service accounts or take their kubeconfigs; access keys may (within
their scope, ``key_policy``), except for the admin kubeconfig, which needs a person's login.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kubegate.auth.hashing import new_secret, secret_hash
from kubegate.domain.access import (
    ClusterKind,
    GrantStatus,
    Role,
    dns1123_label_problem,
    require_admin,
    require_cluster_access_supported,
)
from kubegate.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from kubegate.gateway.registry import TunnelRegistry
from kubegate.kube.kubeconfig import build_kubeconfig, entry_name, render_kubeconfig
from kubegate.server.audit import failures_recorded, record
from kubegate.server.grant_writes import bump_revision
from kubegate.server.kube_tokens import IssuedKubeconfig, KubeTokenIssuer
from kubegate.server.minter import TOKEN_PREFIX
from kubegate.server.pagination import PageRequest, next_cursor, paginate
from kubegate.server.principal import Principal
from kubegate.server.routers.clusters import get_cluster
from kubegate.server.schemas import Page
from kubegate.server.schemas.service_accounts import (
    ServiceAccountCreate,
    ServiceAccountKubeconfigRequest,
    ServiceAccountOut,
)
from kubegate.settings import Settings
from kubegate.storage.models import Cluster, Grant, KubeToken, ServiceAccount, is_id, utcnow

BREAK_GLASS_NAME = "kubegate-break-glass"
"""The admin kubeconfig's ServiceAccount, in the agent's namespace (bound to cluster-admin)."""
FALLBACK_NAMESPACE = "kube-system"
"""Where the break-glass account lives when the agent reported no namespace of its own."""
MIN_SECONDS = 600  # the TokenRequest API's own minimum
SERVICE_ACCOUNT_DEFAULT_SECONDS = 86400
ADMIN_DEFAULT_SECONDS = 3600
ADMIN_ACTION = "cluster.admin_kubeconfig"
KUBECONFIG_ACTION = "service_account.kubeconfig"


def service_account_out(account: ServiceAccount) -> ServiceAccountOut:
    """The API's view of one managed ServiceAccount."""
    return ServiceAccountOut(
        id=account.id,
        cluster_id=account.cluster_id,
        name=account.name,
        namespace=account.namespace,
        username=f"system:serviceaccount:{account.namespace}:{account.name}",
        role=account.role,
        scope=account.scope,
        status=account.status,
        status_detail=account.status_detail,
        created_by=account.created_by,
        created_at=account.created_at,
        updated_at=account.updated_at,
    )


def _label(value: str, field: str, what: str) -> str:
    problem = dns1123_label_problem(value)
    if problem is not None:
        raise ValidationFailed(f"{what} {value[:80]!r} {problem}", details={"field": field})
    return value


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ValidationFailed(
            f"role must be one of {allowed}; got {value[:64]!r}", details={"field": "role"}
        ) from None


def lifetime(requested: int | None, default: int, maximum: int, setting: str) -> int:
    """A token's lifetime in seconds: ``requested`` if it fits, else 422 naming the bounds."""
    if requested is None:
        return min(default, maximum)
    if not MIN_SECONDS <= requested <= maximum:
        raise ValidationFailed(
            f"duration_seconds must be between {MIN_SECONDS} and {maximum} (this server's "
            f"{setting}); got {requested}",
            details={"field": "duration_seconds"},
        )
    return requested


@dataclass(frozen=True, slots=True)
class DirectTarget:
    """Where a kubeconfig that bypasses the gateway points."""

    server: str
    ca_pem: bytes | None


def direct_target(cluster: Cluster) -> DirectTarget:
    """The cluster's apiserver as the operator set it, else as its agent reported it (409
    when kubegate knows neither)."""
    url = cluster.api_server_url or cluster.agent_api_server_url
    if not url:
        raise Conflict(
            f"kubegate does not know the apiserver address of cluster {cluster.name}: run its "
            "agent with --api-server-url URL (or KUBEGATE_API_SERVER_URL), or set it with "
            f"kubegate cluster set-api-server {cluster.name} URL"
        )
    ca = cluster.api_server_ca if cluster.api_server_url else cluster.agent_api_server_ca
    return DirectTarget(url, ca.encode() if ca else None)


class ServiceAccounts:
    """Managed ServiceAccounts of a cluster, and the kubeconfigs that use them, for one
    caller."""

    def __init__(
        self,
        db: AsyncSession,
        sessions: async_sessionmaker[Any],
        settings: Settings,
        caller: Principal,
        tunnels: TunnelRegistry,
        issuer: KubeTokenIssuer,
    ) -> None:
        self.db = db
        self.sessions = sessions
        self.settings = settings
        self.caller = caller
        self.tunnels = tunnels
        self.issuer = issuer

    async def _cluster(self, cluster_id: str, action: str) -> Cluster:
        """The cluster, checked in order: exists in the caller's org (404), the caller is an
        admin (403), Cluster Access is supported (409)."""
        cluster = await get_cluster(self.db, self.caller.actor, cluster_id)
        require_admin(self.caller.actor, action)
        require_cluster_access_supported(ClusterKind(cluster.kind))
        return cluster

    async def _account(self, cluster: Cluster, service_account_id: str) -> ServiceAccount:
        account = (
            await self.db.get(ServiceAccount, service_account_id)
            if is_id(service_account_id)
            else None
        )
        if account is None or account.cluster_id != cluster.id:
            raise NotFound(
                f"service account {service_account_id[:64]} not found on cluster {cluster.name}"
            )
        return account

    async def list(self, cluster_id: str, page: PageRequest) -> Page[ServiceAccountOut]:
        async with self.db.begin():
            await self._cluster(cluster_id, "see service accounts")
            query = select(ServiceAccount).where(ServiceAccount.cluster_id == cluster_id)
            rows = await self.db.scalars(
                paginate(query, page, ServiceAccount.created_at, ServiceAccount.id)
            )
            found, cursor = next_cursor(list(rows.all()), page)
        return Page[ServiceAccountOut](
            items=[service_account_out(a) for a in found], next_cursor=cursor
        )

    async def create(self, cluster_id: str, body: ServiceAccountCreate) -> ServiceAccountOut:
        fields = {"target_type": "cluster", "target_id": cluster_id, "cluster_id": cluster_id}
        async with (
            failures_recorded(self.sessions, self.caller, "service_account.create", **fields),
            self.db.begin(),
        ):
            cluster = await self._cluster(cluster_id, "create service accounts")
            name = _label(body.name, "name", "service account name")
            namespace = _label(body.namespace, "namespace", "namespace")
            if name == BREAK_GLASS_NAME:
                raise ValidationFailed(
                    f"{BREAK_GLASS_NAME} is the admin kubeconfig's own account; choose another "
                    "name",
                    details={"field": "name"},
                )
            role = _role(body.role)
            if body.scope not in ("namespace", "cluster"):
                raise ValidationFailed(
                    f"scope must be namespace or cluster; got {body.scope[:64]!r}",
                    details={"field": "scope"},
                )
            now = utcnow()
            cluster_name = cluster.name  # a failed flush expires what the session loaded
            online = self.tunnels.is_online(cluster.id)
            account = ServiceAccount(
                org_id=cluster.org_id,
                cluster_id=cluster.id,
                name=name,
                namespace=namespace,
                role=role.value,
                scope=body.scope,
                status=(GrantStatus.PENDING if online else GrantStatus.CLUSTER_OFFLINE).value,
                status_detail="" if online else "the cluster's agent is not connected",
                created_by=self.caller.actor.user_id,
                created_at=now,
                updated_at=now,
            )
            self.db.add(account)
            try:
                await self.db.flush()
            except IntegrityError as exc:
                raise Conflict(
                    f"service account {namespace}/{name} already exists on cluster {cluster_name}",
                    details={"field": "name"},
                ) from exc
            await bump_revision(self.db, cluster.id)
            record(
                self.db,
                self.caller,
                "service_account.create",
                target_type="service_account",
                target_id=account.id,
                cluster_id=cluster.id,
                detail={
                    "name": name,
                    "namespace": namespace,
                    "role": role.value,
                    "scope": body.scope,
                },
            )
        self.tunnels.desired_changed(cluster.id)
        return service_account_out(account)

    async def delete(self, cluster_id: str, service_account_id: str) -> None:
        fields = {
            "target_type": "service_account",
            "target_id": service_account_id,
            "cluster_id": cluster_id,
        }
        async with (
            failures_recorded(self.sessions, self.caller, "service_account.delete", **fields),
            self.db.begin(),
        ):
            cluster = await self._cluster(cluster_id, "delete service accounts")
            account = await self._account(cluster, service_account_id)
            await self.db.execute(
                delete(KubeToken).where(KubeToken.service_account_id == account.id)
            )
            await self.db.delete(account)
            await bump_revision(self.db, cluster.id)
            record(
                self.db,
                self.caller,
                "service_account.delete",
                target_type="service_account",
                target_id=account.id,
                cluster_id=cluster.id,
                detail={"name": account.name, "namespace": account.namespace},
            )
        # The agent deletes the ServiceAccount (its bound tokens die with it); the proxy
        # reloads the cluster and closes the account's open streams.
        self.tunnels.desired_changed(cluster.id)

    async def kubeconfig(
        self, cluster_id: str, service_account_id: str, body: ServiceAccountKubeconfigRequest
    ) -> tuple[IssuedKubeconfig, dt.datetime]:
        """The account's kubeconfig and when its token expires."""
        fields = {
            "target_type": "service_account",
            "target_id": service_account_id,
            "cluster_id": cluster_id,
        }
        async with failures_recorded(self.sessions, self.caller, KUBECONFIG_ACTION, **fields):
            async with self.db.begin():
                cluster = await self._cluster(cluster_id, "take service account kubeconfigs")
                account = await self._account(cluster, service_account_id)
                seconds = lifetime(
                    body.duration_seconds,
                    SERVICE_ACCOUNT_DEFAULT_SECONDS,
                    self.settings.service_account_kubeconfig_max_seconds,
                    "service_account_kubeconfig_max_seconds",
                )
                if not body.direct:
                    # The token and its audit event land together.
                    issued = await self._gateway_token(cluster, account, seconds)
                    self._record_kubeconfig(cluster, account, "gateway", issued[1])
                    return issued
                if account.status != GrantStatus.APPLIED.value:
                    raise Conflict(
                        f"service account {account.namespace}/{account.name} is "
                        f"{account.status}, not applied: a direct kubeconfig needs it in the "
                        "cluster (see its status_detail)"
                    )
                target = direct_target(cluster)
            issued = await self._direct_token(cluster, account, target, seconds)
            async with self.db.begin():
                self._record_kubeconfig(cluster, account, "direct", issued[1])
        return issued

    def _record_kubeconfig(
        self, cluster: Cluster, account: ServiceAccount, via: str, expires_at: dt.datetime
    ) -> None:
        record(
            self.db,
            self.caller,
            KUBECONFIG_ACTION,
            target_type="service_account",
            target_id=account.id,
            cluster_id=cluster.id,
            detail={
                "name": account.name,
                "namespace": account.namespace,
                "via": via,
                "expires_at": _rfc3339(expires_at),
            },
        )

    async def _gateway_token(
        self, cluster: Cluster, account: ServiceAccount, seconds: int
    ) -> tuple[IssuedKubeconfig, dt.datetime]:
        """A kube token acting as the account, in the caller's transaction."""
        if not self.settings.gateway_enabled:
            raise NotFound(
                "the access gateway is disabled on this server: ask for a direct kubeconfig "
                "(direct: true) instead"
            )
        token = new_secret(TOKEN_PREFIX)
        now = utcnow()
        expires_at = (now + dt.timedelta(seconds=seconds)).replace(microsecond=0)
        self.db.add(
            KubeToken(
                token_hash=secret_hash(token),
                user_id=self.caller.actor.user_id,
                cluster_id=cluster.id,
                org_id=cluster.org_id,
                token_epoch=cluster.token_epoch,
                access_key_id=None,
                scope=None,
                service_account_id=account.id,
                created_at=now,
                expires_at=expires_at,
            )
        )
        name = f"{cluster.name}-{account.name}"
        config = build_kubeconfig(
            name=name,
            server=self.issuer.server(cluster.id),
            ca_pem=await self.issuer.ca.pem(),
            token=token,
            namespace=account.namespace,
        )
        return _issued(name, config), expires_at

    async def _direct_token(
        self, cluster: Cluster, account: ServiceAccount, target: DirectTarget, seconds: int
    ) -> tuple[IssuedKubeconfig, dt.datetime]:
        answer = await self.tunnels.request_token(
            cluster.id,
            namespace=account.namespace,
            name=account.name,
            expiration_seconds=seconds,
        )
        name = f"{cluster.name}-{account.name}-direct"
        config = build_kubeconfig(
            name=name,
            server=target.server,
            ca_pem=target.ca_pem,
            token=answer.token,
            namespace=account.namespace,
        )
        return _issued(name, config), _parse_expiry(answer.expires_at, seconds)

    async def admin_kubeconfig_cluster(self, cluster_id: str) -> Cluster:
        """The cluster, when the caller may take its admin kubeconfig: an organisation admin
        (403 otherwise), signed in as a person (not with an access key), holding cluster-admin
        on the whole cluster; 404/409 as :meth:`_cluster`. In the caller's transaction; the
        portal's page asks it before offering the download."""
        cluster = await self._cluster(cluster_id, "take the admin kubeconfig")
        if self.caller.access_key_id is not None:
            raise PermissionDenied("the admin kubeconfig needs a person's login, not an access key")
        held = await self.db.scalar(
            select(Grant.id).where(
                Grant.cluster_id == cluster.id,
                Grant.user_id == self.caller.actor.user_id,
                Grant.role == Role.CLUSTER_ADMIN.value,
                Grant.scope == "cluster",
            )
        )
        if held is None:
            raise PermissionDenied(
                "the admin kubeconfig is only for organisation admins who hold "
                f"cluster-admin on the whole of cluster {cluster.name}; you do not"
            )
        return cluster

    async def admin_kubeconfig(
        self, cluster_id: str, duration_seconds: int | None
    ) -> tuple[IssuedKubeconfig, dt.datetime]:
        """The break-glass kubeconfig (see the module's docstring); every outcome audited."""
        fields = {"target_type": "cluster", "target_id": cluster_id, "cluster_id": cluster_id}
        async with failures_recorded(self.sessions, self.caller, ADMIN_ACTION, **fields):
            async with self.db.begin():
                cluster = await self.admin_kubeconfig_cluster(cluster_id)
                seconds = lifetime(
                    duration_seconds,
                    ADMIN_DEFAULT_SECONDS,
                    self.settings.admin_kubeconfig_max_seconds,
                    "admin_kubeconfig_max_seconds",
                )
                target = direct_target(cluster)
                namespace = cluster.agent_namespace or FALLBACK_NAMESPACE
            answer = await self.tunnels.request_token(
                cluster.id,
                namespace=namespace,
                name=BREAK_GLASS_NAME,
                expiration_seconds=seconds,
                break_glass=True,
            )
            expires_at = _parse_expiry(answer.expires_at, seconds)
            name = f"{cluster.name}-admin"
            config = build_kubeconfig(
                name=name, server=target.server, ca_pem=target.ca_pem, token=answer.token
            )
            async with self.db.begin():
                record(
                    self.db,
                    self.caller,
                    ADMIN_ACTION,
                    target_type="cluster",
                    target_id=cluster.id,
                    cluster_id=cluster.id,
                    detail={
                        "cluster": cluster.name,
                        "service_account": f"{namespace}/{BREAK_GLASS_NAME}",
                        "expires_at": _rfc3339(expires_at),
                        "server": target.server,
                    },
                )
        return _issued(name, config), expires_at

    async def set_api_server(self, cluster_id: str, url: str | None, ca_pem: str | None) -> None:
        """The operator's apiserver URL (and CA) for direct kubeconfigs; None clears it."""
        fields = {"target_type": "cluster", "target_id": cluster_id, "cluster_id": cluster_id}
        async with (
            failures_recorded(self.sessions, self.caller, "cluster.set_api_server", **fields),
            self.db.begin(),
        ):
            cluster = await get_cluster(self.db, self.caller.actor, cluster_id)
            require_admin(self.caller.actor, "set a cluster's apiserver address")
            if url is not None and not url.startswith("https://"):
                raise ValidationFailed(
                    f"the apiserver URL must start with https://; got {url[:80]!r}",
                    details={"field": "url"},
                )
            if ca_pem is not None and "-----BEGIN CERTIFICATE-----" not in ca_pem:
                raise ValidationFailed(
                    "ca_pem must be PEM (-----BEGIN CERTIFICATE-----)", details={"field": "ca_pem"}
                )
            cluster.api_server_url = url
            cluster.api_server_ca = ca_pem if url is not None else None
            record(
                self.db,
                self.caller,
                "cluster.set_api_server",
                target_type="cluster",
                target_id=cluster.id,
                cluster_id=cluster.id,
                detail={"url": url, "ca": ca_pem is not None},
            )


def _issued(name: str, config: dict[str, object]) -> IssuedKubeconfig:
    return IssuedKubeconfig(
        filename=f"{entry_name(name)}.kubeconfig", text=render_kubeconfig(config)
    )


def _parse_expiry(value: str, seconds: int) -> dt.datetime:
    """The apiserver's expirationTimestamp, or now + ``seconds`` if it gave none we can read."""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return (utcnow() + dt.timedelta(seconds=seconds)).replace(microsecond=0)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
