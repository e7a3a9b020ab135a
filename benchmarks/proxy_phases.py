"""The request phases of the proxy benchmark (``benchmarks/proxy.py``): GET and LIST on the
three paths, token mints, and the profiled run; each returns what it measured.

Watches and port-forward, the long-lived streams, are in ``benchmarks/proxy_streams.py``
(which uses :class:`RequestPhases` for its GETs and its profile).
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import proxy_profile
from benchmarks.load_protocol import Latency, LoadGenerator, LoadResult, Target
from benchmarks.proxy_profile import Profile
from benchmarks.proxy_setup import CpuMeter, Paths
from benchmarks.stack import Stack

Say = Callable[[str], None]
PATHS = ("direct", "impersonating", "kubectl-proxy", "relay-floor", "kubegate")
WARMUP = 5
"""Untimed requests on each connection before the clock starts (TLS handshakes, caches)."""
CPU_ROLES = (
    "generator",
    "server",
    "agent",
    "kube-apiserver",
    "etcd",
    "kubectl-proxy",
    "relay-front",
    "relay-back",
    "kube-controller-manager",
    "kwok",
)


@dataclass(frozen=True, slots=True)
class Level:
    """A concurrency and how many timed requests to send at it."""

    concurrency: int
    requests: int

    @classmethod
    def parse_list(cls, text: str) -> tuple[Level, ...]:
        """``"1:2000,16:5000"`` → two levels."""
        levels = []
        for part in text.split(","):
            if part:
                concurrency, _, requests = part.partition(":")
                levels.append(cls(int(concurrency), int(requests)))
        return tuple(levels)


@dataclass(frozen=True, slots=True)
class PathRun:
    """One load run on one path: the generator's numbers and every process's CPU cost."""

    path: str
    load: LoadResult
    cpu_s: dict[str, float]
    cpu_us_per_request: dict[str, float]
    machine_busy_pct: float
    others_top: dict[str, float]


@dataclass(frozen=True, slots=True)
class Comparison:
    """A proxied path against direct at one concurrency."""

    path: str
    concurrency: int
    added_p50_ms: float
    added_p99_ms: float
    throughput_pct_of_direct: float


@dataclass(frozen=True, slots=True)
class ProfiledRun:
    """A load run with py-spy attached to the processes that serve it."""

    what: str
    load: LoadResult
    cpu_s: dict[str, float]
    profiles: list[Profile]
    note: str


class RequestPhases:
    """Runs loads from the generator process and meters every process while they run."""

    def __init__(
        self,
        stack: Stack,
        paths: Paths,
        generator: LoadGenerator,
        say: Say,
        compared: Sequence[str] = PATHS,
        rounds: int = 1,
    ) -> None:
        self.stack = stack
        self.paths = paths
        self.generator = generator
        self.say = say
        self.compared = tuple(compared)
        """The paths the GET and LIST phases measure (direct is always among them)."""
        self.rounds = rounds
        """How many turns each path takes at each level (:meth:`levels`)."""

    def pids(self) -> dict[str, int]:
        found = dict(self.stack.pids())
        found["generator"] = self.generator.pid
        if self.paths.kubectl_proxy is not None:
            found["kubectl-proxy"] = self.paths.kubectl_proxy.proc.pid
        if self.paths.relay_floor is not None:
            found["relay-front"] = self.paths.relay_floor.front.pid
            found["relay-back"] = self.paths.relay_floor.back.pid
        return {role: pid for role, pid in found.items() if role in CPU_ROLES}

    def target(self, path: str) -> Target:
        if path == "direct":
            return self.paths.direct()
        if path == "impersonating":
            return self.paths.impersonating()
        if path == "kubectl-proxy":
            return self.paths.via_kubectl_proxy()
        if path == "relay-floor":
            return self.paths.via_relay_floor()
        return self.paths.via_kubegate()

    def run(
        self,
        path: str,
        api_path: str,
        level: Level,
        *,
        method: str = "GET",
        target: Target | None = None,
        duration_s: float = 0.0,
        samples: list[float] | None = None,
    ) -> PathRun:
        """One load run on one path, metered; ``samples`` (when given) receives every timed
        request's latency in seconds."""
        meter = CpuMeter(self.pids())
        target = target or self.target(path)
        meter.start()
        load, latencies = self.generator.load_with_samples(
            target,
            api_path,
            method=method,
            concurrency=level.concurrency,
            requests=level.requests,
            duration_s=duration_s,
            warmup=WARMUP,
        )
        cpu = meter.stop()
        if samples is not None:
            samples += latencies
        sent = load.requests + WARMUP * level.concurrency
        per_request = {role: round(s / sent * 1e6, 1) for role, s in cpu.items()}
        busy = cpu["machine"] / meter.wall_s / (os.cpu_count() or 1) if meter.wall_s else 0.0
        run = PathRun(path, load, cpu, per_request, round(100 * busy, 1), meter.others_top)
        self.say(
            f"{path:>13} c={level.concurrency:<3} {load.requests} requests: "
            f"{load.per_s:.0f}/s, p50 {load.latency.p50:.2f} ms, p99 {load.latency.p99:.2f} ms"
            + (f", statuses {load.statuses}" if set(load.statuses) != {"200"} else "")
            + (f", errors {load.errors}" if load.errors else "")
            + f" (machine {100 * busy:.0f} % busy; others {cpu['others']:.1f} CPU s"
            + (f": {meter.others_top}" if meter.others_top else "")
            + ")"
        )
        return run

    def levels(self, api_path: str, levels: Sequence[Level]) -> list[PathRun]:
        """Every level on every path. At each level the paths take turns :attr:`rounds`
        times, each turn a share of the requests, and each path's turns are merged: a machine
        that slows down or speeds up during a level (a shared host does) then weighs on every
        path alike, instead of on whichever path's turn it was."""
        found: list[PathRun] = []
        for level in levels:
            share = Level(level.concurrency, max(1, level.requests // self.rounds))
            turns: dict[str, list[PathRun]] = {path: [] for path in self.compared}
            samples: dict[str, list[float]] = {path: [] for path in self.compared}
            for _ in range(self.rounds):
                for path in self.compared:
                    turns[path].append(self.run(path, api_path, share, samples=samples[path]))
            merged = [merge_runs(turns[path], samples[path]) for path in self.compared]
            for run in merged:
                self.say(
                    f"{run.path:>13} c={level.concurrency:<3} all {self.rounds} turns: "
                    f"{run.load.per_s:.0f}/s, p50 {run.load.latency.p50:.2f} ms, "
                    f"p99 {run.load.latency.p99:.2f} ms"
                )
            found += merged
        return found

    def mints(self, levels: Sequence[Level]) -> list[PathRun]:
        """``POST /api/v1/clusters/{id}/k8s-token`` as the member, at each concurrency."""
        assert self.paths.member is not None
        target = self.paths.api(self.paths.member.api_token)
        api_path = f"/api/v1/clusters/{self.stack.cluster_id}/k8s-token"
        return [self.run("api", api_path, level, method="POST", target=target) for level in levels]

    def warm_up(self, api_path: str) -> None:
        """An untimed run on every path: first connections, the generator's first TLS
        contexts, caches in every process."""
        for path in self.compared:
            target = self.target(path)
            self.generator.load(target, api_path, concurrency=4, requests=200, warmup=WARMUP)

    def profiled(
        self, what: str, roles: Sequence[str], seconds: float, out: Path, run: Callable[[], PathRun]
    ) -> ProfiledRun:
        """``run`` (a load lasting a little over ``seconds``) with py-spy sampling ``roles``."""
        pids = self.stack.pids()
        samplers = {
            role: proxy_profile.start(pids[role], seconds, out / f"py-spy-{what}-{role}.txt")
            for role in roles
        }
        time.sleep(0.5)  # py-spy attaches
        done = run()
        profiles = []
        for role, sampler in samplers.items():
            sampler.wait(60)
            raw = out / f"py-spy-{what}-{role}.txt"
            if raw.exists():
                profiles.append(proxy_profile.summarise(role, raw, seconds))
        note = (
            f"py-spy record --rate {proxy_profile.RATE} --threads --nolineno --format raw, "
            f"{seconds:.0f} s; the load ran slower while sampled"
        )
        return ProfiledRun(what, done.load, done.cpu_s, profiles, note)

    def profiled_get(
        self, api_path: str, concurrency: int, seconds: float, out: Path, what: str = "get"
    ) -> ProfiledRun:
        level = Level(concurrency, 0)
        return self.profiled(
            what,
            ("server", "agent"),
            seconds,
            out,
            lambda: self.run("kubegate", api_path, level, duration_s=seconds + 1.0),
        )

    def profiled_list(self, api_path: str, seconds: float, out: Path) -> ProfiledRun:
        level = Level(1, 0)
        return self.profiled(
            "list",
            ("server", "agent"),
            seconds,
            out,
            lambda: self.run("kubegate", api_path, level, duration_s=seconds + 1.0),
        )

    def profiled_mints(self, concurrency: int, seconds: float, out: Path) -> ProfiledRun:
        assert self.paths.member is not None
        target = self.paths.api(self.paths.member.api_token)
        api_path = f"/api/v1/clusters/{self.stack.cluster_id}/k8s-token"
        level = Level(concurrency, 0)
        return self.profiled(
            "mint",
            ("server",),
            seconds,
            out,
            lambda: self.run(
                "api", api_path, level, method="POST", target=target, duration_s=seconds + 1.0
            ),
        )


def merge_runs(turns: Sequence[PathRun], samples: Sequence[float]) -> PathRun:
    """One path's turns at one level as one run: requests, time and CPU added up, latency
    percentiles over every sample of every turn."""
    first = turns[0]
    loads = [turn.load for turn in turns]
    requests = sum(load.requests for load in loads)
    wall = sum(load.wall_s for load in loads)
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    cpu: defaultdict[str, float] = defaultdict(float)
    others: defaultdict[str, float] = defaultdict(float)
    for turn in turns:
        statuses.update(turn.load.statuses)
        errors.update(turn.load.errors)
        for role, seconds in turn.cpu_s.items():
            cpu[role] += seconds
        for name, seconds in turn.others_top.items():
            others[name] += seconds
    load = LoadResult(
        requests=requests,
        concurrency=first.load.concurrency,
        wall_s=round(wall, 3),
        per_s=round(requests / wall, 1) if wall else 0.0,
        latency=Latency.of_seconds(samples),
        statuses=dict(statuses),
        errors=dict(errors),
        body_bytes_mean=(
            sum(load.body_bytes_mean * load.requests for load in loads) // requests
            if requests
            else 0
        ),
        generator_cpu_s=round(sum(load.generator_cpu_s for load in loads), 3),
    )
    sent = requests + WARMUP * first.load.concurrency * len(turns)
    cpu_s = {role: round(seconds, 3) for role, seconds in cpu.items()}
    busy = sum(turn.machine_busy_pct * turn.load.wall_s for turn in turns) / wall if wall else 0.0
    return PathRun(
        first.path,
        load,
        cpu_s,
        {role: round(seconds / sent * 1e6, 1) for role, seconds in cpu_s.items()},
        round(busy, 1),
        {name: round(others[name], 2) for name in sorted(others, key=others.__getitem__)[-3:]},
    )


def compare(runs: Sequence[PathRun]) -> list[Comparison]:
    """Each proxied path against direct at each concurrency."""
    direct = {r.load.concurrency: r.load for r in runs if r.path == "direct"}
    found = []
    for run in runs:
        base = direct.get(run.load.concurrency)
        if run.path == "direct" or base is None:
            continue
        found.append(
            Comparison(
                path=run.path,
                concurrency=run.load.concurrency,
                added_p50_ms=round(run.load.latency.p50 - base.latency.p50, 3),
                added_p99_ms=round(run.load.latency.p99 - base.latency.p99, 3),
                throughput_pct_of_direct=round(100 * run.load.per_s / base.per_s, 1)
                if base.per_s
                else 0.0,
            )
        )
    return found
