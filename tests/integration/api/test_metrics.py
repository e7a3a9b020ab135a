"""``GET /metrics`` on the server: its protection, and counters that move with real traffic.

A real server (uvicorn, SQLite and PostgreSQL), a real tunnel to a minimal agent, real HTTP
requests through the proxy listener; every scrape is read with prometheus-client's own
text-format parser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kubegate.settings import Settings
from kubegate.tunnel.transport import TunnelStream
from tests.fixtures.access import MEMBER_EMAIL, grant, token_path
from tests.fixtures.api import Api, make_settings, serving
from tests.fixtures.metrics import Scrape, parse, scrape
from tests.fixtures.tunnel_agent import agent_connected, register, wait_online

GUARD = 20.0
PODS = "/api/v1/namespaces/default/pods"
METRICS_TOKEN = "s3cret-metrics-token-0123456789"


def sqlite_server(tmp_path: Path, **settings: object) -> Iterator[Api]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kubegate.db'}"
    with serving(make_settings(url, tmp_path / "data", **settings)) as api:
        yield api


@pytest.fixture
def token_protected(tmp_path: Path) -> Iterator[Api]:
    yield from sqlite_server(tmp_path, metrics_token=METRICS_TOKEN)


@pytest.fixture
def api_settings(database_url: str, tmp_path: Path) -> Settings:
    """The ``api`` fixture's server, with open metrics and small limits to run into."""
    return make_settings(
        database_url,
        tmp_path / "data",
        metrics="open",
        kube_token_mints_per_minute=2,
        proxy_request_burst=4,
        proxy_requests_per_second=0.01,
    )


# --- protection -----------------------------------------------------------------------------


def test_metrics_are_off_unless_configured(tmp_path: Path) -> None:
    for api in sqlite_server(tmp_path):
        response = api.client.get("/metrics")
        assert response.status_code == 404
        assert "metrics are turned off" in response.json()["error"]["message"]


def test_metrics_turned_off_answer_404_even_with_a_token(tmp_path: Path) -> None:
    for api in sqlite_server(tmp_path, metrics="off", metrics_token=METRICS_TOKEN):
        response = api.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status_code == 404


def test_a_metrics_token_turns_token_protection_on_and_the_right_token_reads(
    token_protected: Api,
) -> None:
    result = scrape(f"{token_protected.url}/metrics", METRICS_TOKEN)
    assert "kubegate_proxy_requests" in result.families


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token-0123456789abc",
        f"Basic {METRICS_TOKEN}",
        f"Bearer {METRICS_TOKEN}x",
    ],
    ids=["missing", "wrong", "not-bearer", "longer"],
)
def test_token_protected_metrics_refuse_anything_but_the_token(
    token_protected: Api, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = token_protected.client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert METRICS_TOKEN not in response.text


def test_an_api_token_does_not_read_token_protected_metrics(token_protected: Api) -> None:
    response = token_protected.get("/metrics")  # the admin's own bearer token
    assert response.status_code == 401


def test_open_metrics_need_no_credential(tmp_path: Path) -> None:
    for api in sqlite_server(tmp_path, metrics="open"):
        result = scrape(f"{api.url}/metrics")
        assert result.value("kubegate_tunnels_connected") == 0


# --- counters that move -------------------------------------------------------------------


async def eventually_scrape(api: Api, check: str, predicate: object) -> Scrape:
    """Scrape until ``predicate(scrape)`` holds (the deadline only guards a hang)."""
    assert callable(predicate)
    deadline = time.monotonic() + GUARD
    while True:
        async with httpx.AsyncClient(timeout=GUARD) as client:
            result = parse((await client.get(f"{api.url}/metrics")).text)
        if predicate(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_proxied_requests_mints_tunnels_and_limits_move_the_counters(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id, credential = await asyncio.to_thread(register, api, "prod")
    await asyncio.to_thread(grant, api, cluster_id, member[0])
    minted = await asyncio.to_thread(api.post, token_path(cluster_id), member[1])
    assert minted.status_code == 200, minted.text
    token = str(minted.json()["token"])
    release_watch = asyncio.Event()

    async def apiserver(stream: TunnelStream) -> None:
        assert stream.request is not None
        await stream.respond(200, (("content-type", "application/json"),))
        if "watch=1" in stream.request.path:
            await stream.send(b'{"type":"ADDED","object":{}}\n')
            await release_watch.wait()
        await stream.send(b"{}", end_stream=True)

    before = parse((await asyncio.to_thread(api.client.get, "/metrics")).text)
    assert before.value("kubegate_kube_token_mints_total") == 1
    auth = {"Authorization": f"Bearer {token}"}
    async with agent_connected(api.url, credential, proxied=apiserver):
        await wait_online(api, cluster_id, True)
        async with httpx.AsyncClient(base_url=api.proxy_url, timeout=GUARD) as client:
            listed = await client.get(f"/clusters/{cluster_id}{PODS}", headers=auth)
            assert listed.status_code == 200
            async with client.stream(
                "GET", f"/clusters/{cluster_id}{PODS}?watch=1", headers=auth
            ) as watch:
                assert watch.status_code == 200
                chunks = watch.aiter_raw()
                await chunks.__anext__()  # the first event arrived: the watch is open
                during = await eventually_scrape(
                    api,
                    "the watch to count as open",
                    lambda s: s.value("kubegate_proxy_open_streams", kind="watch") == 1,
                )
                release_watch.set()
                async for _ in chunks:
                    pass
            # The burst was 4: list and watch took two, so of three more one is refused.
            codes = [
                (await client.get(f"/clusters/{cluster_id}{PODS}", headers=auth)).status_code
                for _ in range(3)
            ]
            assert codes == [200, 200, 429]
        after = await eventually_scrape(
            api,
            "the watch to close",
            lambda s: s.value("kubegate_proxy_open_streams", kind="watch") == 0,
        )
    labels = {"cluster": cluster_id}
    assert after.value("kubegate_proxy_requests_total", verb="list", code="200", **labels) == 3
    assert after.value("kubegate_proxy_requests_total", verb="watch", code="200", **labels) == 1
    assert after.value("kubegate_proxy_requests_total", verb="list", code="429", **labels) == 1
    # Only the requests that held nothing open are timed (the watch is left out).
    assert after.value("kubegate_proxy_request_duration_seconds_count", verb="list", **labels) == 4
    assert after.value("kubegate_proxy_request_duration_seconds_count", verb="watch") == 0
    assert after.value("kubegate_rate_limited_total", limit="proxy_requests") == 1
    assert during.value("kubegate_tunnels_connected") == 1
    assert after.value("kubegate_tunnel_connects_total") == 1
    assert after.value("kubegate_tunnel_reconnects_total") == 0
    assert after.value("kubegate_database_query_duration_seconds_count") > before.value(
        "kubegate_database_query_duration_seconds_count"
    )
    assert after.total("kubegate_grants") == 1
    for text in (token, member[1], MEMBER_EMAIL):
        assert text not in str(after.families)

    # Mints: one more is allowed (two a minute), the next is refused and counted.
    again = [await asyncio.to_thread(api.post, token_path(cluster_id), member[1]) for _ in "ab"]
    assert [r.status_code for r in again] == [200, 429]
    final = parse((await asyncio.to_thread(api.client.get, "/metrics")).text)
    assert final.value("kubegate_kube_token_mints_total") == 2
    assert final.value("kubegate_rate_limited_total", limit="kube_token_mints") == 1
    assert final.value("kubegate_audit_queue_events") >= 0
    assert "kubegate_audit_dropped_events" in final.families
