"""The portal's session API: sign in with a cookie, then Cluster Access per DESIGN §3.

Sign-in (a password here, SSO in ``routers/oidc``) starts a session (``server/sessions.py``:
the ``__Host-kubegate_session`` cookie, idle and absolute timeouts) and answers its CSRF
token, which every portal write must echo in ``X-CSRF-Token`` (``deps.PortalCaller`` checks
it). The access routes share their operations with the REST API
(``server/access.py``) and 404 while the access gateway is disabled.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from kubegate.auth import tokens
from kubegate.server.access import PortalAccess, portal_cluster_access
from kubegate.server.audit import record
from kubegate.server.deps import (
    Db,
    Gateway,
    PortalCaller,
    State,
    error_responses,
)
from kubegate.server.kube_tokens import YamlResponse, kubeconfig_response, kubeconfig_responses
from kubegate.server.pagination import PageRequest, page_request
from kubegate.server.routers.auth import (
    PasswordLogin,
    check_password,
    record_sign_in,
    sign_out_everywhere,
    user_out,
)
from kubegate.server.routers.grant_routes import grant_routes
from kubegate.server.schemas import Page
from kubegate.server.schemas.access import Capabilities
from kubegate.server.schemas.auth import LoginRequest, SignedOut, UserOut
from kubegate.server.schemas.portal import PortalSession
from kubegate.server.sessions import (
    SESSION_COOKIE,
    clear_session_cookie,
    csrf_token_for,
    start_portal_session,
)
from kubegate.storage.models import Membership, User

router = APIRouter(prefix="/org", tags=["portal"])
access = APIRouter(prefix="/clusters/{cluster_id}", dependencies=[Gateway])


@router.post(
    "/login",
    summary="Sign in to the portal with a password: sets the session cookie, answers the "
    "CSRF token",
    description="403 while password sign-in is turned off (the password_login setting).",
    responses=error_responses(400, 401, 403, 422),
    dependencies=[PasswordLogin],
)
async def login(
    body: LoginRequest, request: Request, db: Db, state: State, response: Response
) -> PortalSession:
    async with db.begin():
        user, membership = await check_password(db, body.email, body.password)
        started = await start_portal_session(
            db,
            state,
            response,
            user=user,
            membership=membership,
            auth_method="password",
            previous_secret=request.cookies.get(SESSION_COOKIE),
        )
        record_sign_in(db, user, membership, started.session_id, method="password")
    return PortalSession(
        csrf_token=started.csrf_token,
        expires_at=started.expires_at,
        idle_expires_at=started.idle_expires_at,
        user=user_out(user, membership),
        org_id=membership.org_id,
    )


@router.get(
    "/session",
    summary="The signed-in session: who, until when, and its CSRF token",
    description="What a page loaded after an SSO sign-in needs to make writes: the same "
    "CSRF token every time for one session.",
    responses=error_responses(401),
)
async def session(caller: PortalCaller, request: Request, db: Db) -> PortalSession:
    user = await db.get(User, caller.actor.user_id)
    membership = await db.get(Membership, (caller.actor.org_id, caller.actor.user_id))
    assert user is not None and membership is not None
    assert caller.idle_expires_at is not None
    return PortalSession(
        csrf_token=csrf_token_for(request.cookies[SESSION_COOKIE]),
        expires_at=caller.token_expires_at,
        idle_expires_at=caller.idle_expires_at,
        user=user_out(user, membership),
        org_id=caller.actor.org_id,
    )


@router.post(
    "/logout",
    status_code=204,
    summary="End the portal session and clear its cookie (CSRF)",
    responses=error_responses(401, 403),
)
async def logout(caller: PortalCaller, db: Db) -> Response:
    async with db.begin():
        await tokens.revoke(db, caller.token_id)
        record(db, caller, "auth.logout", target_type="session", target_id=caller.token_id)
    response = Response(status_code=204)
    clear_session_cookie(response)
    return response


@router.post(
    "/logout-everywhere",
    summary="End every portal session and CLI login of the caller (CSRF)",
    description="Also ends the kube tokens those minted, closing their open kubectl streams; "
    "access keys keep working. Clears this browser's cookie.",
    responses=error_responses(401, 403),
)
async def logout_everywhere(
    caller: PortalCaller, db: Db, state: State, response: Response
) -> SignedOut:
    clear_session_cookie(response)
    return await sign_out_everywhere(db, state, caller)


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
