"""Service accounts and the admin kubeconfig on the REST API, on SQLite and PostgreSQL.

No agent is connected here: the agent's half (the ServiceAccount in the cluster, bound
tokens, direct kubeconfigs working) is tests/e2e/test_service_account_kubectl.py. What is
checked here is who may do what, what is stored, what is audited and what a kubeconfig
through the gateway holds.
"""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from kubegate.storage.models import KubeToken, ServiceAccount
from tests.fixtures.access import (
    add_cluster,
    add_other_org,
    audit_events,
    grant,
    me,
    sha256,
)
from tests.fixtures.api import Api


def accounts_path(cluster_id: str) -> str:
    return f"/api/v1/clusters/{cluster_id}/service-accounts"


def create(api: Api, cluster_id: str, **body: object) -> dict[str, object]:
    payload = {"name": "ci-deployer", "namespace": "ci", "role": "edit", **body}
    response = api.post(accounts_path(cluster_id), json=payload)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def rows(db: Engine) -> list[ServiceAccount]:
    with Session(db) as session:
        return list(session.scalars(select(ServiceAccount)))


def test_an_admin_creates_lists_and_deletes_a_service_account(api: Api, db: Engine) -> None:
    cluster_id = add_cluster(api)
    created = create(api, cluster_id)
    assert created["username"] == "system:serviceaccount:ci:ci-deployer"
    assert (created["role"], created["scope"]) == ("edit", "namespace")
    # No agent here: it waits for one, like a grant.
    assert created["status"] == "cluster_offline"
    listed = api.get(accounts_path(cluster_id)).json()["items"]
    assert [a["id"] for a in listed] == [created["id"]]

    response = api.delete(f"{accounts_path(cluster_id)}/{created['id']}")
    assert response.status_code == 204, response.text
    assert rows(db) == []
    assert api.get(accounts_path(cluster_id)).json()["items"] == []
    actions = [e.result for e in audit_events(db, "service_account.create")]
    assert actions == ["success"]
    assert [e.target_id for e in audit_events(db, "service_account.delete")] == [created["id"]]


def test_the_same_account_twice_is_a_409_naming_it(api: Api) -> None:
    cluster_id = add_cluster(api)
    create(api, cluster_id)
    again = api.post(
        accounts_path(cluster_id), json={"name": "ci-deployer", "namespace": "ci", "role": "view"}
    )
    assert again.status_code == 409
    assert "ci/ci-deployer already exists" in again.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "CI_Deployer"}, "name", "service account name 'CI_Deployer'"),
        ({"namespace": "-ci"}, "namespace", "namespace '-ci'"),
        ({"role": "root"}, "role", "role must be one of view, edit, admin, cluster-admin"),
        ({"scope": "global"}, "scope", "scope must be namespace or cluster"),
        ({"name": "kubegate-break-glass"}, "name", "the admin kubeconfig's own account"),
        ({"extra": 1}, None, "extra"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    api: Api, body: dict[str, object], field: str | None, words: str
) -> None:
    cluster_id = add_cluster(api)
    payload = {"name": "ci", "namespace": "ci", "role": "edit", **body}
    response = api.post(accounts_path(cluster_id), json=payload)
    assert response.status_code == 422, response.text
    assert words in response.text
    if field is not None:
        assert response.json()["error"]["details"]["field"] == field


