"""Access keys: anyone creates, lists and deletes their own; admins list and delete anyone's.

A key inherits exactly its creator's permissions; its scope (``domain/key_scope.py``) only
narrows them. The secret is answered once by create and stored as its SHA-256. Deleting a
key deletes the kube tokens it minted and, once committed, tells the proxy, which closes the
key's open streams at once. Every change, and every refused attempt, is audited
(``access_key.create``, ``access_key.delete``).

A caller using an access key can create only keys within its own scope and lifetime, and
delete only keys within its scope; other members' keys are an admin's, through
``/api/v1/users/{user_id}/access-keys``, refused to scoped keys (``server/key_policy.py``).
The operations are ``server/key_management.py``'s, which the portal's page uses too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from kubegate.server.deps import ApiCaller, Db, State, error_responses
from kubegate.server.key_management import create_key, delete_key, list_keys, member_keys
from kubegate.server.pagination import PageRequest, page_request
from kubegate.server.schemas import Page
from kubegate.server.schemas.access_keys import AccessKeyCreate, AccessKeyCreated, AccessKeyOut

router = APIRouter(prefix="/api/v1/access-keys", tags=["access keys"])
admin_router = APIRouter(prefix="/api/v1/users/{user_id}/access-keys", tags=["access keys"])


@router.post(
    "",
    status_code=201,
    summary="Create an access key for the caller; answers the secret once",
    responses=error_responses(401, 403, 409, 422),
)
async def create_access_key(
    body: AccessKeyCreate, caller: ApiCaller, db: Db, state: State
) -> AccessKeyCreated:
    return await create_key(db, state, caller, body)


@router.get(
    "",
    summary="The caller's access keys, oldest first (never their secrets)",
    responses=error_responses(401, 403),
)
async def list_access_keys(
    caller: ApiCaller, db: Db, page: Annotated[PageRequest, Depends(page_request)]
) -> Page[AccessKeyOut]:
    actor = caller.actor
    return await list_keys(db, actor.org_id, actor.user_id, caller.email, page)


@router.delete(
    "/{key_id}",
    status_code=204,
    summary="Delete one of the caller's access keys; its kube tokens and streams end at once",
    responses=error_responses(401, 403, 404),
)
async def delete_access_key(key_id: str, caller: ApiCaller, db: Db, state: State) -> Response:
    await delete_key(db, state, caller, caller.actor.user_id, key_id)
    return Response(status_code=204)


@admin_router.get(
    "",
    summary="A member's access keys, oldest first (admin)",
    responses=error_responses(401, 403, 404),
)
async def list_member_access_keys(
    user_id: str,
    caller: ApiCaller,
    db: Db,
    page: Annotated[PageRequest, Depends(page_request)],
) -> Page[AccessKeyOut]:
    return await member_keys(db, caller, user_id, page)


@admin_router.delete(
    "/{key_id}",
    status_code=204,
    summary="Delete a member's access key (admin); its kube tokens and streams end at once",
    responses=error_responses(401, 403, 404),
)
async def delete_member_access_key(
    user_id: str, key_id: str, caller: ApiCaller, db: Db, state: State
) -> Response:
    await delete_key(db, state, caller, user_id, key_id)
    return Response(status_code=204)
