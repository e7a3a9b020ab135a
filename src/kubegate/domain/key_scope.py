"""What an access key may reach: clusters, and namespaces within them.

A key inherits exactly its creator's permissions; its scope only narrows them. A scope lists
clusters, each either whole or limited to some namespaces; a key without a scope (None) may
do everything its creator may. Stored and sent as
``{"clusters": [{"cluster": "<id>", "namespaces": ["dev"]}, {"cluster": "<id2>"}]}``.

On the Kubernetes API proxy a scope becomes, per cluster, an
:class:`~kubegate.domain.scope.AccessScope` (:func:`token_scope`): a namespace-limited
cluster allows any verb on any resource in those namespaces and nothing cluster-scoped or
across all namespaces; a whole cluster leaves the requests to Kubernetes RBAC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kubegate.domain.access import CLUSTER_ID, dns1123_label_problem
from kubegate.domain.scope import ANY, AccessScope, ScopeRule
from kubegate.errors import PermissionDenied, ValidationFailed

MAX_CLUSTERS = 100
MAX_NAMESPACES = 100


@dataclass(frozen=True, slots=True)
class ClusterScope:
    """One cluster of a key's scope; ``namespaces`` None means the whole cluster."""

    cluster_id: str
    namespaces: frozenset[str] | None = None

    def covers(self, other: ClusterScope) -> bool:
        """True when everything ``other`` allows on the cluster, this allows too."""
        if self.cluster_id != other.cluster_id:
            return False
        if self.namespaces is None:
            return True
        return other.namespaces is not None and other.namespaces <= self.namespaces


@dataclass(frozen=True, slots=True)
class KeyScope:
    """The clusters (and namespaces) an access key may be used on; built by :meth:`parse`
    or :meth:`from_json`, so it always names at least one cluster, each once."""

    clusters: tuple[ClusterScope, ...]

    @classmethod
    def parse(cls, entries: Sequence[tuple[str, Sequence[str] | None]]) -> KeyScope:
        """Validate ``(cluster id, namespaces or None)`` pairs from a client, or raise
        :class:`ValidationFailed` naming the field: at least one cluster, no cluster twice,
        cluster ids of kubegate's shape, namespaces DNS-1123 labels (not empty when given)."""
        if not entries:
            raise ValidationFailed(
                "scope.clusters must name at least one cluster; leave the scope out for a key "
                "with all of your access",
                details={"field": "scope.clusters"},
            )
        if len(entries) > MAX_CLUSTERS:
            raise ValidationFailed(
                f"scope.clusters names {len(entries)} clusters; at most {MAX_CLUSTERS}",
                details={"field": "scope.clusters"},
            )
        seen: set[str] = set()
        clusters = []
        for index, (cluster_id, namespaces) in enumerate(entries):
            field = f"scope.clusters[{index}]"
            if CLUSTER_ID.fullmatch(cluster_id) is None:
                raise ValidationFailed(
                    f"{field}.cluster {cluster_id[:64]!r} is not a cluster id (32 lowercase hex "
                    "characters, as `kubegate cluster list -o json` shows)",
                    details={"field": f"{field}.cluster"},
                )
            if cluster_id in seen:
                raise ValidationFailed(
                    f"cluster {cluster_id} appears twice in the scope; list its namespaces once",
                    details={"field": f"{field}.cluster"},
                )
            seen.add(cluster_id)
            clusters.append(
                ClusterScope(cluster_id, _namespaces(namespaces, f"{field}.namespaces"))
            )
        return cls(tuple(sorted(clusters, key=lambda one: one.cluster_id)))

    @classmethod
    def from_json(cls, data: Mapping[str, object] | None) -> KeyScope | None:
        """Read a scope as stored (:meth:`to_json`); None stays None (an unscoped key)."""
        if data is None:
            return None
        raw = data.get("clusters")
        if not isinstance(raw, list):
            raise ValidationFailed("scope.clusters must be a list", details={"field": "scope"})
        entries: list[tuple[str, Sequence[str] | None]] = []
        for item in raw:
            if not isinstance(item, Mapping) or not isinstance(item.get("cluster"), str):
                raise ValidationFailed(
                    "each of scope.clusters must be an object with a 'cluster' id",
                    details={"field": "scope.clusters"},
                )
            namespaces = item.get("namespaces")
            if namespaces is not None and not (
                isinstance(namespaces, list) and all(isinstance(n, str) for n in namespaces)
            ):
                raise ValidationFailed(
                    "scope namespaces must be a list of names", details={"field": "scope"}
                )
            entries.append((str(item["cluster"]), namespaces))
        return cls.parse(entries)

    def to_json(self) -> dict[str, object]:
        """The scope as JSON-ready values (sorted), readable by :meth:`from_json`."""
        return {
            "clusters": [
                {"cluster": one.cluster_id}
                if one.namespaces is None
                else {"cluster": one.cluster_id, "namespaces": sorted(one.namespaces)}
                for one in self.clusters
            ]
        }

    @property
    def cluster_ids(self) -> frozenset[str]:
        return frozenset(one.cluster_id for one in self.clusters)

    def cluster(self, cluster_id: str) -> ClusterScope | None:
        """The scope's entry for ``cluster_id``, or None when the key may not use it."""
        return next((one for one in self.clusters if one.cluster_id == cluster_id), None)

    def includes_cluster(self, cluster_id: str) -> bool:
        return self.cluster(cluster_id) is not None

    def covers_whole_cluster(self, cluster_id: str) -> bool:
        """True when the key may do on ``cluster_id`` all its creator may (no namespace limit)."""
        entry = self.cluster(cluster_id)
        return entry is not None and entry.namespaces is None

    def unknown_clusters(self, known: Mapping[str, str]) -> list[str]:
        """The scope's cluster ids that are not among ``known`` (the organisation's)."""
        return [one.cluster_id for one in self.clusters if one.cluster_id not in known]

    def describe(self, names: Mapping[str, str]) -> str:
        """For messages: ``cluster prod (namespaces dev, test), cluster ci`` (names by id)."""
        parts = []
        for one in self.clusters:
            name = names.get(one.cluster_id, one.cluster_id)
            if one.namespaces is None:
                parts.append(f"cluster {name}")
            else:
                parts.append(f"cluster {name} (namespaces {', '.join(sorted(one.namespaces))})")
        return ", ".join(parts)


