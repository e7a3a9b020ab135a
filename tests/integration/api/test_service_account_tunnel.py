"""The server's half of service accounts over a real tunnel, with a test agent at the end.

The test agent (``tests/fixtures/tunnel_agent.py``) speaks the control protocol as the real
one does; what it answers is up to each test, so this checks what the server sends and what
it does with the answers: desired sets with the accounts (schema 2 only), their reported
status, direct and admin kubeconfigs from the agent's bound tokens at the address the agent
reported, and the refusals when the agent cannot help. The real agent against a real
apiserver is tests/e2e/test_service_account_kubectl.py.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
import yaml

from kubegate.tunnel.control import (
    Results,
    ServiceAccountResult,
    TokenAnswer,
    TokenRequest,
)
from tests.fixtures.access import audit_events, grant, me
from tests.fixtures.api import Api
from tests.fixtures.tunnel_agent import Agent, agent_connected, register, wait_online

pytestmark = pytest.mark.anyio

CA = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"
INFO = {
    "cluster_name": "prod",
    "api_server_url": "https://10.0.0.1:6443",
    "api_server_ca": CA,
    "namespace": "kubegate-system",
}


def issue(request: TokenRequest) -> TokenAnswer:
    return TokenAnswer(
        request.request_id, token=f"bound-{request.name}", expires_at="2030-01-01T00:00:00Z"
    )


async def call(api: Api, method: str, path: str, **kw: Any) -> Any:
    return await asyncio.to_thread(
        api.client.request, method, path, headers=api.auth(api.admin_token), **kw
    )


async def create_applied(api: Api, agent: Agent, cluster_id: str) -> dict[str, Any]:
    """A service account the test agent reports applied."""
    created = await call(
        api,
        "POST",
        f"/api/v1/clusters/{cluster_id}/service-accounts",
        json={"name": "ci-deployer", "namespace": "ci", "role": "edit"},
    )
    assert created.status_code == 201, created.text
    account: dict[str, Any] = created.json()
    desired = await agent.next_desired()
    while not desired.service_accounts:
        desired = await agent.next_desired()
    [spec] = desired.service_accounts
    assert (spec.service_account_id, spec.namespace, spec.name) == (
        account["id"],
        "ci",
        "ci-deployer",
    )
    assert (spec.role.value, spec.cluster_wide) == ("edit", False)
    await agent.report(
        Results(desired.revision, (), (ServiceAccountResult(account["id"], "applied"),))
    )

    async def applied() -> dict[str, Any]:
        while True:
            listed = await call(api, "GET", f"/api/v1/clusters/{cluster_id}/service-accounts")
            [row] = listed.json()["items"]
            if row["status"] == "applied":
                return dict(row)
            await asyncio.sleep(0.05)

    async with asyncio.timeout(20):
        return await applied()


async def test_an_applied_account_gets_a_direct_kubeconfig_from_the_agents_bound_token(
    api: Api,
) -> None:
    cluster_id, credential = register(api, "prod")
    async with agent_connected(api.url, credential, info=INFO, tokens=issue) as agent:
        await wait_online(api, cluster_id, True)
        account = await create_applied(api, agent, cluster_id)
        response = await call(
            api,
            "POST",
            f"/api/v1/clusters/{cluster_id}/service-accounts/{account['id']}/kubeconfig",
            json={"direct": True, "duration_seconds": 1800},
        )
        assert response.status_code == 200, response.text
        [request] = agent.token_requests
    assert (request.namespace, request.name, request.expiration_seconds) == (
        "ci",
        "ci-deployer",
        1800,
    )
    assert not request.break_glass
    config = yaml.safe_load(response.text)
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://10.0.0.1:6443"  # what the agent reported
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == CA
    assert config["users"][0]["user"]["token"] == "bound-ci-deployer"
    assert response.headers["kubegate-token-expires-at"] == "2030-01-01T00:00:00Z"


async def test_the_admin_kubeconfig_asks_for_the_break_glass_account_and_is_audited(
    api: Api, db: Any
) -> None:
    cluster_id, credential = register(api, "prod")
    grant(api, cluster_id, me(api), "cluster-admin")
    async with agent_connected(api.url, credential, info=INFO, tokens=issue) as agent:
        await wait_online(api, cluster_id, True)
        response = await call(api, "POST", f"/api/v1/clusters/{cluster_id}/admin-kubeconfig")
        assert response.status_code == 200, response.text
        [request] = agent.token_requests
    assert request.break_glass
    assert (request.namespace, request.name) == ("kubegate-system", "kubegate-break-glass")
    assert request.expiration_seconds == 3600  # 1 h by default
    config = yaml.safe_load(response.text)
    assert config["contexts"][0]["name"] == "kubegate-prod-admin"
    assert config["users"][0]["user"]["token"] == "bound-kubegate-break-glass"
    [event] = audit_events(db, "cluster.admin_kubeconfig")
    assert event.result == "success"
    assert event.detail["service_account"] == "kubegate-system/kubegate-break-glass"
    assert "bound-" not in str(event.detail)  # never the token


async def test_the_agents_refusal_is_a_502_with_its_reason(api: Api) -> None:
    cluster_id, credential = register(api, "prod")
    grant(api, cluster_id, me(api), "cluster-admin")

    def refuse(request: TokenRequest) -> TokenAnswer:
        return TokenAnswer(request.request_id, error='serviceaccounts "x" is forbidden')

    async with agent_connected(api.url, credential, info=INFO, tokens=refuse):
        await wait_online(api, cluster_id, True)
        response = await call(api, "POST", f"/api/v1/clusters/{cluster_id}/admin-kubeconfig")
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert message == 'the agent could not mint the token: serviceaccounts "x" is forbidden'


async def test_an_agent_of_schema_1_gets_no_accounts_and_no_token_requests(api: Api) -> None:
    cluster_id, credential = register(api, "prod")
    grant(api, cluster_id, me(api), "cluster-admin")
    async with agent_connected(
        api.url, credential, info=INFO, tokens=issue, schema_versions=(1,)
    ) as agent:
        await wait_online(api, cluster_id, True)
        created = await call(
            api,
            "POST",
            f"/api/v1/clusters/{cluster_id}/service-accounts",
            json={"name": "ci", "namespace": "ci", "role": "view"},
        )
        assert created.status_code == 201
        # Its desired sets carry grants only (what a schema 1 agent understands) ...
        for _ in range(2):
            assert (await agent.next_desired()).service_accounts == ()
        # ... and a token request is refused before anything is sent.
        response = await call(api, "POST", f"/api/v1/clusters/{cluster_id}/admin-kubeconfig")
        assert response.status_code == 409
        assert "too old to mint ServiceAccount tokens: upgrade it" in response.text
        assert agent.token_requests == []
