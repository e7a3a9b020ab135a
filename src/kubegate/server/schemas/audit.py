"""The audit log: who did what, to what, when, and whether it worked."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field


class AuditEventOut(BaseModel):
    """One recorded action (an admin action today; proxied requests join later)."""

    id: str
    created_at: dt.datetime = Field(description="When it happened (UTC).")
    actor_user_id: str | None = Field(
        description="Who did it; null for the server itself (e.g. the first-start bootstrap)."
    )
    actor_email: str = Field(description="Their email at the time; empty for the server.")
    action: str = Field(description="What was done, e.g. cluster.register, user.update.")
    target_type: str = Field(description="Kind of object acted on, e.g. cluster, user.")
    target_id: str = Field(description="Id of the object acted on; empty when none was made.")
    cluster_id: str | None = Field(description="The cluster involved, if any.")
    result: str = Field(description="success, or failure (refused or failed).")
    detail: dict[str, Any] = Field(
        description="Action-specific facts, e.g. the changes made or the error of a failure."
    )
