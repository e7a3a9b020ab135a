from __future__ import annotations

import re

import pytest

from kubegate.domain.access import (
    NO_ACCESS,
    SANDBOX_REFUSAL,
    Actor,
    ClusterKind,
    MemberRole,
    Role,
    Scope,
    ScopeKind,
    can_see_grant,
    dns1123_label_problem,
    has_kubectl_access,
    parse_role,
    require_active_member,
    require_admin,
    require_cluster_access_supported,
    require_same_org,
)
from kubegate.errors import Conflict, NotFound, PermissionDenied, ValidationFailed

ADMIN = Actor(user_id="u-admin", org_id="org-a", role=MemberRole.ADMIN)
MEMBER = Actor(user_id="u-member", org_id="org-a", role=MemberRole.MEMBER)


@pytest.mark.parametrize("name", ["a", "team-a", "x" * 63, "0abc9", "a-b-c"])
def test_valid_namespaces_are_dns1123_labels(name: str) -> None:
    assert dns1123_label_problem(name) is None
    assert Scope.parse("namespace", name) == Scope(ScopeKind.NAMESPACE, name)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Foo_Bar", "lower case letters"),
        ("x" * 64, "at most 63 characters (got 64)"),
        ("-a", "start and end"),
        ("a-", "start and end"),
        ("a.b", "lower case letters"),
        ("", "must not be empty"),
    ],
)
def test_invalid_namespaces_are_refused_with_the_reason(name: str, problem: str) -> None:
    with pytest.raises(ValidationFailed, match=re.escape(problem)) as caught:
        Scope.parse("namespace", name)
    assert caught.value.details == {"field": "namespace"}


def test_cluster_scope_takes_no_namespace() -> None:
    assert Scope.parse("cluster", None) == Scope(ScopeKind.CLUSTER)
    with pytest.raises(ValidationFailed, match="takes no namespace"):
        Scope.parse("cluster", "team-a")


def test_namespace_scope_needs_a_namespace() -> None:
    with pytest.raises(ValidationFailed, match="needs a namespace"):
        Scope.parse("namespace", None)


def test_unknown_scope_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="'cluster' or 'namespace'"):
        Scope.parse("galaxy", None)


def test_scope_keys_tell_scopes_apart() -> None:
    assert Scope.parse("cluster", None).key == "cluster"
    assert Scope.parse("namespace", "a").key == "namespace/a"


def test_roles_are_the_four_builtin_clusterroles() -> None:
    assert [r.value for r in Role] == ["view", "edit", "admin", "cluster-admin"]
    assert parse_role("cluster-admin") is Role.CLUSTER_ADMIN
    with pytest.raises(ValidationFailed, match="one of view, edit, admin, cluster-admin"):
        parse_role("superuser")


def test_only_admins_manage_access() -> None:
    require_admin(ADMIN, "create grants")
    with pytest.raises(PermissionDenied, match="only organisation admins can create grants"):
        require_admin(MEMBER, "create grants")


def test_other_organisations_objects_are_not_found_rather_than_forbidden() -> None:
    require_same_org(ADMIN, "org-a", "cluster")
    with pytest.raises(NotFound, match="cluster not found"):
        require_same_org(ADMIN, "org-b", "cluster")


def test_sandbox_clusters_refuse_cluster_access() -> None:
    require_cluster_access_supported(ClusterKind.STANDARD)
    with pytest.raises(Conflict) as caught:
        require_cluster_access_supported(ClusterKind.SANDBOX)
    assert caught.value.message == SANDBOX_REFUSAL
    assert caught.value.status == 409


def test_members_see_only_their_own_grants() -> None:
    assert can_see_grant(ADMIN, "someone-else")
    assert can_see_grant(MEMBER, "u-member")
    assert not can_see_grant(MEMBER, "someone-else")


def test_grant_target_must_be_an_active_member() -> None:
    require_active_member(True, True, "bob@example.com")
    with pytest.raises(ValidationFailed, match="not a member"):
        require_active_member(False, True, "bob@example.com")
    with pytest.raises(ValidationFailed, match="deactivated"):
        require_active_member(True, False, "bob@example.com")


def test_managing_access_never_implies_kubectl_access() -> None:
    assert ADMIN.is_admin and not has_kubectl_access(grant_count=0)
    assert has_kubectl_access(grant_count=1)
    assert NO_ACCESS == "You do not have access to this cluster"
