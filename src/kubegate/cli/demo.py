"""``kubegate demo``: the local control plane, a demo pod and the commands to try."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from lightkube.resources.core_v1 import Namespace
from rich.console import Console

from kubegate.testenv.agent import AgentProcess
from kubegate.testenv.build import ensure_environment
from kubegate.testenv.controlplane import ControlPlane
from kubegate.testenv.gateway import GatewayServer
from kubegate.testenv.pods import EchoServer, create_fake_pod

DEMO_NAMESPACE = "demo"
DEMO_POD = "hello"
DEMO_USER = "dev@kubegate.local"


def _grant_and_wait(
    gateway: GatewayServer, admin: str, cluster_id: str, agent: AgentProcess, console: Console
) -> str:
    """Wait for the agent, grant the demo user ``view`` on the demo namespace, and wait
    until the agent reports it applied; answers what happened, for the summary."""
    deadline = time.monotonic() + 60
    while not gateway.call(admin, "GET", f"/api/v1/clusters/{cluster_id}")["online"]:
        agent.check_running()
        if time.monotonic() > deadline:
            return "not applied: the agent did not connect (see its log)"
        time.sleep(0.1)
    console.print("agent connected; granting the demo user view on the demo namespace")
    started = time.monotonic()
    grant = gateway.grant(admin, cluster_id, DEMO_USER, "view", DEMO_NAMESPACE)
    while (status := gateway.grant_status(admin, cluster_id, grant["id"])) not in (
        "applied",
        "failed",
    ):
        if time.monotonic() > deadline:
            return f"still {status} after 60 s (see the agent's log)"
        time.sleep(0.05)
    return f"{status} by the agent in {time.monotonic() - started:.2f} s"


def run_demo(stop: threading.Event, workdir: Path | None, console: Console) -> None:
    """Start everything, print how to use it, block until ``stop`` is set or Ctrl-C."""
    console.print("[bold]kubegate demo[/bold]: preparing the local test environment")
    ensure_environment(report=console.print)
    keep = workdir is not None
    root = workdir or Path(tempfile.mkdtemp(prefix="kubegate-demo-"))
    echo = EchoServer()
    plane = ControlPlane(workdir=root / "control-plane", report=console.print)
    gateway = GatewayServer(root / "kubegate")
    agent: AgentProcess | None = None
    try:
        creds = plane.start()
        gateway.start()
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
            client.create(Namespace.from_dict({"metadata": {"name": DEMO_NAMESPACE}}))
            create_fake_pod(
                client,
                DEMO_NAMESPACE,
                DEMO_POD,
                root / "pods",
                log_lines=("hello from kubegate's demo pod",),
                target_port=echo.port,
            )
        finally:
            client.close()
        granted = _grant_and_wait(gateway, admin, cluster["id"], agent, console)
        kubectl = f"kubectl --kubeconfig {creds.kubeconfig}"
        console.print()
        console.print(f"Kubernetes API: {creds.server}")
        console.print(f"kubeconfig:     {creds.kubeconfig}")
        console.print(f"kubegate API:   {gateway.url}  (CA: {gateway.ca_file})")
        console.print(f"kubegate admin: {gateway.admin_email} / {gateway.admin_password}")
        console.print(f"cluster 'local' registered through the API: id {cluster['id']}")
        console.print(f"agent:          connected (log: {agent.log})")
        console.print(f"grant:          {DEMO_USER} view on namespace {DEMO_NAMESPACE}: {granted}")
        console.print()
        console.print("Try:")
        console.print(f"  {kubectl} get pods -n {DEMO_NAMESPACE}", soft_wrap=True)
        console.print(f"  {kubectl} logs -n {DEMO_NAMESPACE} {DEMO_POD}", soft_wrap=True)
        console.print(
            f"  {kubectl} exec -n {DEMO_NAMESPACE} {DEMO_POD} -- uname -a", soft_wrap=True
        )
        console.print(
            f"  {kubectl} auth can-i list pods -n {DEMO_NAMESPACE} --as kubegate:{DEMO_USER}",
            soft_wrap=True,
        )
        console.print(
            f"  {kubectl} get rolebindings -n {DEMO_NAMESPACE} "
            "-l app.kubernetes.io/managed-by=kubegate",
            soft_wrap=True,
        )
        curl = f"curl --cacert {gateway.ca_file} -H 'Authorization: Bearer {admin}'"
        console.print(f"  {curl} {gateway.url}/api/v1/clusters", soft_wrap=True)
        console.print(
            f"  {curl} {gateway.url}/api/v1/clusters/{cluster['id']}/access/grants",
            soft_wrap=True,
        )
        console.print()
        console.print("Press Ctrl-C to stop.")
        try:
            while not stop.wait(1.0):
                for proc in [*plane.processes(), *gateway.processes(), *agent.processes()]:
                    proc.check_running()
        except KeyboardInterrupt:
            pass
    finally:
        console.print("stopping ...")
        started = time.monotonic()
        if agent is not None:
            agent.stop()
        gateway.stop()
        plane.stop()
        echo.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        console.print(f"stopped in {time.monotonic() - started:.1f} s")
