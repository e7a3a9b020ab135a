"""The agent's reconciler against a real kube-apiserver: grants become RBAC, drift is repaired.

The Reconciler is driven directly (no tunnel) with a report callback that keeps what it gets.
Access is checked the way a cluster admin would: ``kubectl auth can-i --as``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import yaml
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, RoleBinding

from kubegate.agent.desired import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    binding_name,
    desired_binding,
)
from kubegate.domain.access import GrantSpec
from kubegate.tunnel.control import GrantResult
from testenv.controlplane import Credentials
from testenv.system import kubectl_binaries
from tests.fixtures.faults import FaultyRelay
from tests.fixtures.reconciler import (
    StartAgent,
    agents_running,
    client_for,
    eventually,
    new_grant,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

logger = logging.getLogger(__name__)

PREFIX = "kubegate:"
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture(autouse=True)
def agent_logs_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """Emit the agent's info logs, as in production, so logging them is exercised too."""
    caplog.set_level(logging.INFO, logger="kubegate")


@pytest.fixture
async def admin(kube_credentials: Credentials) -> AsyncIterator[AsyncClient]:
    """An async client as the cluster superuser: the hand that edits bindings in these tests."""
    client = client_for(yaml.safe_load(kube_credentials.kubeconfig.read_text()))
    yield client
    await client.close()


@pytest.fixture
async def start_agent(
    kube_credentials: Credentials, admin: AsyncClient
) -> AsyncIterator[StartAgent]:
    """Start Reconcilers for the test; see :func:`tests.fixtures.reconciler.agents_running`."""
    async with agents_running(kube_credentials, admin) as start:
        yield start


async def can_i(creds: Credentials, user: str, *request: str) -> bool:
    """Whether ``user`` may do ``request`` (``kubectl auth can-i`` words), asked as the admin."""
    kubectl = kubectl_binaries()["1.37"]
    result = await anyio.run_process(
        [
            str(kubectl),
            f"--kubeconfig={creds.kubeconfig}",
            "auth",
            "can-i",
            *request,
            f"--as={user}",
        ],
        check=False,
    )
    answer = result.stdout.decode().strip()
    assert answer in ("yes", "no"), result.stderr.decode()
    return answer == "yes"


async def until_can_i(creds: Credentials, user: str, *request: str, allowed: bool) -> None:
    """Wait for the RBAC authorizer (it reads an informer cache) to give ``allowed``."""

    async def settled() -> bool:
        return await can_i(creds, user, *request) is allowed

    await eventually(settled, f"can-i {' '.join(request)} to be {allowed} for {user}")


async def get_binding(client: AsyncClient, grant: GrantSpec) -> dict[str, Any] | None:
    """The binding of ``grant`` as it is in the cluster, or None."""
    name = binding_name(grant.grant_id)
    try:
        if grant.namespace is None:
            found: dict[str, Any] = (await client.get(ClusterRoleBinding, name)).to_dict()
        else:
            found = (await client.get(RoleBinding, name, namespace=grant.namespace)).to_dict()
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    return found


def unowned_rolebinding(name: str, namespace: str, user: str) -> RoleBinding:
    """A RoleBinding someone else made: no managed-by label."""
    binding: RoleBinding = RoleBinding.from_dict(
        {
            "metadata": {"name": name, "namespace": namespace, "labels": {"team": "ops"}},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": RBAC, "kind": "User", "name": user}],
        }
    )
    return binding


