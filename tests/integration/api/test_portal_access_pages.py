"""A cluster's Access view over HTTP (``/portal/clusters/{id}``), on SQLite and PostgreSQL.

What a browser would not send by itself: forged writes (no CSRF token, a member's session),
a typed name that is not the cluster's, a namespace that the page's ``pattern`` would have
stopped. The browser test (tests/e2e/test_portal_access.py) drives the same page in
Chromium. The session cookie is Secure, so it travels in an explicit ``Cookie`` header.
"""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import Engine

from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    add_cluster,
    add_other_org,
    add_user,
    audit_events,
    grant,
    grant_rows,
    org_id_of,
    token_epoch,
)
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.portal import COOKIE, Portal, sign_in


@pytest.fixture
def admin(api: Api) -> Portal:
    return sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]


@pytest.fixture
def member_id(api: Api, db: Engine) -> str:
    return add_user(db, org_id_of(api), MEMBER_EMAIL)


@pytest.fixture
def member(api: Api, member_id: str) -> Portal:
    return sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]


def page(cluster_id: str, rest: str = "") -> str:
    return f"/portal/clusters/{cluster_id}{rest}"


def form_post(
    portal: Portal, path: str, csrf: str | None = "own", **fields: str
) -> tuple[int, str, str]:
    """POST a page's form as the browser would: (status, body, Location)."""
    data = dict(fields)
    if csrf is not None:
        data["csrf_token"] = portal.csrf if csrf == "own" else csrf
    answer = portal.client.post(path, data=data, headers={"Cookie": f"{COOKIE}={portal.cookie}"})
    return answer.status_code, answer.text, answer.headers.get("location", "")


def test_admin_sees_members_grants_and_manage_controls(
    api: Api, admin: Portal, member_id: str
) -> None:
    cluster_id = add_cluster(api, "prod")
    grant(api, cluster_id, member_id, "edit")

    answer = admin.get(page(cluster_id))

    assert answer.status_code == 200
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    text = answer.text
    assert 'data-member="member@example.com"' in text
    assert 'data-email="member@example.com"' in text and ">edit<" in text
    assert 'action="/portal/clusters/' + cluster_id + '/grants"' in text
    assert 'name="confirm_name"' in text and "Delete edit grant of member@example.com" in text
    assert 'pattern="[a-z0-9]([\\-a-z0-9]*[a-z0-9])?"' in text
    assert f'hx-get="/portal/clusters/{cluster_id}/grants"' in text
    # Managing gives no kubectl access: the admin is told so, and offered no download.
    assert "Managing its access does not give you kubectl access" in text
    assert "Download kubeconfig" not in text


def test_the_clusters_page_links_to_the_access_view(api: Api, admin: Portal) -> None:
    cluster_id = add_cluster(api, "prod")
    assert f'href="/portal/clusters/{cluster_id}"' in admin.get("/portal/clusters").text


def test_member_sees_their_access_and_kubeconfig_but_no_manage_controls(
    api: Api, member: Portal, member_id: str
) -> None:
    cluster_id = add_cluster(api, "prod")
    grant(api, cluster_id, member_id, "view")

    text = member.get(page(cluster_id)).text

    assert "view</span> on the whole cluster" in text
    assert (
        f"kubegate login {api.settings.base_url(bound_port=int(api.url.rsplit(':', 1)[1]))}\n"
        in text
    )
    assert "kubegate cluster kubeconfig add prod" in text
    assert "expires 15 minutes after you download it" in text
    assert "Download kubeconfig" in text
    for manage in ('name="confirm_name"', "Create grant", "/delete", 'data-member="'):
        assert manage not in text, manage


def test_member_without_a_grant_is_told_to_ask_an_admin(api: Api, member: Portal) -> None:
    cluster_id = add_cluster(api, "prod")
    text = member.get(page(cluster_id)).text
    assert "You do not have access to this cluster. Ask one of your organisation" in text
    assert "Download kubeconfig" not in text


def test_a_members_open_page_polls_their_own_access(
    api: Api, member: Portal, member_id: str
) -> None:
    cluster_id = add_cluster(api, "prod")
    mine = page(cluster_id, "/mine")
    headers = {"HX-Request": "true", "Cookie": f"{COOKIE}={member.cookie}"}
    assert f'hx-get="{mine}" hx-trigger="every 5s"' in member.get(page(cluster_id)).text

    before = member.client.get(mine, headers=headers).text
    assert before.startswith('<section class="kg-section"') and "You do not have access" in before
    grant(api, cluster_id, member_id, "view")
    after = member.client.get(mine, headers=headers).text
    # No agent here: the grant waits for the cluster, so the page looks again every second.
    assert "view</span> on the whole cluster" in after and "cluster offline" in after
    assert 'hx-trigger="every 1s"' in after and "Download kubeconfig" in after

    ended = member.client.get(mine, headers={"HX-Request": "true"})
    assert ended.status_code == 401 and ended.headers["HX-Redirect"].startswith("/portal/sign-in")


