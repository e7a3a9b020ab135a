"""The member's daily path with the CLI: log in, add a context, run plain kubectl for weeks.

One ``kubegate server`` (TLS, kube tokens living 20 s so that renewal happens within a
test) and one agent serve the module; each test makes its own member with a grant on its
own namespace, a private home for ``kubegate`` (``Cli``) and runs both kubectl clients.
kubectl runs the exec plugin with the test user's environment, so the plugin reads that
user's login and token cache.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lightkube import Client

from kubegate.cli.kube_token_mint import CachedToken, read_cache
from kubegate.cli.trust import fingerprint
from testenv.controlplane import Credentials
from tests.fixtures.cli import KUBEGATE, Cli
from tests.fixtures.gateway import Deployment, running_deployment, wait_for
from tests.fixtures.kube import Kubectl, LineReader, MakePod, stop

pytestmark = pytest.mark.e2e

TOKEN_SECONDS = 10


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[Deployment]:
    with running_deployment(
        tmp_path_factory.mktemp("gateway"),
        kube_credentials,
        kube_admin,
        server_env={"KUBEGATE_KUBE_TOKEN_TTL_SECONDS": str(TOKEN_SECONDS)},
    ) as deployment:
        yield deployment


@dataclass
class Member:
    email: str
    cli: Cli
    grant: dict[str, object]

    def kubectl(self, kubectl: Kubectl, *args: str) -> subprocess.CompletedProcess[str]:
        """kubectl on the member's default kubeconfig, with the member's environment."""
        return kubectl.run(*args, kubeconfig=self.cli.kubeconfig, env=self.cli.env)

    def cached_tokens(self) -> list[CachedToken]:
        cache = self.cli.home / ".cache" / "kubegate" / "kube-tokens"
        found = [read_cache(str(path)) for path in sorted(cache.glob("*.token"))]
        return [token for token in found if token is not None]


def new_member(gateway: Deployment, tmp_path: Path, role: str, namespace: str | None) -> Member:
    """A member with an applied grant, logged in with the CLI over pinned TLS."""
    email = f"u-{uuid.uuid4().hex[:10]}@example.com"
    password = uuid.uuid4().hex
    gateway.server.add_member(gateway.token, email, password)
    grant = gateway.grant(email, role, namespace)
    gateway.wait_status(grant["id"], "applied")
    cli = Cli(tmp_path / "home")
    server = gateway.server
    cli.ok(
        "login", server.url, "--email", email, "--password-stdin",
        "--certificate-authority", str(server.ca_file),
        input=password,
    )  # fmt: skip
    return Member(email, cli, grant)


@pytest.fixture
def editor(gateway: Deployment, namespace: str, tmp_path: Path) -> Member:
    return new_member(gateway, tmp_path, "edit", namespace)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"kubectl failed ({result.returncode}): {result.stderr}"
    return result.stdout


def test_login_add_use_then_get_logs_and_exec_work(
    kubectl: Kubectl, gateway: Deployment, editor: Member, namespace: str, make_pod: MakePod
) -> None:
    make_pod("web", log_lines=["hello from kwok"])
    name = gateway.cluster["name"]
    added = editor.cli.run("cluster", "kubeconfig", "add", "--cluster", name, "--use")
    assert added.returncode == 0, added.stderr
    assert f"Added context kubegate-{name}" in added.stdout
    # A namespace grant: the context defaults to that namespace, and says so.
    assert f"is for namespace {namespace}: the context defaults to it" in added.stderr
    assert ok(editor.kubectl(kubectl, "config", "current-context")).strip() == f"kubegate-{name}"
    pods = ok(editor.kubectl(kubectl, "get", "pods"))
    assert re.search(r"^web\s+1/1\s+Running", pods, re.M), pods
    assert "hello from kwok" in ok(editor.kubectl(kubectl, "logs", "web"))
    assert ok(editor.kubectl(kubectl, "exec", "web", "--", "echo", "through kubegate")) == (
        "through kubegate\n"
    )
    follow = kubectl.popen(
        "logs", "-f", "web", kubeconfig=editor.cli.kubeconfig, env=editor.cli.env
    )
    try:
        LineReader(follow).wait_for("hello from kwok")
    finally:
        stop(follow)


def test_the_exec_plugin_renews_an_expired_token_without_kubectl_noticing(
    kubectl: Kubectl, gateway: Deployment, editor: Member, namespace: str
) -> None:
    editor.cli.ok("cluster", "kubeconfig", "add", "--cluster", gateway.cluster["name"], "--use")
    ok(editor.kubectl(kubectl, "get", "configmaps"))
    (first,) = editor.cached_tokens()
    expires = first.expires_at
    wait_for(
        lambda: dt.datetime.now(dt.UTC) > expires,
        timeout=TOKEN_SECONDS + 10,
        what="the first kube token to expire",
    )
    assert "kube-root-ca.crt" in ok(editor.kubectl(kubectl, "get", "configmaps"))
    (second,) = editor.cached_tokens()
    assert second.token != first.token


def test_an_embedded_token_works_until_it_expires(
    kubectl: Kubectl, gateway: Deployment, editor: Member, namespace: str, tmp_path: Path
) -> None:
    printed = editor.cli.ok(
        "cluster", "kubeconfig", "add", "--cluster", gateway.cluster["name"],
        "--embed-token", "--print",
    )  # fmt: skip
    standalone = tmp_path / "standalone.kubeconfig"
    standalone.write_text(printed)
    assert not editor.cli.kubeconfig.exists()  # --print leaves the file alone
    config = json.loads(
        ok(kubectl.run("config", "view", "--raw", "-o", "json", kubeconfig=standalone))
    )
    (user,) = config["users"]
    assert user["user"]["token"].startswith("kg_kube_")
    ok(kubectl.run("get", "configmaps", "-n", namespace, kubeconfig=standalone))
    minted = dt.datetime.now(dt.UTC)
    wait_for(
        lambda: dt.datetime.now(dt.UTC) > minted + dt.timedelta(seconds=TOKEN_SECONDS + 1),
        timeout=TOKEN_SECONDS + 10,
        what="the embedded token to expire",
    )
    expired = kubectl.run("get", "configmaps", "-n", namespace, kubeconfig=standalone)
    assert expired.returncode != 0
    assert "Unauthorized" in expired.stderr or "logged in" in expired.stderr, expired.stderr


def test_an_expired_login_makes_kubectl_fail_saying_what_to_run(
    kubectl: Kubectl, gateway: Deployment, editor: Member
) -> None:
    editor.cli.ok("cluster", "kubeconfig", "add", "--cluster", gateway.cluster["name"], "--use")
    config = json.loads(editor.cli.config_file.read_text())
    (login,) = config["servers"].values()
    login["credential"]["expires_at"] = "2020-01-01T00:00:00+00:00"
    editor.cli.config_file.write_text(json.dumps(config))
    result = editor.kubectl(kubectl, "get", "configmaps")
    assert result.returncode != 0
    assert f"run: kubegate login {gateway.server.url}" in result.stderr, result.stderr


def test_a_deleted_grant_makes_kubectl_fail_at_once(
    kubectl: Kubectl, gateway: Deployment, editor: Member
) -> None:
    editor.cli.ok("cluster", "kubeconfig", "add", "--cluster", gateway.cluster["name"], "--use")
    ok(editor.kubectl(kubectl, "get", "configmaps"))
    gateway.delete_grant(str(editor.grant["id"]))
    result = editor.kubectl(kubectl, "get", "configmaps")
    assert result.returncode != 0
    assert "You do not have access to this cluster" in result.stderr or (
        "Unauthorized" in result.stderr
    ), result.stderr


def test_login_pins_the_servers_ca_only_once_its_fingerprint_is_accepted(
    gateway: Deployment, tmp_path: Path
) -> None:
    server = gateway.server
    expected = fingerprint(server.ca_file.read_text())
    cli = Cli(tmp_path / "home")
    argv = ["login", server.url, "--email", server.admin_email, "--password-stdin"]
    refused = cli.fails(*argv, input=server.admin_password)
    assert f"SHA-256 fingerprint: {expected}" in refused
    assert f"pass --ca-fingerprint {expected}" in refused
    assert not cli.config_file.exists()
    wrong = cli.fails(*argv, "--ca-fingerprint", "AB:" * 31 + "AB", input=server.admin_password)
    assert f"the server's CA has fingerprint {expected}" in wrong
    cli.ok(
        *argv, "--ca-fingerprint", expected.replace(":", "").lower(), input=server.admin_password
    )
    (login,) = json.loads(cli.config_file.read_text())["servers"].values()
    assert login["tls"]["ca_pem"] == server.ca_file.read_text()
    assert cli.json("whoami")["email"] == server.admin_email


def test_an_admin_grants_waits_until_applied_and_revokes_by_email(
    gateway: Deployment, tmp_path: Path
) -> None:
    server = gateway.server
    email = f"u-{uuid.uuid4().hex[:10]}@example.com"
    server.add_member(gateway.token, email, uuid.uuid4().hex)
    admin = Cli(tmp_path / "admin")
    admin.ok(
        "login", server.url, "--email", server.admin_email, "--password-stdin",
        "--certificate-authority", str(server.ca_file),
        input=server.admin_password,
    )  # fmt: skip
    name = gateway.cluster["name"]
    before = set(gateway.owned_bindings())
    said = admin.ok("cluster", "access", "grant", email, "--cluster", name)
    assert said.startswith(f"Granted: view on cluster of {name} to {email}")
    admin.ok("cluster", "access", "grant", email, "--role", "edit", "-n", "default", "-c", name)
    made = set(gateway.owned_bindings()) - before
    assert len(made) == 2  # applied means the bindings exist
    statuses = {g["role"]: g["status"] for g in admin.json("cluster", "access", "list", "-c", name)
                if g["user_email"] == email}  # fmt: skip
    assert statuses == {"view": "applied", "edit": "applied"}
    said = admin.ok("cluster", "access", "revoke", email, "--cluster", name)
    assert f"Revoked 2 grant(s) of {email} on {name}" in said
    wait_for(
        lambda: not made & set(gateway.owned_bindings()),
        what="the member's bindings to be removed from the cluster",
    )


def test_in_a_terminal_login_asks_before_trusting_the_ca(
    gateway: Deployment, tmp_path: Path
) -> None:
    server = gateway.server
    cli = Cli(tmp_path / "home")
    primary, secondary = pty.openpty()  # stdin is a terminal: the CLI may ask
    with subprocess.Popen(
        [*KUBEGATE, "login", server.url, "--email", server.admin_email, "--password-stdin"],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
        text=True,
    ) as login:
        os.close(secondary)
        os.write(primary, f"y\n{server.admin_password}\n".encode())
        stdout, stderr = login.communicate(timeout=120)
    os.close(primary)
    assert login.returncode == 0, stderr
    assert f"SHA-256 fingerprint: {fingerprint(server.ca_file.read_text())}" in stderr
    assert "Trust this CA for this server?" in stderr
    assert f"Logged in to {server.url}" in stdout
