"""The database side of reconcile: a cluster's desired RBAC, and what its agent reported.

Grant status moves here (DESIGN §2): ``pending`` while the agent works on it, ``applied`` or
``failed`` (with the Kubernetes error) when it reports, ``cluster_offline`` for a grant that
is waiting for the agent to come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from kubegate.domain.access import GrantSpec, GrantStatus, Role
from kubegate.storage.models import Cluster, Grant, User, utcnow
from kubegate.tunnel.control import Desired, GrantResult

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
    return Desired(revision=revision or 0, grants=grants)


async def record_results(
    sessions: async_sessionmaker[Any], cluster_id: str, results: Sequence[GrantResult]
) -> int:
    """Store each grant's reported status; answers how many grants changed.

    Grants deleted since (the agent reports on the set it had) are skipped.
    """
    if not results:
        return 0
    by_id = {r.grant_id: r for r in results}
    now = utcnow()
    async with sessions() as db, db.begin():
        current = await db.execute(
            select(Grant.id, Grant.status, Grant.status_detail).where(
                Grant.cluster_id == cluster_id, Grant.id.in_(list(by_id))
            )
        )
        changes = [
            {
                "id": gid,
                "status": by_id[gid].status,
                "status_detail": by_id[gid].detail[:_MAX_DETAIL],
                "updated_at": now,
            }
            for gid, status, detail in current
            if (status, detail) != (by_id[gid].status, by_id[gid].detail[:_MAX_DETAIL])
        ]
        if changes:
            # ORM bulk UPDATE by primary key: one executemany, not one round trip per grant.
            await db.execute(update(Grant), changes)
    return len(changes)


async def mark_online(sessions: async_sessionmaker[Any], cluster_id: str) -> None:
    """The agent connected: grants waiting for it are ``pending`` again."""
    now = utcnow()
    async with sessions() as db, db.begin():
        await db.execute(update(Cluster).where(Cluster.id == cluster_id).values(last_seen_at=now))
        await db.execute(
            update(Grant)
            .where(Grant.cluster_id == cluster_id, Grant.status.in_(_WAITING))
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
        await db.execute(
            update(Grant)
            .where(Grant.cluster_id == cluster_id, Grant.status == GrantStatus.PENDING.value)
            .values(
                status=GrantStatus.CLUSTER_OFFLINE.value,
                status_detail="the cluster's agent is not connected",
                updated_at=now,
            )
        )
