"""The database going away: 503 with a retry hint, nothing half-written, all well once it is back.

**PostgreSQL only.** The fault is injected in the transport: the app reaches a real PostgreSQL
through :class:`~tests.fixtures.faults.FaultyRelay`, a TCP relay that cuts every connection
and refuses new ones on command, or the moment the app sends a given statement. SQLite has no
transport to cut, so these tests do not run on it. Nothing in the app is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from kubegate.server.app import create_app
from kubegate.server.handlers import DATABASE_DOWN
from kubegate.storage.engine import async_url
from kubegate.testenv.postgres import PostgresServer
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


def test_postgres_readiness_follows_the_database(outage: Outage) -> None:
    assert outage.client.get("/readyz").status_code == 200
    outage.relay.go_down()
    down = outage.client.get("/readyz")
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "database": "down"}
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
