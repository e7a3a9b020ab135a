"""The portal's Audit page (ADR 0006): ``/portal/audit``, for organisation admins.

A table of the organisation's audit events, newest first, narrowed by a filter form sent
with ``GET`` (so a filtered view's address can be shared) and paged by cursor. *Follow live*
adds what is recorded after the page opened, without a reload: the page polls a fragment
with the API's ``after`` cursor (the way ``kubegate audit --follow`` does), and each answer
replaces the poller with one carrying the next cursor. *Export* downloads every matching
event as JSON lines, streamed a page at a time (what ``kubegate audit export`` writes).

Reads are :mod:`kubegate.server.audit_reads`'s, the same ``GET /api/v1/audit`` uses, and
the filters are checked by ``routers/audit_log.py``'s rules: an unknown, repeated or invalid
filter is a readable 422, never a silent "everything".
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select

from kubegate.domain.access import require_admin
from kubegate.errors import KubegateError, PermissionDenied, Unauthenticated, ValidationFailed
from kubegate.server.audit_query import (
    TIME_EXAMPLE,
    AuditFilter,
    FollowPosition,
    decode_after,
)
from kubegate.server.audit_reads import export_lines, export_query, read_audit
from kubegate.server.deps import Db, State
from kubegate.server.pagination import MAX_LIMIT, PageRequest, decode_cursor
from kubegate.server.portal_format import as_sentence
from kubegate.server.portal_guard import csrf_field, page_caller, refusal, to_sign_in
from kubegate.server.portal_render import PAGE_HEADERS, PortalTemplates
from kubegate.server.principal import Principal
from kubegate.server.routers.audit_log import FILTERS, filters_from_query
from kubegate.server.schemas.audit import AuditEventOut
from kubegate.storage.models import Cluster

AUDIT = "/portal/audit"
PAGE_SIZE = 50
FOLLOW_SECONDS = 2
PAGE_PARAMETERS = FILTERS | {"cursor", "follow"}
LIVE_PARAMETERS = FILTERS | {"after", "seen"}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_SEEN = 200


def _one_each(multi: list[tuple[str, str]], known: frozenset[str]) -> None:
    """Refuse a parameter the page does not know, or one given twice, naming it."""
    counts = Counter(name for name, _ in multi)
    unknown = sorted(set(counts) - known)
    if unknown:
        raise ValidationFailed(
            f"the audit page has no filter {', '.join(unknown)}: it filters on "
            f"{', '.join(sorted(FILTERS))}",
            details={"field": unknown[0]},
        )
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise ValidationFailed(
            f"{repeated[0]} is given {counts[repeated[0]]} times; give each filter once",
            details={"field": repeated[0]},
        )


def _query_filters(request: Request, known: frozenset[str]) -> tuple[dict[str, str], AuditFilter]:
    """The request's filter fields (the non-empty ones) and the filters they make."""
    params = request.query_params
    _one_each(params.multi_items(), known)
    given = {name: params[name].strip() for name in FILTERS if params.get(name, "").strip()}
    return given, filters_from_query(given)


def _value(value: object) -> str:
    """A changed value as the API writes it (``true``, not Python's ``True``)."""
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def _what(event: AuditEventOut) -> dict[str, Any]:
    """How a row says what was done: a proxied request as verb, resource, name and
    namespace (exec and attach with their command), an admin action by name and target."""
    detail = event.detail
    if event.action != "kube.request":
        email = detail.get("email")
        target = str(email) if email else f"{event.target_type} {event.target_id}".strip()
        changes = detail.get("changes")
        said = (
            ", ".join(
                f"{name} {_value(change.get('from'))} → {_value(change.get('to'))}"
                for name, change in changes.items()
                if isinstance(change, dict)
            )
            if isinstance(changes, dict)
            else detail.get("message")
        )
        return {"action": event.action, "target": target, "about": said, "command": None}
    resource = event.resource or str(detail.get("path", ""))
    if event.subresource:
        resource = f"{resource}/{event.subresource}"
    command = detail.get("command")
    return {
        "action": " ".join(p for p in (event.verb or str(detail.get("method", "")), resource) if p),
        "target": str(detail.get("name") or ""),
        "about": event.namespace,
        "command": " ".join(str(word) for word in command) if isinstance(command, list) else None,
    }


def _who(event: AuditEventOut) -> dict[str, str | None]:
    """Who acted, and through what: an access key or a service account, when one was used."""
    detail = event.detail
    via = None
    if detail.get("service_account_id"):
        via = f"service account {detail['service_account_id']}"
    elif detail.get("access_key_id"):
        via = f"access key {detail['access_key_id']}"
    return {"email": event.actor_email or "kubegate (the server)", "via": via}


