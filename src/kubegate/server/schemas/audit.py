"""The audit log: who did what, to what, when, and whether it worked."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field


class AuditEventOut(BaseModel):
    """One recorded action: an admin action, or a request through the Kubernetes API proxy
    (action ``kube.request``, whose request fields are filled)."""

    id: str
    created_at: dt.datetime = Field(description="When it happened (UTC).")
    recorded_at: dt.datetime = Field(
        description="When it was written to the log (UTC): a proxied request's lands up to a "
        "second later, later still after a database outage. `after` pages in this order."
    )
    actor_user_id: str | None = Field(
        description="Who did it; null for the server itself (e.g. the first-start bootstrap)."
    )
    actor_email: str = Field(description="Their email at the time; empty for the server.")
    action: str = Field(
        description="What was done, e.g. cluster.register, user.update, kube.request."
    )
    target_type: str = Field(description="Kind of object acted on, e.g. cluster, user, kube.")
    target_id: str = Field(description="Id of the object acted on; empty when none was made.")
    cluster_id: str | None = Field(description="The cluster involved, if any.")
    result: str = Field(description="success, or failure (refused or failed).")
    verb: str | None = Field(
        default=None, description="A proxied request's Kubernetes verb, e.g. get, list, create."
    )
    resource: str | None = Field(default=None, description="Its resource, e.g. pods.")
    subresource: str | None = Field(default=None, description="Its subresource, e.g. exec.")
    namespace: str | None = Field(default=None, description="Its namespace; null if none.")
    status_code: int | None = Field(
        default=None, description="The HTTP status kubectl got; null for admin actions."
    )
    source: str | None = Field(default=None, description="The client's address (proxied requests).")
    user_agent: str | None = Field(
        default=None, description="The client's User-Agent (proxied requests), clipped."
    )
    detail: dict[str, Any] = Field(
        description="Action-specific facts, e.g. the changes made or the error of a failure; "
        "for a proxied request its name, bytes each way and duration, exec and attach's "
        "command and container, and the access key or service account used."
    )


class AuditPage(BaseModel):
    """A page of audit events, and where to continue."""

    items: list[AuditEventOut]
    next_cursor: str | None = Field(
        default=None,
        description="Newest first: pass as `cursor` for the next (older) page; null on the "
        "last page. With `after`: pass as `after` for the next page, which is ready now; "
        "null once caught up.",
    )
    follow_cursor: str = Field(
        description="Pass as `after` to get what is recorded after this answer, oldest first "
        "(to follow the log or export it in pieces)."
    )
