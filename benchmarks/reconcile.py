"""Reconcile benchmark: how fast a grant becomes RBAC, and how fast many grants converge.

Measured on the real stack (``benchmarks/stack.py``: control plane, ``kubegate server`` on
SQLite, ``kubegate agent``):

1. **grant → applied**, one grant at a time: from sending the POST until the API shows the
   grant ``applied``, polled every ``--poll-ms`` on a keep-alive connection (what a user who
   watches the grant sees; nothing subtracted); then from the DELETE until the binding is
   gone from the cluster. Each sample grant is deleted before the next one is made, so the
   set stays at its base size: empty, and (``--loaded-samples``) the largest converge set.
2. **converge** K grants (``--converge``), in two modes: ``online``, grants made through the
   API with the agent connected (clock from the first POST until all are ``applied``), and
   ``reconnect``, grants made while the agent is stopped, then the agent started (clock from
   the start of its process). Each run checks that exactly K owned bindings exist, then
   revokes all grants and times until the bindings are gone.

``python -m benchmarks.reconcile --help``; ``make bench`` runs it with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.reconcile_phases import (
    GRANTS_PER_MEMBER,
    LATENCY_NAMESPACE,
    NAMESPACES,
    Bench,
    ConvergeResult,
    LatencyResult,
    Options,
)
from benchmarks.results import REPO, Machine, machine, write_results
from benchmarks.stack import Stack


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one run measured, as written to ``docs/benchmarks.json``."""

    machine: Machine
    options: dict[str, Any]
    total_s: float
    grant_to_applied: LatencyResult | None
    grant_to_applied_loaded: LatencyResult | None
    converge: list[ConvergeResult]


async def measure(stack: Stack, options: Options, console: Console, info: Machine) -> Report:
    """Every phase the options ask for, in order: members, grant latency, then for each K
    (smallest first) online and reconnect convergence."""
    bench = Bench(stack, options, console)
    try:
        await bench.kube.ensure_namespaces([*NAMESPACES, LATENCY_NAMESPACE])
        await bench.wait_online(True)
        bench.say("agent connected")
        largest = max(options.converge, default=0)
        await bench.add_members(max(10, math.ceil(largest / GRANTS_PER_MEMBER)))
        latency = None
        if options.latency_samples:
            latency = await bench.grant_latency(options.latency_samples, 0)
        runs: list[ConvergeResult] = []
        loaded = None
        for count in sorted(options.converge):
            if "online" in options.modes:
                runs.append(await bench.converge_online(count))
            if "reconnect" in options.modes:
                samples = options.loaded_samples if count == largest else 0
                run, loaded_here = await bench.converge_reconnect(count, samples)
                runs.append(run)
                loaded = loaded_here or loaded
        options_out = {
            k: str(v) if isinstance(v, Path) else v
            for k, v in dataclasses.asdict(options).items()
            if k != "workdir"
        }
        return Report(
            machine=info,
            options=options_out,
            total_s=round(time.monotonic() - bench.started, 1),
            grant_to_applied=latency,
            grant_to_applied_loaded=loaded,
            converge=runs,
        )
    finally:
        await bench.aclose()


def summary(report: Report) -> list[Table]:
    """The numbers a reader wants first: one table of latencies, one of convergence."""
    latency = Table(title=f"grant → applied, one at a time (commit {report.machine.git_commit})")
    for column in ("measurement", "in place", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        latency.add_column(column, justify="left" if column == "measurement" else "right")
    for result in (report.grant_to_applied, report.grant_to_applied_loaded):
        if result is None:
            continue
        for what, dist in (
            ("POST → applied (API)", result.applied),
            ("POST answered", result.post),
            ("DELETE → binding gone", result.delete_to_removed),
        ):
            latency.add_row(
                what,
                str(result.existing_grants),
                str(dist.n),
                *(f"{v:.0f}" for v in (dist.p50, dist.p90, dist.p99, dist.max)),
            )
    converge = Table(title=f"converge (whole run {report.total_s:.0f} s)")
    for column in (
        "grants",
        "mode",
        "made s",
        "made /s",
        "POST p50/p99/max ms",
        "503s",
        "converged s",
        "applied /s",
        "revoke-all s",
        "CPU s agent/server/kube/etcd",
        "RSS MiB agent/server",
    ):
        converge.add_column(column, justify="right")
    for run in report.converge:
        cpu = "/".join(
            f"{run.cpu_s.get(role, 0):.0f}"
            for role in ("agent", "server", "kube-apiserver", "etcd")
        )
        rss = "/".join(
            str(run.memory_kib.get(role, {}).get("VmRSS", 0) // 1024)
            for role in ("agent", "server")
        )
        converge.add_row(
            str(run.grants),
            run.mode,
            f"{run.create_s:.1f}",
            f"{run.creates_per_s:.0f}",
            "/".join(f"{v:.0f}" for v in (run.post.p50, run.post.p99, run.post.max))
            if run.post
            else "",
            str(run.unavailable_503),
            f"{run.converge_s:.1f}",
            f"{run.applied_per_s:.0f}",
            f"{run.delete_s:.1f}",
            cpu,
            rss,
        )
    return [latency, converge]


def parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reconcile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--grants-latency", type=int, default=200, help="samples (0: skip)")
    parser.add_argument(
        "--loaded-samples",
        type=int,
        default=20,
        help="grant → applied samples with the largest converge set in place (0: skip)",
    )
    parser.add_argument(
        "--converge",
        default="1000,10000",
        help="comma-separated grant counts to converge ('' to skip)",
    )
    parser.add_argument("--modes", default="online,reconnect", help="converge modes to run")
    parser.add_argument(
        "--poll-ms", type=float, default=5.0, help="poll interval of one grant's status"
    )
    parser.add_argument(
        "--converge-poll-ms",
        type=float,
        default=200.0,
        help="poll interval while waiting for K grants (each poll reads up to 200 grants)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="API requests in flight")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per wait")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.json")
    parser.add_argument("--workdir", type=Path, help="keep logs and data here (default: temp)")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    if not set(modes) <= {"online", "reconnect"}:
        parser.error("--modes takes online and/or reconnect")
    return Options(
        latency_samples=args.grants_latency,
        loaded_samples=args.loaded_samples,
        converge=tuple(int(n) for n in args.converge.split(",") if n),
        modes=modes,
        poll_ms=args.poll_ms,
        converge_poll_ms=args.converge_poll_ms,
        concurrency=args.concurrency,
        timeout=args.timeout,
        out=args.out,
        workdir=args.workdir,
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = parse(sys.argv[1:] if argv is None else argv)
    console = Console(highlight=False, markup=False, width=max(shutil.get_terminal_size()[0], 160))
    info = machine()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="kubegate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    console.print(f"reconcile benchmark, commit {info.git_commit}, work dir {workdir}")
    try:
        with Stack(workdir, lambda line: console.print(f"[startup] {line}")) as stack:
            report = asyncio.run(measure(stack, options, console, info))
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    write_results(options.out, "reconcile", dataclasses.asdict(report))
    for table in summary(report):
        console.print(table)
    console.print(f"results written to {options.out}")


if __name__ == "__main__":
    main()
