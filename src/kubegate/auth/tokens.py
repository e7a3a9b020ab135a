"""API tokens and portal sessions: issued once, stored only as their SHA-256, revocable.

Both kinds live in one table (``ApiToken.kind``); a portal session also keeps the SHA-256 of
its CSRF token. Callers run these inside their own transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth.hashing import new_secret, secret_hash
from kubegate.storage.models import ApiToken, utcnow


def issue(
    db: AsyncSession,
    *,
    user_id: str,
    org_id: str,
    kind: str,
    ttl_seconds: int,
    csrf_token: str | None = None,
) -> tuple[str, dt.datetime]:
    """Add a new token row; answers the secret (shown once) and when it expires."""
    secret = new_secret("kg_api" if kind == "api" else f"kg_{kind}")
    expires = utcnow() + dt.timedelta(seconds=ttl_seconds)
    db.add(
        ApiToken(
            user_id=user_id,
            org_id=org_id,
            token_hash=secret_hash(secret),
            kind=kind,
            csrf_hash=secret_hash(csrf_token) if csrf_token else None,
            expires_at=expires,
        )
    )
    return secret, expires


async def revoke(db: AsyncSession, token_id: str) -> None:
    """Revoke one token at once (logout)."""
    token = await db.get(ApiToken, token_id)
    if token is not None and token.revoked_at is None:
        token.revoked_at = utcnow()