def test_member_downloads_a_kubeconfig_with_an_embedded_token(
    api: Api, member: Portal, member_id: str, db: Engine
) -> None:
    cluster_id = add_cluster(api, "prod")
    grant(api, cluster_id, member_id)

    answer = member.client.post(
        page(cluster_id, "/kubeconfig"),
        data={"csrf_token": member.csrf},
        headers={"Cookie": f"{COOKIE}={member.cookie}"},
    )

    assert answer.status_code == 200, answer.text
    assert (
        answer.headers["content-disposition"] == 'attachment; filename="kubegate-prod.kubeconfig"'
    )
    config = yaml.safe_load(answer.text)
    assert config["clusters"][0]["cluster"]["server"].endswith(f"/clusters/{cluster_id}")
    assert config["users"][0]["user"]["token"].startswith("kg_kube_")
    [event] = audit_events(db, "kube_token.mint")
    assert event.detail["via"] == "kubeconfig" and event.actor_email == MEMBER_EMAIL


def test_kubeconfig_without_csrf_or_without_a_grant_is_refused(
    api: Api, member: Portal, admin: Portal
) -> None:
    cluster_id = add_cluster(api, "prod")

    status, text, _ = form_post(member, page(cluster_id, "/kubeconfig"), csrf=None)
    assert status == 403 and "security token is missing or wrong" in text

    status, text, _ = form_post(admin, page(cluster_id, "/kubeconfig"))
    assert status == 403
    assert "No kubeconfig was made: You do not have access to this cluster" in text


def test_admin_creates_a_grant_with_the_form(api: Api, admin: Portal, member_id: str) -> None:
    cluster_id = add_cluster(api, "prod")

    status, _, location = form_post(
        admin,
        page(cluster_id, "/grants"),
        email="Member@Example.com",
        role="view",
        scope="namespace",
        namespace="team-a",
    )

    assert status == 303 and location == page(cluster_id, "?done=created")
    [made] = api.get(f"/api/v1/clusters/{cluster_id}/access/grants").json()["items"]
    assert (made["user_id"], made["role"], made["namespace"]) == (member_id, "view", "team-a")
    assert made["status"] == "cluster_offline"  # no agent in these tests
    text = admin.get(page(cluster_id, "?done=created")).text
    assert "The grant was created." in text
    fragment = admin.client.get(
        page(cluster_id, "/grants"),
        headers={"HX-Request": "true", "Cookie": f"{COOKIE}={admin.cookie}"},
    ).text
    assert fragment.startswith('<div id="grants"') and "cluster offline" in fragment
    assert "the cluster&#39;s agent is not connected" in fragment

    again = form_post(
        admin,
        page(cluster_id, "/grants"),
        email=MEMBER_EMAIL,
        role="view",
        scope="namespace",
        namespace="team-a",
    )
    assert again[2] == page(cluster_id, "?done=exists")
    assert grant_rows_of(api, cluster_id) == 1


def grant_rows_of(api: Api, cluster_id: str) -> int:
    return len(api.get(f"/api/v1/clusters/{cluster_id}/access/grants").json()["items"])


@pytest.mark.parametrize(
    ("namespace", "scope", "says"),
    [
        ("Team_A", "namespace", "namespace &#39;Team_A&#39; must consist of lower case letters"),
        ("-team", "namespace", "a DNS-1123 label"),
        ("a" * 64, "namespace", "must be at most 63 characters"),
        ("", "namespace", "a namespace-scoped grant needs a namespace"),
        ("team-a", "cluster", "a cluster-scoped grant takes no namespace"),
    ],
)
def test_a_bad_namespace_is_refused_readably_and_the_form_kept(
    api: Api, admin: Portal, member_id: str, db: Engine, namespace: str, scope: str, says: str
) -> None:
    cluster_id = add_cluster(api, "prod")

    status, text, _ = form_post(
        admin,
        page(cluster_id, "/grants"),
        email=MEMBER_EMAIL,
        role="edit",
        scope=scope,
        namespace=namespace,
    )

    assert status == 422
    assert 'role="alert" id="access-error">The grant was not created: ' in text
    assert says.lower() in text.lower()
    assert '<option value="edit" selected>' in text
    assert grant_rows(db, cluster_id) == 0


def test_grant_form_without_a_member_asks_for_one(api: Api, admin: Portal, db: Engine) -> None:
    cluster_id = add_cluster(api, "prod")
    status, text, _ = form_post(admin, page(cluster_id, "/grants"), email="", role="view")
    assert status == 422 and "Choose the member to grant access to." in text
    assert grant_rows(db, cluster_id) == 0


