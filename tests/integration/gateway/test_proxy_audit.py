"""Proxied requests in the audit log, end to end through the app (SQLite and PostgreSQL):
what ``GET /api/v1/audit`` shows of one, and a queue overfilled while the database refuses
audit rows, which drops and counts while the proxy keeps answering.

The fault is in the database itself: a trigger that refuses ``kube.request`` rows (admin
actions and kube-token mints still write theirs).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from kubegate.settings import Settings
from kubegate.tunnel.transport import TunnelStream
from tests.fixtures.access import MEMBER_EMAIL, add_cluster, grant, token_path
from tests.fixtures.api import Api, make_settings
from tests.fixtures.gateway import wait_for
from tests.fixtures.metrics import parse
from tests.fixtures.tunnel_agent import agent_connected, register, wait_online

PODS = "/api/v1/namespaces/default/pods"
QUEUE = 5


@pytest.fixture
def api_settings(database_url: str, tmp_path: Path) -> Settings:
    """A tiny audit queue (so it fills), open metrics (so the drops can be read)."""
    return make_settings(
        database_url, tmp_path / "data", audit_queue_max_events=QUEUE, metrics="open"
    )


def kube_token(api: Api, cluster_id: str, api_token: str) -> str:
    minted = api.post(token_path(cluster_id), api_token)
    assert minted.status_code == 200, minted.text
    return str(minted.json()["token"])


def audit(api: Api, **params: str) -> list[dict[str, Any]]:
    response = api.get("/api/v1/audit", params={"limit": "200", **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def refuse_proxied_rows(db: Engine, refuse: bool) -> None:
    """Fault injection in the database: a trigger that refuses proxied-request audit rows."""
    with db.begin() as conn:
        if db.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_proxied BEFORE INSERT ON audit_events "
                    "WHEN NEW.action = 'kube.request' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
                if refuse
                else text("DROP TRIGGER refuse_proxied")
            )
        elif refuse:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_proxied() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.action = 'kube.request' THEN RAISE EXCEPTION 'refused'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_proxied BEFORE INSERT ON audit_events "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_proxied()"
                )
            )
        else:
            conn.execute(text("DROP TRIGGER refuse_proxied ON audit_events"))


def test_a_proxied_exec_is_in_the_audit_log_with_its_command_container_and_client(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, member[0])
    token = kube_token(api, cluster_id, member[1])
    command = [("command", "sh"), ("command", "-c"), ("command", "id -u")]
    with httpx.Client(base_url=api.proxy_url, timeout=30) as client:
        answer = client.post(
            f"/clusters/{cluster_id}{PODS}/web/exec",
            params=[*command, ("container", "app"), ("stdout", "true")],
            headers={"Authorization": f"Bearer {token}", "User-Agent": "kubectl/v1.37.0 (test)"},
        )
    assert answer.status_code == 503  # no agent: the cluster is offline, and that is recorded

    [event] = wait_for(
        lambda: audit(api, resource="pods/exec", namespace="default"),
        timeout=10,
        what="the exec's audit event",
    )
    assert event["action"] == "kube.request" and event["result"] == "failure"
    assert event["actor_email"] == MEMBER_EMAIL and event["cluster_id"] == cluster_id
    assert (event["verb"], event["resource"], event["subresource"]) == ("create", "pods", "exec")
    assert event["status_code"] == 503 and event["source"] == "127.0.0.1"
    assert event["user_agent"] == "kubectl/v1.37.0 (test)"
    assert event["detail"]["command"] == ["sh", "-c", "id -u"]
    assert event["detail"]["container"] == "app" and event["detail"]["name"] == "web"
    assert token not in repr(event)
    # The same event through the other filters it matches, and none through one it does not.
    assert audit(api, verb="create", status="5xx", actor=MEMBER_EMAIL) == [event]
    assert audit(api, resource="pods/attach") == [] and audit(api, status="2xx") == []


@pytest.mark.anyio
async def test_an_overfull_queue_drops_and_counts_while_the_proxy_keeps_answering(
    api: Api, member: tuple[str, str], db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    cluster_id, credential = await asyncio.to_thread(register, api, "prod")
    await asyncio.to_thread(grant, api, cluster_id, member[0])
    token = await asyncio.to_thread(kube_token, api, cluster_id, member[1])

    async def answer(stream: TunnelStream) -> None:
        await stream.respond(200, (("content-type", "application/json"),))
        await stream.send(b"{}", end_stream=True)

    requests = 4 * QUEUE
    await asyncio.to_thread(refuse_proxied_rows, db, True)
    with caplog.at_level(logging.WARNING, logger="kubegate.gateway.audit"):
        async with agent_connected(api.url, credential, proxied=answer):
            await wait_online(api, cluster_id, True)
            async with httpx.AsyncClient(base_url=api.proxy_url, timeout=20) as client:
                auth = {"Authorization": f"Bearer {token}"}
                codes = [
                    (
                        await client.get(f"/clusters/{cluster_id}{PODS}/p{i}", headers=auth)
                    ).status_code
                    for i in range(requests)
                ]
        assert codes == [200] * requests  # the audit store refusing slowed nobody down

        # Exactly the queue's worth is kept, the rest is counted as dropped and logged.
        def dropped(value: float) -> bool:
            scrape = parse(api.client.get("/metrics").text)
            return scrape.value("kubegate_audit_dropped_events_total") == value and (
                scrape.value("kubegate_audit_queue_events") == QUEUE
            )

        await asyncio.to_thread(
            wait_for, lambda: dropped(requests - QUEUE), timeout=20, what="the drops counted"
        )

        def warned() -> bool:
            return any(
                f"({QUEUE} queued, {requests - QUEUE} dropped since the last write)" in m
                for m in caplog.messages
            )

        await asyncio.to_thread(wait_for, warned, timeout=20, what="the failing write's warning")

        await asyncio.to_thread(refuse_proxied_rows, db, False)
        lost = f"dropped {requests - QUEUE} proxy audit events while the database was down"
        await asyncio.to_thread(
            wait_for, lambda: lost in caplog.messages, timeout=20, what="the loss logged"
        )
    kept = await asyncio.to_thread(audit, api, action="kube.request")
    assert sorted(e["detail"]["name"] for e in kept) == sorted(
        f"p{i}" for i in range(requests - QUEUE, requests)
    )
