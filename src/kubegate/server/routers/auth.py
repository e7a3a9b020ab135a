"""Logging in with a local password for an API token; logging out; who am I."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from sqlalchemy import select

from kubegate.auth import tokens
from kubegate.auth.hashing import verify_password
from kubegate.errors import Unauthenticated
from kubegate.server.audit import record
from kubegate.server.deps import ApiCaller, Db, State, error_responses
from kubegate.server.schemas.auth import LoginRequest, LoginResponse, MeResponse, UserOut
from kubegate.storage.models import Membership, Organization, User

router = APIRouter(prefix="/api/v1", tags=["auth"])

BAD_LOGIN = "wrong email or password"


async def check_password(db: Db, email: str, password: str) -> tuple[User, Membership]:
    """The active user and their membership for these credentials, or 401 (same message)."""
    row = (
        await db.execute(
            select(User, Membership)
            .join(Membership, Membership.user_id == User.id)
            .where(User.email == email.strip().lower())
            # Sign in to the oldest organisation where the user is still active.
            .order_by(Membership.is_active.desc(), Membership.created_at)
        )
    ).first()
    user, membership = (row[0], row[1]) if row else (None, None)
    stored = user.password_hash if user else None
    # scrypt takes ~50 ms of CPU: off the event loop.
    if not await asyncio.to_thread(verify_password, password, stored):
        raise Unauthenticated(BAD_LOGIN)
    assert user is not None and membership is not None
    if not membership.is_active:
        raise Unauthenticated("you are deactivated in this organisation; ask one of its admins")
    return user, membership


def user_out(user: User, membership: Membership) -> UserOut:
    """A user as a member of one organisation (role and status are per membership)."""
    return UserOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=membership.role,
        is_active=membership.is_active,
    )


@router.post(
    "/auth/login",
    summary="Exchange email and password for an API token",
    responses=error_responses(401, 422),
)
async def login(body: LoginRequest, db: Db, state: State) -> LoginResponse:
    async with db.begin():
        user, membership = await check_password(db, body.email, body.password)
        token, expires = tokens.issue(
            db,
            user_id=user.id,
            org_id=membership.org_id,
            kind="api",
            ttl_seconds=state.settings.api_token_ttl_seconds,
        )
    return LoginResponse(
        token=token,
        expires_at=expires,
        user=user_out(user, membership),
        org_id=membership.org_id,
    )


@router.post(
    "/auth/logout",
    status_code=204,
    summary="Revoke the API token used for this request",
    responses=error_responses(401),
)
async def logout(caller: ApiCaller, db: Db) -> Response:
    async with db.begin():
        await tokens.revoke(db, caller.token_id)
        record(db, caller, "auth.logout", target_type="api_token", target_id=caller.token_id)
    return Response(status_code=204)


@router.get(
    "/me",
    summary="The caller, their organisation and when their API token expires",
    responses=error_responses(401),
)
async def me(caller: ApiCaller, db: Db) -> MeResponse:
    user = await db.get(User, caller.actor.user_id)
    org = await db.get(Organization, caller.actor.org_id)
    membership = await db.get(Membership, (caller.actor.org_id, caller.actor.user_id))
    assert user is not None and org is not None and membership is not None
    return MeResponse(
        user=user_out(user, membership),
        org_id=org.id,
        org_name=org.name,
        token_expires_at=caller.token_expires_at,
    )
