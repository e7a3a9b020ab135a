"""Newest-first keyset pagination, beside the oldest-first helpers of ``server/pagination.py``.

The audit log reads newest first. Cursors are the same opaque ``(created_at, id)`` pairs that
``pagination.page_request`` decodes and ``pagination.next_cursor`` makes, so a client pages
every list the same way. :func:`require_usable_cursor` also turns away cursors that decode but
that this server never issued (a naive or out-of-range time, an id with odd characters), which
would otherwise reach the database and fail there.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from kubegate.errors import InvalidRequest
from kubegate.server.pagination import PageRequest

_ROW_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_FOREIGN_CURSOR = "cursor is not one this server issued; pass next_cursor from the previous page"


def require_usable_cursor(page: PageRequest) -> None:
    """Raise InvalidRequest (400) unless the cursor, if any, could have come from this server."""
    if page.after is None:
        return
    stamp, row_id = page.after
    try:
        usable = stamp.tzinfo is not None and bool(_ROW_ID.match(row_id))
        stamp.astimezone(dt.UTC)
    except OverflowError:
        usable = False
    if not usable:
        raise InvalidRequest(_FOREIGN_CURSOR, details={"field": "cursor"})


def paginate_newest_first(
    query: Select[Any],
    page: PageRequest,
    created_at: InstrumentedAttribute[dt.datetime],
    row_id: InstrumentedAttribute[str],
) -> Select[Any]:
    """Order newest first (ties by id, descending) and fetch one more than the limit.

    Pass the rows to ``pagination.next_cursor``: its cursor names the last row of the page,
    and the next page starts strictly after it in this order.
    """
    require_usable_cursor(page)
    if page.after is not None:
        stamp, last_id = page.after
        query = query.where(or_(created_at < stamp, and_(created_at == stamp, row_id < last_id)))
    return query.order_by(created_at.desc(), row_id.desc()).limit(page.limit + 1)
