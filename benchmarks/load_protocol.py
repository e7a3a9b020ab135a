"""What passes between the proxy benchmark and its load generator process
(``benchmarks/proxy_load.py``): where to send requests (:class:`Target`), what comes back
(:class:`LoadResult`, :class:`WatchOpenResult`, :class:`WatchEventResult`), and the
benchmark's side of the pipe (:class:`LoadGenerator`).

Commands and answers are JSON lines; the dataclasses here are their shapes.
"""

from __future__ import annotations

import contextlib
import json
import math
import ssl
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

from benchmarks.results import REPO
from benchmarks.stack import BenchmarkFailed


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: host, port, TLS (CA, optional client certificate), fixed headers
    and a path prefix (kubegate's ``/clusters/<id>``)."""

    host: str
    port: int
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    prefix: str = ""

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(["http/1.1"])
        return context

    def head(self, method: str, path: str, body: bytes = b"") -> bytes:
        """The request head for ``path`` (under :attr:`prefix`), built once per run."""
        lines = [
            f"{method} {self.prefix}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "User-Agent: kubegate-bench",
            "Accept: application/json",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        data = dict(data)
        data["headers"] = tuple((str(k), str(v)) for k, v in data.get("headers", ()))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency samples in milliseconds (µs resolution); percentiles by nearest rank."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of_seconds(cls, samples: Sequence[float]) -> Latency:
        ordered = sorted(samples)
        if not ordered:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)

        def rank(q: float) -> float:
            return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000, 3)

        return cls(
            n=len(ordered),
            p50=rank(0.50),
            p90=rank(0.90),
            p99=rank(0.99),
            max=round(ordered[-1] * 1000, 3),
            mean=round(sum(ordered) / len(ordered) * 1000, 3),
        )


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One fixed-size (or fixed-duration) run of one request at ``concurrency``."""

    requests: int
    concurrency: int
    wall_s: float
    per_s: float
    latency: Latency
    statuses: dict[str, int]
    errors: dict[str, int]
    body_bytes_mean: int
    generator_cpu_s: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**{**data, "latency": Latency(**data["latency"])})


@dataclass(frozen=True, slots=True)
class WatchOpenResult:
    """How many watches are open after a ``watch_open`` command, and what failed."""

    open: int
    opened_now: int
    failures: dict[str, int]
    seconds: float
    generator_rss_kib: int


@dataclass(frozen=True, slots=True)
class WatchEventResult:
    """How many open watches saw one event, and how long after it was made."""

    watches: int
    received: int
    deadline_s: float
    delivery: Latency
    closed_meanwhile: int
    missing_without_any_event: int
    seen_by_marker: dict[str, int]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**{**data, "delivery": Latency(**data["delivery"])})


class LoadGenerator:
    """The generator process, seen from the benchmark: send a command, get its answer."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.proxy_load"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
            text=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, op: str, **arguments: object) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchmarkFailed(f"the load generator exited (code {self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def load(self, target: Target, path: str, **arguments: object) -> LoadResult:
        return self.load_with_samples(target, path, **arguments)[0]

    def load_with_samples(
        self, target: Target, path: str, **arguments: object
    ) -> tuple[LoadResult, list[float]]:
        """A load run, and every timed request's latency in seconds."""
        answer = self.call("load", target=asdict(target), path=path, samples=True, **arguments)
        samples = [float(s) for s in answer.pop("samples_s", [])]
        return LoadResult.from_json(answer), samples

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BenchmarkFailed, OSError, ValueError):
                self.call("exit")
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
