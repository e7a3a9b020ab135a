"""What the proxy benchmark sets up on the stack before it measures: the objects it reads, a
member with a cluster-admin grant the agent applied, ``kubectl proxy``, the relay floor, and
the ways to reach the same kube-apiserver (:class:`Paths`)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace

from benchmarks.load_protocol import Target
from benchmarks.stack import BenchmarkFailed, Stack, cpu_seconds
from kubegate.agent.desired import DEFAULT_USER_PREFIX
from kubegate.tunnel.exchange import KUBEGATE_GROUP
from testenv import components
from testenv.processes import free_port, terminate

GET_NAMESPACE = "bench-get"
LIST_NAMESPACE = "bench-list"
WATCH_NAMESPACE = "bench-watch"
FORWARD_NAMESPACE = "bench-pf"
GET_NAME = "target"
CONFIGMAP_VALUE = "v" * 256
"""Each ConfigMap's one value: with its metadata a LIST item is about 0.5 KB of JSON."""


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def ensure_namespace(kube: Client, name: str) -> None:
    try:
        kube.create(Namespace(metadata=ObjectMeta(name=name)))
    except ApiError as exc:
        if exc.status.code != 409:
            raise


def create_configmaps(kube: Client, list_size: int) -> None:
    """The object the GET reads, and ``list_size`` ConfigMaps in :data:`LIST_NAMESPACE`."""
    for namespace in (GET_NAMESPACE, LIST_NAMESPACE, WATCH_NAMESPACE, FORWARD_NAMESPACE):
        ensure_namespace(kube, namespace)
    kube.create(
        ConfigMap(
            metadata=ObjectMeta(name=GET_NAME, namespace=GET_NAMESPACE),
            data={"value": CONFIGMAP_VALUE},
        )
    )
    for index in range(list_size):
        kube.create(
            ConfigMap(
                metadata=ObjectMeta(name=f"cm-{index:05d}", namespace=LIST_NAMESPACE),
                data={"value": CONFIGMAP_VALUE},
            )
        )


