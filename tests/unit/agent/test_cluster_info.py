"""What the agent reports about its cluster in its hello (pure, files in tmp_path)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from lightkube.config.kubeconfig import KubeConfig, SingleConfig

from kubegate.agent.cluster_info import agent_namespace, cluster_info, trusted_ca_pem
from kubegate.errors import KubegateError

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def config(**cluster: str) -> SingleConfig:
    single = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443", **cluster}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    ).get()
    assert single is not None
    return single


def test_outside_a_cluster_the_kubeconfigs_server_and_inline_ca_are_reported() -> None:
    data = base64.b64encode(PEM.encode()).decode()
    single = config(**{"certificate-authority-data": data})
    info = cluster_info(
        single, in_cluster=False, namespace="kube-system", cluster_name="prod", user_prefix="k:"
    )
    assert info == {
        "cluster_name": "prod",
        "user_prefix": "k:",
        "namespace": "kube-system",
        "api_server_url": "https://10.0.0.1:6443",
        "api_server_ca": PEM,
    }


def test_in_a_cluster_no_address_is_reported_unless_the_operator_gives_one() -> None:
    single = config()
    assert "api_server_url" not in cluster_info(single, in_cluster=True, namespace="kubegate")
    given = cluster_info(
        single, in_cluster=True, namespace="kubegate", api_server_url="https://k8s.example:443"
    )
    assert given["api_server_url"] == "https://k8s.example:443"
    assert "api_server_ca" not in given  # no CA in that kubeconfig: none reported


def test_a_ca_file_is_read_and_an_unreadable_one_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text(PEM)
    assert trusted_ca_pem(config(**{"certificate-authority": str(tmp_path / "ca.crt")})) == PEM
    with pytest.raises(KubegateError, match="CA certificate"):
        trusted_ca_pem(config(**{"certificate-authority": str(tmp_path / "missing.crt")}))


def test_the_namespace_is_the_option_else_the_pods_else_kube_system(tmp_path: Path) -> None:
    (tmp_path / "namespace").write_text("kubegate-system\n")
    assert agent_namespace("ops", in_cluster=True, service_account_dir=tmp_path) == "ops"
    assert agent_namespace(None, in_cluster=True, service_account_dir=tmp_path) == "kubegate-system"
    assert agent_namespace(None, in_cluster=False, service_account_dir=tmp_path) == "kube-system"
    with pytest.raises(KubegateError, match="namespace"):
        agent_namespace(None, in_cluster=True, service_account_dir=tmp_path / "absent")
