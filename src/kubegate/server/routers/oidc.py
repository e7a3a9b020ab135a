"""Signing in to the portal through the organisation's OpenID Connect provider (SSO).

kubegate is the relying party, with the authorization code flow, PKCE (S256), ``state`` and
``nonce`` (RFC 9700, OIDC Core §3.1):

- ``GET /auth/oidc/login?next=/path`` starts a sign-in (``server/oidc_logins.py``), sets the
  ``__Host-kubegate_oidc`` cookie that binds it to this browser, and sends the browser to the
  provider;
- ``GET /auth/oidc/callback`` is where the provider sends it back: the sign-in is ended (once),
  the code exchanged with the PKCE verifier and client secret, the ID token verified
  (``auth/oidc_provider.py``), the person provisioned (``server/oidc_provisioning.py``) and a
  portal session started; then a 302 to ``next`` (a path on this server, else ``/``).

Every failure is an HTML page (``server/oidc_pages.py``), recorded in the audit log as
``auth.oidc.login`` with ``result=failure`` and logged under the request id the page shows.
Neither the log nor the audit ever holds a code, a token or a cookie. These routes are
browser navigation, not API: they stay out of the OpenAPI document (docs/api.md lists them).
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kubegate.auth.oidc_errors import (
    ProviderRefused,
    SignInCancelled,
    SignInExpired,
    SignInFailed,
    SsoNotConfigured,
)
from kubegate.auth.oidc_identity import identity_from_claims
from kubegate.auth.oidc_provider import OidcProvider
from kubegate.server.audit import failure_detail, record
from kubegate.server.deps import Db, State, public_base_url
from kubegate.server.oidc_logins import (
    BROWSER_COOKIE,
    LOGIN_TTL_SECONDS,
    finish_login,
    safe_next_path,
    start_login,
)
from kubegate.server.oidc_pages import failure_page, redirect
from kubegate.server.oidc_provisioning import Provisioned, organization_name, provision
from kubegate.server.sessions import SESSION_COOKIE, start_portal_session
from kubegate.server.state import AppState
from kubegate.storage.models import Organization

log = logging.getLogger("kubegate.oidc")
router = APIRouter(prefix="/auth/oidc", include_in_schema=False)

CALLBACK_PATH = "/auth/oidc/callback"
ACTION = "auth.oidc.login"
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,64}$")


def redirect_uri(request: Request) -> str:
    """The callback URL registered at the provider: ``Settings.base_url`` + the callback
    path (the port this server listens on stands in for a configured port of 0)."""
    return public_base_url(request) + CALLBACK_PATH


def _provider(state: AppState) -> OidcProvider:
    if state.oidc is None:
        raise SsoNotConfigured(
            "This kubegate server has no single sign-on provider configured ([oidc] in its "
            "settings). Sign in with a password, or ask an administrator to set it up."
        )
    return state.oidc


def _reference(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


@router.get("/login")
async def login(
    request: Request, db: Db, state: State, next: Annotated[str | None, Query()] = None
) -> Response:
    """Start a sign-in and send the browser to the provider."""
    try:
        provider = _provider(state)
        await provider.metadata()  # the provider's answer first: no transaction held over it
        async with db.begin():
            started = await start_login(
                db, browser_secret=request.cookies.get(BROWSER_COOKIE), next_path=next
            )
        location = await provider.authorization_url(
            redirect_uri=redirect_uri(request),
            state=started.state,
            nonce=started.nonce,
            code_verifier=started.code_verifier,
        )
    except SignInFailed as exc:
        return await _failed(request, state, exc, next_path=safe_next_path(next))
    response = redirect(location)
    response.set_cookie(
        BROWSER_COOKIE,
        started.browser_secret,
        max_age=LOGIN_TTL_SECONDS,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/callback")
async def callback(
    request: Request,
    db: Db,
    state: State,
    code: str | None = None,
    state_param: Annotated[str | None, Query(alias="state")] = None,
    error: str | None = None,
) -> Response:
    """Finish the sign-in the provider sent the browser back from."""
    next_path = "/"
    email: str | None = None
    try:
        provider = _provider(state)
        # Lengths checked here, not by FastAPI, so an oversized link gets the page too.
        if len(code or "") > 2048 or len(state_param or "") > 512 or len(error or "") > 256:
            raise SignInExpired("This sign-in link is malformed (too long). Start again.")
        if error is not None:
            await _end_quietly(db, request, state_param)
            raise _provider_error(provider, error)
        if not state_param or not code:
            raise SignInExpired(
                "This sign-in link is incomplete (it lacks the state or the code the provider "
                "adds). Start again."
            )
        async with db.begin():  # committed before the code is exchanged: used once
            finished = await finish_login(
                db, state=state_param, browser_secret=request.cookies.get(BROWSER_COOKIE)
            )
        next_path = finished.next_path
        id_token = await provider.exchange_code(
            code=code, redirect_uri=redirect_uri(request), code_verifier=finished.code_verifier
        )
        claims = await provider.verify(id_token, nonce=finished.nonce)
        del id_token
        identity = identity_from_claims(claims, provider.settings)
        email = identity.email
        response = redirect(next_path)
        try:
            async with db.begin():
                provisioned = await provision(db, state.settings, identity)
                started = await start_portal_session(
                    db,
                    state,
                    response,
                    user=provisioned.user,
                    membership=provisioned.membership,
                    auth_method="oidc",
                    previous_secret=request.cookies.get(SESSION_COOKIE),
                )
                _record_success(db, provisioned, started.session_id, identity.issuer)
        except IntegrityError as exc:
            raise SignInFailed(
                "Another sign-in of yours was being set up at the same moment. Start again."
            ) from exc
    except SignInFailed as exc:
        return await _failed(request, state, exc, next_path=next_path, email=email)
    log.info(
        "OIDC sign-in",
        extra={
            "user_id": provisioned.user.id,
            "how": provisioned.how,
            "request_id": _reference(request),
        },
    )
    return response


async def _end_quietly(db: Db, request: Request, state_param: str | None) -> None:
    """End the sign-in a provider's error answer names (so it cannot be finished later)."""
    if not state_param:
        return
    try:
        async with db.begin():
            await finish_login(
                db, state=state_param, browser_secret=request.cookies.get(BROWSER_COOKIE)
            )
    except SignInFailed:
        pass  # the provider's error is what the page reports


