"""The database going away: 503 with a retry hint, nothing half-written, all well once it is back.

**PostgreSQL only.** The fault is injected in the transport: the app reaches a real PostgreSQL
through :class:`~tests.fixtures.faults.FaultyRelay`, a TCP relay that cuts every connection
and refuses new ones on command, or the moment the app sends a given statement. SQLite has no
transport to cut, so these tests do not run on it. Nothing in the app is mocked.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from kubegate.server.app import create_app
from kubegate.server.handlers import DATABASE_DOWN
from kubegate.storage.engine import async_url
from kubegate.storage.models import AuditEvent, KubeToken
from testenv.postgres import PostgresServer
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, ServerThread, make_settings
from tests.fixtures.faults import FaultyRelay


@dataclass
class Outage:
    """The app on PostgreSQL behind a relay that can take the database away."""

    client: httpx.Client
    relay: FaultyRelay
    token: str

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.token}"})

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.token}"})

    def cluster_names(self) -> list[str]:
        response = self.get("/api/v1/clusters")
        assert response.status_code == 200, response.text
        return [c["name"] for c in response.json()["items"]]


@pytest.fixture
def outage(postgres_server: PostgresServer, postgres_url: str, tmp_path: Path) -> Iterator[Outage]:
    """The app, its PostgreSQL database reached only through a :class:`FaultyRelay`."""
    assert postgres_server.port is not None
    with FaultyRelay("127.0.0.1", postgres_server.port) as relay:
        # Plain TCP, so a trigger can match the statement text on the wire.
        url = make_url(postgres_url).set(port=relay.port).update_query_dict({"sslmode": "disable"})
        settings = make_settings(
            async_url(url.render_as_string(hide_password=False)), tmp_path / "data"
        )
        with (
            ServerThread(create_app(settings)) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            login = client.post(
                "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            assert login.status_code == 200, login.text
            yield Outage(client, relay, login.json()["token"])


def assert_unavailable(response: httpx.Response) -> None:
    """The answer to any request while the database is away: 503, JSON, and when to retry."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "error": {"code": "unavailable", "message": DATABASE_DOWN, "details": {}}
    }


def test_postgres_readiness_follows_the_database(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    assert outage.client.get("/readyz").status_code == 200
    outage.relay.go_down()
    with caplog.at_level(logging.WARNING, logger="kubegate.server.routers.health"):
        down = outage.client.get("/readyz")
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "database": "down"}
    # The probe's answer says nothing more; the log says why.
    assert any(m.startswith("not ready: the database does not answer: ") for m in caplog.messages)
    assert outage.client.get("/healthz").status_code == 200  # alive, just not ready
    outage.relay.come_back()
    assert outage.client.get("/readyz").json() == {"status": "ok", "database": "up"}


def test_postgres_writes_while_the_database_is_down_answer_503_and_succeed_on_retry(
    outage: Outage,
) -> None:
    assert outage.post("/api/v1/clusters", {"name": "before"}).status_code == 201
    member = {"email": "dev@example.com", "display_name": "Dev"}
    assert outage.post("/api/v1/users", member).status_code == 201
    outage.relay.go_down()
    assert_unavailable(outage.post("/api/v1/clusters", {"name": "during"}))
    assert_unavailable(outage.post("/api/v1/users", {**member, "email": "ops@example.com"}))
    assert_unavailable(outage.get("/api/v1/clusters"))
    outage.relay.come_back()
    assert outage.client.get("/readyz").status_code == 200
    assert outage.cluster_names() == ["before"]
    members = [m["email"] for m in outage.get("/api/v1/users").json()["items"]]
    assert members == [ADMIN_EMAIL, "dev@example.com"]
    assert outage.post("/api/v1/clusters", {"name": "during"}).status_code == 201
    assert outage.cluster_names() == ["before", "during"]


@pytest.mark.parametrize(
    "trigger",
    [b"INSERT INTO clusters", b"COMMIT"],
    ids=["cut-before-the-insert", "cut-before-the-commit"],
)
def test_postgres_a_write_cut_mid_transaction_leaves_nothing_half_written(
    outage: Outage, trigger: bytes
) -> None:
    assert outage.post("/api/v1/clusters", {"name": "before"}).status_code == 201
    audit_before = outage.get("/api/v1/audit").json()["items"]
    outage.relay.go_down_on(trigger)
    assert_unavailable(outage.post("/api/v1/clusters", {"name": "during"}))
    assert outage.relay.tripped.is_set(), "the request never sent the statement to cut"
    outage.relay.come_back()
    assert outage.cluster_names() == ["before"]
    assert outage.get("/api/v1/audit").json()["items"] == audit_before  # no event either
    retried = outage.post("/api/v1/clusters", {"name": "during"})
    assert retried.status_code == 201, retried.text
    assert outage.cluster_names() == ["before", "during"]
    registered = [
        e["detail"]["name"]
        for e in outage.get("/api/v1/audit").json()["items"]
        if e["action"] == "cluster.register"
    ]
    assert registered == ["during", "before"]


def test_postgres_mints_cut_by_an_outage_answer_503_and_every_other_mint_is_kept(
    outage: Outage, postgres_url: str
) -> None:
    cluster_id = outage.post("/api/v1/clusters", {"name": "prod"}).json()["cluster"]["id"]
    me = outage.get("/api/v1/me").json()["user"]["id"]
    granted = outage.post(
        f"/api/v1/clusters/{cluster_id}/access/grants", {"user_id": me, "role": "view"}
    )
    assert granted.status_code == 201, granted.text

    def mint(_: int = 0) -> httpx.Response:
        with httpx.Client(base_url=outage.client.base_url, timeout=30) as client:
            return client.post(
                f"/api/v1/clusters/{cluster_id}/k8s-token",
                headers={"Authorization": f"Bearer {outage.token}"},
            )

    before = mint()
    assert before.status_code == 200, before.text
    # The database goes away as the next batch of mints writes its tokens.
    outage.relay.go_down_on(b"INSERT INTO kube_tokens")
    with ThreadPoolExecutor(6) as pool:
        during = list(pool.map(mint, range(6)))
    assert outage.relay.tripped.is_set(), "no mint ever reached the insert"
    for response in during:
        assert_unavailable(response)
    outage.relay.come_back()
    after = mint()
    assert after.status_code == 200, after.text

    answered = {hashlib.sha256(r.json()["token"].encode()).hexdigest() for r in (before, after)}
    engine = create_engine(async_url(postgres_url))
    try:
        with engine.connect() as conn:
            stored = set(conn.scalars(select(KubeToken.token_hash)))
            events = conn.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "kube_token.mint")
            )
    finally:
        engine.dispose()
    assert stored == answered
    assert events == 2  # the cut batch wrote no event either
