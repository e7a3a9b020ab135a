"""`kubegate cluster install-manifest` prints YAML the real apiserver accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testenv.controlplane import Credentials
from testenv.system import kubectl_binaries

pytestmark = pytest.mark.e2e

KUBEGATE = Path(sys.executable).parent / "kubegate"
TOKEN = "kg_agent_not-a-real-credential"


def install_manifest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBEGATE), "cluster", "install-manifest", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "KUBEGATE_CLUSTER_TOKEN": TOKEN},
        check=False,
    )


def test_manifest_passes_server_side_validation(
    kube_credentials: Credentials, tmp_path: Path
) -> None:
    printed = install_manifest(
        "prod",
        "--server",
        "https://kubegate.example.com:8443",
        "--ca-file",
        str(kube_credentials.ca_file),
        "--namespace",
        "kg-dry-run",
    )
    assert printed.returncode == 0, printed.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(printed.stdout)]
    assert kinds == [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Secret",
        "Deployment",
    ]
    kubectl = kubectl_binaries()[max(kubectl_binaries())]
    applied = subprocess.run(
        [
            str(kubectl),
            f"--kubeconfig={kube_credentials.kubeconfig}",
            "apply",
            "--dry-run=server",
            "-f",
            "-",
        ],
        input=printed.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The namespace does not exist (dry run), so namespaced objects may say so, and kubectl
    # warns about objects other tests created without it; every object must validate.
    problems = [
        line
        for line in applied.stderr.splitlines()
        if not line.startswith("Warning:")
        if 'namespaces "kg-dry-run" not found' not in line
    ]
    assert not problems, applied.stderr
    assert re.search(
        r"clusterrole.rbac.authorization.k8s.io/kubegate-agent (created|configured) "
        r"\(server dry run\)",
        applied.stdout,
    ), applied.stdout


def test_token_appears_only_in_the_secret() -> None:
    printed = install_manifest("prod", "--server", "https://kubegate.example.com")
    assert printed.returncode == 0, printed.stderr
    for doc in yaml.safe_load_all(printed.stdout):
        assert (TOKEN in yaml.safe_dump(doc)) is (doc["kind"] == "Secret"), doc["kind"]


def test_bad_input_is_refused_with_every_problem_named() -> None:
    printed = install_manifest("Prod_1", "--server", "kubegate.example.com", "--ca-file", "/nope")
    assert printed.returncode == 2
    assert "cluster name 'Prod_1'" in printed.stderr
    assert "--server must be an https:// URL" in printed.stderr
    assert "cannot read --ca-file" in printed.stderr
    assert printed.stdout == ""
