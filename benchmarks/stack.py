"""The real stack a benchmark measures, and the few calls the benchmarks make on it.

:class:`Stack` starts a control plane, a ``kubegate server`` with one registered cluster and
that cluster's ``kubegate agent``, as users run them. :class:`GatewayApi` is a keep-alive
async client for the REST calls; :class:`OwnedBindings` reads what the agent made in the
cluster, as the cluster's admin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, TypeVar

import httpx
from lightkube import ALL_NS, AsyncClient, KubeConfig
from lightkube.core.client import LabelSelector
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, RoleBinding

from kubegate.agent.desired import MANAGED_BY, MANAGED_BY_LABEL, binding_name
from kubegate.server.pagination import MAX_LIMIT, encode_cursor
from testenv.agent import AgentProcess
from testenv.controlplane import ControlPlane
from testenv.gateway import GatewayServer

Report = Callable[[str], None]
UNAVAILABLE_RETRIES = 5
"""How often a request that answered 503 ("retry shortly") is retried, with growing waits."""
T = TypeVar("T")
U = TypeVar("U")


class BenchmarkFailed(Exception):
    """What a benchmark waited for did not happen (a grant failed, a wait timed out)."""


class GrantJson(TypedDict):
    """The fields of the API's grant that the benchmarks read."""

    id: str
    status: str
    status_detail: str
    namespace: str | None
    created_at: str