def test_members_cannot_see_or_manage_service_accounts(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    account = create(api, cluster_id)
    _, token = member
    path = accounts_path(cluster_id)
    assert api.get(path, token).status_code == 403
    refused = api.post(path, token, json={"name": "x", "namespace": "ci", "role": "view"})
    assert refused.status_code == 403
    assert "only organisation admins can create service accounts" in refused.text
    assert api.delete(f"{path}/{account['id']}", token).status_code == 403
    assert api.post(f"{path}/{account['id']}/kubeconfig", token).status_code == 403
    assert len(rows(db)) == 1
    # A refused attempt is audited too.
    assert "failure" in [e.result for e in audit_events(db, "service_account.create")]


def test_another_organisations_cluster_is_a_404(api: Api, db: Engine) -> None:
    _, other_cluster, _ = add_other_org(db)
    path = accounts_path(other_cluster)
    assert api.get(path).status_code == 404
    refused = api.post(path, json={"name": "x", "namespace": "ci", "role": "view"})
    assert refused.status_code == 404
    assert api.post(f"/api/v1/clusters/{other_cluster}/admin-kubeconfig").status_code == 404
    assert rows(db) == []


def test_an_account_is_found_only_on_its_own_cluster(api: Api, db: Engine) -> None:
    account = create(api, add_cluster(api))
    other = add_cluster(api, name="other")
    response = api.delete(f"{accounts_path(other)}/{account['id']}")
    assert response.status_code == 404
    assert len(rows(db)) == 1


def test_sandbox_clusters_refuse_service_accounts(api: Api) -> None:
    cluster_id = add_cluster(api, name="sandbox", kind="sandbox")
    response = api.post(
        accounts_path(cluster_id), json={"name": "ci", "namespace": "ci", "role": "view"}
    )
    assert response.status_code == 409
    assert "Sandbox clusters do not support Cluster Access" in response.text


def test_a_gateway_kubeconfig_acts_as_the_account_and_is_audited(api: Api, db: Engine) -> None:
    cluster_id = add_cluster(api)
    account = create(api, cluster_id, scope="cluster", role="view")
    response = api.post(
        f"{accounts_path(cluster_id)}/{account['id']}/kubeconfig",
        json={"duration_seconds": 3600},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.headers["cache-control"] == "no-store"
    config = yaml.safe_load(response.text)
    [context] = config["contexts"]
    assert context["name"] == "kubegate-prod-ci-deployer"
    assert context["context"]["namespace"] == "ci"
    [cluster] = config["clusters"]
    assert cluster["cluster"]["server"].endswith(f"/clusters/{cluster_id}")
    token = config["users"][0]["user"]["token"]
    with Session(db) as session:
        stored = session.scalars(select(KubeToken)).one()
    assert stored.token_hash == sha256(token)  # only the hash is kept
    assert stored.service_account_id == account["id"]
    lifetime = stored.expires_at - stored.created_at
    assert dt.timedelta(seconds=3599) <= lifetime <= dt.timedelta(seconds=3600)
    expires = dt.datetime.fromisoformat(response.headers["kubegate-token-expires-at"])
    assert expires == stored.expires_at
    [event] = audit_events(db, "service_account.kubeconfig")
    assert event.detail["via"] == "gateway"
    assert token not in str(event.detail)


def test_deleting_the_account_deletes_its_kube_tokens(api: Api, db: Engine) -> None:
    cluster_id = add_cluster(api)
    account = create(api, cluster_id)
    path = f"{accounts_path(cluster_id)}/{account['id']}"
    assert api.post(f"{path}/kubeconfig").status_code == 200
    assert api.delete(path).status_code == 204
    with Session(db) as session:
        assert session.scalars(select(KubeToken)).all() == []


@pytest.mark.parametrize("seconds", [599, 7 * 86400 + 1])
def test_a_lifetime_out_of_bounds_is_a_422_with_the_bounds(api: Api, seconds: int) -> None:
    cluster_id = add_cluster(api)
    account = create(api, cluster_id)
    response = api.post(
        f"{accounts_path(cluster_id)}/{account['id']}/kubeconfig",
        json={"duration_seconds": seconds},
    )
    assert response.status_code == 422
    assert "between 600 and 604800" in response.text


def test_a_direct_kubeconfig_needs_the_account_applied(api: Api) -> None:
    cluster_id = add_cluster(api)
    account = create(api, cluster_id)
    response = api.post(
        f"{accounts_path(cluster_id)}/{account['id']}/kubeconfig", json={"direct": True}
    )
    assert response.status_code == 409
    assert "cluster_offline, not applied" in response.text


# --- the admin kubeconfig ---------------------------------------------------------------


def admin_path(cluster_id: str) -> str:
    return f"/api/v1/clusters/{cluster_id}/admin-kubeconfig"


def test_an_admin_without_a_cluster_admin_grant_gets_403_with_the_reason(
    api: Api, db: Engine
) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, me(api), "edit")  # edit is not enough
    response = api.post(admin_path(cluster_id))
    assert response.status_code == 403
    assert "hold cluster-admin on the whole of cluster prod" in response.json()["error"]["message"]
    [event] = audit_events(db, "cluster.admin_kubeconfig")
    assert event.result == "failure"
    listed = api.get(f"/api/v1/clusters/{cluster_id}/admin-kubeconfigs").json()["items"]
    assert [(i["result"], i["actor_email"]) for i in listed] == [("failure", event.actor_email)]


def test_a_member_with_cluster_admin_gets_403(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, member[0], "cluster-admin")
    response = api.post(admin_path(cluster_id), member[1])
    assert response.status_code == 403
    assert "only organisation admins can take the admin kubeconfig" in response.text


def test_with_a_grant_but_no_agent_the_admin_kubeconfig_says_what_is_missing(api: Api) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, me(api), "cluster-admin")
    response = api.post(admin_path(cluster_id))
    # No agent ever connected, so kubegate knows no apiserver address.
    assert response.status_code == 409
    assert "--api-server-url" in response.text
    set_url = api.client.put(
        f"/api/v1/clusters/{cluster_id}/api-server",
        headers=api.auth(api.admin_token),
        json={"url": "https://203.0.113.7:6443"},
    )
    assert set_url.status_code == 204, set_url.text
    response = api.post(admin_path(cluster_id))
    assert response.status_code == 503
    assert "agent is not connected" in response.text


def test_the_apiserver_url_must_be_https(api: Api) -> None:
    cluster_id = add_cluster(api)
    response = api.client.put(
        f"/api/v1/clusters/{cluster_id}/api-server",
        headers=api.auth(api.admin_token),
        json={"url": "http://203.0.113.7"},
    )
    assert response.status_code == 422
    assert "must start with https://" in response.text
