"""Proxy benchmark: kubegate's Kubernetes API proxy against direct access and ``kubectl proxy``.

One run on the real stack (``benchmarks/stack.py``), the same kube-apiserver behind three
paths: **direct** (the admin's client certificate), **kubectl-proxy** (``kubectl proxy`` on
loopback HTTP, as the admin) and **kubegate** (the proxy, the tunnel, the agent; a member's
kube token, cluster-admin through a grant). The load comes from a separate process
(``benchmarks/proxy_load.py``) with one keep-alive connection per concurrent client.

1. **GET** one ConfigMap at each ``--get-levels`` concurrency on each path: latency,
   requests/s, and every process's CPU per request.
2. **LIST** ``--list-size`` ConfigMaps (JSON, no compression asked for) the same way.
3. **profile**: a kubegate GET run at c=16 with py-spy sampling the server and the agent.
4. **token mints**: ``POST /api/v1/clusters/{id}/k8s-token`` by one member.
5. **port-forward**: bytes echoed through ``kubectl port-forward`` to a kwok pod, direct and
   through kubegate, over WebSocket and SPDY.
6. **watches**: ``--watches`` concurrent watches through kubegate, each its own connection:
   memory and CPU of the server and the agent, and whether a new event reaches them all.

The server runs with the per-identity limits raised (:data:`SERVER_ENV`) so that they do not
interfere. ``python -m benchmarks.proxy --help``; ``make bench-proxy`` runs the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

import kubegate
from benchmarks.load_protocol import LoadGenerator
from benchmarks.proxy_phases import (
    PATHS,
    Comparison,
    Level,
    PathRun,
    ProfiledRun,
    RequestPhases,
    compare,
)
from benchmarks.proxy_report import Goal, goals, log_problems, open_files_limit, tables
from benchmarks.proxy_setup import (
    GET_NAME,
    GET_NAMESPACE,
    LIST_NAMESPACE,
    Paths,
    create_configmaps,
)
from benchmarks.proxy_streams import ForwardRun, StreamPhases, WatchReport
from benchmarks.results import REPO, Machine, machine, write_results
from benchmarks.stack import BenchmarkFailed, Stack
from testenv.processes import ProcessFailed

SERVER_ENV = {
    "KUBEGATE_PROXY_MAX_WATCHES": "20000",
    "KUBEGATE_PROXY_REQUESTS_PER_SECOND": "1000000",
    "KUBEGATE_PROXY_REQUEST_BURST": "1000000",
    "KUBEGATE_KUBE_TOKEN_MINTS_PER_MINUTE": "10000000",
}
PHASES = ("get", "list", "profile", "mint", "forward", "watch")
SETTLE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Options:
    """The command line."""

    get_levels: tuple[Level, ...]
    list_size: int
    list_levels: tuple[Level, ...]
    profile_seconds: float
    mint_levels: tuple[Level, ...]
    forward_mib: int
    forward_transports: tuple[str, ...]
    watches: tuple[int, ...]
    watch_parallel: int
    watch_deadline_s: float
    phases: tuple[str, ...]
    paths: tuple[str, ...]
    rounds: int
    profile_get_concurrency: int
    out: Path
    workdir: Path | None


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one run measured, as written under ``proxy`` in ``docs/benchmarks.json``."""

    machine: Machine
    kubegate_source: str
    options: dict[str, Any]
    server_env: dict[str, str]
    open_files: dict[str, str]
    total_s: float
    get: list[PathRun]
    get_vs_direct: list[Comparison]
    listing: list[PathRun]
    listing_vs_direct: list[Comparison]
    profiles: list[ProfiledRun]
    token_mint: list[PathRun]
    port_forward: list[ForwardRun]
    watches: WatchReport | None
    goals: list[Goal]
    failures: list[str]
    log_problems: dict[str, dict[str, Any]]


