"""Kube token mints in batches (``server/minter.py``), on SQLite and PostgreSQL: every mint
answered is committed, refusals are audited beside them, and a row the database refuses fails
its own mint and no other.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kubegate.domain.access import Actor, MemberRole
from kubegate.errors import PermissionDenied
from kubegate.server.minter import MintedToken, Minter, MintLimiter, MintRequest
from kubegate.server.principal import Principal
from kubegate.storage.engine import RoundTrips, create_engine
from kubegate.storage.models import AuditEvent, KubeToken
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    add_cluster,
    add_user,
    grant,
    org_id_of,
    sha256,
    token_path,
)
from tests.fixtures.api import Api


def stored_token_hashes(db: Engine, cluster_id: str) -> set[str]:
    with Session(db) as session:
        query = select(KubeToken.token_hash).where(KubeToken.cluster_id == cluster_id)
        return set(session.scalars(query))


def mint_events(db: Engine, result: str) -> int:
    with Session(db) as session:
        query = (
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "kube_token.mint", AuditEvent.result == result)
        )
        return session.scalar(query) or 0


def test_concurrent_mints_are_all_answered_and_all_committed(api: Api, db: Engine) -> None:
    cluster_id = add_cluster(api)
    org_id = org_id_of(api)
    granted = add_user(db, org_id, MEMBER_EMAIL)
    grant(api, cluster_id, granted)
    add_user(db, org_id, "nogrant@example.com")
    tokens = {
        "granted": api.login(MEMBER_EMAIL, MEMBER_PASSWORD),
        "refused": api.login("nogrant@example.com", MEMBER_PASSWORD),
    }
    callers = ["granted"] * 40 + ["refused"] * 8

    def mint(who: str) -> tuple[str, int, str]:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            response = client.post(token_path(cluster_id), headers=api.auth(tokens[who]))
        return who, response.status_code, response.json().get("token", "")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(mint, callers))

    assert sorted({(who, status) for who, status, _ in results}) == [
        ("granted", 200),
        ("refused", 403),
    ]
    answered = {sha256(token) for who, _, token in results if who == "granted"}
    assert len(answered) == 40
    assert stored_token_hashes(db, cluster_id) == answered
    assert (mint_events(db, "success"), mint_events(db, "failure")) == (40, 8)


@pytest.fixture
def refusing_trigger(db: Engine) -> str:
    """Fault injection in the database: a trigger that refuses (as a constraint would) any
    kube token whose epoch is 99. Answers the marker epoch."""
    with db.begin() as conn:
        if db.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_epoch_99 BEFORE INSERT ON kube_tokens "
                    "WHEN NEW.token_epoch = 99 BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_epoch_99() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.token_epoch = 99 THEN RAISE EXCEPTION 'refused' "
                    "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ "
                    "LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_epoch_99 BEFORE INSERT ON kube_tokens "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_epoch_99()"
                )
            )
    return "99"


@pytest.mark.anyio
async def test_a_row_the_database_refuses_fails_its_own_mint_and_no_other_in_the_batch(
    api: Api,
    db: Engine,
    database_url: str,
    refusing_trigger: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    org_id = org_id_of(api)
    user_id = add_user(db, org_id, MEMBER_EMAIL)
    fine, poisoned, ungranted = (add_cluster(api, name) for name in ("fine", "bad", "none"))
    grant(api, fine, user_id)
    grant(api, poisoned, user_id)
    with db.begin() as conn:
        conn.execute(
            text("UPDATE clusters SET token_epoch = :epoch WHERE id = :id"),
            {"epoch": int(refusing_trigger), "id": poisoned},
        )
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    caller = Principal(Actor(user_id, org_id, MemberRole.MEMBER), MEMBER_EMAIL, "t", "api", expiry)
    engine = create_engine(database_url)
    trips = RoundTrips(engine)
    minter = Minter(trips, api.settings, MintLimiter(1000))
    minter.start()
    try:
        # Submitted together, before the minter's task runs: one batch.
        clusters = [fine, poisoned, fine, ungranted, fine]
        with caplog.at_level(logging.INFO, logger="kubegate.server.minter"):
            results = await asyncio.gather(
                *(minter.mint(MintRequest(caller, c, None, "test")) for c in clusters),
                return_exceptions=True,
            )
    finally:
        await minter.close()
        trips.close()
        await engine.dispose()

    assert "a batch of 5 mints was refused; writing them one by one" in caplog.messages
    assert isinstance(results[1], IntegrityError)
    assert isinstance(results[3], PermissionDenied)
    minted = [r for r in results if isinstance(r, MintedToken)]
    assert [r.cluster_id for r in minted] == [fine, fine, fine]
    assert stored_token_hashes(db, fine) == {sha256(r.token) for r in minted}
    assert stored_token_hashes(db, poisoned) == set()
    assert (mint_events(db, "success"), mint_events(db, "failure")) == (3, 1)