def audit_pages_router(templates: PortalTemplates) -> APIRouter:
    """The routes of the Audit page, rendering with ``templates``."""
    router = APIRouter(include_in_schema=False)

    async def cluster_names(db: Db, caller: Principal) -> dict[str, str]:
        rows = await db.execute(
            select(Cluster.id, Cluster.name)
            .where(Cluster.org_id == caller.actor.org_id)
            .order_by(Cluster.name)
        )
        return {row[0]: row[1] for row in rows}

    def rows_of(events: list[AuditEventOut], clusters: Mapping[str, str]) -> list[dict[str, Any]]:
        return [
            {
                "event": event,
                "who": _who(event),
                "what": _what(event),
                "cluster": clusters.get(event.cluster_id, event.cluster_id)
                if event.cluster_id
                else None,
                "status": str(event.status_code) if event.status_code is not None else event.result,
                "failed": (event.status_code or 0) >= 400 or event.result != "success",
            }
            for event in events
        ]

    def refused(caller: Principal, request: Request, exc: KubegateError) -> Response:
        return templates.page(
            "access_refused.html",
            {
                "title": "Audit",
                "caller": caller,
                "csrf_token": csrf_field(request),
                "heading": "You cannot read the audit log",
                "message": f"{as_sentence(exc.message)}: it shows everyone's actions, so only "
                "the organisation's admins read it. Ask one of them if you need to know what "
                "happened.",
            },
            status=exc.status,
        )

    def live_url(given: Mapping[str, str], after: str, seen: list[str]) -> str:
        query = dict(given) | {"after": after} | ({"seen": ",".join(seen)} if seen else {})
        return f"{AUDIT}/live?{urllib.parse.urlencode(query)}"

    @router.get(AUDIT)
    async def audit_page(request: Request, db: Db) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, AUDIT)
        try:
            require_admin(caller.actor, "read the audit log")
        except PermissionDenied as exc:
            return refused(caller, request, exc)
        clusters = await cluster_names(db, caller)
        params = request.query_params
        shown = {name: params.get(name, "") for name in FILTERS}
        context: dict[str, Any] = {
            "title": "Audit",
            "caller": caller,
            "csrf_token": csrf_field(request),
            "clusters": clusters,
            "form": shown,
            "time_example": TIME_EXAMPLE,
            "error": None,
            "rows": [],
            "filtered": False,
            "next_url": None,
            "first_url": None,
            "follow_url": None,
            "stop_url": None,
            "export_url": None,
            "live_url": None,
            "follow_seconds": FOLLOW_SECONDS,
        }
        try:
            given, filters = _query_filters(request, PAGE_PARAMETERS)
            cursor = params.get("cursor") or None
            page = PageRequest(PAGE_SIZE, decode_cursor(cursor) if cursor else None)
            answer = await read_audit(db, caller.actor, filters, page, None)
        except KubegateError as exc:
            context["error"] = refusal("The audit log was not read", exc)
            return templates.page("audit.html", context, status=exc.status)
        encoded = urllib.parse.urlencode(given)
        following = params.get("follow") == "on" and cursor is None
        context |= {
            "rows": rows_of(answer.items, clusters),
            "filtered": bool(given),
            "first_url": f"{AUDIT}?{encoded}" if cursor else None,
            "next_url": f"{AUDIT}?{urllib.parse.urlencode(given | {'cursor': answer.next_cursor})}"
            if answer.next_cursor
            else None,
            "follow_url": f"{AUDIT}?{urllib.parse.urlencode(given | {'follow': 'on'})}",
            "stop_url": f"{AUDIT}?{encoded}",
            "export_url": f"{AUDIT}/export?{encoded}",
            "following": following,
        }
        if following:
            # The follow cursor starts a moment back: what this page already shows of that
            # moment is left out of what the fragment adds.
            horizon = decode_after(answer.follow_cursor).recorded_at
            seen = [e.id for e in answer.items if e.recorded_at >= horizon][:_MAX_SEEN]
            context["live_url"] = live_url(given, answer.follow_cursor, seen)
        return templates.page("audit.html", context)

    @router.get(f"{AUDIT}/live")
    async def audit_live(request: Request, db: Db) -> Response:
        try:  # the page following the log is no use of the session: its idle timeout holds
            caller = await page_caller(request, touch=False)
        except Unauthenticated:
            return to_sign_in(request, AUDIT)
        params = request.query_params
        try:
            given, filters = _query_filters(request, LIVE_PARAMETERS)
            after = params.get("after", "")
            if not after:
                raise ValidationFailed("after is missing: follow the log from the Audit page")
            answer = await read_audit(
                db, caller.actor, filters, PageRequest(MAX_LIMIT, None), after
            )
        except KubegateError as exc:
            return Response(exc.message, status_code=exc.status, headers=PAGE_HEADERS)
        seen = {s for s in params.get("seen", "").split(",") if s}
        fresh = [e for e in answer.items if e.id not in seen]
        still = sorted(seen - {e.id for e in answer.items})
        context = {
            "rows": rows_of(list(reversed(fresh)), await cluster_names(db, caller)),
            "live_url": live_url(given, answer.follow_cursor, still),
            "follow_seconds": FOLLOW_SECONDS,
            "now": dt.datetime.now(dt.UTC),
        }
        return templates.page("audit_live.html", context)

    @router.get(f"{AUDIT}/export")
    async def audit_export(request: Request, db: Db, state: State) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, AUDIT)
        try:
            require_admin(caller.actor, "export the audit log")
        except PermissionDenied as exc:
            return refused(caller, request, exc)
        try:
            _, filters = _query_filters(request, FILTERS)
            query = export_query(caller.actor, filters)
        except KubegateError as exc:
            return templates.page(
                "access_refused.html",
                {
                    "title": "Audit",
                    "caller": caller,
                    "csrf_token": csrf_field(request),
                    "heading": "Nothing was exported",
                    "message": f"{as_sentence(exc.message)}.",
                    "back": AUDIT,
                },
                status=exc.status,
            )
        await db.close()  # the stream reads in sessions of its own
        start = FollowPosition(filters.since or EPOCH, "")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(
            export_lines(state.sessions, query, start),
            media_type="application/x-ndjson",
            headers={
                **PAGE_HEADERS,
                "Content-Disposition": f'attachment; filename="kubegate-audit-{stamp}.jsonl"',
            },
        )

    return router
