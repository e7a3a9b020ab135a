"""Looking up the access key behind a REST request, and recording its use.

A request that presents ``Authorization: Bearer kgak_…`` is checked for the key's checksum
first (:func:`~kubegate.auth.access_keys.looks_valid`: a mistyped key costs no database read),
then its key is read with its creator's email and membership, batched like
:class:`~kubegate.server.credentials.CredentialLookup` (nothing cached: a deleted key, an
expiry or a deactivated creator count from the very next request).

``last_used_at`` is written when it is more than :data:`TOUCH_EVERY` old, in a batch of its
own off the request's path: a list says when a key was last used to within a minute.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from kubegate.auth import access_keys
from kubegate.domain.access import Actor, MemberRole
from kubegate.domain.key_scope import KeyScope
from kubegate.errors import Unauthenticated
from kubegate.server.batching import Batcher
from kubegate.server.principal import Principal
from kubegate.storage.engine import RoundTrips
from kubegate.storage.models import AccessKey, Membership, User, utcnow

log = logging.getLogger(__name__)

KIND = "access_key"
"""``Principal.kind`` of a caller authenticated by an access key."""

TOUCH_EVERY = dt.timedelta(seconds=60)
"""How stale ``last_used_at`` may get before a use writes it again."""

NO_EXPIRY = dt.datetime.max.replace(tzinfo=dt.UTC)
"""``Principal.token_expires_at`` of a key that never expires."""

_KEYS = (
    select(
        AccessKey.secret_hash,
        AccessKey.id,
        AccessKey.user_id,
        AccessKey.org_id,
        AccessKey.name,
        AccessKey.scope,
        AccessKey.expires_at,
        AccessKey.last_used_at,
        User.email,
        Membership.role,
        Membership.is_active,
    )
    .join(User, User.id == AccessKey.user_id)
    .join(
        Membership,
        (Membership.user_id == AccessKey.user_id) & (Membership.org_id == AccessKey.org_id),
    )
    .where(AccessKey.secret_hash.in_(bindparam("hashes", expanding=True)))
)

_TOUCH = (
    update(AccessKey)
    .where(AccessKey.id.in_(bindparam("ids", expanding=True)))
    .values(last_used_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An access key as stored, with its creator's email and membership."""

    key_id: str
    user_id: str
    org_id: str
    name: str
    scope: dict[str, Any] | None
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    email: str
    role: str
    is_active: bool


class AccessKeyLookup:
    """Finds access keys by hash, batched, and records their use; started and closed by the
    lifespan."""

    def __init__(self, trips: RoundTrips) -> None:
        self._trips = trips
        self._batcher: Batcher[str, StoredKey | None] = Batcher(
            self._find_batch, name="access key lookup"
        )
        self._toucher: Batcher[str, None] = Batcher(self._touch_batch, name="access key use")
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

    async def find(self, key_hash: str) -> StoredKey | None:
        """The key stored under ``key_hash`` as the database holds it now, or None."""
        return await self._batcher.submit(key_hash)

    def touch(self, key: StoredKey) -> None:
        """Record that ``key`` was just used when its ``last_used_at`` is stale (in the
        background; the request does not wait)."""
        if key.key_id in self._touching:
            return
        if key.last_used_at is not None and utcnow() - key.last_used_at < TOUCH_EVERY:
            return
        self._touching.add(key.key_id)
        task = asyncio.get_running_loop().create_task(self._touch(key.key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, key_id: str) -> None:
        try:
            await self._toucher.submit(key_id)
        except Exception as exc:  # the database is away: the next use tries again
            log.warning("could not record an access key's use: %s", exc)
        finally:
            self._touching.discard(key_id)

    async def _find_batch(self, hashes: list[str]) -> list[StoredKey | None]:
        found = await self._trips.run(_select, sorted(set(hashes)))
        return [found.get(key_hash) for key_hash in hashes]

    async def _touch_batch(self, ids: list[str]) -> Sequence[None]:
        await self._trips.run(_write_use, sorted(set(ids)))
        return [None] * len(ids)


async def key_principal(lookup: AccessKeyLookup, raw: str) -> Principal:
    """The caller behind the access key ``raw``, or 401 saying why: mistyped (refused
    before any database read), unknown or deleted, expired, or its creator deactivated."""
    if not access_keys.looks_valid(raw):
        raise Unauthenticated(
            "this access key is mistyped: its checksum does not match; copy it again "
            "(the whole kgak_… string)"
        )
    found = await lookup.find(access_keys.stored_hash(raw))
    if found is None:
        raise Unauthenticated(
            "this access key is not valid (deleted, or never existed); create a new one with "
            "kubegate access-key create"
        )
    if not found.is_active:
        raise Unauthenticated(
            "the creator of this access key is deactivated in this organisation, and so is the "
            "key; ask one of its admins"
        )
    if found.expires_at is not None and found.expires_at <= utcnow():
        raise Unauthenticated(
            f"this access key ({found.name}) expired at {found.expires_at.isoformat()}; "
            "create a new one with kubegate access-key create"
        )
    lookup.touch(found)
    actor = Actor(user_id=found.user_id, org_id=found.org_id, role=MemberRole(found.role))
    return Principal(
        actor,
        found.email,
        found.key_id,
        KIND,
        found.expires_at or NO_EXPIRY,
        access_key_id=found.key_id,
        key_scope=KeyScope.from_json(found.scope),
    )


def _select(conn: Connection, hashes: list[str]) -> dict[str, StoredKey]:
    rows = conn.execute(_KEYS, {"hashes": hashes}).all()
    return {key_hash: StoredKey(*columns) for key_hash, *columns in rows}


def _write_use(conn: Connection, ids: list[str]) -> None:
    conn.execute(_TOUCH, {"ids": ids, "now": utcnow()})
    conn.commit()
