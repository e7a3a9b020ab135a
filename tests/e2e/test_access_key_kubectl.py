"""A namespace-scoped access key through real kubectl: what it may do, what it may not.

One ``kubegate server`` and agent serve the module. Each test makes a creator with a
``cluster-admin`` grant on the whole cluster (so whatever is refused is refused by the key's
scope, not by RBAC), a key of theirs scoped to the test's namespace, and a robot: a
``kubegate`` home logged in with that key (``login --access-key-stdin``) with the context
``cluster kubeconfig add`` writes, used by both kubectl clients through the exec plugin.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Namespace

from testenv.controlplane import Credentials
from tests.fixtures.cli import Cli
from tests.fixtures.gateway import Deployment, running_deployment, wait_for
from tests.fixtures.kube import Kubectl, LineReader, MakePod, stop

pytestmark = pytest.mark.e2e

SCOPE = "this access key's scope (namespaces {namespace}) does not allow"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[Deployment]:
    with running_deployment(
        tmp_path_factory.mktemp("gateway"), kube_credentials, kube_admin
    ) as deployment:
        yield deployment


@pytest.fixture
def other_namespace(kube_admin: Client) -> Iterator[str]:
    """A second namespace, outside the key's scope."""
    name = f"o-{uuid.uuid4().hex[:10]}"
    kube_admin.create(Namespace.from_dict({"metadata": {"name": name}}))
    yield name
    kube_admin.delete(Namespace, name)


