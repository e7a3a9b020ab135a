"""Where a process spends its CPU under load: ``py-spy record`` and a summary of its samples.

py-spy samples the Python stacks of a running process from outside (ptrace), so the server
and the agent run unchanged. Only threads it sees running are sampled (py-spy's default),
but a thread blocked inside a C call that py-spy cannot see into (aiosqlite's worker waiting
on its queue, a thread pool's idle worker) counts as running. So the summary is of the event
loop's thread (``MainThread``, where the proxy runs); other threads only get their sample
count. ``busy_pct`` (the main thread's samples over those an always-busy thread would give)
is roughly the CPU share of that thread.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
RATE = 200
TOP = 20
ALMOST_ALL = 97.0


@dataclass(frozen=True, slots=True)
class Share:
    """A frame or a package and its share of the samples, in percent."""

    name: str
    pct: float


@dataclass(frozen=True, slots=True)
class Profile:
    """One process's samples, summarised three ways."""

    role: str
    samples: int
    seconds: float
    rate: int
    busy_pct: float
    other_threads: dict[str, int]
    self_by_package: list[Share]
    self_by_function: list[Share]
    inclusive_by_function: list[Share]
    raw_file: str


def available() -> bool:
    return PY_SPY.exists()


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``seconds`` into ``out`` (py-spy's raw, collapsed stacks)."""
    return subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(round(seconds)),
            "--rate",
            str(RATE),
            "--format",
            "raw",
            "--nolineno",
            "--threads",
            "--output",
            str(out),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=out.with_suffix(".log").open("wb"),
    )


def package(frame: str) -> str:
    """The package a frame's file belongs to: ``h2``, ``asyncio``, ``ssl.py``,
    ``kubegate/tunnel``."""
    _, _, file = frame.rpartition(" (")
    file = file.rstrip(")")
    parts = file.split("/")
    if parts[0] == "kubegate" and len(parts) > 2:
        return "/".join(parts[:2])
    if parts[0] in ("kubegate", "<frozen") or len(parts) == 1:
        return file
    return parts[0]


def summarise(role: str, raw: Path, seconds: float) -> Profile:
    """Self time by package and function, inclusive time by function, from a raw file."""
    self_package: Counter[str] = Counter()
    self_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    other: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        name = thread.partition(": ")[2] or thread
        if name != "MainThread" or not frames:
            other[re.sub(r"[-_ ]?\d+", "", name)] += count
            continue
        total += count
        self_function[frames[-1]] += count
        self_package[package(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count

    def top(counter: Counter[str], below: float = 101.0) -> list[Share]:
        shares = [(name, 100 * n / total) for name, n in counter.most_common() if total]
        return [Share(name, round(pct, 1)) for name, pct in shares if pct < below][:TOP]

    return Profile(
        role=role,
        samples=total,
        seconds=seconds,
        rate=RATE,
        busy_pct=round(100 * total / (seconds * RATE), 1) if seconds else 0.0,
        other_threads=dict(other.most_common()),
        self_by_package=top(self_package),
        self_by_function=top(self_function),
        # Frames under which nearly everything runs (the event loop, runpy) say nothing.
        inclusive_by_function=top(inclusive, below=ALMOST_ALL),
        raw_file=str(raw),
    )
