"""The demo's steps: the local control plane, kubegate and its agent, and a granted user's
kubectl through kubegate (``get pods``, ``logs -f``, ``exec``), run for the user to see."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from lightkube import ApiError
from lightkube.resources.core_v1 import Namespace
from rich.console import Console
from rich.text import Text

from kubegate.errors import KubegateError
from testenv.agent import AgentProcess
from testenv.build import ensure_environment
from testenv.controlplane import ControlPlane
from testenv.demo.kubectl import STEP_TIMEOUT, DemoCommand, DemoFailed
from testenv.gateway import GatewayServer
from testenv.pods import EchoServer, FakePod, create_fake_pod
from testenv.system import kubectl_binaries

DEMO_NAMESPACE = "demo"
DEMO_POD = "hello"
DEMO_POD_LOG = "hello from kubegate's demo pod"
DEMO_USER = "dev@kubegate.local"
DEMO_ROLE = "edit"  # view cannot exec; edit can
EXEC_COMMAND = ("echo", "hello from kubegate")
KUBEGATE = Path(sys.executable).parent / "kubegate"
"""The console script a user of the checkout runs (``.venv/bin/kubegate``)."""


@contextlib.contextmanager
def _step(what: str, look_at: str) -> Iterator[None]:
    """Translate what a step can raise into :class:`DemoFailed` naming the step and a log."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        body = exc.response.text[:300]
        raise DemoFailed(
            f"{what}: kubegate answered {exc.response.status_code} to "
            f"{exc.request.method} {exc.request.url.path}: {body} (see {look_at})"
        ) from exc
    except httpx.HTTPError as exc:
        raise DemoFailed(f"{what}: {exc!r} (see {look_at})") from exc
    except ApiError as exc:
        raise DemoFailed(
            f"{what}: Kubernetes answered {exc.status.message} (see {look_at})"
        ) from exc
    except (OSError, TimeoutError, subprocess.SubprocessError) as exc:
        raise DemoFailed(f"{what}: {exc} (see {look_at})") from exc


def _grant_and_wait(
    gateway: GatewayServer,
    admin: str,
    cluster_id: str,
    agent: AgentProcess,
    password: str,
    console: Console,
) -> str:
    """Wait for the agent, add the demo user (with a password) and grant it ``edit`` on the
    demo namespace, and wait until the agent applied it; answers how long that took."""
    look_at = f"{agent.log} and {gateway.data_dir / 'server.log'}"
    deadline = time.monotonic() + STEP_TIMEOUT
    with console.status("waiting for the agent to connect ..."):
        while not gateway.call(admin, "GET", f"/api/v1/clusters/{cluster_id}")["online"]:
            agent.check_running()
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"the agent did not connect in {STEP_TIMEOUT:.0f} s: see {look_at}"
                )
            time.sleep(0.1)
    console.print(
        f"agent connected; granting {DEMO_USER} {DEMO_ROLE} on namespace {DEMO_NAMESPACE}"
    )
    gateway.add_member(admin, DEMO_USER, password)
    started = time.monotonic()
    grant = gateway.grant(admin, cluster_id, DEMO_USER, DEMO_ROLE, DEMO_NAMESPACE)
    with console.status("waiting for the agent to apply the grant ..."):
        while (status := gateway.grant_status(admin, cluster_id, grant["id"])) != "applied":
            agent.check_running()
            if status == "failed" or time.monotonic() > deadline:
                raise DemoFailed(f"the grant is {status}, not applied: see {look_at}")
            time.sleep(0.05)
    return f"applied by the agent in {time.monotonic() - started:.2f} s"


@dataclass(frozen=True, slots=True)
class DemoUser:
    """Where the demo user's kubegate login, token cache and kubeconfig live (in the demo's
    directory, never the machine's own), and the environment that points there."""

    home: Path

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "KUBEGATE_CONFIG_DIR": str(self.home / "kubegate"),
            "KUBEGATE_CACHE_DIR": str(self.home / "cache"),
        }

    def export(self) -> str:
        return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())


