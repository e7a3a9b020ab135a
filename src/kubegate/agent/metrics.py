"""The agent's Prometheus metrics and their optional listener (``--metrics-address``).

One :class:`AgentMetrics` per agent, in its own :class:`~prometheus_client.CollectorRegistry`
(tests run several agents in one process). Reconcile passes are counted and timed where they
run (:class:`~kubegate.agent.reconcile.Reconciler`); the tunnel's state is read from
:class:`~kubegate.agent.client.AgentTunnel` only when Prometheus scrapes.

:class:`MetricsListener` serves ``GET /metrics`` with prometheus-client's own WSGI server in
a daemon thread: the event loop never serves (nor waits for) a scrape, and collecting reads
plain attributes and the library's lock-protected values, which is safe from another thread.
Off unless asked for: the agent otherwise opens no port at all.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubegate.errors import KubegateError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from kubegate.agent.client import AgentTunnel

# A pass lists the owned bindings and applies the changes, 16 calls at once: tens of
# milliseconds for a few grants, seconds for thousands.
RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class AgentMetrics:
    """Reconcile passes, their durations and failures; the tunnel's state at scrape time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.reconcile_passes = Counter(
            "kubegate_agent_reconcile_passes",
            "Reconcile passes run (converging the cluster's bindings on the desired set).",
            registry=self.registry,
        )
        self.reconcile_failures = Counter(
            "kubegate_agent_reconcile_failures",
            "Reconcile passes that failed: the pass itself (listing bindings) or at least one "
            "binding change; they are retried.",
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "kubegate_agent_reconcile_duration_seconds",
            "Time one reconcile pass took.",
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self._tunnel = _TunnelState()
        self.registry.register(self._tunnel)

    def watch(self, tunnel: AgentTunnel) -> None:
        """Report ``tunnel``'s state when scraped."""
        self._tunnel.tunnel = tunnel

    def reconciled(self, seconds: float, *, failed: bool) -> None:
        """One reconcile pass ended."""
        self.reconcile_passes.inc()
        self.reconcile_duration.observe(seconds)
        if failed:
            self.reconcile_failures.inc()


class _TunnelState(Collector):
    def __init__(self) -> None:
        self.tunnel: AgentTunnel | None = None

    def collect(self) -> Iterator[Metric]:
        tunnel = self.tunnel
        connected = 1 if tunnel is not None and tunnel.connected.is_set() else 0
        opened = tunnel.connections if tunnel is not None else 0
        yield GaugeMetricFamily(
            "kubegate_agent_tunnel_connected",
            "1 while the tunnel to the kubegate server is up (the server's hello received).",
            value=connected,
        )
        yield CounterMetricFamily(
            "kubegate_agent_tunnel_reconnects",
            "Times the tunnel was opened again after the first (each follows a lost tunnel).",
            value=max(0, opened - 1),
        )

    def describe(self) -> Iterable[Metric]:
        return self.collect()


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, or ``:PORT`` for every address) as a (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise KubegateError(f"--metrics-address {address!r} is not HOST:PORT (e.g. 0.0.0.0:9090)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class MetricsListener:
    """``GET /metrics`` of one registry over plain HTTP, served from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        self.registry = registry
        self.host, self._port = parse_address(address)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the one picked when asked for 0)."""
        return self._server.server_port if self._server is not None else self._port

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(
                self._port, addr=self.host, registry=self.registry
            )
        except OSError as exc:
            raise KubegateError(
                f"cannot listen for metrics on {self.host}:{self._port}: {exc}"
            ) from exc

    async def close(self) -> None:
        """Stop serving (the thread's poll loop ends within half a second, off the loop)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        await asyncio.to_thread(thread.join)
