"""``kubegate access-key create|list|delete``, ``login --access-key`` and
``KUBEGATE_ACCESS_KEY`` against a real server, as a user runs them."""

from __future__ import annotations

import json

from sqlalchemy import Engine

from kubegate.auth import access_keys
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    add_cluster,
    grant,
    kube_token_rows,
)
from tests.fixtures.api import Api
from tests.fixtures.cli import Cli


def member_login(cli: Cli, api: Api) -> None:
    cli.ok("login", api.url, "--email", MEMBER_EMAIL, "--password-stdin", input=MEMBER_PASSWORD)


def files_under(cli: Cli) -> list[str]:
    """Every file kubegate could have written: its config and cache directories."""
    roots = [cli.home / ".config", cli.home / ".cache"]
    return sorted(str(p) for root in roots if root.exists() for p in root.rglob("*"))


def test_create_prints_only_the_secret_on_stdout_once(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    prod = add_cluster(api, "prod")
    grant(api, prod, member[0])
    member_login(cli, api)
    result = cli.run("access-key", "create", "ci", "--expires-in", "30d", "--cluster", "prod:dev")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    assert access_keys.looks_valid(secret)
    assert "shown only this once" in result.stderr
    assert "scope: prod (dev)" in result.stderr
    listed = cli.ok("access-key", "list")
    assert "ci" in listed and f"kgak_…{secret[-4:]}" in listed and "prod (dev)" in listed
    assert secret not in listed
    [row] = cli.json("access-key", "list")
    assert row["scope"]["clusters"] == [
        {"cluster_id": prod, "cluster_name": "prod", "namespaces": ["dev"]}
    ]


def test_bad_durations_and_clusters_are_refused(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    member_login(cli, api)
    assert "not a duration" in cli.fails("access-key", "create", "ci", "--expires-in", "soon")
    assert "no cluster named 'nope'" in cli.fails("access-key", "create", "ci", "-c", "nope")


def test_delete_by_name_stops_the_key(cli: Cli, api: Api, member: tuple[str, str]) -> None:
    member_login(cli, api)
    secret = cli.ok("access-key", "create", "ci").strip()
    assert api.get("/api/v1/me", secret).status_code == 200
    assert "Deleted access key ci" in cli.ok("access-key", "delete", "ci")
    assert api.get("/api/v1/me", secret).status_code == 401
    assert "no access key 'ci'" in cli.fails("access-key", "delete", "ci")


def test_an_admin_lists_and_deletes_a_members_keys(
    cli: Cli, api: Api, member: tuple[str, str], tmp_path: object
) -> None:
    member_login(cli, api)
    cli.ok("access-key", "create", "ci")
    admin = Cli(cli.home.parent / "admin")
    admin.ok("login", api.url, "--email", "admin@example.com", "--password-stdin",
             input="correct horse battery staple")  # fmt: skip
    [row] = admin.json("access-key", "list", "--user", MEMBER_EMAIL)
    assert row["name"] == "ci" and row["user_email"] == MEMBER_EMAIL
    admin.ok("access-key", "delete", "ci", "--user", MEMBER_EMAIL)
    assert cli.json("access-key", "list") == []
    refused = cli.fails("access-key", "list", "--user", "admin@example.com")
    assert "only organisation admins" in refused


def test_login_with_an_access_key_stores_it_and_the_plugin_mints_with_it(
    cli: Cli, api: Api, member: tuple[str, str], db: Engine
) -> None:
    prod = add_cluster(api, "prod")
    grant(api, prod, member[0])
    member_login(cli, api)
    secret = cli.ok("access-key", "create", "ci", "--cluster", "prod").strip()
    robot = Cli(cli.home.parent / "robot")
    out = robot.ok("login", api.url, "--access-key-stdin", input=secret + "\n")
    assert f"Logged in to {api.url} as {MEMBER_EMAIL}" in out
    stored = json.loads(robot.config_file.read_text())["servers"][api.url]["credential"]
    assert stored["kind"] == "access_key"
    assert json.loads(robot.ok("whoami", "-o", "json"))["login"] == "access_key"
    token = json.loads(robot.ok("cluster", "kube-token", "--cluster", "prod"))["status"]["token"]
    [row] = kube_token_rows(db, cluster_id=prod)
    assert row.access_key_id is not None and token.startswith("kg_kube_")
    robot.ok("cluster", "kubeconfig", "add", "--cluster", "prod")
    assert "kube-token" in robot.kubeconfig.read_text()
    assert "still works" in robot.run("logout").stderr


def test_login_refuses_a_mistyped_key_without_asking_the_server(cli: Cli, api: Api) -> None:
    typo = access_keys.new_key()
    typo = typo[:-1] + ("0" if typo[-1] != "0" else "1")
    assert "not a kubegate access key" in cli.fails(
        "login", api.url, "--access-key-stdin", input=typo + "\n"
    )
    assert not cli.config_file.exists()


def test_kubegate_access_key_in_the_environment_writes_nothing(
    cli: Cli, api: Api, member: tuple[str, str], db: Engine
) -> None:
    prod = add_cluster(api, "prod")
    grant(api, prod, member[0])
    member_login(cli, api)
    secret = cli.ok("access-key", "create", "ci").strip()
    ci = Cli(
        cli.home.parent / "ci", env={"KUBEGATE_ACCESS_KEY": secret, "KUBEGATE_SERVER": api.url}
    )
    assert [c["name"] for c in ci.json("cluster", "list")] == ["prod"]
    assert json.loads(ci.ok("whoami", "-o", "json"))["email"] == MEMBER_EMAIL
    for _ in range(2):  # no cache: each run mints
        credential = json.loads(
            ci.ok("cluster", "kube-token", "--server", api.url, "--cluster", prod)
        )
        assert credential["status"]["token"].startswith("kg_kube_")
    assert len(kube_token_rows(db, cluster_id=prod)) == 2
    assert files_under(ci) == []
    assert "nothing is stored" in ci.fails("logout")


def test_kubegate_access_key_without_a_server_says_what_to_set(cli: Cli) -> None:
    ci = Cli(cli.home.parent / "ci", env={"KUBEGATE_ACCESS_KEY": access_keys.new_key()})
    assert "KUBEGATE_SERVER" in ci.fails("cluster", "list")
    result = ci.run("cluster", "kube-token", "--cluster", "prod")
    assert result.returncode == 1 and "KUBEGATE_SERVER" in result.stderr
    assert files_under(ci) == []