class Stack:
    """A control plane, a ``kubegate server`` with one registered cluster, and its agent.

    Everything lives in ``workdir`` (server data and log in ``server/``, the agent's log in
    ``agent.log``, the control plane in ``control-plane/``); ``server_env`` adds
    ``KUBEGATE_*`` settings to the server's environment. Use as a context manager:
    leaving it stops every process it started, also after a failure.
    """

    cluster_name = "bench"

    def __init__(
        self, workdir: Path, report: Report, server_env: Mapping[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.report = report
        self.control_plane = ControlPlane(workdir / "control-plane", report=report)
        self.server = GatewayServer(workdir / "server", extra_env=server_env)
        self.token = ""
        self.cluster_id = ""
        self._agent_credential = ""
        self.agent: AgentProcess | None = None

    @property
    def agent_log(self) -> Path:
        return self.workdir / "agent.log"

    @property
    def server_log(self) -> Path:
        return self.server.data_dir / "server.log"

    def start(self) -> None:
        """Control plane, server, cluster registration, agent: in that order."""
        self.control_plane.start()
        started = time.monotonic()
        self.server.start()
        self.report(
            f"kubegate server up at {self.server.url} in {time.monotonic() - started:.1f} s"
        )
        self.token = self.server.login()
        cluster = self.server.register_cluster(self.token, self.cluster_name)
        self.cluster_id = str(cluster["id"])
        self._agent_credential = str(cluster["agent_credential"])
        self.start_agent()

    def start_agent(self) -> None:
        """Start the agent process (it dials the server on its own)."""
        self.agent = AgentProcess(
            server_url=self.server.url,
            cluster_token=self._agent_credential,
            kubeconfig=self.control_plane.credentials.kubeconfig,
            ca_file=self.server.ca_file,
            cluster_name=self.cluster_name,
            log=self.agent_log,
        )
        self.agent.start()

    def stop_agent(self) -> None:
        """Stop the agent (SIGTERM, as a rollout would); idempotent."""
        if self.agent is not None:
            self.agent.stop()
            self.agent = None

    def pids(self) -> dict[str, int]:
        """Process ids of the running processes by role: ``agent``, ``server`` and the
        control plane's (``kube-apiserver``, ``etcd``, ...)."""
        found = {}
        for role, processes in (
            ("server", self.server.processes()),
            ("agent", self.agent.processes() if self.agent is not None else []),
        ):
            for process in processes:
                found[role] = process.pid
        for process in self.control_plane.processes():
            found[process.name] = process.pid
        return found

    def close(self) -> None:
        """Stop everything that started, newest first."""
        try:
            self.stop_agent()
        finally:
            try:
                self.server.stop()
            finally:
                self.control_plane.stop()

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """Resident memory now (``VmRSS``) and at its peak (``VmHWM``) of a process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


async def bounded(items: Sequence[T], work: Callable[[T], Awaitable[U]], limit: int) -> list[U]:
    """``work`` on every item, at most ``limit`` at a time; answers in the items' order."""
    results: dict[int, U] = {}
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(items):
            index = next_index
            next_index += 1
            results[index] = await work(items[index])

    async with asyncio.TaskGroup() as tasks:
        for _ in range(min(limit, len(items))):
            tasks.create_task(worker())
    return [results[index] for index in range(len(items))]


class GatewayApi:
    """The REST calls the benchmarks make, as the organisation admin, over keep-alive HTTPS.

    A 503 answer ("nothing was changed, retry shortly") is retried, as a well-behaved client
    would, and counted in :attr:`unavailable`.
    """

    def __init__(self, stack: Stack, connections: int = 16) -> None:
        self.cluster_id = stack.cluster_id
        self._grants = f"/api/v1/clusters/{stack.cluster_id}/access/grants"
        self._client = httpx.AsyncClient(
            base_url=stack.server.url,
            verify=ssl.create_default_context(cafile=str(stack.server.ca_file)),
            headers={"Authorization": f"Bearer {stack.token}"},
            timeout=120,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self.unavailable = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _json(self, method: str, url: str, ok: Sequence[int], **kwargs: Any) -> Any:
        for attempt in range(UNAVAILABLE_RETRIES + 1):
            response = await self._client.request(method, url, **kwargs)
            if response.status_code != 503 or attempt == UNAVAILABLE_RETRIES:
                break
            self.unavailable += 1
            await asyncio.sleep(0.25 * (attempt + 1))
        if response.status_code not in ok:
            raise BenchmarkFailed(
                f"{method} {url} answered {response.status_code}: {response.text}"
            )
        return response.json() if response.content else None

    async def add_member(self, email: str) -> None:
        """Add a member (201), or accept that they already are one (409)."""
        body = {"email": email, "display_name": email.split("@")[0]}
        await self._json("POST", "/api/v1/users", (201, 409), json=body)

    async def create_grant(self, email: str, role: str, namespace: str | None) -> GrantJson:
        body: dict[str, str] = {"email": email, "role": role}
        if namespace is not None:
            body["namespace"] = namespace
        # 200: an identical grant exists, which only a retried POST that did land can cause.
        grant: GrantJson = await self._json("POST", self._grants, (200, 201), json=body)
        return grant

    async def delete_grant(self, grant_id: str) -> None:
        await self._json("DELETE", f"{self._grants}/{grant_id}", (204,))

    async def revoke_all(self) -> int:
        """Revoke every grant on the cluster; answers how many there were."""
        url = f"/api/v1/clusters/{self.cluster_id}/access/revoke-all"
        answer = await self._json("POST", url, (200,))
        return int(answer["grants_removed"])

    async def online(self) -> bool:
        cluster = await self._json("GET", f"/api/v1/clusters/{self.cluster_id}", (200,))
        return bool(cluster["online"])

    async def grants_page(
        self, cursor: str | None, limit: int = MAX_LIMIT
    ) -> tuple[list[GrantJson], str | None]:
        """One page of the cluster's grants, oldest first, and the cursor of the next."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = await self._json("GET", self._grants, (200,), params=params)
        items: list[GrantJson] = page["items"]
        return items, page.get("next_cursor")

    async def newest_grant(self, grant: GrantJson) -> GrantJson:
        """``grant`` as the API shows it now, in one request whatever the number of grants.

        The API has no single-grant GET and lists oldest first, so this asks for the page
        that starts just before the grant was created, with a cursor of the server's own
        format (``encode_cursor``). Only right for the newest grant, which the benchmark's
        sample grant is: nothing else is created while it is polled.
        """
        created = dt.datetime.fromisoformat(grant["created_at"])
        cursor = encode_cursor(created - dt.timedelta(microseconds=1), "0")
        items, _ = await self.grants_page(cursor, limit=1)
        if not items or items[0]["id"] != grant["id"]:
            raise BenchmarkFailed(f"grant {grant['id']} is not the newest grant any more")
        return items[0]


class OwnedBindings:
    """The bindings kubegate owns in the cluster, read as the cluster's admin."""

    def __init__(self, kubeconfig: Path) -> None:
        self._client = AsyncClient(KubeConfig.from_file(kubeconfig), field_manager="kubegate")
        self._labels: LabelSelector = {MANAGED_BY_LABEL: MANAGED_BY}

    async def aclose(self) -> None:
        await self._client.close()

    async def ensure_namespaces(self, names: Sequence[str]) -> None:
        for name in names:
            try:
                await self._client.create(Namespace(metadata=ObjectMeta(name=name)))
            except ApiError as exc:
                if exc.status.code != 409:
                    raise

    async def count(self) -> tuple[int, int]:
        """How many owned RoleBindings and ClusterRoleBindings exist."""
        role_bindings = 0
        async for _ in self._client.list(
            RoleBinding, namespace=ALL_NS, labels=self._labels, chunk_size=1000
        ):
            role_bindings += 1
        cluster_role_bindings = 0
        async for _ in self._client.list(ClusterRoleBinding, labels=self._labels, chunk_size=1000):
            cluster_role_bindings += 1
        return role_bindings, cluster_role_bindings

    async def any_left(self) -> bool:
        """Whether any owned binding exists (one small list call per kind)."""
        role_bindings = self._client.list(
            RoleBinding, namespace=ALL_NS, labels=self._labels, chunk_size=1
        )
        if await anext(aiter(role_bindings), None) is not None:
            return True
        cluster_role_bindings = self._client.list(
            ClusterRoleBinding, labels=self._labels, chunk_size=1
        )
        return await anext(aiter(cluster_role_bindings), None) is not None

    async def exists(self, grant: GrantJson) -> bool:
        """Whether the binding of ``grant`` exists."""
        try:
            if grant["namespace"] is not None:
                await self._client.get(
                    RoleBinding, binding_name(grant["id"]), namespace=grant["namespace"]
                )
            else:
                await self._client.get(ClusterRoleBinding, binding_name(grant["id"]))
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise
        return True
