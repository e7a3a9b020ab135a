"""The proxy benchmark's verdicts and tables: goals met or not, the logs' warnings and errors,
and the summary printed at the end of ``python -m benchmarks.proxy``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from benchmarks.proxy_phases import Comparison, PathRun
from benchmarks.proxy_streams import ForwardRun, WatchReport

if TYPE_CHECKING:
    from benchmarks.proxy import Report

GOAL_ADDED_P50_MS = 1.0
GOAL_ADDED_P99_MS = 3.0
GOAL_THROUGHPUT_PCT = 70.0
GOAL_WATCHES = 10_000
GOAL_WATCH_RSS_KIB = 1 << 20
GOAL_FORWARD_PCT = 50.0
GOAL_MINTS_PER_S = 1000.0
PROBLEM_LEVELS = ("warning", "error", "critical")
PROFILE_ROWS = 12


@dataclass(frozen=True, slots=True)
class Goal:
    """A goal, what was measured against it, and whether it was met (None: not measured)."""

    goal: str
    measured: str
    met: bool | None


def goals(
    get_vs_direct: Sequence[Comparison],
    forward: Sequence[ForwardRun],
    mints: Sequence[PathRun],
    watches: WatchReport | None,
) -> list[Goal]:
    found = []
    for comparison in get_vs_direct:
        if comparison.path != "kubegate" or comparison.concurrency not in (1, 16):
            continue
        c = comparison.concurrency
        found.append(
            Goal(
                f"GET added p50 ≤ {GOAL_ADDED_P50_MS:g} ms over direct (c={c})",
                f"{comparison.added_p50_ms:+.2f} ms",
                comparison.added_p50_ms <= GOAL_ADDED_P50_MS,
            )
        )
        found.append(
            Goal(
                f"GET added p99 ≤ {GOAL_ADDED_P99_MS:g} ms over direct (c={c})",
                f"{comparison.added_p99_ms:+.2f} ms",
                comparison.added_p99_ms <= GOAL_ADDED_P99_MS,
            )
        )
        if c == 16:
            found.append(
                Goal(
                    f"GET throughput ≥ {GOAL_THROUGHPUT_PCT:g} % of direct (c=16)",
                    f"{comparison.throughput_pct_of_direct:.0f} %",
                    comparison.throughput_pct_of_direct >= GOAL_THROUGHPUT_PCT,
                )
            )
    if watches is not None:
        biggest = max(watches.steps, key=lambda s: s.opened.open, default=None)
        if biggest is not None:
            rss = sum(biggest.memory_kib.get(r, {}).get("VmRSS", 0) for r in ("server", "agent"))
            reached = biggest.opened.open >= GOAL_WATCHES
            found.append(
                Goal(
                    f"{GOAL_WATCHES:,} watches under 1 GiB RSS (server + agent)",
                    f"{biggest.opened.open:,} open, {rss / 1024:.0f} MiB",
                    reached and rss < GOAL_WATCH_RSS_KIB,
                )
            )
    by_key = {(r.path, r.transport): r for r in forward}
    for (path, transport), run in by_key.items():
        direct = by_key.get(("direct", transport))
        if path != "kubegate" or direct is None or not direct.mib_per_s:
            continue
        pct = 100 * run.mib_per_s / direct.mib_per_s
        found.append(
            Goal(
                f"port-forward ≥ {GOAL_FORWARD_PCT:g} % of direct ({transport})",
                f"{pct:.0f} % ({run.mib_per_s:.0f} vs {direct.mib_per_s:.0f} MiB/s)",
                pct >= GOAL_FORWARD_PCT and run.intact,
            )
        )
    if mints:
        best = max(mints, key=lambda r: r.load.per_s)
        found.append(
            Goal(
                f"≥ {GOAL_MINTS_PER_S:,.0f} token mints/s",
                f"{best.load.per_s:.0f}/s (c={best.load.concurrency})",
                best.load.per_s >= GOAL_MINTS_PER_S,
            )
        )
    return found


def open_files_limit(pid: int) -> str:
    """The ``Max open files`` line of ``/proc/<pid>/limits`` (soft and hard)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"({soft}, {hard})"
    return ""


