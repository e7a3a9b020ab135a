"""The demo's steps: the local control plane, kubegate and its agent, and a granted user's
kubectl through kubegate (``get pods``, ``logs -f``, ``exec``), run for the user to see."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
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
from testenv.demo.kubectl import STEP_TIMEOUT, DemoFailed, DemoKubectl
from testenv.gateway import GatewayServer
from testenv.pods import EchoServer, FakePod, create_fake_pod
from testenv.system import kubectl_binaries

DEMO_NAMESPACE = "demo"
DEMO_POD = "hello"
DEMO_POD_LOG = "hello from kubegate's demo pod"
DEMO_USER = "dev@kubegate.local"
DEMO_ROLE = "edit"  # view cannot exec; edit can
EXEC_COMMAND = ("echo", "hello from kubegate")
KUBE_TOKEN_MINUTES = 15  # the server's default kube_token_ttl_seconds


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


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (it holds a bearer token)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def _kubectl_through_kubegate(
    gateway: GatewayServer,
    cluster_id: str,
    password: str,
    pod: FakePod,
    root: Path,
    console: Console,
) -> tuple[Path, str]:
    """Log in as the demo user, download and write its kubeconfig, and run ``get pods``,
    ``logs -f`` and ``exec`` through kubegate; answers the kubeconfig and the user's API token."""
    look_at = f"{gateway.data_dir / 'server.log'} and {root / 'kubegate' / 'agent.log'}"
    kubeconfig = root / "dev.kubeconfig"
    with _step(f"logging in as {DEMO_USER} and downloading a kubeconfig", look_at):
        token = gateway.login(DEMO_USER, password)
        _write_private(kubeconfig, gateway.kubeconfig(token, cluster_id))
    console.print()
    console.print(
        f"[bold]As {DEMO_USER}, through kubegate[/bold] (logged in with a password; "
        f"kubeconfig from POST /api/v1/clusters/{cluster_id}/kubeconfig):"
    )
    kubectl = DemoKubectl(kubectl_binaries()["1.32"], kubeconfig, console, look_at)
    with _step(f"running kubectl as {DEMO_USER}", look_at):
        pods = kubectl.run("get", "pods", "-n", DEMO_NAMESPACE)
        if not any(line.split()[:1] == [DEMO_POD] for line in pods.splitlines()):
            raise DemoFailed(f"kubectl get pods did not list {DEMO_POD} (see {look_at})")
        kubectl.follow_logs(pod, DEMO_POD_LOG)
        said = kubectl.run("exec", "-n", DEMO_NAMESPACE, DEMO_POD, "--", *EXEC_COMMAND)
        if said.strip() != EXEC_COMMAND[1]:
            raise DemoFailed(f"kubectl exec printed {said!r}, not {EXEC_COMMAND[1]!r}")
    return kubeconfig, token


def _print_summary(
    console: Console, lines: list[tuple[str, str]], commands: list[tuple[str, list[str]]]
) -> None:
    if lines:
        console.print()
    for label, value in lines:
        console.print(f"{label + ':':<16}{value}", highlight=False)
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
                ("kubegate admin", f"{gateway.admin_email} / {gateway.admin_password}"),
                ("cluster", f"'local' registered through the API: id {cluster['id']}"),
                ("agent", f"connected (log: {agent.log})"),
                ("user", f"{DEMO_USER} / {password}"),
                ("grant", f"{DEMO_USER} {DEMO_ROLE} on namespace {DEMO_NAMESPACE}: {granted}"),
            ],
            [],
        )
        dev_kubeconfig, dev_token = _kubectl_through_kubegate(
            gateway, cluster["id"], password, pod, root, console
        )
        as_dev = f"KUBECONFIG={dev_kubeconfig} kubectl"
        admin_kubectl = f"kubectl --kubeconfig {creds.kubeconfig}"
        curl = f"curl --cacert {gateway.ca_file}"
        expires = time.strftime("%H:%M", time.localtime(time.time() + KUBE_TOKEN_MINUTES * 60))
        exec_shown = shlex.join(EXEC_COMMAND)
        _print_summary(
            console,
            [],
            [
                (
                    f"Keep going as {DEMO_USER}, through kubegate (the kube token in "
                    f"{dev_kubeconfig.name} lasts {KUBE_TOKEN_MINUTES} min, "
                    f"until about {expires}):",
                    [
                        f"{as_dev} get pods -n {DEMO_NAMESPACE}",
                        f"{as_dev} logs -f -n {DEMO_NAMESPACE} {DEMO_POD}",
                        f"{as_dev} exec -n {DEMO_NAMESPACE} {DEMO_POD} -- {exec_shown}",
                        f"{as_dev} exec -it -n {DEMO_NAMESPACE} {DEMO_POD} -- sh",
                        f"{as_dev} auth can-i create rolebindings -n {DEMO_NAMESPACE}"
                        "   # no: edit cannot grant access",
                        f"{as_dev} get pods -n default   # forbidden: the grant is on "
                        f"{DEMO_NAMESPACE} only",
                    ],
                ),
                (
                    "A fresh kubeconfig, with the user's API token:",
                    [
                        f"{curl} -X POST -H 'Authorization: Bearer {dev_token}' "
                        f"{gateway.url}/api/v1/clusters/{cluster['id']}/kubeconfig "
                        f"-o {dev_kubeconfig}"
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
