"""Looking up the API token or portal session behind each authenticated request.

Every REST and portal request reads its credential (with the user's email and the
membership's role and state) from the database: nothing is cached, so a logout, a revoked or
expired token and a deactivated member count from the very next request. The reads of
requests that arrive together share one query (:class:`~kubegate.server.batching.Batcher`),
which only ever starts after each of them arrived.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select

from kubegate.server.batching import Batcher
from kubegate.storage.engine import RoundTrips
from kubegate.storage.models import ApiToken, Membership, User

# Only the columns a caller is made of, for every credential asked for in one batch.
_CREDENTIALS = (
    select(
        ApiToken.token_hash,
        ApiToken.kind,
        ApiToken.id,
        ApiToken.user_id,
        ApiToken.org_id,
        ApiToken.csrf_hash,
        ApiToken.expires_at,
        ApiToken.revoked_at,
        User.email,
        Membership.role,
        Membership.is_active,
    )
    .join(User, User.id == ApiToken.user_id)
    .join(
        Membership,
        (Membership.user_id == ApiToken.user_id) & (Membership.org_id == ApiToken.org_id),
    )
    .where(ApiToken.token_hash.in_(bindparam("hashes", expanding=True)))
)


@dataclass(frozen=True, slots=True)
class Credential:
    """A stored API token or portal session, its user's email and their membership."""

    token_id: str
    user_id: str
    org_id: str
    csrf_hash: str | None
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    email: str
    role: str
    is_active: bool


class CredentialLookup:
    """Finds credentials by hash and kind, batched; started and closed by the lifespan."""

    def __init__(self, trips: RoundTrips) -> None:
        self._trips = trips
        self._batcher: Batcher[tuple[str, str], Credential | None] = Batcher(
            self._find_batch, name="credential lookup"
        )

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    async def find(self, token_hash: str, kind: str) -> Credential | None:
        """The credential stored under ``token_hash`` as ``kind`` (``api`` or ``session``)
        as the database holds it now, or None."""
        return await self._batcher.submit((token_hash, kind))

    async def _find_batch(self, keys: list[tuple[str, str]]) -> list[Credential | None]:
        found = await self._trips.run(_select, sorted({token_hash for token_hash, _ in keys}))
        return [found.get(key) for key in keys]


def _select(conn: Connection, hashes: list[str]) -> dict[tuple[str, str], Credential]:
    """The credentials stored under ``hashes``, by hash and kind."""
    rows = conn.execute(_CREDENTIALS, {"hashes": hashes}).all()
    return {(token_hash, kind): Credential(*columns) for token_hash, kind, *columns in rows}
