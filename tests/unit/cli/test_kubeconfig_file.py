"""The kubeconfig file: which one, client-go's lock, atomic writes, the backup, and kubectl."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kubegate.cli.kubeconfig_edit import (
    Document,
    ExecAuth,
    KubeconfigError,
    ManagedEntry,
    add,
    managed,
    remove,
)
from kubegate.cli.kubeconfig_file import backup_path, edit, lock_path, read, target_path

OTHER = """\
apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://other.example.com
users:
- name: other
  user:
    token: other-token
contexts:
- name: other
  context:
    cluster: other
    user: other
current-context: other
"""


def entry(name: str = "prod", *, command: str = "/usr/local/bin/kubegate") -> ManagedEntry:
    return ManagedEntry(
        cluster_name=name,
        cluster_id="c0ffee",
        kubegate_server="https://kubegate.example.com",
        proxy_server="https://kubegate.example.com/clusters/c0ffee/k8s",
        ca_pem=None,
        insecure_skip_tls_verify=False,
        namespace=None,
        auth=ExecAuth(command=command, args=("cluster", "kube-token"), install_hint="get it"),
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_target_is_the_explicit_path_first(tmp_path: Path) -> None:
    env = {"KUBECONFIG": "/a/config"}
    assert target_path(tmp_path / "x", env, tmp_path) == tmp_path / "x"


def test_target_is_the_first_non_empty_kubeconfig_entry(tmp_path: Path) -> None:
    env = {"KUBECONFIG": os.pathsep.join(["", "/a/config", "/b/config"])}
    assert target_path(None, env, tmp_path) == Path("/a/config")


def test_target_defaults_to_dot_kube_config(tmp_path: Path) -> None:
    assert target_path(None, {"KUBECONFIG": ""}, tmp_path) == tmp_path / ".kube" / "config"


def test_a_new_file_is_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".kube" / "config"
    edit(path, lambda doc: add(doc, entry(), use=True))
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert [m.name for m in managed(read(path))] == ["kubegate-prod"]
    assert not backup_path(path).exists()
    assert not lock_path(path).exists()


def test_an_existing_files_mode_is_kept_and_the_backup_holds_what_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config"
    path.write_text(OTHER)
    path.chmod(0o640)
    edit(path, lambda doc: add(doc, entry(), use=False))
    assert mode(path) == 0o640
    assert backup_path(path).read_text() == OTHER
    assert mode(backup_path(path)) == 0o640
    edit(path, lambda doc: remove(doc, "prod"))
    assert path.read_text() == OTHER
    assert "kubegate-prod" in backup_path(path).read_text()


def test_an_edit_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(OTHER)
    inode = path.stat().st_ino
    result = edit(path, lambda doc: remove(doc, "prod"))
    assert not result.removed
    assert path.stat().st_ino == inode
    assert not backup_path(path).exists()
    edit(tmp_path / "missing", lambda doc: remove(doc, "prod"))
    assert not (tmp_path / "missing").exists()


def test_read_of_a_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    assert managed(read(tmp_path / "nope")) == []


def test_corrupt_yaml_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(OTHER + "users: ]\n")
    with pytest.raises(KubeconfigError, match=f"^{path}, line 17: not valid YAML"):
        edit(path, lambda doc: add(doc, entry(), use=False))
    assert path.read_text() == OTHER + "users: ]\n"
    assert not lock_path(path).exists()
    assert not backup_path(path).exists()


def test_a_document_that_is_not_a_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nkind: Pod\n")
    with pytest.raises(KubeconfigError, match="not a kubeconfig"):
        edit(path, lambda doc: add(doc, entry(), use=False))
    assert path.read_text() == "apiVersion: v1\nkind: Pod\n"
    assert not lock_path(path).exists()


def test_a_path_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.mkdir()
    with pytest.raises(KubeconfigError, match=f"^cannot read {path}: Is a directory"):
        edit(path, lambda doc: add(doc, entry(), use=False))
    assert not lock_path(path).exists()


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failing_change_leaves_the_file_and_releases_the_lock(
    tmp_path: Path, failure: type[BaseException]
) -> None:
    path = tmp_path / "config"
    path.write_text(OTHER)

    def change(doc: Document) -> None:
        add(doc, entry(), use=True)
        assert lock_path(path).exists()
        raise failure

    with pytest.raises(failure):
        edit(path, change)
    assert path.read_text() == OTHER
    assert not lock_path(path).exists()


def test_a_lock_held_too_long_fails_naming_it_and_is_not_taken_away(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(OTHER)
    lock_path(path).touch()
    with pytest.raises(KubeconfigError) as caught:
        edit(path, lambda doc: add(doc, entry(), use=False), lock_timeout=0.05)
    message = str(caught.value)
    assert message.startswith(f"{lock_path(path)} is held by another kubectl or kubegate (")
    assert " s old)" in message
    assert message.endswith("remove it if no kubectl/kubegate is running")
    assert path.read_text() == OTHER
    assert lock_path(path).exists()


def test_a_symlinked_kubeconfig_stays_a_link_to_the_edited_file(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "kubeconfig"
    real.parent.mkdir()
    real.write_text(OTHER)
    link = tmp_path / "config"
    link.symlink_to(real)
    edit(link, lambda doc: add(doc, entry(), use=False))
    assert link.is_symlink()
    assert [m.name for m in managed(read(real))] == ["kubegate-prod"]
    assert backup_path(real).read_text() == OTHER
    assert not lock_path(link).exists()
    assert not lock_path(real).exists()


def test_a_relative_path_through_a_symlinked_directory_is_locked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    edit(Path("linked/config"), lambda doc: add(doc, entry(), use=False), lock_timeout=0.05)
    assert [m.name for m in managed(read(tmp_path / "real" / "config"))] == ["kubegate-prod"]
    assert list((tmp_path / "real").iterdir()) == [tmp_path / "real" / "config"]


ADDER = """
import sys
from pathlib import Path
from kubegate.cli import kubeconfig_edit as ke, kubeconfig_file as kf
path, name = Path(sys.argv[1]), sys.argv[2]
auth = ke.ExecAuth("kubegate", ("cluster", "kube-token"), "install kubegate")
item = ke.ManagedEntry(name, name, "https://kg", "https://kg/k8s", None, False, None, auth)
kf.edit(path, lambda doc: ke.add(doc, item, use=False))
"""


def test_five_concurrent_adders_all_succeed_and_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(OTHER)
    adders = [
        subprocess.Popen(
            [sys.executable, "-c", ADDER, str(path), f"c{i}"], stderr=subprocess.PIPE, text=True
        )
        for i in range(5)
    ]
    failures = [err for proc in adders if (err := proc.communicate(timeout=120)[1])]
    assert failures == []
    assert [proc.returncode for proc in adders] == [0] * 5
    names = sorted(m.name for m in managed(read(path)))
    assert names == [f"kubegate-c{i}" for i in range(5)]
    assert "name: other" in path.read_text()
    assert not lock_path(path).exists()


def kubectls() -> list[str]:
    found = [shutil.which("kubectl"), str(Path(sys.executable).parent / "kubectl")]
    paths = [p for p in dict.fromkeys(found) if p and Path(p).is_file()]
    return paths or ["kubectl-not-installed"]


def kubectl(binary: str, *args: str) -> str:
    if not Path(binary).is_file():
        pytest.skip("no kubectl on PATH or in the virtualenv")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("binary", kubectls())
def test_kubectl_reads_the_exec_user_and_its_rewrite_keeps_the_marker(
    tmp_path: Path, binary: str
) -> None:
    path = tmp_path / "config"
    path.write_text(OTHER)
    tricky = dataclasses.replace(entry("yes"), namespace="no")
    edit(path, lambda doc: add(doc, tricky, use=True))
    view = json.loads(kubectl(binary, "config", "view", "--kubeconfig", str(path), "-o", "json"))
    [user] = [u["user"] for u in view["users"] if u["name"] == "kubegate-yes"]
    assert user["exec"] == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "/usr/local/bin/kubegate",
        "args": ["cluster", "kube-token"],
        "env": None,
        "installHint": "get it",
        "interactiveMode": "Never",
        "provideClusterInfo": True,
    }
    kubectl(binary, "config", "use-context", "other", "--kubeconfig", str(path))
    assert "current-context: other" in path.read_text()
    [listed] = managed(read(path))
    assert (listed.name, listed.cluster_name, listed.cluster_id) == (
        "kubegate-yes",
        "yes",
        "c0ffee",
    )
    assert (listed.namespace, listed.auth, listed.current) == ("no", "exec", False)
    assert listed.kubegate_server == "https://kubegate.example.com"
    edit(path, lambda doc: remove(doc, "yes"))
    remaining = json.loads(
        kubectl(binary, "config", "view", "--kubeconfig", str(path), "-o", "json")
    )
    assert [c["name"] for c in remaining["contexts"]] == ["other"]


EXEC_PLUGIN = """
import json, os, sys
with open(sys.argv[1], "w") as out:
    out.write(os.environ["KUBERNETES_EXEC_INFO"])
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": "kg_kube_test"}}))
"""


@pytest.mark.parametrize("binary", kubectls())
def test_kubectl_runs_the_exec_plugin_with_the_cluster_info(tmp_path: Path, binary: str) -> None:
    path, info = tmp_path / "config", tmp_path / "exec-info.json"
    plugin = dataclasses.replace(
        entry(),
        proxy_server="https://127.0.0.1:1/clusters/c0ffee/k8s",
        insecure_skip_tls_verify=True,
        auth=ExecAuth(sys.executable, ("-c", EXEC_PLUGIN, str(info)), "get it"),
    )
    edit(path, lambda doc: add(doc, plugin, use=True))
    if not Path(binary).is_file():
        pytest.skip("no kubectl on PATH or in the virtualenv")
    subprocess.run(
        [binary, "get", "--raw", "/version", "--kubeconfig", str(path), "--request-timeout=5s"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    request = json.loads(info.read_text())
    assert request["apiVersion"] == "client.authentication.k8s.io/v1"
    assert request["spec"]["interactive"] is False
    assert request["spec"]["cluster"]["server"] == "https://127.0.0.1:1/clusters/c0ffee/k8s"
