from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kubegate.agent.desired import (
    GRANT_ANNOTATION,
    MANAGED_BY_LABEL,
    ObjectKey,
    Plan,
    converged,
    desired_binding,
    key_of,
    plan,
)
from kubegate.domain.access import GrantSpec, Role

NS_GRANT = GrantSpec("a" * 32, "alice@example.com", Role("edit"), "team-a")
CLUSTER_GRANT = GrantSpec("b" * 32, "bob@example.com", Role("view"), None)


def unowned(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"team": "platform"}}
    kind = "ClusterRoleBinding"
    if namespace:
        meta["namespace"], kind = namespace, "RoleBinding"
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
        "subjects": [],
    }


def apply(observed: list[dict[str, Any]], p: Plan) -> list[dict[str, Any]]:
    """What the cluster holds after the agent carries the plan out."""
    objects = {key_of(o): o for o in observed}
    for key in p.delete:
        del objects[key]
    for manifest in [*p.replace, *p.update, *p.create]:
        objects[key_of(manifest)] = manifest
    return list(objects.values())


def test_namespace_grant_is_a_rolebinding_to_the_clusterrole_for_the_prefixed_user() -> None:
    binding = desired_binding(NS_GRANT)
    assert binding["kind"] == "RoleBinding"
    assert binding["metadata"]["namespace"] == "team-a"
    assert binding["metadata"]["name"] == f"kubegate-{'a' * 32}"
    assert binding["metadata"]["labels"] == {MANAGED_BY_LABEL: "kubegate"}
    assert binding["metadata"]["annotations"] == {GRANT_ANNOTATION: "a" * 32}
    assert binding["roleRef"]["kind"] == "ClusterRole" and binding["roleRef"]["name"] == "edit"
    assert binding["subjects"][0]["kind"] == "User"
    assert binding["subjects"][0]["name"] == "kubegate:alice@example.com"


def test_cluster_grant_is_a_clusterrolebinding_and_the_prefix_is_configurable() -> None:
    binding = desired_binding(CLUSTER_GRANT, user_prefix="sso:")
    assert binding["kind"] == "ClusterRoleBinding"
    assert "namespace" not in binding["metadata"]
    assert binding["subjects"][0]["name"] == "sso:bob@example.com"


def test_missing_bindings_are_created_and_converged_state_plans_nothing() -> None:
    first = plan([NS_GRANT, CLUSTER_GRANT], [])
    assert len(first.create) == 2 and not (first.update or first.replace or first.delete)
    assert plan([NS_GRANT, CLUSTER_GRANT], apply([], first)).empty


def test_a_binding_whose_grant_is_gone_is_deleted() -> None:
    observed = [desired_binding(NS_GRANT), desired_binding(CLUSTER_GRANT)]
    result = plan([CLUSTER_GRANT], observed)
    assert result.delete == [ObjectKey("RoleBinding", "team-a", f"kubegate-{'a' * 32}")]


def test_a_changed_role_is_replaced_because_roleref_is_immutable() -> None:
    edited = desired_binding(NS_GRANT)
    edited["roleRef"]["name"] = "cluster-admin"  # edited by hand
    result = plan([NS_GRANT], [edited])
    assert result.replace == [desired_binding(NS_GRANT)] and not result.update


def test_edited_subjects_are_restored_in_place() -> None:
    edited = desired_binding(NS_GRANT)
    edited["subjects"].append({"kind": "User", "name": "mallory@example.com"})
    result = plan([NS_GRANT], [edited])
    assert result.update == [desired_binding(NS_GRANT)] and not result.replace


def test_unowned_bindings_are_never_touched_even_under_our_name() -> None:
    squatter = unowned(f"kubegate-{'a' * 32}", "team-a")
    result = plan([NS_GRANT], [squatter, unowned("ops-admins")])
    assert result.empty


names = st.sampled_from(["team-a", "team-b", None])
grants = st.lists(
    st.builds(
        GrantSpec,
        grant_id=st.text("0123456789abcdef", min_size=32, max_size=32),
        email=st.emails(),
        role=st.sampled_from(list(Role)),
        namespace=names,
    ),
    max_size=8,
    unique_by=lambda g: g.grant_id,
)


@given(wanted=grants, before=grants, foreign=st.lists(st.sampled_from(["a", "b", "c"])))
def test_carrying_out_a_plan_converges_and_leaves_unowned_objects_alone(
    wanted: list[GrantSpec], before: list[GrantSpec], foreign: list[str]
) -> None:
    observed = [desired_binding(g) for g in before]
    for g in before[:2]:  # some drift
        observed[before.index(g)]["roleRef"]["name"] = "cluster-admin"
    others = [unowned(f"ops-{name}") for name in sorted(set(foreign))]
    snapshot = copy.deepcopy(others)
    after = apply(observed + others, plan(wanted, observed + others))
    assert plan(wanted, after).empty
    assert [o for o in after if o["metadata"]["name"].startswith("ops-")] == snapshot
    owned = sorted(key_of(o) for o in after if not o["metadata"]["name"].startswith("ops-"))
    assert owned == sorted(key_of(desired_binding(g)) for g in wanted)


def test_a_binding_is_converged_only_when_owned_with_the_same_role_and_subjects() -> None:
    desired = desired_binding(NS_GRANT)
    assert converged(desired, copy.deepcopy(desired))
    other_role = copy.deepcopy(desired)
    other_role["roleRef"]["name"] = "admin"
    other_subjects = copy.deepcopy(desired)
    other_subjects["subjects"] = []
    squatter = copy.deepcopy(desired)
    squatter["metadata"]["labels"] = {}
    assert not any(converged(desired, o) for o in (other_role, other_subjects, squatter))
