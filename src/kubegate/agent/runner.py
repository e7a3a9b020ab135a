"""``kubegate agent``: Kubernetes credentials, the reconciler and the tunnel, wired together."""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from lightkube import AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.exceptions import ConfigError

from kubegate.agent.client import AgentTunnel, TunnelTarget
from kubegate.agent.cluster_info import agent_namespace, cluster_info
from kubegate.agent.desired import DEFAULT_USER_PREFIX
from kubegate.agent.metrics import AgentMetrics, MetricsListener
from kubegate.agent.proxy import serve_proxied
from kubegate.agent.reconcile import Reconciler
from kubegate.agent.tokens import TokenMinter
from kubegate.agent.upstream import Upstream
from kubegate.domain.access import GrantSpec
from kubegate.errors import KubegateError
from kubegate.tunnel.control import GrantResult, ServiceAccountResult

FIELD_MANAGER = "kubegate-agent"


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """Everything ``kubegate agent`` is told on its command line or in its environment."""

    target: TunnelTarget
    kubeconfig: Path | None = None
    context: str | None = None
    user_prefix: str = DEFAULT_USER_PREFIX
    resync_seconds: float = 300.0
    retry_seconds: float = 2.0
    metrics_address: str | None = None  # HOST:PORT of GET /metrics; None: no listener
    # Reported for direct kubeconfigs; None: the kubeconfig's (none in the cluster).
    api_server_url: str | None = None
    # The agent's own (the break-glass account's); None: the pod's, or kube-system outside.
    namespace: str | None = None

    @property
    def in_cluster(self) -> bool:
        """Whether the agent acts as its pod's ServiceAccount (no ``--kubeconfig``)."""
        return self.kubeconfig is None


def kube_config(kubeconfig: Path | None, context: str | None) -> SingleConfig:
    """The agent's Kubernetes credentials: ``--kubeconfig`` (its current context, or
    ``context``), else the in-cluster service account."""
    try:
        if kubeconfig is not None:
            single = KubeConfig.from_file(kubeconfig).get(context)
            if single is None:
                raise KubegateError(f"{kubeconfig} has no context {context or '(current)'}")
            return single
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            in_cluster = KubeConfig.from_service_account().get()
            assert in_cluster is not None
            return in_cluster
    except (ConfigError, OSError, KeyError, ValueError) as exc:
        raise KubegateError(f"cannot load Kubernetes credentials: {exc}") from exc
    raise KubegateError(
        "no Kubernetes credentials: run the agent inside the cluster (in-cluster service "
        "account) or pass --kubeconfig"
    )


class Agent:
    """One agent process: a reconciler and the tunnel that feeds it, and the apiserver
    connection that serves the proxied requests arriving over that tunnel.

    ``info`` is the hello's (:func:`~kubegate.agent.cluster_info.cluster_info`); by default
    just the cluster's name and the user prefix, in the namespace ``options`` resolves to.
    """

    def __init__(
        self,
        options: AgentOptions,
        client: AsyncClient,
        upstream: Upstream,
        info: dict[str, str] | None = None,
    ) -> None:
        self.options = options
        namespace = agent_namespace(options.namespace, in_cluster=options.in_cluster)
        if info is None:
            info = {
                "cluster_name": options.target.cluster_name,
                "user_prefix": options.user_prefix,
                "namespace": namespace,
            }
        self.metrics = AgentMetrics()
        self.metrics_listener: MetricsListener | None = None
        if options.metrics_address is not None:
            self.metrics_listener = MetricsListener(self.metrics.registry, options.metrics_address)
        self.reconciler = Reconciler(
            client,
            self._report,
            user_prefix=options.user_prefix,
            resync_seconds=options.resync_seconds,
            retry_seconds=options.retry_seconds,
            metrics=self.metrics,
        )
        self.tokens = TokenMinter(client, self.reconciler.manages, namespace=namespace)
        self.tunnel = AgentTunnel(
            options.target,
            self.reconciler,
            info=info,
            proxy=functools.partial(
                serve_proxied,
                upstream=upstream,
                user_prefix=options.user_prefix,
                manages=self.reconciler.manages,
            ),
            tokens=self.tokens.answer,
        )
        self.metrics.watch(self.tunnel)

    async def _report(
        self, revision: int, results: list[GrantResult], accounts: list[ServiceAccountResult]
    ) -> None:
        await self.tunnel.report(revision, results, accounts)

    async def run(self) -> None:
        """Reconcile and hold the tunnel (and serve ``/metrics`` when asked to) until
        cancelled."""
        listener = self.metrics_listener
        if listener is not None:
            listener.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.reconciler.run(), name="reconciler")
                tasks.create_task(self.tunnel.run(), name="tunnel")
        finally:
            if listener is not None:
                await listener.close()


async def run_agent(options: AgentOptions) -> None:
    """Run the agent until cancelled."""
    config = kube_config(options.kubeconfig, options.context)
    # Built first: a kubeconfig the proxy cannot use (an exec plugin) stops the agent here.
    upstream = Upstream.from_config(config)
    try:
        info = cluster_info(
            config,
            in_cluster=options.in_cluster,
            namespace=agent_namespace(options.namespace, in_cluster=options.in_cluster),
            api_server_url=options.api_server_url,
            cluster_name=options.target.cluster_name,
            user_prefix=options.user_prefix,
        )
        client = AsyncClient(config, field_manager=FIELD_MANAGER)
        try:
            await Agent(options, client, upstream, info).run()
        finally:
            await client.close()
    finally:
        await upstream.aclose()


__all__ = ["Agent", "AgentOptions", "GrantSpec", "kube_config", "run_agent"]