async def test_namespace_grant_becomes_a_rolebinding_that_opens_only_that_namespace(
    start_agent: StartAgent, admin: AsyncClient, kube_credentials: Credentials, namespace: str
) -> None:
    grant = new_grant("view", namespace)
    user = PREFIX + grant.email
    assert not await can_i(kube_credentials, user, "list", "pods", "-n", namespace)

    agent = start_agent()
    agent.set_desired(1, [grant])
    assert (await agent.applied(1))[1] == [GrantResult(grant.grant_id, "applied")]

    binding = await get_binding(admin, grant)
    assert binding is not None
    assert binding["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"}
    assert binding["subjects"] == [{"apiGroup": RBAC, "kind": "User", "name": user}]
    await until_can_i(kube_credentials, user, "list", "pods", "-n", namespace, allowed=True)
    assert not await can_i(kube_credentials, user, "list", "pods", "-n", "default")
    assert not await can_i(kube_credentials, user, "list", "pods", "--all-namespaces")
    assert not await can_i(kube_credentials, user, "create", "deployments", "-n", namespace)


async def test_cluster_grant_becomes_a_clusterrolebinding_that_opens_every_namespace(
    start_agent: StartAgent, admin: AsyncClient, kube_credentials: Credentials
) -> None:
    grant = new_grant("edit", None)
    user = PREFIX + grant.email
    request = ("create", "deployments", "--all-namespaces")
    assert not await can_i(kube_credentials, user, *request)

    agent = start_agent()
    agent.set_desired(1, [grant])
    await agent.applied(1)

    binding = await get_binding(admin, grant)
    assert binding is not None and binding["kind"] == "ClusterRoleBinding"
    assert binding["roleRef"]["name"] == "edit"
    await until_can_i(kube_credentials, user, *request, allowed=True)
    assert not await can_i(kube_credentials, user, "create", "clusterrolebindings")


async def test_a_grant_removed_from_the_desired_set_loses_its_binding_and_access(
    start_agent: StartAgent, admin: AsyncClient, kube_credentials: Credentials, namespace: str
) -> None:
    grant = new_grant("edit", namespace)
    user = PREFIX + grant.email
    agent = start_agent()
    agent.set_desired(1, [grant])
    await agent.applied(1)
    await until_can_i(kube_credentials, user, "create", "pods", "-n", namespace, allowed=True)

    agent.set_desired(2, [])
    assert await agent.report(lambda r: r[0] == 2, "the report of revision 2") == (2, [])
    assert await get_binding(admin, grant) is None
    await until_can_i(kube_credentials, user, "create", "pods", "-n", namespace, allowed=False)


async def test_a_binding_deleted_by_hand_comes_back(
    start_agent: StartAgent, admin: AsyncClient
) -> None:
    grant = new_grant("view", None)
    agent = start_agent()
    agent.set_desired(1, [grant])
    await agent.applied(1)
    before = await get_binding(admin, grant)
    assert before is not None

    await admin.delete(ClusterRoleBinding, binding_name(grant.grant_id))

    async def recreated() -> dict[str, Any] | None:
        found = await get_binding(admin, grant)
        return found if found and found["metadata"]["uid"] != before["metadata"]["uid"] else None

    again = await eventually(recreated, "the deleted binding to come back")
    assert again["roleRef"] == before["roleRef"] and again["subjects"] == before["subjects"]


async def test_a_binding_recreated_by_hand_with_another_role_gets_its_role_back(
    start_agent: StartAgent, admin: AsyncClient, namespace: str
) -> None:
    grant = new_grant("view", namespace)
    agent = start_agent()
    agent.set_desired(1, [grant])
    await agent.applied(1)

    # roleRef is immutable: "editing" it means replacing the object under the same name.
    tampered = desired_binding(grant)
    tampered["roleRef"]["name"] = "admin"
    await admin.delete(RoleBinding, binding_name(grant.grant_id), namespace=namespace)
    await admin.create(RoleBinding.from_dict(tampered))

    async def restored() -> bool:
        found = await get_binding(admin, grant)
        return found is not None and found["roleRef"]["name"] == "view"

    await eventually(restored, "the binding's role to be view again")


