"""The members of an organisation: list, add, change role or deactivate, end sessions.

What ``/api/v1/users`` (``routers/users.py``) and the portal's Members page
(``routers/portal_member_pages.py``) both do, in one place: the same checks, transactions
and audit events whichever way an admin asks.

- A user is one person, found by email, who may belong to several organisations; a
  membership gives them a role (``admin`` or ``member``) in one of them. Adding an email that
  is new creates the user (with a password for local login, or none for SSO-only users);
  adding an existing user only creates the membership, and they keep their name and password.
- ``is_active`` is the membership's: deactivating a member refuses their sign-in to this
  organisation and revokes every API token and portal session they hold for it, at once
  (their access keys and kube tokens stop at the next request: both check the membership),
  and closes their open kubectl streams; reactivating lets them sign in again (with new
  tokens). Their memberships of other organisations are untouched.
- An admin can end a member's sessions and CLI logins without deactivating them.
- An admin cannot demote or deactivate themself, so an organisation always keeps at least one
  active admin: another admin has to do it.

Every change, and every refused attempt, is recorded in the audit log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth import tokens
from kubegate.auth.hashing import hash_password
from kubegate.domain.access import Actor, MemberRole, require_admin
from kubegate.errors import Conflict, NotFound
from kubegate.server.audit import failures_recorded, record
from kubegate.server.pagination import PageRequest, encode_cursor, paginate
from kubegate.server.principal import Principal
from kubegate.server.revocation import delete_person_kube_tokens
from kubegate.server.schemas import Page
from kubegate.server.schemas.users import MemberCreate, MemberOut, MemberUpdate
from kubegate.server.state import AppState
from kubegate.storage.models import ApiToken, Membership, User, UserIdentity

USER_ID = re.compile(r"^[0-9a-f]{32}$")


def member_out(user: User, membership: Membership) -> MemberOut:
    """The API's view of ``user`` as a member through ``membership``."""
    return MemberOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=MemberRole(membership.role),
        is_active=membership.is_active,
        local_login=user.password_hash is not None,
        joined_at=membership.created_at,
    )


def audit_target(user_id: str) -> dict[str, str]:
    """The audit fields for a change to ``user_id``: the path is the caller's text, so only
    a well-formed id goes into the record."""
    return {"target_type": "user", "target_id": user_id if USER_ID.match(user_id) else ""}


async def get_member(db: AsyncSession, actor: Actor, user_id: str) -> tuple[User, Membership]:
    """A member of the caller's organisation, or 404 (also for users of other organisations)."""
    if not USER_ID.match(user_id):
        raise NotFound(f"user {user_id[:64]!r} not found: user ids are 32 hex digits")
    row = (
        await db.execute(
            select(User, Membership)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.org_id == actor.org_id, User.id == user_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"user {user_id} is not a member of this organisation")
    return row[0], row[1]


async def list_members(db: AsyncSession, actor: Actor, page: PageRequest) -> Page[MemberOut]:
    """The organisation's members, oldest first (admins only)."""
    require_admin(actor, "list users")
    query = (
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == actor.org_id)
    )
    statement = paginate(
        cast("Select[Any]", query), page, Membership.created_at, Membership.user_id
    )
    rows: list[tuple[User, Membership]] = [(r[0], r[1]) for r in await db.execute(statement)]
    cursor = None
    if len(rows) > page.limit:
        rows = rows[: page.limit]
        last_user, last_membership = rows[-1]
        cursor = encode_cursor(last_membership.created_at, last_user.id)
    return Page[MemberOut](items=[member_out(u, m) for u, m in rows], next_cursor=cursor)


@dataclass(frozen=True, slots=True)
class Activity:
    """When a member was last seen in the organisation (their latest session or CLI login
    used or started), and whether they have signed in with SSO."""

    last_seen: dt.datetime | None
    sso: bool


