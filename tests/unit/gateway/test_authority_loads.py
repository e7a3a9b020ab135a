"""Authority's shared cluster load when the store fails or a caller goes away.

The store here is fault injection in place of the database (the real one is tested in
``tests/integration/gateway/test_authority.py``): it answers from a dict, and can be told to
hold a load until released, or to fail it.
"""

from __future__ import annotations

import asyncio

import pytest

from kubegate.auth.hashing import secret_hash
from kubegate.errors import PermissionDenied, Unauthenticated, Unavailable
from kubegate.gateway.authority import Authority
from kubegate.gateway.store import ClusterView, Identity

pytestmark = pytest.mark.anyio

CLUSTER = "c" * 32
TOKEN = "kg_kube_test"


def identity(user_id: str = "u1") -> Identity:
    return Identity(
        token_id="t1",
        user_id=user_id,
        email=f"{user_id}@example.com",
        org_id="o1",
        cluster_id=CLUSTER,
        epoch=0,
        expires_at=4_000_000_000.0,
        access_key_id=None,
        scope=None,
    )


def view(granted: frozenset[str] = frozenset({"u1"})) -> ClusterView:
    return ClusterView(cluster_id=CLUSTER, name="prod", kind="standard", epoch=0, granted=granted)


class HeldStore:
    """An AccessStore whose cluster loads read the state when they begin, then wait for
    :meth:`release` to answer it (or fail with ``error``)."""

    def __init__(self) -> None:
        self.cluster: ClusterView | None = view()
        self.error: Exception | None = None
        self.loads = 0
        self.started = asyncio.Event()
        self._gate = asyncio.Event()

    def release(self) -> None:
        self._gate.set()

    async def load_token(self, token_hash: str) -> Identity | None:
        return identity() if token_hash == secret_hash(TOKEN) else None

    async def load_cluster(self, cluster_id: str) -> ClusterView | None:
        self.loads += 1
        read = self.cluster  # what the database held when the load began
        self.started.set()
        await self._gate.wait()
        if self.error is not None:
            raise self.error
        return read


@pytest.fixture
async def store() -> HeldStore:
    return HeldStore()


async def test_an_unexpected_store_failure_reaches_every_waiting_request(store: HeldStore) -> None:
    authority = Authority(store)
    store.error = RuntimeError("the driver broke")
    first = asyncio.create_task(authority.authorize(TOKEN, CLUSTER))
    second = asyncio.create_task(authority.authorize(TOKEN, CLUSTER))
    await store.started.wait()
    store.release()
    async with asyncio.timeout(5):  # before the fix, ``second`` waited forever
        results = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert store.loads == 1
    await authority.close()


async def test_a_database_outage_reaches_every_waiting_request_as_unavailable(
    store: HeldStore,
) -> None:
    authority = Authority(store)
    store.error = Unavailable("database unavailable")
    waiting = [asyncio.create_task(authority.authorize(TOKEN, CLUSTER)) for _ in range(3)]
    await store.started.wait()
    store.release()
    async with asyncio.timeout(5):
        results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    await authority.close()


async def test_the_first_request_going_away_does_not_cancel_the_others_load(
    store: HeldStore,
) -> None:
    authority = Authority(store)
    first = asyncio.create_task(authority.authorize(TOKEN, CLUSTER))
    await store.started.wait()
    second = asyncio.create_task(authority.authorize(TOKEN, CLUSTER))
    await asyncio.sleep(0)  # one turn of the loop: ``second`` runs until it joins the load
    first.cancel()  # kubectl went away
    store.release()
    async with asyncio.timeout(5):
        who, seen = await second
    assert (who.user_id, seen.name) == ("u1", "prod")
    assert first.cancelled()
    assert store.loads == 1
    await authority.close()


async def test_a_grant_change_during_a_load_still_closes_the_users_open_streams(
    store: HeldStore,
) -> None:
    authority = Authority(store)
    closed: list[str] = []
    with authority.registered(identity(), "exchange", closed.append):
        request = asyncio.create_task(authority.authorize(TOKEN, CLUSTER))
        await store.started.wait()
        # While that load is held, the user's last grant goes: the re-check must read the
        # new state, not join the load that began before the change.
        store.cluster = view(granted=frozenset())
        authority.cluster_changed(CLUSTER)
        store.release()
        async with asyncio.timeout(5):
            await request  # answered from what it read (the change came after it began)
            await authority.settled()
    assert closed == ["the user's last grant on the cluster was deleted"]
    assert store.loads == 2
    with pytest.raises(PermissionDenied, match="You do not have access to this cluster"):
        await authority.authorize(TOKEN, CLUSTER)
    await authority.close()


async def test_an_unknown_token_is_refused_without_a_cluster_load(store: HeldStore) -> None:
    authority = Authority(store)
    with pytest.raises(Unauthenticated, match="unknown kube token"):
        await authority.authorize("kg_kube_other", CLUSTER)
    assert store.loads == 0
    await authority.close()
