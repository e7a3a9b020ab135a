"""Clusters."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from kubegate.server.schemas.common import Strict


class ClusterCreate(Strict):
    # The rules are documented in the schema but checked by the handler, whose messages say
    # what is wrong and how to fix it (pydantic's would only say "should match pattern").
    name: str = Field(
        min_length=1,
        max_length=63,
        description="DNS-1123 label, unique in the organisation.",
        json_schema_extra={"pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    )
    kind: str = Field(
        default="standard",
        description="standard or sandbox.",
        json_schema_extra={"enum": ["standard", "sandbox"]},
    )


class ClusterOut(BaseModel):
    id: str
    name: str
    kind: str
    online: bool = Field(description="Whether the cluster's agent holds a tunnel right now.")
    last_seen_at: dt.datetime | None
    created_at: dt.datetime


class ClusterRegistered(BaseModel):
    cluster: ClusterOut
    agent_credential: str = Field(
        description="The agent's credential. Shown once and stored only hashed: keep it now."
    )
