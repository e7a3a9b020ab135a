"""Reading the audit log: ``GET /api/v1/audit`` (organisation admins only).

Events come **newest first** (what someone investigating wants to see), paged with the
usual opaque cursor, or, with ``after``, **in recorded order** (to follow the log or export
it: ``server/audit_query.py`` says why that order misses nothing). Filters combine with AND:

- ``actor``: an email (any case) or a user id;
- ``cluster_id``: events about that cluster, also after it was deleted;
- ``action``: an exact action name, e.g. ``cluster.register`` or ``kube.request``;
- ``verb``, ``resource`` (``pods``, or ``pods/exec`` for one subresource), ``namespace``,
  ``status`` (a code such as ``403`` or a class such as ``5xx``): proxied requests;
- ``since`` (inclusive) and ``until`` (exclusive): RFC 3339 times with a time zone. A window
  whose ``since`` is not before its ``until`` is empty, so it matches nothing.

A query parameter the endpoint does not know, or one given twice, is a 422 naming it: a
misspelt filter must never answer "everything".

Writing events is ``server/audit.py``'s job; this module only reads them.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from kubegate.domain.access import require_admin
from kubegate.errors import ValidationFailed
from kubegate.server.audit_query import (
    FOLLOW_SETTLE,
    TIME_EXAMPLE,
    AuditFilter,
    FollowPosition,
    apply_filters,
    decode_after,
    encode_follow,
    follow_page,
    parse_rfc3339,
    parse_status,
    recorded_after,
)
from kubegate.server.deps import ApiCaller, Db, error_responses
from kubegate.server.pagination import (
    PageRequest,
    next_cursor,
    page_request,
    paginate_newest_first,
)
from kubegate.server.schemas.audit import AuditEventOut, AuditPage
from kubegate.server.schemas.users import PRINTABLE_PATTERN
from kubegate.storage.models import AuditEvent, utcnow

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

FILTERS = frozenset(
    {
        "actor",
        "cluster_id",
        "action",
        "verb",
        "resource",
        "namespace",
        "status",
        "since",
        "until",
    }
)
PARAMETERS = FILTERS | {"limit", "cursor", "after"}
"""Every query parameter ``GET /api/v1/audit`` takes (a test holds it to the OpenAPI)."""


async def known_parameters(request: Request) -> None:
    """FastAPI dependency: refuse a query parameter outside :data:`PARAMETERS`, or one
    given more than once (only one of its values would count)."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    unknown = sorted(set(counts) - PARAMETERS)
    if unknown:
        names = ", ".join(unknown)
        raise ValidationFailed(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {names}: the audit "
            f"log filters on {', '.join(sorted(FILTERS))} (and pages with limit, cursor and "
            "after)",
            details={"field": unknown[0], "unknown": unknown},
        )
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise ValidationFailed(
            f"{repeated[0]} is given {counts[repeated[0]]} times; give each parameter once",
            details={"field": repeated[0]},
        )


def _time_query(what: str) -> Any:
    return Query(
        max_length=64,
        description=f"{what} RFC 3339 time with a time zone, e.g. {TIME_EXAMPLE}.",
        json_schema_extra={"format": "date-time"},
    )


def _text_query(description: str, max_length: int = 64, pattern: str = PRINTABLE_PATTERN) -> Any:
    return Query(max_length=max_length, pattern=pattern, description=description)


# A resource, or a resource and one subresource: printable, no other slash.
_RESOURCE_PATTERN = r"^[^/\x00-\x1f\x7f-\x9f]+(/[^/\x00-\x1f\x7f-\x9f]+)?$"


