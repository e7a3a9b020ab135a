"""The proxy's ``Authority`` on a real database: tokens from memory, revocation at once.

Access keys have no API yet, so tokens minted with one (and a scope) are written straight
into ``kube_tokens`` here; everything else is the app's own data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from kubegate.auth.hashing import new_secret, secret_hash
from kubegate.errors import PermissionDenied, Unauthenticated
from kubegate.gateway.authority import Authority
from kubegate.kube.requestinfo import parse_request_info
from kubegate.server.gateway_store import SqlGatewayStore
from kubegate.storage.engine import RoundTrips, create_engine, session_factory
from kubegate.storage.models import Grant, KubeToken
from tests.fixtures.access import add_cluster, grant, org_id_of
from tests.fixtures.api import Api

pytestmark = pytest.mark.anyio


@pytest.fixture
async def authority(database_url: str) -> AsyncIterator[Authority]:
    engine = create_engine(database_url)
    trips = RoundTrips(engine)
    authority = Authority(SqlGatewayStore(session_factory(engine), trips))
    try:
        yield authority
    finally:
        await authority.close()
        trips.close()
        await engine.dispose()


def insert_token(
    db: Engine,
    user_id: str,
    org_id: str,
    cluster_id: str,
    *,
    access_key_id: str | None = None,
    scope: dict[str, object] | None = None,
) -> str:
    token = new_secret("kg_kube")
    with Session(db) as session, session.begin():
        session.add(
            KubeToken(
                token_hash=secret_hash(token),
                user_id=user_id,
                org_id=org_id,
                cluster_id=cluster_id,
                token_epoch=0,
                access_key_id=access_key_id,
                scope=scope,
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15),
            )
        )
    return token


async def test_a_token_is_read_from_the_database_once_then_from_memory(
    api: Api, member: tuple[str, str], db: Engine, authority: Authority
) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, member[0])
    token = insert_token(db, member[0], org_id_of(api), cluster_id)
    identity, view = await authority.authorize(token, cluster_id)
    assert identity.user_id == member[0] and view.cluster_id == cluster_id
    # Gone from the database, still known in memory: no database round trip per request.
    with Session(db) as session, session.begin():
        session.execute(delete(KubeToken))
    again, _ = await authority.authorize(token, cluster_id)
    assert again == identity


async def test_deleting_an_access_key_kills_its_tokens_and_cancels_its_streams(
    api: Api, member: tuple[str, str], db: Engine, authority: Authority
) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, member[0])
    org_id = org_id_of(api)
    keyed = insert_token(db, member[0], org_id, cluster_id, access_key_id="k" * 32)
    personal = insert_token(db, member[0], org_id, cluster_id)
    key_identity, _ = await authority.authorize(keyed, cluster_id)
    personal_identity, _ = await authority.authorize(personal, cluster_id)
    cancelled: list[str] = []
    with (
        authority.registered(key_identity, "watch", lambda why: cancelled.append(f"key: {why}")),
        authority.registered(
            personal_identity, "watch", lambda why: cancelled.append(f"personal: {why}")
        ),
    ):
        authority.access_key_deleted("k" * 32)
        assert cancelled == ["key: the access key was deleted"]
    with pytest.raises(Unauthenticated):
        await authority.authorize(keyed, cluster_id)
    still, _ = await authority.authorize(personal, cluster_id)
    assert still.user_id == member[0]


async def test_a_scoped_token_carries_its_scope_and_another_cluster_is_refused(
    api: Api, member: tuple[str, str], db: Engine, authority: Authority
) -> None:
    cluster_a = add_cluster(api, "cluster-a")
    cluster_b = add_cluster(api, "cluster-b")
    grant(api, cluster_a, member[0])
    grant(api, cluster_b, member[0])
    scope = {
        "clusters": [cluster_b],
        "rules": [{"namespaces": ["team"], "resources": ["pods"], "verbs": ["get", "list"]}],
    }
    token = insert_token(
        db, member[0], org_id_of(api), cluster_a, access_key_id="k" * 32, scope=scope
    )
    # Minted for cluster A but the key only reaches B: scoping never extends.
    with pytest.raises(PermissionDenied):
        await authority.authorize(token, cluster_a)
    token_b = insert_token(
        db, member[0], org_id_of(api), cluster_b, access_key_id="k" * 32, scope=scope
    )
    identity, _ = await authority.authorize(token_b, cluster_b)
    assert identity.scope is not None
    allowed = parse_request_info("GET", "/api/v1/namespaces/team/pods", "", upgrade=False)
    exec_ = parse_request_info(
        "GET", "/api/v1/namespaces/team/pods/p/exec", "command=sh", upgrade=True
    )
    elsewhere = parse_request_info("GET", "/api/v1/namespaces/other/pods", "", upgrade=False)
    assert identity.scope.allows(allowed)
    assert not identity.scope.allows(exec_)
    assert not identity.scope.allows(elsewhere)


async def test_a_grant_change_reloads_the_cluster_and_cancels_who_lost_access(
    api: Api, member: tuple[str, str], db: Engine, authority: Authority
) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, member[0])
    token = insert_token(db, member[0], org_id_of(api), cluster_id)
    identity, _ = await authority.authorize(token, cluster_id)
    cancelled: list[str] = []
    with authority.registered(identity, "watch", cancelled.append):
        with Session(db) as session, session.begin():
            session.execute(delete(Grant).where(Grant.cluster_id == cluster_id))
        authority.cluster_changed(cluster_id)
        with pytest.raises(PermissionDenied):
            await authority.authorize(token, cluster_id)
        await authority.settled()
    assert cancelled == ["the user's last grant on the cluster was deleted"]
