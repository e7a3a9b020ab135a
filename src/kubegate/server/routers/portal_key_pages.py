"""The portal's Access keys page (ADR 0006): ``/portal/access-keys``.

Everyone signed in lists their own keys (name, scope, when made, when they expire, when last
used), makes one (a name, an expiry, everything they can do or only some clusters and
namespaces) and deletes one after a confirmation page. A new key's secret is on the page
that answers the create, once: it is stored only hashed, so no later page can show it (the
page says so, and its copy button puts it on the clipboard). An admin also sees and deletes
another member's keys (``?user=<id>``), as the REST API lets them.

Every operation is ``server/key_management.py``'s, the REST API's own (checks, transactions,
audit events): these routes read a form, call it and render. Writes are form ``POST``\\ s
with the session's CSRF token in a hidden field; a delete redirects (303) back with a
notice, and a refusal renders the page again saying what happened, with its status.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from kubegate.errors import KubegateError, NotFound, Unauthenticated
from kubegate.server.deps import Db, State
from kubegate.server.key_management import create_key, delete_key, list_keys, member_keys
from kubegate.server.members import get_member, list_members
from kubegate.server.pagination import MAX_LIMIT, PageRequest
from kubegate.server.portal_guard import (
    csrf_field,
    form_writer,
    page_caller,
    redirect,
    refusal,
    to_sign_in,
)
from kubegate.server.portal_key_form import (
    EXPIRY_CHOICES,
    NAME_MAX,
    key_expiry,
    key_name,
    key_request,
    key_scope,
)
from kubegate.server.portal_render import PortalTemplates
from kubegate.server.principal import Principal
from kubegate.server.schemas import Page
from kubegate.server.schemas.access_keys import AccessKeyCreated, AccessKeyOut
from kubegate.storage.models import Cluster

KEYS = "/portal/access-keys"
CLUSTER_LIMIT = 200
DONE = {
    "deleted": "The access key was deleted. Anything still using it is refused from now on, "
    "and the kube tokens it made stopped working.",
}
FORM = {"name": "", "expires": "90", "expires_on": "", "scope": "all"}


def keys_path(user_id: str | None = None, done: str | None = None) -> str:
    """The page's address: one's own keys, or (for an admin) ``user_id``'s."""
    query = {key: value for key, value in (("user", user_id), ("done", done)) if value}
    return f"{KEYS}?{urllib.parse.urlencode(query)}" if query else KEYS