async def member_activity(
    db: AsyncSession, org_id: str, user_ids: Sequence[str]
) -> dict[str, Activity]:
    """:class:`Activity` of each of ``user_ids`` in ``org_id``."""
    if not user_ids:
        return {}
    seen = await db.execute(
        select(
            ApiToken.user_id,
            func.max(func.coalesce(ApiToken.last_used_at, ApiToken.created_at)),
        )
        .where(ApiToken.org_id == org_id, ApiToken.user_id.in_(user_ids))
        .group_by(ApiToken.user_id)
    )
    last_seen: dict[str, dt.datetime] = {row[0]: row[1] for row in seen}
    linked = set(
        await db.scalars(
            select(UserIdentity.user_id).where(UserIdentity.user_id.in_(user_ids)).distinct()
        )
    )
    return {
        user_id: Activity(_aware(last_seen.get(user_id)), user_id in linked) for user_id in user_ids
    }


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """An aggregate's time, which some drivers hand back without its zone, in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)


async def add_member(
    db: AsyncSession, state: AppState, caller: Principal, body: MemberCreate
) -> MemberOut:
    """Add ``body.email`` to the caller's organisation, creating the user if it is new."""
    async with failures_recorded(state.sessions, caller, "user.add", target_type="user"):
        require_admin(caller.actor, "add users")
        # scrypt takes ~50 ms of CPU: off the event loop, and before the transaction opens.
        password_hash = (
            await asyncio.to_thread(hash_password, body.password)
            if body.password is not None
            else None
        )
        async with db.begin():
            user = await db.scalar(select(User).where(User.email == body.email))
            is_new = user is None
            try:
                if user is None:
                    user = User(
                        email=body.email,
                        display_name=body.display_name,
                        password_hash=password_hash,
                    )
                    db.add(user)
                    await db.flush()  # the user row first: the membership points at it
                else:
                    await _require_addable(db, caller.actor, user, body)
                membership = Membership(
                    org_id=caller.actor.org_id, user_id=user.id, role=body.role.value
                )
                db.add(membership)
                await db.flush()
            except IntegrityError as exc:
                raise Conflict(
                    f"{body.email} was just added by another request; list the users to see them",
                    details={"field": "email"},
                ) from exc
            record(
                db,
                caller,
                "user.add",
                target_type="user",
                target_id=user.id,
                detail={"email": user.email, "role": membership.role, "new_user": is_new},
            )
    return member_out(user, membership)


async def _require_addable(db: AsyncSession, actor: Actor, user: User, body: MemberCreate) -> None:
    """An existing user can join once, and nobody else sets their password."""
    if await db.get(Membership, (actor.org_id, user.id)) is not None:
        raise Conflict(
            f"{user.email} is already a member of this organisation; change their role with "
            f"PATCH /api/v1/users/{user.id}",
            details={"field": "email", "user_id": user.id},
        )
    if body.password is not None:
        raise Conflict(
            f"{user.email} already has a kubegate account and keeps their own password; add "
            "them again without 'password'",
            details={"field": "password"},
        )


async def update_member(
    db: AsyncSession, state: AppState, caller: Principal, user_id: str, body: MemberUpdate
) -> MemberOut:
    """Change a member's role and/or activate or deactivate them (omitted: kept)."""
    async with failures_recorded(state.sessions, caller, "user.update", **audit_target(user_id)):
        require_admin(caller.actor, "change users")
        async with db.begin():
            user, membership = await get_member(db, caller.actor, user_id)
            _refuse_self_lockout(caller.actor, user.id, body)
            changes: dict[str, dict[str, object]] = {}
            revoked: int | None = None
            if body.role is not None and body.role.value != membership.role:
                changes["role"] = {"from": membership.role, "to": body.role.value}
                membership.role = body.role.value
            if body.is_active is not None and body.is_active != membership.is_active:
                changes["is_active"] = {"from": membership.is_active, "to": body.is_active}
                membership.is_active = body.is_active
                if not body.is_active:
                    revoked = await tokens.revoke_all(
                        db, user_id=membership.user_id, org_id=membership.org_id
                    )
            record(
                db,
                caller,
                "user.update",
                target_type="user",
                target_id=user.id,
                detail={
                    "email": user.email,
                    "changes": changes,
                    **({"tokens_revoked": revoked} if revoked is not None else {}),
                },
            )
    if revoked is not None:
        # Committed: the proxy forgets the member's kube tokens and closes their streams.
        state.authority.user_changed(user.id)
    return member_out(user, membership)


async def end_member_sessions(
    db: AsyncSession, state: AppState, caller: Principal, user_id: str
) -> int:
    """End every portal session and CLI login of a member, and the kube tokens those
    minted; answers how many sessions and logins ended."""
    fields = audit_target(user_id)
    async with failures_recorded(state.sessions, caller, "user.sessions_revoke", **fields):
        require_admin(caller.actor, "end other members' sessions")
        async with db.begin():
            user, membership = await get_member(db, caller.actor, user_id)
            ended = await tokens.revoke_all(db, user_id=user.id, org_id=membership.org_id)
            await delete_person_kube_tokens(db, user_id=user.id, org_id=membership.org_id)
            record(
                db,
                caller,
                "user.sessions_revoke",
                detail={"email": user.email, "ended": ended},
                **fields,
            )
    state.authority.person_signed_out(user.id)
    return ended


def _refuse_self_lockout(actor: Actor, user_id: str, body: MemberUpdate) -> None:
    """Admins cannot demote or deactivate themselves: the organisation keeps an admin."""
    if user_id != actor.user_id:
        return
    if body.role is MemberRole.MEMBER:
        raise Conflict(
            "you cannot demote yourself: another organisation admin has to do it, so the "
            "organisation is never left without an admin",
            details={"field": "role"},
        )
    if body.is_active is False:
        raise Conflict(
            "you cannot deactivate yourself: another organisation admin has to do it, so the "
            "organisation is never left without an admin",
            details={"field": "is_active"},
        )
