"""The long-lived phases of the proxy benchmark: thousands of open watches through kubegate,
and bulk bytes through ``kubectl port-forward`` (direct and through kubegate)."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from benchmarks.load_protocol import LoadResult, WatchEventResult, WatchOpenResult
from benchmarks.proxy_phases import ProfiledRun, RequestPhases
from benchmarks.proxy_setup import FORWARD_NAMESPACE, WATCH_NAMESPACE, CpuMeter
from benchmarks.stack import BenchmarkFailed, memory_kib
from testenv import components
from testenv.pods import EchoServer, create_fake_pod
from testenv.processes import ProcessFailed, terminate

Say = Callable[[str], None]
MIB = 1 << 20
IDLE_SECONDS = 10.0
WATCH_ROLES = ("server", "agent", "kube-apiserver")
GET_SAMPLES = 300
PROFILE_SECONDS = 8.0


@dataclass(frozen=True, slots=True)
class WatchStep:
    """The state with ``wanted`` watches asked for: how many opened, what it cost, and
    whether an event made afterwards reached them."""

    wanted: int
    opened: WatchOpenResult
    open_cpu_s: dict[str, float]
    open_others_top: dict[str, float]
    idle_cpu_pct: dict[str, float]
    idle_others_top: dict[str, float]
    memory_kib: dict[str, dict[str, int]]
    get_while_open: LoadResult | None
    direct_get_while_open: LoadResult | None
    """The same GETs straight to the apiserver: what the open watches cost it, apart from
    what they cost kubegate."""
    event: WatchEventResult | None
    processes_alive: dict[str, bool]


@dataclass(frozen=True, slots=True)
class WatchReport:
    """Every step, memory before the first and after closing them all."""

    path: str
    baseline_memory_kib: dict[str, dict[str, int]]
    baseline_get: LoadResult | None
    baseline_direct_get: LoadResult | None
    steps: list[WatchStep]
    profiled_get: ProfiledRun | None
    closed: int
    after_close_memory_kib: dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class ForwardRun:
    """``payload_mib`` echoed through one ``kubectl port-forward``."""

    path: str
    transport: str
    payload_mib: int
    seconds: float
    mib_per_s: float
    intact: bool
    cpu_s: dict[str, float]
    error: str = ""


class StreamPhases:
    """Watches and port-forwards on the running stack."""

    def __init__(self, requests: RequestPhases) -> None:
        self.requests = requests
        self.stack = requests.stack
        self.paths = requests.paths
        self.generator = requests.generator
        self.say = requests.say

    def _pids(self, roles: Sequence[str]) -> dict[str, int]:
        pids = dict(self.stack.pids())
        pids["generator"] = self.generator.pid
        return {role: pids[role] for role in roles if role in pids}

    def _memory(self) -> dict[str, dict[str, int]]:
        found = {}
        for role, pid in self._pids((*WATCH_ROLES, "generator")).items():
            try:
                found[role] = memory_kib(pid)
            except OSError:
                continue
        return found

    def _alive(self) -> dict[str, bool]:
        alive = {}
        for role, processes in (
            ("server", self.stack.server.processes()),
            ("agent", self.stack.agent.processes() if self.stack.agent else []),
        ):
            try:
                for process in processes:
                    process.check_running()
                alive[role] = bool(processes)
            except ProcessFailed:
                alive[role] = False
        return alive

    # -- watches ------------------------------------------------------------------------

    def _get(self, get_path: str, *, direct: bool = False) -> LoadResult | None:
        """A short GET run at c=1 through kubegate (what one kubectl sees meanwhile), or
        ``direct`` to the apiserver."""
        target = self.paths.direct() if direct else self.paths.via_kubegate()
        try:
            return self.generator.load(target, get_path, concurrency=1, requests=GET_SAMPLES)
        except (BenchmarkFailed, OSError) as exc:
            self.say(f"GET while watches are open failed: {exc}")
            return None

    def watches(
        self,
        kube: Client,
        counts: Sequence[int],
        parallel: int,
        deadline_s: float,
        get_path: str,
        profile_dir: Path | None = None,
    ) -> WatchReport:
        """Open watches through kubegate up to each count in turn (the later ones added to
        the earlier ones), measure, run a few GETs, then make a ConfigMap and count who saw
        it."""
        path = f"/api/v1/namespaces/{WATCH_NAMESPACE}/configmaps?watch=1&resourceVersion=0"
        baseline = self._memory()
        baseline_get = self._get(get_path)
        baseline_direct_get = self._get(get_path, direct=True)
        steps = []
        for wanted in counts:
            target = self.paths.via_kubegate()
            meter = CpuMeter(self._pids((*WATCH_ROLES, "generator")))
            meter.start()
            opened = WatchOpenResult(
                **self.generator.call(
                    "watch_open", target=asdict(target), path=path, total=wanted, parallel=parallel
                )
            )
            open_cpu = meter.stop()
            open_others = meter.others_top
            self.say(
                f"watches: {opened.open} open ({opened.opened_now} new in {opened.seconds:.1f} s)"
                + (f"; failures {opened.failures}" if opened.failures else "")
                + f"; CPU s {open_cpu}, others {open_others}"
            )
            meter.start()
            time.sleep(IDLE_SECONDS)
            idle = {k: round(100 * v / IDLE_SECONDS, 1) for k, v in meter.stop().items()}
            idle_others = meter.others_top
            memory = self._memory()
            get = self._get(get_path)
            direct_get = self._get(get_path, direct=True)
            if get is not None and direct_get is not None:
                self.say(
                    f"watches: GET c=1 meanwhile p50 {get.latency.p50:.2f} ms, "
                    f"p99 {get.latency.p99:.2f} ms, {get.per_s:.0f}/s; direct p50 "
                    f"{direct_get.latency.p50:.2f} ms, p99 {direct_get.latency.p99:.2f} ms"
                )
            event = None
            if opened.open:
                marker = f"marker-{wanted}"
                # Armed first: the first watches get the event before watch_expect arrives.
                self.generator.call("watch_arm", marker=marker)
                since = time.monotonic()
                kube.create(ConfigMap(metadata=ObjectMeta(name=marker, namespace=WATCH_NAMESPACE)))
                event = WatchEventResult.from_json(
                    self.generator.call(
                        "watch_expect", marker=marker, since=since, deadline_s=deadline_s
                    )
                )
                self.say(
                    f"watches: event {marker} reached {event.received} of {event.watches} "
                    f"(p50 {event.delivery.p50:.0f} ms, max {event.delivery.max:.0f} ms); "
                    f"seen so far by marker: {event.seen_by_marker}"
                )
            alive = self._alive()
            steps.append(
                WatchStep(
                    wanted,
                    opened,
                    open_cpu,
                    open_others,
                    idle,
                    idle_others,
                    memory,
                    get,
                    direct_get,
                    event,
                    alive,
                )
            )
            if not all(alive.values()):
                self.say(f"watches: a process died: {alive}")
                break
        profiled = None
        if profile_dir is not None and steps and steps[-1].opened.open:
            # Where a request's time goes with the most watches open (c=1, so ~all of it is
            # one request's path).
            profiled = self.requests.profiled_get(
                get_path, 1, PROFILE_SECONDS, profile_dir, what="get-with-watches"
            )
        closed = int(self.generator.call("watch_close")["closed"])
        time.sleep(5)
        return WatchReport(
            "kubegate",
            baseline,
            baseline_get,
            baseline_direct_get,
            steps,
            profiled,
            closed,
            self._memory(),
        )

    # -- port-forward -------------------------------------------------------------------

    def port_forward(
        self, kube: Client, payload_mib: int, transports: Sequence[str], workdir: Path
    ) -> list[ForwardRun]:
        """Echo ``payload_mib`` through ``kubectl port-forward`` to a kwok pod whose port
        reaches an echo server in this process: direct (admin) and through kubegate."""
        assert self.paths.member is not None
        runs = []
        echo = EchoServer()
        try:
            pod = create_fake_pod(
                kube, FORWARD_NAMESPACE, "echo", workdir / "pods", target_port=echo.port
            )
            block = os.urandom(MIB)
            kubeconfigs = {
                "direct": self.stack.control_plane.credentials.kubeconfig,
                "kubegate": self.paths.member.kubeconfig,
            }
            for transport in transports:
                for path, kubeconfig in kubeconfigs.items():
                    if path == "kubegate":  # the member's kubeconfig token may be old: renew
                        kubeconfig = self._fresh_kubeconfig(workdir)
                    runs.append(
                        self._forward_once(
                            path, transport, kubeconfig, pod.pod_port, block, payload_mib
                        )
                    )
        finally:
            echo.close()
        return runs

    def _fresh_kubeconfig(self, workdir: Path) -> Path:
        assert self.paths.member is not None
        text = self.paths.member.kubeconfig.read_text()
        token = self.paths.mint_token()
        renewed = re.sub(r"(?m)^(\s*token:\s*).*$", lambda m: m.group(1) + token, text)
        out = workdir / "member-renewed.kubeconfig"
        out.write_text(renewed)
        out.chmod(0o600)
        return out

    def _forward_once(
        self,
        path: str,
        transport: str,
        kubeconfig: Path,
        pod_port: int,
        block: bytes,
        payload_mib: int,
    ) -> ForwardRun:
        env = dict(
            os.environ, KUBECTL_PORT_FORWARD_WEBSOCKETS=str(transport == "websocket").lower()
        )
        proc = subprocess.Popen(
            [
                str(components.SYSTEM_KUBECTL),
                "port-forward",
                "-n",
                FORWARD_NAMESPACE,
                "pod/echo",
                f":{pod_port}",
                f"--kubeconfig={kubeconfig}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        pids = self._pids(("server", "agent", "kube-apiserver", "kwok"))
        pids["kubectl"] = proc.pid
        pids["benchmark"] = os.getpid()  # the echo server and the client
        meter = CpuMeter(pids)
        try:
            port = _forwarded_port(proc)
            meter.start()
            seconds, intact = _echo(port, block, payload_mib)
            cpu = meter.stop()
        except (BenchmarkFailed, OSError) as exc:
            self.say(f"port-forward {path}/{transport} failed: {exc}")
            return ForwardRun(path, transport, payload_mib, 0.0, 0.0, False, {}, str(exc))
        finally:
            terminate(proc)
        rate = round(payload_mib / seconds, 1)
        self.say(f"port-forward {path:>8}/{transport:<9} {payload_mib} MiB: {rate} MiB/s")
        return ForwardRun(path, transport, payload_mib, round(seconds, 3), rate, intact, cpu)


def _forwarded_port(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    """The local port ``kubectl port-forward`` printed, or fail with what it said."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    said = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if not line:
            break
        said.append(line.strip())
        match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
        if match:
            return int(match.group(1))
    raise BenchmarkFailed(f"kubectl port-forward did not start: {' | '.join(said)[-400:]}")


