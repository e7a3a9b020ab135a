"""Planning kubegate-managed ServiceAccounts and their bindings (pure)."""

from __future__ import annotations

from typing import Any

from kubegate.agent.desired import (
    MANAGED_BY_LABEL,
    SERVICE_ACCOUNT_ANNOTATION,
    ObjectKey,
    account_binding_name,
    desired_account_binding,
    desired_service_account,
    key_of,
    plan,
    plan_service_accounts,
)
from kubegate.domain.access import Role, ServiceAccountSpec

DEPLOYER = ServiceAccountSpec("c" * 32, "ci", "deployer", Role("edit"), cluster_wide=False)
READER = ServiceAccountSpec("d" * 32, "ci", "reader", Role("view"), cluster_wide=True)


def observed_account(name: str, namespace: str, *, owner_id: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {}}
    if owner_id is not None:
        meta["labels"] = {MANAGED_BY_LABEL: "kubegate"}
        meta["annotations"] = {SERVICE_ACCOUNT_ANNOTATION: owner_id}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


def test_a_managed_account_is_the_labelled_serviceaccount_and_a_rolebinding_in_its_namespace() -> (
    None
):
    account = desired_service_account(DEPLOYER)
    assert key_of(account) == ObjectKey("ServiceAccount", "ci", "deployer")
    assert account["metadata"]["labels"] == {MANAGED_BY_LABEL: "kubegate"}
    assert account["metadata"]["annotations"] == {SERVICE_ACCOUNT_ANNOTATION: "c" * 32}

    binding = desired_account_binding(DEPLOYER)
    assert key_of(binding) == ObjectKey("RoleBinding", "ci", account_binding_name("c" * 32))
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "edit",
    }
    # The apiserver stores a ServiceAccount subject without an apiGroup: one with it would
    # look drifted at every pass.
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}
    ]


def test_a_cluster_wide_account_gets_a_clusterrolebinding_naming_it_in_its_namespace() -> None:
    binding = desired_account_binding(READER)
    assert key_of(binding) == ObjectKey("ClusterRoleBinding", "", f"kubegate-sa-{'d' * 32}")
    assert binding["subjects"][0]["namespace"] == "ci"
    assert binding["roleRef"]["name"] == "view"


def test_missing_accounts_are_created_and_present_ones_plan_nothing() -> None:
    todo = plan_service_accounts([DEPLOYER, READER], [])
    assert [key_of(m).name for m in todo.create] == ["deployer", "reader"]
    assert not todo.replace and not todo.delete

    present = [desired_service_account(DEPLOYER), desired_service_account(READER)]
    assert plan_service_accounts([DEPLOYER, READER], present).empty


def test_an_owned_account_no_longer_wanted_is_deleted_and_someone_elses_never_is() -> None:
    theirs = observed_account("builder", "ci", owner_id=None)
    ours = observed_account("old", "ci", owner_id="e" * 32)
    todo = plan_service_accounts([], [theirs, ours])
    assert todo.delete == [ObjectKey("ServiceAccount", "ci", "old")]
    assert not todo.create and not todo.replace


def test_an_unowned_account_under_a_wanted_name_is_left_alone() -> None:
    # Creating it would conflict; the reconciler reports that as the account's failure.
    todo = plan_service_accounts([DEPLOYER], [observed_account("deployer", "ci", owner_id=None)])
    assert todo.empty


def test_an_owned_account_made_for_another_id_is_replaced_so_its_tokens_die() -> None:
    # Deleted and created again: the old account's bound tokens must not pass to the new one.
    stale = observed_account("deployer", "ci", owner_id="f" * 32)
    todo = plan_service_accounts([DEPLOYER], [stale])
    assert [key_of(m) for m in todo.replace] == [ObjectKey("ServiceAccount", "ci", "deployer")]
    assert todo.replace[0]["metadata"]["annotations"][SERVICE_ACCOUNT_ANNOTATION] == "c" * 32


def test_account_bindings_are_planned_with_grants_and_repaired_when_edited() -> None:
    todo = plan([], [], service_accounts=[DEPLOYER])
    assert [key_of(m) for m in todo.create] == [key_of(desired_account_binding(DEPLOYER))]

    edited = desired_account_binding(DEPLOYER)
    edited["subjects"] = [{"kind": "ServiceAccount", "name": "intruder", "namespace": "ci"}]
    todo = plan([], [edited], service_accounts=[DEPLOYER])
    assert [m["subjects"][0]["name"] for m in todo.update] == ["deployer"]

    relabelled = desired_account_binding(DEPLOYER)
    relabelled["metadata"]["annotations"] = {SERVICE_ACCOUNT_ANNOTATION: "x" * 32}
    assert len(plan([], [relabelled], service_accounts=[DEPLOYER]).update) == 1


def test_an_accounts_binding_goes_when_the_account_is_not_in_place() -> None:
    # The reconciler leaves out accounts whose ServiceAccount failed: their binding goes.
    todo = plan([], [desired_account_binding(DEPLOYER)], service_accounts=[])
    assert todo.delete == [key_of(desired_account_binding(DEPLOYER))]
