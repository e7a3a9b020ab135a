"""``kubegate cluster kubeconfig add|remove|list`` on real files, against a real server.

The kubeconfig is split over three files in ``$KUBECONFIG``, the last one read-only, the
first holding twelve contexts of other tools: kubegate writes only the first, touches only
its own entries, and gives the file back byte for byte when its entries are removed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from tests.fixtures.access import MEMBER_EMAIL, MEMBER_PASSWORD, add_cluster, grant
from tests.fixtures.api import Api
from tests.fixtures.cli import KUBEGATE, Cli
from tests.fixtures.kubeconfigs import FOREIGN

OTHER = """\
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "https://10.0.0.9:6443"}
users:
- name: lab
  user: {token: lab-token}
contexts:
- name: lab
  context: {cluster: lab, user: lab}
"""


def member_login(cli: Cli, api: Api) -> None:
    cli.ok("login", api.url, "--email", MEMBER_EMAIL, "--password-stdin", input=MEMBER_PASSWORD)


def three_files(tmp_path: Path) -> list[Path]:
    first, second, third = (tmp_path / name for name in ("config", "other.yaml", "ro.yaml"))
    first.write_text(FOREIGN)
    second.write_text(OTHER)
    third.write_text(OTHER.replace("lab", "ro"))
    third.chmod(0o444)
    return [first, second, third]


def test_add_all_then_remove_all_leaves_every_other_byte_as_it_was(
    cli: Cli, api: Api, member: tuple[str, str], tmp_path: Path
) -> None:
    prod, staging = add_cluster(api, "prod"), add_cluster(api, "staging")
    grant(api, prod, member[0], "view")
    grant(api, staging, member[0], "edit")
    add_cluster(api, "nothing-for-me")
    member_login(cli, api)
    files = three_files(tmp_path)
    cli.env["KUBECONFIG"] = os.pathsep.join(str(f) for f in files)
    said = cli.ok("cluster", "kubeconfig", "add", "--all")
    assert f"Added context kubegate-prod in {files[0]}" in said
    assert f"Added context kubegate-staging in {files[0]}" in said
    assert "nothing-for-me" not in said
    assert files[1].read_text() == OTHER and files[2].read_text() == OTHER.replace("lab", "ro")
    written = yaml.safe_load(files[0].read_text())
    assert written["current-context"] == "gke-prod"  # no --use: unchanged
    assert {c["name"] for c in written["contexts"]} >= {"kubegate-prod", "kubegate-staging"}
    assert len(written["contexts"]) == 14
    listed = {c["cluster"]: c for c in cli.json("cluster", "kubeconfig", "list")}
    assert set(listed) == {"prod", "staging"}
    assert listed["prod"]["auth"] == "exec" and listed["prod"]["cluster_exists"] is True
    assert not listed["prod"]["current"]
    cli.ok("cluster", "kubeconfig", "remove", "--all")
    assert files[0].read_text() == FOREIGN
    assert Path(f"{files[0]}.kubegate.bak").exists()
    assert files[1].read_text() == OTHER and files[2].read_text() == OTHER.replace("lab", "ro")


def test_use_makes_it_current_and_removing_it_says_what_is_current_now(
    cli: Cli, api: Api, member: tuple[str, str], tmp_path: Path
) -> None:
    grant(api, add_cluster(api, "prod"), member[0], "view")
    member_login(cli, api)
    cli.ok("cluster", "kubeconfig", "add", "--cluster", "prod", "--use")
    assert yaml.safe_load(cli.kubeconfig.read_text())["current-context"] == "kubegate-prod"
    assert cli.kubeconfig.stat().st_mode & 0o777 == 0o600  # created private
    removed = cli.run("cluster", "kubeconfig", "remove", "--cluster", "prod")
    assert removed.returncode == 0, removed.stderr
    assert "It was the current context; the current context is now none" in removed.stderr


def test_a_cluster_that_is_gone_shows_in_the_list(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    cluster_id = add_cluster(api, "prod")
    grant(api, cluster_id, member[0], "view")
    member_login(cli, api)
    cli.ok("cluster", "kubeconfig", "add", "--cluster", "prod")
    assert api.delete(f"/api/v1/clusters/{cluster_id}").status_code == 204
    (row,) = cli.json("cluster", "kubeconfig", "list")
    assert row["cluster_exists"] is False
    assert "no (gone)" in cli.ok("cluster", "kubeconfig", "list")
    # Removing works offline, from what the file says.
    cli.ok("cluster", "kubeconfig", "remove", "--cluster", cluster_id)
    assert cli.json("cluster", "kubeconfig", "list") == []


def test_without_a_grant_add_says_so_and_writes_nothing(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    add_cluster(api, "prod")
    member_login(cli, api)
    stderr = cli.fails("cluster", "kubeconfig", "add", "--cluster", "prod")
    assert "You do not have access to this cluster" in stderr
    assert not cli.kubeconfig.exists()
    assert "--use takes a single cluster" in cli.fails(
        "cluster", "kubeconfig", "add", "--all", "--use"
    )


def test_five_concurrent_adds_lose_nothing(cli: Cli, api: Api, member: tuple[str, str]) -> None:
    names = [f"c{i}" for i in range(5)]
    for name in names:
        grant(api, add_cluster(api, name), member[0], "view")
    member_login(cli, api)
    adds = [
        subprocess.Popen(
            [*KUBEGATE, "cluster", "kubeconfig", "add", "--cluster", name],
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for add in adds:
        _, stderr = add.communicate(timeout=120)
        assert add.returncode == 0, stderr
    contexts = {c["name"] for c in yaml.safe_load(cli.kubeconfig.read_text())["contexts"]}
    assert contexts == {f"kubegate-{name}" for name in names}


def test_a_corrupt_kubeconfig_is_refused_and_left_untouched(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    grant(api, add_cluster(api, "prod"), member[0], "view")
    member_login(cli, api)
    cli.kubeconfig.parent.mkdir(parents=True)
    broken = "apiVersion: v1\nclusters: [\n  - name: half\n"
    cli.kubeconfig.write_text(broken)
    stderr = cli.fails("cluster", "kubeconfig", "add", "--cluster", "prod")
    assert str(cli.kubeconfig) in stderr and "not valid YAML" in stderr
    assert cli.kubeconfig.read_text() == broken
    assert not Path(f"{cli.kubeconfig}.lock").exists()


def test_a_stale_lock_gets_a_clear_error_naming_it(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    grant(api, add_cluster(api, "prod"), member[0], "view")
    member_login(cli, api)
    cli.kubeconfig.parent.mkdir(parents=True)
    cli.kubeconfig.write_text(OTHER)
    lock = Path(f"{cli.kubeconfig}.lock")
    lock.touch()
    stderr = cli.fails("cluster", "kubeconfig", "add", "--cluster", "prod")
    assert str(lock) in stderr and "remove it if no kubectl/kubegate is running" in stderr
    assert cli.kubeconfig.read_text() == OTHER and lock.exists()


def test_print_writes_a_standalone_kubeconfig_and_leaves_the_file_alone(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    grant(api, add_cluster(api, "prod"), member[0], "view")
    member_login(cli, api)
    printed = yaml.safe_load(cli.ok("cluster", "kubeconfig", "add", "-c", "prod", "--print"))
    assert printed["current-context"] == "kubegate-prod"
    (user,) = printed["users"]
    exec_user = user["user"]["exec"]
    assert exec_user["apiVersion"] == "client.authentication.k8s.io/v1"
    assert exec_user["interactiveMode"] == "Never" and exec_user["provideClusterInfo"] is True
    assert exec_user["args"][-4:] == [
        "--server",
        api.url,
        "--cluster",
        printed["clusters"][0]["cluster"]["server"].rsplit("/", 1)[1],
    ]
    assert not cli.kubeconfig.exists()
