"""Reading the audit log for a caller: a page newest first, a page in recorded order after
a position, and every matching event as JSON lines.

``GET /api/v1/audit`` (``routers/audit_log.py``) and the portal's Audit page
(``routers/portal_audit_pages.py``) both read through here, so the rules (admins only, the
organisation's events only, the follow horizon of ``server/audit_query.py``) are one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kubegate.domain.access import Actor, require_admin
from kubegate.errors import ValidationFailed
from kubegate.server.audit_query import (
    FOLLOW_SETTLE,
    AuditFilter,
    FollowPosition,
    apply_filters,
    decode_after,
    encode_follow,
    follow_page,
    recorded_after,
)
from kubegate.server.pagination import PageRequest, next_cursor, paginate_newest_first
from kubegate.server.schemas.audit import AuditEventOut, AuditPage
from kubegate.storage.models import AuditEvent, utcnow

EXPORT_PAGE = 500
"""Events read per query while exporting: the stream holds one such page at a time."""


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


def _events_of(actor: Actor, filters: AuditFilter) -> Select[Any]:
    require_admin(actor, "read the audit log")
    return apply_filters(select(AuditEvent).where(AuditEvent.org_id == actor.org_id), filters)


async def read_audit(
    db: AsyncSession, actor: Actor, filters: AuditFilter, page: PageRequest, after: str | None
) -> AuditPage:
    """Newest first (``page.after`` the cursor), or with ``after`` in recorded order up to
    the follow horizon; each answer says where to follow from."""
    query = _events_of(actor, filters)
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


def export_query(actor: Actor, filters: AuditFilter) -> Select[Any]:
    """The events an export of ``filters`` writes (admins only: checked here, before the
    response starts)."""
    return _events_of(actor, filters)


async def export_lines(
    sessions: async_sessionmaker[Any], query: Select[Any], start: FollowPosition
) -> AsyncIterator[bytes]:
    """Every event of ``query`` recorded after ``start`` and before now's follow horizon, in
    recorded order, one JSON object per line: what ``kubegate audit export`` writes, read a
    page at a time (each in a session of its own, so a slow reader holds no connection)."""
    horizon = utcnow() - FOLLOW_SETTLE
    position = start
    more = True
    while more:
        async with sessions() as session:
            statement = recorded_after(query, position, horizon, EXPORT_PAGE)
            found = list((await session.scalars(statement)).all())
        rows, position, more = follow_page(found, position, horizon, EXPORT_PAGE)
        if rows:
            yield b"".join(event_out(e).model_dump_json().encode() + b"\n" for e in rows)
