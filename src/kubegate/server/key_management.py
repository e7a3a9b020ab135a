"""Access keys: creating one (its secret answered once), listing and deleting them.

The operations behind both the REST API (``routers/access_keys.py``) and the portal's
Access keys page (``routers/portal_key_pages.py``), so both make the same checks in the same
transactions with the same audit events (``access_key.create``, ``access_key.delete``, the
refusals too). A key inherits exactly its creator's permissions; its scope
(``domain/key_scope.py``) only narrows them; the secret is stored as its SHA-256. A caller
using an access key creates only keys within its own scope and lifetime, and deletes only
keys within its scope; another member's keys are an admin's.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth import access_keys
from kubegate.domain.access import require_admin
from kubegate.domain.key_scope import KeyScope, covers
from kubegate.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from kubegate.server.audit import failures_recorded, record
from kubegate.server.key_lookup import NO_EXPIRY
from kubegate.server.members import get_member
from kubegate.server.pagination import PageRequest, next_cursor, paginate
from kubegate.server.principal import Principal
from kubegate.server.revocation import delete_key_kube_tokens
from kubegate.server.schemas import Page
from kubegate.server.schemas.access_keys import (
    AccessKeyCreate,
    AccessKeyCreated,
    AccessKeyOut,
    KeyScopeClusterOut,
    KeyScopeOut,
)
from kubegate.server.state import AppState
from kubegate.storage.models import AccessKey, Cluster, is_id, utcnow

CREATE = "access_key.create"
DELETE = "access_key.delete"


async def _cluster_names(db: AsyncSession, org_id: str, ids: set[str]) -> dict[str, str]:
    """The names of those of ``ids`` that are clusters of the organisation."""
    if not ids:
        return {}
    rows = await db.execute(
        select(Cluster.id, Cluster.name).where(Cluster.org_id == org_id, Cluster.id.in_(ids))
    )
    return {row.id: row.name for row in rows}


def _scope_out(scope: KeyScope | None, names: dict[str, str]) -> KeyScopeOut | None:
    if scope is None:
        return None
    return KeyScopeOut(
        clusters=[
            KeyScopeClusterOut(
                cluster_id=one.cluster_id,
                cluster_name=names.get(one.cluster_id),
                namespaces=None if one.namespaces is None else sorted(one.namespaces),
            )
            for one in scope.clusters
        ]
    )


async def keys_out(
    db: AsyncSession, org_id: str, keys: list[AccessKey], email: str
) -> list[AccessKeyOut]:
    """The API shape of ``keys`` (of one user), with their clusters' names (one query)."""
    scopes = {key.id: KeyScope.from_json(key.scope) for key in keys}
    ids = {one.cluster_id for s in scopes.values() if s is not None for one in s.clusters}
    names = await _cluster_names(db, org_id, ids)
    return [
        AccessKeyOut(
            id=key.id,
            name=key.name,
            hint=key.hint,
            user_id=key.user_id,
            user_email=email,
            scope=_scope_out(scopes[key.id], names),
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
        )
        for key in keys
    ]


def _expiry(body: AccessKeyCreate, caller: Principal) -> dt.datetime | None:
    """When the new key expires: as asked, and for a key made with a key, not after it."""
    if body.expires_at is not None and body.expires_in_days is not None:
        raise ValidationFailed(
            "give expires_at or expires_in_days, not both", details={"field": "expires_at"}
        )
    now = utcnow()
    expires = body.expires_at
    if expires is not None:
        if expires.tzinfo is None:
            raise ValidationFailed(
                "expires_at needs a time zone, e.g. 2030-01-31T09:00:00Z",
                details={"field": "expires_at"},
            )
        if expires <= now:
            raise ValidationFailed(
                f"expires_at {expires.isoformat()} is in the past", details={"field": "expires_at"}
            )
    elif body.expires_in_days is not None:
        expires = now + dt.timedelta(days=body.expires_in_days)
    if caller.access_key_id is not None and caller.token_expires_at != NO_EXPIRY:
        limit = caller.token_expires_at
        if expires is None or expires > limit:
            raise PermissionDenied(
                "an access key can only create keys that expire no later than itself "
                f"({limit.isoformat()}); set expires_at or expires_in_days within that"
            )
    return expires


async def _scope(db: AsyncSession, body: AccessKeyCreate, caller: Principal) -> KeyScope | None:
    """The new key's scope, validated against the organisation's clusters and, for a key
    made with a key, within the caller's scope."""
    scope = (
        None
        if body.scope is None
        else KeyScope.parse([(one.cluster, one.namespaces) for one in body.scope.clusters])
    )
    ids = set(scope.cluster_ids) if scope else set()
    if caller.key_scope is not None:
        ids |= caller.key_scope.cluster_ids
    names = await _cluster_names(db, caller.actor.org_id, ids)
    if scope is not None:
        unknown = scope.unknown_clusters(names)
        if unknown:
            raise ValidationFailed(
                f"cluster {unknown[0]} is not a cluster of this organisation; "
                "see kubegate cluster list -o json for the ids",
                details={"field": "scope.clusters"},
            )
    if not covers(caller.key_scope, scope):
        assert caller.key_scope is not None
        raise PermissionDenied(
            "an access key can only create keys within its own scope "
            f"({caller.key_scope.describe(names)}); the new key's would be "
            f"{'everything' if scope is None else scope.describe(names)}"
        )
    return scope


