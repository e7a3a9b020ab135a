"""A managed ServiceAccount's kube token in the proxy's Authority: the account acts.

The store is a plain dict here (the database one is tested through the API and e2e): what is
checked is that the account's presence on the cluster decides, not the issuing admin's grant
or membership, and that what revokes it closes its open streams.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubegate.auth.hashing import secret_hash
from kubegate.errors import Unauthenticated
from kubegate.gateway.authority import Authority
from kubegate.gateway.store import ClusterView, Identity

pytestmark = pytest.mark.anyio

CLUSTER = "c" * 32
TOKEN = "kg_kube_sa"
ACCOUNT = "s" * 32
ADMIN = "a" * 32

ACCOUNT_IDENTITY = Identity(
    token_id="t1",
    user_id=ADMIN,  # the admin who issued it, who holds no grant
    email="system:serviceaccount:ci:ci-deployer",
    org_id="o1",
    cluster_id=CLUSTER,
    epoch=0,
    expires_at=4_000_000_000.0,
    access_key_id=None,
    scope=None,
    service_account_id=ACCOUNT,
    service_account=("ci", "ci-deployer"),
)


class DictStore:
    def __init__(self) -> None:
        self.view = ClusterView(CLUSTER, "prod", "standard", 0, frozenset(), frozenset({ACCOUNT}))

    async def load_token(self, token_hash: str) -> Identity | None:
        return ACCOUNT_IDENTITY if token_hash == secret_hash(TOKEN) else None

    async def load_cluster(self, cluster_id: str) -> ClusterView | None:
        return self.view


async def test_the_account_needs_no_grant_of_the_admin_who_issued_its_token() -> None:
    authority = Authority(DictStore())
    identity, _ = await authority.authorize(TOKEN, CLUSTER)
    assert identity.service_account == ("ci", "ci-deployer")
    assert identity.key == ("serviceaccount", ACCOUNT)  # limits count the account


async def test_a_deleted_account_is_refused_and_its_streams_close() -> None:
    store = DictStore()
    authority = Authority(store)
    identity, _ = await authority.authorize(TOKEN, CLUSTER)
    closed: list[str] = []
    with authority.registered(identity, "watch", closed.append):
        store.view = replace(store.view, service_accounts=frozenset())
        authority.cluster_changed(CLUSTER)
        await authority.settled()
    assert closed == ["the service account was deleted"]
    with pytest.raises(Unauthenticated, match="service account was deleted"):
        await authority.authorize(TOKEN, CLUSTER)


async def test_revoke_all_ends_the_accounts_tokens_too() -> None:
    store = DictStore()
    authority = Authority(store)
    await authority.authorize(TOKEN, CLUSTER)
    store.view = replace(store.view, epoch=1)
    authority.cluster_changed(CLUSTER)
    await authority.settled()
    with pytest.raises(Unauthenticated, match="revoke-all"):
        await authority.authorize(TOKEN, CLUSTER)


async def test_the_issuing_admin_leaving_or_signing_out_does_not_end_it() -> None:
    authority = Authority(DictStore())
    identity, _ = await authority.authorize(TOKEN, CLUSTER)
    closed: list[str] = []
    with authority.registered(identity, "exchange", closed.append):
        authority.user_changed(ADMIN)
        authority.person_signed_out(ADMIN)
    assert closed == []
    again, _ = await authority.authorize(TOKEN, CLUSTER)
    assert again is identity  # still cached: no reload needed
