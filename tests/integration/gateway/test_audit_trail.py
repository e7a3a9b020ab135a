"""The proxy's audit trail (``gateway/audit.py``, written by ``server/gateway_store.py``) on
SQLite and PostgreSQL: batches are written off the event loop, and a database that refuses
them loses nothing it can keep.

The rows a real proxied request leaves are checked in ``test_proxy_admission.py``; here the
trail is driven directly, with a trigger as the fault (the database refusing inserts).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from kubegate.gateway.audit import AuditTrail
from kubegate.server.gateway_store import AUDIT_ACTION as ACTION
from kubegate.server.gateway_store import SqlGatewayStore
from kubegate.storage.engine import RoundTrips, create_engine, session_factory
from kubegate.storage.models import AuditEvent

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(db: Engine, database_url: str) -> AsyncIterator[SqlGatewayStore]:
    engine = create_engine(database_url)
    trips = RoundTrips(engine)
    try:
        yield SqlGatewayStore(session_factory(engine), trips)
    finally:
        trips.close()
        await engine.dispose()


def add(trail: AuditTrail, n: int) -> None:
    for index in range(n):
        trail.add(
            org_id=None,
            user_id=None,
            email=f"user{index}@example.com",
            cluster_id=None,
            status=200 if index % 2 else 403,
            detail={"verb": "get", "resource": "pods", "index": index},
        )


def rows(db: Engine) -> list[AuditEvent]:
    with Session(db) as session:
        query = select(AuditEvent).where(AuditEvent.action == ACTION)
        return sorted(session.scalars(query), key=lambda e: int(e.detail["index"]))


def refuse_inserts(db: Engine, refuse: bool) -> None:
    """Fault injection in the database: a trigger that refuses every audit row."""
    with db.begin() as conn:
        if db.dialect.name == "sqlite":
            if refuse:
                conn.execute(
                    text(
                        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                    )
                )
            else:
                conn.execute(text("DROP TRIGGER refuse_audit"))
        elif refuse:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
                )
            )
        else:
            conn.execute(text("DROP TRIGGER refuse_audit ON audit_events"))


async def test_a_flush_writes_every_queued_event_with_its_fields(
    db: Engine, store: SqlGatewayStore
) -> None:
    trail = AuditTrail(store)
    add(trail, 3)
    await trail.flush()
    assert trail.pending == 0
    written = rows(db)
    assert [(e.actor_email, e.result, e.target_id) for e in written] == [
        ("user0@example.com", "failure", "pods"),
        ("user1@example.com", "success", "pods"),
        ("user2@example.com", "failure", "pods"),
    ]
    assert written[1].detail == {"verb": "get", "resource": "pods", "index": 1, "status": 200}


async def test_events_the_database_refused_are_kept_and_written_once_it_accepts(
    db: Engine, store: SqlGatewayStore, caplog: pytest.LogCaptureFixture
) -> None:
    trail = AuditTrail(store)
    add(trail, 4)
    refuse_inserts(db, True)
    with caplog.at_level(logging.WARNING, logger="kubegate.gateway.audit"):
        await trail.flush()
    assert trail.pending == 4
    assert rows(db) == []
    assert any("cannot write proxy audit events yet" in m for m in caplog.messages)

    refuse_inserts(db, False)
    await trail.flush()
    assert trail.pending == 0
    assert [int(e.detail["index"]) for e in rows(db)] == [0, 1, 2, 3]


async def test_a_long_outage_drops_the_oldest_events_and_says_how_many(
    db: Engine, store: SqlGatewayStore, caplog: pytest.LogCaptureFixture
) -> None:
    trail = AuditTrail(store, max_pending=3)
    refuse_inserts(db, True)
    add(trail, 5)
    await trail.flush()
    refuse_inserts(db, False)
    with caplog.at_level(logging.ERROR, logger="kubegate.gateway.audit"):
        await trail.flush()
    assert [int(e.detail["index"]) for e in rows(db)] == [2, 3, 4]
    assert "dropped 2 proxy audit events while the database was down" in caplog.messages


async def test_the_request_facts_get_their_own_columns_and_the_write_is_stamped(
    db: Engine, store: SqlGatewayStore
) -> None:
    trail = AuditTrail(store)
    trail.add(
        org_id=None,
        user_id=None,
        email="ada@example.com",
        cluster_id=None,
        status=101,
        detail={
            "verb": "create",
            "resource": "pods",
            "subresource": "exec",
            "namespace": "dev",
            "command": ["sh", "-c", "id"],
            "container": "app",
            "index": 0,
        },
        source="10.1.2.3",
        user_agent="kubectl/v1.37.0 " + "x" * 400,
    )
    await trail.flush()
    [event] = rows(db)
    assert (event.verb, event.resource, event.subresource, event.namespace) == (
        "create",
        "pods",
        "exec",
        "dev",
    )
    assert event.status_code == 101 and event.source == "10.1.2.3"
    assert event.user_agent is not None and len(event.user_agent) == 256
    assert event.user_agent.startswith("kubectl/v1.37.0 ")
    assert event.detail["command"] == ["sh", "-c", "id"] and event.detail["container"] == "app"
    assert event.recorded_at >= event.created_at


async def test_a_batch_is_recorded_in_the_order_its_events_happened(
    db: Engine, store: SqlGatewayStore
) -> None:
    trail = AuditTrail(store)
    add(trail, 50)
    await trail.flush()
    written = sorted(rows(db), key=lambda e: (e.recorded_at, e.id))
    assert [int(e.detail["index"]) for e in written] == list(range(50))
