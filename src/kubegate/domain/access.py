"""Cluster Access rules: roles, scopes, grants and who may do what with them."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from kubegate.errors import Conflict, NotFound, PermissionDenied, ValidationFailed

SANDBOX_REFUSAL = "Sandbox clusters do not support Cluster Access"
NO_ACCESS = "You do not have access to this cluster"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL_MAX = 63

CLUSTER_ID = re.compile(r"[0-9a-f]{32}")
"""A cluster id as it appears in ``/clusters/<id>``: 32 lowercase hex characters."""


class Role(enum.StrEnum):
    """A grantable role; each maps to the built-in ClusterRole of the same name."""

    VIEW = "view"
    EDIT = "edit"
    ADMIN = "admin"
    CLUSTER_ADMIN = "cluster-admin"


@dataclass(frozen=True, slots=True)
class GrantSpec:
    """One grant as the server sends it to the agent: who gets which role where."""

    grant_id: str
    email: str
    role: Role
    namespace: str | None  # None: the whole cluster


@dataclass(frozen=True, slots=True)
class ServiceAccountSpec:
    """One kubegate-managed ServiceAccount as the server sends it to the agent: the account
    (``namespace``/``name``) and the role it is bound to, in its namespace (RoleBinding) or
    across the cluster (ClusterRoleBinding, ``cluster_wide``)."""

    service_account_id: str
    namespace: str
    name: str
    role: Role
    cluster_wide: bool

    @property
    def username(self) -> str:
        """The name Kubernetes knows the account by (its tokens', and impersonation's)."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"


class ScopeKind(enum.StrEnum):
    """Where a grant applies: the whole cluster (ClusterRoleBinding) or one namespace."""

    CLUSTER = "cluster"
    NAMESPACE = "namespace"


class MemberRole(enum.StrEnum):
    """A user's role in an organisation: admins manage access, members use it."""

    ADMIN = "admin"
    MEMBER = "member"


class ClusterKind(enum.StrEnum):
    """Standard clusters support Cluster Access; sandbox clusters refuse it."""

    STANDARD = "standard"
    SANDBOX = "sandbox"


class GrantStatus(enum.StrEnum):
    """Where a grant is on its way into the cluster's RBAC."""

    PENDING = "pending"
    APPLIED = "applied"
    FAILED = "failed"
    CLUSTER_OFFLINE = "cluster_offline"


def dns1123_label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label (a Kubernetes namespace name), or None."""
    if not value:
        return "must not be empty"
    if len(value) > DNS1123_LABEL_MAX:
        return f"must be at most {DNS1123_LABEL_MAX} characters (got {len(value)})"
    if not _DNS1123_LABEL.match(value):
        return (
            "must consist of lower case letters, digits and '-', and start and end with a "
            "letter or digit (a DNS-1123 label, e.g. 'team-a')"
        )
    return None


@dataclass(frozen=True, slots=True)
class Scope:
    """A validated grant scope; ``namespace`` is set exactly when kind is NAMESPACE."""

    kind: ScopeKind
    namespace: str | None = None

    @classmethod
    def parse(cls, kind: str, namespace: str | None) -> Scope:
        """Validate user input into a Scope, or raise ValidationFailed naming the field."""
        try:
            scope_kind = ScopeKind(kind)
        except ValueError:
            raise ValidationFailed(
                f"scope must be 'cluster' or 'namespace', not {kind!r}",
                details={"field": "scope"},
            ) from None
        if scope_kind is ScopeKind.CLUSTER:
            if namespace:
                raise ValidationFailed(
                    "a cluster-scoped grant takes no namespace; use scope 'namespace' to grant "
                    "access to one namespace",
                    details={"field": "namespace"},
                )
            return cls(ScopeKind.CLUSTER)
        if namespace is None:
            raise ValidationFailed(
                "a namespace-scoped grant needs a namespace", details={"field": "namespace"}
            )
        problem = dns1123_label_problem(namespace)
        if problem:
            raise ValidationFailed(
                f"namespace {namespace!r} {problem}", details={"field": "namespace"}
            )
        return cls(ScopeKind.NAMESPACE, namespace)

    @property
    def key(self) -> str:
        """Stable text form used in uniqueness constraints: ``cluster`` or ``namespace/<ns>``."""
        return "cluster" if self.kind is ScopeKind.CLUSTER else f"namespace/{self.namespace}"


def parse_role(value: str) -> Role:
    """Validate a role name, or raise ValidationFailed listing the allowed ones."""
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ValidationFailed(
            f"role must be one of {allowed}; got {value!r}", details={"field": "role"}
        ) from None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking, within one organisation."""

    user_id: str
    org_id: str
    role: MemberRole

    @property
    def is_admin(self) -> bool:
        return self.role is MemberRole.ADMIN


def require_admin(actor: Actor, action: str) -> None:
    """Only organisation admins manage access."""
    if not actor.is_admin:
        raise PermissionDenied(f"only organisation admins can {action}")


def require_same_org(actor: Actor, org_id: str, what: str) -> None:
    """Another organisation's objects do not exist for the caller (404, never 403)."""
    if actor.org_id != org_id:
        raise NotFound(f"{what} not found")


def require_cluster_access_supported(kind: ClusterKind) -> None:
    """Sandbox clusters refuse every Cluster Access operation."""
    if kind is ClusterKind.SANDBOX:
        raise Conflict(SANDBOX_REFUSAL)


def can_see_grant(actor: Actor, grant_user_id: str) -> bool:
    """Admins see every grant of their organisation; members only their own."""
    return actor.is_admin or actor.user_id == grant_user_id


def require_active_member(is_member: bool, is_active: bool, who: str) -> None:
    """A grant's target must be an active member of the cluster's organisation."""
    if not is_member:
        raise ValidationFailed(
            f"{who} is not a member of this organisation; invite them first",
            details={"field": "user"},
        )
    if not is_active:
        raise ValidationFailed(
            f"{who} is deactivated; reactivate them before granting access",
            details={"field": "user"},
        )


def has_kubectl_access(grant_count: int) -> bool:
    """kubectl access comes only from grants: being an admin gives none by itself."""
    return grant_count > 0