def _provider_error(provider: OidcProvider, error: str) -> SignInFailed:
    name = provider.settings.display_name
    if error == "access_denied":
        return SignInCancelled(
            f"You cancelled the sign-in at {name} (or {name} denied it), so you are not "
            "signed in to kubegate. Sign in again when you are ready."
        )
    shown = error if _OAUTH_ERROR.match(error) else "an unknown error"
    return ProviderRefused(
        f"{name} did not sign you in: it answered {shown}. Start again; if this goes on, tell "
        "your kubegate administrator."
    )


def _record_success(db: Db, provisioned: Provisioned, session_id: str, issuer: str) -> None:
    detail: dict[str, Any] = {"method": "oidc", "issuer": issuer, "how": provisioned.how}
    if provisioned.role_change:
        detail["role"] = {"from": provisioned.role_change[0], "to": provisioned.role_change[1]}
    event = record(
        db,
        None,
        ACTION,
        target_type="session",
        target_id=session_id,
        org_id=provisioned.membership.org_id,
        detail=detail,
    )
    event.actor_user_id, event.actor_email = provisioned.user.id, provisioned.user.email


async def _failed(
    request: Request,
    state: AppState,
    error: SignInFailed,
    *,
    next_path: str,
    email: str | None = None,
) -> Response:
    """Log and audit a failed sign-in, and answer its page."""
    reference = _reference(request)
    log.warning(
        "OIDC sign-in failed",
        extra={
            "error": error.code,
            "reason": error.message,
            "email": email or "",
            "request_id": reference,
        },
    )
    detail = {**failure_detail(error), "reference": reference}
    async with state.sessions() as session, session.begin():
        org_id = None
        if state.settings.oidc is not None:
            org_id = await session.scalar(
                select(Organization.id).where(
                    Organization.name == organization_name(state.settings)
                )
            )
        event = record(session, None, ACTION, result="failure", detail=detail, org_id=org_id)
        event.actor_email = email or ""
    return failure_page(error, reference=reference, next_path=next_path)
