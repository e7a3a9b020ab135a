"""The portal's session API: cookie sign-in, CSRF on writes, and Cluster Access per DESIGN §3.

The session cookie is Secure, so httpx's cookie jar (rightly) keeps it off these plain-HTTP
test requests; each request sends it explicitly in a ``Cookie`` header instead.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from kubegate.storage.models import ApiToken, new_id
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    add_cluster,
    add_other_org,
    add_user,
    grant_rows,
    grants_path,
    org_id_of,
    sha256,
    token_epoch,
)
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.portal import COOKIE, Portal, access_path, sign_in


@pytest.fixture
def admin(api: Api) -> Portal:
    """The bootstrap admin signed in to the portal."""
    return sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]


@pytest.fixture
def member_id(api: Api, db: Engine) -> str:
    """A member of the admin's organisation (password MEMBER_PASSWORD)."""
    return add_user(db, org_id_of(api), MEMBER_EMAIL)


# --- signing in and out ------------------------------------------------------------------


def test_login_sets_an_httponly_secure_samesite_lax_session_cookie(api: Api, db: Engine) -> None:
    response, portal = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)
    [set_cookie] = response.headers.get_list("set-cookie")
    attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= attributes
    # The __Host- prefix: browsers refuse the cookie unless Secure, Path=/ and no Domain.
    assert set_cookie.startswith("__Host-kubegate_session=")
    assert not any(a.startswith("domain=") for a in attributes)
    assert response.json()["user"]["email"] == ADMIN_EMAIL
    assert portal.csrf and portal.csrf != portal.cookie
    with Session(db) as session:
        token = session.scalar(select(ApiToken).where(ApiToken.kind == "session"))
    assert token is not None
    # Only the secret's hash is stored; the CSRF token is derived, not stored at all.
    assert token.token_hash == sha256(portal.cookie)
    assert portal.cookie not in str(token.__dict__) and portal.csrf not in str(token.__dict__)


