"""The portal's Members page (ADR 0006): ``/portal/members``, for organisation admins.

It lists the organisation's members (role, active or deactivated, how they sign in, when
they were last seen), adds one, changes a role, deactivates or reactivates, and ends a
member's sessions. Every operation is :mod:`kubegate.server.members`'s, the same the REST
API (``/api/v1/users``) calls, with its checks, transactions and audit events: these routes
read a form, call it and render. A member asking for the page is told they cannot, and why.

Writes are plain form ``POST``\\ s carrying the session's CSRF token in a hidden field; they
redirect (303) back to the page with a notice, or render it again with a readable error and
the error's status (403 for a member, 409 for an admin demoting themself, 422 for a bad
value; nothing changed).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from kubegate.domain.access import MemberRole
from kubegate.errors import KubegateError, PermissionDenied, Unauthenticated, ValidationFailed
from kubegate.server.deps import Db, State
from kubegate.server.members import (
    add_member,
    end_member_sessions,
    list_members,
    member_activity,
    update_member,
)
from kubegate.server.pagination import MAX_LIMIT, PageRequest
from kubegate.server.portal_format import as_sentence
from kubegate.server.portal_guard import (
    csrf_field,
    form_writer,
    page_caller,
    redirect,
    refusal,
    to_sign_in,
)
from kubegate.server.portal_render import PortalTemplates
from kubegate.server.principal import Principal
from kubegate.server.schemas.users import MemberCreate, MemberUpdate
from kubegate.server.state import AppState

MEMBERS = "/portal/members"
DONE = {
    "added": "The member was added. They can sign in now; they see only the clusters they "
    "are granted.",
    "role": "The role was changed. It applies from their next request.",
    "deactivated": "The member was deactivated: their sessions, CLI logins and kube tokens "
    "ended, and they cannot sign in until reactivated.",
    "reactivated": "The member was reactivated: they can sign in again.",
    "sessions": "Their sessions and CLI logins ended (and the kube tokens those made). They "
    "can sign in again; deactivate them to stop that.",
}
_FIELD_NAMES = {"email": "Email", "display_name": "Name", "password": "Password", "role": "Role"}


def _checked_member(**fields: Any) -> MemberCreate:
    """The add form as the API's body, or ValidationFailed saying what is wrong with it."""
    try:
        return MemberCreate(**fields)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{_FIELD_NAMES.get(field, field)}: {message}")
        raise ValidationFailed("; ".join(problems)) from None


