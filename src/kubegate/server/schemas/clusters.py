"""Clusters."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from kubegate.server.schemas.common import Strict


class ClusterCreate(Strict):
    name: str = Field(
        min_length=1, max_length=63, description="DNS-1123 label, unique in the organisation."
    )
    kind: str = Field(default="standard", description="standard or sandbox.")


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
