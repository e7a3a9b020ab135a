"""Cluster Access on the REST API: creating, listing, deleting and revoking grants.

Members and other organisations are inserted straight into the app's database with a sync
engine (the users API arrives separately); everything else goes through HTTP.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import Engine

from kubegate.storage.models import new_id
from tests.fixtures.access import (
    MEMBER_EMAIL,
    add_cluster,
    add_other_org,
    add_user,
    audit_events,
    grant_rows,
    grants_path,
    org_id_of,
    token_epoch,
)
from tests.fixtures.api import ADMIN_EMAIL, Api

# --- creating ----------------------------------------------------------------------------


def test_create_grant_without_an_agent_answers_201_with_a_cluster_offline_grant(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id = add_cluster(api)
    response = api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "view"})
    assert response.status_code == 201, response.text
    grant = response.json()
    # No agent is connected here (tests/e2e/test_agent_tunnel.py has the applied path).
    assert grant["status"] == "cluster_offline"
    assert grant["status_detail"] == "the cluster's agent is not connected"
    assert grant["user_email"] == MEMBER_EMAIL
    assert (grant["role"], grant["scope"], grant["namespace"]) == ("view", "cluster", None)
    assert grant["cluster_id"] == cluster_id


def test_creating_the_same_grant_again_answers_200_with_the_same_grant(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    body = {"user_id": member[0], "role": "edit", "scope": "namespace", "namespace": "team-a"}
    first = api.post(grants_path(cluster_id), json=body)
    # Named by email (in another case) this time, scope implied by the namespace.
    same = {"email": MEMBER_EMAIL.upper(), "role": "edit", "namespace": "team-a"}
    again = api.post(grants_path(cluster_id), json=same)
    assert first.status_code == 201 and again.status_code == 200, again.text
    # The existing grant itself, with its status: what a CLI says "already granted" with.
    assert again.json() == first.json()
    assert grant_rows(db, cluster_id) == 1


def test_concurrent_identical_creates_make_one_grant(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)

    def create(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            response = client.post(
                grants_path(cluster_id),
                json={"user_id": member[0], "role": "view"},
                headers=api.auth(api.admin_token),
            )
        return response.status_code, response.json().get("id", response.text)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(16)))
    assert sorted(status for status, _ in results) == [200] * 15 + [201], results
    assert len({grant_id for _, grant_id in results}) == 1
    assert grant_rows(db, cluster_id) == 1


def test_the_same_role_in_another_scope_is_a_separate_grant(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id = add_cluster(api)
    bodies = [
        {"user_id": member[0], "role": "view"},
        {"user_id": member[0], "role": "view", "namespace": "team-a"},
        {"user_id": member[0], "role": "view", "namespace": "team-b"},
    ]
    ids = set()
    for body in bodies:
        response = api.post(grants_path(cluster_id), json=body)
        assert response.status_code == 201, response.text
        ids.add(response.json()["id"])
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("namespace", "problem"),
    [("Foo_Bar", "lower case letters"), ("a" * 64, "at most 63 characters")],
    ids=["uppercase-and-underscore", "64-characters"],
)
def test_invalid_namespace_is_refused_and_nothing_is_written(
    api: Api, member: tuple[str, str], db: Engine, namespace: str, problem: str
) -> None:
    cluster_id = add_cluster(api)
    response = api.post(
        grants_path(cluster_id),
        json={"user_id": member[0], "role": "view", "scope": "namespace", "namespace": namespace},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == {"field": "namespace"}
    assert problem in error["message"] and namespace in error["message"]
    assert grant_rows(db, cluster_id) == 0


def test_unknown_role_is_refused_naming_the_allowed_roles(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    response = api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "owner"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"] == {"field": "role"}
    assert "view, edit, admin, cluster-admin" in error["message"] and "'owner'" in error["message"]
    assert grant_rows(db, cluster_id) == 0


def test_grant_for_a_non_member_is_refused(api: Api, db: Engine) -> None:
    cluster_id = add_cluster(api)
    add_user(db, add_other_org(db)[0], "stranger@org-b.example")
    for target in ({"email": "stranger@org-b.example"}, {"email": "nobody@example.com"}):
        response = api.post(grants_path(cluster_id), json={**target, "role": "view"})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["message"] == (
            f"{target['email']} is not a member of this organisation; invite them first"
        )
    assert grant_rows(db, cluster_id) == 0


def test_grant_for_a_deactivated_member_is_refused(api: Api, db: Engine) -> None:
    cluster_id = add_cluster(api)
    user_id = add_user(db, org_id_of(api), "gone@example.com", active=False)
    response = api.post(grants_path(cluster_id), json={"user_id": user_id, "role": "view"})
    assert response.status_code == 422
    assert "deactivated" in response.json()["error"]["message"]
    assert grant_rows(db, cluster_id) == 0


def test_target_must_be_named_by_exactly_one_of_user_id_and_email(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id = add_cluster(api)
    both = {"user_id": member[0], "email": MEMBER_EMAIL, "role": "view"}
    for body in (both, {"role": "view"}):
        response = api.post(grants_path(cluster_id), json=body)
        assert response.status_code == 422
        assert "either user_id or email" in response.json()["error"]["message"]


def test_member_cannot_create_a_grant(api: Api, member: tuple[str, str], db: Engine) -> None:
    cluster_id = add_cluster(api)
    response = api.post(
        grants_path(cluster_id), member[1], json={"user_id": member[0], "role": "cluster-admin"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["message"] == (
        "only organisation admins can grant cluster access"
    )
    assert api.get(grants_path(cluster_id)).json()["items"] == []


def test_sandbox_cluster_refuses_cluster_access(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api, "play", kind="sandbox")
    responses = [
        api.get(grants_path(cluster_id)),
        api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "view"}),
        api.delete(f"{grants_path(cluster_id)}/{new_id()}"),
        api.post(f"/api/v1/clusters/{cluster_id}/access/revoke-all"),
    ]
    for response in responses:
        assert response.status_code == 409, response.text
        assert response.json()["error"] == {
            "code": "conflict",
            "message": "Sandbox clusters do not support Cluster Access",
            "details": {},
        }
    assert grant_rows(db, cluster_id) == 0 and token_epoch(db, cluster_id) == 0


# --- listing -----------------------------------------------------------------------------


def test_admin_lists_every_grant_of_the_cluster(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api)
    me = api.get("/api/v1/me").json()["user"]["id"]
    api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "view"})
    api.post(grants_path(cluster_id), json={"user_id": me, "role": "admin"})
    listed = api.get(grants_path(cluster_id)).json()
    assert sorted(g["user_email"] for g in listed["items"]) == [ADMIN_EMAIL, MEMBER_EMAIL]
    assert all(g["status"] == "cluster_offline" for g in listed["items"])
    assert listed["next_cursor"] is None


def test_member_lists_only_their_own_grants(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api)
    me = api.get("/api/v1/me").json()["user"]["id"]
    own = api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "view"}).json()
    api.post(grants_path(cluster_id), json={"user_id": me, "role": "admin"})
    listed = api.get(grants_path(cluster_id), member[1])
    assert listed.status_code == 200
    assert listed.json()["items"] == [own]


def test_grant_list_pages_with_a_cursor(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api)
    created = [
        api.post(grants_path(cluster_id), json={"user_id": member[0], "role": role}).json()["id"]
        for role in ("view", "edit", "admin")
    ]
    first = api.get(grants_path(cluster_id), params={"limit": 2}).json()
    second = api.get(
        grants_path(cluster_id), params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [g["id"] for g in first["items"]] == created[:2]
    assert [g["id"] for g in second["items"]] == created[2:]
    assert second["next_cursor"] is None


# --- deleting and revoking ---------------------------------------------------------------


def test_deleting_a_grant_removes_it(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api)
    grant = api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "view"}).json()
    assert api.delete(f"{grants_path(cluster_id)}/{grant['id']}").status_code == 204
    assert api.get(grants_path(cluster_id)).json()["items"] == []
    again = api.delete(f"{grants_path(cluster_id)}/{grant['id']}")
    assert again.status_code == 404
    assert again.json()["error"]["message"] == (
        f"grant {grant['id']} not found on cluster {cluster_id}"
    )


def test_a_grant_is_not_found_through_another_cluster(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api, "one")
    other_id = add_cluster(api, "two")
    grant = api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "view"}).json()
    assert api.delete(f"{grants_path(other_id)}/{grant['id']}").status_code == 404
    assert [g["id"] for g in api.get(grants_path(cluster_id)).json()["items"]] == [grant["id"]]


def test_member_cannot_delete_a_grant(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api)
    grant = api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "view"}).json()
    response = api.delete(f"{grants_path(cluster_id)}/{grant['id']}", member[1])
    assert response.status_code == 403
    assert "only organisation admins" in response.json()["error"]["message"]
    assert api.get(grants_path(cluster_id)).json()["items"] == [grant]


def test_member_cannot_revoke_all(api: Api, member: tuple[str, str], db: Engine) -> None:
    cluster_id = add_cluster(api)
    api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "view"})
    response = api.post(f"/api/v1/clusters/{cluster_id}/access/revoke-all", member[1])
    assert response.status_code == 403
    assert grant_rows(db, cluster_id) == 1 and token_epoch(db, cluster_id) == 0


def test_revoke_all_deletes_every_grant_and_bumps_the_token_epoch(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    keep_id = add_cluster(api, "other")
    for namespace in ("a", "b", None):
        body = {"user_id": member[0], "role": "edit", "namespace": namespace}
        assert api.post(grants_path(cluster_id), json=body).status_code == 201
    api.post(grants_path(keep_id), json={"user_id": member[0], "role": "view"})

    revoked = api.post(f"/api/v1/clusters/{cluster_id}/access/revoke-all")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"grants_removed": 3, "token_epoch": 1}
    assert api.get(grants_path(cluster_id)).json()["items"] == []
    assert token_epoch(db, cluster_id) == 1
    assert grant_rows(db, keep_id) == 1 and token_epoch(db, keep_id) == 0
    again = api.post(f"/api/v1/clusters/{cluster_id}/access/revoke-all").json()
    assert again == {"grants_removed": 0, "token_epoch": 2}


# --- auditing ----------------------------------------------------------------------------


def test_every_admin_write_leaves_an_audit_event(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    grant = api.post(grants_path(cluster_id), json={"user_id": member[0], "role": "view"}).json()
    api.delete(f"{grants_path(cluster_id)}/{grant['id']}")
    api.post(f"/api/v1/clusters/{cluster_id}/access/revoke-all")

    for action, target_id in [
        ("grant.create", grant["id"]),
        ("grant.delete", grant["id"]),
        ("grant.revoke_all", cluster_id),
    ]:
        [event] = audit_events(db, action)
        assert (event.result, event.actor_email) == ("success", ADMIN_EMAIL)
        assert (event.cluster_id, event.target_id) == (cluster_id, target_id)
    [created] = audit_events(db, "grant.create")
    assert created.detail["email"] == MEMBER_EMAIL and created.detail["role"] == "view"


def test_refused_write_is_audited_as_a_failure(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    api.post(grants_path(cluster_id), member[1], json={"user_id": member[0], "role": "admin"})
    [event] = audit_events(db, "grant.create")
    assert (event.result, event.actor_email, event.cluster_id) == (
        "failure",
        MEMBER_EMAIL,
        cluster_id,
    )
    assert event.detail["error"] == "forbidden"


# --- isolation and the gateway switch ----------------------------------------------------


def test_another_organisations_cluster_is_not_found(api: Api, db: Engine) -> None:
    _, cluster_id, grant_id = add_other_org(db)
    me = api.get("/api/v1/me").json()["user"]["id"]
    responses = [
        api.get(grants_path(cluster_id)),
        api.post(grants_path(cluster_id), json={"user_id": me, "role": "cluster-admin"}),
        api.delete(f"{grants_path(cluster_id)}/{grant_id}"),
        api.post(f"/api/v1/clusters/{cluster_id}/access/revoke-all"),
    ]
    for response in responses:
        assert response.status_code == 404, response.text
        assert response.json()["error"]["message"] == f"cluster {cluster_id} not found"
    assert grant_rows(db, cluster_id) == 1 and token_epoch(db, cluster_id) == 0


def test_disabled_gateway_answers_404_on_every_access_endpoint(gateway_off: Api) -> None:
    cluster_id = add_cluster(gateway_off)
    me = gateway_off.get("/api/v1/me").json()["user"]["id"]
    calls = [
        ("GET", grants_path(cluster_id), None),
        ("POST", grants_path(cluster_id), {"user_id": me, "role": "view"}),
        ("DELETE", f"{grants_path(cluster_id)}/{new_id()}", None),
        ("POST", f"/api/v1/clusters/{cluster_id}/access/revoke-all", None),
    ]
    for method, path, body in calls:
        for headers in (gateway_off.auth(gateway_off.admin_token), {}):
            response = gateway_off.client.request(method, path, json=body, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["message"] == (
                "the access gateway is disabled on this server"
            )


# --- the contract ------------------------------------------------------------------------


def test_openapi_documents_every_access_endpoint_and_its_errors(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    base = "/api/v1/clusters/{cluster_id}/access"
    expected = {
        (f"{base}/grants", "get"): {"200", "400", "401", "404", "409", "422"},
        (f"{base}/grants", "post"): {"200", "201", "400", "401", "403", "404", "409", "422"},
        (f"{base}/grants/{{grant_id}}", "delete"): {"204", "401", "403", "404", "409"},
        (f"{base}/revoke-all", "post"): {"200", "401", "403", "404", "409"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (path, method, sorted(responses))
        for status in statuses - {"200", "201", "204"}:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
