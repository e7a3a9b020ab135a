"""``kubegate doctor`` as a member runs it: the CLI logged in over TLS, a real server, agent,
kube-apiserver, kwok pods and both kubectl clients."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import ConfigMap

from testenv.controlplane import Credentials
from tests.fixtures.cli import Cli
from tests.fixtures.gateway import Deployment, running_deployment
from tests.fixtures.kube import Kubectl, MakePod

pytestmark = pytest.mark.e2e

TRANSPORT_CHECKS = [
    f"{kind} ({transport})"
    for kind in ("exec", "attach", "cp", "port-forward")
    for transport in ("websocket", "spdy")
]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[Deployment]:
    """A server and an agent for the tests that leave them running."""
    with running_deployment(
        tmp_path_factory.mktemp("gateway"), kube_credentials, kube_admin
    ) as deployment:
        yield deployment


@dataclass(frozen=True)
class Member:
    email: str
    password: str


def add_member(deployment: Deployment, role: str, namespace: str | None) -> Member:
    """A new member with a password and ``role``, applied by the agent."""
    member = Member(f"doc-{uuid.uuid4().hex[:10]}@example.com", uuid.uuid4().hex)
    deployment.server.add_member(deployment.token, member.email, member.password)
    grant = deployment.grant(member.email, role, namespace)
    deployment.wait_status(grant["id"], "applied")
    return member


def logged_in(tmp_path: Path, deployment: Deployment, member: Member) -> Cli:
    """The member's own ``kubegate``, logged in over TLS with the cluster selected."""
    cli = Cli(tmp_path / "home")
    server = deployment.server
    cli.ok(
        *("login", server.url, "--email", member.email, "--password-stdin"),
        *("--certificate-authority", str(server.ca_file)),
        input=member.password,
    )
    cli.ok("cluster", "select", deployment.cluster["name"])
    return cli


def doctor(cli: Cli, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """``kubegate doctor ARGS -o json``: its exit status and document."""
    result = cli.run("doctor", *args, "-o", "json", env=env)
    assert "Traceback" not in result.stderr, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, document


def rows(document: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {row["check"]: row for row in document["checks"]}


def test_every_check_passes_for_an_editor_with_a_kwok_pod(
    gateway: Deployment,
    namespace: str,
    make_pod: MakePod,
    kubectl: Kubectl,
    kube_admin: Client,
    tmp_path: Path,
) -> None:
    make_pod("web")
    cli = logged_in(tmp_path, gateway, add_member(gateway, "edit", namespace))
    if kubectl.version == "1.32":  # the system's kubectl, found on PATH
        code, document = doctor(
            cli, "--scratch", env={"PATH": f"{kubectl.path.parent}{os.pathsep}{os.defpath}"}
        )
    else:
        code, document = doctor(cli, "--scratch", "--kubectl", str(kubectl.path))
    found = rows(document)
    not_passed = [row for row in found.values() if row["status"] != "pass"]
    assert not_passed == []
    assert code == 0 and document["ok"] is True
    assert set(TRANSPORT_CHECKS) <= set(found)
    assert document["versions"]["kubectl_client"].startswith(f"v{kubectl.version}.")
    assert document["versions"]["kubernetes"].startswith("v1.")
    assert document["versions"]["kubegate_server"]
    assert found["server"]["detail"].startswith(
        f"kubegate {document['versions']['kubegate_server']}; TLS: CA pinned at login, SHA-256 "
    )
    assert found["grant"]["detail"].endswith(f"checking namespace {namespace}")
    assert found["exec (websocket)"]["detail"] == "echo kubegate-doctor ran in web over WebSocket"
    assert found["port-forward (spdy)"]["detail"].endswith(
        "-> web:8080 over SPDY; a connection was accepted"
    )
    assert "created and deleted configmap kubegate-doctor-" in found["write (scratch)"]["detail"]
    left = [
        cm.metadata.name
        for cm in kube_admin.list(ConfigMap, namespace=namespace)
        if cm.metadata is not None and (cm.metadata.name or "").startswith("kubegate-doctor-")
    ]
    assert left == []


def test_a_viewer_is_told_exec_is_forbidden_and_which_role_allows_it(
    gateway: Deployment, namespace: str, make_pod: MakePod, tmp_path: Path
) -> None:
    make_pod("web")
    member = add_member(gateway, "view", namespace)
    cli = logged_in(tmp_path, gateway, member)
    code, document = doctor(cli)
    assert code == 1 and document["ok"] is False
    found = rows(document)
    for name in ("grant", "kube token", "kubectl", "get", "watch", "pod", "logs -f"):
        assert found[name]["status"] == "pass", found[name]
    for name in TRANSPORT_CHECKS:
        assert found[name]["status"] == "fail", found[name]
        assert found[name]["detail"].startswith(f"forbidden: kubegate:{member.email} cannot")
        assert found[name]["advice"].startswith("needs edit or admin: ask an admin")
    assert found["exec (spdy)"]["detail"] == (
        f"forbidden: kubegate:{member.email} cannot create pods/exec in namespace {namespace} "
        "(you hold view there)"
    )
    assert found["write (scratch)"]["status"] == "skip"


def test_a_grant_on_another_namespace_says_which_namespace_to_use(
    gateway: Deployment, namespace: str, tmp_path: Path
) -> None:
    cli = logged_in(tmp_path, gateway, add_member(gateway, "view", namespace))
    code, document = doctor(cli, "--namespace", "default")
    assert code == 1
    grant = rows(document)["grant"]
    assert grant["status"] == "fail"
    assert grant["detail"] == f"your grants are for namespace {namespace}, not default"
    assert grant["advice"].startswith(f"use --namespace {namespace} (or ask an admin: ")
    assert rows(document)["kube token"]["detail"] == "needs: grant"
    # The table says the same, row by row, and names what failed under it.
    table = cli.run("doctor", "--namespace", "default")
    assert table.returncode == 1 and "Traceback" not in table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL", "ADVICE"]
    grant_line = next(line for line in lines if line.startswith("grant "))
    assert grant_line.split()[1] == "fail" and "your grants are for namespace" in grant_line
    assert "use --namespace" in table.stdout
    assert lines[-1] == "19 checks: 3 passed, 15 skipped, 1 failed: grant."


def test_an_offline_cluster_fails_and_says_to_ask_an_admin(
    deployment: Deployment, namespace: str, tmp_path: Path
) -> None:
    cli = logged_in(tmp_path, deployment, add_member(deployment, "edit", namespace))
    deployment.agent.stop()
    deployment.wait_online(False)
    code, document = doctor(cli)
    assert code == 1
    found = rows(document)
    assert found["login"]["status"] == found["server"]["status"] == "pass"
    assert found["cluster"]["status"] == "fail"
    assert "the cluster's agent is not connected (last seen " in found["cluster"]["detail"]
    assert found["cluster"]["advice"].startswith("ask an admin to check the agent")
    assert found["grant"] == {
        "check": "grant",
        "status": "skip",
        "detail": "needs: cluster",
        "advice": "",
    }
    assert {
        row["status"] for name, row in found.items() if name not in ("login", "server", "cluster")
    } == {"skip"}
