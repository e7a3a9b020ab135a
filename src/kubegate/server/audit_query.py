"""What a read of the audit log asks of the database: its filters and the follow cursor.

``GET /api/v1/audit`` (``routers/audit_log.py``) pages in two orders:

- **newest first** by ``created_at`` (when it happened), with the usual opaque ``cursor``:
  what someone investigating wants to see;
- **in recorded order** after a position (``after``): by ``recorded_at`` (when the row was
  written), then id. This is the order to follow or export in. A proxied request's row lands
  up to a flush after the request, and after a database outage much later; reading by
  ``created_at`` would skip such rows once the reader has moved past their time, reading by
  ``recorded_at`` meets them when they arrive.

A page in recorded order stops at a *horizon*, :data:`FOLLOW_SETTLE` before now: a row's
``recorded_at`` is stamped just before its transaction commits, so a row stamped a moment
ago may not be visible yet while a later one already is. Past the settle time every
transaction stamped before the horizon has committed, so a follower that moves to the
horizon has missed nothing behind it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, or_

from kubegate.errors import InvalidRequest, ValidationFailed
from kubegate.storage.models import AuditEvent

FOLLOW_SETTLE = dt.timedelta(seconds=2)
TIME_EXAMPLE = "2025-01-31T09:00:00Z"

_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_STATUS = re.compile(r"^([1-5])([0-9]{2}|xx)$")
_ROW_ID = re.compile(r"^[0-9A-Za-z_-]{0,64}$")
_FOLLOW_KIND = "recorded"


def parse_rfc3339(value: str, field: str) -> dt.datetime:
    """Parse an RFC 3339 date-time into UTC, or raise ValidationFailed naming ``field``.

    Stricter than ``datetime.fromisoformat`` on purpose: a time zone is required (a time
    without one means a different instant on every server) and ISO 8601's other forms, such
    as week dates, are refused.
    """
    match = _RFC3339.match(value)
    if match is None:
        raise ValidationFailed(
            f"{field} must be an RFC 3339 time with a time zone, e.g. {TIME_EXAMPLE}; "
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
            f"the offset (e.g. {TIME_EXAMPLE})",
            details={"field": field},
        ) from None


def parse_status(value: str) -> tuple[int, int]:
    """``403`` or a class such as ``4xx``, as an inclusive range of status codes."""
    match = _STATUS.match(value)
    if match is None:
        raise ValidationFailed(
            f"status must be an HTTP status code such as 403 or a class such as 5xx; "
            f"got {value[:16]!r}",
            details={"field": "status"},
        )
    if match.group(2) == "xx":
        low = int(match.group(1)) * 100
        return low, low + 99
    code = int(value)
    return code, code


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The parsed filters of one audit-log query; None means not filtered on.

    ``resource`` ``pods`` matches pods and their subresources; ``pods/exec`` (``resource`` and
    ``subresource`` here) only exec. ``status`` is an inclusive range of status codes.
    """

    actor: str | None = None
    cluster_id: str | None = None
    action: str | None = None
    verb: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    status: tuple[int, int] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def apply_filters(query: Select[Any], filters: AuditFilter) -> Select[Any]:
    """``query`` (over :class:`AuditEvent`) narrowed to the events ``filters`` match."""
    if filters.actor is not None:
        query = query.where(
            or_(
                AuditEvent.actor_email == filters.actor.lower(),
                AuditEvent.actor_user_id == filters.actor,
            )
        )
    equal = (
        (AuditEvent.cluster_id, filters.cluster_id),
        (AuditEvent.action, filters.action),
        (AuditEvent.verb, filters.verb),
        (AuditEvent.resource, filters.resource),
        (AuditEvent.subresource, filters.subresource),
        (AuditEvent.namespace, filters.namespace),
    )
    for column, wanted in equal:
        if wanted is not None:
            query = query.where(column == wanted)
    if filters.status is not None:
        low, high = filters.status
        query = query.where(AuditEvent.status_code.between(low, high))
    if filters.since is not None:
        query = query.where(AuditEvent.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEvent.created_at < filters.until)
    return query


@dataclass(frozen=True, slots=True, order=True)
class FollowPosition:
    """A place in recorded order: the events after it are those recorded later, or at the
    same instant with a greater id (an empty id: every event recorded at that instant)."""

    recorded_at: dt.datetime
    row_id: str


def encode_follow(position: FollowPosition) -> str:
    """The opaque ``follow_cursor`` of a position."""
    stamp = position.recorded_at.astimezone(dt.UTC).isoformat()
    raw = json.dumps([_FOLLOW_KIND, stamp, position.row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_after(value: str) -> FollowPosition:
    """``after``: a ``follow_cursor`` this server issued, or an RFC 3339 time (everything
    recorded at or after it)."""
    if value[:1].isdigit():  # a cursor's base64 always starts with "W" (for '["')
        try:
            return FollowPosition(parse_rfc3339(value, "after"), "")
        except ValidationFailed as exc:  # 400 like a bad cursor: the value is no position
            raise InvalidRequest(exc.message, details={"field": "after"}) from None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        kind, stamp, row_id = json.loads(raw)
        when = dt.datetime.fromisoformat(stamp)
        if (
            kind != _FOLLOW_KIND
            or when.tzinfo is None
            or not isinstance(row_id, str)
            or not _ROW_ID.match(row_id)
        ):
            raise ValueError("not a follow cursor this server issues")
        return FollowPosition(when.astimezone(dt.UTC), row_id)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(
            "after must be the follow_cursor of an earlier answer or an RFC 3339 time "
            f"(e.g. {TIME_EXAMPLE})",
            details={"field": "after"},
        ) from exc


def recorded_after(
    query: Select[Any], after: FollowPosition, horizon: dt.datetime, limit: int
) -> Select[Any]:
    """The events after ``after`` and recorded before ``horizon``, oldest first, one more
    than ``limit`` (to know whether more are ready)."""
    later = or_(
        AuditEvent.recorded_at > after.recorded_at,
        and_(AuditEvent.recorded_at == after.recorded_at, AuditEvent.id > after.row_id),
    )
    return (
        query.where(later, AuditEvent.recorded_at < horizon)
        .order_by(AuditEvent.recorded_at, AuditEvent.id)
        .limit(limit + 1)
    )


def follow_page(
    rows: list[AuditEvent], after: FollowPosition, horizon: dt.datetime, limit: int
) -> tuple[list[AuditEvent], FollowPosition, bool]:
    """A page of :func:`recorded_after`'s rows, where the next page starts, and whether it
    is ready now (True) or a reader has caught up and should ask again later (False).

    Caught up, the next page starts at the horizon (everything before it was read), never
    behind ``after``."""
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        return rows, FollowPosition(last.recorded_at, last.id), True
    return rows, max(after, FollowPosition(horizon, "")), False
