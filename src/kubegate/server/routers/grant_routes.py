"""The grant routes, once: list, create, delete, revoke a member and revoke all, for any way
of calling.

The REST API (bearer token) and the portal (session cookie, CSRF on writes) offer the same
operations on a cluster's grants (``server/access.py``); :func:`grant_routes` builds
them for the caller dependency each one authenticates with, so the two cannot drift apart.
(No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at
definition, and the ``Access`` alias is local to :func:`grant_routes`.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from kubegate.server.access import ClusterAccess
from kubegate.server.deps import error_responses
from kubegate.server.pagination import PageRequest, page_request
from kubegate.server.schemas import Page
from kubegate.server.schemas.access import (
    GrantCreate,
    GrantOut,
    MemberRevoke,
    MemberRevoked,
    RevokeAllResult,
)


def grant_routes(access_dependency: Any, *, writes: str = "") -> APIRouter:
    """The grant routes under ``/access``, each getting its :class:`ClusterAccess` from
    ``access_dependency`` (a ``Depends``); ``writes`` is added to the summary of each write
    (the portal's ``", CSRF"``)."""
    router = APIRouter(prefix="/access")
    Access = Annotated[ClusterAccess, access_dependency]  # noqa: N806 - a type alias

    @router.get(
        "/grants",
        summary="Grants on a cluster with their status (admins: all; members: their own)",
        responses=error_responses(400, 401, 404, 409, 422),
    )
    async def list_grants(
        cluster_id: str, access: Access, page: Annotated[PageRequest, Depends(page_request)]
    ) -> Page[GrantOut]:
        return await access.grants(cluster_id, page)

    @router.post(
        "/grants",
        status_code=201,
        summary=f"Grant a member a role on the cluster or one namespace (admin{writes})",
        description="Answers 201 with the new grant (status pending), or 200 with the "
        "existing grant when an identical one (same user, role and scope) already exists.",
        responses={
            200: {"model": GrantOut, "description": "An identical grant already existed."},
            **error_responses(400, 401, 403, 404, 409, 422),
        },
    )
    async def create_grant(
        cluster_id: str, body: GrantCreate, access: Access, response: Response
    ) -> GrantOut:
        result = await access.create_grant(cluster_id, body)
        if not result.created:
            response.status_code = 200
        return result.grant

    @router.delete(
        "/grants/{grant_id}",
        status_code=204,
        summary=f"Delete a grant (admin{writes})",
        responses=error_responses(401, 403, 404, 409),
    )
    async def delete_grant(cluster_id: str, grant_id: str, access: Access) -> Response:
        await access.delete_grant(cluster_id, grant_id)
        return Response(status_code=204)

    @router.post(
        "/revoke",
        summary="Delete every grant one member holds on the cluster, by their email "
        f"(admin{writes})",
        description="Each grant goes exactly as DELETE /grants/{grant_id} removes it: the "
        "agent removes its RBAC binding, the member's kube tokens for the cluster stop "
        "working, and each deletion is audited as grant.delete. Answers the deleted grants' "
        "ids (empty when the member held none); 404 when no member of the organisation has "
        "that email.",
        responses=error_responses(401, 403, 404, 409, 422),
    )
    async def revoke_member(cluster_id: str, body: MemberRevoke, access: Access) -> MemberRevoked:
        return await access.revoke_member(cluster_id, body.email)

    @router.post(
        "/revoke-all",
        summary="Delete every grant on the cluster and void every kube token for it "
        f"(admin{writes})",
        responses=error_responses(401, 403, 404, 409),
    )
    async def revoke_all(cluster_id: str, access: Access) -> RevokeAllResult:
        return await access.revoke_all(cluster_id)

    return router
