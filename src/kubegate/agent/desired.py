"""From grants and service accounts to Kubernetes objects, and from what the cluster has to
what to change: pure.

Every object the agent makes carries the ``app.kubernetes.io/managed-by=kubegate`` label and
its grant (or service account) id in an annotation, and is named from that id, so the same
grant always maps to the same object. The plan only ever touches objects with that label; an
object's ``roleRef`` cannot change in Kubernetes, so a binding whose role differs is replaced
(deleted, then created), while a binding whose subjects or annotations drifted is updated in
place.

A kubegate-managed ServiceAccount is two objects: the ServiceAccount ``<name>`` in its
namespace, and its binding ``kubegate-sa-<id>`` (a RoleBinding in that namespace, or a
ClusterRoleBinding). :func:`plan_service_accounts` plans the accounts; their bindings are
planned with the grants' by :func:`plan`, and only for accounts kubegate owns in the cluster
(the reconciler passes those), so a binding never names someone else's ServiceAccount.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubegate.domain.access import GrantSpec, ServiceAccountSpec

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubegate"
GRANT_ANNOTATION = "kubegate.io/grant-id"
SERVICE_ACCOUNT_ANNOTATION = "kubegate.io/service-account-id"
SERVICE_ACCOUNT_KIND = "ServiceAccount"
DEFAULT_USER_PREFIX = "kubegate:"
RBAC_GROUP = "rbac.authorization.k8s.io"

Manifest = dict[str, Any]
Manages = Callable[[str, str], bool]
"""Whether ``(namespace, name)`` is a ServiceAccount in the agent's current desired set
(:meth:`~kubegate.agent.reconcile.Reconciler.manages`)."""


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """Identity of an object: kind, namespace ("" for cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str


def binding_name(grant_id: str) -> str:
    """The deterministic name of a grant's binding."""
    return f"kubegate-{grant_id}"


def desired_binding(grant: GrantSpec, user_prefix: str = DEFAULT_USER_PREFIX) -> Manifest:
    """The RoleBinding (namespace grant) or ClusterRoleBinding (cluster grant) for ``grant``."""
    metadata: Manifest = {
        "name": binding_name(grant.grant_id),
        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        "annotations": {GRANT_ANNOTATION: grant.grant_id},
    }
    kind = "ClusterRoleBinding"
    if grant.namespace is not None:
        kind = "RoleBinding"
        metadata["namespace"] = grant.namespace
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": grant.role},
        "subjects": [
            {"apiGroup": RBAC_GROUP, "kind": "User", "name": f"{user_prefix}{grant.email}"}
        ],
    }


def account_binding_name(service_account_id: str) -> str:
    """The deterministic name of a managed ServiceAccount's binding."""
    return f"kubegate-sa-{service_account_id}"


def desired_service_account(account: ServiceAccountSpec) -> Manifest:
    """The ServiceAccount object of a kubegate-managed account."""
    return {
        "apiVersion": "v1",
        "kind": SERVICE_ACCOUNT_KIND,
        "metadata": {
            "name": account.name,
            "namespace": account.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {SERVICE_ACCOUNT_ANNOTATION: account.service_account_id},
        },
    }


def desired_account_binding(account: ServiceAccountSpec) -> Manifest:
    """The binding of a managed ServiceAccount to its role: a RoleBinding in the account's
    namespace, or a ClusterRoleBinding when ``cluster_wide``."""
    metadata: Manifest = {
        "name": account_binding_name(account.service_account_id),
        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        "annotations": {SERVICE_ACCOUNT_ANNOTATION: account.service_account_id},
    }
    kind = "ClusterRoleBinding"
    if not account.cluster_wide:
        kind = "RoleBinding"
        metadata["namespace"] = account.namespace
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": account.role},
        # A ServiceAccount subject has no apiGroup (the apiserver stores none).
        "subjects": [
            {"kind": SERVICE_ACCOUNT_KIND, "name": account.name, "namespace": account.namespace}
        ],
    }


def key_of(obj: Manifest) -> ObjectKey:
    """The identity of a manifest (desired or observed)."""
    meta = obj["metadata"]
    return ObjectKey(obj["kind"], meta.get("namespace") or "", meta["name"])


