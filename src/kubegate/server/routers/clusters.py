"""Registering, listing and deleting clusters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth.hashing import new_secret, secret_hash
from kubegate.domain.access import (
    Actor,
    ClusterKind,
    dns1123_label_problem,
    require_admin,
    require_same_org,
)
from kubegate.errors import Conflict, NotFound, ValidationFailed
from kubegate.gateway.registry import TunnelRegistry
from kubegate.server.audit import failures_recorded, record
from kubegate.server.deps import ApiCaller, Db, State, error_responses
from kubegate.server.pagination import PageRequest, next_cursor, page_request, paginate
from kubegate.server.schemas import Page
from kubegate.server.schemas.clusters import ClusterCreate, ClusterOut, ClusterRegistered
from kubegate.storage.models import Cluster, is_id

router = APIRouter(prefix="/api/v1/clusters", tags=["clusters"])


def cluster_out(cluster: Cluster, tunnels: TunnelRegistry) -> ClusterOut:
    """The API shape of a cluster; ``online`` while its agent holds a tunnel to this server."""
    return ClusterOut(
        id=cluster.id,
        name=cluster.name,
        kind=cluster.kind,
        online=tunnels.is_online(cluster.id),
        last_seen_at=cluster.last_seen_at,
        created_at=cluster.created_at,
    )


async def get_cluster(db: AsyncSession, actor: Actor, cluster_id: str) -> Cluster:
    """The caller's organisation's cluster, or 404 (also for another organisation's)."""
    cluster = await db.get(Cluster, cluster_id) if is_id(cluster_id) else None
    if cluster is None:
        raise NotFound(f"cluster {cluster_id[:64]} not found")
    require_same_org(actor, cluster.org_id, f"cluster {cluster_id}")
    return cluster


def _kind(value: str) -> ClusterKind:
    try:
        return ClusterKind(value)
    except ValueError:
        raise ValidationFailed(
            f"kind must be 'standard' or 'sandbox', not {value!r}", details={"field": "kind"}
        ) from None


@router.get("", summary="Clusters of the caller's organisation", responses=error_responses(401))
async def list_clusters(
    caller: ApiCaller, db: Db, state: State, page: Annotated[PageRequest, Depends(page_request)]
) -> Page[ClusterOut]:
    query = select(Cluster).where(Cluster.org_id == caller.actor.org_id)
    rows = list((await db.scalars(paginate(query, page, Cluster.created_at, Cluster.id))).all())
    rows, cursor = next_cursor(rows, page)
    return Page[ClusterOut](items=[cluster_out(c, state.tunnels) for c in rows], next_cursor=cursor)


@router.post(
    "",
    status_code=201,
    summary="Register a cluster (admin); answers the agent credential once",
    responses=error_responses(401, 403, 409, 422),
)
async def register_cluster(
    body: ClusterCreate, caller: ApiCaller, db: Db, state: State
) -> ClusterRegistered:
    async with failures_recorded(state.sessions, caller, "cluster.register"):
        require_admin(caller.actor, "register clusters")
        problem = dns1123_label_problem(body.name)
        if problem:
            raise ValidationFailed(
                f"cluster name {body.name!r} {problem}", details={"field": "name"}
            )
        kind = _kind(body.kind)
        credential = new_secret("kg_agent")
        async with db.begin():
            cluster = Cluster(
                org_id=caller.actor.org_id,
                name=body.name,
                kind=kind.value,
                agent_credential_hash=secret_hash(credential),
            )
            db.add(cluster)
            try:
                await db.flush()
            except IntegrityError as exc:
                raise Conflict(
                    f"a cluster named {body.name!r} already exists in this organisation",
                    details={"field": "name"},
                ) from exc
            record(
                db,
                caller,
                "cluster.register",
                target_type="cluster",
                target_id=cluster.id,
                cluster_id=cluster.id,
                detail={"name": cluster.name, "kind": cluster.kind},
            )
    return ClusterRegistered(
        cluster=cluster_out(cluster, state.tunnels), agent_credential=credential
    )


@router.get("/{cluster_id}", summary="One cluster", responses=error_responses(401, 404))
async def read_cluster(cluster_id: str, caller: ApiCaller, db: Db, state: State) -> ClusterOut:
    return cluster_out(await get_cluster(db, caller.actor, cluster_id), state.tunnels)


@router.delete(
    "/{cluster_id}",
    status_code=204,
    summary="Delete a cluster and its grants (admin)",
    responses=error_responses(401, 403, 404),
)
async def delete_cluster(cluster_id: str, caller: ApiCaller, db: Db, state: State) -> Response:
    fields = {"target_type": "cluster", "target_id": cluster_id}
    async with (
        failures_recorded(state.sessions, caller, "cluster.delete", **fields),
        db.begin(),
    ):
        cluster = await get_cluster(db, caller.actor, cluster_id)
        require_admin(caller.actor, "delete clusters")
        await db.delete(cluster)
        record(
            db,
            caller,
            "cluster.delete",
            target_type="cluster",
            target_id=cluster_id,
            cluster_id=cluster_id,
            detail={"name": cluster.name},
        )
    state.tunnels.desired_changed(cluster_id)  # the proxy forgets the cluster's tokens
    await state.tunnels.disconnect(cluster_id, "the cluster was deleted")
    return Response(status_code=204)