def member_pages_router(templates: PortalTemplates) -> APIRouter:
    """The routes of the Members page, rendering with ``templates``."""
    router = APIRouter(include_in_schema=False)

    async def members_context(
        request: Request,
        caller: Principal,
        db: Db,
        state: AppState,
        *,
        error: str | None = None,
        form: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        page = await list_members(db, caller.actor, PageRequest(MAX_LIMIT, None))
        activity = await member_activity(db, caller.actor.org_id, [m.id for m in page.items])
        settings = state.settings
        return {
            "title": "Members",
            "caller": caller,
            "csrf_token": csrf_field(request),
            "members": page.items,
            "more_members": page.next_cursor is not None,
            "activity": activity,
            "roles": [role.value for role in MemberRole],
            "password_login": settings.password_login,
            "sso_name": settings.oidc.display_name if settings.oidc is not None else None,
            "error": error,
            "notice": DONE.get(request.query_params.get("done", "")),
            "form": {"email": "", "display_name": "", "role": "member"} | (form or {}),
        }

    def refused(caller: Principal, request: Request, exc: KubegateError) -> Response:
        return templates.page(
            "access_refused.html",
            {
                "title": "Members",
                "caller": caller,
                "csrf_token": csrf_field(request),
                "heading": "You cannot manage members",
                "message": f"{as_sentence(exc.message)}: you are a member of this "
                "organisation, not one of its admins. Ask one of them to add people or "
                "change roles.",
            },
            status=exc.status,
        )

    @router.get(MEMBERS)
    async def members_page(request: Request, db: Db, state: State) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, MEMBERS)
        try:
            context = await members_context(request, caller, db, state)
        except PermissionDenied as exc:
            return refused(caller, request, exc)
        return templates.page("members.html", context)

    async def write(
        request: Request,
        db: Db,
        state: AppState,
        csrf_token: str,
        action: Callable[[Principal], Awaitable[str]],
        *,
        what: str,
        form: dict[str, str] | None = None,
    ) -> Response:
        """Run one write as the signed-in caller: sign-in without a session, 403 without
        the page's CSRF token, the page again with the error when it is refused, and back to
        the page with a notice (``action`` answers its key) when it is done."""
        caller = await form_writer(request, templates, csrf_token, MEMBERS)
        if isinstance(caller, Response):
            return caller
        try:
            done = await action(caller)
        except PermissionDenied as exc:  # a member: the page is not theirs to see either
            return refused(caller, request, exc)
        except KubegateError as exc:
            message = refusal(what, exc)
            context = await members_context(request, caller, db, state, error=message, form=form)
            return templates.page("members.html", context, status=exc.status)
        return redirect(f"{MEMBERS}?{urllib.parse.urlencode({'done': done})}")

    @router.post(MEMBERS)
    async def add(
        request: Request,
        db: Db,
        state: State,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        email: Annotated[str, Form(max_length=320)] = "",
        display_name: Annotated[str, Form(max_length=200)] = "",
        role: Annotated[str, Form(max_length=16)] = "member",
        password: Annotated[str, Form(max_length=1024)] = "",
    ) -> Response:
        form = {"email": email, "display_name": display_name, "role": role}

        async def create(caller: Principal) -> str:
            name = display_name.strip() or email.strip().partition("@")[0]
            body = _checked_member(
                email=email.strip(),
                display_name=name,
                role=role,
                password=password or None,
            )
            await add_member(db, state, caller, body)
            return "added"

        return await write(
            request, db, state, csrf_token, create, what="The member was not added", form=form
        )

    @router.post(f"{MEMBERS}/{{user_id}}/role")
    async def change_role(
        user_id: str,
        request: Request,
        db: Db,
        state: State,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        role: Annotated[str, Form(max_length=16)] = "",
    ) -> Response:
        async def change(caller: Principal) -> str:
            try:
                wanted = MemberRole(role)
            except ValueError:
                raise ValidationFailed(
                    f"the role must be admin or member, not {role[:16]!r}"
                ) from None
            await update_member(db, state, caller, user_id, MemberUpdate(role=wanted))
            return "role"

        return await write(request, db, state, csrf_token, change, what="The role was not changed")

    async def set_active(
        request: Request, db: Db, state: AppState, csrf_token: str, user_id: str, active: bool
    ) -> Response:
        async def change(caller: Principal) -> str:
            await update_member(db, state, caller, user_id, MemberUpdate(is_active=active))
            return "reactivated" if active else "deactivated"

        what = "The member was not " + ("reactivated" if active else "deactivated")
        return await write(request, db, state, csrf_token, change, what=what)

    @router.post(f"{MEMBERS}/{{user_id}}/deactivate")
    async def deactivate(
        user_id: str,
        request: Request,
        db: Db,
        state: State,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        return await set_active(request, db, state, csrf_token, user_id, False)

    @router.post(f"{MEMBERS}/{{user_id}}/reactivate")
    async def reactivate(
        user_id: str,
        request: Request,
        db: Db,
        state: State,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        return await set_active(request, db, state, csrf_token, user_id, True)

    @router.post(f"{MEMBERS}/{{user_id}}/end-sessions")
    async def end_sessions(
        user_id: str,
        request: Request,
        db: Db,
        state: State,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        async def end(caller: Principal) -> str:
            await end_member_sessions(db, state, caller, user_id)
            return "sessions"

        return await write(request, db, state, csrf_token, end, what="No session was ended")

    return router
