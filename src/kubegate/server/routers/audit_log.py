"""Reading the audit log: ``GET /api/v1/audit`` (organisation admins only).

Events come **newest first** (what someone investigating wants to see), paged with the
usual opaque cursor. Filters combine with AND:

- ``actor``: an email (any case) or a user id;
- ``cluster_id``: events about that cluster, also after it was deleted;
- ``action``: an exact action name, e.g. ``cluster.register``;
- ``since`` (inclusive) and ``until`` (exclusive): RFC 3339 times with a time zone. A window
  whose ``since`` is not before its ``until`` is empty, so it matches nothing.

Writing events is ``server/audit.py``'s job; this module only reads them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import or_, select

from kubegate.domain.access import require_admin
from kubegate.errors import ValidationFailed
from kubegate.server.deps import ApiCaller, Db, error_responses
from kubegate.server.pagination import (
    PageRequest,
    next_cursor,
    page_request,
    paginate_newest_first,
)
from kubegate.server.schemas import Page
from kubegate.server.schemas.audit import AuditEventOut
from kubegate.server.schemas.users import PRINTABLE_PATTERN
from kubegate.storage.models import AuditEvent

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_TIME_EXAMPLE = "2025-01-31T09:00:00Z"


def parse_rfc3339(value: str, field: str) -> dt.datetime:
    """Parse an RFC 3339 date-time into UTC, or raise ValidationFailed naming ``field``.

    Stricter than ``datetime.fromisoformat`` on purpose: a time zone is required (a time
    without one means a different instant on every server) and ISO 8601's other forms, such
    as week dates, are refused.
    """
    match = _RFC3339.match(value)
    if match is None:
        raise ValidationFailed(
            f"{field} must be an RFC 3339 time with a time zone, e.g. {_TIME_EXAMPLE}; "
            f"got {value[:64]!r}",
            details={"field": field},
        )
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    microsecond = int((fraction[1:] + "000000")[:6]) if fraction else 0
    try:
        if zone in ("Z", "z"):
            tz = dt.UTC
        else:
            offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            tz = dt.timezone(-offset if zone[0] == "-" else offset)
        # RFC 3339 allows a leap second (:60); Python's datetime does not, so it becomes :59.
        moment = dt.datetime(
            year, month, day, hour, minute, min(second, 59), microsecond, tzinfo=tz
        )
        return moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed(
            f"{field} {value[:64]!r} is not a real time: check the date, the time of day and "
            f"the offset (e.g. {_TIME_EXAMPLE})",
            details={"field": field},
        ) from None


def _time_query(what: str) -> Any:
    return Query(
        max_length=64,
        description=f"{what} RFC 3339 time with a time zone, e.g. {_TIME_EXAMPLE}.",
        json_schema_extra={"format": "date-time"},
    )


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The parsed filters of one audit-log query; None means not filtered on."""

    actor: str | None
    cluster_id: str | None
    action: str | None
    since: dt.datetime | None
    until: dt.datetime | None


def audit_filter(
    actor: Annotated[
        str | None,
        Query(
            max_length=320,
            pattern=PRINTABLE_PATTERN,
            description="Who acted: an email (any case) or a user id.",
        ),
    ] = None,
    cluster_id: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=PRINTABLE_PATTERN,
            description="Only events about this cluster (deleted clusters too).",
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=PRINTABLE_PATTERN,
            description="Only this action, e.g. cluster.register or user.update.",
        ),
    ] = None,
    since: Annotated[str | None, _time_query("Only events at or after this")] = None,
    until: Annotated[str | None, _time_query("Only events before this")] = None,
) -> AuditFilter:
    """FastAPI dependency: the query's filters, with the times checked and made UTC."""
    return AuditFilter(
        actor=actor,
        cluster_id=cluster_id,
        action=action,
        since=parse_rfc3339(since, "since") if since is not None else None,
        until=parse_rfc3339(until, "until") if until is not None else None,
    )


def event_out(event: AuditEvent) -> AuditEventOut:
    """The API's view of one stored event."""
    return AuditEventOut(
        id=event.id,
        created_at=event.created_at,
        actor_user_id=event.actor_user_id,
        actor_email=event.actor_email,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        cluster_id=event.cluster_id,
        result=event.result,
        detail=event.detail,
    )


@router.get(
    "",
    summary="Audit events of the caller's organisation, newest first (admin)",
    responses=error_responses(400, 401, 403, 422, 503),
)
async def list_audit_events(
    caller: ApiCaller,
    db: Db,
    page: Annotated[PageRequest, Depends(page_request)],
    filters: Annotated[AuditFilter, Depends(audit_filter)],
) -> Page[AuditEventOut]:
    require_admin(caller.actor, "read the audit log")
    query = select(AuditEvent).where(AuditEvent.org_id == caller.actor.org_id)
    if filters.actor is not None:
        query = query.where(
            or_(
                AuditEvent.actor_email == filters.actor.lower(),
                AuditEvent.actor_user_id == filters.actor,
            )
        )
    if filters.cluster_id is not None:
        query = query.where(AuditEvent.cluster_id == filters.cluster_id)
    if filters.action is not None:
        query = query.where(AuditEvent.action == filters.action)
    if filters.since is not None:
        query = query.where(AuditEvent.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEvent.created_at < filters.until)
    statement = paginate_newest_first(query, page, AuditEvent.created_at, AuditEvent.id)
    rows, cursor = next_cursor(list((await db.scalars(statement)).all()), page)
    return Page[AuditEventOut](items=[event_out(e) for e in rows], next_cursor=cursor)
