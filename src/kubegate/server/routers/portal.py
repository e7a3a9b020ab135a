"""The portal's session API: sign in with a cookie, then Cluster Access per DESIGN §3.

Sign-in sets an HttpOnly, Secure, SameSite=Lax session cookie and answers a CSRF token that
every portal write must echo in ``X-CSRF-Token`` (``deps.PortalCaller`` checks it); both are
stored only hashed. The access routes share their operations with the REST API
(``server/access.py``) and 404 while the access gateway is disabled.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from kubegate.auth import tokens
from kubegate.auth.hashing import new_secret
from kubegate.server.access import PortalAccess, portal_cluster_access
from kubegate.server.audit import record
from kubegate.server.deps import (
    SESSION_COOKIE,
    Db,
    Gateway,
    PortalCaller,
    State,
    error_responses,
)
from kubegate.server.kube_tokens import YamlResponse, kubeconfig_response, kubeconfig_responses
from kubegate.server.pagination import PageRequest, page_request
from kubegate.server.routers.auth import check_password, user_out
from kubegate.server.routers.grant_routes import grant_routes
from kubegate.server.schemas import Page
from kubegate.server.schemas.access import Capabilities
from kubegate.server.schemas.auth import LoginRequest, UserOut
from kubegate.server.schemas.portal import PortalSession

router = APIRouter(prefix="/org", tags=["portal"])
access = APIRouter(prefix="/clusters/{cluster_id}", dependencies=[Gateway])


@router.post(
    "/login",
    summary="Sign in to the portal: sets the session cookie, answers the CSRF token",
    responses=error_responses(400, 401, 422),
)
async def login(body: LoginRequest, db: Db, state: State, response: Response) -> PortalSession:
    ttl = state.settings.session_ttl_seconds
    async with db.begin():
        user, membership = await check_password(db, body.email, body.password)
        csrf_token = new_secret("kg_csrf")
        session_token, expires = tokens.issue(
            db,
            user_id=user.id,
            org_id=membership.org_id,
            kind="session",
            ttl_seconds=ttl,
            csrf_token=csrf_token,
        )
    response.set_cookie(
        SESSION_COOKIE,
        session_token,
        max_age=ttl,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return PortalSession(
        csrf_token=csrf_token,
        expires_at=expires,
        user=user_out(user, membership),
        org_id=membership.org_id,
    )


@router.post(
    "/logout",
    status_code=204,
    summary="End the portal session and clear its cookie",
    responses=error_responses(401, 403),
)
async def logout(caller: PortalCaller, db: Db) -> Response:
    async with db.begin():
        await tokens.revoke(db, caller.token_id)
        record(db, caller, "auth.logout", target_type="session", target_id=caller.token_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@access.get(
    "/access/capabilities",
    summary="Whether Cluster Access is on here, and whether the caller manages or has it",
    responses=error_responses(401, 404),
)
async def capabilities(cluster_id: str, cluster_access: PortalAccess) -> Capabilities:
    return await cluster_access.capabilities(cluster_id)


@access.get(
    "/access/members",
    summary="Organisation members a grant can target (admin)",
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
async def members(
    cluster_id: str,
    cluster_access: PortalAccess,
    page: Annotated[PageRequest, Depends(page_request)],
) -> Page[UserOut]:
    return await cluster_access.members(cluster_id, page)


@access.post(
    "/access/kubeconfig",
    summary="Download a kubeconfig for the cluster, with a short-lived kube token (CSRF)",
    description="The same kubeconfig, checks and rate limit as POST "
    "/api/v1/clusters/{cluster_id}/kubeconfig: 403 without a grant on the cluster (admins "
    "included), 409 for a sandbox cluster, 429 with Retry-After when minting too fast.",
    response_class=YamlResponse,
    responses=kubeconfig_responses(401, 403, 404, 409, 429),
)
async def kubeconfig(cluster_id: str, cluster_access: PortalAccess) -> YamlResponse:
    return kubeconfig_response(await cluster_access.kubeconfig(cluster_id))


access.include_router(grant_routes(Depends(portal_cluster_access), writes=", CSRF"))
router.include_router(access)
