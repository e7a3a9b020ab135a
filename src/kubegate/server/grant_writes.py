"""The statements grant changes are made of, each inside the caller's transaction.

:class:`~kubegate.server.access.ClusterAccess` checks who may do what; these functions do
it the one way every path does: removing grants (one, a member's, or all of a cluster's)
writes their audit events and moves the cluster's desired-RBAC revision in the same
transaction. Telling the agent and the proxy (``TunnelRegistry.desired_changed``) is the
caller's job once the transaction has committed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.server.audit import record
from kubegate.server.principal import Principal
from kubegate.storage.models import Cluster, Grant


def grant_detail(grant: Grant, email: str) -> dict[str, Any]:
    """What an audit event says about a grant (the ``detail`` of its create and delete)."""
    return {
        "user_id": grant.user_id,
        "email": email,
        "role": grant.role,
        "scope": grant.scope,
        "namespace": grant.namespace,
    }


async def bump_revision(db: AsyncSession, cluster_id: str) -> None:
    """Every grant change moves the cluster's desired-RBAC revision, in its transaction."""
    await db.execute(
        update(Cluster)
        .where(Cluster.id == cluster_id)
        .values(rbac_revision=Cluster.rbac_revision + 1)
        .execution_options(synchronize_session=False)
    )


async def remove_grants(
    db: AsyncSession,
    caller: Principal,
    cluster_id: str,
    grants: list[Grant],
    email: str,
    *,
    via: str | None = None,
) -> list[str]:
    """Delete ``grants`` (one user's, whose email is ``email``, on the cluster), each with a
    ``grant.delete`` audit event (``detail.via`` names the endpoint when given); answers the
    ids really deleted, in the order given.

    A grant a concurrent request deleted first is left out (and not audited twice), so
    callers can tell "nothing was there" from "deleted".
    """
    if not grants:
        return []
    gone = set(
        await db.scalars(
            delete(Grant)
            .where(Grant.cluster_id == cluster_id, Grant.id.in_([g.id for g in grants]))
            .returning(Grant.id)
            .execution_options(synchronize_session=False)
        )
    )
    removed = [grant for grant in grants if grant.id in gone]
    if removed:
        await bump_revision(db, cluster_id)
    for grant in removed:
        detail = grant_detail(grant, email)
        record(
            db,
            caller,
            "grant.delete",
            target_type="grant",
            target_id=grant.id,
            cluster_id=cluster_id,
            detail=detail if via is None else {**detail, "via": via},
        )
    return [grant.id for grant in removed]


async def remove_every_grant(
    db: AsyncSession, caller: Principal, cluster_id: str
) -> tuple[list[str], int]:
    """Revoke-all: bump the cluster's token epoch (so every kube token minted for it is
    void), delete every grant and audit it as one ``grant.revoke_all`` event; answers the
    deleted ids and the new epoch."""
    # Bump first: on PostgreSQL the row lock orders concurrent revoke-alls, and the
    # increment happens in SQL so none is lost.
    epoch = await db.scalar(
        update(Cluster)
        .where(Cluster.id == cluster_id)
        .values(token_epoch=Cluster.token_epoch + 1, rbac_revision=Cluster.rbac_revision + 1)
        .returning(Cluster.token_epoch)
        .execution_options(synchronize_session=False)
    )
    assert epoch is not None
    removed = list(
        await db.scalars(
            delete(Grant)
            .where(Grant.cluster_id == cluster_id)
            .returning(Grant.id)
            .execution_options(synchronize_session=False)
        )
    )
    record(
        db,
        caller,
        "grant.revoke_all",
        target_type="cluster",
        target_id=cluster_id,
        cluster_id=cluster_id,
        detail={"grants_removed": len(removed), "grant_ids": removed, "token_epoch": epoch},
    )
    return removed, epoch
