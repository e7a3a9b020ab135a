"""What a REST request made with an access key may reach, decided from its route alone.

A key inherits its creator's permissions, which every route checks as for a login. A scoped
key is narrowed further, here, before the route runs, by an allow-list of request paths (a route
added later is refused to scoped keys until it is listed):

- anything on a cluster (``/api/v1/clusters/{cluster_id}…``) needs the cluster in the scope;
  reading it and its grants need only that; changing its grants or deleting it needs the
  whole cluster in the scope; minting kube tokens and kubeconfigs is checked by the minter
  (``server/minter.py``), which audits a refusal and bounds the token by the scope;
- listing clusters is allowed (the route shows only the key's clusters), as are ``/me`` and
  the caller's own access keys (the routes refuse a key wider than the caller's);
- everything else (registering clusters, managing members, the audit log, other members'
  keys) is organisation-wide and refused.

Any key, scoped or not, cannot be logged out: it is deleted instead.
"""

from __future__ import annotations

import re

from kubegate.errors import InvalidRequest, KubegateError, PermissionDenied
from kubegate.server.principal import Principal

_CLUSTER = re.compile(r"/api/v1/clusters/(?P<cluster_id>[^/]+)(?P<rest>/.*)?")
_MINTS = frozenset({"/k8s-token", "/kubeconfig"})
_ALWAYS = frozenset(
    {
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/clusters"),
        ("GET", "/api/v1/access-keys"),
        ("POST", "/api/v1/access-keys"),
    }
)
_OWN_KEY = re.compile(r"/api/v1/access-keys/[^/]+")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def refusal(principal: Principal, method: str, path: str) -> KubegateError | None:
    """Why ``principal`` may not call ``method path`` (the request's path), or None.
    Callers that used no access key pass."""
    if principal.access_key_id is None:
        return None
    if path == "/api/v1/auth/logout":
        return InvalidRequest(
            "an access key cannot be logged out; delete it with kubegate access-key delete"
        )
    scope = principal.key_scope
    if scope is None or (method, path) in _ALWAYS:
        return None
    if method == "DELETE" and _OWN_KEY.fullmatch(path):
        return None  # the route refuses a key wider than the caller's
    match = _CLUSTER.fullmatch(path)
    if match is not None:
        cluster_id, rest = match["cluster_id"], match["rest"] or ""
        if rest in _MINTS:
            return None  # the minter checks the scope, names the cluster and audits a refusal
        if not scope.includes_cluster(cluster_id):
            return PermissionDenied(
                f"this access key's scope does not include cluster {cluster_id[:64]}"
            )
        if method in _SAFE or scope.covers_whole_cluster(cluster_id):
            return None
        return PermissionDenied(
            f"this access key's scope covers only some namespaces of cluster {cluster_id}; "
            "changing its access or deleting it needs a key scoped to the whole cluster"
        )
    return PermissionDenied(
        f"this access key is scoped to {scope.describe({})}: {method} {path[:200]} is for the "
        "whole organisation and needs a login or an access key without a scope"
    )
