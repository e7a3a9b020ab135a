"""``kubegate login --sso`` end to end: the CLI in a subprocess, the approval in Chromium
through Dex's own login form, then ``cluster kubeconfig add`` and real kubectl through the
gateway and a real agent.

The module runs one ``kubegate server`` (TLS, SQLite) whose ``[oidc]`` provider is a real Dex
(it knows kubegate's callback, so kubegate's port is picked first), one registered cluster
and its agent on the test control plane. Each test has its own browser profile and its own
``kubegate`` home.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from lightkube import Client
from playwright._impl._errors import TargetClosedError
from playwright.sync_api import Browser, BrowserContext, expect

from testenv.controlplane import Credentials
from tests.fixtures.cli import Cli
from tests.fixtures.kube import Kubectl
from tests.fixtures.sso import ALICE, SsoDeployment, running_sso_deployment
from tests.fixtures.sso_login import SsoLogin

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[SsoDeployment]:
    with running_sso_deployment(
        tmp_path_factory.mktemp("sso-gateway"), kube_credentials, kube_admin
    ) as stack:
        yield stack


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile that accepts the test servers' certificates, as a person who
    trusted them would."""
    context = browser.new_context(ignore_https_errors=True)
    try:
        yield context
    finally:
        with suppress(TargetClosedError):
            context.close()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"failed ({result.returncode}): {result.stderr}"
    return result.stdout


def test_sso_login_approved_in_the_browser_through_dex_then_kubectl_works(
    stack: SsoDeployment, context: BrowserContext, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    # Alice is a member with a grant before she ever signs in: SSO links her by email.
    grant = stack.gateway.grant(ALICE.email, "edit", namespace)
    try:
        stack.gateway.wait_status(grant["id"], "applied")
        sign_in_approve_and_use(stack, context, kubectl, namespace, tmp_path)
    finally:
        stack.gateway.delete_grant(grant["id"])


def sign_in_approve_and_use(
    stack: SsoDeployment, context: BrowserContext, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    server = stack.gateway.server
    cli = Cli(tmp_path / "home")
    login = SsoLogin(cli, server.url, "--certificate-authority", str(server.ca_file))
    try:
        prompt = login.prompt()
        assert prompt.page == f"{server.url}/device"

        # The person opens the link in a browser, signs in at Dex, sees the request.
        page = context.new_page()
        page.goto(prompt.complete)
        expect(page.locator("#login")).to_be_visible()  # Dex's own form, on Dex's origin
        assert page.url.startswith(stack.dex.credentials.issuer)
        page.fill("#login", ALICE.email)
        page.fill("#password", ALICE.password)
        page.click("#submit-login")
        page.wait_for_url(re.compile(re.escape(f"{server.url}/device?user_code=")))
        expect(page.locator("h1")).to_have_text("Approve this kubegate CLI login?")
        expect(page.locator(".kg-code")).to_have_text(prompt.code)
        expect(page.locator("main")).to_contain_text("kubegate CLI")
        expect(page.locator("main")).to_contain_text(ALICE.email)
        expect(page.locator("main")).to_contain_text("Only approve if you started this yourself")
        page.get_by_role("button", name="Approve").click()
        expect(page.locator("h1")).to_have_text("CLI login approved")

        done = login.finish()
    finally:
        login.stop()
    assert done.returncode == 0, done.stderr
    assert f"Logged in to {server.url} as {ALICE.email} (member" in done.stdout
    assert cli.json("whoami")["login"] == "sso"

    name = stack.gateway.cluster["name"]
    added = cli.run("cluster", "kubeconfig", "add", "--cluster", name, "--use")
    assert added.returncode == 0, added.stderr
    assert f"is for namespace {namespace}" in added.stderr
    made = kubectl.run(
        "create", "configmap", "from-sso", "--from-literal=who=alice",
        kubeconfig=cli.kubeconfig, env=cli.env,
    )  # fmt: skip
    assert "configmap/from-sso created" in ok(made)
    listed = ok(kubectl.run("get", "configmaps", kubeconfig=cli.kubeconfig, env=cli.env))
    assert re.search(r"^from-sso\s", listed, re.M), listed
    # Another namespace is not Alice's: Kubernetes RBAC says no, as her.
    other = kubectl.run(
        "get", "configmaps", "-n", "default", kubeconfig=cli.kubeconfig, env=cli.env
    )
    assert other.returncode != 0 and "forbidden" in other.stderr.lower()
    assert f"kubegate:{ALICE.email}" in other.stderr


def test_a_login_denied_in_the_browser_ends_the_cli_with_exit_1(
    stack: SsoDeployment, context: BrowserContext, tmp_path: Path
) -> None:
    server = stack.gateway.server
    cli = Cli(tmp_path / "home")
    login = SsoLogin(
        cli, server.url, "--certificate-authority", str(server.ca_file), "--no-browser"
    )
    try:
        prompt = login.prompt()
        # Without a session the page sends the browser to SSO, to come back to the code.
        with server.client() as anonymous:
            bounced = anonymous.get(prompt.complete)
        assert bounced.status_code == 302
        assert bounced.headers["location"] == (
            f"/auth/oidc/login?next=%2Fdevice%3Fuser_code%3D{prompt.code.replace('-', '')}"
        )
        page = context.new_page()
        page.goto(prompt.page)  # the bare page: the code is typed in
        page.fill("#login", ALICE.email)
        page.fill("#password", ALICE.password)
        page.click("#submit-login")
        page.wait_for_url(f"{server.url}/device")
        page.fill("#user_code", prompt.code.lower())
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("button", name="Deny").click()
        expect(page.locator("h1")).to_have_text("CLI login denied")
        done = login.finish()
    finally:
        login.stop()
    assert done.returncode == 1
    assert "the login was denied in the browser; not logged in" in done.stderr
    assert not cli.config_file.exists()
