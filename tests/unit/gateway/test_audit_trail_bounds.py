"""The proxy's audit queue stays bounded whatever the store does: a write that hangs never
makes :meth:`AuditTrail.add` wait, a full queue drops its oldest events and counts them, and
the count reaches the metric and the log.

The store is fault injection (a database that hangs, then refuses, then recovers); the real
store on SQLite and PostgreSQL is ``tests/integration/gateway/test_audit_trail.py``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from kubegate.errors import Unavailable
from kubegate.gateway.audit import AuditTrail
from kubegate.gateway.metrics import GatewayMetrics
from kubegate.gateway.store import AuditRecord

pytestmark = pytest.mark.anyio


class FaultyStore:
    """An audit store whose writes hang until ``release`` is set, or fail while ``down``."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.down = False
        self.written: list[int] = []

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        self.entered.set()
        await self.release.wait()
        if self.down:
            raise Unavailable("the database refused the write")
        self.written += [int(r.detail["index"]) for r in records]


def add(trail: AuditTrail, indexes: range) -> None:
    for index in indexes:
        trail.add(
            org_id=None,
            user_id=None,
            email="ada@example.com",
            cluster_id=None,
            status=200,
            detail={"verb": "get", "resource": "pods", "index": index},
        )


def dropped_metric(trail: AuditTrail) -> float | None:
    registry = CollectorRegistry()
    # No tunnel registry here: the scrape reports none connected.
    GatewayMetrics(registry).watch(tunnels=None, audit=trail)  # type: ignore[arg-type]
    return registry.get_sample_value("kubegate_audit_dropped_events_total")


async def test_a_hung_write_never_blocks_adding_and_the_full_queue_drops_the_oldest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultyStore()
    store.release.clear()
    trail = AuditTrail(store, max_pending=5)
    add(trail, range(3))
    flushing = asyncio.create_task(trail.flush())
    await store.entered.wait()  # the write of events 0-2 hangs
    add(trail, range(3, 23))  # returns at once although the store is stuck
    assert trail.pending == 5 and trail.dropped_total == 15
    assert dropped_metric(trail) == 15

    store.release.set()
    with caplog.at_level(logging.ERROR, logger="kubegate.gateway.audit"):
        await flushing
    assert store.written == [0, 1, 2, 18, 19, 20, 21, 22]
    assert "dropped 15 proxy audit events while the database was down" in caplog.messages


async def test_while_writes_fail_every_round_warns_with_the_drops_and_the_total_only_grows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultyStore()
    store.down = True
    trail = AuditTrail(store, max_pending=3)
    add(trail, range(5))
    with caplog.at_level(logging.WARNING, logger="kubegate.gateway.audit"):
        await trail.flush()
        add(trail, range(5, 7))
        await trail.flush()
    warnings = [m for m in caplog.messages if "cannot write proxy audit events yet" in m]
    assert [w.split(":")[0] for w in warnings] == [
        "cannot write proxy audit events yet (3 queued, 2 dropped since the last write)",
        "cannot write proxy audit events yet (3 queued, 4 dropped since the last write)",
    ]
    assert trail.dropped_total == 4 and store.written == []

    store.down = False
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="kubegate.gateway.audit"):
        await trail.flush()
        add(trail, range(7, 8))
        await trail.flush()  # nothing dropped since: no second error
    assert caplog.messages == ["dropped 4 proxy audit events while the database was down"]
    assert store.written == [4, 5, 6, 7]
    assert trail.dropped_total == 4 and dropped_metric(trail) == 4