def test_wrong_password_sets_no_cookie(api: Api) -> None:
    response = api.client.post("/org/login", json={"email": ADMIN_EMAIL, "password": "nope"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "wrong email or password"
    assert "set-cookie" not in response.headers


def test_logout_ends_the_session_and_clears_the_cookie(api: Api, admin: Portal) -> None:
    cluster_id = add_cluster(api)
    response = admin.post("/org/logout")
    assert response.status_code == 204
    assert response.headers["set-cookie"].startswith(f'{COOKIE}="";')
    reused = admin.get(access_path(cluster_id, "capabilities"))
    assert reused.status_code == 401
    assert "sign in again" in reused.json()["error"]["message"]


def test_access_endpoints_need_a_session(api: Api) -> None:
    cluster_id = add_cluster(api)
    for path in (access_path(cluster_id, "capabilities"), access_path(cluster_id, "grants")):
        response = api.client.get(path)
        assert response.status_code == 401
        assert "POST /org/login" in response.json()["error"]["message"]


# --- CSRF --------------------------------------------------------------------------------


@pytest.mark.parametrize("csrf", ["missing", "wrong", "another session's"])
def test_portal_writes_without_the_right_csrf_token_are_refused_and_change_nothing(
    api: Api, admin: Portal, member_id: str, db: Engine, csrf: str
) -> None:
    cluster_id = add_cluster(api)
    grant = api.post(grants_path(cluster_id), json={"user_id": member_id, "role": "view"}).json()
    sent = {
        "missing": None,
        "wrong": "kg_csrf_made-up",
        "another session's": sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1].csrf,
    }[csrf]
    writes = [
        ("POST", access_path(cluster_id, "grants"), {"user_id": member_id, "role": "admin"}),
        ("DELETE", access_path(cluster_id, f"grants/{grant['id']}"), None),
        ("POST", access_path(cluster_id, "revoke-all"), None),
    ]
    for method, path, body in writes:
        response = admin.write(method, path, csrf=sent, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "X-CSRF-Token" in response.json()["error"]["message"]
    assert [g["id"] for g in admin.get(access_path(cluster_id, "grants")).json()["items"]] == [
        grant["id"]
    ]
    assert grant_rows(db, cluster_id) == 1 and token_epoch(db, cluster_id) == 0


def test_portal_write_with_the_csrf_token_creates_a_pending_grant(
    api: Api, admin: Portal, member_id: str
) -> None:
    cluster_id = add_cluster(api)
    body = {"email": MEMBER_EMAIL, "role": "edit", "namespace": "team-a"}
    created = admin.post(access_path(cluster_id, "grants"), json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "cluster_offline"  # no agent in this test
    again = admin.post(access_path(cluster_id, "grants"), json=body)
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    assert api.get(grants_path(cluster_id)).json()["items"] == [created.json()]


def test_portal_deletes_a_grant(api: Api, admin: Portal, member_id: str) -> None:
    cluster_id = add_cluster(api)
    grant = api.post(grants_path(cluster_id), json={"user_id": member_id, "role": "view"}).json()
    assert admin.delete(access_path(cluster_id, f"grants/{grant['id']}")).status_code == 204
    assert admin.get(access_path(cluster_id, "grants")).json()["items"] == []


def test_portal_revoke_all_removes_every_grant_and_bumps_the_epoch(
    api: Api, admin: Portal, member_id: str, db: Engine
) -> None:
    cluster_id = add_cluster(api)
    for role in ("view", "edit"):
        api.post(grants_path(cluster_id), json={"user_id": member_id, "role": role})
    revoked = admin.post(access_path(cluster_id, "revoke-all"))
    assert revoked.status_code == 200
    assert revoked.json() == {"grants_removed": 2, "token_epoch": 1}
    assert grant_rows(db, cluster_id) == 0 and token_epoch(db, cluster_id) == 1


# --- capabilities and members ------------------------------------------------------------


def test_capabilities_of_an_admin_without_a_grant_say_no_access(api: Api, admin: Portal) -> None:
    cluster_id = add_cluster(api)
    response = admin.get(access_path(cluster_id, "capabilities"))
    assert response.status_code == 200
    assert response.json() == {
        "enabled": True,
        "can_manage": True,
        "has_access": False,
        "reason": None,
    }


def test_capabilities_of_a_member_with_a_grant_say_access_without_managing(
    api: Api, member_id: str
) -> None:
    cluster_id = add_cluster(api)
    api.post(grants_path(cluster_id), json={"user_id": member_id, "role": "view"})
    member = sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]
    capabilities = member.get(access_path(cluster_id, "capabilities")).json()
    assert (capabilities["enabled"], capabilities["can_manage"], capabilities["has_access"]) == (
        True,
        False,
        True,
    )


def test_capabilities_of_a_sandbox_cluster_say_disabled_and_why(api: Api, admin: Portal) -> None:
    cluster_id = add_cluster(api, "play", kind="sandbox")
    assert admin.get(access_path(cluster_id, "capabilities")).json() == {
        "enabled": False,
        "can_manage": False,
        "has_access": False,
        "reason": "Sandbox clusters do not support Cluster Access",
    }


def test_members_lists_the_organisation_with_who_is_active(
    api: Api, admin: Portal, member_id: str, db: Engine
) -> None:
    cluster_id = add_cluster(api)
    add_user(db, org_id_of(api), "gone@example.com", active=False)
    add_user(db, add_other_org(db)[0], "stranger@org-b.example")
    response = admin.get(access_path(cluster_id, "members"))
    assert response.status_code == 200
    listed = {m["email"]: (m["role"], m["is_active"]) for m in response.json()["items"]}
    assert listed == {
        ADMIN_EMAIL: ("admin", True),
        MEMBER_EMAIL: ("member", True),
        "gone@example.com": ("member", False),
    }
    first = admin.get(access_path(cluster_id, "members"), params={"limit": 2}).json()
    rest = admin.get(
        access_path(cluster_id, "members"), params={"cursor": first["next_cursor"]}
    ).json()
    assert len(first["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None


def test_members_is_for_admins_only(api: Api, member_id: str) -> None:
    cluster_id = add_cluster(api)
    member = sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]
    response = member.get(access_path(cluster_id, "members"))
    assert response.status_code == 403
    assert "only organisation admins" in response.json()["error"]["message"]


def test_another_organisations_cluster_is_not_found_in_the_portal(
    admin: Portal, db: Engine
) -> None:
    _, cluster_id, grant_id = add_other_org(db)
    for response in (
        admin.get(access_path(cluster_id, "capabilities")),
        admin.get(access_path(cluster_id, "grants")),
        admin.delete(access_path(cluster_id, f"grants/{grant_id}")),
        admin.post(access_path(cluster_id, "kubeconfig")),
    ):
        assert response.status_code == 404, response.text
    assert grant_rows(db, cluster_id) == 1


# --- the gateway switch ------------------------------------------------------------------


def test_disabled_gateway_answers_404_on_every_portal_access_endpoint(gateway_off: Api) -> None:
    api = gateway_off
    portal = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]
    cluster_id = add_cluster(api)
    calls = [
        ("GET", "capabilities", None),
        ("GET", "members", None),
        ("GET", "grants", None),
        ("POST", "grants", {"email": ADMIN_EMAIL, "role": "view"}),
        ("DELETE", f"grants/{new_id()}", None),
        ("POST", "revoke-all", None),
        ("POST", "kubeconfig", None),
    ]
    for method, rest, body in calls:
        response = portal.write(method, access_path(cluster_id, rest), csrf=portal.csrf, json=body)
        assert response.status_code == 404, (method, rest, response.text)
        assert response.json()["error"]["message"] == (
            "the access gateway is disabled on this server"
        )


# --- the contract ------------------------------------------------------------------------


def test_openapi_documents_every_portal_endpoint_and_its_errors(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    base = "/org/clusters/{cluster_id}/access"
    expected = {
        ("/org/login", "post"): {"401", "422"},
        ("/org/logout", "post"): {"401", "403"},
        (f"{base}/capabilities", "get"): {"401", "404"},
        (f"{base}/members", "get"): {"401", "403", "404", "409"},
        (f"{base}/grants", "get"): {"401", "404", "409"},
        (f"{base}/grants", "post"): {"401", "403", "404", "409", "422"},
        (f"{base}/grants/{{grant_id}}", "delete"): {"401", "403", "404", "409"},
        (f"{base}/revoke-all", "post"): {"401", "403", "404", "409"},
        (f"{base}/kubeconfig", "post"): {"401", "403", "404", "409", "429"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        for status in statuses:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
