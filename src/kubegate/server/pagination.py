"""Keyset pagination: opaque cursors over (created_at, id), stable under inserts."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from kubegate.errors import InvalidRequest

MAX_LIMIT = 200
_ROW_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    after: tuple[dt.datetime, str] | None


def encode_cursor(created_at: dt.datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, row_id = json.loads(raw)
        when = dt.datetime.fromisoformat(stamp)
        # Only what this server issues: an aware time the database can store, and an id.
        if when.tzinfo is None or not isinstance(row_id, str) or not _ROW_ID.match(row_id):
            raise ValueError("not a cursor this server issues")
        when.astimezone(dt.UTC)
        return when, row_id
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(
            "cursor is not one this server issued; pass next_cursor from the previous page",
            details={"field": "cursor"},
        ) from exc


def page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page.")
    ] = None,
) -> PageRequest:
    """FastAPI dependency: ``?limit=&cursor=``."""
    return PageRequest(limit, decode_cursor(cursor) if cursor else None)


def paginate(
    query: Select[Any],
    page: PageRequest,
    created_at: InstrumentedAttribute[dt.datetime],
    row_id: InstrumentedAttribute[str],
) -> Select[Any]:
    """Order oldest first and fetch one more than the limit (to know if a next page exists)."""
    if page.after is not None:
        stamp, last_id = page.after
        query = query.where(or_(created_at > stamp, and_(created_at == stamp, row_id > last_id)))
    return query.order_by(created_at, row_id).limit(page.limit + 1)


def paginate_newest_first(
    query: Select[Any],
    page: PageRequest,
    created_at: InstrumentedAttribute[dt.datetime],
    row_id: InstrumentedAttribute[str],
) -> Select[Any]:
    """Order newest first (ties by id, descending) and fetch one more than the limit.

    :func:`next_cursor` makes the cursor; the next page starts strictly after it in this order.
    """
    if page.after is not None:
        stamp, last_id = page.after
        query = query.where(or_(created_at < stamp, and_(created_at == stamp, row_id < last_id)))
    return query.order_by(created_at.desc(), row_id.desc()).limit(page.limit + 1)


def next_cursor(rows: list[Any], page: PageRequest) -> tuple[list[Any], str | None]:
    """Trim the extra row and make the cursor for the next page."""
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    last = rows[-1]
    return rows, encode_cursor(last.created_at, last.id)
