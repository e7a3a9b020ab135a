"""Whether a kubectl request may go through, decided from memory.

:class:`Admission` checks, without a database round trip: that the gateway is on, the kube
token (:class:`~kubegate.gateway.authority.Authority`), the request's RequestInfo, any
access-key scope, the identity's rate limit and its open watches and streams, and that the
cluster's agent is connected. A refusal is a :class:`~kubegate.errors.KubegateError` the
forwarder answers as a Kubernetes ``Status``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

from kubegate.domain.access import NO_ACCESS
from kubegate.domain.scope import ANY, AccessScope
from kubegate.errors import NotFound, PermissionDenied, RateLimited, Unauthenticated, Unavailable
from kubegate.gateway.authority import Authority
from kubegate.gateway.headers import bearer_token, clean_request_headers
from kubegate.gateway.http1 import Request
from kubegate.gateway.limits import Concurrency, RateLimiter, retry_after
from kubegate.gateway.metrics import GatewayMetrics
from kubegate.gateway.registry import TunnelRegistry
from kubegate.gateway.store import Identity
from kubegate.gateway.target import split_target
from kubegate.kube.access_reviews import as_namespaced, is_self_review, reviewed_namespace
from kubegate.kube.requestinfo import RequestInfo, is_long_running, parse_request_info
from kubegate.settings import Settings

STREAMING_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})

Held = Literal["watch", "stream"]

ReadBody = Callable[[], Awaitable[bytes]]
"""Reads a request's whole body, bounded (raises to refuse one too large)."""


@dataclass
class Outcome:
    """What the audit event says about one exchange."""

    started: float
    method: str
    path: str
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    info: RequestInfo | None = None
    identity: Identity | None = None
    cluster_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that passed admission: who, what to forward, and what it counts against."""

    identity: Identity
    headers: tuple[tuple[str, str], ...]
    upgrade: str | None
    target: str
    cluster: str
    kind: Held | None  # what it holds open, counted against the identity's limits
    # What it holds open as the metrics name it: watch, exec, attach or portforward.
    stream: str | None = None


class Admission:
    """Admits requests; holds the per-identity rate limit and counts of open exchanges."""

    def __init__(
        self,
        *,
        settings: Settings,
        authority: Authority,
        tunnels: TunnelRegistry,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.authority = authority
        self.tunnels = tunnels
        self._clock = clock
        self.rate = RateLimiter(settings.proxy_requests_per_second, settings.proxy_request_burst)
        self.watches = Concurrency(settings.proxy_max_watches)
        self.streams = Concurrency(settings.proxy_max_streams)

    def release(self, admitted: Admitted) -> None:
        """The admitted exchange ended: it no longer counts against its identity's limits."""
        if admitted.kind is not None:
            self._limit(admitted.kind).release(admitted.identity.key)
        if admitted.stream is not None:
            self.metrics.stream_closed(admitted.stream)

    def _limit(self, kind: Held) -> Concurrency:
        return self.streams if kind == "stream" else self.watches

    async def admit(
        self,
        request: Request,
        method: str,
        outcome: Outcome,
        read_body: ReadBody | None = None,
    ) -> Admitted:
        """Check ``request``, recording what is known into ``outcome``; raises a
        :class:`~kubegate.errors.KubegateError` to refuse it.

        ``read_body`` reads the request's whole (small) body: called only for a
        SelfSubjectRulesReview or SelfSubjectAccessReview made with a namespace-limited
        access key, whose namespace is in the body (``kube/access_reviews.py``)."""
        target = split_target(request.target)
        outcome.path = target.path
        if not self.settings.gateway_enabled:
            raise NotFound("the kubegate access gateway is disabled")
        clean = clean_request_headers(request.headers)
        token = bearer_token(request.headers)
        if token is None:
            raise Unauthenticated(
                "no kube token: use a kubeconfig from kubegate (it carries a bearer token)"
            )
        identity, view = await self.authority.authorize(token, target.cluster_id)
        outcome.identity = identity
        outcome.cluster_id = target.cluster_id
        info = parse_request_info(
            method, target.path, target.query, upgrade=clean.upgrade is not None
        )
        outcome.info = info
        if info.subresource in ("exec", "attach"):
            query = parse_qs(target.query)
            outcome.extra["command"] = query.get("command", [])
            outcome.extra["container"] = query.get("container", [""])[0]
        if identity.scope is not None and not identity.scope.allows(info):
            asked = info
            if read_body is not None and is_self_review(info):
                namespace = reviewed_namespace(info, await read_body())
                asked = info if namespace is None else as_namespaced(info, namespace)
            if asked is info or not identity.scope.allows(asked):
                raise PermissionDenied(scope_refusal(identity.scope, asked))
        now = self._clock()
        wait = self.rate.take(identity.key, now)
        if wait > 0:
            seconds = retry_after(wait)
            self.metrics.refused("proxy_requests")
            raise RateLimited(
                f"too many requests through kubegate; try again in {seconds} s", retry_after=seconds
            )
        kind: Held | None = None
        if clean.upgrade is not None and info.subresource in STREAMING_SUBRESOURCES:
            kind = "stream"
        elif is_long_running(info, target.query) is not None:
            kind = "watch"
        if kind is not None:
            limit = self._limit(kind)
            if not limit.acquire(identity.key):
                self.metrics.refused("proxy_streams" if kind == "stream" else "proxy_watches")
                what = "exec/attach/port-forward streams" if kind == "stream" else "watches"
                raise RateLimited(
                    f"too many open {what} ({limit.limit}); close some and try again",
                    retry_after=1,
                )
        if self.tunnels.link(target.cluster_id) is None:
            if kind is not None:
                self._limit(kind).release(identity.key)
            raise Unavailable(
                f"cluster {view.name} is offline: its kubegate agent is not connected"
            )
        stream = None
        if kind is not None:
            stream = "watch" if kind == "watch" else info.subresource
            self.metrics.stream_opened(stream)
        return Admitted(
            identity, clean.headers, clean.upgrade, target.target, view.name, kind, stream
        )


def scope_refusal(scope: AccessScope, info: RequestInfo) -> str:
    """The ``Status`` message of a request the access key's scope refuses: what was asked,
    where, and the namespaces the key is limited to (``… scope (namespaces dev) does not
    allow list pods across all namespaces or cluster-wide``)."""
    if info.is_resource_request:
        resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
        where = (
            f" in namespace {info.namespace}"
            if info.namespace
            else " across all namespaces or cluster-wide"
        )
        what = f"{info.verb} {resource}{where}"
    else:
        what = f"{info.verb} {info.path}"
    namespaces = sorted({name for rule in scope.rules or () for name in rule.namespaces})
    limit = f" (namespaces {', '.join(namespaces)})" if namespaces and ANY not in namespaces else ""
    return f"{NO_ACCESS}: this access key's scope{limit} does not allow {what}"
