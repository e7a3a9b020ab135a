"""Shared FastAPI dependencies: app state, database sessions, and who is calling.

Two ways in: a bearer API token (CLI, automation) and the portal's session cookie, whose
writes must also carry the session's CSRF token in ``X-CSRF-Token``. Both resolve to a
:class:`Principal`. Access keys and OIDC arrive later as more token kinds, same Principal.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth.hashing import secret_hash
from kubegate.domain.access import Actor, MemberRole
from kubegate.errors import NotFound, PermissionDenied, Unauthenticated
from kubegate.server.state import AppState
from kubegate.storage.models import ApiToken, Membership, User

SESSION_COOKIE = "kubegate_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

_bearer = HTTPBearer(auto_error=False, description="API token from POST /api/v1/auth/login.")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Portal session.")


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.kubegate
    return state


State = Annotated[AppState, Depends(get_state)]


async def db_session(state: State) -> AsyncIterator[AsyncSession]:
    """A database session; handlers open their own transaction with ``session.begin()``."""
    async with state.sessions() as session:
        yield session


Db = Annotated[AsyncSession, Depends(db_session)]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller within their organisation."""

    actor: Actor
    email: str
    token_id: str
    kind: str
    csrf_hash: str | None = None


async def _principal(session: AsyncSession, raw: str, kind: str, what: str) -> Principal:
    """Look the credential up in its own short session, apart from the request's transaction."""
    row = (
        await session.execute(
            select(ApiToken, User, Membership)
            .join(User, User.id == ApiToken.user_id)
            .join(
                Membership,
                (Membership.user_id == User.id) & (Membership.org_id == ApiToken.org_id),
            )
            .where(ApiToken.token_hash == secret_hash(raw), ApiToken.kind == kind)
        )
    ).first()
    if row is None:
        raise Unauthenticated(f"this {what} is not valid; log in again")
    token, user, membership = row
    if not membership.is_active:
        raise Unauthenticated("you are deactivated in this organisation; ask one of its admins")
    if token.revoked_at is not None:
        raise Unauthenticated(f"this {what} was revoked (logged out); log in again")
    if token.expires_at <= dt.datetime.now(dt.UTC):
        raise Unauthenticated(
            f"this {what} expired at {token.expires_at.isoformat()}; log in again"
        )
    actor = Actor(user_id=user.id, org_id=token.org_id, role=MemberRole(membership.role))
    return Principal(actor, user.email, token.id, kind, token.csrf_hash)


async def api_principal(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller of a REST API endpoint, from ``Authorization: Bearer <token>``."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated(
            "missing API token: send 'Authorization: Bearer <token>' "
            "(get one from POST /api/v1/auth/login)"
        )
    async with state.sessions() as session:
        return await _principal(session, credentials.credentials, "api", "API token")


async def session_principal(
    request: Request,
    state: State,
    cookie: Annotated[str | None, Depends(_cookie)],
    csrf: Annotated[
        str | None,
        Header(
            alias=CSRF_HEADER,
            description="The csrf_token from POST /org/login; required on every write.",
        ),
    ] = None,
) -> Principal:
    """The caller of a portal endpoint, from the session cookie; writes need the CSRF token."""
    if not cookie:
        raise Unauthenticated("not signed in: POST /org/login first")
    async with state.sessions() as session:
        principal = await _principal(session, cookie, "session", "portal session")
    if request.method not in _SAFE_METHODS:
        sent = csrf or ""
        if (
            not sent
            or principal.csrf_hash is None
            or not hmac.compare_digest(secret_hash(sent), principal.csrf_hash)
        ):
            raise PermissionDenied(
                f"missing or wrong CSRF token: send the csrf_token from sign-in in {CSRF_HEADER}"
            )
    return principal


ApiCaller = Annotated[Principal, Depends(api_principal)]
PortalCaller = Annotated[Principal, Depends(session_principal)]


def require_gateway(state: State) -> None:
    """Access, token and proxy endpoints do not exist while the gateway is disabled."""
    if not state.settings.gateway_enabled:
        raise NotFound("the access gateway is disabled on this server")


Gateway = Depends(require_gateway)


# Every route can answer these: a malformed body or parameter, a body over the limit, field
# validation, and the database being away.
ALWAYS = (400, 413, 422, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries: the error body for ``statuses`` and for :data:`ALWAYS`."""
    from kubegate.server.schemas import ErrorResponse

    return {status: {"model": ErrorResponse} for status in sorted({*statuses, *ALWAYS})}
