"""Managed ServiceAccounts and their tokens, done with the agent's own identity.

The Reconciler and the TokenMinter act with a token of the install manifest's ServiceAccount
(``tests/fixtures/agent_identity.py``) against the real apiserver: what they do here is what
the agent's ClusterRole allows. Accounts are made, bound, drift-repaired and removed like
grants; someone else's account under a wanted name is reported and never bound; bound
tokens are minted only for accounts in the desired set, and the break-glass account is a
cluster admin made on demand.
"""

from __future__ import annotations

import datetime as dt
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lightkube import AsyncClient, Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, RoleBinding

from kubegate.agent.desired import account_binding_name
from kubegate.agent.manifest import AGENT_NAME
from kubegate.agent.tokens import BREAK_GLASS_NAME, TokenMinter
from kubegate.domain.access import Role, ServiceAccountSpec
from kubegate.tunnel.control import ServiceAccountResult, TokenAnswer, TokenRequest
from tests.fixtures.agent_identity import AgentIdentity
from tests.fixtures.reconciler import RunningAgent, StartAgent, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

MANAGED = "app.kubernetes.io/managed-by"


def account(name: str, namespace: str, role: str, cluster_wide: bool = False) -> ServiceAccountSpec:
    return ServiceAccountSpec(uuid.uuid4().hex, namespace, name, Role(role), cluster_wide)