def _echo(port: int, block: bytes, payload_mib: int) -> tuple[float, bool]:
    """Send ``payload_mib`` copies of ``block`` and read them back; seconds from the first
    byte sent to the last received, and whether every byte came back as sent."""
    total = len(block) * payload_mib
    received = bytearray(total)
    view = memoryview(received)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(block)  # one untimed round trip: the stream is open end to end
        got = 0
        while got < len(block):
            n = sock.recv_into(view[got : len(block)])
            if not n:
                raise BenchmarkFailed("the port-forward closed during the warm-up")
            got += n
        failure: list[BaseException] = []

        def send() -> None:
            try:
                for _ in range(payload_mib):
                    sock.sendall(block)
            except OSError as exc:
                failure.append(exc)

        sender = threading.Thread(target=send)
        started = time.perf_counter()
        sender.start()
        got = 0
        while got < total:
            n = sock.recv_into(view[got:], min(total - got, 4 * MIB))
            if not n:
                raise BenchmarkFailed(f"the port-forward closed after {got} of {total} bytes")
            got += n
        seconds = time.perf_counter() - started
        sender.join()
    if failure:
        raise BenchmarkFailed(f"sending failed: {failure[0]}")
    intact = all(view[i * len(block) : (i + 1) * len(block)] == block for i in range(payload_mib))
    return seconds, intact
