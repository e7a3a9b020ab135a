"""What the gateway reads from and writes to the database, as Protocols the server implements.

The gateway (proxy, authority cache, tunnel registry) never imports SQLAlchemy: it asks
these questions of whatever the server hands it (``kubegate.server.gateway_store``), and
tests can hand it the same. Every method answers plain values and raises
:class:`~kubegate.errors.Unavailable` when the database does not answer, so the gateway can
say so to kubectl without knowing what a database error looks like.

The hot path calls none of them per request: :class:`~kubegate.gateway.authority.Authority`
asks on a token's first use and after an invalidation, the audit trail writes in batches,
and the registry only on an agent's connect, report and disconnect.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubegate.domain.scope import AccessScope
from kubegate.tunnel.control import Desired, GrantResult, ServiceAccountResult


@dataclass(frozen=True, slots=True)
class Identity:
    """A kube token's owner and bounds, as the proxy needs them per request."""

    token_id: str
    user_id: str
    email: str
    org_id: str
    cluster_id: str
    epoch: int
    expires_at: float  # unix time
    access_key_id: str | None
    scope: AccessScope | None
    # A managed ServiceAccount's token: the proxy acts as that account (``email`` is its
    # Kubernetes username and ``user_id`` the admin who issued the token).
    service_account_id: str | None = None
    service_account: tuple[str, str] | None = None  # (namespace, name)

    @property
    def key(self) -> tuple[str, str | None]:
        """What limits and revocation count by: the person, one of their access keys, or a
        ServiceAccount."""
        if self.service_account_id is not None:
            return ("serviceaccount", self.service_account_id)
        return (self.user_id, self.access_key_id)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the proxy must know about a cluster: its name, epoch and who holds a grant."""

    cluster_id: str
    name: str
    kind: str
    epoch: int
    granted: frozenset[str]  # user ids with at least one grant
    service_accounts: frozenset[str] = frozenset()  # ids of its managed ServiceAccounts


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One proxied request (or refusal) for the audit log.

    The request's RequestInfo, client address and user agent have columns of their own (the
    audit log filters on them); everything else is in ``detail``."""

    org_id: str | None
    user_id: str | None
    email: str
    cluster_id: str | None
    resource: str
    status: int
    detail: dict[str, Any]
    created_at: dt.datetime
    verb: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    source: str | None = None
    user_agent: str | None = None


class AccessStore(Protocol):
    """Who a kube token belongs to, and who may reach a cluster."""

    async def load_token(self, token_hash: str) -> Identity | None:
        """The live token with this SHA-256, or None (unknown, or its member deactivated)."""
        ...

    async def load_cluster(self, cluster_id: str) -> ClusterView | None:
        """The cluster's view, or None when it does not exist."""
        ...


class AuditStore(Protocol):
    """Where proxy audit events go."""

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Store every record, or none of them (raises ``Unavailable``)."""
        ...


class AgentStore(Protocol):
    """The database side of an agent's tunnel: online state, desired RBAC, grant results."""

    async def mark_online(self, cluster_id: str, info: Mapping[str, str]) -> None:
        """The agent connected: record when and what its hello reported (``info``), and move
        waiting grants and ServiceAccounts to ``pending``."""
        ...

    async def mark_seen(self, cluster_id: str) -> None:
        """The agent is still connected (``last_seen_at``)."""
        ...

    async def mark_offline(self, cluster_id: str) -> None:
        """The agent went away: ``pending`` grants wait as ``cluster_offline``."""
        ...

    async def load_desired(self, cluster_id: str) -> Desired:
        """The cluster's full desired set, with its revision."""
        ...

    async def record_results(
        self,
        cluster_id: str,
        results: Sequence[GrantResult],
        service_accounts: Sequence[ServiceAccountResult],
    ) -> int:
        """Store each grant's and ServiceAccount's reported status; answers how many changed."""
        ...


class GatewayStore(AccessStore, AuditStore, AgentStore, Protocol):
    """Everything the gateway asks of the database (the server implements it in one class)."""