def _kubectl_through_kubegate(
    gateway: GatewayServer,
    password: str,
    pod: FakePod,
    user: DemoUser,
    console: Console,
) -> None:
    """As the demo user: log in with the CLI, add the cluster's context, and run ``get pods``,
    ``logs -f`` and ``exec`` through kubegate with plain kubectl (the exec plugin mints)."""
    look_at = f"{gateway.data_dir / 'server.log'} and {user.home.parent / 'kubegate' / 'agent.log'}"
    env = {**os.environ, **user.env}
    console.print()
    console.print(f"[bold]As {DEMO_USER}, through kubegate[/bold]:")
    kubegate = DemoCommand([str(KUBEGATE)], "kubegate", env, console, look_at)
    kubectl = DemoCommand([str(kubectl_binaries()["1.32"])], "kubectl", env, console, look_at)
    with _step(f"logging in as {DEMO_USER} with the kubegate CLI", look_at):
        kubegate.run(
            "login", gateway.url, "--email", DEMO_USER, "--password-stdin",
            "--certificate-authority", str(gateway.ca_file),
            stdin=password,
        )  # fmt: skip
        kubegate.run("cluster", "list")
        kubegate.run("cluster", "kubeconfig", "add", "--cluster", "local", "--use")
    with _step(f"running kubectl as {DEMO_USER}", look_at):
        pods = kubectl.run("get", "pods")
        if not any(line.split()[:1] == [DEMO_POD] for line in pods.splitlines()):
            raise DemoFailed(f"kubectl get pods did not list {DEMO_POD} (see {look_at})")
        kubectl.follow_logs(pod, DEMO_POD_LOG)
        said = kubectl.run("exec", DEMO_POD, "--", *EXEC_COMMAND)
        if said.strip() != EXEC_COMMAND[1]:
            raise DemoFailed(f"kubectl exec printed {said!r}, not {EXEC_COMMAND[1]!r}")


def _print_summary(
    console: Console, lines: list[tuple[str, str]], commands: list[tuple[str, list[str]]]
) -> None:
    if lines:
        console.print()
    for label, value in lines:
        console.print(f"{label + ':':<18}{value}", highlight=False)
    for heading, group in commands:
        console.print()
        console.print(heading)
        for command in group:
            console.print(Text(f"  {command}"), soft_wrap=True)


