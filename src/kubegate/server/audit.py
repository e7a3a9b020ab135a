"""Recording admin actions: who, what, target, when, result.

A successful action's event is written in the action's own transaction, so both land or
neither does. A refused or failed action is recorded in a transaction of its own, after the
action's has rolled back.

:func:`audit_row` is the event as a plain row, for writers that insert with Core rather than
through a session (kube token mints, :mod:`kubegate.server.minter`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kubegate.errors import KubegateError
from kubegate.server.principal import Principal
from kubegate.storage.models import AuditEvent, is_id, new_id, utcnow


def audit_row(
    principal: Principal | None,
    action: str,
    *,
    target_type: str = "",
    target_id: str = "",
    cluster_id: str | None = None,
    result: str = "success",
    detail: dict[str, Any] | None = None,
    org_id: str | None = None,
) -> dict[str, Any]:
    """An audit event as the values of one ``audit_events`` row, every column given.

    Ids come from request paths, so anything that is not an id kubegate issued is kept only as
    a clipped ``target_id``, never as ``cluster_id``.
    """
    if cluster_id is not None and not is_id(cluster_id):
        cluster_id = None
    now = utcnow()
    return {
        "id": new_id(),
        "org_id": principal.actor.org_id if principal else org_id,
        "actor_user_id": principal.actor.user_id if principal else None,
        "actor_email": principal.email if principal else "",
        "action": action,
        "target_type": target_type,
        "target_id": target_id[:64],
        "cluster_id": cluster_id,
        "result": result,
        "detail": detail or {},
        "created_at": now,
        "recorded_at": now,
        # The request columns are for proxied requests (gateway_store.write_audit); an admin
        # action's outcome is ``result``.
        "verb": None,
        "resource": None,
        "subresource": None,
        "namespace": None,
        "status_code": None,
        "source": None,
        "user_agent": None,
    }


def failure_detail(error: Exception) -> dict[str, Any]:
    """The ``detail`` of a refused or failed action's event: the error's code and message."""
    return {"error": getattr(error, "code", type(error).__name__), "message": str(error)}


def record(
    session: AsyncSession,
    principal: Principal | None,
    action: str,
    *,
    target_type: str = "",
    target_id: str = "",
    cluster_id: str | None = None,
    result: str = "success",
    detail: dict[str, Any] | None = None,
    org_id: str | None = None,
) -> AuditEvent:
    """Add an audit event (:func:`audit_row`) to ``session``'s current transaction."""
    event = AuditEvent(
        **audit_row(
            principal,
            action,
            target_type=target_type,
            target_id=target_id,
            cluster_id=cluster_id,
            result=result,
            detail=detail,
            org_id=org_id,
        )
    )
    session.add(event)
    return event


async def record_failure(
    sessions: async_sessionmaker[Any],
    principal: Principal | None,
    action: str,
    error: Exception,
    **fields: Any,
) -> None:
    """Record a failed action in its own transaction (the action's rolled back)."""
    async with sessions() as session, session.begin():
        record(session, principal, action, result="failure", detail=failure_detail(error), **fields)


@asynccontextmanager
async def failures_recorded(
    sessions: async_sessionmaker[Any], principal: Principal, action: str, **fields: Any
) -> AsyncIterator[None]:
    """Around an admin action: a refused or failed attempt is recorded, then re-raised."""
    try:
        yield
    except KubegateError as exc:
        await record_failure(sessions, principal, action, exc, **fields)
        raise