async def test_a_binding_whose_subjects_were_edited_by_hand_is_restored(
    start_agent: StartAgent, admin: AsyncClient, namespace: str
) -> None:
    grant = new_grant("edit", namespace)
    agent = start_agent()
    agent.set_desired(1, [grant])
    await agent.applied(1)

    intruder = {"apiGroup": RBAC, "kind": "User", "name": "mallory@example.com"}
    wanted = desired_binding(grant)["subjects"]
    await admin.patch(
        RoleBinding,
        binding_name(grant.grant_id),
        {"subjects": [*wanted, intruder]},
        namespace=namespace,
    )

    async def restored() -> bool:
        found = await get_binding(admin, grant)
        return found is not None and found["subjects"] == wanted

    await eventually(restored, "the intruder to be removed from the subjects")


async def test_an_unowned_binding_is_never_touched(
    start_agent: StartAgent, admin: AsyncClient, namespace: str
) -> None:
    theirs = await admin.create(unowned_rolebinding("ops-team", namespace, "ops@example.com"))
    agent = start_agent()
    agent.set_desired(1, [new_grant("view", namespace)])
    await agent.applied(1)
    agent.set_desired(2, [])  # a pass that deletes every owned binding
    await agent.report(lambda r: r[0] == 2, "the report of revision 2")

    after = await admin.get(RoleBinding, "ops-team", namespace=namespace)
    assert after.metadata is not None and theirs.metadata is not None
    assert after.metadata.resourceVersion == theirs.metadata.resourceVersion


async def test_an_unowned_binding_under_a_grants_name_is_reported_failed_and_left_alone(
    start_agent: StartAgent, admin: AsyncClient, namespace: str
) -> None:
    grant = new_grant("admin", namespace)
    squatter = await admin.create(
        unowned_rolebinding(binding_name(grant.grant_id), namespace, "ops@example.com")
    )
    agent = start_agent(retry_seconds=0.2)
    agent.set_desired(1, [grant])

    _, [result] = await agent.report(lambda r: r[0] == 1, "the report of revision 1")
    assert result.grant_id == grant.grant_id and result.status == "failed"
    assert "not managed by kubegate" in result.detail, result.detail
    assert binding_name(grant.grant_id) in result.detail and namespace in result.detail

    await anyio.sleep(1)  # several retries later
    after = await admin.get(RoleBinding, binding_name(grant.grant_id), namespace=namespace)
    assert after.metadata is not None and squatter.metadata is not None
    assert after.metadata.resourceVersion == squatter.metadata.resourceVersion
    assert [r for r in agent.reports if r[1] != [result]] == []  # never claimed applied


async def test_a_grant_into_a_missing_namespace_applies_once_the_namespace_exists(
    start_agent: StartAgent, admin: AsyncClient, kube_credentials: Credentials
) -> None:
    late = f"late-{uuid.uuid4().hex[:8]}"
    grant = new_grant("view", late)
    agent = start_agent(retry_seconds=0.5)
    agent.set_desired(1, [grant])

    _, [result] = await agent.report(lambda r: r[0] == 1, "the report of revision 1")
    assert result.status == "failed"
    assert f'namespaces "{late}" not found' in result.detail, result.detail

    await admin.create(Namespace.from_dict({"metadata": {"name": late}}))
    try:
        await agent.applied(1)
        await until_can_i(
            kube_credentials, PREFIX + grant.email, "get", "pods", "-n", late, allowed=True
        )
    finally:
        await admin.delete(Namespace, late)


async def test_five_hundred_grants_converge(
    start_agent: StartAgent, admin: AsyncClient, namespace: str
) -> None:
    roles = ("view", "edit", "admin", "cluster-admin")
    grants = [new_grant(roles[i % 4], namespace) for i in range(500)]
    agent = start_agent()
    started = time.monotonic()
    agent.set_desired(1, grants)
    _, results = await agent.applied(1, within=180)
    elapsed = time.monotonic() - started
    logger.info("500 grants converged in %.2f s", elapsed, extra={"seconds": elapsed})

    assert sorted(r.grant_id for r in results) == sorted(g.grant_id for g in grants)
    owned = [
        rb
        async for rb in admin.list(
            RoleBinding, namespace=namespace, labels={MANAGED_BY_LABEL: MANAGED_BY}
        )
    ]
    assert len(owned) == 500


