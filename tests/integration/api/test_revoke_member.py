"""Revoking one member's access on a cluster by email (``POST .../access/revoke``), on the
REST API and the portal, on SQLite and PostgreSQL.

Each grant goes the way deleting it does: audited as ``grant.delete``, and the member's kube
tokens for the cluster fail at the proxy at once (no agent is connected here, so a token
that still works ends at "cluster offline", 503).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.fixtures.access import (
    MEMBER_EMAIL,
    NO_ACCESS,
    add_cluster,
    add_other_org,
    add_user,
    audit_events,
    grant_rows,
    grants_path,
    me,
    org_id_of,
    token_path,
)
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.portal import access_path, sign_in

PODS = "/api/v1/namespaces/default/pods"


def revoke_path(cluster_id: str) -> str:
    return f"/api/v1/clusters/{cluster_id}/access/revoke"


def create(api: Api, cluster_id: str, user_id: str, role: str, namespace: str | None = None) -> str:
    body = {"user_id": user_id, "role": role, "namespace": namespace}
    response = api.post(grants_path(cluster_id), json=body)
    assert response.status_code == 201, response.text
    grant_id: str = response.json()["id"]
    return grant_id


def grant_ids(api: Api, cluster_id: str) -> list[str]:
    return [g["id"] for g in api.get(grants_path(cluster_id)).json()["items"]]


def proxy_status(api: Api, cluster_id: str, token: str) -> httpx.Response:
    with httpx.Client(base_url=api.proxy_url, timeout=30) as client:
        return client.get(
            f"/clusters/{cluster_id}{PODS}", headers={"Authorization": f"Bearer {token}"}
        )


def kube_token(api: Api, cluster_id: str, api_token: str) -> str:
    response = api.post(token_path(cluster_id), api_token)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


# --- what it removes ---------------------------------------------------------------------


def test_revoke_deletes_every_grant_the_member_holds_on_that_cluster_only(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id, elsewhere = add_cluster(api, "prod"), add_cluster(api, "staging")
    wide = create(api, cluster_id, member[0], "view")
    team = create(api, cluster_id, member[0], "edit", "team-a")
    admins = create(api, cluster_id, me(api), "admin")
    kept = create(api, elsewhere, member[0], "view")
    response = api.post(revoke_path(cluster_id), json={"email": MEMBER_EMAIL})
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": [wide, team]}
    assert grant_ids(api, cluster_id) == [admins]
    assert grant_ids(api, elsewhere) == [kept]
    # Nothing left to revoke: the same call answers an empty list.
    again = api.post(revoke_path(cluster_id), json={"email": MEMBER_EMAIL})
    assert (again.status_code, again.json()) == (200, {"revoked": []})


def test_the_email_matches_in_any_case(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api)
    grant_id = create(api, cluster_id, member[0], "view")
    response = api.post(revoke_path(cluster_id), json={"email": MEMBER_EMAIL.upper()})
    assert response.json() == {"revoked": [grant_id]}


def test_a_member_without_grants_answers_an_empty_list_and_audits_nothing(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    response = api.post(revoke_path(cluster_id), json={"email": MEMBER_EMAIL})
    assert (response.status_code, response.json()) == (200, {"revoked": []})
    assert audit_events(db, "grant.delete") == []


def test_a_deactivated_members_grants_can_be_revoked(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    grant_id = create(api, cluster_id, member[0], "view")
    deactivated = api.patch(f"/api/v1/users/{member[0]}", json={"is_active": False})
    assert deactivated.status_code == 200, deactivated.text
    response = api.post(revoke_path(cluster_id), json={"email": MEMBER_EMAIL})
    assert response.json() == {"revoked": [grant_id]}
    assert grant_rows(db, cluster_id) == 0


def test_each_revoked_grant_is_audited_as_its_deletion(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    ids = [create(api, cluster_id, member[0], role) for role in ("view", "edit")]
    api.post(revoke_path(cluster_id), json={"email": MEMBER_EMAIL})
    events = {event.target_id: event for event in audit_events(db, "grant.delete")}
    assert sorted(events) == sorted(ids)
    for grant_id, role in zip(ids, ("view", "edit"), strict=True):
        event = events[grant_id]
        assert (event.result, event.actor_email, event.cluster_id) == (
            "success",
            ADMIN_EMAIL,
            cluster_id,
        )
        assert event.detail == {
            "user_id": member[0],
            "email": MEMBER_EMAIL,
            "role": role,
            "scope": "cluster",
            "namespace": None,
            "via": "revoke",
        }


def test_revoked_members_kube_tokens_fail_at_once_and_others_keep_working(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    create(api, cluster_id, member[0], "view")
    create(api, cluster_id, me(api), "view")
    members_token = kube_token(api, cluster_id, member[1])
    admins_token = kube_token(api, cluster_id, api.admin_token)
    assert proxy_status(api, cluster_id, members_token).status_code == 503  # offline: it works
    api.post(revoke_path(cluster_id), json={"email": MEMBER_EMAIL})
    refused = proxy_status(api, cluster_id, members_token)
    assert refused.status_code == 403
    assert refused.json()["message"] == NO_ACCESS
    assert proxy_status(api, cluster_id, admins_token).status_code == 503
    # And no new token either, until access is granted again.
    assert api.post(token_path(cluster_id), member[1]).status_code == 403


# --- refusals ----------------------------------------------------------------------------


def test_someone_who_is_not_a_member_is_404_naming_them(api: Api, db: Engine) -> None:
    add_other_org(db)  # admin@org-b.example is a member there, not here
    cluster_id = add_cluster(api)
    for email in ("ghost@example.com", "admin@org-b.example"):
        response = api.post(revoke_path(cluster_id), json={"email": email})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["message"] == (
            f"{email} is not a member of this organisation"
        )
    [event, _] = audit_events(db, "grant.delete")
    assert (event.result, event.cluster_id) == ("failure", cluster_id)


def test_a_member_cannot_revoke_by_email(api: Api, member: tuple[str, str], db: Engine) -> None:
    cluster_id = add_cluster(api)
    other_id = add_user(db, org_id_of(api), "other@example.com")
    held = [
        create(api, cluster_id, me(api), "admin"),
        create(api, cluster_id, other_id, "edit"),
        create(api, cluster_id, member[0], "view"),
    ]
    for email in (ADMIN_EMAIL, "other@example.com", MEMBER_EMAIL):
        response = api.post(revoke_path(cluster_id), member[1], json={"email": email})
        assert response.status_code == 403, response.text
        assert "only organisation admins" in response.json()["error"]["message"]
    assert grant_ids(api, cluster_id) == held
    assert {e.result for e in audit_events(db, "grant.delete")} == {"failure"}


def test_another_organisations_cluster_is_not_found_for_admins_and_members(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    _, cluster_id, _ = add_other_org(db)
    for token in (None, member[1]):
        response = api.post(revoke_path(cluster_id), token, json={"email": "admin@org-b.example"})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["message"] == f"cluster {cluster_id} not found"
    assert grant_rows(db, cluster_id) == 1


def test_a_sandbox_cluster_refuses_with_409(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api, "sandbox", kind="sandbox")
    response = api.post(revoke_path(cluster_id), json={"email": MEMBER_EMAIL})
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "Sandbox clusters do not support Cluster Access"


@pytest.mark.parametrize(
    "body",
    [{}, {"email": "not-an-email"}, {"email": MEMBER_EMAIL, "role": "view"}, {"email": 3}],
    ids=["missing", "not-an-email", "unknown-field", "not-a-string"],
)
def test_a_bad_body_is_422(api: Api, member: tuple[str, str], body: dict[str, Any]) -> None:
    cluster_id = add_cluster(api)
    create(api, cluster_id, member[0], "view")
    response = api.post(revoke_path(cluster_id), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"
    assert len(grant_ids(api, cluster_id)) == 1


def test_without_a_credential_it_is_401(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api)
    response = api.client.post(revoke_path(cluster_id), json={"email": MEMBER_EMAIL})
    assert response.status_code == 401


# --- the portal and the gateway switch ---------------------------------------------------


def test_the_portal_revokes_a_member_with_the_csrf_token(api: Api, member: tuple[str, str]) -> None:
    portal = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]
    cluster_id = add_cluster(api)
    grant_id = create(api, cluster_id, member[0], "view")
    path = access_path(cluster_id, "revoke")
    forged = portal.write("POST", path, csrf=None, json={"email": MEMBER_EMAIL})
    assert forged.status_code == 403
    assert grant_ids(api, cluster_id) == [grant_id]
    response = portal.post(path, json={"email": MEMBER_EMAIL})
    assert (response.status_code, response.json()) == (200, {"revoked": [grant_id]})


def test_disabled_gateway_answers_404_on_both_revoke_endpoints(gateway_off: Api) -> None:
    api = gateway_off
    cluster_id = add_cluster(api)
    portal = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]
    responses = [
        api.post(revoke_path(cluster_id), json={"email": ADMIN_EMAIL}),
        api.client.post(revoke_path(cluster_id), json={"email": ADMIN_EMAIL}),
        portal.post(access_path(cluster_id, "revoke"), json={"email": ADMIN_EMAIL}),
    ]
    for response in responses:
        assert response.status_code == 404, response.text
        assert response.json()["error"]["message"] == (
            "the access gateway is disabled on this server"
        )


def test_openapi_documents_both_revoke_endpoints_and_their_errors(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/clusters/{cluster_id}/access/revoke",
        "/org/clusters/{cluster_id}/access/revoke",
    ):
        operation = paths[path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/MemberRevoke"
        }
        responses = operation["responses"]
        assert responses["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/MemberRevoked"
        }
        for status in ("401", "403", "404", "409", "422"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