def audit_filter(
    actor: Annotated[
        str | None, _text_query("Who acted: an email (any case) or a user id.", 320)
    ] = None,
    cluster_id: Annotated[
        str | None, _text_query("Only events about this cluster (deleted clusters too).")
    ] = None,
    action: Annotated[
        str | None,
        _text_query("Only this action, e.g. cluster.register, user.update or kube.request."),
    ] = None,
    verb: Annotated[
        str | None, _text_query("Proxied requests with this Kubernetes verb, e.g. delete.", 32)
    ] = None,
    resource: Annotated[
        str | None,
        _text_query(
            "Proxied requests for this resource (pods: its subresources too) or one "
            "subresource of it (pods/exec).",
            193,
            _RESOURCE_PATTERN,
        ),
    ] = None,
    namespace: Annotated[str | None, _text_query("Proxied requests in this namespace.", 63)] = None,
    status: Annotated[
        str | None,
        Query(
            pattern=r"^[1-5]([0-9]{2}|xx)$",
            description="Proxied requests answered with this HTTP status (403) or class (5xx).",
        ),
    ] = None,
    since: Annotated[str | None, _time_query("Only events at or after this")] = None,
    until: Annotated[str | None, _time_query("Only events before this")] = None,
) -> AuditFilter:
    """FastAPI dependency: the query's filters, checked, with the times made UTC."""
    subresource = None
    if resource is not None and "/" in resource:
        resource, _, subresource = resource.partition("/")
    return AuditFilter(
        actor=actor,
        cluster_id=cluster_id,
        action=action,
        verb=verb.lower() if verb is not None else None,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        status=parse_status(status) if status is not None else None,
        since=parse_rfc3339(since, "since") if since is not None else None,
        until=parse_rfc3339(until, "until") if until is not None else None,
    )


def event_out(event: AuditEvent) -> AuditEventOut:
    """The API's view of one stored event."""
    return AuditEventOut(
        id=event.id,
        created_at=event.created_at,
        recorded_at=event.recorded_at,
        actor_user_id=event.actor_user_id,
        actor_email=event.actor_email,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        cluster_id=event.cluster_id,
        result=event.result,
        verb=event.verb,
        resource=event.resource,
        subresource=event.subresource,
        namespace=event.namespace,
        status_code=event.status_code,
        source=event.source,
        user_agent=event.user_agent,
        detail=event.detail,
    )


@router.get(
    "",
    summary="Audit events of the caller's organisation, newest first or after a position (admin)",
    description="Newest first by when they happened, paged with `cursor`; or, with `after` "
    "(a `follow_cursor`, or an RFC 3339 time), oldest first by when they were recorded, up "
    f"to {FOLLOW_SETTLE.seconds} s ago (so nothing still being written is skipped). A "
    "newest-first answer's `follow_cursor` starts that many seconds back: a follower drops "
    "the ids it has already shown. An unknown or repeated query parameter is a 422.",
    responses=error_responses(400, 401, 403, 422, 503),
    dependencies=[Depends(known_parameters)],
)
async def list_audit_events(
    caller: ApiCaller,
    db: Db,
    page: Annotated[PageRequest, Depends(page_request)],
    filters: Annotated[AuditFilter, Depends(audit_filter)],
    after: Annotated[
        str | None,
        Query(
            max_length=512,
            description="Events recorded after this: the follow_cursor of an earlier answer, "
            f"or an RFC 3339 time (e.g. {TIME_EXAMPLE}). Not with cursor.",
        ),
    ] = None,
) -> AuditPage:
    require_admin(caller.actor, "read the audit log")
    query = apply_filters(
        select(AuditEvent).where(AuditEvent.org_id == caller.actor.org_id), filters
    )
    horizon = utcnow() - FOLLOW_SETTLE
    if after is None:
        statement = paginate_newest_first(query, page, AuditEvent.created_at, AuditEvent.id)
        rows, cursor = next_cursor(list((await db.scalars(statement)).all()), page)
        return AuditPage(
            items=[event_out(e) for e in rows],
            next_cursor=cursor,
            follow_cursor=encode_follow(FollowPosition(horizon, "")),
        )
    if page.after is not None:
        raise ValidationFailed(
            "pass cursor (newest first) or after (in recorded order), not both",
            details={"field": "after"},
        )
    position = decode_after(after)
    statement = recorded_after(query, position, horizon, page.limit)
    found = list((await db.scalars(statement)).all())
    rows, following, more = follow_page(found, position, horizon, page.limit)
    follow = encode_follow(following)
    return AuditPage(
        items=[event_out(e) for e in rows],
        next_cursor=follow if more else None,
        follow_cursor=follow,
    )
