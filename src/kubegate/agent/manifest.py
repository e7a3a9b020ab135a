"""The objects that install the agent in a cluster, as plain manifests: pure.

The agent's ClusterRole is the least privilege that lets it do its job (DESIGN.md §6, §8):
manage RoleBindings and ClusterRoleBindings, ``bind`` only the four built-in ClusterRoles a
grant can name, impersonate users plus the one kubegate group, and for managed service
accounts manage ServiceAccounts, mint their bound tokens and impersonate them. It can read no
Secrets: its cluster token reaches it as an environment variable the kubelet fills in from
the Secret, and it mints ServiceAccount tokens with the TokenRequest API, never from Secrets.

None of these objects carries the ``app.kubernetes.io/managed-by=kubegate`` label: that label
marks the bindings the agent reconciles, and the agent deletes every one of those that is not
in its desired set, which would include its own ClusterRoleBinding.
"""

from __future__ import annotations

from typing import Any

import yaml

from kubegate import __version__
from kubegate.agent.desired import DEFAULT_USER_PREFIX, RBAC_GROUP
from kubegate.domain.access import Role

Manifest = dict[str, Any]

AGENT_NAME = "kubegate-agent"
DEFAULT_NAMESPACE = "kubegate-system"
DEFAULT_IMAGE = f"kubegate:{__version__}"
"""The image built from this repository's Dockerfile, tagged with the package version."""
IMPERSONATED_GROUP = "kubegate:authenticated"
"""The one group the agent sends with every impersonated request."""
CA_DIR = "/etc/kubegate/tls"
CA_KEY = "ca.crt"
TOKEN_KEY = "cluster-token"
LABELS = {"app.kubernetes.io/name": AGENT_NAME, "app.kubernetes.io/part-of": "kubegate"}
_BINDING_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]


def agent_cluster_role_rules() -> list[Manifest]:
    """The agent's RBAC rules: exactly what reconciling grants and service accounts, minting
    their tokens and proxying requests need (``docs/agent.md`` explains each)."""
    return [
        {
            "apiGroups": [RBAC_GROUP],
            "resources": ["rolebindings", "clusterrolebindings"],
            "verbs": list(_BINDING_VERBS),
        },
        {
            # Creating a binding to a role needs either every permission in it or `bind` on
            # it; `bind` by name lets the agent hand out these four roles and nothing else.
            "apiGroups": [RBAC_GROUP],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": [role.value for role in Role],
        },
        {
            # Usernames are the users' emails (behind the prefix), which no list can name in
            # advance, so this rule cannot carry resourceNames. Kubernetes matches names
            # exactly (no prefixes), so a stolen agent token can impersonate any user name,
            # including ones bound by name elsewhere in the cluster: guard it like an admin's.
            "apiGroups": [""],
            "resources": ["users"],
            "verbs": ["impersonate"],
        },
        {
            # Never without resourceNames: that would allow impersonating system:masters.
            "apiGroups": [""],
            "resources": ["groups"],
            "verbs": ["impersonate"],
            "resourceNames": [IMPERSONATED_GROUP],
        },
        {
            # Managed ServiceAccounts are made, drift-repaired (watched) and deleted like
            # grants' bindings, and the break-glass account is made on demand. Their names are
            # the admins' choice, so no resourceNames; the agent changes only accounts with
            # its label (and its own break-glass one).
            "apiGroups": [""],
            "resources": ["serviceaccounts"],
            "verbs": list(_BINDING_VERBS),
        },
        {
            # Bound tokens (the TokenRequest API) for kubeconfigs that go straight to the
            # apiserver: short-lived, and dead with their ServiceAccount. Instead of reading
            # token Secrets, which this role still cannot.
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "verbs": ["create"],
        },
        {
            # A managed account's kube token through the gateway: the agent acts as
            # system:serviceaccount:<namespace>:<name>, which Kubernetes authorises as
            # impersonate on that ServiceAccount. No resourceNames (names are not known in
            # advance); the agent itself refuses accounts outside its desired set.
            "apiGroups": [""],
            "resources": ["serviceaccounts"],
            "verbs": ["impersonate"],
        },
    ]


def install_manifest(
    *,
    cluster_name: str,
    server_url: str,
    cluster_token: str,
    ca_pem: str | None,
    image: str = DEFAULT_IMAGE,
    namespace: str = DEFAULT_NAMESPACE,
    user_prefix: str = DEFAULT_USER_PREFIX,
) -> list[Manifest]:
    """Everything ``kubectl apply`` needs to run the agent of ``cluster_name``, in apply order.

    ``server_url`` is the kubegate server the agent dials; ``ca_pem`` the CA that signed its
    certificate when the cluster does not already trust it. ``cluster_token`` lands in the
    Secret only.
    """
    secret_data = {TOKEN_KEY: cluster_token}
    if ca_pem is not None:
        secret_data[CA_KEY] = ca_pem
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": "kubegate"}},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(namespace)},
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": AGENT_NAME, "labels": dict(LABELS)},
            "rules": agent_cluster_role_rules(),
        },
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": AGENT_NAME, "labels": dict(LABELS)},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": AGENT_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": AGENT_NAME, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _metadata(namespace),
            "type": "Opaque",
            "stringData": secret_data,
        },
        _deployment(
            namespace,
            cluster_name=cluster_name,
            server_url=server_url,
            with_ca=ca_pem is not None,
            image=image,
            user_prefix=user_prefix,
        ),
    ]


def _metadata(namespace: str) -> Manifest:
    return {"name": AGENT_NAME, "namespace": namespace, "labels": dict(LABELS)}


def _deployment(
    namespace: str,
    *,
    cluster_name: str,
    server_url: str,
    with_ca: bool,
    image: str,
    user_prefix: str,
) -> Manifest:
    command = ["kubegate", "agent", "--server", server_url]
    volumes: list[Manifest] = [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    mounts: list[Manifest] = [{"name": "tmp", "mountPath": "/tmp"}]
    if with_ca:
        command += ["--ca-file", f"{CA_DIR}/{CA_KEY}"]
        volumes.append(
            {
                "name": "server-ca",
                "secret": {"secretName": AGENT_NAME, "items": [{"key": CA_KEY, "path": CA_KEY}]},
            }
        )
        mounts.append({"name": "server-ca", "mountPath": CA_DIR, "readOnly": True})
    container: Manifest = {
        "name": "agent",
        "image": image,
        "command": command,
        "env": [
            {
                "name": "KUBEGATE_CLUSTER_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": AGENT_NAME, "key": TOKEN_KEY}},
            },
            {"name": "KUBEGATE_CLUSTER_NAME", "value": cluster_name},
            {"name": "KUBEGATE_USER_PREFIX", "value": user_prefix},
        ],
        "volumeMounts": mounts,
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(namespace),
        "spec": {
            "replicas": 1,
            # One agent per cluster at a time: never two tunnels reconciling side by side.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": AGENT_NAME}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": AGENT_NAME,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


class _Dumper(yaml.SafeDumper):
    """Safe YAML that writes multi-line strings (a CA certificate) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # no &id001 anchors: every object reads on its own


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render_yaml(objects: list[Manifest]) -> str:
    """``objects`` as one multi-document YAML stream, ready for ``kubectl apply -f -``."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
