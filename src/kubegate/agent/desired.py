"""From grants to RBAC objects, and from what the cluster has to what to change: pure.

Every object the agent makes carries the ``app.kubernetes.io/managed-by=kubegate`` label and
its grant id in an annotation, and is named from the grant id, so the same grant always maps
to the same object. The plan only ever touches objects with that label; an object's
``roleRef`` cannot change in Kubernetes, so a binding whose role differs is replaced (deleted,
then created), while a binding whose subjects or annotations drifted is updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubegate.domain.access import GrantSpec

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubegate"
GRANT_ANNOTATION = "kubegate.io/grant-id"
DEFAULT_USER_PREFIX = "kubegate:"
RBAC_GROUP = "rbac.authorization.k8s.io"

Manifest = dict[str, Any]


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """Identity of a binding: kind, namespace ("" for cluster-scoped) and name."""

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


def key_of(obj: Manifest) -> ObjectKey:
    """The identity of a binding manifest (desired or observed)."""
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
    return (
        observed.get("subjects") != desired["subjects"]
        or annotations.get(GRANT_ANNOTATION) != desired["metadata"]["annotations"][GRANT_ANNOTATION]
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
) -> Plan:
    """The changes that turn ``observed`` bindings into the ones ``grants`` call for.

    ``observed`` may contain objects kubegate does not own (e.g. a list without a label
    selector); those are never in the plan, not even when their name collides.
    """
    wanted = {key_of(m): m for m in (desired_binding(g, user_prefix) for g in grants)}
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
