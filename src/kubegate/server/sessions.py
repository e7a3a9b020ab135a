"""Portal sessions: started at sign-in, checked on every request, ended by sign-out.

A session is an ``ApiToken`` of kind ``session`` (only its SHA-256 stored) with an absolute
lifetime (``session_ttl_seconds``) and an idle one (``session_idle_seconds``). Its secret
travels only in the ``__Host-kubegate_session`` cookie: ``Secure``, ``HttpOnly``,
``SameSite=Lax``, ``Path=/`` and no ``Domain`` (what the ``__Host-`` prefix makes browsers
enforce), so no script, no other host and no plain-HTTP page can read or plant it.

Every sign-in starts a new session with a new secret (no fixation); a session the browser
still held is ended. Every write needs the session's CSRF token in ``X-CSRF-Token`` (or the
``csrf_token`` form field of a server-rendered page): an HMAC of the session secret, so the
server stores nothing more, a page can always ask for it (``GET /org/session``), and it is
worthless without the cookie that only this origin's pages can send.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Response
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth import tokens
from kubegate.auth.hashing import secret_hash
from kubegate.server.state import AppState
from kubegate.storage.models import ApiToken, Membership, User, new_id, utcnow

SESSION_COOKIE = "__Host-kubegate_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_CSRF_CONTEXT = b"kubegate portal csrf v1"


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """A new portal session: its id, CSRF token and deadlines (the secret is in the cookie)."""

    session_id: str
    csrf_token: str
    expires_at: dt.datetime
    idle_expires_at: dt.datetime


def csrf_token_for(session_secret: str) -> str:
    """The CSRF token of the session whose cookie holds ``session_secret``."""
    digest = hmac.new(session_secret.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()
    return f"kg_csrf_{digest}"


def csrf_matches(session_secret: str, sent: str | None) -> bool:
    """True when ``sent`` is that session's CSRF token (compared in constant time)."""
    return bool(sent) and hmac.compare_digest(csrf_token_for(session_secret), sent or "")


async def start_portal_session(
    db: AsyncSession,
    state: AppState,
    response: Response,
    *,
    user: User,
    membership: Membership,
    auth_method: str,
    previous_secret: str | None = None,
) -> SessionStarted:
    """Start a session for ``user`` in ``membership``'s organisation inside the caller's
    transaction and set its cookie on ``response``; ``previous_secret`` (the session cookie
    the browser arrived with, if any) is ended, so a planted session never survives a
    sign-in."""
    settings = state.settings
    if previous_secret:
        await _end_by_secret(db, previous_secret)
    session_id = new_id()
    secret, expires = tokens.issue(
        db,
        token_id=session_id,
        user_id=user.id,
        org_id=membership.org_id,
        kind="session",
        ttl_seconds=settings.session_ttl_seconds,
        idle_seconds=settings.session_idle_seconds,
        auth_method=auth_method,
    )
    set_session_cookie(response, secret, max_age=settings.session_ttl_seconds)
    idle = utcnow() + dt.timedelta(seconds=settings.session_idle_seconds)
    return SessionStarted(session_id, csrf_token_for(secret), expires, min(idle, expires))


def set_session_cookie(response: Response, secret: str, *, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")


async def _end_by_secret(db: AsyncSession, secret: str) -> None:
    await db.execute(
        update(ApiToken)
        .where(
            ApiToken.token_hash == secret_hash(secret),
            ApiToken.kind == "session",
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
