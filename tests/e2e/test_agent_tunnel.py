"""The agent over its tunnel: a real server process, a real agent process, a real apiserver.

Grants made through the REST API turn into RBAC that kube-apiserver enforces, and the
cluster's online state and grant statuses follow the agent's connection.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from testenv.controlplane import Credentials
from testenv.system import kubectl_binaries
from tests.fixtures.gateway import Deployment, wait_for

pytestmark = pytest.mark.e2e


def can_i(credentials: Credentials, email: str, *args: str) -> bool:
    kubectl = kubectl_binaries()[max(kubectl_binaries())]
    result = subprocess.run(
        [
            str(kubectl),
            f"--kubeconfig={credentials.kubeconfig}",
            "auth",
            "can-i",
            *args,
            f"--as=kubegate:{email}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def test_cluster_is_online_with_last_seen_while_its_agent_is_connected(
    deployment: Deployment,
) -> None:
    state = deployment.cluster_state()
    assert state["online"] is True
    assert state["last_seen_at"] is not None


def test_namespace_grant_is_applied_and_rbac_follows_it(
    deployment: Deployment, kube_credentials: Credentials, namespace: str
) -> None:
    email = "ana@example.com"
    assert not can_i(kube_credentials, email, "list", "pods", "-n", namespace)
    grant = deployment.grant(email, "view", namespace)
    deployment.wait_status(grant["id"], "applied")
    assert can_i(kube_credentials, email, "list", "pods", "-n", namespace)
    assert not can_i(kube_credentials, email, "create", "pods", "-n", namespace)
    assert not can_i(kube_credentials, email, "list", "pods", "-n", "default")
    assert not can_i(kube_credentials, email, "list", "pods", "--all-namespaces")

    deployment.delete_grant(grant["id"])
    wait_for(
        lambda: not can_i(kube_credentials, email, "list", "pods", "-n", namespace),
        what="access to end after the grant is deleted",
    )
    assert f"{namespace}/kubegate-{grant['id']}" not in deployment.owned_bindings()


def test_cluster_grant_allows_every_namespace(
    deployment: Deployment, kube_credentials: Credentials
) -> None:
    email = "ops@example.com"
    grant = deployment.grant(email, "edit")
    deployment.wait_status(grant["id"], "applied")
    assert can_i(kube_credentials, email, "create", "deployments", "--all-namespaces")
    assert not can_i(kube_credentials, email, "create", "clusterroles")
    assert deployment.owned_bindings() == [f"/kubegate-{grant['id']}"]


def test_killed_agent_goes_offline_and_a_grant_made_meanwhile_applies_on_return(
    deployment: Deployment, kube_credentials: Credentials, namespace: str
) -> None:
    deployment.agent.kill()
    deployment.wait_online(False, timeout=10)
    grant = deployment.grant("late@example.com", "edit", namespace)
    assert grant["status"] == "cluster_offline"
    assert deployment.grants()[grant["id"]]["status"] == "cluster_offline"

    deployment.agent.start()
    deployment.wait_online(True)
    deployment.wait_status(grant["id"], "applied")
    assert can_i(kube_credentials, "late@example.com", "create", "pods", "-n", namespace)


def test_frozen_agent_is_found_dead_by_the_heartbeat_within_ten_seconds(
    deployment: Deployment,
) -> None:
    # SIGSTOP keeps the TCP connection open: only the missing PING answers can tell.
    deployment.agent.freeze()
    try:
        started = time.monotonic()
        deployment.wait_online(False, timeout=12)
        found_after = time.monotonic() - started
    finally:
        deployment.agent.thaw()
    assert found_after <= 10.5, f"a frozen agent was noticed only after {found_after:.1f} s"
    deployment.wait_online(True)


def test_server_restart_loses_and_duplicates_nothing(
    deployment: Deployment, namespace: str
) -> None:
    grants = [deployment.grant(f"u{i}@example.com", "view", namespace) for i in range(5)]
    for grant in grants:
        deployment.wait_status(grant["id"], "applied")
    before = deployment.owned_bindings()
    assert len(before) == 5

    deployment.server.stop()
    deployment.server.start()
    deployment.wait_online(True, timeout=40)
    later = deployment.grant("after@example.com", "view", namespace)
    deployment.wait_status(later["id"], "applied")
    for grant in grants:
        assert deployment.grants()[grant["id"]]["status"] == "applied"
    assert deployment.owned_bindings() == sorted([*before, f"{namespace}/kubegate-{later['id']}"])