def key_pages_router(templates: PortalTemplates) -> APIRouter:
    """The routes of these pages, rendering with ``templates``."""
    router = APIRouter(include_in_schema=False)

    def refused(
        caller: Principal, request: Request, heading: str, message: str, status: int
    ) -> Response:
        return templates.page(
            "access_refused.html",
            {
                "title": heading,
                "caller": caller,
                "csrf_token": csrf_field(request),
                "heading": heading,
                "message": message,
                "back": KEYS,
            },
            status=status,
        )

    async def owner_keys(db: Db, caller: Principal, user_id: str | None) -> Page[AccessKeyOut]:
        """The keys the page lists: the caller's, or another member's for an admin."""
        page = PageRequest(MAX_LIMIT, None)
        actor = caller.actor
        if user_id is None or user_id == actor.user_id:
            return await list_keys(db, actor.org_id, actor.user_id, caller.email, page)
        return await member_keys(db, caller, user_id, page)

    async def keys_context(
        request: Request,
        caller: Principal,
        db: Db,
        user_id: str | None,
        *,
        created: AccessKeyCreated | None = None,
        error: str | None = None,
        form: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        own = user_id is None or user_id == caller.actor.user_id
        # Reads only, in the request's own transaction (a create has just committed its own).
        page = await owner_keys(db, caller, None if own else user_id)
        if own:
            member_email = caller.email
        else:
            member_email = (await get_member(db, caller.actor, str(user_id)))[0].email
        clusters = (
            await db.execute(
                select(Cluster.id, Cluster.name)
                .where(Cluster.org_id == caller.actor.org_id)
                .order_by(Cluster.name)
                .limit(CLUSTER_LIMIT)
            )
        ).all()
        members = []
        if caller.actor.is_admin:  # whose keys to see: an admin's choice
            members = (await list_members(db, caller.actor, PageRequest(MAX_LIMIT, None))).items
        today = dt.datetime.now(dt.UTC).date()
        return {
            "title": "Access keys",
            "caller": caller,
            "csrf_token": csrf_field(request),
            "own": own,
            "user_id": None if own else user_id,
            "member_email": member_email,
            "members": members,
            "shown_user": caller.actor.user_id if own else user_id,
            "keys": page.items,
            "more_keys": page.next_cursor is not None,
            "clusters": [{"id": row.id, "name": row.name} for row in clusters],
            "created": created,
            "error": error,
            "notice": DONE.get(request.query_params.get("done", "")),
            "form": FORM | {"clusters": [], "namespaces": {}} | (form or {}),
            "expiry_choices": EXPIRY_CHOICES,
            "name_max": NAME_MAX,
            "date_min": (today + dt.timedelta(days=1)).isoformat(),
        }

    @router.get(KEYS)
    async def keys_page(request: Request, db: Db, user: str | None = None) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, keys_path(user))
        try:
            context = await keys_context(request, caller, db, user)
        except KubegateError as exc:
            heading = "Not found" if isinstance(exc, NotFound) else "Not allowed"
            return refused(caller, request, heading, refusal(heading, exc), exc.status)
        return templates.page("access_keys.html", context)

    @router.post(KEYS)
    async def create(
        request: Request,
        db: Db,
        state: State,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        name: Annotated[str, Form(max_length=1000)] = "",
        expires: Annotated[str, Form(max_length=64)] = "",
        expires_on: Annotated[str, Form(max_length=64)] = "",
        scope: Annotated[str, Form(max_length=64)] = "all",
    ) -> Response:
        caller = await form_writer(request, templates, csrf_token, KEYS)
        if isinstance(caller, Response):
            return caller
        fields = await request.form()
        cluster_ids = [str(one) for one in fields.getlist("cluster")][:200]
        namespaces = {one: str(fields.get(f"namespaces-{one}", ""))[:20_000] for one in cluster_ids}
        form = {
            "name": name,
            "expires": expires,
            "expires_on": expires_on,
            "scope": scope,
            "clusters": cluster_ids,
            "namespaces": namespaces,
        }
        try:
            body = key_request(
                key_name(name),
                key_expiry(expires, expires_on, dt.datetime.now(dt.UTC).date()),
                key_scope(scope == "some", cluster_ids, namespaces),
            )
            created = await create_key(db, state, caller, body)
        except KubegateError as exc:
            message = refusal("The access key was not created", exc)
            context = await keys_context(request, caller, db, None, error=message, form=form)
            return templates.page("access_keys.html", context, status=exc.status)
        context = await keys_context(request, caller, db, None, created=created)
        return templates.page("access_keys.html", context, status=201)

    async def key_of(db: Db, caller: Principal, user_id: str | None, key_id: str) -> AccessKeyOut:
        page = await owner_keys(db, caller, user_id)
        for key in page.items:
            if key.id == key_id:
                return key
        raise NotFound(f"access key {key_id[:64]} not found")

    @router.get(f"{KEYS}/{{key_id}}/delete")
    async def confirm_delete(
        key_id: str, request: Request, db: Db, user: str | None = None
    ) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, keys_path(user))
        try:
            key = await key_of(db, caller, user, key_id)
        except KubegateError as exc:
            heading = "Not found" if isinstance(exc, NotFound) else "Not allowed"
            message = refusal(heading, exc) + " It may have been deleted already."
            return refused(caller, request, heading, message, exc.status)
        context = {
            "title": f"Delete access key {key.name}",
            "caller": caller,
            "csrf_token": csrf_field(request),
            "key": key,
            "own": key.user_id == caller.actor.user_id,
            "back": keys_path(None if key.user_id == caller.actor.user_id else key.user_id),
        }
        return templates.page("access_key_delete.html", context)

    @router.post(f"{KEYS}/{{key_id}}/delete")
    async def delete(
        key_id: str,
        request: Request,
        db: Db,
        state: State,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        user_id: Annotated[str, Form(max_length=64)] = "",
    ) -> Response:
        owner = user_id or None
        caller = await form_writer(request, templates, csrf_token, keys_path(owner))
        if isinstance(caller, Response):
            return caller
        own = owner is None or owner == caller.actor.user_id
        try:
            await delete_key(db, state, caller, owner or caller.actor.user_id, key_id)
        except KubegateError as exc:
            message = refusal("The access key was not deleted", exc)
            return refused(caller, request, "Not deleted", message, exc.status)
        return redirect(keys_path(None if own else owner, "deleted"))

    return router
