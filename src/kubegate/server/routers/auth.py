"""Logging in with a local password for an API token; logging out; who am I."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth import tokens
from kubegate.auth.hashing import verify_password
from kubegate.errors import PermissionDenied, Unauthenticated
from kubegate.server.audit import record
from kubegate.server.deps import ApiCaller, Db, State, app_state, error_responses
from kubegate.server.principal import Principal
from kubegate.server.revocation import delete_person_kube_tokens
from kubegate.server.schemas.auth import (
    LoginRequest,
    LoginResponse,
    MeResponse,
    SignedOut,
    UserOut,
)
from kubegate.server.state import AppState
from kubegate.storage.models import Membership, Organization, User

router = APIRouter(prefix="/api/v1", tags=["auth"])

BAD_LOGIN = "wrong email or password"
PASSWORD_LOGIN_OFF = "password sign-in is turned off on this server; sign in with SSO"


async def password_login_on(request: Request) -> None:
    """Password sign-in (``POST /api/v1/auth/login``, ``POST /org/login``) answers 403 while
    the ``password_login`` setting is false, before any credential is looked at."""
    settings = app_state(request).settings
    if not settings.password_login:
        how = (
            " (kubegate login SERVER --sso, or /auth/oidc/login in a browser)"
            if settings.oidc is not None
            else "; this server has no SSO provider either: use an access key"
        )
        raise PermissionDenied(PASSWORD_LOGIN_OFF + how)


PasswordLogin = Depends(password_login_on)


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


def record_sign_in(
    db: AsyncSession, user: User, membership: Membership, credential_id: str, *, method: str
) -> None:
    """Audit a sign-in (``auth.login``): who, into which organisation, how, which credential."""
    event = record(
        db,
        None,
        "auth.login",
        target_type="session" if method != "device" else "api_token",
        target_id=credential_id,
        org_id=membership.org_id,
        detail={"method": method},
    )
    event.actor_user_id, event.actor_email = user.id, user.email


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
    description="403 while password sign-in is turned off (the password_login setting).",
    responses=error_responses(401, 403, 422),
    dependencies=[PasswordLogin],
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
            idle_seconds=state.settings.api_token_idle_seconds,
        )
    return LoginResponse(
        token=token,
        expires_at=expires,
        idle_timeout_seconds=state.settings.api_token_idle_seconds,
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


async def sign_out_everywhere(db: Db, state: AppState, caller: Principal) -> SignedOut:
    """End every CLI login and portal session of the caller in their organisation, and the
    kube tokens those minted (with their open kubectl streams); access keys stay."""
    actor = caller.actor
    async with db.begin():
        ended = await tokens.revoke_all(db, user_id=actor.user_id, org_id=actor.org_id)
        await delete_person_kube_tokens(db, user_id=actor.user_id, org_id=actor.org_id)
        record(
            db,
            caller,
            "auth.logout_everywhere",
            target_type="user",
            target_id=actor.user_id,
            detail={"ended": ended},
        )
    state.authority.person_signed_out(actor.user_id)
    return SignedOut(ended=ended)


@router.post(
    "/auth/logout-everywhere",
    summary="End all of the caller's CLI logins and portal sessions (sign out everywhere)",
    description="Also ends the kube tokens those logins minted, closing their open kubectl "
    "streams; access keys keep working (delete them with DELETE /api/v1/access-keys/{id}).",
    responses=error_responses(401),
)
async def logout_everywhere(caller: ApiCaller, db: Db, state: State) -> SignedOut:
    return await sign_out_everywhere(db, state, caller)


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
        token_idle_expires_at=caller.idle_expires_at,
    )
