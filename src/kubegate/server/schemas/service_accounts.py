"""Service accounts for automation, and the kubeconfigs that use them or bypass the gateway."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from kubegate.domain.access import Role
from kubegate.server.schemas.common import Strict


class ServiceAccountCreate(Strict):
    """A Kubernetes ServiceAccount for kubegate's agent to create and bind to one role."""

    name: str = Field(
        max_length=253, description="The ServiceAccount's name: a DNS-1123 label (≤ 63)."
    )
    namespace: str = Field(
        max_length=253,
        description="The namespace it lives in (a DNS-1123 label); it must exist in the "
        "cluster, or the account's status says so until it does.",
    )
    role: str = Field(
        max_length=64,
        description="view, edit, admin or cluster-admin (the built-in ClusterRole).",
        json_schema_extra={"enum": [r.value for r in Role]},
    )
    scope: str = Field(
        default="namespace",
        max_length=64,
        description="namespace (a RoleBinding in its own namespace, the default) or cluster "
        "(a ClusterRoleBinding).",
        json_schema_extra={"enum": ["namespace", "cluster"]},
    )


class ServiceAccountOut(BaseModel):
    """A managed ServiceAccount and where it is on its way into the cluster."""

    id: str
    cluster_id: str
    name: str
    namespace: str
    username: str = Field(description="Its Kubernetes username, system:serviceaccount:NS:NAME.")
    role: str
    scope: str = Field(description="namespace or cluster.")
    status: str = Field(description="pending, applied, failed or cluster_offline.")
    status_detail: str = Field(description="Why it failed to apply; empty otherwise.")
    created_by: str | None = Field(description="Id of the admin who created it.")
    created_at: dt.datetime
    updated_at: dt.datetime


class ServiceAccountKubeconfigRequest(Strict):
    """How long the kubeconfig's token lives, and where it points."""

    duration_seconds: int | None = Field(
        default=None,
        description="The token's lifetime: 600 up to the server's "
        "service_account_kubeconfig_max_seconds; default 86400 (24 h), capped by that.",
    )
    direct: bool = Field(
        default=False,
        description="false: through kubegate's proxy (a kube token kubegate can revoke at "
        "once). true: straight to the cluster's apiserver, with a bound token from the "
        "TokenRequest API (it works while kubegate is down and dies with the ServiceAccount).",
    )


class AdminKubeconfigRequest(Strict):
    """How long the admin (break-glass) kubeconfig's token lives."""

    duration_seconds: int | None = Field(
        default=None,
        description="600 up to the server's admin_kubeconfig_max_seconds; default 3600 (1 h).",
    )


class AdminKubeconfigIssued(BaseModel):
    """One admin kubeconfig handed out (from the audit log)."""

    issued_at: dt.datetime
    actor_user_id: str | None
    actor_email: str
    cluster_id: str | None
    result: str = Field(description="success, or failure (refused).")
    expires_at: str | None = Field(description="When its token expires (RFC 3339).")
    detail: str = Field(description="Why it was refused; empty when issued.")


class ApiServerSet(Strict):
    """The cluster's apiserver as clients outside the cluster reach it (direct kubeconfigs)."""

    url: str | None = Field(
        default=None, max_length=500, description="https://HOST[:PORT]; null clears it."
    )
    ca_pem: str | None = Field(
        default=None,
        max_length=65536,
        description="The PEM CA bundle the apiserver's certificate chains to; null: the "
        "system's trust store.",
    )
