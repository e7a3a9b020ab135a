"""The agent's ClusterRole from the install manifest is enough for its job and no more.

The tests act with a token of the manifest's ServiceAccount (``tests/fixtures/agent_identity.py``):
the Reconciler applies grants of every role, requests impersonate a kubegate user, and each
way to escalate from there is refused by the apiserver. What it does for managed service
accounts with that identity is in ``test_agent_service_accounts.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lightkube import AsyncClient, Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    RoleBinding,
)

from kubegate.agent.desired import binding_name
from kubegate.agent.manifest import AGENT_NAME, IMPERSONATED_GROUP
from kubegate.tunnel.control import GrantResult
from tests.fixtures.agent_identity import AgentIdentity
from tests.fixtures.reconciler import StartAgent, eventually, new_grant

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

ROLES = ("view", "edit", "admin", "cluster-admin")
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def star_role(kube_admin: Client) -> Iterator[str]:
    """A ClusterRole that allows everything: what an attacker would like to bind."""
    name = f"t-star-{uuid.uuid4().hex[:8]}"
    kube_admin.create(
        ClusterRole.from_dict(
            {
                "metadata": {"name": name},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            }
        )
    )
    yield name
    kube_admin.delete(ClusterRole, name)


def binding_to(role: str, user: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"t-attack-{uuid.uuid4().hex[:8]}"}
    if namespace:
        meta["namespace"] = namespace
    return {
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC, "kind": "User", "name": user}],
    }


def as_kubegate_user(email: str, *groups: str) -> list[tuple[str, str]]:
    """Impersonation headers: one ``Impersonate-Group`` line per group (commas don't split)."""
    return [("Impersonate-User", f"kubegate:{email}"), *(("Impersonate-Group", g) for g in groups)]


async def test_the_agent_identity_applies_grants_of_every_role_in_both_scopes(
    start_agent: StartAgent, agent_identity: AgentIdentity, kube_admin: Client
) -> None:
    grants = [
        new_grant(role, scope) for role in ROLES for scope in (agent_identity.namespace, None)
    ]
    agent = start_agent(agent_identity.kubeconfig())
    agent.set_desired(1, grants)
    _, results = await agent.applied(1)
    assert results == [GrantResult(g.grant_id, "applied") for g in grants]

    for grant in grants:
        name = binding_name(grant.grant_id)
        if grant.namespace is None:
            found: Any = kube_admin.get(ClusterRoleBinding, name)
        else:
            found = kube_admin.get(RoleBinding, name, namespace=grant.namespace)
        assert found.roleRef.name == grant.role

    agent.set_desired(2, [])  # and it may take them all away again
    assert await agent.report(lambda r: r[0] == 2, "the report of revision 2") == (2, [])


async def test_the_agent_identity_impersonates_a_granted_user_in_the_kubegate_group(
    start_agent: StartAgent, agent_identity: AgentIdentity
) -> None:
    grant = new_grant("view", agent_identity.namespace)
    headers = as_kubegate_user(grant.email, IMPERSONATED_GROUP)
    pods = f"/api/v1/namespaces/{agent_identity.namespace}/pods"
    async with agent_identity.http() as http:
        review = await http.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            headers=headers,
        )
        assert review.status_code == 201, review.text
        user = review.json()["status"]["userInfo"]
        assert user["username"] == f"kubegate:{grant.email}"
        assert sorted(user["groups"]) == [IMPERSONATED_GROUP, "system:authenticated"]

        denied = await http.get(pods, headers=headers)
        assert denied.status_code == 403
        assert (
            f'User "kubegate:{grant.email}" cannot list resource "pods"' in denied.json()["message"]
        )

        agent = start_agent(agent_identity.kubeconfig())
        agent.set_desired(1, [grant])
        await agent.applied(1)

        async def allowed() -> httpx.Response | None:
            response = await http.get(pods, headers=headers)
            return response if response.status_code == 200 else None

        listed = await eventually(allowed, "the impersonated user to list pods")
        assert listed.json()["kind"] == "PodList"


@pytest.mark.parametrize(
    "role",
    [
        "star",
        "system:controller:clusterrole-aggregation-controller",
        "system:kube-controller-manager",
    ],
)
async def test_the_agent_identity_cannot_bind_any_other_cluster_role(
    agent_client: AsyncClient, star_role: str, role: str
) -> None:
    target = star_role if role == "star" else role
    with pytest.raises(ApiError) as refused:
        await agent_client.create(
            ClusterRoleBinding.from_dict(binding_to(target, "kubegate:mallory@example.com"))
        )
    assert refused.value.status.code == 403
    assert "attempting to grant RBAC permissions not currently held" in str(refused.value)


async def test_the_agent_identity_cannot_bind_another_role_in_a_namespace(
    agent_client: AsyncClient, agent_identity: AgentIdentity, star_role: str
) -> None:
    binding = binding_to(star_role, "kubegate:mallory@example.com", agent_identity.namespace)
    with pytest.raises(ApiError) as refused:
        await agent_client.create(RoleBinding.from_dict(binding))
    assert refused.value.status.code == 403


async def test_the_agent_identity_cannot_impersonate_system_masters(
    agent_identity: AgentIdentity,
) -> None:
    async with agent_identity.http() as http:
        for groups in (("system:masters",), (IMPERSONATED_GROUP, "system:masters")):
            response = await http.get(
                "/api/v1/namespaces", headers=as_kubegate_user("mallory@example.com", *groups)
            )
            assert response.status_code == 403, response.text
            # 1.36 tries constrained impersonation first and words the refusal after it
            # ("cannot impersonate-on:user-info:list"); older ones name "groups".
            message = response.json()["message"]
            assert f'User "system:serviceaccount:{agent_identity.namespace}:{AGENT_NAME}"' in (
                message
            )
            assert "cannot impersonate" in message, message


async def test_the_agent_identity_cannot_read_secrets(
    agent_client: AsyncClient, agent_identity: AgentIdentity, kube_admin: Client
) -> None:
    kube_admin.create(
        Secret.from_dict(
            {
                "metadata": {"name": "payload", "namespace": agent_identity.namespace},
                "stringData": {"k": "v"},
            }
        )
    )
    with pytest.raises(ApiError) as refused:
        await agent_client.get(Secret, "payload", namespace=agent_identity.namespace)
    assert refused.value.status.code == 403
    with pytest.raises(ApiError) as refused:
        _ = [s async for s in agent_client.list(Secret, namespace=agent_identity.namespace)]
    assert refused.value.status.code == 403


async def test_the_agent_identity_cannot_list_namespaces(agent_client: AsyncClient) -> None:
    with pytest.raises(ApiError) as refused:
        _ = [ns async for ns in agent_client.list(Namespace)]
    assert refused.value.status.code == 403
