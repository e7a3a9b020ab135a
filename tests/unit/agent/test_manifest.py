from __future__ import annotations

import json
from typing import Any

import yaml

from kubegate.agent.desired import MANAGED_BY_LABEL
from kubegate.agent.manifest import agent_cluster_role_rules, install_manifest, render_yaml

TOKEN = "kg_agent_s3cr3t-token-value"
CA = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"
RBAC = "rbac.authorization.k8s.io"


def manifest(ca_pem: str | None = CA, **kwargs: str) -> list[dict[str, Any]]:
    return install_manifest(
        cluster_name="prod-eu",
        server_url="https://kubegate.example.com",
        cluster_token=TOKEN,
        ca_pem=ca_pem,
        **kwargs,
    )


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = {o["kind"]: o for o in objects}
    assert len(kinds) == len(objects), "one object per kind"
    return kinds


def agent_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = by_kind(objects)["Deployment"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def test_the_agent_role_is_exactly_the_least_privilege_set() -> None:
    bind_verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
    assert agent_cluster_role_rules() == [
        {
            "apiGroups": [RBAC],
            "resources": ["rolebindings", "clusterrolebindings"],
            "verbs": bind_verbs,
        },
        {
            "apiGroups": [RBAC],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": ["view", "edit", "admin", "cluster-admin"],
        },
        {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]},
        {
            "apiGroups": [""],
            "resources": ["groups"],
            "verbs": ["impersonate"],
            "resourceNames": ["kubegate:authenticated"],
        },
        # Managed service accounts: made and watched, their bound tokens, acting as one.
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": bind_verbs},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
    ]
    assert by_kind(manifest())["ClusterRole"]["rules"] == agent_cluster_role_rules()


def test_no_rule_has_a_wildcard_or_touches_secrets() -> None:
    rules = agent_cluster_role_rules()
    assert not any("*" in s for s in strings_in(rules))
    assert not any("secrets" in rule["resources"] for rule in rules)
    assert not any({"escalate", "impersonate"} & set(r["verbs"]) for r in rules[:2])


def test_the_role_is_bound_to_the_agent_service_account_in_the_chosen_namespace() -> None:
    kinds = by_kind(manifest(namespace="ops"))
    assert kinds["Namespace"]["metadata"]["name"] == "ops"
    assert kinds["ServiceAccount"]["metadata"] == {
        "name": "kubegate-agent",
        "namespace": "ops",
        "labels": {
            "app.kubernetes.io/name": "kubegate-agent",
            "app.kubernetes.io/part-of": "kubegate",
        },
    }
    binding = kinds["ClusterRoleBinding"]
    assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": "kubegate-agent"}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kubegate-agent", "namespace": "ops"}
    ]
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kubegate-agent"


def test_no_installed_object_looks_like_a_binding_the_agent_reconciles() -> None:
    # The agent deletes owned bindings outside its desired set, its own included.
    for obj in manifest():
        assert MANAGED_BY_LABEL not in obj["metadata"].get("labels", {}), obj["kind"]


def test_the_token_appears_only_in_the_secret() -> None:
    objects = manifest()
    holders = [o["kind"] for o in objects if any(TOKEN in s for s in strings_in(o))]
    assert holders == ["Secret"]
    assert by_kind(objects)["Secret"]["stringData"] == {"cluster-token": TOKEN, "ca.crt": CA}
    token_env = agent_container(objects)["env"][0]
    assert token_env == {
        "name": "KUBEGATE_CLUSTER_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "kubegate-agent", "key": "cluster-token"}},
    }


def test_the_agent_dials_the_server_and_trusts_the_mounted_ca() -> None:
    objects = manifest(user_prefix="sso:", image="registry.example.com/kubegate:1.2.3")
    container = agent_container(objects)
    assert container["image"] == "registry.example.com/kubegate:1.2.3"
    assert container["command"] == [
        *("kubegate", "agent", "--server", "https://kubegate.example.com"),
        *("--ca-file", "/etc/kubegate/tls/ca.crt"),
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBEGATE_CLUSTER_NAME"] == "prod-eu"
    assert env["KUBEGATE_USER_PREFIX"] == "sso:"
    assert {"name": "server-ca", "mountPath": "/etc/kubegate/tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    volumes = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["volumes"]
    ca_volume = next(v for v in volumes if v["name"] == "server-ca")
    assert ca_volume["secret"] == {
        "secretName": "kubegate-agent",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }


def test_without_a_ca_there_is_no_ca_file_and_no_ca_in_the_secret() -> None:
    objects = manifest(ca_pem=None)
    assert "--ca-file" not in agent_container(objects)["command"]
    assert by_kind(objects)["Secret"]["stringData"] == {"cluster-token": TOKEN}
    volumes = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert [v["name"] for v in volumes] == ["tmp"]


def test_the_agent_runs_unprivileged_with_one_replica_and_bounded_resources() -> None:
    deployment = by_kind(manifest())["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    container = agent_container(manifest())
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(container["resources"]) == {"requests", "limits"}
    assert (
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        == (deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"])
    )


def test_rendered_yaml_parses_back_to_the_same_objects() -> None:
    objects = manifest()
    text = render_yaml(objects)
    assert list(yaml.safe_load_all(text)) == objects
    assert "&id" not in text and "*id" not in text  # no anchors between objects
    assert "ca.crt: |" in text  # the certificate stays readable
    assert json.loads(json.dumps(objects)) == objects  # plain JSON values only
