"""``/api/v1/users``: members of the caller's organisation: list, add, change role or
deactivate, end sessions.

Everything here is for organisation admins, listing included: a member gets 403. The list
shows everyone's role and account status, which is an admin's tool, not a directory. What
each operation does, and the rules it keeps (an organisation never loses its last admin), is
``server/members.py``'s, which the portal's Members page calls too: these routes are thin.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from kubegate.server.deps import ApiCaller, Db, State, error_responses
from kubegate.server.members import (
    add_member,
    end_member_sessions,
    list_members,
    update_member,
)
from kubegate.server.members import get_member as get_member
from kubegate.server.members import member_out as member_out
from kubegate.server.pagination import PageRequest, page_request
from kubegate.server.schemas import Page
from kubegate.server.schemas.auth import SignedOut
from kubegate.server.schemas.users import MemberCreate, MemberOut, MemberUpdate

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.get(
    "",
    summary="Members of the caller's organisation, oldest first, with role and status (admin)",
    responses=error_responses(400, 401, 403, 422, 503),
)
async def list_users(
    caller: ApiCaller, db: Db, page: Annotated[PageRequest, Depends(page_request)]
) -> Page[MemberOut]:
    return await list_members(db, caller.actor, page)


@router.post(
    "",
    status_code=201,
    summary="Add a member (admin): creates the user if the email is new",
    responses=error_responses(400, 401, 403, 409, 413, 422, 503),
)
async def add_user(body: MemberCreate, caller: ApiCaller, db: Db, state: State) -> MemberOut:
    return await add_member(db, state, caller, body)


@router.patch(
    "/{user_id}",
    summary="Change a member's role or activate/deactivate their account (admin)",
    description="Omitted or null fields are kept, so an empty object changes nothing.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def update_user(
    user_id: str, body: MemberUpdate, caller: ApiCaller, db: Db, state: State
) -> MemberOut:
    return await update_member(db, state, caller, user_id, body)


@router.post(
    "/{user_id}/sessions/revoke",
    summary="End every portal session and CLI login of a member (admin)",
    description="Also ends the kube tokens those minted, closing their open kubectl streams; "
    "their access keys keep working (delete them under /api/v1/users/{user_id}/access-keys). "
    "The member can sign in again; deactivate them to stop that.",
    responses=error_responses(401, 403, 404),
)
async def end_sessions(user_id: str, caller: ApiCaller, db: Db, state: State) -> SignedOut:
    return SignedOut(ended=await end_member_sessions(db, state, caller, user_id))
