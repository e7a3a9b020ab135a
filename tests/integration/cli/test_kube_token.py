"""``kubegate cluster kube-token``: the exec credential plugin against a real server.

Mints are counted in the server's database (one ``kube_tokens`` row per mint).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess

from sqlalchemy import Engine

from kubegate.cli.kube_token_mint import read_cache, write_cache
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    add_cluster,
    granted_member,
    kube_token_rows,
)
from tests.fixtures.api import Api
from tests.fixtures.cli import KUBEGATE, Cli


def member_cli(cli: Cli, api: Api, member: tuple[str, str]) -> str:
    """The member logged in, with a grant on cluster ``prod`` selected; its id."""
    cluster_id = granted_member(api, member)
    cli.ok("login", api.url, "--email", MEMBER_EMAIL, "--password-stdin", input=MEMBER_PASSWORD)
    cli.ok("cluster", "select", "prod")
    return cluster_id


def credential(stdout: str) -> dict[str, str]:
    document = json.loads(stdout)
    assert document["apiVersion"] == "client.authentication.k8s.io/v1"
    assert document["kind"] == "ExecCredential"
    status: dict[str, str] = document["status"]
    return status


def test_the_plugin_prints_an_exec_credential_and_reuses_it_from_the_cache(
    cli: Cli, api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = member_cli(cli, api, member)
    first = credential(cli.ok("cluster", "kube-token"))
    assert first["token"].startswith("kg_kube_")
    expires = dt.datetime.fromisoformat(first["expirationTimestamp"])
    assert expires > dt.datetime.now(dt.UTC)
    again = credential(cli.ok("cluster", "kube-token", "--cluster", cluster_id))
    by_name = credential(cli.ok("cluster", "kube-token", "--cluster", "prod"))
    assert again == first
    assert by_name["token"].startswith("kg_kube_")
    # One mint for the id (the selected cluster's key), one for the name's own cache entry.
    assert len(kube_token_rows(db, cluster_id=cluster_id)) == 2
    cache = list((cli.home / ".cache" / "kubegate" / "kube-tokens").glob("*.token"))
    assert len(cache) == 2
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in cache)


def test_forty_parallel_kubectl_calls_mint_once(
    cli: Cli, api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = member_cli(cli, api, member)
    calls = [
        subprocess.Popen(
            [*KUBEGATE, "cluster", "kube-token"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli.env,
            text=True,
        )
        for _ in range(40)
    ]
    tokens = set()
    for call in calls:
        stdout, stderr = call.communicate(timeout=120)
        assert call.returncode == 0, stderr
        tokens.add(credential(stdout)["token"])
    assert len(tokens) == 1
    assert len(kube_token_rows(db, cluster_id=cluster_id)) == 1


def test_an_expired_cache_entry_is_replaced_by_a_new_mint(
    cli: Cli, api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = member_cli(cli, api, member)
    first = credential(cli.ok("cluster", "kube-token"))
    (entry,) = (cli.home / ".cache" / "kubegate" / "kube-tokens").glob("*.token")
    cached = read_cache(str(entry))
    assert cached is not None and cached.token == first["token"]
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    write_cache(str(entry), dataclasses.replace(cached, expires_at=past))
    second = credential(cli.ok("cluster", "kube-token"))
    assert second["token"] != first["token"]
    assert len(kube_token_rows(db, cluster_id=cluster_id)) == 2


def test_without_a_login_the_plugin_says_what_to_run_and_fails(cli: Cli, api: Api) -> None:
    result = cli.run("cluster", "kube-token", "--server", api.url, "--cluster", "prod")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        f"kubegate: not logged in to {api.url}; run: kubegate login {api.url}"
    )


def test_an_expired_login_says_what_to_run_without_calling_the_server(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    member_cli(cli, api, member)
    config = json.loads(cli.config_file.read_text())
    config["servers"][api.url]["credential"]["expires_at"] = "2020-01-01T00:00:00+00:00"
    cli.config_file.write_text(json.dumps(config))
    result = cli.run("cluster", "kube-token")
    assert result.returncode == 1
    assert f"your kubegate login has expired; run: kubegate login {api.url}" in result.stderr


def test_a_member_without_a_grant_gets_the_servers_reason(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    add_cluster(api, "staging")
    cli.ok("login", api.url, "--email", MEMBER_EMAIL, "--password-stdin", input=MEMBER_PASSWORD)
    result = cli.run("cluster", "kube-token", "--cluster", "staging")
    assert result.returncode == 1
    assert "You do not have access to this cluster" in result.stderr


def test_a_token_goes_only_to_the_cluster_url_it_was_minted_for(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    member_cli(cli, api, member)
    info = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "spec": {"interactive": False, "cluster": {"server": "https://attacker.example.com"}},
    }
    result = cli.run("cluster", "kube-token", env={"KUBERNETES_EXEC_INFO": json.dumps(info)})
    assert result.returncode == 1 and result.stdout == ""
    assert "sends the token to https://attacker.example.com" in result.stderr
    right = json.loads(cli.ok("cluster", "kube-token"))["status"]
    (entry,) = (cli.home / ".cache" / "kubegate" / "kube-tokens").glob("*.token")
    cached = read_cache(str(entry))
    assert cached is not None
    info["spec"]["cluster"]["server"] = cached.server  # type: ignore[index]
    assert (
        credential(
            cli.run("cluster", "kube-token", env={"KUBERNETES_EXEC_INFO": json.dumps(info)}).stdout
        )
        == right
    )


def test_logout_forgets_the_cached_tokens_of_that_server(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    member_cli(cli, api, member)
    cli.ok("cluster", "kube-token")
    cache = cli.home / ".cache" / "kubegate" / "kube-tokens"
    assert len(list(cache.glob("*.token"))) == 1
    cli.ok("logout")
    assert list(cache.glob("*.token")) == []
    result = cli.run("cluster", "kube-token", "--server", api.url, "--cluster", "prod")
    assert result.returncode == 1 and "run: kubegate login" in result.stderr


def test_a_server_that_cannot_be_reached_is_one_line_for_kubectl(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    cluster_id = member_cli(cli, api, member)
    # The same login, for a server address where nothing listens (no token is cached there).
    config = json.loads(cli.config_file.read_text())
    dead = "http://127.0.0.1:9"
    config["servers"] = {dead: config["servers"][api.url]}
    config["current"] = dead
    cli.config_file.write_text(json.dumps(config))
    result = cli.run("cluster", "kube-token", "--server", dead, "--cluster", cluster_id)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"kubegate: cannot reach kubegate at {dead}")
    assert len(result.stderr.strip().splitlines()) == 1
