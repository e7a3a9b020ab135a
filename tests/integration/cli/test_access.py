"""``kubegate cluster list|select`` and ``cluster access list|grant|revoke`` against a real
server with no agent (grants stay unapplied; the e2e tests see them applied)."""

from __future__ import annotations

from tests.fixtures.access import MEMBER_EMAIL, MEMBER_PASSWORD, add_cluster, grant
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.cli import Cli


def admin(cli: Cli, api: Api) -> Cli:
    cli.ok("login", api.url, "--email", ADMIN_EMAIL, "--password-stdin", input=ADMIN_PASSWORD)
    return cli


def test_cluster_list_shows_your_own_access_and_select_takes_a_name_or_an_id(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    prod, staging = add_cluster(api, "prod"), add_cluster(api, "staging")
    grant(api, prod, member[0], "edit")
    cli.ok("login", api.url, "--email", MEMBER_EMAIL, "--password-stdin", input=MEMBER_PASSWORD)
    listed = {c["name"]: c for c in cli.json("cluster", "list")}
    assert [g["role"] for g in listed["prod"]["my_access"]] == ["edit"]
    assert listed["staging"]["my_access"] == []
    assert listed["prod"]["online"] is False
    table = cli.ok("cluster", "list")
    assert "edit [" in table and "none" in table  # unapplied grants show their status
    assert "Selected cluster prod" in cli.ok("cluster", "select", "prod")
    assert cli.json("server", "list")[0]["cluster"] == "prod"
    cli.ok("cluster", "select", staging)
    assert cli.json("server", "list")[0]["cluster"] == "staging"
    assert "has no cluster named 'nope'" in cli.fails("cluster", "select", "nope")


def test_grant_is_idempotent_and_list_shows_it_with_its_status(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    add_cluster(api, "prod")
    admin(cli, api)
    said = cli.ok("cluster", "access", "grant", MEMBER_EMAIL, "--cluster", "prod", "--no-wait")
    # No agent: the grant is recorded but not applied, and the command says so.
    assert said.startswith(f"Granted: view on cluster of prod to {MEMBER_EMAIL} (grant ")
    assert said.rstrip().endswith((", cluster_offline).", ", pending).")), said
    again = cli.run("cluster", "access", "grant", MEMBER_EMAIL, "--cluster", "prod", "--no-wait")
    assert again.returncode == 0
    assert again.stdout.startswith(f"Already granted: view on cluster of prod to {MEMBER_EMAIL}")
    (row,) = cli.json("cluster", "access", "list", "--cluster", "prod")
    assert (row["user_email"], row["role"], row["namespace"]) == (MEMBER_EMAIL, "view", None)
    assert row["status"] != "applied"


def test_waiting_for_a_grant_on_an_offline_cluster_says_so_and_fails(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    add_cluster(api, "prod")
    admin(cli, api)
    stderr = cli.fails(
        "cluster", "access", "grant", MEMBER_EMAIL, "--role", "edit", "--namespace", "dev",
        "--cluster", "prod", "--timeout", "2",
    )  # fmt: skip
    assert "prod is offline" in stderr or "still pending after 2 s" in stderr


def test_bad_input_is_refused_with_a_reason(cli: Cli, api: Api, member: tuple[str, str]) -> None:
    add_cluster(api, "prod")
    admin(cli, api)
    bad_role = cli.run("cluster", "access", "grant", MEMBER_EMAIL, "--role", "root", "-c", "prod")
    assert bad_role.returncode == 2 and "root" in bad_role.stderr
    bad_ns = cli.fails(
        "cluster", "access", "grant", MEMBER_EMAIL, "--namespace", "Not_A_Label", "-c", "prod"
    )
    assert "namespace" in bad_ns
    assert "nobody@example.com" in cli.fails(
        "cluster", "access", "grant", "nobody@example.com", "-c", "prod", "--no-wait"
    )


def test_revoke_by_email_removes_every_grant_of_that_member(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    add_cluster(api, "prod")
    admin(cli, api)
    for extra in ([], ["--role", "edit", "--namespace", "dev"]):
        cli.ok("cluster", "access", "grant", MEMBER_EMAIL, "-c", "prod", "--no-wait", *extra)
    cli.ok("cluster", "access", "grant", ADMIN_EMAIL, "-c", "prod", "--no-wait")
    said = cli.ok("cluster", "access", "revoke", MEMBER_EMAIL, "-c", "prod")
    assert f"Revoked 2 grant(s) of {MEMBER_EMAIL} on prod" in said
    left = cli.json("cluster", "access", "list", "-c", "prod")
    assert [g["user_email"] for g in left] == [ADMIN_EMAIL]
    nothing = cli.ok("cluster", "access", "revoke", MEMBER_EMAIL, "-c", "prod")
    assert "holds no grant on prod; nothing to revoke" in nothing
    cli.ok("cluster", "access", "revoke", left[0]["id"], "-c", "prod")
    assert cli.json("cluster", "access", "list", "-c", "prod") == []


def test_revoke_all_asks_first_and_refuses_without_a_terminal(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    add_cluster(api, "prod")
    admin(cli, api)
    cli.ok("cluster", "access", "grant", MEMBER_EMAIL, "-c", "prod", "--no-wait")
    refused = cli.fails("cluster", "access", "revoke", "--all", "-c", "prod")
    assert "pass --yes when not in a terminal" in refused
    assert len(cli.json("cluster", "access", "list", "-c", "prod")) == 1
    said = cli.ok("cluster", "access", "revoke", "--all", "-c", "prod", "--yes")
    assert "Revoked 1 grant(s) on prod; every kube token for it is now void" in said
    assert "name what to revoke" in cli.fails("cluster", "access", "revoke", "-c", "prod")


def test_a_member_cannot_manage_access(cli: Cli, api: Api, member: tuple[str, str]) -> None:
    add_cluster(api, "prod")
    cli.ok("login", api.url, "--email", MEMBER_EMAIL, "--password-stdin", input=MEMBER_PASSWORD)
    stderr = cli.fails("cluster", "access", "grant", ADMIN_EMAIL, "-c", "prod", "--no-wait")
    assert len(stderr.strip().splitlines()) == 1
    assert "admin" in stderr
    assert "admin" in cli.fails("cluster", "access", "revoke", "--all", "-c", "prod", "--yes")
