"""``kubegate login SERVER --sso`` in a subprocess against a real server.

The person's approval is made over HTTP with a password portal session (the browser and Dex
are the e2e test's, ``tests/e2e/test_cli_sso.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, update

from kubegate.server.app import create_app
from kubegate.settings import Settings
from kubegate.storage.models import ApiToken
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api, ServerThread, make_settings
from tests.fixtures.cli import Cli
from tests.fixtures.sso_login import SsoLogin, decide_over_http


@pytest.fixture
def api_settings(database_url: str, tmp_path: Path) -> Settings:
    """Port 0 (the link names the port really bound) and a 1 s poll interval."""
    return make_settings(database_url, tmp_path / "data", port=0, device_poll_interval_seconds=1)


@pytest.fixture
def running() -> Iterator[list[SsoLogin]]:
    """The logins a test starts, killed after it if still waiting."""
    started: list[SsoLogin] = []
    yield started
    for login in started:
        login.stop()


def sso(cli: Cli, api: Api, running: list[SsoLogin], *args: str, **env: str) -> SsoLogin:
    login = SsoLogin(cli, api.url, *args, env=env or None)
    running.append(login)
    return login


def sso_login(cli: Cli, api: Api, running: list[SsoLogin]) -> None:
    login = sso(cli, api, running, "--no-browser")
    decide_over_http(api.client, ADMIN_EMAIL, ADMIN_PASSWORD, login.prompt().code)
    assert login.finish().returncode == 0


def test_sso_login_prints_the_code_and_link_and_finishes_once_approved(
    cli: Cli, api: Api, running: list[SsoLogin]
) -> None:
    login = sso(cli, api, running, "--no-browser")
    prompt = login.prompt()
    assert prompt.page == f"{api.url}/device"
    assert prompt.complete == f"{api.url}/device?user_code={prompt.code}"
    assert "It is valid for 10 minutes" in login.stderr
    assert login.process.poll() is None  # waiting for the approval

    decide_over_http(api.client, ADMIN_EMAIL, ADMIN_PASSWORD, prompt.code)
    done = login.finish()
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"Logged in to {api.url} as {ADMIN_EMAIL} (admin, default)" in done.stdout
    assert "and ends sooner after 1d unused" in done.stdout

    me = cli.json("whoami")
    assert (me["email"], me["login"]) == (ADMIN_EMAIL, "sso")
    assert me["expires_at"] is not None and me["idle_expires_at"] is not None
    assert dt.datetime.fromisoformat(me["idle_expires_at"]) < dt.datetime.fromisoformat(
        me["expires_at"]
    )
    table = cli.ok("whoami")
    assert "Login:" in table and "sso" in table
    assert "Idle expires at:" in table and "unless used before" in table
    stored = json.loads(cli.config_file.read_text())["servers"][api.url]["credential"]
    assert stored["kind"] == "sso" and stored["token"].startswith("kg_api_")


def test_a_denied_sso_login_exits_1_with_why_and_saves_nothing(
    cli: Cli, api: Api, running: list[SsoLogin]
) -> None:
    login = sso(cli, api, running, "--no-browser")
    decide_over_http(api.client, ADMIN_EMAIL, ADMIN_PASSWORD, login.prompt().code, "deny")
    done = login.finish()
    assert done.returncode == 1
    assert "error: the login was denied in the browser; not logged in" in done.stderr
    assert "Traceback" not in done.stderr
    assert not cli.config_file.exists()


def test_ctrl_c_while_waiting_ends_cleanly_and_saves_nothing(
    cli: Cli, api: Api, running: list[SsoLogin]
) -> None:
    login = sso(cli, api, running, "--no-browser")
    login.prompt()
    login.process.send_signal(signal.SIGINT)
    done = login.finish()
    assert done.returncode == 130
    assert "error: cancelled; not logged in" in done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    assert not cli.config_file.exists()


def browser_stand_in(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """``$BROWSER`` (which Python's webbrowser honours) as a program that writes down the
    URL it is asked to open, and a display for it to be opened on."""
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser.py"
    script.write_text(
        f"import sys, pathlib\npathlib.Path({str(opened)!r}).write_text(sys.argv[1])\n"
    )
    return {"BROWSER": f"{sys.executable} {script} %s", "DISPLAY": ":0"}, opened


def test_with_a_display_the_link_is_opened_in_the_browser(
    cli: Cli, api: Api, running: list[SsoLogin], tmp_path: Path
) -> None:
    env, opened = browser_stand_in(tmp_path)
    login = sso(cli, api, running, **env)
    prompt = login.prompt()
    decide_over_http(api.client, ADMIN_EMAIL, ADMIN_PASSWORD, prompt.code)
    assert login.finish().returncode == 0
    assert opened.read_text() == prompt.complete


@pytest.mark.parametrize("how", ["--no-browser", "ssh"])
def test_over_ssh_or_with_no_browser_nothing_is_opened(
    cli: Cli, api: Api, running: list[SsoLogin], tmp_path: Path, how: str
) -> None:
    env, opened = browser_stand_in(tmp_path)
    if how == "ssh":
        env["SSH_CONNECTION"] = "192.0.2.1 51000 192.0.2.2 22"
    login = sso(cli, api, running, *([how] if how != "ssh" else []), **env)
    decide_over_http(api.client, ADMIN_EMAIL, ADMIN_PASSWORD, login.prompt().code, "deny")
    assert login.finish().returncode == 1
    assert not opened.exists()


def test_the_exec_plugin_says_to_log_in_again_with_sso_when_the_login_ended(
    cli: Cli, api: Api, running: list[SsoLogin], database_url: str
) -> None:
    sso_login(cli, api, running)
    engine = create_engine(database_url.replace("+aiosqlite", ""))
    with engine.begin() as conn:  # a clock jump: unused for longer than the idle timeout
        conn.execute(
            update(ApiToken)
            .where(ApiToken.auth_method == "device")
            .values(last_used_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
        )
    engine.dispose()
    result = cli.run("cluster", "kube-token", "--server", api.url, "--cluster", "prod")
    assert result.returncode == 1 and result.stdout == ""
    assert "without use" in result.stderr
    assert result.stderr.strip().endswith(f"run: kubegate login {api.url} --sso")


def test_the_exec_plugin_says_sso_for_a_revoked_sso_login_and_not_for_a_password_one(
    cli: Cli, api: Api, running: list[SsoLogin]
) -> None:
    sso_login(cli, api, running)
    token = json.loads(cli.config_file.read_text())["servers"][api.url]["credential"]["token"]
    assert api.post("/api/v1/auth/logout", token).status_code == 204
    result = cli.run("cluster", "kube-token", "--server", api.url, "--cluster", "prod")
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"run: kubegate login {api.url} --sso")

    cli.ok("login", api.url, "--email", ADMIN_EMAIL, "--password-stdin", input=ADMIN_PASSWORD)
    password_token = json.loads(cli.config_file.read_text())["servers"][api.url]["credential"]
    assert api.post("/api/v1/auth/logout", password_token["token"]).status_code == 204
    result = cli.run("cluster", "kube-token", "--server", api.url, "--cluster", "prod")
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"run: kubegate login {api.url}")


def test_sso_refuses_password_options(cli: Cli, api: Api) -> None:
    stderr = cli.fails("login", api.url, "--sso", "--password-stdin", input="x\n")
    assert "--sso signs in through the browser" in stderr
    assert "--no-browser goes with --sso" in cli.fails("login", api.url, "--no-browser")


def test_a_server_with_no_browser_sign_in_refuses_sso_login_clearly(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path / "data", password_login=False)
    with ServerThread(create_app(settings)) as server:
        stderr = cli.fails("login", server.url, "--sso", "--no-browser")
    assert f"kubegate at {server.url} cannot start an SSO login" in stderr
    assert "neither [oidc] nor password_login" in stderr
    assert not cli.config_file.exists()