@pytest.fixture
def cluster_bindings(kube_admin: Client) -> Iterator[list[str]]:
    """Names of ClusterRoleBindings the test may leave behind (they outlive its namespace)."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            kube_admin.delete(ClusterRoleBinding, name)
        except ApiError as exc:
            if exc.status.code != 404:
                raise


@pytest.fixture
async def agent(start_agent: StartAgent, agent_identity: AgentIdentity) -> RunningAgent:
    return start_agent(agent_identity.kubeconfig())


@pytest.fixture
def minter(
    agent_client: AsyncClient, agent: RunningAgent, agent_identity: AgentIdentity
) -> TokenMinter:
    return TokenMinter(agent_client, agent.reconciler.manages, namespace=agent_identity.namespace)


async def results_of(agent: RunningAgent, revision: int) -> list[ServiceAccountResult]:
    """The first account report of ``revision``."""
    _, results = await agent.account_report(lambda r: r[0] == revision, f"revision {revision}")
    return results


def applied(*accounts: ServiceAccountSpec) -> list[ServiceAccountResult]:
    return [ServiceAccountResult(a.service_account_id, "applied") for a in accounts]


def token_http(identity: AgentIdentity, token: str) -> httpx.AsyncClient:
    """The apiserver as a client holding ``token`` sees it."""
    return httpx.AsyncClient(
        base_url=identity.server,
        verify=ssl.create_default_context(cadata=identity.ca_pem.decode()),
        headers={"Authorization": f"Bearer {token}"},
    )


async def whoami(http: httpx.AsyncClient) -> str:
    review = await http.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert review.status_code == 201, review.text
    username: str = review.json()["status"]["userInfo"]["username"]
    return username


async def test_accounts_are_made_and_bound_in_both_scopes_and_removed_with_the_desired_set(
    agent: RunningAgent,
    namespace: str,
    kube_admin: Client,
    cluster_bindings: list[str],
) -> None:
    deployer = account("deployer", namespace, "edit")
    reader = account("reader", namespace, "view", cluster_wide=True)
    cluster_bindings.append(account_binding_name(reader.service_account_id))
    agent.set_desired(1, [], [deployer, reader])
    assert await results_of(agent, 1) == applied(deployer, reader)

    made = kube_admin.get(ServiceAccount, "deployer", namespace=namespace)
    assert made.metadata is not None and made.metadata.labels is not None
    assert made.metadata.labels[MANAGED] == "kubegate"
    binding = kube_admin.get(
        RoleBinding, account_binding_name(deployer.service_account_id), namespace=namespace
    )
    assert binding.roleRef.name == "edit"
    assert binding.subjects is not None
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("ServiceAccount", "deployer", namespace)
    ]
    wide = kube_admin.get(ClusterRoleBinding, account_binding_name(reader.service_account_id))
    assert wide.roleRef.name == "view"

    agent.set_desired(2, [], [])
    assert await results_of(agent, 2) == []
    for name in ("deployer", "reader"):
        with pytest.raises(ApiError) as gone:
            kube_admin.get(ServiceAccount, name, namespace=namespace)
        assert gone.value.status.code == 404
    with pytest.raises(ApiError) as gone:
        kube_admin.get(ClusterRoleBinding, account_binding_name(reader.service_account_id))
    assert gone.value.status.code == 404


async def test_a_deleted_account_and_an_edited_binding_are_put_back(
    agent: RunningAgent, namespace: str, kube_admin: Client
) -> None:
    deployer = account("deployer", namespace, "edit")
    agent.set_desired(1, [], [deployer])
    assert await results_of(agent, 1) == applied(deployer)
    first = kube_admin.get(ServiceAccount, "deployer", namespace=namespace)
    assert first.metadata is not None

    kube_admin.delete(ServiceAccount, "deployer", namespace=namespace)

    async def recreated() -> Any:
        try:
            found = kube_admin.get(ServiceAccount, "deployer", namespace=namespace)
        except ApiError:
            return None
        assert found.metadata is not None and first.metadata is not None
        return found if found.metadata.uid != first.metadata.uid else None

    await eventually(recreated, "the agent to make the deleted ServiceAccount again")

    name = account_binding_name(deployer.service_account_id)
    binding = kube_admin.get(RoleBinding, name, namespace=namespace).to_dict()
    binding["subjects"] = [{"kind": "ServiceAccount", "name": "intruder", "namespace": namespace}]
    kube_admin.replace(RoleBinding.from_dict(binding))

    async def repaired() -> bool:
        found = kube_admin.get(RoleBinding, name, namespace=namespace)
        return found.subjects is not None and found.subjects[0].name == "deployer"

    await eventually(repaired, "the agent to put the binding's subject back")


async def test_someone_elses_account_under_the_name_fails_is_never_bound_or_minted_for(
    agent: RunningAgent, minter: TokenMinter, namespace: str, kube_admin: Client
) -> None:
    kube_admin.create(
        ServiceAccount.from_dict({"metadata": {"name": "builder", "namespace": namespace}})
    )
    builder = account("builder", namespace, "admin")
    agent.set_desired(1, [], [builder])
    [result] = await results_of(agent, 1)
    assert result.status == "failed"
    assert "is not managed by kubegate" in result.detail and "builder" in result.detail
    with pytest.raises(ApiError) as unbound:
        kube_admin.get(
            RoleBinding, account_binding_name(builder.service_account_id), namespace=namespace
        )
    assert unbound.value.status.code == 404
    answer = await minter.answer(TokenRequest("r-1", namespace, "builder", 600))
    assert not answer.token and "lacks kubegate's label" in answer.error
    # The account is still theirs, untouched.
    theirs = kube_admin.get(ServiceAccount, "builder", namespace=namespace)
    assert theirs.metadata is not None and MANAGED not in (theirs.metadata.labels or {})


async def test_a_managed_accounts_bound_token_acts_as_it_within_its_role(
    agent: RunningAgent, minter: TokenMinter, agent_identity: AgentIdentity, namespace: str
) -> None:
    deployer = account("deployer", namespace, "edit")
    agent.set_desired(1, [], [deployer])
    assert await results_of(agent, 1) == applied(deployer)

    before = dt.datetime.now(dt.UTC)
    answer = await minter.answer(TokenRequest("r-1", namespace, "deployer", 600))
    assert answer.error == "" and answer.token
    expires = dt.datetime.fromisoformat(answer.expires_at)
    assert dt.timedelta(seconds=590) <= expires - before <= dt.timedelta(seconds=620)
    async with token_http(agent_identity, answer.token) as http:
        assert await whoami(http) == f"system:serviceaccount:{namespace}:deployer"
        listed = await http.get(f"/api/v1/namespaces/{namespace}/configmaps")
        assert listed.status_code == 200, listed.text
        assert (await http.get("/api/v1/namespaces/kube-system/configmaps")).status_code == 403


@pytest.mark.parametrize(
    ("where", "name"),
    [("own", AGENT_NAME), ("kube-system", "default"), ("own", "not-there")],
)
async def test_no_token_for_an_account_outside_the_desired_set(
    minter: TokenMinter, agent: RunningAgent, agent_identity: AgentIdentity, where: str, name: str
) -> None:
    agent.set_desired(1, [], [])
    await results_of(agent, 1)
    namespace = agent_identity.namespace if where == "own" else where
    answer: TokenAnswer = await minter.answer(TokenRequest("r-1", namespace, name, 600))
    assert not answer.token
    assert answer.error == f"service account {namespace}/{name} is not managed by kubegate"


async def test_the_break_glass_token_is_a_cluster_admins_and_the_reconciler_leaves_it(
    agent: RunningAgent,
    minter: TokenMinter,
    agent_identity: AgentIdentity,
    kube_admin: Client,
    cluster_bindings: list[str],
) -> None:
    cluster_bindings.append(BREAK_GLASS_NAME)
    agent.set_desired(1, [], [])
    await results_of(agent, 1)
    ask = TokenRequest("r-1", agent_identity.namespace, BREAK_GLASS_NAME, 600, break_glass=True)
    answer = await minter.answer(ask)
    assert answer.error == "" and answer.token
    async with token_http(agent_identity, answer.token) as http:
        expected = f"system:serviceaccount:{agent_identity.namespace}:{BREAK_GLASS_NAME}"
        assert await whoami(http) == expected
        assert (await http.get("/api/v1/namespaces")).status_code == 200
        assert (await http.get("/api/v1/namespaces/kube-system/secrets")).status_code == 200

    binding = kube_admin.get(ClusterRoleBinding, BREAK_GLASS_NAME)
    assert binding.roleRef.name == "cluster-admin"
    assert binding.metadata is not None and binding.metadata.labels is not None
    assert binding.metadata.labels["kubegate.io/break-glass"] == "true"
    assert MANAGED not in binding.metadata.labels  # so the reconciler never deletes it

    # Asked again (made already): another token; and a pass later it is all still there.
    assert (await minter.answer(ask)).token
    agent.set_desired(2, [], [])
    await results_of(agent, 2)
    kube_admin.get(ClusterRoleBinding, BREAK_GLASS_NAME)
    kube_admin.get(ServiceAccount, BREAK_GLASS_NAME, namespace=agent_identity.namespace)

    elsewhere = await minter.answer(
        TokenRequest("r-2", "kube-system", BREAK_GLASS_NAME, 600, break_glass=True)
    )
    assert not elsewhere.token and "only for ServiceAccount" in elsewhere.error
