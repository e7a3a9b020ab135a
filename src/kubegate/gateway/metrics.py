"""The gateway's Prometheus metrics: proxied requests, open streams, refusals, tunnels, audit.

One :class:`GatewayMetrics` per server process, registered in the
:class:`~prometheus_client.CollectorRegistry` it is given (never the library's global one:
tests run many servers in one process). The proxy's hot path touches it once per request
(:meth:`GatewayMetrics.finished`) through label children resolved once per (cluster, verb,
code) and kept in a dictionary, so a request costs a dictionary lookup, a counter increment
and a histogram observation. What the gateway already counts in memory (tunnels, the audit
queue) is read only when Prometheus scrapes (:class:`_GatewayState`).

Labels stay bounded: ``cluster`` is a cluster id, and only once a kube token was accepted
for it (a stranger's made-up ids never become series); ``verb`` is one of Kubernetes' verbs
or ``other``; ``code`` an HTTP status. Never a path, a user, an email or a token.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from kubegate.gateway.admission import Outcome
    from kubegate.gateway.audit import AuditTrail
    from kubegate.gateway.registry import TunnelRegistry

VERBS = frozenset(
    {
        "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
        "proxy", "head", "options",
    }
)  # fmt: skip
"""Verbs that label a request as they are; any other (a made-up method) is ``other``."""

STREAM_KINDS = ("watch", "exec", "attach", "portforward")

RateLimit = Literal["proxy_requests", "proxy_watches", "proxy_streams", "kube_token_mints"]
RATE_LIMITS: tuple[RateLimit, ...] = (
    "proxy_requests",
    "proxy_watches",
    "proxy_streams",
    "kube_token_mints",
)

# Plain requests: most answer within milliseconds through a tunnel; a slow apiserver list
# takes seconds. Watches and upgraded streams are not observed (they last minutes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    """The proxy's counters and histograms, and a scrape-time view of tunnels and audit."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._requests = Counter(
            "kubegate_proxy_requests",
            "Requests through the Kubernetes API proxy, by cluster id, verb and HTTP status "
            "(refusals included; 101 for an upgraded exec, attach or port-forward).",
            ["cluster", "verb", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "kubegate_proxy_request_duration_seconds",
            "Time from a proxied request's head to the end of its answer, for requests that "
            "hold nothing open (watches and upgraded streams are left out).",
            ["cluster", "verb"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        open_streams = Gauge(
            "kubegate_proxy_open_streams",
            "Long-lived proxied requests open now, by kind (watch, which includes logs -f; "
            "exec; attach; portforward).",
            ["kind"],
            registry=registry,
        )
        self._open = {kind: open_streams.labels(kind=kind) for kind in STREAM_KINDS}
        rate_limited = Counter(
            "kubegate_rate_limited",
            "Requests refused with 429, by the limit that refused them.",
            ["limit"],
            registry=registry,
        )
        self.rate_limited = {limit: rate_limited.labels(limit=limit) for limit in RATE_LIMITS}
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._state = _GatewayState()
        registry.register(self._state)

    def watch(self, *, tunnels: TunnelRegistry, audit: AuditTrail) -> None:
        """Report these (the server's own) tunnel registry and audit queue when scraped."""
        self._state.tunnels = tunnels
        self._state.audit = audit

    def stream_opened(self, kind: str) -> None:
        """A watch, exec, attach or port-forward was admitted (``kind`` of
        :data:`STREAM_KINDS`)."""
        self._open[kind].inc()

    def stream_closed(self, kind: str) -> None:
        self._open[kind].dec()

    def refused(self, limit: RateLimit) -> None:
        """A request was refused with 429 by ``limit``."""
        self.rate_limited[limit].inc()

    def finished(self, outcome: Outcome, seconds: float, *, long_running: bool) -> None:
        """One proxied request ended (called once, from the forwarder's ``finally``)."""
        info = outcome.info
        verb = info.verb if info is not None else "unknown"
        if verb not in VERBS:
            verb = "unknown" if info is None else "other"
        key = (outcome.cluster_id or "", verb, outcome.status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(cluster=key[0], verb=verb, code=str(outcome.status)),
                self._duration.labels(cluster=key[0], verb=verb),
            )
        children[0].inc()
        if not long_running and outcome.status != 101:
            children[1].observe(seconds)


class _GatewayState(Collector):
    """Tunnels and the audit queue, read from the gateway's memory at scrape time."""

    def __init__(self) -> None:
        self.tunnels: TunnelRegistry | None = None
        self.audit: AuditTrail | None = None

    def collect(self) -> Iterator[Metric]:
        connected = connects = reconnects = 0
        if self.tunnels is not None:
            connected = self.tunnels.connected_count()
            counts: Tally[str] = self.tunnels.connects
            connects = sum(counts.values())
            reconnects = sum(n - 1 for n in counts.values() if n > 1)
        yield _gauge(
            "kubegate_tunnels_connected", "Agents whose tunnel to this server is up.", connected
        )
        yield _counter(
            "kubegate_tunnel_connects",
            "Agent tunnels accepted by this server (after the agent's hello).",
            connects,
        )
        yield _counter(
            "kubegate_tunnel_reconnects",
            "Agent tunnels accepted for a cluster whose agent had connected to this server "
            "before (a flapping tunnel makes this climb).",
            reconnects,
        )
        pending = self.audit.pending if self.audit is not None else 0
        dropped = self.audit.dropped_total if self.audit is not None else 0
        yield _gauge(
            "kubegate_audit_queue_events",
            "Proxy audit events queued in memory, not yet written to the database.",
            pending,
        )
        yield _counter(
            "kubegate_audit_dropped_events",
            "Proxy audit events dropped because the queue was full (the database was too slow "
            "or down).",
            dropped,
        )

    def describe(self) -> Iterable[Metric]:
        return self.collect()


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
