"""The kubeconfig kubegate hands out for one cluster: pure, plain values in and out.

One cluster, one user and one context, all named after the cluster, with the context made
current, so the file works on its own (``kubectl --kubeconfig FILE``) and merges into an
existing config without clobbering other entries. The user carries a short-lived kube token,
not an exec plugin: whoever downloads the file from the portal needs no kubegate CLI.
"""

from __future__ import annotations

import base64

import yaml

CONTEXT_PREFIX = "kubegate-"


def entry_name(cluster_name: str) -> str:
    """The name of the cluster, user and context entries for a cluster (``kubegate-<name>``)."""
    return f"{CONTEXT_PREFIX}{cluster_name}"


def build_kubeconfig(
    *, name: str, server: str, ca_pem: bytes | None, token: str, namespace: str | None = None
) -> dict[str, object]:
    """A complete ``kind: Config`` document for one cluster.

    ``name`` is the cluster's name (entries are called ``kubegate-<name>``), ``server`` the
    proxy URL of the cluster, ``ca_pem`` the CA to trust (None: the system's trust store, e.g.
    plain HTTP or a publicly trusted certificate), ``token`` the bearer token and
    ``namespace`` the context's default namespace, if any.
    """
    entry = entry_name(name)
    cluster: dict[str, object] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode("ascii")
    context: dict[str, object] = {"cluster": entry, "user": entry}
    if namespace is not None:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": entry, "cluster": cluster}],
        "users": [{"name": entry, "user": {"token": token}}],
        "contexts": [{"name": entry, "context": context}],
        "current-context": entry,
        "preferences": {},
    }


def render_kubeconfig(config: dict[str, object]) -> str:
    """The document as YAML, keys in kubectl's own order."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
