"""The proxy benchmark's load generator: a process of its own, driven over stdin/stdout.

Run as ``python -m benchmarks.proxy_load`` by
:class:`~benchmarks.load_protocol.LoadGenerator`; each line on stdin is a JSON command, each
line on stdout its JSON answer (``benchmarks/load_protocol.py`` has their shapes). It has
its own process so that its CPU is measured apart from the gateway's, and so that thousands
of open watches do not share an event loop with whoever drives the benchmark.

The HTTP/1.1 client here is deliberately minimal (one hand-parsed head, ``Content-Length`` or
chunked bodies, keep-alive), so that the client costs less per request than the proxies it
measures: the benchmark reports its CPU per request beside theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import ssl
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.load_protocol import (
    Latency,
    LoadResult,
    Target,
    WatchEventResult,
    WatchOpenResult,
)

MAX_HEAD = 1 << 20


class Connection:
    """One keep-alive HTTP/1.1 connection (plain or TLS)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, target: Target, tls: ssl.SSLContext | None) -> Connection:
        reader, writer = await asyncio.open_connection(
            target.host,
            target.port,
            ssl=tls,
            server_hostname=target.host if tls else None,
            limit=MAX_HEAD,
        )
        return cls(reader, writer)

    async def head(self) -> tuple[int, int | None, bool, bool]:
        """Status, Content-Length, chunked, and whether the server closes after."""
        head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        length = None
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
        chunked = b"\r\ntransfer-encoding: chunked" in head
        return status, length, chunked, b"\r\nconnection: close" in head

    async def body(self, length: int | None, chunked: bool) -> int:
        """Read (and drop) a whole body; answers its size."""
        if chunked:
            total = 0
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await self.reader.readline()) not in (b"\r\n", b""):
                        pass
                    return total
                await self.reader.readexactly(size + 2)
                total += size
        if length is None:  # until the server closes
            return len(await self.reader.read())
        await self.reader.readexactly(length)
        return length

    async def request(self, head: bytes) -> tuple[int, int, bool]:
        """Send one request, read its whole answer: status, body size, still reusable."""
        self.writer.write(head)
        status, length, chunked, close = await self.head()
        size = await self.body(length, chunked)
        return status, size, not close and (length is not None or chunked)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


async def load(
    target: Target,
    method: str,
    path: str,
    concurrency: int,
    requests: int,
    duration_s: float,
    warmup: int,
) -> tuple[LoadResult, list[float]]:
    """``requests`` requests (or as many as fit in ``duration_s`` when it is > 0) from
    ``concurrency`` keep-alive connections, after ``warmup`` untimed ones on each; answers
    the summary and every timed request's latency in seconds."""
    tls = target.ssl_context()
    head = target.head(method, path)
    connections: list[Connection | None] = [None] * concurrency
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    samples: list[float] = []
    body_bytes = 0

    async def one(slot: int, timed: bool) -> None:
        nonlocal body_bytes
        reusable = False
        started = time.perf_counter()
        try:
            connection = connections[slot]
            if connection is None:
                connection = connections[slot] = await Connection.open(target, tls)
                started = time.perf_counter()  # a new connection's handshake is not timed
            status, size, reusable = await connection.request(head)
        except (OSError, asyncio.IncompleteReadError, ValueError, ssl.SSLError) as exc:
            errors[type(exc).__name__] += 1
        else:
            if timed:
                samples.append(time.perf_counter() - started)
                statuses[str(status)] += 1
                body_bytes += size
        stale = connections[slot]
        if not reusable and stale is not None:
            connections[slot] = None
            await stale.close()

    async def warm(slot: int) -> None:
        for _ in range(warmup):
            await one(slot, timed=False)

    await asyncio.gather(*(warm(slot) for slot in range(concurrency)))
    remaining = requests
    deadline = time.perf_counter() + duration_s

    async def worker(slot: int) -> None:
        nonlocal remaining
        while (remaining > 0) if duration_s <= 0 else (time.perf_counter() < deadline):
            remaining -= 1
            await one(slot, timed=True)

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    for connection in connections:
        if connection is not None:
            await connection.close()
    done = len(samples)
    result = LoadResult(
        requests=done,
        concurrency=concurrency,
        wall_s=round(wall, 3),
        per_s=round(done / wall, 1) if wall else 0.0,
        latency=Latency.of_seconds(samples),
        statuses=dict(statuses),
        errors=dict(errors),
        body_bytes_mean=body_bytes // done if done else 0,
        generator_cpu_s=round(cpu, 3),
    )
    return result, samples


@dataclass
class Watch:
    """One open watch: its connection, and when each marker was first seen on it."""

    connection: Connection
    seen: dict[bytes, float] = field(default_factory=dict)
    lines: int = 0
    task: asyncio.Task[None] | None = None
    closed: str = ""


