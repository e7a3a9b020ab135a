"""The portal's pages (ADR 0006): sign-in and Clusters, rendered on the server.

They use the portal's one session machinery (``server/sessions.py``): signing in with the
password form starts the same ``__Host-kubegate_session`` session as ``POST /org/login``
(and SSO ends in one too, through ``/auth/oidc/login?next=``); a page's writes (sign-out)
carry the session's CSRF token in a hidden ``csrf_token`` field. The sign-in form itself
has no session to take a token from, so it is refused unless the browser says it comes from
this origin (``Sec-Fetch-Site``, else ``Origin``): a login-CSRF defence that needs no state.

A page asked for without a valid session sends the browser to sign-in, saying why when the
session it had has ended; an htmx request for a fragment gets ``HX-Redirect`` instead, so a
page left open goes to sign-in by itself once its session times out.
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from kubegate.auth import tokens
from kubegate.domain.access import MemberRole
from kubegate.errors import PermissionDenied, Unauthenticated
from kubegate.server.audit import record
from kubegate.server.deps import Db, State, public_base_url
from kubegate.server.kube_tokens import Issuer, KubeTokenIssuer
from kubegate.server.oidc_logins import safe_next_path
from kubegate.server.portal_guard import (
    CLUSTERS,
    SIGN_IN,
    csrf_field,
    page_caller,
    redirect,
    sign_in_url,
    to_sign_in,
)
from kubegate.server.portal_render import PortalTemplates
from kubegate.server.principal import Principal
from kubegate.server.routers.auth import check_password, record_sign_in
from kubegate.server.routers.clusters import clusters_out
from kubegate.server.sessions import (
    SESSION_COOKIE,
    clear_session_cookie,
    start_portal_session,
)
from kubegate.server.state import AppState
from kubegate.storage.models import Cluster

CLUSTER_LIMIT = 200
# How often an open Clusters page refreshes its table (online/offline, access) by htmx.
REFRESH_SECONDS = 5

WRONG_PASSWORD = (
    "The email or password is wrong. Check both and try again; if you forgot your password, "
    "ask one of your kubegate admins to set a new one."
)
DEACTIVATED = (
    "Your account is deactivated in this organisation, so you cannot sign in. Ask one of its "
    "kubegate admins to reactivate it."
)
ENDED = {
    "expired": "Your session has ended (it timed out, or was signed out elsewhere). "
    "Sign in again to go on.",
    "signed-out": "You are signed out.",
}


def _same_origin(request: Request) -> bool:
    """Whether a form post comes from this origin's own page, by what the browser says."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser that could be made to post cross-site
        return True
    own = {public_base_url(request), f"{request.url.scheme}://{request.url.netloc}"}
    return origin in own


def pages_router(templates: PortalTemplates) -> APIRouter:
    """The portal's page routes, rendering with ``templates``."""
    router = APIRouter(include_in_schema=False)

    def sign_in_page(
        state: AppState,
        next_path: str,
        *,
        error: str | None = None,
        notice: str | None = None,
        email: str = "",
        status: int = 200,
    ) -> Response:
        settings = state.settings
        sso: dict[str, str] | None = None
        if settings.oidc is not None:
            sso = {
                "name": settings.oidc.display_name,
                "href": "/auth/oidc/login?" + urllib.parse.urlencode({"next": next_path}),
            }
        context = {
            "title": "Sign in",
            "sso": sso,
            "password_login": settings.password_login,
            "next_path": next_path,
            "error": error,
            "notice": notice,
            "email": email,
        }
        return templates.page("sign_in.html", context, status=status)

    @router.get("/")
    async def home() -> Response:
        return redirect(CLUSTERS)

    @router.get(SIGN_IN)
    async def sign_in(
        request: Request, state: State, next: str | None = None, ended: str | None = None
    ) -> Response:
        next_path = safe_next_path(next or CLUSTERS)
        if request.cookies.get(SESSION_COOKIE):
            try:
                await page_caller(request)
            except Unauthenticated:
                pass
            else:
                return redirect(next_path)
        return sign_in_page(state, next_path, notice=ENDED.get(ended or ""))

    @router.post(SIGN_IN)
    async def sign_in_with_password(
        request: Request,
        db: Db,
        state: State,
        email: Annotated[str, Form(max_length=320)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        next: Annotated[str, Form(max_length=2048)] = CLUSTERS,
    ) -> Response:
        next_path = safe_next_path(next)
        if not _same_origin(request):
            return sign_in_page(
                state,
                next_path,
                error="This sign-in form was not sent from kubegate's own page, so it was "
                "ignored. Open the sign-in page and try again.",
                status=403,
            )
        if not state.settings.password_login:
            return sign_in_page(
                state,
                next_path,
                error="Password sign-in is turned off on this server. Use single sign-on.",
                status=403,
            )
        if not email.strip() or not password:
            return sign_in_page(
                state, next_path, error="Enter your email and password.", email=email, status=400
            )
        response = redirect(next_path)
        try:
            async with db.begin():
                user, membership = await check_password(db, email, password)
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
        except Unauthenticated as exc:
            message = DEACTIVATED if "deactivated" in str(exc) else WRONG_PASSWORD
            return sign_in_page(state, next_path, error=message, email=email, status=401)
        return response

    @router.post("/portal/sign-out")
    async def sign_out(
        request: Request, db: Db, csrf_token: Annotated[str, Form(max_length=256)] = ""
    ) -> Response:
        try:
            caller = await page_caller(request, csrf_token or None)
        except Unauthenticated:
            return to_sign_in(request, CLUSTERS)
        except PermissionDenied:
            return redirect(CLUSTERS)  # not this page's form: nothing is signed out
        async with db.begin():
            await tokens.revoke(db, caller.token_id)
            record(db, caller, "auth.logout", target_type="session", target_id=caller.token_id)
        response = redirect(sign_in_url(CLUSTERS, "signed-out"))
        clear_session_cookie(response)
        return response

    async def clusters_context(
        request: Request, caller: Principal, db: Db, state: AppState, issuer: KubeTokenIssuer
    ) -> dict[str, Any]:
        rows = (
            await db.scalars(
                select(Cluster)
                .where(Cluster.org_id == caller.actor.org_id)
                .order_by(Cluster.name)
                .limit(CLUSTER_LIMIT + 1)
            )
        ).all()
        more = len(rows) > CLUSTER_LIMIT
        rows = rows[:CLUSTER_LIMIT]
        return {
            "title": "Clusters",
            "caller": caller,
            "is_admin": caller.actor.role is MemberRole.ADMIN,
            "csrf_token": csrf_field(request),
            "clusters": await clusters_out(db, caller, state, issuer, list(rows)),
            "more_clusters": more,
            "gateway_enabled": state.settings.gateway_enabled,
            "refresh_seconds": REFRESH_SECONDS,
        }

    @router.get(CLUSTERS)
    async def clusters(request: Request, db: Db, state: State, issuer: Issuer) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, CLUSTERS)
        context = await clusters_context(request, caller, db, state, issuer)
        return templates.page("clusters.html", context)

    @router.get(f"{CLUSTERS}/table")
    async def clusters_table(request: Request, db: Db, state: State, issuer: Issuer) -> Response:
        try:  # the page refreshing itself is no use of the session: its idle timeout holds
            caller = await page_caller(request, touch=False)
        except Unauthenticated:
            return to_sign_in(request, CLUSTERS)
        context = await clusters_context(request, caller, db, state, issuer)
        return templates.page("clusters_table.html", context)

    return router