class Run:
    """One benchmark run: the phases in order, each allowed to fail without losing the rest."""

    def __init__(self, stack: Stack, options: Options, workdir: Path, console: Console) -> None:
        self.stack = stack
        self.options = options
        self.workdir = workdir
        self.console = console
        self.started = time.monotonic()
        self.failures: list[str] = []
        self.paths = Paths(stack, workdir)
        self.generator = LoadGenerator(workdir / "generator.log")
        self.requests = RequestPhases(
            stack,
            self.paths,
            self.generator,
            self.say,
            compared=options.paths,
            rounds=options.rounds,
        )
        self.streams = StreamPhases(self.requests)

    def say(self, line: str) -> None:
        self.console.print(f"[{time.monotonic() - self.started:6.1f} s] {line}")

    def phase(self, name: str, work: Callable[[], Any]) -> Any:
        if name not in self.options.phases:
            return None
        self.say(f"--- {name}")
        try:
            return work()
        except (BenchmarkFailed, ProcessFailed, OSError) as exc:
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            self.say(f"{name} failed: {exc}")
            return None

    def measure(self, info: Machine) -> Report:
        options = self.options
        kube = self.stack.control_plane.admin_client()
        try:
            self.paths.wait_online()
            create_configmaps(kube, options.list_size)
            self.paths.add_member("cluster-admin")
            self.paths.start_kubectl_proxy()
            self.paths.start_relay_floor()
            self.say(f"set up: {options.list_size} ConfigMaps, a cluster-admin member")
            # The apiserver and the controllers are still busy with what was just made.
            time.sleep(SETTLE_SECONDS)
            get_path = f"/api/v1/namespaces/{GET_NAMESPACE}/configmaps/{GET_NAME}"
            list_path = f"/api/v1/namespaces/{LIST_NAMESPACE}/configmaps"
            self.requests.warm_up(get_path)
            get = self.phase("get", lambda: self.requests.levels(get_path, options.get_levels))
            listing = self.phase(
                "list", lambda: self.requests.levels(list_path, options.list_levels)
            )
            seconds = options.profile_seconds
            profiles = [
                self.phase(
                    "profile",
                    lambda: self.requests.profiled_get(
                        get_path, options.profile_get_concurrency, seconds, self.workdir
                    ),
                ),
                self.phase(
                    "profile",
                    lambda: self.requests.profiled_list(list_path, seconds / 2, self.workdir),
                ),
                self.phase(
                    "profile",
                    lambda: self.requests.profiled_mints(16, seconds / 2, self.workdir),
                ),
            ]
            mints = self.phase("mint", lambda: self.requests.mints(options.mint_levels))
            forward = self.phase(
                "forward",
                lambda: self.streams.port_forward(
                    kube, options.forward_mib, options.forward_transports, self.workdir
                ),
            )
            watches = self.phase(
                "watch",
                lambda: self.streams.watches(
                    kube,
                    options.watches,
                    options.watch_parallel,
                    options.watch_deadline_s,
                    get_path,
                    self.workdir if "profile" in options.phases else None,
                ),
            )
            pids = self.stack.pids()
            open_files: dict[str, str] = {
                "benchmark": str(resource.getrlimit(resource.RLIMIT_NOFILE))
            }
            for role in ("server", "agent", "generator"):
                pid = self.generator.pid if role == "generator" else pids.get(role)
                if pid is not None:
                    open_files[role] = open_files_limit(pid)
        finally:
            kube.close()
        get_vs_direct = compare(get or [])
        return Report(
            machine=info,
            kubegate_source=str(Path(kubegate.__file__).resolve().parent),
            options=_options_json(options),
            server_env=SERVER_ENV,
            open_files=open_files,
            total_s=round(time.monotonic() - self.started, 1),
            get=get or [],
            get_vs_direct=get_vs_direct,
            listing=listing or [],
            listing_vs_direct=compare(listing or []),
            profiles=[p for p in profiles if p is not None]
            + ([watches.profiled_get] if watches and watches.profiled_get else []),
            token_mint=mints or [],
            port_forward=forward or [],
            watches=watches,
            goals=goals(get_vs_direct, forward or [], mints or [], watches),
            failures=self.failures,
            log_problems=log_problems(
                {"server": self.stack.server_log, "agent": self.stack.agent_log}
            ),
        )

    def close(self) -> None:
        self.generator.close()
        self.paths.close()


