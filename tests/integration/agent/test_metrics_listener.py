"""The agent's ``--metrics-address`` listener, scraped over real HTTP."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import generate_latest

from kubegate.agent.metrics import AgentMetrics, MetricsListener, parse_address
from kubegate.errors import KubegateError
from tests.fixtures.metrics import parse


@pytest.mark.anyio
async def test_the_listener_serves_its_own_agents_metrics_while_the_loop_runs() -> None:
    first, second = AgentMetrics(), AgentMetrics()
    first.reconciled(0.02, failed=False)
    first.reconciled(0.5, failed=True)
    listener = MetricsListener(first.registry, "127.0.0.1:0")
    listener.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"http://127.0.0.1:{listener.port}/metrics")
        assert response.status_code == 200
        result = parse(response.text)
        assert result.value("kubegate_agent_reconcile_passes_total") == 2
        assert result.value("kubegate_agent_reconcile_failures_total") == 1
        assert result.value("kubegate_agent_reconcile_duration_seconds_count") == 2
        assert result.value("kubegate_agent_reconcile_duration_seconds_bucket", le="0.025") == 1
        assert result.value("kubegate_agent_tunnel_connected") == 0
        # Another agent in the same process has its own numbers.
        assert parse(_text(second)).value("kubegate_agent_reconcile_passes_total") == 0
    finally:
        await listener.close()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=2) as client:
            await client.get(f"http://127.0.0.1:{listener.port}/metrics")


@pytest.mark.anyio
async def test_a_taken_port_is_a_clear_error() -> None:
    taken = MetricsListener(AgentMetrics().registry, "127.0.0.1:0")
    taken.start()
    try:
        again = MetricsListener(AgentMetrics().registry, f"127.0.0.1:{taken.port}")
        with pytest.raises(KubegateError, match="cannot listen for metrics"):
            again.start()
    finally:
        await taken.close()


@pytest.mark.parametrize(
    ("address", "expected"),
    [("0.0.0.0:9090", ("0.0.0.0", 9090)), (":9090", ("0.0.0.0", 9090)), ("[::1]:9", ("::1", 9))],
)
def test_addresses_are_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9090", "host:", "host:http", "host:70000"])
def test_a_malformed_address_is_refused(address: str) -> None:
    with pytest.raises(KubegateError, match="is not HOST:PORT"):
        parse_address(address)


def _text(metrics: AgentMetrics) -> str:
    return generate_latest(metrics.registry).decode()
