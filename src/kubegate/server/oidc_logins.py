"""Browser sign-ins under way at the OIDC provider (``OidcLogin`` rows): started, then
finished exactly once.

A sign-in is found by the SHA-256 of its ``state`` and bound to the browser that started it
by the SHA-256 of a random secret in the ``__Host-kubegate_oidc`` cookie, so a callback URL
carried to another browser (login CSRF: an attacker's code and state, sent to a victim) is
refused. Finishing deletes the row in its own transaction before the code is exchanged: a
replayed callback finds nothing. Rows live :data:`LOGIN_TTL_SECONDS`; expired ones are
purged whenever a sign-in starts.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth.hashing import secret_hash
from kubegate.auth.oidc_errors import SignInExpired, WrongBrowser
from kubegate.storage.models import OidcLogin, utcnow

BROWSER_COOKIE: Final = "__Host-kubegate_oidc"
LOGIN_TTL_SECONDS: Final = 600
_MAX_NEXT = 500


@dataclass(frozen=True, slots=True)
class StartedLogin:
    """A sign-in just started: what goes to the provider, and the browser's cookie secret."""

    state: str
    nonce: str
    code_verifier: str
    browser_secret: str


@dataclass(frozen=True, slots=True)
class FinishedLogin:
    """What the callback needs from the sign-in it ends."""

    nonce: str
    code_verifier: str
    next_path: str


def safe_next_path(value: str | None) -> str:
    """``value`` when it is a path on this server (``/...``), else ``/``: never another
    origin (``//evil``, ``/\\evil``, ``https://evil``), never a control character."""
    if not value or len(value) > _MAX_NEXT or not value.startswith("/"):
        return "/"
    if value.startswith(("//", "/\\")) or "\\" in value:
        return "/"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "/"
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


async def start_login(
    db: AsyncSession, *, browser_secret: str | None, next_path: str | None
) -> StartedLogin:
    """Add a sign-in (in the caller's transaction) with new random state, nonce and PKCE
    verifier. The browser keeps its cookie secret while a sign-in it started is pending (two
    tabs signing in at once both work); otherwise it gets a new one, so a cookie value it
    was handed by someone else binds nothing."""
    now = utcnow()
    await db.execute(delete(OidcLogin).where(OidcLogin.expires_at <= now))
    if not browser_secret or not await _pending(db, secret_hash(browser_secret)):
        browser_secret = secrets.token_urlsafe(32)
    started = StartedLogin(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(48),  # 64 characters (RFC 7636: 43 to 128)
        browser_secret=browser_secret,
    )
    db.add(
        OidcLogin(
            state_hash=secret_hash(started.state),
            browser_hash=secret_hash(browser_secret),
            nonce=started.nonce,
            code_verifier=started.code_verifier,
            next_path=safe_next_path(next_path),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=LOGIN_TTL_SECONDS),
        )
    )
    return started


async def _pending(db: AsyncSession, browser_hash: str) -> bool:
    found = await db.scalar(
        select(OidcLogin.state_hash).where(OidcLogin.browser_hash == browser_hash).limit(1)
    )
    return found is not None


async def finish_login(
    db: AsyncSession, *, state: str, browser_secret: str | None
) -> FinishedLogin:
    """End the sign-in ``state`` names (delete its row, in the caller's transaction, which
    should commit before anything else happens) and check that this browser started it.

    :class:`SignInExpired` when there is no such sign-in (never started, already finished,
    or older than :data:`LOGIN_TTL_SECONDS`); :class:`WrongBrowser` when the cookie is
    missing or another browser's.
    """
    row = (
        await db.execute(
            delete(OidcLogin)
            .where(OidcLogin.state_hash == secret_hash(state))
            .returning(
                OidcLogin.browser_hash,
                OidcLogin.nonce,
                OidcLogin.code_verifier,
                OidcLogin.next_path,
                OidcLogin.expires_at,
            )
        )
    ).first()
    if row is None or row.expires_at <= utcnow():
        raise SignInExpired(
            "This sign-in link has expired or was already used (a sign-in must be finished "
            f"within {LOGIN_TTL_SECONDS // 60} minutes, and only once). Start again."
        )
    sent = secret_hash(browser_secret) if browser_secret else ""
    if not hmac.compare_digest(sent, row.browser_hash):
        raise WrongBrowser(
            "This sign-in was started in another browser (or this browser's sign-in cookie "
            "was lost), so kubegate cannot tell it is yours. Start again in the browser you "
            "want to use."
        )
    return FinishedLogin(
        nonce=row.nonce, code_verifier=row.code_verifier, next_path=safe_next_path(row.next_path)
    )
