"""Metrics of a real deployment: a server process, an agent process, real kubectl.

The server's ``/metrics`` (token-protected) and the agent's (``--metrics-address``) are
scraped over HTTP and read with prometheus-client's own parser; the counters follow a grant
the agent reconciles and kubectl's requests through the gateway.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client

from testenv.controlplane import Credentials
from testenv.processes import free_port
from testenv.system import kubectl_binaries
from tests.fixtures.gateway import Deployment, running_deployment, wait_for
from tests.fixtures.kube import Kubectl
from tests.fixtures.metrics import Scrape, scrape

pytestmark = pytest.mark.e2e

METRICS_TOKEN = "e2e-metrics-token-0123456789abcdef"


@pytest.fixture
def metered(
    tmp_path: Path, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[tuple[Deployment, str]]:
    """A deployment whose server wants the metrics token and whose agent serves metrics:
    (the deployment, the agent's metrics URL)."""
    port = free_port()
    with running_deployment(
        tmp_path,
        kube_credentials,
        kube_admin,
        server_env={"KUBEGATE_METRICS_TOKEN": METRICS_TOKEN},
        agent_env={"KUBEGATE_METRICS_ADDRESS": f"127.0.0.1:{port}"},
    ) as deployment:
        yield deployment, f"http://127.0.0.1:{port}/metrics"


def server_scrape(deployment: Deployment) -> Scrape:
    server = deployment.server
    return scrape(
        f"{server.url}/metrics",
        METRICS_TOKEN,
        verify=ssl.create_default_context(cafile=str(server.ca_file)),
    )


def test_reconcile_passes_and_kubectl_through_the_gateway_move_the_counters(
    metered: tuple[Deployment, str], namespace: str, tmp_path: Path
) -> None:
    deployment, agent_metrics = metered
    agent_before = scrape(agent_metrics)
    assert agent_before.value("kubegate_agent_tunnel_connected") == 1
    assert agent_before.value("kubegate_agent_tunnel_reconnects_total") == 0

    user = deployment.kube_user(tmp_path, "view", namespace)  # waits for "applied"
    agent_after = wait_for(
        lambda: (
            s
            if (s := scrape(agent_metrics)).value("kubegate_agent_reconcile_passes_total")
            > agent_before.value("kubegate_agent_reconcile_passes_total")
            else None
        ),
        what="a reconcile pass to be counted",
    )
    assert agent_after.value("kubegate_agent_reconcile_duration_seconds_count") == (
        agent_after.value("kubegate_agent_reconcile_passes_total")
    )
    assert agent_after.value("kubegate_agent_reconcile_failures_total") == 0

    newest = max(kubectl_binaries())
    kubectl = Kubectl(newest, kubectl_binaries()[newest])
    before = server_scrape(deployment)
    cluster = deployment.cluster_id
    for _ in range(2):
        result = kubectl.run("get", "pods", "-n", namespace, kubeconfig=user.kubeconfig)
        assert result.returncode == 0, result.stderr
    denied = kubectl.run("get", "pods", "-n", "kube-system", kubeconfig=user.kubeconfig)
    assert denied.returncode != 0
    after = server_scrape(deployment)

    def moved(sample: str, **labels: str) -> float:
        return after.value(sample, **labels) - before.value(sample, **labels)

    assert moved("kubegate_proxy_requests_total", cluster=cluster, verb="list", code="200") >= 2
    assert moved("kubegate_proxy_requests_total", cluster=cluster, verb="list", code="403") >= 1
    assert moved("kubegate_proxy_request_duration_seconds_count", cluster=cluster, verb="list") >= 3
    assert after.value("kubegate_kube_token_mints_total") >= 1  # the kubeconfig's token
    assert after.value("kubegate_tunnels_connected") == 1
    assert after.value("kubegate_grants", status="applied") >= 1
    assert user.email not in str(after.families)


def test_the_server_refuses_metrics_without_its_token(metered: tuple[Deployment, str]) -> None:
    deployment, _ = metered
    with deployment.api() as client:  # the admin's API token is not the metrics token
        assert client.get("/metrics").status_code == 401