async def create_key(
    db: AsyncSession, state: AppState, caller: Principal, body: AccessKeyCreate
) -> AccessKeyCreated:
    """Create an access key for ``caller`` (its secret answered here, once): the name
    unique among the caller's keys, the expiry and scope within a key-made key's own, the
    creation (and any refusal) audited."""
    async with failures_recorded(state.sessions, caller, CREATE, target_type="access_key"):
        name = body.name.strip()
        if not name:
            raise ValidationFailed("name must not be blank", details={"field": "name"})
        expires = _expiry(body, caller)
        secret = access_keys.new_key()
        async with db.begin():
            scope = await _scope(db, body, caller)
            taken = await db.scalar(
                select(AccessKey.id).where(
                    AccessKey.user_id == caller.actor.user_id,
                    AccessKey.org_id == caller.actor.org_id,
                    AccessKey.name == name,
                )
            )
            if taken is not None:
                raise Conflict(
                    f"you already have an access key named {name!r}; pick another name or "
                    "delete that one first",
                    details={"field": "name", "access_key_id": taken},
                )
            key = AccessKey(
                user_id=caller.actor.user_id,
                org_id=caller.actor.org_id,
                name=name,
                secret_hash=access_keys.stored_hash(secret),
                hint=access_keys.hint(secret),
                scope=None if scope is None else scope.to_json(),
                created_at=utcnow(),
                expires_at=expires,
            )
            db.add(key)
            await db.flush()
            record(
                db,
                caller,
                CREATE,
                target_type="access_key",
                target_id=key.id,
                detail={
                    "name": name,
                    "scope": key.scope,
                    "expires_at": expires.isoformat() if expires else None,
                    **({"via_access_key": caller.access_key_id} if caller.access_key_id else {}),
                },
            )
    [out] = await keys_out(db, caller.actor.org_id, [key], caller.email)
    return AccessKeyCreated(access_key=out, secret=secret)


async def list_keys(
    db: AsyncSession, org_id: str, user_id: str, email: str, page: PageRequest
) -> Page[AccessKeyOut]:
    query = select(AccessKey).where(AccessKey.org_id == org_id, AccessKey.user_id == user_id)
    """``user_id``'s keys in the organisation, oldest first (never their secrets)."""
    rows = list((await db.scalars(paginate(query, page, AccessKey.created_at, AccessKey.id))).all())
    rows, cursor = next_cursor(rows, page)
    return Page[AccessKeyOut](items=await keys_out(db, org_id, rows, email), next_cursor=cursor)


async def member_keys(
    db: AsyncSession, caller: Principal, user_id: str, page: PageRequest
) -> Page[AccessKeyOut]:
    """Another member's keys, for an admin (403 for anyone else, 404 for a non-member)."""
    require_admin(caller.actor, "list other members' access keys")
    user, _ = await get_member(db, caller.actor, user_id)
    return await list_keys(db, caller.actor.org_id, user.id, user.email, page)


async def delete_key(
    db: AsyncSession,
    state: AppState,
    caller: Principal,
    user_id: str,
    key_id: str,
) -> None:
    """Delete one of ``user_id``'s keys and the kube tokens it minted, then close its
    streams; another member's needs an admin; 404 when the user has no such key in the
    caller's organisation."""
    fields = {"target_type": "access_key", "target_id": key_id if is_id(key_id) else ""}
    async with failures_recorded(state.sessions, caller, DELETE, **fields), db.begin():
        if user_id != caller.actor.user_id:
            require_admin(caller.actor, "delete other members' access keys")
            await get_member(db, caller.actor, user_id)
        key = await db.get(AccessKey, key_id) if is_id(key_id) else None
        if key is None or key.user_id != user_id or key.org_id != caller.actor.org_id:
            raise NotFound(f"access key {key_id[:64]} not found")
        if not covers(caller.key_scope, KeyScope.from_json(key.scope)):
            raise PermissionDenied(
                f"access key {key.name!r} reaches beyond this access key's scope; delete it "
                "with a login or a wider key"
            )
        tokens = await delete_key_kube_tokens(db, key.id)
        await db.delete(key)
        record(
            db,
            caller,
            DELETE,
            target_type="access_key",
            target_id=key.id,
            detail={"name": key.name, "user_id": key.user_id, "kube_tokens_deleted": tokens},
        )
    # Committed: the proxy forgets the key's kube tokens and closes its streams.
    state.authority.access_key_deleted(key_id)
