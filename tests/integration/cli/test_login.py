"""``kubegate login|logout|whoami`` and ``server list|use`` against a real server."""

from __future__ import annotations

import json
import os
import stat
import subprocess

from tests.fixtures.access import MEMBER_EMAIL, MEMBER_PASSWORD
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.cli import KUBEGATE, Cli


def login(cli: Cli, api: Api, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> str:
    return cli.ok("login", api.url, "--email", email, "--password-stdin", input=password + "\n")


def test_password_login_is_kept_private_and_whoami_shows_who_and_until_when(
    cli: Cli, api: Api
) -> None:
    said = login(cli, api)
    assert f"Logged in to {api.url} as {ADMIN_EMAIL} (admin" in said
    assert stat.S_IMODE(os.stat(cli.config_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cli.config_file.parent).st_mode) == 0o700
    me = cli.json("whoami")
    assert me["server"] == api.url
    assert (me["email"], me["role"], me["login"]) == (ADMIN_EMAIL, "admin", "password")
    assert me["expires_at"] is not None
    table = cli.ok("whoami")
    assert ADMIN_EMAIL in table and "Expires at:" in table


def test_a_wrong_password_is_one_line_and_nothing_is_saved(cli: Cli, api: Api) -> None:
    stderr = cli.fails("login", api.url, "--email", ADMIN_EMAIL, "--password-stdin", input="nope\n")
    assert "wrong email or password" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not cli.config_file.exists()


def test_an_api_token_from_stdin_logs_in_with_the_tokens_expiry(cli: Cli, api: Api) -> None:
    said = cli.ok("login", api.url, "--token-stdin", input=api.admin_token + "\n")
    assert ADMIN_EMAIL in said
    me = cli.json("whoami")
    assert me["login"] == "token" and me["expires_at"] is not None


def test_a_bad_token_is_refused_with_what_to_run(cli: Cli, api: Api) -> None:
    stderr = cli.fails("login", api.url, "--token-stdin", input="kg_api_not_a_token\n")
    assert "kubegate login" in stderr
    assert not cli.config_file.exists()


def test_two_servers_with_one_current_and_server_use_switches(
    cli: Cli, api: Api, member: tuple[str, str]
) -> None:
    login(cli, api)
    # The same server under another spelling of its address is a second login.
    other = api.url.replace("127.0.0.1", "localhost")
    cli.ok("login", other, "--email", MEMBER_EMAIL, "--password-stdin", input=MEMBER_PASSWORD)
    servers = cli.json("server", "list")
    assert {(s["server"], s["email"], s["current"]) for s in servers} == {
        (api.url, ADMIN_EMAIL, False),
        (other, MEMBER_EMAIL, True),
    }
    assert cli.json("whoami")["email"] == MEMBER_EMAIL
    cli.ok("server", "use", api.url)
    assert cli.json("whoami")["email"] == ADMIN_EMAIL
    stderr = cli.fails("server", "use", "https://nowhere.example.com")
    assert "not logged in to https://nowhere.example.com" in stderr


def test_logout_revokes_the_token_on_the_server_and_forgets_the_login(cli: Cli, api: Api) -> None:
    login(cli, api)
    token = json.loads(cli.config_file.read_text())["servers"][api.url]["credential"]["token"]
    assert api.get("/api/v1/me", token).status_code == 200
    cli.ok("logout")
    assert api.get("/api/v1/me", token).status_code == 401
    assert cli.json("server", "list") == []
    assert "not logged in; run: kubegate login SERVER" in cli.fails("whoami")


def test_a_login_revoked_on_the_server_tells_the_user_to_log_in_again(cli: Cli, api: Api) -> None:
    login(cli, api)
    token = json.loads(cli.config_file.read_text())["servers"][api.url]["credential"]["token"]
    assert api.post("/api/v1/auth/logout", token).status_code == 204
    assert f"run: kubegate login {api.url}" in cli.fails("whoami")


def test_an_unreachable_server_is_one_line(cli: Cli) -> None:
    stderr = cli.fails(
        "login", "http://127.0.0.1:9", "--email", "a@b.c", "--password-stdin", input="x\n"
    )
    assert "cannot reach kubegate at http://127.0.0.1:9" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_concurrent_logins_to_different_servers_lose_none(cli: Cli, api: Api) -> None:
    other = api.url.replace("127.0.0.1", "localhost")
    argv = ["login", "--email", ADMIN_EMAIL, "--password-stdin"]
    processes = [
        subprocess.Popen(
            [*KUBEGATE, *argv, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli.env,
            text=True,
        )
        for url in (api.url, other)
    ]
    for process in processes:
        _, stderr = process.communicate(ADMIN_PASSWORD + "\n", timeout=120)
        assert process.returncode == 0, stderr
    assert {s["server"] for s in cli.json("server", "list")} == {api.url, other}
