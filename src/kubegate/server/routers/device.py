"""``kubegate login --sso``: the device authorization grant (RFC 8628), served by kubegate.

- ``POST /api/v1/auth/device`` (§3.1–3.2) answers a device code for the CLI and a user code
  with the page to approve it at (``<base URL>/device``);
- ``GET|POST /device`` is that page: a person signed in to the portal (through SSO, or with
  a password where password login is on) sees what asks and approves or denies it; the POST
  needs the session's CSRF token (a hidden form field) and wrong codes are limited per
  person (:class:`~kubegate.auth.device_codes.WrongCodeLimit`);
- ``POST /api/v1/auth/device/token`` (§3.4–3.5) is what the CLI polls; once approved it
  answers a CLI login (an API token with ``auth_method="device"`` and the idle and absolute
  lifetimes of every CLI login), exactly once.

The two OAuth endpoints take form fields (as RFC 8628 has it) or a JSON object, and answer
OAuth's own error shape (``{"error": "authorization_pending", "error_description": ...}``,
400) rather than the REST API's: OAuth device clients switch on that ``error`` string. They
stay out of the OpenAPI document for that reason (RFC 8628 is their reference).

Without ``[oidc]`` the page is still usable with a password-signed-in portal session; with
neither OIDC nor password login there is no way to approve, and the device endpoint says so.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from kubegate.auth.device_codes import (
    DEVICE_CODE_GRANT,
    ERROR_DESCRIPTIONS,
    Outcome,
    WrongCodeLimit,
    display_user_code,
    normalise_user_code,
)
from kubegate.errors import PermissionDenied, Unauthenticated
from kubegate.server import device_logins, device_page
from kubegate.server.audit import record_failure
from kubegate.server.deps import Db, State, app_state, public_base_url, session_principal
from kubegate.server.principal import Principal
from kubegate.server.routers.auth import user_out
from kubegate.server.sessions import CSRF_FIELD, SESSION_COOKIE, csrf_token_for
from kubegate.server.state import AppState
from kubegate.storage.models import Organization

router = APIRouter(include_in_schema=False)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_DESCRIPTION = 200


def oauth_error(code: str, description: str, *, interval: int | None = None) -> JSONResponse:
    """An OAuth 2.0 error answer (RFC 6749 §5.2; RFC 8628 §3.5), never cached."""
    body: dict[str, Any] = {"error": code, "error_description": description}
    if interval is not None:
        body["interval"] = interval
    return JSONResponse(body, status_code=400, headers=NO_STORE)


async def _fields(request: Request) -> dict[str, str] | None:
    """The request's parameters: a form (``application/x-www-form-urlencoded``) or a JSON
    object of strings; None when the body is neither."""
    body = await request.body()
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        return {str(k): v for k, v in value.items() if isinstance(v, str)}
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    return dict(pairs)


def _clean_description(raw: str) -> str:
    """What the CLI says about itself, printable and clipped (shown escaped on the page)."""
    return "".join(c for c in raw if c.isprintable()).strip()[:MAX_DESCRIPTION]


@router.post("/api/v1/auth/device")
async def device_authorization(request: Request, db: Db, state: State) -> Response:
    fields = await _fields(request)
    if fields is None:
        return oauth_error("invalid_request", "send form fields or a JSON object")
    settings = state.settings
    if settings.oidc is None and not settings.password_login:
        return oauth_error(
            "access_denied",
            "this kubegate server has no way to sign in in a browser (neither [oidc] nor "
            "password_login is configured), so no CLI login can be approved; ask its operator",
        )
    async with db.begin():
        started = await device_logins.start(
            db, settings, _clean_description(fields.get("client_description", ""))
        )
    page = f"{public_base_url(request)}/device"
    shown = display_user_code(started.user_code)
    return JSONResponse(
        {
            "device_code": started.device_code,
            "user_code": shown,
            "verification_uri": page,
            "verification_uri_complete": f"{page}?user_code={shown}",
            "expires_in": started.expires_in,
            "interval": started.interval,
        },
        headers=NO_STORE,
    )


@router.post("/api/v1/auth/device/token")
async def device_token(request: Request, db: Db, state: State) -> Response:
    fields = await _fields(request)
    if fields is None:
        return oauth_error("invalid_request", "send form fields or a JSON object")
    grant = fields.get("grant_type", "")
    if not grant:
        return oauth_error("invalid_request", f"grant_type is required: {DEVICE_CODE_GRANT}")
    if grant != DEVICE_CODE_GRANT:
        return oauth_error(
            "unsupported_grant_type", f"this endpoint only takes grant_type={DEVICE_CODE_GRANT}"
        )
    device_code = fields.get("device_code", "")
    if not device_code:
        return oauth_error("invalid_request", "device_code is required")
    async with db.begin():
        result = await device_logins.poll(db, state.settings, device_code)
    issued = result.issued
    if issued is None:
        description = ERROR_DESCRIPTIONS[result.outcome].format(interval=result.interval)
        interval = result.interval if result.outcome is Outcome.slow_down else None
        return oauth_error(result.outcome.value, description, interval=interval)
    expires_in = max(0, int(issued.expires_at.timestamp() - time.time()))
    user = user_out(issued.user, issued.membership)
    return JSONResponse(
        {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "token": issued.token,
            "expires_at": issued.expires_at.isoformat(),
            "idle_timeout_seconds": issued.idle_timeout_seconds,
            "user": user.model_dump(mode="json"),
            "org_id": issued.membership.org_id,
        },
        headers=NO_STORE,
    )


# -- the approval page ------------------------------------------------------------------------


async def _caller(request: Request, csrf: str | None) -> Principal:
    """The signed-in portal caller (raises Unauthenticated; PermissionDenied for a write
    without the session's CSRF token)."""
    return await session_principal(request, request.cookies.get(SESSION_COOKIE), csrf)


def _not_signed_in(state: AppState, user_code: str | None) -> Response:
    if state.settings.oidc is not None:
        back = "/device" + (f"?user_code={user_code}" if user_code else "")
        return RedirectResponse(
            f"/auth/oidc/login?next={urllib.parse.quote(back, safe='')}",
            status_code=302,
            headers={"Cache-Control": "no-store"},
        )
    if state.settings.password_login:
        how = (
            "This server has no single sign-on configured: sign in to the kubegate portal "
            "with your email and password in this browser, then reload this page. Or log "
            "the CLI in with your password instead: kubegate login SERVER."
        )
    else:
        how = "This server offers no browser sign-in; ask its operator."
    return device_page.sign_in_first(how=how)


def _limit(state: AppState) -> WrongCodeLimit:
    return state.device_wrong_codes


async def _org_name(db: Db, org_id: str) -> str:
    org = await db.get(Organization, org_id)
    return org.name if org else ""


def _unknown_code(state: AppState, code: str) -> str:
    minutes = state.settings.device_code_ttl_seconds // 60
    return (
        f"No CLI login is waiting for code {display_user_code(code)}: it was mistyped, has "
        f"already been approved or denied, or has expired (codes are valid for {minutes} "
        "minutes). Check the code in your terminal, or run kubegate login --sso again."
    )


@router.get("/device")
async def device_page_get(
    request: Request, db: Db, state: State, user_code: str | None = None
) -> Response:
    typed = normalise_user_code(user_code) if user_code else None
    try:
        caller = await _caller(request, None)
    except Unauthenticated:
        return _not_signed_in(state, typed)
    if not user_code:
        return device_page.enter_code(email=caller.email)
    if typed is None:
        return device_page.enter_code(
            email=caller.email,
            typed=user_code[:16],
            message="That is not a code kubegate shows: it has 8 letters, like BCDF-GHJK.",
            status=400,
        )
    blocked = await _blocked(request, caller)
    if blocked is not None:
        return blocked
    async with db.begin():
        pending = await device_logins.find_pending(db, typed)
    if pending is None:
        await _wrong_code(state, caller, typed)
        return device_page.enter_code(
            email=caller.email, message=_unknown_code(state, typed), status=404
        )
    return device_page.confirm(
        email=caller.email,
        org_name=await _org_name(db, caller.actor.org_id),
        user_code=pending.user_code,
        client_description=pending.client_description,
        created_at=pending.created_at,
        expires_at=pending.expires_at,
        csrf_token=csrf_token_for(request.cookies.get(SESSION_COOKIE, "")),
    )


async def _blocked(request: Request, caller: Principal) -> Response | None:
    wait = _limit(app_state(request)).blocked_for(caller.actor.user_id, time.monotonic())
    if not wait:
        return None
    minutes = max(1, round(wait / 60))
    return device_page.refused(
        f"Too many wrong codes. Try again in about {minutes} minute(s), with the code your "
        "terminal shows.",
        status=429,
    )


async def _wrong_code(state: AppState, caller: Principal, code: str) -> None:
    _limit(state).wrong(caller.actor.user_id, time.monotonic())
    await record_failure(
        state.sessions,
        caller,
        "auth.device.approve",
        PermissionDenied("no pending CLI login has this code"),
        target_type="device_authorization",
        target_id=code,
    )


@router.post("/device")
async def device_page_post(request: Request, db: Db, state: State) -> Response:
    fields = await _fields(request) or {}
    try:
        caller = await _caller(request, fields.get(CSRF_FIELD) or None)
    except Unauthenticated:
        return _not_signed_in(state, normalise_user_code(fields.get("user_code", "")))
    except PermissionDenied:
        return device_page.refused(
            "This form was not sent by kubegate's own page (its CSRF token is missing or "
            "wrong), so nothing was approved. Open the link your terminal shows again.",
            status=403,
        )
    action = fields.get("action")
    if action not in ("approve", "deny"):
        return device_page.refused("Choose Approve or Deny.", status=400)
    code = normalise_user_code(fields.get("user_code", ""))
    if code is None:
        return device_page.enter_code(
            email=caller.email,
            message="That is not a code kubegate shows: it has 8 letters, like BCDF-GHJK.",
            status=400,
        )
    blocked = await _blocked(request, caller)
    if blocked is not None:
        return blocked
    async with db.begin():
        decided = await device_logins.decide(db, caller, code, approve=action == "approve")
    if decided is None:
        await _wrong_code(state, caller, code)
        return device_page.enter_code(
            email=caller.email, message=_unknown_code(state, code), status=404
        )
    return device_page.decided(
        approved=action == "approve", client_description=decided.client_description
    )
