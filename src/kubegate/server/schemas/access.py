"""Cluster Access: grants, revoking them, and what a caller may do on a cluster.

Shared by the REST API (``/api/v1/clusters/{id}/access``) and the portal
(``/org/clusters/{id}/access``). Role, scope and namespace are plain strings here on purpose:
``domain/access.py`` validates them, so every bad value gets the same message that names
the field and the allowed values.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

from kubegate.domain.access import Role, ScopeKind
from kubegate.server.schemas.common import Strict
from kubegate.server.schemas.users import EMAIL_PATTERN, normalise_email


class GrantCreate(Strict):
    """A grant to create: one target user (by id or by email), a role and a scope."""

    user_id: str | None = Field(
        default=None, max_length=64, description="Target user's id; give this or email."
    )
    email: str | None = Field(
        default=None, max_length=320, description="Target user's email; give this or user_id."
    )
    role: str = Field(
        max_length=64,
        description="view, edit, admin or cluster-admin (the built-in ClusterRole of that name).",
        json_schema_extra={"enum": [r.value for r in Role]},
    )
    scope: str | None = Field(
        default=None,
        max_length=64,
        description="cluster or namespace; when omitted, namespace if a namespace is given, "
        "else cluster.",
        json_schema_extra={"enum": [s.value for s in ScopeKind]},
    )
    namespace: str | None = Field(
        default=None,
        max_length=253,
        description="For scope namespace: a DNS-1123 label of at most 63 characters.",
    )

    @property
    def scope_kind(self) -> str:
        """The scope asked for; when omitted, a namespace implies scope ``namespace``."""
        if self.scope is not None:
            return self.scope
        return "namespace" if self.namespace is not None else "cluster"


class GrantOut(BaseModel):
    """A grant and where it is on its way into the cluster's RBAC."""

    id: str
    cluster_id: str
    user_id: str
    user_email: str
    role: str
    scope: str = Field(description="cluster or namespace.")
    namespace: str | None
    status: str = Field(description="pending, applied, failed or cluster_offline.")
    status_detail: str = Field(description="Why the grant failed to apply; empty otherwise.")
    created_by: str | None = Field(description="Id of the admin who created the grant.")
    created_at: dt.datetime
    updated_at: dt.datetime


class MemberRevoke(Strict):
    """Whose access on the cluster to revoke: every grant of the member with this email."""

    email: str = Field(
        min_length=3,
        max_length=320,
        json_schema_extra={"pattern": EMAIL_PATTERN},
        description="The member's email; case does not matter.",
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_email(value)


class MemberRevoked(BaseModel):
    """What revoking a member's access did."""

    revoked: list[str] = Field(
        description="Ids of the grants deleted, oldest first; empty when the member held none."
    )


class RevokeAllResult(BaseModel):
    """What revoke-all did: grants removed and the cluster's new token epoch."""

    grants_removed: int = Field(description="How many grants were deleted.")
    token_epoch: int = Field(
        description="The cluster's new token epoch; every kube token minted before is void."
    )


class Capabilities(BaseModel):
    """What the caller can do with Cluster Access on one cluster (drives the portal's UI)."""

    enabled: bool = Field(
        description="Cluster Access is available on this cluster (gateway on, not a sandbox)."
    )
    can_manage: bool = Field(description="The caller may create and delete grants (an admin).")
    has_access: bool = Field(
        description="The caller holds at least one grant on this cluster. Admins need a "
        "grant too: managing access does not give kubectl access."
    )
    reason: str | None = Field(
        default=None, description="Why Cluster Access is not enabled, when it is not."
    )


class KubeTokenRequest(Strict):
    """Options for a kube token; the body may be omitted or ``{}``."""

    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=86400,
        description="A shorter lifetime than the server's (kube_token_ttl_seconds, default "
        "900): at least 60 and at most that setting. Omitted: the server's lifetime.",
    )


class KubeTokenOut(BaseModel):
    """A kube token: the bearer kubectl sends to the Kubernetes API proxy.

    Shaped for an ExecCredential: ``token`` is ``status.token`` and ``expires_at`` is
    ``status.expirationTimestamp``. Shown only here; kubegate keeps only its SHA-256.
    """

    token: str = Field(description="The bearer token (kg_kube_…); keep it secret.")
    expires_at: dt.datetime = Field(
        description="When the token stops working (RFC 3339, UTC, whole seconds)."
    )
    cluster_id: str
    server: str = Field(description="The cluster's URL on the Kubernetes API proxy.")


@dataclass(frozen=True, slots=True)
class GrantCreated:
    """The grant a create request answers; ``created`` is False when it already existed."""

    grant: GrantOut
    created: bool
