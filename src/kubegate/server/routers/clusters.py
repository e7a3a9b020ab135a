"""Registering, listing and deleting clusters; each as the caller sees it (``clusters_out``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.domain.access import (
    Actor,
    require_admin,
    require_same_org,
)
from kubegate.errors import NotFound
from kubegate.server import cluster_registration
from kubegate.server.audit import failures_recorded, record
from kubegate.server.deps import ApiCaller, Db, State, error_responses
from kubegate.server.kube_tokens import Issuer, KubeTokenIssuer
from kubegate.server.pagination import PageRequest, next_cursor, page_request, paginate
from kubegate.server.principal import Principal
from kubegate.server.schemas import Page
from kubegate.server.schemas.clusters import (
    ClusterCreate,
    ClusterOut,
    ClusterRegistered,
    OwnGrantOut,
)
from kubegate.server.schemas.users import PRINTABLE_PATTERN
from kubegate.server.state import AppState
from kubegate.storage.models import Cluster, Grant, is_id

router = APIRouter(prefix="/api/v1/clusters", tags=["clusters"])


async def clusters_out(
    db: AsyncSession,
    caller: Principal,
    state: AppState,
    issuer: KubeTokenIssuer,
    clusters: list[Cluster],
) -> list[ClusterOut]:
    """The API shape of ``clusters`` for the caller: ``online`` while the agent holds a
    tunnel to this server, the URL on the proxy, and the caller's own grants on each (one
    query for them all). Without the access gateway there is no URL and no access."""
    gateway = state.settings.gateway_enabled
    mine: dict[str, list[OwnGrantOut]] = {}
    if gateway and clusters:
        grants = await db.scalars(
            select(Grant)
            .where(
                Grant.user_id == caller.actor.user_id,
                Grant.cluster_id.in_([cluster.id for cluster in clusters]),
            )
            .order_by(Grant.created_at, Grant.id)
        )
        for grant in grants:
            mine.setdefault(grant.cluster_id, []).append(
                OwnGrantOut(
                    id=grant.id,
                    role=grant.role,
                    namespace=grant.namespace,
                    status=grant.status,
                    status_detail=grant.status_detail,
                )
            )
    return [
        ClusterOut(
            id=cluster.id,
            name=cluster.name,
            kind=cluster.kind,
            online=state.tunnels.is_online(cluster.id),
            last_seen_at=cluster.last_seen_at,
            created_at=cluster.created_at,
            server=issuer.server(cluster.id) if gateway else None,
            my_access=mine.get(cluster.id, []),
        )
        for cluster in clusters
    ]


async def get_cluster(db: AsyncSession, actor: Actor, cluster_id: str) -> Cluster:
    """The caller's organisation's cluster, or 404 (also for another organisation's)."""
    cluster = await db.get(Cluster, cluster_id) if is_id(cluster_id) else None
    if cluster is None:
        raise NotFound(f"cluster {cluster_id[:64]} not found")
    require_same_org(actor, cluster.org_id, f"cluster {cluster_id}")
    return cluster


@router.get(
    "",
    summary="Clusters of the caller's organisation, with the caller's own access to each",
    description="Filter ?name= for the one cluster of that exact name (names are unique in "
    "an organisation): an empty page when there is none.",
    responses=error_responses(400, 401, 422),
)
async def list_clusters(
    caller: ApiCaller,
    db: Db,
    state: State,
    issuer: Issuer,
    page: Annotated[PageRequest, Depends(page_request)],
    name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=63,
            pattern=PRINTABLE_PATTERN,
            description="Only the cluster of this exact name.",
        ),
    ] = None,
) -> Page[ClusterOut]:
    query = select(Cluster).where(Cluster.org_id == caller.actor.org_id)
    if caller.key_scope is not None:  # an access key sees only the clusters of its scope
        query = query.where(Cluster.id.in_(sorted(caller.key_scope.cluster_ids)))
    if name is not None:
        query = query.where(Cluster.name == name)
    rows = list((await db.scalars(paginate(query, page, Cluster.created_at, Cluster.id))).all())
    rows, cursor = next_cursor(rows, page)
    items = await clusters_out(db, caller, state, issuer, rows)
    return Page[ClusterOut](items=items, next_cursor=cursor)


@router.post(
    "",
    status_code=201,
    summary="Register a cluster (admin); answers the agent credential once",
    responses=error_responses(401, 403, 409, 422),
)
async def register_cluster(
    body: ClusterCreate, caller: ApiCaller, db: Db, state: State, issuer: Issuer
) -> ClusterRegistered:
    registered = await cluster_registration.register_cluster(
        db, state.sessions, caller, body.name, body.kind
    )
    [cluster] = await clusters_out(db, caller, state, issuer, [registered.cluster])
    return ClusterRegistered(cluster=cluster, agent_credential=registered.agent_credential)


@router.get(
    "/{cluster_id}",
    summary="One cluster, with the caller's own access to it",
    responses=error_responses(401, 404),
)
async def read_cluster(
    cluster_id: str, caller: ApiCaller, db: Db, state: State, issuer: Issuer
) -> ClusterOut:
    cluster = await get_cluster(db, caller.actor, cluster_id)
    [found] = await clusters_out(db, caller, state, issuer, [cluster])
    return found


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