class WatchPool:
    """Watches held open, each its own connection, each read by its own task."""

    def __init__(self) -> None:
        self.watches: list[Watch] = []
        self.markers: set[bytes] = set()

    async def _open_one(
        self, target: Target, tls: ssl.SSLContext | None, head: bytes, failures: Counter[str]
    ) -> None:
        try:
            connection = await Connection.open(target, tls)
        except (OSError, ssl.SSLError) as exc:
            failures[f"connect: {type(exc).__name__}: {exc}"[:160]] += 1
            return
        try:
            connection.writer.write(head)
            status, length, chunked, _ = await connection.head()
            if status != 200 or not chunked:
                body = b""
                if length:
                    body = await connection.reader.readexactly(min(length, 4096))
                failures[f"HTTP {status}: {body[:120].decode(errors='replace')}"] += 1
                await connection.close()
                return
        except (OSError, asyncio.IncompleteReadError, ValueError, ssl.SSLError) as exc:
            failures[f"head: {type(exc).__name__}"] += 1
            await connection.close()
            return
        watch = Watch(connection)
        watch.task = asyncio.create_task(self._read(watch))
        self.watches.append(watch)

    async def _read(self, watch: Watch) -> None:
        """Read the chunked event stream; note the first sighting of each marker."""
        reader = watch.connection.reader
        pending = b""
        try:
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    watch.closed = "ended by the server"
                    return
                pending += (await reader.readexactly(size + 2))[:-2]
                *lines, pending = pending.split(b"\n")
                now = time.monotonic()
                watch.lines += len(lines)
                for line in lines:
                    for marker in self.markers:
                        if marker in line and marker not in watch.seen:
                            watch.seen[marker] = now
        except (OSError, asyncio.IncompleteReadError, ValueError, ssl.SSLError) as exc:
            watch.closed = type(exc).__name__

    async def open(self, target: Target, path: str, total: int, parallel: int) -> WatchOpenResult:
        """Open watches until ``total`` are open (at most ``parallel`` opening at once)."""
        tls = target.ssl_context()
        head = target.head("GET", path)
        failures: Counter[str] = Counter()
        wanted = max(0, total - len(self.watches))
        started = time.monotonic()
        queue = iter(range(wanted))

        async def opener() -> None:
            for _ in queue:
                await self._open_one(target, tls, head, failures)

        await asyncio.gather(*(opener() for _ in range(min(parallel, wanted))))
        return WatchOpenResult(
            open=len(self.watches),
            opened_now=len(self.watches) - (total - wanted),
            failures=dict(failures),
            seconds=round(time.monotonic() - started, 2),
            generator_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        )

    def arm(self, marker: str) -> None:
        """Look for ``marker`` in every line read from now on. Called before the object is
        made: a watch can receive its event before :meth:`expect` is called."""
        self.markers.add(f'"name":"{marker}"'.encode())

    async def expect(self, marker: str, since: float, deadline_s: float) -> WatchEventResult:
        """Wait until every open watch has seen ``marker`` (or ``deadline_s`` passed)."""
        key = f'"name":"{marker}"'.encode()
        self.markers.add(key)
        watches = [w for w in self.watches if not w.closed]
        deadline = since + deadline_s
        while time.monotonic() < deadline:
            if all(key in w.seen or w.closed for w in watches):
                break
            await asyncio.sleep(0.05)
        seen = [w.seen[key] - since for w in watches if key in w.seen]
        missing = [w for w in watches if key not in w.seen]
        return WatchEventResult(
            watches=len(watches),
            received=len(seen),
            deadline_s=deadline_s,
            delivery=Latency.of_seconds(seen),
            closed_meanwhile=sum(1 for w in watches if w.closed),
            # A watch that never got even its initial event was stuck from the start.
            missing_without_any_event=sum(1 for w in missing if w.lines == 0),
            # Earlier markers too: one missed before but seen now arrived late, not never.
            seen_by_marker={
                m.decode(): sum(1 for w in self.watches if m in w.seen) for m in self.markers
            },
        )

    async def close(self) -> int:
        count = len(self.watches)
        for watch in self.watches:
            if watch.task is not None:
                watch.task.cancel()
            watch.connection.writer.close()
        await asyncio.sleep(0)
        await asyncio.gather(
            *(w.task for w in self.watches if w.task is not None), return_exceptions=True
        )
        self.watches.clear()
        return count


async def serve() -> None:
    """Answer commands from stdin until ``exit`` or EOF."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pool = WatchPool()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command: dict[str, Any] = json.loads(line)
        answer = await _answer(pool, command.pop("op"), command)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if answer.get("exit"):
            break


async def _answer(pool: WatchPool, op: str, command: dict[str, Any]) -> dict[str, Any]:
    if op == "load":
        result, samples = await load(
            Target.from_json(command["target"]),
            command.get("method", "GET"),
            command["path"],
            command["concurrency"],
            command.get("requests", 0),
            command.get("duration_s", 0.0),
            command.get("warmup", 5),
        )
        answer = asdict(result)
        if command.get("samples"):
            answer["samples_s"] = samples
        return answer
    if op == "watch_open":
        target = Target.from_json(command["target"])
        opened = await pool.open(target, command["path"], command["total"], command["parallel"])
        return asdict(opened)
    if op == "watch_arm":
        pool.arm(command["marker"])
        return {"armed": command["marker"]}
    if op == "watch_expect":
        seen = await pool.expect(command["marker"], command["since"], command["deadline_s"])
        return asdict(seen)
    if op == "watch_close":
        return {"closed": await pool.close()}
    if op == "limits":
        return {"nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE))}
    if op == "exit":
        return {"exit": True, "closed": await pool.close()}
    return {"error": f"unknown op {op}"}


if __name__ == "__main__":
    asyncio.run(serve())