class KubectlProxy:
    """``kubectl proxy`` (the system kubectl) on a free loopback port, as the cluster admin."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.port = free_port()
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                str(components.SYSTEM_KUBECTL),
                "proxy",
                f"--port={self.port}",
                f"--kubeconfig={kubeconfig}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise BenchmarkFailed(f"kubectl proxy exited ({self.proc.returncode}); see {log}")
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/version").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 30, "kubectl proxy")

    def close(self) -> None:
        terminate(self.proc)
        self._log.close()


class RelayFloor:
    """Two :mod:`benchmarks.relay_floor` processes in a chain, in kubegate's topology: the
    front ends the client's TLS with the gateway's certificate, the back calls the apiserver
    with the admin's client certificate. The cheapest two-process Python path there is."""

    def __init__(self, stack: Stack, log: Path) -> None:
        tls = stack.server.data_dir / "tls"
        credentials = stack.control_plane.credentials
        url = urlsplit(credentials.server)
        self.ca_file = stack.server.ca_file
        self.port = free_port()
        back_port = free_port()
        self._log = log.open("ab")
        own = ["--cert", str(tls / "server.crt"), "--key", str(tls / "server.key")]
        self.back = self._start(
            [
                f"--port={back_port}",
                *own,
                f"--upstream={url.hostname}:{url.port}",
                f"--upstream-ca={credentials.ca_file}",
                f"--client-cert={credentials.admin_cert_file}",
                f"--client-key={credentials.admin_key_file}",
            ]
        )
        self.front = self._start(
            [
                f"--port={self.port}",
                *own,
                f"--upstream=127.0.0.1:{back_port}",
                f"--upstream-ca={self.ca_file}",
            ]
        )

    def _start(self, arguments: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.relay_floor", *arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise BenchmarkFailed(f"the relay floor did not start ({proc.poll()}); see the log")
        return proc

    def close(self) -> None:
        for proc in (self.front, self.back):
            terminate(proc)
        self._log.close()


@dataclass(frozen=True, slots=True)
class Member:
    """The benchmark's member: cluster-admin through a grant the agent applied."""

    email: str
    api_token: str
    grant_id: str
    kubeconfig: Path


class Paths:
    """The three ways to the same kube-apiserver, and the member that uses kubegate's."""

    def __init__(self, stack: Stack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        self.kubectl_proxy: KubectlProxy | None = None
        self.relay_floor: RelayFloor | None = None
        self.member: Member | None = None

    def wait_online(self, timeout: float = 60) -> None:
        def online() -> bool:
            cluster = self.stack.server.call(
                self.stack.token, "GET", f"/api/v1/clusters/{self.stack.cluster_id}"
            )
            return bool(cluster["online"])

        wait_until(online, timeout, "the agent to connect")

    def add_member(self, role: str = "cluster-admin") -> Member:
        """A member with a password, ``role`` on the whole cluster (applied), a kubeconfig."""
        server, admin = self.stack.server, self.stack.token
        email = f"bench-{uuid.uuid4().hex[:8]}@bench.example"
        password = uuid.uuid4().hex
        server.call(
            admin,
            "POST",
            "/api/v1/users",
            {"email": email, "display_name": "bench", "password": password},
        )
        grant = server.call(
            admin,
            "POST",
            f"/api/v1/clusters/{self.stack.cluster_id}/access/grants",
            {"email": email, "role": role},
        )
        grant_id = str(grant["id"])
        wait_until(
            lambda: server.grant_status(admin, self.stack.cluster_id, grant_id) == "applied",
            60,
            "the member's grant to be applied",
        )
        with server.client() as client:
            login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
            login.raise_for_status()
            api_token = str(login.json()["token"])
            answer = client.post(
                f"/api/v1/clusters/{self.stack.cluster_id}/kubeconfig",
                headers={"Authorization": f"Bearer {api_token}"},
            )
            answer.raise_for_status()
        kubeconfig = self.workdir / "member.kubeconfig"
        kubeconfig.write_text(answer.text)
        kubeconfig.chmod(0o600)
        self.member = Member(email, api_token, grant_id, kubeconfig)
        return self.member

    def mint_token(self) -> str:
        """A fresh kube token for the member (kube tokens live 15 minutes by default)."""
        assert self.member is not None
        minted = self.stack.server.call(
            self.member.api_token, "POST", f"/api/v1/clusters/{self.stack.cluster_id}/k8s-token"
        )
        return str(minted["token"])

    def start_kubectl_proxy(self) -> None:
        self.kubectl_proxy = KubectlProxy(
            self.stack.control_plane.credentials.kubeconfig, self.workdir / "kubectl-proxy.log"
        )

    def start_relay_floor(self) -> None:
        self.relay_floor = RelayFloor(self.stack, self.workdir / "relay-floor.log")

    def direct(self) -> Target:
        """kube-apiserver itself, with the admin's client certificate."""
        credentials = self.stack.control_plane.credentials
        url = urlsplit(credentials.server)
        return Target(
            host=url.hostname or "127.0.0.1",
            port=url.port or 443,
            ca_file=str(credentials.ca_file),
            cert_file=str(credentials.admin_cert_file),
            key_file=str(credentials.admin_key_file),
        )

    def impersonating(self) -> Target:
        """kube-apiserver itself as the agent calls it: the admin's certificate (the stack's
        agent acts with the admin kubeconfig) impersonating the member, so the apiserver
        does the same work as on kubegate's path."""
        assert self.member is not None
        return dataclasses.replace(
            self.direct(),
            headers=(
                ("Impersonate-User", f"{DEFAULT_USER_PREFIX}{self.member.email}"),
                ("Impersonate-Group", KUBEGATE_GROUP),
            ),
        )

    def via_kubectl_proxy(self) -> Target:
        """``kubectl proxy``: plain HTTP on loopback, it adds the admin's credentials."""
        assert self.kubectl_proxy is not None
        return Target(host="127.0.0.1", port=self.kubectl_proxy.port)

    def via_relay_floor(self) -> Target:
        """Two chained byte relays (:class:`RelayFloor`), the impersonation headers sent by
        the client, so the apiserver does kubegate's work."""
        assert self.relay_floor is not None
        return dataclasses.replace(
            self.impersonating(),
            port=self.relay_floor.port,
            ca_file=str(self.relay_floor.ca_file),
            cert_file=None,
            key_file=None,
        )

    def via_kubegate(self) -> Target:
        """kubegate's proxy with a freshly minted kube token of the member's."""
        server = self.stack.server
        return Target(
            host="127.0.0.1",
            port=server.proxy_port,
            ca_file=str(server.ca_file),
            headers=(("Authorization", f"Bearer {self.mint_token()}"),),
            prefix=f"/clusters/{self.stack.cluster_id}",
        )

    def api(self, token: str) -> Target:
        """kubegate's REST API (uvicorn) as ``token``."""
        server = self.stack.server
        return Target(
            host="127.0.0.1",
            port=server.port,
            ca_file=str(server.ca_file),
            headers=(("Authorization", f"Bearer {token}"),),
        )

    def close(self) -> None:
        if self.kubectl_proxy is not None:
            self.kubectl_proxy.close()
            self.kubectl_proxy = None
        if self.relay_floor is not None:
            self.relay_floor.close()
            self.relay_floor = None


def machine_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy so far (all CPUs: user, nice, system,
    irq, softirq and steal; guest time is already inside user), and of that softirq (the
    kernel's network processing, which no process is charged for)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    tick = os.sysconf("SC_CLK_TCK")
    return busy / tick, fields[6] / tick


def every_process() -> dict[int, tuple[str, float]]:
    """Every process's name and CPU seconds so far."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            found[int(entry.name)] = (name, cpu_seconds(int(entry.name)))
        except (OSError, ValueError, IndexError):
            continue
    return found


class CpuMeter:
    """CPU seconds each named process used between :meth:`start` and :meth:`stop`, and
    three more: ``machine`` (every CPU of the machine), ``softirq`` (part of it) and
    ``others`` (the machine minus softirq and the named processes: the rest of the stack,
    the kernel's threads, whatever else shares the machine). :attr:`others_top` names the
    processes behind ``others``."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._start: dict[str, float] = {}
        self._started = 0.0
        self._processes: dict[int, tuple[str, float]] = {}
        self.wall_s = 0.0
        """Seconds between the last :meth:`start` and :meth:`stop`."""
        self.others_top: dict[str, float] = {}
        """The processes outside :attr:`pids` that used the most CPU (name: seconds)."""

    def _now(self) -> dict[str, float]:
        found = {}
        for role, pid in self.pids.items():
            try:
                found[role] = cpu_seconds(pid)
            except (OSError, IndexError, ValueError):
                continue
        found["machine"], found["softirq"] = machine_seconds()
        return found

    def start(self) -> None:
        self._processes = every_process()
        self._start = self._now()
        self._started = time.monotonic()

    def stop(self) -> dict[str, float]:
        now = self._now()
        self.wall_s = time.monotonic() - self._started
        used = {
            role: round(now[role] - self._start[role], 3) for role in now if role in self._start
        }
        mine = sum(v for role, v in used.items() if role != "machine")
        used["others"] = round(max(0.0, used["machine"] - mine), 3)
        ours = set(self.pids.values())
        deltas: dict[str, float] = {}
        for pid, (name, seconds) in every_process().items():
            if pid in ours:
                continue
            before = self._processes.get(pid, (name, 0.0))[1]
            label = f"{name} ({pid})"
            deltas[label] = round(seconds - before, 2)
        top = sorted(deltas.items(), key=lambda item: -item[1])[:3]
        self.others_top = {name: seconds for name, seconds in top if seconds >= 0.05}
        return used