@dataclass
class Robot:
    """The creator (a person, logged in with a password) and their key's robot."""

    creator_email: str
    creator: Cli
    grant: dict[str, object]
    key: str
    robot: Cli
    namespace: str

    def kubectl(
        self, kubectl: Kubectl, *args: str, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return kubectl.run(
            *args, kubeconfig=kubeconfig or self.robot.kubeconfig, env=self.robot.env
        )

    def popen(self, kubectl: Kubectl, *args: str) -> subprocess.Popen[str]:
        return kubectl.popen(*args, kubeconfig=self.robot.kubeconfig, env=self.robot.env)


@pytest.fixture
def robot(gateway: Deployment, namespace: str, tmp_path: Path) -> Robot:
    email = f"u-{uuid.uuid4().hex[:10]}@example.com"
    password = uuid.uuid4().hex
    server = gateway.server
    server.add_member(gateway.token, email, password)
    grant = gateway.grant(email, "cluster-admin", None)
    gateway.wait_status(str(grant["id"]), "applied")
    creator = Cli(tmp_path / "creator")
    creator.ok(
        "login", server.url, "--email", email, "--password-stdin",
        "--certificate-authority", str(server.ca_file), input=password,
    )  # fmt: skip
    cluster = gateway.cluster["name"]
    key = creator.ok("access-key", "create", "robot", "--cluster", f"{cluster}:{namespace}").strip()
    robot = Cli(tmp_path / "robot")
    robot.ok(
        "login", server.url, "--access-key-stdin", "--certificate-authority", str(server.ca_file),
        input=key + "\n",
    )  # fmt: skip
    robot.ok("cluster", "kubeconfig", "add", "--cluster", cluster, "--use")
    return Robot(email, creator, grant, key, robot, namespace)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"kubectl failed ({result.returncode}): {result.stderr}"
    return result.stdout


def refused_by_scope(result: subprocess.CompletedProcess[str], namespace: str) -> str:
    """The command failed with the proxy's Status saying the key's scope is why."""
    assert result.returncode != 0, result.stdout
    assert "Forbidden" in result.stderr or "forbidden" in result.stderr, result.stderr
    assert SCOPE.format(namespace=namespace) in result.stderr, result.stderr
    return result.stderr


# --- inside the scope -----------------------------------------------------------------------


def raw(kubectl: Kubectl, gateway: Deployment, path: str) -> str:
    """The path for ``kubectl get --raw``: kubectl 1.32 takes it from the server's root, so
    the context's ``/clusters/<id>`` goes in front; 1.37 adds the context's path itself."""
    return f"/clusters/{gateway.cluster_id}{path}" if kubectl.version == "1.32" else path


def test_inside_its_namespace_the_key_gets_logs_execs_and_port_forwards(
    kubectl: Kubectl, gateway: Deployment, robot: Robot, namespace: str, make_pod: MakePod
) -> None:
    make_pod("web", log_lines=["hello from kwok"])
    assert "web" in ok(robot.kubectl(kubectl, "get", "pods", "-n", namespace))
    assert "hello from kwok" in ok(robot.kubectl(kubectl, "logs", "-n", namespace, "web"))
    echoed = ok(robot.kubectl(kubectl, "exec", "-n", namespace, "web", "--", "echo", "inside"))
    assert echoed == "inside\n"
    watch = ok(
        robot.kubectl(
            kubectl,
            "get",
            "--raw",
            raw(kubectl, gateway, f"/api/v1/namespaces/{namespace}/pods?watch=1&timeoutSeconds=1"),
        )
    )
    assert '"type":"ADDED"' in watch
    forward = robot.popen(kubectl, "port-forward", "-n", namespace, "pod/web", "0:8080")
    try:
        LineReader(forward).wait_for(r"Forwarding from 127\.0\.0\.1:(\d+) ->")
    finally:
        stop(forward)


# --- escapes --------------------------------------------------------------------------------


def test_another_namespace_is_refused(
    kubectl: Kubectl, robot: Robot, namespace: str, other_namespace: str
) -> None:
    stderr = refused_by_scope(
        robot.kubectl(kubectl, "get", "pods", "-n", other_namespace), namespace
    )
    assert f"list pods in namespace {other_namespace}" in stderr


def test_a_cluster_scoped_resource_is_refused(
    kubectl: Kubectl, robot: Robot, namespace: str
) -> None:
    stderr = refused_by_scope(robot.kubectl(kubectl, "get", "namespaces"), namespace)
    assert "list namespaces across all namespaces or cluster-wide" in stderr
    refused_by_scope(robot.kubectl(kubectl, "get", "clusterroles"), namespace)


def test_all_namespaces_is_refused(kubectl: Kubectl, robot: Robot, namespace: str) -> None:
    stderr = refused_by_scope(robot.kubectl(kubectl, "get", "pods", "--all-namespaces"), namespace)
    assert "list pods across all namespaces" in stderr


def test_a_watch_of_every_namespace_is_refused(
    kubectl: Kubectl, gateway: Deployment, robot: Robot, namespace: str
) -> None:
    stderr = refused_by_scope(
        robot.kubectl(kubectl, "get", "--raw", raw(kubectl, gateway, "/api/v1/watch/pods")),
        namespace,
    )
    assert "watch pods across all namespaces" in stderr


@pytest.mark.parametrize("transport", ["websocket", "spdy"])
def test_exec_into_another_namespace_is_refused(
    kubectl: Kubectl, robot: Robot, namespace: str, other_namespace: str, transport: str
) -> None:
    websockets = str(transport == "websocket").lower()
    result = kubectl.run(
        "exec", "-n", other_namespace, "web", "--", "true",
        kubeconfig=robot.robot.kubeconfig,
        env={**robot.robot.env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": websockets},
    )  # fmt: skip
    refused_by_scope(result, namespace)


def test_port_forward_into_another_namespace_is_refused(
    kubectl: Kubectl, robot: Robot, namespace: str, other_namespace: str
) -> None:
    result = robot.kubectl(kubectl, "port-forward", "-n", other_namespace, "pod/web", "0:8080")
    refused_by_scope(result, namespace)


def test_auth_can_i_list_in_another_namespace_is_refused_and_inside_answers(
    kubectl: Kubectl, robot: Robot, namespace: str, other_namespace: str
) -> None:
    refused_by_scope(
        robot.kubectl(kubectl, "auth", "can-i", "--list", "-n", other_namespace), namespace
    )
    listed = ok(robot.kubectl(kubectl, "auth", "can-i", "--list", "-n", namespace))
    assert "*.*" in listed or "pods" in listed, listed
    assert ok(robot.kubectl(kubectl, "auth", "can-i", "delete", "pods", "-n", namespace)) == "yes\n"
    refused_by_scope(
        robot.kubectl(kubectl, "auth", "can-i", "delete", "pods", "-n", other_namespace), namespace
    )


def test_another_cluster_is_refused_at_mint(
    kubectl: Kubectl, gateway: Deployment, robot: Robot, tmp_path: Path
) -> None:
    name = f"b-{uuid.uuid4().hex[:8]}"
    other = gateway.server.register_cluster(gateway.token, name)
    gateway.server.grant(gateway.token, other["id"], robot.creator_email, "cluster-admin", None)
    # The creator's own context for it, as `kubeconfig add` writes it, used by the robot.
    config = robot.creator.ok("cluster", "kubeconfig", "add", "--cluster", name, "--print")
    kubeconfig = tmp_path / "other.kubeconfig"
    kubeconfig.write_text(config)
    result = robot.kubectl(kubectl, "get", "pods", "-n", robot.namespace, kubeconfig=kubeconfig)
    assert result.returncode != 0
    assert f"this access key's scope does not include cluster {name}" in result.stderr


# --- lifecycle ------------------------------------------------------------------------------


def wait_closed(proc: subprocess.Popen[str], seconds: float, what: str) -> float:
    """Poll until ``proc`` ends, within ``seconds``; answers how long it took."""
    started = time.monotonic()
    wait_for(lambda: proc.poll() is not None or None, timeout=seconds, what=what)
    return time.monotonic() - started


def test_deleting_the_key_closes_its_logs_follow_within_a_second(
    kubectl: Kubectl, robot: Robot, namespace: str, make_pod: MakePod
) -> None:
    make_pod("web", log_lines=["first line"])
    follow = robot.popen(kubectl, "logs", "-f", "-n", namespace, "web")
    try:
        LineReader(follow).wait_for("^first line$")
        robot.creator.ok("access-key", "delete", "robot")
        wait_closed(follow, 1.0, "kubectl logs -f to end after the key was deleted")
    finally:
        stop(follow)
    # Its kube tokens are gone with it (kubectl still holds the cached one: refused).
    again = robot.kubectl(kubectl, "get", "pods", "-n", namespace)
    assert again.returncode != 0
    assert "unknown kube token" in again.stderr, again.stderr
    assert "not valid (deleted" in robot.robot.fails("cluster", "list")


def test_removing_the_creators_grant_cuts_the_key(
    kubectl: Kubectl, gateway: Deployment, robot: Robot, namespace: str, make_pod: MakePod
) -> None:
    make_pod("web", log_lines=["first line"])
    follow = robot.popen(kubectl, "logs", "-f", "-n", namespace, "web")
    try:
        LineReader(follow).wait_for("^first line$")
        gateway.delete_grant(str(robot.grant["id"]))
        wait_closed(follow, 5.0, "kubectl logs -f to end after the creator's grant went")
    finally:
        stop(follow)
    again = robot.kubectl(kubectl, "get", "pods", "-n", namespace)
    assert again.returncode != 0
    assert "You do not have access to this cluster" in again.stderr, again.stderr


def test_deactivating_the_creator_cuts_everything(
    kubectl: Kubectl, gateway: Deployment, robot: Robot, namespace: str, make_pod: MakePod
) -> None:
    make_pod("web", log_lines=["first line"])
    follow = robot.popen(kubectl, "logs", "-f", "-n", namespace, "web")
    try:
        LineReader(follow).wait_for("^first line$")
        users = gateway.server.call(gateway.token, "GET", "/api/v1/users?limit=200")["items"]
        [user] = [u for u in users if u["email"] == robot.creator_email]
        gateway.server.call(
            gateway.token, "PATCH", f"/api/v1/users/{user['id']}", {"is_active": False}
        )
        wait_closed(follow, 5.0, "kubectl logs -f to end after the creator was deactivated")
    finally:
        stop(follow)
    again = robot.kubectl(kubectl, "get", "pods", "-n", namespace)
    assert again.returncode != 0
    assert "unknown kube token" in again.stderr, again.stderr
    assert "deactivated" in robot.robot.fails("cluster", "list")


# --- CI -------------------------------------------------------------------------------------


def test_kubegate_access_key_in_ci_runs_kubectl_and_writes_nothing_of_kubegates(
    kubectl: Kubectl, gateway: Deployment, robot: Robot, namespace: str, tmp_path: Path
) -> None:
    server = gateway.server
    ci = Cli(
        tmp_path / "ci",
        env={
            "KUBEGATE_ACCESS_KEY": robot.key,
            "KUBEGATE_SERVER": server.url,
            "KUBEGATE_CA_FILE": str(server.ca_file),
        },
    )
    ci.ok("cluster", "kubeconfig", "add", "--cluster", gateway.cluster["name"], "--use")
    pods = kubectl.run("get", "configmaps", "-n", namespace, kubeconfig=ci.kubeconfig, env=ci.env)
    assert "kube-root-ca.crt" in ok(pods)
    refused_by_scope(kubectl.run("get", "nodes", kubeconfig=ci.kubeconfig, env=ci.env), namespace)
    written = [
        str(p) for root in (ci.home / ".config", ci.home / ".cache") if root.exists()
        for p in root.rglob("*")
    ]  # fmt: skip
    assert written == []
