"""``kubegate login --sso``'s device authorizations (RFC 8628) in the database.

:func:`start` stores a new authorization (the device code only as its SHA-256, the user code
normalised); :func:`poll` is one poll of the token endpoint, which hands out a CLI login
once, when the person approved; :func:`find_pending` and :func:`decide` are the approval
page's. The decisions themselves are :mod:`kubegate.auth.device_codes`'s, on plain values.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth import tokens
from kubegate.auth.device_codes import (
    SLOW_DOWN_STEP_SECONDS,
    Outcome,
    PollState,
    new_device_code,
    new_user_code,
    poll_outcome,
)
from kubegate.auth.hashing import secret_hash
from kubegate.domain.access import Actor, MemberRole
from kubegate.server.audit import record
from kubegate.server.principal import Principal
from kubegate.settings import Settings
from kubegate.storage.models import DeviceAuthorization, Membership, User, utcnow

# Rows stay this long after they expire (a late poll still hears expired_token), then go.
KEEP_EXPIRED = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Started:
    """A new device authorization: the device code (shown once) and the user code."""

    device_code: str
    user_code: str
    expires_in: int
    interval: int


@dataclass(frozen=True, slots=True)
class Issued:
    """The CLI login a poll handed out, and who it is for."""

    token: str
    expires_at: dt.datetime
    idle_timeout_seconds: int
    user: User
    membership: Membership


@dataclass(frozen=True, slots=True)
class PollResult:
    """One poll's answer: a login (``outcome`` is ``issue``) or the RFC error, with the
    interval the client must keep from now on."""

    outcome: Outcome
    interval: int
    issued: Issued | None = None


async def start(db: AsyncSession, settings: Settings, client_description: str) -> Started:
    """Store a new pending authorization, and remove ones long expired."""
    now = utcnow()
    await db.execute(
        delete(DeviceAuthorization).where(DeviceAuthorization.expires_at < now - KEEP_EXPIRED)
    )
    device_code = new_device_code()
    user_code = new_user_code()
    # 20^8 codes: a collision with a live one is all but impossible, but costs one read.
    while await db.scalar(
        select(DeviceAuthorization.id).where(DeviceAuthorization.user_code == user_code)
    ):
        user_code = new_user_code()
    db.add(
        DeviceAuthorization(
            device_code_hash=secret_hash(device_code),
            user_code=user_code,
            client_description=client_description,
            interval_seconds=settings.device_poll_interval_seconds,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=settings.device_code_ttl_seconds),
        )
    )
    return Started(
        device_code,
        user_code,
        settings.device_code_ttl_seconds,
        settings.device_poll_interval_seconds,
    )


async def poll(db: AsyncSession, settings: Settings, device_code: str) -> PollResult:
    """One poll with ``device_code`` (RFC 8628 §3.4–3.5), inside the caller's transaction.

    Every poll of a known code is remembered, for the next one's ``slow_down``; a poll that
    is told to slow down adds 5 s to the code's interval. An approved code is turned into a
    CLI login exactly once: the switch to ``used`` is a conditional update, so of two polls
    racing for it one gets the login and the other ``invalid_grant``.
    """
    row = (
        await db.execute(
            select(DeviceAuthorization).where(
                DeviceAuthorization.device_code_hash == secret_hash(device_code)
            )
        )
    ).scalar_one_or_none()
    now = utcnow()
    if row is None:
        return PollResult(Outcome.invalid_grant, settings.device_poll_interval_seconds)
    outcome = poll_outcome(
        PollState(row.status, row.expires_at, row.interval_seconds, row.last_polled_at), now
    )
    interval = row.interval_seconds + (
        SLOW_DOWN_STEP_SECONDS if outcome is Outcome.slow_down else 0
    )
    if outcome is not Outcome.issue:
        await db.execute(
            update(DeviceAuthorization)
            .where(DeviceAuthorization.id == row.id)
            .values(last_polled_at=now, interval_seconds=interval)
        )
        return PollResult(outcome, interval)
    claimed = await db.execute(
        update(DeviceAuthorization)
        .where(DeviceAuthorization.id == row.id, DeviceAuthorization.status == "approved")
        .values(status="used", last_polled_at=now)
    )
    if getattr(claimed, "rowcount", 0) != 1 or row.user_id is None or row.org_id is None:
        return PollResult(Outcome.invalid_grant, interval)
    membership = await db.get(Membership, (row.org_id, row.user_id))
    user = await db.get(User, row.user_id)
    if membership is None or user is None or not membership.is_active:
        return PollResult(Outcome.access_denied, interval)
    token, expires = tokens.issue(
        db,
        user_id=user.id,
        org_id=membership.org_id,
        kind="api",
        ttl_seconds=settings.api_token_ttl_seconds,
        idle_seconds=settings.api_token_idle_seconds,
        auth_method="device",
    )
    who = Principal(
        Actor(user_id=user.id, org_id=membership.org_id, role=MemberRole(membership.role)),
        user.email,
        "",
        "api",
        expires,
    )
    record(
        db,
        who,
        "auth.device.login",
        target_type="device_authorization",
        target_id=row.id,
        detail={"client": row.client_description},
    )
    issued = Issued(token, expires, settings.api_token_idle_seconds, user, membership)
    return PollResult(Outcome.issue, interval, issued)


@dataclass(frozen=True, slots=True)
class Pending:
    """A device authorization waiting for its approval, as the approval page shows it."""

    id: str
    user_code: str
    client_description: str
    created_at: dt.datetime
    expires_at: dt.datetime


async def find_pending(db: AsyncSession, user_code: str) -> Pending | None:
    """The live, still pending authorization with this (normalised) user code, or None."""
    row = (
        await db.execute(
            select(DeviceAuthorization).where(
                DeviceAuthorization.user_code == user_code,
                DeviceAuthorization.status == "pending",
                DeviceAuthorization.expires_at > utcnow(),
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return Pending(row.id, row.user_code, row.client_description, row.created_at, row.expires_at)


async def decide(
    db: AsyncSession, caller: Principal, user_code: str, *, approve: bool
) -> Pending | None:
    """Approve (for the caller, in their organisation) or deny the pending authorization
    with this user code, recording it; None when there is no such live pending one."""
    pending = await find_pending(db, user_code)
    if pending is None:
        return None
    values: dict[str, object] = {"status": "approved" if approve else "denied"}
    if approve:
        values |= {
            "user_id": caller.actor.user_id,
            "org_id": caller.actor.org_id,
            "approved_at": utcnow(),
        }
    changed = await db.execute(
        update(DeviceAuthorization)
        .where(DeviceAuthorization.id == pending.id, DeviceAuthorization.status == "pending")
        .values(**values)
    )
    if getattr(changed, "rowcount", 0) != 1:
        return None  # decided in another tab a moment ago
    record(
        db,
        caller,
        "auth.device.approve" if approve else "auth.device.deny",
        target_type="device_authorization",
        target_id=pending.id,
        detail={"client": pending.client_description},
    )
    return pending