def is_owned(obj: Manifest) -> bool:
    """Whether kubegate made this object (and so may change or delete it)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do to converge: each list sorted, so a plan is deterministic."""

    create: list[Manifest] = field(default_factory=list)
    update: list[Manifest] = field(default_factory=list)
    replace: list[Manifest] = field(default_factory=list)  # roleRef changed: delete + create
    delete: list[ObjectKey] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.replace or self.delete)


def _drifted(desired: Manifest, observed: Manifest) -> bool:
    annotations = observed["metadata"].get("annotations") or {}
    labels = observed["metadata"].get("labels") or {}
    wanted: dict[str, str] = desired["metadata"]["annotations"]
    return (
        observed.get("subjects") != desired["subjects"]
        or any(annotations.get(name) != value for name, value in wanted.items())
        or labels.get(MANAGED_BY_LABEL) != MANAGED_BY
    )


def converged(desired: Manifest, observed: Manifest) -> bool:
    """Whether ``observed`` is ours and already what ``desired`` asks for (nothing to plan)."""
    return (
        is_owned(observed)
        and observed.get("roleRef") == desired["roleRef"]
        and not _drifted(desired, observed)
    )


def plan(
    grants: list[GrantSpec],
    observed: list[Manifest],
    user_prefix: str = DEFAULT_USER_PREFIX,
    service_accounts: Sequence[ServiceAccountSpec] = (),
) -> Plan:
    """The changes that turn ``observed`` bindings into the ones ``grants`` and the managed
    ``service_accounts`` (those whose ServiceAccount kubegate owns) call for.

    ``observed`` may contain objects kubegate does not own (e.g. a list without a label
    selector); those are never in the plan, not even when their name collides.
    """
    wanted = {
        key_of(m): m
        for m in (
            *(desired_binding(g, user_prefix) for g in grants),
            *(desired_account_binding(a) for a in service_accounts),
        )
    }
    have = {key_of(o): o for o in observed}
    result = Plan()
    for key in sorted(wanted):
        desired = wanted[key]
        current = have.get(key)
        if current is None:
            result.create.append(desired)
        elif not is_owned(current):
            continue  # someone else's object under our name: never overwrite it
        elif current.get("roleRef") != desired["roleRef"]:
            result.replace.append(desired)
        elif _drifted(desired, current):
            result.update.append(desired)
    for key in sorted(have):
        if key not in wanted and is_owned(have[key]):
            result.delete.append(key)
    return result


@dataclass(frozen=True, slots=True)
class AccountPlan:
    """What to do to the managed ServiceAccounts: each list sorted.

    ``replace`` holds accounts kubegate owns under a wanted name but made for another (or
    no) service account id: deleted, then created, so the tokens of the old account die
    with it instead of passing to the new one.
    """

    create: list[Manifest] = field(default_factory=list)
    replace: list[Manifest] = field(default_factory=list)
    delete: list[ObjectKey] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.replace or self.delete)


def plan_service_accounts(
    accounts: Sequence[ServiceAccountSpec], observed: list[Manifest]
) -> AccountPlan:
    """The changes that turn the ``observed`` ServiceAccounts into the ones ``accounts`` call
    for. An observed account kubegate does not own is never in the plan (creating the wanted
    one then fails with a conflict, which the reconciler reports)."""
    wanted = {key_of(m): m for m in map(desired_service_account, accounts)}
    have = {key_of(o): o for o in observed}
    result = AccountPlan()
    for key in sorted(wanted):
        desired = wanted[key]
        current = have.get(key)
        if current is None:
            result.create.append(desired)
        elif not is_owned(current):
            continue
        elif not converged_account(desired, current):
            result.replace.append(desired)
    for key in sorted(have):
        if key not in wanted and is_owned(have[key]):
            result.delete.append(key)
    return result


def converged_account(desired: Manifest, observed: Manifest) -> bool:
    """Whether ``observed`` is ours and the account ``desired`` names (same id)."""
    annotations = observed.get("metadata", {}).get("annotations") or {}
    wanted = desired["metadata"]["annotations"][SERVICE_ACCOUNT_ANNOTATION]
    return is_owned(observed) and annotations.get(SERVICE_ACCOUNT_ANNOTATION) == wanted