def log_problems(logs: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """Warnings and errors in each kubegate JSON log, counted by message, with the first
    exception seen for each, and the count of lines that are not JSON."""
    found: dict[str, dict[str, Any]] = {}
    for role, path in logs.items():
        counts: Counter[str] = Counter()
        first: dict[str, str] = {}
        not_json = 0
        if path.exists():
            with path.open(errors="replace") as lines:
                for line in lines:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        not_json += 1
                        continue
                    if not isinstance(entry, dict) or entry.get("level") not in PROBLEM_LEVELS:
                        continue
                    message = f"{entry['level']}: {entry.get('message', '')}"[:200]
                    counts[message] += 1
                    if message not in first:
                        detail = entry.get("exception") or entry.get("error") or ""
                        first[message] = str(detail)[-800:]
        found[role] = {"counts": dict(counts.most_common(30)), "first": first, "not_json": not_json}
    return found


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _runs_table(title: str, runs: Sequence[PathRun], roles: Sequence[str]) -> Table:
    table = Table(title=title)
    for column in ("path", "c", "n", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_column("CPU µs/req " + "/".join(roles), justify="right")
    for run in runs:
        latency = run.load.latency
        table.add_row(
            run.path,
            str(run.load.concurrency),
            str(run.load.requests),
            f"{run.load.per_s:.0f}",
            *(_ms(v) for v in (latency.p50, latency.p90, latency.p99, latency.max)),
            "/".join(f"{run.cpu_us_per_request.get(r, 0):.0f}" for r in roles),
        )
    return table


def tables(report: Report) -> list[Table]:
    """One table per measurement, and the goals."""
    roles = (
        "generator",
        "server",
        "agent",
        "kube-apiserver",
        "kubectl-proxy",
        "relay-front",
        "relay-back",
    )
    found = [
        _runs_table("GET one ConfigMap", report.get, roles),
        _runs_table(f"LIST {report.options['list_size']} ConfigMaps", report.listing, roles),
        _runs_table("token mints (REST API)", report.token_mint, ("generator", "server")),
    ]
    vs = Table(title="against direct")
    for column in ("what", "path", "c", "added p50 ms", "added p99 ms", "req/s % of direct"):
        vs.add_column(column, justify="right")
    for what, comparisons in (("GET", report.get_vs_direct), ("LIST", report.listing_vs_direct)):
        for c in comparisons:
            vs.add_row(
                what,
                c.path,
                str(c.concurrency),
                f"{c.added_p50_ms:+.2f}",
                f"{c.added_p99_ms:+.2f}",
                f"{c.throughput_pct_of_direct:.0f}",
            )
    found.append(vs)
    forward = Table(title="port-forward echo")
    for column in ("path", "transport", "MiB", "s", "MiB/s", "intact", "CPU s"):
        forward.add_column(column, justify="right")
    for run in report.port_forward:
        forward.add_row(
            run.path,
            run.transport,
            str(run.payload_mib),
            f"{run.seconds:.1f}",
            f"{run.mib_per_s:.0f}",
            str(run.intact),
            " ".join(f"{k} {v:.1f}" for k, v in run.cpu_s.items()),
        )
    found.append(forward)
    if report.watches is not None:
        watch = Table(title="watches through kubegate")
        for column in (
            "asked",
            "open",
            "open s",
            "RSS MiB server/agent",
            "idle CPU % server/agent",
            "GET c=1 p50/p99 ms (direct)",
            "event reached",
            "delivery p50/max ms",
        ):
            watch.add_column(column, justify="right")
        for step in report.watches.steps:
            rss = "/".join(
                str(step.memory_kib.get(r, {}).get("VmRSS", 0) // 1024) for r in ("server", "agent")
            )
            idle = "/".join(f"{step.idle_cpu_pct.get(r, 0):.0f}" for r in ("server", "agent"))
            event = step.event
            get = step.get_while_open
            direct = step.direct_get_while_open
            watch.add_row(
                str(step.wanted),
                str(step.opened.open),
                f"{step.opened.seconds:.1f}",
                rss,
                idle,
                (f"{get.latency.p50:.1f}/{get.latency.p99:.1f}" if get else "-")
                + (f" ({direct.latency.p50:.1f}/{direct.latency.p99:.1f})" if direct else ""),
                f"{event.received}/{event.watches}" if event else "-",
                f"{event.delivery.p50:.0f}/{event.delivery.max:.0f}" if event else "-",
            )
        found.append(watch)
    for profiled in report.profiles:
        for profile in profiled.profiles:
            top = Table(
                title=f"py-spy {profiled.what} {profile.role}: main thread busy "
                f"{profile.busy_pct:.0f} %, {profiled.load.per_s:.0f} req/s while sampled"
            )
            for column in ("self % by package", "self % by function", "inclusive %"):
                top.add_column(column)
            for row in zip(
                profile.self_by_package[:PROFILE_ROWS],
                profile.self_by_function[:PROFILE_ROWS],
                profile.inclusive_by_function[:PROFILE_ROWS],
                strict=False,
            ):
                top.add_row(*(f"{share.pct:5.1f} {share.name}" for share in row))
            found.append(top)
    verdicts = Table(title="goals")
    for column in ("goal", "measured", "met"):
        verdicts.add_column(column)
    for goal in report.goals:
        verdicts.add_row(goal.goal, goal.measured, {True: "yes", False: "NO", None: "-"}[goal.met])
    found.append(verdicts)
    return found
