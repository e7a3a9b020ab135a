"""The kubeconfig kubegate writes for one cluster: plain values in, a Config document out."""

from __future__ import annotations

import base64

import yaml

from kubegate.kube.kubeconfig import build_kubeconfig, entry_name, render_kubeconfig

CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SERVER = "https://gw.example.com:6443/clusters/0123456789abcdef0123456789abcdef"


def test_kubeconfig_names_cluster_user_and_context_after_the_cluster_and_makes_it_current() -> None:
    config = build_kubeconfig(name="prod-eu", server=SERVER, ca_pem=CA_PEM, token="kg_kube_x")
    assert config == {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubegate-prod-eu",
                "cluster": {
                    "server": SERVER,
                    "certificate-authority-data": base64.b64encode(CA_PEM).decode(),
                },
            }
        ],
        "users": [{"name": "kubegate-prod-eu", "user": {"token": "kg_kube_x"}}],
        "contexts": [
            {
                "name": "kubegate-prod-eu",
                "context": {"cluster": "kubegate-prod-eu", "user": "kubegate-prod-eu"},
            }
        ],
        "current-context": "kubegate-prod-eu",
        "preferences": {},
    }


def test_kubeconfig_without_a_ca_trusts_the_system_store() -> None:
    server = "http://127.0.0.1:6443/clusters/x"
    config = build_kubeconfig(name="dev", server=server, ca_pem=None, token="t")
    assert config["clusters"] == [{"name": "kubegate-dev", "cluster": {"server": server}}]


def test_the_context_has_no_namespace() -> None:
    config = build_kubeconfig(name="dev", server=SERVER, ca_pem=None, token="t")
    assert config["contexts"] == [
        {"name": "kubegate-dev", "context": {"cluster": "kubegate-dev", "user": "kubegate-dev"}}
    ]


def test_rendered_yaml_round_trips_and_keeps_kubectls_key_order() -> None:
    config = build_kubeconfig(name="prod", server=SERVER, ca_pem=CA_PEM, token="kg_kube_x")
    text = render_kubeconfig(config)
    assert yaml.safe_load(text) == config
    assert text.startswith("apiVersion: v1\nkind: Config\nclusters:\n")


def test_entry_names_carry_the_kubegate_prefix() -> None:
    assert entry_name("prod") == "kubegate-prod"
