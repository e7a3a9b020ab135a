"""The test control plane is real: kubectl 1.32 and 1.37 against kube-apiserver and kwok."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid

import pytest
from lightkube import Client
from lightkube.resources.rbac_authorization_v1 import RoleBinding

from testenv import components as c
from testenv.controlplane import Credentials, installed_binary
from tests.fixtures.kube import Kubectl, LineReader, MakePod, stop

pytestmark = pytest.mark.e2e


def test_kubectl_get_shows_the_running_kwok_pod(
    kubectl: Kubectl, kube_credentials: Credentials, namespace: str, make_pod: MakePod
) -> None:
    make_pod("web")
    result = kubectl.run(
        "get", "pods", "-n", namespace, "-o", "wide", kubeconfig=kube_credentials.kubeconfig
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^web\s+1/1\s+Running\s+.*kwok-node-0", result.stdout, re.M), result.stdout


def test_kubectl_version_shows_the_apiserver_as_the_release_it_is(
    kubectl: Kubectl, kube_credentials: Credentials
) -> None:
    result = kubectl.run("version", "-o", "json", kubeconfig=kube_credentials.kubeconfig)
    assert result.returncode == 0, result.stderr
    server = json.loads(result.stdout)["serverVersion"]
    major, minor, _ = c.KUBERNETES_VERSION.split(".")
    assert server["gitVersion"] == f"v{c.KUBERNETES_VERSION}", server
    assert (server["major"], server["minor"]) == (major, minor), server
    assert server["gitTreeState"] == "archive", server
    assert server["buildDate"] > "2020", server  # the release's date, not 1970
    if kubectl.version == "1.37":  # within the ±1 skew: nothing to warn about
        assert "WARNING" not in result.stderr, result.stderr


def test_the_control_plane_binaries_say_their_release_version() -> None:
    for component in (c.KUBE_APISERVER, c.KUBE_CONTROLLER_MANAGER):
        binary = installed_binary(c.default_cache_dir(), component)
        shown = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=True
        )
        assert shown.stdout.strip() == f"Kubernetes v{c.KUBERNETES_VERSION}", shown


def test_kubectl_logs_prints_the_container_log(
    kubectl: Kubectl, kube_credentials: Credentials, namespace: str, make_pod: MakePod
) -> None:
    make_pod("web", log_lines=["first line", "second line"])
    result = kubectl.run("logs", "-n", namespace, "web", kubeconfig=kube_credentials.kubeconfig)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["first line", "second line"]


def test_kubectl_logs_follow_sees_a_line_appended_after_it_started(
    kubectl: Kubectl, kube_credentials: Credentials, namespace: str, make_pod: MakePod
) -> None:
    pod = make_pod("web", log_lines=["before follow"])
    proc = kubectl.popen(
        "logs", "-f", "-n", namespace, "web", kubeconfig=kube_credentials.kubeconfig
    )
    try:
        reader = LineReader(proc)
        reader.wait_for("^before follow$")
        marker = f"appended {uuid.uuid4().hex}"
        pod.append_log(marker)
        reader.wait_for(f"^{marker}$")
    finally:
        stop(proc)


@pytest.mark.parametrize("transport", ["websocket", "spdy"])
def test_kubectl_exec_round_trips_stdin_and_propagates_the_exit_code(
    kubectl: Kubectl,
    kube_credentials: Credentials,
    namespace: str,
    make_pod: MakePod,
    transport: str,
) -> None:
    make_pod("web")
    payload = f"ping {uuid.uuid4().hex}\nsecond line\n"
    result = kubectl.run(
        *("exec", "-i", "-n", namespace, "web", "--", "sh", "-c", "cat; exit 3"),
        kubeconfig=kube_credentials.kubeconfig,
        input=payload,
        env={"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": str(transport == "websocket").lower()},
    )
    assert result.stdout == payload
    assert result.returncode == 3, result.stderr
    assert "exit code 3" in result.stderr


@pytest.mark.parametrize("transport", ["websocket", "spdy"])
def test_kubectl_port_forward_carries_bytes_both_ways(
    kubectl: Kubectl,
    kube_credentials: Credentials,
    namespace: str,
    make_pod: MakePod,
    transport: str,
) -> None:
    pod = make_pod("web")
    proc = kubectl.popen(
        *("port-forward", "-n", namespace, "pod/web", f":{pod.pod_port}"),
        kubeconfig=kube_credentials.kubeconfig,
        env={"KUBECTL_PORT_FORWARD_WEBSOCKETS": str(transport == "websocket").lower()},
    )
    try:
        match = LineReader(proc).wait_for(r"Forwarding from 127\.0\.0\.1:(\d+) ->")
        payload = os.urandom(1024 * 1024)
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=30) as sock:
            sender = threading.Thread(target=sock.sendall, args=(payload,))
            sender.start()
            received = bytearray()
            while len(received) < len(payload):
                chunk = sock.recv(65536)
                assert chunk, f"connection closed after {len(received)} bytes"
                received += chunk
            sender.join()
        assert bytes(received) == payload
    finally:
        stop(proc)


def test_impersonated_user_is_forbidden_until_a_rolebinding_exists(
    kubectl: Kubectl, kube_credentials: Credentials, kube_admin: Client, namespace: str
) -> None:
    user = f"someone-{uuid.uuid4().hex[:6]}@example.com"
    args = ("get", "pods", "-n", namespace, f"--as={user}")
    denied = kubectl.run(*args, kubeconfig=kube_credentials.kubeconfig)
    assert denied.returncode == 1
    assert "forbidden" in denied.stderr.lower()
    assert f'User "{user}" cannot list resource "pods"' in denied.stderr

    kube_admin.create(
        RoleBinding.from_dict(
            {
                "metadata": {"name": "someone-view", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            }
        )
    )
    deadline = time.monotonic() + 10  # the RBAC authorizer reads an informer cache
    while (allowed := kubectl.run(*args, kubeconfig=kube_credentials.kubeconfig)).returncode:
        assert time.monotonic() < deadline, allowed.stderr
        time.sleep(0.2)
    assert "No resources found" in allowed.stderr
    other_ns = kubectl.run(
        "get", "pods", "-n", "default", f"--as={user}", kubeconfig=kube_credentials.kubeconfig
    )
    assert other_ns.returncode == 1 and "forbidden" in other_ns.stderr.lower()