def covers(outer: KeyScope | None, inner: KeyScope | None) -> bool:
    """True when a key scoped ``inner`` can do nothing a key scoped ``outer`` cannot (None:
    everything the creator may). A key creates only keys it covers."""
    if outer is None:
        return True
    if inner is None:
        return False
    for entry in inner.clusters:
        mine = outer.cluster(entry.cluster_id)
        if mine is None or not mine.covers(entry):
            return False
    return True


def token_scope(scope: KeyScope | None, cluster_id: str) -> AccessScope | None:
    """The proxy's scope for a kube token minted on ``cluster_id`` with a key scoped
    ``scope``: None for an unscoped key (the creator's RBAC decides); only that cluster, with
    no rules for a whole cluster and one rule (any verb, any resource, those namespaces) for
    a namespace-limited one. Raises PermissionDenied when the scope excludes the cluster."""
    if scope is None:
        return None
    entry = scope.cluster(cluster_id)
    if entry is None:
        raise PermissionDenied(f"this access key's scope does not include cluster {cluster_id}")
    if entry.namespaces is None:
        return AccessScope(clusters=frozenset({cluster_id}), rules=None)
    rule = ScopeRule(
        namespaces=entry.namespaces, resources=frozenset({ANY}), verbs=frozenset({ANY})
    )
    return AccessScope(clusters=frozenset({cluster_id}), rules=(rule,))


def _namespaces(value: Sequence[str] | None, field: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not value:
        raise ValidationFailed(
            f"{field} must not be empty; leave it out for the whole cluster",
            details={"field": field},
        )
    if len(value) > MAX_NAMESPACES:
        raise ValidationFailed(
            f"{field} names {len(value)} namespaces; at most {MAX_NAMESPACES}",
            details={"field": field},
        )
    for namespace in value:
        problem = dns1123_label_problem(namespace)
        if problem is not None:
            raise ValidationFailed(
                f"namespace {namespace[:64]!r} {problem}", details={"field": field}
            )
    return frozenset(value)
