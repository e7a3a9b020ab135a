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


class OwnGrantOut(BaseModel):
    """One of the caller's own grants on a cluster."""

    id: str
    role: str = Field(description="view, edit, admin or cluster-admin.")
    namespace: str | None = Field(description="The namespace; null for the whole cluster.")
    status: str = Field(description="pending, applied, failed or cluster_offline.")
    status_detail: str = Field(description="Why the grant failed to apply; empty otherwise.")


class ClusterOut(BaseModel):
    id: str
    name: str
    kind: str
    online: bool = Field(description="Whether the cluster's agent holds a tunnel right now.")
    last_seen_at: dt.datetime | None
    created_at: dt.datetime
    server: str | None = Field(
        description="The cluster's URL on the Kubernetes API proxy (what a kubeconfig's "
        "cluster.server says); null while the access gateway is disabled."
    )
    my_access: list[OwnGrantOut] = Field(
        description="The caller's own grants on the cluster, oldest first; empty when they "
        "hold none (admins too: managing access gives none) or the access gateway is disabled."
    )


class ClusterRegistered(BaseModel):
    cluster: ClusterOut
    agent_credential: str = Field(
        description="The agent's credential. Shown once and stored only hashed: keep it now."
    )
