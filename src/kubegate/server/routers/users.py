"""Users and memberships of the caller's organisation: list, add, change role or deactivate.

Everything here is for organisation admins, listing included: a member gets 403. The list
shows everyone's role and account status, which is an admin's tool, not a directory.

- A user is one person, found by email, who may belong to several organisations; a
  membership gives them a role (``admin`` or ``member``) in one of them. Adding an email that
  is new creates the user (with a password for local login, or none for SSO-only users);
  adding an existing user only creates the membership, and they keep their name and password.
- ``is_active`` is the membership's: deactivating a member refuses their sign-in to this
  organisation and revokes every API token and portal session they hold for it, at once
  (their access keys and kube tokens stop at the next request: both check the membership),
  and closes their open kubectl streams;
  reactivating lets them sign in again (with new tokens). Their memberships of other
  organisations are untouched.
- An admin can end a member's sessions and CLI logins without deactivating them.
- An admin cannot demote or deactivate themself, so an organisation always keeps at least one
  active admin: another admin has to do it.

Every change, and every refused attempt, is recorded in the audit log.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth import tokens
from kubegate.auth.hashing import hash_password
from kubegate.domain.access import Actor, MemberRole, require_admin
from kubegate.errors import Conflict, NotFound
from kubegate.server.audit import failures_recorded, record
from kubegate.server.deps import ApiCaller, Db, State, error_responses
from kubegate.server.pagination import PageRequest, encode_cursor, page_request, paginate
from kubegate.server.revocation import delete_person_kube_tokens
from kubegate.server.schemas import Page
from kubegate.server.schemas.auth import SignedOut
from kubegate.server.schemas.users import MemberCreate, MemberOut, MemberUpdate
from kubegate.storage.models import Membership, User

router = APIRouter(prefix="/api/v1/users", tags=["users"])

_USER_ID = re.compile(r"^[0-9a-f]{32}$")


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


async def get_member(db: AsyncSession, actor: Actor, user_id: str) -> tuple[User, Membership]:
    """A member of the caller's organisation, or 404 (also for users of other organisations)."""
    if not _USER_ID.match(user_id):
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


@router.get(
    "",
    summary="Members of the caller's organisation, oldest first, with role and status (admin)",
    responses=error_responses(400, 401, 403, 422, 503),
)
async def list_users(
    caller: ApiCaller, db: Db, page: Annotated[PageRequest, Depends(page_request)]
) -> Page[MemberOut]:
    require_admin(caller.actor, "list users")
    query = (
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == caller.actor.org_id)
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


@router.post(
    "",
    status_code=201,
    summary="Add a member (admin): creates the user if the email is new",
    responses=error_responses(400, 401, 403, 409, 413, 422, 503),
)
async def add_user(body: MemberCreate, caller: ApiCaller, db: Db, state: State) -> MemberOut:
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


@router.patch(
    "/{user_id}",
    summary="Change a member's role or activate/deactivate their account (admin)",
    description="Omitted or null fields are kept, so an empty object changes nothing.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def update_user(
    user_id: str, body: MemberUpdate, caller: ApiCaller, db: Db, state: State
) -> MemberOut:
    # The path is the caller's text: only a well-formed id goes into the audit record.
    fields = {"target_type": "user", "target_id": user_id if _USER_ID.match(user_id) else ""}
    async with failures_recorded(state.sessions, caller, "user.update", **fields):
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


@router.post(
    "/{user_id}/sessions/revoke",
    summary="End every portal session and CLI login of a member (admin)",
    description="Also ends the kube tokens those minted, closing their open kubectl streams; "
    "their access keys keep working (delete them under /api/v1/users/{user_id}/access-keys). "
    "The member can sign in again; deactivate them to stop that.",
    responses=error_responses(401, 403, 404),
)
async def end_sessions(user_id: str, caller: ApiCaller, db: Db, state: State) -> SignedOut:
    fields = {"target_type": "user", "target_id": user_id if _USER_ID.match(user_id) else ""}
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
    return SignedOut(ended=ended)


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
