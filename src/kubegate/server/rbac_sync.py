"""The database side of reconcile: a cluster's desired RBAC, and what its agent reported.

Grant status moves here (DESIGN §2): ``pending`` while the agent works on it, ``applied`` or
``failed`` (with the Kubernetes error) when it reports, ``cluster_offline`` for a grant that
is waiting for the agent to come back. Managed ServiceAccounts (``service_accounts``) have
the same statuses and move the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kubegate.domain.access import GrantSpec, GrantStatus, Role, ServiceAccountSpec
from kubegate.storage.models import Cluster, Grant, ServiceAccount, User, utcnow
from kubegate.tunnel.control import Desired, GrantResult, ServiceAccountResult

_MAX_DETAIL = 4000
_WAITING = (GrantStatus.PENDING.value, GrantStatus.CLUSTER_OFFLINE.value)


async def load_desired(sessions: async_sessionmaker[Any], cluster_id: str) -> Desired:
    """The cluster's full desired set, with its revision.

    The revision is read before the grants, so the grants are never older than it says.
    """
    async with sessions() as db, db.begin():
        revision = await db.scalar(select(Cluster.rbac_revision).where(Cluster.id == cluster_id))
        rows = await db.execute(
            select(Grant.id, User.email, Grant.role, Grant.namespace)
            .join(User, User.id == Grant.user_id)
            .where(Grant.cluster_id == cluster_id)
            .order_by(Grant.id)
        )
        grants = tuple(GrantSpec(gid, email, Role(role), ns) for gid, email, role, ns in rows)
        accounts = await db.execute(
            select(
                ServiceAccount.id,
                ServiceAccount.namespace,
                ServiceAccount.name,
                ServiceAccount.role,
                ServiceAccount.scope,
            )
            .where(ServiceAccount.cluster_id == cluster_id)
            .order_by(ServiceAccount.id)
        )
        service_accounts = tuple(
            ServiceAccountSpec(sid, ns, name, Role(role), cluster_wide=scope == "cluster")
            for sid, ns, name, role, scope in accounts
        )
    return Desired(revision=revision or 0, grants=grants, service_accounts=service_accounts)


async def record_results(
    sessions: async_sessionmaker[Any],
    cluster_id: str,
    results: Sequence[GrantResult],
    service_accounts: Sequence[ServiceAccountResult] = (),
) -> int:
    """Store each grant's and ServiceAccount's reported status; answers how many changed.

    Those deleted since (the agent reports on the set it had) are skipped.
    """
    if not results and not service_accounts:
        return 0
    async with sessions() as db, db.begin():
        changed = await _record(
            db, Grant, cluster_id, {r.grant_id: (r.status, r.detail) for r in results}
        )
        changed += await _record(
            db,
            ServiceAccount,
            cluster_id,
            {r.service_account_id: (r.status, r.detail) for r in service_accounts},
        )
    return changed


async def _record(
    db: AsyncSession,
    model: type[Grant] | type[ServiceAccount],
    cluster_id: str,
    by_id: dict[str, tuple[str, str]],
) -> int:
    if not by_id:
        return 0
    wanted = {key: (status, detail[:_MAX_DETAIL]) for key, (status, detail) in by_id.items()}
    current = await db.execute(
        select(model.id, model.status, model.status_detail).where(
            model.cluster_id == cluster_id, model.id.in_(list(wanted))
        )
    )
    now = utcnow()
    changes = [
        {"id": key, "status": wanted[key][0], "status_detail": wanted[key][1], "updated_at": now}
        for key, status, detail in current
        if (status, detail) != wanted[key]
    ]
    if changes:
        # ORM bulk UPDATE by primary key: one executemany, not one round trip per row.
        await db.execute(update(model), changes)
    return len(changes)


_REPORTED = {
    "api_server_url": "agent_api_server_url",
    "api_server_ca": "agent_api_server_ca",
    "namespace": "agent_namespace",
}
"""Hello ``info`` keys the cluster row keeps (a later hello without one clears it)."""
_MAX_REPORTED = {"agent_api_server_url": 500, "agent_namespace": 63, "agent_api_server_ca": 65536}


async def mark_online(
    sessions: async_sessionmaker[Any], cluster_id: str, info: Mapping[str, str] | None = None
) -> None:
    """The agent connected: grants and ServiceAccounts waiting for it are ``pending`` again,
    and what its hello reported (the apiserver's URL and CA, its namespace) is kept."""
    now = utcnow()
    reported: dict[str, Any] = {"last_seen_at": now}
    if info is not None:
        for key, column in _REPORTED.items():
            value = info.get(key) or None
            reported[column] = None if value is None else value[: _MAX_REPORTED[column]]
    async with sessions() as db, db.begin():
        await db.execute(update(Cluster).where(Cluster.id == cluster_id).values(**reported))
        for model in (Grant, ServiceAccount):
            await db.execute(
                update(model)
                .where(model.cluster_id == cluster_id, model.status.in_(_WAITING))
                .values(status=GrantStatus.PENDING.value, status_detail="", updated_at=now)
            )


async def mark_seen(sessions: async_sessionmaker[Any], cluster_id: str) -> None:
    """The agent is still there: refresh the cluster's last-seen time."""
    async with sessions() as db, db.begin():
        await db.execute(
            update(Cluster).where(Cluster.id == cluster_id).values(last_seen_at=utcnow())
        )


async def mark_offline(sessions: async_sessionmaker[Any], cluster_id: str) -> None:
    """The agent went away: grants it had not applied wait for it as ``cluster_offline``.

    Applied and failed grants keep their status: the bindings are still in the cluster.
    """
    now = utcnow()
    async with sessions() as db, db.begin():
        await db.execute(update(Cluster).where(Cluster.id == cluster_id).values(last_seen_at=now))
        for model in (Grant, ServiceAccount):
            await db.execute(
                update(model)
                .where(model.cluster_id == cluster_id, model.status == GrantStatus.PENDING.value)
                .values(
                    status=GrantStatus.CLUSTER_OFFLINE.value,
                    status_detail="the cluster's agent is not connected",
                    updated_at=now,
                )
            )
