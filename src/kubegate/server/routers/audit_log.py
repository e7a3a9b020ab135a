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

import re
from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from kubegate.errors import ValidationFailed
from kubegate.server.audit_query import (
    FOLLOW_SETTLE,
    TIME_EXAMPLE,
    AuditFilter,
    parse_rfc3339,
    parse_status,
)
from kubegate.server.audit_reads import read_audit
from kubegate.server.deps import ApiCaller, Db, error_responses
from kubegate.server.pagination import PageRequest, page_request
from kubegate.server.schemas.audit import AuditPage
from kubegate.server.schemas.users import PRINTABLE_PATTERN

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
        max_length=_TIME_MAX,
        description=f"{what} RFC 3339 time with a time zone, e.g. {TIME_EXAMPLE}.",
        json_schema_extra={"format": "date-time"},
    )


def _text_query(description: str, max_length: int = 64, pattern: str = PRINTABLE_PATTERN) -> Any:
    return Query(max_length=max_length, pattern=pattern, description=description)


# A resource, or a resource and one subresource: printable, no other slash.
_RESOURCE_PATTERN = r"^[^/\x00-\x1f\x7f-\x9f]+(/[^/\x00-\x1f\x7f-\x9f]+)?$"
_STATUS_PATTERN = r"^[1-5]([0-9]{2}|xx)$"
# Each text filter's longest value and pattern: the query's declarations below, and
# filters_from_query for the portal's filter form, check the same.
TEXT_LIMITS: dict[str, tuple[int, str]] = {
    "actor": (320, PRINTABLE_PATTERN),
    "cluster_id": (64, PRINTABLE_PATTERN),
    "action": (64, PRINTABLE_PATTERN),
    "verb": (32, PRINTABLE_PATTERN),
    "resource": (193, _RESOURCE_PATTERN),
    "namespace": (63, PRINTABLE_PATTERN),
}
_TIME_MAX = 64
_WHAT_FITS = {
    PRINTABLE_PATTERN: "printable text (no tabs, newlines or other control characters)",
    _RESOURCE_PATTERN: "a resource such as pods, or a resource and one subresource such "
    "as pods/exec",
}


def audit_filter(
    actor: Annotated[
        str | None,
        _text_query("Who acted: an email (any case) or a user id.", *TEXT_LIMITS["actor"]),
    ] = None,
    cluster_id: Annotated[
        str | None,
        _text_query(
            "Only events about this cluster (deleted clusters too).", *TEXT_LIMITS["cluster_id"]
        ),
    ] = None,
    action: Annotated[
        str | None,
        _text_query(
            "Only this action, e.g. cluster.register, user.update or kube.request.",
            *TEXT_LIMITS["action"],
        ),
    ] = None,
    verb: Annotated[
        str | None,
        _text_query(
            "Proxied requests with this Kubernetes verb, e.g. delete.", *TEXT_LIMITS["verb"]
        ),
    ] = None,
    resource: Annotated[
        str | None,
        _text_query(
            "Proxied requests for this resource (pods: its subresources too) or one "
            "subresource of it (pods/exec).",
            *TEXT_LIMITS["resource"],
        ),
    ] = None,
    namespace: Annotated[
        str | None, _text_query("Proxied requests in this namespace.", *TEXT_LIMITS["namespace"])
    ] = None,
    status: Annotated[
        str | None,
        Query(
            pattern=_STATUS_PATTERN,
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


def filters_from_query(values: Mapping[str, str]) -> AuditFilter:
    """The filters of a form's fields (an empty field: not filtered on), checked as the
    query's declarations check them, or ValidationFailed naming the field."""
    given = {name: value for name, value in values.items() if name in FILTERS and value}
    for name, value in given.items():
        limit, pattern = TEXT_LIMITS.get(name, (_TIME_MAX, ""))
        if len(value) > limit:
            raise ValidationFailed(
                f"{name} is at most {limit} characters; got {len(value)}",
                details={"field": name},
            )
        if pattern and not re.match(pattern, value):
            raise ValidationFailed(
                f"{name} must be {_WHAT_FITS[pattern]}; got {value[:64]!r}",
                details={"field": name},
            )
    return audit_filter(**given)


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
    return await read_audit(db, caller.actor, filters, page, after)
