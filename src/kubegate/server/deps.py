"""Shared FastAPI dependencies: app state, database sessions, and who is calling.

Two ways in: a bearer API token (CLI, automation) and the portal's session cookie, whose
writes must also carry the session's CSRF token in ``X-CSRF-Token``. Both resolve to a
:class:`Principal`. Access keys and OIDC arrive later as more token kinds, same Principal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth.access_keys import is_access_key
from kubegate.auth.hashing import secret_hash
from kubegate.domain.access import Actor, MemberRole
from kubegate.errors import NotFound, PermissionDenied, Unauthenticated
from kubegate.server import key_policy
from kubegate.server.key_lookup import key_principal
from kubegate.server.principal import Principal
from kubegate.server.sessions import CSRF_HEADER, SESSION_COOKIE, csrf_matches
from kubegate.server.state import AppState

_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

_bearer = HTTPBearer(auto_error=False, description="API token from POST /api/v1/auth/login.")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Portal session.")


# Dependencies are ``async def`` even when they never await: FastAPI runs a plain ``def``
# dependency in a worker thread, a round trip that costs more than most of these bodies. The
# ones every request meets (authentication, the gateway switch) take the Request and call
# app_state() rather than depending on State: each dependency costs FastAPI a resolution.


def app_state(request: Request) -> AppState:
    """What the running server holds (built by the lifespan)."""
    state: AppState = request.app.state.kubegate
    return state


def public_base_url(request: Request) -> str:
    """The API and portal's base URL as clients reach it (``Settings.base_url``), with the
    port this server really listens on standing in for a configured port of 0."""
    server = request.scope.get("server")
    bound = int(server[1]) if server and server[1] else None
    return app_state(request).settings.base_url(bound_port=bound)


async def get_state(request: Request) -> AppState:
    return app_state(request)


State = Annotated[AppState, Depends(get_state)]


async def db_session(state: State) -> AsyncIterator[AsyncSession]:
    """A database session; handlers open their own transaction with ``session.begin()``."""
    async with state.sessions() as session:
        yield session


Db = Annotated[AsyncSession, Depends(db_session)]


async def _principal(
    state: AppState, raw: str, kind: str, what: str, *, touch: bool = True
) -> Principal:
    """The caller behind a credential, read from the database now (never cached, so a
    logout, a revocation, a deactivation or an expiry counts from the next request); the use
    moves its idle deadline forward unless ``touch`` is false."""
    found = await state.credentials.find(secret_hash(raw), kind)
    if found is None:
        raise Unauthenticated(f"this {what} is not valid; {_again(kind)}")
    if not found.is_active:
        raise Unauthenticated("you are deactivated in this organisation; ask one of its admins")
    if found.revoked_at is not None:
        raise Unauthenticated(f"this {what} was ended (signed out or revoked); {_again(kind)}")
    now = dt.datetime.now(dt.UTC)
    if found.expires_at <= now:
        raise Unauthenticated(
            f"this {what} expired at {found.expires_at.isoformat()}; {_again(kind)}"
        )
    idle = found.idle_expires_at
    if idle is not None and idle <= now:
        unused = _duration(found.idle_timeout_seconds or 0)
        raise Unauthenticated(f"this {what} ended after {unused} without use; {_again(kind)}")
    if touch:
        state.credentials.touch(found)
    actor = Actor(user_id=found.user_id, org_id=found.org_id, role=MemberRole(found.role))
    # This use moves the idle deadline: unused from now on, the credential ends then.
    idle_after = (
        None
        if found.idle_timeout_seconds is None
        else min(now + dt.timedelta(seconds=found.idle_timeout_seconds), found.expires_at)
    )
    return Principal(actor, found.email, found.token_id, kind, found.expires_at, idle_after)


def _again(kind: str) -> str:
    return "sign in again" if kind == "session" else "log in again"


def _duration(seconds: int) -> str:
    """``90`` → ``1 min 30 s``; ``7200`` → ``2 h``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min"), (secs, "s")) if n]
    return " ".join(parts) or "0 s"


async def api_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller of a REST API endpoint, from ``Authorization: Bearer <token>``: an API
    token, or an access key (``kgak_…``, narrowed by its scope: ``server/key_policy.py``)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated(
            "missing API token: send 'Authorization: Bearer <token>' "
            "(get one from POST /api/v1/auth/login)"
        )
    raw = credentials.credentials
    if not is_access_key(raw):
        return await _principal(app_state(request), raw, "api", "API token")
    principal = await key_principal(app_state(request).access_keys, raw)
    refused = key_policy.refusal(principal, request.method, request.url.path)
    if refused is not None:
        raise refused
    return principal


async def session_principal(
    request: Request,
    cookie: Annotated[str | None, Depends(_cookie)],
    csrf: Annotated[
        str | None,
        Header(
            alias=CSRF_HEADER,
            description="The session's csrf_token (from sign-in or GET /org/session); "
            "required on every write.",
        ),
    ] = None,
) -> Principal:
    """The caller of a portal endpoint, from the session cookie; writes need the CSRF token."""
    return await portal_session(request, cookie, csrf)


async def portal_session(
    request: Request, cookie: str | None, csrf: str | None, *, touch: bool = True
) -> Principal:
    """:func:`session_principal` for the portal's pages, which read the cookie themselves;
    ``touch=False`` for a page's own background refresh, which is no use of the session (an
    open tab would otherwise hold it past its idle timeout)."""
    if not cookie:
        raise Unauthenticated("not signed in: sign in first (/auth/oidc/login or POST /org/login)")
    principal = await _principal(
        app_state(request), cookie, "session", "portal session", touch=touch
    )
    if request.method not in _SAFE_METHODS and not csrf_matches(cookie, csrf):
        raise PermissionDenied(
            f"missing or wrong CSRF token: send the session's csrf_token (from sign-in or "
            f"GET /org/session) in {CSRF_HEADER}"
        )
    return principal


ApiCaller = Annotated[Principal, Depends(api_principal)]
PortalCaller = Annotated[Principal, Depends(session_principal)]


async def require_gateway(request: Request) -> None:
    """Access, token and proxy endpoints do not exist while the gateway is disabled."""
    if not app_state(request).settings.gateway_enabled:
        raise NotFound("the access gateway is disabled on this server")


Gateway = Depends(require_gateway)


# Every route can answer these: a malformed body or parameter, a body over the limit, field
# validation, and the database being away.
ALWAYS = (400, 413, 422, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries: the error body for ``statuses`` and for :data:`ALWAYS`."""
    from kubegate.server.schemas import ErrorResponse

    return {status: {"model": ErrorResponse} for status in sorted({*statuses, *ALWAYS})}
