"""An access key's scope: which clusters, and which requests, a key may be used for.

Scoping only ever reduces what the key's user may do: Kubernetes RBAC still decides every
request the scope lets through. Rules are read like RBAC rules, with a namespace list and two
conveniences: ``<resource>/*`` covers every subresource of a resource, and a rule that allows
``list`` also allows ``watch`` (kubectl with ``KUBECTL_WATCHLIST`` lists by watching).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kubegate.domain.access import CLUSTER_ID, dns1123_label_problem
from kubegate.errors import ValidationFailed
from kubegate.kube.requestinfo import RequestInfo

ANY = "*"
"""The wildcard: any namespace, resource or verb."""

VERBS = frozenset(
    {
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "proxy",
        ANY,
    }
)
"""The verbs a scope rule may name: every verb a request can have, and ``*``."""

# "pods", "pods/log", "pods/*", "deployments.apps", "deployments.apps/scale", "*".
_RESOURCE = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/([a-z0-9]([-a-z0-9]*[a-z0-9])?|\*))?")
_RULE_KEYS = ("namespaces", "resources", "verbs")
_SCOPE_KEYS = frozenset({"clusters", "rules"})


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """Requests one rule allows: any listed verb on any listed resource in any listed namespace.

    ``namespaces`` holds names or ``*``; only ``*`` covers cluster-scoped and all-namespace
    requests. ``resources`` holds ``pods``, ``pods/log``, ``deployments.apps``, ``pods/*``
    (every subresource of pods, not pods itself) or ``*``; a rule naming ``pods`` does not
    allow ``pods/exec``. ``verbs`` holds request verbs or ``*``; ``list`` implies ``watch``.
    """

    namespaces: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]

    def allows(self, info: RequestInfo) -> bool:
        """True when this rule covers the resource request ``info``."""
        return (
            self._allows_verb(info.verb)
            and self._allows_namespace(info.namespace)
            and self._allows_resource(info)
        )

    def allows_everything_unnamespaced(self) -> bool:
        """True when the rule is ``*`` on all three: it covers non-resource requests too."""
        return ANY in self.namespaces and ANY in self.resources and ANY in self.verbs

    def _allows_verb(self, verb: str) -> bool:
        return ANY in self.verbs or verb in self.verbs or (verb == "watch" and "list" in self.verbs)

    def _allows_namespace(self, namespace: str) -> bool:
        return ANY in self.namespaces or (namespace != "" and namespace in self.namespaces)

    def _allows_resource(self, info: RequestInfo) -> bool:
        if ANY in self.resources:
            return True
        names = [info.resource]
        if info.api_group:
            names.append(f"{info.resource}.{info.api_group}")
        if not info.subresource:
            return any(name in self.resources for name in names)
        return any(
            f"{name}/{info.subresource}" in self.resources or f"{name}/{ANY}" in self.resources
            for name in names
        )


@dataclass(frozen=True, slots=True)
class AccessScope:
    """Where and for what an access key may be used; None on either field means no limit.

    ``clusters`` holds cluster ids; ``rules`` the requests allowed on those clusters. Discovery
    (``/api``, ``/apis/...``, ``/openapi/...``, ``/version``) is always allowed, since kubectl
    cannot do anything without it.
    """

    clusters: frozenset[str] | None
    rules: tuple[ScopeRule, ...] | None

    @classmethod
    def from_json(cls, data: Mapping[str, object] | None) -> AccessScope | None:
        """Read a scope as stored or sent by a client; None stays None (an unscoped key).

        The shape is ``{"clusters": [ids] | null, "rules": [{"namespaces": [...],
        "resources": [...], "verbs": [...]}] | null}``; a missing key means null. Anything
        else (unknown keys, wrong types, empty lists in a rule, unknown verbs, malformed
        names) raises :class:`ValidationFailed` naming the field.
        """
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise ValidationFailed("scope must be an object", details={"field": "scope"})
        unknown = sorted(str(key) for key in data if key not in _SCOPE_KEYS)
        if unknown:
            raise ValidationFailed(
                f"scope has unknown keys {unknown}; it takes 'clusters' and 'rules'",
                details={"field": "scope"},
            )
        clusters = data.get("clusters")
        rules = data.get("rules")
        return cls(
            clusters=None if clusters is None else _read_clusters(clusters),
            rules=None if rules is None else _read_rules(rules),
        )

    def to_json(self) -> dict[str, object]:
        """The scope as JSON-ready values (sorted lists), readable by :meth:`from_json`."""
        return {
            "clusters": None if self.clusters is None else sorted(self.clusters),
            "rules": None
            if self.rules is None
            else [
                {
                    "namespaces": sorted(rule.namespaces),
                    "resources": sorted(rule.resources),
                    "verbs": sorted(rule.verbs),
                }
                for rule in self.rules
            ],
        }

    def allows_cluster(self, cluster_id: str) -> bool:
        """True when the key may be used on ``cluster_id``."""
        return self.clusters is None or cluster_id in self.clusters

    def allows(self, info: RequestInfo) -> bool:
        """True when the key may make the request ``info`` (RBAC still decides after).

        Discovery is always allowed. Other non-resource requests (``/healthz``, ``/metrics``,
        ...) need a rule that is ``*`` on namespaces, resources and verbs. A resource request
        needs one rule that matches its verb, namespace and resource.
        """
        if info.is_discovery or self.rules is None:
            return True
        if not info.is_resource_request:
            return any(rule.allows_everything_unnamespaced() for rule in self.rules)
        return any(rule.allows(info) for rule in self.rules)


def _read_clusters(value: object) -> frozenset[str]:
    items = _read_strings(value, "scope.clusters", allow_empty=True)
    for item in items:
        if CLUSTER_ID.fullmatch(item) is None:
            raise ValidationFailed(
                f"cluster id {item!r} is not 32 lowercase hex characters",
                details={"field": "scope.clusters"},
            )
    return frozenset(items)


def _read_rules(value: object) -> tuple[ScopeRule, ...]:
    if not isinstance(value, list):
        raise ValidationFailed("scope.rules must be a list", details={"field": "scope.rules"})
    return tuple(_read_rule(rule, f"scope.rules[{index}]") for index, rule in enumerate(value))


def _read_rule(value: object, field: str) -> ScopeRule:
    if not isinstance(value, Mapping):
        raise ValidationFailed(f"{field} must be an object", details={"field": field})
    keys = {str(key) for key in value}
    if keys != set(_RULE_KEYS):
        raise ValidationFailed(
            f"{field} must have exactly the keys {list(_RULE_KEYS)}; got {sorted(keys)}",
            details={"field": field},
        )
    namespaces = _read_strings(value["namespaces"], f"{field}.namespaces", allow_empty=False)
    for namespace in namespaces:
        problem = None if namespace == ANY else dns1123_label_problem(namespace)
        if problem is not None:
            raise ValidationFailed(
                f"namespace {namespace!r} {problem}", details={"field": f"{field}.namespaces"}
            )
    resources = _read_strings(value["resources"], f"{field}.resources", allow_empty=False)
    for resource in resources:
        if resource != ANY and _RESOURCE.fullmatch(resource) is None:
            raise ValidationFailed(
                f"resource {resource!r} must look like 'pods', 'pods/log', 'pods/*', "
                "'deployments.apps' or '*'",
                details={"field": f"{field}.resources"},
            )
    verbs = _read_strings(value["verbs"], f"{field}.verbs", allow_empty=False)
    for verb in verbs:
        if verb not in VERBS:
            raise ValidationFailed(
                f"verb {verb!r} is not one of {sorted(VERBS)}", details={"field": f"{field}.verbs"}
            )
    return ScopeRule(
        namespaces=frozenset(namespaces),
        resources=frozenset(resources),
        verbs=frozenset(verbs),
    )


def _read_strings(value: object, field: str, *, allow_empty: bool) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationFailed(f"{field} must be a list of strings", details={"field": field})
    if not value and not allow_empty:
        raise ValidationFailed(f"{field} must not be empty", details={"field": field})
    return [str(item) for item in value]
