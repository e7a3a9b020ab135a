"""Looking up the CLI login or portal session behind each authenticated request.

Every REST and portal request reads its credential (with the user's email and the
membership's role and state) from the database: nothing is cached, so a logout, a revoked or
expired credential and a deactivated member count from the very next request. The reads of
requests that arrive together share one query (:class:`~kubegate.server.batching.Batcher`),
which only ever starts after each of them arrived.

A use moves the credential's idle deadline forward: :meth:`CredentialLookup.touch` writes
``last_used_at`` when it is more than :data:`~kubegate.auth.tokens.TOUCH_EVERY` old, in a
batch of its own off the request's path (a lost touch costs at most that much idle time).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, update

from kubegate.auth.tokens import TOUCH_EVERY, idle_deadline
from kubegate.server.batching import Batcher
from kubegate.storage.engine import RoundTrips
from kubegate.storage.models import ApiToken, Membership, User, utcnow

log = logging.getLogger(__name__)

# Only the columns a caller is made of, for every credential asked for in one batch.
_CREDENTIALS = (
    select(
        ApiToken.token_hash,
        ApiToken.kind,
        ApiToken.id,
        ApiToken.user_id,
        ApiToken.org_id,
        ApiToken.created_at,
        ApiToken.expires_at,
        ApiToken.revoked_at,
        ApiToken.idle_timeout_seconds,
        ApiToken.last_used_at,
        ApiToken.auth_method,
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

_TOUCH = (
    update(ApiToken)
    .where(ApiToken.id.in_(bindparam("ids", expanding=True)))
    .values(last_used_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


@dataclass(frozen=True, slots=True)
class Credential:
    """A stored CLI login or portal session, its user's email and their membership."""

    token_id: str
    user_id: str
    org_id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    idle_timeout_seconds: int | None
    last_used_at: dt.datetime | None
    auth_method: str
    email: str
    role: str
    is_active: bool

    @property
    def idle_expires_at(self) -> dt.datetime | None:
        """When it ends unless used before (None: no idle timeout)."""
        return idle_deadline(self.idle_timeout_seconds, self.last_used_at, self.created_at)

    def ends_at(self) -> dt.datetime:
        """The earlier of the absolute and the idle deadline."""
        idle = self.idle_expires_at
        return self.expires_at if idle is None else min(idle, self.expires_at)


class CredentialLookup:
    """Finds credentials by hash and kind, batched, and records their use; started and closed
    by the lifespan."""

    def __init__(self, trips: RoundTrips) -> None:
        self._trips = trips
        self._batcher: Batcher[tuple[str, str], Credential | None] = Batcher(
            self._find_batch, name="credential lookup"
        )
        self._toucher: Batcher[str, None] = Batcher(self._touch_batch, name="credential use")
        self._touching: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._batcher.start()
        self._toucher.start()

    async def close(self) -> None:
        await self._batcher.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._toucher.close()

    async def find(self, token_hash: str, kind: str) -> Credential | None:
        """The credential stored under ``token_hash`` as ``kind`` (``api`` or ``session``)
        as the database holds it now, or None."""
        return await self._batcher.submit((token_hash, kind))

    def touch(self, credential: Credential) -> None:
        """Record that ``credential`` was just used, when its ``last_used_at`` is stale
        (written in the background; the request does not wait)."""
        if credential.idle_timeout_seconds is None or credential.token_id in self._touching:
            return
        last = credential.last_used_at or credential.created_at
        if utcnow() - last < TOUCH_EVERY:
            return
        self._touching.add(credential.token_id)
        task = asyncio.get_running_loop().create_task(self._touch(credential.token_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, token_id: str) -> None:
        try:
            await self._toucher.submit(token_id)
        except Exception as exc:  # the database is away: the next use tries again
            log.warning("could not record a credential's use: %s", exc)
        finally:
            self._touching.discard(token_id)

    async def _find_batch(self, keys: list[tuple[str, str]]) -> list[Credential | None]:
        found = await self._trips.run(_select, sorted({token_hash for token_hash, _ in keys}))
        return [found.get(key) for key in keys]

    async def _touch_batch(self, ids: list[str]) -> Sequence[None]:
        await self._trips.run(_write_use, sorted(set(ids)))
        return [None] * len(ids)


def _select(conn: Connection, hashes: list[str]) -> dict[tuple[str, str], Credential]:
    """The credentials stored under ``hashes``, by hash and kind."""
    rows = conn.execute(_CREDENTIALS, {"hashes": hashes}).all()
    return {(token_hash, kind): Credential(*columns) for token_hash, kind, *columns in rows}


def _write_use(conn: Connection, ids: list[str]) -> None:
    conn.execute(_TOUCH, {"ids": ids, "now": utcnow()})
    conn.commit()