def _options_json(options: Options) -> dict[str, Any]:
    data = dataclasses.asdict(options)
    data.pop("workdir")
    data["out"] = str(options.out)
    return data


def parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.proxy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--get-levels", default="1:2000,16:5000,64:5000", help="concurrency:requests,...")
    add("--list-size", type=int, default=1000, help="ConfigMaps to LIST")
    add("--list-levels", default="1:100,8:200", help="concurrency:requests,... for LIST")
    add("--profile-seconds", type=float, default=15.0, help="py-spy sampling time")
    add("--mint-levels", default="1:300,16:2000,64:2000", help="concurrency:mints,...")
    add("--forward-mib", type=int, default=256, help="MiB echoed per port-forward run")
    add("--forward-transports", default="websocket,spdy", help="kubectl port-forward transports")
    add("--watches", default="1000,10000", help="open watch counts, in turn")
    add("--watch-parallel", type=int, default=100, help="watches being opened at once")
    add("--watch-deadline", type=float, default=60.0, help="seconds for an event to arrive")
    add("--phases", default=",".join(PHASES), help=f"subset of {','.join(PHASES)}")
    add(
        "--paths",
        default=",".join(PATHS),
        help=f"paths the GET and LIST phases compare, a subset of {','.join(PATHS)} "
        "(direct is always measured: the ratios need it)",
    )
    add(
        "--rounds",
        type=int,
        default=4,
        help="turns each path takes at each GET and LIST level (the level's requests split "
        "between them), so that a machine whose speed drifts weighs on every path alike",
    )
    add("--profile-get-concurrency", type=int, default=16, help="concurrency of the profiled GET")
    add("--out", type=Path, default=REPO / "docs" / "benchmarks.json")
    add("--workdir", type=Path, help="keep logs, profiles and data here (default: temp)")
    args = parser.parse_args(argv)
    phases = tuple(p for p in args.phases.split(",") if p)
    if not set(phases) <= set(PHASES):
        parser.error(f"--phases takes {', '.join(PHASES)}")
    paths = tuple(p for p in PATHS if p == "direct" or p in args.paths.split(","))
    if not set(args.paths.split(",")) <= set(PATHS):
        parser.error(f"--paths takes {', '.join(PATHS)}")
    return Options(
        get_levels=Level.parse_list(args.get_levels),
        list_size=args.list_size,
        list_levels=Level.parse_list(args.list_levels),
        profile_seconds=args.profile_seconds,
        mint_levels=Level.parse_list(args.mint_levels),
        forward_mib=args.forward_mib,
        forward_transports=tuple(t for t in args.forward_transports.split(",") if t),
        watches=tuple(int(n) for n in args.watches.split(",") if n),
        watch_parallel=args.watch_parallel,
        watch_deadline_s=args.watch_deadline,
        phases=phases,
        paths=paths,
        rounds=max(1, args.rounds),
        profile_get_concurrency=args.profile_get_concurrency,
        out=args.out,
        workdir=args.workdir,
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = parse(sys.argv[1:] if argv is None else argv)
    # Thousands of watches need thousands of descriptors in the server and the agent, which
    # inherit this process's limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    console = Console(highlight=False, markup=False, width=max(shutil.get_terminal_size()[0], 160))
    info = machine()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="kubegate-bench-proxy-"))
    workdir.mkdir(parents=True, exist_ok=True)
    console.print(f"proxy benchmark, commit {info.git_commit}, work dir {workdir}")
    try:
        with Stack(
            workdir, lambda line: console.print(f"[startup] {line}"), server_env=SERVER_ENV
        ) as stack:
            run = Run(stack, options, workdir, console)
            try:
                report = run.measure(info)
            finally:
                run.close()
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    write_results(options.out, "proxy", dataclasses.asdict(report))
    for table in tables(report):
        console.print(table)
    for failure in report.failures:
        console.print(f"FAILED {failure}")
    console.print(f"results written to {options.out}")


if __name__ == "__main__":
    main()
