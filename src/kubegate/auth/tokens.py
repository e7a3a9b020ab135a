"""API tokens (CLI logins) and portal sessions: issued once, stored only as their SHA-256,
revocable, with an absolute and an idle lifetime.

Both kinds live in one table (``ApiToken.kind``). A credential ends at ``expires_at``, or
earlier once it has gone unused for ``idle_timeout_seconds`` (:func:`idle_deadline`);
``last_used_at`` moves forward as it is used (:class:`~kubegate.server.credentials.CredentialLookup`
writes it at most once per :data:`TOUCH_EVERY`). Callers run these inside their own
transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth.hashing import new_secret, secret_hash
from kubegate.storage.models import ApiToken, new_id, utcnow

TOUCH_EVERY = dt.timedelta(seconds=60)
"""How stale ``last_used_at`` may get before a use writes it again: an idle timeout is kept
to within this much."""


def issue(
    db: AsyncSession,
    *,
    user_id: str,
    org_id: str,
    kind: str,
    ttl_seconds: int,
    idle_seconds: int | None = None,
    auth_method: str = "password",
    token_id: str | None = None,
) -> tuple[str, dt.datetime]:
    """Add a new token row (with ``token_id`` when given); answers the secret (shown once)
    and when it expires at the latest."""
    secret = new_secret("kg_api" if kind == "api" else f"kg_{kind}")
    now = utcnow()
    expires = now + dt.timedelta(seconds=ttl_seconds)
    db.add(
        ApiToken(
            id=token_id or new_id(),
            user_id=user_id,
            org_id=org_id,
            token_hash=secret_hash(secret),
            kind=kind,
            created_at=now,
            expires_at=expires,
            auth_method=auth_method,
            idle_timeout_seconds=idle_seconds,
            last_used_at=now,
        )
    )
    return secret, expires


def idle_deadline(
    idle_seconds: int | None, last_used_at: dt.datetime | None, created_at: dt.datetime
) -> dt.datetime | None:
    """When a credential unused since ``last_used_at`` ends for idleness (None: never)."""
    if idle_seconds is None:
        return None
    return (last_used_at or created_at) + dt.timedelta(seconds=idle_seconds)


async def revoke(db: AsyncSession, token_id: str) -> None:
    """Revoke one token at once (logout)."""
    token = await db.get(ApiToken, token_id)
    if token is not None and token.revoked_at is None:
        token.revoked_at = utcnow()


async def revoke_all(db: AsyncSession, *, user_id: str, org_id: str) -> int:
    """Revoke every live CLI login and portal session of a user in one organisation (sign
    out everywhere, an admin ending them, deactivation); answers how many."""
    result = await db.execute(
        update(ApiToken)
        .where(
            ApiToken.user_id == user_id,
            ApiToken.org_id == org_id,
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
