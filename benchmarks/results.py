"""What every benchmark records beside its numbers, and where the numbers go.

Results land in one JSON file (``docs/benchmarks.json``), one top-level key per benchmark,
so each benchmark replaces only its own entry.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import subprocess
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubegate

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Machine:
    """Where and on what a benchmark ran."""

    date: str
    cpus: int
    memory_gib: float
    load_average_at_start: tuple[float, float, float]
    platform: str
    python: str
    kubegate_version: str
    git_commit: str
    git_dirty: bool


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def machine() -> Machine:
    """This machine and this checkout, now (a dirty tree is flagged: numbers may not match
    the commit)."""
    load = os.getloadavg()
    return Machine(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        cpus=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
        load_average_at_start=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
        platform=platform.platform(),
        python=platform.python_version(),
        kubegate_version=kubegate.__version__,
        git_commit=_git("rev-parse", "--short", "HEAD"),
        git_dirty=bool(_git("status", "--porcelain", "--untracked-files=no")),
    )


@dataclass(frozen=True, slots=True)
class Distribution:
    """Summary of samples in milliseconds; percentiles by nearest rank."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of_seconds(cls, samples: Sequence[float]) -> Distribution:
        ordered = sorted(s * 1000 for s in samples)
        if not ordered:
            raise ValueError("no samples")

        def rank(q: float) -> float:
            return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)

        return cls(
            n=len(ordered),
            p50=rank(0.50),
            p90=rank(0.90),
            p99=rank(0.99),
            max=round(ordered[-1], 1),
            mean=round(sum(ordered) / len(ordered), 1),
        )


def write_results(path: Path, key: str, value: Any) -> None:
    """Replace ``key`` in the JSON file at ``path``, keeping its other keys."""
    data: dict[str, Any] = {}
    if path.exists():
        data = json.loads(path.read_text())
    data[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of a kubegate JSON log, timed from the start of a measurement."""

    t_s: float
    source: str
    message: str
    fields: dict[str, Any]


def log_events(
    path: Path,
    source: str,
    since: dt.datetime,
    messages: Collection[str],
    fields: Collection[str] = (),
) -> list[LogEvent]:
    """The lines of the log at ``path`` logged at or after ``since`` whose message is one of
    ``messages``, with only the named extra ``fields``."""
    found: list[LogEvent] = []
    if not path.exists():
        return found
    with path.open(errors="replace") as lines:
        for line in lines:
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
                when = dt.datetime.fromisoformat(entry["time"])
            except (ValueError, KeyError, TypeError):
                continue
            if when < since or entry.get("message") not in messages:
                continue
            extra = {k: entry[k] for k in fields if k in entry}
            t_s = round((when - since).total_seconds(), 3)
            found.append(LogEvent(t_s, source, entry["message"], extra))
    return found


def count_messages(events: Sequence[LogEvent]) -> dict[str, int]:
    """How many times each (source, message) occurred."""
    return dict(Counter(f"{e.source}: {e.message}" for e in events))