async def test_an_older_desired_set_is_ignored(
    start_agent: StartAgent, admin: AsyncClient, namespace: str
) -> None:
    current, stale = new_grant("view", namespace), new_grant("edit", namespace)
    agent = start_agent()
    agent.set_desired(5, [current])
    await agent.applied(5)

    agent.set_desired(4, [stale])
    assert agent.reconciler.revision == 5
    agent.set_desired(5, [current])  # re-reported: a barrier after anything revision 4 did
    await agent.report(lambda _: len(agent.reports) == 2, "the second report of revision 5")
    assert [r[0] for r in agent.reports] == [5, 5]
    assert await get_binding(admin, stale) is None
    assert await get_binding(admin, current) is not None


async def test_the_same_revision_is_reported_again_even_when_nothing_changed(
    start_agent: StartAgent, namespace: str
) -> None:
    grant = new_grant("view", namespace)
    agent = start_agent()
    agent.set_desired(1, [grant])
    first = await agent.applied(1)
    agent.set_desired(1, [grant])
    await agent.report(lambda _: len(agent.reports) == 2, "a second report")
    assert agent.reports == [first, first]


async def test_nothing_is_deleted_before_the_first_desired_set_arrives(
    start_agent: StartAgent, admin: AsyncClient, namespace: str
) -> None:
    earlier = new_grant("view", namespace)  # made by an agent that ran before this one
    await admin.create(RoleBinding.from_dict(desired_binding(earlier)))
    agent = start_agent()

    await anyio.sleep(1)  # watches running, events seen, no desired set yet
    agent.check_alive()
    assert await get_binding(admin, earlier) is not None
    assert agent.reports == []

    agent.set_desired(1, [])

    async def gone() -> bool:
        return await get_binding(admin, earlier) is None

    await eventually(gone, "the binding outside the desired set to be deleted")


async def test_a_report_callback_that_raises_does_not_stop_reconciling(
    start_agent: StartAgent, admin: AsyncClient
) -> None:
    grant = new_grant("view", None)
    agent = start_agent(failing_reports=1, retry_seconds=0.2)
    agent.set_desired(1, [grant])
    await agent.applied(1)  # the report that failed is sent again

    await admin.delete(ClusterRoleBinding, binding_name(grant.grant_id))

    async def back() -> bool:
        return await get_binding(admin, grant) is not None

    await eventually(back, "the deleted binding to come back")


@pytest.fixture
def relay(kube_credentials: Credentials) -> Iterator[FaultyRelay]:
    """A TCP relay to the apiserver that the test can cut."""
    url = urlsplit(kube_credentials.server)
    assert url.hostname is not None and url.port is not None
    with FaultyRelay(url.hostname, url.port) as relay:
        yield relay


async def test_reconciling_resumes_after_the_connection_to_the_apiserver_is_cut(
    start_agent: StartAgent, admin: AsyncClient, kube_credentials: Credentials, relay: FaultyRelay
) -> None:
    kubeconfig = yaml.safe_load(kube_credentials.kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    grant = new_grant("view", None)
    agent = start_agent(kubeconfig, retry_seconds=0.2)
    agent.set_desired(1, [grant])
    await agent.applied(1)

    relay.go_down()  # both watches break; reconnecting fails for a while
    await admin.delete(ClusterRoleBinding, binding_name(grant.grant_id))
    await anyio.sleep(1)
    assert await get_binding(admin, grant) is None
    relay.come_back()

    async def back() -> bool:
        return await get_binding(admin, grant) is not None

    await eventually(back, "the binding deleted during the outage to come back")
    agent.check_alive()
