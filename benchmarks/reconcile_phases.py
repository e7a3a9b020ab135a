"""The phases of the reconcile benchmark (``benchmarks/reconcile.py``): grant latency,
converge online, converge after a reconnect, and revoke-all; each returns what it measured."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from benchmarks.results import Distribution, LogEvent, count_messages, log_events
from benchmarks.stack import (
    BenchmarkFailed,
    GatewayApi,
    GrantJson,
    OwnedBindings,
    Stack,
    bounded,
    cpu_seconds,
    memory_kib,
)

NAMESPACES = tuple(f"bench-{i}" for i in range(9))
LATENCY_NAMESPACE = "bench-latency"
ROLES = ("view", "edit", "admin")
GRANTS_PER_MEMBER = len(NAMESPACES) + 1
PROGRESS_EVERY = 10.0
AGENT_MESSAGES = (
    "connected to the kubegate server",
    "desired RBAC received",
    "reconciled",
    "reconcile pass failed; retrying",
    "changing a binding failed",
    "watch failed; retrying",
    "tunnel closed",
)
SERVER_MESSAGES = ("agent connected", "agent disconnected", "reconcile results")
LOG_FIELDS = ("revision", "grants", "changed", "creates", "deletes", "failures", "error")


@dataclass(frozen=True, slots=True)
class Options:
    """The command line."""

    latency_samples: int
    loaded_samples: int
    converge: tuple[int, ...]
    modes: tuple[str, ...]
    poll_ms: float
    converge_poll_ms: float
    concurrency: int
    timeout: float
    out: Path
    workdir: Path | None


@dataclass(frozen=True, slots=True)
class GrantRequest:
    """One grant to make: who gets which role where (``None``: the whole cluster)."""

    email: str
    role: str
    namespace: str | None


def member(index: int) -> str:
    return f"member-{index:05d}@bench.example"


def grant_layout(count: int) -> list[GrantRequest]:
    """``count`` distinct grants: member by member, a role in each of nine namespaces and
    ``view`` on the whole cluster, so nine RoleBindings to each ClusterRoleBinding."""
    layout: list[GrantRequest] = []
    for index in range(math.ceil(count / GRANTS_PER_MEMBER)):
        for slot in range(GRANTS_PER_MEMBER):
            if len(layout) == count:
                return layout
            if slot < len(NAMESPACES):
                role = ROLES[(index + slot) % len(ROLES)]
                layout.append(GrantRequest(member(index), role, NAMESPACES[slot]))
            else:
                layout.append(GrantRequest(member(index), "view", None))
    return layout


@dataclass(frozen=True, slots=True)
class LatencyResult:
    """Grant → applied, one grant at a time, with ``existing_grants`` in place."""

    existing_grants: int
    poll_interval_ms: float
    post: Distribution
    applied: Distribution
    delete_to_removed: Distribution
    cpu_s: dict[str, float]
    unavailable_503: int


@dataclass(slots=True)
class ConvergeResult:
    """K grants from API to RBAC, and back out with revoke-all."""

    grants: int
    mode: str
    role_bindings: int = 0
    cluster_role_bindings: int = 0
    create_s: float = 0.0
    creates_per_s: float = 0.0
    post: Distribution | None = None
    unavailable_503: int = 0
    converge_s: float = 0.0
    applied_per_s: float = 0.0
    applied_after_last_post_s: float | None = None
    revoke_all_post_ms: float = 0.0
    delete_s: float = 0.0
    memory_kib: dict[str, dict[str, int]] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    log_counts: dict[str, int] = field(default_factory=dict)
    timeline: list[LogEvent] = field(default_factory=list)


class Bench:
    """One run of the benchmark against a started :class:`Stack`."""

    def __init__(self, stack: Stack, options: Options, console: Console) -> None:
        self.stack = stack
        self.options = options
        self.console = console
        self.api = GatewayApi(stack, connections=options.concurrency)
        self.kube = OwnedBindings(stack.control_plane.credentials.kubeconfig)
        self.poll = options.poll_ms / 1000
        self.started = time.monotonic()

    def say(self, line: str) -> None:
        self.console.print(f"[{time.monotonic() - self.started:7.1f} s] {line}")

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.kube.aclose()

    def _check_deadline(self, started: float, what: str) -> None:
        if time.perf_counter() - started > self.options.timeout:
            raise BenchmarkFailed(f"timed out after {self.options.timeout:g} s waiting for {what}")

    async def wait_online(self, online: bool) -> None:
        started = time.perf_counter()
        while await self.api.online() is not online:
            self._check_deadline(started, f"the cluster to be online={online}")
            await asyncio.sleep(0.05)

    async def add_members(self, count: int) -> None:
        started = time.perf_counter()
        await bounded(
            [member(i) for i in range(count)], self.api.add_member, self.options.concurrency
        )
        self.say(f"{count} members added in {time.perf_counter() - started:.1f} s")

    async def create_grants(
        self, layout: Sequence[GrantRequest], statuses: set[str], result: ConvergeResult
    ) -> float:
        """Make every grant of ``layout`` (``--concurrency`` at a time); answers the seconds
        it took, and records the POSTs' latency in ``result``. Each new grant must have one
        of ``statuses``."""
        started = time.perf_counter()
        unavailable = self.api.unavailable
        last_said = started
        done = 0
        posts: list[float] = []

        async def create(request: GrantRequest) -> GrantJson:
            nonlocal done, last_said
            sent = time.perf_counter()
            grant = await self.api.create_grant(request.email, request.role, request.namespace)
            posts.append(time.perf_counter() - sent)
            if grant["status"] not in statuses:
                raise BenchmarkFailed(f"new grant {grant['id']} is {grant['status']}")
            done += 1
            if time.perf_counter() - last_said > PROGRESS_EVERY:
                last_said = time.perf_counter()
                self.say(f"  created {done}/{len(layout)} grants")
            return grant

        await bounded(layout, create, self.options.concurrency)
        result.post = Distribution.of_seconds(posts)
        result.unavailable_503 = self.api.unavailable - unavailable
        if result.unavailable_503:
            self.say(f"  the server answered 503 {result.unavailable_503} times (retried)")
        return time.perf_counter() - started

    async def wait_all_applied(self, count: int, started: float) -> None:
        """Wait until the API shows ``count`` grants, all ``applied``.

        Reads the list oldest first and never re-reads a full page that was all applied
        (an applied grant stays applied), so a wait costs about ``count / 200`` requests plus
        one per poll.
        """
        cursor: str | None = None
        before = 0  # grants before ``cursor``, all applied
        last_said = time.perf_counter()
        failure = ""
        while True:
            items, next_cursor = await self.api.grants_page(cursor)
            waiting = [g for g in items if g["status"] != "applied"]
            if not waiting and next_cursor is not None:
                before += len(items)
                cursor = next_cursor
                continue
            if not waiting and before + len(items) >= count:
                return
            failed = [g for g in waiting if g["status"] == "failed"]
            if failed and not failure:
                failure = f"{failed[0]['id']}: {failed[0]['status_detail']}"
                self.say(f"  a grant failed (the agent retries): {failure}")
            self._check_deadline(started, f"{count} grants to be applied")
            if time.perf_counter() - last_said > PROGRESS_EVERY:
                last_said = time.perf_counter()
                self.say(f"  applied: at least {before}/{count}")
            await asyncio.sleep(self.options.converge_poll_ms / 1000)

    async def verify_bindings(self, layout: Sequence[GrantRequest]) -> tuple[int, int]:
        role_bindings, cluster_role_bindings = await self.kube.count()
        want_cluster = sum(1 for g in layout if g.namespace is None)
        want = (len(layout) - want_cluster, want_cluster)
        if (role_bindings, cluster_role_bindings) != want:
            raise BenchmarkFailed(
                f"expected {want[0]} RoleBindings and {want[1]} ClusterRoleBindings owned by "
                f"kubegate, found {role_bindings} and {cluster_role_bindings}"
            )
        return role_bindings, cluster_role_bindings

    async def revoke_all(self, result: ConvergeResult) -> None:
        """Revoke every grant and wait until no owned binding is left."""
        started = time.perf_counter()
        removed = await self.api.revoke_all()
        result.revoke_all_post_ms = round((time.perf_counter() - started) * 1000, 1)
        if removed != result.grants:
            raise BenchmarkFailed(f"revoke-all removed {removed} grants, not {result.grants}")
        last_said = time.perf_counter()
        while await self.kube.any_left():
            self._check_deadline(started, "the owned bindings to be deleted")
            if time.perf_counter() - last_said > PROGRESS_EVERY:
                last_said = time.perf_counter()
                left = sum(await self.kube.count())
                self.say(f"  bindings left: {left}")
            await asyncio.sleep(0.05)
        result.delete_s = round(time.perf_counter() - started, 2)
        self.say(f"  revoke-all: {result.grants} bindings gone in {result.delete_s:.1f} s")

    def memory(self) -> dict[str, dict[str, int]]:
        pids = self.stack.pids()
        return {role: memory_kib(pids[role]) for role in ("agent", "server") if role in pids}

    def cpu_snapshot(self) -> dict[int, tuple[str, float]]:
        """CPU seconds used so far by each process of the stack and by this benchmark."""
        pids = {**self.stack.pids(), "benchmark": os.getpid()}
        return {pid: (role, cpu_seconds(pid)) for role, pid in pids.items()}

    def cpu_since(self, before: dict[int, tuple[str, float]]) -> dict[str, float]:
        """CPU seconds each process used since ``before`` (a new process: since it began)."""
        used = {}
        for pid, (role, seconds) in self.cpu_snapshot().items():
            used[role] = round(seconds - before.get(pid, (role, 0.0))[1], 2)
        return used

    def log_since(self, since: dt.datetime) -> list[LogEvent]:
        agent = log_events(self.stack.agent_log, "agent", since, AGENT_MESSAGES, LOG_FIELDS)
        server = log_events(self.stack.server_log, "server", since, SERVER_MESSAGES, LOG_FIELDS)
        return sorted(agent + server, key=lambda e: e.t_s)

    async def grant_latency(self, samples: int, existing: int) -> LatencyResult:
        """``samples`` grants one at a time, each deleted (and its binding gone) before the
        next, with ``existing`` grants in place."""
        self.say(f"grant → applied: {samples} grants one at a time, {existing} in place")
        post: list[float] = []
        applied: list[float] = []
        removed: list[float] = []
        last_said = time.perf_counter()
        cpu = self.cpu_snapshot()
        unavailable = self.api.unavailable
        for index in range(samples):
            started = time.perf_counter()
            grant = await self.api.create_grant(member(index % 10), "view", LATENCY_NAMESPACE)
            post.append(time.perf_counter() - started)
            while grant["status"] != "applied":
                if grant["status"] == "failed":
                    raise BenchmarkFailed(f"grant {grant['id']} failed: {grant['status_detail']}")
                self._check_deadline(started, f"grant {grant['id']} to be applied")
                await asyncio.sleep(self.poll)
                grant = await self.api.newest_grant(grant)
            applied.append(time.perf_counter() - started)
            deleting = time.perf_counter()
            await self.api.delete_grant(grant["id"])
            while await self.kube.exists(grant):
                self._check_deadline(deleting, f"the binding of grant {grant['id']} to go")
                await asyncio.sleep(self.poll)
            removed.append(time.perf_counter() - deleting)
            if time.perf_counter() - last_said > PROGRESS_EVERY:
                last_said = time.perf_counter()
                self.say(f"  {index + 1}/{samples} samples")
        result = LatencyResult(
            existing_grants=existing,
            poll_interval_ms=self.options.poll_ms,
            post=Distribution.of_seconds(post),
            applied=Distribution.of_seconds(applied),
            delete_to_removed=Distribution.of_seconds(removed),
            cpu_s=self.cpu_since(cpu),
            unavailable_503=self.api.unavailable - unavailable,
        )
        self.say(
            f"  applied p50 {result.applied.p50:.0f} ms, p99 {result.applied.p99:.0f} ms, "
            f"max {result.applied.max:.0f} ms; POST p50 {result.post.p50:.0f} ms"
        )
        return result

    async def converge_online(self, count: int) -> ConvergeResult:
        """K grants made with the agent connected: first POST until all applied."""
        self.say(f"converge {count} (online): making grants with the agent connected")
        result = ConvergeResult(count, "online")
        layout = grant_layout(count)
        await self.wait_online(True)
        since = dt.datetime.now(dt.UTC)
        cpu = self.cpu_snapshot()
        started = time.perf_counter()
        # cluster_offline too: a tunnel that drops for a moment is in the log counts, not fatal.
        statuses = {"pending", "applied", "cluster_offline"}
        create_s = await self.create_grants(layout, statuses, result)
        self.say(f"  {count} grants made in {create_s:.1f} s; waiting for all to be applied")
        await self.wait_all_applied(count, started)
        done = time.perf_counter()
        result.cpu_s = self.cpu_since(cpu)
        self._finish(result, create_s, done - started, since)
        result.applied_after_last_post_s = round(done - started - create_s, 2)
        result.role_bindings, result.cluster_role_bindings = await self.verify_bindings(layout)
        self.say(f"  all applied {result.converge_s:.1f} s after the first POST; bindings checked")
        result.timeline = result.timeline[-10:]  # a pass per burst of POSTs: the last few
        await self.revoke_all(result)
        return result

    async def converge_reconnect(
        self, count: int, loaded_samples: int
    ) -> tuple[ConvergeResult, LatencyResult | None]:
        """K grants made with the agent stopped; agent start until all applied."""
        self.say(f"converge {count} (reconnect): stopping the agent, making grants")
        result = ConvergeResult(count, "reconnect")
        layout = grant_layout(count)
        await asyncio.to_thread(self.stack.stop_agent)
        await self.wait_online(False)
        create_s = await self.create_grants(layout, {"cluster_offline"}, result)
        self.say(f"  {count} grants made in {create_s:.1f} s; starting the agent")
        since = dt.datetime.now(dt.UTC)
        cpu = self.cpu_snapshot()
        started = time.perf_counter()
        self.stack.start_agent()
        await self.wait_all_applied(count, started)
        result.cpu_s = self.cpu_since(cpu)
        self._finish(result, create_s, time.perf_counter() - started, since)
        result.role_bindings, result.cluster_role_bindings = await self.verify_bindings(layout)
        result.timeline = result.timeline[:40]
        self.say(f"  all applied {result.converge_s:.1f} s after the agent started")
        loaded = None
        if loaded_samples:
            loaded = await self.grant_latency(loaded_samples, count)
        await self.revoke_all(result)
        return result, loaded

    def _finish(
        self, result: ConvergeResult, create_s: float, converge_s: float, since: dt.datetime
    ) -> None:
        result.create_s = round(create_s, 2)
        result.creates_per_s = round(result.grants / create_s, 1)
        result.converge_s = round(converge_s, 2)
        result.applied_per_s = round(result.grants / converge_s, 1)
        result.memory_kib = self.memory()
        events = self.log_since(since)
        result.log_counts = count_messages(events)
        result.timeline = events