def run_demo(stop: threading.Event, workdir: Path | None, console: Console) -> None:
    """Start everything, run kubectl through kubegate as a granted user, print how to keep
    going, and block until ``stop`` is set or Ctrl-C."""
    console.print("[bold]kubegate demo[/bold]: preparing the local test environment")
    ensure_environment(report=console.print)
    keep = workdir is not None
    root = workdir or Path(tempfile.mkdtemp(prefix="kubegate-demo-"))
    echo = EchoServer()
    plane = ControlPlane(workdir=root / "control-plane", report=console.print)
    gateway = GatewayServer(root / "kubegate")
    agent: AgentProcess | None = None
    password = secrets.token_urlsafe(12)
    failed = False
    server_log = gateway.data_dir / "server.log"
    try:
        creds = plane.start()
        gateway.start()
        with _step("registering the cluster", str(server_log)):
            admin = gateway.login()
            cluster = gateway.register_cluster(admin, "local")
        agent = AgentProcess(
            server_url=gateway.url,
            cluster_token=cluster["agent_credential"],
            kubeconfig=creds.kubeconfig,
            ca_file=gateway.ca_file,
            cluster_name="local",
            log=root / "kubegate" / "agent.log",
        )
        agent.start()
        client = plane.admin_client()
        try:
            with (
                _step("creating the demo pod", str(root / "control-plane")),
                console.status(f"creating namespace {DEMO_NAMESPACE} and pod {DEMO_POD} ..."),
            ):
                client.create(Namespace.from_dict({"metadata": {"name": DEMO_NAMESPACE}}))
                pod = create_fake_pod(
                    client,
                    DEMO_NAMESPACE,
                    DEMO_POD,
                    root / "pods",
                    log_lines=(DEMO_POD_LOG,),
                    target_port=echo.port,
                )
        finally:
            client.close()
        with _step("granting the demo user access", f"{agent.log} and {server_log}"):
            granted = _grant_and_wait(gateway, admin, cluster["id"], agent, password, console)
        _print_summary(
            console,
            [
                ("Kubernetes API", creds.server),
                ("kubeconfig", f"{creds.kubeconfig}  (the cluster's admin, direct)"),
                ("kubegate API", f"{gateway.url}  (CA: {gateway.ca_file})"),
                ("kubegate proxy", gateway.proxy_url),
                ("kubegate portal", f"{gateway.url}/  (sign in as the admin or the user)"),
                ("kubegate admin", f"{gateway.admin_email} / {gateway.admin_password}"),
                ("cluster", f"'local' registered through the API: id {cluster['id']}"),
                ("agent", f"connected (log: {agent.log})"),
                ("user", f"{DEMO_USER} / {password}"),
                ("grant", f"{DEMO_USER} {DEMO_ROLE} on namespace {DEMO_NAMESPACE}: {granted}"),
            ],
            [],
        )
        user = DemoUser(root / "dev")
        _kubectl_through_kubegate(gateway, password, pod, user, console)
        admin_kubectl = f"kubectl --kubeconfig {creds.kubeconfig}"
        curl = f"curl --cacert {gateway.ca_file}"
        exec_shown = shlex.join(EXEC_COMMAND)
        _print_summary(
            console,
            [],
            [
                (
                    f"Keep going as {DEMO_USER}, through kubegate (this shell's environment "
                    "points kubectl and kubegate at the demo user's files; the exec plugin "
                    "renews the kube token as it expires):",
                    [
                        user.export(),
                        "kubectl get pods",
                        f"kubectl logs -f {DEMO_POD}",
                        f"kubectl exec {DEMO_POD} -- {exec_shown}",
                        f"kubectl exec -it {DEMO_POD} -- sh",
                        f"kubectl auth can-i create rolebindings   # no: {DEMO_ROLE} cannot "
                        "grant access",
                        f"kubectl get pods -n default   # forbidden: the grant is on "
                        f"{DEMO_NAMESPACE} only",
                        f"{KUBEGATE} whoami",
                        f"{KUBEGATE} cluster kubeconfig list",
                    ],
                ),
                (
                    "As the cluster's admin (directly) and kubegate's admin:",
                    [
                        f"{admin_kubectl} get rolebindings -n {DEMO_NAMESPACE} "
                        "-l app.kubernetes.io/managed-by=kubegate",
                        f"{admin_kubectl} auth can-i create pods/exec -n {DEMO_NAMESPACE} "
                        f"--as kubegate:{DEMO_USER}",
                        f"{curl} -H 'Authorization: Bearer {admin}' {gateway.url}/api/v1/clusters",
                        f"{curl} -H 'Authorization: Bearer {admin}' "
                        f"{gateway.url}/api/v1/clusters/{cluster['id']}/access/grants",
                    ],
                ),
            ],
        )
        console.print()
        console.print("Press Ctrl-C to stop.")
        try:
            while not stop.wait(1.0):
                for proc in [*plane.processes(), *gateway.processes(), *agent.processes()]:
                    proc.check_running()
        except KeyboardInterrupt:
            pass
    except KubegateError:
        failed = True  # the error names logs under root: keep them
        raise
    finally:
        console.print("stopping ...")
        started = time.monotonic()
        if agent is not None:
            agent.stop()
        gateway.stop()
        plane.stop()
        echo.close()
        if failed and not keep:
            console.print(f"kept {root} for its logs (remove it when done)")
        elif not keep:
            shutil.rmtree(root, ignore_errors=True)
        console.print(f"stopped in {time.monotonic() - started:.1f} s")