def test_forged_grant_writes_are_refused_and_change_nothing(
    api: Api, admin: Portal, member: Portal, member_id: str, db: Engine
) -> None:
    cluster_id = add_cluster(api, "prod")
    fields = {"email": MEMBER_EMAIL, "role": "cluster-admin", "scope": "cluster"}

    for csrf in (None, "kg_csrf_forged", member.csrf):  # none, made up, another session's
        status, text, _ = form_post(admin, page(cluster_id, "/grants"), csrf=csrf, **fields)
        assert status == 403, csrf
        assert "security token is missing or wrong" in text
    # A member's own session and token: refused by the rules, not only the token.
    status, text, _ = form_post(member, page(cluster_id, "/grants"), **fields)
    assert status == 403
    assert "The grant was not created: Only organisation admins can grant cluster access" in text
    assert grant_rows(db, cluster_id) == 0

    grant(api, cluster_id, member_id)
    [existing] = api.get(f"/api/v1/clusters/{cluster_id}/access/grants").json()["items"]
    delete = page(cluster_id, f"/grants/{existing['id']}/delete")
    assert form_post(admin, delete, csrf=None)[0] == 403
    assert form_post(member, delete)[0] == 403
    assert form_post(member, page(cluster_id, "/revoke-all"), confirm_name="prod")[0] == 403
    assert grant_rows(db, cluster_id) == 1


def test_admin_deletes_a_grant(api: Api, admin: Portal, member_id: str, db: Engine) -> None:
    cluster_id = add_cluster(api, "prod")
    grant(api, cluster_id, member_id)
    [existing] = api.get(f"/api/v1/clusters/{cluster_id}/access/grants").json()["items"]

    status, _, location = form_post(admin, page(cluster_id, f"/grants/{existing['id']}/delete"))

    assert status == 303 and location == page(cluster_id, "?done=deleted")
    assert grant_rows(db, cluster_id) == 0
    assert len(audit_events(db, "grant.delete")) == 1
    # Deleting it again: a readable 404, on the page.
    status, text, _ = form_post(admin, page(cluster_id, f"/grants/{existing['id']}/delete"))
    assert status == 404 and "The grant was not deleted: Grant " in text


def test_revoke_all_needs_the_typed_name(
    api: Api, admin: Portal, member_id: str, db: Engine
) -> None:
    cluster_id = add_cluster(api, "prod")
    grant(api, cluster_id, member_id)
    epoch = token_epoch(db, cluster_id)

    for typed in ("", "prod2", "Prod"):
        status, text, _ = form_post(admin, page(cluster_id, "/revoke-all"), confirm_name=typed)
        assert status == 400, typed
        assert "Nothing was revoked: You typed" in text
        assert "not the cluster&#39;s name &#39;prod&#39;" in text
    assert grant_rows(db, cluster_id) == 1 and token_epoch(db, cluster_id) == epoch

    status, _, location = form_post(admin, page(cluster_id, "/revoke-all"), confirm_name="prod")

    assert status == 303 and location == page(cluster_id, "?done=revoked")
    assert grant_rows(db, cluster_id) == 0 and token_epoch(db, cluster_id) == epoch + 1
    assert "Every grant on this cluster was deleted" in admin.get(location).text


def test_sandbox_cluster_says_it_does_not_support_cluster_access(api: Api, admin: Portal) -> None:
    cluster_id = add_cluster(api, "play", kind="sandbox")
    text = admin.get(page(cluster_id)).text
    assert "Sandbox clusters do not support Cluster Access" in text
    assert "Create grant" not in text and "Download kubeconfig" not in text


def test_gateway_off_says_cluster_access_is_unavailable(gateway_off: Api) -> None:
    cluster_id = add_cluster(gateway_off, "prod")
    admin = sign_in(gateway_off.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]

    text = admin.get(page(cluster_id)).text

    assert "Cluster Access is unavailable: the access gateway is turned off" in text
    assert "Create grant" not in text
    status, text, _ = form_post(
        admin, page(cluster_id, "/grants"), email=ADMIN_EMAIL, role="view", scope="cluster"
    )
    assert status == 404
    assert "The grant was not created: The access gateway is disabled on this server" in text


def test_unknown_or_other_orgs_cluster_is_not_found(api: Api, admin: Portal, db: Engine) -> None:
    _, other_cluster, _ = add_other_org(db)
    for cluster_id in (other_cluster, "0" * 32, "not-an-id"):
        answer = admin.get(page(cluster_id))
        assert answer.status_code == 404, cluster_id
        assert "Cluster not found" in answer.text


def test_without_a_session_the_view_goes_to_sign_in(api: Api) -> None:
    cluster_id = add_cluster(api, "prod")
    answer = api.client.get(page(cluster_id))
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/portal/sign-in?next=%2Fportal%2Fclusters%2F")
    fragment = api.client.get(
        page(cluster_id, "/grants"),
        headers={"HX-Request": "true", "Cookie": f"{COOKIE}=kg_session_gone"},
    )
    assert fragment.status_code == 401 and "hx-redirect" in fragment.headers
