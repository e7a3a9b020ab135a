"""Cluster Access on the REST API: grants and revoke-all for bearer-token callers.

The operations live in ``server/access.py``, shared with the portal; these routes only
authenticate, shape the HTTP answer and document it. Every route 404s while the access
gateway is disabled.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from kubegate.server.access import ApiAccess
from kubegate.server.deps import Gateway, error_responses
from kubegate.server.pagination import PageRequest, page_request
from kubegate.server.schemas import Page
from kubegate.server.schemas.access import GrantCreate, GrantOut, RevokeAllResult

router = APIRouter(
    prefix="/api/v1/clusters/{cluster_id}/access", tags=["access"], dependencies=[Gateway]
)


@router.get(
    "/grants",
    summary="Grants on a cluster with their status (admins: all; members: their own)",
    responses=error_responses(400, 401, 404, 409, 422),
)
async def list_grants(
    cluster_id: str, access: ApiAccess, page: Annotated[PageRequest, Depends(page_request)]
) -> Page[GrantOut]:
    return await access.grants(cluster_id, page)


@router.post(
    "/grants",
    status_code=201,
    summary="Grant a member a role on the cluster or one namespace (admin)",
    description="Answers 201 with the new grant (status pending), or 200 with the existing "
    "grant when an identical one (same user, role and scope) already exists.",
    responses={
        200: {"model": GrantOut, "description": "An identical grant already existed."},
        **error_responses(400, 401, 403, 404, 409, 422),
    },
)
async def create_grant(
    cluster_id: str, body: GrantCreate, access: ApiAccess, response: Response
) -> GrantOut:
    result = await access.create_grant(cluster_id, body)
    if not result.created:
        response.status_code = 200
    return result.grant


@router.delete(
    "/grants/{grant_id}",
    status_code=204,
    summary="Delete a grant (admin)",
    responses=error_responses(401, 403, 404, 409),
)
async def delete_grant(cluster_id: str, grant_id: str, access: ApiAccess) -> Response:
    await access.delete_grant(cluster_id, grant_id)
    return Response(status_code=204)


@router.post(
    "/revoke-all",
    summary="Delete every grant on the cluster and void every kube token for it (admin)",
    responses=error_responses(401, 403, 404, 409),
)
async def revoke_all(cluster_id: str, access: ApiAccess) -> RevokeAllResult:
    return await access.revoke_all(cluster_id)
