"""Service-account kubeconfigs and the admin kubeconfig through real kubectl.

A real ``kubegate server`` and agent against the real apiserver: an admin makes a service
account with the CLI (``cluster serviceaccount create``), takes both kinds of kubeconfig
(through the gateway, and ``--direct`` with a bound token), and kubectl does with each what
the role allows and nothing else; ``delete`` ends both. The direct kubeconfig and the admin
(break-glass) kubeconfig keep working while the kubegate server is stopped.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ServiceAccount as KubeServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

from kubegate.agent.tokens import BREAK_GLASS_NAME
from testenv.controlplane import Credentials
from tests.fixtures.cli import Cli
from tests.fixtures.gateway import Deployment, running_deployment, wait_for
from tests.fixtures.kube import Kubectl

pytestmark = pytest.mark.e2e


@pytest.fixture
def gateway(
    tmp_path: Path, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[Deployment]:
    with running_deployment(tmp_path / "gateway", kube_credentials, kube_admin) as deployment:
        yield deployment
        # The service accounts go before the deployment checks kubegate left nothing behind.
        for account in deployment.server.call(
            deployment.token, "GET", f"/api/v1/clusters/{deployment.cluster_id}/service-accounts"
        )["items"]:
            deployment.server.call(
                deployment.token,
                "DELETE",
                f"/api/v1/clusters/{deployment.cluster_id}/service-accounts/{account['id']}",
            )
    # The break-glass account is the agent's (kube-system outside a cluster), made on demand
    # and never reconciled away: the shared control plane must not keep a cluster admin.
    with contextlib.suppress(ApiError):
        kube_admin.delete(ClusterRoleBinding, BREAK_GLASS_NAME)
    with contextlib.suppress(ApiError):
        kube_admin.delete(KubeServiceAccount, BREAK_GLASS_NAME, namespace="kube-system")


@pytest.fixture
def admin(gateway: Deployment, tmp_path: Path) -> Cli:
    """The organisation's admin, logged in with the CLI, the deployment's cluster selected."""
    server = gateway.server
    cli = Cli(tmp_path / "admin")
    cli.ok(
        "login", server.url, "--email", server.admin_email, "--password-stdin",
        "--certificate-authority", str(server.ca_file), input=server.admin_password,
    )  # fmt: skip
    cli.ok("cluster", "select", gateway.cluster["name"])
    return cli


def kubectl_ok(kubectl: Kubectl, kubeconfig: Path, *args: str) -> str:
    result = kubectl.run(*args, kubeconfig=kubeconfig)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def forbidden(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "forbidden" in result.stderr.lower(), result.stderr
    return result.stderr


def can_i(kubectl: Kubectl, kubeconfig: Path, *args: str) -> str:
    """``kubectl auth can-i`` answers yes or no (exit 0 or 1)."""
    result = kubectl.run("auth", "can-i", *args, kubeconfig=kubeconfig)
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.strip()


def test_both_kubeconfigs_act_as_the_account_within_its_role_and_die_with_it(
    kubectl: Kubectl,
    gateway: Deployment,
    admin: Cli,
    namespace: str,
    kube_admin: Client,
    tmp_path: Path,
) -> None:
    created = admin.ok(
        "cluster", "serviceaccount", "create", "ci-deployer", "--namespace", namespace,
        "--role", "edit",
    )  # fmt: skip
    assert f"Created service account {namespace}/ci-deployer" in created
    # The agent made a real ServiceAccount, labelled as kubegate's.
    account = kube_admin.get(KubeServiceAccount, "ci-deployer", namespace=namespace)
    assert account.metadata is not None and account.metadata.labels is not None
    assert account.metadata.labels["app.kubernetes.io/managed-by"] == "kubegate"

    through = tmp_path / "through.kubeconfig"
    direct = tmp_path / "direct.kubeconfig"
    admin.ok("cluster", "serviceaccount", "kubeconfig", "ci-deployer", "-f", str(through))
    admin.ok(
        "cluster", "serviceaccount", "kubeconfig", "ci-deployer", "--direct", "--duration", "1h",
        "-f", str(direct),
    )  # fmt: skip
    assert oct(through.stat().st_mode & 0o777) == "0o600"
    username = f"system:serviceaccount:{namespace}:ci-deployer"
    for kubeconfig in (through, direct):
        assert username in kubectl_ok(kubectl, kubeconfig, "auth", "whoami")
        # edit in its namespace (the context's default) ...
        kubectl_ok(kubectl, kubeconfig, "create", "configmap", f"c-{kubeconfig.stem}")
        assert f"c-{kubeconfig.stem}" in kubectl_ok(kubectl, kubeconfig, "get", "configmaps")
        assert can_i(kubectl, kubeconfig, "create", "deployments") == "yes"
        # ... and nothing else.
        forbidden(kubectl.run("get", "pods", "-n", "kube-system", kubeconfig=kubeconfig))
        forbidden(kubectl.run("get", "nodes", kubeconfig=kubeconfig))
        assert can_i(kubectl, kubeconfig, "create", "rolebindings") == "no"

    admin.ok("cluster", "serviceaccount", "delete", "ci-deployer")
    # Through the gateway: at once.
    gone = kubectl.run("get", "configmaps", kubeconfig=through)
    assert gone.returncode != 0, gone.stdout
    assert "the kube token's service account was deleted from kubegate" in gone.stderr

    # Direct: once the agent has deleted the ServiceAccount its bound token dies with it,
    # the apiserver's 401 as kubectl words it (Forbidden for a moment before, while only the
    # binding is gone).
    def refused() -> bool:
        result = kubectl.run("get", "configmaps", kubeconfig=direct)
        return result.returncode != 0 and "must be logged in" in result.stderr

    wait_for(refused, what="the direct token to be refused as unauthenticated")


def test_the_direct_and_admin_kubeconfigs_work_with_the_kubegate_server_stopped(
    kubectl: Kubectl, gateway: Deployment, admin: Cli, namespace: str, tmp_path: Path
) -> None:
    admin.ok(
        "cluster", "serviceaccount", "create", "reader", "--namespace", namespace,
        "--role", "view",
    )  # fmt: skip
    direct = tmp_path / "direct.kubeconfig"
    admin.ok("cluster", "serviceaccount", "kubeconfig", "reader", "--direct", "-f", str(direct))
    # The admin kubeconfig needs cluster-admin on the whole cluster: the admin holds it here.
    grant = gateway.grant(gateway.server.admin_email, "cluster-admin", None)
    gateway.wait_status(str(grant["id"]), "applied")
    break_glass = tmp_path / "admin.kubeconfig"
    issued = admin.run("cluster", "admin-kubeconfig", "-f", str(break_glass))
    assert issued.returncode == 0, issued.stderr
    assert "This issuance is in the audit log" in issued.stderr

    gateway.server.stop()
    try:
        kubectl_ok(kubectl, direct, "get", "pods")  # the view role reads its namespace
        assert can_i(kubectl, break_glass, "*", "*", "--all-namespaces") == "yes"
        assert "kube-system" in kubectl_ok(kubectl, break_glass, "get", "namespaces")
        forbidden(kubectl.run("create", "configmap", "not-for-view", kubeconfig=direct))
    finally:
        gateway.server.start()
        gateway.wait_online()

    # The issuance is in the audit log and in the list of admin kubeconfigs.
    events = gateway.server.call(
        gateway.token, "GET", "/api/v1/audit?action=cluster.admin_kubeconfig"
    )["items"]
    assert [(e["result"], e["actor_email"]) for e in events] == [
        ("success", gateway.server.admin_email)
    ]
    listed = admin.ok("cluster", "admin-kubeconfig", "--issued")
    assert gateway.server.admin_email in listed and "success" in listed


def test_members_and_admins_without_cluster_admin_get_403_with_the_reason(
    gateway: Deployment, admin: Cli, tmp_path: Path
) -> None:
    refused = admin.run("cluster", "admin-kubeconfig", "-f", str(tmp_path / "x"))
    assert refused.returncode == 1
    assert "only for organisation admins who hold cluster-admin" in refused.stderr
    email = f"m-{uuid.uuid4().hex[:8]}@example.com"
    password = uuid.uuid4().hex
    gateway.server.add_member(gateway.token, email, password)
    gateway.grant(email, "cluster-admin", None)
    member = Cli(tmp_path / "member")
    member.ok(
        "login", gateway.server.url, "--email", email, "--password-stdin",
        "--certificate-authority", str(gateway.server.ca_file), input=password,
    )  # fmt: skip
    denied = member.run(
        "cluster",
        "admin-kubeconfig",
        "--cluster",
        gateway.cluster["name"],
        "-f",
        str(tmp_path / "y"),
    )
    assert denied.returncode == 1
    assert "only organisation admins can take the admin kubeconfig" in denied.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
